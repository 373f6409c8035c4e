"""interlock.pipeline: ordering, backpressure, shutdown, errors, Ctrl-C,
killed workers, progress; each under fork and spawn.

Every test ends by checking that no worker process and no segment made by
this process is left (the ``no_leftovers`` fixture).
"""
from __future__ import annotations

import io
import itertools
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from interlock import _segment
from interlock._progress import ProgressBoard, StageProgress
from interlock.pipeline import Pipeline, RemoteTraceback, WorkerDiedError, WorkerDiedWarning

START_METHODS = ["fork", "spawn"]


# ------------------------------------------------------------ stage functions
# (module level: spawn workers import them)
def square(x):
    return x * x


def jitter_square(x):
    # later items often finish first: ordering must not depend on luck
    time.sleep(0.004 if x % 5 == 0 else 0)
    return x * x


def add_one(x):
    return x + 1


def explode(x):
    # 0 -> nothing, 1 -> [x], 2 -> [x, x]: a generator stage
    for i in range(x % 3):
        yield (x, i)


def ident(x):
    return x


def fail_on_7(x):
    if x == 7:
        raise ValueError(f"bad item {x}")
    return x


def slow(x):
    time.sleep(0.01)
    return x


def kill_self_once(arg):
    """SIGKILL ourselves on item 5, the first time only (a flag file)."""
    x, flag = arg
    if x == 5:
        try:
            fd = os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)
    return x


class Unpicklable(Exception):
    def __init__(self, a, b):  # pickles, but does not unpickle: args mismatch
        super().__init__(f"{a}-{b}")


def raise_unpicklable(x):
    raise Unpicklable(1, 2)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(params=START_METHODS)
def ctx(request):
    return multiprocessing.get_context(request.param)


def _my_segments():
    me = os.getpid()
    return {s.name for s in _segment.scan() if s.creator_pid == me}


@pytest.fixture(autouse=True)
def no_leftovers():
    before = _my_segments()
    yield
    deadline = time.monotonic() + 2
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert multiprocessing.active_children() == []
    assert _my_segments() - before == set()


# ------------------------------------------------------------------- results
def test_ordered_results_two_stages(ctx):
    out = Pipeline(range(400), mp_context=ctx).stage(jitter_square, 3).stage(add_one, 2).run()
    assert out == [x * x + 1 for x in range(400)]


def test_ordered_with_chunks(ctx):
    p = Pipeline(range(1000), mp_context=ctx).stage(jitter_square, 2, chunksize=16)
    assert list(p) == [x * x for x in range(1000)]


def test_unordered_gives_everything(ctx):
    out = Pipeline(range(300), ordered=False, mp_context=ctx).stage(jitter_square, 3).run()
    assert sorted(out) == [x * x for x in range(300)]


def test_generator_stage_keeps_order(ctx):
    # items that yield nothing, one, or two results, then a second stage
    out = Pipeline(range(200), mp_context=ctx).stage(explode, 3).stage(ident, 2).run()
    assert out == [(x, i) for x in range(200) for i in range(x % 3)]


def test_nested_generator_stages():
    def pairs():
        return Pipeline(range(60), mp_context="fork").stage(explode, 2).stage(explode_pair, 2)
    assert pairs().run() == [((x, i), j) for x in range(60) for i in range(x % 3)
                             for j in range(sum((x, i)) % 3)]


def explode_pair(t):
    for j in range(sum(t) % 3):
        yield (t, j)


def test_empty_source(ctx):
    assert Pipeline([], mp_context=ctx).stage(square, 2).stage(square, 2).run() == []


def test_runs_once_and_needs_a_stage():
    p = Pipeline(range(3), mp_context="fork").stage(square)
    assert p.run() == [0, 1, 4]
    with pytest.raises(RuntimeError):
        p.run()
    with pytest.raises(ValueError):
        Pipeline(range(3)).run()
    with pytest.raises(ValueError):
        Pipeline(range(3)).stage(square, workers=0)
    with pytest.raises(ValueError):
        Pipeline(range(3), on_worker_death="ignore")


# -------------------------------------------------------------- backpressure
def test_backpressure_endless_source(ctx):
    drawn = itertools.count()
    source = (next(drawn) for _ in itertools.count())  # endless, counts what is taken
    with Pipeline(source, mp_context=ctx, max_inflight=40).stage(square, 2, maxsize=4) as p:
        it = iter(p)
        got = [next(it) for _ in range(200)]
        assert got == [x * x for x in range(200)]
        time.sleep(0.3)  # the consumer stalls: the source must stall too
        fed = p.fed
        time.sleep(0.3)
        assert p.fed == fed, "the source kept being consumed while nobody took results"
        assert fed - 200 <= 40 + 1, f"{fed - 200} items in flight, window is 40"


def test_backpressure_unordered_bounded_by_queues(ctx):
    source = itertools.count()
    p = Pipeline(source, ordered=False, mp_context=ctx).stage(square, 2, maxsize=3)
    with p:
        it = iter(p)
        for _ in range(100):
            next(it)
        time.sleep(0.3)
        # stage queue (3) + 2 workers holding one each + result queue (3)
        # + one message in the feeder's hand, 1 item per message
        assert p.fed - 100 <= 3 + 2 * 2 + 3 + 1 + 64
        fed = p.fed
        time.sleep(0.2)
        assert p.fed == fed


@pytest.mark.stress
def test_memory_flat_on_endless_source():
    import resource

    p = Pipeline(itertools.count(), mp_context="fork").stage(square, 2, chunksize=8)
    with p:
        it = iter(p)
        for _ in range(20000):
            next(it)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(200000):
            next(it)
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert rss1 - rss0 < 20_000, f"max RSS grew by {rss1 - rss0} KiB"


# ------------------------------------------------------------------ errors
def test_error_propagates_with_worker_traceback(ctx):
    p = Pipeline(range(50), mp_context=ctx).stage(square, 2).stage(fail_on_7_after_square, 2)
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="bad item 49") as info:
        p.run()
    assert time.monotonic() - t0 < 10
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "fail_on_7_after_square" in cause.tb and "raise ValueError" in cause.tb
    assert info.value.pipeline_stage == "fail_on_7_after_square"
    assert info.value.pipeline_item == 7


def fail_on_7_after_square(x):
    if x == 49:
        raise ValueError(f"bad item {x}")
    return x


def test_error_that_does_not_unpickle(ctx):
    with pytest.raises(RuntimeError, match="Unpicklable") as info:
        Pipeline(range(3), mp_context=ctx).stage(raise_unpicklable).run()
    assert "raise_unpicklable" in info.value.__cause__.tb


def test_error_in_source_is_raised():
    def source():
        yield 1
        yield 2
        raise KeyError("source broke")
    with pytest.raises(KeyError, match="source broke"):
        Pipeline(source(), mp_context="fork").stage(square, 2).run()


def test_message_too_large_is_reported(ctx):
    with pytest.raises(ValueError):
        Pipeline([1], mp_context=ctx).stage(make_big).stage(ident, capacity=4096).run()


def make_big(x):
    return b"x" * 100_000


def test_leaving_the_loop_early_stops_everything(ctx):
    with Pipeline(itertools.count(), mp_context=ctx).stage(square, 2) as p:
        for r in p:
            if r > 100:
                break
        pids = [pid for _, _, pid in p.workers]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# ------------------------------------------------------------ killed workers
def test_killed_worker_fails_clearly(ctx):
    p = Pipeline(itertools.count(), mp_context=ctx).stage(slow, 2).stage(ident, 1)
    t0 = None
    with pytest.raises(WorkerDiedError) as info:
        for i, _ in enumerate(p):
            if i == 20:
                victim = p.workers[0][2]
                os.kill(victim, signal.SIGKILL)
                t0 = time.monotonic()
    assert time.monotonic() - t0 < 3
    e = info.value
    assert e.pid == victim and e.exitcode == -signal.SIGKILL and e.stage == "slow"
    assert "SIGKILL" in str(e)


@pytest.mark.parametrize("mode", ["restart", "retry"])
def test_killed_worker_restarted(ctx, tmp_path, mode):
    flag = str(tmp_path / "killed")
    src = [(x, flag) for x in range(40)]
    p = Pipeline(src, mp_context=ctx, on_worker_death=mode).stage(kill_self_once, 2)
    p.stage(ident, 2)
    with pytest.warns(WorkerDiedWarning, match="SIGKILL"):
        out = p.run()
    assert os.path.exists(flag)
    assert p.restarts == 1
    if mode == "restart":  # at most once: item 5 is gone, and said so
        assert p.lost == [5]
        assert out == [x for x in range(40) if x != 5]
    else:  # at least once: item 5 was run again by the new worker
        assert p.lost == []
        assert out == list(range(40))


RESTART_FORK_SCRIPT = textwrap.dedent("""
    import os, signal, sys, threading
    seen = []  # threads alive at each fork (this hook runs last: registered first)
    os.register_at_fork(before=lambda: seen.append(threading.active_count()))
    from interlock.pipeline import Pipeline

    def make(flag):
        def kill_once(x):  # a closure: only fork can start it (no spawn, no forkserver)
            if x == 5 and not os.path.exists(flag):
                open(flag, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            return x * 10
        return kill_once

    if __name__ == "__main__":
        # A small window: the feeder thread is still feeding when the worker dies.
        p = Pipeline(range(300), mp_context="fork", on_worker_death=sys.argv[2],
                     max_inflight=8).stage(make(sys.argv[1]), 2)
        out = p.run()
        want = [x * 10 for x in range(300) if sys.argv[2] == "retry" or x != 5]
        print("RESULT", out == want, p.restarts, seen, flush=True)
""")


@pytest.mark.parametrize("mode", ["restart", "retry"])
def test_restart_under_fork_forks_without_the_feeder_thread(tmp_path, mode):
    """A restarted worker is forked while no thread of the pipeline runs
    (the feeder parks at a safe point and carries on after), so the child
    cannot inherit a lock held by another thread; Python >= 3.12 would warn
    "multi-threaded, use of fork() may lead to deadlocks"."""
    script = tmp_path / "restart_fork.py"
    script.write_text(RESTART_FORK_SCRIPT)
    out = subprocess.run([sys.executable, "-W", "always", str(script),
                          str(tmp_path / "killed"), mode],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    # every result, in order; one restart; 2 initial forks + 1, each single-threaded
    assert "RESULT True 1 [1, 1, 1]" in out.stdout, out.stdout + out.stderr
    assert "multi-threaded" not in out.stderr, out.stderr


# ------------------------------------------------------------------- Ctrl-C
CTRL_C_SCRIPT = textwrap.dedent("""
    import itertools, os, sys, time
    import multiprocessing as mp
    from interlock.pipeline import Pipeline

    def work(x):
        time.sleep(0.002)
        return x

    if __name__ == "__main__":
        p = Pipeline(itertools.count(), mp_context=sys.argv[1]).stage(work, 2).stage(work, 2)
        for i, r in enumerate(p):
            if i == 50:
                names = [q.name for q in p._all_queues]
                print("PIDS", *[pid for _, _, pid in p.workers], flush=True)
                print("QUEUES", *names, flush=True)
""")


@pytest.mark.parametrize("method", START_METHODS)
def test_ctrl_c_stops_everything_within_a_second(tmp_path, method):
    script = tmp_path / "ctrlc.py"
    script.write_text(CTRL_C_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), method], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        pids = proc.stdout.readline().split()[1:]
        queues = proc.stdout.readline().split()[1:]
        assert len(pids) == 4 and len(queues) == 4, (pids, queues, proc.stderr.read())
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)  # to the parent only
        proc.wait(timeout=10)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err = proc.stderr.read()
        proc.stdout.close()  # (an unclosed pipe is a ResourceWarning)
        proc.stderr.close()
    assert "KeyboardInterrupt" in err
    assert elapsed < 1.0 + 0.5, f"took {elapsed:.2f} s"  # 0.5 s of slack for a loaded CI box
    for pid in map(int, pids):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    for name in queues:
        assert not os.path.exists(_segment.path_of(name)), name


# ----------------------------------------------------------------- progress
class FakeTTY(io.StringIO):
    def isatty(self):
        return True


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


ROWS_AT_2S = [StageProgress("fetch", 800, 4, 4, 6, 8, 3000),
              StageProgress("save", 600, 2, 2, 8, 8, 3000)]
ROWS_AT_END = [StageProgress("fetch", 3000, 0, 4, 0, 8, 3000),
               StageProgress("save", 3000, 0, 2, 0, 8, 3000)]


def test_progress_on_a_terminal_done_total_rate_eta_then_final():
    clock, tty = FakeClock(), FakeTTY()
    board = ProgressBoard(tty, clock=clock)
    board.start()
    clock.t = 102.0  # 2 s in: fetch 800/3000 at 400/s, save 600/3000 at 300/s
    board.update(ROWS_AT_2S)
    assert tty.getvalue() == (
        "\x1b[2Kfetch  [##--------]   800/3000   26%    400.0/s  ETA 0:06  workers 4/4  queue 6/8\n"
        "\x1b[2Ksave   [##--------]   600/3000   20%    300.0/s  ETA 0:08  workers 2/2  queue 8/8\n"
        "\x1b[2Ktotal  [##--------]   600/3000   20%    300.0/s  ETA 0:08  elapsed 0:02\n")
    clock.t = 102.05  # within `interval` (0.1 s) of the last drawing: nothing
    board.update(ROWS_AT_2S)
    assert tty.getvalue().count("\x1b[2K") == 3
    clock.t = 104.0  # the end: redrawn in place (3 lines up), average rates, no ETA
    tty.truncate(0)
    tty.seek(0)
    board.close(ROWS_AT_END)
    assert tty.getvalue() == (
        "\x1b[3F"
        "\x1b[2Kfetch  [##########]  3000/3000  100%    750.0/s  workers 0/4  queue 0/8\n"
        "\x1b[2Ksave   [##########]  3000/3000  100%    750.0/s  workers 0/2  queue 0/8\n"
        "\x1b[2Ktotal  [##########]  3000/3000  100%    750.0/s  done in 4.0 s\n")
    board.update(ROWS_AT_END, force=True)  # closed: nothing more
    assert tty.getvalue().count("\x1b[2K") == 3


def test_progress_rate_follows_the_last_seconds():
    clock = FakeClock()
    board = ProgressBoard(io.StringIO(), clock=clock)
    board.start()
    for t, done in ((101.0, 1000), (102.0, 2000), (103.0, 3000), (104.0, 3100)):
        clock.t = t
        line = board.format([StageProgress("a", done, 1, 1, 0, 1)])[0]
    # over the last 3 s (101 -> 104): 2100 items, not 3100/4 since the start
    assert line == "a      3100 done    700.0/s  workers 1/1  queue 0/1"


def test_progress_without_a_total_shows_done_and_rate():
    clock, tty = FakeClock(), FakeTTY()
    board = ProgressBoard(tty, clock=clock)
    board.start()
    clock.t = 104.0
    board.update([StageProgress("gen", 120, 1, 1, 3, 0)])
    assert tty.getvalue() == ("\x1b[2Kgen    120 done     30.0/s  workers 1/1  queue 3\n"
                              "\x1b[2Ktotal  120 done     30.0/s  elapsed 0:04\n")


def test_progress_eta_unknown_while_nothing_is_done():
    clock, tty = FakeClock(), FakeTTY()
    board = ProgressBoard(tty, clock=clock)
    board.start()
    clock.t = 101.0
    board.update([StageProgress("a", 0, 1, 1, 0, 2, 10)])
    assert "   0/10    0%      0.0/s  ETA ?  workers 1/1" in tty.getvalue()


def test_progress_not_a_terminal_plain_line_every_interval():
    clock, out = FakeClock(), io.StringIO()
    board = ProgressBoard(out, clock=clock, log_interval=5.0)
    board.start()
    clock.t = 102.0
    board.update(ROWS_AT_2S)
    assert out.getvalue() == ""  # not 5 s yet
    clock.t = 105.0
    board.update([StageProgress("fetch", 2000, 4, 4, 8, 8, 3000),
                  StageProgress("save", 1500, 2, 2, 8, 8, 3000)])
    clock.t = 108.0
    board.update(ROWS_AT_2S)  # 3 s after the last line: nothing
    clock.t = 110.0
    board.close(ROWS_AT_END)
    assert out.getvalue() == (
        "progress 0:05  fetch 2000/3000 66% 400.0/s ETA 0:03 | save 1500/3000 50% 300.0/s "
        "ETA 0:05\n"
        "progress done in 10.0 s: fetch 3000, save 3000 (300.0/s)\n")
    assert "\x1b" not in out.getvalue()


def test_progress_not_a_terminal_short_run_is_silent():
    clock, out = FakeClock(), io.StringIO()
    board = ProgressBoard(out, clock=clock)
    board.start()
    clock.t = 103.0
    board.update(ROWS_AT_2S)
    board.close(ROWS_AT_END)
    assert out.getvalue() == ""


def test_progress_disabled_writes_nothing():
    clock, tty = FakeClock(), FakeTTY()
    board = ProgressBoard(tty, enabled=False, clock=clock)
    board.start()
    clock.t = 110.0
    board.update(ROWS_AT_2S, force=True)
    board.close(ROWS_AT_END)
    assert tty.getvalue() == ""


def test_stage_totals_come_from_the_source_length_up_to_a_generator_stage():
    assert [s.total for s in Pipeline(range(10)).stage(explode).stage(square).stats()] == [10, None]
    assert [s.total for s in Pipeline(iter(range(10))).stage(square).stats()] == [None]
    assert [s.total for s in Pipeline(iter(range(10)), total=10).stage(square).stats()] == [10]
    with pytest.raises(ValueError):
        Pipeline(range(3), total=-1)


def test_pipeline_progress_on_a_tty(ctx):
    tty = FakeTTY()
    out = Pipeline(range(50), mp_context=ctx, progress_stream=tty).stage(slow, 2).run()
    assert out == list(range(50))
    last = tty.getvalue().rsplit("\x1b[2F", 1)[-1].split("\n")
    assert last[0].startswith("\x1b[2Kslow   [##########]  50/50  100%"), last
    assert last[1].startswith("\x1b[2Ktotal  [##########]  50/50  100%") and "done in" in last[1]


def test_pipeline_progress_false_prints_nothing(capsys):
    tty = FakeTTY()
    Pipeline(range(20), mp_context="fork", progress=False, progress_stream=tty).stage(slow).run()
    assert tty.getvalue() == ""
    Pipeline(range(20), mp_context="fork", progress=False, progress_interval=0.0).stage(
        slow).run()
    assert capsys.readouterr().err == ""


def test_pipeline_progress_lines_in_a_log(capsys):
    Pipeline(range(40), mp_context="fork", progress_interval=0.05).stage(slow).run()
    lines = capsys.readouterr().err.splitlines()
    assert lines and lines[-1].startswith("progress done in ") and "slow 40" in lines[-1]
    assert all(line.startswith("progress ") for line in lines)
    assert any("/40 " in line for line in lines[:-1])


def test_pipeline_silent_when_not_a_tty(capsys):
    Pipeline(range(20), mp_context="fork").stage(square).run()
    assert capsys.readouterr().err == ""
