"""The registry: what interlock objects exist, who uses them, what state they are in.

There is no central table.  The directory ``/dev/shm`` *is* the registry:
every object is one file ``interlock.<uid>.<name>`` whose header already
says what it is (kind, creator, size, creation time) and which processes are
attached (the slot table of ``_segment``), and whose object region is the
live state itself (a ring's head and tail words, a mutex's word and owner
hints, the waiters counters).  Reading the registry is listing the
directory and reading those bytes; the fast paths of ``put``/``get`` and
``acquire``/``release`` write nothing for it, so they pay nothing for it
(``benchmarks/bench_registry.py`` measures that claim).

Alternatives rejected: a central shared table that every object registers
in (one more segment to keep consistent across crashes, a lock or CAS on
create and destroy, and stale rows after SIGKILL: the very problems the
per-segment slot table already solves); per-operation counters written on the
fast path (a shared cache line bounced between producer and consumer).

Reading is passive (docs/design/registry.md):

- the entry is opened only if it is a file of ours, without blocking or
  following a link (``_segment.open_entry``): a FIFO, a symlink, a directory
  or another user's file planted at one of our names is listed as
  unreadable, saying what it is, and never read;
- the file is opened ``O_RDONLY`` and mapped copy-on-write
  (``MAP_PRIVATE``): the reader can never write to the segment, not even by
  a bug.  On Linux a private mapping of a file that is never written maps the
  page-cache pages themselves, so it sees the other processes' stores;
- no slot is claimed and the meta lock is never taken, so the attached
  process table is not changed and a reader that dies leaves nothing;
- the file may be unlinked while we read it: the mapping keeps it alive
  until we unmap, and a vanished name is simply not listed;
- every fact is a racy snapshot: counters read one by one, not under a lock.

Describers.  What is read in the object region depends on its kind.  Each
kind registers one function in :data:`DESCRIBERS`::

    DESCRIBERS[_segment.KIND_X] = describe_x   # fn(mm, header) -> dict

returning a dict with any of the keys

- ``summary``: one short line for ``interlock ls`` (``"depth 3/∞, 120 B"``);
- ``holders``: a list of dicts ``{pid, tid, depth, alive, acquired_at}``;
- ``waiters``: how many threads wait on the object;
- ``counters``: monotonically growing counts (``interlock top`` shows their
  rates; they may wrap modulo 2**32);
- anything else: kind-specific facts, shown by ``interlock inspect``.

A kind without a describer is still listed, with its header facts only.
"""
from __future__ import annotations

import errno
import mmap
import os
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from . import _core, _segment
from ._segment import Header
from .errors import ForeignEntry, NoSuchObject

Describer = Callable[[mmap.mmap, Header], "dict[str, Any]"]

#: kind code -> describer; see the module docstring.
DESCRIBERS: dict[int, Describer] = {}

COUNT_MOD = 1 << 32  # counters kept in 32 bits wrap here


# ------------------------------------------------------------------ records
@dataclass(frozen=True)
class UserInfo:
    """One process attached to a segment (one slot of its table)."""

    pid: int
    refs: int  # handles this process holds on the object
    alive: bool  # False: died without detaching; swept by the next attach/detach or clean
    roles: int = 0  # queues: 1 = has put, 2 = has got (_segment.ROLE_*)


@dataclass(frozen=True)
class HolderInfo:
    """A thread that holds a lock (or a unit of a semaphore, ...)."""

    pid: int
    tid: int
    depth: int = 1  # RLock recursion depth
    alive: bool = True  # False: it died holding it; the next acquirer takes over
    #: Where it was acquired ("file:line in function"), when acquisition
    #: tracking is on and the segment records it; None otherwise.
    acquired_at: str | None = None


def _plain(value: Any) -> Any:
    """Frozen containers -> JSON-ready ones."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(getattr(value, k)) for k in value.__dataclass_fields__}
    return value


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class ObjectInfo:
    """Everything the registry knows about one interlock object (a snapshot)."""

    name: str
    kind: str  # "Queue", "Lock", ..., "?" for an unreadable segment
    path: str
    size: int  # bytes of shared memory allocated (the file is sparse)
    creator_pid: int
    creator_alive: bool
    created: float  # seconds since the epoch
    users: tuple[UserInfo, ...]
    unlinked: bool  # its last user has removed it; it vanishes from the directory next
    summary: str  # one line for `interlock ls`
    holders: tuple[HolderInfo, ...] = ()
    waiters: int = 0
    #: monotonic counts, modulo 2**32 (`interlock top` turns them into rates)
    counters: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    #: kind-specific facts (see the describer of the kind)
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    problem: str = ""  # non-empty: the segment could not be read (details in it)
    #: interlock's own bookkeeping (the deadlock tooling's "@" tables), not
    #: an object of the user's: header flag FLAG_INTERNAL, or an "@" name
    internal: bool = False
    #: made by another object for its own use (header flag FLAG_OWNED): the
    #: lock that a Value, Array or Condition made for itself
    owned: bool = False
    #: the object that uses this one as its lock (a Value, Array or
    #: Condition), as found by list_objects(); None if none is listed
    owner: str | None = None

    @property
    def hidden(self) -> bool:
        """Not shown by ``interlock ls`` without ``--all``: interlock's own
        tables, and owned locks whose owner is listed (they are shown in
        their owner's row).  An owned lock whose owner is gone stays visible."""
        return self.internal or (self.owned and self.owner is not None)

    @property
    def live_users(self) -> tuple[int, ...]:
        return tuple(u.pid for u in self.users if u.alive)

    @property
    def orphaned(self) -> bool:
        """Valid, but every process attached to it is dead (``interlock clean``)."""
        return not self.problem and not self.live_users

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = _plain(self)
        d["live_users"] = list(self.live_users)
        d["orphaned"] = self.orphaned
        d["hidden"] = self.hidden
        return d


# ------------------------------------------------------------------ reading
class _Unreadable(Exception):
    pass


def _open_mapping(path: str) -> tuple[mmap.mmap, os.stat_result]:
    """Map a segment read-only in effect (see the module docstring).

    Raises FileNotFoundError if it vanished, _Unreadable if it is not a whole
    interlock segment of this layout."""
    try:
        # never blocks, never follows a link, only files of ours (the rule's
        # one owner: _segment.open_entry)
        fd, st = _segment.open_entry(path)
    except ForeignEntry as e:
        raise _Unreadable(e.what) from None
    try:
        if st.st_size < _segment.OFF_SLOTS:
            raise _Unreadable(f"truncated ({st.st_size} bytes)")
        # ACCESS_COPY = MAP_PRIVATE: the C objects want a writable buffer, and
        # a private mapping is one that cannot reach the file.
        mm = mmap.mmap(fd, st.st_size, access=mmap.ACCESS_COPY)
    finally:
        os.close(fd)
    return mm, st


def _check_header(hdr: Header, st: os.stat_result) -> None:
    if hdr.magic != _segment.MAGIC:
        raise _Unreadable(f"not an interlock segment (bad magic {hdr.magic!r})")
    if hdr.version != _segment.LAYOUT_VERSION:
        raise _Unreadable(
            f"layout version {hdr.version}; this interlock reads version {_segment.LAYOUT_VERSION}"
        )
    if (hdr.total_size != st.st_size or hdr.object_offset + hdr.object_size > st.st_size
            or _segment.OFF_SLOTS + 16 * hdr.nslots > hdr.object_offset):
        raise _Unreadable(f"inconsistent header ({st.st_size} bytes, header says {hdr.total_size})")


class _Liveness:
    """task_alive() with a memo for one listing: the same processes are users
    of many objects, and each check reads /proc."""

    def __init__(self) -> None:
        self._memo: dict[tuple[int, int], bool] = {}

    def __call__(self, pid: int, start: int = 0) -> bool:
        key = (pid, start)
        alive = self._memo.get(key)
        if alive is None:
            alive = self._memo[key] = bool(pid) and bool(_core.task_alive(pid, start))
        return alive


def _users(mm: mmap.mmap, hdr: Header, alive: _Liveness) -> tuple[UserInfo, ...]:
    # The slot table (_segment: {u32 pid, u16 refs, u16 roles, u64 start}), in one pass.
    # (up to the high-water mark: the table's pages above it are holes)
    table = mm[_segment.OFF_SLOTS:_segment.OFF_SLOTS + hdr.table_bytes]
    return tuple(
        UserInfo(pid, refs, alive(pid, start), roles)
        for pid, refs, roles, start in struct.iter_unpack("<IHHQ", table)
        if pid and not pid & _segment.TICKET_BIT  # (an in-flight ticket is no process)
    )


def _describe_path(name: str, path: str, alive: _Liveness) -> ObjectInfo:
    try:
        mm, st = _open_mapping(path)
    except _Unreadable as e:
        return _broken(name, path, str(e))
    try:
        hdr = Header.parse(mm)
        try:
            _check_header(hdr, st)
        except _Unreadable as e:
            return _broken(name, path, str(e), st.st_size)
        kind = _segment.KIND_NAMES.get(hdr.kind, f"kind {hdr.kind}")
        facts: dict[str, Any] = {}
        problem = ""
        describer = DESCRIBERS.get(hdr.kind)
        if describer is not None:
            try:
                facts = describer(mm, hdr)
            except Exception as e:  # noqa: BLE001 - one bad segment must not hide the others
                problem = f"cannot read the {kind}: {e}"
        holders = tuple(
            h if isinstance(h, HolderInfo) else HolderInfo(**h) for h in facts.pop("holders", ())
        )
        return ObjectInfo(
            name=name,
            kind=kind,
            path=path,
            # allocated, not the file's size: the process table is sparse
            size=st.st_blocks * 512,
            creator_pid=hdr.creator_pid,
            creator_alive=alive(hdr.creator_pid, hdr.creator_start),
            created=hdr.created_ns / 1e9,
            users=_users(mm, hdr, alive),
            unlinked=bool(hdr.unlinked),
            summary=str(facts.pop("summary", "")),
            holders=holders,
            waiters=int(facts.pop("waiters", 0)),
            counters=_freeze(dict(facts.pop("counters", {}))),
            details=_freeze(facts),
            problem=problem,
            internal=bool(hdr.flags & _segment.FLAG_INTERNAL) or name.startswith("@"),
            owned=bool(hdr.flags & _segment.FLAG_OWNED),
        )
    finally:
        try:
            mm.close()
        except BufferError:  # a describer kept an object on it: unmapped when that is freed
            pass


def _broken(name: str, path: str, problem: str, size: int = 0) -> ObjectInfo:
    return ObjectInfo(name=name, kind="?", path=path, size=size, creator_pid=0,
                      creator_alive=False, created=0.0, users=(), unlinked=False,
                      summary="", problem=problem)


def _entries() -> Iterator[tuple[str, str]]:
    prefix = f"{_segment.PREFIX}.{os.getuid()}."
    try:
        names = sorted(os.listdir(_segment.SHM_DIR))
    except FileNotFoundError:  # pragma: no cover - no /dev/shm at all
        return
    for entry in names:
        if entry.startswith(prefix):
            yield entry[len(prefix):], f"{_segment.SHM_DIR}/{entry}"


def list_objects() -> list[ObjectInfo]:
    """Every interlock object of this user, sorted by name (a snapshot).

    Never registers as a user of anything, never writes, never removes."""
    out = []
    alive = _Liveness()
    for name, path in _entries():
        try:
            out.append(_describe_path(name, path, alive))
        except FileNotFoundError:
            continue  # removed between the listing and the open: it is gone
        except OSError as e:
            out.append(_broken(name, path, f"{e.strerror or e}"))
    return _link_owners(out)


def _link_owners(objs: list[ObjectInfo]) -> list[ObjectInfo]:
    """Fill in ``owner`` of each owned lock: the listed object whose
    ``details["lock"]`` names it (the first by name, if several share it)."""
    owner_of: dict[str, str] = {}
    for o in objs:
        lock = o.details.get("lock")
        if isinstance(lock, str) and lock and lock not in owner_of:
            owner_of[lock] = o.name
    return [replace(o, owner=owner_of[o.name]) if o.owned and o.name in owner_of else o
            for o in objs]


def inspect(name: str) -> ObjectInfo:
    """The object called ``name``; :class:`NoSuchObject` if there is none."""
    # Not validate_name(): that is the rule for names users create, and the
    # library itself may use others ("@..."); any name that `ls` shows works.
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\0" in name:
        raise NoSuchObject(str(name))
    path = _segment.path_of(name)
    try:
        info = _describe_path(name, path, _Liveness())
        if info.owned:  # who owns it: only from the owners' side (see _link_owners)
            info = next((o for o in list_objects() if o.name == name), info)
        return info
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENAMETOOLONG):
            raise NoSuchObject(name) from None
        return _broken(name, path, f"{e.strerror or e}")


# ------------------------------------------------------------- describers
def _alive(pid: int, start: int = 0) -> bool:
    return bool(pid) and bool(_core.task_alive(pid, start))


# il_mutex_t (mutex.h; offsets from _core, checked in _core/layout.h):
# owner_hint u64 packs (start time & 0xffffffff) << 32 | tid.  _stats() gives
# all but owner_hint, which says whether the owner TID still names the thread
# that took the lock.
_MUTEX_OWNER_START = struct.Struct("<Q")


def _mutex_holder(mm: mmap.mmap, off: int, s: Mapping[str, Any]) -> HolderInfo | None:
    tid = int(s["owner_tid"])
    if not tid:
        return None
    hint = _MUTEX_OWNER_START.unpack_from(mm, off + _core.MUTEX_OFF_OWNER_HINT)[0]
    alive = _alive(tid, hint >> 32 if hint & 0xFFFFFFFF == tid else 0)
    return HolderInfo(pid=int(s["owner_pid"]), tid=tid, depth=max(1, int(s["depth"])),
                      alive=alive, acquired_at=_site_of(mm, off, tid))


def _site_of(mm: mmap.mmap, off: int, tid: int) -> str | None:
    """The holder's acquisition site, if tracked (deadlock._order._publish_site):
    only in the segment header of a Lock/RLock, and only if it names tid."""
    if Header.parse(mm).kind not in (_segment.KIND_LOCK, _segment.KIND_RLOCK):
        return None  # (a queue's side locks, say: no site recorded)
    stid, raw = struct.unpack_from("<I60s", mm, _segment.OFF_SITE)
    if stid != tid or not stid:
        return None
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace") or None


def holder_text(h: HolderInfo) -> str:
    """'pid 123 (main thread)', 'pid 123 thread 130': who holds it, in words
    (the pid is a display hint from the lock, '?' when it was not readable)."""
    who = f"pid {h.pid or '?'} " + ("(main thread)" if h.tid == h.pid else f"thread {h.tid}")
    return f"{who}, dead" if not h.alive else who


def describe_lock(mm: mmap.mmap, hdr: Header) -> dict[str, Any]:
    """Lock and RLock: the mutex word and its owner hints (mutex.h)."""
    off = hdr.object_offset
    m = _core.Mutex(mm, off)
    try:
        s = m._stats()
    finally:
        m._detach()
    holder = _mutex_holder(mm, off, s)
    waiters = int(s["waiters"])
    if holder is None:
        summary = "unlocked"
    else:
        summary = f"locked by {holder_text(holder)}"
        if holder.depth > 1:
            summary += f" (depth {holder.depth})"
    if waiters:
        summary += f", {waiters} waiting"
    return {
        "summary": summary,
        "holders": [holder] if holder else [],
        "waiters": waiters,
        "counters": {"acquisitions": int(s["acquisitions"]) % COUNT_MOD},
        "locked": holder is not None,
        "owner_pid": int(s["owner_pid"]),
        "owner_tid": int(s["owner_tid"]),
        "depth": int(s["depth"]),
        "acquisitions": int(s["acquisitions"]),
        "contentions": int(s["contentions"]),
        "owner_deaths": int(s["owner_deaths"]),
    }


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


def describe_queue(mm: mmap.mmap, hdr: Header) -> dict[str, Any]:
    """Queue, JoinableQueue, SimpleQueue: head and tail words of the ring (ring.h)."""
    r = _core.Ring(mm, hdr.object_offset)
    try:
        s = r._stats()
    finally:
        r._detach()
    maxsize = int(hdr.params[0])  # as asked for: 0 = no count bound
    depth = int(s["depth"])
    put = int(s["put_count_mod32"])
    got = (put - depth) % COUNT_MOD
    pl, cl = s["producer_lock"], s["consumer_lock"]
    producers_waiting = int(s["producers_sleeping"]) + int(pl["waiters"])
    consumers_waiting = int(s["consumers_sleeping"]) + int(cl["waiters"])
    # producers / consumers: live attached processes that have put / got
    # (role bits in the slot table, set on their first put / get)
    # (up to the high-water mark: the table's pages above it are holes)
    table = mm[_segment.OFF_SLOTS:_segment.OFF_SLOTS + hdr.table_bytes]
    live_roles = [roles for pid, _refs, roles, start in struct.iter_unpack("<IHHQ", table)
                  if pid and not pid & _segment.TICKET_BIT and _core.task_alive(pid, start)]
    producers = sum(1 for r in live_roles if r & _segment.ROLE_PRODUCER)
    consumers = sum(1 for r in live_roles if r & _segment.ROLE_CONSUMER)
    summary = f"depth {depth}/{maxsize or '∞'}, {_fmt_bytes(int(s['bytes_used']))}"
    if producers or consumers:
        # processes still attached that have put / got at least once (not
        # the threads blocked right now: those are the "waiting" below)
        summary += (f", {producers} producer{'s' if producers != 1 else ''}"
                    f"/{consumers} consumer{'s' if consumers != 1 else ''}")
    if s["immediate"]:
        summary += ", shut down (immediate)"
    elif s["closed"]:
        summary += ", shut down"
    if producers_waiting:
        summary += f", {producers_waiting} producer{'s' if producers_waiting > 1 else ''} waiting"
    if consumers_waiting:
        summary += f", {consumers_waiting} consumer{'s' if consumers_waiting > 1 else ''} waiting"
    holders = [h for h in (_mutex_holder(mm, hdr.object_offset + _core.RING_OFF_PLOCK, pl),
                           _mutex_holder(mm, hdr.object_offset + _core.RING_OFF_CLOCK, cl)) if h]
    return {
        "summary": summary,
        # A thread inside put() or get() holds a side lock for the copy.
        "holders": holders,
        "waiters": producers_waiting + consumers_waiting,
        "counters": {"put": put, "got": got},
        "depth": depth,
        "bytes_used": int(s["bytes_used"]),
        "capacity": int(s["capacity"]),
        "ring_size": int(s["size"]),
        "maxsize": maxsize,
        "shutdown": bool(s["closed"]),
        "closed": bool(s["closed"]),  # its name in 0.1 (when close() shut the queue down)
        # The ring counts records in 32 bits (ring.h, "Positions"): totals wrap.
        "put_total_mod_2_32": put,
        "got_total_mod_2_32": got,
        "producers": producers,
        "consumers": consumers,
        "producers_waiting": producers_waiting,
        "consumers_waiting": consumers_waiting,
        "producer_lock": dict(pl),
        "consumer_lock": dict(cl),
        "owner_deaths": int(pl["owner_deaths"]) + int(cl["owner_deaths"]),
    }


DESCRIBERS[_segment.KIND_QUEUE] = describe_queue
DESCRIBERS[_segment.KIND_LOCK] = describe_lock
DESCRIBERS[_segment.KIND_RLOCK] = describe_lock


def age(info: ObjectInfo, now: float | None = None) -> float:
    """Seconds since the object was created."""
    return max(0.0, (time.time() if now is None else now) - info.created)


# ------------------------------------------------- the sync family (_sync.py)
def _sync_describer(ctype: Any, summarize: Callable[[dict[str, Any]], str]) -> Describer:
    """A describer for a sync primitive: its C type's _stats(), whose slot
    table (pid, tid, count, start) names the holders (sync.h)."""

    def describe(mm: mmap.mmap, hdr: Header) -> dict[str, Any]:
        o = ctype(mm, hdr.object_offset)
        try:
            s = o._stats()
        finally:
            o._detach()
        holders = [HolderInfo(pid=int(pid), tid=int(tid), depth=int(count),
                              alive=_alive(int(tid or pid), int(start)))
                   for pid, tid, count, start in s.get("slots", []) if count]
        out: dict[str, Any] = {k: v for k, v in s.items() if isinstance(v, (int, bool, str))}
        out.update(summary=summarize(s), holders=holders, waiters=int(s.get("waiters", 0)),
                   counters={"acquisitions": int(s.get("acquisitions", 0)) % COUNT_MOD})
        return out

    return describe


def _waiting(s: dict[str, Any]) -> str:
    return f", {s['waiters']} waiting" if s.get("waiters") else ""


def _sem_summary(s: dict[str, Any]) -> str:
    held = sum(c for _p, _t, c, _s in s.get("slots", []))
    return f"value {s['value']}, {held} held" + _waiting(s)


def _rw_summary(s: dict[str, Any]) -> str:
    if s.get("writer_tid"):
        w = HolderInfo(pid=int(s["writer_pid"]), tid=int(s["writer_tid"]))
        return f"written by {holder_text(w)}" + _waiting(s)
    return f"{s.get('readers', 0)} readers" + _waiting(s)


DESCRIBERS[_segment.KIND_SEMAPHORE] = _sync_describer(_core.Semaphore, _sem_summary)
DESCRIBERS[_segment.KIND_BOUNDED_SEMAPHORE] = _sync_describer(_core.Semaphore, _sem_summary)
DESCRIBERS[_segment.KIND_RWLOCK] = _sync_describer(_core.RWLock, _rw_summary)
DESCRIBERS[_segment.KIND_EVENT] = _sync_describer(
    _core.Event, lambda s: ("set" if s.get("flag") else "clear") + _waiting(s))
DESCRIBERS[_segment.KIND_BARRIER] = _sync_describer(
    _core.Barrier, lambda s: (f"{s['count']}/{s['parties']} waiting"
                              + (", broken" if s.get("broken") else "")))
_describe_condition_state = _sync_describer(
    _core.Condition, lambda s: f"{s.get('waiters', 0)} waiting, {s.get('notifies', 0)} notifies")


def describe_condition(mm: mmap.mmap, hdr: Header) -> dict[str, Any]:
    """Condition: its waiters, and the name of the lock it uses (sync.h)."""
    out = _describe_condition_state(mm, hdr)
    c = _core.Condition(mm, hdr.object_offset)
    try:
        lock_name, _recursive = c._lock_info
    finally:
        c._detach()
    out["lock"] = str(lock_name)
    return out


DESCRIBERS[_segment.KIND_CONDITION] = describe_condition


# ----------------------------------------------- Value and Array (_value.py)
_VALUE_LOCKNAME = 256  # _value._LOCKNAME: the lock's name, NUL-padded, then the data
#: Array elements shown: in the `ls` line, and in `inspect`'s details
_ARRAY_SHOWN, _ARRAY_DETAIL = 8, 64


def _value_text(v: Any) -> str:
    return repr(v)


def describe_value(mm: mmap.mmap, hdr: Header) -> dict[str, Any]:
    """Value and Array: the data, copied out of the mapping *without* taking
    the object's lock (a reader takes no lock): a snapshot that a concurrent
    writer may have half updated, as any unlocked read.  params: (typecode,
    length) (_value.py); the region: the lock's name (256 bytes), the data."""
    from ._value import TYPECODES

    code, length = chr(hdr.params[0]) if hdr.params[0] else "?", int(hdr.params[1])
    ctype = TYPECODES.get(code)
    if ctype is None:
        raise ValueError(f"unknown typecode {code!r}")
    off = hdr.object_offset
    raw = bytes(mm[off:off + _VALUE_LOCKNAME - 1]).split(b"\0", 1)[0]
    lock = raw.decode("utf-8", "replace")
    lock_kind = {1: "RLock", 2: "Lock"}.get(mm[off + _VALUE_LOCKNAME - 1], "")
    data_off = off + _VALUE_LOCKNAME
    out: dict[str, Any] = {"typecode": code}
    if hdr.kind == _segment.KIND_VALUE:
        value = ctype.from_buffer_copy(mm, data_off).value
        summary = f"value {_value_text(value)}"
    else:
        arr = (ctype * length).from_buffer_copy(mm, data_off)
        out["length"] = length
        if code == "c":  # like Array.value: the bytes up to the first NUL
            value = arr.value
            summary = f"value {_value_text(value)} ({length} bytes)"
        else:
            items = list(arr[:_ARRAY_DETAIL])
            value = items if length <= _ARRAY_DETAIL else items + ["..."]
            shown = ", ".join(map(_value_text, items[:_ARRAY_SHOWN]))
            more = ", ..." if length > _ARRAY_SHOWN else ""
            summary = f"[{shown}{more}] ({length} x {code!r})"
    out["value"] = value if isinstance(value, (int, float, list)) else _value_text(value)
    out["lock"] = lock
    if lock:
        out["lock_kind"] = lock_kind
    out["summary"] = summary
    return out


DESCRIBERS[_segment.KIND_VALUE] = describe_value
DESCRIBERS[_segment.KIND_ARRAY] = describe_value


# ---------------------------------------------- interlock's tables (_table.py)
def describe_table(mm: mmap.mmap, hdr: Header) -> dict[str, Any]:
    """The deadlock tooling's shared tables: records in use of capacity."""
    n, cap, rsize = struct.unpack_from("<III", mm, hdr.object_offset + 64)
    what = {"@waitfor": "long waits", "@lockdep": "lock orders"}.get(hdr.name, "records")
    return {"summary": f"{n}/{cap} {what}", "records": int(n), "capacity": int(cap),
            "record_size": int(rsize)}


DESCRIBERS[_segment.KIND_TABLE] = describe_table
