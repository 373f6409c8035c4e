"""The package's shape: module-level imports form no cycle, every module
imports on its own, the core does not import asyncio, and every error has
one owner (``interlock.errors``) and one base."""
from __future__ import annotations

import ast
import pathlib
import queue
import subprocess
import sys
import threading

import pytest

import interlock
import interlock.errors as errors

PKG = pathlib.Path(interlock.__file__).parent


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        if "_core" in path.relative_to(PKG).parts:
            continue
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()
MODULES["interlock._core"] = PKG / "_core"  # the C extension: a leaf


def _resolve(base: str, name: str) -> str | None:
    """The interlock module that ``name`` (absolute) is, or is inside."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _top_level_imports(mod: str, path: pathlib.Path) -> set[str]:
    """Modules of interlock that ``mod`` imports when it is executed: the
    imports of the module body (also under if/try), not those inside
    functions (deliberate lazy imports) nor under ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text())
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                for b in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                    visit(b)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if (t := _resolve(package, a.name)) is not None:
                        found.add(t)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    target = f"{base}.{node.module}" if node.module else base
                else:
                    target = node.module or ""
                for a in node.names:
                    sub = _resolve(target, f"{target}.{a.name}")
                    if sub == f"{target}.{a.name}":
                        found.add(sub)  # `from pkg import submodule`
                    elif (t := _resolve(target, target)) is not None:
                        found.add(t)

    visit(tree.body)
    found.discard(mod)
    return found


GRAPH = {m: _top_level_imports(m, p) for m, p in MODULES.items() if p.suffix == ".py"}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (c := dfs(n)) is not None:
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := dfs(m)) is not None:
            return c
    return None


def test_the_graph_is_read() -> None:
    # the checks below mean nothing if the parser finds no edges
    assert "interlock.deadlock._order" in GRAPH["interlock.deadlock.lockdep"]
    assert "interlock._awaitable" in GRAPH["interlock._queue"]
    assert "interlock.errors" in GRAPH["interlock._redis._client"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_module_imports_form_no_cycle() -> None:
    assert _cycle(GRAPH) is None


def _reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        for n in GRAPH.get(m, ()):
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


@pytest.mark.parametrize("core", ["interlock._queue", "interlock._lock", "interlock._sync",
                                  "interlock._value", "interlock._segment"])
def test_the_core_does_not_import_aio(core: str) -> None:
    assert "interlock.aio" not in _reachable(core)


def test_the_deadlock_modules_do_not_import_each_other_back() -> None:
    # the old circle: _hierarchy -> lockdep -> _waitfor -> _hierarchy (lazily)
    assert "interlock.deadlock.lockdep" not in _reachable("interlock.deadlock._order")
    assert "interlock.deadlock._waitfor" not in _reachable("interlock.deadlock._order")
    assert "interlock.deadlock.lockdep" not in _reachable("interlock.deadlock._waitfor")
    # nor lazily, inside functions (where the old circle hid)
    for name in ("_order.py", "_waitfor.py", "_switches.py"):
        lazy = _lazy_imports(PKG / "deadlock" / name)
        assert not any(m.endswith(("lockdep", "_waitfor")) for m in lazy), (name, lazy)


def _lazy_imports(path: pathlib.Path) -> set[str]:
    """Relative imports made inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and inner.level:
                    out.add("." * inner.level + (inner.module or ""))
    return out


def test_no_lazy_import_closes_a_cycle_with_the_redis_backend() -> None:
    # the old circle: _connect -> redis -> _redis -> _connect (for _rebuild)
    for name in ("_queue.py", "_sync.py", "_client.py"):
        assert not any("_connect" in m for m in _lazy_imports(PKG / "_redis" / name)), name


def test_every_module_imports_on_its_own() -> None:
    names = sorted(m for m in MODULES if not m.startswith("interlock.demos.")
                   and m != "interlock.__main__")
    code = ("import importlib, sys\n"
            f"for m in {names!r}:\n"
            "    for k in [k for k in sys.modules if k.startswith('interlock')]:\n"
            "        del sys.modules[k]\n"
            "    importlib.import_module(m)\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_import_interlock_does_not_import_asyncio() -> None:
    code = "import sys, interlock; print('asyncio' in sys.modules, 'interlock.aio' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["False", "False"], r.stderr


def test_lockdep_is_one_module_under_two_names() -> None:
    import interlock.deadlock.lockdep
    import interlock.lockdep

    assert interlock.lockdep is interlock.deadlock.lockdep


# -- errors ------------------------------------------------------------------

def test_every_exception_class_is_defined_in_errors() -> None:
    found = []
    for mod, path in MODULES.items():
        if path.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and mod != "interlock.errors":
                bases = " ".join(ast.unparse(b) for b in node.bases)
                if any(w in bases for w in ("Exception", "Error", "Warning")) \
                        and not node.name.startswith("_"):
                    found.append(f"{mod}.{node.name}")
    assert found == []


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_is_exported_and_has_the_base(name: str) -> None:
    cls = getattr(errors, name)
    assert getattr(interlock, name) is cls
    assert name in interlock.__all__
    if name == "ShutDown":
        # the standard class itself (queue.ShutDown on 3.13+), re-exported:
        # what a queue raises is QueueClosed, its InterlockError subclass
        assert issubclass(errors.QueueClosed, (cls, errors.InterlockError))
        return
    assert issubclass(cls, (errors.InterlockError, errors.InterlockWarning))


@pytest.mark.parametrize("cls, std", [
    (errors.Empty, queue.Empty), (errors.Full, queue.Full), (errors.QueueClosed, ValueError),
    (errors.QueueClosed, errors.ShutDown),
    (errors.CorruptionError, ValueError), (errors.CorruptionError, RuntimeError),
    (errors.BrokenBarrierError, threading.BrokenBarrierError),
    (errors.SegmentError, OSError), (errors.SlotsExhausted, errors.SegmentError),
    (errors.ConnectionLost, ConnectionError), (errors.AuthenticationFailed, PermissionError),
    (errors.LockOrderWarning, RuntimeWarning), (errors.OwnerDiedWarning, RuntimeWarning),
])
def test_errors_keep_their_standard_bases(cls: type, std: type) -> None:
    assert issubclass(cls, std)


def test_old_public_paths_are_the_same_classes() -> None:
    import interlock.lockdep
    import interlock.redis

    assert interlock.lockdep.LockOrderWarning is errors.LockOrderWarning
    assert interlock.lockdep.LockdepWarning is errors.LockdepWarning
    assert interlock.redis.ConnectionLost is errors.ConnectionLost
    assert interlock.pipeline.WorkerDiedError is errors.WorkerDiedError


def test_a_broken_barrier_raises_ours() -> None:
    b = interlock.Barrier(2)
    try:
        b.abort()
        with pytest.raises(interlock.BrokenBarrierError) as e:
            b.wait(timeout=5)
        assert isinstance(e.value, threading.BrokenBarrierError)
    finally:
        b.unlink()
        b.detach()
