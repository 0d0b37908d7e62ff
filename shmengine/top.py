"""``shmengine top NAME``: a live view of a running engine.

Every figure comes from plain loads of the shared segments (stats rows,
ring cursors, the snapshot header and the rows' ``updates`` counters) and
from /proc through psutil: nothing the engine does waits on it. Rates are
differences between two readings ``--interval`` apart.

    shmengine top prod                # q or Ctrl-C to quit
    shmengine top prod --once         # one frame as plain text, for scripts
"""
import os
import select
import sys
import termios
import time
import tty

import numpy as np
import psutil
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from . import layout as L
from .stats import format_link, proc_label

POINTS = (50, 99, 99.9)


class Reading:
    """One pass over an engine's shared counters."""

    def __init__(self, eng):
        segs = eng.segs
        self.t = time.monotonic()
        self.procs = segs.stats.procs.copy()
        self.rings = [(".".join(r.name.rsplit(".", 2)[-2:]), r.capacity, r.fill(), r.drops)
                      for r in segs.inputs + segs.outputs]
        hdr = segs.snap.header
        self.events = int(hdr["events"])
        self.results = int(hdr["results"])
        self.locked = int(hdr["locked"])
        self.crossed = int(hdr["crossed"])
        self.updates = np.array(segs.snap.rows["updates"])
        self.state = eng.state()


class Frame:
    """What one refresh shows: two readings, the latency histograms, CPU use."""

    def __init__(self, eng, before, after, cpu, top_symbols):
        self.eng = eng
        self.a, self.b = before, after
        self.dt = max(after.t - before.t, 1e-9)
        self.cpu = cpu
        self.top_symbols = top_symbols

    def rate(self, x, y):
        return (y - x) / self.dt

    def header(self):
        a, b, eng = self.a, self.b, self.eng
        text = Text()
        text.append(f"engine {eng.name}", style="bold")
        text.append(f"  {b.state}  {b.events:,} events  "
                    f"{self.rate(a.events, b.events):,.0f} events/s  "
                    f"{self.rate(a.results, b.results):,.0f} results/s  ")
        text.append(f"locked {b.locked}", style="yellow" if b.locked else "")
        text.append("  ")
        text.append(f"crossed {b.crossed}", style="red" if b.crossed else "")
        text.append(f"\n{len(eng.symbols):,} symbols, {eng.n_venues} venues, "
                    f"analytics {'on' if eng.analytics_enabled else 'off'}, "
                    f"rates over {self.dt:.1f} s", style="dim")
        return text

    def processes(self):
        t = Table(box=box.SIMPLE_HEAD, title="processes", title_justify="left", expand=False)
        for col in ("process", "pid", "core", "cpu %", "events/s", "batch", "wait %",
                    "lag", "drops"):
            t.add_column(col, justify="left" if col == "process" else "right")
        count = len(self.b.procs)
        for i, (pa, pb) in enumerate(zip(self.a.procs, self.b.procs)):
            events = int(pb["events"]) - int(pa["events"])
            batches = int(pb["batches"]) - int(pa["batches"])
            waits = int(pb["waits"]) - int(pa["waits"])
            turns = batches + waits
            pid = int(pb["pid"])
            cpu = self.cpu.get(pid)
            t.add_row(proc_label(pb, i, count), str(pid) if pid else "-",
                      str(int(pb["cpu"])) if pb["cpu"] >= 0 else "-",
                      "-" if cpu is None else f"{cpu:.0f}",
                      f"{events / self.dt:,.0f}",
                      f"{events / batches:,.1f}" if batches else "-",
                      f"{100 * waits / turns:.0f}" if turns else "-",
                      f"{int(pb['lag']):,}", f"{int(pb['drops']):,}")
        return t

    def rings(self):
        t = Table(box=box.SIMPLE_HEAD, title="rings", title_justify="left")
        for col in ("ring", "fill", "capacity", "fill %", "drops"):
            t.add_column(col, justify="left" if col == "ring" else "right")
        for name, cap, fill, drops in self.b.rings:
            pct = 100 * fill / cap
            t.add_row(name, f"{fill:,}", f"{cap:,}", Text(f"{pct:.0f}",
                      style="red" if pct > 90 else "yellow" if pct > 50 else ""), f"{drops:,}")
        return t

    def latency(self):
        t = Table(box=box.SIMPLE_HEAD, title="latency since start (us)", title_justify="left")
        t.add_column("stage")
        for p in POINTS:
            t.add_column(f"p{p:g}", justify="right")
        t.add_column("results", justify="right")
        for name, hist in self.eng.segs.stats.stage_histograms().items():
            n = hist.get_total_count()
            cells = [f"{hist.get_value_at_percentile(p) / 1e3:,.1f}" if n else "-"
                     for p in POINTS]
            t.add_row(name, *cells, f"{n:,}")
        return t

    def symbols(self):
        t = Table(box=box.SIMPLE_HEAD, title="most active symbols", title_justify="left")
        for col in ("symbol", "updates/s", "bid", "ask", "last", "volume", ""):
            t.add_column(col, justify="left" if col in ("symbol", "") else "right")
        delta = self.b.updates.astype(np.int64) - self.a.updates.astype(np.int64)
        k = min(self.top_symbols, len(delta))
        if k <= 0:
            return t
        busiest = np.argsort(-delta, kind="stable")[:k]
        for s in busiest:
            if delta[s] <= 0:
                break
            row = self.eng.segs.snap.row(int(s))
            flags = int(row["flags"])
            state = "crossed" if flags & L.RFLAG_CROSSED else \
                "locked" if flags & L.RFLAG_LOCKED else ""
            t.add_row(self.eng.symbols.name(int(s)), f"{delta[s] / self.dt:,.0f}",
                      _px(row["bid_px"]), _px(row["ask_px"]), _px(row["last_px"]),
                      f"{int(row['volume']):,}", state)
        return t

    def link(self):
        lines = format_link(self.eng.segs.stats.link_counters())
        return Text("\n".join(lines), style="dim") if lines else Text("")

    def render(self):
        return Group(self.header(), self.link(), self.processes(), self.rings(), self.latency(),
                     self.symbols())


def _px(px):
    return f"{px / L.PRICE_SCALE:,.4f}" if px else "-"


class CpuMeter:
    """CPU % of each engine process between two calls (psutil keeps the last reading)."""

    def __init__(self):
        self.procs = {}

    def sample(self, pids):
        out = {}
        for pid in pids:
            if pid <= 0:
                continue
            proc = self.procs.get(pid)
            try:
                if proc is None:
                    proc = self.procs[pid] = psutil.Process(pid)
                    proc.cpu_percent(None)
                    continue
                out[pid] = proc.cpu_percent(None)
            except psutil.Error:
                self.procs.pop(pid, None)
        return out


class Keys:
    """q from the terminal without waiting for Enter; nothing when stdin is not a tty."""

    def __init__(self, stream=sys.stdin):
        self.fd = stream.fileno() if stream is not None and stream.isatty() else None
        self.saved = None

    def __enter__(self):
        if self.fd is not None:
            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def quit_within(self, seconds):
        """Wait up to ``seconds``; True if q (or Q, or Esc) was pressed."""
        if self.fd is None:
            time.sleep(seconds)
            return False
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                key = os.read(self.fd, 1)
                if key in (b"q", b"Q", b"\x1b") or not key:
                    return True
        return False


# ---------------------------------------------------------------- command

def add_parser(sub):
    p = sub.add_parser("top", help="live view: processes, rings, latency, busiest symbols")
    p.add_argument("name", nargs="?", default="default")
    p.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                   help="seconds between refreshes (rates are over this interval)")
    p.add_argument("--once", action="store_true", help="print one frame and exit")
    p.add_argument("--symbols", type=int, default=10, metavar="N",
                   help="how many of the most active symbols to list")
    p.set_defaults(func=cmd_top)


def _batch(eng, before, cpu, pids, args):
    """Output that is not a terminal (a pipe, a file): a text frame every interval, as
    ``top -b`` does, until the engine stops."""
    console = Console(width=120, highlight=False)
    try:
        while True:
            time.sleep(args.interval)
            after = Reading(eng)
            # rendered apart and written plainly: rich would exit 1 on a closed pipe
            with console.capture() as frame:
                console.print(Frame(eng, before, after, cpu.sample(pids), args.symbols)
                              .render())
            sys.stdout.write(frame.get() + "\n")
            sys.stdout.flush()
            before = after
            if not eng.running():
                print(f"engine {eng.name} is {eng.state()}")
                return 0
    except KeyboardInterrupt:
        return 0


def cmd_top(args):
    from .attach import attach
    if args.interval <= 0:
        raise ValueError("--interval must be > 0 seconds")
    if args.symbols < 0:
        raise ValueError("--symbols must be >= 0")
    cpu = CpuMeter()
    with attach(args.name) as eng:
        pids = [int(p) for p in eng.segs.stats.procs["pid"]]
        cpu.sample(pids)
        before = Reading(eng)
        if args.once:
            time.sleep(args.interval)
            frame = Frame(eng, before, Reading(eng), cpu.sample(pids), args.symbols)
            Console(width=120 if not sys.stdout.isatty() else None,
                    highlight=False).print(frame.render())
            return 0
        console = Console(highlight=False)
        if not console.is_terminal:
            return _batch(eng, before, cpu, pids, args)
        try:
            with Keys() as keys, Live(console=console, screen=console.is_terminal,
                                      auto_refresh=False) as live:
                live.update(Text(f"engine {eng.name}: first reading in {args.interval:g} s"
                                 f" (q to quit)"), refresh=True)
                while not keys.quit_within(args.interval):
                    after = Reading(eng)
                    frame = Frame(eng, before, after, cpu.sample(pids), args.symbols)
                    live.update(Group(frame.render(), Text("q to quit", style="dim")),
                                refresh=True)
                    before = after
                    if not eng.running():
                        break
        except KeyboardInterrupt:
            pass
        if not eng.running():
            print(f"engine {eng.name} is {eng.state()}")
    return 0
