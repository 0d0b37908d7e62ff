"""The synthetic market, checked against a plain-Python order tracker."""
import re

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shmengine import layout as L
from shmengine import market
from shmengine.market import generate, new_market, symbol_names

# Without the JIT the kernels run as Python, where the generator's intended
# 64-bit wraparound warns, and slowly: keep the streams short there.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
SCALE = 50 if numba.config.DISABLE_JIT else 1
# Realism is a property of long streams only.
full_stream = pytest.mark.skipif(SCALE > 1, reason="needs the full-length stream (JIT disabled)")
ORDER_TYPES = (L.EV_EXECUTE, L.EV_EXECUTE_PRICE, L.EV_CANCEL, L.EV_DELETE, L.EV_REPLACE)


class Tracker:
    """Naive reference: every live order of every (symbol, venue) in dicts.

    ``apply`` checks one event against the orders it names and fails on
    anything a book builder downstream could not apply.
    """

    def __init__(self, ticks, n_venues):
        self.ticks = ticks
        self.n_venues = n_venues
        self.orders = {}   # (symbol, venue) -> {order_id: [side, price, qty]}
        self.levels = {}   # (symbol, venue, side) -> {price: live orders at it}
        self.ids = set()
        self.max_side_orders = 0

    def _level(self, symbol, venue, side, price, delta):
        lv = self.levels.setdefault((symbol, venue, side), {})
        lv[price] = lv.get(price, 0) + delta
        if lv[price] == 0:
            del lv[price]

    def best(self, symbol, venue, side):
        lv = self.levels.get((symbol, venue, side))
        if not lv:
            return None
        return max(lv) if side == L.SIDE_BID else min(lv)

    def nbbo(self, symbol):
        bids = [self.best(symbol, v, L.SIDE_BID) for v in range(self.n_venues)]
        asks = [self.best(symbol, v, L.SIDE_ASK) for v in range(self.n_venues)]
        bids = [p for p in bids if p is not None]
        asks = [p for p in asks if p is not None]
        return (max(bids) if bids else None), (min(asks) if asks else None)

    def book(self, symbol, venue):
        return {k: tuple(o) for k, o in self.orders.get((symbol, venue), {}).items()}

    def apply(self, e):
        seq, ts, rts, price, oid, new_oid, qty, symbol, venue, typ, side, flags, pad = e
        where = f"event seq {seq} {L.EVENT_TYPE_NAMES.get(typ, typ)} {e}"
        assert pad == 0, where
        assert 0 <= venue < self.n_venues and side in (L.SIDE_BID, L.SIDE_ASK), where
        book = self.orders.setdefault((symbol, venue), {})
        tick = int(self.ticks[symbol])
        if typ in ORDER_TYPES:
            assert oid in book, f"names no live order: {where}"
            o = book[oid]
            assert side == o[0], where
        if typ in (L.EV_ADD, L.EV_REPLACE, L.EV_EXECUTE_PRICE, L.EV_TRADE):
            assert price > 0 and price % tick == 0, \
                f"price not a positive multiple of {tick}: {where}"
        if typ != L.EV_EXECUTE_PRICE:
            assert flags == 0, where
        if typ != L.EV_REPLACE:
            assert new_oid == 0, where

        if typ == L.EV_ADD:
            assert oid >= 1 and oid not in self.ids, f"order id reused: {where}"
            assert qty > 0, where
            self.ids.add(oid)
            book[oid] = [side, price, qty]
            self._level(symbol, venue, side, price, 1)
        elif typ in (L.EV_EXECUTE, L.EV_EXECUTE_PRICE):
            assert 0 < qty <= o[2], f"executes more than remains: {where}"
            if typ == L.EV_EXECUTE:
                assert price == o[1], where
            else:
                assert price != o[1] and flags in (0, L.FLAG_NON_PRINTABLE), where
            o[2] -= qty
            if o[2] == 0:
                del book[oid]
                self._level(symbol, venue, side, o[1], -1)
        elif typ == L.EV_CANCEL:
            assert 0 < qty < o[2], f"cancels all or more than remains: {where}"
            assert price == o[1], where
            o[2] -= qty
        elif typ == L.EV_DELETE:
            assert (price, qty) == (o[1], o[2]), where
            del book[oid]
            self._level(symbol, venue, side, o[1], -1)
        elif typ == L.EV_REPLACE:
            assert new_oid >= 1 and new_oid not in self.ids, f"order id reused: {where}"
            assert qty > 0, where
            self.ids.add(new_oid)
            del book[oid]
            self._level(symbol, venue, side, o[1], -1)
            book[new_oid] = [side, price, qty]
            self._level(symbol, venue, side, price, 1)
        elif typ == L.EV_TRADE:
            assert qty > 0 and oid == 0, where
        elif typ == L.EV_CLEAR:
            assert oid == 0 and price == 0 and qty == 0, where
            book.clear()
            for s in (L.SIDE_BID, L.SIDE_ASK):
                self.levels.pop((symbol, venue, s), None)
        else:
            raise AssertionError(f"unknown type: {where}")

        bid = self.best(symbol, venue, L.SIDE_BID)
        ask = self.best(symbol, venue, L.SIDE_ASK)
        assert bid is None or ask is None or bid < ask, f"venue book crossed itself: {where}"
        if typ in (L.EV_ADD, L.EV_REPLACE):
            n_side = sum(1 for o in book.values() if o[0] == side)
            self.max_side_orders = max(self.max_side_orders, n_side)


def replay(m, events):
    tracker = Tracker(m.tick, m.n_venues)
    for e in events.tolist():
        tracker.apply(e)
    return tracker


def assert_books_match(m, tracker):
    """The generator's own books hold exactly the orders the stream left live,
    and its cached best prices (per venue and consolidated) agree with them."""
    best = m.best.reshape(m.n_symbols, m.n_venues, 2) * m.tick[:, None, None]
    for s in range(m.n_symbols):
        for v in range(m.n_venues):
            assert m.book(s, v) == tracker.book(s, v), (s, v)
            bid = tracker.best(s, v, L.SIDE_BID)
            ask = tracker.best(s, v, L.SIDE_ASK)
            assert best[s, v, L.SIDE_BID] == (bid or 0), (s, v)
            assert ask is None or best[s, v, L.SIDE_ASK] == ask, (s, v)
    raw = m.best.reshape(m.n_symbols, m.n_venues, 2)
    assert (m.nbbo[:, L.SIDE_BID] == raw[:, :, L.SIDE_BID].max(axis=1)).all()
    assert (m.nbbo[:, L.SIDE_ASK] == raw[:, :, L.SIDE_ASK].min(axis=1)).all()


# ---------------------------------------------------------------- names

def test_symbol_names_are_unique_ticker_like_and_prefix_stable():
    names = symbol_names(10_000)
    assert len(names) == 10_000 and len(set(names)) == 10_000
    assert all(re.fullmatch(r"[A-Z]{1,8}", n) for n in names)
    assert all(len(n) < L.SYMBOL_NAME_LEN for n in names)
    assert symbol_names(10_000) == names
    assert symbol_names(1) == names[:1]
    assert symbol_names(4321) == names[:4321]
    assert symbol_names(10_001)[:10_000] == names
    assert symbol_names(0) == []


def test_symbol_names_rejects_a_negative_count():
    with pytest.raises(ValueError, match="symbol_names"):
        symbol_names(-1)


def test_market_carries_its_names():
    m = new_market(30, 2, seed=1)
    assert m.names == symbol_names(30)


# ---------------------------------------------------------------- arguments

@pytest.mark.parametrize("args, kwargs, match", [
    ((0, 4, 1), {}, "n_symbols"),
    ((L.MAX_SYMBOLS + 1, 4, 1), {}, "n_symbols"),
    ((2.5, 4, 1), {}, "n_symbols"),
    ((True, 4, 1), {}, "n_symbols"),
    ((10, 0, 1), {}, "n_venues"),
    ((10, L.MAX_VENUES + 1, 1), {}, "n_venues"),
    ((10, 4, -1), {}, "seed"),
    ((10, 4, 2 ** 64), {}, "seed"),
    ((10, 4, "7"), {}, "seed"),
    ((10, 4, 1), {"p_cancle": 0.1}, "unknown option"),
    ((10, 4, 1), {"p_cancel": 1.5}, "p_cancel"),
    ((10, 4, 1), {"p_trade": "often"}, "p_trade"),
    ((10, 4, 1), {"capacity": 1}, "capacity"),
    ((10, 4, 1), {"capacity": 16.0}, "capacity"),
    ((10, 4, 1), {"depth": 40}, "depth"),
    ((10, 4, 1), {"zipf": -1}, "zipf"),
    ((10, 4, 1), {"p_cancel": 0.5, "p_replace": 0.5}, "leave room"),
])
def test_new_market_rejects_bad_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        new_market(*args, **kwargs)


def test_generate_rejects_bad_output():
    m = new_market(3, 2, seed=1)
    with pytest.raises(ValueError, match="power of two"):
        m.generate_into(np.zeros(100, L.EVENT), 0, 10, 0, 0)
    with pytest.raises(ValueError, match="EVENT"):
        m.generate_into(np.zeros(128, np.int64), 0, 10, 0, 0)
    with pytest.raises(ValueError, match="n must be"):
        m.generate(-1)


def test_limits_are_accepted():
    for n_symbols, n_venues in ((1, 1), (L.MAX_SYMBOLS, L.MAX_VENUES)):
        m = new_market(n_symbols, n_venues, seed=5)
        ev = m.generate(2000)
        assert ev["symbol"].max() < n_symbols and ev["venue"].max() < n_venues


# ---------------------------------------------------------------- determinism

def test_same_seed_same_bytes_other_seed_other_stream():
    a = new_market(40, 4, seed=123).generate(20_000 // SCALE)
    b = new_market(40, 4, seed=123).generate(20_000 // SCALE)
    c = new_market(40, 4, seed=124).generate(20_000 // SCALE)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()
    assert (a["symbol"] != c["symbol"]).mean() > 0.5


def test_options_change_the_stream():
    a = new_market(10, 3, seed=9).generate(5000 // SCALE)
    b = new_market(10, 3, seed=9, p_trade=0.05).generate(5000 // SCALE)
    assert a.tobytes() != b.tobytes()


def test_chunks_give_the_same_stream():
    whole = new_market(25, 3, seed=77).generate(1000)
    m = new_market(25, 3, seed=77)
    parts = np.concatenate([m.generate(300), m.generate(700, seq0=300)])
    assert parts.tobytes() == whole.tobytes()
    m = new_market(25, 3, seed=77)
    parts = []
    for n in (1, 0, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 392):
        parts.append(m.generate(n, seq0=sum(len(p) for p in parts)))
    assert np.concatenate(parts).tobytes() == whole.tobytes()


def test_ring_output_wraps_and_matches():
    n = 3000 // SCALE
    whole = new_market(25, 3, seed=78).generate(n, seq0=1000, recv_ts=5)
    m = new_market(25, 3, seed=78)
    ring = np.zeros(256, L.EVENT)
    position = 200  # start near the end so that every chunk wraps
    got = []
    while len(got) < n:
        k = min(97, n - len(got))
        assert m.generate_into(ring, position, k, 1000 + len(got), 5) == k
        got.extend(ring[(position + i) & 255].copy() for i in range(k))
        position += k
    assert np.array(got, L.EVENT).tobytes() == whole.tobytes()


def test_kernel_called_directly_matches_the_wrapper():
    whole = new_market(12, 2, seed=3).generate(500)
    m = new_market(12, 2, seed=3)
    out = np.zeros(512, L.EVENT)
    assert generate(*m.kernel_args(), out, 0, 511, 500, 0, 0) == 500
    assert out[:500].tobytes() == whole.tobytes()


def test_a_copy_continues_the_same_stream():
    m = new_market(30, 4, seed=5)
    m.generate(2000 // SCALE)
    twin = m.copy()
    assert m.generate(3000 // SCALE).tobytes() == twin.generate(3000 // SCALE).tobytes()


def test_seq_recv_ts_and_clock():
    m = new_market(8, 2, seed=4)
    ev = m.generate(5000 // SCALE, seq0=10**12, recv_ts=42)
    assert (ev["seq"] == 10**12 + np.arange(len(ev), dtype=np.uint64)).all()
    assert (ev["recv_ts"] == 42).all()
    assert (ev["feed_ns"] == 0).all()
    ts = ev["exch_ts"]
    assert ts[0] >= market.EPOCH_NS and (np.diff(ts) >= 0).all()
    assert ts[-1] > ts[0] and m.clock == ts[-1]
    assert m.events == len(ev)


# ---------------------------------------------------------------- validity

@pytest.fixture(scope="module")
def default_run():
    """200k events of 20 symbols on 4 venues, replayed by the tracker."""
    m = new_market(20, 4, seed=2026)
    events = m.generate(200_000 // SCALE)
    tracker = Tracker(m.tick, m.n_venues)
    locked = crossed = 0
    level_counts = []
    for i, e in enumerate(events.tolist()):
        tracker.apply(e)
        bid, ask = tracker.nbbo(e[7])
        if bid is not None and ask is not None:
            locked += bid == ask
            crossed += bid > ask
        if i % 101 == 0:
            for side in (L.SIDE_BID, L.SIDE_ASK):
                level_counts.append(len(tracker.levels.get((e[7], e[8], side), ())))
    return m, events, tracker, locked / len(events), crossed / len(events), level_counts


def test_default_stream_is_valid(default_run):
    m, events, tracker, *_ = default_run
    assert_books_match(m, tracker)
    assert tracker.max_side_orders <= m.options["capacity"]


@pytest.mark.parametrize("n_symbols, n_venues, seed, options", [
    (1, 1, 0, {}),
    (3, 8, 1, {"max_offset": 3, "p_lock": 0.5}),
    (50, 2, 2, {"capacity": 4, "depth": 3}),
    (7, 5, 3, {"p_take": 0.2, "p_marketable": 0.3, "p_execute_price": 0.05}),
    (10, 3, 4, {"p_fair_step": 0.2, "p_offset_step": 0.1, "p_arbitrage": 0.0}),
    (5, 4, 5, {"p_clear": 0.01}),
    (4, 2, 6, {"mean_gap_ns": 0, "zipf": 0.0}),
])
def test_streams_are_valid_across_configurations(n_symbols, n_venues, seed, options):
    m = new_market(n_symbols, n_venues, seed, **options)
    tracker = replay(m, m.generate(30_000 // SCALE))
    assert_books_match(m, tracker)
    assert tracker.max_side_orders <= m.options["capacity"]


@settings(max_examples=25 if SCALE == 1 else 3, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(n_symbols=st.integers(1, 40), n_venues=st.integers(1, L.MAX_VENUES),
       seed=st.integers(0, 2 ** 64 - 1), capacity=st.integers(2, 40),
       p_take=st.floats(0, 0.3), p_marketable=st.floats(0, 1), p_lock=st.floats(0, 1),
       p_clear=st.sampled_from([0.0, 0.001, 0.05]), chunk=st.integers(1, 700))
def test_random_configurations_are_valid(n_symbols, n_venues, seed, capacity, p_take,
                                         p_marketable, p_lock, p_clear, chunk):
    m = new_market(n_symbols, n_venues, seed, capacity=capacity, depth=max(1, capacity * 2 // 3),
                   p_take=p_take, p_marketable=p_marketable, p_lock=p_lock, p_clear=p_clear)
    tracker = Tracker(m.tick, n_venues)
    for i in range(3000 // chunk + 1):
        for e in m.generate(chunk, seq0=i * chunk).tolist():
            tracker.apply(e)
    assert_books_match(m, tracker)
    assert tracker.max_side_orders <= capacity


def test_a_cleared_venue_book_is_empty_in_the_generator_too():
    events = new_market(6, 3, seed=8, p_clear=0.002).generate(50_000 // SCALE)
    tracker = Tracker(new_market(6, 3, seed=8).tick, 3)
    for i, e in enumerate(events.tolist()):
        if e[9] == L.EV_CLEAR and tracker.book(e[7], e[8]):
            break
        tracker.apply(e)
    else:
        pytest.fail("no clear of a non-empty book")
    m = new_market(6, 3, seed=8, p_clear=0.002)
    m.generate(i)
    assert m.book(e[7], e[8]) == tracker.book(e[7], e[8]) != {}
    m.generate(1)
    assert m.book(e[7], e[8]) == {}


def test_no_clear_by_default(default_run):
    assert (default_run[1]["type"] != L.EV_CLEAR).all()


# ---------------------------------------------------------------- realism

@full_stream
def test_every_event_type_appears(default_run):
    types = set(np.unique(default_run[1]["type"]).tolist())
    assert types == {L.EV_ADD, L.EV_EXECUTE, L.EV_EXECUTE_PRICE, L.EV_CANCEL, L.EV_DELETE,
                     L.EV_REPLACE, L.EV_TRADE}


@full_stream
def test_the_mix_is_mostly_book_building(default_run):
    share = np.bincount(default_run[1]["type"], minlength=L.EV_CLEAR + 1) / len(default_run[1])
    assert share[L.EV_ADD] > 0.25 and share[L.EV_DELETE] > 0.15
    assert 0.01 < share[L.EV_EXECUTE] < 0.25


@full_stream
def test_trades_print(default_run):
    ev = default_run[1]
    printing = ((ev["type"] == L.EV_EXECUTE) | (ev["type"] == L.EV_TRADE)
                | ((ev["type"] == L.EV_EXECUTE_PRICE) & (ev["flags"] & L.FLAG_NON_PRINTABLE == 0)))
    assert printing.sum() > 1000 // SCALE
    non_printable = (ev["type"] == L.EV_EXECUTE_PRICE) & (ev["flags"] == L.FLAG_NON_PRINTABLE)
    assert non_printable.sum() > 0


@full_stream
def test_consolidated_market_locks_and_crosses_sometimes(default_run):
    locked, crossed = default_run[3], default_run[4]
    assert locked > 0.001 and crossed > 0.0002
    assert locked + crossed < 0.2


@full_stream
def test_books_are_deep_with_several_levels(default_run):
    m, _, tracker, _, _, level_counts = default_run
    assert np.mean(level_counts) >= 3
    assert max(level_counts) < 64
    sides = m.count.reshape(-1)
    assert 8 <= sides.mean() <= 30


@full_stream
def test_symbol_activity_is_skewed(default_run):
    per_symbol = np.bincount(default_run[1]["symbol"], minlength=20)
    assert per_symbol.min() > 0
    assert per_symbol.max() > 4 * np.median(per_symbol)


def test_prices_span_dollars_to_hundreds():
    m = new_market(2000, 1, seed=12)
    dollars = m.fair * m.tick / L.PRICE_SCALE
    assert 2 < dollars.min() < 10 and 200 < dollars.max() < 500
    assert set(np.unique(m.tick).tolist()) <= {50, 100, 500} and (m.tick == 100).mean() > 0.5
