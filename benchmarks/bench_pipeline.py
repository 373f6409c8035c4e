"""Pipeline throughput for a trivial stage, against multiprocessing.Pool.imap.

Both run the same function (``x + 1``) over the same integers with the same
number of worker processes, in the same run; Pool.imap gets a good
chunksize.  Prints items per second and the ratio pipeline / Pool.

    python benchmarks/bench_pipeline.py [--items N] [--workers W] [--start-method M]
                                        [--quick] [--repeat N] [--json PATH]

Pool's and the pipeline's repeats are interleaved; each cell is the median
[min-max] of the repeats, the ratio pipeline / Pool is computed per repeat.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Report, report_args  # noqa: E402

from interlock.pipeline import Pipeline  # noqa: E402


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
    ap = report_args(__doc__.split("\n")[0], "a tenth of the items")
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--start-method", default="fork")
    args = ap.parse_args()
    ctx = multiprocessing.get_context(args.start_method)
    n, w = (args.items // 10 if args.quick else args.items), args.workers
    report = Report("bench_pipeline", args)
    for ordered in (True, False):
        kind = "imap" if ordered else "imap_unordered"
        for chunk in (1, 64, 1024):
            m = n if chunk > 1 else n // 10
            case = f"x + 1, {w} workers, {kind}, chunksize {chunk}"
            for _ in range(args.repeat):
                report.add(case, "Pool." + kind, "items/s",
                           m / bench_pool(ctx, m, w, chunk, ordered))
                report.add(case, f"Pipeline(ordered={ordered})", "items/s",
                           m / bench_pipeline(ctx, m, w, chunk, ordered))
            report.ratio_vs(case, f"Pipeline(ordered={ordered})", ["Pool." + kind])
            sys.stderr.write(".")
            sys.stderr.flush()
    sys.stderr.write("\n")
    report.print()
    print(f"({n} items, start method {args.start_method}; both timings include starting and "
          "stopping the workers; chunksize 1 runs a tenth of the items)")
    report.write(args.json)


if __name__ == "__main__":
    main()
