"""`shmengine top` (one frame for scripts, and the live view in a terminal) and the
process names it and `shmengine status` show."""
import os
import pty
import re
import select
import subprocess
import sys
import time

import numpy as np

from shmengine import layout as L
from shmengine.cli import sched_policy
from shmengine.stats import proc_label

from conftest import ROOT, cli, engine


def _section(out, title, next_title):
    return out.split(f"\n{title}")[1].split(f"\n{next_title}")[0]


def _rows(text, name_words):
    """{first word(s): the other cells} of a table's body lines."""
    rows = {}
    body = re.split(r"─+ *\n", text, maxsplit=1)[1]  # below the column names' rule
    for ln in body.splitlines():
        cells = ln.split()
        if len(cells) > 2:
            key = " ".join(cells[:1 + (cells[0] == "worker")]) if name_words else cells[0]
            rows[key] = cells[1 + (cells[0] == "worker" and name_words):]
    return rows


def test_once_shows_processes_rings_latency_and_symbols():
    with engine("--symbols", 200, "--workers", 2, "--rate", 100_000) as proc:
        res = cli("top", proc.name, "--once", "--interval", 0.5, "--symbols", 5, check=True)
    out = res.stdout
    assert f"engine {proc.name}" in out and "running" in out
    procs = _rows(_section(out, "processes", "rings"), 1)
    for label in ("feed", "worker 0", "worker 1", "aggregator"):
        assert label in procs, f"no {label} line"
    feed = procs["feed"]
    # pid, pinned core, cpu %, events/s: the feed runs at the paced rate
    assert int(feed[0]) in {c.pid for c in proc.children_at_start}
    assert 50_000 < int(feed[3].replace(",", "")) < 150_000
    rings = _rows(_section(out, "rings", "latency since start"), 0)
    assert sorted(rings) == ["in.0", "in.1", "out.0", "out.1"]
    for fill, capacity in ((r[0], r[1]) for r in rings.values()):
        assert 0 <= int(fill.replace(",", "")) <= int(capacity.replace(",", ""))
    stages = _rows(_section(out, "latency since start", "most active symbols"), 0)
    assert sorted(stages) == sorted(["total", "feed", "ring", "worker", "merge"])
    for cells in stages.values():
        p50, p99 = (float(c.replace(",", "")) for c in cells[:2])
        assert 0 <= p50 <= p99
    busiest = [ln for ln in out.split("most active symbols")[1].splitlines()
               if re.match(r"\s+[A-Z]+\s+[\d,]+\s", ln)]
    assert 1 <= len(busiest) <= 5
    rates = [int(ln.split()[1].replace(",", "")) for ln in busiest]
    assert rates == sorted(rates, reverse=True) and rates[0] > 0


def _read_until(fd, pattern, timeout):
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            if re.search(pattern, buf):
                return buf
    raise AssertionError(f"{pattern!r} not seen in {buf[-2000:]!r}")


def test_live_view_in_a_terminal_quits_on_q():
    with engine("--symbols", 100, "--workers", 1, "--rate", 50_000) as proc:
        master, slave = pty.openpty()
        top = subprocess.Popen([sys.executable, "-m", "shmengine.cli", "top", proc.name,
                                "--interval", "0.3"], stdin=slave, stdout=slave, stderr=slave,
                               cwd=ROOT, env={**os.environ, "TERM": "xterm", "COLUMNS": "120",
                                              "LINES": "60"})
        os.close(slave)
        try:
            _read_until(master, rb"most active symbols", 60)
            _read_until(master, rb"aggregator", 10)  # a second frame
            os.write(master, b"q")
            assert top.wait(10) == 0
        finally:
            if top.poll() is None:
                top.kill()
                top.wait()
            os.close(master)


def test_top_exits_when_the_engine_stops_and_rejects_bad_flags():
    with engine("--symbols", 50, "--workers", 1, "--rate", 20_000, "--duration", 3) as proc:
        top = subprocess.run([sys.executable, "-m", "shmengine.cli", "top", proc.name,
                              "--interval", "0.2"], capture_output=True, text=True, cwd=ROOT,
                             timeout=60, stdin=subprocess.DEVNULL)
        assert top.returncode == 0 and "most active symbols" in top.stdout
        # not a terminal: a text frame every interval (top -b), then the engine's end
        frames = top.stdout.count(f"engine {proc.name}  running")
        assert frames >= 5, top.stdout
        assert f"engine {proc.name} is stopped" in top.stdout
    with engine("--symbols", 50, "--rate", 20_000) as proc:
        # a reader that goes away (`shmengine top prod | head -3`) is not an error
        top = subprocess.Popen([sys.executable, "-m", "shmengine.cli", "top", proc.name,
                                "--interval", "0.2"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               stdin=subprocess.DEVNULL)
        first = [top.stdout.readline() for _ in range(3)]
        top.stdout.close()
        assert top.wait(timeout=30) == 0 and top.stderr.read() == ""
        assert first[0].startswith(f"engine {proc.name}  running")
    res = cli("top", "nosuchengine", "--once")
    assert res.returncode == 1 and "no engine named" in res.stderr
    assert "Traceback" not in res.stderr
    res = cli("top", "x", "--interval", 0)
    assert res.returncode == 1 and "--interval" in res.stderr


def test_status_names_processes_that_have_not_registered_yet():
    rows = np.zeros(4, L.PROC_STATS)  # feed, worker 0, worker 1, aggregator: none started
    assert [proc_label(r, i, len(rows)) for i, r in enumerate(rows)] == \
        ["feed", "worker 0", "worker 1", "aggregator"]
    rows[2]["role"], rows[2]["index"] = L.ROLE_WORKER, 1
    assert proc_label(rows[2], 2, len(rows)) == "worker 1"
    assert sched_policy(0) == "-"  # not this process's own policy
