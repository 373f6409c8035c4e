"""Every bad input: the exception type, a message that says what is wrong,
and the objects still usable afterwards.

One table (``CASES``); each row names the mistake, does it, and says what
must be raised.  After every row the fixture checks that the queue, the
joinable queue and both locks still work, and (through conftest) that no
file was left in /dev/shm.  Rows about files in /dev/shm also check that a
foreign file is left exactly as it was: interlock must refuse it, not
"repair" or remove it.
"""
from __future__ import annotations

import math
import os
import struct
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest

import interlock
from interlock import DeadlockError, SegmentError, _segment

import _helpers as h


class Env:
    """The objects every row may use, and foreign files it may make."""

    def __init__(self) -> None:
        self.q = interlock.Queue(4, name=h.uname("bad"), capacity=1024)
        self.jq = interlock.JoinableQueue()
        self.lock = interlock.Lock()
        self.rlock = interlock.RLock()
        self.files: dict[str, bytes | None] = {}  # name -> content (None: a symlink)
        self.extra: list = []

    # -- foreign files in /dev/shm, under interlock's naming scheme
    def file(self, data: bytes) -> str:
        name = h.uname("foreign")
        fd = os.open(_segment.path_of(name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        self.files[name] = data
        return name

    def symlink(self, target: str) -> str:
        name = h.uname("link")
        os.symlink(target, _segment.path_of(name))
        self.files[name] = None
        return name

    def segment_bytes(self, *, version: int = _segment.LAYOUT_VERSION, kind: int = 1,
                      total: int = 4096, size: int = 4096) -> bytes:
        """A header written by hand, as interlock would lay it out."""
        buf = bytearray(size)
        _segment._HDR.pack_into(buf, 0, _segment.MAGIC, version, kind, total, os.getpid(),
                                os.getuid(), 0, 0, 1024, 64, 4, 0, 0, 0)
        return bytes(buf)

    def keep(self, obj):
        self.extra.append(obj)
        return obj

    def check_usable(self) -> None:
        q, jq = self.q, self.jq
        while not q.empty():  # a row may have left items: they must be gettable
            q.get_nowait()
        q.put(("still", "usable"), timeout=5)
        q.put_many([b"a", b"b"], timeout=5)
        assert q.get(timeout=5) == ("still", "usable")
        assert q.get_many(2, timeout=5) == [b"a", b"b"]
        assert q.qsize() == 0 and not q.is_shutdown
        while jq.unfinished_tasks:
            jq.get_nowait()
            jq.task_done()
        jq.put(1)
        jq.get()
        jq.task_done()
        assert jq.join(timeout=5)
        for lock in (self.lock, self.rlock):
            assert not lock.locked(), f"{lock!r} left held"
            assert lock.acquire(timeout=5)
            lock.release()
        for name, data in self.files.items():
            path = _segment.path_of(name)
            if data is None:
                assert os.path.islink(path), "the symlink was removed"
            else:
                with open(path, "rb") as f:
                    assert f.read() == data, f"foreign file {name} was modified"

    def close(self) -> None:
        for obj in [self.q, self.jq, self.lock, self.rlock, *self.extra]:
            try:
                obj.detach()
            except Exception:
                pass
        for name in self.files:
            try:
                os.unlink(_segment.path_of(name))
            except FileNotFoundError:
                pass


@pytest.fixture
def env():
    e = Env()
    yield e
    e.close()


@dataclass
class Case:
    id: str
    action: Callable[[Env], Any]
    exc: type[BaseException] | tuple[type[BaseException], ...]
    match: str
    after: Callable[[Env], Any] | None = field(default=None)  # extra checks


def _double_acquire(e: Env):
    """interlock's own mutexes (not a Lock, whose holder's second acquire
    waits for another thread's release) refuse a second acquire by their
    holder."""
    from interlock import _core

    m = _core.Mutex(e.lock._seg.mm, e.lock._seg.object_offset)
    m.acquire()
    try:
        m.acquire()
    finally:
        m.release()
        m._detach()


def _put_many_one_unpicklable(e: Env):
    e.q.put_many([1, 2, threading.Lock(), 4])


def _bad_unpickle(e: Env):
    e.q.put(h.BadUnpickle())
    e.q.put("next")
    e.q.get()


def _detached_queue(e: Env):
    q = interlock.Queue(name=e.q.name)
    q.detach()
    q.put(1)


def _detached_lock(e: Env):
    lock = interlock.Lock(name=e.lock.name)
    lock.detach()
    lock.acquire()


def _unlink_after_detach(e: Env):
    q = interlock.Queue()
    q.detach()
    q.unlink()


def _foreign(e: Env, data: bytes, cls=interlock.Queue, **kw):
    return cls(name=e.file(data), **kw)


def _wrong_kind(e: Env, have, want):
    obj = e.keep(have(name=h.uname("kind")))
    return want(name=obj.name)


def _expect_next_get(e: Env):
    assert e.q.get(timeout=5) == "next"


def _expect_queue_empty(e: Env):
    assert e.q.qsize() == 0  # all or nothing: the picklable items were not put


NAN = float("nan")
Q = interlock.Queue
L = interlock.Lock

CASES = [
    # ---- constructor arguments
    Case("maxsize-str", lambda e: Q("3"), TypeError, r"maxsize must be an int, not str"),
    Case("maxsize-float", lambda e: Q(2.5), TypeError, r"maxsize must be an int, not float"),
    Case("maxsize-bool", lambda e: Q(True), TypeError, r"maxsize must be an int, not bool"),
    Case("maxsize-too-large", lambda e: Q(2**31), ValueError, r"maxsize is too large"),
    Case("capacity-too-small", lambda e: Q(capacity=63), ValueError,
         r"capacity must be between 64 and \d+ bytes, got 63"),
    Case("capacity-too-large", lambda e: Q(capacity=2**30 + 1), ValueError,
         r"capacity must be between"),
    Case("capacity-str", lambda e: Q(capacity="4k"), TypeError, r"capacity must be an int"),
    Case("capacity-positional", lambda e: Q(3, 4096), TypeError, r"positional argument"),
    Case("create-str", lambda e: Q(create="yes"), TypeError,
         r"create must be None, True or False, not 'yes'"),
    Case("lock-create-str", lambda e: L(create="no"), TypeError, r"create must be None"),
    Case("on-owner-death-bad", lambda e: L(on_owner_death="explode"), ValueError,
         r"on_owner_death must be one of \('warn', 'raise', 'ignore'\), not 'explode'"),
    # ---- names
    Case("name-int", lambda e: Q(name=123), TypeError, r"name must be a str, not int"),
    Case("name-bytes", lambda e: L(name=b"x"), TypeError, r"name must be a str, not bytes"),
    Case("name-empty", lambda e: Q(name=""), ValueError, r"name must not be empty"),
    Case("name-slash", lambda e: Q(name="a/b"), ValueError, r"invalid name 'a/b'.*no '/'"),
    Case("name-dotdot", lambda e: Q(name="a..b"), ValueError, r"invalid name 'a\.\.b'.*no '\.\.'"),
    Case("name-parent", lambda e: L(name="../etc"), ValueError, r"invalid name '\.\./etc'"),
    Case("name-dot-first", lambda e: Q(name=".hidden"), ValueError, r"invalid name.*not first"),
    Case("name-nul", lambda e: Q(name="a\x00b"), ValueError, r"invalid name 'a\\x00b'"),
    Case("name-space", lambda e: Q(name="a b"), ValueError, r"invalid name 'a b'"),
    Case("name-too-long", lambda e: Q(name="x" * 201), ValueError,
         r"name is too long \(201 bytes; at most 200\)"),
    Case("name-too-long-utf8", lambda e: Q(name="é" * 101), ValueError, r"too long \(202 bytes"),
    # ---- create / attach
    Case("create-existing", lambda e: Q(name=e.q.name, create=True), FileExistsError,
         r"already exists"),
    Case("attach-missing", lambda e: L(name=h.uname("none"), create=False), FileNotFoundError,
         r"no interlock object named"),
    Case("attach-other-maxsize", lambda e: Q(5, name=e.q.name), ValueError,
         r"exists with maxsize=4, capacity=1024; asked for maxsize=5"),
    Case("attach-other-capacity", lambda e: Q(name=e.q.name, capacity=2048), ValueError,
         r"exists with maxsize=4, capacity=1024"),
    Case("attach-lock-as-queue", lambda e: Q(name=e.lock.name), SegmentError,
         r"is a Lock, not a Queue"),
    Case("attach-queue-as-lock", lambda e: L(name=e.q.name), SegmentError,
         r"is a Queue, not a Lock"),
    Case("attach-rlock-as-lock", lambda e: _wrong_kind(e, interlock.RLock, L), SegmentError,
         r"is a RLock, not a Lock"),
    Case("attach-truncated", lambda e: _foreign(e, b"\0" * 100), SegmentError,
         r"is truncated \(100 bytes\)"),
    Case("attach-empty-file", lambda e: _foreign(e, b""), SegmentError, r"truncated \(0 bytes\)"),
    Case("attach-bad-magic", lambda e: _foreign(e, b"NOTMAGIC" + b"\0" * 4088), SegmentError,
         r"not an interlock segment \(bad magic b'NOTMAGIC'\)"),
    Case("attach-bad-version", lambda e: _foreign(e, e.segment_bytes(version=99)), SegmentError,
         rf"layout version 99; this interlock reads version {_segment.LAYOUT_VERSION}"),
    Case("attach-header-size-lies", lambda e: _foreign(e, e.segment_bytes(total=8192)),
         SegmentError, r"truncated or inconsistent \(4096 bytes, header says 8192\)"),
    Case("attach-foreign-kind", lambda e: _foreign(e, e.segment_bytes(kind=77), L), SegmentError,
         r"is a 77, not a Lock"),
    Case("attach-symlink", lambda e: Q(name=e.symlink("/dev/null")), SegmentError,
         r"is a symbolic link; refusing to follow it"),
    Case("attach-dangling-symlink", lambda e: Q(name=e.symlink("/nonexistent/x"), create=False),
         SegmentError, r"symbolic link"),
    # ---- method arguments
    Case("put-timeout-negative", lambda e: e.q.put(1, timeout=-1), ValueError,
         r"'timeout' must be a non-negative number"),
    Case("put-timeout-nan", lambda e: e.q.put(1, True, NAN), ValueError, r"non-negative"),
    Case("put-timeout-str", lambda e: e.q.put(1, timeout="1"), TypeError,
         r"'timeout' must be a number or None, not str"),
    Case("get-timeout-negative", lambda e: e.q.get(timeout=-0.5), ValueError, r"non-negative"),
    Case("get-timeout-nan", lambda e: e.q.get(timeout=math.nan), ValueError, r"non-negative"),
    Case("get-timeout-list", lambda e: e.q.get(timeout=[1]), TypeError, r"not list"),
    Case("put-too-many-args", lambda e: e.q.put(1, True, 1, 2), TypeError,
         r"put\(\) takes at most 3 arguments \(4 given\)"),
    Case("put-unknown-keyword", lambda e: e.q.put(1, bogus=2), TypeError,
         r"put\(\) got an unexpected keyword argument 'bogus'"),
    Case("put-duplicate-argument", lambda e: e.q.put(1, obj=2), TypeError,
         r"multiple values for argument 'obj'"),
    Case("put-no-item", lambda e: e.q.put(), TypeError, r"missing required argument 'obj'"),
    Case("put-many-not-iterable", lambda e: e.q.put_many(5), TypeError,
         r"put_many\(\) expects an iterable"),
    Case("put-many-timeout-negative", lambda e: e.q.put_many([1], timeout=-1), ValueError,
         r"non-negative"),
    Case("get-many-zero", lambda e: e.q.get_many(0), ValueError, r"'max_items' must be >= 1"),
    Case("get-many-str", lambda e: e.q.get_many("3"), TypeError,
         r"'max_items' must be an int, not str"),
    Case("get-many-unknown-kw", lambda e: e.q.get_many(max=3), TypeError,
         r"unexpected keyword argument 'max'"),
    Case("join-timeout-negative", lambda e: e.jq.join(-1), ValueError, r"non-negative"),
    Case("join-timeout-str", lambda e: e.jq.join(timeout="soon"), TypeError, r"not str"),
    Case("task-done-too-many", lambda e: e.jq.task_done(), ValueError,
         r"task_done\(\) called too many times"),
    # ---- items
    Case("item-oversize", lambda e: e.q.put(b"x" * 1024), ValueError,
         r"message of 1032 bytes \(header included\) can never fit: the queue's capacity is "
         r"1024 bytes"),
    Case("item-unpicklable", lambda e: e.q.put(threading.Lock()), TypeError,
         r"cannot pickle '_thread.lock' object"),
    # pickle's own error, whose wording changed: "Can't pickle <function
    # ...>: attribute lookup ... failed" (<= 3.12), "Can't get local object
    # '...<locals>.<lambda>'" (3.13)
    Case("item-unpicklable-local-function", lambda e: e.q.put(lambda: 0), (
        AttributeError, __import__("pickle").PicklingError),
        r"(?i)can't pickle|can't get local object"),
    Case("put-many-one-unpicklable", _put_many_one_unpicklable, TypeError, r"cannot pickle",
         after=_expect_queue_empty),
    Case("item-fails-to-unpickle", _bad_unpickle, LookupError, r"unpickling refused on purpose",
         after=_expect_next_get),
    # ---- locks
    Case("acquire-nonblocking-with-timeout", lambda e: e.lock.acquire(False, 1), ValueError,
         r"can't specify a timeout for a non-blocking call"),
    Case("acquire-timeout-negative", lambda e: e.lock.acquire(timeout=-2), ValueError,
         r"non-negative"),
    Case("acquire-timeout-nan", lambda e: e.rlock.acquire(timeout=NAN), ValueError,
         r"non-negative"),
    Case("acquire-timeout-str", lambda e: e.lock.acquire(timeout="1"), TypeError,
         r"'timeout' must be a number or None"),
    Case("acquire-timeout-too-large", lambda e: e.lock.acquire(timeout=1e100), OverflowError,
         r"too large"),
    Case("acquire-unknown-keyword", lambda e: e.lock.acquire(wait=True), TypeError,
         r"unexpected keyword argument 'wait'"),
    Case("acquire-block-and-blocking", lambda e: e.lock.acquire(True, blocking=True), TypeError,
         r"both 'block' and 'blocking'"),
    Case("acquire-three-positional", lambda e: e.lock.acquire(True, 1, True), TypeError,
         r"at most 2 positional arguments"),
    Case("release-unheld-lock", lambda e: e.lock.release(), ValueError,
         r"semaphore or lock released too many times"),
    Case("release-unheld-rlock", lambda e: e.rlock.release(), RuntimeError, r"un-acquired"),
    Case("acquire-twice-blocking-internal-mutex", _double_acquire, DeadlockError,
         r"already holds the lock"),
    # ---- detached objects
    Case("queue-used-after-detach", _detached_queue, ValueError,
         r"operation on a closed \(detached\) interlock object"),
    Case("lock-used-after-detach", _detached_lock, ValueError, r"closed \(detached\)"),
    Case("unlink-after-detach", _unlink_after_detach, ValueError, r"closed"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(env, case):
    with pytest.raises(case.exc, match=case.match):
        case.action(env)
    if case.after is not None:
        case.after(env)
    env.check_usable()


def test_case_ids_are_unique_and_many():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 25


def test_put_after_shutdown_then_reopen_by_name_is_still_shut_down(env):
    """A shutdown is for everyone and for good: a new handle sees it too."""
    env.q.shutdown()
    q2 = env.keep(interlock.Queue(name=env.q.name))
    with pytest.raises(interlock.ShutDown, match=r"put\(\) on a shut-down queue"):
        q2.put(1)


def test_close_is_for_this_object_only_a_new_handle_is_open(env):
    """close() is multiprocessing's: a new handle on the same queue is open."""
    env.q.put(1)
    env.q.close()
    q2 = env.keep(interlock.Queue(name=env.q.name))
    assert q2.get(timeout=5) == 1
    q2.put(2)
    with pytest.raises(ValueError, match="is closed"):
        env.q.get()


def test_get_many_keeps_items_after_one_that_fails_to_unpickle(env):
    env.q.put_many([1, h.BadUnpickle(), 3])
    with pytest.raises(LookupError) as e:
        env.q.get_many(10)
    # The batch was taken as a whole; the items that did unpickle are handed
    # over on the error, in queue order: nothing is lost.
    assert e.value.items == [1, 3]
    if hasattr(e.value, "__notes__"):
        assert "other item(s)" in e.value.__notes__[0]
    env.q.put(4)
    assert env.q.get_nowait() == 4


def test_bad_header_struct_is_what_segment_reads(env):
    """Guard for the hand-written headers above: a real segment parses the
    same way, so the rows test the checks, not a wrong layout."""
    with open(_segment.path_of(env.q.name), "rb") as f:
        real = _segment.Header.parse(f.read(_segment.OFF_SLOTS))
    mine = _segment.Header.parse(env.segment_bytes())
    assert real.magic == mine.magic and real.version == mine.version
    assert struct.unpack_from("<I", env.segment_bytes(version=99), 8)[0] == 99


# ------------------------------------------ a damaged ring header or record
# Offsets in the ring header (ring.h, docs/design/queue.md): magic 0, size 8,
# capacity 16, maxsize 24, tail 128, head 256; the data after the header.
RING_MAGIC, RING_SIZE, RING_CAPACITY, RING_MAXSIZE, RING_TAIL = 0, 8, 16, 24, 128


def _ring_poke(q: interlock.Queue, off: int, fmt: str, value: int) -> None:
    struct.pack_into(fmt, q._seg.mm, q._seg.object_offset + off, value)


def test_record_running_past_the_published_data_is_corruption() -> None:
    # Issue 12: a record whose length runs past pos(tail) was copied out,
    # bytes nobody published included, before anything was reported.
    q = interlock.Queue(name=h.uname("rec"), capacity=4096)
    try:
        q.put(b"abc")  # one record of 16 bytes: header 8, payload 3, padding 5
        data = q._seg.object_offset + interlock._core.RING_HEADER_SIZE
        struct.pack_into("<I", q._seg.mm, data, 100)  # len 100: 112 bytes, past the 16
        with pytest.raises(RuntimeError, match="corrupt.*16 published bytes"):
            q.get_nowait()
        with pytest.raises(RuntimeError, match="corrupt"):
            q.get_many(block=False)
        assert q.qsize() == 1  # nothing consumed
        struct.pack_into("<I", q._seg.mm, data, 3)  # repaired: the record comes out whole
        assert q.get_nowait() == b"abc"
    finally:
        q.detach()


def test_buffer_lengths_that_wrap_are_corruption() -> None:
    np = pytest.importorskip("numpy")
    q = interlock.Queue(name=h.uname("rec"), capacity=4096)
    try:
        q.put(np.arange(4, dtype=np.uint8))  # a pickle with one out-of-band buffer
        data = q._seg.object_offset + interlock._core.RING_HEADER_SIZE
        # the two u64 lengths after the header: one huge, summing past 2**64
        struct.pack_into("<Q", q._seg.mm, data + 8, 2**64 - 1)
        with pytest.raises(RuntimeError, match="corrupt"):
            q.get_nowait()
        assert q.qsize() == 1
    finally:
        q.detach()


@pytest.mark.parametrize("off,fmt,value,message", [
    (RING_MAXSIZE, "<Q", 2**63, r"maxsize 9223372036854775808 out of range"),
    (RING_MAXSIZE, "<Q", 0, r"maxsize 0 out of range"),
    (RING_CAPACITY, "<Q", 2**40, r"capacity 1099511627776 out of range"),
    (RING_SIZE, "<Q", 2**29, r"ring of 536870912 data bytes in a mapping of \d+ bytes"),
    (RING_TAIL, "<Q", (1 << 32) | 8192, r"positions out of range: head 0 \(0 records taken\), tail 8192"),
    (RING_TAIL, "<Q", (9 << 32) | 16, r"positions out of range"),  # 9 records in 16 bytes
    (RING_MAGIC, "<I", 0xDEADBEEF, r"ring magic 0xdeadbeef version 5, expected 0x474e4952"),
    # a queue of interlock before the pooled spill files (ring version 1)
    (RING_MAGIC + 4, "<I", 1, r"ring magic 0x474e4952 version 1, expected 0x474e4952 version 5"),
    # before packed records (version 2): its readers would refuse them
    (RING_MAGIC + 4, "<I", 2, r"ring magic 0x474e4952 version 2, expected 0x474e4952 version 5"),
    # before the armed eventcounts (version 3): its sleepers would not arm,
    # and a new notifier wakes only armed ones
    (RING_MAGIC + 4, "<I", 3, r"ring magic 0x474e4952 version 3, expected 0x474e4952 version 5"),
    # before spilled buffers at their source's page offset (version 4): its
    # readers would take a table entry's phase bits for a length
    (RING_MAGIC + 4, "<I", 4, r"ring magic 0x474e4952 version 4, expected 0x474e4952 version 5"),
], ids=["maxsize-2**63", "maxsize-0", "capacity-too-big", "size-past-mapping",
        "tail-past-capacity", "more-records-than-bytes", "magic", "version-1", "version-2",
        "version-3", "version-4"])
def test_damaged_ring_header_is_refused_on_attach(off: int, fmt: str, value: int,
                                                  message: str) -> None:
    # Issue 12: maxsize 2**63 was accepted; the error printed a raw "%#x".
    q = interlock.Queue(name=h.uname("hdr"), capacity=4096)
    try:
        q.put(b"abc")
        _ring_poke(q, off, fmt, value)
        with pytest.raises(ValueError, match="not a valid interlock queue: " + message) as e:
            interlock.Queue(name=q.name, create=False)
        assert "%" not in str(e.value)
    finally:
        q.detach()
