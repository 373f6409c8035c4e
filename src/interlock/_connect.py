"""``interlock.connect(url)``: pick where the primitives live.

    interlock.connect()                          # this machine: shared memory (the default)
    interlock.connect("redis://host:6379/0")     # a Redis server: across machines
    interlock.connect("unix:///run/redis.sock?db=0")
    interlock.connect("redis+cluster://host:7000")          # a Redis Cluster
    interlock.connect("redis+sentinel://host:26379/mymaster/0")  # the primary Sentinel names

Either way the result is a namespace with ``Queue``, ``JoinableQueue``,
``SimpleQueue``, ``Lock``, ``RLock``, ``Semaphore``, ``Event`` (those the
backend has), so code written against one runs on the other.  Redis
backends are cached per URL and options: objects pickled to another
process reconnect through the same cache there.
"""
from __future__ import annotations

from typing import Any

__all__ = ["LocalBackend", "connect"]

_NAMES = ("Queue", "JoinableQueue", "SimpleQueue", "Lock", "RLock", "Semaphore",
          "BoundedSemaphore", "Event")
_LOCAL = ("local", "local://", "shm", "shm://")

_OPTIONS = ("lease", "connect_timeout", "prefix", "check", "grace", "durable")



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
    server, ``redis+cluster://`` for a Redis Cluster, ``redis+sentinel://``
    for the primary that Sentinels name (schemes in any case; options:
    ``lease=10.0``, ``connect_timeout=5.0``, ``prefix="interlock"``,
    ``check=True``: ping the server now, raising
    ``interlock.redis.ConnectionLost`` if it cannot be reached,
    ``interlock.redis.AuthenticationFailed`` if it refuses the
    credentials)."""
    if url is None or (isinstance(url, str) and url.lower() in _LOCAL):
        if options:
            raise TypeError(f"the local backend takes no options, got {sorted(options)}")
        return LOCAL
    from ._redis._client import redact, split_url
    scheme, rest = split_url(url)
    url = f"{scheme}://{rest}"  # one spelling per URL: REDIS:// is redis://
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for {redact(url)!r}: "
                        + ", ".join(_OPTIONS))
    try:
        from .redis import RedisBackend
    except ImportError as e:  # redis-py missing
        raise ImportError(f"{redact(url)!r} needs redis-py: pip install 'interlock[redis]' "
                          f"({e})") from e
    check = options.pop("check", True)
    if not isinstance(check, bool):
        raise TypeError(f"check must be True or False, not {check!r}")
    try:
        hash(tuple(sorted(options.items())))
    except TypeError:
        raise TypeError(f"options must be numbers and strings, got {options!r}") from None
    backend = RedisBackend.cached(url, options)
    if check:
        backend.ping()
    return backend

