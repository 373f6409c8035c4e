"""The same Queue, Lock, Semaphore and Event, on a Redis server, across machines::

    import interlock
    r = interlock.connect("redis://host:6379/0")   # needs: pip install interlock[redis]
    q = r.Queue(maxsize=1000, name="jobs")          # any process, any machine
    lock = r.Lock(name="ledger")                    # keep the object: `with ... as`
    with lock:                                      # binds acquire()'s True
        token = lock.fencing_token

Semantics are those of the local objects wherever a server allows; the
differences (at-least-once delivery, leases, fencing tokens) are set out in
``docs/design/redis.md`` and in the docstrings of each class.  Errors:
``queue.Empty``/``queue.Full``/``ShutDown``/``DeadlockError``/
``OwnerDiedWarning`` as locally, plus :class:`ConnectionLost` (server
unreachable, connection dropped), :class:`StateLost` (the server forgot the
object, e.g. restarted without persistence), :class:`RolledBack` (its state
went back in time), :class:`LeaseExpired`, :class:`AuthenticationFailed`
(credentials or ACL refused: not a ``ConnectionError``), :class:`KeyConflict`
(a key of the object that interlock did not make) and :class:`ServerError`
(any other error reply).
"""
from __future__ import annotations

from typing import Any

from ._redis import _sync
from ._redis._client import (
    AuthenticationFailed,
    Backend,
    ConnectionLost,
    KeyConflict,
    LeaseExpired,
    RolledBack,
    ServerError,
    StateLost,
)
from ._redis._queue import JoinableQueue, Queue, RedisQueueStatistics, SimpleQueue
from ._redis._sync import BoundedSemaphore, Event, Lock, RedisLockStatistics, RLock, Semaphore

__all__ = [
    "AuthenticationFailed",
    "BoundedSemaphore",
    "ConnectionLost",
    "Event",
    "JoinableQueue",
    "KeyConflict",
    "LeaseExpired",
    "Lock",
    "Queue",
    "RLock",
    "RedisBackend",
    "RedisLockStatistics",
    "RedisQueueStatistics",
    "RolledBack",
    "Semaphore",
    "ServerError",
    "SimpleQueue",
    "StateLost",
]


class RedisBackend(Backend):
    """What :func:`interlock.connect` returns for a ``redis://``,
    ``rediss://`` or ``unix://`` URL: the primitives, made on that server.
    Options: see :class:`interlock._redis._client.Backend`."""

    kind = "redis"

    def Queue(self, maxsize: int = 0, **kw: Any) -> Queue:
        """A :class:`Queue` on this server (``maxsize``, ``name``, ``create``)."""
        return Queue(self, maxsize, **kw)

    def JoinableQueue(self, maxsize: int = 0, **kw: Any) -> JoinableQueue:
        """A :class:`JoinableQueue` on this server."""
        return JoinableQueue(self, maxsize, **kw)

    def SimpleQueue(self, **kw: Any) -> SimpleQueue:
        """A :class:`SimpleQueue` on this server."""
        return SimpleQueue(self, **kw)

    def Lock(self, **kw: Any) -> Lock:
        """A :class:`Lock` on this server (``name``, ``create``, ``on_owner_death``)."""
        return Lock(self, **kw)

    def RLock(self, **kw: Any) -> RLock:
        """An :class:`RLock` on this server."""
        return RLock(self, **kw)

    def Semaphore(self, value: int | None = None, **kw: Any) -> Semaphore:
        """A :class:`Semaphore` on this server."""
        return Semaphore(self, value, **kw)

    def BoundedSemaphore(self, value: int | None = None, **kw: Any) -> _sync.Semaphore:
        """A :class:`Semaphore` (permits never exceed ``value``)."""
        return BoundedSemaphore(self, value, **kw)

    def Event(self, **kw: Any) -> Event:
        """An :class:`Event` on this server."""
        return Event(self, **kw)
