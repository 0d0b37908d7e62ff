"""The engine's processes: what each one does between fork and exit.

Every process: dies with its supervisor (parent-death signal), names itself
for ps and top (``shme-feed``, ``shme-worker0``, ``shme-aggregator``), ignores
SIGINT (the supervisor turns Ctrl-C into a clean drain) and turns SIGTERM into
the engine's stop request (``timeout`` or systemd signal the whole group: the
engine drains as it does for ``shmengine stop``), pins itself, attaches the
engine's segments, registers in its stats row, then calls its stage's numba
loop in slices of BUDGET_NS until the loop says it is done.
"""
import os
import signal
import sys
import time

import numpy as np

from . import layout as L
from ._core import lib
from . import sources
from .config import ConfigError, batch_scheduled, cpu_plan, shares_cpu, spin_budget
from .segments import EngineSegments

BUDGET_NS = 50_000_000
TIMER_SLACK_NS = 1_000

FEED = 0


def worker_proc(w):
    return 1 + w


def aggregator_proc(n_workers):
    return 1 + n_workers


def process_name(role, index):
    """What ps, top and pgrep show for an engine process (at most 15 characters)."""
    name = L.ROLE_NAMES[role]
    return f"shme-{name}{index}" if role == L.ROLE_WORKER else f"shme-{name}"[:15]


def _enter(engine, proc, role, index, cpu):
    lib.shme_set_parent_death_signal(signal.SIGKILL)
    with open("/proc/self/comm", "w") as f:
        f.write(process_name(role, index))
    lib.shme_set_timer_slack(TIMER_SLACK_NS)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    segs = EngineSegments.attach(engine, writable=True)
    info = segs.info

    def stop_request(signum, frame):
        info["stop_request"] = 1
    signal.signal(signal.SIGTERM, stop_request)
    row = segs.stats.procs[proc]
    row["pid"] = os.getpid()
    row["role"] = role
    row["index"] = index
    row["cpu"] = -1 if cpu is None else cpu
    return segs


PAGE = 4096


def prefault(*states):
    """Touch every page of the private numpy arrays in ``states`` (arrays, or tuples
    of them, nested), writing back what is there. Large zeroed arrays are mapped lazily; left
    alone, their first writes fault pages in on the hot path, milliseconds' worth
    in the first seconds of a run."""
    for s in states:
        if isinstance(s, np.ndarray):
            # Only the process's own arrays: shared segments are populated when mapped,
            # and a write-back there could race another process's write.
            if s.flags.owndata and s.nbytes >= PAGE and s.flags.c_contiguous:
                b = s.reshape(-1).view(np.uint8)
                b[::PAGE] = b[::PAGE]
        elif isinstance(s, tuple):
            prefault(*s)


def _ring_tuples(rings):
    return (tuple(r.hdr64 for r in rings), tuple(r.hdr32 for r in rings),
            tuple(r.slots for r in rings))


def _loop(segs, proc, step, warm):
    row = segs.stats.procs[proc]
    cpu0 = time.process_time_ns()
    # The kernel was compiled before the fork; a call with no time budget does no work
    # but resolves the call's argument types and maps the code, which would
    # otherwise hold up the first events by milliseconds.
    warm()
    row["run_ns"] = lib.shme_monotonic_ns()
    row["state"] = L.RUN_RUNNING
    done = step()
    while not done:
        done = step()
        row["cpu_ns"] = time.process_time_ns() - cpu0
    row["cpu_ns"] = time.process_time_ns() - cpu0
    row["state"] = L.RUN_STOPPED


def _wait_args(cfg, proc):
    spins, yields = spin_budget(cfg, shares_cpu(cpu_plan(cfg), proc))
    return (cfg.wait_mode, spins, yields, cfg.sleep_us * 1000)


def feed_args(segs, cfg):
    """(kernel, its arguments but the time budget, private control words) of the feed."""
    from .feed import C_LEN, run
    from .market import new_market
    market = new_market(cfg.symbols, cfg.venues, cfg.seed)
    size = 1 << max(cfg.batch - 1, 1).bit_length()
    hdrs, hdrs32, slots = _ring_tuples(segs.inputs)
    n = len(hdrs)
    ctl = np.zeros(C_LEN, np.int64)
    stop_at = L.META_INFO_OFFSET + L.ENGINE_INFO.fields["stop_request"][1]
    policy = L.POLICY_DROP if cfg.drop else L.POLICY_BLOCK
    args = (market.kernel_args(), np.zeros(size, L.EVENT), segs.partition, hdrs, hdrs32, slots,
            segs.inputs[0].mask, np.zeros(n, np.int64), np.zeros(n, np.int64), policy, ctl,
            segs.stats.procs, FEED, segs.meta.view(np.uint32, stop_at, 1),
            bool(cfg.journal or cfg.publish), cfg.batch, float(cfg.rate), cfg.events,
            *_wait_args(cfg, FEED))
    return run, args


def analytics_params(cfg):
    """The run's analytics settings, or None when analytics are off."""
    from .analytics import make_params
    from .config import analytics_settings
    return make_params(**analytics_settings(cfg)) if cfg.analytics else None


def user_kernels(cfg):
    """The jitted pass over the run's user kernels (None without any); loaded, compiled
    and tried on a sample batch once per process, so the supervisor does it before forking."""
    if not cfg.kernels:
        return None
    from .kernels import prepare
    return prepare(cfg.kernels, lambda: trial_batch(cfg), cfg.symbols, cfg.kernel_state,
                   cfg.batch)


def trial_batch(cfg, n_events=4096):
    """(stream records, analytics rows) of the run's first events through a scratch book."""
    from .analytics import apply, make_params, new_analytics
    from .book import apply as book_apply, new_book
    from .market import new_market
    owned = np.arange(cfg.symbols)
    events = new_market(cfg.symbols, cfg.venues, cfg.seed).generate(n_events)
    book = new_book(owned, cfg.venues, cfg.symbols, max_levels=cfg.book_levels)
    ana = new_analytics(owned, cfg.venues, cfg.symbols, analytics_params(cfg) or make_params())
    return apply(ana, book_apply(book, events)), ana.rows


# The book's order map keeps orders at the slot of their id while the ids,
# coming round the map, find those slots free: a map much larger than the
# orders live at once (2 slots per order it may hold) keeps it so. 2**20
# orders is a 64 MB map, its pages touched as the ids reach them.
DEFAULT_BOOK_ORDERS = 1 << 20


def book_orders(cfg, n_owned):
    """Live orders a worker's book holds: book_orders, or 64 per owned (symbol, venue)."""
    return cfg.book_orders or max(64 * n_owned * cfg.venues, DEFAULT_BOOK_ORDERS)


def worker_args(segs, cfg, w):
    from .analytics import make_params, new_analytics
    from .book import new_book
    from .kernels import new_user_kernels
    from .worker import C_LEN, new_stage, run, run_with_kernels
    proc = worker_proc(w)
    owned = np.flatnonzero(segs.partition == w)
    book = new_book(owned, cfg.venues, cfg.symbols, max_levels=cfg.book_levels,
                    max_orders=book_orders(cfg, len(owned)))
    params = analytics_params(cfg)
    if params is None:  # same kernel types, nothing owned
        ana = new_analytics(owned[:0], cfg.venues, cfg.symbols, make_params(),
                            rows=segs.ana.rows)
    else:
        ana = new_analytics(owned, cfg.venues, cfg.symbols, params, rows=segs.ana.rows)
    user = user_kernels(cfg)
    uk = new_user_kernels(len(cfg.kernels), cfg.symbols, cfg.kernel_state, cfg.batch,
                          segs.ana.rows)
    src, dst = segs.inputs[w], segs.outputs[w]
    bell = segs.stats.bell_word(aggregator_proc(cfg.workers))
    args = (book, ana, params is not None, user, uk, new_stage(cfg.batch, user is not None),
            src.hdr64, src.hdr32, src.slots, src.mask, dst.hdr64, dst.hdr32, dst.slots,
            dst.slots.view(L.BAR_RECORD), dst.slots.view(L.SIGNAL_RECORD),
            dst.slots.view(L.USER_RECORD), dst.mask, np.zeros(C_LEN, np.int64),
            np.zeros(3, np.int64), segs.stats.procs, proc, segs.stats.bells, bell, cfg.batch,
            *_wait_args(cfg, proc))
    return (run if user is None else run_with_kernels), args


def aggregator_args(segs, cfg):
    from .aggregator import run
    proc = aggregator_proc(cfg.workers)
    hdrs, hdrs32, slots = _ring_tuples(segs.outputs)
    n = len(hdrs)
    snap, bcast, stats = segs.snap, segs.bcast, segs.stats
    snap_hdr = snap.seg.view(L.SNAP_HEADER, L.SNAP_HEADER_OFFSET, 1)
    args = (hdrs, hdrs32, slots, segs.outputs[0].mask, np.zeros(n, np.int64),
            np.zeros(n, np.int64), np.full(n, -1, np.int64), np.zeros(n, np.int64), snap.rows,
            snap.words, snap_hdr, bcast.hdr64, bcast.slots, bcast.mask, np.zeros(8, np.int64),
            stats.hists, stats.procs, proc, stats.bells, stats.bell_word(proc), cfg.batch,
            *_wait_args(cfg, proc))
    return run, args


def preload(segs, cfg):
    """Load every kernel from the numba cache (or compile it) before forking, so each
    process starts running at once instead of loading its own copy."""
    from numba import typeof
    from .feed import control
    kernels = [feed_args(segs, cfg), worker_args(segs, cfg, 0), aggregator_args(segs, cfg)]
    for kernel, args in kernels:
        kernel.compile(tuple(typeof(a) for a in args) + (typeof(BUDGET_NS),))
    _, fargs = kernels[0]
    control_args = (L.EV_END, 0, 0) + fargs[3:6] + (fargs[6], fargs[7]) + fargs[11:13] \
        + _wait_args(cfg, FEED)
    control.compile(tuple(typeof(a) for a in control_args))


def _await_others(procs):
    """Start the stream only once every other process is in its loop: events sent
    earlier would wait for them and their latency would measure the start-up."""
    while not all(int(s) == L.RUN_RUNNING for s in procs["state"][FEED + 1:]):
        procs[FEED]["heartbeat_ns"] = lib.shme_monotonic_ns()
        time.sleep(0.0002)


def child_main(target, *args):
    """A child process's entry. What the system or the configuration refuses in it (a
    socket that cannot be opened, a file that cannot be read) is one line on stderr
    and exit code 1, after which the supervisor names the process that stopped; a
    traceback is left for what is a bug."""
    # First of all: the supervisor's own handlers came with the fork.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        target(*args)
    except (OSError, ConfigError) as exc:
        with open("/proc/self/comm") as fh:
            name = fh.read().strip()
        print(f"shmengine: {name}: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


def run_feed(engine, cfg, cpu):
    from .feed import C_SEQ, C_T0, control
    from .outputs import open_outputs
    segs = _enter(engine, FEED, L.ROLE_FEED, 0, cpu)
    run, args = feed_args(segs, cfg)
    prefault(*args)
    ctl, tails = args[10], args[7]
    hdrs, hdrs32, slots, mask = args[3], args[4], args[5], args[6]
    names = segs.symbol_names()
    outputs = open_outputs(cfg, names)
    link = segs.stats.link
    link["source"] = sources.parse(cfg.source)[0]
    source = None if link["source"] == L.SRC_SYNTHETIC else sources.open_source(cfg, names)
    _await_others(segs.stats.procs)
    ctl[C_T0] = lib.shme_monotonic_ns()
    batch = _source_step(segs, cfg, source, args) if source else _synthetic_step(run, args)

    def step():
        done = batch(outputs)
        if source:
            source.count(link)
        outputs.count(link)
        if not done:
            return False
        control(L.EV_END, max(int(ctl[C_SEQ]) - 1, 0), lib.shme_monotonic_ns(), hdrs, hdrs32,
                slots, mask, tails, segs.stats.procs, FEED, *_wait_args(cfg, FEED))
        return True
    def beat():
        segs.stats.procs[FEED]["heartbeat_ns"] = lib.shme_monotonic_ns()
        outputs.count(link)
    try:
        _loop(segs, FEED, step, lambda: run(*args, 0))
    finally:
        outputs.close(beat)
        if source:
            source.close()
    segs.close()


def _synthetic_step(run, args):
    """One budget of the synthetic loop; with outputs, it hands each batch over."""
    from .feed import C_ROUTED, STOPPED, TAPPED
    buf, ctl = args[1], args[10]

    def batch(outputs):
        deadline = time.monotonic_ns() + BUDGET_NS
        while True:
            done = run(*args, BUDGET_NS)
            if done == TAPPED:
                outputs.write(buf[:ctl[C_ROUTED]])
                outputs.idle()
                if time.monotonic_ns() < deadline:
                    continue
                return False
            outputs.idle()
            return done == STOPPED
    return batch


def _source_step(segs, cfg, source, args):
    """One budget of reading a source: pace, stamp, route, copy to the outputs."""
    from .feed import due_now, send_batch
    buf = args[1]
    route_args = args[2:13]  # partition .. me
    ctl = args[10]
    foreign = _ForeignEvents(cfg, len(args[2]))
    wait = _wait_args(cfg, FEED)
    stop = args[13]
    state = {"n": 0, "start": 0, "exch0": None, "wall0": 0}

    def batch(outputs):
        deadline = time.monotonic_ns() + BUDGET_NS
        me = segs.stats.procs[FEED]
        while time.monotonic_ns() < deadline:
            if stop[0] or (cfg.events and me["events"] >= cfg.events):
                return True
            if state["start"] == state["n"]:
                n = source.read(buf[:cfg.events - int(me["events"])] if cfg.events else buf)
                state["n"], state["start"] = n, 0
                if n == 0:
                    if source.eof:
                        return True
                    outputs.idle()
                    me["heartbeat_ns"] = lib.shme_monotonic_ns()
                    time.sleep(0.0002)
                    continue
                if state["exch0"] is None:
                    state["exch0"] = int(buf[0]["exch_ts"])
                    state["wall0"] = lib.shme_monotonic_ns()
            start, n = state["start"], state["n"]
            k = due_now(buf[start:n], n - start, state["exch0"], state["wall0"], cfg.speed,
                        lib.shme_monotonic_ns())
            if k == 0:
                me["heartbeat_ns"] = lib.shme_monotonic_ns()
                time.sleep(0.0001)
                continue
            if not me["events"]:
                me["run_ns"] = lib.shme_monotonic_ns()  # a source's stream starts here
            send_batch(buf[start:start + k], k, source.keep_seq, source.keep_recv, cfg.venues,
                       *route_args, *wait)
            foreign.check(ctl)
            outputs.write(buf[start:start + k])
            state["start"] = start + k
        outputs.idle()
        return False
    return batch


class _ForeignEvents:
    """Says once, on stderr, that the source sends events of a symbol or a venue the
    engine does not have (a subscriber or a replay started with fewer); they are
    counted as bad events and the engine runs on."""

    def __init__(self, cfg, n_symbols):
        self.cfg = cfg
        self.n_symbols = n_symbols
        self.said = set()

    def check(self, ctl):
        from .feed import C_FOREIGN_SYMBOL, C_FOREIGN_VENUE
        if ctl[C_FOREIGN_SYMBOL] and "symbol" not in self.said:
            self.said.add("symbol")
            self._say(f"symbol id {ctl[C_FOREIGN_SYMBOL] - 1}, beyond this engine's "
                      f"{self.n_symbols:,} symbols (ids 0..{self.n_symbols - 1})", "symbols")
        if ctl[C_FOREIGN_VENUE] and "venue" not in self.said:
            self.said.add("venue")
            self._say(f"venue {ctl[C_FOREIGN_VENUE] - 1}, beyond this engine's "
                      f"{self.cfg.venues} venues", "venues")

    def _say(self, what, key):
        kind = sources.parse(self.cfg.source)[0]
        if kind == L.SRC_JOURNAL and key == "symbols":
            hint = f"its {sources.NAMES_FILE} names fewer symbols than its stream holds"
        elif kind == L.SRC_UDP and key == "symbols":
            hint = "start the engine with the publisher's --symbols, or symbols=publisher"
        else:
            hint = f"start the engine with the source's --{key}"
        print(f"shmengine: shme-feed: source {self.cfg.source} sends events of {what}: they "
              f"are dropped and counted as bad events ({hint})", file=sys.stderr, flush=True)


def run_worker(engine, cfg, w, cpu):
    proc = worker_proc(w)
    segs = _enter(engine, proc, L.ROLE_WORKER, w, cpu)
    run, args = worker_args(segs, cfg, w)
    prefault(*args)
    try:
        _loop(segs, proc, lambda: run(*args, BUDGET_NS), lambda: run(*args, 0))
    except Exception as exc:
        # Only user code raises inside the loop: name it, and let the supervisor stop the engine.
        where = f" in a user kernel ({', '.join(cfg.kernels)})" if cfg.kernels else ""
        print(f"shmengine: worker {w}: {type(exc).__name__}{where}: {exc}", file=sys.stderr,
              flush=True)
        os._exit(3)
    segs.close()


def run_aggregator(engine, cfg, cpu):
    proc = aggregator_proc(cfg.workers)
    segs = _enter(engine, proc, L.ROLE_AGGREGATOR, 0, cpu)
    if batch_scheduled(cfg, cfg.cpus, proc):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    run, args = aggregator_args(segs, cfg)
    prefault(*args)
    _loop(segs, proc, lambda: run(*args, BUDGET_NS), lambda: run(*args, 0))
    segs.close()
