"""End to end: the CLI starts an engine, other processes attach, it stops clean."""
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest

import shmengine
from shmengine import layout as L
from shmengine.market import symbol_names
from shmengine.table import TABLE

from conftest import ROOT, cli, engine, events_taken, segments_of, unique, wait_for


def _no_children_left(proc):
    for c in proc.children_at_start:
        assert not c.is_running() or c.status() == psutil.STATUS_ZOMBIE, \
            f"child {c.pid} still running"


def test_attach_follow_and_stop():
    with engine("--symbols", 200, "--workers", 2, "--rate", 200_000) as proc:
        name = proc.name
        with shmengine.attach(name) as eng:
            assert len(eng.symbols) == 200
            sym = eng.symbols.name(0)
            assert eng.symbols[sym] == 0
            sub = eng.subscribe()
            seen, kinds = [], []
            for rec in sub:
                seen.append(int(rec["seq"]))
                kinds.append(int(rec["kind"]))
                if len(seen) >= 2000:
                    break
            seen, kinds = np.array(seen), np.array(kinds)
            assert np.all(np.diff(seen) >= 0), "stream not in sequence order"
            # bars and signals share the seq of the result that caused them
            assert np.all(np.diff(seen[kinds <= L.RES_CLEAR]) > 0), "results repeat a seq"
            t1 = eng.table()
            wait_for(lambda: eng.table()["updates"].sum() > t1["updates"].sum(), 10,
                     "snapshots to change")
            t2 = eng.table()
            changed = np.flatnonzero(t2["updates"] != t1["updates"])
            assert len(changed) > 0
            row = eng.snapshot(int(changed[0]))
            assert row["symbol"] == changed[0] and row["updates"] > 0
            assert row["an_updates"] > 0 and np.isfinite(row["mid"])
            st = eng.stats()
            assert st["state"] == "running" and st["events"] > 0
            roles = [p["role"] for p in st["processes"]]
            assert roles == [L.ROLE_FEED, L.ROLE_WORKER, L.ROLE_WORKER, L.ROLE_AGGREGATOR]
        res = cli("snapshot", name, sym, check=True)
        assert sym in res.stdout and "bid" in res.stdout and "microprice" in res.stdout
        other = cli("snapshot", name, "7", check=True)  # by id, as streams and tables name them
        assert other.stdout.split()[0] == symbol_names(200)[7] != sym
        res = cli("status", name, check=True)
        assert "worker 1" in res.stdout and "latency" in res.stdout
        assert "analytics: on" in res.stdout and "user dropped 0" in res.stdout
        st = json.loads(cli("status", name, "--json", "--interval", "0.2", check=True).stdout)
        assert st["name"] == name and st["state"] == "running" and st["events"] > 0
        assert [p["label"] for p in st["processes"]] == ["feed", "worker 0", "worker 1",
                                                         "aggregator"]
        assert all(p["events_per_s"] > 0 for p in st["processes"])
        assert set(st["latency_ns"]) == {"50", "90", "99", "99.9", "99.99"}
        res = cli("list", check=True)
        assert name in res.stdout and "running" in res.stdout
        listed = {e["name"]: e for e in json.loads(cli("list", "--json", check=True).stdout)}
        assert listed[name]["state"] == "running" and listed[name]["workers"] == 2
        assert listed[name]["pid"] == proc.pid and listed[name]["symbols"] == 200
        res = cli("stop", name, check=True)
        assert "stopped" in res.stdout
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "events/s" in out and "p99" in out
        assert not segments_of(name)
        _no_children_left(proc)


def test_a_subscription_keeps_only_the_symbols_and_kinds_asked_for():
    with engine("--symbols", 30, "--rate", 200_000, "--bars", "100ms") as proc:
        with shmengine.attach(proc.name) as eng:
            names = eng.symbols.names
            wanted = {eng.symbols[names[2]], 5}
            got = []
            for rec in eng.subscribe(symbols=[names[2], 5], kinds=["trade", L.RES_BAR]):
                got.append((int(rec["symbol"]), int(rec["kind"])))
                if len(got) >= 300 and len({k for _, k in got}) == 2 or len(got) == 5000:
                    break
            assert {s for s, _ in got} == wanted
            assert {k for _, k in got} == {L.RES_TRADE, L.RES_BAR}
            sub = eng.subscribe(symbols=names[7])
            batch = np.zeros(0, L.RESULT)
            t0 = time.monotonic()
            while len(batch) == 0 and time.monotonic() - t0 < 30:
                batch = sub.poll()
            assert len(batch) and (batch["symbol"] == 7).all()
            with pytest.raises(ValueError, match="unknown record kind 'trades'"):
                eng.subscribe(kinds="trades")
            with pytest.raises(shmengine.UnknownSymbol):
                eng.subscribe(symbols=["NOPE"])
            with pytest.raises(shmengine.UnknownSymbol):
                eng.snapshot(True)  # not symbol id 1
            for ahead in (-1, 10**15):  # (a position in the future used to say "lapped")
                with pytest.raises(ValueError, match="from_position must be a position"):
                    eng.subscribe(from_position=ahead)


def test_a_closed_engine_says_so_and_what_was_read_stays():
    with engine("--symbols", 20, "--rate", 50_000) as proc:
        eng = shmengine.attach(proc.name)
        sub = eng.subscribe()
        name = eng.symbols.name(0)
        row, table = eng.snapshot(name), eng.table()
        eng.close()
        eng.close()  # a second close is nothing
        assert eng.closed
        for use in (lambda: eng.snapshot(name), eng.table, eng.stats, eng.subscribe,
                    lambda: sub.poll(), lambda: next(iter(sub))):
            with pytest.raises(ValueError, match=f"engine '{proc.name}' is closed"):
                use()
        assert row["symbol"] == 0 and len(table) == 20  # copies, not views of the mapping
    for bad in (123, None, "", "../x"):
        with pytest.raises(ValueError, match="bad engine name"):
            shmengine.attach(bad)


def test_worker_killed_stops_the_engine_with_a_reason():
    with engine("--symbols", 100, "--workers", 2, "--rate", 100_000) as proc:
        with shmengine.attach(proc.name) as eng:
            pid = [p["pid"] for p in eng.stats()["processes"] if p["role"] == L.ROLE_WORKER][1]
            stream = iter(eng.subscribe())
            next(stream)
            os.kill(pid, signal.SIGKILL)
            # a strategy following the stream learns that it ended badly, not that it ended
            with pytest.raises(shmengine.EngineDied, match="failed .* without draining"):
                for _ in stream:
                    pass
            assert eng.state() == "failed"
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1
        assert f"worker 1 (pid {pid}) killed by SIGKILL" in err
        assert "Traceback" not in err
        assert not segments_of(proc.name)
        _no_children_left(proc)


@pytest.mark.parametrize("to", ["group", "worker"])
def test_sigterm_to_the_group_or_to_one_process_drains_the_engine(to):
    # `timeout`, systemd (KillMode=control-group) and `kill -TERM -PGID` signal every
    # process at once; a user may signal just one
    name = unique("term")
    proc = subprocess.Popen([sys.executable, "-m", "shmengine.cli", "run", "--name", name,
                             "--symbols", "50", "--rate", "100000"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
    try:
        wait_for(lambda: events_taken(name) > 10_000, 120, "the engine to run")
        if to == "group":
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            worker = [c for c in psutil.Process(proc.pid).children()
                      if c.name() == "shme-worker0"]
            worker[0].send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and err == "", err
    assert "events/s" in out and "latency" in out
    assert not segments_of(name)


def test_supervisor_killed_then_cleanup():
    with engine("--symbols", 100, "--workers", 1, "--rate", 100_000) as proc:
        name = proc.name
        eng = shmengine.attach(name)
        stream = iter(eng.subscribe())
        next(stream)
        assert eng.state() == "running"
        proc.kill()
        proc.wait()
        for c in proc.children_at_start:  # parent-death signal takes them down
            c.wait(30)
        with pytest.raises(shmengine.EngineDied, match=f"supervisor, pid {proc.pid}, is gone"):
            for _ in stream:
                pass
        assert eng.state() == "dead"
        sub = eng.subscribe()  # a poll() loop learns it too, within Subscription.CHECK_S
        with pytest.raises(shmengine.EngineDied, match="is gone"):
            t0 = time.monotonic()
            while time.monotonic() - t0 < 10:
                sub.poll()
        eng.close()
        assert segments_of(name)
        res = cli("list", check=True)
        assert name in res.stdout and "dead" in res.stdout
        res = cli("status", name)
        assert res.returncode == 1 and "not running" in res.stderr and "cleanup" in res.stderr
        res = cli("cleanup", check=True)
        assert "removed" in res.stdout
        assert not segments_of(name)


def test_events_limit_and_saved_snapshot(tmp_path):
    import pyarrow.parquet as pq
    path = tmp_path / "final.parquet"
    res = cli("run", "--name", f"tsave{os.getpid()}", "--symbols", 50, "--events", 100_000,
              "--save-snapshot", path, check=True)
    assert "100,000 events" in res.stdout
    table = pq.read_table(path)
    assert table.num_rows == 50
    cols = table.column_names
    assert {"name", "bid_px", "ask_px", "volume", "vwap", "level_bid_px", "microprice",
            "venue_volume", "bar_close"} <= set(cols)
    vol = table.column("volume").to_numpy()
    assert vol.sum() > 0
    npy = tmp_path / "final.npy"
    cli("run", "--name", f"tsave{os.getpid()}", "--symbols", 50, "--events", 100_000,
        "--save-snapshot", npy, check=True)
    arr = np.load(npy)
    assert arr.dtype == TABLE and len(arr) == 50
    np.testing.assert_array_equal(arr["volume"], vol)


def test_a_run_over_before_the_supervisor_looks_is_not_called_unstarted():
    # 1,000 events are through in milliseconds: every process may be stopped by the
    # time the supervisor first reads their states
    for _ in range(3):
        res = cli("run", "--name", unique("short"), "--symbols", 50, "--workers", 2,
                  "--events", 1000, check=True)
        assert "1,000 events" in res.stdout and "still starting" not in res.stdout, res.stdout


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB file system: room for a small table, not for a large one."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {res.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("suffix", ["parquet", "npy"])
def test_a_full_disk_at_the_end_keeps_the_summary_and_leaves_no_file(tiny_disk, suffix):
    path = tiny_disk / f"final.{suffix}"
    name = f"tfull{os.getpid()}"
    res = cli("run", "--name", name, "--symbols", 1000, "--events", 100_000,
              "--save-snapshot", path, "--summary-json", tiny_disk / "summary.json")
    assert res.returncode == 1
    assert "100,000 events" in res.stdout  # the summary came first
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"could not write {path}" in lines[0], res.stderr
    assert os.listdir(tiny_disk) == []  # no partial table, and no summary after it failed
    assert not segments_of(name)
    # a table that fits is written whole
    small = tiny_disk / f"small.{suffix}"
    cli("run", "--name", name, "--symbols", 10, "--events", 10_000, "--save-snapshot", small,
        check=True)
    assert os.listdir(tiny_disk) == [small.name]


def test_a_full_disk_stops_the_journal_not_the_engine(tiny_disk):
    name = f"tjfull{os.getpid()}"
    res = cli("run", "--name", name, "--symbols", 100, "--events", 300_000,
              "--journal", tiny_disk / "j")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "300,000 events" in res.stdout  # every event went through
    assert "journal: STOPPED by a write error" in res.stdout
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 2, res.stderr
    assert f"journal {tiny_disk / 'j'} stopped after taking" in lines[0]
    assert "No space left on device" in lines[0] and "--repair" in lines[0]
    assert "the journal" in lines[1] and "stopped early" in lines[1]
    assert not segments_of(name)
    check = cli("journal", "check", tiny_disk / "j")
    assert "truncated" in check.stdout + check.stderr


def test_a_child_that_the_system_refuses_says_so_in_one_line():
    import socket
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("0.0.0.0", 0))  # the retransmission server's port, held by another socket
    port = taken.getsockname()[1]
    try:
        name = f"tport{os.getpid()}"
        res = cli("run", "--name", name, "--symbols", 50, "--duration", 5, "--publish",
                  f"udp://239.1.1.1:{port - 1}?interface=127.0.0.1&retransmit={port}")
    finally:
        taken.close()
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 2, res.stderr
    assert lines[0].startswith("shmengine: shme-feed: ") and "Address already in use" in lines[0]
    assert "feed" in lines[1] and "exited with status 1" in lines[1]
    assert not segments_of(name)


def test_sigint_while_the_kernels_compile_stops_at_once(tmp_path):
    name = f"tcold{os.getpid()}"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))  # a cold cache
    proc = subprocess.Popen([sys.executable, "-m", "shmengine.cli", "run", "--name", name,
                             "--symbols", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env=env)
    try:
        line = proc.stdout.readline()  # said after 2 s of compiling
        assert line.startswith("compiling the engine's kernels"), line
        proc.send_signal(signal.SIGINT)
        t = time.monotonic()
        out, err = proc.communicate(timeout=30)
        assert time.monotonic() - t < 10  # not after the compile (tens of seconds)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"engine {name} stopped before it started" in out
    assert "Traceback" not in err
    assert not segments_of(name)


def test_sigint_drains_and_exits_zero():
    with engine("--symbols", 100, "--workers", 2) as proc:
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "events/s" in out
        assert not segments_of(proc.name)


def test_hung_worker_is_detected(tmp_path):
    cfg = tmp_path / "engine.toml"
    cfg.write_text("symbols = 50\nworkers = 2\nrate = 50000.0\nheartbeat_timeout = 1.5\n")
    with engine(cfg) as proc:
        with shmengine.attach(proc.name) as eng:
            pid = [p["pid"] for p in eng.stats()["processes"] if p["role"] == L.ROLE_WORKER][0]
        os.kill(pid, signal.SIGSTOP)
        # a stop asked of it meanwhile does not say it stopped
        res = cli("stop", proc.name)
        assert res.returncode == 1 and "failed instead of draining" in res.stderr, res.stderr
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1
        assert f"worker 0 (pid {pid}) sent no heartbeat" in err and "hung" in err
        assert not segments_of(proc.name)
        _no_children_left(proc)


def test_processes_are_pinned_where_asked():
    cpus = sorted(os.sched_getaffinity(0))
    want = [cpus[-1], cpus[0], cpus[-1], cpus[0]]  # feed, worker 0, worker 1, aggregator
    with engine("--symbols", 50, "--workers", 2, "--events", 20_000, "--linger",
                "--cpus", ",".join(map(str, want))) as proc:
        with shmengine.attach(proc.name) as eng:
            wait_for(lambda: eng.state() == "stopped", 60, "the engine to drain")
            procs = eng.stats()["processes"]
            assert [p["cpu"] for p in procs] == want
            for p in procs:
                assert p["pid"] > 0 and p["state"] == L.RUN_STOPPED

        cli("stop", proc.name, check=True)


def test_a_supervisor_killed_but_not_reaped_counts_as_gone():
    import subprocess
    import sys
    from shmengine.supervisor import engine_alive
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, 30,
                 "the child to exit unreaped")
        info = np.zeros((), L.ENGINE_INFO)
        info["supervisor_pid"] = child.pid
        info["supervisor_start"] = int(psutil.Process(child.pid).create_time() * 1000)
        assert not engine_alive(info)
        info["supervisor_pid"] = os.getpid()
        info["supervisor_start"] = int(psutil.Process().create_time() * 1000)
        assert engine_alive(info)
    finally:
        child.wait()


def test_process_age_counts_from_the_process_start():
    # The start-up figure in every summary is this age: it must not carry the
    # whole-second rounding of the boot time that psutil's create_time adds.
    code = ("import time; from shmengine.supervisor import process_age_s; "
            "print(time.monotonic() - process_age_s())")
    launched = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    started = float(out)
    # a clock tick (10 ms) of rounding and the fork and exec
    assert -0.02 <= started - launched < 0.1, started - launched


def test_a_reader_that_goes_away_does_not_stop_the_run(tmp_path):
    # `shmengine run | head -1`: the pipe closes after the first line
    table = tmp_path / "t.npy"
    proc = subprocess.Popen(
        [sys.executable, "-m", "shmengine.cli", "run", "--name", unique("bp"), "--events",
         "300000", "--save-snapshot", str(table)], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("engine ")
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err
    assert np.load(table)["updates"].sum() > 0


@pytest.mark.parametrize("paced", [False, True])
def test_an_aggregator_on_the_feeds_cpu_yields_to_it_when_flat_out(paced):
    cpus = sorted(os.sched_getaffinity(0))
    plan = [cpus[0], cpus[-1], cpus[0]]  # feed, worker, aggregator
    rate = ("--rate", 100_000) if paced else ()
    with engine("--symbols", 50, "--duration", 60, *rate,
                "--cpus", ",".join(map(str, plan))) as proc:
        with shmengine.attach(proc.name) as eng:
            wait_for(lambda: eng.state() == "running", 60, "the engine to run")
            pids = [p["pid"] for p in eng.stats()["processes"]]
            policies = [os.sched_getscheduler(pid) for pid in pids]
            shown = cli("status", proc.name, "--interval", "0.1", check=True).stdout
        cli("stop", proc.name, check=True)
        aggregator = next(ln for ln in shown.splitlines() if ln.startswith("aggregator"))
        assert aggregator.split()[3] == ("normal" if paced else "batch"), shown
    agg = os.SCHED_OTHER if paced else os.SCHED_BATCH
    assert policies == [os.SCHED_OTHER, os.SCHED_OTHER, agg], policies


def test_processes_are_named_for_ps_and_top():
    with engine("--symbols", 50, "--workers", 2, "--duration", 60) as proc:
        with shmengine.attach(proc.name) as eng:
            wait_for(lambda: eng.state() == "running", 60, "the engine to run")
            pids = [p["pid"] for p in eng.stats()["processes"]]
            names = [open(f"/proc/{pid}/comm").read().strip() for pid in pids]
        cli("stop", proc.name, check=True)
    assert names == ["shme-feed", "shme-worker0", "shme-worker1", "shme-aggregator"]


def test_a_slow_start_says_it_is_compiling():
    from shmengine.supervisor import notice_if_slow
    threads = threading.active_count()
    out = io.StringIO()
    with notice_if_slow(0.05, "compiling", out):
        time.sleep(0.3)
    with notice_if_slow(5.0, "not shown", out):
        pass  # left at once: the notice is cancelled, its thread gone
    assert out.getvalue() == "compiling\n"
    assert threading.active_count() == threads
