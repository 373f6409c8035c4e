"""Hardware watchpoints: how many store instructions of this thread hit a
word of memory.

A word that another process reads without a lock, or that a process killed
mid-update leaves behind, must be written with one store: a reader then
sees the old value or the new one.  "One store" cannot be seen by reading
the memory afterwards, so these tests count the stores with a debug
register (perf_event_open, PERF_TYPE_BREAKPOINT, HW_BREAKPOINT_W), which
counts every instruction of the thread, in user or kernel mode, that writes
any byte of the watched range.  ``struct.pack_into("<Q", ...)`` counts 3
(a zero-fill, then the value); one aligned store counts 1.

Linux only, x86-64 or aarch64; :func:`skip_unless_available` skips where
the kernel refuses (no debug registers in a VM, perf_event_paranoid).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import struct
from typing import Iterator

_NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}.get(os.uname().machine)
_PERF_TYPE_BREAKPOINT = 5
_HW_BREAKPOINT_W = 2
_ATTR_SIZE = 128  # PERF_ATTR_SIZE_VER7: the fields below are in it

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def address_of(buf, offset: int = 0) -> int:
    """The address of byte ``offset`` of a writable buffer (mmap, Mapping)."""
    return ctypes.addressof(ctypes.c_char.from_buffer(buf)) + offset


def _open(addr: int, length: int) -> int:
    if _NR_PERF_EVENT_OPEN is None:
        raise OSError(errno.ENOSYS, f"no perf_event_open number for {os.uname().machine}")
    attr = bytearray(_ATTR_SIZE)
    struct.pack_into("<II", attr, 0, _PERF_TYPE_BREAKPOINT, _ATTR_SIZE)  # type, size
    struct.pack_into("<Q", attr, 40, 1 << 6)  # flags: exclude_hv (user and kernel counted)
    struct.pack_into("<I", attr, 52, _HW_BREAKPOINT_W)  # bp_type
    struct.pack_into("<QQ", attr, 56, addr, length)  # bp_addr, bp_len
    buf = ctypes.create_string_buffer(bytes(attr), _ATTR_SIZE)
    fd = _libc.syscall(_NR_PERF_EVENT_OPEN, buf, 0, -1, -1, 0)  # this thread, any CPU
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"perf_event_open(breakpoint): {os.strerror(e)}")
    return int(fd)


class Stores:
    """The count of stores seen so far (read it with ``int()``)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def __int__(self) -> int:
        return int(struct.unpack("<Q", os.read(self._fd, 8))[0])


@contextlib.contextmanager
def stores_to(buf, offset: int, length: int = 8) -> Iterator[Stores]:
    """Count this thread's stores to ``buf[offset:offset+length]`` (length
    1, 2, 4 or 8, offset aligned to it) while the block runs."""
    assert length in (1, 2, 4, 8)
    addr = address_of(buf, offset)
    assert addr % length == 0, "a watchpoint covers an aligned range"
    fd = _open(addr, length)
    try:
        yield Stores(fd)
    finally:
        os.close(fd)


def skip_unless_available() -> None:
    """Skip the calling test where the kernel gives no watchpoint."""
    import mmap

    import pytest

    m = mmap.mmap(-1, 4096)
    try:
        with stores_to(m, 0) as n:
            m[0:1] = b"x"
            seen = int(n)
    except OSError as e:
        pytest.skip(f"no hardware watchpoint here ({e})")
    finally:
        with contextlib.suppress(BufferError):
            m.close()
    if seen != 1:
        pytest.skip(f"a watchpoint counted {seen} stores for one")
