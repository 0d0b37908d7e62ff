"""Tables (``table.TABLE`` arrays) to files: ``.npy`` (numpy's own format) or ``.parquet``.

The Parquet file has one row per symbol, a ``name`` column, one column per
scalar field and a fixed-size list column per depth or venue array.
"""
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write_atomically(path, write):
    """Call write(fh) on a file beside ``path`` and rename it to ``path`` when done: a
    reader never sees half a file, and a failed write (a full disk) leaves none."""
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)),
                       f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename == tmp:  # name the file asked for
            raise OSError(exc.errno, exc.strerror, path) from None
        raise


def to_arrow(table, names):
    cols = {"name": pa.array(names, pa.string())}
    for field in table.dtype.names:
        col = table[field]
        if col.ndim == 2:
            flat = pa.array(col.reshape(-1))
            cols[field] = pa.FixedSizeListArray.from_arrays(flat, col.shape[1])
        else:
            cols[field] = pa.array(col)
    return pa.table(cols)


def save_table(path, table, names):
    """Write a table (TABLE array) to ``path`` (.npy or .parquet), atomically."""
    if path.endswith(".parquet"):
        write_atomically(path, lambda fh: pq.write_table(to_arrow(table, names), fh))
    else:
        write_atomically(path, lambda fh: np.save(fh, np.asarray(table)))


def save_json(path, value):
    """Write ``value`` as indented JSON to ``path``, atomically."""
    write_atomically(path, lambda fh: fh.write(json.dumps(value, indent=1).encode()))
