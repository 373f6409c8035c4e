"""Demo ``fifo``: the lecture's FIFO consistency problems, then interlock's Queue.

A naive FIFO (a linked list in shared memory: head, tail, nodes with a
``next`` index) is pushed and popped by several processes at once, with no
lock.  Two pushers that read the same tail both link their node after it:
one node is lost (the lecture's example 1).  Two poppers that read the same
head both take the same node: an item comes out twice (example 2).  A push
and a pop at the two ends do not conflict, as long as the list is not empty
(example 3).  The same load on an :class:`interlock.Queue` delivers every
item exactly once.
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections import Counter
from typing import Any

from interlock import Queue

DESCRIPTION = "FIFO consistency: a naive shared linked list corrupted, interlock.Queue not"

EXPLAIN = """\
Producers push numbered items and consumers pop them, all at once, first on
a naive linked list in shared memory (no lock), then on an interlock.Queue.
Push reads the tail then links a node after it; pop reads the head then
moves it on. Between the read and the write another process can do the
same: two pushes link to the same node (one item is lost), two pops take
the same node (one item comes out twice).
"""

# Layout of the naive list in one shared array of int64:
HEAD, TAIL, DONE = 0, 1, 2  # DONE: producers finished
NODES = 3  # node i: value at NODES + 2*i, next at NODES + 2*i + 1; -1 is "none"


def _window(pause: float) -> None:
    if pause:
        time.sleep(pause)  # a process can be interrupted here: we make it likely


def naive_push(arr: Any, node: int, value: int, pause: float) -> None:
    arr[NODES + 2 * node] = value
    arr[NODES + 2 * node + 1] = -1
    tail = arr[TAIL]  # read...
    _window(pause)
    if tail == -1:
        arr[HEAD] = node
    else:
        arr[NODES + 2 * tail + 1] = node  # ...then write: another push may have linked here too
    arr[TAIL] = node


def naive_pop(arr: Any, pause: float) -> int | None:
    head = arr[HEAD]  # read...
    if head == -1:
        return None
    _window(pause)
    nxt = arr[NODES + 2 * head + 1]
    arr[HEAD] = nxt  # ...then write: another pop may have taken the same node
    if nxt == -1:
        arr[TAIL] = -1
    return int(arr[NODES + 2 * head])


def _naive_producer(arr: Any, first_node: int, items: range, pause: float) -> None:
    for k, value in enumerate(items):
        naive_push(arr, first_node + k, value, pause)


def _naive_consumer(arr: Any, out: Queue[Any], pause: float, idle: float) -> None:
    got = []
    quiet_since = None
    while True:
        v = naive_pop(arr, pause)
        if v is not None:
            got.append(v)
            quiet_since = None
            continue
        if arr[DONE]:
            now = time.monotonic()
            quiet_since = quiet_since or now
            if now - quiet_since > idle:
                break
        time.sleep(0.0005)
    out.put(got)


def _queue_producer(q: Queue[Any], items: range) -> None:
    for value in items:
        q.put(value)


def _queue_consumer(q: Queue[Any], out: Queue[Any]) -> None:
    out.put(list(q))  # until the queue is shut down and drained


def _report(name: str, pushed: int, popped: list[int]) -> tuple[int, int]:
    counts = Counter(popped)
    dups = sum(c - 1 for c in counts.values() if c > 1)
    lost = pushed - len(counts)
    print(f"--- {name}")
    print(f"    pushed {pushed}, popped {len(popped)} ({len(counts)} distinct)")
    print(f"    duplicates (same node popped twice): {dups}")
    print(f"    lost (pushed, never popped):         {lost}")
    print()
    return dups, lost


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="interlock demo fifo", description=EXPLAIN,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--producers", type=int, default=3, help="pushing processes (3)")
    ap.add_argument("--consumers", type=int, default=3, help="popping processes (3)")
    ap.add_argument("-n", "--items", type=int, default=300, help="items per producer (300)")
    ap.add_argument("--pause", type=float, default=0.0001,
                    help="seconds between read and write in the naive list (0.0001)")
    ap.add_argument("--start-method", default=None, choices=["fork", "spawn", "forkserver"])
    args = ap.parse_args(argv)
    if min(args.producers, args.consumers, args.items) < 1:
        ap.error("--producers, --consumers and --items must be >= 1")
    ctx = multiprocessing.get_context(args.start_method)
    total = args.producers * args.items
    print(EXPLAIN)

    # 1. The naive list.
    arr = ctx.RawArray("q", NODES + 2 * total)
    arr[HEAD] = arr[TAIL] = -1
    results = Queue()
    procs = [ctx.Process(target=_naive_producer,
                         args=(arr, i * args.items, range(i * args.items, (i + 1) * args.items),
                               args.pause)) for i in range(args.producers)]
    procs += [ctx.Process(target=_naive_consumer, args=(arr, results, args.pause, 0.2))
              for _ in range(args.consumers)]
    for p in procs:
        p.start()
    for p in procs[: args.producers]:
        p.join()
    arr[DONE] = 1
    popped = [v for _ in range(args.consumers) for v in results.get()]
    for p in procs:
        p.join()
    naive = _report(f"naive linked list, no lock: {args.producers} producers, "
                    f"{args.consumers} consumers", total, popped)
    if naive[1] > total // 2:
        print("    (once two pushes have linked after the same node, the tail points at a\n"
              "    node that head can no longer reach: every later push is lost with it)\n")

    # 2. interlock.Queue under the same load.
    q = Queue(64)
    procs = [ctx.Process(target=_queue_producer,
                         args=(q, range(i * args.items, (i + 1) * args.items)))
             for i in range(args.producers)]
    procs += [ctx.Process(target=_queue_consumer, args=(q, results))
              for _ in range(args.consumers)]
    for p in procs:
        p.start()
    for p in procs[: args.producers]:
        p.join()
    q.shutdown()  # consumers drain what is left, then stop
    popped = [v for _ in range(args.consumers) for v in results.get()]
    for p in procs:
        p.join()
    safe = _report("interlock.Queue, same load", total, popped)
    q.detach()
    results.detach()

    print(f"Result: naive list {naive[0]} duplicate(s), {naive[1]} lost; "
          f"interlock.Queue {safe[0]} duplicate(s), {safe[1]} lost.")
    return 0 if safe == (0, 0) else 1


if __name__ == "__main__":
    sys.exit(main())
