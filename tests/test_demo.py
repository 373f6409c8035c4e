"""The primes demo (``python -m interlock demo primes``), run as a user runs it: in a subprocess, checking what they print against a
sieve written here, and that they leave nothing in /dev/shm."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from interlock.demos.primes import split

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^(\d+) primes?: ([\d ]+)$")


def reference_primes(start: int, stop: int) -> list[int]:
    """The primes in [start, stop): a plain sieve, independent of the demo's."""
    is_p = [True] * max(stop, 2)
    is_p[0] = is_p[1] = False
    for i in range(2, int(stop**0.5) + 1):
        if is_p[i]:
            for j in range(i * i, stop, i):
                is_p[j] = False
    return [n for n in range(start, stop) if is_p[n]]


def shm_entries() -> set[str]:
    return set(os.listdir("/dev/shm"))


def run(cmd: list[str], timeout: float = 120) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run cmd; return its result and the /dev/shm entries it may have left.

    Other test processes may create and remove segments meanwhile, so only
    new entries that carry the demo's own pid (its named queues, anonymous
    queues ``anon-<pid>-...``, creation temp files ``...<uid>.<pid>....``)
    count as left by it.
    """
    before = shm_entries()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    out, err = proc.communicate(timeout=timeout)
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    pid = str(proc.pid)
    left = {e for e in shm_entries() - before
            if f"-{pid}-" in e or e.endswith(f"-{pid}") or f".{pid}." in e}
    return result, left


def printed_batches(stdout: str) -> list[list[int]]:
    batches = []
    for line in stdout.splitlines():
        m = LINE.match(line)
        if m:
            nums = [int(x) for x in m.group(2).split()]
            assert int(m.group(1)) == len(nums), line
            batches.append(nums)
    return batches


def check_batches(batches: list[list[int]], batch: int, start: int, stop: int) -> list[int]:
    """Every batch but the last is full; together they are the primes, once each."""
    assert batches, "nothing printed"
    assert all(len(b) == batch for b in batches[:-1])
    assert 1 <= len(batches[-1]) <= batch
    got = [p for b in batches for p in b]
    assert sorted(got) == reference_primes(start, stop)
    return got


def demo(*args: str) -> list[str]:
    return [sys.executable, "-m", "interlock", "demo", "primes", *args]


def test_demo_default_run_prints_every_prime_once_and_cleans_up() -> None:
    res, left = run(demo())
    assert res.returncode == 0, res.stderr
    got = check_batches(printed_batches(res.stdout), 10, 2, 100_000)
    assert len(got) == 9592
    assert "[main] verified: 9592 primes" in res.stdout
    paths = re.findall(r"(/dev/shm/interlock\.\d+\.primes-\d+(?:-tally)?)", res.stdout)
    assert paths and not any(os.path.exists(p) for p in paths)
    assert "segments removed" in res.stdout
    assert left == set()
    assert res.stderr == ""


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_demo_options_under_other_start_methods(method: str) -> None:
    # maxsize 2: the three finders spend most of their time blocked in put()
    res, left = run(demo("--start-method", method, "--producers", "3", "--batch", "7",
                         "--maxsize", "2", "--start", "1000", "--stop", "20000"))
    assert res.returncode == 0, res.stderr
    check_batches(printed_batches(res.stdout), 7, 1000, 20000)
    assert f"start method {method}" in res.stdout
    assert res.stdout.count(" [") >= 3  # the three finders' ranges are announced
    assert left == set()


def test_demo_single_finder_delivers_in_order() -> None:
    # One producer, one consumer: FIFO means the primes come out sorted.
    res, left = run(demo("--producers", "1", "--batch", "1", "--stop", "3000", "--maxsize", "1"))
    assert res.returncode == 0, res.stderr
    got = check_batches(printed_batches(res.stdout), 1, 2, 3000)
    assert got == reference_primes(2, 3000)
    assert "1 prime: 2" in res.stdout.splitlines()
    assert left == set()


def test_demo_rejects_an_empty_range() -> None:
    res, left = run(demo("--start", "10", "--stop", "5"))
    assert res.returncode == 2
    assert "--start < --stop" in res.stderr
    assert left == set()


def test_demo_stops_cleanly_when_its_reader_goes_away() -> None:
    # `... | head -1`: the printer meets a closed pipe, shuts the queue down so
    # that the finders stop, and everybody leaves without a trace.
    before = shm_entries()
    proc = subprocess.Popen(demo("--stop", "1000000", "--maxsize", "4"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith("[main] queue ")
    proc.stdout.close()
    proc.wait(timeout=60)
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.returncode != 0  # it did not get to verify anything
    assert "Traceback" not in err
    name = f"primes-{proc.pid}"
    assert not {e for e in shm_entries() - before if name in e}


@pytest.mark.parametrize("start,stop,parts", [(2, 100_000, 2), (0, 3, 5), (7, 8, 1), (10, 1000, 7)])
def test_split_covers_the_range_exactly(start: int, stop: int, parts: int) -> None:
    ranges = split(start, stop, parts)
    assert len(ranges) == parts
    assert [n for lo, hi in ranges for n in range(lo, hi)] == list(range(start, stop))
