"""A small shared table of fixed-size records, under a robust mutex.

Used by the deadlock tooling: the lock-order graph (_lockdep.py) and the
table of long waits (_waitfor.py). Neither is on a fast path: a record is
written when a lock order is seen for the first time, or when a thread has
waited longer than ``deadlock_timeout``.

Layout of the object area of the segment::

    0    64     mutex (_core.Mutex, robust)
    64   4      number of records in use (n)
    68   4      capacity (records)
    72   4      record size
    76   4      records dropped because the table was full (since the last clear)
    80   48     reserved
    128  cap*size  records 0..n-1 (packed, no holes)

Death: every update is a single record write followed by one store of n
(append), or an overwrite of a record by the last one then n-1 (removal);
a process killed in the middle leaves at worst a stale copy of a record that
the next sweep (by liveness of the pid in it) removes.  n and the dropped
count are written with Mapping.store32, one aligned store: struct.pack_into
zero-fills before it writes, and a process killed between the two would
leave n = 0, the whole table forgotten.
"""
from __future__ import annotations

import struct
from typing import Callable, Iterator

from .. import _core, _segment
from ..errors import SegmentError

HEADER = 128
_N = struct.Struct("<III")


class SharedTable:
    def __init__(self, name: str, record: struct.Struct, capacity: int) -> None:
        self.record = record
        size = HEADER + capacity * record.size

        def init(buf: object, off: int) -> None:
            _core.Mutex(buf, off, create=True)._detach()
            _N.pack_into(buf, off + 64, 0, capacity, record.size)  # type: ignore[arg-type]

        self.seg = _segment.Segment(name, _segment.KIND_TABLE, size, (capacity, record.size),
                                    init=init, internal=True)
        assert self.seg.mm is not None
        self.mm = self.seg.mm
        self.off = self.seg.object_offset
        self.lock = _core.Mutex(self.mm, self.off)
        n, cap, rsize = _N.unpack_from(self.mm, self.off + 64)
        if rsize != record.size:
            raise SegmentError(f"shared table {name!r} has records of {rsize} bytes")
        self.capacity = cap

    def __enter__(self) -> "SharedTable":
        # A dead holder is taken over silently (a bare _core.Mutex reports
        # nothing; our updates are idempotent).  Not warnings.catch_warnings():
        # it swaps process-wide state and could swallow another thread's warning.
        self.lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()

    def _n(self) -> int:
        return int(self.mm.load32(self.off + 64))

    def rows(self) -> Iterator[tuple[object, ...]]:
        """Records (call under the table lock for a consistent view)."""
        base = self.off + HEADER
        for i in range(self._n()):
            yield self.record.unpack_from(self.mm, base + i * self.record.size)

    def append(self, *fields: object) -> bool:
        """Under the lock. False if the table is full (counted in
        ``dropped()``: the callers say so, a full table must not go silent)."""
        n = self._n()
        if n >= self.capacity:
            self.mm.store32(self.off + 76, min(self.dropped() + 1, 0xFFFFFFFF))
            return False
        self.record.pack_into(self.mm, self.off + HEADER + n * self.record.size, *fields)
        self.mm.store32(self.off + 64, n + 1)
        return True

    def dropped(self) -> int:
        """Records refused since the last ``clear_dropped()`` (table full)."""
        return int(self.mm.load32(self.off + 76))

    def clear_dropped(self) -> None:
        """Under the lock."""
        self.mm.store32(self.off + 76, 0)

    def __len__(self) -> int:
        return self._n()

    def remove_if(self, pred: Callable[[tuple[object, ...]], bool]) -> int:
        """Under the lock: drop the records for which pred is true."""
        base, size = self.off + HEADER, self.record.size
        n, i, removed = self._n(), 0, 0
        while i < n:
            row = self.record.unpack_from(self.mm, base + i * size)
            if pred(row):
                last = bytes(self.mm[base + (n - 1) * size : base + n * size])
                self.mm[base + i * size : base + (i + 1) * size] = last
                n -= 1
                self.mm.store32(self.off + 64, n)
                removed += 1
            else:
                i += 1
        return removed

    def close(self) -> None:
        self.lock._detach()
        self.seg.release()


def cstr(raw: object) -> str:
    assert isinstance(raw, bytes)
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")
