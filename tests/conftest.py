"""Fixtures for the whole suite.

- ``mp_ctx``: every multiprocessing start method (fork, spawn, forkserver).
- ``BACKENDS`` and the ``*_factory`` fixtures: contract tests take their
  queues and locks from here, so that another backend (Redis, ...) added to
  ``BACKENDS`` runs the same tests.
- Process hygiene: every process a test starts through multiprocessing is
  recorded; whatever is still alive when the test ends is killed and reaped.
- Thread hygiene (``_forkcheck``): the session fails if the test process
  fork()ed while another of its threads was alive.
- /dev/shm hygiene: each test must leave no file of its own behind, and the
  session fails if /dev/shm is not left as it was found.  The machine may be
  shared, so a file counts as ours when its name carries this run's tag
  (``_helpers.TAG``) or it was made by a process of this run (the pid in an
  anonymous name, or the creator pid in the segment header).
"""
from __future__ import annotations

import gc
import itertools
import multiprocessing
import multiprocessing.process
import os
import re
import signal
import struct
import subprocess
import sys

import pytest

import _forkcheck  # first: its fork hook must be registered before interlock's  # isort: skip
import interlock
from interlock import _segment

import _helpers  # noqa: F401  (sets INTERLOCK_TEST_TAG before any child starts)
from _helpers import TAG

SHM = _segment.SHM_DIR
UID = os.getuid()
START_METHODS = ["fork", "spawn", "forkserver"]

# --------------------------------------------------------------- processes

#: pids of every process this run started (for /dev/shm attribution).
OUR_PIDS: set[int] = {os.getpid()}
#: processes started by the running test (killed and reaped at its end).
_test_procs: list = []

_orig_start = multiprocessing.process.BaseProcess.start


def _tracked_start(self, *args, **kwargs):
    _orig_start(self, *args, **kwargs)
    if os.getpid() in OUR_PIDS and self.pid:
        OUR_PIDS.add(self.pid)
        _test_procs.append(self)


multiprocessing.process.BaseProcess.start = _tracked_start  # type: ignore[method-assign]


def run_python(code: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python -c code`` as an unrelated process (no multiprocessing)."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)
    OUR_PIDS.add(proc.pid)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"python -c timed out after {timeout} s:\n{out}\n{err}") from None
    except BaseException:  # pytest-timeout's exception, ^C: reap it here, not in Popen.__del__
        proc.kill()        # (whose warning would fail whichever test runs the GC next)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _reap_test_procs() -> list[str]:
    """Kill and reap what the test left running; describe it."""
    left = []
    while _test_procs:
        p = _test_procs.pop()
        try:
            if p.is_alive():
                left.append(f"{p.name} (pid {p.pid})")
                p.kill()
            p.join(10)
        except (AssertionError, ValueError):  # not our child / already closed
            pass
    return left


# --------------------------------------------------------------- /dev/shm

_ANON = re.compile(r"interlock\.\d+\.anon-(\d+)-")
_TMP = re.compile(r"\.interlock-tmp\.\d+\.(\d+)\.")
# a queue's spill file: .interlock-spill.<uid>.<queue id>.<producer pid>.<token>
_SPILL = re.compile(r"\.interlock-spill\.\d+\.[0-9a-f]+-\d+\.(\d+)\.")


def _creator_pid(entry: str) -> int:
    # Only files of ours, never blocking on a FIFO someone planted
    # (_segment.open_entry: the library's rule for entries it did not make).
    try:
        fd, _st = _segment.open_entry(f"{SHM}/{entry}")
    except OSError:
        return 0
    try:
        head = os.pread(fd, 32, 0)
    finally:
        os.close(fd)
    if head[:8] == _segment.MAGIC:
        return int(struct.unpack_from("<I", head, 24)[0])
    return 0


def ours(entry: str) -> bool:
    """Was this /dev/shm entry made by this test run?"""
    if TAG in entry:
        return True
    m = _ANON.match(entry) or _TMP.match(entry) or _SPILL.match(entry)
    if m:
        return int(m.group(1)) in OUR_PIDS
    if entry.startswith(f"{_segment.PREFIX}.{UID}."):
        return _creator_pid(entry) in OUR_PIDS
    return False


def shm_entries() -> set[str]:
    return set(os.listdir(SHM))


def our_entries() -> set[str]:
    return {e for e in shm_entries() if ours(e)}


def _internal(entry: str) -> bool:
    """interlock's own tables (@lockdep, @waitfor): a process keeps its
    handle for its lifetime, so they outlive single tests; the session check
    releases them first (interlock.lockdep.close, _waitfor.close)."""
    return entry.startswith(f"{_segment.PREFIX}.{UID}.@")


def _remove(entries) -> None:
    for e in entries:
        try:
            os.unlink(f"{SHM}/{e}")
        except FileNotFoundError:
            pass


def pytest_configure(config):
    config.pluginmanager.register(_forkcheck, "interlock-forkcheck")
    # A run started in the background by a non-interactive shell (`cmd &`)
    # inherits SIGINT ignored, and so would every child: the tests that stop
    # a CLI or a pipeline with Ctrl-C would wait for an exit that never
    # comes.  Python's own handler here; the children then exec with the
    # default disposition and install theirs.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def shm_at_start(pytestconfig):
    """/dev/shm as found; ``pytest_sessionfinish`` compares the end with it."""
    found = shm_entries()
    pytestconfig._interlock_shm_before = found
    yield found


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_interlock_shm_before", None)
    if before is None:
        return
    _reap_test_procs()
    gc.collect()
    # What exit would do: this process detaches everything it still holds.
    _segment._release_all()
    added = shm_entries() - before
    left = sorted(e for e in added if ours(e))
    # multiprocessing's named semaphores (spawn/forkserver Events, Barriers)
    # are unlinked by its own finalizers at interpreter exit, after this hook.
    sems = sorted(e for e in added if e.startswith("sem.mp-"))
    others = sorted(added - set(left) - set(sems))
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None and others:
        tr.write_line(f"/dev/shm: {len(others)} new entries made by other processes "
                      f"(not this run): {others[:5]}", yellow=True)
    if left:
        if tr is not None:
            tr.write_line(f"FAILED: the suite left {len(left)} entries in /dev/shm: {left}",
                          red=True, bold=True)
        _remove(left)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _hygiene(request):
    """Per test: kill leftover processes; fail if the test left files in /dev/shm."""
    before = our_entries()
    _test_procs.clear()
    yield
    stray = _reap_test_procs()
    gc.collect()
    left = {e for e in our_entries() - before if not _internal(e)}
    if left:
        _remove(left)
    problems = []
    if left:
        problems.append(f"left in /dev/shm: {sorted(left)}")
    if stray:
        problems.append(f"processes still running at the end: {stray}")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture(autouse=True)
def _redis_consumers():
    """Per test: a Redis queue consumer the test left attached (it got from
    a queue and never detached it) is forgotten at the end of the test, as
    if its process had exited: its heartbeat is no longer renewed, so the
    lease keeper thread ends instead of running for the rest of the session
    (against servers long stopped), and later forks in this process are
    not multi-threaded because of it.  Nothing is sent to the server (it
    may be gone); what the consumer held comes back to others after the
    lease, as for a dead consumer."""
    mod = sys.modules.get("interlock._redis._queue")
    before = {id(c) for c in mod._consumers} if mod is not None else set()
    yield
    mod = sys.modules.get("interlock._redis._queue")
    if mod is None:
        return
    with mod._consumers_lock:
        left = [c for c in mod._consumers if id(c) not in before]
        for c in left:
            mod._consumers.remove(c)
            for key, other in list(c.backend.consumers.items()):
                if other is c:
                    del c.backend.consumers[key]
    for c in left:
        c.backend.drop(c.beat)


def pytest_collection_modifyitems(config, items):
    """Stress tests are opt-in: they run only when ``-m`` names them
    (``pytest -m stress``) or INTERLOCK_STRESS=1."""
    if "stress" in (config.option.markexpr or "") or os.environ.get("INTERLOCK_STRESS") == "1":
        return
    skip = pytest.mark.skip(reason="stress test: run with -m stress")
    for item in items:
        if item.get_closest_marker("stress"):
            item.add_marker(skip)


# ------------------------------------------------------------ start methods


@pytest.fixture(params=START_METHODS)
def mp_ctx(request):
    """A multiprocessing context for each start method."""
    return multiprocessing.get_context(request.param)


@pytest.fixture(params=["fork", "spawn"])
def mp_ctx_fs(request):
    """fork and spawn only (for the slower tests)."""
    return multiprocessing.get_context(request.param)


# ---------------------------------------------------------------- backends


class ShmBackend:
    """interlock's shared-memory objects.  Every object made through a
    backend is detached when the test ends.

    Where the backends differ in degree, not in kind, tests read it here:

    - ``url``: what ``interlock.connect(url)`` takes, in another process, to
      reach the same objects by name;
    - ``owner_death_after``: seconds before a lock whose owner was killed
      can be taken over at all (shared memory: at once, detected within a
      50 ms slice; Redis: when the owner's lease runs out);
    - ``owner_ids(lock)``: ``(pid, tid)`` of the lock's holder, or None.
    """

    name = "shm"
    url = "local://"
    owner_death_after = 0.0

    def __init__(self) -> None:
        self._objects: list = []

    @staticmethod
    def owner_ids(lock):
        return lock.owner

    def _keep(self, obj):
        self._objects.append(obj)
        return obj

    def queue(self, maxsize: int = 0, **kw):
        return self._keep(interlock.Queue(maxsize, **kw))

    def joinable_queue(self, maxsize: int = 0, **kw):
        return self._keep(interlock.JoinableQueue(maxsize, **kw))

    def simple_queue(self, **kw):
        return self._keep(interlock.SimpleQueue(**kw))

    def lock(self, owner_dies: bool = False, **kw):
        """``owner_dies``: the test kills (or ends the thread of) a holder and
        waits for the takeover; only the Redis backend reads it."""
        return self._keep(interlock.Lock(**kw))

    def rlock(self, owner_dies: bool = False, **kw):
        return self._keep(interlock.RLock(**kw))

    def close(self) -> None:
        for obj in self._objects:
            try:
                obj.detach()
            except Exception:
                pass
        self._objects.clear()


_redis_names = itertools.count()


class RedisBackend(ShmBackend):
    """The same objects on Redis (interlock.connect), on the session's own
    redis-server (tests/redis_server.py); skipped where there is none.
    Tests of what only shared memory has (byte capacity, segments, pickling
    by name into children, ...) are marked ``shm_only``."""

    name = "redis"
    #: Locks of the tests that kill their owner (``owner_dies=True``) get a
    #: short lease, so that the takeover comes in 2 s rather than the
    #: default 10.  Every other object keeps the default: a holder paused
    #: past a 2 s lease on a loaded machine (a CI run saw it once, in
    #: test_mutual_exclusion_across_processes[redis-spawn]) is fenced off
    #: with LeaseExpired, which is right for it and a failure for the test;
    #: likewise a consumer starved past its lease would see its messages
    #: re-delivered, which the exactly-once checks would report.
    LOCK_LEASE = 2.0
    owner_death_after = LOCK_LEASE

    def __init__(self) -> None:
        super().__init__()
        from redis_server import redis_backend

        self.ns = redis_backend()
        self.lock_ns = redis_backend(lease=self.LOCK_LEASE)
        self.url = self.ns.url

    @staticmethod
    def owner_ids(lock):
        tok = lock.owner  # "host:pid:tid:random"
        if tok is None:
            return None
        _, pid, tid, _ = tok.rsplit(":", 3)
        return int(pid), int(tid)

    def _named(self, kw):
        # unique in the session: a name is never reused by a later test
        kw.setdefault("name", f"contract-{TAG}-{next(_redis_names)}")
        kw.pop("capacity", None)
        return kw

    def queue(self, maxsize: int = 0, **kw):
        return self._keep(self.ns.Queue(maxsize, **self._named(kw)))

    def joinable_queue(self, maxsize: int = 0, **kw):
        return self._keep(self.ns.JoinableQueue(maxsize, **self._named(kw)))

    def simple_queue(self, **kw):
        return self._keep(self.ns.SimpleQueue(**self._named(kw)))

    def lock(self, owner_dies: bool = False, **kw):
        ns = self.lock_ns if owner_dies else self.ns
        return self._keep(ns.Lock(**self._named(kw)))

    def rlock(self, owner_dies: bool = False, **kw):
        ns = self.lock_ns if owner_dies else self.ns
        return self._keep(ns.RLock(**self._named(kw)))

    def close(self) -> None:
        for obj in self._objects:
            for how in ("unlink", "detach"):
                try:
                    getattr(obj, how)()
                except Exception:
                    pass
        self._objects.clear()


#: name -> class of a backend.  A backend provides queue(), joinable_queue(),
#: simple_queue(), lock(), rlock() with interlock's signatures, and close().
BACKENDS = {"shm": ShmBackend, "redis": RedisBackend}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request):
    if request.param != "shm" and request.node.get_closest_marker("shm_only"):
        pytest.skip(f"shared-memory only: not part of the {request.param} contract")
    b = BACKENDS[request.param]()
    yield b
    b.close()


@pytest.fixture
def queue_factory(backend):
    return backend.queue


@pytest.fixture
def joinable_queue_factory(backend):
    return backend.joinable_queue


@pytest.fixture
def simple_queue_factory(backend):
    return backend.simple_queue


@pytest.fixture
def lock_factory(backend):
    return backend.lock


@pytest.fixture
def rlock_factory(backend):
    return backend.rlock
