"""Worker: owns a partition of symbols and all their book state.

The loop takes a batch from its input ring, runs the book kernel over it
(writing results straight into its output ring), releases the input and
publishes the output. It stops after forwarding END.
"""
from numba import njit

from . import layout as L
from .atomics import load_acquire, monotonic_ns
from .book import process
from .ring import CONSUMER, PRODUCER, await_readable, await_room, publish, release

DONE = 1
MORE = 0

# worker control words (private int64 array)
C_HEAD = 0
C_OUT_TAIL = 1


@njit(cache=True)
def run(book, in_hdr, in_hdr32, in_slots, in_mask, out_hdr, out_hdr32, out_slots, out_mask,
        ctl, counters, procs, me, bell32, bell_word, batch, mode, spins, yields, sleep_ns,
        budget_ns):
    """Process batches for ``budget_ns``; returns DONE once END went through."""
    out_capacity = out_mask + 1
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
        if room <= 0:
            p.waits += 1
            await_room(out_hdr, out_hdr32, out_tail, 1, out_capacity, mode, spins, yields,
                       sleep_ns)
            now = monotonic_ns()
            continue
        n = min(tail - head, batch, room)
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
