"""Events per second of the order-book kernel on plain arrays, one core.

    python benchmarks/bench_book.py [--events N] [--symbols S] [--venues V] [--runs R]

The stream is ITCH-like order flow: adds a few ticks around a drifting mid,
deletes, replaces, partial cancels and executions of live orders, and a few
non-displayed trades; each side of a venue holds some 10 to 30 levels. The
kernel runs in batches over a ring of events, as a worker does.
"""
import argparse
import os
import sys
import time

import numpy as np
from numba import njit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from shmengine.book import new_book, process  # noqa: E402
from shmengine.layout import (  # noqa: E402
    EV_ADD, EV_CANCEL, EV_DELETE, EV_EXECUTE, EV_EXECUTE_PRICE, EV_REPLACE, EV_TRADE, EVENT,
    RESULT, SIDE_ASK, SIDE_BID,
)

TICK = 100                # one cent at PRICE_SCALE 10_000
ORDERS_PER_SIDE = 40      # live orders kept per (symbol, venue, side), on average
BATCH = 1024


@njit(cache=True)
def _stream(events, n_symbols, n_venues, seed):
    """Fill events with valid order flow."""
    np.random.seed(seed)
    n = events.shape[0]
    target = n_symbols * n_venues * 2 * ORDERS_PER_SIDE
    capacity = 2 * target
    live_id = np.zeros(capacity, np.uint64)   # pool of live orders, unordered
    live_sym = np.zeros(capacity, np.int64)
    live_venue = np.zeros(capacity, np.int64)
    live_side = np.zeros(capacity, np.int64)
    live_px = np.zeros(capacity, np.int64)
    live_qty = np.zeros(capacity, np.int64)
    size = 0
    mid = np.full(n_symbols, 1_000_000, np.int64)
    next_id = 1
    ts = 34_200_000_000_000
    for i in range(n):
        ev = events[i]
        ts += 1 + np.random.randint(0, 2000)
        ev["seq"] = i
        ev["exch_ts"] = ts
        ev["recv_ts"] = ts + 5000
        if np.random.random() < 0.01:
            s = np.random.randint(0, n_symbols)
            mid[s] += TICK if np.random.random() < 0.5 else -TICK
        r = np.random.random()
        add = size == 0 or (size < capacity and r < (0.55 if size < target else 0.40))
        if add:
            s = np.random.randint(0, n_symbols)
            side = np.random.randint(0, 2)
            offset = np.random.geometric(0.35) - 1       # ticks away from the touch
            if np.random.random() < 0.1:
                offset += np.random.randint(0, 25)      # the deep book
            price = mid[s] - offset * TICK if side == SIDE_BID else mid[s] + (1 + offset) * TICK
            qty = 100 * (1 + np.random.randint(0, 10))
            live_id[size] = next_id
            live_sym[size] = s
            live_venue[size] = np.random.randint(0, n_venues)
            live_side[size] = side
            live_px[size] = price
            live_qty[size] = qty
            ev["type"] = EV_ADD
            ev["order_id"] = next_id
            ev["symbol"] = s
            ev["venue"] = live_venue[size]
            ev["side"] = side
            ev["price"] = price
            ev["qty"] = qty
            next_id += 1
            size += 1
            continue
        j = np.random.randint(0, size)
        ev["order_id"] = live_id[j]
        ev["symbol"] = live_sym[j]
        ev["venue"] = live_venue[j]
        r = np.random.random()
        gone = False
        if r < 0.55:
            ev["type"] = EV_DELETE
            gone = True
        elif r < 0.75:
            # replace: a new price near the old one, a new id
            price = live_px[j] + TICK * (np.random.randint(0, 3) - 1)
            if price <= 0:
                price = live_px[j]
            qty = 100 * (1 + np.random.randint(0, 10))
            ev["type"] = EV_REPLACE
            ev["new_order_id"] = next_id
            ev["price"] = price
            ev["qty"] = qty
            live_id[j] = next_id
            live_px[j] = price
            live_qty[j] = qty
            next_id += 1
        elif r < 0.85:
            qty = 100 * (1 + np.random.randint(0, 3))
            ev["type"] = EV_CANCEL
            ev["qty"] = qty
            live_qty[j] -= qty
            gone = live_qty[j] <= 0
        elif r < 0.96:
            qty = 100 * (1 + np.random.randint(0, 4))
            ev["type"] = EV_EXECUTE if r < 0.95 else EV_EXECUTE_PRICE
            ev["price"] = live_px[j]
            ev["qty"] = qty
            live_qty[j] -= qty
            gone = live_qty[j] <= 0
        else:
            ev["type"] = EV_TRADE
            ev["order_id"] = 0
            ev["side"] = SIDE_ASK if np.random.random() < 0.5 else SIDE_BID
            ev["price"] = mid[live_sym[j]]
            ev["qty"] = 100
        if gone:
            size -= 1
            live_id[j] = live_id[size]
            live_sym[j] = live_sym[size]
            live_venue[j] = live_venue[size]
            live_side[j] = live_side[size]
            live_px[j] = live_px[size]
            live_qty[j] = live_qty[size]


def make_stream(n_events, n_symbols, n_venues, seed=1):
    size = 1
    while size < n_events:
        size *= 2
    events = np.zeros(size, EVENT)
    _stream(events, n_symbols, n_venues, seed)
    return events


def run(events, n_symbols, n_venues, max_orders):
    """Seconds to process the whole stream on a fresh book, and the results written."""
    book = new_book(np.arange(n_symbols), n_venues, n_symbols, max_levels=64,
                    max_orders=max_orders)
    out = np.zeros(4 * BATCH, RESULT)
    counters = np.zeros(3, np.int64)
    mask = len(events) - 1
    out_mask = len(out) - 1
    written = 0
    start = time.perf_counter()
    for position in range(0, len(events), BATCH):
        written += process(events, position, BATCH, mask, book, out, written, out_mask, 0,
                           counters)
    elapsed = time.perf_counter() - start
    assert not counters.any(), counters
    return elapsed, written, book


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1 << 21)
    parser.add_argument("--symbols", type=int, default=64)
    parser.add_argument("--venues", type=int, default=4)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--max-orders", type=int, default=1 << 20)
    args = parser.parse_args()

    events = make_stream(args.events, args.symbols, args.venues)
    _, written, book = run(events, args.symbols, args.venues, args.max_orders)  # compile, warm
    levels = book.n_levels[book.n_levels > 0]
    types, counts = np.unique(events["type"], return_counts=True)
    mix = ", ".join(f"{t}:{c / len(events):.0%}" for t, c in zip(types, counts))
    print(f"{len(events)} events ({mix}), {args.symbols} symbols, {args.venues} venues, "
          f"max_orders {args.max_orders}")
    print(f"results {written / len(events):.0%} of events; levels per side "
          f"median {np.median(levels):.0f}, max {levels.max()}; "
          f"live orders {book.order_count[0]}")
    rates = [len(events) / run(events, args.symbols, args.venues, args.max_orders)[0]
             for _ in range(args.runs)]
    print(f"median {np.median(rates) / 1e6:.1f} M events/s over {args.runs} runs "
          f"(min {min(rates) / 1e6:.1f}, max {max(rates) / 1e6:.1f})")


if __name__ == "__main__":
    main()
