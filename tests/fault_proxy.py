"""A small TCP proxy for fault injection between a client and redis-server.

``FaultProxy(target_port)`` listens on 127.0.0.1 (only) on a free port and
forwards every connection to ``127.0.0.1:target_port``, one thread per
direction.  Faults, armed from the test:

- ``drop_reply(match=b"")``: the next request whose bytes contain ``match``
  reaches the server (so it runs), its reply is swallowed, and that
  connection is reset: the client sees a dropped connection after a command
  that did take effect.  One-shot.
- ``reset()``: reset every open connection now (RST, as a crashed middlebox
  or a dead peer would).
- ``stall(seconds)``: forward nothing in either direction for ``seconds``;
  connections stay open (a server paused, a network partition that heals).

The proxy is bounded: it stops by itself after ``lifetime`` seconds, its
threads are daemons, and ``close()`` stops it at once.  It touches only
loopback.
"""
from __future__ import annotations

import select
import socket
import struct
import threading
import time

__all__ = ["FaultProxy"]


def _rst(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0) rather than FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Pair:
    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.drop_next_reply = False
        self.dead = False

    def kill(self) -> None:
        if not self.dead:
            self.dead = True
            _rst(self.client)
            _rst(self.server)


class FaultProxy:
    def __init__(self, target_port: int, *, lifetime: float = 120.0) -> None:
        self.target_port = target_port
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._pairs: list[_Pair] = []
        self._drop_match: bytes | None = None
        self._stall_until = 0.0
        self._stop_at = time.monotonic() + lifetime
        self._stopped = False
        self.dropped = 0  # replies swallowed so far
        self._accepter = threading.Thread(target=self._accept, daemon=True,
                                          name=f"fault-proxy:{self.port}")
        self._accepter.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    # -- faults -------------------------------------------------------------
    def drop_reply(self, match: bytes = b"") -> None:
        with self._lock:
            self._drop_match = match

    def reset(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for p in pairs:
            p.kill()

    def stall(self, seconds: float) -> None:
        with self._lock:
            self._stall_until = time.monotonic() + seconds

    def close(self) -> None:
        self._stopped = True
        try:
            self._listener.close()
        except OSError:
            pass
        self.reset()
        self._accepter.join(5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- forwarding ---------------------------------------------------------
    def _live(self) -> bool:
        if time.monotonic() >= self._stop_at:
            self._stopped = True
        return not self._stopped

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while self._live():
            try:
                c, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            try:
                s = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                _rst(c)
                continue
            pair = _Pair(c, s)
            with self._lock:
                self._pairs.append(pair)
            for up in (True, False):
                threading.Thread(target=self._pump, args=(pair, up), daemon=True).start()
        self.reset()

    def _stalled(self) -> bool:
        return time.monotonic() < self._stall_until

    def _pump(self, pair: _Pair, up: bool) -> None:
        src, dst = (pair.client, pair.server) if up else (pair.server, pair.client)
        try:
            while self._live() and not pair.dead:
                r, _, _ = select.select([src], [], [], 0.05)
                if not r:
                    continue
                while self._stalled() and self._live() and not pair.dead:
                    time.sleep(0.01)  # hold the bytes: nothing moves during a stall
                data = src.recv(65536)
                if not data:
                    break
                if up:
                    with self._lock:
                        m = self._drop_match
                        if m is not None and m in data:
                            self._drop_match = None
                            pair.drop_next_reply = True
                elif pair.drop_next_reply:
                    self.dropped += 1
                    pair.kill()  # the reply is swallowed; the client sees a reset
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            pair.kill()
