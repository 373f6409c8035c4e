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

The consumer is per process, backend and queue (not per ``Queue`` object):
every object of this process for the same queue shares its identity, its
held messages and its heartbeat, so a temporary ``Queue`` made for one
``get()`` acknowledges, at the next ``get()`` of its thread, what the last
one took.  A consumer's heartbeat and its messages' idle times are renewed
by the keeper; a failed acknowledgement is kept and sent again by the next
call and by the keeper.

A consumer whose heartbeat runs out (process killed, machine gone, paused
or cut off for longer than the lease) loses its claim: the next reclaim
pass (at most every half lease, in any ``get()``) takes *all* its
unacknowledged messages, before new ones, and so does any message idle
longer than the lease (its live holder lost track of it: ``XAUTOCLAIM``).
A consumer whose take reply was lost (connection dropped) re-reads its own
pending list on its next take.  Such a message may therefore be processed
twice (once by a consumer that was only slow); it is never silently
dropped.  Blocked consumers look for dead ones when a pass is due (a
blocked read ends then).

``shutdown(immediate=False)``: puts are refused at once; consumers drain
what was put, then get :data:`~interlock.ShutDown`.  The shutdown is an
entry at the end of the stream (the close marker), which each consumer that
receives it replaces by a fresh one, so every consumer, blocked or not,
meets it in turn.  ``immediate=True`` also deletes every entry not yet
delivered and every entry a dead consumer held, in the same function call,
so the marker is next for everyone.  ``close()`` is
``multiprocessing``'s: this object puts and gets no more; nothing on the
server changes.
"""
from __future__ import annotations

import atexit
import os
import warnings
import pickle
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import Empty, Full, QueueClosed, ShutDown
from . import _client
from ._client import Backend, ConnectionLost, Lease, _ObjectError, deadline_after, remaining

MAX_BATCH = 65536


@dataclass(frozen=True)
class RedisQueueStatistics:
    """A snapshot of a Redis queue (``Queue.statistics()``)."""

    name: str
    depth: int
    unfinished: int
    maxsize: int
    #: the queue was shut down (the field's 0.1 name; same as ``is_shutdown``)
    closed: bool
    pending: int
    consumers: int
    held_here: int
    is_shutdown: bool = False


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


_producer = threading.local()


def _request() -> tuple[str, int]:
    """This thread's producer name and the number of its next put call.

    A put is exactly once under retries: the server keeps, per producer and
    queue, the number of the last call it applied (see ``q_put``), so a
    retried call is recognised and not applied twice.  The numbers of one
    producer must grow in the order its calls are sent: one producer per
    thread, and a new one in a forked child (which inherits the parent's
    thread-local state, and would otherwise reuse its numbers)."""
    p = getattr(_producer, "v", None)
    pid = os.getpid()
    if p is None or p[0] != pid:
        p = [pid, f"{_client.HOST}:{pid}:{uuid.uuid4().hex[:12]}", 0]
        _producer.v = p
    p[2] += 1
    return p[1], p[2]


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


class _Consumer:
    """This process's consumer of one queue (shared by its Queue objects).

    Every message it has taken is in exactly one of: ``own`` (taken on the
    server by a thread's call, for that thread: no other thread may return
    it, or a thread could see one producer's messages out of order),
    ``ready`` (taken, for any thread: the rest of a reclaimed or re-read
    batch), ``held`` / ``order`` (returned,
    not yet acknowledged), ``acks`` (acknowledged here, the server not yet
    told).  All of them are "known": a resync skips them, and the keeper
    renews their idle time so that idle reclaim leaves them alone."""

    def __init__(self, backend: Backend, keys: list[str], epoch: Any, joinable: bool) -> None:
        self.backend = backend
        self.keys = keys
        self.epoch = epoch
        self.joinable = joinable
        self.name = f"{_client.HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.lock = threading.Lock()
        self.held: dict[int, list[bytes]] = {}  # plain Queue: thread -> ids
        self.order: deque[bytes] = deque()  # JoinableQueue: ids, oldest first
        self.ready: deque[tuple[bytes, list[bytes]]] = deque()
        self.own: dict[int, list[tuple[bytes, list[bytes]]]] = {}  # thread -> entries
        self.acks: list[bytes] = []
        self.resync = False  # re-read our own pending list at the next take
        # When the next reclaim pass is due (time.monotonic()), as the last
        # take reported it: until then gets read directly (see _read_direct).
        self.due = 0.0
        self.users = 0
        self.beat = Lease(keys[3] + self.name, "beat", "", renew=self._renew)
        backend.hold(self.beat)

    def known(self) -> set[bytes]:
        with self.lock:
            out = set(self.order)
            out.update(self.acks)
            out.update(i for i, _ in self.ready)
            for w in self.own.values():
                out.update(i for i, _ in w)
            for v in self.held.values():
                out.update(v)
        return out

    def take_acks(self) -> list[bytes]:
        with self.lock:
            out, self.acks = self.acks, []
        return out

    def keep_acks(self, ids: list[bytes]) -> None:
        if ids:
            with self.lock:
                self.acks[:0] = ids

    def flush(self, deadline: float | None = None) -> None:
        """Send the kept acknowledgements (ConnectionLost keeps them)."""
        ids = self.take_acks()
        if not ids:
            return
        try:
            self.backend.fcall("il_q_ack", self.keys[:3], [self.epoch, *ids], deadline)
        except BaseException:
            self.keep_acks(ids)
            raise

    def _renew(self, budget: float) -> bool:
        acks = self.take_acks()
        held = list(self.known() - set(acks))
        try:
            self.backend.fcall(
                "il_q_beat", self.keys[:3] + [self.keys[3] + self.name],
                [self.epoch, self.name, int(self.backend.lease * 1000), len(acks), *acks, *held],
                budget=budget)
        except BaseException:
            self.keep_acks(acks)
            raise
        return True

    def end(self) -> None:
        """Acknowledge what a plain queue's callers took, stop the heartbeat
        and delete it (what is still held goes back to others at once)."""
        with self.lock:
            ids = [i for v in self.held.values() for i in v] if not self.joinable else []
            self.held.clear()
            ids += self.acks
            self.acks = []
        if ids:
            self.backend.fcall("il_q_ack", self.keys[:3], [self.epoch, *ids])
        self.backend.drop(self.beat)
        self.backend.blocking(lambda: self.backend.client.delete(self.beat.key))


_consumers: list[_Consumer] = []  # every consumer of this process, for the exit
_consumers_lock = threading.Lock()


def _consumer_for(q: Queue) -> _Consumer:
    key = (os.getpid(), q._name, q._joinable)
    with _consumers_lock:
        c: _Consumer | None = q._backend.consumers.get(key)
        if c is None or c.epoch != q._epoch:
            c = _Consumer(q._backend, q._keys, q._epoch, q._joinable)
            q._backend.consumers[key] = c
            _consumers.append(c)
        return c


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
            epoch, have_max, have_joinable = backend.fcall(
                "il_open", self._keys[:3],
                ["queue", uuid.uuid4().hex, _open_mode(create), maxsize, int(self._joinable)])
        except _ObjectError as e:
            raise _object_error(e, "queue", self._name) from None
        self._epoch = epoch
        self._maxsize = int(have_max)
        if have_joinable.decode() != str(int(self._joinable)):
            have, want = ("JoinableQueue", "plain Queue") if self._joinable is False else (
                "plain Queue", "JoinableQueue")
            raise ValueError(f"queue {self._name!r} exists on the server as a {have}; "
                             f"it cannot be opened as a {want}")
        if maxsize and maxsize != self._maxsize:
            raise ValueError(f"queue {self._name!r} exists with maxsize={self._maxsize}; "
                             f"asked for maxsize={maxsize}")
        self._cons: _Consumer | None = None  # this process's consumer, from the first get
        # The high-water mark of the queue's position, per epoch: a queue
        # unlinked and made again under the same name starts again at 0.
        self._seq_key = f"{self._keys[0]}:seq:{epoch!r}"
        self._pid = os.getpid()
        self._detached = False
        # A put of this thread whose outcome is unknown (ConnectionLost):
        # (pid, producer, request number, encoded items, how many were
        # confirmed).  The caller's next put of the same items resends it
        # under the same number, so that it is applied once (see _put).
        self._unsure = threading.local()
        self._closed_here = False  # close(): multiprocessing's, this object only
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
        return (_client.rebuild, (self._backend, type(self), self._name, {}))

    def __repr__(self) -> str:
        return (f"<interlock.redis.{type(self).__name__} name={self._name!r} "
                f"on {self._backend.safe_url}>")

    def _check(self) -> None:
        if self._detached:
            raise ValueError("operation on a closed (detached) interlock object")
        if self._pid != os.getpid():
            # A forked child is a new consumer: its parent's messages are not its own.
            self._pid = os.getpid()
            self._cons = None

    def _consumer(self) -> _Consumer:
        if self._cons is None:
            self._cons = _consumer_for(self)
            with self._cons.lock:
                self._cons.users += 1
        return self._cons

    def _seq(self, value: Any, before: int) -> None:
        self._backend.check_mark(self._seq_key, int(value), before)

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

    def loan(self, nbytes: int) -> memoryview:
        """A writable buffer of ``nbytes`` bytes to build a large item in,
        as the shared-memory queue's ``loan()``: across machines there is
        no shared memory, so it is ordinary memory and ``put()`` sends a
        copy.  Code written for the shared-memory queue runs unchanged."""
        if isinstance(nbytes, bool) or not isinstance(nbytes, int):
            raise TypeError(f"nbytes must be an int, not {type(nbytes).__name__}")
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        self._check()
        self._check_open()
        return memoryview(bytearray(nbytes))

    def _check_open(self) -> None:
        """put() and get() after close() on this object: as multiprocessing."""
        if self._closed_here:
            raise ValueError(f"Queue {self!r} is closed")

    def _put(self, items: list[Any], block: bool, timeout: float | None, single: bool) -> None:
        self._check()
        self._check_open()
        deadline = deadline_after(block, timeout)
        if not items:
            return
        encoded: list[list[Any]] = []
        for obj in items:
            one: list[Any] = []
            _encode(obj, one)
            encoded.append(one)
        done = 0
        b = self._backend
        # The request record lives long past any retry of a call (each is sent
        # within its budget: at most a slice plus grace), so that even a
        # late copy of a call that was given up on is recognised.
        ttl_ms = int(max(60.0, 6 * (b.slice + b.grace)) * 1000)
        keys = self._keys[:3]
        # The caller's retry of a put that raised ConnectionLost (same
        # thread, same items, nothing put in between): the same request
        # number, so that the server applies it once, whether or not the
        # lost call ran.  Within the request TTL (60 s) of the lost call.
        unsure = getattr(self._unsure, "v", None)
        self._unsure.v = None
        resume = None
        if unsure is not None and unsure[0] == os.getpid() and unsure[3] == encoded:
            cur = getattr(_producer, "v", None)
            if cur is not None and cur[1] == unsure[1]:
                resume, done = (unsure[1], unsure[2]), unsure[4]
        while True:
            resumed = resume is not None
            if resume is not None:
                (producer, reqno), resume = resume, None
            else:
                producer, reqno = _request()
            args: list[Any] = [self._epoch, 1 if block else 0, len(encoded) - done, reqno,
                               ttl_ms, producer]
            for one in encoded[done:]:
                args += one
            before = b.mark(self._seq_key)
            try:
                put, event, seq = b.fcall("il_q_put", keys, args, deadline)
            except ConnectionLost:
                self._unsure.v = (os.getpid(), producer, reqno, encoded, done)
                raise
            self._seq(seq, before)
            if put < 0:
                raise QueueClosed("put() on a shut-down queue")
            done += put
            if done == len(encoded):
                return
            if resumed:
                # What the lost call did is now known (and counted): the
                # rest goes under a fresh number at once (a resent call
                # that the server had overtaken answers 0 without waiting).
                continue
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
        ms = max(int(1000 * min(self._backend.slice, left if left is not None else 1e9)), 1)
        self._backend.call(self._backend.budget(None, ms / 1000), "XREAD", "COUNT", 1,
                           "BLOCK", ms, "STREAMS", self._keys[2], last,
                           keys=self._keys[:3])

    # -- get ----------------------------------------------------------------
    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the oldest item (``Empty`` if none in time;
        ``ShutDown`` once shut down and drained)."""
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

    def _acks_for_get(self, c: _Consumer) -> list[bytes]:
        """What this thread's get() acknowledges: the kept acks of the
        consumer, and (plain Queue) what this thread took before."""
        acks = c.take_acks()
        if not self._joinable:
            with c.lock:
                acks += c.held.pop(threading.get_ident(), [])
        return acks

    def _get(self, count: int, block: bool, timeout: float | None) -> list[Any]:
        self._check()
        self._check_open()
        deadline = deadline_after(block, timeout)
        c = self._consumer()
        lease_ms = int(self._backend.lease * 1000)
        retried = False
        while True:
            try:
                items = self._get_once(c, count, deadline, lease_ms)
            except ConnectionLost:
                # What the lost call took is in our pending list: re-read it
                # at the next take (here, once, if time is left).
                c.resync = True
                left = remaining(deadline)
                if retried or (left is not None and left <= 0):
                    raise
                retried = True
                continue
            if items:  # (ready items may have gone to another thread: look again)
                return items
            left = remaining(deadline)
            if left is not None and left <= 0:
                raise Empty

    def _pop_ready(self, c: _Consumer, count: int) -> list[Any]:
        """Up to ``count`` entries: this thread's own first, else shared ones."""
        tid = threading.get_ident()
        with c.lock:
            mine = c.own.get(tid)
            if mine:
                got, rest = mine[:count], mine[count:]
                if rest:
                    c.own[tid] = rest
                else:
                    del c.own[tid]
            elif c.ready:
                got = [c.ready.popleft() for _ in range(min(count, len(c.ready)))]
            else:
                return []
        return self._accept(c, got)

    @staticmethod
    def _keep_own(c: _Consumer, real: list[Any], count: int) -> None:
        """What this thread's call took: the first ``count`` for this thread,
        the rest (re-deliveries: a reclaimed or re-read batch) for any."""
        with c.lock:
            c.own.setdefault(threading.get_ident(), []).extend(real[:count])
            c.ready.extend(real[count:])

    def _get_once(self, c: _Consumer, count: int, deadline: float | None,
                  lease_ms: int) -> list[Any] | None:
        """One round of a get: the items, or None (nothing within this slice).

        The common case is one round trip (``_read_direct``).  A take
        (``il_q_take``: reclaim, resync, and a bounded queue's wake-up of
        blocked producers with the read) comes first when a reclaim pass is
        due, after a lost reply, at a consumer's first get, and always on a
        bounded queue; if it finds nothing, one blocking read follows."""
        items = self._pop_ready(c, count)
        if items:
            return items
        if not self._maxsize and not c.resync and time.monotonic() < c.due:
            return self._read_direct(c, count, deadline)
        acks = self._acks_for_get(c)
        resync = c.resync
        before = self._backend.mark(self._seq_key)
        try:
            seq, entries, due = self._backend.fcall(
                "il_q_take", self._keys,
                [self._epoch, c.name, count, lease_ms, 1 if resync else 0, len(acks), *acks],
                deadline)
        except BaseException:
            c.keep_acks(acks)  # not acknowledged: kept, sent again by the next call
            raise
        if resync:
            c.resync = False
        c.due = time.monotonic() + int(due) / 1000
        self._seq(seq, before)
        known = c.known()
        fresh = [(i, f) for i, f in entries if i not in known]
        closed = any(f and f[0] == b"c" for _, f in fresh)
        real = [(i, f) for i, f in fresh if f and f[0] != b"c"]
        if real:
            self._keep_own(c, real, count)
            return self._pop_ready(c, count)
        if closed:
            raise QueueClosed("get() on a shut-down queue: it is shut down and drained")
        left = remaining(deadline)
        if left is not None and left <= 0:
            return None
        ms = max(int(1000 * min(self._backend.slice, left if left is not None else 1e9)), 1)
        got = self._backend.call(
            self._backend.budget(None, ms / 1000), "XREADGROUP", "GROUP", "g", c.name,
            "COUNT", count, "BLOCK", ms, "STREAMS", self._keys[1], ">", keys=self._keys[:3])
        return self._after_read(c, self._keep_read(c, got, count), count, deadline)

    def _read_direct(self, c: _Consumer, count: int, deadline: float | None) -> list[Any] | None:
        """A get in one round trip: ``il_q_pre`` (the acknowledgements and
        the position counter) and ``XREADGROUP ... BLOCK`` pipelined, as a
        plain stream consumer would, instead of a take and then, on an empty
        queue, a blocking read.  Only for an unbounded queue (a bounded one
        must wake blocked producers with each read: a take does) and when no
        reclaim or resync is due.  The read blocks at most until the next
        reclaim pass is due, so a blocked consumer makes that pass on time.

        What the read returns is the consumer's own on the server, whatever
        the function's reply: it is kept before anything is raised.  A lost
        reply is a take's: resync (the caller sets it), and the acks are
        kept."""
        b = self._backend
        acks = self._acks_for_get(c)
        read: list[Any] = ["XREADGROUP", "GROUP", "g", c.name, "COUNT", count]
        left = remaining(deadline)
        if left is None or left > 0:
            wait = min(b.slice, left if left is not None else 1e9, c.due - time.monotonic())
            ms = max(int(1000 * wait), 1)
            read += ["BLOCK", ms]
            budget = b.budget(None, ms / 1000)
        else:
            budget = b.budget(deadline)
        read += ["STREAMS", self._keys[1], ">"]
        before = b.mark(self._seq_key)
        try:
            seq, got = b.pipe(budget, [("FCALL", "il_q_pre", 3, *self._keys[:3], self._epoch,
                                        *acks), read], self._keys[:3])
        except BaseException:
            c.keep_acks(acks)
            raise
        if isinstance(seq, Exception):
            c.keep_acks(acks)  # the function did not run: nothing acknowledged
            if _client._not_loaded(seq):
                b._load(required=True, keys=self._keys[:3])
                err: Exception | None = None
            else:
                err = b.fcall_error(seq, self._keys[:3], "il_q_pre")
        else:
            err = None
            if b.durable is not None:
                b._wait_durable(budget)
        if isinstance(got, Exception):
            raise err or b.reply_error(got, self._keys[:3], "XREADGROUP")
        kept = self._keep_read(c, got, count)
        if err is not None:
            if kept and kept[1]:
                c.resync = True  # the next take hands the marker on
            raise err
        if not isinstance(seq, Exception):
            self._seq(seq, before)  # (what was read stays kept if this raises)
        return self._after_read(c, kept, count, deadline)

    def _keep_read(self, c: _Consumer, got: Any, count: int) -> tuple[bool, bytes] | None:
        """Keep for this thread what a client-side XREADGROUP read (ours on
        the server now): (whether real items came, the close marker's id or
        b""), or None when nothing was read."""
        if not got:
            return None
        # RESP2: [[stream, entries]]; RESP3: {stream: entries}
        batch = next(iter(got.values())) if isinstance(got, dict) else got[0][1]
        entries = [(i, f) for i, f in batch if f]
        marker = next((i for i, f in entries if f[0] == b"c"), b"")
        real = [(i, f) for i, f in entries if f[0] != b"c"]
        self._keep_own(c, real, count)  # ours now, returned now or by the next get
        return bool(real), marker

    def _after_read(self, c: _Consumer, kept: tuple[bool, bytes] | None, count: int,
                    deadline: float | None) -> list[Any] | None:
        """Return what a client-side read kept (``_keep_read``); hand on a
        close marker it carried (``il_q_taken``), and on a bounded queue wake
        blocked producers.  None: nothing was read."""
        if kept is None:
            return None  # a slice passed: look again (and for dead consumers)
        real, marker = kept
        if marker or (real and self._maxsize):
            try:
                self._backend.fcall("il_q_taken", self._keys[:3],
                                    [self._epoch, marker, 1 if real and self._maxsize else 0],
                                    deadline)
            except ConnectionLost:
                # The marker (if any) is still in our pending list: the
                # resync of the next take hands it on.  The items are kept.
                c.resync = True
                if not real:
                    raise
            except BaseException:
                # Not returned now: any thread may have them (this one may
                # never call again).
                with c.lock:
                    c.ready.extend(c.own.pop(threading.get_ident(), []))
                raise
        if real:
            return self._pop_ready(c, count)
        raise QueueClosed("get() on a shut-down queue: it is shut down and drained")

    def _accept(self, c: _Consumer, real: list[Any]) -> list[Any]:
        """Record entries as returned to this thread, and decode them."""
        ids = [i for i, _ in real]
        with c.lock:
            if self._joinable:
                c.order.extend(ids)
            else:
                c.held.setdefault(threading.get_ident(), []).extend(ids)
        return [_decode(f) for _, f in real]

    def ack(self) -> None:
        """Acknowledge every message this thread took and has not yet
        acknowledged (``get()`` does this for the previous ones by itself).
        On ``ConnectionLost`` the acknowledgement is kept and sent again by
        the next call (and by the keeper): calling ``ack()`` again is safe."""
        self._check()
        c = self._consumer()
        ids = self._acks_for_get(c)
        c.keep_acks(ids)
        c.flush()

    # -- state --------------------------------------------------------------
    def _state(self, join_wait_ms: int = 0) -> list[Any]:
        self._check()
        before = self._backend.mark(self._seq_key)
        args = [self._epoch, join_wait_ms] if join_wait_ms else [self._epoch]
        st = list(self._backend.fcall("il_q_state", self._keys[:3], args))
        self._seq(st[7], before)
        return st

    def qsize(self) -> int:
        """Messages waiting to be taken (taken but unacknowledged ones excluded)."""
        return int(self._state()[0])

    def empty(self) -> bool:
        """``qsize() == 0``."""
        return self.qsize() == 0

    def full(self) -> bool:
        """True if ``maxsize`` items are in the queue."""
        return bool(self._maxsize) and self.qsize() >= self._maxsize

    def shutdown(self, immediate: bool = False) -> None:
        """End the queue for every process, as ``queue.Queue.shutdown``
        (see the module docstring): ``put()`` raises ``ShutDown``; ``get()``
        drains, then raises it (at once with ``immediate=True``, which
        discards what is left)."""
        self._check()
        self._backend.fcall("il_q_shutdown", self._keys, [self._epoch, int(bool(immediate))])

    @property
    def is_shutdown(self) -> bool:
        """True once ``shutdown()`` was called, by any process."""
        return bool(self._state()[2])

    def close(self) -> None:
        """As ``multiprocessing.Queue.close()``: this object puts and gets
        no more (``ValueError``); other objects and processes are not
        affected.  The queue-wide end is :meth:`shutdown`."""
        self._closed_here = True

    @property
    def closed(self) -> bool:
        """Deprecated: ``is_shutdown`` (its name in 0.1)."""
        warnings.warn("Queue.closed is deprecated: use Queue.is_shutdown (close() is now "
                      "process-local, shutdown() ends the queue)", DeprecationWarning,
                      stacklevel=2)
        return self.is_shutdown

    def join_thread(self) -> None:
        """Kept for ``multiprocessing`` compatibility: there is no feeder thread."""

    def cancel_join_thread(self) -> None:
        """Kept for ``multiprocessing`` compatibility: there is no feeder thread."""

    def __iter__(self) -> Iterator[Any]:
        """Yield items until the queue is shut down and drained."""
        while True:
            try:
                yield self.get()
            except ShutDown:
                return

    def statistics(self) -> RedisQueueStatistics:
        """A snapshot: depth, pending deliveries, consumers (see :class:`RedisQueueStatistics`).

        Raises:
            ConnectionLost: the server cannot be reached.
        """
        depth, unfinished, closed, maxsize, pending, consumers, _, _ = self._state()
        held = 0
        if self._cons is not None:
            c = self._cons
            with c.lock:
                held = (len(c.order) + len(c.ready) + sum(len(v) for v in c.held.values())
                        + sum(len(w) for w in c.own.values()))
        return RedisQueueStatistics(self._name, int(depth), int(unfinished), int(maxsize),
                                    bool(closed), int(pending), int(consumers), held,
                                    is_shutdown=bool(closed))

    # -- lifetime -----------------------------------------------------------
    def detach(self) -> None:
        """End this object's use of the queue, cleanly.  When it is the last
        object of this process's consumer (see the module docstring) to
        detach: a plain Queue acknowledges what was taken (a JoinableQueue
        leaves what was not ``task_done`` to be delivered again), and the
        heartbeat stops at once so that anything still held is re-delivered
        without waiting for the lease.  Idempotent."""
        if self._detached or self._pid != os.getpid():
            self._detached = True
            return
        self._detached = True
        c, self._cons = self._cons, None
        if c is None:
            return
        with c.lock:
            c.users -= 1
            last = c.users <= 0
        if last:
            with _consumers_lock:
                key = (os.getpid(), self._name, self._joinable)
                if self._backend.consumers.get(key) is c:
                    del self._backend.consumers[key]
                if c in _consumers:
                    _consumers.remove(c)
            c.end()  # type: ignore[union-attr]  # (not None: checked above)

    def unlink(self) -> None:
        """Delete the queue from the server (its messages with it, taken and
        unacknowledged ones included: there is nothing left to acknowledge)."""
        c = self._cons
        if c is not None:  # nothing of it is left to acknowledge or hand back
            with c.lock:
                c.held.clear()
                c.order.clear()
                c.ready.clear()
                c.own.clear()
                c.acks = []
        self._backend.blocking(lambda: self._backend.client.delete(*self._keys[:3]),
                               self._keys[:3], retry=True)
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
        """Mark the oldest item this process took as done.  The
        acknowledgement is recorded here first: if the server cannot be told
        now (``ConnectionLost``), it is kept and sent by the next call on
        the queue, by ``join()`` and by the keeper; it is never forgotten,
        and never counted twice.

        Raises:
            ValueError: called more times than items were taken.
        """
        self._check()
        c = self._consumer()
        with c.lock:
            if not c.order:
                raise ValueError("task_done() called too many times "
                                 "(or for items taken by another process)")
            c.acks.append(c.order.popleft())
        try:
            c.flush()
        except ConnectionLost:
            pass  # kept in c.acks: sent again by the next call or the keeper

    def join(self, timeout: float | None = None) -> bool:
        """Block until every item put has been marked done.  Returns False if
        ``timeout`` passed first."""
        deadline = deadline_after(True, timeout)
        b = self._backend
        # How long this join may wait from its state call: the event wait (a
        # slice at most) after a reply awaited at most a slice plus grace;
        # twice that, for a caller paused in between.
        wait_ms = int(2000 * (2 * b.slice + b.grace))
        while True:
            if self._cons is not None:
                self._cons.flush(deadline)
            st = self._state(wait_ms)
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

    def _check_open(self) -> None:
        if self._closed_here:  # as multiprocessing.SimpleQueue after close()
            raise OSError("handle is closed")

    def empty(self) -> bool:
        """``qsize() == 0`` (``OSError`` once this object is closed)."""
        self._check_open()
        return super().empty()


def _detach_all() -> None:
    for q in list(_live):
        try:
            q.detach()
        except Exception:
            pass
    # Consumers whose objects were dropped without detach() (a temporary
    # Queue per get()): what their callers took was processed.
    for c in list(_consumers):
        if c.name.split(":")[-2] != str(os.getpid()):
            continue
        try:
            c.end()
        except Exception:
            pass


atexit.register(_detach_all)
