"""Deadlock avoidance: lock levels and ``ordered()`` (Dijkstra's resource
hierarchy), and the per-thread record of held locks that the deadlock
tooling shares.

The lecture's rule: if every process takes locks in one global order, no
cycle of waiters can form, so no deadlock. Two ways to follow it:

- ``interlock.ordered(a, b, c)`` takes all the given locks in the one global
  order (by level, then by backend and name, which every process computes
  the same way), all or nothing.
- ``Lock(level=n)``: taking a lock whose level is not above every level the
  thread already holds raises :class:`LockOrderError` at once, naming both
  locks and where each was taken, before anything can deadlock.

Tracking costs nothing for locks without a level while lockdep is off: the
C core routes ``acquire``/``release`` through the ``_tracked_*`` methods
below only for tracked locks (``_core`` ``is_tracked``).

Two things name a lock here, and they differ:

- its *identity* (``lock_key``): what it is, ``(backend, ...)`` + name, so a
  shared-memory lock "db" and a Redis lock "db" are two locks. Re-entry,
  duplicates in ``ordered()`` and releases are matched by identity.
- its *class* (``class_name``), for lockdep: a named lock's class is its name
  (every process that attaches "db" holds the same lock, and computes the
  same class); an anonymous lock's class is the place in the user's code
  that created it (``Lock@file:line:col``, as Linux lockdep keys a class by
  its initialisation site), so the locks made at one line in a loop are one
  class. Redis classes are prefixed ``redis:``.
"""
from __future__ import annotations

import contextlib
import os
import struct
import sys
import threading
import time
from typing import Any, Iterator

from .. import _core, _segment
from ..errors import DeadlockError, LockOrderError
from . import _switches


class Site:
    """Where a lock was taken: kept as (file, line, function), formatted
    only when a report needs it (tracking must stay cheap)."""

    __slots__ = ("file", "line", "func", "more")

    def __init__(self, file: str, line: int, func: str, more: "Site | None" = None) -> None:
        self.file, self.line, self.func, self.more = file, line, func, more

    def __str__(self) -> str:
        s = f"{self.file}:{self.line} in {self.func}"
        return s + " <- " + str(self.more) if self.more else s


class Held:
    """A tracked lock held by the current thread: ``key`` is its identity,
    ``name`` its lockdep class (see the module docstring); ``ordered`` is
    the token of the ``ordered()`` call that took it, or None."""

    __slots__ = ("lock", "key", "name", "level", "site", "count", "read", "ordered")

    def __init__(self, lock: Any, key: tuple[str, ...], name: str, level: int | None,
                 site: Site, read: bool = False, ordered: object | None = None) -> None:
        self.lock, self.key, self.name, self.level, self.site = lock, key, name, level, site
        self.count, self.read, self.ordered = 1, read, ordered

    @property
    def where(self) -> str:
        return str(self.site)


_local = threading.local()
_PKG = __name__.partition(".")[0]  # "interlock"


def held() -> list[Held]:
    """The tracked locks the calling thread holds, oldest first."""
    h: list[Held] | None = getattr(_local, "held", None)
    if h is None:
        h = _local.held = []
    return h


# The standard library's modules: a lock taken from multiprocessing's
# Process.run, threading, concurrent.futures, asyncio or contextlib was taken
# on behalf of the user's code below it, and that is the line to report.
_STDLIB = frozenset(sys.stdlib_module_names) - {"__main__"}
_DEMOS = _PKG + ".demos"  # interlock's demos are user code: report their lines


def _ours(f: Any) -> bool:
    # interlock's own frames ("interlock", "interlock.x"), not "interlock_app"
    return bool(f.f_globals.get("__name__", "").partition(".")[0] == _PKG)


def _library(module: str) -> bool:
    """A frame of this module is not the user's line: interlock (but its
    demos) or the standard library."""
    top = module.partition(".")[0]
    if top == _PKG:
        return not (module == _DEMOS or module.startswith(_DEMOS + "."))
    return top in _STDLIB


def site(stack: int = 1) -> Site:
    """The user's line: the first caller outside interlock and the standard
    library (and up to ``stack - 1`` of the user's callers of it), cheaply:
    nothing is formatted here.  If every caller is library code (a lock taken inside
    the standard library itself), the first caller outside interlock."""
    f: Any = sys._getframe(1)
    while f is not None and _library(f.f_globals.get("__name__", "")):
        f = f.f_back  # (one dict lookup and one set lookup a frame: tracked acquires run this)
    if f is None:
        f = sys._getframe(1)
        while f is not None and _ours(f):
            f = f.f_back
    if f is None:
        return Site("?", 0, "?")
    first = Site(f.f_code.co_filename, f.f_lineno, f.f_code.co_name)
    cur = first
    for _ in range(stack - 1):
        f = f.f_back
        while f is not None and _library(f.f_globals.get("__name__", "")):
            f = f.f_back  # the user's callers only (not multiprocessing's run)
        if f is None:
            break
        cur.more = Site(f.f_code.co_filename, f.f_lineno, f.f_code.co_name)
        cur = cur.more
    return first


def where(stack: int = 1) -> str:
    """'file:line in function' of the user's line (see :func:`site`), with
    up to ``stack`` of the user's frames, innermost first, joined by ' <- '."""
    return str(site(stack))


CLASS_MAX = 200  # bytes: a class must fit a record of the lockdep table


def fit(text: str) -> str:
    """``text`` cut to CLASS_MAX bytes, keeping its end (a path's tail and
    line number say more than its head)."""
    raw = text.encode()
    if len(raw) <= CLASS_MAX:
        return text
    return raw[-CLASS_MAX:].decode("utf-8", "ignore")


_classes: dict[tuple[Any, int, str], str] = {}  # (code, instruction, kind) -> class


def creation_class(kind: str) -> str:
    """The lockdep class of an anonymous lock made now: ``kind@file:line:col``
    of the first caller outside interlock.  Called once per anonymous lock:
    a frame walk and a dict look-up (the caller's code positions are scanned
    the first time a site makes a lock)."""
    f: Any = sys._getframe(1)
    while f is not None and _ours(f):
        f = f.f_back
    if f is None:
        return f"{kind}@?"
    key = (f.f_code, f.f_lasti, kind)
    cls = _classes.get(key)
    if cls is None:
        if len(_classes) >= 4096:  # code made at run time (exec): stay bounded
            _classes.clear()
        cls = _classes[key] = _site_class(f, kind)
    return cls


def _site_class(f: Any, kind: str) -> str:
    line, col = f.f_lineno, None
    positions = getattr(f.f_code, "co_positions", None)
    if positions is not None and f.f_lasti >= 0:
        for i, pos in enumerate(positions()):
            if i == f.f_lasti // 2:
                line = pos[0] if pos[0] is not None else line
                col = pos[2]
                break
    where = f"{f.f_code.co_filename}:{line}" + ("" if col is None else f":{col}")
    return fit(f"{kind}@{where}")


def class_name(lock: Any) -> str:
    """The lock's lockdep class: a named lock's name (two handles on one
    named lock are one lock), an anonymous lock's creation site; prefixed
    ``redis:`` for Redis locks (a Redis lock "db" is not the shared-memory
    lock "db")."""
    return getattr(lock, "_lock_class", None) or lock.name  # type: ignore[no-any-return]


def lock_key(lock: Any) -> tuple[str, ...]:
    """What the lock *is*: backend + name (+ the server, for Redis).  Two
    handles on one lock have the same key; two locks never do."""
    key = getattr(lock, "_lock_key", None)
    if key is None:
        return (type(lock).__module__ + "." + type(lock).__qualname__, lock.name)
    return key  # type: ignore[no-any-return]


def _find(lock: Any, stack: list[Held] | None = None) -> Held | None:
    key = lock_key(lock)
    for h in held() if stack is None else stack:
        if h.key == key:
            return h
    return None


def in_ordered() -> object | None:
    """While one ``ordered()`` call takes its locks in this thread: a token
    of that call (locks it took carry it in ``Held.ordered``); else None."""
    return getattr(_local, "ordering", None)


def check_level(lock: Any, name: str, level: int | None, at: Site) -> None:
    if level is None:
        return
    key = lock_key(lock)
    for h in held():
        if h.level is not None and h.key != key and h.level >= level:
            raise LockOrderError(
                f"lock order violation: taking {name!r} (level {level}) at {at} while holding "
                f"{h.name!r} (level {h.level}) taken at {h.where}; locks must be taken in "
                "increasing level order (or use interlock.ordered())"
            )




def _handoff(lock: Any) -> bool:
    """A lock anyone may release (``interlock.Lock``, a binary semaphore like
    multiprocessing's): the thread that took it may no longer hold it."""
    return bool(getattr(lock, "_handoff", False))


def _prune_released() -> None:
    """Forget the holds of hand-off locks that another thread or process
    released since this thread took them: their release ran in the other
    thread, whose stack did not have them.  Without this, a lock handed off
    would stay "held" here and give false orders (and false level errors)
    to every later acquisition of this thread.  One ``_is_owned()`` call per
    such hold, only while tracking is on."""
    stack = held()
    if any(_handoff(h.lock) and not h.lock._is_owned() for h in stack):
        stack[:] = [h for h in stack if not _handoff(h.lock) or h.lock._is_owned()]


def before_acquire(lock: Any, blocking: bool, at: Site, read: bool = False) -> bool:
    """Checks before taking ``lock``.  Returns True if this is a re-entry of
    a lock the thread already holds (no new order to record)."""
    _prune_released()
    h = _find(lock)
    if h is not None and (lock._recursive or (read and h.read)):
        return True  # re-entry: an RLock, or a read hold inside a read hold
    name, level = class_name(lock), lock.level
    check_level(lock, name, level, at)
    if _switches.lockdep and _switches.note_acquire is not None:
        _switches.note_acquire(lock, name, at, blocking, held(), read=read, again=h is not None)
    return False


_SITE = struct.Struct("<I60s")


def _publish_site(lock: Any, tid: int, at: Site | None) -> None:
    """Where the holder took it, in the lock's segment, for `interlock ls`
    / `inspect` (registry: ``acquired_at``).  Tracked Locks/RLocks only."""
    seg = getattr(lock, "_seg", None)
    if seg is None or seg.mm is None or seg.kind not in (_segment.KIND_LOCK, _segment.KIND_RLOCK):
        return
    text = b"" if at is None else f"{os.path.basename(at.file)}:{at.line} in {at.func}".encode()
    try:
        _SITE.pack_into(seg.mm, _segment.OFF_SITE, tid, text[:60])
    except (ValueError, TypeError):  # pragma: no cover - closed under us
        pass


def after_acquire(lock: Any, at: Site, reentry: bool, read: bool = False) -> None:
    if reentry:
        h = _find(lock)
        if h is not None:
            h.count += 1
            return
    if _handoff(lock):
        # The holder waited on its own Lock and another thread released it
        # meanwhile: one hold again, not two.
        key = lock_key(lock)
        held()[:] = [h for h in held() if h.key != key]
    held().append(Held(lock, lock_key(lock), class_name(lock), lock.level, at, read=read,
                       ordered=getattr(_local, "ordering", None)))
    _publish_site(lock, _core.self_tid(), at)


def after_release(lock: Any) -> None:
    stack = held()
    key = lock_key(lock)
    for i in range(len(stack) - 1, -1, -1):
        if stack[i].key == key:
            stack[i].count -= 1
            if stack[i].count <= 0:
                del stack[i]
                _publish_site(lock, 0, None)
            return
    if _handoff(lock):  # released for the thread that took it (hand-off)
        _publish_site(lock, 0, None)



def _order_key(lock: Any) -> tuple[int, str, tuple[str, ...]]:
    # Level, then the class (name, prefixed by backend: the same in every
    # process), then the full identity (for two Redis servers' "db").
    level = getattr(lock, "level", None)
    return (-1 if level is None else level, class_name(lock), lock_key(lock))


@contextlib.contextmanager
def ordered(*locks: Any, timeout: float | None = None) -> Iterator[tuple[Any, ...]]:
    """Take every lock in ``locks`` in the one global order (level, then
    backend and name), whatever order they are given in; release them in
    reverse.

    All or nothing: if ``timeout`` (seconds, for the whole set) passes or an
    acquisition raises, the locks already taken are released and
    ``TimeoutError`` (or the error) is raised. Duplicates (the same lock:
    same backend and name) are taken once.  Locks of one lockdep class (made
    at one line) may be taken together here: the order is defined.
    """
    if timeout is not None and (timeout != timeout or timeout < 0):
        raise ValueError("'timeout' must be a non-negative number")
    uniq: dict[tuple[str, ...], Any] = {}
    for lk in locks:
        if not hasattr(lk, "acquire") or not hasattr(lk, "name"):
            raise TypeError(f"ordered() takes interlock locks, not {type(lk).__name__}")
        uniq.setdefault(lock_key(lk), lk)
    order = sorted(uniq.values(), key=_order_key)
    deadline = None if timeout is None else time.monotonic() + timeout
    taken: list[Any] = []
    outer = in_ordered()
    _local.ordering = object()  # this call's token
    try:
        for lk in order:
            if deadline is None:
                ok = lk.acquire()
            else:
                ok = lk.acquire(timeout=max(0.0, deadline - time.monotonic()))
            if not ok:
                raise TimeoutError(
                    f"ordered(): could not take {lk.name!r} within {timeout} s "
                    f"(holding {[t.name for t in taken]}); released everything"
                )
            taken.append(lk)
    except BaseException:
        for lk in reversed(taken):
            lk.release()
        raise
    finally:
        _local.ordering = outer
    try:
        yield tuple(order)
    finally:
        for lk in reversed(taken):
            lk.release()


__all__ = ["LockOrderError", "ordered", "DeadlockError"]
