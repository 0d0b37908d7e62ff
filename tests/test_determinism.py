"""Same seed and config, 1, 2 or 3 workers: identical table and stream."""
import numpy as np
import pytest

import shmengine

from conftest import cli, engine, wait_for

WALL_CLOCK_RESULT = {"recv_ts", "proc_ts"}
WALL_CLOCK_SNAPSHOT = {"last_recv_ts", "publish_ts"}
EVENTS = 300_000


def _final_state(workers):
    with engine("--symbols", 300, "--venues", 4, "--workers", workers, "--seed", 11,
                "--events", EVENTS, "--linger", "--bcast-capacity", 1 << 20,
                "--ring-capacity", 4096, "--batch", 512) as proc:
        with shmengine.attach(proc.name) as eng:
            wait_for(lambda: eng.state() == "stopped", 120, "the engine to drain")
            table = eng.table()
            sub = eng.subscribe(from_position=0)
            chunks = [sub.poll()]
            while len(chunks[-1]):
                chunks.append(sub.poll())
            stream = np.concatenate(chunks)
            assert eng.stats()["events"] == EVENTS
        cli("stop", proc.name, check=True)
    return table, stream


@pytest.fixture(scope="module")
def runs():
    return {w: _final_state(w) for w in (1, 2, 3)}


def _strip(arr, wall):
    keep = [n for n in arr.dtype.names if n not in wall]
    return arr[keep]


def test_stream_is_identical_for_1_2_3_workers(runs):
    base = _strip(runs[1][1], WALL_CLOCK_RESULT)
    assert len(base) > EVENTS // 2
    assert np.all(np.diff(base["seq"].astype(np.int64)) > 0)
    for w in (2, 3):
        other = _strip(runs[w][1], WALL_CLOCK_RESULT)
        assert len(other) == len(base)
        assert (other == base).all(), f"stream differs with {w} workers"


def test_table_is_identical_for_1_2_3_workers(runs):
    base = _strip(runs[1][0], WALL_CLOCK_SNAPSHOT)
    assert base["updates"].sum() == len(runs[1][1])
    assert (base["volume"] > 0).sum() > 100
    for w in (2, 3):
        assert (_strip(runs[w][0], WALL_CLOCK_SNAPSHOT) == base).all(), \
            f"table differs with {w} workers"


def test_table_is_the_last_result_of_each_symbol(runs):
    table, stream = runs[2]
    for sym in np.unique(stream["symbol"])[:50]:
        last = stream[stream["symbol"] == sym][-1]
        row = table[sym]
        assert row["last_seq"] == last["seq"]
        for f in ("bid_px", "bid_qty", "ask_px", "ask_qty", "volume", "notional", "trades"):
            assert row[f] == last[f]
        np.testing.assert_array_equal(row["level_ask_px"], last["level_ask_px"])
