"""Order books of one worker's symbols, and the kernel that feeds them events.

A worker owns a partition of symbols. For every owned symbol and venue it
keeps an order book built from order-level events with NASDAQ ITCH 5.0
semantics, the consolidated depth across venues and the symbol's trade tape,
and it turns each batch of EVENT records into RESULT records::

    book = new_book(np.array([3, 7]), n_venues=4, n_symbols_total=10)
    results = apply(book, events)                   # plain arrays
    written = process(in_slots, in_position, n, in_mask, book,
                      out_slots, out_position, out_mask, now_ns, counters)

``process`` is the kernel a worker calls on its rings: it reads event i of the
batch from ``in_slots[(in_position + i) & in_mask]``, writes result j to
``out_slots[(out_position + j) & out_mask]`` and returns how many it wrote, at
most n (the caller leaves room for n). ``counters`` is int64 and counts
``[UNKNOWN_ORDERS, BOOK_OVERFLOWS, BAD_EVENTS]``.

Rules the kernel applies to each event:

* EV_WATERMARK and EV_END always produce a marker result (kind RES_WATERMARK
  or RES_END, the event's seq and clocks, every other field zero).
* Bad events change nothing and produce nothing: a symbol this worker does
  not own, venue >= n_venues, an unknown type, an order id of 0 or >= 2**61,
  a side other than SIDE_BID/SIDE_ASK on an add, qty 0 on anything but a
  delete or a clear, price <= 0 on an add, a replace, a trade or a printable
  EV_EXECUTE_PRICE, an add of a live (venue, order_id), and a replace to a
  new_order_id that is live.
* Execute, cancel, delete and replace of an order that is not live under the
  event's (symbol, venue) count as unknown orders and produce nothing.
* An add beyond max_orders live orders counts a book overflow and is dropped.
  A price level beyond max_levels on its side of a venue drops the deepest
  level and counts a book overflow; from then on that venue's depth is only
  as exact as its orders allow (levels are rebuilt as orders arrive).
* An event that prints a trade produces RES_TRADE; else EV_CLEAR produces
  RES_CLEAR; else RES_QUOTE when the venue's best bid or offer (price or
  qty) or the consolidated TOP_LEVELS levels changed; else nothing.
"""
import collections

import numpy as np
from numba import njit

from .layout import (
    EV_ADD, EV_CANCEL, EV_CLEAR, EV_DELETE, EV_END, EV_EXECUTE, EV_EXECUTE_PRICE,
    EV_REPLACE, EV_TRADE, EV_WATERMARK, EVENT, FLAG_NON_PRINTABLE, MAX_VENUES, NO_VENUE,
    RES_CLEAR, RES_END, RES_QUOTE, RES_TRADE, RES_WATERMARK, RESULT, RFLAG_CROSSED,
    RFLAG_LOCKED, SIDE_ASK, SIDE_BID, TOP_LEVELS,
)

# indices into the counters array
UNKNOWN_ORDERS = 0
BOOK_OVERFLOWS = 1
BAD_EVENTS = 2
N_COUNTERS = 3

MAX_ORDER_ID = 1 << 61  # the order map key keeps the venue in the low three bits
assert MAX_VENUES <= 8

# One slot of the order map. A slot holds an order only while its generation
# equals the generation of its (symbol, venue): EV_CLEAR bumps that and so
# empties the venue's book in O(1); the stale slots are reclaimed by a sweep.
ORDER = np.dtype([
    ("key", "<u8"),         # (order_id << 3) | venue; 0 marks an empty slot
    ("price", "<i8"),
    ("qty", "<u4"),
    ("generation", "<u4"),
    ("symbol", "<i4"),      # local symbol index
    ("side", "u1"),
    ("_pad", "u1", 3),
], align=True)
assert ORDER.itemsize == 32

# indices into BookState.order_count
LIVE = 0       # live orders, at most max_orders
OCCUPIED = 1   # slots in use, live or stale

_NO_KEY = -(1 << 63)  # below every level key

BookState = collections.namedtuple("BookState", [
    "local_index",    # int64[n_symbols_total]: global symbol id -> local index, -1 if not owned
    "symbols",        # int64[n_local]: local index -> global symbol id
    "max_orders",     # int: live orders the map accepts
    "hash_shift",     # int: 32 - log2(len(orders))
    "orders",         # ORDER[2**k]: open addressing, linear probing, backward-shift delete
    "order_count",    # int64[2]: [LIVE, OCCUPIED]
    "generation",     # uint32[n_local, n_venues]
    "venue_orders",   # int64[n_local, n_venues]: live orders of each (symbol, venue)
    # Price ladders per (symbol, venue, side), best level LAST so that changes
    # near the top shift few levels. A level's key is its price on the bid
    # side and minus its price on the ask side: every ladder ascends to its best.
    "level_key",      # int64[n_local, n_venues, 2, max_levels]
    "level_qty",      # int64[n_local, n_venues, 2, max_levels]
    "level_count",    # int64[n_local, n_venues, 2, max_levels]: orders at the level
    "n_levels",       # int64[n_local, n_venues, 2]
    # Consolidated depth: the best TOP_LEVELS keys over all venues, best FIRST,
    # kept exact incrementally (it only moves when a venue's top levels move).
    "cons_key",       # int64[n_local, 2, TOP_LEVELS]
    "cons_qty",       # int64[n_local, 2, TOP_LEVELS]
    "cons_n",         # int64[n_local, 2]
    "best_venue",     # int64[n_local, 2]: lowest venue at the best key, NO_VENUE if none
    # trade tape
    "last_px",        # int64[n_local]
    "last_qty",       # int64[n_local]
    "last_trade_ts",  # int64[n_local]: exchange clock of the last print
    "volume",         # int64[n_local]
    "notional",       # int64[n_local]: sum of price * qty
    "trades",         # int64[n_local]
    "counters",       # int64[N_COUNTERS]: what apply() counts into
])


def new_book(symbols, n_venues, n_symbols_total, max_levels=64, max_orders=1 << 20):
    """Create the empty books of the symbols one worker owns.

    ``symbols`` are global symbol ids (< n_symbols_total). ``max_levels`` bounds
    the price levels per side of each venue, ``max_orders`` the live orders
    over all owned symbols and venues.

    >>> book = new_book(np.array([0, 5]), n_venues=2, n_symbols_total=8)
    >>> book.local_index[5]
    1
    """
    symbols = np.asarray(symbols)
    if symbols.ndim != 1 or (symbols.size and not np.issubdtype(symbols.dtype, np.integer)):
        raise ValueError("symbols must be a 1-D array of integer symbol ids")
    symbols = symbols.astype(np.int64)
    if not 1 <= n_venues <= MAX_VENUES:
        raise ValueError(f"n_venues must be in 1..{MAX_VENUES}, got {n_venues}")
    if not 1 <= n_symbols_total <= 1 << 32:
        raise ValueError(f"n_symbols_total must be in 1..2**32, got {n_symbols_total}")
    if symbols.size and (symbols.min() < 0 or symbols.max() >= n_symbols_total):
        raise ValueError(f"symbol ids must be in 0..{n_symbols_total - 1}")
    if np.unique(symbols).size != symbols.size:
        raise ValueError("symbol ids must be unique")
    if max_levels < 1:
        raise ValueError(f"max_levels must be at least 1, got {max_levels}")
    if not 1 <= max_orders <= 1 << 30:
        raise ValueError(f"max_orders must be in 1..2**30, got {max_orders}")

    # Live orders fill at most half the map, stale ones at most a quarter more.
    capacity = 8
    while capacity < 2 * max_orders:
        capacity *= 2
    n_local = symbols.size
    local_index = np.full(n_symbols_total, -1, np.int64)
    local_index[symbols] = np.arange(n_local)
    ladder = (n_local, n_venues, 2, max_levels)
    return BookState(
        local_index=local_index,
        symbols=symbols,
        max_orders=int(max_orders),
        hash_shift=32 - (capacity.bit_length() - 1),
        orders=np.zeros(capacity, ORDER),
        order_count=np.zeros(2, np.int64),
        generation=np.zeros((n_local, n_venues), np.uint32),
        venue_orders=np.zeros((n_local, n_venues), np.int64),
        level_key=np.zeros(ladder, np.int64),
        level_qty=np.zeros(ladder, np.int64),
        level_count=np.zeros(ladder, np.int64),
        n_levels=np.zeros(ladder[:3], np.int64),
        cons_key=np.zeros((n_local, 2, TOP_LEVELS), np.int64),
        cons_qty=np.zeros((n_local, 2, TOP_LEVELS), np.int64),
        cons_n=np.zeros((n_local, 2), np.int64),
        best_venue=np.full((n_local, 2), NO_VENUE, np.int64),
        last_px=np.zeros(n_local, np.int64),
        last_qty=np.zeros(n_local, np.int64),
        last_trade_ts=np.zeros(n_local, np.int64),
        volume=np.zeros(n_local, np.int64),
        notional=np.zeros(n_local, np.int64),
        trades=np.zeros(n_local, np.int64),
        counters=np.zeros(N_COUNTERS, np.int64),
    )


# ---------------------------------------------------------------------------
# kernel

@njit(cache=True)
def process(events, ev_position, n, ev_mask, book, out, out_position, out_mask, proc_ts,
            counters):
    """Apply n events from a ring of EVENT slots; write results to a ring of RESULT slots.

    Returns the number of results written (at most n).
    """
    written = 0
    for i in range(n):
        ev = events[(ev_position + i) & ev_mask]
        kind, s = _apply_event(book, ev, counters)
        if kind != 0:
            r = out[(out_position + written) & out_mask]
            if s < 0:
                _write_marker(r, ev, kind, proc_ts)
            else:
                _write_result(r, ev, kind, s, book, proc_ts)
            written += 1
    return written


@njit(cache=True, inline="always")
def _apply_event(book, ev, counters):
    """Apply one event; return (result kind or 0, local symbol or -1)."""
    etype = ev["type"]
    if etype == EV_WATERMARK:
        return RES_WATERMARK, -1
    if etype == EV_END:
        return RES_END, -1
    symbol = np.int64(ev["symbol"])
    venue = np.int64(ev["venue"])
    if symbol >= book.local_index.shape[0] or venue >= book.n_levels.shape[1]:
        counters[BAD_EVENTS] += 1
        return 0, -1
    s = book.local_index[symbol]
    if s < 0:
        counters[BAD_EVENTS] += 1
        return 0, -1
    if etype == EV_ADD:
        kind = _add(book, ev, s, venue, counters)
    elif etype == EV_EXECUTE or etype == EV_EXECUTE_PRICE:
        kind = _execute(book, ev, s, venue, counters)
    elif etype == EV_CANCEL or etype == EV_DELETE:
        kind = _cancel(book, ev, s, venue, counters)
    elif etype == EV_REPLACE:
        kind = _replace(book, ev, s, venue, counters)
    elif etype == EV_TRADE:
        kind = _trade(book, ev, s, counters)
    elif etype == EV_CLEAR:
        kind = _clear(book, s, venue)
    else:
        counters[BAD_EVENTS] += 1
        kind = 0
    return kind, s


@njit(cache=True, inline="always")
def _add(book, ev, s, venue, counters):
    order_id = ev["order_id"]
    side = np.int64(ev["side"])
    price = ev["price"]
    qty = np.int64(ev["qty"])
    if not _valid_order_id(order_id) or side > SIDE_ASK or price <= 0 or qty == 0:
        counters[BAD_EVENTS] += 1
        return 0
    key = _order_key(order_id, venue)
    if _live(book, _find(book, key)):
        counters[BAD_EVENTS] += 1
        return 0
    if book.order_count[LIVE] >= book.max_orders:
        counters[BOOK_OVERFLOWS] += 1
        return 0
    _insert_order(book, key, s, side, price, qty)
    return _quote(_change_level(book, s, venue, side, _level_key(price, side), qty, 1, counters))


@njit(cache=True, inline="always")
def _execute(book, ev, s, venue, counters):
    at_order_price = ev["type"] == EV_EXECUTE
    printable = at_order_price or (ev["flags"] & FLAG_NON_PRINTABLE) == 0
    order_id = ev["order_id"]
    qty = np.int64(ev["qty"])
    if not _valid_order_id(order_id) or qty == 0 or (
            printable and not at_order_price and ev["price"] <= 0):
        counters[BAD_EVENTS] += 1
        return 0
    j = _find_symbol_order(book, _order_key(order_id, venue), s)
    if j < 0:
        counters[UNKNOWN_ORDERS] += 1
        return 0
    price = book.orders[j]["price"] if at_order_price else ev["price"]
    done = min(qty, np.int64(book.orders[j]["qty"]))
    changed = _reduce_order(book, j, done, counters)
    if printable:
        _print_trade(book, s, price, done, ev["exch_ts"])
        return RES_TRADE
    return _quote(changed)


@njit(cache=True, inline="always")
def _cancel(book, ev, s, venue, counters):
    """EV_CANCEL takes qty off the order, EV_DELETE all of it."""
    delete = ev["type"] == EV_DELETE
    order_id = ev["order_id"]
    qty = np.int64(ev["qty"])
    if not _valid_order_id(order_id) or (qty == 0 and not delete):
        counters[BAD_EVENTS] += 1
        return 0
    j = _find_symbol_order(book, _order_key(order_id, venue), s)
    if j < 0:
        counters[UNKNOWN_ORDERS] += 1
        return 0
    left = np.int64(book.orders[j]["qty"])
    return _quote(_reduce_order(book, j, left if delete else min(qty, left), counters))


@njit(cache=True, inline="always")
def _replace(book, ev, s, venue, counters):
    order_id = ev["order_id"]
    new_order_id = ev["new_order_id"]
    price = ev["price"]
    qty = np.int64(ev["qty"])
    if (not _valid_order_id(order_id) or not _valid_order_id(new_order_id)
            or price <= 0 or qty == 0):
        counters[BAD_EVENTS] += 1
        return 0
    key = _order_key(order_id, venue)
    j = _find_symbol_order(book, key, s)
    if j < 0:
        counters[UNKNOWN_ORDERS] += 1
        return 0
    new_key = _order_key(new_order_id, venue)
    if new_key != key and _live(book, _find(book, new_key)):
        counters[BAD_EVENTS] += 1
        return 0
    side = np.int64(book.orders[j]["side"])
    old_price = book.orders[j]["price"]
    old_qty = np.int64(book.orders[j]["qty"])
    _remove_order(book, j)
    _insert_order(book, new_key, s, side, price, qty)
    if price == old_price and qty == old_qty:
        return 0  # the levels end as they began
    changed = _change_level(book, s, venue, side, _level_key(old_price, side), -old_qty, -1,
                            counters)
    changed |= _change_level(book, s, venue, side, _level_key(price, side), qty, 1, counters)
    return _quote(changed)


@njit(cache=True, inline="always")
def _trade(book, ev, s, counters):
    qty = np.int64(ev["qty"])
    if ev["price"] <= 0 or qty == 0:
        counters[BAD_EVENTS] += 1
        return 0
    _print_trade(book, s, ev["price"], qty, ev["exch_ts"])
    return RES_TRADE


@njit(cache=True, inline="always")
def _clear(book, s, venue):
    book.generation[s, venue] += 1
    book.order_count[LIVE] -= book.venue_orders[s, venue]
    book.venue_orders[s, venue] = 0
    for side in range(2):
        book.n_levels[s, venue, side] = 0
        _cons_rebuild(book, s, side)
    return RES_CLEAR


@njit(cache=True, inline="always")
def _quote(changed):
    return RES_QUOTE if changed else 0


@njit(cache=True, inline="always")
def _print_trade(book, s, price, qty, exch_ts):
    book.last_px[s] = price
    book.last_qty[s] = qty
    book.last_trade_ts[s] = exch_ts
    book.volume[s] += qty
    book.notional[s] += price * qty
    book.trades[s] += 1


# ---------------------------------------------------------------------------
# order map

@njit(cache=True, inline="always")
def _valid_order_id(order_id):
    return order_id != 0 and (order_id >> np.uint64(61)) == 0


@njit(cache=True, inline="always")
def _order_key(order_id, venue):
    return (order_id << np.uint64(3)) | np.uint64(venue)


@njit(cache=True, inline="always")
def _home(key, hash_shift):
    # Fibonacci hashing of the key folded to 32 bits: the product stays below
    # 2**64, so it neither wraps nor warns when run as plain Python.
    folded = (key ^ (key >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
    return np.int64(((folded * np.uint64(0x9E3779B1)) & np.uint64(0xFFFFFFFF))
                    >> np.uint64(hash_shift))


@njit(cache=True, inline="always")
def _find(book, key):
    """Slot holding key (live or stale), or -1."""
    orders = book.orders
    mask = orders.shape[0] - 1
    j = _home(key, book.hash_shift)
    while True:
        k = orders[j]["key"]
        if k == key:
            return j
        if k == 0:
            return -1
        j = (j + 1) & mask


@njit(cache=True, inline="always")
def _live(book, j):
    if j < 0:
        return False
    o = book.orders[j]
    venue = np.int64(o["key"] & np.uint64(7))
    return o["generation"] == book.generation[o["symbol"], venue]


@njit(cache=True, inline="always")
def _find_symbol_order(book, key, s):
    """Slot of the live order key of local symbol s, or -1."""
    j = _find(book, key)
    if _live(book, j) and book.orders[j]["symbol"] == s:
        return j
    return -1


@njit(cache=True, inline="always")
def _insert_order(book, key, s, side, price, qty):
    """Insert a key that is not live (a stale slot of the same key is reused)."""
    orders = book.orders
    mask = orders.shape[0] - 1
    if book.order_count[OCCUPIED] >= orders.shape[0] - orders.shape[0] // 4:
        _sweep(book)
    j = _home(key, book.hash_shift)
    while orders[j]["key"] != 0 and orders[j]["key"] != key:
        j = (j + 1) & mask
    o = orders[j]
    if o["key"] == 0:
        book.order_count[OCCUPIED] += 1
    venue = np.int64(key & np.uint64(7))
    o["key"] = key
    o["price"] = price
    o["qty"] = qty
    o["generation"] = book.generation[s, venue]
    o["symbol"] = s
    o["side"] = side
    book.order_count[LIVE] += 1
    book.venue_orders[s, venue] += 1


@njit(cache=True, inline="always")
def _remove_order(book, j):
    o = book.orders[j]
    book.order_count[LIVE] -= 1
    book.venue_orders[o["symbol"], np.int64(o["key"] & np.uint64(7))] -= 1
    _free_slot(book, j)


@njit(cache=True, inline="always")
def _free_slot(book, j):
    """Empty slot j, shifting back later keys of its cluster so probes stay unbroken."""
    orders = book.orders
    mask = orders.shape[0] - 1
    hole = j
    k = (j + 1) & mask
    while orders[k]["key"] != 0:
        # A key may fill the hole unless its home lies cyclically in (hole, k].
        home = _home(orders[k]["key"], book.hash_shift)
        if ((k - home) & mask) >= ((k - hole) & mask):
            orders[hole] = orders[k]
            hole = k
        k = (k + 1) & mask
    orders[hole]["key"] = 0
    book.order_count[OCCUPIED] -= 1


@njit(cache=True, inline="always")
def _sweep(book):
    """Free every stale slot."""
    orders = book.orders
    j = 0
    while j < orders.shape[0]:
        # a freed slot may receive a later key: look at it again
        if orders[j]["key"] != 0 and not _live(book, j):
            _free_slot(book, j)
        else:
            j += 1


@njit(cache=True, inline="always")
def _reduce_order(book, j, qty, counters):
    """Take qty (<= its quantity) off the order in slot j; remove it at zero."""
    o = book.orders[j]
    s = np.int64(o["symbol"])
    venue = np.int64(o["key"] & np.uint64(7))
    side = np.int64(o["side"])
    key = _level_key(o["price"], side)
    left = np.int64(o["qty"]) - qty
    if left == 0:
        _remove_order(book, j)
        return _change_level(book, s, venue, side, key, -qty, -1, counters)
    o["qty"] = left
    return _change_level(book, s, venue, side, key, -qty, 0, counters)


# ---------------------------------------------------------------------------
# price ladders and consolidated depth

@njit(cache=True, inline="always")
def _level_key(price, side):
    return price if side == SIDE_BID else -price


@njit(cache=True, inline="always")
def _change_level(book, s, venue, side, key, dqty, dcount, counters):
    """Add dqty and dcount orders to the venue's level at key.

    Returns True when the venue's best level or the consolidated depth changed.
    """
    keys = book.level_key[s, venue, side]
    qtys = book.level_qty[s, venue, side]
    counts = book.level_count[s, venue, side]
    n = book.n_levels[s, venue, side]
    i = n - 1
    while i >= 0 and keys[i] > key:
        i -= 1
    depth = n - 1 - i  # levels better than key
    changed = depth == 0
    if i >= 0 and keys[i] == key:
        qty = qtys[i]
        if qty + dqty > 0 and counts[i] + dcount > 0:
            qtys[i] = qty + dqty
            counts[i] += dcount
            if depth < TOP_LEVELS:
                changed |= _cons_change(book, s, side, key, dqty, False)
            return changed
        for k in range(i, n - 1):
            keys[k] = keys[k + 1]
            qtys[k] = qtys[k + 1]
            counts[k] = counts[k + 1]
        book.n_levels[s, venue, side] = n - 1
        if depth < TOP_LEVELS:
            changed |= _cons_change(book, s, side, key, -qty, True)
        return changed
    if dqty <= 0:
        return False  # its level was dropped when the ladder overflowed
    max_levels = keys.shape[0]
    if n == max_levels:
        counters[BOOK_OVERFLOWS] += 1
        if i < 0:
            return False  # the new level would be the deepest: drop it
        dropped_key = keys[0]
        dropped_qty = qtys[0]
        for k in range(n - 1):
            keys[k] = keys[k + 1]
            qtys[k] = qtys[k + 1]
            counts[k] = counts[k + 1]
        n -= 1
        i -= 1
        book.n_levels[s, venue, side] = n
        if max_levels - 1 < TOP_LEVELS:
            changed |= _cons_change(book, s, side, dropped_key, -dropped_qty, True)
    for k in range(n - 1, i, -1):
        keys[k + 1] = keys[k]
        qtys[k + 1] = qtys[k]
        counts[k + 1] = counts[k]
    keys[i + 1] = key
    qtys[i + 1] = dqty
    counts[i + 1] = dcount
    book.n_levels[s, venue, side] = n + 1
    if depth < TOP_LEVELS:
        changed |= _cons_change(book, s, side, key, dqty, True)
    return changed


@njit(cache=True, inline="always")
def _cons_change(book, s, side, key, dqty, reshaped):
    """Carry a venue level's change into the consolidated depth.

    The venue ladders already hold the change. reshaped: the venue's level was
    created or removed (so the venues at that price changed). Returns True when
    the consolidated levels changed.
    """
    keys = book.cons_key[s, side]
    qtys = book.cons_qty[s, side]
    n = book.cons_n[s, side]
    i = 0
    while i < n and keys[i] > key:
        i += 1
    if i < n and keys[i] == key:
        qtys[i] += dqty
        if qtys[i] <= 0:
            for k in range(i, n - 1):
                keys[k] = keys[k + 1]
                qtys[k] = qtys[k + 1]
            book.cons_n[s, side] = n - 1
            if n == TOP_LEVELS:
                _cons_append_next(book, s, side)
        if reshaped and i == 0:
            _cons_best_venue(book, s, side)
        return True
    if i == TOP_LEVELS or dqty <= 0:
        return False  # below the consolidated top levels
    last = min(n, TOP_LEVELS - 1)
    for k in range(last, i, -1):
        keys[k] = keys[k - 1]
        qtys[k] = qtys[k - 1]
    keys[i] = key
    qtys[i] = dqty
    book.cons_n[s, side] = last + 1
    if i == 0:
        _cons_best_venue(book, s, side)
    return True


@njit(cache=True, inline="always")
def _cons_append_next(book, s, side):
    """Append the best key over all venues below the last consolidated level."""
    n = book.cons_n[s, side]
    bound = book.cons_key[s, side, n - 1] if n > 0 else 0
    best = _NO_KEY
    qty = 0
    for venue in range(book.n_levels.shape[1]):
        keys = book.level_key[s, venue, side]
        j = book.n_levels[s, venue, side] - 1
        if n > 0:
            while j >= 0 and keys[j] >= bound:
                j -= 1
        if j < 0:
            continue
        if keys[j] > best:
            best = keys[j]
            qty = book.level_qty[s, venue, side, j]
        elif keys[j] == best:
            qty += book.level_qty[s, venue, side, j]
    if qty == 0:
        return False
    book.cons_key[s, side, n] = best
    book.cons_qty[s, side, n] = qty
    book.cons_n[s, side] = n + 1
    return True


@njit(cache=True, inline="always")
def _cons_rebuild(book, s, side):
    book.cons_n[s, side] = 0
    while book.cons_n[s, side] < TOP_LEVELS and _cons_append_next(book, s, side):
        pass
    _cons_best_venue(book, s, side)


@njit(cache=True, inline="always")
def _cons_best_venue(book, s, side):
    book.best_venue[s, side] = NO_VENUE
    if book.cons_n[s, side] == 0:
        return
    best = book.cons_key[s, side, 0]
    for venue in range(book.n_levels.shape[1]):
        n = book.n_levels[s, venue, side]
        if n > 0 and book.level_key[s, venue, side, n - 1] == best:
            book.best_venue[s, side] = venue
            return


# ---------------------------------------------------------------------------
# results

@njit(cache=True, inline="always")
def _write_marker(r, ev, kind, proc_ts):
    _zero_result(r)
    r["seq"] = ev["seq"]
    r["exch_ts"] = ev["exch_ts"]
    r["recv_ts"] = ev["recv_ts"]
    r["proc_ts"] = proc_ts
    r["kind"] = kind
    r["event_type"] = ev["type"]


@njit(cache=True, inline="always")
def _zero_result(r):
    r["symbol"] = 0
    r["venue"] = 0
    r["flags"] = 0
    r["venue_bid_px"] = 0
    r["venue_bid_qty"] = 0
    r["venue_ask_px"] = 0
    r["venue_ask_qty"] = 0
    r["bid_px"] = 0
    r["bid_qty"] = 0
    r["ask_px"] = 0
    r["ask_qty"] = 0
    r["bid_venue"] = 0
    r["ask_venue"] = 0
    r["last_px"] = 0
    r["last_qty"] = 0
    r["volume"] = 0
    r["notional"] = 0
    r["trades"] = 0
    for k in range(TOP_LEVELS):
        r["level_bid_px"][k] = 0
        r["level_bid_qty"][k] = 0
        r["level_ask_px"][k] = 0
        r["level_ask_qty"][k] = 0
    _zero_pads(r)


@njit(cache=True, inline="always")
def _zero_pads(r):
    pad0 = r["_pad0"]
    for k in range(pad0.shape[0]):
        pad0[k] = 0
    pad1 = r["_pad1"]
    for k in range(pad1.shape[0]):
        pad1[k] = 0


@njit(cache=True, inline="always")
def _write_result(r, ev, kind, s, book, proc_ts):
    venue = np.int64(ev["venue"])
    r["seq"] = ev["seq"]
    r["exch_ts"] = ev["exch_ts"]
    r["recv_ts"] = ev["recv_ts"]
    r["proc_ts"] = proc_ts
    r["symbol"] = book.symbols[s]
    r["venue"] = venue
    r["kind"] = kind
    r["event_type"] = ev["type"]

    n = book.n_levels[s, venue, SIDE_BID]
    r["venue_bid_px"] = book.level_key[s, venue, SIDE_BID, n - 1] if n > 0 else 0
    r["venue_bid_qty"] = book.level_qty[s, venue, SIDE_BID, n - 1] if n > 0 else 0
    n = book.n_levels[s, venue, SIDE_ASK]
    r["venue_ask_px"] = -book.level_key[s, venue, SIDE_ASK, n - 1] if n > 0 else 0
    r["venue_ask_qty"] = book.level_qty[s, venue, SIDE_ASK, n - 1] if n > 0 else 0

    bid_n = book.cons_n[s, SIDE_BID]
    ask_n = book.cons_n[s, SIDE_ASK]
    level_bid_px = r["level_bid_px"]
    level_bid_qty = r["level_bid_qty"]
    level_ask_px = r["level_ask_px"]
    level_ask_qty = r["level_ask_qty"]
    for k in range(TOP_LEVELS):
        level_bid_px[k] = book.cons_key[s, SIDE_BID, k] if k < bid_n else 0
        level_bid_qty[k] = book.cons_qty[s, SIDE_BID, k] if k < bid_n else 0
        level_ask_px[k] = -book.cons_key[s, SIDE_ASK, k] if k < ask_n else 0
        level_ask_qty[k] = book.cons_qty[s, SIDE_ASK, k] if k < ask_n else 0
    bid_px = level_bid_px[0]
    ask_px = level_ask_px[0]
    r["bid_px"] = bid_px
    r["bid_qty"] = level_bid_qty[0]
    r["ask_px"] = ask_px
    r["ask_qty"] = level_ask_qty[0]
    r["bid_venue"] = book.best_venue[s, SIDE_BID]
    r["ask_venue"] = book.best_venue[s, SIDE_ASK]
    flags = 0
    if bid_n > 0 and ask_n > 0:
        if bid_px == ask_px:
            flags = RFLAG_LOCKED
        elif bid_px > ask_px:
            flags = RFLAG_CROSSED
    r["flags"] = flags

    r["last_px"] = book.last_px[s]
    r["last_qty"] = book.last_qty[s]
    r["volume"] = book.volume[s]
    r["notional"] = book.notional[s]
    r["trades"] = book.trades[s]
    _zero_pads(r)


# ---------------------------------------------------------------------------
# wrapper

_CHUNK = 1 << 14


def apply(book, events, proc_ts=0):
    """Apply a plain EVENT array to the book; return the RESULT array it produced.

    Counts go to ``book.counters``.

    >>> results = apply(book, events)
    >>> results[results["kind"] == RES_TRADE]["last_px"]
    """
    events = np.asarray(events)
    if events.dtype != EVENT:
        raise TypeError(f"events must be an array of layout.EVENT, got dtype {events.dtype}")
    if events.ndim != 1:
        raise ValueError(f"events must be 1-D, got shape {events.shape}")
    chunk = min(_CHUNK, _power_of_two_at_least(len(events)))
    slots = np.zeros(chunk, EVENT)
    out = np.zeros(chunk, RESULT)
    parts = [np.zeros(0, RESULT)]
    for start in range(0, len(events), chunk):
        batch = events[start:start + chunk]
        slots[:len(batch)] = batch
        written = process(slots, 0, len(batch), chunk - 1, book, out, 0, chunk - 1,
                          int(proc_ts), book.counters)
        parts.append(out[:written].copy())
    return np.concatenate(parts)


def _power_of_two_at_least(n):
    size = 1
    while size < n:
        size *= 2
    return size


def _local(book, symbol):
    if not 0 <= symbol < len(book.local_index) or book.local_index[symbol] < 0:
        raise KeyError(f"symbol {symbol} is not in this book")
    return int(book.local_index[symbol])


def venue_levels(book, symbol, venue, side):
    """Price levels of one side of a venue, best first: (price, qty, count) arrays.

    >>> px, qty, count = venue_levels(book, symbol=5, venue=0, side=SIDE_BID)
    """
    s = _local(book, symbol)
    if not 0 <= venue < book.n_levels.shape[1]:
        raise ValueError(f"venue must be in 0..{book.n_levels.shape[1] - 1}, got {venue}")
    if side not in (SIDE_BID, SIDE_ASK):
        raise ValueError(f"side must be SIDE_BID or SIDE_ASK, got {side}")
    n = book.n_levels[s, venue, side]
    keys = book.level_key[s, venue, side, :n][::-1]
    return (keys.copy() if side == SIDE_BID else -keys,
            book.level_qty[s, venue, side, :n][::-1].copy(),
            book.level_count[s, venue, side, :n][::-1].copy())


def consolidated(book, symbol):
    """Consolidated best bid/offer and TOP_LEVELS depth of a symbol, as a dict.

    Levels are best first and zero-filled; an empty side has price and qty 0
    and venue NO_VENUE.

    >>> consolidated(book, 5)["bid_px"]
    """
    s = _local(book, symbol)
    top = {}
    for side, name, sign in ((SIDE_BID, "bid", 1), (SIDE_ASK, "ask", -1)):
        n = book.cons_n[s, side]
        px = np.zeros(TOP_LEVELS, np.int64)
        qty = np.zeros(TOP_LEVELS, np.int64)
        px[:n] = sign * book.cons_key[s, side, :n]
        qty[:n] = book.cons_qty[s, side, :n]
        top[f"level_{name}_px"] = px
        top[f"level_{name}_qty"] = qty
        top[f"{name}_px"] = int(px[0])
        top[f"{name}_qty"] = int(qty[0])
        top[f"{name}_venue"] = int(book.best_venue[s, side])
    flags = 0
    if top["bid_qty"] and top["ask_qty"]:
        if top["bid_px"] == top["ask_px"]:
            flags = RFLAG_LOCKED
        elif top["bid_px"] > top["ask_px"]:
            flags = RFLAG_CROSSED
    top["flags"] = flags
    return top


def last_trade(book, symbol):
    """The symbol's trade tape: last print and cumulative volume, notional, trades.

    >>> last_trade(book, 5)["volume"]
    """
    s = _local(book, symbol)
    return {name: int(getattr(book, name)[s])
            for name in ("last_px", "last_qty", "last_trade_ts", "volume", "notional", "trades")}
