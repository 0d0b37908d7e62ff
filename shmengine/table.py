"""What a reader sees of a symbol: its snapshot row and its analytics row, side by side.

The two rows have their own seqlocks and writers (the aggregator, the worker
owning the symbol); each is consistent. ``last_seq`` is the seq of the last
event in the snapshot row, ``an_seq`` the last in the analytics row. Once an
engine has drained they are equal.

    >>> table = combine(snap.table(), ana.table())
    >>> table["microprice"][17], table["bid_px"][17]
"""
import numpy as np

from . import layout as L

_SNAP_FIELDS = [n for n in L.SNAPSHOT.names if not n.startswith("_") and n != "seqlock"]
_ANA_FIELDS = [n for n in L.ANALYTICS.names
               if not n.startswith("_") and n not in ("seqlock", "symbol")]
assert not set(_SNAP_FIELDS) & set(_ANA_FIELDS)

TABLE = np.dtype([(n, L.SNAPSHOT.fields[n][0]) for n in _SNAP_FIELDS]
                 + [(n, L.ANALYTICS.fields[n][0]) for n in _ANA_FIELDS])


def combine(snap_rows, ana_rows):
    """A TABLE array from matching SNAPSHOT_ROW and ANALYTICS_ROW arrays."""
    out = np.zeros(len(snap_rows), TABLE)
    for n in _SNAP_FIELDS:
        out[n] = snap_rows[n]
    for n in _ANA_FIELDS:
        out[n] = ana_rows[n]
    return out
