"""``interlock.lockdep``: the public name of :mod:`interlock.deadlock.lockdep`.

One module under two names (its state, ``enable()``/``report()``..., is
shared): importing this one hands back the other, so ``interlock.lockdep is
interlock.deadlock.lockdep``.
"""
import sys as _sys

from .deadlock import lockdep as _lockdep
from .deadlock.lockdep import *  # noqa: F401,F403  (for type checkers)

_sys.modules[__name__] = _lockdep
