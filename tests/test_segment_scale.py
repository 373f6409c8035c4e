"""Segments under numbers: forked children that never use an object, many
objects in one process, many processes on one object.

- A forked child holds only what it uses (docs/design/segment.md, "Fork"):
  raw forks, fork+exec and ``preexec_fn`` children hold no slot and keep
  nothing alive; a child that uses an inherited object becomes a user then,
  even after the parent detached.
- No descriptor per object: a process with a soft RLIMIT_NOFILE of 256
  holds thousands of objects.
- No 256-process limit: 1,000 processes attach to one object at once; the
  table grows by pages, and a process killed while growing it leaves it
  sane.

The scenarios fork, so they run in a fresh ``python -c`` process (small to
fork, single-threaded) and report JSON on their last line of output.
"""
from __future__ import annotations

import json
import os
import textwrap

import pytest

import interlock
from interlock import _crash, _segment
from interlock.errors import SegmentError

import _helpers as h
from conftest import run_python

PRELUDE = """
import json, os, sys, time
import interlock
from interlock import _segment, _crash
def exists(name):
    return os.path.exists(_segment.path_of(name))
def pids(obj):
    return sorted(p for p, _ in obj._seg.users())
"""


def scenario(code: str, timeout: float = 120, crashpoints: bool = False,
             **names: object) -> dict:
    """Run ``code`` in a fresh interpreter; with ``crashpoints``, in the test
    build whose crash points can be armed (tests/_testbuild.py)."""
    head = "".join(f"{k} = {v!r}\n" for k, v in names.items())
    env = None
    if crashpoints:
        from _testbuild import crashpoint_build
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(crashpoint_build()), *filter(None, [os.environ.get("PYTHONPATH")])])}
    r = run_python(PRELUDE + head + textwrap.dedent(code), timeout=timeout, env=env)
    assert r.returncode == 0, f"scenario failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


# ------------------------------------------------ forked children that do not use it


def test_raw_fork_children_hold_no_slot_and_keep_nothing_alive():
    """300 live raw-fork children: not users (before: each claimed a slot at
    fork, 256 of them filled the table, and the parent's detach left the
    segments to them)."""
    out = scenario("""
        q = interlock.Queue(name=N + "-q")
        lock = interlock.Lock(name=N + "-l")
        r, w = os.pipe()
        kids = []
        for _ in range(300):
            pid = os.fork()
            if pid == 0:
                os.close(w)
                os.read(r, 1)  # until the parent closes its end
                os._exit(0)
            kids.append(pid)
        os.close(r)
        res = {"me": os.getpid(), "q": pids(q), "l": pids(lock)}
        other = interlock.Lock(name=N + "-l", create=False)  # the table is not full
        res["l2"] = pids(other)
        other.detach()
        q.detach()
        lock.detach()
        res["left"] = [exists(N + "-q"), exists(N + "-l")]
        os.close(w)
        res["codes"] = sorted({os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in kids})
        print(json.dumps(res))
    """, N=h.uname("rawfork"))
    assert out["q"] == [out["me"]] and out["l"] == [out["me"]]
    assert out["l2"] == [out["me"]]
    assert out["left"] == [False, False], "children that never used the objects kept them alive"
    assert out["codes"] == [0]


def test_forks_that_exit_at_once_leave_nothing_behind():
    """150 forks that leave through os._exit at once while the parent detaches
    20 objects: nothing stays in /dev/shm (before: children still in the
    fork hook were counted as users, then left without detaching)."""
    out = scenario("""
        objs = [interlock.Lock(name=f"{N}-{i}") for i in range(10)]
        objs += [interlock.Queue(name=f"{N}-q{i}", capacity=4096) for i in range(10)]
        names = [o.name for o in objs]
        kids = []
        for _ in range(150):
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            kids.append(pid)
        for o in objs:
            o.detach()
        for p in kids:
            os.waitpid(p, 0)
        print(json.dumps({"left": [n for n in names if exists(n)]}))
    """, N=h.uname("exitfork"))
    assert out["left"] == []


def test_preexec_fn_children_hold_nothing():
    out = scenario("""
        import subprocess
        q = interlock.Queue(name=N + "-q")
        lock = interlock.Lock(name=N + "-l")
        procs = [subprocess.Popen(["sleep", "60"], preexec_fn=lambda: None) for _ in range(5)]
        try:
            res = {"me": os.getpid(), "q": pids(q), "l": pids(lock)}
            q.detach()
            lock.detach()
            res["left"] = [exists(N + "-q"), exists(N + "-l")]
        finally:
            for p in procs:
                p.kill()
                p.wait()
        print(json.dumps(res))
    """, N=h.uname("preexec"))
    assert out["q"] == [out["me"]] and out["l"] == [out["me"]]
    assert out["left"] == [False, False]


# ------------------------------------------------ forked children that use it


def test_fork_child_uses_inherited_objects_after_the_parent_detached():
    """The parent detaches (and, being the only user, removes the names)
    before the child first uses what it inherited: the child's mapping is
    still valid, it becomes a user on first use, and everything works."""
    out = scenario("""
        q = interlock.Queue(name=N + "-q")
        lock = interlock.Lock(name=N + "-l")
        v = interlock.Value("i", 41, name=N + "-v")  # with its lock (lock=False is a raw ctypes object now)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w)
            os.read(r, 1)
            ok = True
            q.put(("from", "child"))
            ok &= q.get(timeout=5) == ("from", "child")
            ok &= lock.acquire(timeout=5)
            ok &= lock.owner[0] == os.getpid()
            lock.release()
            v.value += 1
            ok &= v.value == 42
            ok &= os.getpid() in pids(q) and os.getpid() in pids(lock)
            ok &= pids(v) == [os.getpid()]
            q.detach(); lock.detach(); v.detach()
            os._exit(0 if ok else 1)
        os.close(r)
        res = {"before": [pids(q), pids(lock)]}
        q.detach(); lock.detach(); v.detach()
        res["left"] = [exists(N + s) for s in ("-q", "-l", "-v")]
        os.close(w)
        res["code"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        res["me"] = os.getpid()
        print(json.dumps(res))
    """, N=h.uname("useafter"))
    assert out["before"] == [[out["me"]], [out["me"]]]  # the child is not a user yet
    assert out["left"] == [False, False, False]
    assert out["code"] == 0


def test_fork_child_that_used_an_object_keeps_it_alive():
    out = scenario("""
        q = interlock.Queue(name=N)
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            q.put("child was here")  # first use: the child becomes a user
            os.write(ready_w, b"x")
            os.read(go_r, 1)
            ok = q.get(timeout=5) == "parent was here"
            q.detach()  # the last user: removes the name
            os._exit(0 if ok else 1)
        os.read(ready_r, 1)
        res = {"users": pids(q), "child": pid, "me": os.getpid()}
        assert q.get(timeout=5) == "child was here"
        q.put("parent was here")
        q.detach()
        res["after_parent"] = exists(N)
        os.write(go_w, b"x")
        res["code"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        res["after_child"] = exists(N)
        print(json.dumps(res))
    """, N=h.uname("keeps"))
    assert out["users"] == sorted([out["me"], out["child"]])
    assert out["after_parent"] is True
    assert out["code"] == 0
    assert out["after_child"] is False


# ------------------------------------------------ many objects in one process

MANY_OBJECTS = """
    import resource, gc
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    fds0 = len(os.listdir("/proc/self/fd"))
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGESIZE")
    rss0 = rss()
    t0 = time.perf_counter()
    locks = [interlock.Lock(name=f"{N}-{i}") for i in range(COUNT)]
    t1 = time.perf_counter()
    for lk in locks[:: max(1, COUNT // 100)]:
        assert lk.acquire(timeout=5)
        lk.release()
    res = {"fds": len(os.listdir("/proc/self/fd")) - fds0, "rss_per": (rss() - rss0) / COUNT,
           "create_us": (t1 - t0) / COUNT * 1e6,
           "soft_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
           "shm_per": os.stat(_segment.path_of(N + "-0")).st_blocks * 512}
    t2 = time.perf_counter()
    for lk in locks:
        lk.detach()
    res["detach_us"] = (time.perf_counter() - t2) / COUNT * 1e6
    res["left"] = sum(exists(f"{N}-{i}") for i in range(COUNT))
    print(json.dumps(res))
"""


def test_thousands_of_objects_with_256_descriptors():
    """Before: each object kept a descriptor (mmap.mmap's dup), EMFILE at
    about 250 objects under this limit."""
    out = scenario(MANY_OBJECTS, N=h.uname("many"), COUNT=5000)
    print(f"\n5,000 Locks: {out}")
    assert out["soft_limit"] == 256
    assert out["fds"] <= 2
    assert out["left"] == 0


@pytest.mark.stress
def test_a_hundred_thousand_objects_in_one_process():
    """100,000 Locks in one process.  Each object is one mapping, and the
    kernel's vm.max_map_count (65,530 by default) caps the mappings of a
    process: as root the test raises it for its run (what an administrator
    does with sysctl for such a program) and puts it back; where it cannot,
    it runs as many as the limit allows and says so."""
    path = "/proc/sys/vm/max_map_count"
    with open(path) as f:
        limit = int(f.read())
    want = 100_000
    raised = False
    if limit < want + 2_000:
        try:
            with open(path, "w") as f:
                f.write(str(want + 20_000))
            raised = True
        except OSError:
            pass
    try:
        with open(path) as f:
            now = int(f.read())
        count = min(want, now - 2_000)
        out = scenario(MANY_OBJECTS, timeout=900, N=h.uname("huge"), COUNT=count)
    finally:
        if raised:
            with open(path, "w") as f:
                f.write(str(limit))
    print(f"\n{count:,} Locks (vm.max_map_count {now:,}): {out}")
    assert out["fds"] <= 2 and out["left"] == 0
    if count < want:
        pytest.skip(f"only {count:,} objects: vm.max_map_count is {now:,} and cannot be raised here")


# ------------------------------------------------ many processes on one object


def test_a_thousand_processes_attached_to_one_object():
    """1,000 forked processes attach by name (in waves of 100) and stay;
    then all leave, and the last one out removes the name.  Before: the
    257th attach raised SegmentError (all 256 process slots in use)."""
    out = scenario("""
        lock = interlock.Lock(name=N)
        go_r, go_w = os.pipe()
        ready_r, ready_w = os.pipe()
        kids = []
        for wave in range(10):
            for _ in range(100):
                pid = os.fork()
                if pid == 0:
                    os.close(go_w)
                    try:
                        mine = interlock.Lock(name=N, create=False)
                        os.write(ready_w, b"+")
                    except BaseException:
                        os.write(ready_w, b"!")
                        os._exit(1)
                    os.read(go_r, 1)
                    mine.detach()
                    os._exit(0)
                kids.append(pid)
            got = b""
            while len(got) < 100:
                got += os.read(ready_r, 100 - len(got))
            assert got == b"+" * 100, got
        res = {"users": len(pids(lock)), "hwm": lock._seg.mm.load32(_segment.OFF_HWM)}
        res["committed"] = os.stat(_segment.path_of(N)).st_blocks * 512
        lock.detach()
        res["after_parent"] = exists(N)
        os.close(go_w)
        res["codes"] = sorted({os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in kids})
        res["after_all"] = exists(N)
        print(json.dumps(res))
    """, timeout=240, N=h.uname("thousand"))
    print(f"\n1,000 processes: {out}")
    assert out["users"] == 1001
    assert out["hwm"] >= 1001
    assert out["after_parent"] is True
    assert out["codes"] == [0]
    assert out["after_all"] is False


def test_killed_while_growing_the_table_leaves_it_sane():
    """A process dies after committing a new page of slots, before moving the
    high-water mark over it: the next one grows the table again and attaches."""
    out = scenario("""
        lock = interlock.Lock(name=N)
        seg = lock._seg
        hwm0 = seg.mm.load32(_segment.OFF_HWM)
        from interlock import _core
        start1 = _core.task_start(1) or 0
        seg._meta_acquire()
        try:  # every free slot of the first page: a live process (pid 1)
            while (i := _segment._free_slot(seg.mm, hwm0)) >= 0:
                seg._set_slot(i, 1, 1, 0, start1)
        finally:
            seg.meta.release()
        pid = os.fork()
        if pid == 0:
            _crash.arm("segment.grow.populated")
            interlock.Lock(name=N, create=False)
            os._exit(3)  # not reached
        res = {"code": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), "hwm0": hwm0,
               "hwm_after_crash": seg.mm.load32(_segment.OFF_HWM)}
        other = os.fork()
        if other == 0:
            mine = interlock.Lock(name=N, create=False)
            ok = mine.acquire(timeout=5)
            mine.release()
            mine.detach()
            os._exit(0 if ok else 1)
        res["other"] = os.waitstatus_to_exitcode(os.waitpid(other, 0)[1])
        res["hwm_final"] = seg.mm.load32(_segment.OFF_HWM)
        seg._meta_acquire()
        try:
            for i, pid, _, _ in seg._table():
                if pid == 1:
                    seg._set_slot(i, 0, 0, 0, 0)
        finally:
            seg.meta.release()
        res["users"] = pids(lock)
        lock.detach()
        res["left"] = exists(N)
        print(json.dumps(res))
    """, crashpoints=True, N=h.uname("grow"))
    assert out["code"] == _crash.CRASH_EXIT
    assert out["hwm_after_crash"] == out["hwm0"]
    assert out["other"] == 0
    assert out["hwm_final"] > out["hwm0"]
    assert out["left"] is False


# ------------------------------------------------ layout versions


def test_a_version_1_segment_is_a_clear_error():
    name = h.uname("v1")
    path = _segment.path_of(name)
    buf = bytearray(8192)
    _segment._HDR.pack_into(buf, 0, _segment.MAGIC, 1, _segment.KIND_LOCK, 8192, os.getpid(),
                            os.getuid(), 0, 0, 4608, 64, 256, 0, 0, 0)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, bytes(buf))
    finally:
        os.close(fd)
    try:
        with pytest.raises(SegmentError, match=rf"layout version 1; this interlock reads "
                                               rf"version {_segment.LAYOUT_VERSION}"):
            interlock.Lock(name=name)
    finally:
        os.unlink(path)


def test_no_descriptor_is_kept_per_object():
    before = len(os.listdir("/proc/self/fd"))
    objs = [interlock.Lock() for _ in range(50)] + [interlock.Queue(capacity=4096)
                                                    for _ in range(50)]
    try:
        assert len(os.listdir("/proc/self/fd")) - before <= 2
    finally:
        for o in objs:
            o.detach()
