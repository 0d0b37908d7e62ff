"""Per-event, per-row and per-call costs of the engine's parts, as a pyperf suite.

    python benchmarks/perf_suite.py -o run1.json          # about 2 min (6 processes x 3)
    python benchmarks/perf_suite.py --fast -o run2.json
    python -m pyperf compare_to run1.json run2.json
    python benchmarks/perf_suite.py -b ring -b book --fast -o part.json

``-b NAME`` (repeatable) keeps the benchmark of that full name, or else the
ones whose name starts with NAME (``ring``, ``seqlock``, ``attach``,
``book``, ``market``).

What each benchmark times, after its kernels are compiled (or loaded from
numba's cache) and run once outside the timing:

- ``ring_publish_consume_batchB``, per event: one process publishes B
  EVENT records into a shared-memory SPSC ring (``shmengine.ring``, the
  engine's ring capacity) and consumes them (checking each record's seq),
  every batch. The loop is compiled, so the figure is the ring's own cost:
  record copies, the release stores and the wait-flag checks, amortised
  over the batch.
  (``bench_ring.py`` gives the two-process throughput.)
- ``seqlock_read_row``, per row: ``snapshot.read_seqlocked`` of each row of
  a 1,000-symbol snapshot table in turn, from compiled code.
- ``seqlock_read_table_1000``, per call: ``SnapshotTable.table()`` (a new
  array of 1,000 consistent rows), from Python.
- ``attach_snapshot`` and ``attach_table``, per call: ``eng.snapshot(sym)``
  and ``eng.table()`` on a live engine that the suite starts
  (``shmengine run --linger``), waits to drain, and stops at the end.
- ``book_process_books`` and ``book_process_analytics``, per event:
  ``book.process`` in batches of 1,024 over a slice of the synthetic market
  (1,000 symbols, 4 venues), from books already filled by the events before
  it, without and with the built-in analytics. Each loop restores that
  state first, outside the timing, so every loop does the same work.
- ``market_generate_into``, per event: ``MarketState.generate_into`` of
  16,384 events per call into a ring, the market already in steady state.

The private segments (the ring, the snapshot table) are unlinked as soon as
they are mapped, so none outlives its process whatever happens to it.
"""
import collections
import functools
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np
import psutil
import pyperf
from numba import njit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import shmengine  # noqa: E402
from shmengine import analytics, shm  # noqa: E402
from shmengine import layout as L  # noqa: E402
from shmengine.atomics import load_acquire  # noqa: E402
from shmengine.book import N_COUNTERS, new_book, process  # noqa: E402
from shmengine.config import Config  # noqa: E402
from shmengine.market import new_market  # noqa: E402
from shmengine.ring import CONSUMER, CONSUMER_BELL, PRODUCER, Ring, publish, release  # noqa: E402
from shmengine.ring_probe import templates  # noqa: E402
from shmengine.snapshot import SnapshotTable, read_seqlocked  # noqa: E402

RING_BATCHES = (1, 8, 64, 256, 1024)
N_SYMBOLS, N_VENUES = 1000, 4
BOOK_BATCH = 1024
BOOK_WARM_EVENTS = 1 << 19    # fill the books before the timed slice
BOOK_EVENTS = 1 << 17         # the timed slice, per loop
MARKET_WARM_EVENTS = 1 << 19
MARKET_CHUNK = 1 << 14
ENGINE_EVENTS = 200_000
ENGINE_START_S = 180
ENGINE_STOP_S = 60


def _private_name(part):
    return f"/{shm.PREFIX}perfsuite-{os.getpid()}-{uuid.uuid4().hex[:6]}.{part}"


# ---------------------------------------------------------------- ring

@njit(cache=True)
def publish_consume(hdr64, hdr32, slots, mask, src, batches, batch):
    """Publish ``batches`` batches of ``batch`` records, consuming each; returns the
    records that came out wrong (seq not their position), or -1 if the ring had no room."""
    capacity = mask + 1
    tail = load_acquire(hdr64, PRODUCER)
    head_seen = load_acquire(hdr64, CONSUMER)
    errors = 0
    for _ in range(batches):
        if tail + batch - head_seen > capacity:
            head_seen = load_acquire(hdr64, CONSUMER)
            if tail + batch - head_seen > capacity:
                return -1
        for i in range(batch):
            k = (tail + i) & mask
            slots[k] = src[(tail + i) & 255]
            slots[k].seq = tail + i
        tail += batch
        publish(hdr64, hdr32, tail, hdr32, CONSUMER_BELL)
        head = load_acquire(hdr64, CONSUMER)
        available = load_acquire(hdr64, PRODUCER)
        for p in range(head, available):
            if slots[p & mask].seq != np.uint64(p):  # seq is unsigned: compare as integers
                errors += 1
        release(hdr64, hdr32, available)
    return errors


@functools.cache
def ring_state():
    name = _private_name("ring")
    ring = Ring.create(name, Config.ring_capacity, L.EVENT)
    shm.unlink(name)
    src = templates()
    publish_consume(ring.hdr64, ring.hdr32, ring.slots, ring.mask, src, 4, 64)
    return ring, src


def time_ring(loops, batch):
    ring, src = ring_state()
    t0 = time.perf_counter()
    errors = publish_consume(ring.hdr64, ring.hdr32, ring.slots, ring.mask, src, loops, batch)
    dt = time.perf_counter() - t0
    if errors < 0:
        raise RuntimeError("ring benchmark: the consumer fell behind a whole ring")
    if errors:
        raise RuntimeError(f"ring benchmark: {errors} records came out with the wrong seq")
    return dt


# ---------------------------------------------------------------- seqlock

@njit(cache=True)
def read_rows(words, n_rows, row_words, out, passes):
    """Read every row in turn into row 0 of ``out``, ``passes`` times; returns retries."""
    retries = 0
    for _ in range(passes):
        for row in range(n_rows):
            retries += read_seqlocked(words, row, row_words, out, 0)
    return retries


@functools.cache
def snapshot_state():
    name = _private_name("snap")
    table = SnapshotTable.create(name, N_SYMBOLS, N_VENUES)
    shm.unlink(name)
    rows = table.rows
    rows["seqlock"] = 2
    rows["bid_px"] = 1_000_000 + np.arange(N_SYMBOLS)
    rows["ask_px"] = rows["bid_px"] + 100
    rows["bid_qty"] = rows["ask_qty"] = 100
    out = np.zeros(1, L.SNAPSHOT_ROW).view(np.uint64)
    read_rows(table.words, N_SYMBOLS, table.row_words, out, 1)
    table.table()
    return table, out


def time_seqlock_rows(loops):
    table, out = snapshot_state()
    t0 = time.perf_counter()
    read_rows(table.words, N_SYMBOLS, table.row_words, out, loops)
    return time.perf_counter() - t0


def time_seqlock_table(loops):
    table, _ = snapshot_state()
    read = table.table
    t0 = time.perf_counter()
    for _ in range(loops):
        read()
    return time.perf_counter() - t0


# ---------------------------------------------------------------- attach

@functools.cache
def attached(engine_name):
    eng = shmengine.attach(engine_name)
    sym = eng.symbols.name(len(eng.symbols) // 2)
    eng.snapshot(sym)
    eng.table()
    return eng, sym


def time_attach_snapshot(loops, engine_name):
    eng, sym = attached(engine_name)
    snapshot = eng.snapshot
    t0 = time.perf_counter()
    for _ in range(loops):
        snapshot(sym)
    return time.perf_counter() - t0


def time_attach_table(loops, engine_name):
    eng, _ = attached(engine_name)
    table = eng.table
    t0 = time.perf_counter()
    for _ in range(loops):
        table()
    return time.perf_counter() - t0


class LiveEngine:
    """``shmengine run --linger`` in a subprocess, drained and attachable until ``stop()``."""

    def __init__(self, events):
        self.name = f"perfsuite{uuid.uuid4().hex[:8]}"
        self.events = events
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shmengine.cli", "run", "--linger", "--events", str(events),
             "--name", self.name], stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.children = {}  # pid: psutil.Process, every one seen while starting
        self.drained = False
        try:
            self._wait_drained()
        except BaseException:
            self.stop()
            raise

    def _output(self):
        self.log.seek(0)
        return self.log.read().strip()

    def _wait_drained(self):
        deadline = time.monotonic() + ENGINE_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine {self.name} exited ({self.proc.returncode}) before "
                                   f"draining:\n{self._output()}")
            try:
                for child in psutil.Process(self.proc.pid).children(recursive=True):
                    self.children.setdefault(child.pid, child)
                with shmengine.attach(self.name) as eng:
                    if eng.state() == "stopped":
                        self.drained = True
                        return
            except (shm.SegmentError, psutil.NoSuchProcess):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"engine {self.name} did not drain {self.events} events within "
                           f"{ENGINE_START_S} s")

    def stop(self):
        """Stop the engine and check that neither its processes nor its segments are left;
        raises if something was.

        A drained engine gets ``shmengine stop``; one still starting (the suite was
        interrupted) does not act on that before it runs, so it gets SIGINT at once;
        SIGKILL is the last resort.
        """
        if self.drained and self.proc.poll() is None:
            subprocess.run([sys.executable, "-m", "shmengine.cli", "stop", self.name,
                            "--timeout", str(ENGINE_STOP_S)],
                           capture_output=True, cwd=ROOT, timeout=ENGINE_STOP_S + 10)
        for sig in (signal.SIGINT, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            self.proc.send_signal(sig)
            try:
                self.proc.wait(ENGINE_STOP_S)
            except subprocess.TimeoutExpired:
                pass
        self.proc.wait()
        alive = [c for c in self.children.values() if c.is_running()]
        for c in alive:
            c.kill()
        left = shm.engine_segments(self.name)
        for seg in left:
            shm.unlink(seg)
        self.log.close()
        if alive or left:
            raise RuntimeError(f"engine {self.name} left processes {[c.pid for c in alive]} "
                               f"and segments {left} (removed)")


# ---------------------------------------------------------------- book

@njit(cache=True, _nrt=False)
def process_slice(ring, start, n_events, book, out, counters, ana, bars, signals):
    """Events ``[start, start + n_events)`` of ``ring`` through the book kernel in
    batches, as a worker calls it; returns the records written."""
    mask = ring.shape[0] - 1
    out_mask = out.shape[0] - 1
    written = 0
    end = start + n_events
    for position in range(start, end, BOOK_BATCH):
        written += process(ring, position, min(BOOK_BATCH, end - position), mask, book, out,
                           written, out_mask, 0, counters, ana, bars, signals)
    return written


BookRun = collections.namedtuple("BookRun", [
    "ring",      # EVENT ring: the warm-up events, then the timed slice
    "book", "ana", "bars", "signals",  # ana, bars, signals: None for books only
    "out",       # RESULT ring the kernel writes around
    "counters",  # what the kernel counts as wrong: must stay zero
    "saved",     # (array of the state, its copy after the warm-up) pairs
])


@functools.cache
def book_run(with_analytics):
    total = BOOK_WARM_EVENTS + BOOK_EVENTS
    ring = np.zeros(1 << (total - 1).bit_length(), L.EVENT)
    ring[:total] = new_market(N_SYMBOLS, N_VENUES, seed=1).generate(total)
    owned = np.arange(N_SYMBOLS)
    book = new_book(owned, N_VENUES, N_SYMBOLS, max_orders=64 * N_SYMBOLS * N_VENUES)
    out = np.zeros(Config.result_ring_capacity, L.RESULT)
    ana = bars = signals = None
    if with_analytics:
        ana = analytics.new_analytics(owned, N_VENUES, N_SYMBOLS, analytics.make_params())
        bars, signals = out.view(L.BAR_RECORD), out.view(L.SIGNAL_RECORD)
    counters = np.zeros(N_COUNTERS, np.int64)
    process_slice(ring, 0, BOOK_WARM_EVENTS, book, out, counters, ana, bars, signals)
    saved = [(a, a.copy()) for state in (book, ana) if state is not None for a in state
             if isinstance(a, np.ndarray)]
    return BookRun(ring, book, ana, bars, signals, out, counters, saved)


def time_book(loops, with_analytics):
    run = book_run(with_analytics)
    total = 0.0
    for _ in range(loops):
        for array, copy in run.saved:
            np.copyto(array, copy)
        t0 = time.perf_counter()
        process_slice(run.ring, BOOK_WARM_EVENTS, BOOK_EVENTS, run.book, run.out, run.counters,
                      run.ana, run.bars, run.signals)
        total += time.perf_counter() - t0
    if run.counters.any():
        raise RuntimeError(f"book benchmark: the kernel counted unknown orders, bad events or "
                           f"overflows {run.counters.tolist()}: the state was not restored")
    return total


# ---------------------------------------------------------------- market

@functools.cache
def market_state():
    m = new_market(N_SYMBOLS, N_VENUES, seed=1)
    ring = np.zeros(1 << 16, L.EVENT)
    position = 0
    while position < MARKET_WARM_EVENTS:
        position += m.generate_into(ring, position, MARKET_CHUNK, position, 0)
    return m, ring, [position]


def time_market(loops):
    m, ring, cursor = market_state()
    position = cursor[0]
    generate_into = m.generate_into
    t0 = time.perf_counter()
    for _ in range(loops):
        position += generate_into(ring, position, MARKET_CHUNK, position, 0)
    dt = time.perf_counter() - t0
    cursor[0] = position
    return dt


# ---------------------------------------------------------------- suite

def benchmarks(engine_name):
    """(name, time function, its extra arguments, inner loops) in the order they run."""
    suite = [(f"ring_publish_consume_batch{b}", time_ring, (b,), b) for b in RING_BATCHES]
    suite += [
        ("seqlock_read_row", time_seqlock_rows, (), N_SYMBOLS),
        ("seqlock_read_table_1000", time_seqlock_table, (), 1),
        ("attach_snapshot", time_attach_snapshot, (engine_name,), 1),
        ("attach_table", time_attach_table, (engine_name,), 1),
        ("book_process_books", time_book, (False,), BOOK_EVENTS),
        ("book_process_analytics", time_book, (True,), BOOK_EVENTS),
        ("market_generate_into", time_market, (), MARKET_CHUNK),
    ]
    return suite


def matches(name, wanted, names):
    """A full name selects that benchmark alone, anything else the names it starts."""
    return name == wanted if wanted in names else name.startswith(wanted)


def selected(suite, wanted):
    if not wanted:
        return suite
    names = {b[0] for b in suite}
    return [b for b in suite if any(matches(b[0], w, names) for w in wanted)]


def _worker_args(cmd, args):
    """Workers run the same selection against the same engine, so task ids line up."""
    for p in args.bench or ():
        cmd.extend(["-b", p])
    if args.engine:
        cmd.extend(["--engine", args.engine])


def usage_error(runner, message):
    runner.argparser.exit(2, f"{runner.argparser.prog}: error: {message}\n")


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def main():
    runner = pyperf.Runner(processes=6, values=3, add_cmdline_args=_worker_args)
    runner.argparser.add_argument(
        "-b", "--bench", action="append", metavar="NAME",
        help="run only the benchmark of that full name, or those whose name starts with NAME "
             "(repeatable): ring, seqlock, attach, book, market")
    runner.argparser.add_argument(
        "--engine", metavar="NAME",
        help="read the attach benchmarks from this running engine instead of starting one")
    args = runner.parse_args()
    suite = benchmarks(None)
    for wanted in args.bench or ():
        if not selected(suite, [wanted]):
            usage_error(runner, f"-b {wanted}: no benchmark has that name or starts with it; "
                                f"names: {', '.join(b[0] for b in suite)}")
    wants_engine = any(b[0].startswith("attach") for b in selected(suite, args.bench))
    engine = None
    if wants_engine and not args.worker:
        if args.engine:
            try:
                shmengine.attach(args.engine).close()
            except shm.SegmentError as exc:
                usage_error(runner, f"--engine {args.engine}: {exc}")
        else:
            signal.signal(signal.SIGTERM, _on_sigterm)
            engine = LiveEngine(ENGINE_EVENTS)
            args.engine = engine.name
    try:
        for name, func, extra, inner in selected(benchmarks(args.engine), args.bench):
            runner.bench_time_func(name, func, *extra, inner_loops=inner)
    finally:
        if engine is not None:
            engine.stop()


if __name__ == "__main__":
    main()
