"""Every exception and warning interlock raises, in one place.

Each error derives from :class:`InterlockError` *and* from the standard
type that code written for ``queue``, ``threading`` and ``multiprocessing``
already catches (``queue.Empty``, ``threading.BrokenBarrierError``,
``ValueError``, ``OSError``, ...), so ``except InterlockError`` catches
everything of ours and every existing ``except`` clause keeps working.
Each warning derives from :class:`InterlockWarning` and from the standard
warning category it belongs to (all are ``RuntimeWarning``).

The C core raises the classes defined here (it imports this module when it
is initialised); nothing else defines an exception that reaches a user.
Two private control-flow exceptions stay next to the code that raises and
catches them (``_registry._Unreadable``, ``_redis._client._ObjectError``):
they never leave their module.

The tree::

    InterlockError
      Empty (queue.Empty)              Full (queue.Full)
      QueueClosed (ShutDown, ValueError): what a shut-down queue raises;
                  the name and the ValueError base are deprecated: catch ShutDown
      CorruptionError (ValueError, RuntimeError)
      DeadlockError (RuntimeError)
      LockOrderError (RuntimeError)
      OwnerDiedError (RuntimeError)
      BrokenBarrierError (threading.BrokenBarrierError)
      UnguardedAccessError (RuntimeError)
      SegmentError (OSError)
        ForeignEntry, SlotsExhausted
        ObjectFreedError (FileNotFoundError)
      NoSuchObject (LookupError)
      WorkerDiedError (RuntimeError)   RemoteTraceback
      ConnectionLost (ConnectionError)
        StateLost
          RolledBack
      AuthenticationFailed (PermissionError)
      KeyConflict (ValueError)
      ServerError (RuntimeError)       LeaseExpired (RuntimeError)
    ShutDown: queue.ShutDown on Python 3.13+, before it interlock's own
              (an Exception); not an InterlockError (the standard class)
    InterlockWarning (Warning)
      OwnerDiedWarning, LockOrderWarning, LockdepWarning, WorkerDiedWarning
                                       (RuntimeWarning)
"""
from __future__ import annotations

import queue as _queue
import threading as _threading
from typing import Any

__all__ = [
    "InterlockError",
    "InterlockWarning",
    "Empty",
    "Full",
    "ShutDown",
    "QueueClosed",
    "CorruptionError",
    "DeadlockError",
    "LockOrderError",
    "OwnerDiedError",
    "BrokenBarrierError",
    "UnguardedAccessError",
    "SegmentError",
    "ForeignEntry",
    "SlotsExhausted",
    "ObjectFreedError",
    "NoSuchObject",
    "WorkerDiedError",
    "RemoteTraceback",
    "ConnectionLost",
    "StateLost",
    "RolledBack",
    "AuthenticationFailed",
    "KeyConflict",
    "ServerError",
    "LeaseExpired",
    "OwnerDiedWarning",
    "LockOrderWarning",
    "LockdepWarning",
    "WorkerDiedWarning",
]


class InterlockError(Exception):
    """The base of every error interlock raises (not of the standard errors
    it raises for bad arguments: ``TypeError``, a plain ``ValueError``, or
    ``TimeoutError`` from ``ordered()``)."""


class InterlockWarning(Warning):
    """The base of every warning interlock issues."""


# -- queues ------------------------------------------------------------------

class Empty(InterlockError, _queue.Empty):
    """``get(block=False)`` found nothing, or ``get(timeout=...)`` timed out."""


class Full(InterlockError, _queue.Full):
    """``put(block=False)`` found no room, or ``put(timeout=...)`` timed out."""


# Python 3.13 added queue.ShutDown, raised by a queue after shutdown(): put()
# at once, get() once the queue is drained (at once after
# shutdown(immediate=True)).  interlock's queues have the same shutdown() on
# every Python; before 3.13 the class is ours, of the same name.
if hasattr(_queue, "ShutDown"):
    ShutDown: type[Exception] = _queue.ShutDown
else:
    class ShutDown(Exception):  # type: ignore[no-redef]
        """Raised by a queue after ``shutdown()``: by ``put()`` at once, by
        ``get()`` once the queue is drained (at once after
        ``shutdown(immediate=True)``).  ``queue.ShutDown`` itself on Python
        3.13 and later."""

    ShutDown.__module__ = "interlock.errors"


class QueueClosed(InterlockError, ShutDown, ValueError):  # type: ignore[misc, valid-type]
    """What a shut-down interlock queue raises: a :data:`ShutDown` (catch
    that), and an :class:`InterlockError`.

    Deprecated name: in 0.1, ``close()`` shut the queue for every process
    and raised this.  The name stays for one more release (removed in
    0.3), still a subclass of ``ValueError`` as it was, so that ``except
    QueueClosed`` keeps working; write ``except interlock.ShutDown``
    (``queue.ShutDown`` on 3.13+).
    """


class CorruptionError(InterlockError, ValueError, RuntimeError):
    """A queue's shared memory holds what no interlock writer puts there: a
    ring header that fails validation when attaching, or a record that runs
    past the published bytes or has an impossible kind or buffer table.
    Nothing is consumed.  Something else wrote into the segment.

    One class for both: the reader cannot tell a damaged header from a
    damaged record's cause.  ``ValueError`` and ``RuntimeError`` are both
    bases because the two cases raised those before this class existed."""


# -- locks and synchronisation ----------------------------------------------

class DeadlockError(InterlockError, RuntimeError):
    """Waiting would never end: the caller already holds the owner-checked
    lock it waits for (the Redis backend's ``Lock``; not ``interlock.Lock``,
    which anyone may release, so its holder's ``acquire()`` waits), or (with
    detection on) it is part of a cycle of waiters."""


class LockOrderError(InterlockError, RuntimeError):
    """A lock was (or would be) taken against the lock order: against the
    levels (at once), or closing a cycle of observed orders (lockdep, in
    ``"raise"`` mode)."""


class OwnerDiedError(InterlockError, RuntimeError):
    """Raised by ``acquire()`` of a lock made with ``on_owner_death="raise"``
    when its previous owner died holding it (like pthread's EOWNERDEAD).

    The caller *holds* the lock when ``acquire()`` raises this (in a ``with``
    statement the lock is released again before the exception propagates).
    ``.lock`` is the lock, ``.dead_pid`` the process that died.
    """

    def __init__(self, message: str, lock: object, dead_pid: int) -> None:
        super().__init__(message)
        self.lock = lock
        self.dead_pid = dead_pid


class BrokenBarrierError(InterlockError, _threading.BrokenBarrierError):
    """The barrier is broken (aborted, reset, timed out, or a party died or
    its action raised) while, or before, the caller waited."""


class UnguardedAccessError(InterlockError, RuntimeError):
    """A shared value made with ``guarded_by=lock`` was read or written by a
    thread that does not hold ``lock``: a data race, caught at its first
    occurrence instead of as a wrong total later."""


# -- segments ----------------------------------------------------------------

class SegmentError(InterlockError, OSError):
    """A shared-memory segment is not what it should be: truncated, foreign,
    of another kind or of another layout version; or it cannot take one
    more user (:class:`SlotsExhausted`)."""


class ForeignEntry(SegmentError):
    """The entry at one of our names is not a file of ours as we make them."""

    def __init__(self, path: str, what: str, uid: int | None = None) -> None:
        self.path = path
        self.what = what  # "a FIFO", "a file of uid 1001", ...
        self.uid = uid  # set when the only fault is its owner
        if what == "a symbolic link":
            msg = f"{path} is a symbolic link; refusing to follow it"
        else:
            msg = f"{path} is {what}, not an interlock segment of yours; refusing to use it"
        super().__init__(msg)


class SlotsExhausted(SegmentError):
    """The segment cannot take one more user: every process slot is held by
    a live process, or this process already holds the most handles one slot
    counts.  A ``SegmentError`` (what this raised before it had a name)."""


class ObjectFreedError(SegmentError, FileNotFoundError):
    """An interlock object was freed (or unlinked) before this process,
    which received it pickled, attached to it.

    Raised on the receiver's first use of the object (the unpickled object
    is a placeholder that raises it), so that a
    ``multiprocessing.Pool`` task fails with it and the caller's ``get()``
    raises it instead of waiting forever.  A ``FileNotFoundError``: what
    attaching to a name that is gone raised before."""

    def __init__(self, message: str, name: str = "", sender_pid: int = 0,
                 age: float = 0.0, grace: float = 0.0) -> None:
        super().__init__(message)
        self.name = name  # the object's name
        self.sender_pid = sender_pid  # the process that pickled it
        self.age = age  # seconds between the pickling and the attempt to attach
        self.grace = grace  # the sender's grace period, seconds

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NoSuchObject(InterlockError, LookupError):
    """``inspect()`` of a name that has no segment."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no interlock object named {name!r} (see `interlock ls`)")
        self.name = name


# -- pipelines ---------------------------------------------------------------

class RemoteTraceback(InterlockError):
    """The traceback of an exception raised in a worker process, as text.

    Set as the ``__cause__`` of the exception re-raised in the caller, so the
    worker's frames print above the caller's ("The above exception was the
    direct cause of ...")."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


class WorkerDiedError(InterlockError, RuntimeError):
    """A worker process ended without reporting (killed by a signal, or
    ``os._exit``) and the pipeline was made with ``on_worker_death="fail"``.

    ``stage`` (name), ``worker`` (index in its stage), ``pid``, ``exitcode``
    (negative: the signal number) and ``held`` (sequence keys of the items it
    held, possibly empty) say what happened."""

    def __init__(self, message: str, stage: str, worker: int, pid: int, exitcode: int,
                 held: list[Any]) -> None:
        super().__init__(message)
        self.stage, self.worker, self.pid, self.exitcode, self.held = (
            stage, worker, pid, exitcode, held)


# -- the Redis backend -------------------------------------------------------

class ConnectionLost(InterlockError, ConnectionError):
    """The Redis server could not be reached, or the connection dropped in the
    middle of an operation (which may or may not have taken effect)."""


class StateLost(ConnectionLost):
    """The server no longer has this object (it restarted without
    persistence, or its keys were deleted): its contents are gone, and
    interlock refuses to carry on as if it were merely empty."""


class RolledBack(StateLost):
    """The server's state went back in time: it handed out a fencing token,
    or reported a position, lower than one this process had already seen
    from it (a restart from an older RDB snapshot or a lost AOF tail, a
    failover to a replica that had not received the latest writes).  Work
    done against the lost state may be repeated or lost; interlock refuses
    to carry on as if nothing happened."""


class AuthenticationFailed(InterlockError, PermissionError):
    """The server refused the credentials (wrong or missing password, unknown
    or disabled user), or the user's ACL forbids a command or a key that
    interlock needs (``NOPERM``).  Not a :class:`ConnectionLost`: the server
    was reached, and asking again will be refused again."""


class KeyConflict(InterlockError, ValueError):
    """A key that an interlock object needs holds something interlock did not
    put there (another program's key, or a value of another type).
    interlock neither deletes it nor uses it: remove it, or choose another
    name or ``prefix``."""


class ServerError(InterlockError, RuntimeError):
    """Any other error reply of the server (out of memory, a read-only
    replica, a cluster that is down, ...), naming the object and the server."""


class LeaseExpired(InterlockError, RuntimeError):
    """The caller's lease ran out (it was paused, cut off, or slower than the
    lease) and another owner may have taken the lock since: whatever it did
    under the lock after the lease ended was not protected.  Use fencing
    tokens to make the protected resource reject such late writes."""


# -- warnings ----------------------------------------------------------------

class OwnerDiedWarning(InterlockWarning, RuntimeWarning):
    """A lock was taken over from an owner that died holding it.

    The lock is held by the caller when this is issued. Whatever the dead
    owner was protecting may be half-updated: check it before trusting it.
    """


class LockOrderWarning(InterlockWarning, RuntimeWarning):
    """A lock order that can deadlock was observed (lockdep)."""


class LockdepWarning(InterlockWarning, RuntimeWarning):
    """lockdep cannot do all its job: its table is full (new orders are
    no longer recorded), or its configuration is unusable."""


class WorkerDiedWarning(InterlockWarning, RuntimeWarning):
    """A worker died and was restarted (``on_worker_death="restart"|"retry"``)."""
