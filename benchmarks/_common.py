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
import subprocess
import statistics
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import wait
from typing import Any, Callable, Sequence

CTX = mp.get_context("fork")

# numpy's OpenBLAS starts a thread per CPU when numpy is imported, and those
# threads poll for work for a while before they go to sleep.  No benchmark
# here calls BLAS, but a worker started with spawn or forkserver imports its
# benchmark module, numpy with it, and on 2 CPUs shares them with those
# threads while it is measured: bench_goals' 64 B put_many/get_many under
# spawn read 17.4 M/s against 30.1 M/s under fork (a fork child has no such
# threads).  A probe of 0.1 s runs under spawn: 20.7-23.7 M/s with numpy
# imported, 26.2-30.9 M/s with OPENBLAS_NUM_THREADS=1 too, 30.4-31.0 M/s
# under fork; runs of 1 s, 29.6-30.7 M/s with numpy imported: the threads
# go to sleep after a while.  Set before a benchmark imports numpy (every
# script imports this module first); child processes inherit it.  The JSON
# records it (machine.openblas_num_threads).
BLAS_ENV = "OPENBLAS_NUM_THREADS"
os.environ.setdefault(BLAS_ENV, "1")

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


def last_cpu(pid: int) -> int | None:
    """The CPU ``pid`` last ran on (field 39, ``processor``, of
    /proc/<pid>/stat; None if the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(b")") + 2:].split()
    try:
        return int(fields[39 - 3])
    except (IndexError, ValueError):
        return None


def placement_summary(samples: Sequence[Sequence[int | None]],
                      depths: Sequence[int] | None = None) -> dict[str, Any]:
    """Summarise samples of (CPU of worker 0, CPU of worker 1, ...) taken
    during a run: the CPUs each worker was seen on (CPU -> count), and the
    share of samples in which every worker sat on one and the same CPU.

    ``depths``: the queue's length (items put and not yet taken) sampled
    while the workers ran their timed loops, if the run gave a way to read
    it; summarised as ``depth`` (median, min, max, samples).  A 1P->1C
    stream runs in one of two phases that this tells apart: the consumer
    right behind the producer (depth near 0) or far behind
    (docs/design/queue.md, "How far behind the consumer runs")."""
    full = [s for s in samples if all(c is not None for c in s)]
    nworkers = len(samples[0]) if samples else 0
    per_worker: list[dict[str, int]] = [{} for _ in range(nworkers)]
    for s in full:
        for i, c in enumerate(s):
            per_worker[i][str(c)] = per_worker[i].get(str(c), 0) + 1
    same = sum(1 for s in full if len(set(s)) == 1)
    out: dict[str, Any] = {"samples": len(full), "cpus_seen": per_worker[:8],
                           "same_cpu_share": same / len(full) if full else None}
    if depths:
        out["depth"] = {"median": statistics.median(depths), "min": min(depths),
                        "max": max(depths), "samples": len(depths)}
    return out


def run_workers(jobs: Sequence[tuple[Callable[..., dict[str, Any]], tuple[Any, ...]]],
                timeout: float, ctx: Any = None,
                placement: list[dict[str, Any]] | None = None,
                depth: Callable[[], int] | None = None) -> list[dict[str, Any]]:
    """Run each ``fn(barrier, *args)`` in its own process (``ctx``: a
    multiprocessing context, fork unless given).

    If ``placement`` is a list, the CPU each worker last ran on is sampled
    (every ~5 ms, from /proc/<pid>/stat) while they run, and a summary
    (:func:`placement_summary`) is appended to it; with ``depth`` (a queue's
    ``qsize``, called in this process), the queue's length is sampled at the
    same moments and summarised there too.

    Each ``fn`` does its setup, calls ``barrier.wait()``, runs and times its
    loop, verifies what it can, and returns a dict (usually with ``t0`` and
    ``t1``).  Returns the dicts in job order; raises :class:`BenchFailure` if
    a worker raised, died, or did not finish within ``timeout`` seconds.
    """
    ctx = ctx or CTX
    barrier = ctx.Barrier(len(jobs))
    procs, conns = [], []
    for fn, args in jobs:
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_worker_main, args=(fn, args, barrier, w), daemon=True)
        p.start()
        w.close()
        procs.append(p)
        conns.append(r)
    results: dict[int, Any] = {}
    errors: list[str] = []
    deadline = time.monotonic() + timeout
    pending = dict(enumerate(conns))
    samples: list[tuple[int | None, ...]] = []
    depths: list[tuple[float, int]] = []   # (perf_counter, depth)
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if placement is not None:
            if len(pending) == len(conns):   # nobody has finished: all are running
                samples.append(tuple(last_cpu(p.pid) for p in procs))  # type: ignore[arg-type]
                if depth is not None:
                    try:
                        depths.append((time.perf_counter(), int(depth())))
                    except Exception:  # (a peer's qsize that cannot answer)
                        depth = None
            left = min(left, 0.005)
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
    if placement is not None:
        # the depth while every worker was in its timed loop (the workers'
        # t0 and t1 are perf_counter readings too: CLOCK_MONOTONIC, one
        # clock for all processes), not during their setup
        got = [results[i] for i in sorted(results)]
        lo = max((r["t0"] for r in got if "t0" in r), default=float("-inf"))
        hi = min((r["t1"] for r in got if "t1" in r), default=float("inf"))
        placement.append(placement_summary(samples, [d for t, d in depths if lo <= t <= hi]))
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
    p.add_argument("--quick", action="store_true", help="short runs (the same --repeat)")
    p.add_argument("--repeat", type=int, default=5,
                   help="repeats per measurement; the median and [min-max] are shown (default 5)")
    p.add_argument("--json", metavar="PATH",
                   help="write the JSON document (see benchmarks/README.md) to this file")
    p.add_argument("--only", metavar="SUBSTR", action="append", default=[],
                   help="run only scenarios whose name contains SUBSTR (repeatable)")
    return p


def finish_args(args: argparse.Namespace) -> argparse.Namespace:
    if args.repeat < 1:
        raise SystemExit("--repeat must be >= 1")
    return args


# ================================================================ the shared report
#
# Every bench_*.py writes one JSON document of this shape (see
# benchmarks/README.md, "The JSON"), from which scripts/bench_report.py
# makes the tables of README.md and benchmarks/README.md:
#
#   {"benchmark", "commit", "date", "machine", "params",
#    "rows":   [{"case", "impl", "unit", "better", "samples", "median", "min", "max", ...}],
#    "ratios": [{"case", "num", "den", "samples", "median", "min", "max"}]}
#
# One statistic everywhere: a row's ``samples`` are its repeats (one value
# per repeat, the implementations' repeats interleaved), shown as the median
# and [min-max].  A ratio is computed per repeat (repeat i of ``num`` against
# repeat i of ``den``, measured moments apart) and shown the same way; it is
# always oriented as a speed-up, > 1 meaning ``num`` did better: num / den for
# a rate ("higher" is better), den / num for a time ("lower" is better).


def git_commit() -> str:
    """``git rev-parse HEAD`` of the checkout, + "-dirty" if it has changes
    other than the run's own outputs (the JSON under ``benchmarks/results/``
    and the tables in the two READMEs, which ``run_all.py`` rewrites as it
    goes: the code measured is still the commit's)."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                              text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ":(top)", ":(exclude,top)benchmarks/results",
                                ":(exclude,top)README.md", ":(exclude,top)benchmarks/README.md"],
                               cwd=here, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("-dirty" if dirty else "")


def machine_snapshot() -> dict[str, Any]:
    """What the JSON records about the machine (the load average at the start;
    :meth:`Report.write` adds the one at the end)."""
    info = machine_info()
    return {"cpu": info["cpu"], "nproc": info["cpus_online"],
            "cpus_allowed": info["cpus_allowed"], "kernel": platform.release(),
            "python": info["python"], "platform": info["platform"],
            BLAS_ENV.lower(): os.environ.get(BLAS_ENV),
            "dev_shm": dev_shm_mount(),
            "loadavg_start": list(info["loadavg"])}


def dev_shm_mount() -> str | None:
    """The mount options of /dev/shm, where interlock's segments and spill
    files live: ``huge=`` among them changes what a fresh file costs
    (docs/design/spill.md, "Fresh pages")."""
    try:
        with open("/proc/self/mounts") as f:
            found = [line.split()[3] for line in f if line.split()[1:2] == ["/dev/shm"]]
    except OSError:
        return None
    return found[-1] if found else None  # the last mount over it is the one seen


def _better(unit: str) -> str:
    return "lower" if unit in ("ns", "us", "ms", "s", "ns/op", "us/op", "s/op") else "higher"


def summary(samples: Sequence[float]) -> dict[str, float | None]:
    if not samples:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


class Report:
    """Collects one benchmark's measurements and writes the JSON document.

    ``add(case, impl, unit, value)`` once per repeat; ``missing()`` for a
    peer that is not installed or cannot do the case (the row is kept, with
    no samples, so that the table says so); ``failed()`` for a measurement
    that did not complete.  ``ratio()`` declares a ratio between two rows,
    computed per repeat when the document is written.
    """

    def __init__(self, benchmark: str, args: argparse.Namespace | None = None,
                 params: dict[str, Any] | None = None) -> None:
        self.benchmark = benchmark
        self.date = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.commit = git_commit()
        self.machine = machine_snapshot()
        self.params: dict[str, Any] = dict(params or {})
        if args is not None:
            self.params.update({k: v for k, v in vars(args).items() if k != "json"})
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self._ratios: list[tuple[str, tuple[str, str], tuple[str, str],
                               tuple[str, str] | None]] = []

    def row(self, case: str, impl: str, unit: str, better: str | None = None) -> dict[str, Any]:
        key = (case, impl)
        if key not in self.rows:
            self.rows[key] = {"case": case, "impl": impl, "unit": unit,
                              "better": better or _better(unit), "samples": []}
        return self.rows[key]

    def add(self, case: str, impl: str, unit: str, value: float,
            better: str | None = None, **extra: Any) -> None:
        """One repeat's value; ``extra`` items are appended to lists of the
        same name in the row (one entry per repeat: placement, p99, ...)."""
        r = self.row(case, impl, unit, better)
        r["samples"].append(float(value))
        for k, v in extra.items():
            r.setdefault(k, []).append(v)

    def missing(self, case: str, impl: str, unit: str, why: str) -> None:
        self.row(case, impl, unit)["missing"] = why

    def failed(self, case: str, impl: str, unit: str, error: str) -> None:
        self.row(case, impl, unit)["error"] = error

    def ratio(self, case: str, num: tuple[str, str], den: tuple[str, str],
              labels: tuple[str, str] | None = None) -> None:
        """Declare the ratio ``num`` over ``den``, each a (case, impl) row;
        ``labels`` name them in the table (default: the impl, with its case
        if that is not ``case``)."""
        self._ratios.append((case, num, den, labels))

    def ratio_vs(self, case: str, ours: str, peers: Sequence[str]) -> None:
        for p in peers:
            self.ratio(case, (case, ours), (case, p))

    def compute_ratios(self) -> list[dict[str, Any]]:
        out = []
        for case, num, den, labels in self._ratios:
            a, b = self.rows.get(num), self.rows.get(den)
            if a is None and b is None:
                continue   # neither case was run (--only)
            if labels is None:
                labels = (f"{num[1]} @ {num[0]}" if num[0] != case else num[1],
                          f"{den[1]} @ {den[0]}" if den[0] != case else den[1])
            d: dict[str, Any] = {"case": case, "num": labels[0], "den": labels[1],
                                 "num_row": list(num), "den_row": list(den)}
            if a is None or b is None or not a["samples"] or not b["samples"]:
                gone = [r for r in (a, b) if r is None or not r["samples"]]
                d["samples"] = []
                d["missing"] = "; ".join(
                    (r.get("missing") or r.get("error") or "no samples").splitlines()[0]
                    if r is not None else "not measured" for r in gone)
            else:
                lower = a["better"] == "lower"
                pairs = zip(a["samples"], b["samples"])
                d["samples"] = [(y / x if lower else x / y) if x and y else float("nan")
                                for x, y in pairs]
            d.update(summary(d["samples"]))
            out.append(d)
        return out

    def document(self) -> dict[str, Any]:
        machine = dict(self.machine)
        machine["loadavg_end"] = list(os.getloadavg())
        rows = []
        for r in self.rows.values():
            r = dict(r)
            r.update(summary(r["samples"]))
            rows.append(r)
        return {"benchmark": self.benchmark, "commit": self.commit, "date": self.date,
                "machine": machine, "params": self.params, "rows": rows,
                "ratios": self.compute_ratios()}

    def write(self, path: str | None) -> dict[str, Any]:
        doc = self.document()
        if path:
            d = os.path.dirname(path)
            if d:
                os.makedirs(d, exist_ok=True)
            with open(path, "w") as f:
                json.dump(doc, f, indent=1, default=float)
                f.write("\n")
        return doc

    def print(self, file: Any = None) -> None:
        """A plain-text table of the rows and ratios (the same statistic)."""
        file = file or sys.stdout
        doc = self.document()
        print(f"{self.benchmark}: {doc['date']}, commit {doc['commit'][:12]}, "
              f"{doc['machine']['cpu']}, {doc['machine']['nproc']} CPUs, load average "
              f"{doc['machine']['loadavg_start'][0]:.2f} -> "
              f"{doc['machine']['loadavg_end'][0]:.2f}", file=file)
        lines = [("case", "impl", "median [min-max]", "n")]
        for r in doc["rows"]:
            if r.get("missing") or r.get("error"):
                why = ("missing: " + r["missing"]) if r.get("missing") else (
                    "FAILED: " + r["error"].splitlines()[0])
                lines.append((r["case"], r["impl"], why[:100], ""))
                continue
            lines.append((r["case"], r["impl"], fmt_cell(r["median"], r["min"], r["max"],
                                                         r["unit"]), str(len(r["samples"]))))
        for q in doc["ratios"]:
            cell = ("missing: " + q["missing"][:80]) if q.get("missing") else fmt_cell(
                q["median"], q["min"], q["max"], "x")
            lines.append((q["case"], f"{q['num']} / {q['den']}", cell, str(len(q["samples"]))))
        widths = [max(len(x[i]) for x in lines) for i in range(4)]
        for x in lines:
            print("  ".join(c.ljust(w) for c, w in zip(x, widths)).rstrip(), file=file)

    def failures(self) -> list[str]:
        return [f"{r['case']} / {r['impl']}: {r['error']}" for r in self.rows.values()
                if r.get("error")]


def fmt_num(v: float) -> str:
    """Three significant digits, with k / M / G for large values."""
    if v != v:
        return "nan"
    a = abs(v)
    for scale, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if a >= scale:
            return f"{v / scale:.3g}{suffix}"
    if a >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def fmt_cell(median: float | None, lo: float | None, hi: float | None, unit: str) -> str:
    """"median [min-max] unit" (the format of every cell of every table)."""
    if median is None or lo is None or hi is None:
        return "-"
    if unit == "x":
        return f"{median:.2f}x [{lo:.2f}-{hi:.2f}]"
    return f"{fmt_num(median)} [{fmt_num(lo)}-{fmt_num(hi)}] {unit}".replace("  ", " ")


def report_args(description: str, quick_help: str = "short runs (the same --repeat)"
                ) -> argparse.ArgumentParser:
    """The options every bench_*.py takes: --repeat N (default 5), --json PATH, --quick."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--repeat", type=int, default=5,
                   help="repeats per measurement (the median and [min-max] are shown; default 5)")
    p.add_argument("--json", metavar="PATH", help="write the JSON document here")
    p.add_argument("--quick", action="store_true", help=quick_help)
    return p


def rows_to_report(report: Report, rows: Sequence[Row], ours: Sequence[str],
                   peers: Sequence[str]) -> None:
    """Fill ``report`` from the :class:`Row` lists of bench_queue / bench_lock
    (a latency row gives a "p50" and a "p99" case), with the ratio of each
    of ``ours`` against each of ``peers`` in every case where both appear."""
    for r in rows:
        cases = [(r.scenario, r.values)] if r.kind == "rate" else [
            (r.scenario + ", p50", r.values), (r.scenario + ", p99", r.p99)]
        if r.kind == "latency" and not r.p99:
            cases = [(r.scenario, r.values)]
        for case, values in cases:
            row = report.row(case, r.impl, r.unit, "higher" if r.kind == "rate" else "lower")
            row["samples"].extend(float(v) for v in values)
            if r.rq:
                row["rq_wait"] = list(r.rq)
            if r.note and r.ok:
                row["note"] = r.note
            if r.error:
                row["error"] = r.error
            elif not r.ok:
                row["missing"] = r.note or "not measured"
    impls_by_case: dict[str, list[str]] = {}
    for (case, impl) in report.rows:
        impls_by_case.setdefault(case, []).append(impl)
    for case, impls in impls_by_case.items():
        for o in ours:
            if o in impls:
                report.ratio_vs(case, o, [p for p in peers if p in impls])
