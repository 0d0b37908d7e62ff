"""Feed handler: the engine's only sequencer.

It takes events from its source (the synthetic market by default), stamps
each with the next global sequence number and the receive time, and copies
it to the input ring of the worker that owns its symbol, noting in the copy
how long it held the event (``feed_ns``). After every batch
it sends every worker a watermark (the batch's last seq), so the aggregator
can merge past workers that got nothing. At the end it sends END.

A full ring blocks the feed (lossless) unless the ring's policy is DROP,
where the event is counted in the ring's drops and skipped.
"""
import numpy as np
from numba import njit

from . import layout as L
from .atomics import futex_wait, load_acquire, monotonic_ns, store_relaxed
from .hist import span_u32
from .market import generate
from .ring import CONSUMER, CONSUMER_BELL, await_room, publish

STOPPED = 1
MORE = 0
TAPPED = 2  # a batch went out: buf[:ctl[C_ROUTED]] holds it (for a journal or a publisher)

# feed control words (private int64 array)
C_SEQ = 0        # next sequence number
C_PENDING = 1    # events generated into the staging buffer, not yet all routed
C_ROUTED = 2     # how many of them are routed
C_T0 = 3         # monotonic ns the run started (pacing origin)
C_DROPS = 4
# A source's first event naming a symbol or venue the engine does not have, +1 (0: none yet)
C_FOREIGN_SYMBOL = 5
C_FOREIGN_VENUE = 6
C_LEN = 7

# Kernels that allocate nothing run without numba's reference counting
# (_nrt=False): with it, taking a ring out of a tuple per record is an atomic
# increment and decrement.
# Adaptive pacing sleeps until at least this much of the stream is due, rather than
# spinning a core between events: events keep their own receive times, so this
# batches work without adding latency to any event.
PACE_QUANTUM_NS = 50_000


@njit(cache=True, _nrt=False)
def _room(hdr, tail, capacity):
    return capacity - (tail - load_acquire(hdr, CONSUMER))


@njit(cache=True, _nrt=False)
def _publish_all(hdrs, hdrs32, tails):
    for w in range(len(hdrs)):
        publish(hdrs[w], hdrs32[w], tails[w], hdrs32[w], CONSUMER_BELL)


@njit(cache=True, _nrt=False)
def _wait_room(hdrs, hdrs32, tails, w, need, capacity, procs, me, mode, spins, yields, sleep_ns):
    """Block until ring w has room for ``need``; publishes everything first."""
    _publish_all(hdrs, hdrs32, tails)
    while _room(hdrs[w], tails[w], capacity) < need:
        procs[me].waits += 1
        procs[me].heartbeat_ns = monotonic_ns()
        await_room(hdrs[w], hdrs32[w], tails[w], need, capacity, mode, spins, yields, sleep_ns)


@njit(cache=True, _nrt=False)
def route(buf, start, n, partition, hdrs, hdrs32, slots, mask, tails, heads, policy, ctl, procs,
          me, mode, spins, yields, sleep_ns):
    """Copy buf[start:start+n] to the owners' rings; returns how many were taken.

    ``heads`` caches each worker's consumer position, re-read only when a
    ring looks full, so the feed does not pull the worker's cursor line per event.
    An event naming a symbol id the engine does not have has no owner: it is
    taken and skipped (``send_batch`` counts it).
    """
    capacity = mask + 1
    now = monotonic_ns()
    n_symbols = partition.shape[0]
    for i in range(start, start + n):
        ev = buf[i]
        if ev.symbol >= n_symbols:
            continue
        w = partition[ev.symbol]
        if tails[w] - heads[w] >= capacity:
            heads[w] = load_acquire(hdrs[w], CONSUMER)
        if tails[w] - heads[w] >= capacity:
            if policy == L.POLICY_DROP:
                ctl[C_DROPS] += 1
                drops = load_acquire(hdrs[w], L.RING_DROPS_WORD)
                store_relaxed(hdrs[w], L.RING_DROPS_WORD, drops + 1)
                continue
            _wait_room(hdrs, hdrs32, tails, w, 1, capacity, procs, me, mode, spins, yields,
                       sleep_ns)
            heads[w] = load_acquire(hdrs[w], CONSUMER)
            now = monotonic_ns()
        slot = tails[w] & mask
        slots[w][slot] = ev
        slots[w][slot].feed_ns = span_u32(now - ev.recv_ts)
        tails[w] += 1
    return n


@njit(cache=True, _nrt=False)
def control(kind, seq, recv_ts, hdrs, hdrs32, slots, mask, tails, procs, me, mode, spins,
            yields, sleep_ns):
    """Send a WATERMARK or END carrying ``seq`` to every worker, and publish."""
    capacity = mask + 1
    for w in range(len(hdrs)):
        if tails[w] - load_acquire(hdrs[w], CONSUMER) >= capacity:
            _wait_room(hdrs, hdrs32, tails, w, 1, capacity, procs, me, mode, spins, yields,
                       sleep_ns)
        ev = slots[w][tails[w] & mask]
        ev.seq = seq
        ev.exch_ts = 0
        ev.recv_ts = recv_ts
        ev.price = 0
        ev.order_id = 0
        ev.new_order_id = 0
        ev.qty = 0
        ev.symbol = 0
        ev.venue = 0
        ev.type = kind
        ev.side = 0
        ev.flags = 0
        ev.feed_ns = 0
        tails[w] += 1
    _publish_all(hdrs, hdrs32, tails)


@njit(cache=True, _nrt=False)
def _batch_sent(n, last, now, hdrs, hdrs32, slots, mask, tails, ctl, procs, me, mode, spins,
                yields, sleep_ns):
    """After a batch of n events up to seq ``last``: the watermark, the counters."""
    control(L.EV_WATERMARK, last, now, hdrs, hdrs32, slots, mask, tails, procs, me, mode, spins,
            yields, sleep_ns)
    ctl[C_SEQ] = last + 1
    p = procs[me]
    p.events += n
    p.batches += 1
    p.drops = ctl[C_DROPS]
    lag = 0
    for w in range(len(hdrs)):
        lag += tails[w] - load_acquire(hdrs[w], CONSUMER)
    p.lag = lag


@njit(cache=True)
def _generate_in_place(margs, n, seq, now, hdrs, hdrs32, slots, mask, tails, heads, ctl, procs,
                       me, mode, spins, yields, sleep_ns):
    """Generate n events straight into the one worker's ring, stamp how long the
    feed held them, and send the batch's watermark."""
    capacity = mask + 1
    if tails[0] + n - heads[0] > capacity:
        heads[0] = load_acquire(hdrs[0], CONSUMER)
    if tails[0] + n - heads[0] > capacity:
        _wait_room(hdrs, hdrs32, tails, 0, n, capacity, procs, me, mode, spins, yields, sleep_ns)
        heads[0] = load_acquire(hdrs[0], CONSUMER)
        now = monotonic_ns()
    ring = slots[0]
    generate(*margs, ring, tails[0], mask, n, seq, now)
    held = span_u32(monotonic_ns() - now)
    for i in range(tails[0], tails[0] + n):
        ring[i & mask].feed_ns = held
    tails[0] += n
    _batch_sent(n, seq + n - 1, now, hdrs, hdrs32, slots, mask, tails, ctl, procs, me, mode,
                spins, yields, sleep_ns)


@njit(cache=True)
def run(margs, buf, partition, hdrs, hdrs32, slots, mask, tails, heads, policy, ctl, procs, me,
        stop, tap,
        batch, rate, limit, mode, spins, yields, sleep_ns, budget_ns):
    """Generate and route for ``budget_ns``; returns STOPPED when the stream should end,
    and with ``tap`` TAPPED after each batch.

    ``stop`` is a uint32 array whose element 0 is the engine's stop request;
    ``limit`` is the number of events to send (0: no limit); ``rate`` events/s
    (0: as fast as possible).
    """
    now = monotonic_ns()
    deadline = now + budget_ns
    idle = np.zeros(1, np.uint32)
    # One worker, no journal or publisher reading the batch, a lossless ring:
    # the market writes straight into the ring, without the copy routing makes.
    direct = len(hdrs) == 1 and not tap and policy == L.POLICY_BLOCK and batch <= mask + 1
    while now < deadline:
        p = procs[me]
        p.heartbeat_ns = now
        if ctl[C_PENDING] == 0:
            seq = ctl[C_SEQ]
            if load_acquire(stop, 0) != 0 or (limit > 0 and seq >= limit):
                return STOPPED
            n = batch
            if limit > 0:
                n = min(n, limit - seq)
            if rate > 0.0:
                due = np.int64((now - ctl[C_T0]) * rate * 1e-9) + 1
                if due - seq <= 0:
                    gap = np.int64((seq + 1 - due) * 1e9 / rate)
                    if mode != L.WAIT_SPIN:
                        futex_wait(idle, 0, 0, max(gap, PACE_QUANTUM_NS))
                    now = monotonic_ns()
                    continue
                n = min(n, due - seq)
            if direct:
                _generate_in_place(margs, n, seq, now, hdrs, hdrs32, slots, mask, tails, heads,
                                   ctl, procs, me, mode, spins, yields, sleep_ns)
                now = monotonic_ns()
                continue
            generate(*margs, buf, 0, len(buf) - 1, n, seq, now)
            ctl[C_PENDING] = n
            ctl[C_ROUTED] = 0
        n = ctl[C_PENDING]
        ctl[C_ROUTED] += route(buf, ctl[C_ROUTED], n - ctl[C_ROUTED], partition, hdrs, hdrs32,
                               slots, mask, tails, heads, policy, ctl, procs, me, mode, spins,
                               yields, sleep_ns)
        if ctl[C_ROUTED] == n:
            _batch_sent(n, ctl[C_SEQ] + n - 1, now, hdrs, hdrs32, slots, mask, tails, ctl, procs,
                        me, mode, spins, yields, sleep_ns)
            ctl[C_PENDING] = 0
            if tap:
                return TAPPED
        now = monotonic_ns()
    return MORE


# ---------------------------------------------------------------- other sources
#
# A source other than the synthetic market (an ITCH file, a journal, a multicast
# link) is read in Python, a batch at a time, into ``buf``; these kernels stamp,
# pace and route each batch.

@njit(cache=True, _nrt=False)
def due_now(buf, n, exch0, wall0, speed, now):
    """How many of buf[:n] are due at ``now`` when replaying the source's clock
    ``speed`` times faster from (exch0, wall0); every one when speed is 0."""
    if speed <= 0.0:
        return n
    for i in range(n):
        if wall0 + np.int64((np.int64(buf[i].exch_ts) - exch0) / speed) > now:
            return i
    return n


@njit(cache=True, _nrt=False)
def send_batch(buf, n, keep_seq, keep_recv, n_venues, partition, hdrs, hdrs32, slots, mask,
               tails, heads, policy, ctl, procs, me, mode, spins, yields, sleep_ns):
    """Stamp buf[:n] (seq unless ``keep_seq``, receive time unless ``keep_recv``),
    route it and send the watermark, as the synthetic loop does for each batch.

    Events naming a symbol id beyond the engine's are not routed and count as the
    feed's bad events; those naming a venue >= n_venues go on, and the worker
    counts them. The first of each kind is kept in ctl (C_FOREIGN_*), so that the
    feed can say what its source sends that the engine cannot hold.
    """
    now = monotonic_ns()
    seq = ctl[C_SEQ]
    n_symbols = partition.shape[0]
    for i in range(n):
        if not keep_seq:
            buf[i].seq = seq + i
        if not keep_recv:
            buf[i].recv_ts = now
        if buf[i].symbol >= n_symbols:
            procs[me].bad_events += 1
            if ctl[C_FOREIGN_SYMBOL] == 0:
                ctl[C_FOREIGN_SYMBOL] = np.int64(buf[i].symbol) + 1
        elif buf[i].venue >= n_venues and ctl[C_FOREIGN_VENUE] == 0:
            ctl[C_FOREIGN_VENUE] = np.int64(buf[i].venue) + 1
    procs[me].heartbeat_ns = now
    route(buf, 0, n, partition, hdrs, hdrs32, slots, mask, tails, heads, policy, ctl, procs,
          me, mode, spins, yields, sleep_ns)
    _batch_sent(n, np.int64(buf[n - 1].seq), now, hdrs, hdrs32, slots, mask, tails, ctl, procs,
                me, mode, spins, yields, sleep_ns)
