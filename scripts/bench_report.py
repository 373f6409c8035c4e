#!/usr/bin/env python3
"""Regenerate the benchmark tables of README.md and benchmarks/README.md
from the JSON documents in benchmarks/results/.

    python scripts/bench_report.py            # rewrite the tables in place
    python scripts/bench_report.py --check    # exit 1 if a table differs from the JSON

A table sits between marker comments, and everything between them is
replaced:

    <!-- bench:NAME -->          measurements and ratios of results/bench_NAME.json
    <!-- bench:NAME:ratios -->   its ratios only
    <!-- bench:NAME:machine -->  one line: date, commit, machine, load average
    ...
    <!-- /bench:NAME -->         (the same closing marker for each form)

Every cell is "median [min-max]" of the repeats (benchmarks/_common.py,
``Report``); a ratio is oriented as a speed-up: > 1 means the first named
did better.  A peer that was missing or failed is shown as such.
"""
from __future__ import annotations

import argparse
import difflib
import glob
import json
import os
import re
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from _common import fmt_cell  # noqa: E402

DOCS = ("README.md", os.path.join("benchmarks", "README.md"))
MARKER = re.compile(r"<!-- bench:([A-Za-z0-9_]+)(?::(ratios|machine))? -->\n(.*?)"
                    r"<!-- /bench:\1 -->", re.S)


def load(results_dir: str) -> dict[str, dict[str, Any]]:
    docs = {}
    for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
        with open(path) as f:
            doc = json.load(f)
        name = doc["benchmark"].removeprefix("bench_")
        docs[name] = doc
    return docs


def _esc(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _why(r: dict[str, Any]) -> str:
    if r.get("missing"):
        return "missing: " + _esc(r["missing"].splitlines()[0])
    if r.get("error"):
        return "FAILED: " + _esc(r["error"].splitlines()[0])[:120]
    return "-"


def machine_line(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    la0, la1 = m["loadavg_start"][0], m["loadavg_end"][0]
    return (f"{doc['benchmark']}: {doc['date']}, commit `{doc['commit'][:12]}"
            f"{'-dirty' if doc['commit'].endswith('-dirty') else ''}`, {m['cpu']}, "
            f"{m['nproc']} CPUs, Linux {m['kernel']}, Python {m['python']}, "
            f"load average {la0:.2f} at the start and {la1:.2f} at the end; "
            f"{doc['params'].get('repeat', '?')} repeats"
            f"{' (--quick)' if doc['params'].get('quick') else ''}.")


def rows_table(doc: dict[str, Any]) -> str:
    out = ["| case | implementation | median [min-max] |", "|---|---|---|"]
    last = None
    for r in doc["rows"]:
        cell = (fmt_cell(r["median"], r["min"], r["max"], r["unit"])
                if r.get("samples") and not r.get("error") else _why(r))
        out.append(f"| {_esc(r['case']) if r['case'] != last else ''} | {_esc(r['impl'])} "
                   f"| {cell} |")
        last = r["case"]
    return "\n".join(out) + "\n"


def ratios_table(doc: dict[str, Any]) -> str:
    out = ["| case | ratio (> 1: the first did better) | median [min-max] |", "|---|---|---|"]
    last = None
    for q in doc["ratios"]:
        cell = (fmt_cell(q["median"], q["min"], q["max"], "x") if q.get("samples")
                and not q.get("missing") else "missing: " + _esc(q.get("missing", "no samples")))
        out.append(f"| {_esc(q['case']) if q['case'] != last else ''} | "
                   f"{_esc(q['num'])} vs {_esc(q['den'])} | {cell} |")
        last = q["case"]
    return "\n".join(out) + "\n"


def render(name: str, form: str | None, docs: dict[str, dict[str, Any]]) -> str:
    doc = docs.get(name)
    if doc is None:
        return (f"(no benchmarks/results/bench_{name}.json: run "
                f"`python benchmarks/run_all.py`)\n")
    if form == "machine":
        return machine_line(doc) + "\n"
    if form == "ratios":
        return ratios_table(doc)
    return machine_line(doc) + "\n\n" + rows_table(doc) + "\n" + ratios_table(doc)


def regenerate(text: str, docs: dict[str, dict[str, Any]]) -> str:
    def sub(m: re.Match[str]) -> str:
        name, form = m.group(1), m.group(2)
        head = f"<!-- bench:{name}{':' + form if form else ''} -->\n"
        return head + render(name, form, docs) + f"<!-- /bench:{name} -->"
    return MARKER.sub(sub, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="change nothing; exit 1 if a table differs from what the JSON gives")
    ap.add_argument("--results", default=os.path.join(ROOT, "benchmarks", "results"))
    ap.add_argument("files", nargs="*", help=f"documents to process (default: {', '.join(DOCS)})")
    args = ap.parse_args(argv)
    docs = load(args.results)
    files = args.files or [os.path.join(ROOT, d) for d in DOCS]
    stale = []
    for path in files:
        with open(path) as f:
            old = f.read()
        new = regenerate(old, docs)
        if new == old:
            continue
        if args.check:
            stale.append(path)
            sys.stdout.writelines(difflib.unified_diff(
                old.splitlines(True), new.splitlines(True), path, path + " (from the JSON)"))
        else:
            with open(path, "w") as f:
                f.write(new)
            print(f"updated {os.path.relpath(path)}")
    if stale:
        print(f"\n{len(stale)} file(s) differ from benchmarks/results/*.json: "
              "run python scripts/bench_report.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
