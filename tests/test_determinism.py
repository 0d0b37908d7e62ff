"""Same seed and config, 1, 2 or 3 workers: identical table and stream, analytics included."""
import numpy as np
import pytest

import shmengine
from shmengine import layout as L
from shmengine.layout import RES_BAR, RES_CLEAR, RES_SIGNAL

from conftest import assert_same, cli, drained_stream, engine, wait_for

EVENTS = 300_000


def _final_state(workers):
    with engine("--symbols", 300, "--venues", 4, "--workers", workers, "--seed", 11,
                "--events", EVENTS, "--linger", "--bcast-capacity", 1 << 20,
                "--ring-capacity", 4096, "--batch", 512, "--bars", "10ms,100ms",
                "--signal-spread-bps", 20, "--signal-ofi", 20000) as proc:
        with shmengine.attach(proc.name) as eng:
            wait_for(lambda: eng.state() == "stopped", 120, "the engine to drain")
            table = eng.table()
            stream = drained_stream(eng)
            assert eng.stats()["events"] == EVENTS
        cli("stop", proc.name, check=True)
    return table, stream


@pytest.fixture(scope="module")
def runs():
    return {w: _final_state(w) for w in (1, 2, 3)}




def _book_results(stream):
    return stream[stream["kind"] <= RES_CLEAR]


def test_stream_is_identical_for_1_2_3_workers(runs):
    base = runs[1][1]
    results = _book_results(base)
    assert len(results) > EVENTS // 2
    assert np.all(np.diff(results["seq"].astype(np.int64)) > 0)
    assert np.all(np.diff(base["seq"].astype(np.int64)) >= 0)
    assert (base["kind"] == RES_BAR).sum() > 100
    assert (base["kind"] == RES_SIGNAL).sum() > 10
    for w in (2, 3):
        assert_same(runs[w][1], base, L.WALL_CLOCK_FIELDS, f"stream with {w} workers")


def test_table_is_identical_for_1_2_3_workers(runs):
    base = runs[1][0]
    assert base["updates"].sum() == len(_book_results(runs[1][1]))
    assert base["an_updates"].sum() == len(_book_results(runs[1][1]))
    assert (base["volume"] > 0).sum() > 100
    assert np.isfinite(base["microprice"]).sum() > 100
    for w in (2, 3):
        assert_same(runs[w][0], base, L.WALL_CLOCK_FIELDS, f"table with {w} workers")


def test_analytics_rows_are_as_of_the_last_event(runs):
    """After the drain, each symbol's analytics row has seen its last result."""
    table = runs[3][0]
    np.testing.assert_array_equal(table["an_seq"], table["last_seq"])


def test_table_is_the_last_result_of_each_symbol(runs):
    table, stream = runs[2]
    for sym in np.unique(stream["symbol"])[:50]:
        results = _book_results(stream)
        last = results[results["symbol"] == sym][-1]
        row = table[sym]
        assert row["last_seq"] == last["seq"]
        for f in ("bid_px", "bid_qty", "ask_px", "ask_qty", "volume", "notional", "trades"):
            assert row[f] == last[f]
        np.testing.assert_array_equal(row["level_ask_px"], last["level_ask_px"])
