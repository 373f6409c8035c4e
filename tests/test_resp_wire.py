"""The Redis wire fast path in C (src/interlock/_core/bind_resp.c), with no
Redis server: ``resp_pack``'s exact bytes, and ``resp_call`` against the
other end of a ``socket.socketpair()`` that the test drives (from a thread
where the replies must come while the call waits).

``resp_call`` waits for replies in one of two ways, and the tests that wait
run in both (the ``conn`` fixture):

- ``poll``: ``rcvtimeo=0``, a non-blocking descriptor (as redis-py leaves a
  socket with a timeout): poll(), then recv() without waiting;
- ``rcvtimeo``: a blocking descriptor with SO_RCVTIMEO = 0.05 s and
  ``rcvtimeo=0.05``: the call waits inside recv() itself, one SO_RCVTIMEO
  period at a time (as ``_redis/_client.py``'s FastConn sets it up).
"""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import struct
import threading
import time

import pytest

from interlock import _core

PING = b"*1\r\n$4\r\nPING\r\n"
RCVTIMEO = 0.05  # seconds: the SO_RCVTIMEO of the "rcvtimeo" mode
PEER_TIMEOUT = 5.0  # the test's own end never waits longer than this


class ReplyError(Exception):
    """The errfactory of these tests: an error reply becomes one of these."""


class Alarm(Exception):
    """Raised by a test's SIGALRM handler."""


def _set_rcvtimeo(sock: socket.socket, seconds: float) -> None:
    sec = int(seconds)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                    struct.pack("ll", sec, int(round((seconds - sec) * 1e6))))


class Conn:
    """A client socket for resp_call and the "server" end the test drives."""

    def __init__(self, client: socket.socket, server: socket.socket, rcvtimeo: float):
        self.client, self.server, self.rcvtimeo = client, server, rcvtimeo

    def call(self, n=1, data=PING, *, send_timeout=2.0, recv_timeout=2.0,
             errfactory=ReplyError, check=False):
        return _core.resp_call(self.client.fileno(), data, n, send_timeout, recv_timeout,
                               errfactory, check, self.rcvtimeo)

    def reply(self, wire: bytes, n=1, **kw):
        """The replies already queued (before the call), then the call."""
        self.server.sendall(wire)
        return self.call(n, **kw)

    def read_request(self, size: int) -> bytes:
        """Exactly `size` bytes of what the client sent (the test's end)."""
        buf = b""
        while len(buf) < size:
            chunk = self.server.recv(size - len(buf))
            assert chunk, f"EOF after {len(buf)} of {size} bytes"
            buf += chunk
        return buf

    def server_received_nothing(self) -> bool:
        self.server.setblocking(False)
        try:
            got = self.server.recv(4096)
        except BlockingIOError:
            return True
        finally:
            self.server.settimeout(PEER_TIMEOUT)
        return got == b""  # (EOF: nothing was sent either)


def _make_conn(mode: str) -> Conn:
    client, server = socket.socketpair()
    server.settimeout(PEER_TIMEOUT)
    if mode == "poll":
        client.setblocking(False)
        return Conn(client, server, 0.0)
    assert mode == "rcvtimeo"
    client.setblocking(True)
    _set_rcvtimeo(client, RCVTIMEO)
    return Conn(client, server, RCVTIMEO)


@contextlib.contextmanager
def _conn(mode: str):
    c = _make_conn(mode)
    try:
        yield c
    finally:
        c.client.close()
        c.server.close()


@pytest.fixture(params=["poll", "rcvtimeo"])
def conn(request):
    with _conn(request.param) as c:
        yield c


@pytest.fixture
def pconn():
    """One mode only (poll), for the tests that do not wait."""
    with _conn("poll") as c:
        yield c


@contextlib.contextmanager
def peer(fn):
    """Runs fn() in a thread for the body's duration: joined at the end, and
    its exception, if any, raised.  The thread blocks SIGALRM, so that a
    timer's signal is delivered to the main thread (the one in resp_call)."""
    errors: list[BaseException] = []

    def run():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            fn()
        except BaseException as e:  # handed to the test
            errors.append(e)

    t = threading.Thread(target=run, name="resp-peer", daemon=True)
    t.start()
    try:
        yield t
    finally:
        t.join(PEER_TIMEOUT * 2)
    assert not t.is_alive(), "the peer thread did not end"
    if errors:
        raise errors[0]


@contextlib.contextmanager
def alarm_after(delay: float, handler):
    """SIGALRM to `handler` once, `delay` seconds from now.  pytest-timeout's
    own SIGALRM timer (timeout_method = "signal") is put back afterwards."""
    old_handler = signal.signal(signal.SIGALRM, handler)
    t0 = time.monotonic()
    old_timer = signal.setitimer(signal.ITIMER_REAL, delay)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL if old_handler is None else old_handler)
        if old_timer[0] > 0:
            left = old_timer[0] - (time.monotonic() - t0)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.01), old_timer[1])


# ------------------------------------------------------------------ resp_pack


def test_pack_mixed_command_exact_bytes():
    cmd = ["SET", b"key", bytearray(b"ba"), memoryview(b"mv"), 0, -42, 2**64 + 5,
           0.1, 1e100, -1.5, "h\u00e9llo \u2603", ""]
    assert _core.resp_pack([cmd]) == (
        b"*12\r\n"
        b"$3\r\nSET\r\n"
        b"$3\r\nkey\r\n"
        b"$2\r\nba\r\n"
        b"$2\r\nmv\r\n"
        b"$1\r\n0\r\n"
        b"$3\r\n-42\r\n"
        b"$20\r\n18446744073709551621\r\n"
        b"$3\r\n0.1\r\n"
        b"$6\r\n1e+100\r\n"
        b"$4\r\n-1.5\r\n"
        b"$10\r\nh\xc3\xa9llo \xe2\x98\x83\r\n"  # UTF-8: the length is in bytes
        b"$0\r\n\r\n")


@pytest.mark.parametrize("v", [2**63 - 1, 2**63, -2**63, -2**63 - 1, -(2**70), 10**40])
def test_pack_ints_at_and_past_64_bits(v):
    s = str(v).encode()
    assert _core.resp_pack([[v]]) == b"*1\r\n$%d\r\n%s\r\n" % (len(s), s)


@pytest.mark.parametrize("v", [0.1, 1e100, 1e-300, 2.0 / 3, -0.0, float("inf"), 123456789.125])
def test_pack_floats_are_repr(v):
    s = repr(v).encode()
    assert _core.resp_pack([["X", v]]) == b"*2\r\n$1\r\nX\r\n$%d\r\n%s\r\n" % (len(s), s)


def test_pack_binary_bytes_are_verbatim():
    blob = bytes(range(256)) + b"\r\n\x00"
    assert _core.resp_pack([[blob]]) == b"*1\r\n$259\r\n" + blob + b"\r\n"


def test_pack_several_commands_concatenated():
    cmds = [("MULTI",), ["INCR", "n"], (b"LPUSH", "q", 7, 2.5), ["EXEC"]]
    want = (b"*1\r\n$5\r\nMULTI\r\n"
            b"*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n"
            b"*4\r\n$5\r\nLPUSH\r\n$1\r\nq\r\n$1\r\n7\r\n$3\r\n2.5\r\n"
            b"*1\r\n$4\r\nEXEC\r\n")
    assert _core.resp_pack(cmds) == want
    # each command packed alone, concatenated: the same bytes
    assert b"".join(_core.resp_pack([c]) for c in cmds) == want
    assert _core.resp_pack([]) == b""


@pytest.mark.parametrize("bad", [True, False, None, object(), ["a"], {"a": 1}, 1j],
                         ids=["True", "False", "None", "object", "list", "dict", "complex"])
def test_pack_refuses_other_types(bad):
    with pytest.raises(TypeError):
        _core.resp_pack([["SET", "k", bad]])
    with pytest.raises(TypeError):  # in a later command too
        _core.resp_pack([["PING"], [bad]])


def test_pack_refuses_an_empty_command():
    with pytest.raises(ValueError):
        _core.resp_pack([[]])
    with pytest.raises(ValueError):
        _core.resp_pack([["PING"], ()])


def test_pack_refuses_a_non_sequence():
    with pytest.raises(TypeError):
        _core.resp_pack(5)
    with pytest.raises(TypeError):
        _core.resp_pack([5])


@pytest.mark.parametrize("cmd", ["PING", b"PING", bytearray(b"PING")])
def test_pack_refuses_a_command_that_is_a_string(cmd):
    """A str or bytes is a sequence, of characters or byte values: passed
    where a command (a sequence of arguments) was wanted, it would be
    packed as one argument per character."""
    with pytest.raises(TypeError, match="sequence of arguments"):
        _core.resp_pack([cmd])


# ------------------------------------------------------------------ replies

REPLIES = [
    (b"+OK\r\n", b"OK"),
    (b"+\r\n", b""),
    (b"+a\rb\r\n", b"a\rb"),  # a lone CR inside a simple string
    (b"+a\nb\r\n", b"a\nb"),
    (b":0\r\n", 0),
    (b":-42\r\n", -42),
    (b":123456789012345678\r\n", 123456789012345678),
    (b":-123456789012345678\r\n", -123456789012345678),
    (b"$5\r\nhello\r\n", b"hello"),
    (b"$0\r\n\r\n", b""),
    (b"$6\r\na\r\nb\r\n\r\n", b"a\r\nb\r\n"),  # CRLF inside a bulk
    (b"$4\r\n\x00\xff\r\x00\r\n", b"\x00\xff\r\x00"),
    (b"$-1\r\n", None),
    (b"*-1\r\n", None),
    (b"*0\r\n", []),
    (b"*3\r\n:1\r\n$3\r\nfoo\r\n+bar\r\n", [1, b"foo", b"bar"]),
    (b"*2\r\n*2\r\n:1\r\n*0\r\n*3\r\n$-1\r\n*-1\r\n$2\r\n\r\n\r\n",
     [[1, []], [None, None, b"\r\n"]]),
    (b"*1\r\n" * 31 + b":7\r\n", [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[7]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]),
]


@pytest.mark.parametrize("wire,want", REPLIES, ids=[repr(w)[2:28].rstrip("'") for w, _ in REPLIES])
def test_reply_types(conn, wire, want):
    assert conn.reply(wire) == [want]
    assert conn.read_request(len(PING)) == PING  # what was sent, whole


def test_error_reply_top_level(conn):
    calls = []

    def factory(msg):
        calls.append(msg)
        return ReplyError(msg)

    out = conn.reply(b"-ERR unknown command 'FOO'\r\n", errfactory=factory)
    assert calls == ["ERR unknown command 'FOO'"]
    assert len(out) == 1 and type(out[0]) is ReplyError
    assert out[0].args == ("ERR unknown command 'FOO'",)


def test_error_reply_nested_and_among_others(conn):
    wire = (b"+OK\r\n"
            b"*3\r\n:1\r\n-WRONGTYPE Operation against a key\r\n*1\r\n-ERR deep\r\n"
            b"-\r\n")
    out = conn.reply(wire, n=3)
    assert out[0] == b"OK"
    inner = out[1]
    assert inner[0] == 1
    assert isinstance(inner[1], ReplyError)
    assert inner[1].args == ("WRONGTYPE Operation against a key",)
    assert isinstance(inner[2][0], ReplyError) and inner[2][0].args == ("ERR deep",)
    assert isinstance(out[2], ReplyError) and out[2].args == ("",)


def test_error_reply_not_utf8_is_decoded_with_replacement(pconn):
    out = pconn.reply(b"-ERR \xff\xfe bad\r\n")
    assert out[0].args == ("ERR \ufffd\ufffd bad",)


def test_errfactory_exception_propagates(pconn):
    def factory(msg):
        raise KeyError(msg)

    with pytest.raises(KeyError, match="ERR x"):
        pconn.reply(b"*2\r\n:1\r\n-ERR x\r\n", errfactory=factory)


def test_several_replies_in_one_call(conn):
    data = _core.resp_pack([["PING"], ["GET", "k"], ["INCR", "n"], ["LRANGE", "l", 0, -1]])
    wire = b"+PONG\r\n$-1\r\n:5\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    assert conn.reply(wire, n=4, data=data) == [b"PONG", None, 5, [b"a", b"b"]]
    assert conn.read_request(len(data)) == data


def test_a_thousand_pipelined_replies(conn):
    data = _core.resp_pack([["INCR", "n"]] * 1000)
    wire = b"".join(b":%d\r\n" % i for i in range(1000))
    assert conn.reply(wire, n=1000, data=data) == list(range(1000))
    assert conn.read_request(len(data)) == data


def test_nothing_to_send_only_receive(pconn):
    assert pconn.reply(b"+OK\r\n", data=b"") == [b"OK"]


@pytest.mark.parametrize("wire", [b"?", b"\r\n", b"%"])
def test_bad_type_byte_is_refused_at_once(pconn, wire):
    """Not at the end of a line that may never come: no wait for the
    timeout."""
    t = time.monotonic()
    with pytest.raises(ConnectionError):
        pconn.reply(wire, recv_timeout=5.0)
    assert time.monotonic() - t < 1.0


@pytest.mark.parametrize("v", [10**18, 2**63 - 1, -2**63])
def test_integer_reply_full_int64_range(pconn, v):
    assert pconn.reply(b":%d\r\n" % v) == [v]


@pytest.mark.parametrize("wire", [b":9223372036854775808\r\n", b":-9223372036854775809\r\n",
                                  b":12345678901234567890\r\n"])
def test_integer_reply_beyond_int64_is_a_protocol_error(pconn, wire):
    with pytest.raises(ConnectionError):
        pconn.reply(wire)


# ------------------------------------------------------------- split, large


DRIBBLE_WIRE = (b"*4\r\n:-12\r\n$6\r\na\r\nb\r\n\r\n*-1\r\n*2\r\n$-1\r\n-ERR nested\r\n"
                b"+a\rb\r\n"
                b"-MOVED 1 x\r\n"
                b"$0\r\n\r\n")


def _check_dribbled(out):
    arr, simple, err, empty = out
    assert arr[:3] == [-12, b"a\r\nb\r\n", None]
    assert arr[3][0] is None
    assert isinstance(arr[3][1], ReplyError) and arr[3][1].args == ("ERR nested",)
    assert simple == b"a\rb"
    assert isinstance(err, ReplyError) and err.args == ("MOVED 1 x",)
    assert empty == b""


def test_replies_dribbled_one_byte_at_a_time(conn):
    def serve():
        assert conn.read_request(len(PING) * 4) == PING * 4
        for i in range(len(DRIBBLE_WIRE)):
            conn.server.sendall(DRIBBLE_WIRE[i:i + 1])
            time.sleep(0.001)

    with peer(serve):
        out = conn.call(4, data=PING * 4, recv_timeout=5.0)
    _check_dribbled(out)


def test_replies_split_in_two_anywhere(pconn):
    # the second part comes while the call waits: every split point parses
    # (one connection: each call takes exactly its 4 replies)
    for cut in range(1, len(DRIBBLE_WIRE)):
        def serve():
            pconn.server.sendall(DRIBBLE_WIRE[:cut])
            time.sleep(0.002)
            pconn.server.sendall(DRIBBLE_WIRE[cut:])

        with peer(serve):
            out = pconn.call(4, data=b"", recv_timeout=5.0)
        _check_dribbled(out)


def test_large_bulk(conn):
    blob = os.urandom(1 << 16) * 80  # 5 MiB, bigger than any socket buffer
    data = _core.resp_pack([["GET", "big"], ["PING"]])

    def serve():
        assert conn.read_request(len(data)) == data
        conn.server.sendall(b"$%d\r\n" % len(blob) + blob + b"\r\n+PONG\r\n")

    with peer(serve):
        out = conn.call(2, data=data, recv_timeout=20.0)
    assert len(out[0]) == len(blob) and out[0] == blob
    assert out[1] == b"PONG"


def test_large_array_in_small_writes(conn):
    n = 20000
    wire = b"*%d\r\n" % n + b"".join(b"$%d\r\n%d\r\n" % (len(str(i)), i) for i in range(n))

    def serve():
        for i in range(0, len(wire), 7000):
            conn.server.sendall(wire[i:i + 7000])

    with peer(serve):
        out = conn.call(1, data=b"", recv_timeout=20.0)
    assert out == [[str(i).encode() for i in range(n)]]


def test_large_send(conn):
    # a request bigger than the socket buffers: sent while the peer reads it
    data = _core.resp_pack([["SET", "k", b"v" * (3 << 20)]])

    def serve():
        assert conn.read_request(len(data)) == data
        conn.server.sendall(b"+OK\r\n")

    with peer(serve):
        assert conn.call(data=data, send_timeout=20.0, recv_timeout=20.0) == [b"OK"]


# ------------------------------------------------------------ timeouts


def test_reply_after_several_rcvtimeo_periods(conn):
    def serve():
        assert conn.read_request(len(PING)) == PING
        time.sleep(0.3)  # six SO_RCVTIMEO periods in the rcvtimeo mode
        conn.server.sendall(b"+PONG\r\n")

    t0 = time.monotonic()
    with peer(serve):
        assert conn.call(recv_timeout=5.0) == [b"PONG"]
    assert time.monotonic() - t0 >= 0.29


def test_reply_split_by_a_pause(conn):
    def serve():
        conn.server.sendall(b"*2\r\n$3\r\nab")
        time.sleep(0.2)
        conn.server.sendall(b"c\r\n:9\r\n")

    with peer(serve):
        assert conn.call(recv_timeout=5.0) == [[b"abc", 9]]


@pytest.mark.parametrize("recv_timeout", [0.02, 0.2])  # shorter and longer than RCVTIMEO
def test_recv_timeout_silent_peer(conn, recv_timeout):
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        conn.call(recv_timeout=recv_timeout)
    elapsed = time.monotonic() - t0
    assert recv_timeout - 0.005 <= elapsed < recv_timeout + 0.5


def test_recv_timeout_mid_reply(conn):
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        conn.reply(b"*2\r\n:1\r\n$10\r\nabc", recv_timeout=0.2)
    assert 0.19 <= time.monotonic() - t0 < 0.7


def test_recv_timeout_when_reply_is_late(conn):
    def serve():
        time.sleep(0.3)
        conn.server.sendall(b"+LATE\r\n")

    t0 = time.monotonic()
    with peer(serve):
        with pytest.raises(TimeoutError):
            conn.call(recv_timeout=0.15)
        elapsed = time.monotonic() - t0
    assert 0.14 <= elapsed < 0.15 + 0.5


def test_recv_timeout_blocking_fd_without_so_rcvtimeo():
    # rcvtimeo=0 on a blocking descriptor: resp_call must not block in recv
    a, b = socket.socketpair()
    try:
        a.setblocking(True)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            _core.resp_call(a.fileno(), PING, 1, 1.0, 0.1, ReplyError, False, 0.0)
        assert time.monotonic() - t0 < 0.6
    finally:
        a.close()
        b.close()


def test_send_timeout_peer_not_reading(conn):
    data = b"x" * (8 << 20)  # more than both socket buffers hold
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        conn.call(data=data, send_timeout=0.2, recv_timeout=5.0)
    assert 0.19 <= time.monotonic() - t0 < 0.7


# ------------------------------------------------------------------- EOF


def test_eof_before_any_reply(conn):
    conn.server.shutdown(socket.SHUT_WR)  # the peer still reads: the send succeeds
    with pytest.raises(ConnectionError, match="closed"):
        conn.call()
    assert conn.read_request(len(PING)) == PING


def test_peer_fully_closed(conn):
    conn.server.close()
    with pytest.raises(ConnectionError):  # EPIPE / ECONNRESET on the send, or EOF
        conn.call()


@pytest.mark.parametrize("half", [b"$10\r\nabc", b"*2\r\n:1\r\n", b"+OK", b"+OK\r", b":1",
                                  b"*3\r\n*1\r\n$-1\r\n", b"$3\r\nabc\r"])
def test_eof_mid_reply(conn, half):
    conn.server.sendall(half)
    conn.server.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionError, match="closed"):
        conn.call()


def test_eof_between_replies(conn):
    conn.server.sendall(b"+OK\r\n")
    conn.server.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionError, match="closed"):
        conn.call(n=2)


def test_eof_mid_reply_after_a_pause(conn):
    def serve():
        conn.server.sendall(b"$100\r\n" + b"x" * 50)
        time.sleep(0.15)
        conn.server.shutdown(socket.SHUT_WR)

    with peer(serve):
        with pytest.raises(ConnectionError, match="closed"):
            conn.call(recv_timeout=5.0)


# -------------------------------------------------------- protocol errors

NOT_RESP2 = [
    b"%1\r\n+a\r\n+b\r\n",  # RESP3 map
    b"_\r\n",  # RESP3 null
    b"#t\r\n",  # RESP3 boolean
    b",1.5\r\n",  # RESP3 double
    b"(12345678901234567890\r\n",  # RESP3 big number
    b"=7\r\ntxt:abc\r\n",  # RESP3 verbatim string
    b"~1\r\n:1\r\n",  # RESP3 set
    b">2\r\n+a\r\n+b\r\n",  # RESP3 push
    b"!3\r\nERR\r\n",  # RESP3 blob error
    b"$abc\r\n",  # malformed lengths
    b"$\r\n",
    b"$-2\r\n",
    b"$1x\r\na\r\n",
    b"*x\r\n",
    b"*-2\r\n",
    b":12a\r\n",
    b":\r\n",
    b":-\r\n",
    b"$3\r\nabcd\r\n",  # longer than its length
    b"$536870913\r\n",  # past proto-max-bulk-len
    b"*2\r\n:1\r\n%0\r\n",  # nested
    b"*1\r\n" * 40 + b":1\r\n",  # nested too deep
    b"HTTP/1.1 400 Bad Request\r\n",
    b"\r\n\r\n",
]


@pytest.mark.parametrize("wire", NOT_RESP2, ids=[repr(w)[2:22].rstrip("'") for w in NOT_RESP2])
def test_not_resp2_is_a_connection_error(conn, wire):
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match="Protocol error"):
        conn.reply(wire, recv_timeout=5.0)
    assert time.monotonic() - t0 < 1.0  # refused at once, not timed out


def test_not_resp2_in_a_later_reply(pconn):
    with pytest.raises(ConnectionError, match="Protocol error"):
        pconn.reply(b"+OK\r\n:1\r\n_\r\n", n=3)


@pytest.mark.parametrize("extra", [b"+EXTRA\r\n", b"x", b"\r\n", b"_\r\n"])
def test_more_bytes_than_replies(conn, extra):
    with pytest.raises(ConnectionError, match="more bytes"):
        conn.reply(b"+OK\r\n:1\r\n" + extra, n=2)


# ---------------------------------------------------------------- check


def test_check_stray_bytes_returns_none_and_sends_nothing(conn):
    conn.server.sendall(b"+STALE\r\n")
    assert conn.call(check=True) is None
    assert conn.server_received_nothing()
    # only peeked: the stray bytes are still there to read
    assert conn.client.recv(100) == b"+STALE\r\n"


def test_check_half_closed_peer_returns_none_and_sends_nothing(conn):
    conn.server.shutdown(socket.SHUT_WR)  # EOF for the client; the peer still reads
    assert conn.call(check=True) is None
    assert conn.server_received_nothing()


def test_check_closed_peer_returns_none(conn):
    conn.server.close()
    assert conn.call(check=True) is None  # no send: no EPIPE


def test_check_on_a_healthy_idle_socket_proceeds(conn):
    def serve():
        assert conn.read_request(len(PING)) == PING
        conn.server.sendall(b"+PONG\r\n")

    with peer(serve):
        assert conn.call(check=True, recv_timeout=5.0) == [b"PONG"]


def test_check_false_on_stale_socket_is_out_of_step(pconn):
    # what check=True is for: without it, a stray reply is taken for ours
    pconn.server.sendall(b"+STALE\r\n")
    assert pconn.call(check=False) == [b"STALE"]
    assert pconn.read_request(len(PING)) == PING


# --------------------------------------------------------------- signals


@pytest.mark.parametrize("mode,rcvtimeo", [("poll", 0.0), ("rcvtimeo", RCVTIMEO),
                                           ("rcvtimeo", 5.0)],
                         ids=["poll", "rcvtimeo-short", "rcvtimeo-long"])
def test_signal_handler_exception_propagates(mode, rcvtimeo):
    # rcvtimeo-long: SO_RCVTIMEO of 5 s, so only an EINTR from recv() itself
    # can end the wait in time
    with _conn(mode) as c:
        if mode == "rcvtimeo":
            _set_rcvtimeo(c.client, rcvtimeo)
            c.rcvtimeo = rcvtimeo

        def handler(signum, frame):
            raise Alarm()

        t0 = time.monotonic()
        with alarm_after(0.1, handler):
            with pytest.raises(Alarm):
                c.call(recv_timeout=30.0)
        elapsed = time.monotonic() - t0
        assert 0.09 <= elapsed < 1.5, elapsed


@pytest.mark.parametrize("mode", ["poll", "rcvtimeo"])
def test_signal_handler_that_returns_lets_the_call_go_on(mode):
    with _conn(mode) as c:
        fired = []

        def serve():
            assert c.read_request(len(PING)) == PING
            time.sleep(0.3)
            c.server.sendall(b"+PONG\r\n")

        with peer(serve), alarm_after(0.1, lambda signum, frame: fired.append(signum)):
            assert c.call(recv_timeout=5.0) == [b"PONG"]
        assert fired == [signal.SIGALRM]


# ------------------------------------------------------------ bad arguments


@pytest.mark.parametrize("n", [0, -1])
def test_n_below_one_is_a_value_error(pconn, n):
    with pytest.raises(ValueError):
        pconn.call(n=n)
    assert pconn.server_received_nothing()


def test_data_must_be_bytes_like(pconn):
    with pytest.raises(TypeError):
        pconn.call(data="*1\r\n$4\r\nPING\r\n")


def test_socket_error_is_an_oserror():
    r, w = os.pipe()  # not a socket
    try:
        with pytest.raises(OSError) as ei:
            _core.resp_call(w, PING, 1, 1.0, 1.0, ReplyError, False)
        assert ei.value.errno == errno.ENOTSOCK
        assert not isinstance(ei.value, (TimeoutError, ConnectionError))
    finally:
        os.close(r)
        os.close(w)
