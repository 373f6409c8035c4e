"""Exceptions and warnings of interlock.

``queue.Empty`` and ``queue.Full`` are used as they are, so that code written
for ``queue`` and ``multiprocessing`` catches ours unchanged.
"""
from __future__ import annotations

import queue as _queue

__all__ = [
    "Empty",
    "Full",
    "QueueClosed",
    "DeadlockError",
    "OwnerDiedWarning",
    "OwnerDiedError",
    "SegmentError",
]

Empty = _queue.Empty
Full = _queue.Full

# Python 3.13 added queue.ShutDown with exactly our "closed" semantics:
# put() raises it at once, get() once the queue is drained.
_CLOSED_BASES: tuple[type[Exception], ...] = (
    (_queue.ShutDown, ValueError) if hasattr(_queue, "ShutDown") else (ValueError,)
)


class QueueClosed(*_CLOSED_BASES):  # type: ignore[misc]
    """The queue was closed: ``put()`` is refused, ``get()`` raises this once
    everything put before the close has been taken.

    A subclass of ``queue.ShutDown`` (Python >= 3.13) and of ``ValueError``
    (what ``multiprocessing.Queue.put`` raises after ``close()``).
    """


class DeadlockError(RuntimeError):
    """Waiting would never end: the caller already holds what it waits for,
    or (with detection on) it is part of a cycle of waiters."""


class OwnerDiedWarning(RuntimeWarning):
    """A lock was taken over from an owner that died holding it.

    The lock is held by the caller when this is issued. Whatever the dead
    owner was protecting may be half-updated: check it before trusting it.
    """


class OwnerDiedError(RuntimeError):
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


class SegmentError(OSError):
    """A shared-memory segment is not what it should be: truncated, foreign,
    of another kind or of another layout version."""
