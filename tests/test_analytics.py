"""shmengine.analytics against the reference in tests/naive_analytics.py, and edge cases.

Floats are compared with FLOAT_TOL: every input is a fixed-point integer and
the reference keeps integer sums exact, so the two sides can differ only by
the rounding of the derived divisions, square roots and logarithms and by the
order of float summations (means, sums of squared returns): a few ulps,
relatively amplified at most ~1e-4 in log-returns of nearby mids. Integers
must be equal, NaN must match NaN.
"""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shmengine import analytics as A
from shmengine import book as B
from shmengine.layout import (
    ANALYTICS, BAR_RECORD, NO_VENUE, RES_BAR, RES_CLEAR, RES_END, RES_QUOTE, RES_SIGNAL,
    RES_TRADE, RES_WATERMARK, RESULT, RFLAG_CROSSED, RFLAG_LOCKED, SIDE_ASK, SIDE_BID,
    SIG_CROSSED, SIG_OFI, SIG_SPREAD, SIGNAL_RECORD,
)
from shmengine.market import new_market
from naive_analytics import NaiveAnalytics, bars_by_groupby

FLOAT_TOL = {"rtol": 1e-9, "atol": 1e-12}
N_TOTAL = 6


# ---------------------------------------------------------------- running both sides

def run_kernel(symbols, n_venues, results, **params):
    ana = A.new_analytics(np.array(symbols), n_venues, N_TOTAL, A.make_params(**params))
    stream, trace = A.apply(ana, results, trace=True)
    return ana, stream, trace


def run_reference(symbols, n_venues, results, **params):
    return NaiveAnalytics(symbols, n_venues, **params).run(results)


def expected_stream(records):
    """The RESULT array the reference's stream of dicts describes (pads zero)."""
    out = np.zeros(len(records), RESULT)
    for i, rec in enumerate(records):
        dtype = {RES_BAR: BAR_RECORD, RES_SIGNAL: SIGNAL_RECORD}.get(rec["kind"], RESULT)
        view = out[i:i + 1].view(dtype)
        for name, value in rec.items():
            view[0][name] = value
    return out


def assert_rows_match(trace, rows, results):
    """Every ANALYTICS field the reference defines equals the trace, result by result."""
    assert len(trace) == len(results) == len(rows)
    assert set(ANALYTICS.names) <= set(trace.dtype.names)
    is_row = np.array([row is not None for row in rows], bool)
    marker_rows = trace[~is_row]
    for name in ANALYTICS.names:
        assert not np.any(marker_rows[name]), f"marker rows: {name} is not zero"
    idx = np.flatnonzero(is_row)
    defined = [r for r in rows if r is not None]
    if defined:
        assert set(defined[0]) == set(ANALYTICS.names) - {"seqlock", "user"}
    for name in defined[0] if defined else ():
        want = [r[name] for r in defined]
        got = trace[name][idx]
        if got.ndim == 1:
            got, want = got[:, None], [[w] for w in want]
        mask = np.array([[v is not None for v in w] for w in want], bool)
        wanted = np.array([[0 if v is None else v for v in w] for w in want])
        if got.dtype.kind == "f":
            ok = np.isclose(got, wanted.astype(float), equal_nan=True, **FLOAT_TOL)
        else:
            ok = got == wanted
        bad = np.argwhere(~ok & mask)
        if len(bad):
            i, j = bad[0]
            k = idx[i]
            raise AssertionError(
                f"{name}[{j}] at result {k} (seq {results[k]['seq']}, symbol "
                f"{results[k]['symbol']}, kind {results[k]['kind']}, t {results[k]['exch_ts']}):"
                f" got {got[i, j]!r}, want {wanted[i, j]!r} ({len(bad)} mismatches)")


def assert_stream_matches(got, want, results):
    """Same records in the same order: results untouched; bars exact and signals exact but
    for the float value, in every field but ``flags``, which the docstring leaves open
    for added records (they carry "the result's seq, clocks, symbol, venue and event_type")."""
    kinds = got["kind"].tolist()
    assert kinds == want["kind"].tolist(), _first_kind_difference(kinds, want["kind"].tolist())
    passed = np.isin(got["kind"], (RES_BAR, RES_SIGNAL), invert=True)
    assert got[passed].tobytes() == results.tobytes(), "results did not pass through unchanged"
    bars = got["kind"] == RES_BAR
    gb, wb = got[bars].view(BAR_RECORD), want[bars].view(BAR_RECORD)
    for i in range(len(gb)):
        assert not _record_diff(gb[i], wb[i], skip=("flags",)), \
            f"bar {i}: {_record_diff(gb[i], wb[i], skip=('flags',))}"
    sigs = got["kind"] == RES_SIGNAL
    gs, ws = got[sigs].view(SIGNAL_RECORD), want[sigs].view(SIGNAL_RECORD)
    for i in range(len(gs)):
        assert not _record_diff(gs[i], ws[i], skip=("flags", "value")), \
            f"signal {i}: {_record_diff(gs[i], ws[i], skip=('flags', 'value'))}"
    np.testing.assert_allclose(gs["value"], ws["value"], **FLOAT_TOL)


def _first_kind_difference(got, want):
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            return (f"stream kinds differ first at {i}: got {g}, want {w} "
                    f"(lengths {len(got)}, {len(want)})")
    return f"stream lengths differ: got {len(got)}, want {len(want)}"


def _record_diff(g, w, skip=()):
    return {n: (g[n].tolist(), w[n].tolist()) for n in g.dtype.names
            if n not in skip and not np.array_equal(g[n], w[n])}


def compare(symbols, n_venues, results, **params):
    """Run kernel and reference on the same results and assert they agree; the last trace
    row of each symbol is its row in ``rows``. Returns (stream, trace, reference rows)."""
    ana, stream, trace = run_kernel(symbols, n_venues, results, **params)
    rows, records = run_reference(symbols, n_venues, results, **params)
    assert_rows_match(trace, rows, results)
    assert_stream_matches(stream, expected_stream(records), results)
    for s in symbols:
        mine = np.isin(results["kind"], (RES_QUOTE, RES_TRADE, RES_CLEAR)) & \
            (results["symbol"] == s)
        if mine.any():
            last = trace[np.flatnonzero(mine)[-1]]
            for name in ANALYTICS.names[1:]:
                assert np.array_equal(ana.rows[s][name], last[name], equal_nan=True), \
                    f"rows[{s}][{name!r}] is not the trace's after its last result"
    return stream, trace, rows


# ---------------------------------------------------------------- the synthetic market

MARKET_PARAMS = dict(bar_intervals=(200_000, 1_000_000), vwap_window=300_000, vwap_buckets=6,
                     ofi_window=50_000, ofi_buckets=5, rv_interval=10_000, rv_samples=20,
                     depth_levels=3, impact_delay=20_000, impact_pending=3)


def market_results(seed, n_symbols=4, n_venues=3, n_events=6000):
    m = new_market(n_symbols, n_venues, seed=seed, p_clear=0.002)
    book = B.new_book(np.arange(n_symbols), n_venues, N_TOTAL)
    return B.apply(book, m.generate(n_events, seq0=1))


def thresholds(results, symbols, n_venues):
    """Signal thresholds that fire now and then: high quantiles of |ofi| and spread_bps."""
    rows, _ = run_reference(symbols, n_venues, results, **MARKET_PARAMS)
    rows = [r for r in rows if r is not None]
    ofi = np.abs([r["ofi"] for r in rows])
    bps = np.array([r["spread_bps"] for r in rows])
    return {"signal_ofi": int(np.quantile(ofi, 0.9)),
            "signal_spread_bps": float(np.nanquantile(bps, 0.95))}


@pytest.fixture(scope="module", params=[(5, 4), (9, 2)], ids=["seed5", "seed9"])
def market_run(request):
    seed, n_symbols = request.param
    n_venues = 3
    symbols = list(range(n_symbols))
    results = market_results(seed, n_symbols, n_venues)
    params = dict(MARKET_PARAMS, **thresholds(results, symbols, n_venues))
    ana, stream, trace = run_kernel(symbols, n_venues, results, **params)
    rows, records = run_reference(symbols, n_venues, results, **params)
    return {"symbols": symbols, "results": results, "params": params, "stream": stream,
            "trace": trace, "rows": rows, "records": records, "ana": ana}


def test_market_rows_match_reference_at_every_result(market_run):
    """Every defined ANALYTICS field equals the reference after every result of a market."""
    assert_rows_match(market_run["trace"], market_run["rows"], market_run["results"])


def test_market_stream_matches_reference(market_run):
    """Bars and signals are the reference's, in its order, around untouched results."""
    assert_stream_matches(market_run["stream"], expected_stream(market_run["records"]),
                          market_run["results"])


def test_market_run_exercises_every_feature(market_run):
    """The market run closes bars of both intervals, fires all signals, rolls every window."""
    rows = [r for r in market_run["rows"] if r is not None]
    stream = market_run["stream"]
    bars = stream[stream["kind"] == RES_BAR].view(BAR_RECORD)
    for interval in MARKET_PARAMS["bar_intervals"]:
        assert (bars["interval_ns"] == interval).sum() >= 2
    sigs = stream[stream["kind"] == RES_SIGNAL].view(SIGNAL_RECORD)
    for s in (SIG_OFI, SIG_SPREAD, SIG_CROSSED):
        assert (sigs["signal"] == s).sum() >= 1, f"signal {s} never fired"
    assert {-1, 1} <= set(sigs["direction"][sigs["signal"] == SIG_OFI].tolist())
    assert max(r["rv_returns"] for r in rows) == MARKET_PARAMS["rv_samples"]
    assert max(r["impact_trades"] for r in rows) > 0
    assert max(r["impact_dropped"] for r in rows) > 0
    assert max(r["time_locked"] for r in rows) > 0
    assert max(r["time_crossed"] for r in rows) > 0
    assert any(math.isnan(r["mid"]) for r in rows)
    assert any(math.isnan(r["rolling_vwap"]) for r in rows)
    volumes = [r["rolling_volume"] for r in rows]
    assert max(volumes) > 0 and any(b < a for a, b in zip(volumes, volumes[1:]))
    assert (market_run["results"]["kind"] == RES_CLEAR).any()


def test_market_closed_bars_are_a_groupby_of_the_tape(market_run):
    """Closed bars equal the trades grouped by t // I, all but each symbol's last bar."""
    results, stream = market_run["results"], market_run["stream"]
    bars = stream[stream["kind"] == RES_BAR].view(BAR_RECORD)
    for s in market_run["symbols"]:
        trades = results[(results["kind"] == RES_TRADE) & (results["symbol"] == s)]
        tape = {"t": trades["exch_ts"], "px": trades["last_px"], "qty": trades["last_qty"]}
        for i, interval in enumerate(MARKET_PARAMS["bar_intervals"]):
            want = bars_by_groupby(tape, interval)
            got = bars[(bars["symbol"] == s) & (bars["interval_ns"] == interval)]
            assert len(want) - 1 <= len(got) <= len(want) and len(got) >= 1
            for name in ("bar_start", "open", "high", "low", "close", "volume", "notional",
                         "trades"):
                np.testing.assert_array_equal(got[name], want[name].to_numpy()[:len(got)])
            still_open = want["bar_start"].iloc[-1] if len(got) < len(want) else -1
            assert market_run["ana"].rows[s]["bar_start"][i] == still_open


def test_market_of_six_venues_matches_reference():
    """Six venues, more than one 256-bit vector of the per-venue times holds: rows
    still equal the reference after every result, venues 4 and 5 included."""
    n_venues, symbols = 6, [0, 1, 2]
    results = market_results(11, n_symbols=3, n_venues=n_venues, n_events=4000)
    _, _, trace = run_kernel(symbols, n_venues, results, **MARKET_PARAMS)
    rows, _ = run_reference(symbols, n_venues, results, **MARKET_PARAMS)
    assert_rows_match(trace, rows, results)
    last = [r for r in rows if r is not None][-1]
    assert min(last["venue_time_at_bid"][4:6]) > 0 and min(last["venue_time_at_ask"][4:6]) > 0


def test_market_rows_of_symbols_without_results_are_untouched():
    """A symbol of the worker with no results keeps its initial row; others are not written."""
    results = market_results(5, n_symbols=2, n_venues=2, n_events=500)
    ana, _, _ = run_kernel([0, 1, 4], 2, results, **MARKET_PARAMS)
    assert ana.rows[4]["an_updates"] == 0 and list(ana.rows[4]["bar_start"]) == [-1, -1]
    assert ana.rows[4]["symbol"] == 4
    assert not ana.rows[2].tobytes().strip(b"\0") and not ana.rows[5].tobytes().strip(b"\0")


# ---------------------------------------------------------------- hand-crafted results

class Tape:
    """Builds a RESULT array one record at a time, with consistent derived fields."""

    def __init__(self):
        self.records = []
        self.volume = {}
        self.venue_bbo = {}  # (symbol, venue) -> last reported (bid, ask), as the book keeps them

    def add(self, kind, t, bid=(0, 0), ask=(0, 0), symbol=0, venue=0, vbid=None, vask=None,
            last=(0, 0), side=SIDE_BID, bid_levels=None, ask_levels=None):
        r = np.zeros(1, RESULT)[0]
        r["seq"] = len(self.records) + 1
        r["exch_ts"] = t
        r["recv_ts"] = t + 7
        r["proc_ts"] = t + 9
        r["kind"] = kind
        r["event_type"] = {RES_TRADE: 7, RES_CLEAR: 8, RES_WATERMARK: 9, RES_END: 10}.get(kind, 1)
        if kind in (RES_WATERMARK, RES_END):
            self.records.append(r)
            return self
        r["symbol"], r["venue"], r["side"] = symbol, venue, side
        r["bid_px"], r["bid_qty"] = bid
        r["ask_px"], r["ask_qty"] = ask
        vbid = bid if vbid is None else vbid
        vask = ask if vask is None else vask
        r["venue_bid_px"], r["venue_bid_qty"] = vbid
        r["venue_ask_px"], r["venue_ask_qty"] = vask
        # the venues at the best, from each venue's last reported best levels
        self.venue_bbo[symbol, venue] = (tuple(vbid), tuple(vask))
        for (sym, v), (vb, va) in self.venue_bbo.items():
            if sym == symbol and bid[1] and vb[1] and vb[0] == bid[0]:
                r["bid_venues"] |= 1 << v
            if sym == symbol and ask[1] and va[1] and va[0] == ask[0]:
                r["ask_venues"] |= 1 << v
        r["bid_venue"] = venue if bid[1] else NO_VENUE
        r["ask_venue"] = venue if ask[1] else NO_VENUE
        if bid[1] and ask[1] and bid[0] >= ask[0]:
            r["flags"] = RFLAG_LOCKED if bid[0] == ask[0] else RFLAG_CROSSED
        r["level_bid_px"][0], r["level_bid_qty"][0] = bid
        r["level_ask_px"][0], r["level_ask_qty"][0] = ask
        for j, (px, qty) in enumerate(bid_levels or (), start=1):
            r["level_bid_px"][j], r["level_bid_qty"][j] = px, qty
        for j, (px, qty) in enumerate(ask_levels or (), start=1):
            r["level_ask_px"][j], r["level_ask_qty"][j] = px, qty
        vol, notional, trades = self.volume.get(symbol, (0, 0, 0))
        if kind == RES_TRADE:
            vol, notional, trades = vol + last[1], notional + last[0] * last[1], trades + 1
            r["last_px"], r["last_qty"] = last
        self.volume[symbol] = (vol, notional, trades)
        r["volume"], r["notional"], r["trades"] = vol, notional, trades
        self.records.append(r)
        return self

    def quote(self, t, bid, ask, **kw):
        return self.add(RES_QUOTE, t, bid, ask, **kw)

    def trade(self, t, px, qty, side, bid=(0, 0), ask=(0, 0), **kw):
        return self.add(RES_TRADE, t, bid, ask, last=(px, qty), side=side, **kw)

    def array(self):
        arr = np.zeros(len(self.records), RESULT)
        for i, r in enumerate(self.records):
            arr[i] = r
        return arr


BID = (100_0000, 10)
ASK = (100_0100, 30)
CRAFT = dict(bar_intervals=(100,), vwap_window=100, vwap_buckets=10, ofi_window=50,
             ofi_buckets=5, rv_interval=10, rv_samples=4, depth_levels=3, impact_delay=20,
             impact_pending=4)


def craft(tape, n_venues=2, symbols=(0,), **params):
    """Compare kernel and reference on a crafted tape; return (stream, trace rows as dicts)."""
    results = tape.array()
    stream, trace, _ = compare(list(symbols), n_venues, results, **dict(CRAFT, **params))
    return stream, trace


def test_one_sided_quotes_have_nan_prices_but_integer_depth():
    """Without a two-sided quote every price metric is NaN; depths are still summed."""
    tape = (Tape().quote(0, (100_0000, 5), (0, 0), bid_levels=[(99_9900, 7), (99_9800, 9)])
              .quote(10, (0, 0), (0, 0))
              .quote(20, (0, 0), (100_0100, 4)))
    _, trace = craft(tape, depth_levels=2)
    for name in ("mid", "spread", "spread_bps", "microprice", "imbalance"):
        assert np.isnan(trace[name]).all(), name
    assert trace["depth_bid"].tolist() == [12, 0, 0]
    assert trace["depth_ask"].tolist() == [0, 0, 4]
    assert trace["depth_imbalance"][0] == 1.0 and np.isnan(trace["depth_imbalance"][1])
    assert trace["depth_imbalance"][2] == -1.0
    assert trace["ofi"].tolist() == [0, 0, 0]


def test_two_sided_quote_metrics():
    """mid, spread, spread_bps, microprice, imbalance, depth of a two-sided quote."""
    tape = Tape().quote(0, BID, ASK, bid_levels=[(99_9900, 5), (99_9800, 100)],
                        ask_levels=[(100_0200, 1)])
    _, trace = craft(tape, depth_levels=2)
    row = trace[0]
    assert row["mid"] == pytest.approx(100.005, rel=1e-12)
    assert row["spread"] == pytest.approx(0.01, rel=1e-9)
    assert row["spread_bps"] == pytest.approx(0.01 / 100.005 * 1e4, rel=1e-9)
    assert row["microprice"] == pytest.approx((100.0 * 30 + 100.01 * 10) / 40, rel=1e-12)
    assert row["imbalance"] == pytest.approx(-0.5)
    assert (row["depth_bid"], row["depth_ask"]) == (15, 31)
    assert row["depth_imbalance"] == pytest.approx(-16 / 46)


def test_locked_and_crossed_time_and_crossed_signal_fires_on_each_entry():
    """time_locked/time_crossed add the dt after locked/crossed quotes; SIG_CROSSED fires
    when the quote becomes crossed, not while it stays crossed, and again on re-entry."""
    px = 100_0000
    tape = (Tape().quote(0, (px, 1), (px + 100, 1))
              .quote(100, (px, 1), (px, 1))            # locked
              .quote(300, (px + 100, 1), (px, 2))      # crossed: fires
              .quote(350, (px + 200, 1), (px, 2))      # still crossed
              .quote(500, (px, 1), (px + 100, 1))
              .quote(700, (px + 100, 1), (px, 1))      # crossed again: fires
              .quote(1000, (px, 1), (px + 100, 1)))
    stream, trace = craft(tape)
    assert trace["time_locked"].tolist() == [0, 0, 200, 200, 200, 200, 200]
    assert trace["time_crossed"].tolist() == [0, 0, 0, 50, 200, 200, 500]
    assert trace["time_total"].tolist() == [0, 100, 300, 350, 500, 700, 1000]
    bit = 1 << SIG_CROSSED
    assert [(s & bit) != 0 for s in trace["signals"]] == [False, False, True, True, False,
                                                         True, False]
    sigs = stream[stream["kind"] == RES_SIGNAL].view(SIGNAL_RECORD)
    assert sigs["signal"].tolist() == [SIG_CROSSED, SIG_CROSSED]
    assert sigs["seq"].tolist() == [3, 6]
    assert sigs["direction"].tolist() == [1, 1]
    kinds = stream["kind"].tolist()
    assert kinds[kinds.index(RES_SIGNAL) - 1] == RES_QUOTE


def test_crossed_signal_disabled():
    """signal_crossed=False: no SIG_CROSSED records, the bit stays clear."""
    px = 100_0000
    tape = Tape().quote(0, (px + 100, 1), (px, 1))
    stream, trace = craft(tape, signal_crossed=False)
    assert not (stream["kind"] == RES_SIGNAL).any()
    assert trace["signals"][0] == 0


def test_venue_time_at_best():
    """A venue accrues time at the bid/ask while its last reported best is the consolidated
    best with qty > 0."""
    b, a = (100_0000, 5), (100_0100, 5)
    tape = (Tape().quote(0, b, a, venue=0)                                # v0 at both
              .quote(10, b, a, venue=1, vbid=(100_0000, 3), vask=(100_0200, 1))
              .quote(30, b, a, venue=1, vbid=(99_9900, 3), vask=(100_0100, 2))
              .quote(60, b, a, venue=0, vbid=(100_0000, 5), vask=(0, 0))
              .quote(100, (0, 0), a, venue=0, vbid=(0, 0), vask=(0, 0)))
    _, trace = craft(tape, n_venues=3)
    assert trace["venue_time_at_bid"][-1][:3].tolist() == [100, 20, 0]
    assert trace["venue_time_at_ask"][-1][:3].tolist() == [60, 70, 0]


def test_rv_gap_longer_than_rv_samples_steps():
    """After a gap of many grid steps the window holds rv_samples returns of P's mid (all 0),
    the older returns fall out, and a new mid shows as one return."""
    b1, b2, b3 = 100_0000, 101_0000, 102_0000
    tape = Tape()
    for t, b in ((0, b1), (15, b2), (25, b3), (5_000, b1), (5_011, b1)):
        tape.quote(t, (b, 1), (b + 100, 1))
    # samples: 0, 10 of mid1 (at 15); 20 of mid2 (at 25); 4950..4990 of mid3 (at 5000,
    # the last rv_samples + 1 of them); 5000 of mid1 (at 5011)
    _, trace = craft(tape)
    assert trace["rv_returns"].tolist() == [0, 1, 2, 4, 4]
    assert trace["rv"][1] == 0.0
    assert trace["rv"][2] == pytest.approx(abs(math.log((b2 + 50) / (b1 + 50))), rel=1e-9)
    assert trace["rv"][3] == 0.0
    assert trace["rv"][4] == pytest.approx(abs(math.log((b1 + 50) / (b3 + 50))), rel=1e-9)


def test_rv_missing_sample_breaks_the_chain():
    """A grid time without a two-sided quote gives no return into or out of it."""
    tape = (Tape().quote(0, BID, ASK)
              .quote(10, BID, (0, 0))      # sample 0: two-sided
              .quote(20, BID, ASK)         # sample 10: missing
              .quote(30, BID, ASK)         # sample 20: two-sided
              .quote(40, BID, ASK))        # sample 30: two-sided
    _, trace = craft(tape, rv_samples=10)
    assert trace["rv_returns"].tolist() == [0, 0, 0, 0, 1]


def test_clock_going_back_adds_no_time():
    """dt clamps to 0 when the clock goes back, and the symbol's clock stays where it was:
    time_total is the exchange-clock time since the symbol's first result."""
    tape = (Tape().quote(0, BID, ASK).quote(1_000, BID, ASK).quote(500, BID, ASK)
              .quote(1_200, BID, ASK).quote(1_200, BID, ASK))
    _, trace = craft(tape, rv_interval=10_000, bar_intervals=(100_000,))
    assert trace["time_total"].tolist() == [0, 1_000, 1_000, 1_200, 1_200]
    assert trace["an_updates"].tolist() == [1, 2, 3, 4, 5]
    assert trace["an_exch_ts"].tolist() == [0, 1_000, 500, 1_200, 1_200]


def test_effective_realized_spread_and_impact():
    """eff spread from P's mid; realized spread and impact from the mid in effect at
    t + delay, taken at the first result past it."""
    b, a = (100_0000, 10), (100_0200, 10)     # mid 100.01
    b2, a2 = (100_0200, 10), (100_0400, 10)   # mid 100.03
    tape = (Tape().quote(0, b, a)
              .trade(5, 100_0200, 3, SIDE_ASK, b, a)     # buy at 100.02: eff 0.02
              .trade(6, 100_0000, 2, SIDE_BID, b, a)     # sell at 100.00: eff 0.02
              .quote(20, b2, a2)
              .quote(26, b2, a2)                         # past 5 + 20: first resolves
              .quote(27, b, a))                          # past 6 + 20: second resolves
    _, trace = craft(tape)
    assert trace["eff_trades"].tolist() == [0, 1, 2, 2, 2, 2]
    assert trace["eff_spread"][1] == pytest.approx(0.02, rel=1e-9)
    assert trace["eff_spread_mean"][2] == pytest.approx(0.02, rel=1e-9)
    assert trace["eff_spread_bps_mean"][2] == pytest.approx(0.02 / 100.01 * 1e4, rel=1e-9)
    assert trace["impact_trades"].tolist() == [0, 0, 0, 0, 1, 2]
    # buy at 100.02, M 100.01, M' 100.03: realized 2(100.02-100.03), impact 2(100.03-100.01)
    assert trace["realized_spread_mean"][4] == pytest.approx(-0.02, rel=1e-9)
    assert trace["price_impact_mean"][4] == pytest.approx(0.04, rel=1e-9)
    # sell at 100.00: realized -2(100.00-100.03) = 0.06, impact -2(0.02) = -0.04
    assert trace["realized_spread_mean"][5] == pytest.approx(0.02, rel=1e-9)
    assert trace["price_impact_mean"][5] == pytest.approx(0.0, abs=1e-12)


def test_impact_dropped_when_pending_is_full():
    """Beyond impact_pending followed trades, a trade with an eff spread is counted dropped."""
    tape = Tape().quote(0, BID, ASK)
    for t in (1, 2, 3, 4):
        tape.trade(t, ASK[0], 1, SIDE_ASK, BID, ASK)
    tape.quote(100, BID, ASK).trade(101, ASK[0], 1, SIDE_ASK, BID, ASK)
    _, trace = craft(tape, impact_pending=2)
    assert trace["impact_dropped"].tolist() == [0, 0, 0, 1, 2, 2, 2]
    assert trace["eff_trades"].tolist() == [0, 1, 2, 3, 4, 4, 5]
    assert trace["impact_trades"].tolist() == [0, 0, 0, 0, 0, 2, 2]


def test_impact_dropped_from_means_without_a_two_sided_quote():
    """A followed trade whose resolving result's P is one-sided enters neither mean."""
    tape = (Tape().quote(0, BID, ASK).trade(1, ASK[0], 1, SIDE_ASK, BID, ASK)
              .quote(10, BID, (0, 0)).quote(50, BID, ASK))
    _, trace = craft(tape)
    assert trace["impact_trades"].tolist() == [0, 0, 0, 0]
    assert np.isnan(trace["realized_spread_mean"][-1])
    assert np.isnan(trace["price_impact_mean"][-1])
    assert trace["impact_dropped"][-1] == 0


def test_trade_without_two_sided_quote_has_no_eff_spread():
    """A symbol's first result, or a trade after a one-sided quote, has no eff spread."""
    tape = (Tape().trade(0, ASK[0], 5, SIDE_ASK, BID, ASK)
              .quote(1, BID, (0, 0))
              .trade(2, BID[0], 5, SIDE_BID, BID, (0, 0)))
    _, trace = craft(tape)
    assert trace["eff_trades"].tolist() == [0, 0, 0]
    assert np.isnan(trace["eff_spread_mean"][-1])
    assert trace["venue_volume"][-1][0] == 10 and trace["venue_trades"][-1][0] == 2


def test_bar_closed_by_a_quote():
    """A non-trade result past the open bar closes it: RES_BAR just before that result,
    and the row has no open bar afterwards."""
    tape = (Tape().trade(10, 100_0000, 2, SIDE_ASK, BID, ASK)
              .trade(50, 100_0300, 1, SIDE_BID, BID, ASK, venue=1)
              .trade(60, 99_9900, 4, SIDE_ASK, BID, ASK)
              .quote(250, BID, ASK))
    stream, trace = craft(tape)
    assert stream["kind"].tolist() == [RES_TRADE] * 3 + [RES_BAR, RES_QUOTE]
    bar = stream[3:4].view(BAR_RECORD)[0]
    assert (bar["interval_ns"], bar["bar_start"]) == (100, 0)
    assert (bar["open"], bar["high"], bar["low"], bar["close"]) == (100_0000, 100_0300,
                                                                   99_9900, 99_9900)
    assert (bar["volume"], bar["trades"]) == (7, 3)
    assert bar["notional"] == 100_0000 * 2 + 100_0300 + 99_9900 * 4
    assert (bar["seq"], bar["exch_ts"], bar["recv_ts"], bar["proc_ts"]) == (4, 250, 257, 259)
    assert trace["bar_start"][2].tolist() == [0, -1]
    assert trace["bar_start"][3].tolist() == [-1, -1]


def test_two_bar_intervals_close_in_interval_order():
    """Closes of both intervals at one result come interval 0 first, before the result."""
    tape = Tape()
    for t, px in ((10, 100_0000), (120, 100_0100), (250, 100_0200), (310, 100_0300),
                  (650, 100_0400)):
        tape.trade(t, px, 1, SIDE_ASK, BID, ASK)
    stream, trace = craft(tape, bar_intervals=(100, 300))
    bars = stream[stream["kind"] == RES_BAR].view(BAR_RECORD)
    assert [(b["interval_ns"], b["bar_start"], b["trades"]) for b in bars] == [
        (100, 0, 1), (100, 100, 1), (100, 200, 1), (300, 0, 3), (100, 300, 1), (300, 300, 1)]
    T, B = RES_TRADE, RES_BAR
    assert stream["kind"].tolist() == [T, B, T, B, T, B, B, T, B, B, T]
    assert trace["bar_start"][-1].tolist() == [600, 600]
    assert trace["bar_close"][-1].tolist() == [100_0400, 100_0400]


def test_zero_bar_interval_means_not_configured():
    """A bar interval of 0 is accepted and means not configured: no bars, bar_start -1."""
    tape = Tape().trade(10, 100_0000, 1, SIDE_ASK, BID, ASK).quote(250, BID, ASK)
    stream, trace = craft(tape, bar_intervals=(0, 100))
    bars = stream[stream["kind"] == RES_BAR].view(BAR_RECORD)
    assert bars["interval_ns"].tolist() == [100]
    assert trace["bar_start"][0].tolist() == [-1, 0]


def test_markers_pass_through_and_close_nothing():
    """Watermark and end markers come out unchanged, get a zero trace row, close no bar."""
    tape = (Tape().trade(10, 100_0000, 2, SIDE_ASK, BID, ASK)
              .add(RES_WATERMARK, 5_000)
              .quote(20, BID, ASK)
              .add(RES_END, 9_000))
    stream, trace = craft(tape)
    assert stream.tobytes() == tape.array().tobytes()
    assert not trace[1].tobytes().strip(b"\0") and not trace[3].tobytes().strip(b"\0")
    assert trace["bar_start"][2][0] == 0


def test_rolling_windows_drop_old_buckets():
    """rolling_volume/vwap and ofi hold only the last n buckets, this result's included."""
    b1, a1 = (100_0000, 10), (100_0100, 10)
    tape = (Tape().quote(0, b1, a1)
              .trade(5, 100_0000, 3, SIDE_BID, b1, a1)
              .quote(15, (100_0000, 14), a1)        # e = +14 - 10 = 4 ... bucket 1
              .trade(95, 100_0100, 1, SIDE_ASK, (100_0000, 14), a1)
              .quote(100, (100_0000, 14), a1)       # vwap window 90..100 keeps bucket 9..10
              .quote(200, (100_0000, 14), a1))
    _, trace = craft(tape)
    assert trace["rolling_volume"].tolist() == [0, 3, 3, 4, 1, 0]
    assert np.isnan(trace["rolling_vwap"][0]) and np.isnan(trace["rolling_vwap"][-1])
    assert trace["rolling_vwap"][3] == pytest.approx((100 * 3 + 100.01) / 4, rel=1e-12)
    assert trace["ofi"].tolist() == [0, 0, 4, 0, 0, 0]


def test_ofi_and_spread_signals():
    """SIG_OFI fires on entering +1 and on turning to -1; SIG_SPREAD on a wide spread."""
    px = 100_0000
    tape = (Tape().quote(0, (px, 10), (px + 100, 10))
              .quote(1, (px, 20), (px + 100, 10))          # e = +10: OFI +1 fires
              .quote(2, (px, 20), (px + 100, 30))          # e = -20: ofi -10, fires -1
              .quote(3, (px, 20), (px + 10_000, 30)))      # e = 30 (ask up), wide spread
    stream, trace = craft(tape, signal_ofi=10, signal_spread_bps=50.0)
    sigs = stream[stream["kind"] == RES_SIGNAL].view(SIGNAL_RECORD)
    got = [(int(s["signal"]), int(s["direction"]), float(s["value"])) for s in sigs]
    assert got == [(SIG_OFI, 1, 10.0), (SIG_OFI, -1, -10.0), (SIG_OFI, 1, 20.0),
                   (SIG_SPREAD, 1, pytest.approx(1.0 / 100.5 * 1e4, rel=1e-9))]
    assert sigs["threshold"].tolist() == [10.0, 10.0, 10.0, 50.0]
    assert trace["signals"].tolist() == [0, 1, 1, 3]


def test_results_of_two_symbols_are_independent():
    """Two symbols' rows evolve independently in one stream."""
    tape = Tape()
    for t in range(0, 200, 7):
        tape.quote(t, (100_0000 + t, 1 + t % 3), ASK, symbol=0)
        tape.trade(t + 1, 50_0000, 1 + t % 4, SIDE_BID, (49_9900, 2), (50_0100, 2),
                   symbol=3, venue=1)
    craft(tape, symbols=(0, 3))


# ---------------------------------------------------------------- property test

STEPS = [0, 0, 1, 3, 5, 9, 14, 30, 70]


@st.composite
def crafted_results(draw, steps=STEPS):
    """A short random stream of two symbols' results: one-sided, locked, crossed quotes,
    trades, clears, markers, timestamps moving by ``steps``."""
    tape = Tape()
    t = {0: 1000, 2: 1000}
    for _ in range(draw(st.integers(1, 40))):
        what = draw(st.sampled_from(["quote"] * 4 + ["trade"] * 3 + ["clear", "marker"]))
        symbol = draw(st.sampled_from([0, 2]))
        t[symbol] += draw(st.sampled_from(steps))
        if what == "marker":
            tape.add(draw(st.sampled_from([RES_WATERMARK, RES_END])), t[symbol])
            continue
        bid = (1000 + 10 * draw(st.integers(0, 4)), draw(st.sampled_from([0, 1, 2, 5])))
        ask = (bid[0] + 10 * draw(st.integers(-1, 3)), draw(st.sampled_from([0, 1, 3, 4])))
        venue = draw(st.integers(0, 2))
        vbid = draw(st.sampled_from([bid, (bid[0], 1), (bid[0] - 10, 2), (0, 0)]))
        vask = draw(st.sampled_from([ask, (ask[0], 2), (ask[0] + 10, 1), (0, 0)]))
        levels = [(bid[0] - 10 * j, draw(st.integers(0, 3))) for j in (1, 2)]
        kw = dict(symbol=symbol, venue=venue, vbid=vbid, vask=vask, bid_levels=levels)
        if what == "trade":
            px = 1000 + 10 * draw(st.integers(-1, 5))
            tape.trade(t[symbol], px, draw(st.integers(1, 9)),
                       draw(st.sampled_from([SIDE_BID, SIDE_ASK])), bid, ask, **kw)
        else:
            tape.add(RES_QUOTE if what == "quote" else RES_CLEAR, t[symbol], bid, ask, **kw)
    return tape.array()


PROPERTY_PARAMS = dict(bar_intervals=(20, 45), vwap_window=30, vwap_buckets=3, ofi_window=20,
                       ofi_buckets=4, rv_interval=5, rv_samples=4, depth_levels=2,
                       impact_delay=12, impact_pending=2, signal_ofi=3,
                       signal_spread_bps=150.0)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crafted_results())
def test_random_crafted_streams_match_reference(results):
    """Kernel and reference agree on every field and the whole stream of random results."""
    compare([0, 2], 3, results, **PROPERTY_PARAMS)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crafted_results(steps=STEPS + [-2, -7, -25]))
def test_random_streams_with_the_clock_going_back_match_reference(results):
    """Kernel and reference agree when a symbol's clock sometimes goes back."""
    compare([0, 2], 3, results, **PROPERTY_PARAMS)


# ---------------------------------------------------------------- parameters

@pytest.mark.parametrize("kwargs", [
    dict(vwap_window=100, vwap_buckets=7),
    dict(ofi_window=100, ofi_buckets=3),
    dict(bar_intervals=(10, 20, 30)),
    dict(bar_intervals=(-10, 0)),
    dict(vwap_window=-60, vwap_buckets=6),
    dict(ofi_window=-10, ofi_buckets=10),
    dict(rv_interval=-1),
    dict(rv_samples=-1),
    dict(impact_delay=-1),
    dict(impact_pending=-1),
    dict(depth_levels=-1),
    dict(signal_ofi=-1),
    dict(signal_spread_bps=-1.0),
], ids=str)
def test_make_params_rejects_bad_values(kwargs):
    """Bad parameter values raise ValueError."""
    with pytest.raises(ValueError):
        A.make_params(**kwargs)


def test_make_params_accepts_good_values():
    """The defaults and the small values used here are accepted."""
    A.make_params()
    A.make_params(**CRAFT)
    A.make_params(**PROPERTY_PARAMS)
    A.make_params(**MARKET_PARAMS)
