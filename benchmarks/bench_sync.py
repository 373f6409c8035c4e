"""Semaphore, RWLock, Event and Condition next to their multiprocessing peers.

Run: ``python benchmarks/bench_sync.py [--quick] [--repeat N] [--json PATH]``.
Prints one table; every row is measured in this run, interlock's and the
peer's repeats interleaved; each cell is the median [min-max] of the repeats,
and the ratio (peer time / interlock time, > 1: interlock is faster) is
computed per repeat. RWLock has no multiprocessing peer: it is
compared with a multiprocessing.Lock used as a (one-reader) stand-in.

Rows:
- uncontended acquire+release in one process (the fast path: one C call each)
- ping-pong between two processes (a hand-off each way: sleeps and wake-ups)
- Event set/clear/is_set, and a cross-process set -> wait wake-up round trip
- Condition notify with no waiters, and a cross-process notify/wait round trip
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Report, report_args  # noqa: E402

import interlock  # noqa: E402


def timeit(fn, n):
    t0 = time.perf_counter()
    fn(n)
    return (time.perf_counter() - t0) / n


def sem_fast(s):
    def run(n):
        a, r = s.acquire, s.release
        for _ in range(n):
            a()
            r()
    return run


def rw_read_fast(rw):
    def run(n):
        a, r = rw.acquire_read, rw.release_read
        for _ in range(n):
            a()
            r()
    return run


def rw_write_fast(rw):
    def run(n):
        a, r = rw.acquire_write, rw.release_write
        for _ in range(n):
            a()
            r()
    return run


def lock_fast(lk):
    def run(n):
        a, r = lk.acquire, lk.release
        for _ in range(n):
            a()
            r()
    return run


def event_fast(e):
    def run(n):
        for _ in range(n):
            e.set()
            e.clear()
            e.is_set()
    return run


def cond_notify_fast(c):
    def run(n):
        with c:
            for _ in range(n):
                c.notify()
    return run


# ---- ping-pong: two semaphores, two processes


def _sem_pong(a, b, n):
    for _ in range(n):
        a.acquire()
        b.release()


def sem_ping(a, b, ctx):
    def run(n):
        p = ctx.Process(target=_sem_pong, args=(a, b, n))
        p.start()
        for _ in range(n):
            a.release()
            b.acquire()
        p.join()
    return run


def _ev_pong(e1, e2, n):
    for _ in range(n):
        e1.wait()
        e1.clear()
        e2.set()


def ev_ping(e1, e2, ctx):
    def run(n):
        p = ctx.Process(target=_ev_pong, args=(e1, e2, n))
        p.start()
        for _ in range(n):
            e1.set()
            e2.wait()
            e2.clear()
        p.join()
    return run


def _cond_pong(c, turn, n):
    for i in range(n):
        with c:
            c.wait_for(lambda: turn.value == 1)
            turn.value = 0
            c.notify()


def cond_ping(c, turn, ctx):
    def run(n):
        p = ctx.Process(target=_cond_pong, args=(c, turn, n))
        p.start()
        for _ in range(n):
            with c:
                turn.value = 1
                c.notify()
                c.wait_for(lambda: turn.value == 0)
        p.join()
    return run


def _rw_pong(rw, a, b, n):
    for _ in range(n):
        a.acquire()
        with rw.write():
            pass
        b.release()


def main():
    args = report_args(__doc__.split("\n")[0]).parse_args()
    n_fast = 20_000 if args.quick else 200_000
    n_ping = 500 if args.quick else 5_000
    ctx = mp.get_context("fork")
    report = Report("bench_sync", args, {"n_fast": n_fast, "n_ping": n_ping, "start_method": "fork"})

    def row(name, ours, peer, n, peer_name="multiprocessing"):
        for _ in range(args.repeat):
            report.add(name, "interlock", "ns", timeit(ours, n) * 1e9)
            report.add(name, peer_name, "ns", timeit(peer, n) * 1e9)
        report.ratio_vs(name, "interlock", [peer_name])
        sys.stderr.write(".")
        sys.stderr.flush()

    row("Semaphore acquire+release", sem_fast(interlock.Semaphore(1)),
        sem_fast(mp.Semaphore(1)), n_fast)
    row("BoundedSemaphore acquire+release", sem_fast(interlock.BoundedSemaphore(1)),
        sem_fast(mp.BoundedSemaphore(1)), n_fast)
    row("RWLock read acquire+release (peer: mp.Lock)", rw_read_fast(interlock.RWLock()),
        lock_fast(mp.Lock()), n_fast, "mp.Lock (stand-in)")
    row("RWLock write acquire+release (peer: mp.Lock)", rw_write_fast(interlock.RWLock()),
        lock_fast(mp.Lock()), n_fast, "mp.Lock (stand-in)")
    row("Event set+clear+is_set", event_fast(interlock.Event()), event_fast(mp.Event()), n_fast)
    row("Condition notify, no waiter", cond_notify_fast(interlock.Condition()),
        cond_notify_fast(mp.Condition()), n_fast)
    row("Semaphore ping-pong, 2 procs",
        sem_ping(interlock.Semaphore(0), interlock.Semaphore(0), ctx),
        sem_ping(mp.Semaphore(0), mp.Semaphore(0), ctx), n_ping)
    row("Event ping-pong, 2 procs", ev_ping(interlock.Event(), interlock.Event(), ctx),
        ev_ping(mp.Event(), mp.Event(), ctx), n_ping)
    ic = interlock.Condition()
    mc = mp.Condition()
    row("Condition ping-pong, 2 procs",
        cond_ping(ic, interlock.Value("i", 0, lock=False), ctx),
        cond_ping(mc, mp.Value("i", 0, lock=False), ctx), n_ping)
    sys.stderr.write("\n")
    report.print()
    print("(ns per operation; ratio = multiprocessing time / interlock time, per repeat; "
          "> 1 means interlock is faster)")
    report.write(args.json)


if __name__ == "__main__":
    main()
