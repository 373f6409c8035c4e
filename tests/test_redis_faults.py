"""Fault injection for the Redis backend: lost replies, resets, stalls,
restarts from an older snapshot.

Each test pins one finding of issue 15 ("across machines without losing a
message") and failed before its fix.  Every server is a real redis-server
(tests/redis_server.py) on loopback; faults come from tests/fault_proxy.py
(a reply swallowed after the server ran the command, then a reset) or from
signals to the server (SIGSTOP: a stall).  Leases are short (0.5-1 s).
"""
from __future__ import annotations

import contextlib
import gc
import os
import queue
import re
import signal
import time
import uuid

import pytest
from _helpers import skip_or_fail
from fault_proxy import FaultProxy
from redis_server import RedisServer, skip_reason


@pytest.fixture(autouse=True)
def _need_redis():
    # skipped without redis-server or redis-py; failed instead under CI=true
    reason = skip_reason()
    if reason is not None:
        skip_or_fail(reason)


if skip_reason() is None:
    import redis as redis_py

    from interlock._connect import connect
    from interlock import errors as interlock_errors
    from interlock.redis import ConnectionLost, LeaseExpired, RolledBack

LEASE = 1.0


def uname() -> str:
    return f"f-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def server():
    srv = RedisServer()
    try:
        yield srv
    finally:
        if srv.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(srv.proc.pid, signal.SIGCONT)
        srv.stop()


@pytest.fixture
def proxy(server):
    with FaultProxy(server.port, lifetime=60) as p:
        yield p


def _get_through(q, timeout: float):
    """get(), repeating once over a ConnectionLost (what a caller would do)."""
    try:
        return q.get(timeout=timeout)
    except ConnectionLost:
        return q.get(timeout=timeout)


# ------------------------------------------------------------ finding 1

def test_lost_take_reply_is_not_stranded(server, proxy):
    """The server ran il_q_take (the message is pending under us) but the
    reply was lost: the message must come back to us at once, and join()
    must return.  Before: stranded under the live consumer, join() hung."""
    direct = connect(server.url, lease=LEASE)
    via = connect(proxy.url, lease=LEASE)
    name = uname()
    prod = direct.JoinableQueue(name=name)
    prod.put("a")
    q = via.JoinableQueue(name=name)
    proxy.drop_reply(b"il_q_take")
    t = time.monotonic()
    assert _get_through(q, 2 * LEASE) == "a"
    assert time.monotonic() - t < 2 * LEASE
    assert proxy.dropped == 1
    q.task_done()
    assert prod.join(timeout=3 * LEASE)


def test_failed_taken_call_loses_no_message(server, proxy):
    """A bounded queue: a blocked get reads "x" with XREADGROUP, then the
    reply of its il_q_taken bookkeeping call is lost.  "x" must still be
    returned (before: the next get acknowledged it unseen: silent loss)."""
    direct = connect(server.url, lease=LEASE)
    via = connect(proxy.url, lease=LEASE)
    name = uname()
    prod = direct.Queue(maxsize=5, name=name)
    q = via.Queue(maxsize=5, name=name)
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)  # the consumer exists; the queue is empty
    got: list[object] = []
    import threading

    def consume() -> None:
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            with contextlib.suppress(ConnectionLost, queue.Empty):
                got.append(q.get(timeout=1))

    proxy.drop_reply(b"il_q_taken")
    th = threading.Thread(target=consume)
    th.start()
    time.sleep(0.3)  # the consumer is blocked in XREADGROUP
    prod.put("x")
    time.sleep(0.3)
    prod.put("y")
    th.join(15)
    assert proxy.dropped == 1
    assert sorted(got) == ["x", "y"]  # type: ignore[type-var]


def test_failed_task_done_is_kept_and_join_returns(server, proxy):
    """The ack of task_done() is lost: it must be kept and sent again, so
    join() returns (before: the id was forgotten, a retry raised ValueError
    "called too many times", and join() never returned)."""
    direct = connect(server.url, lease=LEASE)
    via = connect(proxy.url, lease=LEASE)
    name = uname()
    prod = direct.JoinableQueue(name=name)
    prod.put_many(["a", "b"])
    q = via.JoinableQueue(name=name)
    assert q.get(timeout=2) == "a"
    proxy.drop_reply(b"il_q_ack")
    q.task_done()  # the ack is lost on the way back: kept, not forgotten
    assert proxy.dropped == 1
    assert q.get(timeout=2) == "b"
    q.task_done()
    with pytest.raises(ValueError, match="too many"):
        q.task_done()
    assert prod.join(timeout=3 * LEASE)
    assert q.join(timeout=1)


def test_reset_connections_lose_nothing(server, proxy):
    """20 messages through a proxy that resets every connection now and
    then: each is returned at least once, and join() returns."""
    direct = connect(server.url, lease=LEASE)
    via = connect(proxy.url, lease=LEASE)
    name = uname()
    prod = direct.JoinableQueue(name=name)
    prod.put_many(range(20))
    q = via.JoinableQueue(name=name)
    seen: set[int] = set()
    deadline = time.monotonic() + 20
    n = 0
    while len(seen) < 20 and time.monotonic() < deadline:
        n += 1
        if n % 4 == 0:
            proxy.reset()
        try:
            seen.add(q.get(timeout=2))
        except (ConnectionLost, queue.Empty):
            continue
        with contextlib.suppress(ConnectionLost):
            q.task_done()
    assert seen == set(range(20))
    assert prod.join(timeout=5 * LEASE)


# ------------------------------------------------------------ finding 3

def _ghost(url: str, name: str, consumer: str, n: int, alive: bool) -> None:
    """Make consumer `consumer` take n messages with raw commands: a
    consumer that died holding them (no heartbeat), or (alive) one whose
    heartbeat lives on but that lost track of them."""
    c = redis_py.Redis.from_url(url)
    s = f"interlock:{{{name}}}:s"
    c.xreadgroup("g", consumer, {s: ">"}, count=n)
    if alive:
        c.set(f"interlock:{{{name}}}:hb:{consumer}", "1", px=60_000)


def test_dead_consumer_messages_come_back_in_one_pass(server):
    """A dead consumer held 30 messages: they all come back within about a
    lease, not one per reclaim pass (before: one per half lease: 15 s)."""
    b = connect(server.url, lease=0.5)
    name = uname()
    q = b.Queue(name=name)
    q.put_many(range(30))
    _ghost(server.url, name, "dead", 30, alive=False)
    t = time.monotonic()
    got = [q.get(timeout=3) for _ in range(30)]
    assert sorted(got) == list(range(30))
    assert time.monotonic() - t < 2.0


def test_idle_message_of_live_consumer_is_reclaimed(server):
    """A live consumer (heartbeat renewed) that lost track of a message:
    reclaimed once idle past the lease (before: never, while it lived)."""
    b = connect(server.url, lease=0.5)
    name = uname()
    q = b.Queue(name=name)
    q.put("lost")
    _ghost(server.url, name, "zombie", 1, alive=True)
    assert q.get(timeout=3) == "lost"


def test_live_holder_keeps_its_message_past_the_lease(server):
    """Idle reclaim must not steal from a live holder that tracks its
    message: the keeper renews its idle time."""
    holder = connect(server.url, lease=0.5)
    other = connect(server.url, lease=0.5, grace=0.9)  # another consumer
    name = uname()
    q1 = holder.JoinableQueue(name=name)
    q1.put("mine")
    assert q1.get(timeout=1) == "mine"
    q2 = other.JoinableQueue(name=name)
    with pytest.raises(queue.Empty):
        q2.get(timeout=1.5)  # three leases
    q1.task_done()
    assert q1.join(timeout=1)


def test_temporary_queue_per_get_does_not_redeliver(server):
    """A new Queue object for each get(): what was taken is acknowledged by
    the next get of the thread (the consumer is per process), so nothing
    comes back (before: each dropped object's items returned forever)."""
    b = connect(server.url, lease=0.5)
    name = uname()
    b.Queue(name=name).put_many(["a", "b"])
    assert b.Queue(name=name).get(timeout=1) == "a"
    gc.collect()
    assert b.Queue(name=name).get(timeout=1) == "b"
    gc.collect()
    time.sleep(1.2)  # past two leases
    with pytest.raises(queue.Empty):
        b.Queue(name=name).get(timeout=1.0)
    assert b.Queue(name=name).statistics().unfinished == 0


# ------------------------------------------------------------ finding 4

BOUND = 1.2  # seconds past the timeout a call may take while the server stalls


def test_timeouts_are_kept_while_the_server_stalls(server):
    """Server SIGSTOPped 4 s: get(timeout=1), acquire(timeout=1),
    Event.wait(1) and get_nowait() return (or raise ConnectionLost) within
    BOUND of their timeout (before: 4+ s, get_nowait up to 16 s)."""
    b = connect(server.url, lease=LEASE, grace=0.5)
    other = connect(server.url, lease=LEASE, grace=0.6)
    name = uname()
    q = b.Queue(name=name)
    lock, ev = b.Lock(name=name + "l"), b.Event(name=name + "e")
    held = other.Lock(name=name + "l")
    assert held.acquire()
    assert proc_stop(server)
    try:
        for call, timeout in ((lambda: q.get(timeout=1), 1.0),
                              (lambda: lock.acquire(timeout=1), 1.0),
                              (lambda: ev.wait(1), 1.0),
                              (q.get_nowait, 0.0)):
            t = time.monotonic()
            with contextlib.suppress(ConnectionLost, queue.Empty):
                call()
            took = time.monotonic() - t
            assert took < timeout + BOUND, (call, took)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    # (not left held: its lease would be renewed for the rest of the session)
    with contextlib.suppress(LeaseExpired):
        held.release()


def proc_stop(server) -> bool:
    os.kill(server.proc.pid, signal.SIGSTOP)
    return True


def test_cut_off_holder_learns_its_lease_is_gone(server, proxy):
    """The holder is cut off (the proxy stalls) past its lease: it must
    stop believing it holds the lock (before: _is_owned() stayed True), and
    its release raises LeaseExpired naming the failed renewal."""
    via = connect(proxy.url, lease=LEASE, grace=0.3)
    lock = via.Lock(name=uname())
    assert lock.acquire()
    assert lock._is_owned()
    proxy.stall(3 * LEASE)
    time.sleep(1.5 * LEASE)
    assert not lock._is_owned()
    time.sleep(1.7 * LEASE)  # the stall ends
    with pytest.raises(LeaseExpired):
        lock.release()


# ------------------------------------------------------------ finding 2

def test_restart_from_older_snapshot_is_detected(server):
    """RDB snapshot at fence 1, then 4 more acquisitions, then the server
    restarts from the snapshot: the next fencing token (2) would be reissued
    silently (before); it must raise RolledBack.  Same for a queue."""
    b = connect(server.url, lease=LEASE)
    name = uname()
    lock = b.Lock(name=name)
    q = b.Queue(name=name + "q")
    q.put("snap")
    with lock:
        pass
    redis_py.Redis(port=server.port).save()
    for _ in range(4):
        with lock:
            last = lock.fencing_token
    q.put_many(["after1", "after2"])
    assert last == 5
    server.restart()  # loads dump.rdb: fence back to 1, queue back to one item
    with contextlib.suppress(ConnectionLost):
        lock.locked()  # a pooled connection from before the restart
    with pytest.raises(RolledBack):
        lock.acquire(timeout=1)
    assert not lock._is_owned()
    with contextlib.suppress(ConnectionLost):
        q.qsize()
    with pytest.raises(RolledBack):
        q.qsize()


# ------------------------------------------------------------ retry safety
# Every state-changing call is safe to repeat after a lost reply; those that
# interlock repeats by itself are repeated, exactly once in effect.  Each
# test swallows one reply (the server ran the call) and checks the effect.

def test_lost_put_reply_is_retried_exactly_once(server, proxy):
    """put()'s reply is lost after the server appended the message: put()
    must succeed (before: ConnectionLost, and the caller could not know
    whether to put again) and the message must be there once, not twice."""
    direct = connect(server.url, lease=LEASE)
    via = connect(proxy.url, lease=LEASE)
    name = uname()
    q = via.Queue(name=name)
    proxy.drop_reply(b"il_q_put")
    q.put("once")
    assert proxy.dropped == 1
    proxy.drop_reply(b"il_q_put")
    q.put_many(["m1", "m2"])
    assert proxy.dropped == 2
    check = direct.Queue(name=name)
    assert check.qsize() == 3
    assert check.get_many(10, timeout=1) == ["once", "m1", "m2"]
    with pytest.raises(queue.Empty):
        check.get(timeout=0.1)


def test_put_request_applied_once_whatever_the_order(server):
    """The server side of the request number: the same call twice (a retry,
    or a late copy arriving after it) puts once and answers the same count;
    an older number of the same producer (a call given up on, arriving
    late) puts nothing; a higher number puts again."""
    b = connect(server.url, lease=LEASE)
    name = uname()
    q = b.Queue(name=name)
    keys = q._keys[:3]

    def put(reqno: int, item: bytes, producer: str = "test-producer") -> int:
        return int(b.fcall("il_q_put", keys,
                           [q._epoch, 1, 1, reqno, 60_000, producer, b"r", 1, item])[0])

    assert put(5, b"a") == 1
    assert put(5, b"a") == 1  # the retry: answered, not applied
    assert put(4, b"old") == 0  # late copy of an abandoned call
    assert put(6, b"b") == 1
    assert put(1, b"other", producer="another") == 1  # its numbers are its own
    assert q.get_many(10, timeout=1) == [b"a", b"b", b"other"]
    # A client of 0.1 (a fourth key, the items from the sixth argument) is
    # refused, not misread.
    with pytest.raises(interlock_errors.ServerError, match="same version"):
        b.fcall("il_q_put", [*keys, b.key(name, "rq:old")],
                [q._epoch, 1, 1, 1, 60_000, b"r", 1, b"x"])
    assert q.qsize() == 0


def test_idle_producers_records_are_forgotten(server):
    """The request records live in the queue's hash, one field per
    producer: every 256th put forgets those whose last put is older than
    the TTL, and keeps the others (a retry within the TTL is still
    recognised)."""
    b = connect(server.url, lease=LEASE)
    name = uname()
    q = b.Queue(name=name)
    keys = q._keys[:3]
    raw = redis_py.Redis.from_url(server.url)

    def put(producer: str, reqno: int, ttl_ms: int) -> int:
        return int(b.fcall("il_q_put", keys,
                           [q._epoch, 1, 1, reqno, ttl_ms, producer, b"r", 1, b"x"])[0])

    assert put("old", 1, 60_000) == 1
    assert raw.hget(keys[0], "rq:old") is not None
    time.sleep(0.2)
    seq = int(raw.hget(keys[0], "seq"))
    reqno = 0
    while seq % 256 != 255:  # up to the put before a prune
        reqno += 1
        assert put("new", reqno, 100) == 1
        seq += 1
    assert raw.hget(keys[0], "rq:old") is not None  # not yet pruned
    reqno += 1
    assert put("new", reqno, 100) == 1  # the 256th: prunes
    assert raw.hget(keys[0], "rq:old") is None  # idle 200 ms > 100 ms: forgotten
    assert raw.hget(keys[0], "rq:new") is not None  # just written: kept
    assert put("new", reqno, 100) == 1  # and its retry is still recognised:
    assert int(raw.hget(keys[0], "seq")) == seq + 1  # nothing put, no position moved
    assert len(q.get_many(1024, timeout=1)) == reqno + 1
    q.unlink()


def test_forked_child_is_a_new_producer(server):
    """A forked child inherits its parent's thread-local producer: if it kept
    the name and numbers, the parent's next put would carry the number the
    child's put already used, look like a retry of it, and be dropped."""
    b = connect(server.url, lease=LEASE)
    name = uname()
    q = b.Queue(name=name)
    q.put("parent")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            q.put("child")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    q.put("parent again")
    assert sorted(q.get_many(10, timeout=1)) == ["child", "parent", "parent again"]


def test_lost_acquire_reply_does_not_leak_the_lock(server, proxy):
    """acquire()'s reply is lost after the server granted the lock: the
    retry (same token) finds it already held by this call and returns it,
    so acquire() succeeds, with the fencing token of that grant, and the
    release frees it at once (before: ConnectionLost, and the lock stayed
    held by no one for a lease)."""
    direct = connect(server.url, lease=LEASE)
    via = connect(proxy.url, lease=LEASE)
    name = uname()
    lock = via.Lock(name=name)
    proxy.drop_reply(b"il_lock_acquire")
    assert lock.acquire(timeout=0.5)
    assert proxy.dropped == 1
    assert lock.fencing_token == 1
    other = direct.Lock(name=name)
    assert other.statistics().acquisitions == 1  # granted once
    lock.release()
    assert other.acquire(timeout=0.1)  # free now, not after a lease
    assert other.fencing_token == 2
    other.release()


def test_lost_semaphore_acquire_reply_does_not_leak_a_permit(server, proxy):
    """The same for a semaphore permit: value 1, the reply of the grant is
    lost; the retry returns that permit (not a second one: there is none)."""
    direct = connect(server.url, lease=LEASE)
    via = connect(proxy.url, lease=LEASE)
    name = uname()
    sem = via.Semaphore(1, name=name)
    proxy.drop_reply(b"il_sem_acquire")
    assert sem.acquire(timeout=0.5)
    assert proxy.dropped == 1
    assert sem.fencing_token == 1
    other = direct.Semaphore(1, name=name)
    assert other.get_value() == 0
    sem.release()
    assert other.acquire(timeout=0.1)
    other.release()


def test_lost_release_reply_is_not_reported_as_expired(server, proxy):
    """release()'s reply is lost after the server released: the retry finds
    the lock not ours, and must read that as "released by the first try"
    (the local deadline has not passed), not raise LeaseExpired or
    ConnectionLost.  Same for a permit."""
    direct = connect(server.url, lease=LEASE)
    via = connect(proxy.url, lease=LEASE)
    name = uname()
    lock = via.Lock(name=name)
    assert lock.acquire()
    proxy.drop_reply(b"il_lock_release")
    lock.release()
    assert proxy.dropped == 1
    assert not direct.Lock(name=name).locked()
    sem = via.Semaphore(1, name=name + "s")
    assert sem.acquire()
    proxy.drop_reply(b"il_sem_release")
    sem.release()
    assert proxy.dropped == 2
    assert direct.Semaphore(1, name=name + "s").get_value() == 1


def test_lost_replies_of_idempotent_calls_are_retried(server, proxy):
    """Event set/clear, close, and creating with create=True: each reply is
    lost once; the call succeeds (before: ConnectionLost; a retried
    create=True raised FileExistsError for the object it had just made)."""
    direct = connect(server.url, lease=LEASE)
    via = connect(proxy.url, lease=LEASE)
    name = uname()
    proxy.drop_reply(b"il_open")
    ev = via.Event(name=name, create=True)
    assert proxy.dropped == 1
    proxy.drop_reply(b"il_ev_set")
    ev.set()
    assert direct.Event(name=name).is_set()
    proxy.drop_reply(b"il_ev_clear")
    ev.clear()
    assert not direct.Event(name=name).is_set()
    q = via.Queue(name=name + "q")
    proxy.drop_reply(b"il_q_shutdown")
    q.put_many([1, 2])
    q.shutdown(immediate=True)  # retried: a second run discards nothing more
    assert proxy.dropped == 4
    dq = direct.Queue(name=name + "q")
    assert dq.is_shutdown and dq.qsize() == 0


# ------------------------------------------------------------ finding 7: one round trip

def _count_trips(b, monkeypatch) -> list[tuple[str, str, str]]:
    """Every round trip the backend ``b`` makes by its two seams: (seam,
    thread, first command)."""
    import threading

    trips: list[tuple[str, str, str]] = []

    def counted(orig, meth):
        def seam(budget, args):
            first = args[0] if meth == "_pipe_once" else args
            trips.append((meth, threading.current_thread().name, " ".join(map(str, first[:2]))))
            return orig(budget, args)
        return seam

    for meth in ("_call_once", "_pipe_once"):
        if hasattr(b, meth):  # (_pipe_once is new with the one-round-trip get)
            monkeypatch.setattr(b, meth, counted(getattr(b, meth), meth))
    return trips


def _callers(trips: list[tuple[str, str, str]]) -> list[str]:
    """The round trips of the calling thread (not the keeper's renewals)."""
    return [f"{m} {c}" for m, t, c in trips if t == "MainThread"]


def test_get_is_one_round_trip(server, monkeypatch):
    """A get on an unbounded queue, with an item there or waiting for one,
    is one round trip (before: the take function, then on an empty queue a
    blocking XREADGROUP: two)."""
    import threading

    b = connect(server.url, lease=10.0)
    other = connect(server.url, lease=10.0)
    name = uname()
    q = b.Queue(name=name)
    q.put("warm")
    assert q.get(timeout=1) == "warm"  # the consumer's first get is a take
    other.Queue(name=name).put("x")
    trips = _count_trips(b, monkeypatch)
    assert q.get(timeout=1) == "x"
    assert _callers(trips) == ["_pipe_once FCALL il_q_pre"], trips
    trips.clear()
    t = threading.Timer(0.3, lambda: other.Queue(name=name).put("y"))
    t.start()
    assert q.get(timeout=5) == "y"  # empty: it blocks, in the same round trip
    t.join()
    assert _callers(trips) == ["_pipe_once FCALL il_q_pre"], trips


def test_lost_direct_read_reply_is_not_stranded(server, proxy):
    """The one-round-trip get (il_q_pre + XREADGROUP) ran on the server but
    its reply was lost: the message is pending under us and must come back
    at once (resync), and join() return."""
    direct = connect(server.url, lease=LEASE)
    via = connect(proxy.url, lease=LEASE)
    name = uname()
    prod = direct.JoinableQueue(name=name)
    q = via.JoinableQueue(name=name)
    prod.put_many(["a", "b"])
    assert q.get(timeout=1) == "a"  # a take; the next get reads directly
    q.task_done()
    proxy.drop_reply(b"il_q_pre")
    t = time.monotonic()
    assert _get_through(q, 2 * LEASE) == "b"
    assert time.monotonic() - t < 2 * LEASE
    assert proxy.dropped == 1
    q.task_done()
    assert prod.join(timeout=3 * LEASE)


def test_blocked_direct_read_wakes_for_the_reclaim_pass(server):
    """A consumer blocked in a direct read must wake when a reclaim pass is
    due (half a lease after the last), not sleep out its slice (a lease),
    so a dead consumer's messages come back on time."""
    b = connect(server.url, lease=4.0)
    name = uname()
    q = b.Queue(name=name)
    q.put("warm")
    assert q.get(timeout=1) == "warm"  # a take: the next pass is due in 2 s
    t = time.monotonic()
    q.put_many(["d1", "d2"])
    _ghost(server.url, name, "dead", 2, alive=False)
    got = [q.get(timeout=6), q.get(timeout=6)]
    assert sorted(got) == ["d1", "d2"]
    assert time.monotonic() - t < 3.0  # the pass at ~2 s, not the slice's end at 4 s


def test_join_is_woken_by_the_last_ack_and_only_joins_cost_an_event(server):
    """The last acknowledgement wakes a waiting join() at once (not after
    its slice: a lease, 10 s here), and gets that empty the queue add no
    event when no join waits (before: an XADD on the event stream each)."""
    import threading

    b = connect(server.url, lease=10.0)
    other = connect(server.url, lease=10.0)
    name = uname()
    q = b.JoinableQueue(name=name)
    c = redis_py.Redis.from_url(server.url)
    evkey = b.key(name, "ev")
    for i in range(3):
        q.put(i)
        assert q.get(timeout=1) == i
        q.task_done()
    assert c.xlen(evkey) == 0  # no join ever waited: no event
    q.put("last")
    assert q.get(timeout=1) == "last"
    done: list[tuple[bool, float]] = []
    j = threading.Thread(target=lambda: done.append(
        (other.JoinableQueue(name=name).join(timeout=8), time.monotonic())))
    j.start()
    time.sleep(0.5)  # the join waits
    t = time.monotonic()
    q.task_done()
    j.join(10)
    assert done and done[0][0] and done[0][1] - t < 2.0


# ------------------------------------------------------------ server crash with AOF

def test_sigkill_with_aof_always_continues_transparently():
    """appendonly yes + appendfsync always: the server is SIGKILLed and
    restarted from its AOF.  Nothing this process did is lost, and every
    object carries on as if nothing happened: no StateLost, no RolledBack,
    no ConnectionLost (the first calls meet dead pooled connections: they
    are retried), the queue has what it had (a taken message still held,
    the rest waiting), the lock is still held by its holder, renewed, and
    its fencing tokens continue."""
    srv = RedisServer(extra=("--appendonly", "yes", "--appendfsync", "always"))
    try:
        lease = 2.0  # the restart takes well under a lease
        holder = connect(srv.url, lease=lease)
        other = connect(srv.url, lease=lease, grace=0.9)
        name = uname()
        q = holder.JoinableQueue(name=name)
        q.put_many(range(5))
        assert q.get(timeout=1) == 0
        q.task_done()
        assert q.get(timeout=1) == 1  # held across the crash
        lock = holder.Lock(name=name + "l")
        with lock:
            pass
        assert lock.acquire()
        assert lock.fencing_token == 2
        srv.restart()  # SIGKILL, then start from the AOF
        olock = other.Lock(name=name + "l")
        assert olock.locked()
        assert not olock.acquire(timeout=0.2)
        time.sleep(lease)  # the holder's renewals carry on against the new process
        assert lock._is_owned()
        assert olock.locked()
        lock.release()
        assert olock.acquire(timeout=1)
        assert olock.fencing_token == 3  # continues: not reissued
        olock.release()
        assert q.qsize() == 3
        assert q.unfinished_tasks == 4
        assert [q.get(timeout=1) for _ in range(3)] == [2, 3, 4]
        for _ in range(4):
            q.task_done()
        assert q.join(timeout=2)
        q.put("after")
        assert q.get(timeout=1) == "after"
        q.task_done()
    finally:
        srv.stop()


# ------------------------------------------------------------ recovery under kills

@pytest.mark.stress
def test_hundred_consumer_kills_back_to_back(server):
    """Issue 15's recovery case: 100 consumers, one after another, each take
    a message and are SIGKILLed holding it (lease 1 s).  Every message must
    come back to a live consumer; prints how long that took (from each
    message's taker's kill, and from the last kill).  A later taker may
    reclaim an earlier one's message and die holding it too: that is part
    of the case."""
    lease, n = 1.0, 100
    b = connect(server.url, lease=lease)
    name = uname()
    q = b.Queue(name=name)
    q.put_many(range(n))
    killed: dict[int, float] = {}
    for _ in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.close(r)
                cq = connect(server.url, lease=lease, grace=0.5).Queue(name=name)
                v = cq.get(timeout=10)
                os.write(w, v.to_bytes(4, "little"))
                time.sleep(60)
            finally:
                os._exit(0)
        os.close(w)
        try:
            got = os.read(r, 4)
        finally:
            os.close(r)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        if got:
            killed.setdefault(int.from_bytes(got, "little"), time.monotonic())
    last_kill = time.monotonic()
    survivor = connect(server.url, lease=lease, grace=0.7).Queue(name=name)
    arrived: dict[int, float] = {}
    deadline = last_kill + 10 * lease
    while len(arrived) < n and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            arrived.setdefault(survivor.get(timeout=1), time.monotonic())
    survivor.ack()
    assert sorted(arrived) == list(range(n))
    since_kill = sorted(arrived[v] - killed[v] for v in killed)
    since_last = sorted(t - last_kill for t in arrived.values())
    print(f"\n{n} kills in {last_kill - min(killed.values()):.2f} s; {len(killed)} messages "
          f"returned by a consumer before its kill; redelivery after its taker's kill: "
          f"p50 {since_kill[len(since_kill) // 2]:.2f} s, max {since_kill[-1]:.2f} s; "
          f"after the last kill: p50 {since_last[n // 2]:.2f} s, max {since_last[-1]:.2f} s")
    assert since_last[-1] < 3 * lease  # heartbeat gone (1 lease) + a reclaim pass (half)
    assert survivor.statistics().unfinished == 0


# ---------------------------------------------------------------- durable=

@pytest.fixture
def replicated():
    """A primary and one replica (loopback), the replica linked."""
    from redis_server import _wait
    prim = RedisServer()
    rep = None
    try:
        rep = RedisServer(extra=("--replicaof", "127.0.0.1", str(prim.port)))
        r = redis_py.Redis(port=rep.port)
        _wait(lambda: r.info("replication")["master_link_status"] == "up", "replication")
        yield prim, rep
    finally:
        if rep is not None:
            if rep.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(rep.proc.pid, signal.SIGCONT)
            rep.stop()
        prim.stop()


def test_durable_replicas_waits_for_the_replica_and_reports_one_that_lags(replicated):
    """durable=("replicas", 1): each write waits (WAIT 1) until the replica
    has it; with the replica stalled, a write is not confirmed and raises
    ConnectionLost within the call's timeout plus grace, saying the write
    may be lost; once the replica runs again, writes are confirmed again."""
    prim, rep = replicated
    b = connect(prim.url, durable=("replicas", 1), grace=0.5)
    q = b.Queue(name=uname())
    q.put(b"a")
    # confirmed: the replica has the message (its stream key holds it)
    r = redis_py.Redis(port=rep.port)
    assert any(r.type(k) == b"stream" and r.xlen(k) >= 1 for k in r.keys("*"))
    assert q.get(timeout=5) == b"a"
    os.kill(rep.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with pytest.raises(ConnectionLost, match=r"not confirmed durable \(replicas 1\)"):
            q.put(b"b", timeout=1)
        assert time.monotonic() - t0 < 1 + 0.5 + 1.5, time.monotonic() - t0
    finally:
        os.kill(rep.proc.pid, signal.SIGCONT)
    q.put(b"c", timeout=5)  # confirmed again
    got = [q.get(timeout=5), q.get(timeout=5)]
    assert got == [b"b", b"c"]  # the unconfirmed write was made (and replicated later)
    q.ack()


def test_durable_aof_is_refused_at_connect_by_a_server_without_waitaof(server):
    """durable="aof" needs WAITAOF (Redis 7.2+): connect() says so before
    anything is written; an object made without the check (check=False, as
    an unpickled one is) says so at its first write, instead of a raw
    'unknown command'.  Skipped where the server has WAITAOF."""
    r = redis_py.Redis(port=server.port)
    version = r.info("server")["redis_version"]
    if tuple(int(x) for x in version.split(".")[:2]) >= (7, 2):
        pytest.skip(f"this redis-server ({version}) has WAITAOF")
    with pytest.raises(interlock_errors.ServerError, match=r"WAITAOF.*7\.2.*" + re.escape(version)):
        connect(server.url, durable="aof")
    assert r.dbsize() == 0  # nothing written
    q = connect(server.url, durable="aof", check=False).Queue(name=uname())
    with pytest.raises(interlock_errors.ServerError, match=r"WAITAOF.*the write itself was made"):
        q.put(b"x")


# ------------------------------------------------------------------ the wire
# The fast path (bind_resp.c, Backend._fast_call): each thread's private
# connection, spoken to in C.  What redis-py's pool did for us must still
# hold: a connection the server closed while idle is replaced without an
# error, threads never share a socket, a forked child never touches its
# parent's, and INTERLOCK_REDIS_WIRE=redis-py falls back to the pool.

def _ping(b) -> bytes:
    """A raw call: not retried by any layer, so a dead connection shows."""
    return b.call(b.budget(None), "PING")


def test_connection_closed_by_the_server_while_idle_is_replaced(server):
    b = connect(server.url, lease=LEASE)
    assert b._fast, "plain redis:// must use the fast path"
    assert _ping(b) in (b"PONG", "PONG")
    first = b._fast_local.fc
    raw = redis_py.Redis.from_url(server.url)
    me = raw.client_id()
    killed = 0
    for c in raw.client_list():
        if int(c["id"]) != me:
            killed += raw.client_kill_filter(_id=int(c["id"]))
    assert killed >= 1
    time.sleep(0.05)  # idle past the peek threshold (_IDLE_CHECK)
    assert _ping(b) in (b"PONG", "PONG")  # no ConnectionLost: the stale one was replaced
    assert b._fast_local.fc is not first


def test_threads_never_share_a_connection(server):
    import threading
    b = connect(server.url, lease=LEASE)
    q = b.Queue(name=uname())
    conns: dict[int, object] = {}  # (kept alive: an ended thread's socket is
    errors: list[BaseException] = []  # not closed, its descriptor not reused)

    def work(t: int) -> None:
        try:
            for i in range(150):
                q.put((t, i))
            conns[t] = b._fast_local.fc
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert not errors and not any(th.is_alive() for th in threads)
    assert len({c.fd for c in conns.values()}) == 4  # type: ignore[attr-defined]
    got = []
    while len(got) < 600:
        got += q.get_many(600, timeout=5)
    assert sorted(got) == sorted((t, i) for t in range(4) for i in range(150))
    for t in range(4):  # FIFO per producer
        assert [i for tt, i in got if tt == t] == list(range(150))
    q.unlink()


def test_forked_child_leaves_the_parents_connection_alone(server):
    b = connect(server.url, lease=LEASE)
    q = b.Queue(name=uname())
    q.put("parent")
    mine = b._fast_local.fc
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            q.put("child")
            code = 0 if b._fast_local.fc is not mine else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _ping(b) in (b"PONG", "PONG")
    assert b._fast_local.fc is mine  # the same socket, still working
    assert sorted(q.get_many(10, timeout=1)) == ["child", "parent"]
    q.unlink()


def test_redis_py_wire_when_asked(server, monkeypatch):
    monkeypatch.setenv("INTERLOCK_REDIS_WIRE", "redis-py")
    b = connect(server.url, lease=LEASE)
    assert not b._fast
    q = b.Queue(name=uname())
    q.put(b"a")
    q.put_many([1, 2, 3])
    assert q.get(timeout=1) == b"a"
    assert q.get_many(10, timeout=1) == [1, 2, 3]
    lock = b.Lock(name=uname())
    assert lock.acquire(timeout=1)
    lock.release()
    assert not hasattr(b._fast_local, "fc")
    q.unlink()


def test_put_the_caller_repeats_after_connection_lost_is_applied_once(server):
    """A put whose outcome is unknown (the server stalled past the caller's
    timeout: ConnectionLost) and that the caller then repeats, same thread,
    same item: the repeat is sent under the same request number, so the
    server applies it once whether or not the lost call ran (here it did,
    once the server resumed).  Before: a duplicate."""
    b = connect(server.url, lease=LEASE, grace=0.3)
    q = b.Queue(name=uname())
    q.put("warm")  # connected, library loaded
    q.put_many(["a", "b"])
    assert proc_stop(server)
    try:
        with pytest.raises(ConnectionLost):
            q.put("x", timeout=0.3)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    check = connect(server.url, lease=LEASE)
    deadline = time.monotonic() + 5
    while check.Queue(name=q.name).qsize() < 4 and time.monotonic() < deadline:
        time.sleep(0.02)  # the lost call ran once the server resumed
    assert check.Queue(name=q.name).qsize() == 4
    q.put("x")  # the caller's repeat: recognised, not applied again
    q.put("x")  # a new put of an equal item: applied
    assert q.get_many(10, timeout=1) == ["warm", "a", "b", "x", "x"]
    # put_many too, and a different item after a lost call is a new put
    assert proc_stop(server)
    try:
        with pytest.raises(ConnectionLost):
            q.put_many(["m", "n"], timeout=0.3)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    while check.Queue(name=q.name).qsize() < 2 and time.monotonic() < deadline + 5:
        time.sleep(0.02)
    q.put_many(["m", "n"])
    q.put("z")
    assert q.get_many(10, timeout=1) == ["m", "n", "z"]
    q.unlink()


def test_wire_over_a_unix_socket_and_a_resp3_url(tmp_path):
    """unix:// takes the fast path too (an AF_UNIX socket, the same
    receive timeout); a URL asking for RESP3 keeps RESP3 on redis-py's own
    connections while the fast ones speak RESP2: the objects work the same."""
    sock = tmp_path / "redis.sock"
    srv = RedisServer(extra=("--unixsocket", str(sock), "--unixsocketperm", "700"))
    try:
        deadline = time.monotonic() + 5
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        for url in (f"unix://{sock}?db=0", srv.url + "?protocol=3"):
            b = connect(url, lease=LEASE)
            assert b._fast, url
            q = b.Queue(name=uname())
            q.put_many([b"a", 2, "three"])
            assert q.get(timeout=1) == b"a"
            assert q.get_many(10, timeout=1) == [2, "three"]
            assert q.qsize() == 0
            lock = b.Lock(name=uname())
            assert lock.acquire(timeout=1)
            lock.release()
            q.unlink()
            if url.startswith("unix://"):
                assert b._fast_local.fc.conn.path == str(sock)
    finally:
        srv.stop()
