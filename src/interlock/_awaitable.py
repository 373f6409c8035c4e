"""The async methods of the primitives (``get_async``, ``async with lock``,
``wait_async``), declared here so that the primitives need not import
asyncio: each method imports :mod:`interlock.aio`, where the waiting is
done, on first use (a deliberate lazy import; aio imports none of the
primitives either, it types them by Protocols).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncIterator

if TYPE_CHECKING:
    from .aio import EventLike, LockLike, QueueLike


class AsyncQueueMixin:
    """The asyncio face of :class:`interlock.Queue`."""

    async def get_async(self: QueueLike, timeout: float | None = None) -> Any:
        """Remove and return an item, waiting without blocking the loop.
        Raises ``queue.Empty`` on timeout, ``ShutDown`` once shut down and drained."""
        from . import aio

        return await aio.get(self, timeout)

    async def put_async(self: QueueLike, item: Any, timeout: float | None = None) -> None:
        """Put an item, waiting for room without blocking the loop.
        Raises ``queue.Full`` on timeout, ``ShutDown`` once shut down."""
        from . import aio

        await aio.put(self, item, timeout)

    def __aiter__(self: QueueLike) -> AsyncIterator[Any]:
        from . import aio

        return aio.items(self)


class AsyncLockMixin:
    """The asyncio face of :class:`interlock.Lock`: ``async with lock``.

    The lock is owned by the thread that runs the event loop, as with the
    blocking API; two coroutines of one loop exclude each other because a
    ``Lock`` is not re-entrant (do not use ``async with`` on an ``RLock``
    from several coroutines of one loop: they share its owner thread).
    """

    async def acquire_async(self: LockLike, timeout: float | None = None) -> bool:
        from . import aio

        return await aio.acquire(self, timeout)

    async def __aenter__(self: LockLike) -> bool:
        from . import aio

        return await aio.acquire(self)

    async def __aexit__(self: LockLike, *exc: object) -> None:
        self.release()


class AsyncEventMixin:
    """The asyncio face of :class:`interlock.Event`: ``await ev.wait_async()``."""

    async def wait_async(self: EventLike, timeout: float | None = None) -> bool:
        """Wait until the event is set, without blocking the loop; returns
        ``is_set()`` like ``Event.wait`` (False on timeout)."""
        from . import aio

        return await aio.wait_set(self, timeout)
