/* shmengine.h: read-only access to a running shmengine from C and C++.
 *
 * The layout half of this header mirrors shmengine/layout.py, the single
 * source of truth for every shared-memory format; tests/test_layout.py holds
 * the two equal. The API half attaches to an engine's meta, snap, ana and
 * bcast segments read-only, reads consistent snapshot and analytics rows and
 * follows the broadcast stream. Header-only: include it and build with
 * -std=gnu11 (or define _POSIX_C_SOURCE 200809L with -std=c11).
 *
 *     shme_engine eng;
 *     int rc = shme_attach(&eng, "default");
 *     if (rc != SHME_OK) { fprintf(stderr, "%s\n", shme_strerror(rc)); return 1; }
 *     int sym = shme_symbol_id(&eng, "AAPL");
 *     shme_reader rd;
 *     shme_subscribe(&eng, &rd);            // subscribe first, then snapshot:
 *     struct shme_snapshot row;             // the stream overlaps the row
 *     shme_snapshot(&eng, (uint32_t)sym, &row);
 *     struct shme_analytics an;             // mid, spread, ofi, bars, ...
 *     shme_analytics(&eng, (uint32_t)sym, &an);
 *     shme_result buf[256];
 *     for (;;) {
 *         int64_t n = shme_poll(&rd, buf, 256);
 *         if (n == SHME_LAPPED) { ... resynchronise from shme_snapshot ... }
 *         // buf[i].kind says the layout: SHME_RES_BAR records read as
 *         // shme_as_bar(&buf[i]), SHME_RES_SIGNAL as shme_as_signal(...)
 *         ...
 *     }
 *     shme_detach(&eng);
 *
 * Nothing here writes to shared memory: a strategy cannot disturb the
 * engine and the engine never waits for a strategy. Functions return
 * SHME_OK (0) or a negative SHME_E* code; shme_strerror() says what to do.
 */
#ifndef SHMENGINE_H
#define SHMENGINE_H

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#define SHME_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define SHME_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* ------------------------------------------------------------ constants */

#define SHME_MAGIC 0x31454E49474D4853ULL /* "SHMGINE1" read as little-endian u64 */
#define SHME_LAYOUT_VERSION 3
#define SHME_CACHE_LINE 64
#define SHME_PAD 128 /* contended cursors sit this far apart */

#define SHME_PRICE_SCALE 10000 /* int64 fixed point: units per currency unit */
#define SHME_MAX_VENUES 8
#define SHME_TOP_LEVELS 5
#define SHME_SYMBOL_NAME_LEN 16
#define SHME_MAX_SYMBOLS 10000
#define SHME_MAX_WORKERS 64

/* segment kinds */
#define SHME_SEG_META 1
#define SHME_SEG_STATS 2
#define SHME_SEG_RING 3
#define SHME_SEG_SNAP 4
#define SHME_SEG_BCAST 5
#define SHME_SEG_ANALYTICS 6

/* segment states */
#define SHME_STATE_BUILDING 0
#define SHME_STATE_READY 1

/* event types (NASDAQ ITCH 5.0 order semantics) */
#define SHME_EV_ADD 1
#define SHME_EV_EXECUTE 2
#define SHME_EV_EXECUTE_PRICE 3
#define SHME_EV_CANCEL 4
#define SHME_EV_DELETE 5
#define SHME_EV_REPLACE 6
#define SHME_EV_TRADE 7
#define SHME_EV_CLEAR 8
#define SHME_EV_WATERMARK 9
#define SHME_EV_END 10
#define SHME_EV_STATUS 11 /* a source's status message: published as shme_status_record */

#define SHME_SIDE_BID 0
#define SHME_SIDE_ASK 1

#define SHME_FLAG_NON_PRINTABLE 1 /* event flag */

/* result kinds; WATERMARK and END never reach the broadcast ring */
#define SHME_RES_QUOTE 1
#define SHME_RES_TRADE 2
#define SHME_RES_CLEAR 3
#define SHME_RES_BAR 4    /* an OHLCV bar closed: shme_bar_record layout */
#define SHME_RES_SIGNAL 5 /* a signal fired: shme_signal_record layout */
#define SHME_RES_USER 6   /* a user kernel's record: shme_user_record layout */
#define SHME_RES_STATUS 7 /* a source's status message: shme_status_record layout */
#define SHME_RES_WATERMARK 9
#define SHME_RES_END 10

/* signals: shme_signal_record.signal; bit 1 << signal in
 * shme_analytics.signals while active */
#define SHME_SIG_OFI 0     /* rolling order-flow imbalance beyond +/- its threshold */
#define SHME_SIG_SPREAD 1  /* quoted spread at or above its threshold in bps */
#define SHME_SIG_CROSSED 2 /* consolidated best bid above best offer */

#define SHME_MAX_BAR_INTERVALS 2 /* bar intervals a run may configure */
#define SHME_USER_FIELDS 8       /* double fields per symbol that user kernels publish */
#define SHME_USER_VALUES 16      /* doubles a shme_user_record carries */

/* result and snapshot flags */
#define SHME_RFLAG_LOCKED 1  /* consolidated best bid == best ask */
#define SHME_RFLAG_CROSSED 2 /* consolidated best bid > best ask */

#define SHME_NO_VENUE 255
#define SHME_EMPTY_PRICE 0 /* a side with no order has price 0 and quantity 0 */

/* ring segments: offsets into the whole segment */
#define SHME_RING_CAPACITY_OFFSET 64
#define SHME_RING_SLOT_SIZE_OFFSET 72
#define SHME_RING_POLICY_OFFSET 80
#define SHME_RING_PRODUCER_OFFSET 128        /* i64 tail, store-released by the writer */
#define SHME_RING_PRODUCER_INTENT_OFFSET 136 /* i64 broadcast: position the writer is about to reach */
#define SHME_RING_CONSUMER_OFFSET 256
#define SHME_RING_CONSUMER_WAIT_OFFSET 384
#define SHME_RING_CONSUMER_BELL_OFFSET 388
#define SHME_RING_PRODUCER_WAIT_OFFSET 512
#define SHME_RING_PRODUCER_BELL_OFFSET 516
#define SHME_RING_DROPS_OFFSET 640
#define SHME_RING_DATA_OFFSET 768

#define SHME_POLICY_BLOCK 0
#define SHME_POLICY_DROP 1

/* snap segment */
#define SHME_SNAP_HEADER_OFFSET 64
#define SHME_SNAP_ROWS_OFFSET 256
#define SHME_SNAPSHOT_SIZE 576 /* row stride: sizeof(struct shme_snapshot) */

/* ana segment: one analytics row per symbol, written by the worker that
 * owns the symbol */
#define SHME_ANA_HEADER_OFFSET 64
#define SHME_ANA_ROWS_OFFSET 256
#define SHME_ANALYTICS_SIZE 704 /* row stride: sizeof(struct shme_analytics) */

/* meta segment: names are n_symbols x SYMBOL_NAME_LEN NUL-padded ASCII,
 * then the partition map (n_symbols u16 worker indices, 8-byte aligned) */
#define SHME_META_INFO_OFFSET 64
#define SHME_META_NAMES_OFFSET 256

/* engine run states */
#define SHME_RUN_STARTING 0
#define SHME_RUN_RUNNING 1
#define SHME_RUN_DRAINING 2
#define SHME_RUN_STOPPED 3
#define SHME_RUN_FAILED 4

#define SHME_WAIT_SPIN 0
#define SHME_WAIT_ADAPTIVE 1

/* process roles in the stats block */
#define SHME_ROLE_FEED 1
#define SHME_ROLE_WORKER 2
#define SHME_ROLE_AGGREGATOR 3

/* stats segment; latency histograms in HdrHistogram layout, one per stage:
 * TOTAL = FEED + RING + WORKER + MERGE for each result */
#define SHME_STATS_HEADER_OFFSET 64
#define SHME_STATS_PROCS_OFFSET 128
#define SHME_HIST_HIGHEST 10000000000LL
#define SHME_HIST_DIGITS 3
#define SHME_STAGE_TOTAL 0      /* feed receive -> snapshot published */
#define SHME_STAGE_FEED 1       /* -> written into the worker's ring */
#define SHME_STAGE_RING 2       /* -> taken by the worker */
#define SHME_STAGE_WORKER 3     /* -> published by the worker */
#define SHME_STAGE_MERGE 4      /* -> snapshot row published by the aggregator */
#define SHME_N_STAGES 5

/* return codes (SHME_OK and SHME_ERROR as in shmengine_core.h) */
#define SHME_OK 0
#define SHME_ERROR (-1)     /* a system call failed: see errno */
#define SHME_ENOENT (-2)    /* no engine of that name on this host */
#define SHME_EBADSEG (-3)   /* not a shmengine segment, or malformed */
#define SHME_EVERSION (-4)  /* written by a different layout version */
#define SHME_ENOTREADY (-5) /* segment half-built */
#define SHME_EDEAD (-6)     /* the engine's supervisor is gone; segments left behind */
#define SHME_EACCES (-7)    /* segment belongs to another user */
#define SHME_EINVAL (-8)    /* bad engine name or symbol id */
#define SHME_EBUSY (-9)     /* a seqlocked row stayed locked: its writer stopped mid-write */
#define SHME_LAPPED (-10)   /* the reader fell a whole ring behind */

/* ------------------------------------------------------------ layout */

typedef struct shme_segment_header {
    uint64_t magic;
    uint32_t version;
    uint32_t kind;
    uint64_t size;
    uint32_t state; /* READY only once the creator has filled the segment */
    uint32_t creator_pid;
    int64_t created_ns;
    uint8_t _pad[24];
} shme_segment_header;

typedef struct shme_event {
    uint64_t seq;
    int64_t exch_ts;
    int64_t recv_ts;
    int64_t price;
    uint64_t order_id;
    uint64_t new_order_id;
    uint32_t qty;
    uint32_t symbol;
    uint8_t venue;
    uint8_t type;
    uint8_t side;
    uint8_t flags;
    uint32_t feed_ns;       /* receive -> written into the worker's ring, ns (saturating) */
} shme_event;

typedef struct shme_result {
    uint64_t seq; /* seq of the event that caused this result */
    int64_t exch_ts;
    int64_t recv_ts;
    int64_t proc_ts;
    uint32_t symbol;
    uint8_t venue;
    uint8_t kind; /* SHME_RES_* */
    uint8_t flags;
    uint8_t event_type;
    int64_t venue_bid_px; /* the event's venue, after the event */
    int64_t venue_bid_qty;
    int64_t venue_ask_px;
    int64_t venue_ask_qty;
    int64_t bid_px; /* NBBO */
    int64_t bid_qty;
    int64_t ask_px;
    int64_t ask_qty;
    uint8_t bid_venue;
    uint8_t ask_venue;
    uint8_t side; /* of the order the event touched; of the resting order on a trade */
    uint8_t bid_venues; /* bit v: venue v's best bid is the consolidated best bid */
    uint8_t ask_venues;
    uint8_t _pad0[3];
    int64_t last_px;
    int64_t last_qty;
    int64_t volume;
    int64_t notional;
    int64_t trades;
    int64_t level_bid_px[SHME_TOP_LEVELS];
    int64_t level_bid_qty[SHME_TOP_LEVELS];
    int64_t level_ask_px[SHME_TOP_LEVELS];
    int64_t level_ask_qty[SHME_TOP_LEVELS];
    uint32_t feed_ns;       /* the event's feed_ns */
    uint32_t worker_ns;     /* proc_ts -> the worker published this result, ns (saturating) */
} shme_result;

/* Records of the other stream kinds share shme_result's size and its first
 * 40 bytes (seq .. event_type: the event that caused them), so one ring
 * carries all; `kind` tells them apart. Copy a polled slot into the right
 * struct with shme_as_bar() and friends (memcpy) rather than casting the
 * pointer, which strict aliasing does not allow. */
typedef struct shme_bar_record {
    uint64_t seq;
    int64_t exch_ts;
    int64_t recv_ts;
    int64_t proc_ts;
    uint32_t symbol;
    uint8_t venue;
    uint8_t kind; /* SHME_RES_BAR */
    uint8_t flags;
    uint8_t event_type;
    int64_t interval_ns; /* the bar's length on the exchange clock */
    int64_t bar_start;   /* exchange clock at the bar's start: a multiple of interval_ns */
    int64_t open;
    int64_t high;
    int64_t low;
    int64_t close;
    int64_t volume;
    int64_t notional; /* sum of price * qty over the bar's trades (fixed point) */
    int64_t trades;
    uint8_t _pad_end[208];
} shme_bar_record;

typedef struct shme_signal_record {
    uint64_t seq;
    int64_t exch_ts;
    int64_t recv_ts;
    int64_t proc_ts;
    uint32_t symbol;
    uint8_t venue;
    uint8_t kind; /* SHME_RES_SIGNAL */
    uint8_t flags;
    uint8_t event_type;
    uint32_t signal;   /* SHME_SIG_* */
    int32_t direction; /* +1 or -1 (SHME_SIG_OFI: the sign of the flow), else +1 */
    double value;      /* the value that crossed: ofi (shares), spread (bps), bid - ask */
    double threshold;
    uint8_t _pad_end[256];
} shme_signal_record;

typedef struct shme_user_record {
    uint64_t seq;
    int64_t exch_ts;
    int64_t recv_ts;
    int64_t proc_ts;
    uint32_t symbol;
    uint8_t venue;
    uint8_t kind; /* SHME_RES_USER */
    uint8_t flags;
    uint8_t event_type;
    uint32_t kernel; /* index of the user kernel in the run's list */
    int32_t tag;     /* the kernel's own record type */
    double values[SHME_USER_VALUES];
    uint8_t _pad_end[144];
} shme_user_record;

typedef struct shme_status_record {
    uint64_t seq;
    int64_t exch_ts;
    int64_t recv_ts;
    int64_t proc_ts;
    uint32_t symbol;  /* 0 for a market-wide message */
    uint8_t venue;
    uint8_t kind; /* SHME_RES_STATUS */
    uint8_t flags;
    uint8_t event_type;
    uint32_t message; /* the source's message type, e.g. 'S' (ITCH system event) */
    uint32_t code;    /* its code, e.g. the event code or trading state */
    int64_t number;   /* a number it carries, e.g. a broken trade's match number */
    uint8_t _pad_end[264];
} shme_status_record;

/* No typedef: shme_snapshot() is the function that reads one, as with
 * struct stat and stat(). _pad1 pads the row to whole cache lines. */
struct shme_snapshot {
    uint64_t seqlock; /* odd while the aggregator writes the row */
    uint32_t symbol;
    uint8_t flags; /* SHME_RFLAG_* */
    uint8_t bid_venue;
    uint8_t ask_venue;
    uint8_t _pad0;
    uint64_t last_seq;
    int64_t last_exch_ts;
    int64_t last_recv_ts;
    int64_t publish_ts;
    int64_t updates;
    int64_t bid_px;
    int64_t bid_qty;
    int64_t ask_px;
    int64_t ask_qty;
    int64_t last_px;
    int64_t last_qty;
    int64_t last_trade_ts;
    int64_t volume;
    int64_t notional;
    int64_t trades;
    double vwap; /* currency units; 0 before the first trade */
    int64_t level_bid_px[SHME_TOP_LEVELS];
    int64_t level_bid_qty[SHME_TOP_LEVELS];
    int64_t level_ask_px[SHME_TOP_LEVELS];
    int64_t level_ask_qty[SHME_TOP_LEVELS];
    int64_t venue_bid_px[SHME_MAX_VENUES];
    int64_t venue_bid_qty[SHME_MAX_VENUES];
    int64_t venue_ask_px[SHME_MAX_VENUES];
    int64_t venue_ask_qty[SHME_MAX_VENUES];
    uint8_t _pad1[16];
};

typedef struct shme_snap_header {
    uint32_t n_symbols;
    uint32_t n_venues;
    uint32_t row_size;
    uint32_t _pad0;
    int64_t events;
    int64_t results;
    int64_t locked;
    int64_t crossed;
    uint64_t last_seq;
    int64_t publish_ts;
    uint8_t _pad1[64];
} shme_snap_header;

/* No typedef, as struct shme_snapshot: shme_analytics() reads one. Prices
 * are in currency units, NaN without a two-sided quote; _pad_end pads the
 * row to whole cache lines. */
struct shme_analytics {
    uint64_t seqlock; /* odd while the owning worker writes the row */
    uint32_t symbol;
    uint32_t signals; /* bit 1 << SHME_SIG_* while that signal is active */
    uint64_t an_seq;  /* seq of the last result applied to the row */
    int64_t an_exch_ts;
    int64_t an_updates; /* results applied */
    double mid;
    double spread;
    double spread_bps;
    double microprice;
    double imbalance; /* (Qb - Qa) / (Qb + Qa) at the consolidated best */
    int64_t depth_bid; /* quantity over the best depth_levels consolidated levels */
    int64_t depth_ask;
    double depth_imbalance;
    int64_t ofi; /* order-flow imbalance over the rolling window, shares */
    double rolling_vwap;
    int64_t rolling_volume;
    double rv; /* realized volatility: sqrt of summed squared mid log-returns */
    int64_t rv_returns;
    double eff_spread; /* last trade's effective spread 2 D (P - M) */
    double eff_spread_mean;
    double eff_spread_bps_mean;
    int64_t eff_trades;
    double realized_spread_mean;
    double price_impact_mean;
    int64_t impact_trades;
    int64_t impact_dropped; /* trades not followed: the pending queue was full */
    int64_t time_total;     /* exchange-clock ns since the symbol's first result */
    int64_t time_locked;
    int64_t time_crossed;
    int64_t venue_time_at_bid[SHME_MAX_VENUES]; /* venue's bid at the consolidated best */
    int64_t venue_time_at_ask[SHME_MAX_VENUES];
    int64_t venue_volume[SHME_MAX_VENUES];
    int64_t venue_trades[SHME_MAX_VENUES];
    int64_t bar_start[SHME_MAX_BAR_INTERVALS]; /* the open bar per interval; -1 if none */
    int64_t bar_open[SHME_MAX_BAR_INTERVALS];
    int64_t bar_high[SHME_MAX_BAR_INTERVALS];
    int64_t bar_low[SHME_MAX_BAR_INTERVALS];
    int64_t bar_close[SHME_MAX_BAR_INTERVALS];
    int64_t bar_volume[SHME_MAX_BAR_INTERVALS];
    int64_t bar_notional[SHME_MAX_BAR_INTERVALS];
    int64_t bar_trades[SHME_MAX_BAR_INTERVALS];
    double user[SHME_USER_FIELDS];
    uint8_t _pad_end[24];
};

typedef struct shme_ana_header {
    uint32_t n_symbols;
    uint32_t row_size;
    uint32_t enabled; /* 0: the run computes no analytics; rows stay empty */
    uint32_t _pad0;
    int64_t bar_interval_ns[SHME_MAX_BAR_INTERVALS]; /* 0: not configured */
    int64_t depth_levels;
    int64_t vwap_window_ns; /* the run's analytics settings */
    int64_t vwap_buckets;
    int64_t ofi_window_ns;
    int64_t ofi_buckets;
    int64_t rv_interval_ns;
    int64_t rv_samples;
    int64_t impact_delay_ns;
    int64_t impact_pending;
    int64_t signal_ofi;        /* shares; 0: off */
    double signal_spread_bps;  /* 0: off */
    int64_t signal_crossed;    /* 0: off */
} shme_ana_header;

typedef struct shme_engine_info {
    uint32_t supervisor_pid;
    uint32_t n_symbols;
    uint32_t n_venues;
    uint32_t n_workers;
    uint64_t ring_capacity;
    uint64_t bcast_capacity;
    uint64_t seed;
    uint64_t supervisor_start; /* ms since the epoch, to tell pid reuse */
    uint32_t run_state;        /* SHME_RUN_* */
    uint32_t stop_request;
    uint32_t wait; /* SHME_WAIT_* */
    uint32_t _pad;
} shme_engine_info;

typedef struct shme_proc_stats {
    uint32_t pid;
    uint8_t role;
    uint8_t index;
    uint8_t _pad0[2];
    int32_t cpu;
    uint32_t state;
    int64_t heartbeat_ns;
    int64_t events;
    int64_t results;
    int64_t batches;
    int64_t waits;
    int64_t drops;
    int64_t lag;
    int64_t unknown_orders;
    int64_t book_overflows;
    int64_t bad_events;
    uint32_t bell;
    uint32_t _pad1;
    int64_t user_dropped;
    int64_t cpu_ns;         /* CPU time the process spent since it started running */
    int64_t run_ns;         /* CLOCK_MONOTONIC when it started running */
} shme_proc_stats;

/* the feed's source and outputs; after the stage histograms in the stats segment */
#define SHME_SRC_SYNTHETIC 0
#define SHME_SRC_ITCH 1
#define SHME_SRC_JOURNAL 2
#define SHME_SRC_UDP 3

#define SHME_JOURNAL_OFF 0
#define SHME_JOURNAL_ON 1
#define SHME_JOURNAL_FAILED 2    /* a write failed (a full disk): stopped; the engine runs on */

typedef struct shme_link_stats {
    uint32_t source;          /* SHME_SRC_* */
    uint8_t publishing;
    uint8_t journaling;       /* SHME_JOURNAL_* */
    uint8_t _pad0[2];
    int64_t messages;
    int64_t bytes;
    int64_t bad;              /* malformed or unknown messages and datagrams, dropped */
    int64_t packets;
    int64_t gaps;
    int64_t requests;         /* retransmission requests sent */
    int64_t retransmissions;  /* datagrams received in answer */
    int64_t duplicates;
    int64_t late;
    int64_t lost;
    int64_t pub_packets;
    int64_t pub_messages;
    int64_t pub_heartbeats;
    int64_t pub_requests;
    int64_t pub_resent;
    int64_t journal_records;
    int64_t journal_flushes;
    int64_t journal_bytes;
    uint8_t _pad1[8];
} shme_link_stats;

typedef struct shme_stats_header {
    uint32_t n_procs;
    uint32_t hist_len;      /* counts per histogram */
    uint32_t n_hists;       /* histograms after the process rows, SHME_STAGE_* order */
    uint8_t _pad[52];
} shme_stats_header;

SHME_STATIC_ASSERT(sizeof(shme_segment_header) == SHME_CACHE_LINE, "segment header size");
SHME_STATIC_ASSERT(offsetof(shme_segment_header, state) == 24, "segment header state");
SHME_STATIC_ASSERT(sizeof(shme_event) == 64, "event size");
SHME_STATIC_ASSERT(offsetof(shme_event, venue) == 56, "event venue");
SHME_STATIC_ASSERT(sizeof(shme_result) == 320, "result size");
SHME_STATIC_ASSERT(offsetof(shme_result, bid_venue) == 104, "result bid_venue");
SHME_STATIC_ASSERT(offsetof(shme_result, side) == 106, "result side");
SHME_STATIC_ASSERT(offsetof(shme_result, level_bid_px) == 152, "result levels");
SHME_STATIC_ASSERT(sizeof(shme_bar_record) == sizeof(shme_result), "bar record size");
SHME_STATIC_ASSERT(sizeof(shme_signal_record) == sizeof(shme_result), "signal record size");
SHME_STATIC_ASSERT(sizeof(shme_user_record) == sizeof(shme_result), "user record size");
SHME_STATIC_ASSERT(sizeof(shme_status_record) == sizeof(shme_result), "status record size");
SHME_STATIC_ASSERT(offsetof(shme_status_record, number) == 48, "status record number");
SHME_STATIC_ASSERT(offsetof(shme_bar_record, kind) == offsetof(shme_result, kind),
                   "bar record shares the result's head");
SHME_STATIC_ASSERT(offsetof(shme_signal_record, kind) == offsetof(shme_result, kind),
                   "signal record shares the result's head");
SHME_STATIC_ASSERT(offsetof(shme_user_record, kind) == offsetof(shme_result, kind),
                   "user record shares the result's head");
SHME_STATIC_ASSERT(offsetof(shme_bar_record, interval_ns) == 40, "bar record fields");
SHME_STATIC_ASSERT(offsetof(shme_signal_record, value) == 48, "signal record value");
SHME_STATIC_ASSERT(offsetof(shme_user_record, values) == 48, "user record values");
SHME_STATIC_ASSERT(sizeof(struct shme_snapshot) == SHME_SNAPSHOT_SIZE, "snapshot row size");
SHME_STATIC_ASSERT(sizeof(struct shme_snapshot) % SHME_CACHE_LINE == 0, "snapshot row lines");
SHME_STATIC_ASSERT(offsetof(struct shme_snapshot, seqlock) == 0, "seqlock is the first word");
SHME_STATIC_ASSERT(offsetof(struct shme_snapshot, vwap) == 136, "snapshot vwap");
SHME_STATIC_ASSERT(offsetof(struct shme_snapshot, venue_ask_qty) == 496, "snapshot venues");
SHME_STATIC_ASSERT(sizeof(shme_snap_header) == 128, "snap header size");
SHME_STATIC_ASSERT(SHME_SNAP_HEADER_OFFSET + sizeof(shme_snap_header) <= SHME_SNAP_ROWS_OFFSET,
                   "snap header fits before the rows");
SHME_STATIC_ASSERT(sizeof(struct shme_analytics) == SHME_ANALYTICS_SIZE, "analytics row size");
SHME_STATIC_ASSERT(sizeof(struct shme_analytics) % SHME_CACHE_LINE == 0, "analytics row lines");
SHME_STATIC_ASSERT(offsetof(struct shme_analytics, seqlock) == 0,
                   "analytics seqlock is the first word");
SHME_STATIC_ASSERT(offsetof(struct shme_analytics, mid) == 40, "analytics mid");
SHME_STATIC_ASSERT(offsetof(struct shme_analytics, user) == 616, "analytics user");
SHME_STATIC_ASSERT(sizeof(shme_ana_header) == 128, "ana header size");
SHME_STATIC_ASSERT(SHME_ANA_HEADER_OFFSET + sizeof(shme_ana_header) <= SHME_ANA_ROWS_OFFSET,
                   "ana header fits before the rows");
SHME_STATIC_ASSERT(sizeof(shme_engine_info) == 64, "engine info size");
SHME_STATIC_ASSERT(offsetof(shme_engine_info, run_state) == 48, "engine info run_state");
SHME_STATIC_ASSERT(SHME_META_INFO_OFFSET + sizeof(shme_engine_info) <= SHME_META_NAMES_OFFSET,
                   "engine info fits before the names");
SHME_STATIC_ASSERT(sizeof(shme_proc_stats) == 128, "proc stats size");
SHME_STATIC_ASSERT(offsetof(shme_proc_stats, bell) == 96, "proc stats bell");
SHME_STATIC_ASSERT(sizeof(shme_stats_header) == 64, "stats header size");
SHME_STATIC_ASSERT(sizeof(shme_link_stats) == 160, "link stats size");
SHME_STATIC_ASSERT(SHME_RING_PRODUCER_INTENT_OFFSET - SHME_RING_PRODUCER_OFFSET < SHME_PAD,
                   "intent shares the tail's padded block");
SHME_STATIC_ASSERT(SHME_RING_CONSUMER_OFFSET - SHME_RING_PRODUCER_OFFSET >= SHME_PAD,
                   "cursors are PAD apart");

static inline size_t shme_names_nbytes(uint32_t n_symbols)
{
    return (size_t)n_symbols * SHME_SYMBOL_NAME_LEN;
}

static inline size_t shme_partition_offset(uint32_t n_symbols)
{
    return SHME_META_NAMES_OFFSET + (shme_names_nbytes(n_symbols) + 7) / 8 * 8;
}

static inline size_t shme_meta_size(uint32_t n_symbols)
{
    return shme_partition_offset(n_symbols) + ((size_t)2 * n_symbols + 7) / 8 * 8;
}

static inline size_t shme_snap_size(uint32_t n_symbols)
{
    return SHME_SNAP_ROWS_OFFSET + (size_t)n_symbols * SHME_SNAPSHOT_SIZE;
}

static inline size_t shme_analytics_size(uint32_t n_symbols)
{
    return SHME_ANA_ROWS_OFFSET + (size_t)n_symbols * SHME_ANALYTICS_SIZE;
}

static inline size_t shme_ring_size(uint64_t capacity, uint64_t slot_size)
{
    return SHME_RING_DATA_OFFSET + (size_t)(capacity * slot_size);
}

/* ------------------------------------------------------------ ordering verbs */

static inline int64_t shme_get_acquire_i64(const void *p)
{
    return __atomic_load_n((const int64_t *)p, __ATOMIC_ACQUIRE);
}

static inline uint64_t shme_get_acquire_u64(const void *p)
{
    return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE);
}

static inline uint32_t shme_get_acquire_u32(const void *p)
{
    return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE);
}

static inline uint64_t shme_get_relaxed_u64(const void *p)
{
    return __atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED);
}

/* Earlier loads stay before every later load and store. */
static inline void shme_acquire(void)
{
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
}

static inline void shme_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Copy words that a writer may change meanwhile: relaxed loads, so the race
 * is defined; plain stores through memcpy, so dst may be any type. The
 * caller's fence and re-check decide whether the copy is good. */
static inline void shme_copy_relaxed(void *dst, const void *src, size_t words)
{
    const uint64_t *s = (const uint64_t *)src;
    unsigned char *d = (unsigned char *)dst;
    for (size_t k = 0; k < words; k++) {
        uint64_t w = shme_get_relaxed_u64(s + k);
        memcpy(d + 8 * k, &w, 8);
    }
}

/* A polled record as the struct its kind names (memcpy: no aliasing). */
static inline shme_bar_record shme_as_bar(const shme_result *r)
{
    shme_bar_record b;
    memcpy(&b, r, sizeof b);
    return b;
}

static inline shme_signal_record shme_as_signal(const shme_result *r)
{
    shme_signal_record s;
    memcpy(&s, r, sizeof s);
    return s;
}

static inline shme_user_record shme_as_user(const shme_result *r)
{
    shme_user_record u;
    memcpy(&u, r, sizeof u);
    return u;
}

static inline shme_status_record shme_as_status(const shme_result *r)
{
    shme_status_record s;
    memcpy(&s, r, sizeof s);
    return s;
}

/* ------------------------------------------------------------ attach API */

typedef struct shme_engine {
    const shme_engine_info *info;
    const shme_snap_header *snap_header;
    const struct shme_snapshot *rows;
    const shme_ana_header *ana_header; /* enabled == 0: the rows stay empty */
    const struct shme_analytics *ana_rows;
    const uint8_t *bcast; /* broadcast ring segment */
    uint32_t n_symbols;
    uint32_t n_venues;
    char (*names)[SHME_SYMBOL_NAME_LEN + 1]; /* NUL-terminated copies */
    const uint8_t *meta;
    const uint8_t *snap;
    const uint8_t *ana;
    size_t meta_size;
    size_t snap_size;
    size_t ana_size;
    size_t bcast_size;
} shme_engine;

/* A private cursor on the broadcast ring, valid until shme_detach. The
 * reader never writes to the segment, so any number of readers cost the
 * engine nothing. */
typedef struct shme_reader {
    const uint8_t *ring;
    const shme_result *slots;
    int64_t capacity;
    int64_t position; /* next record to read */
    int64_t missed;   /* records lost to laps so far */
} shme_reader;

static inline const char *shme_strerror(int code)
{
    switch (code) {
    case SHME_OK: return "ok";
    case SHME_ERROR: return "system call failed (see errno)";
    case SHME_ENOENT: return "no engine of that name is running on this host "
                             "(start one with `shmengine run --name NAME`)";
    case SHME_EBADSEG: return "segment is not a valid shmengine segment (foreign or corrupt): "
                              "run `shmengine cleanup`";
    case SHME_EVERSION: return "engine was built with another layout version: rebuild "
                               "against its shmengine.h, or run `shmengine cleanup` if stale";
    case SHME_ENOTREADY: return "engine is still being created (or its creator died): "
                                "try again, or run `shmengine cleanup`";
    case SHME_EDEAD: return "engine is not running (its supervisor is gone) but left its "
                            "segments: run `shmengine cleanup`";
    case SHME_EACCES: return "permission denied: the engine belongs to another user";
    case SHME_EINVAL: return "invalid argument (engine names are 1-64 letters, digits, "
                             "'-' or '_'; symbol ids below n_symbols)";
    case SHME_EBUSY: return "snapshot or analytics row stayed locked for a second: are the "
                            "engine's aggregator and workers alive?";
    case SHME_LAPPED: return "broadcast reader lapped: records missed, resynchronise from "
                             "the snapshot table";
    default: return "unknown shmengine error";
    }
}

static inline int shme_check_engine_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 64)
        return SHME_EINVAL;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_';
        if (!ok)
            return SHME_EINVAL;
    }
    return SHME_OK;
}

/* Map /shmengine.<engine>.<part> read-only and check its header. The state
 * is load-acquired before anything else is read: the creator marks READY
 * after filling in the rest, header included. */
static inline int shme_map_segment(const char *engine, const char *part, uint32_t kind,
                                   const uint8_t **base, size_t *size)
{
    char path[96];
    struct stat st;
    snprintf(path, sizeof path, "/shmengine.%s.%s", engine, part);
    int fd = shm_open(path, O_RDONLY, 0);
    if (fd < 0)
        return errno == ENOENT ? SHME_ENOENT : errno == EACCES ? SHME_EACCES : SHME_ERROR;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return SHME_ERROR;
    }
    if ((size_t)st.st_size < sizeof(shme_segment_header)) {
        close(fd);
        return SHME_EBADSEG;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return SHME_ERROR;
    const shme_segment_header *h = (const shme_segment_header *)p;
    const uint32_t state = shme_get_acquire_u32(&h->state);
    int rc = SHME_OK;
    if (h->magic != SHME_MAGIC)
        rc = SHME_EBADSEG;
    else if (h->version != SHME_LAYOUT_VERSION)
        rc = SHME_EVERSION;
    else if (h->kind != kind || h->size != (uint64_t)st.st_size)
        rc = SHME_EBADSEG;
    else if (state != SHME_STATE_READY)
        rc = SHME_ENOTREADY;
    if (rc != SHME_OK) {
        munmap(p, (size_t)st.st_size);
        return rc;
    }
    *base = (const uint8_t *)p;
    *size = (size_t)st.st_size;
    return SHME_OK;
}

/* Start time of pid in ms since the epoch, computed as psutil does (the
 * supervisor records it that way); 0 if unknown. */
static inline uint64_t shme_process_start_ms(uint32_t pid)
{
    char path[48], line[1024];
    unsigned long long start_ticks = 0, btime = 0;
    snprintf(path, sizeof path, "/proc/%u/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    const char *p = strrchr(line, ')'); /* comm may hold spaces and parens */
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d "
                            "%*d %*d %*d %*d %llu", &start_ticks) != 1)
        return 0;
    f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "btime %llu", &btime) == 1)
            break;
    fclose(f);
    long ticks = sysconf(_SC_CLK_TCK);
    if (btime == 0 || ticks <= 0)
        return 0;
    double t = (double)start_ticks / (double)ticks + (double)btime;
    return (uint64_t)(t * 1000.0);
}

/* The supervisor is alive: its pid exists and started when the engine says.
 * The start times may differ by clock adjustments to btime, never by a
 * second unless the pid was reused. */
static inline int shme_supervisor_alive(const shme_engine_info *info)
{
    uint32_t pid = info->supervisor_pid;
    if (pid == 0 || (kill((pid_t)pid, 0) != 0 && errno != EPERM))
        return 0;
    uint64_t started = shme_process_start_ms(pid);
    if (started == 0)
        return 1; /* no /proc: the pid is all we can tell by */
    uint64_t want = info->supervisor_start;
    uint64_t diff = started > want ? started - want : want - started;
    return diff <= 1000;
}

static inline void shme_detach(shme_engine *e)
{
    if (e->meta)
        munmap((void *)e->meta, e->meta_size);
    if (e->snap)
        munmap((void *)e->snap, e->snap_size);
    if (e->ana)
        munmap((void *)e->ana, e->ana_size);
    if (e->bcast)
        munmap((void *)e->bcast, e->bcast_size);
    free(e->names);
    memset(e, 0, sizeof *e);
}

/* Attach read-only to engine `name`. The meta segment is checked first: the
 * supervisor marks it READY only after every other segment is READY. */
static inline int shme_attach(shme_engine *e, const char *name)
{
    memset(e, 0, sizeof *e);
    int rc = shme_check_engine_name(name);
    if (rc != SHME_OK)
        return rc;
    rc = shme_map_segment(name, "meta", SHME_SEG_META, &e->meta, &e->meta_size);
    if (rc != SHME_OK)
        return rc;
    e->info = (const shme_engine_info *)(e->meta + SHME_META_INFO_OFFSET);
    uint32_t n = e->info->n_symbols;
    if (n == 0 || n > SHME_MAX_SYMBOLS || e->info->n_venues > SHME_MAX_VENUES ||
        e->meta_size < shme_meta_size(n)) {
        rc = SHME_EBADSEG;
        goto fail;
    }
    if (!shme_supervisor_alive(e->info)) {
        rc = SHME_EDEAD;
        goto fail;
    }
    rc = shme_map_segment(name, "snap", SHME_SEG_SNAP, &e->snap, &e->snap_size);
    if (rc != SHME_OK)
        goto fail;
    e->snap_header = (const shme_snap_header *)(e->snap + SHME_SNAP_HEADER_OFFSET);
    if (e->snap_header->n_symbols != n || e->snap_header->row_size != SHME_SNAPSHOT_SIZE ||
        e->snap_size != shme_snap_size(n)) {
        rc = SHME_EBADSEG;
        goto fail;
    }
    e->rows = (const struct shme_snapshot *)(e->snap + SHME_SNAP_ROWS_OFFSET);
    rc = shme_map_segment(name, "ana", SHME_SEG_ANALYTICS, &e->ana, &e->ana_size);
    if (rc != SHME_OK)
        goto fail;
    e->ana_header = (const shme_ana_header *)(e->ana + SHME_ANA_HEADER_OFFSET);
    if (e->ana_header->n_symbols != n || e->ana_header->row_size != SHME_ANALYTICS_SIZE ||
        e->ana_size != shme_analytics_size(n)) {
        rc = SHME_EBADSEG;
        goto fail;
    }
    e->ana_rows = (const struct shme_analytics *)(e->ana + SHME_ANA_ROWS_OFFSET);
    rc = shme_map_segment(name, "bcast", SHME_SEG_BCAST, &e->bcast, &e->bcast_size);
    if (rc != SHME_OK)
        goto fail;
    {
        uint64_t cap = *(const uint64_t *)(e->bcast + SHME_RING_CAPACITY_OFFSET);
        uint64_t slot = *(const uint64_t *)(e->bcast + SHME_RING_SLOT_SIZE_OFFSET);
        if (cap < 2 || (cap & (cap - 1)) || slot != sizeof(shme_result) ||
            e->bcast_size != shme_ring_size(cap, slot)) {
            rc = SHME_EBADSEG;
            goto fail;
        }
    }
    e->n_symbols = n;
    e->n_venues = e->info->n_venues;
    e->names = (char (*)[SHME_SYMBOL_NAME_LEN + 1])calloc(n, SHME_SYMBOL_NAME_LEN + 1);
    if (!e->names) {
        rc = SHME_ERROR;
        goto fail;
    }
    for (uint32_t i = 0; i < n; i++)
        memcpy(e->names[i], e->meta + SHME_META_NAMES_OFFSET + (size_t)i * SHME_SYMBOL_NAME_LEN,
               SHME_SYMBOL_NAME_LEN);
    return SHME_OK;
fail:
    shme_detach(e);
    return rc;
}

/* Symbol id of `symbol`, or -1 if the engine has no such symbol. */
static inline int shme_symbol_id(const shme_engine *e, const char *symbol)
{
    if (!symbol || strlen(symbol) > SHME_SYMBOL_NAME_LEN)
        return -1;
    for (uint32_t i = 0; i < e->n_symbols; i++)
        if (strcmp(e->names[i], symbol) == 0)
            return (int)i;
    return -1;
}

/* Name of symbol id `symbol`, or NULL if out of range; valid until detach. */
static inline const char *shme_symbol_name(const shme_engine *e, uint32_t symbol)
{
    return symbol < e->n_symbols ? e->names[symbol] : (const char *)NULL;
}

static inline int64_t shme_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One consistent copy of a seqlocked row of `words` u64 words, the seqlock
 * first. The acquire load of the seqlock keeps the copy after it; the
 * acquire fence keeps the copy before the re-read. An even, unchanged
 * seqlock means no write overlapped the copy. Spins while the writer holds
 * the row, yielding now and then in case it shares our core; SHME_EBUSY if
 * the row stays odd for a second. */
static inline int shme_read_row(const uint64_t *row, void *out, size_t words)
{
    int64_t since = 0;
    for (uint32_t tries = 1;; tries++) {
        uint64_t s1 = shme_get_acquire_u64(row);
        if ((s1 & 1) == 0) {
            shme_copy_relaxed((unsigned char *)out + 8, row + 1, words - 1);
            shme_acquire();
            if (shme_get_relaxed_u64(row) == s1) {
                memcpy(out, &s1, 8);
                return SHME_OK;
            }
        }
        if (tries % 1024 == 0) {
            int64_t now = shme_monotonic_ms();
            if (since == 0)
                since = now;
            else if (now - since > 1000)
                return SHME_EBUSY;
            sched_yield();
        } else {
            shme_cpu_relax();
        }
    }
}

/* One consistent copy of the symbol's snapshot row (see shme_read_row). */
static inline int shme_snapshot(const shme_engine *e, uint32_t symbol, struct shme_snapshot *out)
{
    if (symbol >= e->n_symbols)
        return SHME_EINVAL;
    return shme_read_row((const uint64_t *)(e->rows + symbol), out,
                         sizeof(struct shme_snapshot) / 8);
}

/* One consistent copy of the symbol's analytics row (see shme_read_row).
 * Each row has its own writer, the worker that owns the symbol: two rows
 * read one after the other need not reflect the same instant. */
static inline int shme_analytics(const shme_engine *e, uint32_t symbol, struct shme_analytics *out)
{
    if (symbol >= e->n_symbols)
        return SHME_EINVAL;
    return shme_read_row((const uint64_t *)(e->ana_rows + symbol), out,
                         sizeof(struct shme_analytics) / 8);
}

/* Tail of the broadcast ring. Load-acquire: slots before it are whole. */
static inline int64_t shme_bcast_tail(const uint8_t *ring)
{
    return shme_get_acquire_i64(ring + SHME_RING_PRODUCER_OFFSET);
}

/* Follow the broadcast stream from its current tail. */
static inline void shme_subscribe(const shme_engine *e, shme_reader *r)
{
    r->ring = e->bcast;
    r->slots = (const shme_result *)(e->bcast + SHME_RING_DATA_OFFSET);
    r->capacity = (int64_t)*(const uint64_t *)(e->bcast + SHME_RING_CAPACITY_OFFSET);
    r->position = shme_bcast_tail(e->bcast);
    r->missed = 0;
}

/* Copy up to `max` new records into `out`; returns how many (0: none yet),
 * or SHME_LAPPED if records the reader had not read were overwritten. Then
 * the reader has moved to the current tail: resynchronise from
 * shme_snapshot() and poll on.
 *
 * The writer stores its intent before overwriting slots and store-releases
 * the tail after. The copy sits between the tail's acquire load and an
 * acquire fence, so the intent read after the fence covers every overwrite
 * that could have reached the copy. */
static inline int64_t shme_poll(shme_reader *r, shme_result *out, int64_t max)
{
    const int64_t capacity = r->capacity;
    const int64_t mask = capacity - 1;
    const int64_t position = r->position;
    const int64_t tail = shme_bcast_tail(r->ring);
    int64_t n = tail - position;
    if (n > capacity)
        goto lapped;
    if (n > max)
        n = max;
    if (n <= 0)
        return 0;
    for (int64_t i = 0; i < n; i++)
        shme_copy_relaxed(out + i, r->slots + ((position + i) & mask), sizeof(shme_result) / 8);
    shme_acquire();
    if (shme_get_acquire_i64(r->ring + SHME_RING_PRODUCER_INTENT_OFFSET) - capacity > position)
        goto lapped;
    r->position = position + n;
    return n;
lapped:
    {
        int64_t now = shme_bcast_tail(r->ring);
        int64_t missed = now - position - capacity;
        r->missed += missed > 1 ? missed : 1;
        r->position = now;
    }
    return SHME_LAPPED;
}

/* 1 while the engine starts, runs or drains and its supervisor is alive.
 * Reads /proc: call it when idle, not per record. */
static inline int shme_running(const shme_engine *e)
{
    uint32_t s = shme_get_acquire_u32(&e->info->run_state);
    if (s != SHME_RUN_STARTING && s != SHME_RUN_RUNNING && s != SHME_RUN_DRAINING)
        return 0;
    return shme_supervisor_alive(e->info);
}

#ifdef __cplusplus
}
#endif
#endif
