"""The stats block: one PROC_STATS row per process and the latency histogram.

Each process writes only its own row; ``status`` and ``top`` read rows with
plain loads, which is safe for these independent 8-byte counters and costs
the engine nothing.
"""
import numpy as np

from . import layout as L
from .hist import COUNTS_LEN, percentiles
from .shm import Segment


class StatsBlock:
    def __init__(self, seg):
        self.seg = seg
        self.name = seg.name
        self.header = seg.record(L.STATS_HEADER, L.STATS_HEADER_OFFSET)
        n = int(self.header["n_procs"])
        self.procs = seg.view(L.PROC_STATS, L.STATS_PROCS_OFFSET, n)
        self.bells = seg.view(np.uint32, L.STATS_PROCS_OFFSET, n * L.PROC_STATS.itemsize // 4)
        self.hist = seg.view(np.int64, L.stats_hist_offset(n), int(self.header["hist_len"]))

    @classmethod
    def create(cls, name, n_procs):
        seg = Segment.create(name, L.SEG_STATS, L.stats_size(n_procs, COUNTS_LEN))
        hdr = seg.record(L.STATS_HEADER, L.STATS_HEADER_OFFSET)
        hdr["n_procs"] = n_procs
        hdr["hist_len"] = COUNTS_LEN
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

    def latency(self, points=(50, 90, 99, 99.9, 99.99)):
        """({percentile: ns}, count) of receive -> snapshot published."""
        return percentiles(self.hist, points)

    def close(self):
        self.header = self.procs = self.bells = self.hist = None
        self.seg.close()
