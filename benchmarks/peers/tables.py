"""Whether two final snapshot tables are the same.

Every field of the snapshot row counts but the wall-clock ones, which
``snapshot.write_row`` stamps from clocks rather than from the stream:
``publish_ts`` (when the aggregator wrote the row) and ``last_recv_ts`` (when
the feed generated the event). ``seqlock`` is left out too, since the engine's
saved table (``table.TABLE``) does not carry it; ``updates`` does the same job.
Tables may be SNAPSHOT_ROW arrays or the engine's saved TABLE arrays.
"""
import numpy as np

from shmengine import layout as L

WALL_CLOCK = ("publish_ts", "last_recv_ts")
FIELDS = tuple(n for n in L.SNAPSHOT.names
               if not n.startswith("_") and n != "seqlock" and n not in WALL_CLOCK)


def differences(expected, got):
    """Names of the fields that differ (with how many rows), [] when the tables match.

    >>> differences(engine_table, peer_rows)
    ['bid_px (3 rows)']
    """
    if len(expected) != len(got):
        return [f"row count ({len(expected)} vs {len(got)})"]
    out = []
    for name in FIELDS:
        a, b = np.asarray(expected[name]), np.asarray(got[name])
        same = a == b
        if a.dtype.kind == "f":
            same |= np.isnan(a) & np.isnan(b)
        if same.ndim > 1:
            same = same.all(axis=tuple(range(1, same.ndim)))
        bad = int((~same).sum())
        if bad:
            out.append(f"{name} ({bad} rows)")
    return out
