"""Race condition: processes print lines of 10 times the same character.

Without a lock the lines interleave; with interlock.Lock around each line
(the critical section) they come out whole.  Run: python examples/race.py
"""
import os
import sys
import time
from multiprocessing import Pool

from interlock import Lock

lock = None  # set in each worker by the Pool initializer


def init(shared_lock):
    global lock
    lock = shared_lock


def print_line(c):
    """Print 10 times ``c``, one character per write, as the lecture's repeat10Cap."""
    chars = chr(ord("A") + c) * 10
    if lock is not None:
        lock.acquire()
    for ch in chars:
        os.write(sys.stdout.fileno(), ch.encode())
        time.sleep(0.0005)
    os.write(sys.stdout.fileno(), b"\n")
    if lock is not None:
        lock.release()


if __name__ == "__main__":
    print("without a lock:", flush=True)
    with Pool(4) as pool:
        pool.map(print_line, range(8))
    print("with an interlock.Lock:", flush=True)
    with Pool(4, initializer=init, initargs=(Lock(),)) as pool:
        pool.map(print_line, range(8))
