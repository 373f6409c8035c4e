"""What the benchmark scripts share: worker processes, medians, the table.

Every measurement runs in fresh processes made with ``fork`` (the same start
method for every implementation), which wait on a barrier and then time
themselves with ``time.perf_counter()`` (CLOCK_MONOTONIC: one clock for every
process on the machine).  A scenario's span is from the earliest start to the
latest end among its workers, so process creation is never timed.

Workers send their results back on a ``multiprocessing`` pipe, never through
the thing being measured.  A worker that does not finish within the time
limit is killed and the measurement is reported as FAILED: a queue that loses
a message leaves its consumer waiting forever, so losing messages shows up as
a failure, never as a fast number.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import wait
from typing import Any, Callable, Sequence

CTX = mp.get_context("fork")

#: Name of the reference implementation every ratio is taken against.
REFERENCE = "mp.Queue"


class BenchFailure(Exception):
    """A measurement that did not complete or did not verify."""


# ---------------------------------------------------------------- workers

def run_delay_ns() -> int:
    """Nanoseconds this thread has spent runnable but waiting for a CPU
    (second field of /proc/thread-self/schedstat; 0 if unavailable)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _worker_main(fn: Callable[..., dict[str, Any]], args: tuple[Any, ...],
                 barrier: Any, conn: Any) -> None:
    try:
        d0 = run_delay_ns()
        out = fn(barrier, *args)
        out["run_delay_s"] = (run_delay_ns() - d0) / 1e9
        conn.send(("ok", out))
    except BaseException:  # report everything, including KeyboardInterrupt
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def run_workers(jobs: Sequence[tuple[Callable[..., dict[str, Any]], tuple[Any, ...]]],
                timeout: float) -> list[dict[str, Any]]:
    """Run each ``fn(barrier, *args)`` in its own forked process.

    Each ``fn`` does its setup, calls ``barrier.wait()``, runs and times its
    loop, verifies what it can, and returns a dict (usually with ``t0`` and
    ``t1``).  Returns the dicts in job order; raises :class:`BenchFailure` if
    a worker raised, died, or did not finish within ``timeout`` seconds.
    """
    barrier = CTX.Barrier(len(jobs))
    procs, conns = [], []
    for fn, args in jobs:
        r, w = CTX.Pipe(duplex=False)
        p = CTX.Process(target=_worker_main, args=(fn, args, barrier, w), daemon=True)
        p.start()
        w.close()
        procs.append(p)
        conns.append(r)
    results: dict[int, Any] = {}
    errors: list[str] = []
    deadline = time.monotonic() + timeout
    pending = dict(enumerate(conns))
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for c in wait(list(pending.values()), timeout=left):
            i = next(k for k, v in pending.items() if v is c)
            del pending[i]
            try:
                status, payload = c.recv()
            except EOFError:
                errors.append(f"worker {i} died (exit code {procs[i].exitcode})")
                continue
            if status == "ok":
                results[i] = payload
            else:
                errors.append(f"worker {i} raised:\n{payload}")
    if pending:
        errors.append(f"workers {sorted(pending)} did not finish within {timeout:.0f} s "
                      "(lost messages or a hang)")
    for p in procs:
        p.join(0.5 if not pending else 0)
        if p.is_alive():
            p.terminate()
            p.join(1)
            if p.is_alive():
                p.kill()
                p.join()
    for c in conns:
        c.close()
    if errors:
        raise BenchFailure("; ".join(e.strip().splitlines()[-1] if "Traceback" in e else e
                                     for e in errors) + "\n" + "\n".join(errors))
    return [results[i] for i in range(len(jobs))]


def span(results: Sequence[dict[str, Any]]) -> float:
    """Seconds from the first worker's start to the last worker's end."""
    return max(r["t1"] for r in results) - min(r["t0"] for r in results)


def run_queue_share(results: Sequence[dict[str, Any]]) -> float:
    """Fraction of the workers' time spent runnable but not running (other
    processes had the CPUs): 0 on an idle machine.  Setup time included, so
    a rough gauge of how much the machine's load distorted the measurement."""
    total = sum(r["t1"] - r["t0"] for r in results if "t1" in r)
    if total <= 0:
        return 0.0
    return min(1.0, sum(r.get("run_delay_s", 0.0) for r in results) / total)


def pin(cpus: set[int] | None) -> None:
    """Restrict the calling process to ``cpus`` (None: leave as is)."""
    if cpus is not None:
        os.sched_setaffinity(0, cpus)


def percentile(sorted_xs: Sequence[float], q: float) -> float:
    if not sorted_xs:
        return float("nan")
    k = min(len(sorted_xs) - 1, max(0, round(q / 100 * (len(sorted_xs) - 1))))
    return sorted_xs[k]


# ---------------------------------------------------------------- results

@dataclass
class Row:
    """One (scenario, implementation) pair and its repeated measurements."""

    scenario: str
    impl: str
    kind: str                     # "rate" (higher is better) or "latency" (lower is better)
    unit: str = "msg/s"
    values: list[float] = field(default_factory=list)   # rate, or p50 in us
    p99: list[float] = field(default_factory=list)      # latency rows only
    n: list[int] = field(default_factory=list)          # messages / samples per repeat
    rq: list[float] = field(default_factory=list)       # run_queue_share() per repeat
    note: str = ""
    error: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def median_p99(self) -> float:
        return statistics.median(self.p99) if self.p99 else float("nan")

    @property
    def ok(self) -> bool:
        return bool(self.values) and not self.error


def speedup(row: Row, ref: Row | None) -> float | None:
    """How many times better than ``ref`` (> 1: row is faster)."""
    if ref is None or not row.ok or not ref.ok or row is ref:
        return None
    if row.kind == "rate":
        return row.median / ref.median
    return ref.median / row.median


def best_peer(rows: Sequence[Row], ours: str,
              candidates: Sequence[str] | None = None) -> Row | None:
    peers = [r for r in rows if r.ok and r.impl != ours
             and (candidates is None or r.impl in candidates)]
    if not peers:
        return None
    if peers[0].kind == "rate":
        return max(peers, key=lambda r: r.median)
    return min(peers, key=lambda r: r.median)


def _fmt_rate(v: float) -> str:
    if v != v:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e3:
        return f"{v / 1e3:.1f} k"
    return f"{v:.0f}"


def _fmt_x(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def print_table(rows: Sequence[Row], ours: str, reference: str = REFERENCE,
                file: Any = None) -> None:
    """Print rows grouped by scenario, with ratios against the reference and
    (for ``ours``) against the best other implementation of the same scenario."""
    file = file or sys.stdout
    header = ("scenario", "implementation", "result (median)", "spread", "vs " + reference,
              "vs best peer", "rq wait", "note")
    lines = [header]
    scenarios: list[str] = []
    for r in rows:
        if r.scenario not in scenarios:
            scenarios.append(r.scenario)
    for sc in scenarios:
        group = [r for r in rows if r.scenario == sc]
        ref = next((r for r in group if r.impl == reference), None)
        best = best_peer(group, ours)
        for r in group:
            if not r.ok:
                lines.append((sc, r.impl, "FAILED" if r.error else "skipped", "", "", "", "",
                              (r.error or r.note).splitlines()[0][:90]))
                continue
            if r.kind == "rate":
                res = f"{_fmt_rate(r.median)} {r.unit}"
                lo, hi = min(r.values), max(r.values)
                spread = f"{_fmt_rate(lo)}..{_fmt_rate(hi)}"
            else:
                res = f"p50 {r.median:.1f} / p99 {r.median_p99:.1f} us"
                spread = f"p50 {min(r.values):.1f}..{max(r.values):.1f}"
            vs_best = _fmt_x(speedup(r, best)) if r.impl == ours else ""
            rq = f"{statistics.median(r.rq):.0%}" if r.rq else ""
            lines.append((sc, r.impl, res, spread, _fmt_x(speedup(r, ref)) if r is not ref
                          else "1.00x", vs_best, rq, r.note))
        lines.append(None)  # type: ignore[arg-type]
    widths = [max(len(str(line[i])) for line in lines if line) for i in range(len(header))]
    sep = "  "
    for line in lines:
        if line is None:
            print(file=file)
            continue
        print(sep.join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip(), file=file)


def machine_info() -> dict[str, Any]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus_online": os.cpu_count(),
        "cpus_allowed": len(os.sched_getaffinity(0)),
        "loadavg": os.getloadavg(),
    }


def print_header(title: str, args: argparse.Namespace, file: Any = None) -> dict[str, Any]:
    info = machine_info()
    print(f"{title}: {info['date']}, Python {info['python']}, {info['cpu']}, "
          f"{info['cpus_allowed']} CPUs allowed, load average {info['loadavg'][0]:.2f}, "
          f"median of {args.repeat} repeat(s){' (quick)' if args.quick else ''}",
          file=file or sys.stdout)
    return info


def write_json(path: str, info: dict[str, Any], rows: Sequence[Row], ours: str,
               extra: dict[str, Any] | None = None, reference: str = REFERENCE,
               peers: Sequence[str] | None = None) -> None:
    out = {"machine": info, "rows": []}
    for sc in dict.fromkeys(r.scenario for r in rows):
        group = [r for r in rows if r.scenario == sc]
        ref = next((r for r in group if r.impl == reference), None)
        best = best_peer(group, ours, peers)
        for r in group:
            d = asdict(r)
            d["median"] = r.median if r.ok else None
            d["median_p99"] = r.median_p99 if r.p99 else None
            d["vs_reference"] = speedup(r, ref)
            d["vs_best_peer"] = speedup(r, best) if r.impl == ours else None
            out["rows"].append(d)
    if extra:
        out.update(extra)
    with open(path, "w") as f:
        json.dump(out, f, indent=1, default=float)


def arg_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 repeat (unless --repeat), short runs")
    p.add_argument("--repeat", type=int, default=None,
                   help="repeats per measurement; the table shows the median (default 5, quick 1)")
    p.add_argument("--json", metavar="PATH", help="also write every measurement to this file")
    p.add_argument("--only", metavar="SUBSTR", action="append", default=[],
                   help="run only scenarios whose name contains SUBSTR (repeatable)")
    return p


def finish_args(args: argparse.Namespace) -> argparse.Namespace:
    if args.repeat is None:
        args.repeat = 1 if args.quick else 5
    if args.repeat < 1:
        raise SystemExit("--repeat must be >= 1")
    return args
