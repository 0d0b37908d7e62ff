"""A reader process hammering snapshot rows while a writer process updates them."""
import multiprocessing
import uuid

import numpy as np
from numba import njit

from shmengine import layout as L
from shmengine import shm
from shmengine.snapshot import ROW_WORDS, SnapshotTable, read_seqlocked, write_row

N_SYMBOLS = 4


@njit(cache=True)
def _write(rows, words, res, n):
    """Write ``n`` updates; every field of update k is derived from k."""
    for k in range(1, n + 1):
        r = res[0]
        r.symbol = k % N_SYMBOLS
        r.venue = k % 4
        r.seq = k
        r.exch_ts = 3 * k
        r.bid_px = 5 * k
        r.ask_px = 5 * k + 1
        r.bid_qty = 7 * k
        r.ask_qty = 7 * k + 1
        r.volume = 11 * k
        r.notional = 13 * k
        r.trades = k
        for j in range(L.TOP_LEVELS):
            r.level_bid_px[j] = 5 * k - j
            r.level_ask_px[j] = 5 * k + 1 + j
            r.level_bid_qty[j] = k + j
            r.level_ask_qty[j] = k + 2 * j
        write_row(rows, words, r, k)


@njit(cache=True)
def _hammer(words, until, out_words, out):
    """Read rows until one shows update ``until``; returns (torn rows, retries, reads)."""
    torn = 0
    retries = 0
    i = 0
    k = 0
    while k < until and i < 1_000_000_000:
        sym = i % N_SYMBOLS
        i += 1
        retries += read_seqlocked(words, sym, ROW_WORDS, out_words, 0)
        k = np.int64(out[0].last_seq)
        if k == 0:
            continue
        r = out[0]
        ok = (r.bid_px == 5 * k and r.ask_px == 5 * k + 1 and r.bid_qty == 7 * k
              and r.ask_qty == 7 * k + 1 and r.volume == 11 * k and r.notional == 13 * k
              and r.trades == k and r.last_exch_ts == 3 * k and r.publish_ts == k
              and k % N_SYMBOLS == sym)
        for j in range(L.TOP_LEVELS):
            ok = ok and r.level_bid_px[j] == 5 * k - j and r.level_ask_px[j] == 5 * k + 1 + j \
                and r.level_bid_qty[j] == k + j and r.level_ask_qty[j] == k + 2 * j
        if not ok:
            torn += 1
    return torn, retries, i


def _reader(name, until, conn):
    snap = SnapshotTable.attach(name)
    out = np.zeros(1, L.SNAPSHOT_ROW)
    _hammer(snap.words, 0, out.view(np.uint64), out)  # compile before the writer starts
    conn.send("ready")  # a pipe, not a queue: its feeder thread would need the GIL
    torn, retries, reads = _hammer(snap.words, until, out.view(np.uint64), out)
    conn.send((int(torn), int(retries), int(reads)))


def _writer(name, n):
    snap = SnapshotTable.attach(name, writable=True)
    _write(snap.rows, snap.words, np.zeros(1, L.RESULT), n)


def test_reader_never_sees_a_torn_row():
    name = f"/shmengine.t{uuid.uuid4().hex[:8]}.snap"
    table = SnapshotTable.create(name, N_SYMBOLS, 4)
    try:
        _write(table.rows, table.words, np.zeros(1, L.RESULT), 0)  # compile
        ctx = multiprocessing.get_context("spawn")
        conn, child_conn = ctx.Pipe()
        n = 5_000_000
        reader = ctx.Process(target=_reader, args=(name, n - N_SYMBOLS, child_conn))
        reader.start()
        assert conn.poll(120) and conn.recv() == "ready"
        writer = ctx.Process(target=_writer, args=(name, n))
        writer.start()
        assert conn.poll(300), "reader did not finish"
        torn, retries, reads = conn.recv()
        writer.join(300)
        reader.join(60)
        assert writer.exitcode == 0 and reader.exitcode == 0
        assert torn == 0, f"{torn} torn rows read"
        # the two really raced: the reader had to retry at least once
        assert retries > 0 and reads > 100_000
        assert table.rows["updates"].sum() == n
        assert int(table.rows[1]["seqlock"]) == 2 * int(table.rows[1]["updates"])
    finally:
        for p in ("reader", "writer"):
            proc = locals().get(p)
            if proc is not None and proc.is_alive():
                proc.kill()
        table.close()
        shm.unlink(name)


def test_row_words_cover_the_row():
    assert ROW_WORDS * 8 == L.SNAPSHOT_ROW.itemsize


def test_row_vwap_follows_the_tape():
    """The row's VWAP is the tape's notional over its volume after every result,
    also when a quote (tape unchanged) follows a print."""
    rows = np.zeros(N_SYMBOLS, L.SNAPSHOT_ROW)
    words = rows.view(np.uint64)
    res = np.zeros(1, L.RESULT)
    res["symbol"] = 2
    tape = [(0, 0), (300, 300 * 1_000_000), (300, 300 * 1_000_000),
            (500, 300 * 1_000_000 + 200 * 1_010_000)]
    for k, (volume, notional) in enumerate(tape * 2, start=1):
        res["seq"] = k
        res["kind"] = L.RES_TRADE if k % 2 else L.RES_QUOTE
        res["volume"] = volume
        res["notional"] = notional
        write_row(rows, words, res[0], k)
        row = rows[2]
        expected = notional / volume / L.PRICE_SCALE if volume else 0.0
        assert row["vwap"] == expected and row["volume"] == volume and row["last_seq"] == k
