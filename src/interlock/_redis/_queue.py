"""Queue, JoinableQueue and SimpleQueue on Redis: one Stream and a consumer group.

The same API and semantics as ``interlock.Queue`` wherever Redis allows;
the differences come from what a network server must face that shared
memory need not: consumers on other machines that die, or are cut off,
while they hold messages.

Layout (``<p>`` is ``<prefix>:{<name>}``):

- ``<p>:s``: a Stream.  Each message is one entry; the consumer group
  ``g`` hands each entry to one consumer.  An entry stays in the stream,
  in the taker's pending list, until it is *acknowledged*; then it is
  deleted.  So ``XLEN - pending`` is :meth:`qsize`, and ``XLEN`` the
  unfinished count that :meth:`JoinableQueue.join` waits on.
- ``<p>:meta``: kind, epoch, maxsize, closed.
- ``<p>:ev``: an event stream that blocked producers and joiners wait on
  (``XREAD BLOCK`` from the last event they saw: nothing is missed).
- ``<p>:hb:<consumer>``: a consumer's heartbeat, a key with the lease as
  its TTL, renewed by this process's keeper thread.

Delivery is **at least once**.  A message is acknowledged

- by a plain :class:`Queue`: when the thread that took it calls ``get()``
  or ``get_many()`` again, calls :meth:`Queue.ack`, or the queue object is
  detached (explicitly, or at a clean interpreter exit);
- by a :class:`JoinableQueue`: by :meth:`~JoinableQueue.task_done`, oldest
  first (``task_done`` must be called in the process that took the item).

A consumer whose heartbeat runs out (process killed, machine gone, paused
or cut off for longer than the lease) loses its claim: the next ``get()``
anywhere takes its unacknowledged messages, oldest first, before new ones.
Such a message may therefore be processed twice (once by a consumer that
was only slow); it is never silently dropped.  Blocked consumers look for
dead ones at least once per lease.

``close()``: puts are refused at once; consumers drain what was put, then
get :class:`QueueClosed`.  The close is an entry at the end of the stream,
which each consumer that receives it replaces by a fresh one, so every
consumer, blocked or not, meets it in turn.
"""
from __future__ import annotations

import atexit
import functools
import os
import pickle
import threading
import uuid
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .._errors import Empty, Full, QueueClosed
from . import _client
from ._client import Backend, Lease, _ObjectError, deadline_after, remaining

MAX_BATCH = 65536


@dataclass(frozen=True)
class RedisQueueStatistics:
    """A snapshot of a Redis queue (``Queue.statistics()``)."""

    name: str
    depth: int
    unfinished: int
    maxsize: int
    closed: bool
    pending: int
    consumers: int
    held_here: int


def _encode(obj: Any, out: list[Any]) -> None:
    """Append one item's ``kind, count, values...`` to the FCALL arguments."""
    if type(obj) is bytes:
        out += (b"r", 1, obj)
        return
    if type(obj) is bytearray:
        out += (b"a", 1, obj)
        return
    bufs: list[pickle.PickleBuffer] = []
    try:
        data = pickle.dumps(obj, protocol=5, buffer_callback=bufs.append)
        views = [b.raw() for b in bufs]
    except BufferError:  # a non-contiguous buffer: in-band, then
        data, views = pickle.dumps(obj, protocol=5), []
    out += (b"p", 1 + len(views), data, *views)


def _decode(fields: list[bytes]) -> Any:
    kind, value = fields[0], fields[1]
    if kind == b"r":
        return value
    if kind == b"a":
        return bytearray(value)
    # Out-of-band buffers come back writable, as from the local queue.
    return pickle.loads(value, buffers=[bytearray(v) for v in fields[3::2]])


def _open_mode(create: bool | None) -> str:
    return "any" if create is None else ("new" if create else "existing")


def _object_error(e: _ObjectError, kind: str, name: str) -> Exception:
    if e.what == "EXISTS":
        return FileExistsError(f"{kind} {name!r} already exists (create=True)")
    if e.what == "MISSING":
        return FileNotFoundError(f"no {kind} {name!r} on the server (create=False)")
    if e.what == "KIND":
        return ValueError(f"{name!r} exists on the server as a {e.detail}, not a {kind}")
    return RuntimeError(f"{e.what} {e.detail}")


_live: weakref.WeakSet[Queue] = weakref.WeakSet()


class Queue:
    """A FIFO queue on a Redis server, shared by every process that names it.

    ``backend.Queue(maxsize=0, *, name=None, create=None)`` (``backend`` from
    :func:`interlock.connect`).  ``maxsize`` bounds the messages waiting to
    be taken (0: no bound); ``name`` and ``create`` as for the local queue.
    """

    _kind = "queue"
    _joinable = False

    def __init__(self, backend: Backend, maxsize: int = 0, *, name: str | None = None,
                 create: bool | None = None) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be an int, not {type(maxsize).__name__}")
        maxsize = max(0, maxsize)
        self._backend = backend
        self._name = name if name is not None else f"anon-{uuid.uuid4().hex[:16]}"
        b, n = backend, self._name
        self._keys = [b.key(n, "meta"), b.key(n, "s"), b.key(n, "ev"), b.key(n, "hb:")]
        try:
            epoch, have_max, _ = backend.fcall(
                "il_open", self._keys[:3],
                ["queue", uuid.uuid4().hex, _open_mode(create), maxsize, int(self._joinable)])
        except _ObjectError as e:
            raise _object_error(e, "queue", self._name) from None
        self._epoch = epoch
        self._maxsize = int(have_max)
        if maxsize and maxsize != self._maxsize:
            raise ValueError(f"queue {self._name!r} exists with maxsize={self._maxsize}; "
                             f"asked for maxsize={maxsize}")
        self._mutex = threading.Lock()
        self._held: dict[int, list[bytes]] = {}  # thread -> ids taken, not acked
        self._held_order: deque[bytes] = deque()  # JoinableQueue: ids, oldest first
        self._consumer: str | None = None
        self._beat: Lease | None = None
        self._pid = os.getpid()
        self._detached = False
        _live.add(self)

    # -- identity -----------------------------------------------------------
    @property
    def name(self) -> str:
        """The queue's name (pass it as ``name=`` to attach from anywhere)."""
        return self._name

    @property
    def maxsize(self) -> int:
        """The bound on the number of items (0: none)."""
        return self._maxsize

    @property
    def backend(self) -> Backend:
        """The backend (server connection) the queue lives on."""
        return self._backend

    def __reduce__(self) -> Any:
        from .._connect import _rebuild
        return (_rebuild, (self._backend.url, self._backend.options(), type(self).__name__,
                           self._name))

    def __repr__(self) -> str:
        return f"<interlock.redis.{type(self).__name__} name={self._name!r} on {self._backend.url}>"

    def _check(self) -> None:
        if self._detached:
            raise ValueError("operation on a closed (detached) interlock object")
        if self._pid != os.getpid():
            # A forked child is a new consumer: its parent's messages are not its own.
            self._pid = os.getpid()
            self._held.clear()
            self._held_order.clear()
            self._consumer = None
            self._beat = None

    def _consumer_name(self) -> str:
        if self._consumer is None:
            self._consumer = f"{_client.HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
            self._beat = Lease(self._keys[3] + self._consumer, "beat", "", owner=self)
            self._backend.hold(self._beat)
        return self._consumer

    # -- put ----------------------------------------------------------------
    def put(self, obj: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put ``obj`` at the tail; wait for room if the queue is full."""
        self._put([obj], block, timeout, single=True)

    def put_nowait(self, obj: Any) -> None:
        """``put(obj, block=False)``: ``queue.Full`` at once if there is no room."""
        self._put([obj], False, None, single=True)

    def put_many(self, items: Iterable[Any], block: bool = True,
                 timeout: float | None = None) -> None:
        """Put every item, in order, in one round trip when room allows.
        With ``block=False``: all or nothing.  On a timeout, the ``Full``
        raised has ``put_count``: how many of the items went in."""
        self._put(list(items), block, timeout, single=False)

    def _put(self, items: list[Any], block: bool, timeout: float | None, single: bool) -> None:
        self._check()
        deadline = deadline_after(block, timeout)
        if not items:
            return
        encoded: list[list[Any]] = []
        for obj in items:
            one: list[Any] = []
            _encode(obj, one)
            encoded.append(one)
        done = 0
        while True:
            args: list[Any] = [self._epoch, 1 if block else 0, len(encoded) - done]
            for one in encoded[done:]:
                args += one
            put, event = self._backend.fcall("il_q_put", self._keys[:3], args)
            if put < 0:
                raise QueueClosed("put() on a closed queue")
            done += put
            if done == len(encoded):
                return
            left = remaining(deadline)
            if left is not None and left <= 0:
                # The local queue's messages, word for word.
                if block and (timeout is None or timeout > 0):
                    err = Full("queue is full (timed out)")
                elif len(encoded) > 1:
                    err = Full("not enough room in the queue for the whole batch")
                else:
                    err = Full("queue is full")
                if not single:
                    err.put_count = done  # type: ignore[attr-defined]
                raise err
            self._wait_event(event, left)

    def _wait_event(self, last: bytes, left: float | None) -> None:
        """Sleep until an event newer than ``last`` (or a slice passes)."""
        ms = int(1000 * min(self._backend.slice, left if left is not None else 1e9))
        self._backend.blocking(
            lambda: self._backend.client.xread({self._keys[2]: last}, count=1, block=max(ms, 1)))

    # -- get ----------------------------------------------------------------
    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the oldest item (``Empty`` if none in time;
        ``QueueClosed`` once closed and drained)."""
        return self._get(1, block, timeout)[0]

    def get_nowait(self) -> Any:
        """``get(block=False)``: ``queue.Empty`` at once if there is no item."""
        return self._get(1, False, None)[0]

    def get_many(self, max_items: int = 1024, block: bool = True,
                 timeout: float | None = None) -> list[Any]:
        """Wait for at least one item, then return up to ``max_items``,
        oldest first, in one round trip."""
        if isinstance(max_items, bool) or not isinstance(max_items, int):
            raise TypeError(f"'max_items' must be an int, not {type(max_items).__name__}")
        if max_items < 1:
            raise ValueError("'max_items' must be >= 1")
        return self._get(min(max_items, MAX_BATCH), block, timeout)

    def _acks_for_get(self) -> list[bytes]:
        if self._joinable:
            return []
        with self._mutex:
            return self._held.pop(threading.get_ident(), [])

    def _get(self, count: int, block: bool, timeout: float | None) -> list[Any]:
        self._check()
        deadline = deadline_after(block, timeout)
        me = self._consumer_name()
        acks = self._acks_for_get()
        lease_ms = int(self._backend.lease * 1000)
        while True:
            try:
                entries = self._backend.fcall(
                    "il_q_take", self._keys, [self._epoch, me, count, lease_ms, len(acks), *acks])
            except BaseException:
                if acks:  # not acknowledged: keep them ours, to ack next time
                    with self._mutex:
                        self._held.setdefault(threading.get_ident(), [])[:0] = acks
                raise
            acks = []
            items = self._accept(entries)
            if items:
                return items
            if any(f and f[0] == b"c" for _, f in entries):
                raise QueueClosed("get() on a closed queue: it is closed and drained")
            left = remaining(deadline)
            if left is not None and left <= 0:
                raise Empty
            ms = int(1000 * min(self._backend.slice, left if left is not None else 1e9))
            got = self._backend.blocking(functools.partial(
                self._backend.client.xreadgroup, "g", me, {self._keys[1]: ">"},
                count=count, block=max(ms, 1)))
            if not got:
                continue  # a slice passed: look again (and for dead consumers)
            # redis-py hands fields as a dict (our field names are unique).
            entries = [[i, [x for kv in (f or {}).items() for x in kv]] for i, f in got[0][1]]
            marker = next((i for i, f in entries if f and f[0] == b"c"), b"")
            items = self._accept([e for e in entries if not e[1] or e[1][0] != b"c"])
            if marker or (items and self._maxsize):
                self._backend.fcall("il_q_taken", self._keys[:3],
                                    [self._epoch, marker, 1 if items and self._maxsize else 0])
            if items:
                return items
            if marker:
                raise QueueClosed("get() on a closed queue: it is closed and drained")

    def _accept(self, entries: list[Any]) -> list[Any]:
        """Record real entries as held by this thread, and decode them."""
        real = [(i, f) for i, f in entries if f and f[0] != b"c"]
        if not real:
            return []
        ids = [i for i, _ in real]
        with self._mutex:
            if self._joinable:
                self._held_order.extend(ids)
            else:
                self._held.setdefault(threading.get_ident(), []).extend(ids)
        out = []
        for _, f in real:
            out.append(_decode(f))
        return out

    def ack(self) -> None:
        """Acknowledge every message this thread took and has not yet
        acknowledged (``get()`` does this for the previous ones by itself)."""
        self._check()
        ids = self._acks_for_get()
        if ids:
            self._backend.fcall("il_q_ack", self._keys[:3], [self._epoch, *ids])

    # -- state --------------------------------------------------------------
    def _state(self) -> list[Any]:
        self._check()
        return list(self._backend.fcall("il_q_state", self._keys[:3], [self._epoch]))

    def qsize(self) -> int:
        """Messages waiting to be taken (taken but unacknowledged ones excluded)."""
        return int(self._state()[0])

    def empty(self) -> bool:
        """``qsize() == 0``."""
        return self.qsize() == 0

    def full(self) -> bool:
        """True if ``maxsize`` items are in the queue."""
        return bool(self._maxsize) and self.qsize() >= self._maxsize

    def close(self) -> None:
        """Close the queue for every process (see the module docstring)."""
        self._check()
        self._backend.fcall("il_q_close", self._keys[:3], [self._epoch])

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called, by any process."""
        return bool(self._state()[2])

    def join_thread(self) -> None:
        """Kept for ``multiprocessing`` compatibility: there is no feeder thread."""

    def cancel_join_thread(self) -> None:
        """Kept for ``multiprocessing`` compatibility: there is no feeder thread."""

    def __iter__(self) -> Iterator[Any]:
        """Yield items until the queue is closed and drained."""
        while True:
            try:
                yield self.get()
            except QueueClosed:
                return

    def statistics(self) -> RedisQueueStatistics:
        """A snapshot: depth, pending deliveries, consumers (see :class:`RedisQueueStatistics`).

        Raises:
            ConnectionLost: the server cannot be reached.
        """
        depth, unfinished, closed, maxsize, pending, consumers, _ = self._state()
        with self._mutex:
            held = len(self._held_order) + sum(len(v) for v in self._held.values())
        return RedisQueueStatistics(self._name, int(depth), int(unfinished), int(maxsize),
                                    bool(closed), int(pending), int(consumers), held)

    # -- lifetime -----------------------------------------------------------
    def detach(self) -> None:
        """End this object's use of the queue, cleanly: a plain Queue
        acknowledges what it took (a JoinableQueue leaves what was not
        ``task_done`` to be delivered again), and the heartbeat stops at
        once so that anything still held is re-delivered without waiting for
        the lease.  Idempotent."""
        if self._detached or self._pid != os.getpid():
            self._detached = True
            return
        try:
            if not self._joinable:
                with self._mutex:
                    ids = [i for v in self._held.values() for i in v]
                    self._held.clear()
                if ids:
                    self._backend.fcall("il_q_ack", self._keys[:3], [self._epoch, *ids])
            if self._beat is not None:
                self._backend.drop(self._beat)
                self._backend.blocking(lambda: self._backend.client.delete(self._beat.key))  # type: ignore[union-attr]
        finally:
            self._detached = True

    def unlink(self) -> None:
        """Delete the queue from the server (its messages with it)."""
        self._backend.blocking(lambda: self._backend.client.delete(*self._keys[:3]))
        self.detach()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()


class JoinableQueue(Queue):
    """A :class:`Queue` with ``task_done()`` and ``join()``.

    ``task_done()`` acknowledges the oldest message this process took and has
    not yet marked done; ``join()`` waits until every message put has been
    acknowledged.  A message re-delivered after its consumer died is counted
    once: it is still the same unfinished message.
    """

    _kind = "queue"
    _joinable = True

    def task_done(self) -> None:
        """Mark one item taken by ``get()`` as processed (acknowledge it).

        Raises:
            ValueError: called more times than items were taken.
            ConnectionLost: the server cannot be reached.
        """
        self._check()
        with self._mutex:
            if not self._held_order:
                raise ValueError("task_done() called too many times "
                                 "(or for items taken by another process)")
            mid = self._held_order.popleft()
        self._backend.fcall("il_q_ack", self._keys[:3], [self._epoch, mid])

    def join(self, timeout: float | None = None) -> bool:
        """Block until every item put has been marked done.  Returns False if
        ``timeout`` passed first."""
        deadline = deadline_after(True, timeout)
        while True:
            st = self._state()
            if int(st[1]) <= 0:
                return True
            left = remaining(deadline)
            if left is not None and left <= 0:
                return False
            self._wait_event(st[6], left)

    @property
    def unfinished_tasks(self) -> int:
        """Items put and not yet marked done (a snapshot)."""
        return int(self._state()[1])


class SimpleQueue(Queue):
    """``multiprocessing.SimpleQueue``: an unbounded :class:`Queue`."""

    def __init__(self, backend: Backend, *, name: str | None = None,
                 create: bool | None = None) -> None:
        super().__init__(backend, 0, name=name, create=create)


def _detach_all() -> None:
    for q in list(_live):
        try:
            q.detach()
        except Exception:
            pass


atexit.register(_detach_all)
