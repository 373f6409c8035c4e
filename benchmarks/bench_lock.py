#!/usr/bin/env python3
"""Cost of interlock.Lock / RLock against multiprocessing's and threading's.

    python benchmarks/bench_lock.py [--quick] [--repeat N] [--json out.json] [--only SUBSTR]

Uncontended: one process (a fresh forked child, so that no other test's state
is around) times ``acquire(); release()`` through bound methods, and
``with lock: pass``, in a loop unrolled 10 times; the loop's own cost per
iteration (measured with a no-op C call in place of each method) is printed
beside it, so that the lock's own cost is the difference.  threading's locks
are there for reference: they are not shared between processes.

Contended: two processes take the same lock in a loop for a fixed time, each
holding it just long enough to increment a counter in shared memory (a
read-modify-write that is only correct under mutual exclusion).  The counter
must equal the sum of the acquisitions both processes counted: otherwise
the lock let two holders in, and the measurement is FAILED.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    CTX,
    BenchFailure,
    Row,
    arg_parser,
    finish_args,
    print_header,
    run_workers,
    span,
    Report,
    rows_to_report,
)

import interlock  # noqa: E402

OURS = "interlock.Lock"
REF = "mp.Lock"
TIMEOUT_S = 60.0

FACTORIES: dict[str, Callable[[], Any]] = {
    "interlock.Lock": interlock.Lock,
    "interlock.RLock": interlock.RLock,
    "mp.Lock": CTX.Lock,
    "mp.RLock": CTX.RLock,
    "threading.Lock": threading.Lock,
    "threading.RLock": threading.RLock,
}
SHARED = ["interlock.Lock", "interlock.RLock", "mp.Lock", "mp.RLock"]

UNROLL = 10


def _timed_loop(body: str, names: dict[str, Any], n: int) -> float:
    """Seconds per execution of ``body`` (run n * UNROLL times)."""
    src = ("def f(n, repeat=__import__('itertools').repeat):\n"
           "    for _ in repeat(None, n):\n" + ("        " + body + "\n") * UNROLL)
    ns = dict(names)
    exec(src, ns)
    f = ns["f"]
    f(max(1, n // 20))  # warm-up
    t0 = time.perf_counter()
    f(n)
    t = (time.perf_counter() - t0) / (n * UNROLL)
    ns.clear()  # f's globals refer to f: break the cycle, free the lock
    return t


def w_uncontended(barrier: Any, name: str, form: str, n: int) -> dict[str, Any]:
    barrier.wait()
    noop = [].clear  # a bound C method with no arguments, like acquire()
    if name == "loop":
        body = {"methods": "a(); r()", "with": "a(); r()", "nested": "a(); a(); r(); r()"}[form]
        return {"s": _timed_loop(body, {"a": noop, "r": noop}, n)}
    lock = FACTORIES[name]()
    a, r = lock.acquire, lock.release
    body = {"methods": "a(); r()", "with": "with lock: pass",
            "nested": "a(); a(); r(); r()"}[form]
    s = _timed_loop(body, {"a": a, "r": r, "lock": lock}, n)
    if lock.acquire(False) is False:
        raise BenchFailure("lock left held after the loop")
    lock.release()
    if hasattr(lock, "detach"):
        # Explicitly: a segment still referenced when a multiprocessing
        # child exits is not released (see README, "bugs found").
        lock.detach()
    return {"s": s}


def w_contended(barrier: Any, lock: Any, counter: Any, duration: float) -> dict[str, Any]:
    acquire, release = lock.acquire, lock.release
    n = 0
    barrier.wait()
    t0 = time.perf_counter()
    end = t0 + duration
    while True:
        for _ in range(200):
            acquire()
            counter.value += 1  # the critical section: a read-modify-write
            release()
        n += 200
        if time.perf_counter() >= end:
            break
    t1 = time.perf_counter()
    return {"t0": t0, "t1": t1, "n": n}


def measure_uncontended(name: str, form: str, n: int) -> float:
    (res,) = run_workers([(w_uncontended, (name, form, n))], TIMEOUT_S)
    return res["s"] * 1e9


def measure_contended(name: str, duration: float) -> tuple[float, list[int]]:
    lock = FACTORIES[name]()
    counter = CTX.RawValue("q", 0)
    try:
        res = run_workers([(w_contended, (lock, counter, duration))] * 2, TIMEOUT_S)
    finally:
        if hasattr(lock, "detach"):
            lock.detach()
    total = sum(r["n"] for r in res)
    if counter.value != total:
        raise BenchFailure(f"counter {counter.value} != acquisitions {total}: "
                           "two holders at once")
    return total / span(res), [r["n"] for r in res]


def run(args: Any) -> list[Row]:
    n = 20_000 if args.quick else 100_000
    duration = 0.15 if args.quick else 0.4
    rows: list[Row] = []
    forms = [("methods", "acquire(); release()"), ("with", "with lock: pass"),
             ("nested", "RLock: acquire() x2, release() x2")]
    def want(s: str) -> bool:
        return not args.only or any(o.lower() in s.lower() for o in args.only)

    for form, label in forms:
        scen = f"uncontended, {label}"
        if not want(scen):
            continue
        names = [k for k in FACTORIES if form != "nested" or "RLock" in k] + ["loop"]
        group = {k: Row(scen, k if k != "loop" else "(loop + 2 no-op calls)", "latency", "ns")
                 for k in names}
        if form == "nested":
            group["loop"].impl = "(loop + 4 no-op calls)"
        rows.extend(group.values())
        for _ in range(args.repeat):
            for k in names:
                try:
                    v = measure_uncontended(k, form, n)
                except BenchFailure as e:
                    group[k].error = str(e)
                    continue
                group[k].values.append(v)
        for k in names:
            if k.startswith("threading"):
                group[k].note = "reference: not shared between processes"
            if k == "loop":
                group[k].note = "loop overhead included in every row above"
    scen = "contended by 2 processes"
    if want(scen):
        group = {k: Row(scen, k, "rate", "acq/s", note="critical section: counter.value += 1")
                 for k in SHARED}
        rows.extend(group.values())
        for _ in range(args.repeat):
            for k in SHARED:
                if group[k].error:
                    continue
                try:
                    v, split = measure_contended(k, duration)
                except BenchFailure as e:
                    group[k].error = str(e)
                    continue
                group[k].values.append(v)
                group[k].n.append(sum(split))
                share = min(split) / max(sum(split), 1)
                group[k].note = (f"critical section: counter.value += 1; smaller process's "
                                 f"share {share:.0%} (last repeat)")
    return rows


def print_ns_table(rows: list[Row]) -> None:
    """Latency rows here are single numbers (ns per operation), not p50/p99."""
    for sc in dict.fromkeys(r.scenario for r in rows):
        group = [r for r in rows if r.scenario == sc]
        ref = next((r for r in group if r.impl == REF), None)
        best = min((r for r in group if r.ok and r.impl in SHARED and r.impl != OURS),
                   key=lambda r: r.median, default=None) if group[0].kind == "latency" else \
            max((r for r in group if r.ok and r.impl in SHARED and r.impl != OURS),
                key=lambda r: r.median, default=None)
        print(f"{sc}")
        for r in group:
            if not r.ok:
                print(f"  {r.impl:<26} {'FAILED' if r.error else 'skipped'}  {r.error or r.note}")
                continue
            if r.kind == "latency":
                res = f"{r.median:8.1f} ns  ({min(r.values):.1f}..{max(r.values):.1f})"
                vs = f"{ref.median / r.median:5.2f}x {REF}" if ref and r is not ref else ""
                vb = (f"{best.median / r.median:5.2f}x best shared peer"
                      if best and r.impl.startswith("interlock") else "")
            else:
                res = f"{r.median / 1e6:8.2f} M acq/s ({min(r.values) / 1e6:.2f}..{max(r.values) / 1e6:.2f})"
                vs = f"{r.median / ref.median:5.2f}x {REF}" if ref and r is not ref else ""
                vb = (f"{r.median / best.median:5.2f}x best shared peer"
                      if best and r.impl.startswith("interlock") else "")
            print(f"  {r.impl:<26} {res:<36} {vs:<16} {vb:<26} {r.note}".rstrip())
        print()


def main() -> None:
    p = arg_parser(__doc__.split("\n")[0])
    args = finish_args(p.parse_args())
    print_header("bench_lock", args)
    report = Report("bench_lock", args)
    t = time.perf_counter()
    rows = run(args)
    print_ns_table(rows)
    print(f"({time.perf_counter() - t:.0f} s; ratios: > 1 means faster than {REF})")
    targets = []
    for r in rows:
        if r.impl == "interlock.Lock" and r.ok and r.scenario.startswith("uncontended, acq"):
            loop = next(x for x in rows if x.scenario == r.scenario and x.impl.startswith("("))
            net = r.median - loop.median
            targets.append(f"uncontended acquire+release <= 50 ns: {r.median:.0f} ns as called "
                           f"from Python ({net:.0f} ns above the loop with two no-op calls): "
                           f"{'met' if r.median <= 50 else ('met net of call overhead' if net <= 50 else 'MISSED')}")
        if r.impl == "interlock.Lock" and r.ok and r.scenario.startswith("contended"):
            targets.append(f"contended by 2 processes >= 2 M acq/s: {r.median / 1e6:.2f} M: "
                           f"{'met' if r.median >= 2e6 else 'MISSED'}")
    if targets:
        print("\nTargets from issue 2:")
        for t_ in targets:
            print("  " + t_)
    rows_to_report(report, rows, [], [])
    for case in dict.fromkeys(r.scenario for r in rows):
        impls = {r.impl for r in rows if r.scenario == case}
        for ours, peer in (("interlock.Lock", "mp.Lock"), ("interlock.RLock", "mp.RLock")):
            if ours in impls and peer in impls:
                report.ratio(case, (case, ours), (case, peer))
    report.params["targets"] = targets
    report.write(args.json)
    if any(r.error for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
