"""What each process of a peer pipeline does once its links are open.

The stages mirror the engine's: the feed generates the synthetic market's
events in batches, stamps each batch with the monotonic clock as its receive
time and routes every event to the worker owning its symbol; a worker runs
the engine's book kernel (books only) on what it receives and sends the
results on; the aggregator writes them into a snapshot table and records
receive -> snapshot latency. An empty message ends the stream.

Batched, a message carries all of a batch's events for one worker (or the
results of one such message); otherwise every event and every result is a
message of its own. Each stage returns its report, with ``cpu0`` the process
CPU time at its first event, and leaves its links open (see ``pipeline``).

The aggregator writes each symbol's results in the order its worker made
them, which is stream order for that symbol, so the final table equals the
engine's; unlike the engine it does not merge the workers' results into one
global sequence (it publishes no ordered stream).
"""
import time

import numpy as np

from shmengine import layout as L
from shmengine.book import N_COUNTERS, process
from shmengine.hist import COUNTS_LEN
from shmengine.market import generate

from .kernels import absorb, split

PACE_QUANTUM_S = 50e-6  # as the engine's feed: sleep until at least this much is due
NO_EVENTS = np.empty(0, L.EVENT)
NO_RESULTS = np.empty(0, L.RESULT)


def _mask(n):
    """Index mask of a ring of at least n slots (the kernels address slots as i & mask)."""
    return (1 << max(n - 1, 1).bit_length()) - 1


def feed(senders, market_args, partition, n_events, batch, rate, batched):
    """Generate ``n_events`` (``rate`` events/s, 0: as fast as possible) and route them."""
    buf = np.empty(_mask(batch) + 1, L.EVENT)
    bounds = np.zeros(len(senders) + 1, np.int64)
    fill = np.zeros(len(senders), np.int64)
    seq = 0
    cpu0 = time.process_time()
    t0 = time.monotonic_ns()
    while seq < n_events:
        now = time.monotonic_ns()
        n = min(batch, n_events - seq)
        if rate:
            due = int((now - t0) * rate * 1e-9) + 1
            if due <= seq:
                time.sleep(max((seq + 1 - due) / rate, PACE_QUANTUM_S))
                continue
            n = min(n, due - seq)
        generate(*market_args, buf, 0, len(buf) - 1, n, seq, now)
        if batched:
            routed = np.empty(n, L.EVENT)  # a new array: a zero-copy send may still hold the last
            split(buf, n, partition, routed, bounds, fill)
            for w, s in enumerate(senders):
                if bounds[w + 1] > bounds[w]:
                    s.put_batch([routed[bounds[w]:bounds[w + 1]]])
        else:
            owners = partition[buf["symbol"][:n]]
            for i in range(n):
                senders[owners[i]].put(buf[i:i + 1])
        seq += n
    for s in senders:
        s.put(NO_EVENTS)
    return {"cpu0": cpu0, "events": seq}


def worker(receiver, sender, book, batched):
    """Apply every event received to the book; send on the results."""
    counters = np.zeros(N_COUNTERS, np.int64)
    one = np.empty(1, L.RESULT)
    cpu0 = None
    events = 0
    ended = False
    while not ended:
        messages = receiver.get_batch() if batched else [receiver.get()]
        if cpu0 is None:
            cpu0 = time.process_time()
        outs = []
        for m in messages:
            if len(m) == 0:
                ended = True
                break
            ev = np.frombuffer(m, L.EVENT)
            n = len(ev)
            events += n
            if batched:
                # a new array: a zero-copy send may still hold the last
                out = np.empty(n, L.RESULT)
                k = process(ev, 0, n, _mask(n), book, out, 0, _mask(n), time.monotonic_ns(),
                            counters, None, None, None)
                if k:
                    outs.append(out[:k])
            else:
                k = process(ev, 0, n, _mask(n), book, one, 0, 0, time.monotonic_ns(), counters,
                            None, None, None)
                if k:
                    sender.put(one)
        if outs:
            sender.put_batch(outs)
    sender.put(NO_RESULTS)
    return {"cpu0": cpu0, "events": events, "counters": counters.tolist()}


def new_table(n_symbols):
    """Snapshot rows as the engine's table starts them."""
    rows = np.zeros(n_symbols, L.SNAPSHOT_ROW)
    rows["symbol"] = np.arange(n_symbols)
    rows["bid_venue"] = L.NO_VENUE
    rows["ask_venue"] = L.NO_VENUE
    return rows


def aggregator(receiver, n_workers, n_symbols, batched):
    """Write every result into the table until every worker has ended."""
    rows = new_table(n_symbols)
    words = rows.view(np.uint64)
    hist = np.zeros(COUNTS_LEN, np.int64)
    cpu0 = t_first = None
    results = 0
    ended = 0
    while ended < n_workers:
        messages = receiver.get_batch() if batched else [receiver.get()]
        now = time.monotonic_ns()
        if cpu0 is None:
            cpu0 = time.process_time()
            t_first = now
        for m in messages:
            if len(m) == 0:
                ended += 1
                continue
            r = np.frombuffer(m, L.RESULT)
            results += len(r)
            absorb(r, rows, words, hist, now)
    t_end = time.monotonic_ns()
    return {"cpu0": cpu0, "t_first": t_first, "t_end": t_end, "results": results,
            "rows": rows, "hist": hist}
