"""Pipelines: stages of worker processes connected by bounded interlock queues.

::

    from interlock.pipeline import Pipeline

    p = (Pipeline(urls)                       # any iterable, even endless
         .stage(download, workers=4)          # a function of one item...
         .stage(save, workers=2))             # ...or a generator function
    for path in p:                            # results, in source order
        print(path)
    p.run()                                   # or: all results as a list

The shape is a builder (``Pipeline(source).stage(...).stage(...)``), not one
call with many positional functions: each stage has its own options
(``workers``, ``maxsize``, ``chunksize``, ``name``), and the builder reads
like the data flow.  Iterating gives results, like ``Pool.imap``; ``run()``
collects them, like ``Pool.map``; ``ordered=False`` gives them as they
complete, like ``imap_unordered`` and ``concurrent.futures.as_completed``.
Option names follow ``multiprocessing`` and ``concurrent.futures``
(``chunksize``, ``mp_context``).

How it runs (docs/design/pipeline.md has the whole protocol):

- The parent feeds the source from a thread into the first queue, in
  messages of ``chunksize`` consecutive items tagged with the sequence
  number of the first.
  Every queue is bounded (``maxsize`` messages), so a slow stage blocks the
  ones before it, down to the source: memory stays flat on an endless source.
  In ordered mode the parent also bounds how far the source may run ahead of
  the oldest unfinished item, so the reorder buffer stays bounded too.
- Stage workers loop ``get -> fn -> put``.  A *function* stage maps one item
  to one result; a *generator function* stage maps one item to zero or more
  (they are numbered below the item's own number, so order still holds).
- End of input is ``Queue.shutdown()``: the feeder shuts the first queue
  down when the source is exhausted; each worker of a stage stops when its
  input queue is shut down and drained; when every worker of stage k has
  exited normally the parent shuts queue k+1 down.  N workers upstream therefore never signal the end
  early, and no sentinel counting is needed.
- Errors: a worker that raises reports the exception and its formatted
  traceback on a control queue and exits; the parent stops everything and
  re-raises the exception, with the worker's traceback as ``__cause__``
  (a :class:`RemoteTraceback`, as ``concurrent.futures`` does).
- A worker killed from outside (exit by signal, or any non-zero exit without
  a report) is seen by the parent through its process sentinel, and handled
  by ``on_worker_death``:

  ``"fail"`` (default): stop, raise :class:`WorkerDiedError` naming the
  stage, the worker, the signal and the items it held.
  ``"restart"``: start a new worker; the items the dead one held are dropped
  (*at most once*), listed in ``Pipeline.lost`` and warned about
  (:class:`WorkerDiedWarning`).
  ``"retry"``: start a new worker and give it the items the dead one held
  (*at least once*: their stage may run twice on them; in ordered mode the
  results the caller gets are de-duplicated by key).  Both "restart" and
  "retry" cost one extra put and get per message, on a one-slot queue that
  keeps a copy of what each worker holds; "fail" costs nothing.

- Ctrl-C (SIGINT to the parent), an error, a death in ``"fail"`` mode, or the
  caller leaving the loop early all abort: every queue is shut down
  (``immediate=True``: what is left is dropped), workers are
  terminated (SIGTERM, then SIGKILL after ``abort_timeout``), and every
  segment is removed when the parent detaches (dead workers' slots are swept).
  Workers ignore SIGINT: a terminal's Ctrl-C reaches the whole process group,
  and it is the parent's job to stop them, in order.
- Works under ``fork``, ``spawn`` and ``forkserver`` (under spawn the stage
  functions must be importable, as for ``Pool``).
"""
from __future__ import annotations

import inspect
import itertools
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from .errors import Empty, RemoteTraceback, ShutDown, WorkerDiedError, WorkerDiedWarning
from ._progress import ProgressBoard, StageProgress
from ._queue import Queue

__all__ = ["Pipeline", "StageProgress", "WorkerDiedError", "WorkerDiedWarning", "RemoteTraceback"]

_DEATH_MODES = ("fail", "restart", "retry")
_POLL = 0.05  # seconds: how often the parent looks at workers when no result comes
# ... and once the whole input is in (the feeder shut the first queue down): the
# stages are about to end one after the other, and each end is noticed by
# looking at the workers' exit codes, so look often (a few wake-ups).
_TAIL_POLL = 0.002
_IDLE = 1.0  # seconds: how often an idle worker checks that its parent lives
_EXIT_REPORTED = 3  # a worker's exit code after it reported an exception
_CONTROL_CAPACITY = 1 << 20


class _Empty:
    """Placeholder for "this item produced nothing" (a generator stage that
    yielded nothing): it keeps the item's place so ordering can move past it."""

    def __reduce__(self) -> str:
        return "_EMPTY"


_EMPTY = _Empty()


# ----------------------------------------------------------------- keys
# A key says where an item is in the output order.  Items from the source
# have an int key (their sequence number).  A generator stage numbers what it
# yields for key k as k + (2*i + last,): the i-th output, ``last`` set on the
# final one (an item that yields nothing gets one _EMPTY output, index 0,
# last).  Every result therefore has the same depth (1 + number of generator
# stages), and the ordered collector can compute the next key it needs.

def _child_key(key: Any, i: int, last: bool) -> tuple[int, ...]:
    base = key if isinstance(key, tuple) else (key,)
    return base + (2 * i + int(last),)


def _next_key(key: Any, depth: int) -> Any:
    """The key that follows ``key`` (a full-depth key, or a shorter key whose
    whole subtree is done) in the output order."""
    if depth == 1:
        return key + 1 if not isinstance(key, tuple) else key[0] + 1
    parts = list(key) if isinstance(key, tuple) else [key]
    # Deepest level whose item is not the last of its parent: move to its sibling.
    for level in range(len(parts) - 1, 0, -1):
        if not parts[level] & 1:
            nxt = parts[:level] + [parts[level] + 2]
            break
    else:
        nxt = [parts[0] + 1]
    return tuple(nxt + [0] * (depth - len(nxt)))


def _strip(key: tuple[int, ...]) -> tuple[int, ...]:
    return (key[0],) + tuple(x & ~1 for x in key[1:])


def _first(key: Any) -> int:
    return int(key[0] if isinstance(key, tuple) else key)


# -------------------------------------------------------------- worker side
@dataclass
class _WorkerSpec:
    """Everything a worker process needs; pickled under spawn."""

    fn: Callable[..., Any]
    is_gen: bool
    stage: int
    index: int
    slot: int
    inq: Queue[Any]
    outq: Queue[Any]
    control: Queue[Any]
    counters: Any  # RawArray('q'): per slot [done, held first key, held count]
    hand: Queue[Any] | None  # retry mode: a copy of the message being worked on
    initial: list[Any] | None  # retry mode: the message a dead worker held
    chunksize: int
    ppid: int


def _parent_gone(ppid: int) -> bool:
    return os.getppid() != ppid


def _put(q: Queue[Any], msg: Any, ppid: int) -> bool:
    """Put, waking every _IDLE seconds to check the parent. False: give up."""
    while True:
        try:
            q.put(msg, timeout=_IDLE)
            return True
        except ShutDown:
            return False  # the pipeline is aborting
        except Exception as e:
            if type(e).__name__ != "Full":
                raise
            if _parent_gone(ppid):
                return False


def _worker_main(spec: _WorkerSpec) -> None:
    # Ctrl-C at a terminal reaches every process of the group: the parent
    # handles it and stops us in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    key: Any = None
    try:
        _worker_loop(spec)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - everything goes to the parent
        key = e.__dict__.pop("_interlock_key", None) if hasattr(e, "__dict__") else None
        _report(spec, key, e)
        sys.exit(_EXIT_REPORTED)


def _msg_keys(msg: tuple[Any, list[Any]]) -> list[Any]:
    """The keys of the items of a message (see "Messages" above)."""
    start, items = msg
    if start is not None:
        return list(range(start, start + len(items)))
    return [key for key, _ in items]


def _worker_loop(spec: _WorkerSpec) -> None:
    base = spec.slot * 3
    counters = spec.counters
    fn, inq, outq = spec.fn, spec.inq, spec.outq
    pending = spec.initial
    while True:
        if pending is not None:
            msg, pending = pending, None
        else:
            try:
                msg = inq.get(timeout=_IDLE)
            except Empty:
                if _parent_gone(spec.ppid):
                    return
                continue
            except ShutDown:
                return
        start, items = msg
        counters[base + 1] = start if start is not None else _first(items[0][0])
        counters[base + 2] = len(items)
        if spec.hand is not None:
            spec.hand.put(msg)
        if start is not None and not spec.is_gen:
            # the common case: a block of consecutive items, one result each
            results = []
            for i, value in enumerate(items):
                try:
                    results.append(fn(value))
                except BaseException as e:
                    _tag(e, start + i)
                    raise
            if not _put(outq, (start, results), spec.ppid):
                return
        else:
            pairs = items if start is None else list(zip(range(start, start + len(items)), items))
            out: list[Any] = []
            for key, value in pairs:
                try:
                    if value is _EMPTY:  # keeps its place; one level deeper past a generator
                        out.append((_child_key(key, 0, True) if spec.is_gen else key, value))
                    elif spec.is_gen:
                        i = 0
                        prev: Any = _EMPTY
                        have = False
                        for nxt in fn(value):
                            if have:
                                out.append((_child_key(key, i, False), prev))
                                i += 1
                                if len(out) >= spec.chunksize:
                                    if not _put(outq, (None, out), spec.ppid):
                                        return
                                    out = []
                            prev, have = nxt, True
                        out.append((_child_key(key, i, True), prev))
                    else:
                        out.append((key, fn(value)))
                except BaseException as e:
                    _tag(e, key)
                    raise
            if out and not _put(outq, (None, out), spec.ppid):
                return
        if spec.hand is not None:
            spec.hand.get_nowait()
        counters[base + 2] = 0
        counters[base] += len(items)


def _tag(e: BaseException, key: Any) -> None:
    try:
        e._interlock_key = key  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover
        pass


def _report(spec: _WorkerSpec, key: Any, e: BaseException) -> None:
    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    tb = f'\n"""\n{tb}"""'
    try:
        payload: bytes | None = pickle.dumps(e)
        pickle.loads(payload)  # type: ignore[arg-type]  # some pickle but do not unpickle
    except Exception:
        payload = None
    try:
        spec.control.put(("error", spec.stage, spec.index, key, payload, repr(e), tb), timeout=5)
    except Exception:
        spec.control.put(("error", spec.stage, spec.index, key, None, repr(e)[:1000],
                          tb[-50000:]), timeout=5)


# -------------------------------------------------------------- parent side
@dataclass
class _Stage:
    fn: Callable[..., Any]
    workers: int
    maxsize: int
    chunksize: int
    name: str
    capacity: int | None
    is_gen: bool
    inq: Queue[Any] | None = None
    procs: list[Any] = field(default_factory=list)  # index -> Process
    hands: list[Queue[Any] | None] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)
    finished: bool = False  # every worker exited after its input was shut down


class Pipeline:
    """``Pipeline(source, *, ordered=True, on_worker_death="fail", ...)``

    - ``source``: any iterable (a list, a generator, an endless iterator).
      It is consumed by a thread of the calling process.
    - ``ordered``: results in the order of the source (True) or as they
      complete (False).
    - ``on_worker_death``: ``"fail"``, ``"restart"`` or ``"retry"`` (see the
      module docstring: what happens to the items a killed worker held).
    - ``progress``: per stage done/total, rate and ETA, and a total line, on
      stderr (``progress_stream``): redrawn in place on a terminal, a plain
      line every ``progress_interval`` seconds (default 5) otherwise (a
      shorter run prints nothing); ``False``: nothing at all.
    - ``total``: how many items the source gives, for the totals and ETAs;
      default ``len(source)`` when it has a length, else unknown (the
      progress then shows done and rates only).
    - ``mp_context``: a ``multiprocessing`` context or start method name
      (``"fork"``, ``"spawn"``, ``"forkserver"``); default: the default one.
    - ``max_inflight``: in ordered mode, how many source items may be in the
      pipeline (fed but not yet returned) at once; default: enough to fill
      every queue and worker twice.
    - ``abort_timeout``: seconds terminated workers get before SIGKILL.

    Add stages with :meth:`stage`, then iterate, or call :meth:`run`.  A
    pipeline runs once.  Use it as a context manager (or exhaust it) to be
    sure everything stops if you leave the loop early.

    Raises:
        Exception: (while iterating) the exception a worker raised, re-raised in the caller
            with the worker's traceback as ``__cause__``
            (:class:`RemoteTraceback`); everything is stopped first.
        WorkerDiedError: ``on_worker_death="fail"`` and a worker was killed
            from outside.
        KeyboardInterrupt: Ctrl-C: every worker is stopped within about a
            second, every queue removed.
        RuntimeError: the pipeline was already run.
        ValueError: no stage.

    When a process dies: a worker killed from outside is noticed through
    its process sentinel and handled by ``on_worker_death``: ``"fail"``
    stops the pipeline (:class:`WorkerDiedError`), ``"restart"`` replaces
    the worker and drops the items it held (listed in ``lost``,
    :class:`WorkerDiedWarning`), ``"retry"`` replaces it and gives the new
    worker those items again. If the *parent* dies, idle workers notice
    within about a second and exit.
    """

    def __init__(
        self,
        source: Iterable[Any],
        *,
        ordered: bool = True,
        on_worker_death: str = "fail",
        progress: bool | None = None,
        mp_context: Any = None,
        max_inflight: int | None = None,
        abort_timeout: float = 1.0,
        progress_stream: Any = None,
        total: int | None = None,
        progress_interval: float = 5.0,
    ) -> None:
        if on_worker_death not in _DEATH_MODES:
            raise ValueError(f"on_worker_death must be one of {_DEATH_MODES}, "
                             f"not {on_worker_death!r}")
        self._source = source
        self.ordered = ordered
        self.on_worker_death = on_worker_death
        if mp_context is None or isinstance(mp_context, str):
            mp_context = multiprocessing.get_context(mp_context)
        self._ctx = mp_context
        self._max_inflight = max_inflight
        self._abort_timeout = abort_timeout
        if total is None:
            try:
                total = len(source)  # type: ignore[arg-type]
            except TypeError:  # no length: an iterator, a generator
                total = None
        elif isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise ValueError(f"total must be an int >= 0 or None, not {total!r}")
        #: Items the source gives, if known (``total=`` or ``len(source)``).
        self.total: int | None = total
        self._progress = ProgressBoard(progress_stream, enabled=progress,
                                       log_interval=progress_interval)
        self._stages: list[_Stage] = []
        self._started = False
        self._done = False
        self._results_q: Queue[Any] | None = None
        self._control: Queue[Any] | None = None
        self._feeder: threading.Thread | None = None
        self._stop = threading.Event()
        # The feeder's position, kept here so that a feeder thread can stop
        # at a safe point and a new one carry on where it left off (see
        # _respawn_pending: no thread of ours may be alive at a fork()).
        self._it: Iterator[Any] | None = None
        self._seq = 0
        self._unsent: tuple[int, list[Any]] | None = None  # taken, not yet put
        self._exhausted = False
        self._pause = False  # the feeder is asked to stop at a safe point
        self._parked = False  # ... and did: start a new one to carry on
        # Restarts waiting for the feeder to park (fork mode):
        # (stage, worker) -> the message the new worker is to retry, or None.
        self._respawn: dict[tuple[int, int], Any] = {}
        self._feed_error: BaseException | None = None
        # Ordered mode: the source may run at most _window items ahead of the
        # first item not yet returned (_returned); the feeder waits on the
        # condition.
        self._window: int | None = None
        self._window_cond = threading.Condition()
        self._returned = 0
        self._all_queues: list[Queue[Any]] = []
        #: Source items taken so far (read it to watch backpressure work).
        self.fed = 0
        self._input_done = False  # the feeder has shut the first queue down
        #: Keys of items dropped because the worker holding them died
        #: (``on_worker_death="restart"``).
        self.lost: list[Any] = []
        #: How many workers died and were replaced.
        self.restarts = 0

    # ------------------------------------------------------------ building
    def stage(self, fn: Callable[..., Any], workers: int = 1, *, maxsize: int | None = None,
              chunksize: int = 1, name: str | None = None,
              capacity: int | None = None) -> "Pipeline":
        """Add a stage: ``workers`` processes each running ``fn`` on items.

        ``fn(item) -> result``, or a generator function ``fn(item)`` yielding
        zero or more results.  ``maxsize``: bound of the stage's input queue,
        in messages (default ``2 * workers``); ``chunksize``: items per
        message (like ``Pool.imap``'s: raise it for cheap functions);
        ``capacity``: bytes of the input queue (default 4 MiB; a message
        must fit).  Returns the pipeline, to chain calls.

        Raises:
            RuntimeError: the pipeline has started.
            TypeError: ``fn`` is not callable.
            ValueError: ``workers``, ``chunksize`` or ``maxsize`` below 1.
        """
        if self._started:
            raise RuntimeError("cannot add a stage to a pipeline that has started")
        if not callable(fn):
            raise TypeError(f"a stage needs a callable, not {type(fn).__name__}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an int >= 1, not {workers!r}")
        if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize must be an int >= 1, not {chunksize!r}")
        if maxsize is None:
            maxsize = 2 * workers
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1 (queues are bounded), not {maxsize}")
        name = name or getattr(fn, "__name__", None) or f"stage{len(self._stages)}"
        if name in {s.name for s in self._stages}:
            name = f"{name}{len(self._stages)}"
        self._stages.append(_Stage(fn, workers, maxsize, chunksize, name, capacity,
                                   inspect.isgeneratorfunction(fn)))
        return self

    # ------------------------------------------------------------ running
    def __iter__(self) -> Iterator[Any]:
        if self._started:
            raise RuntimeError("a Pipeline runs once; make a new one")
        if not self._stages:
            raise ValueError("a pipeline needs at least one stage")
        self._started = True
        return self._run()

    def run(self) -> list[Any]:
        """Run to the end; return every result (a list). Raises what
        iterating raises (see the class)."""
        return list(self)

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop everything now (if running) and remove every queue."""
        if self._started and not self._done:
            self._abort()

    @property
    def workers(self) -> list[tuple[str, int, int | None]]:
        """``(stage name, worker index, pid)`` of every current worker."""
        return [(s.name, i, p.pid) for s in self._stages for i, p in enumerate(s.procs)]

    def stats(self) -> list[StageProgress]:
        """Per stage, now: items done, workers alive, input queue depth and
        bound (what the progress board shows; a racy snapshot)."""
        if not self._started or not hasattr(self, "_counters"):
            return [StageProgress(s.name, 0, 0, s.workers, 0, s.maxsize, t)
                    for s, t in zip(self._stages, self._totals())]
        return self._progress_rows()

    def _totals(self) -> list[int | None]:
        """Items each stage will get: the source's total, up to the first
        generator stage (it yields any number of results per item)."""
        out: list[int | None] = []
        total = self.total
        for s in self._stages:
            out.append(total)
            if s.is_gen:
                total = None
        return out

    # ------------------------------------------------------------ internals
    def _depth(self) -> int:
        return 1 + sum(s.is_gen for s in self._stages)

    def _start(self) -> None:
        ctx = self._ctx
        nslots = sum(s.workers for s in self._stages)
        self._counters = ctx.RawArray("q", 3 * nslots)
        self._control = Queue(capacity=_CONTROL_CAPACITY)
        self._all_queues.append(self._control)
        for s in self._stages:
            s.inq = Queue(s.maxsize, capacity=s.capacity)
            self._all_queues.append(s.inq)
        last = self._stages[-1]
        self._results_q = Queue(max(2, last.maxsize), capacity=last.capacity)
        self._all_queues.append(self._results_q)
        slot = 0
        for k, s in enumerate(self._stages):
            for i in range(s.workers):
                s.slots.append(slot)
                slot += 1
                hand = Queue(1, capacity=s.capacity) if self.on_worker_death != "fail" else None
                if hand is not None:
                    self._all_queues.append(hand)
                s.hands.append(hand)
                s.procs.append(self._spawn(k, i, None))
        if self.ordered:
            window = self._max_inflight or sum(
                (s.maxsize + 2 * s.workers) * s.chunksize for s in self._stages) + 16
            self._window = max(window, self._stages[0].chunksize)
        self._progress.start()
        self._start_feeder()

    def _start_feeder(self) -> None:
        self._feeder = threading.Thread(target=self._feed, name="interlock-pipeline-feeder",
                                        daemon=True)
        self._feeder.start()

    def _spawn(self, k: int, i: int, initial: list[Any] | None) -> Any:
        s = self._stages[k]
        outq = self._stages[k + 1].inq if k + 1 < len(self._stages) else self._results_q
        assert s.inq is not None and outq is not None and self._control is not None
        spec = _WorkerSpec(s.fn, s.is_gen, k, i, s.slots[i], s.inq, outq, self._control,
                           self._counters, s.hands[i], initial,
                           (self._stages[k + 1].chunksize if k + 1 < len(self._stages)
                            else s.chunksize), os.getpid())
        p = self._ctx.Process(target=_worker_main, args=(spec,),
                              name=f"interlock-{s.name}-{i}", daemon=True)
        p.start()
        return p

    def _feed(self) -> None:
        """Feed the source into the first queue, until it is exhausted, the
        pipeline stops, or (``_pause``) a restart needs the process free of
        threads: then it returns at a safe point (not inside the source's
        code, no message half sent), its position kept in ``self``."""
        q = self._stages[0].inq
        assert q is not None
        chunk = self._stages[0].chunksize
        window = self._window
        try:
            if self._it is None:
                self._it = iter(self._source)
            it = self._it
            while not self._stop.is_set():
                if self._pause:
                    self._parked = True
                    return
                if self._unsent is None and not self._exhausted:
                    if window is not None:
                        with self._window_cond:
                            while self._seq + chunk - self._returned > window:
                                if self._stop.is_set():
                                    return
                                if self._pause:
                                    self._parked = True
                                    return
                                self._window_cond.wait(_POLL)
                    items = list(itertools.islice(it, chunk))
                    if items:
                        self._unsent = (self._seq, items)
                        self._seq += len(items)
                        self.fed = self._seq
                    self._exhausted = len(items) < chunk
                while self._unsent is not None:
                    try:
                        q.put(self._unsent, timeout=_POLL)
                        self._unsent = None
                    except ShutDown:
                        return
                    except Exception as e:
                        if type(e).__name__ != "Full":
                            raise
                        if self._stop.is_set():
                            return
                        if self._pause:
                            self._parked = True
                            return
                if self._exhausted:
                    break  # the source is exhausted
            q.shutdown()
            self._input_done = True
        except ShutDown:
            return
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            self._feed_error = e

    def _run(self) -> Iterator[Any]:
        try:
            self._start()
            yield from self._loop()
        except BaseException:
            self._abort()
            raise
        self._shutdown()

    def _loop(self) -> Iterator[Any]:
        assert self._results_q is not None
        results = self._results_q
        depth = self._depth()
        # Ordered mode: results wait in ``buffer`` until their turn, keyed by
        # their key without the "last" bits (the collector cannot know in
        # advance whether the item it waits for is the last of its parent).
        buffer: dict[Any, tuple[Any, Any]] = {}
        strip = _strip if depth > 1 else None
        expect: Any = 0 if depth == 1 else (0,) * depth
        skipped: dict[Any, Any] = {}  # stripped -> key of dropped items (restart mode)
        next_check = 0.0
        closed = False
        while True:
            try:
                msgs = results.get_many(64, timeout=_TAIL_POLL if self._input_done else _POLL)
            except Empty:
                msgs = []
            except ShutDown:
                closed = True
                msgs = []
            for start, items in msgs:
                if not self.ordered:
                    if start is not None:
                        yield from items
                    else:
                        for _, value in items:
                            if value is not _EMPTY:
                                yield value
                    continue
                if start is not None:  # a block of consecutive results (depth 1)
                    if start >= expect:  # (else: a duplicate from a retried item)
                        buffer[start] = (None, items)
                    continue
                for key, value in items:
                    sk = strip(key) if strip is not None else key
                    if sk < expect:
                        continue  # a duplicate from a retried item, already delivered
                    buffer[sk] = (key, value)
            if self.ordered and (buffer or skipped):
                first = _first(expect)
                while True:
                    if expect in buffer:
                        done_key, value = buffer.pop(expect)
                        if done_key is None:  # a block
                            yield from value
                            expect += len(value)
                            continue
                        if value is not _EMPTY:
                            yield value
                    else:
                        done_key = self._skipped_prefix(expect, skipped)
                        if done_key is None:
                            break
                    expect = _next_key(done_key, depth)
                if self._window is not None and _first(expect) != first:
                    with self._window_cond:
                        self._returned = _first(expect)
                        self._window_cond.notify()
            now = time.monotonic()
            if closed or now >= next_check or (self._input_done and not msgs):
                next_check = now + _POLL
                self._supervise(skipped)
            if closed:
                break
        if buffer:  # only if an item vanished in a kill's tiny window (see docs)
            warnings.warn(f"{len(buffer)} result(s) arrived after a gap in the order (an "
                          "item was lost with a killed worker); delivering them anyway",
                          WorkerDiedWarning, stacklevel=3)
            for sk in sorted(buffer):
                if buffer[sk][1] is not _EMPTY:
                    yield buffer[sk][1]

    @staticmethod
    def _skipped_prefix(expect: Any, skipped: dict[Any, Any]) -> Any:
        """The key of the dropped item whose subtree ``expect`` starts, if any."""
        if not skipped:
            return None
        if not isinstance(expect, tuple):
            return skipped.get(expect)
        if expect[0] in skipped:
            return (expect[0],)
        for n in range(2, len(expect) + 1):
            k = skipped.get(expect[:n])
            if k is not None:
                return k
        return None

    def _progress_rows(self) -> list[StageProgress]:
        rows = []
        for s, total in zip(self._stages, self._totals()):
            done = sum(self._counters[3 * sl] for sl in s.slots)
            alive = sum(p.exitcode is None for p in s.procs)
            try:
                depth = s.inq.qsize() if s.inq is not None else 0
            except ValueError:
                depth = 0
            rows.append(StageProgress(s.name, done, alive, s.workers, depth, s.maxsize, total))
        return rows

    def _supervise(self, skipped: dict[Any, Any]) -> None:
        """Errors, deaths, end of stages; raise to abort."""
        assert self._control is not None
        exited = [(k, i, p) for k, s in enumerate(self._stages) for i, p in enumerate(s.procs)
                  if p.exitcode is not None]
        self._check_control()  # after looking at exits: a reported error wins
        if self._feed_error is not None:
            raise self._feed_error
        for k, i, p in exited:
            s = self._stages[k]
            if p.exitcode == 0 or (k, i) in self._respawn:
                continue
            p.join()
            self._worker_died(k, i, p, skipped)
        self._respawn_pending()
        # Shut queue k+1 down once every worker of stage k is gone after its
        # input was shut down (stages end in order).
        for k, s in enumerate(self._stages):
            if s.finished:
                continue
            if k > 0 and not self._stages[k - 1].finished:
                break
            if not all(p.exitcode == 0 for p in s.procs):
                break
            s.finished = True
            nxt = self._stages[k + 1].inq if k + 1 < len(self._stages) else self._results_q
            assert nxt is not None
            nxt.shutdown()
        self._progress.update(self._progress_rows())

    def _check_control(self) -> None:
        assert self._control is not None
        try:
            msg = self._control.get_nowait()
        except (Empty, ShutDown):
            return
        _, k, i, key, payload, text, tb = msg
        exc: BaseException
        try:
            exc = pickle.loads(payload) if payload is not None else None  # type: ignore[assignment]
        except Exception:
            exc = None  # type: ignore[assignment]
        if exc is None:
            exc = RuntimeError(f"{text} (the exception could not be sent back as it was)")
        exc.__cause__ = RemoteTraceback(tb)
        try:
            exc.pipeline_stage = self._stages[k].name  # type: ignore[attr-defined]
            exc.pipeline_item = key  # type: ignore[attr-defined]
        except AttributeError:  # pragma: no cover - exceptions with __slots__
            pass
        raise exc

    def _worker_died(self, k: int, i: int, p: Any, skipped: dict[Any, Any]) -> None:
        s = self._stages[k]
        slot = s.slots[i]
        held_n = self._counters[3 * slot + 2]
        held_first = self._counters[3 * slot + 1]
        how = (f"killed by {signal.Signals(-p.exitcode).name}" if p.exitcode < 0
               else f"exited with code {p.exitcode}")
        hand = s.hands[i]
        held_msg = None
        if hand is not None:
            try:
                held_msg = hand.get_nowait()
            except (Empty, ShutDown):
                held_msg = None
        held_keys = _msg_keys(held_msg) if held_msg is not None else []
        what = (f"holding {held_n} item(s) from #{held_first}" if held_n
                else "holding no item")
        where = f"worker {i} of stage {s.name!r} (pid {p.pid}) {how}, {what}"
        if self.on_worker_death == "fail":
            raise WorkerDiedError(f"{where}; the pipeline was stopped "
                                  "(on_worker_death='fail')", s.name, i, p.pid or 0,
                                  p.exitcode, held_keys or ([held_first] if held_n else []))
        self.restarts += 1
        if self.on_worker_death == "retry":
            warnings.warn(f"{where}; restarted it, and it retries what it held",
                          WorkerDiedWarning, stacklevel=4)
        else:
            warnings.warn(f"{where}; restarted it, the item(s) it held are lost",
                          WorkerDiedWarning, stacklevel=4)
            self.lost.extend(held_keys)
            for key in held_keys:
                skipped[_strip(key) if isinstance(key, tuple) else key] = key
            held_msg = None
        self._counters[3 * slot + 2] = 0
        self._respawn[(k, i)] = held_msg
        self._respawn_pending()

    def _respawn_pending(self) -> None:
        """Start the replacement workers that wait.  Under fork, only once
        the feeder thread has stopped at a safe point: a process that forks
        while one of its threads may hold a lock (the source's, the
        allocator's, a logging handler's) can give the child that lock held
        forever (Python >= 3.12 warns of it).  The feeder is asked to park
        and waited for one poll; if it is still in the source's own code the
        restart waits for the next supervision round.  Spawn and forkserver
        start a fresh interpreter: no waiting."""
        if not self._respawn:
            return
        forks = self._ctx.get_start_method() == "fork"
        feeder = self._feeder
        if forks and feeder is not None and feeder.is_alive():
            self._pause = True
            with self._window_cond:
                self._window_cond.notify_all()
            feeder.join(_POLL)
            if feeder.is_alive():
                return  # in the source's code: try again next round
        for (k, i), held_msg in list(self._respawn.items()):
            self._stages[k].procs[i] = self._spawn(k, i, held_msg)
            del self._respawn[(k, i)]
        self._pause = False
        if self._parked and not self._stop.is_set():
            self._parked = False
            self._start_feeder()

    def _shutdown(self) -> None:
        """Normal end: everything was delivered; workers have exited."""
        self._done = True
        self._progress.close(self._progress_rows())
        for s in self._stages:
            for p in s.procs:
                p.join(self._abort_timeout)
        self._stop_feeder()
        self._terminate()
        self._detach_all()

    def _abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._stop.set()
        for q in self._all_queues:
            try:
                q.shutdown(immediate=True)
            except ValueError:  # already detached
                pass
        self._terminate()
        self._stop_feeder()
        if self._stages and hasattr(self, "_counters"):
            self._progress.close(self._progress_rows(), outcome="stopped after")
        self._detach_all()

    def _stop_feeder(self) -> None:
        self._stop.set()
        with self._window_cond:
            self._window_cond.notify_all()
        if self._feeder is not None and self._feeder is not threading.current_thread():
            # The source may be blocked in its own code: do not wait forever
            # (the thread is a daemon).
            self._feeder.join(self._abort_timeout)

    def _terminate(self) -> None:
        procs = [p for s in self._stages for p in s.procs]
        for p in procs:
            if p.exitcode is None:
                p.terminate()
        deadline = time.monotonic() + self._abort_timeout
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in procs:
            if p.exitcode is None:
                p.kill()
                p.join()

    def _detach_all(self) -> None:
        for q in self._all_queues:
            try:
                q.detach()
            except Exception:
                pass
        self._all_queues.clear()
