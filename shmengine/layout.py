"""Every shared-memory format of the engine, in one place.

The C header ``csrc/shmengine.h`` mirrors this module; ``tests/test_layout.py``
holds the two equal. Change a format here, bump ``LAYOUT_VERSION`` and the
header together.

Segments (POSIX shared memory, ``/dev/shm/shmengine.NAME.KIND``):

    meta        SEGMENT_HEADER, ENGINE_INFO, symbol names, partition map
    stats       SEGMENT_HEADER, STATS_HEADER, PROC_STATS rows, latency counts per stage,
                LINK_STATS
    in.W        SPSC ring of EVENT (feed -> worker W)
    out.W       SPSC ring of RESULT (worker W -> aggregator)
    snap        SEGMENT_HEADER, SNAP_HEADER, SNAPSHOT rows (one per symbol)
    ana         SEGMENT_HEADER, ANA_HEADER, ANALYTICS rows (one per symbol; each
                row written by the worker that owns its symbol)
    bcast       broadcast ring of RESULT (aggregator -> any reader)

Every segment begins with SEGMENT_HEADER: a magic, the layout version, the
segment kind, its total size and a state that reads READY only once the
creator has filled it in. Readers refuse anything else.

Prices are int64 fixed point with PRICE_SCALE units per currency unit.
Positions are monotonic int64 counts of records; a slot is
``position & (capacity - 1)``.
"""
import numpy as np

MAGIC = 0x31454E49474D4853  # b"SHMGINE1" read as little-endian uint64
LAYOUT_VERSION = 3
CACHE_LINE = 64
PAD = 128  # contended cursors sit this far apart (adjacent-line prefetch)

PRICE_SCALE = 10_000  # four decimals, as NASDAQ ITCH 5.0
MAX_VENUES = 8
TOP_LEVELS = 5  # consolidated depth levels kept in results and snapshots
SYMBOL_NAME_LEN = 16
MAX_SYMBOLS = 10_000
MAX_WORKERS = 64

# segment kinds
SEG_META = 1
SEG_STATS = 2
SEG_RING = 3
SEG_SNAP = 4
SEG_BCAST = 5
SEG_ANALYTICS = 6
SEGMENT_KIND_NAMES = {SEG_META: "meta", SEG_STATS: "stats", SEG_RING: "ring",
                      SEG_SNAP: "snap", SEG_BCAST: "bcast", SEG_ANALYTICS: "ana"}

# segment states
STATE_BUILDING = 0
STATE_READY = 1

# event types: NASDAQ ITCH 5.0 order semantics
EV_ADD = 1            # new order (A/F): order_id, side, price, qty
EV_EXECUTE = 2        # execution at the order's price (E): qty executed
EV_EXECUTE_PRICE = 3  # execution at a given price (C): qty, price; FLAG_NON_PRINTABLE: no print
EV_CANCEL = 4         # partial cancel (X): qty cancelled
EV_DELETE = 5         # delete (D)
EV_REPLACE = 6        # replace (U): order_id -> new_order_id, new price and qty, loses priority
EV_TRADE = 7          # non-displayed trade (P): price, qty, side of the resting order
EV_CLEAR = 8          # book reset for (symbol, venue)
EV_WATERMARK = 9      # no event with seq <= this one is still on its way to you
EV_END = 10           # end of stream: drain and stop
EV_STATUS = 11        # a source's status message, published on the stream as it is:
                      # order_id = its message type (ITCH: ord('S') system event, ord('H')
                      # trading action, ord('B') broken trade, ...), qty = its code (ITCH: the
                      # event code or trading state, ASCII), price = a number it carries (a
                      # broken trade's match number), symbol = the symbol or 0 if market-wide
EVENT_TYPE_NAMES = {EV_ADD: "add", EV_EXECUTE: "execute", EV_EXECUTE_PRICE: "execute_price",
                    EV_CANCEL: "cancel", EV_DELETE: "delete", EV_REPLACE: "replace",
                    EV_TRADE: "trade", EV_CLEAR: "clear", EV_WATERMARK: "watermark",
                    EV_END: "end", EV_STATUS: "status"}

SIDE_BID = 0
SIDE_ASK = 1

FLAG_NON_PRINTABLE = 1  # event flag: execution that does not print as a trade

# result kinds
RES_QUOTE = 1      # top of book (venue or consolidated depth) changed
RES_TRADE = 2      # a trade printed (last trade changed); quote fields are current too
RES_CLEAR = 3      # a venue's book was cleared
RES_BAR = 4        # an OHLCV bar closed (BAR_RECORD layout)
RES_SIGNAL = 5     # a signal fired (SIGNAL_RECORD layout)
RES_USER = 6       # a user kernel's record (USER_RECORD layout)
RES_STATUS = 7     # a source's status message (STATUS_RECORD layout)
RES_WATERMARK = 9  # worker has processed everything up to seq (never broadcast)
RES_END = 10       # worker drained (never broadcast)
RESULT_KIND_NAMES = {RES_QUOTE: "quote", RES_TRADE: "trade", RES_CLEAR: "clear",
                     RES_BAR: "bar", RES_SIGNAL: "signal", RES_USER: "user", RES_STATUS: "status",
                     RES_WATERMARK: "watermark", RES_END: "end"}

# signals (SIGNAL_RECORD.signal; bit 1 << signal in ANALYTICS.signals while active)
SIG_OFI = 0        # rolling order-flow imbalance beyond +/- its threshold
SIG_SPREAD = 1     # quoted spread at or above its threshold in bps
SIG_CROSSED = 2    # consolidated best bid above best offer
SIGNAL_NAMES = {SIG_OFI: "ofi", SIG_SPREAD: "spread", SIG_CROSSED: "crossed"}

MAX_BAR_INTERVALS = 2  # bar intervals a run may configure
USER_FIELDS = 8        # float64 fields per symbol that user kernels publish
USER_VALUES = 16       # float64 values a USER_RECORD carries

# result / snapshot flags
RFLAG_LOCKED = 1   # consolidated best bid == best ask (on different venues)
RFLAG_CROSSED = 2  # consolidated best bid > best ask

NO_VENUE = 255
EMPTY_PRICE = 0    # a side with no order has price 0 and quantity 0

SEGMENT_HEADER = np.dtype([
    ("magic", "<u8"),
    ("version", "<u4"),
    ("kind", "<u4"),
    ("size", "<u8"),
    ("state", "<u4"),
    ("creator_pid", "<u4"),
    ("created_ns", "<i8"),
    ("_pad", "u1", 24),
], align=True)
assert SEGMENT_HEADER.itemsize == CACHE_LINE

EVENT = np.dtype([
    ("seq", "<u8"),           # global sequence number, stamped by the feed handler
    ("exch_ts", "<i8"),       # exchange (source) clock, ns
    ("recv_ts", "<i8"),       # feed handler receive clock, CLOCK_MONOTONIC ns
    ("price", "<i8"),         # fixed point, PRICE_SCALE
    ("order_id", "<u8"),
    ("new_order_id", "<u8"),  # replace only
    ("qty", "<u4"),
    ("symbol", "<u4"),
    ("venue", "u1"),
    ("type", "u1"),
    ("side", "u1"),
    ("flags", "u1"),
    ("feed_ns", "<u4"),       # receive -> written into the worker's ring, ns (saturating)
], align=True)
assert EVENT.itemsize == 64

RESULT = np.dtype([
    ("seq", "<u8"),            # seq of the event that caused this result
    ("exch_ts", "<i8"),
    ("recv_ts", "<i8"),        # feed receive clock of that event (wall clock)
    ("proc_ts", "<i8"),        # worker clock when processed (wall clock)
    ("symbol", "<u4"),
    ("venue", "u1"),           # venue of the event
    ("kind", "u1"),
    ("flags", "u1"),           # RFLAG_*
    ("event_type", "u1"),
    ("venue_bid_px", "<i8"),   # the event's venue, after the event
    ("venue_bid_qty", "<i8"),
    ("venue_ask_px", "<i8"),
    ("venue_ask_qty", "<i8"),
    ("bid_px", "<i8"),         # consolidated best bid / offer (NBBO)
    ("bid_qty", "<i8"),
    ("ask_px", "<i8"),
    ("ask_qty", "<i8"),
    ("bid_venue", "u1"),       # venue at the best bid (lowest id on ties), NO_VENUE if none
    ("ask_venue", "u1"),
    ("side", "u1"),            # side of the order the event touched; a trade's: the resting one
    ("bid_venues", "u1"),      # bit v: venue v's best bid is the consolidated best bid
    ("ask_venues", "u1"),
    ("_pad0", "u1", 3),
    ("last_px", "<i8"),
    ("last_qty", "<i8"),
    ("volume", "<i8"),         # cumulative printed volume of the symbol
    ("notional", "<i8"),       # cumulative sum of price * qty (fixed point)
    ("trades", "<i8"),
    ("level_bid_px", "<i8", (TOP_LEVELS,)),   # consolidated depth, best first
    ("level_bid_qty", "<i8", (TOP_LEVELS,)),
    ("level_ask_px", "<i8", (TOP_LEVELS,)),
    ("level_ask_qty", "<i8", (TOP_LEVELS,)),
    ("feed_ns", "<u4"),        # the event's feed_ns
    ("worker_ns", "<u4"),      # proc_ts -> the worker published this result, ns (saturating)
], align=True)
assert RESULT.itemsize == 320

# Fields of RESULT and SNAPSHOT that read the wall clock: they differ between runs
# that are otherwise identical.
WALL_CLOCK_FIELDS = ("recv_ts", "proc_ts", "feed_ns", "worker_ns", "last_recv_ts", "publish_ts")

# Records of the other stream kinds share RESULT's size and its first 40 bytes
# (seq .. event_type: the event that caused them), so one ring carries all.
_STREAM_HEAD = [(n, RESULT.fields[n][0]) for n in RESULT.names[:9]]
assert _STREAM_HEAD[-1][0] == "event_type" and RESULT.fields["event_type"][1] == 39


def _stream_record(fields):
    dt = np.dtype(_STREAM_HEAD + fields, align=True)
    pad = RESULT.itemsize - dt.itemsize
    assert pad >= 0
    return np.dtype(_STREAM_HEAD + fields + [("_pad_end", "u1", (pad,))], align=True)


BAR_RECORD = _stream_record([
    ("interval_ns", "<i8"),    # the bar's length on the exchange clock
    ("bar_start", "<i8"),      # exchange clock at the bar's start: a multiple of interval_ns
    ("open", "<i8"),
    ("high", "<i8"),
    ("low", "<i8"),
    ("close", "<i8"),
    ("volume", "<i8"),
    ("notional", "<i8"),       # sum of price * qty over the bar's trades (fixed point)
    ("trades", "<i8"),
])
SIGNAL_RECORD = _stream_record([
    ("signal", "<u4"),         # SIG_*
    ("direction", "<i4"),      # +1 or -1 (SIG_OFI: the sign of the flow), else +1
    ("value", "<f8"),          # the value that crossed: ofi (shares), spread (bps), bid - ask
    ("threshold", "<f8"),
])
USER_RECORD = _stream_record([
    ("kernel", "<u4"),         # index of the user kernel in the run's list
    ("tag", "<i4"),            # the kernel's own record type
    ("values", "<f8", (USER_VALUES,)),
])
STATUS_RECORD = _stream_record([
    ("message", "<u4"),        # the source's message type (EVENT.order_id of EV_STATUS)
    ("code", "<u4"),           # its code (EVENT.qty)
    ("number", "<i8"),         # a number it carries (EVENT.price)
])
# The book kernel writes a status record through the RESULT view (little-endian words).
assert STATUS_RECORD.fields["message"][1] == RESULT.fields["venue_bid_px"][1]
assert STATUS_RECORD.fields["code"][1] == RESULT.fields["venue_bid_px"][1] + 4
assert STATUS_RECORD.fields["number"][1] == RESULT.fields["venue_bid_qty"][1]
for _dt in (BAR_RECORD, SIGNAL_RECORD, USER_RECORD, STATUS_RECORD):
    assert _dt.itemsize == RESULT.itemsize

# Ring segment: SEGMENT_HEADER, then RING_HEADER at offset 64, slots at RING_DATA_OFFSET.
# Offsets are into the whole segment; each contended cursor owns PAD bytes.
RING_CAPACITY_OFFSET = 64         # u8, power of two
RING_SLOT_SIZE_OFFSET = 72        # u8, bytes per record
RING_POLICY_OFFSET = 80           # u8, POLICY_*
RING_PRODUCER_OFFSET = 128        # i8 producer (tail) position, written by producer only
RING_PRODUCER_INTENT_OFFSET = 136  # i8 broadcast only: position the writer is about to reach
RING_CONSUMER_OFFSET = 256        # i8 consumer (head) position, written by consumer only
RING_CONSUMER_WAIT_OFFSET = 384   # u4 flag: 1 while the consumer sleeps or is about to
RING_CONSUMER_BELL_OFFSET = 388   # u4 futex word the consumer sleeps on (when it reads one ring)
RING_PRODUCER_WAIT_OFFSET = 512   # u4 flag: 1 while the producer sleeps waiting for room
RING_PRODUCER_BELL_OFFSET = 516   # u4 futex word the producer sleeps on
RING_DROPS_OFFSET = 640           # i8 records dropped under POLICY_DROP (producer-owned)
RING_DATA_OFFSET = 768

POLICY_BLOCK = 0
POLICY_DROP = 1

# int64 indices of the cursors within the header viewed as int64 words
RING_PRODUCER_WORD = RING_PRODUCER_OFFSET // 8
RING_PRODUCER_INTENT_WORD = RING_PRODUCER_INTENT_OFFSET // 8
RING_CONSUMER_WORD = RING_CONSUMER_OFFSET // 8
RING_DROPS_WORD = RING_DROPS_OFFSET // 8
# uint32 indices of the futex words within the header viewed as uint32 words
RING_CONSUMER_WAIT_WORD32 = RING_CONSUMER_WAIT_OFFSET // 4
RING_CONSUMER_BELL_WORD32 = RING_CONSUMER_BELL_OFFSET // 4
RING_PRODUCER_WAIT_WORD32 = RING_PRODUCER_WAIT_OFFSET // 4
RING_PRODUCER_BELL_WORD32 = RING_PRODUCER_BELL_OFFSET // 4

SNAPSHOT = np.dtype([
    ("seqlock", "<u8"),        # odd while the aggregator writes the row
    ("symbol", "<u4"),
    ("flags", "u1"),           # RFLAG_*
    ("bid_venue", "u1"),
    ("ask_venue", "u1"),
    ("_pad0", "u1"),
    ("last_seq", "<u8"),       # seq of the last event that changed this row
    ("last_exch_ts", "<i8"),
    ("last_recv_ts", "<i8"),
    ("publish_ts", "<i8"),     # aggregator clock when the row was written
    ("updates", "<i8"),
    ("bid_px", "<i8"),
    ("bid_qty", "<i8"),
    ("ask_px", "<i8"),
    ("ask_qty", "<i8"),
    ("last_px", "<i8"),
    ("last_qty", "<i8"),
    ("last_trade_ts", "<i8"),  # exchange clock of the last trade
    ("volume", "<i8"),
    ("notional", "<i8"),
    ("trades", "<i8"),
    ("vwap", "<f8"),           # notional / volume / PRICE_SCALE, 0 before the first trade
    ("level_bid_px", "<i8", (TOP_LEVELS,)),
    ("level_bid_qty", "<i8", (TOP_LEVELS,)),
    ("level_ask_px", "<i8", (TOP_LEVELS,)),
    ("level_ask_qty", "<i8", (TOP_LEVELS,)),
    ("venue_bid_px", "<i8", (MAX_VENUES,)),
    ("venue_bid_qty", "<i8", (MAX_VENUES,)),
    ("venue_ask_px", "<i8", (MAX_VENUES,)),
    ("venue_ask_qty", "<i8", (MAX_VENUES,)),
], align=True)
SNAPSHOT_SIZE = (SNAPSHOT.itemsize + CACHE_LINE - 1) // CACHE_LINE * CACHE_LINE
SNAPSHOT_ROW = np.dtype({"names": SNAPSHOT.names,
                         "formats": [SNAPSHOT.fields[n][0] for n in SNAPSHOT.names],
                         "offsets": [SNAPSHOT.fields[n][1] for n in SNAPSHOT.names],
                         "itemsize": SNAPSHOT_SIZE}, align=True)

ANALYTICS = np.dtype([
    ("seqlock", "<u8"),        # odd while the owning worker writes the row
    ("symbol", "<u4"),
    ("signals", "<u4"),        # bit 1 << SIG_* while that signal is active
    ("an_seq", "<u8"),         # seq of the last result applied to the row
    ("an_exch_ts", "<i8"),
    ("an_updates", "<i8"),     # results applied
    ("mid", "<f8"),            # prices in currency units; NaN without a two-sided quote
    ("spread", "<f8"),
    ("spread_bps", "<f8"),
    ("microprice", "<f8"),
    ("imbalance", "<f8"),      # (Qb - Qa) / (Qb + Qa) at the consolidated best
    ("depth_bid", "<i8"),      # quantity over the best depth_levels consolidated levels
    ("depth_ask", "<i8"),
    ("depth_imbalance", "<f8"),
    ("ofi", "<i8"),            # order-flow imbalance over the rolling window, shares
    ("rolling_vwap", "<f8"),
    ("rolling_volume", "<i8"),
    ("rv", "<f8"),             # realized volatility: sqrt of summed squared mid log-returns
    ("rv_returns", "<i8"),     # returns in that sum
    ("eff_spread", "<f8"),     # last trade's effective spread 2 D (P - M)
    ("eff_spread_mean", "<f8"),
    ("eff_spread_bps_mean", "<f8"),
    ("eff_trades", "<i8"),     # trades with an effective spread
    ("realized_spread_mean", "<f8"),
    ("price_impact_mean", "<f8"),
    ("impact_trades", "<i8"),  # trades whose delay has passed
    ("impact_dropped", "<i8"),  # trades not followed: the pending queue was full
    ("time_total", "<i8"),     # exchange-clock ns since the symbol's first result
    ("time_locked", "<i8"),
    ("time_crossed", "<i8"),
    ("venue_time_at_bid", "<i8", (MAX_VENUES,)),  # venue's bid at the consolidated best
    ("venue_time_at_ask", "<i8", (MAX_VENUES,)),
    ("venue_volume", "<i8", (MAX_VENUES,)),      # printed volume per venue
    ("venue_trades", "<i8", (MAX_VENUES,)),
    ("bar_start", "<i8", (MAX_BAR_INTERVALS,)),  # the open bar per interval; -1 if none
    ("bar_open", "<i8", (MAX_BAR_INTERVALS,)),
    ("bar_high", "<i8", (MAX_BAR_INTERVALS,)),
    ("bar_low", "<i8", (MAX_BAR_INTERVALS,)),
    ("bar_close", "<i8", (MAX_BAR_INTERVALS,)),
    ("bar_volume", "<i8", (MAX_BAR_INTERVALS,)),
    ("bar_notional", "<i8", (MAX_BAR_INTERVALS,)),
    ("bar_trades", "<i8", (MAX_BAR_INTERVALS,)),
    ("user", "<f8", (USER_FIELDS,)),
], align=True)
ANALYTICS_SIZE = (ANALYTICS.itemsize + CACHE_LINE - 1) // CACHE_LINE * CACHE_LINE
ANALYTICS_ROW = np.dtype({"names": ANALYTICS.names,
                          "formats": [ANALYTICS.fields[n][0] for n in ANALYTICS.names],
                          "offsets": [ANALYTICS.fields[n][1] for n in ANALYTICS.names],
                          "itemsize": ANALYTICS_SIZE}, align=True)

ANA_HEADER = np.dtype([
    ("n_symbols", "<u4"),
    ("row_size", "<u4"),
    ("enabled", "<u4"),        # 0: the run computes no analytics; rows stay empty
    ("_pad0", "<u4"),
    ("bar_interval_ns", "<i8", (MAX_BAR_INTERVALS,)),  # 0: not configured
    ("depth_levels", "<i8"),
    ("vwap_window_ns", "<i8"),   # the run's analytics settings (see analytics.py)
    ("vwap_buckets", "<i8"),
    ("ofi_window_ns", "<i8"),
    ("ofi_buckets", "<i8"),
    ("rv_interval_ns", "<i8"),
    ("rv_samples", "<i8"),
    ("impact_delay_ns", "<i8"),
    ("impact_pending", "<i8"),
    ("signal_ofi", "<i8"),         # shares; 0: off
    ("signal_spread_bps", "<f8"),  # 0: off
    ("signal_crossed", "<i8"),     # 0: off
], align=True)
assert ANA_HEADER.itemsize == 2 * CACHE_LINE
ANA_HEADER_OFFSET = 64
ANA_ROWS_OFFSET = 256
assert ANA_HEADER_OFFSET + ANA_HEADER.itemsize <= ANA_ROWS_OFFSET

SNAP_HEADER = np.dtype([
    ("n_symbols", "<u4"),
    ("n_venues", "<u4"),
    ("row_size", "<u4"),
    ("_pad0", "<u4"),
    ("events", "<i8"),          # events reflected in the table (last merged seq + 1)
    ("results", "<i8"),         # results merged
    ("locked", "<i8"),          # symbols currently locked
    ("crossed", "<i8"),         # symbols currently crossed
    ("last_seq", "<u8"),
    ("publish_ts", "<i8"),
    ("_pad1", "u1", 64),
], align=True)
SNAP_HEADER_OFFSET = 64
SNAP_ROWS_OFFSET = 256
assert SNAP_HEADER_OFFSET + SNAP_HEADER.itemsize <= SNAP_ROWS_OFFSET

ENGINE_INFO = np.dtype([
    ("supervisor_pid", "<u4"),
    ("n_symbols", "<u4"),
    ("n_venues", "<u4"),
    ("n_workers", "<u4"),
    ("ring_capacity", "<u8"),
    ("bcast_capacity", "<u8"),
    ("seed", "<u8"),
    ("supervisor_start", "<u8"),  # /proc start time of the supervisor, to tell pid reuse
    ("run_state", "<u4"),         # RUN_*
    ("stop_request", "<u4"),      # set to 1 to ask the engine to drain and stop
    ("wait", "<u4"),              # WAIT_*
    ("_pad", "<u4"),
], align=True)
META_INFO_OFFSET = 64
META_NAMES_OFFSET = 256  # n_symbols * SYMBOL_NAME_LEN bytes, NUL padded ASCII
# then the partition map: n_symbols uint16 worker indices, 8-byte aligned

RUN_STARTING = 0
RUN_RUNNING = 1
RUN_DRAINING = 2
RUN_STOPPED = 3
RUN_FAILED = 4
RUN_STATE_NAMES = {RUN_STARTING: "starting", RUN_RUNNING: "running", RUN_DRAINING: "draining",
                   RUN_STOPPED: "stopped", RUN_FAILED: "failed"}

WAIT_SPIN = 0
WAIT_ADAPTIVE = 1
WAIT_NAMES = {WAIT_SPIN: "spin", WAIT_ADAPTIVE: "adaptive"}

# process roles in the stats block
ROLE_FEED = 1
ROLE_WORKER = 2
ROLE_AGGREGATOR = 3
ROLE_NAMES = {ROLE_FEED: "feed", ROLE_WORKER: "worker", ROLE_AGGREGATOR: "aggregator"}


def proc_name(position, count):
    """How users call the process of stats row ``position`` of ``count``: the feed's
    row is first, the workers' follow in order, the aggregator's is last."""
    if position == 0:
        return "feed"
    return "aggregator" if position == count - 1 else f"worker {position - 1}"


PROC_STATS = np.dtype([
    ("pid", "<u4"),
    ("role", "u1"),
    ("index", "u1"),
    ("_pad0", "u1", 2),
    ("cpu", "<i4"),            # pinned CPU, -1 if not pinned
    ("state", "<u4"),          # RUN_*
    ("heartbeat_ns", "<i8"),   # CLOCK_MONOTONIC of the last loop turn
    ("events", "<i8"),         # records taken in (feed: generated)
    ("results", "<i8"),        # records put out
    ("batches", "<i8"),
    ("waits", "<i8"),          # times the process found nothing to do, or no room
    ("drops", "<i8"),
    ("lag", "<i8"),            # records waiting in this process's input ring(s)
    ("unknown_orders", "<i8"),  # events naming an order the book does not hold
    ("book_overflows", "<i8"),  # levels or orders beyond the book's capacity
    ("bad_events", "<i8"),      # malformed events, counted and skipped
    ("bell", "<u4"),            # futex word this process sleeps on when it reads several rings
    ("_pad1", "<u4"),
    ("user_dropped", "<i8"),    # user-kernel records dropped: out of order or out of the batch
    ("cpu_ns", "<i8"),          # CPU time (user + system) the process spent since it started
    ("run_ns", "<i8"),          # CLOCK_MONOTONIC when it started running (a feed reading a
                                # source other than the synthetic market: its first event)
], align=True)
assert PROC_STATS.itemsize == 128

# Latency histograms in ns, HdrHistogram layout (lowest 1, highest HIST_HIGHEST,
# HIST_DIGITS significant digits), one per stage, all recorded by the aggregator
# for every quote, trade and clear result it publishes. The stages after TOTAL
# split it without overlap: FEED + RING + WORKER + MERGE == TOTAL per result.
HIST_HIGHEST = 10_000_000_000
HIST_DIGITS = 3
STAGE_TOTAL = 0    # feed receive -> snapshot published
STAGE_FEED = 1     # feed receive -> written into the worker's ring (EVENT.feed_ns)
STAGE_RING = 2     # -> the worker took it from the ring (RESULT.proc_ts)
STAGE_WORKER = 3   # -> the worker published its result (RESULT.worker_ns)
STAGE_MERGE = 4    # -> the aggregator published the snapshot row
N_STAGES = 5
STAGE_NAMES = {STAGE_TOTAL: "total", STAGE_FEED: "feed", STAGE_RING: "ring",
               STAGE_WORKER: "worker", STAGE_MERGE: "merge"}

# The feed's link counters: its source (file, journal or multicast subscriber) and,
# when it publishes or journals, its outputs. Written by the feed only, after each batch.
SRC_SYNTHETIC = 0
SRC_ITCH = 1
SRC_JOURNAL = 2
SRC_UDP = 3
SOURCE_KIND_NAMES = {SRC_SYNTHETIC: "synthetic", SRC_ITCH: "itch", SRC_JOURNAL: "journal",
                     SRC_UDP: "udp"}
JOURNAL_OFF = 0     # the run writes no journal
JOURNAL_ON = 1      # the feed writes one
JOURNAL_FAILED = 2  # a write failed (a full disk): the journal stopped, the engine runs on

LINK_STATS = np.dtype([
    ("source", "<u4"),           # SRC_*
    ("publishing", "u1"),        # 1 while the feed publishes to multicast
    ("journaling", "u1"),        # JOURNAL_*
    ("_pad0", "u1", 2),
    ("messages", "<i8"),         # messages taken from the source
    ("bytes", "<i8"),            # bytes taken from the source
    ("bad", "<i8"),              # malformed or unknown messages and datagrams, dropped
    ("packets", "<i8"),          # datagrams received
    ("gaps", "<i8"),             # gaps detected in the sequence
    ("requests", "<i8"),         # retransmission requests sent
    ("retransmissions", "<i8"),  # datagrams received in answer to requests
    ("duplicates", "<i8"),       # messages received more than once
    ("late", "<i8"),             # packets that arrived after their gap was filled or given up
    ("lost", "<i8"),             # messages given up on (never recovered)
    ("pub_packets", "<i8"),      # datagrams published
    ("pub_messages", "<i8"),     # messages published
    ("pub_heartbeats", "<i8"),
    ("pub_requests", "<i8"),     # retransmission requests answered
    ("pub_resent", "<i8"),       # messages sent again in answers
    ("journal_records", "<i8"),  # events written to the journal
    ("journal_flushes", "<i8"),
    ("journal_bytes", "<i8"),
    ("_pad1", "u1", 8),
], align=True)
assert LINK_STATS.itemsize == 160

STATS_HEADER = np.dtype([
    ("n_procs", "<u4"),
    ("hist_len", "<u4"),       # counts per histogram
    ("n_hists", "<u4"),        # histograms, STAGE_* order
    ("_pad", "u1", 52),
], align=True)
STATS_HEADER_OFFSET = 64
STATS_PROCS_OFFSET = 128


def names_nbytes(n_symbols):
    return n_symbols * SYMBOL_NAME_LEN


def partition_offset(n_symbols):
    return META_NAMES_OFFSET + (names_nbytes(n_symbols) + 7) // 8 * 8


def meta_size(n_symbols):
    return partition_offset(n_symbols) + (2 * n_symbols + 7) // 8 * 8


def ring_size(capacity, slot_size):
    return RING_DATA_OFFSET + capacity * slot_size


def snap_size(n_symbols):
    return SNAP_ROWS_OFFSET + n_symbols * SNAPSHOT_SIZE


def analytics_size(n_symbols):
    return ANA_ROWS_OFFSET + n_symbols * ANALYTICS_SIZE


def stats_hist_offset(n_procs):
    return STATS_PROCS_OFFSET + n_procs * PROC_STATS.itemsize


def stats_link_offset(n_procs, hist_len):
    return stats_hist_offset(n_procs) + 8 * hist_len * N_STAGES


def stats_size(n_procs, hist_len):
    return stats_link_offset(n_procs, hist_len) + LINK_STATS.itemsize
