"""The connection to one Redis server, its errors, and the lease keeper.

``Backend`` wraps one ``redis.Redis`` client (its connection pool is shared
by every interlock object of this process made from the same URL).  Each
object call is one ``FCALL`` of the library in ``_lua.py``; the library is
loaded on first use, and again whenever the server answers "function not
found" (a restarted server has forgotten it: nothing ran, so retrying is
safe).

Errors: a connection refused, dropped or timed out becomes
:class:`ConnectionLost`; an object whose keys the server no longer has
becomes :class:`StateLost`.  Both are raised at once: interlock never
retries an operation that may have run, and never reports an empty queue
for one whose contents the server lost.

The keeper: one daemon thread per backend and process renews every lease
this process holds (locks, semaphore permits, queue consumers'
heartbeats) at a third of the lease.  A lease whose owning thread has ended
is not renewed (so it runs out, as a lock of a dead owner must); one that
the server no longer recognises is marked lost.
"""
from __future__ import annotations

import math
import os
import re
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis as _redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ._lua import LIBRARY

__all__ = ["Backend", "ConnectionLost", "LeaseExpired", "StateLost"]


class ConnectionLost(ConnectionError):
    """The Redis server could not be reached, or the connection dropped in the
    middle of an operation (which may or may not have taken effect)."""


class StateLost(ConnectionLost):
    """The server no longer has this object (it restarted without
    persistence, or its keys were deleted): its contents are gone, and
    interlock refuses to carry on as if it were merely empty."""


class LeaseExpired(RuntimeError):
    """The caller's lease ran out (it was paused, cut off, or slower than the
    lease) and another owner may have taken the lock since: whatever it did
    under the lock after the lease ended was not protected.  Use fencing
    tokens to make the protected resource reject such late writes."""


_ERROR = re.compile(r"INTERLOCK_([A-Z]+)\s*(.*)")
HOST = socket.gethostname()


class Lease:
    """One thing the keeper renews: a key, what it is, the token that owns it."""

    __slots__ = ("__weakref__", "key", "lost", "owner", "thread", "token", "what")

    def __init__(self, key: str, what: str, token: str,
                 thread: threading.Thread | None = None, owner: object = None) -> None:
        self.key = key
        self.what = what
        self.token = token
        self.thread = thread  # renew only while this thread runs
        self.owner = weakref.ref(owner) if owner is not None else None  # ... or this object lives
        self.lost = False

    def wanted(self) -> bool:
        if self.thread is not None and not self.thread.is_alive():
            return False
        return self.owner is None or self.owner() is not None


class Backend:
    """A Redis server, as a namespace of interlock primitives.

    Made by :func:`interlock.connect`; see ``interlock.redis`` for the
    classes (``backend.Queue(...)`` makes an ``interlock.redis.Queue`` on
    this server).

    - ``lease``: seconds a lock, a semaphore permit or a consumer's claim on
      its messages outlives a process that stops renewing it (killed,
      paused, cut off).  Renewed at a third of this while held.
    - ``connect_timeout``: seconds to wait for a connection before raising
      :class:`ConnectionLost`.
    - ``prefix``: first part of every key name.
    """

    def __init__(self, url: str, *, lease: float = 10.0, connect_timeout: float = 5.0,
                 prefix: str = "interlock", check: bool = True) -> None:
        if lease <= 0 or connect_timeout <= 0:
            raise ValueError("lease and connect_timeout must be positive")
        self.url = url
        self.lease = float(lease)
        self.connect_timeout = float(connect_timeout)
        self.prefix = prefix
        # Blocking calls are cut into slices of at most `lease` seconds, so a
        # reply is due within lease + connect_timeout: past that the server
        # is unreachable, not slow.
        self.slice = self.lease
        self.client = _redis.Redis.from_url(
            url, socket_connect_timeout=self.connect_timeout,
            socket_timeout=self.lease + self.connect_timeout + 1.0,
            retry=Retry(NoBackoff(), 0), retry_on_timeout=False, decode_responses=False)
        self._loaded = False
        self._keeper_lock = threading.Lock()
        self._leases: dict[int, Lease] = {}
        self._keeper: threading.Thread | None = None
        self._keeper_wake = threading.Event()
        self._pid = os.getpid()
        if check:
            self.ping()

    # -- options travel with pickled objects ------------------------------
    def options(self) -> dict[str, Any]:
        return {"lease": self.lease, "connect_timeout": self.connect_timeout,
                "prefix": self.prefix}

    def key(self, name: str, part: str) -> str:
        return f"{self.prefix}:{{{name}}}:{part}"

    def __repr__(self) -> str:
        return f"<interlock redis backend {self.url!r} lease={self.lease}>"

    # -- calls --------------------------------------------------------------
    @contextmanager
    def errors(self) -> Iterator[None]:
        """Translate redis-py's connection errors into ours."""
        try:
            yield
        except (_redis.ConnectionError, _redis.TimeoutError,
                _redis.exceptions.InvalidResponse) as e:
            # Drop idle pooled connections: after a restart they are all dead.
            try:
                self.client.connection_pool.disconnect(inuse_connections=False)
            except Exception:  # pragma: no cover - best effort
                pass
            raise ConnectionLost(
                f"Redis server {self.url} unreachable or connection lost: {e}") from e

    def ping(self) -> None:
        with self.errors():
            self.client.ping()

    def _load(self) -> None:
        with self.errors():
            self.client.function_load(LIBRARY, replace=True)
        self._loaded = True

    def fcall(self, fn: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if not self._loaded:
            self._load()
        for attempt in (0, 1):
            try:
                with self.errors():
                    return self.client.fcall(fn, len(keys), *keys, *args)
            except _redis.ResponseError as e:
                msg = str(e)
                if attempt == 0 and "unction not found" in msg:
                    self._load()  # a restarted or flushed server: nothing ran
                    continue
                m = _ERROR.search(msg)
                if m is None:
                    raise
                what, rest = m.group(1), m.group(2)
                if what == "LOST":
                    raise StateLost(f"{keys[0]}: {rest} (server {self.url})") from None
                raise _ObjectError(what, rest) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def blocking(self, call: Callable[[], Any]) -> Any:
        with self.errors():
            return call()

    # -- the keeper ---------------------------------------------------------
    def hold(self, lease: Lease) -> None:
        with self._keeper_lock:
            self._check_fork()
            self._leases[id(lease)] = lease
            if self._keeper is None or not self._keeper.is_alive():
                self._keeper = threading.Thread(target=self._keep, args=(weakref.ref(self),),
                                                name=f"interlock-redis-keeper {self.url}",
                                                daemon=True)
                self._keeper.start()

    def drop(self, lease: Lease) -> None:
        with self._keeper_lock:
            self._leases.pop(id(lease), None)

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            # A child holds none of its parent's leases, and has no keeper.
            self._pid = os.getpid()
            self._leases.clear()
            self._keeper = None

    @staticmethod
    def _keep(ref: weakref.ref[Backend]) -> None:
        while True:
            self = ref()
            if self is None:
                return
            period = self.lease / 3
            with self._keeper_lock:
                leases = list(self._leases.values())
            for lease in leases:
                if not lease.wanted():
                    self.drop(lease)
                    continue
                try:
                    ok = self.fcall("il_renew", [lease.key],
                                    [lease.what, lease.token, int(self.lease * 1000)])
                except ConnectionLost:
                    continue  # try again next round; the lease may yet survive
                except Exception:  # pragma: no cover - never kill the keeper
                    continue
                if not ok:
                    lease.lost = True
                    self.drop(lease)
            wake = self._keeper_wake
            del self, leases
            wake.wait(period)


class _ObjectError(Exception):
    """An INTERLOCK_* error other than LOST, for the object classes to word."""

    def __init__(self, what: str, detail: str) -> None:
        super().__init__(what, detail)
        self.what = what
        self.detail = detail


def deadline_after(block: bool, timeout: float | None, *, lock: bool = False) -> float | None:
    """None: wait forever; else the monotonic time to give up (now if not
    block).  Checks and messages as ``queue.Queue`` (or, with ``lock``,
    ``threading.Lock``: a timeout with block=False is an error, -1 is none)."""
    if not block:
        if lock and timeout is not None:
            raise ValueError("can't specify a timeout for a non-blocking call")
        return time.monotonic()
    if timeout is None or (lock and timeout == -1):
        return None
    t = float(timeout)
    if math.isnan(t) or t < 0:
        raise ValueError("'timeout' must be a non-negative number")
    return time.monotonic() + t


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()
