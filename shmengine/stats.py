"""The stats block: one PROC_STATS row per process and a latency histogram per stage.

Each process writes only its own row; ``status`` and ``top`` read rows with
plain loads, which is safe for these independent 8-byte counters and costs
the engine nothing.
"""
import numpy as np

from . import layout as L
from .hist import COUNTS_LEN, percentiles, to_hdr
from .shm import Segment


def proc_label(row, position=None, count=None):
    """How a process is named to users: "feed", "worker 3", "aggregator".

    A row the process has not registered in yet (while the engine starts) is
    named by its ``position`` among the ``count`` rows when they are given
    (``layout.proc_name``).
    """
    role = L.ROLE_NAMES.get(int(row["role"]), "?")
    if role == "?" and position is not None:
        return L.proc_name(position, count)
    return f"{role} {int(row['index'])}" if role == "worker" else role


def format_link(link):
    """Lines of the feed's source, multicast and journal counters (none for a plain run)."""
    lines = []
    kind = L.SOURCE_KIND_NAMES.get(link["source"], "?")
    if kind != "synthetic":
        counts = ["messages", "bad"] + (["bytes"] if link["bytes"] else [])
        if kind == "udp":
            counts += ["packets", "gaps", "requests", "retransmissions", "duplicates", "late",
                       "lost"]
        lines.append(f"source {kind}: " + "  ".join(f"{k} {link[k]:,}" for k in counts))
    if link["publishing"]:
        lines.append("publishing: " + "  ".join(
            f"{k[4:]} {link[k]:,}" for k in ("pub_packets", "pub_messages", "pub_heartbeats",
                                              "pub_requests", "pub_resent")))
    if link["journaling"]:
        failed = "STOPPED by a write error: " if link["journaling"] == L.JOURNAL_FAILED else ""
        lines.append(f"journal: {failed}{link['journal_records']:,} records, "
                     f"{link['journal_bytes']:,} bytes, {link['journal_flushes']:,} flushes")
    return lines


class StatsBlock:
    def __init__(self, seg):
        self.seg = seg
        self.name = seg.name
        self.header = seg.record(L.STATS_HEADER, L.STATS_HEADER_OFFSET)
        n = int(self.header["n_procs"])
        self.procs = seg.view(L.PROC_STATS, L.STATS_PROCS_OFFSET, n)
        self.bells = seg.view(np.uint32, L.STATS_PROCS_OFFSET, n * L.PROC_STATS.itemsize // 4)
        hist_len = int(self.header["hist_len"])
        n_hists = int(self.header["n_hists"])
        self.hists = seg.view(np.int64, L.stats_hist_offset(n), n_hists * hist_len) \
            .reshape(n_hists, hist_len)
        self.link = seg.record(L.LINK_STATS, L.stats_link_offset(n, hist_len))

    @classmethod
    def create(cls, name, n_procs):
        seg = Segment.create(name, L.SEG_STATS, L.stats_size(n_procs, COUNTS_LEN))
        hdr = seg.record(L.STATS_HEADER, L.STATS_HEADER_OFFSET)
        hdr["n_procs"] = n_procs
        hdr["hist_len"] = COUNTS_LEN
        hdr["n_hists"] = L.N_STAGES
        procs = seg.view(L.PROC_STATS, L.STATS_PROCS_OFFSET, n_procs)
        procs["cpu"] = -1
        seg.mark_ready()
        return cls(seg)

    @classmethod
    def attach(cls, name, writable=False):
        return cls(Segment.attach(name, L.SEG_STATS, writable))

    def bell_word(self, proc):
        """Index into ``bells`` (uint32) of process ``proc``'s futex bell."""
        return (proc * L.PROC_STATS.itemsize + L.PROC_STATS.fields["bell"][1]) // 4

    def latency(self, points=(50, 90, 99, 99.9, 99.99), stage=L.STAGE_TOTAL):
        """({percentile: ns}, count) of one stage (default receive -> snapshot published)."""
        return percentiles(self.hists[stage], points)

    def stage_histograms(self):
        """{stage name: HdrHistogram copy} for every STAGE_*."""
        return {name: to_hdr(self.hists[k]) for k, name in L.STAGE_NAMES.items()}

    def link_counters(self):
        """The feed's LINK_STATS as a dict."""
        return {f: self.link[f].item() for f in L.LINK_STATS.names if not f.startswith("_")}

    def cpu_seconds(self):
        """{process label: CPU seconds it spent running}."""
        return {proc_label(row): int(row["cpu_ns"]) / 1e9 for row in self.procs}

    def close(self):
        self.header = self.procs = self.bells = self.hists = self.link = None
        self.seg.close()
