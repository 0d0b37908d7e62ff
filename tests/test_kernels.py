"""User kernels: the examples and ``kernels.merge`` on plain arrays, then end to end
(both examples in a running engine, 1 and 2 workers), and kernels that must not
start, or that fail after the start.

The examples are loaded with ``shmengine.kernels.load``, as the engine loads them:
importing ``examples/momentum.py`` under another module name fails on the numba cache
entry the engine wrote, or writes one the engine cannot load (see
``test_a_kernel_file_cached_one_way_loads_the_other``).
"""
import os
import re
import subprocess
import sys
import uuid

import numpy as np
import psutil
import pytest

import shmengine
from shmengine import layout as L
from shmengine.analytics import ROW_WORDS, apply as ana_apply, make_params, new_analytics
from shmengine.book import apply as book_apply, new_book
from shmengine.kernels import load, merge, new_user_kernels, stamp
from shmengine.market import new_market

from conftest import ROOT, assert_same, cli, drained_stream, engine, segments_of, wait_for

MOMENTUM = "examples/momentum.py:momentum"
BLOCK_TRADES = "examples/block_trades.py:block_trades"
BROKEN = "tests/kernels/broken.py"
USER_KINDS = (L.RES_QUOTE, L.RES_TRADE, L.RES_CLEAR)
MARK = "SHMENGINE_TEST_KERNELS_MARK"


def _example(spec):
    """(module, kernel) of an example, loaded the way the engine loads it."""
    func = load(spec)
    return sys.modules[func.py_func.__module__], func


# ---------------------------------------------------------------- a stream on plain arrays

N_SYM, N_VEN, SEED = 40, 4, 7


@pytest.fixture(scope="module")
def stream():
    """Book results, bar closes and signals of 60,000 synthetic events, one analytics
    table over all symbols (what one worker owning everything would see)."""
    events = new_market(N_SYM, N_VEN, SEED, p_clear=2e-4).generate(60_000)
    book = new_book(np.arange(N_SYM), N_VEN, N_SYM)
    ana = new_analytics(np.arange(N_SYM), N_VEN, N_SYM,
                        make_params(bar_intervals=(10_000_000,), signal_spread_bps=20.0))
    out = ana_apply(ana, book_apply(book, events))
    kinds = np.bincount(out["kind"], minlength=L.RES_USER)
    assert kinds[L.RES_TRADE] > 1000 and kinds[L.RES_CLEAR] > 0
    assert kinds[L.RES_BAR] > 0 and kinds[L.RES_SIGNAL] > 0
    return out, ana.rows


BATCH_SIZES = (1, 7, 1024, 3, 500, 64, 1000, 2)
MAX_BATCH = max(BATCH_SIZES)


def _run_batches(kernel, stream, rows, state, fields):
    """Call ``kernel`` as a worker does: batch after batch in a staging array that is
    longer than the batch (its tail holds other records), an ``out`` of MAX_BATCH
    slots reused between batches. Returns the emitted records, concatenated."""
    staging = np.zeros(4 * MAX_BATCH, L.RESULT)
    staging[:] = np.resize(stream[::-1], len(staging))  # junk past n: must be ignored
    out = np.zeros(MAX_BATCH, L.USER_RECORD)
    emitted = []
    pos, b = 0, 0
    while pos < len(stream):
        n = min(BATCH_SIZES[b % len(BATCH_SIZES)], len(stream) - pos)
        staging[:n] = stream[pos:pos + n]
        k = kernel(staging, n, rows, state, fields, out)
        assert 0 <= k <= len(out)
        emitted.append(out[:k].copy())
        # what the kernel emitted reacts to records of this batch
        assert set(out[:k]["seq"].tolist()) <= set(stream[pos:pos + n]["seq"].tolist())
        pos += n
        b += 1
    return np.concatenate(emitted)


def _user(seq, exch_ts, recv_ts, proc_ts, symbol, venue, event_type, tag, values):
    rec = np.zeros((), L.USER_RECORD)
    for name, v in (("seq", seq), ("exch_ts", exch_ts), ("recv_ts", recv_ts),
                    ("proc_ts", proc_ts), ("symbol", symbol), ("venue", venue),
                    ("event_type", event_type), ("tag", tag)):
        rec[name] = v
    rec["kind"] = L.RES_USER
    rec["values"][:len(values)] = values
    return rec


HEADER = ("seq", "exch_ts", "recv_ts", "proc_ts", "symbol", "venue", "event_type")


def _header(r):
    return tuple(int(r[f]) for f in HEADER)


def reference_momentum(stream, fast_w, slow_w, threshold):
    """The momentum example's docstring, in plain Python: per symbol, from its first
    two-sided result, fast and slow EWMAs of the mid, the gap in bps, and a record
    (tag +1 / -1, values fast, slow, gap) each time the gap crosses +/- threshold
    into a direction other than the last one crossed into."""
    state = np.zeros((N_SYM, 16))
    fields = np.zeros((N_SYM, L.USER_FIELDS))
    records = []
    per_sym = {}
    for r in stream:
        if int(r["kind"]) not in USER_KINDS or r["bid_qty"] <= 0 or r["ask_qty"] <= 0:
            continue
        sym = int(r["symbol"])
        mid = (int(r["bid_px"]) + int(r["ask_px"])) / (2.0 * L.PRICE_SCALE)
        fast, slow, direction = per_sym.get(sym, (mid, mid, 0.0))
        fast += fast_w * (mid - fast)
        slow += slow_w * (mid - slow)
        gap = (fast - slow) / slow * 1e4
        new = 1.0 if gap >= threshold else -1.0 if gap <= -threshold else 0.0
        if new != 0.0 and new != direction:
            records.append(_user(*_header(r), int(new), (fast, slow, gap)))
        if new != 0.0:
            direction = new
        per_sym[sym] = (fast, slow, direction)
        state[sym, :3] = fast, slow, direction
        fields[sym, :3] = fast, slow, gap
    return state, fields, np.array(records, L.USER_RECORD)


def reference_block_trades(stream, block_qty):
    """The block_trades example's docstring in plain Python: signed print volume
    (+ when the resting order was an offer), the largest print, a record (tag 1,
    values price, qty, direction) for each print of at least block_qty."""
    fields = np.zeros((N_SYM, L.USER_FIELDS))
    records = []
    for r in stream[stream["kind"] == L.RES_TRADE]:
        sym, qty = int(r["symbol"]), int(r["last_qty"])
        d = 1.0 if int(r["side"]) == L.SIDE_ASK else -1.0
        fields[sym, 3] += d * qty
        fields[sym, 4] = max(fields[sym, 4], qty)
        if qty >= block_qty:
            records.append(_user(*_header(r), 1, (int(r["last_px"]) / L.PRICE_SCALE, qty, d)))
    return fields, np.array(records, L.USER_RECORD)


def _assert_records_equal(got, want):
    assert len(got) == len(want), f"{len(got)} records, expected {len(want)}"
    for name in L.USER_RECORD.names:
        assert np.array_equal(got[name], want[name]), f"field {name} differs"


def test_momentum_on_plain_arrays(stream):
    records, rows = stream
    mod, momentum = _example(MOMENTUM)
    state = np.zeros((N_SYM, 16))
    fields = np.zeros((N_SYM, L.USER_FIELDS))
    got = _run_batches(momentum, records, rows, state, fields)
    want_state, want_fields, want = reference_momentum(records, mod.FAST, mod.SLOW,
                                                       mod.THRESHOLD_BPS)
    # the same float operations in the same order: exact
    np.testing.assert_array_equal(state, want_state)
    np.testing.assert_array_equal(fields, want_fields)
    _assert_records_equal(got, want)
    tags = set(got["tag"].tolist())
    assert tags == {1, -1}, tags
    assert len(got) > 20
    # what the records say, from the docstring: the gap crossed into a new direction
    for rec in got:
        fast, slow, gap = rec["values"][:3]
        assert gap == (fast - slow) / slow * 1e4
        assert abs(gap) >= mod.THRESHOLD_BPS and np.sign(gap) == rec["tag"]
    for sym in np.unique(got["symbol"]):
        tags = got["tag"][got["symbol"] == sym]
        assert np.all(tags[1:] != tags[:-1]), f"symbol {sym}: a direction repeated"
    # the averages follow the mid: the fast one at most a few ticks from the last mid
    two_sided = records[(np.isin(records["kind"], USER_KINDS)) & (records["bid_qty"] > 0)
                        & (records["ask_qty"] > 0)]
    for sym in np.unique(two_sided["symbol"]):
        last = two_sided[two_sided["symbol"] == sym][-1]
        mid = (last["bid_px"] + last["ask_px"]) / 2 / L.PRICE_SCALE
        assert abs(fields[sym, 0] / mid - 1) < 0.01
        assert abs(fields[sym, 1] / mid - 1) < 0.02


def test_block_trades_on_plain_arrays(stream):
    records, rows = stream
    mod, block_trades = _example(BLOCK_TRADES)
    state = np.zeros((N_SYM, 16))
    fields = np.zeros((N_SYM, L.USER_FIELDS))
    got = _run_batches(block_trades, records, rows, state, fields)
    want_fields, want = reference_block_trades(records, mod.BLOCK_QTY)
    np.testing.assert_array_equal(fields, want_fields)
    assert not state.any(), "block_trades keeps no state"
    _assert_records_equal(got, want)
    assert len(got) > 5 and set(got["tag"].tolist()) == {1}
    # independent of the kernel's arithmetic: buys + sells are the tape's volume
    trades = records[records["kind"] == L.RES_TRADE]
    for sym in np.unique(trades["symbol"]):
        t = trades[trades["symbol"] == sym]
        buys = t["last_qty"][t["side"] == L.SIDE_ASK].sum()
        sells = t["last_qty"][t["side"] == L.SIDE_BID].sum()
        assert buys + sells == t["volume"][-1]
        assert fields[sym, 3] == buys - sells
        assert fields[sym, 4] == t["last_qty"].max()


def test_examples_share_fields_without_overlap(stream):
    """Both examples on one fields array (as in a run): each keeps to its indices."""
    records, rows = stream
    _, momentum = _example(MOMENTUM)
    _, block_trades = _example(BLOCK_TRADES)
    fields = np.zeros((N_SYM, L.USER_FIELDS))
    _run_batches(momentum, records, rows, np.zeros((N_SYM, 16)), fields)
    _run_batches(block_trades, records, rows, np.zeros((N_SYM, 16)), fields)
    alone_m = np.zeros((N_SYM, L.USER_FIELDS))
    alone_b = np.zeros((N_SYM, L.USER_FIELDS))
    _run_batches(momentum, records, rows, np.zeros((N_SYM, 16)), alone_m)
    _run_batches(block_trades, records, rows, np.zeros((N_SYM, 16)), alone_b)
    np.testing.assert_array_equal(fields, alone_m + alone_b)
    assert not fields[:, 5:].any()


def test_stamp_copies_the_header_and_clears_the_payload():
    src = np.zeros(1, L.RESULT)
    for name, v in (("seq", 41), ("exch_ts", 5), ("recv_ts", 6), ("proc_ts", 7), ("symbol", 3),
                    ("venue", 2), ("kind", L.RES_TRADE), ("flags", L.RFLAG_LOCKED),
                    ("event_type", L.EV_EXECUTE)):
        src[name] = v
    out = np.zeros(2, L.USER_RECORD)
    out["kernel"] = 9
    out["values"][1, 4] = 2.5
    stamp(out[1], src[0], -3)
    rec = out[1]
    assert _header(rec) == (41, 5, 6, 7, 3, 2, L.EV_EXECUTE)
    assert rec["kind"] == L.RES_USER and rec["flags"] == 0 and rec["kernel"] == 0
    assert rec["tag"] == -3
    assert not rec["values"].any()  # nothing left from an earlier batch
    assert out[0]["seq"] == 0 and out[0]["kernel"] == 9


# ---------------------------------------------------------------- merge on plain arrays

RING = 32


def _rec(seq, symbol, kind=L.RES_QUOTE):
    r = np.zeros((), L.RESULT)
    r["seq"], r["symbol"], r["kind"] = seq, symbol, kind
    r["bid_venue"] = r["ask_venue"] = L.NO_VENUE
    r["exch_ts"] = 1000 + seq
    return r


def _batch(*recs, junk=3):
    """A staging array holding ``recs`` then ``junk`` records merge must not read."""
    out = np.zeros(len(recs) + junk, L.RESULT)
    for j, r in enumerate(recs):
        out[j] = r
    for j in range(junk):
        out[len(recs) + j] = _rec(10_000 + j, 0)
    return out


class Merged:
    def __init__(self, records, kernel_seqs, owned, n_symbols=6, position=0, dropped=0,
                 lock=10):
        self.n_symbols = n_symbols
        self.rows = np.zeros(n_symbols, L.ANALYTICS_ROW)
        self.uk = new_user_kernels(len(kernel_seqs), n_symbols, 4, 16, self.rows)
        for kk, seqs in enumerate(kernel_seqs):
            for j, seq in enumerate(seqs):
                self.uk.outs["seq"][kk, j] = seq
                self.uk.outs["kind"][kk, j] = L.RES_USER
                self.uk.outs["kernel"][kk, j] = 99
                self.uk.outs["tag"][kk, j] = 100 * kk + j  # identifies the record
                self.uk.outs["values"][kk, j, 0] = 0.5 + j
            self.uk.counts[kk] = len(seqs)
        self.uk.fields[:] = np.arange(n_symbols * L.USER_FIELDS).reshape(n_symbols, -1) + 0.25
        self.local_index = np.full(n_symbols, -1, np.int64)
        self.local_index[list(owned)] = np.arange(len(owned))
        self.words = self.rows.view(np.uint64)
        self.words[::ROW_WORDS] = lock
        self.lock = lock
        self.out = np.full(RING, 0xAB, np.uint8).repeat(L.RESULT.itemsize).view(L.RESULT)
        self.dropped = np.array([dropped], np.int64)
        self.n = len(records) - 3
        self.written = merge(records, self.n, self.uk, self.local_index, self.rows, self.words,
                             self.out, self.out.view(L.USER_RECORD), position, RING - 1,
                             self.dropped)
        self.stream = self.out[(position + np.arange(self.written)) % RING]

    def layout(self):
        """The output as (seq, kind) or (seq, 'k<kernel>', tag) tuples."""
        users = self.stream.view(L.USER_RECORD)
        return [(int(r["seq"]), f"k{int(u['kernel'])}", int(u["tag"]))
                if r["kind"] == L.RES_USER else (int(r["seq"]), int(r["kind"]))
                for r, u in zip(self.stream, users)]


Q, T, C, B, S = L.RES_QUOTE, L.RES_TRADE, L.RES_CLEAR, L.RES_BAR, L.RES_SIGNAL


def test_merge_places_user_records_after_the_last_record_of_their_seq():
    recs = _batch(_rec(10, 1, B), _rec(10, 1, Q), _rec(10, 1, S), _rec(11, 2, T),
                  _rec(13, 1, C), _rec(13, 1, S), _rec(14, 2, S))
    m = Merged(recs, [[10, 10, 13], [10, 11, 14]], owned=[1, 2])
    assert m.layout() == [
        (10, B), (10, Q), (10, S), (10, "k0", 0), (10, "k0", 1), (10, "k1", 100),
        (11, T), (11, "k1", 101),
        (13, C), (13, S), (13, "k0", 2),
        (14, S), (14, "k1", 102),
    ]
    assert m.written == 13 and m.dropped[0] == 0
    # book records are copied whole, user records keep their payload
    np.testing.assert_array_equal(m.stream[[0, 1, 2, 6, 8, 9, 11]], recs[:7])
    users = m.stream.view(L.USER_RECORD)[m.stream["kind"] == L.RES_USER]
    assert list(users["values"][:, 0]) == [0.5, 1.5, 0.5, 1.5, 2.5, 2.5]


def test_a_user_record_is_never_taken_for_a_book_result():
    # a kernel that overwrites the kind (and the symbol) of its record after stamp()
    recs = _batch(_rec(10, 1, Q), _rec(11, 2, T))
    m = Merged(recs, [[10]], owned=[1, 2])
    m.uk.outs["kind"][0, 0] = L.RES_QUOTE
    m.uk.outs["symbol"][0, 0] = 1 << 30
    written = merge(recs, m.n, m.uk, m.local_index, m.rows, m.words, m.out,
                    m.out.view(L.USER_RECORD), 0, RING - 1, m.dropped)
    kinds = m.out["kind"][:written]
    assert list(kinds) == [Q, L.RES_USER, T]  # the aggregator writes rows only for Q/T/C


def test_merge_wraps_around_the_ring():
    recs = _batch(*[_rec(s, 1) for s in range(20, 30)])
    m = Merged(recs, [list(range(20, 30))], owned=[1], position=RING - 5)
    assert m.written == 20
    assert [x[0] for x in m.layout()] == [s for s in range(20, 30) for _ in (0, 1)]
    assert m.out["seq"][RING - 5] == 20 and m.out["seq"][14] == 29  # 27 - 32 + 20 - 1
    assert m.out["kind"][15] != L.RES_USER and m.out[15].tobytes() == b"\xab" * 320


def test_merge_drops_and_counts_what_it_cannot_place():
    recs = _batch(_rec(10, 1), _rec(11, 1), _rec(13, 1))
    # 9: before the batch; 12: not in it; 11 after 13: lower than one placed; 14: after
    m = Merged(recs, [[9, 10, 12, 13, 11, 14], [13, 13, 10]], owned=[1], dropped=5)
    assert m.layout() == [(10, Q), (10, "k0", 1), (11, Q), (13, Q), (13, "k0", 3),
                          (13, "k1", 100), (13, "k1", 101)]
    assert m.dropped[0] == 5 + 4 + 1  # counted on top of what was there


def test_merge_with_nothing_placed_counts_every_record():
    recs = _batch(_rec(10, 1), _rec(12, 1))
    m = Merged(recs, [[3, 11, 99], []], owned=[1])
    assert m.layout() == [(10, Q), (12, Q)] and m.dropped[0] == 3


def test_merge_publishes_fields_of_owned_symbols_with_book_results():
    # symbol 0 has a result but is not owned; 3 is owned with only a bar and a signal;
    # 4 is owned with nothing; 1 has a quote, 2 a trade, 5 a clear
    recs = _batch(_rec(10, 0), _rec(11, 3, B), _rec(11, 1), _rec(12, 2, T), _rec(12, 3, S),
                  _rec(13, 5, C), _rec(14, 1))
    m = Merged(recs, [[11], [12]], owned=[1, 2, 3, 4, 5])
    lock = m.words[::ROW_WORDS]
    for sym in (1, 2, 5):
        np.testing.assert_array_equal(m.rows["user"][sym], m.uk.fields[sym])
        assert lock[sym] % 2 == 0 and lock[sym] > m.lock, f"symbol {sym}: seqlock {lock[sym]}"
    for sym in (0, 3, 4):
        assert not m.rows["user"][sym].any(), f"symbol {sym} got fields"
        assert lock[sym] == m.lock
    # nothing but the seqlock and the user fields changed
    other = [n for n in L.ANALYTICS_ROW.names if n not in ("seqlock", "user")]
    assert not any(m.rows[n].any() for n in other)


# ---------------------------------------------------------------- subprocess helpers

def _start(*args, mark):
    """``shmengine ARGS`` in the repo root; its processes carry ``mark`` in their
    environment, so any that outlives it can be found."""
    env = dict(os.environ, **{MARK: mark})
    return subprocess.Popen([sys.executable, "-m", "shmengine.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env)


def _marked(mark):
    """Live processes (zombies aside) started under ``mark``."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.status() != psutil.STATUS_ZOMBIE \
                    and p.environ().get(MARK) == mark:
                found.append(p)
        except (psutil.Error, OSError):
            pass
    return found


def _lines(text):
    return [ln for ln in text.splitlines() if ln.strip()]


# ---------------------------------------------------------------- broken kernels, bad configs

# (spec list, what the one line says); the message must name the broken spec
BROKEN_CASES = {
    "undefined-name": ([f"{BROKEN}:undefined_name"],
                       r"does not compile: .*no_such_global_in_broken_py"),
    "no-such-record-field": ([f"{BROKEN}:bad_field"], r"does not compile: .*no_such_field"),
    "raises-on-trial": (["tests.kernels.broken:raises_on_trial"],
                        r"raised ValueError on a trial batch: trial boom from raises_on_trial"),
    "plain-python": ([f"{BROKEN}:plain_python"], r"is not a numba @njit function"),
    "missing-function": ([f"{BROKEN}:no_such_function"], r"has no function no_such_function"),
    "missing-module": (["no_such_module_for_shmengine:kernel"],
                       r"cannot import no_such_module_for_shmengine: ModuleNotFoundError"),
    "missing-file": (["tests/kernels/no_such_file.py:kernel"],
                     r"no file tests/kernels/no_such_file\.py"),
    "no-colon": ([BROKEN], r"name it as module:function"),
    "second-of-two": ([f"{BROKEN}:fine", f"{BROKEN}:undefined_name"], r"does not compile"),
}
XFAIL_CASES = {
    "returns-nothing": [f"{BROKEN}:returns_nothing"],
}
# (extra run arguments, one line, exit code)
CONFIG_CASES = {
    "no-analytics": (["--kernel", MOMENTUM, "--no-analytics"],
                     r"kernels need analytics = true", 2),
    "result-ring-too-small": (["--kernel", MOMENTUM, "--kernel", BLOCK_TRADES, "--batch", 256,
                               "--result-ring-capacity", 1024],
                              r"with 2 kernel\(s\), result_ring_capacity must be "
                              r"at least 1536", 2),
}


@pytest.fixture(scope="module")
def refused():
    """Every refused start, run at once: {case: (name, mark, returncode, out, err)}."""
    started = {}
    cases = {**{c: [a for s in specs for a in ("--kernel", s)]
                for c, (specs, _) in BROKEN_CASES.items()},
             **{c: [a for s in specs for a in ("--kernel", s)]
                for c, specs in XFAIL_CASES.items()},
             **{c: args for c, (args, _, _) in CONFIG_CASES.items()}}
    for case, args in cases.items():
        name = f"tk{uuid.uuid4().hex[:10]}"
        mark = uuid.uuid4().hex
        started[case] = (name, mark,
                         _start("run", "--name", name, "--symbols", 50, "--events", 50_000,
                                *args, mark=mark))
    done = {}
    try:
        for case, (name, mark, proc) in started.items():
            out, err = proc.communicate(timeout=180)
            done[case] = (name, mark, proc.returncode, out, err)
    finally:
        for name, _, proc in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for seg in segments_of(name):
                shmengine.shm.unlink(seg)
    return done


def _assert_refused(result, spec_names, pattern, code):
    name, mark, rc, out, err = result
    lines = _lines(err)
    assert rc == code, f"exit {rc}\n{out}\n{err}"
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    line = lines[0]
    assert line.startswith("shmengine: error: "), line
    assert "Traceback" not in err
    assert re.search(pattern, line), line
    for spec in spec_names:
        assert repr(spec) in line, f"{spec!r} not named in: {line}"
    assert not _lines(out), f"it started: {out}"
    assert not segments_of(name), "segments left"
    assert not _marked(mark), "a process of it is still running"


@pytest.mark.parametrize("case", list(BROKEN_CASES))
def test_broken_kernel_stops_the_start_with_one_line(refused, case):
    specs, pattern = BROKEN_CASES[case]
    _assert_refused(refused[case], specs[-1:], pattern, 1)
    if case == "second-of-two":
        assert repr(specs[0]) not in refused[case][4]


def test_kernel_returning_nothing_stops_the_start_with_one_line(refused):
    _assert_refused(refused["returns-nothing"], XFAIL_CASES["returns-nothing"],
                    r"kernel .*returns_nothing", 1)


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_config_refuses_kernels(refused, case):
    _, pattern, code = CONFIG_CASES[case]
    _assert_refused(refused[case], [], pattern, code)


def test_kernels_and_no_analytics_in_a_toml_file(tmp_path):
    cfg = tmp_path / "engine.toml"
    cfg.write_text(f'symbols = 50\nanalytics = false\nkernels = ["{MOMENTUM}"]\n')
    res = cli("run", cfg, "--name", f"tk{uuid.uuid4().hex[:10]}")
    assert res.returncode == 2
    assert _lines(res.stderr) == [("shmengine: error: kernels need analytics = true "
                                   "(they read the analytics table)")]
    cfg.write_text("symbols = 50\nkernels = 5\n")
    res = cli("run", cfg)
    assert res.returncode == 2 and len(_lines(res.stderr)) == 1
    assert "kernels must be a list" in res.stderr


# ---------------------------------------------------------------- a kernel that raises later

def test_kernel_raising_after_the_start_fails_the_engine():
    """The worker says which kernel raised what and exits with status 3; the
    supervisor says the worker failed, kills the rest and removes every segment."""
    name = f"tk{uuid.uuid4().hex[:10]}"
    mark = uuid.uuid4().hex
    proc = _start("run", "--name", name, "--symbols", 50, "--events", 100_000,
                  "--kernel", "tests/kernels/late_raise.py:late_raise", mark=mark)
    try:
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert f"engine {name} running" in out, "it should have passed the trial batch"
    assert proc.returncode == 1, f"exit {proc.returncode}\n{out}\n{err}"
    assert "Traceback" not in err
    failed = [ln for ln in _lines(err) if ln.startswith("shmengine:")]
    assert len(failed) == 2, err
    assert failed[0] == ("shmengine: worker 0: ValueError in a user kernel "
                         "(tests/kernels/late_raise.py:late_raise): late_raise: seq past "
                         "RAISE_AFTER_SEQ"), failed[0]
    assert re.fullmatch(rf"shmengine: engine {name} failed: worker 0 \(pid \d+\) exited with "
                        rf"status 3; stopped it", failed[1]), failed[1]
    assert "events/s" not in out  # no summary
    wait_for(lambda: not _marked(mark), 10, "the engine's processes to end")
    assert not segments_of(name)


# ---------------------------------------------------------------- end to end

EVENTS = 100_000


def _cache_entries(dispatcher):
    """numba cache files of ``dispatcher`` (any version of its source)."""
    path = dispatcher._cache._cache_path
    prefix = dispatcher.py_func.__module__.rsplit(".", 1)[-1] + "." + dispatcher.__name__ + "-"
    names = os.listdir(path) if os.path.isdir(path) else []
    return sorted(n for n in names if n.startswith(prefix) and n.endswith(".nbc"))


def _run_with_examples(workers):
    with engine("--symbols", 100, "--venues", 4, "--seed", 5, "--workers", workers,
                "--events", EVENTS, "--linger", "--bcast-capacity", 1 << 18,
                "--bars", "10ms", "--signal-spread-bps", 20,
                "--kernel", MOMENTUM, "--kernel", BLOCK_TRADES) as proc:
        with shmengine.attach(proc.name) as eng:
            wait_for(lambda: eng.state() == "stopped", 120, "the engine to drain")
            table = eng.table()
            stream = drained_stream(eng)
            stats = eng.stats()
        res = cli("stop", proc.name, check=True)
        assert f"engine {proc.name} stopped" in res.stdout
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert f"{EVENTS:,} events" in out and "events/s" in out
        assert not segments_of(proc.name)
        for c in proc.children_at_start:
            assert not c.is_running() or c.status() == psutil.STATUS_ZOMBIE
    return table, stream, stats


@pytest.fixture(scope="module")
def runs():
    from shmengine import worker
    cache = [_cache_entries(worker.run)]
    result = {}
    for w in (1, 2):
        result[w] = _run_with_examples(w)
        cache.append(_cache_entries(worker.run))
    result["worker_cache"] = cache
    return result


def test_user_records_follow_their_seq(runs):
    _, stream, stats = runs[1]
    assert stats["events"] == EVENTS
    assert all(p["user_dropped"] == 0 for p in stats["processes"])
    kind = stream["kind"]
    assert np.all(np.diff(stream["seq"].astype(np.int64)) >= 0)
    users = stream.view(L.USER_RECORD)
    is_user = kind == L.RES_USER
    assert set(users["kernel"][is_user].tolist()) == {0, 1}
    assert set(users["tag"][is_user & (users["kernel"] == 0)].tolist()) == {1, -1}
    assert set(users["tag"][is_user & (users["kernel"] == 1)].tolist()) == {1}
    idx = np.flatnonzero(is_user)
    assert idx[0] > 0
    # right after a record of the same seq; the run of user records of a seq is
    # after every other record of it, kernel 0's before kernel 1's
    assert np.all(stream["seq"][idx - 1] == stream["seq"][idx])
    nxt = idx[idx + 1 < len(stream)] + 1
    assert np.all(is_user[nxt] | (stream["seq"][nxt] != stream["seq"][nxt - 1]))
    same = is_user[idx - 1]
    assert np.all(users["kernel"][idx[same] - 1] <= users["kernel"][idx[same]])
    # each reacts to a book result of its symbol with that seq
    results = stream[np.isin(kind, USER_KINDS)]
    by_seq = dict(zip(results["seq"].tolist(), results["symbol"].tolist()))
    assert all(by_seq.get(int(s)) == int(y) for s, y in zip(stream["seq"][idx],
                                                             stream["symbol"][idx]))


def test_user_records_and_fields_are_the_kernels_own(runs):
    """The examples, run afterwards on the engine's stream (user records taken out)
    on plain arrays, give the same records and the table's user fields."""
    table, stream, _ = runs[1]
    base = stream[stream["kind"] != L.RES_USER]
    users = stream.view(L.USER_RECORD)[stream["kind"] == L.RES_USER]
    rows = np.zeros(100, L.ANALYTICS_ROW)
    fields = np.zeros((100, L.USER_FIELDS))
    for kk, spec in enumerate((MOMENTUM, BLOCK_TRADES)):
        _, kernel = _example(spec)
        out = np.zeros(len(base), L.USER_RECORD)
        k = kernel(base, len(base), rows, np.zeros((100, 16)), fields, out)
        want = out[:k]
        want["kernel"] = kk
        _assert_records_equal(users[users["kernel"] == kk], want)
    np.testing.assert_array_equal(table["user"], fields)
    traded = table["trades"] > 0
    assert traded.sum() > 50
    assert np.all(table["user"][traded, 4] > 0)


def test_momentum_fields_are_near_the_mid(runs):
    table = runs[1][0]
    mid = table["mid"]
    ok = np.isfinite(mid)
    assert ok.sum() > 80
    fast, slow = table["user"][ok, 0], table["user"][ok, 1]
    assert np.all(np.abs(fast / mid[ok] - 1) < 0.01)
    assert np.all(np.abs(slow / mid[ok] - 1) < 0.02)
    gap = table["user"][ok, 2]
    np.testing.assert_array_equal(gap, (fast - slow) / slow * 1e4)


def test_one_and_two_workers_give_the_same_stream_and_table(runs):
    (t1, s1, _), (t2, s2, st2) = runs[1], runs[2]
    assert [p["role"] for p in st2["processes"]].count(L.ROLE_WORKER) == 2
    assert (s1["kind"] == L.RES_USER).sum() > 50
    assert_same(s2, s1, L.WALL_CLOCK_FIELDS, "stream")
    user1, user2 = s1["kind"] == L.RES_USER, s2["kind"] == L.RES_USER
    assert_same(s2[user2].view(L.USER_RECORD), s1[user1].view(L.USER_RECORD),
                L.WALL_CLOCK_FIELDS, "user records")
    assert_same(t2, t1, L.WALL_CLOCK_FIELDS, "table")


def test_second_start_with_kernels_reuses_the_worker_cache(runs):
    from shmengine import worker
    if not os.access(worker.run._cache._cache_path, os.W_OK):
        pytest.skip("numba cannot write its cache here")
    _, after_1, after_2 = runs["worker_cache"]
    assert after_2 == after_1, f"new cache entries: {sorted(set(after_2) - set(after_1))}"


# ---------------------------------------------------------------- loader vs numba cache

_CALL = ("import numpy as np\nfrom shmengine import layout as L\n"
         "r = np.zeros(8, L.RESULT); r['kind'] = L.RES_QUOTE; r['bid_qty'] = 1\n"
         "r['ask_qty'] = 1; r['bid_px'] = 10000; r['ask_px'] = 10100\n"
         "k = f(r, 8, np.zeros(1, L.ANALYTICS_ROW), np.zeros((1, 16)), "
         "np.zeros((1, 8)), np.zeros(8, L.USER_RECORD))\nprint('ok', k)\n")


def _call_kernel(how, directory):
    """In a fresh process, get the momentum copy in ``directory`` ``how`` (a plain
    import, or kernels.load as the engine does) and call it once."""
    if how == "import":
        get = f"import sys\nsys.path.insert(0, {str(directory)!r})\n" \
            "from mymomentum import momentum as f\n"
    else:
        spec = f"{directory}/mymomentum.py:momentum"
        get = f"from shmengine.kernels import load\nf = load({spec!r})\n"
    return subprocess.run([sys.executable, "-c", get + _CALL], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize("first,then", [("import", "load"), ("load", "import")])
def test_a_kernel_file_cached_one_way_loads_the_other(tmp_path, first, then):
    with open(os.path.join(ROOT, "examples", "momentum.py")) as fh:
        (tmp_path / "mymomentum.py").write_text(fh.read())
    res = _call_kernel(first, tmp_path)
    assert res.returncode == 0 and "ok 0" in res.stdout, res.stderr[-500:]
    assert os.listdir(tmp_path / "__pycache__"), "nothing cached"
    res = _call_kernel(then, tmp_path)
    assert res.returncode == 0 and "ok 0" in res.stdout, res.stderr[-300:]


def test_a_kernel_named_as_a_module_runs_after_the_file_form():
    """The same file as examples/momentum.py:momentum and as examples.momentum:momentum:
    numba's cache of one form must not stop the other."""
    for spec in ("examples/momentum.py:momentum", "examples.momentum:momentum"):
        res = cli("run", "--name", f"tk{uuid.uuid4().hex[:10]}", "--symbols", 50,
                  "--events", 20_000, "--kernel", spec, timeout=180)
        assert res.returncode == 0, res.stderr
        assert "20,000 events" in res.stdout
