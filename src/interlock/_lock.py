"""Lock and RLock: robust, process-shared, drop-ins for ``multiprocessing``'s.

A ``Lock`` *is* a ``_core.Mutex`` (``_core/mutex.h``): ``acquire``,
``release``, ``with`` are single C calls.

Robustness: if the owner dies holding the lock (SIGKILL, crash, a thread
that ends without releasing), a waiter takes it over within one wait slice
(50 ms) and is told, by ``on_owner_death``:

- ``"warn"`` (default): :class:`OwnerDiedWarning` is issued; the caller holds
  the lock.
- ``"raise"``: ``acquire()`` raises :class:`OwnerDiedError` *with the lock
  held* (release it, or repair and go on, like pthread's EOWNERDEAD); in a
  ``with`` statement the lock is released before the error propagates.
- ``"ignore"``: silent.

Only the owning thread may release; a second blocking ``acquire()`` of a
``Lock`` by its owner raises :class:`DeadlockError` instead of hanging.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from . import _core, _segment
from ._errors import OwnerDiedError, OwnerDiedWarning
from ._shared import SharedObject
from ._hierarchy import TrackedLockMixin
from .aio import AsyncLockMixin

_MODES = ("warn", "raise", "ignore")


@dataclass(frozen=True)
class LockStatistics:
    """A snapshot of a lock (``Lock.statistics()``)."""

    name: str
    locked: bool
    owner_pid: int
    owner_tid: int
    depth: int
    waiters: int
    acquisitions: int
    contentions: int
    owner_deaths: int


class Lock(_core.Mutex, SharedObject, TrackedLockMixin, AsyncLockMixin):
    """``Lock(*, name=None, create=None, on_owner_death="warn", level=None)``

    ``level``: the lock's place in the lock hierarchy (an int). A thread
    that holds a lock of level n may only take locks of level > n; taking
    one against that order raises :class:`LockOrderError` at once. The
    level is stored with the lock: every process that attaches it by name
    sees the same one.

    Raises:
        ValueError: a bad ``on_owner_death``, a level out of range, or an
            existing lock of that name has another level.
        TypeError: ``level`` not an int.
        FileExistsError: ``create=True`` and the name exists.
        FileNotFoundError: ``create=False`` and no such lock.

    When a process dies: if the owner (process or thread) dies holding the
    lock, the next ``acquire()`` takes it over within about 50 ms and is
    told by ``on_owner_death``: ``"warn"`` (default) issues
    :class:`OwnerDiedWarning`, ``"raise"`` raises :class:`OwnerDiedError`
    with the lock held, ``"ignore"`` says nothing.
    """

    _kind = _segment.KIND_LOCK
    _recursive = False

    def __init__(self, *, name: str | None = None, create: bool | None = None,
                 on_owner_death: str = "warn", level: int | None = None) -> None:
        if on_owner_death not in _MODES:
            raise ValueError(f"on_owner_death must be one of {_MODES}, not {on_owner_death!r}")
        if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
            raise TypeError(f"level must be an int or None, not {type(level).__name__}")
        if level is not None and not -(2**31) < level < 2**31:
            raise ValueError(f"level out of range: {level}")
        self._on_death = on_owner_death

        def init(buf: Any, offset: int) -> None:
            _core.Mutex(buf, offset, create=True)._detach()

        # params[0]: 0 = no level, else level + 2**31 (so that 0 stays "none")
        stored = 0 if level is None else level + 2**31
        seg = self._open_segment(name, create, _core.MUTEX_SIZE, (stored,), init)
        have = seg.params()[0]
        if not seg.created and level is not None and have != stored:
            seg.release()
            raise ValueError(f"lock {seg.name!r} exists with level "
                             f"{None if have == 0 else have - 2**31}, not {level}")
        self.level: int | None = None if have == 0 else have - 2**31
        _core.Mutex.__init__(self, seg.mm, seg.object_offset, recursive=self._recursive)
        self._tracked = self.level is not None

    def _pickle_options(self) -> dict[str, Any]:
        return {"on_owner_death": self._on_death}

    def _on_owner_died(self, dead_pid: int) -> None:
        # Called from C with the lock held, after a takeover (mutex.h).
        if self._on_death == "ignore":
            return
        msg = (f"{self!r} was taken over from process {dead_pid}, which died holding it; "
               "the state it protected may be inconsistent")
        if self._on_death == "raise":
            raise OwnerDiedError(msg, self, dead_pid)
        warnings.warn(msg, OwnerDiedWarning, stacklevel=3)

    @property
    def owner(self) -> tuple[int, int] | None:
        """``(pid, tid)`` of the holder, or None (a racy snapshot)."""
        s = self._stats()
        return (s["owner_pid"], s["owner_tid"]) if s["owner_tid"] else None

    def statistics(self) -> LockStatistics:
        """A snapshot: holder, depth, waiters, acquisitions, contentions,
        owner deaths (see :class:`LockStatistics`)."""
        s = self._stats()
        return LockStatistics(self.name, bool(s["owner_tid"]), s["owner_pid"], s["owner_tid"],
                              s["depth"], s["waiters"], s["acquisitions"], s["contentions"],
                              s["owner_deaths"])

    def _describe(self) -> str:
        try:
            s = self._stats()
        except ValueError:
            return f"name={self._seg.name!r} detached"
        state = f"locked by pid {s['owner_pid']} tid {s['owner_tid']}" if s["owner_tid"] else "unlocked"
        return f"name={self._seg.name!r} {state}"


class RLock(Lock):
    """A re-entrant :class:`Lock`: its owner may acquire it again; it is
    released when ``release()`` has been called as many times."""

    _kind = _segment.KIND_RLOCK
    _recursive = True
