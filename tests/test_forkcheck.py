"""The session's fork check (tests/_forkcheck.py) against a throwaway suite
in a subprocess: a fork while another thread runs must fail the session
(even under ``filterwarnings = error``, which makes CPython drop its own
warning), and a fork after that thread was joined must not."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))

SUITE = textwrap.dedent("""
    import os, threading, time

    def fork_and_reap():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)

    def test_fork(join_first):
        stop = threading.Event()
        t = threading.Thread(target=stop.wait, name="throwaway-thread")
        t.start()
        if join_first:
            stop.set()
            t.join()
        fork_and_reap()
        stop.set()
        t.join()
""")


@pytest.mark.parametrize("join_first", [False, True], ids=["thread-alive", "thread-joined"])
def test_fork_check_fails_the_session_on_a_multi_threaded_fork(tmp_path, join_first):
    (tmp_path / "test_throwaway.py").write_text(SUITE)
    (tmp_path / "conftest.py").write_text(textwrap.dedent(f"""
        import pytest
        @pytest.fixture
        def join_first():
            return {join_first!r}
    """))
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings =\n    error\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-p", "_forkcheck", "-c", str(tmp_path / "pytest.ini"),
                          "--rootdir", str(tmp_path), str(tmp_path)],
                         capture_output=True, text=True, timeout=120, env=env)
    text = out.stdout + out.stderr
    assert "1 passed" in text, text  # the test itself passes either way
    if join_first:
        assert out.returncode == 0, text
        assert "fork(s) of the test process" not in text, text
    else:
        assert out.returncode == 1, text
        assert "FAILED: 1 fork(s) of the test process" in text, text
        assert "test_throwaway.py::test_fork" in text, text
