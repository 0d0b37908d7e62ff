"""Events per second of the order-book kernel on plain arrays, one core.

    python benchmarks/bench_book.py [--events N] [--symbols S] [--venues V] [--runs R]

The stream is ITCH-like order flow over S symbols on V venues. Each side of
each venue keeps some 40 live orders on 10 to 30 price levels: adds land a
few ticks from a slowly drifting mid (now and then deep in the book),
executions take the best order, deletes, partial cancels and replaces
mostly pick orders near the touch, and a few trades do not show in the book.

The kernel runs in batches of 1024, called from compiled code as a worker
calls it, over the stream laid in an event ring, writing to a 2**16-slot
result ring, pinned to one CPU. Each run starts from an empty book fed the
--warm events before the stream untimed, so that the timed events meet full
books, as a running worker's are (--warm 0: a book filling up). Rates
are events per second of the process's CPU time, median of the runs after a
warm-up (CPU time, so that other load on the machine does not count); the
wall-clock median is printed beside it.
"""
import argparse
import os
import sys
import time

import numpy as np
from numba import njit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from shmengine.book import N_COUNTERS, live_orders, new_book, process  # noqa: E402
from shmengine.layout import (  # noqa: E402
    EV_ADD, EV_CANCEL, EV_DELETE, EV_EXECUTE, EV_EXECUTE_PRICE, EV_REPLACE, EV_TRADE, EVENT,
    EVENT_TYPE_NAMES, RESULT, SIDE_BID,
)

TICK = 100           # one cent at PRICE_SCALE 10_000
ORDERS_PER_SIDE = 40  # live orders of each (symbol, venue, side), on average
SLOTS = 128          # most live orders the generator tracks per (symbol, venue, side)
BATCH = 1024
RING = 1 << 16       # result ring slots (the engine's default is 2**13; they time alike here)


@njit(cache=True)
def _pick_near_touch(px, n, side):
    """Index of the better-priced of two random orders of a side."""
    a = np.random.randint(0, n)
    b = np.random.randint(0, n)
    if side == SIDE_BID:
        return a if px[a] >= px[b] else b
    return a if px[a] <= px[b] else b


@njit(cache=True)
def _fill_stream(events, n_symbols, n_venues, seed):
    np.random.seed(seed)
    # live orders of each (symbol, venue, side), unordered
    ids = np.zeros((n_symbols, n_venues, 2, SLOTS), np.uint64)
    px = np.zeros((n_symbols, n_venues, 2, SLOTS), np.int64)
    qty = np.zeros((n_symbols, n_venues, 2, SLOTS), np.int64)
    count = np.zeros((n_symbols, n_venues, 2), np.int64)
    mid = np.full(n_symbols, 1_000_000, np.int64)
    next_id = 1
    ts = 34_200_000_000_000  # 09:30 in ns
    for i in range(events.shape[0]):
        ev = events[i]
        ts += 1 + np.random.randint(0, 2000)
        ev["seq"] = i
        ev["exch_ts"] = ts
        ev["recv_ts"] = ts + 5000
        s = np.random.randint(0, n_symbols)
        v = np.random.randint(0, n_venues)
        side = np.random.randint(0, 2)
        ev["symbol"] = s
        ev["venue"] = v
        ev["side"] = side
        if np.random.random() < 0.002:
            mid[s] += TICK if np.random.random() < 0.5 else -TICK
        n = count[s, v, side]
        book_px = px[s, v, side]
        r = np.random.random()
        if n == 0 or (n < SLOTS and r < (0.50 if n < ORDERS_PER_SIDE else 0.40)):
            ticks = np.random.geometric(0.35)  # from the mid, 1 at the touch
            if np.random.random() < 0.05:
                ticks += np.random.randint(0, 15)  # the deep book
            price = mid[s] - ticks * TICK if side == SIDE_BID else mid[s] + ticks * TICK
            size = 100 * (1 + np.random.randint(0, 10))
            ids[s, v, side, n] = next_id
            px[s, v, side, n] = price
            qty[s, v, side, n] = size
            count[s, v, side] = n + 1
            ev["type"] = EV_ADD
            ev["order_id"] = next_id
            ev["price"] = price
            ev["qty"] = size
            next_id += 1
            continue
        r = np.random.random()
        if r < 0.10:
            # executions take the best order
            j = 0
            for k in range(1, n):
                better = book_px[k] > book_px[j] if side == SIDE_BID else book_px[k] < book_px[j]
                if better:
                    j = k
            done = 100 * (1 + np.random.randint(0, 4))
            ev["type"] = EV_EXECUTE if r < 0.09 else EV_EXECUTE_PRICE
            ev["price"] = book_px[j]
        elif r < 0.13:
            ev["type"] = EV_TRADE
            ev["price"] = mid[s]
            ev["qty"] = 100
            continue
        else:
            j = _pick_near_touch(book_px, n, side)
            done = 0
        ev["order_id"] = ids[s, v, side, j]
        if r < 0.13:
            ev["qty"] = done
        elif r < 0.23:
            done = 100 * (1 + np.random.randint(0, 3))
            ev["type"] = EV_CANCEL
            ev["qty"] = done
        elif r < 0.45:
            # a new price next to the old one, a new id
            price = book_px[j] + TICK * (np.random.randint(0, 3) - 1)
            size = 100 * (1 + np.random.randint(0, 10))
            ev["type"] = EV_REPLACE
            ev["new_order_id"] = next_id
            ev["price"] = price
            ev["qty"] = size
            ids[s, v, side, j] = next_id
            px[s, v, side, j] = price
            qty[s, v, side, j] = size
            next_id += 1
            continue
        else:
            ev["type"] = EV_DELETE
            done = qty[s, v, side, j]
        qty[s, v, side, j] -= done
        if qty[s, v, side, j] <= 0:
            last = n - 1
            ids[s, v, side, j] = ids[s, v, side, last]
            px[s, v, side, j] = px[s, v, side, last]
            qty[s, v, side, j] = qty[s, v, side, last]
            count[s, v, side] = last


def event_ring(events):
    """The events laid at the start of a zeroed EVENT ring of a power-of-two size."""
    ring = np.zeros(1 << max(len(events) - 1, 0).bit_length(), EVENT)
    ring[:len(events)] = events
    return ring


def make_stream(n_events, n_symbols, n_venues, seed=1):
    events = np.zeros(n_events, EVENT)
    _fill_stream(events, n_symbols, n_venues, seed)
    return events


@njit(cache=True, _nrt=False)
def run_kernel(ring, n_events, book, out, counters, ana, bars, signals):
    """The stream already sits in the ring; the results wrap around theirs. ``ana``
    None: books only; else analytics too (``bars``/``signals`` view ``out``)."""
    mask = ring.shape[0] - 1
    out_mask = out.shape[0] - 1
    written = 0
    for start in range(0, n_events, BATCH):
        written += process(ring, start, min(BATCH, n_events - start), mask, book, out,
                           written, out_mask, 0, counters, ana, bars, signals)
    return written


def prefault(*states):
    """Touch every page of the arrays of these states, values unchanged.

    A running worker touched its arrays long ago; without this, a fresh
    state's first-touch page faults (a start-up cost: the order map alone is
    64 MB) would be timed as per-event work.
    """
    for state in states:
        for a in state:
            if isinstance(a, np.ndarray) and a.size:
                a.view(np.uint8).reshape(-1)[::4096] += 0


def run(warm, ring, n_events, n_symbols, n_venues, max_orders):
    """(cpu seconds, wall seconds, results, book) for the stream on a fresh book
    that first took the ``(ring, count)`` events of ``warm`` untimed (None: none)."""
    book = new_book(np.arange(n_symbols), n_venues, n_symbols, max_levels=64,
                    max_orders=max_orders)
    prefault(book)
    out = np.zeros(RING, RESULT)
    counters = np.zeros(N_COUNTERS, np.int64)
    if warm is not None:
        run_kernel(warm[0], warm[1], book, out, counters, None, None, None)
    cpu, wall = time.thread_time(), time.perf_counter()
    written = run_kernel(ring, n_events, book, out, counters, None, None, None)
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    assert not counters.any(), counters
    return cpu, wall, written, book


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1 << 21,
                        help="events per run (default 2**21)")
    parser.add_argument("--symbols", type=int, default=64)
    parser.add_argument("--venues", type=int, default=4)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--warm", type=int, default=1 << 21,
                        help="events fed to each fresh book untimed first (default 2**21; "
                             "0 times a book filling up from empty)")
    parser.add_argument("--max-orders", type=int, default=1 << 20,
                        help="order map capacity of the book (default 2**20, as the engine)")
    parser.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)),
                        help="CPU to pin to (default: the highest)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})

    stream = make_stream(args.warm + args.events, args.symbols, args.venues)
    warm = (event_ring(stream[:args.warm]), args.warm) if args.warm else None
    ring = event_ring(stream[args.warm:])
    events = ring[:args.events]
    _, _, written, book = run(warm, ring, args.events, args.symbols, args.venues,
                              args.max_orders)
    levels = book.n_levels[book.n_levels > 0]
    types, counts = np.unique(events["type"], return_counts=True)
    mix = ", ".join(f"{EVENT_TYPE_NAMES[t]} {c / len(events):.0%}"
                    for t, c in zip(types, counts))
    print(f"{args.events} events after {args.warm} untimed ({mix})")
    print(f"{args.symbols} symbols, {args.venues} venues, max_orders {args.max_orders}; "
          f"results {written / args.events:.0%} of events; levels per side median "
          f"{np.median(levels):.0f}, max {levels.max()}; live orders {live_orders(book)}")
    cpu, wall = [], []
    for _ in range(args.runs):
        c, w, _, _ = run(warm, ring, args.events, args.symbols, args.venues, args.max_orders)
        cpu.append(args.events / c)
        wall.append(args.events / w)
    print(f"median {np.median(cpu) / 1e6:.1f} M events/s of CPU time over {args.runs} runs "
          f"(min {min(cpu) / 1e6:.1f}, max {max(cpu) / 1e6:.1f}); "
          f"wall clock median {np.median(wall) / 1e6:.1f} M events/s")


if __name__ == "__main__":
    main()
