"""Semaphore, BoundedSemaphore, RWLock, Event, Barrier, Condition.

Drop-ins for their ``multiprocessing`` counterparts (``threading``'s
semantics: return values, timeouts, exceptions), plus ``RWLock``, which the
standard library lacks. Each class *is* a C type of ``interlock._core``
(``_core/sync.h``: one guard, one eventcount and a table of holders/waiters
per object), so ``sem.acquire()`` or ``ev.set()`` is a single C call; this
file names the segment, pickles by name and formats statistics.

Robustness (docs/design/sync.md). A process that dies holding a Semaphore
unit or an RWLock hold does not block the others for good: a waiter
recovers the hold within a slice (0.1 s) and the next thread to take it is
told, by ``on_owner_death`` as for :class:`interlock.Lock` (``"warn"`` ->
:class:`OwnerDiedWarning`; ``"raise"`` -> :class:`OwnerDiedError` raised
*with the hold taken*; ``"ignore"``). A Barrier party that dies while
waiting (or running the action) breaks the barrier: the others get
``threading.BrokenBarrierError``. A Condition waiter whose lock is held by a
dead thread wakes and takes the (robust) lock over, with the lock's warning.

Semaphore units are recorded per *process*: any thread of the process may
release them. A release by a process that holds no unit is a "signal"
(allowed, as in ``multiprocessing``); such units are not recovered if the
process that later acquires them dies -- they are, like any unit, returned.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from . import _core, _segment
from .deadlock import _order, lockdep
from ._warn import warn_at_user
from .errors import BrokenBarrierError, OwnerDiedError, OwnerDiedWarning
from ._lock import Lock, RLock
from ._shared import SharedObject
from ._awaitable import AsyncEventMixin

__all__ = [
    "Semaphore",
    "BoundedSemaphore",
    "RWLock",
    "Event",
    "Barrier",
    "Condition",
    "BrokenBarrierError",
    "SemaphoreStatistics",
    "RWLockStatistics",
    "EventStatistics",
    "BarrierStatistics",
    "ConditionStatistics",
]

_MODES = ("warn", "raise", "ignore")
_SLICE = _core.SYNC_SLICE_NS / 1e9
T = TypeVar("T")


def _check_mode(mode: str) -> str:
    if mode not in _MODES:
        raise ValueError(f"on_owner_death must be one of {_MODES}, not {mode!r}")
    return mode


class _Robust:
    """What Semaphore and RWLock share: reporting a recovered hold."""

    _on_death: str

    def _on_owner_died(self, dead_pid: int) -> None:
        # Called from C after a take that inherited a dead holder's unit.
        if self._on_death == "ignore":
            return
        msg = (f"{self!r}: process {dead_pid} died holding it; its hold was recovered "
               "and the state it protected may be inconsistent")
        if self._on_death == "raise":
            raise OwnerDiedError(msg, self, dead_pid)
        warn_at_user(msg, OwnerDiedWarning)


# ------------------------------------------------------------- Semaphore



def _timeout_left(timeout: float | None) -> float | None:
    """The waits written in Python (Barrier.wait, Condition.wait) parse their
    timeout with the C core's one parser (binding.h, IL_TO_WAIT): None or
    +inf forever (None), a negative time out at once (0.0), NaN ValueError,
    a non-number TypeError."""
    return _core.parse_timeout(_core.TIMEOUT_WAIT, timeout)

@dataclass(frozen=True)
class SemaphoreStatistics:
    """A snapshot of a semaphore (``Semaphore.statistics()``)."""

    name: str
    value: int
    maxvalue: int | None
    holders: tuple[tuple[int, int], ...]  # (pid, units held)
    waiters: int
    acquisitions: int
    contentions: int
    timeouts: int
    owner_deaths: int
    untracked: int


class Semaphore(_core.Semaphore, _Robust, SharedObject):
    """``Semaphore(value=1, *, name=None, create=None, on_owner_death="warn")``

    ``acquire(block=True, timeout=None)``, ``release(n=1)``, ``get_value()``,
    ``with``. Attaching by name ignores ``value``.

    Raises:
        ValueError: a negative or too large ``value``, a bad ``on_owner_death``.
        TypeError: ``value`` not an int.
        FileExistsError, FileNotFoundError: as ``create=`` asks.

    When a process dies: the units it held are recovered by a waiter within
    a slice (0.1 s), and the next taker is told by ``on_owner_death``
    (:class:`OwnerDiedWarning` by default). Units given by a process that
    held none (a signal) are not recovered from whoever later takes them.
    """

    _kind = _segment.KIND_SEMAPHORE
    _bounded = False
    _NSLOTS = 64

    def __init__(self, value: int = 1, *, name: str | None = None, create: bool | None = None,
                 on_owner_death: str = "warn") -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"value must be an int, not {type(value).__name__}")
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        if value >= 2**32 - 1:
            raise ValueError("semaphore initial value is too large")
        self._on_death = _check_mode(on_owner_death)
        maxvalue = value if self._bounded else 2**32 - 1
        nslots = self._NSLOTS

        def init(buf: Any, offset: int) -> None:
            _core.Semaphore(buf, offset, create=True, value=value, maxvalue=maxvalue,
                            nslots=nslots)._detach()

        seg = self._open_segment(name, create, _core.sync_size(_core.SYNC_SEMAPHORE, nslots),
                                 (value, maxvalue), init)
        _core.Semaphore.__init__(self, seg.mm, seg.object_offset)

    def _pickle_options(self) -> dict[str, Any]:
        return {"on_owner_death": self._on_death}

    def statistics(self) -> SemaphoreStatistics:
        """A snapshot: value, holders, waiters, counters (see
        :class:`SemaphoreStatistics`)."""
        s = self._stats()
        return SemaphoreStatistics(
            self.name, s["value"], s["maxvalue"] if self._bounded else None,
            tuple((pid, count) for pid, _tid, count, _st in s["slots"] if count),
            s["waiters"], s["acquisitions"], s["contentions"], s["timeouts"],
            s["owner_deaths"], s["untracked"])

    def _describe(self) -> str:
        try:
            return f"name={self.name!r} value={self.get_value()}"
        except ValueError:
            return f"name={self.name!r} detached"


class BoundedSemaphore(Semaphore):
    """A :class:`Semaphore` that raises ``ValueError`` when released above
    its initial value."""

    _kind = _segment.KIND_BOUNDED_SEMAPHORE
    _bounded = True


# ---------------------------------------------------------------- RWLock


@dataclass(frozen=True)
class RWLockStatistics:
    """A snapshot of a reader-writer lock (``RWLock.statistics()``)."""

    name: str
    readers: int
    reader_pids: tuple[tuple[int, int], ...]  # (pid, read holds)
    writer_pid: int
    writer_tid: int
    writers_waiting: int
    waiters: int
    acquisitions: int
    write_acquisitions: int
    contentions: int
    timeouts: int
    owner_deaths: int


class _Hold:
    __slots__ = ("_lock", "_acquire", "_release", "_timeout", "_what", "_again", "_tracked")

    def __init__(self, lock: Any, acquire: Callable[..., bool], release: Callable[[], None],
                 timeout: float | None, what: str) -> None:
        self._lock, self._acquire, self._release = lock, acquire, release
        self._timeout, self._what = timeout, what
        self._tracked = False

    def __enter__(self) -> None:
        # With lockdep on, read()/write() holds take part in the lock-order
        # validation; read-read orders are not reported (deadlock._order, lockdep).
        read = self._what == "read"
        if lockdep.enabled():
            site = _order.site()
            self._again = _order.before_acquire(self._lock, True, site, read=read)
            self._tracked = True
        try:
            ok = self._acquire(True, self._timeout)
        except OwnerDiedError:
            self._release()  # "raise" mode: do not leave the hold behind
            raise
        if not ok:
            raise TimeoutError(f"could not take the {self._what} lock in {self._timeout} s")
        if self._tracked:
            _order.after_acquire(self._lock, site, self._again, read=read)

    def __exit__(self, *exc: object) -> None:
        self._release()
        if self._tracked:
            _order.after_release(self._lock)


class RWLock(_core.RWLock, _Robust, SharedObject):
    """``RWLock(*, name=None, create=None, on_owner_death="warn")``

    Many readers or one writer. Writers are not starved: once a writer
    waits, new readers wait behind it (except in a process that already
    holds a read, which would deadlock otherwise).

    ``with rw.read(timeout=None):`` / ``with rw.write(timeout=None):``
    (``TimeoutError`` if the timeout passes), or ``acquire_read`` /
    ``release_read`` / ``acquire_write`` / ``release_write``. Read holds
    belong to the process (any of its threads may release one); the write
    hold belongs to the thread.

    When a process dies: its read holds and its threads' write hold are
    recovered by a waiter within a slice (0.1 s); the next holder is told by
    ``on_owner_death`` (:class:`OwnerDiedWarning` by default).
    """

    _kind = _segment.KIND_RWLOCK
    _NSLOTS = 64
    _recursive = False  # for the lock-order tooling: reads may nest, writes not
    level = None

    def __init__(self, *, name: str | None = None, create: bool | None = None,
                 on_owner_death: str = "warn") -> None:
        self._on_death = _check_mode(on_owner_death)
        nslots = self._NSLOTS

        def init(buf: Any, offset: int) -> None:
            _core.RWLock(buf, offset, create=True, nslots=nslots)._detach()

        seg = self._open_segment(name, create, _core.sync_size(_core.SYNC_RWLOCK, nslots), (),
                                 init)
        _core.RWLock.__init__(self, seg.mm, seg.object_offset)
        # lockdep's class: the name, or where an anonymous RWLock was made
        self._lock_class = (_order.creation_class("RWLock") if seg.anonymous
                            else seg.name)
        self._lock_key = ("shm", seg.name)  # what it is (_order.lock_key)

    def read(self, timeout: float | None = None) -> _Hold:
        """Context manager: hold for reading.

        Raises:
            TimeoutError: (on entry) not taken within ``timeout`` seconds.
        """
        return _Hold(self, self.acquire_read, self.release_read, timeout, "read")

    def write(self, timeout: float | None = None) -> _Hold:
        """Context manager: hold for writing.

        Raises:
            TimeoutError: (on entry) not taken within ``timeout`` seconds.
        """
        return _Hold(self, self.acquire_write, self.release_write, timeout, "write")

    def _pickle_options(self) -> dict[str, Any]:
        return {"on_owner_death": self._on_death}

    def statistics(self) -> RWLockStatistics:
        """A snapshot: readers, writer, waiters, counters (see
        :class:`RWLockStatistics`)."""
        s = self._stats()
        readers = tuple((pid, count) for pid, tid, count, _st in s["slots"] if count and not tid)
        return RWLockStatistics(self.name, s["readers"], readers, s["writer_pid"],
                                s["writer_tid"], s["writers_waiting"], s["waiters"],
                                s["acquisitions"], s["write_acquisitions"], s["contentions"],
                                s["timeouts"], s["owner_deaths"])

    def _describe(self) -> str:
        try:
            s = self._stats()
        except ValueError:
            return f"name={self.name!r} detached"
        if s["writer_tid"]:
            state = f"written by pid {s['writer_pid']} tid {s['writer_tid']}"
        else:
            state = f"{s['readers']} readers"
        return f"name={self.name!r} {state}"


# ----------------------------------------------------------------- Event


@dataclass(frozen=True)
class EventStatistics:
    """A snapshot of an event (``Event.statistics()``)."""

    name: str
    is_set: bool
    waiters: int
    sets: int
    timeouts: int


class Event(_core.Event, SharedObject, AsyncEventMixin):
    """``Event(*, name=None, create=None)``: ``set``, ``clear``, ``is_set``,
    ``wait(timeout=None)``. Holds nothing, so nobody's death can strand it.

    As with ``threading.Event``, every ``wait`` that was waiting when
    ``set()`` was called returns True, even if ``clear()`` follows at once
    (a generation counter bumped by ``set()``; docs/design/sync.md)."""

    _kind = _segment.KIND_EVENT

    def __init__(self, *, name: str | None = None, create: bool | None = None) -> None:
        def init(buf: Any, offset: int) -> None:
            _core.Event(buf, offset, create=True)._detach()

        seg = self._open_segment(name, create, _core.sync_size(_core.SYNC_EVENT, 0), (), init)
        _core.Event.__init__(self, seg.mm, seg.object_offset)

    def statistics(self) -> EventStatistics:
        """A snapshot: the flag, waiters, counters (see :class:`EventStatistics`)."""
        s = self._stats()
        return EventStatistics(self.name, bool(s["flag"]), s["waiters"], s["sets"],
                               s["timeouts"])

    def __repr__(self) -> str:
        # multiprocessing.Event's form, '<Event at 0x... set>' (CPython's
        # _TestEvent.test_repr checks it), with the segment's name inside.
        return f"<{type(self).__qualname__} at {id(self):#x} {self._describe()}>"

    def _describe(self) -> str:
        try:
            return f"name={self.name!r} {'set' if self.is_set() else 'unset'}"
        except ValueError:
            return f"name={self.name!r} detached"


# --------------------------------------------------------------- Barrier


@dataclass(frozen=True)
class BarrierStatistics:
    """A snapshot of a barrier (``Barrier.statistics()``)."""

    name: str
    parties: int
    n_waiting: int
    broken: bool
    generation: int
    passes: int
    waiting: tuple[tuple[int, int], ...]  # (pid, tid) of parties at the barrier
    timeouts: int
    owner_deaths: int
    dead_pid: int


class Barrier(_core.Barrier, SharedObject):
    """``Barrier(parties, action=None, timeout=None, *, name=None, create=None)``

    As ``threading.Barrier``: ``wait(timeout=None)`` returns the arrival
    index (0 .. parties-1); the last party runs ``action`` first (if it
    raises, the barrier breaks); a timeout breaks the barrier; ``abort()``,
    ``reset()``, ``parties``, ``n_waiting``, ``broken``. A party that dies
    while waiting breaks the barrier within a slice. ``action`` must pickle
    to be passed to another process (as with ``multiprocessing``).

    Raises:
        TypeError: no ``parties`` (and no ``name`` of an existing barrier).
        ValueError: ``parties`` outside 1..4096.

    When a process dies: a party that dies while waiting (or while running
    ``action``) breaks the barrier within a slice (0.1 s): the others get
    ``BrokenBarrierError``.
    """

    _kind = _segment.KIND_BARRIER

    def __init__(self, parties: int | None = None, action: Callable[[], object] | None = None,
                 timeout: float | None = None, *, name: str | None = None,
                 create: bool | None = None) -> None:
        if parties is None:
            if create is not False and name is None:
                raise TypeError("Barrier() needs parties (or name= of an existing barrier)")
            nslots = 0
        else:
            if isinstance(parties, bool) or not isinstance(parties, int):
                raise TypeError(f"parties must be an int, not {type(parties).__name__}")
            if not 1 <= parties <= 4096:
                raise ValueError("parties must be in 1..4096")
            nslots = parties
        self._action = action
        self._timeout = timeout

        def init(buf: Any, offset: int) -> None:
            if not nslots:
                raise FileNotFoundError(f"no interlock Barrier named {name!r}")
            _core.Barrier(buf, offset, create=True, parties=nslots)._detach()

        size = _core.sync_size(_core.SYNC_BARRIER, max(nslots, 1))
        seg = self._open_segment(name, create, size, (nslots,), init)
        _core.Barrier.__init__(self, seg.mm, seg.object_offset)

    def wait(self, timeout: float | None = None) -> int:
        """Wait until ``parties`` parties wait; return this party's arrival
        index (0 .. parties-1). The last to arrive runs ``action`` first.

        Raises:
            BrokenBarrierError: the barrier is or becomes broken: a timeout
                (``timeout``, else the barrier's own), ``abort()``, ``reset()``
                while waiting, ``action`` raised, or a party died.
        """
        try:
            return self._wait_once(timeout)
        except threading.BrokenBarrierError as e:
            # Until the C core raises errors.BrokenBarrierError itself (it
            # takes threading's today), make it ours: both are caught by
            # ``except threading.BrokenBarrierError``.
            if isinstance(e, BrokenBarrierError):
                raise
            raise BrokenBarrierError(*e.args) from None

    def _wait_once(self, timeout: float | None) -> int:
        if timeout is None:
            timeout = self._timeout
        timeout = _timeout_left(timeout)  # before arriving: a bad timeout counts nobody
        index, slot = self._arrive()
        if index == self.parties - 1:
            try:
                if self._action is not None:
                    self._action()
            except BaseException:
                self._leave(slot)  # breaks the barrier for the others
                raise
            self._pass(slot)
            return int(index)
        self._wait(slot, timeout)
        return int(index)

    def _pickle_options(self) -> dict[str, Any]:
        return {"parties": self.parties, "action": self._action, "timeout": self._timeout}

    def statistics(self) -> BarrierStatistics:
        """A snapshot: parties, who waits, broken (see :class:`BarrierStatistics`)."""
        s = self._stats()
        waiting = tuple((pid, tid) for pid, tid, _c, st in s["slots"] if st == _core.SLOT_WAITING)
        return BarrierStatistics(self.name, s["parties"], self.n_waiting, bool(s["broken"]),
                                 s["generation"], s["passes"], waiting, s["timeouts"],
                                 s["owner_deaths"], s["dead_pid"])

    def _describe(self) -> str:
        try:
            return (f"name={self.name!r} parties={self.parties} waiting={self.n_waiting}"
                    f"{' broken' if self.broken else ''}")
        except ValueError:
            return f"name={self.name!r} detached"


# ------------------------------------------------------------- Condition


@dataclass(frozen=True)
class ConditionStatistics:
    """A snapshot of a condition (``Condition.statistics()``)."""

    name: str
    lock_name: str
    lock_owner: tuple[int, int] | None  # (pid, tid)
    waiting: tuple[tuple[int, int], ...]  # (pid, tid) of waiters not yet notified
    notified: int  # waiters notified that have not woken yet
    notifies: int


class Condition(_core.Condition, SharedObject):
    """``Condition(lock=None, *, name=None, create=None)``

    ``lock`` is an :class:`interlock.Lock` or :class:`interlock.RLock` (a
    new ``RLock`` if None). ``wait(timeout=None)``, ``wait_for(predicate,
    timeout=None)``, ``notify(n=1)``, ``notify_all()``, and the lock's
    ``acquire``/``release``/``with``. Notifications go to the oldest waiters
    first, and ``notify(n)`` wakes at most ``n`` (dead waiters are skipped).

    Raises:
        TypeError: ``lock`` is not an interlock Lock or RLock.

    When a process dies: a dead waiter is skipped by ``notify``; a waiter
    whose lock is held by a dead thread wakes and takes the (robust) lock
    over, with the lock's :class:`OwnerDiedWarning`.
    """

    _kind = _segment.KIND_CONDITION
    _NSLOTS = 128

    def __init__(self, lock: Lock | None = None, *, name: str | None = None,
                 create: bool | None = None) -> None:
        if lock is not None and not isinstance(lock, Lock):
            raise TypeError(f"lock must be an interlock Lock or RLock, not {type(lock).__name__}")
        given = lock
        if lock is None and (create is not False and name is None):
            lock = RLock(_owned=True)
        nslots = self._NSLOTS
        made = lock

        def init(buf: Any, offset: int) -> None:
            nonlocal made
            if made is None:
                made = RLock(_owned=True)
            _core.Condition(buf, offset, create=True, lock_name=made.name,
                            lock_recursive=isinstance(made, RLock), nslots=nslots)._detach()

        seg = self._open_segment(name, create, _core.sync_size(_core.SYNC_CONDITION, nslots), (),
                                 init)
        _core.Condition.__init__(self, seg.mm, seg.object_offset)
        if not seg.created:
            lock_name, recursive = self._lock_info
            if lock is None or lock.name != lock_name:
                lock = (RLock if recursive else Lock)(name=lock_name, create=False)
        else:
            lock = made
        assert lock is not None
        self._lock: Lock = lock
        # A lock we made or attached is ours to detach with the condition;
        # the caller's own lock is the caller's.
        self._owns_lock = lock is not given
        self.acquire = lock.acquire
        self.release = lock.release

    def __enter__(self) -> bool:
        """Acquire the underlying lock."""
        return self._lock.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def _is_owned(self) -> bool:
        return self._lock._is_owned()

    def _pickle_options(self) -> dict[str, Any]:
        # Our own lock is found by name on the other side (and is that
        # handle's own there); a caller's lock travels as the caller's.
        return {} if self._owns_lock else {"lock": self._lock}

    def detach(self) -> None:
        """Detach the condition and, if the condition made it (or attached
        it by name), its lock.  A lock passed in by the caller stays
        attached: it is the caller's to detach."""
        super().detach()
        if self._owns_lock:
            self._lock.detach()

    def _lock_holder_dead(self) -> bool:
        tid = self._lock._stats()["owner_tid"]
        return bool(tid) and not _core.task_alive(tid)

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, wait for a notification (at most ``timeout``
        seconds), take the lock again; return False on timeout.

        Raises:
            RuntimeError: the calling thread does not hold the lock.
        """
        lock = self._lock
        if not lock._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        timeout = _timeout_left(timeout)  # before releasing the lock: NaN changes nothing
        slot = self._enter()
        depth = lock._count()
        for _ in range(depth):
            lock.release()
        notified = False
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                step = _SLICE
                if deadline is not None:
                    step = min(step, deadline - time.monotonic())
                if self._sleep(slot, step):
                    notified = True
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if self._lock_holder_dead():
                    break  # a dead notifier holds the lock: take it over (spurious wake-up)
        finally:
            notified = self._leave(slot) or notified
            for _ in range(depth):
                lock.acquire()
        return notified

    def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> T:
        """``wait()`` until ``predicate()`` is true; return its last result
        (falsy on timeout).

        Raises:
            RuntimeError: the calling thread does not hold the lock.
        """
        endtime = None
        waittime = timeout
        result = predicate()
        while not result:
            if waittime is not None:
                if endtime is None:
                    endtime = time.monotonic() + waittime
                else:
                    waittime = endtime - time.monotonic()
                    if waittime <= 0:
                        break
            self.wait(waittime)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake at most ``n`` waiters, the oldest first.

        Raises:
            RuntimeError: the calling thread does not hold the lock.
        """
        if not self._lock._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        self._notify(n)

    def notify_all(self) -> None:
        """Wake every waiter.

        Raises:
            RuntimeError: the calling thread does not hold the lock.
        """
        if not self._lock._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        self._notify(1 << 30)

    notifyAll = notify_all

    def statistics(self) -> ConditionStatistics:
        """A snapshot: waiters, counters (see :class:`ConditionStatistics`)."""
        s = self._stats()
        waiting = tuple((pid, tid) for pid, tid, _c, st in s["slots"] if st == _core.SLOT_WAITING)
        notified = sum(1 for *_x, st in s["slots"] if st == _core.SLOT_NOTIFIED)
        return ConditionStatistics(self.name, self._lock.name, self._lock.owner, waiting,
                                   notified, s["notifies"])

    def _describe(self) -> str:
        return f"name={self.name!r} lock={self._lock.name!r}"
