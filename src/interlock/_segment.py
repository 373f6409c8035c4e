"""Named shared-memory segments and their lifetime.

Every interlock object lives in one file of ``/dev/shm`` (a tmpfs), named
``interlock.<uid>.<name>``. The file starts with a fixed header, then a table
of attached processes, then the object (a ring, a mutex, ...)::

    offset  size  field
    0       8     magic b"ILOCKSEG"
    8       4     layout version (LAYOUT_VERSION)
    12      4     kind (KIND_*)
    16      8     total size of the file
    24      4     creator pid
    28      4     creator uid
    32      8     creator start time (clock ticks since boot)
    40      8     creation time (ns since the epoch)
    48      4     object offset
    52      4     object size
    56      4     number of slots (MAX_SLOTS)
    60      4     users: slots in use (kept under the meta lock)
    64      4     unlinked: set, under the meta lock, when the name is removed
    68      4     flags, written once by the creator (FLAG_*): 1 = interlock's own
                  bookkeeping ("@" names), 2 = made by another object for its own
                  use (the lock of a Value, Array or Condition); 0 in segments
                  made before the field existed (it was reserved, always 0)
    72      56    params: kind-specific creation parameters (8 x u64, first 7)
    128     256   name, UTF-8, NUL-padded
    384     64    holder site: u32 tid + 60 bytes "file:line in func" (Lock,
                  RLock, written only while acquisitions are tracked)
    448     64    meta lock (a robust mutex, _core.Mutex)
    512     4     high-water mark: slots [0, hwm) may be in use; their pages
                  are allocated (the rest of the table is a hole in the file)
    516     4     held: 1 = the last user detached while in-flight tickets
                  remained; the name is removed when they are gone
    520     56    reserved
    576     16*N  slots: {u32 pid, u16 refs, u16 roles, u64 start time}
                  (roles, for a queue: 1 = this process has put, 2 = has got;
                  pid is the commit word: written last, cleared first).
                  A slot whose pid word has TICKET_BIT set is an in-flight
                  ticket, not a process: {u32 TICKET_BIT | id >> 32,
                  u32 id & 0xFFFFFFFF, u64 expiry (CLOCK_MONOTONIC ns)}
    ...           object, 64-byte aligned

Creation is atomic: the creator builds the whole segment in a private temp
file, then ``link()``s it to its name; ``link`` fails if the name exists, and
an attacher never sees a half-built segment. Mode 0600, ``O_EXCL``,
``O_NOFOLLOW``: no other user, no symlink games.

Everything else found in the directory may be hostile (it is world-writable
and uids are public): every entry this process did not just create is opened
by :func:`open_entry` and removed by :func:`remove_entry`, the one owner of
that rule (see there).

Lifetime (docs/design/segment.md): a process that attaches claims a slot
(pid, start time, refcount) under the meta lock; detaching releases it.
Pickling an object takes an in-flight *ticket* (a slot with an expiry) that
holds the segment for its receiver: the receiver's attach consumes it, and
an unused one expires after the grace period (``set_inflight_grace``). A
forked child holds no slot until it first uses an inherited object. The
process that leaves the table empty unlinks the name, and marks the segment
``unlinked`` so that a racing attacher retries instead of using a dead
segment. Slots of dead processes (SIGKILL never detaches) are swept by
whoever takes the meta lock next, and by ``interlock clean``. Python's
``resource_tracker`` is never involved.
"""
from __future__ import annotations

import array
import atexit
import bisect
import errno
import itertools
import mmap
import os
import re
import secrets
import stat
import struct
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from . import _core, _crash
from .errors import ForeignEntry, ObjectFreedError, SegmentError, SlotsExhausted

SHM_DIR = "/dev/shm"
MAGIC = b"ILOCKSEG"
# 3: slots may be in-flight tickets (TICKET_BIT) and the word at 516 is
# "held": an older release would free a ticket as a dead process's slot,
# and collect a held segment under its receiver's feet, so it must refuse
# these segments (and it does: it checks the version).  2: a table of
# MAX_SLOTS slots committed page by page (the high-water mark at 512);
# version 1 had 256 slots, all allocated.
LAYOUT_VERSION = 3
PREFIX = "interlock"

KIND_QUEUE = 1
KIND_LOCK = 2
KIND_RLOCK = 3
KIND_TABLE = 90  # interlock's own bookkeeping (the deadlock tooling's tables)
KIND_NAMES = {KIND_QUEUE: "Queue", KIND_LOCK: "Lock", KIND_RLOCK: "RLock", KIND_TABLE: "Table"}
# sync primitives and shared values (_sync.py, _value.py)
KIND_SEMAPHORE = 20
KIND_BOUNDED_SEMAPHORE = 21
KIND_RWLOCK = 22
KIND_EVENT = 23
KIND_BARRIER = 24
KIND_CONDITION = 25
KIND_VALUE = 26
KIND_ARRAY = 27
KIND_NAMES.update({
    KIND_SEMAPHORE: "Semaphore", KIND_BOUNDED_SEMAPHORE: "BoundedSemaphore",
    KIND_RWLOCK: "RWLock", KIND_EVENT: "Event", KIND_BARRIER: "Barrier",
    KIND_CONDITION: "Condition", KIND_VALUE: "Value", KIND_ARRAY: "Array",
})

_HDR = struct.Struct("<8sIIQIIQQIIIIII")  # up to and including flags @68
_PARAMS = struct.Struct("<7Q")
_SLOT = struct.Struct("<IHHQ")
ROLE_PRODUCER, ROLE_CONSUMER = 1, 2
# Header flags (offset 68): what `interlock ls` hides by default.
FLAG_INTERNAL = 1  # interlock's own bookkeeping (the deadlock tooling's tables)
FLAG_OWNED = 2  # made by another object for its own use (a Value's default lock)
OFF_USERS = 60
OFF_UNLINKED = 64
OFF_PARAMS = 72
OFF_NAME = 128
NAME_MAX = 200
OFF_SITE = 384
OFF_META_LOCK = 448
META_TID_MASK = 0x3FFFFFFF  # the owner's TID in a mutex word (mutex.h)
META_SLICE = 0.5  # seconds per wait for the meta lock
META_PATIENCE = 10.0  # one live holder this long: SegmentError (_meta_acquire)
REAP_WAIT = 0.2  # the collection skips a segment whose meta lock stays busy this long
OFF_HWM = 512  # the table's header: u32 high-water mark, u32 held, 56 bytes reserved
# u32: 1 while the segment has no user and is kept only by in-flight tickets
# (set by the last detach that found unexpired tickets, cleared by the next
# claim; the deferred unlink happens when no unexpired ticket is left).
OFF_HELD = 516
OFF_SLOTS = 576
# Processes attached to one object at once, at most.  The table is a sparse
# 1 MiB of the file: a page of it (256 slots) is allocated only when the
# table grows into it, and scans stop at the high-water mark.
MAX_SLOTS = 65536
DEFAULT_SLOTS = MAX_SLOTS
_PAGE = mmap.PAGESIZE

# In-flight tickets (segment.md, "Objects in flight"): a slot whose pid
# word has this bit is a ticket, not a process (pids are below 2**22).
TICKET_BIT = 0x80000000
# Outstanding tickets per segment at most; beyond, pickles share one
# anonymous ticket (id 0) that only its expiry ends.
TICKET_CAP = 1024
DEFAULT_INFLIGHT_GRACE = 60.0

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_UID = os.getuid()


class _MetaMutex(_core.Mutex):
    """The meta lock.  A takeover from a dead holder needs no report: every
    update made under it is an idempotent sweep (see _meta_acquire)."""

    def _on_owner_died(self, dead_pid: int) -> None:
        pass


def _align(n: int, a: int = 64) -> int:
    return (n + a - 1) // a * a


def validate_name(name: object) -> str:
    """Check a user-given object name; return it."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError("name must not be empty")
    if len(name.encode()) > NAME_MAX:
        raise ValueError(f"name is too long ({len(name.encode())} bytes; at most {NAME_MAX})")
    if "\x00" in name or "/" in name or ".." in name or not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid name {name!r}: use letters, digits, '_', '-' and '.' "
            "(not first, no '..', no '/')"
        )
    return name


def path_of(name: str) -> str:
    return f"{SHM_DIR}/{PREFIX}.{_UID}.{name}"


def internal_path(name: str) -> str:
    """Where one of interlock's own tables ("@waitfor") lives."""
    return path_of(internal_name(name))


def internal_name(name: str) -> str:
    """The file name of one of interlock's own tables ("@waitfor" lives in
    "@v3.waitfor"): one per layout version, so that the
    processes of an older release, still running, keep theirs and a newer
    one makes its own (they could not read each other's)."""
    assert name.startswith("@")
    return f"@v{LAYOUT_VERSION}.{name[1:]}"  # "@v3.waitfor": a prefix keeps name prefixes


# ------------------------------------------------ entries we did not create
# /dev/shm is world-writable (sticky) and uids are public: whatever sits at
# one of our names may have been planted by another user.  A FIFO there makes
# a blocking open wait for a writer forever; a symlink leads anywhere; as
# root, a file of another user could be read or removed.  So every open of an
# entry this process did not just create goes through open_entry(), every
# removal through remove_entry(): they decide what is ours, and nothing else
# in interlock opens or removes such an entry.  What is ours is exactly what
# _try_create makes: a regular file, owned by our effective uid, with no
# group or other permission bits.


_TYPES = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _foreign(path: str, st: os.stat_result) -> ForeignEntry | None:
    """None if ``st`` is a file of ours as we make them; else why not."""
    if not stat.S_ISREG(st.st_mode):
        what = next((w for test, w in _TYPES if test(st.st_mode)), "not a regular file")
        return ForeignEntry(path, what)
    if st.st_uid != os.geteuid():
        return ForeignEntry(path, f"a file of uid {st.st_uid}", st.st_uid)
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return ForeignEntry(path, f"a file with mode {mode:04o} (open to group or others)")
    return None


def open_entry(path: str, *, write: bool = False) -> tuple[int, os.stat_result]:
    """Open an existing entry of the segment directory, if it is ours.

    Returns ``(fd, fstat)``; the caller closes the fd.  Raises
    FileNotFoundError if there is nothing there, :class:`ForeignEntry` if
    what is there is not ours.  Never blocks (``O_NONBLOCK``: a FIFO would
    wait for a writer), never follows a link (``O_NOFOLLOW``), and decides on
    the descriptor itself (``fstat``), so that an entry swapped between the
    ``lstat`` and the ``open`` is judged as what was opened.  The ``lstat``
    first means that what is plainly not ours is not even opened.
    """
    bad = _foreign(path, os.lstat(path))
    if bad is not None:
        raise bad
    flags = (os.O_RDWR if write else os.O_RDONLY) | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:  # swapped for a symlink since the lstat
            raise ForeignEntry(path, "a symbolic link") from None
        raise
    try:
        st = os.fstat(fd)
        bad = _foreign(path, st)
        if bad is not None:
            raise bad
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def remove_entry(path: str, ino: int) -> bool:
    """Unlink ``path`` if it still names the file ``ino``, which the caller
    verified on a descriptor from :func:`open_entry` (or created).

    The directory is sticky: another user can neither remove nor rename our
    entry, so once a fresh ``lstat`` shows our file at ``path``, only our own
    processes (or root) could replace it before the ``unlink``.  True if
    removed; False if gone or replaced meanwhile."""
    try:
        now = os.lstat(path)
        if now.st_ino != ino or _foreign(path, now) is not None:
            return False
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


# ------------------------------------------------------------ spill files
# A queue's items above its spill threshold live in files of their own
# (docs/design/spill.md), named
#   .interlock-spill.<uid>.<queue id>.<producer pid>.<token>
# The queue id is the segment's creation time and creator (its header), so
# that a queue unlinked and made anew under the same name has other files.
# The C core makes, names and removes them one by one; the last user of the
# queue (or the collection of a queue whose users all died) removes what is
# left: items never taken, files of a producer or consumer killed mid-way.

SPILL_PREFIX = f".{PREFIX}-spill.{_UID}."


def spill_prefix(header: Header) -> str:
    """The path prefix of the queue's spill files (C appends pid.token)."""
    return f"{SHM_DIR}/{SPILL_PREFIX}{header.created_ns:x}-{header.creator_pid}."


def remove_spill_files(seg: "Segment") -> int:
    """Remove every spill file of the queue ``seg``, whose last user is
    gone (under its meta lock).  Lists the directory only if the queue ever
    named one (the ring's ``spilled`` count).  Returns how many."""
    hdr, mm = seg.header, seg.mm
    if mm is None or hdr.kind != KIND_QUEUE or len(hdr.params) < 4 or not hdr.params[3]:
        return 0
    if mm.load32(hdr.object_offset + _core.RING_OFF_SPILLED) == 0:
        return 0
    prefix = spill_prefix(hdr).rsplit("/", 1)[1]
    n = 0
    try:
        entries = os.listdir(SHM_DIR)
    except OSError:  # pragma: no cover
        return 0
    for entry in entries:
        if not entry.startswith(prefix):
            continue
        path = f"{SHM_DIR}/{entry}"
        try:
            fd, st = open_entry(path)
        except OSError:  # gone, or not ours
            continue
        os.close(fd)
        n += remove_entry(path, st.st_ino)
    return n


# ------------------------------------------------------- objects in flight
# An object pickled for another process (a Pool task's argument, a spawn
# child's, an item of a queue) must outlive its sender's handle until the
# receiver attaches: the sender may drop it at once (a temporary) or exit.
# Pickling takes a *ticket*: a slot of the process table that holds the
# segment until the receiver's attach consumes it, or until it expires (the
# grace period).  segment.md, "Objects in flight".


_inflight_grace: float | None = None


def set_inflight_grace(seconds: float) -> None:
    """How long an interlock object pickled by this process stays alive for
    its receiver when nobody else holds it (default 60 s, or the environment
    variable ``INTERLOCK_INFLIGHT_GRACE``).  0 takes no ticket at all: the
    object lives only as long as its users, as before tickets existed."""
    global _inflight_grace
    _inflight_grace = _check_grace(seconds, "set_inflight_grace")


def _check_grace(seconds: object, where: str) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{where}: seconds must be a number, not {type(seconds).__name__}")
    value = float(seconds)
    if not value >= 0 or value == float("inf"):  # (NaN fails too)
        raise ValueError(f"{where}: seconds must be finite and >= 0, not {seconds!r}")
    return value


def inflight_grace() -> float:
    """The grace period this process writes in the tickets it takes."""
    global _inflight_grace
    if _inflight_grace is None:
        raw = os.environ.get("INTERLOCK_INFLIGHT_GRACE", "")
        if not raw.strip():
            _inflight_grace = DEFAULT_INFLIGHT_GRACE
        else:
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"INTERLOCK_INFLIGHT_GRACE={raw!r} is not a number of "
                                 "seconds") from None
            _inflight_grace = _check_grace(value, "INTERLOCK_INFLIGHT_GRACE")
    return _inflight_grace


#: What a pickle carries for each segment it holds: (name, ticket id (0: the
#: shared overflow ticket), sender pid, pickling time (CLOCK_MONOTONIC ns,
#: the same clock in every process of the machine), grace in ns).
Ticket = tuple[str, int, int, int, int]

_incoming = threading.local()


class receiving:
    """Context manager: while unpickling an object, the tickets its pickle
    carries, for the Segment(...) calls it makes (by name: a Condition
    attaches its own lock too)."""

    def __init__(self, tickets: tuple[Ticket, ...]) -> None:
        self.tickets = tickets
        self.saved: dict[str, Ticket] | None = None

    def __enter__(self) -> None:
        self.saved = getattr(_incoming, "tickets", None)
        pending = dict(self.saved or {})
        pending.update((t[0], t) for t in self.tickets)
        _incoming.tickets = pending

    def __exit__(self, *exc: object) -> None:
        _incoming.tickets = self.saved


def _incoming_ticket(name: str) -> Ticket | None:
    pending: dict[str, Ticket] | None = getattr(_incoming, "tickets", None)
    return pending.pop(name, None) if pending else None


def freed_error(kind: str, ticket: Ticket, why: str = "") -> ObjectFreedError:
    """The receiver's error for an object gone before it attached."""
    name, tid, sender, sent_ns, grace_ns = ticket
    age = max(0, time.monotonic_ns() - sent_ns) / 1e9
    grace = grace_ns / 1e9
    if age > grace:
        cause = (f"the grace period for objects in flight ({grace:g} s) ended before this "
                 "process arrived, and nobody else held it")
    else:
        cause = ("every process holding it had detached, and its ticket was spent or not "
                 "taken (this pickle was unpickled before, or the object was unlinked)")
    return ObjectFreedError(
        f"interlock {kind} {name!r} was freed before this process (pid {os.getpid()}) "
        f"attached to it: pid {sender} sent it {age:.1f} s ago; {cause}{why}. Keep a handle "
        "in the sender until the receiver has attached, or raise the grace period "
        "(interlock.set_inflight_grace(), INTERLOCK_INFLIGHT_GRACE)",
        name, sender, age, grace)


def _spawning_popen() -> Any:
    """The Popen of the multiprocessing child being started (spawn,
    forkserver) while its Process object is pickled in this thread; None
    otherwise (multiprocessing sets it around that pickling)."""
    try:
        from multiprocessing import context

        return context.get_spawning_popen()
    except Exception:  # pragma: no cover
        return None


def _ticket_words(tid: int) -> tuple[int, int]:
    return TICKET_BIT | (tid >> 32), tid & 0xFFFFFFFF


def _tickets(buf: Any, nslots: int) -> list[tuple[int, int, int]]:
    """(index, ticket id, expiry ns) of the ticket slots below ``nslots``."""
    table = bytes(buf[OFF_SLOTS : OFF_SLOTS + 16 * nslots])  # one copy
    if _count_tickets(table) == 0:
        return []
    return [(i, ((pid & ~TICKET_BIT) << 32) | low, expiry)
            for i, (pid, low, expiry) in enumerate(_TICKET.iter_unpack(table))
            if pid & TICKET_BIT]


_NOT_TICKET = bytes(1 if b < 0x80 else 0 for b in range(256))  # top byte -> "a process?"
_TICKET = struct.Struct("<IIQ")  # a ticket slot: commit word, low id bits, expiry
_HIGH_BYTES = bytes(range(0x80, 0x100))


def _find_slot(table: bytes, head: bytes) -> int:
    """Index of the first slot of a copy of the table that starts with
    ``head`` (at C speed), or -1."""
    at = table.find(head)
    while at >= 0 and at % 16:  # (a match must start a slot)
        at = table.find(head, at + 1)
    return at // 16 if at >= 0 else -1


def _count_tickets(table: bytes) -> int:
    """Ticket slots in a copy of the table, at C speed: the top byte of each
    little-endian commit word has its high bit set for a ticket only."""
    top = table[3::16]
    return len(top) - len(top.translate(None, _HIGH_BYTES))


def _fresh_name() -> str:
    return f"anon-{os.getpid()}-{secrets.token_hex(6)}"


@dataclass(frozen=True)
class Header:
    """The fixed header of a segment, as read from /dev/shm."""

    magic: bytes
    version: int
    kind: int
    total_size: int
    creator_pid: int
    creator_uid: int
    creator_start: int
    created_ns: int
    object_offset: int
    object_size: int
    nslots: int
    users: int
    unlinked: int
    params: tuple[int, ...]
    name: str
    flags: int = 0  # FLAG_*
    hwm: int = 0  # the table's high-water mark when parsed (slots in use are below)

    @classmethod
    def parse(cls, buf: Any) -> "Header":
        f = _HDR.unpack_from(buf, 0)
        params = _PARAMS.unpack_from(buf, OFF_PARAMS)
        raw = bytes(buf[OFF_NAME : OFF_NAME + 256]).split(b"\0", 1)[0]
        hwm = struct.unpack_from("<I", buf, OFF_HWM)[0] if len(buf) >= OFF_HWM + 4 else 0
        return cls(*f[:13], params, raw.decode("utf-8", "replace"),  # type: ignore[call-arg]
                   f[13], min(hwm, f[10]))

    @property
    def table_bytes(self) -> int:
        """Bytes of the slot table worth reading: up to the high-water mark."""
        return 16 * min(self.hwm, self.nslots)


def _slots(buf: Any, nslots: int) -> Iterator[tuple[int, int, int, int]]:
    """(index, pid, refs, start) of the processes' slots among the first
    ``nslots`` (pass the high-water mark: the pages above it are holes, not
    to be touched).  Free slots (pid 0) and in-flight tickets are skipped."""
    table = bytes(buf[OFF_SLOTS : OFF_SLOTS + 16 * nslots])
    words = array.array("I", table)  # the pid of slot i is words[4 * i]
    if sys.byteorder == "big":  # pragma: no cover
        words.byteswap()
    pids = words[::4]
    # The processes' slots, at C speed: not a ticket (the top byte of the
    # little-endian commit word below 0x80), then not free (pid 0).
    procs = table[3::16].translate(_NOT_TICKET)
    index, pid = itertools.compress(range(len(pids)), procs), itertools.compress(pids, procs)
    for w in itertools.compress(list(index), list(pid)):
        _, refs, _roles, start = _SLOT.unpack_from(table, 16 * w)
        yield w, pids[w], refs, start


def _free_slot(buf: Any, nslots: int) -> int:
    """Index of the first free slot below ``nslots``, or -1."""
    words = array.array("I", bytes(buf[OFF_SLOTS : OFF_SLOTS + 16 * nslots]))
    try:
        return words[::4].index(0)
    except ValueError:
        return -1


def _hwm(mm: Any, nslots: int) -> int:
    return min(int(mm.load32(OFF_HWM)), nslots)


def _same_start(recorded: int, mine: int) -> bool:
    # as il_task_alive compares: low 32 bits, 0/1 = unknown (pid alone)
    return recorded <= 1 or (recorded & 0xFFFFFFFF) == (mine & 0xFFFFFFFF)


_start_of: tuple[int, int] = (0, 0)


def _my_start() -> int:
    """This process's start time (cached per process)."""
    global _start_of
    pid = os.getpid()
    if _start_of[0] != pid:
        _start_of = (pid, _core.task_start(pid) or 0)
    return _start_of[1]


#: The pid of this process, kept by the at-fork hook: the cheap "is this
#: handle from another process?" test of the Python-level entry points.
current_pid = os.getpid()


def _map(fd: int, size: int, path: str) -> _core.Mapping:
    """Map a segment; the caller closes ``fd`` right after (no dup is kept)."""
    try:
        return _core.Mapping(fd, size)
    except OSError as e:
        if e.errno != errno.ENOMEM:
            raise
        try:
            with open("/proc/sys/vm/max_map_count") as f:
                limit = f.read().strip()
        except OSError:  # pragma: no cover
            limit = "?"
        raise OSError(errno.ENOMEM, f"cannot map {path}: out of memory or of mappings (each "
                      f"interlock object is one mapping; vm.max_map_count is {limit})") from None


def _roles(buf: Any, i: int) -> int:
    return int(_SLOT.unpack_from(buf, OFF_SLOTS + 16 * i)[2])


def _refs_roles(refs: int, roles: int) -> int:
    """A slot's u16 refs and u16 roles as the one u32 word that holds them
    (little-endian layout, read back as a native word)."""
    return int.from_bytes(struct.pack("<HH", refs, roles), sys.byteorder)


class Segment:
    """One process's handle on one named segment (create or attach)."""

    # Every live handle of this process, for fork and exit bookkeeping.
    _live: "weakref.WeakSet[Segment]" = weakref.WeakSet()
    _live_lock = threading.Lock()

    def __init__(
        self,
        name: str | None,
        kind: int,
        object_size: int,
        params: tuple[int, ...],
        *,
        create: bool | None = None,
        init: Callable[[_core.Mapping, int], None] | None = None,
        nslots: int = DEFAULT_SLOTS,
        internal: bool = False,
        flags: int = 0,
    ) -> None:
        """Create (``create=True``), attach (``False``) or either (``None``).

        ``init(buf, offset)`` builds the object in a fresh segment before it
        becomes visible.  ``flags`` (FLAG_*) are written in the header of a
        segment this call creates (``internal`` adds FLAG_INTERNAL); an
        attach leaves the creator's flags as they are.
        """
        self._flags = flags | (FLAG_INTERNAL if internal else 0)
        self.anonymous = name is None
        if internal:  # interlock's own objects: "@name", never a user's name
            assert name is not None and name.startswith("@") and validate_name(name[1:])
            self.name = internal_name(name)  # (the file's name: "@v3.waitfor")
        else:
            self.name = validate_name(name) if name is not None else _fresh_name()
        self.path = path_of(self.name)
        self.kind = kind
        self.created = False
        self._released = False
        self._pid = os.getpid()  # the process whose slot this handle holds
        # Tickets this handle took while multiprocessing was starting a child
        # (spawn, forkserver): (ticket id, the child's Popen).  Withdrawn at
        # detach if that child exited without spending them.
        self._issued: list[tuple[int, Any]] = []
        self.mm: _core.Mapping | None = None
        # Unpickling (a receiver): the ticket its sender took for it.
        ticket = _incoming_ticket(self.name) if create is False else None
        deadline = time.monotonic() + 5.0
        while True:
            if create is not False:
                if self._try_create(object_size, params, init, nslots):
                    break
                if create is True:
                    raise FileExistsError(
                        f"interlock object {self.name!r} already exists (to start afresh: "
                        f"interlock.unlink({self.name!r}), then create it; processes still "
                        "attached keep the old one)")
            if self._try_attach(ticket[1] if ticket is not None else 0):
                break
            if create is False:
                if ticket is not None:
                    raise freed_error(KIND_NAMES.get(kind, "object"), ticket)
                raise FileNotFoundError(f"no interlock object named {self.name!r}")
            if time.monotonic() > deadline:  # pragma: no cover - would need a pathological race
                raise SegmentError(f"could not create or attach {self.name!r}: it keeps changing")
        with Segment._live_lock:
            Segment._live.add(self)
        if self.created:
            _maybe_collect()

    # ---------------------------------------------------------------- create
    def _try_create(
        self,
        object_size: int,
        params: tuple[int, ...],
        init: Callable[[_core.Mapping, int], None] | None,
        nslots: int,
    ) -> bool:
        obj_off = _align(OFF_SLOTS + 16 * nslots)
        total = _align(obj_off + object_size, _PAGE)
        hwm = min(nslots, (_PAGE - OFF_SLOTS) // 16)  # the slots of the first page
        # An unnamed file (O_TMPFILE): if we die before linking it, it vanishes
        # with us.  Fallback for filesystems without O_TMPFILE: a named temp.
        tmp = None
        try:
            fd = os.open(SHM_DIR, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except (OSError, AttributeError):
            tmp = f"{SHM_DIR}/.{PREFIX}-tmp.{_UID}.{os.getpid()}.{secrets.token_hex(6)}"
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600)
        try:
            try:
                os.ftruncate(fd, total)
                # Reserve the pages now: on a full /dev/shm this fails with
                # ENOSPC here, instead of a SIGBUS later on first touch.  Not
                # the slot table beyond its first page: it stays a hole until
                # the table grows into it (_grow_table).
                os.posix_fallocate(fd, 0, min(_PAGE, total))
                obj_page = obj_off // _PAGE * _PAGE
                os.posix_fallocate(fd, obj_page, total - obj_page)
                mm = _map(fd, total, self.path)
            except OSError as e:
                raise OSError(
                    e.errno, f"cannot create shared memory of {total} bytes in {SHM_DIR}: {e.strerror}"
                ) from None
            pid = os.getpid()
            start = _my_start()
            _HDR.pack_into(
                mm, 0, b"\0" * 8, LAYOUT_VERSION, self.kind, total, pid, _UID, start,
                time.time_ns(), obj_off, object_size, nslots, 1, 0, self._flags,
            )
            struct.pack_into("<I", mm, OFF_HWM, hwm)
            _PARAMS.pack_into(mm, OFF_PARAMS, *(tuple(params) + (0,) * 7)[:7])
            raw = self.name.encode()
            mm[OFF_NAME : OFF_NAME + len(raw)] = raw
            meta = _MetaMutex(mm, OFF_META_LOCK, create=True)
            _SLOT.pack_into(mm, OFF_SLOTS, pid, 1, 0, start)
            if init is not None:
                init(mm, obj_off)
            mm[0:8] = MAGIC  # last: the segment is whole
            _crash.point("segment.create.initialised")
            try:
                if tmp is None:
                    # linkat(AT_SYMLINK_FOLLOW) on /proc/self/fd/N: the unprivileged
                    # way to name an O_TMPFILE file (os.link only uses linkat
                    # when given a dir fd).
                    root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                    try:
                        os.link(f"/proc/self/fd/{fd}", self.path, src_dir_fd=root,
                                follow_symlinks=True)
                    finally:
                        os.close(root)
                else:
                    os.link(tmp, self.path)
            except FileExistsError:
                meta._detach()
                mm.close()
                return False
            # The mapping outlives the descriptor: closing it (finally, below)
            # keeps a process with many objects far from its fd limit.
            self.mm, self.meta = mm, meta
            self.ino = os.fstat(fd).st_ino
            self.header = Header.parse(mm)
            self.object_offset = obj_off
            self.created = True
            return True
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:  # pragma: no cover
                    pass
            if fd >= 0:
                os.close(fd)

    # ---------------------------------------------------------------- attach
    def _try_attach(self, ticket: int = 0) -> bool:
        try:
            fd, st = open_entry(self.path, write=True)
        except FileNotFoundError:
            return False
        except ForeignEntry as e:
            if e.uid is not None:
                raise PermissionError(
                    f"interlock object {self.name!r} belongs to uid {e.uid}, not to you "
                    f"({os.geteuid()}): {self.path}"
                ) from None
            raise
        try:
            if st.st_size < OFF_SLOTS:
                raise SegmentError(
                    f"{self.path} is truncated ({st.st_size} bytes): not an interlock segment"
                )
            mm = _map(fd, st.st_size, self.path)
            hdr = Header.parse(mm)
            if hdr.magic != MAGIC:
                mm.close()
                raise SegmentError(f"{self.path} is not an interlock segment (bad magic {hdr.magic!r})")
            if hdr.version != LAYOUT_VERSION:
                mm.close()
                raise SegmentError(
                    f"{self.path} has layout version {hdr.version}; this interlock reads version "
                    f"{LAYOUT_VERSION} (was it made by another interlock release?)"
                )
            if hdr.total_size != st.st_size or hdr.object_offset + hdr.object_size > st.st_size or (
                OFF_SLOTS + 16 * hdr.nslots > hdr.object_offset
            ):
                mm.close()
                raise SegmentError(
                    f"{self.path} is truncated or inconsistent ({st.st_size} bytes, header says "
                    f"{hdr.total_size})"
                )
            if hdr.kind != self.kind:
                mm.close()
                raise SegmentError(
                    f"interlock object {self.name!r} is a {KIND_NAMES.get(hdr.kind, hdr.kind)}, "
                    f"not a {KIND_NAMES.get(self.kind, self.kind)}"
                )
            meta = _MetaMutex(mm, OFF_META_LOCK)
            self.mm, self.meta, self.ino = mm, meta, st.st_ino
            self.header = hdr
            self.object_offset = hdr.object_offset
            if not self._claim_slot(ticket=ticket):
                meta._detach()
                mm.close()
                self.mm = None
                return False
            return True  # (fd is closed by the finally below: the mapping stays)
        finally:
            if fd >= 0:
                os.close(fd)

    # ----------------------------------------------------------- meta lock
    def _meta_acquire(self) -> None:
        # The meta lock is robust: a process killed holding it is taken over
        # (all updates below are idempotent sweeps, so a half-done one is fine)
        # and _MetaMutex reports nothing.  Not warnings.catch_warnings(): that
        # swaps process-wide state and would swallow another thread's warning.
        #
        # A holder updates the process table: microseconds.  A word that names
        # one live thread for META_PATIENCE seconds is a stopped process, or
        # a file whose word was written by something else (a hostile or
        # corrupted file naming, say, pid 1): waiting would be for ever, so
        # that is an error.  Waited for in slices, so signals are handled.
        assert self.mm is not None
        holder, since = -1, time.monotonic()
        while not self.meta.acquire(timeout=META_SLICE):
            word = self.mm.load32(OFF_META_LOCK) & META_TID_MASK
            now = time.monotonic()
            if word != holder:
                holder, since = word, now
            elif word and now - since >= META_PATIENCE:
                raise SegmentError(
                    f"{self.path}: its meta lock has been held by thread {word} for "
                    f"{now - since:.0f} s (a holder updates the process table in "
                    "microseconds): that process is stopped, or the file's lock word "
                    f"was not written by interlock (interlock.unlink({self.name!r}) "
                    "removes the name)")

    # ----------------------------------------------------------- the table
    # Every write below is made under the meta lock.  A slot's pid is its
    # commit word: a claim writes refs, roles and start time first, then the
    # pid in one atomic store; a free clears the pid first.  So a process
    # killed in the middle leaves a slot that is free (pid 0) or whole (and
    # its pid dead: the next sweep frees it), never a pid half-written into
    # some other, live process's pid.

    def _table(self) -> list[tuple[int, int, int, int]]:
        """(index, pid, refs, start) of the processes' slots (below the mark;
        not the tickets)."""
        assert self.mm is not None
        return list(_slots(self.mm, _hwm(self.mm, self.header.nslots)))

    def _set_slot(self, i: int, pid: int, refs: int, roles: int, start: int) -> None:
        # Word by word, each one aligned store (Mapping.store32/64), never
        # struct.pack_into: it zero-fills before it writes, so a process
        # killed in between (or an unlocked reader) would see a live slot
        # with refs, roles and start time 0.  A slot that keeps its commit
        # word (a process's refs or roles, a shared ticket's expiry) is
        # updated in place, one whole word at a time; any other change frees
        # the slot first and commits the new word last.
        assert self.mm is not None
        off = OFF_SLOTS + 16 * i
        word = _refs_roles(refs, roles)
        cur = self.mm.load32(off)
        if pid and (cur == pid or cur & pid & TICKET_BIT):
            # In place: the expiry first (so that a ticket turned into
            # another one has a valid expiry at every step), the commit word
            # last.
            if self.mm.load64(off + 8) != start:
                self.mm.store64(off + 8, start)
            if self.mm.load32(off + 4) != word:
                self.mm.store32(off + 4, word)
            if cur != pid:
                self.mm.store32(off, pid)
            return
        if cur:
            self.mm.store32(off, 0)
        self.mm.store32(off + 4, word if pid else 0)
        self.mm.store64(off + 8, start if pid else 0)
        if pid:
            self.mm.store32(off, pid)

    def _add_users(self, n: int) -> None:
        assert self.mm is not None
        self.mm.store32(OFF_USERS, max(0, int(self.mm.load32(OFF_USERS)) + n))

    def _sweep(self) -> int:
        """Under the meta lock: free slots of dead processes; return users."""
        assert self.mm is not None
        users = 0
        self._live_tickets()  # a ticket is freed by its expiry only
        for i, pid, refs, start in self._table():
            if not _core.task_alive(pid, start):
                self._set_slot(i, 0, 0, 0, 0)
            else:
                users += 1
        self.mm.store32(OFF_USERS, users)
        return users

    def _anyone_alive(self) -> bool:
        """Under the meta lock: is some slot's process alive?  Frees the dead
        slots met before the first live one: in the common case this reads
        one /proc entry, not one per attached process (a full sweep runs
        when a claim finds no free slot)."""
        pid = os.getpid()
        for i, spid, refs, start in self._table():
            if spid == 0:
                continue
            if (spid == pid and _same_start(start, _my_start())) or _core.task_alive(spid, start):
                return True
            self._set_slot(i, 0, 0, 0, 0)
            self._add_users(-1)
        return False

    def _grow_table(self) -> int:
        """Under the meta lock: commit the next page of slots; return the
        first new slot.  Pages are allocated before the high-water mark
        moves over them: a process killed between the two leaves an
        allocated page that the next grower allocates again (a no-op)."""
        assert self.mm is not None
        nslots = self.header.nslots
        hwm = _hwm(self.mm, nslots)
        if hwm >= nslots:
            raise SlotsExhausted(
                f"interlock object {self.name!r}: all {nslots} process slots are in use by live "
                "processes"
            )
        begin = OFF_SLOTS + 16 * hwm  # page-aligned: the table grows by whole pages
        new = min(nslots, hwm + _PAGE // 16)
        end = min(_align(OFF_SLOTS + 16 * new, _PAGE), len(self.mm))
        page = begin // _PAGE * _PAGE
        try:
            self.mm.populate(page, end - page)
        except OSError as e:
            raise OSError(e.errno, f"cannot grow the process table of {self.name!r} in "
                          f"{SHM_DIR}: {e.strerror}") from None
        _crash.point("segment.grow.populated")
        self.mm.store32(OFF_HWM, new)
        return hwm

    def _is_unlinked(self) -> bool:
        assert self.mm is not None
        return bool(self.mm.load32(OFF_UNLINKED))

    def _claim_slot(self, *, adopt: bool = False, ticket: int = 0) -> bool:
        """Register this process as a user.  False if the segment is dead
        (``adopt``: a fork child taking up an inherited mapping, which stays
        valid whether or not the name was removed meanwhile).  ``ticket``:
        the in-flight ticket this receiver consumes (0: none)."""
        assert self.mm is not None
        pid, mine = os.getpid(), _my_start()
        self._meta_acquire()
        try:
            _crash.point("segment.claim.locked")
            if self._is_unlinked() and not adopt:
                # Dead, but its name may still be there if the process that
                # unlinked it died between marking and removing: finish that.
                self._unlink_locked()
                return False
            if (not adopt and self.mm.load32(OFF_HELD) and not self._live_tickets()
                    and not self._anyone_alive()):
                # Its users all detached while tickets were out, and those
                # have expired: the unlink that the last detach deferred.
                self._unlink_locked()
                return False
            self._claim_locked(pid, mine)
            # Our slot first, then the ticket: a receiver killed between the
            # two leaves the ticket, which holds the segment until it expires.
            if ticket:
                self._spend_ticket(ticket)
            if self.mm.load32(OFF_HELD):
                self.mm.store32(OFF_HELD, 0)  # a user again
            return True
        finally:
            self.meta.release()

    def _claim_locked(self, pid: int, mine: int) -> None:
        """Under the meta lock: one more reference on our slot, or a new one."""
        assert self.mm is not None
        for i, spid, refs, start in self._table():
            if spid == pid:
                if _same_start(start, mine):
                    if refs >= 0xFFFF:
                        raise SlotsExhausted(f"interlock object {self.name!r}: this process "
                                             "holds 65535 handles on it already")
                    self._set_slot(i, pid, refs + 1, _roles(self.mm, i), start)
                    return
                self._set_slot(i, 0, 0, 0, 0)  # a dead process that had our pid
                self._add_users(-1)
        self._set_slot(self._free_index(), pid, 1, 0, mine)
        self._add_users(1)

    def _free_index(self) -> int:
        """Under the meta lock: a free slot, sweeping or growing the table
        if there is none below the mark."""
        assert self.mm is not None
        nslots = self.header.nslots
        free = _free_slot(self.mm, _hwm(self.mm, nslots))
        if free < 0:
            self._sweep()
            free = _free_slot(self.mm, _hwm(self.mm, nslots))
        if free < 0:
            free = self._grow_table()
        return free

    # ------------------------------------------------------ in-flight tickets
    def _live_tickets(self) -> list[tuple[int, int, int]]:
        """Under the meta lock: free the expired tickets; return the others
        as (index, id, expiry)."""
        assert self.mm is not None
        now = time.monotonic_ns()
        live = []
        for i, tid, expiry in _tickets(self.mm, _hwm(self.mm, self.header.nslots)):
            if expiry <= now:
                self._set_slot(i, 0, 0, 0, 0)
            else:
                live.append((i, tid, expiry))
        return live

    def _spend_ticket(self, tid: int) -> None:
        """Under the meta lock: free the ticket ``tid`` if it is still there
        (a second unpickling of one pickle finds it spent; an expired one
        may have been freed by a sweep)."""
        assert self.mm is not None
        nslots = _hwm(self.mm, self.header.nslots)
        at = _find_slot(bytes(self.mm[OFF_SLOTS : OFF_SLOTS + 16 * nslots]),
                        struct.pack("<II", *_ticket_words(tid)))
        if at >= 0:
            self._set_slot(at, 0, 0, 0, 0)

    def _withdraw_unspent(self) -> None:
        """Under the meta lock: free the tickets this handle took for
        multiprocessing children that have exited since (killed during their
        bootstrap, before unpickling: a pipeline stopped early).  Their
        receiver will never come; children still starting keep theirs."""
        keep = []
        for tid, popen in self._issued:
            try:
                exited = popen.poll() is not None
            except Exception:  # pragma: no cover - an odd Popen: leave it to expiry
                exited = False
            if exited:
                self._spend_ticket(tid)  # (a no-op if the child spent it)
            else:
                keep.append((tid, popen))
        self._issued = keep

    def take_ticket(self) -> Ticket:
        """Hold the segment for the receiver of a pickle of it (called when
        pickling): a ticket slot that the receiver's attach frees, or that
        expires after the grace period.  Returns what the pickle carries:
        the receiver spends the ticket with it, or, if it comes too late,
        says who sent the object and when.  No slot (id 0) when there is
        nothing to hold: a released handle, an unlinked segment, a grace
        period of 0.

        At most TICKET_CAP tickets are kept; beyond, the pickle gets the
        shared overflow ticket (id 0 too), whose expiry moves to the latest
        one asked: its receivers cannot spend it, so it holds the segment
        until then, however early they come."""
        grace = inflight_grace()
        grace_ns = int(grace * 1e9)
        now = time.monotonic_ns()
        record: Ticket = (self.name, 0, os.getpid(), now, grace_ns)
        if self.mm is None or self._released or grace_ns <= 0:
            return record
        self._meta_acquire()
        try:
            if self._is_unlinked():
                return record
            expiry = now + grace_ns
            nslots = _hwm(self.mm, self.header.nslots)
            table = bytes(self.mm[OFF_SLOTS : OFF_SLOTS + 16 * nslots])
            # At C speed, the common case (far fewer tickets than the cap)
            # and the case of a program over the cap (the shared ticket).
            if _count_tickets(table) >= TICKET_CAP:
                i = _find_slot(table, struct.pack("<II", TICKET_BIT, 0))
                if i < 0:
                    live = self._live_tickets()  # (frees the expired ones)
                    i = min(live, key=lambda t: t[2])[0] if len(live) >= TICKET_CAP else -1
                if i >= 0:
                    # In place: every intermediate state is a ticket with a
                    # valid expiry (the 8-byte expiry is one aligned store).
                    old = _TICKET.unpack_from(self.mm, OFF_SLOTS + 16 * i)[2]
                    self._set_slot(i, TICKET_BIT, 0, 0, max(old, expiry))
                    return record
            tid = secrets.randbits(63) | 1
            word, low = _ticket_words(tid)
            # (the commit word last, as for a process's slot)
            self._set_slot(self._free_index(), word, low & 0xFFFF, low >> 16, expiry)
            popen = _spawning_popen()
            if popen is not None:
                self._issued.append((tid, popen))
            return (self.name, tid, os.getpid(), now, grace_ns)
        finally:
            self.meta.release()

    def _drop_slot(self) -> None:
        """Unregister one reference of this process; unlink if nobody is left."""
        assert self.mm is not None
        pid, mine = os.getpid(), _my_start()
        self._meta_acquire()
        try:
            for i, spid, refs, start in self._table():
                if spid == pid and _same_start(start, mine):
                    if refs > 1:
                        self._set_slot(i, pid, refs - 1, _roles(self.mm, i), start)
                    else:
                        self._set_slot(i, 0, 0, 0, 0)
                        self._add_users(-1)
                        if self.header.kind == KIND_QUEUE:
                            # this process puts and gets no more: its
                            # pooled spill files and its warm mappings of
                            # others' go (spill.md, "The pool", "Warm
                            # mappings")
                            _core.spill_pool_drop(spill_prefix(self.header))
                    break
            _crash.point("segment.drop.locked")
            self._withdraw_unspent()
            if not self._anyone_alive():
                if self._live_tickets():
                    # Pickles of it are in flight: their receivers must find
                    # it.  The unlink waits for their attach (the last of
                    # them to detach unlinks) or for the tickets' expiry (the
                    # next claim or collection unlinks).
                    if not self._is_unlinked():
                        self.mm.store32(OFF_HELD, 1)
                else:
                    if not self._is_unlinked():
                        self._unlink_locked()
                    # The last user: a queue's spilled items go with it
                    # (after the name: a crash between the two leaves files,
                    # never a queue whose items lost theirs).
                    remove_spill_files(self)
        finally:
            self.meta.release()

    def _unlink_locked(self) -> None:
        assert self.mm is not None
        self.mm.store32(OFF_UNLINKED, 1)
        _crash.point("segment.unlink.marked")
        remove_entry(self.path, self.ino)

    # ---------------------------------------------------------------- public
    def unlink(self) -> None:
        """Remove the name now.  Processes attached keep using the segment;
        a later ``Queue(name=...)`` creates a new one."""
        if self.mm is None:
            raise ValueError(f"interlock object {self.name!r} is closed")
        self._meta_acquire()
        try:
            if not self._is_unlinked():
                self._unlink_locked()
        finally:
            self.meta.release()

    def release(self) -> None:
        """Detach this handle (idempotent).  Objects built on the buffer must
        have released it first, or the mapping closes when they are freed."""
        if self._released or self.mm is None:
            return
        self._released = True
        with Segment._live_lock:
            Segment._live.discard(self)
        if self._pid == os.getpid():
            try:
                self._drop_slot()
            except Exception:  # pragma: no cover - best effort at exit
                pass
        try:
            self.meta._detach()
        except Exception:  # pragma: no cover
            pass
        try:
            self.mm.close()
        except BufferError:
            pass  # still exported by a live object: closes when it is freed

    def params(self) -> tuple[int, ...]:
        assert self.mm is not None
        return _PARAMS.unpack_from(self.mm, OFF_PARAMS)

    def users(self) -> list[tuple[int, int]]:
        """(pid, refs) of the processes attached (racy snapshot)."""
        if self.mm is None:
            return []
        return [(pid, refs) for _, pid, refs, _ in self._table()]

    def in_flight(self) -> int:
        """Unexpired in-flight tickets (racy snapshot, for statistics)."""
        if self.mm is None:
            return 0
        now = time.monotonic_ns()
        return sum(1 for _, _, exp in _tickets(self.mm, _hwm(self.mm, self.header.nslots))
                   if exp > now)

    def note_role(self, role: int) -> None:
        """Record in this process's slot that it acted as producer/consumer
        (queues; once per process and object: _core calls _note_role)."""
        if self.mm is None:
            return
        pid, mine = os.getpid(), _my_start()
        self._meta_acquire()
        try:
            for i, spid, refs, start in self._table():
                if spid == pid and _same_start(start, mine):
                    self._set_slot(i, spid, refs, _roles(self.mm, i) | role, start)
                    return
        finally:
            self.meta.release()

    def adopt(self) -> None:
        """Become a user of an inherited handle (a fork child's first use).

        A forked child inherits the parent's mappings but no slot: a child
        that never uses the object (exec'd, a preexec_fn, os._exit, unrelated
        work) holds nothing and keeps nothing alive.  Its first use through
        the handle comes here (the C types check their cached pid on every
        call; the Python entry points compare ``_pid`` with ``current_pid``)
        and claims a slot, even if the name was removed meanwhile: the
        mapping is still valid, only the name is gone (segment.md, "Fork")."""
        if self._pid == os.getpid() or self._released or self.mm is None:
            return
        with _adopt_lock:  # two threads of the child: one claim
            if self._pid == os.getpid():
                return
            self._claim_slot(adopt=True)
            self._pid = os.getpid()
        _register_exit_once()


def _after_fork_in_child() -> None:
    # Nothing is claimed here: the child becomes a user of an object when it
    # first uses it (Segment.adopt).  So a fork costs nothing per object.
    global current_pid, _adopt_lock
    current_pid = os.getpid()
    Segment._live_lock = threading.Lock()  # the parent's may have been held
    _adopt_lock = threading.Lock()


def _release_all() -> None:
    for seg in list(Segment._live):
        seg.release()


_exit_registered_in = 0
_adopt_lock = threading.Lock()


def _register_exit_once() -> None:
    """At the first adoption in a forked child: the exit hooks that release
    what it adopted (atexit is inherited; multiprocessing's registry is
    not, or cleared)."""
    global _exit_registered_in
    if _exit_registered_in != os.getpid():
        _exit_registered_in = os.getpid()
        _register_exit()


def _mp_child_started(_obj: object = None) -> None:
    """In every multiprocessing child, after its bootstrap cleared the
    Finalize registry: register the exit hook, and under ``fork`` adopt the
    objects passed as the target's arguments, as ``spawn`` attaches to them
    by unpickling.  This narrows the window in which the parent's detach
    could remove the name while the child has not used the object yet to
    the child's first instructions (segment.md, "Fork")."""
    global _exit_registered_in
    _exit_registered_in = os.getpid()
    _register_exit()
    try:
        import multiprocessing

        proc = multiprocessing.current_process()
        args = list(getattr(proc, "_args", ()) or ())
        args += list((getattr(proc, "_kwargs", {}) or {}).values())
    except Exception:  # pragma: no cover
        return
    for a in args:
        inner = a.values() if isinstance(a, dict) else a if isinstance(a, (list, tuple)) else (a,)
        for obj in inner:
            seg = getattr(obj, "_seg", None)
            if isinstance(seg, Segment):
                try:
                    seg.adopt()
                except Exception:  # pragma: no cover - the first use raises it again
                    pass


_finalizer_in = 0  # the pid whose multiprocessing registry holds our Finalize


def _register_exit(_obj: object = None) -> None:
    # multiprocessing children leave through os._exit after running their
    # Finalize callbacks, not atexit: register with both.  A forked
    # multiprocessing child clears the inherited Finalize registry *after*
    # our at-fork hook ran, then runs its after-forkers: register again there.
    global _finalizer_in
    try:
        from multiprocessing import util

        util.Finalize(None, _release_all, exitpriority=-100)
        _finalizer_in = os.getpid()
    except Exception:  # pragma: no cover
        pass


def _release_at_exit() -> None:
    """The atexit hook.  When multiprocessing's own exit function is still to
    run (it was imported before interlock, so its atexit hook runs after
    ours), leave the release to our Finalize in its registry: that runs
    after it has terminated and joined the daemon children.  Releasing here
    would leave a segment to daemon workers about to be SIGTERMed, who never
    detach (the docs' JoinableQueue-with-daemon-workers pattern left its
    queues in /dev/shm)."""
    util = sys.modules.get("multiprocessing.util")
    if (util is not None and _finalizer_in == os.getpid()
            and not getattr(util, "_exiting", True)):
        return
    _release_all()


class _ForkToken:
    """A weak-referenceable key for multiprocessing.util.register_after_fork."""


_fork_token = _ForkToken()
atexit.register(_release_at_exit)
_register_exit()
# Every multiprocessing child (fork, spawn, forkserver) clears the Finalize
# registry in Process._bootstrap, after os.fork's hooks and after unpickling
# the target's arguments, then leaves through os._exit (fork, forkserver):
# without this, its handles were never released and a child that was the
# last user left the segment behind.  After-fork callbacks run after that
# clear, in every start method.
try:
    from multiprocessing import util as _mp_util

    _mp_util.register_after_fork(_fork_token, _mp_child_started)
except Exception:  # pragma: no cover
    pass
os.register_at_fork(after_in_child=_after_fork_in_child)


# -------------------------------------------------------------- inventory
@dataclass(frozen=True)
class SegmentInfo:
    """A segment found in /dev/shm (for the CLI and ``clean``)."""

    name: str
    path: str
    kind: str
    size: int
    creator_pid: int
    users: tuple[int, ...]
    live_users: tuple[int, ...]
    valid: bool
    problem: str = ""
    in_flight: int = 0  # unexpired in-flight tickets holding it for receivers


def _our_entries() -> list[str]:
    """The entries of SHM_DIR that may be ours (segments and temp files of
    this user), sorted."""
    prefix = f"{PREFIX}.{_UID}."
    tmp_prefix = f".{PREFIX}-tmp.{_UID}."
    try:
        entries = os.listdir(SHM_DIR)
    except FileNotFoundError:  # pragma: no cover
        return []
    return sorted(e for e in entries if e.startswith((prefix, tmp_prefix)))


def scan(entries: list[str] | None = None) -> list[SegmentInfo]:
    """Every interlock segment of this user, with who is attached (or only
    those among ``entries``, names in SHM_DIR).

    Entries at our names that are not ours (open_entry) are listed as
    invalid, never opened beyond that check; temp files that are not ours
    are left out: neither is ever removed by clean()."""
    out = []
    prefix = f"{PREFIX}.{_UID}."
    tmp_prefix = f".{PREFIX}-tmp.{_UID}."
    for entry in _our_entries() if entries is None else entries:
        path = f"{SHM_DIR}/{entry}"
        if entry.startswith(tmp_prefix):
            try:
                fd, _st = open_entry(path)
                os.close(fd)
            except OSError:  # gone, or not ours (ForeignEntry)
                continue
            field = entry.split(".")[3]
            pid = int(field) if field.isdigit() else 0
            alive = _core.task_alive(pid) if pid else False
            out.append(SegmentInfo(entry, path, "temp", 0, pid, (pid,), (pid,) if alive else (),
                                   False, "creation in progress" if alive else "left by a dead creator"))
            continue
        if not entry.startswith(prefix):
            continue
        name = entry[len(prefix):]
        try:
            fd, _st = open_entry(path)
            try:
                data = os.pread(fd, OFF_SLOTS, 0)
                hdr = Header.parse(data)
                if hdr.magic != MAGIC or hdr.version != LAYOUT_VERSION:
                    raise ValueError("bad magic or version")
                # up to the high-water mark (read(2) of a hole allocates nothing)
                data += os.pread(fd, hdr.table_bytes, OFF_SLOTS)
            finally:
                os.close(fd)
            nslots = (len(data) - OFF_SLOTS) // 16
            slots = list(_slots(data, nslots))
            users = tuple(pid for _, pid, _, _ in slots)
            live = tuple(pid for _, pid, _, st in slots if _core.task_alive(pid, st))
            now = time.monotonic_ns()
            in_flight = sum(1 for _, _, exp in _tickets(data, nslots) if exp > now)
            out.append(SegmentInfo(name, path, KIND_NAMES.get(hdr.kind, str(hdr.kind)),
                                   hdr.total_size, hdr.creator_pid, users, live, True,
                                   in_flight=in_flight))
        except FileNotFoundError:
            continue  # removed since the listing
        except (OSError, ValueError, struct.error) as e:  # ForeignEntry included
            out.append(SegmentInfo(name, path, "?", 0, 0, (), (), False, str(e)))
    return out


def _under_meta_lock(path: str, action: Callable[["Segment"], bool],
                     wait: float | None = None) -> bool:
    """Open the segment at ``path`` (open_entry), and run ``action`` on it
    under its meta lock, without registering as a user.  False if it is
    gone, not ours, or not a whole segment of this layout, or if ``wait``
    (seconds) is given and the meta lock stayed busy that long; without
    ``wait``, as an attach waits (SegmentError if held for good)."""
    try:
        fd, st = open_entry(path, write=True)
    except OSError:  # gone, or not ours (ForeignEntry)
        return False
    try:
        if st.st_size < OFF_SLOTS:
            return False
        mm = _core.Mapping(fd, st.st_size)
        try:
            hdr = Header.parse(mm)
            if hdr.magic != MAGIC or hdr.version != LAYOUT_VERSION or (
                OFF_SLOTS + 16 * hdr.nslots > st.st_size
            ):
                return False
            seg = Segment.__new__(Segment)
            seg.mm, seg.header, seg.path, seg.ino = mm, hdr, path, st.st_ino
            seg.name = hdr.name
            seg.meta = _MetaMutex(mm, OFF_META_LOCK)
            try:
                if wait is None:
                    seg._meta_acquire()
                elif not seg.meta.acquire(timeout=wait):
                    return False  # busy (or held for good): not now
                try:
                    return action(seg)
                finally:
                    seg.meta.release()
            finally:
                seg.meta._detach()
        finally:
            mm.close()
    finally:
        os.close(fd)


def _reap_locked(seg: "Segment") -> bool:
    # (already marked unlinked: its unlinker died before removing the name;
    # finish the job).  Unexpired tickets hold it for their receivers.
    if seg._sweep() == 0 and not seg._live_tickets():
        seg._unlink_locked()
        remove_spill_files(seg)
        return True
    return False


def _reap(path: str) -> bool:
    """Remove the segment at ``path`` if none of its users is alive.

    Done under the segment's meta lock, exactly as the last detach does, so
    that a process attaching at the same moment either registers first (and
    the segment stays) or finds it marked unlinked and retries."""
    return _under_meta_lock(path, _reap_locked, wait=REAP_WAIT)


def remove_dead(s: SegmentInfo) -> bool:
    """Remove one entry that scan() found dead: a temp file left by a dead
    creator, or a segment whose users are all gone (re-checked, under its
    meta lock).  True if removed."""
    if s.kind == "temp":
        try:
            fd, st = open_entry(s.path)
        except OSError:  # gone, or not ours
            return False
        os.close(fd)
        return remove_entry(s.path, st.st_ino)
    return _reap(s.path)


def clean(remove: bool = True, entries: list[str] | None = None) -> list[SegmentInfo]:
    """Segments (and temp files) whose processes are all dead; removed if
    asked.  ``entries`` (names in SHM_DIR) limits the look to those."""
    dead = [s for s in scan(entries)
            if not s.live_users and not s.in_flight and (s.valid or s.kind == "temp")]
    if not remove:
        return dead
    return [s for s in dead if remove_dead(s)]


def unlink(name: str) -> bool:
    """Remove the interlock object called ``name`` now, whatever its kind:
    True if removed, False if there was none.

    Processes attached to it keep working on the old object; the next
    constructor call with this name makes a new one.  This is how to start
    afresh after a crash: a named object left by killed processes keeps its
    old contents, and attaching to it by name finds them.  Raises
    :class:`SegmentError` if what is at the name is not an interlock segment
    of yours (it is then left alone)."""
    path = path_of(validate_name(name))
    try:
        fd, st = open_entry(path)
        os.close(fd)
    except FileNotFoundError:
        return False

    def mark_and_unlink(seg: Segment) -> bool:
        seg._unlink_locked()  # mark, then remove the name (if still this file)
        if seg._sweep() == 0 and not seg._live_tickets():
            remove_spill_files(seg)  # nobody left to take its spilled items
        return True

    try:
        if _under_meta_lock(path, mark_and_unlink):
            return True
    except SegmentError:
        # Its meta lock is held for good (_meta_acquire): nobody can attach
        # to it, so there is no attacher to be consistent with.  Remove the
        # name (if it is still that file); users keep their mappings.
        remove_entry(path, st.st_ino)
        return True
    if os.path.lexists(path):
        raise SegmentError(f"{path} is not a whole interlock segment of this layout; "
                           "refusing to remove it")
    return False


_last_collect = 0.0
_collect_after = ""  # the last entry the previous collection looked at
COLLECT_INTERVAL = 10.0
COLLECT_BATCH = 256


def _collect_batch(limit: int) -> list[str]:
    """The next ``limit`` of our entries after the previous batch's last,
    wrapping round (each at most once): successive collections walk the
    whole directory, a bounded piece at a time."""
    global _collect_after
    names = _our_entries()
    if len(names) <= limit:
        _collect_after = ""
        return names
    i = bisect.bisect_right(names, _collect_after)
    batch = names[i:i + limit]
    batch += names[:limit - len(batch)]
    _collect_after = batch[-1]
    return batch


def _maybe_collect() -> None:
    """Opportunistic garbage collection: segments whose processes all died
    (SIGKILL never detaches) are removed by the next process that creates a
    segment, at most once every COLLECT_INTERVAL seconds per process.

    Each collection looks at COLLECT_BATCH entries at most, resuming after
    the last one the previous collection of this process looked at: with
    few objects each collection covers them all; with 100,000 a whole scan
    would take longer than the interval (so every creation ran one, and
    100,000 Locks did not finish in 300 s; 39 s now) and would stall the
    creation it runs in for seconds.  A dead segment among N is collected within
    N / COLLECT_BATCH collections; `interlock clean` looks at them all."""
    global _last_collect
    now = time.monotonic()
    if now - _last_collect < COLLECT_INTERVAL:
        return
    _last_collect = now
    try:
        clean(remove=True, entries=_collect_batch(COLLECT_BATCH))
    except Exception:  # pragma: no cover - never let housekeeping break a create
        pass
