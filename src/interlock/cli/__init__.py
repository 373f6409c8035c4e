"""The ``interlock`` command line: ``python -m interlock <command> ...``.

One function per command, ``cmd_<name>(args) -> int``, each registered in
``build_parser()`` by an ``_add_<name>(subparsers)`` function beside it.  A
new command (``ls``, ``inspect``, ``top``, ``clean``) is one more such pair
and one line in ``build_parser()``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from ..demos import DEMOS

Command = Callable[[argparse.Namespace], int]


# ---------------------------------------------------------------- demo
def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run a demonstration",
                       description="Run one of interlock's demonstrations.")
    demos = p.add_subparsers(dest="demo", metavar="DEMO", required=True)
    for name, (module, summary) in DEMOS.items():
        mod = importlib.import_module(module)
        if hasattr(mod, "add_arguments"):
            d = demos.add_parser(name, help=summary, description=summary)
            mod.add_arguments(d)
        else:  # the demo parses its own options (and its own --help)
            d = demos.add_parser(name, help=summary, description=summary, add_help=False)
            d.add_argument("demo_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    module = importlib.import_module(DEMOS[args.demo][0])
    if hasattr(module, "run"):
        return int(module.run(args))
    return int(module.main(list(args.demo_args)))


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interlock",
        description="Shared-memory queues and robust locks between processes.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"interlock {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_demo(sub)
    from . import _deadlock, _registry

    _registry.add_parsers(sub)
    _deadlock.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m interlock`` and of the ``interlock`` script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) >= 2 and argv[0] == "demo" and argv[1] in DEMOS:
        mod = importlib.import_module(DEMOS[argv[1]][0])
        if not hasattr(mod, "add_arguments"):  # a demo with a parser of its own
            return int(mod.main(argv[2:]))
    args = build_parser().parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except BrokenPipeError:
        # `interlock ... | head`: the reader left; leave quietly too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
