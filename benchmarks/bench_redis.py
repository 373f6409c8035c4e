"""Redis backend: queue throughput and lock hand-off, next to raw redis-py.

    python benchmarks/bench_redis.py              # starts its own redis-server
    python benchmarks/bench_redis.py --url redis://host:6379/0
    options: [--quick] [--repeat N] [--json PATH]

Queue: one producer process and one consumer process move N messages of
64 bytes; the time is from the producer's start (once its interpreter is up:
its connection to the server is timed) to the consumer's last message.
"interlock" is ``interlock.connect(url).Queue``: put/get, and
put_many/get_many in batches; "list" is LPUSH/BRPOP on a plain list, and
LPUSH of a batch / BLMPOP COUNT for the batched row: the floor a
queue on Redis can reach, without at-least-once delivery, bounds or close;
"stream" is XADD / XREADGROUP BLOCK with XACK+XDEL pipelined into the next
read (batched: a pipeline of XADDs, XREADGROUP COUNT): a stream queue with
acknowledgement, but no bound, close or re-delivery.  Each cell is the
median [min-max] of ``--repeat`` interleaved runs.  The baselines go
through redis-py as the ``test`` extra installs it (its pure-Python
parser: hiredis is not installed); interlock's objects use their own wire
(docs/design/redis.md, "The wire").  With hiredis the baselines' client
CPU would be lower: not measured here.

Lock hand-off: the holder releases at t0 while another process waits in
``acquire()``; the waiter has the lock at t1; t1 - t0 is the hand-off
(CLOCK_MONOTONIC is shared by the processes of one machine).  redis-py's
``Lock`` polls, sleeping 0.1 s between tries by default.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Report, report_args  # noqa: E402

import redis as redis_py  # noqa: E402

from interlock._connect import connect  # noqa: E402

MSG = b"x" * 64
SPAWN = mp.get_context("spawn")


# ------------------------------------------------------------------ queue

def il_producer(url, name, n, batch):
    q = connect(url).Queue(name=name, create=False)
    if batch == 1:
        for _ in range(n):
            q.put(MSG)
    else:
        chunk = [MSG] * batch
        for _ in range(n // batch):
            q.put_many(chunk)


def il_consumer(url, name, n, batch, done):
    q = connect(url).Queue(name=name, create=False)
    got = 0
    while got < n:
        if batch == 1:
            q.get()
            got += 1
        else:
            got += len(q.get_many(batch))
    q.detach()
    done.value = time.monotonic()


def raw_producer(url, key, n, batch):
    c = redis_py.Redis.from_url(url)
    if batch == 1:
        for _ in range(n):
            c.lpush(key, MSG)
    else:
        chunk = [MSG] * batch
        for _ in range(n // batch):
            c.lpush(key, *chunk)


def raw_consumer(url, key, n, batch, done):
    c = redis_py.Redis.from_url(url)
    got = 0
    while got < n:
        if batch == 1:
            c.brpop([key])
            got += 1
        else:
            _, items = c.blmpop(0, 1, key, direction="RIGHT", count=batch)
            got += len(items)
    done.value = time.monotonic()


def stream_producer(url, key, n, batch):
    c = redis_py.Redis.from_url(url)
    if batch == 1:
        for _ in range(n):
            c.xadd(key, {"r": MSG})
    else:
        for _ in range(n // batch):
            p = c.pipeline(transaction=False)
            for _ in range(batch):
                p.xadd(key, {"r": MSG})
            p.execute()


def stream_consumer(url, key, n, batch, done):
    """XREADGROUP (COUNT batch) BLOCK, and XACK+XDEL of what it read, in one
    pipeline with the next read: a stream queue with acknowledgement."""
    c = redis_py.Redis.from_url(url)
    got, ack = 0, []
    while got < n:
        p = c.pipeline(transaction=False)
        if ack:
            p.xack(key, "g", *ack)
            p.xdel(key, *ack)
        p.xreadgroup("g", "c1", {key: ">"}, count=batch, block=0)
        r = p.execute()[-1]
        ack = [i for i, _ in r[0][1]] if r else []
        got += len(ack)
    done.value = time.monotonic()


def make_stream(url):
    def make(name):
        redis_py.Redis.from_url(url).xgroup_create(name, "g", "$", mkstream=True)
    return make


def _timed(producer, start, *args):
    """Run ``producer(*args)`` after noting the time: the interpreter's start
    is not timed, the producer's connection to the server is."""
    start.value = time.monotonic()
    producer(*args)


def run_pair(url, producer, consumer, n, batch, make):
    name = f"bench-{uuid.uuid4().hex[:8]}"
    make(name)
    done = SPAWN.Value("d", 0.0)
    start = SPAWN.Value("d", 0.0)
    c = SPAWN.Process(target=consumer, args=(url, name, n, batch, done))
    p = SPAWN.Process(target=_timed, args=(producer, start, url, name, n, batch))
    c.start()
    time.sleep(1.0)  # the consumer is up and waiting
    p.start()
    p.join()
    c.join()
    return n / (done.value - start.value)


# ------------------------------------------------------------------ lock

def waiter(url, name, kind, rounds, go, out):
    if kind == "interlock":
        lock = connect(url).Lock(name=name, create=False, on_owner_death="ignore")
    else:
        lock = redis_py.Redis.from_url(url).lock(name, timeout=10)
    for _ in range(rounds):
        go.recv()
        lock.acquire()
        t1 = time.monotonic()
        lock.release()
        out.send(t1)


def handoff(url, kind, rounds):
    name = f"bench-lock-{uuid.uuid4().hex[:8]}"
    if kind == "interlock":
        lock = connect(url).Lock(name=name, on_owner_death="ignore")
    else:
        lock = redis_py.Redis.from_url(url).lock(name, timeout=10)
    go_r, go_w = SPAWN.Pipe(duplex=False)
    out_r, out_w = SPAWN.Pipe(duplex=False)
    p = SPAWN.Process(target=waiter, args=(url, name, kind, rounds, go_r, out_w))
    p.start()
    lat = []
    for _ in range(rounds):
        lock.acquire()
        go_w.send(1)
        time.sleep(0.02)  # the waiter is now blocked in acquire()
        t0 = time.monotonic()
        lock.release()
        lat.append(out_r.recv() - t0)
    p.join()
    return lat


def main() -> None:
    ap = report_args(__doc__.split("\n")[0], "a quarter of the messages, 10 hand-offs")
    ap.add_argument("--url")
    ap.add_argument("-n", type=int, default=20000, help="messages per queue run")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=40, help="lock hand-offs per repeat")
    a = ap.parse_args()
    if a.quick:
        a.n, a.rounds = a.n // 4, min(a.rounds, 10)
    srv = None
    url = a.url
    if url is None:
        from redis_server import RedisServer
        srv = RedisServer()
        url = srv.url
    report = Report("bench_redis", a, {"url_given": a.url is not None})
    try:
        raw = redis_py.Redis.from_url(url)
        report.params["redis_version"] = raw.info("server")["redis_version"]
        b = connect(url)
        for label, batch in (("single", 1), (f"batch {a.batch}", a.batch)):
            case = f"queue 64 B, {label}"
            for _ in range(a.repeat):  # interleaved, so that drift hits all three
                report.add(case, "interlock", "msg/s",
                           run_pair(url, il_producer, il_consumer, a.n, batch,
                                    lambda name: b.Queue(name=name)))
                report.add(case, "list (LPUSH/BRPOP)", "msg/s",
                           run_pair(url, raw_producer, raw_consumer, a.n, batch, lambda name: None))
                report.add(case, "stream (XADD/XREADGROUP)", "msg/s",
                           run_pair(url, stream_producer, stream_consumer, a.n, batch,
                                    make_stream(url)))
            report.ratio_vs(case, "interlock", ["list (LPUSH/BRPOP)", "stream (XADD/XREADGROUP)"])
        case = "lock hand-off, median of the rounds"
        for _ in range(a.repeat):
            for k in ("interlock", "redis-py"):
                lat = handoff(url, k, a.rounds)
                report.add(case, k if k == "interlock" else "redis-py Lock", "ms",
                           statistics.median(lat) * 1000, p90_ms=sorted(lat)[int(0.9 * (len(lat) - 1))] * 1000)
        report.ratio_vs(case, "interlock", ["redis-py Lock"])
    finally:
        if srv is not None:
            srv.stop()
    report.print()
    report.write(a.json)


if __name__ == "__main__":
    main()
