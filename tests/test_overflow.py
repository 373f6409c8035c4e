"""Unbounded means unbounded: a default queue never blocks a put for lack of
room (docs/design/overflow.md).

A ``Queue()`` made without ``maxsize`` or ``capacity`` overflows into block
files when its ring is full.  What must hold: put() does not block; FIFO and
exactly-once across the ring and the overflow, with several producers and
consumers; the multiprocessing docs' task-queue pattern (every task put
before any worker starts) completes; nothing lost, duplicated or left in
/dev/shm whoever is killed where.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import resource
import signal
import subprocess
import sys
from typing import Any

import pytest

import interlock
from interlock import _core, _segment

from _helpers import uname
from _testbuild import crashpoint_build
from conftest import OUR_PIDS

KiB = 1 << 10
RING = 4 << 20  # a default queue's ring


def ovf_files() -> list[str]:
    return sorted(e for e in os.listdir(_segment.SHM_DIR)
                  if e.startswith(_segment.SPILL_PREFIX) and ".ovf." in e)


def task(i: int, size: int = 4 * KiB) -> tuple[int, bytes]:
    return i, i.to_bytes(4, "little") * (size // 4)


# ------------------------------------------------------------------ basics

def test_put_never_blocks_a_default_queue() -> None:
    # Before the overflow: put_nowait raised queue.Full once 4 MiB were held.
    q: interlock.Queue[Any] = interlock.Queue()
    try:
        n = 3 * RING // (4 * KiB)  # three rings' worth
        for i in range(n):
            q.put_nowait(task(i))
        assert not q.full()
        s = q.statistics()
        assert q.qsize() == n and s.depth == n
        assert 0 < s.overflow_depth < n and s.overflow_bytes > RING
        assert ovf_files()
        got = [q.get_nowait() for _ in range(n)]
        assert got == [task(i) for i in range(n)]
        assert q.empty() and q.statistics().overflow_depth == 0
        with pytest.raises(interlock.Empty):
            q.get_nowait()
        assert len(ovf_files()) <= 1  # the drained blocks are removed as they are passed
    finally:
        q.detach()
    assert ovf_files() == []


def test_fifo_holds_when_the_queue_goes_back_and_forth() -> None:
    # Ring -> overflow -> drained -> ring again, with gets in between.
    q: interlock.Queue[Any] = interlock.Queue()
    try:
        expect = 0
        nxt = 0
        for burst in range(4):
            for _ in range(1500):  # more than a ring's worth of 4 KiB items
                q.put(task(nxt))
                nxt += 1
            for _ in range(1000 if burst < 3 else nxt - expect):
                assert q.get(timeout=5) == task(expect)
                expect += 1
        assert expect == nxt and q.qsize() == 0
    finally:
        q.detach()
    assert ovf_files() == []


def test_put_many_and_get_many_cross_the_boundary_in_order() -> None:
    q: interlock.Queue[Any] = interlock.Queue()
    try:
        items = [task(i) for i in range(2500)]
        q.put_many(items[:1000])
        q.put_many(items[1000:], block=False)  # all or nothing: all, into the overflow
        got: list[Any] = []
        while len(got) < len(items):
            got += q.get_many(300)
        assert got == items
    finally:
        q.detach()


def test_bounded_queues_still_block() -> None:
    # maxsize= or capacity= ask for a bound: it holds.
    for q in (interlock.Queue(maxsize=2), interlock.Queue(capacity=4096)):
        try:
            q.put(b"a" * 1000)
            q.put(b"b" * 1000)
            with pytest.raises(interlock.Full):
                q.put(b"c" * 3000, timeout=0.05)
            assert q.statistics().overflow_depth == 0
        finally:
            q.detach()
    assert ovf_files() == []


def test_large_items_in_the_overflow_are_spilled_and_kept_in_order() -> None:
    q: interlock.Queue[Any] = interlock.Queue()
    try:
        for i in range(1100):
            q.put(task(i))
        big = b"B" * (3 << 20)
        q.put(big)  # after the ring filled: a reference in the overflow
        q.put(task(5000))
        assert q.statistics().overflow_depth >= 2
        got = [q.get() for _ in range(1102)]
        assert got[:1100] == [task(i) for i in range(1100)]
        assert got[1100] == big and got[1101] == task(5000)
        assert q.statistics().spilled_total >= 2  # the item's file and a block
    finally:
        q.detach()
    assert not any(e.startswith(_segment.SPILL_PREFIX) for e in os.listdir(_segment.SHM_DIR))


def test_joinable_queue_counts_the_overflow() -> None:
    q: interlock.JoinableQueue[Any] = interlock.JoinableQueue()
    try:
        n = 1500
        for i in range(n):
            q.put(task(i))
        assert q.statistics().overflow_depth > 0
        assert q.unfinished_tasks == n
        for _ in range(n):
            q.get()
            q.task_done()
        assert q.join(timeout=5)
        with pytest.raises(ValueError):
            q.task_done()
    finally:
        q.detach()


# ------------------------------------------------ processes: the mp pattern

def _worker(tasks: Any, done: Any) -> None:
    for i, blob in iter(tasks.get, "STOP"):
        assert blob == task(i)[1]
        done.put(i)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_the_multiprocessing_docs_task_queue_pattern_completes(method: str) -> None:
    # multiprocessing's docs: put all tasks, then start the workers, then one
    # STOP per worker.  With 10 rings' worth of tasks this hung before the
    # overflow (the first put beyond 4 MiB waited for a worker not started).
    ctx = mp.get_context(method)
    tasks: interlock.Queue[Any] = interlock.Queue()
    done: interlock.Queue[Any] = interlock.Queue()
    nworkers, n = 2, 10 * RING // (4 * KiB)
    try:
        for i in range(n):
            tasks.put(task(i))
        assert tasks.statistics().overflow_depth > 0
        workers = [ctx.Process(target=_worker, args=(tasks, done)) for _ in range(nworkers)]
        for w in workers:
            w.start()
        for _ in workers:
            tasks.put("STOP")
        results = sorted(done.get(timeout=120) for _ in range(n))
        for w in workers:
            w.join(60)
            assert w.exitcode == 0
        assert results == list(range(n))
    finally:
        tasks.detach()
        done.detach()
    assert ovf_files() == []


def _producer(name: str, idx: int, n: int) -> None:
    q = interlock.Queue(name=name, create=False)
    for i in range(n):
        q.put((idx, i, b"p" * (2 * KiB + (i % 7) * 512)))
    q.detach()


def _consumer(name: str, out_name: str, nprod: int) -> None:
    q = interlock.Queue(name=name, create=False)
    out = interlock.Queue(name=out_name, create=False)
    got = []
    while True:
        item = q.get(timeout=60)
        if item is None:
            break
        got.append(item[:2])
    out.put(got)
    q.detach()
    out.detach()


def test_fifo_and_exactly_once_with_producers_and_consumers_across_the_boundary() -> None:
    ctx = mp.get_context("fork")
    name, out_name = uname("ovfq"), uname("ovfout")
    q: interlock.Queue[Any] = interlock.Queue(name=name)
    out: interlock.Queue[Any] = interlock.Queue(name=out_name)
    nprod, ncons, n = 3, 2, 3000  # 3 x 3000 x ~3.5 KiB: the ring overflows
    try:
        prods = [ctx.Process(target=_producer, args=(name, p, n)) for p in range(nprod)]
        for p in prods:
            p.start()
        # consumers start late: the overflow is in use when they come
        for _ in range(6000):
            if q.statistics().overflow_depth:
                break
            prods[0].join(0.01)
        assert q.statistics().overflow_depth
        cons = [ctx.Process(target=_consumer, args=(name, out_name, nprod))
                for _ in range(ncons)]
        for c in cons:
            c.start()
        for p in prods:
            p.join(120)
            assert p.exitcode == 0
        for _ in cons:
            q.put(None)
        seen = [out.get(timeout=120) for _ in cons]
        for c in cons:
            c.join(60)
            assert c.exitcode == 0
        for got in seen:
            for idx in range(nprod):
                mine = [i for j, i in got if j == idx]
                assert mine == sorted(mine), "a consumer saw a producer's items out of order"
        everything = sorted(x for got in seen for x in got)
        assert everything == [(p, i) for p in range(nprod) for i in range(n)]
    finally:
        q.detach()
        out.detach()
    assert ovf_files() == []


# ----------------------------------------------------- death and /dev/shm

def _fill_and_die(name: str, n: int) -> None:
    q = interlock.Queue(name=name)
    for i in range(n):
        q.put(task(i))
    os.kill(os.getpid(), signal.SIGKILL)


def test_overflow_of_a_killed_queue_is_kept_in_order_then_removed_with_it() -> None:
    name = uname("ovfkill")
    n = 2500
    p = mp.get_context("fork").Process(target=_fill_and_die, args=(name, n))
    p.start()
    p.join(60)
    assert p.exitcode == -signal.SIGKILL
    assert ovf_files()
    q: interlock.Queue[Any] = interlock.Queue(name=name, create=False)  # the old contents
    try:
        assert q.qsize() == n
        assert [q.get(timeout=5) for _ in range(n // 2)] == [task(i) for i in range(n // 2)]
    finally:
        q.detach()  # the last user: the items left and their blocks go
    assert ovf_files() == []
    assert not os.path.exists(_segment.path_of(name))


def test_clean_removes_the_overflow_of_a_queue_whose_users_all_died() -> None:
    name = uname("ovfclean")
    p = mp.get_context("fork").Process(target=_fill_and_die, args=(name, 2500))
    p.start()
    p.join(60)
    assert ovf_files()
    assert name in [s.name for s in _segment.clean(remove=True)]
    assert ovf_files() == []


def _put_with_a_file_size_limit(name: str, out: Any) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * KiB, 64 * KiB))
    q = interlock.Queue(name=name, create=False)
    try:
        q.put(task(99999))
        out.put("put")
    except OSError as e:
        out.put(f"{e.errno} {e}")
    q.detach()


def test_no_room_for_a_new_block_is_an_oserror_with_nothing_put() -> None:
    # The block's file cannot grow (RLIMIT_FSIZE stands in for a full
    # /dev/shm: the same error path, EFBIG instead of ENOSPC).
    name = uname("ovffull")
    q: interlock.Queue[Any] = interlock.Queue(name=name)
    out: interlock.Queue[Any] = interlock.Queue()
    try:
        n = 0
        while q.statistics().overflow_depth == 0:
            q.put(task(n))
            n += 1
        for _ in range(2000):  # to the end of the first block: the next put needs a new one
            q.put(task(n))
            n += 1
        before = q.qsize()
        files = ovf_files()
        p = mp.get_context("fork").Process(target=_put_with_a_file_size_limit, args=(name, out))
        p.start()
        p.join(60)
        res = out.get(timeout=10)
        if res == "put":  # the record still fit in the current block
            pytest.skip("no new block was needed")  # pragma: no cover
        assert res.startswith("27 ") and "overflow" in res and "not put" in res, res
        assert q.qsize() == before and ovf_files() == files
        got = [q.get() for _ in range(n)]
        assert got == [task(i) for i in range(n)]
    finally:
        q.detach()
        out.detach()
    assert ovf_files() == []


_CHILD = """
import sys, interlock
q = interlock.Queue(name=sys.argv[1], create=False)
if sys.argv[2] == "put":
    q.put((-7, b"x" * 8192))
else:
    q.get(timeout=10)
print("survived")
"""


def _die_at(point: str, name: str, op: str) -> None:
    path = crashpoint_build()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(path), *filter(None, [env.get("PYTHONPATH")])])
    env["INTERLOCK_CRASH_AT"] = point
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, name, op], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    OUR_PIDS.add(proc.pid)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == _core.CRASH_EXIT, (proc.returncode, out, err)


FIRST = 1000  # task numbers from here to 65535 pickle to records of one size


def _fill_ring_to_the_brim(q: interlock.Queue[Any]) -> int:
    """Put tasks FIRST, FIRST+1, ... while they fit in the ring; return the next."""
    i = FIRST
    while True:
        s = q.statistics()
        if s.bytes_used + 4200 > s.capacity:
            assert s.overflow_depth == 0
            return i
        q.put(task(i))
        i += 1


@pytest.mark.parametrize("point", ["ring.ovf.created", "ring.put.payload"])
def test_producer_killed_in_the_overflow_before_publishing_leaves_nothing_taken(
        point: str) -> None:
    q: interlock.Queue[Any] = interlock.Queue(name=uname("ovfp"))
    try:
        end = _fill_ring_to_the_brim(q)
        _die_at(point, q.name, "put")  # an 8 KiB item: the overflow's first block
        assert q.qsize() == end - FIRST and q.statistics().overflow_depth == 0
        assert len(ovf_files()) == 1  # made, never published: the queue's own
        for i in range(end, end + 1500):  # the dead producer's lock is taken over,
            q.put(task(i), timeout=10)  # and its block file reused
        got = [q.get(timeout=5) for _ in range(q.qsize())]
        assert got == [task(i) for i in range(FIRST, end + 1500)]
    finally:
        q.detach()
    assert ovf_files() == []


@pytest.mark.parametrize("point", ["ring.get.copied", "ring.get.published", "ring.ovf.passed"])
def test_consumer_killed_taking_from_the_overflow(point: str) -> None:
    q: interlock.Queue[Any] = interlock.Queue(name=uname("ovfc"))
    try:
        end = _fill_ring_to_the_brim(q)
        rec = q.statistics().bytes_used // (end - FIRST)  # one record's bytes
        per_block = (RING - 8) // rec
        total = end - FIRST + 2 * per_block
        for i in range(end, FIRST + total):
            q.put(task(i))
        expect = [task(i) for i in range(FIRST, FIRST + total)]
        got = [q.get() for _ in range(end - FIRST)]  # the ring's: now the overflow's turn
        if point == "ring.ovf.passed":  # to the end of the first block: the next get passes it
            got += [q.get() for _ in range(per_block)]
            assert len(ovf_files()) == 2
        _die_at(point, q.name, "get")
        if point == "ring.ovf.passed":
            assert len(ovf_files()) == 2  # the passed block is left to the queue's last user
        rest = [q.get(timeout=5) for _ in range(q.qsize())]
        if point == "ring.get.copied":  # not consumed: taken again
            assert got + rest == expect
        else:  # consumed: gone with its consumer, nothing else lost, the order kept
            lost = expect[len(got)]
            assert got + rest == [t for t in expect if t != lost]
    finally:
        q.detach()
    assert ovf_files() == []


def test_immediate_shutdown_discards_the_overflow_too() -> None:
    q: interlock.JoinableQueue[Any] = interlock.JoinableQueue()
    try:
        for i in range(2500):
            q.put(task(i))
        assert q.statistics().overflow_depth > 0
        for _ in range(3):
            q.get()
            q.task_done()
        q.shutdown(immediate=True)
        assert q.qsize() == 0 and q.empty() and q.statistics().depth == 0
        assert q.unfinished_tasks == 0 and q.join(timeout=5)
        with pytest.raises(interlock.ShutDown):
            q.get_nowait()
        with pytest.raises(interlock.ShutDown):
            q.put(task(0))
    finally:
        q.detach()
    assert ovf_files() == []
