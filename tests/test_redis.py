"""The Redis backend against a real redis-server (tests/redis_server.py).

Part 1 is the local contract (the same expectations as tests of the local
Queue/Lock), part 2 what only a network backend must face: consumers
killed holding messages, a lock holder paused past its lease, a server
restart, a server that cannot be reached.  Processes meant to "be on other
machines" are started with ``spawn`` and given only the URL and a name.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import socket
import threading
import time
import uuid

import pytest
from redis_server import RedisServer, free_port, session_server, skip_reason

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))

if skip_reason() is None:
    import redis as redis_py

    import interlock
    from interlock import DeadlockError, OwnerDiedWarning, QueueClosed
    from interlock._connect import connect
    from interlock.redis import ConnectionLost, LeaseExpired, StateLost

SPAWN = mp.get_context("spawn")
LEASE = 1.0  # seconds, for the tests that wait for a lease to run out


@pytest.fixture(scope="module")
def url() -> str:
    return session_server().url


@pytest.fixture
def r(url):
    return connect(url)


@pytest.fixture
def short(url):
    """A backend with a 1 s lease: dead holders are noticed within ~1 s."""
    return connect(url, lease=LEASE)


def uname() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------- children
# Module-level so that spawn can find them; each gets only a URL and a name.

def _produce(url, name, start, n, batch):
    q = connect(url).Queue(name=name, create=False)
    items = list(range(start, start + n))
    if batch:
        for i in range(0, n, 50):
            q.put_many(items[i:i + 50])
    else:
        for x in items:
            q.put(x)


def _consume(url, name, out_name):
    b = connect(url)
    q, out = b.Queue(name=name, create=False), b.Queue(name=out_name, create=False)
    got = []
    for x in q:
        got.append(x)
    out.put(got)


def _take_and_hang(url, name, n, joinable, ready):
    b = connect(url, lease=LEASE)
    q = (b.JoinableQueue if joinable else b.Queue)(name=name, create=False)
    for _ in range(n):
        q.get(timeout=10)
    ready.set()
    time.sleep(60)  # killed here, before finishing


def _take_one_and_exit(url, name):
    q = connect(url).Queue(name=name, create=False)
    q.get(timeout=10)  # processed; a clean exit acknowledges it


def _increment(url, lock_name, key, n):
    b = connect(url)
    lock, c = b.Lock(name=lock_name, create=False), redis_py.Redis.from_url(url)
    for _ in range(n):
        with lock:
            v = int(c.get(key) or 0)  # a read-modify-write race without the lock
            c.set(key, v + 1)


FENCED_WRITE = """
local top = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) < top then return 0 end
redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[2]); return 1
"""


def _fenced_write(c, name, token, value) -> int:
    """The protected resource: a value that refuses writes with a stale token."""
    return int(c.eval(FENCED_WRITE, 2, f"{name}:top", f"{name}:value", token, value))


def _hold_then_write(url, name, report):
    b = connect(url, lease=LEASE)
    lock, c = b.Lock(name=name, create=False), redis_py.Redis.from_url(url)
    lock.acquire()
    token = lock.fencing_token
    report.put(("acquired", token))
    time.sleep(0.2)  # SIGSTOPped here, past its lease
    # Woken: it still believes it holds the lock.
    report.put(("write", _fenced_write(c, name, token, "late writer")))
    try:
        lock.release()
        report.put(("release", "ok"))
    except LeaseExpired:
        report.put(("release", "LeaseExpired"))


def _hold_forever(url, name, ready):
    b = connect(url, lease=LEASE)
    b.Lock(name=name, create=False).acquire()
    ready.set()
    time.sleep(60)


# ================================================================ part 1: the contract

class TestQueueContract:
    def test_fifo(self, r):
        q = r.Queue()
        for i in range(200):
            q.put(i)
        assert q.qsize() == 200
        assert [q.get() for _ in range(200)] == list(range(200))
        assert q.empty()

    def test_empty_nowait_and_timeout(self, r):
        q = r.Queue()
        with pytest.raises(queue.Empty):
            q.get_nowait()
        with pytest.raises(queue.Empty):
            q.get(block=False)
        t = time.monotonic()
        with pytest.raises(queue.Empty):
            q.get(timeout=0.3)
        assert 0.25 <= time.monotonic() - t < 3
        with pytest.raises(ValueError):
            q.get(timeout=-1)

    def test_maxsize_full_and_timeout(self, r):
        q = r.Queue(maxsize=3)
        q.put_many([1, 2, 3])
        assert q.full() and q.qsize() == 3
        with pytest.raises(queue.Full):
            q.put_nowait(4)
        t = time.monotonic()
        with pytest.raises(queue.Full):
            q.put(4, timeout=0.3)
        assert 0.25 <= time.monotonic() - t < 3
        assert q.get() == 1
        q.put(4)
        assert [q.get() for _ in range(3)] == [2, 3, 4]

    def test_put_many_get_many(self, r):
        q = r.Queue()
        q.put_many(range(100))
        assert q.get_many(10) == list(range(10))
        assert q.get_many() == list(range(10, 100))
        with pytest.raises(ValueError):
            q.get_many(0)
        with pytest.raises(queue.Empty):
            q.get_many(5, block=False)

    def test_put_many_nowait_is_all_or_nothing(self, r):
        q = r.Queue(maxsize=5)
        q.put_many([0, 1, 2])
        with pytest.raises(queue.Full):
            q.put_many([3, 4, 5], block=False)
        assert q.qsize() == 3

    def test_put_many_blocking_goes_in_as_room_allows(self, r):
        q = r.Queue(maxsize=4)
        got: list[int] = []

        def drain():
            while len(got) < 20:
                got.extend(q.get_many(3, timeout=10))

        t = threading.Thread(target=drain)
        t.start()
        q.put_many(range(20), timeout=10)
        t.join(10)
        assert got == list(range(20))

    def test_put_many_timeout_reports_put_count(self, r):
        q = r.Queue(maxsize=4)
        with pytest.raises(queue.Full) as e:
            q.put_many(range(6), timeout=0.2)
        assert e.value.put_count == 4
        assert q.get_many() == [0, 1, 2, 3]

    def test_blocked_producer_is_woken_by_get(self, r):
        q = r.Queue(maxsize=1)
        q.put("a")
        done = threading.Event()
        t = threading.Thread(target=lambda: (q.put("b", timeout=10), done.set()))
        t.start()
        time.sleep(0.2)
        assert not done.is_set()
        assert q.get() == "a"
        assert done.wait(5)  # woken by the take, not by a timeout
        t.join()
        assert q.get() == "b"

    def test_blocked_consumer_is_woken_by_put(self, r):
        q = r.Queue()
        out: list[object] = []
        t = threading.Thread(target=lambda: out.append(q.get(timeout=10)))
        t.start()
        time.sleep(0.2)
        q.put("x")
        t.join(5)
        assert out == ["x"]

    def test_close_then_drain_then_closed(self, r):
        q = r.Queue()
        q.put_many([1, 2, 3])
        q.close()
        assert q.closed
        with pytest.raises(QueueClosed):
            q.put(4)
        with pytest.raises(ValueError):  # QueueClosed is a ValueError, as multiprocessing's
            q.put(4)
        assert q.get() == 1
        assert list(q) == [2, 3]
        with pytest.raises(QueueClosed):
            q.get()
        with pytest.raises(QueueClosed):
            q.get_nowait()
        assert q.qsize() == 0

    def test_close_wakes_every_blocked_consumer(self, r):
        q = r.Queue()
        results: list[str] = []
        lock = threading.Lock()

        def wait():
            try:
                q.get(timeout=20)
                res = "item"
            except QueueClosed:
                res = "closed"
            with lock:
                results.append(res)

        ts = [threading.Thread(target=wait) for _ in range(3)]
        for t in ts:
            t.start()
        time.sleep(0.3)
        q.close()
        for t in ts:
            t.join(10)
        assert results == ["closed"] * 3

    def test_close_wakes_blocked_producer(self, r):
        q = r.Queue(maxsize=1)
        q.put(0)
        err: list[BaseException] = []

        def put():
            try:
                q.put(1, timeout=20)
            except BaseException as e:
                err.append(e)

        t = threading.Thread(target=put)
        t.start()
        time.sleep(0.2)
        q.close()
        t.join(10)
        assert len(err) == 1 and isinstance(err[0], QueueClosed)

    def test_joinable_task_done_and_join(self, r):
        q = r.JoinableQueue()
        q.put_many(["a", "b"])
        assert not q.join(timeout=0.1)
        assert q.unfinished_tasks == 2
        q.get()
        q.task_done()
        joined = threading.Event()
        t = threading.Thread(target=lambda: q.join(timeout=10) and joined.set())
        t.start()
        q.get()
        time.sleep(0.1)
        assert not joined.is_set()
        q.task_done()
        assert joined.wait(5)
        t.join()
        with pytest.raises(ValueError):
            q.task_done()

    def test_payloads(self, r):
        np = pytest.importorskip("numpy")
        q = r.Queue()
        arr = np.arange(1000, dtype=np.float64)
        objs = [b"raw", bytearray(b"mutable"), {"k": [1, 2]}, None, arr, arr[::2]]
        q.put_many(objs)
        got = q.get_many()
        assert got[0] == b"raw" and type(got[0]) is bytes
        assert got[1] == bytearray(b"mutable") and type(got[1]) is bytearray
        assert got[2] == {"k": [1, 2]} and got[3] is None
        assert (got[4] == arr).all() and got[4].flags.writeable
        assert (got[5] == arr[::2]).all()

    def test_names_and_create_flags(self, r):
        name = uname()
        q = r.Queue(maxsize=7, name=name, create=True)
        with pytest.raises(FileExistsError):
            r.Queue(name=name, create=True)
        with pytest.raises(FileNotFoundError):
            r.Queue(name=uname(), create=False)
        with pytest.raises(ValueError):
            r.Queue(maxsize=8, name=name)
        with pytest.raises(ValueError):
            r.Lock(name=name)  # a queue, not a lock
        other = r.Queue(name=name, create=False)
        q.put("shared")
        assert other.maxsize == 7 and other.get() == "shared"
        q.unlink()

    def test_unlink_with_taken_messages(self, r):
        """unlink() of a queue this process took from: what it took is
        acknowledged first (before: after the delete, and the ack raised
        StateLost out of unlink()); a second unlink() is harmless.  A queue
        or lock made again under the name starts afresh (before: this
        process's high-water marks of the old one raised RolledBack)."""
        q = r.JoinableQueue(name=uname())
        q.put_many([1, 2])
        assert q.get(timeout=1) == 1
        q.unlink()
        q.unlink()
        p = r.Queue(name=uname())
        p.put("x")
        assert p.get(timeout=1) == "x"
        p.unlink()
        assert not r.Queue(name=p.name).qsize()
        lock = r.Lock(name=uname())
        for _ in range(2):
            with lock:
                pass
        lock.unlink()
        again = r.Lock(name=lock.name)
        with again:
            assert again.fencing_token == 1
        again.unlink()

    def test_processes_share_only_the_url(self, url, r):
        """2 producers and 2 consumers, each told only the URL and the names."""
        name, out_name = uname(), uname()
        q, out = r.Queue(maxsize=100, name=name), r.Queue(name=out_name)
        ps = [SPAWN.Process(target=_produce, args=(url, name, 0, 500, True)),
              SPAWN.Process(target=_produce, args=(url, name, 500, 500, False)),
              SPAWN.Process(target=_consume, args=(url, name, out_name)),
              SPAWN.Process(target=_consume, args=(url, name, out_name))]
        for p in ps:
            p.start()
        for p in ps[:2]:
            p.join(60)
        q.close()
        got = out.get(timeout=60) + out.get(timeout=60)
        for p in ps[2:]:
            p.join(30)
        assert sorted(got) == list(range(1000))  # each exactly once
        assert all(p.exitcode == 0 for p in ps)

    def test_pickled_to_a_child(self, url, r):
        q = r.Queue()
        p = SPAWN.Process(target=_pickled_put, args=(q,))
        p.start()
        p.join(30)
        assert q.get(timeout=5) == "from child"


def _pickled_put(q):
    q.put("from child")


class TestLockContract:
    def test_acquire_release(self, r):
        lock = r.Lock()
        assert not lock.locked()
        assert lock.acquire()
        assert lock.locked()
        assert not lock.acquire(block=False)
        with pytest.raises(ValueError):
            lock.acquire(block=False, timeout=1)
        lock.release()
        assert not lock.locked()
        with pytest.raises(RuntimeError):
            lock.release()

    def test_owner_reacquire_is_a_deadlock(self, r):
        lock = r.Lock()
        with lock, pytest.raises(DeadlockError):
            lock.acquire()

    def test_other_thread_times_out_and_cannot_release(self, r):
        lock = r.Lock()
        lock.acquire()
        res: list[object] = []

        def other():
            t = time.monotonic()
            res.append(lock.acquire(timeout=0.3))
            res.append(time.monotonic() - t)
            try:
                lock.release()
            except RuntimeError:
                res.append("refused")

        t = threading.Thread(target=other)
        t.start()
        t.join(10)
        assert res[0] is False and 0.25 <= res[1] < 3 and res[2] == "refused"
        lock.release()

    def test_rlock_reentrant(self, r):
        lock = r.RLock()
        with lock:
            with lock:
                assert lock.locked()
            assert lock.locked()
        assert not lock.locked()

    def test_mutual_exclusion_between_processes(self, url, r):
        name, key = uname(), uname()
        r.Lock(name=name)
        ps = [SPAWN.Process(target=_increment, args=(url, name, key, 40)) for _ in range(3)]
        for p in ps:
            p.start()
        for p in ps:
            p.join(60)
        assert int(redis_py.Redis.from_url(url).get(key)) == 120

    def test_fencing_tokens_increase(self, r):
        lock = r.Lock()
        tokens = []
        for _ in range(3):
            with lock:
                tokens.append(lock.fencing_token)
        assert tokens == sorted(tokens) and len(set(tokens)) == 3
        assert lock.fencing_token is None
        assert lock.statistics().fencing_token == tokens[-1]

    def test_waiter_is_woken_by_release_not_by_the_lease(self, r):
        lock = r.Lock()  # 10 s lease: a waiter that slept until it ran out would be late
        lock.acquire()
        got = threading.Event()
        t = threading.Thread(target=lambda: lock.acquire(timeout=20) and got.set())
        t.start()
        time.sleep(0.3)
        lock.release()
        assert got.wait(3)
        t.join()

    def test_lock_is_renewed_while_held(self, short):
        lock = short.Lock()
        with lock:
            time.sleep(3 * LEASE)  # three leases: only renewal keeps it
            assert lock.owner is not None and str(os.getpid()) in lock.owner
        assert not lock.locked()


class TestSemaphoreAndEvent:
    def test_semaphore_bounds_holders(self, r):
        s = r.Semaphore(2)
        assert s.acquire() and s.acquire()
        assert s.get_value() == 0
        assert not s.acquire(timeout=0.2)
        assert not s.acquire(block=False)
        got = threading.Event()
        t = threading.Thread(target=lambda: s.acquire(timeout=10) and got.set())
        t.start()
        time.sleep(0.2)
        s.release()
        assert got.wait(3)
        t.join()
        s.release()
        with pytest.raises(ValueError):
            s.release()  # this thread holds no more permits

    def test_event(self, r):
        e = r.Event()
        assert not e.wait(0.1)
        woken: list[bool] = []
        ts = [threading.Thread(target=lambda: woken.append(e.wait(10))) for _ in range(3)]
        for t in ts:
            t.start()
        time.sleep(0.2)
        e.set()
        for t in ts:
            t.join(5)
        assert woken == [True] * 3 and e.is_set()
        e.clear()
        assert not e.is_set()


class TestConnect:
    def test_local_is_the_default(self):
        assert connect().Queue is interlock.Queue
        assert connect("local://").Lock is interlock.Lock

    def test_same_url_same_backend(self, url):
        assert connect(url) is connect(url)

    def test_bad_url(self):
        with pytest.raises(ValueError):
            connect("mqtt://x")


# ================================================================ part 2: Redis only

class TestFailures:
    def test_killed_consumer_messages_are_redelivered(self, url, short):
        """A JoinableQueue consumer takes 5 of 10 and is SIGKILLed before
        task_done: all 10 are delivered again or still, none lost."""
        name = uname()
        q = short.JoinableQueue(name=name)
        q.put_many(range(10))
        ready = SPAWN.Event()
        p = SPAWN.Process(target=_take_and_hang, args=(url, name, 5, True, ready))
        p.start()
        assert ready.wait(30)
        assert q.qsize() == 5 and q.unfinished_tasks == 10
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        got = []
        while len(got) < 10:
            got += q.get_many(timeout=10 * LEASE)
        assert sorted(got) == list(range(10))  # 5 fresh, then the dead one's 5 again
        for _ in got:
            q.task_done()
        assert q.join(timeout=5)
        assert q.statistics().pending == 0

    def test_killed_plain_consumer_item_is_redelivered(self, url, short):
        name = uname()
        q = short.Queue(name=name)
        q.put_many(["held", "next"])
        ready = SPAWN.Event()
        p = SPAWN.Process(target=_take_and_hang, args=(url, name, 1, False, ready))
        p.start()
        assert ready.wait(30)
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        # "next" at once; "held" once the dead consumer's heartbeat has run out
        assert sorted([q.get(timeout=10 * LEASE), q.get(timeout=10 * LEASE)]) == ["held", "next"]

    def test_clean_exit_acknowledges(self, url, r):
        """A consumer that took an item and exited normally processed it:
        nothing comes back."""
        name = uname()
        q = r.Queue(name=name)
        q.put_many(["taken", "left"])
        p = SPAWN.Process(target=_take_one_and_exit, args=(url, name))
        p.start()
        p.join(30)
        assert p.exitcode == 0
        assert q.get(timeout=5) == "left"
        with pytest.raises(queue.Empty):
            q.get(timeout=0.3)
        # Both acknowledged: the child's at its clean exit (its Queue object
        # was already garbage, but the process's consumer is not), "left" by
        # our second get.  (Before consumers were per process, the child's
        # item stayed pending until its heartbeat ran out, and came back.)
        assert q.statistics().unfinished == 0

    def test_paused_holder_is_fenced_off(self, url, short):
        """The holder is SIGSTOPped past its lease; another takes the lock
        and writes; the first wakes, believes it still holds the lock, and
        its write is refused by its stale fencing token."""
        name = uname()
        c = redis_py.Redis.from_url(url)
        lock = short.Lock(name=name)
        report = SPAWN.Queue()
        p = SPAWN.Process(target=_hold_then_write, args=(url, name, report))
        p.start()
        what, old = report.get(timeout=30)
        assert what == "acquired"
        os.kill(p.pid, signal.SIGSTOP)
        try:
            with pytest.warns(OwnerDiedWarning, match="lease"):
                assert lock.acquire(timeout=10 * LEASE)
            new = lock.fencing_token
            assert new > old
            assert _fenced_write(c, name, new, "new owner") == 1
        finally:
            os.kill(p.pid, signal.SIGCONT)
        assert report.get(timeout=30) == ("write", 0)  # refused
        assert report.get(timeout=30) == ("release", "LeaseExpired")
        p.join(30)
        assert c.get(f"{name}:value") == b"new owner"
        lock.release()

    def test_dead_holder_lock_is_taken_over(self, url, short):
        name = uname()
        lock = short.Lock(name=name, on_owner_death="ignore")
        ready = SPAWN.Event()
        p = SPAWN.Process(target=_hold_forever, args=(url, name, ready))
        p.start()
        assert ready.wait(30)
        assert not lock.acquire(timeout=0.1)
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        t = time.monotonic()
        assert lock.acquire(timeout=10 * LEASE)
        assert time.monotonic() - t < 5 * LEASE
        assert lock.statistics().owner_deaths == 1
        lock.release()

    def test_server_restart_is_a_clear_error(self):
        srv = RedisServer()
        try:
            b = connect(srv.url)
            q = b.Queue()
            q.put_many(range(5))
            lock = b.Lock()
            blocked: list[BaseException] = []
            other = b.Queue()

            def wait():
                try:
                    other.get(timeout=30)
                except BaseException as e:
                    blocked.append(e)

            t = threading.Thread(target=wait)
            t.start()
            time.sleep(0.3)
            srv.restart()  # no persistence: everything is gone
            t.join(10)
            assert len(blocked) == 1 and isinstance(blocked[0], ConnectionLost)
            # Never "empty": the queue's contents were lost, and it says so.
            for _ in range(3):
                try:
                    q.get(timeout=1)
                except StateLost as e:
                    assert "restarted" in str(e)
                    break
                except ConnectionLost:
                    continue  # a pooled connection from before the restart
            else:
                pytest.fail("no StateLost after a restart without persistence")
            with pytest.raises(StateLost):
                lock.acquire(timeout=1)
            with pytest.raises(StateLost):
                q.qsize()
        finally:
            srv.stop()

    def test_unreachable_server_fails_within_the_timeout(self):
        url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
        t = time.monotonic()
        with pytest.raises(ConnectionLost):
            connect(url, connect_timeout=1)
        b = connect(url, connect_timeout=1, check=False)
        with pytest.raises(ConnectionLost):
            b.Queue()
        assert time.monotonic() - t < 3
        # A server that accepts connections and never answers: the reply is
        # due within lease + connect_timeout + 1 s, then ConnectionLost.
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        try:
            port = silent.getsockname()[1]
            t = time.monotonic()
            with pytest.raises(ConnectionLost):
                connect(f"redis://127.0.0.1:{port}/0", lease=0.5, connect_timeout=0.5)
            assert time.monotonic() - t < 5
        finally:
            silent.close()


def test_ordered_takes_a_redis_lock_and_a_local_lock_of_one_name(r):
    """ordered() de-duplicated by name: of a shared-memory lock and a Redis
    lock both called "x", only one was taken.  They are two locks."""
    import interlock

    name = f"ord-{uuid.uuid4().hex[:8]}"
    rl = r.Lock(name=name)
    local = interlock.Lock(name=name)
    try:
        with interlock.ordered(rl, local, rl) as got:
            assert len(got) == 2
            assert local.locked() and rl.locked()
        assert not local.locked() and not rl.locked()
    finally:
        local.detach()
        rl.unlink()


def test_lockdep_sees_redis_locks_and_local_ones(r):
    """Lock-order validation covers Redis locks too, in the same graph as the
    local ones: ABBA between a Redis lock and a shared-memory lock is
    reported; a Redis lock and a local lock of the same name are two classes."""
    import warnings

    import interlock
    from interlock import lockdep

    lockdep.reset()
    lockdep.enable()
    try:
        tag = uuid.uuid4().hex[:8]
        rl = r.Lock(name=f"ld-{tag}")
        local = interlock.Lock(name=f"ld-{tag}")  # same name, other backend
        with rl, local:  # not re-entry: two different locks
            pass
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            with local, rl:
                pass
        msgs = [str(x.message) for x in w if issubclass(x.category, lockdep.LockOrderWarning)]
        assert msgs and f"redis:ld-{tag}" in msgs[0] and "possible deadlock" in msgs[0]
        local.detach()
        rl.unlink()
    finally:
        lockdep.disable()
        lockdep.reset()
        lockdep.close()
