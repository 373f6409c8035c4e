"""Producer and consumer, the lecture's example, with an interlock Queue.

    Process A finds the primes in a range of numbers and puts them into a
    queue; process B takes them out and prints them, ten per line.

Run it:   python examples/primes.py [STOP]      (primes below STOP, default 10000)
The full demo, with options and checks:   python -m interlock demo primes --help
"""
import multiprocessing
import sys

import interlock


def is_prime(n):
    """Is n a prime?  Try every odd divisor up to its square root."""
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    d = 3
    while d * d <= n:
        if n % d == 0:
            return False
        d += 2
    return True


def find_primes(queue, start, stop):
    """Process A, the producer."""
    for n in range(start, stop):
        if is_prime(n):
            # put() copies the number into shared memory.  If the queue
            # already holds `maxsize` items, it waits until B takes some.
            queue.put(n)


def print_primes(queue):
    """Process B, the consumer."""
    batch = []
    # Iterating a queue calls get() until the queue is closed AND empty:
    # B never misses a prime that A put before the close.
    for prime in queue:
        batch.append(prime)
        if len(batch) == 10:
            print("10 primes:", *batch, flush=True)
            batch = []
    if batch:  # the last, shorter line
        print(f"{len(batch)} primes:", *batch, flush=True)


if __name__ == "__main__":  # needed: with "spawn", children import this file
    stop = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000

    # The queue lives in shared memory (a file in /dev/shm).  Passing it to a
    # Process sends only its name; the child opens the same memory.
    queue = interlock.Queue(maxsize=100)
    print(f"queue {queue.name}: A finds the primes below {stop}, B prints them", flush=True)

    a = multiprocessing.Process(target=find_primes, args=(queue, 2, stop))
    b = multiprocessing.Process(target=print_primes, args=(queue,))
    a.start()
    b.start()

    a.join()        # A has put every prime...
    queue.close()   # ...so tell B that nothing more is coming.
    b.join()        # B prints what is left in the queue, then stops.

    # We are the last process using the queue: detaching frees the memory
    # and removes the file from /dev/shm.
    queue.detach()
