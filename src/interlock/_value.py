"""Value, Array, RawValue, RawArray: ``multiprocessing.sharedctypes`` in
named segments, with races made visible.

The API is ``multiprocessing.sharedctypes``'s (docs/design/value.md):

- ``RawValue(typecode_or_type, *args)`` / ``RawArray(typecode_or_type,
  size_or_initializer)`` return a plain ctypes object (``c_int``, ``c_double *
  10``, a ``Structure``, ...) whose memory is the segment's: no lock, no
  check, the buffer protocol (``numpy.frombuffer``) as with any ctypes object.
- ``Value(...)`` / ``Array(...)`` wrap such an object with a lock:
  ``lock=True`` or ``None`` (a new :class:`interlock.RLock`), ``lock=<an
  interlock Lock or RLock>`` (that one), ``lock=False`` (the raw object
  itself, as ``multiprocessing`` returns).  Each access (``.value``, an
  index, a slice, a Structure's field) takes the lock for its duration,
  unless the calling thread holds it already; ``get_lock()`` and
  ``get_obj()`` give the lock and the raw object.
- Types: the typecodes of the ``array`` module (``'i'``, ``'d'``, ``'c'``,
  ...), any ctypes simple type, ``Structure`` / ``Union`` subclasses, and
  arrays of any of them (``c_int * 3``, ``Point * 4``).  Pointers are
  refused: an address means nothing in another process.

Unlike ``multiprocessing``'s, every one of these objects (the raw ones and
``get_obj()``'s too) pickles *by name*: it can be sent on a queue, to a Pool
worker, or attached with ``name=`` from an unrelated process.  Passing it on
under ``fork`` costs nothing per object.

``v.value += 1`` is a read, then a write -- each locked, the pair *not*
atomic, exactly as in ``multiprocessing``; that is the lecture's lost
update.  ``guarded_by=lock`` turns that silent bug into an error: every read
or write checks that the calling thread holds ``lock``, and raises
:class:`UnguardedAccessError`, naming the value and the lock, if not.
``guarded_by=True`` means "the value's own lock".

Layout of the object in the segment: 256 bytes holding the name of the lock
(NUL-padded; the last byte says Lock or RLock; all zero: no lock), then the
data, 64-byte aligned.  params: (typecode or 0, length (0 for a Value),
sizeof(element), fingerprint of the element's layout).
"""
from __future__ import annotations

import ctypes
import hashlib
from typing import Any, Callable, Generic, Iterator, TypeVar

from . import _segment
from ._lock import Lock, RLock
from ._shared import FreedObject, SharedObject
from .errors import ObjectFreedError, UnguardedAccessError

__all__ = ["Value", "Array", "RawValue", "RawArray", "UnguardedAccessError"]

T = TypeVar("T")

TYPECODES: dict[str, Any] = {
    "b": ctypes.c_byte, "B": ctypes.c_ubyte, "h": ctypes.c_short, "H": ctypes.c_ushort,
    "i": ctypes.c_int, "I": ctypes.c_uint, "l": ctypes.c_long, "L": ctypes.c_ulong,
    "q": ctypes.c_longlong, "Q": ctypes.c_ulonglong, "f": ctypes.c_float,
    "d": ctypes.c_double, "c": ctypes.c_char, "u": ctypes.c_wchar,
}
_LOCKNAME = 256
_LOCK_KIND = {1: RLock, 2: Lock}  # the last byte of the lock-name area


# ------------------------------------------------------------------ types
def _ctype(typecode_or_type: object) -> Any:
    """The ctypes type asked for, or TypeError."""
    if isinstance(typecode_or_type, str):
        t = TYPECODES.get(typecode_or_type)
        if t is None:
            raise TypeError(f"unsupported typecode {typecode_or_type!r}: use one of "
                            f"{''.join(TYPECODES)} or a ctypes type")
        return t
    t = typecode_or_type
    if not isinstance(t, type) or not issubclass(
            t, (ctypes._SimpleCData, ctypes.Structure, ctypes.Union, ctypes.Array)):
        raise TypeError(f"unsupported typecode {t!r}: use one of {''.join(TYPECODES)} "
                        "or a ctypes type (simple, Structure, Union or array)")
    t = getattr(t, "_interlock_base", t)  # type(raw) of one of ours: its ctypes type
    _check_no_pointers(t, t)
    return t


def _check_no_pointers(t: Any, top: Any) -> None:
    if issubclass(t, ctypes.Array):
        _check_no_pointers(t._type_, top)
    elif issubclass(t, (ctypes.Structure, ctypes.Union)):
        for field in t._fields_:
            _check_no_pointers(field[1], top)
    elif (issubclass(t, (ctypes._Pointer, ctypes._CFuncPtr))  # type: ignore[attr-defined]
          or getattr(t, "_type_", "") in ("z", "Z", "P", "O")):
        raise TypeError(f"{top.__name__} holds a pointer ({t.__name__}): an address in one "
                        "process means nothing in another, so it cannot live in shared memory")


def _typecode(t: Any) -> str:
    for code, ct in TYPECODES.items():
        if t is ct:
            return code
    return ""


def _layout(t: Any) -> str:
    """A text that changes with anything that changes the bytes' meaning."""
    if issubclass(t, ctypes.Array):
        return f"{_layout(t._type_)}[{t._length_}]"
    if issubclass(t, (ctypes.Structure, ctypes.Union)):
        parts = []
        for field in t._fields_:
            desc = getattr(t, field[0])
            bits = f":{field[2]}" if len(field) > 2 else ""
            parts.append(f"{field[0]}:{_layout(field[1])}@{desc.offset}{bits}")
        kind = "S" if issubclass(t, ctypes.Structure) else "U"
        return f"{kind}{ctypes.sizeof(t)}{{{','.join(parts)}}}"
    return str(t._type_)


def _fingerprint(t: Any) -> int:
    digest = hashlib.blake2b(_layout(t).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # params are u64; keep it positive


def _spec(t: Any) -> Any:
    """A picklable name of a ctypes type: array types have no module name."""
    if issubclass(t, ctypes.Array):
        return ("array", _spec(t._type_), t._length_)
    return _typecode(t) or t


def _from_spec(spec: Any) -> Any:
    if isinstance(spec, tuple):
        return _from_spec(spec[1]) * spec[2]
    return _ctype(spec)


# ------------------------------------------------- the raw shared object
_RAW_CLASSES: dict[Any, Any] = {}


def _raw_reduce(self: Any) -> tuple[Any, ...]:
    h = self._interlock_handle
    h._seg.adopt()  # passing it on is a use (SharedObject.__reduce__)
    # An in-flight ticket holds it for the receiver (segment.md).
    return (_rebuild_raw, (h._kind, _spec(h._elem), h._length, h.name,
                           (h._seg.take_ticket(),)))


def _raw_repr(self: Any) -> str:
    return f"{type(self).__name__}({self.value!r})"


def _raw_class(t: Any) -> Any:
    """``t`` with pickling by name: the class of every raw object we hand out."""
    cls = _RAW_CLASSES.get(t)
    if cls is None:
        ns: dict[str, Any] = {"__reduce__": _raw_reduce, "__module__": t.__module__,
                              "_interlock_base": t}
        if issubclass(t, ctypes._SimpleCData):
            ns["__repr__"] = _raw_repr  # c_int(5), not <c_int object at ...>
        cls = _RAW_CLASSES[t] = type(t.__name__, (t,), ns)
    return cls


class _Handle(SharedObject):
    """This process's use of one shared ctypes object: the segment, and the
    lock recorded in it.  The raw object holds it (``_interlock_handle``);
    it does not hold the raw object, so dropping the last raw object or
    wrapper releases the segment."""

    def __init__(self, kind: int, elem: Any, length: int | None, lock: object,
                 name: str | None, create: bool | None, initial: Any) -> None:
        """``length``: None for a Value; ``lock``: None (raw: no lock), True
        (a new RLock) or an interlock Lock; ``initial``: a ctypes object of
        the full type to copy in, or None (zeros: a new file is zero-filled)."""
        self._kind, self._elem, self._length = kind, elem, length
        full = elem if length is None else elem * length
        code = _typecode(elem)
        params = (ord(code) if code else 0, length or 0, ctypes.sizeof(elem), _fingerprint(elem))
        made: list[Lock] = []

        def init(buf: Any, offset: int) -> None:
            # Runs on the creator's private file before it gets its name
            # (_segment: created whole, then linked): no one sees it half made.
            if lock is not None:
                the_lock = lock if isinstance(lock, Lock) else RLock(_owned=True)
                made.append(the_lock)
                raw = the_lock.name.encode()
                buf[offset: offset + len(raw)] = raw
                buf[offset + len(raw)] = 0
                buf[offset + _LOCKNAME - 1] = 1 if isinstance(the_lock, RLock) else 2
            if initial is not None:
                data = ctypes.string_at(ctypes.addressof(initial), ctypes.sizeof(initial))
                buf[offset + _LOCKNAME: offset + _LOCKNAME + len(data)] = data

        seg = self._open_segment(name, create, _LOCKNAME + ctypes.sizeof(full), params, init)
        if not seg.created:
            have = seg.params()
            if have[0] != params[0] or have[1] != params[1] or (
                    not code and (have[2], have[3]) != params[2:]):
                seg.release()
                stored = chr(have[0]) if have[0] else f"a ctypes type of {have[2]} bytes"
                want = code or f"{elem.__name__} ({params[2]} bytes)"
                raise ValueError(f"shared value {seg.name!r} holds {stored!r} x {have[1]}, "
                                 f"not {want!r} x {params[1]}")
        assert seg.mm is not None
        self._offset = seg.object_offset + _LOCKNAME
        self._full = full
        self._lock: Lock | None = None
        if made:
            self._lock = made[0]
        elif isinstance(lock, Lock):
            self._lock = lock
        elif lock is not None:  # attaching: the lock the creator recorded
            off = seg.object_offset
            raw = bytes(seg.mm[off: off + _LOCKNAME - 1]).split(b"\0", 1)[0]
            if raw:
                cls = _LOCK_KIND.get(seg.mm[off + _LOCKNAME - 1], Lock)
                self._lock = cls(name=raw.decode(), create=False)

    def raw(self) -> Any:
        assert self._seg.mm is not None
        obj = _raw_class(self._full).from_buffer(self._seg.mm, self._offset)
        obj._interlock_handle = self
        return obj

    def _detach(self) -> None:
        pass  # nothing of ours is built on the mapping but the raw objects

    def _describe(self) -> str:
        return f"name={self.name!r}"


def _initial(full: Any, args: tuple[Any, ...]) -> Any:
    # Built (and so type-checked) before any segment exists, as
    # multiprocessing does: obj.__init__(*args).
    return full(*args) if args else None


def _array_initial(elem: Any, size_or_initializer: Any) -> tuple[int, Any]:
    if isinstance(size_or_initializer, int):
        if size_or_initializer < 0:
            raise ValueError(f"an Array's size must be >= 0, not {size_or_initializer}")
        return size_or_initializer, None
    init = size_or_initializer
    n = len(init)
    return n, (elem * n)(*init)


def _rebuild_raw(kind: int, spec: Any, length: int | None, name: str,
                 tickets: tuple[_segment.Ticket, ...] = ()) -> Any:
    t = _from_spec(spec)
    with _segment.receiving(tickets):
        try:
            return _Handle(kind, t, length, None, name, False, None).raw()
        except ObjectFreedError as e:  # (on first use, not now: _shared)
            return FreedObject(t, name, e)


def RawValue(typecode_or_type: object, *args: Any, name: str | None = None,
             create: bool | None = None) -> Any:
    """A ctypes object in shared memory, without a lock
    (``multiprocessing.sharedctypes.RawValue``, passed by name)."""
    t = _ctype(typecode_or_type)
    initial = _initial(t, args)
    return _Handle(_segment.KIND_VALUE, t, None, None, name, create, initial).raw()


def RawArray(typecode_or_type: object, size_or_initializer: Any, *, name: str | None = None,
             create: bool | None = None) -> Any:
    """A ctypes array in shared memory, without a lock
    (``multiprocessing.sharedctypes.RawArray``, passed by name)."""
    t = _ctype(typecode_or_type)
    n, initial = _array_initial(t, size_or_initializer)
    return _Handle(_segment.KIND_ARRAY, t, n, None, name, create, initial).raw()


def _lock_arg(lock: object) -> object:
    if lock is None or lock is True:
        return True  # multiprocessing: None too means "make one"
    if isinstance(lock, Lock):
        return lock
    if not hasattr(lock, "acquire"):  # multiprocessing raises AttributeError here too
        raise AttributeError(f"lock must be True, False, None or an interlock Lock/RLock; "
                             f"{lock!r} has no acquire()")
    raise TypeError(f"lock must be True, False, None or an interlock Lock/RLock, not {lock!r}: "
                    "the value is shared by name, so its lock must be too (a threading lock "
                    "guards one process only; a multiprocessing lock cannot be attached by "
                    "name); use interlock.Lock() or interlock.RLock()")


# ------------------------------------------------------- the lock wrapper
class _Synchronized(SharedObject):
    """What Value and Array share: the raw object, the lock, the guard."""

    _obj: Any
    _lock: Lock | None
    _guard: Any
    _plain: bool
    _public: type

    def _setup(self, kind: int, elem: Any, length: int | None, lock: object,
               guarded_by: object, name: str | None, create: bool | None,
               initial: Any) -> None:
        raw_only = lock is False
        h = _Handle(kind, elem, length, None if raw_only else _lock_arg(lock), name, create,
                    initial)
        self._seg, self.name, self._finalizer = h._seg, h.name, h._finalizer
        self._obj = h.raw()
        self._lock = h._lock
        # A plain Lock held by this thread is not taken again (it would
        # deadlock, as multiprocessing's does); an RLock just is (cheaper
        # than asking whether it is held).
        self._plain = self._lock is not None and not self._lock._recursive
        if guarded_by is True:
            if self._lock is None:
                raise TypeError("guarded_by=True means the value's own lock, and lock=False "
                                "gives it none: pass the guarding lock itself")
            guarded_by = self._lock
        if guarded_by is not None and not hasattr(guarded_by, "_is_owned"):
            raise TypeError(f"guarded_by must be a lock with ownership (interlock Lock/RLock, "
                            f"threading.RLock), not {guarded_by!r}")
        self._guard = guarded_by

    def _check(self) -> None:
        g = self._guard
        if g is not None and not g._is_owned():
            raise UnguardedAccessError(
                f"{self!r} accessed without holding {g!r}, which guards it "
                "(take it with `with lock:` first)")

    def _locked(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(raw object)`` as every access runs: checked, and under the
        lock unless this thread holds it (multiprocessing takes it for each
        access; a thread that holds a plain Lock would deadlock there)."""
        if self._seg._pid != _segment.current_pid:  # first use in a fork child
            self._seg.adopt()
        lock = self._lock
        if self._guard is not None:
            self._check()
            if self._guard is lock:
                return fn(self._obj)
        if lock is None or self._plain and lock._is_owned():
            return fn(self._obj)
        with lock:
            return fn(self._obj)

    def get_lock(self) -> Lock:
        if self._lock is None:
            raise AttributeError(f"{self!r} was made with lock=False: it has no lock")
        return self._lock

    def get_obj(self) -> Any:
        """The raw ctypes object (no lock, no guard check); it pickles by name."""
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

    def __reduce__(self) -> tuple[Any, ...]:
        self._seg.adopt()
        h = self._obj._interlock_handle
        lock: object = self._lock if self._lock is not None else False
        guard: object = self._guard
        if guard is not None and guard is self._lock:
            guard = True
        return (_rebuild_sync, (self._public, _spec(h._elem), h._length, self.name, lock, guard,
                                (self._seg.take_ticket(),)))

    def detach(self) -> None:
        super().detach()
        self._obj = None

    def _detach(self) -> None:
        pass

    def __repr__(self) -> str:
        h = self._obj._interlock_handle if self._obj is not None else None
        if h is None:
            return f"<interlock.{self._public.__name__} detached>"
        what = _typecode(h._elem) or h._elem.__name__
        size = "" if h._length is None else f", {h._length}"
        return f"<interlock.{self._public.__name__}({what!r}{size}) name={self.name!r}>"


def _rebuild_sync(cls: Any, spec: Any, length: int | None, name: str, lock: object,
                  guard: object, tickets: tuple[_segment.Ticket, ...] = ()) -> Any:
    t = _from_spec(spec)
    for part in (lock, guard):
        if isinstance(part, FreedObject):  # its lock was freed in flight: so is it, in effect
            return FreedObject(cls, name, part._error)
    with _segment.receiving(tickets):
        try:
            if length is None:
                return cls(t, name=name, create=False, lock=lock, guarded_by=guard)
            return cls(t, length, name=name, create=False, lock=lock, guarded_by=guard)
        except ObjectFreedError as e:
            return FreedObject(cls, name, e)


class _ArrayAccess:
    """Indexing, slicing, iteration: Array, and Value of an array type."""

    _locked: Callable[[Callable[[Any], Any]], Any]
    _obj: Any

    def __len__(self) -> int:
        return len(self._obj)

    def __getitem__(self, i: Any) -> Any:
        return self._locked(lambda o: o[i])

    def __setitem__(self, i: Any, v: Any) -> None:
        def store(o: Any) -> None:
            o[i] = v
        self._locked(store)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._locked(lambda o: o[:]))  # a snapshot, taken under the lock

    @property
    def raw(self) -> bytes:
        """The bytes, NULs included (for 'c' arrays, as ctypes' ``.raw``)."""
        data: bytes = self._locked(
            lambda o: ctypes.string_at(ctypes.addressof(o), ctypes.sizeof(o)))
        return data


def _field(name: str) -> property:
    def get(self: _Synchronized) -> Any:
        return self._locked(lambda o: getattr(o, name))

    def set(self: _Synchronized, v: Any) -> None:
        self._locked(lambda o: setattr(o, name, v))
    return property(get, set, doc=f"the shared field {name!r} (locked access)")


_WRAPPER_NAMES = frozenset({"name", "_seg", "_obj", "_lock", "_guard", "_finalizer"})
_SYNC_CLASSES: dict[tuple[type, Any], type] = {}


def _sync_class(public: type, t: Any) -> Any:
    """The class of a wrapper of ``t``: ``public`` itself, with the array
    methods for array types, with one property per field for a Structure
    (as multiprocessing's ``synchronized()`` builds them)."""
    if public is Array or not issubclass(t, (ctypes.Array, ctypes.Structure, ctypes.Union)):
        return public
    cls = _SYNC_CLASSES.get((public, t))
    if cls is None:
        if issubclass(t, ctypes.Array):
            cls = type(public.__name__, (_ArrayAccess, public), {"__module__": public.__module__})
        else:
            # A field named like the wrapper's own attributes (name, acquire,
            # ...) stays reachable through get_obj().
            ns: dict[str, Any] = {f[0]: _field(f[0]) for f in t._fields_
                                  if f[0] not in _WRAPPER_NAMES and not hasattr(public, f[0])}
            ns["__module__"] = public.__module__
            cls = type(f"{public.__name__}[{t.__name__}]", (public,), ns)
        _SYNC_CLASSES[(public, t)] = cls
    return cls


class Value(_Synchronized, Generic[T]):
    """``Value(typecode_or_type, *args, lock=True, guarded_by=None, name=None, create=None)``

    ``multiprocessing.Value`` in a named segment: ``args`` initialise the
    ctypes object (``Value('i', 5)``, ``Value(Point, 1, 2)``).  ``lock``:
    True or None (a new :class:`interlock.RLock`), an interlock Lock/RLock,
    or False (then the raw ctypes object is returned, as :func:`RawValue`).
    A Structure's fields are attributes of the wrapper; an array type's
    elements are indexed.  ``guarded_by``: None, True (the value's lock) or
    a lock; see the module docstring.

    Raises:
        UnguardedAccessError: (on access) ``guarded_by`` is set and the
            calling thread does not hold that lock.
        TypeError, ValueError: an unknown typecode or type (pointers are
            refused), a lock that is not an interlock lock, or initial values
            of the wrong type; attaching by name to a value of another type.

    When a process dies: a process killed in the middle of a write leaves
    what it wrote; the lock it held is taken over by the next acquirer, who
    is told (``OwnerDiedWarning``) and should check the value.
    """

    _kind = _segment.KIND_VALUE

    def __new__(cls, typecode_or_type: object, *args: Any, lock: object = True,
                guarded_by: object = None, name: str | None = None,
                create: bool | None = None) -> Value[Any]:
        if lock is False and guarded_by is None:
            return RawValue(typecode_or_type, *args, name=name, create=create)  # type: ignore[no-any-return]
        return object.__new__(_sync_class(Value, _ctype(typecode_or_type)))

    def __init__(self: Value[Any], typecode_or_type: object, *args: Any, lock: object = True,
                 guarded_by: object = None, name: str | None = None,
                 create: bool | None = None) -> None:
        t = _ctype(typecode_or_type)
        self._setup(_segment.KIND_VALUE, t, None, lock, guarded_by, name, create,
                    _initial(t, args))

    @property
    def value(self) -> T:
        # Inlined _locked: this is the path a counter loop runs.
        if self._seg._pid != _segment.current_pid:  # first use in a fork child
            self._seg.adopt()
        lock = self._lock
        if self._guard is not None:
            self._check()
            if self._guard is lock:  # held: checked just now
                return self._obj.value  # type: ignore[no-any-return]
        if lock is None or self._plain and lock._is_owned():
            return self._obj.value  # type: ignore[no-any-return]
        with lock:
            return self._obj.value  # type: ignore[no-any-return]

    @value.setter
    def value(self, v: T) -> None:
        if self._seg._pid != _segment.current_pid:  # first use in a fork child
            self._seg.adopt()
        lock = self._lock
        if self._guard is not None:
            self._check()
            if self._guard is lock:
                self._obj.value = v
                return
        if lock is None or self._plain and lock._is_owned():
            self._obj.value = v
            return
        with lock:
            self._obj.value = v


class Array(_ArrayAccess, _Synchronized, Generic[T]):
    """``Array(typecode_or_type, size_or_initializer, *, lock=True, guarded_by=None, name=None, create=None)``

    ``multiprocessing.Array`` in a named segment: ``lock=False`` returns the
    raw ctypes array (:func:`RawArray`).  Each index, slice or iteration
    takes the lock (a slice is a consistent snapshot); ``.value`` and
    ``.raw`` for 'c' arrays.

    Raises:
        UnguardedAccessError: (on access) ``guarded_by`` is set and the
            calling thread does not hold that lock.
        TypeError, ValueError: an unknown typecode or type (pointers are
            refused), a lock that is not an interlock lock, or initial values
            of the wrong type; attaching by name to a value of another type.

    When a process dies: a process killed in the middle of a write leaves
    what it wrote; the lock it held is taken over by the next acquirer, who
    is told (``OwnerDiedWarning``) and should check the value.
    """

    _kind = _segment.KIND_ARRAY

    def __new__(cls, typecode_or_type: object, size_or_initializer: Any, *,
                lock: object = True, guarded_by: object = None, name: str | None = None,
                create: bool | None = None) -> Array[Any]:
        if lock is False and guarded_by is None:
            return RawArray(typecode_or_type, size_or_initializer,  # type: ignore[no-any-return]
                            name=name, create=create)
        return object.__new__(cls)

    def __init__(self: Array[Any], typecode_or_type: object, size_or_initializer: Any, *,
                 lock: object = True, guarded_by: object = None, name: str | None = None,
                 create: bool | None = None) -> None:
        t = _ctype(typecode_or_type)
        n, initial = _array_initial(t, size_or_initializer)
        self._setup(_segment.KIND_ARRAY, t, n, lock, guarded_by, name, create, initial)

    @property
    def value(self) -> Any:
        """For 'c' (and 'u') arrays: the text up to the first NUL (as ctypes)."""
        return self._locked(lambda o: o.value)

    @value.setter
    def value(self, v: Any) -> None:
        self._locked(lambda o: setattr(o, "value", v))


Value._public = Value
Array._public = Array
