"""The pyperf suite runs end to end with one value per benchmark and leaves nothing behind.

These check names, units and clean-up, not speed: timings live in benchmarks/.
"""
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import psutil
import pyperf

from conftest import ROOT, wait_for
from shmengine import shm

SUITE = os.path.join(ROOT, "benchmarks", "perf_suite.py")
QUICK = ["--debug-single-value", "-q"]
RING = [f"ring_publish_consume_batch{b}" for b in (1, 8, 64, 256, 1024)]
EXPECTED = RING + ["seqlock_read_row", "seqlock_read_table_1000", "attach_snapshot",
                   "attach_table", "book_process_books", "book_process_analytics",
                   "market_generate_into"]


def suite_segments():
    """Segments the suite may create: its engine's and its private ones."""
    try:
        return {e for e in os.listdir(shm.SHM_DIR) if e.startswith(shm.PREFIX + "perfsuite")}
    except FileNotFoundError:
        return set()


def group_members(pgid):
    members = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid:
                members.append(p)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return members


@contextmanager
def running_suite(*args):
    """The suite in its own process group; on leaving, nothing of it may remain."""
    before = suite_segments()
    proc = subprocess.Popen([sys.executable, SUITE, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        deadline = time.monotonic() + 30
        while group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        stragglers = group_members(proc.pid)
        if stragglers:
            os.killpg(proc.pid, signal.SIGKILL)
        left = suite_segments() - before
        for seg in left:
            shm.unlink("/" + seg)
        assert not stragglers, f"processes left behind: {[p.pid for p in stragglers]}"
        assert not left, f"segments left behind: {sorted(left)}"


def run_suite(*args, timeout=240):
    with running_suite(*args) as proc:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err


def check_values(path, names):
    suite = pyperf.BenchmarkSuite.load(str(path))
    assert sorted(suite.get_benchmark_names()) == sorted(names)
    for bench in suite.get_benchmarks():
        values = bench.get_values()
        assert values and all(v > 0 for v in values), bench.get_name()
    return suite


def test_full_suite_writes_every_benchmark(tmp_path):
    out = tmp_path / "run.json"
    code, stdout, stderr = run_suite(*QUICK, "-o", out)
    assert code == 0, stderr
    suite = check_values(out, EXPECTED)
    for name in RING:
        bench = suite.get_benchmark(name)
        batch = int(name.rsplit("batch", 1)[1])
        assert bench.get_runs()[0].get_metadata()["inner_loops"] == batch, \
            f"{name}: not reported per event"


def test_filter_by_full_name_and_prefix(tmp_path):
    out = tmp_path / "part.json"
    code, _, stderr = run_suite(*QUICK, "-b", "ring_publish_consume_batch1", "-b", "seqlock",
                                "-o", out)
    assert code == 0, stderr
    check_values(out, ["ring_publish_consume_batch1", "seqlock_read_row",
                       "seqlock_read_table_1000"])


def test_unknown_benchmark_is_one_line_error(tmp_path):
    out = tmp_path / "none.json"
    code, stdout, stderr = run_suite("-b", "nosuch", "-o", out, timeout=60)
    assert code == 2
    assert stderr.strip().count("\n") == 0 and "error: -b nosuch" in stderr
    assert "Traceback" not in stderr
    assert not out.exists()


def test_engine_stopped_when_suite_is_terminated(tmp_path):
    before = {n for n in shm.engine_names() if n.startswith("perfsuite")}
    with running_suite(*QUICK, "-b", "attach", "-o", tmp_path / "cut.json") as proc:
        def started():
            if proc.poll() is not None:
                raise AssertionError(f"suite exited early ({proc.returncode}):\n"
                                     f"{proc.stderr.read()}")
            return {n for n in shm.engine_names() if n.startswith("perfsuite")} - before
        names = wait_for(started, 120, "the suite's engine to appear")
        proc.terminate()
        proc.wait(120)
        assert proc.returncode != 0
        for name in names:
            assert not shm.engine_segments(name), f"engine {name} still has segments"
