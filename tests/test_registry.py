"""interlock._registry: the facts read from /dev/shm, for objects of this and
other processes, live and dead; passive reading; describers of new kinds."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

import interlock
from interlock import _registry, _segment

PY = sys.executable

# Holds an RLock twice, from a thread that is not the main one, until stdin closes.
RHOLDER = r"""
import sys, threading, interlock
lock = interlock.RLock(name=sys.argv[1])
done = threading.Event()
def hold():
    lock.acquire(); lock.acquire()
    print("ready", threading.get_native_id(), flush=True)
    done.wait()
    lock.release(); lock.release()
t = threading.Thread(target=hold); t.start()
sys.stdin.read(); done.set(); t.join()
"""

# Attaches to a lock and a queue, takes the lock, and waits to be killed.
DIES_HOLDING = r"""
import sys, time, interlock
lock = interlock.Lock(name=sys.argv[1], create=False)
q = interlock.Queue(name=sys.argv[2], create=False)
lock.acquire()
print("ready", flush=True)
time.sleep(60)
"""

# Blocks in get() on a queue.
CONSUMER = r"""
import sys, interlock
q = interlock.Queue(name=sys.argv[1], create=False)
print("ready", flush=True)
try:
    q.get(timeout=30)
except interlock.ShutDown:
    pass
"""


def start(script: str, *argv: str, stdin: bool = False) -> tuple[subprocess.Popen[str], str]:
    p = subprocess.Popen([PY, "-c", script, *argv], stdout=subprocess.PIPE, text=True,
                         stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line.startswith("ready"), f"child said {line!r}"
    return p, line


def finish(p: subprocess.Popen[str]) -> None:
    try:
        if p.poll() is None:
            if p.stdin:
                p.stdin.close()
                try:
                    p.wait(5)
                    return
                except subprocess.TimeoutExpired:
                    pass
            p.kill()
        p.wait(5)
    finally:
        for f in (p.stdin, p.stdout, p.stderr):  # (an unclosed pipe is a ResourceWarning)
            if f is not None:
                f.close()


def wait_for(pred: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


@pytest.fixture
def name(request: pytest.FixtureRequest) -> Iterator[str]:
    n = f"t-reg-{os.getpid()}-{request.node.name[:40]}"
    yield n
    for suffix in ("", "-q"):
        _segment._reap(_segment.path_of(n + suffix))


def test_records_are_frozen_and_serialisable(name: str) -> None:
    q = interlock.Queue(maxsize=4, name=name, capacity=1024)
    try:
        q.put(b"abc")
        info = _registry.inspect(name)
        with pytest.raises(dataclasses.FrozenInstanceError):
            info.summary = "x"  # type: ignore[misc]
        with pytest.raises(TypeError):
            info.details["depth"] = 7  # type: ignore[index]
        with pytest.raises(TypeError):
            info.counters["put"] = 7  # type: ignore[index]
        d = json.loads(json.dumps(info.to_dict()))
        assert d["name"] == name and d["kind"] == "Queue" and d["details"]["depth"] == 1
        assert d["users"] == [{"pid": os.getpid(), "refs": 1, "alive": True, "roles": 1}]
        assert d["live_users"] == [os.getpid()] and d["orphaned"] is False
        assert abs(d["created"] - time.time()) < 60
        assert d["size"] == os.stat(_segment.path_of(name)).st_blocks * 512  # allocated: the table is sparse
    finally:
        q.detach()


def test_queue_facts_match_statistics(name: str) -> None:
    q = interlock.Queue(maxsize=8, name=name, capacity=2048)
    try:
        for i in range(5):
            q.put(b"x" * (10 * i))
        q.get()
        q.get()
        info = _registry.inspect(name)
        st = q.statistics()
        for f in ("depth", "bytes_used", "capacity", "maxsize", "closed", "producers_waiting",
                  "consumers_waiting", "owner_deaths"):
            assert info.details[f] == getattr(st, f), f
        assert info.counters == {"put": 5, "got": 2}
        assert info.details["put_total_mod_2_32"] == 5
        assert info.summary == f"depth 3/8, {st.bytes_used} B, 1 producer/1 consumer"  # this process put and got
        assert not info.details["shutdown"]
        q.shutdown()
        info = _registry.inspect(name)
        assert info.summary.endswith(", shut down") and info.details["shutdown"]
        assert info.details["closed"]  # the field's 0.1 name, kept
        q.shutdown(immediate=True)  # discards the 3 items left
        info = _registry.inspect(name)
        assert info.summary.startswith("depth 0/8, 0 B")
        assert info.summary.endswith(", shut down (immediate)")
    finally:
        q.detach()


def test_rlock_held_by_a_thread_of_another_process(name: str) -> None:
    p, line = start(RHOLDER, name, stdin=True)
    tid = int(line.split()[1])
    try:
        assert tid != p.pid
        info = _registry.inspect(name)
        assert info.kind == "RLock"
        assert info.holders == (_registry.HolderInfo(pid=p.pid, tid=tid, depth=2, alive=True,
                                                     acquired_at=None),)
        assert info.summary == f"locked by pid {p.pid} thread {tid} (depth 2)"
        assert info.details["acquisitions"] == 1  # a re-entry is not an acquisition
        lk = interlock.RLock(name=name, create=False)
        try:
            st = lk.statistics()
            assert (st.owner_pid, st.owner_tid, st.depth) == (p.pid, tid, 2)
        finally:
            lk.detach()
    finally:
        finish(p)
    with pytest.raises(_registry.NoSuchObject):
        _registry.inspect(name)  # its only user left: gone


def test_dead_holder_and_dead_user_are_flagged(name: str) -> None:
    lock = interlock.Lock(name=name)
    q = interlock.Queue(name=name + "-q", capacity=1024)
    p = None
    try:
        p, _ = start(DIES_HOLDING, name, name + "-q")
        info = _registry.inspect(name)
        assert info.holders[0].pid == p.pid and info.holders[0].alive
        assert {u.pid: u.alive for u in info.users} == {os.getpid(): True, p.pid: True}
        p.send_signal(signal.SIGKILL)
        p.wait()
        info = _registry.inspect(name)
        assert info.holders[0].pid == p.pid and not info.holders[0].alive
        assert info.summary == f"locked by pid {p.pid} (main thread), dead"
        assert {u.pid: u.alive for u in info.users} == {os.getpid(): True, p.pid: False}
        assert info.live_users == (os.getpid(),) and not info.orphaned
        qinfo = _registry.inspect(name + "-q")
        assert {u.pid: u.alive for u in qinfo.users} == {os.getpid(): True, p.pid: False}
        # The next acquirer takes over; the registry then shows it as the holder.
        with pytest.warns(interlock.OwnerDiedWarning):
            assert lock.acquire(timeout=5)
        info = _registry.inspect(name)
        assert info.holders[0].pid == os.getpid() and info.holders[0].alive
        assert info.details["owner_deaths"] == 1
        lock.release()
        assert _registry.inspect(name).summary == "unlocked"
    finally:
        if p is not None:
            p.kill()
            finish(p)
        lock.detach()
        q.detach()


def test_waiting_consumer(name: str) -> None:
    q = interlock.Queue(name=name, capacity=1024)
    try:
        p, _ = start(CONSUMER, name)
        try:
            wait_for(lambda: _registry.inspect(name).waiters == 1)
            info = _registry.inspect(name)
            assert info.details["consumers_waiting"] == 1
            assert info.details["producers_waiting"] == 0
            assert info.summary == "depth 0/∞, 0 B, 1 consumer waiting"
            q.shutdown()
            assert p.wait(10) == 0
            wait_for(lambda: _registry.inspect(name).waiters == 0)
        finally:
            finish(p)
    finally:
        q.detach()


def test_listing_claims_nothing(name: str) -> None:
    lock = interlock.Lock(name=name)
    try:
        path = _segment.path_of(name)
        with open(path, "rb") as f:
            before = f.read()
        for _ in range(50):
            assert any(o.name == name for o in _registry.list_objects())
            _registry.inspect(name)
        with open(path, "rb") as f:
            assert f.read() == before  # slots, meta lock (and its counters), object
    finally:
        lock.detach()


def test_a_new_kind_needs_one_describer(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    kind = 99  # a kind this interlock does not know

    def init(buf: Any, off: int) -> None:
        buf[off:off + 8] = (1234).to_bytes(8, "little")

    seg = _segment.Segment(name, kind, 64, (), init=init)
    try:
        info = _registry.inspect(name)  # no describer: header facts only
        assert info.kind == "kind 99" and info.summary == "" and not info.problem
        assert info.live_users == (os.getpid(),)

        def describe(mm: Any, hdr: _segment.Header) -> dict[str, Any]:
            value = int.from_bytes(mm[hdr.object_offset:hdr.object_offset + 8], "little")
            return {"summary": f"value {value}", "value": value, "waiters": 2,
                    "holders": [{"pid": 1, "tid": 1}], "counters": {"sets": 3}}

        monkeypatch.setitem(_registry.DESCRIBERS, kind, describe)
        monkeypatch.setitem(_segment.KIND_NAMES, kind, "Gauge")
        info = _registry.inspect(name)
        assert info.kind == "Gauge" and info.summary == "value 1234"
        assert dict(info.details) == {"value": 1234}
        assert info.waiters == 2 and info.holders == (_registry.HolderInfo(1, 1),)
        assert dict(info.counters) == {"sets": 3}
    finally:
        seg.release()


def test_unreadable_and_vanishing_entries(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_segment, "SHM_DIR", str(tmp_path))
    uid = os.getuid()
    (tmp_path / f"interlock.{uid}.garbage").write_bytes(b"not a segment" * 100)
    (tmp_path / f"interlock.{uid}.short").write_bytes(b"x")
    (tmp_path / "someone-else.txt").write_bytes(b"")
    for entry in ("garbage", "short"):  # as interlock makes them (test_hostile: other modes)
        os.chmod(tmp_path / f"interlock.{uid}.{entry}", 0o600)
    objs = _registry.list_objects()
    assert [(o.name, o.kind) for o in objs] == [("garbage", "?"), ("short", "?")]
    assert "bad magic" in objs[0].problem and "truncated" in objs[1].problem
    assert not objs[0].orphaned  # unreadable is not "dead": clean leaves it alone

    # A name listed, then removed before it is opened: simply not there.
    real_entries = _registry._entries
    monkeypatch.setattr(_registry, "_entries",
                        lambda: iter([*real_entries(), ("gone", str(tmp_path / "gone"))]))
    assert [o.name for o in _registry.list_objects()] == ["garbage", "short"]


def test_unlinked_while_being_read(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The name may be removed between open and read: the mapping keeps the
    segment readable, and the facts are those of the object we opened."""
    monkeypatch.setattr(_segment, "SHM_DIR", str(tmp_path))
    q = interlock.Queue(name="q", capacity=1024)
    try:
        q.put(b"still here")
        real_open = _registry._open_mapping

        def open_then_unlink(path: str) -> Any:
            got = real_open(path)
            os.unlink(path)
            return got

        monkeypatch.setattr(_registry, "_open_mapping", open_then_unlink)
        info = _registry.inspect("q")
        assert info.details["depth"] == 1 and not info.problem
        monkeypatch.setattr(_registry, "_open_mapping", real_open)
        with pytest.raises(_registry.NoSuchObject):
            _registry.inspect("q")
        assert q.get() == b"still here"
    finally:
        q.detach()


@pytest.mark.parametrize("bad", ["", "a/b", "..", ".", "x" * 300, "x" * 5000, "@unknown"])
def test_inspect_bad_names_are_unknown(bad: str) -> None:
    with pytest.raises(_registry.NoSuchObject, match="see `interlock ls`"):
        _registry.inspect(bad)


def test_any_listed_name_can_be_inspected(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Names the library uses for itself ("@...") are not valid user names,
    but `ls` shows them, so `inspect` must find them."""
    monkeypatch.setattr(_segment, "SHM_DIR", str(tmp_path))
    lock = interlock.Lock(name="plain")
    try:
        uid = os.getuid()
        os.rename(tmp_path / f"interlock.{uid}.plain", tmp_path / f"interlock.{uid}.@internal")
        assert [o.name for o in _registry.list_objects()] == ["@internal"]
        info = _registry.inspect("@internal")
        assert info.kind == "Lock" and info.summary == "unlocked"
    finally:
        lock.detach()
        for f in tmp_path.iterdir():
            f.unlink()


def test_holder_site_recorded_when_tracked() -> None:
    """A tracked lock (a level, or lockdep on) publishes where its holder took it."""
    import json
    import subprocess
    import sys

    import interlock

    lk = interlock.Lock(name=f"t-site-{os.getpid()}", level=3)
    plain = interlock.Lock(name=f"t-nosite-{os.getpid()}")
    with lk, plain:
        out = subprocess.run([sys.executable, "-m", "interlock", "inspect", lk.name, "--json"],
                             capture_output=True, text=True, timeout=60).stdout
        holder = json.loads(out)["holders"][0]
        assert holder["acquired_at"].startswith("test_registry.py:")
        out = subprocess.run([sys.executable, "-m", "interlock", "inspect", plain.name, "--json"],
                             capture_output=True, text=True, timeout=60).stdout
        assert json.loads(out)["holders"][0]["acquired_at"] is None  # untracked: not recorded
    out = subprocess.run([sys.executable, "-m", "interlock", "inspect", lk.name, "--json"],
                         capture_output=True, text=True, timeout=60).stdout
    assert json.loads(out)["holders"] == []


def _put_one(q) -> None:
    q.put(1)


def _get_one(q) -> None:
    q.get(timeout=10)


def test_queue_counts_producers_and_consumers() -> None:
    """A queue knows which attached processes have put and which have got."""
    import multiprocessing as mp

    import interlock
    from interlock import _registry

    q = interlock.Queue(name=f"t-roles-{os.getpid()}")
    ctx = mp.get_context("fork")
    ev = ctx.Event()

    def hold(fn, q, ev):  # act, then stay attached until told
        fn(q)
        ev.wait(10)

    ps = [ctx.Process(target=hold, args=(_put_one, q, ev)) for _ in range(3)]
    ps.append(ctx.Process(target=hold, args=(_get_one, q, ev)))
    for p in ps:
        p.start()
    deadline = __import__("time").monotonic() + 10
    while True:
        info = _registry.inspect(q.name).to_dict()
        if (info["details"].get("producers"), info["details"].get("consumers")) == (3, 1):
            break
        assert __import__("time").monotonic() < deadline, info
        __import__("time").sleep(0.05)
    assert "3 producers/1 consumer" in info["summary"]
    ev.set()
    for p in ps:
        p.join(10)
    q.detach()


# ------------------------------------------- internal and owned objects
def test_own_locks_are_flagged_and_linked_to_their_owner(name: str) -> None:
    """The lock a Value, Array or Condition makes for itself carries the
    header flag FLAG_OWNED, and the listing names its owner; a lock the user
    passes in is the user's (not owned, not hidden)."""
    v = interlock.Value("i", 7, name=name + "-v")
    a = interlock.Array("h", [1, 2, 3], name=name + "-a")
    c = interlock.Condition(name=name + "-c")
    mine = interlock.Lock(name=name + "-l")
    shared = interlock.Value("d", 1.5, lock=mine, name=name + "-s")
    try:
        objs = {o.name: o for o in _registry.list_objects()}
        for owner, lock in ((v, v.get_lock()), (a, a.get_lock()), (c, c._lock)):
            info = objs[lock.name]
            assert info.owned and info.owner == owner.name and info.hidden, info
            assert objs[owner.name].details["lock"] == lock.name
            assert not objs[owner.name].hidden
            assert _segment.Header.parse(lock._seg.mm).flags == _segment.FLAG_OWNED
        assert not objs[mine.name].owned and not objs[mine.name].hidden
        assert objs[mine.name].owner is None
        assert objs[shared.name].details["lock"] == mine.name
        assert _registry.inspect(v.get_lock().name).owner == v.name
        # Attaching by name (another handle, as a child would) keeps the flag.
        v2 = interlock.Value("i", name=v.name, create=False)
        assert _registry.inspect(v2.get_lock().name).owned
        v2.detach()
    finally:
        for o in (v, a, c, shared, mine):
            o.detach()


def test_owned_lock_whose_owner_is_gone_is_shown(name: str) -> None:
    v = interlock.Value("i", 1, name=name + "-v")
    lock = v.get_lock()
    v.detach()  # the Value is gone; its lock lives on in `lock`
    try:
        info = next(o for o in _registry.list_objects() if o.name == lock.name)
        assert info.owned and info.owner is None and not info.hidden
    finally:
        lock.detach()


def test_interlock_tables_are_internal() -> None:
    import struct

    from interlock.deadlock._table import SharedTable

    tbl = SharedTable(f"@t-reg-{os.getpid()}", struct.Struct("<Q"), 16)
    try:
        with tbl:
            tbl.append(1)
        assert _segment.Header.parse(tbl.mm).flags == _segment.FLAG_INTERNAL
        info = _registry.inspect(tbl.seg.name)
        assert info.internal and info.hidden and info.kind == "Table"
        assert info.summary == "1/16 records"
    finally:
        tbl.close()


def test_value_and_array_show_their_data(name: str) -> None:
    v = interlock.Value("i", 42, name=name + "-v")
    # lock=False: a raw ctypes object (multiprocessing's), no .name / .detach()
    f = interlock.Value("d", 2.5, lock=False, name=name + "-f")
    a = interlock.Array("i", range(20), name=name + "-a")
    s = interlock.Array("c", b"hello", name=name + "-s")
    try:
        with v.get_lock():  # held: the reader takes no lock, it is not blocked
            info = _registry.inspect(v.name)
        assert info.summary == "value 42" and info.details["value"] == 42
        assert info.details["lock_kind"] == "RLock"
        info = _registry.inspect(name + "-f")
        assert info.summary == "value 2.5" and info.details["lock"] == ""
        info = _registry.inspect(a.name)
        assert info.summary == "[0, 1, 2, 3, 4, 5, 6, 7, ...] (20 x 'i')"
        assert list(info.details["value"]) == list(range(20))
        assert _registry.inspect(s.name).summary == "value b'hello' (5 bytes)"
        v.value = 43
        assert _registry.inspect(v.name).summary == "value 43"  # live, not a copy at creation
    finally:
        for o in (v, a, s):
            o.detach()
        del f  # the raw object's slot goes with it
