"""Hostile and unlucky entries at our names in the shared-memory directory.

``/dev/shm`` is world-writable and uids are public: anyone may plant a FIFO,
a symlink, a directory or a file of their own at ``interlock.<uid>.<name>``
or ``.interlock-tmp.<uid>.<...>``.  None of it may hang an interlock program
(a blocking open of a FIFO waits for a writer forever), be followed, be read,
or be removed (docs/design/segment.md, "Entries we did not create").

Every check runs in a child process with a timeout, so that a regression
fails instead of hanging the suite, and in a private directory standing in
for /dev/shm: a FIFO planted in the real one would hang every *other*
interlock program of this uid on the machine, older releases included.

Also here: internal lock acquisitions leave the process-wide warning filters
alone (a concurrent thread's OwnerDiedWarning is never swallowed), and what
SIGKILL / SIGTERM / ``os._exit`` leave behind, and how to start clean.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import warnings
from typing import Any, Iterator

import pytest

import interlock
from interlock import _segment

import _helpers as h

UID = os.getuid()
NOBODY = 65534
TIMEOUT = float(os.environ.get("HOSTILE_TIMEOUT", 60))  # generous: the machine is shared; a hang is forever


@pytest.fixture
def shm(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private, sticky, world-writable directory used as SHM_DIR, here and
    in the children (``child()`` passes it on)."""
    d = tempfile.mkdtemp(prefix="interlock-hostile-")
    os.chmod(d, 0o1777)
    monkeypatch.setattr(_segment, "SHM_DIR", d)
    try:
        yield d
    finally:
        shutil.rmtree(d)


_PRELUDE = (
    "import sys\n"
    "from interlock import _segment\n"
    "_segment.SHM_DIR = sys.argv[1]\n"
)


def child(code: str, shm: str, *args: str) -> str:
    """Run ``code`` in a fresh interpreter on ``shm``; its stdout.  A child
    that does not finish in TIMEOUT seconds is killed and the test fails."""
    try:
        r = subprocess.run([sys.executable, "-c", _PRELUDE + code, shm, *args],
                           capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"hung (killed after {TIMEOUT:.0f} s); stderr: {e.stderr!r}")
    assert r.returncode == 0, r.stderr
    return r.stdout


def path(shm: str, name: str) -> str:
    return f"{shm}/{_segment.PREFIX}.{UID}.{name}"


def fingerprint(p: str) -> tuple[Any, ...]:
    """What must not change about a planted entry (and what it points to)."""
    st = os.lstat(p)
    fp: tuple[Any, ...] = (st.st_ino, st.st_mode, st.st_uid, st.st_size)
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(p)
        tst = os.lstat(target)
        fp += (target, tst.st_ino, tst.st_mode)
        if stat.S_ISREG(tst.st_mode):
            with open(target, "rb") as f:
                fp += (f.read(),)
    elif stat.S_ISREG(st.st_mode):
        with open(p, "rb") as f:
            fp += (f.read(),)
    return fp


# ------------------------------------------------------- what gets planted
def _dead_segment(shm: str, name: str) -> None:
    """A whole segment whose only user is gone (it left by os._exit)."""
    child("import os, interlock\n"
          "q = interlock.Queue(name=sys.argv[2])\n"
          "q.put(b'old item')\n"
          "os._exit(0)\n", shm, name)


def plant(kind: str, shm: str, elsewhere: str, name: str) -> None:
    p = path(shm, name)
    if kind == "fifo":
        os.mkfifo(p, 0o600)
    elif kind == "symlink-to-fifo":
        os.mkfifo(f"{elsewhere}/fifo", 0o600)
        os.symlink(f"{elsewhere}/fifo", p)
    elif kind == "symlink-to-file":
        # a symlink to a perfectly valid dead segment: following it would
        # reap (unlink) or read someone else's file
        _dead_segment(elsewhere, "target")
        os.symlink(path(elsewhere, "target"), p)
    elif kind == "directory":
        os.mkdir(p, 0o700)
    elif kind == "group-readable":
        # a valid dead segment of ours, but mode 0644: not as we make them
        _dead_segment(shm, name)
        os.chmod(p, 0o644)
    else:  # pragma: no cover
        raise AssertionError(kind)


PLANTED = ["fifo", "symlink-to-fifo", "symlink-to-file", "directory", "group-readable"]

# Every path that opens an entry of the directory, in one child: creation
# (which collects dead segments), attach by name, the collection itself, the
# deadlock tooling's owner read, and every registry command.
_EVERYTHING = r"""
import contextlib, io, json
import interlock
from interlock import _segment, cli
from interlock.deadlock import _waitfor
name = sys.argv[2]
out = {}
def attempt(label, fn):
    try:
        fn()
        out[label] = "ok"
    except Exception as e:
        base = "SegmentError" if isinstance(e, interlock.SegmentError) else type(e).__name__
        out[label] = f"{base}: {e}"
def anonymous():
    lock = interlock.Lock()   # a creation: runs the collection of dead segments
    q = interlock.Queue()
    lock.detach(); q.detach()
attempt("Lock()", anonymous)
attempt("Queue(name)", lambda: interlock.Queue(name=name).detach())
attempt("Lock(name)", lambda: interlock.Lock(name=name).detach())
attempt("Lock(name, create=False)", lambda: interlock.Lock(name=name, create=False).detach())
attempt("collect", lambda: _segment.clean(remove=True))
out["lock_owner"] = list(_waitfor.lock_owner(name))
for argv in (["ls"], ["ls", "--json"], ["inspect", name], ["inspect", "--json", name],
             ["top", "-n", "1"], ["clean"], ["clean", "--remove"], ["clean", name, "--remove"],
             ["clean", "--json", "--remove"]):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        rc = cli.main(argv)
    out[" ".join(argv)] = [rc, buf.getvalue()]
print(json.dumps(out))
"""


@pytest.mark.parametrize("kind", PLANTED)
def test_planted_entry_never_hangs_and_is_left_alone(kind: str, shm: str) -> None:
    elsewhere = tempfile.mkdtemp(prefix="interlock-elsewhere-")
    try:
        name = f"planted-{kind}"
        plant(kind, shm, elsewhere, name)
        before = fingerprint(path(shm, name))

        out = json.loads(child(_EVERYTHING, shm, name))

        assert fingerprint(path(shm, name)) == before, "the planted entry was touched"
        assert out["Lock()"] == "ok" and out["collect"] == "ok"
        assert out["lock_owner"] == [0, 0]
        # attaching by name says what is there and that it is not ours
        what = {"fifo": "a FIFO", "symlink-to-fifo": "a symbolic link",
                "symlink-to-file": "a symbolic link", "directory": "a directory",
                "group-readable": "mode 0644"}[kind]
        for label in ("Queue(name)", "Lock(name)", "Lock(name, create=False)"):
            assert out[label].startswith("SegmentError: "), (label, out[label])
            assert what in out[label] and path(shm, name) in out[label], out[label]
        # listed as unreadable, never as an object, never cleaned
        ls = {o["name"]: o for o in json.loads(out["ls --json"][1])}
        assert what in ls[name]["problem"] and ls[name]["kind"] == "?"
        assert what in json.loads(out[f"inspect --json {name}"][1])["problem"]
        assert name in out["ls"][1] and what in out["ls"][1]
        for argv in ("clean", "clean --remove", f"clean {name} --remove"):
            assert out[argv][0] == 0 and name not in out[argv][1], (argv, out[argv])
        assert json.loads(out["clean --json --remove"][1])["segments"] == []
        # nothing of ours was left behind by the child
        assert sorted(os.listdir(shm)) == [f"{_segment.PREFIX}.{UID}.{name}"]
    finally:
        shutil.rmtree(elsewhere)


def test_dead_segment_of_ours_is_still_collected(shm: str) -> None:
    """The other side of the rule: what *is* ours is still cleaned up."""
    _dead_segment(shm, "dead")
    out = child("import interlock\n"
                "interlock.Lock().detach()\n"   # creation collects
                "import os; print(sorted(os.listdir(sys.argv[1])))\n", shm)
    assert out.strip() == "[]"


# ---------------------------------------------------------- other users
@pytest.fixture
def root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to make files of another user")


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_clean_as_root_leaves_other_users_files(root: None, shm: str) -> None:
    dead = _dead_pid()
    tmp_theirs = f"{shm}/.{_segment.PREFIX}-tmp.{UID}.{dead}.0123456789ab"
    tmp_ours = f"{shm}/.{_segment.PREFIX}-tmp.{UID}.{dead}.ba9876543210"
    for p in (tmp_theirs, tmp_ours):
        with open(p, "wb") as f:
            f.write(b"partial")
        os.chmod(p, 0o600)
    os.chown(tmp_theirs, NOBODY, NOBODY)
    _dead_segment(shm, "theirs")
    os.chown(path(shm, "theirs"), NOBODY, NOBODY)
    _dead_segment(shm, "ours")  # the controls: ours, dead, must go
    theirs = {p: fingerprint(p) for p in (tmp_theirs, path(shm, "theirs"))}

    out = json.loads(child(_EVERYTHING, shm, "theirs"))

    assert {p: fingerprint(p) for p in theirs} == theirs
    assert sorted(os.listdir(shm)) == sorted(os.path.basename(p) for p in theirs)
    assert "PermissionError: " in out["Queue(name)"] and f"uid {NOBODY}" in out["Queue(name)"]
    assert f"uid {NOBODY}" in {o["name"]: o for o in json.loads(out["ls --json"][1])}[
        "theirs"]["problem"]


def test_attach_refuses_foreign_owner_before_reading(root: None, shm: str) -> None:
    _dead_segment(shm, "x")
    os.chown(path(shm, "x"), NOBODY, NOBODY)
    with pytest.raises(PermissionError, match=f"belongs to uid {NOBODY}"):
        interlock.Queue(name="x", create=False)


# ---------------------------------------------------- warnings, threads
def test_internal_acquires_leave_the_warning_filters_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """catch_warnings() swaps process-wide state: not for library code."""
    touched: list[str] = []
    real_catch, real_simple = warnings.catch_warnings, warnings.simplefilter

    def spy_catch(*a: Any, **k: Any) -> Any:
        touched.append("catch_warnings")
        return real_catch(*a, **k)

    def spy_simple(*a: Any, **k: Any) -> Any:
        touched.append("simplefilter")
        return real_simple(*a, **k)

    monkeypatch.setattr(warnings, "catch_warnings", spy_catch)
    monkeypatch.setattr(warnings, "simplefilter", spy_simple)
    name = h.uname("filters")
    q = interlock.Queue(name=name)               # create: meta lock
    q2 = interlock.Queue(name=name)              # attach: meta lock
    q.put(b"x")                                  # role note: meta lock
    assert q2.get() == b"x"
    q2.unlink()                                  # meta lock
    q2.detach()
    q.detach()                                   # last detach: meta lock
    from interlock.deadlock import _waitfor
    _waitfor.waits()                             # a shared table's lock
    assert touched == []


def test_owner_died_warning_not_swallowed_by_a_concurrent_internal_acquire() -> None:
    """One thread takes locks over from dead threads (OwnerDiedWarning, one
    per takeover) while another takes an internal lock in a loop (the meta
    lock of a queue, as a put or an attach does).  Every takeover must be
    reported: the internal acquires must not switch warnings off for the
    whole process, even for a moment."""
    stop = threading.Event()
    keep = interlock.Queue(name=h.uname("churn"))

    def churn() -> None:  # meta lock round trips, as fast as they go
        seg = keep._seg
        while not stop.is_set():
            seg._meta_acquire()
            seg.meta.release()

    t = threading.Thread(target=churn)
    interval = sys.getswitchinterval()
    rounds, reported = 200, 0
    # (the test's own filter change, made once, before the other thread runs)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        sys.setswitchinterval(1e-6)  # switch threads as often as possible
        t.start()
        try:
            for _ in range(rounds):
                lock = interlock.Lock()
                tids: list[int] = []

                def hold(lock: interlock.Lock = lock) -> None:  # dies holding it
                    lock.acquire()
                    tids.append(threading.get_native_id())

                holder = threading.Thread(target=hold)
                holder.start()
                holder.join()
                # (join() returns a moment before the kernel forgets the thread)
                assert h.wait_until(lambda: not os.path.exists(f"/proc/{tids[0]}"))
                assert lock.acquire(block=False)  # the takeover: warns
                lock.release()
                lock.detach()
        finally:
            stop.set()
            t.join()
            sys.setswitchinterval(interval)
            keep.detach()
        reported = sum(1 for w in seen if issubclass(w.category, interlock.OwnerDiedWarning))
    assert reported == rounds, f"{rounds - reported} of {rounds} OwnerDiedWarnings swallowed"


# ---------------------------------------------------------- lifetime
_LEAVE = r"""
import os, signal, time, interlock
q = interlock.Queue(name=sys.argv[2])
q.put(b"old item")
how = sys.argv[3]
if how == "os._exit":
    os._exit(0)
os.kill(os.getpid(), getattr(signal, how))
time.sleep(60)
"""


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "os._exit"])
def test_abrupt_exit_leaves_the_segment_and_create_true_after_unlink_starts_clean(
        how: str, shm: str) -> None:
    try:
        subprocess.run([sys.executable, "-c", _PRELUDE + _LEAVE, shm, "jobs", how],
                       timeout=TIMEOUT, capture_output=True)
    except subprocess.TimeoutExpired:  # pragma: no cover
        pytest.fail("the child did not die")
    assert os.path.exists(path(shm, "jobs")), "left behind, as documented"
    q = interlock.Queue(name="jobs")          # attaching sees the old item
    assert q.get_nowait() == b"old item"
    q.detach()                                # (last user: removed)
    subprocess.run([sys.executable, "-c", _PRELUDE + _LEAVE, shm, "jobs", how],
                   timeout=TIMEOUT, capture_output=True)
    with pytest.raises(FileExistsError, match="interlock.unlink"):
        interlock.Queue(name="jobs", create=True)
    assert interlock.unlink("jobs") is True
    fresh = interlock.Queue(name="jobs", create=True)
    assert fresh.empty()
    fresh.detach()
    assert interlock.unlink("jobs") is False  # nothing there any more
    assert os.listdir(shm) == []


def test_unlink_refuses_what_is_not_ours(shm: str) -> None:
    os.mkfifo(path(shm, "f"), 0o600)
    with pytest.raises(interlock.SegmentError, match="a FIFO"):
        interlock.unlink("f")
    assert stat.S_ISFIFO(os.lstat(path(shm, "f")).st_mode)
    os.unlink(path(shm, "f"))
    lock = interlock.Lock(name="l")
    assert interlock.unlink("l") is True
    assert lock.acquire(timeout=1)  # the attached process keeps its object
    lock.release()
    lock.detach()
    assert os.listdir(shm) == []


def test_a_lock_word_naming_a_live_stranger_is_an_error_not_a_hang(shm: str) -> None:
    """A segment file whose meta-lock word names a live thread that is not
    using it (pid 1 here: a corrupted or hostile file; also a holder
    stopped with SIGSTOP): attaching, detaching or unlinking it raises
    SegmentError once that one thread has held it for META_PATIENCE
    seconds.  Before: the attach waited for ever, and SIGALRM did not end
    it (a hypothesis case of test_fuzz_security hung the suite).  The
    child's patience is 1 s; what it reports is how long the attach took."""
    _dead_segment(shm, "held")
    p = path(shm, "held")
    with open(p, "r+b") as f:  # the word names pid 1 (init: alive, never ours)
        f.seek(_segment.OFF_META_LOCK)
        f.write((1).to_bytes(4, "little"))
    out = child("import time, interlock\n"
                "from interlock.errors import SegmentError\n"
                "_segment.META_PATIENCE = 1.0\n"
                "t = time.monotonic()\n"
                "try:\n"
                "    interlock.Queue(name=sys.argv[2], create=False)\n"
                "    print('attached')\n"
                "except SegmentError as e:\n"
                "    print(f'{time.monotonic() - t:.1f}', e)\n", shm, "held")
    took, msg = out.split(" ", 1)
    assert 1.0 <= float(took) < 10, out
    assert "held by thread 1 " in msg and "interlock.unlink('held')" in msg, out
    # what it says to do works: the name goes, without waiting for the lock
    child("import interlock\n"
          "assert interlock.unlink(sys.argv[2]) is True\n", shm, "held")
    assert not os.path.exists(p)


def test_the_collection_skips_a_segment_whose_lock_is_held_for_good(shm: str) -> None:
    """The same file does not stall the collection that creations run: it
    skips the segment after REAP_WAIT (0.2 s) and removes the dead ones
    beside it."""
    _dead_segment(shm, "held")
    with open(path(shm, "held"), "r+b") as f:
        f.seek(_segment.OFF_META_LOCK)
        f.write((1).to_bytes(4, "little"))
    _dead_segment(shm, "dead")  # (its creation's collection skipped "held")
    out = child("import os, time, interlock\n"
                "t = time.monotonic()\n"
                "interlock.Lock().detach()\n"   # creation collects
                "print(f'{time.monotonic() - t:.2f}', sorted(os.listdir(sys.argv[1])))\n", shm)
    took, left = out.split(" ", 1)
    assert float(took) < 3, out
    assert left.strip() == f"['{_segment.PREFIX}.{UID}.held']", out
    os.unlink(path(shm, "held"))
