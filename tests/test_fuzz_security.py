"""Garbage in, resource exhaustion, other users, random operation sequences.

- a full /dev/shm (a small tmpfs mounted for the test) gives ENOSPC at
  creation, never a SIGBUS later;
- running out of file descriptors gives a clear OSError (EMFILE);
- segments are 0600, never followed through a symlink, and another user
  cannot open them (run as `nobody` with setpriv when we are root);
- random headers and random bytes at a segment's name are refused with a
  clear exception, never a crash (hypothesis);
- random sequences of queue operations behave like a model deque
  (hypothesis stateful testing).
"""
from __future__ import annotations

import collections
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import interlock
from interlock import _segment


# ------------------------------------------------------------- /dev/shm full
@pytest.fixture
def tiny_shm(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a small tmpfs")
    d = tempfile.mkdtemp(prefix="interlock-tinyshm-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", d],
                       capture_output=True)
    if r.returncode != 0:
        os.rmdir(d)
        pytest.skip(f"cannot mount tmpfs: {r.stderr.decode().strip()}")
    monkeypatch.setattr(_segment, "SHM_DIR", d)
    try:
        yield d
    finally:
        subprocess.run(["umount", d], check=False)
        os.rmdir(d)


def test_full_shm_raises_enospc_at_creation(tiny_shm: str) -> None:
    small = interlock.Queue(name="fits", capacity=4096)  # fits in 256 KiB
    with pytest.raises(OSError) as e:
        interlock.Queue(name="toobig", capacity=1 << 20)
    assert e.value.errno == 28 and "cannot create shared memory" in str(e.value)
    assert os.listdir(tiny_shm) == [f"{_segment.PREFIX}.{os.getuid()}.fits"]  # nothing half-made
    small.put(b"x" * 1000)  # the existing queue still works
    assert small.get() == b"x" * 1000
    small.detach()
    assert os.listdir(tiny_shm) == []


# --------------------------------------------------------- out of descriptors
def test_out_of_file_descriptors_is_a_clear_error() -> None:
    """Objects hold no descriptor (200 under a limit of 64), but making one
    needs a couple for a moment: with none left, a clear EMFILE, and the
    objects already made keep working."""
    code = r"""
import os, resource, interlock
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
qs = [interlock.Queue(capacity=4096) for i in range(200)]
print("MADE", len(qs))
fillers = []
try:
    while True:
        fillers.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
try:
    qs.append(interlock.Queue(capacity=4096))
    print("NOERROR", len(qs))
except OSError as e:
    print("ERRNO", e.errno, len(qs))
    q = qs[0]
    q.put(b"still works")
    print(q.get())
for fd in fillers:
    os.close(fd)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout.split()
    assert out[:2] == ["MADE", "200"], r.stdout
    assert out[2] == "ERRNO" and out[3] == "24", r.stdout  # EMFILE
    assert "b'still" in r.stdout


# -------------------------------------------------------------- other users
def test_segments_are_private_to_their_user() -> None:
    q = interlock.Queue(name=f"sec-{os.getpid()}")
    st_ = os.stat(_segment.path_of(q.name))
    assert stat.S_IMODE(st_.st_mode) == 0o600
    assert st_.st_uid == os.getuid()
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to act as another user")
    code = (
        "import os, sys\n"
        f"p = {_segment.path_of(q.name)!r}\n"
        "try:\n"
        "    os.open(p, os.O_RDWR)\n"
        "    print('OPENED')\n"
        "except PermissionError:\n"
        "    print('DENIED')\n"
    )
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if "DENIED" not in r.stdout and "OPENED" not in r.stdout:
        pytest.skip(f"cannot run as nobody here: {r.stderr.strip()[:200]}")
    assert r.stdout.strip() == "DENIED"
    q.detach()


def test_symlink_at_the_name_is_refused(tmp_path: Any) -> None:
    name = f"sec-link-{os.getpid()}"
    target = tmp_path / "target"
    target.write_bytes(b"\0" * 8192)
    os.symlink(target, _segment.path_of(name))
    try:
        with pytest.raises(interlock.SegmentError, match="symbolic link"):
            interlock.Queue(name=name)
        assert target.read_bytes() == b"\0" * 8192  # untouched
    finally:
        os.unlink(_segment.path_of(name))


def test_foreign_owner_is_refused() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    name = f"sec-own-{os.getpid()}"
    q = interlock.Queue(name=name)
    os.chown(_segment.path_of(name), 65534, 65534)
    try:
        with pytest.raises(PermissionError, match="belongs to uid 65534"):
            interlock.Queue(name=name, create=False)
    finally:
        os.chown(_segment.path_of(name), 0, 0)
        q.detach()


# ------------------------------------------------------- random garbage (fuzz)
FUZZ_NAME = f"fuzz-{os.getpid()}"


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=0, max_size=6000))
def test_random_bytes_at_a_name_are_refused(data: bytes) -> None:
    path = _segment.path_of(FUZZ_NAME)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)
    try:
        for cls in (interlock.Queue, interlock.Lock):
            with pytest.raises((interlock.SegmentError, ValueError)):
                cls(name=FUZZ_NAME, create=False)
    finally:
        os.unlink(path)


def _valid_segment_bytes() -> bytes:
    q = interlock.Queue(name=FUZZ_NAME + "-model", capacity=4096)
    q.put(b"hello")
    data = bytearray(q._seg.mm[:])
    q.detach()
    # The model's slot names this (live) process: left in, an attach to a
    # mutated copy took it for a second handle of ours, and the detach kept
    # the queue's pooled spill files for it (a header mutated into spilling,
    # params[3] = 1, left one in /dev/shm). Zeroed, the model is a process
    # that is gone.
    for i in range(256):
        off = _segment.OFF_SLOTS + 16 * i
        if int.from_bytes(data[off:off + 4], "little") == os.getpid():
            data[off:off + 16] = bytes(16)
    return bytes(data)


VALID = None


@pytest.fixture(scope="module", autouse=True)
def _short_meta_patience() -> Iterator[None]:
    """A header mutated so that its meta-lock word names a live thread
    raises SegmentError after META_PATIENCE: 1 s here, not 10."""
    saved, _segment.META_PATIENCE = _segment.META_PATIENCE, 1.0
    try:
        yield
    finally:
        _segment.META_PATIENCE = saved


@settings(max_examples=200, deadline=None)
@given(offset=st.one_of(st.integers(0, 511),  # the segment header
                        # the ring header (after 256 slots of 16 bytes)
                        st.integers(512 + 16 * 256, 512 + 16 * 256 + 64 * 9 - 1)),
       value=st.binary(min_size=1, max_size=8))
def test_mutated_headers_are_refused_or_harmless(offset: int, value: bytes) -> None:
    """Flip bytes in the segment header or the ring header of a real queue:
    attaching either fails with a clear error or gives a usable queue whose
    operations fail cleanly -- never a crash, a hang or out-of-bounds access."""
    global VALID
    if VALID is None:
        VALID = _valid_segment_bytes()
    data = bytearray(VALID)
    data[offset : offset + len(value)] = value
    # zero the slot table so that the (dead) model process is not a user
    path = _segment.path_of(FUZZ_NAME)
    with open(path, "wb") as f:
        f.write(bytes(data))
    os.chmod(path, 0o600)
    try:
        try:
            q = interlock.Queue(name=FUZZ_NAME, create=False)
        except (interlock.SegmentError, ValueError, PermissionError, FileNotFoundError):
            return  # FileNotFoundError: the flag "unlinked" was set: a dead segment
        try:
            for op in (lambda: q.get(timeout=0.05), lambda: q.put(b"x", timeout=0.05),
                       q.qsize, q.empty, q.full, lambda: q.get(timeout=0.05)):
                try:
                    op()
                except (interlock.Empty, interlock.Full, interlock.ShutDown, RuntimeError,
                        ValueError):
                    pass
        finally:
            q.detach()
    finally:
        if os.path.exists(path):
            os.unlink(path)


# ------------------------------------------- random operations vs a model
class QueueModel(RuleBasedStateMachine):
    """Any sequence of operations on a Queue behaves like a bounded deque."""

    def __init__(self) -> None:
        super().__init__()
        self.maxsize = 5
        self.q = interlock.Queue(self.maxsize, capacity=512)
        self.model: collections.deque[Any] = collections.deque()
        self.closed = False  # shut down

    items = st.one_of(st.binary(max_size=40), st.integers(), st.text(max_size=10),
                      st.tuples(st.integers(), st.text(max_size=5)))

    def _fits(self, xs: list[Any]) -> bool:
        return len(self.model) + len(xs) <= self.maxsize

    @rule(x=items)
    def put_nowait(self, x: Any) -> None:
        if self.closed:
            with pytest.raises(interlock.ShutDown):
                self.q.put_nowait(x)
            return
        try:
            self.q.put_nowait(x)
            self.model.append(x)
        except interlock.Full:
            # refused only when full by count, or when the bytes do not fit
            assert len(self.model) == self.maxsize or self.q.statistics().bytes_used > 512 - 120

    @rule(xs=st.lists(items, max_size=4))
    def put_many_nowait(self, xs: list[Any]) -> None:
        if self.closed:
            if xs:
                with pytest.raises(interlock.ShutDown):
                    self.q.put_many(xs, block=False)
            return
        try:
            self.q.put_many(xs, block=False)
            self.model.extend(xs)
        except interlock.Full:
            # all or nothing: the queue must be unchanged
            assert self.q.qsize() == len(self.model)

    @rule()
    def get_nowait(self) -> None:
        if self.model:
            assert self.q.get_nowait() == self.model.popleft()
        elif self.closed:
            with pytest.raises(interlock.ShutDown):
                self.q.get_nowait()
        else:
            with pytest.raises(interlock.Empty):
                self.q.get_nowait()

    @rule(n=st.integers(1, 4))
    def get_many(self, n: int) -> None:
        if not self.model:
            return
        got = self.q.get_many(n, block=False)
        want = [self.model.popleft() for _ in range(min(n, len(self.model)))]
        assert got == want

    @rule(immediate=st.booleans())
    def shutdown(self, immediate: bool) -> None:
        self.q.shutdown(immediate)
        self.closed = True
        if immediate:
            self.model.clear()  # discarded

    @invariant()
    def sizes_agree(self) -> None:
        assert self.q.qsize() == len(self.model)
        assert self.q.empty() == (not self.model)

    def teardown(self) -> None:
        self.q.detach()


TestQueueModel = QueueModel.TestCase
TestQueueModel.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
