"""``shmengine latency``: where an event's time goes, stage by stage.

The aggregator records, for every quote, trade and clear result it
publishes, the latency from the feed's receive to the published snapshot row
and its split into stages that add up to it exactly (layout.STAGE_*):

    feed    receive -> written into the worker's input ring
    ring    -> taken by the worker
    worker  -> the worker published the result (the whole batch's kernel time)
    merge   -> the aggregator published the snapshot row (output ring, merge
               order, row write)

Histograms are HdrHistograms. They can be read from a live engine, from the
segments a dead one left, from a file this command saved (``--save``) or
from ``shmengine run --summary-json``; two can be compared (``--compare``).
"""
import datetime
import json
import time

import numpy as np
from hdrh.histogram import HdrHistogram

from . import layout as L
from .export import save_json, write_atomically
from .hist import new_histogram, to_hdr

POINTS = (50, 90, 99, 99.9, 99.99)
FILE_FORMAT = "shmengine-latency/1"


class LatencyReport:
    """Stage histograms (``{stage name: HdrHistogram}``) and, if sampled,
    throughput over time (``[(seconds, events/s)]``)."""

    def __init__(self, stages, throughput=(), source=""):
        self.stages = stages
        self.throughput = list(throughput)
        self.source = source

    @classmethod
    def from_engine(cls, name, watch_s=0.0, every_s=0.1):
        """Read engine ``name`` (live or the segments a dead one left).

        With ``watch_s`` > 0, sample events/s every ``every_s`` for that long and
        keep only the latencies recorded meanwhile.
        """
        from .segments import EngineSegments
        segs = EngineSegments.attach(name)
        try:
            stats = segs.stats
            if watch_s <= 0:
                return cls(stats.stage_histograms(), source=f"engine {name}")
            before = np.array(stats.hists)
            samples = _sample_events(segs, watch_s, every_s)
            after = np.array(stats.hists)
        finally:
            segs.close()
        stages = {n: to_hdr(after[k] - before[k]) for k, n in L.STAGE_NAMES.items()}
        return cls(stages, samples, f"engine {name}, {watch_s:g} s window")

    @classmethod
    def load(cls, path):
        """Read a file saved with ``save`` or written by ``run --summary-json``."""
        try:
            with open(path) as fh:
                doc = json.load(fh)
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not JSON ({exc.msg}, line {exc.lineno})") from None
        encoded = doc.get("stages") if isinstance(doc, dict) else None
        if not isinstance(encoded, dict) or not set(encoded) >= set(L.STAGE_NAMES.values()):
            raise ValueError(f"{path} holds no stage histograms (save one with "
                             f"`shmengine latency NAME --save FILE` or `run --summary-json`)")
        stages = {}
        for name in L.STAGE_NAMES.values():
            hist = new_histogram()
            if encoded[name]:
                try:
                    hist.add(HdrHistogram.decode(encoded[name]))
                except Exception as exc:  # hdrh raises bare exceptions on bad input
                    raise ValueError(f"{path}: stage {name!r} is not an encoded "
                                     f"HdrHistogram ({exc})") from None
            stages[name] = hist
        return cls(stages, [tuple(p) for p in doc.get("throughput", [])], path)

    def save(self, path):
        doc = {"format": FILE_FORMAT, "source": self.source,
               "saved": datetime.datetime.now(datetime.timezone.utc).isoformat(),
               "stages": {n: h.encode().decode() if h.get_total_count() else ""
                          for n, h in self.stages.items()},
               "throughput": self.throughput}
        save_json(path, doc)

    def means(self):
        return {n: h.get_mean_value() if h.get_total_count() else 0.0
                for n, h in self.stages.items()}

    def format(self):
        total = self.stages["total"]
        lines = [f"latency by stage, us ({self.source}; {total.get_total_count():,} results)",
                 f"{'stage':<8}" + "".join(f"{'p' + format(p, 'g'):>10}" for p in POINTS)
                 + f"{'max':>10}{'mean':>10}{'share':>7}"]
        means = self.means()
        for name, hist in self.stages.items():
            if not hist.get_total_count():
                lines.append(f"{name:<8}  no samples")
                continue
            share = means[name] / means["total"] if means["total"] else 0.0
            lines.append(f"{name:<8}" + "".join(
                f"{hist.get_value_at_percentile(p) / 1e3:>10,.1f}" for p in POINTS)
                + f"{hist.get_max_value() / 1e3:>10,.1f}{means[name] / 1e3:>10,.1f}"
                + f"{100 * share:>6.0f}%")
        if self.throughput:
            rates = [r for _, r in self.throughput]
            lines.append(f"throughput over {self.throughput[-1][0]:.1f} s: median "
                         f"{np.median(rates):,.0f} events/s, min {min(rates):,.0f}, "
                         f"max {max(rates):,.0f}")
        return "\n".join(lines)

    def format_compare(self, base):
        """This report beside ``base``: p50, p99 and p99.9 of each stage and their ratios."""
        points = (50, 99, 99.9)
        lines = [f"latency, us: {self.source} vs {base.source}",
                 f"{'stage':<8}" + "".join(f"{'p' + format(p, 'g'):>28}" for p in points)]
        for name, hist in self.stages.items():
            ref = base.stages[name]
            cells = []
            for p in points:
                now, then = hist.get_value_at_percentile(p), ref.get_value_at_percentile(p)
                ratio = f"x{now / then:.2f}" if then else "-"
                cells.append(f"  {now / 1e3:,.1f} vs {then / 1e3:,.1f} {ratio}".rjust(28))
            lines.append(f"{name:<8}" + "".join(cells))
        return "\n".join(lines)

    def plot(self, path):
        """A PNG: the latency distribution of each stage, and throughput over time."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, (ax_lat, ax_tp) = plt.subplots(1, 2, figsize=(12, 4.5))
        drawn = []
        for name, hist in self.stages.items():
            if not hist.get_total_count():
                continue
            pct = np.array([p for p in (0, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99,
                                        99.995, 99.999)])
            values = [hist.get_value_at_percentile(p) / 1e3 for p in pct]
            ax_lat.plot(1 / (1 - pct / 100), values, marker=".", label=name,
                        linewidth=2.5 if name == "total" else 1.2)
            drawn.append(name)
        ax_lat.set_xscale("log")
        ax_lat.set_yscale("log")
        ticks = [1, 2, 10, 100, 1000, 10000, 100000]
        ax_lat.set_xticks(ticks, ["0", "50", "90", "99", "99.9", "99.99", "99.999"])
        ax_lat.set_xlabel("percentile")
        ax_lat.set_ylabel("latency (us)")
        ax_lat.set_title("latency by stage")
        ax_lat.grid(True, which="both", alpha=0.3)
        if drawn:
            ax_lat.legend()
        if self.throughput:
            t, r = zip(*self.throughput)
            ax_tp.plot(t, np.array(r) / 1e6)
            ax_tp.set_xlabel("seconds")
            ax_tp.set_ylabel("million events/s")
            ax_tp.set_ylim(bottom=0)
            ax_tp.grid(True, alpha=0.3)
        else:
            ax_tp.text(0.5, 0.5, "no throughput samples\n(watch a live engine with --watch)",
                       ha="center", va="center", transform=ax_tp.transAxes)
        ax_tp.set_title("throughput")
        fig.suptitle(self.source)
        fig.tight_layout()
        meta = {"Title": "shmengine latency", "Description": json.dumps(
            {"source": self.source, "stages": {n: self.stages[n].get_total_count()
                                               for n in drawn},
             "throughput_samples": len(self.throughput)})}
        try:
            write_atomically(path, lambda fh: fig.savefig(fh, format="png", dpi=100,
                                                          metadata=meta))
        finally:
            plt.close(fig)


def _sample_events(segs, watch_s, every_s):
    hdr = segs.snap.header
    t0 = time.monotonic()
    last_t, last_n = t0, int(hdr["events"])
    samples = []
    while True:
        time.sleep(max(0.0, min(every_s, t0 + watch_s - time.monotonic())))
        now, n = time.monotonic(), int(hdr["events"])
        if now > last_t:
            samples.append((round(now - t0, 4), (n - last_n) / (now - last_t)))
        last_t, last_n = now, n
        if now - t0 >= watch_s:
            return samples


# ---------------------------------------------------------------- command

def add_parser(sub):
    p = sub.add_parser("latency", help="latency percentiles per stage; plots, saves, compares")
    p.add_argument("name", nargs="?", default="default",
                   help="engine to read (live, or the segments a dead one left)")
    p.add_argument("--from", dest="source", metavar="FILE",
                   help="read a saved report or a `run --summary-json` file instead")
    p.add_argument("--watch", type=float, default=0.0, metavar="SECONDS",
                   help="only latencies recorded during the next SECONDS, and events/s "
                        "sampled meanwhile (default: everything since the engine started)")
    p.add_argument("--every", type=float, default=0.1, metavar="SECONDS",
                   help="throughput sampling period with --watch")
    p.add_argument("--plot", metavar="PNG", help="write latency and throughput plots")
    p.add_argument("--save", metavar="FILE", help="save the histograms (JSON) to compare later")
    p.add_argument("--compare", metavar="FILE", help="print beside a saved report")
    p.set_defaults(func=cmd_latency)


def cmd_latency(args):
    if args.watch < 0 or args.every <= 0:
        raise ValueError("--watch must be >= 0 and --every > 0 seconds")
    if args.source:
        report = LatencyReport.load(args.source)
    else:
        report = LatencyReport.from_engine(args.name, args.watch, args.every)
    print(report.format())
    if args.compare:
        print(report.format_compare(LatencyReport.load(args.compare)))
    if args.save:
        report.save(args.save)
        print(f"saved to {args.save}")
    if args.plot:
        report.plot(args.plot)
        print(f"plot written to {args.plot}")
    return 0
