"""asyncio: get_async/put_async/async for on Queue, async with on Lock.

What must hold (interlock.aio): the loop never blocks while a coroutine
waits; no polling on a timer; timeouts raise queue.Empty / queue.Full;
a cancelled coroutine leaves the queue and the lock consistent.
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import time
from typing import Any

import pytest

import interlock
from _helpers import wait_until


def _producer(q: interlock.Queue, start: int, n: int, delay: float) -> None:
    time.sleep(delay)
    for i in range(start, start + n):
        q.put(i)


def _consumer(q: interlock.Queue, out: interlock.Queue, n: int) -> None:
    for _ in range(n):
        out.put(q.get(timeout=20))


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_many_coroutines_and_processes_exactly_once(method: str) -> None:
    ctx = mp.get_context(method)
    q = interlock.Queue(maxsize=8)
    procs = [ctx.Process(target=_producer, args=(q, k * 1000, 300, 0.1)) for k in range(3)]
    for p in procs:
        p.start()

    async def main() -> list[int]:
        got: list[int] = []

        async def consumer() -> None:
            while len(got) < 900:
                try:
                    got.append(await q.get_async(timeout=0.5))
                except interlock.Empty:
                    continue

        await asyncio.gather(*(consumer() for _ in range(20)))
        return got

    got = run(main())
    for p in procs:
        p.join(10)
        assert p.exitcode == 0
    q.detach()
    assert sorted(got) == sorted(k * 1000 + i for k in range(3) for i in range(300))
    for k in range(3):  # each producer's order, as seen by the consumers' takes
        mine = [x for x in got if x // 1000 == k]
        assert mine == sorted(mine)


def test_loop_stays_responsive_while_waiting() -> None:
    q = interlock.Queue()
    p = mp.get_context("fork").Process(target=_producer, args=(q, 0, 5, 0.5))
    p.start()

    async def main() -> tuple[int, list[int]]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        t = asyncio.create_task(ticker())
        items = [await q.get_async() for _ in range(5)]
        t.cancel()
        return ticks, items

    ticks, items = run(main())
    p.join(10)
    q.detach()
    assert items == list(range(5))
    # 0.5 s of waiting at 10 ms a tick: a blocked loop would show ~0
    assert ticks >= 20


def test_put_async_waits_for_room_and_times_out() -> None:
    q = interlock.Queue(maxsize=2)

    async def main() -> None:
        await q.put_async(1)
        await q.put_async(2)
        t0 = time.monotonic()
        with pytest.raises(interlock.Full):
            await q.put_async(3, timeout=0.2)
        assert 0.15 <= time.monotonic() - t0 < 2
        task = asyncio.create_task(q.put_async(3))
        await asyncio.sleep(0.05)
        assert not task.done()
        assert q.get_nowait() == 1  # room: the waiting put goes through
        await asyncio.wait_for(task, 5)
        assert [q.get_nowait(), q.get_nowait()] == [2, 3]

    run(main())
    q.detach()


def test_get_async_timeout_and_bad_timeout() -> None:
    q = interlock.Queue()

    async def main() -> None:
        t0 = time.monotonic()
        with pytest.raises(interlock.Empty):
            await q.get_async(timeout=0.2)
        assert 0.15 <= time.monotonic() - t0 < 2
        with pytest.raises(ValueError, match="non-negative"):
            await q.get_async(timeout=-1)
        with pytest.raises(TypeError, match="timeout"):
            await q.get_async(timeout="1")  # type: ignore[arg-type]

    run(main())
    q.detach()


def test_cancellation_leaves_queue_consistent() -> None:
    q = interlock.Queue()

    async def main() -> None:
        for round_ in range(20):
            waiters = [asyncio.create_task(q.get_async()) for _ in range(10)]
            await asyncio.sleep(0.01)
            for w in waiters[:9]:
                w.cancel()
            q.put(round_)
            assert await asyncio.wait_for(waiters[9], 5) == round_
            await asyncio.gather(*waiters[:9], return_exceptions=True)
            assert q.qsize() == 0

    run(main())
    q.detach()


def test_async_for_stops_at_close() -> None:
    q = interlock.Queue()
    for i in range(10):
        q.put(i)
    q.close()

    async def main() -> list[int]:
        return [x async for x in q]

    assert run(main()) == list(range(10))
    q.detach()


def _holder(lock: interlock.Lock, hold: float) -> None:
    with lock:
        time.sleep(hold)


def test_async_lock_excludes_coroutines_and_processes() -> None:
    lock = interlock.Lock()
    p = mp.get_context("fork").Process(target=_holder, args=(lock, 0.3))
    p.start()
    time.sleep(0.1)

    async def main() -> list[tuple[int, str]]:
        log: list[tuple[int, str]] = []

        async def worker(k: int) -> None:
            async with lock:
                log.append((k, "in"))
                await asyncio.sleep(0.01)
                log.append((k, "out"))

        t0 = time.monotonic()
        await asyncio.gather(*(worker(k) for k in range(5)))
        assert time.monotonic() - t0 >= 0.15  # waited for the other process
        return log

    log = run(main())
    p.join(10)
    for i in range(0, len(log), 2):  # never two inside at once
        assert log[i][0] == log[i + 1][0] and log[i][1] == "in" and log[i + 1][1] == "out"
    assert not lock.locked()
    lock.detach()


def test_async_lock_timeout_and_cancel() -> None:
    lock = interlock.Lock()

    async def main() -> None:
        lock.acquire()
        assert await lock.acquire_async(timeout=0.1) is False
        task = asyncio.create_task(lock.acquire_async())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        lock.release()
        assert not lock.locked()  # the cancelled waiter took nothing
        async with lock:
            assert lock.locked()

    run(main())
    lock.detach()


def _setter(ev: interlock.Event, delay: float) -> None:
    time.sleep(delay)
    ev.set()


def test_event_wait_async_across_processes() -> None:
    ev = interlock.Event()
    p = mp.get_context("spawn").Process(target=_setter, args=(ev, 0.3))
    p.start()

    async def main() -> tuple[bool, bool, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        t = asyncio.create_task(ticker())
        early = await ev.wait_async(timeout=0.05)
        results = await asyncio.gather(*(ev.wait_async() for _ in range(10)))
        t.cancel()
        return early, all(results), ticks

    early, ok, ticks = run(main())
    p.join(10)
    ev.detach()
    assert early is False and ok and ticks >= 10


# ------------------------------------------- a wait-only waiter steals a wake

# FUTEX_WAIT is syscall 202 on x86_64, 98 on aarch64 (asm-generic).
_FUTEX_NR = {"x86_64": 202, "aarch64": 98}.get(os.uname().machine)


def _in_futex_wait(pid: int, exclude_main: bool = False) -> bool:
    """Is a thread of ``pid`` asleep in futex(2)?  (/proc/PID/task/TID/syscall;
    where that cannot be read, after a pause that covers it, True.)"""
    if _FUTEX_NR is None:
        time.sleep(0.2)
        return True
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            if exclude_main and int(tid) == pid:
                continue
            with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                fields = f.read().split()
            if fields and fields[0] == str(_FUTEX_NR):
                return True
    except OSError:
        time.sleep(0.2)
        return True
    return False


def _async_acquirer(lock: interlock.Lock) -> None:
    async def main() -> None:
        async with lock:
            pass

    asyncio.run(asyncio.wait_for(main(), 30))


def _blocking_acquirer(lock: interlock.Lock, took: Any) -> None:
    with lock:
        took.value = time.monotonic()


def test_async_waiter_does_not_steal_the_release_wakeup() -> None:
    # Issue 12: process A holds a Lock; C waits for it the asyncio way (its
    # helper thread sleeps in _wait_unlocked, queued first on the futex),
    # then B blocks in acquire().  A's release wakes ONE sleeper: C's
    # helper.  The old _wait_unlocked kept that wake-up: C's coroutine took
    # the lock with the fast CAS (no WAITERS bit), released it without a
    # wake, and B slept out its 50 ms slice (measured 48-49 ms in 4 of 8
    # trials).  Now C passes the wake-up on, and B gets the lock in about a
    # millisecond.  A slow trial is one over 40 ms: scheduler noise on a
    # loaded machine is far below that; the old protocol made most trials
    # slow in this setup (C queued first).
    ctx = mp.get_context("fork")
    lock = interlock.Lock()
    took = ctx.Value("d", 0.0, lock=False)
    latencies = []
    try:
        for _ in range(8):
            lock.acquire()  # we are A
            c = ctx.Process(target=_async_acquirer, args=(lock,))
            c.start()
            assert wait_until(lambda: _in_futex_wait(c.pid, exclude_main=True), 10)
            b = ctx.Process(target=_blocking_acquirer, args=(lock, took))
            b.start()
            assert wait_until(lambda: lock.statistics().waiters == 1, 10)
            assert wait_until(lambda: _in_futex_wait(b.pid), 10)
            t0 = time.monotonic()
            lock.release()
            for p in (b, c):
                p.join(30)
                assert p.exitcode == 0
            latencies.append(took.value - t0)
    finally:
        lock.detach()
    slow = [round(x * 1000, 1) for x in latencies if x > 0.040]
    assert not slow, f"B waited {slow} ms (all: {[round(x * 1000, 1) for x in latencies]})"


def _wait_readable_once(q: interlock.Queue) -> None:
    # What aio.py's helper thread does for get_async(), whose coroutine is
    # then gone (cancelled, timed out): wait, take nothing.
    assert q._wait_readable(30)


def _blocking_getter(q: interlock.Queue, took: Any) -> None:
    q.get(timeout=30)
    took.value = time.monotonic()


def test_async_reader_does_not_steal_the_put_wakeup() -> None:
    # The ring's version of the bug above: a put of one item wakes one
    # sleeper; if that is a wait-only reader that then takes nothing, the
    # blocked get() in another process slept out its 100 ms slice.
    ctx = mp.get_context("fork")
    q = interlock.Queue()
    took = ctx.Value("d", 0.0, lock=False)
    latencies = []
    try:
        for _ in range(6):
            c = ctx.Process(target=_wait_readable_once, args=(q,))
            c.start()
            assert wait_until(lambda: _in_futex_wait(c.pid), 10)
            b = ctx.Process(target=_blocking_getter, args=(q, took))
            b.start()
            assert wait_until(lambda: q.statistics().consumers_waiting == 2, 10)
            assert wait_until(lambda: _in_futex_wait(b.pid), 10)
            t0 = time.monotonic()
            q.put(b"x")
            for p in (b, c):
                p.join(30)
                assert p.exitcode == 0
            latencies.append(took.value - t0)
    finally:
        q.detach()
    slow = [round(x * 1000, 1) for x in latencies if x > 0.050]
    assert not slow, f"get() waited {slow} ms (all: {[round(x * 1000, 1) for x in latencies]})"
