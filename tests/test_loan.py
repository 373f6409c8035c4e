"""Loans: a large item built in shared memory and put without a copy
(``Queue.loan``; docs/design/spill.md, "Loans").

What must hold: an array made on a loan is put without copying it (the
receiver's array and the producer's loan are the same pages); anything that
does not qualify is copied as usual and still arrives; a loan that a put did
not carry (a failed put, a dropped loan) is the user's again, or goes back to
the pool; a sent loan's file is not written again while the producer still
holds its buffer; a fork child's copy of a loan is inert; no file outlives
the queue, whoever dies where; bad arguments are clear errors.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
from typing import Any

import pytest

import interlock
from interlock import _core, _segment

from _helpers import uname

np = pytest.importorskip("numpy")

MiB = 1 << 20
FREE, BUSY = 0, 1  # a pooled file's state (spillpool.h)


def spill_files() -> list[str]:
    return sorted(e for e in os.listdir(_segment.SHM_DIR)
                  if e.startswith(_segment.SPILL_PREFIX))


def pool(q: Any) -> list[tuple[int, int, int]]:
    """This process's pooled files of ``q``: [(size, state, holder)]."""
    return sorted(_core.spill_pool_info(_segment.spill_prefix(q._seg.header)))


def loaned(q: Any, n: int, fill: float) -> Any:
    a = np.frombuffer(q.loan(n * 8), dtype=np.float64)
    a[:] = fill
    return a


def loan_of(a: Any) -> Any:
    """The _core.Loan under an array made on a loan."""
    base = a
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base, memoryview)
    return base.obj


def test_an_array_made_on_a_loan_arrives_without_a_copy() -> None:
    q: interlock.Queue[Any] = interlock.Queue()
    try:
        a = loaned(q, MiB // 8, 3.0)  # 1 MiB
        assert isinstance(loan_of(a), _core.Loan) and not loan_of(a).sent
        assert a.ctypes.data % 64 == 0 and a.flags.writeable
        q.put(a)
        assert loan_of(a).sent and "sent" in repr(loan_of(a))
        b = q.get()
        assert b.shape == a.shape and (b == 3.0).all()
        # The same pages: a write by the receiver is seen through the loan
        # (a copy would not be).
        b[5] = -1.0
        assert a[5] == -1.0
        assert [st for _, st, _ in pool(q)] == [BUSY]
        del b
        assert [st for _, st, _ in pool(q)] == [FREE]
    finally:
        q.detach()
    assert spill_files() == []


def test_a_loan_inside_a_tuple_or_dict_is_sent_in_place_and_small_loans_too() -> None:
    q: interlock.Queue[Any] = interlock.Queue()
    try:
        a = loaned(q, 16, 1.0)  # 128 bytes: below the spill threshold, still a file
        q.put({"frame": 7, "data": a, "tag": ("x", 1.5)})
        d = q.get()
        assert d["frame"] == 7 and d["tag"] == ("x", 1.5) and (d["data"] == 1.0).all()
        d["data"][0] = 9.0
        assert a[0] == 9.0
        c = loaned(q, 1000, 2.0).reshape(10, 100)
        q.put((1, c))
        i, e = q.get()
        assert i == 1 and e.shape == (10, 100) and (e == 2.0).all()
        e[9, 99] = 5.0
        assert c[9, 99] == 5.0
    finally:
        q.detach()
    assert spill_files() == []


def test_what_does_not_qualify_is_copied_and_still_arrives() -> None:
    q: interlock.Queue[Any] = interlock.Queue()
    other: interlock.Queue[Any] = interlock.Queue()
    try:
        a = loaned(q, 2000, 4.0)
        q.put([a[:1000], a[1000:]])  # two buffers: copied
        x, y = q.get()
        assert (x == 4.0).all() and (y == 4.0).all()
        x[0] = -1.0
        assert a[0] == 4.0 and not loan_of(a).sent
        other.put(a)  # another queue: copied
        z = other.get()
        z[0] = -1.0
        assert a[0] == 4.0 and not loan_of(a).sent
        q.put(a[1:])  # not 64-byte aligned: copied
        assert q.get()[0] == 4.0 and not loan_of(a).sent
        q.put(a[8:])  # 64 bytes in: in place
        w = q.get()
        w[0] = -2.0
        assert a[8] == -2.0 and loan_of(a).sent
        q.put(a)  # a sent loan again: copied (the file is the receiver's)
        v = q.get()
        assert v[8] == -2.0
        v[8] = 0.0
        assert a[8] == -2.0
        del w, v, x, y, z
    finally:
        q.detach()
        other.detach()
    assert spill_files() == []


def test_a_failed_put_leaves_the_loan_to_the_user_and_a_retry_is_in_place() -> None:
    q: interlock.Queue[Any] = interlock.Queue(maxsize=1)
    try:
        q.put("first")
        a = loaned(q, MiB // 8, 6.0)  # a new (unnamed) file
        with pytest.raises(interlock.Full):
            q.put(a, timeout=0.05)
        assert not loan_of(a).sent and "open" in repr(loan_of(a))
        assert q.get() == "first"
        q.put_nowait(a)
        assert loan_of(a).sent
        b = q.get()
        b[0] = 1.0
        assert a[0] == 1.0
        del b
    finally:
        q.detach()
    assert spill_files() == []


def test_a_dropped_loan_goes_back_to_the_pool_and_a_sent_one_is_not_rewritten() -> None:
    q: interlock.Queue[Any] = interlock.Queue()
    try:
        a = loaned(q, MiB // 8, 1.0)
        q.put(a)
        assert (q.get() == 1.0).all()  # taken and let go: FREE
        # The producer still holds the sent loan's buffer: the pool must not
        # write the next item into it.
        q.put(np.full(MiB // 8, 2.0))
        assert (a == 1.0).all() and len(pool(q)) == 2
        assert (q.get() == 2.0).all()
        del a  # the loan goes: its file is the pool's again
        files = len(spill_files())
        for i in range(3):
            b = loaned(q, MiB // 8, float(i))
            del b  # never put: back to the pool
        c = loaned(q, MiB // 8, 9.0)
        q.put(c)
        assert (q.get() == 9.0).all()
        assert len(spill_files()) == files and len(pool(q)) == 2
        del c
    finally:
        q.detach()
    assert spill_files() == []


def test_a_never_sent_new_file_leaves_nothing() -> None:
    q: interlock.Queue[Any] = interlock.Queue()
    try:
        a = loaned(q, MiB // 8, 1.0)
        assert spill_files() == []  # a new loan's file has no name until sent
        del a
        assert pool(q) == []
    finally:
        q.detach()
    assert spill_files() == []


def test_a_loan_outlives_a_detach_and_leaves_nothing_behind() -> None:
    q: interlock.Queue[Any] = interlock.Queue(name=uname("loandet"))
    other = interlock.Queue(name=q.name, create=False)
    try:
        a = loaned(q, MiB // 8, 1.0)
        q.put(a)
        assert (other.get() == 1.0).all()  # its file is named now, and FREE
        b = loaned(q, MiB // 8, 2.0)  # ... taken again by a new loan
        q.detach()  # the pool forgets its files: the loans keep their memory
        b[:] = 3.0  # still mapped
        assert (b == 3.0).all() and (a == 1.0).all()
    finally:
        other.detach()
    assert spill_files() == []  # the last user's cleanup
    del a, b


def _inherit(q: Any, a: Any) -> None:
    # A fork child's copy of its parent's loan: readable, and put as a copy.
    assert (a == 5.0).all()
    q.put(a)
    os._exit(0)


def test_a_fork_child_s_copy_of_a_loan_is_inert() -> None:
    ctx = mp.get_context("fork")
    q: interlock.Queue[Any] = interlock.Queue()
    try:
        a = loaned(q, MiB // 8, 5.0)
        p = ctx.Process(target=_inherit, args=(q, a))
        p.start()
        got = q.get(timeout=30)
        p.join(30)
        assert p.exitcode == 0 and (got == 5.0).all()
        got[0] = -1.0
        assert a[0] == 5.0  # the child's put copied
        assert not loan_of(a).sent
        q.put(a)  # the parent's loan is still open and its own
        b = q.get()
        b[0] = 8.0
        assert a[0] == 8.0
        del got, b
    finally:
        q.detach()
    assert spill_files() == []


def _produce(name: str, n: int) -> None:
    q = interlock.Queue(name=name, create=False)
    for i in range(n):
        a = np.frombuffer(q.loan(MiB), dtype=np.int64)
        a[:] = i
        q.put((i, a))
        del a
    q.detach()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_loans_across_processes_exactly_once_in_order(method: str) -> None:
    ctx = mp.get_context(method)
    q: interlock.Queue[Any] = interlock.Queue(name=uname("loanxp"))
    n = 40
    try:
        p = ctx.Process(target=_produce, args=(q.name, n))
        p.start()
        for i in range(n):
            j, a = q.get(timeout=60)
            assert j == i and a.shape == (MiB // 8,) and a[0] == i and a[-1] == i
            del a
        p.join(60)
        assert p.exitcode == 0
    finally:
        q.detach()
    assert spill_files() == []


def _loan_and_die(name: str, taken: Any, ready: Any) -> None:
    q = interlock.Queue(name=name, create=False)
    a = np.frombuffer(q.loan(MiB), dtype=np.uint8)
    a[:] = 1
    q.put(a)  # sent (a new file, named by the put)
    del a
    assert taken.wait(30)  # the receiver let go of it: FREE
    b = np.frombuffer(q.loan(MiB), dtype=np.uint8)  # the same file, open, never sent
    c = np.frombuffer(q.loan(MiB), dtype=np.uint8)  # a new, unnamed file
    c[:] = 2
    q.put(c)  # in flight when the process dies
    ready.set()
    os.kill(os.getpid(), signal.SIGKILL)
    del b


def test_a_producer_killed_holding_loans_leaks_nothing() -> None:
    ctx = mp.get_context("fork")
    q: interlock.Queue[Any] = interlock.Queue(name=uname("loankill"))
    try:
        taken, ready = ctx.Event(), ctx.Event()
        p = ctx.Process(target=_loan_and_die, args=(q.name, taken, ready))
        p.start()
        first = q.get(timeout=30)
        assert (first == 1).all()
        del first
        taken.set()
        p.join(60)
        assert p.exitcode == -signal.SIGKILL and ready.is_set()
        # the open loan's named file (BUSY, nobody's) and the item in flight
        assert len(spill_files()) == 2
        assert (q.get(timeout=10) == 2).all()  # the sent one arrives
    finally:
        q.detach()
    assert spill_files() == []  # the last user removed the open loan's file


def test_a_full_pool_lends_ordinary_memory_which_put_copies() -> None:
    q: interlock.Queue[Any] = interlock.Queue()
    try:
        held = [q.loan(4096) for _ in range(_core.SPILL_POOL_SLOTS)]
        assert all(isinstance(m.obj, _core.Loan) for m in held)
        extra = q.loan(4096)
        assert isinstance(extra.obj, bytearray)  # no room: ordinary memory
        a = np.frombuffer(extra, dtype=np.uint8)
        a[:] = 7
        q.put(a)
        assert (q.get() == 7).all()
        del held, a, extra
    finally:
        q.detach()
    assert spill_files() == []


def test_bad_arguments_are_clear_errors() -> None:
    q: interlock.Queue[Any] = interlock.Queue()
    bounded: interlock.Queue[Any] = interlock.Queue(capacity=1 << 16)
    try:
        with pytest.raises(TypeError, match="nbytes must be an int"):
            q.loan(1.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="nbytes must be an int"):
            q.loan(True)
        with pytest.raises(ValueError, match="nbytes must be >= 0"):
            q.loan(-1)
        with pytest.raises(ValueError, match="capacity="):
            bounded.loan(100)
        empty = q.loan(0)
        assert empty.nbytes == 0 and not empty.readonly
        q.close()
        with pytest.raises(ValueError, match="closed"):
            q.loan(100)
    finally:
        q.detach()
        bounded.detach()
    assert spill_files() == []
