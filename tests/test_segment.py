"""Named segments: attach by name, create/attach rules, and lifetime.

The lifetime rule: a segment's name lives while some process uses it and
goes when the last one detaches or dies (swept).  Python's own
``SharedMemory`` gets this wrong under ``resource_tracker`` (the creator's
exit unlinks it under the feet of the others, cpython#82300): the test
``test_creator_exits_child_keeps_using`` pins that case down.
"""
from __future__ import annotations

import os
import signal
import time

import pytest

import interlock
from interlock import _segment

import _helpers as h
from conftest import run_python


def exists(name: str) -> bool:
    return os.path.exists(_segment.path_of(name))


def users(name: str) -> list[int]:
    for info in _segment.scan():
        if info.name == name:
            return sorted(info.live_users)
    return []


# ------------------------------------------------------- create / attach


def test_named_queue_create_and_attach():
    name = h.uname("q")
    assert not exists(name)
    q = interlock.Queue(4, name=name)
    try:
        assert q.name == name and exists(name)
        q2 = interlock.Queue(name=name)  # attach; maxsize 0 means "whatever it is"
        q2.put("via q2")
        assert q.get_nowait() == "via q2" and q2.maxsize == 4
        q2.detach()
        assert exists(name)  # q still uses it
    finally:
        q.detach()
    assert not exists(name)


def test_create_true_on_existing_raises_file_exists():
    name = h.uname("q")
    q = interlock.Queue(name=name, create=True)
    try:
        with pytest.raises(FileExistsError, match=name):
            interlock.Queue(name=name, create=True)
        with pytest.raises(FileExistsError):
            interlock.Lock(name=name, create=True)
        q.put(1)
        assert q.get() == 1
    finally:
        q.detach()


def test_create_false_on_missing_raises_file_not_found():
    name = h.uname("missing")
    with pytest.raises(FileNotFoundError, match=name):
        interlock.Queue(name=name, create=False)
    with pytest.raises(FileNotFoundError):
        interlock.Lock(name=name, create=False)
    assert not exists(name)


@pytest.mark.parametrize("mine,theirs", [
    (dict(maxsize=3), dict(maxsize=4)),
    (dict(capacity=4096), dict(capacity=8192)),
])
def test_attach_with_mismatched_parameters_raises(mine, theirs):
    name = h.uname("q")
    q = interlock.Queue(name=name, **mine)
    try:
        with pytest.raises(ValueError, match="exists with maxsize"):
            interlock.Queue(name=name, **theirs)
        # matching or unspecified parameters attach fine
        interlock.Queue(name=name, **mine).detach()
        interlock.Queue(name=name).detach()
        assert users(name) == [os.getpid()]
    finally:
        q.detach()
    assert not exists(name)


def test_attach_from_an_unrelated_process():
    name = h.uname("q")
    q = interlock.Queue(name=name)
    lock = interlock.Lock(name=h.uname("lock"))
    try:
        q.put({"from": "parent"})
        code = (
            "import interlock\n"
            f"q = interlock.Queue(name={name!r}, create=False)\n"
            "x = q.get(timeout=10)\n"
            "q.put(('child saw', x))\n"
            f"lock = interlock.Lock(name={lock.name!r}, create=False)\n"
            "print(lock.acquire(timeout=0.1))\n"
        )
        with lock:
            r = run_python(code)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "False"  # we held the lock meanwhile
        assert q.get(timeout=5) == ("child saw", {"from": "parent"})
        assert users(name) == [os.getpid()]  # the child's slot went with it
    finally:
        q.detach()
        lock.detach()


def test_unrelated_process_attaches_by_name_of_anonymous_queue():
    q = interlock.Queue()
    try:
        r = run_python(f"import interlock; interlock.Queue(name={q.name!r}, create=False).put(42)")
        assert r.returncode == 0, r.stderr
        assert q.get(timeout=5) == 42
    finally:
        q.detach()


# ---------------------------------------------------------------- lifetime


def test_unlinked_when_last_user_detaches(mp_ctx):
    q = interlock.Queue()
    name = q.name
    ready, go = mp_ctx.Event(), mp_ctx.Event()
    p = mp_ctx.Process(target=h.attach_put_wait, args=(name, ["hello"], ready, go))
    p.start()
    assert ready.wait(30)
    assert users(name) == sorted([os.getpid(), p.pid])
    q_get = q.get(timeout=5)
    assert q_get == "hello"
    q.detach()
    assert exists(name)  # the child still uses it
    go.set()
    p.join(30)
    assert p.exitcode == 0
    assert not exists(name)  # the child was the last: it removed the name


@pytest.mark.parametrize("kind", ["Queue", "Lock"])
def test_child_given_object_as_argument_releases_it_at_exit(mp_ctx, kind):
    """Regression: multiprocessing children clear the Finalize registry and
    leave through os._exit (fork, forkserver), so a child that was the last
    user of an object it got as an argument left the segment behind."""
    obj = getattr(interlock, kind)()
    name = obj.name
    ready, go = mp_ctx.Event(), mp_ctx.Event()
    p = mp_ctx.Process(target=h.keep_until, args=(obj, ready, go))
    p.start()
    assert ready.wait(30)
    if kind == "Queue":
        assert obj.get(timeout=5) == ("child", p.pid)
    obj.detach()
    assert users(name) == [p.pid]
    go.set()
    p.join(30)
    assert p.exitcode == 0
    assert not exists(name)


def test_creator_exits_others_keep_using(mp_ctx):
    """The resource_tracker failure case: the creator leaves first, another
    process goes on using the queue, and the name stays until it is done."""
    name = h.uname("q")
    ready, go = mp_ctx.Event(), mp_ctx.Event()
    p = mp_ctx.Process(target=_create_and_wait, args=(name, ready, go))
    p.start()
    assert ready.wait(30)
    q = interlock.Queue(name=name, create=False)
    try:
        assert not q._seg.created
        go.set()
        p.join(30)
        assert p.exitcode == 0  # the creator exited normally (atexit, finalizers ran)
        time.sleep(0.2)  # a resource tracker, were one involved, would act now
        assert exists(name)
        assert users(name) == [os.getpid()]
        assert q.get(timeout=5) == "made by the child"
        q.put("still works")
        assert q.get() == "still works"
        # and others can still attach by name
        r = run_python(f"import interlock; interlock.Queue(name={name!r}, create=False).put(7)")
        assert r.returncode == 0, r.stderr
        assert q.get(timeout=5) == 7
    finally:
        q.detach()
    assert not exists(name)


def test_creator_alone_exits_name_goes_with_it(mp_ctx):
    name = h.uname("q")
    p = mp_ctx.Process(target=h.create_put_exit, args=(name, [1, 2, 3]))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    assert not exists(name)


def _create_and_wait(name, ready, go):
    q = interlock.Queue(name=name, create=True)
    q.put("made by the child")
    ready.set()
    go.wait(30)


def test_fork_child_is_a_user_of_inherited_objects():
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    q = interlock.Queue()
    name = q.name
    ready, go = ctx.Event(), ctx.Event()
    # The child does not unpickle anything: it inherits q through fork.
    p = ctx.Process(target=_use_inherited, args=(ready, go))
    global _INHERITED
    _INHERITED = q
    try:
        p.start()
    finally:
        _INHERITED = None
    assert ready.wait(30)
    assert os.getpid() in users(name) and p.pid in users(name)
    q.detach()
    assert exists(name)
    go.set()
    p.join(30)
    assert p.exitcode == 0
    assert not exists(name)


_INHERITED = None


def _use_inherited(ready, go):
    _INHERITED.put("child")
    ready.set()
    go.wait(30)
    assert _INHERITED.get(timeout=5) == "child"


def test_swept_after_sigkill_of_all_users(mp_ctx):
    name = h.uname("q")
    readies = []
    procs = []
    q = interlock.Queue(name=name)
    for _ in range(2):
        ready = mp_ctx.Event()
        p = mp_ctx.Process(target=h.attach_and_hang, args=(q, ready))
        p.start()
        procs.append(p)
        readies.append(ready)
    for r in readies:
        assert r.wait(30)
    q.put("left behind")
    q.detach()  # now only the children use it
    assert users(name) == sorted(p.pid for p in procs)
    for p in procs:
        p.kill()
        p.join()
    # Dead users cannot detach: the file stays until someone sweeps.
    assert exists(name)
    (info,) = [s for s in _segment.scan() if s.name == name]
    assert info.live_users == () and len(info.users) == 2
    # Attaching sweeps the dead slots; the data is still there; detaching
    # as the only user removes the name.
    q2 = interlock.Queue(name=name, create=False)
    assert users(name) == [os.getpid()]
    assert q2.get_nowait() == "left behind"
    q2.detach()
    assert not exists(name)


def test_clean_removes_segments_of_dead_processes(mp_ctx):
    lock = interlock.Lock(name=h.uname("lock"))
    name = lock.name
    ready = mp_ctx.Event()
    p = mp_ctx.Process(target=h.attach_and_hang, args=(lock, ready))
    p.start()
    assert ready.wait(30)
    lock.detach()
    assert [s.name for s in _segment.clean(remove=False) if s.name == name] == []  # alive
    p.kill()
    p.join()
    assert exists(name)
    dead = [s for s in _segment.clean(remove=False) if s.name == name]
    assert len(dead) == 1 and dead[0].kind == "Lock" and dead[0].creator_pid == os.getpid()
    assert exists(name)  # remove=False
    assert [s.name for s in _segment.clean() if s.name == name] == [name]
    assert not exists(name)


def test_the_collection_at_creation_looks_at_a_bounded_batch_and_walks_them_all(monkeypatch):
    """The collection a creation runs looks at COLLECT_BATCH entries at
    most, resuming where the previous one stopped: all dead segments go in
    a few collections.  Before: each collection scanned every entry, and
    with 100,000 objects a scan outlasted the 10 s interval, so every
    creation ran one: 100,000 Locks did not finish in 300 s, 39 s now)."""
    base = h.uname("gc")
    names = [f"{base}-x{i}" for i in range(10)]
    live = [interlock.Lock(name=f"{base}-a{i}") for i in range(4)]  # sorted first
    code = ("import interlock, os, signal\n"
            f"locks = [interlock.Lock(name=n) for n in {names!r}]\n"
            "os.kill(os.getpid(), signal.SIGKILL)")
    assert run_python(code).returncode == -signal.SIGKILL
    assert all(exists(n) for n in names)
    seen: list[list[str] | None] = []
    real_scan = _segment.scan

    def recording_scan(entries=None):
        seen.append(list(entries) if entries is not None else None)
        return real_scan(entries)

    monkeypatch.setattr(_segment, "scan", recording_scan)
    monkeypatch.setattr(_segment, "COLLECT_BATCH", 4)
    monkeypatch.setattr(_segment, "_collect_after", "")
    try:
        left = []
        for _ in range(5):  # 10 dead (and whatever else is there) in batches of 4
            monkeypatch.setattr(_segment, "_last_collect", 0.0)
            _segment._maybe_collect()
            left.append(sum(exists(n) for n in names))
        assert seen and all(batch is not None and len(batch) <= 4 for batch in seen)
        assert left[0] >= 6  # the first collection looked at 4 entries at most
        assert left[-1] == 0, left  # ...and the walk went past the live ones to the rest
        assert all(exists(lk.name) for lk in live)
    finally:
        for lk in live:
            lk.detach()
        for n in names:
            interlock.unlink(n)


def test_unlink_removes_name_but_users_keep_working(mp_ctx):
    name = h.uname("q")
    q = interlock.Queue(name=name)
    try:
        q.put("old")
        q.unlink()
        assert not exists(name)
        q.unlink()  # idempotent
        q.put("still works")
        assert q.get() == "old" and q.get() == "still works"
        with pytest.raises(FileNotFoundError):
            interlock.Queue(name=name, create=False)
        fresh = interlock.Queue(name=name)  # a new, different queue
        try:
            assert fresh.empty()
            fresh.put("new")
            assert q.empty()
        finally:
            fresh.detach()
        assert not exists(name)
    finally:
        q.detach()
    assert not exists(name)


def test_unlink_then_detach_does_not_remove_a_new_segment_of_the_same_name():
    name = h.uname("q")
    old = interlock.Queue(name=name)
    old.unlink()
    new = interlock.Queue(name=name)
    try:
        old.detach()  # must not remove the new file
        assert exists(name)
        new.put(1)
        assert new.get() == 1
    finally:
        new.detach()
    assert not exists(name)


def test_detach_is_idempotent_and_other_handles_live_on():
    name = h.uname("q")
    a = interlock.Queue(name=name)
    b = interlock.Queue(name=name)
    a.detach()
    a.detach()
    assert exists(name)
    b.put(1)
    assert b.get() == 1
    assert "detached" in repr(a)
    b.detach()
    assert not exists(name)


def test_garbage_collection_detaches():
    import gc

    q = interlock.Queue()
    name = q.name
    del q
    gc.collect()
    assert not exists(name)


def test_exit_without_detach_removes_name():
    name = h.uname("q")
    r = run_python(
        f"import interlock; q = interlock.Queue(name={name!r}); q.put(1); "
        f"l = interlock.RLock(name={name + 'l'!r}); l.acquire()")
    assert r.returncode == 0, r.stderr
    assert not exists(name) and not exists(name + "l")


def test_sigkilled_creator_leaves_file_that_next_user_sweeps():
    name = h.uname("q")
    code = (f"import interlock, os, signal; q = interlock.Queue(name={name!r}); q.put('x'); "
            "os.kill(os.getpid(), signal.SIGKILL)")
    r = run_python(code)
    assert r.returncode == -signal.SIGKILL
    assert exists(name)
    q = interlock.Queue(name=name)  # attaches (the data survived), sweeps the dead slot
    assert not q._seg.created and q.get_nowait() == "x"
    q.detach()
    assert not exists(name)


def test_no_temp_files_left_after_creation_races(mp_ctx):
    """Several processes create-or-attach the same name at once: one creates,
    the others attach, no temp file stays behind."""
    name = h.uname("race")
    out = interlock.Queue()
    try:
        ps = [mp_ctx.Process(target=_create_or_attach, args=(name, out)) for _ in range(4)]
        for p in ps:
            p.start()
        for p in ps:
            p.join(30)
            assert p.exitcode == 0
        created = [out.get(timeout=5) for _ in ps]
        assert created.count(True) >= 1
        left = [e for e in os.listdir("/dev/shm") if str(ps[0].pid) in e and "tmp" in e]
        assert left == []
    finally:
        out.detach()
    assert not exists(name)


def test_attach_to_a_segment_being_unlinked():
    """Regression: attaching to a segment whose last user is unlinking it
    (the ``unlinked`` mark set, the name not yet gone) must retry or report
    it missing; it closed its file descriptor twice (EBADF, or worse,
    closing another thread's new descriptor)."""
    import struct

    name = h.uname("dying")
    q = interlock.Queue(name=name)
    struct.pack_into("<I", q._seg.mm, _segment.OFF_UNLINKED, 1)  # mid-unlink, frozen
    try:
        spare = os.open("/dev/null", os.O_RDONLY)  # would be the next fd closed by mistake
        try:
            with pytest.raises(FileNotFoundError, match=name):
                interlock.Queue(name=name, create=False)
            os.fstat(spare)  # still open
        finally:
            os.close(spare)
    finally:
        struct.pack_into("<I", q._seg.mm, _segment.OFF_UNLINKED, 0)
        q.detach()
    assert not exists(name)


def _create_or_attach(name, out):
    q = interlock.Queue(name=name)
    out.put(q._seg.created)
    q.put(1)


def test_scan_reports_users():
    name = h.uname("q")
    q = interlock.Queue(name=name)
    try:
        (info,) = [s for s in _segment.scan() if s.name == name]
        assert info.valid and info.kind == "Queue" and info.live_users == (os.getpid(),)
        assert info.size == os.path.getsize(_segment.path_of(name))
    finally:
        q.detach()


def test_segment_file_is_private():
    q = interlock.Queue()
    try:
        st = os.stat(_segment.path_of(q.name))
        assert st.st_mode & 0o777 == 0o600 and st.st_uid == os.getuid()
    finally:
        q.detach()
