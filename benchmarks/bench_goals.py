#!/usr/bin/env python3
"""The cases of issue 11 ("No cliffs"), each against its peers in one run.

    python benchmarks/bench_goals.py [--quick] [--repeat N] [--json PATH] [--only SUBSTR]

Where interlock was fast on one path and fell off a cliff next to it:

- start method: 64 B bytes 1P->1C, single put/get and put_many/get_many, and
  ping-pong p50/p99, under fork, spawn and forkserver (ratios spawn/fork and
  forkserver/fork of interlock's own numbers);
- a slower producer: the 64 B stream under fork with ``q.put(item)`` in the
  producer's loop (the method looked up on each call, as most code does),
  against the bound ``put`` of the rows above: the consumer catches up;
- one CPU: ping-pong with both processes pinned to one CPU;
- item size: put_many/get_many against single calls, per item, at 64 B,
  64 KiB and 1 MiB (numpy float64); at 64 KiB and 1 MiB the single puts
  cycle through the batch's distinct objects, so that both move the same
  data (one 1 MiB array put again and again is copied from cache); at
  1 MiB, "interlock, loan" makes each array on a loan (``Queue.loan``: the
  copy of the source into it is inside the clock, as iceoryx2's copy into
  its loaned sample is) and puts it without another copy;
- a 256 MiB numpy array, put in one process and got in another, against one
  memcpy of it (``np.copyto`` into memory already touched) and one copy into
  a fresh array (``ndarray.copy()``: its pages are faulted in during the
  copy, as a receiver's are): the first array of a fresh producer, and, as
  a stream, five arrays one after another from one producer (the median of
  those after the first; interlock reuses its pooled spill file); and
  "interlock, loan": the array made on a loan of the queue (``Queue.loan``:
  the source copied into it before the clock runs, that time in the row's
  ``make_s``), then put without a copy;
- scaling: P producers x C consumers of pickled tuples ``(i, 'abc', 1.5)``
  through one queue of maxsize 10,000, for 1x1, 2x2, 8x8 and 32x32 (each
  run at least 0.3 s, even with --quick).

Peers: ``multiprocessing.Queue`` (of the same start method) and faster-fifo
everywhere; iceoryx2 (publish-subscribe over shared memory, see
:class:`Iox2Channel`) in the 1 MiB numpy put/get case and the ping-pong cases,
twice: "iceoryx2" waits for a sample on an iceoryx2 event (Listener), and
"iceoryx2 busy-poll" polls ``receive()`` in a loop (it burns a CPU while it
waits: the mode of the 3.8 us iceoryx2 ping-pong p50 of an outside review).
A peer that is not installed, or cannot do a case, is a row marked missing.
Each (case, implementation) is calibrated once (and so warmed up), then run
``--repeat`` times, the implementations' repeats interleaved.  While two
processes run, the CPU each last ran on is sampled from /proc/<pid>/stat
(field 39) every ~5 ms: the JSON's ``placement`` says how often both sat on
the same CPU (the one-CPU mode of a two-CPU machine).
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from itertools import cycle, islice, repeat
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import BenchFailure, Report, percentile, report_args, run_workers  # noqa: E402

import interlock  # noqa: E402

try:
    import numpy as np
except ImportError:  # pragma: no cover
    np = None  # type: ignore[assignment]
try:
    import faster_fifo
except ImportError:  # pragma: no cover
    faster_fifo = None
try:
    import iceoryx2 as iox2  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover
    iox2 = None

TIMEOUT_S = 120.0
IMPLS = ("interlock", "mp.Queue", "faster-fifo")
# interlock with a default Queue() (no capacity=): items above 1 MiB go
# through spill files, pooled (docs/design/spill.md); measured beside the
# 4 MiB ring in the 1 MiB numpy cases
IL_DEFAULT = "interlock, default Queue()"
# ... and with each array made on a loan of that queue (Queue.loan, spill.md
# "Loans"): the producer copies the source into the loan (its one copy, as
# iceoryx2's into its loaned sample), and the put sends it without a copy
IL_LOAN = "interlock, loan"
IL_IMPLS = ("interlock", IL_DEFAULT, IL_LOAN)
# iceoryx2, waiting on an event / busy polling: only in the 1 MiB numpy
# put/get case and the ping-pong cases (Iox2Channel)
IOX2, IOX2_SPIN = "iceoryx2", "iceoryx2 busy-poll"
IOX2_IMPLS = (IOX2, IOX2_SPIN)
METHODS = [m for m in ("fork", "spawn", "forkserver") if m in mp.get_all_start_methods()]
BATCH = 128
MAXSIZE = 10_000
STREAM_ARRAYS = 5  # per repeat of the 256 MiB stream: the first, then the ones measured
STOP = None


def why_missing(impl: str) -> str | None:
    if impl == "faster-fifo" and faster_fifo is None:
        return "faster-fifo is not installed (pip install -e '.[bench]')"
    if impl in IOX2_IMPLS and iox2 is None:
        return "iceoryx2 is not installed (pip install -e '.[bench]')"
    return None


def make_queue(impl: str, ctx: Any, capacity: int = 4 << 20, maxsize: int = 0,
               kind: str = "bytes", item_size: int = 64) -> Any:
    """A queue; ``kind`` and ``item_size`` (the largest item) are for
    iceoryx2, whose samples have a fixed maximum size."""
    if impl == "interlock":
        return interlock.Queue(maxsize, capacity=capacity)
    if impl in (IL_DEFAULT, IL_LOAN):
        return interlock.Queue(maxsize)
    if impl == "mp.Queue":
        return ctx.Queue(maxsize)
    if impl in IOX2_IMPLS:
        # about as many bytes in flight as the others' ring of ``capacity``
        depth = max(2, min(64, capacity // max(item_size, 1)))
        return Iox2Channel(kind, item_size, depth, spin=impl == IOX2_SPIN)
    return faster_fifo.Queue(max_size_bytes=capacity)


def close_queue(impl: str, q: Any) -> None:
    if impl in IL_IMPLS:
        q.detach()
    elif impl == "mp.Queue":
        q.close()
        q.join_thread()
    elif impl in IOX2_IMPLS:
        q.remove_files()


def payload(kind: str, size: int) -> Any:
    if kind == "numpy":
        return np.arange(size // 8, dtype=np.float64)
    return b"x" * size


def distinct(item: Any, batch: int) -> list[Any]:
    """``batch`` distinct objects like ``item``, the last equal to it: with
    ``[item] * batch``, pickle's memo would send one object and references
    (flattering the peers that pickle a list), and a copy-on-put queue
    would copy the same cache-hot bytes."""
    if not batch:
        return []
    if isinstance(item, bytes):
        return [item[:-1] + bytes([(i - batch + 1) % 256 or item[-1]]) for i in range(batch - 1)] \
            + [item]
    return [item.copy() for _ in range(batch - 1)] + [item]


def _pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def on_loan(q: Any, a: Any) -> Any:
    """A copy of the numpy array ``a`` made on a loan of ``q``."""
    b = np.frombuffer(q.loan(a.nbytes), dtype=a.dtype).reshape(a.shape)
    np.copyto(b, a)
    return b


def _ops(impl: str, q: Any, batch: int) -> tuple[Callable[..., Any], Callable[[], Any]]:
    """(put, get) for single items, or (put a list, get a list) for batches."""
    if impl == IL_LOAN:
        if not batch:
            return (lambda a: q.put(on_loan(q, a))), q.get
        return (lambda xs: q.put_many([on_loan(q, a) for a in xs])), (lambda: q.get_many(batch))
    if not batch:
        if impl == "faster-fifo":
            return q.put, (lambda: q.get(timeout=TIMEOUT_S))
        return q.put, q.get
    if impl in IL_IMPLS:
        return q.put_many, (lambda: q.get_many(batch))
    if impl == "faster-fifo":
        return q.put_many, (lambda: q.get_many(timeout=TIMEOUT_S, max_messages_to_get=batch))
    return q.put, q.get   # mp.Queue: no batch API, one list per put


def _put_op(impl: str, q: Any, batch: int) -> Callable[..., Any]:
    """The sending call (opened in the worker, before the barrier)."""
    if impl in IOX2_IMPLS:
        put: Callable[..., Any] = q.sender()
        return put
    return _ops(impl, q, batch)[0]


def _get_op(impl: str, q: Any, batch: int) -> Callable[[], Any]:
    """The receiving call (opened in the worker, before the barrier).  A
    process that only sends must not open an iceoryx2 subscriber: a sample
    goes to every subscriber, and a full one holds the publisher back."""
    if impl in IOX2_IMPLS:
        get: Callable[[], Any] = q.receiver()
        return get
    return _ops(impl, q, batch)[1]


def _release(impl: str, q: Any) -> None:
    """Release what the worker opened (iceoryx2: its ports and node; a
    multiprocessing child ends with os._exit, which runs no destructor)."""
    if impl in IOX2_IMPLS:
        q.close()


class Iox2Channel:
    """An iceoryx2 publish-subscribe service standing in for a queue of one
    producer process and one consumer process.

    The payload is a slice of bytes (``Slice[c_uint8]``), at most
    ``item_size`` of them, in the publisher's data segment (allocated once,
    ``AllocationStrategy.Static``).  A put loans a sample of the item's size,
    copies the bytes of the ``bytes`` or numpy array into it (the one copy:
    ``ctypes.memmove`` into the loaned shared memory) and sends it.  A get
    receives a sample and copies it out, into a fresh ``bytes`` or a fresh 1-D
    float64 array (the consumer knows the dtype: it is not sent), then
    releases the sample: the consumer owns what get returned once the sample
    is back in the publisher's pool, as it does with every other queue here
    (a zero-copy read of the sample in place would hold the slot).

    Nothing is dropped: the service does not overflow
    (``enable_safe_overflow(False)``) and the publisher's backpressure
    strategy is ``RetryUntilDelivered`` (send waits until the subscriber's
    buffer of ``depth`` samples has room: iceoryx2 retries in a loop with a
    back-off, not on an event; about 15% of a CPU while held back), with no
    history.

    Waiting for a sample: ``receive()`` never blocks.  With ``spin=False``
    the publisher notifies an iceoryx2 event service of the same name after
    each send, and the consumer, finding no sample, blocks in the event
    Listener's ``blocking_wait()`` (a sleep in the kernel, as interlock's get
    does); with ``spin=True`` it calls ``receive()`` in a loop, a busy poll
    that keeps a CPU busy for as long as it waits (and, with both processes
    on one CPU, spins out its time slice before the other side can run: the
    pinned ping-pong then measures the scheduler's slice, milliseconds).

    Before the barrier, the two exchange ``depth + 2`` samples (a warm-up,
    dropped): the publisher sends until that many have reached the
    subscriber (one sent before the publisher has connected to it reaches
    nobody), the subscriber receives them.  So the ports are connected, and
    the slots of the publisher's data segment faulted in (about 1 ms per
    fresh 1 MiB slot here), before the clock runs, as interlock's ring is
    allocated (posix_fallocate) when it is created.

    Only names travel to the workers (fork, spawn or forkserver alike): each
    worker creates its own iceoryx2 node, service handles and port, after the
    fork.  Each channel has its own iceoryx2 config, a unique file prefix
    and root directory, so that runs share no file: :meth:`remove_files`
    (in the parent, after the run) removes what iceoryx2 left in /dev/shm
    and the root directory, including the files of a worker that was killed
    and the 16-byte ``*.global_mgmt`` segment that iceoryx2 leaves behind.
    """

    def __init__(self, kind: str, item_size: int, depth: int, spin: bool) -> None:
        self.kind, self.item_size, self.depth, self.spin = kind, item_size, depth, spin
        self.prefix = f"interlock-bench-{uuid.uuid4().hex[:16]}_"
        self.root = tempfile.mkdtemp(prefix="interlock-bench-iceoryx2-")
        self.service = f"interlock-bench/{uuid.uuid4().hex}"
        self.warmup = depth + 2   # samples exchanged before the barrier
        self._held: list[Any] = []   # this process's node, services and ports

    def _open(self) -> tuple[Any, Any]:
        """This process's node, the publish-subscribe service, and the event
        service (None when busy polling)."""
        iox2.set_log_level(iox2.LogLevel.Error)
        cfg = iox2.config.default()
        cfg.global_cfg.prefix = iox2.FileName.new(self.prefix)
        cfg.global_cfg.root_path = iox2.Path.new(self.root + "/")
        # Disabled: SIGTERM from run_workers' terminate() ends the process
        node = (iox2.NodeBuilder.new().config(cfg)
                .signal_handling_mode(iox2.SignalHandlingMode.Disabled)
                .create(iox2.ServiceType.Ipc))
        name = iox2.ServiceName.new(self.service)
        pubsub = (node.service_builder(name).publish_subscribe(iox2.Slice[ctypes.c_uint8])
                  .enable_safe_overflow(False).history_size(0)
                  .subscriber_max_buffer_size(self.depth).subscriber_max_borrowed_samples(1)
                  .max_publishers(1).max_subscribers(1).max_nodes(2)
                  .open_or_create())
        event = None if self.spin else (
            node.service_builder(name).event().max_nodes(2).open_or_create())
        self._held += [node, pubsub, event]
        return pubsub, event

    def sender(self) -> Callable[[Any], int]:
        pubsub, event = self._open()
        pub = (pubsub.publisher_builder().initial_max_slice_len(self.item_size)
               .allocation_strategy(iox2.AllocationStrategy.Static)
               .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered)
               .max_loaned_samples(1).create())
        notifier = None if event is None else event.notifier_builder().create()
        self._held += [pub, notifier]
        loan, memmove = pub.loan_slice_uninit, ctypes.memmove
        notify = None if notifier is None else notifier.notify

        def put(item: Any) -> int:
            """Send ``item``; the number of subscribers it reached."""
            if isinstance(item, bytes):
                src, nbytes = item, len(item)
            else:   # a contiguous numpy array
                src, nbytes = item.ctypes.data, item.nbytes
            sample = loan(nbytes)
            memmove(sample.payload_ptr, src, nbytes)
            reached: int = sample.assume_init().send()
            if notify is not None:
                notify()
            return reached
        # The warm-up, which also waits for the subscriber: a sample sent
        # before the publisher has connected to it (the subscriber may be
        # listed in the service before it can be connected to) reaches
        # nobody, and is sent again.
        filler = bytes(self.item_size)
        deadline = time.monotonic() + TIMEOUT_S
        sent = 0
        while sent < self.warmup:
            reached = put(filler)
            sent += reached
            if not reached:
                if time.monotonic() > deadline:
                    raise BenchFailure("no iceoryx2 subscriber connected")
                time.sleep(0.001)
        return put

    def receiver(self) -> Callable[[], Any]:
        pubsub, event = self._open()
        # the listener before the subscriber: once the warm-up's samples
        # reach the subscriber, the publisher's notifications reach it too
        listener = None if event is None else event.listener_builder().create()
        sub = pubsub.subscriber_builder().buffer_size(self.depth).create()
        self._held += [listener, sub]
        receive, memmove, string_at = sub.receive, ctypes.memmove, ctypes.string_at
        wait = None if listener is None else listener.blocking_wait
        as_array = self.kind == "numpy"

        def get() -> Any:
            while True:
                sample = receive()
                if sample is not None:
                    break
                if wait is not None:
                    wait()   # returns at once if a notification came since
            nbytes = sample.header.number_of_elements
            out: Any
            if as_array:
                out = np.empty(nbytes // 8, dtype=np.float64)
                memmove(out.ctypes.data, sample.payload_ptr, nbytes)
            else:
                out = string_at(sample.payload_ptr, nbytes)
            sample.delete()   # the slot goes back to the publisher
            return out
        for _ in range(self.warmup):
            get()
        return get

    def close(self) -> None:
        """Release this process's ports, then its node and services."""
        for obj in reversed(self._held):
            if obj is not None and hasattr(obj, "delete"):
                obj.delete()
        self._held.clear()

    def remove_files(self) -> None:
        """Remove every file of this channel's iceoryx2 config (parent, after
        the workers ended)."""
        for f in os.listdir("/dev/shm"):
            if f.startswith(self.prefix):
                try:
                    os.unlink(os.path.join("/dev/shm", f))
                except FileNotFoundError:
                    pass
        shutil.rmtree(self.root, ignore_errors=True)


def _last(m: Any) -> Any:
    return m[-1] if isinstance(m, list) else m


def _same(a: Any, b: Any) -> bool:
    if np is not None and isinstance(a, np.ndarray):
        return bool(a.nbytes == b.nbytes and a[0] == b[0] and a[-1] == b[-1])
    return bool(a == b)


# ---------------------------------------------------------------- workers
# (module level, so that spawn and forkserver children can import them)

def w_put(barrier: Any, impl: str, q: Any, n: int, kind: str, size: int, batch: int,
          sources: int = 0, warm: int = 0, lookup: bool = False) -> dict:
    """Put n items: in batches of ``batch`` distinct objects, or one at a
    time; one at a time with ``sources`` > 1, the items cycle through that
    many distinct objects (the same data set as a batch of that size: at
    1 MiB, putting one array again and again copies from a cache-hot
    source, a batch's 8 distinct arrays do not).

    ``warm``: before the barrier, that many items (whole batches) go
    through untimed, which the consumer takes (:func:`w_get`): the first
    trip through a queue touches its memory and the receiver's allocator
    for the first time, and at 1 MiB that weighed on the short runs."""
    put = _put_op(impl, q, batch)
    item = payload(kind, size)
    items = distinct(item, batch or sources)
    if warm:
        if batch:
            for _ in repeat(None, -(-warm // batch)):
                put(items)
        else:
            for x in islice(cycle(items or [item]), warm):
                put(x)
    barrier.wait()
    t0 = time.perf_counter()
    if batch:
        for _ in repeat(None, n // batch):
            put(items)
    elif sources > 1:
        for x in islice(cycle(items), n):
            put(x)
    elif lookup:   # as most code writes it: the method looked up on each call
        for _ in repeat(None, n):
            q.put(item)
    else:
        for _ in repeat(None, n):
            put(item)
    t1 = time.perf_counter()
    _release(impl, q)
    return {"t0": t0, "t1": t1}


def w_get(barrier: Any, impl: str, q: Any, n: int, kind: str, size: int, batch: int,
          warm: int = 0) -> dict:
    get = _get_op(impl, q, batch)
    m = None
    want = -(-warm // batch) * batch if batch else warm   # the warm-up (w_put)
    got = 0
    while got < want:
        m = get()
        got += len(m) if batch else 1
    barrier.wait()
    t0 = time.perf_counter()
    if batch:
        got = 0
        n = n // batch * batch
        while got < n:
            m = get()
            got += len(m)
        if got != n:
            raise BenchFailure(f"got {got} items, expected {n}")
    else:
        for _ in repeat(None, n):
            m = get()
    t1 = time.perf_counter()
    _release(impl, q)
    if not _same(_last(m), payload(kind, size)):
        raise BenchFailure("the last item is not what was put")
    return {"t0": t0, "t1": t1}


def w_ping(barrier: Any, impl: str, qa: Any, qb: Any, duration: float, cpu: int | None) -> dict:
    _pin(cpu)
    put = _put_op(impl, qa, 0)
    get = _get_op(impl, qb, 0)
    msg = b"x" * 64
    clock = time.perf_counter_ns
    barrier.wait()
    for _ in range(200):
        put(msg)
        get()
    samples: list[int] = []
    append = samples.append
    t0 = time.perf_counter()
    end = t0 + duration
    while True:
        s = clock()
        put(msg)
        get()
        append(clock() - s)
        if len(samples) >= 200_000 or time.perf_counter() >= end:
            break
    t1 = time.perf_counter()
    put(b"")
    _release(impl, qa)
    _release(impl, qb)
    samples.sort()
    return {"t0": t0, "t1": t1, "n": len(samples),
            "p50_us": percentile(samples, 50) / 1e3, "p99_us": percentile(samples, 99) / 1e3}


def w_pong(barrier: Any, impl: str, qa: Any, qb: Any, duration: float, cpu: int | None) -> dict:
    _pin(cpu)
    get = _get_op(impl, qa, 0)
    put = _put_op(impl, qb, 0)
    barrier.wait()
    while True:
        m = get()
        if not m:
            break
        put(m)
    _release(impl, qa)
    _release(impl, qb)
    return {}


def w_big_put(barrier: Any, impl: str, q: Any, size: int) -> dict:
    a = payload("numpy", size)
    make = 0.0
    if impl == IL_LOAN:   # the array is made on a loan, before the clock runs
        t = time.perf_counter()
        a = on_loan(q, a)
        make = time.perf_counter() - t
    barrier.wait()
    t0 = time.perf_counter()
    q.put(a)
    return {"t0": t0, "t1": time.perf_counter(), "make": make}


def w_big_get(barrier: Any, impl: str, q: Any, size: int) -> dict:
    _, get = _ops(impl, q, 0)
    barrier.wait()
    m = get()
    t1 = time.perf_counter()
    if m.nbytes != size or m[-1] != size // 8 - 1:
        raise BenchFailure("the array is not what was put")
    return {"t0": t1, "t1": t1}


def w_big_stream_put(barrier: Any, impl: str, q: Any, size: int, n: int, acks: Any) -> dict:
    """Put n arrays one after another, each once the previous one arrived
    and was let go of (a stream of frames, batches of a data loader)."""
    a = payload("numpy", size)
    barrier.wait()
    starts, makes = [], []
    for i in range(n):
        a[0] = i
        if impl == IL_LOAN:   # made on a loan (untimed: its own figure)
            t = time.perf_counter()
            b = on_loan(q, a)
            makes.append(time.perf_counter() - t)
            starts.append(time.perf_counter())
            q.put(b)
            del b
        else:
            starts.append(time.perf_counter())
            q.put(a)
        acks.recv()
    return {"starts": starts, "makes": makes}


def w_big_stream_get(barrier: Any, impl: str, q: Any, size: int, n: int, acks: Any) -> dict:
    _, get = _ops(impl, q, 0)
    barrier.wait()
    arrivals = []
    for i in range(n):
        m = get()
        arrivals.append(time.perf_counter())
        if m.nbytes != size or m[0] != i or m[-1] != size // 8 - 1:
            raise BenchFailure("the array is not what was put")
        del m  # let go of it before the next one
        acks.send(None)
    return {"arrivals": arrivals}


def w_copy(barrier: Any, size: int, fresh: bool) -> dict:
    """One copy of the array: into a fresh array (``ndarray.copy()``: its
    pages are faulted in during the copy, as a receiver's are), or into one
    already written once (``np.copyto``: the bare memcpy)."""
    a = payload("numpy", size)
    b = None if fresh else np.zeros_like(a)
    if b is not None:
        b[:] = 1.0   # touched: every page is mapped
    barrier.wait()
    t0 = time.perf_counter()
    if b is None:
        b = a.copy()
    else:
        np.copyto(b, a)
    t1 = time.perf_counter()
    if b[-1] != a[-1]:
        raise BenchFailure("the copy differs")
    return {"t0": t0, "t1": t1}


def w_grid_put(barrier: Any, impl: str, q: Any, n: int, idx: int, pbarrier: Any,
               ncons: int) -> dict:
    put, _ = _ops(impl, q, 0)
    barrier.wait()
    t0 = time.perf_counter()
    for i in range(n):
        put((i, "abc", 1.5))
    t1 = time.perf_counter()
    if impl == "mp.Queue" and idx:
        q.close()
        q.join_thread()   # this producer's data is in the pipe before the markers
    pbarrier.wait()
    if idx == 0:
        for _ in range(ncons):
            put(STOP)
    return {"t0": t0, "t1": t1}


def w_grid_get(barrier: Any, impl: str, q: Any) -> dict:
    _, get = _ops(impl, q, 0)
    count = 0
    barrier.wait()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    while get() is not STOP:
        count += 1
    t1 = time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    # context switches while consuming: voluntary (slept: found the queue
    # empty, or waited for a lock) and involuntary (preempted)
    return {"t0": t0, "t1": t1, "received": count, "vcsw": r1.ru_nvcsw - r0.ru_nvcsw,
            "ivcsw": r1.ru_nivcsw - r0.ru_nivcsw}


# ---------------------------------------------------------------- measurements

def _span(res: list[dict]) -> float:
    return max(r["t1"] for r in res) - min(r["t0"] for r in res)


def stream(impl: str, method: str, n: int, kind: str, size: int, batch: int,
           placement: list | None = None, sources: int = 0, warm: int = 0,
           lookup: bool = False) -> float:
    """Items per second from one producer process to one consumer process
    (``sources``, ``warm``, ``lookup``: see :func:`w_put`)."""
    if batch and impl == "mp.Queue" and size > 64:
        raise NotApplicable("no batch API (a list per put is measured at 64 B only)")
    if batch and impl in IOX2_IMPLS:
        raise NotApplicable("no batch API (one sample per send and per receive)")
    ctx = mp.get_context(method)
    # The same ring for single and batched transfers, so that their ratio
    # compares the calls, not ring sizes (a 32 MiB ring runs at about half
    # the speed of a 4 MiB one at 1 MiB items: it does not stay in cache).
    # A blocking put_many larger than the ring puts what fits and waits.
    # (faster-fifo's put_many raises Full for a batch larger than its
    # buffer: it keeps a buffer of 4 batches, as before.)
    cap = max(4 << 20, 4 * size * (max(batch, 1) if impl == "faster-fifo" else 1))
    q = make_queue(impl, ctx, capacity=cap, kind=kind, item_size=size)
    if batch or sources > 1:   # (so that the last item put is the payload itself)
        n = max(batch or sources, n // (batch or sources) * (batch or sources))
    try:
        # interlock's queue length, sampled with the placement: the mode a
        # run fell into (queue.md, "How far behind the consumer runs")
        depth = q.qsize if impl in IL_IMPLS else None
        res = run_workers([(w_put, (impl, q, n, kind, size, batch, sources, warm, lookup)),
                           (w_get, (impl, q, n, kind, size, batch, warm))], TIMEOUT_S, ctx,
                          placement, depth)
    finally:
        close_queue(impl, q)
    return n / _span(res)


def pingpong(impl: str, method: str, duration: float, cpus: tuple[int | None, int | None],
             placement: list | None = None) -> tuple[float, float]:
    ctx = mp.get_context(method)
    qa, qb = make_queue(impl, ctx), make_queue(impl, ctx)
    try:
        a, _ = run_workers([(w_ping, (impl, qa, qb, duration, cpus[0])),
                            (w_pong, (impl, qa, qb, duration, cpus[1]))], TIMEOUT_S, ctx,
                           placement)
    finally:
        close_queue(impl, qa)
        close_queue(impl, qb)
    return a["p50_us"], a["p99_us"]


def big_queue(impl: str, ctx: Any, size: int) -> Any:
    """The queue for arrays of ``size`` bytes: interlock's default queue (a
    large item goes through a spill file: spill.md), the peers' with room
    for one array."""
    if impl == "interlock":
        return interlock.Queue()
    return make_queue(impl, ctx, capacity=size + (16 << 20))


def big(impl: str, size: int, extra: dict | None = None) -> float:
    """Seconds from the put's start to the get's return of one array, the
    first of a fresh producer process (``extra``: interlock, loan: the
    seconds that making the array on its loan took, before the put)."""
    ctx = mp.get_context("fork")
    if impl in ("copy", "memcpy"):
        (r,) = run_workers([(w_copy, (size, impl == "copy"))], TIMEOUT_S, ctx)
        return r["t1"] - r["t0"]
    q = big_queue(impl, ctx, size)
    try:
        res = run_workers([(w_big_put, (impl, q, size)), (w_big_get, (impl, q, size))],
                          TIMEOUT_S, ctx)
    finally:
        close_queue(impl, q)
    if extra is not None and impl == IL_LOAN:
        extra["make_s"] = round(res[0]["make"], 5)
    return res[1]["t1"] - res[0]["t0"]


def big_stream(impl: str, size: int, n: int, extra: dict | None = None) -> list[float]:
    """Seconds from put to get of each of n arrays sent one after another by
    one producer process to one consumer, each let go of before the next
    (``extra``: interlock, loan: the seconds that making each on its loan
    took)."""
    ctx = mp.get_context("fork")
    q = big_queue(impl, ctx, size)
    r, w = ctx.Pipe(duplex=False)
    try:
        res = run_workers([(w_big_stream_put, (impl, q, size, n, r)),
                           (w_big_stream_get, (impl, q, size, n, w))], TIMEOUT_S, ctx)
    finally:
        close_queue(impl, q)
        r.close()
        w.close()
    if extra is not None and impl == IL_LOAN:
        extra["make_s"] = [round(x, 5) for x in res[0]["makes"]]
    return [b - a for a, b in zip(res[0]["starts"], res[1]["arrivals"])]


def grid(impl: str, nprod: int, ncons: int, n: int, extra: list | None = None) -> float:
    """Items per second through one queue, nprod producers to ncons
    consumers.  For interlock, ``extra`` gets the run's side-lock counters
    (acquisitions, and contentions: acquisitions that found the lock held),
    so that the JSON says whether the curve bends at the locks."""
    ctx = mp.get_context("fork")
    q = make_queue(impl, ctx, capacity=4 << 20, maxsize=MAXSIZE)
    per = max(1, n // nprod)
    pbarrier = ctx.Barrier(nprod)
    jobs: list[tuple[Callable[..., dict], tuple]] = [
        (w_grid_put, (impl, q, per, i, pbarrier, ncons)) for i in range(nprod)]
    jobs += [(w_grid_get, (impl, q)) for _ in range(ncons)]
    try:
        res = run_workers(jobs, TIMEOUT_S, ctx)
        if impl == "interlock" and extra is not None:
            st = q._stats()
            extra.append({"side_locks": {
                side: {k: st[lock][k] for k in ("acquisitions", "contentions")}
                for side, lock in (("producers", "producer_lock"), ("consumers", "consumer_lock"))},
                "consumer_switches": {k: sum(r.get(k, 0) for r in res) for k in ("vcsw", "ivcsw")}})
    finally:
        close_queue(impl, q)
    got = sum(r.get("received", 0) for r in res)
    if got != per * nprod:
        raise BenchFailure(f"consumers received {got}, producers sent {per * nprod}")
    return got / _span(res)


def one_process(impl: str, n: int, _placement: list | None = None) -> float:
    """put() then get() of one tuple, n times, in this one process: the rate
    of one CPU doing both sides' work, the reference for the scaling rows
    (with far more processes than CPUs, the scheduler rarely runs a
    producer and a consumer side by side: scaling.md)."""
    ctx = mp.get_context("fork")
    q = make_queue(impl, ctx, capacity=4 << 20, maxsize=MAXSIZE)
    put, get = _ops(impl, q, 0)
    item = (0, "abc", 1.5)
    try:
        t0 = time.perf_counter()
        for _ in repeat(None, n):
            put(item)
            get()
        dt = time.perf_counter() - t0
    finally:
        close_queue(impl, q)
    return n / dt


# ---------------------------------------------------------------- the run

class NotApplicable(Exception):
    """This implementation has no way to do this case (a missing row)."""


class Runner:
    """Calibrate each (case, impl) once, then interleave the repeats."""

    def __init__(self, report: Report, args: Any) -> None:
        self.report, self.args = report, args
        self.target_s = 0.05 if args.quick else 0.3
        self.sized: dict[tuple[str, str], int] = {}

    def want(self, case: str) -> bool:
        return not self.args.only or any(o.lower() in case.lower() for o in self.args.only)

    def rate_case(self, case: str, unit: str, impls: tuple[str, ...],
                  fn: Callable[[str, int, list | None], float], n0: int,
                  nmax: int = 5_000_000, placement: bool = True,
                  target_s: float | None = None) -> None:
        self.rate_cases([(case, fn)], unit, impls, n0, nmax, placement, target_s)

    def rate_cases(self, cases: list[tuple[str, Callable[[str, int, list | None], float]]],
                   unit: str, impls: tuple[str, ...], n0: int, nmax: int = 5_000_000,
                   placement: bool = True, target_s: float | None = None) -> None:
        """Cases that are the same transfer made differently (start methods):
        sized once, on the first case, and measured interleaved (each repeat
        runs every case and implementation once), so that a ratio between
        two of them compares measurements made moments apart."""
        cases = [(c, f) for c, f in cases if self.want(c)]
        if not cases:
            return
        sized: dict[str, int] = {}
        first_case, first_fn = cases[0]
        for impl in impls:
            why = why_missing(impl)
            if why:
                for c, _ in cases:
                    self.report.missing(c, impl, unit, why)
                continue
            try:
                rate = first_fn(impl, n0, None)   # calibration, and warm-up
            except Exception as e:  # a peer that cannot do the case, or a failure
                for c, _ in cases:
                    self.report.failed(c, impl, unit, f"{type(e).__name__}: {e}")
                continue
            sized[impl] = int(min(max(rate * (target_s or self.target_s), n0), nmax))
        for _ in range(self.args.repeat):
            for case, fn in cases:
                for impl, n in sized.items():
                    if self.report.row(case, impl, unit).get("error"):
                        continue
                    pl: list = []
                    try:
                        v = fn(impl, n, pl if placement else None)
                    except NotApplicable as e:
                        self.report.missing(case, impl, unit, str(e))
                        continue
                    except Exception as e:
                        self.report.failed(case, impl, unit, f"{type(e).__name__}: {e}")
                        continue
                    extra = (pl[0] if "side_locks" in pl[0] else {"placement": pl[0]}) if pl else {}
                    self.report.add(case, impl, unit, v, **extra)
            sys.stderr.write(".")
            sys.stderr.flush()

    def latency_cases(self, cases: list[tuple[str, Callable[[str, list | None],
                                                             tuple[float, float]]]],
                      impls: tuple[str, ...]) -> None:
        """Ping-pong cases, interleaved as in :meth:`rate_cases`."""
        cases = [(c, f) for c, f in cases if self.want(c)]
        live = []
        for impl in impls:
            why = why_missing(impl)
            if why:
                for case, _ in cases:
                    self.report.missing(case + ", p50", impl, "us", why)
                    self.report.missing(case + ", p99", impl, "us", why)
            else:
                live.append(impl)
        for _ in range(self.args.repeat):
            for case, fn in cases:
                c50, c99 = case + ", p50", case + ", p99"
                for impl in live:
                    if self.report.row(c50, impl, "us").get("error"):
                        continue
                    pl: list = []
                    try:
                        p50, p99 = fn(impl, pl)
                    except Exception as e:
                        self.report.failed(c50, impl, "us", f"{type(e).__name__}: {e}")
                        self.report.failed(c99, impl, "us", f"{type(e).__name__}: {e}")
                        continue
                    self.report.add(c50, impl, "us", p50, placement=pl[0] if pl else None)
                    self.report.add(c99, impl, "us", p99)
            sys.stderr.write(".")
            sys.stderr.flush()


def run(report: Report, args: Any) -> None:
    r = Runner(report, args)
    quick = args.quick
    duration = 0.1 if quick else 0.3
    cpus = sorted(os.sched_getaffinity(0))
    peers = [i for i in IMPLS if i != "interlock"]
    iox2_peers = peers + list(IOX2_IMPLS)   # the cases iceoryx2 is measured in

    # 1. start methods: 64 B single and batch, ping-pong; the methods interleaved.
    for label, batch in (("put/get", 0), (f"put_many/get_many of {BATCH}", BATCH)):
        group = [(f"64 B bytes 1P->1C {label}, {m}",
                  lambda impl, n, pl, m=m, b=batch: stream(impl, m, n, "bytes", 64, b, pl))
                 for m in METHODS]
        # At least 0.5 s per run, even with --quick, and up to 20 M items: a
        # stream of small items is fast while the producer is ahead and
        # slower once the consumer catches up (queue.md, known limits); a
        # 50 ms run measured mostly the first phase.
        r.rate_cases(group, "msg/s", IMPLS, 20 * BATCH, nmax=20_000_000,
                     target_s=max(0.5, r.target_s))
        for m in METHODS:
            case = f"64 B bytes 1P->1C {label}, {m}"
            report.ratio_vs(case, "interlock", peers)
            if m != "fork":
                report.ratio(f"64 B 1P->1C {label}: {m} / fork", (case, "interlock"),
                             (f"64 B bytes 1P->1C {label}, fork", "interlock"),
                             (f"interlock, {m}", "interlock, fork"))
    # 1b. The same stream with the producer's loop as most code writes it,
    # ``q.put(item)``: the method looked up on every call makes the producer
    # the slower side, so the consumer catches up with it and waits on
    # nearly every item (queue.md, "Known limits").
    slow = "64 B bytes 1P->1C put/get, q.put looked up per call, fork"
    r.rate_cases([(slow, lambda impl, n, pl: stream(impl, "fork", n, "bytes", 64, 0, pl,
                                                    lookup=True))],
                 "msg/s", IMPLS, 20 * BATCH, nmax=20_000_000, target_s=max(0.5, r.target_s))
    report.ratio_vs(slow, "interlock", peers)
    report.ratio("64 B 1P->1C put/get: q.put per call / a bound put", (slow, "interlock"),
                 ("64 B bytes 1P->1C put/get, fork", "interlock"),
                 ("interlock, q.put per call", "interlock, bound put"))

    same_cpu = f"ping-pong 64 B, both pinned to CPU {cpus[0]}, fork"
    r.latency_cases([(f"ping-pong 64 B, unpinned, {m}",
                      lambda impl, pl, m=m: pingpong(impl, m, duration, (None, None), pl))
                     for m in METHODS]
                    + [(same_cpu, lambda impl, pl: pingpong(impl, "fork", duration,
                                                            (cpus[0], cpus[0]), pl))],
                    IMPLS + IOX2_IMPLS)
    for m in METHODS:
        case = f"ping-pong 64 B, unpinned, {m}"
        report.ratio_vs(case + ", p50", "interlock", iox2_peers)
        if m != "fork":
            report.ratio(f"ping-pong p50 unpinned: {m} / fork", (case + ", p50", "interlock"),
                         ("ping-pong 64 B, unpinned, fork, p50", "interlock"),
                         (f"interlock, {m}", "interlock, fork"))
    report.ratio_vs(same_cpu + ", p50", "interlock", iox2_peers)

    # 2. item size: batch against single, per item.
    sizes = [("64 B bytes", "bytes", 64, BATCH), ("64 KiB bytes", "bytes", 64 << 10, 16)]
    if np is not None:
        sizes.append(("1 MiB numpy", "numpy", 1 << 20, 8))
    for label, kind, size, batch in sizes:
        single = f"{label} 1P->1C put/get, fork"
        many = f"{label} 1P->1C put_many/get_many of {batch}, fork"
        if size == 64:   # measured above, under fork
            single, many = "64 B bytes 1P->1C put/get, fork", (
                f"64 B bytes 1P->1C put_many/get_many of {BATCH}, fork")
        else:
            n0 = max(2 * batch, (4 << 20) // size * 4)
            # iceoryx2: in the 1 MiB case only (the goal: interlock >= 1.25x it)
            # and interlock's default queue beside its 4 MiB ring (the 1 MiB
            # arrays then go through its pooled spill files)
            case_impls, case_peers = (((*IMPLS, IL_DEFAULT, IL_LOAN, *IOX2_IMPLS), iox2_peers)
                                      if kind == "numpy" else (IMPLS, peers))
            # single and batched interleaved; mp.Queue and iceoryx2 have no batch API
            # Single puts cycle through the batch's distinct objects: the
            # same data, so that the ratio compares the calls (w_put).
            # Every implementation first moves a ring's worth of items
            # untimed (w_put: ``warm``).
            warm = (4 << 20) // size + 2
            r.rate_cases([(single, lambda impl, n, pl, k=kind, s=size, b=batch, w=warm:
                           stream(impl, "fork", n, k, s, 0, pl, sources=b, warm=w)),
                          (many, lambda impl, n, pl, k=kind, s=size, b=batch, w=warm:
                           stream(impl, "fork", n, k, s, b, pl, warm=w))],
                         "items/s", case_impls, n0,
                         # at least 0.3 s per run, even with --quick: a 50 ms
                         # run moved only a few hundred 1 MiB items, and a
                         # receiver's first items (its first touch of the
                         # ring, its allocator's first large blocks) weighed
                         # on them
                         target_s=max(0.3, r.target_s))
            report.ratio_vs(single, "interlock", case_peers)
            if kind == "numpy":
                report.ratio_vs(single, IL_DEFAULT, case_peers)
                report.ratio_vs(single, IL_LOAN, case_peers)
        report.ratio(f"{label}: put_many/get_many / put/get, per item", (many, "interlock"),
                     (single, "interlock"), ("interlock put_many/get_many", "interlock put/get"))
        if kind == "numpy":
            report.ratio(f"{label}: put_many/get_many / put/get, per item, default Queue()",
                         (many, IL_DEFAULT), (single, IL_DEFAULT),
                         ("interlock put_many/get_many", "interlock put/get"))

    # 3. a 256 MiB array against one copy of it.
    if np is not None:
        size = 256 << 20
        case = "256 MiB numpy array, put -> get in another process"
        if r.want(case):
            copy = "one copy into a fresh array (ndarray.copy)"
            memcpy = "one memcpy into touched memory (np.copyto)"
            impls = {"interlock": "interlock", IL_LOAN: IL_LOAN, "mp.Queue": "mp.Queue",
                     "faster-fifo": "faster-fifo", "copy": copy, "memcpy": memcpy}
            for impl, shown in impls.items():
                why = why_missing(impl)
                if why:
                    report.missing(case, shown, "s", why)
            big("interlock", 16 << 20)   # warm up
            for _ in range(args.repeat):
                for impl, shown in impls.items():
                    if why_missing(impl) or report.row(case, shown, "s").get("error"):
                        continue
                    try:
                        extra: dict = {}
                        report.add(case, shown, "s", big(impl, size, extra), **extra)
                    except Exception as e:
                        report.failed(case, shown, "s", f"{type(e).__name__}: {e}")
            # The goal: interlock's time < 1.5x one memcpy's, i.e. this ratio > 0.67.
            report.ratio("256 MiB: interlock against one memcpy", (case, "interlock"),
                         (case, memcpy), ("interlock", "np.copyto"))
            report.ratio("256 MiB: interlock against one copy to a fresh array",
                         (case, "interlock"), (case, copy), ("interlock", "ndarray.copy"))
            # zero-copy: the array made on a loan (its making is in the
            # row's make_s, outside the put -> get time)
            report.ratio("256 MiB: interlock, loan against one memcpy", (case, IL_LOAN),
                         (case, memcpy), ("interlock, loan", "np.copyto"))
            report.ratio_vs(case, "interlock", peers)
            sys.stderr.write(".")
        # The same arrays as a stream: what each costs once the producer has
        # sent one (interlock: its spill file is reused, spill.md "The pool").
        stream_case = "256 MiB numpy arrays one after another, each after the first"
        if r.want(stream_case):
            impls = {"interlock": "interlock", IL_LOAN: IL_LOAN, "mp.Queue": "mp.Queue",
                     "faster-fifo": "faster-fifo"}
            for impl, shown in impls.items():
                why = why_missing(impl)
                if why:
                    report.missing(stream_case, shown, "s", why)
            for _ in range(args.repeat):
                for impl, shown in impls.items():
                    if why_missing(impl) or report.row(stream_case, shown, "s").get("error"):
                        continue
                    try:
                        extra = {}
                        each = big_stream(impl, size, STREAM_ARRAYS, extra)
                        report.add(stream_case, shown, "s", statistics.median(each[1:]),
                                   each_s=[round(x, 5) for x in each], **extra)
                    except Exception as e:
                        report.failed(stream_case, shown, "s", f"{type(e).__name__}: {e}")
            if r.want(case):
                report.ratio("256 MiB stream: interlock against one memcpy", (stream_case, "interlock"),
                             (case, memcpy), ("interlock", "np.copyto"))
                report.ratio("256 MiB stream: interlock, loan against one memcpy",
                             (stream_case, IL_LOAN), (case, memcpy), ("interlock, loan", "np.copyto"))
            report.ratio_vs(stream_case, "interlock", peers)
            sys.stderr.write(".")

    # 4. scaling: P x C through one queue of maxsize 10,000, and the rate of
    # one process doing both sides (where the curve tends: scaling.md).
    one = f"one process, put then get of tuples, maxsize {MAXSIZE}"
    # At least 0.3 s per run, even with --quick: a 50 ms run of 16 or 64
    # processes on 2 CPUs is a few scheduler slices, and the processes the
    # barrier released last weighed on it (8x8 in one probe, 3 repeats
    # each, moments apart: 5.3x mp.Queue with 50 ms runs, 9.3x with 0.3 s).
    scale_s = max(0.3, r.target_s)
    r.rate_case(one, "msg/s", ("interlock",), one_process, 20_000, nmax=2_000_000,
                placement=False,   # (mp.Queue: each get waits for its feeder thread)
                target_s=scale_s)
    for p in (1, 2, 8, 32):
        case = f"scaling {p}x{p}, tuples, maxsize {MAXSIZE}"
        r.rate_case(case, "msg/s", IMPLS,
                    lambda impl, n, pl, p=p: grid(impl, p, p, n, pl), 2_000 * p,
                    nmax=2_000_000, target_s=scale_s)
        report.ratio_vs(case, "interlock", peers)
        report.ratio(f"scaling {p}x{p} against one process doing both sides", (case, "interlock"),
                     (one, "interlock"), (f"interlock {p}x{p}", "interlock, one process"))
    sys.stderr.write("\n")


def main() -> None:
    p = report_args(__doc__.split("\n")[0])
    p.add_argument("--only", metavar="SUBSTR", action="append", default=[],
                   help="run only cases whose name contains SUBSTR (repeatable)")
    args = p.parse_args()
    report = Report("bench_goals", args, {"methods": METHODS, "batch": BATCH, "maxsize": MAXSIZE})
    t = time.perf_counter()
    run(report, args)
    report.params["wall_s"] = round(time.perf_counter() - t, 1)
    report.print()
    report.write(args.json)
    if report.failures():
        print("\nFAILED:\n  " + "\n  ".join(report.failures()), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
