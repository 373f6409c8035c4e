"""Pipeline throughput for a trivial stage, against multiprocessing.Pool.imap.

Both run the same function (``x + 1``) over the same integers with the same
number of worker processes, in the same run; Pool.imap gets a good
chunksize.  Prints items per second and the ratio pipeline / Pool.

    python benchmarks/bench_pipeline.py [--items N] [--workers W] [--start-method M]
"""
from __future__ import annotations

import argparse
import multiprocessing
import time

from interlock.pipeline import Pipeline


def inc(x: int) -> int:
    return x + 1


def bench_pool(ctx, n, workers, chunksize, ordered):
    t = time.perf_counter()  # from before the workers start, as for the pipeline
    with ctx.Pool(workers) as pool:
        imap = pool.imap if ordered else pool.imap_unordered
        total = sum(imap(inc, range(n), chunksize=chunksize))
        dt = time.perf_counter() - t
    assert total == n * (n + 1) // 2
    return dt


def bench_pipeline(ctx, n, workers, chunksize, ordered):
    # Timed from the first call to the last result: starting and stopping
    # the workers included, as for Pool above.
    t = time.perf_counter()
    p = Pipeline(range(n), ordered=ordered, mp_context=ctx, progress=False)
    total = sum(p.stage(inc, workers, chunksize=chunksize))
    dt = time.perf_counter() - t
    assert total == n * (n + 1) // 2
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs")
    ap.add_argument("--start-method", default="fork")
    args = ap.parse_args()
    ctx = multiprocessing.get_context(args.start_method)
    n, w = args.items, args.workers
    print(f"{n} items, {w} workers, x + 1, start method {args.start_method}, best of {args.repeat}")
    print(f"{'runner':<34}{'chunksize':>10}{'items/s':>14}{'vs Pool':>10}")
    for ordered in (True, False):
        for chunk in (1, 64, 1024):
            pool = min(bench_pool(ctx, n if chunk > 1 else n // 10, w, chunk, ordered)
                       for _ in range(args.repeat))
            pool_rate = (n if chunk > 1 else n // 10) / pool
            pipe = min(bench_pipeline(ctx, n if chunk > 1 else n // 10, w, chunk, ordered)
                       for _ in range(args.repeat))
            pipe_rate = (n if chunk > 1 else n // 10) / pipe
            kind = "imap" if ordered else "imap_unordered"
            print(f"{'Pool.' + kind:<34}{chunk:>10}{pool_rate:>14,.0f}{'1.00x':>10}")
            print(f"{'Pipeline(ordered=' + str(ordered) + ')':<34}{chunk:>10}{pipe_rate:>14,.0f}"
                  f"{pipe_rate / pool_rate:>9.2f}x")
    print("(both timings include starting and stopping the workers; "
          "chunksize 1 runs a tenth of the items)")


if __name__ == "__main__":
    main()
