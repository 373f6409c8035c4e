"""benchmarks/_common.py: what the benchmark scripts record beside a rate.

The queue's depth, sampled while a 1P->1C stream runs, tells which mode a
run fell into (docs/design/queue.md, "How far behind the consumer runs");
these tests check that it is recorded, and only for the timed loop.
"""
from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

import interlock

ROOT = Path(__file__).resolve().parent.parent


def _common() -> Any:
    spec = importlib.util.spec_from_file_location("_bench_common", ROOT / "benchmarks" / "_common.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("_bench_common", mod)
    spec.loader.exec_module(mod)
    return mod


def test_placement_summary_records_the_depth_only_when_sampled() -> None:
    c = _common()
    s = c.placement_summary([(0, 1), (1, 1), (0, None)], [5, 0, 7, 3])
    assert s["samples"] == 2            # the sample with a vanished worker is left out
    assert s["same_cpu_share"] == 0.5
    assert s["depth"] == {"median": 4.0, "min": 0, "max": 7, "samples": 4}
    assert "depth" not in c.placement_summary([(0, 1)])
    assert "depth" not in c.placement_summary([(0, 1)], [])


# module level: the workers run in fork children of run_workers
def _slow_producer(barrier: Any, q: Any, n: int) -> dict:
    barrier.wait()
    t0 = time.perf_counter()
    for i in range(n):
        q.put(i)
        time.sleep(0.002)
    t1 = time.perf_counter()
    return {"t0": t0, "t1": t1}


def _late_consumer(barrier: Any, q: Any, n: int) -> dict:
    barrier.wait()
    t0 = time.perf_counter()
    time.sleep(0.15)     # the producer runs ahead: the depth grows
    got = [q.get(timeout=10) for _ in range(n)]
    t1 = time.perf_counter()
    assert got == list(range(n))
    return {"t0": t0, "t1": t1}


def test_run_workers_samples_the_depth_of_the_queue_while_they_run() -> None:
    c = _common()
    q = interlock.Queue()
    try:
        placement: list = []
        res = c.run_workers([(_slow_producer, (q, 100)), (_late_consumer, (q, 100))], 30,
                            placement=placement, depth=q.qsize)
        assert len(res) == 2 and len(placement) == 1
        d = placement[0]["depth"]
        # sampled every ~5 ms through a run of >= 0.2 s: the producer was
        # dozens of items ahead while the consumer slept, and every sample
        # lies within what was ever in the queue
        assert d["samples"] >= 10
        assert 10 <= d["max"] <= 100
        assert 0 <= d["min"] <= d["median"] <= d["max"]
    finally:
        q.detach()
