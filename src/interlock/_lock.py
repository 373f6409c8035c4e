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

``Lock`` is ``multiprocessing.Lock``, a binary semaphore: any thread of any
process may release it (the hand-off: acquire in process A, release in
process B); releasing a free one raises ``ValueError``; its holder's
``acquire()`` waits until someone releases it.  The owner, for owner-death
recovery, is the last acquirer: if it dies before anyone released its hold,
the next acquirer takes the lock over and is told (docs/design/lock.md,
"Hand-off").  ``RLock`` is ``multiprocessing.RLock``: only its owner
releases it (``RuntimeError`` otherwise).

A held lock left behind (docs/design/lock.md): ``detach()`` of this
process's last handle while one of its threads holds the lock raises
``RuntimeError`` (release first); if that last handle is garbage collected
(or the interpreter exits) with the lock held, nobody could ever release it,
so it goes to owner-death recovery: the next acquirer, in any process, takes
it over within one slice and is told, as if the holder had died.
"""
from __future__ import annotations

import functools
import itertools
import weakref
from dataclasses import dataclass
from typing import Any

from . import _core, _segment
from .deadlock import _order
from ._warn import warn_at_user
from .errors import OwnerDiedError, OwnerDiedWarning
from ._shared import SharedObject
from .deadlock._tracked import TrackedLockMixin
from ._awaitable import AsyncLockMixin

_MODES = ("warn", "raise", "ignore")

# This process's live Lock/RLock handles, per segment (inode): a hold
# outlives a handle as long as another handle of the process remains, through
# which the holder can still release.  Sets of tokens, changed only by
# single C-level calls (setdefault, add, discard): a finalizer may run in
# the middle of Python code of the same thread, so no lock is taken.
_handles: dict[int, set[int]] = {}
_tokens = itertools.count()


def _last_handle(ino: int, token: int) -> bool:
    return _handles.get(ino, set()) <= {token}


def _release_handle(seg: _segment.Segment, token: int) -> None:
    """The handle's finalizer (garbage collection, ``detach()``, exit)."""
    try:
        if seg.mm is not None and not seg._released and _last_handle(seg.ino, token):
            # Last handle of this process: a hold of one of its threads could
            # never be released: hand it to owner-death recovery.
            view = _core.Mutex(seg.mm, seg.object_offset)
            try:
                view._abandon()
            finally:
                view._detach()
    finally:
        _handles.get(seg.ino, set()).discard(token)
        seg.release()


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

    multiprocessing's ``Lock``, shared through ``/dev/shm`` and robust: any
    thread or process may ``release()`` it, not only the one that acquired
    it (``ValueError`` if it is not held); the holder's own ``acquire()``
    waits until someone releases it, or returns False after its timeout.

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

    When a process dies: if the owner (the process or thread that acquired
    it) dies holding the lock, before anyone released it, the next
    ``acquire()`` takes it over within about 50 ms and is told by
    ``on_owner_death``: ``"warn"`` (default) issues
    :class:`OwnerDiedWarning`, ``"raise"`` raises :class:`OwnerDiedError`
    with the lock held, ``"ignore"`` says nothing.
    """

    _kind = _segment.KIND_LOCK
    _recursive = False
    _handoff = True  # anyone may release it (deadlock._order reads this)

    def __init__(self, *, name: str | None = None, create: bool | None = None,
                 on_owner_death: str = "warn", level: int | None = None,
                 _owned: bool = False) -> None:
        # _owned (private): this lock is made by a Value, Array or Condition
        # for its own use; recorded in the segment header (FLAG_OWNED) so
        # that `interlock ls` shows it with its owner, not as the user's.
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
        seg = self._open_segment(name, create, _core.MUTEX_SIZE, (stored,), init,
                                 _segment.FLAG_OWNED if _owned else 0)
        have = seg.params()[0]
        if not seg.created and level is not None and have != stored:
            seg.release()
            raise ValueError(f"lock {seg.name!r} exists with level "
                             f"{None if have == 0 else have - 2**31}, not {level}")
        self.level: int | None = None if have == 0 else have - 2**31
        _core.Mutex.__init__(self, seg.mm, seg.object_offset, recursive=self._recursive,
                             handoff=not self._recursive)
        self._tracked = self.level is not None
        # lockdep's class (deadlock._order): the name, or where an anonymous lock
        # was made (kept when pickled to another process: SharedObject).
        self._lock_class = (_order.creation_class(type(self).__name__) if seg.anonymous
                            else seg.name)
        # What this lock is (_order.lock_key): a shared-memory lock "db"
        # is not a Redis lock "db".
        self._lock_key = ("shm", seg.name)
        self._token = next(_tokens)
        _handles.setdefault(seg.ino, set()).add(self._token)
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, functools.partial(_release_handle, seg, self._token))

    def detach(self) -> None:
        """Release this process's handle (idempotent).  Refused
        (``RuntimeError``) while a thread of this process holds the lock and
        this is the process's last handle on it: release it first.  (Garbage
        collection cannot refuse: it hands such a lock to owner-death
        recovery, see the module's docstring.)"""
        if (self._finalizer.alive and _last_handle(self._seg.ino, self._token)
                and self._held_here()):
            owner = self.owner
            raise RuntimeError(
                f"cannot detach {self!r}: it is held by thread {owner[1] if owner else '?'} "
                "of this process, and no other handle of this process could release it; "
                "release it first")
        super().detach()

    def _pickle_options(self) -> dict[str, Any]:
        return {"on_owner_death": self._on_death}

    def _on_owner_died(self, dead_pid: int) -> None:
        # Called from C with the lock held, after a takeover (mutex.h).
        if self._on_death == "ignore":
            return
        msg = (f"{self!r} was taken over from process {dead_pid}, which died holding it "
               "(or lost its last handle on it while holding it); "
               "the state it protected may be inconsistent")
        if self._on_death == "raise":
            raise OwnerDiedError(msg, self, dead_pid)
        warn_at_user(msg, OwnerDiedWarning)

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
    """A re-entrant lock (``multiprocessing.RLock``): its owner may acquire
    it again; it is released when ``release()`` has been called as many
    times, by the owner only (``RuntimeError`` from any other thread)."""

    _kind = _segment.KIND_RLOCK
    _recursive = True
    _handoff = False
