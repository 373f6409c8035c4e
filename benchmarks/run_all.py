#!/usr/bin/env python3
"""Run every benchmark, write its JSON to benchmarks/results/, regenerate the tables.

    python benchmarks/run_all.py --quick --repeat 5     # the committed run (a few minutes)
    python benchmarks/run_all.py                        # full-length runs

Each bench_*.py is run in turn (never two at once) as
``bench_X.py [--quick] --repeat N --json benchmarks/results/bench_X.json``;
then ``scripts/bench_report.py`` rewrites the tables of README.md and
benchmarks/README.md from the JSON.  A benchmark that fails keeps its
previous JSON and is named at the end (exit status 1).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BENCHES = ["bench_goals", "bench_queue", "bench_lock", "bench_sync", "bench_pipeline",
           "bench_deadlock", "bench_registry", "bench_redis", "bench_spill"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", action="append", default=[], help="bench_X names to run")
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    os.makedirs(args.results, exist_ok=True)
    failed = []
    for b in BENCHES:
        if args.only and b not in args.only:
            continue
        out = os.path.join(args.results, b + ".json")
        tmp = out + ".tmp"
        cmd = [sys.executable, os.path.join(HERE, b + ".py"), "--repeat", str(args.repeat),
               "--json", tmp] + (["--quick"] if args.quick else [])
        print(f"== {b}: {' '.join(cmd[1:])}", flush=True)
        t = time.monotonic()
        rc = subprocess.call(cmd, cwd=ROOT)
        print(f"== {b}: exit {rc} after {time.monotonic() - t:.0f} s", flush=True)
        if os.path.exists(tmp):
            os.replace(tmp, out)   # a run with FAILED rows is kept: the tables say so
        if rc != 0:
            failed.append(b)
    rc = subprocess.call([sys.executable, os.path.join(ROOT, "scripts", "bench_report.py"),
                          "--results", args.results])
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed or rc else 0


if __name__ == "__main__":
    sys.exit(main())
