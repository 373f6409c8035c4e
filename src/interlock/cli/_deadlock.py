"""``interlock lockdep`` and ``interlock graph``: the deadlock tooling's views.

- ``lockdep``: every lock order recorded by lockdep and every violation
  found, as text or ``--json``: in the domain of ``--domain``, else of
  ``INTERLOCK_LOCKDEP_DOMAIN``, else in every domain; with each table's use
  ("table full: N edges dropped" when it overflowed).
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
                                   "or INTERLOCK_LOCKDEP=1) and the violations found, per "
                                   "domain (default: INTERLOCK_LOCKDEP_DOMAIN, else all).")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--domain", help="only this lockdep domain")
    p.set_defaults(func=cmd_lockdep)


def cmd_lockdep(args: argparse.Namespace) -> int:
    from ..deadlock import lockdep

    chosen = args.domain or lockdep.domain()
    names = [chosen] if chosen else lockdep.domains()
    reps = [lockdep.report(d) for d in names]
    if args.json:
        print(json.dumps({
            "edges": [dataclasses.asdict(e) for r in reps for e in r.edges],
            "violations": [dataclasses.asdict(v) for r in reps for v in r.violations],
            "domains": [{"domain": d, "edges": len(r.edges), "violations": len(r.violations),
                         "dropped": r.dropped} for d, r in zip(names, reps)],
        }, indent=2))
        return 0
    if not any(r.edges or r.violations or r.dropped for r in reps):
        print("no lock orders recorded (is lockdep enabled in the processes you watch? "
              "interlock.lockdep.enable() or INTERLOCK_LOCKDEP=1)")
        return 0
    for d, rep in zip(names, reps):
        if len(names) > 1:
            print(f"domain {d!r}:")
        print(f"{len(rep.edges)} lock order(s) recorded:")
        for e in rep.edges:
            print(f"  {e.before!r} -> {e.after!r}   (pid {e.pid}: {e.where_before} then "
                  f"{e.where_after})")
        if rep.dropped:
            print(f"table full: {rep.dropped} edges dropped (table {lockdep.TABLE_PREFIX}{d}): "
                  "cycles through them go unreported; lockdep.reset() empties it")
        print(f"{len(rep.violations)} violation(s):" if rep.violations else "no violations")
        for v in rep.violations:
            print(f"  {v.message}")
    return 1 if any(r.violations for r in reps) else 0


def _add_graph(sub: Any) -> None:
    p = sub.add_parser("graph", help="the current wait-for graph",
                       description="Threads that have waited longer than deadlock_timeout for "
                                   "a lock, and who holds it; cycles are deadlocks.")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--dot", action="store_true", help="Graphviz DOT output")
    fmt.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_graph)


def cmd_graph(args: argparse.Namespace) -> int:
    from .. import _segment
    from ..deadlock import _waitfor

    ws = _waitfor.waits() if os.path.exists(_segment.internal_path("@waitfor")) else []
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
