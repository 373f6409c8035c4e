"""The crash-point matrix: every crash point x every role, under fork and spawn.

A child process plays one role (producer, consumer, lock holder) with one
crash point armed (interlock._crash, _core/crashpoint.h); if it reaches the
point it dies there with _exit(77), holding whatever it held.  The parent
then checks what a survivor must find:

- the queue and the lock are usable again within about 1 s;
- no committed message is lost or duplicated, each producer's order holds;
  exactly which message the dead process committed or consumed is known for
  the ring's own points and is checked exactly;
- the segments are sane: the dead child's slot is swept, and once everyone
  is gone nothing is left in /dev/shm (its scratch object included).

The matrix is generated from interlock._crash.all_points(), so a new point
is tested without touching this file; the outcome table is printed at the
end of the run (pytest -s, or in the terminal summary).

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
ROLES = ["producer", "consumer", "holder", "closer", "semaphore", "rwlock"]
METHODS = ["fork", "spawn"]
NTH = 3  # die the 3rd time the point is reached: some work is committed before
N_ITEMS = 20
OUTCOMES: dict[tuple[str, str, str], str] = {}
# A child that passes mutex.locked and segment.create.initialised.
_LOCK_ONCE = ("import interlock\n"
              "lock = interlock.Lock()\n"
              "with lock:\n"
              "    pass\n"
              "lock.detach()\n"
              "print('done')\n")


def _child(role: str, point: str, qname: str, lname: str, scratch: str, record: str) -> None:
    sem = interlock.Semaphore(2, name=lname + "-sem", create=False)
    rw = interlock.RWLock(name=lname + "-rw", create=False)
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
        _crash.arm(point, 1 if point.startswith("ring.shutdown.") else NTH)
    if role == "producer":
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
    else:  # closer: a few puts, then shutdown(immediate=True) (ring.shutdown.*)
        for i in range(NTH):
            q.put(("p", i))
            os.write(fd_for(record), b"%d\n" % i)
        q.shutdown(immediate=True)
    q.detach()
    lock.detach()
    sem.detach()
    rw.detach()


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
        ctx = mp.get_context(method)
        tag = f"cp-{os.getpid()}-{abs(hash((point, role, method))) % 10**8}"
        qname, lname, scratch = f"{tag}-q", f"{tag}-l", f"{tag}-s"
        record = str(tmp_path / "record")
        q = interlock.Queue(name=qname, capacity=4096)
        lock = interlock.Lock(name=lname)
        sem = interlock.Semaphore(2, name=lname + "-sem")
        rw = interlock.RWLock(name=lname + "-rw")
        if role == "consumer":
            for i in range(N_ITEMS):
                q.put(("c", i))
        p = ctx.Process(target=_child, args=(role, point, qname, lname, scratch, record))
        p.start()
        p.join(30)
        if p.is_alive():  # pragma: no cover - a hang is a failure
            p.kill()
            p.join()
            pytest.fail(f"child hung at {point} as {role}")
        died = p.exitcode == _crash.CRASH_EXIT
        assert p.exitcode in (0, _crash.CRASH_EXIT), p.exitcode
        recorded = _read_record(record)

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
            for o in (q, lock, sem, rw):
                o.detach()
            _segment.clean(remove=True)
            left_over = [e for e in os.listdir("/dev/shm") if tag in e]
            assert left_over == [], left_over
            OUTCOMES[(point, role, method)] = "died, recovered" if died else "not reached"
            return
        rest = _drain(q)
        assert time.monotonic() - t0 < 1.5
        assert rest and rest[-1] == ("parent", 0)
        rest = rest[:-1]

        # 2. Exactly-once and order of committed messages.
        if role == "producer":
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
        else:
            got = [i for _, i in rest]
            assert got == list(range(len(got))) and len(got) >= len(recorded)
            if died and point == "ring.shutdown.locked":
                assert not q.is_shutdown, "a shutdown that died before its flag must not count"
                assert got == list(range(NTH)), "nothing may be discarded without the flag"

        # 3. Segments: the dead child's slot is gone once someone sweeps; its
        # scratch object is collected; after we detach, nothing is left.
        for o in (q, lock, sem, rw):
            o.detach()
        _segment.clean(remove=True)
        left_over = [e for e in os.listdir("/dev/shm") if tag in e]
        assert left_over == [], left_over
        OUTCOMES[(point, role, method)] = "died, recovered" if died else "not reached"


    def test_print_matrix(capsys: Any) -> None:
        """Print the matrix (point x role -> outcome); runs after the others."""
        if not OUTCOMES:
            pytest.skip("matrix not run")
        lines = [f"{'crash point':28} " + " ".join(f"{r + '/' + m:>22}" for r in ROLES for m in METHODS)]
        for point in POINTS:
            cells = [OUTCOMES.get((point, r, m), "FAILED") for r in ROLES for m in METHODS]
            lines.append(f"{point:28} " + " ".join(f"{c:>22}" for c in cells))
        died = sum(v.startswith("died") for v in OUTCOMES.values())
        lines.append(f"{len(OUTCOMES)} trials, {died} deaths at a crash point, all recovered")
        with capsys.disabled():  # shown in the test output even without -s
            print("\n" + "\n".join(lines))
        assert died > len(POINTS)  # most points are reached by at least one role


    # The hand-off (interlock.Lock is multiprocessing's: anyone may release
    # it): process A acquires, process B releases and dies at each step of
    # that release; C (this process) must find what docs/design/lock.md says.
    HANDOFF_POINTS = ["mutex.unlock.begin", "mutex.handoff.cleared", "mutex.unlock.released"]

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
            assert releaser.exitcode == _crash.CRASH_EXIT, releaser.exitcode
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", interlock.OwnerDiedWarning)
                if waiter is not None:
                    ok, waited = got.get()
                    waiter.join(30)
                    # freed, not woken: the waiter's slice (50 ms) ends its sleep
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
        finally:
            for p in (holder, waiter):
                if p is not None and p.is_alive():
                    p.kill()
                if p is not None:
                    p.join(30)
            lock.detach()

    def test_env_arms_a_crash_point_in_a_test_build() -> None:
        r = subprocess.run([sys.executable, "-c", _LOCK_ONCE], capture_output=True, text=True,
                           timeout=60, env={**os.environ, "INTERLOCK_CRASH_AT": "mutex.locked"})
        assert r.returncode == _crash.CRASH_EXIT, r.stdout + r.stderr

else:
    # A normal build: run the matrix in a test build, in a pytest child.
    @pytest.mark.timeout(3600)
    def test_crash_point_matrix() -> None:
        path = crashpoint_build()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(path), *filter(None, [env.get("PYTHONPATH")])])
        env["INTERLOCK_TEST_TAG"] = f"{TAG}cp"
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s", __file__],
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            capture_output=True, text=True, timeout=3500, env=env)
        out = r.stdout + r.stderr
        assert r.returncode == 0, out[-8000:]
        m = re.search(r"(\d+) passed", out)
        want = len(POINTS) * len(ROLES) * len(METHODS)
        assert m and int(m.group(1)) >= want, out[-8000:]  # really ran, nothing skipped
        assert "skipped" not in out.splitlines()[-1], out[-8000:]
        table = out[out.find("crash point "):]
        print("\n" + table[:table.find(" all recovered") + 14])

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


def _hold(lname: str, ready: Any) -> None:
    """The hand-off's acquirer: take the lock and keep it (someone else
    releases it), until killed."""
    lock = interlock.Lock(name=lname, create=False)
    lock.acquire()
    ready.set()
    time.sleep(120)


def _acquire_once(lname: str, out: Any) -> None:
    lock = interlock.Lock(name=lname, create=False)
    t0 = time.monotonic()
    ok = lock.acquire(timeout=20)
    out.put((ok, time.monotonic() - t0))
    if ok:
        lock.release()
    lock.detach()


def _release_armed(lname: str, point: str) -> None:
    """The hand-off's releaser, dying at ``point`` of its release."""
    lock = interlock.Lock(name=lname, create=False)
    _crash.arm(point, 1)  # after the attach, whose meta lock passes these points too
    lock.release()
    lock.detach()


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
