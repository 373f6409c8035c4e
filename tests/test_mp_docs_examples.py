"""The multiprocessing documentation's examples of queues, locks, shared
values and pools, with the import swapped for interlock (issue 10).

Each program below re-tells one of the documentation's examples in its own
words ("Exchanging objects between processes", "Synchronization between
processes", "Sharing state between processes", the ``Pool`` initializer
pattern, the task/done queues with ``"STOP"`` sentinels from the
"Examples" section, a ``JoinableQueue`` worker pool).  It is written
against the ``multiprocessing`` API and imports ``mp`` from
tests/_mp_compat.py, where ``Queue``, ``Lock``, ``Value``, ... are
interlock's and ``Process``/``Pool`` are multiprocessing's: the drop-in
promise, checked.

Each runs as its own interpreter (``spawn`` and ``forkserver`` need a real
``__main__`` file) under fork, spawn and forkserver, with a timeout, and the
test asserts on what it printed.  Examples that fail because of an issue-10
gap are listed in tests/compat_table.py as ``"example:<name>"`` and are
strict xfails.  The fork runs are the default; spawn and forkserver (slower:
a fresh interpreter per child) run under ``stress``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from compat_table import DIFFERENCES
from conftest import OUR_PIDS

TESTS = Path(__file__).resolve().parent

PRELUDE = """\
import sys
from _mp_compat import mp
"""

#: name -> (program, expected stdout lines, compared as a sorted list when
#: the order between processes is not defined, else as a list)
EXAMPLES: dict[str, tuple[str, list[str], bool]] = {}


def example(name: str, expected: list[str], *, ordered: bool = True):
    def register(program: str) -> str:
        EXAMPLES[name] = (PRELUDE + textwrap.dedent(program), expected, ordered)
        return program
    return register


# "Exchanging objects between processes": a child sends a list through a Queue.
example("queue_exchange", ["[7, None, 'spam']"])("""
    def child(q):
        q.put([7, None, 'spam'])

    if __name__ == '__main__':
        mp.set_start_method(sys.argv[1])
        q = mp.Queue()
        p = mp.Process(target=child, args=(q,))
        p.start()
        print(q.get(timeout=30))
        p.join()
""")

# "Synchronization between processes": a Lock keeps the lines whole.
example("lock_print", [f"worker {i} says hello" for i in range(8)], ordered=False)("""
    def greet(lock, i):
        with lock:
            sys.stdout.write(f'worker {i} ')
            sys.stdout.flush()
            sys.stdout.write('says hello\\n')
            sys.stdout.flush()

    if __name__ == '__main__':
        mp.set_start_method(sys.argv[1])
        lock = mp.Lock()
        procs = [mp.Process(target=greet, args=(lock, i)) for i in range(8)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
""")

# "Sharing state between processes": a Value and an Array changed by a child.
example("shared_state", ["2.5", "[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]"])("""
    def change(num, arr):
        num.value = 2.5
        for i in range(len(arr)):
            arr[i] = -arr[i]

    if __name__ == '__main__':
        mp.set_start_method(sys.argv[1])
        num = mp.Value('d', 0.0)
        arr = mp.Array('i', range(10))
        p = mp.Process(target=change, args=(num, arr))
        p.start()
        p.join()
        print(num.value)
        print(arr[:])
""")

# Value.get_lock(): several processes add to one counter without losing updates.
example("value_get_lock", ["4000"])("""
    def add(counter, n):
        for _ in range(n):
            with counter.get_lock():
                counter.value += 1

    if __name__ == '__main__':
        mp.set_start_method(sys.argv[1])
        counter = mp.Value('i', 0)
        procs = [mp.Process(target=add, args=(counter, 1000)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        print(counter.value)
""")

# Pool workers get a lock and a shared value through initializer/initargs.
example("pool_initializer", ["sum of squares 285", "calls 10"])("""
    def setup(lock, calls):
        global LOCK, CALLS
        LOCK, CALLS = lock, calls

    def square(x):
        with LOCK:
            CALLS.value += 1
        return x * x

    if __name__ == '__main__':
        mp.set_start_method(sys.argv[1])
        lock = mp.Lock()
        calls = mp.Value('i', 0, lock=False)
        with mp.Pool(3, initializer=setup, initargs=(lock, calls)) as pool:
            print('sum of squares', sum(pool.map(square, range(10))))
        print('calls', calls.value)
""")

# The "Examples" section's task queue: workers read (function, args) tasks
# until a "STOP" sentinel, and answer on a done queue.
example("task_queue_stop", [f"{op} {a} {b} = {r}" for op, a, b, r in
                            [(op, a, b, a * b if op == "mul" else a + b)
                             for op in ("mul", "plus") for a in range(5) for b in (3, 7)]],
        ordered=False)("""
    import operator

    OPS = {'mul': operator.mul, 'plus': operator.add}

    def worker(tasks, done):
        for op, a, b in iter(tasks.get, 'STOP'):
            done.put(f'{op} {a} {b} = {OPS[op](a, b)}')

    if __name__ == '__main__':
        mp.set_start_method(sys.argv[1])
        tasks, done = mp.Queue(), mp.Queue()
        jobs = [(op, a, b) for op in OPS for a in range(5) for b in (3, 7)]
        for job in jobs:
            tasks.put(job)
        workers = [mp.Process(target=worker, args=(tasks, done)) for _ in range(3)]
        for w in workers:
            w.start()
        for _ in jobs:
            print(done.get(timeout=30))
        for _ in workers:
            tasks.put('STOP')
        for w in workers:
            w.join()
""")

# JoinableQueue: daemon workers call task_done(); the main process join()s.
example("joinable_queue", ["processed 30", "total 435"])("""
    def consume(jobs, results):
        while True:
            n = jobs.get()
            results.put(n)
            jobs.task_done()

    if __name__ == '__main__':
        mp.set_start_method(sys.argv[1])
        jobs, results = mp.JoinableQueue(), mp.Queue()
        for _ in range(2):
            mp.Process(target=consume, args=(jobs, results), daemon=True).start()
        for n in range(30):
            jobs.put(n)
        jobs.join()
        got = [results.get(timeout=30) for _ in range(30)]
        print('processed', len(got))
        print('total', sum(got))
""")

# SimpleQueue between a parent and a child, both ways.
example("simple_queue_ping", ["pong 3"])("""
    def echo(inbox, outbox):
        outbox.put(('pong', inbox.get()))

    if __name__ == '__main__':
        mp.set_start_method(sys.argv[1])
        inbox, outbox = mp.SimpleQueue(), mp.SimpleQueue()
        p = mp.Process(target=echo, args=(inbox, outbox))
        p.start()
        inbox.put(3)
        word, n = outbox.get()
        print(word, n)
        p.join()
""")

# A Manager-free Pool.apply_async with a queue argument (interlock queues
# pickle by name, so they may be passed to pool workers directly).
example("pool_queue_argument", ["0 1 4 9 16"])("""
    def report(q, x):
        q.put(x * x)

    if __name__ == '__main__':
        mp.set_start_method(sys.argv[1])
        q = mp.Queue()
        with mp.Pool(2) as pool:
            for r in [pool.apply_async(report, (q, x)) for x in range(5)]:
                r.get(timeout=30)
        print(' '.join(str(v) for v in sorted(q.get(timeout=30) for _ in range(5))))
""")


def _left_by(pid: int) -> list[str]:
    """interlock's anonymous segments made by ``pid`` still in /dev/shm."""
    return [e for e in os.listdir("/dev/shm") if f".anon-{pid}-" in e]


def _params():
    for name in EXAMPLES:
        for method in ("fork", "spawn", "forkserver"):
            marks = []
            key = f"example:{name}"
            if key in DIFFERENCES:
                marks.append(pytest.mark.xfail(strict=True,
                                               reason=f"issue 10: {DIFFERENCES[key][1]}"))
            if method != "fork":
                marks.append(pytest.mark.stress)
            yield pytest.param(name, method, marks=marks, id=f"{name}-{method}")


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("name", "method"), list(_params()))
def test_example(name, method, tmp_path):
    program, expected, ordered = EXAMPLES[name]
    path = tmp_path / f"{name}.py"
    path.write_text(program)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(TESTS), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, str(path), method], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    OUR_PIDS.add(proc.pid)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{name} under {method} hung (60 s):\n{out}\n{err}")
    assert proc.returncode == 0, f"{name} under {method} exited {proc.returncode}:\n{err}"
    lines = out.splitlines()
    assert (lines if ordered else sorted(lines)) == (expected if ordered else sorted(expected)), err
    left = _left_by(proc.pid)
    for entry in left:  # remove before failing: the conftest checks /dev/shm too
        os.unlink(f"/dev/shm/{entry}")
    assert not left, f"{name} left its segments in /dev/shm: {left}"


def test_examples_cover_the_issue():
    """Each primitive family the issue names is used by some example."""
    text = "\n".join(p for p, _, _ in EXAMPLES.values())
    for api in ("mp.Queue(", "mp.JoinableQueue(", "mp.SimpleQueue(", "mp.Lock(", "mp.Value(",
                "mp.Array(", "mp.Pool(", "'STOP'", "get_lock()"):
        assert api in text, api
