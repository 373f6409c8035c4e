"""Where interlock still differs from multiprocessing: the one owner of that
list.  tests/test_cpython_compat.py and tests/test_mp_docs_examples.py mark
their tests from it; docs/compat.md is generated from it
(``python scripts/gen_compat_md.py``), and a test checks the two agree.

Keys: ``"<CPython class>.<test>"`` (``"_TestQueue.test_put"``,
``"lock_tests.LockTests.test_repr"``) or ``"example:<name>"``.
Values: ``(category, reason)``; categories:

- ``"gap"``: a real difference issue 10 asks to close; the test is
  ``xfail(strict=True)``, so closing the gap makes it fail until the entry
  is removed here (and docs/compat.md regenerated).
- ``"mpfails"``: the test fails for multiprocessing too (it tests
  ``threading``'s reprs or private methods): a strict xfail on both
  sides, so that the claim is checked against multiprocessing's classes.
- ``"private"``: the test reads multiprocessing's private attributes or
  tests multiprocessing's own machinery; skipped.
- ``"better"``: interlock deliberately behaves better; skipped.
"""
from __future__ import annotations

CATEGORIES = {
    "gap": "issue 10 gap (xfail, strict)",
    "mpfails": "fails for multiprocessing too (xfail on both)",
    "private": "reads multiprocessing internals (skip)",
    "better": "interlock deliberately better (skip)",
}

#: flags (third element, optional): "mp_too": multiprocessing fails the
#: test too (its baseline run is a strict xfail as well); "slow": the test
#: takes many seconds (it runs under the ``stress`` marker only).
Entry = tuple  # (category, reason) or (category, reason, frozenset of flags)

MP_TOO = frozenset({"mp_too"})

DIFFERENCES: dict[str, Entry] = {
    # ---------------------------------------------- test._test_multiprocessing
    "_TestQueue.test_queue_feeder_donot_stop_onexc": (
        "better", "put() pickles in the caller and raises the pickling error there; "
        "multiprocessing's feeder thread prints it and drops the item"),
    "_TestCondition.test_notify": (
        "private", "reads Condition._sleeping_count/_woken_count/_wait_semaphore"),
    "_TestCondition.test_notify_all": (
        "private", "reads Condition._sleeping_count/_woken_count/_wait_semaphore"),
    "_TestCondition.test_notify_n": (
        "private", "reads Condition._sleeping_count/_woken_count/_wait_semaphore"),
    # ---------------------------------------------------------- test.lock_tests
    "lock_tests.SemaphoreTests.test_acquire_timeout": (
        "mpfails", "expects threading's ValueError for acquire(False, timeout); interlock's "
        "Semaphore follows multiprocessing, which ignores the timeout of a non-blocking acquire"),
    "lock_tests.BoundedSemaphoreTests.test_acquire_timeout": (
        "mpfails", "expects threading's ValueError for acquire(False, timeout); interlock's "
        "BoundedSemaphore follows multiprocessing, which ignores the timeout"),
    "lock_tests.LockTests.test_repr": (
        "mpfails", "expects threading's repr '<unlocked _thread.lock object at ...>'"),
    "lock_tests.LockTests.test_locked_repr": (
        "mpfails", "expects threading's repr '<locked _thread.lock object at ...>'"),
    "lock_tests.LockTests.test_at_fork_reinit": (
        "mpfails", "calls threading's private Lock._at_fork_reinit()"),
    "lock_tests.RLockTests.test_repr": (
        "mpfails", "expects threading's repr '<unlocked _thread.RLock object ...>'"),
    "lock_tests.RLockTests.test_locked_repr": (
        "mpfails", "expects threading's repr '<locked _thread.RLock object ...>'"),
    "lock_tests.RLockTests.test_recursion_count": (
        "mpfails", "calls threading's private RLock._recursion_count()"),
    "lock_tests.RLockTests.test_release_save_unacquired": (
        "mpfails", "calls threading's private RLock._release_save()"),
    "lock_tests.EventTests.test_at_fork_reinit": (
        "mpfails", "reads threading's private Event._cond / _at_fork_reinit()"),
    "lock_tests.EventTests.test_repr": (
        "mpfails", "expects threading's repr '<threading.Event at ...: unset>'"),
    "lock_tests.ConditionTests.test_acquire": (
        "better", "Condition(threading.Lock()) raises TypeError: a process-local lock "
        "cannot guard a condition shared between processes"),
    "lock_tests.SemaphoreTests.test_repr": (
        "mpfails", "expects threading's repr '<threading.Semaphore at ...: value=3>'"),
    "lock_tests.BoundedSemaphoreTests.test_repr": (
        "mpfails", "expects threading's repr '<threading.BoundedSemaphore at ...: value=3/3>'"),
    "lock_tests.BarrierTests.test_repr": (
        "mpfails", "expects threading's repr '<threading.Barrier at ...: waiters=0/3>'"),
}

#: Tests interlock passes and multiprocessing's own classes fail (their
#: baseline run is a strict xfail): not differences to close, but places
#: where interlock already behaves like threading and multiprocessing does not.
MULTIPROCESSING_ONLY_FAILS: dict[str, str] = {
    "lock_tests.LockTests.test_state_after_timeout":
        "multiprocessing.Lock has no locked() before 3.14 and no acquire(blocking=...)",
    "lock_tests.LockTests.test_timeout":
        "multiprocessing.Lock.acquire(False, 1) / acquire(timeout=-100) / over-TIMEOUT_MAX "
        "timeouts do not raise ValueError/OverflowError as threading's do",
    "lock_tests.RLockTests.test_timeout":
        "multiprocessing.RLock.acquire(False, 1) / acquire(timeout=-100) / over-TIMEOUT_MAX "
        "timeouts do not raise ValueError/OverflowError as threading's do",
    "lock_tests.RLockTests.test__is_owned": "multiprocessing.RLock has no _is_owned()",
    "lock_tests.RLockTests.test_different_thread":
        "multiprocessing.RLock.release() by a non-owner thread raises AssertionError, "
        "not RuntimeError",
    "lock_tests.RLockTests.test_release_unacquired":
        "multiprocessing.RLock.release() when unowned raises AssertionError, not RuntimeError",
    "lock_tests.ConditionTests.test_unacquired_notify":
        "multiprocessing.Condition.notify() unowned raises AssertionError, not RuntimeError",
    "lock_tests.ConditionTests.test_unacquired_wait":
        "multiprocessing.Condition.wait() unowned raises AssertionError, not RuntimeError",
    "lock_tests.SemaphoreTests.test_constructor":
        "multiprocessing.Semaphore(-1) / value=-1 do not raise ValueError",
    "lock_tests.SemaphoreTests.test_multirelease":
        "multiprocessing.Semaphore has no release(n)",
    "lock_tests.BoundedSemaphoreTests.test_constructor":
        "multiprocessing.BoundedSemaphore(-1) does not raise ValueError",
    "lock_tests.BoundedSemaphoreTests.test_multirelease":
        "multiprocessing.BoundedSemaphore has no release(n)",
    "lock_tests.EventTests.test_set_and_clear":
        "multiprocessing.Event can lose set() followed at once by clear(): its waiters "
        "return False when clear() takes the Condition's lock before they retake it "
        "(a race: most runs; interlock's and threading's always return True)",
}

#: Entries of MULTIPROCESSING_ONLY_FAILS where multiprocessing fails only
#: when a race goes one way: their baseline run is a non-strict xfail (a
#: strict one would fail the runs where multiprocessing wins the race).
MULTIPROCESSING_RACY = frozenset({"lock_tests.EventTests.test_set_and_clear"})


def flags(key: str) -> frozenset:
    entry = DIFFERENCES[key]
    return entry[2] if len(entry) > 2 else frozenset()


def fails_for_multiprocessing(key: str) -> bool:
    return DIFFERENCES[key][0] == "mpfails" or "mp_too" in flags(key)
