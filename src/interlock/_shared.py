"""What every interlock object has: a name, a segment, pickling by name.

The concrete classes (``Queue``, ``Lock``, ...) subclass a C type of
``interlock._core`` for their hot methods and this mixin for the rest. An
object pickles as ``(class, name, options)``; unpickling attaches to the same
segment by name, in whatever process does it (a child under fork, spawn or
forkserver, a Pool worker, or an unrelated process).
"""
from __future__ import annotations

import sys
import weakref
from typing import Any, Callable

from . import _segment


def _rebuild(cls: type, name: str, options: dict[str, Any]) -> Any:
    return cls(name=name, create=False, **options)


class SharedObject:
    """Mixin: lifetime and identity of an object in a named segment."""

    _seg: _segment.Segment
    _kind: int

    def _open_segment(
        self,
        name: str | None,
        create: bool | None,
        object_size: int,
        params: tuple[int, ...],
        init: Callable[[Any, int], None],
        flags: int = 0,
    ) -> _segment.Segment:
        if create not in (None, True, False):
            raise TypeError(f"create must be None, True or False, not {create!r}")
        seg = _segment.Segment(name, self._kind, object_size, params, create=create, init=init,
                               flags=flags)
        self._seg = seg
        self.name = seg.name
        # Release this process's slot when the object is garbage collected.
        self._finalizer = weakref.finalize(self, seg.release)
        return seg

    #: The object's name (pass it as ``name=`` to attach from anywhere).
    name: str

    def _pickle_options(self) -> dict[str, Any]:
        return {}

    def _adopt(self) -> None:
        """First use in a forked child of an inherited object: become one of
        its users (called by the C types' per-call pid check, and by the
        Python entry points; see _segment.Segment.adopt)."""
        self._seg.adopt()

    def __reduce__(self) -> tuple[Any, ...]:
        # Passing it on is a use: the name must outlive this process's
        # parent for the receiver to attach.
        self._seg.adopt()
        args = (type(self), self._seg.name, self._pickle_options())
        # A lock's lockdep class (an anonymous lock's creation site) travels
        # with it, so that every process sees the same class (deadlock._order).
        cls = self.__dict__.get("_lock_class")
        return (_rebuild, args) if cls is None else (_rebuild, args, {"_lock_class": cls})

    def detach(self) -> None:
        """Release this process's handle (idempotent).  The segment lives on
        while other processes use it; the last one to detach removes it.
        Using the object afterwards raises ``ValueError``."""
        aio = sys.modules.get("interlock.aio")  # not imported: no helper thread waits
        if aio is not None:
            aio.stop_waiters(self)  # the asyncio helper thread leaves its C waits first
        self._detach()  # type: ignore[attr-defined]
        self._finalizer()

    def unlink(self) -> None:
        """Remove the name now; attached processes keep working on the old
        segment, and a later constructor call with the name makes a new one."""
        self._seg.unlink()

    def __repr__(self) -> str:
        return f"<interlock.{type(self).__name__} {self._describe()}>"

    def _describe(self) -> str:
        return f"name={self._seg.name!r}"
