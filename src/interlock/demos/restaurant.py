"""Demo ``restaurant``: waiters take orders, cooks cook them.

A two-stage :class:`interlock.pipeline.Pipeline`: the waiters (several
processes) take orders from tables, the cooks (several processes) cook them.
Between them, a bounded interlock queue of orders: when the cooks fall
behind it fills up, and the waiters wait (backpressure) instead of piling
up tickets.  The live view shows the order queue as it fills and drains.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from typing import Any

from interlock.pipeline import Pipeline

DESCRIPTION = "producer/consumer: waiters take orders, cooks cook them, live order queue"

EXPLAIN = """\
Waiters (processes) take orders and put them on a bounded interlock queue;
cooks (processes) take them off and cook. A is independent of B, B depends
on A: the lecture's producer/consumer. When the cooks fall behind, the
queue fills and the waiters wait for room (backpressure).
"""

MENU = {  # dish: seconds to cook (scaled by --speed)
    "pizza": 0.12, "pasta": 0.08, "salad": 0.03, "soup": 0.05,
    "steak": 0.15, "burger": 0.09, "curry": 0.10, "omelette": 0.04,
}


def take_order(n: int, tables: int = 12, speed: float = 1.0) -> dict[str, Any]:
    """A waiter takes order ``n`` at some table (it takes a moment)."""
    rnd = random.Random(n)
    time.sleep(0.01 * speed)
    return {"order": n, "table": rnd.randrange(1, tables + 1), "dish": rnd.choice(list(MENU)),
            "waiter": os.getpid(), "speed": speed}


def cook(order: dict[str, Any]) -> dict[str, Any]:
    """A cook cooks it."""
    time.sleep(MENU[order["dish"]] * order["speed"])
    return dict(order, cook=os.getpid())


def _bar(depth: int, size: int, width: int = 12) -> str:
    fill = min(width, round(width * depth / size)) if size else 0
    return "#" * fill + "." * (width - fill)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="interlock demo restaurant", description=EXPLAIN,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--orders", type=int, default=30, help="orders to serve (30)")
    ap.add_argument("-w", "--waiters", type=int, default=2, help="waiter processes (2)")
    ap.add_argument("-c", "--cooks", type=int, default=3, help="cook processes (3)")
    ap.add_argument("--counter", type=int, default=6,
                    help="order queue size: tickets that fit on the counter (6)")
    ap.add_argument("--speed", type=float, default=1.0,
                    help="time scale: 2 is twice as slow, 0.5 twice as fast (1)")
    ap.add_argument("--start-method", default=None, choices=["fork", "spawn", "forkserver"])
    args = ap.parse_args(argv)
    if min(args.orders, args.waiters, args.cooks, args.counter) < 1:
        ap.error("--orders, --waiters, --cooks and --counter must be >= 1")
    print(EXPLAIN)
    t0 = time.monotonic()
    p = (Pipeline(range(args.orders), ordered=False, mp_context=args.start_method,
                  progress=False)
         .stage(_TakeOrder(args.speed), args.waiters, name="waiters", maxsize=2 * args.waiters)
         .stage(cook, args.cooks, name="cooks", maxsize=args.counter))
    waiters: dict[int, int] = {}
    cooks: dict[int, int] = {}
    served = []
    peak = 0
    with p:
        for dish in p:
            st = {s.name: s for s in p.stats()}["cooks"]
            peak = max(peak, st.queue_depth)
            w = waiters.setdefault(dish["waiter"], len(waiters) + 1)
            c = cooks.setdefault(dish["cook"], len(cooks) + 1)
            served.append(dish["order"])
            print(f"[{time.monotonic() - t0:5.2f}s] served order #{dish['order']:<3} "
                  f"{dish['dish']:<8} table {dish['table']:<2} (waiter {w}, cook {c})  "
                  f"orders waiting [{_bar(st.queue_depth, st.queue_maxsize)}] "
                  f"{st.queue_depth}/{st.queue_maxsize}", flush=True)
    elapsed = time.monotonic() - t0
    ok = sorted(served) == list(range(args.orders))
    print()
    print(f"Result: {len(served)} orders served in {elapsed:.2f} s by {len(waiters)} waiter(s) "
          f"and {len(cooks)} cook(s); the order queue peaked at {peak}/{args.counter}; "
          f"{'every order served once' if ok else 'ORDERS MISSING OR DUPLICATED'}.")
    return 0 if ok else 1


class _TakeOrder:
    """``take_order`` with the demo's options bound (picklable for spawn)."""

    __name__ = "waiters"

    def __init__(self, speed: float) -> None:
        self.speed = speed

    def __call__(self, n: int) -> dict[str, Any]:
        return take_order(n, speed=self.speed)


if __name__ == "__main__":
    sys.exit(main())
