"""The methods the C core calls for a tracked lock, joining the two halves
of the deadlock tooling: the order checks (``_order``, and lockdep through
its hook) around each acquisition, and the wait-for graph (``_waitfor``)
for a wait that lasts.  Here because it needs both, and neither needs the
other.
"""
from __future__ import annotations

from typing import Any, Protocol

from . import _waitfor
from ._order import after_acquire, after_release, before_acquire, site


_UNSET: Any = object()


class RawLock(Protocol):
    """What a tracked lock offers the tracking: the untracked operations of
    the C core (``_core.Mutex``) and the attributes ``_order`` reads."""

    level: int | None
    _recursive: bool

    def _raw_acquire(self, block: bool = ..., timeout: float | None = ...) -> bool: ...
    def _raw_enter(self) -> object: ...
    def _raw_release(self) -> None: ...


class TrackedLockMixin:
    """Mixed into ``Lock``/``RLock``: the C core routes their acquire and
    release here while tracking is on (``_core`` ``is_tracked``)."""

    def _tracked_acquire(self: RawLock, block: Any = _UNSET, timeout: float | None = None, *,
                         blocking: Any = _UNSET) -> bool:
        if blocking is not _UNSET:  # threading's name for it, as the C acquire() takes
            if block is not _UNSET:
                raise TypeError("acquire() got both 'block' and 'blocking' (the same argument)")
            block = blocking
        if block is _UNSET:
            block = True
        at = site()
        again = before_acquire(self, bool(block), at)
        ok = bool(self._raw_acquire(block, timeout))
        if ok:
            after_acquire(self, at, again)
        return ok

    def _tracked_enter(self: RawLock) -> bool:
        at = site()
        again = before_acquire(self, True, at)
        self._raw_enter()
        after_acquire(self, at, again)
        return True

    def _tracked_release(self: RawLock) -> None:
        self._raw_release()
        after_release(self)

    # Runtime deadlock detection (the C core calls these after a thread has
    # waited deadlock_timeout for this lock, then every 250 ms).
    def _on_long_wait(self) -> None:
        _waitfor.on_long_wait(self)

    def _end_long_wait(self) -> None:
        _waitfor.end_long_wait(self)
