"""Value and Array in shared memory, and guarded_by catching races.

The lecture's lost-update counter, three ways: unguarded it loses updates,
guarded it raises at the first unlocked access, locked it is exact.
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import pickle
import threading

import pytest

import interlock
from interlock import Array, UnguardedAccessError, Value

N_PROCS = 3
N_INCR = 2000


def _add_unlocked(v, n, barrier):
    barrier.wait(30)  # all start together: the race needs overlap, not luck
    for _ in range(n):
        tmp = v.value
        os.sched_yield()  # widen the window between read and write, as a busy machine would
        v.value = tmp + 1


def _add_locked(v, n):
    for _ in range(n):
        with v.get_lock():
            tmp = v.value
            os.sched_yield()
            v.value = tmp + 1


def _add_guarded_wrong(v, q):
    try:
        v.value += 1
        q.put("no error")
    except UnguardedAccessError as e:
        q.put(str(e))


def _fill(a):
    with a.get_lock():
        for i in range(len(a)):
            a[i] = i * i


def _run(ctx, target, args, n=N_PROCS):
    ps = [ctx.Process(target=target, args=args) for _ in range(n)]
    [p.start() for p in ps]
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    return ps


class TestLostUpdate:
    def test_unguarded_loses_updates(self):
        v = Value("q", 0)
        ctx = mp.get_context("fork")
        _run(ctx, _add_unlocked, (v, N_INCR, ctx.Barrier(N_PROCS)))
        assert v.value < N_PROCS * N_INCR  # the race, visible as a wrong total

    def test_guarded_raises_at_first_unlocked_access(self):
        c = mp.get_context("fork")
        v = Value("q", 0, guarded_by=True, name=f"t-counter-{os.getpid()}")
        q = c.Queue()
        _run(c, _add_guarded_wrong, (v, q), n=1)
        msg = q.get(timeout=10)
        assert "t-counter" in msg and v.get_lock().name in msg
        with pytest.raises(UnguardedAccessError):
            _ = v.value
        with pytest.raises(UnguardedAccessError):
            v.value = 3
        with v.get_lock():
            assert v.value == 0

    @pytest.mark.parametrize("ctx", ["fork", "spawn"])
    def test_locked_is_exact(self, ctx):
        v = Value("q", 0, guarded_by=True)
        _run(mp.get_context(ctx), _add_locked, (v, N_INCR // 4))
        with v:
            assert v.value == N_PROCS * (N_INCR // 4)


class TestValue:
    @pytest.mark.parametrize("code", list("bBhHiIlLqQfd"))
    def test_typecodes_match_ctypes(self, code):
        v = Value(code, 7)
        assert v.value == 7
        v.value = 5
        assert v.value == 5
        assert ctypes.sizeof(v.get_obj()) == ctypes.sizeof(interlock._value.TYPECODES[code])

    def test_char_and_defaults(self):
        assert Value("c", b"x").value == b"x"
        assert Value("i").value == 0
        assert Value(ctypes.c_double, 1.5).value == 1.5
        with pytest.raises(TypeError):
            Value("z")
        with pytest.raises(TypeError):
            Value("i", "nope")

    def test_lock_options(self):
        v = Value("i", 1)
        assert isinstance(v.get_lock(), interlock.RLock)
        with v:
            with v:  # re-entrant, like multiprocessing's default RLock
                v.value += 1
        lk = interlock.Lock()
        w = Value("i", lock=lk)
        assert w.get_lock() is lk
        r = Value("i", lock=False)
        with pytest.raises(AttributeError):
            r.get_lock()
        with pytest.raises(TypeError):
            Value("i", lock=threading.Lock())

    def test_guarded_by_other_lock_and_threads(self):
        lk = interlock.Lock()
        v = Value("i", 0, guarded_by=lk)
        errors = []

        def t():
            try:
                _ = v.value
            except UnguardedAccessError:
                errors.append(1)

        with lk:
            v.value = 1
            th = threading.Thread(target=t)  # another thread: does not hold lk
            th.start()
            th.join()
        assert errors == [1]

    def test_attach_by_name_and_pickle(self):
        v = Value("d", 2.5, name=f"t-val-{os.getpid()}")
        w = Value("d", name=v.name, create=False)
        assert w.value == 2.5 and w.get_lock().name == v.get_lock().name
        with pytest.raises(ValueError):
            Value("i", name=v.name, create=False)
        u = pickle.loads(pickle.dumps(v))
        u.value = 4.0
        assert v.value == 4.0


class TestArray:
    def test_index_slice_iter(self):
        a = Array("i", [1, 2, 3, 4])
        assert len(a) == 4 and a[0] == 1 and a[-1] == 4 and a[1:3] == [2, 3]
        a[1:3] = [20, 30]
        assert list(a) == [1, 20, 30, 4]
        with pytest.raises(IndexError):
            a[4]
        assert Array("d", 3)[:] == [0.0, 0.0, 0.0]
        assert len(Array("i", 0)) == 0  # as multiprocessing: an empty array is an array
        with pytest.raises(ValueError):
            Array("i", -1)

    def test_char_array(self):
        a = Array("c", b"hello")
        assert a.value == b"hello" and a.raw == b"hello"
        a.value = b"hi"
        assert a.value == b"hi"

    def test_guarded_array(self):
        a = Array("i", 3, guarded_by=True)
        with pytest.raises(UnguardedAccessError):
            a[0]
        with pytest.raises(UnguardedAccessError):
            a[0] = 1
        with a.get_lock():
            a[0] = 1
            assert a[:] == [1, 0, 0]

    @pytest.mark.parametrize("ctx", ["fork", "spawn"])
    def test_child_writes(self, ctx):
        a = Array("q", 10)
        _run(mp.get_context(ctx), _fill, (a,), n=1)
        assert a[:] == [i * i for i in range(10)]
