"""Semaphore, BoundedSemaphore, RWLock, Event, Barrier, Condition.

Each primitive is checked against threading's expectations (return values,
timeouts, exceptions), in threads of one process, across processes under
fork and spawn, and with a holder or party SIGKILLed (recovery within ~1 s,
the next holder told).
"""
from __future__ import annotations

import dataclasses

import multiprocessing as mp
import os
import pickle
import random
import re
import signal
import sys
import threading
import time
import warnings

import pytest

import interlock
from _helpers import wait_until
from interlock import _segment
from interlock import (
    Barrier,
    BoundedSemaphore,
    BrokenBarrierError,
    Condition,
    Event,
    OwnerDiedError,
    OwnerDiedWarning,
    RWLock,
    Semaphore,
)

CONTEXTS = ["fork", "spawn"]


@pytest.fixture(autouse=True)
def _no_leftovers():
    """Every segment this test made is gone once its objects are."""
    before = set(os.listdir("/dev/shm"))
    yield
    import gc

    def mine():
        return {f for f in set(os.listdir("/dev/shm")) - before
                if f.startswith("interlock.") and (f"-{os.getpid()}-" in f or ".t-" in f)}

    deadline = time.monotonic() + 10  # spawn children leave at their own pace on a loaded machine
    while mine() and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.02)
    assert not mine()


def _join(procs, timeout=20):
    for p in procs:
        p.join(timeout)
        assert p.exitcode is not None, "child hung"


# ----------------------------------------------------------------- children


def _sem_child(sem, q, n):
    for _ in range(n):
        with sem:
            q.put(os.getpid())


def _sem_die_holding(sem, ready):
    sem.acquire()
    ready.set()
    os.kill(os.getpid(), signal.SIGKILL)


def _sem_churn(sem, counter_arr, stop):
    while not stop.is_set():
        with sem:
            with counter_arr.get_lock():
                counter_arr[0] += 1
                if counter_arr[0] > counter_arr[1]:
                    counter_arr[1] = counter_arr[0]
            with counter_arr.get_lock():
                counter_arr[0] -= 1


def _rw_reader(rw, inside, stop, ready):
    ready.release()
    while not stop.is_set():
        with rw.read():
            inside.release()
            time.sleep(0.002)


def _rw_die_writing(rw, ready):
    rw.acquire_write()
    ready.set()
    os.kill(os.getpid(), signal.SIGKILL)


def _rw_die_reading(rw, ready):
    rw.acquire_read()
    ready.set()
    os.kill(os.getpid(), signal.SIGKILL)


def _event_setter(ev, delay):
    time.sleep(delay)
    ev.set()


def _proc_state(pid):
    """The state letter of /proc/PID/stat ('S': asleep, 'R': running)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _event_wait_report(ev, out, timeout, cpu):
    # Pinned to the setter's CPU at the lowest priority there is: woken by
    # set(), this process cannot run before the setter has also called
    # clear() (SCHED_IDLE never preempts a normal task).  So it must find
    # the flag clear after its wake-up: the case that lost the wake-up.
    os.sched_setaffinity(0, {cpu})
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    out.put(ev.wait(timeout))


def _barrier_party(bar, q):
    try:
        q.put(("ok", bar.wait(timeout=10)))
    except BrokenBarrierError:
        q.put(("broken", None))


def _barrier_die_waiting(bar):
    # arrive, then die while waiting (a thread arrives; the process is killed)
    t = threading.Thread(target=lambda: _swallow(bar.wait), daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while bar.n_waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(os.getpid(), signal.SIGKILL)


def _swallow(f):
    try:
        f()
    except Exception:
        pass


def _cond_consumer(cond, items, q, n):
    got = 0
    while got < n:
        with cond:
            cond.wait_for(lambda: items.value > 0, timeout=10)
            items.value -= 1
        got += 1
    q.put(got)


def _cond_die_holding(cond, ready):
    cond.acquire()
    cond.notify_all()
    ready.set()
    os.kill(os.getpid(), signal.SIGKILL)


# ---------------------------------------------------------------- Semaphore


class TestSemaphore:
    def test_like_threading(self):
        s = Semaphore(2)
        assert s.get_value() == 2
        assert s.acquire() is True
        assert s.acquire(True) is True
        assert s.acquire(False) is False
        t0 = time.monotonic()
        assert s.acquire(timeout=0.1) is False
        assert 0.09 <= time.monotonic() - t0 < 1.0
        t0 = time.monotonic()
        assert s.acquire(False, 1.0) is False  # as multiprocessing: the timeout is ignored
        assert time.monotonic() - t0 < 0.9
        with pytest.raises(ValueError):
            Semaphore(-1)
        s.release(2)
        assert s.get_value() == 2
        with pytest.raises(ValueError):
            s.release(0)
        s.release()  # an unbounded semaphore may be released beyond its start
        assert s.get_value() == 3

    def test_bounded_release_too_much(self):
        b = BoundedSemaphore(2)
        with pytest.raises(ValueError):
            b.release()
        b.acquire()
        b.release()
        with pytest.raises(ValueError):
            b.release()
        assert b.get_value() == 2
        assert b.statistics().maxvalue == 2
        z = BoundedSemaphore(0)
        with pytest.raises(ValueError):
            z.release()

    def test_wait_then_release_by_other_thread(self):
        s = Semaphore(0)
        got = []
        t = threading.Thread(target=lambda: got.append(s.acquire(timeout=5)))
        t.start()
        # the waiter sleeps on the semaphore (observed, not hoped for)
        assert wait_until(lambda: s.statistics().waiters == 1), s.statistics()
        assert got == []
        s.release()
        t.join(5)
        assert got == [True]

    def test_threads_never_exceed_value(self):
        s = Semaphore(3)
        inside = [0, 0]
        guard = threading.Lock()

        def work():
            for _ in range(200):
                with s:
                    with guard:
                        inside[0] += 1
                        inside[1] = max(inside[1], inside[0])
                    time.sleep(0)
                    with guard:
                        inside[0] -= 1

        ts = [threading.Thread(target=work) for _ in range(6)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        assert inside[1] <= 3 and s.get_value() == 3

    @pytest.mark.parametrize("ctx", CONTEXTS)
    def test_across_processes(self, ctx):
        c = mp.get_context(ctx)
        s = Semaphore(1)
        q = c.Queue()
        ps = [c.Process(target=_sem_child, args=(s, q, 20)) for _ in range(2)]
        [p.start() for p in ps]
        got = [q.get(timeout=20) for _ in range(40)]
        _join(ps)
        assert sorted(set(got)) == sorted(p.pid for p in ps)
        assert s.get_value() == 1
        assert all(p.exitcode == 0 for p in ps)

    def test_pickles_by_name(self):
        s = Semaphore(5, name=f"t-sem-{os.getpid()}")
        t = pickle.loads(pickle.dumps(s))
        assert t.name == s.name
        t.acquire()
        assert s.get_value() == 4
        with pytest.raises(interlock.SegmentError):
            RWLock(name=s.name, create=False)

    @pytest.mark.parametrize("mode", ["warn", "raise"])
    def test_dead_holder_unit_recovered(self, mode):
        c = mp.get_context("fork")
        s = Semaphore(1, on_owner_death=mode)
        ready = c.Event()
        p = c.Process(target=_sem_die_holding, args=(s, ready))
        p.start()
        assert ready.wait(10)
        p.join(10)
        assert p.exitcode == -signal.SIGKILL
        assert s.statistics().holders == ((p.pid, 1),)
        t0 = time.monotonic()
        if mode == "warn":
            with pytest.warns(OwnerDiedWarning, match=str(p.pid)):
                assert s.acquire(timeout=5)
        else:
            with pytest.raises(OwnerDiedError) as ei:
                s.acquire(timeout=5)
            assert ei.value.dead_pid == p.pid
        assert time.monotonic() - t0 < 1.5
        # the caller holds the unit; the next holder is not told again
        st = s.statistics()
        assert st.owner_deaths == 1 and st.holders == ((os.getpid(), 1),)
        s.release()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with s:
                pass

    @pytest.mark.parametrize("mode", ["warn", "raise"])
    def test_two_holders_dead_in_one_sweep_each_reported(self, mode):
        """Two processes die holding a unit each of a Semaphore(2); one sweep
        recovers both.  The two takers are told of two different deaths:
        each dead pid once, not the last one swept twice."""
        c = mp.get_context("fork")
        s = Semaphore(2, on_owner_death=mode)
        try:
            ps = []
            for _ in range(2):
                p = c.Process(target=_take_and_die, args=(s.acquire,))
                p.start()
                p.join(10)
                assert p.exitcode == -signal.SIGKILL
                ps.append(p.pid)
            assert sorted(s.statistics().holders) == sorted((pid, 1) for pid in ps)
            told = []
            for _ in range(2):
                if mode == "warn":
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        assert s.acquire(timeout=5)
                    (w,) = [w for w in caught if issubclass(w.category, OwnerDiedWarning)]
                    told += [pid for pid in ps if f"process {pid} " in str(w.message)]
                else:
                    with pytest.raises(OwnerDiedError) as ei:
                        s.acquire(timeout=5)
                    told.append(ei.value.dead_pid)
            assert sorted(told) == sorted(ps)
            st = s.statistics()
            assert st.owner_deaths == 2 and st.holders == ((os.getpid(), 2),)
            s.release(2)
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # nobody is told twice
                assert s.acquire(timeout=1) and s.acquire(timeout=1)
            s.release(2)
        finally:
            s.detach()

    def test_nonblocking_acquire_recovers_too(self):
        c = mp.get_context("fork")
        s = Semaphore(1, on_owner_death="ignore")
        ready = c.Event()
        p = c.Process(target=_sem_die_holding, args=(s, ready))
        p.start()
        assert ready.wait(10)
        p.join(10)
        # Non-blocking tries sweep at most once per slice (the rate limit):
        # one of them, within about a slice, finds the dead holder's unit.
        assert wait_until(lambda: s.acquire(False), 5), s.statistics()
        assert s.statistics().owner_deaths == 1

    def test_random_kills_keep_value(self):
        """Children churn through a 2-unit semaphore; we SIGKILL them at
        random moments; afterwards every unit is back."""
        c = mp.get_context("fork")
        s = Semaphore(2, on_owner_death="ignore")
        arr = interlock.Array("i", 2)
        # interlock's Event, not multiprocessing's: is_set() of the latter
        # takes a lock, and a child killed inside it would leave that lock
        # held, so the next child would hang in is_set() and never churn.
        stop = Event()
        rng = random.Random(7)
        for _ in range(3):
            p = c.Process(target=_sem_churn, args=(s, arr, stop))
            p.start()
            time.sleep(rng.uniform(0.01, 0.1))
            p.kill()
            p.join(10)
        # recovery: both units can be taken within ~1 s
        assert s.acquire(timeout=2) and s.acquire(timeout=2)
        s.release(2)
        assert s.get_value() == 2
        stop.detach()

    def test_statistics_frozen(self):
        s = Semaphore(1)
        st = s.statistics()
        with pytest.raises(dataclasses.FrozenInstanceError):
            st.value = 3  # type: ignore[misc]


# ------------------------------------------------------------------- RWLock


class TestRWLock:
    def test_readers_share_writers_exclude(self):
        rw = RWLock()
        assert rw.acquire_read() and rw.acquire_read(False)
        assert rw.acquire_write(False) is False
        assert rw.acquire_write(timeout=0.05) is False
        rw.release_read()
        rw.release_read()
        with pytest.raises(RuntimeError):
            rw.release_read()
        assert rw.acquire_write(False)
        with pytest.raises(RuntimeError):
            rw.acquire_write(timeout=1)  # self-deadlock refused
        with pytest.raises(RuntimeError):
            rw.acquire_read(timeout=1)
        got = []
        t = threading.Thread(target=lambda: got.append(rw.acquire_read(timeout=0.05)))
        t.start()
        t.join()
        assert got == [False]
        t = threading.Thread(target=lambda: _swallow(rw.release_write))
        t.start()
        t.join()
        assert rw.statistics().writer_tid == threading.get_native_id()  # not released by other
        rw.release_write()
        with pytest.raises(RuntimeError):
            rw.release_write()

    def test_context_managers_and_timeout(self):
        rw = RWLock()
        with rw.write():
            with pytest.raises(TimeoutError):
                t = threading.Thread(target=lambda: None)
                t.start()
                t.join()
                res = []

                def reader():
                    try:
                        with rw.read(timeout=0.05):
                            res.append("in")
                    except TimeoutError:
                        res.append("timeout")

                th = threading.Thread(target=reader)
                th.start()
                th.join()
                assert res == ["timeout"]
                raise TimeoutError
        with rw.read(timeout=1):
            assert rw.statistics().readers == 1
        assert rw.statistics().readers == 0

    def test_writer_not_starved(self):
        """Readers keep the lock read-held continuously (overlapping holds);
        a writer still gets in, and promptly."""
        c = mp.get_context("fork")
        rw = RWLock()
        inside = c.Semaphore(0)
        stop = c.Event()
        ready = c.Semaphore(0)
        ps = [c.Process(target=_rw_reader, args=(rw, inside, stop, ready)) for _ in range(3)]
        [p.start() for p in ps]
        for _ in ps:
            assert ready.acquire(timeout=10)
        for _ in range(20):
            assert inside.acquire(timeout=10)
        t0 = time.monotonic()
        assert rw.acquire_write(timeout=5)
        waited = time.monotonic() - t0
        assert rw.statistics().readers == 0
        rw.release_write()
        stop.set()
        _join(ps)
        assert waited < 1.0

    @pytest.mark.parametrize("ctx", CONTEXTS)
    def test_write_across_processes(self, ctx):
        c = mp.get_context(ctx)
        rw = RWLock()
        ready = c.Event()
        p = c.Process(target=_rw_die_writing, args=(rw, ready))
        p.start()
        assert ready.wait(20)
        p.join(10)
        assert rw.statistics().writer_pid == p.pid
        t0 = time.monotonic()
        with pytest.warns(OwnerDiedWarning):
            assert rw.acquire_read(timeout=5)
        assert time.monotonic() - t0 < 1.5
        rw.release_read()
        assert rw.statistics().owner_deaths == 1

    def test_dead_reader_recovered(self):
        c = mp.get_context("fork")
        rw = RWLock(on_owner_death="raise")
        ready = c.Event()
        p = c.Process(target=_rw_die_reading, args=(rw, ready))
        p.start()
        assert ready.wait(10)
        p.join(10)
        assert rw.statistics().reader_pids == ((p.pid, 1),)
        with pytest.raises(OwnerDiedError):
            with rw.write(timeout=5):
                pass
        # released by the with statement; free again
        assert rw.acquire_write(False)
        rw.release_write()


# -------------------------------------------------------------------- Event


class TestEvent:
    def test_like_threading(self):
        e = Event()
        assert not e.is_set()
        assert e.wait(0) is False
        assert e.wait(0.05) is False
        e.set()
        assert e.is_set() and e.wait() is True and e.wait(0) is True
        e.clear()
        assert not e.is_set()
        assert e.statistics().sets == 1

    @pytest.mark.parametrize("ctx", CONTEXTS)
    def test_set_from_child(self, ctx):
        c = mp.get_context(ctx)
        e = Event()
        p = c.Process(target=_event_setter, args=(e, 0.05))
        p.start()
        assert e.wait(20) is True
        _join([p])
        assert p.exitcode == 0

    def test_threads_all_woken(self):
        e = Event()
        got = []
        ts = [threading.Thread(target=lambda: got.append(e.wait(5))) for _ in range(4)]
        [t.start() for t in ts]
        # all four sleep on the event before it is set: the test is about waking them
        assert wait_until(lambda: e.statistics().waiters == 4), e.statistics()
        e.set()
        [t.join() for t in ts]
        assert got == [True] * 4

    @pytest.mark.parametrize("ctx", CONTEXTS)
    def test_set_then_clear_wakes_every_waiter(self, ctx):
        """Issue 10 (CPython gh-57711): set() followed at once by clear()
        lost the wake-up -- the woken waiters found the flag clear and slept
        on until their timeout.  Every process waiting when set() was called
        must return True, and at once (long before its 20 s timeout)."""
        c = mp.get_context(ctx)
        e = Event()
        out = c.SimpleQueue()
        n = 4
        cpu = min(os.sched_getaffinity(0))
        ps = [c.Process(target=_event_wait_report, args=(e, out, 20, cpu)) for _ in range(n)]
        [p.start() for p in ps]
        try:
            # every child is inside wait(), past its first check, and asleep
            # in the kernel (not spinning: a spinner could still see the flag
            # set before clear() and hide the bug)
            assert wait_until(lambda: e.statistics().waiters == n
                              and all(_proc_state(p.pid) == "S" for p in ps), 30), \
                (e.statistics(), [_proc_state(p.pid) for p in ps])
            mine = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {cpu})  # the waiters' CPU: they wait for us
            try:
                e.set()
                e.clear()
            finally:
                os.sched_setaffinity(0, mine)
            results = [out.get() for _ in range(n)]
        finally:
            _join(ps)
        # False would be a child's 20 s timeout: the wake-up was lost
        assert results == [True] * n
        assert not e.is_set() and e.statistics().sets == 1
        e.detach()

    def test_wait_after_set_then_clear_still_blocks(self):
        """The generation only rescues waits that began before set(): a wait
        that starts after set(); clear() waits for the next set()."""
        e = Event()
        e.set()
        e.clear()
        assert e.wait(0.05) is False
        assert e.statistics().timeouts == 1
        e.detach()

    def test_repr_is_multiprocessing_form_with_name(self):
        e = Event(name=None)
        assert re.fullmatch(rf"<Event at 0x[0-9a-f]+ name={e.name!r} unset>", repr(e)), repr(e)
        e.set()
        assert re.fullmatch(rf"<Event at 0x[0-9a-f]+ name={e.name!r} set>", repr(e)), repr(e)
        e.detach()
        assert repr(e).endswith(" detached>")


# ------------------------------------------------------------------ Barrier


class TestBarrier:
    def test_threads_and_action(self):
        calls = []
        b = Barrier(3, action=lambda: calls.append(1))
        out = []
        ts = [threading.Thread(target=lambda: out.append(b.wait())) for _ in range(3)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        assert sorted(out) == [0, 1, 2] and calls == [1]
        assert b.parties == 3 and b.n_waiting == 0 and not b.broken
        # reusable
        ts = [threading.Thread(target=lambda: out.append(b.wait())) for _ in range(3)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        assert calls == [1, 1] and b.statistics().passes == 2

    def test_timeout_breaks_and_reset(self):
        b = Barrier(2)
        with pytest.raises(BrokenBarrierError):
            b.wait(timeout=0.05)
        assert b.broken
        with pytest.raises(BrokenBarrierError):
            b.wait()
        b.reset()
        assert not b.broken and b.n_waiting == 0

    def test_abort_and_reset_wake_waiters(self):
        for how in ("abort", "reset"):
            b = Barrier(3)
            res = []

            def w():
                try:
                    b.wait(5)
                    res.append("ok")
                except BrokenBarrierError:
                    res.append("broken")

            t = threading.Thread(target=w)
            t.start()
            deadline = time.monotonic() + 5
            while b.n_waiting != 1 and time.monotonic() < deadline:
                time.sleep(0.005)
            getattr(b, how)()
            t.join(5)
            assert res == ["broken"]
            assert b.broken == (how == "abort")

    def test_failing_action_breaks(self):
        def boom():
            raise KeyError("x")

        b = Barrier(2, action=boom)
        res = []

        def w():
            try:
                b.wait(5)
            except BrokenBarrierError:
                res.append("broken")

        t = threading.Thread(target=w)
        t.start()
        assert wait_until(lambda: b.n_waiting == 1), b.statistics()
        with pytest.raises(KeyError):
            b.wait()
        t.join(5)
        assert res == ["broken"] and b.broken

    @pytest.mark.parametrize("ctx", CONTEXTS)
    def test_processes_pass(self, ctx):
        c = mp.get_context(ctx)
        b = Barrier(3)
        q = c.Queue()
        ps = [c.Process(target=_barrier_party, args=(b, q)) for _ in range(2)]
        [p.start() for p in ps]
        idx = b.wait(timeout=20)
        got = [q.get(timeout=20) for _ in ps]
        _join(ps)
        assert sorted([idx] + [i for _, i in got]) == [0, 1, 2]

    def test_dead_party_breaks(self):
        c = mp.get_context("fork")
        b = Barrier(3)
        p = c.Process(target=_barrier_die_waiting, args=(b,))
        p.start()
        p.join(10)
        assert p.exitcode == -signal.SIGKILL
        t0 = time.monotonic()
        with pytest.raises(BrokenBarrierError):
            b.wait(timeout=5)
        assert time.monotonic() - t0 < 1.5
        st = b.statistics()
        assert st.broken and st.dead_pid == p.pid and st.owner_deaths == 1


# ---------------------------------------------------------------- Condition


class TestCondition:
    def test_detach_detaches_its_own_lock(self):
        """Condition() makes an RLock in its own segment: detach() detaches
        it too, at once (no wait for garbage collection).  A lock given by
        the caller stays attached."""
        c = Condition()
        own = _segment.path_of(c._lock.name)
        assert os.path.exists(own)
        c.detach()
        assert not os.path.exists(own), "the condition's own RLock is still attached"
        assert not os.path.exists(_segment.path_of(c.name))
        c.detach()  # idempotent
        # attached by name: the lock it attached is its own too
        c1 = Condition(name=f"t-cond-own-{os.getpid()}")
        c2 = Condition(name=c1.name, create=False)
        assert c2._lock.name == c1._lock.name and c2._lock is not c1._lock
        c2.detach()
        with pytest.raises(ValueError):
            c2._lock.acquire()  # detached with its condition
        with c1:  # c1's lock handle is untouched
            pass
        c1.detach()
        # the caller's lock is the caller's
        lk = interlock.Lock()
        c3 = Condition(lk)
        c3.detach()
        with lk:
            pass
        lk.detach()

    def test_like_threading(self):
        c = Condition()
        with pytest.raises(RuntimeError):
            c.wait(0.01)
        with pytest.raises(RuntimeError):
            c.notify()
        with c:
            assert c.wait(0.05) is False
            assert c.wait_for(lambda: 0, timeout=0.05) == 0
            # a true predicate returns its value without waiting, as threading's
            t0 = time.monotonic()
            assert c.wait_for(lambda: 7, timeout=5) == 7
            assert time.monotonic() - t0 < 1
            c.notify()  # nobody waits: no effect
            with c:  # an RLock by default
                pass

    def test_notify_n_wakes_at_most_n(self):
        c = Condition(interlock.Lock())
        woke = []

        def w():
            with c:
                woke.append(c.wait(20))

        ts = [threading.Thread(target=w) for _ in range(4)]
        [t.start() for t in ts]
        assert wait_until(lambda: len(c.statistics().waiting) == 4), c.statistics()
        with c:
            c.notify(2)
        # two return; the other two are still waiting, and not notified
        assert wait_until(lambda: len(woke) == 2), (woke, c.statistics())
        with c:
            st = c.statistics()
        assert woke == [True, True] and len(st.waiting) == 2 and not st.notified, st
        with c:
            c.notify_all()
        [t.join() for t in ts]
        assert woke == [True] * 4

    def test_fifo_order(self):
        c = Condition()
        order = []

        def w(i):
            with c:
                c.wait(5)
                order.append(i)

        ts = []
        for i in range(3):
            t = threading.Thread(target=w, args=(i,))
            t.start()
            ts.append(t)
            assert wait_until(lambda: len(c.statistics().waiting) == i + 1), c.statistics()
        for k in range(3):
            with c:
                c.notify()
            # the notified waiter has run before the next notify
            assert wait_until(lambda: len(order) == k + 1), (order, c.statistics())
        [t.join() for t in ts]
        assert order == [0, 1, 2]

    @pytest.mark.parametrize("ctx", CONTEXTS)
    def test_producer_consumer_processes(self, ctx):
        c = mp.get_context(ctx)
        cond = Condition()
        items = interlock.Value("i", 0, lock=cond._lock)
        q = c.Queue()
        p = c.Process(target=_cond_consumer, args=(cond, items, q, 30))
        p.start()
        for _ in range(30):
            with cond:
                items.value += 1
                cond.notify()
        assert q.get(timeout=20) == 30
        _join([p])

    def test_dead_notifier_holding_lock(self):
        """A notifier dies holding the lock: the waiter is not stranded; it
        takes the lock over and is told.  (spawn: the waiter thread is alive
        when the notifier starts, and a fork of a threaded process is what
        tests/_forkcheck.py refuses.)"""
        ctx = mp.get_context("spawn")
        cond = Condition()
        ready = ctx.Event()
        res = []

        def waiter():
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                with cond:
                    res.append(cond.wait(10))
                res.append([x.category for x in w])

        t = threading.Thread(target=waiter)
        t.start()
        while not cond.statistics().waiting:
            time.sleep(0.005)
        p = ctx.Process(target=_cond_die_holding, args=(cond, ready))
        p.start()
        p.join(10)
        t0 = time.monotonic()
        t.join(5)
        assert not t.is_alive() and time.monotonic() - t0 < 1.5
        assert res[0] is True and OwnerDiedWarning in res[1]

    def test_attach_by_name_finds_lock(self):
        lk = interlock.Lock()
        c = Condition(lk, name=f"t-cond-{os.getpid()}")
        d = Condition(name=c.name, create=False)
        assert d._lock.name == lk.name and type(d._lock) is interlock.Lock
        e = pickle.loads(pickle.dumps(c))
        assert e._lock.name == lk.name


# ------------------------------------------------------------------- stress


def _rw_churn(rw, stop):
    rng = random.Random(os.getpid())
    while not stop.is_set():
        if rng.random() < 0.3:
            with rw.write():
                pass
        else:
            with rw.read():
                pass


@pytest.mark.stress
def test_stress_random_kills_semaphore_and_rwlock():
    """50 rounds: children churn through a Semaphore(2) and an RWLock and are
    SIGKILLed at random moments; after each round everything is free again."""
    c = mp.get_context("fork")
    s = Semaphore(2, on_owner_death="ignore")
    rw = RWLock(on_owner_death="ignore")
    arr = interlock.Array("i", 2)
    stop = c.Event()
    rng = random.Random(1)
    for _ in range(50):
        ps = [c.Process(target=_sem_churn, args=(s, arr, stop)) for _ in range(2)]
        ps += [c.Process(target=_rw_churn, args=(rw, stop)) for _ in range(2)]
        [p.start() for p in ps]
        time.sleep(rng.uniform(0.005, 0.05))
        for p in ps:
            p.kill()
            p.join(10)
        assert s.acquire(timeout=3) and s.acquire(timeout=3)
        s.release(2)
        assert rw.acquire_write(timeout=3)
        rw.release_write()
    assert s.get_value() == 2
    del ps
    for obj in (s, rw, arr):
        obj.detach()


# ------------------------------------------- where OwnerDiedWarning points


def _line() -> int:
    return sys._getframe(1).f_lineno


def _take_and_die(fn):
    fn()
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("kind", ["Semaphore", "BoundedSemaphore", "RWLock read", "RWLock write"])
@pytest.mark.parametrize("how", ["acquire", "with"])
def test_owner_died_warning_points_at_the_acquiring_line(kind, how):
    """A recovered hold's warning names the user's line that took it (the
    acquire call or the ``with`` statement), not the caller's caller."""
    c = mp.get_context("fork")
    if kind.startswith("RWLock"):
        obj = RWLock()
        take = obj.acquire_write if kind.endswith("write") else obj.acquire_read
        # the survivor takes the other side: a read beside a dead reader
        # needs no recovery, a write does
        hold, acquire, release = ((obj.read, obj.acquire_read, obj.release_read)
                                  if kind.endswith("write") else
                                  (obj.write, obj.acquire_write, obj.release_write))
    else:
        obj = getattr(interlock, kind)(1)
        take = obj.acquire
    try:
        p = c.Process(target=_take_and_die, args=(take,))
        p.start()
        p.join(10)
        assert p.exitcode == -signal.SIGKILL
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if how == "with" and kind.startswith("RWLock"):
                line = _line() + 1
                with hold(timeout=5):
                    pass
            elif how == "with":
                line = _line() + 1
                with obj:
                    pass
            elif kind.startswith("RWLock"):
                line = _line() + 1
                assert acquire(timeout=5)
                release()
            else:
                line = _line() + 1
                assert obj.acquire(timeout=5)
                obj.release()
        (w,) = [w for w in caught if issubclass(w.category, OwnerDiedWarning)]
        assert str(p.pid) in str(w.message)
        assert (w.filename, w.lineno) == (__file__, line), f"points at {w.filename}:{w.lineno}"
    finally:
        obj.detach()
