"""What the deadlock tooling costs on acquire+release.

Rows (same run, one process, uncontended; median of --repeat runs):
  - interlock.Lock, lockdep off            (the fast path: tracking costs nothing)
  - interlock.Lock(level=n)                (levels checked on every acquisition)
  - interlock.Lock, lockdep on             (order validation, edges cached per process)
  - nested pair A then B, lockdep off / on (one order edge per acquisition of B)
  - multiprocessing.Lock, threading.Lock   (references)

    python benchmarks/bench_deadlock.py [--n 200000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import threading
import time
from typing import Callable

import interlock
from interlock import lockdep


def per_op(fn: Callable[[int], None], n: int, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(n)
        runs.append((time.perf_counter() - t) / n * 1e9)
    return statistics.median(runs)


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
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n, r = args.n, args.repeat
    plain, lev = interlock.Lock(), interlock.Lock(level=1)
    a, b = interlock.Lock(name=f"bench-dl-a-{id(args)}"), interlock.Lock(name=f"bench-dl-b-{id(args)}")
    rows: list[tuple[str, float]] = []
    lockdep.disable()
    rows.append(("interlock.Lock acquire+release, lockdep off", per_op(single(plain), n, r)))
    rows.append(("interlock.Lock `with`, lockdep off", per_op(with_stmt(plain), n, r)))
    rows.append(("interlock.Lock(level=1) `with`", per_op(with_stmt(lev), n, r)))
    rows.append(("nested A then B `with`, lockdep off", per_op(nested(a, b), n, r)))
    lockdep.enable()
    rows.append(("interlock.Lock `with`, lockdep on", per_op(with_stmt(plain), n // 4, r)))
    rows.append(("nested A then B `with`, lockdep on", per_op(nested(a, b), n // 4, r)))
    lockdep.disable()
    rows.append(("multiprocessing.Lock `with`", per_op(with_stmt(mp.Lock()), n, r)))
    rows.append(("threading.Lock `with`", per_op(with_stmt(threading.Lock()), n, r)))
    base = rows[1][1]
    print(f"{'scenario':48} {'ns/op':>9} {'vs lockdep off':>15}")
    for name, ns in rows:
        print(f"{name:48} {ns:9.0f} {ns / base:14.2f}x")
    print(f"(median of {r} runs; one process, uncontended)")


if __name__ == "__main__":
    main()
