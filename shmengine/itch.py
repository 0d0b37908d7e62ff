"""NASDAQ TotalView-ITCH 5.0 files as a source of EVENT records.

A daily ITCH file, as NASDAQ distributes it, is a sequence of messages, each
prefixed by its length as a 2-byte big-endian integer, optionally gzip
compressed. Every message type has one fixed length and fixed big-endian
fields (``MESSAGES``, the descriptor every offset here comes from). Each
message begins with its type byte, the stock locate (2), a tracking number (2)
and a timestamp (6: ns since midnight).

Messages become EVENT records (venue 0; seq, recv_ts and feed_ns are left 0
for the feed to stamp; exch_ts = the caller's midnight + the timestamp)::

    A, F  add order         EV_ADD: order_id, side, qty, price
    E     order executed    EV_EXECUTE: order_id, qty
    C     executed w/ price EV_EXECUTE_PRICE: order_id, qty, price,
                            flags FLAG_NON_PRINTABLE when Printable is 'N'
    X     order cancel      EV_CANCEL: order_id, qty
    D     order delete      EV_DELETE: order_id
    U     order replace     EV_REPLACE: order_id, new_order_id, qty, price
    P     trade             EV_TRADE: order_id, side, qty, price
    Q     cross trade       EV_TRADE: qty, price, side SIDE_BID (none when
                            0 shares crossed: nothing printed)
    S     system event      EV_STATUS: order_id ord('S'), qty the event code
    H     trading action    EV_STATUS: order_id ord('H'), qty the trading state
    B     broken trade      EV_STATUS: order_id ord('B'), price the match number

ITCH does not repeat an order's side or price on E, C, X, D and U, nor its
remaining quantity on D: those fields are 0 (the book keeps them per order).
EV_STATUS carries the symbol of its stock locate, or 0 for locate 0
(market-wide). R (stock directory) builds the symbol map: the locate of the
n-th distinct R becomes symbol id n, named by its stock field without spaces.
The other types are counted and produce nothing.

Bad input is counted and skipped, never raised: an unknown type, a length
that is not its type's, a message cut off by the end of the file, a stock
locate no R has named, a field value ITCH does not define (side not B/S,
Printable not Y/N, a cross of 2**32 shares or more), a damaged gzip stream
(what inflates before the damage or a cut is read).
The bytes skipped with a message of a wrong length or unknown type (as many
as its length prefix announces) or cut off are counted too: ``damage()``
says how much of a damaged file was lost, and an engine fed the file prints
it as a warning at the end.

Example::

    names = scan_symbols("01302020.NASDAQ_ITCH50.gz")   # ids before the start
    out = np.zeros(4096, layout.EVENT)
    with ItchReader("01302020.NASDAQ_ITCH50.gz", date_ns=midnight_ns) as reader:
        while not reader.eof:
            n = reader.read(out)
            ...                                        # out[:n]
        print(reader.counts["add_order"], reader.bad)
"""
import gzip
import zlib

import numpy as np
from numba import njit

from .layout import (
    EV_ADD, EV_CANCEL, EV_DELETE, EV_EXECUTE, EV_EXECUTE_PRICE, EV_REPLACE, EV_STATUS,
    EV_TRADE, EVENT, FLAG_NON_PRINTABLE, SIDE_ASK, SIDE_BID,
)

# Fields after the common header: (name, bytes, kind); kind "u" is an unsigned
# big-endian integer (prices are Price(4): four implied decimals, as
# PRICE_SCALE), "a" ASCII left-justified and padded with spaces.
HEADER = (("message_type", 1, "a"), ("stock_locate", 2, "u"), ("tracking_number", 2, "u"),
          ("timestamp", 6, "u"))
MESSAGES = {
    "S": ("system_event", (("event_code", 1, "a"),)),
    "R": ("stock_directory", (
        ("stock", 8, "a"), ("market_category", 1, "a"), ("financial_status", 1, "a"),
        ("round_lot_size", 4, "u"), ("round_lots_only", 1, "a"),
        ("issue_classification", 1, "a"), ("issue_subtype", 2, "a"), ("authenticity", 1, "a"),
        ("short_sale_threshold", 1, "a"), ("ipo_flag", 1, "a"), ("luld_tier", 1, "a"),
        ("etp_flag", 1, "a"), ("etp_leverage_factor", 4, "u"), ("inverse_indicator", 1, "a"))),
    "H": ("stock_trading_action", (
        ("stock", 8, "a"), ("trading_state", 1, "a"), ("reserved", 1, "a"),
        ("reason", 4, "a"))),
    "Y": ("reg_sho_restriction", (("stock", 8, "a"), ("reg_sho_action", 1, "a"))),
    "L": ("market_participant_position", (
        ("mpid", 4, "a"), ("stock", 8, "a"), ("primary_market_maker", 1, "a"),
        ("market_maker_mode", 1, "a"), ("market_participant_state", 1, "a"))),
    "V": ("mwcb_decline_level", (("level_1", 8, "u"), ("level_2", 8, "u"),
                                 ("level_3", 8, "u"))),
    "W": ("mwcb_status", (("breached_level", 1, "a"),)),
    "K": ("ipo_quoting_period_update", (
        ("stock", 8, "a"), ("release_time", 4, "u"), ("release_qualifier", 1, "a"),
        ("ipo_price", 4, "u"))),
    "J": ("luld_auction_collar", (
        ("stock", 8, "a"), ("reference_price", 4, "u"), ("upper_price", 4, "u"),
        ("lower_price", 4, "u"), ("extension", 4, "u"))),
    "h": ("operational_halt", (("stock", 8, "a"), ("market_code", 1, "a"),
                               ("halt_action", 1, "a"))),
    "A": ("add_order", (
        ("order_ref", 8, "u"), ("side", 1, "a"), ("shares", 4, "u"), ("stock", 8, "a"),
        ("price", 4, "u"))),
    "F": ("add_order_mpid", (
        ("order_ref", 8, "u"), ("side", 1, "a"), ("shares", 4, "u"), ("stock", 8, "a"),
        ("price", 4, "u"), ("attribution", 4, "a"))),
    "E": ("order_executed", (("order_ref", 8, "u"), ("shares", 4, "u"),
                             ("match_number", 8, "u"))),
    "C": ("order_executed_price", (
        ("order_ref", 8, "u"), ("shares", 4, "u"), ("match_number", 8, "u"),
        ("printable", 1, "a"), ("price", 4, "u"))),
    "X": ("order_cancel", (("order_ref", 8, "u"), ("shares", 4, "u"))),
    "D": ("order_delete", (("order_ref", 8, "u"),)),
    "U": ("order_replace", (
        ("order_ref", 8, "u"), ("new_order_ref", 8, "u"), ("shares", 4, "u"),
        ("price", 4, "u"))),
    "P": ("trade", (
        ("order_ref", 8, "u"), ("side", 1, "a"), ("shares", 4, "u"), ("stock", 8, "a"),
        ("price", 4, "u"), ("match_number", 8, "u"))),
    "Q": ("cross_trade", (
        ("shares", 8, "u"), ("stock", 8, "a"), ("price", 4, "u"), ("match_number", 8, "u"),
        ("cross_type", 1, "a"))),
    "B": ("broken_trade", (("match_number", 8, "u"),)),
    "I": ("noii", (
        ("paired_shares", 8, "u"), ("imbalance_shares", 8, "u"),
        ("imbalance_direction", 1, "a"), ("stock", 8, "a"), ("far_price", 4, "u"),
        ("near_price", 4, "u"), ("reference_price", 4, "u"), ("cross_type", 1, "a"),
        ("price_variation", 1, "a"))),
    "N": ("rpii", (("stock", 8, "a"), ("interest_flag", 1, "a"))),
    "O": ("dlcr_price_discovery", (
        ("stock", 8, "a"), ("open_eligibility", 1, "a"), ("min_price", 4, "u"),
        ("max_price", 4, "u"), ("near_execution_price", 4, "u"),
        ("near_execution_time", 8, "u"), ("lower_collar", 4, "u"),
        ("upper_collar", 4, "u"))),
}


def fields(message_type):
    """Every field of a message type, header first: [(name, offset, bytes, kind)].

    >>> [f[:3] for f in fields("D")][-1]
    ('order_ref', 11, 8)
    """
    out = []
    offset = 0
    for name, size, kind in HEADER + MESSAGES[message_type][1]:
        out.append((name, offset, size, kind))
        offset += size
    return out


def _offset(message_type, name):
    return next(f[1] for f in fields(message_type) if f[0] == name)


LENGTH = {t: sum(f[2] for f in fields(t)) for t in MESSAGES}
NAME = {t: MESSAGES[t][0] for t in MESSAGES}
MAX_MESSAGE = 0xFFFF + 2  # the largest a length prefix can announce, with the prefix

# counts: one slot per type byte, then the reasons a message was skipped
BAD_UNKNOWN_TYPE = 256
BAD_LENGTH = 257
BAD_TRUNCATED = 258
BAD_LOCATE = 259
BAD_VALUE = 260
BAD_GZIP = 261
SKIPPED_BYTES = 262  # bytes of the messages skipped for their length or type
N_COUNTS = 263
BAD_NAMES = {BAD_UNKNOWN_TYPE: "unknown_type", BAD_LENGTH: "bad_length",
             BAD_TRUNCATED: "truncated", BAD_LOCATE: "unknown_locate", BAD_VALUE: "bad_value",
             BAD_GZIP: "gzip_error"}

NO_SYMBOL = -1
N_LOCATES = 1 << 16

_LENGTHS = np.zeros(256, np.int64)  # 0: not an ITCH 5.0 type
for _t, _n in LENGTH.items():
    _LENGTHS[ord(_t)] = _n

_EMITS = np.zeros(256, np.bool_)  # types that become an event
for _t in "AFEXDUPQCSHB":
    _EMITS[ord(_t)] = True

# Offsets the kernels read; every one comes from MESSAGES.
_LOCATE = _offset("A", "stock_locate")
_TIMESTAMP = _offset("A", "timestamp")
_S_CODE = _offset("S", "event_code")
_R_STOCK = _offset("R", "stock")
_H_STATE = _offset("H", "trading_state")
_A_REF = _offset("A", "order_ref")
_A_SIDE = _offset("A", "side")
_A_SHARES = _offset("A", "shares")
_A_PRICE = _offset("A", "price")
assert fields("F")[:-1] == fields("A")  # F is A plus attribution
_E_REF = _offset("E", "order_ref")
_E_SHARES = _offset("E", "shares")
_C_REF = _offset("C", "order_ref")
_C_SHARES = _offset("C", "shares")
_C_PRINTABLE = _offset("C", "printable")
_C_PRICE = _offset("C", "price")
_X_REF = _offset("X", "order_ref")
_X_SHARES = _offset("X", "shares")
_D_REF = _offset("D", "order_ref")
_U_REF = _offset("U", "order_ref")
_U_NEW_REF = _offset("U", "new_order_ref")
_U_SHARES = _offset("U", "shares")
_U_PRICE = _offset("U", "price")
_P_REF = _offset("P", "order_ref")
_P_SIDE = _offset("P", "side")
_P_SHARES = _offset("P", "shares")
_P_PRICE = _offset("P", "price")
_Q_SHARES = _offset("Q", "shares")
_Q_PRICE = _offset("Q", "price")
_B_MATCH = _offset("B", "match_number")

_MAX_U32 = 0xFFFFFFFF


# ---------------------------------------------------------------------------
# kernels
#
# A message is read only once its whole length lies inside buf[:end] and
# matches its type's, so field reads need no further bounds checks.

@njit(cache=True, _nrt=False, inline="always")
def _u16(buf, p):
    return (np.int64(buf[p]) << 8) | np.int64(buf[p + 1])


@njit(cache=True, _nrt=False, inline="always")
def _u32(buf, p):
    return ((np.int64(buf[p]) << 24) | (np.int64(buf[p + 1]) << 16)
            | (np.int64(buf[p + 2]) << 8) | np.int64(buf[p + 3]))


@njit(cache=True, _nrt=False, inline="always")
def _u48(buf, p):
    return (_u16(buf, p) << 32) | _u32(buf, p + 2)


@njit(cache=True, _nrt=False, inline="always")
def _u64(buf, p):
    return (np.uint64(_u32(buf, p)) << np.uint64(32)) | np.uint64(_u32(buf, p + 4))


@njit(cache=True, _nrt=False, inline="always")
def _emit(e, typ, exch_ts, symbol, order_id, new_order_id, qty, price, side, flags):
    e["seq"] = 0
    e["exch_ts"] = exch_ts
    e["recv_ts"] = 0
    e["price"] = price
    e["order_id"] = order_id
    e["new_order_id"] = new_order_id
    e["qty"] = np.uint32(qty)
    e["symbol"] = np.uint32(symbol)
    e["venue"] = 0
    e["type"] = typ
    e["side"] = side
    e["flags"] = flags
    e["feed_ns"] = 0


@njit(cache=True, _nrt=False, inline="always")
def _side(byte):
    """SIDE_BID for 'B', SIDE_ASK for 'S', else 2 (not a side)."""
    return SIDE_BID if byte == 66 else (SIDE_ASK if byte == 83 else 2)


@njit(cache=True, _nrt=False, inline="always")
def _directory(buf, m, locate, locate_map, names, n_names):
    """Give a stock locate the next symbol id the first time an R names it, while
    fewer than n_names[1] symbols are named."""
    if locate_map[locate] == NO_SYMBOL and n_names[0] < n_names[1]:
        n = n_names[0]
        locate_map[locate] = n
        for j in range(8):
            names[n, j] = buf[m + _R_STOCK + j]
        n_names[0] = n + 1


@njit(cache=True, _nrt=False)
def parse(buf, start, end, locate_map, names, n_names, out, out_pos, max_out, counts, date_ns):
    """Turn the length-prefixed messages of buf[start:end] into EVENT records.

    Writes at most max_out events to out[out_pos:]; returns (bytes consumed,
    events written). Stops before a message that does not end by ``end`` (the
    caller appends the next chunk and calls again) and when out is full.
    ``locate_map`` (int64[N_LOCATES], NO_SYMBOL where unnamed), ``names``
    (uint8[N_LOCATES, 8]) and ``n_names`` (int64[2]: how many are named, and
    the most that may be) are the symbol map the R messages build; ``counts``
    (int64[N_COUNTS]) counts each valid message at its type byte and each
    skipped one at its BAD_* reason.
    """
    end = min(end, buf.shape[0])
    max_out = min(max_out, out.shape[0] - out_pos)
    p = start
    k = 0
    while p + 2 <= end and k < max_out:
        length = _u16(buf, p)
        m = p + 2
        if m + length > end:
            break
        p = m + length
        if length == 0:
            counts[BAD_LENGTH] += 1
            counts[SKIPPED_BYTES] += 2
            continue
        t = buf[m]
        expected = _LENGTHS[t]
        if expected == 0:
            counts[BAD_UNKNOWN_TYPE] += 1
            counts[SKIPPED_BYTES] += 2 + length
            continue
        if length != expected:
            counts[BAD_LENGTH] += 1
            counts[SKIPPED_BYTES] += 2 + length
            continue
        locate = _u16(buf, m + _LOCATE)
        if t == 82:  # R
            counts[t] += 1
            _directory(buf, m, locate, locate_map, names, n_names)
            continue
        if not _EMITS[t]:
            counts[t] += 1  # recognised; carries nothing the engine takes
            continue
        symbol = locate_map[locate]
        if symbol == NO_SYMBOL:
            if locate == 0 and (t == 83 or t == 72 or t == 66):
                symbol = 0  # market-wide status
            else:
                counts[BAD_LOCATE] += 1
                continue
        ts = _u48(buf, m + _TIMESTAMP) + date_ns
        e = out[out_pos + k]
        if t == 65 or t == 70:  # A, F
            side = _side(buf[m + _A_SIDE])
            if side > SIDE_ASK:
                counts[BAD_VALUE] += 1
                continue
            _emit(e, EV_ADD, ts, symbol, _u64(buf, m + _A_REF), 0, _u32(buf, m + _A_SHARES),
                  _u32(buf, m + _A_PRICE), side, 0)
        elif t == 68:  # D
            _emit(e, EV_DELETE, ts, symbol, _u64(buf, m + _D_REF), 0, 0, 0, 0, 0)
        elif t == 85:  # U
            _emit(e, EV_REPLACE, ts, symbol, _u64(buf, m + _U_REF), _u64(buf, m + _U_NEW_REF),
                  _u32(buf, m + _U_SHARES), _u32(buf, m + _U_PRICE), 0, 0)
        elif t == 69:  # E
            _emit(e, EV_EXECUTE, ts, symbol, _u64(buf, m + _E_REF), 0,
                  _u32(buf, m + _E_SHARES), 0, 0, 0)
        elif t == 88:  # X
            _emit(e, EV_CANCEL, ts, symbol, _u64(buf, m + _X_REF), 0,
                  _u32(buf, m + _X_SHARES), 0, 0, 0)
        elif t == 67:  # C
            printable = buf[m + _C_PRINTABLE]
            if printable != 89 and printable != 78:
                counts[BAD_VALUE] += 1
                continue
            _emit(e, EV_EXECUTE_PRICE, ts, symbol, _u64(buf, m + _C_REF), 0,
                  _u32(buf, m + _C_SHARES), _u32(buf, m + _C_PRICE), 0,
                  FLAG_NON_PRINTABLE if printable == 78 else 0)
        elif t == 80:  # P
            side = _side(buf[m + _P_SIDE])
            if side > SIDE_ASK:
                counts[BAD_VALUE] += 1
                continue
            _emit(e, EV_TRADE, ts, symbol, _u64(buf, m + _P_REF), 0, _u32(buf, m + _P_SHARES),
                  _u32(buf, m + _P_PRICE), side, 0)
        elif t == 81:  # Q
            shares = _u64(buf, m + _Q_SHARES)
            if shares > _MAX_U32:
                counts[BAD_VALUE] += 1
                continue
            if shares == 0:
                counts[t] += 1
                continue
            _emit(e, EV_TRADE, ts, symbol, 0, 0, shares, _u32(buf, m + _Q_PRICE), SIDE_BID, 0)
        elif t == 83:  # S
            _emit(e, EV_STATUS, ts, symbol, t, 0, buf[m + _S_CODE], 0, 0, 0)
        elif t == 72:  # H
            _emit(e, EV_STATUS, ts, symbol, t, 0, buf[m + _H_STATE], 0, 0, 0)
        else:  # B
            match = _u64(buf, m + _B_MATCH)
            if match > np.uint64(0x7FFFFFFFFFFFFFFF):
                counts[BAD_VALUE] += 1
                continue
            _emit(e, EV_STATUS, ts, symbol, t, 0, 0, np.int64(match), 0, 0)
        counts[t] += 1
        k += 1
    return p - start, k


@njit(cache=True, _nrt=False)
def scan(buf, start, end, locate_map, names, n_names, until_orders):
    """Walk buf[start:end] and take only the R messages; return (bytes consumed,
    whether it stopped at an order: the first add order, with ``until_orders``)."""
    end = min(end, buf.shape[0])
    p = start
    r_length = _LENGTHS[82]
    while p + 2 <= end:
        length = _u16(buf, p)
        m = p + 2
        if m + length > end:
            break
        if until_orders and length > 0 and (buf[m] == 65 or buf[m] == 70):  # A, F
            return p - start, True
        p = m + length
        if length == r_length and buf[m] == 82:
            _directory(buf, m, _u16(buf, m + _LOCATE), locate_map, names, n_names)
    return p - start, False


# ---------------------------------------------------------------------------
# files

class _Stream:
    """Bytes of a plain or gzip ITCH file, buffered so that the unparsed tail of
    one chunk and the next chunk lie contiguous in ``buf[pos:fill]``."""

    def __init__(self, path, chunk_bytes):
        if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, (int, np.integer)) \
                or chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be a positive integer, got {chunk_bytes!r}")
        raw = open(path, "rb")
        try:
            gzipped = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
        except BaseException:
            raw.close()
            raise
        self.file = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
        self._raw = raw
        self.path = path
        self.total = 0  # bytes read from the file (uncompressed) into buf
        self.chunk_bytes = int(chunk_bytes)
        self.buf = np.empty(self.chunk_bytes + MAX_MESSAGE, np.uint8)
        self.pos = 0
        self.fill = 0
        self.ended = False
        self.gzip_error = False

    def refill(self):
        """Keep buf[pos:fill], read up to chunk_bytes more after it; False at the end."""
        if self.ended:
            return False
        rest = self.fill - self.pos
        self.buf[:rest] = self.buf[self.pos:self.fill]
        self.pos, self.fill = 0, rest
        want = min(self.chunk_bytes, self.buf.size - rest)
        got = self._read_into(memoryview(self.buf)[rest:rest + want])
        if not got:
            self.ended = True
            self.close()
            return False
        self.fill += got
        self.total += got
        return True

    def _read_into(self, view):
        """Fill what the file gives of view. A gzip stream is read a piece at a time, so
        that what inflates before a damaged or cut-off part is kept."""
        if self.file is self._raw:
            try:
                return self.file.readinto(view)
            except OSError:
                self.gzip_error = True  # (counted with a damaged gzip stream, as before)
                return 0
        got = 0
        while got < len(view):
            try:
                piece = self.file.read1(len(view) - got)
            except (EOFError, OSError, zlib.error):
                self.gzip_error = True
                break
            if not piece:
                break
            view[got:got + len(piece)] = piece
            got += len(piece)
        return got

    def consumed(self):
        """Bytes of the file parsed or skipped so far."""
        return self.total - (self.fill - self.pos)

    def close(self):
        self.file.close()
        self._raw.close()


def _new_symbol_map(limit=N_LOCATES):
    return (np.full(N_LOCATES, NO_SYMBOL, np.int64), np.zeros((N_LOCATES, 8), np.uint8),
            np.array([0, limit], np.int64))


def _names(names, n_names):
    return [bytes(names[i]).decode("latin-1").strip(" ")
            for i in range(int(n_names[0]))]


def scan_symbols(path, chunk_bytes=1 << 22, whole=False):
    """Names of a file's symbols in id order: the stock of each distinct stock
    locate's first R, spaces removed.

    NASDAQ sends the whole stock directory at the start of the day, before
    any order: the scan stops at the first add order, so it costs the
    directory, not the day (a gzip day takes tens of seconds to inflate).
    ``whole`` reads on to the end for R messages sent later in the day.

    >>> scan_symbols("day.itch")
    ['AAPL', 'MSFT']
    """
    locate_map, names, n_names = _new_symbol_map()
    stream = _Stream(path, chunk_bytes)
    try:
        while stream.refill():
            used, stopped = scan(stream.buf, stream.pos, stream.fill, locate_map, names, n_names,
                                 not whole)
            stream.pos += used
            if stopped:
                break
    finally:
        stream.close()
    return _names(names, n_names)


class ItchReader:
    """Stream an ITCH 5.0 file (plain or gzip, told by its magic bytes) as EVENT records.

    ``date_ns`` is the midnight of the file's day in ns since the Unix epoch;
    each event's exch_ts is it plus the message's timestamp. R messages name
    at most ``max_symbols`` symbols (an engine holds those ``scan_symbols``
    found); the orders of a stock named past that count as unknown_locate.

    >>> out = np.zeros(1024, layout.EVENT)
    >>> reader = ItchReader("day.itch.gz", date_ns=1_767_330_000_000_000_000)
    >>> n = reader.read(out)           # n < len(out) only at the end of the file
    >>> reader.symbols[:2], reader.counts["add_order"], reader.bad["unknown_locate"]
    """

    def __init__(self, path, date_ns=0, chunk_bytes=1 << 20, max_symbols=N_LOCATES):
        if isinstance(date_ns, bool) or not isinstance(date_ns, (int, np.integer)) \
                or not 0 <= date_ns < 1 << 62:
            raise ValueError(f"date_ns must be an integer in 0..2**62, got {date_ns!r}")
        self.date_ns = int(date_ns)
        self._stream = _Stream(path, chunk_bytes)
        self._locate_map, self._names, self._n_names = _new_symbol_map(max_symbols)
        self._counts = np.zeros(N_COUNTS, np.int64)
        self.eof = False

    def read(self, out):
        """Fill ``out`` (a 1-D layout.EVENT array) from the start; return the events written.

        Fewer than len(out) only once the file is exhausted; ``eof`` then reads True.
        """
        if not isinstance(out, np.ndarray) or out.dtype != EVENT or out.ndim != 1:
            raise TypeError("out must be a 1-D array of layout.EVENT")
        stream = self._stream
        n = 0
        while n < out.size and not self.eof:
            used, k = parse(stream.buf, stream.pos, stream.fill, self._locate_map, self._names,
                            self._n_names, out, n, out.size - n, self._counts, self.date_ns)
            stream.pos += used
            n += k
            if n < out.size and not stream.refill():
                if stream.pos < stream.fill:
                    self._counts[BAD_TRUNCATED] += 1
                    self._counts[SKIPPED_BYTES] += stream.fill - stream.pos
                    stream.pos = stream.fill
                if stream.gzip_error:
                    self._counts[BAD_GZIP] += 1
                self.eof = True
        return n

    @property
    def symbols(self):
        """Names of the symbols named so far, in id order."""
        return _names(self._names, self._n_names)

    @property
    def counts(self):
        """Valid messages read so far, by message name (``NAME``)."""
        return {NAME[t]: int(self._counts[ord(t)]) for t in MESSAGES}

    @property
    def bad(self):
        """Messages skipped so far, by reason."""
        return {name: int(self._counts[i]) for i, name in BAD_NAMES.items()}

    @property
    def skipped_bytes(self):
        """Bytes skipped so far: messages of a wrong length or unknown type, each as long
        as its length prefix says, and a message cut off by the end of the file."""
        return int(self._counts[SKIPPED_BYTES])

    @property
    def read_bytes(self):
        """Bytes of the (uncompressed) file taken so far."""
        return self._stream.consumed()

    def damage(self):
        """A line on what was skipped, for a user who expects a clean file; None if nothing."""
        bad = {k: v for k, v in self.bad.items() if v}
        if not self.skipped_bytes and not bad.get("gzip_error"):
            return None
        said = []
        if self.skipped_bytes:
            share = self.skipped_bytes / max(self.read_bytes, 1)
            said.append(f"skipped {self.skipped_bytes:,} of {self.read_bytes:,} bytes "
                        f"({share:.1%}) in messages of a wrong length or unknown type or cut "
                        f"off (a wrong length prefix skips what it announces)")
        if bad.get("gzip_error"):
            said.append(f"its gzip stream is damaged after {self.read_bytes:,} bytes: the "
                        f"rest could not be read")
        reasons = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in bad.items())
        return f"{self._stream.path}: {'; '.join(said)}; bad messages: {reasons}"

    def close(self):
        self._stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
