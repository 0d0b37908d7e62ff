"""Events per second of the synthetic market generator, on one core.

Writes into a ring of EVENT slots as the feed does: either the whole run in one
kernel call, or in chunks called from Python (which adds the call overhead).
Each figure is the median of several timed runs after a warm-up run, by the
wall clock and by the thread's CPU time (which leaves out time the scheduler
gave to other processes, so it is the steadier figure on a busy machine).

    python benchmarks/bench_market.py
    python benchmarks/bench_market.py --config 1000x8 --events 5000000 --chunk 4096
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from shmengine import layout  # noqa: E402
from shmengine.market import generate, new_market  # noqa: E402

DEFAULT_CONFIGS = ("20x4", "1000x4", "1000x8", "10000x8")


def run(m, ring, n, chunk):
    args = m.kernel_args()
    mask = len(ring) - 1
    position = 0
    wall = time.perf_counter()
    cpu = time.thread_time()
    while position < n:
        k = min(chunk, n - position)
        generate(*args, ring, position, mask, k, position, 0)
        position += k
    return time.perf_counter() - wall, time.thread_time() - cpu


def bench(n_symbols, n_venues, n, chunk, repeat, ring_size, seed):
    m = new_market(n_symbols, n_venues, seed)
    ring = np.zeros(ring_size, layout.EVENT)
    run(m, ring, n, chunk)  # compile, fill the books, warm the caches
    times = [run(m, ring, n, chunk) for _ in range(repeat)]
    wall = statistics.median(n / w for w, _ in times)
    cpu = statistics.median(n / c for _, c in times)
    best = max(n / w for w, _ in times)
    return wall, cpu, best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append",
                        help="SYMBOLSxVENUES, repeatable "
                             "(default: %s)" % " ".join(DEFAULT_CONFIGS))
    parser.add_argument("--events", type=int, default=3_000_000, help="events per timed run")
    parser.add_argument("--chunk", type=int, default=0,
                        help="events per kernel call (default: the whole run in one call)")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per configuration")
    parser.add_argument("--ring", type=int, default=1 << 16, help="ring slots (power of two)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.ring <= 0 or args.ring & (args.ring - 1):
        parser.error("--ring must be a power of two")
    chunk = args.chunk or args.events
    print(f"{args.events:,} events per run, {args.repeat} runs after a warm-up, "
          f"{'one call' if chunk >= args.events else f'{chunk} events per call'}")
    print(f"{'config':>10} {'wall M ev/s':>12} {'cpu M ev/s':>11} {'best wall':>10} "
          f"{'wall ns/event':>14}")
    for config in args.config or DEFAULT_CONFIGS:
        try:
            n_symbols, n_venues = (int(x) for x in config.lower().split("x"))
        except ValueError:
            parser.error(f"--config {config!r}: expected SYMBOLSxVENUES, e.g. 1000x8")
        wall, cpu, best = bench(n_symbols, n_venues, args.events, chunk, args.repeat, args.ring,
                                args.seed)
        print(f"{config:>10} {wall / 1e6:12.2f} {cpu / 1e6:11.2f} {best / 1e6:10.2f} "
              f"{1e9 / wall:14.1f}")


if __name__ == "__main__":
    main()
