"""Order books of one worker's symbols, and the kernel that feeds them events.

A worker owns a partition of symbols. For every owned symbol and venue it
keeps an order book built from order-level events with NASDAQ ITCH 5.0
semantics, the consolidated depth across venues and the symbol's trade tape,
and it turns each batch of EVENT records into RESULT records::

    book = new_book(np.array([3, 7]), n_venues=4, n_symbols_total=10)
    results = apply(book, events)                   # plain arrays
    written = process(in_slots, in_position, n, in_mask, book,
                      out_slots, out_position, out_mask, now_ns, counters, None, None, None)

``process`` is the kernel a worker calls on its rings: it reads event i of the
batch from ``in_slots[(in_position + i) & in_mask]``, writes result j to
``out_slots[(out_position + j) & out_mask]`` and returns how many it wrote, at
most n (the caller leaves room for n). ``counters`` is int64 and counts
``[UNKNOWN_ORDERS, BOOK_OVERFLOWS, BAD_EVENTS]``.

Rules the kernel applies to each event:

* EV_WATERMARK and EV_END always produce a marker result (kind RES_WATERMARK
  or RES_END, the event's seq and clocks, every other field zero).
* EV_STATUS of an owned symbol produces a RES_STATUS record (STATUS_RECORD
  layout: the event's head, and its order_id, qty and price as message, code
  and number) and changes nothing.
* Bad events change nothing and produce nothing: a symbol this worker does
  not own, venue >= n_venues, an unknown type, an order id of 0 or >= 2**61,
  a side other than SIDE_BID/SIDE_ASK on an add, qty 0 on anything but a
  delete or a clear, price <= 0 on an add, a replace, a trade or a printable
  EV_EXECUTE_PRICE, an add of a live (venue, order_id), and a replace to a
  new_order_id that is live.
* Execute, cancel, delete and replace of an order that is not live under the
  event's (symbol, venue) count as unknown orders and produce nothing.
* An add beyond max_orders live orders counts a book overflow and is dropped.
  A new price level beyond max_levels on its side of a venue drops the
  deepest level (possibly itself) and counts a book overflow; the orders of a
  dropped level stay live but no longer show in the depth.
* An event that prints a trade produces RES_TRADE; else EV_CLEAR produces
  RES_CLEAR; else RES_QUOTE when the venue's best bid or offer (price or
  qty) or the consolidated TOP_LEVELS levels changed; else nothing.

An event flows through three steps: the order map (``order_map.py``) turns
it into at most two level deltas (a replace takes from one level and adds to
another); the deltas move the venue's ladder and, when they reach its top
TOP_LEVELS levels, the symbol's quote; the quote, stamped with the event, is
the result.
"""
import collections

import numpy as np
from numba import njit

from . import analytics
from .atomics import prefetch
from .order_map import (
    GENERATION, LIVE, MAX_ORDERS, VENUE_ORDERS, find_slot, find_symbol_order, insert_order,
    is_live, map_nbytes, new_order_map, order_key, prefetch_order, remove_order,
    valid_order_id,
)
from .layout import (
    EV_ADD, EV_CANCEL, EV_CLEAR, EV_DELETE, EV_END, EV_EXECUTE, EV_EXECUTE_PRICE,
    EV_REPLACE, EV_STATUS, EV_TRADE, EV_WATERMARK, EVENT, FLAG_NON_PRINTABLE, MAX_VENUES,
    NO_VENUE, RES_CLEAR, RES_END, RES_QUOTE, RES_STATUS, RES_TRADE, RES_WATERMARK, RESULT,
    RFLAG_CROSSED,
    RFLAG_LOCKED, SIDE_ASK, SIDE_BID, TOP_LEVELS,
)

# indices into a counters array
UNKNOWN_ORDERS = 0
BOOK_OVERFLOWS = 1
BAD_EVENTS = 2
N_COUNTERS = 3

# words of a ladder level and of a level delta
KEY = 0
QTY = 1
COUNT = 2

_NO_KEY = -(1 << 63)  # below every level key
_PREFETCH_AHEAD = 8   # events between prefetching an order's slot and using it

BookState = collections.namedtuple("BookState", [
    "local_index",    # int64[n_symbols_total]: global symbol id -> local index, -1 if not owned
    "symbols",        # int64[n_local]: local index -> global symbol id
    "orders",         # ORDER[2**k]: open addressing, linear probing, backward-shift delete
    "order_info",     # int64[N_ORDER_INFO]: LIVE, OCCUPIED, ..., HASHED
    "displaced",      # uint8[max(1, len(orders) >> _BLOCK_SHIFT)]: keys past their home
    "venue_info",     # int64[n_local, n_venues, 2]: GENERATION, VENUE_ORDERS
    # Price ladders, best level LAST so that changes near the top shift few
    # levels. A level's key is its price on the bid side and minus its price
    # on the ask side, so every ladder ascends to its best.
    "levels",         # int64[n_local, n_venues, 2 sides, max_levels, KEY/QTY/COUNT]
    "n_levels",       # int64[n_local, n_venues, 2 sides]
    # Each symbol's quote as its next result will carry it: consolidated best
    # bid/offer and venues, TOP_LEVELS depth (best first, zero past the last
    # level) and trade tape. It is kept exact incrementally: only changes to a
    # venue's top levels reach it. A result is this record, stamped.
    "quotes",         # RESULT[n_local]
    "depth",          # int64[n_local, 2 sides]: levels in the quote's depth
    "last_trade_ts",  # int64[n_local]: exchange clock of the last print
    "deltas",         # int64[2, KEY/QTY/COUNT]: the level deltas of the event in hand
    "counters",       # int64[N_COUNTERS]: what apply() counts into
])


def new_book(symbols, n_venues, n_symbols_total, max_levels=64, max_orders=1 << 20):
    """Create the empty books of the symbols one worker owns.

    ``symbols`` are global symbol ids (< n_symbols_total). ``max_levels`` bounds
    the price levels per side of each venue, ``max_orders`` the live orders
    over all owned symbols and venues.

    >>> book = new_book(np.array([0, 5]), n_venues=2, n_symbols_total=8)
    >>> int(book.local_index[5])
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

    n_local = symbols.size
    local_index = np.full(n_symbols_total, -1, np.int64)
    local_index[symbols] = np.arange(n_local)
    orders, order_info, displaced = new_order_map(max_orders)
    quotes = np.zeros(n_local, RESULT)
    quotes["symbol"] = symbols
    quotes["bid_venue"] = NO_VENUE
    quotes["ask_venue"] = NO_VENUE
    return BookState(
        local_index=local_index,
        symbols=symbols,
        orders=orders,
        order_info=order_info,
        displaced=displaced,
        venue_info=np.zeros((n_local, n_venues, 2), np.int64),
        levels=np.zeros((n_local, n_venues, 2, max_levels, 3), np.int64),
        n_levels=np.zeros((n_local, n_venues, 2), np.int64),
        quotes=quotes,
        depth=np.zeros((n_local, 2), np.int64),
        last_trade_ts=np.zeros(n_local, np.int64),
        deltas=np.zeros((2, 3), np.int64),
        counters=np.zeros(N_COUNTERS, np.int64),
    )


def levels_nbytes(n_local, n_venues, max_levels):
    """Bytes of the price ladders of n_local symbols (KEY, QTY, COUNT per level)."""
    return n_local * n_venues * 2 * max_levels * 3 * 8


def state_nbytes(n_local, n_venues, n_symbols_total, max_levels=64, max_orders=1 << 20):
    """Bytes of the arrays new_book() makes for n_local symbols of n_symbols_total.

    >>> state_nbytes(500, n_venues=4, n_symbols_total=1000, max_levels=64)
    """
    ladders = n_local * n_venues * 2  # each: a venue_info word and a level count
    per_symbol = 8 + RESULT.itemsize + 8 * 2 + 8  # symbols, quotes, depth, last_trade_ts
    return (8 * n_symbols_total + n_local * per_symbol + map_nbytes(max_orders)
            + levels_nbytes(n_local, n_venues, max_levels) + ladders * 8 * 2
            + 8 * 2 * 3 + 8 * N_COUNTERS)


# ---------------------------------------------------------------------------
# kernel
#
# The kernels allocate nothing, so they run without numba's reference
# counting (_nrt=False), which would cost atomic operations on every array
# passed to every call. The per-event steps are inlined into process(): an
# array argument is a dozen words, and calls that copy them cost more than
# the work.

@njit(cache=True, _nrt=False)
def process(events, ev_position, n, ev_mask, book, out, out_position, out_mask, proc_ts,
            counters, ana, bars, signals):
    """Apply n events from a ring of EVENT slots; write results to a ring of RESULT slots.

    ``ana`` is None, or the analytics state (``analytics.new_analytics``) to
    apply to each result as it is written, with ``bars`` and ``signals`` the
    output viewed as BAR_RECORD and SIGNAL_RECORD. Returns the number of
    records written: at most n, or n * (1 + analytics.MAX_EXTRA) with analytics.
    """
    local_index = book.local_index
    orders = book.orders
    order_info = book.order_info
    displaced = book.displaced
    venue_info = book.venue_info
    levels = book.levels
    n_levels = book.n_levels
    quotes = book.quotes
    depth = book.depth
    last_trade_ts = book.last_trade_ts
    deltas = book.deltas
    n_venues = venue_info.shape[1]
    written = 0
    for i in range(n):
        if i + _PREFETCH_AHEAD < n:
            ahead = events[(ev_position + i + _PREFETCH_AHEAD) & ev_mask]
            prefetch_order(ahead, orders, order_info)
            _prefetch_ladder(ahead, local_index, levels, n_levels)
            if ana is not None:
                analytics.prefetch_symbol(np.int64(ahead["symbol"]), ana)
        ev = events[(ev_position + i) & ev_mask]
        etype = ev["type"]
        if etype == EV_WATERMARK or etype == EV_END:
            _write_marker(out[(out_position + written) & out_mask], ev,
                          RES_WATERMARK if etype == EV_WATERMARK else RES_END, proc_ts)
            written += 1
            continue
        symbol = np.int64(ev["symbol"])
        venue = np.int64(ev["venue"])
        s = local_index[symbol] if symbol < local_index.shape[0] else -1
        if s < 0 or venue >= n_venues:
            counters[BAD_EVENTS] += 1
            continue
        if etype == EV_STATUS:
            _write_status(out[(out_position + written) & out_mask], ev, proc_ts)
            written += 1
            continue
        printed = False
        side = 0
        n_deltas = 0
        if etype == EV_ADD:
            side, n_deltas = _add(ev, s, venue, orders, order_info, displaced, venue_info, deltas,
                                  counters)
        elif etype == EV_EXECUTE or etype == EV_EXECUTE_PRICE:
            side, n_deltas, printed = _execute(ev, s, venue, orders, order_info, displaced,
                                               venue_info, deltas, quotes, last_trade_ts,
                                               counters)
        elif etype == EV_CANCEL or etype == EV_DELETE:
            side, n_deltas = _cancel(ev, s, venue, orders, order_info, displaced, venue_info,
                                     deltas, counters)
        elif etype == EV_REPLACE:
            side, n_deltas = _replace(ev, s, venue, orders, order_info, displaced, venue_info,
                                      deltas, counters)
        elif etype == EV_TRADE:
            side = np.int64(ev["side"]) & 1
            printed = _trade(ev, s, quotes, last_trade_ts, counters)
        elif etype == EV_CLEAR:
            _clear(s, venue, order_info, venue_info, levels, n_levels, quotes, depth)
        else:
            counters[BAD_EVENTS] += 1
            continue
        changed = False
        for k in range(n_deltas):
            changed |= _change_level(levels, n_levels, quotes, depth, s, venue, side,
                                     deltas[k, KEY], deltas[k, QTY], deltas[k, COUNT],
                                     counters)
        if printed:
            kind = RES_TRADE
        elif etype == EV_CLEAR:
            kind = RES_CLEAR
        elif changed:
            kind = RES_QUOTE
        else:
            continue
        j = (out_position + written) & out_mask
        out[j] = quotes[s]
        _stamp_result(out[j], ev, kind, venue, side, s, levels, n_levels, proc_ts)
        if ana is not None:
            written += analytics.apply_at(out, bars, signals, out_position + written, out_mask,
                                          ana)
        else:
            written += 1
    return written


# ---------------------------------------------------------------------------
# events -> order map -> level deltas
#
# Each returns the order's side and how many deltas it left in `deltas`.

@njit(cache=True, _nrt=False, inline="always")
def _add(ev, s, venue, orders, order_info, displaced, venue_info, deltas, counters):
    order_id = ev["order_id"]
    side = np.int64(ev["side"])
    price = ev["price"]
    qty = np.int64(ev["qty"])
    if not valid_order_id(order_id) or side > SIDE_ASK or price <= 0 or qty == 0:
        counters[BAD_EVENTS] += 1
        return side, 0
    key = order_key(order_id, venue)
    if is_live(orders, venue_info, find_slot(orders, order_info, key)):
        counters[BAD_EVENTS] += 1
        return side, 0
    if order_info[LIVE] >= order_info[MAX_ORDERS]:
        counters[BOOK_OVERFLOWS] += 1
        return side, 0
    insert_order(orders, order_info, displaced, venue_info, key, s, side, price, qty)
    _set_delta(deltas, 0, _level_key(price, side), qty, 1)
    return side, 1


@njit(cache=True, _nrt=False, inline="always")
def _execute(ev, s, venue, orders, order_info, displaced, venue_info, deltas, quotes,
             last_trade_ts, counters):
    at_order_price = ev["type"] == EV_EXECUTE
    printable = at_order_price or (ev["flags"] & FLAG_NON_PRINTABLE) == 0
    order_id = ev["order_id"]
    qty = np.int64(ev["qty"])
    if not valid_order_id(order_id) or qty == 0 or (
            printable and not at_order_price and ev["price"] <= 0):
        counters[BAD_EVENTS] += 1
        return 0, 0, False
    j = find_symbol_order(orders, order_info, venue_info, order_key(order_id, venue), s)
    if j < 0:
        counters[UNKNOWN_ORDERS] += 1
        return 0, 0, False
    price = orders[j]["price"] if at_order_price else ev["price"]
    done = min(qty, np.int64(orders[j]["qty"]))
    side = _reduce_order(orders, order_info, displaced, venue_info, j, done, deltas)
    if printable:
        _print_trade(quotes, last_trade_ts, s, price, done, ev["exch_ts"])
    return side, 1, printable


@njit(cache=True, _nrt=False, inline="always")
def _cancel(ev, s, venue, orders, order_info, displaced, venue_info, deltas, counters):
    """EV_CANCEL takes qty off the order, EV_DELETE all of it."""
    delete = ev["type"] == EV_DELETE
    order_id = ev["order_id"]
    qty = np.int64(ev["qty"])
    if not valid_order_id(order_id) or (qty == 0 and not delete):
        counters[BAD_EVENTS] += 1
        return 0, 0
    j = find_symbol_order(orders, order_info, venue_info, order_key(order_id, venue), s)
    if j < 0:
        counters[UNKNOWN_ORDERS] += 1
        return 0, 0
    left = np.int64(orders[j]["qty"])
    side = _reduce_order(orders, order_info, displaced, venue_info, j,
                         left if delete else min(qty, left), deltas)
    return side, 1


@njit(cache=True, _nrt=False, inline="always")
def _replace(ev, s, venue, orders, order_info, displaced, venue_info, deltas, counters):
    order_id = ev["order_id"]
    new_order_id = ev["new_order_id"]
    price = ev["price"]
    qty = np.int64(ev["qty"])
    if (not valid_order_id(order_id) or not valid_order_id(new_order_id)
            or price <= 0 or qty == 0):
        counters[BAD_EVENTS] += 1
        return 0, 0
    key = order_key(order_id, venue)
    j = find_symbol_order(orders, order_info, venue_info, key, s)
    if j < 0:
        counters[UNKNOWN_ORDERS] += 1
        return 0, 0
    new_key = order_key(new_order_id, venue)
    if new_key != key and is_live(orders, venue_info, find_slot(orders, order_info, new_key)):
        counters[BAD_EVENTS] += 1
        return 0, 0
    side = np.int64(orders[j]["side"])
    old_price = orders[j]["price"]
    old_qty = np.int64(orders[j]["qty"])
    remove_order(orders, order_info, displaced, venue_info, j)
    insert_order(orders, order_info, displaced, venue_info, new_key, s, side, price, qty)
    if price == old_price and qty == old_qty:
        return side, 0  # the levels end as they began
    _set_delta(deltas, 0, _level_key(old_price, side), -old_qty, -1)
    _set_delta(deltas, 1, _level_key(price, side), qty, 1)
    return side, 2


@njit(cache=True, _nrt=False)
def _trade(ev, s, quotes, last_trade_ts, counters):
    """Returns whether it printed."""
    qty = np.int64(ev["qty"])
    if ev["price"] <= 0 or qty == 0:
        counters[BAD_EVENTS] += 1
        return False
    _print_trade(quotes, last_trade_ts, s, ev["price"], qty, ev["exch_ts"])
    return True


@njit(cache=True, _nrt=False)
def _clear(s, venue, order_info, venue_info, levels, n_levels, quotes, depth):
    venue_info[s, venue, GENERATION] = (venue_info[s, venue, GENERATION] + 1) & 0xFFFFFFFF
    order_info[LIVE] -= venue_info[s, venue, VENUE_ORDERS]
    venue_info[s, venue, VENUE_ORDERS] = 0
    for side in range(2):
        n_levels[s, venue, side] = 0
        _quote_rebuild(levels, n_levels, quotes, depth, s, side)


@njit(cache=True, _nrt=False, inline="always")
def _set_delta(deltas, k, key, qty, count):
    deltas[k, KEY] = key
    deltas[k, QTY] = qty
    deltas[k, COUNT] = count


@njit(cache=True, _nrt=False, inline="always")
def _print_trade(quotes, last_trade_ts, s, price, qty, exch_ts):
    q = quotes[s]
    q["last_px"] = price
    q["last_qty"] = qty
    q["volume"] += qty
    q["notional"] += price * qty
    q["trades"] += 1
    last_trade_ts[s] = exch_ts


@njit(cache=True, _nrt=False, inline="always")
def _reduce_order(orders, order_info, displaced, venue_info, j, qty, deltas):
    """Take qty (at most what is left) off the order in slot j, removing it at zero.

    Leaves the level delta in deltas[0]; returns the order's side.
    """
    o = orders[j]
    side = np.int64(o["side"])
    key = _level_key(o["price"], side)
    left = np.int64(o["qty"]) - qty
    if left == 0:
        remove_order(orders, order_info, displaced, venue_info, j)
        _set_delta(deltas, 0, key, -qty, -1)
    else:
        o["qty"] = left
        _set_delta(deltas, 0, key, -qty, 0)
    return side


@njit(cache=True, _nrt=False, inline="always")
def _prefetch_ladder(ev, local_index, levels, n_levels):
    """Start loading the best level of the ladder an upcoming event changes: of
    the side it names (an ITCH execution, cancel or delete names none, and
    then it is the bid's: a wasted prefetch, cheaper than one of each side)."""
    symbol = np.int64(ev["symbol"])
    venue = np.int64(ev["venue"])
    if symbol >= local_index.shape[0] or venue >= n_levels.shape[1]:
        return
    s = local_index[symbol]
    if s < 0:
        return
    side = np.int64(ev["side"]) & 1
    n = n_levels[s, venue, side]
    if n > 0:
        prefetch(levels[s, venue, side, n - 1], 0)


# ---------------------------------------------------------------------------
# price ladders and the quote's depth

@njit(cache=True, _nrt=False, inline="always")
def _level_key(price, side):
    return price if side == SIDE_BID else -price


@njit(cache=True, _nrt=False, inline="always")
def _change_level(levels, n_levels, quotes, depth, s, venue, side, key, dqty, dcount,
                  counters):
    """Add dqty and dcount orders to the venue's level at key.

    Returns True when the venue's best level or the quote's depth changed.
    """
    ladder = levels[s, venue, side]
    n = n_levels[s, venue, side]
    i = n - 1
    while i >= 0 and ladder[i, KEY] > key:
        i -= 1
    better = n - 1 - i  # levels better than key
    if i >= 0 and ladder[i, KEY] == key:
        qty = ladder[i, QTY] + dqty
        count = ladder[i, COUNT] + dcount
        reshaped = qty <= 0 or count <= 0
        if not reshaped:
            ladder[i, QTY] = qty
            ladder[i, COUNT] = count
        else:
            dqty = -ladder[i, QTY]  # the level goes with all it held
            for k in range(i, n - 1):
                ladder[k, KEY] = ladder[k + 1, KEY]
                ladder[k, QTY] = ladder[k + 1, QTY]
                ladder[k, COUNT] = ladder[k + 1, COUNT]
            n_levels[s, venue, side] = n - 1
    else:
        if dqty <= 0:
            return False  # its level was dropped when the ladder overflowed
        if n == ladder.shape[0]:
            if i < 0:
                counters[BOOK_OVERFLOWS] += 1
                return False  # the new level would be the deepest: drop it
            _drop_deepest(levels, n_levels, quotes, depth, s, venue, side, counters)
            n -= 1
            i -= 1
        for k in range(n - 1, i, -1):
            ladder[k + 1, KEY] = ladder[k, KEY]
            ladder[k + 1, QTY] = ladder[k, QTY]
            ladder[k + 1, COUNT] = ladder[k, COUNT]
        ladder[i + 1, KEY] = key
        ladder[i + 1, QTY] = dqty
        ladder[i + 1, COUNT] = dcount
        n_levels[s, venue, side] = n + 1
        reshaped = True
    changed = better == 0
    if better < TOP_LEVELS:
        changed |= _quote_change(levels, n_levels, quotes, depth, s, side, key, dqty,
                                 reshaped)
    return changed


@njit(cache=True, _nrt=False)
def _drop_deepest(levels, n_levels, quotes, depth, s, venue, side, counters):
    """Make room in a full ladder by dropping its deepest level."""
    counters[BOOK_OVERFLOWS] += 1
    ladder = levels[s, venue, side]
    n = n_levels[s, venue, side]
    key = ladder[0, KEY]
    qty = ladder[0, QTY]
    for k in range(n - 1):
        ladder[k, KEY] = ladder[k + 1, KEY]
        ladder[k, QTY] = ladder[k + 1, QTY]
        ladder[k, COUNT] = ladder[k + 1, COUNT]
    n_levels[s, venue, side] = n - 1
    if n - 1 < TOP_LEVELS:
        _quote_change(levels, n_levels, quotes, depth, s, side, key, -qty, True)


@njit(cache=True, _nrt=False, inline="always")
def _side_depth(q, side):
    """The quote's depth arrays (price, qty) of one side."""
    if side == SIDE_BID:
        return q["level_bid_px"], q["level_bid_qty"]
    return q["level_ask_px"], q["level_ask_qty"]


@njit(cache=True, _nrt=False, inline="always")
def _quote_change(levels, n_levels, quotes, depth, s, side, key, dqty, reshaped):
    """Carry a change of a venue's level into the symbol's quote.

    The venue ladders already hold the change. reshaped: the venue's level was
    created or removed, so the venues at that price changed. Returns True when
    the quote's depth changed.
    """
    q = quotes[s]
    px, qty = _side_depth(q, side)
    sign = 1 if side == SIDE_BID else -1
    price = sign * key
    n = depth[s, side]
    i = 0
    while i < n and sign * px[i] > key:
        i += 1
    if i < n and px[i] == price:
        left = qty[i] + dqty
        if left > 0:
            qty[i] = left
        else:
            for k in range(i, n - 1):
                px[k] = px[k + 1]
                qty[k] = qty[k + 1]
            px[n - 1] = 0
            qty[n - 1] = 0
            depth[s, side] = n - 1
            if n == TOP_LEVELS:
                _quote_append_next(levels, n_levels, quotes, depth, s, side)
    elif i < TOP_LEVELS and dqty > 0:
        last = min(n, TOP_LEVELS - 1)
        for k in range(last, i, -1):
            px[k] = px[k - 1]
            qty[k] = qty[k - 1]
        px[i] = price
        qty[i] = dqty
        depth[s, side] = last + 1
    else:
        return False  # below the quote's depth
    if i == 0:
        _quote_best(levels, n_levels, quotes, depth, s, side, reshaped)
    return True


@njit(cache=True, _nrt=False)
def _quote_append_next(levels, n_levels, quotes, depth, s, side):
    """Append the best key over all venues below the quote's last level."""
    px, qty = _side_depth(quotes[s], side)
    sign = 1 if side == SIDE_BID else -1
    n = depth[s, side]
    bound = sign * px[n - 1] if n > 0 else 0
    best = _NO_KEY
    total = 0
    for venue in range(n_levels.shape[1]):
        ladder = levels[s, venue, side]
        j = n_levels[s, venue, side] - 1
        if n > 0:
            while j >= 0 and ladder[j, KEY] >= bound:
                j -= 1
        if j < 0:
            continue
        if ladder[j, KEY] > best:
            best = ladder[j, KEY]
            total = ladder[j, QTY]
        elif ladder[j, KEY] == best:
            total += ladder[j, QTY]
    if total == 0:
        return False
    px[n] = sign * best
    qty[n] = total
    depth[s, side] = n + 1
    return True


@njit(cache=True, _nrt=False)
def _quote_rebuild(levels, n_levels, quotes, depth, s, side):
    px, qty = _side_depth(quotes[s], side)
    for k in range(TOP_LEVELS):
        px[k] = 0
        qty[k] = 0
    depth[s, side] = 0
    while depth[s, side] < TOP_LEVELS and _quote_append_next(levels, n_levels, quotes, depth,
                                                             s, side):
        pass
    _quote_best(levels, n_levels, quotes, depth, s, side, True)


@njit(cache=True, _nrt=False, inline="always")
def _quote_best(levels, n_levels, quotes, depth, s, side, reshaped):
    """Refresh the quote's best price, qty and (when reshaped) venues from its depth."""
    q = quotes[s]
    px, qty = _side_depth(q, side)
    best_venue = NO_VENUE
    at_best = 0
    if reshaped and depth[s, side] > 0:
        best = px[0] if side == SIDE_BID else -px[0]
        for venue in range(n_levels.shape[1] - 1, -1, -1):
            n = n_levels[s, venue, side]
            if n > 0 and levels[s, venue, side, n - 1, KEY] == best:
                best_venue = venue
                at_best |= 1 << venue
    if side == SIDE_BID:
        q["bid_px"] = px[0]
        q["bid_qty"] = qty[0]
        if reshaped:
            q["bid_venue"] = best_venue
            q["bid_venues"] = at_best
    else:
        q["ask_px"] = px[0]
        q["ask_qty"] = qty[0]
        if reshaped:
            q["ask_venue"] = best_venue
            q["ask_venues"] = at_best


# ---------------------------------------------------------------------------
# results

@njit(cache=True, _nrt=False, inline="always")
def _stamp_result(r, ev, kind, venue, side, s, levels, n_levels, proc_ts):
    """Stamp a copy of the symbol's quote with the event and the venue's best levels."""
    r["seq"] = ev["seq"]
    r["side"] = side
    r["exch_ts"] = ev["exch_ts"]
    r["recv_ts"] = ev["recv_ts"]
    r["proc_ts"] = proc_ts
    r["feed_ns"] = ev["feed_ns"]
    r["venue"] = venue
    r["kind"] = kind
    r["event_type"] = ev["type"]
    n = n_levels[s, venue, SIDE_BID]
    if n > 0:
        r["venue_bid_px"] = levels[s, venue, SIDE_BID, n - 1, KEY]
        r["venue_bid_qty"] = levels[s, venue, SIDE_BID, n - 1, QTY]
    n = n_levels[s, venue, SIDE_ASK]
    if n > 0:
        r["venue_ask_px"] = -levels[s, venue, SIDE_ASK, n - 1, KEY]
        r["venue_ask_qty"] = levels[s, venue, SIDE_ASK, n - 1, QTY]
    flags = 0
    if r["bid_qty"] > 0 and r["ask_qty"] > 0:
        if r["bid_px"] == r["ask_px"]:
            flags = RFLAG_LOCKED
        elif r["bid_px"] > r["ask_px"]:
            flags = RFLAG_CROSSED
    r["flags"] = flags


@njit(cache=True, _nrt=False, inline="always")
def _write_marker(r, ev, kind, proc_ts):
    r["seq"] = ev["seq"]
    r["exch_ts"] = ev["exch_ts"]
    r["recv_ts"] = ev["recv_ts"]
    r["proc_ts"] = proc_ts
    r["symbol"] = 0
    r["venue"] = 0
    r["kind"] = kind
    r["flags"] = 0
    r["event_type"] = ev["type"]
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
    r["side"] = 0
    r["bid_venues"] = 0
    r["ask_venues"] = 0
    r["last_px"] = 0
    r["last_qty"] = 0
    r["volume"] = 0
    r["notional"] = 0
    r["trades"] = 0
    level_bid_px = r["level_bid_px"]
    level_bid_qty = r["level_bid_qty"]
    level_ask_px = r["level_ask_px"]
    level_ask_qty = r["level_ask_qty"]
    for k in range(TOP_LEVELS):
        level_bid_px[k] = 0
        level_bid_qty[k] = 0
        level_ask_px[k] = 0
        level_ask_qty[k] = 0
    pad0 = r["_pad0"]
    for k in range(pad0.shape[0]):
        pad0[k] = 0
    r["feed_ns"] = ev["feed_ns"]
    r["worker_ns"] = 0


@njit(cache=True, _nrt=False, inline="always")
def _write_status(r, ev, proc_ts):
    # STATUS_RECORD's message and code share RESULT's venue_bid_px word and its
    # number RESULT's venue_bid_qty (layout asserts it), so the kernel writes
    # them through the RESULT view it already has.
    _write_marker(r, ev, RES_STATUS, proc_ts)
    r["symbol"] = ev["symbol"]
    r["venue"] = ev["venue"]
    r["venue_bid_px"] = np.int64(np.uint32(ev["order_id"])) | (np.int64(ev["qty"]) << 32)
    r["venue_bid_qty"] = ev["price"]


# ---------------------------------------------------------------------------
# wrapper

_CHUNK = 1 << 14


def apply(book, events, proc_ts=0):
    """Apply a plain EVENT array to the book; return the RESULT array it produced.

    Counts go to ``book.counters``.

    >>> results = apply(book, events)
    >>> trades = results[results["kind"] == RES_TRADE]
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
                          int(proc_ts), book.counters, None, None, None)
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
    n_venues = book.venue_info.shape[1]
    if not 0 <= venue < n_venues:
        raise ValueError(f"venue must be in 0..{n_venues - 1}, got {venue}")
    if side not in (SIDE_BID, SIDE_ASK):
        raise ValueError(f"side must be SIDE_BID or SIDE_ASK, got {side}")
    n = book.n_levels[s, venue, side]
    ladder = book.levels[s, venue, side, :n][::-1]
    sign = 1 if side == SIDE_BID else -1
    return sign * ladder[:, KEY], ladder[:, QTY].copy(), ladder[:, COUNT].copy()


_QUOTE_FIELDS = ("bid_px", "bid_qty", "bid_venue", "bid_venues", "ask_px", "ask_qty",
                 "ask_venue", "ask_venues")
_DEPTH_FIELDS = ("level_bid_px", "level_bid_qty", "level_ask_px", "level_ask_qty")


def consolidated(book, symbol):
    """Consolidated best bid/offer and TOP_LEVELS depth of a symbol, as a dict.

    Keys are the RESULT field names (and ``flags``). Levels are best first and
    zero-filled; an empty side has price and qty 0 and venue NO_VENUE.

    >>> consolidated(book, 5)["bid_px"]
    """
    q = book.quotes[_local(book, symbol)]
    top = {name: int(q[name]) for name in _QUOTE_FIELDS}
    top.update({name: q[name].copy() for name in _DEPTH_FIELDS})
    flags = 0
    if top["bid_qty"] and top["ask_qty"]:
        if top["bid_px"] == top["ask_px"]:
            flags = RFLAG_LOCKED
        elif top["bid_px"] > top["ask_px"]:
            flags = RFLAG_CROSSED
    top["flags"] = flags
    return top


def last_trade(book, symbol):
    """The symbol's tape: last print (px, qty, exchange ts), volume, notional, trades.

    >>> last_trade(book, 5)["volume"]
    """
    s = _local(book, symbol)
    q = book.quotes[s]
    tape = {name: int(q[name]) for name in ("last_px", "last_qty", "volume", "notional",
                                            "trades")}
    tape["last_trade_ts"] = int(book.last_trade_ts[s])
    return tape


def live_orders(book):
    """Live orders over all owned symbols and venues."""
    return int(book.order_info[LIVE])
