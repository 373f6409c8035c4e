"""Producer/consumer: waiters take orders, cooks cook them.

Two stages of an interlock pipeline, several processes each, a bounded order
queue between them (the counter): when the cooks fall behind, the waiters
wait.  Run: python examples/restaurant.py
"""
import os
import random
import time

from interlock.pipeline import Pipeline

MENU = {"pizza": 0.12, "pasta": 0.08, "salad": 0.03, "soup": 0.05, "steak": 0.15}


def take_order(n):
    time.sleep(0.01)
    return n, random.Random(n).choice(list(MENU)), os.getpid()


def cook(order):
    n, dish, waiter = order
    time.sleep(MENU[dish])
    return n, dish, waiter, os.getpid()


if __name__ == "__main__":
    kitchen = (Pipeline(range(30), ordered=False)
               .stage(take_order, workers=2, name="waiters")
               .stage(cook, workers=3, name="cooks", maxsize=6))
    with kitchen:
        for n, dish, waiter, cook_pid in kitchen:
            cooks = next(s for s in kitchen.stats() if s.name == "cooks")
            print(f"order #{n:<2} {dish:<6} taken by {waiter}, cooked by {cook_pid}; "
                  f"orders waiting: {cooks.queue_depth}/{cooks.queue_maxsize}")
