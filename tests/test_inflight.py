"""Objects in flight stay alive (issue 10, item 5; segment.md, "Objects in
flight").

An interlock object pickled for another process (a Pool task's argument, a
spawn child's, an item of a queue) holds its segment with a *ticket* until
the receiver attaches, even if the sender dropped it at once; a ticket never
spent expires after the grace period, and a receiver that comes later gets
an object that raises ObjectFreedError on first use, so that a Pool caller's
``get()`` raises it instead of waiting forever.  Each test fails on the code
before tickets: the temporary's segment was removed at its sender's detach.
"""
from __future__ import annotations

import gc
import os
import pathlib
import pickle
import signal

import pytest

import _helpers as h
import _inflight_tasks as tasks
import interlock
from conftest import run_python
from interlock import _segment
from interlock._shared import FreedObject


def _info(name: str) -> _segment.SegmentInfo | None:
    return next((s for s in _segment.scan() if s.name == name), None)


def _held(name: str) -> bool:
    """The segment is there, with no live user, kept by a ticket only."""
    s = _info(name)
    return s is not None and not s.live_users and s.in_flight > 0


def _expired(name: str) -> bool:
    s = _info(name)
    return s is None or s.in_flight == 0


@pytest.fixture
def short_grace(monkeypatch):
    """Tickets taken by this process expire after 0.5 s."""
    monkeypatch.setattr(_segment, "_inflight_grace", None)
    _segment.set_inflight_grace(0.5)
    yield 0.5


# ------------------------------------------------------- the scenario


def test_pool_apply_async_with_a_temporary_queue_runs_the_task(mp_ctx):
    """``pool.apply_async(f, (interlock.Queue(),))``: the caller's only
    handle is gone once the task is pickled; the worker still attaches."""
    name = h.uname("tmpq")
    gate = interlock.Event()
    try:
        with mp_ctx.Pool(1) as pool:
            busy = pool.apply_async(tasks.wait_for, (gate,))  # the worker reads nothing more
            r = pool.apply_async(tasks.put_get, (interlock.Queue(name=name),))
            gc.collect()
            # The temporary is pickled and dropped: only its ticket holds it.
            assert h.wait_until(lambda: _held(name)), _info(name)
            gate.set()
            assert busy.get(timeout=60) is True
            assert r.get(timeout=60) == b"through the temporary"
            # The worker spent the ticket; its handle went with the task.
            assert h.wait_until(lambda: not os.path.exists(_segment.path_of(name)))
    finally:
        gate.detach()


def test_a_late_pool_receiver_fails_the_task_clearly(mp_ctx, short_grace):
    """The grace period ends before the worker attaches: the task raises
    ObjectFreedError at its first use of the queue, and the caller's
    ``get()`` raises it (before tickets: the worker died unpickling the task
    and ``get()`` waited forever)."""
    name = h.uname("lateq")
    gate = interlock.Event()
    try:
        with mp_ctx.Pool(1) as pool:
            busy = pool.apply_async(tasks.wait_for, (gate,))
            r = pool.apply_async(tasks.put_get, (interlock.Queue(name=name),))
            gc.collect()
            assert h.wait_until(lambda: _held(name)), _info(name)
            assert h.wait_until(lambda: _expired(name))
            gate.set()
            assert busy.get(timeout=60) is True
            with pytest.raises(interlock.ObjectFreedError, match=(
                    rf"interlock Queue '{name}' was freed before this process .* attached to it: "
                    rf"pid {os.getpid()} sent it .* the grace period for objects in flight "
                    r"\(0.5 s\) ended")) as err:
                r.get(timeout=60)
            assert err.value.name == name and err.value.sender_pid == os.getpid()
            assert err.value.age > 0.5
            # The late receiver made the unlink that the last detach deferred.
            assert not os.path.exists(_segment.path_of(name))
    finally:
        gate.detach()


def test_process_with_a_temporary_lock_works(mp_ctx):
    """``Process(target=f, args=(interlock.Lock(),)).start()``: start()
    drops the arguments at once; the child still attaches."""
    p = mp_ctx.Process(target=tasks.use_lock, args=(interlock.Lock(),))
    p.start()
    gc.collect()
    p.join(60)
    assert p.exitcode == 0


# --------------------------------------------------------- tickets, in one process


def test_the_receiver_spends_the_ticket_and_its_detach_removes_the_segment():
    q = interlock.Queue()
    q.put(b"item")
    data = pickle.dumps(q)
    path = _segment.path_of(q.name)
    q.detach()
    assert os.path.exists(path) and _held(q.name)
    r = pickle.loads(data)
    assert r.get(timeout=1) == b"item"
    assert _info(q.name).in_flight == 0  # spent, not left to expire
    r.detach()
    assert not os.path.exists(path)  # at once, not after the grace period


def test_a_pickle_never_unpickled_holds_the_object_for_the_grace_period_only(short_grace):
    q = interlock.Queue(name=h.uname("unsent"))
    q.put(b"kept")
    data = pickle.dumps(q)  # e.g. a task that failed before unpickling its arguments
    name, path = q.name, _segment.path_of(q.name)
    q.detach()
    assert _held(name)
    assert name not in {s.name for s in _segment.clean()}  # collection leaves it
    assert os.path.exists(path)
    assert h.wait_until(lambda: _expired(name))
    assert name in {s.name for s in _segment.clean()}  # then collects it
    assert not os.path.exists(path)
    late = pickle.loads(data)
    assert isinstance(late, FreedObject) and "freed before this process" in repr(late)
    with pytest.raises(interlock.ObjectFreedError, match="grace period"):
        late.get()
    with pytest.raises(FileNotFoundError):  # what a gone name raised before
        late.put(1)


def test_a_late_receiver_finds_a_held_segment_and_removes_it(short_grace):
    """After expiry, the receiver's attach makes the deferred unlink (no
    collection needed), then reports."""
    q = interlock.Lock()
    data = pickle.dumps(q)
    path = _segment.path_of(q.name)
    q.detach()
    assert h.wait_until(lambda: _expired(q.name))
    assert os.path.exists(path)
    late = pickle.loads(data)
    assert not os.path.exists(path)
    with pytest.raises(interlock.ObjectFreedError):
        with late:
            pass


def test_a_pickle_unpickled_twice_covers_one_receiver():
    """A ticket per pickling: the first receiver spends it; a second
    unpickling of the same bytes attaches like a by-name attach, which works
    while someone holds the object, and is a clear error once nobody does."""
    q = interlock.Queue()
    data = pickle.dumps(q)
    q.detach()
    a = pickle.loads(data)
    b = pickle.loads(data)  # a holds it
    a.put(1)
    assert b.get(timeout=1) == 1
    a.detach()
    b.detach()
    assert not os.path.exists(_segment.path_of(q.name))
    c = pickle.loads(data)
    with pytest.raises(interlock.ObjectFreedError, match="ticket was spent"):
        c.qsize()


def test_each_pickling_takes_its_own_ticket():
    q = interlock.Queue()
    blobs = [pickle.dumps(q) for _ in range(3)]
    q.detach()
    assert _info(q.name).in_flight == 3
    got = [pickle.loads(b) for b in blobs]
    assert _info(q.name).in_flight == 0
    for g in got:
        g.detach()
    assert not os.path.exists(_segment.path_of(q.name))


def test_tickets_beyond_the_cap_share_one_that_only_expiry_ends(monkeypatch, short_grace):
    monkeypatch.setattr(_segment, "TICKET_CAP", 3)
    q = interlock.Queue()
    blobs = [pickle.dumps(q) for _ in range(6)]
    q.detach()
    assert _info(q.name).in_flight == 3  # the table does not fill up with tickets
    got = [pickle.loads(b) for b in blobs]  # every receiver attaches
    for g in got:
        g.detach()
    # The shared ticket still holds it (its receivers could not spend it) ...
    assert _held(q.name)
    assert h.wait_until(lambda: _expired(q.name))
    _segment.clean()  # ... until it expires
    assert not os.path.exists(_segment.path_of(q.name))


def test_grace_zero_takes_no_ticket_but_the_receiver_still_reports(monkeypatch):
    monkeypatch.setattr(_segment, "_inflight_grace", None)
    _segment.set_inflight_grace(0)
    q = interlock.Queue()
    data = pickle.dumps(q)
    q.detach()
    assert not os.path.exists(_segment.path_of(q.name))
    late = pickle.loads(data)  # no exception while unpickling
    with pytest.raises(interlock.ObjectFreedError, match=r"\(0 s\)"):
        late.put(1)


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "5", True])
def test_bad_grace_periods_are_refused(bad):
    with pytest.raises((ValueError, TypeError)):
        interlock.set_inflight_grace(bad)


def test_the_environment_variable_sets_the_grace_period():
    code = ("import interlock, pickle, os; from interlock import _segment; "
            "print(_segment.inflight_grace())")
    r = run_python(code, env={**os.environ, "INTERLOCK_INFLIGHT_GRACE": "2.5"})
    assert r.returncode == 0 and r.stdout.strip() == "2.5", r.stderr
    r = run_python(code, env={**os.environ, "INTERLOCK_INFLIGHT_GRACE": "soon"})
    assert r.returncode == 1
    assert "INTERLOCK_INFLIGHT_GRACE='soon' is not a number of seconds" in r.stderr


def test_a_condition_keeps_its_own_lock_alive_in_flight():
    c = interlock.Condition()  # its RLock is its own, found by name on the other side
    lock_path = _segment.path_of(c._lock.name)
    data = pickle.dumps(c)
    c.detach()
    assert os.path.exists(lock_path)
    c2 = pickle.loads(data)
    with c2:
        c2.notify_all()
    c2.detach()
    assert not os.path.exists(lock_path)


def test_a_value_and_its_lock_stay_alive_in_flight():
    v = interlock.Value("i", 7)
    data = pickle.dumps(v)
    v.detach()
    v2 = pickle.loads(data)
    with v2.get_lock():
        assert v2.value == 7
    v2.detach()


def test_an_object_sent_through_a_queue_outlives_its_sender():
    q = interlock.Queue()
    lock = interlock.Lock()
    path = _segment.path_of(lock.name)
    q.put(lock)
    lock.detach()
    assert os.path.exists(path)
    got = q.get(timeout=1)
    assert got.acquire(timeout=1)
    got.release()
    got.detach()
    q.detach()
    assert not os.path.exists(path)


def test_tickets_are_no_users():
    """scan(), statistics() and the registry do not show a ticket as a process."""
    from interlock import _registry

    q = interlock.Queue()
    data = pickle.dumps(q)
    assert _info(q.name).users == (os.getpid(),)
    assert [pid for pid, _ in q._seg.users()] == [os.getpid()]
    assert q.statistics().attached_pids == (os.getpid(),)
    assert [u.pid for u in _registry.inspect(q.name).users] == [os.getpid()]
    q.detach()
    assert _info(q.name).users == ()
    pickle.loads(data).detach()


# ------------------------------------------------------------ crash safety


_PICKLE_AND_DIE = """
import interlock, os, pickle, signal, sys
q = interlock.Queue(name=sys.argv[1] if len(sys.argv) > 1 else {name!r})
q.put(b"from the dead")
with open({out!r}, "wb") as f:
    f.write(pickle.dumps(q))
os.kill(os.getpid(), signal.SIGKILL)   # no detach, no atexit
"""


def test_the_ticket_of_a_killed_sender_holds_the_object_for_its_receiver(tmp_path):
    name, out = h.uname("killed"), str(tmp_path / "q.pickle")
    r = run_python(_PICKLE_AND_DIE.format(name=name, out=out))
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert _held(name)
    _segment.clean()  # the dead sender's segment is not collected: a ticket holds it
    got = pickle.loads(pathlib.Path(out).read_bytes())
    assert got.get(timeout=1) == b"from the dead"
    got.detach()
    assert not os.path.exists(_segment.path_of(name))


def test_the_ticket_of_a_killed_sender_expires_and_the_segment_is_collected(tmp_path):
    name, out = h.uname("killed-late"), str(tmp_path / "q.pickle")
    r = run_python(_PICKLE_AND_DIE.format(name=name, out=out),
                   env={**os.environ, "INTERLOCK_INFLIGHT_GRACE": "0.3"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert h.wait_until(lambda: _expired(name))
    assert name in {s.name for s in _segment.clean()}
    assert not os.path.exists(_segment.path_of(name))
    late = pickle.loads(pathlib.Path(out).read_bytes())
    with pytest.raises(interlock.ObjectFreedError, match=r"\(0.3 s\) ended"):
        late.get()


def test_an_unrelated_process_receives_a_pickle_after_the_sender_dropped_it(tmp_path):
    q = interlock.Queue()
    q.put(b"hello")
    out = tmp_path / "q.pickle"
    out.write_bytes(pickle.dumps(q))
    q.detach()
    r = run_python(f"import pickle; q = pickle.loads(open({str(out)!r}, 'rb').read()); "
                   "print(q.get(timeout=5))")
    assert r.returncode == 0 and r.stdout.strip() == "b'hello'", r.stderr
    assert not os.path.exists(_segment.path_of(q.name))


def test_raw_values_and_arrays_stay_alive_in_flight():
    v = interlock.RawValue("i", 3)
    a = interlock.RawArray("d", [1.0, 2.0])
    data = pickle.dumps((v, a))
    del v, a
    gc.collect()
    v2, a2 = pickle.loads(data)
    assert v2.value == 3 and list(a2) == [1.0, 2.0]


def test_a_freed_value_fails_on_first_use(short_grace):
    v = interlock.Value("i", 7)
    data = pickle.dumps(v)
    v.detach()
    assert h.wait_until(lambda: not any(s.in_flight for s in _segment.scan()
                                        if s.name == v.name))
    late = pickle.loads(data)
    with pytest.raises(interlock.ObjectFreedError):
        _ = late.value


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_child_killed_before_it_attached_leaves_no_ticket_behind(method):
    """The tickets taken while starting a child are withdrawn at the
    sender's detach once that child has exited without spending them (a
    pipeline stopped while its workers were starting): nothing is left for
    the grace period."""
    import multiprocessing

    q = interlock.Queue()
    p = multiprocessing.get_context(method).Process(target=tasks.put_get, args=(q,))
    p.start()
    p.kill()  # (a spawn child takes far longer than this to unpickle its arguments)
    p.join(30)
    q.detach()
    assert not os.path.exists(_segment.path_of(q.name))
