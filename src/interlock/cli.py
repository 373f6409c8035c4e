"""The ``interlock`` command line: ``python -m interlock <command> ...``.

Each command is ``cmd_<name>(args) -> int`` (the exit status), registered
on the subparsers by its module: ``ls``, ``inspect``, ``top``, ``clean``
come from ``_cli_registry.add_parsers``.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from . import _cli_registry

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interlock",
        description="Shared-memory queues and robust locks between processes.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _cli_registry.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m interlock`` and of the ``interlock`` script."""
    args = build_parser().parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except BrokenPipeError:
        # `interlock ... | head`: the reader left; leave quietly too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
