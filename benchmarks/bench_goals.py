#!/usr/bin/env python3
"""The cases of issue 11 ("No cliffs"), each against its peers in one run.

    python benchmarks/bench_goals.py [--quick] [--repeat N] [--json PATH] [--only SUBSTR]

Where interlock was fast on one path and fell off a cliff next to it:

- start method: 64 B bytes 1P->1C, single put/get and put_many/get_many, and
  ping-pong p50/p99, under fork, spawn and forkserver (ratios spawn/fork and
  forkserver/fork of interlock's own numbers);
- one CPU: ping-pong with both processes pinned to one CPU;
- item size: put_many/get_many against single calls, per item, at 64 B,
  64 KiB and 1 MiB (numpy float64);
- a 256 MiB numpy array, put in one process and got in another, against one
  memcpy of it (``np.copyto`` into memory already touched) and one copy into
  a fresh array (``ndarray.copy()``: its pages are faulted in during the
  copy, as a receiver's are);
- scaling: P producers x C consumers of pickled tuples ``(i, 'abc', 1.5)``
  through one queue of maxsize 10,000, for 1x1, 2x2, 8x8 and 32x32.

Peers: ``multiprocessing.Queue`` (of the same start method) and faster-fifo;
a peer that is not installed, or cannot do a case, is a row marked missing.
Each (case, implementation) is calibrated once (and so warmed up), then run
``--repeat`` times, the implementations' repeats interleaved.  While two
processes run, the CPU each last ran on is sampled from /proc/<pid>/stat
(field 39) every ~5 ms: the JSON's ``placement`` says how often both sat on
the same CPU (the one-CPU mode of a two-CPU machine).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import resource
import sys
import time
from itertools import repeat
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import BenchFailure, Report, percentile, report_args, run_workers  # noqa: E402

import interlock  # noqa: E402

try:
    import numpy as np
except ImportError:  # pragma: no cover
    np = None  # type: ignore[assignment]
try:
    import faster_fifo
except ImportError:  # pragma: no cover
    faster_fifo = None

TIMEOUT_S = 120.0
IMPLS = ("interlock", "mp.Queue", "faster-fifo")
METHODS = [m for m in ("fork", "spawn", "forkserver") if m in mp.get_all_start_methods()]
BATCH = 128
MAXSIZE = 10_000
STOP = None


def why_missing(impl: str) -> str | None:
    if impl == "faster-fifo" and faster_fifo is None:
        return "faster-fifo is not installed (pip install -e '.[bench]')"
    return None


def make_queue(impl: str, ctx: Any, capacity: int = 4 << 20, maxsize: int = 0) -> Any:
    if impl == "interlock":
        return interlock.Queue(maxsize, capacity=capacity)
    if impl == "mp.Queue":
        return ctx.Queue(maxsize)
    return faster_fifo.Queue(max_size_bytes=capacity)


def close_queue(impl: str, q: Any) -> None:
    if impl == "interlock":
        q.detach()
    elif impl == "mp.Queue":
        q.close()
        q.join_thread()


def payload(kind: str, size: int) -> Any:
    if kind == "numpy":
        return np.arange(size // 8, dtype=np.float64)
    return b"x" * size


def distinct(item: Any, batch: int) -> list[Any]:
    """``batch`` distinct objects like ``item``, the last equal to it: with
    ``[item] * batch``, pickle's memo would send one object and references
    (flattering the peers that pickle a list), and a copy-on-put queue
    would copy the same cache-hot bytes."""
    if not batch:
        return []
    if isinstance(item, bytes):
        return [item[:-1] + bytes([(i - batch + 1) % 256 or item[-1]]) for i in range(batch - 1)] \
            + [item]
    return [item.copy() for _ in range(batch - 1)] + [item]


def _pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def _ops(impl: str, q: Any, batch: int) -> tuple[Callable[..., Any], Callable[[], Any]]:
    """(put, get) for single items, or (put a list, get a list) for batches."""
    if not batch:
        if impl == "faster-fifo":
            return q.put, (lambda: q.get(timeout=TIMEOUT_S))
        return q.put, q.get
    if impl == "interlock":
        return q.put_many, (lambda: q.get_many(batch))
    if impl == "faster-fifo":
        return q.put_many, (lambda: q.get_many(timeout=TIMEOUT_S, max_messages_to_get=batch))
    return q.put, q.get   # mp.Queue: no batch API, one list per put


def _last(m: Any) -> Any:
    return m[-1] if isinstance(m, list) else m


def _same(a: Any, b: Any) -> bool:
    if np is not None and isinstance(a, np.ndarray):
        return bool(a.nbytes == b.nbytes and a[0] == b[0] and a[-1] == b[-1])
    return bool(a == b)


# ---------------------------------------------------------------- workers
# (module level, so that spawn and forkserver children can import them)

def w_put(barrier: Any, impl: str, q: Any, n: int, kind: str, size: int, batch: int) -> dict:
    put, _ = _ops(impl, q, batch)
    item = payload(kind, size)
    items = distinct(item, batch)
    barrier.wait()
    t0 = time.perf_counter()
    if batch:
        for _ in repeat(None, n // batch):
            put(items)
    else:
        for _ in repeat(None, n):
            put(item)
    t1 = time.perf_counter()
    return {"t0": t0, "t1": t1}


def w_get(barrier: Any, impl: str, q: Any, n: int, kind: str, size: int, batch: int) -> dict:
    _, get = _ops(impl, q, batch)
    m = None
    barrier.wait()
    t0 = time.perf_counter()
    if batch:
        got = 0
        n = n // batch * batch
        while got < n:
            m = get()
            got += len(m)
        if got != n:
            raise BenchFailure(f"got {got} items, expected {n}")
    else:
        for _ in repeat(None, n):
            m = get()
    t1 = time.perf_counter()
    if not _same(_last(m), payload(kind, size)):
        raise BenchFailure("the last item is not what was put")
    return {"t0": t0, "t1": t1}


def w_ping(barrier: Any, impl: str, qa: Any, qb: Any, duration: float, cpu: int | None) -> dict:
    _pin(cpu)
    put, _ = _ops(impl, qa, 0)
    _, get = _ops(impl, qb, 0)
    msg = b"x" * 64
    clock = time.perf_counter_ns
    barrier.wait()
    for _ in range(200):
        put(msg)
        get()
    samples: list[int] = []
    append = samples.append
    t0 = time.perf_counter()
    end = t0 + duration
    while True:
        s = clock()
        put(msg)
        get()
        append(clock() - s)
        if len(samples) >= 200_000 or time.perf_counter() >= end:
            break
    t1 = time.perf_counter()
    put(b"")
    samples.sort()
    return {"t0": t0, "t1": t1, "n": len(samples),
            "p50_us": percentile(samples, 50) / 1e3, "p99_us": percentile(samples, 99) / 1e3}


def w_pong(barrier: Any, impl: str, qa: Any, qb: Any, duration: float, cpu: int | None) -> dict:
    _pin(cpu)
    _, get = _ops(impl, qa, 0)
    put, _ = _ops(impl, qb, 0)
    barrier.wait()
    while True:
        m = get()
        if not m:
            break
        put(m)
    return {}


def w_big_put(barrier: Any, impl: str, q: Any, size: int) -> dict:
    a = payload("numpy", size)
    barrier.wait()
    t0 = time.perf_counter()
    q.put(a)
    return {"t0": t0, "t1": time.perf_counter()}


def w_big_get(barrier: Any, impl: str, q: Any, size: int) -> dict:
    _, get = _ops(impl, q, 0)
    barrier.wait()
    m = get()
    t1 = time.perf_counter()
    if m.nbytes != size or m[-1] != size // 8 - 1:
        raise BenchFailure("the array is not what was put")
    return {"t0": t1, "t1": t1}


def w_copy(barrier: Any, size: int, fresh: bool) -> dict:
    """One copy of the array: into a fresh array (``ndarray.copy()``: its
    pages are faulted in during the copy, as a receiver's are), or into one
    already written once (``np.copyto``: the bare memcpy)."""
    a = payload("numpy", size)
    b = None if fresh else np.zeros_like(a)
    if b is not None:
        b[:] = 1.0   # touched: every page is mapped
    barrier.wait()
    t0 = time.perf_counter()
    if b is None:
        b = a.copy()
    else:
        np.copyto(b, a)
    t1 = time.perf_counter()
    if b[-1] != a[-1]:
        raise BenchFailure("the copy differs")
    return {"t0": t0, "t1": t1}


def w_grid_put(barrier: Any, impl: str, q: Any, n: int, idx: int, pbarrier: Any,
               ncons: int) -> dict:
    put, _ = _ops(impl, q, 0)
    barrier.wait()
    t0 = time.perf_counter()
    for i in range(n):
        put((i, "abc", 1.5))
    t1 = time.perf_counter()
    if impl == "mp.Queue" and idx:
        q.close()
        q.join_thread()   # this producer's data is in the pipe before the markers
    pbarrier.wait()
    if idx == 0:
        for _ in range(ncons):
            put(STOP)
    return {"t0": t0, "t1": t1}


def w_grid_get(barrier: Any, impl: str, q: Any) -> dict:
    _, get = _ops(impl, q, 0)
    count = 0
    barrier.wait()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    while get() is not STOP:
        count += 1
    t1 = time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    # context switches while consuming: voluntary (slept: found the queue
    # empty, or waited for a lock) and involuntary (preempted)
    return {"t0": t0, "t1": t1, "received": count, "vcsw": r1.ru_nvcsw - r0.ru_nvcsw,
            "ivcsw": r1.ru_nivcsw - r0.ru_nivcsw}


# ---------------------------------------------------------------- measurements

def _span(res: list[dict]) -> float:
    return max(r["t1"] for r in res) - min(r["t0"] for r in res)


def stream(impl: str, method: str, n: int, kind: str, size: int, batch: int,
           placement: list | None = None) -> float:
    """Items per second from one producer process to one consumer process."""
    if batch and impl == "mp.Queue" and size > 64:
        raise NotApplicable("no batch API (a list per put is measured at 64 B only)")
    ctx = mp.get_context(method)
    # The same ring for single and batched transfers, so that their ratio
    # compares the calls, not ring sizes (a 32 MiB ring runs at about half
    # the speed of a 4 MiB one at 1 MiB items: it does not stay in cache).
    # A blocking put_many larger than the ring puts what fits and waits.
    # (faster-fifo's put_many raises Full for a batch larger than its
    # buffer: it keeps a buffer of 4 batches, as before.)
    cap = max(4 << 20, 4 * size * (max(batch, 1) if impl == "faster-fifo" else 1))
    q = make_queue(impl, ctx, capacity=cap)
    if batch:
        n = max(batch, n // batch * batch)
    try:
        res = run_workers([(w_put, (impl, q, n, kind, size, batch)),
                           (w_get, (impl, q, n, kind, size, batch))], TIMEOUT_S, ctx, placement)
    finally:
        close_queue(impl, q)
    return n / _span(res)


def pingpong(impl: str, method: str, duration: float, cpus: tuple[int | None, int | None],
             placement: list | None = None) -> tuple[float, float]:
    ctx = mp.get_context(method)
    qa, qb = make_queue(impl, ctx), make_queue(impl, ctx)
    try:
        a, _ = run_workers([(w_ping, (impl, qa, qb, duration, cpus[0])),
                            (w_pong, (impl, qa, qb, duration, cpus[1]))], TIMEOUT_S, ctx,
                           placement)
    finally:
        close_queue(impl, qa)
        close_queue(impl, qb)
    return a["p50_us"], a["p99_us"]


def big(impl: str, size: int) -> float:
    """Seconds from the put's start to the get's return of one array."""
    ctx = mp.get_context("fork")
    if impl in ("copy", "memcpy"):
        (r,) = run_workers([(w_copy, (size, impl == "copy"))], TIMEOUT_S, ctx)
        return r["t1"] - r["t0"]
    q = make_queue(impl, ctx, capacity=size + (16 << 20))
    try:
        res = run_workers([(w_big_put, (impl, q, size)), (w_big_get, (impl, q, size))],
                          TIMEOUT_S, ctx)
    finally:
        close_queue(impl, q)
    return res[1]["t1"] - res[0]["t0"]


def grid(impl: str, nprod: int, ncons: int, n: int, extra: list | None = None) -> float:
    """Items per second through one queue, nprod producers to ncons
    consumers.  For interlock, ``extra`` gets the run's side-lock counters
    (acquisitions, and contentions: acquisitions that found the lock held),
    so that the JSON says whether the curve bends at the locks."""
    ctx = mp.get_context("fork")
    q = make_queue(impl, ctx, capacity=4 << 20, maxsize=MAXSIZE)
    per = max(1, n // nprod)
    pbarrier = ctx.Barrier(nprod)
    jobs: list[tuple[Callable[..., dict], tuple]] = [
        (w_grid_put, (impl, q, per, i, pbarrier, ncons)) for i in range(nprod)]
    jobs += [(w_grid_get, (impl, q)) for _ in range(ncons)]
    try:
        res = run_workers(jobs, TIMEOUT_S, ctx)
        if impl == "interlock" and extra is not None:
            st = q._stats()
            extra.append({"side_locks": {
                side: {k: st[lock][k] for k in ("acquisitions", "contentions")}
                for side, lock in (("producers", "producer_lock"), ("consumers", "consumer_lock"))},
                "consumer_switches": {k: sum(r.get(k, 0) for r in res) for k in ("vcsw", "ivcsw")}})
    finally:
        close_queue(impl, q)
    got = sum(r.get("received", 0) for r in res)
    if got != per * nprod:
        raise BenchFailure(f"consumers received {got}, producers sent {per * nprod}")
    return got / _span(res)


def one_process(impl: str, n: int, _placement: list | None = None) -> float:
    """put() then get() of one tuple, n times, in this one process: the rate
    of one CPU doing both sides' work, the reference for the scaling rows
    (with far more processes than CPUs, the scheduler rarely runs a
    producer and a consumer side by side: scaling.md)."""
    ctx = mp.get_context("fork")
    q = make_queue(impl, ctx, capacity=4 << 20, maxsize=MAXSIZE)
    put, get = _ops(impl, q, 0)
    item = (0, "abc", 1.5)
    try:
        t0 = time.perf_counter()
        for _ in repeat(None, n):
            put(item)
            get()
        dt = time.perf_counter() - t0
    finally:
        close_queue(impl, q)
    return n / dt


# ---------------------------------------------------------------- the run

class NotApplicable(Exception):
    """This implementation has no way to do this case (a missing row)."""


class Runner:
    """Calibrate each (case, impl) once, then interleave the repeats."""

    def __init__(self, report: Report, args: Any) -> None:
        self.report, self.args = report, args
        self.target_s = 0.05 if args.quick else 0.3
        self.sized: dict[tuple[str, str], int] = {}

    def want(self, case: str) -> bool:
        return not self.args.only or any(o.lower() in case.lower() for o in self.args.only)

    def rate_case(self, case: str, unit: str, impls: tuple[str, ...],
                  fn: Callable[[str, int, list | None], float], n0: int,
                  nmax: int = 5_000_000, placement: bool = True) -> None:
        self.rate_cases([(case, fn)], unit, impls, n0, nmax, placement)

    def rate_cases(self, cases: list[tuple[str, Callable[[str, int, list | None], float]]],
                   unit: str, impls: tuple[str, ...], n0: int, nmax: int = 5_000_000,
                   placement: bool = True, target_s: float | None = None) -> None:
        """Cases that are the same transfer made differently (start methods):
        sized once, on the first case, and measured interleaved (each repeat
        runs every case and implementation once), so that a ratio between
        two of them compares measurements made moments apart."""
        cases = [(c, f) for c, f in cases if self.want(c)]
        if not cases:
            return
        sized: dict[str, int] = {}
        first_case, first_fn = cases[0]
        for impl in impls:
            why = why_missing(impl)
            if why:
                for c, _ in cases:
                    self.report.missing(c, impl, unit, why)
                continue
            try:
                rate = first_fn(impl, n0, None)   # calibration, and warm-up
            except Exception as e:  # a peer that cannot do the case, or a failure
                for c, _ in cases:
                    self.report.failed(c, impl, unit, f"{type(e).__name__}: {e}")
                continue
            sized[impl] = int(min(max(rate * (target_s or self.target_s), n0), nmax))
        for _ in range(self.args.repeat):
            for case, fn in cases:
                for impl, n in sized.items():
                    if self.report.row(case, impl, unit).get("error"):
                        continue
                    pl: list = []
                    try:
                        v = fn(impl, n, pl if placement else None)
                    except NotApplicable as e:
                        self.report.missing(case, impl, unit, str(e))
                        continue
                    except Exception as e:
                        self.report.failed(case, impl, unit, f"{type(e).__name__}: {e}")
                        continue
                    extra = (pl[0] if "side_locks" in pl[0] else {"placement": pl[0]}) if pl else {}
                    self.report.add(case, impl, unit, v, **extra)
            sys.stderr.write(".")
            sys.stderr.flush()

    def latency_cases(self, cases: list[tuple[str, Callable[[str, list | None],
                                                             tuple[float, float]]]],
                      impls: tuple[str, ...]) -> None:
        """Ping-pong cases, interleaved as in :meth:`rate_cases`."""
        cases = [(c, f) for c, f in cases if self.want(c)]
        live = []
        for impl in impls:
            why = why_missing(impl)
            if why:
                for case, _ in cases:
                    self.report.missing(case + ", p50", impl, "us", why)
                    self.report.missing(case + ", p99", impl, "us", why)
            else:
                live.append(impl)
        for _ in range(self.args.repeat):
            for case, fn in cases:
                c50, c99 = case + ", p50", case + ", p99"
                for impl in live:
                    if self.report.row(c50, impl, "us").get("error"):
                        continue
                    pl: list = []
                    try:
                        p50, p99 = fn(impl, pl)
                    except Exception as e:
                        self.report.failed(c50, impl, "us", f"{type(e).__name__}: {e}")
                        self.report.failed(c99, impl, "us", f"{type(e).__name__}: {e}")
                        continue
                    self.report.add(c50, impl, "us", p50, placement=pl[0] if pl else None)
                    self.report.add(c99, impl, "us", p99)
            sys.stderr.write(".")
            sys.stderr.flush()


def run(report: Report, args: Any) -> None:
    r = Runner(report, args)
    quick = args.quick
    duration = 0.1 if quick else 0.3
    cpus = sorted(os.sched_getaffinity(0))
    peers = [i for i in IMPLS if i != "interlock"]

    # 1. start methods: 64 B single and batch, ping-pong; the methods interleaved.
    for label, batch in (("put/get", 0), (f"put_many/get_many of {BATCH}", BATCH)):
        group = [(f"64 B bytes 1P->1C {label}, {m}",
                  lambda impl, n, pl, m=m, b=batch: stream(impl, m, n, "bytes", 64, b, pl))
                 for m in METHODS]
        # At least 0.5 s per run, even with --quick, and up to 20 M items: a
        # stream of small items is fast while the producer is ahead and
        # slower once the consumer catches up (queue.md, known limits); a
        # 50 ms run measured mostly the first phase.
        r.rate_cases(group, "msg/s", IMPLS, 20 * BATCH, nmax=20_000_000,
                     target_s=max(0.5, r.target_s))
        for m in METHODS:
            case = f"64 B bytes 1P->1C {label}, {m}"
            report.ratio_vs(case, "interlock", peers)
            if m != "fork":
                report.ratio(f"64 B 1P->1C {label}: {m} / fork", (case, "interlock"),
                             (f"64 B bytes 1P->1C {label}, fork", "interlock"),
                             (f"interlock, {m}", "interlock, fork"))
    same_cpu = f"ping-pong 64 B, both pinned to CPU {cpus[0]}, fork"
    r.latency_cases([(f"ping-pong 64 B, unpinned, {m}",
                      lambda impl, pl, m=m: pingpong(impl, m, duration, (None, None), pl))
                     for m in METHODS]
                    + [(same_cpu, lambda impl, pl: pingpong(impl, "fork", duration,
                                                            (cpus[0], cpus[0]), pl))], IMPLS)
    for m in METHODS:
        case = f"ping-pong 64 B, unpinned, {m}"
        report.ratio_vs(case + ", p50", "interlock", peers)
        if m != "fork":
            report.ratio(f"ping-pong p50 unpinned: {m} / fork", (case + ", p50", "interlock"),
                         ("ping-pong 64 B, unpinned, fork, p50", "interlock"),
                         (f"interlock, {m}", "interlock, fork"))
    report.ratio_vs(same_cpu + ", p50", "interlock", peers)

    # 2. item size: batch against single, per item.
    sizes = [("64 B bytes", "bytes", 64, BATCH), ("64 KiB bytes", "bytes", 64 << 10, 16)]
    if np is not None:
        sizes.append(("1 MiB numpy", "numpy", 1 << 20, 8))
    for label, kind, size, batch in sizes:
        single = f"{label} 1P->1C put/get, fork"
        many = f"{label} 1P->1C put_many/get_many of {batch}, fork"
        if size == 64:   # measured above, under fork
            single, many = "64 B bytes 1P->1C put/get, fork", (
                f"64 B bytes 1P->1C put_many/get_many of {BATCH}, fork")
        else:
            n0 = max(2 * batch, (4 << 20) // size * 4)
            # single and batched interleaved; mp.Queue has no batch API
            r.rate_cases([(single, lambda impl, n, pl, k=kind, s=size:
                           stream(impl, "fork", n, k, s, 0, pl)),
                          (many, lambda impl, n, pl, k=kind, s=size, b=batch:
                           stream(impl, "fork", n, k, s, b, pl))],
                         "items/s", IMPLS, n0)
            report.ratio_vs(single, "interlock", peers)
        report.ratio(f"{label}: put_many/get_many / put/get, per item", (many, "interlock"),
                     (single, "interlock"), ("interlock put_many/get_many", "interlock put/get"))

    # 3. a 256 MiB array against one copy of it.
    if np is not None:
        size = 256 << 20
        case = "256 MiB numpy array, put -> get in another process"
        if r.want(case):
            copy = "one copy into a fresh array (ndarray.copy)"
            memcpy = "one memcpy into touched memory (np.copyto)"
            impls = {"interlock": "interlock", "mp.Queue": "mp.Queue",
                     "faster-fifo": "faster-fifo", "copy": copy, "memcpy": memcpy}
            for impl, shown in impls.items():
                why = why_missing(impl)
                if why:
                    report.missing(case, shown, "s", why)
            big("interlock", 16 << 20)   # warm up
            for _ in range(args.repeat):
                for impl, shown in impls.items():
                    if why_missing(impl) or report.row(case, shown, "s").get("error"):
                        continue
                    try:
                        report.add(case, shown, "s", big(impl, size))
                    except Exception as e:
                        report.failed(case, shown, "s", f"{type(e).__name__}: {e}")
            # The goal: interlock's time < 1.5x one memcpy's, i.e. this ratio > 0.67.
            report.ratio("256 MiB: interlock against one memcpy", (case, "interlock"),
                         (case, memcpy), ("interlock", "np.copyto"))
            report.ratio("256 MiB: interlock against one copy to a fresh array",
                         (case, "interlock"), (case, copy), ("interlock", "ndarray.copy"))
            report.ratio_vs(case, "interlock", peers)
            sys.stderr.write(".")

    # 4. scaling: P x C through one queue of maxsize 10,000, and the rate of
    # one process doing both sides (where the curve tends: scaling.md).
    one = f"one process, put then get of tuples, maxsize {MAXSIZE}"
    r.rate_case(one, "msg/s", ("interlock",), one_process, 20_000, nmax=2_000_000,
                placement=False)   # (mp.Queue: each get waits for its feeder thread)
    for p in (1, 2, 8, 32):
        case = f"scaling {p}x{p}, tuples, maxsize {MAXSIZE}"
        r.rate_case(case, "msg/s", IMPLS,
                    lambda impl, n, pl, p=p: grid(impl, p, p, n, pl), 2_000 * p,
                    nmax=2_000_000)
        report.ratio_vs(case, "interlock", peers)
        report.ratio(f"scaling {p}x{p} against one process doing both sides", (case, "interlock"),
                     (one, "interlock"), (f"interlock {p}x{p}", "interlock, one process"))
    sys.stderr.write("\n")


def main() -> None:
    p = report_args(__doc__.split("\n")[0])
    p.add_argument("--only", metavar="SUBSTR", action="append", default=[],
                   help="run only cases whose name contains SUBSTR (repeatable)")
    args = p.parse_args()
    report = Report("bench_goals", args, {"methods": METHODS, "batch": BATCH, "maxsize": MAXSIZE})
    t = time.perf_counter()
    run(report, args)
    report.params["wall_s"] = round(time.perf_counter() - t, 1)
    report.print()
    report.write(args.json)
    if report.failures():
        print("\nFAILED:\n  " + "\n  ".join(report.failures()), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
