"""Helpers shared by the tests: unique names, a crash-safe record of what
processes did, and the functions that child processes run.

Child targets live here, not in the test modules, so that a child started
with ``spawn`` or ``forkserver`` imports only this small module (and
interlock), not pytest and a test file.

Records.  Tests that kill processes must know, after the fact, what each
process had *finished* doing.  A :class:`Record` is a file mapped into every
process: a child writes an entry, then publishes it by storing the new count
(one aligned 8-byte store, through a memoryview cast to "Q"), so that a
SIGKILL at any instant leaves either the old count or the new one, never a
half-written entry behind the count.  Not struct.pack_into: it zero-fills
the destination before it writes the value (three stores for one "<Q"), and
a consumer killed between them left its count at 0 with its entries intact,
which test_kill reported as hundreds of "lost" items (about 1 trial in
10,000; a hardware watchpoint on the count showed the victim's own extra
stores).
"""
from __future__ import annotations

import itertools
import mmap
import os
import random
import struct
import sys
import time
from dataclasses import dataclass

import interlock

# ------------------------------------------------------------------ names

#: Every object a test names carries this tag, so that the /dev/shm checks
#: in conftest can tell this run's files from other processes' files.
TAG = os.environ.setdefault("INTERLOCK_TEST_TAG", f"t{os.getpid()}")
_counter = itertools.count()


def skip_or_fail(reason: str) -> None:
    """A test that cannot run here for want of a tool: skipped on a
    developer's machine, *failed* under ``CI=true``, where ``.ci/run``
    installs every tool the suite needs (a missing one there is a broken CI,
    not a reason to test less)."""
    import pytest  # lazily: children import this module without pytest

    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def uname(what: str = "obj") -> str:
    """A fresh object name, unique in this test run."""
    return f"{TAG}-{what}-{os.getpid()}-{next(_counter)}"


def wait_until(cond, timeout: float = 10.0, interval: float = 0.005) -> bool:
    """Poll ``cond()`` until true or ``timeout``; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() > deadline:
            return bool(v)
        time.sleep(interval)


# ---------------------------------------------------------------- records

_HEAD = 64  # bytes before the first entry of a log: one count per cache line


class Record:
    """Fixed-size shared logs of u64 entries, one per writer, in a file.

    Layout: ``nlogs`` counts (u64, one per 64-byte line), then ``nlogs``
    arrays of ``per_log`` u64 entries.  Picklable by path.  Every word is
    read and written through ``self._words`` (a memoryview cast to "Q"):
    one aligned 8-byte load or store each.
    """

    def __init__(self, path: str, nlogs: int, per_log: int, *, create: bool = False) -> None:
        self.path, self.nlogs, self.per_log = str(path), nlogs, per_log
        size = _HEAD * nlogs + 8 * nlogs * per_log
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(self.path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, size)
            self._mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._words = memoryview(self._mm).cast("Q")

    def __reduce__(self):
        return (Record, (self.path, self.nlogs, self.per_log))

    def _count_at(self, log: int) -> int:
        return _HEAD // 8 * log

    def _entry_at(self, log: int, i: int) -> int:
        return _HEAD // 8 * self.nlogs + log * self.per_log + i

    def count(self, log: int) -> int:
        return self._words[self._count_at(log)]

    def append(self, log: int, value: int) -> None:
        """Write the entry, then publish it by storing the new count."""
        n = self.count(log)
        if n >= self.per_log:
            raise IndexError(f"log {log} is full ({self.per_log} entries)")
        self._words[self._entry_at(log, n)] = value
        self._words[self._count_at(log)] = n + 1

    def set_count(self, log: int, n: int) -> None:
        self._words[self._count_at(log)] = n

    def entries(self, log: int) -> list[int]:
        start = self._entry_at(log, 0)
        return self._words[start:start + self.count(log)].tolist()


# ------------------------------------------------------------ item coding


def encode(producer: int, seq: int, pad: int = 0) -> bytes:
    """An item: who put it and its rank, plus ``pad`` filler bytes."""
    return struct.pack("<II", producer, seq) + b"\xab" * pad


def decode(item) -> tuple[int, int]:
    if isinstance(item, tuple):
        return item[0], item[1]
    return struct.unpack_from("<II", item, 0)


def code(producer: int, seq: int) -> int:
    return (producer << 32) | seq


def uncode(c: int) -> tuple[int, int]:
    return c >> 32, c & 0xFFFFFFFF


# ----------------------------------------------------------- child targets
# Every target exits with a distinctive code on an unexpected exception so
# that the parent can tell "killed" (-9) from "failed" (3).


def _fail(exc: BaseException) -> None:
    import traceback

    traceback.print_exception(exc)
    sys.stderr.flush()
    os._exit(3)


def producer(q, idx: int, n: int, rec: Record | None = None, max_pad: int = 40,
             as_tuple: bool = False, seed: int = 0, barrier=None) -> None:
    """Put n items (idx, 0..n-1); after each put *returns*, record it."""
    try:
        if barrier is not None:
            barrier.wait(60)
        rnd = random.Random(seed * 1000 + idx)
        for seq in range(n):
            item = (idx, seq, b"x" * rnd.randrange(max_pad + 1)) if as_tuple else encode(
                idx, seq, rnd.randrange(max_pad + 1))
            q.put(item, timeout=60)
            if rec is not None:
                rec.set_count(idx, seq + 1)
    except BaseException as e:  # pragma: no cover - reported through the exit code
        _fail(e)


def producer_batches(q, idx: int, n: int, rec: Record | None = None, batch: int = 5,
                     barrier=None) -> None:
    """Like :func:`producer`, with put_many (committed whole when it returns)."""
    try:
        if barrier is not None:
            barrier.wait(60)
        seq = 0
        while seq < n:
            items = [encode(idx, s, s % 17) for s in range(seq, min(n, seq + batch))]
            q.put_many(items, timeout=60)
            seq += len(items)
            if rec is not None:
                rec.set_count(idx, seq)
    except BaseException as e:  # pragma: no cover
        _fail(e)


def consumer(q, idx: int, rec: Record, use_many: bool = False, barrier=None) -> None:
    """Take items until the queue is shut down and drained; record each one
    (code(producer, seq)) in log ``idx`` right after taking it."""
    try:
        if barrier is not None:
            barrier.wait(60)
        while True:
            try:
                items = q.get_many(8, timeout=60) if use_many else [q.get(timeout=60)]
            except interlock.ShutDown:
                return
            for item in items:
                rec.append(idx, code(*decode(item)))
    except BaseException as e:  # pragma: no cover
        _fail(e)


def put_items(q, items) -> None:
    try:
        for x in items:
            q.put(x, timeout=30)
    except BaseException as e:  # pragma: no cover
        _fail(e)


def get_n(q, n: int, out) -> None:
    """Take n items and put them, as a list, into queue ``out``."""
    try:
        out.put([q.get(timeout=30) for _ in range(n)], timeout=30)
    except BaseException as e:  # pragma: no cover
        _fail(e)


def echo_qsize(q, out) -> None:
    try:
        out.put(q.qsize(), timeout=30)
    except BaseException as e:  # pragma: no cover
        _fail(e)


def consume_with_task_done(q, n: int) -> None:
    try:
        for _ in range(n):
            q.get(timeout=30)
            time.sleep(0.002)
            q.task_done()
    except BaseException as e:  # pragma: no cover
        _fail(e)


def attach_put_wait(name: str, items, ready, go) -> None:
    """Attach to a queue by name, put items, tell the parent, wait for ``go``
    (a multiprocessing Event) and exit."""
    try:
        q = interlock.Queue(name=name, create=False)
        for x in items:
            q.put(x)
        ready.set()
        go.wait(30)
    except BaseException as e:  # pragma: no cover
        _fail(e)


def create_put_exit(name: str, items, maxsize: int = 0) -> None:
    """Create a named queue, put items, and exit (the creator leaves first)."""
    try:
        q = interlock.Queue(maxsize, name=name, create=True)
        for x in items:
            q.put(x)
    except BaseException as e:  # pragma: no cover
        _fail(e)


def attach_and_hang(obj, ready) -> None:
    """Keep ``obj`` (unpickled here, so attached) until killed."""
    try:
        ready.set()
        time.sleep(120)
    except BaseException as e:  # pragma: no cover
        _fail(e)


def keep_until(obj, ready, go) -> None:
    """Use ``obj`` (passed as an argument), tell the parent, wait for ``go``,
    then return normally: exit must release the handle."""
    try:
        if isinstance(obj, interlock.Queue):
            obj.put(("child", os.getpid()))
        ready.set()
        go.wait(30)
    except BaseException as e:  # pragma: no cover
        _fail(e)


def hold_lock(lock, ready, hold: float = 120.0) -> None:
    """Take the lock, say so, and keep it ``hold`` seconds (or until killed)."""
    try:
        lock.acquire()
        ready.set()
        time.sleep(hold)
        lock.release()
    except BaseException as e:  # pragma: no cover
        _fail(e)


def try_release(lock, out) -> None:
    """Report the exception type and message of releasing a lock we do not hold."""
    try:
        lock.release()
        out.put(("released", ""))
    except RuntimeError as e:
        out.put((type(e).__name__, str(e)))
    except BaseException as e:  # pragma: no cover
        _fail(e)


def try_acquire(lock, out, timeout: float) -> None:
    try:
        t0 = time.monotonic()
        got = lock.acquire(timeout=timeout)
        out.put((got, time.monotonic() - t0))
        if got:
            lock.release()
    except BaseException as e:  # pragma: no cover
        _fail(e)


def increment_under_lock(lock, rec: Record, slot: int, n: int, spin: int = 50) -> None:
    """Non-atomic read-modify-write of a shared counter, n times, under the lock.

    ``rec`` log 0 count is the counter.  Without mutual exclusion, updates
    are lost: the read and the write are far apart (``spin``) and another
    process's write in between is overwritten.
    """
    try:
        for _ in range(n):
            with lock:
                v = rec.count(0)
                for _ in range(spin):
                    pass
                if spin and random.random() < 0.05:
                    time.sleep(0)
                rec.set_count(0, v + 1)
            rec.set_count(slot, rec.count(slot) + 1)
    except BaseException as e:  # pragma: no cover
        _fail(e)


def lock_worker(lock, rec: Record, slot: int, n: int, barrier=None) -> None:
    """For the kill tests: n critical sections on a shared two-field state.

    Log 0 count: ``holder`` (pid of whoever is inside, else 0).  Log 1
    count: the counter.  Log 2 count: mutual-exclusion violations seen.
    Log 3 count: takeovers reported (OwnerDiedError).  This worker's own
    count of finished sections is log ``slot``'s count, written after the
    release.  A takeover finds ``holder`` naming the dead process; the
    worker repairs it (the dead owner may or may not have incremented: the
    counter check in the test allows for that one increment).
    """
    try:
        if barrier is not None:
            barrier.wait(60)
        me = os.getpid()
        for i in range(n):
            try:
                got = lock.acquire(timeout=30)
            except interlock.OwnerDiedError as e:
                got = True  # held: OwnerDiedError leaves the lock to us
                rec.set_count(3, rec.count(3) + 1)
                holder = rec.count(0)
                if holder not in (0, e.dead_pid):
                    rec.set_count(2, rec.count(2) + 1)
                rec.set_count(0, 0)  # repair: the dead owner is out
            if not got:
                raise TimeoutError("lock not acquired in 30 s")
            if rec.count(0) != 0:
                rec.set_count(2, rec.count(2) + 1)
            rec.set_count(0, me)
            v = rec.count(1)
            for _ in range(random.randrange(200)):
                pass
            if random.random() < 0.3:
                time.sleep(0.0002)  # hold the lock a while: others wait, kills land inside
            rec.set_count(1, v + 1)
            rec.set_count(0, 0)
            lock.release()
            rec.set_count(slot, i + 1)
    except BaseException as e:  # pragma: no cover
        _fail(e)


def attach_detach_loop(name: str, kind: str, barrier=None) -> None:
    """Attach to and detach from a named object forever (until killed):
    exercises the segment's meta lock and slot table under SIGKILL."""
    try:
        cls = getattr(interlock, kind)
        keep = cls(name=name, create=False)  # stay a user between rounds
        if barrier is not None:
            barrier.wait(60)
        while True:
            cls(name=name, create=False).detach()
            if keep is None:  # pragma: no cover
                break
    except BaseException as e:  # pragma: no cover
        _fail(e)


def pool_init(q, tag) -> None:
    global _pool_q, _pool_tag
    _pool_q, _pool_tag = q, tag


def pool_task(x: int) -> int:
    _pool_q.put((_pool_tag, x, os.getpid()))
    return x * x


def pool_task_with_queue(args) -> int:
    q, x = args
    q.put(x)
    return os.getpid()


def thread_exit_holding(lock) -> None:  # run in a thread
    lock.acquire()


@dataclass
class Point:
    """A picklable user class (importable by children)."""

    x: int
    y: list


class SubBytes(bytes):
    """A bytes subclass: pickled (not sent raw), so that its type survives."""


class BadUnpickle:
    """Pickles fine; unpickling raises (in whatever process gets it)."""

    def __reduce__(self):
        return (_explode, ("unpickling refused on purpose",))


def _explode(msg: str):
    raise LookupError(msg)


# ------------------------------------------------- the Lock hand-off (kills)


def handoff_acquirer(lock, q, rec: Record, n: int, barrier=None) -> None:
    """Acquire ``lock`` n times, never releasing it: after each acquisition,
    hand item i to the releaser through ``q`` (multiprocessing's Lock as a
    binary semaphore).  Log 0 counts the acquisitions."""
    try:
        if barrier is not None:
            barrier.wait(60)
        for i in range(n):
            if not lock.acquire(timeout=60):
                raise AssertionError(f"acquisition {i} timed out")
            rec.set_count(0, i + 1)
            q.put(i)
    except BaseException as e:  # pragma: no cover
        _fail(e)


def handoff_releaser(lock, q, rec: Record, barrier=None) -> None:
    """Release ``lock`` once per item of ``q`` until it is shut down.  Log 1
    counts the releases."""
    try:
        if barrier is not None:
            barrier.wait(60)
        for _ in q:
            lock.release()
            rec.set_count(1, rec.count(1) + 1)
    except BaseException as e:  # pragma: no cover
        _fail(e)
