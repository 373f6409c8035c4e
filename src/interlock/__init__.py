"""interlock: shared-memory queues and robust locks between processes.

Layout: the hot paths are in the C11 extension ``interlock._core``. Each
Python module holds one concept: ``_segment`` (named shared memory and its
lifetime), ``_queue``, ``_lock``, ``_sync``, ``_value`` (the primitives),
``errors`` (every exception and warning), ``aio`` (asyncio, which the
primitives do not import), ``deadlock/`` (lock order, lockdep, wait-for
graph), ``pipeline``, ``cli/``, ``redis`` + ``_redis/``.  This file only
re-exports.
"""
import sys as _sys

if not _sys.platform.startswith("linux"):  # pragma: no cover
    raise ImportError(f"interlock needs Linux (futex, /proc, /dev/shm); this is {_sys.platform}")

from . import _core  # noqa: E402,F401  (the C core first: it imports .errors itself)
from .errors import *  # noqa: E402,F401,F403
from .errors import __all__ as _error_names  # noqa: E402
from ._lock import Lock, LockStatistics, RLock  # noqa: E402
from ._queue import JoinableQueue, Queue, QueueStatistics, SimpleQueue  # noqa: E402
from ._sync import (  # noqa: E402
    Barrier,
    BarrierStatistics,
    BoundedSemaphore,
    Condition,
    ConditionStatistics,
    Event,
    EventStatistics,
    RWLock,
    RWLockStatistics,
    Semaphore,
    SemaphoreStatistics,
)
from ._value import Array, RawArray, RawValue, Value  # noqa: E402
from ._segment import set_inflight_grace, unlink  # noqa: E402
from .deadlock import ordered, set_deadlock_timeout, _switches  # noqa: E402
from ._connect import connect  # noqa: E402
from .pipeline import Pipeline  # noqa: E402
from . import lockdep  # noqa: E402  (reads INTERLOCK_LOCKDEP)

_switches.apply()

def _version() -> str:
    # The version is written once, in pyproject.toml; read it back from the
    # installed distribution's metadata.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("interlock")
    except PackageNotFoundError:  # pragma: no cover - a source tree on sys.path, not installed
        return "0+unknown"


__version__ = _version()

__all__ = [
    "Queue",
    "JoinableQueue",
    "SimpleQueue",
    "QueueStatistics",
    "Lock",
    "RLock",
    "LockStatistics",
    "Semaphore",
    "BoundedSemaphore",
    "SemaphoreStatistics",
    "RWLock",
    "RWLockStatistics",
    "Event",
    "EventStatistics",
    "Barrier",
    "BarrierStatistics",
    "Condition",
    "ConditionStatistics",
    "Value",
    "Array",
    "RawValue",
    "RawArray",
    "unlink",
    "set_inflight_grace",
    "ordered",
    "lockdep",
    "set_deadlock_timeout",
    "connect",
    "Pipeline",
    *_error_names,
]
