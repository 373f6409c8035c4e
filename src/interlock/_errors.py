"""Exceptions and warnings of interlock.

``queue.Empty`` and ``queue.Full`` are used as they are, so that code written
for ``queue`` and ``multiprocessing`` catches ours unchanged.
"""
from __future__ import annotations

import os
import queue as _queue
import sys
import types
import warnings

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


# Frames in these files are interlock's own: a warning skips them (demos/
# is user code that happens to ship with the package).
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_DEMOS_DIR = _PACKAGE_DIR + "demos" + os.sep


def _internal(filename: str) -> bool:
    return filename.startswith(_PACKAGE_DIR) and not filename.startswith(_DEMOS_DIR)


def warn_at_user(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` at the first frame outside interlock: the user's
    line that called ``acquire()`` (or the ``with`` statement), however many
    of our Python layers (lock tracking, Condition, asyncio helpers) and C
    calls (which have no frame) lie between.  A fixed ``stacklevel`` is
    right for one path only and pointed at the caller's caller for the
    plain C ``acquire``."""
    frame: types.FrameType | None = sys._getframe(1)
    level = 2  # stacklevel 2: our caller's frame, which `frame` is
    while frame is not None and _internal(frame.f_code.co_filename):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


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
