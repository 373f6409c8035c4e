"""asyncio support: ``await q.get_async()``, ``async for``, ``async with lock``.

The primitives' async methods are declared in ``_awaitable`` (no asyncio
there) and call the functions below, importing this module on first use:
the core does not import ``aio``, and a program that never awaits never
imports asyncio through interlock.

How a coroutine waits without blocking the event loop: the blocking API
sleeps on futex words in shared memory, and a futex cannot be registered
with the loop's epoll.  So each process has ONE helper thread, and only
while some coroutine of the process awaits: it sleeps in a single
``futex_waitv(2)`` on the words of every pending wait (``_core._aio_wait``,
``aio.c``) plus a doorbell word of its own, with no timeout.  When a word
moves, it resolves the futures of that wait through
``loop.call_soon_threadsafe`` (the loop's own self-pipe); each woken
coroutine then tries the non-blocking operation in the loop's thread, and
whoever loses the race waits again.  A new await, a cancelled one or a
detach rings the doorbell so the thread re-reads the set of waits.  When the
last pending wait ends, the thread exits and is joined: a process with no
pending await has no interlock thread (so ``fork()`` does not warn about
threads on Python >= 3.12), and an idle pending await costs no wake-up.

The death of a lock's owner does not move the lock word: ``acquire_async``
also watches the owner thread through a pidfd in the loop (``add_reader``),
and takes the lock over when it becomes readable (docs/design/aio.md).

Because items are only ever taken in the loop's thread by a non-blocking
call, cancelling a coroutine at any ``await`` leaves the queue and the lock
exactly as they were: there is no item in flight in the helper thread.  A
coroutine cancelled after its wake-up passes the wake-up on to another
sleeper (``_core._aio_pass_on``), so no wake-up is consumed and lost.

Alternatives rejected: ``run_in_executor(q.get)`` (a cancelled coroutine
leaves the thread blocked in ``get`` and the item it takes is lost; and one
thread per waiting coroutine); a helper thread per object (the previous
design: it re-checked every 50 ms whether its waiters had left, and lingered
after them); polling ``get_nowait`` with ``asyncio.sleep``.
"""
from __future__ import annotations

import asyncio
import errno
import os
import pickle
import threading
import time
from typing import Any, AsyncIterator, Protocol

from . import _core
from .errors import Empty, Full, ShutDown
# The primitives' async methods, documented here (``interlock.aio`` is their
# public home; ``_awaitable`` holds them so that the primitives need not
# import this module).
from ._awaitable import AsyncEventMixin, AsyncLockMixin, AsyncQueueMixin  # noqa: E402,F401

READABLE: int = _core.AIO_READABLE
WRITABLE: int = _core.AIO_WRITABLE
UNLOCKED: int = _core.AIO_UNLOCKED
SET: int = _core.AIO_SET

# Linux >= 6.9: pidfd_open(tid, PIDFD_THREAD) watches one thread, not only a
# whole process (PIDFD_THREAD is O_EXCL, <linux/pidfd.h>).
_PIDFD_THREAD = os.O_EXCL
# Where no pidfd can watch a lock's owner (a non-main thread on Linux < 6.9,
# or an owner whose TID is not yet published), its liveness is re-checked
# this often: the blocking API's slice.
_OWNER_RECHECK = 0.05


def _resolve(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)


def _wake(fut: "asyncio.Future[None]") -> None:
    try:
        fut.get_loop().call_soon_threadsafe(_resolve, fut)
    except RuntimeError:  # its loop is closed
        pass


class _Wait:
    """One condition of one object that coroutines of this process await."""

    __slots__ = ("obj", "kind", "arg", "futs")

    def __init__(self, obj: Any, kind: int, arg: int) -> None:
        self.obj = obj
        self.kind = kind
        self.arg = arg
        self.futs: set["asyncio.Future[None]"] = set()


class _Helper:
    """The process's helper thread and the waits it sleeps on.

    Invariant (under ``_lock``): ``_thread`` is alive (or starting) iff
    ``_waits`` is not empty; a thread that finds ``_waits`` empty clears
    ``_thread`` and exits at once, and whoever next finds it in ``_exiting``
    joins it."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._waits: dict[tuple[int, int, int], _Wait] = {}
        self._thread: threading.Thread | None = None
        self._exiting: list[threading.Thread] = []
        self._sleeping: tuple[_Wait, ...] = ()  # what the thread's C call uses now
        self.rounds = 0  # C waits made: the tests count them (no periodic wake-up)

    # --- the loop's side

    def add(self, obj: Any, kind: int, arg: int) -> tuple["asyncio.Future[None]", _Wait]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            key = (id(obj), kind, arg)
            w = self._waits.get(key)
            if w is None:
                w = self._waits[key] = _Wait(obj, kind, arg)
            w.futs.add(fut)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="interlock-aio")
                self._thread.start()
            else:
                _core._aio_ring()
        return fut, w

    def remove(self, fut: "asyncio.Future[None]", w: _Wait) -> None:
        with self._lock:
            w.futs.discard(fut)
            key = (id(w.obj), w.kind, w.arg)
            if not w.futs and self._waits.get(key) is w:
                del self._waits[key]
                _core._aio_ring()  # the thread re-reads the set, or exits
            t = self._thread
            if not self._waits and t is not None and t is not threading.current_thread():
                # The last await left (cancelled, timed out): the thread wakes
                # up on the doorbell and exits; wait for that (microseconds),
                # so that no thread outlives the process's last await.
                self._changed.wait_for(lambda: self._thread is not t or bool(self._waits), 5)
        self.reap()

    def reap(self) -> None:
        """Join the threads that have decided to exit (they hold nothing and
        are returning: this waits microseconds), and wait until the kernel
        has removed them, so that a fork() right after sees no thread."""
        with self._lock:
            done, self._exiting = self._exiting, []
        for t in done:
            if t is threading.current_thread():
                continue
            t.join(5)
            tid = t.native_id
            for _ in range(1000):  # Python < 3.13 joins before the OS thread is gone
                if tid is None or not os.path.exists(f"/proc/self/task/{tid}"):
                    break
                time.sleep(0.0005)

    def stop(self, obj: Any) -> None:
        """``obj`` is being detached: wake its coroutines (their retry
        raises) and wait until the thread no longer sleeps on it."""
        futs: list[asyncio.Future[None]] = []
        with self._lock:
            for key, w in list(self._waits.items()):
                if w.obj is obj:
                    del self._waits[key]
                    futs += w.futs
            if any(w.obj is obj for w in self._sleeping):
                _core._aio_ring()
                if threading.current_thread() is not self._thread:
                    self._changed.wait_for(
                        lambda: not any(w.obj is obj for w in self._sleeping), 5)
        for fut in futs:
            _wake(fut)
        self.reap()

    # --- the thread

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            with self._lock:
                if self._thread is not me:  # forked, or replaced: not ours any more
                    return
                if not self._waits:
                    self._thread = None
                    self._exiting.append(me)
                    return
                sleeping = tuple(self._waits.values())
                self._sleeping = sleeping
                bell = _core._aio_bell()
                self.rounds += 1
            try:
                ready, woken = _core._aio_wait([(w.obj, w.kind, w.arg) for w in sleeping], bell)
            except Exception:  # an object was detached under us: wake all, they will see
                ready, woken = [True] * len(sleeping), -1
            futs: list[asyncio.Future[None]] = []
            pass_on: _Wait | None = None
            with self._lock:
                self._sleeping = ()
                for w, r in zip(sleeping, ready):
                    key = (id(w.obj), w.kind, w.arg)
                    if r and self._waits.get(key) is w:
                        del self._waits[key]
                        futs += w.futs
                if woken >= 0:
                    w = sleeping[woken]
                    if not any(not f.done() for f in w.futs):
                        pass_on = w  # its awaiters left while the wake-up came
                if not self._waits:  # decide now, so that the woken coroutines can join us
                    self._thread = None
                    self._exiting.append(me)
                self._changed.notify_all()
            if pass_on is not None:
                try:
                    _core._aio_pass_on(pass_on.obj, pass_on.kind)
                except Exception:
                    pass
            for fut in futs:
                _wake(fut)
            if self._thread is not me:
                return

    # --- fork

    def before_fork(self) -> None:
        self.reap()

    def after_fork_in_child(self) -> None:
        self._reset()  # the parent's thread does not exist here


_helper = _Helper()
os.register_at_fork(before=_helper.before_fork, after_in_child=_helper.after_fork_in_child)


async def _until(fut: "asyncio.Future[None]", deadline: float | None) -> bool:
    """Wait for fut until deadline (loop time); False on timeout."""
    if deadline is None:
        await fut
        return True
    remaining = deadline - asyncio.get_running_loop().time()
    if remaining <= 0:
        return False
    try:
        await asyncio.wait_for(asyncio.shield(fut), remaining)
        return True
    except asyncio.TimeoutError:
        return fut.done() and not fut.cancelled()


async def _wait(obj: Any, kind: int, arg: int, deadline: float | None,
                pidfd: int | None = None, recheck: float | None = None) -> bool:
    """Wait until ``obj``'s condition may hold (True) or the deadline passes
    (False).  ``pidfd``: also end when it becomes readable (a lock owner's
    death); ``recheck``: also end after that many seconds."""
    loop = asyncio.get_running_loop()
    if deadline is not None and deadline <= loop.time():
        return False
    fut, w = _helper.add(obj, kind, arg)
    handle = loop.call_later(recheck, _resolve, fut) if recheck is not None else None
    if pidfd is not None:
        loop.add_reader(pidfd, _resolve, fut)
    try:
        return await _until(fut, deadline)
    except asyncio.CancelledError:
        if fut.done() and not fut.cancelled():
            # Woken, but we will not take what the wake-up was for.
            _core._aio_pass_on(obj, kind)
        raise
    finally:
        if pidfd is not None:
            loop.remove_reader(pidfd)
        if handle is not None:
            handle.cancel()
        if not fut.done():
            fut.cancel()
        _helper.remove(fut, w)


def _nbytes(item: Any) -> int:
    if isinstance(item, (bytes, bytearray)):
        return len(item)
    bufs: list[pickle.PickleBuffer] = []
    data = pickle.dumps(item, protocol=5, buffer_callback=bufs.append)
    return len(data) + sum(8 + memoryview(b).nbytes for b in bufs)


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
        raise TypeError(f"'timeout' must be a number or None, not {type(timeout).__name__}")
    if timeout != timeout or timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    return asyncio.get_running_loop().time() + timeout


def _open_owner_pidfd(tid: int) -> int | None:
    """A pidfd that becomes readable when thread ``tid`` exits, or None if
    this kernel cannot give one (PIDFD_THREAD needs Linux >= 6.9; without it
    only a process's main thread can be watched)."""
    try:
        return os.pidfd_open(tid, _PIDFD_THREAD)
    except OSError as e:
        if e.errno == errno.ESRCH:
            raise
    try:
        return os.pidfd_open(tid)  # works when tid is a main thread (tid == pid)
    except OSError as e:
        if e.errno == errno.ESRCH:
            raise
        return None


class QueueLike(Protocol):
    """What the async queue operations need of a queue."""

    def get_nowait(self) -> Any: ...
    def put_nowait(self, item: Any) -> None: ...


class LockLike(Protocol):
    """What ``acquire_async`` and ``async with`` need of a lock (``_core.Mutex``)."""

    def acquire(self, block: bool = ..., timeout: float | None = ...) -> bool: ...
    def release(self) -> None: ...
    def _stats(self) -> dict[str, Any]: ...


class EventLike(Protocol):
    """What ``wait_async`` needs of an event."""

    def is_set(self) -> bool: ...
    def _generation(self) -> int: ...


# The primitives' async methods (``_awaitable``) call these: the primitives
# do not import this module (nor asyncio) until a coroutine first awaits.

async def get(q: QueueLike, timeout: float | None = None) -> Any:
    """Remove and return an item of ``q``, waiting without blocking the loop.
    Raises ``queue.Empty`` on timeout, ``ShutDown`` once shut down and drained."""
    deadline = _deadline(timeout)
    while True:
        try:
            return q.get_nowait()
        except Empty:
            pass
        if not await _wait(q, READABLE, 0, deadline):
            return q.get_nowait()  # one last try: raises Empty


async def put(q: QueueLike, item: Any, timeout: float | None = None) -> None:
    """Put an item in ``q``, waiting for room without blocking the loop.
    Raises ``queue.Full`` on timeout, ``ShutDown`` once shut down."""
    deadline = _deadline(timeout)
    need = -1
    while True:
        try:
            return q.put_nowait(item)
        except Full:
            pass
        if need < 0:
            need = _nbytes(item)
        if not await _wait(q, WRITABLE, need, deadline):
            return q.put_nowait(item)  # raises Full


async def items(q: QueueLike) -> AsyncIterator[Any]:
    """``async for``: the items of ``q`` until it is shut down and drained."""
    while True:
        try:
            yield await get(q)
        except ShutDown:
            return


async def acquire(lk: LockLike, timeout: float | None = None) -> bool:
    """Take ``lk`` without blocking the loop (see ``Lock.acquire_async``)."""
    deadline = _deadline(timeout)
    while True:
        if lk.acquire(False):  # takes over from a dead owner too
            return True
        tid = lk._stats()["owner_tid"]
        pidfd: int | None = None
        if tid:
            try:
                pidfd = _open_owner_pidfd(tid)
            except OSError:  # ESRCH: the owner is gone; acquire(False) takes over
                continue
        try:
            if pidfd is not None and lk.acquire(False):
                # The owner was alive when the pidfd was opened, or we
                # got it now: the pidfd names the owner we wait for.
                return True
            # The C side ends the wait if the word names another owner
            # than `tid`: we then watch the new one.
            recheck = None if pidfd is not None else _OWNER_RECHECK
            if not await _wait(lk, UNLOCKED, tid, deadline, pidfd, recheck):
                return bool(lk.acquire(False))
        finally:
            if pidfd is not None:
                os.close(pidfd)


async def wait_set(ev: EventLike, timeout: float | None = None) -> bool:
    """Wait until ``ev`` is set without blocking the loop; ``is_set()`` on
    return, like ``Event.wait`` (False on timeout)."""
    deadline = _deadline(timeout)
    # The generation when this wait began (``Event.set`` bumps it): a set()
    # followed at once by clear() still ends the wait with True, as for the
    # blocking ``wait`` and ``threading.Event`` (docs/design/sync.md).
    gen = ev._generation()
    while not ev.is_set():
        if ev._generation() != gen:
            return True
        if not await _wait(ev, SET, gen, deadline):
            return bool(ev.is_set()) or ev._generation() != gen
    return True


def stop_waiters(obj: Any) -> None:
    """Called by ``detach()``: the helper thread leaves its C wait on obj first."""
    _helper.stop(obj)


def helper_rounds() -> int:
    """How many sleeps the helper thread has started (tests: no periodic wake-up)."""
    return _helper.rounds
