"""Queue, JoinableQueue, SimpleQueue: the contract.

Every test here takes its queues from the ``*_factory`` fixtures (conftest
``BACKENDS``), so a new backend runs this file unchanged.  Timing bounds are
one-sided where it matters (a timeout never returns early) and generous
above (a loaded CI machine may be slow, but not 2 s slow).
"""
from __future__ import annotations

import multiprocessing
import pickle
import queue as stdlib_queue
import re
import sys
import threading
import time

import pytest

import interlock
from interlock import Empty, Full, QueueClosed

import _helpers as h

SLACK = 2.0  # seconds a timed-out call may overrun its timeout on a busy machine


def elapsed(fn, *args, **kwargs) -> float:
    t0 = time.monotonic()
    fn(*args, **kwargs)
    return time.monotonic() - t0


def timed_raise(exc, fn, *args, **kwargs) -> float:
    t0 = time.monotonic()
    with pytest.raises(exc):
        fn(*args, **kwargs)
    return time.monotonic() - t0


# ------------------------------------------------------------------ basics


def test_fifo_roundtrip_of_many_types(queue_factory):
    q = queue_factory()
    items = [b"raw bytes", bytearray(b"mutable"), b"", 0, -7, 3.5, "text", None,
             [1, [2, 3]], {"k": (1, 2)}, {1, 2}, h.Point(1, [2, 3]), 2**100]
    for x in items:
        q.put(x)
    assert q.qsize() == len(items)
    got = [q.get() for _ in items]
    assert got == items
    # bytes and bytearray travel raw and keep their type
    assert type(got[0]) is bytes and type(got[1]) is bytearray
    assert type(got[11]) is h.Point
    assert q.empty() and q.qsize() == 0


def test_a_loaned_buffer_is_filled_put_and_arrives(queue_factory):
    # loan(): shared memory put in place on one machine, ordinary memory
    # (a copy) across machines; the same program either way.
    np = pytest.importorskip("numpy")
    q = queue_factory()
    a = np.frombuffer(q.loan(64 * 1024 * 8), dtype=np.float64)
    assert a.flags.writeable and a.size == 64 * 1024
    a[:] = np.arange(a.size)
    q.put(("frame", a))
    tag, b = q.get(timeout=10)
    assert tag == "frame" and np.array_equal(b, np.arange(a.size))
    assert q.loan(0).nbytes == 0
    with pytest.raises(TypeError):
        q.loan("8")
    with pytest.raises(ValueError):
        q.loan(-8)


def test_bytes_subclass_is_pickled_and_keeps_its_type(queue_factory):
    q = queue_factory()
    q.put(h.SubBytes(b"sub"))
    got = q.get()
    assert type(got) is h.SubBytes and got == b"sub"


def test_exceptions_are_the_stdlib_ones(queue_factory):
    q = queue_factory(1)
    with pytest.raises(stdlib_queue.Empty):
        q.get_nowait()
    q.put(1)
    with pytest.raises(stdlib_queue.Full):
        q.put_nowait(2)
    assert issubclass(QueueClosed, ValueError)  # deprecated, kept for a release


def test_qsize_is_exact_at_each_step(queue_factory):
    q = queue_factory()
    for i in range(50):
        assert q.qsize() == i
        q.put(i)
    for i in range(50, 0, -1):
        assert q.qsize() == i
        q.get()
    assert q.qsize() == 0


# --------------------------------------------------------- blocking, timeouts


@pytest.mark.parametrize("timeout", [0.05, 0.3])
def test_get_timeout_on_empty_raises_empty_after_timeout(queue_factory, timeout):
    q = queue_factory()
    t = timed_raise(Empty, q.get, timeout=timeout)
    assert timeout - 0.005 <= t < timeout + SLACK


@pytest.mark.parametrize("timeout", [0.05, 0.3])
def test_put_timeout_on_full_raises_full_after_timeout(queue_factory, timeout):
    q = queue_factory(2)
    q.put(1)
    q.put(2)
    t = timed_raise(Full, q.put, 3, timeout=timeout)
    assert timeout - 0.005 <= t < timeout + SLACK
    assert q.qsize() == 2


def test_timeout_zero_and_block_false_do_not_wait(queue_factory):
    q = queue_factory(1)
    assert timed_raise(Empty, q.get, timeout=0) < 0.5
    assert timed_raise(Empty, q.get, False) < 0.5
    assert timed_raise(Empty, q.get, block=False, timeout=5) < 0.5  # timeout ignored
    assert timed_raise(Empty, q.get_nowait) < 0.5
    q.put(1)
    assert timed_raise(Full, q.put, 2, timeout=0) < 0.5
    assert timed_raise(Full, q.put, 2, False) < 0.5
    assert timed_raise(Full, q.put, 2, block=False, timeout=5) < 0.5
    assert timed_raise(Full, q.put_nowait, 2) < 0.5
    assert q.get_nowait() == 1


def test_blocked_get_is_woken_by_put_from_another_thread(queue_factory):
    q = queue_factory()
    out = []
    t = threading.Thread(target=lambda: out.append(q.get(timeout=10)))
    t.start()
    time.sleep(0.1)
    assert t.is_alive()
    q.put("wake")
    t.join(5)
    assert not t.is_alive() and out == ["wake"]


def test_blocked_put_is_woken_by_get_from_another_process(queue_factory, mp_ctx):
    q = queue_factory(1)
    q.put("first")
    p = mp_ctx.Process(target=h.get_n, args=(q, 1, queue_factory()))
    t0 = time.monotonic()
    p.start()
    q.put("second", timeout=30)  # blocks until the child takes "first"
    assert time.monotonic() - t0 < 30
    p.join(30)
    assert p.exitcode == 0
    assert q.get_nowait() == "second"


def test_infinite_timeout_values(queue_factory):
    q = queue_factory()
    q.put(1, timeout=None)
    q.put(2, timeout=float("inf"))
    assert q.get(timeout=float("inf")) == 1
    assert q.get(True, None) == 2


# ------------------------------------------------------- maxsize, capacity


def test_maxsize_bounds_the_count(queue_factory):
    q = queue_factory(3)
    assert q.maxsize == 3
    for i in range(3):
        assert not q.full()
        q.put_nowait(i)
    assert q.full()
    with pytest.raises(Full):
        q.put_nowait(3)
    q.get()
    assert not q.full()
    q.put_nowait(3)
    assert [q.get_nowait() for _ in range(3)] == [1, 2, 3]


@pytest.mark.parametrize("maxsize", [0, -1, -100])
def test_maxsize_zero_or_negative_means_unbounded(queue_factory, maxsize):
    q = queue_factory(maxsize, capacity=1 << 16)
    for i in range(1000):
        q.put_nowait(i)
    assert q.qsize() == 1000 and not q.full()


@pytest.mark.shm_only  # byte capacity: Redis has no such bound (only the server's maxmemory)
def test_capacity_bounds_the_bytes_exactly(queue_factory):
    # 8-byte record header, payload rounded up to 8: a 120-byte item takes
    # exactly 128 bytes.
    q = queue_factory(capacity=256)
    assert q.capacity == 256
    q.put_nowait(b"a" * 120)
    q.put_nowait(b"b" * 120)
    assert q.full()
    with pytest.raises(Full):
        q.put_nowait(b"")
    assert q.get_nowait() == b"a" * 120
    q.put_nowait(b"c" * 113)  # 8 + 113 -> 128
    with pytest.raises(Full):
        q.put_nowait(b"")
    assert q.get() == b"b" * 120 and q.get() == b"c" * 113


@pytest.mark.shm_only  # byte capacity of the ring
def test_capacity_not_power_of_two(queue_factory):
    q = queue_factory(capacity=100)
    q.put_nowait(b"x" * 88)  # 96 bytes
    with pytest.raises(Full):
        q.put_nowait(b"")  # 96 + 8 > 100
    assert q.get_nowait() == b"x" * 88


@pytest.mark.shm_only  # "larger than capacity": Redis has no byte capacity
@pytest.mark.parametrize("block,timeout", [(True, None), (True, 5), (False, None)])
def test_oversize_item_raises_value_error_at_once(queue_factory, block, timeout):
    q = queue_factory(capacity=128)
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="can never fit.*capacity is 128"):
        q.put(b"x" * 121, block, timeout)  # 8 + 121 -> 136 > 128
    assert time.monotonic() - t0 < 1.0
    q.put(b"x" * 120, block, timeout)  # exactly 128: fits
    assert q.get() == b"x" * 120
    with pytest.raises(ValueError, match="can never fit"):
        q.put_nowait(list(range(100)))  # pickled, too
    with pytest.raises(ValueError, match="can never fit"):
        q.put_many([b"ok", b"y" * 500])
    assert q.empty()  # nothing of the refused batch went in


def test_full_and_empty_reflect_state(queue_factory):
    q = queue_factory(1)
    assert q.empty() and not q.full()
    q.put(b"")
    assert not q.empty() and q.full()


@pytest.mark.shm_only  # the ring's byte accounting and wrap-around: a Stream has neither
def test_ring_wraps_many_times_with_varied_sizes(queue_factory):
    """A model of the byte accounting: an item takes 8 + len rounded up to 8;
    put_nowait must succeed exactly when the model says it fits."""
    cap = 200
    q = queue_factory(capacity=cap)
    rnd = __import__("random").Random(5)
    sent: list[bytes] = []
    used = 0
    for i in range(3000):
        item = bytes([i % 251]) * rnd.randrange(0, 150)
        need = (8 + len(item) + 7) // 8 * 8
        if used + need > cap:
            with pytest.raises(Full):
                q.put_nowait(item)
            while used + need > cap:
                x = sent.pop(0)
                assert q.get_nowait() == x
                used -= (8 + len(x) + 7) // 8 * 8
        q.put_nowait(item)
        sent.append(item)
        used += need
        assert q.qsize() == len(sent)
    while sent:
        assert q.get_nowait() == sent.pop(0)
    assert q.empty()


# ------------------------------------------------------------- batches


def test_put_many_get_many_order(queue_factory):
    q = queue_factory()
    q.put_many(range(10))
    q.put_many([b"a", bytearray(b"b")])
    assert q.qsize() == 12
    assert q.get_many(4) == [0, 1, 2, 3]
    assert q.get_many() == [4, 5, 6, 7, 8, 9, b"a", bytearray(b"b")]
    with pytest.raises(Empty):
        q.get_many(block=False)
    t = timed_raise(Empty, q.get_many, 5, timeout=0.1)
    assert 0.095 <= t < 0.1 + SLACK


def test_put_many_accepts_iterables_and_empty(queue_factory):
    q = queue_factory()
    q.put_many([])
    q.put_many(iter([1, 2]))
    q.put_many(x * x for x in range(3))
    assert q.get_many() == [1, 2, 0, 1, 4]


def test_put_many_nonblocking_is_all_or_nothing(queue_factory):
    q = queue_factory(4)
    q.put(0)
    with pytest.raises(Full, match="whole batch"):
        q.put_many([1, 2, 3, 4], block=False)
    assert q.qsize() == 1  # nothing of the batch
    q.put_many([1, 2, 3], block=False)
    assert q.get_many() == [0, 1, 2, 3]


@pytest.mark.shm_only  # all-or-nothing against the byte capacity (the maxsize case runs on both)
def test_put_many_nonblocking_all_or_nothing_on_bytes(queue_factory):
    q = queue_factory(capacity=64)
    q.put(b"x" * 24)  # 8 + 24 = 32 bytes: 32 left
    with pytest.raises(Full):
        q.put_many([b"a" * 8, b"b" * 8, b"c" * 8], block=False)  # 3 x 16 = 48 > 32
    assert q.qsize() == 1
    q.put_many([b"a" * 8, b"b" * 8], block=False)  # 2 x 16 = 32: exactly fits
    with pytest.raises(Full):
        q.put_many([b""], block=False)
    assert q.get_many() == [b"x" * 24, b"a" * 8, b"b" * 8]


def test_put_many_blocking_timeout_reports_partial_count(queue_factory):
    q = queue_factory(3)
    with pytest.raises(Full) as ei:
        q.put_many(range(5), timeout=0.1)
    assert ei.value.put_count == 3
    assert q.get_many() == [0, 1, 2]


def test_put_many_blocking_completes_when_consumer_drains(queue_factory):
    q = queue_factory(2)
    got = []

    def drain():
        while len(got) < 6:
            got.extend(q.get_many(timeout=10))

    t = threading.Thread(target=drain)
    t.start()
    q.put_many(range(6), timeout=10)
    t.join(10)
    assert got == list(range(6))


def test_get_many_bounded_by_max_items_and_maxsize(queue_factory):
    q = queue_factory(3)
    q.put_many([1, 2, 3])
    assert q.get_many(2) == [1, 2]
    assert q.get_many(100) == [3]


@pytest.mark.shm_only  # a property of the shm ring's get_many (bind_ring.c, IL_BATCH_BYTES)
@pytest.mark.parametrize("overflow", [False, True], ids=["ring", "overflow"])
def test_get_many_of_large_items_ends_after_256_kib(queue_factory, overflow):
    """A batch's objects are freed together: past glibc's trim threshold
    that gave the heap back to the kernel after every batch (get_many(16) of
    64 KiB items at a fifth of the speed of get()).  One get_many() takes
    records up to 256 KiB (at least one), in order, losing none."""
    # capacity=None on an unbounded queue: a 4 MiB ring, then the overflow
    q = queue_factory() if overflow else queue_factory(capacity=8 << 20)
    items = [bytes([i]) * (64 << 10) for i in range(40)]
    if overflow:   # fill the ring, so that the 40 go to the overflow blocks
        filler = [b"f" * (64 << 10)] * 64
        while q.statistics().overflow_depth == 0:
            q.put_many(filler)
    q.put_many(items)
    if overflow:
        assert q.statistics().overflow_depth > 0
        while q.get_many(1)[0][:1] == b"f":
            pass
        got = [items[0]]
    else:
        got = []
    sizes = []
    while len(got) < len(items):
        batch = q.get_many(1024, timeout=5)
        sizes.append(len(batch))
        got.extend(batch)
    assert got == items   # FIFO, exactly once
    # 64 KiB + an 8-byte header, 8-aligned: the 4th record reaches 256 KiB
    assert max(sizes) == 4, sizes
    small = list(range(2000))
    q.put_many(small)
    assert q.get_many(1024) == small[:1024]   # small items: still max_items at a time
    assert q.get_many(1024) == small[1024:]


# ------------------------------------------------------------- numpy


def test_numpy_arrays_out_of_band_and_writable(queue_factory):
    np = pytest.importorskip("numpy")
    q = queue_factory(capacity=1 << 20)
    a = np.arange(10000, dtype=np.float64).reshape(100, 100)
    b = np.zeros(3, dtype=[("x", "i4"), ("y", "f8")])
    c = a[:, ::2]  # not contiguous: pickled in-band
    q.put(a)
    q.put({"b": b, "c": c, "list": [a[0], a[1]]})
    a2 = q.get()
    d = q.get()
    assert a2.dtype == a.dtype and a2.shape == a.shape and (a2 == a).all()
    assert a2.flags.writeable
    a2[0, 0] = -1.0  # a fresh copy: writing it changes nothing elsewhere
    assert a[0, 0] == 0.0
    assert (d["b"] == b).all() and d["b"].flags.writeable
    assert (d["c"] == c).all()
    assert (d["list"][1] == a[1]).all()


# -------------------------------------------------------------- shutdown


def test_shutdown_is_the_stdlib_class() -> None:
    assert issubclass(QueueClosed, interlock.ShutDown) and issubclass(QueueClosed, ValueError)
    assert interlock.ShutDown is interlock.errors.ShutDown
    if sys.version_info >= (3, 13):
        assert interlock.ShutDown is stdlib_queue.ShutDown
    else:
        assert interlock.ShutDown.__name__ == "ShutDown"
        assert interlock.ShutDown.__mro__[1:] == (Exception, BaseException, object)


def test_shutdown_put_raises_get_drains_then_raises(queue_factory):
    q = queue_factory()
    q.put_many([1, 2])
    assert not q.is_shutdown
    q.shutdown()
    assert q.is_shutdown
    with pytest.raises(interlock.ShutDown, match="shut-down"):
        q.put(3)
    with pytest.raises(interlock.ShutDown):
        q.put_many([3])
    with pytest.raises(interlock.ShutDown):
        q.put_nowait(3)
    assert q.qsize() == 2
    assert q.get() == 1
    assert q.get_nowait() == 2
    with pytest.raises(interlock.ShutDown, match="drained"):
        q.get()
    with pytest.raises(interlock.ShutDown):
        q.get_nowait()
    with pytest.raises(interlock.ShutDown):
        q.get_many(timeout=1)
    with pytest.raises(QueueClosed):  # the deprecated name still catches it
        q.get(timeout=1)
    q.shutdown()  # idempotent
    assert q.is_shutdown


def test_iteration_stops_at_shutdown(queue_factory):
    q = queue_factory()
    q.put_many(range(5))
    q.shutdown()
    assert list(q) == [0, 1, 2, 3, 4]
    assert list(q) == []


def test_shutdown_wakes_blocked_getters_and_putters(queue_factory):
    q_empty = queue_factory()
    q_full = queue_factory(1)
    q_full.put(0)
    results = []

    def call(fn, *a):
        t0 = time.monotonic()
        try:
            fn(*a, timeout=30)
            results.append(("returned", 0.0))
        except interlock.ShutDown:
            results.append(("shut down", time.monotonic() - t0))

    ts = [threading.Thread(target=call, args=(q_empty.get,)) for _ in range(3)]
    ts += [threading.Thread(target=call, args=(q_full.put, 1)) for _ in range(2)]
    for t in ts:
        t.start()
    time.sleep(0.2)
    q_empty.shutdown()
    q_full.shutdown()
    for t in ts:
        t.join(10)
    assert not any(t.is_alive() for t in ts)
    assert [r[0] for r in results] == ["shut down"] * 5
    assert max(r[1] for r in results) < 10
    assert q_full.get() == 0  # what was in stays gettable


def test_shutdown_immediate_discards_and_get_raises_at_once(queue_factory):
    q = queue_factory()
    q.put_many(range(5))
    assert q.get() == 0
    q.shutdown(immediate=True)
    assert q.is_shutdown
    assert q.qsize() == 0 and q.empty() and not q.full()
    with pytest.raises(interlock.ShutDown):
        q.get_nowait()
    with pytest.raises(interlock.ShutDown):
        q.get(timeout=5)
    with pytest.raises(interlock.ShutDown):
        q.put(9)
    assert list(q) == []
    assert q.statistics().depth == 0


def test_shutdown_then_immediate_still_discards(queue_factory):
    q = queue_factory()
    q.put_many([1, 2, 3])
    q.shutdown()
    assert q.get() == 1
    q.shutdown(immediate=True)
    assert q.qsize() == 0
    with pytest.raises(interlock.ShutDown):
        q.get_nowait()


def test_shutdown_immediate_wakes_a_blocked_getter(queue_factory):
    q = queue_factory()
    out = []

    def get():
        try:
            q.get(timeout=30)
            out.append("item")
        except interlock.ShutDown:
            out.append("shut down")

    t = threading.Thread(target=get)
    t.start()
    time.sleep(0.2)
    q.shutdown(immediate=True)
    t.join(10)
    assert out == ["shut down"]


def test_shutdown_immediate_counts_discarded_items_done(joinable_queue_factory):
    # queue.Queue.shutdown(immediate=True): the items removed are counted
    # done, so join() returns once the items taken before are done.
    q = joinable_queue_factory()
    q.put_many(["a", "b", "c", "d"])
    assert q.get() == "a"
    joined = threading.Event()
    t = threading.Thread(target=lambda: q.join(timeout=30) and joined.set())
    t.start()
    time.sleep(0.2)
    q.shutdown(immediate=True)
    assert q.unfinished_tasks == 1  # "a": taken, not yet done
    assert not joined.wait(0.3)
    q.task_done()
    t.join(10)
    assert joined.is_set()
    assert q.unfinished_tasks == 0 and q.join(timeout=1)
    with pytest.raises(ValueError):
        q.task_done()


def test_shutdown_immediate_wakes_join_with_nothing_taken(joinable_queue_factory):
    q = joinable_queue_factory()
    q.put_many(range(3))
    joined = threading.Event()
    t = threading.Thread(target=lambda: q.join(timeout=30) and joined.set())
    t.start()
    time.sleep(0.2)
    q.shutdown(immediate=True)
    t.join(10)
    assert joined.is_set()


def test_shutdown_is_seen_by_another_process(backend, queue_factory, mp_ctx):
    q = queue_factory()
    rec_q = queue_factory()
    p = mp_ctx.Process(target=h.get_n, args=(q, 1, rec_q))
    p.start()
    q.put("only")
    p.join(30)
    assert rec_q.get(timeout=5) == ["only"]
    q.shutdown()
    # an unrelated process that knows only where the queue lives and its name
    code = (f"import interlock; q = interlock.connect({backend.url!r}).Queue("
            f"name={q.name!r}, create=False); print(q.is_shutdown)")
    from conftest import run_python

    r = run_python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"


def test_closed_property_is_deprecated(queue_factory):
    q = queue_factory()
    with pytest.warns(DeprecationWarning, match="is_shutdown"):
        assert q.closed is False
    q.shutdown()
    with pytest.warns(DeprecationWarning):
        assert q.closed is True
    assert q.statistics().closed and q.statistics().is_shutdown


# ---------------------------------------------------- close: multiprocessing's


def _after_close(q) -> list[str]:
    """What each call does on a closed queue object: "ok", or the exception's
    type and message with the queue's repr left out."""
    out = []
    calls = [("put", lambda: q.put(1)), ("get", lambda: q.get(timeout=0.2)),
             ("put_nowait", lambda: q.put_nowait(1)), ("get_nowait", lambda: q.get_nowait()),
             ("close", q.close), ("join_thread", q.join_thread),
             ("cancel_join_thread", q.cancel_join_thread)]
    for name, fn in calls:
        try:
            fn()
            out.append(f"{name}: ok")
        except Exception as e:
            msg = re.sub(r"Queue <.*> is closed", "Queue <...> is closed", str(e))
            out.append(f"{name}: {type(e).__name__}: {msg}")
    return out


@pytest.mark.parametrize("kind", ["Queue", "JoinableQueue"])
def test_close_is_multiprocessings_side_by_side(backend, kind):
    make = backend.queue if kind == "Queue" else backend.joinable_queue
    ours, theirs = make(), getattr(multiprocessing, kind)()
    try:
        for q in (ours, theirs):
            q.put("kept")
            q.close()
        assert _after_close(ours) == _after_close(theirs) == [
            "put: ValueError: Queue <...> is closed", "get: ValueError: Queue <...> is closed",
            "put_nowait: ValueError: Queue <...> is closed",
            "get_nowait: ValueError: Queue <...> is closed",
            "close: ok", "join_thread: ok", "cancel_join_thread: ok"]
        assert not ours.is_shutdown  # the queue itself is untouched
        assert ours.qsize() == 1
    finally:
        theirs.join_thread()


def test_simple_queue_close_is_multiprocessings_side_by_side(backend):
    ours, theirs = backend.simple_queue(), multiprocessing.SimpleQueue()
    for q in (ours, theirs):
        q.put("kept")
        q.close()
    for q in (ours, theirs):
        for fn in (lambda: q.put(1), q.get, q.empty):
            with pytest.raises(OSError, match="handle is closed"):
                fn()
        q.close()  # idempotent


def test_close_does_not_affect_other_objects_or_processes(backend, queue_factory):
    q = queue_factory()
    other = backend.queue(name=q.name, create=False)  # another handle, this process
    q.put("before")
    q.close()
    other.put("after")  # not closed: another object
    rec_q = queue_factory()
    # The closed object, pickled to a spawned process: open there, as
    # multiprocessing.Queue's copy is.  (A forked child inherits the object
    # itself, closed, as multiprocessing's does.)
    p = multiprocessing.get_context("spawn").Process(target=h.get_n, args=(q, 2, rec_q))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert rec_q.get(timeout=5) == ["before", "after"]
    with pytest.raises(ValueError, match="is closed"):
        q.put("no")


def _idiom_producer(q, idx: int, n: int) -> None:
    # multiprocessing's idiom, unchanged: put, then close and join the feeder.
    for s in range(n):
        q.put((idx, s))
    q.close()
    q.join_thread()


def _idiom_consumer(q, total: int, out) -> None:
    got = [q.get(timeout=60) for _ in range(total)]
    out.put(got)


@pytest.mark.parametrize("impl", ["multiprocessing", "interlock"])
def test_multiprocessing_close_join_thread_idiom_runs_unchanged(impl, backend, mp_ctx_fs):
    # Several producers each put N items then close(); join_thread(); one
    # consumer gets exactly all of them, each producer's in order.  The same
    # program, with multiprocessing's queue, passes the same way.
    if impl == "multiprocessing":
        if backend.name != "shm":
            pytest.skip("the multiprocessing run needs no backend")
        q, out = mp_ctx_fs.Queue(), mp_ctx_fs.Queue()
    else:
        q, out = backend.queue(), backend.queue()
    nprod, n = 3, 200
    cons = mp_ctx_fs.Process(target=_idiom_consumer, args=(q, nprod * n, out))
    cons.start()
    prods = [mp_ctx_fs.Process(target=_idiom_producer, args=(q, i, n)) for i in range(nprod)]
    for p in prods:
        p.start()
    for p in prods:
        p.join(60)
    got = out.get(timeout=60)
    cons.join(60)
    assert [p.exitcode for p in prods] == [0] * nprod and cons.exitcode == 0
    assert sorted(got) == [(i, s) for i in range(nprod) for s in range(n)]  # exactly once
    for i in range(nprod):
        assert [s for p, s in got if p == i] == list(range(n))  # FIFO per producer
    if impl == "multiprocessing":
        for x in (q, out):
            x.close()
            x.join_thread()


def test_join_thread_and_cancel_join_thread_are_noops(queue_factory):
    q = queue_factory()
    q.put(1)
    q.join_thread()
    q.cancel_join_thread()
    assert q.get() == 1


# ------------------------------------------------------------- JoinableQueue


def test_joinable_task_done_and_join(joinable_queue_factory):
    q = joinable_queue_factory()
    assert q.join(timeout=0) is True  # nothing put: done at once
    q.put_many(["a", "b"])
    assert q.unfinished_tasks == 2
    t = elapsed(lambda: q.join(timeout=0.1))
    assert t >= 0.095
    assert q.join(timeout=0.05) is False
    q.get()
    q.task_done()
    assert q.unfinished_tasks == 1
    assert q.join(timeout=0.05) is False
    q.get()
    q.task_done()
    assert q.unfinished_tasks == 0
    assert q.join() is True


def test_joinable_too_many_task_done_raises(joinable_queue_factory):
    q = joinable_queue_factory()
    with pytest.raises(ValueError, match="too many times"):
        q.task_done()
    q.put(1)
    q.get()
    q.task_done()
    with pytest.raises(ValueError, match="too many times"):
        q.task_done()
    q.put(2)  # still usable
    assert q.unfinished_tasks == 1


def test_joinable_join_across_processes(joinable_queue_factory, mp_ctx):
    q = joinable_queue_factory()
    q.put_many(range(10))
    p = mp_ctx.Process(target=h.consume_with_task_done, args=(q, 10))
    p.start()
    assert q.join(timeout=30) is True
    assert q.unfinished_tasks == 0
    p.join(30)
    assert p.exitcode == 0


def test_joinable_join_woken_by_last_task_done_in_thread(joinable_queue_factory):
    q = joinable_queue_factory()
    q.put(1)

    def worker():
        q.get()
        time.sleep(0.1)
        q.task_done()

    t = threading.Thread(target=worker)
    t.start()
    t0 = time.monotonic()
    assert q.join(timeout=10) is True
    assert 0.05 <= time.monotonic() - t0 < 5
    t.join()


# -------------------------------------------------------------- SimpleQueue


@pytest.mark.threaded_fork("a Redis consumer's heartbeat held across the fork keeps the lease keeper "
                           "running: the caller's own multi-threaded fork", backend="redis")
def test_simple_queue(simple_queue_factory, mp_ctx):
    q = simple_queue_factory()
    assert q.empty()
    q.put("x")
    assert not q.empty()
    assert q.get() == "x"
    out = simple_queue_factory()
    p = mp_ctx.Process(target=h.get_n, args=(q, 2, out))
    p.start()
    q.put(1)
    q.put([2])
    p.join(30)
    assert p.exitcode == 0
    assert out.get(timeout=5) == [1, [2]]
    assert q.maxsize == 0


# --------------------------------------------------- processes and pickling


@pytest.mark.threaded_fork("a Redis consumer's heartbeat held across the fork keeps the lease keeper "
                           "running: the caller's own multi-threaded fork", backend="redis")
def test_pickling_by_name_to_children(queue_factory, mp_ctx):
    q = queue_factory(5)
    out = queue_factory()
    p = mp_ctx.Process(target=h.put_items, args=(q, [b"one", h.Point(2, [3]), "three"]))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    assert [q.get(timeout=5) for _ in range(3)] == [b"one", h.Point(2, [3]), "three"]
    q.put_many([7, 8])
    p2 = mp_ctx.Process(target=h.echo_qsize, args=(q, out))
    p2.start()
    p2.join(30)
    assert out.get(timeout=5) == 2  # the child sees the same queue, not a copy


def test_queue_pickles_by_name_and_options(backend, queue_factory):
    q = queue_factory(7, capacity=4096)
    q2 = pickle.loads(pickle.dumps(q))
    try:
        assert q2.name == q.name and q2.maxsize == 7
        if backend.name == "shm":  # the only backend with a byte capacity
            assert q2.capacity == 4096
        q.put("shared")
        assert q2.get_nowait() == "shared"
    finally:
        q2.detach()


def test_queue_sent_through_another_queue(queue_factory):
    outer = queue_factory()
    inner = queue_factory()
    outer.put(inner)
    inner2 = outer.get()
    try:
        inner.put(1)
        assert inner2.get() == 1
    finally:
        inner2.detach()


def test_pool_initializer_args_and_task_args(queue_factory, mp_ctx):
    q = queue_factory()
    with mp_ctx.Pool(2, initializer=h.pool_init, initargs=(q, "tag")) as pool:
        assert pool.map(h.pool_task, range(6)) == [x * x for x in range(6)]
        pids = pool.map(h.pool_task_with_queue, [(q, 100 + i) for i in range(4)])
        pool.close()
        pool.join()
    got = [q.get(timeout=5) for _ in range(10)]
    from_init = sorted(g for g in got if isinstance(g, tuple))
    # every initializer-built task saw the initializer's arguments
    assert [(tag, x) for tag, x, _ in from_init] == [("tag", x) for x in range(6)]
    assert sorted(g for g in got if isinstance(g, int)) == [100, 101, 102, 103]
    assert all(pid != __import__("os").getpid() for _, _, pid in from_init)  # ran in workers
    assert os_pid_not_in(pids)
    assert q.empty()


def os_pid_not_in(pids) -> bool:
    import os

    return os.getpid() not in pids


def test_threads_in_one_process(queue_factory):
    q = queue_factory(8, capacity=1024)
    nprod, ncons, n = 4, 3, 400
    results: list[list] = [[] for _ in range(ncons)]
    errors = []

    def prod(i):
        try:
            for s in range(n):
                q.put((i, s), timeout=30)
        except Exception as e:  # pragma: no cover
            errors.append(e)

    def cons(j):
        try:
            while True:
                try:
                    results[j].append(q.get(timeout=30))
                except interlock.ShutDown:
                    return
        except Exception as e:  # pragma: no cover
            errors.append(e)

    ps = [threading.Thread(target=prod, args=(i,)) for i in range(nprod)]
    cs = [threading.Thread(target=cons, args=(j,)) for j in range(ncons)]
    for t in ps + cs:
        t.start()
    for t in ps:
        t.join(60)
    q.shutdown()
    for t in cs:
        t.join(60)
    assert not errors
    allitems = [x for r in results for x in r]
    assert sorted(allitems) == sorted((i, s) for i in range(nprod) for s in range(n))
    for r in results:  # each consumer sees each producer's items in order
        for i in range(nprod):
            seqs = [s for (p, s) in r if p == i]
            assert seqs == sorted(seqs)


def test_statistics_snapshot(backend, queue_factory):
    q = queue_factory(5, capacity=1024)
    q.put(b"12345678")
    s = q.statistics()
    # what every backend reports
    assert s.name == q.name and s.depth == 1 and s.maxsize == 5 and not s.is_shutdown
    if backend.name == "shm":  # bytes, the ring's locks, attached processes
        assert s.bytes_used == 16 and s.capacity == 1024
        assert s.producer_lock_owner_pid == 0 and s.consumer_lock_owner_pid == 0
        assert __import__("os").getpid() in s.attached_pids
        assert "qsize=1" in repr(q)
    else:  # Redis: taken-but-unacknowledged messages, consumers of the group
        assert s.unfinished == 1 and s.pending == 0 and s.held_here == 0
        assert q.get() == b"12345678"
        s = q.statistics()
        assert s.depth == 0 and s.unfinished == 1 and s.pending == 1 and s.held_here == 1
        assert s.consumers == 1
        q.ack()
        s = q.statistics()
        assert s.unfinished == 0 and s.pending == 0 and s.held_here == 0
