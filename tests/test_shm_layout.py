"""The shared-memory layout facts that Python reads have one owner: C
(_core/layout.h, where static asserts tie each to its struct with
offsetof).  Python takes them from _core; these tests read live objects
through those constants and check that they name what the docs say."""
from __future__ import annotations

import os
import struct
import threading
import time

import interlock
from interlock import _core


def test_constants_are_the_documented_ones():
    # docs/design/lock.md (the word) and queue.md (the side locks)
    assert (_core.MUTEX_OFF_WORD, _core.MUTEX_OFF_OWNER_PID, _core.MUTEX_OFF_OWNER_HINT,
            _core.MUTEX_OFF_OWNER_TID) == (0, 4, 8, 16)
    assert _core.MUTEX_TID_MASK == 0x3FFFFFFF and _core.MUTEX_WAITERS == 0x80000000
    assert (_core.RING_OFF_PLOCK, _core.RING_OFF_CLOCK) == (64, 192)
    assert _core.SYNC_SLOT_SIZE == 32
    states = [_core.SLOT_IDLE, _core.SLOT_WAITING, _core.SLOT_PASSED, _core.SLOT_BROKEN,
              _core.SLOT_NOTIFIED, _core.SLOT_WRITER_WAITING, _core.SLOT_RECOVERED]
    assert states == list(range(7))


def test_held_lock_read_through_the_constants():
    lk = interlock.Lock()
    try:
        mm, off = lk._seg.mm, lk._seg.object_offset
        u32 = lambda at: struct.unpack_from("<I", mm, off + at)[0]  # noqa: E731
        assert u32(_core.MUTEX_OFF_WORD) & _core.MUTEX_TID_MASK == 0
        with lk:
            tid = _core.self_tid()
            assert u32(_core.MUTEX_OFF_WORD) & _core.MUTEX_TID_MASK == tid
            assert u32(_core.MUTEX_OFF_OWNER_PID) == os.getpid()
            assert u32(_core.MUTEX_OFF_OWNER_TID) == tid
            hint = struct.unpack_from("<Q", mm, off + _core.MUTEX_OFF_OWNER_HINT)[0]
            assert hint == (_core.self_start() & 0xFFFFFFFF) << 32 | tid
        assert u32(_core.MUTEX_OFF_WORD) == 0
    finally:
        lk.detach()


def test_ring_side_locks_at_their_offsets():
    q = interlock.Queue()
    try:
        mm, off = q._seg.mm, q._seg.object_offset
        for at, key in ((_core.RING_OFF_PLOCK, "producer_lock"),
                        (_core.RING_OFF_CLOCK, "consumer_lock")):
            side = _core.Mutex(mm, off + at)  # a view of the ring's side lock
            try:
                assert side.acquire(False)
                assert q._stats()[key]["owner_tid"] == _core.self_tid()
                side.release()
                assert q._stats()[key]["owner_tid"] == 0
            finally:
                side._detach()
    finally:
        q.detach()


def test_slot_states_read_by_statistics():
    lk = interlock.Lock()
    c = interlock.Condition(lk)
    entered = threading.Event()

    def waiter():
        with c:
            entered.set()
            c.wait(30)

    t = threading.Thread(target=waiter)
    t.start()
    try:
        assert entered.wait(10)
        for _ in range(1000):  # until the waiter is in its slot (SLOT_WAITING)
            if c.statistics().waiting:
                break
            time.sleep(0.01)
        assert c.statistics().waiting == ((os.getpid(), t.native_id),)
        with c:
            c.notify()
            assert c.statistics().notified == 1  # SLOT_NOTIFIED
    finally:
        t.join(10)
        c.detach()
        lk.detach()
