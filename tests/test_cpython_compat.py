"""CPython's own multiprocessing and lock tests, run against interlock (issue 10).

Two suites from the running interpreter's ``test`` package:

- ``test._test_multiprocessing``: its ``_Test*`` bodies (``_TestQueue``,
  ``_TestLock``, ...) are mixed into one ``unittest.TestCase`` each, as
  ``install_tests_in_module_dict`` does for its "processes" flavour, but with
  :class:`InterlockProcessesMixin`, whose ``Queue``, ``Lock``, ``Value``, ...
  are interlock's (tests/_mp_compat.py).  ``Process``, ``Pool`` and the rest
  stay multiprocessing's, under the interpreter's default start method
  (``fork`` on Linux up to 3.13, ``forkserver`` from 3.14): the classes call
  ``self.Process``, which follows ``multiprocessing.get_start_method()``.
- ``test.lock_tests``: ``LockTests``, ``RLockTests``, ``EventTests``,
  ``ConditionTests``, ``SemaphoreTests``, ``BoundedSemaphoreTests``,
  ``BarrierTests`` with interlock's types (threads of one process).

Every test where interlock still differs is listed in tests/compat_table.py
(``DIFFERENCES``): a gap issue 10 asks to close is ``xfail(strict=True)``,
the rest are skipped with the reason; docs/compat.md is generated from that
table.  Every test runs under a 60 s timeout, so a hang fails instead of
blocking the suite.

The representative part runs by default; the whole of each suite is under
the ``stress`` marker (see ``DEFAULT_RUN``).
"""
from __future__ import annotations

import functools
import os
import sys
import unittest

import pytest

import _mp_compat
from compat_table import (DIFFERENCES, MULTIPROCESSING_ONLY_FAILS, MULTIPROCESSING_RACY,
                          fails_for_multiprocessing, flags)

try:
    from test import lock_tests
    from test import _test_multiprocessing as mptests
except ImportError as e:  # pragma: no cover - depends on the interpreter's packaging
    if os.environ.get("CI") == "true":
        raise ImportError(
            f"CPython's `test` package is needed for the compat harness under CI: {e}") from e
    pytest.skip(f"CPython's `test` package is not installed with this interpreter ({e}); "
                "the compat harness needs test._test_multiprocessing and test.lock_tests",
                allow_module_level=True)

pytestmark = pytest.mark.timeout(60)

#: The CPython classes (in test._test_multiprocessing) issue 10 names.
MP_CLASSES = ("_TestQueue", "_TestLock", "_TestSemaphore", "_TestCondition", "_TestEvent",
              "_TestBarrier", "_TestValue", "_TestArray")
#: lock_tests class -> (attribute its tests create objects with, interlock name)
LOCK_CLASSES = {
    "LockTests": ("locktype", "Lock"),
    "RLockTests": ("locktype", "RLock"),
    "EventTests": ("eventtype", "Event"),
    "ConditionTests": ("condtype", "Condition"),
    "SemaphoreTests": ("semtype", "Semaphore"),
    "BoundedSemaphoreTests": ("semtype", "BoundedSemaphore"),
    "BarrierTests": ("barriertype", "Barrier"),
}

#: Harness classes that run in the default (non-stress) run: the rest is
#: marked ``stress``.  Chosen to cover queues, locks and values in both
#: suites while keeping the default run short (see docs/compat.md).
DEFAULT_RUN = frozenset({
    "WithInterlockQueue", "WithInterlockLock", "WithInterlockValue", "WithInterlockArray",
    "WithInterlockEvent", "InterlockLockTests", "InterlockRLockTests", "InterlockEventTests",
    "InterlockSemaphoreTests", "InterlockBoundedSemaphoreTests",
})


class InterlockProcessesMixin(mptests.ProcessesMixin):
    """CPython's "processes" flavour with interlock's primitives."""


for _name in _mp_compat.SWAPPED:
    setattr(InterlockProcessesMixin, _name, staticmethod(_mp_compat.swapped(_name)))


class _DetachBarrier:
    """lock_tests.BarrierTests keeps its barrier on the TestCase, which
    unittest keeps alive to the end of the session: detach it when the test
    ends (conftest fails a test that leaves its segment in /dev/shm)."""

    def tearDown(self):
        super().tearDown()
        self.barrier.detach()
        del self.barrier


class _BoundedWaits:
    """lock_tests' waits of ``support.LONG_TIMEOUT`` (5 min) outlast the
    test's 60 s timeout: a lost wake-up would leave threads asleep (and
    their objects attached) long after the test failed.  Bound them to 10 s
    while interlock's tests run."""

    LONG_WAIT = 10.0

    def setUp(self):
        self._long_timeout = lock_tests.support.LONG_TIMEOUT
        lock_tests.support.LONG_TIMEOUT = self.LONG_WAIT
        super().setUp()

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            lock_tests.support.LONG_TIMEOUT = self._long_timeout


def _marked(func, category: str, reason: str, strict: bool = True):
    """A copy of ``func`` (shared with CPython's class: never mark the
    original) carrying a verdict."""

    @functools.wraps(func)
    def wrapper(self, *args, **kwargs):
        return func(self, *args, **kwargs)

    wrapper.__dict__.pop("pytestmark", None)
    if category == "xfail":
        return pytest.mark.xfail(strict=strict, reason=reason)(wrapper)
    return unittest.skip(reason)(wrapper)


def _finish(cls: type, origin: str, baseline: bool) -> type:
    """Mark the class's tests from DIFFERENCES (keyed by ``origin``, the
    CPython class); install it in this module.

    interlock's class: a "gap" or "mpfails" entry is a strict xfail, the
    others are skipped.  multiprocessing's (``baseline``) class checks the
    table's claims: an "mpfails" entry must fail there too (strict xfail),
    every other listed test must pass there."""
    cls.__module__ = __name__
    for attr in dir(cls):
        key = f"{origin}.{attr}"
        if baseline and key in MULTIPROCESSING_ONLY_FAILS:
            setattr(cls, attr, _marked(getattr(cls, attr), "xfail",
                                       f"multiprocessing fails: {MULTIPROCESSING_ONLY_FAILS[key]}",
                                       strict=key not in MULTIPROCESSING_RACY))
            continue
        if not attr.startswith("test") or key not in DIFFERENCES:
            continue
        category, reason = DIFFERENCES[key][:2]
        if "slow" in flags(key):
            setattr(cls, attr, pytest.mark.stress(getattr(cls, attr)))
        if baseline:
            if fails_for_multiprocessing(key):
                setattr(cls, attr, _marked(getattr(cls, attr), "xfail",
                                           f"fails for multiprocessing too: {reason}"))
        elif category in ("gap", "mpfails"):
            setattr(cls, attr, _marked(getattr(cls, attr), "xfail",
                                       f"issue 10: {reason}" if category == "gap"
                                       else f"{category}: {reason}"))
        else:
            setattr(cls, attr, _marked(getattr(cls, attr), "skip", f"{category}: {reason}"))
    if baseline or cls.__name__ not in DEFAULT_RUN:
        cls = pytest.mark.stress(cls)
    if baseline:
        # multiprocessing's own run of CPython's tests: some fork with a
        # thread alive by design (test_fork starts the queue's feeder
        # thread, the Condition tests start threads and processes
        # together).  Those threads are multiprocessing's and the tests',
        # not interlock's (tests/_forkcheck.py).
        cls = pytest.mark.threaded_fork(
            "CPython's multiprocessing tests fork beside their own threads")(cls)
    globals()[cls.__name__] = cls
    return cls


def _make(name: str, bases: tuple[type, ...], ns: dict, origin: str, baseline: bool) -> type:
    cls = type(name, bases, ns)
    cls.__qualname__ = name
    return _finish(cls, origin, baseline)


def _build() -> tuple[list[type], list[type]]:
    ours, theirs = [], []
    for base_name in MP_CLASSES:
        base = getattr(mptests, base_name)
        tail = base_name[len("_Test"):]
        ours.append(_make("WithInterlock" + tail, (base, InterlockProcessesMixin, unittest.TestCase),
                          {}, base_name, False))
        theirs.append(_make("WithProcesses" + tail,
                            (base, mptests.ProcessesMixin, unittest.TestCase), {},
                            base_name, True))
    import multiprocessing

    for base_name, (attr, what) in LOCK_CLASSES.items():
        base = getattr(lock_tests, base_name)
        extra: tuple[type, ...] = (_DetachBarrier,) if base_name == "BarrierTests" else ()
        ours.append(_make("Interlock" + base_name, (_BoundedWaits,) + extra + (base,),
                          {attr: staticmethod(_mp_compat.swapped(what))},
                          f"lock_tests.{base_name}", False))
        theirs.append(_make("Multiprocessing" + base_name, (base,),
                            {attr: staticmethod(getattr(multiprocessing, what))},
                            f"lock_tests.{base_name}", True))
    return ours, theirs


#: interlock's classes, and multiprocessing's run of the same tests (stress).
HARNESS_CLASSES, BASELINE_CLASSES = _build()
#: harness class -> the CPython class it runs ("_TestQueue", "lock_tests.LockTests")
ORIGIN = {c.__name__: (f"_Test{c.__name__[len('WithInterlock'):]}"
                       if c.__name__.startswith("WithInterlock")
                       else f"lock_tests.{c.__name__[len('Interlock'):]}")
          for c in HARNESS_CLASSES}


def harness_test_ids() -> set[str]:
    """``"<CPython class>.<test>"`` of every interlock test this module runs,
    on this Python (the keys of DIFFERENCES)."""
    loader = unittest.TestLoader()
    return {f"{ORIGIN[cls.__name__]}.{t}" for cls in HARNESS_CLASSES
            for t in loader.getTestCaseNames(cls)}


def test_start_method_is_the_default():
    """The classes run their processes under the interpreter's default."""
    expected = "forkserver" if sys.version_info >= (3, 14) else "fork"
    assert multiprocessing_start_method() == expected


def multiprocessing_start_method() -> str:
    import multiprocessing

    return multiprocessing.get_start_method()


def test_swapped_names_are_interlock_or_flagged():
    """The mixin answers every swapped name with interlock's class, or with
    the flagged stub: never with multiprocessing's (which would test nothing)."""
    import multiprocessing

    for name in _mp_compat.SWAPPED:
        obj = getattr(InterlockProcessesMixin, name)
        assert obj is not getattr(multiprocessing, name)
        if hasattr(__import__("interlock"), name):
            assert obj is getattr(__import__("interlock"), name)
        else:
            with pytest.raises(_mp_compat.NotInInterlock):
                obj()


def test_compat_md_is_generated():
    """docs/compat.md is exactly what scripts/gen_compat_md.py makes of the table."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("gen_compat_md", root / "scripts" / "gen_compat_md.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (root / "docs" / "compat.md").read_text() == gen.render(), \
        "docs/compat.md is out of date: run python scripts/gen_compat_md.py"


#: Tests of the table that CPython added after 3.10 (its test package has
#: none of them there); on every later Python each must exist.
ADDED_AFTER_3_10 = {
    "lock_tests.RLockTests.test_recursion_count",
    "lock_tests.EventTests.test_repr", "lock_tests.SemaphoreTests.test_repr",
    "lock_tests.BoundedSemaphoreTests.test_repr", "lock_tests.BarrierTests.test_repr",
}


def test_table_names_only_tests_that_exist():
    """Every CPython entry of the table names a test this harness runs (on
    this Python), and every example entry an example: no stale entries."""
    from test_mp_docs_examples import EXAMPLES

    ids = harness_test_ids()
    newer = ADDED_AFTER_3_10 if sys.version_info < (3, 11) else set()
    for key in DIFFERENCES:
        if key.startswith("example:"):
            assert key[len("example:"):] in EXAMPLES, key
        elif key not in newer:
            assert key in ids, f"{key} is in compat_table but not run by the harness"
    for key in MULTIPROCESSING_ONLY_FAILS:
        assert (key in ids or key in newer) and key not in DIFFERENCES, key
    assert MULTIPROCESSING_RACY <= set(MULTIPROCESSING_ONLY_FAILS)
