"""interlock dressed as the ``multiprocessing`` module: the drop-in swap that
issue 10 promises, as one object that tests and example programs import.

``mp`` answers the names of the primitives interlock replaces (``Queue``,
``Lock``, ``Value``, ...) with interlock's classes, and every other name
(``Process``, ``Pool``, ``current_process``, ``set_start_method``, ...) with
``multiprocessing``'s.  A program written for ``multiprocessing`` runs
unchanged after ``import multiprocessing as mp`` becomes
``from _mp_compat import mp``.

A name interlock does not provide (yet) is answered with a factory that raises :class:`NotInInterlock`:
it is *never* silently answered by ``multiprocessing``, which would make a
test pass without testing interlock.  When interlock grows the name, ``mp``
picks it up by itself (and the strict xfails that pinned the gap turn into
failures, to be removed from ``compat_table``).

This module imports only interlock and the standard library, so that
``spawn``/``forkserver`` children of the example programs load it cheaply.
"""
from __future__ import annotations

import multiprocessing
import types
from typing import Any, Callable

import interlock

#: The names issue 10 says interlock replaces.
SWAPPED = (
    "Queue", "JoinableQueue", "SimpleQueue",
    "Lock", "RLock", "Semaphore", "BoundedSemaphore", "Event", "Condition", "Barrier",
    "Value", "Array", "RawValue", "RawArray",
)


class NotInInterlock(NotImplementedError):
    """The program asked for a primitive interlock does not have (yet)."""


def _missing(name: str) -> Callable[..., Any]:
    def factory(*args: Any, **kwargs: Any) -> Any:
        raise NotInInterlock(f"interlock has no {name} (issue 10)")

    factory.__name__ = factory.__qualname__ = name
    return factory


def swapped(name: str) -> Callable[..., Any]:
    """interlock's replacement for ``multiprocessing.<name>``."""
    obj = getattr(interlock, name, None)
    return obj if obj is not None else _missing(name)


class _InterlockAsMultiprocessing(types.ModuleType):
    """Module-like: interlock's primitives, multiprocessing for the rest
    (looked up at each access, so ``set_start_method`` is honoured)."""

    def __getattr__(self, name: str) -> Any:
        if name in SWAPPED:
            return swapped(name)
        return getattr(multiprocessing, name)


mp = _InterlockAsMultiprocessing("interlock_as_multiprocessing", __doc__)
