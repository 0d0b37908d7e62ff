"""Analytics of a worker's symbols: trades, bars, quote and book metrics,
market quality and signals, computed from the book's results.

The book kernel turns events into RESULT records (the symbol's consolidated
quote, depth and tape after each event that changed them). This module reads
those results in order and keeps, per symbol, one ANALYTICS row, and adds
bar closes and signals to the stream::

    params = make_params(bar_intervals=(1_000_000_000, 60_000_000_000))
    ana = new_analytics(np.array([3, 7]), n_venues=4, n_symbols_total=10, params=params)
    stream = apply(ana, results)     # results interleaved with RES_BAR / RES_SIGNAL records
    ana.rows[3]["microprice"]        # the row of symbol 3 (ANALYTICS dtype)

Definitions (all per symbol; a "result" is a record of kind RES_QUOTE,
RES_TRADE or RES_CLEAR of that symbol, taken in stream order; t is its
exch_ts; the "quote" is its consolidated bid_px/bid_qty/ask_px/ask_qty and
levels; P is the state after the symbol's previous result, if any):

* A quote is two-sided when bid_qty > 0 and ask_qty > 0. It is locked when
  two-sided and bid_px == ask_px, crossed when two-sided and bid_px > ask_px.
  Prices in the row are currency units (fixed point / PRICE_SCALE) in
  float64; values that need a two-sided quote are NaN without one.
* The clock never goes back: a result whose exch_ts is below the symbol's
  latest so far is taken at that latest time (t = max(exch_ts, t_P)).
  Records keep their own exch_ts.
* Time: dt = t - t_P (0 for the first result).
  time_total += dt; time_locked / time_crossed += dt when P's quote was
  locked / crossed; for each venue v, venue_time_at_bid[v] += dt when P's
  quote had bid_qty > 0 and bit v of P's ``bid_venues`` is set (the book
  sets it for each venue whose best bid is the consolidated best bid);
  likewise venue_time_at_ask with ``ask_venues``.
* Quote metrics after the result, with (Pb, Qb, Pa, Qa) its best bid/offer:
  mid = (Pb + Pa) / 2; spread = Pa - Pb; spread_bps = spread / mid * 1e4;
  microprice = (Pb Qa + Pa Qb) / (Qa + Qb); imbalance = (Qb - Qa) / (Qb + Qa);
  depth_bid / depth_ask = the sum of level_bid_qty / level_ask_qty over the
  best ``depth_levels`` levels (both integers, defined for one-sided quotes
  too); depth_imbalance = (Db - Da) / (Db + Da), NaN if both are 0.
* Rolling windows are bucketed on the exchange clock: bucket b = t //
  bucket_ns; a window of n buckets at a result in bucket c holds what
  happened in buckets c - n + 1 .. c, this result included. Sums are exact
  integers.
* Trades: a RES_TRADE result is a print of last_qty at last_px at venue
  ``venue``. venue_volume[v] and venue_trades[v] count prints per venue.
  rolling_volume and rolling_vwap = sum(px * qty) / sum(qty) / PRICE_SCALE
  over the VWAP window (rolling_vwap NaN when the window has no volume).
  Session volume, notional and VWAP are in the snapshot row.
* Bars, per configured interval I: a trade in bar k = t // I opens bar k or
  updates it (open = first price, high, low, close = last price, volume,
  notional, trades). A result whose t // I is past the open bar's k closes
  that bar: a RES_BAR record goes on the stream just before the result.
  Bars without trades do not exist. The open bar is in the row
  (bar_start = k * I, or -1 and the other bar fields 0 when none).
* OFI (Cont, Kukanov and Stoikov, 2014): at each result where both P's quote
  and this one are two-sided, e = Qb [Pb >= Pb'] - Qb' [Pb <= Pb']
  - Qa [Pa <= Pa'] + Qa' [Pa >= Pa'] (primed: P's); 0 otherwise. ofi = the
  sum of e over the OFI window.
* Realized volatility: the mid is sampled at the grid times G = k *
  rv_interval; the sample at G is the mid in effect at G, the mid of the
  last result with t <= G. A result with t > t_P takes the samples of every
  G with t_P <= G < t (at most rv_samples + 1 of them: older ones would
  fall out of the window) from P's quote; a sample without a two-sided
  quote is missing. Each sample that follows a sample (at the previous grid
  time) gives a return ln(mid_k / mid_k-1) when both exist; a missing
  sample breaks the chain. rv = sqrt(sum of squared returns) over the
  returns of the last rv_samples grid steps; rv_returns is how many.
* Market quality: a trade's direction D is +1 when the resting order was an
  offer (a buyer took it: side == SIDE_ASK) and -1 when it was a bid. With
  M = P's mid (P two-sided), eff_spread = 2 D (price - M); eff_spread_mean
  and eff_spread_bps_mean (each 2 D (price - M) / M * 1e4) average over
  eff_trades. Such a trade is then followed for ``impact_delay`` ns: at the
  first later result with t > t_trade + delay, with M' = P's mid of that
  result (the mid in effect at t_trade + delay), realized spread
  2 D (price - M') and price impact 2 D (M' - M) enter their means over
  impact_trades; if P is not two-sided then, the trade is dropped from both.
  At most ``impact_pending`` trades per symbol are followed at once; a trade
  beyond that is counted in impact_dropped.
* Signals, evaluated after the metrics of each result, each a state that
  fires a RES_SIGNAL record just after the result when it enters a new
  nonzero state: SIG_OFI's state is sign(ofi) when |ofi| >= signal_ofi
  (else 0; threshold 0 disables it); SIG_SPREAD's is 1 when two-sided and
  spread_bps >= signal_spread_bps (0 disables); SIG_CROSSED's is 1 while
  the quote is crossed (signal_crossed false disables). ``signals`` in the
  row has bit 1 << SIG_* set while that state is nonzero.

Order on the stream for one result: its bar closes (interval 0 first), the
result, its signals (SIG_OFI, SIG_SPREAD, SIG_CROSSED). Every added record
carries the result's seq, clocks, symbol, venue and event_type.
"""
import collections

import numpy as np
from numba import njit

from . import layout as L
from .atomics import fence_release, prefetch, store_relaxed, store_release

ROW_WORDS = L.ANALYTICS_SIZE // 8
MAX_EXTRA = L.MAX_BAR_INTERVALS + len(L.SIGNAL_NAMES)  # records one result may add
RV_NONE = -(1 << 62)  # grid step of a symbol that has no sample yet

PARAMS = np.dtype([
    ("bar_interval", "<i8", (L.MAX_BAR_INTERVALS,)),  # ns; 0: not configured
    ("vwap_bucket_ns", "<i8"),
    ("vwap_buckets", "<i8"),
    ("ofi_bucket_ns", "<i8"),
    ("ofi_buckets", "<i8"),
    ("rv_interval", "<i8"),
    ("rv_samples", "<i8"),
    ("depth_levels", "<i8"),
    ("impact_delay", "<i8"),
    ("impact_pending", "<i8"),
    ("signal_ofi", "<i8"),          # shares; 0: off
    ("signal_spread_bps", "<f8"),   # 0: off
    ("signal_crossed", "<i8"),      # 0: off
], align=True)

# Everything a result needs of its symbol's private state sits in one record,
# the fields a result always touches in its first lines: scattered over a dozen
# arrays, the state of a random symbol cost a cache miss per array.
_SYMBOL_FIELDS = [
    # what every result reads or writes, in the first lines
    ("seen", "<i8"),           # 1 once the symbol had a result
    ("ts", "<i8"),             # its clock: the latest exch_ts of its results
    ("bid_px", "<i8"),         # quote after its last result
    ("bid_qty", "<i8"),
    ("ask_px", "<i8"),
    ("ask_qty", "<i8"),
    ("at_bid", "<i8"),         # that quote's bid_venues and ask_venues
    ("at_ask", "<i8"),
    ("vwap_end", "<i8"),       # end of the VWAP window's newest bucket
    ("ofi_end", "<i8"),
    ("rv_next", "<i8"),        # first grid time not sampled yet
    ("pend_count", "<i8"),     # followed trades: how many, when the oldest is due
    ("pend_due", "<i8"),
    ("bar_end", "<i8", (L.MAX_BAR_INTERVALS,)),  # end of the open bar, 0 if none
    ("ofi", "<i8"),            # the OFI window's sum
    ("sig_ofi", "<i8"),        # signal states
    ("sig_spread", "<i8"),
    ("sig_crossed", "<i8"),
    ("ofi_bucket", "<i8"),
    ("ofi_slot", "<i8"),       # that bucket's slot: ofi_bucket % ofi_buckets
    ("vwap_bucket", "<i8"),
    # what trades, window moves and grid steps need
    ("vwap_notional", "<i8"),  # the VWAP window's sums
    ("vwap_volume", "<i8"),
    ("rv_step", "<i8"),        # grid step of the last sample
    ("rv_mid", "<f8"),         # the mid of that sample, NaN if it had none
    ("pend_head", "<i8"),      # the oldest followed trade
    ("eff_sum", "<f8"),
    ("eff_bps_sum", "<f8"),
    ("realized_sum", "<f8"),
    ("impact_sum", "<f8"),
]
_size = np.dtype(_SYMBOL_FIELDS, align=True).itemsize
SYMBOL_STATE = np.dtype(_SYMBOL_FIELDS + [("_pad", "u1", (-_size % L.CACHE_LINE,))], align=True)
assert SYMBOL_STATE.itemsize % L.CACHE_LINE == 0

Analytics = collections.namedtuple("Analytics", [
    "local_index",   # int64[n_symbols_total]: global id -> local index, -1 if not owned
    "symbols",       # int64[n_local]
    "params",        # PARAMS[1]
    "rows",          # ANALYTICS_ROW[n_symbols_total]: only owned rows are written
    "words",         # uint64 view of rows (the seqlock words)
    "state",         # SYMBOL_STATE[n_local]
    "state_words",   # int64 view of state (for prefetching)
    "vwap",          # int64[n_local, vwap_buckets, 2]: notional, volume per bucket
    "ofi",           # int64[n_local, ofi_buckets]
    "rv_step",       # int64[n_local, rv_samples]: grid step of the return in each slot
    "rv_sq",         # float64[n_local, rv_samples]: squared log return, NaN if none
    "pend_i",        # int64[n_local, impact_pending, 3]: t, price, D of each followed trade
    "pend_mid",      # float64[n_local, impact_pending]: the mid M before it
    "n_venues",      # int: venues of the engine (ids 0..n_venues - 1)
])


def _duration(name, value, lo=0):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer number of ns, got {value!r}")
    if value < lo:
        raise ValueError(f"{name} must be at least {lo}, got {value}")
    return int(value)


def make_params(bar_intervals=(1_000_000_000, 60_000_000_000), vwap_window=60_000_000_000,
                vwap_buckets=60, ofi_window=1_000_000_000, ofi_buckets=10,
                rv_interval=1_000_000_000, rv_samples=60, depth_levels=5,
                impact_delay=1_000_000_000, impact_pending=128, signal_ofi=0,
                signal_spread_bps=0.0, signal_crossed=True):
    """The analytics settings as a PARAMS record; times are exchange-clock ns.

    >>> params = make_params(bar_intervals=(1_000_000_000,), signal_ofi=5000)
    """
    bars = [_duration("bar interval", b, 0) for b in bar_intervals]  # 0: not configured
    if len(bars) > L.MAX_BAR_INTERVALS:
        raise ValueError(f"at most {L.MAX_BAR_INTERVALS} bar intervals, got {len(bars)}")
    p = np.zeros(1, PARAMS)
    p["bar_interval"][0, :len(bars)] = bars
    for name, window, buckets in (("vwap", vwap_window, vwap_buckets),
                                  ("ofi", ofi_window, ofi_buckets)):
        window = _duration(f"{name}_window", window, 1)
        buckets = _duration(f"{name}_buckets", buckets, 1)
        if window % buckets:
            raise ValueError(f"{name}_window ({window} ns) must be a multiple of "
                             f"{name}_buckets ({buckets})")
        p[f"{name}_bucket_ns"] = window // buckets
        p[f"{name}_buckets"] = buckets
    p["rv_interval"] = _duration("rv_interval", rv_interval, 1)
    p["rv_samples"] = _duration("rv_samples", rv_samples, 1)
    depth_levels = _duration("depth_levels", depth_levels, 1)
    if depth_levels > L.TOP_LEVELS:
        raise ValueError(f"depth_levels must be at most {L.TOP_LEVELS}, got {depth_levels}")
    p["depth_levels"] = depth_levels
    p["impact_delay"] = _duration("impact_delay", impact_delay, 0)
    p["impact_pending"] = _duration("impact_pending", impact_pending, 1)
    p["signal_ofi"] = _duration("signal_ofi", signal_ofi, 0)
    if isinstance(signal_spread_bps, bool) or not isinstance(signal_spread_bps,
                                                              (int, float, np.number)) \
            or not signal_spread_bps >= 0:
        raise ValueError(f"signal_spread_bps must be a number >= 0, got {signal_spread_bps!r}")
    p["signal_spread_bps"] = float(signal_spread_bps)
    p["signal_crossed"] = 1 if signal_crossed else 0
    return p


def init_rows(rows, symbols):
    """Empty rows: ids set, undefined floats NaN, no open bar."""
    rows["symbol"][symbols] = symbols
    for name in ("mid", "spread", "spread_bps", "microprice", "imbalance", "depth_imbalance",
                 "rolling_vwap", "eff_spread", "eff_spread_mean", "eff_spread_bps_mean",
                 "realized_spread_mean", "price_impact_mean"):
        rows[name][symbols] = np.nan
    rows["bar_start"][symbols] = -1


def new_analytics(symbols, n_venues, n_symbols_total, params, rows=None):
    """State for the symbols one worker owns; rows default to a private table.

    ``rows`` may be the ANALYTICS_ROW array of the shared ``ana`` segment (the
    worker writes only its own symbols' rows).

    >>> ana = new_analytics(np.array([0, 5]), 4, 8, make_params())
    """
    symbols = np.asarray(symbols, np.int64)
    if not 1 <= n_venues <= L.MAX_VENUES:
        raise ValueError(f"n_venues must be in 1..{L.MAX_VENUES}, got {n_venues}")
    if symbols.size and (symbols.min() < 0 or symbols.max() >= n_symbols_total):
        raise ValueError(f"symbol ids must be in 0..{n_symbols_total - 1}")
    params = np.asarray(params)
    if params.dtype != PARAMS or params.shape != (1,):
        raise TypeError("params must come from make_params()")
    if rows is None:
        rows = np.zeros(n_symbols_total, L.ANALYTICS_ROW)
    if rows.dtype != L.ANALYTICS_ROW or len(rows) != n_symbols_total:
        raise ValueError("rows must be an ANALYTICS_ROW array with a row per symbol")
    init_rows(rows, symbols)
    n = symbols.size
    p = params[0]
    local_index = np.full(n_symbols_total, -1, np.int64)
    local_index[symbols] = np.arange(n)
    state = np.zeros(n, SYMBOL_STATE)
    state["rv_mid"] = np.nan
    state["rv_step"] = RV_NONE
    nr, cap = int(p["rv_samples"]), int(p["impact_pending"])
    return Analytics(
        local_index=local_index, symbols=symbols, params=params, rows=rows,
        words=rows.view(np.uint64), state=state, state_words=state.view(np.int64),
        vwap=np.zeros((n, int(p["vwap_buckets"]), 2), np.int64),
        ofi=np.zeros((n, int(p["ofi_buckets"])), np.int64),
        rv_step=np.full((n, nr), RV_NONE, np.int64), rv_sq=np.full((n, nr), np.nan),
        pend_i=np.zeros((n, cap, 3), np.int64), pend_mid=np.zeros((n, cap), np.float64),
        n_venues=int(n_venues),
    )


def state_nbytes(n_local, n_symbols_total, params):
    """Bytes of the private arrays new_analytics() makes (the rows are the shared table's).

    >>> state_nbytes(500, 1000, make_params())  # a worker owning half of 1000 symbols
    """
    p = np.asarray(params)[0]
    per_symbol = (8 + SYMBOL_STATE.itemsize + 16 * int(p["vwap_buckets"])
                  + 8 * int(p["ofi_buckets"]) + 16 * int(p["rv_samples"])
                  + 32 * int(p["impact_pending"]))
    return 8 * n_symbols_total + PARAMS.itemsize + n_local * per_symbol


# ---------------------------------------------------------------------------
# kernel
#
# The kernels allocate nothing, so they run without numba's reference counting
# (_nrt=False). Divisions of the clock happen only when a bucket, bar or grid
# step is crossed: the state keeps where the current one ends.


@njit(cache=True, _nrt=False)
def process(results, position, n, mask, ana, out, bars, signals, out_position, out_mask):
    """Apply n results from a ring of RESULT slots; write the stream to ``out``.

    ``bars`` and ``signals`` are ``out`` viewed as BAR_RECORD and
    SIGNAL_RECORD. Every input record goes to ``out`` with its bar closes
    before it and its signals after; returns how many records were written
    (at most n * (1 + MAX_EXTRA)). The book kernel does the same as it
    writes each result (``apply_at``), without this pass's copy.
    """
    written = 0
    for i in range(n):
        if i + _PREFETCH_AHEAD < n:
            prefetch_symbol(np.int64(results[(position + i + _PREFETCH_AHEAD) & mask].symbol),
                            ana)
        out[(out_position + written) & out_mask] = results[(position + i) & mask]
        written += apply_at(out, bars, signals, out_position + written, out_mask, ana)
    return written


@njit(cache=True, _nrt=False, inline="always")
def apply_at(out, bars, signals, position, mask, ana):
    """Apply the result at ``out[position & mask]``, in place; returns the records it
    now takes: its bar closes before it (it moves up), itself, its signals after."""
    r = out[position & mask]
    kind = r.kind
    if kind != L.RES_QUOTE and kind != L.RES_TRADE and kind != L.RES_CLEAR:
        return 1
    sym = np.int64(r.symbol)
    if sym >= ana.local_index.shape[0]:
        return 1
    s = ana.local_index[sym]
    if s < 0:
        return 1
    return _apply_one(s, sym, ana.params[0], ana, out, bars, signals, position, mask)


_PREFETCH_AHEAD = 8  # results between prefetching a symbol's state and using it
_STATE_WORDS = SYMBOL_STATE.itemsize // 8
_ROW_LINES = 6        # the lines of a row that every result writes


@njit(cache=True, _nrt=False, inline="always")
def prefetch_symbol(sym, ana):
    """Start loading the analytics state and row of an upcoming symbol."""
    if sym < 0 or sym >= ana.local_index.shape[0]:
        return
    s = ana.local_index[sym]
    if s < 0:
        return
    for j in range(0, _STATE_WORDS, 8):
        prefetch(ana.state_words, s * _STATE_WORDS + j)
    for j in range(_ROW_LINES):
        prefetch(ana.words, sym * ROW_WORDS + 8 * j)


@njit(cache=True, _nrt=False, inline="always")
def _two_sided(bid_qty, ask_qty):
    return bid_qty > 0 and ask_qty > 0


@njit(cache=True, _nrt=False, inline="always")
def _mid(bid_px, bid_qty, ask_px, ask_qty):
    if bid_qty > 0 and ask_qty > 0:
        return (bid_px + ask_px) / (2.0 * L.PRICE_SCALE)
    return np.nan


@njit(cache=True, _nrt=False, inline="always")
def _apply_one(s, sym, p, ana, out, bars, signals, out_position, out_mask):
    r = out[out_position & out_mask]
    st = ana.state[s]
    row = ana.rows[sym]
    seen = st.seen != 0
    t_prev = st.ts
    t = max(r.exch_ts, t_prev) if seen else r.exch_ts
    pb, pbq, pa, paq = st.bid_px, st.bid_qty, st.ask_px, st.ask_qty

    base = sym * ROW_WORDS
    lock = ana.words[base]
    store_relaxed(ana.words, base, lock + 1)
    fence_release()  # the odd seqlock is visible before any field changes

    if not seen:
        _first(st, p, t)
    elif t > t_prev:
        _accumulate_time(st, row, ana.n_venues, t - t_prev, pb, pbq, pa, paq)
        if st.rv_next < t:
            _sample_rv(ana.rv_step[s], ana.rv_sq[s], st, row, p.rv_interval, t,
                       _mid(pb, pbq, pa, paq))
    if st.pend_count > 0 and t > st.pend_due:
        _resolve_impacts(ana.pend_i[s], ana.pend_mid[s], st, row, p.impact_delay, t,
                         _mid(pb, pbq, pa, paq))

    closes = 0
    for k in range(L.MAX_BAR_INTERVALS):
        if st.bar_end[k] != 0 and t >= st.bar_end[k]:
            closes += 1
    if closes:  # rare: the result moves up to make room for the bars before it
        out[(out_position + closes) & out_mask] = r
        r = out[(out_position + closes) & out_mask]
        written = 0
        for k in range(L.MAX_BAR_INTERVALS):
            if st.bar_end[k] != 0 and t >= st.bar_end[k]:
                _write_bar(bars[(out_position + written) & out_mask], r, row, k,
                           p.bar_interval[k])
                written += 1
                _clear_bar(st, row, k)
    written = closes + 1

    ofi_before = st.ofi
    vwap_changed = False
    if t >= st.vwap_end:
        vwap_changed = _advance_vwap(ana.vwap[s], st, p.vwap_bucket_ns, t)
    if t >= st.ofi_end:
        _advance_ofi(ana.ofi[s], st, p.ofi_bucket_ns, t)
    v = r.venue
    if r.kind == L.RES_TRADE:
        _trade(r, st, row, p, ana, s, t, v, _mid(pb, pbq, pa, paq))
        vwap_changed = True
    if vwap_changed or not seen:
        row.rolling_volume = st.vwap_volume
        row.rolling_vwap = (st.vwap_notional / st.vwap_volume / L.PRICE_SCALE
                            if st.vwap_volume > 0 else np.nan)

    bid, bq, ask, aq = r.bid_px, r.bid_qty, r.ask_px, r.ask_qty
    moved = not seen or bid != pb or bq != pbq or ask != pa or aq != paq
    if moved and _two_sided(pbq, paq) and _two_sided(bq, aq):
        e = 0
        if bid >= pb:
            e += bq
        if bid <= pb:
            e -= pbq
        if ask <= pa:
            e -= aq
        if ask >= pa:
            e += paq
        ana.ofi[s, st.ofi_slot] += e
        st.ofi += e
    row.ofi = st.ofi

    _depth_metrics(r, row, p.depth_levels)
    if moved:  # the best bid and offer changed: so may everything derived from them
        _quote_metrics(r, row)
    if moved or st.ofi != ofi_before:  # else every signal's input is as it was
        written += _signals(r, row, p, st, signals, out_position + written, out_mask)

    row.an_seq = r.seq
    row.an_exch_ts = r.exch_ts
    row.an_updates += 1
    store_release(ana.words, base, lock + 2)

    st.seen = 1
    st.ts = t
    st.bid_px = bid
    st.bid_qty = bq
    st.ask_px = ask
    st.ask_qty = aq
    st.at_bid = r.bid_venues if bq > 0 else 0
    st.at_ask = r.ask_venues if aq > 0 else 0
    return written


@njit(cache=True, _nrt=False)
def _first(st, p, t):
    """Anchor the symbol's windows and grid at its first result."""
    st.vwap_bucket = t // p.vwap_bucket_ns
    st.vwap_end = (st.vwap_bucket + 1) * p.vwap_bucket_ns
    st.ofi_bucket = t // p.ofi_bucket_ns
    st.ofi_slot = st.ofi_bucket % p.ofi_buckets
    st.ofi_end = (st.ofi_bucket + 1) * p.ofi_bucket_ns
    st.rv_next = -((-t) // p.rv_interval) * p.rv_interval


@njit(cache=True, _nrt=False, inline="always")
def _accumulate_time(st, row, n_venues, dt, pb, pbq, pa, paq):
    """dt ns spent in the previous state."""
    row.time_total += dt
    # Without branches: which venues were at the best changes from one result
    # to the next, and a loop over the set bits mispredicts its exit.
    two = np.int64(_two_sided(pbq, paq))
    row.time_locked += dt * (two & np.int64(pb == pa))
    row.time_crossed += dt * (two & np.int64(pb > pa))
    at_bid = st.at_bid
    at_ask = st.at_ask
    for v in range(n_venues):  # the same count every time: its exit predicts
        row.venue_time_at_bid[v] += dt * ((at_bid >> v) & 1)
        row.venue_time_at_ask[v] += dt * ((at_ask >> v) & 1)


@njit(cache=True, _nrt=False)
def _advance_vwap(values, st, bucket_ns, t):
    """Move the VWAP window's newest bucket to t's, expiring what falls out; returns
    whether the window's sums changed."""
    nb = values.shape[0]
    bucket = t // bucket_ns
    volume = st.vwap_volume
    for b in range(max(st.vwap_bucket + 1, bucket - nb + 1), bucket + 1):
        slot = b % nb
        st.vwap_notional -= values[slot, 0]
        st.vwap_volume -= values[slot, 1]
        values[slot, 0] = 0
        values[slot, 1] = 0
    st.vwap_bucket = bucket
    st.vwap_end = (bucket + 1) * bucket_ns
    return st.vwap_volume != volume


@njit(cache=True, _nrt=False)
def _advance_ofi(values, st, bucket_ns, t):
    nb = values.shape[0]
    bucket = t // bucket_ns
    for b in range(max(st.ofi_bucket + 1, bucket - nb + 1), bucket + 1):
        slot = b % nb
        st.ofi -= values[slot]
        values[slot] = 0
    st.ofi_bucket = bucket
    st.ofi_slot = bucket % nb
    st.ofi_end = (bucket + 1) * bucket_ns


@njit(cache=True, _nrt=False, inline="always")
def _trade(r, st, row, p, ana, s, t, v, prev_mid):
    px = r.last_px
    qty = r.last_qty
    row.venue_volume[v] += qty
    row.venue_trades[v] += 1
    slot = st.vwap_bucket % p.vwap_buckets
    ana.vwap[s, slot, 0] += px * qty
    ana.vwap[s, slot, 1] += qty
    st.vwap_notional += px * qty
    st.vwap_volume += qty
    for k in range(L.MAX_BAR_INTERVALS):
        interval = p.bar_interval[k]
        if interval <= 0:
            continue
        if st.bar_end[k] == 0:
            start = t // interval * interval
            st.bar_end[k] = start + interval
            row.bar_start[k] = start
            row.bar_open[k] = px
            row.bar_high[k] = px
            row.bar_low[k] = px
        row.bar_high[k] = max(row.bar_high[k], px)
        row.bar_low[k] = min(row.bar_low[k], px)
        row.bar_close[k] = px
        row.bar_volume[k] += qty
        row.bar_notional[k] += px * qty
        row.bar_trades[k] += 1
    if not np.isnan(prev_mid):
        d = 1 if r.side == L.SIDE_ASK else -1
        eff = 2.0 * d * (px / L.PRICE_SCALE - prev_mid)
        row.eff_spread = eff
        row.eff_trades += 1
        st.eff_sum += eff
        st.eff_bps_sum += eff / prev_mid * 1e4
        row.eff_spread_mean = st.eff_sum / row.eff_trades
        row.eff_spread_bps_mean = st.eff_bps_sum / row.eff_trades
        _follow(ana.pend_i[s], ana.pend_mid[s], st, row, p.impact_delay, t, px, d, prev_mid)


@njit(cache=True, _nrt=False)
def _sample_rv(steps, sq, st, row, interval, t, mid):
    """Take the grid samples in [rv_next, t), all of them ``mid``; refresh rv."""
    n = steps.shape[0]
    first = st.rv_next // interval      # a grid time: exact
    last = -((-t) // interval) - 1      # last grid step before t
    if last - first > n:
        first = last - n
    for k in range(first, last + 1):
        if st.rv_step == k - 1 and not np.isnan(st.rv_mid) and not np.isnan(mid):
            ret = np.log(mid / st.rv_mid)
            sq[k % n] = ret * ret
        else:
            sq[k % n] = np.nan
        steps[k % n] = k
        st.rv_step = k
        st.rv_mid = mid
    st.rv_next = (last + 1) * interval
    total = 0.0
    count = 0
    for j in range(n):
        if steps[j] > last - n and not np.isnan(sq[j]):
            total += sq[j]
            count += 1
    row.rv = np.sqrt(total)
    row.rv_returns = count


@njit(cache=True, _nrt=False)
def _follow(pend_i, pend_mid, st, row, delay, t, px, d, mid):
    cap = pend_i.shape[0]
    count = st.pend_count
    if count == cap:
        row.impact_dropped += 1
        return
    j = (st.pend_head + count) % cap
    pend_i[j, 0] = t
    pend_i[j, 1] = px
    pend_i[j, 2] = d
    pend_mid[j] = mid
    if count == 0:
        st.pend_due = t + delay
    st.pend_count = count + 1


@njit(cache=True, _nrt=False)
def _resolve_impacts(pend_i, pend_mid, st, row, delay, t, mid_then):
    cap = pend_i.shape[0]
    while st.pend_count > 0:
        j = st.pend_head
        if pend_i[j, 0] + delay >= t:
            st.pend_due = pend_i[j, 0] + delay
            return
        st.pend_head = (j + 1) % cap
        st.pend_count -= 1
        if np.isnan(mid_then):
            continue
        d = pend_i[j, 2]
        px = pend_i[j, 1] / L.PRICE_SCALE
        st.realized_sum += 2.0 * d * (px - mid_then)
        st.impact_sum += 2.0 * d * (mid_then - pend_mid[j])
        row.impact_trades += 1
        row.realized_spread_mean = st.realized_sum / row.impact_trades
        row.price_impact_mean = st.impact_sum / row.impact_trades


@njit(cache=True, _nrt=False, inline="always")
def _clear_bar(st, row, k):
    st.bar_end[k] = 0
    row.bar_start[k] = -1
    row.bar_open[k] = 0
    row.bar_high[k] = 0
    row.bar_low[k] = 0
    row.bar_close[k] = 0
    row.bar_volume[k] = 0
    row.bar_notional[k] = 0
    row.bar_trades[k] = 0


@njit(cache=True, _nrt=False, inline="always")
def _depth_metrics(r, row, depth_levels):
    bid_qty = r.level_bid_qty
    ask_qty = r.level_ask_qty
    depth_bid = 0
    depth_ask = 0
    # Scalar loads: the result was stored a moment ago by a wide copy, and a
    # vectorised sum's loads straddle that copy's stores, which stalls them.
    for k in range(L.TOP_LEVELS):
        if k < depth_levels:
            depth_bid += bid_qty[k]
            depth_ask += ask_qty[k]
    total = depth_bid + depth_ask
    row.depth_bid = depth_bid
    row.depth_ask = depth_ask
    row.depth_imbalance = (depth_bid - depth_ask) / total if total > 0 else np.nan


@njit(cache=True, _nrt=False, inline="always")
def _quote_metrics(r, row):
    bid, bq, ask, aq = r.bid_px, r.bid_qty, r.ask_px, r.ask_qty
    if _two_sided(bq, aq):
        mid = (bid + ask) / (2.0 * L.PRICE_SCALE)
        row.mid = mid
        row.spread = (ask - bid) / L.PRICE_SCALE
        row.spread_bps = (ask - bid) / L.PRICE_SCALE / mid * 1e4
        row.microprice = (bid * aq + ask * bq) / (aq + bq) / L.PRICE_SCALE
        row.imbalance = (bq - aq) / (bq + aq)
    else:
        row.mid = np.nan
        row.spread = np.nan
        row.spread_bps = np.nan
        row.microprice = np.nan
        row.imbalance = np.nan


@njit(cache=True, _nrt=False, inline="always")
def _signals(r, row, p, st, signals, out_position, out_mask):
    """Update the signal states; write a record for each that entered a nonzero state."""
    two_sided = _two_sided(r.bid_qty, r.ask_qty)
    new_ofi = 0
    if p.signal_ofi > 0 and abs(st.ofi) >= p.signal_ofi:
        new_ofi = 1 if st.ofi > 0 else -1
    new_spread = 0
    if p.signal_spread_bps > 0 and two_sided and row.spread_bps >= p.signal_spread_bps:
        new_spread = 1
    new_crossed = 0
    if p.signal_crossed != 0 and two_sided and r.bid_px > r.ask_px:
        new_crossed = 1
    written = 0
    if new_ofi != 0 and new_ofi != st.sig_ofi:
        _write_signal(signals[(out_position + written) & out_mask], r, L.SIG_OFI, new_ofi,
                      float(st.ofi), float(p.signal_ofi))
        written += 1
    if new_spread != 0 and new_spread != st.sig_spread:
        _write_signal(signals[(out_position + written) & out_mask], r, L.SIG_SPREAD, 1,
                      row.spread_bps, p.signal_spread_bps)
        written += 1
    if new_crossed != 0 and new_crossed != st.sig_crossed:
        _write_signal(signals[(out_position + written) & out_mask], r, L.SIG_CROSSED, 1,
                      (r.bid_px - r.ask_px) / L.PRICE_SCALE, 0.0)
        written += 1
    st.sig_ofi = new_ofi
    st.sig_spread = new_spread
    st.sig_crossed = new_crossed
    row.signals = ((1 if new_ofi != 0 else 0) << L.SIG_OFI) | (new_spread << L.SIG_SPREAD) \
        | (new_crossed << L.SIG_CROSSED)
    return written


@njit(cache=True, _nrt=False, inline="always")
def _stamp(rec, r, kind):
    rec.seq = r.seq
    rec.exch_ts = r.exch_ts
    rec.recv_ts = r.recv_ts
    rec.proc_ts = r.proc_ts
    rec.symbol = r.symbol
    rec.venue = r.venue
    rec.kind = kind
    rec.flags = r.flags
    rec.event_type = r.event_type


@njit(cache=True, _nrt=False)
def _write_bar(rec, r, row, k, interval):
    _stamp(rec, r, L.RES_BAR)
    rec.interval_ns = interval
    rec.bar_start = row.bar_start[k]
    rec.open = row.bar_open[k]
    rec.high = row.bar_high[k]
    rec.low = row.bar_low[k]
    rec.close = row.bar_close[k]
    rec.volume = row.bar_volume[k]
    rec.notional = row.bar_notional[k]
    rec.trades = row.bar_trades[k]
    pad = rec._pad_end
    for j in range(pad.shape[0]):
        pad[j] = 0


@njit(cache=True, _nrt=False)
def _write_signal(rec, r, signal, direction, value, threshold):
    _stamp(rec, r, L.RES_SIGNAL)
    rec.signal = signal
    rec.direction = direction
    rec.value = value
    rec.threshold = threshold
    pad = rec._pad_end
    for j in range(pad.shape[0]):
        pad[j] = 0


# ---------------------------------------------------------------------------
# wrapper

def apply(ana, results, trace=False):
    """Apply a plain RESULT array; return the stream (RESULT dtype, all kinds).

    With ``trace``, return ``(stream, trace)``: ``trace[i]`` is the row of
    ``results[i]``'s symbol just after it (a zero row for other records).

    >>> stream = apply(ana, book.apply(book_state, events))
    >>> bars = stream[stream["kind"] == RES_BAR].view(BAR_RECORD)
    """
    results = np.asarray(results)
    if results.dtype != L.RESULT or results.ndim != 1:
        raise TypeError(f"results must be a 1-D array of layout.RESULT, got {results.dtype}")
    n = len(results)
    out = np.zeros(max(n, 1) * (1 + MAX_EXTRA), L.RESULT)
    mask = (1 << 62) - 1  # contiguous arrays: positions never wrap
    if not trace:
        written = process(results, 0, n, mask, ana, out, out.view(L.BAR_RECORD),
                          out.view(L.SIGNAL_RECORD), 0, mask)
        return out[:written].copy()
    rows = np.zeros(n, L.ANALYTICS_ROW)
    written = 0
    for i in range(n):
        written += process(results, i, 1, mask, ana, out, out.view(L.BAR_RECORD),
                           out.view(L.SIGNAL_RECORD), written, mask)
        sym = int(results[i]["symbol"])
        if results[i]["kind"] in (L.RES_QUOTE, L.RES_TRADE, L.RES_CLEAR) \
                and sym < len(ana.local_index) and ana.local_index[sym] >= 0:
            rows[i] = ana.rows[sym]
    return out[:written].copy(), rows
