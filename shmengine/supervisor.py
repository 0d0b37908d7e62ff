"""Supervisor: creates an engine's segments, starts and watches its processes,
drains and stops it, and leaves nothing behind.

States go starting -> running -> draining -> stopped (or failed), always
through ``_set_state``. A process that dies or stops heartbeating fails the
engine: the supervisor says which and why, stops the rest, removes every
segment and exits non-zero.
"""
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time

import numpy as np
import psutil

from . import layout as L
from . import memory
from . import process as P
from . import sources
from ._core import lib
from .config import cpu_plan
from .export import save_json, save_table
from .table import combine
from .segments import EngineSegments, partition_map
from .stats import format_link

POLL_S = 0.05
STARTUP_POLL_S = 0.002
STARTUP_GRACE_S = 120.0   # a cold numba cache compiles for tens of seconds
DRAIN_TIMEOUT_S = 30.0
COMPILE_NOTICE_S = 2.0    # kernels not loaded by then are being compiled: say so
COMPILE_NOTICE = ("compiling the engine's kernels: the first start after an install or an "
                  "upgrade takes tens of seconds; later starts load them from numba's cache")
KERNELS_NOTICE = ("compiling the worker loop for the run's kernels: a few seconds at each "
                  "start, tens of seconds the first time after an install or an upgrade")


class EngineFailed(Exception):
    pass


class StartInterrupted(Exception):
    """SIGINT or SIGTERM while the engine was being set up (its kernels compiling)."""


def process_age_s(pid="self"):
    """Seconds since a process started, to the kernel's clock tick (10 ms).

    Its start in ticks after boot (/proc/PID/stat) against CLOCK_BOOTTIME:
    psutil's create_time adds the boot time, which /proc/stat gives in whole
    seconds, so it can be off by up to a second.
    """
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime
    return time.clock_gettime(time.CLOCK_BOOTTIME) - started


def describe_exit(code):
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


class Supervisor:
    def __init__(self, cfg, out=sys.stdout):
        self.cfg = cfg
        self.out = out
        self.segs = None
        self.children = []
        self.stop_requested = False
        self.started_ns = 0
        self.first_snapshot_s = None  # process start -> first published snapshot row
        self.started = False  # every process reached RUN_RUNNING
        self.setting_up = False  # in start(): a stop request interrupts it

    def _set_state(self, state):
        self.segs.info["run_state"] = state

    def _on_signal(self, signum, frame):
        self.stop_requested = True
        if self.setting_up:
            # A cold numba cache compiles for tens of seconds: stop now, not after.
            self.setting_up = False
            raise StartInterrupted()

    def start(self):
        self.setting_up = True
        try:
            self._start()
        finally:
            self.setting_up = False
        if self.stop_requested:
            raise StartInterrupted()

    def _start(self):
        cfg = self.cfg
        P.user_kernels(cfg)  # a broken kernel stops the start before anything is created
        me = psutil.Process()
        names = sources.checked_names(cfg)
        sources.taken(cfg, names)  # a bad share of the symbols fails here, not in the feed
        cfg.symbols = len(names)
        cfg.venues = sources.source_venues(cfg)
        owned = np.bincount(partition_map(names, cfg.workers), minlength=cfg.workers)
        memory.check(cfg, owned.tolist())  # before anything is created
        self.segs = EngineSegments.create(cfg, names, os.getpid(),
                                          int(me.create_time() * 1000),
                                          P.analytics_params(cfg))
        cfg.cpus = cpus = cpu_plan(cfg)  # resolved here: each child pins itself to one CPU
        notice = KERNELS_NOTICE if cfg.kernels else COMPILE_NOTICE
        with notice_if_slow(COMPILE_NOTICE_S, notice, self.out):
            P.preload(self.segs, cfg)
        ctx = multiprocessing.get_context("fork")
        specs = [(P.run_feed, (cfg.name, cfg, cpus[0]))]
        specs += [(P.run_worker, (cfg.name, cfg, w, cpus[1 + w])) for w in range(cfg.workers)]
        specs += [(P.run_aggregator, (cfg.name, cfg, cpus[-1]))]
        self.started_ns = lib.shme_monotonic_ns()
        for target, args in specs:
            p = ctx.Process(target=P.child_main, args=(target, *args), daemon=True)
            p.start()
            self.children.append(p)

    def _check_children(self, startup):
        now = lib.shme_monotonic_ns()
        procs = self.segs.stats.procs
        for i, p in enumerate(self.children):
            code = p.exitcode
            if code is not None and code != 0:
                raise EngineFailed(f"{L.proc_name(i, len(self.children))} (pid {p.pid}) "
                                   f"{describe_exit(code)}")
            beat = int(procs[i]["heartbeat_ns"])
            limit = STARTUP_GRACE_S if startup or beat == 0 else self.cfg.heartbeat_timeout
            since = (now - (beat or self.started_ns)) / 1e9
            if code is None and since > limit:
                raise EngineFailed(f"{L.proc_name(i, len(self.children))} (pid {p.pid}) sent no "
                                   f"heartbeat for {since:.1f} s: hung")

    def wait(self):
        """Run until stopped, the event limit or the duration."""
        cfg = self.cfg
        t_start = time.monotonic()
        draining_since = None
        while True:
            self._check_children(startup=not self.started)
            procs = self.segs.stats.procs
            # run_ns: the process reached its loop (a short run may be past it, stopped,
            # by the time this looks)
            if not self.started and all(int(t) > 0 for t in procs["run_ns"]):
                self.started = True
                self._set_state(L.RUN_RUNNING)
            if self.first_snapshot_s is None and self.segs.snap.header["results"] > 0:
                self.first_snapshot_s = process_age_s()
            if all(p.exitcode == 0 for p in self.children):
                return
            over = cfg.duration and time.monotonic() - t_start >= cfg.duration
            if (self.stop_requested or over or self.segs.info["stop_request"]) \
                    and draining_since is None:
                self.segs.info["stop_request"] = 1
                self._set_state(L.RUN_DRAINING)
                draining_since = time.monotonic()
            if draining_since is not None and time.monotonic() - draining_since > DRAIN_TIMEOUT_S:
                raise EngineFailed(f"the engine did not drain within {DRAIN_TIMEOUT_S:.0f} s")
            if self.first_snapshot_s is None and draining_since is None:
                time.sleep(STARTUP_POLL_S)
                continue
            if cfg.events and procs[P.FEED]["events"] >= cfg.events and draining_since is None:
                self._set_state(L.RUN_DRAINING)
                draining_since = time.monotonic()
            time.sleep(POLL_S)

    def linger(self):
        self.segs.info["stop_request"] = 0
        while not (self.stop_requested or self.segs.info["stop_request"]):
            time.sleep(POLL_S)

    def kill_children(self):
        for p in self.children:
            if p.exitcode is None:
                p.kill()
        for p in self.children:
            p.join(timeout=5)

    def close(self):
        if self.segs is not None:
            self.segs.close()
            self.segs.unlink()
            self.segs = None

    def elapsed_s(self):
        """The feed's start to the last snapshot row published: the run's own span, not
        the supervisor's polling."""
        start = int(self.segs.stats.procs[P.FEED]["run_ns"]) or self.started_ns
        end = int(self.segs.snap.header["publish_ts"]) or lib.shme_monotonic_ns()
        return max(end - start, 0) / 1e9

    def summary(self, elapsed_s):
        """The run's figures as a dict (what --summary-json writes)."""
        stats = self.segs.stats
        feed = stats.procs[P.FEED]
        workers = stats.procs[1:1 + self.cfg.workers]
        events = int(feed["events"])
        stages = stats.stage_histograms()
        hist = stages["total"]
        return {
            "name": self.cfg.name, "workers": self.cfg.workers, "wait": self.cfg.wait,
            "symbols": self.cfg.symbols, "venues": self.cfg.venues, "rate": self.cfg.rate,
            "events": events, "seconds": elapsed_s,
            "events_per_s": events / max(elapsed_s, 1e-9),
            "results": int(self.segs.snap.header["results"]),
            "latency_ns": {str(p): hist.get_value_at_percentile(p)
                           for p in (50, 90, 99, 99.9, 99.99)},
            "latency_max_ns": hist.get_max_value(),
            "latency_samples": hist.get_total_count(),
            "latency_hdr": hist.encode().decode() if hist.get_total_count() else "",
            "stages": {name: h.encode().decode() if h.get_total_count() else ""
                       for name, h in stages.items()},
            "stage_latency_ns": {name: {str(p): h.get_value_at_percentile(p) for p in (50, 99)}
                                 for name, h in stages.items()},
            "cpu_s": stats.cpu_seconds(),
            "link": stats.link_counters(),
            "first_snapshot_s": self.first_snapshot_s,
            "started": self.started,
            "drops": int(feed["drops"]),
            "unknown_orders": int(workers["unknown_orders"].sum()),
            "bad_events": int(workers["bad_events"].sum() + feed["bad_events"]),
            "book_overflows": int(workers["book_overflows"].sum()),
        }


def format_summary(d):
    lines = [
        f"engine {d['name']}: {d['events']:,} events in {d['seconds']:.2f} s "
        f"({d['events_per_s']:,.0f} events/s), {d['results']:,} results, "
        f"{d['workers']} worker(s), wait {d['wait']}",
        "latency receive -> snapshot (ns): " + "  ".join(
            f"p{p} {v:,}" for p, v in d["latency_ns"].items())
        + f"  ({d['latency_samples']:,} samples)",
        "by stage, p50 / p99 (us): " + "  ".join(
            f"{name} {v['50'] / 1e3:,.1f} / {v['99'] / 1e3:,.1f}"
            for name, v in d["stage_latency_ns"].items() if name != "total"),
        "cpu (s): " + "  ".join(f"{label} {s:.2f}" for label, s in d["cpu_s"].items()),
        *format_link(d["link"]),
    ]
    if d["first_snapshot_s"] is not None:
        lines.append(f"first snapshot published {d['first_snapshot_s']:.2f} s after start")
    if not d["started"]:
        lines.append("stopped while the processes were still starting (on a cold numba "
                     "cache they compile their kernels first; later starts load them)")
    if d["drops"] or d["unknown_orders"] or d["bad_events"] or d["book_overflows"]:
        lines.append(f"dropped {d['drops']:,}, unknown orders {d['unknown_orders']:,}, "
                     f"bad events {d['bad_events']:,}, book overflows {d['book_overflows']:,}")
    return "\n".join(lines)


@contextlib.contextmanager
def notice_if_slow(delay_s, text, stream):
    """Print ``text`` if the block still runs after ``delay_s`` seconds. The thread
    that would print it has ended when the block is left (the supervisor forks next)."""
    timer = threading.Timer(delay_s, _say, (text, stream))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()


def silence(stream):
    """Point a stream whose reader went away at /dev/null, so that later writes
    (and the interpreter's flush at exit) do not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stream.fileno())
    os.close(devnull)


def _say(text, stream):
    """Print a line. A reader that went away (`shmengine run | head -1`) loses the
    lines, not the run."""
    try:
        print(text, file=stream, flush=True)
    except BrokenPipeError:
        silence(stream)


def run(cfg, out=sys.stdout, err=sys.stderr):
    """Run an engine to the end; returns the process exit code."""
    sup = Supervisor(cfg, out)
    old = {s: signal.signal(s, sup._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            sup.start()
        except StartInterrupted:
            _say(f"engine {cfg.name} stopped before it started", out)
            return 0
        _say(f"engine {cfg.name} running: {cfg.symbols} symbols, {cfg.venues} venues, "
             f"{cfg.workers} worker(s), pid {os.getpid()}", out)
        usable = len(os.sched_getaffinity(0))
        if cfg.wait == "spin" and cfg.n_procs > usable:
            _say(f"shmengine: note: wait spin with {cfg.n_procs} processes on {usable} usable "
                 f"CPUs: spinners share them by time slice and stall each other; --wait "
                 f"adaptive runs faster here (`shmengine doctor` says more)", err)
        try:
            sup.wait()
        except EngineFailed as exc:
            sup._set_state(L.RUN_FAILED)
            sup.kill_children()
            _say(f"shmengine: engine {cfg.name} failed: {exc}; stopped it", err)
            return 1
        elapsed = sup.elapsed_s()
        sup._set_state(L.RUN_STOPPED)
        if cfg.linger:
            _say(f"engine {cfg.name} drained; serving its final state until "
                 f"`shmengine stop {cfg.name}`", out)
            sup.linger()
        figures = sup.summary(elapsed)
        _say(format_summary(figures), out)
        code = _save(cfg, sup.segs, figures, out, err)
        if sup.segs.stats.link["journaling"] == L.JOURNAL_FAILED:
            _say(f"shmengine: error: the journal {cfg.journal} stopped early (a write failed, "
                 "see above): it misses the run's later events", err)
            code = 1
        if sources.parse(cfg.source)[0] in (L.SRC_ITCH, L.SRC_JOURNAL) \
                and sup.segs.stats.link["lost"]:
            _say(f"shmengine: error: source {cfg.source} could not be read to its end (see "
                 "above): the run misses what follows the damage", err)
            code = 1
        return code
    finally:
        sup.kill_children()
        sup.close()
        for s, h in old.items():
            signal.signal(s, h)


def _save(cfg, segs, figures, out, err):
    """Write what the run was asked to keep; a write that fails (a full disk) is one
    line and exit code 1, and leaves no partial file."""
    path = cfg.save_snapshot
    try:
        if path:
            save_table(path, combine(segs.snap.table(), segs.ana.table()), segs.symbol_names())
            _say(f"snapshot table saved to {path}", out)
        path = cfg.summary_json
        if path:
            save_json(path, figures)
    except OSError as exc:
        _say(f"shmengine: error: could not write {path}: {exc.strerror or exc}", err)
        return 1
    return 0


def engine_alive(info):
    """True if the engine's supervisor (pid and start time) still runs."""
    pid = int(info["supervisor_pid"])
    try:
        p = psutil.Process(pid)
        # A killed supervisor nobody has reaped yet is a zombie: gone all the same.
        return int(p.create_time() * 1000) == int(info["supervisor_start"]) and \
            p.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
