"""shmengine.book against the reference in tests/naive.py, and unit tests."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shmengine import book as B
from shmengine import order_map as M
from shmengine.layout import (
    EV_ADD, EV_CANCEL, EV_CLEAR, EV_DELETE, EV_END, EV_EXECUTE, EV_EXECUTE_PRICE, EV_REPLACE,
    EV_STATUS, EV_TRADE, EV_WATERMARK, EVENT, FLAG_NON_PRINTABLE, NO_VENUE, RES_CLEAR, RES_END,
    RES_QUOTE, RES_STATUS, RES_TRADE, RES_WATERMARK, RESULT, RFLAG_CROSSED, RFLAG_LOCKED,
    SIDE_ASK, SIDE_BID, STATUS_RECORD, TOP_LEVELS,
)
from naive import NaiveBook

TICK = 100
MID = 1_000_000
N_SYMBOLS_TOTAL = 6


def event(etype, symbol=0, venue=0, order_id=0, side=SIDE_BID, price=0, qty=0,
          new_order_id=0, flags=0, seq=0):
    ev = np.zeros(1, EVENT)[0]
    ev["seq"] = seq
    ev["exch_ts"] = 1_000 + seq
    ev["recv_ts"] = 2_000 + seq
    ev["type"] = etype
    ev["symbol"] = symbol
    ev["venue"] = venue
    ev["order_id"] = order_id
    ev["new_order_id"] = new_order_id
    ev["side"] = side
    ev["price"] = price
    ev["qty"] = qty
    ev["flags"] = flags
    return ev


def add(symbol, venue, order_id, side, price, qty, **kw):
    return event(EV_ADD, symbol, venue, order_id, side, price, qty, **kw)


def stream(*events):
    arr = np.zeros(len(events), EVENT)
    for i, ev in enumerate(events):
        arr[i] = ev
        arr[i]["seq"] = i + 1
    return arr


def expected_record(fields):
    """The RESULT record a naive result dict describes (unnamed fields and pads zero)."""
    r = np.zeros(1, RESULT)[0]
    for name, value in fields.items():
        r[name] = value
    return r


def diff(got, want):
    return {name: (got[name].tolist(), want[name].tolist()) for name in RESULT.names
            if not np.array_equal(got[name], want[name])}


class Pair:
    """The kernel and the naive book fed the same events one at a time.

    The kernel reads from an 8-slot event ring and writes to a 4-slot result
    ring, so positions wrap many times over a stream.
    """

    def __init__(self, symbols, n_venues, max_levels=64, max_orders=1 << 12):
        self.symbols = list(symbols)
        self.n_venues = n_venues
        self.book = B.new_book(np.array(symbols), n_venues, N_SYMBOLS_TOTAL,
                               max_levels=max_levels, max_orders=max_orders)
        self.naive = NaiveBook(symbols, n_venues, max_orders)
        self.ring = np.zeros(8, EVENT)
        self.out = np.zeros(4, RESULT)
        self.ev_position = 0
        self.out_position = 0
        self.counters = np.zeros(B.N_COUNTERS, np.int64)
        self.results = []

    def step(self, ev):
        proc_ts = 10 * self.ev_position + 7
        self.ring[self.ev_position & 7] = ev
        written = B.process(self.ring, self.ev_position, 1, 7, self.book, self.out,
                            self.out_position, 3, proc_ts, self.counters, None, None, None)
        self.ev_position += 1
        want = self.naive.apply(ev, proc_ts)
        assert written == (want is not None), (ev, want)
        if written:
            got = self.out[self.out_position & 3].copy()
            self.out_position += 1
            assert got.tobytes() == expected_record(want).tobytes(), (
                ev, diff(got, expected_record(want)))
            self.results.append(got)
        self.check(int(ev["symbol"]))

    def check(self, symbol):
        assert self.counters.tolist() == self.naive.counters()
        assert B.live_orders(self.book) == len(self.naive.orders)
        if symbol in self.symbols:
            check_symbol(self.book, self.naive, symbol)

    def check_all(self):
        for symbol in self.symbols:
            check_symbol(self.book, self.naive, symbol)


def check_symbol(book, naive, symbol):
    levels = naive.book(symbol)
    for venue in range(naive.n_venues):
        for side in (SIDE_BID, SIDE_ASK):
            px, qty, count = B.venue_levels(book, symbol, venue, side)
            assert list(zip(px.tolist(), qty.tolist(), count.tolist())) == levels[venue, side], (
                symbol, venue, side)
    got = B.consolidated(book, symbol)
    want = naive.consolidated(symbol, levels)
    assert {k: np.asarray(v).tolist() for k, v in got.items()} == want, symbol
    assert B.last_trade(book, symbol) == naive.tape[symbol]


# ---------------------------------------------------------------------------
# random streams

class Flow:
    """Random order flow, valid and not, drawn against the live orders of a NaiveBook.

    Bids sit within `spread` ticks below one mid and asks above it, both
    reaching `overlap` ticks across, so venues lock and cross each other; a
    fraction `adds` of events are adds, which sets how deep the books grow.
    """

    def __init__(self, rng, pair, owned, spread, overlap, adds):
        self.rng = rng
        self.pair = pair
        self.owned = owned
        self.spread = spread
        self.overlap = overlap
        self.adds = adds
        self.next_id = 1
        self.seq = 0

    def price(self, side=None):
        if side is None:
            side = int(self.rng.integers(2))
        ticks = int(self.rng.integers(-self.spread, self.overlap + 1))
        return MID + TICK * (ticks if side == SIDE_BID else -ticks)

    def live(self):
        return list(self.pair.naive.orders.items())

    def pick(self):
        live = self.live()
        if not live:
            return None
        (venue, order_id), o = live[int(self.rng.integers(len(live)))]
        return venue, order_id, o

    def fresh_id(self):
        self.next_id += int(self.rng.integers(1, 3))
        return self.next_id

    def next(self):
        rng = self.rng
        self.seq += 1
        r = rng.random()
        symbol = self.owned[int(rng.integers(len(self.owned)))]
        venue = int(rng.integers(self.pair.n_venues))
        base = dict(seq=self.seq, symbol=symbol, venue=venue)
        picked = self.pick()
        if r < self.adds or picked is None:
            order_id = self.fresh_id()
            side = int(rng.integers(2))
            qty = int(rng.integers(1, 500))
            x = rng.random()
            if x < 0.03 and picked is not None:
                base.update(venue=picked[0])
                order_id = picked[1]                        # duplicate of a live order
            elif x < 0.04:
                order_id = 0
            elif x < 0.05:
                side = 2
            elif x < 0.06:
                qty = 0
            elif x < 0.07:
                base.update(symbol=N_SYMBOLS_TOTAL - 1)     # not owned
            elif x < 0.08:
                base.update(venue=self.pair.n_venues)       # no such venue
            return event(EV_ADD, order_id=order_id, side=side, price=self.price(side), qty=qty,
                         **base)
        venue, order_id, o = picked
        base.update(symbol=o.symbol, venue=venue)
        x = rng.random()
        if x < 0.03:
            order_id = self.next_id + 1000                  # never issued
        elif x < 0.04 and len(self.owned) > 1:
            others = [s for s in self.owned if s != o.symbol]
            base.update(symbol=others[int(rng.integers(len(others)))])  # wrong symbol
        qty = int(rng.integers(1, o.qty + o.qty // 2 + 2))
        r = (r - self.adds) / (1 - self.adds)
        if r < 0.15:
            return event(EV_EXECUTE, order_id=order_id, qty=qty, **base)
        if r < 0.23:
            flags = FLAG_NON_PRINTABLE if rng.random() < 0.3 else 0
            return event(EV_EXECUTE_PRICE, order_id=order_id, qty=qty, price=self.price(),
                         flags=flags, **base)
        if r < 0.38:
            return event(EV_CANCEL, order_id=order_id, qty=qty, **base)
        if r < 0.62:
            return event(EV_DELETE, order_id=order_id, **base)
        if r < 0.84:
            y = rng.random()
            if y < 0.05:
                new_id, price, qty = order_id, o.price, o.qty    # same id, nothing moves
            elif y < 0.10:
                new_id, price, qty = self.fresh_id(), o.price, o.qty
            elif y < 0.14:
                new_id, price = self.pick()[1], self.price(o.side)  # maybe a live id: bad
            else:
                new_id, price = self.fresh_id(), self.price(o.side)
            return event(EV_REPLACE, order_id=order_id, new_order_id=new_id, price=price,
                         qty=qty, **base)
        if r < 0.91:
            return event(EV_TRADE, price=self.price(), qty=qty, side=o.side, **base)
        if r < 0.93:
            return event(EV_CLEAR, **base)
        if r < 0.97:
            return event(EV_WATERMARK if rng.random() < 0.5 else EV_END, **base)
        if r < 0.98:
            return event(EV_STATUS, order_id=ord("B"), qty=ord("T"),
                         price=int(rng.integers(1 << 40)), **base)
        return event(int(rng.choice([0, 12, 200])), order_id=order_id, qty=qty, **base)


def run_flow(seed, n_events, n_venues, n_owned, spread, overlap, adds):
    rng = np.random.default_rng(seed)
    symbols = [1, 2, 4][:n_owned]
    pair = Pair(symbols, n_venues)
    flow = Flow(rng, pair, symbols, spread, overlap, adds)
    events = np.zeros(n_events, EVENT)
    for i in range(n_events):
        events[i] = flow.next()
        pair.step(events[i])
    pair.check_all()
    return pair, events


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_events=st.integers(200, 1500),
       n_venues=st.integers(1, 4), n_owned=st.integers(1, 3), spread=st.integers(2, 12),
       overlap=st.integers(0, 2), adds=st.floats(0.3, 0.6))
def test_random_streams_match_naive(seed, n_events, n_venues, n_owned, spread, overlap, adds):
    pair, events = run_flow(seed, n_events, n_venues, n_owned, spread, overlap, adds)
    # the same stream in one batch writes the same results
    fresh = B.new_book(np.array(pair.symbols), n_venues, N_SYMBOLS_TOTAL, max_orders=1 << 12)
    batch = B.apply(fresh, events)
    assert batch["proc_ts"].tolist() == [0] * len(batch)
    got = np.array(pair.results, RESULT) if pair.results else np.zeros(0, RESULT)
    got["proc_ts"] = 0
    assert batch.tobytes() == got.tobytes()
    assert fresh.counters.tolist() == pair.counters.tolist()


OPS = st.tuples(st.sampled_from(["add", "add", "add", "execute", "execute_price", "cancel",
                                 "delete", "replace", "trade", "clear", "unknown"]),
                st.integers(0, 2), st.integers(0, 2), st.integers(0, 1),
                st.integers(-3, 3), st.integers(1, 40), st.integers(0, 50))


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(OPS, max_size=60))
def test_short_streams_match_naive(ops):
    """Few symbols, venues and prices: every kind of level collision, shrinkable."""
    pair = Pair([1, 2], n_venues=3)
    next_id = 1
    for seq, (op, s, venue, side, tick, qty, pick) in enumerate(ops, 1):
        symbol = [1, 2, 5][s]
        price = MID + TICK * tick
        live = list(pair.naive.orders.items())
        if op == "add" or not live:
            if pick < 3 and live:
                (venue, order_id), o = live[pick % len(live)]
            else:
                next_id += 1
                order_id = next_id
            ev = add(symbol, venue, order_id, side, price, qty, seq=seq)
        elif op == "unknown":
            ev = event(EV_DELETE, symbol, venue, 10_000 + pick, seq=seq)
        elif op == "clear":
            ev = event(EV_CLEAR, symbol, venue, seq=seq)
        else:
            (venue, order_id), o = live[pick % len(live)]
            symbol = o.symbol
            if op == "execute":
                ev = event(EV_EXECUTE, symbol, venue, order_id, qty=qty, seq=seq)
            elif op == "execute_price":
                ev = event(EV_EXECUTE_PRICE, symbol, venue, order_id, price=price, qty=qty,
                           flags=FLAG_NON_PRINTABLE * (pick % 2), seq=seq)
            elif op == "cancel":
                ev = event(EV_CANCEL, symbol, venue, order_id, qty=qty, seq=seq)
            elif op == "delete":
                ev = event(EV_DELETE, symbol, venue, order_id, seq=seq)
            elif op == "replace":
                next_id += 1
                ev = event(EV_REPLACE, symbol, venue, order_id, price=price, qty=qty,
                           new_order_id=next_id if pick % 4 else order_id, seq=seq)
            else:
                ev = event(EV_TRADE, symbol, venue, price=price, qty=qty, seq=seq)
        pair.step(ev)
    pair.check_all()


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_events=st.integers(50, 300))
def test_order_map_under_collisions(seed, n_events):
    """A 16-slot map holding up to 8 orders: long probe runs, backward shifts, sweeps."""
    rng = np.random.default_rng(seed)
    pair = Pair([0], n_venues=2, max_orders=8)
    for seq in range(1, n_events + 1):
        op = rng.choice(["add", "add", "delete", "replace", "execute", "clear"],
                        p=[0.3, 0.2, 0.25, 0.1, 0.1, 0.05])
        venue, order_id, other = int(rng.integers(2)), int(rng.integers(1, 41)), int(
            rng.integers(1, 41))
        price = MID + TICK * (order_id % 5)
        if op == "add":
            ev = add(0, venue, order_id, order_id % 2, price, other, seq=seq)
        elif op == "delete":
            ev = event(EV_DELETE, 0, venue, order_id, seq=seq)
        elif op == "replace":
            ev = event(EV_REPLACE, 0, venue, order_id, new_order_id=other, price=price,
                       qty=other, seq=seq)
        elif op == "execute":
            ev = event(EV_EXECUTE, 0, venue, order_id, qty=other, seq=seq)
        else:
            ev = event(EV_CLEAR, 0, venue, seq=seq)
        pair.step(ev)
        check_order_map(pair.book, set(pair.naive.orders))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), stride=st.sampled_from([1, 3, 64, 128, 4096]))
def test_order_map_rehashes_ids_that_pile_up(seed, stride):
    """Ids a multiple of the map's size apart share a home slot until the map
    turns to hashing (the first 40 adds pile more than 32 live keys on one
    home); sequential ids never need it. Either way it stays exact."""
    rng = np.random.default_rng(seed)
    pair = Pair([0], n_venues=2, max_orders=64)  # 128 slots
    live = []
    for seq in range(1, 400):
        if seq > 40 and rng.random() < 0.01:
            venue = int(rng.integers(2))
            ev = event(EV_CLEAR, 0, venue, seq=seq)  # its orders go stale in their slots
            live = [(v, o) for v, o in live if v != venue]
        elif len(live) < 50 and (seq <= 40 or not live or rng.random() < 0.6):
            order_id = (seq * stride) << 8 if stride > 1 else seq
            venue = int(rng.integers(2))
            ev = add(0, venue, order_id, order_id % 2, MID + TICK * int(rng.integers(5)), 5,
                     seq=seq)
            live.append((venue, order_id))
        else:
            venue, order_id = live.pop(int(rng.integers(len(live))))
            ev = event(EV_DELETE, 0, venue, order_id, seq=seq)
        pair.step(ev)
        check_order_map(pair.book, set(pair.naive.orders))
    assert pair.book.order_info[M.HASHED] == (stride > 1)


def test_stale_orders_of_a_cleared_book_do_not_turn_hashing_on():
    """Sequential ids come round onto the slots of a cleared venue's orders: the
    map frees those stale slots instead of rehashing."""
    pair = Pair([0], n_venues=2, max_orders=64)  # 128 slots
    seq = 0
    for order_id in range(1, 61):
        seq += 1
        pair.step(add(0, 0, order_id, order_id % 2, MID + TICK * (order_id % 5), 5, seq=seq))
    seq += 1
    pair.step(event(EV_CLEAR, 0, 0, seq=seq))  # 60 stale slots
    for order_id in range(61, 301):
        seq += 1
        pair.step(add(0, 1, order_id, order_id % 2, MID + TICK * (order_id % 5), 5, seq=seq))
        if order_id > 70:
            seq += 1
            pair.step(event(EV_DELETE, 0, 1, order_id - 10, seq=seq))
        check_order_map(pair.book, set(pair.naive.orders))
    assert pair.book.order_info[M.HASHED] == 0
    assert pair.book.order_info[M.OCCUPIED] == pair.book.order_info[M.LIVE] == 10


def test_a_delete_shifts_back_a_key_from_the_next_block():
    """The hole's block counts no key past its home but the next one, still in
    reach, does: its key moves back into the hole."""
    pair = Pair([0], n_venues=1, max_orders=64)  # 128 slots, two blocks of 64
    seq = 0
    for order_id in (*range(60, 67), 60 + 128):  # the last comes home to 60, lands in 67
        seq += 1
        pair.step(add(0, 0, order_id, order_id % 2, MID + TICK * (order_id % 5), 5, seq=seq))
    assert int(pair.book.orders[67]["key"]) >> 3 == 188
    assert pair.book.displaced.tolist() == [0, 1]
    pair.step(event(EV_DELETE, 0, 0, 61, seq=seq + 1))
    check_order_map(pair.book, set(pair.naive.orders))
    assert int(pair.book.orders[61]["key"]) >> 3 == 188
    assert pair.book.displaced.tolist() == [1, 0]


def expected_home(book, key):
    """The home slot of a key, as the map's docs define it."""
    size = len(book.orders)
    if book.order_info[M.HASHED]:
        folded = (key ^ (key >> 32)) & 0xFFFFFFFF
        return ((folded * 0x9E3779B1) & 0xFFFFFFFF) >> int(book.order_info[M.HASH_SHIFT])
    return (key >> 3) % size


def check_order_map(book, live):
    """Every key is reachable from its home slot; live slots hold exactly `live`."""
    orders = book.orders
    mask = len(orders) - 1
    occupied = held = 0
    for j, o in enumerate(orders):
        key = int(o["key"])
        if key == 0:
            continue
        occupied += 1
        assert o["moving"] == 0
        home = expected_home(book, key)
        assert (j - home) & mask <= book.order_info[M.MAX_DISPLACEMENT], j
        assert all(orders[(home + t) & mask]["key"] for t in range((j - home) & mask)), j
        venue = key & 7
        if o["generation"] == book.venue_info[o["symbol"], venue, M.GENERATION]:
            assert (venue, key >> 3) in live
            held += 1
    assert held == len(live) == book.order_info[M.LIVE]
    assert occupied == book.order_info[M.OCCUPIED]
    # keys lying past their home, counted per block of slots
    past = np.zeros_like(book.displaced)
    for j, o in enumerate(orders):
        if o["key"] and j != expected_home(book, int(o["key"])):
            past[j >> M._BLOCK_SHIFT] += 1
    assert past.tolist() == book.displaced.tolist()


# ---------------------------------------------------------------------------
# unit tests

def book_of(symbols=(0,), n_venues=2, **kw):
    return B.new_book(np.array(symbols), n_venues, N_SYMBOLS_TOTAL, **kw)


def levels(book, symbol, venue, side):
    px, qty, count = B.venue_levels(book, symbol, venue, side)
    return list(zip(px.tolist(), qty.tolist(), count.tolist()))


def test_add_builds_levels_and_quotes():
    book = book_of()
    out = B.apply(book, stream(add(0, 0, 1, SIDE_BID, 100, 5),
                               add(0, 0, 2, SIDE_BID, 100, 3),
                               add(0, 0, 3, SIDE_BID, 99, 1),
                               add(0, 1, 4, SIDE_ASK, 101, 7),
                               add(0, 0, 5, SIDE_BID, 98, 2)), proc_ts=42)
    assert levels(book, 0, 0, SIDE_BID) == [(100, 8, 2), (99, 1, 1), (98, 2, 1)]
    assert levels(book, 0, 1, SIDE_ASK) == [(101, 7, 1)]
    assert out["kind"].tolist() == [RES_QUOTE] * 5
    assert out["proc_ts"].tolist() == [42] * 5
    last = out[-1]
    assert (last["bid_px"], last["bid_qty"], last["bid_venue"]) == (100, 8, 0)
    assert (last["ask_px"], last["ask_qty"], last["ask_venue"]) == (101, 7, 1)
    assert last["level_bid_px"].tolist() == [100, 99, 98, 0, 0]
    assert last["level_bid_qty"].tolist() == [8, 1, 2, 0, 0]
    assert (last["venue_bid_px"], last["venue_ask_px"]) == (100, 0)
    assert last["event_type"] == EV_ADD and last["symbol"] == 0


def test_quote_only_when_top_changes():
    book = book_of(max_levels=16)
    events = [add(0, 0, i, SIDE_BID, 100 - i, 1) for i in range(1, 8)]
    events.append(add(0, 0, 20, SIDE_BID, 93, 5))   # sixth level: outside the depth
    events.append(event(EV_CANCEL, 0, 0, 6, qty=1))  # order 6 at 94, sixth level
    out = B.apply(book, stream(*events))
    assert out["seq"].tolist() == [1, 2, 3, 4, 5]


def test_execute_prints_at_order_price_and_removes():
    book = book_of()
    out = B.apply(book, stream(add(0, 0, 1, SIDE_ASK, 200, 10),
                               event(EV_EXECUTE, 0, 0, 1, qty=4),
                               event(EV_EXECUTE, 0, 0, 1, qty=50)))
    assert out["kind"].tolist() == [RES_QUOTE, RES_TRADE, RES_TRADE]
    assert out["last_px"].tolist() == [0, 200, 200]
    assert out["last_qty"].tolist() == [0, 4, 6]
    assert out["volume"].tolist() == [0, 4, 10]
    assert out["notional"].tolist() == [0, 800, 2000]
    assert out["trades"].tolist() == [0, 1, 2]
    assert levels(book, 0, 0, SIDE_ASK) == []
    assert out[-1]["ask_venue"] == NO_VENUE and out[-1]["ask_px"] == 0
    assert B.last_trade(book, 0)["last_trade_ts"] == 1_000


def test_execute_price_and_non_printable():
    book = book_of()
    out = B.apply(book, stream(add(0, 0, 1, SIDE_BID, 100, 10),
                               event(EV_EXECUTE_PRICE, 0, 0, 1, qty=3, price=97),
                               event(EV_EXECUTE_PRICE, 0, 0, 1, qty=3, price=0,
                                     flags=FLAG_NON_PRINTABLE)))
    assert out["kind"].tolist() == [RES_QUOTE, RES_TRADE, RES_QUOTE]
    assert out[1]["last_px"] == 97 and out[1]["volume"] == 3
    assert out[2]["volume"] == 3 and out[2]["bid_qty"] == 4
    assert levels(book, 0, 0, SIDE_BID) == [(100, 4, 1)]


def test_cancel_delete_and_trade():
    book = book_of()
    out = B.apply(book, stream(add(0, 0, 1, SIDE_BID, 100, 10),
                               add(0, 0, 2, SIDE_BID, 100, 5),
                               event(EV_CANCEL, 0, 0, 1, qty=4),
                               event(EV_CANCEL, 0, 0, 1, qty=40),
                               event(EV_TRADE, 0, 1, price=150, qty=9),
                               event(EV_DELETE, 0, 0, 2)))
    assert out["kind"].tolist() == [RES_QUOTE] * 4 + [RES_TRADE, RES_QUOTE]
    assert out["bid_qty"].tolist() == [10, 15, 11, 5, 5, 0]
    assert out[4]["last_px"] == 150 and out[4]["venue"] == 1
    assert levels(book, 0, 0, SIDE_BID) == []
    assert B.live_orders(book) == 0


def test_replace_moves_to_a_new_level():
    book = book_of()
    out = B.apply(book, stream(add(0, 0, 1, SIDE_ASK, 105, 10),
                               add(0, 0, 2, SIDE_ASK, 104, 1),
                               event(EV_REPLACE, 0, 0, 1, new_order_id=3, price=103, qty=6),
                               event(EV_DELETE, 0, 0, 1),
                               event(EV_CANCEL, 0, 0, 3, qty=1),
                               event(EV_REPLACE, 0, 0, 3, new_order_id=3, price=103, qty=5)))
    assert levels(book, 0, 0, SIDE_ASK) == [(103, 5, 1), (104, 1, 1)]
    assert out["seq"].tolist() == [1, 2, 3, 5]   # the unchanged replace is silent
    assert out[2]["level_ask_px"].tolist() == [103, 104, 0, 0, 0]
    assert book.counters.tolist() == [1, 0, 0]   # order 1 is gone


def test_unknown_orders_are_counted_and_silent():
    book = book_of(symbols=(0, 1))
    events = [add(0, 0, 1, SIDE_BID, 100, 10)]
    events += [event(t, 0, 0, 99, qty=1, price=100, new_order_id=100)
               for t in (EV_EXECUTE, EV_EXECUTE_PRICE, EV_CANCEL, EV_DELETE, EV_REPLACE)]
    events += [event(EV_DELETE, 0, 1, 1),    # other venue
               event(EV_DELETE, 1, 0, 1)]    # other symbol
    out = B.apply(book, stream(*events))
    assert len(out) == 1
    assert book.counters.tolist() == [7, 0, 0]
    assert levels(book, 0, 0, SIDE_BID) == [(100, 10, 1)]


def test_bad_events_are_counted_and_silent():
    book = book_of(symbols=(0,))
    events = [add(0, 0, 1, SIDE_BID, 100, 10),
              add(0, 0, 1, SIDE_ASK, 101, 10),               # duplicate id
              add(3, 0, 2, SIDE_BID, 100, 10),               # symbol not owned
              add(N_SYMBOLS_TOTAL + 5, 0, 2, SIDE_BID, 100, 10),
              add(0, 2, 2, SIDE_BID, 100, 10),               # venue out of range
              add(0, 0, 0, SIDE_BID, 100, 10),               # order id 0
              add(0, 0, 1 << 61, SIDE_BID, 100, 10),         # order id too large
              add(0, 0, 2, 2, 100, 10),                      # side
              add(0, 0, 2, SIDE_BID, 0, 10),                 # price
              add(0, 0, 2, SIDE_BID, 100, 0),                # qty
              event(0, 0, 0, 1),                              # unknown types
              event(EV_STATUS + 1, 0, 0, 1),
              event(EV_EXECUTE, 0, 0, 1, qty=0),
              event(EV_CANCEL, 0, 0, 1, qty=0),
              event(EV_EXECUTE_PRICE, 0, 0, 1, qty=1, price=0),
              event(EV_TRADE, 0, 0, price=0, qty=1),
              event(EV_TRADE, 0, 0, price=1, qty=0),
              event(EV_REPLACE, 0, 0, 1, new_order_id=0, price=100, qty=1),
              event(EV_REPLACE, 0, 0, 1, new_order_id=5, price=-1, qty=1),
              add(0, 0, 7, SIDE_BID, 90, 1),
              event(EV_REPLACE, 0, 0, 1, new_order_id=7, price=100, qty=1)]  # new id live
    out = B.apply(book, stream(*events))
    assert out["seq"].tolist() == [1, 20]
    assert book.counters.tolist() == [0, 0, 19]
    assert levels(book, 0, 0, SIDE_BID) == [(100, 10, 1), (90, 1, 1)]


def test_markers():
    book = book_of()
    out = B.apply(book, stream(add(0, 0, 1, SIDE_BID, 100, 10),
                               event(EV_WATERMARK, symbol=5, venue=7),
                               event(EV_END)), proc_ts=9)
    assert out["kind"].tolist() == [RES_QUOTE, RES_WATERMARK, RES_END]
    for r, seq in zip(out[1:], (2, 3)):
        want = np.zeros(1, RESULT)[0]
        want["seq"], want["exch_ts"], want["recv_ts"], want["proc_ts"] = seq, 1_000, 2_000, 9
        want["kind"], want["event_type"] = r["kind"], r["event_type"]
        assert r.tobytes() == want.tobytes()


def test_status_is_published_and_changes_nothing():
    book = book_of()
    out = B.apply(book, stream(add(0, 0, 1, SIDE_BID, 100, 10),
                               event(EV_STATUS, symbol=0, order_id=ord("H"), qty=ord("T")),
                               event(EV_STATUS, symbol=0, order_id=ord("B"), price=123456789),
                               event(EV_STATUS, symbol=9)),  # not owned: bad
                  proc_ts=9)
    assert out["kind"].tolist() == [RES_QUOTE, RES_STATUS, RES_STATUS]
    st = out[1:].view(STATUS_RECORD)
    assert st["message"].tolist() == [ord("H"), ord("B")]
    assert st["code"].tolist() == [ord("T"), 0]
    assert st["number"].tolist() == [0, 123456789]
    assert st["seq"].tolist() == [2, 3] and (st["proc_ts"] == 9).all()
    assert st["event_type"].tolist() == [EV_STATUS, EV_STATUS]
    assert levels(book, 0, 0, SIDE_BID) == [(100, 10, 1)]
    assert book.counters.tolist() == [0, 0, 1]


def test_clear_then_readd():
    book = book_of(n_venues=2, max_orders=4)
    out = B.apply(book, stream(add(0, 0, 1, SIDE_BID, 100, 10),
                               add(0, 0, 2, SIDE_ASK, 102, 10),
                               add(0, 1, 3, SIDE_BID, 100, 5),
                               event(EV_CLEAR, 0, 0),
                               event(EV_DELETE, 0, 0, 1),       # cleared: unknown
                               add(0, 0, 1, SIDE_ASK, 103, 4),  # same id again
                               add(0, 0, 2, SIDE_ASK, 104, 4),
                               add(0, 0, 4, SIDE_ASK, 105, 4),
                               add(0, 0, 5, SIDE_ASK, 106, 4)))  # fifth live order
    assert out["kind"].tolist() == [RES_QUOTE] * 3 + [RES_CLEAR] + [RES_QUOTE] * 3
    clear = out[3]
    assert (clear["bid_px"], clear["bid_qty"], clear["bid_venue"]) == (100, 5, 1)
    assert (clear["ask_px"], clear["ask_venue"], clear["venue_bid_px"]) == (0, NO_VENUE, 0)
    assert levels(book, 0, 0, SIDE_BID) == []
    assert levels(book, 0, 0, SIDE_ASK) == [(103, 4, 1), (104, 4, 1), (105, 4, 1)]
    assert book.counters.tolist() == [1, 1, 0]
    assert B.live_orders(book) == 4


def test_many_clears_reclaim_stale_slots():
    book = book_of(n_venues=1, max_orders=8)
    events = []
    for round_ in range(50):
        events += [add(0, 0, 100 * round_ + k, SIDE_BID, 100 + k, 1) for k in range(1, 8)]
        events.append(event(EV_CLEAR, 0, 0))
    events += [add(0, 0, k, SIDE_ASK, 200 + k, 1) for k in range(1, 9)]
    B.apply(book, stream(*events))
    assert book.counters.tolist() == [0, 0, 0]
    assert B.live_orders(book) == 8
    assert book.order_info[M.OCCUPIED] <= len(book.orders) * 3 // 4
    assert len(levels(book, 0, 0, SIDE_ASK)) == 8


def test_order_map_overflow():
    book = book_of(max_orders=3)
    out = B.apply(book, stream(*[add(0, 0, k, SIDE_BID, 100 + k, 1) for k in range(1, 6)],
                               event(EV_DELETE, 0, 0, 1),
                               add(0, 0, 9, SIDE_BID, 90, 1),
                               event(EV_REPLACE, 0, 0, 9, new_order_id=10, price=91, qty=1)))
    assert book.counters.tolist() == [0, 2, 0]
    assert len(out) == 6
    assert levels(book, 0, 0, SIDE_BID) == [(103, 1, 1), (102, 1, 1), (91, 1, 1)]


def test_level_overflow_drops_the_deepest():
    book = book_of(max_levels=3)
    B.apply(book, stream(add(0, 0, 1, SIDE_BID, 100, 1),
                         add(0, 0, 2, SIDE_BID, 99, 1),
                         add(0, 0, 3, SIDE_BID, 98, 1),
                         add(0, 0, 4, SIDE_BID, 97, 1),    # deepest itself: dropped
                         add(0, 0, 5, SIDE_BID, 101, 1),   # drops 98
                         add(0, 0, 6, SIDE_ASK, 102, 1)))
    assert levels(book, 0, 0, SIDE_BID) == [(101, 1, 1), (100, 1, 1), (99, 1, 1)]
    assert book.counters.tolist() == [0, 2, 0]
    top = B.consolidated(book, 0)
    assert top["level_bid_px"].tolist() == [101, 100, 99, 0, 0]
    # orders of a dropped level stay live; executing them still prints
    out = B.apply(book, stream(event(EV_EXECUTE, 0, 0, 3, qty=1)))
    assert out["kind"].tolist() == [RES_TRADE] and out[0]["last_px"] == 98
    assert levels(book, 0, 0, SIDE_BID) == [(101, 1, 1), (100, 1, 1), (99, 1, 1)]


def test_level_overflow_within_the_depth():
    book = book_of(n_venues=2, max_levels=2)
    B.apply(book, stream(add(0, 0, 1, SIDE_ASK, 100, 1),
                         add(0, 0, 2, SIDE_ASK, 101, 1),
                         add(0, 1, 3, SIDE_ASK, 103, 1),
                         add(0, 0, 4, SIDE_ASK, 99, 1)))  # drops 101, part of the depth
    top = B.consolidated(book, 0)
    assert top["level_ask_px"].tolist() == [99, 100, 103, 0, 0]
    assert book.counters.tolist() == [0, 1, 0]


def test_consolidated_lock_cross_and_lowest_venue():
    book = book_of(n_venues=3)
    out = B.apply(book, stream(add(0, 2, 1, SIDE_BID, 100, 1),
                               add(0, 1, 2, SIDE_BID, 100, 2),
                               add(0, 0, 3, SIDE_ASK, 100, 3),
                               add(0, 2, 4, SIDE_ASK, 99, 4),
                               event(EV_DELETE, 0, 2, 4),
                               event(EV_DELETE, 0, 0, 3)))
    assert out["bid_venue"].tolist() == [2, 1, 1, 1, 1, 1]
    assert out["bid_qty"].tolist() == [1, 3, 3, 3, 3, 3]
    assert out["flags"].tolist() == [0, 0, RFLAG_LOCKED, RFLAG_CROSSED, RFLAG_LOCKED, 0]
    assert out["ask_venue"].tolist() == [NO_VENUE, NO_VENUE, 0, 2, 0, NO_VENUE]


def test_depth_keeps_the_best_levels_across_venues():
    book = book_of(n_venues=3)
    events = [add(0, v, 10 * v + k + 1, SIDE_BID, 100 - 3 * k - v, 1 + v)
              for v in range(3) for k in range(4)]
    events.append(add(0, 1, 99, SIDE_BID, 100, 5))
    out = B.apply(book, stream(*events))
    top = out[-1]
    assert top["level_bid_px"].tolist() == [100, 99, 98, 97, 96]
    assert top["level_bid_qty"].tolist() == [1 + 5, 2, 3, 1, 2]
    # removing a depth level refills from the venues
    out = B.apply(book, stream(event(EV_DELETE, 0, 1, 11)))
    assert out[0]["level_bid_px"].tolist() == [100, 98, 97, 96, 95]


def test_results_wrap_around_a_small_ring():
    book = book_of()
    events = stream(*[add(0, 0, k, SIDE_BID, 100 + k, 1) for k in range(1, 12)])
    ring = np.zeros(4, EVENT)
    out = np.zeros(8, RESULT)
    counters = np.zeros(3, np.int64)
    results = []
    ev_position, out_position = 6, 13
    for start in range(0, len(events), 3):
        batch = events[start:start + 3]
        for i, ev in enumerate(batch):
            ring[(ev_position + i) & 3] = ev
        written = B.process(ring, ev_position, len(batch), 3, book, out, out_position, 7, 5,
                            counters, None, None, None)
        results += [out[(out_position + j) & 7].copy() for j in range(written)]
        ev_position += len(batch)
        out_position += written
    assert [int(r["seq"]) for r in results] == list(range(1, 12))
    assert [int(r["bid_px"]) for r in results] == list(range(101, 112))


def test_apply_handles_any_length():
    book = book_of()
    assert len(B.apply(book, np.zeros(0, EVENT))) == 0
    events = stream(*[add(0, k % 2, k, SIDE_BID, 100 + k % 7, 1) for k in range(1, 40_000)])
    out = B.apply(book, events)
    assert len(out) > 0
    assert B.live_orders(book) == 39_999


def test_wrapper_checks():
    book = book_of()
    with pytest.raises(TypeError):
        B.apply(book, np.zeros(3, RESULT))
    with pytest.raises(KeyError):
        B.venue_levels(book, 3, 0, SIDE_BID)
    with pytest.raises(ValueError):
        B.venue_levels(book, 0, 2, SIDE_BID)
    with pytest.raises(ValueError):
        B.new_book(np.array([0, 0]), 2, 4)
    with pytest.raises(ValueError):
        B.new_book(np.array([5]), 2, 4)
    with pytest.raises(ValueError):
        B.new_book(np.array([0]), 9, 4)
    assert B.consolidated(book, 0)["bid_venue"] == NO_VENUE
    assert B.consolidated(book, 0)["level_ask_px"].tolist() == [0] * TOP_LEVELS
