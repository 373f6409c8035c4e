"""How a waiter waits: spin, yield, sleep (binding.h; docs/design/queue.md,
"Waiting"; docs/design/sync.md).

Two processes that share one CPU cannot help each other by spinning; a
futex sleep costs each hand-over a FUTEX_WAKE, a FUTEX_WAIT and a switch.
Where spinning does not pay, a waiter yields the CPU first (sched_yield),
which hands it straight to the peer.  A futex sleep is a *voluntary*
context switch (ru_nvcsw); a yield that switches is an involuntary one.  So
with both processes pinned to one CPU, a ping-pong of N round trips used to
cost each side about N voluntary switches, and now costs a few: the test
counts them, and checks that every item arrived once, in order.
"""
from __future__ import annotations

import os
import resource

import pytest

import interlock

N = 3000


def _one_cpu() -> int:
    return min(os.sched_getaffinity(0))


def _queue_pong(qa, qb, cpu, out):
    os.sched_setaffinity(0, {cpu})
    get, put = qa.get, qb.put
    before = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
    for _ in range(N):
        put(get() + 1)
    out.put(resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - before)


def _sem_pong(a, b, cpu, out):
    os.sched_setaffinity(0, {cpu})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
    for _ in range(N):
        a.acquire()
        b.release()
    out.put(resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - before)


@pytest.fixture
def pinned():
    """Pin this process to one CPU for the test, and restore its CPUs."""
    mine = os.sched_getaffinity(0)
    cpu = _one_cpu()
    os.sched_setaffinity(0, {cpu})
    yield cpu
    os.sched_setaffinity(0, mine)


def test_queue_ping_pong_on_one_cpu_yields_instead_of_sleeping(mp_ctx, pinned):
    qa, qb, out = interlock.Queue(), interlock.Queue(), interlock.Queue()
    p = mp_ctx.Process(target=_queue_pong, args=(qa, qb, pinned, out))
    p.start()
    try:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
        for i in range(N):
            qa.put(2 * i)
            assert qb.get(timeout=30) == 2 * i + 1  # each item once, in order
        ours = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - before
        theirs = out.get(timeout=30)
        p.join(30)
        assert p.exitcode == 0
        # Without the yield phase each side sleeps on nearly every round
        # trip (about N each); with it, only while the budgets adapt, and
        # on the odd wait where something else ran on the CPU.
        assert ours < N // 4, (ours, theirs)
        assert theirs < N // 4, (ours, theirs)
        assert qa.empty() and qb.empty()
    finally:
        for q in (qa, qb, out):
            q.unlink()


def test_semaphore_ping_pong_on_one_cpu_yields_instead_of_sleeping(mp_ctx, pinned):
    a, b, out = interlock.Semaphore(0), interlock.Semaphore(0), interlock.Queue()
    p = mp_ctx.Process(target=_sem_pong, args=(a, b, pinned, out))
    p.start()
    try:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
        for _ in range(N):
            a.release()
            assert b.acquire(timeout=30)
        ours = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - before
        theirs = out.get(timeout=30)
        p.join(30)
        assert p.exitcode == 0
        assert ours < N // 4, (ours, theirs)
        assert theirs < N // 4, (ours, theirs)
        assert a.get_value() == 0 and b.get_value() == 0  # every unit handed over once
    finally:
        for o in (a, b, out):
            o.unlink()
