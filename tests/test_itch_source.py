"""An engine fed from an ITCH file equals one fed the same events by the synthetic market."""
import time

import numpy as np

from shmengine import layout as L
from shmengine.itch_writer import synthetic_itch

from conftest import assert_same, cli, final_state, unique

EVENTS = 30_000
SYMBOLS = 40
SEED = 11
DAY = "2026-01-02"  # the synthetic market's day (itch_writer.MARKET_DATE_NS)
STATUS_BEFORE = 3   # the writer's start-of-day system events: O, S, Q


def test_itch_run_equals_the_synthetic_run(tmp_path):
    path = tmp_path / "day.itch.gz"
    synthetic_itch(str(path), EVENTS, SYMBOLS, SEED, gzip=True)
    itch_table, itch_stream, st = final_state("--source", f"itch:{path}", "--itch-date", DAY,
                                         "--workers", 2)
    table, stream, _ = final_state("--symbols", SYMBOLS, "--venues", 1, "--seed", SEED,
                              "--events", EVENTS, "--workers", 1)

    status = itch_stream[itch_stream["kind"] == L.RES_STATUS].view(L.STATUS_RECORD)
    assert [chr(m) for m in status["message"]] == ["S"] * 6
    assert "".join(chr(c) for c in status["code"]) == "OSQMEC"
    rest = itch_stream[itch_stream["kind"] != L.RES_STATUS].copy()
    rest["seq"] -= STATUS_BEFORE
    assert_same(rest, stream, L.WALL_CLOCK_FIELDS, "stream")
    np.testing.assert_array_equal(itch_table["last_seq"], table["last_seq"] + STATUS_BEFORE)
    np.testing.assert_array_equal(itch_table["an_seq"], table["an_seq"] + STATUS_BEFORE)
    assert_same(itch_table, table, L.WALL_CLOCK_FIELDS + ("last_seq", "an_seq"), "table")
    assert sum(p["bad_events"] for p in st["processes"]) == 0


def test_itch_replay_paced_by_its_own_clock(tmp_path):
    path = tmp_path / "day.itch"
    events = synthetic_itch(str(path), 20_000, 10, 3)
    span_s = (int(events["exch_ts"][-1]) - int(events["exch_ts"][0])) / 1e9
    speed = span_s / 1.5  # the file's day in 1.5 s
    t0 = time.monotonic()
    res = cli("run", "--name", unique("ip"), "--source", f"itch:{path}",
              "--speed", speed, check=True)
    took = time.monotonic() - t0
    assert "20,006 events" in res.stdout
    assert took >= 1.4, f"a 1.5 s replay took {took:.2f} s"


def test_symbols_listed_late_in_the_day(tmp_path):
    from test_itch import _listed_late
    path = _listed_late(tmp_path / "late.itch")
    table, _, _ = final_state("--source", f"itch:{path}")  # the directory before the orders
    assert len(table) == 1 and table["updates"][0] == 2
    table, _, _ = final_state("--source", f"itch:{path}", "--itch-directory", "whole")
    assert len(table) == 2 and list(table["updates"]) == [2, 1]


def test_bad_itch_sources(tmp_path):
    empty = tmp_path / "empty.itch"
    empty.write_bytes(b"")
    res = cli("run", "--source", f"itch:{empty}")
    assert res.returncode != 0 and "no stock directory" in res.stderr
    assert "Traceback" not in res.stderr
    res = cli("run", "--source", "itch:x", "--itch-date", "2026-13-01")
    assert res.returncode != 0 and "itch_date must be a day" in res.stderr
    res = cli("run", "--itch-date", "2026-01-02")
    assert res.returncode != 0 and "needs source itch:FILE" in res.stderr
    for path, needle in ((tmp_path / "nope.itch", "not found"), (tmp_path, "not a regular file")):
        res = cli("run", "--source", f"itch:{path}")
        assert res.returncode != 0 and needle in res.stderr and "Traceback" not in res.stderr
    res = cli("run", "--itch-directory", "whole")
    assert res.returncode != 0 and "needs source itch:FILE" in res.stderr


def test_a_damaged_file_runs_to_its_end_and_says_what_it_skipped(tmp_path):
    path = tmp_path / "day.itch"
    synthetic_itch(str(path), 20_000, 10, 3)
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 40] = bytes(range(200, 240))  # a message or two, prefixes and all
    path.write_bytes(bytes(data))
    res = cli("run", "--name", unique("dmg"), "--source", f"itch:{path}", check=True)
    assert "Traceback" not in res.stderr
    warning = [ln for ln in res.stderr.splitlines() if "warning" in ln]
    assert len(warning) == 1 and f"ITCH file {path}: skipped " in warning[0], res.stderr
    assert f"bytes {len(data):,}" in res.stdout  # read to the end


def test_a_file_cut_off_exits_1_after_running_what_it_holds(tmp_path):
    path = tmp_path / "day.itch.gz"
    synthetic_itch(str(path), 20_000, 10, 3, gzip=True)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # a download cut in half
    res = cli("run", "--name", unique("cut"), "--source", f"itch:{path}")
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert "its gzip stream is damaged" in res.stderr
    assert f"source itch:{path} could not be read to its end" in res.stderr
    ran = int(res.stdout.split(" events in ")[0].split()[-1].replace(",", ""))
    assert 0 < ran < 20_000
