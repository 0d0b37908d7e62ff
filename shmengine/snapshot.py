"""The snapshot table: one row per symbol, each guarded by a seqlock.

Only the aggregator writes. A row's first word is its seqlock: odd while the
row is being written. Readers copy the row with relaxed loads, then check
the word is unchanged and even, retrying otherwise, so they never see a torn
row and never block the writer. Rows are consistent one at a time; a whole
``table()`` is a set of consistent rows, not one instant.
"""
import numpy as np
from numba import njit

from . import layout as L
from .atomics import cpu_relax, fence_acquire, fence_release, load_acquire, load_relaxed, \
    store_relaxed, store_release
from .shm import Segment

ROW_WORDS = L.SNAPSHOT_SIZE // 8


@njit(cache=True, _nrt=False)
def write_row(rows, words, r, publish_ts):
    """Apply one RESULT ``r`` to its symbol's row; returns the row's flags before."""
    sym = r.symbol
    base = sym * ROW_WORDS
    s = words[base]
    store_relaxed(words, base, s + 1)
    fence_release()  # the odd seqlock is visible before any field changes
    row = rows[sym]
    before = row.flags
    row.flags = r.flags
    row.bid_venue = r.bid_venue
    row.ask_venue = r.ask_venue
    row.last_seq = r.seq
    row.last_exch_ts = r.exch_ts
    row.last_recv_ts = r.recv_ts
    row.publish_ts = publish_ts
    row.updates += 1
    row.bid_px = r.bid_px
    row.bid_qty = r.bid_qty
    row.ask_px = r.ask_px
    row.ask_qty = r.ask_qty
    if r.kind == L.RES_TRADE:
        row.last_trade_ts = r.exch_ts
    row.last_px = r.last_px
    row.last_qty = r.last_qty
    row.volume = r.volume
    row.notional = r.notional
    row.trades = r.trades
    row.vwap = r.notional / r.volume / L.PRICE_SCALE if r.volume > 0 else 0.0
    for k in range(L.TOP_LEVELS):
        row.level_bid_px[k] = r.level_bid_px[k]
        row.level_bid_qty[k] = r.level_bid_qty[k]
        row.level_ask_px[k] = r.level_ask_px[k]
        row.level_ask_qty[k] = r.level_ask_qty[k]
    v = r.venue
    row.venue_bid_px[v] = r.venue_bid_px
    row.venue_bid_qty[v] = r.venue_bid_qty
    row.venue_ask_px[v] = r.venue_ask_px
    row.venue_ask_qty[v] = r.venue_ask_qty
    store_release(words, base, s + 2)
    return before


@njit(cache=True, _nrt=False)
def read_seqlocked(words, row, row_words, out, out_row):
    """Copy row ``row`` (``row_words`` words, seqlock first) of ``words`` into row
    ``out_row`` of ``out``; returns how many times it retried."""
    base = row * row_words
    obase = out_row * row_words
    retries = 0
    while True:
        s1 = load_acquire(words, base)
        if s1 & 1 == 0:
            for k in range(1, row_words):
                out[obase + k] = load_relaxed(words, base + k)
            fence_acquire()  # the copy is complete before the seqlock is read again
            if load_relaxed(words, base) == s1:
                out[obase] = s1
                return retries
        retries += 1
        cpu_relax()


@njit(cache=True, _nrt=False)
def read_seqlocked_rows(words, first, count, row_words, out):
    retries = 0
    for i in range(count):
        retries += read_seqlocked(words, first + i, row_words, out, i)
    return retries


class SeqlockTable:
    """Rows of one dtype in a segment, each guarded by a seqlock: ``header``, ``rows``,
    ``row(symbol)`` and ``table()`` for readers. Subclasses name the layout."""

    HEADER = HEADER_OFFSET = ROW = ROWS_OFFSET = None
    WHAT = "table"

    def __init__(self, seg):
        self.seg = seg
        self.name = seg.name
        self.header = seg.record(self.HEADER, self.HEADER_OFFSET)
        size = int(self.header["row_size"])
        if size != self.ROW.itemsize:
            raise ValueError(f"{self.WHAT} rows in {seg.name} are {size} bytes, expected "
                             f"{self.ROW.itemsize}")
        self.n_symbols = n = int(self.header["n_symbols"])
        self.row_words = self.ROW.itemsize // 8
        self.rows = seg.view(self.ROW, self.ROWS_OFFSET, n)
        self.words = seg.view(np.uint64, self.ROWS_OFFSET, n * self.row_words)

    def row(self, symbol):
        """One consistent row (a copy) as a numpy record."""
        out = np.zeros(1, self.ROW)
        read_seqlocked(self.words, symbol, self.row_words, out.view(np.uint64), 0)
        return out[0]

    def table(self):
        """Every row, each consistent, as a new array."""
        out = np.zeros(self.n_symbols, self.ROW)
        read_seqlocked_rows(self.words, 0, self.n_symbols, self.row_words, out.view(np.uint64))
        return out

    def close(self):
        self.header = self.rows = self.words = None
        self.seg.close()


class SnapshotTable(SeqlockTable):
    """The ``snap`` segment: ``header`` (SNAP_HEADER), ``rows`` (SNAPSHOT_ROW array)."""

    HEADER, HEADER_OFFSET = L.SNAP_HEADER, L.SNAP_HEADER_OFFSET
    ROW, ROWS_OFFSET = L.SNAPSHOT_ROW, L.SNAP_ROWS_OFFSET
    WHAT = "snapshot"

    @classmethod
    def create(cls, name, n_symbols, n_venues):
        seg = Segment.create(name, L.SEG_SNAP, L.snap_size(n_symbols))
        hdr = seg.record(L.SNAP_HEADER, L.SNAP_HEADER_OFFSET)
        hdr["n_symbols"] = n_symbols
        hdr["n_venues"] = n_venues
        hdr["row_size"] = L.SNAPSHOT_SIZE
        rows = seg.view(L.SNAPSHOT_ROW, L.SNAP_ROWS_OFFSET, n_symbols)
        rows["symbol"] = np.arange(n_symbols)
        rows["bid_venue"] = L.NO_VENUE
        rows["ask_venue"] = L.NO_VENUE
        seg.mark_ready()
        return cls(seg)

    @classmethod
    def attach(cls, name, writable=False):
        return cls(Segment.attach(name, L.SEG_SNAP, writable))
