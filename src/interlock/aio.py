"""asyncio support: ``await q.get_async()``, ``async for``, ``async with lock``.

How a coroutine waits without blocking the event loop and without polling
on a timer: the C core has wait-only calls (``_wait_readable``,
``_wait_writable``, ``_wait_unlocked``) that block on the same futexes as
the blocking API but *take nothing*. For each object and direction one
helper thread makes that call while some coroutine waits; when it returns,
the thread resolves the coroutines' futures through
``loop.call_soon_threadsafe`` (the loop's own self-pipe: the wake-up comes
through the loop). Each woken coroutine then tries the non-blocking
operation in the loop's thread; whoever loses the race waits again.

Because items are only ever taken in the loop's thread by a non-blocking
call, cancelling a coroutine at any ``await`` leaves the queue and the lock
exactly as they were: there is no item in flight in a helper thread.

Alternatives rejected: ``run_in_executor(q.get)`` (a cancelled coroutine
leaves the thread blocked in ``get`` and the item it takes is lost; and one
thread per waiting coroutine); polling ``get_nowait`` with ``asyncio.sleep``
(latency or CPU, and the issue forbids it).
"""
from __future__ import annotations

import asyncio
import os
import pickle
import threading
import weakref
from typing import Any, AsyncIterator, Callable

from ._errors import Empty, Full, QueueClosed

# The helper thread re-checks, this often, whether any coroutine still
# waits (and whether the object is being detached); a wake-up itself is
# immediate.
_SLICE = 0.05


def _resolve(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)


class _Waiters:
    """Coroutines waiting for one condition of one object, and the thread
    that waits for it on their behalf."""

    def __init__(self, obj: Any, wait: Callable[[Any, int, float], bool]) -> None:
        # A weak reference: the waiters live in obj.__dict__, and a strong one
        # would make a cycle that keeps the object (and its segment) alive
        # until the garbage collector runs.
        self._obj = weakref.ref(obj)
        self._wait = wait  # wait(obj, arg, timeout) -> ready?
        self._lock = threading.Lock()
        self._futs: dict["asyncio.Future[None]", int] = {}
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._stopping = False

    def stop(self) -> None:
        """Wake every waiting coroutine and end the helper thread (the object
        is being detached: the thread must leave its C wait first)."""
        with self._lock:
            self._stopping = True
            futs, self._futs = self._futs, {}
            t = self._thread if self._pid == os.getpid() else None
        for fut in futs:
            if not fut.done():
                try:
                    fut.get_loop().call_soon_threadsafe(_resolve, fut)
                except RuntimeError:
                    pass
        if t is not None and t is not threading.current_thread():
            t.join(5 * _SLICE + 1)

    def wait(self, arg: int = 0) -> "asyncio.Future[None]":
        fut = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._stopping:  # detached: let the caller's retry raise
                fut.set_result(None)
                return fut
            if self._pid != os.getpid():  # forked: the parent's thread is not ours
                self._pid, self._thread, self._futs = os.getpid(), None, {}
            self._futs[fut] = arg
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="interlock-aio-waiter")
                self._thread.start()
        return fut

    def _run(self) -> None:
        while True:
            with self._lock:
                self._futs = {f: a for f, a in self._futs.items() if not f.done()}
                if not self._futs or self._stopping:
                    self._thread = None
                    return
                arg = min(self._futs.values())
            obj = self._obj()
            try:
                ready = True if obj is None else self._wait(obj, arg, _SLICE)
            except Exception:  # the object was detached under us: wake all, they will see
                ready = True
            del obj
            if ready:
                with self._lock:
                    futs, self._futs = self._futs, {}
                for fut in futs:
                    if not fut.done():
                        try:
                            fut.get_loop().call_soon_threadsafe(_resolve, fut)
                        except RuntimeError:  # its loop is closed
                            pass


def _waiters(obj: Any, attr: str, wait: Callable[[Any, int, float], bool]) -> _Waiters:
    w = obj.__dict__.get(attr)
    if w is None:
        w = obj.__dict__.setdefault(attr, _Waiters(obj, wait))
    return w  # type: ignore[no-any-return]


def _nbytes(item: Any) -> int:
    if isinstance(item, (bytes, bytearray)):
        return len(item)
    bufs: list[pickle.PickleBuffer] = []
    data = pickle.dumps(item, protocol=5, buffer_callback=bufs.append)
    return len(data) + sum(8 + memoryview(b).nbytes for b in bufs)


async def _await(fut: "asyncio.Future[None]", deadline: float | None) -> bool:
    """Wait for fut until deadline (loop time); False on timeout."""
    if deadline is None:
        await fut
        return True
    remaining = deadline - asyncio.get_running_loop().time()
    if remaining <= 0:
        fut.cancel()
        return False
    try:
        await asyncio.wait_for(fut, remaining)
        return True
    except asyncio.TimeoutError:
        return False


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
        raise TypeError(f"'timeout' must be a number or None, not {type(timeout).__name__}")
    if timeout != timeout or timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    return asyncio.get_running_loop().time() + timeout


class AsyncQueueMixin:
    """The asyncio face of :class:`interlock.Queue`."""

    async def get_async(self, timeout: float | None = None) -> Any:
        """Remove and return an item, waiting without blocking the loop.
        Raises ``queue.Empty`` on timeout, ``QueueClosed`` once closed and drained."""
        deadline = _deadline(timeout)
        q: Any = self
        while True:
            try:
                return q.get_nowait()
            except Empty:
                pass
            w = _waiters(self, "_aio_readable", lambda o, _a, t: bool(o._wait_readable(t)))
            if not await _await(w.wait(), deadline):
                raise Empty

    async def put_async(self, item: Any, timeout: float | None = None) -> None:
        """Put an item, waiting for room without blocking the loop.
        Raises ``queue.Full`` on timeout, ``QueueClosed`` if closed."""
        deadline = _deadline(timeout)
        q: Any = self
        need = -1
        while True:
            try:
                return q.put_nowait(item)  # type: ignore[no-any-return]
            except Full:
                pass
            if need < 0:
                need = _nbytes(item)
            w = _waiters(self, "_aio_writable", lambda o, a, t: bool(o._wait_writable(a, t)))
            if not await _await(w.wait(need), deadline):
                raise Full

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[Any]:
        while True:
            try:
                yield await self.get_async()
            except QueueClosed:
                return


class AsyncLockMixin:
    """The asyncio face of :class:`interlock.Lock`: ``async with lock``.

    The lock is owned by the thread that runs the event loop, as with the
    blocking API; two coroutines of one loop exclude each other because a
    ``Lock`` is not re-entrant (do not use ``async with`` on an ``RLock``
    from several coroutines of one loop: they share its owner thread).
    """

    async def acquire_async(self, timeout: float | None = None) -> bool:
        """Take the lock without blocking the loop; True if taken, False on
        timeout. A lock whose owner died is taken over, with the lock's
        ``on_owner_death`` report (``OwnerDiedWarning`` by default)."""
        deadline = _deadline(timeout)
        lk: Any = self
        while True:
            if lk.acquire(False):
                return True
            w = _waiters(self, "_aio_unlocked", lambda o, _a, t: bool(o._wait_unlocked(t)))
            if not await _await(w.wait(), deadline):
                return False

    async def __aenter__(self) -> bool:
        return await self.acquire_async()

    async def __aexit__(self, *exc: object) -> None:
        self.release()  # type: ignore[attr-defined]


class AsyncEventMixin:
    """The asyncio face of :class:`interlock.Event`: ``await ev.wait_async()``."""

    async def wait_async(self, timeout: float | None = None) -> bool:
        """Wait until the event is set, without blocking the loop; returns
        ``is_set()`` like ``Event.wait`` (False on timeout)."""
        deadline = _deadline(timeout)
        ev: Any = self
        while not ev.is_set():
            w = _waiters(self, "_aio_set", lambda o, _a, t: bool(o.wait(t)))
            if not await _await(w.wait(), deadline):
                return bool(ev.is_set())
        return True


def stop_waiters(obj: Any) -> None:
    """Called by ``detach()``: end the object's helper threads first."""
    for v in list(getattr(obj, "__dict__", {}).values()):
        if isinstance(v, _Waiters):
            v.stop()
