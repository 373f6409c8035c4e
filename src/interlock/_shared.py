"""What every interlock object has: a name, a segment, pickling by name.

The concrete classes (``Queue``, ``Lock``, ...) subclass a C type of
``interlock._core`` for their hot methods and this mixin for the rest. An
object pickles as ``(class, name, options)``; unpickling attaches to the same
segment by name, in whatever process does it (a child under fork, spawn or
forkserver, a Pool worker, or an unrelated process).

Objects in flight (segment.md): pickling takes a ticket that keeps the
segment alive until the receiver attaches, even if the sender drops the
object at once (``pool.apply_async(f, (Queue(),))``) or exits; an unused
ticket expires after the grace period.  A receiver that arrives after its
object was freed gets a :class:`FreedObject`, which raises
:class:`ObjectFreedError` on first use: inside a Pool task that is an
exception the caller's ``get()`` raises.  (Raising while unpickling would
not do: a Pool worker that fails to unpickle a task exits, or dies, and the
task's result never comes.)
"""
from __future__ import annotations

import sys
import weakref
from typing import Any, Callable

from . import _segment
from .errors import ObjectFreedError


def _rebuild(cls: type, name: str, options: dict[str, Any],
             tickets: tuple[_segment.Ticket, ...] = ()) -> Any:
    # (Pickles made before tickets existed carry three arguments.)
    for value in options.values():
        if isinstance(value, FreedObject):  # its lock was freed: so is it, in effect
            return FreedObject(cls, name, value._error)
    with _segment.receiving(tickets):
        try:
            return cls(name=name, create=False, **options)
        except ObjectFreedError as e:
            return FreedObject(cls, name, e)


class FreedObject:
    """What an interlock object unpickles to when it was freed before this
    process attached (its sender dropped it and the grace period ended, or
    it was unlinked).  Every use raises :class:`ObjectFreedError`, saying
    so: the first use in a Pool task fails the task, and the caller's
    ``get()`` raises it (a failure while unpickling the task would leave the
    caller waiting forever)."""

    __slots__ = ("_cls", "_name", "_error")

    def __init__(self, cls: type, name: str, error: ObjectFreedError) -> None:
        self._cls = cls
        self._name = name
        self._error = error

    def _raise(self, *_args: Any, **_kw: Any) -> Any:
        e = self._error  # a fresh instance each time: no traceback piles up
        raise ObjectFreedError(str(e), e.name, e.sender_pid, e.age, e.grace)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):  # introspection, getattr(x, "_seg", None): not a use
            raise AttributeError(attr)
        self._raise()

    __enter__ = __exit__ = __aenter__ = __aexit__ = _raise
    __iter__ = __aiter__ = __len__ = __getitem__ = __setitem__ = _raise
    __reduce__ = __reduce_ex__ = _raise  # passing it on is a use too

    def __setstate__(self, state: Any) -> None:
        pass  # (a Lock's lockdep class: nothing to apply it to)

    def __repr__(self) -> str:
        return (f"<interlock.{self._cls.__name__} name={self._name!r}, freed before this "
                "process attached>")


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
        # Not at exit: _segment's exit hook releases every segment, after
        # multiprocessing has terminated and joined its daemon children (a
        # weakref.finalize's own atexit hook runs before that, and left the
        # segment to daemon workers about to be SIGTERMed).
        self._finalizer = weakref.finalize(self, seg.release)
        self._finalizer.atexit = False
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

    def _inflight_segments(self) -> list[_segment.Segment]:
        """The segments a pickle of this object must keep alive: its own,
        and a lock it made for itself that the receiver attaches by name
        (a Condition's; a Value's lock travels pickled, with its own ticket)."""
        segs = [self._seg]
        lock = self.__dict__.get("_lock")
        if self.__dict__.get("_owns_lock") and isinstance(lock, SharedObject):
            segs.append(lock._seg)
        return segs

    def __reduce__(self) -> tuple[Any, ...]:
        # Passing it on is a use: the name must outlive this process's
        # parent for the receiver to attach.
        self._seg.adopt()
        # A ticket per segment: held until the receiver attaches, or for the
        # grace period (segment.md, "Objects in flight").
        tickets = tuple(s.take_ticket() for s in self._inflight_segments())
        args = (type(self), self._seg.name, self._pickle_options(), tickets)
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
