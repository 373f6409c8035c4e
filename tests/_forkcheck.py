"""A pytest plugin (loaded by conftest.py): fail the session when the test
process fork()ed while another thread of it was alive.

Such a fork can give the child a lock that the other thread held at that
instant, held forever.  Python >= 3.12 warns of it ("This process (pid=N) is
multi-threaded, use of fork() may lead to deadlocks in the child"), but it
issues that DeprecationWarning from C after fork() returned, where it cannot
raise: under a filter that turns warnings into errors (our default run) it is
silently dropped.  So this plugin shows it ("always", whatever the other
filters say) and counts every one recorded (``pytest_warning_recorded``: in
tests, fixtures, collection).  Before 3.12 there is no such warning: a
before-fork hook counts the threads itself (``threading.active_count()``,
what 3.12's check counts), so 3.10 and 3.11 are held to the same rule.

A test that forks with a thread alive on purpose says so with
``@pytest.mark.threaded_fork(reason)`` (see pytest_collection_modifyitems).
Only forks of the pytest process count: what a test's child process does
with its own threads is its business (and its stderr is its own).
"""
from __future__ import annotations

import os
import re
import sys
import threading

import pytest

MESSAGE = "is multi-threaded, use of fork() may lead to deadlocks"
_FILTER = r"always:This process \(pid=\d+\) is multi-threaded:DeprecationWarning"
_NATIVE = sys.version_info >= (3, 12)  # CPython warns by itself

_forks: list[str] = []  # "where: message" of every multi-threaded fork seen
_pid = os.getpid()


#: Tests that fork with a thread alive on purpose (``threaded_fork`` marker).
_allowed: set[str] = set()


def _where() -> str:
    return os.environ.get("PYTEST_CURRENT_TEST", "(outside any test)").rsplit(" (", 1)[0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``@pytest.mark.threaded_fork(reason, backend=None)``: the test forks
    while a thread is alive by design (with ``backend``: only in its
    parametrizations with that backend, e.g. a Redis lease held across a
    fork keeps the lease keeper running: the caller's own threaded fork)."""
    for item in items:
        m = item.get_closest_marker("threaded_fork")
        if m is None:
            continue
        backend = m.kwargs.get("backend")
        params = getattr(getattr(item, "callspec", None), "params", {})
        if backend is None or params.get("backend") == backend:
            _allowed.add(item.nodeid)
            item.add_marker(pytest.mark.filterwarnings(_FILTER.replace("always", "ignore", 1)))


def _before_fork() -> None:
    n = threading.active_count()
    if os.getpid() == _pid and n > 1 and _where() not in _allowed:
        names = ", ".join(sorted(t.name for t in threading.enumerate()
                                 if t is not threading.current_thread()))
        _forks.append(f"{_where()}: fork() with {n} threads ({names})")


if not _NATIVE:
    # Registered at import, before interlock is imported (conftest imports
    # this module first): before-fork hooks run newest first, so this one
    # runs after interlock's own (which joins a Redis keeper that is ending),
    # and sees the threads that fork() will copy.
    os.register_at_fork(before=_before_fork)


def pytest_configure(config: pytest.Config) -> None:
    # Later ini lines win over earlier ones: this one over "error".
    config.addinivalue_line("filterwarnings", _FILTER)


def pytest_warning_recorded(warning_message, when, nodeid, location) -> None:  # noqa: ARG001
    text = str(warning_message.message)
    if (MESSAGE in text and issubclass(warning_message.category, DeprecationWarning)
            and nodeid not in _allowed):
        where = nodeid or f"({when})"
        _forks.append(f"{where}: {re.sub(r' in the child.*', '', text)} "
                      f"[{warning_message.filename}:{warning_message.lineno}]")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:  # noqa: ARG001
    if not _forks:
        return
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(f"FAILED: {len(_forks)} fork(s) of the test process while another "
                      "of its threads was alive:", red=True, bold=True)
        for line in _forks:
            tr.write_line(f"  {line}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
