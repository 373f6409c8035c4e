"""``interlock.connect(url)``: pick where the primitives live.

    interlock.connect()                          # this machine: shared memory (the default)
    interlock.connect("redis://host:6379/0")     # a Redis server: across machines
    interlock.connect("unix:///run/redis.sock?db=0")

Either way the result is a namespace with ``Queue``, ``JoinableQueue``,
``SimpleQueue``, ``Lock``, ``RLock``, ``Semaphore``, ``Event`` (those the
backend has), so code written against one runs on the other.  Redis
backends are cached per URL and options: objects pickled to another
process reconnect through the same cache there.
"""
from __future__ import annotations

import threading
from typing import Any

__all__ = ["LocalBackend", "connect"]

_NAMES = ("Queue", "JoinableQueue", "SimpleQueue", "Lock", "RLock", "Semaphore",
          "BoundedSemaphore", "Event")
_LOCAL = ("local", "local://", "shm", "shm://")
_REDIS = ("redis", "rediss", "unix")

_cache: dict[tuple[Any, ...], Any] = {}
_cache_lock = threading.Lock()


class LocalBackend:
    """The shared-memory primitives of this machine, as a namespace."""

    kind = "local"
    url = "local://"

    def __getattr__(self, attr: str) -> Any:
        if attr in _NAMES:
            import interlock
            try:
                return getattr(interlock, attr)
            except AttributeError:
                raise AttributeError(f"the local backend has no {attr} (yet)") from None
        raise AttributeError(attr)

    def __repr__(self) -> str:
        return "<interlock local backend (shared memory)>"


LOCAL = LocalBackend()


def connect(url: str | None = None, **options: Any) -> Any:
    """Return the backend for ``url``: ``None``/``"local://"`` for shared
    memory on this machine, ``redis://``/``rediss://``/``unix://`` for a Redis
    server (options: ``lease=10.0``, ``connect_timeout=5.0``,
    ``prefix="interlock"``, ``check=True``: ping the server now, raising
    ``interlock.redis.ConnectionLost`` if it cannot be reached)."""
    if url is None or url in _LOCAL:
        if options:
            raise TypeError(f"the local backend takes no options, got {sorted(options)}")
        return LOCAL
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _REDIS:
        raise ValueError(f"unknown backend URL {url!r}: use local://, redis://, rediss:// or unix://")
    try:
        from .redis import RedisBackend
    except ImportError as e:  # redis-py missing
        raise ImportError(f"{url!r} needs redis-py: pip install 'interlock[redis]' ({e})") from e
    check = options.pop("check", True)
    key = (url, tuple(sorted(options.items())))
    with _cache_lock:
        backend = _cache.get(key)
        if backend is None:
            backend = RedisBackend(url, check=False, **options)
            _cache[key] = backend
    if check:
        backend.ping()
    return backend


def _rebuild(url: str, options: dict[str, Any], cls: str, name: str, *extra: Any) -> Any:
    """Unpickle a Redis object in another process: same server, same name."""
    backend = connect(url, check=False, **options)
    if cls == "Lock" or cls == "RLock":
        return getattr(backend, cls)(name=name, create=False, on_owner_death=extra[0])
    if cls in ("Semaphore", "BoundedSemaphore"):
        return getattr(backend, cls)(name=name, create=False)
    return getattr(backend, cls)(name=name, create=False)
