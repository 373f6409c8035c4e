"""Deadlock avoidance: lock levels and ``ordered()`` (Dijkstra's resource
hierarchy), and the per-thread record of held locks that the deadlock
tooling shares.

The lecture's rule: if every process takes locks in one global order, no
cycle of waiters can form, so no deadlock. Two ways to follow it:

- ``interlock.ordered(a, b, c)`` takes all the given locks in the one global
  order (by level, then by name, which every process computes the same way),
  all or nothing.
- ``Lock(level=n)``: taking a lock whose level is not above every level the
  thread already holds raises :class:`LockOrderError` at once, naming both
  locks and where each was taken, before anything can deadlock.

Tracking costs nothing for locks without a level while lockdep is off: the
C core routes ``acquire``/``release`` through the ``_tracked_*`` methods
below only for tracked locks (``_core`` ``is_tracked``).
"""
from __future__ import annotations

import contextlib
import os
import struct
import sys
import threading
import time
from typing import Any, Iterator

from . import _core, _segment
from ._errors import DeadlockError


class LockOrderError(RuntimeError):
    """A lock was (or would be) taken against the lock order: against the
    levels (at once), or closing a cycle of observed orders (lockdep, in
    ``"raise"`` mode)."""


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
    """A tracked lock held by the current thread."""

    __slots__ = ("lock", "name", "level", "site", "count", "read")

    def __init__(self, lock: Any, name: str, level: int | None, site: Site,
                 read: bool = False) -> None:
        self.lock, self.name, self.level, self.site = lock, name, level, site
        self.count, self.read = 1, read

    @property
    def where(self) -> str:
        return str(self.site)


_local = threading.local()
_PKG = __name__.rsplit(".", 1)[0]


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


def _library(module: str) -> bool:
    """A frame of this module is not the user's line: interlock (but its
    demos) or the standard library."""
    if module == _PKG or module.startswith(_PKG + "."):
        return not (module == _DEMOS or module.startswith(_DEMOS + "."))
    return module.partition(".")[0] in _STDLIB


def site(stack: int = 1) -> Site:
    """The user's line: the first caller outside interlock and the standard
    library (and up to ``stack - 1`` of the user's callers of it), cheaply:
    nothing is formatted here.  If every caller is library code (a lock taken inside
    the standard library itself), the first caller outside interlock."""
    f: Any = sys._getframe(1)
    while f is not None and _library(f.f_globals.get("__name__", "")):
        f = f.f_back
    if f is None:
        f = sys._getframe(1)
        while f is not None and f.f_globals.get("__name__", "").startswith(_PKG):
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


def class_name(lock: Any) -> str:
    """The lock's class for the order checks: its name (two handles on one
    named lock are one lock), prefixed for backends with a namespace of
    their own (a Redis lock "db" is not the shared-memory lock "db")."""
    return getattr(lock, "_lock_class", None) or lock.name  # type: ignore[no-any-return]


def _find(lock: Any, stack: list[Held] | None = None) -> Held | None:
    name = class_name(lock)
    for h in held() if stack is None else stack:
        if h.name == name:
            return h
    return None


def check_level(lock: Any, name: str, level: int | None, at: Site) -> None:
    if level is None:
        return
    for h in held():
        if h.level is not None and h.name != name and h.level >= level:
            raise LockOrderError(
                f"lock order violation: taking {name!r} (level {level}) at {at} while holding "
                f"{h.name!r} (level {h.level}) taken at {h.where}; locks must be taken in "
                "increasing level order (or use interlock.ordered())"
            )


_lockdep: Any = None  # the lockdep module, imported on first use (it imports us)


def before_acquire(lock: Any, blocking: bool, at: Site, read: bool = False) -> bool:
    """Checks before taking ``lock``.  Returns True if this is a re-entry of
    a lock the thread already holds (no new order to record)."""
    global _lockdep
    h = _find(lock)
    if h is not None and (lock._recursive or (read and h.read)):
        return True  # re-entry: an RLock, or a read hold inside a read hold
    name, level = class_name(lock), lock.level
    check_level(lock, name, level, at)
    if _lockdep is None:
        from . import lockdep as _lockdep
    if _lockdep._enabled:
        _lockdep.note_acquire(lock, name, at, blocking, held(), read=read, again=h is not None)
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
    held().append(Held(lock, class_name(lock), lock.level, at, read=read))
    _publish_site(lock, _core.self_tid(), at)


def after_release(lock: Any) -> None:
    stack = held()
    for i in range(len(stack) - 1, -1, -1):
        if stack[i].name == class_name(lock):
            stack[i].count -= 1
            if stack[i].count <= 0:
                del stack[i]
                _publish_site(lock, 0, None)
            return


class TrackedLockMixin:
    """The methods the C core calls for a tracked lock (``_core.Mutex``)."""

    def _tracked_acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        lk: Any = self
        at = site()
        again = before_acquire(self, bool(block), at)
        ok = bool(lk._raw_acquire(block, timeout))
        if ok:
            after_acquire(self, at, again)
        return ok

    def _tracked_enter(self) -> bool:
        lk: Any = self
        at = site()
        again = before_acquire(self, True, at)
        lk._raw_enter()
        after_acquire(self, at, again)
        return True

    def _tracked_release(self) -> None:
        lk: Any = self
        lk._raw_release()
        after_release(self)

    # Runtime deadlock detection (the C core calls these after a thread has
    # waited deadlock_timeout for this lock, then every 250 ms).
    def _on_long_wait(self) -> None:
        from . import _waitfor

        _waitfor.on_long_wait(self)

    def _end_long_wait(self) -> None:
        from . import _waitfor

        _waitfor.end_long_wait(self)


def _order_key(lock: Any) -> tuple[int, str]:
    level = getattr(lock, "level", None)
    return (-1 if level is None else level, lock.name)


@contextlib.contextmanager
def ordered(*locks: Any, timeout: float | None = None) -> Iterator[tuple[Any, ...]]:
    """Take every lock in ``locks`` in the one global order (level, then
    name), whatever order they are given in; release them in reverse.

    All or nothing: if ``timeout`` (seconds, for the whole set) passes or an
    acquisition raises, the locks already taken are released and
    ``TimeoutError`` (or the error) is raised. Duplicates are taken once.
    """
    if timeout is not None and (timeout != timeout or timeout < 0):
        raise ValueError("'timeout' must be a non-negative number")
    uniq: dict[str, Any] = {}
    for lk in locks:
        if not hasattr(lk, "acquire") or not hasattr(lk, "name"):
            raise TypeError(f"ordered() takes interlock locks, not {type(lk).__name__}")
        uniq.setdefault(lk.name, lk)
    order = sorted(uniq.values(), key=_order_key)
    deadline = None if timeout is None else time.monotonic() + timeout
    taken: list[Any] = []
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
    try:
        yield tuple(order)
    finally:
        for lk in reversed(taken):
            lk.release()


__all__ = ["LockOrderError", "ordered", "DeadlockError"]
