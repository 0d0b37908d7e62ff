"""Aggregator: merges the workers' results in global sequence order.

Each worker's output ring is in seq order, and a worker's watermark says it
will send nothing more at or below that seq. The head result with the
smallest seq is merged once every other worker has either a head result
(necessarily later) or a watermark at or past it. Merging writes the
symbol's snapshot row under its seqlock, appends the result to the
broadcast ring, and records receive -> published latency, whole and split
into the stages the result's timestamps mark.

The result is a function of the feed's output alone: the same whatever the
number of workers.
"""
import numpy as np
from numba import njit

from . import layout as L
from . import broadcast, snapshot
from .atomics import load_acquire, load_seq_cst, monotonic_ns, store_relaxed, store_seq_cst, \
    futex_wait, cpu_relax, prefetch_record, sched_yield
from .hist import record
from .ring import CONSUMER_WAIT, PRODUCER, release

# Kernels that allocate nothing run without numba's reference counting
# (_nrt=False): with it, taking a ring out of a tuple per record is an atomic
# increment and decrement.
NEVER = np.int64(2**62)
_ROW_AHEAD = 2  # records between prefetching a snapshot row (owned) and writing it
_AHEAD = 4  # records between prefetching a result (and its broadcast slot) and using it
DONE = 1
MORE = 0

# indices into the aggregator's private state array
ST_BCAST_TAIL = 0
ST_LOCKED = 1
ST_CROSSED = 2
ST_RESULTS = 3


@njit(cache=True, _nrt=False)
def _absorb_control(slots, mask, w, heads, tails, known, ended):
    while heads[w] < tails[w]:
        rec = slots[heads[w] & mask]
        if rec.kind == L.RES_WATERMARK:
            known[w] = rec.seq
        elif rec.kind == L.RES_END:
            known[w] = rec.seq
            ended[w] = 1
        else:
            return
        heads[w] += 1


@njit(cache=True, _nrt=False)
def record_stages(hists, rec, publish_ts):
    """Record a published result's latency, whole and per stage (layout.STAGE_*)."""
    total = publish_ts - rec.recv_ts
    taken = rec.proc_ts - rec.recv_ts
    worker_done = taken + np.int64(rec.worker_ns)
    record(hists[L.STAGE_TOTAL], total)
    record(hists[L.STAGE_FEED], np.int64(rec.feed_ns))
    record(hists[L.STAGE_RING], taken - np.int64(rec.feed_ns))
    record(hists[L.STAGE_WORKER], np.int64(rec.worker_ns))
    record(hists[L.STAGE_MERGE], total - worker_done)


@njit(cache=True, _nrt=False)
def merge(out_hdrs, out_hdrs32, out_slots, mask, heads, tails, known, ended, rows, words,
          bcast_hdr, bcast_slots, bcast_mask, state, hists, max_n):
    """Merge up to ``max_n`` results; returns how many were merged."""
    n_workers = len(out_hdrs)
    for w in range(n_workers):
        tails[w] = load_acquire(out_hdrs[w], PRODUCER)
    publish_ts = monotonic_ns()
    tail = state[ST_BCAST_TAIL]
    done = 0
    # One announcement covers the whole batch: a fence per record would stop the
    # compiler from keeping anything in registers across records.
    broadcast.begin_write(bcast_hdr, tail, max_n)
    while done < max_n:
        best = -1
        best_seq = NEVER
        for w in range(n_workers):
            _absorb_control(out_slots[w], mask, w, heads, tails, known, ended)
            if heads[w] < tails[w]:
                s = np.int64(out_slots[w][heads[w] & mask].seq)
                if s < best_seq:
                    best_seq = s
                    best = w
        if best < 0:
            break
        safe = True
        for w in range(n_workers):
            if w != best and heads[w] >= tails[w] and known[w] < best_seq and not ended[w]:
                safe = False
        if not safe:
            break
        rec = out_slots[best][heads[best] & mask]
        # The worker wrote these lines on its core; the broadcast slot was last
        # written a ring ago and has left this core's caches, and a symbol's row
        # is one of thousands: start all three moving (the row's symbol is read
        # from a record prefetched earlier, and only from a published one).
        prefetch_record(out_slots[best], (heads[best] + _AHEAD) & mask, False)
        prefetch_record(bcast_slots, (tail + _AHEAD) & bcast_mask, True)
        if heads[best] + _ROW_AHEAD < tails[best]:
            sym = np.int64(out_slots[best][(heads[best] + _ROW_AHEAD) & mask].symbol)
            if sym < rows.shape[0]:
                prefetch_record(rows, sym, True)
        if rec.kind <= L.RES_CLEAR:  # bars, signals and user records only go on the stream
            before = snapshot.write_row(rows, words, rec, publish_ts)
            state[ST_LOCKED] += (((rec.flags & L.RFLAG_LOCKED) != 0)
                                 - ((before & L.RFLAG_LOCKED) != 0))
            state[ST_CROSSED] += (((rec.flags & L.RFLAG_CROSSED) != 0)
                                  - ((before & L.RFLAG_CROSSED) != 0))
            record_stages(hists, rec, publish_ts)
        bcast_slots[tail & bcast_mask] = rec
        tail += 1
        known[best] = best_seq
        heads[best] += 1
        done += 1
    if done:
        broadcast.end_write(bcast_hdr, tail)
        state[ST_BCAST_TAIL] = tail
        state[ST_RESULTS] += done
    for w in range(n_workers):
        release(out_hdrs[w], out_hdrs32[w], heads[w])
    return done


@njit(cache=True, _nrt=False)
def reflected(known):
    """Events whose effects are all in the table: every seq up to min(known)."""
    lo = NEVER
    for w in range(len(known)):
        lo = min(lo, known[w])
    return lo


@njit(cache=True, _nrt=False)
def _sleep(out_hdrs, out_hdrs32, heads, bell32, bell_word, sleep_ns):
    ticket = load_acquire(bell32, bell_word)
    for w in range(len(out_hdrs)):
        store_seq_cst(out_hdrs32[w], CONSUMER_WAIT, 1)
    ready = False
    for w in range(len(out_hdrs)):
        if load_seq_cst(out_hdrs[w], PRODUCER) > heads[w]:
            ready = True
    if not ready:
        futex_wait(bell32, bell_word, ticket, sleep_ns)
    for w in range(len(out_hdrs)):
        store_relaxed(out_hdrs32[w], CONSUMER_WAIT, 0)


@njit(cache=True, _nrt=False)
def run(out_hdrs, out_hdrs32, out_slots, mask, heads, tails, known, ended, rows, words,
        snap_hdr, bcast_hdr, bcast_slots, bcast_mask, state, hists, procs, me, bell32, bell_word,
        max_n, mode, spins, yields, sleep_ns, budget_ns):
    """The aggregator loop, for ``budget_ns``; returns DONE once every worker ended."""
    deadline = monotonic_ns() + budget_ns
    idle = 0
    while True:
        n = merge(out_hdrs, out_hdrs32, out_slots, mask, heads, tails, known, ended, rows,
                  words, bcast_hdr, bcast_slots, bcast_mask, state, hists, max_n)
        now = monotonic_ns()
        lag = 0
        for w in range(len(out_hdrs)):
            lag += tails[w] - heads[w]
        p = procs[me]
        p.heartbeat_ns = now
        p.lag = lag
        if n:
            idle = 0
            p.events += n
            p.results += n
            p.batches += 1
            h = snap_hdr[0]
            h.results = state[ST_RESULTS]
            h.locked = state[ST_LOCKED]
            h.crossed = state[ST_CROSSED]
            h.publish_ts = now
            lo = reflected(known)
            if lo >= 0:
                h.last_seq = lo
                h.events = lo + 1
        else:
            finished = True
            for w in range(len(out_hdrs)):
                if ended[w] == 0 or heads[w] < tails[w]:
                    finished = False
            if finished:
                lo = reflected(known)
                if lo >= 0:
                    snap_hdr[0].last_seq = lo
                    snap_hdr[0].events = lo + 1
                return DONE
            p.waits += 1
            idle += 1
            if idle <= spins:
                cpu_relax()
            elif mode == L.WAIT_SPIN:
                idle = 0
            elif idle <= spins + yields:
                sched_yield()
            else:
                _sleep(out_hdrs, out_hdrs32, heads, bell32, bell_word, sleep_ns)
        if now > deadline:
            return MORE
