"""Worker: owns a partition of symbols and all their book state.

The loop takes a batch from its input ring, runs the book kernel over it,
releases the input and publishes the output. Without analytics the book
writes its results straight into the output ring; with them it writes into a
private staging array, and the analytics kernel copies them on with the bar
closes and signals they cause. It stops after forwarding END.
"""
from numba import njit

from . import layout as L
from .atomics import load_acquire, monotonic_ns
from . import analytics
from .book import process
from .ring import CONSUMER, PRODUCER, await_readable, await_room, publish, release

DONE = 1
MORE = 0

# worker control words (private int64 array)
C_HEAD = 0
C_OUT_TAIL = 1


@njit(cache=True)
def run(book, ana, ana_on, staging, in_hdr, in_hdr32, in_slots, in_mask, out_hdr, out_hdr32,
        out_slots, out_bars, out_signals, out_mask, ctl, counters, procs, me, bell32, bell_word,
        batch, mode, spins, yields, sleep_ns, budget_ns):
    """Process batches for ``budget_ns``; returns DONE once END went through.

    ``out_bars`` and ``out_signals`` view ``out_slots`` as BAR_RECORD and
    SIGNAL_RECORD; ``staging`` holds at least ``batch`` RESULTs.
    """
    out_capacity = out_mask + 1
    per_event = 1 + analytics.MAX_EXTRA if ana_on else 1  # most records an event may cause
    staging_mask = staging.shape[0] - 1
    now = monotonic_ns()
    deadline = now + budget_ns
    while now < deadline:
        p = procs[me]
        p.heartbeat_ns = now
        head = ctl[C_HEAD]
        tail = load_acquire(in_hdr, PRODUCER)
        p.lag = tail - head
        if tail <= head:
            p.waits += 1
            await_readable(in_hdr, in_hdr32, head, mode, spins, yields, sleep_ns)
            now = monotonic_ns()
            continue
        out_tail = ctl[C_OUT_TAIL]
        room = out_capacity - (out_tail - load_acquire(out_hdr, CONSUMER))
        if room < per_event:
            p.waits += 1
            await_room(out_hdr, out_hdr32, out_tail, per_event, out_capacity, mode, spins,
                       yields, sleep_ns)
            now = monotonic_ns()
            continue
        n = min(tail - head, batch, room // per_event)
        if ana_on:
            k = process(in_slots, head, n, in_mask, book, staging, 0, staging_mask, now,
                        counters)
            produced = analytics.process(staging, 0, k, staging_mask, ana, out_slots, out_bars,
                                         out_signals, out_tail, out_mask)
        else:
            produced = process(in_slots, head, n, in_mask, book, out_slots, out_tail, out_mask,
                               now, counters)
        last_type = in_slots[(head + n - 1) & in_mask].type
        ctl[C_HEAD] = head + n
        release(in_hdr, in_hdr32, head + n)
        ctl[C_OUT_TAIL] = out_tail + produced
        publish(out_hdr, out_hdr32, out_tail + produced, bell32, bell_word)
        p.events += n
        p.results += produced
        p.batches += 1
        p.unknown_orders = counters[0]
        p.book_overflows = counters[1]
        p.bad_events = counters[2]
        if last_type == L.EV_END:
            return DONE
        now = monotonic_ns()
    return MORE
