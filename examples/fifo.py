"""FIFO consistency: concurrent push/pop on a naive shared linked list
corrupts it; interlock.Queue under the same load does not.

The naive list lives in a shared array: head, tail, and nodes (value, next).
push reads the tail, then links after it; pop reads the head, then moves it.
Run: python examples/fifo.py
"""
import multiprocessing as mp
import time
from collections import Counter

from interlock import Queue

N, PRODUCERS, CONSUMERS = 300, 3, 3
HEAD, TAIL, DONE, NODES = 0, 1, 2, 3


def push(arr, node, value):
    arr[NODES + 2 * node], arr[NODES + 2 * node + 1] = value, -1
    tail = arr[TAIL]
    time.sleep(0.0001)  # the other processes run here
    if tail == -1:
        arr[HEAD] = node
    else:
        arr[NODES + 2 * tail + 1] = node
    arr[TAIL] = node


def pop(arr):
    head = arr[HEAD]
    if head == -1:
        return None
    time.sleep(0.0001)
    arr[HEAD] = arr[NODES + 2 * head + 1]
    if arr[HEAD] == -1:
        arr[TAIL] = -1
    return arr[NODES + 2 * head]


def naive_producer(arr, p):
    for k in range(N):
        push(arr, p * N + k, p * N + k)


def naive_consumer(arr, out):
    got, idle = [], 0
    while idle < 200:
        v = pop(arr)
        if v is not None:
            got.append(v)
            idle = 0
        elif arr[DONE]:
            idle += 1
            time.sleep(0.001)
    out.put(got)


def queue_producer(q, p):
    for k in range(N):
        q.put(p * N + k)


def queue_consumer(q, out):
    out.put(list(q))  # until closed and drained


def run(producer, consumer, shared, done):
    out = Queue()
    procs = [mp.Process(target=producer, args=(shared, p)) for p in range(PRODUCERS)]
    procs += [mp.Process(target=consumer, args=(shared, out)) for _ in range(CONSUMERS)]
    for p in procs:
        p.start()
    for p in procs[:PRODUCERS]:
        p.join()
    done()
    popped = Counter(v for _ in range(CONSUMERS) for v in out.get())
    for p in procs:
        p.join()
    dups = sum(c - 1 for c in popped.values())
    return dups, PRODUCERS * N - len(popped)


if __name__ == "__main__":
    arr = mp.RawArray("q", NODES + 2 * PRODUCERS * N)
    arr[HEAD] = arr[TAIL] = -1
    dups, lost = run(naive_producer, naive_consumer, arr, lambda: arr.__setitem__(DONE, 1))
    print(f"naive linked list: {dups} duplicates, {lost} lost")
    q = Queue(64)
    dups, lost = run(queue_producer, queue_consumer, q, q.close)
    print(f"interlock.Queue:   {dups} duplicates, {lost} lost")
