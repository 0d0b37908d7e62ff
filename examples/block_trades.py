"""A user kernel: signed trade flow per symbol and an alert on block trades.

    shmengine run --kernel examples/block_trades.py:block_trades

A print that took a resting offer was buyer-initiated (+), one that took a
bid seller-initiated (-). Publishes in each symbol's ``user`` fields: [3] the
signed volume since start, [4] the largest print seen. Puts a USER_RECORD on
the stream (tag 1; values [price, qty, direction]) for each print of at
least BLOCK_QTY shares.
"""
from numba import njit

from shmengine.kernels import stamp
from shmengine.layout import PRICE_SCALE, RES_TRADE, SIDE_ASK

BLOCK_QTY = 2_000


@njit(cache=True)
def block_trades(records, n, rows, state, fields, out):
    k = 0
    for i in range(n):
        r = records[i]
        if r.kind != RES_TRADE:
            continue
        sym = r.symbol
        direction = 1.0 if r.side == SIDE_ASK else -1.0
        fields[sym, 3] += direction * r.last_qty
        if r.last_qty > fields[sym, 4]:
            fields[sym, 4] = r.last_qty
        if r.last_qty >= BLOCK_QTY and k < out.shape[0]:
            stamp(out[k], r, 1)
            out[k].values[0] = r.last_px / PRICE_SCALE
            out[k].values[1] = r.last_qty
            out[k].values[2] = direction
            k += 1
    return k
