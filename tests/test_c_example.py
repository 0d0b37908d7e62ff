"""csrc/examples/strategy.c, built with its Makefile, run against engines.

Against segments written from Python (EngineSegments.create, write_row, the
analytics rows under their seqlock and the broadcast writer's
begin_write/end_write) its output is checked exactly: snapshot and analytics
rows, stream counts (bars and signals included), a lap and the
resynchronisation after it, a row left locked, and every attach error.
Against a live ``shmengine run`` it follows the real stream while the engine
runs and fails cleanly once it has stopped.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import numba
import numpy as np
import psutil
import pytest

import shmengine
from shmengine import config, shm
from shmengine import layout as L
from shmengine.broadcast import begin_write, end_write
from shmengine.segments import EngineSegments
from shmengine.snapshot import write_row

pytestmark = pytest.mark.skipif(
    numba.config.DISABLE_JIT,
    reason="the segment writers and the engine use numba atomic intrinsics, which do not run "
           "with NUMBA_DISABLE_JIT=1")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
TIMEOUT = 60.0
ENGINE_START_TIMEOUT = 180.0  # a cold numba cache compiles for tens of seconds

NAMES = ["AAA", "BBB", "LONGSYMBOLNAME16", "C"]  # a full-length name has no NUL
AAA, BBB, LONG, C = range(4)
SUMMARY = re.compile(r"^records=(\d+) quotes=(\d+) trades=(\d+) clears=(\d+) bars=(\d+) "
                     r"signals=(\d+) symbol_records=(\d+) lapped=(\d+) missed=(\d+) "
                     r"last_seq=(\d+)$")
ANALYTICS = re.compile(r"^  analytics  mid (\S+)  spread_bps (\S+)  microprice (\S+)  "
                       r"ofi (-?\d+)  updates (\d+)$")
ANALYTICS_OFF = "  analytics off"
SNAPSHOT_LINES = 4  # header, nbbo, last, analytics
NBBO = re.compile(r"^  nbbo  bid (\S+) x (\d+)(?: @v\d+)?   ask (\S+) x (\d+)(?: @v\d+)?"
                  r"(  crossed|  locked)?$")


# ---------------------------------------------------------------- helpers

def find_cc():
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return shutil.which(cc)
    return None


@pytest.fixture(scope="module")
def strategy(tmp_path_factory):
    """Path of the strategy binary, built from a copy of csrc/ with its Makefile."""
    cc = find_cc()
    if cc is None:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH: cannot build the C example")
    root = tmp_path_factory.mktemp("csrc")
    examples = root / "examples"
    examples.mkdir()
    shutil.copy(os.path.join(CSRC, "shmengine.h"), root)
    for f in ("strategy.c", "Makefile"):
        shutil.copy(os.path.join(CSRC, "examples", f), examples)
    if shutil.which("make"):
        cmd = ["make", "-C", str(examples), f"CC={cc}"]
    else:
        cmd = [cc, "-O2", "-Wall", "-Wextra", "-I..", "-o", "strategy", "strategy.c"]
    build = subprocess.run(cmd, cwd=examples, capture_output=True, text=True)
    assert build.returncode == 0, f"strategy.c does not build:\n{build.stdout}{build.stderr}"
    assert "warning" not in build.stderr, f"strategy.c builds with warnings:\n{build.stderr}"
    return str(examples / "strategy")


class Running:
    """A subprocess whose stdout and stderr lines are collected as they come."""

    def __init__(self, argv):
        self.proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.out, self.err = [], []
        self.threads = [threading.Thread(target=self._read, args=(s, lines), daemon=True)
                        for s, lines in ((self.proc.stdout, self.out),
                                         (self.proc.stderr, self.err))]
        for t in self.threads:
            t.start()

    @staticmethod
    def _read(stream, lines):
        for line in stream:
            lines.append(line.rstrip("\n"))

    def wait_lines(self, lines, n, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while len(lines) < n:
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"strategy printed {len(lines)} of {n} expected lines in "
                            f"{timeout:g} s; stdout {self.out}, stderr {self.err}")
            time.sleep(0.005)
        return lines[:n]

    def finish(self, timeout=TIMEOUT):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"strategy did not exit within {timeout:g} s; stdout {self.out}, "
                        f"stderr {self.err}")
        for t in self.threads:
            t.join()
        return self.proc.returncode


def run_strategy(strategy, *args, timeout=TIMEOUT):
    return subprocess.run([strategy, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def unique_name():
    return f"ctest-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def stopped_process(pid, timeout=5.0):
    deadline = time.monotonic() + timeout
    while psutil.Process(pid).status() != psutil.STATUS_STOPPED:
        assert time.monotonic() < deadline, "strategy did not stop on SIGSTOP"
        time.sleep(0.001)


def px(text):
    return None if text == "-" else round(float(text) * L.PRICE_SCALE)


def check_nbbo(line):
    """A snapshot's NBBO line is well formed and the book is sane for its flags."""
    m = NBBO.match(line)
    assert m, f"not an NBBO line: {line!r}"
    bid, bid_qty, ask, ask_qty = px(m[1]), int(m[2]), px(m[3]), int(m[4])
    flag = (m[5] or "").strip()
    if bid is None or ask is None:
        assert not flag
    elif bid < ask:
        assert not flag, line
    elif bid == ask:
        assert flag == "locked", line
    else:
        assert flag == "crossed", line
    assert (bid is None) == (bid_qty == 0) and (ask is None) == (ask_qty == 0), line
    return bid, ask, flag


def summary(stdout_lines):
    m = SUMMARY.match(stdout_lines[-1])
    assert m, f"no summary line in {stdout_lines}"
    keys = ("records", "quotes", "trades", "clears", "bars", "signals", "symbol_records", "lapped",
            "missed", "last_seq")
    return dict(zip(keys, map(int, m.groups())))


def analytics_line(line):
    """(mid, spread_bps, microprice, ofi, updates) of an analytics line, None for
    "-"; None for the whole line when the run computes no analytics."""
    if line == ANALYTICS_OFF:
        return None
    m = ANALYTICS.match(line)
    assert m, f"not an analytics line: {line!r}"
    num = [None if v == "-" else float(v) for v in m.groups()[:3]]
    return (*num, int(m[4]), int(m[5]))


# ---------------------------------------------------------------- engine from Python

def result(seq, symbol, kind, **fields):
    r = np.zeros(1, L.RESULT)
    r["seq"] = seq
    r["symbol"] = symbol
    r["kind"] = kind
    r["bid_venue"] = r["ask_venue"] = L.NO_VENUE
    for k, v in fields.items():
        r[k] = v
    return r


def stream_record(dtype, seq, symbol, kind, **fields):
    """A BAR_RECORD / SIGNAL_RECORD as the RESULT slot the stream carries."""
    r = np.zeros(1, dtype)
    r["seq"] = seq
    r["symbol"] = symbol
    r["kind"] = kind
    for k, v in fields.items():
        r[k] = v
    return r.view(L.RESULT)


def apply(segs, recs):
    """What the aggregator does with each record: update the symbol's row with
    the book's results, then broadcast every record."""
    for i in range(len(recs)):
        if recs[i]["kind"] in (L.RES_QUOTE, L.RES_TRADE, L.RES_CLEAR):
            write_row(segs.snap.rows, segs.snap.words, recs[i], time.time_ns())
    publish(segs.bcast, recs)


def write_analytics(segs, symbol, **fields):
    """Change an analytics row as its worker does: seqlock odd, fields, seqlock even."""
    ana = segs.ana
    base = symbol * L.ANALYTICS_SIZE // 8
    ana.words[base] += 1
    for k, v in fields.items():
        ana.rows[symbol][k] = v
    ana.words[base] += 1


def publish(bcast, recs):
    hdr = bcast.hdr64
    tail = int(hdr[L.RING_PRODUCER_WORD])
    for start in range(0, len(recs), bcast.capacity):
        chunk = recs[start:start + bcast.capacity]
        begin_write(hdr, tail, len(chunk))
        bcast.slots[np.arange(tail, tail + len(chunk)) & bcast.mask] = chunk
        tail += len(chunk)
        end_write(hdr, tail)


@pytest.fixture
def engine():
    """Segments of an engine whose supervisor is this process, RUNNING, with
    LONGSYMBOLNAME16 traded (and its analytics row written once) and AAA
    crossed; analytics enabled, the other analytics rows empty."""
    name = unique_name()
    cfg = config.load(None, {"name": name, "symbols": len(NAMES), "workers": 1,
                             "ring_capacity": 64, "bcast_capacity": 64, "batch": 16})
    segs = EngineSegments.create(cfg, NAMES, os.getpid(),
                                 int(psutil.Process().create_time() * 1000))
    try:
        segs.info["run_state"] = L.RUN_RUNNING
        apply(segs, np.concatenate([
            result(5, AAA, L.RES_QUOTE, venue=0, flags=L.RFLAG_CROSSED,
                   bid_px=100_000, bid_qty=10, bid_venue=0, ask_px=99_900, ask_qty=20,
                   ask_venue=3),
            result(7, LONG, L.RES_TRADE, venue=1, bid_px=1_001_200, bid_qty=300, bid_venue=1,
                   ask_px=1_001_300, ask_qty=200, ask_venue=2, last_px=1_001_250,
                   last_qty=100, volume=5000, notional=5000 * 1_000_000, trades=3),
        ]))
        segs.ana.header["enabled"] = 1
        write_analytics(segs, LONG, mid=100.125, spread_bps=9.987, microprice=100.126,
                        ofi=-300, an_updates=1)
        yield name, segs
    finally:
        segs.close()
        segs.unlink()
    assert not shm.engine_segments(name)


def test_snapshot_and_stream(strategy, engine):
    name, segs = engine
    run = Running([strategy, name, "LONGSYMBOLNAME16", 30])
    first = run.wait_lines(run.out, SNAPSHOT_LINES)
    assert first == [
        "LONGSYMBOLNAME16  seq 7  updates 1",
        "  nbbo  bid 100.1200 x 300 @v1   ask 100.1300 x 200 @v2",
        "  last 100.1250 x 100   volume 5000   trades 3   vwap 100.0000",
        "  analytics  mid 100.1250  spread_bps 9.99  microprice 100.1260  ofi -300  updates 1",
    ]
    # Subscribed before that snapshot: every record from now on reaches it.
    # The worker writes the analytics row before its results reach the stream.
    write_analytics(segs, LONG, mid=100.1505, spread_bps=np.nan, microprice=np.nan, ofi=42,
                    an_updates=2)
    kinds = [L.RES_QUOTE, L.RES_QUOTE, L.RES_TRADE, L.RES_CLEAR, L.RES_QUOTE]
    recs = []
    for i in range(40):  # the strategy stops after 30
        if i % 7 == 3:
            recs.append(stream_record(L.BAR_RECORD, 100 + i, i % 3, L.RES_BAR,
                                      interval_ns=1_000_000_000, bar_start=0, open=1_001_000,
                                      high=1_001_500, low=1_000_500, close=1_001_500,
                                      volume=7, notional=7 * 1_001_500, trades=1))
        if i % 11 == 5:
            recs.append(stream_record(L.SIGNAL_RECORD, 100 + i, i % 3, L.RES_SIGNAL,
                                      signal=L.SIG_SPREAD, direction=1, value=12.5,
                                      threshold=10.0))
        recs.append(result(100 + i, i % 3, kinds[i % 5], venue=0, bid_px=1_001_000 + i,
                           bid_qty=1 + i, bid_venue=0, ask_px=1_002_000 + i, ask_qty=2 + i,
                           ask_venue=1, last_px=1_001_500, last_qty=7, volume=5000 + i,
                           notional=(5000 + i) * 1_001_500, trades=3 + i))
    recs = np.concatenate(recs)
    assert {L.RES_BAR, L.RES_SIGNAL} <= set(recs["kind"][:30].tolist())
    apply(segs, recs)
    assert run.finish() == 0, run.err
    assert run.err == []
    assert len(run.out) == 2 * SNAPSHOT_LINES + 1, run.out
    seen = recs[:30]
    assert summary(run.out) == {
        "records": 30,
        "quotes": int((seen["kind"] == L.RES_QUOTE).sum()),
        "trades": int((seen["kind"] == L.RES_TRADE).sum()),
        "clears": int((seen["kind"] == L.RES_CLEAR).sum()),
        "bars": int((seen["kind"] == L.RES_BAR).sum()),
        "signals": int((seen["kind"] == L.RES_SIGNAL).sum()),
        "symbol_records": int((seen["symbol"] == LONG).sum()),
        "lapped": 0, "missed": 0, "last_seq": int(seen["seq"][-1]),
    }
    # The second snapshot is read after the last record it counted, so the
    # row is at least that new; all rows were written before either. Bars and
    # signals are on the stream only: the snapshot row has the book's results.
    book = recs[(recs["symbol"] == LONG) & (recs["kind"] <= L.RES_CLEAR)]
    last = book[-1]
    updates = 1 + len(book)
    assert run.out[SNAPSHOT_LINES:2 * SNAPSHOT_LINES] == [
        f"LONGSYMBOLNAME16  seq {last['seq']}  updates {updates}",
        f"  nbbo  bid 100.{1000 + last['seq'] - 100:04d} x {last['bid_qty']} @v0   "
        f"ask 100.{2000 + last['seq'] - 100:04d} x {last['ask_qty']} @v1",
        f"  last 100.1500 x 7   volume {last['volume']}   trades {last['trades']}   "
        f"vwap 100.1500",
        "  analytics  mid 100.1505  spread_bps -  microprice -  ofi 42  updates 2",
    ]


def test_lapped_reader_resynchronises(strategy, engine):
    name, segs = engine
    run = Running([strategy, name, "AAA", 1000])
    first = run.wait_lines(run.out, SNAPSHOT_LINES)
    assert first[0] == "AAA  seq 5  updates 1"
    assert check_nbbo(first[1]) == (100_000, 99_900, "crossed")
    assert first[3] == "  analytics  mid -  spread_bps -  microprice -  ofi 0  updates 0"
    os.kill(run.proc.pid, signal.SIGSTOP)
    try:
        stopped_process(run.proc.pid)
        # Three laps' worth while it cannot read: two laps of records are gone.
        apply(segs, np.concatenate([result(200 + i, BBB, L.RES_QUOTE) for i in range(192)]))
    finally:
        os.kill(run.proc.pid, signal.SIGCONT)
    lap = run.wait_lines(run.err, 1)[0]
    assert lap == "strategy: lapped, 128 records missed so far; resynchronising from the snapshot"
    # Moved to the tail on the lap: it follows from there.
    apply(segs, np.concatenate([result(400 + i, AAA, L.RES_TRADE, bid_px=99_000 + i,
                                       bid_qty=1, ask_px=100_000, ask_qty=1)
                                for i in range(5)]))
    segs.info["run_state"] = L.RUN_STOPPED
    assert run.finish() == 0, run.err
    assert run.err == [lap]
    assert summary(run.out) == {"records": 5, "quotes": 0, "trades": 5, "clears": 0,
                                "bars": 0, "signals": 0, "symbol_records": 5, "lapped": 1,
                                "missed": 128, "last_seq": 404}
    assert run.out[SNAPSHOT_LINES] == "AAA  seq 404  updates 6"
    assert check_nbbo(run.out[SNAPSHOT_LINES + 1]) == (99_004, 100_000, "")


def test_stops_with_the_engine(strategy, engine):
    name, segs = engine
    run = Running([strategy, name, "C", 1000])
    first = run.wait_lines(run.out, SNAPSHOT_LINES)
    assert first == ["C  seq 0  updates 0", "  nbbo  bid - x 0   ask - x 0",
                     "  last - x 0   volume 0   trades 0   vwap 0.0000",
                     "  analytics  mid -  spread_bps -  microprice -  ofi 0  updates 0"]
    apply(segs, np.concatenate([result(300 + i, C, L.RES_QUOTE) for i in range(3)]))
    segs.info["run_state"] = L.RUN_DRAINING
    time.sleep(0.2)
    apply(segs, np.concatenate([result(303 + i, C, L.RES_QUOTE) for i in range(2)]))
    segs.info["run_state"] = L.RUN_STOPPED
    assert run.finish() == 0, run.err
    # Records published before the state changed are read, whenever they came.
    assert summary(run.out) == {"records": 5, "quotes": 5, "trades": 0, "clears": 0,
                                "bars": 0, "signals": 0, "symbol_records": 5, "lapped": 0,
                                "missed": 0, "last_seq": 304}


def test_analytics_off(strategy, engine):
    name, segs = engine
    segs.ana.header["enabled"] = 0
    run = Running([strategy, name, "LONGSYMBOLNAME16", 10])
    first = run.wait_lines(run.out, SNAPSHOT_LINES)
    assert first[3] == ANALYTICS_OFF
    segs.info["run_state"] = L.RUN_STOPPED
    assert run.finish() == 0, run.err
    assert run.out[2 * SNAPSHOT_LINES - 1] == ANALYTICS_OFF
    assert summary(run.out)["records"] == 0


def test_analytics_row_left_locked(strategy, engine):
    """A worker that died mid-write leaves its row odd: the reader gives up
    after a second with SHME_EBUSY instead of spinning for ever."""
    name, segs = engine
    segs.ana.words[LONG * L.ANALYTICS_SIZE // 8] += 1  # odd, and never made even
    t0 = time.monotonic()
    r = run_strategy(strategy, name, "LONGSYMBOLNAME16", 10)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.splitlines() == [
        "strategy: cannot read the analytics: snapshot or analytics row stayed locked for a "
        "second: are the engine's aggregator and workers alive?"]
    assert time.monotonic() - t0 >= 1.0


def _stopped(segs):
    segs.info["run_state"] = L.RUN_STOPPED


def _dead_supervisor(segs):
    gone = subprocess.Popen(["true"])
    gone.wait()
    segs.info["supervisor_pid"] = gone.pid


def _reused_pid(segs):
    segs.info["supervisor_start"] -= 10_000


def _other_version(segs):
    segs.meta.header["version"] = L.LAYOUT_VERSION + 1


def _half_built(segs):
    segs.snap.seg.header["state"] = L.STATE_BUILDING


def _foreign(segs):
    segs.snap.seg.header["magic"] = 0x1234


def _ana_half_built(segs):
    segs.ana.seg.header["state"] = L.STATE_BUILDING


def _ana_other_version(segs):
    segs.ana.seg.header["version"] = L.LAYOUT_VERSION - 1


def _ana_wrong_kind(segs):
    segs.ana.seg.header["kind"] = L.SEG_SNAP


def _ana_row_size(segs):
    segs.ana.header["row_size"] = L.ANALYTICS.itemsize  # unpadded: not the stride


@pytest.mark.parametrize("spoil, symbol, message", [
    (None, "ZZZ", "strategy: unknown symbol 'ZZZ' in engine '{name}' (4 symbols, e.g. AAA)"),
    (None, "LONGSYMBOLNAME16X", "unknown symbol"),
    (_stopped, "AAA", "is not running (it has stopped)"),
    (_dead_supervisor, "AAA", "its supervisor is gone"),
    (_reused_pid, "AAA", "its supervisor is gone"),
    (_other_version, "AAA", "another layout version"),
    (_half_built, "AAA", "still being created"),
    (_foreign, "AAA", "not a valid shmengine segment"),
    (_ana_half_built, "AAA", "still being created"),
    (_ana_other_version, "AAA", "another layout version"),
    (_ana_wrong_kind, "AAA", "not a valid shmengine segment"),
    (_ana_row_size, "AAA", "not a valid shmengine segment"),
])
def test_attach_errors(strategy, engine, spoil, symbol, message):
    name, segs = engine
    if spoil:
        spoil(segs)
    r = run_strategy(strategy, name, symbol, 10)
    assert r.returncode == 1
    assert r.stdout == ""
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert message.format(name=name) in r.stderr


@pytest.mark.parametrize("name, message", [
    ("no-such-engine-here", "strategy: engine 'no-such-engine-here': no engine of that name "
                            "is running on this host"),
    ("bad/name", "invalid argument"),
])
def test_no_engine(strategy, name, message):
    r = run_strategy(strategy, name, "AAA", 10)
    assert r.returncode == 1
    assert len(r.stderr.splitlines()) == 1 and message in r.stderr, r.stderr


def test_usage(strategy):
    r = run_strategy(strategy, "x", "AAA")
    assert r.returncode == 2 and r.stderr.startswith("usage: strategy ENGINE SYMBOL N")


# ---------------------------------------------------------------- live engine

def wait_for_engine(name, proc, log):
    """Symbol with the most updates once the engine runs and publishes."""
    deadline = time.monotonic() + ENGINE_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"engine exited with {proc.returncode} before running:\n"
                        f"{log.read_text()}")
        try:
            with shmengine.attach(name) as eng:
                table = eng.table()
                if eng.running() and table["updates"].sum() > 0:
                    return eng.symbols.name(int(np.argmax(table["updates"])))
        except shm.SegmentError:
            pass
        time.sleep(0.2)
    pytest.fail(f"engine {name} published nothing within {ENGINE_START_TIMEOUT:g} s:\n"
                f"{log.read_text()}")


def stop_engine(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def test_live_engine(strategy, tmp_path):
    name = unique_name()
    log = tmp_path / "engine.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "shmengine.cli", "run", "--name", name,
                                 "--symbols", "50", "--workers", "2", "--rate", "200000",
                                 "--duration", "60"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        symbol = wait_for_engine(name, proc, log)
        r = run_strategy(strategy, name, symbol, 2000)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert len(lines) == 2 * SNAPSHOT_LINES + 1, r.stdout
        s = summary(lines)
        assert s["records"] == 2000
        # The run has no user kernels: every record is of one of the counted kinds.
        assert s["quotes"] + s["trades"] + s["clears"] + s["bars"] + s["signals"] \
            == s["records"]
        assert s["symbol_records"] <= s["records"] and s["last_seq"] > 0
        assert (s["lapped"] == 0) == (s["missed"] == 0)
        before, after = lines[0:SNAPSHOT_LINES], lines[SNAPSHOT_LINES:2 * SNAPSHOT_LINES]
        for snap in (before, after):
            assert snap[0].startswith(f"{symbol}  seq ")
            check_nbbo(snap[1])
        seq0, upd0 = map(int, re.search(r"  seq (\d+)  updates (\d+)$", before[0]).groups())
        seq1, upd1 = map(int, re.search(r"  seq (\d+)  updates (\d+)$", after[0]).groups())
        assert 0 < upd0 <= upd1 and seq0 <= seq1
        # The worker writes the symbol's analytics row as it goes: a row read
        # later has applied at least as many results. A row and the snapshot
        # are not one instant, so their prices are not compared.
        an0, an1 = analytics_line(before[3]), analytics_line(after[3])
        assert (an0 is None) == (an1 is None), (before[3], after[3])
        if an1 is not None:
            assert 0 <= an0[4] <= an1[4] and an1[4] > 0, (before[3], after[3])
            for mid, spread_bps, micro, _, _ in (an0, an1):
                # A two-sided quote gives all three, one-sided none.
                assert (mid is None) == (spread_bps is None) == (micro is None)
                assert mid is None or mid > 0

        r = run_strategy(strategy, name, "NOSUCHSYMBOL", 10)
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1
        assert "unknown symbol 'NOSUCHSYMBOL'" in r.stderr

        code = stop_engine(proc)
        assert code == 0, f"engine exited with {code}:\n{log.read_text()}"
        r = run_strategy(strategy, name, symbol, 10)
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1
        assert "no engine of that name is running" in r.stderr
        assert not shm.engine_segments(name), "the engine left segments behind"
    finally:
        stop_engine(proc)
        for seg in shm.engine_segments(name):
            shm.unlink(seg)
