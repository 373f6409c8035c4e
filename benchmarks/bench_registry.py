"""Does the registry cost the fast path anything?

The registry writes nothing on put/get/acquire/release (docs/design/registry.md):
its facts are the objects' own words, read by whoever lists them.  What a
reader can cost the fast path: the cache lines it reads (a ring's head and
tail, a mutex word) move to its CPU and back, and it takes CPU time that the
workload might have had.  This script separates the two, in one run, with
three conditions per workload:

- ``idle``: no poller running;
- ``reader``: a process doing what ``interlock top`` does for each object
  (list the directory, read the object's header, slots, ring or mutex
  words) on the three objects the workloads use, every 10 ms (100 times
  faster than top's default refresh);
- ``control``: the same process reading three other objects of the same
  kinds, which the workloads do not touch: the same CPU and system work,
  without touching the workloads' cache lines.

``reader / control`` is then the cost of the registry itself on the fast path
(1.00: none); ``reader / idle`` adds the CPU the poller takes from a busy
machine, which any monitoring process would take.

The pollers run throughout and are paused with SIGSTOP when not wanted, so
that every condition sees the same processes and memory; short measurements
rotate through the conditions so that the machine's drift hits all alike.
The table shows medians; ratios are medians of per-rotation ratios.

    python benchmarks/bench_registry.py [--repeat 5] [--seconds 0.25] [--quick] [--json PATH]

(``--repeat``: rotations per workload; each cell is the median [min-max] of
the rotations, each ratio is computed per rotation.)
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Report, report_args  # noqa: E402

import interlock  # noqa: E402

# A poller: every `interval` it lists the directory and reads each of the
# objects named on its command line, as `interlock top` does for every object.
# Reports the CPU time a poll takes.
POLLER = r"""
import json, os, sys, time, threading
from interlock import _registry, _segment
interval, names = float(sys.argv[1]), sys.argv[2:]
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
polls, busy = 0, 0.0
while not stop.is_set():
    c0 = time.process_time()
    os.listdir(_segment.SHM_DIR)
    for n in names:
        _registry.inspect(n)
    busy += time.process_time() - c0
    polls += 1
    time.sleep(interval)
print(json.dumps({"polls": polls, "mean_cpu_us": 1e6 * busy / max(polls, 1),
                  "objects": len(names)}))
"""

PAYLOAD = b"x" * 64
CONDITIONS = ("idle", "reader", "control")


def timed(fn: Callable[[], int], seconds: float) -> float:
    """ops/s of fn (which returns how many ops it did), run for ~seconds."""
    ops = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        ops += fn()
        now = time.perf_counter()
        if now >= deadline:
            return ops / (now - t0)


def queue_same_process(q: interlock.Queue) -> Callable[[], int]:
    put, get = q.put, q.get

    def batch() -> int:
        for _ in range(1000):
            put(PAYLOAD)
            get()
        return 2000  # a put and a get each

    return batch


def lock_same_process(lock: interlock.Lock) -> Callable[[], int]:
    acquire, release = lock.acquire, lock.release

    def batch() -> int:
        for _ in range(1000):
            acquire()
            release()
        return 1000

    return batch


def _producer(q: interlock.Queue, n: int) -> None:
    for _ in range(n):
        q.put(PAYLOAD)


def queue_two_processes(q: interlock.Queue, seconds: float) -> float:
    """Messages per second from a producer process to this one."""
    n = 20_000
    total, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        p = mp.get_context("fork").Process(target=_producer, args=(q, n))
        p.start()
        for _ in range(n):
            q.get()
        p.join()
        total += n
    return total / (time.perf_counter() - t0)


def start_poller(interval: float, names: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", POLLER, str(interval), *names],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def stop_poller(p: subprocess.Popen[str]) -> dict[str, float]:
    p.send_signal(signal.SIGCONT)
    out, _ = p.communicate("", timeout=30)
    return dict(json.loads(out))


def main() -> None:
    ap = report_args(__doc__.split("\n\n")[0], "0.1 s per measurement")
    ap.add_argument("--seconds", type=float, default=0.25, help="per measurement")
    ap.add_argument("--interval", type=float, default=0.01, help="poll interval (s)")
    args = ap.parse_args()
    if args.quick:
        args.seconds = min(args.seconds, 0.1)
    args.rounds = args.repeat

    pid = os.getpid()
    names = [f"bench-registry-{pid}-{s}" for s in ("q", "q2", "l")]
    q = interlock.Queue(name=names[0], capacity=1 << 20)
    q2 = interlock.Queue(name=names[1], capacity=1 << 20)
    lock = interlock.Lock(name=names[2])
    # The control's objects: the same kinds and sizes, untouched by the workloads.
    dummies = [interlock.Queue(name=f"{names[0]}-dummy", capacity=1 << 20),
               interlock.Queue(name=f"{names[1]}-dummy", capacity=1 << 20),
               interlock.Lock(name=f"{names[2]}-dummy")]
    workloads: dict[str, Callable[[float], float]] = {
        "Queue put+get, 64 B, one process": lambda s: timed(queue_same_process(q), s),
        "Queue 64 B, producer -> consumer process": lambda s: queue_two_processes(q2, s),
        "Lock acquire+release, one process": lambda s: timed(lock_same_process(lock), s),
    }
    results = {w: {c: [] for c in CONDITIONS} for w in workloads}  # type: dict[str, dict[str, list[float]]]
    pollers = {"reader": start_poller(args.interval, names),
               "control": start_poller(args.interval, [d.name for d in dummies])}
    time.sleep(0.5)  # let them import and start
    try:
        for fn in workloads.values():  # warm up
            fn(0.1)
        for w, fn in workloads.items():
            for r in range(args.rounds):
                order = CONDITIONS[r % 3:] + CONDITIONS[:r % 3]
                for cond in order:
                    for m, p in pollers.items():
                        p.send_signal(signal.SIGCONT if m == cond else signal.SIGSTOP)
                    time.sleep(0.02)
                    results[w][cond].append(fn(args.seconds))
        stats = {m: stop_poller(p) for m, p in pollers.items()}
    finally:
        for p in pollers.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait()
        for obj in (q, q2, lock, *dummies):
            obj.detach()

    report = Report("bench_registry", args)
    for w, res in results.items():
        for cond in CONDITIONS:
            for v in res[cond]:
                report.add(w, cond, "ops/s", v)
        report.ratio(w, (w, "reader"), (w, "control"))
        report.ratio(w, (w, "reader"), (w, "idle"))
    rd, ct = stats["reader"], stats["control"]
    report.params["pollers"] = {"reader": rd, "control": ct}
    report.print()
    print(f"reader: {rd['polls']:.0f} polls of {rd['objects']:.0f} objects, "
          f"{rd['mean_cpu_us']:.0f} us CPU each; control: {ct['polls']:.0f} polls of "
          f"{ct['objects']:.0f} objects, {ct['mean_cpu_us']:.0f} us CPU each")
    print("ratios per rotation; 1.00 = no difference")
    report.write(args.json)


if __name__ == "__main__":
    main()
