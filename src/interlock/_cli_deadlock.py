"""``interlock lockdep`` and ``interlock graph``: the deadlock tooling's views.

- ``lockdep``: every lock order recorded by lockdep (by any process still
  using the table) and every violation found, as text or ``--json``.
- ``graph``: the current wait-for graph (threads waiting longer than
  ``deadlock_timeout``, and who holds what they wait for), as text, as
  Graphviz DOT (``--dot``) or ``--json``; cycles are marked.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any


def _add_lockdep(sub: Any) -> None:
    p = sub.add_parser("lockdep", help="recorded lock orders and violations",
                       description="Lock orders recorded by lockdep (interlock.lockdep.enable() "
                                   "or INTERLOCK_LOCKDEP=1) and the violations found.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_lockdep)


def cmd_lockdep(args: argparse.Namespace) -> int:
    from . import _segment, lockdep

    if not os.path.exists(_segment.path_of(_segment.internal_name("@lockdep"))):
        rep = lockdep.Report((), ())
    else:
        rep = lockdep.report()
    if args.json:
        print(json.dumps(dataclasses.asdict(rep), indent=2))
        return 0
    if not rep.edges and not rep.violations:
        print("no lock orders recorded (is lockdep enabled in the processes you watch? "
              "interlock.lockdep.enable() or INTERLOCK_LOCKDEP=1)")
        return 0
    print(f"{len(rep.edges)} lock order(s) recorded:")
    for e in rep.edges:
        print(f"  {e.before!r} -> {e.after!r}   (pid {e.pid}: {e.where_before} then "
              f"{e.where_after})")
    print(f"{len(rep.violations)} violation(s):" if rep.violations else "no violations")
    for v in rep.violations:
        print(f"  {v.message}")
    return 1 if rep.violations else 0


def _add_graph(sub: Any) -> None:
    p = sub.add_parser("graph", help="the current wait-for graph",
                       description="Threads that have waited longer than deadlock_timeout for "
                                   "a lock, and who holds it; cycles are deadlocks.")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--dot", action="store_true", help="Graphviz DOT output")
    fmt.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_graph)


def cmd_graph(args: argparse.Namespace) -> int:
    from . import _segment, _waitfor

    ws = _waitfor.waits() if os.path.exists(_segment.path_of(_segment.internal_name("@waitfor"))) else []
    cycles = _waitfor.all_cycles(ws)
    if args.dot:
        print(_waitfor.graph_dot(ws))
        return 0
    if args.json:
        print(json.dumps({"waits": [dataclasses.asdict(w) for w in ws],
                          "cycles": [[w.tid for w in c] for c in cycles]}, indent=2))
        return 0
    if not ws:
        print("no long waits: no thread has waited longer than deadlock_timeout for a lock")
        return 0
    print(f"{len(ws)} long wait(s):")
    for w in ws:
        owner = f"held by pid {w.owner_pid or '?'} thread {w.owner_tid}" if w.owner_tid else "free"
        print(f"  pid {w.pid} thread {w.tid} waits for {w.lock!r} ({owner}) at {w.where}")
    for c in cycles:
        print("DEADLOCK: " + " -> ".join(f"thread {w.tid} (pid {w.pid})" for w in c)
              + f" -> thread {c[0].tid}")
    return 0


def add_parsers(sub: Any) -> None:
    _add_lockdep(sub)
    _add_graph(sub)
