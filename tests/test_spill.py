"""Items of any size through a default queue: spill files (docs/design/spill.md).

A queue made without ``capacity=`` sends an item whose record exceeds its
spill threshold (1 MiB) through a file of its own; only a 40-byte reference
goes through the ring.  What must hold: FIFO and exactly-once across small
and spilled items, with several producers and consumers; a numpy array
comes out backed by the file's mapping (no second copy); a producer's
pooled file is written again only once its receiver let go of it (fork and
death of the receiver included); no spill file outlives the queue, whoever
dies where; a full /dev/shm is an OSError with nothing put and nothing left
behind.
"""
from __future__ import annotations

import mmap
import multiprocessing as mp
import os
import pickle
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import interlock
from interlock import _core, _queue, _segment

from _helpers import uname
from _testbuild import crashpoint_build
from conftest import OUR_PIDS

MiB = 1 << 20
BIG = 3 * MiB // 2  # above the 1 MiB threshold


def spill_files() -> list[str]:
    return sorted(e for e in os.listdir(_segment.SHM_DIR)
                  if e.startswith(_segment.SPILL_PREFIX))


def big(tag: int, size: int = BIG) -> bytes:
    return tag.to_bytes(8, "little") * (size // 8)


FREE, BUSY, DROPPED, ORPHAN = 0, 1, 2, 4  # a pooled file's state (spillpool.h)


def pool(q: Any = None) -> list[tuple[int, int, int]]:
    """This process's pooled spill files of the queue ``q`` (default: every
    queue's; one queue per test here): [(file size, state, holder pid)]."""
    prefixes = {e.rsplit(".", 2)[0] + "." for e in spill_files()}
    if q is not None:
        prefixes = {_segment.spill_prefix(q._seg.header).rsplit("/", 1)[1]}
    return sorted(x for p in prefixes for x in _core.spill_pool_info(f"{_segment.SHM_DIR}/{p}"))


# ------------------------------------------------------------------ any size

def test_an_item_larger_than_the_ring_goes_through_a_default_queue() -> None:
    # Before spill files: ValueError ("can never fit: the queue's capacity is
    # 4194304 bytes").
    q: interlock.Queue[Any] = interlock.Queue()
    try:
        item = os.urandom(64 * MiB)
        q.put(item)
        assert q.qsize() == 1
        assert q.statistics().bytes_used == 40  # only the reference is in the ring
        assert len(spill_files()) == 1
        assert q.get() == item
        # the file stays, in this producer's pool, for the next large item
        assert len(spill_files()) == 1 and pool() == [(64 * MiB + 64, FREE, os.getpid())]
        assert q.statistics().spilled_total == 1
    finally:
        q.detach()
    assert spill_files() == []  # the producer's detach removes its pooled files


def test_spilled_kinds_come_back_as_they_went() -> None:
    q: interlock.Queue[Any] = interlock.Queue()
    try:
        ba = bytearray(b"y" * (2 * MiB))
        obj = {"list": list(range(200_000)), "blob": b"z" * (2 * MiB)}  # a big pickle stream
        q.put(ba)
        q.put(obj)
        q.put(b"small")
        got = q.get()
        assert type(got) is bytearray and got == ba
        assert q.get() == obj
        assert q.get() == b"small"
        assert q.statistics().spilled_total == 2
        assert [st for _, st, _ in pool()] == [FREE, FREE]
    finally:
        q.detach()
    assert spill_files() == []


def test_numpy_array_comes_out_backed_by_the_mapping() -> None:
    np = pytest.importorskip("numpy")
    q: interlock.Queue[Any] = interlock.Queue()
    try:
        a = np.arange(4 * MiB, dtype=np.float64).reshape(-1, 1024)  # 32 MiB
        q.put(a)
        b = q.get()
        assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)
        assert b.flags.writeable and not b.flags.owndata
        # No second copy: the array's memory is the spill file's mapping.
        base = b
        while isinstance(base, np.ndarray) and base.base is not None:
            base = base.base
        assert isinstance(base, memoryview) and isinstance(base.obj, _core.Mapping)
        # at the sender's page offset (16-aligned: see the test below)
        assert base.nbytes == a.nbytes and b.ctypes.data % 16 == 0
        assert b.ctypes.data % 4096 == a.ctypes.data % 4096
        assert [st for _, st, _ in pool()] == [BUSY]  # held by the array
        b[0, 0] = -1.0  # a private item: writable, as multiprocessing's
        assert a[0, 0] == 0.0
        del b, base
        assert [st for _, st, _ in pool()] == [FREE]  # handed back with the array
    finally:
        q.detach()
    assert spill_files() == []


def test_a_spilled_buffer_lands_at_its_source_s_page_offset() -> None:
    """Issue 11: a copy whose destination lies a little ahead of its source
    modulo 4096 ran at a third of the speed on this machine's CPU (AMD Zen 3;
    a pooled put of a 256 MiB array: 87 ms, one memcpy 28 ms), so a buffer
    of at least 64 KiB at a 16-aligned address goes into the file at its
    source's page offset: the receiver's array has the sender's. A less
    aligned or smaller buffer goes at the next 64-aligned offset, as before.
    The first item is written into a fresh file (pwrite), the others into
    the same pooled file (a copy through its mapping)."""
    np = pytest.importorskip("numpy")
    q: interlock.Queue[Any] = interlock.Queue()
    backing = np.frombuffer(os.urandom(BIG + 8192), dtype=np.uint8)
    try:
        for shift in (0, 16, 48, 1008, 4080, 8, 1, 4095):
            src = backing[shift:shift + BIG]
            q.put(src)
            got = q.get()
            assert np.array_equal(got, src), shift
            if src.ctypes.data % 16 == 0:
                assert got.ctypes.data % 4096 == src.ctypes.data % 4096, shift
            else:
                assert got.ctypes.data % 64 == 0, shift
            del got
        assert len(pool(q)) == 1  # one file carried them all, wherever their source lay
        # several buffers in one item, each placed by its own rule
        small = backing[16:16 + 1000]  # out of band too, but below 64 KiB
        parts = [backing[48:48 + BIG], small, backing[4000:4000 + BIG // 2], backing[3:3 + BIG]]
        q.put(parts)
        got = q.get()
        assert all(np.array_equal(g, p) for g, p in zip(got, parts)) and len(got) == 4
        assert got[0].ctypes.data % 4096 == parts[0].ctypes.data % 4096
        assert got[1].ctypes.data % 64 == 0 and got[3].ctypes.data % 64 == 0
        assert got[2].ctypes.data % 4096 == parts[2].ctypes.data % 4096
        del got
    finally:
        q.detach()
    assert spill_files() == []


@pytest.mark.parametrize("entry", [(8191 << 51) | 64, (4097 << 51) | 64, (1 << 51) - 1],
                         ids=["phase-8191", "phase-4097", "length-past-the-file"])
def test_a_spilled_item_with_a_damaged_buffer_table_is_an_error_not_a_crash(entry: int) -> None:
    """A spill file whose buffer table names a phase past the page or a
    buffer past the file: get() raises RuntimeError naming the file, and the
    queue goes on."""
    np = pytest.importorskip("numpy")
    q: interlock.Queue[Any] = interlock.Queue(name=uname("spill-table"))
    try:
        q.put(np.zeros(BIG, dtype=np.uint8))
        (name,) = spill_files()
        with open(f"{_segment.SHM_DIR}/{name}", "r+b") as f:
            f.write(entry.to_bytes(8, "little"))
        with pytest.raises(RuntimeError, match=r"unusable \(bad buffer lengths\); the item is lost"):
            q.get(timeout=5)
        q.put(np.ones(BIG, dtype=np.uint8))
        assert q.get(timeout=5).sum() == BIG
    finally:
        q.detach()
    assert spill_files() == []


def test_a_consumer_expects_the_next_spilled_item_to_take_its_copy_s_time() -> None:
    # A consumer that finds the queue empty spins for about as long as the
    # producer's copy of the next item should take, guessed from the size of
    # the last item it took (queue.md, "Waiting").  A spilled item's copy is
    # the whole item into its file, not the 40-byte reference through the
    # ring: with the reference's size the consumer of 1 MiB arrays slept on
    # every item and its producer paid a wake-up for each (0.77x of the
    # same queue's ring at 1 MiB, bench_goals).
    q: interlock.Queue[Any] = interlock.Queue()
    try:
        q.put(b"s" * 1000)
        assert q.get() == b"s" * 1000
        small = q._last_need
        assert 1000 < small < 1100   # the ring record: header and payload
        q.put(big(1))
        assert q.get() == big(1)
        assert q.statistics().spilled_total == 1
        assert BIG <= q._last_need < BIG + 4096   # the file, not the reference
        q.put(b"s" * 1000)
        q.get()
        assert q._last_need == small   # back to the ring's record
    finally:
        q.detach()
    assert spill_files() == []


def test_a_byte_bounded_queue_does_not_spill() -> None:
    # capacity= is for those who want a bound on the bytes: it stays one.
    q: interlock.Queue[Any] = interlock.Queue(capacity=MiB)
    try:
        with pytest.raises(ValueError, match="can never fit"):
            q.put(b"x" * (2 * MiB))
        q.put(b"x" * (MiB // 2))  # below the capacity: in the ring, as before
        assert q.statistics().bytes_used > MiB // 2 and spill_files() == []
        assert len(q.get()) == MiB // 2
    finally:
        q.detach()


def test_put_many_mixes_spilled_and_small_items_in_order() -> None:
    q: interlock.Queue[Any] = interlock.Queue()
    try:
        items = [big(i) if i % 3 == 0 else ("small", i) for i in range(12)]
        q.put_many(items)
        # get_many's 256 KiB budget counts a spilled item's file: a batch
        # ends after one, as a batch of large ring items would
        batches = []
        while sum(map(len, batches)) < len(items):
            batches.append(q.get_many(100, timeout=5))
        assert [x for b in batches for x in b] == items
        assert batches == [items[0:1], items[1:4], items[4:7], items[7:10], items[10:12]]
        assert q.empty()
    finally:
        q.detach()
    assert spill_files() == []


def test_put_many_pickles_every_item_before_it_puts_any() -> None:
    # Spill files are written a chunk at a time, right before each chunk
    # is published; the pickling comes first, for the whole batch, so an
    # unpicklable item still puts nothing (and leaves no file).
    q: interlock.Queue[Any] = interlock.Queue()
    try:
        with pytest.raises(TypeError, match="pickle"):
            q.put_many([big(0), ("small", 1), big(2), threading.Lock()])
        assert q.empty() and q.qsize() == 0
        assert spill_files() == []
        q.put_many([big(3), big(4)])  # and the queue works on
        assert [q.get(timeout=5), q.get(timeout=5)] == [big(3), big(4)]
    finally:
        q.detach()
    assert spill_files() == []


def test_a_spilled_put_blocks_only_for_its_reference() -> None:
    # maxsize bounds items, spilled or not; a full queue times out on the
    # reference's room, and the unnamed file of the refused put is gone.
    q: interlock.Queue[Any] = interlock.Queue(maxsize=1)
    try:
        q.put(big(1))
        with pytest.raises(interlock.Full):
            q.put(big(2), timeout=0.05)
        assert len(spill_files()) == 1 and q.qsize() == 1
        assert q.get() == big(1)
    finally:
        q.detach()
    assert spill_files() == []


def test_put_async_of_a_large_item_waits_for_a_reference_s_room() -> None:
    import asyncio

    async def main(q: interlock.Queue[Any]) -> Any:
        await q.put_async(big(7))
        return await q.get_async()

    q: interlock.Queue[Any] = interlock.Queue()
    try:
        assert asyncio.run(main(q)) == big(7)
    finally:
        q.detach()


# ------------------------------------------------- several processes: FIFO

def _producer(name: str, idx: int, n: int) -> None:
    q = interlock.Queue(name=name, create=False)
    for i in range(n):
        q.put((idx, i, big(i) if i % 4 == 0 else b""))
    q.detach()


def _consumer(name: str, out_name: str) -> None:
    q = interlock.Queue(name=name, create=False)
    out = interlock.Queue(name=out_name, create=False)
    got = []
    while True:
        item = q.get(timeout=60)
        if item is None:
            break
        idx, i, blob = item
        assert blob == (big(i) if i % 4 == 0 else b""), (idx, i)
        got.append((idx, i))
    out.put(got)
    q.detach()
    out.detach()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_fifo_and_exactly_once_across_spilled_and_small_items(method: str) -> None:
    ctx = mp.get_context(method)
    name, out_name = uname("spillq"), uname("spillout")
    q: interlock.Queue[Any] = interlock.Queue(name=name)
    out: interlock.Queue[Any] = interlock.Queue(name=out_name)
    n = 40
    try:
        cons = [ctx.Process(target=_consumer, args=(name, out_name)) for _ in range(2)]
        prods = [ctx.Process(target=_producer, args=(name, p, n)) for p in range(2)]
        for p in cons + prods:
            p.start()
        for p in prods:
            p.join(120)
            assert p.exitcode == 0
        for _ in cons:
            q.put(None)
        seen = [out.get(timeout=120) for _ in cons]
        for p in cons:
            p.join(60)
            assert p.exitcode == 0
        for got in seen:  # each consumer saw each producer's items in order
            for idx in range(2):
                mine = [i for j, i in got if j == idx]
                assert mine == sorted(mine)
        everything = sorted(x for got in seen for x in got)
        assert everything == [(p, i) for p in range(2) for i in range(n)]
        assert q.statistics().spilled_total == 2 * n // 4
    finally:
        q.detach()
        out.detach()
    assert spill_files() == []


# ----------------------------------------------------- lifetime, any death

def _put_big_and_die(name: str) -> None:
    q = interlock.Queue(name=name)
    q.put(big(1))
    q.put(big(2))
    os.kill(os.getpid(), signal.SIGKILL)


def test_spilled_items_of_a_killed_queue_survive_and_go_with_its_last_user() -> None:
    name = uname("spillkill")
    p = mp.get_context("fork").Process(target=_put_big_and_die, args=(name,))
    p.start()
    p.join(60)
    assert p.exitcode == -signal.SIGKILL
    assert len(spill_files()) == 2
    q: interlock.Queue[Any] = interlock.Queue(name=name, create=False)  # the old contents
    assert q.get(timeout=5) == big(1)
    assert len(spill_files()) == 2  # (a dead producer's pooled file keeps its name)
    q.detach()  # the last user: the queue, its untaken item and the pooled file go
    assert spill_files() == []
    assert not os.path.exists(_segment.path_of(name))


def test_clean_removes_the_spill_files_of_a_queue_whose_users_all_died() -> None:
    name = uname("spillclean")
    p = mp.get_context("fork").Process(target=_put_big_and_die, args=(name,))
    p.start()
    p.join(60)
    assert p.exitcode == -signal.SIGKILL
    assert len(spill_files()) == 2
    removed = [s.name for s in _segment.clean(remove=True)]
    assert name in removed
    assert spill_files() == []


def test_unlink_of_a_dead_queue_removes_its_spill_files() -> None:
    name = uname("spillunlink")
    p = mp.get_context("fork").Process(target=_put_big_and_die, args=(name,))
    p.start()
    p.join(60)
    assert interlock.unlink(name)
    assert spill_files() == []


def test_unlink_of_a_live_queue_keeps_its_spilled_items_for_its_users() -> None:
    q: interlock.Queue[Any] = interlock.Queue(name=uname("spilllive"))
    try:
        q.put(big(3))
        q.unlink()
        assert len(spill_files()) == 1
        assert q.get() == big(3)
        q.put(big(4))
    finally:
        q.detach()  # the last user of an unlinked queue: its files go too
    assert spill_files() == []


# ------------------------------------------------------ full /dev/shm

def test_no_room_in_dev_shm_is_an_oserror_with_nothing_put_or_left(tmp_path: Path) -> None:
    # A buffer larger than /dev/shm's free space, without the memory: a
    # sparse file mapped read-only.  The spill file's pages are reserved
    # before a byte is copied, so the put fails at once with ENOSPC.
    st = os.statvfs(_segment.SHM_DIR)
    size = st.f_bavail * st.f_frsize + 64 * MiB
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as f:
        f.truncate(size)
    q: interlock.Queue[Any] = interlock.Queue()
    try:
        with open(sparse, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            buf = pickle.PickleBuffer(mm)
            with pytest.raises(OSError, match="no room for a spilled queue item") as ei:
                q.put(buf)
            buf.release()
        assert ei.value.errno in (28, 27)  # ENOSPC (EFBIG where the file size is capped)
        assert "the item was not put" in str(ei.value)
        assert q.qsize() == 0 and spill_files() == []
        assert q.statistics().spilled_total == 0
        q.put(big(5))  # and the queue goes on
        assert q.get() == big(5)
    finally:
        q.detach()
    assert spill_files() == []


# ------------------------------------------------------ crash points

_CHILD = """
import sys, interlock
q = interlock.Queue(name=sys.argv[1], create=False)
if sys.argv[2] == "put":
    q.put(int(1).to_bytes(8, "little") * ({big} // 8))
else:
    q.get(timeout=10)
print("survived")
"""


def _die_at(point: str, name: str, op: str) -> None:
    """Run ``op`` on queue ``name`` in a child of the crash-point build,
    armed to die at ``point``; check it died there."""
    path = crashpoint_build()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(path), *filter(None, [env.get("PYTHONPATH")])])
    env["INTERLOCK_CRASH_AT"] = point
    proc = subprocess.Popen([sys.executable, "-c", _CHILD.format(big=BIG), name, op], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    OUR_PIDS.add(proc.pid)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == _core.CRASH_EXIT, (proc.returncode, out, err)


def test_producer_killed_while_writing_a_spill_file_leaves_nothing() -> None:
    q: interlock.Queue[Any] = interlock.Queue(name=uname("spillw"))
    try:
        _die_at("ring.spill.written", q.name, "put")
        assert spill_files() == []  # the unnamed file died with the producer
        assert q.qsize() == 0
        q.put_nowait(b"next")
        assert q.get_nowait() == b"next"
    finally:
        q.detach()


def test_producer_killed_after_naming_before_publishing_loses_nothing_leaks_nothing() -> None:
    q: interlock.Queue[Any] = interlock.Queue(name=uname("spilll"))
    try:
        _die_at("ring.spill.linked", q.name, "put")
        assert len(spill_files()) == 1  # named, never published: the queue's own
        assert q.qsize() == 0
        q.put(big(6), timeout=10)  # takes the dead producer's lock over
        assert q.get(timeout=10) == big(6) and q.qsize() == 0
        assert len(spill_files()) == 2  # the dead one's, and this process's pooled file
    finally:
        q.detach()  # the last user removes it
    assert spill_files() == []


def test_consumer_killed_after_taking_a_spilled_item_leaks_nothing() -> None:
    q: interlock.Queue[Any] = interlock.Queue(name=uname("spillt"))
    try:
        q.put(big(8))
        q.put(b"after")
        _die_at("ring.spill.taken", q.name, "get")
        # The item was consumed (committed) by the consumer that died with it.
        assert q.qsize() == 1 and q.get(timeout=10) == b"after"
        assert len(spill_files()) == 1
    finally:
        q.detach()
    assert spill_files() == []


def test_threshold_is_the_queue_s_and_travels_to_attachers() -> None:
    q: interlock.Queue[Any] = interlock.Queue(name=uname("spillthr"))
    try:
        assert q._seg.params()[3] == _queue.SPILL_THRESHOLD
        q2: interlock.Queue[Any] = interlock.Queue(name=q.name, create=False)
        q2.put(big(9))
        assert q.get() == big(9)
        q2.detach()
    finally:
        q.detach()


# ------------------------------------------------- the pool (spill.md, "The pool")

def test_a_pooled_file_is_reused_once_its_receiver_lets_go_and_never_before() -> None:
    np = pytest.importorskip("numpy")
    q: interlock.Queue[Any] = interlock.Queue()
    try:
        a = np.arange(MiB // 2, dtype=np.float64)  # 4 MiB
        q.put(a)
        held = q.get()
        names = spill_files()
        assert len(names) == 1 and [st for _, st, _ in pool(q)] == [BUSY]
        for i in range(1, 6):  # while `held` lives its file is never written
            q.put(a + i)
            got = q.get()
            assert got[0] == i and got[-1] == MiB // 2 - 1 + i
            del got
            assert np.array_equal(held, a)
        # one more file for all five: each was handed back before the next put
        assert len(spill_files()) == 2 and [st for _, st, _ in pool(q)] == [FREE, BUSY]
        del held
        assert [st for _, st, _ in pool(q)] == [FREE, FREE]
        q.put(a * 2)
        assert np.array_equal(q.get(), a * 2)
        assert len(spill_files()) == 2  # reused, not a third
    finally:
        q.detach()
    assert spill_files() == []


def test_a_producer_pools_at_most_so_many_files_per_queue_then_fresh_ones() -> None:
    n = _core.SPILL_POOL_SLOTS  # 32
    q: interlock.Queue[Any] = interlock.Queue()
    try:
        for i in range(n + 2):  # n + 2 in flight: n pooled files, two fresh ones
            q.put(bytearray(big(i)))
        assert len(pool(q)) == n and len(spill_files()) == n + 2
        # bytes and bytearray are copied out: each file is FREE again at once
        # (a fresh one is unlinked)
        assert [q.get() for _ in range(n + 2)] == [bytearray(big(i)) for i in range(n + 2)]
        assert [st for _, st, _ in pool(q)] == [FREE] * n and len(spill_files()) == n
        for i in range(5):  # one at a time: the same file each time
            q.put(big(i))
            assert q.get() == big(i)
        assert len(pool(q)) == n and len(spill_files()) == n
        np = pytest.importorskip("numpy")
        held = []
        for i in range(n + 2):
            q.put(np.full(BIG // 8, i, dtype=np.int64))
            held.append(q.get())
        assert len(pool(q)) == n and all(st == BUSY for _, st, _ in pool(q))
        assert len(spill_files()) == n  # the two beyond the pool were unlinked when taken
        assert [int(h[0]) for h in held] == list(range(n + 2))
        del held
        assert [st for _, st, _ in pool(q)] == [FREE] * n
    finally:
        q.detach()
    assert spill_files() == []


_FORK_HELD: Any = None


def _read_after(ev: Any, value: float) -> None:
    ev.wait(60)
    assert _FORK_HELD is not None
    if not (_FORK_HELD == value).all():
        os._exit(3)  # the parent's producer wrote into what this child shares


def test_an_item_shared_with_a_fork_child_is_never_reused() -> None:
    # A forked child shares its parent's mapping of a received item (MAP_SHARED):
    # the parent letting go of it must not hand the file back for reuse.
    global _FORK_HELD
    np = pytest.importorskip("numpy")
    ctx = mp.get_context("fork")
    q: interlock.Queue[Any] = interlock.Queue()
    try:
        q.put(np.full(MiB // 4, 7.0))
        _FORK_HELD = q.get()
        ev = ctx.Event()
        child = ctx.Process(target=_read_after, args=(ev, 7.0))
        child.start()
        _FORK_HELD = None  # the parent lets go: DROPPED, not FREE
        assert [st for _, st, _ in pool(q)] == [DROPPED]
        for i in range(3):
            q.put(np.full(MiB // 4, float(i)))
            assert q.get()[0] == i
        ev.set()
        child.join(60)
        assert child.exitcode == 0
    finally:
        _FORK_HELD = None
        q.detach()
    assert spill_files() == []


def _take_and_die(name: str) -> None:
    q = interlock.Queue(name=name, create=False)
    item = q.get(timeout=30)
    assert item[-1] == 1
    os.kill(os.getpid(), signal.SIGKILL)  # holding it


def test_a_receiver_killed_holding_a_pooled_item_gives_it_back() -> None:
    np = pytest.importorskip("numpy")
    q: interlock.Queue[Any] = interlock.Queue(name=uname("spillhold"))
    try:
        p = mp.get_context("fork").Process(target=_take_and_die, args=(q.name,))
        p.start()
        q.put(np.ones(MiB // 4))
        p.join(60)
        assert p.exitcode == -signal.SIGKILL
        [(_, st, holder)] = pool(q)
        assert st == BUSY and holder == p.pid  # held by the dead one for ever
        q.put(np.zeros(MiB // 4))  # ... so the producer takes it back
        assert len(pool(q)) == 1 and len(spill_files()) == 1
        assert not q.get(timeout=10).any()
    finally:
        q.detach()
    assert spill_files() == []


def _put_and_leave(name: str, n: int) -> None:
    np = pytest.importorskip("numpy")
    q = interlock.Queue(name=name, create=False)
    assert _core.spill_pool_info(_segment.spill_prefix(q._seg.header)) == []
    for i in range(n):
        q.put(np.full(MiB // 4, float(i)))
    q.detach()


def test_a_producer_that_leaves_leaves_no_file_whoever_holds_its_items() -> None:
    np = pytest.importorskip("numpy")
    ctx = mp.get_context("fork")
    q: interlock.Queue[Any] = interlock.Queue(name=uname("spillleave"))
    try:
        q.put(np.ones(MiB // 4))  # this process's own pooled file (FREE once taken)
        assert q.get()[0] == 1
        # A forked producer starts with no pool (its parent's files are not its own).
        p = ctx.Process(target=_put_and_leave, args=(q.name, 2))
        p.start()
        p.join(60)
        assert p.exitcode == 0
        first = q.get(timeout=10)  # its files: ORPHAN, in flight
        assert first[0] == 0 and len(spill_files()) == 3
        assert q.get(timeout=10)[0] == 1  # taken and let go: its name goes
        assert len(spill_files()) == 2
        del first
        assert len(spill_files()) == 1  # only this process's own
    finally:
        q.detach()
    assert spill_files() == []


def _detach_while_another_thread_writes(name: str) -> None:
    import threading
    import time
    np = pytest.importorskip("numpy")
    q = interlock.Queue(name=name, create=False)
    a = np.ones(32 * MiB)  # 256 MiB: a copy of tens of ms
    q.put(a)
    assert q.get()[0] == 1  # the file is pooled and FREE: the next put reuses it
    errors: list[BaseException] = []

    def put() -> None:
        try:
            q.put(a)
        except BaseException as e:  # (a put racing a detach may be refused)
            errors.append(e)

    t = threading.Thread(target=put)
    t.start()
    time.sleep(0.005)
    try:
        q.detach()  # refused while the put is in flight (or done before it began)
    except RuntimeError as e:
        assert "another thread" in str(e)
    t.join(60)
    assert not t.is_alive()
    os._exit(0)


def test_a_detach_while_another_thread_copies_into_a_pooled_file_crashes_nothing() -> None:
    pytest.importorskip("numpy")
    q: interlock.Queue[Any] = interlock.Queue(name=uname("spilldet"))
    try:
        p = mp.get_context("fork").Process(target=_detach_while_another_thread_writes,
                                           args=(q.name,))
        p.start()
        p.join(120)
        # before: SIGSEGV (the detach went through while the put copied with
        # the GIL released, and the put went on into the detached ring)
        assert p.exitcode == 0
        while True:  # what the racing put published, if it did
            try:
                q.get_nowait()
            except interlock.Empty:
                break
    finally:
        q.detach()
    assert spill_files() == []


_SMALL_SHM = """
import numpy as np, interlock
from interlock import _core, _segment
MiB = 1 << 20
q = interlock.Queue()
for i in range(12):  # 24 MiB in flight
    q.put(np.full(MiB // 4, i, dtype=np.float64))  # 2 MiB each
for i in range(12):
    assert q.get()[0] == i
pooled = _core.spill_pool_info(_segment.spill_prefix(q._seg.header))
# a quarter of this 64 MiB /dev/shm at most; the rest went as fresh files
assert 0 < sum(s for s, _, _ in pooled) <= 16 * MiB, pooled
big = np.ones(52 * MiB // 8)
q.put(big)  # room only once the pool's idle files are gone
assert q.get()[-1] == 1
q.detach()
print("ok", len(pooled))
"""


_SMALL_SHM_BATCH = """
import interlock
MiB = 1 << 20
q = interlock.Queue()
items = [bytes([i]) * (16 * MiB) for i in range(5)]  # 80 MiB: some find no room
try:
    q.put_many(items)
except OSError as e:
    assert e.errno == 28, e  # ENOSPC
    n = getattr(e, "put_count", 0)
    assert 2 <= n < len(items), vars(e)
else:
    raise AssertionError("put_many of 80 MiB fitted in a 64 MiB /dev/shm")
got = []
while len(got) < n:
    got += q.get_many(10, timeout=5)
assert got == items[:n], [len(g) for g in got]
assert q.empty()
q.put(b"after")  # the refused item left nothing behind
assert q.get() == b"after"
q.detach()
print("ok")
"""


def _in_small_dev_shm(script: str) -> subprocess.CompletedProcess:
    # Docker's /dev/shm is 64 MiB: a private one of that size (a mount
    # namespace; root or user namespaces needed, else skipped).
    import shutil
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    r = subprocess.run(["unshare", "--mount", "--fork", "sh", "-c",
                        'mount -t tmpfs -o size=64m tmpfs /dev/shm && exec "$0" -c "$1"',
                        sys.executable, script], capture_output=True, text=True, timeout=120)
    if r.returncode != 0 and ("unshare failed" in r.stderr or "mount:" in r.stderr):
        pytest.skip(f"no private /dev/shm here: {r.stderr.strip()[:200]}")
    return r


def test_put_many_that_runs_out_of_room_midway_says_how_many_it_put() -> None:
    # Spill files are written chunk by chunk: the items before the first
    # that finds no room are in the queue, and the OSError says how many
    # (put_count, as queue.Full does after a timeout).
    r = _in_small_dev_shm(_SMALL_SHM_BATCH)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ok"), r.stdout


def test_a_pool_takes_at_most_a_quarter_of_a_small_dev_shm_and_gives_it_back() -> None:
    # Docker's /dev/shm is 64 MiB: a private one of that size (a mount
    # namespace; root or user namespaces needed, else skipped).
    pytest.importorskip("numpy")
    r = _in_small_dev_shm(_SMALL_SHM)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ok"), r.stdout


# ------------------------------------------ the receiver's warm mappings
# (spill.md, "Warm mappings"; bind_warmmap.c): a receiver keeps its
# mapping of a pooled file once it lets go of the item, and a later item in
# the same file comes through that mapping: no open, no mmap, no faults.

def warm() -> tuple[int, int, list[tuple[str, int, int]]]:
    """(hits, misses, [(path, size, busy)]) of this process's kept mappings."""
    return _core.spill_warm_info()


def test_a_receiver_reads_later_items_through_its_kept_mapping() -> None:
    np = pytest.importorskip("numpy")
    import resource

    def faults() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    q: interlock.Queue[Any] = interlock.Queue()
    try:
        hits0, misses0, _ = warm()
        n = BIG // 8
        cost = {}
        for mode in ("kept", "dropped", "kept again"):
            for i in range(10):
                q.put(np.full(n, i, dtype=np.int64))
                got = q.get()
                if i == 1:
                    f0 = faults()
                assert got[0] == i and got[-1] == i and int(got.sum()) == i * n  # read whole
                del got
                if mode == "dropped":
                    assert _core.spill_warm_drop() == 1  # the next get maps afresh
            cost[mode] = faults() - f0
        hits, misses, kept = warm()
        # one file: mapped once, then afresh for each of the dropped ones
        assert misses - misses0 == 11 and hits - hits0 == 19, (hits, misses)
        assert len(kept) == 1 and kept[0][1] > BIG and kept[0][2] == 0  # idle
        # nine items read whole each way: through the kept mapping the
        # pages are mapped already; afresh, one fault per 64 KiB at least
        assert cost["dropped"] >= 9 * (BIG >> 16), cost
        assert cost["kept"] * 4 < cost["dropped"] and cost["kept again"] * 4 < cost["dropped"], cost
    finally:
        q.detach()
    assert warm()[2] == []  # the last handle's detach let them go
    assert spill_files() == []


def test_a_kept_mapping_is_not_used_for_another_file_under_the_same_name() -> None:
    # The name is checked against the kept mapping's inode: a file put in
    # its place (by a process of the same user) is opened and read afresh.
    np = pytest.importorskip("numpy")
    q: interlock.Queue[Any] = interlock.Queue()
    try:
        q.put(np.full(BIG // 8, 1, dtype=np.int64))
        assert q.get()[0] == 1  # kept, idle
        q.put(np.full(BIG // 8, 2, dtype=np.int64))  # into the same pooled file
        [name] = spill_files()
        path = os.path.join(_segment.SHM_DIR, name)
        with open(path, "rb") as f:
            data = bytearray(f.read())
        other = path + ".other"
        fd = os.open(other, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.close(fd)
        hits0, misses0, _ = warm()
        os.rename(other, path)  # same name, same size and content, another inode
        got = q.get()
        assert got[0] == 2 and got[-1] == 2
        hits, misses, kept = warm()
        assert (hits, misses) == (hits0, misses0 + 1)  # opened, not the kept mapping
        del got
    finally:
        q.detach()
    for name in spill_files():  # the stand-in: its producer never knew it
        os.unlink(os.path.join(_segment.SHM_DIR, name))


def test_items_held_at_once_keep_at_most_the_slots() -> None:
    np = pytest.importorskip("numpy")
    slots = _core.SPILL_WARM_SLOTS  # 8
    q: interlock.Queue[Any] = interlock.Queue()
    try:
        for rnd in range(3):
            held = []
            for i in range(slots + 3):
                q.put(np.full(BIG // 8, 100 * rnd + i, dtype=np.int64))
                held.append(q.get())
            kept = warm()[2]
            assert len(kept) == slots and all(busy for _, _, busy in kept)
            assert [int(h[0]) for h in held] == [100 * rnd + i for i in range(slots + 3)]
            assert all(int(h.sum()) == int(h[0]) * (BIG // 8) for h in held)
            del held
            kept = warm()[2]
            assert len(kept) == slots and not any(busy for _, _, busy in kept)
    finally:
        q.detach()
    assert warm()[2] == [] and spill_files() == []


def _produce_arrays(name: str, n: int, leave: Any) -> None:
    np = pytest.importorskip("numpy")
    q = interlock.Queue(name=name, create=False)
    for i in range(n):
        q.put(np.full(BIG // 8, i, dtype=np.int64))
    leave.wait(60)
    q.detach()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_kept_mappings_carry_another_process_s_items_and_go_with_its_files(method: str) -> None:
    np = pytest.importorskip("numpy")
    ctx = mp.get_context(method)
    q: interlock.Queue[Any] = interlock.Queue(name=uname("warm"), maxsize=2)
    try:
        hits0, misses0, _ = warm()
        leave = ctx.Event()
        p = ctx.Process(target=_produce_arrays, args=(q.name, 60, leave))
        p.start()
        for i in range(60):  # each read whole: never what an earlier item left
            got = q.get(timeout=60)
            assert got[0] == i and int(got.sum()) == i * (BIG // 8), i
            del got
        hits, misses, kept = warm()
        assert hits - hits0 >= 50 and misses - misses0 <= 10, (hits, misses)
        theirs = [k for k in kept if f".{p.pid}." in k[0]]
        assert theirs and not any(busy for _, _, busy in theirs)
        leave.set()
        p.join(60)
        assert p.exitcode == 0
        # The producer left: its files are ORPHAN, their names gone; the
        # next pooled get lets the kept mappings of them go.
        q.put(np.full(BIG // 8, -1, dtype=np.int64))
        assert q.get()[0] == -1
        assert [k for k in warm()[2] if f".{p.pid}." in k[0]] == []
    finally:
        q.detach()
    assert warm()[2] == [] and spill_files() == []


def _fork_child_sees_no_kept_mapping(name: str) -> None:
    if warm()[2] != []:
        os._exit(3)
    q = interlock.Queue(name=name, create=False)
    got = q.get(timeout=30)
    if not (got == 5).all():
        os._exit(4)
    del got
    q.detach()


def test_a_fork_child_starts_with_no_kept_mapping_and_the_parent_keeps_its_own() -> None:
    np = pytest.importorskip("numpy")
    ctx = mp.get_context("fork")
    q: interlock.Queue[Any] = interlock.Queue(name=uname("warmfork"))
    try:
        for i in range(3):
            q.put(np.full(BIG // 8, i, dtype=np.int64))
            assert q.get()[0] == i
        assert len(warm()[2]) == 1
        p = ctx.Process(target=_fork_child_sees_no_kept_mapping, args=(q.name,))
        p.start()
        q.put(np.full(BIG // 8, 5, dtype=np.int64))
        p.join(60)
        assert p.exitcode == 0
        hits0 = warm()[0]
        for i in range(3):  # the parent's kept mapping still carries its items
            q.put(np.full(BIG // 8, 10 + i, dtype=np.int64))
            got = q.get()
            assert int(got.sum()) == (10 + i) * (BIG // 8)
            del got
        assert warm()[0] - hits0 >= 2
    finally:
        q.detach()
    assert warm()[2] == [] and spill_files() == []


_SMALL_SHM_WARM = """
import os
import numpy as np, interlock
from interlock import _core, _segment
MiB = 1 << 20
q = interlock.Queue()
held = []
for i in range(6):  # 1.5 MiB each, held at once: six files, mapped
    q.put(np.full(3 * MiB // 16, i, dtype=np.float64))
    held.append(q.get())
del held
kept = _core.spill_warm_info()[2]
# a sixteenth of this 64 MiB /dev/shm (4 MiB) at most: two of the six
assert 0 < len(kept) <= 2 and sum(s for _, s, _ in kept) <= 4 * MiB, kept
pooled = sum(s for s, _, _ in _core.spill_pool_info(_segment.spill_prefix(q._seg.header)))
assert pooled >= 6 * 3 * MiB // 2, pooled
sv = os.statvfs("/dev/shm")
# room only once the pool's idle files *and* the kept mappings of them are gone
big = np.ones((sv.f_bavail * sv.f_frsize + pooled - MiB) // 8)
q.put(big)
assert q.get()[-1] == 1
assert _core.spill_warm_info()[2] == []
q.detach()
print("ok", len(kept))
"""


def test_kept_mappings_take_at_most_a_sixteenth_of_a_small_dev_shm() -> None:
    pytest.importorskip("numpy")
    r = _in_small_dev_shm(_SMALL_SHM_WARM)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ok"), r.stdout
