"""N producers x M consumers across processes: every item exactly once, and
each producer's items in the order it put them.

Small capacities and maxsizes make producers block often (and the ring
wrap many times), which is where lost wake-ups and torn records would show.

Order claim: the queue is FIFO, so any one consumer takes the items of any
one producer in increasing order (it cannot overtake itself); across
consumers nothing can be said about order.
"""
from __future__ import annotations

import collections

import pytest

import _helpers as h


def run_mpmc(ctx, q, nprod: int, ncons: int, n: int, tmp_path, *, batches: bool = False,
             use_many: bool = False, as_tuple: bool = False):
    rec = h.Record(tmp_path / "rec", max(nprod, ncons), nprod * n, create=True)
    prec = h.Record(tmp_path / "prec", nprod, 1, create=True)
    cons = [ctx.Process(target=h.consumer, args=(q, j, rec, use_many)) for j in range(ncons)]
    if batches:
        prods = [ctx.Process(target=h.producer_batches, args=(q, i, n, prec)) for i in range(nprod)]
    else:
        prods = [ctx.Process(target=h.producer, args=(q, i, n, prec),
                             kwargs=dict(as_tuple=as_tuple)) for i in range(nprod)]
    for p in cons + prods:
        p.start()
    for p in prods:
        p.join(90)
        assert p.exitcode == 0, f"producer exit code {p.exitcode}"
    q.shutdown()
    for p in cons:
        p.join(90)
        assert p.exitcode == 0, f"consumer exit code {p.exitcode}"
    assert [prec.count(i) for i in range(nprod)] == [n] * nprod
    check_exactly_once_in_order([rec.entries(j) for j in range(ncons)],
                                {i: n for i in range(nprod)})
    assert q.qsize() == 0
    return rec


def check_exactly_once_in_order(logs, expected_counts):
    seen = collections.Counter()
    for log in logs:
        last = {}
        for c in log:
            p, s = h.uncode(c)
            seen[(p, s)] += 1
            assert s > last.get(p, -1), f"producer {p}: item {s} after {last.get(p)}"
            last[p] = s
    dups = [k for k, v in seen.items() if v > 1]
    assert not dups, f"duplicated: {dups[:10]}"
    want = {(p, s) for p, k in expected_counts.items() for s in range(k)}
    missing = sorted(want - set(seen))
    extra = sorted(set(seen) - want)
    assert not missing, f"lost {len(missing)}: {missing[:10]}"
    assert not extra, f"never put: {extra[:10]}"


@pytest.mark.parametrize("nprod,ncons", [(3, 3), (4, 2), (1, 4)], ids=lambda v: str(v))
def test_mpmc_exactly_once_fifo(backend, queue_factory, mp_ctx_fs, nprod, ncons, tmp_path):
    # capacity 256: a handful of items at a time; producers block often
    # (shared memory; Redis has no byte bound and takes the maxsize runs below)
    q = queue_factory(capacity=256)
    run_mpmc(mp_ctx_fs, q, nprod, ncons, 600, tmp_path)
    s = q.statistics()
    if backend.name == "shm":
        assert s.owner_deaths == 0  # no process died holding the ring's locks
    else:
        assert s.pending == 0 and s.unfinished == 0  # every message acknowledged


def test_mpmc_small_maxsize_forkserver(queue_factory, tmp_path):
    import multiprocessing

    q = queue_factory(3)
    run_mpmc(multiprocessing.get_context("forkserver"), q, 3, 2, 300, tmp_path)


@pytest.mark.parametrize("use_many", [False, True], ids=["get", "get_many"])
def test_mpmc_batches(queue_factory, mp_ctx_fs, use_many, tmp_path):
    q = queue_factory(7, capacity=512)
    run_mpmc(mp_ctx_fs, q, 3, 2, 500, tmp_path, batches=True, use_many=use_many)


def test_mpmc_pickled_items(queue_factory, tmp_path):
    import multiprocessing

    q = queue_factory(5)
    run_mpmc(multiprocessing.get_context("fork"), q, 2, 2, 400, tmp_path, as_tuple=True)


@pytest.mark.stress
@pytest.mark.parametrize("nprod,ncons", [(2, 2), (6, 6), (8, 1), (1, 8)], ids=lambda v: str(v))
def test_mpmc_stress(queue_factory, mp_ctx, nprod, ncons, tmp_path):
    q = queue_factory(capacity=1024)
    run_mpmc(mp_ctx, q, nprod, ncons, 5000, tmp_path, use_many=ncons % 2 == 0)
