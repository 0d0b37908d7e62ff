"""Run one peer pipeline: feed, W workers and an aggregator as processes,
linked by one of the peer transports, on the engine's event stream.

    from benchmarks.peers import pipeline
    figures = pipeline.run("zmq-batch", events=200_000, symbols=1000, venues=4, workers=2)
    figures["events_per_s"], figures["latency_ns"]["99"], figures["table"]

Like the engine: the kernels are loaded before the fork, every process is
pinned where the engine would pin it (``config.cpu_plan``), dies with its
parent and ignores Ctrl-C (the parent stops them), and the feed starts once
every process is ready. Throughput is counted from the first result the
aggregator receives to its last; CPU time per process from its first event
to its end. Whatever happens, every process is stopped and the run's
directory (zmq socket files) removed before ``run`` returns or raises.
"""
import multiprocessing
import os
import queue
import shutil
import signal
import tempfile
import time

import numpy as np

from shmengine import layout as L
from shmengine._core import lib
from shmengine.book import new_book, process
from shmengine.config import Config, cpu_plan
from shmengine.hist import COUNTS_LEN, percentiles
from shmengine.market import generate, new_market, symbol_names
from shmengine.segments import partition_map

from . import fastfifo, mpqueue, stages, zmqipc
from .kernels import absorb, split

TRANSPORTS = {"mpqueue": mpqueue.Transport, "fifo": fastfifo.Transport,
              "zmq": zmqipc.Transport}
# key: (transport, batched)
PIPELINES = {f"{t}-{mode}": (t, mode == "batch") for t in TRANSPORTS for mode in ("batch", "1")}
POINTS = (50, 99, 99.9)
READY_TIMEOUT_S = 120.0
TIMER_SLACK_NS = 1_000


class PeerFailed(RuntimeError):
    """A peer process died, hung or never started; the message says which."""


def label(key):
    transport, batched = PIPELINES[key]
    return f"{TRANSPORTS[transport].label} {'batched' if batched else '1 event/msg'}"


def _warm(symbols, venues):
    """Compile or load every kernel the stages call, in both array flavours they
    see (writable, and read-only as ``np.frombuffer`` of bytes gives)."""
    m = new_market(symbols, venues, 0)
    buf = np.empty(64, L.EVENT)
    generate(*m.kernel_args(), buf, 0, 63, 64, 0, 0)
    split(buf, 64, np.zeros(symbols, np.uint16), np.empty(64, L.EVENT), np.zeros(2, np.int64),
          np.zeros(1, np.int64))
    rows = stages.new_table(symbols)
    hist = np.zeros(COUNTS_LEN, np.int64)
    for events in (buf, np.frombuffer(buf.tobytes(), L.EVENT)):
        book = new_book(np.arange(symbols), venues, symbols)
        out = np.empty(64, L.RESULT)
        k = process(events, 0, 64, 63, book, out, 0, 63, 0, np.zeros(3, np.int64), None, None,
                    None)
        for results in (out[:k], np.frombuffer(out[:k].tobytes(), L.RESULT)):
            absorb(results, rows, rows.view(np.uint64), hist, 0)


def _child(role, index, cpu, transport, barrier, finished, reports, body, args):
    lib.shme_set_parent_death_signal(signal.SIGKILL)
    lib.shme_set_timer_slack(TIMER_SLACK_NS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.sched_setaffinity(0, {cpu})
    if role == "feed":
        links = (transport.feed_side(),)
        endpoints = links[0]
    elif role == "worker":
        links = endpoints = transport.worker_side(index)
    else:
        links = endpoints = (transport.aggregator_side(),)
    barrier.wait(READY_TIMEOUT_S)
    report = body(*links, *args)
    report["cpu_s"] = time.process_time() - report.pop("cpu0")
    reports.put((role if role != "worker" else f"worker {index}", report))
    # Links close only once the aggregator has the whole stream: a zmq PUSH closed
    # right after its last send lost that message now and then, despite its linger.
    finished.wait()
    for e in endpoints:
        e.close()
    transport.finish()
    reports.close()
    reports.join_thread()


def run(key, events, symbols, venues, workers, seed=1, rate=0.0, batch=4096, timeout_s=None):
    """Run pipeline ``key`` (a PIPELINES key) on ``events`` events; returns its figures."""
    transport_name, batched = PIPELINES[key]
    ctx = multiprocessing.get_context("fork")
    partition = partition_map(symbol_names(symbols), workers)
    _warm(symbols, venues)
    engine_cfg = Config(workers=workers)
    per_message = max(1, batch // workers) if batched else 1
    depth_in = max(4, engine_cfg.ring_capacity // per_message)
    depth_out = max(4, workers * engine_cfg.result_ring_capacity // per_message)
    # a message may carry a whole batch (every event to one worker): two always fit
    in_bytes = max(depth_in * (per_message * L.EVENT.itemsize + 64),
                   2 * (batch * L.EVENT.itemsize + 64))
    out_bytes = max(depth_out * (per_message * L.RESULT.itemsize + 64),
                    2 * (batch * L.RESULT.itemsize + 64))
    cpus = cpu_plan(engine_cfg)
    tmpdir = tempfile.mkdtemp(prefix="shme-peers-")
    procs = []
    transport = None
    try:
        transport = TRANSPORTS[transport_name](ctx, workers, tmpdir, depth_in, depth_out,
                                               in_bytes, out_bytes)
        barrier = ctx.Barrier(workers + 2)
        finished = ctx.Event()
        reports = ctx.Queue()
        market = new_market(symbols, venues, seed)
        specs = [("feed", 0, cpus[0], stages.feed,
                  (market.kernel_args(), partition, events, batch, rate, batched))]
        for w in range(workers):
            owned = np.flatnonzero(partition == w)
            book = new_book(owned, venues, symbols,
                            max_orders=max(64 * len(owned) * venues, 1024))
            specs.append(("worker", w, cpus[1 + w], stages.worker, (book, batched)))
        specs.append(("aggregator", 0, cpus[-1], stages.aggregator, (workers, symbols, batched)))
        for role, index, cpu, body, args in specs:
            p = ctx.Process(target=_child, args=(role, index, cpu, transport, barrier, finished,
                                                 reports, body, args), daemon=True)
            p.start()
            procs.append((f"{role} {index}" if role == "worker" else role, p))
        got = _collect(procs, reports, timeout_s)
        finished.set()
        for _, p in procs:
            p.join(READY_TIMEOUT_S)
    finally:
        _stop(procs)
        if transport is not None:
            transport.close()
        shutil.rmtree(tmpdir, ignore_errors=True)
    return _figures(key, got, events, batch)


def _collect(procs, reports, timeout_s):
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    got = {}
    while len(got) < len(procs):
        try:
            name, report = reports.get(timeout=0.2)
            got[name] = report
            continue
        except queue.Empty:
            pass
        for name, p in procs:
            if name not in got and p.exitcode is not None:
                raise PeerFailed(f"{name} (pid {p.pid}) exited with status {p.exitcode} "
                                 f"before reporting")
        if deadline is not None and time.monotonic() > deadline:
            missing = [n for n, _ in procs if n not in got]
            raise PeerFailed(f"no report from {', '.join(missing)} within {timeout_s:.0f} s")
    return got


def _stop(procs):
    for _, p in procs:
        if p.exitcode is None:
            p.kill()
    for _, p in procs:
        p.join(5)


def _figures(key, got, events, batch):
    agg = got["aggregator"]
    seconds = (agg["t_end"] - agg["t_first"]) / 1e9
    lat, samples = percentiles(agg["hist"], POINTS)
    cpu = {name: r["cpu_s"] for name, r in got.items()}
    counters = np.sum([r["counters"] for n, r in got.items() if n.startswith("worker")], axis=0)
    return {
        "pipeline": key, "label": label(key), "events": int(got["feed"]["events"]),
        "batch": batch if PIPELINES[key][1] else 1,
        "results": int(agg["results"]), "seconds": seconds,
        "events_per_s": events / max(seconds, 1e-9),
        "latency_ns": {str(p): int(v) for p, v in lat.items()}, "latency_samples": samples,
        "cpu_s": cpu, "unknown_orders": int(counters[0]), "book_overflows": int(counters[1]),
        "bad_events": int(counters[2]), "table": agg["rows"],
    }

