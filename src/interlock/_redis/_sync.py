"""Lock, RLock, Semaphore and Event on Redis: leases with owner tokens and fencing.

A lock on a server cannot see its owner die; it can only stop hearing from
it.  So every hold is a **lease**: the key ``<p>:lock`` holds the owner's
token (``host:pid:thread:random``) with the lease as its TTL, renewed at a
third of the lease by this process's keeper thread while the owning thread
lives.  If the owner is killed, paused or cut off, the lease runs out and
the next waiter takes the lock (told as the local lock tells of an owner's
death: ``on_owner_death``).

Because an owner that was only *paused* may wake up still believing it
holds the lock, each acquisition hands out a **fencing token**: a number
from a counter incremented in the same atomic step (``Lock.fencing_token``).
Pass it with every write to the protected resource, and have the resource
refuse a token lower than the highest it has seen: the late writer is
rejected, whatever it believes.  Its ``release()`` raises
:class:`~interlock.redis.LeaseExpired`.

Waiting is not polling: a release pushes onto the wake list ``<p>:wake``,
and waiters sleep in ``BLPOP`` on it; a waiter sleeps at most until the
holder's lease would end (the holder may be dead: no one would wake it).

The deadlock checks of the local ``Lock`` (second acquire by the owner
raises ``DeadlockError``) hold here too, per thread; so do its errors
(release by a thread that does not hold it: ``RuntimeError``) and its
introspection (``locked()``, ``owner``, ``statistics()``, ``_is_owned()``,
``_count()``, ``detach()``).
"""
from __future__ import annotations

import os
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from typing import Any

from ..deadlock import _order
from ..deadlock import _switches
from ..errors import DeadlockError, OwnerDiedError, OwnerDiedWarning
from . import _client
from ._client import Backend, Lease, LeaseExpired, _ObjectError, deadline_after, remaining
from ._queue import _object_error, _open_mode

_MODES = ("warn", "raise", "ignore")


@dataclass(frozen=True)
class RedisLockStatistics:
    """A snapshot of a Redis lock (``Lock.statistics()``).

    The fields of the local ``LockStatistics`` that a server can know, with
    the same names (``waiters`` it cannot: waiters sleep on other machines),
    then the lease's own."""

    name: str
    locked: bool
    owner_pid: int  # the holder's process (on host owner_host), or 0
    owner_tid: int  # the holder's thread (native id), or 0
    depth: int  # recursion depth if the holder is this object, 1 if elsewhere, 0 unlocked
    acquisitions: int  # = the latest fencing token
    contentions: int
    owner_deaths: int  # leases that ran out instead of being released
    owner: str  # the holder's token, "host:pid:tid:random", or ""
    owner_host: str  # the holder's host name, or ""
    lease_left: float  # seconds, or 0.0 when unlocked
    fencing_token: int  # the latest one handed out (= acquisitions)


@dataclass
class _Hold:
    token: str
    fence: int
    lease: Lease
    depth: int = 1


def _token() -> str:
    """``host:pid:tid:random``: tid is the native thread id, as the local
    lock's ``owner``."""
    return f"{_client.HOST}:{os.getpid()}:{threading.get_native_id()}:{uuid.uuid4().hex[:8]}"


def _parse_token(tok: str) -> tuple[str, int, int]:
    """(host, pid, tid) of a token; ("", 0, 0) for one not ours."""
    parts = tok.rsplit(":", 3)
    if len(parts) == 4 and parts[1].isdigit() and parts[2].isdigit():
        return parts[0], int(parts[1]), int(parts[2])
    return "", 0, 0


class _Shared:
    """What every Redis primitive has: a backend, a name, an epoch."""

    _kind = ""
    _parts: tuple[str, ...] = ()

    _detached = False

    def _open(self, backend: Backend, name: str | None, create: bool | None,
              p1: Any = "", p2: Any = "") -> list[Any]:
        self._backend = backend
        self._name = name if name is not None else f"anon-{uuid.uuid4().hex[:16]}"
        self._keys = [backend.key(self._name, part) for part in ("meta",) + self._parts]
        try:
            epoch, q1, q2 = backend.fcall(
                "il_open", self._keys,
                [self._kind, uuid.uuid4().hex, _open_mode(create), p1, p2])
        except _ObjectError as e:
            raise _object_error(e, self._kind, self._name) from None
        self._epoch = epoch
        # The high-water mark of fencing tokens, per epoch: an object unlinked
        # and made again under the same name starts again at 1.
        self._fence_key = f"{self._keys[0]}:fence:{epoch!r}"
        return [q1, q2]

    @property
    def name(self) -> str:
        """The object's name (pass it as ``name=`` to attach from anywhere)."""
        return self._name

    @property
    def backend(self) -> Backend:
        """The backend (server connection) the object lives on."""
        return self._backend

    def _rebuild_options(self) -> dict[str, Any]:
        return {}

    def __reduce__(self) -> Any:
        args = (self._backend, type(self), self._name, self._rebuild_options())
        cls = self.__dict__.get("_lock_class")  # a lock's lockdep class travels with it
        return ((_client.rebuild, args) if cls is None
                else (_client.rebuild, args, {"_lock_class": cls}))

    def __repr__(self) -> str:
        return (f"<interlock.redis.{type(self).__name__} name={self._name!r} "
                f"on {self._backend.safe_url}>")

    def _call(self, fn: str, *args: Any, deadline: float | None = None) -> Any:
        """One function of the library on this object's keys (after the
        detached check, as the local objects check their segment); its reply
        is awaited until ``deadline`` plus the backend's grace."""
        if self._detached:
            raise ValueError("operation on a closed (detached) interlock object")
        return self._backend.fcall(fn, self._keys, [self._epoch, *args], deadline)

    def _fence(self, value: Any, before: int) -> int:
        """A fencing token from the server: never lower than one this
        process saw before sending the call (else RolledBack)."""
        self._backend.check_mark(self._fence_key, int(value), before)
        return int(value)

    def _checked_fence(self, value: Any, before: int, release: str, token: str) -> None:
        """As _fence, for a fresh acquisition: on RolledBack, give it back."""
        try:
            self._fence(value, before)
        except _client.RolledBack:
            try:
                self._call(release, token)
            except Exception:
                pass  # the lease runs out by itself
            raise

    def detach(self) -> None:
        """End this object's use (idempotent); later calls on it raise
        ``ValueError``, as for a detached local object.  Nothing changes on
        the server: a hold of this object stays held (and renewed while its
        thread lives), like a local lock held by a process that detached."""
        self._detached = True

    def unlink(self) -> None:
        """Delete the object's keys from the server."""
        self._backend.blocking(lambda: self._backend.client.delete(*self._keys), self._keys,
                               retry=True)

    def _release_call(self, fn: str, hold: _Hold) -> bool:
        """Give a hold back on the server; True if it was still ours.

        Sent once more after a lost reply (repeating it changes nothing).
        The retry's "not the holder" is then ambiguous: released by the
        first try, or the lease ran out.  It is read with the local
        deadline: a reply received before it was executed before the
        server's lease could end, so the first try released it."""
        try:
            return bool(self._call(fn, hold.token))
        except _client.StateLost:
            raise
        except _client.ConnectionLost:
            ok = bool(self._call(fn, hold.token))
            # The deadline alone, not expired(): a renewal the keeper sent
            # as release() began may have run after the first try, found
            # the hold gone, and marked the lease lost.  Before the local
            # deadline, the server's lease cannot have run out: only the
            # first try can have ended the hold.
            return ok or time.monotonic() < hold.lease.until

    def _wait_wake(self, left: float | None, hint_ms: int) -> None:
        """Sleep on the wake list: until a release, ``left`` or ``hint_ms``."""
        t = self._backend.slice if left is None else min(left, self._backend.slice)
        if hint_ms > 0:
            t = min(t, hint_ms / 1000 + 0.002)
        t = max(t, 0.001)
        self._backend.call(self._backend.budget(None, t), "BLPOP", self._keys[-1], f"{t:.3f}",
                           keys=self._keys)


class Lock(_Shared):
    """``backend.Lock(*, name=None, create=None, on_owner_death="warn")``

    A lease-based, fenced lock on a Redis server. Every hold is a lease
    (the owner's token with a TTL), renewed by a keeper thread of the owning
    process while the owning thread lives; each acquisition hands out a
    fencing token (:attr:`fencing_token`) from a counter incremented in the
    same atomic step: pass it with every write to the protected resource and
    have the resource refuse tokens lower than the highest it has seen.

    Keep the object in a name of its own: ``with lock:`` binds ``True``
    (``acquire()``'s result), as ``threading`` does, so write
    ``lock = backend.Lock(name="db")``, then ``with lock:`` and
    ``lock.fencing_token``.

    When a process dies: the server cannot see it die, only stop hearing
    from it: its lease runs out (``lease`` seconds, an option of
    :func:`interlock.connect`) and the next waiter takes the lock, told by
    ``on_owner_death`` (:class:`~interlock.OwnerDiedWarning` by default). An
    owner that was only paused past its lease may wake still believing it
    holds the lock: its writes carry an old fencing token, and its
    ``release()`` raises :class:`LeaseExpired`.
    """

    _kind = "lock"
    _parts = ("lock", "wake")
    _recursive = False
    level = None  # for the lock-order tooling (deadlock._order): no levels on Redis

    def __init__(self, backend: Backend, *, name: str | None = None, create: bool | None = None,
                 on_owner_death: str = "warn") -> None:
        if on_owner_death not in _MODES:
            raise ValueError(f"on_owner_death must be one of {_MODES}, not {on_owner_death!r}")
        self._on_death = on_owner_death
        # lockdep's class: its own namespace (not the local "db"); the name,
        # or where an anonymous lock was made (pickled with it: __reduce__).
        self._lock_class = _order.fit(
            "redis:" + (name if name is not None else _order.creation_class(type(self).__name__)))
        self._open(backend, name, create)
        # What this lock is (_order.lock_key): its key on its server; a
        # shared-memory lock of the same name is another lock.
        self._lock_key = ("redis", backend.url, self._keys[0])
        self._holds: dict[int, _Hold] = {}
        self._pid = os.getpid()

    def _rebuild_options(self) -> dict[str, Any]:
        return {"on_owner_death": self._on_death}

    def _my_hold(self) -> _Hold | None:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._holds.clear()  # a forked child holds nothing
        ident = threading.get_ident()
        hold = self._holds.get(ident)
        if hold is not None and hold.lease.thread is not threading.current_thread():
            # Left by a thread that ended holding the lock, whose ident this
            # thread reuses: not ours (its lease runs out, as for a dead owner).
            del self._holds[ident]
            return None
        return hold

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        """Take the lock; True if taken, False on timeout (at once with
        ``block=False``). Waiters sleep in ``BLPOP`` on a wake list, not polling.

        Raises:
            DeadlockError: a Lock (not an RLock) already held by this thread,
                with ``block=True``.
            OwnerDiedError: ``on_owner_death="raise"`` and the previous owner's
                lease ran out (the lock is held when this is raised).
            ConnectionLost: the server cannot be reached.
            StateLost: the server forgot the lock (restarted without persistence).
        """
        deadline = deadline_after(block, timeout, lock=True)
        hold = self._my_hold()
        if hold is not None:
            if hold.lease.expired():
                raise self._expired(hold, "acquire()")
            if self._recursive:
                hold.depth += 1
                return True
            if not block:
                return False
            raise DeadlockError(f"this thread already holds the lock {self!r}: a second "
                                "blocking acquire would wait forever (use an RLock for "
                                "re-entrant locking)")
        # With lockdep on, Redis locks take part in the lock-order validation
        # like local ones (interlock.lockdep); the wait-for graph of runtime
        # detection is per machine and does not see them.
        tracked = _switches.lockdep
        if tracked:
            at = _order.site()
            _order.before_acquire(self, bool(block), at)
        token = _token()
        lease_ms = int(self._backend.lease * 1000)
        while True:
            sent = time.monotonic()
            before = self._backend.mark(self._fence_key)
            r = self._call("il_lock_acquire", token, lease_ms, deadline=deadline)
            if r[0] == 1:
                break
            left = remaining(deadline)
            if left is not None and left <= 0:
                return False
            self._wait_wake(left, int(r[1]))
        self._checked_fence(r[1], before, "il_lock_release", token)
        lease = Lease(self._keys[1], "lock", token, thread=threading.current_thread(),
                      until=sent + self._backend.lease)
        self._holds[threading.get_ident()] = _Hold(token, int(r[1]), lease)
        self._backend.hold(lease)
        if tracked:
            _order.after_acquire(self, at, False)
        if r[2]:
            self._on_owner_died(r[2].decode())
        return True

    def _on_owner_died(self, previous: str) -> None:
        if self._on_death == "ignore":
            return
        host, pid, _ = _parse_token(previous)
        msg = (f"{self!r} was taken over from process {pid} on {host} ({previous}), whose "
               "lease ran out: it died holding it, or was paused or cut off for longer than "
               "the lease; the state it protected may be inconsistent")
        if self._on_death == "raise":
            raise OwnerDiedError(msg, self, pid)
        warnings.warn(msg, OwnerDiedWarning, stacklevel=3)

    def _expired(self, hold: _Hold, what: str) -> LeaseExpired:
        why = f" (last renewal failed: {hold.lease.error})" if hold.lease.error else ""
        return LeaseExpired(f"{self!r}: this thread's lease (fencing token {hold.fence}) ran "
                            f"out before {what}{why}; another owner may have held the lock "
                            "since")

    def release(self) -> None:
        """Release the lock (an RLock: one level of it).

        Raises:
            RuntimeError: this thread does not hold the lock.
            LeaseExpired: this thread's lease ran out before ``release()``:
                another owner may have held the lock since.
            ConnectionLost: the server cannot be reached.
        """
        hold = self._my_hold()
        if hold is None:
            tok = self._state()[0]
            if not tok:
                raise RuntimeError(f"cannot release un-acquired lock {self!r}")
            host, pid, tid = _parse_token(tok.decode())
            raise RuntimeError(f"cannot release lock {self!r}: it is held by another thread "
                               f"(tid {tid}, pid {pid} on {host})")
        if hold.depth > 1 and not hold.lease.expired():
            hold.depth -= 1
            return
        del self._holds[threading.get_ident()]
        _order.after_release(self)  # (a no-op unless lockdep recorded the hold)
        self._backend.drop(hold.lease)
        # Past the local deadline the hold is over, whatever the server says
        # (a renewal it accepted may be one whose reply was lost: we cannot
        # know that the lease never lapsed).
        expired = hold.lease.expired()
        ok = self._release_call("il_lock_release", hold)
        if not ok or expired:
            raise self._expired(hold, "release()")

    def __enter__(self) -> bool:
        try:
            return self.acquire()
        except OwnerDiedError:
            self.release()
            raise

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def fencing_token(self) -> int | None:
        """The fencing token of this thread's hold (None if it holds none)."""
        hold = self._my_hold()
        return hold.fence if hold is not None else None

    def locked(self) -> bool:
        """True if some thread, on any machine, holds the lock (its lease not yet run out)."""
        return bool(self._state()[0])

    @property
    def owner(self) -> str | None:
        """The holder's token ``host:pid:tid:random``, or None (the local
        lock's ``(pid, tid)`` plus the host: pids repeat across machines)."""
        tok = self._state()[0]
        return tok.decode() if tok else None

    def _is_owned(self) -> bool:
        """Does the calling thread hold the lock (through this object)?"""
        hold = self._my_hold()
        return hold is not None and not hold.lease.expired()

    def _count(self) -> int:
        """The calling thread's recursion depth (0 if it does not hold it)."""
        hold = self._my_hold()
        return hold.depth if hold is not None and not hold.lease.expired() else 0

    def _state(self) -> list[Any]:
        return list(self._call("il_lock_state"))

    def statistics(self) -> RedisLockStatistics:
        """A snapshot: holder, lease left, fencing token, counters (see :class:`RedisLockStatistics`)."""
        tok, pttl, fence, cont, exp = self._state()
        token = tok.decode() if tok else ""
        host, pid, tid = _parse_token(token) if token else ("", 0, 0)
        depth = 0
        if token:
            mine = [h for h in list(self._holds.values()) if h.token == token]
            depth = mine[0].depth if mine and self._pid == os.getpid() else 1
        return RedisLockStatistics(
            name=self._name, locked=bool(token), owner_pid=pid, owner_tid=tid, depth=depth,
            acquisitions=int(fence), contentions=int(cont), owner_deaths=int(exp),
            owner=token, owner_host=host, lease_left=max(pttl, 0) / 1000,
            fencing_token=int(fence))


class RLock(Lock):
    """A re-entrant :class:`Lock`: its owning thread may acquire it again; it
    is released when ``release()`` has been called as many times."""

    _kind = "rlock"
    _recursive = True


class Semaphore(_Shared):
    """``backend.Semaphore(value=None, *, name=None, create=None)``

    At most ``value`` holders at once (``value=None``: 1 for a new
    semaphore, whatever an existing one has; a value given must match an
    existing semaphore's, ``ValueError`` otherwise).  Each permit is a lease (renewed while
    its thread lives) with its own fencing token; a permit can be released
    only by the object and thread that acquired it (``ValueError``
    otherwise), most recent first. ``BoundedSemaphore`` is the same class
    (permits can never exceed ``value``).

    When a process dies: its permits' leases run out and the permits
    return to the pool; the next taker is not told.
    """

    _kind = "semaphore"
    _parts = ("holders", "wake")

    def __init__(self, backend: Backend, value: int | None = None, *, name: str | None = None,
                 create: bool | None = None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"value must be an int, not {type(value).__name__}")
        if value is not None and value < 1:
            raise ValueError("semaphore value must be >= 1")
        have, _ = self._open(backend, name, create, 1 if value is None else value)
        self._value = int(have)
        if value is not None and value != self._value:
            raise ValueError(f"semaphore {self._name!r} exists with value={self._value}; "
                             f"asked for {value}")
        self._permits: dict[int, list[_Hold]] = {}
        self._pid = os.getpid()

    def _mine(self) -> list[_Hold]:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._permits.clear()
        mine = self._permits.setdefault(threading.get_ident(), [])
        if mine and mine[0].lease.thread is not threading.current_thread():
            mine.clear()  # left by an ended thread whose ident this one reuses (see Lock)
        return mine

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        """Take a permit; True if taken, False on timeout.

        Raises:
            ConnectionLost: the server cannot be reached.
        """
        deadline = deadline_after(block, timeout, lock=True)
        token = _token()
        lease_ms = int(self._backend.lease * 1000)
        while True:
            sent = time.monotonic()
            before = self._backend.mark(self._fence_key)
            r = self._call("il_sem_acquire", token, lease_ms, deadline=deadline)
            if r[0] == 1:
                break
            left = remaining(deadline)
            if left is not None and left <= 0:
                return False
            self._wait_wake(left, int(r[1]))
        self._checked_fence(r[1], before, "il_sem_release", token)
        lease = Lease(self._keys[1], "sem", token, thread=threading.current_thread(),
                      until=sent + self._backend.lease)
        self._mine().append(_Hold(token, int(r[1]), lease))
        self._backend.hold(lease)
        return True

    def release(self) -> None:
        """Give back this thread's latest permit.

        Raises:
            ValueError: this thread holds no permit of this object.
            LeaseExpired: the permit's lease ran out before ``release()``.
        """
        mine = self._mine()
        if not mine:
            raise ValueError(f"{self!r}: release() by a thread that holds no permit of this object")
        hold = mine.pop()
        self._backend.drop(hold.lease)
        expired = hold.lease.expired()
        ok = self._release_call("il_sem_release", hold)
        if not ok or expired:
            raise LeaseExpired(f"{self!r}: the permit's lease (fencing token {hold.fence}) ran "
                               "out before release()")

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def fencing_token(self) -> int | None:
        """The fencing token of this thread's latest permit (None if none)."""
        mine = self._mine()
        return mine[-1].fence if mine else None

    def get_value(self) -> int:
        """Permits free at this instant."""
        return int(self._call("il_sem_state")[0])

    @property
    def value(self) -> int:
        """The number of permits (the initial value)."""
        return self._value


BoundedSemaphore = Semaphore


class Event(_Shared):
    """``backend.Event(*, name=None, create=None)``: ``threading.Event`` across
    machines.  ``set()`` wakes every waiter (they block in ``XREAD`` on an
    event stream, from the last event they saw: no wake-up is missed)."""

    _kind = "event"
    _parts = ("flag", "ev")

    def __init__(self, backend: Backend, *, name: str | None = None,
                 create: bool | None = None) -> None:
        self._open(backend, name, create)

    def is_set(self) -> bool:
        """True if the flag is set."""
        return bool(self._call("il_ev_state")[0])

    def set(self) -> None:
        """Set the flag and wake every waiter, on every machine."""
        self._call("il_ev_set")

    def clear(self) -> None:
        """Reset the flag."""
        self._call("il_ev_clear")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is set (at most ``timeout`` seconds); return the flag (False on timeout).

        Raises:
            ConnectionLost: the server cannot be reached.
        """
        deadline = deadline_after(True, timeout)
        while True:
            flag, last = self._call("il_ev_state", deadline=deadline)
            if flag:
                return True
            left = remaining(deadline)
            if left is not None and left <= 0:
                return False
            t = self._backend.slice if left is None else min(left, self._backend.slice)
            ms = max(int(t * 1000), 1)
            self._backend.call(self._backend.budget(None, ms / 1000), "XREAD", "COUNT", 1,
                               "BLOCK", ms, "STREAMS", self._keys[2], last,
                               keys=self._keys)
