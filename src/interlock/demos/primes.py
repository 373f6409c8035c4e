"""The lecture's producer/consumer example, on an interlock Queue.

    "A finds primes in a list of numbers, B formats and prints them every
    10 numbers found."

``python -m interlock demo primes --producers 2`` runs::

    finder 1: [start, mid) --put(p)--+
                                      +--> Queue "primes-<pid>" --get()--> printer --> stdout
    finder 2: [mid, stop)  --put(p)--+        (maxsize items)                |
                                                                             | (count, sum)
    main: starts them all, waits for the finders, shuts the queue down,      v
          reads the printer's tally from a second queue ("primes-<pid>-tally"),
          checks it against a sieve of Eratosthenes, detaches: the last
          handle gone, both segments leave /dev/shm.

What it shows:

- a Queue shared by passing it to ``Process(args=...)``: it pickles by name,
  under fork, spawn and forkserver alike;
- back-pressure: with a small ``--maxsize`` the finders block in ``put()``
  while the printer catches up;
- ``shutdown()`` as the end-of-stream signal: no sentinel per producer; the
  printer's ``for prime in queue`` ends once the queue is shut down *and*
  drained, so nothing put before the shutdown is lost;
- segment lifetime: the demo checks that its segments are gone at the end.

With several finders the primes arrive interleaved (each finder's own primes
stay in order: the queue is FIFO); the printer prints them as they come.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import multiprocessing.connection
import os
import sys
import time
from typing import Any, TextIO

from .. import Empty, Queue, ShutDown
from .._segment import path_of

DEFAULT_START = 2
DEFAULT_STOP = 100_000
MAX_STOP = 100_000_000  # the verifying sieve takes `stop` bytes of memory


# ------------------------------------------------------------------ numbers
def is_prime(n: int) -> bool:
    """Trial division: slow on purpose, it is the finders' work."""
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    for d in range(3, math.isqrt(n) + 1, 2):
        if n % d == 0:
            return False
    return True


def sieve(start: int, stop: int) -> list[int]:
    """The primes in [start, stop), by Eratosthenes: the reference answer."""
    if stop <= 2:
        return []
    composite = bytearray(stop)
    composite[0:2] = b"\x01\x01"
    for p in range(2, math.isqrt(stop - 1) + 1):
        if not composite[p]:
            composite[p * p :: p] = b"\x01" * len(range(p * p, stop, p))
    return [n for n in range(max(start, 2), stop) if not composite[n]]


def split(start: int, stop: int, parts: int) -> list[tuple[int, int]]:
    """[start, stop) cut into `parts` contiguous ranges of (almost) equal length."""
    n = stop - start
    bounds = [start + n * i // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts)]


# ---------------------------------------------------------------- processes
# Module-level functions: under spawn and forkserver the children import this
# module and look them up by name.

def _finder(queue: Queue[Any], lo: int, hi: int) -> None:
    """Process A: put every prime of [lo, hi) into the queue."""
    try:
        for n in range(lo, hi):
            if is_prime(n):
                queue.put(n)  # blocks while the queue holds maxsize items
    except ShutDown:
        pass  # the printer is gone and the queue was shut down: stop quietly
    except KeyboardInterrupt:
        pass


def _printer(queue: Queue[Any], tally: Queue[Any], batch: int) -> None:
    """Process B: print the primes `batch` at a time; report what it saw."""
    count = total = 0
    pending: list[int] = []
    first = last = 0.0
    out = sys.stdout

    def emit() -> None:
        # One write per line, flushed: main's own lines never cut into ours.
        noun = "prime" if len(pending) == 1 else "primes"
        out.write(f"{len(pending)} {noun}: {' '.join(map(str, pending))}\n")
        out.flush()
        pending.clear()

    try:
        for prime in queue:  # ends when the queue is shut down and drained
            if count == 0:
                first = time.perf_counter()
            count += 1
            total += prime
            pending.append(prime)
            if len(pending) == batch:
                emit()
        last = time.perf_counter()
        if pending:
            emit()
    except KeyboardInterrupt:
        return
    except BrokenPipeError:
        # stdout was closed (`... | head`): stop the finders and leave.
        queue.shutdown(immediate=True)
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())  # no error at exit
        return
    tally.put((count, total, last - first if count else 0.0))


# --------------------------------------------------------------------- main
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start", type=int, default=DEFAULT_START,
                        help=f"first number to test (default {DEFAULT_START})")
    parser.add_argument("--stop", type=int, default=DEFAULT_STOP,
                        help=f"end of the range, excluded (default {DEFAULT_STOP})")
    parser.add_argument("--producers", type=int, default=2, metavar="N",
                        help="finder processes; the range is split among them (default 2)")
    parser.add_argument("--batch", type=int, default=10, metavar="N",
                        help="the printer prints every N primes (default 10)")
    parser.add_argument("--maxsize", type=int, default=256, metavar="N",
                        help="queue bound in items; finders block when it is full "
                             "(default 256, 0 = only the byte capacity bounds it)")
    parser.add_argument("--start-method", choices=multiprocessing.get_all_start_methods(),
                        default=None,
                        help="multiprocessing start method (default: the platform's)")


def _check(args: argparse.Namespace) -> str | None:
    if not 0 <= args.start < args.stop:
        return "need 0 <= --start < --stop"
    if args.stop > MAX_STOP:
        return f"--stop is at most {MAX_STOP} (the verifying sieve needs stop bytes)"
    if args.producers < 1:
        return "--producers must be >= 1"
    if args.batch < 1:
        return "--batch must be >= 1"
    if not 0 <= args.maxsize < 2**31:
        return "--maxsize must be in [0, 2**31)"
    return None


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the demo; return the exit status (0: every prime arrived, once)."""
    out = out or sys.stdout
    problem = _check(args)
    if problem:
        print(f"interlock demo primes: error: {problem}", file=sys.stderr)
        return 2

    def say(msg: str) -> None:
        out.write(f"[main] {msg}\n")
        out.flush()  # also: a forked child must not inherit unwritten output

    ctx = multiprocessing.get_context(args.start_method)
    name = f"primes-{os.getpid()}"
    queue = Queue(args.maxsize, name=name, create=True)
    tally = Queue(1, name=f"{name}-tally", create=True)
    paths = [path_of(queue.name), path_of(tally.name)]
    say(f"queue {queue.name!r} in {paths[0]} (maxsize={args.maxsize or 'none'}, "
        f"capacity={queue.capacity} bytes), start method {ctx.get_start_method()}")

    ranges = split(args.start, args.stop, args.producers)
    printer = ctx.Process(target=_printer, args=(queue, tally, args.batch), name="printer")
    finders = [ctx.Process(target=_finder, args=(queue, lo, hi), name=f"finder-{i}")
               for i, (lo, hi) in enumerate(ranges, 1)]
    result: Any = None
    failures: list[str] = []
    t0 = time.perf_counter()
    try:
        printer.start()
        for f in finders:
            f.start()
        say(f"started printer (pid {printer.pid}) and {len(finders)} finder(s): "
            + ", ".join(f"pid {f.pid} [{lo}, {hi})" for f, (lo, hi) in zip(finders, ranges)))

        # Wait for the finders; if the printer dies first, nobody would
        # drain the queue and the finders would block forever in put().
        running = {f.sentinel: f for f in finders}
        while running:
            ready = multiprocessing.connection.wait([*running, printer.sentinel])
            for s in ready:
                if s == printer.sentinel:
                    if running:
                        failures.append(f"printer exited early (exit code {printer.exitcode})")
                        running.clear()
                    break
                f = running.pop(s)
                f.join()
                if f.exitcode != 0:
                    failures.append(f"{f.name} failed (exit code {f.exitcode})")

        # Every finder has returned: nothing more will be put. Shutting the
        # queue down tells the printer to stop once it has taken what is left.
        queue.shutdown()
        say("finders done; queue shut down")
        while result is None and not failures:
            try:
                result = tally.get(timeout=0.1)
            except Empty:  # is the printer still there?
                if not printer.is_alive():
                    failures.append(f"printer exited without a tally (exit code {printer.exitcode})")
        printer.join()
    except KeyboardInterrupt:
        failures.append("interrupted")
    finally:
        elapsed = time.perf_counter() - t0
        queue.shutdown()  # idempotent; releases finders blocked in put()
        for p in [printer, *finders]:
            if p.pid is not None:
                p.join(timeout=5)
                if p.is_alive():
                    p.terminate()
                    p.join()
        # The last handle detaching removes the segment (the children's
        # handles went with them; see docs/design/segment.md).
        queue.detach()
        tally.detach()
        left = [p for p in paths if os.path.exists(p)]

    if result is not None:
        count, total, busy = result
        rate = count / elapsed if elapsed > 0 else float("inf")
        say(f"{count} primes through the queue in {elapsed:.2f} s ({rate:,.0f} primes/s; "
            f"the printer was busy {busy:.2f} s; the finders' trial division sets the pace)")
        expected = sieve(args.start, args.stop)
        if count == len(expected) and total == sum(expected):
            say(f"verified: {count} primes in [{args.start}, {args.stop}), "
                "as many as a sieve of Eratosthenes finds, same sum")
        else:
            failures.append(f"printer saw {count} primes (sum {total}); the sieve finds "
                            f"{len(expected)} (sum {sum(expected)})")
    if left:
        failures.append(f"segments left behind: {', '.join(left)}")
    else:
        say(f"segments removed: {', '.join(paths)}")
    for msg in failures:
        print(f"interlock demo primes: error: {msg}", file=sys.stderr)
    return 130 if "interrupted" in failures else (1 if failures else 0)
