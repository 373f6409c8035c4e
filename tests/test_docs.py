"""The API reference (docs/api/) builds with warnings as errors, and names
every public object.

Sphinx builds it from the docstrings of the *installed* package and from the
command line's parser (sphinx-argparse), so a docstring that breaks the
markup, a page that names a vanished object, or a public name nobody
documented fails here. Skipped where Sphinx is not installed, except under
CI=true (the ``test`` extra installs it), where its absence fails.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers import skip_or_fail

import interlock

DOCS = Path(__file__).resolve().parent.parent / "docs" / "api"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    try:
        import sphinx  # noqa: F401
        import sphinxarg  # noqa: F401
    except ImportError:
        skip_or_fail("Sphinx and sphinx-argparse are needed (pip install 'interlock[docs]')")
    out = tmp_path_factory.mktemp("api-html")
    r = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(out / ".doctrees"), str(DOCS), str(out)],
        capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"the API reference does not build cleanly:\n{r.stdout}\n{r.stderr}"
    assert "WARNING" not in r.stderr and "ERROR" not in r.stderr, r.stderr
    return out


def _documented_ids(html_dir: Path) -> set[str]:
    ids: set[str] = set()
    for page in html_dir.glob("*.html"):
        ids |= set(re.findall(r'<dt class="sig sig-object py" id="([^"]+)"', page.read_text()))
    return ids


def test_api_reference_builds_without_warnings(built):
    for page in ("index", "queues", "locks", "values", "deadlock", "pipeline", "asyncio",
                 "redis", "exceptions", "cli"):
        assert (built / f"{page}.html").exists(), page


def test_every_public_name_is_documented(built):
    ids = _documented_ids(built)
    modules = {"interlock": interlock.__all__}
    for mod in ("redis", "pipeline"):
        m = __import__(f"interlock.{mod}", fromlist=["__all__"])
        modules[f"interlock.{mod}"] = m.__all__
    missing = []
    for modname, names in modules.items():
        for name in names:
            if name == "lockdep":  # a module: documented by its members below
                continue
            obj = getattr(sys.modules[modname], name)
            # a name re-exported by interlock is documented once, under interlock
            if f"{modname}.{name}" not in ids and f"interlock.{name}" not in ids:
                missing.append(f"{modname}.{name} ({type(obj).__name__})")
    for name in ("enable", "disable", "enabled", "report", "reset", "close"):
        if f"interlock.lockdep.{name}" not in ids:
            missing.append(f"interlock.lockdep.{name}")
    for name in ("AsyncQueueMixin.get_async", "AsyncQueueMixin.put_async",
                 "AsyncLockMixin.acquire_async", "AsyncEventMixin.wait_async"):
        if f"interlock.aio.{name}" not in ids:
            missing.append(f"interlock.aio.{name}")
    assert not missing, f"public names missing from the API reference: {missing}"


def test_methods_show_their_real_signatures(built):
    # The C methods' text signatures start with $self: without it, the first
    # real parameter (put's obj) was taken for self and vanished.
    queues = (built / "queues.html").read_text()
    put = queues[queues.index('id="interlock.Queue.put"'):][:2000]
    assert re.search(r'<span class="pre">obj</span>', put), put


def test_the_cli_reference_lists_every_command(built):
    from interlock.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    cli = (built / "cli.html").read_text()
    for command in sub.choices:
        assert f'<section id="interlock-{command}"' in cli, command
