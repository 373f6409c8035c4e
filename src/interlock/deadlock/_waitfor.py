"""Runtime deadlock detection: the wait-for graph, across processes.

Like PostgreSQL, we look for a deadlock only after a waiter has waited
``deadlock_timeout`` (default 1 s): most waits end sooner, and the check
costs a few hundred microseconds. The C core (``mutex_acquire``) waits in
phases and calls :func:`on_long_wait` after the first ``deadlock_timeout``
and then every 250 ms while the wait goes on; nothing runs before that.

The graph. Nodes are threads, named by TID (unique on the machine's PID
namespace). A long waiter publishes "thread T of process P waits for lock
L since S" in a table shared by all processes of the user (``@waitfor``
segment, _table.py). The edge from T goes to the owner of L, read from L's
own shared word (its TID; no registration needed on the fast path). A
cycle T1 -> T2 -> ... -> T1 where every member waits is a deadlock: no
member can make progress by itself.

The victim. Exactly one member of the cycle must give up, and all of them
must agree on which without talking: the youngest waiter (the largest
"since", ties broken by the larger TID). Every member computes the same
choice from the same table. The youngest is the one whose wait closed the
cycle; it is also the last to register, so when it checks it sees the whole
cycle and raises :class:`DeadlockError` from its ``acquire`` at once; the
others keep waiting and proceed once the victim's caller releases what it
holds (a ``with`` block unwinding does).

No false alarm: a long but legitimate wait has an owner that is running or
waiting on something outside the cycle, so no cycle closes. Dead processes'
entries are swept by liveness (TID + start time) whenever the table is read.
"""
from __future__ import annotations

import mmap
import os
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

from .. import _core, _segment
from ..errors import DeadlockError
from . import _switches
from ._order import where
from ._table import SharedTable, cstr

TABLE_NAME = "@waitfor"
_REC = struct.Struct("<IIQQ200s400s")  # pid, tid, start, since_ns, lock name, where
CAPACITY = 1024

_state = threading.Lock()
_table: SharedTable | None = None
_table_pid = 0
_local = threading.local()


def deadlock_timeout() -> float:
    return _switches.timeout


def set_deadlock_timeout(seconds: float) -> None:
    """Wait this long (seconds) before checking for a deadlock; 0 turns
    runtime detection off."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError("deadlock_timeout must be a number of seconds")
    if seconds != seconds or seconds < 0:
        raise ValueError("deadlock_timeout must be >= 0")
    _switches.timeout = float(seconds)
    _switches.apply()


def close() -> None:
    """Release this process's handle on the table of long waits."""
    global _table
    with _state:
        if _table is not None and _table_pid == os.getpid():
            _table.close()
        _table = None


def _tbl() -> SharedTable:
    global _table, _table_pid
    if _table is None or _table_pid != os.getpid():
        _table, _table_pid = SharedTable(TABLE_NAME, _REC, CAPACITY), os.getpid()
    return _table


@dataclass(frozen=True)
class Wait:
    pid: int
    tid: int
    since_ns: int
    lock: str
    where: str
    owner_tid: int  # 0 if the lock is free (or unreadable)
    owner_pid: int


def lock_owner(name: str) -> tuple[int, int]:
    """(owner tid, owner pid hint) of the named Lock/RLock, read from its
    segment without attaching; (0, 0) if free or unknown."""
    if name.startswith("@"):
        return (0, 0)
    try:
        fd, st = _segment.open_entry(_segment.path_of(name))
    except OSError:  # gone, or not ours (ForeignEntry)
        return (0, 0)
    try:
        size = st.st_size
        if size < _segment.OFF_SLOTS:
            return (0, 0)
        with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mm:
            hdr = _segment.Header.parse(mm)
            if hdr.magic != _segment.MAGIC or hdr.kind not in (_segment.KIND_LOCK,
                                                                _segment.KIND_RLOCK):
                return (0, 0)
            off = hdr.object_offset
            word, pid = struct.unpack_from("<II", mm, off)
            (hint_tid,) = struct.unpack_from("<I", mm, off + 16)
            tid = word & 0x3FFFFFFF
            return (tid, pid if hint_tid == tid else 0)
    finally:
        os.close(fd)


def waits() -> list[Wait]:
    """The current long waits of every process (dead ones swept)."""
    with _state:
        tbl = _tbl()
        with tbl:
            tbl.remove_if(lambda r: not _core.task_alive(r[1], r[2]))  # type: ignore[arg-type]
            rows = list(tbl.rows())
    out = []
    for pid, tid, _start, since, lk, wh in rows:
        name = cstr(lk)
        otid, opid = lock_owner(name)
        out.append(Wait(int(pid), int(tid), int(since), name, cstr(wh), otid, opid))  # type: ignore[call-overload]
    return out


def find_cycle(ws: list[Wait], start: int) -> list[Wait] | None:
    """The cycle of waits through thread ``start``, if there is one."""
    by_tid = {w.tid: w for w in ws}
    path: list[Wait] = []
    cur = by_tid.get(start)
    while cur is not None:
        if any(p.tid == cur.tid for p in path):
            i = next(i for i, p in enumerate(path) if p.tid == cur.tid)
            cyc = path[i:]
            return cyc if any(w.tid == start for w in cyc) else None
        path.append(cur)
        if cur.owner_tid == 0 or cur.owner_tid == cur.tid:
            return None
        cur = by_tid.get(cur.owner_tid)
    return None


def all_cycles(ws: list[Wait]) -> list[list[Wait]]:
    seen: set[int] = set()
    out = []
    for w in ws:
        if w.tid in seen:
            continue
        c = find_cycle(ws, w.tid)
        if c:
            seen.update(x.tid for x in c)
            out.append(c)
    return out


def victim(cycle: list[Wait]) -> Wait:
    return max(cycle, key=lambda w: (w.since_ns, w.tid))


def describe(cycle: list[Wait]) -> str:
    lines = []
    for w in cycle:
        owner = next((x for x in cycle if x.tid == w.owner_tid), None)
        held_by = (f"held by process {owner.pid} (thread {owner.tid})" if owner
                   else f"held by thread {w.owner_tid}")
        lines.append(f"  process {w.pid} (thread {w.tid}) waits for {w.lock!r} ({held_by}) "
                     f"at {w.where}")
    return "\n".join(lines)


def on_long_wait(lock: Any) -> None:
    tid = _core.self_tid()
    if getattr(_local, "waiting", None) is not lock:
        _local.waiting = lock
        since = time.time_ns() - int(_switches.timeout * 1e9)
        with _state:
            tbl = _tbl()
            with tbl:
                tbl.remove_if(lambda r: r[1] == tid)
                # The lock by its shared-memory name: only _core.Mutex locks
                # (shm Lock/RLock) wait here (Redis locks never do), and the
                # owner is read from the segment of that name (lock_owner).
                tbl.append(os.getpid(), tid, _core.self_start(), since,
                           lock.name.encode()[:199], where(2).encode()[:399])
    ws = waits()
    cycle = find_cycle(ws, tid)
    if cycle is None:
        return
    v = victim(cycle)
    if v.tid != tid:
        return
    end_long_wait(lock)
    raise DeadlockError(
        "deadlock detected: a cycle of processes each waiting for a lock the next one holds:\n"
        + describe(cycle)
        + f"\nthis thread (process {os.getpid()}, thread {tid}) was chosen to break it "
        "(the youngest waiter); the others go on once it releases what it holds"
    )


def end_long_wait(lock: Any) -> None:
    if getattr(_local, "waiting", None) is None:
        return
    _local.waiting = None
    tid = _core.self_tid()
    with _state:
        tbl = _tbl()
        with tbl:
            tbl.remove_if(lambda r: r[1] == tid)


def graph_dot(ws: list[Wait]) -> str:
    """The wait-for graph in Graphviz DOT."""
    lines = ["digraph waitfor {", "  rankdir=LR;"]
    cyc = {w.tid for c in all_cycles(ws) for w in c}
    for w in ws:
        color = ' color="red"' if w.tid in cyc else ""
        lines.append(f'  "t{w.tid}" [label="pid {w.pid}\\nthread {w.tid}"{color}];')
        if w.owner_tid:
            lines.append(f'  "t{w.tid}" -> "t{w.owner_tid}" [label="{w.lock}"{color}];')
    lines.append("}")
    return "\n".join(lines)
