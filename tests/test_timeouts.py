"""Timeouts mean what they mean in the stdlib (issue 10, item 6): every
blocking call x {None, -1, -0.5, 0, nan, inf, "x"}, with the outcome the
stdlib object gives for the same call in the same state (computed here, by
running it), and NaN refused before any state changes.

One C parser owns the rules (_core/binding.h, il_parse_timeout); the waits
written in Python (Barrier.wait, Condition.wait) call it too.

Where the stdlib is no oracle, the rule is stated instead:
- NaN: ValueError everywhere.  (threading.Barrier.wait(nan) and
  Condition.wait_for(p, nan) spin forever; multiprocessing.Semaphore
  returns at once; threading.Lock raises ValueError.)
- +inf: forever, as None.  (threading's and queue's raise OverflowError.)
  Except Lock/RLock.acquire, which follow threading.Lock: a timeout over
  threading.TIMEOUT_MAX, +inf included, raises OverflowError (checked
  against threading's own outcome below).
- None, and -1 for a Lock's acquire: forever; a blocking outcome is checked
  by the call still waiting after a moment, then unblocked.
"""
from __future__ import annotations

import math
import multiprocessing
import queue
import threading

import pytest

import interlock

NAN, INF = math.nan, math.inf
VALUES = [None, -1, -0.5, 0, NAN, INF, "x"]
BLOCKS = ("blocks",)


def outcome(call):
    try:
        return ("returns", call())
    except Exception as e:  # noqa: BLE001 - the outcome is the exception's type
        return ("raises", type(e).__name__)


class Holder:
    """A thread holding a lock until told to let go."""

    def __init__(self, lock):
        self.go, self.taken = threading.Event(), threading.Event()
        self.t = threading.Thread(target=self._run, args=(lock,))
        self.t.start()
        assert self.taken.wait(10)

    def _run(self, lock):
        with lock:
            self.taken.set()
            self.go.wait(30)

    def stop(self):
        self.go.set()
        self.t.join(10)


# Each case: (name, make(kind) -> (call(timeout), unblock(), close())).  kind
# is "stdlib" or "interlock"; the state is one in which the call must wait.


def lock_case(kind, cls, block):
    lk = {"stdlib": {"Lock": threading.Lock, "RLock": threading.RLock},
          "interlock": {"Lock": interlock.Lock, "RLock": interlock.RLock}}[kind][cls]()
    h = Holder(lk)
    got = []

    def call(t):
        r = lk.acquire(block) if t is None else lk.acquire(block, t)
        if r:
            got.append(1)
            lk.release()
        return r

    return call, h.stop, lambda: (h.stop(), getattr(lk, "detach", lambda: None)())


def sem_case(kind, block):
    s = multiprocessing.Semaphore(0) if kind == "stdlib" else interlock.Semaphore(0)
    return ((lambda t: s.acquire(block) if t is None else s.acquire(block, t)), s.release,
            getattr(s, "detach", lambda: None))


def event_case(kind):
    e = threading.Event() if kind == "stdlib" else interlock.Event()
    return (lambda t: e.wait(t)), e.set, getattr(e, "detach", lambda: None)


def cond_case(kind, use_wait_for):
    c = threading.Condition() if kind == "stdlib" else interlock.Condition()
    flag = []

    def call(t):
        with c:
            if use_wait_for:
                return c.wait_for(lambda: bool(flag), t)
            return c.wait(t)

    def unblock():
        with c:
            flag.append(1)
            c.notify_all()

    return call, unblock, getattr(c, "detach", lambda: None)


def barrier_case(kind):
    b = threading.Barrier(2) if kind == "stdlib" else interlock.Barrier(2)

    def unblock():
        threading.Thread(target=lambda: outcome(lambda: b.wait(10))).start()

    return (lambda t: b.wait(t)), unblock, getattr(b, "detach", lambda: None)


def get_case(kind):
    q = queue.Queue() if kind == "stdlib" else interlock.Queue()
    return (lambda t: q.get(True, t)), (lambda: q.put(1)), getattr(q, "detach", lambda: None)


def put_case(kind):
    q = queue.Queue(1) if kind == "stdlib" else interlock.Queue(1)
    q.put(0)
    return (lambda t: q.put(1, True, t)), q.get, getattr(q, "detach", lambda: None)


CASES = {
    "Lock.acquire(True)": lambda k: lock_case(k, "Lock", True),
    "Lock.acquire(False)": lambda k: lock_case(k, "Lock", False),
    "RLock.acquire(True)": lambda k: lock_case(k, "RLock", True),
    "Semaphore.acquire(True)": lambda k: sem_case(k, True),
    "Semaphore.acquire(False)": lambda k: sem_case(k, False),
    "Event.wait": event_case,
    "Condition.wait": lambda k: cond_case(k, False),
    "Condition.wait_for": lambda k: cond_case(k, True),
    "Barrier.wait": barrier_case,
    "Queue.get": get_case,
    "Queue.put": put_case,
}


def expected(name, t):
    """The stdlib's outcome, or the stated rule where it is no oracle."""
    if isinstance(t, float) and math.isnan(t):
        return ("raises", "ValueError")
    if t == INF and name.startswith(("Lock.", "RLock.")):
        pass  # threading.Lock's OverflowError, which interlock's Lock follows: the oracle
    elif t is None or t == INF:
        return ("returns", False) if name.endswith("(False)") else BLOCKS
    elif t == -1 and name in ("Lock.acquire(True)", "RLock.acquire(True)"):
        return BLOCKS  # threading: -1 is "no timeout"
    call, _unblock, close = CASES[name]("stdlib")
    try:
        return outcome(lambda: call(t))
    finally:
        close()


def run_interlock(name, t):
    call, unblock, close = CASES[name]("interlock")
    box = []
    th = threading.Thread(target=lambda: box.append(outcome(lambda: call(t))))
    th.start()
    try:
        th.join(0.5)
        if th.is_alive():
            unblock()
            th.join(10)
            assert not th.is_alive(), f"{name}({t!r}) did not return once unblocked"
            return BLOCKS
        return box[0]
    finally:
        th.join(10)
        close()


@pytest.mark.parametrize("t", VALUES, ids=repr)
@pytest.mark.parametrize("name", list(CASES))
def test_timeout_like_the_stdlib(name, t):
    want = expected(name, t)
    got = run_interlock(name, t)
    if want == BLOCKS:
        assert got == BLOCKS, f"{name}({t!r}) returned {got} instead of waiting"
    else:
        # a call the stdlib ends at once must end at once (not after 0.5 s)
        assert got == want, f"{name}({t!r}): interlock {got}, stdlib {want}"


def test_nan_changes_no_state():
    b = interlock.Barrier(2)
    s = interlock.Semaphore(1)
    lk = interlock.Lock()
    c = interlock.Condition(lk)
    try:
        with pytest.raises(ValueError):
            b.wait(NAN)
        assert b.n_waiting == 0 and not b.broken
        # the arrival above was not counted: a 2-party barrier still needs two
        t = threading.Thread(target=lambda: outcome(lambda: b.wait(10)))
        t.start()
        assert b.wait(10) in (0, 1)
        t.join(10)
        with pytest.raises(ValueError):
            s.acquire(True, NAN)
        with pytest.raises(ValueError):
            s.acquire(False, NAN)
        assert s.get_value() == 1
        with lk:
            with pytest.raises(ValueError):
                c.wait(NAN)
            assert lk._is_owned() and lk._count() == 1  # the lock was never let go
        with pytest.raises(ValueError):
            lk.acquire(True, NAN)
        assert not lk.locked()
    finally:
        for o in (b, s, c, lk):
            o.detach()
