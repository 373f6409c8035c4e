"""multiprocessing.sharedctypes' API on interlock (issue 10, items 4 and 7):
lock=True/None/False/<lock>, get_lock/get_obj, RawValue/RawArray, ctypes
Structures and arrays of them, pickling by name under fork and spawn,
generic typing and queues as context managers."""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import pickle
import subprocess
import sys
import textwrap
import threading

import pytest

import interlock
from interlock import Array, RawArray, RawValue, Value


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_double)]


class Segment(ctypes.Structure):
    _fields_ = [("a", Point), ("b", Point), ("tag", ctypes.c_char * 8)]


def _run(ctx, target, *args):
    p = mp.get_context(ctx).Process(target=target, args=args)
    p.start()
    p.join(60)
    assert p.exitcode == 0


def _child_write(v, a, rv, ra, obj):
    v.x += 10
    a[1].y = 9.5
    rv.value = 42
    ra[:] = [7, 8, 9]
    obj.value = 3  # get_obj()'s raw object, passed on by itself


def _child_nested(n, seg):
    n[1][2] = 5
    seg.b.x = 11
    seg.tag = b"child"


@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_every_form_crosses_processes(ctx):
    v = Value(Point, 1, 2.5)
    a = Array(Point, [(1, 2.0), (3, 4.0)])
    rv = RawValue("i", 0)
    ra = RawArray(ctypes.c_long, 3)
    w = Value("q", 0)
    _run(ctx, _child_write, v, a, rv, ra, w.get_obj())
    assert (v.x, v.y) == (11, 2.5)
    assert (a[1].x, a[1].y) == (3, 9.5)
    assert rv.value == 42 and ra[:] == [7, 8, 9]
    assert w.value == 3


@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_nested_arrays_and_structures(ctx):
    n = Array(ctypes.c_int * 3, 2)
    seg = Value(Segment)
    _run(ctx, _child_nested, n, seg)
    assert n[1][:] == [0, 0, 5] and n[0][:] == [0, 0, 0]
    assert seg.b.x == 11 and seg.tag == b"child"


def test_lock_forms():
    v = Value("i", 5)
    assert isinstance(v.get_lock(), interlock.RLock)
    assert isinstance(Value("i", 5, lock=None).get_lock(), interlock.RLock)  # None: a new one
    lk = interlock.Lock()
    w = Value("i", 5, lock=lk)
    assert w.get_lock() is lk
    with w.get_lock():  # a plain Lock held by this thread is not taken again
        w.value += 1
    assert w.value == 6
    raw = Value("i", 5, lock=False)  # multiprocessing: the raw object itself
    assert isinstance(raw, ctypes.c_int) and raw.value == 5
    assert not hasattr(raw, "get_lock") and not hasattr(raw, "get_obj")
    with pytest.raises(AttributeError):  # multiprocessing raises AttributeError too
        Value("i", lock="notalock")
    with pytest.raises(TypeError, match="one process"):
        Value("i", lock=threading.Lock())
    with pytest.raises(TypeError, match="one process"):
        Array("i", 3, lock=mp.get_context("fork").Lock())


def test_each_access_takes_the_lock():
    """As multiprocessing's wrapper: a reader is kept out while another
    thread holds the lock (a slice is a consistent snapshot)."""
    a = Array("i", [1, 2, 3])
    got = []
    with a.get_lock():
        t = threading.Thread(target=lambda: got.append(a[:]))
        t.start()
        t.join(0.3)
        assert t.is_alive() and got == []  # blocked on the lock
        a[:] = [4, 5, 6]
    t.join(10)
    assert got == [[4, 5, 6]]


def test_get_obj_is_the_shared_memory():
    a = Array("d", 4)
    obj = a.get_obj()
    assert isinstance(obj, ctypes.Array) and len(obj) == 4
    obj[2] = 1.5
    assert a[2] == 1.5
    np = pytest.importorskip("numpy")
    view = np.frombuffer(obj, dtype=np.float64)
    view[0] = 7.0
    assert a[0] == 7.0


def test_raw_objects_are_ctypes_and_pickle_by_name():
    rv = RawValue(Point, 3, 4.0)
    assert isinstance(rv, Point)
    rv2 = pickle.loads(pickle.dumps(rv))
    rv2.x = 30
    assert rv.x == 30
    ra = RawArray("c", b"hello")
    assert ra.value == b"hello" and ra.raw == b"hello"
    ra2 = pickle.loads(pickle.dumps(ra))
    ra2.value = b"hi"
    assert ra.value == b"hi"
    assert repr(RawValue("i", 5)) == "c_int(5)"


def test_attach_by_name_checks_the_layout():
    v = RawValue(Point, 1, 2.0, name="t-sct-point")
    w = Value(Point, name="t-sct-point", create=False)
    assert w.x == 1
    with pytest.raises(AttributeError):  # made raw: attaching takes the creator's choice
        w.get_lock()

    class Other(ctypes.Structure):
        _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_int)]  # same size, other layout

    with pytest.raises(ValueError, match="holds"):
        RawValue(Other, name="t-sct-point", create=False)
    with pytest.raises(interlock.SegmentError, match="is a Value"):
        RawArray(Point, 2, name="t-sct-point", create=False)
    del v, w


def test_value_of_array_type_and_structure_fields():
    v = Value(ctypes.c_int * 3, 1, 2, 3)
    assert v[:] == [1, 2, 3] and len(v) == 3
    p = Value(Point, 1, 2.0)
    p.y = 3.5
    assert p.get_obj().y == 3.5 and isinstance(p, Value)
    with pytest.raises(TypeError, match="pointer"):
        Value(ctypes.c_char_p)

    class WithPtr(ctypes.Structure):
        _fields_ = [("p", ctypes.POINTER(ctypes.c_int))]

    with pytest.raises(TypeError, match="pointer"):
        RawArray(WithPtr, 2)


def test_guarded_by_kept_for_structures():
    p = Value(Point, guarded_by=True)
    with pytest.raises(interlock.UnguardedAccessError):
        p.x = 1
    with p:
        p.x = 1
        assert p.x == 1
    lk = interlock.Lock()
    g = Value("i", 0, lock=False, guarded_by=lk)  # a wrapper: guarded, no own lock
    with pytest.raises(interlock.UnguardedAccessError):
        _ = g.value
    with lk:
        g.value = 2
    with pytest.raises(AttributeError):
        g.get_lock()


def test_generic_aliases_at_run_time():
    for alias in (interlock.Queue[int], interlock.SimpleQueue[bytes],
                  interlock.JoinableQueue[str], Value[int], Array[float]):
        assert alias.__origin__ in (interlock.Queue, interlock.SimpleQueue,
                                    interlock.JoinableQueue, Value, Array)
    q = interlock.Queue[int]()
    assert type(q) is interlock.Queue
    q.put(1)
    assert q.get() == 1
    q.detach()


def test_queue_context_manager_detaches_not_closes():
    with interlock.Queue(name="t-sct-q") as q:
        other = interlock.Queue(name="t-sct-q", create=False)
        q.put(1)
    assert "detached" in repr(q)
    other.put(2)  # not closed: the other handle still works
    assert other.get() == 1 and other.get() == 2
    other.detach()


TYPED = '''
from __future__ import annotations
import interlock

def consume(q: interlock.Queue[int]) -> int:
    return q.get() + 1

def counter(v: interlock.Value[int]) -> int:
    return v.value + 1

q: interlock.Queue[int] = interlock.Queue()
q.put(1)
n: int = consume(q)
s: interlock.SimpleQueue[bytes] = interlock.SimpleQueue()
b: bytes = s.get()
j: interlock.JoinableQueue[str] = interlock.JoinableQueue()
with interlock.Queue() as q2:
    q2.put("anything")
v = interlock.Value("i", 0)
counter(v)
a: interlock.Array[float] = interlock.Array("d", 3)
'''

BAD = TYPED + '''
q.put("not an int")
'''


def test_mypy_strict_accepts_the_generics(tmp_path):
    pytest.importorskip("mypy")
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text(textwrap.dedent(TYPED))
    bad.write_text(textwrap.dedent(BAD))

    def mypy(path):
        return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                               "--cache-dir", str(tmp_path / "cache"), str(path)],
                              capture_output=True, text=True, timeout=300)

    r = mypy(good)
    assert r.returncode == 0, r.stdout + r.stderr
    r = mypy(bad)  # and the parameter means something: a str is refused
    assert r.returncode == 1 and "arg-type" in r.stdout, r.stdout
