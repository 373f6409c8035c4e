"""The lecture's deadlock: process A takes L1 then L2, process B takes L2
then L1, and both wait for ever.

``python -m interlock demo deadlock`` shows it twice:

1. caught: with plain locks the two processes deadlock; after
   ``--deadlock-timeout`` seconds of waiting, interlock's runtime detection
   finds the cycle in the wait-for graph and raises ``DeadlockError`` in one
   of them (the youngest waiter); it lets go of its lock, the other
   completes;
2. avoided: the same two opposite orders through ``interlock.ordered(L1,
   L2)`` (Dijkstra's resource hierarchy: everyone takes the locks in one
   global order), ``--rounds`` times each, at full speed: never a deadlock.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from typing import Any, TextIO

import interlock

DESCRIPTION = "A takes L1 then L2, B takes L2 then L1: caught by detection, avoided by order"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--deadlock-timeout", type=float, default=1.0,
                        help="seconds a waiter waits before looking for a cycle (default 1)")
    parser.add_argument("--rounds", type=int, default=20000,
                        help="rounds of the avoided version, per process (default 20000)")


def _actor(first: str, second: str, who: str, barrier: Any, out: Any, timeout: float) -> None:
    interlock.set_deadlock_timeout(timeout)
    a, b = interlock.Lock(name=first), interlock.Lock(name=second)
    try:
        with a:
            out.put(f"{who}: took {first}, now waiting for {second}")
            barrier.wait(10)
            with b:
                out.put(f"{who}: took {second} too: done")
    except interlock.DeadlockError as e:
        out.put(f"{who}: DeadlockError -> gives up {first}:\n{e}")


def _ordered_actor(first: str, second: str, rounds: int) -> None:
    a, b = interlock.Lock(name=first), interlock.Lock(name=second)
    for _ in range(rounds):
        with interlock.ordered(a, b):  # taken as L1, L2 whatever the order given
            pass


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if args.deadlock_timeout <= 0 or args.rounds < 1:
        print("error: --deadlock-timeout must be > 0 and --rounds >= 1", file=sys.stderr)
        return 2
    l1, l2 = f"L1-{os.getpid()}", f"L2-{os.getpid()}"
    keep = [interlock.Lock(name=l1), interlock.Lock(name=l2)]
    ctx = mp.get_context("spawn")
    print(__doc__.split("\n\n")[0].strip(), file=out)
    print(f"\n1. plain locks: A takes {l1} then {l2}, B takes {l2} then {l1}", file=out)
    msgs = interlock.Queue()
    barrier = ctx.Barrier(2)
    t0 = time.monotonic()
    procs = [ctx.Process(target=_actor, args=(l1, l2, "A", barrier, msgs, args.deadlock_timeout)),
             ctx.Process(target=_actor, args=(l2, l1, "B", barrier, msgs, args.deadlock_timeout))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    elapsed = time.monotonic() - t0
    lines = []
    while True:
        try:
            lines.append(msgs.get_nowait())
        except interlock.Empty:
            break
    for line in lines:
        print("   " + line.replace("\n", "\n   "), file=out)
    victims = sum("DeadlockError" in m for m in lines)
    done = sum(m.endswith("done") for m in lines)
    print(f"   -> caught: {victims} victim, {done} completed, in {elapsed:.2f} s", file=out)

    print(f"\n2. interlock.ordered(): both take {l1} before {l2}, {args.rounds} rounds each",
          file=out)
    t0 = time.monotonic()
    procs = [ctx.Process(target=_ordered_actor, args=(l1, l2, args.rounds)),
             ctx.Process(target=_ordered_actor, args=(l2, l1, args.rounds))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    ok = all(p.exitcode == 0 for p in procs)
    print(f"   -> {'no deadlock' if ok else 'FAILED'}: {2 * args.rounds} acquisitions of both "
          f"locks in {time.monotonic() - t0:.2f} s", file=out)
    msgs.detach()
    del keep
    return 0 if ok and victims == 1 and done == 1 else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m interlock.demos.deadlock", description=DESCRIPTION)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
