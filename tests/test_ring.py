"""SPSC ring: two real processes, a small ring, every record checked."""
import json
import subprocess
import sys
import uuid

import numpy as np
import pytest

from shmengine import layout as L
from shmengine import shm
from shmengine.ring import Ring

from conftest import ROOT


def _probe(role, name, count, batch, wait):
    return subprocess.Popen([sys.executable, "-m", "shmengine.ring_probe", role, name,
                             str(count), str(batch), wait], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)


@pytest.mark.parametrize("wait", ["spin", "adaptive"])
def test_ten_million_events_through_a_small_ring(wait):
    name = f"/shmengine.t{uuid.uuid4().hex[:8]}.ring"
    count, capacity = 10_000_000, 1024  # wraps ~10,000 times
    ring = Ring.create(name, capacity, L.EVENT)
    try:
        consumer = _probe("consume", name, count, 100, wait)
        producer = _probe("produce", name, count, 64, wait)
        out_p, _ = producer.communicate(timeout=300)
        out_c, _ = consumer.communicate(timeout=300)
        assert producer.returncode == 0 and consumer.returncode == 0
        res = json.loads(out_c)
        assert res["errors"] == 0, "records lost, duplicated or reordered"
        assert res["consumer_position"] == count
        assert ring.producer_position == count
        assert ring.consumer_position == count
    finally:
        ring.close()
        shm.unlink(name)


def test_capacity_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        Ring.create("/shmengine.tcap.ring", 1000, L.EVENT)
    assert not shm.engine_segments("tcap")


def test_attach_checks_header():
    name = f"/shmengine.t{uuid.uuid4().hex[:8]}.ring"
    ring = Ring.create(name, 64, L.EVENT)
    try:
        with pytest.raises(ValueError, match="128-byte records|64-byte records"):
            Ring.attach(name, L.RESULT)
        with pytest.raises(shm.SegmentError, match="is a ring segment, expected snap"):
            shm.Segment.attach(name, L.SEG_SNAP)
        ring.seg.header["version"] = L.LAYOUT_VERSION + 1
        with pytest.raises(shm.SegmentError, match="layout version"):
            Ring.attach(name, L.EVENT)
        ring.seg.header["version"] = L.LAYOUT_VERSION
        ring.seg.header["state"] = L.STATE_BUILDING
        with pytest.raises(shm.SegmentError, match="half-built"):
            Ring.attach(name, L.EVENT)
        ring.seg.header["magic"] = 12345
        with pytest.raises(shm.SegmentError, match="not a shmengine segment"):
            Ring.attach(name, L.EVENT)
    finally:
        ring.close()
        shm.unlink(name)


def test_segments_are_private_to_the_user():
    import os
    name = f"/shmengine.t{uuid.uuid4().hex[:8]}.ring"
    ring = Ring.create(name, 64, L.EVENT)
    try:
        mode = os.stat("/dev/shm" + name).st_mode & 0o777
        assert mode == 0o600
    finally:
        ring.close()
        shm.unlink(name)


def test_publish_release_single_process():
    from shmengine.ring import publish, release, CONSUMER_BELL
    name = f"/shmengine.t{uuid.uuid4().hex[:8]}.ring"
    ring = Ring.create(name, 8, L.EVENT)
    try:
        ring.slots["seq"][:3] = [1, 2, 3]
        publish(ring.hdr64, ring.hdr32, 3, ring.hdr32, CONSUMER_BELL)
        assert ring.fill() == 3
        release(ring.hdr64, ring.hdr32, 2)
        assert ring.fill() == 1 and ring.consumer_position == 2
        np.testing.assert_array_equal(ring.slots["seq"][:3], [1, 2, 3])
    finally:
        ring.close()
        shm.unlink(name)


def test_prefetch_record_touches_every_line_of_the_record():
    # A hint has no effect to assert but its code: one PREFETCHT0 (read) or
    # PREFETCHW (write) per cache line of the record, none of the record's data changed.
    from numba import njit

    from shmengine.atomics import prefetch_record

    @njit
    def warm(a, i):
        prefetch_record(a, i, False)
        prefetch_record(a, i + 1, True)
        return a[i].seq

    a = np.zeros(4, L.RESULT)
    a["seq"] = 7
    assert warm(a, 1) == 7 and (a["seq"] == 7).all()
    asm = warm.inspect_asm(warm.signatures[0])
    lines = L.RESULT.itemsize // 64
    prefetches = [ln.split()[0] for ln in asm.splitlines() if ln.strip().startswith("prefetch")]
    assert len(prefetches) == 2 * lines and prefetches.count("prefetcht0") >= lines
    # PREFETCHW where the CPU has it (x86 since Broadwell and on AMD); else a plain one
    assert prefetches.count("prefetchw") in (0, lines)


def test_a_filtered_read_copies_only_the_wanted_records():
    from shmengine.broadcast import read_wanted
    cap = 64
    hdr = np.zeros(L.RING_DATA_OFFSET // 8, np.int64)
    slots = np.zeros(cap, L.RESULT)
    slots["seq"] = np.arange(cap)
    slots["symbol"] = np.arange(cap) % 7
    slots["symbol"][5] = 1 << 30  # what a slot being overwritten could hold
    slots["kind"] = np.where(np.arange(cap) % 3 == 0, L.RES_TRADE, L.RES_QUOTE)
    hdr[L.RING_PRODUCER_WORD] = hdr[L.RING_PRODUCER_INTENT_WORD] = 40
    symbols = np.zeros(7, np.bool_)
    symbols[[2, 5]] = True
    kinds = np.zeros(256, np.bool_)
    kinds[L.RES_TRADE] = True
    out = np.zeros(16, L.RESULT)
    n, looked = read_wanted(hdr, slots, cap - 1, 0, out, 1000, symbols, kinds)
    want = [i for i in range(40) if i % 7 in (2, 5) and i % 3 == 0 and i != 5]
    assert looked == 40 and list(out["seq"][:n]) == want
    # out full: it stops at the record that filled it, and says how far it looked
    n, looked = read_wanted(hdr, slots, cap - 1, 0, out[:2], 1000, symbols, kinds)
    assert n == 2 and looked == want[1] + 1
    n, looked = read_wanted(hdr, slots, cap - 1, 10, out, 5, symbols, kinds)
    assert looked == 5 and list(out["seq"][:n]) == [i for i in want if 10 <= i < 15]
    # lapped: its records at position are gone
    hdr[L.RING_PRODUCER_WORD] = hdr[L.RING_PRODUCER_INTENT_WORD] = 40 + cap
    assert read_wanted(hdr, slots, cap - 1, 0, out, 1000, symbols, kinds)[0] == -1
