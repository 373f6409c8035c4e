"""What the deadlock tooling costs on acquire+release.

Rows (same run, one process, uncontended; median of --repeat runs):
  - interlock.Lock, lockdep off            (the fast path: tracking costs nothing)
  - interlock.Lock(level=n)                (levels checked on every acquisition)
  - interlock.Lock, lockdep on             (order validation, edges cached per process)
  - nested pair A then B, lockdep off / on (one order edge per acquisition of B)
  - multiprocessing.Lock, threading.Lock   (references)

    python benchmarks/bench_deadlock.py [--n 200000] [--repeat 5] [--quick] [--json PATH]

The rows' repeats are interleaved; each cell is the median [min-max].
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Report, report_args  # noqa: E402

import interlock  # noqa: E402
from interlock import lockdep  # noqa: E402


def per_op(fn: Callable[[int], None], n: int) -> float:
    t = time.perf_counter()
    fn(n)
    return (time.perf_counter() - t) / n * 1e9


def single(lock: object) -> Callable[[int], None]:
    acq, rel = lock.acquire, lock.release  # type: ignore[attr-defined]

    def run(n: int) -> None:
        for _ in range(n):
            acq()
            rel()
    return run


def with_stmt(lock: object) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            with lock:  # type: ignore[attr-defined]
                pass
    return run


def nested(a: object, b: object) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            with a:  # type: ignore[attr-defined]
                with b:  # type: ignore[attr-defined]
                    pass
    return run


def main() -> None:
    ap = report_args(__doc__.split("\n\n")[0], "a tenth of the iterations")
    ap.add_argument("--n", type=int, default=200_000)
    args = ap.parse_args()
    n = args.n // 10 if args.quick else args.n
    plain, lev = interlock.Lock(), interlock.Lock(level=1)
    a, b = interlock.Lock(name=f"bench-dl-a-{os.getpid()}"), interlock.Lock(name=f"bench-dl-b-{os.getpid()}")
    mpl, thl = mp.Lock(), threading.Lock()
    # (case, impl, lockdep on?, loop, iterations)
    rows: list[tuple[str, str, bool, Callable[[int], None], int]] = [
        ("acquire+release", "interlock.Lock, lockdep off", False, single(plain), n),
        ("with lock", "interlock.Lock, lockdep off", False, with_stmt(plain), n),
        ("with lock", "interlock.Lock(level=1)", False, with_stmt(lev), n),
        ("with lock", "interlock.Lock, lockdep on", True, with_stmt(plain), n // 4),
        ("with lock", "multiprocessing.Lock", False, with_stmt(mpl), n),
        ("with lock", "threading.Lock", False, with_stmt(thl), n),
        ("nested A then B", "interlock.Lock, lockdep off", False, nested(a, b), n),
        ("nested A then B", "interlock.Lock, lockdep on", True, nested(a, b), n // 4),
    ]
    report = Report("bench_deadlock", args, {"n": n})
    try:
        for _ in range(args.repeat):
            for case, impl, on, fn, m in rows:
                (lockdep.enable if on else lockdep.disable)()
                report.add(case, impl, "ns", per_op(fn, m))
    finally:
        lockdep.disable()
        for lk in (plain, lev, a, b):
            lk.detach()
    base = "interlock.Lock, lockdep off"
    for case in ("with lock", "nested A then B"):
        for case_, impl, *_ in rows:
            if case_ == case and impl != base:
                report.ratio(case, (case, base), (case, impl))
    report.print()
    print("(ns per operation, one process, uncontended; a ratio > 1: lockdep off is faster)")
    report.write(args.json)


if __name__ == "__main__":
    main()
