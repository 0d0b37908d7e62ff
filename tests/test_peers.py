"""The peer pipelines of benchmarks/peers end with the engine's snapshot table.

Each peer runs the engine's kernels behind another transport; on the same
stream its final table must equal the engine's in every field but the
wall-clock ones, and the comparison must catch any other difference.
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import psutil
import pytest

from conftest import ROOT

sys.path.insert(0, ROOT)
from benchmarks.peers import engine, pipeline, tables  # noqa: E402
from shmengine import layout as L  # noqa: E402

SHAPE = dict(symbols=50, venues=2, workers=2, seed=3)
EVENTS = 20_000


def _leftovers():
    return (set(glob.glob(os.path.join(tempfile.gettempdir(), "shme-peers-*"))),
            set(glob.glob("/dev/shm/shmengine.peers*")))


@pytest.fixture(scope="module")
def reference():
    before = _leftovers()
    ref = engine.run(EVENTS, timeout_s=120, **SHAPE)
    assert _leftovers() == before
    assert ref["events"] == EVENTS
    return ref


@pytest.mark.parametrize("key", list(pipeline.PIPELINES))
def test_peer_ends_with_the_engines_table(key, reference):
    before = _leftovers()
    figures = pipeline.run(key, EVENTS, timeout_s=60, **SHAPE)
    assert not psutil.Process().children(recursive=True), "a peer process was left running"
    assert _leftovers() == before, "a socket directory or segment was left behind"
    assert figures["events"] == EVENTS
    assert figures["results"] == reference["results"]
    assert figures["latency_samples"] == figures["results"]
    assert tables.differences(reference["table"], figures["table"]) == []
    assert set(figures["cpu_s"]) == {"feed", "worker 0", "worker 1", "aggregator"}
    assert all(v > 0 for v in figures["cpu_s"].values())


def test_a_different_table_is_caught(reference):
    table = reference["table"]
    assert tables.differences(table, table.copy()) == []
    moved = table.copy()
    row = int(np.flatnonzero(moved["updates"])[0])
    moved["bid_px"][row] += 1
    moved["venue_ask_qty"][row, 0] += 1
    assert tables.differences(table, moved) == ["bid_px (1 rows)", "venue_ask_qty (1 rows)"]
    clocked = table.copy()
    clocked["publish_ts"] += 1
    clocked["last_recv_ts"] -= 1
    assert tables.differences(table, clocked) == []
    assert tables.differences(table, table[:-1]) == [f"row count ({len(table)} vs "
                                                     f"{len(table) - 1})"]

    empty = np.zeros(len(table), L.SNAPSHOT_ROW)
    empty["symbol"] = np.arange(len(table))
    empty["bid_venue"] = empty["ask_venue"] = L.NO_VENUE
    assert "updates (" in " ".join(tables.differences(table, empty))


def test_compare_runs_and_reports_every_pipeline():
    before = _leftovers()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "peers.json")
        res = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks/peers/compare.py"),
                              "--events", "6000", "--events-per-message-run", "3000", "--rate",
                              "20000", "--symbols", "40", "--venues", "2", "--only", "zmq",
                              "--json", out], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        rows = json.load(open(out))["rows"]
    assert [r["pipeline"] for r in rows] == ["engine", "engine", "zmq-batch", "zmq-1"]
    assert [r["events"] for r in rows] == [6000, 3000, 6000, 3000]
    assert all(r["same_table"] for r in rows[2:])
    assert "zmq ipc batched" in res.stdout and "DIFFERS" not in res.stdout
    assert _leftovers() == before


def test_compare_rejects_an_unknown_peer_in_one_line():
    res = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "peers", "compare.py"),
                          "--only", "carrier-pigeon"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "no peer 'carrier-pigeon'" in res.stderr and "Traceback" not in res.stderr
