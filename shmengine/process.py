"""The engine's processes: what each one does between fork and exit.

Every process: dies with its supervisor (parent-death signal), ignores
SIGINT (the supervisor turns Ctrl-C into a clean drain), pins itself, attaches
the engine's segments, registers in its stats row, then calls its stage's
numba loop in slices of BUDGET_NS until the loop says it is done.
"""
import os
import signal

import numpy as np

from . import layout as L
from ._core import lib
from .segments import EngineSegments

BUDGET_NS = 50_000_000

FEED = 0


def worker_proc(w):
    return 1 + w


def aggregator_proc(n_workers):
    return 1 + n_workers


def _enter(engine, proc, role, index, cpu):
    lib.shme_set_parent_death_signal(signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    segs = EngineSegments.attach(engine, writable=True)
    row = segs.stats.procs[proc]
    row["pid"] = os.getpid()
    row["role"] = role
    row["index"] = index
    row["cpu"] = -1 if cpu is None else cpu
    return segs


def _ring_tuples(rings):
    return (tuple(r.hdr64 for r in rings), tuple(r.hdr32 for r in rings),
            tuple(r.slots for r in rings))


def _loop(segs, proc, step):
    # The first call compiles or loads the kernel: only then is the process running.
    done = step()
    segs.stats.procs[proc]["state"] = L.RUN_RUNNING
    while not done:
        done = step()
    segs.stats.procs[proc]["state"] = L.RUN_STOPPED


def run_feed(engine, cfg, cpu):
    from .feed import C_LEN, C_T0, STOPPED, control, run
    from .market import new_market
    segs = _enter(engine, FEED, L.ROLE_FEED, 0, cpu)
    market = new_market(cfg.symbols, cfg.venues, cfg.seed)
    margs = market.kernel_args()
    size = 1 << max(cfg.batch - 1, 1).bit_length()
    buf = np.zeros(size, L.EVENT)
    hdrs, hdrs32, slots = _ring_tuples(segs.inputs)
    mask = segs.inputs[0].mask
    tails = np.zeros(len(hdrs), np.int64)
    heads = np.zeros(len(hdrs), np.int64)
    ctl = np.zeros(C_LEN, np.int64)
    ctl[C_T0] = lib.shme_monotonic_ns()
    stop_at = L.META_INFO_OFFSET + L.ENGINE_INFO.fields["stop_request"][1]
    stop = segs.meta.view(np.uint32, stop_at, 1)
    policy = L.POLICY_DROP if cfg.drop else L.POLICY_BLOCK
    procs = segs.stats.procs
    wait = (cfg.wait_mode, cfg.spins, cfg.yields, cfg.sleep_us * 1000)

    def step():
        return run(margs, buf, segs.partition, hdrs, hdrs32, slots, mask, tails, heads, policy,
                   ctl, procs, FEED, stop, cfg.batch, cfg.rate, cfg.events, *wait, BUDGET_NS)

    done = step()
    segs.stats.procs[FEED]["state"] = L.RUN_RUNNING
    while done != STOPPED:
        done = step()
    last = int(ctl[0]) - 1
    control(L.EV_END, max(last, 0), lib.shme_monotonic_ns(), hdrs, hdrs32, slots, mask, tails,
            procs, FEED, *wait)
    segs.stats.procs[FEED]["state"] = L.RUN_STOPPED
    segs.close()


def run_worker(engine, cfg, w, cpu):
    from .book import new_book
    from .worker import run
    proc = worker_proc(w)
    segs = _enter(engine, proc, L.ROLE_WORKER, w, cpu)
    owned = np.flatnonzero(segs.partition == w)
    max_orders = cfg.book_orders or max(64 * len(owned) * cfg.venues, 1024)
    book = new_book(owned, cfg.venues, cfg.symbols, max_levels=cfg.book_levels,
                    max_orders=max_orders)
    src, dst = segs.inputs[w], segs.outputs[w]
    agg = aggregator_proc(cfg.workers)
    bells = segs.stats.bells
    ctl = np.zeros(2, np.int64)
    counters = np.zeros(3, np.int64)
    procs = segs.stats.procs
    wait = (cfg.wait_mode, cfg.spins, cfg.yields, cfg.sleep_us * 1000)
    _loop(segs, proc, lambda: run(
        book, src.hdr64, src.hdr32, src.slots, src.mask, dst.hdr64, dst.hdr32, dst.slots,
        dst.mask, ctl, counters, procs, proc, bells, segs.stats.bell_word(agg), cfg.batch,
        *wait, BUDGET_NS))
    segs.close()


def run_aggregator(engine, cfg, cpu):
    from .aggregator import run
    proc = aggregator_proc(cfg.workers)
    segs = _enter(engine, proc, L.ROLE_AGGREGATOR, 0, cpu)
    hdrs, hdrs32, slots = _ring_tuples(segs.outputs)
    n = len(hdrs)
    heads = np.zeros(n, np.int64)
    tails = np.zeros(n, np.int64)
    known = np.full(n, -1, np.int64)
    ended = np.zeros(n, np.int64)
    state = np.zeros(8, np.int64)
    snap, bcast, stats = segs.snap, segs.bcast, segs.stats
    snap_hdr = segs.snap.seg.view(L.SNAP_HEADER, L.SNAP_HEADER_OFFSET, 1)
    wait = (cfg.wait_mode, cfg.spins, cfg.yields, cfg.sleep_us * 1000)
    _loop(segs, proc, lambda: run(
        hdrs, hdrs32, slots, segs.outputs[0].mask, heads, tails, known, ended, snap.rows,
        snap.words, snap_hdr, bcast.hdr64, bcast.slots, bcast.mask, state, stats.hist,
        stats.procs, proc, stats.bells, stats.bell_word(proc), cfg.batch, *wait, BUDGET_NS))
    segs.close()
