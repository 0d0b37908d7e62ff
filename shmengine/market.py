"""Seeded, deterministic synthetic market: the engine's default event source.

S symbols trade on V venues. Every (symbol, venue) keeps its own book of live
orders, and the generator emits order-by-order flow with NASDAQ ITCH 5.0
semantics as ``layout.EVENT`` records:

    EV_ADD            new order: order_id, side, price, qty
    EV_EXECUTE        execution of a resting order at its price: qty executed
    EV_EXECUTE_PRICE  execution of a resting order at another price
                      (FLAG_NON_PRINTABLE when it does not print)
    EV_CANCEL         partial cancel: qty cancelled, always < remaining
    EV_DELETE         order removed
    EV_REPLACE        order_id -> new_order_id with new price and qty, same side
    EV_TRADE          non-displayed trade: price, qty, side of the resting
                      (hidden) order; order_id 0
    EV_CLEAR          the (symbol, venue) book is empty (off by default)

On execute, execute-price, cancel and delete, ``side`` is the side of the
named order; on execute and cancel ``price`` is the order's price, on delete
``price`` and ``qty`` are the order's price and remaining quantity (as a
check, ITCH carries neither). ``exch_ts`` is the market's own clock in ns
since the Unix epoch, starting at 2026-01-02 09:30 New York and never going
back; a marketable order's executions share one timestamp.

Invariants of the stream, relied on by the book builders downstream:

- every order id is >= 1 and never reused;
- every execute, cancel, delete and replace names an order live on that
  (symbol, venue) with a valid quantity;
- no venue book ever crosses itself: an order priced at or through its own
  venue's opposite best is shown as executions against that side (best price
  first, then oldest), and only its remainder, if any, is added;
- at most ``capacity`` live orders per (symbol, venue, side), so at most that
  many price levels per side.

The model: each symbol has a fair price in ticks (tick 50, 100 or 500 price
units, a few dollars to a few hundred) that steps a tick now and then; each
venue quotes bids at or below fair + its own small offset and asks above it,
most orders within a few ticks of the top. Each side drifts towards ``depth``
live orders; deletes go first to orders left through the quote by a price move,
then to orders far behind it. Activity is skewed over symbols (Zipf-like,
ranks shuffled by the seed) and over venues (low venue ids busier).

Across venues the consolidated market is sometimes locked or crossed for a
short while (stale quotes, orders let through a lock); arbitrage executions
clear it.

The stream is a pure function of (n_symbols, n_venues, seed, options): all
randomness comes from a splitmix64 state held in the state arrays, so a copy of
the state continues the same stream, and generating in chunks gives the same
events as generating in one go.

Example::

    from shmengine.market import new_market, generate
    m = new_market(100, 4, seed=7)
    events = m.generate(10_000, seq0=0)          # EVENT array
    # in a feed loop, straight into a ring of EVENT slots:
    generate(*m.kernel_args(), ring, position, ring.size - 1, 4096, seq, now_ns)
"""
import math

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import layout

EPOCH_NS = 1_767_364_200_000_000_000  # 2026-01-02 09:30 America/New_York (14:30 UTC)

DEFAULT_OPTIONS = {
    "capacity": 32,          # live orders per (symbol, venue, side), preallocated
    "depth": 20,             # live orders per side the flow drifts towards
    "mean_gap_ns": 1_000,    # mean exchange-clock gap between independent events
    "p_cancel": 0.08,        # per event: partial cancel
    "p_replace": 0.10,       # per event: replace
    "p_take": 0.015,         # per event: marketable order that leaves no remainder
    "p_execute_price": 0.004,  # per event: execution at another price than the order's
    "p_trade": 0.01,         # per event: non-displayed trade
    "p_clear": 0.0,          # per event: venue book cleared
    "p_non_printable": 0.3,  # share of executions at another price that do not print
    "p_marketable": 0.01,    # share of adds priced through the venue's own opposite best
    "p_lock": 0.05,          # share of adds that would lock another venue and are let through
    "p_arbitrage": 0.25,     # per event of a locked or crossed symbol: arbitrage sweeps it
    "p_fair_step": 0.005,    # per event of a symbol: fair price moves one tick
    "p_offset_step": 0.003,  # per event of a (symbol, venue): venue quote offset moves a tick
    "max_offset": 1,         # venue quote offset from the fair price, in ticks
    "zipf": 1.0,             # symbol activity ~ 1 / rank**zipf
}

# ctl: scalar state, int64
C_N_SYMBOLS = 0
C_N_VENUES = 1
C_CAPACITY = 2
C_DEPTH = 3
C_CLOCK = 4
C_NEXT_ID = 5
C_AGG_ACTIVE = 6   # a marketable order is being shown as executions
C_AGG_BOOK = 7     # its book index ((symbol * V + venue) * 2 + side)
C_AGG_LIMIT = 8    # its limit, ticks
C_AGG_QTY = 9      # its remaining quantity
C_AGG_REST = 10    # 1: its remainder is added at the limit; 0: immediate-or-cancel
C_EVENTS = 11      # events generated so far
C_LEN = 16

# prm: options as integers; probabilities are thresholds out of 2**32.
# The first N_ACTIONS are the per-event probabilities of the actions other than
# add and delete, in the order the kernel tries them.
P_CANCEL = 0
P_REPLACE = 1
P_TAKE = 2
P_EXECUTE_PRICE = 3
P_TRADE = 4
P_CLEAR = 5
N_ACTIONS = 6
P_NON_PRINTABLE = 6
P_MARKETABLE = 7
P_LOCK = 8
P_ARBITRAGE = 9
P_FAIR_STEP = 10
P_OFFSET_STEP = 11
P_MAX_OFFSET = 12
P_LEN = 16

# tables: rows of 256 entries indexed by 8 random bits
T_GAP = 0     # exchange-clock gap, ns (exponential quantiles)
T_DIST = 1    # distance of a new order behind the venue's quote, ticks
T_QTY = 2     # order size, shares
T_VENUE = 3   # venue (skewed towards low venue ids)
T_LEN = 4

ASK_EMPTY = 1 << 40  # best ask (ticks) of an empty ask side; an empty bid side has 0
LOOKAHEAD = 2        # events between drawing an event's symbol and building it
MIN_FAIR = 64        # fair prices stay at least this many ticks above zero
MAX_NAMES = 26 ** 3 // 2 + 26 ** 4

BID = layout.SIDE_BID
ASK = layout.SIDE_ASK

STATE_ARRAYS = ("rng", "ctl", "prm", "sym_alias", "tick", "fair", "venue_offset",
                "best", "nbbo", "count", "order_id", "order_px", "order_qty", "tables")

_M32 = np.uint64(0xFFFFFFFF)
_NO_ID = np.uint64(0xFFFFFFFFFFFFFFFF)


# ---------------------------------------------------------------- names

def _letters(j, width):
    s = []
    for _ in range(width):
        j, d = divmod(j, 26)
        s.append(chr(65 + d))
    return "".join(reversed(s))


def symbol_names(n):
    """Return ``n`` unique ticker-like names (uppercase ASCII, 3 or 4 letters).

    The first 8788 names have 3 letters, the rest 4.

    Names depend only on the index, so ``symbol_names(n)`` is a prefix of
    ``symbol_names(n + 1)``::

        >>> symbol_names(3)
        ['NIF', 'ZAU', 'KTJ']
    """
    n = int(n)
    if n < 0 or n > MAX_NAMES:
        raise ValueError(f"symbol_names: n must be in 0..{MAX_NAMES}, got {n}")
    # A stride coprime with 26 walks each name space as a permutation, so
    # names are unique within a width and look unrelated to their neighbours.
    n3 = 26 ** 3 // 2
    names = []
    for i in range(n):
        if i < n3:
            names.append(_letters((i * 7919 + 9001) % 26 ** 3, 3))
        else:
            names.append(_letters(((i - n3) * 104729 + 271828) % 26 ** 4, 4))
    return names


# ---------------------------------------------------------------- kernels
#
# The kernels are free functions over the state arrays, inlined into
# `generate` (a real call passes each array as seven words). `generate` is
# compiled without reference counting (_nrt=False): it allocates nothing, and
# every array bound by an inlined call would otherwise cost an atomic
# increment and decrement per event.
#
# Book side b = (symbol * n_venues + venue) * 2 + side holds count[b] live
# orders in slots 0..count[b]-1 of order_id/order_px/order_qty[b] (prices in
# ticks), unordered; best[b] is its best price (0 for no bid, ASK_EMPTY for no
# ask) and nbbo[symbol] the best bid and ask over the symbol's venues.

def _prefetch(array, index):
    """Ask the CPU to pull array[index] into cache; no effect on results.

    index is an integer for a 1-d array, a pair for a 2-d one.
    """


if not numba.config.DISABLE_JIT:
    @intrinsic
    def _prefetch(typingctx, array, index):  # noqa: F811 (the compiled form of the above)
        if not isinstance(array, types.Array):
            return None
        if isinstance(index, types.Integer) and array.ndim == 1:
            pair = False
        elif isinstance(index, types.BaseTuple) and len(index) == 2 and array.ndim == 2 \
                and all(isinstance(t, types.Integer) for t in index):
            pair = True
        else:
            return None

        def codegen(context, builder, signature, args):
            aryty = signature.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            if pair:
                inds = [builder.extract_value(args[1], 0), builder.extract_value(args[1], 1)]
            else:
                inds = [args[1]]
            item = cgutils.get_item_pointer(context, builder, aryty, ary, inds, wraparound=False)
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                "llvm.prefetch.p0")
            # read, keep in all cache levels, data
            builder.call(fn, [builder.bitcast(item, i8p), i32(0), i32(3), i32(1)])
            return context.get_dummy_value()

        return types.void(array, index), codegen


@njit(cache=True, inline='always')
def _next(rng):
    # splitmix64: one 64-bit word of state, passes BigCrush, a handful of ops
    x = rng[0] + np.uint64(0x9E3779B97F4A7C15)
    rng[0] = x
    z = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline='always')
def _below(r, n):
    """Uniform integer in 0..n-1 from the high 32 bits of r (n < 2**32)."""
    return np.int64(((r >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))


@njit(cache=True, inline='always')
def _chance(r, threshold):
    """True with probability threshold / 2**32, from the low 32 bits of r."""
    return np.int64(r & _M32) < threshold


@njit(cache=True, inline='always')
def _field(r, shift, bits):
    return np.int64((r >> np.uint64(shift)) & np.uint64((1 << bits) - 1))


@njit(cache=True, inline='always')
def _decode(r0, r1, n_symbols, sym_alias, tables):
    """Symbol (Zipf-like, by the alias method), venue and side of an event."""
    s = _below(r0, n_symbols)
    alias = sym_alias[s, 1]
    s = s if _chance(r0, sym_alias[s, 0]) else alias
    return s, tables[T_VENUE, _field(r1, 8, 8)], _field(r1, 16, 1)


@njit(cache=True, inline='always')
def _side_best(best, base, n_venues, side):
    """Best price of one side of a symbol over its venues; base = symbol * n_venues * 2."""
    if side == BID:
        m = 0
        for v in range(n_venues):
            m = max(m, best[base + 2 * v])
    else:
        m = ASK_EMPTY
        for v in range(n_venues):
            m = min(m, best[base + 2 * v + 1])
    return m


@njit(cache=True, inline='always')
def _set_best(best, nbbo, n_venues, s, b, px):
    """Every change of a venue's best price goes through here, so that nbbo[s]
    stays the best over the symbol's venues without a scan per event."""
    old = best[b]
    best[b] = px
    side = b & 1
    c = nbbo[s, side]
    if (px > c) if side == BID else (px < c):
        nbbo[s, side] = px
    elif old == c and px != old:
        nbbo[s, side] = _side_best(best, s * n_venues * 2, n_venues, side)


@njit(cache=True, inline='always')
def _rescan(best, nbbo, count, order_px, n_venues, s, b):
    n = count[b]
    if b & 1 == BID:
        m = 0
        for j in range(n):
            m = max(m, np.int64(order_px[b, j]))
    else:
        m = ASK_EMPTY
        for j in range(n):
            m = min(m, np.int64(order_px[b, j]))
    if m != best[b]:
        _set_best(best, nbbo, n_venues, s, b, m)


@njit(cache=True, inline='always')
def _insert(best, nbbo, count, order_id, order_px, order_qty, n_venues, s, b, oid, px, qty):
    n = count[b]
    order_id[b, n] = oid
    order_px[b, n] = px
    order_qty[b, n] = qty
    count[b] = n + 1
    if (px > best[b]) if b & 1 == BID else (px < best[b]):
        _set_best(best, nbbo, n_venues, s, b, px)


@njit(cache=True, inline='always')
def _remove(best, nbbo, count, order_id, order_px, order_qty, n_venues, s, b, j):
    # Slots are unordered: the last one fills the hole. Time priority is the
    # order id, which only grows.
    n = count[b] - 1
    px = order_px[b, j]
    order_id[b, j] = order_id[b, n]
    order_px[b, j] = order_px[b, n]
    order_qty[b, j] = order_qty[b, n]
    count[b] = n
    if px == best[b]:
        _rescan(best, nbbo, count, order_px, n_venues, s, b)


@njit(cache=True, inline='always')
def _oldest_at_best(best, count, order_id, order_px, b):
    """Slot of the order first in priority: best price, then lowest id."""
    px = best[b]
    k = 0
    kid = _NO_ID
    for j in range(count[b]):
        oid = order_id[b, j] if order_px[b, j] == px else _NO_ID
        k = j if oid < kid else k
        kid = min(oid, kid)
    return k


@njit(cache=True, inline='always')
def _score(px, ref, side, stale_first):
    """How far an order sits behind the venue's quote (bids at or below ref,
    asks above). Orders left through the quote by a price move are stale."""
    dist = ref - px if side == BID else px - ref - 1
    if stale_first:  # stale ranks above anything up to 64 ticks behind
        return dist if dist >= 0 else 64 - dist
    return abs(dist)


@njit(cache=True, inline='always')
def _pick(order_px, b, n, r, ref, to_delete):
    """Slot of one of three random orders of book side b: the stalest or
    farthest from the quote when deleting, else the nearest to it."""
    side = b & 1
    j = (_field(r, 0, 16) * n) >> 16
    d = _score(np.int64(order_px[b, j]), ref, side, to_delete)
    for t in range(1, 3):
        jj = (_field(r, 16 * t, 16) * n) >> 16
        dd = _score(np.int64(order_px[b, jj]), ref, side, to_delete)
        better = (dd > d) if to_delete else (dd < d)
        j = jj if better else j
        d = dd if better else d
    return j


@njit(cache=True, inline='always')
def _comply(rng, prm, nbbo, s, side, px):
    """Move an order that would lock or cross another venue one tick behind it,
    except for the share p_lock let through."""
    if side == BID:
        if px >= nbbo[s, ASK] and not _chance(_next(rng), prm[P_LOCK]):
            return nbbo[s, ASK] - 1
    elif px <= nbbo[s, BID] and not _chance(_next(rng), prm[P_LOCK]):
        return nbbo[s, BID] + 1
    return px


@njit(cache=True, inline='always')
def _emit(out, k, seq, ts, recv_ts, event):
    symbol, venue, typ, side, price, qty, oid, new_oid, flags = event
    e = out[k]
    e["seq"] = np.uint64(seq)
    e["exch_ts"] = ts
    e["recv_ts"] = recv_ts
    e["price"] = price
    e["order_id"] = oid
    e["new_order_id"] = new_oid
    e["qty"] = np.uint32(qty)
    e["symbol"] = np.uint32(symbol)
    e["venue"] = np.uint8(venue)
    e["type"] = np.uint8(typ)
    e["side"] = np.uint8(side)
    e["flags"] = np.uint8(flags)
    e["feed_ns"] = np.uint32(0)


@njit(cache=True, inline='always')
def _start_order(ctl, b, limit, qty, rest):
    """Begin showing an order priced at or through its venue's opposite best."""
    ctl[C_AGG_BOOK] = b
    ctl[C_AGG_LIMIT] = limit
    ctl[C_AGG_QTY] = qty
    ctl[C_AGG_REST] = rest
    ctl[C_AGG_ACTIVE] = 1


@njit(cache=True, _nrt=False)
def generate(rng, ctl, prm, sym_alias, tick, fair, venue_offset, best, nbbo, count, order_id,
             order_px, order_qty, tables, out, out_pos, out_mask, n, seq0, recv_ts):
    """Write n events into out[(out_pos + i) & out_mask] with seq = seq0 + i; return n.

    The first 14 arguments are ``MarketState.kernel_args()``; out is an EVENT
    array whose length is a power of two and out_mask that length - 1.
    """
    n_symbols = ctl[C_N_SYMBOLS]
    n_venues = ctl[C_N_VENUES]
    capacity = ctl[C_CAPACITY]
    NONE = np.uint64(0)
    for i in range(n):
        # (symbol, venue, type, side, price, qty, order_id, new_order_id, flags)
        event = (0, 0, 0, 0, 0, 0, NONE, NONE, 0)
        # Each pass either builds the next event and breaks, or only changes
        # the state (a marketable order starts or ends) and goes round again.
        while True:
            if ctl[C_AGG_ACTIVE]:
                # A marketable order: one execution per event against the
                # venue's opposite side, best price then oldest first, while
                # it reaches.
                b = ctl[C_AGG_BOOK]
                ob = b ^ 1
                side = b & 1
                sv = b >> 1
                s = sv // n_venues
                v = sv - s * n_venues
                rem = ctl[C_AGG_QTY]
                lim = ctl[C_AGG_LIMIT]
                opp = best[ob]
                if rem > 0 and count[ob] > 0 and ((opp <= lim) if side == BID else (opp >= lim)):
                    j = _oldest_at_best(best, count, order_id, order_px, ob)
                    q = np.int64(order_qty[ob, j])
                    fill = min(q, rem)
                    oid = order_id[ob, j]
                    if fill == q:
                        _remove(best, nbbo, count, order_id, order_px, order_qty, n_venues, s, ob,
                                j)
                    else:
                        order_qty[ob, j] = q - fill
                    ctl[C_AGG_QTY] = rem - fill
                    event = (s, v, layout.EV_EXECUTE, side ^ 1, opp * tick[s], fill, oid, NONE, 0)
                    break
                ctl[C_AGG_ACTIVE] = 0
                # What is left of a limit order rests at its limit.
                if ctl[C_AGG_REST] and rem > 0 and count[b] < capacity:
                    px = _comply(rng, prm, nbbo, s, side, lim)
                    if px >= 1:
                        oid = np.uint64(ctl[C_NEXT_ID])
                        ctl[C_NEXT_ID] += 1
                        _insert(best, nbbo, count, order_id, order_px, order_qty, n_venues, s, b,
                                oid, px, rem)
                        event = (s, v, layout.EV_ADD, side, px * tick[s], rem, oid, NONE, 0)
                        break
                continue

            # A new independent event. Random words are drawn LOOKAHEAD
            # events ahead, so that a book is prefetched while the events
            # before it are built.
            r0 = rng[1]
            r1 = rng[2]
            for h in range(1, 2 * LOOKAHEAD - 1):
                rng[h] = rng[h + 2]
            rng[2 * LOOKAHEAD - 1] = _next(rng)
            rng[2 * LOOKAHEAD] = _next(rng)
            s, v, side = _decode(rng[2 * LOOKAHEAD - 1], rng[2 * LOOKAHEAD], n_symbols, sym_alias,
                                 tables)
            sv = s * n_venues + v
            b = sv * 2 + side
            # (a prefetch past the end of an array is harmless: it never faults)
            _prefetch(nbbo, (s, 0))
            _prefetch(best, b)
            _prefetch(count, b)
            _prefetch(fair, s)
            _prefetch(tick, s)
            _prefetch(venue_offset, sv)
            _prefetch(order_px, (b, 0))
            _prefetch(order_px, (b, 16))
            _prefetch(order_qty, (b, 0))
            _prefetch(order_id, (b, 0))
            _prefetch(order_id, (b, 8))
            _prefetch(order_px, (b ^ 1, 0))
            _prefetch(order_id, (b ^ 1, 0))

            s, v, side = _decode(r0, r1, n_symbols, sym_alias, tables)
            ctl[C_CLOCK] += tables[T_GAP, _field(r1, 0, 8)]
            tk = tick[s]
            sv = s * n_venues + v
            b = sv * 2 + side
            ob = b ^ 1
            live = count[b]
            if _field(r1, 24, 16) < prm[P_FAIR_STEP] >> 16:
                step = 1 if _field(r1, 17, 1) else -1
                fair[s] += step if fair[s] + step >= MIN_FAIR else 1
            if _field(r1, 40, 16) < prm[P_OFFSET_STEP] >> 16:
                o = venue_offset[sv] + (1 if _field(r1, 18, 1) else -1)
                if -prm[P_MAX_OFFSET] <= o <= prm[P_MAX_OFFSET]:
                    venue_offset[sv] = o
            # the venue quotes bids at or below ref, asks above it
            ref = fair[s] + venue_offset[sv]

            r2 = _next(rng)
            cbid = nbbo[s, BID]
            cask = nbbo[s, ASK]
            if cbid >= cask and _field(r2, 32, 16) < prm[P_ARBITRAGE] >> 16:
                # Locked or crossed: sell into the highest bid, or buy the
                # lowest offer, through to the other side's price.
                base = s * n_venues * 2
                sell = _field(r2, 48, 1)
                for vv in range(n_venues):
                    if sell and best[base + 2 * vv] == cbid:
                        _start_order(ctl, base + 2 * vv + ASK, cask, 1 << 30, 0)
                        break
                    if not sell and best[base + 2 * vv + 1] == cask:
                        _start_order(ctl, base + 2 * vv + BID, cbid, 1 << 30, 0)
                        break
                continue

            # One action per event with the configured probabilities; one
            # that does not apply to the book as it is falls back to add or
            # delete.
            u = np.int64(r2 & _M32)
            action = N_ACTIONS
            t = 0
            for a in range(N_ACTIONS):
                t += prm[a]
                if u < t:
                    action = a
                    break
            if action == P_CANCEL and live > 0:
                r = _next(rng)
                j = _below(r, live)
                q = np.int64(order_qty[b, j])
                if q >= 2:
                    if q >= 200 and q % 100 == 0:
                        c = 100 * (1 + _below(r << np.uint64(32), q // 100 - 1))
                    else:
                        c = 1 + _below(r << np.uint64(32), q - 1)
                    order_qty[b, j] = q - c
                    event = (s, v, layout.EV_CANCEL, side, order_px[b, j] * tk, c, order_id[b, j],
                             NONE, 0)
                    break
            if action == P_REPLACE and live > 0:
                r = _next(rng)
                j = _pick(order_px, b, live, r, ref, False)
                d = tables[T_DIST, _field(r, 48, 8)]
                px = ref - d if side == BID else ref + 1 + d
                # never at or through the venue's own opposite side
                if side == BID:
                    px = min(px, best[ob] - 1)
                else:
                    px = max(px, best[ob] + 1)
                px = _comply(rng, prm, nbbo, s, side, px)
                if px >= 1:
                    old_px = order_px[b, j]
                    old_id = order_id[b, j]
                    q = tables[T_QTY, _field(r, 56, 8)]
                    oid = np.uint64(ctl[C_NEXT_ID])
                    ctl[C_NEXT_ID] += 1
                    order_id[b, j] = oid
                    order_px[b, j] = px
                    order_qty[b, j] = q
                    if (px > best[b]) if side == BID else (px < best[b]):
                        _set_best(best, nbbo, n_venues, s, b, px)
                    elif old_px == best[b]:
                        _rescan(best, nbbo, count, order_px, n_venues, s, b)
                    event = (s, v, layout.EV_REPLACE, side, px * tk, q, old_id, oid, 0)
                    break
            if action == P_TAKE and count[ob] > 0:
                # an order that takes liquidity and cancels what it cannot fill;
                # a quarter of them reach one tick through the best
                through = 1 if _field(r2, 49, 2) == 0 else 0
                lim = best[ob] + through if side == BID else max(best[ob] - through, 1)
                _start_order(ctl, b, lim, tables[T_QTY, _field(r2, 51, 8)], 0)
                continue
            if action == P_EXECUTE_PRICE and count[ob] > 0:
                r = _next(rng)
                j = _oldest_at_best(best, count, order_id, order_px, ob)
                q = np.int64(order_qty[ob, j])
                fill = q if (q < 2 or _field(r, 0, 1)) else 1 + _below(r, q - 1)
                px = order_px[ob, j] + (1 if _field(r, 1, 1) or order_px[ob, j] <= 1 else -1)
                printable = _field(r, 2, 16) >= prm[P_NON_PRINTABLE] >> 16
                oid = order_id[ob, j]
                if fill == q:
                    _remove(best, nbbo, count, order_id, order_px, order_qty, n_venues, s, ob, j)
                else:
                    order_qty[ob, j] = q - fill
                flags = 0 if printable else layout.FLAG_NON_PRINTABLE
                event = (s, v, layout.EV_EXECUTE_PRICE, side ^ 1, px * tk, fill, oid, NONE, flags)
                break
            if action == P_TRADE:
                # hidden liquidity trades inside the venue's spread
                vb = best[sv * 2]
                va = best[sv * 2 + 1]
                px = (vb + va) >> 1 if (vb > 0 and va < ASK_EMPTY) else ref
                q = tables[T_QTY, _field(r2, 51, 8)]
                event = (s, v, layout.EV_TRADE, side, max(px, 1) * tk, q, NONE, NONE, 0)
                break
            if action == P_CLEAR:
                count[sv * 2] = 0
                count[sv * 2 + 1] = 0
                _set_best(best, nbbo, n_venues, s, sv * 2, 0)
                _set_best(best, nbbo, n_venues, s, sv * 2 + 1, ASK_EMPTY)
                event = (s, v, layout.EV_CLEAR, 0, 0, 0, NONE, NONE, 0)
                break

            # Add or delete, drifting each side towards `depth` live orders;
            # a side whose best is left through the quote by a price move is
            # pulled.
            r = _next(rng)
            stale = (best[b] > ref) if side == BID else (best[b] <= ref)
            if not stale and (live == 0
                              or (live < capacity and _below(r, 2 * ctl[C_DEPTH]) >= live)):
                d = tables[T_DIST, _field(r, 0, 8)]
                q = tables[T_QTY, _field(r, 8, 8)]
                if count[ob] > 0 and _field(r, 16, 16) < prm[P_MARKETABLE] >> 16:
                    px = best[ob] + (d & 1) if side == BID else best[ob] - (d & 1)
                else:
                    px = ref - d if side == BID else ref + 1 + d
                px = max(px, 1)
                if (px >= best[ob]) if side == BID else (px <= best[ob]):
                    _start_order(ctl, b, px, q, 1)
                    continue
                px = _comply(rng, prm, nbbo, s, side, px)
                if px >= 1:
                    oid = np.uint64(ctl[C_NEXT_ID])
                    ctl[C_NEXT_ID] += 1
                    _insert(best, nbbo, count, order_id, order_px, order_qty, n_venues, s, b,
                            oid, px, q)
                    event = (s, v, layout.EV_ADD, side, px * tk, q, oid, NONE, 0)
                    break
                if live == 0:
                    continue
            # stale orders, then orders far from the quote, go first
            if stale:
                j = _oldest_at_best(best, count, order_id, order_px, b)
            else:
                j = _pick(order_px, b, live, _next(rng), ref, True)
            px = order_px[b, j] * tk
            q = np.int64(order_qty[b, j])
            oid = order_id[b, j]
            _remove(best, nbbo, count, order_id, order_px, order_qty, n_venues, s, b, j)
            event = (s, v, layout.EV_DELETE, side, px, q, oid, NONE, 0)
            break
        _emit(out, (np.int64(out_pos) + i) & out_mask, np.uint64(seq0) + np.uint64(i),
              ctl[C_CLOCK], recv_ts, event)
    ctl[C_EVENTS] += n
    return n


@njit(cache=True)
def _predraw(rng):
    for h in range(1, 2 * LOOKAHEAD + 1):
        rng[h] = _next(rng)


@njit(cache=True)
def _init_symbols(rng, n_symbols, zipf, sym_alias, tick, fair):
    """Per-symbol tick and fair price, and the alias table of symbol activity."""
    for s in range(n_symbols):
        r = _next(rng)
        # log-uniform price between $3 and $400
        u = np.float64(r >> np.uint64(11)) / 9007199254740992.0
        price = 3.0 * math.exp(u * math.log(400.0 / 3.0))
        t = _field(_next(rng), 0, 8)
        if t < 26:
            tk = 50    # half-penny tick
        elif t < 46 and price > 50.0:
            tk = 500   # nickel tick
        else:
            tk = 100   # penny tick
        tick[s] = tk
        fair[s] = max(np.int64(price * layout.PRICE_SCALE / tk), MIN_FAIR)
    # Activity follows 1/rank**zipf, ranks shuffled over symbols (Fisher-Yates).
    rank = np.arange(n_symbols)
    for s in range(n_symbols - 1, 0, -1):
        j = _below(_next(rng), s + 1)
        rank[s], rank[j] = rank[j], rank[s]
    w = np.empty(n_symbols)
    for s in range(n_symbols):
        w[s] = 1.0 / (rank[s] + 1.0) ** zipf
    w *= n_symbols / w.sum()
    # Vose's alias method: column s keeps s with probability p[s], else alias[s].
    small = np.empty(n_symbols, np.int64)
    large = np.empty(n_symbols, np.int64)
    ns = 0
    nl = 0
    for s in range(n_symbols):
        if w[s] < 1.0:
            small[ns] = s
            ns += 1
        else:
            large[nl] = s
            nl += 1
    for s in range(n_symbols):
        sym_alias[s, 0] = 1 << 32
        sym_alias[s, 1] = s
    while ns > 0 and nl > 0:
        ns -= 1
        a = small[ns]
        g = large[nl - 1]
        sym_alias[a, 0] = np.int64(w[a] * 4294967296.0)
        sym_alias[a, 1] = g
        w[g] = (w[g] + w[a]) - 1.0
        if w[g] < 1.0:
            nl -= 1
            small[ns] = g
            ns += 1


# ---------------------------------------------------------------- wrapper

def _threshold(p):
    return min(int(round(p * 2 ** 32)), 2 ** 32)


def _tables(n_venues, mean_gap_ns):
    tables = np.zeros((T_LEN, 256), np.int64)
    q = (np.arange(256) + 0.5) / 256.0
    tables[T_GAP] = np.round(-mean_gap_ns * np.log1p(-q)).astype(np.int64)
    # distance behind the quote: P(d) ~ 0.6**d, so most orders sit at the top levels
    cdf = np.cumsum(0.6 ** np.arange(16))
    cdf /= cdf[-1]
    tables[T_DIST] = np.searchsorted(cdf, q)
    # order sizes: mostly round lots, some mixed and odd lots (counts out of 256)
    sizes = {100: 86, 200: 50, 300: 25, 400: 12, 500: 25, 1000: 15, 2000: 4, 5000: 1,
             150: 3, 250: 3, 600: 3, 800: 3, 1500: 3,
             1: 2, 5: 2, 10: 3, 20: 2, 25: 3, 40: 2, 50: 3, 75: 2, 90: 2, 99: 2}
    assert sum(sizes.values()) == 256
    tables[T_QTY] = np.repeat(list(sizes), list(sizes.values()))
    w = 1.0 / np.sqrt(1.0 + np.arange(n_venues))
    share = np.floor(w / w.sum() * 256).astype(np.int64)
    share[0] += 256 - share.sum()
    tables[T_VENUE] = np.repeat(np.arange(n_venues), share)
    return tables


def _zeros(shape, dtype):
    """Zeroed array starting on a cache line, so a book row spans as few lines as it can."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.zeros(nbytes + layout.CACHE_LINE, np.uint8)
    skip = -raw.ctypes.data % layout.CACHE_LINE
    return raw[skip:skip + nbytes].view(dtype).reshape(shape)


def _copy(a):
    c = _zeros(a.shape, a.dtype)
    c[...] = a
    return c


class MarketState:
    """State of a synthetic market: plain numpy arrays, copyable, owned here.

    Create with :func:`new_market`. ``kernel_args()`` gives the state arrays in
    the order :func:`generate` takes them.
    """

    def __init__(self, n_symbols, n_venues, seed, options, arrays):
        self.n_symbols = n_symbols
        self.n_venues = n_venues
        self.seed = seed
        self.options = dict(options)
        self.names = symbol_names(n_symbols)
        for name in STATE_ARRAYS:
            setattr(self, name, arrays[name])

    def kernel_args(self):
        return tuple(getattr(self, name) for name in STATE_ARRAYS)

    def copy(self):
        """An independent state that continues the same stream."""
        return MarketState(self.n_symbols, self.n_venues, self.seed, self.options,
                           {name: _copy(getattr(self, name)) for name in STATE_ARRAYS})

    @property
    def events(self):
        """Events generated so far."""
        return int(self.ctl[C_EVENTS])

    @property
    def clock(self):
        """The market clock (exch_ts of the last event), ns since the Unix epoch."""
        return int(self.ctl[C_CLOCK])

    def generate(self, n, seq0=0, recv_ts=0):
        """Return the next ``n`` events as a new EVENT array.

        >>> m = new_market(10, 2, seed=1)
        >>> ev = m.generate(1000)
        >>> int(ev["seq"][-1])
        999
        """
        n = int(n)
        if n < 0:
            raise ValueError(f"generate: n must be >= 0, got {n}")
        out = np.zeros(n, layout.EVENT)
        if n:
            generate(*self.kernel_args(), out, 0, (1 << 62) - 1, n, int(seq0), int(recv_ts))
        return out

    def generate_into(self, out, out_pos, n, seq0, recv_ts):
        """Write ``n`` events into ring slots ``(out_pos + i) & (len(out) - 1)``; return n."""
        size = len(out)
        if int(n) < 0:
            raise ValueError(f"generate_into: n must be >= 0, got {n}")
        if out.dtype != layout.EVENT or size == 0 or size & (size - 1):
            raise ValueError("generate_into: out must be a layout.EVENT array whose length is a "
                             "power of two")
        return generate(*self.kernel_args(), out, int(out_pos), size - 1, int(n), int(seq0),
                        int(recv_ts))

    def price_tick(self, symbol):
        """Tick size of a symbol, in layout.PRICE_SCALE units."""
        return int(self.tick[symbol])

    def book(self, symbol, venue):
        """Live orders of (symbol, venue) as {order_id: (side, price, qty)}."""
        if not (0 <= symbol < self.n_symbols and 0 <= venue < self.n_venues):
            raise ValueError(f"book: no (symbol {symbol}, venue {venue}) in this market")
        orders = {}
        for side in (BID, ASK):
            b = (symbol * self.n_venues + venue) * 2 + side
            for j in range(self.count[b]):
                price = int(self.order_px[b, j]) * int(self.tick[symbol])
                orders[int(self.order_id[b, j])] = (side, price, int(self.order_qty[b, j]))
        return orders


def _option(opt, name, lo, hi, what, integer=False):
    value = opt[name]
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    ok = isinstance(value, kinds)
    if isinstance(value, bool) or not ok or not lo <= value <= hi:
        raise ValueError(f"new_market: option {name} must be {what}, got {value!r}")
    return int(value) if integer else float(value)


def new_market(n_symbols, n_venues, seed, **options):
    """Create a market of ``n_symbols`` symbols on ``n_venues`` venues.

    Options (see ``DEFAULT_OPTIONS``) override the defaults::

        m = new_market(500, 4, seed=42, p_clear=1e-4)
    """
    if isinstance(n_symbols, bool) or not isinstance(n_symbols, (int, np.integer)) \
            or not 1 <= n_symbols <= layout.MAX_SYMBOLS:
        raise ValueError(f"new_market: n_symbols must be an integer in 1..{layout.MAX_SYMBOLS}, "
                         f"got {n_symbols!r}")
    if isinstance(n_venues, bool) or not isinstance(n_venues, (int, np.integer)) \
            or not 1 <= n_venues <= layout.MAX_VENUES:
        raise ValueError(f"new_market: n_venues must be an integer in 1..{layout.MAX_VENUES}, "
                         f"got {n_venues!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) \
            or not 0 <= seed < 2 ** 64:
        raise ValueError(f"new_market: seed must be an integer in 0..2**64-1, got {seed!r}")
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ValueError(f"new_market: unknown option(s) {', '.join(unknown)}; "
                         f"known: {', '.join(DEFAULT_OPTIONS)}")
    opt = dict(DEFAULT_OPTIONS, **options)
    n_symbols = int(n_symbols)
    n_venues = int(n_venues)
    for name in DEFAULT_OPTIONS:
        if name.startswith("p_"):
            opt[name] = _option(opt, name, 0.0, 1.0, "a probability in 0..1")
    opt["capacity"] = _option(opt, "capacity", 2, 255, "an integer in 2..255", integer=True)
    opt["depth"] = _option(opt, "depth", 1, opt["capacity"], "an integer in 1..capacity",
                           integer=True)
    opt["max_offset"] = _option(opt, "max_offset", 0, 16, "an integer in 0..16", integer=True)
    opt["mean_gap_ns"] = _option(opt, "mean_gap_ns", 0.0, 1e9, "a number of ns in 0..1e9")
    opt["zipf"] = _option(opt, "zipf", 0.0, 4.0, "an exponent in 0..4")
    per_event = sum(opt[p] for p in
                    ("p_cancel", "p_replace", "p_take", "p_execute_price", "p_trade", "p_clear"))
    if per_event > 0.9:
        raise ValueError(f"new_market: p_cancel + p_replace + p_take + p_execute_price + p_trade "
                         f"+ p_clear is {per_event:.3g}; keep it <= 0.9 to leave room for adds "
                         f"and deletes")

    capacity = opt["capacity"]
    n_books = n_symbols * n_venues * 2
    # rng: splitmix64 state, then the random words of the next LOOKAHEAD independent events
    rng = np.zeros(1 + 2 * LOOKAHEAD, np.uint64)
    rng[0] = seed
    ctl = np.zeros(C_LEN, np.int64)
    ctl[C_N_SYMBOLS] = n_symbols
    ctl[C_N_VENUES] = n_venues
    ctl[C_CAPACITY] = capacity
    ctl[C_DEPTH] = opt["depth"]
    ctl[C_CLOCK] = EPOCH_NS
    ctl[C_NEXT_ID] = 1
    prm = np.zeros(P_LEN, np.int64)
    for index, name in ((P_CANCEL, "p_cancel"), (P_REPLACE, "p_replace"), (P_TAKE, "p_take"),
                        (P_EXECUTE_PRICE, "p_execute_price"), (P_TRADE, "p_trade"),
                        (P_CLEAR, "p_clear"), (P_NON_PRINTABLE, "p_non_printable"),
                        (P_MARKETABLE, "p_marketable"), (P_LOCK, "p_lock"),
                        (P_ARBITRAGE, "p_arbitrage"), (P_FAIR_STEP, "p_fair_step"),
                        (P_OFFSET_STEP, "p_offset_step")):
        prm[index] = _threshold(opt[name])
    prm[P_MAX_OFFSET] = opt["max_offset"]

    sym_alias = np.zeros((n_symbols, 2), np.int64)
    tick = np.zeros(n_symbols, np.int64)
    fair = np.zeros(n_symbols, np.int64)
    _init_symbols(rng, n_symbols, opt["zipf"], sym_alias, tick, fair)
    _predraw(rng)
    arrays = {
        "rng": rng,
        "ctl": ctl,
        "prm": prm,
        "sym_alias": sym_alias,
        "tick": tick,
        "fair": fair,
        "venue_offset": np.zeros(n_symbols * n_venues, np.int64),
        "best": _copy(np.tile(np.array([0, ASK_EMPTY], np.int64), n_symbols * n_venues)),
        "nbbo": _copy(np.tile(np.array([0, ASK_EMPTY], np.int64), (n_symbols, 1))),
        "count": _zeros(n_books, np.int64),
        "order_id": _zeros((n_books, capacity), np.uint64),
        "order_px": _zeros((n_books, capacity), np.int32),
        "order_qty": _zeros((n_books, capacity), np.int32),
        "tables": _tables(n_venues, opt["mean_gap_ns"]),
    }
    return MarketState(n_symbols, n_venues, int(seed), opt, arrays)
