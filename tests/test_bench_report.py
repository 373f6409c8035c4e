"""scripts/bench_report.py: tables generated from benchmarks/results/*.json.

The README's and benchmarks/README.md's benchmark tables are generated from
the committed JSON; ``--check`` fails when a table was edited by hand or the
JSON changed without regenerating them.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "bench_report.py"


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("bench_report", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _doc() -> dict[str, Any]:
    return {
        "benchmark": "bench_demo", "commit": "0123456789abcdef-dirty", "date": "2026-01-01",
        "machine": {"cpu": "CPU", "nproc": 2, "kernel": "6.1", "python": "3.11",
                    "loadavg_start": [9.5, 0, 0], "loadavg_end": [10.25, 0, 0]},
        "params": {"repeat": 3, "quick": True},
        "rows": [
            {"case": "c1", "impl": "interlock", "unit": "msg/s", "samples": [1e6, 2e6, 3e6],
             "median": 2e6, "min": 1e6, "max": 3e6},
            {"case": "c1", "impl": "faster-fifo", "unit": "msg/s", "samples": [],
             "median": None, "min": None, "max": None, "missing": "not installed"},
        ],
        "ratios": [{"case": "c1", "num": "interlock", "den": "mp.Queue",
                    "samples": [1.5, 2.0, 4.0], "median": 2.0, "min": 1.5, "max": 4.0}],
    }


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    res = tmp_path / "results"
    res.mkdir()
    (res / "bench_demo.json").write_text(json.dumps(_doc()))
    md = tmp_path / "doc.md"
    md.write_text("intro\n<!-- bench:demo -->\nhand-written 5 M/s\n<!-- /bench:demo -->\n"
                  "mid\n<!-- bench:demo:ratios -->\n<!-- /bench:demo -->\nend\n")
    return res, md


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=60)


def test_cells_are_median_min_max_and_missing_peers_are_shown(tmp_path: Path) -> None:
    res, md = _setup(tmp_path)
    assert _run("--results", str(res), str(md)).returncode == 0
    text = md.read_text()
    assert "hand-written" not in text
    assert "| c1 | interlock | 2 M [1 M-3 M] msg/s |" in text
    assert "|  | faster-fifo | missing: not installed |" in text
    assert "| c1 | interlock vs mp.Queue | 2.00x [1.50-4.00] |" in text
    assert "load average 9.50 at the start and 10.25 at the end" in text
    assert text.startswith("intro\n") and text.endswith("end\n") and "\nmid\n" in text
    # The ratios-only block holds the ratio table and not the rows.
    ratios_block = text.split("<!-- bench:demo:ratios -->")[1]
    assert "2.00x [1.50-4.00]" in ratios_block and "msg/s" not in ratios_block


def test_check_fails_on_drift_and_passes_once_regenerated(tmp_path: Path) -> None:
    res, md = _setup(tmp_path)
    r = _run("--check", "--results", str(res), str(md))
    assert r.returncode == 1 and "hand-written" in r.stdout
    assert "hand-written" in md.read_text()          # --check changes nothing
    assert _run("--results", str(res), str(md)).returncode == 0
    assert _run("--check", "--results", str(res), str(md)).returncode == 0
    # A hand edit of a generated cell is caught.
    md.write_text(md.read_text().replace("2 M [1 M-3 M]", "3 M [1 M-3 M]"))
    assert _run("--check", "--results", str(res), str(md)).returncode == 1


def test_ratios_are_computed_per_repeat_pair() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from _common import Report
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    r = Report("bench_t")
    for a, b in ((10.0, 5.0), (30.0, 10.0), (8.0, 8.0)):
        r.add("rate", "ours", "msg/s", a)
        r.add("rate", "peer", "msg/s", b)
        r.add("time", "ours", "ns", b)       # lower is better: den / num
        r.add("time", "peer", "ns", a)
    r.ratio_vs("rate", "ours", ["peer", "absent"])
    r.ratio_vs("time", "ours", ["peer"])
    r.missing("rate", "absent", "msg/s", "not installed")
    doc = r.document()
    q = {(x["case"], x["den"]): x for x in doc["ratios"]}
    assert q[("rate", "peer")]["samples"] == [2.0, 3.0, 1.0]
    assert q[("rate", "peer")]["median"] == 2.0       # not 16 / 8 (ratio of medians) = 2 by luck
    assert q[("rate", "peer")]["min"] == 1.0 and q[("rate", "peer")]["max"] == 3.0
    assert q[("time", "peer")]["samples"] == [2.0, 3.0, 1.0]
    assert q[("rate", "absent")]["missing"] == "not installed"
    assert doc["commit"] and doc["machine"]["nproc"] == os.cpu_count()
    assert {"loadavg_start", "loadavg_end", "cpu", "kernel", "python",
            "openblas_num_threads"} <= set(doc["machine"])


def test_committed_tables_match_the_committed_json() -> None:
    r = _run("--check")
    assert r.returncode == 0, r.stdout + r.stderr
    # and there is something to check: the READMEs carry generated tables
    mod = _load()
    for doc in mod.DOCS:
        assert mod.MARKER.search((ROOT / doc).read_text()), doc
