"""Value and Array: typed data in shared memory, with races made visible.

Like ``multiprocessing.Value`` / ``Array`` (``.value``, indexing, slicing,
``get_lock()``, ``with v:``), in a named segment so that they pickle by name
and attach from any process. The data is a ctypes object over the segment:
``v.value += 1`` is a read, then a write -- *not* atomic, exactly as in
``multiprocessing``; that is the lecture's lost update.

``guarded_by=lock`` turns that silent bug into an error: every read or write
of the data checks that the calling thread holds ``lock``, and raises
:class:`UnguardedAccessError`, naming the value and the lock, if not. The
check is one C call (``lock._is_owned()``); without ``guarded_by`` there is
no check at all. ``guarded_by=True`` means "the value's own lock".

Layout of the object in the segment: 256 bytes holding the name of the
lock (so that attaching by name finds the same lock), then the data,
64-byte aligned.
"""
from __future__ import annotations

import ctypes
from typing import Any, Iterator

from . import _segment
from ._lock import Lock, RLock
from ._shared import SharedObject
from .errors import UnguardedAccessError

__all__ = ["Value", "Array", "UnguardedAccessError"]

TYPECODES: dict[str, Any] = {
    "b": ctypes.c_byte, "B": ctypes.c_ubyte, "h": ctypes.c_short, "H": ctypes.c_ushort,
    "i": ctypes.c_int, "I": ctypes.c_uint, "l": ctypes.c_long, "L": ctypes.c_ulong,
    "q": ctypes.c_longlong, "Q": ctypes.c_ulonglong, "f": ctypes.c_float,
    "d": ctypes.c_double, "c": ctypes.c_char,
}
_LOCKNAME = 256


def _typecode(code: object) -> str:
    if isinstance(code, str) and code in TYPECODES:
        return code
    for k, t in TYPECODES.items():
        if code is t:
            return k
    raise TypeError(f"unsupported typecode {code!r}: use one of {''.join(TYPECODES)}")


class _Shared(SharedObject):
    """What Value and Array share: the segment, the lock, the guard."""

    _obj: Any
    _lock: Lock | None
    _guard: Lock | None

    def _setup(self, code: str, length: int, lock: object, guarded_by: object,
               name: str | None, create: bool | None, init_data: Any) -> None:
        self._code = code
        ctype = TYPECODES[code]
        size = ctypes.sizeof(ctype) * max(length, 1)
        if lock is not True and lock is not False and not isinstance(lock, Lock):
            raise TypeError(f"lock must be True, False or an interlock Lock/RLock, not {lock!r}")
        made: list[Lock] = []

        def init(buf: Any, offset: int) -> None:
            the_lock = lock if isinstance(lock, Lock) else (RLock(_owned=True) if lock is True
                                                              else None)
            if the_lock is not None:
                made.append(the_lock)
                raw = the_lock.name.encode()
                buf[offset: offset + len(raw)] = raw
                buf[offset + len(raw)] = 0
                buf[offset + _LOCKNAME - 1] = 1 if isinstance(the_lock, RLock) else 2
            init_data(buf, offset + _LOCKNAME)

        seg = self._open_segment(name, create, _LOCKNAME + size, (ord(code), length), init)
        params = seg.params()
        if seg.header.kind == self._kind and not seg.created:
            if params[0] != ord(code) or params[1] != length:
                stored = chr(params[0]) if params[0] else "?"
                raise ValueError(f"shared value {seg.name!r} holds {stored!r} x {params[1]}, "
                                 f"not {code!r} x {length}")
        assert seg.mm is not None
        off = seg.object_offset
        if made:
            self._lock = made[0]
        elif isinstance(lock, Lock):
            self._lock = lock
        else:
            raw = bytes(seg.mm[off: off + _LOCKNAME - 1]).split(b"\0", 1)[0]
            kind = seg.mm[off + _LOCKNAME - 1]
            self._lock = ((RLock if kind == 1 else Lock)(name=raw.decode(), create=False)
                          if raw else None)
        if guarded_by is True:
            guarded_by = self._lock
        if guarded_by is not None and not hasattr(guarded_by, "_is_owned"):
            raise TypeError(f"guarded_by must be a lock with ownership (interlock Lock/RLock, "
                            f"threading.RLock), not {guarded_by!r}")
        self._guard = guarded_by  # type: ignore[assignment]
        if length:
            self._obj = (ctype * length).from_buffer(seg.mm, off + _LOCKNAME)
        else:
            self._obj = ctype.from_buffer(seg.mm, off + _LOCKNAME)

    def _check(self) -> None:
        g = self._guard
        if g is not None and not g._is_owned():
            raise UnguardedAccessError(
                f"{self!r} accessed without holding {g!r}, which guards it "
                "(take it with `with lock:` first)")

    def get_lock(self) -> Lock:
        if self._lock is None:
            raise AttributeError(f"{self!r} was made with lock=False: it has no lock")
        return self._lock

    def get_obj(self) -> Any:
        """The raw ctypes object (no guard check)."""
        if self._seg._pid != _segment.current_pid:
            self._seg.adopt()
        return self._obj

    def acquire(self, *args: Any, **kw: Any) -> bool:
        return self.get_lock().acquire(*args, **kw)

    def release(self) -> None:
        self.get_lock().release()

    def __enter__(self) -> bool:
        return self.get_lock().__enter__()

    def __exit__(self, *exc: object) -> None:
        self.get_lock().release()

    def _pickle_options(self) -> dict[str, Any]:
        lock: object = self._lock if self._lock is not None else False
        guard: object = self._guard
        if guard is not None and guard is self._lock:
            guard = True
        return {"lock": lock, "guarded_by": guard, **self._shape()}

    def _shape(self) -> dict[str, Any]:
        raise NotImplementedError

    def detach(self) -> None:
        self._obj = None
        super().detach()

    def _detach(self) -> None:
        self._obj = None


class Value(_Shared):
    """``Value(typecode, value=0, *, lock=True, guarded_by=None, name=None, create=None)``

    ``lock``: True (a new :class:`interlock.RLock`), an interlock Lock/RLock,
    or False (no lock). ``guarded_by``: None, True (the value's lock) or a
    lock; see the module docstring.
    """

    _kind = _segment.KIND_VALUE

    def __init__(self, typecode_or_type: object, value: Any = None, *, lock: object = True,
                 guarded_by: object = None, name: str | None = None,
                 create: bool | None = None) -> None:
        code = _typecode(typecode_or_type)

        def init_data(buf: Any, offset: int) -> None:
            if value is not None:
                TYPECODES[code].from_buffer(buf, offset).value = value

        if value is not None:
            TYPECODES[code](value)  # type check before anything is created
        self._setup(code, 0, lock, guarded_by, name, create, init_data)

    def _shape(self) -> dict[str, Any]:
        return {"typecode_or_type": self._code}

    @property
    def value(self) -> Any:
        if self._seg._pid != _segment.current_pid:  # first use in a fork child
            self._seg.adopt()
        if self._guard is not None:
            self._check()
        return self._obj.value

    @value.setter
    def value(self, v: Any) -> None:
        if self._seg._pid != _segment.current_pid:  # first use in a fork child
            self._seg.adopt()
        if self._guard is not None:
            self._check()
        self._obj.value = v

    def _describe(self) -> str:
        try:
            return f"Value({self._code!r}) name={self.name!r}"
        except Exception:  # pragma: no cover
            return "detached"


class Array(_Shared):
    """``Array(typecode, size_or_initializer, *, lock=True, guarded_by=None, name=None, create=None)``"""

    _kind = _segment.KIND_ARRAY

    def __init__(self, typecode_or_type: object, size_or_initializer: Any, *,
                 lock: object = True, guarded_by: object = None, name: str | None = None,
                 create: bool | None = None) -> None:
        code = _typecode(typecode_or_type)
        if isinstance(size_or_initializer, int):
            length, initial = size_or_initializer, None
        else:
            initial = (size_or_initializer if isinstance(size_or_initializer, (bytes, bytearray))
                       else list(size_or_initializer))
            length = len(initial)
        if length <= 0:
            raise ValueError("an Array needs at least one element")

        def init_data(buf: Any, offset: int) -> None:
            if initial is not None:
                arr = (TYPECODES[code] * length).from_buffer(buf, offset)
                arr[:] = initial
                del arr

        self._setup(code, length, lock, guarded_by, name, create, init_data)

    def _shape(self) -> dict[str, Any]:
        return {"typecode_or_type": self._code, "size_or_initializer": len(self._obj)}

    def __len__(self) -> int:
        return len(self._obj)

    def __getitem__(self, i: Any) -> Any:
        if self._seg._pid != _segment.current_pid:  # first use in a fork child
            self._seg.adopt()
        if self._guard is not None:
            self._check()
        return self._obj[i]

    def __setitem__(self, i: Any, v: Any) -> None:
        if self._seg._pid != _segment.current_pid:  # first use in a fork child
            self._seg.adopt()
        if self._guard is not None:
            self._check()
        self._obj[i] = v

    def __iter__(self) -> Iterator[Any]:
        if self._seg._pid != _segment.current_pid:  # first use in a fork child
            self._seg.adopt()
        if self._guard is not None:
            self._check()
        return iter(self._obj[:])

    @property
    def value(self) -> Any:
        """For typecode 'c': the bytes up to the first NUL (like ctypes)."""
        if self._seg._pid != _segment.current_pid:  # first use in a fork child
            self._seg.adopt()
        if self._guard is not None:
            self._check()
        return self._obj.value

    @value.setter
    def value(self, v: Any) -> None:
        if self._seg._pid != _segment.current_pid:  # first use in a fork child
            self._seg.adopt()
        if self._guard is not None:
            self._check()
        self._obj.value = v

    @property
    def raw(self) -> bytes:
        if self._seg._pid != _segment.current_pid:  # first use in a fork child
            self._seg.adopt()
        if self._guard is not None:
            self._check()
        return ctypes.string_at(ctypes.addressof(self._obj), ctypes.sizeof(self._obj))

    def _describe(self) -> str:
        return f"Array({self._code!r}, {len(self._obj)}) name={self.name!r}"
