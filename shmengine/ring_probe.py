"""Ring probes: a sequence producer and a verifying consumer, in two processes.

Used by the ring stress test and the ring benchmark: the producer writes
EVENT records whose seq is their position; the consumer checks every one
(nothing lost, duplicated or reordered) and reports counts and timing.

    python -m shmengine.ring_probe produce /shmengine.probe.ring 10000000 64 spin [cpu]
    python -m shmengine.ring_probe consume /shmengine.probe.ring 10000000 64 spin [cpu]
"""
import json
import os
import sys
import time

import numpy as np
from numba import njit

from . import layout as L
from .atomics import load_acquire, monotonic_ns
from .ring import (CONSUMER, CONSUMER_BELL, PRODUCER, Ring, await_readable, await_room,
                   publish, release)

SPINS, YIELDS, SLEEP_NS = 20000, 100, 1_000_000


@njit(cache=True)
def produce(hdr64, hdr32, slots, mask, src, count, batch, mode):
    """Copy ``count`` whole records from ``src`` (256 templates) in batches, stamping seq;
    returns how many times it waited for room."""
    capacity = mask + 1
    tail = 0
    waits = 0
    head = 0  # the consumer position as last seen: re-read only when it shows no room
    while tail < count:
        n = min(batch, count - tail)
        if tail + n - head > capacity:
            head = load_acquire(hdr64, CONSUMER)
            while tail + n - head > capacity:
                waits += 1
                head = tail - capacity + await_room(hdr64, hdr32, tail, n, capacity, mode,
                                                    SPINS, YIELDS, SLEEP_NS)
        for i in range(n):
            k = (tail + i) & mask
            slots[k] = src[(tail + i) & 255]
            slots[k].seq = tail + i
        tail += n
        publish(hdr64, hdr32, tail, hdr32, CONSUMER_BELL)
    return waits


@njit(cache=True)
def consume(hdr64, hdr32, slots, mask, count, batch, mode):
    """Read and check ``count`` records; returns (errors, waits, ns from first to last)."""
    head = 0
    errors = 0
    waits = 0
    t0 = 0
    tail = 0  # the producer position as last seen: re-read only when caught up
    while head < count:
        if tail <= head:
            tail = load_acquire(hdr64, PRODUCER)
        while tail <= head:
            waits += 1
            tail = await_readable(hdr64, hdr32, head, mode, SPINS, YIELDS, SLEEP_NS)
        if t0 == 0:
            t0 = monotonic_ns()
        n = min(tail - head, batch)
        for i in range(n):
            rec = slots[(head + i) & mask]
            p = head + i
            # uint64 fields against uint64 values: mixed signedness would compare as float64
            if rec.seq != np.uint64(p) or rec.order_id != np.uint64((p & 255) * 7 + 1) \
                    or rec.qty != np.uint32(p & 255):
                errors += 1
        head += n
        release(hdr64, hdr32, head)
    return errors, waits, monotonic_ns() - t0


def run(role, name, count, batch, wait, cpu=None):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    ring = Ring.attach(name, L.EVENT)
    mode = L.WAIT_SPIN if wait == "spin" else L.WAIT_ADAPTIVE
    t0 = time.perf_counter()
    if role == "produce":
        waits = produce(ring.hdr64, ring.hdr32, ring.slots, ring.mask, templates(), count, batch,
                        mode)
        out = {"waits": int(waits)}
    else:
        errors, waits, ns = consume(ring.hdr64, ring.hdr32, ring.slots, ring.mask, count, batch,
                                    mode)
        out = {"errors": int(errors), "waits": int(waits), "transfer_ns": int(ns),
               "consumer_position": ring.consumer_position}
    out["seconds"] = time.perf_counter() - t0
    ring.close()
    return out


def templates():
    src = np.zeros(256, L.EVENT)
    src["order_id"] = np.arange(256) * 7 + 1
    src["qty"] = np.arange(256)
    src["price"] = 1_000_000
    src["type"] = L.EV_ADD
    return src


def warm():
    """Compile (or load from cache) both probes before timing anything."""
    hdr = np.zeros(L.RING_DATA_OFFSET // 8, np.int64)
    slots = np.zeros(64, L.EVENT)
    produce(hdr, hdr.view(np.uint32), slots, 63, templates(), 32, 32, L.WAIT_SPIN)
    consume(hdr, hdr.view(np.uint32), slots, 63, 32, 32, L.WAIT_SPIN)


if __name__ == "__main__":
    role, name, count, batch, wait = sys.argv[1:6]
    cpu = int(sys.argv[6]) if len(sys.argv) > 6 else None
    warm()
    print(json.dumps(run(role, name, int(count), int(batch), wait, cpu)))
