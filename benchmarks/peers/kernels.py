"""The two numba steps the peers add around the engine's own kernels: the
feed's split of a generated batch by owning worker, and the aggregator's
write of results into the snapshot table (the engine's ``write_row``) with
the engine's latency record."""
from numba import njit

from shmengine import layout as L
from shmengine.hist import record
from shmengine.snapshot import write_row


@njit(cache=True)
def split(events, n, partition, out, bounds, fill):
    """Counting sort of ``events[:n]`` into ``out`` by owning worker, keeping
    stream order within each worker: worker w's events are
    ``out[bounds[w]:bounds[w + 1]]``. ``fill`` is scratch of len(bounds) - 1."""
    bounds[:] = 0
    for i in range(n):
        bounds[partition[events[i].symbol] + 1] += 1
    for w in range(1, len(bounds)):
        bounds[w] += bounds[w - 1]
    fill[:] = bounds[:-1]
    for i in range(n):
        w = partition[events[i].symbol]
        out[fill[w]] = events[i]
        fill[w] += 1


@njit(cache=True)
def absorb(results, rows, words, hist, now):
    """Write each RESULT into its symbol's row as the engine's aggregator does,
    stamped ``now``, and record ``now - recv_ts`` (feed receive -> snapshot)."""
    for i in range(len(results)):
        r = results[i]
        if r.kind <= L.RES_CLEAR:
            write_row(rows, words, r, now)
            record(hist, now - r.recv_ts)
