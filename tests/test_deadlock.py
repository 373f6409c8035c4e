"""Deadlocks: avoidance (levels, ordered), validation (lockdep), detection.

The scenario table follows the Linux kernel's lib/locking-selftest.c: each
named scenario is a set of actors, each taking locks in a nested order, and
is marked "must report" or "must NOT report". Every scenario runs for
validation (orders observed one actor after the other: nothing deadlocks,
lockdep must still see the cycle) and for runtime detection (actors run at
the same time and really deadlock: exactly one must get DeadlockError, the
others finish), with actors as processes and as threads.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sys
import threading
import time
import warnings
from typing import Any, Callable

import pytest

import interlock
from interlock import lockdep

# name -> (actors: each a list of lock letters taken nested, must_report)
SCENARIOS: dict[str, tuple[list[str], bool]] = {
    "AA": (["AA"], True),
    "ABBA": (["AB", "BA"], True),
    "ABBCCA": (["AB", "BC", "CA"], True),
    "ABBCCDDA": (["AB", "BC", "CD", "DA"], True),
    "AB-AB (same order)": (["AB", "AB"], False),
    "AB-BC-AC (no cycle)": (["AB", "BC", "AC"], False),
    "RLock recursion": (["RR"], False),
    "RLock recursion inside AB": (["ARRB", "AB"], False),
}


_PID = os.getpid()  # the test process's: forked actors name locks the same way


def _names(tag: str) -> Callable[[str], str]:
    return lambda letter: f"dl-{tag}-{_PID}-{letter}"


def _make(name_of: Callable[[str], str], letter: str) -> interlock.Lock:
    cls = interlock.RLock if letter == "R" else interlock.Lock
    return cls(name=name_of(letter))


def _take_nested(locks: list[Any], on_deadlock: list[str] | None = None) -> None:
    """Take locks[0], then locks[1] inside it, ... (the actor's order).  A
    Lock this thread already holds (AA) is tried with a short timeout: it is
    multiprocessing's Lock, whose holder's acquire() waits for someone else
    to release it, and nobody will here."""
    if not locks:
        return
    if not locks[0]._recursive and locks[0]._is_owned():
        assert locks[0].acquire(timeout=0.05) is False
        _take_nested(locks[1:], on_deadlock)
        return
    with locks[0]:
        _take_nested(locks[1:], on_deadlock)


# ---------------------------------------------------------------- validation
def _validate_actor(order: str, tag: str) -> None:
    name_of = _names(tag)
    locks = [_make(name_of, c) for c in order]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _take_nested(locks)


def _violations_for(tag: str) -> list[lockdep.Violation]:
    return [v for v in lockdep.report().violations if f"dl-{tag}-" in v.edge.before]


@pytest.fixture
def lockdep_on() -> Any:
    lockdep.enable(action="warn")  # explicit: an earlier test may have set "raise"
    lockdep.reset()
    yield
    lockdep.disable()
    lockdep.reset()


@pytest.mark.parametrize("actor_kind", ["process", "thread"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_lockdep_scenario(scenario: str, actor_kind: str, lockdep_on: Any) -> None:
    actors, must_report = SCENARIOS[scenario]
    tag = f"v{abs(hash((scenario, actor_kind))) % 10**6}"
    # Actors run one after the other: nothing can deadlock, the orders are
    # only observed.  Processes are forked so that they share the parent's
    # pid in the lock names (one lock class per letter across actors).
    for order in actors:
        if actor_kind == "process":
            p = mp.get_context("fork").Process(target=_validate_actor, args=(order, tag))
            p.start()
            p.join(20)
            assert p.exitcode == 0
        else:
            t = threading.Thread(target=_validate_actor, args=(order, tag))
            t.start()
            t.join(20)
    found = _violations_for(tag)
    if must_report:
        assert found, f"{scenario}: must report, lockdep saw {lockdep.report().edges}"
    else:
        assert not found, f"{scenario}: must NOT report, got {found}"


# RWLock holds: (letter, "r" | "w"); read-read orders must NOT be reported
RW_SCENARIOS: dict[str, tuple[list[list[tuple[str, str]]], bool]] = {
    "read-read ABBA": ([[("A", "r"), ("B", "r")], [("B", "r"), ("A", "r")]], False),
    "read inside read (same lock)": ([[("A", "r"), ("A", "r")]], False),
    "write-write ABBA": ([[("A", "w"), ("B", "w")], [("B", "w"), ("A", "w")]], True),
    "read-write ABBA": ([[("A", "r"), ("B", "w")], [("B", "r"), ("A", "w")]], True),
}


def _rw_actor(holds: list[tuple[str, str]], tag: str) -> None:
    name_of = _names(tag)
    locks = {c: interlock.RWLock(name=name_of(c)) for c, _ in holds}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.ExitStack() as stack:
            for c, mode in holds:
                stack.enter_context(locks[c].read() if mode == "r" else locks[c].write())


@pytest.mark.parametrize("actor_kind", ["process", "thread"])
@pytest.mark.parametrize("scenario", list(RW_SCENARIOS))
def test_lockdep_rwlock_scenario(scenario: str, actor_kind: str, lockdep_on: Any) -> None:
    actors, must_report = RW_SCENARIOS[scenario]
    tag = f"w{abs(hash((scenario, actor_kind))) % 10**6}"
    for holds in actors:
        if actor_kind == "process":
            p = mp.get_context("fork").Process(target=_rw_actor, args=(holds, tag))
            p.start()
            p.join(20)
            assert p.exitcode == 0
        else:
            t = threading.Thread(target=_rw_actor, args=(holds, tag))
            t.start()
            t.join(20)
    found = _violations_for(tag)
    assert bool(found) == must_report, (scenario, found)


def test_lockdep_warns_with_both_sites(lockdep_on: Any) -> None:
    name_of = _names("sites")
    a, b = _make(name_of, "A"), _make(name_of, "B")
    with a:
        with b:
            pass
    with pytest.warns(lockdep.LockOrderWarning) as rec:
        with b:
            with a:
                pass
    msg = str(rec[0].message)
    assert "possible deadlock" in msg and name_of("A") in msg and name_of("B") in msg
    assert msg.count("test_deadlock.py:") >= 4  # both acquisition sites of both orders


def test_lockdep_raise_mode_refuses_before_taking(lockdep_on: Any) -> None:
    lockdep.enable(action="raise")
    name_of = _names("raise")
    a, b = _make(name_of, "A"), _make(name_of, "B")
    with a, b:
        pass
    with b:
        with pytest.raises(interlock.LockOrderError, match="possible deadlock"):
            a.acquire()
        assert not a.locked()  # refused before taking it


def test_lockdep_off_has_no_tracking() -> None:
    lockdep.disable()
    a = interlock.Lock()
    assert a._tracked is False
    with a:
        pass
    assert interlock.deadlock._order.held() == []


# ------------------------------------------ lockdep: classes, domains, scope
def _take(a: Any, b: Any) -> None:
    with a, b:
        pass


def _lockdep_messages(rec: Any) -> list[str]:
    return [str(w.message) for w in rec if issubclass(w.category, lockdep.LockOrderWarning)]


_EXITED_CHILD = """
import multiprocessing as mp, os, sys, warnings
import interlock
from interlock import lockdep

def child(a, b):
    with a, b:
        pass

if __name__ == "__main__":
    lockdep.enable()
    a, b = interlock.Lock(name=sys.argv[1]), interlock.Lock(name=sys.argv[2])
    p = mp.get_context("fork").Process(target=child, args=(a, b))
    p.start()
    p.join()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        with b, a:
            pass
    print([str(w.message).splitlines()[0] for w in rec])
"""


def test_lockdep_keeps_orders_of_an_exited_child(tmp_path: Any) -> None:
    """The issue's scenario, in a fresh process: it enables lockdep, forks a
    child that takes A then B and exits (the first and only process to have
    used the table), then takes B then A itself: reported, because the
    enabling process holds its domain's table for its whole life.  Before,
    the table went with the child, and whether B-A was reported depended on
    some unrelated process holding the table open."""
    import subprocess
    import sys

    script = tmp_path / "exited_child.py"
    script.write_text(_EXITED_CHILD)
    name_of = _names("exited-child")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_LOCKDEP")}
    r = subprocess.run([sys.executable, str(script), name_of("A"), name_of("B")], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "possible deadlock" in r.stdout and name_of("A") in r.stdout, r.stdout


_OTHER_APP = """
import interlock, sys
from interlock import lockdep
a, b = interlock.Lock(name=sys.argv[1]), interlock.Lock(name=sys.argv[2])
with b, a:
    pass
lockdep.reset()
print(lockdep.domain())
"""


def test_lockdep_domains_do_not_collide(lockdep_on: Any) -> None:
    """Another application of the same user, with lockdep on (its own
    domain), takes the opposite order and calls reset(): our orders stay,
    and neither side reports the other's order."""
    import subprocess
    import sys

    name_of = _names("domains")
    a, b = _make(name_of, "A"), _make(name_of, "B")
    _take(a, b)
    env = {k: v for k, v in os.environ.items() if k != lockdep.ENV_DOMAIN}
    env["INTERLOCK_LOCKDEP"] = "raise"  # a report there would fail it
    r = subprocess.run([sys.executable, "-c", _OTHER_APP, name_of("A"), name_of("B")],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    other = r.stdout.strip()
    assert other and other != lockdep.domain()
    edges = {(e.before, e.after) for e in lockdep.report().edges}
    assert (name_of("A"), name_of("B")) in edges  # its reset() did not erase ours
    assert (name_of("B"), name_of("A")) not in edges
    assert other not in lockdep.domains()  # its table went with it


def _take_in_child(a: Any, b: Any) -> None:
    # a spawn child: lockdep is on here because enable() exported it
    assert lockdep.enabled() and lockdep.domain() == os.environ[lockdep.ENV_DOMAIN]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _take(a, b)


def test_lockdep_spawn_child_joins_the_domain_and_anonymous_classes_travel(
        lockdep_on: Any) -> None:
    """A spawn child joins the parent's domain (INTERLOCK_LOCKDEP_DOMAIN),
    and anonymous locks keep their creation-site class when pickled: the
    child's B-then-A closes the parent's A-then-B."""
    a = interlock.Lock()
    b = interlock.Lock()
    assert a._lock_class != b._lock_class and "test_deadlock.py:" in a._lock_class
    _take(a, b)
    p = mp.get_context("spawn").Process(target=_take_in_child, args=(b, a))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    found = [v for v in lockdep.report().violations
             if {v.edge.before, v.edge.after} == {a._lock_class, b._lock_class}]
    assert found, lockdep.report()
    a.detach()
    b.detach()


def test_lockdep_class_is_the_creation_site(lockdep_on: Any) -> None:
    """Locks made at one line are one class (not one class each): nesting
    two of them is reported (Linux: possible recursive locking) ..."""
    locks = [interlock.Lock() for _ in range(3)]
    assert len({lk._lock_class for lk in locks}) == 1
    assert len({lk.name for lk in locks}) == 3
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        _take(locks[0], locks[1])
    msgs = _lockdep_messages(rec)
    assert msgs and "recursive locking" in msgs[0] and locks[0]._lock_class in msgs[0], msgs


def test_lockdep_same_class_in_a_defined_order_is_not_reported(lockdep_on: Any) -> None:
    """... but not when ordered() takes them together, or levels order them;
    and an ABBA between two creation sites is a cycle as for named locks."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any lockdep report fails the test
        locks = [interlock.Lock() for _ in range(3)]
        with interlock.ordered(locks[2], locks[0], locks[1]) as got:
            assert len(got) == 3
        leveled = [interlock.Lock(level=i) for i in range(3)]
        with leveled[0], leveled[1], leveled[2]:
            pass
        with interlock.ordered(*leveled):
            pass
    # two ordered() calls, one inside the other: no defined order between them
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        with interlock.ordered(locks[0]):
            with interlock.ordered(locks[1]):
                pass
    assert any("recursive locking" in m for m in _lockdep_messages(rec))
    a = interlock.Lock()
    b = interlock.Lock()
    _take(a, b)
    with pytest.warns(lockdep.LockOrderWarning, match="possible deadlock") as rec2:
        _take(b, a)
    assert a._lock_class in str(rec2[0].message) and b._lock_class in str(rec2[0].message)
    for lk in locks + leveled + [a, b]:
        lk.detach()


def test_lockdep_full_table_says_so(lockdep_on: Any, monkeypatch: Any) -> None:
    """A full table warns once (naming the table and its size), counts what
    it drops, and status() and the CLI show it."""
    prev = lockdep.domain()
    assert prev is not None
    dom = f"full-{os.getpid()}"
    monkeypatch.setattr(lockdep, "CAPACITY", 8)
    lockdep.enable(domain=dom)
    try:
        first = interlock.Lock(name=f"dl-full-{os.getpid()}-0")
        others = [interlock.Lock(name=f"dl-full-{os.getpid()}-{i}") for i in range(1, 13)]
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            with first:
                for lk in others:
                    with lk:
                        pass
        full = [str(w.message) for w in rec if issubclass(w.category, lockdep.LockdepWarning)]
        assert len(full) == 1, full
        assert f"@lockdep.{dom}" in full[0] and "8 records" in full[0] and "full" in full[0]
        st = lockdep.status()
        assert (st.domain, st.capacity, st.edges, st.dropped) == (dom, 8, 8, 4)
        assert "table full: 4 edges dropped" in str(st)
        r = _cli("lockdep")
        assert "table full: 4 edges dropped" in r.stdout, r.stdout
        lockdep.reset()
        assert lockdep.status().dropped == 0
        for lk in [first] + others:
            lk.detach()
    finally:
        lockdep.enable(domain=prev)


def test_lockdep_enable_keeps_raise_from_the_environment() -> None:
    """INTERLOCK_LOCKDEP=raise, then enable() without an action: still
    "raise" (it was silently downgraded to "warn"); an explicit one wins."""
    import subprocess
    import sys

    code = ("from interlock import lockdep\n"
            "a = lockdep.status().action\n"
            "lockdep.enable()\n"
            "b = lockdep.status().action\n"
            "lockdep.enable('warn')\n"
            "print(a, b, lockdep.status().action)\n")
    env = {k: v for k, v in os.environ.items() if k != lockdep.ENV_DOMAIN}
    env["INTERLOCK_LOCKDEP"] = "raise"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["raise", "raise", "warn"]


# ------------------------------------------------------- runtime detection
def _deadlock_actor(order: str, tag: str, barrier: Any, results: Any, key: str) -> None:
    name_of = _names(tag)
    locks = [_make(name_of, c) for c in order]
    try:
        with locks[0]:
            barrier.wait(10)
            time.sleep(0.05)
            with locks[1]:
                pass
        results.put((key, "done"))
    except interlock.DeadlockError as e:
        results.put((key, "victim:" + str(e)))


@pytest.fixture
def fast_detection() -> Any:
    interlock.set_deadlock_timeout(0.3)
    yield
    interlock.set_deadlock_timeout(1.0)


@pytest.mark.parametrize("actor_kind", ["process", "thread"])
@pytest.mark.parametrize("scenario", ["ABBA", "ABBCCA", "ABBCCDDA"])
def test_runtime_detection_breaks_real_deadlock(scenario: str, actor_kind: str,
                                                fast_detection: Any) -> None:
    actors, _ = SCENARIOS[scenario]
    tag = f"r{abs(hash((scenario, actor_kind))) % 10**6}"
    name_of = _names(tag)
    keep = [_make(name_of, c) for c in sorted(set("".join(actors)))]  # segments live
    results = interlock.Queue()
    t0 = time.monotonic()
    if actor_kind == "process":
        ctx = mp.get_context("fork")
        barrier = ctx.Barrier(len(actors))
        procs = [ctx.Process(target=_deadlock_actor, args=(o, tag, barrier, results, o))
                 for o in actors]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
    else:
        tb = threading.Barrier(len(actors))
        ths = [threading.Thread(target=_deadlock_actor, args=(o, tag, tb, results, o))
               for o in actors]
        for t in ths:
            t.start()
        for t in ths:
            t.join(30)
            assert not t.is_alive()
    elapsed = time.monotonic() - t0
    outcome = dict(results.get(timeout=5) for _ in actors)
    victims = [k for k, v in outcome.items() if v.startswith("victim:")]
    assert len(victims) == 1, outcome  # exactly one victim, the others complete
    assert sum(v == "done" for v in outcome.values()) == len(actors) - 1
    msg = outcome[victims[0]]
    for c in "".join(actors):  # the message lists the whole cycle
        assert name_of(c) in msg
    assert elapsed < 0.3 + 1.5 + 1.0  # within about deadlock_timeout + 1 s
    del keep


def _long_holder(name: str, hold: float, ready: Any) -> None:
    lk = interlock.Lock(name=name)
    with lk:
        ready.set()
        time.sleep(hold)


def _holder_until(name: str, ready: Any, go: Any) -> None:
    lk = interlock.Lock(name=name)
    with lk:
        ready.set()
        go.wait(30)


def test_long_legitimate_wait_is_not_a_deadlock(fast_detection: Any) -> None:
    name = f"dl-long-{os.getpid()}"
    lk = interlock.Lock(name=name)
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=_long_holder, args=(name, 1.5, ready))
    p.start()
    ready.wait(10)
    t0 = time.monotonic()
    with lk:  # waits 5x deadlock_timeout: no cycle, so no DeadlockError
        assert time.monotonic() - t0 > 1.0
    p.join(10)


def test_rlock_recursion_is_not_a_deadlock(fast_detection: Any) -> None:
    r = interlock.RLock()
    with r:
        with r:
            with r:
                assert r._count() == 3


def test_aa_waits_for_a_release_and_is_no_deadlock(fast_detection: Any) -> None:
    """A Lock is multiprocessing's: its holder's blocking acquire() waits
    until another thread releases it.  Runtime detection does not call that
    wait a deadlock (the wait-for graph has no cycle through another
    thread: the holder waits for itself, and anyone may release), even
    past deadlock_timeout; and it does not raise DeadlockError at once any
    more (it did when a Lock was owner-released only)."""
    lk = interlock.Lock()
    lk._tracked = True  # through the Python layer, as with deadlock detection's phases
    try:
        with lk:
            t0 = time.monotonic()
            assert lk.acquire(timeout=0.1) is False
            assert time.monotonic() - t0 >= 0.09
            assert lk.acquire(False) is False
            # past deadlock_timeout (0.3 s) then released by another thread
            threading.Timer(0.8, lk.release).start()
            t0 = time.monotonic()
            assert lk.acquire() is True  # no DeadlockError: not a cycle
            assert time.monotonic() - t0 >= 0.7
        assert not lk.locked()
        assert interlock.deadlock._order.held() == []  # one hold, released once
    finally:
        lk._tracked = False
        lk.detach()


def test_internal_mutex_aa_raises_at_once() -> None:
    """interlock's own (owner-checked) mutexes still refuse AA at once."""
    from interlock import _core

    lk = interlock.Lock()
    view = _core.Mutex(lk._seg.mm, lk._seg.object_offset)
    try:
        with view:
            t0 = time.monotonic()
            with pytest.raises(interlock.DeadlockError, match="already holds"):
                view.acquire()
            assert time.monotonic() - t0 < 0.5
            assert view.acquire(False) is False
    finally:
        view._detach()
        lk.detach()


def test_handoff_leaves_no_stale_hold_for_lockdep(lockdep_on: Any) -> None:
    """A Lock taken by this thread and released by another is no longer
    "held" here: taking B afterwards records no A -> B order, so B then A
    is not reported (a false "possible deadlock" before the prune)."""
    name_of = _names("handoff")
    a, b = _make(name_of, "A"), _make(name_of, "B")
    a.acquire()
    t = threading.Thread(target=a.release)
    t.start()
    t.join(10)
    assert not a.locked()
    with b:  # A is not held: no order A -> B
        pass
    with b:
        with a:  # B -> A: the only order seen, no cycle
            pass
    assert not _violations_for("handoff"), _violations_for("handoff")
    assert interlock.deadlock._order.held() == []
    a.detach()
    b.detach()


def test_graph_lists_waits_and_dot(fast_detection: Any) -> None:
    from interlock.deadlock import _waitfor

    name = f"dl-graph-{os.getpid()}"
    lk = interlock.Lock(name=name)
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    go = ctx.Event()
    p = ctx.Process(target=_holder_until, args=(name, ready, go))
    p.start()
    assert ready.wait(10)
    seen: list[Any] = []

    def watch() -> None:
        # Our acquire below is published in the graph once it has waited
        # the deadlock timeout (0.3 s); the holder holds until we have seen it.
        try:
            deadline = time.monotonic() + 20
            while not seen and time.monotonic() < deadline:
                seen.extend(w for w in _waitfor.waits() if w.lock == name)
                time.sleep(0.01)
        finally:
            go.set()

    t = threading.Thread(target=watch)
    t.start()
    with lk:
        pass
    t.join()
    p.join(10)
    assert seen and seen[0].owner_pid == p.pid and seen[0].pid == os.getpid()
    dot = _waitfor.graph_dot(seen)
    assert dot.startswith("digraph") and name in dot


# ----------------------------------------------------------------- avoidance
def _lecture_actor(first: str, second: str, tag: str, n: int, use_ordered: bool) -> None:
    l1, l2 = interlock.Lock(name=first), interlock.Lock(name=second)
    for _ in range(n):
        if use_ordered:
            with interlock.ordered(l1, l2):
                pass
        else:
            with l1:
                with l2:
                    pass


def test_lecture_l1_l2_caught_then_avoided(fast_detection: Any) -> None:
    """The lecture's example: A takes L1 then L2, B takes L2 then L1."""
    tag = f"lec{os.getpid()}"
    n1, n2 = f"{tag}-L1", f"{tag}-L2"
    keep = [interlock.Lock(name=n1), interlock.Lock(name=n2)]
    results = interlock.Queue()
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [
        ctx.Process(target=_deadlock_actor_named, args=(n1, n2, barrier, results, "A")),
        ctx.Process(target=_deadlock_actor_named, args=(n2, n1, barrier, results, "B")),
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    out = dict(results.get(timeout=5) for _ in procs)
    assert sorted(v.split(":")[0] for v in out.values()) == ["done", "victim"]
    # Avoided: the same two opposite orders through ordered(), many times.
    procs = [ctx.Process(target=_lecture_actor, args=(n1, n2, tag, 2000, True)),
             ctx.Process(target=_lecture_actor, args=(n2, n1, tag, 2000, True))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    del keep


def _deadlock_actor_named(first: str, second: str, barrier: Any, results: Any, key: str) -> None:
    a, b = interlock.Lock(name=first), interlock.Lock(name=second)
    try:
        with a:
            barrier.wait(10)
            time.sleep(0.05)
            with b:
                pass
        results.put((key, "done"))
    except interlock.DeadlockError as e:
        results.put((key, "victim:" + str(e)))


def test_levels_refuse_wrong_order_at_once() -> None:
    low = interlock.Lock(level=1)
    high = interlock.Lock(level=2)
    with low, high:
        pass
    with high:
        with pytest.raises(interlock.LockOrderError) as e:
            low.acquire()
        assert not low.locked()
    msg = str(e.value)
    assert "level 1" in msg and "level 2" in msg and "test_deadlock.py" in msg


def test_level_is_shared_by_name() -> None:
    name = f"dl-level-{os.getpid()}"
    a = interlock.Lock(name=name, level=5)
    b = interlock.Lock(name=name)
    assert b.level == 5
    with pytest.raises(ValueError, match="level"):
        interlock.Lock(name=name, level=6)
    del a, b


def test_ordered_all_or_nothing_on_timeout() -> None:
    a, b, c = interlock.Lock(), interlock.Lock(), interlock.Lock()
    ready, done = threading.Event(), threading.Event()

    def hold() -> None:
        with b:
            ready.set()
            done.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    ready.wait(5)
    with pytest.raises(TimeoutError):
        with interlock.ordered(c, b, a, timeout=0.2):
            pass
    assert not a.locked() and not c.locked()  # nothing stays held
    done.set()
    t.join()
    with interlock.ordered(c, b, a, a) as got:  # duplicates taken once
        assert len(got) == 3 and all(x.locked() for x in got)
    assert not any(x.locked() for x in (a, b, c))


def test_ordered_rejects_non_locks() -> None:
    with pytest.raises(TypeError):
        with interlock.ordered(interlock.Lock(), object()):
            pass


# ----------------------------------------------------------------------- CLI
def _cli(*args: str) -> Any:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "interlock", *args], capture_output=True,
                          text=True, timeout=60)


def test_cli_lockdep_lists_orders_and_violations(lockdep_on: Any) -> None:
    name_of = _names("cli")
    a, b = _make(name_of, "A"), _make(name_of, "B")
    with a, b:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with b, a:
            pass
    r = _cli("lockdep")
    assert r.returncode == 1, r.stderr  # violations found
    assert f"{name_of('A')!r} -> {name_of('B')!r}" in r.stdout
    assert "violation" in r.stdout and "test_deadlock.py" in r.stdout
    import json

    data = json.loads(_cli("lockdep", "--json").stdout)
    assert any(e["before"] == name_of("B") and e["after"] == name_of("A") for e in data["edges"])
    assert data["violations"]


def _holder_until(name: str, ready: Any, go: Any) -> None:
    lk = interlock.Lock(name=name)
    with lk:
        ready.set()
        go.wait(60)


def test_cli_graph_shows_a_long_wait(fast_detection: Any) -> None:
    """The holder keeps the lock until the graph has been read (not for a
    fixed time: on a loaded machine two CLI runs can outlast any fixed hold)."""
    name = f"dl-cligraph-{os.getpid()}"
    lk = interlock.Lock(name=name)
    ctx = mp.get_context("fork")
    ready, go = interlock.Event(), interlock.Event()
    p = ctx.Process(target=_holder_until, args=(name, ready, go))
    p.start()
    assert ready.wait(30)
    out: dict[str, Any] = {}

    def look() -> None:
        try:
            # Wait until this process's acquire is in the graph (it is
            # published once the wait outlasts the deadlock timeout).
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                r = _cli("graph")
                if f"held by pid {p.pid}" in r.stdout:
                    break
                time.sleep(0.1)
            out["text"] = r
            out["dot"] = _cli("graph", "--dot")
        finally:
            go.set()

    t = threading.Thread(target=look)
    t.start()
    with lk:
        pass
    t.join()
    p.join(10)
    ready.detach()
    go.detach()
    text = out["text"].stdout
    assert f"pid {os.getpid()}" in text and repr(name) in text and f"held by pid {p.pid}" in text
    assert "DEADLOCK" not in text
    assert out["dot"].stdout.startswith("digraph") and name in out["dot"].stdout


def test_demo_deadlock_caught_then_avoided() -> None:
    r = _cli("demo", "deadlock", "--deadlock-timeout", "0.5", "--rounds", "500")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "DeadlockError" in r.stdout and "caught: 1 victim, 1 completed" in r.stdout
    assert "no deadlock: 1000 acquisitions" in r.stdout
    # Regression: the wait sites were multiprocessing/process.py's (the demo
    # is in the interlock package, whose frames were all skipped).
    waits = [line for line in r.stdout.splitlines() if " waits for " in line]
    assert len(waits) == 2, r.stdout
    for line in waits:
        assert "demos/deadlock.py:" in line and " in _actor" in line, line
        assert "multiprocessing" not in line, line


def test_sites_are_the_users_lines_not_the_stdlib(lockdep_on: Any) -> None:
    """Locks entered through the standard library (contextlib here;
    multiprocessing's Process.run, threading, asyncio alike) are reported at
    the user's line that called it."""
    name_of = _names("stdlib-sites")
    a, b = _make(name_of, "A"), _make(name_of, "B")
    with contextlib.ExitStack() as stack:
        stack.enter_context(a)
        stack.enter_context(b)  # the site of the order "A then B"
    line = sys._getframe().f_lineno - 1
    edge = next(e for e in lockdep.report().edges if e.before == name_of("A"))
    for where in (edge.where_before, edge.where_after):
        assert "contextlib" not in where, where
        assert where.startswith(f"{__file__}:") and "in test_sites_are_the_users" in where
    assert edge.where_after.startswith(f"{__file__}:{line} ")


def test_demo_via_cli_dispatches_demos_with_own_parser() -> None:
    r = _cli("demo", "race", "--help")
    assert r.returncode == 0 and "usage: interlock demo race" in r.stdout
