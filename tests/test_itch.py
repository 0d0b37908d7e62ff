"""The ITCH 5.0 parser and writer, checked against the specification's layouts
(written here as struct formats), a plain-Python decoder, the synthetic market
and the order-book kernel."""
import gzip
import os
import random
import struct
import subprocess
import sys
import tempfile

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, assert_same
from shmengine import book as B
from shmengine import itch
from shmengine import layout as L
from shmengine.itch_writer import (
    MARKET_DATE_NS, encode, every_type, synthetic_itch, write_itch, write_messages,
)
from shmengine.market import symbol_names

# Without the JIT the kernels run as Python: keep the streams short there.
SCALE = 20 if numba.config.DISABLE_JIT else 1

# NASDAQ TotalView-ITCH 5.0, section 1: each message as a big-endian struct
# (c: Alpha(1), H: 2-byte integer, 6s: the 6-byte timestamp, I: 4, Q: 8, ns: Alpha(n)).
SPEC = {
    "S": ">cHH6sc",
    "R": ">cHH6s8sccIcc2scccccIc",
    "H": ">cHH6s8scc4s",
    "Y": ">cHH6s8sc",
    "L": ">cHH6s4s8sccc",
    "V": ">cHH6sQQQ",
    "W": ">cHH6sc",
    "K": ">cHH6s8sIcI",
    "J": ">cHH6s8sIIII",
    "h": ">cHH6s8scc",
    "A": ">cHH6sQcI8sI",
    "F": ">cHH6sQcI8sI4s",
    "E": ">cHH6sQIQ",
    "C": ">cHH6sQIQcI",
    "X": ">cHH6sQI",
    "D": ">cHH6sQ",
    "U": ">cHH6sQQII",
    "P": ">cHH6sQcI8sIQ",
    "Q": ">cHH6sQ8sIQc",
    "B": ">cHH6sQ",
    "I": ">cHH6sQQc8sIIIcc",
    "N": ">cHH6s8sc",
    "O": ">cHH6s8scIIIQII",
}

# EVENT fields each event type takes from its message; the parser leaves the others 0.
CARRIED = {
    L.EV_ADD: ("order_id", "side", "qty", "price"),
    L.EV_EXECUTE: ("order_id", "qty"),
    L.EV_EXECUTE_PRICE: ("order_id", "qty", "price", "flags"),
    L.EV_CANCEL: ("order_id", "qty"),
    L.EV_DELETE: ("order_id",),
    L.EV_REPLACE: ("order_id", "new_order_id", "qty", "price"),
    L.EV_TRADE: ("order_id", "side", "qty", "price"),
    L.EV_STATUS: ("order_id", "qty", "price"),
}
ALWAYS = ("exch_ts", "symbol", "type")
DATE = 1_700_000_000_000_000_000


def read_all(path, date_ns=0, chunk_bytes=1 << 16, out_size=4096):
    """Every event of a file, through ItchReader; and the reader."""
    out = np.zeros(out_size, L.EVENT)
    parts = []
    with itch.ItchReader(path, date_ns=date_ns, chunk_bytes=chunk_bytes) as reader:
        while not reader.eof:
            n = reader.read(out)
            assert n == out_size or reader.eof
            parts.append(out[:n].copy())
    return np.concatenate(parts), reader


def frames(data):
    """Plain-Python split of a byte string into its complete length-prefixed messages."""
    out = []
    p = 0
    while p + 2 <= len(data):
        n = int.from_bytes(data[p:p + 2], "big")
        if p + 2 + n > len(data):
            break
        out.append(data[p + 2:p + 2 + n])
        p += 2 + n
    return out


def naive_events(data, date_ns):
    """Plain-Python decoder: the EVENT records a valid file should give, from SPEC."""
    locate_ids = {}
    rows = []
    for msg in frames(data):
        t = chr(msg[0])
        f = struct.unpack(SPEC[t], msg)
        locate, ts = f[1], date_ns + int.from_bytes(f[3], "big")
        if t == "R":
            locate_ids.setdefault(locate, len(locate_ids))
            continue
        if t not in "AFEXDUPQCSHB":
            continue
        symbol = locate_ids.get(locate, 0)
        row = dict(exch_ts=ts, symbol=symbol)
        side = {b"B": L.SIDE_BID, b"S": L.SIDE_ASK}
        if t in "AF":
            row.update(type=L.EV_ADD, order_id=f[4], side=side[f[5]], qty=f[6], price=f[8])
        elif t == "E":
            row.update(type=L.EV_EXECUTE, order_id=f[4], qty=f[5])
        elif t == "C":
            row.update(type=L.EV_EXECUTE_PRICE, order_id=f[4], qty=f[5], price=f[8],
                       flags=L.FLAG_NON_PRINTABLE if f[7] == b"N" else 0)
        elif t == "X":
            row.update(type=L.EV_CANCEL, order_id=f[4], qty=f[5])
        elif t == "D":
            row.update(type=L.EV_DELETE, order_id=f[4])
        elif t == "U":
            row.update(type=L.EV_REPLACE, order_id=f[4], new_order_id=f[5], qty=f[6], price=f[7])
        elif t == "P":
            row.update(type=L.EV_TRADE, order_id=f[4], side=side[f[5]], qty=f[6], price=f[8])
        elif t == "Q":
            if f[4] == 0:
                continue
            row.update(type=L.EV_TRADE, qty=f[4], price=f[6], side=L.SIDE_BID)
        elif t == "S":
            row.update(type=L.EV_STATUS, order_id=ord("S"), qty=f[4][0])
        elif t == "H":
            row.update(type=L.EV_STATUS, order_id=ord("H"), qty=f[5][0])
        else:
            row.update(type=L.EV_STATUS, order_id=ord("B"), price=f[4])
        rows.append(row)
    out = np.zeros(len(rows), L.EVENT)
    for i, row in enumerate(rows):
        for k, v in row.items():
            out[i][k] = v
    return out


def as_parsed(events):
    """What the parser gives back for events: only the fields ITCH carries."""
    out = np.zeros(len(events), L.EVENT)
    for name in ALWAYS:
        out[name] = events[name]
    for typ, names in CARRIED.items():
        sel = events["type"] == typ
        for name in names:
            out[name][sel] = events[name][sel]
    return out


# ---------------------------------------------------------------------------
# the descriptor against the specification

def test_every_type_has_the_specified_length_and_layout():
    assert set(itch.MESSAGES) == set(SPEC)
    for t, fmt in SPEC.items():
        assert itch.LENGTH[t] == struct.calcsize(fmt), t
        sizes = [f[2] for f in itch.fields(t)]
        spec_sizes = [struct.calcsize(">" + c) for c in _struct_codes(fmt[1:])]
        assert sizes == spec_sizes, t


def _struct_codes(fmt):
    codes, digits = [], ""
    for ch in fmt:
        if ch.isdigit():
            digits += ch
        else:
            codes.append(digits + ch)
            digits = ""
    return codes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_encode_matches_the_specified_struct(seed):
    for t, values in every_type(seed):
        raw = encode(t, **values)
        assert int.from_bytes(raw[:2], "big") == itch.LENGTH[t]
        packed = []
        for (name, _, size, kind), code in zip(itch.fields(t), _struct_codes(SPEC[t][1:])):
            if name == "message_type":
                packed.append(t.encode())
            elif name == "timestamp":
                packed.append(values[name].to_bytes(6, "big"))
            elif kind == "u":
                packed.append(values[name])
            else:
                packed.append(values[name].encode().ljust(size))
        assert raw[2:] == struct.pack(SPEC[t], *packed), t


# ---------------------------------------------------------------------------
# round trips

@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_every_type_round_trip(tmp_path, seed):
    messages = every_type(seed)
    path = tmp_path / "every.itch"
    write_messages(path, messages)
    events, reader = read_all(path, date_ns=DATE)
    assert all(v == 1 for v in reader.counts.values()), reader.counts
    assert not any(reader.bad.values()), reader.bad
    expected = naive_events(path.read_bytes(), DATE)
    assert len(expected) == len("AFEXDUPQCSHB")
    assert_same(events, expected, (), "every type")
    stock = dict(messages)["R"]["stock"]
    assert reader.symbols == [stock]
    assert itch.scan_symbols(path) == [stock]


def _with_status(events):
    """Synthetic events with an S, an H and a B status spliced in."""
    extra = np.zeros(3, L.EVENT)
    for k, (msg, code, number, at) in enumerate([("S", ord("X"), 0, 10), ("H", ord("T"), 0, 50),
                                                 ("B", 0, 123456789, 90)]):
        extra[k]["type"] = L.EV_STATUS
        extra[k]["order_id"] = ord(msg)
        extra[k]["qty"] = code
        extra[k]["price"] = number
        extra[k]["symbol"] = 0 if msg == "S" else 3
        extra[k]["exch_ts"] = events[at]["exch_ts"]
    return np.insert(events, [11, 51, 91], extra)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    d = tmp_path_factory.mktemp("itch")
    path = d / "synthetic.itch"
    events = synthetic_itch(path, 40_000 // SCALE, 25, seed=11)
    return path, events


def _body(events):
    """Parsed events without the writer's opening and closing system events."""
    return events[3:-3]


def test_synthetic_round_trip(synthetic):
    path, events = synthetic
    parsed, reader = read_all(path, date_ns=MARKET_DATE_NS)
    assert reader.symbols == symbol_names(25) == itch.scan_symbols(path)
    codes = [chr(c) for c in parsed["qty"][parsed["type"] == L.EV_STATUS]]
    assert codes == list("OSQMEC")
    assert_same(_body(parsed), as_parsed(events), (), "synthetic")
    assert not any(reader.bad.values()), reader.bad
    n_msgs = len(frames(path.read_bytes()))
    assert sum(reader.counts.values()) == n_msgs == len(events) + 6 + 25


def test_rewriting_the_parsed_events_gives_the_same_file(synthetic, tmp_path):
    path, events = synthetic
    parsed, _ = read_all(path, date_ns=MARKET_DATE_NS)
    again = tmp_path / "again.itch"
    write_itch(again, _body(parsed), symbol_names(25), MARKET_DATE_NS)
    assert again.read_bytes() == path.read_bytes()


def test_status_events_round_trip(tmp_path):
    events = _with_status(synthetic_itch(tmp_path / "s.itch", 200, 5, seed=3))
    path = tmp_path / "status.itch"
    write_itch(path, events, symbol_names(5), MARKET_DATE_NS)
    parsed, reader = read_all(path, date_ns=MARKET_DATE_NS)
    assert_same(_body(parsed), as_parsed(events), (), "with status")
    assert reader.counts["stock_trading_action"] == reader.counts["broken_trade"] == 1


def test_book_from_itch_equals_book_from_events(synthetic):
    """EV_STATUS is filtered out of the parsed stream: the book kernel does not
    take it yet (it counts it as a bad event)."""
    path, events = synthetic
    parsed, _ = read_all(path, date_ns=MARKET_DATE_NS)
    parsed = parsed[parsed["type"] != L.EV_STATUS]
    direct = B.new_book(np.arange(25), 1, 25)
    replay = B.new_book(np.arange(25), 1, 25)
    res_direct = B.apply(direct, events)
    res_replay = B.apply(replay, parsed)
    assert len(res_direct) > len(events) // 2
    assert_same(res_replay, res_direct, L.WALL_CLOCK_FIELDS + ("seq",), "results")
    assert B.live_orders(replay) == B.live_orders(direct) > 0
    assert np.array_equal(replay.counters, direct.counters)
    for s in range(25):
        a, b = B.consolidated(replay, s), B.consolidated(direct, s)
        for k in a:
            assert np.array_equal(a[k], b[k]), (s, k)
        assert B.last_trade(replay, s) == B.last_trade(direct, s)
        for side in (L.SIDE_BID, L.SIDE_ASK):
            for x, y in zip(B.venue_levels(replay, s, 0, side),
                            B.venue_levels(direct, s, 0, side)):
                assert np.array_equal(x, y)


def test_gzip_gives_the_same_events(synthetic, tmp_path):
    path, events = synthetic
    gz = tmp_path / "synthetic.bin"  # no .gz suffix: told by its magic bytes
    gz.write_bytes(gzip.compress(path.read_bytes()))
    plain, _ = read_all(path, date_ns=MARKET_DATE_NS)
    packed, reader = read_all(gz, date_ns=MARKET_DATE_NS)
    assert_same(packed, plain, (), "gzip")
    assert itch.scan_symbols(gz) == symbol_names(25)
    written = tmp_path / "w.itch"
    write_itch(written, events, symbol_names(25), MARKET_DATE_NS, gzip=True)
    assert written.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(written.read_bytes()) == path.read_bytes()


@pytest.mark.parametrize("chunk_bytes, out_size", [(7, 5), (1, 3), (64, 1), (333, 1000)])
def test_small_chunks_give_the_same_events(tmp_path, chunk_bytes, out_size):
    path = tmp_path / "small.itch"
    synthetic_itch(path, 3000 // SCALE, 7, seed=5)
    whole, _ = read_all(path, date_ns=DATE)
    pieces, reader = read_all(path, date_ns=DATE, chunk_bytes=chunk_bytes, out_size=out_size)
    assert_same(pieces, whole, (), f"chunks of {chunk_bytes}")
    assert not any(reader.bad.values())


# ---------------------------------------------------------------------------
# bad input

def _valid_day():
    msgs = [("S", dict(event_code="O")),
            ("R", dict(stock_locate=1, stock="AAA")),
            ("R", dict(stock_locate=2, stock="BBB"))]
    for i in range(1, 21):
        msgs.append(("A", dict(stock_locate=1 + i % 2, timestamp=i, order_ref=i, side="BS"[i % 2],
                               shares=100 * i, stock="AAA", price=10_000 * i)))
    return msgs


def _bytes(msgs):
    return b"".join(encode(t, **v) for t, v in msgs)


def test_truncated_last_message(tmp_path):
    data = _bytes(_valid_day())
    full, _ = read_all(_write(tmp_path, data))
    for cut in (1, 2, 10, itch.LENGTH["A"] + 1):
        events, reader = read_all(_write(tmp_path, data[:-cut]), chunk_bytes=16)
        assert reader.bad["truncated"] == 1
        assert_same(events, full[:-1], (), f"cut {cut}")


def test_length_that_disagrees_with_the_type_is_skipped(tmp_path):
    good = _bytes(_valid_day())
    wrong = encode("D", stock_locate=1, order_ref=1)
    wrong = (itch.LENGTH["D"] + 3).to_bytes(2, "big") + wrong[2:] + b"\0\0\0"
    short = (5).to_bytes(2, "big") + b"A\0\1\0\0"
    empty = b"\0\0"
    events, reader = read_all(_write(tmp_path, wrong + good + short + empty + good))
    assert reader.bad["bad_length"] == 3
    once, _ = read_all(_write(tmp_path, good))
    assert_same(events, np.concatenate([once, once]), (), "skipped")


def test_skipped_bytes_say_how_much_of_a_damaged_file_was_lost(tmp_path):
    good = _bytes(_valid_day())
    once, reader = read_all(_write(tmp_path, good))
    assert reader.skipped_bytes == 0 and reader.read_bytes == len(good)
    assert reader.damage() is None
    # a message whose length is not its type's: its 1,000 announced bytes go
    bogus = (1000).to_bytes(2, "big") + b"A" + bytes(999)
    data = good + bogus + good
    events, reader = read_all(_write(tmp_path, data), chunk_bytes=256)
    assert reader.bad["bad_length"] == 1 and len(events) == 2 * len(once)
    assert reader.skipped_bytes == 1002 and reader.read_bytes == len(data)
    line = reader.damage()
    assert "skipped 1,002 of" in line and "1 bad length" in line
    # a damaged length prefix: what it announces goes, good messages with it
    hit = bytearray(data)
    hit[len(good) - itch.LENGTH["A"] - 2] = 0x05  # the last add's prefix now says 1,316
    events, reader = read_all(_write(tmp_path, bytes(hit)), chunk_bytes=256)
    assert len(events) < 2 * len(once) and reader.skipped_bytes >= 1316 + 2
    assert reader.read_bytes == len(data) and reader.damage() is not None
    cut = good[:-5]  # the last message cut off: its bytes are skipped too
    _, reader = read_all(_write(tmp_path, cut), chunk_bytes=64)
    assert reader.bad["truncated"] == 1 and reader.skipped_bytes == itch.LENGTH["A"] + 2 - 5


def test_unknown_type_unknown_locate_and_bad_values(tmp_path):
    data = _bytes(_valid_day())
    extra = (b"\0\x05Z1234" + encode("D", stock_locate=9, order_ref=1)
             + encode("A", stock_locate=1, side="Z", shares=1, price=1)
             + encode("C", stock_locate=1, order_ref=1, shares=1, printable="?")
             + encode("Q", stock_locate=1, shares=1 << 40, price=1))
    events, reader = read_all(_write(tmp_path, data + extra))
    full, _ = read_all(_write(tmp_path, data))
    assert_same(events, full, (), "skipped")
    assert reader.bad == dict(unknown_type=1, bad_length=0, truncated=0, unknown_locate=1,
                              bad_value=3, gzip_error=0)


def test_market_wide_status_needs_no_directory(tmp_path):
    data = encode("S", event_code="Q") + encode("H", stock_locate=0, trading_state="H") \
        + encode("H", stock_locate=4, trading_state="T")
    events, reader = read_all(_write(tmp_path, data))
    assert events["type"].tolist() == [L.EV_STATUS, L.EV_STATUS]
    assert events["symbol"].tolist() == [0, 0]
    assert events["qty"].tolist() == [ord("Q"), ord("H")]
    assert reader.bad["unknown_locate"] == 1


def test_empty_file_and_not_itch(tmp_path):
    events, reader = read_all(_write(tmp_path, b""))
    assert len(events) == 0 and reader.eof and not any(reader.counts.values())
    assert itch.scan_symbols(_write(tmp_path, b"")) == []
    source = open(os.path.join(ROOT, "shmengine", "itch.py"), "rb").read()
    events, reader = read_all(_write(tmp_path, source), chunk_bytes=1000)
    assert len(events) <= len(frames(source))
    assert sum(reader.bad.values()) > 0


def test_damaged_gzip_is_counted(tmp_path):
    packed = gzip.compress(_bytes(_valid_day()))
    events, reader = read_all(_write(tmp_path, packed[:len(packed) // 2]), chunk_bytes=64)
    assert reader.bad["gzip_error"] == 1
    assert len(events) < 20
    assert "gzip stream is damaged after" in reader.damage()
    events, reader = read_all(_write(tmp_path, b"\x1f\x8b" + b"not gzip at all"))
    assert len(events) == 0 and reader.bad["gzip_error"] == 1


def test_a_cut_off_gzip_file_gives_what_inflates_before_the_cut(synthetic, tmp_path):
    path, _ = synthetic
    full, _ = read_all(path)
    packed = gzip.compress(path.read_bytes())
    cut = _write(tmp_path, packed[:len(packed) // 2])
    assert itch.scan_symbols(cut) == itch.scan_symbols(path)  # one 4 MB chunk: not all there
    events, reader = read_all(cut, chunk_bytes=1 << 20)
    assert len(full) // 4 < len(events) < len(full)
    assert_same(events, full[:len(events)], (), "before the cut")
    assert reader.bad["gzip_error"] == 1 and "gzip stream is damaged" in reader.damage()


def test_writer_refuses_what_itch_cannot_carry(tmp_path):
    events = synthetic_itch(tmp_path / "x.itch", 100, 3, seed=1)
    names = symbol_names(3)
    add = int(np.flatnonzero(events["type"] == L.EV_ADD)[0])
    cases = [("venue", 1, "one venue"), ("type", L.EV_CLEAR, "clear"),
             ("price", 1 << 32, "Price"), ("exch_ts", MARKET_DATE_NS - 1, "2\\*\\*48")]
    for field, value, message in cases:
        bad = events.copy()
        bad[add][field] = value
        with pytest.raises(ValueError, match=message):
            write_itch(tmp_path / "y.itch", bad, names, MARKET_DATE_NS)
    with pytest.raises(ValueError, match="2 names"):
        write_itch(tmp_path / "y.itch", events, names[:2], MARKET_DATE_NS)
    with pytest.raises(ValueError, match="printable ASCII"):
        write_itch(tmp_path / "y.itch", events, ["TOOLONGNAME", "B", "C"], MARKET_DATE_NS)


def test_reader_refuses_a_wrong_out_array(tmp_path):
    with itch.ItchReader(_write(tmp_path, _bytes(_valid_day()))) as reader:
        with pytest.raises(TypeError, match="layout.EVENT"):
            reader.read(np.zeros(4, L.RESULT))


def _write(tmp_path, data):
    path = tmp_path / f"f{random.getrandbits(32)}.itch"
    path.write_bytes(data)
    return path


# Reads past `end` cannot be seen from compiled code; without the JIT (the
# subprocess below) the kernels index numpy arrays, which raise beyond their
# length, and every buffer here is exactly as long as its data.

def _parse_all(data):
    buf = np.frombuffer(data, np.uint8).copy()
    locate_map, names, n_names = itch._new_symbol_map()
    counts = np.zeros(itch.N_COUNTS, np.int64)
    out = np.zeros(len(data) // 2 + 1, L.EVENT)  # room for every message
    used, k = itch.parse(buf, 0, len(buf), locate_map, names, n_names, out, 0, out.size,
                         counts, DATE)
    assert used == sum(2 + len(f) for f in frames(data))
    assert itch.scan(buf, 0, len(buf), locate_map, names, n_names, False) == (used, False)
    return k, counts


_TYPES = [ord(t) for t in itch.MESSAGES]


@st.composite
def message_like(draw):
    """A frame of an ITCH type or any byte, of about its type's length, random inside."""
    t = draw(st.sampled_from(_TYPES) | st.integers(0, 255))
    n = itch.LENGTH.get(chr(t), 1) + draw(st.sampled_from([0, 0, 0, -1, 1]))
    body = draw(st.binary(min_size=max(n - 1, 0), max_size=max(n - 1, 0)))
    return n.to_bytes(2, "big") + bytes([t]) + body if n > 0 else b"\0\0"


@settings(max_examples=300 // SCALE, deadline=None)
@given(st.binary(max_size=600) | st.lists(message_like(), max_size=12).map(b"".join),
       st.integers(0, 600))
def test_random_bytes_never_raise(data, cut):
    data = data[:cut]
    k, counts = _parse_all(data)
    assert k <= len(frames(data))
    assert counts[:256].sum() + counts[256:itch.SKIPPED_BYTES].sum() == len(frames(data))


_VALID = _bytes(_valid_day()) + b"".join(encode(t, **v) for t, v in every_type(9)[1:])


@settings(max_examples=300 // SCALE, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), max_size=8),
       st.integers(0, len(_VALID)), st.integers(1, 50))
def test_corrupted_files_never_raise(changes, cut, chunk_bytes):
    data = bytearray(_VALID)
    for at, value in changes:
        data[at] = value
    data = bytes(data[:cut])
    k, _ = _parse_all(data)
    assert k <= len(frames(data))
    if data[:2] == b"\x1f\x8b":
        return  # now reads as a damaged gzip stream: test_damaged_gzip_is_counted
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c.itch")
        with open(path, "wb") as f:
            f.write(data)
        events, reader = read_all(path, chunk_bytes=chunk_bytes, out_size=7)
        assert len(events) == k
        assert reader.bad["truncated"] == (0 if sum(2 + len(f) for f in frames(data)) == len(data)
                                           else 1)


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="is itself the run without the JIT")
def test_no_read_past_the_end_without_jit():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          os.path.join(ROOT, "tests", "test_itch.py"), "-k",
                          "random_bytes or corrupted or truncated or length_that"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert " passed" in res.stdout


def _listed_late(path):
    """A day whose second stock is listed after the first orders, then traded."""
    def add(locate, ref, stock):
        return ("A", dict(stock_locate=locate, timestamp=ref, order_ref=ref, side="B",
                          shares=100, stock=stock, price=100_000))
    write_messages(path, [
        ("R", dict(stock_locate=7, timestamp=1, stock="EARLY")),
        add(7, 1, "EARLY"),
        ("R", dict(stock_locate=9, timestamp=3, stock="LATE")),
        add(9, 2, "LATE"), add(7, 3, "EARLY"),
    ])
    return path


def test_the_directory_scan_stops_at_the_first_order(tmp_path):
    path = _listed_late(tmp_path / "late.itch")
    assert itch.scan_symbols(path) == ["EARLY"]
    assert itch.scan_symbols(path, whole=True) == ["EARLY", "LATE"]
    # a reader holding only what the scan found leaves the late stock unnamed
    events, reader = read_all(path)
    assert reader.symbols == ["EARLY", "LATE"] and len(events) == 3
    with itch.ItchReader(path, max_symbols=1) as reader:
        out = np.zeros(16, L.EVENT)
        n = reader.read(out)
        assert reader.symbols == ["EARLY"] and n == 2 and (out["symbol"][:n] == 0).all()
        assert reader.bad["unknown_locate"] == 1 and reader.counts["stock_directory"] == 2
