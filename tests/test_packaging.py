"""What a user installing interlock sees: the version, the metadata, the
public names; and that a missing test tool fails CI instead of skipping.

The build itself (wheel without C sources, sdist with everything its tests
need, no setuptools warning) is checked by test_dist_contents (stress: it
compiles the core once more).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from _helpers import uname

import interlock
from interlock import lockdep

ROOT = Path(__file__).resolve().parent.parent


def _pyproject_version() -> str:
    m = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert m, "pyproject.toml has no version"
    return m.group(1)


def test_version_has_one_source():
    v = metadata.version("interlock")
    assert v == _pyproject_version()
    assert interlock.__version__ == v


def test_cli_version():
    r = subprocess.run([sys.executable, "-m", "interlock", "--version"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"interlock {metadata.version('interlock')}"


def test_metadata_says_license_python_versions_and_typed():
    md = metadata.metadata("interlock")
    assert md["License-Expression"] == "MIT"
    assert md["Author"] == "interlock developers"
    classifiers = md.get_all("Classifier") or []
    for c in ("Typing :: Typed", "Operating System :: POSIX :: Linux",
              *(f"Programming Language :: Python :: 3.{m}" for m in (10, 11, 12, 13))):
        assert c in classifiers, c
    assert md["Requires-Python"] == ">=3.10"
    files = {str(f) for f in metadata.files("interlock") or ()}
    assert any(f.endswith("licenses/LICENSE") for f in files), files


def test_lock_order_warning_is_exported():
    assert "LockOrderWarning" in interlock.__all__
    assert interlock.LockOrderWarning is lockdep.LockOrderWarning
    # and it is what lockdep really issues: an A-then-B / B-then-A order
    lockdep.reset()
    lockdep.enable()
    try:
        a, b = interlock.Lock(name=uname("lowA")), interlock.Lock(name=uname("lowB"))
        with a, b:
            pass
        with pytest.warns(interlock.LockOrderWarning):
            with b, a:
                pass
        a.detach()
        b.detach()
    finally:
        lockdep.disable()
        lockdep.reset()


def _run_models_without_spin(tmp_path: Path, ci: str) -> subprocess.CompletedProcess[str]:
    # PATH without spin (nor gcc): test_models cannot run.
    env = dict(os.environ, PATH=str(tmp_path), CI=ci)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "mutex",
         str(ROOT / "tests" / "test_models.py")],
        capture_output=True, text=True, timeout=300, env=env, cwd=str(ROOT))


def test_missing_tool_skips_locally_and_fails_under_ci(tmp_path):
    r = _run_models_without_spin(tmp_path, "")
    assert r.returncode == 0 and "skipped" in r.stdout and "failed" not in r.stdout, r.stdout
    r = _run_models_without_spin(tmp_path, "true")
    # (verify() fails the test instead of skipping it)
    assert r.returncode == 1 and "skipped" not in r.stdout, r.stdout
    assert "CI=true and spin" in r.stdout, r.stdout


@pytest.mark.stress
def test_dist_contents(tmp_path):
    pytest.importorskip("build")
    # (PYTHONDONTWRITEBYTECODE makes setuptools warn that it skips byte-compiling)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    r = subprocess.run([sys.executable, "-m", "build", "-o", str(tmp_path), str(ROOT)],
                       capture_output=True, text=True, timeout=900, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "absent from the packages configuration" not in out, out
    # a warning line, not a file whose name holds "warn" (_warn.py)
    warnings_seen = [line for line in out.splitlines()
                     if re.search(r"(?i)\bwarn(ing)?\b", line) and "_warn.py" not in line]
    assert not warnings_seen, warnings_seen
    (whl,) = tmp_path.glob("*.whl")
    (sdist,) = tmp_path.glob("*.tar.gz")
    names = zipfile.ZipFile(whl).namelist()
    assert not [n for n in names if n.endswith((".c", ".h"))], names
    assert any(re.match(r"interlock/_core\..*\.so$", n) for n in names), names
    assert "interlock/py.typed" in names and "interlock/_core.pyi" in names
    with tarfile.open(sdist) as t:
        held = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for need in ("tests/conftest.py", "tests/_helpers.py", "tests/redis_server.py",
                 "tests/test_queue.py", "models/mutex.pml", "models/exhaustive.json",
                 "scripts/sanitize.sh",
                 "src/interlock/_core/ring.c",
                 "src/interlock/_core/ring.h", "LICENSE", "CHANGELOG.md", "docs/api/conf.py"):
        assert need in held, need
