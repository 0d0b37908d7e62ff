"""Slow, obviously correct reference of shmengine.analytics, from its docstring.

Every symbol keeps its whole history (results, trades, order-flow terms, mid
samples, effective spreads, resolved impacts) and every rolling value is
recomputed from that history whenever a result asks for it.

    ref = NaiveAnalytics([0, 1], n_venues=3, bar_intervals=(1000, 0), ...)
    rows, stream = ref.run(results)

``rows[i]`` is a dict of every ANALYTICS field the docstring defines after
``results[i]`` (None for a marker); ``stream`` is the expected output stream as
a list of dicts, each with a ``kind`` (RES_BAR, RES_SIGNAL or the result's
own kind). Array fields are lists; a bar field of an interval without an open
bar is None (the docstring leaves it undefined).
"""
import math

import numpy as np
import pandas as pd

from shmengine.layout import (
    MAX_BAR_INTERVALS, MAX_VENUES, PRICE_SCALE, RES_BAR, RES_CLEAR, RES_QUOTE, RES_SIGNAL,
    RES_TRADE, RESULT, SIDE_ASK, SIG_CROSSED, SIG_OFI, SIG_SPREAD,
)

NAN = float("nan")
SYMBOL_RESULTS = (RES_QUOTE, RES_TRADE, RES_CLEAR)
HEAD = ("seq", "exch_ts", "recv_ts", "proc_ts", "symbol", "venue", "event_type")
BAR_FIELDS = ("open", "high", "low", "close", "volume", "notional", "trades")


class Quote:
    """A result's consolidated quote, in fixed point, and what follows from it alone."""

    def __init__(self, r, depth_levels):
        self.bid_px = int(r["bid_px"])
        self.bid_qty = int(r["bid_qty"])
        self.ask_px = int(r["ask_px"])
        self.ask_qty = int(r["ask_qty"])
        self.depth_bid = sum(int(q) for q in r["level_bid_qty"][:depth_levels])
        self.depth_ask = sum(int(q) for q in r["level_ask_qty"][:depth_levels])

    @property
    def two_sided(self):
        return self.bid_qty > 0 and self.ask_qty > 0

    @property
    def locked(self):
        return self.two_sided and self.bid_px == self.ask_px

    @property
    def crossed(self):
        return self.two_sided and self.bid_px > self.ask_px

    @property
    def mid(self):
        if not self.two_sided:
            return NAN
        return (self.bid_px + self.ask_px) / (2 * PRICE_SCALE)

    def metrics(self):
        """mid, spread, spread_bps, microprice, imbalance, depths, depth_imbalance."""
        pb, qb, pa, qa = self.bid_px, self.bid_qty, self.ask_px, self.ask_qty
        m = {"mid": NAN, "spread": NAN, "spread_bps": NAN, "microprice": NAN, "imbalance": NAN}
        if self.two_sided:
            m["mid"] = self.mid
            m["spread"] = (pa - pb) / PRICE_SCALE
            m["spread_bps"] = m["spread"] / m["mid"] * 1e4
            m["microprice"] = (pb * qa + pa * qb) / ((qa + qb) * PRICE_SCALE)
            m["imbalance"] = (qb - qa) / (qb + qa)
        db, da = self.depth_bid, self.depth_ask
        m["depth_bid"] = db
        m["depth_ask"] = da
        m["depth_imbalance"] = NAN if db + da == 0 else (db - da) / (db + da)
        return m


def ofi_term(prev, cur):
    """Cont-Kukanov-Stoikov e between two quotes; 0 unless both are two-sided."""
    if prev is None or not (prev.two_sided and cur.two_sided):
        return 0
    pb, qb, pa, qa = cur.bid_px, cur.bid_qty, cur.ask_px, cur.ask_qty
    pb_, qb_, pa_, qa_ = prev.bid_px, prev.bid_qty, prev.ask_px, prev.ask_qty
    return (qb * (pb >= pb_) - qb_ * (pb <= pb_) - qa * (pa <= pa_) + qa_ * (pa >= pa_))


def sign(x):
    return (x > 0) - (x < 0)


class SymbolHistory:
    """Everything that happened to one symbol so far."""

    def __init__(self, symbol, n_intervals):
        self.symbol = symbol
        self.quotes = []           # (t, Quote) of every result
        self.bid_venues = 0        # P's venues at the best bid / offer (bit masks)
        self.ask_venues = 0
        self.tape = {"t": [], "px": [], "qty": [], "venue": []}  # every print, as columns
        self.flow = {"t": [], "e": []}                            # every OFI term e
        self.samples = {}          # grid index -> mid (NaN: missing)
        self.last_sample = None    # grid index of the latest sample taken
        self.effs = []             # (eff_spread, eff_spread_bps)
        self.last_eff = NAN        # the latest trade's that had one; a trade without keeps it
        self.impacts = []          # (realized_spread, price_impact)
        self.pending = []          # dicts: t, d, px, m
        self.impact_dropped = 0
        self.time_total = 0
        self.time_locked = 0
        self.time_crossed = 0
        self.time_at_bid = [0] * MAX_VENUES
        self.time_at_ask = [0] * MAX_VENUES
        self.bars = [None] * n_intervals  # per interval: {"k": k, "trades": [...]} or None
        self.signal_state = {SIG_OFI: 0, SIG_SPREAD: 0, SIG_CROSSED: 0}
        self.last_seq = 0
        self.clock = None          # the symbol's exchange clock: the latest exch_ts so far

    @property
    def prev(self):
        """P: (t_P, P's quote), or (None, None) before the first result.

        t_P is the symbol's clock after P, which does not go back: a result whose
        exch_ts is below it counts as happening at t_P (dt 0, and the same bucket,
        bar and grid position), so time_total is the exchange-clock time since the
        symbol's first result, as ANALYTICS documents it."""
        return (self.clock, self.quotes[-1][1]) if self.quotes else (None, None)


class NaiveAnalytics:
    """The docstring of shmengine.analytics, applied one result at a time."""

    def __init__(self, symbols, n_venues, bar_intervals=(1_000_000_000, 60_000_000_000),
                 vwap_window=60_000_000_000, vwap_buckets=60, ofi_window=1_000_000_000,
                 ofi_buckets=10, rv_interval=1_000_000_000, rv_samples=60, depth_levels=5,
                 impact_delay=1_000_000_000, impact_pending=128, signal_ofi=0,
                 signal_spread_bps=0.0, signal_crossed=True):
        self.n_venues = n_venues
        self.intervals = list(bar_intervals) + [0] * (MAX_BAR_INTERVALS - len(bar_intervals))
        self.vwap_bucket = vwap_window // vwap_buckets
        self.vwap_buckets = vwap_buckets
        self.ofi_bucket = ofi_window // ofi_buckets
        self.ofi_buckets = ofi_buckets
        self.rv_interval = rv_interval
        self.rv_samples = rv_samples
        self.depth_levels = depth_levels
        self.impact_delay = impact_delay
        self.impact_pending = impact_pending
        self.signal_ofi = signal_ofi
        self.signal_spread_bps = signal_spread_bps
        self.signal_crossed = signal_crossed
        self.symbols = {int(s): SymbolHistory(int(s), MAX_BAR_INTERVALS) for s in symbols}

    # ------------------------------------------------------------ driving

    def run(self, results):
        """Apply every record of ``results``; return (rows, stream)."""
        rows, stream = [], []
        for r in results:
            row, records = self.step(r)
            rows.append(row)
            stream.extend(records)
        return rows, stream

    def step(self, r):
        """Apply one record: (row dict or None for a marker, its stream records).

        ``t`` below is the result's time on the symbol's clock: its exch_ts, or t_P
        if the clock went back."""
        if int(r["kind"]) not in SYMBOL_RESULTS:
            return None, [record_of(r)]
        h = self.symbols[int(r["symbol"])]
        t_p, p = h.prev
        t = int(r["exch_ts"]) if t_p is None else max(int(r["exch_ts"]), t_p)
        q = Quote(r, self.depth_levels)
        is_trade = int(r["kind"]) == RES_TRADE

        self._advance_time(h, t, t_p, p)
        self._take_samples(h, t, t_p, p)
        self._resolve_impacts(h, t, p)
        if is_trade:
            self._record_trade(h, r, t, p)
        bar_records = self._roll_bars(h, r, t, is_trade)
        h.flow["t"].append(t)
        h.flow["e"].append(ofi_term(p, q))
        h.bid_venues, h.ask_venues = int(r["bid_venues"]), int(r["ask_venues"])
        h.quotes.append((t, q))
        h.last_seq = int(r["seq"])
        h.clock = t

        row = self._row(h, t, q)
        row["an_exch_ts"] = int(r["exch_ts"])
        signal_records = self._signals(h, r, row, q)
        row["signals"] = sum(1 << s for s, state in h.signal_state.items() if state)
        return row, bar_records + [record_of(r)] + signal_records

    # ------------------------------------------------------------ pieces

    def _advance_time(self, h, t, t_p, p):
        """time_total, time_locked/crossed and venue time at the best grow by dt = t - t_P."""
        if p is None:
            return
        dt = max(0, t - t_p)
        h.time_total += dt
        if p.locked:
            h.time_locked += dt
        if p.crossed:
            h.time_crossed += dt
        for v in range(8):
            if p.bid_qty > 0 and h.bid_venues >> v & 1:
                h.time_at_bid[v] += dt
            if p.ask_qty > 0 and h.ask_venues >> v & 1:
                h.time_at_ask[v] += dt

    def _take_samples(self, h, t, t_p, p):
        """Sample P's mid at every grid time in [t_P, t), the last rv_samples + 1 at most."""
        if p is None or t <= t_p:
            return
        ri = self.rv_interval
        first = -(-t_p // ri)
        last = (t - 1) // ri
        for k in range(max(first, last - self.rv_samples), last + 1):
            h.samples[k] = p.mid
            h.last_sample = k

    def _rv(self, h):
        """sqrt of the summed squared log-returns of the last rv_samples grid steps."""
        if h.last_sample is None:
            return 0.0, 0
        squares = []
        for k in range(h.last_sample - self.rv_samples + 1, h.last_sample + 1):
            a, b = h.samples.get(k - 1, NAN), h.samples.get(k, NAN)
            if not (math.isnan(a) or math.isnan(b)):
                squares.append(math.log(b / a) ** 2)
        return math.sqrt(sum(squares)), len(squares)

    def _resolve_impacts(self, h, t, p):
        """Trades whose delay has passed at t take P's mid as M'."""
        still = []
        for tr in h.pending:
            if t > tr["t"] + self.impact_delay:
                if p.two_sided:
                    m2 = p.mid
                    h.impacts.append((2 * tr["d"] * (tr["px"] - m2), 2 * tr["d"] * (m2 - tr["m"])))
            else:
                still.append(tr)
        h.pending = still

    def _record_trade(self, h, r, t, p):
        px, qty, venue = int(r["last_px"]), int(r["last_qty"]), int(r["venue"])
        for name, value in (("t", t), ("px", px), ("qty", qty), ("venue", venue)):
            h.tape[name].append(value)
        if p is None or not p.two_sided:
            return
        d = 1 if int(r["side"]) == SIDE_ASK else -1
        price, m = px / PRICE_SCALE, p.mid
        eff = 2 * d * (price - m)
        h.last_eff = eff
        h.effs.append((eff, eff / m * 1e4))
        if len(h.pending) < self.impact_pending:
            h.pending.append({"t": t, "d": d, "px": price, "m": m})
        else:
            h.impact_dropped += 1

    def _roll_bars(self, h, r, t, is_trade):
        """Close the open bars this result is past; put a trade in its bar. Returns closes."""
        closes = []
        for i, interval in enumerate(self.intervals):
            if not interval:
                continue
            bar = h.bars[i]
            if bar is not None and t // interval > bar["k"]:
                closes.append(dict(head_of(r), kind=RES_BAR, interval_ns=interval,
                                   bar_start=bar["k"] * interval, **bar_values(bar["trades"])))
                h.bars[i] = bar = None
            if is_trade:
                if bar is None:
                    h.bars[i] = bar = {"k": t // interval, "trades": []}
                bar["trades"].append({"px": h.tape["px"][-1], "qty": h.tape["qty"][-1]})
        return closes

    def _rolling_sum(self, times, values, t, bucket_ns, n):
        """Exact sum of the values whose times are in buckets c - n + 1 .. c, c t's bucket."""
        b = np.array(times, np.int64) // bucket_ns
        c = t // bucket_ns
        return int(np.array(values, np.int64)[(c - n + 1 <= b) & (b <= c)].sum())

    def _row(self, h, t, q):
        row = {"symbol": h.symbol, "an_seq": h.last_seq, "an_exch_ts": t,
               "an_updates": len(h.quotes)}
        row.update(q.metrics())
        row["ofi"] = self._rolling_sum(h.flow["t"], h.flow["e"], t, self.ofi_bucket,
                                       self.ofi_buckets)
        tape = {name: np.array(column, np.int64) for name, column in h.tape.items()}
        volume = self._rolling_sum(tape["t"], tape["qty"], t, self.vwap_bucket,
                                   self.vwap_buckets)
        notional = self._rolling_sum(tape["t"], tape["px"] * tape["qty"], t, self.vwap_bucket,
                                     self.vwap_buckets)
        row["rolling_volume"] = volume
        row["rolling_vwap"] = notional / (volume * PRICE_SCALE) if volume else NAN
        row["rv"], row["rv_returns"] = self._rv(h)
        row["eff_spread"] = h.last_eff
        row["eff_trades"] = len(h.effs)
        row["eff_spread_mean"] = mean(e for e, _ in h.effs)
        row["eff_spread_bps_mean"] = mean(b for _, b in h.effs)
        row["impact_trades"] = len(h.impacts)
        row["realized_spread_mean"] = mean(rs for rs, _ in h.impacts)
        row["price_impact_mean"] = mean(pi for _, pi in h.impacts)
        row["impact_dropped"] = h.impact_dropped
        row["time_total"] = h.time_total
        row["time_locked"] = h.time_locked
        row["time_crossed"] = h.time_crossed
        row["venue_time_at_bid"] = list(h.time_at_bid)
        row["venue_time_at_ask"] = list(h.time_at_ask)
        row["venue_volume"] = [int(tape["qty"][tape["venue"] == v].sum())
                               for v in range(MAX_VENUES)]
        row["venue_trades"] = [int((tape["venue"] == v).sum()) for v in range(MAX_VENUES)]
        row["bar_start"] = [-1] * MAX_BAR_INTERVALS
        for name in BAR_FIELDS:
            row["bar_" + name] = [None] * MAX_BAR_INTERVALS
        for i, bar in enumerate(h.bars):
            if bar is not None:
                row["bar_start"][i] = bar["k"] * self.intervals[i]
                for name, value in bar_values(bar["trades"]).items():
                    row["bar_" + name][i] = value
        return row

    def _signals(self, h, r, row, q):
        """Update the three signal states; return the records of those entering a new state."""
        ofi, bps = row["ofi"], row["spread_bps"]
        states = {
            SIG_OFI: sign(ofi) if self.signal_ofi and abs(ofi) >= self.signal_ofi else 0,
            SIG_SPREAD: int(bool(self.signal_spread_bps) and q.two_sided
                            and bps >= self.signal_spread_bps),
            SIG_CROSSED: int(bool(self.signal_crossed) and q.crossed),
        }
        values = {
            SIG_OFI: (float(ofi), float(self.signal_ofi)),
            SIG_SPREAD: (bps, float(self.signal_spread_bps)),
            SIG_CROSSED: ((q.bid_px - q.ask_px) / PRICE_SCALE, 0.0),
        }
        records = []
        for s in (SIG_OFI, SIG_SPREAD, SIG_CROSSED):
            new = states[s]
            if new and new != h.signal_state[s]:
                value, threshold = values[s]
                records.append(dict(head_of(r), kind=RES_SIGNAL, signal=s, direction=new,
                                    value=value, threshold=threshold))
            h.signal_state[s] = new
        return records


def mean(values):
    values = list(values)
    return sum(values) / len(values) if values else NAN


def bar_values(trades):
    """OHLC, volume, notional and trade count of a bar's trades, in stream order."""
    prices = [tr["px"] for tr in trades]
    return {"open": prices[0], "high": max(prices), "low": min(prices), "close": prices[-1],
            "volume": sum(tr["qty"] for tr in trades),
            "notional": sum(tr["px"] * tr["qty"] for tr in trades), "trades": len(trades)}


def bars_by_groupby(trades, interval):
    """All bars of a trade tape (columns t, px, qty), one per k = t // interval with trades."""
    df = pd.DataFrame(trades, columns=["t", "px", "qty"])
    df["k"] = df.t // interval
    df["notional"] = df.px * df.qty
    g = df.groupby("k", sort=True)
    out = pd.DataFrame({"open": g.px.first(), "high": g.px.max(), "low": g.px.min(),
                        "close": g.px.last(), "volume": g.qty.sum(),
                        "notional": g.notional.sum(), "trades": g.px.size()})
    out["bar_start"] = out.index * interval
    return out.reset_index(drop=True)


def head_of(r):
    return {name: int(r[name]) for name in HEAD}


def record_of(r):
    """A pass-through record: every RESULT field as it came in."""
    return {name: r[name].tolist() if hasattr(r[name], "tolist") else r[name]
            for name in RESULT.names}

