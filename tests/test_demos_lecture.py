"""The lecture demos (race, fifo, restaurant, images), each run as a
subprocess (``python -m interlock.demos.NAME``); their output is checked for
what they claim, and nothing may be left in /dev/shm by them."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from interlock import _segment

DEMOS = ["race", "fifo", "restaurant", "images"]


def run_demo(name: str, *args: str, timeout: float = 60) -> str:
    before = {s.name for s in _segment.scan()}
    proc = subprocess.run([sys.executable, "-m", f"interlock.demos.{name}", *args],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == "", proc.stderr
    # No segment left by the demo: one that appeared meanwhile with no live
    # user is a leak (other helpers' live segments may come and go).
    leaked = [s.name for s in _segment.scan() if s.name not in before and not s.live_users]
    assert leaked == [], leaked
    return proc.stdout


@pytest.mark.parametrize("name", DEMOS)
def test_demo_module_shape(name):
    import importlib

    mod = importlib.import_module(f"interlock.demos.{name}")
    assert isinstance(mod.DESCRIPTION, str) and mod.DESCRIPTION
    assert callable(mod.main)


@pytest.mark.parametrize("name", DEMOS)
def test_demo_help(name):
    out = subprocess.run([sys.executable, "-m", f"interlock.demos.{name}", "--help"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "usage:" in out.stdout


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_race_broken_without_lock_none_with(method):
    out = run_demo("race", "--processes", "3", "--lines", "15", "--start-method", method)
    m = re.search(r"Result: (\d+) broken line\(s\) without the lock, (\d+) with it", out)
    assert m, out
    assert int(m.group(1)) > 0
    assert int(m.group(2)) == 0
    assert "broken lines: 0 of 45" in out


def test_fifo_naive_list_corrupts_queue_does_not():
    out = run_demo("fifo", "--items", "200")
    m = re.search(r"Result: naive list (\d+) duplicate\(s\), (\d+) lost; "
                  r"interlock.Queue (\d+) duplicate\(s\), (\d+) lost", out)
    assert m, out
    naive_dup, naive_lost, q_dup, q_lost = map(int, m.groups())
    assert naive_dup + naive_lost > 0
    assert (q_dup, q_lost) == (0, 0)
    assert "pushed 600, popped 600 (600 distinct)" in out


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_restaurant_serves_every_order_once(method):
    out = run_demo("restaurant", "--orders", "20", "--waiters", "2", "--cooks", "2",
                   "--speed", "0.5", "--start-method", method)
    served = [int(n) for n in re.findall(r"served order #(\d+)", out)]
    assert sorted(served) == list(range(20))
    assert "orders waiting [" in out  # the live view of the order queue
    assert re.search(r"Result: 20 orders served .* by \d waiter\(s\) and \d cook\(s\)", out)
    assert "every order served once" in out


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_images_downloads_and_saves(tmp_path, method):
    out_dir = tmp_path / "imgs"
    out = run_demo("images", "--images", "12", "--downloaders", "3", "--per-page", "5",
                   "--delay", "0.05", "--out", str(out_dir), "--start-method", method)
    files = sorted(os.listdir(out_dir))
    assert files == sorted(f"{n}.png" for n in range(12))
    for f in files:
        assert (out_dir / f).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "Result: saved 12 images" in out and "12 valid PNG files" in out
    assert re.search(r"with [23] downloader process\(es\)", out), out


def test_images_default_run_is_quick_and_cleans_up():
    out = run_demo("images")
    m = re.search(r"saved 24 images .* in (/\S+)\) in ([\d.]+) s", out)
    assert m, out
    assert not os.path.exists(m.group(1))  # the temporary directory is removed
    # the downloads overlapped: the server counted several in flight at once
    peak = re.search(r"up to (\d+) downloads at once", out)
    assert peak and int(peak.group(1)) >= 2, out
