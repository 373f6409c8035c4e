"""Demo ``race``: a race condition on a shared output, and the lock that ends it.

Several processes each print lines of 10 times the same character ("AAAAAAAAAA",
"BBBBBBBBBB", ...), one character per write, into one shared output.  Without
a lock their writes interleave and lines come out broken ("AABABBAB...");
with an :class:`interlock.Lock` around each line (the critical section) every
line is whole.  The demo counts the broken lines of each run.
"""
from __future__ import annotations

import argparse
from typing import Any
import multiprocessing
import os
import sys
import tempfile
import time

from interlock import Barrier, Lock

DESCRIPTION = "race condition: processes printing 10-char lines, without then with a Lock"

EXPLAIN = """\
Several processes each write lines made of 10 times the same character,
one character per write(), to the same output. Printing a line is not one
step: without a lock, another process can write in the middle of it. With
an interlock.Lock around each line (a critical section), only one process
prints at a time, and every line is whole.
"""


def _printer(path: str, char: str, lines: int, lock: Lock | None, pause: float,
             start: Barrier) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        start.wait(60)  # all printers begin together (spawn starts them far apart)
        for _ in range(lines):
            if lock is not None:
                lock.acquire()
            try:
                for _ in range(10):
                    os.write(fd, char.encode())
                    time.sleep(pause)  # as if each character took a moment to print
                os.write(fd, b"\n")
            finally:
                if lock is not None:
                    lock.release()
    finally:
        os.close(fd)


def run_once(processes: int, lines: int, use_lock: bool, pause: float,
             ctx: Any) -> tuple[int, int, list[str]]:
    """Returns (lines, broken lines, a few sample lines)."""
    fd, path = tempfile.mkstemp(prefix="interlock-race-", suffix=".txt")
    os.close(fd)
    lock = Lock() if use_lock else None
    start = Barrier(processes)
    try:
        procs = [ctx.Process(target=_printer,
                             args=(path, chr(ord("A") + i % 26), lines, lock, pause, start))
                 for i in range(processes)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        with open(path) as f:
            out = f.read().splitlines()
    finally:
        os.unlink(path)
        start.detach()
        if lock is not None:
            lock.detach()
    broken = [line for line in out if not (len(line) == 10 and len(set(line)) == 1)]
    return len(out), len(broken), (broken or out)[:6]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="interlock demo race", description=EXPLAIN,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-p", "--processes", type=int, default=4, help="printing processes (4)")
    ap.add_argument("-n", "--lines", type=int, default=30, help="lines per process (30)")
    ap.add_argument("--pause", type=float, default=0.0002,
                    help="seconds between two characters of a line (0.0002)")
    ap.add_argument("--start-method", default=None, choices=["fork", "spawn", "forkserver"])
    args = ap.parse_args(argv)
    if args.processes < 1 or args.lines < 1:
        ap.error("--processes and --lines must be >= 1")
    ctx = multiprocessing.get_context(args.start_method)
    print(EXPLAIN)
    results = {}
    for use_lock in (False, True):
        title = "with an interlock.Lock" if use_lock else "without a lock"
        total, broken, sample = run_once(args.processes, args.lines, use_lock, args.pause, ctx)
        results[use_lock] = broken
        print(f"--- {title}: {args.processes} processes x {args.lines} lines")
        for line in sample:
            print(f"    {line}")
        print(f"    broken lines: {broken} of {total}")
        print()
    print(f"Result: {results[False]} broken line(s) without the lock, "
          f"{results[True]} with it.")
    return 0 if results[True] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
