"""Runnable demonstrations of interlock, one module per story of the lecture.

Each module exposes either ``add_arguments(parser)`` (its command-line
options) and ``run(args) -> int`` (an exit status), or ``main(argv) -> int``
with a parser of its own; ``interlock.cli`` wires them up as
``python -m interlock demo <name>``.  ``DEMOS`` maps each name to its module
path and a one-line summary, so that listing the demos imports none of them.
"""
from __future__ import annotations

DEMOS: dict[str, tuple[str, str]] = {
    "primes": (
        "interlock.demos.primes",
        "finders put primes into a Queue, a printer prints them in batches",
    ),
    "images": (
        "interlock.demos.images",
        "A lists image URLs, downloaders fetch and save them (offline: a local HTTP server)",
    ),
    "restaurant": (
        "interlock.demos.restaurant",
        "waiters take orders, cooks cook them, with a live view of the order queue",
    ),
    "race": (
        "interlock.demos.race",
        "processes print 10 copies of a character: broken lines without a lock, none with it",
    ),
    "fifo": (
        "interlock.demos.fifo",
        "a naive shared linked list corrupted by concurrent push/pop, next to interlock's Queue",
    ),
    "deadlock": (
        "interlock.demos.deadlock",
        "A takes L1 then L2, B takes L2 then L1: caught by detection, avoided by order",
    ),
}
