"""MoldUDP64 framing of the engine's sequenced events, and the receiver's gap tracker.

A downstream packet is a 20-byte header, then message blocks::

    session   10 bytes   ASCII, space padded; names one run of sequence numbers
    sequence   8 bytes   big endian: sequence number of the first message
    count      2 bytes   big endian: messages in the packet
    blocks     count x (2-byte big-endian length, then that many bytes)

A count of 0 is a heartbeat and 0xFFFF the end of the session; both carry the
next sequence number the sender will use. A request packet, sent by a
receiver to a retransmission server, is session, sequence and a 2-byte count
of messages wanted; the answer is ordinary downstream packets, unicast.

The symbol directory: a request in session ``DIRECTORY_SESSION`` asks the
retransmission server for symbol names instead of events. Name i (the
engine's symbol id) is message i + 1 of that session, its block the name in
ASCII; the answer to (seq, count) is one packet of the names from seq on, as
many as fit, and past the last name an end-of-session packet whose sequence
number is the count of names plus one. A subscriber so learns the
publisher's names before its engine starts (``fetch_names`` in multicast).
A request in session ``STREAM_SESSION`` (sequence 1, count 1) asks what the
stream holds beyond names: the answer is one message of that session, a JSON
object (``{"venues": 4, "symbols": 1000}``), so that the subscriber's engine
is as wide as the publisher's (``fetch_stream``).

Messages here are ``layout.EVENT`` records exactly as in memory (64 bytes,
little endian). MoldUDP64 counts from 1, the engine from 0: the MoldUDP64
sequence number of an event is ``event.seq + 1``, and each message's own
``seq`` field must agree with its place in the packet.

``GapTracker`` takes datagrams in any order, with losses and duplicates, and
hands out the events in sequence order exactly once. It keeps a window of
``window`` events past the next one due; it says which ranges to ask for
again (at once for a new gap, again after ``request_timeout``, and after
``retries`` rounds without progress it gives the range up and counts it
``lost``). Whatever a datagram holds, it is counted, never raised on.

Example::

    import numpy as np
    from shmengine import layout, mold
    from shmengine.market import new_market
    events = new_market(10, 2, seed=1).generate(1000, seq0=0)
    packets = mold.encode_packets(events, b"S1")
    tracker = mold.GapTracker()
    for p in reversed(packets):
        tracker.feed(p)
    out = np.empty(1000, layout.EVENT)
    assert tracker.read(out) == 1000
"""
import json
from collections import namedtuple

import numpy as np
from numba import njit

from . import layout as L

SESSION_LEN = 10
HEADER_LEN = 20
REQUEST_LEN = 20
BLOCK_PREFIX = 2
MESSAGE_LEN = L.EVENT.itemsize
BLOCK_LEN = BLOCK_PREFIX + MESSAGE_LEN
HEARTBEAT = 0
END_OF_SESSION = 0xFFFF
MAX_REQUEST = 0xFFFE          # the count field is 2 bytes, and 0xFFFF means end of session
IP_UDP_HEADERS = 28           # IPv4 (no options) + UDP
DIRECTORY_SESSION = b"SYMBOLS   "  # a request for symbol names, not events
STREAM_SESSION = b"STREAM    "     # a request for the stream's venue and symbol counts
DEFAULT_MTU = 1500
SEQ_OFFSET = L.EVENT.fields["seq"][1]
SYMBOL_OFFSET = L.EVENT.fields["symbol"][1]

COUNTERS = ("packets", "messages", "gaps", "requests", "retransmissions", "duplicates",
            "late", "heartbeats", "wrong_session", "oversized", "truncated", "garbage",
            "beyond_window", "lost")
(C_PACKETS, C_MESSAGES, C_GAPS, C_REQUESTS, C_RETRANSMISSIONS, C_DUPLICATES, C_LATE,
 C_HEARTBEATS, C_WRONG_SESSION, C_OVERSIZED, C_TRUNCATED, C_GARBAGE, C_BEYOND_WINDOW,
 C_LOST) = range(len(COUNTERS))

# GapTracker state words (MoldUDP64 sequence numbers)
S_NEXT = 0         # next to deliver; 0 until the first packet when joining live
S_KNOWN_END = 1    # one past the highest sequence number known to exist
S_END = 2          # the end-of-session packet's sequence number, or -1
S_SESSION_SET = 3  # 1 once the session is fixed (given, or taken from the first packet)
S_HELD = 4         # messages in the window, not yet delivered
S_WORDS = 5

Packet = namedtuple("Packet", "session seq count events")


class MoldError(ValueError):
    """A datagram that is not a well-formed MoldUDP64 packet of EVENT messages."""


def session_bytes(session):
    """The 10-byte session field: ASCII, left aligned, space padded."""
    raw = session.encode("ascii") if isinstance(session, str) else bytes(session)
    if len(raw) > SESSION_LEN:
        raise ValueError(f"a MoldUDP64 session is at most {SESSION_LEN} bytes, got {raw!r}")
    return raw.ljust(SESSION_LEN, b" ")


def messages_per_packet(mtu=DEFAULT_MTU):
    """How many EVENT messages fit one packet on a link of this MTU."""
    n = (mtu - IP_UDP_HEADERS - HEADER_LEN) // BLOCK_LEN
    if n < 1:
        raise ValueError(f"MTU {mtu} is too small for one {MESSAGE_LEN}-byte message")
    return n


def _session_array(session):
    return np.frombuffer(session_bytes(session), np.uint8).copy()


def event_bytes(events):
    """The EVENT array as a (n, 64) uint8 view, the rows the kernels pack."""
    if events.dtype != L.EVENT:
        raise TypeError(f"expected an array of layout.EVENT, got {events.dtype}")
    return np.ascontiguousarray(events).view(np.uint8).reshape(-1, MESSAGE_LEN)


# ---- numba kernels -------------------------------------------------------------------

@njit(cache=True, inline="always")
def _put_be(buf, pos, value, nbytes):
    for i in range(nbytes):
        buf[pos + nbytes - 1 - i] = (value >> (8 * i)) & 0xFF


@njit(cache=True, inline="always")
def _get_be(buf, pos, nbytes):
    v = 0
    for i in range(nbytes):
        v = (v << 8) | np.int64(buf[pos + i])
    return v


@njit(cache=True, inline="always")
def _get_le(buf, pos, nbytes):
    v = 0
    for i in range(nbytes):
        v |= np.int64(buf[pos + i]) << (8 * i)
    return v


@njit(cache=True, nogil=True)
def pack(raw, first, count, session, per_packet, out, lens):
    """Pack raw[first:first + count] (EVENT bytes, one row each) into packets.

    Packets go end to end into out, their lengths into lens. A packet holds at
    most per_packet messages and only consecutive sequence numbers: a break in
    seq starts a new packet, so any selection of events is framed correctly.
    Stops when out or lens is full. Returns (packets, events packed, breaks).
    """
    packets = 0
    pos = 0
    start = 0
    in_packet = 0
    breaks = 0
    prev = np.int64(-1)
    i = 0
    while i < count:
        seq = _get_le(raw[first + i], SEQ_OFFSET, 8)
        if i > 0 and seq != prev + 1:
            breaks += 1
        room = pos + BLOCK_LEN <= out.shape[0]
        if in_packet > 0 and (in_packet == per_packet or seq != prev + 1 or not room):
            _put_be(out, start + SESSION_LEN + 8, in_packet, 2)
            lens[packets] = pos - start
            packets += 1
            in_packet = 0
        if in_packet == 0:
            if packets == lens.shape[0] or pos + HEADER_LEN + BLOCK_LEN > out.shape[0]:
                break
            start = pos
            for k in range(SESSION_LEN):
                out[pos + k] = session[k]
            _put_be(out, pos + SESSION_LEN, seq + 1, 8)
            pos += HEADER_LEN
        _put_be(out, pos, MESSAGE_LEN, 2)
        pos += BLOCK_PREFIX
        out[pos:pos + MESSAGE_LEN] = raw[first + i]
        pos += MESSAGE_LEN
        in_packet += 1
        prev = seq
        i += 1
    if in_packet > 0:
        _put_be(out, start + SESSION_LEN + 8, in_packet, 2)
        lens[packets] = pos - start
        packets += 1
    return packets, i, breaks


@njit(cache=True)
def consecutive(raw, seq):
    """True when the rows' seq fields run seq, seq + 1, ... with no break."""
    for i in range(raw.shape[0]):
        if _get_le(raw[i], SEQ_OFFSET, 8) != seq + i:
            return False
    return True


@njit(cache=True)
def _valid_blocks(d, length, seq, count, counters):
    """Check every block of a data packet before any is used; count what is wrong."""
    if count * BLOCK_PREFIX > length - HEADER_LEN:
        counters[C_OVERSIZED] += 1
        return False
    pos = HEADER_LEN
    for i in range(count):
        if pos + BLOCK_PREFIX > length:
            counters[C_TRUNCATED] += 1
            return False
        n = _get_be(d, pos, 2)
        pos += BLOCK_PREFIX
        if pos + n > length:
            counters[C_TRUNCATED] += 1
            return False
        if n != MESSAGE_LEN or _get_le(d, pos + SEQ_OFFSET, 8) != seq + i - 1:
            counters[C_GARBAGE] += 1
            return False
        pos += n
    if pos != length:
        counters[C_GARBAGE] += 1
        return False
    return True


@njit(cache=True)
def accept(dgrams, lens, n, retransmitted, session, state, window, have, counters):
    """Take n datagrams (rows of dgrams, lens[i] bytes each) into the window.

    retransmitted[i] != 0 marks one that came from the retransmission server.
    Messages below the next due or already held count as duplicates; those a
    window or more ahead are dropped (asked for again once the window gets
    there). Returns the number of new messages.
    """
    mask = window.shape[0] - 1
    slot = dgrams.shape[1]
    added = 0
    for j in range(n):
        d = dgrams[j]
        length = np.int64(lens[j])
        counters[C_PACKETS] += 1
        if retransmitted[j]:
            counters[C_RETRANSMISSIONS] += 1
        if length > slot:
            counters[C_TRUNCATED] += 1
            continue
        if length < HEADER_LEN:
            counters[C_GARBAGE] += 1
            continue
        if state[S_SESSION_SET]:
            same = True
            for k in range(SESSION_LEN):
                if d[k] != session[k]:
                    same = False
            if not same:
                counters[C_WRONG_SESSION] += 1
                continue
        seq = _get_be(d, SESSION_LEN, 8)
        count = _get_be(d, SESSION_LEN + 8, 2)
        if seq < 1:
            counters[C_GARBAGE] += 1
            continue
        control = count == HEARTBEAT or count == END_OF_SESSION
        if control:
            if length != HEADER_LEN:
                counters[C_GARBAGE] += 1
                continue
        elif not _valid_blocks(d, length, seq, count, counters):
            continue
        if not state[S_SESSION_SET]:
            for k in range(SESSION_LEN):
                session[k] = d[k]
            state[S_SESSION_SET] = 1
        if state[S_NEXT] == 0:
            state[S_NEXT] = seq
            state[S_KNOWN_END] = seq
        end = seq
        if control:
            counters[C_HEARTBEATS] += 1
            if count == END_OF_SESSION:
                state[S_END] = seq
        else:
            end = seq + count
            if not retransmitted[j] and seq < state[S_KNOWN_END]:
                counters[C_LATE] += 1
            nxt = state[S_NEXT]
            pos = HEADER_LEN + BLOCK_PREFIX
            for i in range(count):
                s = seq + i
                if s < nxt:
                    counters[C_DUPLICATES] += 1
                elif s >= nxt + mask + 1:
                    counters[C_BEYOND_WINDOW] += 1
                elif have[s & mask]:
                    counters[C_DUPLICATES] += 1
                else:
                    row = window[s & mask]
                    for k in range(MESSAGE_LEN):
                        row[k] = d[pos + k]
                    have[s & mask] = 1
                    added += 1
                pos += BLOCK_LEN
        if seq > state[S_KNOWN_END]:
            counters[C_GAPS] += 1
        if end > state[S_KNOWN_END]:
            state[S_KNOWN_END] = end
    counters[C_MESSAGES] += added
    state[S_HELD] += added
    return added


@njit(cache=True)
def deliver(window, have, state, symbols, out):
    """Move the in-order run at the window's head into out; return how many were written.

    With a non-empty symbols mask only events whose symbol is set in it are
    written, but every sequence number is consumed in order all the same.
    """
    mask = window.shape[0] - 1
    s = state[S_NEXT]
    k = 0
    filtered = symbols.shape[0] > 0
    while k < out.shape[0]:
        idx = s & mask
        if not have[idx]:
            break
        have[idx] = 0
        row = window[idx]
        keep = True
        if filtered:
            sym = _get_le(row, SYMBOL_OFFSET, 4)
            keep = sym < symbols.shape[0] and symbols[sym]
        if keep:
            o = out[k]
            for b in range(MESSAGE_LEN):
                o[b] = row[b]
            k += 1
        s += 1
    state[S_HELD] -= s - state[S_NEXT]
    state[S_NEXT] = s
    return k


@njit(cache=True)
def missing(have, state, max_count, budget, ranges):
    """Write the first missing (seq, count) ranges inside the window into ranges.

    Ranges hold at most max_count each and budget in all. Returns how many.
    """
    mask = have.shape[0] - 1
    s = state[S_NEXT]
    stop = min(state[S_KNOWN_END], s + mask + 1)
    n = 0
    while s < stop and n < ranges.shape[0] and budget > 0:
        if have[s & mask]:
            s += 1
            continue
        first = s
        while s < stop and not have[s & mask] and s - first < min(max_count, budget):
            s += 1
        ranges[n, 0] = first
        ranges[n, 1] = s - first
        budget -= s - first
        n += 1
    return n


@njit(cache=True)
def give_up(have, state):
    """Skip the missing run at the window's head; return how many sequence numbers it held."""
    mask = have.shape[0] - 1
    s = state[S_NEXT]
    first = s
    while s < state[S_KNOWN_END] and not have[s & mask]:
        s += 1
    state[S_NEXT] = s
    return s - first


# ---- packets as bytes ----------------------------------------------------------------

def encode_packets(events, session, mtu=DEFAULT_MTU):
    """Frame an EVENT array as MoldUDP64 packets (list of bytes), as the publisher does."""
    raw = event_bytes(events)
    n = raw.shape[0]
    out = np.empty(n * (BLOCK_LEN + HEADER_LEN), np.uint8)
    lens = np.empty(n, np.uint32)
    packets, done, _ = pack(raw, 0, n, _session_array(session), messages_per_packet(mtu),
                            out, lens)
    assert done == n
    ends = np.cumsum(lens[:packets])
    return [out[e - k:e].tobytes() for e, k in zip(ends, lens[:packets])]


def encode_control(session, seq, count):
    """A header-only packet: heartbeat (count 0) or end of session (count 0xFFFF)."""
    return session_bytes(session) + int(seq).to_bytes(8, "big") + int(count).to_bytes(2, "big")


def encode_request(session, seq, count):
    """A retransmission request for count messages from MoldUDP64 sequence number seq."""
    if not 0 < count <= MAX_REQUEST:
        raise ValueError(f"a request asks for 1..{MAX_REQUEST} messages, got {count}")
    return encode_control(session, seq, count)


def decode_request(data):
    """(session, seq, count) of a request packet, or None when it is not one."""
    if len(data) != REQUEST_LEN:
        return None
    seq = int.from_bytes(data[SESSION_LEN:SESSION_LEN + 8], "big")
    count = int.from_bytes(data[SESSION_LEN + 8:HEADER_LEN], "big")
    if seq < 1 or count == 0 or count == END_OF_SESSION:
        return None
    return bytes(data[:SESSION_LEN]), seq, count


def encode_names(names, seq, mtu=DEFAULT_MTU):
    """The directory's answer to a request from MoldUDP64 sequence number seq:
    the names from ``names[seq - 1]`` on that fit one packet, or the end of the
    directory when seq is past the last."""
    room = mtu - IP_UDP_HEADERS - HEADER_LEN
    blocks = []
    for name in names[seq - 1:]:
        raw = name.encode("ascii")
        if room < BLOCK_PREFIX + len(raw) or len(blocks) == MAX_REQUEST:
            break
        blocks.append(len(raw).to_bytes(BLOCK_PREFIX, "big") + raw)
        room -= BLOCK_PREFIX + len(raw)
    if not blocks:
        return encode_control(DIRECTORY_SESSION, len(names) + 1, END_OF_SESSION)
    return encode_control(DIRECTORY_SESSION, seq, len(blocks)) + b"".join(blocks)


def encode_stream(info):
    """The answer to a STREAM_SESSION request: ``info`` (a dict) as one JSON message."""
    raw = json.dumps(info, sort_keys=True).encode("ascii")
    return encode_control(STREAM_SESSION, 1, 1) + len(raw).to_bytes(BLOCK_PREFIX, "big") + raw


def decode_stream(data):
    """The dict of a STREAM_SESSION answer; MoldError for anything else."""
    data = bytes(data)
    if len(data) < HEADER_LEN + BLOCK_PREFIX or data[:SESSION_LEN] != STREAM_SESSION \
            or data[SESSION_LEN:HEADER_LEN] != (1).to_bytes(8, "big") + (1).to_bytes(2, "big"):
        raise MoldError("not a stream description packet")
    size = int.from_bytes(data[HEADER_LEN:HEADER_LEN + BLOCK_PREFIX], "big")
    if HEADER_LEN + BLOCK_PREFIX + size != len(data):
        raise MoldError(f"stream description packet: a block of {size} bytes in {len(data)}")
    try:
        info = json.loads(data[HEADER_LEN + BLOCK_PREFIX:].decode("ascii"))
    except ValueError:
        raise MoldError("stream description packet: not a JSON message") from None
    if not isinstance(info, dict):
        raise MoldError("stream description packet: not a JSON object")
    return info


def decode_names(data, max_len=L.SYMBOL_NAME_LEN):
    """(seq, names) of a directory packet; names is None at the end of the directory.

    Raises MoldError for anything else: another session, a torn block, a name
    that is empty, longer than max_len or not printable ASCII.
    """
    data = bytes(data)
    if len(data) < HEADER_LEN or data[:SESSION_LEN] != DIRECTORY_SESSION:
        raise MoldError("not a symbol directory packet")
    seq = int.from_bytes(data[SESSION_LEN:SESSION_LEN + 8], "big")
    count = int.from_bytes(data[SESSION_LEN + 8:HEADER_LEN], "big")
    if count == END_OF_SESSION and len(data) == HEADER_LEN:
        return seq, None
    names, pos = [], HEADER_LEN
    for _ in range(count):
        size = int.from_bytes(data[pos:pos + BLOCK_PREFIX], "big")
        raw = data[pos + BLOCK_PREFIX:pos + BLOCK_PREFIX + size]
        if size == 0 or size > max_len or len(raw) != size or not raw.isascii() \
                or not raw.decode().isprintable():
            raise MoldError(f"directory packet at seq {seq}: bad name block {len(names)}")
        names.append(raw.decode())
        pos += BLOCK_PREFIX + size
    if count == 0 or pos != len(data):
        raise MoldError(f"directory packet at seq {seq}: {count} names in {len(data)} bytes")
    return seq, names


def decode_packet(data):
    """Parse one downstream packet into a Packet(session, seq, count, events).

    Raises MoldError naming what is wrong; the receiver itself uses the
    tracker, which counts such datagrams instead.
    """
    data = bytes(data)
    if len(data) < HEADER_LEN:
        raise MoldError(f"{len(data)} bytes is shorter than the {HEADER_LEN}-byte header")
    session = data[:SESSION_LEN]
    seq = int.from_bytes(data[SESSION_LEN:SESSION_LEN + 8], "big")
    count = int.from_bytes(data[SESSION_LEN + 8:HEADER_LEN], "big")
    if count in (HEARTBEAT, END_OF_SESSION):
        if len(data) != HEADER_LEN:
            raise MoldError(f"a {'heartbeat' if count == 0 else 'end of session'} "
                            f"carries {len(data) - HEADER_LEN} bytes after its header")
        return Packet(session, seq, count, np.empty(0, L.EVENT))
    counters = np.zeros(len(COUNTERS), np.int64)
    buf = np.frombuffer(data, np.uint8)
    if not _valid_blocks(buf, len(data), seq, count, counters):
        what = COUNTERS[int(np.flatnonzero(counters)[0])]
        raise MoldError(f"packet at seq {seq} with {count} messages is {what}")
    rows = buf[HEADER_LEN:].reshape(count, BLOCK_LEN)[:, BLOCK_PREFIX:]
    return Packet(session, seq, count, rows.copy().view(L.EVENT).reshape(count))


# ---- the receiver's reorder buffer ---------------------------------------------------

class GapTracker:
    """Reorder buffer and gap bookkeeping of one MoldUDP64 receiver (no I/O).

    session: the expected session (None: the first valid packet's); start:
    the first event seq wanted (None: whatever the first packet carries);
    window: events held ahead of the next due (power of two); symbols: the
    symbol ids read() returns (None: all). request_timeout (s), retries,
    max_request (messages in one request) and max_inflight (messages asked
    for in one round, so that answers do not flood the receiver) shape what
    requests() asks for.

        t = GapTracker(symbols=[1, 5])
        t.accept(dgrams, lens, n, retransmitted)   # or t.feed(packet_bytes)
        for seq, count in t.requests(time.monotonic()):
            ...send encode_request(t.session, seq, count)
        n = t.read(out)
    """

    def __init__(self, session=None, start=0, window=1 << 17, symbols=None,
                 request_timeout=0.05, retries=20, max_request=4096, max_ranges=64,
                 max_inflight=8192):
        if window < 1 or window & (window - 1):
            raise ValueError(f"window must be a power of two, got {window}")
        self.window = np.zeros((window, MESSAGE_LEN), np.uint8)
        self.have = np.zeros(window, np.uint8)
        self.state = np.zeros(S_WORDS, np.int64)
        self.state[S_END] = -1
        self._session = np.zeros(SESSION_LEN, np.uint8)
        if session is not None:
            self._session[:] = _session_array(session)
            self.state[S_SESSION_SET] = 1
        if start is not None:
            self.state[S_NEXT] = self.state[S_KNOWN_END] = int(start) + 1
        self.symbols = np.zeros(0, np.bool_)
        if symbols is not None:
            ids = np.asarray(sorted(set(int(s) for s in symbols)), np.int64)
            if ids.size and ids[0] < 0:
                raise ValueError("symbol ids are >= 0")
            self.symbols = np.zeros(int(ids[-1]) + 1 if ids.size else 1, np.bool_)
            self.symbols[ids] = True
        self.counts = np.zeros(len(COUNTERS), np.int64)
        self.request_timeout = request_timeout
        self.retries = retries
        self.max_request = min(int(max_request), MAX_REQUEST)
        self.max_inflight = int(max_inflight)
        self._ranges = np.zeros((max_ranges, 2), np.int64)
        self._deadline = 0.0
        self._requested_end = 0
        self._stuck_at = -1
        self._tries = 0
        self._one = np.ones(1, np.uint8)
        self._zero = np.zeros(1, np.uint8)
        self._load_kernels()

    def _load_kernels(self):
        """Compile (or load from cache) every kernel now, not on the first packet.

        A receiver that pauses on its first packet lets the socket buffer
        overflow under a burst; the empty calls here have the same types as
        the real ones.
        """
        empty = np.zeros((1, 1), np.uint8)
        accept(empty, np.zeros(1, np.uint32), 0, self._zero, self._session, self.state,
               self.window, self.have, self.counts)
        deliver(self.window, self.have, self.state, self.symbols,
                np.zeros(1, L.EVENT)[:0].view(np.uint8).reshape(-1, MESSAGE_LEN))
        missing(self.have, self.state, 1, 0, self._ranges)

    @property
    def session(self):
        """The session bytes, or None while none is known."""
        return self._session.tobytes() if self.state[S_SESSION_SET] else None

    @property
    def next_seq(self):
        """The event seq read() delivers next (-1 before the first packet when joining live)."""
        return int(self.state[S_NEXT]) - 1

    @property
    def backlog(self):
        """Sequence numbers between the next due and the highest known (held or missing)."""
        return int(self.state[S_KNOWN_END] - self.state[S_NEXT])

    @property
    def held(self):
        """Messages waiting in the window for read()."""
        return int(self.state[S_HELD])

    @property
    def ended(self):
        """True once the end of session was seen and everything before it delivered."""
        return bool(0 <= self.state[S_END] <= self.state[S_NEXT])

    @property
    def counters(self):
        return {k: int(v) for k, v in zip(COUNTERS, self.counts)}

    def accept(self, dgrams, lens, n, retransmitted):
        """Take n datagrams: rows of a 2-D uint8 array, lens[i] bytes each."""
        return accept(dgrams, lens, n, retransmitted, self._session, self.state, self.window,
                      self.have, self.counts)

    def feed(self, datagram, retransmitted=False):
        """Take one datagram given as bytes."""
        buf = np.frombuffer(bytes(datagram), np.uint8)
        row = np.zeros((1, max(buf.size, 1)), np.uint8)
        row[0, :buf.size] = buf
        return self.accept(row, np.array([buf.size], np.uint32), 1,
                           self._one if retransmitted else self._zero)

    def read(self, out):
        """Fill out (EVENT array) with the next in-order events; return how many."""
        if out.dtype != L.EVENT or out.ndim != 1:
            raise TypeError(f"read() fills a 1-D layout.EVENT array, got {out.dtype}")
        return deliver(self.window, self.have, self.state, self.symbols,
                       out.view(np.uint8).reshape(-1, MESSAGE_LEN))

    def requests(self, now):
        """The (MoldUDP64 seq, count) ranges to ask for now; counts them as requests.

        A gap is asked for as soon as it is seen, everything still missing
        again every request_timeout seconds, and a run at the head that
        `retries` rounds did not bring is given up (counted as lost).
        """
        nxt = int(self.state[S_NEXT])
        if nxt == 0 or nxt >= self.state[S_KNOWN_END]:
            self._requested_end = nxt
            return []
        if nxt != self._stuck_at:
            self._stuck_at, self._tries = nxt, 0
        if now >= self._deadline:
            if self._tries >= self.retries:
                self.counts[C_LOST] += give_up(self.have, self.state)
                self._stuck_at, self._tries, self._deadline = -1, 0, 0.0
                return []
            self._tries += 1
            self._deadline = now + self.request_timeout
            low = nxt
        else:
            low = self._requested_end
        n = missing(self.have, self.state, self.max_request, self.max_inflight, self._ranges)
        if n == self._ranges.shape[0] or self._ranges[:n, 1].sum() >= self.max_inflight:
            self._requested_end = int(self._ranges[n - 1].sum())
        else:
            self._requested_end = int(self.state[S_KNOWN_END])
        due = []
        for first, count in self._ranges[:n]:
            first, count = int(first), int(count)
            if first + count > low:
                skip = max(0, low - first)
                due.append((first + skip, count - skip))
        self.counts[C_REQUESTS] += len(due)
        return due
