"""Tables (``table.TABLE`` arrays) to files: ``.npy`` (numpy's own format) or ``.parquet``.

The Parquet file has one row per symbol, a ``name`` column, one column per
scalar field and a fixed-size list column per depth or venue array.
"""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq



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
    """Write a table (TABLE array) to ``path`` (.npy or .parquet)."""
    if path.endswith(".parquet"):
        pq.write_table(to_arrow(table, names), path)
    else:
        np.save(path, np.asarray(table))
