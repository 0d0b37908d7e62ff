"""The analytics table: one ANALYTICS row per symbol, each guarded by a seqlock.

Each row is written only by the worker that owns its symbol (see
``analytics.py`` for what the fields mean); readers copy rows the same way as
snapshot rows and never block a writer.
"""
import numpy as np

from . import layout as L
from .analytics import init_rows
from .shm import Segment
from .snapshot import SeqlockTable


class AnalyticsTable(SeqlockTable):
    """The ``ana`` segment: ``header`` (ANA_HEADER), ``rows`` (ANALYTICS_ROW array)."""

    HEADER, HEADER_OFFSET = L.ANA_HEADER, L.ANA_HEADER_OFFSET
    ROW, ROWS_OFFSET = L.ANALYTICS_ROW, L.ANA_ROWS_OFFSET
    WHAT = "analytics"

    @property
    def enabled(self):
        return bool(self.header["enabled"])

    @classmethod
    def create(cls, name, n_symbols, params=None):
        """``params`` from ``analytics.make_params``, or None for a run without analytics."""
        seg = Segment.create(name, L.SEG_ANALYTICS, L.analytics_size(n_symbols))
        hdr = seg.record(L.ANA_HEADER, L.ANA_HEADER_OFFSET)
        hdr["n_symbols"] = n_symbols
        hdr["row_size"] = L.ANALYTICS_SIZE
        if params is not None:
            p = params[0]
            hdr["enabled"] = 1
            hdr["bar_interval_ns"] = p["bar_interval"]
            for name in ("depth_levels", "vwap_buckets", "ofi_buckets", "rv_samples",
                         "impact_pending", "signal_ofi", "signal_spread_bps", "signal_crossed"):
                hdr[name] = p[name]
            hdr["vwap_window_ns"] = p["vwap_bucket_ns"] * p["vwap_buckets"]
            hdr["ofi_window_ns"] = p["ofi_bucket_ns"] * p["ofi_buckets"]
            hdr["rv_interval_ns"] = p["rv_interval"]
            hdr["impact_delay_ns"] = p["impact_delay"]
        init_rows(seg.view(L.ANALYTICS_ROW, L.ANA_ROWS_OFFSET, n_symbols), np.arange(n_symbols))
        seg.mark_ready()
        return cls(seg)

    @classmethod
    def attach(cls, name, writable=False):
        return cls(Segment.attach(name, L.SEG_ANALYTICS, writable))
