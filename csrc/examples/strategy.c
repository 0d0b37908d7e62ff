/* strategy ENGINE SYMBOL N: a minimal C strategy on a running shmengine.
 *
 * Attaches read-only, subscribes to the broadcast stream, prints SYMBOL's
 * snapshot and analytics rows, follows the stream until it has seen N
 * records (of any symbol) or the engine stops, then prints both rows again
 * and one summary line:
 *
 *     records=2000 quotes=1850 trades=110 clears=0 bars=30 signals=10 symbol_records=41 lapped=0 missed=0 last_seq=123456
 *
 * The analytics line reads "  analytics  mid 100.1250  spread_bps 9.99
 * microprice 100.1260  ofi -300  updates 41" ("-" for a value that needs a
 * two-sided quote), or "  analytics off" when the run computes none.
 *
 * Build: make (in csrc/examples). Exit status 0; 1 with one line on stderr
 * when the engine is not running or the symbol is unknown; 2 on bad usage. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "shmengine.h"

#define BATCH 1024

static void print_price(const char *label, int64_t px, int64_t qty, int venue)
{
    if (px == SHME_EMPTY_PRICE)
        printf("%s - x 0", label);
    else
        printf("%s %" PRId64 ".%04" PRId64 " x %" PRId64, label, px / SHME_PRICE_SCALE,
               px % SHME_PRICE_SCALE, qty);
    if (venue != SHME_NO_VENUE)
        printf(" @v%d", venue);
}

static void print_snapshot(const char *name, const struct shme_snapshot *row)
{
    const char *state = row->flags & SHME_RFLAG_CROSSED  ? "  crossed"
                        : row->flags & SHME_RFLAG_LOCKED ? "  locked"
                                                         : "";
    printf("%s  seq %" PRIu64 "  updates %" PRId64 "\n", name, row->last_seq, row->updates);
    print_price("  nbbo  bid", row->bid_px, row->bid_qty, row->bid_venue);
    print_price("   ask", row->ask_px, row->ask_qty, row->ask_venue);
    printf("%s\n", state);
    print_price("  last", row->last_px, row->last_qty, SHME_NO_VENUE);
    printf("   volume %" PRId64 "   trades %" PRId64 "   vwap %.4f\n", row->volume, row->trades,
           row->vwap);
    fflush(stdout);
}

/* label and value, "-" for NaN (no two-sided quote) */
static void print_value(const char *label, double v, int decimals)
{
    if (isnan(v))
        printf("%s -", label);
    else
        printf("%s %.*f", label, decimals, v);
}

static void print_analytics(const shme_engine *eng, const struct shme_analytics *an)
{
    if (!eng->ana_header->enabled) {
        printf("  analytics off\n");
    } else {
        print_value("  analytics  mid", an->mid, 4);
        print_value("  spread_bps", an->spread_bps, 2);
        print_value("  microprice", an->microprice, 4);
        printf("  ofi %" PRId64 "  updates %" PRId64 "\n", an->ofi, an->an_updates);
    }
    fflush(stdout);
}

static int read_snapshot(const shme_engine *eng, uint32_t sym, struct shme_snapshot *row)
{
    int rc = shme_snapshot(eng, sym, row);
    if (rc != SHME_OK)
        fprintf(stderr, "strategy: cannot read the snapshot: %s\n", shme_strerror(rc));
    return rc;
}

static int read_analytics(const shme_engine *eng, uint32_t sym, struct shme_analytics *an)
{
    int rc = shme_analytics(eng, sym, an);
    if (rc != SHME_OK)
        fprintf(stderr, "strategy: cannot read the analytics: %s\n", shme_strerror(rc));
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 4 || atoll(argv[3]) <= 0) {
        fprintf(stderr, "usage: strategy ENGINE SYMBOL N  (N > 0 records to follow)\n");
        return 2;
    }
    const char *engine = argv[1], *symbol = argv[2];
    const int64_t want = atoll(argv[3]);

    shme_engine eng;
    int rc = shme_attach(&eng, engine);
    if (rc != SHME_OK) {
        fprintf(stderr, "strategy: engine '%s': %s\n", engine, shme_strerror(rc));
        return 1;
    }
    if (!shme_running(&eng)) {
        fprintf(stderr, "strategy: engine '%s' is not running (it has %s): start it with "
                        "`shmengine run --name %s`\n", engine,
                eng.info->run_state == SHME_RUN_FAILED ? "failed" : "stopped", engine);
        shme_detach(&eng);
        return 1;
    }
    int id = shme_symbol_id(&eng, symbol);
    if (id < 0) {
        fprintf(stderr, "strategy: unknown symbol '%s' in engine '%s' (%u symbols, e.g. %s)\n",
                symbol, engine, eng.n_symbols, shme_symbol_name(&eng, 0));
        shme_detach(&eng);
        return 1;
    }
    const uint32_t sym = (uint32_t)id;

    /* Subscribe before the first snapshot, so the stream overlaps it. */
    shme_reader rd;
    shme_subscribe(&eng, &rd);
    struct shme_snapshot row;
    struct shme_analytics an;
    if (read_snapshot(&eng, sym, &row) != SHME_OK || read_analytics(&eng, sym, &an) != SHME_OK) {
        shme_detach(&eng);
        return 1;
    }
    print_snapshot(symbol, &row);
    print_analytics(&eng, &an);

    static shme_result buf[BATCH];
    int64_t records = 0, quotes = 0, trades = 0, clears = 0, bars = 0, signals = 0;
    int64_t mine = 0, lapped = 0;
    uint64_t last_seq = 0;
    const struct timespec idle = {0, 100000};
    int stopping = 0;
    while (records < want) {
        int64_t max = want - records < BATCH ? want - records : BATCH;
        int64_t n = shme_poll(&rd, buf, max);
        if (n == SHME_LAPPED) {
            /* Records are gone: the snapshot is the state to continue from. */
            lapped++;
            fprintf(stderr, "strategy: lapped, %" PRId64 " records missed so far; "
                            "resynchronising from the snapshot\n", rd.missed);
            if (read_snapshot(&eng, sym, &row) != SHME_OK ||
                read_analytics(&eng, sym, &an) != SHME_OK)
                break;
            continue;
        }
        for (int64_t i = 0; i < n; i++) {
            const shme_result *r = &buf[i];
            quotes += r->kind == SHME_RES_QUOTE;
            trades += r->kind == SHME_RES_TRADE;
            clears += r->kind == SHME_RES_CLEAR;
            bars += r->kind == SHME_RES_BAR;       /* read as shme_as_bar(r) */
            signals += r->kind == SHME_RES_SIGNAL; /* read as shme_as_signal(r) */
            mine += r->symbol == sym;
            last_seq = r->seq;
        }
        records += n;
        if (n > 0)
            continue;
        /* One more poll after the engine stops: it may have published its
         * last records between our poll and the state change. */
        if (stopping)
            break;
        if (!shme_running(&eng))
            stopping = 1;
        else
            nanosleep(&idle, NULL);
    }

    rc = read_snapshot(&eng, sym, &row);
    if (rc == SHME_OK)
        rc = read_analytics(&eng, sym, &an);
    if (rc == SHME_OK) {
        print_snapshot(symbol, &row);
        print_analytics(&eng, &an);
        printf("records=%" PRId64 " quotes=%" PRId64 " trades=%" PRId64 " clears=%" PRId64
               " bars=%" PRId64 " signals=%" PRId64 " symbol_records=%" PRId64
               " lapped=%" PRId64 " missed=%" PRId64 " last_seq=%" PRIu64 "\n",
               records, quotes, trades, clears, bars, signals, mine, lapped, rd.missed,
               last_seq);
    }
    shme_detach(&eng);
    return rc == SHME_OK ? 0 : 1;
}
