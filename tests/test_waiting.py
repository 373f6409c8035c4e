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


# ------------------------------------------- waking only sleepers (armed)
#
# eventcount.h, "the armed variant": bit 0 of a ring eventcount's seq says
# that a waiter may sleep on it.  A notify wakes only while it is set, and
# clears it (FUTEX_WAKE_OP, with a wake of anyone asleep) once a FUTEX_WAKE
# found nobody asleep, e.g. because the counted waiter is stopped, or woken
# and not yet run.  Model: models/eventcount.pml.

def _get_one(q, out):
    out.put(q.get(timeout=60))


def _state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _wait_for(cond, what):
    import time
    deadline = time.monotonic() + 30
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_a_counted_waiter_that_is_not_asleep_is_disarmed_and_still_gets_its_item(mp_ctx):
    import signal
    q, out = interlock.Queue(maxsize=10, capacity=1 << 16), interlock.Queue()
    p = mp_ctx.Process(target=_get_one, args=(q, out))
    p.start()
    try:
        # asleep in get(): counted, and seq armed
        _wait_for(lambda: q._stats()["consumers_sleeping"] == 1 and q._stats()["consumers_armed"],
                  "the consumer never slept armed")
        os.kill(p.pid, signal.SIGSTOP)   # out of its FUTEX_WAIT, still counted
        try:
            _wait_for(lambda: _state(p.pid) == "T", "the consumer never stopped")
            q.put("first")   # its FUTEX_WAKE finds nobody asleep: disarmed
            s = q._stats()
            assert s["consumers_sleeping"] == 1 and not s["consumers_armed"], s
            q.put("second")  # (disarmed: no syscall)
            assert not q._stats()["consumers_armed"]
        finally:
            os.kill(p.pid, signal.SIGCONT)
        # its FUTEX_WAIT, restarted on the armed value, finds seq moved
        assert out.get(timeout=30) == "first"
        p.join(30)
        assert p.exitcode == 0
        assert q.get(timeout=5) == "second" and q._stats()["consumers_sleeping"] == 0
    finally:
        if p.is_alive():
            p.kill()
            p.join()
        for o in (q, out):
            o.unlink()


def _drain(q, n, out):
    got = [q.get(timeout=60) for _ in range(n)]
    out.put(got)


@pytest.mark.parametrize("nprod,ncons", [(4, 4), (1, 6)])
def test_more_waiters_than_cpus_every_item_once_and_nobody_left_asleep(mp_ctx, nprod, ncons):
    # many sleepers per epoch, woken one notify at a time: each consumer
    # gets its share, none sleeps on while items wait (the 60 s timeouts)
    per = 3000
    total = nprod * per
    q, out = interlock.Queue(maxsize=8, capacity=1 << 16), interlock.Queue()
    share = [total // ncons + (i < total % ncons) for i in range(ncons)]
    cons = [mp_ctx.Process(target=_drain, args=(q, share[i], out)) for i in range(ncons)]
    prods = [mp_ctx.Process(target=_put_range, args=(q, i * per, per)) for i in range(nprod)]
    for p in cons + prods:
        p.start()
    try:
        got = [x for _ in cons for x in out.get(timeout=120)]
        for p in cons + prods:
            p.join(60)
            assert p.exitcode == 0
        assert sorted(got) == list(range(total))
        s = q._stats()
        assert s["depth"] == 0 and s["consumers_sleeping"] == 0 and s["producers_sleeping"] == 0
    finally:
        for p in cons + prods:
            if p.is_alive():
                p.kill()
                p.join()
        for o in (q, out):
            o.unlink()


def _put_range(q, start, n):
    for i in range(start, start + n):
        q.put(i)
