"""The registry commands of the CLI, run as subprocesses against live objects
that other processes made: ``ls``, ``inspect``, ``top``, ``clean``, each
with and without ``--json``.

Other programs of the same user may have objects in /dev/shm while these
tests run: every assertion picks out the objects of this test by name.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from interlock import _registry, _segment

PY = sys.executable

# A process that makes a queue with three 100-byte items and holds a lock,
# until its stdin closes.
HOLDER = r"""
import sys, interlock
qname, lname = sys.argv[1], sys.argv[2]
q = interlock.Queue(maxsize=10, name=qname, capacity=4096)
for _ in range(3):
    q.put(b"x" * 100)
lock = interlock.Lock(name=lname)
lock.acquire()
print("ready", flush=True)
sys.stdin.read()
lock.release()
"""

# A process blocked on that lock.
WAITER = r"""
import sys, interlock
lock = interlock.Lock(name=sys.argv[1], create=False)
print("waiting", flush=True)
lock.acquire()
lock.release()
"""

# A process that moves items through a queue at a steady pace.
PUMP = r"""
import sys, time, interlock
q = interlock.Queue(name=sys.argv[1], capacity=4096)
print("ready", flush=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    q.put(b"tick")
    q.get()
    time.sleep(0.001)
"""

# A process that makes a queue, then waits to be killed.
VICTIM = r"""
import sys, time, interlock
q = interlock.Queue(name=sys.argv[1], capacity=4096)
q.put(b"left behind")
print("ready", flush=True)
time.sleep(60)
"""


def cli(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([PY, "-m", "interlock", *args], capture_output=True, text=True, check=False,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"interlock {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def cli_json(*args: str) -> Any:
    return json.loads(cli(*args, "--json").stdout)


def start(script: str, *argv: str, stdin: bool = False) -> subprocess.Popen[str]:
    p = subprocess.Popen([PY, "-c", script, *argv], stdout=subprocess.PIPE, text=True,
                         stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line.strip() in ("ready", "waiting"), f"child said {line!r}"
    return p


def stop(p: subprocess.Popen[str]) -> None:
    try:
        if p.poll() is None:
            if p.stdin:
                p.stdin.close()
                try:
                    p.wait(5)
                    return
                except subprocess.TimeoutExpired:
                    pass
            p.kill()
        p.wait(5)
    finally:
        for f in (p.stdin, p.stdout, p.stderr):  # (an unclosed pipe is a ResourceWarning)
            if f is not None:
                f.close()


def reap(*names: str) -> None:
    """Remove what our killed children left (never someone else's)."""
    for n in names:
        _segment._reap(_segment.path_of(n))


def wait_for(pred: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def by_name(objs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [o for o in objs if o["name"] == name]
    assert found, f"{name} not in {[o['name'] for o in objs]}"
    return found[0]


@pytest.fixture
def names(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    base = f"t-cli-{os.getpid()}-{request.node.name[:40].replace('[', '-').strip(']')}"
    yield f"{base}-q", f"{base}-l"


@pytest.fixture
def holder(names: tuple[str, str]) -> Iterator[subprocess.Popen[str]]:
    p = start(HOLDER, *names, stdin=True)
    yield p
    stop(p)
    reap(*names)


@pytest.fixture
def waiter(holder: subprocess.Popen[str], names: tuple[str, str]) -> Iterator[subprocess.Popen[str]]:
    p = start(WAITER, names[1])
    wait_for(lambda: _registry.inspect(names[1]).waiters == 1)
    yield p
    stop(p)


# ------------------------------------------------------------------------ ls
def test_ls_json_shows_other_processes_objects(holder: Any, waiter: Any,
                                               names: tuple[str, str]) -> None:
    qname, lname = names
    objs = cli_json("ls")
    q, lk = by_name(objs, qname), by_name(objs, lname)

    assert q["kind"] == "Queue"
    assert q["creator_pid"] == holder.pid and q["creator_alive"]
    assert holder.pid in q["live_users"]
    d = q["details"]
    assert d["depth"] == 3
    assert d["bytes_used"] == 3 * (8 + 104)  # 8-byte header, payload rounded up to 8
    assert d["maxsize"] == 10 and d["capacity"] == 4096 and not d["closed"]
    assert q["counters"] == {"put": 3, "got": 0}
    assert q["summary"] == "depth 3/10, 336 B, 1 producer/0 consumers"

    assert lk["kind"] == "Lock"
    assert sorted(lk["live_users"]) == sorted([holder.pid, waiter.pid])
    assert lk["holders"] == [{"pid": holder.pid, "tid": holder.pid, "depth": 1, "alive": True,
                              "acquired_at": None}]
    assert lk["waiters"] == 1
    assert lk["details"]["locked"] and lk["details"]["contentions"] >= 1


def test_ls_table(holder: Any, waiter: Any, names: tuple[str, str]) -> None:
    out = cli("ls").stdout
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "CREATOR", "USERS", "SIZE", "STATE"]
    qline = next(line for line in lines if line.startswith(names[0] + " "))
    lline = next(line for line in lines if line.startswith(names[1] + " "))
    assert qline.split()[1:5] == ["Queue", str(holder.pid), "1/1", "12.0"]
    assert qline.endswith("depth 3/10, 336 B, 1 producer/0 consumers")
    assert lline.split()[1:4] == ["Lock", str(holder.pid), "2/2"]
    assert lline.endswith(f"locked by pid {holder.pid} (main thread), 1 waiting")


def test_ls_shows_a_values_lock_in_its_row_and_all_lists_it_under(
        names: tuple[str, str]) -> None:
    """The issue: one `anon-... RLock` per Value, Array or Condition was
    listed as if it were the user's."""
    import interlock

    v = interlock.Value("i", 42, name=names[0] + "-v")
    lock = v.get_lock().name
    try:
        with v.get_lock():
            out = cli("ls").stdout
            full = cli("ls", "--all").stdout
        vline = next(line for line in out.splitlines() if line.startswith(v.name + " "))
        assert vline.endswith(f"value 42, lock: locked by pid {os.getpid()} (main thread)")
        assert lock not in out
        assert "not shown" in out.splitlines()[-1] and "--all" in out.splitlines()[-1]
        lines = full.splitlines()
        i = next(i for i, line in enumerate(lines) if line.startswith(v.name + " "))
        assert lines[i].endswith(f"value 42, lock {lock}")
        assert lines[i + 1].startswith(f"└ {lock} ") and "RLock" in lines[i + 1]
        assert not any(line.startswith(lock) for line in lines)  # listed once, under it
        assert "not shown" not in full

        assert lock not in {o["name"] for o in cli_json("ls")}
        objs = json.loads(cli("ls", "--all", "--json").stdout)
        lk, vo = by_name(objs, lock), by_name(objs, v.name)
        assert (lk["owned"], lk["owner"], lk["hidden"], lk["internal"]) == (True, v.name, True,
                                                                           False)
        assert vo["details"]["lock"] == lock and vo["details"]["value"] == 42
        assert not vo["hidden"] and vo["owner"] is None

        text = cli("inspect", v.name).stdout
        assert "state       value 42\n" in text and "a snapshot, read without taking the lock" in text
        text = cli("inspect", lock).stdout
        assert f"owner       {v.name} (this is its lock" in text
    finally:
        v.detach()


def test_ls_help_explains_the_columns() -> None:
    text = " ".join(cli("ls", "--help").stdout.split())
    assert "producers/M consumers" in text and "at least once" in text
    assert "pid P thread T" in text and "--all" in text


def test_inspect_explains_contentions(holder: Any, waiter: Any, names: tuple[str, str]) -> None:
    text = cli("inspect", names[1]).stdout
    assert "contentions   acquires that found it held and had to wait, in total" in text


def _run_cli_in(directory: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI, with the registry directory pointed elsewhere (an empty one)."""
    code = ("import sys; from interlock import _segment; "
            f"_segment.SHM_DIR = {directory!r}; "
            "from interlock.cli import main; sys.exit(main(sys.argv[1:]))")
    return subprocess.run([PY, "-c", code, *args], capture_output=True, text=True, timeout=30,
                          check=False)


def test_nothing_there(tmp_path: Any) -> None:
    r = _run_cli_in(str(tmp_path), "ls")
    assert r.returncode == 0 and r.stdout.startswith("no interlock objects"), r
    r = _run_cli_in(str(tmp_path), "ls", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == []
    r = _run_cli_in(str(tmp_path), "clean")
    assert r.returncode == 0 and r.stdout.startswith("nothing to clean"), r
    r = _run_cli_in(str(tmp_path), "top", "--iterations", "1", "--interval", "0.1")
    assert r.returncode == 0 and "no interlock objects" in r.stdout, r


# ------------------------------------------------------------------- inspect
def test_inspect(holder: Any, waiter: Any, names: tuple[str, str]) -> None:
    qname, lname = names
    lk = cli_json("inspect", lname)
    assert lk["name"] == lname and lk["holders"][0]["pid"] == holder.pid and lk["waiters"] == 1

    text = cli("inspect", lname).stdout
    assert text.startswith(f"{lname}  (Lock)")
    assert f"holders     pid {holder.pid} (main thread)" in text
    assert "waiters     1  (threads blocked on it now)" in text
    assert "2 live of 2" in text

    text = cli("inspect", qname).stdout
    assert "state       depth 3/10, 336 B, 1 producer/0 consumers" in text
    assert "counters    put 3, got 0  (totals since creation, modulo 2**32)" in text
    assert "maxsize" in text and "bytes_used" in text


@pytest.mark.parametrize("name", ["no-such-object-here", "../etc", "a/b"])
def test_inspect_unknown_name(name: str) -> None:
    r = cli("inspect", name, check=False)
    assert r.returncode == 1
    assert r.stdout == ""
    assert f"no interlock object named {name!r} (see `interlock ls`)" in r.stderr
    r = cli("inspect", name, "--json", check=False)
    assert r.returncode == 1 and r.stdout == ""


# ----------------------------------------------------------------------- top
def test_top_shows_rates() -> None:
    qname = f"t-cli-{os.getpid()}-pump"
    p = start(PUMP, qname)
    try:
        lines = cli("top", "--iterations", "3", "--interval", "0.3", "--json").stdout.splitlines()
        frames = [json.loads(line) for line in lines]
        assert len(frames) == 3
        first = by_name(frames[0]["objects"], qname)
        assert first["rates"] is None  # nothing to compare with yet
        for f in frames[1:]:
            q = by_name(f["objects"], qname)
            assert q["rates"]["put"] > 20 and q["rates"]["got"] > 20, q["rates"]
            assert q["rates"]["put"] < 5000

        out = cli("top", "--iterations", "2", "--interval", "0.2").stdout
        assert "\x1b[" not in out  # not a terminal: no screen clearing
        frames_txt = out.split("interlock top")[1:]
        assert len(frames_txt) == 2
        row = next(line for line in frames_txt[1].splitlines() if line.startswith(qname + " "))
        assert "put " in row and "/s" in row and "put -" not in row
        row0 = next(line for line in frames_txt[0].splitlines() if line.startswith(qname + " "))
        assert "put -, got -" in row0
    finally:
        p.kill()
        stop(p)
        reap(qname)


def test_top_on_a_terminal_clears_the_screen_each_refresh(holder: Any,
                                                         names: tuple[str, str]) -> None:
    import pty

    master, slave = pty.openpty()
    p: subprocess.Popen[bytes] | None = None
    try:
        p = subprocess.Popen([PY, "-m", "interlock", "top", "-n", "2", "-d", "0.1"],
                             stdout=slave, stderr=subprocess.PIPE)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert p.wait(10) == 0
    finally:
        os.close(master)
        if p is not None and p.stderr is not None:
            p.stderr.close()
    out = b"".join(chunks).decode()
    assert out.count("\x1b[H\x1b[2J") == 2
    assert names[1] in out


def test_top_quits_cleanly_on_ctrl_c(holder: Any) -> None:
    p = subprocess.Popen([PY, "-m", "interlock", "top", "--interval", "0.1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # SIGINT only once top is in its loop (its first frame is out): a
        # fixed sleep sent it, on a loaded machine, while Python was still
        # importing, and the KeyboardInterrupt came with a traceback.
        assert p.stdout is not None
        first = p.stdout.readline()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
        out = first + out
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()  # (reads and closes the pipes)
    assert p.returncode == 0, err
    assert "Traceback" not in err
    assert "interlock top" in out


# --------------------------------------------------------------------- clean
def test_clean_lists_then_removes_segments_of_killed_processes() -> None:
    qname = f"t-cli-{os.getpid()}-victim"
    path = _segment.path_of(qname)
    p = start(VICTIM, qname)
    try:
        listed = cli_json("clean")
        assert all(s["name"] != qname for s in listed["segments"])  # alive: not listed
        assert cli_json("clean", qname)["segments"] == []
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert os.path.exists(path)

        listed = cli_json("clean")
        assert listed["remove"] is False
        mine = by_name(listed["segments"], qname)
        assert mine["dead_users"] == [p.pid] and mine["removed"] is None
        assert os.path.exists(path)  # listing removes nothing
        assert by_name(cli_json("ls"), qname)["orphaned"] is True
        assert "orphaned" in cli("ls").stdout
        text = cli("clean").stdout
        assert qname in text and "interlock clean --remove" in text
        # (the whole-directory sweep, `clean --remove` without names, is
        # test_clean_remove_everything: here only our own segment is removed)
        removed = cli_json("clean", qname, "--remove")
        assert [s["name"] for s in removed["segments"]] == [qname]
        assert by_name(removed["segments"], qname)["removed"] is True
        assert not os.path.exists(path)
        assert cli("inspect", qname, check=False).returncode == 1
    finally:
        if p.poll() is None:
            p.kill()
        stop(p)
        reap(qname)


def test_clean_remove_table() -> None:
    qname = f"t-cli-{os.getpid()}-victim2"
    p = start(VICTIM, qname)
    p.kill()
    stop(p)
    try:
        out = cli("clean", qname, "--remove").stdout
        assert out.startswith("removed ")
        row = next(line for line in out.splitlines() if line.startswith(qname + " "))
        assert row.rstrip().endswith("removed") and str(p.pid) in row
        assert not os.path.exists(_segment.path_of(qname))
    finally:
        reap(qname)


def test_clean_remove_everything(tmp_path: Any) -> None:
    """Without names, --remove sweeps the whole directory (a private one here,
    not to remove what other programs of this user left for their own checks)."""
    d = str(tmp_path)
    code = ("import sys, time, interlock; from interlock import _segment; "
            f"_segment.SHM_DIR = {d!r}; "
            "qs = [interlock.Queue(name=n, capacity=4096) for n in sys.argv[1:]]; "
            "print('ready', flush=True); time.sleep(60)")
    p = start(code, "dead-a", "dead-b")
    p.kill()
    stop(p)
    assert sorted(os.listdir(d)) == [f"interlock.{os.getuid()}.dead-a",
                                     f"interlock.{os.getuid()}.dead-b"]
    r = _run_cli_in(d, "clean", "--json")
    assert sorted(s["name"] for s in json.loads(r.stdout)["segments"]) == ["dead-a", "dead-b"]
    assert len(os.listdir(d)) == 2
    r = _run_cli_in(d, "clean", "--remove", "--json")
    doc = json.loads(r.stdout)
    assert doc["remove"] is True and all(s["removed"] for s in doc["segments"])
    assert len(doc["segments"]) == 2
    assert os.listdir(d) == []
    r = _run_cli_in(d, "clean")
    assert r.stdout.startswith("nothing to clean")


# ------------------------------------------------------- reading is passive
def test_reading_never_changes_the_segments(holder: Any, names: tuple[str, str]) -> None:
    """ls, inspect and top neither claim a slot, nor take the meta lock, nor
    write anything: the files are byte for byte the same afterwards."""
    paths = [_segment.path_of(n) for n in names]

    def snapshot() -> list[bytes]:
        out = []
        for path in paths:
            with open(path, "rb") as f:
                out.append(f.read())
        return out

    before = snapshot()
    cli("ls")
    cli("ls", "--json")
    for n in names:
        cli("inspect", n)
        cli("inspect", n, "--json")
    cli("top", "--iterations", "2", "--interval", "0.05")
    cli("clean")
    after = snapshot()
    assert after == before
    assert [u.pid for u in _registry.inspect(names[0]).users] == [holder.pid]
