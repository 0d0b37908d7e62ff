"""MoldUDP64 framing, the gap tracker, and publisher -> subscriber on the loopback interface."""
import random
import socket
import threading

import numpy as np
import pytest

from shmengine import layout as L
from shmengine import mold
from shmengine.market import new_market, symbol_names
from shmengine.multicast import (NetError, Publisher, RetransmitServer, Subscriber, fetch_names,
                                 fetch_stream)

SESSION = b"TEST000001"


@pytest.fixture(scope="module")
def events():
    return new_market(100, 2, seed=11).generate(3000, seq0=0)


def read_all(tracker, size=10_000):
    out = np.empty(size, L.EVENT)
    n = tracker.read(out)
    return out[:n]


def first_seqs(packets):
    return [mold.decode_packet(p).seq for p in packets]


# ---- codec ---------------------------------------------------------------------------

@pytest.mark.parametrize("mtu", [200, 1500, 9000])
def test_round_trip(events, mtu):
    packets = mold.encode_packets(events, SESSION, mtu)
    per = mold.messages_per_packet(mtu)
    assert len(packets) == -(-len(events) // per)
    got = []
    for p in packets:
        assert len(p) <= mtu - mold.IP_UDP_HEADERS
        d = mold.decode_packet(p)
        assert d.session == SESSION
        assert d.seq == int(d.events[0]["seq"]) + 1
        assert d.count == len(d.events) <= per
        assert int.from_bytes(p[mold.HEADER_LEN:mold.HEADER_LEN + 2], "big") == L.EVENT.itemsize
        got.append(d.events)
    got = np.concatenate(got)
    assert got.tobytes() == events.tobytes()


def test_pack_starts_a_packet_at_every_break_in_seq(events):
    picked = np.concatenate([events[0:5], events[10:12], events[40:41]])
    raw = picked.view(np.uint8).reshape(-1, mold.MESSAGE_LEN)
    out = np.empty(4096, np.uint8)
    lens = np.empty(16, np.uint32)
    session = np.frombuffer(SESSION, np.uint8).copy()
    packets, done, breaks = mold.pack(raw, 0, len(picked), session, 100, out, lens)
    assert (packets, done, breaks) == (3, len(picked), 2)
    decoded = [mold.decode_packet(out[e - n:e].tobytes())
               for e, n in zip(np.cumsum(lens[:3]), lens[:3])]
    assert [(d.seq, d.count) for d in decoded] == [(1, 5), (11, 2), (41, 1)]
    assert mold.consecutive(raw[:5], 0) and not mold.consecutive(raw, 0)


def test_pack_stops_when_the_buffer_is_full(events):
    raw = events.view(np.uint8).reshape(-1, mold.MESSAGE_LEN)
    out = np.empty(mold.HEADER_LEN + 3 * mold.BLOCK_LEN + 10, np.uint8)
    lens = np.empty(4, np.uint32)
    session = np.frombuffer(SESSION, np.uint8).copy()
    assert mold.pack(raw, 7, 100, session, 10, out, lens) == (1, 3, 0)
    d = mold.decode_packet(out[:lens[0]].tobytes())
    assert d.seq == 8 and d.events.tobytes() == events[7:10].tobytes()


def test_control_and_request_packets():
    hb = mold.encode_control(SESSION, 42, mold.HEARTBEAT)
    assert len(hb) == mold.HEADER_LEN
    assert mold.decode_packet(hb)[:3] == (SESSION, 42, 0)
    req = mold.encode_request("AB", 7, 300)
    assert req[:10] == b"AB        " and mold.decode_request(req) == (b"AB        ", 7, 300)
    assert mold.decode_request(req + b"x") is None
    assert mold.decode_request(mold.encode_control(SESSION, 7, 0)) is None
    assert mold.decode_request(mold.encode_control(SESSION, 0, 5)) is None
    with pytest.raises(ValueError):
        mold.encode_request(SESSION, 1, 70_000)
    with pytest.raises(ValueError):
        mold.session_bytes("ELEVEN_CHARS")


def test_decode_names_what_is_wrong(events):
    p = mold.encode_packets(events[:3], SESSION)[0]
    with pytest.raises(mold.MoldError, match="shorter"):
        mold.decode_packet(p[:10])
    with pytest.raises(mold.MoldError, match="truncated"):
        mold.decode_packet(p[:-1])
    with pytest.raises(mold.MoldError, match="garbage"):
        mold.decode_packet(p + b"\0")


# ---- gap tracker ---------------------------------------------------------------------

def test_any_order_with_duplicates_delivers_each_once_in_order(events):
    packets = mold.encode_packets(events, SESSION, 600)
    rng = random.Random(3)
    dups = rng.sample(range(len(packets)), 20)
    stream = packets + [packets[i] for i in dups]
    rng.shuffle(stream)
    t = mold.GapTracker()
    got = []
    for p in stream:
        t.feed(p)
        got.append(read_all(t))
    got = np.concatenate(got)
    assert got.tobytes() == events.tobytes()
    c = t.counters
    per = mold.messages_per_packet(600)
    assert c["packets"] == len(stream)
    assert c["messages"] == len(events)
    assert c["duplicates"] == sum(mold.decode_packet(packets[i]).count for i in dups)
    assert c["late"] > 0 and c["gaps"] > 0
    assert c["duplicates"] <= 20 * per
    assert t.next_seq == len(events) and t.backlog == 0


def test_gaps_are_requested_retried_and_filled(events):
    packets = mold.encode_packets(events, SESSION)
    lost = {2, 3, 9}
    t = mold.GapTracker(request_timeout=1.0, retries=5)
    for i, p in enumerate(packets[:12]):
        if i not in lost:
            t.feed(p)
    seqs = first_seqs(packets)
    counts = [mold.decode_packet(p).count for p in packets]
    head = read_all(t)
    assert head.tobytes() == events[:seqs[2] - 1].tobytes()
    want = [(seqs[2], counts[2] + counts[3]), (seqs[9], counts[9])]
    assert t.requests(now=100.0) == want
    assert t.requests(now=100.5) == []               # asked already, not yet timed out
    t.feed(packets[12])
    t.feed(packets[14])                               # a new gap: packet 13
    assert t.requests(now=100.6) == [(seqs[13], counts[13])]
    assert t.requests(now=101.1) == want + [(seqs[13], counts[13])]  # timed out: all again
    assert t.counters["requests"] == 6
    for i in (9, 2, 13, 3):
        t.feed(packets[i], retransmitted=True)
    t.feed(packets[9], retransmitted=True)
    rest = read_all(t)
    assert np.concatenate([head, rest]).tobytes() == events[:seqs[15] - 1].tobytes()
    c = t.counters
    assert c["retransmissions"] == 5 and c["gaps"] == 3 and c["duplicates"] == counts[9]
    assert t.requests(now=200.0) == []


def test_a_gap_nobody_fills_is_given_up_and_counted_lost(events):
    packets = mold.encode_packets(events, SESSION)
    t = mold.GapTracker(request_timeout=0.1, retries=3)
    t.feed(packets[0])
    t.feed(packets[2])
    assert len(read_all(t)) == mold.decode_packet(packets[0]).count
    asked = [t.requests(now=i * 0.2) for i in range(4)]
    assert all(a for a in asked[:3]) and asked[3] == []
    missing = mold.decode_packet(packets[1]).count
    assert t.counters["lost"] == missing
    assert read_all(t).tobytes() == mold.decode_packet(packets[2]).events.tobytes()


def test_heartbeat_reveals_a_lost_tail_and_end_of_session(events):
    packets = mold.encode_packets(events[:100], SESSION)
    t = mold.GapTracker()
    for p in packets[:-1]:
        t.feed(p)
    assert len(read_all(t)) == 100 - mold.decode_packet(packets[-1]).count
    assert t.requests(now=0.0) == []
    t.feed(mold.encode_control(SESSION, 101, mold.HEARTBEAT))
    seq, count = mold.decode_packet(packets[-1])[1:3]
    assert t.requests(now=1.0) == [(seq, count)] and t.counters["gaps"] == 1
    t.feed(mold.encode_control(SESSION, 101, mold.END_OF_SESSION))
    assert not t.ended
    t.feed(packets[-1], retransmitted=True)
    assert len(read_all(t)) == count and t.ended
    assert t.counters["heartbeats"] == 2


def test_symbols_filter_keeps_tracking_every_seq(events):
    mine = {3, 17, 42, 99}
    t = mold.GapTracker(symbols=mine)
    for p in mold.encode_packets(events, SESSION):
        t.feed(p)
    got = read_all(t)
    want = events[np.isin(events["symbol"], list(mine))]
    assert len(want) > 0 and got.tobytes() == want.tobytes()
    assert t.next_seq == len(events)


def test_bad_datagrams_are_counted_never_raised(events):
    packets = mold.encode_packets(events[:200], SESSION)
    good = packets[0]
    t = mold.GapTracker(session=SESSION)
    other = mold.encode_packets(events[:200], b"OTHER")
    oversized = good[:18] + (1000).to_bytes(2, "big") + good[20:]
    overrun = bytearray(good)
    overrun[mold.HEADER_LEN:mold.HEADER_LEN + 2] = (5000).to_bytes(2, "big")
    short_msg = bytearray(good)
    short_msg[mold.HEADER_LEN:mold.HEADER_LEN + 2] = (10).to_bytes(2, "big")
    wrong_seq = good[:10] + (500).to_bytes(8, "big") + good[18:]
    bad = {
        "wrong_session": [other[0], other[1]],
        "oversized": [oversized],
        "truncated": [good[:-7], mold.encode_packets(events[:1], SESSION)[0][:-5], bytes(overrun)],
        "garbage": [b"", b"x" * 5, good + b"trailing", bytes(short_msg), wrong_seq,
                    mold.encode_control(SESSION, 5, 0) + b"!", mold.encode_control(SESSION, 0, 3)],
    }
    for p in packets[1:]:
        t.feed(p)
    for kind in bad.values():
        for p in kind:
            t.feed(p)
    assert t.requests(now=0.0) == [(1, mold.decode_packet(good).count)]
    t.feed(good, retransmitted=True)
    assert read_all(t).tobytes() == events[:200].tobytes()
    c = t.counters
    for kind, datagrams in bad.items():
        assert c[kind] == len(datagrams), kind
    assert c["messages"] == 200 and c["duplicates"] == 0


def test_random_datagrams_are_all_dropped_and_counted():
    rng = np.random.default_rng(5)
    t = mold.GapTracker(session=SESSION)
    drops = ("wrong_session", "oversized", "truncated", "garbage")
    for i in range(300):
        body = rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes()
        t.feed(SESSION + body if i % 2 else body)
    c = t.counters
    assert sum(c[k] for k in drops) == c["packets"] == 300
    assert c["wrong_session"] < 300 and c["messages"] == 0
    assert read_all(t).size == 0


def test_first_packet_fixes_the_session_and_a_live_join_starts_there(events):
    packets = mold.encode_packets(events, SESSION)
    t = mold.GapTracker(start=None)
    assert t.session is None and t.next_seq == -1
    t.feed(packets[5])
    t.feed(mold.encode_packets(events, b"LATER")[6])
    t.feed(packets[6])
    assert t.session == SESSION
    seq = mold.decode_packet(packets[5]).seq
    end = mold.decode_packet(packets[7]).seq - 1
    assert read_all(t).tobytes() == events[seq - 1:end].tobytes()
    assert t.requests(now=0.0) == [] and t.counters["wrong_session"] == 1


def test_beyond_the_window_is_dropped_then_requested(events):
    packets = mold.encode_packets(events[:400], SESSION)
    t = mold.GapTracker(window=64)
    for p in packets[1:]:
        t.feed(p)
    c = t.counters
    first = mold.decode_packet(packets[0]).count
    assert c["beyond_window"] > 0 and c["messages"] + c["beyond_window"] == 400 - first
    got = []
    for now in range(100):
        for seq, count in t.requests(now=float(now)):
            assert count <= 64
            for p in mold.encode_packets(events[seq - 1:seq - 1 + count], SESSION):
                t.feed(p, retransmitted=True)
        got.append(read_all(t))
        if t.backlog == 0:
            break
    assert np.concatenate(got).tobytes() == events[:400].tobytes()


def test_window_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        mold.GapTracker(window=1000)


# ---- publisher -> subscriber over loopback multicast --------------------------------

LOOPBACK = "127.0.0.1"


def _group():
    return f"239.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


@pytest.fixture(scope="module")
def loopback_multicast():
    """Skip unless a datagram sent to a group through lo comes back to a member on lo."""
    group = _group()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind((group, 0))
        rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                      socket.inet_aton(group) + socket.inet_aton(LOOPBACK))
        rx.settimeout(1.0)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LOOPBACK))
        tx.sendto(b"probe", (group, rx.getsockname()[1]))
        rx.recv(16)
    except OSError as e:
        pytest.skip(f"multicast through the loopback interface does not work here: {e}")
    finally:
        rx.close()
        tx.close()


def _collect(sub, sink, stop):
    out = np.empty(1000, L.EVENT)
    while not sub.ended and not stop.is_set():
        n = sub.read(out, timeout=0.05)
        sink.append(out[:n].copy())


def test_publisher_to_subscribers_with_retransmission(loopback_multicast):
    """Two subscribers (all symbols, a subset) recover a skipped stretch and a late start."""
    events = new_market(100, 2, seed=5).generate(40_000, seq0=0)
    group = _group()
    journal = lambda seq, count: events[seq:seq + count]  # noqa: E731
    mine = set(range(0, 100, 3))
    stop = threading.Event()
    with RetransmitServer(journal, LOOPBACK, 0, session=SESSION) as server, \
            Subscriber(group, 0, LOOPBACK, retransmit=server.address) as everyone, \
            Subscriber(group, everyone.port, LOOPBACK, retransmit=server.address,
                       symbols=mine) as some, \
            Publisher(group, everyone.port, LOOPBACK, session=SESSION, first_seq=1000) as pub:
        server.start()
        sinks = ([], [])
        readers = [threading.Thread(target=_collect, args=(s, sink, stop))
                   for s, sink in zip((everyone, some), sinks)]
        for r in readers:
            r.start()
        try:
            noise = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            noise.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LOOPBACK))
            for start in range(1000, len(events), 2000):
                chunk = events[start:start + 2000]
                if start == 21_000:
                    pub.next_seq += len(chunk)         # this stretch never goes out
                    continue
                pub.send(chunk)
                noise.sendto(b"not a mold packet", (group, pub.port))
                noise.sendto(mold.encode_packets(chunk[:30], b"ELSEWHERE")[0], (group, pub.port))
            noise.close()
            for _ in range(200):
                pub.end(repeat=1)
                for r in readers:
                    r.join(0.05)
                if not any(r.is_alive() for r in readers):
                    break
        finally:
            stop.set()
            for r in readers:
                r.join()
        got_all = np.concatenate(sinks[0])
        got_some = np.concatenate(sinks[1])
        assert everyone.ended and some.ended
        assert got_all.tobytes() == events.tobytes()
        assert got_some.tobytes() == events[np.isin(events["symbol"], list(mine))].tobytes()
        for sub in (everyone, some):
            c = sub.counters
            assert c["gaps"] >= 2 and c["requests"] >= 2 and c["retransmissions"] > 0, c
            assert c["garbage"] > 0 and c["wrong_session"] > 0 and c["lost"] == 0, c
        assert server.counters["replied_messages"] >= 3000


def test_late_subscriber_is_served_from_the_publisher_history(loopback_multicast):
    events = new_market(50, 2, seed=9).generate(5000, seq0=0)
    group = _group()
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("", 0))
    port = probe.getsockname()[1]
    probe.close()
    with Publisher(group, port, LOOPBACK, history=1 << 12) as pub, \
            RetransmitServer(pub, LOOPBACK, 0) as server:
        pub.send(events[:3000])
        assert pub.history(0, 10).tobytes() == events[:10].tobytes()
        assert pub.history(2990, 100).tobytes() == events[2990:3000].tobytes()
        server.start()
        with Subscriber(group, port, LOOPBACK, retransmit=server.address,
                        start=1000) as sub:
            pub.send(events[3000:])
            out = np.empty(len(events), L.EVENT)
            n = 0
            for _ in range(200):
                n += sub.read(out[n:], timeout=0.05)
                if n == 4000:
                    break
                pub.heartbeat()
            assert out[:n].tobytes() == events[1000:].tobytes()
            assert sub.counters["retransmissions"] > 0 and sub.next_seq == 5000
        assert pub.history(0, 10).size == 0                 # only the last 4096 are kept
        assert pub.history(900, 10).tobytes() == events[904:910].tobytes()


def test_publisher_refuses_a_broken_sequence(loopback_multicast):
    events = new_market(10, 1, seed=2).generate(100, seq0=0)
    with Publisher(_group(), 9, LOOPBACK) as pub:
        pub.send(events[:10])
        with pytest.raises(ValueError, match="seq 10"):
            pub.send(events[11:20])
        with pytest.raises(ValueError, match="seq 10"):
            pub.send(np.concatenate([events[10:12], events[13:20]]))
        assert pub.next_seq == 10 and pub.counters["messages"] == 10


# ---- the symbol directory ------------------------------------------------------------

def test_names_round_trip_a_packet_at_a_time():
    names = symbol_names(2000)
    got, seq = [], 1
    while True:
        packet = mold.encode_names(names, seq, mtu=576)
        assert len(packet) <= 576 - mold.IP_UDP_HEADERS
        at, part = mold.decode_names(packet)
        assert at == seq
        if part is None:
            break
        got += part
        seq += len(part)
    assert got == names and seq == len(names) + 1


@pytest.mark.parametrize("packet", [
    mold.encode_control(SESSION, 1, 1) + b"\x00\x03ABC",        # an event session
    mold.encode_control(mold.DIRECTORY_SESSION, 1, 2) + b"\x00\x03ABC",  # count too high
    mold.encode_control(mold.DIRECTORY_SESSION, 1, 1) + b"\x00\x05ABC",  # torn block
    mold.encode_control(mold.DIRECTORY_SESSION, 1, 1) + b"\x00\x00",     # empty name
    mold.encode_control(mold.DIRECTORY_SESSION, 1, 1) + b"\x00\x02A\n",  # not printable
    mold.encode_control(mold.DIRECTORY_SESSION, 1, 1) + b"\x00\x11" + b"A" * 17,  # too long
    mold.encode_control(mold.DIRECTORY_SESSION, 1, 0),                   # a heartbeat
    b"SYMBOLS",
])
def test_bad_directory_packets_are_refused(packet):
    with pytest.raises(mold.MoldError):
        mold.decode_names(packet)


def test_a_subscriber_fetches_the_names_through_loss_and_garbage():
    names = symbol_names(3000)
    server = RetransmitServer(lambda seq, count: np.empty(0, L.EVENT), session=SESSION,
                              names=names, mtu=576)
    port = server.address[1]
    # a relay between them that drops a third of the answers and adds garbage
    relay = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    relay.bind(("127.0.0.1", 0))
    rng = random.Random(5)
    stop = threading.Event()

    def forward():
        client = None
        relay.settimeout(0.05)
        while not stop.is_set():
            server.poll(0)
            try:
                data, addr = relay.recvfrom(65536)
            except socket.timeout:
                continue
            if addr[1] != port:  # a request: pass it on
                client = addr
                relay.sendto(data, ("127.0.0.1", port))
            elif rng.random() < 0.67:
                relay.sendto(data, client)
            else:
                relay.sendto(bytes(rng.getrandbits(8) for _ in range(40)), client)

    thread = threading.Thread(target=forward, daemon=True)
    thread.start()
    try:
        assert fetch_names(relay.getsockname(), timeout=20, retry=0.05) == names
        packets, seq = 1, 1  # the end of the directory, and one per packet of names
        while seq <= len(names):
            seq += len(mold.decode_names(mold.encode_names(names, seq, mtu=576))[1])
            packets += 1
        assert server.counters["directory"] > packets  # asked again after the losses
    finally:
        stop.set()
        thread.join()
        relay.close()
        server.close()


def test_a_subscriber_asks_what_the_stream_holds():
    stream = {"venues": 6, "symbols": 3000}
    assert mold.decode_stream(mold.encode_stream(stream)) == stream
    good = mold.encode_stream(stream)
    for bad in (good[:-1], good + b"x", b"SYMBOLS   " + good[10:], good[:20],
                mold.encode_control(mold.STREAM_SESSION, 1, 1) + b"\x00\x03[1]",
                mold.encode_control(mold.STREAM_SESSION, 1, 1) + b"\x00\x02{x"):
        with pytest.raises(mold.MoldError):
            mold.decode_stream(bad)
    server = RetransmitServer(lambda seq, count: np.empty(0, L.EVENT), session=SESSION,
                              names=["A"], stream=stream).start()
    try:
        assert fetch_stream(server.address, timeout=5, retry=0.05) == stream
        assert fetch_names(server.address, timeout=5, retry=0.05) == ["A"]
    finally:
        server.close()
    server = RetransmitServer(lambda seq, count: np.empty(0, L.EVENT), session=SESSION,
                              names=["A"]).start()
    try:  # one that was not told does not answer
        with pytest.raises(NetError, match="no stream description from 127.0.0.1"):
            fetch_stream(server.address, timeout=0.5, retry=0.1)
    finally:
        server.close()


def test_no_directory_within_the_wait_is_an_error():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))  # listens, never answers
    try:
        with pytest.raises(NetError, match="no symbol directory from 127.0.0.1"):
            fetch_names(sock.getsockname(), timeout=0.5, retry=0.1)
    finally:
        sock.close()
    # a server without names does not answer for them either
    server = RetransmitServer(lambda seq, count: np.empty(0, L.EVENT), session=SESSION).start()
    try:
        with pytest.raises(NetError):
            fetch_names(server.address, timeout=0.5, retry=0.1)
    finally:
        server.close()
