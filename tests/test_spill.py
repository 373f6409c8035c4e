"""Items of any size through a default queue: spill files (docs/design/spill.md).

A queue made without ``capacity=`` sends an item whose record exceeds its
spill threshold (1 MiB) through a file of its own; only a 40-byte reference
goes through the ring.  What must hold: FIFO and exactly-once across small
and spilled items, with several producers and consumers; a numpy array
comes out backed by the file's mapping (no second copy) and the file's name
is gone at once; no spill file outlives the queue, whoever dies where; a
full /dev/shm is an OSError with nothing put and nothing left behind.
"""
from __future__ import annotations

import mmap
import multiprocessing as mp
import os
import pickle
import signal
import subprocess
import sys
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
        assert spill_files() == []  # unlinked by the consumer at once
        assert q.statistics().spilled_total == 1
    finally:
        q.detach()


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
        assert spill_files() == []
    finally:
        q.detach()


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
        assert base.nbytes == a.nbytes and b.ctypes.data % 64 == 0
        assert spill_files() == []  # its name is gone; the memory lives with the array
        b[0, 0] = -1.0  # a private item: writable, as multiprocessing's
        assert a[0, 0] == 0.0
    finally:
        q.detach()


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
        assert q.get_many(100) == items
        assert spill_files() == []
    finally:
        q.detach()


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
    assert len(spill_files()) == 1
    q.detach()  # the last user: the queue and its untaken item go
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
        assert "nothing was put" in str(ei.value)
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
        assert len(spill_files()) == 1
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
