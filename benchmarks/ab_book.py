"""The book kernel of this tree against the one of a git revision, interleaved in one process.

    python benchmarks/ab_book.py [--against REV] [--stream synthetic|itch|market|all]
                                 [--analytics] [--rounds R]

This machine's speed drifts by up to 2x within minutes, so two benchmark runs
taken one after the other say little about a change of a few percent. Here
both kernels run in one process pinned to one CPU, alternately, over the
same stream: the revision's ``shmengine`` package is exported with ``git
archive`` into a temporary directory as ``shmengine_base`` (the compiled C
modules are taken from this tree). Each round runs each kernel once over the
stream from a fresh book, in batches of 1024 into a 2**16-slot result
ring, as ``bench_book.py`` does, with the state's pages touched first.
Printed: CPU ns per event of each (median and min over the rounds after a
warm-up) and the median over rounds of the ratio this tree / base, the figure
to quote. Both kernels must write the same number of results and count the
same, or it stops.

With ``--warm W`` (the default 2**21) each run first feeds the fresh book
the W events before the stream, untimed, so that the timed events meet
books, order map and caches as a running worker's do (full ladders, ids
spread over the map), not a book filling up from empty. The ITCH stream is
not made longer: at most its first half warms.

Streams: ``synthetic`` is bench_book.py's (2**21 events, 64 symbols, 4
venues); ``itch`` is bench_itch.py's ITCH file parsed to events (6,000,000
order messages, 500 symbols, one venue; written to /tmp once); ``market``
is bench_analytics.py's (the engine's synthetic market, 2**21 events, 1000
symbols, 4 venues). With ``--analytics`` each kernel also applies every
built-in analytic to its results (the engine's defaults), as a worker with
analytics does.
"""
import argparse
import glob
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from numba import njit

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from shmengine.layout import EVENT, RESULT  # noqa: E402

from bench_book import prefault  # noqa: E402  (this folder)

BATCH = 1024
RING = 1 << 16


def export(rev, into):
    """The package at rev as ``into/shmengine_base``."""
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev, "shmengine"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    base = os.path.join(into, "shmengine_base")
    os.rename(os.path.join(into, "shmengine"), base)
    for lib in glob.glob(os.path.join(ROOT, "shmengine", "*.so")):
        shutil.copy(lib, base)
    sys.path.insert(0, into)


def fresh_state(package, n_symbols, n_venues, with_analytics, max_orders):
    """A package's fresh kernel state, pages touched: (book, analytics or None, counters)."""
    book = importlib.import_module(package + ".book")
    analytics = importlib.import_module(package + ".analytics")
    owned = np.arange(n_symbols)
    ana = (analytics.new_analytics(owned, n_venues, n_symbols, analytics.make_params())
           if with_analytics else None)
    state = book.new_book(owned, n_venues, n_symbols, max_orders=max_orders)
    prefault(state, ana or ())
    return state, ana, np.zeros(book.N_COUNTERS, np.int64)


def runner(package, with_analytics, max_orders):
    """A compiled loop of the package's kernel over a whole stream, from a fresh state."""
    book = importlib.import_module(package + ".book")
    layout = importlib.import_module(package + ".layout")
    process = book.process

    @njit(_nrt=False)
    def run_kernel(events, n, state, ana, results, bars, signals, counters):
        """``ana`` None: books only (a separate compilation)."""
        mask = results.shape[0] - 1
        written = 0
        for start in range(0, n, BATCH):
            written += process(events, start, min(BATCH, n - start), (1 << 62) - 1, state,
                               results, written, mask, 0, counters, ana, bars, signals)
        return written

    def run_all(stream, results, warm):
        events = stream[0]
        state, ana, counters = fresh_state(package, *stream[1:], with_analytics, max_orders)
        bars, signals = ((results.view(layout.BAR_RECORD), results.view(layout.SIGNAL_RECORD))
                         if with_analytics else (None, None))
        run_kernel(events[:warm], warm, state, ana, results, bars, signals, counters)
        timed = events[warm:]
        cpu = time.thread_time()
        written = run_kernel(timed, len(timed), state, ana, results, bars, signals, counters)
        return time.thread_time() - cpu, (written, counters.tolist())
    return run_all


def synthetic_stream(warm):
    import bench_book
    return bench_book.make_stream(warm + (1 << 21), 64, 4), 64, 4


def itch_stream(warm):
    from shmengine import itch
    from shmengine.itch_writer import MARKET_DATE_NS, synthetic_itch
    path = "/tmp/shmengine_itch_6000000_500_1.itch"  # bench_itch.py's default file
    if not os.path.exists(path):
        synthetic_itch(path + ".part", 6_000_000, 500, 1)
        os.replace(path + ".part", path)
    buf = np.fromfile(path, np.uint8)
    locate_map, names, n_names = itch._new_symbol_map()
    counts = np.zeros(itch.N_COUNTS, np.int64)
    events = np.zeros(6_000_100, EVENT)
    _, k = itch.parse(buf, 0, buf.shape[0], locate_map, names, n_names, events, 0,
                      events.shape[0], counts, MARKET_DATE_NS)
    return events[:k], int(n_names[0]), 1


def market_stream(warm):
    from shmengine.market import new_market
    return new_market(1000, 4, seed=1).generate(warm + (1 << 21)), 1000, 4


def compare(name, stream, kits, rounds, warm):
    warm = min(warm, len(stream[0]) // 2)  # the ITCH file is not made longer
    timed = len(stream[0]) - warm
    times = {label: [] for label in kits}
    for r in range(rounds + 1):
        outcome = {}
        for label, run_all in kits.items():
            cpu, outcome[label] = run_all(stream, np.zeros(RING, RESULT), warm)
            if r:
                times[label].append(cpu / timed * 1e9)
        if len(set(map(str, outcome.values()))) != 1:
            sys.exit(f"{name}: the kernels disagree: {outcome}")
    tree, base = np.array(times["tree"]), np.array(times["base"])
    print(f"{name:<10} {timed:>10,} {np.median(base):8.1f} {base.min():8.1f} "
          f"{np.median(tree):8.1f} {tree.min():8.1f} {np.median(tree / base):8.3f}")


def kernel_arguments(parser, stream):
    """The options that choose the kernels and the stream (default ``stream``)."""
    parser.add_argument("--against", default="HEAD", help="git revision (default HEAD)")
    parser.add_argument("--stream", choices=("synthetic", "itch", "market", "all"),
                        default=stream)
    parser.add_argument("--analytics", action="store_true",
                        help="apply the built-in analytics too")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    kernel_arguments(parser, "all")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--warm", type=int, default=1 << 21,
                        help="events fed to each fresh book untimed before the timed ones "
                             "(default 2**21; 0 times a book filling up from empty)")
    parser.add_argument("--max-orders", type=int, default=1 << 20,
                        help="live orders the book holds (default 2**20, as an engine's "
                             "worker unless it owns over 4096 (symbol, venue) pairs)")
    parser.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)),
                        help="CPU to pin to (default: the highest)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    with tempfile.TemporaryDirectory(prefix="shmengine_ab_") as tmp:
        export(args.against, tmp)
        kits = {"base": runner("shmengine_base", args.analytics, args.max_orders),
                "tree": runner("shmengine", args.analytics, args.max_orders)}
        streams = {"synthetic": synthetic_stream, "itch": itch_stream, "market": market_stream}
        chosen = list(streams) if args.stream == "all" else [args.stream]
        what = "books and analytics" if args.analytics else "books"
        print(f"this tree against {args.against}, {what}, CPU ns per event, {args.rounds} "
              f"rounds pinned to CPU {args.cpu}")
        print(f"{'stream':<10} {'events':>10} {'base med':>8} {'min':>8} {'tree med':>8} "
              f"{'min':>8} {'tree/base':>8}")
        for name in chosen:
            compare(name, streams[name](args.warm), kits, args.rounds, args.warm)


if __name__ == "__main__":
    main()
