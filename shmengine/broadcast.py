"""One-to-many broadcast ring: one writer that never waits, any number of readers.

The writer announces how far it is about to write (``intent``), writes the
slots, then store-releases the tail. A reader copies slots it has not seen,
then re-reads ``intent``: anything older than ``intent - capacity`` may have
been overwritten while it copied, and if its copy reaches back that far the
reader was lapped. Readers keep their position privately and never write to
the segment, so they attach read-only and cannot slow the writer.
"""
import numpy as np
from numba import njit

from . import layout as L
from .atomics import fence_acquire, fence_release, load_acquire, store_release, store_relaxed
from .ring import Ring

TAIL = L.RING_PRODUCER_WORD
INTENT = L.RING_PRODUCER_INTENT_WORD


@njit(cache=True, _nrt=False)
def begin_write(hdr64, tail, n):
    """Writer: announce slots [tail, tail + n) before writing them."""
    store_relaxed(hdr64, INTENT, tail + n)
    fence_release()


@njit(cache=True, _nrt=False)
def end_write(hdr64, tail):
    store_release(hdr64, TAIL, tail)


@njit(cache=True, _nrt=False)
def read(hdr64, slots, mask, position, out, max_n):
    """Copy up to ``max_n`` records from ``position`` into ``out``.

    Returns the count copied, or -1 if the reader was lapped (its records at
    ``position`` are gone); then resynchronise from the snapshot table and
    continue from ``tail(hdr64)``.
    """
    capacity = mask + 1
    tail = load_acquire(hdr64, TAIL)
    if tail - position > capacity:
        return -1
    n = min(tail - position, max_n)
    for i in range(n):
        out[i] = slots[(position + i) & mask]
    fence_acquire()
    if load_acquire(hdr64, INTENT) - capacity > position:
        return -1
    return n


@njit(cache=True, _nrt=False)
def read_wanted(hdr64, slots, mask, position, out, max_scan, symbols, kinds):
    """Look at up to ``max_scan`` records from ``position`` and copy into ``out`` those
    whose symbol and kind are set in the bool arrays ``symbols`` (by symbol id) and
    ``kinds`` (256, by kind), until ``out`` is full.

    Returns (copied, looked at), or (-1, 0) if the reader was lapped. Only the
    wanted records are copied whole: following a few symbols of a fast stream
    reads one line of each record, not all five.
    """
    capacity = mask + 1
    tail = load_acquire(hdr64, TAIL)
    if tail - position > capacity:
        return -1, 0
    scan = min(tail - position, max_scan)
    n = 0
    room = out.shape[0]
    for i in range(scan):
        rec = slots[(position + i) & mask]
        sym = np.int64(rec.symbol)  # a slot being overwritten may hold anything: bounded
        if sym < symbols.shape[0] and symbols[sym] and kinds[rec.kind]:
            out[n] = rec
            n += 1
            if n == room:
                scan = i + 1
                break
    fence_acquire()
    if load_acquire(hdr64, INTENT) - capacity > position:
        return -1, 0
    return n, scan


@njit(cache=True, _nrt=False)
def tail(hdr64):
    return load_acquire(hdr64, TAIL)


class BroadcastRing(Ring):
    """The broadcast segment: a Ring whose consumer cursor is unused."""

    kind = L.SEG_BCAST

    @classmethod
    def create(cls, name, capacity, dtype=L.RESULT, policy=L.POLICY_DROP, kind=L.SEG_BCAST):
        return super().create(name, capacity, dtype, policy, kind)

    @classmethod
    def attach(cls, name, dtype=L.RESULT, writable=False, kind=L.SEG_BCAST):
        return super().attach(name, dtype, writable, kind)

    def reader(self, position=None):
        """A private read cursor starting at ``position`` (default: the current tail)."""
        reader = BroadcastReader(self, tail(self.hdr64))
        try:
            reader.poll(0)  # compile or load the read kernel before taking the position
        except Lapped:
            pass
        reader.position = tail(self.hdr64) if position is None else position
        return reader


class Lapped(Exception):
    """The reader fell a whole ring behind; ``missed`` records are gone.

    Resynchronise from the snapshot table (``Engine.table()``); the reader has
    already moved to the newest record.
    """

    def __init__(self, missed):
        super().__init__(f"broadcast reader lapped: at least {missed} records missed; "
                         f"resynchronise from the snapshot table")
        self.missed = missed


class BroadcastReader:
    def __init__(self, ring, position):
        self.ring = ring
        self.position = position
        self.buf = np.zeros(4096, ring.slots.dtype)

    def poll(self, max_n=4096, symbols=None, kinds=None):
        """New records as an array (a copy, possibly empty); raises Lapped.

        With ``symbols`` and ``kinds`` (bool arrays: by symbol id, and 256 by
        kind) only those records, out of up to 16 times max_n looked at.
        """
        max_n = min(max_n, len(self.buf))
        if symbols is None:
            n = read(self.ring.hdr64, self.ring.slots, self.ring.mask, self.position, self.buf,
                     max_n)
            looked = n
        else:
            n, looked = read_wanted(self.ring.hdr64, self.ring.slots, self.ring.mask,
                                    self.position, self.buf[:max_n], 16 * max_n, symbols, kinds)
        if n < 0:
            now = tail(self.ring.hdr64)
            missed = now - self.position - self.ring.capacity
            self.position = now
            raise Lapped(max(missed, 1))
        self.position += looked
        return self.buf[:n].copy()
