"""Errors a user can cause: one clear line, a non-zero exit, no traceback."""
import os
import subprocess
import sys
import uuid

import pytest

import shmengine.market
from shmengine import layout as L
from shmengine.attach import Symbols, UnknownSymbol
from shmengine import shm
from shmengine.config import ConfigError, load, parse_cpu_list

from conftest import ROOT, cli, engine, unique


def _one_line_error(res, *needles):
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.parametrize("args, needle", [
    (["--symbols", "0"], "symbols must be between 1 and 10000"),
    (["--symbols", "20000"], "symbols must be between 1 and 10000"),
    (["--venues", "9"], "venues must be between 1 and 8"),
    (["--workers", "0"], "workers must be between 1 and 64"),
    (["--wait", "sleepy"], "wait must be 'spin' or 'adaptive'"),
    (["--rate", "-5"], "rate must be 0 (as fast as possible) to 1e+09 events/s"),
    (["--rate", "1e30"], "rate must be 0 (as fast as possible) to 1e+09"),  # pacing overflowed
    (["--rate", "nan"], "rate must be a finite number"),
    (["--duration", "inf"], "duration must be a finite number"),
    (["--signal-spread-bps", "nan"], "signal_spread_bps must be a finite number"),
    (["--cpus", "0,99"], "CPU 99 is not available"),
    (["--cpus", "a-b"], "bad CPU list"),
    (["--ring-capacity", "1000"], "ring_capacity must be a power of two"),
    (["--save-snapshot", "out.csv"], "save_snapshot must end in .npy or .parquet"),
    (["--name", "bad/name"], "bad engine name"),
    (["--bars", "1s,2s,3s"], "bar_intervals takes at most 2 durations"),
    (["--bars", "soon"], "bar_intervals must be a duration such as 250ms"),
    (["--bars=-1s"], "bar_intervals must be a duration"),
    (["--signal-spread-bps", "-1"], "signal_spread_bps must be >= 0"),
    (["--signal-ofi", "-5"], "signal_ofi must be between 0 and"),
    (["--kernel", "examples/momentum.py:momentum", "--no-analytics"],
     "kernels need analytics = true"),
    # what a run writes at its end is checked before it starts
    (["--save-snapshot", "/nonexistent/dir/t.npy"], "no directory /nonexistent/dir"),
    (["--summary-json", "/nonexistent/s.json"], "no directory /nonexistent"),
    (["--save-snapshot", "/proc/t.npy"], "cannot write in /proc"),
    # an interface the sockets would refuse only once the engine runs
    (["--publish", "udp://239.1.1.1:5000?interface=198.51.100.77"],
     "interface 198.51.100.77 is not an address of this host"),
    (["--source", "udp://239.1.1.1:5000?interface=eth0"], "interface must be an IPv4 address"),
    # settings the source would ignore
    (["--source", "itch:day.itch", "--rate", "1000"], "rate paces the synthetic market"),
    (["--source", "journal:j", "--symbols", "5"], "the symbols come from the journal"),
    (["--source", "itch:day.itch", "--symbols", "5"], "the symbols come from the ITCH file"),
    (["--source", "itch:day.itch", "--venues", "2"], "an ITCH file is one venue's feed"),
    (["--source", "udp://239.1.1.1:5000?retransmit=127.0.0.1:5001&symbols=publisher",
      "--symbols", "5"], "the symbols come from the publisher"),
    # ports and a ttl the sockets would refuse only once the engine runs
    (["--publish", "udp://239.1.1.1:5000?retransmit=70000"],
     "retransmission port must be 1..65535"),
    (["--publish", "udp://239.1.1.1:65535"], "by default the group's port + 1), got 65536"),
    (["--publish", "udp://239.1.1.1:5000?ttl=300"], "ttl must be at most 255"),
    (["--source", "udp://239.1.1.1:5000?retransmit=127.0.0.1:99999"], "port 1..65535"),
    (["--journal", "/proc/j/today"], "cannot write in /proc"),
    (["--journal", "/etc/hostname"], "is not a directory"),
])
def test_bad_run_values(args, needle):
    _one_line_error(cli("run", *args), needle)


@pytest.mark.parametrize("text, needle", [
    ('vwap_window = "10s"\nvwap_buckets = 3\n', "vwap_window (10000000000 ns) must divide"),
    ('ofi_window = "fast"\n', "ofi_window must be a duration"),
    ("rv_samples = 0\n", "rv_samples must be between 1 and"),
    ("depth_levels = 6\n", "depth_levels must be between 1 and 5"),
    ('impact_delay = "0s"\n', "impact_delay must be a positive duration"),
    ("kernel_state = 0\n", "kernel_state must be between 1 and"),
    ("kernels = 5\n", "kernels must be a list"),
    ("analytics = 1\n", "analytics must be true or false"),
])
def test_bad_analytics_config(tmp_path, text, needle):
    cfg = tmp_path / "engine.toml"
    cfg.write_text(text)
    _one_line_error(cli("run", cfg), needle)


def test_analytics_durations_parse():
    cfg = load(None, {"bar_intervals": "250ms,1m", "vwap_window": "2h", "vwap_buckets": 120,
                      "ofi_window": 0.5, "ofi_buckets": 5, "impact_delay": "1500us"})
    assert cfg.bar_intervals == [250_000_000, 60_000_000_000]
    assert cfg.vwap_window == 7_200_000_000_000 and cfg.ofi_window == 500_000_000
    assert cfg.impact_delay == 1_500_000


def test_bad_flag_is_a_usage_error():
    res = cli("run", "--bogus", "1")
    assert res.returncode == 2 and "unrecognized arguments: --bogus" in res.stderr
    assert "Traceback" not in res.stderr


def test_bad_config_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("symbols = [\n")
    _one_line_error(cli("run", bad), "is not valid TOML")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("simbols = 10\n")
    _one_line_error(cli("run", unknown), "unknown config key 'simbols' (did you mean symbols?)")
    for line, hint in (("bars = '1s'", "the flag --bars sets bar_intervals"),
                       ("ring-capacity = 1024", "write it ring_capacity"),
                       ("qqqq = 1", "known: analytics, bar_intervals")):
        unknown.write_text(line + "\n")
        _one_line_error(cli("run", unknown), hint)
    typed = tmp_path / "typed.toml"
    typed.write_text('symbols = "many"\n')
    _one_line_error(cli("run", typed), "symbols must be an integer")
    _one_line_error(cli("run", tmp_path / "missing.toml"), "not found")


def test_config_file_and_flags(tmp_path):
    f = tmp_path / "e.toml"
    f.write_text('name = "x"\nsymbols = 20\nworkers = 2\ncpus = [0]\nwait = "spin"\n')
    cfg = load(str(f), {"symbols": 30, "workers": None})
    assert (cfg.name, cfg.symbols, cfg.workers, cfg.cpus, cfg.wait) == ("x", 30, 2, [0], "spin")
    assert parse_cpu_list("0,2-4") == [0, 2, 3, 4]
    with pytest.raises(ConfigError):
        load(None, {"batch": 1 << 15, "ring_capacity": 1 << 15})


@pytest.mark.parametrize("command", [["status"], ["snapshot", "AAPL"], ["stop"]])
def test_engine_not_running(command):
    name = f"nothere{uuid.uuid4().hex[:6]}"
    cmd = [command[0], name, *command[1:]]
    _one_line_error(cli(*cmd), f"no engine named '{name}' is running", "shmengine run")


def test_unknown_symbol():
    with engine("--symbols", 20, "--rate", 10_000) as proc:
        _one_line_error(cli("snapshot", proc.name, "NOPE"), "unknown symbol 'NOPE'")
        _one_line_error(cli("snapshot", proc.name, "99999"), "symbol id 99999 out of range 0..19")
        # the same name in another case, or a letter off, is suggested
        name = shmengine.market.symbol_names(20)[3]
        _one_line_error(cli("snapshot", proc.name, name.lower()),
                        f"unknown symbol '{name.lower()}'", f"did you mean {name}")


def test_unknown_symbol_suggests_names_alike():
    symbols = Symbols(["NIF", "ZAU", "KTJ", "NIFA"])
    with pytest.raises(UnknownSymbol, match=r"\(4 symbols; did you mean NIF, NIFA\?"):
        symbols["nif"]
    with pytest.raises(UnknownSymbol, match=r"did you mean ZAU\?"):
        symbols["ZAV"]
    with pytest.raises(UnknownSymbol, match=r"\(4 symbols; e\.g\. NIF, ZAU, KTJ\)"):
        symbols["QQQQ"]


def test_foreign_segment_with_the_engines_name(engine_name):
    path = f"/dev/shm/shmengine.{engine_name}.meta"
    with open(path, "wb") as fh:
        fh.write(b"not an engine" * 100)
    os.chmod(path, 0o600)
    _one_line_error(cli("status", engine_name), "not a shmengine segment")
    _one_line_error(cli("run", "--name", engine_name, "--events", "10"), "already exists",
                    "shmengine cleanup")
    res = cli("cleanup", check=True)
    assert f"shmengine.{engine_name}.meta" in res.stdout
    assert not shm.engine_segments(engine_name)


def test_stale_segment_from_an_old_layout(engine_name):
    seg = shm.Segment.create(shm.segment_name(engine_name, "meta"), L.SEG_META, 4096)
    seg.header["version"] = L.LAYOUT_VERSION - 1 if L.LAYOUT_VERSION > 1 else 99
    seg.mark_ready()
    seg.close()
    _one_line_error(cli("snapshot", engine_name, "X"), "layout version", "cleanup")


def test_half_built_segment(engine_name):
    seg = shm.Segment.create(shm.segment_name(engine_name, "meta"), L.SEG_META, 4096)
    seg.header["creator_pid"] = 999_999  # no such process: a creator that died mid-way
    seg.close()
    _one_line_error(cli("status", engine_name), "half-built")
    res = cli("cleanup", check=True)
    assert "removed" in res.stdout
    assert not shm.engine_segments(engine_name)


def test_list_with_nothing_running_is_not_an_error():
    res = cli("list", check=True)
    assert res.returncode == 0


def test_snapshot_text_shows_analytics_and_user_fields():
    import numpy as np
    from shmengine.cli import format_row
    from shmengine.table import TABLE
    row = np.zeros(1, TABLE)[0]
    row["mid"], row["spread_bps"], row["microprice"] = 100.01, 2.0, 100.012
    row["bar_start"] = [-1, 0]
    row["bar_close"][1] = 100_0100
    row["signals"] = 1 << L.SIG_CROSSED
    row["user"][2] = 1.5
    text = format_row(row, "AAPL", 2, [1_000_000_000, 60_000_000_000])
    assert "mid 100.0100" in text and "microprice 100.0120" in text
    assert "bar 1s: none open" in text and "bar 60s open:" in text and "C 100.0100" in text
    assert "signals: crossed" in text and "[2] 1.5" in text
    assert "analytics" not in format_row(row, "AAPL", 2, None)


def test_a_reader_that_goes_away_is_not_an_error():
    # `shmengine doctor | head -1` style: the pipe closes before the output is done
    proc = subprocess.Popen([sys.executable, "-m", "shmengine.cli", "doctor"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_spin_on_fewer_cpus_than_processes_says_so():
    usable = len(os.sched_getaffinity(0))
    if usable > 16:
        pytest.skip(f"{usable} CPUs: oversubscribing them takes {usable} processes")
    workers = max(usable - 1, 1)  # with the feed and the aggregator, more processes than CPUs
    args = ("run", "--name", unique("spin"), "--symbols", 20, "--events", 2000,
            "--workers", workers)
    res = cli(*args, "--wait", "spin", check=True)
    assert f"wait spin with {workers + 2} processes on {usable} usable CPUs" in res.stderr
    assert "note:" in res.stderr and "Traceback" not in res.stderr
    res = cli(*args, "--wait", "adaptive", check=True)
    assert "note:" not in res.stderr
