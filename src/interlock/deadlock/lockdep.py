"""Lock-order validation, in the manner of the Linux kernel's lockdep.

When enabled (``interlock.lockdep.enable()``, or ``INTERLOCK_LOCKDEP=1`` /
``=raise`` in the environment before import), every acquisition of an
interlock lock records an *order edge* "B taken while A held" between lock
*classes*. A named lock's class is its name (every process that attaches
"db" takes the same class); an anonymous lock's class is where it was made
(``Lock@file.py:12:8``: the locks made at one line in a loop are one class,
as in Linux, where a class is a lock's initialisation site); a Redis lock's
class is prefixed ``redis:``. The first time an edge closes a cycle -- A
before B somewhere, B before A elsewhere; or a longer cycle A->B->C->A -- it
is reported with both acquisition sites, although nothing has deadlocked
yet: the two orders *can* deadlock the day they run at the same time.

Reported: ABBA and longer cycles across threads and processes; taking a
non-recursive lock the thread already holds (AA); taking a lock while
holding another lock *of the same class* (two locks made at one line, in no
defined order), unless ``ordered()`` takes both in one call or both have
levels. Not reported: re-entry of an RLock; read-read orders between
reader-writer locks (readers do not exclude each other).

Where the orders live: a shared table per *domain* (segment
``@lockdep.<domain>``). ``enable()`` picks the domain: the one given, else
the one this process inherited (fork, or ``INTERLOCK_LOCKDEP_DOMAIN`` in the
environment), else a fresh one; it exports ``INTERLOCK_LOCKDEP`` and
``INTERLOCK_LOCKDEP_DOMAIN`` so that children started later under spawn or
forkserver join it, and it keeps a handle on the table for the life of the
process: the orders that any process of the domain recorded live at least
as long as the process that enabled lockdep. Two applications (or two test
runs) of one user get two domains and never see nor erase each other's
orders; processes that want to be checked together name one domain
(``enable(domain="myapp")`` or the variable).

Default action: an :class:`LockOrderWarning`; ``enable(action="raise")``
raises :class:`LockOrderError` from the acquire that closes the cycle
(before taking the lock). ``enable()`` without an action keeps the one in
force (``INTERLOCK_LOCKDEP=raise`` stays "raise"); an explicit one wins.
``report()`` lists the recorded edges and the violations, ``status()`` the
table's use; ``interlock lockdep`` prints both. A full table is never
silent: :class:`LockdepWarning` once per process, and ``status()`` / the CLI
count the orders dropped.

Cost: off, nothing (the C core does not even call into Python). On, each
acquisition of a lock runs a few microseconds of Python; the shared table is
read and written only when this process sees an edge for the first time.
"""
from __future__ import annotations

import os
import re
import secrets
import struct
import threading
import warnings
from dataclasses import dataclass
from typing import Any

from .. import _segment
from ..errors import LockdepWarning, LockOrderError, LockOrderWarning
from . import _order, _switches
from ._order import Held
from ._table import SharedTable, cstr

TABLE_PREFIX = "@lockdep."  # + domain: the segment of one domain's orders
ENV = "INTERLOCK_LOCKDEP"
ENV_DOMAIN = "INTERLOCK_LOCKDEP_DOMAIN"
_DOMAIN_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]{0,63}")
_REC = struct.Struct("<II200s200s200s200s")  # pid, kind, from, to, where_from, where_to
EDGE, VIOLATION = 0, 1
CAPACITY = 4096  # edges + violations per domain (808 bytes each: 3.2 MiB)


@dataclass(frozen=True)
class Edge:
    before: str
    after: str
    where_before: str
    where_after: str
    pid: int
    domain: str = ""


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
    domains: tuple[str, ...] = ()  # the domains read
    dropped: int = 0  # orders refused by full tables (see status())


@dataclass(frozen=True)
class Status:
    """Where lockdep stands in this process (``lockdep.status()``)."""

    enabled: bool
    action: str  # "warn" or "raise"
    domain: str | None  # None: this process belongs to no domain
    table: str | None  # the segment holding the domain's orders
    edges: int
    violations: int
    capacity: int  # records the table holds (edges + violations)
    dropped: int  # orders not recorded because the table was full

    def __str__(self) -> str:
        if self.domain is None:
            return "lockdep: " + ("on" if self.enabled else "off") + ", no domain"
        text = (f"lockdep: {'on' if self.enabled else 'off'} ({self.action}), domain "
                f"{self.domain!r} (table {self.table}): {self.edges} edges, "
                f"{self.violations} violations, capacity {self.capacity}")
        if self.dropped:
            text += f"; table full: {self.dropped} edges dropped"
        return text


_state = threading.Lock()
_action = "raise" if os.environ.get(ENV) == "raise" else "warn"
_domain: str | None = None  # set by enable(); inherited by fork children
_table: SharedTable | None = None
_table_pid = 0
_table_domain: str | None = None
_seen: set[tuple[str, str]] = set()
_reported: set[tuple[str, ...]] = set()
_warned_full = False


def enabled() -> bool:
    """True if lock-order validation is on in this process."""
    return _switches.lockdep


def domain() -> str | None:
    """This process's lockdep domain: the one it enabled or joined (via
    ``INTERLOCK_LOCKDEP_DOMAIN``), or None."""
    return _domain or _env_domain()


def _check_domain(d: object) -> str:
    if not isinstance(d, str) or not _DOMAIN_RE.fullmatch(d):
        raise ValueError(f"lockdep domain must be 1-64 letters, digits, '_' or '-', not {d!r}")
    return d


def _env_domain() -> str | None:
    d = os.environ.get(ENV_DOMAIN)
    if not d:
        return None
    try:
        return _check_domain(d)
    except ValueError as e:
        warnings.warn(f"{ENV_DOMAIN} ignored: {e}", LockdepWarning, stacklevel=3)
        return None


def domains() -> list[str]:
    """Every lockdep domain with a table on this machine (of this user)."""
    base = os.path.basename(_segment.internal_path(TABLE_PREFIX))
    try:
        entries = os.listdir(_segment.SHM_DIR)
    except OSError:  # pragma: no cover
        return []
    return sorted(e[len(base):] for e in entries if e.startswith(base))


def enable(action: str | None = None, *, domain: str | None = None) -> None:
    """Record and check lock orders from now on, in this process and the
    children it starts afterwards (fork inherits it; spawn and forkserver
    children read the ``INTERLOCK_LOCKDEP*`` variables this exports).

    ``action``: "warn" or "raise"; None keeps the one in force (from an
    earlier call or ``INTERLOCK_LOCKDEP=raise``; "warn" by default).
    ``domain``: the table of orders to join; None keeps this process's
    domain, else takes ``INTERLOCK_LOCKDEP_DOMAIN``, else a fresh one.
    The table is opened now and held until the process ends (or
    ``close()``), so what the domain recorded lives at least that long."""
    global _action
    if action is not None and action not in ("warn", "raise"):
        raise ValueError(f"action must be 'warn' or 'raise', not {action!r}")
    if domain is not None:
        _check_domain(domain)
    with _state:
        if action is not None:
            _action = action
        _join(domain or _domain or _env_domain() or f"{os.getpid()}-{secrets.token_hex(4)}")
        os.environ[ENV] = "raise" if _action == "raise" else "1"
        _switches.lockdep = True
        _tbl()
    _switches.apply()


def _join(d: str) -> None:
    """Under _state: make ``d`` this process's domain (and its children's)."""
    global _domain, _warned_full
    if d != _domain:
        _close_locked()
        _reported.clear()
        _warned_full = False
        _domain = d
    os.environ[ENV_DOMAIN] = d


def disable() -> None:
    """Stop recording (here, and in children started afterwards).  The
    table stays open: ``report()`` still shows what was recorded."""
    _switches.lockdep = False
    os.environ.pop(ENV, None)
    _switches.apply()


def _tbl() -> SharedTable:
    """Under _state: this process's handle on its domain's table."""
    global _table, _table_pid, _table_domain
    d = _domain or _env_domain()
    if d is None:
        raise RuntimeError("lockdep: this process has no domain (call lockdep.enable())")
    if _table is None or _table_pid != os.getpid() or _table_domain != d:
        if _table is not None and _table_pid == os.getpid():
            _table.close()
        _table, _table_pid, _table_domain = SharedTable(TABLE_PREFIX + d, _REC, CAPACITY), \
            os.getpid(), d
        _seen.clear()
    return _table


def _edges(tbl: SharedTable) -> list[Edge]:
    return [Edge(cstr(f), cstr(t), cstr(wf), cstr(wt), int(pid))  # type: ignore[call-overload]
            for pid, kind, f, t, wf, wt in tbl.rows() if kind == EDGE]


def _warn_full(tbl: SharedTable) -> None:
    """Once per process and domain: the table is full, say so."""
    global _warned_full
    if _warned_full:
        return
    _warned_full = True
    warnings.warn(
        f"lockdep: the lock-order table {TABLE_PREFIX}{_table_domain} is full "
        f"({tbl.capacity} records): new lock orders are no longer recorded, so cycles "
        f"through them go unreported ({tbl.dropped()} dropped so far; see "
        "lockdep.status(), `interlock lockdep`; lockdep.reset() empties it)",
        LockdepWarning, stacklevel=5)


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
    return s.encode()[:200]


def _report(v: Violation) -> None:
    if _action == "raise":
        raise LockOrderError(v.message)
    warnings.warn(v.message, LockOrderWarning, stacklevel=5)


def note_acquire(lock: Any, name: str, at: Any, blocking: bool, held: list[Held],
                 read: bool = False, again: bool = False) -> None:
    """Called (by deadlock._order) before a tracked lock is taken; ``name`` is
    its class."""
    key = _order.lock_key(lock)
    if again:
        if not blocking:
            return
        first = next(h for h in held if h.key == key)
        site = str(at)
        v = Violation("recursion", (name, name), Edge(name, name, first.where, site, os.getpid()),
                      f"lockdep: {name!r} is taken again at {site} by the thread that already "
                      f"holds it (taken at {first.where}): a non-recursive lock taken twice "
                      "deadlocks (AA), unless another thread or process releases it (a "
                      "Lock may be released by anyone, as multiprocessing's)")
        _record_violation(v, ("AA", name))
        return
    if blocking:
        _check_same_class(lock, key, name, at, held, read)
    new = [(h.name, h.where) for h in held
           if h.name != name and (h.name, name) not in _seen and not (read and h.read)]
    if not new:
        return
    site = str(at)
    full = False
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
                if not tbl.append(os.getpid(), EDGE, _enc(before), _enc(name), _enc(wb),
                                  _enc(site)):
                    full = True
                edges.append(this)  # still checked against, in this process
            for v in found:
                if not tbl.append(os.getpid(), VIOLATION, _enc(v.edge.before),
                                  _enc(v.edge.after), _enc(v.edge.where_before),
                                  _enc(v.edge.where_after)):
                    full = True
        if full:
            _warn_full(tbl)
    for v in found:
        ckey = tuple(sorted(v.cycle))
        if ckey not in _reported:
            _reported.add(ckey)
            _report(v)


def _check_same_class(lock: Any, key: tuple[str, ...], name: str, at: Any,
                      held: list[Held], read: bool) -> None:
    """Two different locks of one class, one taken while holding the other:
    nothing orders the locks *within* a class, so two threads can take two
    of them in opposite orders (Linux: "possible recursive locking").  Fine
    when one ``ordered()`` call takes both (its order is global), or when
    both have levels (``check_level`` has already enforced them)."""
    for h in held:
        if h.name != name or h.key == key or (read and h.read):
            continue
        if h.level is not None and lock.level is not None:
            continue
        if h.ordered is not None and h.ordered is _order.in_ordered():
            continue
        site = str(at)
        v = Violation("recursion", (name, name), Edge(name, name, h.where, site, os.getpid()),
                      f"lockdep: possible recursive locking: a lock of class {name!r} is taken "
                      f"at {site} while the thread holds another lock of the same class "
                      f"(taken at {h.where}); nothing orders two locks of one class, so two "
                      "threads can take them in opposite orders. Take them together with "
                      "interlock.ordered(), or give them levels (Lock(level=...)).")
        _record_violation(v, ("nest", name))
        return


def _record_violation(v: Violation, key: tuple[str, ...]) -> None:
    if key in _reported:
        return  # once per process: an AA in a loop must not fill the table
    _reported.add(key)
    with _state:
        tbl = _tbl()
        with tbl:
            ok = tbl.append(os.getpid(), VIOLATION, _enc(v.edge.before), _enc(v.edge.after),
                            _enc(v.edge.where_before), _enc(v.edge.where_after))
        if not ok:
            _warn_full(tbl)
    _report(v)


def _rows(d: str) -> tuple[list[tuple[object, ...]], int]:
    """The records of domain ``d`` and its dropped count, under its lock."""
    with _state:
        if d == (_domain or _env_domain()):
            tbl = _tbl()
            with tbl:
                return list(tbl.rows()), tbl.dropped()
    if not os.path.exists(_segment.internal_path(TABLE_PREFIX + d)):
        return [], 0
    other = SharedTable(TABLE_PREFIX + d, _REC, CAPACITY)  # a look, then let go
    try:
        with other:
            return list(other.rows()), other.dropped()
    finally:
        other.close()


def report(domain: str | None = None) -> Report:
    """Every order edge and violation recorded in ``domain`` (default: this
    process's; a process that belongs to no domain reads them all)."""
    d = domain or _domain or _env_domain()
    names = [_check_domain(d)] if d else domains()
    edges, viols, dropped = [], [], 0
    for dn in names:
        rows, drop = _rows(dn)
        dropped += drop
        for pid, kind, f, t, wf, wt in rows:
            e = Edge(cstr(f), cstr(t), cstr(wf), cstr(wt), int(pid), dn)  # type: ignore[call-overload]
            if kind == EDGE:
                edges.append(e)
            else:
                k = "recursion" if e.before == e.after else "cycle"
                viols.append(Violation(k, (e.before, e.after), e,
                                       f"{k}: {e.before!r} (at {e.where_before}) then "
                                       f"{e.after!r} (at {e.where_after}), pid {e.pid}"))
    return Report(tuple(edges), tuple(viols), tuple(names), dropped)


def status() -> Status:
    """This process's lockdep: on or off, its domain, and its table's use
    (``dropped`` > 0: the table was full and orders went unrecorded)."""
    d = _domain or _env_domain()
    if d is None:
        return Status(_switches.lockdep, _action, None, None, 0, 0, 0, 0)
    with _state:
        tbl = _tbl()
        with tbl:
            rows = list(tbl.rows())
            dropped, cap = tbl.dropped(), tbl.capacity
    nedges = sum(1 for r in rows if r[1] == EDGE)
    return Status(_switches.lockdep, _action, d, TABLE_PREFIX + d, nedges, len(rows) - nedges, cap,
                  dropped)


def _close_locked() -> None:
    global _table
    if _table is not None and _table_pid == os.getpid():
        _table.close()
    _table = None
    _seen.clear()


def close() -> None:
    """Release this process's handle on its domain's order table (it is
    gone once no process holds one).  Reopened on next use."""
    with _state:
        _close_locked()


def reset() -> None:
    """Forget every order recorded in this process's domain (by all its
    processes); other domains are untouched.  No domain: nothing to do."""
    global _warned_full
    with _state:
        if (_domain or _env_domain()) is None:
            return
        tbl = _tbl()
        with tbl:
            tbl.remove_if(lambda row: True)
            tbl.clear_dropped()
        _seen.clear()
        _reported.clear()
        _warned_full = False


def _after_fork_in_child() -> None:
    # Another thread of the parent may have held _state at the fork: the
    # child's copy would stay locked for ever.  (The table handle is
    # reopened in the child on first use: _tbl.)
    global _state
    _state = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)

_switches.note_acquire = note_acquire  # _order calls it; it does not import us

_env = os.environ.get(ENV, "")
if _env and _env != "0":
    enable()  # the action comes from the variable ("raise" or "warn"), read above
