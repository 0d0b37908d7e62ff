"""The engine beside its peer pipelines, on one event stream, in one run.

    python benchmarks/peers/compare.py
    python benchmarks/peers/compare.py --events 2000000 --events-per-message-run 100000 \
        --rate 20000 --only zmq,fifo-batch --json peers.json

For every pipeline (the engine, and the peers of ``pipeline.PIPELINES``):

- throughput: events/s with the feed as fast as possible, from the first
  result in the snapshot table to the last. Batched peers and the engine run
  ``--events``; one-event-per-message peers run ``--events-per-message-run``,
  and the engine runs that count too, as their reference;
- latency: feed receive -> snapshot p50 / p99 / p99.9 from a paced run of
  ``--events-per-message-run`` events at ``--rate`` events/s, a rate every
  pipeline should keep up with (the output says which did not);
- CPU: seconds summed over the pipeline's processes per million events of the
  throughput run, each process counted from its first event to its end;
- table: the final snapshot table equals the engine's on the same events
  (checked on every run; any difference makes the exit status 1).

Each figure is also given as a ratio to the engine's.
"""
import argparse
import datetime
import json
import os
import platform
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from benchmarks.peers import engine, pipeline, tables  # noqa: E402

KEPT_UP = 0.95  # a paced run kept up if it took in at least this share of the rate
ENGINE = "engine"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="compare.py", description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=2_000_000,
                   help="events of the throughput run of the engine and the batched peers")
    p.add_argument("--events-per-message-run", type=int, default=100_000,
                   help="events of the one-event-per-message peers' throughput run (and the "
                        "engine's, their reference) and of every pipeline's paced run")
    p.add_argument("--symbols", type=int, default=1000)
    p.add_argument("--venues", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rate", type=float, default=20_000,
                   help="events/s of the paced latency run")
    p.add_argument("--batch", type=int, default=4096,
                   help="events the peers' feed generates and routes at once (batched peers "
                        "send one message per worker per batch)")
    p.add_argument("--only", default="",
                   help="comma-separated peers to run: " + ", ".join(pipeline.PIPELINES)
                        + ", or a transport (mpqueue, fifo, zmq) for both its variants")
    p.add_argument("--json", metavar="OUT", help="also write every figure to OUT")
    a = p.parse_args(argv)
    for key in ("events", "events_per_message_run", "symbols", "venues", "workers", "batch"):
        if getattr(a, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be at least 1")
    if a.rate <= 0:
        p.error("--rate must be > 0 events/s")
    try:
        a.keys = select(a.only)
    except ValueError as exc:
        p.error(str(exc))
    return a


def select(only):
    """PIPELINES keys named by ``only`` (all of them when empty)."""
    if not only.strip():
        return list(pipeline.PIPELINES)
    keys = []
    for word in (w.strip() for w in only.split(",") if w.strip()):
        match = [k for k in pipeline.PIPELINES if k == word or k.split("-")[0] == word]
        if not match:
            raise ValueError(f"--only: no peer {word!r} (choose from "
                             f"{', '.join(pipeline.PIPELINES)}, mpqueue, fifo, zmq)")
        keys += [k for k in match if k not in keys]
    return keys


def _timeout(events):
    return 120 + events / 1000


def _measure(a):
    """{(pipeline, run): figures} and the list of table mismatches."""
    shape = dict(symbols=a.symbols, venues=a.venues, workers=a.workers, seed=a.seed)
    batched = [k for k in a.keys if pipeline.PIPELINES[k][1]]
    single = [k for k in a.keys if not pipeline.PIPELINES[k][1]]
    figures, mismatches = {}, []

    def peer(key, run, events, rate, reference):
        say(f"{pipeline.label(key)}: {run} run, {events:,} events")
        f = pipeline.run(key, events, rate=rate, batch=a.batch, timeout_s=_timeout(events),
                         **shape)
        f["table_diff"] = tables.differences(reference["table"], f["table"])
        if f["table_diff"]:
            mismatches.append(f"{pipeline.label(key)} ({run} run): {', '.join(f['table_diff'])}")
        figures[key, run] = f

    def reference(run, events, rate):
        say(f"engine: {run} run, {events:,} events")
        figures[ENGINE, run] = engine.run(events, rate=rate, timeout_s=_timeout(events), **shape)
        return figures[ENGINE, run]

    if batched:
        ref = reference("throughput", a.events, 0.0)
        for key in batched:
            peer(key, "throughput", a.events, 0.0, ref)
    if single:
        ref = reference("throughput-small", a.events_per_message_run, 0.0)
        for key in single:
            peer(key, "throughput-small", a.events_per_message_run, 0.0, ref)
    ref = reference("paced", a.events_per_message_run, a.rate)
    for key in a.keys:
        peer(key, "paced", a.events_per_message_run, a.rate, ref)
    return figures, mismatches


def say(line):
    print(line, file=sys.stderr, flush=True)


def _cpu_per_m(f):
    cpu = f.get("cpu_s")
    return sum(cpu.values()) / f["events"] * 1e6 if cpu else None


def _cell(value, ref, fmt):
    if value is None:
        return "n/a"
    text = fmt(value)
    if ref:
        text += f" ({value / ref:.2f}x)"
    return text


def report_rows(a, figures):
    """One dict per pipeline: its figures and their ratios to the engine's."""
    rows = []
    for key in [ENGINE] + a.keys:
        runs = ["throughput", "throughput-small"] if key == ENGINE else \
            ["throughput" if pipeline.PIPELINES[key][1] else "throughput-small"]
        for run in (r for r in runs if (key, r) in figures):
            f, ref = figures[key, run], figures[ENGINE, run]
            paced, ref_paced = figures[key, "paced"], figures[ENGINE, "paced"]
            lat = {p: paced["latency_ns"][p] for p in ("50", "99", "99.9")}
            rows.append({
                "pipeline": key, "label": "engine (shm rings)" if key == ENGINE
                else pipeline.label(key),
                "events": f["events"], "events_per_s": f["events_per_s"],
                "events_per_s_ratio": f["events_per_s"] / ref["events_per_s"],
                "latency_ns": lat,
                "latency_ratio": {p: lat[p] / ref_paced["latency_ns"][p] for p in lat},
                "paced_events_per_s": paced["events_per_s"],
                "kept_up": paced["events_per_s"] >= KEPT_UP * a.rate,
                "cpu_s_per_m_events": _cpu_per_m(f),
                "cpu_ratio": (_cpu_per_m(f) / _cpu_per_m(ref)
                              if _cpu_per_m(f) and _cpu_per_m(ref) else None),
                "same_table": None if key == ENGINE else
                not (f["table_diff"] or paced["table_diff"]),
            })
    return rows


def render(a, rows):
    lines = [
        f"{a.symbols} symbols, {a.venues} venues, {a.workers} workers, seed {a.seed}; "
        f"peers' batch {a.batch} events",
        f"throughput: feed as fast as possible; the engine and batched peers on {a.events:,} "
        f"events, one-event-per-message peers (and the engine again) on "
        f"{a.events_per_message_run:,}",
        f"latency feed receive -> snapshot: paced run at {a.rate:,.0f} events/s, "
        f"{a.events_per_message_run:,} events, a rate every pipeline keeps up with"
        + ("" if all(r["kept_up"] for r in rows)
           else " except those marked * (they fell behind: their latency is queueing)"),
        "CPU: seconds summed over the pipeline's processes per million events (throughput run)",
        "table: final snapshot table equal to the engine's on the same events "
        f"(every field but {', '.join(tables.WALL_CLOCK)})",
        "(x) ratio to the engine's figure on the same events",
        "",
    ]
    head = ["pipeline", "events", "events/s", "p50 us", "p99 us", "p99.9 us", "CPU s/M events",
            "table"]
    us = lambda v: f"{v / 1e3:,.1f}"  # noqa: E731
    body = []
    for r in rows:
        mark = "" if r["kept_up"] else " *"
        body.append([
            r["label"] + mark, f"{r['events']:,}",
            _cell(r["events_per_s"], r["events_per_s"] / r["events_per_s_ratio"],
                  lambda v: f"{v / 1e6:,.3f} M"),
            *[_cell(r["latency_ns"][p], r["latency_ns"][p] / r["latency_ratio"][p], us)
              for p in ("50", "99", "99.9")],
            _cell(r["cpu_s_per_m_events"],
                  r["cpu_s_per_m_events"] / r["cpu_ratio"] if r["cpu_ratio"] else None,
                  lambda v: f"{v:,.2f}"),
            {None: "reference", True: "same", False: "DIFFERS"}[r["same_table"]],
        ])
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    for cells in [head] + body:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(cells, widths))))
    return "\n".join(lines)


def _plain(f):
    return {k: v for k, v in f.items() if k not in ("table", "latency_hdr", "stages")}


def main(argv=None):
    a = parse_args(argv)
    try:
        figures, mismatches = _measure(a)
    except (pipeline.PeerFailed, engine.EngineFailed) as exc:
        print(f"compare.py: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("compare.py: interrupted; every pipeline stopped", file=sys.stderr)
        return 130
    rows = report_rows(a, figures)
    print(render(a, rows))
    for m in mismatches:
        print(f"compare.py: table differs from the engine's: {m}", file=sys.stderr)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"),
                       "host": platform.node(), "cpus": os.cpu_count(),
                       "args": {k: v for k, v in vars(a).items() if k != "keys"},
                       "rows": rows,
                       "runs": [dict(_plain(f), pipeline=k, run=run)
                                for (k, run), f in figures.items()]}, fh, indent=1)
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
