"""Worker: owns a partition of symbols and all their book state.

The loop takes a batch from its input ring, runs the book kernel over it,
releases the input and publishes the output. The book kernel writes its
results straight into the output ring, applying the analytics to each as it
writes it (bar closes and signals join the stream there); with user kernels
it writes into a private staging array instead, the user kernels read it,
and ``merge`` copies it and their records on. It stops after forwarding END.
"""
import collections

import numpy as np
from numba import njit

from . import analytics, kernels
from . import layout as L
from .atomics import load_acquire, monotonic_ns
from .book import process
from .hist import span_u32
from .ring import CONSUMER, PRODUCER, await_readable, await_room, publish, release

DONE = 1
MORE = 0

# The private array a batch passes through when user kernels read it before
# it goes to the output ring.
Stage = collections.namedtuple("Stage", [
    "records",   # RESULT[>= batch * (1 + MAX_EXTRA)]: results, bars and signals
    "bars",      # records viewed as BAR_RECORD
    "signals",   # records viewed as SIGNAL_RECORD
])


def new_stage(batch, user_kernels):
    """Staging for batches of up to ``batch`` events (a token one without user kernels)."""
    n = batch * (1 + analytics.MAX_EXTRA) if user_kernels else 1
    records = np.zeros(1 << max(n - 1, 1).bit_length(), L.RESULT)
    return Stage(records, records.view(L.BAR_RECORD), records.view(L.SIGNAL_RECORD))


# worker control words (private int64 array)
C_HEAD = 0
C_OUT_TAIL = 1
C_USER_DROPPED = 2
C_LEN = 3


@njit(cache=True)
def stamp_worker_ns(out_slots, out_position, n, out_mask, proc_ts):
    """Note in each of the batch's results how long the worker held it, just before
    publishing: the records are still in this core's cache, so this costs a store each.
    Bars, signals and user records have no such field."""
    held = span_u32(monotonic_ns() - proc_ts)
    for i in range(out_position, out_position + n):
        r = out_slots[i & out_mask]
        if r.kind <= L.RES_CLEAR:
            r.worker_ns = held


@njit(cache=True)
def run(book, ana, ana_on, user, uk, stage, in_hdr, in_hdr32, in_slots, in_mask,
        out_hdr, out_hdr32, out_slots, out_bars, out_signals, out_user, out_mask, ctl, counters,
        procs, me, bell32, bell_word, batch, mode, spins, yields, sleep_ns, budget_ns):
    """Process batches for ``budget_ns``; returns DONE once END went through.

    ``user`` is None or the jitted pass over the user kernels (``uk`` their
    state). ``out_bars``, ``out_signals`` and ``out_user`` view ``out_slots``
    as BAR_RECORD, SIGNAL_RECORD and USER_RECORD; ``stage`` is ``new_stage(batch, ...)``.
    """
    out_capacity = out_mask + 1
    per_event = 1 + analytics.MAX_EXTRA if ana_on else 1  # most records an event may cause
    reserve = uk.outs.shape[0] * uk.outs.shape[1] if user is not None else 0
    staging = stage.records
    staging_mask = staging.shape[0] - 1
    dropped = ctl[C_USER_DROPPED:C_USER_DROPPED + 1]
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
        if room < per_event + reserve:
            p.waits += 1
            await_room(out_hdr, out_hdr32, out_tail, per_event + reserve, out_capacity, mode,
                       spins, yields, sleep_ns)
            now = monotonic_ns()
            continue
        n = min(tail - head, batch, (room - reserve) // per_event)
        if ana_on and user is not None:
            m = process(in_slots, head, n, in_mask, book, staging, 0, staging_mask, now,
                        counters, ana, stage.bars, stage.signals)
            user(staging, m, uk.rows, uk.states, uk.fields, uk.outs, uk.counts)
            produced = kernels.merge(staging, m, uk, ana.local_index, ana.rows, ana.words,
                                     out_slots, out_user, out_tail, out_mask, dropped)
            p.user_dropped = dropped[0]
        elif ana_on:
            produced = process(in_slots, head, n, in_mask, book, out_slots, out_tail, out_mask,
                               now, counters, ana, out_bars, out_signals)
        else:
            produced = process(in_slots, head, n, in_mask, book, out_slots, out_tail, out_mask,
                               now, counters, None, None, None)
        last_type = in_slots[(head + n - 1) & in_mask].type
        stamp_worker_ns(out_slots, out_tail, produced, out_mask, now)
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


# With user kernels the loop is compiled for their pass at each start: a jitted
# function's type is new in every process, so a cached copy could never be reused.
run_with_kernels = njit(run.py_func)
