"""Lock-order validation, in the manner of the Linux kernel's lockdep.

When enabled (``interlock.lockdep.enable()``, or ``INTERLOCK_LOCKDEP=1`` /
``=raise`` in the environment before import), every acquisition of an
interlock lock records an *order edge* "B taken while A held" between lock
classes (a class is a lock's name: every process that attaches "db" takes
the same class). Edges go to a table shared by all processes of the user
(``@lockdep`` segment). The first time an edge closes a cycle -- A before B
somewhere, B before A elsewhere; or a longer cycle A->B->C->A -- it is
reported with both acquisition sites, although nothing has deadlocked yet:
the two orders *can* deadlock the day they run at the same time.

Reported: ABBA and longer cycles across threads and processes; taking a
non-recursive lock the thread already holds (AA). Not reported: re-entry of
an RLock; read-read orders between reader-writer locks (readers do not
exclude each other).

Default action: an :class:`LockOrderWarning`; ``enable(action="raise")``
raises :class:`LockOrderError` from the acquire that closes the cycle
(before taking the lock). ``report()`` lists the recorded edges and the
violations; ``interlock lockdep`` prints the same.

Cost: off, nothing (the C core does not even call into Python). On, each
acquisition of a lock runs a few microseconds of Python; the shared table is
read and written only when this process sees an edge for the first time.
"""
from __future__ import annotations

import os
import struct
import threading
import warnings
from dataclasses import dataclass
from typing import Any

from . import _core
from ._hierarchy import Held, LockOrderError
from ._table import SharedTable, cstr

TABLE_NAME = "@lockdep"
_REC = struct.Struct("<II200s200s200s200s")  # pid, kind, from, to, where_from, where_to
EDGE, VIOLATION = 0, 1
CAPACITY = 2048


class LockOrderWarning(RuntimeWarning):
    """A lock order that can deadlock was observed (lockdep)."""


@dataclass(frozen=True)
class Edge:
    before: str
    after: str
    where_before: str
    where_after: str
    pid: int


@dataclass(frozen=True)
class Violation:
    kind: str  # "cycle" or "recursion"
    cycle: tuple[str, ...]
    edge: Edge
    message: str


@dataclass(frozen=True)
class Report:
    edges: tuple[Edge, ...]
    violations: tuple[Violation, ...]


_state = threading.Lock()
_enabled = False
_action = "warn"
_table: SharedTable | None = None
_table_pid = 0
_seen: set[tuple[str, str]] = set()
_reported: set[tuple[str, ...]] = set()


def enabled() -> bool:
    """True if lock-order validation is on in this process."""
    return _enabled


def _deadlock_timeout() -> float:
    from . import _waitfor

    return _waitfor.deadlock_timeout()


def enable(action: str = "warn") -> None:
    """Record lock orders from now on, in this process (children started
    afterwards under fork inherit it; under spawn set INTERLOCK_LOCKDEP)."""
    global _enabled, _action
    if action not in ("warn", "raise"):
        raise ValueError(f"action must be 'warn' or 'raise', not {action!r}")
    _action = action
    _enabled = True
    _core._set_tracking(True, _deadlock_timeout())


def disable() -> None:
    """Stop validating lock order in this process (orders already recorded
    stay in the shared table)."""
    global _enabled
    _enabled = False
    _core._set_tracking(False, _deadlock_timeout())


def _tbl() -> SharedTable:
    global _table, _table_pid
    if _table is None or _table_pid != os.getpid():
        _table, _table_pid = SharedTable(TABLE_NAME, _REC, CAPACITY), os.getpid()
        _seen.clear()
    return _table


def _edges(tbl: SharedTable) -> list[Edge]:
    return [Edge(cstr(f), cstr(t), cstr(wf), cstr(wt), int(pid))  # type: ignore[call-overload]
            for pid, kind, f, t, wf, wt in tbl.rows() if kind == EDGE]


def _path(edges: list[Edge], src: str, dst: str) -> list[Edge] | None:
    """A path of edges from src to dst (BFS), or None."""
    nxt: dict[str, list[Edge]] = {}
    for e in edges:
        nxt.setdefault(e.before, []).append(e)
    prev: dict[str, Edge] = {}
    frontier, seen = [src], {src}
    while frontier:
        cur = frontier.pop(0)
        if cur == dst:
            out = []
            while cur != src:
                e = prev[cur]
                out.append(e)
                cur = e.before
            return out[::-1]
        for e in nxt.get(cur, []):
            if e.after not in seen:
                seen.add(e.after)
                prev[e.after] = e
                frontier.append(e.after)
    return None


def _enc(s: str) -> bytes:
    return s.encode()[:199]


def _report(v: Violation) -> None:
    if _action == "raise":
        raise LockOrderError(v.message)
    warnings.warn(v.message, LockOrderWarning, stacklevel=5)


def note_acquire(lock: Any, name: str, at: Any, blocking: bool, held: list[Held],
                 read: bool = False, again: bool = False) -> None:
    """Called (by _hierarchy) before a tracked lock is taken."""
    if again:
        if not blocking:
            return
        key = ("AA", name)
        first = next(h for h in held if h.name == name)
        site = str(at)
        v = Violation("recursion", (name, name), Edge(name, name, first.where, site, os.getpid()),
                      f"lockdep: {name!r} is taken again at {site} by the thread that already "
                      f"holds it (taken at {first.where}): a non-recursive lock taken twice "
                      "deadlocks (AA)")
        _record_violation(v, key)
        return
    new = [(h.name, h.where) for h in held
           if h.name != name and (h.name, name) not in _seen and not (read and h.read)]
    if not new:
        return
    site = str(at)
    with _state:
        tbl = _tbl()
        with tbl:
            edges = _edges(tbl)
            known = {(e.before, e.after) for e in edges}
            found: list[Violation] = []
            for before, wb in new:
                _seen.add((before, name))
                if (before, name) in known:
                    continue
                back = _path(edges, name, before)
                this = Edge(before, name, wb, site, os.getpid())
                if back is not None:
                    cycle = tuple([before] + [e.after for e in [this] + back])
                    lines = [f"  {e.before!r} -> {e.after!r}: {e.before!r} taken at "
                             f"{e.where_before}, then {e.after!r} at {e.where_after} "
                             f"(pid {e.pid})" for e in [this] + back]
                    msg = ("lockdep: possible deadlock: lock order cycle "
                           + " -> ".join(repr(c) for c in cycle) + "\n" + "\n".join(lines))
                    found.append(Violation("cycle", cycle, this, msg))
                tbl.append(os.getpid(), EDGE, _enc(before), _enc(name), _enc(wb), _enc(site))
                edges.append(this)
            for v in found:
                tbl.append(os.getpid(), VIOLATION, _enc(v.edge.before), _enc(v.edge.after),
                           _enc(v.edge.where_before), _enc(v.edge.where_after))
    for v in found:
        ckey = tuple(sorted(v.cycle))
        if ckey not in _reported:
            _reported.add(ckey)
            _report(v)


def _record_violation(v: Violation, key: tuple[str, ...]) -> None:
    with _state:
        tbl = _tbl()
        with tbl:
            tbl.append(os.getpid(), VIOLATION, _enc(v.edge.before), _enc(v.edge.after),
                       _enc(v.edge.where_before), _enc(v.edge.where_after))
    if key not in _reported:
        _reported.add(key)
        _report(v)


def report() -> Report:
    """Every order edge and violation recorded by any process still using
    the lockdep table."""
    with _state:
        tbl = _tbl()
        with tbl:
            rows = list(tbl.rows())
    edges, viols = [], []
    for pid, kind, f, t, wf, wt in rows:
        e = Edge(cstr(f), cstr(t), cstr(wf), cstr(wt), int(pid))  # type: ignore[call-overload]
        if kind == EDGE:
            edges.append(e)
        else:
            k = "recursion" if e.before == e.after else "cycle"
            viols.append(Violation(k, (e.before, e.after), e,
                                   f"{k}: {e.before!r} (at {e.where_before}) then {e.after!r} "
                                   f"(at {e.where_after}), pid {e.pid}"))
    return Report(tuple(edges), tuple(viols))


def close() -> None:
    """Release this process's handle on the shared order table (it is gone
    once no process holds one).  Reopened on next use."""
    global _table
    with _state:
        if _table is not None and _table_pid == os.getpid():
            _table.close()
        _table = None
        _seen.clear()


def reset() -> None:
    """Forget every recorded edge (all processes)."""
    with _state:
        tbl = _tbl()
        with tbl:
            tbl.remove_if(lambda row: True)
        _seen.clear()
        _reported.clear()


_env = os.environ.get("INTERLOCK_LOCKDEP", "")
if _env and _env != "0":
    enable("raise" if _env == "raise" else "warn")
