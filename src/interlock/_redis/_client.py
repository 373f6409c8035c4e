"""The connection to one Redis server, its errors, and the lease keeper.

``Backend`` wraps one ``redis.Redis`` client (its connection pool is shared
by every interlock object of this process made from the same URL).  Each
object call is one ``FCALL`` of the library in ``_lua.py``; the library is
loaded on first use, and again whenever the server answers "function not
found" (a restarted server has forgotten it: nothing ran, so retrying is
safe).

Which client: ``redis://``, ``rediss://`` and ``unix://`` a plain
``redis.Redis`` (switched to a cluster client when the server answers
``MOVED``: it is a cluster node); ``redis+cluster://host:port`` a
``RedisCluster`` (the library is loaded on every primary);
``redis+sentinel://host:port[,host:port...]/service[/db]`` the primary
that the Sentinels name, found again after a fail-over.

Errors: a connection refused, dropped or timed out becomes
:class:`ConnectionLost`; an object whose keys the server no longer has
becomes :class:`StateLost`, and one whose state went back in time (a
fencing token or a position lower than one this process already saw from
it: a restart from an older snapshot, a failover to a lagging replica)
:class:`RolledBack`.  An operation cut off is not blindly repeated: the
object classes make each of their state-changing steps safe to repeat
(acknowledgements are idempotent; a put carries its producer's request
number; an acquire its fresh token; a consumer re-reads its own pending
list after a lost reply): ``fcall`` sends those in ``RETRIED`` once more
after a lost reply, within the caller's budget.

Deadlines: every reply is awaited for at most the caller's remaining time
plus ``grace`` seconds (``call``): a stalled server costs a caller at most
``grace`` past its timeout, never the lease or the connect timeout.

Credentials refused, or an ACL that forbids what interlock needs, raise
:class:`AuthenticationFailed` (not a ``ConnectionError``: retrying cannot
help); a key of the object that holds something interlock did not put
there raises :class:`KeyConflict`; any other error reply,
:class:`ServerError`.  Every message names the object and the server,
with the URL's password replaced by ``***``.

The keeper: one daemon thread per backend and process renews every lease
this process holds (locks, semaphore permits, queue consumers'
heartbeats) at a third of the lease.  It runs only while there is a lease
to renew: started by the first, it ends when the last is dropped (and a
fork() waits for an ending keeper, so that a process holding no lease
forks without a thread of ours).  A lease whose owning thread has ended
is not renewed (so it runs out, as a lock of a dead owner must); one that
the server no longer recognises is marked lost.  Each lease also keeps a
*local* deadline (the time its last successful renewal was sent, plus the
lease): past it the holder cannot know that it still holds, and says so
(``_is_owned()`` False, ``LeaseExpired`` on its next call), whether or not
the server is reachable.
"""
from __future__ import annotations

import inspect
import math
import os
import re
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis as _redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .. import _core
from ..errors import (AuthenticationFailed, ConnectionLost, KeyConflict, LeaseExpired, RolledBack,
                      ServerError, StateLost)
from ._lua import LIBRARY

__all__ = ["AuthenticationFailed", "Backend", "ConnectionLost", "KeyConflict", "LeaseExpired",
           "RolledBack", "ServerError", "StateLost", "redact", "split_url"]


# No CLIENT SETINFO round trip on connect: a new connection to a stalled
# server would wait for its reply past every caller's deadline.
_NO_SETINFO: dict[str, Any] = (
    {"driver_info": None} if "driver_info" in inspect.signature(_redis.Redis.__init__).parameters
    else {"lib_name": None, "lib_version": None})

#: What ``Backend.translate`` may turn into ours.
_REDIS_ERRORS = (_redis.RedisError, _redis.exceptions.RedisClusterException)

_ERROR = re.compile(r"INTERLOCK_([A-Z]+)\s*(.*?)(?:\s+script: .*)?$", re.S)
HOST = socket.gethostname()

#: URL schemes (after lower-casing) -> how to connect.
SCHEMES = {"redis": "plain", "rediss": "plain", "unix": "plain",
           "redis+cluster": "cluster", "rediss+cluster": "cluster",
           "redis+sentinel": "sentinel", "rediss+sentinel": "sentinel"}

#: The type each part of an object's keys must have (anything else is foreign).
KEY_TYPES = {"meta": "hash", "s": "stream", "ev": "stream", "lock": "string",
             "wake": "list", "holders": "zset", "flag": "string"}


def split_url(url: str) -> tuple[str, str]:
    """``(scheme, rest)`` with the scheme lower-cased (``REDIS://`` is
    ``redis://``, for redis-py too); ValueError for an unknown scheme."""
    if not isinstance(url, str):
        raise TypeError(f"the backend URL must be a str, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"unknown backend URL {redact(url)!r}: use local://, "
                         + ", ".join(f"{k}://" for k in SCHEMES))
    return scheme, rest


def redact(url: str) -> str:
    """The URL with its password (``user:password@`` or ``?password=``)
    replaced by ``***``: what messages and ``repr()`` show."""
    scheme, sep, rest = url.partition("://")
    head, q, query = rest.partition("?")
    # userinfo ends at the last '@' before the path (a password may hold '@' or '/')
    at = head.rfind("@")
    if at >= 0:
        user, colon, _ = head[:at].partition(":")
        head = (f"{user}:***" if colon else "***") + head[at:]
    if q:
        query = re.sub(r"(?i)(^|&)(password|sentinel_password)=[^&]*", r"\1\2=***", query)
    return scheme + sep + head + q + query


def _db_of(scheme: str, rest: str) -> int:
    """The database number a URL names (0 if none), checked."""
    head, _, query = rest.partition("?")
    raw = ""
    for kv in query.split("&"):
        k, _, v = kv.partition("=")
        if k.lower() == "db":
            raw = v
    if not raw and scheme in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        path = head.partition("/")[2]
        raw = path.strip("/")
    elif not raw and scheme.endswith("+sentinel"):
        parts = head.partition("/")[2].strip("/").split("/")
        raw = parts[1] if len(parts) > 1 else ""
    if not raw:
        return 0
    if not raw.isdigit():
        raise ValueError(f"the database in the URL must be a number >= 0, not {raw!r}")
    return int(raw)


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {type(value).__name__} "
                        f"({value!r})")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{what} must be a positive, finite number of seconds, not {value!r}")
    return v


class Lease:
    """One thing the keeper renews: a key, what it is, the token that owns it."""

    __slots__ = ("__weakref__", "error", "key", "lost", "owner", "renew", "thread", "token",
                 "until", "what")

    def __init__(self, key: str, what: str, token: str,
                 thread: threading.Thread | None = None, owner: object = None,
                 until: float = math.inf,
                 renew: Callable[[float], bool] | None = None) -> None:
        self.key = key
        self.what = what
        self.token = token
        self.thread = thread  # renew only while this thread runs
        self.owner = weakref.ref(owner) if owner is not None else None  # ... or this object lives
        self.lost = False
        # Local deadline (time.monotonic()): when the request that last
        # granted or renewed the lease was *sent*, plus the lease.  The
        # server's lease cannot outlast it, whatever replies were lost.
        self.until = until
        self.error = ""  # the last failed renewal, for the holder to report
        self.renew = renew  # a custom renewal (queue consumers), given a budget in s

    def expired(self) -> bool:
        return self.lost or time.monotonic() >= self.until

    def wanted(self) -> bool:
        if self.thread is not None and not self.thread.is_alive():
            return False
        return self.owner is None or self.owner() is not None


_cache: dict[tuple[Any, ...], Any] = {}
_cache_lock = threading.Lock()


def rebuild(backend: "Backend", cls: type, name: str, options: dict[str, Any]) -> Any:
    """Unpickle a Redis object in another process: same server, same name."""
    return cls(backend, name=name, create=False, **options)


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
    - ``grace``: seconds a reply may come after the caller's deadline before
      the server counts as unreachable (``ConnectionLost``); also the budget
      of a non-blocking call.
    - ``durable``: after each state-changing call, wait (``WAIT`` /
      ``WAITAOF``) until that many replicas (``("replicas", n)``), or the
      local AOF (``"aof"``), have the write; a call the server cannot
      confirm within its budget raises ``ConnectionLost``.  None: no wait.
    """

    def __init__(self, url: str, *, lease: float = 10.0, connect_timeout: float = 5.0,
                 prefix: str = "interlock", check: bool = True, grace: float = 1.0,
                 durable: Any = None) -> None:
        scheme, rest = split_url(url)
        self.lease = _positive(lease, "lease")
        self.connect_timeout = _positive(connect_timeout, "connect_timeout")
        self.grace = _positive(grace, "grace")
        self.durable = _durable(durable)
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"prefix {prefix!r} may not contain '{{' or '}}' (they would "
                             "change the keys' cluster hash tag)")
        if not isinstance(check, bool):
            raise TypeError(f"check must be True or False, not {check!r}")
        _db_of(scheme, rest)
        self.url = f"{scheme}://{rest}"  # (with the password: it travels with pickles)
        self.safe_url = redact(self.url)  # what messages and repr() show
        self.mode = SCHEMES[scheme]
        self.prefix = prefix
        # Blocking calls are cut into slices of at most `lease` seconds; each
        # reply is awaited for the caller's time left (or the slice) plus
        # `grace` (see call()).  The socket's own timeout, `grace`, bounds
        # what call() does not: the connection handshake (HELLO), and the
        # few plain redis-py calls (FUNCTION LOAD, DEL, PING).
        self.slice = self.lease
        self.client: Any = self._make_client(self.mode)
        # The wire fast path (FastConn): one private connection per thread,
        # spoken to in C; _gen counts connection failures, so that one
        # thread's failure retires every thread's connection (as redis-py's
        # pool is emptied of its idle ones: after a restart all are dead).
        self._fast = _fast_capable(self.client) if self.mode == "plain" else False
        self._fast_local = threading.local()
        self._gen = 0
        self._loaded = False
        self._keeper_lock = threading.Lock()
        self._leases: dict[int, Lease] = {}
        self._keeper: threading.Thread | None = None  # the keeper, while leases are held
        self._keeper_thread: threading.Thread | None = None  # the last one, until joined
        self._keeper_wake = threading.Event()
        self._pid = os.getpid()
        # High-water marks (see RolledBack): object key + what -> highest seen.
        self._marks: dict[str, int] = {}
        self._marks_lock = threading.Lock()
        # Queue consumers of this process (one per queue name and kind).
        self.consumers: dict[Any, Any] = {}
        _backends.add(self)
        if check:
            self.ping()

    def _make_client(self, mode: str) -> Any:
        """A redis-py client for this URL: plain, cluster or sentinel-managed.
        Nothing is retried by redis-py (see the module docstring)."""
        scheme, rest = split_url(self.url)
        base = scheme.partition("+")[0]
        opts: dict[str, Any] = dict(
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=self.grace,
            retry=Retry(NoBackoff(), 0), decode_responses=False, **_NO_SETINFO)
        if mode == "cluster":
            from redis.cluster import RedisCluster
            return RedisCluster.from_url(f"{base}://{rest}", **opts)
        if mode == "sentinel":
            return self._sentinel_client(base, rest, opts)
        return _redis.Redis.from_url(f"{scheme}://{rest}", retry_on_timeout=False, **opts)

    def _sentinel_client(self, base: str, rest: str, opts: dict[str, Any]) -> Any:
        """``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``:
        the credentials and db are the primary's; the Sentinels are asked
        without credentials."""
        from urllib.parse import unquote

        from redis.sentinel import Sentinel
        head, _, query = rest.partition("?")
        netloc, _, path = head.partition("/")
        user = password = None
        if "@" in netloc:
            cred, _, netloc = netloc.rpartition("@")
            u, colon, pw = cred.partition(":")
            user, password = (unquote(u) or None), (unquote(pw) if colon else None)
        hosts = []
        for hp in netloc.split(","):
            h, _, port = hp.rpartition(":") if ":" in hp else (hp, "", "26379")
            if not h or not port.isdigit():
                raise ValueError(f"{self.safe_url}: bad Sentinel address {hp!r} (host:port)")
            hosts.append((h.strip("[]"), int(port)))
        service = path.strip("/").split("/")[0]
        if not service:
            raise ValueError(f"{self.safe_url}: no service name (redis+sentinel://host:port/"
                             "service)")
        sentinel = Sentinel(hosts, sentinel_kwargs={
            "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": self.connect_timeout}, **opts)  # type: ignore[no-untyped-call]
        return sentinel.master_for(  # type: ignore[no-untyped-call]
            service, username=user, password=password,
            db=_db_of("redis+sentinel", rest), ssl=base == "rediss")

    # -- options travel with pickled objects ------------------------------
    @classmethod
    def cached(cls, url: str, options: dict[str, Any]) -> Any:
        """The one backend of this class for ``url`` and ``options`` in this
        process (made on first use, without a ping): ``connect()`` and
        unpickled objects share it, and so its connections."""
        key = (cls, url, tuple(sorted(options.items())))
        hash(key)  # TypeError for unhashable options: the caller words it
        with _cache_lock:
            backend = _cache.get(key)
            if backend is None:
                backend = _cache[key] = cls(url, check=False, **options)
        return backend

    def __reduce__(self) -> Any:
        # By URL and options, to the same cache in the receiving process;
        # type(self) (pickled by reference) brings its module with it.
        return (type(self).cached, (self.url, self.options()))

    def options(self) -> dict[str, Any]:
        out: dict[str, Any] = {"lease": self.lease, "connect_timeout": self.connect_timeout,
                               "prefix": self.prefix}
        if self.grace != 1.0:
            out["grace"] = self.grace
        if self.durable is not None:
            out["durable"] = self.durable
        return out

    def key(self, name: str, part: str) -> str:
        """``<prefix>:{<tag>}:<part>``: every key of one object shares the hash
        tag (one cluster slot).  The tag is the name itself, unless that
        would make an empty tag (``''``, a name starting with ``}``) or
        starts with ``#``: then ``#`` and the name's UTF-8 in hex."""
        return f"{self.prefix}:{{{name_tag(name)}}}:{part}"

    def describe(self, keys: Sequence[str]) -> str:
        """The object a list of keys belongs to, for messages."""
        if not keys:
            return "interlock"
        k = keys[0]
        head = f"{self.prefix}:{{"
        if k.startswith(head) and "}:" in k:
            tag = k[len(head):k.rindex("}:")]
            try:
                name = bytes.fromhex(tag[1:]).decode() if tag.startswith("#") else tag
            except ValueError:
                name = tag
            return f"interlock object {name!r}"
        return f"key {k!r}"

    def __repr__(self) -> str:
        return f"<interlock redis backend {self.safe_url!r} lease={self.lease}>"

    # -- calls --------------------------------------------------------------
    @contextmanager
    def errors(self, keys: Sequence[str] = (), raw: bool = False) -> Iterator[None]:
        """Translate redis-py's errors into ours (see the module docstring);
        with ``raw``, error replies are left to the caller."""
        try:
            yield
        except _REDIS_ERRORS as e:
            mine = self.translate(e, keys, raw)
            if mine is None:
                raise
            raise mine from e

    def translate(self, e: BaseException, keys: Sequence[str] = (),
                  raw: bool = False) -> BaseException | None:
        """``errors``'s translation of a redis-py error ``e``, for the hot
        paths that catch it themselves (a ``with`` costs a generator): ours
        to raise, or None to raise ``e`` as it is."""
        if isinstance(e, (_redis.AuthenticationError, _redis.exceptions.AuthorizationError)):
            return AuthenticationFailed(
                f"Redis server {self.safe_url} refused the credentials: {e} (the URL's "
                "user and password: redis://user:password@host)")
        if isinstance(e, (_redis.ConnectionError, _redis.TimeoutError,
                          _redis.exceptions.InvalidResponse)):
            # Drop idle pooled connections: after a restart they are all dead.
            self._gen += 1
            try:
                pool = getattr(self.client, "connection_pool", None)
                if pool is not None:
                    pool.disconnect(inuse_connections=False)
            except Exception:  # pragma: no cover - best effort
                pass
            return ConnectionLost(
                f"Redis server {self.safe_url} unreachable or connection lost: {e}")
        if isinstance(e, _redis.ResponseError):
            return None if raw else self.reply_error(e, keys)
        if isinstance(e, _redis.exceptions.RedisClusterException):
            return ServerError(f"{self.describe(keys)}: Redis Cluster {self.safe_url}: {e}")
        return None

    def reply_error(self, e: Exception, keys: Sequence[str], fn: str = "") -> Exception:
        """The interlock exception for an error reply ``e`` to a call on ``keys``."""
        msg = str(e)
        what = self.describe(keys)
        at = f"(server {self.safe_url})"
        if isinstance(e, _redis.exceptions.NoPermissionError) or "NOPERM" in msg:
            if "function" in msg.lower() and "load" in msg.lower():
                return AuthenticationFailed(
                    f"{what}: the Redis user may not run FUNCTION LOAD, which interlock needs "
                    f"to install its function library: grant it '+function|load' (and "
                    f"'+fcall'), or load the library once as an admin {at}: {msg}")
            return AuthenticationFailed(
                f"{what}: the Redis user's ACL forbids it ({fn or 'a command'} on "
                f"{', '.join(keys) or 'the server'}); interlock needs +@all on "
                f"'{self.prefix}:*' keys {at}: {msg}")
        if "WRONGTYPE" in msg:
            return KeyConflict(f"{what}: {self._foreign(keys)} {at}")
        if "DB index is out of range" in msg:
            return ValueError(f"the database in {self.safe_url} does not exist on the server "
                              f"({msg})")
        if isinstance(e, (_redis.exceptions.MovedError, _redis.exceptions.AskError)):
            return ServerError(f"{what}: {self.safe_url} is a Redis Cluster node: connect with "
                               f"redis+cluster://host:port ({msg})")
        if isinstance(e, _redis.exceptions.ReadOnlyError):
            return ServerError(f"{what}: {self.safe_url} is a read-only replica: connect to the "
                               f"primary, or through Sentinel (redis+sentinel://) ({msg})")
        return ServerError(f"{what}: the server refused {fn or 'the call'} {at}: {msg}")

    def _foreign(self, keys: Sequence[str]) -> str:
        """Name the keys of ``keys`` whose type is not interlock's."""
        bad = []
        for k in keys:
            want = KEY_TYPES.get(k.rsplit(":", 1)[-1])
            try:
                t = self.client.type(k)
            except Exception:  # pragma: no cover - the message without the detail
                continue
            t = t.decode() if isinstance(t, bytes) else str(t)
            if want is not None and t not in ("none", want):
                bad.append(f"key {k!r} holds a {t}, not a {want}")
        detail = "; ".join(bad) or f"one of its keys ({', '.join(keys)}) holds another type"
        return (f"{detail}: a key interlock did not make (it is neither deleted nor used; "
                "remove it, or choose another name or prefix)")

    def ping(self) -> None:
        with self.errors():
            self.client.ping()
        if self.durable is not None and self.durable[0] == "aof":
            self._check_waitaof()

    def _check_waitaof(self) -> None:
        """``durable="aof"`` needs ``WAITAOF`` (Redis 7.2 and later): told at
        ``connect()``, before anything is written, not by the first write
        (which the server would have applied)."""
        with self.errors():
            info = self.client.info("server")
        # a cluster client may answer per node: {node: {...}}
        infos = [info] if "redis_version" in info else [
            v for v in info.values() if isinstance(v, dict)]
        for i in infos:
            v = str(i.get("redis_version", ""))
            parts = [int(x) for x in re.findall(r"\d+", v)[:2]]
            if len(parts) < 2 or tuple(parts) < (7, 2):
                raise ServerError(_NO_WAITAOF.format(url=self.safe_url)
                                  + f" (it runs Redis {v or 'of an unknown version'})")

    def _load(self, required: bool = False, keys: Sequence[str] = ()) -> None:
        """Load the library (a cluster client sends FUNCTION LOAD to every
        primary).  A user whose ACL forbids FUNCTION LOAD can still use a
        library an admin loaded: the refusal is raised only when a call then
        finds no function (``required``).  REPLACE: loading twice is loading
        once, so a lost reply is retried."""
        try:
            self.blocking(lambda: self.client.function_load(LIBRARY, replace=True), keys,
                          retry=True)
        except AuthenticationFailed:
            if required:
                raise
        self._loaded = True

    def _to_cluster(self) -> None:
        """A plain client that met MOVED: the server is a cluster node."""
        self.mode = "cluster"
        self._fast = False
        self.client = self._make_client("cluster")
        self._loaded = False

    def budget(self, deadline: float | None, wait: float = 0.0) -> float:
        """Seconds to await a reply: what the caller has left (or ``wait``,
        the server-side block of the command) plus ``grace``."""
        if wait:
            return wait + self.grace  # (a block is at most a slice)
        if deadline is None:
            return self.slice + self.grace
        return min(max(deadline - time.monotonic(), 0.0), self.slice) + self.grace

    def _pool(self, args: Sequence[Any]) -> Any:
        """The connection pool a raw command goes to: the client's, or on a
        cluster that of the node serving the command's key."""
        if self.mode != "cluster":
            return self.client.connection_pool
        cmd = str(args[0]).upper()
        key: Any = None
        if cmd in ("FCALL", "FCALL_RO") and int(args[2]) > 0:
            key = args[3]
        elif cmd in ("XREAD", "XREADGROUP"):
            key = args[[str(a).upper() for a in args].index("STREAMS") + 1]
        elif cmd in ("BLPOP", "DEL", "GET", "SET"):
            key = args[1]
        node = (self.client.get_node_from_key(key) if key is not None
                else self.client.get_default_node())
        return node.redis_connection.connection_pool

    def call(self, budget: float, *args: Any, keys: Sequence[str] = ()) -> Any:
        """One raw command, its reply awaited at most ``budget`` seconds
        (errors translated, see ``errors``; the connection is dropped on any
        error, so a late reply can never be read as another call's).  On a
        cluster, a ``MOVED`` reply (nothing ran) refreshes the slot map and
        sends the command once more; to a plain client, it means the server
        is a cluster node: the backend switches to a cluster client."""
        with self.errors(keys):
            return self._call_once_routed(budget, args)

    def _call_once(self, budget: float, args: Sequence[Any]) -> Any:
        if self._fast:
            r = self._fast_call(budget, (args,))[0]
            if isinstance(r, _redis.ResponseError):
                raise r
            return r
        pool = self._pool(args)
        conn = pool.get_connection()
        try:
            conn.send_command(*args)
            return conn.read_response(timeout=max(budget, 0.001))
        except _redis.ResponseError:
            raise
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)

    def fcall(self, fn: str, keys: Sequence[str], args: Sequence[Any],
              deadline: float | None = None, budget: float | None = None) -> Any:
        """One function of the library.  A function in ``RETRIED`` (each is
        safe to run twice: see the table in docs/design/redis.md) is sent
        once more after a lost reply, if the first attempt's budget has time
        left: the retry costs the caller no time past its deadline."""
        if budget is None:
            budget = self.budget(deadline)
        if not self._loaded:
            self._load()
        end = time.monotonic() + budget
        reloaded = retried = False
        while True:
            try:
                try:
                    r = self._call_once_routed(budget, ("FCALL", fn, len(keys), *keys, *args))
                except _REDIS_ERRORS as e:
                    mine = self.translate(e, keys, raw=True)
                    if mine is None:
                        raise
                    raise mine from e
                if self.durable is not None and fn in _WRITES:
                    self._wait_durable(budget)
                return r
            except ConnectionLost:
                budget = end - time.monotonic()
                if retried or fn not in RETRIED or budget < 0.01:
                    raise
                retried = True
                continue
            except _redis.ResponseError as e:
                if not reloaded and _not_loaded(e):
                    # A restarted or flushed server, a new primary: nothing ran.
                    reloaded = True
                    self._load(required=True, keys=keys)
                    continue
                raise self.fcall_error(e, keys, fn) from None

    def fcall_error(self, e: Exception, keys: Sequence[str], fn: str) -> Exception:
        """The interlock exception for an error reply ``e`` of function ``fn``."""
        msg = str(e)
        m = _ERROR.search(msg)
        if m is None:
            return self.reply_error(e, keys, fn)
        what, rest = m.group(1), m.group(2)
        if what == "LOST":
            return StateLost(f"{self.describe(keys)} ({keys[0]}): {rest} "
                             f"(server {self.safe_url})")
        if what == "VERSION":
            return ServerError(f"{self.describe(keys)}: {rest} (server {self.safe_url})")
        if what == "FOREIGN":
            key, _, held = rest.partition(" ")
            return KeyConflict(
                f"{self.describe(keys)}: its key {key!r} holds a {held} that "
                "interlock did not make; refusing to delete or use it (remove "
                f"it, or choose another name or prefix) (server {self.safe_url})")
        return _ObjectError(what, rest)

    def pipe(self, budget: float, cmds: Sequence[Sequence[Any]],
             keys: Sequence[str] = ()) -> list[Any]:
        """Commands sent together on one connection (one round trip; the
        first's key routes them all, so on a cluster they must share its
        slot), every reply read.  An error reply is returned in its place
        (a ``redis.ResponseError``), for the caller to weigh against the
        others' effects; a lost connection raises ``ConnectionLost``.  Not
        retried; a MOVED reply (nothing ran) is followed once, as by ``call``."""
        if not self._loaded:
            self._load()
        try:  # (errors(keys), without a generator's cost)
            out = self._pipe_once(budget, cmds)
            if any(isinstance(r, _redis.exceptions.MovedError) for r in out):
                if self.mode == "plain":
                    self._to_cluster()
                    self._load()
                else:
                    self.client.nodes_manager.initialize()
                out = self._pipe_once(budget, cmds)
        except _REDIS_ERRORS as e:
            mine = self.translate(e, keys)
            if mine is None:
                raise
            raise mine from e
        return out

    def _pipe_once(self, budget: float, cmds: Sequence[Sequence[Any]]) -> list[Any]:
        if self._fast:
            return self._fast_call(budget, cmds)
        pool = self._pool(cmds[0])
        conn = pool.get_connection()
        try:
            conn.send_packed_command(conn.pack_commands(cmds))
            out: list[Any] = []
            for _ in cmds:
                try:
                    out.append(conn.read_response(timeout=max(budget, 0.001)))
                except _redis.ResponseError as e:
                    out.append(e)
            return out
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)

    def _fast_call(self, budget: float, cmds: Sequence[Sequence[Any]]) -> list[Any]:
        """Commands on this thread's private connection, in C (bind_resp.c):
        their replies, error replies in place.  Raises redis-py's errors, as
        the pool's connections would (``errors`` translates them)."""
        data = _core.resp_pack(cmds)
        fc = self._fast_local.__dict__.get("fc")
        if fc is None or fc.pid != os.getpid() or fc.gen != self._gen:
            fc = self._fast_connect(fc)
        now = time.monotonic()
        # Peeked for a close by the server only if idle a while: the check
        # costs a system call per call otherwise.
        check = now - fc.last > _IDLE_CHECK
        try:
            while (out := _core.resp_call(fc.fd, data, len(cmds), self.grace,
                                          max(budget, 0.001), fc.errfactory, check,
                                          _RCVTIMEO)) is None:
                # Closed by the server while idle (nothing was sent): a
                # fresh connection, as the pool's health check would make
                # (not checked: it answers, or raises).
                fc, check = self._fast_connect(fc), False
        except TimeoutError as e:
            fc.drop(self._fast_local)
            raise _redis.TimeoutError(f"Timeout reading from {fc.where}") from e
        except OSError as e:
            fc.drop(self._fast_local)
            raise _redis.ConnectionError(f"Error while talking to {fc.where}: {e}") from e
        except BaseException:
            fc.drop(self._fast_local)  # (a signal's exception mid-call: out of step)
            raise
        for r in out:
            if isinstance(r, _redis.ConnectionError):  # LOADING and the like: as redis-py
                fc.drop(self._fast_local)
                raise r
        fc.last = now
        return out

    def _fast_connect(self, old: FastConn | None) -> FastConn:
        if old is not None:
            old.drop(self._fast_local)
        fc = FastConn(self.client.connection_pool, self._gen)
        self._fast_local.fc = fc
        return fc

    def _call_once_routed(self, budget: float, args: Sequence[Any]) -> Any:
        """``_call_once``, following one MOVED (see ``call``)."""
        try:
            return self._call_once(budget, args)
        except _redis.exceptions.MovedError:
            if self.mode == "plain":
                self._to_cluster()
                self._load()
            else:
                self.client.nodes_manager.initialize()
            return self._call_once(budget, args)

    def _wait_durable(self, budget: float) -> None:
        """WAIT / WAITAOF after a write (on another connection of the pool:
        it covers every write this client made before it)."""
        assert self.durable is not None
        kind, n = self.durable
        ms = max(int(budget * 1000), 1)
        if kind == "replicas":
            got = self.call(budget + self.grace, "WAIT", n, ms)
            ok = int(got) >= n
        else:
            try:
                got = self.call(budget + self.grace, "WAITAOF", 1, 0, ms)
            except ServerError as e:
                if "unknown command" not in str(e).lower():
                    raise
                raise ServerError(_NO_WAITAOF.format(url=self.safe_url)
                                  + " (the write itself was made)") from None
            ok = int(got[0]) >= 1
        if not ok:
            raise ConnectionLost(f"Redis server {self.safe_url}: the write was not confirmed "
                                 f"durable ({kind} {n}) within {budget:.1f} s; it may be lost "
                                 "in a crash or failover")

    def check_mark(self, key: str, value: int, before: int) -> None:
        """``value`` was read from the server by a call sent when this
        process's high-water mark for ``key`` was ``before``: it must not be
        lower (the server's state may not go back in time).  Then raise the
        mark."""
        if value < before:
            raise RolledBack(f"{key}: the server answered {value}, lower than {before} already "
                             f"seen from it: its state went back in time (restart from an "
                             f"older snapshot, or failover to a lagging replica; server "
                             f"{self.safe_url})")
        with self._marks_lock:
            if value > self._marks.get(key, 0):
                self._marks[key] = value

    def mark(self, key: str) -> int:
        return self._marks.get(key, 0)

    def blocking(self, call: Callable[[], Any], keys: Sequence[str] = (), *,
                 retry: bool = False) -> Any:
        """A plain redis-py call (errors translated); ``retry``: it is
        idempotent, send it once more after a lost reply."""
        try:
            with self.errors(keys):
                return call()
        except ConnectionLost:
            if not retry:
                raise
        with self.errors(keys):
            return call()

    # -- the keeper ---------------------------------------------------------
    # The keeper thread exists only while this backend holds leases in this
    # process: hold() starts it when the first lease comes, and it ends as
    # soon as it finds none (drop() of the last lease wakes it for that).
    # ``_keeper`` is the running keeper, set and cleared under
    # ``_keeper_lock``: a keeper that finds no lease clears it and returns in
    # the same critical section, so a hold() after that starts a new one and
    # a hold() before it is renewed by the old one; never zero keepers for a
    # held lease, never two.  ``_keeper_thread`` stays set until the thread
    # is gone, for the fork hook (_before_fork) to join an exiting one.
    def hold(self, lease: Lease) -> None:
        with self._keeper_lock:
            self._check_fork()
            self._leases[id(lease)] = lease
            if self._keeper is None:
                wake = threading.Event()
                t = threading.Thread(target=self._keep, args=(weakref.ref(self), wake),
                                     name=f"interlock-redis-keeper {self.safe_url}",
                                     daemon=True)
                self._keeper, self._keeper_wake, self._keeper_thread = t, wake, t
                t.start()

    def drop(self, lease: Lease) -> None:
        with self._keeper_lock:
            self._leases.pop(id(lease), None)
            if not self._leases:
                self._keeper_wake.set()  # nothing left to renew: the keeper ends now

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            # A child holds none of its parent's leases, and has no keeper.
            self._pid = os.getpid()
            self._leases.clear()
            self._keeper = self._keeper_thread = None

    def _after_fork_in_child(self) -> None:
        # The parent's keeper did not come with the fork, and the lock may
        # have been held by one of its threads at that moment.
        self._keeper_lock = threading.Lock()
        self._check_fork()

    def _before_fork(self) -> None:
        """Join a keeper that is ending (no lease left), so that fork() does
        not copy a process with a thread of ours in it.  A keeper with
        leases to renew is left running: that fork is the caller's
        multi-threaded fork (it holds a Redis lock or consumes a queue)."""
        t = self._keeper_thread
        if t is None or t is threading.current_thread():
            return
        with self._keeper_lock:
            # Leases the keeper would drop at its next round (their thread
            # ended, their object is gone): drop them now.
            for lease in list(self._leases.values()):
                if not lease.wanted():
                    del self._leases[id(lease)]
            if self._leases and self._keeper is t:
                return
            self._keeper_wake.set()
        # Without leases it ends once its current renewal returns (each is
        # bounded by a third of the lease plus grace).
        t.join(self.lease / 3 + self.grace)

    @staticmethod
    def _keep(ref: weakref.ref[Backend], wake: threading.Event) -> None:
        me = threading.current_thread()
        while True:
            self = ref()
            if self is None:
                return
            period = self.lease / 3
            with self._keeper_lock:
                # Cleared under the lock before looking: a drop() after this
                # sets it again, so the wait below cannot miss it.
                wake.clear()
                if not self._leases or self._keeper is not me:
                    if self._keeper is me:
                        self._keeper = None
                    return
                leases = list(self._leases.values())
            for lease in leases:
                if not lease.wanted():
                    self.drop(lease)
                    continue
                with self._keeper_lock:
                    if id(lease) not in self._leases:
                        continue  # dropped since the snapshot
                sent = time.monotonic()
                try:
                    if lease.renew is not None:
                        ok = lease.renew(period)
                    else:
                        ok = self.fcall("il_renew", [lease.key],
                                        [lease.what, lease.token, int(self.lease * 1000)],
                                        budget=period)
                except ConnectionLost as e:
                    lease.error = str(e)  # the holder sees it once its local deadline passes
                    continue  # try again next round; the lease may yet survive
                except Exception as e:  # pragma: no cover - never kill the keeper
                    lease.error = repr(e)
                    continue
                if not ok:
                    lease.lost = True
                    self.drop(lease)
                else:
                    lease.until = sent + self.lease
                    lease.error = ""
            del self, leases, lease
            wake.wait(period)


class FastConn:
    """One thread's private connection for the wire fast path: connected
    and authenticated by redis-py (AUTH, SELECT, HELLO as the URL says),
    then written and read by ``_core.resp_call`` on its descriptor.  Never
    in the pool; dropped (closed) on any error, and in a forked child
    (``pid``) left to the parent."""

    __slots__ = ("conn", "fd", "pid", "gen", "errfactory", "where", "last")

    def __init__(self, pool: Any, gen: int) -> None:
        # RESP2 whatever the URL asks (the objects' replies are the same;
        # bind_resp.c parses no other)
        # (and so without redis-py 8's maintenance notifications: RESP3 pushes)
        kw = {**pool.connection_kwargs, "protocol": 2}
        for k in ("maint_notifications_config", "maint_notifications_pool_handler"):
            if k in kw:
                kw[k] = None
        conn = pool.connection_class(**kw)
        try:
            conn.connect()
            sock = conn._sock
            self.fd = sock.fileno()
            # Blocking, with a receive timeout of _RCVTIMEO: resp_call waits
            # for replies in recv() (see bind_resp.c); no one else does I/O
            # on this socket.
            sock.setblocking(True)
            sec = int(_RCVTIMEO)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                            struct.pack("ll", sec, int((_RCVTIMEO - sec) * 1e6)))
        except BaseException:
            conn.disconnect()
            raise
        self.conn = conn
        self.pid = os.getpid()
        self.gen = gen
        self.errfactory = conn._parser.parse_error
        self.where = _where(pool.connection_kwargs)
        self.last = 0.0  # when last used (monotonic): idle past _IDLE_CHECK, peeked first

    def drop(self, local: threading.local) -> None:
        if local.__dict__.get("fc") is self:
            del local.fc
        if self.pid == os.getpid():
            self.conn.disconnect()
        # (in a child: the parent's socket; its descriptor is closed when
        # the object is collected, which does not shut the parent's down)


#: Seconds a fast connection may sit unused before a call peeks at it for
#: a close by the server (a restart, the server's idle timeout, CLIENT
#: KILL): what redis-py's pool checks on every call.
_IDLE_CHECK = 0.01

#: The fast connections' SO_RCVTIMEO (seconds): a wait for replies with at
#: least this much time left sleeps in recv(); a shorter one polls.
_RCVTIMEO = 0.05


def _where(kw: dict[str, Any]) -> str:
    """host:port or the socket path, as redis-py's messages name it."""
    return str(kw["path"]) if "path" in kw else f"{kw.get('host')}:{kw.get('port')}"


def _fast_capable(client: Any) -> bool:
    """Whether the wire fast path can serve this plain client: TCP or Unix
    socket connections without TLS (its own connections speak RESP2,
    whatever the URL's ``protocol``).  ``INTERLOCK_REDIS_WIRE=redis-py``
    turns it off."""
    if os.environ.get("INTERLOCK_REDIS_WIRE", "") == "redis-py":
        return False
    pool = getattr(client, "connection_pool", None)
    if pool is None or pool.connection_class not in (_redis.Connection,
                                                     _redis.UnixDomainSocketConnection):
        return False
    # (private attributes of redis-py's Connection, present in 5.x to 8.x)
    probe = _redis.Connection()  # type: ignore[no-untyped-call]
    return hasattr(probe, "_sock") and hasattr(getattr(probe, "_parser", None), "parse_error")


#: Every Backend of this process, for the fork hooks.
_backends: weakref.WeakSet[Backend] = weakref.WeakSet()


def _before_fork() -> None:
    for b in list(_backends):
        b._before_fork()


def _after_fork_in_child() -> None:
    for b in list(_backends):
        b._after_fork_in_child()


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


# Functions that change state (WAIT/WAITAOF follow them when ``durable``).
_WRITES = frozenset({"il_q_take", "il_q_pre", "il_q_taken", "il_q_ack", "il_q_put", "il_q_close",
                     "il_q_shutdown",
                     "il_q_beat", "il_lock_acquire", "il_lock_release", "il_sem_acquire",
                     "il_sem_release", "il_ev_set", "il_ev_clear"})


# Functions that fcall() sends again after a lost reply: running one twice
# has the effect of running it once (idempotent, or made so: a put carries
# its producer's request number, an acquire its fresh token, an open its
# fresh epoch).  Not here: il_q_take (its caller retries, re-reading the
# consumer's pending list), il_q_taken (a second run would add a second
# close marker; the next take's resync covers it), il_lock_release and
# il_sem_release (safe to repeat, but a retry's "not the holder" may mean
# "released by the first try": the lock classes retry them and read that).
RETRIED = frozenset({"il_open", "il_q_put", "il_q_ack", "il_q_beat", "il_q_close", "il_q_shutdown",
                     "il_q_state",
                     "il_lock_acquire", "il_lock_state", "il_sem_acquire", "il_sem_state",
                     "il_renew", "il_ev_set", "il_ev_clear", "il_ev_state"})


def _not_loaded(e: Exception) -> bool:
    """An error reply that says the library is not loaded (nothing ran)."""
    return "unction not found" in str(e)


_NO_WAITAOF = ("durable='aof' needs the WAITAOF command (Redis 7.2 or later), which the "
               "server {url} does not have: upgrade it, or use durable=('replicas', n) "
               "(WAIT) or durable=None")


def _durable(d: Any) -> tuple[str, int] | None:
    if d is None:
        return None
    if d == "aof":
        return ("aof", 1)
    if isinstance(d, (tuple, list)) and len(d) == 2 and d[0] == "replicas" and int(d[1]) >= 1:
        return ("replicas", int(d[1]))
    raise ValueError(f"durable must be None, 'aof' or ('replicas', n), not {d!r}")


def name_tag(name: str) -> str:
    """The hash tag of an object's keys (see ``Backend.key``): never empty,
    one per name."""
    if not name or name[0] in "}#":
        return "#" + name.encode("utf-8", "surrogatepass").hex()
    return name


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
