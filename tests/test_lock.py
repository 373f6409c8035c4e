"""Lock and RLock: the contract (over ``lock_factory`` / ``rlock_factory``),
then robustness: an owner that dies holding the lock."""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import warnings

import pytest

import interlock
from interlock import _segment
from interlock import DeadlockError, OwnerDiedError, OwnerDiedWarning

import _helpers as h

SLACK = 2.0


def start_holder(ctx, lock, hold: float = 120.0):
    ready = ctx.Event()
    p = ctx.Process(target=h.hold_lock, args=(lock, ready, hold))
    p.start()
    assert ready.wait(30), "the child did not take the lock"
    return p


# ------------------------------------------------------------ basics


def test_acquire_release_locked(backend, lock_factory):
    lock = lock_factory()
    assert not lock.locked()
    assert lock.acquire() is True
    assert lock.locked()
    assert backend.owner_ids(lock) == (os.getpid(), threading.get_native_id())
    lock.release()
    assert not lock.locked() and lock.owner is None
    with lock:
        assert lock.locked()
    assert not lock.locked()


def test_nonblocking_acquire(lock_factory):
    lock = lock_factory()
    assert lock.acquire(False) is True
    # a non-blocking acquire by the owner does not raise: it fails
    assert lock.acquire(False) is False
    assert lock.acquire(block=False) is False
    out = []
    t = threading.Thread(target=lambda: out.append(lock.acquire(block=False)))
    t.start()
    t.join()
    assert out == [False]
    lock.release()
    assert lock.acquire(False) is True
    lock.release()


def test_timeout_when_held_by_another_process(backend, lock_factory, mp_ctx):
    lock = lock_factory()
    p = start_holder(mp_ctx, lock)
    for timeout in (0.05, 0.3):
        t0 = time.monotonic()
        assert lock.acquire(timeout=timeout) is False
        t = time.monotonic() - t0
        assert timeout - 0.005 <= t < timeout + SLACK
    assert lock.acquire(False) is False
    assert backend.owner_ids(lock)[0] == p.pid
    assert lock.statistics().owner_pid == p.pid
    p.kill()
    p.join()


def test_timeout_minus_one_means_forever_like_threading(lock_factory):
    lock = lock_factory()
    assert lock.acquire(timeout=-1) is True
    lock.release()
    assert lock.acquire(True, -1) is True
    lock.release()


def test_acquire_waits_for_release_in_another_process(lock_factory, mp_ctx):
    lock = lock_factory()
    p = start_holder(mp_ctx, lock, hold=0.3)
    t0 = time.monotonic()
    assert lock.acquire(timeout=30) is True
    assert time.monotonic() - t0 < 30
    lock.release()
    p.join(30)
    assert p.exitcode == 0


def _owner_checked(backend):
    """The Redis backend's Lock stays owner-checked (only its holder
    releases; a second blocking acquire by the holder raises DeadlockError);
    interlock.Lock is multiprocessing's hand-off Lock (tests below)."""
    if backend.name == "shm":
        pytest.skip("interlock.Lock is a binary semaphore like multiprocessing's: "
                    "see the test_handoff_* tests")


def test_release_by_another_thread_raises(backend, lock_factory):
    _owner_checked(backend)
    lock = lock_factory()
    lock.acquire()
    err = []

    def other():
        try:
            lock.release()
        except RuntimeError as e:
            err.append(str(e))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(err) == 1 and "held by another thread" in err[0]
    assert lock.locked()
    lock.release()


@pytest.mark.threaded_fork("a Redis lock held across the fork keeps the lease keeper "
                           "running: the caller's own multi-threaded fork", backend="redis")
def test_release_by_another_process_raises(backend, lock_factory, mp_ctx):
    _owner_checked(backend)
    lock = lock_factory()
    out = mp_ctx.SimpleQueue()
    lock.acquire()
    p = mp_ctx.Process(target=h.try_release, args=(lock, out))
    p.start()
    p.join(30)
    kind, msg = out.get()
    assert kind == "RuntimeError" and "held by another thread" in msg and str(os.getpid()) in msg
    assert lock.locked()
    lock.release()


def test_release_unlocked_raises(backend, lock_factory):
    _owner_checked(backend)
    lock = lock_factory()
    with pytest.raises(RuntimeError, match="un-acquired"):
        lock.release()
    lock.acquire()
    lock.release()
    with pytest.raises(RuntimeError, match="un-acquired"):
        lock.release()


def test_second_blocking_acquire_is_a_deadlock_error(backend, lock_factory):
    _owner_checked(backend)
    lock = lock_factory()
    lock.acquire()
    with pytest.raises(DeadlockError, match="already holds"):
        lock.acquire()
    with pytest.raises(DeadlockError):
        lock.acquire(timeout=5)
    with pytest.raises(DeadlockError):
        with lock:
            pass
    assert lock.locked()  # still held, once
    lock.release()
    assert not lock.locked()
    assert issubclass(DeadlockError, RuntimeError)


# ------------------------------------ hand-off: multiprocessing's Lock (issue 10)


def test_handoff_release_by_another_thread():
    """multiprocessing.Lock is a binary semaphore: any thread may release
    it (lock_tests.LockTests.test_different_thread).  Before: RuntimeError."""
    lock = interlock.Lock()
    try:
        lock.acquire()
        err = []

        def other():
            try:
                lock.release()
            except Exception as e:  # pragma: no cover - the failure reported below
                err.append(repr(e))

        t = threading.Thread(target=other)
        t.start()
        t.join(10)
        assert err == []
        assert not lock.locked() and lock.owner is None
        assert lock.statistics().depth == 0
        assert lock.acquire(False) is True  # free for anyone, the acquirer included
        lock.release()
    finally:
        lock.detach()


def test_handoff_release_by_another_process(mp_ctx):
    """Acquire in this process, release in a child: the lock is free, and a
    third process sleeping in acquire() gets it (and releases it)."""
    lock = interlock.Lock()
    got, rel = mp_ctx.SimpleQueue(), mp_ctx.SimpleQueue()
    try:
        lock.acquire()
        waiter = mp_ctx.Process(target=h.try_acquire, args=(lock, got, 30))
        waiter.start()
        assert h.wait_until(lambda: lock.statistics().waiters == 1, 30)
        releaser = mp_ctx.Process(target=h.try_release, args=(lock, rel))
        releaser.start()
        releaser.join(30)
        assert rel.get() == ("released", "")
        ok, _ = got.get()
        waiter.join(30)
        assert ok is True  # woken by the other process's release
        assert waiter.exitcode == 0 and not lock.locked()
        assert lock.statistics().owner_deaths == 0
    finally:
        lock.detach()


def test_handoff_release_of_a_free_lock_is_valueerror():
    """As multiprocessing: ValueError('semaphore or lock released too many
    times'), from any thread; a second release of one hold too."""
    lock = interlock.Lock()
    try:
        with pytest.raises(ValueError, match="released too many times"):
            lock.release()
        lock.acquire()
        lock.release()
        with pytest.raises(ValueError, match="released too many times"):
            lock.release()
        m = mp.Lock()  # the peer says the same
        with pytest.raises(ValueError, match="released too many times"):
            m.release()
    finally:
        lock.detach()


def test_handoff_two_releasers_of_one_hold():
    """Two threads release one hold at once: exactly one succeeds, the other
    gets ValueError (release is a CAS, not an exchange)."""
    lock = interlock.Lock()
    try:
        for _ in range(50):
            lock.acquire()
            go = threading.Barrier(2)
            res = []

            def rel():
                go.wait(10)
                try:
                    lock.release()
                    res.append("ok")
                except ValueError:
                    res.append("ValueError")

            ts = [threading.Thread(target=rel) for _ in range(2)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(10)
            assert sorted(res) == ["ValueError", "ok"], res
            assert not lock.locked()
    finally:
        lock.detach()


def test_handoff_owner_timeout_returns_false():
    """The holder's acquire(timeout=t) returns False after t, like
    multiprocessing's and threading's (lock_tests test_state_after_timeout);
    before, it raised DeadlockError.  A non-blocking one returns False."""
    lock = interlock.Lock()
    try:
        lock.acquire()
        t0 = time.monotonic()
        assert lock.acquire(timeout=0.1) is False
        assert 0.095 <= time.monotonic() - t0 < 0.1 + SLACK
        assert lock.acquire(False) is False
        assert lock.acquire(blocking=False) is False  # threading's keyword, too
        assert lock.locked()
        lock.release()
        assert not lock.locked()
        assert lock.acquire(blocking=False) is True
        lock.release()
        with pytest.raises(TypeError, match="both"):
            lock.acquire(True, blocking=True)
    finally:
        lock.detach()


def test_handoff_owner_blocking_acquire_waits_for_another_release():
    """The holder's blocking acquire() waits until another thread releases
    (lock_tests test_reacquire); then it holds the lock again.  Before:
    DeadlockError at once."""
    lock = interlock.Lock()
    try:
        phase = []

        def f():
            lock.acquire()
            phase.append(1)
            lock.acquire()  # waits for the main thread's release
            phase.append(2)

        t = threading.Thread(target=f)
        t.start()
        assert h.wait_until(lambda: phase == [1] and lock.statistics().waiters == 1, 10)
        assert phase == [1] and t.is_alive()
        tid = t.native_id
        lock.release()  # the main thread releases the thread's first hold
        t.join(10)
        assert phase == [1, 2]
        assert lock.locked() and lock.owner == (os.getpid(), tid)
        lock.release()
    finally:
        lock.detach()


def test_handoff_with_statement_of_the_holder_waits():
    """``with lock`` by the holder waits too (it timed out here only through
    the other thread's release)."""
    lock = interlock.Lock()
    try:
        lock.acquire()
        threading.Timer(0.1, lock.release).start()
        t0 = time.monotonic()
        with lock:
            assert time.monotonic() - t0 >= 0.09
        assert not lock.locked()
    finally:
        lock.detach()


def test_rlock_stays_owner_checked():
    """RLock is multiprocessing's RLock: only its owner releases."""
    lock = interlock.RLock()
    try:
        lock.acquire()
        err = []
        t = threading.Thread(target=lambda: err.append(
            pytest.raises(RuntimeError, lock.release).value))
        t.start()
        t.join(10)
        assert len(err) == 1 and "held by another thread" in str(err[0])
        assert lock.locked()
        lock.release()
        with pytest.raises(RuntimeError, match="un-acquired"):
            lock.release()
    finally:
        lock.detach()


def test_internal_mutex_stays_owner_checked():
    """interlock's own mutexes (the segment meta lock, shared tables) are
    not hand-off locks: a second acquire by the holder is a bug, reported."""
    from interlock import _core

    lock = interlock.Lock()
    view = _core.Mutex(lock._seg.mm, lock._seg.object_offset)
    try:
        assert view.acquire() is True
        with pytest.raises(DeadlockError, match="already holds"):
            view.acquire()
        err = []

        def other():
            try:
                view.release()
            except RuntimeError as e:
                err.append(str(e))

        t = threading.Thread(target=other)
        t.start()
        t.join(10)
        assert len(err) == 1 and "held by another thread" in err[0]
        view.release()
        with pytest.raises(RuntimeError, match="un-acquired"):
            view.release()
    finally:
        view._detach()
        lock.detach()


def test_lock_timeouts_like_threading():
    """lock_tests' test_timeout: threading's rules, OverflowError past
    threading.TIMEOUT_MAX (and for +inf), TIMEOUT_MAX itself accepted."""
    import math

    for cls in (interlock.Lock, interlock.RLock):
        lock = cls()
        try:
            with pytest.raises(ValueError):
                lock.acquire(False, 1)
            with pytest.raises(ValueError):
                lock.acquire(timeout=-100)
            with pytest.raises(ValueError):
                lock.acquire(timeout=math.nan)
            for big in (1e100, threading.TIMEOUT_MAX + 1, math.inf):
                with pytest.raises(OverflowError):
                    lock.acquire(timeout=big)
            assert not lock.locked()
            assert lock.acquire(timeout=threading.TIMEOUT_MAX) is True
            lock.release()
        finally:
            lock.detach()


def test_lock_is_not_reentrant_across_threads(lock_factory):
    lock = lock_factory()
    lock.acquire()
    out = []
    t = threading.Thread(target=lambda: out.append(lock.acquire(timeout=0.1)))
    t.start()
    t.join()
    assert out == [False]  # another thread waits (and times out), no DeadlockError
    lock.release()


def test_mutual_exclusion_across_processes(lock_factory, mp_ctx, tmp_path):
    lock = lock_factory()
    nproc, n = 4, 150
    rec = h.Record(tmp_path / "counter", nproc + 1, 1, create=True)
    ps = [mp_ctx.Process(target=h.increment_under_lock, args=(lock, rec, i + 1, n))
          for i in range(nproc)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    assert [rec.count(i + 1) for i in range(nproc)] == [n] * nproc
    assert rec.count(0) == nproc * n
    s = lock.statistics()
    assert s.acquisitions >= nproc * n and not s.locked


def test_statistics_and_repr(backend, lock_factory):
    lock = lock_factory()
    with lock:
        s = lock.statistics()
        assert s.locked and s.owner_pid == os.getpid() and s.depth == 1
        assert s.owner_tid == threading.get_native_id()
        if backend.name == "shm":  # the local repr reads the state (a Redis repr makes no call)
            assert "locked by pid" in repr(lock)
    s = lock.statistics()
    assert not s.locked and s.owner_pid == 0 and s.acquisitions == 1
    assert s.owner_deaths == 0 and s.depth == 0
    if backend.name == "shm":
        assert "unlocked" in repr(lock)


def test_lock_pickles_by_name_with_options(lock_factory, mp_ctx):
    lock = lock_factory(on_owner_death="raise")
    import pickle

    lock2 = pickle.loads(pickle.dumps(lock))
    try:
        assert lock2.name == lock.name and lock2._on_death == "raise"
        with lock:
            assert lock2.locked() and not lock2.acquire(False)
    finally:
        lock2.detach()


# --------------------------------------------------------------- RLock


@pytest.mark.threaded_fork("a Redis lock held across the fork keeps the lease keeper "
                           "running: the caller's own multi-threaded fork", backend="redis")
def test_rlock_recursion(rlock_factory, mp_ctx):
    lock = rlock_factory()
    for depth in range(1, 4):
        assert lock.acquire() is True
        assert lock._count() == depth
    assert lock.statistics().depth == 3
    out = mp_ctx.SimpleQueue()
    p = mp_ctx.Process(target=h.try_acquire, args=(lock, out, 0.1))
    p.start()
    p.join(30)
    got, _ = out.get()
    assert got is False  # held: another process cannot take it
    for depth in range(2, -1, -1):
        lock.release()
        assert lock._count() == depth
        assert lock.locked() == (depth > 0)
    with pytest.raises(RuntimeError, match="un-acquired"):
        lock.release()
    with lock:
        with lock:
            assert lock._count() == 2
    assert not lock.locked()


def test_rlock_release_by_non_owner(rlock_factory):
    lock = rlock_factory()
    lock.acquire()
    lock.acquire()
    err = []
    t = threading.Thread(target=lambda: err.append(_raises(lock.release)))
    t.start()
    t.join()
    assert err == [RuntimeError]
    lock.release()
    lock.release()
    assert not lock.locked()


def _raises(fn):
    try:
        fn()
    except Exception as e:
        return type(e)
    return None


# ------------------------------------------------------- owner death


@pytest.mark.parametrize("kind", ["lock", "rlock"])
def test_owner_killed_waiter_takes_over_with_warning(backend, lock_factory, rlock_factory,
                                                     mp_ctx, kind):
    lock = (lock_factory if kind == "lock" else rlock_factory)(owner_dies=True)
    p = start_holder(mp_ctx, lock)
    waiter_result = []

    def waiter():
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            got = lock.acquire(timeout=30)
            waiter_result.append((got, time.monotonic(), list(w)))
            if got:
                lock.release()

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.1)  # the waiter sleeps on the lock
    killed_at = time.monotonic()
    p.kill()
    t.join(30)
    p.join()
    got, got_at, warns = waiter_result[0]
    assert got is True
    # design: one 50 ms slice (1 s on a loaded machine); Redis: when the lease runs out
    assert got_at - killed_at < backend.owner_death_after + 1.0
    assert len(warns) == 1 and issubclass(warns[0].category, OwnerDiedWarning)
    assert str(p.pid) in str(warns[0].message)
    assert lock.statistics().owner_deaths == 1
    assert not lock.locked()


def test_owner_killed_before_anyone_waits(backend, lock_factory, mp_ctx):
    lock = lock_factory(owner_dies=True)
    p = start_holder(mp_ctx, lock)
    p.kill()
    p.join()
    t0 = time.monotonic()
    with pytest.warns(OwnerDiedWarning, match="died holding it"):
        assert lock.acquire(timeout=10) is True
    assert time.monotonic() - t0 < backend.owner_death_after + 1.0 + SLACK
    assert backend.owner_ids(lock) == (os.getpid(), threading.get_native_id())
    lock.release()
    # the lock is healthy again: no further warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with lock:
            pass


def test_owner_died_raise_mode_leaves_lock_held(lock_factory, mp_ctx):
    lock = lock_factory(on_owner_death="raise", owner_dies=True)
    p = start_holder(mp_ctx, lock)
    p.kill()
    p.join()
    with pytest.raises(OwnerDiedError, match="died holding it") as ei:
        lock.acquire(timeout=10)
    assert ei.value.dead_pid == p.pid
    assert ei.value.lock is lock
    assert lock.locked() and lock._is_owned()  # we hold it, like EOWNERDEAD
    lock.release()
    assert not lock.locked()
    with lock:  # healthy again
        pass


def test_owner_died_raise_mode_in_with_releases(lock_factory, mp_ctx):
    lock = lock_factory(on_owner_death="raise", owner_dies=True)
    p = start_holder(mp_ctx, lock)
    p.kill()
    p.join()
    entered = False
    with pytest.raises(OwnerDiedError):
        with lock:
            entered = True
    assert not entered
    assert not lock.locked()  # released before the error propagated
    assert lock.acquire(timeout=1) is True
    lock.release()


def test_owner_died_ignore_mode_is_silent(lock_factory, mp_ctx):
    lock = lock_factory(on_owner_death="ignore", owner_dies=True)
    p = start_holder(mp_ctx, lock)
    p.kill()
    p.join()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lock.acquire(timeout=10) is True
    lock.release()
    assert lock.statistics().owner_deaths == 1


def test_thread_that_ends_holding_the_lock(lock_factory):
    lock = lock_factory(owner_dies=True)
    t = threading.Thread(target=h.thread_exit_holding, args=(lock,))
    t.start()
    t.join()
    assert lock.locked()
    with pytest.warns(OwnerDiedWarning):
        assert lock.acquire(timeout=10) is True
    lock.release()


@pytest.mark.parametrize("kind", ["lock", "rlock"])
def test_new_thread_takes_over_from_a_thread_that_ended_holding_it(lock_factory, rlock_factory,
                                                                   kind):
    """The next thread may get the ended thread's identifiers again
    (threading.get_ident() values are reused): it must not be taken for the
    owner (a DeadlockError, or an RLock "re-entered" without the lock)."""
    lock = (lock_factory if kind == "lock" else rlock_factory)(owner_dies=True)
    t = threading.Thread(target=h.thread_exit_holding, args=(lock,))
    t.start()
    t.join()
    out = []

    def taker():
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            try:
                out.append(lock.acquire(timeout=10))
                out.append(lock._count())
                lock.release()
            except Exception as e:  # reported below
                out.append(e)
            out.append([x.category for x in w])

    t2 = threading.Thread(target=taker)
    t2.start()
    t2.join(30)
    assert out == [True, 1, [OwnerDiedWarning]]
    assert not lock.locked()


def test_owner_stopped_not_dead_is_not_robbed(lock_factory, mp_ctx):
    """A stopped (SIGSTOP) owner is alive: waiters must keep waiting.  (On
    Redis, until its lease runs out: at least 2/3 of the lease after the last
    renewal, 6.7 s with the default 10 s lease, well past this 0.3 s wait; a
    holder stopped for longer is fenced off, tests/test_redis.py.)"""
    lock = lock_factory()
    p = start_holder(mp_ctx, lock)
    os.kill(p.pid, signal.SIGSTOP)
    try:
        assert lock.acquire(timeout=0.3) is False
    finally:
        os.kill(p.pid, signal.SIGCONT)
        p.kill()
        p.join()


def test_nonblocking_acquire_takes_over_from_dead_owner(backend, lock_factory, mp_ctx):
    # pthread_mutex_trylock on a robust mutex returns EOWNERDEAD at once;
    # on Redis, once the dead owner's lease has run out (not before).
    lock = lock_factory(on_owner_death="ignore", owner_dies=True)
    p = start_holder(mp_ctx, lock)
    p.kill()
    p.join()
    if backend.owner_death_after:
        assert lock.acquire(False) is False  # the lease still runs
        assert h.wait_until(lambda: not lock.locked(), backend.owner_death_after + SLACK, 0.05)
    time.sleep(0.1)
    assert lock.acquire(False) is True
    assert lock.statistics().owner_deaths == 1
    lock.release()


# ------------------------------------------- where OwnerDiedWarning points


def _line() -> int:
    """The caller's current line number."""
    return sys._getframe(1).f_lineno


@pytest.mark.parametrize("cls", [interlock.Lock, interlock.RLock])
@pytest.mark.parametrize("how", ["acquire", "with", "tracked acquire", "tracked with"])
def test_owner_died_warning_points_at_the_acquiring_line(cls, how):
    """The warning names the user's line that called acquire() (or the
    ``with`` statement), not the caller's caller, through the plain C path
    and through the lock-order tracking layer (a lock with a level)."""
    lock = cls(level=7) if how.startswith("tracked") else cls()
    try:
        t = threading.Thread(target=h.thread_exit_holding, args=(lock,))
        t.start()
        t.join()  # its owner ended: the next acquire takes over, with the warning
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if how.endswith("with"):
                line = _line() + 1
                with lock:
                    pass
            else:
                line = _line() + 1
                assert lock.acquire(timeout=10)
                lock.release()
        (w,) = [w for w in caught if issubclass(w.category, OwnerDiedWarning)]
        assert (w.filename, w.lineno) == (__file__, line), f"points at {w.filename}:{w.lineno}"
    finally:
        lock.detach()


# --------------------------------------------- a held lock left behind


def _take_after_abandon(name, cls_name, out):
    """Child: wait for the lock (the parent holds it, then drops its last
    handle), report what happened."""
    lock = getattr(interlock, cls_name)(name=name, create=False, on_owner_death="raise")
    t0 = time.monotonic()
    try:
        ok = lock.acquire(timeout=10)
        out.put(("taken", ok, None, time.monotonic() - t0))
    except OwnerDiedError as e:
        out.put(("told", True, e.dead_pid, time.monotonic() - t0))
    lock.release()
    lock.detach()


@pytest.mark.parametrize("cls", [interlock.Lock, interlock.RLock])
def test_held_lock_garbage_collected_is_recovered_by_the_next_process(cls, mp_ctx):
    """The last handle of a held lock is garbage collected: a process that
    waits for the lock gets it within the usual takeover time (one slice),
    told that the holder is gone, instead of waiting forever."""
    lock = cls()
    name = lock.name
    out = interlock.Queue()
    try:
        lock.acquire()
        if cls is interlock.RLock:
            lock.acquire()  # depth 2: the takeover resets it
        p = mp_ctx.Process(target=_take_after_abandon, args=(name, cls.__name__, out))
        p.start()
        deadline = time.monotonic() + 30
        while lock.statistics().waiters == 0:  # the child sleeps in acquire()
            assert time.monotonic() < deadline and p.is_alive()
            time.sleep(0.005)
        t0 = time.monotonic()
        del lock  # the last reference: no release is possible any more
        what, ok, dead_pid, _ = out.get(timeout=10)
        took = time.monotonic() - t0
        p.join(10)
        assert p.exitcode == 0
        assert (what, ok, dead_pid) == ("told", True, os.getpid())
        assert took < 1.5, f"took {took:.2f} s"
    finally:
        out.detach()
    assert not os.path.exists(_segment.path_of(name))  # both handles gone: removed


def _stay_attached(name, cls_name, attached, go):
    lock = getattr(interlock, cls_name)(name=name, create=False)
    attached.set()
    go.wait(30)
    lock.detach()


@pytest.mark.parametrize("cls", [interlock.Lock, interlock.RLock])
def test_held_lock_garbage_collected_then_reattached_by_the_holder(cls):
    """The holding thread itself attaches again (another process kept the
    lock alive) and acquires: it takes the lock over at once, told, instead
    of deadlocking against (or re-entering) its old hold."""
    lock = cls()
    name = lock.name
    attached, go = interlock.Event(), interlock.Event()
    p = mp.get_context("fork").Process(target=_stay_attached,
                                       args=(name, cls.__name__, attached, go))
    p.start()
    again = None
    try:
        assert attached.wait(10)
        lock.acquire()
        del lock
        again = cls(name=name, create=False)
        t0 = time.monotonic()
        with pytest.warns(OwnerDiedWarning, match=str(os.getpid())):
            assert again.acquire(timeout=5)
        assert time.monotonic() - t0 < 0.5
        assert again.statistics().owner_deaths == 1 and again._count() == 1
        again.release()
        assert not again.locked()
    finally:
        go.set()
        p.join(10)
        if again is not None:
            again.detach()
        attached.detach()
        go.detach()


def test_hold_survives_while_another_handle_of_the_process_remains():
    """A process's hold lives on through any of its handles: dropping one
    while another remains neither abandons the lock nor is refused."""
    a = interlock.Lock()
    b = interlock.Lock(name=a.name, create=False)
    try:
        a.acquire()
        a.detach()  # b remains: allowed, the lock stays ours
        assert b.locked() and b._is_owned()
        b.release()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert b.acquire(timeout=1)  # nobody is told of a death
        b.release()
        # garbage collection of a handle while another remains: the same
        c = interlock.Lock(name=a.name, create=False)
        c.acquire()
        del c
        assert b.locked()
        b.release()  # the same thread releases through the remaining handle
        assert not b.locked()
    finally:
        b.detach()


@pytest.mark.parametrize("cls", [interlock.Lock, interlock.RLock])
def test_detach_while_held_is_refused(cls):
    """detach() of the process's last handle while one of its threads holds
    the lock raises RuntimeError and changes nothing; after release it works."""
    lock = cls()
    try:
        lock.acquire()
        with pytest.raises(RuntimeError, match="release it first"):
            lock.detach()
        assert lock._is_owned()  # still attached, still held
        lock.release()
        # held by another thread of this process: refused too
        taken, go = threading.Event(), threading.Event()

        def hold():
            with lock:
                taken.set()
                go.wait(10)

        t = threading.Thread(target=hold)
        t.start()
        assert taken.wait(10)
        try:
            with pytest.raises(RuntimeError, match="release it first"):
                lock.detach()
        finally:
            go.set()
            t.join()
    finally:
        lock.detach()
    lock.detach()  # idempotent


def test_one_long_wait_is_one_contention():
    """Regression: a waiter that waits in phases (the deadlock check runs
    after deadlock_timeout, then every 250 ms) counted a contention per
    phase: one waiter of 1.5 s showed `contentions 6` in `interlock inspect`."""
    import interlock

    old = interlock.deadlock.deadlock_timeout()
    interlock.set_deadlock_timeout(0.05)
    lock = interlock.Lock()
    try:
        lock.acquire()
        waiter = threading.Thread(target=lambda: (lock.acquire(), lock.release()))
        waiter.start()
        deadline = time.monotonic() + 10
        while lock.statistics().contentions == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # the waiter is in the slow path
        time.sleep(0.05 + 4 * 0.25)  # several deadlock-check phases
        assert lock.statistics().waiters == 1
        lock.release()
        waiter.join(10)
        s = lock.statistics()
        assert (s.acquisitions, s.contentions) == (2, 1)
    finally:
        interlock.set_deadlock_timeout(old)
        lock.detach()


def test_tid_reused_by_a_live_thread_is_seen_dead():
    """The word names a TID that a live, unrelated thread has now, but the
    start time packed in owner_hint is not that thread's: the owner that
    took the lock is dead (its TID was reused), and a non-blocking acquire
    takes it over and is told (docs/design/lock.md, TID reuse)."""
    import struct as _struct

    from interlock import _core

    lk = interlock.Lock()
    stop, ready = threading.Event(), threading.Event()
    tids = []

    def bystander():
        tids.append(_core.self_tid())
        ready.set()
        stop.wait(30)

    t = threading.Thread(target=bystander)
    t.start()
    try:
        assert ready.wait(10)
        tid, off, mm = tids[0], lk._seg.object_offset, lk._seg.mm
        real = _core.task_start(tid)
        assert real is not None
        wrong = ((real & 0xFFFFFFFF) + 12345) & 0xFFFFFFFF or 2
        _struct.pack_into("<I", mm, off + _core.MUTEX_OFF_WORD, tid)
        _struct.pack_into("<Q", mm, off + _core.MUTEX_OFF_OWNER_HINT, wrong << 32 | tid)
        _struct.pack_into("<I", mm, off + _core.MUTEX_OFF_OWNER_TID, tid)
        with pytest.warns(interlock.OwnerDiedWarning):
            assert lk.acquire(False) is True
        lk.release()
        # the same word with the bystander's true start time: alive, not taken
        _struct.pack_into("<I", mm, off + _core.MUTEX_OFF_WORD, tid)
        _struct.pack_into("<Q", mm, off + _core.MUTEX_OFF_OWNER_HINT,
                          (real & 0xFFFFFFFF) << 32 | tid)
        assert lk.acquire(False) is False
        _struct.pack_into("<I", mm, off + _core.MUTEX_OFF_WORD, 0)
    finally:
        stop.set()
        t.join(10)
        lk.detach()
