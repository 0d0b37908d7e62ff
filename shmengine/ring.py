"""Single-producer single-consumer ring of fixed-size records in shared memory.

Layout (offsets in layout.py): SEGMENT_HEADER, then capacity and slot size,
the producer position and the consumer position each on their own 128 bytes,
the wait flags and futex bells, then ``capacity`` slots.

Ordering contract:
- the producer writes slots ``[tail, tail + n)`` then store-releases
  ``tail + n``; a consumer that load-acquires the producer position sees
  those slots whole;
- the consumer reads slots then store-releases its position; the producer
  that load-acquires it may overwrite everything before it.
Cursor stores are seq_cst so that the following load of the other side's
wait flag cannot pass them (the StoreLoad edge of the sleep/wake handshake).

Waiting (``await_position``): spin with PAUSE; with WAIT_ADAPTIVE then
yield, then raise a flag, re-check, and sleep on a futex bell. The other side
rings the bell only when it sees the flag, so a busy pipeline makes no
syscall. A sleep is bounded, so callers regain control to heartbeat.
"""
import numpy as np
from numba import njit

from . import layout as L
from .atomics import (cpu_relax, fetch_add, futex_wait, futex_wake, load_acquire,
                      load_seq_cst, sched_yield, store_relaxed, store_seq_cst)
from .shm import Segment

PRODUCER = L.RING_PRODUCER_WORD
CONSUMER = L.RING_CONSUMER_WORD
CONSUMER_WAIT = L.RING_CONSUMER_WAIT_WORD32
CONSUMER_BELL = L.RING_CONSUMER_BELL_WORD32
PRODUCER_WAIT = L.RING_PRODUCER_WAIT_WORD32
PRODUCER_BELL = L.RING_PRODUCER_BELL_WORD32


@njit(cache=True, _nrt=False)
def ring_bell(flag32, flag_word, bell32, bell_word):
    """Wake the other side if it flagged itself asleep (call after a cursor store)."""
    if load_seq_cst(flag32, flag_word) != 0:
        store_relaxed(flag32, flag_word, 0)
        fetch_add(bell32, bell_word, 1)
        futex_wake(bell32, bell_word)


@njit(cache=True, _nrt=False)
def publish(hdr64, hdr32, tail, bell32, bell_word):
    """Producer: make slots before ``tail`` visible and wake a sleeping consumer."""
    store_seq_cst(hdr64, PRODUCER, tail)
    ring_bell(hdr32, CONSUMER_WAIT, bell32, bell_word)


@njit(cache=True, _nrt=False)
def release(hdr64, hdr32, head):
    """Consumer: hand slots before ``head`` back and wake a producer waiting for room."""
    store_seq_cst(hdr64, CONSUMER, head)
    ring_bell(hdr32, PRODUCER_WAIT, hdr32, PRODUCER_BELL)


@njit(cache=True, _nrt=False)
def await_position(cur64, cur_word, target, flag32, flag_word, bell32, bell_word,
                   mode, spins, yields, sleep_ns):
    """Wait until the cursor ``cur64[cur_word]`` reaches ``target``; returns it.

    Returns early (below target) after one bounded sleep, or after ``spins``
    with WAIT_SPIN, so the caller can heartbeat and check for stop.
    """
    c = load_acquire(cur64, cur_word)
    for _ in range(spins):
        if c >= target:
            return c
        cpu_relax()
        c = load_acquire(cur64, cur_word)
    if c >= target or mode == L.WAIT_SPIN:
        return c
    for _ in range(yields):
        sched_yield()
        c = load_acquire(cur64, cur_word)
        if c >= target:
            return c
    ticket = load_acquire(bell32, bell_word)
    store_seq_cst(flag32, flag_word, 1)
    c = load_seq_cst(cur64, cur_word)
    if c < target:
        futex_wait(bell32, bell_word, ticket, sleep_ns)
        c = load_acquire(cur64, cur_word)
    store_relaxed(flag32, flag_word, 0)
    return c


@njit(cache=True, _nrt=False)
def await_readable(hdr64, hdr32, head, mode, spins, yields, sleep_ns):
    """Consumer of one ring: wait for a record at ``head``; returns the producer position."""
    return await_position(hdr64, PRODUCER, head + 1, hdr32, CONSUMER_WAIT, hdr32,
                          CONSUMER_BELL, mode, spins, yields, sleep_ns)


@njit(cache=True, _nrt=False)
def await_room(hdr64, hdr32, tail, need, capacity, mode, spins, yields, sleep_ns):
    """Producer: wait for room for ``need`` records at ``tail``; returns the free count."""
    head = await_position(hdr64, CONSUMER, tail + need - capacity, hdr32, PRODUCER_WAIT,
                          hdr32, PRODUCER_BELL, mode, spins, yields, sleep_ns)
    return capacity - (tail - head)


class Ring:
    """An SPSC ring segment: ``slots`` (structured array), ``hdr64``/``hdr32`` views.

    >>> r = Ring.create("/shmengine.demo.in.0", 1024, layout.EVENT)   # doctest: +SKIP
    >>> r.slots[r.producer_position & r.mask]                         # doctest: +SKIP
    """

    kind = L.SEG_RING

    def __init__(self, seg, dtype):
        self.seg = seg
        self.name = seg.name
        self.hdr64 = seg.view(np.int64, 0, L.RING_DATA_OFFSET // 8)
        self.hdr32 = seg.view(np.uint32, 0, L.RING_DATA_OFFSET // 4)
        self.capacity = int(self.hdr64[L.RING_CAPACITY_OFFSET // 8])
        self.mask = self.capacity - 1
        slot_size = int(self.hdr64[L.RING_SLOT_SIZE_OFFSET // 8])
        if slot_size != dtype.itemsize:
            raise ValueError(f"ring {seg.name} holds {slot_size}-byte records, "
                             f"expected {dtype.itemsize}")
        self.policy = int(self.hdr64[L.RING_POLICY_OFFSET // 8])
        self.slots = seg.view(dtype, L.RING_DATA_OFFSET, self.capacity)

    @classmethod
    def create(cls, name, capacity, dtype, policy=L.POLICY_BLOCK, kind=L.SEG_RING):
        dtype = np.dtype(dtype)
        if capacity < 2 or capacity & (capacity - 1):
            raise ValueError(f"ring capacity must be a power of two >= 2, got {capacity}")
        seg = Segment.create(name, kind, L.ring_size(capacity, dtype.itemsize))
        hdr64 = seg.view(np.int64, 0, L.RING_DATA_OFFSET // 8)
        hdr64[L.RING_CAPACITY_OFFSET // 8] = capacity
        hdr64[L.RING_SLOT_SIZE_OFFSET // 8] = dtype.itemsize
        hdr64[L.RING_POLICY_OFFSET // 8] = policy
        seg.mark_ready()
        return cls(seg, dtype)

    @classmethod
    def attach(cls, name, dtype, writable=True, kind=L.SEG_RING):
        return cls(Segment.attach(name, kind, writable), np.dtype(dtype))

    @property
    def producer_position(self):
        return int(self.hdr64[PRODUCER])

    @property
    def consumer_position(self):
        return int(self.hdr64[CONSUMER])

    @property
    def drops(self):
        return int(self.hdr64[L.RING_DROPS_WORD])

    def fill(self):
        return self.producer_position - self.consumer_position

    def close(self):
        self.hdr64 = self.hdr32 = self.slots = None
        self.seg.close()
