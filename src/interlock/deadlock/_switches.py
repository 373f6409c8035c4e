"""The two switches of lock tracking, owned here and pushed into the core.

``lockdep``: whether lock orders are recorded (``lockdep.enable()``);
``timeout``: how long a wait lasts before the wait-for graph is checked
(``set_deadlock_timeout``, ``INTERLOCK_DEADLOCK_TIMEOUT``; 0: off).  The C
core routes a lock through the Python tracking methods only while one of
them asks for it, so both must reach it together: ``apply()`` does that.

``note_acquire`` is lockdep's hook, set by ``lockdep`` when it is imported:
``_order`` calls it on every tracked acquisition while lockdep is on, and
does not import lockdep (which imports ``_order``).
"""
from __future__ import annotations

import os
from typing import Any, Callable

from .. import _core

lockdep = False
timeout = float(os.environ.get("INTERLOCK_DEADLOCK_TIMEOUT", "1.0"))
note_acquire: Callable[..., Any] | None = None


def apply() -> None:
    _core._set_tracking(lockdep, timeout)
