"""Packed items: plain built-in values sent without pickle (bind_pack.h,
docs/design/queue.md "Packed items").

What must hold: whatever goes in comes out with the same types and the same
value as pickle would give (NaN payloads, -0.0, surrogates, every int
width, dict order); only exact built-in types are packed, and everything
else (subclasses, big ints, shared or self-containing lists and dicts, deep
nesting, large items) is pickled as before, sharing kept; a packed item
never makes a queue refuse an item that pickled would fit; damaged packed
bytes raise RuntimeError, never crash and never read past the record.
"""
from __future__ import annotations

import collections
import enum
import math
import multiprocessing as mp
import pickle
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import interlock
from interlock import _core

from _helpers import uname

BYTES, PICKLE, SPILL, PACKED = 1, 3, 4, 6  # record kinds (ring.h)


def same(a: Any, b: Any) -> bool:
    """a and b have the same types all the way down and the same values
    (floats bit for bit: NaN payloads and -0.0 count)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return (len(a) == len(b) and all(same(k, j) for k, j in zip(a, b))
                and all(same(a[k], b[j]) for k, j in zip(a, b)))
    return bool(a == b)


RING_SIZE, RING_HEAD = 8, 256  # offsets in the ring's header (ring.h)


def first_kind(q: Any) -> int:
    """The kind of the record at the queue's head (the next one a get takes)."""
    base = q._seg.object_offset
    size, = struct.unpack_from("<Q", q._seg.mm, base + RING_SIZE)
    head, = struct.unpack_from("<Q", q._seg.mm, base + RING_HEAD)
    pos = (head & 0xFFFFFFFF) & (size - 1)
    return q._seg.mm[base + _core.RING_HEADER_SIZE + pos + 4]


@pytest.fixture
def q() -> Any:
    qu = interlock.Queue(name=uname("pack"))
    yield qu
    qu.detach()


class Color(enum.IntEnum):
    RED = 1


class Word(str):
    pass


Point = collections.namedtuple("Point", "x y")

PACKABLE = [
    None, True, False, 0, 1, -1, 2**31 - 1, -2**31, 2**31, -2**31 - 1, 2**63 - 1, -2**63,
    0.0, -0.0, 1.5, math.inf, -math.inf, math.nan, struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0],
    "", "abc", "h\u00e9", "\u20ac" * 3, "\U0001F600x", "\ud800", "a\udfffb\U0010FFFF",
    b"", b"\x00\xff" * 10, (b"",), [b"\x00\xff" * 10], (), [], {}, (0, "abc", 1.5), [1, [2, [3, (4,)]]],
    {"a": 1, 2: "b", (3, "c"): [None], 4.5: {}, b"k": True, None: False},
    ((),) * 5, [{"x": i} for i in range(127)],   # 128 lists and dicts: the most packed
]

PICKLED = [
    2**63, -2**63 - 1, 10**30, Color.RED, Word("w"), Point(1, 2),
    collections.OrderedDict(a=1), collections.defaultdict(list, a=[1]), {1, 2}, frozenset({3}),
    bytearray(b"ba") * 1,   # (a bytearray is its own kind: raw)
    [{"x": i} for i in range(128)],        # 129 lists and dicts
    (1, (2, Word("inner"))), [1, 2**64], {"k": Color.RED},
    complex(1, 2), range(3),
]


def nested(depth: int) -> Any:
    v: Any = 0
    for _ in range(depth):
        v = [v]
    return v


@pytest.mark.parametrize("value", PACKABLE, ids=range(len(PACKABLE)))
def test_plain_values_are_packed_and_come_back_the_same(q: Any, value: Any) -> None:
    q.put(value)
    # (bytes alone go raw, as before; inside anything else they are packed)
    assert first_kind(q) == (BYTES if type(value) is bytes else PACKED)
    got = q.get_nowait()
    assert same(got, pickle.loads(pickle.dumps(value, 5))) and same(got, value)


@pytest.mark.parametrize("value", PICKLED, ids=range(len(PICKLED)))
def test_anything_else_is_pickled_as_before(q: Any, value: Any) -> None:
    q.put(value)
    assert first_kind(q) != PACKED
    got = q.get_nowait()
    assert type(got) is type(value) and got == value


def test_sharing_inside_an_item_is_kept(q: Any) -> None:
    shared = [1, 2]
    d: dict = {}
    cyclic: list = [1]
    cyclic.append(cyclic)
    q.put([shared, shared])
    assert first_kind(q) == PICKLE
    q.put((d, {"again": d}))
    q.put(cyclic)
    a = q.get_nowait()
    assert a == [[1, 2], [1, 2]] and a[0] is a[1]
    b = q.get_nowait()
    assert b[0] is b[1]["again"]
    c = q.get_nowait()
    assert c[1] is c and c[0] == 1
    # a repeat far apart, among many other dicts
    far = [d] + [{"i": i} for i in range(100)] + [d]
    q.put(far)
    assert first_kind(q) == PICKLE
    f = q.get_nowait()
    assert f[0] is f[-1] and f[1:-1] == far[1:-1]
    # equal but distinct lists are two objects both ways
    q.put([[1], [1]])
    assert first_kind(q) == PACKED
    e = q.get_nowait()
    assert e == [[1], [1]] and e[0] is not e[1]


def test_depth_limit(q: Any) -> None:
    q.put(nested(16))   # 16 lists: packed
    assert first_kind(q) == PACKED
    assert q.get_nowait() == nested(16)
    q.put(nested(17))   # pickled
    assert first_kind(q) == PICKLE
    assert q.get_nowait() == nested(17)
    deep = nested(5000)  # deeper than pickle goes: its error, nothing put
    with pytest.raises(RecursionError):
        q.put(deep)
    assert q.qsize() == 0


def test_large_items_are_pickled_and_big_ones_spill(q: Any) -> None:
    small = list(range(1000))
    q.put(small)
    assert first_kind(q) == PACKED
    assert q.get_nowait() == small
    large = [i * 1.5 for i in range(10_000)]   # packed it would be 90 KiB: pickled
    q.put(large)
    assert first_kind(q) == PICKLE
    assert same(q.get_nowait(), large)
    huge = [f"{i:0100d}" for i in range(20_000)]   # 2 MiB pickled: spilled
    q.put(huge)
    assert first_kind(q) == SPILL
    assert q.get_nowait() == huge


def test_a_byte_bounded_queue_takes_what_pickle_would_fit() -> None:
    # 1,000 small ints pack to 5 KiB but pickle to 2 KiB: a 4 KiB queue takes them
    qu = interlock.Queue(name=uname("pack"), capacity=4096)
    try:
        item = [7] * 1000
        assert len(pickle.dumps(item, 5)) + 8 <= 4096
        qu.put(item)
        assert first_kind(qu) == PICKLE
        assert qu.get_nowait() == item
        qu.put(list(range(100)))
        assert first_kind(qu) == PACKED
        assert qu.get_nowait() == list(range(100))
    finally:
        qu.detach()


def test_put_many_get_many_and_the_overflow(q: Any) -> None:
    items = [(i, f"s{i}", i / 3, [i] * (i % 5), {"i": i}) for i in range(3000)]
    q.put_many(items)
    got = q.get_many(max_items=3000)
    assert len(got) == 3000 and all(same(a, b) for a, b in zip(got, items))
    # an unbounded queue: past its 4 MiB ring into overflow files
    n = (5 << 20) // 2048
    for i in range(n):
        q.put((i, "y" * 2000))
    assert q._stats()["overflow_depth"] > 0
    for i in range(n):
        assert q.get_nowait() == (i, "y" * 2000)


def _child_put(qu: Any) -> None:
    qu.put(PACKABLE)
    qu.detach()


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_between_processes(method: str) -> None:
    qu = interlock.Queue(name=uname("pack"))
    try:
        p = mp.get_context(method).Process(target=_child_put, args=(qu,))
        p.start()
        got = qu.get(timeout=60)
        p.join(30)
        assert p.exitcode == 0
        assert same(got, PACKABLE)
    finally:
        qu.detach()


# ------------------------------------------------------------------ damage

def put_record(q: Any, payload: bytes) -> None:
    """A record of kind PACKED with this payload at the head of the ring."""
    q.put(b"\0" * len(payload))   # a raw record of the right length ...
    data = q._seg.object_offset + _core.RING_HEADER_SIZE
    q._seg.mm[data + 4] = PACKED  # ... made a packed one
    q._seg.mm[data + 8:data + 8 + len(payload)] = payload


def u32(n: int) -> bytes:
    return struct.pack("<I", n)


@pytest.mark.parametrize("payload,what", [
    (b"", "ends early"),
    (b"Z", "unknown tag"),
    (b"i\x01\x02", "ends inside an int"),
    (b"q" + b"\0" * 7, "ends inside an int"),
    (b"d\0", "ends inside a float"),
    (b"s\x01", "ends inside a str header"),
    (b"s\x03" + u32(1) + b"a", "unknown width"),
    (b"s\x02" + u32(3) + b"ab", "str longer than the record"),
    (b"s\x04" + u32(1) + struct.pack("<I", 0x110000), "beyond U\\+10FFFF"),
    (b"b" + u32(2**32 - 1) + b"x", "bytes longer than the record"),
    (b"l" + u32(2**31), "container longer than the record"),
    (b"m" + u32(2) + b"NN", "container longer than the record"),
    (b"m" + u32(1) + b"l" + u32(0) + b"N", "unhashable dict key"),
    (b"m" + u32(1) + b"t" + u32(1) + b"l" + u32(0) + b"N", "unhashable dict key"),
    (b"l" + u32(1) + b"N" + b"N", "bytes after its value"),
    ((b"l" + u32(1)) * 17 + b"N", "nested too deep"),
])
def test_damaged_packed_records_raise(q: Any, payload: bytes, what: str) -> None:
    put_record(q, payload)
    with pytest.raises(RuntimeError, match="corrupt: packed item .*" + what):
        q.get_nowait()
    q.put(("still", "works"))
    assert q.get_nowait() == ("still", "works")


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=st.binary(min_size=1, max_size=200))
def test_random_packed_bytes_never_crash(payload: bytes) -> None:
    qu = interlock.Queue(name=uname("packfz"), capacity=4096)
    try:
        put_record(qu, payload)
        try:
            qu.get_nowait()
        except RuntimeError as e:
            assert "corrupt" in str(e)
    finally:
        qu.detach()


# ------------------------------------------------------------ any value

scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
           | st.text(st.characters(codec=None, exclude_categories=())) | st.binary())
keys = st.none() | st.booleans() | st.integers() | st.text() | st.binary() | st.floats(allow_nan=False)
values = st.recursive(scalars, lambda c: st.lists(c, max_size=6) | st.tuples(c, c)
                      | st.dictionaries(keys, c, max_size=5), max_leaves=40)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=values)
def test_any_value_comes_back_as_pickle_gives_it(value: Any) -> None:
    qu = interlock.Queue(name=uname("packhy"))
    try:
        qu.put(value)
        qu.put_many([value, value])
        expected = pickle.loads(pickle.dumps(value, 5))
        for got in [qu.get_nowait()] + qu.get_many(max_items=2):
            assert same(got, expected)
    finally:
        qu.detach()


def test_records_with_many_and_repeated_keys(q: Any) -> None:
    # keys shared within an item (the reader's key cache): more distinct
    # keys than it keeps, keys that are prefixes of others, latin-1 and
    # wider keys, a key longer than the cache takes, and non-str keys
    keys = [f"k{i}" for i in range(40)] + ["a", "ab", "abc", "\u00e9t\u00e9", "\u20ac", "x" * 100, 7, None]
    records = [{k: (j, str(k)) for k in keys} for j in range(30)]
    q.put(records)
    assert first_kind(q) == PACKED
    got = q.get_nowait()
    assert same(got, records)
    assert [list(r) for r in got] == [keys] * 30
