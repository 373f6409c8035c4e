"""Model checks of the C core's protocols with spin (models/*.pml).

Each case generates the verifier (spin -a), compiles it (gcc) and runs it,
then asserts spin's own verdict ("errors: 0") and that it really searched
("states stored").  What each model checks and how its steps map to the C:
models/README.md and docs/design/verification.md.  Skipped when spin or gcc
is missing (.ci/run installs spin); fails instead under CI=true.  Bigger
configurations: -m exhaustive (opt-in, out of CI; see EXHAUSTIVE below).
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from _helpers import skip_or_fail

MODELS = Path(__file__).resolve().parent.parent / "models"


def commands(model, defines=(), cflags=("-DSAFETY",), panflags=()):
    """The spin, gcc and pan command lines of one check."""
    # COLLAPSE (exact, compressed state vectors) unless HC4 (hash-compact) is asked for
    comp = [] if "-DHC4" in cflags else ["-DCOLLAPSE"]
    return (["spin", "-a", *[f"-D{d}" for d in defines], model],
            ["gcc", "-O2", "-w", *comp, *cflags, "-o", "pan", "pan.c"],
            ["./pan", "-m2000000", *panflags])


def verify(tmp_path, model, defines=(), cflags=("-DSAFETY",), panflags=(), timeout=300):
    """Run spin on models/<model> and return (errors, states, output)."""
    if shutil.which("spin") is None or shutil.which("gcc") is None:
        skip_or_fail("spin (apt-get install spin) and gcc are needed for the model checks")
    work = tmp_path / "m"
    shutil.copytree(MODELS, work, dirs_exist_ok=True)
    run = lambda cmd, t: subprocess.run(  # noqa: E731
        cmd, cwd=work, capture_output=True, text=True, timeout=t)
    spin_a, cc, pan = commands(model, defines, cflags, panflags)
    r = run(spin_a, 60)
    assert r.returncode == 0 and (work / "pan.c").exists(), r.stdout + r.stderr
    r = run(cc, 120)
    assert r.returncode == 0, r.stderr
    r = run(pan, timeout)
    out = r.stdout + r.stderr
    m = re.search(r"errors: (\d+)", out)
    # spin prints big counts in floating point: "1.934e+08 states, stored"
    s = re.search(r"([\d.]+(?:e\+\d+)?) states, stored", out)
    assert m and s, out
    assert "Search not completed" not in out or int(m.group(1)) > 0, out
    return int(m.group(1)), int(float(s.group(1))), out


def ok(tmp_path, model, defines=(), **kw):
    errors, states, out = verify(tmp_path, model, defines, **kw)
    assert errors == 0, out
    assert states > 1000, out  # it really explored something
    return states


def fails(tmp_path, model, defines=(), what=None, **kw):
    errors, _, out = verify(tmp_path, model, defines, **kw)
    assert errors > 0, out
    if what:
        assert what in out, out
    return out


# ---------------------------------------------------------------- mutex

def test_mutex_death_at_any_step(tmp_path):
    # 3 processes, one may be SIGKILLed at any step, timeouts at any moment:
    # mutual exclusion among the living, takeover only from the dead,
    # release only by the owner, every survivor finishes.
    ok(tmp_path, "mutex.pml", ["ROUNDS=1"])


def test_mutex_death_no_livelock(tmp_path):
    # sleeps time out only when nothing else can move: no cycle at all
    ok(tmp_path, "mutex.pml", ["ROUNDS=1", "STALL_TIMEOUT"], cflags=["-DNP"], panflags=["-l"])


def test_mutex_no_lost_wakeup(tmp_path):
    # a sleep ends only by a FUTEX_WAKE; deadlines may expire (stale WAITERS)
    ok(tmp_path, "mutex.pml", ["NO_TIMEOUT", "DEATHS=0", "DEADLINES"])


def test_mutex_lost_wakeup_check_can_fail(tmp_path):
    fails(tmp_path, "mutex.pml", ["NO_TIMEOUT", "DEATHS=0", "MUTANT_NO_WAKE"],
          what="invalid end state")


def test_mutex_split_hint_mutant_is_caught(tmp_path):
    # The bug this model found in an earlier mutex.c (owner TID and start time
    # read as two loads: a waiter paired one tenure's TID with another's start
    # time and stole the lock from a living owner), kept as a mutant: the
    # check must still fail on it.
    fails(tmp_path, "mutex.pml", ["ROUNDS=2", "DEATHS=0", "SPLIT_HINT"],
          what="!(alive[(owner-1)])")


def test_mutex_async_waiter_passes_the_wakeup_on(tmp_path):
    # Issue 12: an asyncio waiter (il_mutex_wait_unlocked, then a
    # non-blocking acquire or nothing) beside two acquirers; no sleeper is
    # ever left behind.
    ok(tmp_path, "mutex.pml", ["ROUNDS=1", "NO_TIMEOUT", "DEATHS=0", "WATCHER"])


def test_mutex_swallowed_wakeup_mutant_is_caught(tmp_path):
    # The earlier il_mutex_wait_unlocked kept the release's one wake-up: the
    # blocked acquirer slept until its slice ran out (48-49 ms measured).
    fails(tmp_path, "mutex.pml",
          ["ROUNDS=1", "NO_TIMEOUT", "DEATHS=0", "WATCHER", "MUTANT_SWALLOW_WAKE"],
          what="invalid end state")


def test_mutex_handoff_no_lost_wakeup(tmp_path):
    # interlock.Lock's hand-off: process 0 acquires twice and never releases
    # (its second acquire sleeps on its own hold), process 1 releases each
    # hold (il_mutex_release_any), process 2 is an ordinary worker: one hold
    # at a time, every release ends a real hold, nobody left asleep.
    ok(tmp_path, "mutex.pml", ["HANDOFF", "ROUNDS=2", "NO_TIMEOUT", "DEATHS=0"])


def test_mutex_handoff_worker_death(tmp_path):
    # The same with timeouts, the ordinary worker SIGKILLed at any step: the
    # hand-off pair takes its hold over and goes on.
    ok(tmp_path, "mutex.pml", ["HANDOFF", "ROUNDS=1", "KILLABLE=4"])


def test_mutex_handoff_two_releasers_one_succeeds(tmp_path):
    # Two releasers race for one hold: the CAS lets exactly one end it (the
    # other gets "released too many times")...
    ok(tmp_path, "mutex.pml", ["HANDOFF2", "ROUNDS=1", "NO_TIMEOUT", "DEATHS=0"])


def test_mutex_handoff_xchg_mutant_is_caught(tmp_path):
    # ... where an unchecked exchange (il_mutex_unlock's, minus its ownership
    # check) "releases" twice, the second time ending no hold.
    fails(tmp_path, "mutex.pml",
          ["HANDOFF2", "ROUNDS=1", "NO_TIMEOUT", "DEATHS=0", "MUTANT_HANDOFF_XCHG"],
          what="assertion violated")


def test_mutex_handoff_lost_wakeup_check_can_fail(tmp_path):
    fails(tmp_path, "mutex.pml", ["HANDOFF", "ROUNDS=2", "NO_TIMEOUT", "DEATHS=0",
                                  "MUTANT_NO_WAKE"], what="invalid end state")


# ---------------------------------------------------------------- eventcount

@pytest.mark.parametrize("config", [
    ["NPROD=1", "PUTS=2"],              # 1 producer, 2 consumers
    ["NPROD=2", "PUTS=1"],              # 2 producers, 1 consumer
])
def test_eventcount_no_lost_wakeup(tmp_path, config):
    ok(tmp_path, "eventcount.pml", ["NO_TIMEOUT", "DEATHS=0", "NO_CLOSE", *config])


def test_eventcount_lost_wakeup_check_can_fail(tmp_path):
    fails(tmp_path, "eventcount.pml",
          ["NO_TIMEOUT", "DEATHS=0", "NO_CLOSE", "MUTANT_NOTIFY_FIRST"], what="invalid end state")


@pytest.mark.parametrize("config", [["NPROD=1", "PUTS=1"], ["NPROC=4", "NPROD=2", "PUTS=1"]])
def test_eventcount_async_waiter_passes_the_wakeup_on(tmp_path, config):
    # Issue 12: a wait-only reader (Ring_wait_readable, for get_async) that
    # takes nothing after its wake-up; the consumers still get every item.
    ok(tmp_path, "eventcount.pml", ["NO_TIMEOUT", "DEATHS=0", "NO_CLOSE", "WATCHER", *config])


def test_eventcount_swallowed_wakeup_mutant_is_caught(tmp_path):
    fails(tmp_path, "eventcount.pml", ["NO_TIMEOUT", "DEATHS=0", "NO_CLOSE", "WATCHER",
                                       "NPROD=1", "PUTS=1", "MUTANT_SWALLOW_WAKE"],
          what="invalid end state")


def test_eventcount_waiter_that_does_not_arm_is_lost(tmp_path):
    # the armed variant (eventcount.h): a waiter that sleeps without setting
    # bit 0 is never woken, since a notify wakes only while it is set
    fails(tmp_path, "eventcount.pml", ["NO_TIMEOUT", "DEATHS=0", "NO_CLOSE", "MUTANT_NO_ARM"],
          what="invalid end state")


def test_eventcount_disarm_by_a_plain_store_loses_a_sleeper(tmp_path):
    # clearing bit 0 with a store after a FUTEX_WAKE that woke nobody leaves
    # a waiter that fell asleep in between with the bit gone; the
    # FUTEX_WAKE_OP (clear and wake under the futex's lock) does not
    fails(tmp_path, "eventcount.pml", ["NPROC=4", "NPROD=1", "PUTS=3", "NO_TIMEOUT", "DEATHS=0",
                                       "NO_CLOSE", "MUTANT_PLAIN_DISARM"],
          what="invalid end state")


def test_eventcount_death_no_livelock(tmp_path):
    ok(tmp_path, "eventcount.pml", ["STALL_TIMEOUT", "NPROD=2", "PUTS=1"],
       cflags=["-DNP"], panflags=["-l"])


# ---------------------------------------------------------------- ring

def test_ring_no_lost_wakeup(tmp_path):
    # 2 producers of records of different sizes, 1 consumer, 4-cell ring
    ok(tmp_path, "ring.pml", ["NO_TIMEOUT", "DEATHS=0", "NPROD=2", "PUTS=1"])


# ---------------------------------------------------------------- exhaustive
#
# The big configurations: about 35 minutes of one CPU and up to 10 GB, for
# the models' text alone (not the C, not the Python, not the build).  They
# are opt-in (``pytest -m exhaustive``), out of CI, and tied to the models by
# a record: ``INTERLOCK_RECORD_MODELS=1 pytest -m exhaustive`` writes each
# passing run's fingerprint (the model, common.pml and the exact spin, gcc
# and pan command lines) with its state count to models/exhaustive.json, and
# the default suite's test_exhaustive_record_matches_the_models fails once a
# model or a configuration changes after its last exhaustive run.

EXHAUSTIVE = {
    # id: (model, defines, cflags, panflags)
    # Three once in the default suite (1-3 min of CPU each; 4.5 min of a
    # 21-min default run on a slow day): their record keeps them tied to
    # the models all the same.
    # A waiter never takes the lock from a living owner, over two tenures.
    "mutex-2rounds-no-steal-from-living": ("mutex.pml", ["ROUNDS=2", "DEATHS=0"], ["-DSAFETY"], []),
    # a death at any step; the close wakes everybody: no sleeper is left
    # even without timeouts, and every item is taken if a consumer survives
    "eventcount-close-death-no-timeout": ("eventcount.pml", ["NO_TIMEOUT"], ["-DSAFETY"], []),
    "eventcount-close-death": ("eventcount.pml", [], ["-DSAFETY"], []),
    # one of the 3 may die at any step: whole records only, exactly once in
    # commit order, all committed taken at the end, every survivor finishes
    "ring-2x1-death": ("ring.pml", ["NPROD=2", "PUTS=1"], ["-DSAFETY"], []),
    "mutex-2rounds-death-hc4": ("mutex.pml", ["ROUNDS=2"], ["-DSAFETY", "-DHC4"], []),
    "mutex-4procs-no-lost-wakeup": (
        "mutex.pml", ["NPROC=4", "ROUNDS=1", "NO_TIMEOUT", "DEATHS=0"], ["-DSAFETY"], []),
    # two rounds beside an asyncio waiter; a death at any step (safety);
    # liveness with a death
    "mutex-watcher-2rounds": (
        "mutex.pml", ["ROUNDS=2", "NO_TIMEOUT", "DEATHS=0", "WATCHER"], ["-DSAFETY"], []),
    "mutex-watcher-death": ("mutex.pml", ["ROUNDS=1", "WATCHER"], ["-DSAFETY"], []),
    "mutex-watcher-death-no-livelock": (
        "mutex.pml", ["ROUNDS=1", "STALL_TIMEOUT", "WATCHER"], ["-DNP"], ["-l"]),
    "eventcount-4procs-1producer": (
        "eventcount.pml", ["NPROC=4", "NPROD=1", "PUTS=3", "NO_TIMEOUT", "DEATHS=0", "NO_CLOSE"],
        ["-DSAFETY"], []),
    # one put each and hash-compact since the armed eventcount: with two
    # puts each its run grew past 19 GB in 12 minutes, hash-compact too
    # (193,477,650 exact states before); this one: 133 M states, 3 minutes
    "eventcount-4procs-2producers-1put-death-hc4": (
        "eventcount.pml", ["NPROC=4", "NPROD=2", "PUTS=1"], ["-DSAFETY", "-DHC4"], []),
    "ring-2x2-no-lost-wakeup-hc4": (
        "ring.pml", ["NPROD=2", "PUTS=2", "NO_TIMEOUT", "DEATHS=0"], ["-DSAFETY", "-DHC4"], []),
    "ring-1x2-death-hc4": ("ring.pml", ["NPROD=1", "PUTS=2"], ["-DSAFETY", "-DHC4"], []),
    "ring-1x2-death-stall-timeout-hc4": (
        "ring.pml", ["NPROD=1", "PUTS=2", "STALL_TIMEOUT"], ["-DSAFETY", "-DHC4"], []),
}
RECORD = MODELS / "exhaustive.json"


def fingerprint(model, defines, cflags, panflags, models=MODELS):
    """sha256 of what an exhaustive run checks: the model's text, common.pml's
    and the three command lines verify() runs."""
    h = hashlib.sha256()
    for name in (model, "common.pml"):
        h.update((models / name).read_bytes())
    h.update(json.dumps(commands(model, defines, cflags, panflags)).encode())
    return h.hexdigest()


def _read_record():
    return json.loads(RECORD.read_text()) if RECORD.exists() else {"runs": {}}


@pytest.mark.exhaustive
@pytest.mark.timeout(4000)
@pytest.mark.parametrize("name", sorted(EXHAUSTIVE))
def test_exhaustive(tmp_path, name):
    model, defines, cflags, panflags = EXHAUSTIVE[name]
    t0 = time.monotonic()
    states = ok(tmp_path, model, defines, cflags=cflags, panflags=panflags, timeout=3600)
    seconds = time.monotonic() - t0
    if os.environ.get("INTERLOCK_RECORD_MODELS") == "1":
        spin = subprocess.run(["spin", "-V"], capture_output=True, text=True).stdout.strip()
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=MODELS, capture_output=True,
                                text=True).stdout.strip()
        record = _read_record()
        record["about"] = ("Last passing exhaustive run of each configuration in "
                           "tests/test_models.py's EXHAUSTIVE; written by "
                           "INTERLOCK_RECORD_MODELS=1 pytest -m exhaustive tests/test_models.py")
        record["runs"][name] = {
            "fingerprint": fingerprint(model, defines, cflags, panflags),
            "errors": 0, "states": states, "seconds": round(seconds, 1),
            "date": time.strftime("%Y-%m-%d", time.gmtime()), "commit": commit, "spin": spin,
        }
        record["runs"] = dict(sorted(record["runs"].items()))
        RECORD.write_text(json.dumps(record, indent=1) + "\n")


def stale_runs(runs, models=MODELS):
    """The EXHAUSTIVE configurations whose record is missing or no longer
    matches the models in ``models``."""
    stale = []
    for name, (model, defines, cflags, panflags) in sorted(EXHAUSTIVE.items()):
        rec = runs.get(name)
        if rec is None or rec["fingerprint"] != fingerprint(model, defines, cflags, panflags,
                                                            models):
            stale.append(name)
        else:
            assert rec["errors"] == 0 and rec["states"] > 1000, (name, rec)
    return stale


def test_exhaustive_record_matches_the_models():
    """Every exhaustive configuration has passed on the models as they are
    now (models/exhaustive.json), and the record names no other run."""
    runs = _read_record()["runs"]
    stale = stale_runs(runs)
    assert not stale, (
        f"{stale}: the model, common.pml or the configuration changed since the last "
        "exhaustive run; run INTERLOCK_RECORD_MODELS=1 pytest -m exhaustive "
        "tests/test_models.py and commit models/exhaustive.json")
    assert set(runs) <= set(EXHAUSTIVE), set(runs) - set(EXHAUSTIVE)


def test_exhaustive_record_goes_stale_when_a_model_changes(tmp_path):
    # the record check can fail: one byte more in ring.pml makes the ring
    # runs stale, in common.pml every run
    runs = {name: {"fingerprint": fingerprint(*cfg), "errors": 0, "states": 10**6}
            for name, cfg in EXHAUSTIVE.items()}
    models = tmp_path / "models"
    shutil.copytree(MODELS, models)
    assert stale_runs(runs, models) == []
    with open(models / "ring.pml", "a") as f:
        f.write("\n")
    assert stale_runs(runs, models) == sorted(n for n in EXHAUSTIVE if n.startswith("ring-"))
    with open(models / "common.pml", "a") as f:
        f.write("\n")
    assert stale_runs(runs, models) == sorted(EXHAUSTIVE)
    # and so does a changed configuration
    del runs["mutex-watcher-death"]
    runs["mutex-watcher-death"] = {"fingerprint": fingerprint(
        "mutex.pml", ["ROUNDS=2", "WATCHER"], ["-DSAFETY"], []), "errors": 0, "states": 10**6}
    assert "mutex-watcher-death" in stale_runs(runs)
