"""The ``shmengine`` command: one function per subcommand, beside its parser.

Errors a user can cause print one line (``shmengine: error: ...``) and exit
non-zero, without a traceback.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import psutil

from . import layout as L
from . import shm
from .config import ConfigError
from .stats import format_link, proc_label

EXIT_USAGE = 2
EXIT_ERROR = 1


class CliError(Exception):
    pass


def fmt_price(px):
    return f"{px / L.PRICE_SCALE:,.4f}" if px else "-"


# ---------------------------------------------------------------- run

def add_run(sub):
    p = sub.add_parser("run", help="start an engine and run it until stopped")
    p.add_argument("config", nargs="?", help="TOML config file (flags override it)")
    p.add_argument("--source", metavar="SPEC",
                   help="synthetic (default), itch:FILE, journal:DIR or udp://GROUP:PORT"
                        "[?retransmit=HOST:PORT&interface=IP&clock=shared&symbols=publisher]")
    add_engine_flags(p)
    p.set_defaults(func=cmd_run)


def add_engine_flags(p):
    """The flags of `run` and `replay`: each overrides the config key of its name."""
    p.add_argument("--name")
    p.add_argument("--symbols", type=int)
    p.add_argument("--venues", type=int)
    p.add_argument("--workers", type=int)
    p.add_argument("--cpus", help="CPU list to pin to, e.g. 0,2-4 (feed, workers, aggregator)")
    p.add_argument("--rate", type=float, help="events/s (0: as fast as possible)")
    p.add_argument("--duration", type=float, help="seconds to run (0: until stopped)")
    p.add_argument("--events", type=int, help="stop after this many events")
    p.add_argument("--wait", help="spin | adaptive")
    p.add_argument("--seed", type=int)
    p.add_argument("--batch", type=int, help="most records a process moves at once")
    p.add_argument("--ring-capacity", type=int, dest="ring_capacity",
                   help="events per feed->worker ring (power of two)")
    p.add_argument("--result-ring-capacity", type=int, dest="result_ring_capacity",
                   help="results per worker->aggregator ring (power of two)")
    p.add_argument("--bcast-capacity", type=int, dest="bcast_capacity",
                   help="records kept in the broadcast ring (power of two)")
    p.add_argument("--linger", action="store_const", const=True,
                   help="after the last event, keep the final state attachable until stopped")
    p.add_argument("--drop", action="store_const", const=True,
                   help="drop (and count) events when a worker's ring is full")
    p.add_argument("--summary-json", dest="summary_json", metavar="FILE",
                   help="write the final figures and latency histogram to FILE as JSON")
    p.add_argument("--save-snapshot", dest="save_snapshot", metavar="FILE",
                   help="write the final snapshot table to FILE (.npy or .parquet)")
    p.add_argument("--no-analytics", dest="analytics", action="store_const", const=False,
                   help="books only: no analytics, bars or signals")
    p.add_argument("--bars", dest="bar_intervals", metavar="LIST",
                   help="bar intervals, at most two, e.g. 1s,1m")
    p.add_argument("--signal-ofi", dest="signal_ofi", type=int, metavar="SHARES",
                   help="fire an OFI signal at |ofi| >= SHARES (0: off)")
    p.add_argument("--signal-spread-bps", dest="signal_spread_bps", type=float, metavar="BPS",
                   help="fire a spread signal at a quoted spread >= BPS (0: off)")
    p.add_argument("--kernel", dest="kernels", action="append", metavar="MODULE:FUNCTION",
                   help="run a user kernel in the workers (repeatable)")
    p.add_argument("--speed", type=float,
                   help="replay a file or journal on its own clock this many times faster "
                        "(0: as fast as possible)")
    p.add_argument("--itch-date", dest="itch_date", metavar="YYYY-MM-DD",
                   help="itch source: the trading day its times count from (midnight New York)")
    p.add_argument("--itch-directory", dest="itch_directory", choices=("start", "whole"),
                   help="itch source: take the symbols from the stock directory before the "
                        "first order (default; fast) or from the whole file (for symbols "
                        "listed later in the day)")
    p.add_argument("--take", metavar="K/N|NAMES",
                   help="udp source: only the K-th of N hash partitions of the symbols, or "
                        "these comma-separated names")
    p.add_argument("--journal", metavar="DIR", help="write the sequenced stream to a journal")
    p.add_argument("--publish", metavar="URL",
                   help="publish the sequenced stream: udp://GROUP:PORT[?interface=IP&ttl=N"
                        "&retransmit=PORT&history=N]")


def cmd_run(args):
    import dataclasses
    from . import config, supervisor
    keys = [f.name for f in dataclasses.fields(config.Config)]
    cfg = config.load(args.config, {k: getattr(args, k, None) for k in keys})
    return supervisor.run(cfg)


# ---------------------------------------------------------------- replay

def add_replay(sub):
    p = sub.add_parser("replay", help="run an engine fed from a journal (fast or paced)")
    p.add_argument("journal_dir", metavar="JOURNAL")
    p.add_argument("config", nargs="?", help="TOML config file (flags override it)")
    add_engine_flags(p)
    p.set_defaults(func=cmd_replay)


def cmd_replay(args):
    args.source = f"journal:{args.journal_dir}"
    return cmd_run(args)


# ---------------------------------------------------------------- status

def add_status(sub):
    p = sub.add_parser("status", help="per-process rates, ring fill, lag, latency")
    p.add_argument("name", nargs="?", default="default")
    p.add_argument("--interval", type=float, default=0.5,
                   help="seconds between the two readings rates are computed from")
    p.add_argument("--json", action="store_true",
                   help="print the counters as one JSON object, for scripts and monitoring")
    p.set_defaults(func=cmd_status)


_POLICIES = {os.SCHED_OTHER: "normal", os.SCHED_BATCH: "batch", os.SCHED_IDLE: "idle",
             os.SCHED_FIFO: "fifo", os.SCHED_RR: "rr"}


def sched_policy(pid):
    """A process's scheduling policy by name; "-" before it started and once it is gone."""
    if pid <= 0:
        return "-"  # (0 would name this process's own)
    try:
        return _POLICIES.get(os.sched_getscheduler(pid), "?")
    except OSError:
        return "-"


def cmd_status(args):
    from .attach import attach
    with attach(args.name) as eng:
        first = eng.stats()
        time.sleep(args.interval)
        st = eng.stats()
    count = len(st["processes"])
    for i, (a, b) in enumerate(zip(first["processes"], st["processes"])):
        b["label"] = proc_label(b, i, count)
        b["events_per_s"] = (b["events"] - a["events"]) / args.interval
        b["sched"] = sched_policy(b["pid"])
    if args.json:
        st["latency_ns"] = {f"{p:g}": v for p, v in st["latency_ns"].items()}
        print(json.dumps(st, indent=1))
        return 0
    print(f"engine {st['name']}: {st['state']}, {st['events']:,} events, "
          f"{st['results']:,} results, locked {st['locked']}, crossed {st['crossed']}")
    print(f"{'process':<12}{'pid':>8}{'cpu':>5}{'sched':>8}{'events':>15}{'events/s':>14}"
          f"{'batches':>12}{'waits':>12}{'lag':>8}{'drops':>8}")
    for b in st["processes"]:
        pid = b["pid"] or "-"
        print(f"{b['label']:<12}{pid:>8}{b['cpu']:>5}{b['sched']:>8}"
              f"{b['events']:>15,}{b['events_per_s']:>14,.0f}"
              f"{b['batches']:>12,}{b['waits']:>12,}{b['lag']:>8,}{b['drops']:>8,}")
    for r in st["rings"]:
        print(f"ring {r['name']:<32} fill {r['fill']:>8,} / {r['capacity']:,}  "
              f"drops {r['drops']:,}")
    pct = "  ".join(f"p{p:g} {v / 1000:,.1f}" for p, v in st["latency_ns"].items())
    print(f"latency receive -> snapshot (us): {pct}  ({st['latency_samples']:,} samples)")
    workers = [p for p in st["processes"] if p["role"] == L.ROLE_WORKER]
    counts = {k: sum(p[k] for p in workers)
              for k in ("unknown_orders", "book_overflows", "bad_events", "user_dropped")}
    print("workers: " + "  ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in counts.items()))
    feed = st["processes"][0]
    if feed["bad_events"]:
        print(f"feed: bad events {feed['bad_events']:,} (a symbol this engine does not have)")
    print(f"analytics: {'on' if st['analytics'] else 'off'}")
    for line in format_link(st["link"]):
        print(line)
    return 0


# ---------------------------------------------------------------- snapshot

def add_snapshot(sub):
    p = sub.add_parser("snapshot", help="print one symbol's snapshot row")
    p.add_argument("name")
    p.add_argument("symbol", help="its name, or its id")
    p.set_defaults(func=cmd_snapshot)


def format_row(row, name, n_venues, analytics=None):
    """The snapshot row as text; with ``analytics`` (bar intervals in ns), its analytics too."""
    def side(px, qty, venue):
        return f"{fmt_price(px)} x {int(qty):,}" + (f" @v{venue}" if venue != L.NO_VENUE else "")
    flags = int(row["flags"])
    state = "crossed" if flags & L.RFLAG_CROSSED else "locked" if flags & L.RFLAG_LOCKED else ""
    lines = [
        f"{name}  seq {int(row['last_seq'])}  updates {int(row['updates']):,}  {state}".rstrip(),
        f"  bid {side(row['bid_px'], row['bid_qty'], int(row['bid_venue']))}   "
        f"ask {side(row['ask_px'], row['ask_qty'], int(row['ask_venue']))}",
        f"  last {fmt_price(row['last_px'])} x {int(row['last_qty']):,}   "
        f"volume {int(row['volume']):,}   trades {int(row['trades']):,}   "
        f"vwap {row['vwap']:.4f}",
        "  depth:",
    ]
    for k in range(L.TOP_LEVELS):
        bid_qty, bid_px = int(row['level_bid_qty'][k]), fmt_price(row['level_bid_px'][k])
        ask_qty, ask_px = int(row['level_ask_qty'][k]), fmt_price(row['level_ask_px'][k])
        lines.append(f"    {bid_qty:>10,} {bid_px:>12} | {ask_px:<12} {ask_qty:,}")
    lines.append("  venues:")
    for v in range(n_venues):
        lines.append(f"    v{v}: {fmt_price(row['venue_bid_px'][v])} x "
                     f"{int(row['venue_bid_qty'][v]):,} | {fmt_price(row['venue_ask_px'][v])} x "
                     f"{int(row['venue_ask_qty'][v]):,}")
    if analytics is not None:
        lines.extend(format_analytics(row, n_venues, analytics))
    return "\n".join(lines)


def _share(part, whole):
    return f"{100.0 * part / whole:5.1f}%" if whole > 0 else "    -"


def format_analytics(row, n_venues, bar_intervals):
    """Lines of a TABLE record's analytics fields."""
    signals = [n for k, n in L.SIGNAL_NAMES.items() if int(row["signals"]) >> k & 1]
    total = int(row["time_total"])
    volume = int(row["venue_volume"].sum())
    lines = [
        f"  analytics (seq {int(row['an_seq'])}):",
        f"    mid {row['mid']:.4f}  spread {row['spread']:.4f} ({row['spread_bps']:.2f} bps)  "
        f"microprice {row['microprice']:.4f}  imbalance {row['imbalance']:+.3f}",
        f"    depth {int(row['depth_bid']):,} | {int(row['depth_ask']):,} "
        f"(imbalance {row['depth_imbalance']:+.3f})  ofi {int(row['ofi']):+,}  "
        f"rv {row['rv']:.6f} ({int(row['rv_returns'])} returns)",
        f"    rolling vwap {row['rolling_vwap']:.4f} on {int(row['rolling_volume']):,}  "
        f"effective spread {row['eff_spread_mean']:.4f} ({row['eff_spread_bps_mean']:.2f} bps, "
        f"{int(row['eff_trades']):,} trades)",
        f"    realized spread {row['realized_spread_mean']:.4f}  price impact "
        f"{row['price_impact_mean']:.4f} ({int(row['impact_trades']):,} trades)  "
        f"locked {_share(int(row['time_locked']), total)}  crossed "
        f"{_share(int(row['time_crossed']), total)}",
        "    venue  at bid  at ask  volume",
    ]
    for v in range(n_venues):
        lines.append(f"    v{v}    {_share(int(row['venue_time_at_bid'][v]), total)}  "
                     f"{_share(int(row['venue_time_at_ask'][v]), total)}  "
                     f"{_share(int(row['venue_volume'][v]), volume)}")
    for k, interval in enumerate(bar_intervals):
        if interval <= 0:
            continue
        label = f"{interval / 1e9:g}s"
        if int(row["bar_start"][k]) < 0:
            lines.append(f"    bar {label}: none open")
        else:
            lines.append(f"    bar {label} open: O {fmt_price(row['bar_open'][k])} "
                         f"H {fmt_price(row['bar_high'][k])} L {fmt_price(row['bar_low'][k])} "
                         f"C {fmt_price(row['bar_close'][k])} V {int(row['bar_volume'][k]):,}")
    lines.append(f"    signals: {', '.join(signals) if signals else 'none'}")
    user = row["user"]
    if user.any():
        lines.append("    user: " + "  ".join(f"[{k}] {v:.6g}" for k, v in enumerate(user)))
    return lines


def cmd_snapshot(args):
    from .attach import attach
    with attach(args.name) as eng:
        symbol = args.symbol
        if symbol not in eng.symbols and symbol.isdigit():
            symbol = int(symbol)  # an id: what streams and saved tables carry
        row = eng.snapshot(symbol)
        bars = [int(b) for b in eng.segs.ana.header["bar_interval_ns"]] \
            if eng.analytics_enabled else None
        print(format_row(row, eng.symbols.name(int(row["symbol"])), eng.n_venues, bars))
    return 0


# ---------------------------------------------------------------- stop

def add_stop(sub):
    p = sub.add_parser("stop", help="drain and stop a running engine")
    p.add_argument("name", nargs="?", default="default")
    p.add_argument("--timeout", type=float, default=30.0)
    p.set_defaults(func=cmd_stop)


def cmd_stop(args):
    from .segments import EngineSegments
    from .supervisor import engine_alive
    segs = EngineSegments.attach(args.name, writable=True)
    try:
        if not engine_alive(segs.info):
            raise CliError(f"engine {args.name!r} is not running (its supervisor is gone); "
                           f"run `shmengine cleanup`")
        segs.info["stop_request"] = 1
        deadline = time.monotonic() + args.timeout
        while shm.engine_segments(args.name):
            if time.monotonic() > deadline:
                raise CliError(f"engine {args.name!r} did not stop within {args.timeout:g} s")
            time.sleep(0.05)
        # (the mapping outlives the segments' names: how it ended is still there)
        if int(segs.info["run_state"]) == L.RUN_FAILED:
            raise CliError(f"engine {args.name!r} failed instead of draining (its supervisor "
                           f"said why)")
    finally:
        segs.close()
    print(f"engine {args.name} stopped")
    return 0


# ---------------------------------------------------------------- list

def add_list(sub):
    p = sub.add_parser("list", help="engines on this host")
    p.add_argument("--json", action="store_true", help="print a JSON list, for scripts")
    p.set_defaults(func=cmd_list)


def engine_rows():
    """(name, state, supervisor pid, n_symbols, n_workers) of each engine found."""
    from .supervisor import engine_alive
    rows = []
    for name in shm.engine_names():
        try:
            meta = shm.Segment.attach(shm.segment_name(name, "meta"), L.SEG_META)
        except shm.SegmentError as exc:
            rows.append((name, f"broken ({exc})", 0, 0, 0))
            continue
        info = meta.record(L.ENGINE_INFO, L.META_INFO_OFFSET)
        state = L.RUN_STATE_NAMES.get(int(info["run_state"]), "?")
        if not engine_alive(info):
            state = "dead"
        rows.append((name, state, int(info["supervisor_pid"]), int(info["n_symbols"]),
                     int(info["n_workers"])))
        del info
        meta.close()
    return rows


def cmd_list(args):
    rows = engine_rows()
    if args.json:
        print(json.dumps([{"name": name, "state": state, "pid": pid, "symbols": n_sym,
                           "workers": n_w} for name, state, pid, n_sym, n_w in rows], indent=1))
        return 0
    if not rows:
        print("no engines on this host")
        return 0
    print(f"{'name':<20}{'state':<12}{'pid':>8}{'symbols':>9}{'workers':>9}")
    for name, state, pid, n_sym, n_w in rows:
        print(f"{name:<20}{state:<12}{pid:>8}{n_sym:>9}{n_w:>9}")
    return 0


# ---------------------------------------------------------------- cleanup

def add_cleanup(sub):
    p = sub.add_parser("cleanup", help="remove segments of engines whose processes are gone")
    p.set_defaults(func=cmd_cleanup)


def cmd_cleanup(args):
    alive = {name for name, state, *_ in engine_rows() if state not in ("dead",)
             and not state.startswith("broken")}
    removed = 0
    for entry in sorted(os.listdir(shm.SHM_DIR)):
        if not entry.startswith(shm.PREFIX):
            continue
        engine = entry[len(shm.PREFIX):].split(".")[0]
        if engine in alive or _being_created(engine):
            continue
        if shm.unlink("/" + entry):
            removed += 1
            print(f"removed /dev/shm/{entry}")
    print(f"{removed} segment(s) removed")
    return 0


def _being_created(engine):
    """Segments of an engine still being created (meta not yet READY) by a live process."""
    meta = os.path.join(shm.SHM_DIR, f"{shm.PREFIX}{engine}.meta")
    if not os.path.exists(meta):
        return False
    try:
        with open(meta, "rb") as fh:
            hdr = np.frombuffer(fh.read(L.SEGMENT_HEADER.itemsize), L.SEGMENT_HEADER)[0]
    except (OSError, ValueError):
        return False
    if int(hdr["magic"]) != L.MAGIC or int(hdr["state"]) == L.STATE_READY:
        return False
    return psutil.pid_exists(int(hdr["creator_pid"]))


# ---------------------------------------------------------------- main

def parser():
    p = argparse.ArgumentParser(
        prog="shmengine", description="A shared-memory market-data engine: run one, feed it "
        "(synthetic market, ITCH, journal, multicast), attach to it, look inside it.")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (add_run, add_replay, add_status, add_snapshot, add_stop, add_list, add_cleanup):
        add(sub)
    from . import doctor, inspector, journal_cli, latency, top
    # subcommands whose code has a module of its own
    for tool in (top, latency, inspector, doctor, journal_cli):
        tool.add_parser(sub)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    from .attach import UnknownSymbol
    try:
        code = args.func(args)
        sys.stdout.flush()  # a reader gone away shows here, not at the interpreter's exit
        return code
    except (ConfigError, CliError, shm.SegmentError, UnknownSymbol, ValueError) as exc:
        print(f"shmengine: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`shmengine status prod | head -3`): not an error here
        from .supervisor import silence
        silence(sys.stdout)
        return 0
    except OSError as exc:
        # what the system refused: a file that cannot be written, a full disk, ...
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"shmengine: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    # Run as the package's module, so that errors raised as shmengine.cli.CliError by
    # other modules are the class main() catches.
    from shmengine.cli import main as package_main
    sys.exit(package_main())
