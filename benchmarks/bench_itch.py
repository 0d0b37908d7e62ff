"""Messages per second of the ITCH 5.0 parser, alone and feeding the order books, one core.

    python benchmarks/bench_itch.py [--events N] [--symbols S] [--runs R] [--cpu C]

The input is the synthetic market on one venue written once as an ITCH file in
/tmp (reused while present). The file's bytes are loaded into memory, then
each run, pinned to one CPU:

    copy          numpy copy of the file's bytes (the floor: memory bandwidth)
    parse         itch.parse over the bytes in batches of 1024 events
    book          book.process over the already parsed events (books only)
    parse+book    parse a batch, book.process it, as a feed and worker on one core would
    reader        ItchReader.read into a 4096-event array, from the page cache
                  (file reads and the Python wrapper included)

Rates are messages of the file per second of the process's CPU time, median
of the runs after a warm-up; the wall-clock median is printed beside it.
"""
import argparse
import os
import sys
import time

import numpy as np
from numba import njit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from shmengine import itch  # noqa: E402
from shmengine.book import N_COUNTERS, new_book, process  # noqa: E402
from shmengine.itch_writer import MARKET_DATE_NS, synthetic_itch  # noqa: E402
from shmengine.layout import EVENT, RESULT  # noqa: E402

BATCH = 1024
RING = 1 << 16  # result ring slots, as the engine's default ring


@njit(cache=True, _nrt=False)
def _parse_all(buf, locate_map, names, n_names, out, counts, date_ns):
    pos = 0
    events = 0
    while True:
        used, k = itch.parse(buf, pos, buf.shape[0], locate_map, names, n_names, out, 0,
                             BATCH, counts, date_ns)
        pos += used
        events += k
        if k < BATCH:
            return events


@njit(cache=True, _nrt=False)
def _parse_into(buf, locate_map, names, n_names, out, counts, date_ns):
    used, k = itch.parse(buf, 0, buf.shape[0], locate_map, names, n_names, out, 0,
                         out.shape[0], counts, date_ns)
    return k


@njit(cache=True, _nrt=False)
def _book_all(events, n, book, results, counters):
    mask = results.shape[0] - 1
    written = 0
    for start in range(0, n, BATCH):
        written += process(events, start, min(BATCH, n - start), (1 << 62) - 1, book, results,
                           written, mask, 0, counters, None, None, None)
    return written


@njit(cache=True, _nrt=False)
def _parse_book_all(buf, locate_map, names, n_names, out, counts, date_ns, book, results,
                    counters):
    mask = results.shape[0] - 1
    pos = 0
    written = 0
    while True:
        used, k = itch.parse(buf, pos, buf.shape[0], locate_map, names, n_names, out, 0,
                             BATCH, counts, date_ns)
        pos += used
        written += process(out, 0, k, BATCH - 1, book, results, written, mask, 0, counters,
                           None, None, None)
        if k < BATCH:
            return written


def _timed(fn):
    cpu, wall = time.thread_time(), time.perf_counter()
    value = fn()
    return time.thread_time() - cpu, time.perf_counter() - wall, value


def _state():
    return (*itch._new_symbol_map(), np.zeros(BATCH, EVENT), np.zeros(itch.N_COUNTS, np.int64))


def _book(n_symbols):
    return new_book(np.arange(n_symbols), 1, n_symbols), np.zeros(RING, RESULT), \
        np.zeros(N_COUNTERS, np.int64)


def _reader_all(path):
    out = np.zeros(4096, EVENT)
    n = 0
    with itch.ItchReader(path, date_ns=MARKET_DATE_NS) as reader:
        while not reader.eof:
            n += reader.read(out)
    return n


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=6_000_000)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)),
                        help="CPU to pin to (default: the highest)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})

    path = f"/tmp/shmengine_itch_{args.events}_{args.symbols}_{args.seed}.itch"
    if not os.path.exists(path):
        t = time.perf_counter()
        synthetic_itch(path + ".part", args.events, args.symbols, args.seed)
        os.replace(path + ".part", path)
        print(f"wrote {path} in {time.perf_counter() - t:.1f} s")
    buf = np.fromfile(path, np.uint8)
    copy = np.empty_like(buf)

    locate_map, names, n_names, _, counts = _state()
    parsed = np.zeros(args.events + 16, EVENT)
    n_events = _parse_into(buf, locate_map, names, n_names, parsed, counts, MARKET_DATE_NS)
    messages = int(counts[:256].sum())
    n_symbols = int(n_names[0])
    assert not counts[256:].any(), counts[256:]
    assert n_events == args.events + 6, n_events
    mix = {itch.NAME[chr(t)]: int(counts[t]) for t in np.argsort(-counts[:256]) if counts[t]}
    print(f"{path}: {buf.size / 1e6:.1f} MB, {messages} messages, {n_events} events, "
          f"{n_symbols} symbols")
    print("mix: " + ", ".join(f"{k} {v / messages:.1%}" for k, v in mix.items()))

    def parse_run():
        locate_map, names, n_names, out, counts = _state()
        return _timed(lambda: _parse_all(buf, locate_map, names, n_names, out, counts,
                                         MARKET_DATE_NS))

    def book_run():
        book, results, counters = _book(n_symbols)
        return _timed(lambda: _book_all(parsed, n_events, book, results, counters))

    def parse_book_run():
        locate_map, names, n_names, out, counts = _state()
        book, results, counters = _book(n_symbols)
        return _timed(lambda: _parse_book_all(buf, locate_map, names, n_names, out, counts,
                                              MARKET_DATE_NS, book, results, counters))

    cases = {
        "copy": lambda: _timed(lambda: np.copyto(copy, buf)),
        "parse": parse_run,
        "book": book_run,
        "parse+book": parse_book_run,
        "reader": lambda: _timed(lambda: _reader_all(path)),
    }
    for run in cases.values():  # warm-up: compile, fault the pages in
        run()
    rates = {name: ([], []) for name in cases}
    for _ in range(args.runs):
        for name, run in cases.items():
            cpu, wall, _ = run()
            rates[name][0].append(messages / cpu)
            rates[name][1].append(messages / wall)
    print(f"{'':12s} {'M msg/s CPU':>12s} {'(min..max)':>14s} {'ns/msg':>8s} "
          f"{'M msg/s wall':>13s}")
    for name, (cpu, wall) in rates.items():
        med = float(np.median(cpu))
        print(f"{name:12s} {med / 1e6:12.1f} {min(cpu) / 1e6:6.1f}..{max(cpu) / 1e6:<6.1f} "
              f"{1e9 / med:8.1f} {np.median(wall) / 1e6:13.1f}")
    print(f"median of {args.runs} runs, pinned to CPU {args.cpu}")


if __name__ == "__main__":
    main()
