"""Feed routing and aggregator merging, run on plain arrays (no processes)."""
import time

import numpy as np

from shmengine import aggregator as A
from shmengine import feed as F
from shmengine import layout as L
from shmengine.hist import COUNTS_LEN
from shmengine.ring import CONSUMER, PRODUCER

CAP = 16


def _rings(n):
    hdrs = tuple(np.zeros(L.RING_DATA_OFFSET // 8, np.int64) for _ in range(n))
    return hdrs, tuple(h.view(np.uint32) for h in hdrs)


def _procs():
    return np.zeros(3, L.PROC_STATS)


def test_route_partitions_in_order_and_blocks_nothing_when_room():
    hdrs, hdrs32 = _rings(2)
    slots = tuple(np.zeros(CAP, L.EVENT) for _ in range(2))
    buf = np.zeros(8, L.EVENT)
    buf["seq"] = np.arange(8)
    buf["symbol"] = [0, 1, 2, 3, 0, 1, 2, 3]
    partition = np.array([0, 1, 1, 0], np.uint16)
    tails = np.zeros(2, np.int64)
    heads = np.zeros(2, np.int64)
    ctl = np.zeros(F.C_LEN, np.int64)
    received = time.monotonic_ns() - 3_000_000
    buf["recv_ts"] = [received, received - 2**40] * 4  # held 3 ms; and too long for u32
    n = F.route(buf, 0, 8, partition, hdrs, hdrs32, slots, CAP - 1, tails, heads,
                L.POLICY_BLOCK, ctl, _procs(), 0, L.WAIT_SPIN, 10, 0, 1000)
    held = (time.monotonic_ns() - received)
    assert n == 8 and list(tails) == [4, 4]
    fresh = slots[0]["feed_ns"][[0, 2]], slots[1]["feed_ns"][[1, 3]]
    assert all(3_000_000 <= v <= held for part in fresh for v in part)
    assert (slots[0]["feed_ns"][[1, 3]] == 2**32 - 1).all()  # saturated
    assert list(slots[0]["seq"][:4]) == [0, 3, 4, 7]
    assert list(slots[1]["seq"][:4]) == [1, 2, 5, 6]
    F.control(L.EV_WATERMARK, 7, 0, hdrs, hdrs32, slots, CAP - 1, tails, _procs(), 0,
              L.WAIT_SPIN, 10, 0, 1000)
    assert slots[0][4]["type"] == L.EV_WATERMARK and slots[1][4]["seq"] == 7
    assert hdrs[0][PRODUCER] == 5 and hdrs[1][PRODUCER] == 5


def test_drop_policy_counts_what_does_not_fit():
    hdrs, hdrs32 = _rings(1)
    slots = (np.zeros(CAP, L.EVENT),)
    buf = np.zeros(CAP + 5, L.EVENT)
    buf["seq"] = np.arange(CAP + 5)
    tails = np.zeros(1, np.int64)
    heads = np.zeros(1, np.int64)
    ctl = np.zeros(F.C_LEN, np.int64)
    F.route(buf, 0, CAP + 5, np.zeros(1, np.uint16), hdrs, hdrs32, slots, CAP - 1, tails,
            heads, L.POLICY_DROP, ctl, _procs(), 0, L.WAIT_SPIN, 10, 0, 1000)
    assert tails[0] == CAP and ctl[F.C_DROPS] == 5
    assert hdrs[0][L.RING_DROPS_WORD] == 5
    assert list(slots[0]["seq"]) == list(range(CAP))  # the first CAP kept, in order


def test_events_of_symbols_or_venues_the_engine_lacks():
    hdrs, hdrs32 = _rings(2)
    slots = tuple(np.zeros(CAP, L.EVENT) for _ in range(2))
    buf = np.zeros(6, L.EVENT)
    buf["seq"] = np.arange(6)
    buf["symbol"] = [0, 1, 9, 2, 4, 1]  # 2 symbols past the engine's 4 (ids 0..3)
    buf["venue"] = [0, 5, 0, 1, 0, 7]   # venues 5 and 7 past its 3
    partition = np.array([0, 1, 1, 0], np.uint16)
    tails = np.zeros(2, np.int64)
    heads = np.zeros(2, np.int64)
    ctl = np.zeros(F.C_LEN, np.int64)
    procs = _procs()
    F.send_batch(buf, 6, True, True, 3, partition, hdrs, hdrs32, slots, CAP - 1, tails, heads,
                 L.POLICY_BLOCK, ctl, procs, 0, L.WAIT_SPIN, 10, 0, 1000)
    # no owner: skipped and counted by the feed; a venue too many goes on to its worker
    assert procs[0]["bad_events"] == 2
    assert ctl[F.C_FOREIGN_SYMBOL] == 9 + 1 and ctl[F.C_FOREIGN_VENUE] == 5 + 1
    routed = sorted(int(x) for w in range(2) for x in slots[w]["seq"][:tails[w] - 1])
    assert routed == [0, 1, 3, 5]  # (each ring also got the batch's watermark)


def _result(seq, symbol, kind=L.RES_QUOTE, bid=100):
    r = np.zeros((), L.RESULT)
    r["seq"], r["symbol"], r["kind"], r["bid_px"] = seq, symbol, kind, bid
    r["bid_venue"] = r["ask_venue"] = L.NO_VENUE
    return r


class Merge:
    """Two worker output rings feeding the merge kernel."""

    def __init__(self, n_workers=2, n_symbols=4):
        self.hdrs, self.hdrs32 = _rings(n_workers)
        self.slots = tuple(np.zeros(CAP, L.RESULT) for _ in range(n_workers))
        self.heads = np.zeros(n_workers, np.int64)
        self.tails = np.zeros(n_workers, np.int64)
        self.known = np.full(n_workers, -1, np.int64)
        self.ended = np.zeros(n_workers, np.int64)
        self.rows = np.zeros(n_symbols, L.SNAPSHOT_ROW)
        self.words = self.rows.view(np.uint64)
        self.bcast_hdr = np.zeros(L.RING_DATA_OFFSET // 8, np.int64)
        self.bcast = np.zeros(64, L.RESULT)
        self.state = np.zeros(8, np.int64)
        self.hist = np.zeros((L.N_STAGES, COUNTS_LEN), np.int64)

    def push(self, w, *records):
        for r in records:
            p = self.hdrs[w][PRODUCER]
            self.slots[w][p & (CAP - 1)] = r
            self.hdrs[w][PRODUCER] = p + 1

    def merge(self):
        return A.merge(self.hdrs, self.hdrs32, self.slots, CAP - 1, self.heads, self.tails,
                       self.known, self.ended, self.rows, self.words, self.bcast_hdr,
                       self.bcast, 63, self.state, self.hist, 100)

    def stream(self):
        return list(self.bcast["seq"][:self.bcast_hdr[PRODUCER]])


def test_merge_waits_for_the_other_worker_then_orders_by_seq():
    m = Merge()
    m.push(0, _result(1, 0), _result(4, 0))
    assert m.merge() == 0, "worker 1 may still send seq < 1"
    m.push(1, _result(2, 1))
    # 2 is safe (worker 0's next is 4); 4 is not until worker 1 shows it is past 4
    assert m.merge() == 2 and m.stream() == [1, 2]
    m.push(1, _result(5, 1, L.RES_WATERMARK))
    assert m.merge() == 1 and m.stream() == [1, 2, 4]
    assert m.hdrs[0][CONSUMER] == 2 and m.hdrs[1][CONSUMER] == 2
    assert m.rows[0]["last_seq"] == 4 and m.rows[0]["updates"] == 2
    assert m.rows[0]["seqlock"] == 4  # two writes, even: not being written
    assert m.rows[1]["last_seq"] == 2


def test_merge_passes_an_ended_worker():
    m = Merge()
    m.push(1, _result(3, 1, L.RES_END))
    m.push(0, _result(1, 0), _result(2, 0))
    assert m.merge() == 2 and m.stream() == [1, 2]
    assert m.ended[1] == 1


def test_merge_counts_locked_and_crossed_symbols():
    m = Merge()
    locked = _result(1, 0)
    locked["flags"] = L.RFLAG_LOCKED
    crossed = _result(2, 1)
    crossed["flags"] = L.RFLAG_CROSSED
    m.push(0, locked, crossed, _result(3, 0), _result(9, 0, L.RES_WATERMARK))
    m.push(1, _result(9, 0, L.RES_WATERMARK))
    m.merge()
    assert m.state[A.ST_LOCKED] == 0 and m.state[A.ST_CROSSED] == 1
    assert m.state[A.ST_RESULTS] == 3
