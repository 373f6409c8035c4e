"""Queue, JoinableQueue and SimpleQueue: drop-ins for ``multiprocessing``'s.

The data structure and its crash-safety live in C (``_core/ring.h``): this
file only sizes the ring, names the segment and adds the Python niceties.
A ``Queue`` *is* a ``_core.Ring``: ``q.put(x)`` and ``q.get()`` are single C
calls.

Items: ``bytes`` and ``bytearray`` travel as they are; plain values (None,
bool, int, float, str, bytes, and tuples, lists and dicts of them) are packed
and rebuilt by the C core (``_core/bind_pack.h``: the types and values pickle
would give, without a Pickler per call); anything else is
pickled with protocol 5, its out-of-band buffers (numpy arrays, ...) copied
straight into the ring and out into fresh ``bytearray``s on the other side.
In a queue made without ``capacity=``, an item above ``SPILL_THRESHOLD``
travels through a file of its own instead (docs/design/spill.md): any size
goes, and its out-of-band buffers come out as views of that file's mapping.

Ending: ``close()`` means what it means in ``multiprocessing``: *this*
object puts (and gets) no more; other processes are not affected.  The
queue-wide end of stream is ``shutdown(immediate=False)``, as
``queue.Queue.shutdown`` (Python 3.13), on every Python: further ``put()``
raises :data:`ShutDown` in every process; ``get()`` returns what was put
before, then raises :data:`ShutDown`; ``for item in q`` stops there.
``shutdown(immediate=True)`` also discards what is left.
"""
from __future__ import annotations

from dataclasses import dataclass
import warnings
from typing import TYPE_CHECKING, Any, Generic, Iterable, Iterator, TypeVar

from . import _core, _segment
from .errors import ShutDown
from ._shared import SharedObject
from ._awaitable import AsyncQueueMixin

T = TypeVar("T")

DEFAULT_CAPACITY = 4 << 20  # bytes
MIN_CAPACITY = 64
# A queue made without capacity= sends an item whose record is larger than
# this through a spill file of its own (docs/design/spill.md): any size goes.
# 1 MiB: the ring keeps at least 4 such items' worth of room for the small
# ones, and below it a copy into the warm ring beats a fresh file's page
# faults (benchmarks/bench_queue.py --large measures both).
SPILL_THRESHOLD = 1 << 20


@dataclass(frozen=True)
class QueueStatistics:
    """A snapshot of a queue (``Queue.statistics()``)."""

    name: str
    depth: int
    bytes_used: int
    capacity: int
    maxsize: int
    #: the queue was shut down (``is_shutdown``); the field's old name
    closed: bool
    producers_waiting: int
    consumers_waiting: int
    producer_lock_owner_pid: int
    consumer_lock_owner_pid: int
    owner_deaths: int
    attached_pids: tuple[int, ...]
    #: items ever put / taken, modulo 2**32 (the ring counts in 32 bits; after
    #: shutdown(immediate=True) the discarded items count as taken)
    put_total: int = 0
    got_total: int = 0
    #: files ever made for the queue (spilled items, overflow blocks), modulo 2**32
    spilled_total: int = 0
    #: items waiting in the overflow (an unbounded queue whose ring is full)
    overflow_depth: int = 0
    #: bytes of records waiting in the overflow
    overflow_bytes: int = 0
    #: ``shutdown()`` was called, by any process (same as ``closed``)
    is_shutdown: bool = False
    #: ... with ``immediate=True``: what was left is discarded
    shutdown_immediate: bool = False


def _ring_size(capacity: int) -> int:
    size = 64
    while size < capacity:
        size <<= 1
    return size


def _check_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return value


class Queue(_core.Ring, SharedObject, AsyncQueueMixin, Generic[T]):
    """A process-shared FIFO queue in shared memory.

    ``Queue(maxsize=0, *, name=None, capacity=None, create=None)``

    - ``maxsize``: at most this many items (0: no count bound). With
      neither ``maxsize`` nor ``capacity`` the queue is unbounded: ``put()``
      never blocks for lack of room; when the 4 MiB ring is full, items go
      on into overflow files in ``/dev/shm``, in order
      (docs/design/overflow.md).
    - ``capacity``: ``None`` (default): a 4 MiB ring, and an item of any
      size: one above 1 MiB goes through a spill file of its own
      (``OSError`` if ``/dev/shm`` has no room for it; nothing is put).
      An int: a byte bound instead, at most this many bytes of items,
      headers included (8 bytes each, rounded up to 8), nothing spilled; an
      item larger than this raises ``ValueError`` at once.
    - ``name``: attach to (or create) the queue of that name, from any
      process of the same user. Unnamed queues get a generated name and are
      shared by passing the object (pickling sends the name).
    - ``create``: ``None`` create or attach, ``True`` must create,
      ``False`` must attach.

    Raises:
        ValueError: ``capacity`` out of range (64 bytes .. 1 GiB), ``maxsize``
            above 2**31 - 1, or an existing queue of that name has another
            ``maxsize``/``capacity``.
        TypeError: ``maxsize``/``capacity`` not an int.
        FileExistsError: ``create=True`` and the name exists.
        FileNotFoundError: ``create=False`` and no such queue.
        SegmentError: the file of that name is not an interlock queue of this
            version.

    When a process dies: the ring is never left half-written (an item is
    published by one atomic store once written); a producer or consumer
    killed holding its side's lock is taken over within about 50 ms; the
    segment is removed when the last living user detaches (a ``SIGKILL``-ed
    process does not keep it alive).

    Generic in its items for type checkers (``Queue[int]``; at run time
    ``Queue[int]`` is an alias of ``Queue``: put/get stay the C methods).
    ``with Queue() as q:`` detaches this process's handle on exit (the
    queue lives on while other processes use it); it does not shut it down.
    """

    _kind = _segment.KIND_QUEUE

    def __init__(
        self: Queue[Any],
        maxsize: int = 0,
        *,
        name: str | None = None,
        capacity: int | None = None,
        create: bool | None = None,
    ) -> None:
        maxsize = _check_int(maxsize, "maxsize")
        if maxsize < 0:
            maxsize = 0  # like queue.Queue: <= 0 means no bound
        if maxsize > 0x7FFFFFFF:
            raise ValueError(f"maxsize is too large ({maxsize}; at most 2**31 - 1)")
        cap = DEFAULT_CAPACITY if capacity is None else _check_int(capacity, "capacity")
        if not MIN_CAPACITY <= cap <= _core.RING_MAX_SIZE:
            raise ValueError(
                f"capacity must be between {MIN_CAPACITY} and {_core.RING_MAX_SIZE} bytes, got {cap}"
            )
        size = _ring_size(cap)
        # Only a queue without a byte bound spills: capacity= bounds the bytes.
        spill = min(SPILL_THRESHOLD, cap // 4) if capacity is None else 0
        # ... and only one without any bound grows past its ring (overflow.md).
        overflow = capacity is None and maxsize == 0

        def init(buf: Any, offset: int) -> None:
            _core.Ring(buf, offset, create=True, size=size, capacity=cap,
                       maxsize=maxsize, overflow=overflow)._detach()

        seg = self._open_segment(name, create, _core.ring_bytes(size),
                                 (maxsize, cap, size, spill), init)
        if not seg.created:
            have_max, have_cap, _ = seg.params()[:3]
            if maxsize and maxsize != have_max or capacity is not None and capacity != have_cap:
                seg.release()
                raise ValueError(
                    f"queue {seg.name!r} exists with maxsize={have_max}, capacity={have_cap}; "
                    f"asked for maxsize={maxsize}, capacity={capacity}"
                )
        _core.Ring.__init__(self, seg.mm, seg.object_offset)
        threshold = seg.params()[3]  # the creator's choice (0: a byte-bounded queue)
        if threshold:
            self._set_spill(_segment.spill_prefix(seg.header), threshold)

    if TYPE_CHECKING:  # the C methods, typed by the items: no Python layer at run time
        def put(self, obj: T, block: bool = True, timeout: float | None = None) -> None: ...
        def put_nowait(self, obj: T) -> None: ...
        def put_many(self, items: Iterable[T], block: bool = True,
                     timeout: float | None = None) -> None: ...
        def get(self, block: bool = True, timeout: float | None = None) -> T: ...
        def get_nowait(self) -> T: ...
        def get_many(self, max_items: int | None = 1024, block: bool = True,
                     timeout: float | None = None) -> list[T]: ...

    def __enter__(self) -> Queue[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        """Detach this process's handle (not ``shutdown()``: other processes
        may still put and get)."""
        self.detach()

    def _note_role(self, role: int) -> None:
        # Called once per object by the C core, on the first put / get.
        self._seg.note_role(role)

    # -- large items in place -------------------------------------------------
    def loan(self, nbytes: int) -> memoryview:
        """A writable buffer of ``nbytes`` bytes in shared memory, to build a
        large item in place and put it without a copy.

        Make a numpy array on it, fill it, put it::

            a = numpy.frombuffer(q.loan(n * 8), dtype=numpy.float64)
            a[:] = ...                  # written straight into the queue's file
            q.put(a)                    # no copy: the receiver maps the same pages

        Any item whose pickle has exactly one out-of-band buffer lying in an
        open loan of this queue (a numpy array on it, or on a 64-byte-aligned
        part of it, possibly inside a tuple or dict) is put without copying
        that buffer; the receiver gets its array as a view of the file, as
        for any large item.  An item that does not qualify (two arrays,
        another queue, an unaligned slice) is copied as usual.

        The buffer is one of this process's pooled spill files
        (docs/design/spill.md, "Loans"): its contents at first are
        undefined, as ``numpy.empty``'s.  A loan carries one item: once a
        ``put()`` carried it (``memoryview.obj.sent``), its memory is the
        receiver's, and writing to it is a race with the receiver.  A loan
        dropped without being put goes back to the pool.  When the pool has
        no room (32 files or 2 GiB per queue and process in use), or for
        more than 1 GiB, the buffer is ordinary memory, which ``put()``
        copies: the program works the same, a copy slower.

        Only a queue made without ``capacity=`` lends (``ValueError``
        otherwise): a queue with a byte bound never uses spill files.
        """
        n = _check_int(nbytes, "nbytes")
        if n < 0:
            raise ValueError(f"nbytes must be >= 0, got {n}")
        return self._loan(n)

    # -- ending -----------------------------------------------------------
    def shutdown(self, immediate: bool = False) -> None:
        """End the queue for every process, as ``queue.Queue.shutdown``
        (Python 3.13), on every Python.

        Afterwards ``put()`` raises :data:`ShutDown` in every process;
        ``get()`` returns what was put before, then raises :data:`ShutDown`;
        blocked getters and putters wake up.  With ``immediate=True`` the
        items left are discarded (``qsize()`` is 0; a
        :class:`JoinableQueue` counts them done, so ``join()`` returns) and
        ``get()`` raises at once.  Idempotent; a later ``immediate=True``
        still discards.

        When a process dies: the shutdown is one atomic flag, set under the
        producer lock: a process killed inside ``shutdown()`` has either
        shut the queue down or not (the lock is taken over by the next
        producer within about 50 ms).
        """
        self._shutdown(immediate)

    @property
    def is_shutdown(self) -> bool:
        """True once ``shutdown()`` was called, by any process."""
        return bool(self._is_shutdown)

    # -- multiprocessing.Queue compatibility ---------------------------------
    def close(self) -> None:
        """This process puts no more through this object, as
        ``multiprocessing.Queue.close()``: later ``put()`` and ``get()`` on
        it raise ``ValueError("Queue ... is closed")``.  Other processes,
        and other objects for the same queue, are not affected; the items
        put stay in the queue.  To end the queue for everyone, use
        :meth:`shutdown`.  Idempotent."""
        self._close_here()

    @property
    def closed(self) -> bool:
        """Deprecated: ``is_shutdown`` (the name of 0.1, when ``close()``
        shut the queue down for every process)."""
        warnings.warn("Queue.closed is deprecated: use Queue.is_shutdown (close() is now "
                      "process-local, shutdown() ends the queue)", DeprecationWarning,
                      stacklevel=2)
        return bool(self._is_shutdown)

    def join_thread(self) -> None:
        """Kept for ``multiprocessing`` compatibility: there is no feeder
        thread (each ``put()`` is in the queue when it returns)."""

    def cancel_join_thread(self) -> None:
        """Kept for ``multiprocessing`` compatibility: there is no feeder thread."""

    @property
    def maxsize(self) -> int:
        """The bound on the number of items (0: none)."""
        return int(self._seg.params()[0])

    @property
    def capacity(self) -> int:
        """The bound on the bytes held, headers included."""
        return int(self._seg.params()[1])

    def __iter__(self) -> Iterator[T]:
        """Yield items until the queue is shut down and drained."""
        while True:
            try:
                yield self.get()
            except ShutDown:
                return

    def statistics(self) -> QueueStatistics:
        """A snapshot of the queue: depth, bytes, waiters, lock holders,
        attached processes, owner deaths (see :class:`QueueStatistics`)."""
        s = self._stats()
        return QueueStatistics(
            name=self.name,
            depth=s["depth"],
            bytes_used=s["bytes_used"],
            capacity=s["capacity"],
            maxsize=int(self._seg.params()[0]),
            closed=s["closed"],
            producers_waiting=s["producers_sleeping"] + s["producer_lock"]["waiters"],
            consumers_waiting=s["consumers_sleeping"] + s["consumer_lock"]["waiters"],
            producer_lock_owner_pid=s["producer_lock"]["owner_pid"],
            consumer_lock_owner_pid=s["consumer_lock"]["owner_pid"],
            owner_deaths=s["producer_lock"]["owner_deaths"] + s["consumer_lock"]["owner_deaths"],
            attached_pids=tuple(pid for pid, _ in self._seg.users()),
            put_total=s["put_count_mod32"],
            got_total=(s["put_count_mod32"] - s["depth"]) % 2**32,
            spilled_total=s["spilled"],
            overflow_depth=s["overflow_depth"],
            overflow_bytes=s["overflow_bytes"],
            is_shutdown=s["closed"],
            shutdown_immediate=s["immediate"],
        )

    def _describe(self) -> str:
        try:
            state = " shut down" if self._is_shutdown else ""
            if self._closed_here:
                state += " closed here"
            return f"name={self.name!r} qsize={self.qsize()}{state}"
        except ValueError:
            return f"name={self.name!r} detached"


class JoinableQueue(Queue[T]):
    """A :class:`Queue` with ``task_done()`` and ``join()``.

    The count of unfinished tasks is derived from the queue's own put count
    (``puts - task_done calls``), so a process killed at any instant cannot
    unbalance it.
    """

    def task_done(self) -> None:
        """Mark one item taken by ``get()`` as processed.

        Raises:
            ValueError: called more times than items were put.
        """
        self._task_done()

    def join(self, timeout: float | None = None) -> bool:
        """Block until every item put has been marked done.  Returns False if
        ``timeout`` passed first (``multiprocessing``'s join has no timeout).

        When a process dies: an item a dead consumer took but never marked
        done stays unfinished: ``join()`` waits for it (give a timeout when
        consumers may die)."""
        return bool(self._join(timeout))

    @property
    def unfinished_tasks(self) -> int:
        """Items put and not yet marked done (a snapshot)."""
        return int(self._unfinished_tasks)


class SimpleQueue(Queue[T]):
    """``multiprocessing.SimpleQueue``: an unbounded :class:`Queue`."""

    def __init__(self: SimpleQueue[Any], *, name: str | None = None,
                 capacity: int | None = None, create: bool | None = None) -> None:
        super().__init__(0, name=name, capacity=capacity, create=create)

    def close(self) -> None:
        """As ``multiprocessing.SimpleQueue.close()``: this object's
        ``put()``, ``get()`` and ``empty()`` raise ``OSError("handle is
        closed")`` afterwards.  Other processes are not affected."""
        self._close_here(True)

    def empty(self) -> bool:
        """``qsize() == 0`` (``OSError`` once this object is closed, as
        ``multiprocessing.SimpleQueue``)."""
        if self._closed_here:
            raise OSError("handle is closed")
        return bool(super().empty())
