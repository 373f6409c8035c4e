#!/usr/bin/env python3
"""Large items through a default queue (spill files), against their peers.

    python benchmarks/bench_spill.py [--quick] [--repeat N] [--json PATH]

- one 64 MiB ``bytes`` and one 256 MiB numpy array (float64), put in one
  process and got in another, through a default ``interlock.Queue()`` (the
  item goes through a spill file of its own: docs/design/spill.md) against
  ``multiprocessing.Queue``: seconds from the put's start to the get's return;
- the threshold: a stream of numpy arrays of 256 KiB, 1 MiB and 4 MiB from
  one process to another, through the ring (a queue with a capacity large
  enough, which never spills) and through spill files (a default queue whose
  producer spills every item): items per second, the ratio spill / ring.
  Where the ring wins, spilling costs more than it saves; the default
  threshold (1 MiB) is chosen from this table;
- the same stream of 1 MiB arrays with a consumer that reads each array
  whole (``a.sum()``) before it takes the next, as most consumers do: a
  spilled item's pages are mapped in the receiver when first touched (a
  kept mapping of a pooled file has them already: spill.md, "Warm
  mappings"), the ring's are copied out into the receiver's heap;
  ``multiprocessing.Queue`` beside them;
- the multiprocessing docs' task-queue pattern, unbounded: N small tasks
  ``(i, 'task', 1.5)`` put into a default queue before any consumer runs
  (most go to the overflow: docs/design/overflow.md), then taken by one
  consumer process: the put rate and the drain rate, against
  ``multiprocessing.Queue`` (whose feeder thread buffers the tasks).

Each case is calibrated once (so warmed up), then run ``--repeat`` times, the
implementations interleaved.  Processes start with ``fork``.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import BenchFailure, Report, report_args, run_workers  # noqa: E402

import interlock  # noqa: E402
from interlock import _segment  # noqa: E402

try:
    import numpy as np
except ImportError:  # pragma: no cover
    np = None  # type: ignore[assignment]

TIMEOUT_S = 300.0
MiB = 1 << 20


def payload(kind: str, size: int) -> Any:
    if kind == "bytes":
        return b"\x01" * size
    return np.arange(size // 8, dtype=np.float64)


def check(kind: str, m: Any, size: int) -> None:
    n = len(m) if kind == "bytes" else m.nbytes
    last = m[-1] if kind == "bytes" else m[-1] == size // 8 - 1
    if n != size or not last:
        raise BenchFailure("the item is not what was put")


def w_put(barrier: Any, q: Any, kind: str, size: int, n: int, spill_all: bool) -> dict:
    item = payload(kind, size)
    if spill_all:  # this producer spills every item (the consumer needs nothing)
        q._set_spill(_segment.spill_prefix(q._seg.header), 64)
    barrier.wait()
    t0 = time.perf_counter()
    for _ in range(n):
        q.put(item)
    return {"t0": t0, "t1": time.perf_counter()}


def w_get(barrier: Any, q: Any, kind: str, size: int, n: int, read: bool = False) -> dict:
    barrier.wait()
    m = None
    if read:
        total = 0.0
        for _ in range(n):
            m = q.get()
            total += float(m.sum())
        if total != n * float(payload(kind, size).sum()):
            raise BenchFailure("the arrays read are not what was put")
    else:
        for _ in range(n):
            m = q.get()
    t1 = time.perf_counter()
    check(kind, m, size)
    return {"t0": t1, "t1": t1}


def w_backlog_get(barrier: Any, q: Any, n: int) -> dict:
    barrier.wait()
    t0 = time.perf_counter()
    s = 0
    for _ in range(n):
        s += q.get()[0]
    if s != n * (n - 1) // 2:
        raise BenchFailure("tasks lost or duplicated")
    return {"t0": t0, "t1": time.perf_counter()}


def backlog(impl: str, n: int) -> tuple[float, float]:
    """(put rate, drain rate) of n tasks put before the consumer starts."""
    ctx = mp.get_context("fork")
    q: Any = ctx.Queue() if impl == "mp.Queue" else interlock.Queue()
    try:
        t0 = time.perf_counter()
        for i in range(n):
            q.put((i, "task", 1.5))
        put_rate = n / (time.perf_counter() - t0)
        (res,) = run_workers([(w_backlog_get, (q, n))], TIMEOUT_S, ctx)
    finally:
        if isinstance(q, interlock.Queue):
            q.detach()
        else:
            q.close()
            q.join_thread()
    return put_rate, n / (res["t1"] - res["t0"])


def one(impl: str, kind: str, size: int, n: int, read: bool = False) -> float:
    """Seconds from the first put's start to the last get's return (and,
    with ``read``, the consumer's read of the last array)."""
    ctx = mp.get_context("fork")
    if impl == "mp.Queue":
        q: Any = ctx.Queue()
    elif impl == "interlock, ring":
        q = interlock.Queue(capacity=max(4 * size, 4 * MiB))
    else:  # "interlock" (a default queue) or "interlock, spill"
        q = interlock.Queue()
    try:
        res = run_workers([(w_put, (q, kind, size, n, impl == "interlock, spill")),
                           (w_get, (q, kind, size, n, read))], TIMEOUT_S, ctx)
    finally:
        if isinstance(q, interlock.Queue):
            q.detach()
        else:
            q.close()
            q.join_thread()
    return res[1]["t1"] - res[0]["t0"]


def main() -> None:
    args = report_args(__doc__.splitlines()[1]).parse_args()
    report = Report("spill", args)
    cases: list[tuple[str, str, int, int, tuple[str, ...], str, bool]] = [
        ("64 MiB bytes, put -> get in another process", "bytes", 64 * MiB, 1,
         ("interlock", "mp.Queue"), "s", False)]
    if np is not None:
        cases.append(("256 MiB numpy array, put -> get in another process", "numpy",
                      256 * MiB, 1, ("interlock", "mp.Queue"), "s", False))
        for kib in (256, 1024, 4096):
            n = max(8, (64 if not args.quick else 16) * 1024 // kib)
            cases.append((f"{kib} KiB numpy arrays, 1P->1C stream", "numpy", kib * 1024, n,
                          ("interlock, spill", "interlock, ring"), "items/s", False))
        n = 256 if not args.quick else 128
        cases.append(("1 MiB numpy arrays, 1P->1C stream, each read by the consumer", "numpy",
                      MiB, n, ("interlock, spill", "interlock, ring", "mp.Queue"), "items/s",
                      True))
    else:  # pragma: no cover
        report.missing("256 MiB numpy array, put -> get in another process", "interlock", "s",
                       "numpy is not installed (pip install -e '.[bench]')")
    for case, kind, size, n, impls, unit, read in cases:
        for impl in impls:
            one(impl, kind, size, n, read)  # calibrate / warm up
        for _ in range(args.repeat):
            for impl in impls:
                try:
                    dt = one(impl, kind, size, n, read)
                except BenchFailure as e:
                    report.failed(case, impl, unit, str(e))
                    continue
                report.add(case, impl, unit, dt if unit == "s" else n / dt)
        for other in impls[1:]:
            report.ratio(case, (case, impls[0]), (case, other))
    n = 300_000 if args.quick else 1_000_000
    case_put = f"{n // 1000}k tasks put before any consumer (the ring overflows), put"
    case_get = f"{n // 1000}k tasks put before any consumer (the ring overflows), drain"
    for impl in ("interlock", "mp.Queue"):
        backlog(impl, n // 10)  # warm up
    for _ in range(args.repeat):
        for impl in ("interlock", "mp.Queue"):
            try:
                p, g = backlog(impl, n)
            except BenchFailure as e:
                report.failed(case_put, impl, "items/s", str(e))
                continue
            report.add(case_put, impl, "items/s", p)
            report.add(case_get, impl, "items/s", g)
    for case in (case_put, case_get):
        report.ratio(case, (case, "interlock"), (case, "mp.Queue"))
    report.print()
    report.write(args.json)
    if report.failures():
        sys.exit(1)


if __name__ == "__main__":
    main()
