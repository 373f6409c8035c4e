"""Short multi-process stress of interlock's C core, for scripts/sanitize.sh
and scripts/valgrind.sh (an instrumented build: every path of the core should
run at least once).  Exit 0 when every check held.

    python scripts/sanitize_stress.py [seconds] [--no-fork]

Covers: put/get, put_many/get_many (all-or-nothing and partial), raw bytes,
bytearray and pickles with out-of-band buffers, payloads wrapping round the
ring end, full/empty blocking and timeouts, shutdown with sleepers on both
sides, JoinableQueue task_done/join, Lock/RLock contention, owner death
(SIGKILL) of a lock holder and of a producer holding the producer lock.
"""
import os
import pickle
import signal
import sys
import threading
import time
import warnings

import interlock

SECS = float(sys.argv[1]) if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else 10.0
FORK = "--no-fork" not in sys.argv
NPROD, NCONS, PER = 3, 2, 400


def payload(i):
    k = i % 4
    if k == 0:
        return bytes([i & 255]) * (i % 97 + 1)
    if k == 1:
        return bytearray(b"x" * (i % 300))
    if k == 2:
        return ("msg", i, "y" * (i % 50))
    return pickle.PickleBuffer(bytearray(b"z" * (i % 700 + 1)))


def check(i, obj):
    k = i % 4
    if k == 0:
        assert obj == bytes([i & 255]) * (i % 97 + 1), (i, obj)
    elif k == 1:
        assert isinstance(obj, bytearray) and len(obj) == i % 300, i
    elif k == 2:
        assert obj == ("msg", i, "y" * (i % 50)), (i, obj)
    else:
        assert bytes(obj) == b"z" * (i % 700 + 1), i


def tagged(p, j):
    return (p, j, payload(j))


def producer(q, p):
    batch = []
    for j in range(PER):
        if j % 5 == 0:
            if batch:
                q.put_many(batch, timeout=30)
                batch = []
            q.put(tagged(p, j), timeout=30)
            continue
        batch.append(tagged(p, j))
        if j % 7 == 0:
            q.put_many(batch, timeout=30)
            batch = []
    if batch:
        q.put_many(batch, timeout=30)


def consume(q, out):
    while True:
        try:
            items = q.get_many(17, timeout=30)
        except interlock.ShutDown:
            return
        out.extend(items)


def _single_threaded(timeout=10.0):
    """Wait until this process has one OS thread.  Python's join() returns
    before a thread's OS-level exit is over, and a fork in that window can
    copy a lock held by the exiting thread: under ASan, its allocator's
    (seen here: the child blocked for good in SizeClassAllocator64's mutex)."""
    deadline = time.monotonic() + timeout
    while len(os.listdir("/proc/self/task")) > 1 and time.monotonic() < deadline:
        time.sleep(0.001)


def run_in_child(fn, *args):
    _single_threaded()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fn(*args)
        except BaseException:  # noqa: BLE001 - report and exit
            import traceback
            traceback.print_exc()
            code = 1
        os._exit(code)
    return pid


def wait_ok(pid):
    _, st = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(st) == 0, (pid, st)


def queue_round(cap):
    q = interlock.Queue(capacity=cap)
    try:
        if FORK:
            pids = [run_in_child(producer, q, p) for p in range(NPROD)]
        else:
            pids = []
            threads = [threading.Thread(target=producer, args=(q, p)) for p in range(NPROD)]
            for t in threads:
                t.start()
        outs = [[] for _ in range(NCONS)]
        cons = [threading.Thread(target=consume, args=(q, outs[c])) for c in range(NCONS)]
        for t in cons:
            t.start()
        for pid in pids:
            wait_ok(pid)
        if not FORK:
            for t in threads:
                t.join()
        q.shutdown()
        for t in cons:
            t.join()
        got = {}
        for out in outs:
            last = {}
            for p, j, obj in out:
                assert j > last.get(p, -1), "per-producer FIFO broken"
                last[p] = j
                check(j, obj)
                got[(p, j)] = got.get((p, j), 0) + 1
        assert len(got) == NPROD * PER and set(got.values()) == {1}, len(got)
    finally:
        q.unlink()


def blocking_edges():
    q = interlock.Queue(maxsize=2, capacity=4096)
    try:
        q.put(b"a")
        q.put(b"b")
        t0 = time.monotonic()
        try:
            q.put(b"c", timeout=0.05)
            raise AssertionError("put on a full queue")
        except interlock.Full:
            pass
        assert time.monotonic() - t0 >= 0.04
        try:
            q.put_many([b"1", b"2", b"3"], block=False)
            raise AssertionError("put_many all-or-nothing")
        except interlock.Full:
            pass
        assert q.get() == b"a" and q.get_nowait() == b"b"
        try:
            q.get(timeout=0.05)
            raise AssertionError("get on an empty queue")
        except interlock.Empty:
            pass
        # sleepers on both sides, then shutdown
        sleeper = threading.Thread(target=lambda: _expect_closed(q))
        sleeper.start()
        time.sleep(0.05)
        q.shutdown()
        sleeper.join()
        try:
            q.put(b"x")
            raise AssertionError("put after shutdown")
        except interlock.ShutDown:
            pass
    finally:
        q.unlink()
    jq = interlock.JoinableQueue()
    try:
        for i in range(50):
            jq.put(i)
        def drain():
            for _ in range(50):
                jq.get()
                jq.task_done()

        done = threading.Thread(target=drain)
        done.start()
        assert jq.join(timeout=30)
        done.join()
        try:
            jq.task_done()
            raise AssertionError("task_done too many times")
        except ValueError:
            pass
    finally:
        jq.unlink()
    q = interlock.Queue(capacity=1024)
    try:
        try:
            q.put(b"x" * 5000)
            raise AssertionError("oversize message")
        except ValueError:
            pass
    finally:
        q.unlink()


def _expect_closed(q):
    try:
        q.get()
    except interlock.ShutDown:
        return
    raise AssertionError("get() returned on a shut-down empty queue")


def lock_round():
    lock = interlock.Lock()
    rlock = interlock.RLock()
    counter = interlock.Queue()
    try:
        n = [0]

        def work():
            for _ in range(300):
                with lock:
                    v = n[0]
                    n[0] = v + 1
                with rlock:
                    with rlock:
                        pass

        ts = [threading.Thread(target=work) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert n[0] == 1200
        assert lock.acquire(timeout=1)
        try:
            lock.acquire()
            raise AssertionError("re-acquire by owner")
        except interlock.DeadlockError:
            pass
        lock.release()
        if FORK:
            # a holder that dies: the next acquire takes it over
            pid = run_in_child(lambda: (lock.acquire(), counter.put(b"held"), time.sleep(60)))
            assert counter.get(timeout=30) == b"held"
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                assert lock.acquire(timeout=10)
            assert any(issubclass(x.category, interlock.OwnerDiedWarning) for x in w), w
            lock.release()
    finally:
        lock.unlink()
        rlock.unlink()
        counter.unlink()


def producer_death():
    if not FORK:
        return
    q = interlock.Queue(capacity=1 << 16)
    try:
        def spam():
            while True:
                q.put(b"p" * 1000)
        pid = run_in_child(spam)
        time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        # the dead producer may hold plock: our put takes it over
        q.put(b"after", timeout=10)
        items = []
        while True:
            try:
                items.append(q.get_nowait())
            except interlock.Empty:
                break
        assert items[-1] == b"after" and all(x == b"p" * 1000 for x in items[:-1])
    finally:
        q.unlink()


def main():
    deadline = time.monotonic() + SECS
    rounds = 0
    blocking_edges()
    lock_round()
    producer_death()
    caps = [1024, 4096, 1 << 16]
    while True:
        queue_round(caps[rounds % len(caps)])
        rounds += 1
        if time.monotonic() >= deadline:
            break
    print(f"sanitize_stress: {rounds} queue rounds of {NPROD * PER} messages, ok", flush=True)


if __name__ == "__main__":
    main()
