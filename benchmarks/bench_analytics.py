"""Worker cost per event with every built-in analytic on, beside the books alone.

    python benchmarks/bench_analytics.py [--events N] [--symbols S] [--venues V] [--runs R]

The synthetic market's events (the engine's default source) are laid in an
event ring. Each run first feeds its fresh state the --warm events before
them, untimed, so that the timed events meet full books, as a running
worker's do. "books" runs the book kernel over them in batches of 1024,
writing results into a result ring, as a worker without analytics does.
"analytics" runs the same kernel applying the analytics to each result as it
writes it, as a worker with analytics does
(bars 1s and 1m, VWAP, OFI, realized volatility, market quality, signals:
the engine's defaults). Runs alternate between the two in one process, each
from a fresh state sized as a worker's and with its pages touched (as a
running worker's are), pinned to one CPU; figures are CPU time per event, medians
over the runs, and the median of the ratios of neighbouring runs.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from shmengine import analytics  # noqa: E402
from shmengine.book import N_COUNTERS, new_book  # noqa: E402
from shmengine.layout import BAR_RECORD, RESULT, SIGNAL_RECORD  # noqa: E402
from shmengine.market import new_market  # noqa: E402
from shmengine.process import DEFAULT_BOOK_ORDERS  # noqa: E402

from bench_book import event_ring, prefault, run_kernel  # noqa: E402  (this folder)

RING = 1 << 13  # result ring slots, as the engine's default


def _fresh(n_symbols, n_venues):
    owned = np.arange(n_symbols)
    book = new_book(owned, n_venues, n_symbols,  # sized as a worker sizes it
                    max_orders=max(64 * n_symbols * n_venues, DEFAULT_BOOK_ORDERS))
    ana = analytics.new_analytics(owned, n_venues, n_symbols, analytics.make_params())
    prefault(book, ana)
    return book, ana


def run_once(kind, warm, ring, n_events, n_symbols, n_venues):
    """(CPU seconds, records) of ``kind`` over the ring's first n_events, after
    the warm-up events (a ring, or None) went through the fresh state untimed."""
    book, ana = _fresh(n_symbols, n_venues)
    out = np.zeros(RING, RESULT)
    counters = np.zeros(N_COUNTERS, np.int64)
    if kind == "books":
        args = (book, out, counters, None, None, None)
    else:
        args = (book, out, counters, ana, out.view(BAR_RECORD), out.view(SIGNAL_RECORD))
    if warm is not None:
        run_kernel(warm[0], warm[1], *args)
    t = time.thread_time()
    written = run_kernel(ring, n_events, *args)
    return time.thread_time() - t, written


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1 << 21)
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--venues", type=int, default=4)
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--warm", type=int, default=1 << 21,
                        help="events fed to each fresh state untimed before the timed ones, "
                             "so that they meet full books as a running worker's do (default "
                             "2**21; 0 times books filling up from empty)")
    parser.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)),
                        help="CPU to pin to (default: the highest)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    market = new_market(args.symbols, args.venues, seed=1)
    warm = (event_ring(market.generate(args.warm)), args.warm) if args.warm else None
    ring = event_ring(market.generate(args.events))
    for kind in ("books", "analytics"):  # compile or load
        run_once(kind, None, ring, min(args.events, 1 << 16), args.symbols, args.venues)
    times = {"books": [], "analytics": []}
    records = {}
    for _ in range(args.runs):
        for kind in times:
            cpu, records[kind] = run_once(kind, warm, ring, args.events, args.symbols,
                                          args.venues)
            times[kind].append(cpu)
    print(f"{args.events:,} synthetic events after {args.warm:,} untimed, {args.symbols} "
          f"symbols x {args.venues} venues, median of {args.runs} interleaved runs (CPU time)")
    print(f"{'':>10} {'ns/event':>9} {'M events/s':>11} {'records':>11}")
    med = {k: float(np.median(v)) for k, v in times.items()}
    for kind in times:
        ns = med[kind] / args.events * 1e9
        print(f"{kind:>10} {ns:9.1f} {args.events / med[kind] / 1e6:11.2f} {records[kind]:11,}")
    ratios = np.array(times["analytics"]) / np.array(times["books"])
    print(f"analytics / books: median of per-pair ratios {np.median(ratios):.3f} "
          f"(range {ratios.min():.3f}..{ratios.max():.3f}); ratio of medians "
          f"{med['analytics'] / med['books']:.3f}")


if __name__ == "__main__":
    main()
