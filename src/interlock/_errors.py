"""The name the C core imports the exception classes by (``_core`` init).

Every class is defined in :mod:`interlock.errors`; this re-exports them and
goes away once the core imports ``interlock.errors`` directly.
"""
from .errors import *  # noqa: F401,F403
from .errors import __all__ as __all__  # noqa: F401
