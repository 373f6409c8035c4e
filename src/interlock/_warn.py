"""``warn_at_user``: a warning pointed at the user's line, not at ours."""
from __future__ import annotations

import os
import sys
import types
import warnings

# Frames in these files are interlock's own: a warning skips them (demos/
# is user code that happens to ship with the package).
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_DEMOS_DIR = _PACKAGE_DIR + "demos" + os.sep


def _internal(filename: str) -> bool:
    return filename.startswith(_PACKAGE_DIR) and not filename.startswith(_DEMOS_DIR)


def warn_at_user(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` at the first frame outside interlock: the user's
    line that called ``acquire()`` (or the ``with`` statement), however many
    of our Python layers (lock tracking, Condition, asyncio helpers) and C
    calls (which have no frame) lie between.  A fixed ``stacklevel`` is
    right for one path only and pointed at the caller's caller for the
    plain C ``acquire``."""
    frame: types.FrameType | None = sys._getframe(1)
    level = 2  # stacklevel 2: our caller's frame, which `frame` is
    while frame is not None and _internal(frame.f_code.co_filename):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
