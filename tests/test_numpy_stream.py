"""numpy arrays sent with a kept pickle stream (bind_codec.c, "nd_cache";
docs/design/queue.md, "numpy arrays").

A C-contiguous ``numpy.ndarray`` is pickled by pickle.dumps once; the next
array of the same type, dtype, shape, format and read-only flag is sent with
that stream and a view of its data, without calling pickle.  What must hold:
every array comes back exactly as pickle would have brought it (dtype,
shape, order, values, writeability), through the ring and through spill
files; anything that changes what pickle would write (a dtype renamed in
place, a reducer registered in ``copyreg``, a subclass) is pickled again.
"""
from __future__ import annotations

import copyreg
import multiprocessing as mp
import pickle
from typing import Any

import pytest

import interlock
from interlock import _core

from _helpers import uname

np = pytest.importorskip("numpy")

MiB = 1 << 20


def queues() -> list[tuple[str, dict[str, Any]]]:
    # through the ring (a byte-bounded queue never spills) and through
    # spill files (a default queue, items above 1 MiB)
    return [("ring", {"capacity": 8 * MiB}), ("spill", {})]


def via_pickle(a: Any) -> Any:
    bufs: list[Any] = []
    s = pickle.dumps(a, protocol=5, buffer_callback=bufs.append)
    return pickle.loads(s, buffers=bufs)


def same(got: Any, want: Any) -> None:
    assert type(got) is type(want)
    assert got.dtype == want.dtype and got.dtype.names == want.dtype.names
    assert got.shape == want.shape
    assert got.flags.c_contiguous == want.flags.c_contiguous
    assert got.flags.f_contiguous == want.flags.f_contiguous
    assert got.flags.writeable == want.flags.writeable
    assert got.tobytes() == want.tobytes()


def arrays(big: bool) -> list[Any]:
    n = MiB // 4 + 1 if big else 64  # above the spill threshold, or small
    ro = np.arange(n, dtype="<f8")
    ro.flags.writeable = False
    out = [
        np.arange(n, dtype="<f8"),
        np.arange(n, dtype="<f8") * 2,         # the same kind again
        np.arange(n, dtype="<f4"),             # same shape, another dtype
        np.arange(n, dtype=">i4"),             # byte-swapped
        np.arange(n + 1, dtype="<f8"),         # same dtype, another shape
        np.arange(n, dtype="<f8").reshape(1, n),
        ro,                                    # read-only
        np.arange(n, dtype="u1"),
        np.arange(n, dtype="<c16"),
        np.ones(n, dtype="?"),
        np.zeros(n, dtype=[("a", "<i4"), ("b", "<f8")]),
        np.zeros(n, dtype=("<f8", (2,))),      # a subarray dtype (its shape joins the array's)
        np.array(["abc", "de"] * (n // 2), dtype="<U3"),
        np.arange(n, dtype="<f8").astype("M8[ns]"),   # no buffer export: pickled
        np.asfortranarray(np.arange(2 * n, dtype="<f8").reshape(2, n)),
        np.arange(2 * n, dtype="<f8")[::2],    # not contiguous
        np.array(3.5),                          # 0-d
        np.zeros((0, 4)),                       # empty
        np.array([1, "x", None] * 4, dtype=object),
    ]
    return out


@pytest.mark.parametrize("kind,kw", queues())
def test_numpy_arrays_of_every_kind_come_back_as_pickle_brings_them(kind: str, kw: dict) -> None:
    q: interlock.Queue[Any] = interlock.Queue(**kw)
    try:
        xs = arrays(big=kind == "spill")
        # each twice in a row (the second with the stream the first left),
        # then all again interleaved
        for a in xs + xs[::-1] + [x for x in xs for _ in (0, 1)]:
            q.put(a)
            same(q.get(timeout=10), via_pickle(a))
    finally:
        q.close()
        q.unlink()


def test_arrays_of_one_kind_reuse_the_stream_and_others_are_pickled() -> None:
    q: interlock.Queue[Any] = interlock.Queue(capacity=MiB)
    try:
        q.put(np.zeros(10, dtype="<i8"))   # (this kind's stream, whatever was kept before)
        q.get()
        reused, pickled = _core._nd_streams()
        for i in range(20):
            q.put(np.full(10, i, dtype="<i8"))
        assert q.get_many(20) and _core._nd_streams() == (reused + 20, pickled)
        q.put(np.zeros(11, dtype="<i8"))   # another shape
        q.put(np.zeros(11, dtype="<i4"))   # another dtype
        q.put(np.zeros(11, dtype="<i4")[::-1])  # not contiguous: not a candidate
        assert _core._nd_streams() == (reused + 20, pickled + 2)
        got = q.get_many(3)
        assert [a.dtype.str for a in got] == ["<i8", "<i4", "<i4"]
    finally:
        q.close()
        q.unlink()


def test_a_structured_dtype_renamed_in_place_is_pickled_again() -> None:
    q: interlock.Queue[Any] = interlock.Queue(capacity=MiB)
    try:
        dt = np.dtype([("a", "<i4"), ("b", "<i4")])
        a = np.zeros(4, dtype=dt)
        for _ in range(3):
            q.put(a)
            assert q.get().dtype.names == ("a", "b")
        dt.names = ("x", "y")   # the same dtype object, its fields renamed
        assert a.dtype is dt
        q.put(a)
        assert q.get().dtype.names == ("x", "y")
    finally:
        q.close()
        q.unlink()


def _reduce_tagged(a: Any) -> tuple[Any, tuple[Any, ...]]:
    return (list, (["reduced by copyreg", a.size],))


def test_a_reducer_registered_in_copyreg_is_used_for_the_next_array() -> None:
    q: interlock.Queue[Any] = interlock.Queue(capacity=MiB)
    try:
        a = np.arange(8.0)
        for _ in range(3):
            q.put(a)
            assert q.get().tolist() == a.tolist()
        copyreg.pickle(np.ndarray, _reduce_tagged)
        try:
            q.put(a)
            assert q.get() == ["reduced by copyreg", 8]
        finally:
            del copyreg.dispatch_table[np.ndarray]
        q.put(a)
        assert q.get().tolist() == a.tolist()
    finally:
        q.close()
        q.unlink()


class Tagged(np.ndarray):  # type: ignore[misc]
    """A subclass that pickles its tag with it."""

    tag = "none"

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (_tagged, (np.asarray(self).copy(), self.tag))


def _tagged(base: Any, tag: str) -> Any:
    t = base.view(Tagged)
    t.tag = tag
    return t


def test_a_subclass_of_ndarray_is_pickled_as_itself() -> None:
    q: interlock.Queue[Any] = interlock.Queue(capacity=MiB)
    try:
        plain = np.arange(8.0)
        q.put(plain)
        q.get()
        t = _tagged(np.arange(8.0), "mine")
        for _ in range(2):
            q.put(t)
            got = q.get()
            assert type(got) is Tagged and got.tag == "mine" and got.tolist() == t.tolist()
    finally:
        q.close()
        q.unlink()


def _send(name: str, n: int) -> None:
    q = interlock.Queue(name=name, create=False)
    for i in range(n):
        q.put(np.full((3, 5), i, dtype="<f8"))
    q.detach()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_child_sends_arrays_with_its_own_or_an_inherited_stream(method: str) -> None:
    q: interlock.Queue[Any] = interlock.Queue(name=uname("ndstream"), capacity=MiB)
    try:
        q.put(np.zeros((3, 5)))   # a fork child inherits this process's kept stream
        assert q.get().shape == (3, 5)
        p = mp.get_context(method).Process(target=_send, args=(q.name, 50))
        p.start()
        got = [q.get(timeout=60) for _ in range(50)]
        p.join(60)
        assert p.exitcode == 0
        assert [a[2, 4] for a in got] == list(range(50))
        assert all(a.shape == (3, 5) and a.dtype == np.float64 for a in got)
    finally:
        q.close()
        q.unlink()
