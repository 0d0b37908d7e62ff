"""Slow, obviously correct reference of shmengine.book.

Orders live in one dict; every level, best price and consolidated level is
recomputed from the orders whenever it is asked for. Nothing is bounded but
max_orders (the kernel's max_levels is assumed large enough).
"""
import numpy as np

from shmengine.layout import (
    EV_ADD, EV_CANCEL, EV_CLEAR, EV_DELETE, EV_END, EV_EXECUTE, EV_EXECUTE_PRICE,
    EV_REPLACE, EV_STATUS, EV_TRADE, EV_WATERMARK, FLAG_NON_PRINTABLE, NO_VENUE, RES_CLEAR,
    RES_END, RES_QUOTE, RES_STATUS, RES_TRADE, RES_WATERMARK, RESULT, RFLAG_CROSSED,
    RFLAG_LOCKED, SIDE_ASK, SIDE_BID, STATUS_RECORD, TOP_LEVELS,
)

MAX_ORDER_ID = 1 << 61
KNOWN_TYPES = {EV_ADD, EV_EXECUTE, EV_EXECUTE_PRICE, EV_CANCEL, EV_DELETE, EV_REPLACE,
               EV_TRADE, EV_CLEAR, EV_WATERMARK, EV_END, EV_STATUS}


class Order:
    def __init__(self, symbol, side, price, qty):
        self.symbol = symbol
        self.side = side
        self.price = price
        self.qty = qty


class NaiveBook:
    def __init__(self, symbols, n_venues, max_orders):
        self.symbols = [int(s) for s in symbols]
        self.n_venues = n_venues
        self.max_orders = max_orders
        self.orders = {}  # (venue, order_id) -> Order
        self.tape = {s: dict(last_px=0, last_qty=0, last_trade_ts=0, volume=0, notional=0,
                             trades=0) for s in self.symbols}
        self.unknown_orders = 0
        self.book_overflows = 0
        self.bad_events = 0

    # -- views ---------------------------------------------------------------

    def book(self, symbol):
        """{(venue, side): [(price, qty, count)] best first} for every venue and side."""
        agg = {(v, side): {} for v in range(self.n_venues) for side in (SIDE_BID, SIDE_ASK)}
        for (venue, _), o in self.orders.items():
            if o.symbol == symbol:
                level = agg[venue, o.side]
                qty, count = level.get(o.price, (0, 0))
                level[o.price] = (qty + o.qty, count + 1)
        return {(venue, side): [(p, *level[p]) for p in sorted(level, reverse=side == SIDE_BID)]
                for (venue, side), level in agg.items()}

    def levels(self, symbol, venue, side):
        """[(price, qty, count)] best first."""
        return self.book(symbol)[venue, side]

    def venue_bbo(self, symbol, venue, book=None):
        """(bid_px, bid_qty, ask_px, ask_qty), zeros for an empty side."""
        book = book or self.book(symbol)
        bbo = []
        for side in (SIDE_BID, SIDE_ASK):
            levels = book[venue, side]
            bbo += [levels[0][0], levels[0][1]] if levels else [0, 0]
        return tuple(bbo)

    def consolidated(self, symbol, book=None):
        """Same keys as shmengine.book.consolidated, levels as lists."""
        book = book or self.book(symbol)
        top = {}
        for side, name in ((SIDE_BID, "bid"), (SIDE_ASK, "ask")):
            qty_at = {}
            venues_at = {}
            for venue in range(self.n_venues):
                for price, qty, _ in book[venue, side]:
                    qty_at[price] = qty_at.get(price, 0) + qty
                    venues_at.setdefault(price, []).append(venue)
            prices = sorted(qty_at, reverse=side == SIDE_BID)[:TOP_LEVELS]
            pad = [0] * (TOP_LEVELS - len(prices))
            top[f"level_{name}_px"] = prices + pad
            top[f"level_{name}_qty"] = [qty_at[p] for p in prices] + pad
            top[f"{name}_px"] = prices[0] if prices else 0
            top[f"{name}_qty"] = qty_at[prices[0]] if prices else 0
            top[f"{name}_venue"] = min(venues_at[prices[0]]) if prices else NO_VENUE
            top[f"{name}_venues"] = sum(1 << v for v in set(venues_at[prices[0]])) if prices else 0
        flags = 0
        if top["bid_qty"] and top["ask_qty"]:
            if top["bid_px"] == top["ask_px"]:
                flags = RFLAG_LOCKED
            elif top["bid_px"] > top["ask_px"]:
                flags = RFLAG_CROSSED
        top["flags"] = flags
        return top

    def counters(self):
        return [self.unknown_orders, self.book_overflows, self.bad_events]

    # -- events --------------------------------------------------------------

    def apply(self, ev, proc_ts=0):
        """Apply one event (a mapping of EVENT fields); return its result dict or None."""
        etype = int(ev["type"])
        if etype in (EV_WATERMARK, EV_END):
            return self._marker(ev, RES_WATERMARK if etype == EV_WATERMARK else RES_END, proc_ts)
        symbol = int(ev["symbol"])
        venue = int(ev["venue"])
        if symbol not in self.tape or venue >= self.n_venues or etype not in KNOWN_TYPES:
            self.bad_events += 1
            return None
        if etype == EV_STATUS:
            return self._status(ev, proc_ts)
        before = self._view(symbol, venue)
        printed = self._apply(ev, etype, symbol, venue)
        if printed is None:
            return None
        if printed:
            kind = RES_TRADE
        elif etype == EV_CLEAR:
            kind = RES_CLEAR
        elif self._view(symbol, venue) != before:
            kind = RES_QUOTE
        else:
            return None
        return self._result(ev, kind, symbol, venue, proc_ts)

    def _apply(self, ev, etype, symbol, venue):
        """Change the book; return whether a trade printed, None for a rejected event."""
        order_id = int(ev["order_id"])
        price = int(ev["price"])
        qty = int(ev["qty"])
        valid_id = 0 < order_id < MAX_ORDER_ID
        key = (venue, order_id)
        order = self.orders.get(key)
        if order is not None and order.symbol != symbol:
            order = None  # lives under another symbol: not in this book
        # the side a result reports: of the order touched, of the resting order on a trade
        self._side = order.side if order is not None else 0

        if etype == EV_ADD:
            side = int(ev["side"])
            if not valid_id or side not in (SIDE_BID, SIDE_ASK) or price <= 0 or qty == 0:
                return self._bad()
            if key in self.orders:
                return self._bad()
            if len(self.orders) >= self.max_orders:
                self.book_overflows += 1
                return None
            self._side = side
            self.orders[key] = Order(symbol, side, price, qty)
            return False

        if etype in (EV_EXECUTE, EV_EXECUTE_PRICE):
            printable = etype == EV_EXECUTE or not int(ev["flags"]) & FLAG_NON_PRINTABLE
            if not valid_id or qty == 0 or (etype == EV_EXECUTE_PRICE and printable
                                            and price <= 0):
                return self._bad()
            if order is None:
                return self._unknown()
            done = min(qty, order.qty)
            trade_px = order.price if etype == EV_EXECUTE else price
            self._take(key, done)
            if printable:
                self._print(symbol, trade_px, done, int(ev["exch_ts"]))
            return printable

        if etype == EV_CANCEL:
            if not valid_id or qty == 0:
                return self._bad()
            if order is None:
                return self._unknown()
            self._take(key, min(qty, order.qty))
            return False

        if etype == EV_DELETE:
            if not valid_id:
                return self._bad()
            if order is None:
                return self._unknown()
            del self.orders[key]
            return False

        if etype == EV_REPLACE:
            new_order_id = int(ev["new_order_id"])
            if (not valid_id or not 0 < new_order_id < MAX_ORDER_ID or price <= 0
                    or qty == 0):
                return self._bad()
            if order is None:
                return self._unknown()
            new_key = (venue, new_order_id)
            if new_key != key and new_key in self.orders:
                return self._bad()
            del self.orders[key]
            self.orders[new_key] = Order(symbol, order.side, price, qty)
            return False

        if etype == EV_TRADE:
            if price <= 0 or qty == 0:
                return self._bad()
            self._side = int(ev["side"]) & 1
            self._print(symbol, price, qty, int(ev["exch_ts"]))
            return True

        assert etype == EV_CLEAR
        self._side = 0
        for k in [k for k, o in self.orders.items() if k[0] == venue and o.symbol == symbol]:
            del self.orders[k]
        return False

    def _bad(self):
        self.bad_events += 1
        return None

    def _unknown(self):
        self.unknown_orders += 1
        return None

    def _take(self, key, qty):
        order = self.orders[key]
        order.qty -= qty
        if order.qty == 0:
            del self.orders[key]

    def _print(self, symbol, price, qty, exch_ts):
        tape = self.tape[symbol]
        tape["last_px"] = price
        tape["last_qty"] = qty
        tape["last_trade_ts"] = exch_ts
        tape["volume"] += qty
        tape["notional"] += price * qty
        tape["trades"] += 1

    def _view(self, symbol, venue):
        """What a quote result reports: the venue's best levels and the depth."""
        book = self.book(symbol)
        top = self.consolidated(symbol, book)
        return self.venue_bbo(symbol, venue, book), tuple(
            tuple(top[f"level_{name}"]) for name in ("bid_px", "bid_qty", "ask_px", "ask_qty"))

    # -- results -------------------------------------------------------------

    @staticmethod
    def _marker(ev, kind, proc_ts):
        return dict(seq=int(ev["seq"]), exch_ts=int(ev["exch_ts"]), recv_ts=int(ev["recv_ts"]),
                    proc_ts=proc_ts, kind=kind, event_type=int(ev["type"]))

    def _status(self, ev, proc_ts):
        """The status message as a STATUS_RECORD, read back as RESULT fields."""
        rec = np.zeros(1, STATUS_RECORD)
        for name, value in self._marker(ev, RES_STATUS, proc_ts).items():
            rec[name] = value
        rec["symbol"], rec["venue"] = ev["symbol"], ev["venue"]
        rec["message"], rec["code"], rec["number"] = ev["order_id"], ev["qty"], ev["price"]
        as_result = rec.view(RESULT)[0]
        return {name: as_result[name].item() for name in RESULT.names
                if not name.startswith("_") and as_result[name].ndim == 0}

    def _result(self, ev, kind, symbol, venue, proc_ts):
        """Every non-pad RESULT field; fields not named are zero."""
        result = self._marker(ev, kind, proc_ts)
        bid_px, bid_qty, ask_px, ask_qty = self.venue_bbo(symbol, venue)
        result.update(symbol=symbol, venue=venue, side=self._side, venue_bid_px=bid_px,
                      venue_bid_qty=bid_qty, venue_ask_px=ask_px, venue_ask_qty=ask_qty)
        result.update(self.consolidated(symbol))
        tape = self.tape[symbol]
        result.update({k: v for k, v in tape.items() if k != "last_trade_ts"})
        return result
