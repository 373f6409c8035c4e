"""Runnable demonstrations of interlock, one module per story of the lecture.

Each module exposes ``add_arguments(parser)`` (its command-line options) and
``run(args) -> int`` (an exit status); ``interlock.cli`` wires them up as
``python -m interlock demo <name>``.  ``DEMOS`` maps each name to its module
path and a one-line summary, so that listing the demos imports none of them.
"""
from __future__ import annotations

DEMOS: dict[str, tuple[str, str]] = {
    "primes": (
        "interlock.demos.primes",
        "finders put primes into a Queue, a printer prints them in batches",
    ),
    "deadlock": (
        "interlock.demos.deadlock",
        "A takes L1 then L2, B takes L2 then L1: caught by detection, avoided by order",
    ),
}
