"""How fast a Python subscriber reads the broadcast stream, whole or filtered.

    python benchmarks/bench_subscribe.py [--symbols 1000] [--keep 10] [--repeat 7]

A broadcast ring of 65,536 RESULT records (320 bytes) over --symbols symbols
is written once; a reader then reads it from its start again and again with
``BroadcastReader.poll`` (4,096 records a call, as ``Subscription.poll``
does), in one process pinned to one CPU:

- all: every record copied out (``poll()``);
- kept: only the records of --keep symbols (``poll(symbols=..., kinds=...)``,
  what ``eng.subscribe(symbols=[...])`` does), the others looked at and left.

Printed: records of the stream gone through per second, median of the runs,
and kept / all. There is no writer: this is the reader's own cost, the
most a subscriber could follow with a core to itself.
"""
import argparse
import os
import statistics
import sys
import time
import uuid

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from shmengine import layout as L  # noqa: E402
from shmengine import shm  # noqa: E402
from shmengine.broadcast import BroadcastRing, end_write  # noqa: E402

CAPACITY = 1 << 16


def rate(reader, symbols, kinds, passes):
    """Records of the stream gone through per second over ``passes`` reads of the ring."""
    t = time.perf_counter()
    for _ in range(passes):
        reader.position = 0
        while reader.position < CAPACITY:
            reader.poll(4096, symbols, kinds)
    return passes * CAPACITY / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--keep", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--passes", type=int, default=40)
    args = ap.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    name = f"/shmengine.bench{uuid.uuid4().hex[:8]}.bcast"
    ring = BroadcastRing.create(name, CAPACITY)
    try:
        rng = np.random.default_rng(1)
        ring.slots["seq"] = np.arange(CAPACITY)
        ring.slots["symbol"] = rng.integers(0, args.symbols, CAPACITY)
        ring.slots["kind"] = rng.choice([L.RES_QUOTE] * 9 + [L.RES_TRADE], CAPACITY)
        end_write(ring.hdr64, CAPACITY)
        keep = np.zeros(args.symbols, np.bool_)
        keep[:args.keep] = True
        kinds = np.ones(256, np.bool_)
        reader = ring.reader(0)
        kept = int(keep[ring.slots["symbol"]].sum())
        rate(reader, None, None, 1)  # compiled and warm
        rate(reader, keep, kinds, 1)
        whole, some = [], []
        for _ in range(args.repeat):
            whole.append(rate(reader, None, None, args.passes))
            some.append(rate(reader, keep, kinds, args.passes))
        ratios = [b / a for a, b in zip(whole, some)]
        print(f"broadcast ring of {CAPACITY:,} records, {args.symbols} symbols; median of "
              f"{args.repeat}, one CPU")
        print(f"all records:          {statistics.median(whole) / 1e6:7.1f} M records/s")
        print(f"{args.keep} symbols kept:      {statistics.median(some) / 1e6:7.1f} M records/s "
              f"gone through ({kept:,} of them kept)")
        print(f"kept / all: {statistics.median(ratios):.2f} "
              f"(range {min(ratios):.2f}..{max(ratios):.2f})")
        reader = None
    finally:
        ring.close()
        shm.unlink(name)


if __name__ == "__main__":
    main()
