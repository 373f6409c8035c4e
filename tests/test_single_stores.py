"""Words that other processes read, or that a killed process leaves behind,
are written with one store each (counted by a hardware watchpoint:
tests/_watch.py).

Why: CPython's ``struct.pack_into`` zero-fills its destination and then
writes the value.  A process killed between the two, or a reader without
the lock that looks at that instant, sees 0.  The test harness's own Record
did this, and test_kill reported a killed consumer's whole log as "lost"
(about 1 trial in 10,000: its count read 0, its entries intact); the
deadlock table's record count and the segment's slot updates did it too.
"""
from __future__ import annotations

import os
import struct

import pytest

import interlock
from interlock import _segment
from interlock.deadlock._table import HEADER, SharedTable

import _helpers as h
import _watch


@pytest.fixture(autouse=True)
def _watchpoints() -> None:
    _watch.skip_unless_available()


def test_the_harness_record_publishes_a_count_with_one_store(tmp_path) -> None:
    rec = h.Record(tmp_path / "r", 2, 10, create=True)
    with _watch.stores_to(rec._mm, 64) as count_stores, \
            _watch.stores_to(rec._mm, 0) as other_log:
        for v in range(1, 6):
            rec.append(1, v)
        assert int(count_stores) == 5  # struct.pack_into: 15
        assert int(other_log) == 0
    assert rec.count(1) == 5 and rec.entries(1) == [1, 2, 3, 4, 5]
    assert rec.count(0) == 0 and rec.entries(0) == []


def test_the_deadlock_table_publishes_its_count_with_one_store() -> None:
    tbl = SharedTable(f"@{h.uname('tbl')}", struct.Struct("<QQ"), 8)
    try:
        n_at = tbl.off + 64
        with tbl, _watch.stores_to(tbl.mm, n_at, 4) as n_stores:
            for i in range(1, 5):
                assert tbl.append(i, 10 * i)
            assert int(n_stores) == 4
            assert tbl.remove_if(lambda row: row[0] % 2 == 0) == 2
            assert int(n_stores) == 6
        assert sorted(tbl.rows()) == [(1, 10), (3, 30)] and len(tbl) == 2
        # the dropped count, when the table is full
        with tbl, _watch.stores_to(tbl.mm, tbl.off + 76, 4) as dropped_stores:
            for i in range(8):
                tbl.append(i, i)
            assert tbl.dropped() == 2 and int(dropped_stores) == 2
        assert len(tbl) == 8
        assert HEADER + 8 * 16 <= len(tbl.mm) - tbl.off
    finally:
        tbl.close()


def test_a_handle_detaching_updates_the_slot_in_place() -> None:
    """Two handles in one process: the first one's detach takes refs from 2
    to 1 in the one u32 that holds refs and roles; the pid (the commit
    word) and the start time are not written at all (pack_into rewrote all
    three, zero first).  (Watched through the first handle's own mapping:
    each handle maps the file at its own address.)"""
    name = h.uname("lock")
    first = interlock.Lock(name=name)
    second = interlock.Lock(name=name, create=False)
    try:
        seg = first._seg
        (i,) = [i for i, pid, _refs, _start in seg._table() if pid == os.getpid()]
        off = _segment.OFF_SLOTS + 16 * i
        start = seg.mm.load64(off + 8)
        assert start == second._seg.mm.load64(off + 8)
        with _watch.stores_to(seg.mm, off, 4) as pid_stores, \
                _watch.stores_to(seg.mm, off + 4, 4) as word_stores, \
                _watch.stores_to(seg.mm, off + 8, 8) as start_stores:
            first.detach()
            assert (int(pid_stores), int(word_stores), int(start_stores)) == (0, 1, 0)
        table = second._seg._table()
        assert [(j, pid, refs) for j, pid, refs, _s in table] == [(i, os.getpid(), 1)]
        assert second._seg.mm.load64(off + 8) == start
    finally:
        first.detach()
        second.detach()
        interlock.unlink(name)


def test_a_queue_role_is_noted_with_one_store() -> None:
    q = interlock.Queue(name=h.uname("q"))
    try:
        seg = q._seg
        (i,) = [i for i, pid, _r, _s in seg._table() if pid == os.getpid()]
        off = _segment.OFF_SLOTS + 16 * i
        with _watch.stores_to(seg.mm, off + 4, 4) as word_stores, \
                _watch.stores_to(seg.mm, off + 8, 8) as start_stores:
            q.put(1)
            q.get()
            assert int(word_stores) == 2 and int(start_stores) == 0  # producer, then consumer
        assert _segment._roles(seg.mm, i) == _segment.ROLE_PRODUCER | _segment.ROLE_CONSUMER
    finally:
        q.close()
        q.join_thread()
        q.unlink()


def test_mapping_words_check_their_offsets() -> None:
    name = h.uname("lock")
    lock = interlock.Lock(name=name)
    try:
        mm = lock._seg.mm
        size = len(mm)
        for bad in (-8, 4, size - 4, size):
            with pytest.raises(ValueError, match="64-bit word offset"):
                mm.load64(bad)
            with pytest.raises(ValueError, match="64-bit word offset"):
                mm.store64(bad, 1)
        off = size - 8  # the last word of the object area is the lock's own: read only
        assert mm.load64(off) == struct.unpack_from("<Q", mm, off)[0]
    finally:
        lock.detach()
        interlock.unlink(name)
