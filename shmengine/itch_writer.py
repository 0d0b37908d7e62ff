"""Write NASDAQ TotalView-ITCH 5.0 files, so that the ITCH source can be fed
and tested with real-format input of any size.

``write_itch`` turns EVENT records into a complete day: system events 'O' and
'S', one R per symbol (stock locate = symbol id + 1), 'Q', the events, then
'M', 'E', 'C'. ``synthetic_itch`` does it for the engine's synthetic market on
one venue. ``encode`` and ``write_messages`` write any message with chosen
field values; ``every_type`` picks values for one message of each type.

Example::

    events = synthetic_itch("/tmp/day.itch", n_events=100_000, n_symbols=50, seed=7)
    reader = itch.ItchReader("/tmp/day.itch", date_ns=MARKET_DATE_NS)
"""
import gzip as gzip_module
import random

import numpy as np
from numba import njit

from . import itch
from .layout import (
    EV_ADD, EV_CANCEL, EV_DELETE, EV_EXECUTE, EV_EXECUTE_PRICE, EV_REPLACE, EV_STATUS,
    EV_TRADE, EVENT, EVENT_TYPE_NAMES, FLAG_NON_PRINTABLE, SIDE_ASK,
)
from .market import EPOCH_NS, new_market, symbol_names

MARKET_DATE_NS = EPOCH_NS - 34_200 * 10 ** 9  # midnight New York of the synthetic market's day
MAX_TIMESTAMP = (1 << 48) - 1
MAX_PRICE = (1 << 32) - 1  # Price(4) is unsigned: 429496.7295
STATUS_TYPES = (ord("S"), ord("H"), ord("B"))

_WRITTEN = (EV_ADD, EV_EXECUTE, EV_EXECUTE_PRICE, EV_CANCEL, EV_DELETE, EV_REPLACE, EV_TRADE,
            EV_STATUS)
_PRICED = (EV_ADD, EV_EXECUTE_PRICE, EV_REPLACE, EV_TRADE)
_CHUNK = 1 << 16
_LENGTHS = np.zeros(256, np.int64)
for _t, _n in itch.LENGTH.items():
    _LENGTHS[ord(_t)] = _n


# ---------------------------------------------------------------------------
# one message at a time

def encode(message_type, **values):
    """One message with its length prefix. Fields left out are 0 or spaces.

    >>> encode("D", stock_locate=1, timestamp=5, order_ref=42).hex()
    '00134400010000000000000005000000000000002a'
    """
    if message_type not in itch.MESSAGES:
        raise ValueError(f"encode: {message_type!r} is not an ITCH 5.0 message type")
    layout = itch.fields(message_type)
    unknown = set(values) - {f[0] for f in layout[1:]}
    if unknown:
        raise ValueError(f"encode: message {message_type!r} has no field(s) {sorted(unknown)}")
    out = bytearray(message_type.encode())
    for name, _, size, kind in layout[1:]:
        value = values.get(name, 0 if kind == "u" else "")
        if kind == "u":
            if not isinstance(value, (int, np.integer)) or not 0 <= value < 1 << (8 * size):
                raise ValueError(f"encode: {message_type}.{name} must be an integer in "
                                 f"0..2**{8 * size}-1, got {value!r}")
            out += int(value).to_bytes(size, "big")
        else:
            raw = value.encode("ascii") if isinstance(value, str) else bytes(value)
            if len(raw) > size:
                raise ValueError(f"encode: {message_type}.{name} takes {size} characters, "
                                 f"got {value!r}")
            out += raw.ljust(size, b" ")
    return len(out).to_bytes(2, "big") + bytes(out)


def _open(path, gzip):
    return gzip_module.open(path, "wb") if gzip else open(path, "wb")


def write_messages(path, messages, gzip=False):
    """Write (type, {field: value}) pairs as a file; return the bytes written (uncompressed)."""
    data = b"".join(encode(t, **values) for t, values in messages)
    with _open(path, gzip) as f:
        f.write(data)
    return len(data)


def every_type(seed=0):
    """One message of every ITCH 5.0 type, with field values drawn from ``seed``.

    R comes first and names stock locate 1, which the others use (S is
    market-wide: locate 0). Codes the parser checks are valid (side B/S,
    Printable Y/N); a cross trades at least one share.
    """
    rng = random.Random(seed)
    stock = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(rng.randint(1, 8)))
    order = ["R"] + [t for t in itch.MESSAGES if t != "R"]
    messages = []
    for t in order:
        values = {}
        for name, _, size, kind in itch.fields(t)[1:]:
            if name == "stock_locate":
                values[name] = 0 if t == "S" else 1
            elif name == "timestamp":
                values[name] = rng.randrange(86_400 * 10 ** 9)
            elif name == "stock":
                values[name] = stock
            elif name == "side":
                values[name] = rng.choice("BS")
            elif name == "printable":
                values[name] = rng.choice("YN")
            elif name == "shares" and t == "Q":
                values[name] = rng.randrange(1, 1 << 32)
            elif name == "match_number" and t == "B":
                values[name] = rng.randrange(1 << 63)
            elif kind == "u":
                values[name] = rng.randrange(1 << (8 * size))
            else:
                values[name] = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
                                       for _ in range(size))
        messages.append((t, values))
    return messages


# ---------------------------------------------------------------------------
# events

@njit(cache=True, _nrt=False, inline="always")
def _put(buf, p, value, size):
    for j in range(size):
        buf[p + j] = np.uint8((value >> np.uint64(8 * (size - 1 - j))) & np.uint64(0xFF))


@njit(cache=True, _nrt=False)
def _encode_events(events, lo, hi, date_ns, stocks, buf, match):
    """Encode events[lo:hi] as length-prefixed messages into buf; return (bytes, next match).

    The events are valid for ITCH (see write_itch); match numbers count from ``match``.
    """
    p = 0
    for i in range(lo, hi):
        ev = events[i]
        typ = ev["type"]
        symbol = np.int64(ev["symbol"])
        oid = np.uint64(ev["order_id"])
        qty = np.uint64(ev["qty"])
        price = np.uint64(ev["price"])
        if typ == EV_ADD:
            t = 65
        elif typ == EV_EXECUTE:
            t = 69
        elif typ == EV_EXECUTE_PRICE:
            t = 67
        elif typ == EV_CANCEL:
            t = 88
        elif typ == EV_DELETE:
            t = 68
        elif typ == EV_REPLACE:
            t = 85
        elif typ == EV_TRADE:
            t = 80
        else:
            t = np.int64(oid)
        length = _LENGTHS[t]
        _put(buf, p, np.uint64(length), 2)
        m = p + 2
        buf[m] = t
        _put(buf, m + 1, np.uint64(0 if t == 83 else symbol + 1), 2)
        _put(buf, m + 3, np.uint64(0), 2)
        _put(buf, m + 5, np.uint64(ev["exch_ts"] - date_ns), 6)
        q = m + 11
        if t == 65 or t == 80:  # A, P: ref, side, shares, stock, price (P: match)
            _put(buf, q, oid, 8)
            buf[q + 8] = 83 if ev["side"] == SIDE_ASK else 66
            _put(buf, q + 9, qty, 4)
            for j in range(8):
                buf[q + 13 + j] = stocks[symbol, j]
            _put(buf, q + 21, price, 4)
            if t == 80:
                _put(buf, q + 25, np.uint64(match), 8)
                match += 1
        elif t == 69 or t == 67:  # E, C: ref, shares, match (C: printable, price)
            _put(buf, q, oid, 8)
            _put(buf, q + 8, qty, 4)
            _put(buf, q + 12, np.uint64(match), 8)
            match += 1
            if t == 67:
                buf[q + 20] = 78 if ev["flags"] & FLAG_NON_PRINTABLE else 89
                _put(buf, q + 21, price, 4)
        elif t == 88:  # X
            _put(buf, q, oid, 8)
            _put(buf, q + 8, qty, 4)
        elif t == 68:  # D
            _put(buf, q, oid, 8)
        elif t == 85:  # U
            _put(buf, q, oid, 8)
            _put(buf, q + 8, np.uint64(ev["new_order_id"]), 8)
            _put(buf, q + 16, qty, 4)
            _put(buf, q + 20, price, 4)
        elif t == 83:  # S: event code
            buf[q] = np.uint8(qty)
        elif t == 72:  # H: stock, trading state, reserved, reason
            for j in range(8):
                buf[q + j] = stocks[symbol, j]
            buf[q + 8] = np.uint8(qty)
            for j in range(9, 14):
                buf[q + j] = 32
        else:  # B: match number
            _put(buf, q, price, 8)
        p = m + length
    return p, match


# The encoder writes these offsets by hand; hold them to the descriptor.
assert [f[1] for f in itch.fields("A")][4:] == [11, 19, 20, 24, 32]
assert [f[1] for f in itch.fields("P")][4:] == [11, 19, 20, 24, 32, 36]
assert [f[1] for f in itch.fields("E")][4:] == [11, 19, 23]
assert [f[1] for f in itch.fields("C")][4:] == [11, 19, 23, 31, 32]
assert [f[1] for f in itch.fields("X")][4:] == [11, 19]
assert [f[1] for f in itch.fields("U")][4:] == [11, 19, 27, 31]
assert [f[1] for f in itch.fields("H")][4:] == [11, 19, 20, 21]
assert [f[1] for f in itch.fields("B")][4:] == [11]


def _stock_bytes(names):
    stocks = np.full((max(len(names), 1), 8), ord(" "), np.uint8)
    for i, name in enumerate(names):
        if not isinstance(name, str) or not 1 <= len(name) <= 8 or not name.isascii() \
                or not name.isprintable() or name != name.strip():
            raise ValueError(f"write_itch: symbol name {name!r} is not 1 to 8 printable "
                             "ASCII characters without surrounding spaces")
        stocks[i, :len(name)] = np.frombuffer(name.encode("ascii"), np.uint8)
    return stocks


def _check_events(events, names, date_ns):
    """Raise ValueError unless every event has an ITCH message that carries it."""
    if events["venue"].any():
        bad = np.unique(events["venue"][events["venue"] != 0])
        raise ValueError(f"write_itch: ITCH is one venue, but events have venue(s) "
                         f"{bad.tolist()}; keep venue 0 only")
    types = events["type"]
    unsupported = np.setdiff1d(np.unique(types), _WRITTEN)
    if unsupported.size:
        raise ValueError("write_itch: no ITCH message for event type(s) "
                         f"{[EVENT_TYPE_NAMES.get(int(t), int(t)) for t in unsupported]}")
    if len(events) and int(events["symbol"].max()) >= len(names):
        raise ValueError(f"write_itch: an event names symbol {int(events['symbol'].max())}, "
                         f"but there are {len(names)} names")
    ts = events["exch_ts"] - np.int64(date_ns)
    if len(events) and (ts.min() < 0 or ts.max() > MAX_TIMESTAMP):
        raise ValueError("write_itch: exch_ts must lie within 2**48 ns after date_ns "
                         f"({date_ns}); got {int(events['exch_ts'].min())}.."
                         f"{int(events['exch_ts'].max())}")
    price = events["price"]
    priced = np.isin(types, _PRICED)
    if priced.any() and (price[priced].min() < 0 or price[priced].max() > MAX_PRICE):
        raise ValueError(f"write_itch: prices must fit ITCH's Price(4), 0..{MAX_PRICE} "
                         f"(429496.7295); got {int(price[priced].min())}.."
                         f"{int(price[priced].max())}")
    sided = (types == EV_ADD) | (types == EV_TRADE)
    if (events["side"][sided] > SIDE_ASK).any():
        raise ValueError("write_itch: an add or a trade has a side other than SIDE_BID/SIDE_ASK")
    status = events[types == EV_STATUS]
    if len(status):
        if not np.isin(status["order_id"], STATUS_TYPES).all():
            raise ValueError("write_itch: EV_STATUS must carry order_id ord('S'), ord('H') or "
                             "ord('B') (its ITCH message type)")
        coded = status["order_id"] != ord("B")
        if (status["qty"][coded] > 0xFF).any():
            raise ValueError("write_itch: an S or H EV_STATUS code (qty) must be one byte")
        if (status["price"][~coded] < 0).any():
            raise ValueError("write_itch: a B EV_STATUS match number (price) must be >= 0")


def _system_event(code, timestamp):
    return encode("S", timestamp=timestamp, event_code=code)


def write_itch(path, events, names, date_ns=0, gzip=False):
    """Write ``events`` (layout.EVENT, venue 0) as a complete ITCH 5.0 day; return bytes written.

    ``names[i]`` is symbol i's stock (1 to 8 ASCII characters); symbol i
    gets stock locate i + 1. Each event's timestamp is exch_ts - date_ns.
    E, C and P get match numbers 1, 2, ... in order; tracking numbers are 0.
    EV_STATUS becomes the message its order_id names (S, H or B). Raises
    ValueError for what ITCH cannot carry: another venue, EV_CLEAR and the
    stream markers, prices beyond Price(4), timestamps outside the day.

    >>> write_itch("/tmp/x.itch", events, ["AAPL", "MSFT"], date_ns=MARKET_DATE_NS)
    """
    events = np.asarray(events)
    if events.dtype != EVENT or events.ndim != 1:
        raise TypeError("write_itch: events must be a 1-D array of layout.EVENT")
    names = list(names)
    if len(names) > itch.N_LOCATES - 1:
        raise ValueError(f"write_itch: at most {itch.N_LOCATES - 1} symbols, got {len(names)}")
    if isinstance(date_ns, bool) or not isinstance(date_ns, (int, np.integer)) or date_ns < 0:
        raise ValueError(f"write_itch: date_ns must be a non-negative integer, got {date_ns!r}")
    stocks = _stock_bytes(names)
    _check_events(events, names, date_ns)
    first = int(events["exch_ts"][0]) - date_ns if len(events) else 0
    last = int(events["exch_ts"][-1]) - date_ns if len(events) else 0
    head = [_system_event("O", first), _system_event("S", first)]
    head += [encode("R", stock_locate=i + 1, timestamp=first, stock=name, market_category="Q",
                    financial_status="N", round_lot_size=100, round_lots_only="N",
                    issue_classification="C", issue_subtype="Z", authenticity="P",
                    short_sale_threshold="N", ipo_flag="N", luld_tier="1", etp_flag="N",
                    inverse_indicator="N")
             for i, name in enumerate(names)]
    head.append(_system_event("Q", first))
    head = b"".join(head)
    tail = b"".join(_system_event(code, last) for code in "MEC")
    buf = np.empty(_CHUNK * (2 + max(itch.LENGTH.values())), np.uint8)
    written = len(head) + len(tail)
    match = 1
    with _open(path, gzip) as f:
        f.write(head)
        for lo in range(0, len(events), _CHUNK):
            n, match = _encode_events(events, lo, min(lo + _CHUNK, len(events)), date_ns,
                                      stocks, buf, match)
            f.write(memoryview(buf)[:n])
            written += n
        f.write(tail)
    return written


def synthetic_itch(path, n_events, n_symbols, seed, gzip=False):
    """Write ``n_events`` of the synthetic market (``n_symbols`` symbols, one venue,
    ``seed``) as an ITCH day dated ``MARKET_DATE_NS``; return the events.

    Symbol i is ``market.symbol_names(n_symbols)[i]``.

    >>> events = synthetic_itch("/tmp/s.itch", 10_000, 20, seed=1)
    """
    events = new_market(n_symbols, 1, seed).generate(n_events)
    write_itch(path, events, symbol_names(n_symbols), MARKET_DATE_NS, gzip)
    return events
