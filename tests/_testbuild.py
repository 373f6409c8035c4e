"""A test build of interlock, for the crash-point tests.

Crash points (``_core/crashpoint.h``, ``interlock/_crash.py``) are compiled
only into a test build (``INTERLOCK_TEST_BUILD=1`` at build time), so that a
normal install ignores ``INTERLOCK_CRASH_AT``.  The README's test command
installs a normal build; :func:`crashpoint_build` makes, next to it, a copy
of the package whose C core is compiled with ``-DIL_CRASHPOINTS`` from the
same sources, and returns a directory to put first on ``PYTHONPATH``.

The build is cached under ``build/`` (git-ignored), keyed by a hash of the
package's sources and of the interpreter, so a run pays the ~20 s compile
only when the sources changed.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "src" / "interlock"
# As setup.py's, plus the crash points.
CFLAGS = ["-std=c11", "-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-Wall",
          "-Wno-unused-parameter", "-DIL_CRASHPOINTS"]


def _sources() -> list[Path]:
    return sorted(p for p in PKG.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".so")


def crashpoint_build() -> Path:
    """Build (or find cached) a crash-point build; return its sys.path entry."""
    h = hashlib.sha256()
    h.update(" ".join(CFLAGS + [sys.version, str(sysconfig.get_config_var("EXT_SUFFIX"))]).encode())
    for p in _sources():
        h.update(str(p.relative_to(PKG)).encode() + b"\0" + p.read_bytes() + b"\0")
    # One build per interpreter: the ABI tag is in the name, and only older
    # builds for this same interpreter are removed (two suites on two
    # Pythons at once must not delete each other's build under them).
    abi = str(sysconfig.get_config_var("SOABI") or sys.implementation.cache_tag)
    out = ROOT / "build" / f"crashpoints-{abi}-{h.hexdigest()[:16]}"
    if (out / "interlock" / "_crash.py").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".crashpoints-", dir=out.parent))
    try:
        pkg = tmp / "interlock"
        shutil.copytree(PKG, pkg, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
        so = pkg / f"_core{sysconfig.get_config_var('EXT_SUFFIX')}"
        cc = os.environ.get("CC", "gcc")
        cmd = [cc, *CFLAGS, "-I", sysconfig.get_paths()["include"],
               *[str(c) for c in sorted((PKG / "_core").glob("*.c"))], "-o", str(so)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"the crash-point build failed:\n{' '.join(cmd)}\n{r.stderr}")
        for old in out.parent.glob(f"crashpoints-{abi}-*"):  # older sources, this Python
            shutil.rmtree(old, ignore_errors=True)
        try:
            tmp.rename(out)
        except OSError:  # another session built it meanwhile
            if not (out / "interlock" / "_crash.py").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
