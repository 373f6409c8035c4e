"""The crash-point matrix: every crash point x every role, under fork and spawn.

A child process plays one role (producer, consumer, lock holder, closer,
semaphore and rwlock user, event setter, and a producer whose attach grows
the process table) with one crash point armed (interlock._crash,
_core/crashpoint.h); if it reaches the point it dies there with _exit(77),
holding whatever it held.  The parent then checks what a survivor must find:

- the queue and the lock are usable again within about 1 s;
- no committed message is lost or duplicated, each producer's order holds;
  exactly which message the dead process committed or consumed is known for
  the ring's own points and is checked exactly;
- the segments are sane: the dead child's slot is swept, and once everyone
  is gone nothing is left in /dev/shm (its scratch object included);
- an Event whose setter died between setting it and waking its waiters,
  then cleared at once, still wakes the waiter (another process) with True.

The matrix is generated from interlock._crash.all_points(), so a new point
is tested without touching this file.  Each trial appends its outcome to the
file named by $INTERLOCK_CP_OUTCOMES; test_crash_point_matrix (the normal
build's test, which runs the matrix in a pytest child) reads that file once
the child has finished, prints the table, and fails unless every cell has an
outcome and every crash point was reached (a child died there) by at least
one role: a point no role reaches is a point nothing tests.

Crash points exist only in a test build (INTERLOCK_TEST_BUILD=1): a normal
install ignores INTERLOCK_CRASH_AT.  Under a normal build (the README's test
command), test_crash_point_matrix builds a crash-point copy of the package
(tests/_testbuild.py, cached under build/) and runs this file again in a
pytest child with that copy first on PYTHONPATH, where _crash.ENABLED holds
and the matrix tests below are collected.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import re
import subprocess
import sys
import time
import warnings
from typing import Any

import pytest

import interlock
from interlock import _core, _crash, _segment

from _helpers import TAG
from _testbuild import crashpoint_build

POINTS = [name for name, _ in _crash.all_points()]
#: "grower": a producer whose attach must grow the queue's process table
#: (the parent fills its first page first), the one way to segment.grow.*.
ROLES = ["producer", "consumer", "holder", "closer", "semaphore", "rwlock", "event", "grower"]
METHODS = ["fork", "spawn"]
NTH = 3  # die the 3rd time the point is reached: some work is committed before
N_ITEMS = 20
#: Where each trial appends "point role method outcome" (set by
#: test_crash_point_matrix for its pytest child; unset: nothing is written).
OUTCOMES_ENV = "INTERLOCK_CP_OUTCOMES"
REACHED = "died, recovered"
NOT_REACHED = "not reached"
#: The default run's spawn trials are run only where the fork trial of the
#: same point and role died at the point: a role that does not pass a point
#: under fork runs the same code under spawn (the full matrix, every cell
#: under both: ``-m stress``). Set to the outcomes file of the fork trials.
PRUNE_ENV = "INTERLOCK_CP_PRUNE"
NOT_RUN = "pruned"  # the table's word for such a cell
#: The points test_handoff_releaser_dies kills a releaser at (its own
#: trials, outside the role matrix; they record their outcome as role "handoff").
HANDOFF_POINTS = ["mutex.unlock.begin", "mutex.handoff.cleared", "mutex.unlock.released"]
HANDOFF = "handoff"
#: Points the role matrix does not reach (its queue is small and bounded:
#: no item spills to a file, nothing overflows the ring), each with the test
#: that kills a process there in a crash-point build and checks what the
#: survivors find.  test_points_reached_elsewhere_are_tested_there checks
#: that each test exists and arms its point; the matrix's check accepts no
#: other unreached point.
REACHED_ELSEWHERE = {
    "ring.spill.written": (
        "test_spill.py", "test_producer_killed_while_writing_a_spill_file_leaves_nothing"),
    "ring.spill.linked": (
        "test_spill.py",
        "test_producer_killed_after_naming_before_publishing_loses_nothing_leaks_nothing"),
    "ring.spill.taken": (
        "test_spill.py", "test_consumer_killed_after_taking_a_spilled_item_leaks_nothing"),
    "ring.ovf.created": (
        "test_overflow.py",
        "test_producer_killed_in_the_overflow_before_publishing_leaves_nothing_taken"),
    "ring.ovf.passed": ("test_overflow.py", "test_consumer_killed_taking_from_the_overflow"),
}
# A child that passes mutex.locked and segment.create.initialised.
_LOCK_ONCE = ("import interlock\n"
              "lock = interlock.Lock()\n"
              "with lock:\n"
              "    pass\n"
              "lock.detach()\n"
              "print('done')\n")


def _record_outcome(point: str, role: str, method: str, outcome: str) -> None:
    path = os.environ.get(OUTCOMES_ENV)
    if path:
        with open(path, "a") as f:  # one short line per write: appends do not interleave
            f.write(f"{point} {role} {method} {outcome}\n")


def _read_outcomes(path: str) -> dict[tuple[str, str, str], str]:
    out: dict[tuple[str, str, str], str] = {}
    with open(path) as f:
        for line in f:
            point, role, method, outcome = line.rstrip("\n").split(" ", 3)
            out[(point, role, method)] = outcome
    return out


_fork_outcomes: dict[tuple[str, str, str], str] | None = None


def _pruned(point: str, role: str, method: str) -> bool:
    """In a pruned run (``$INTERLOCK_CP_PRUNE``), whether this spawn trial is
    left out: its fork twin ran and did not reach the point."""
    global _fork_outcomes
    path = os.environ.get(PRUNE_ENV)
    if not path or method == "fork":
        return False
    if _fork_outcomes is None:
        _fork_outcomes = _read_outcomes(path)
    return _fork_outcomes.get((point, role, "fork")) == NOT_REACHED


def _child(role: str, point: str, qname: str, lname: str, scratch: str, record: str) -> None:
    sem = interlock.Semaphore(2, name=lname + "-sem", create=False)
    rw = interlock.RWLock(name=lname + "-rw", create=False)
    ev = interlock.Event(name=lname + "-ev", create=False)
    if point.startswith("segment."):
        _crash.arm(point, 1)
    q = interlock.Queue(name=qname, create=False)
    lock = interlock.Lock(name=lname, create=False)
    # A scratch object of this child alone: its create/attach/detach pass
    # the segment points, and must not leak if the child dies in them.
    s = interlock.Queue(name=scratch, capacity=4096)
    s2 = interlock.Queue(name=scratch, create=False)
    s2.detach()
    s.detach()
    if not point.startswith("segment."):
        # shutdown() and the event's first set() happen once: die there the 1st time
        _crash.arm(point, 1 if point.startswith("ring.shutdown.") or role == "event" else NTH)
    if role in ("producer", "grower"):
        for i in range(N_ITEMS):
            q.put(("p", i))
            os.write(fd_for(record), b"%d\n" % i)
    elif role == "consumer":
        for _ in range(N_ITEMS):
            item = q.get(timeout=5)
            os.write(fd_for(record), b"%d\n" % item[1])
    elif role == "holder":
        for i in range(N_ITEMS):
            with lock:
                os.write(fd_for(record), b"%d\n" % i)
    elif role == "semaphore":
        for i in range(N_ITEMS):
            with sem:
                os.write(fd_for(record), b"%d\n" % i)
    elif role == "rwlock":
        for i in range(N_ITEMS):
            with rw.write() if i % 2 else rw.read():
                os.write(fd_for(record), b"%d\n" % i)
    elif role == "event":
        # The parent's waiter process sleeps in ev.wait() first; then set and
        # clear back to back (event.set.stored: die inside the first set()).
        deadline = time.monotonic() + 20
        while ev.statistics().waiters < 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the parent's waiter never waited")
            time.sleep(0.005)
        for i in range(N_ITEMS):
            ev.set()
            os.write(fd_for(record), b"%d\n" % i)
            ev.clear()
    else:  # closer: a few puts, then shutdown(immediate=True) (ring.shutdown.*)
        for i in range(NTH):
            q.put(("p", i))
            os.write(fd_for(record), b"%d\n" % i)
        q.shutdown(immediate=True)
    q.detach()
    lock.detach()
    sem.detach()
    rw.detach()
    ev.detach()


#: Stands for a live user in the slots _fill_first_page takes (pid 1 lives).
_FILLER_PID = 1


def _fill_first_page(q: interlock.Queue) -> None:
    """Take every free slot below the high-water mark for a live process
    (pid 1), so that the next process to attach must grow the table (as in
    test_segment_scale's test of that point)."""
    seg = q._seg
    hwm = seg.mm.load32(_segment.OFF_HWM)
    start = _core.task_start(_FILLER_PID) or 0
    seg._meta_acquire()
    try:
        while (i := _segment._free_slot(seg.mm, hwm)) >= 0:
            seg._set_slot(i, _FILLER_PID, 1, 0, start)
    finally:
        seg.meta.release()


def _unfill_first_page(q: interlock.Queue) -> None:
    seg = q._seg
    seg._meta_acquire()
    try:
        for i, pid, _, _ in seg._table():
            if pid == _FILLER_PID:
                seg._set_slot(i, 0, 0, 0, 0)
    finally:
        seg.meta.release()


def _event_waiter(name: str, out: str) -> None:
    ev = interlock.Event(name=name, create=False)
    r = ev.wait(30)
    when = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process
    ev.detach()
    with open(out, "w") as f:
        f.write(f"{r} {when}")


_fds: dict[str, int] = {}


def fd_for(path: str) -> int:
    if path not in _fds:
        _fds[path] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    return _fds[path]


def _read_record(path: str) -> list[int]:
    try:
        with open(path) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def _drain(q: interlock.Queue) -> list[Any]:
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except interlock.Empty:
            return out


def _check_shut_down_immediately(q: interlock.Queue) -> None:
    """What a survivor finds after a shutdown(immediate=True) that set its
    flag (whether its process then died holding the producer lock or not):
    put refused (after taking the lock over from a dead holder), get
    refused at once, the items left discarded."""
    t0 = time.monotonic()
    with pytest.raises(interlock.ShutDown):
        q.put(("parent", 0), timeout=2)
    assert time.monotonic() - t0 < 1.5
    with pytest.raises(interlock.ShutDown):
        q.get(timeout=2)
    assert q.qsize() == 0 and q.statistics().shutdown_immediate and list(q) == []


if _crash.ENABLED:
    # A test build: the matrix itself.
    @pytest.mark.parametrize("method", METHODS)
    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize("point", POINTS)
    def test_crash_point(point: str, role: str, method: str, tmp_path: Any) -> None:
        if _pruned(point, role, method):
            _record_outcome(point, role, method, NOT_RUN)
            return
        ctx = mp.get_context(method)
        tag = f"cp-{os.getpid()}-{abs(hash((point, role, method))) % 10**8}"
        qname, lname, scratch = f"{tag}-q", f"{tag}-l", f"{tag}-s"
        record = str(tmp_path / "record")
        q = interlock.Queue(name=qname, capacity=4096)
        lock = interlock.Lock(name=lname)
        sem = interlock.Semaphore(2, name=lname + "-sem")
        rw = interlock.RWLock(name=lname + "-rw")
        ev = interlock.Event(name=lname + "-ev")
        if role == "consumer":
            for i in range(N_ITEMS):
                q.put(("c", i))
        if role == "grower":
            _fill_first_page(q)
        waiter = None
        if role == "event":  # a process (a thread would be alive across the fork below)
            waiter = ctx.Process(target=_event_waiter, args=(lname + "-ev", record + ".woke"))
            waiter.start()
        p = ctx.Process(target=_child, args=(role, point, qname, lname, scratch, record))
        p.start()
        t_set = None
        if waiter is not None:
            # 0a. Event: clear it as soon as the child's first set() is in the
            # word (another process could): the waiter, asleep when it was
            # set, must return True through the generation, even where the
            # setter died before waking it (event.set.stored).
            deadline = time.monotonic() + 30
            while ev.statistics().sets == 0 and p.exitcode is None:
                assert time.monotonic() < deadline, "the child never set the event"
                time.sleep(0.0005)
            if ev.statistics().sets:
                ev.clear()
                t_set = time.monotonic()
        p.join(30)
        if p.is_alive():  # pragma: no cover - a hang is a failure
            p.kill()
            p.join()
            pytest.fail(f"child hung at {point} as {role}")
        died = p.exitcode == _crash.CRASH_EXIT
        assert p.exitcode in (0, _crash.CRASH_EXIT), p.exitcode
        recorded = _read_record(record)
        if waiter is not None:
            # 0b. ... and it did, within about a slice.
            st = ev.statistics()
            if t_set is None:
                ev.set()  # died before its first set: nobody else will wake the waiter
            waiter.join(40)
            assert waiter.exitcode == 0, waiter.exitcode
            if died and point == "event.set.stored":
                # wholly set (the generation moved with the flag), then cleared by us
                assert recorded == [] and st.sets == 1 and not st.is_set, (recorded, st)
            elif not died:
                assert st.sets == N_ITEMS and not st.is_set, st
            with open(record + ".woke") as f:
                result, when = f.read().split()
            assert result == "True", "the waiter timed out: a set() was lost"
            if t_set is not None:
                assert float(when) - t_set < 1.5, "the waiter slept through a set()"

        # 1. The lock and both sides of the queue are usable within about 1 s.
        t0 = time.monotonic()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", interlock.OwnerDiedWarning)
            assert lock.acquire(timeout=2), "lock not recovered"
            lock.release()
            # every unit of the semaphore and the rwlock comes back
            assert sem.acquire(timeout=2) and sem.acquire(timeout=2), "semaphore not recovered"
            sem.release()
            sem.release()
            with rw.write(timeout=2):
                pass
            if q.is_shutdown:
                assert role == "closer" and (not died or point == "ring.shutdown.set")
                return_closed = True
            else:
                return_closed = False
                q.put(("parent", 0), timeout=2)
        owner_died = any(issubclass(w.category, interlock.OwnerDiedWarning) for w in caught)
        if return_closed:
            assert len(_read_record(record)) == NTH
            _check_shut_down_immediately(q)
            _unfill_first_page(q)
            for o in (q, lock, sem, rw, ev):
                o.detach()
            _segment.clean(remove=True)
            left_over = [e for e in os.listdir("/dev/shm") if tag in e]
            assert left_over == [], left_over
            _record_outcome(point, role, method, REACHED if died else NOT_REACHED)
            return
        rest = _drain(q)
        assert time.monotonic() - t0 < 1.5
        assert rest and rest[-1] == ("parent", 0)
        rest = rest[:-1]

        # 2. Exactly-once and order of committed messages.
        if role in ("producer", "grower"):
            got = [i for tag_, i in rest if tag_ == "p"]
            assert got == list(range(len(got))), "producer's items out of order, lost or doubled"
            # Every put that returned was committed; at most one more (the one
            # in flight, if it passed its commit point) may be there.
            assert len(recorded) <= len(got) <= len(recorded) + 1
            if died and point in ("ring.put.locked", "ring.put.header", "ring.put.payload"):
                assert len(got) == NTH - 1, "a half-written message was not discarded"
            if died and point in ("ring.put.published", "ring.put.unlocked"):
                assert len(got) == NTH, "a published message was lost"
            if not died:
                assert len(got) == N_ITEMS
        elif role == "consumer":
            left = [i for tag_, i in rest]
            assert recorded == list(range(len(recorded)))
            assert left == list(range(N_ITEMS - len(left), N_ITEMS)), "queue order broken"
            missing = set(range(N_ITEMS)) - set(recorded) - set(left)
            assert not set(recorded) & set(left), "a message was delivered twice"
            if died and point in ("ring.get.published", "ring.get.unlocked"):
                # consumed by the dead process: committed, so gone, exactly that one
                assert missing == {NTH - 1}
            elif died and point.startswith("ring.get."):
                assert missing == set(), "a message not yet consumed was lost"
            else:
                assert len(missing) <= 1  # at most the one the dead process held
        elif role == "holder":
            assert recorded == list(range(len(recorded)))
            if not died:
                assert len(recorded) == N_ITEMS
            if died and point in ("mutex.locked", "mutex.unlock.begin", "mutex.handoff.cleared"):
                # died holding the user's lock: the next taker is told
                assert owner_died, "no OwnerDiedWarning for a lock taken over from the dead"
                assert len(recorded) == (NTH - 1 if point == "mutex.locked" else NTH)
            if died and point == "mutex.unlock.released":
                assert not owner_died, "the lock was free: nobody died holding it"
        elif role in ("semaphore", "rwlock"):
            assert recorded == list(range(len(recorded)))
            if not died:
                assert len(recorded) == N_ITEMS
            st = sem.statistics()
            assert st.value == 2 and not st.holders, st  # nothing lost, nothing held by the dead
            if role == "rwlock":
                # the RWLock itself: no reader, writer or reader slot left to the dead
                rst = rw.statistics()
                assert (rst.readers, rst.reader_pids, rst.writer_pid, rst.writer_tid,
                        rst.writers_waiting) == (0, (), 0, 0, 0), rst
                if died:
                    with rw.read(timeout=2), rw.read(timeout=2):
                        assert rw.statistics().readers == 2  # both read slots free
        elif role == "event":
            assert recorded == list(range(len(recorded)))
            if not died:
                assert len(recorded) == N_ITEMS
        else:
            got = [i for _, i in rest]
            assert got == list(range(len(got))) and len(got) >= len(recorded)
            if died and point == "ring.shutdown.locked":
                assert not q.is_shutdown, "a shutdown that died before its flag must not count"
                assert got == list(range(NTH)), "nothing may be discarded without the flag"

        # 3. Segments: the dead child's slot is gone once someone sweeps; its
        # scratch object is collected; after we detach, nothing is left.
        _unfill_first_page(q)
        for o in (q, lock, sem, rw, ev):
            o.detach()
        _segment.clean(remove=True)
        left_over = [e for e in os.listdir("/dev/shm") if tag in e]
        assert left_over == [], left_over
        _record_outcome(point, role, method, REACHED if died else NOT_REACHED)


    # The hand-off (interlock.Lock is multiprocessing's: anyone may release
    # it): process A acquires, process B releases and dies at each step of
    # that release; C (this process) must find what docs/design/lock.md says.
    # (HANDOFF_POINTS is at the top: the matrix's check counts these trials.)

    @pytest.mark.parametrize("method", METHODS)
    @pytest.mark.parametrize("point", HANDOFF_POINTS)
    def test_handoff_releaser_dies(point: str, method: str) -> None:
        ctx = mp.get_context(method)
        lname = f"cp-{os.getpid()}-ho-{abs(hash((point, method))) % 10**8}"
        lock = interlock.Lock(name=lname)
        ready = ctx.Event()
        holder = ctx.Process(target=_hold, args=(lname, ready))
        holder.start()
        waiter = None
        try:
            assert ready.wait(30), "the acquirer did not take the lock"
            got = ctx.SimpleQueue()
            if point == "mutex.unlock.released":
                # a waiter asleep in acquire(): the release frees the word and
                # dies before its FUTEX_WAKE, so nobody wakes it but its slice
                waiter = ctx.Process(target=_acquire_once, args=(lname, got))
                waiter.start()
                deadline = time.monotonic() + 30
                while lock.statistics().waiters < 1 and time.monotonic() < deadline:
                    time.sleep(0.001)
            releaser = ctx.Process(target=_release_armed, args=(lname, point))
            releaser.start()
            releaser.join(30)
            died_by = time.monotonic()  # the releaser is dead by now
            assert releaser.exitcode == _crash.CRASH_EXIT, releaser.exitcode
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", interlock.OwnerDiedWarning)
                if waiter is not None:
                    ok, got_at = got.get()
                    waiter.join(30)
                    # freed, not woken: the waiter's slice (50 ms) ends its
                    # sleep.  Measured from the releaser's death (not from
                    # the waiter's start, which also counted the releaser's
                    # start-up: over 1 s under spawn on a loaded machine).
                    waited = got_at - died_by
                    assert ok and waited < 1.0, (ok, waited)
                    assert not lock.locked()
                else:
                    # the release never happened: A, alive, still holds the lock
                    assert lock.locked()
                    assert lock.acquire(timeout=0.2) is False
                    holder.kill()
                    holder.join(30)
                    # now A is dead: taken over, and told
                    assert lock.acquire(timeout=2) is True
                    lock.release()
            owner_died = [w for w in caught if issubclass(w.category, interlock.OwnerDiedWarning)]
            assert bool(owner_died) == (waiter is None), [str(w.message) for w in caught]
            _record_outcome(point, HANDOFF, method, REACHED)  # died there (exit 77, above)
        finally:
            for p in (holder, waiter):
                if p is not None and p.is_alive():
                    p.kill()
                if p is not None:
                    p.join(30)
            lock.detach()

    @pytest.mark.parametrize("method", METHODS)
    def test_put_many_hands_on_every_256_kib(method: str) -> None:
        """A put_many of 10 records of 64 KiB publishes them 256 KiB at a
        time (docs/design/queue.md): a producer that dies right after its
        first publication leaves exactly the first 4, whole and in order
        (written whole before one publication, all 10 were in)."""
        ctx = mp.get_context(method)
        q = interlock.Queue(name=f"cp-{os.getpid()}-pm-{method}")
        try:
            p = ctx.Process(target=_put_many_armed, args=(q.name, "ring.put.published"))
            p.start()
            p.join(60)
            assert p.exitcode == _crash.CRASH_EXIT, p.exitcode
            got = _drain(q)
            assert got == [bytes([i]) * (64 << 10) for i in range(4)], [g[:1] for g in got]
        finally:
            q.unlink()

    @pytest.mark.parametrize("method", METHODS)
    def test_put_many_hands_on_each_spilled_item(method: str) -> None:
        """A put_many of 4 items for spill files (2 MiB each) writes and
        publishes them one at a time: a producer that dies writing the
        third's file leaves exactly the first two, whole and in order.
        (All four files written before one publication, it left none.)"""
        ctx = mp.get_context(method)
        q = interlock.Queue(name=f"cp-{os.getpid()}-pms-{method}")
        try:
            p = ctx.Process(target=_put_many_spilled_armed,
                            args=(q.name, "ring.spill.written", 3))
            p.start()
            p.join(60)
            assert p.exitcode == _crash.CRASH_EXIT, p.exitcode
            got = _drain(q)
            assert got == [bytes([i]) * (2 << 20) for i in range(2)], [g[:1] for g in got]
        finally:
            q.unlink()

    def test_env_arms_a_crash_point_in_a_test_build() -> None:
        r = subprocess.run([sys.executable, "-c", _LOCK_ONCE], capture_output=True, text=True,
                           timeout=60, env={**os.environ, "INTERLOCK_CRASH_AT": "mutex.locked"})
        assert r.returncode == _crash.CRASH_EXIT, r.stdout + r.stderr

else:
    # A normal build: run the matrix in a test build, in a pytest child.
    def _run_matrix(tmp_path: Any, prune: bool) -> None:
        """Run the matrix in a test build; then, from the outcomes its
        trials wrote (whatever order they ran in), print the table and check
        that every cell ran and every crash point was reached. ``prune``:
        first the fork trials, then the spawn trials of the cells whose fork
        trial died at its point (PRUNE_ENV)."""
        path = crashpoint_build()
        outcomes_file = tmp_path / "outcomes"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(path), *filter(None, [env.get("PYTHONPATH")])])
        env["INTERLOCK_TEST_TAG"] = f"{TAG}cp"
        env[OUTCOMES_ENV] = str(outcomes_file)
        phases = [["-k", "not spawn"], ["-k", "spawn"]] if prune else [[]]
        passed = 0
        for i, select in enumerate(phases):
            if prune and i == 1:
                env[PRUNE_ENV] = str(outcomes_file)
            r = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s", *select,
                 __file__],
                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                capture_output=True, text=True, timeout=3500, env=env)
            out = r.stdout + r.stderr
            assert r.returncode == 0, out[-8000:]
            m = re.search(r"(\d+) passed", out)
            assert m, out[-8000:]
            passed += int(m.group(1))
            assert "skipped" not in out.splitlines()[-1], out[-8000:]
        want = len(POINTS) * len(ROLES) * len(METHODS)
        assert passed >= want, (passed, want)  # really ran, nothing skipped
        outcomes = _read_outcomes(str(outcomes_file))
        print("\n" + matrix_table(outcomes))
        missing = [c for c in _cells() if c not in outcomes]
        assert not missing, f"cells that recorded no outcome: {missing}"
        if not prune:
            assert NOT_RUN not in outcomes.values()
        # every point reached by some trial, under each start method
        roles = [*ROLES, HANDOFF]
        unreached = [(pt, m) for pt in POINTS for m in METHODS
                     if pt not in REACHED_ELSEWHERE
                     and not any(outcomes.get((pt, r, m)) == REACHED for r in roles)]
        assert not unreached, f"crash points no trial reached: {unreached}"

    @pytest.mark.timeout(3600)
    def test_crash_point_matrix(tmp_path: Any) -> None:
        """Every cell under fork; under spawn, the cells whose fork trial
        died at its point (the others run the same code and would not reach
        it either: test_crash_point_matrix_full runs them)."""
        _run_matrix(tmp_path, prune=True)

    @pytest.mark.stress
    @pytest.mark.timeout(3600)
    def test_crash_point_matrix_full(tmp_path: Any) -> None:
        """Every cell under both start methods."""
        _run_matrix(tmp_path, prune=False)

    def test_normal_build_ignores_crash_env() -> None:
        # Issue 12: any environment could make an application _exit(77).
        assert not _core.CRASHPOINTS
        with pytest.raises(RuntimeError, match="test build"):
            _crash.arm("mutex.locked")
        with pytest.raises(RuntimeError, match="test build"):
            _core._crash_arm("mutex.locked", 1)
        for point in ("mutex.locked", "segment.create.initialised"):
            r = subprocess.run([sys.executable, "-c", _LOCK_ONCE], capture_output=True,
                               text=True, timeout=60, env={**os.environ, "INTERLOCK_CRASH_AT": point})
            assert r.returncode == 0, (point, r.returncode, r.stdout + r.stderr)
            assert "done" in r.stdout


def _cells() -> list[tuple[str, str, str]]:
    """Every trial that must record an outcome: the role matrix, and the
    hand-off trials."""
    return ([(pt, r, m) for pt in POINTS for r in ROLES for m in METHODS]
            + [(pt, HANDOFF, m) for pt in HANDOFF_POINTS for m in METHODS])


def matrix_table(outcomes: dict[tuple[str, str, str], str]) -> str:
    """The matrix (point x role/method -> outcome) as a text table; "-":
    no such trial (the hand-off trials exist for their points only)."""
    cols = [(r, m) for r in [*ROLES, HANDOFF] for m in METHODS]
    want = set(_cells())
    lines = [f"{'crash point':28} " + " ".join(f"{r + '/' + m:>18}" for r, m in cols)]
    for point in POINTS:
        cells = [outcomes.get((point, r, m), "NO OUTCOME" if (point, r, m) in want else "-")
                 for r, m in cols]
        lines.append(f"{point:28} " + " ".join(f"{c:>18}" for c in cells))
    died = sum(v == REACHED for v in outcomes.values())
    not_run = sum(v == NOT_RUN for v in outcomes.values())
    lines.append(f"{len(outcomes) - not_run} trials ({not_run} spawn trials not run: not "
                 f"reached under fork), {died} deaths at a crash point, all recovered")
    return "\n".join(lines)


def test_points_reached_elsewhere_are_tested_there() -> None:
    """Each point the matrix leaves to another test is a real point, and
    that test exists and arms it (by name, in its file)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for point, (fname, test) in REACHED_ELSEWHERE.items():
        assert point in POINTS, f"{point} is no crash point (any more)"
        with open(os.path.join(here, fname)) as f:
            src = f.read()
        assert f"def {test}(" in src, f"{fname} has no {test}"
        start = src.index(f"def {test}(")
        body = src[start:].split("\n\n\n", 1)[0]  # to the next top-level statement
        head = src[:start].rsplit("\n\n\n", 1)[-1]  # its decorators
        assert f'"{point}"' in body or f'"{point}"' in head, f"{test} does not arm {point}"


def test_matrix_table_reads_outcomes_in_any_order(tmp_path: Any) -> None:
    """The table and the checks come from the outcomes file, not from the
    order the trials ran in."""
    path = str(tmp_path / "outcomes")
    os.environ[OUTCOMES_ENV] = path
    try:
        cells = _cells()
        for i, (pt, r, m) in enumerate(reversed(cells)):
            _record_outcome(pt, r, m, REACHED if i % 2 else NOT_REACHED)
    finally:
        del os.environ[OUTCOMES_ENV]
    got = _read_outcomes(path)
    assert set(got) == set(cells)
    table = matrix_table(got)
    assert "NO OUTCOME" not in table and f"{len(cells)} trials" in table


def test_pruning_leaves_out_only_spawn_trials_whose_fork_twin_did_not_reach(
        tmp_path: Any, monkeypatch: Any) -> None:
    path = str(tmp_path / "outcomes")
    monkeypatch.setenv(OUTCOMES_ENV, path)
    monkeypatch.delenv(PRUNE_ENV, raising=False)  # set where a pruned matrix runs this file
    _record_outcome("mutex.locked", "holder", "fork", REACHED)
    _record_outcome("ring.put.locked", "consumer", "fork", NOT_REACHED)
    monkeypatch.setattr(sys.modules[__name__], "_fork_outcomes", None)
    assert not _pruned("ring.put.locked", "consumer", "spawn")  # no PRUNE_ENV: a full run
    monkeypatch.setenv(PRUNE_ENV, path)
    assert _pruned("ring.put.locked", "consumer", "spawn")
    assert not _pruned("mutex.locked", "holder", "spawn")
    assert not _pruned("ring.put.locked", "consumer", "fork")
    assert not _pruned("ring.get.locked", "consumer", "spawn")  # its fork twin never ran


def _hold(lname: str, ready: Any) -> None:
    """The hand-off's acquirer: take the lock and keep it (someone else
    releases it), until killed."""
    lock = interlock.Lock(name=lname, create=False)
    lock.acquire()
    ready.set()
    time.sleep(120)


def _acquire_once(lname: str, out: Any) -> None:
    lock = interlock.Lock(name=lname, create=False)
    ok = lock.acquire(timeout=20)
    # when it got the lock: CLOCK_MONOTONIC is one clock for every process
    out.put((ok, time.monotonic()))
    if ok:
        lock.release()
    lock.detach()


def _release_armed(lname: str, point: str) -> None:
    """The hand-off's releaser, dying at ``point`` of its release."""
    lock = interlock.Lock(name=lname, create=False)
    _crash.arm(point, 1)  # after the attach, whose meta lock passes these points too
    lock.release()
    lock.detach()


def _put_many_armed(qname: str, point: str) -> None:
    q = interlock.Queue(name=qname, create=False)
    _crash.arm(point, 1)
    q.put_many([bytes([i]) * (64 << 10) for i in range(10)])


def _put_many_spilled_armed(qname: str, point: str, nth: int) -> None:
    q = interlock.Queue(name=qname, create=False)
    _crash.arm(point, nth)
    q.put_many([bytes([i]) * (2 << 20) for i in range(4)])


def _sleep_in_get(qname: str) -> None:
    interlock.Queue(name=qname, create=False).get()  # the queue is empty: sleeps


def test_waiter_killed_while_counted_is_uncounted() -> None:
    """A consumer SIGKILLed while it sleeps in get() stays counted as a
    waiter; the count is repaired (eventcount.h, il_ec_repair) so producers
    stop making a useless FUTEX_WAKE per put."""
    import signal

    name = f"cp-waiter-{os.getpid()}"
    q = interlock.Queue(name=name, capacity=1 << 16)
    p = mp.get_context("fork").Process(target=_sleep_in_get, args=(name,))
    p.start()
    deadline = time.monotonic() + 10
    while q._stats()["consumers_sleeping"] != 1:
        assert time.monotonic() < deadline, "the consumer never went to sleep"
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    assert q._stats()["consumers_sleeping"] == 1  # counted, but dead
    for _ in range(5000):  # > FRUITLESS_REPAIR (4096) notifying puts
        q.put(b"x")
        q.get()
    assert q._stats()["consumers_sleeping"] == 0
    q.detach()
