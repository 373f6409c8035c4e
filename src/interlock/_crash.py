"""Crash points: named places where a test can make the process die.

The C core has its own (``_core.crash_points()``, see ``_core/crashpoint.h``);
these are the Python layer's, in the segment lifecycle. Both exist only in a
test build of the C core (``INTERLOCK_TEST_BUILD=1`` at build time:
``_core.CRASHPOINTS`` is 1, see :data:`ENABLED`); in a normal build nothing
arms them, so no environment can make an application exit. In a test build
both are armed the same way: ``INTERLOCK_CRASH_AT="name[:nth]"`` in the
environment (read at import, so spawned children inherit it) or :func:`arm`
in a forked child. Armed, the process calls ``os._exit(CRASH_EXIT)`` the nth
time it reaches the point: no unlock, no cleanup, as abrupt as SIGKILL.
Disarmed, a point is one comparison with None.
"""
from __future__ import annotations

import os

from . import _core

CRASH_EXIT = _core.CRASH_EXIT
#: Whether this is a test build, where crash points can be armed.
ENABLED = bool(_core.CRASHPOINTS)

POINTS: dict[str, str] = {
    "segment.create.initialised": "unnamed segment built, not yet linked to its name",
    "segment.claim.locked": "meta lock held while registering as a user",
    "segment.drop.locked": "meta lock held, own slot cleared, name not yet removed",
    "segment.unlink.marked": "segment marked unlinked, name not yet removed",
    "segment.grow.populated": "meta lock held, a new page of slots allocated, high-water "
                              "mark not yet moved over it",
}

_armed: str | None = None
_remaining = 0


def all_points() -> list[tuple[str, str]]:
    """Every crash point, C core and Python layer: [(name, what is held there)]."""
    return list(_core.crash_points()) + sorted(POINTS.items())


def arm(name: str | None, nth: int = 1) -> None:
    """Die the nth time this process reaches ``name`` (None disarms all)."""
    global _armed, _remaining
    if name is None:
        _armed = None
        _core._crash_arm(None)
        return
    if not ENABLED:
        raise RuntimeError("crash points exist only in a test build (INTERLOCK_TEST_BUILD=1)")
    if name in POINTS:
        _armed, _remaining = name, max(1, nth)
        return
    _core._crash_arm(name, nth)  # ValueError for an unknown name


def point(name: str) -> None:
    global _remaining
    if _armed == name:
        _remaining -= 1
        if _remaining <= 0:
            os._exit(CRASH_EXIT)


def _from_env() -> None:
    spec = os.environ.get("INTERLOCK_CRASH_AT") if ENABLED else None
    if spec:
        name, _, nth = spec.partition(":")
        if name in POINTS:
            arm(name, int(nth or 1))


_from_env()
