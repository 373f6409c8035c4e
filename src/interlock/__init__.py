"""interlock: shared-memory queues and robust locks between processes.

Layout: the hot paths are in the C11 extension ``interlock._core``
(``_core/ring.h``: the queue; ``_core/mutex.h``: the lock). Each Python
module holds one concept: ``_segment`` (named shared memory and its
lifetime), ``_queue``, ``_lock``, ``_errors``. This file only re-exports.
"""
import sys as _sys

if not _sys.platform.startswith("linux"):  # pragma: no cover
    raise ImportError(f"interlock needs Linux (futex, /proc, /dev/shm); this is {_sys.platform}")

from . import _core, _waitfor  # noqa: E402
from ._errors import (  # noqa: E402
    DeadlockError,
    Empty,
    Full,
    OwnerDiedError,
    OwnerDiedWarning,
    QueueClosed,
    SegmentError,
)

_core.configure(Empty, Full, QueueClosed, DeadlockError)

from ._hierarchy import LockOrderError, ordered  # noqa: E402
from ._lock import Lock, LockStatistics, RLock  # noqa: E402
from ._queue import JoinableQueue, Queue, QueueStatistics, SimpleQueue  # noqa: E402
from ._sync import (  # noqa: E402
    Barrier,
    BarrierStatistics,
    BoundedSemaphore,
    BrokenBarrierError,
    Condition,
    ConditionStatistics,
    Event,
    EventStatistics,
    RWLock,
    RWLockStatistics,
    Semaphore,
    SemaphoreStatistics,
)
from ._value import Array, RawArray, RawValue, UnguardedAccessError, Value  # noqa: E402
from ._segment import ObjectFreedError, set_inflight_grace, unlink  # noqa: E402
from ._waitfor import set_deadlock_timeout  # noqa: E402
from ._connect import connect  # noqa: E402
from .pipeline import Pipeline, RemoteTraceback, WorkerDiedError, WorkerDiedWarning  # noqa: E402
from . import lockdep  # noqa: E402  (reads INTERLOCK_LOCKDEP)
from .lockdep import LockOrderWarning  # noqa: E402

_core._set_tracking(lockdep.enabled(), _waitfor.deadlock_timeout())

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
    "BrokenBarrierError",
    "Condition",
    "ConditionStatistics",
    "Value",
    "Array",
    "RawValue",
    "RawArray",
    "UnguardedAccessError",
    "Empty",
    "Full",
    "QueueClosed",
    "DeadlockError",
    "OwnerDiedWarning",
    "OwnerDiedError",
    "SegmentError",
    "ObjectFreedError",
    "unlink",
    "set_inflight_grace",
    "LockOrderError",
    "LockOrderWarning",
    "ordered",
    "lockdep",
    "set_deadlock_timeout",
    "connect",
    "Pipeline",
    "RemoteTraceback",
    "WorkerDiedError",
    "WorkerDiedWarning",
]
