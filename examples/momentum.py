"""A user kernel: mid-price momentum per symbol from two exponential averages.

    shmengine run --kernel examples/momentum.py:momentum

Publishes in each symbol's ``user`` fields: [0] the fast average of the mid,
[1] the slow one, [2] their gap in bps. Puts a USER_RECORD on the stream
(tag +1 up, -1 down; values [fast, slow, gap_bps]) each time the gap
crosses +/- THRESHOLD_BPS into a new direction.
"""
import numpy as np
from numba import njit

from shmengine.kernels import stamp
from shmengine.layout import PRICE_SCALE, RES_CLEAR, RES_QUOTE, RES_TRADE

FAST = 0.2             # weight of a new mid in the fast average
SLOW = 0.02
THRESHOLD_BPS = 2.0
# state words
S_FAST = 0
S_SLOW = 1
S_DIRECTION = 2


@njit(cache=True)
def momentum(records, n, rows, state, fields, out):
    k = 0
    for i in range(n):
        r = records[i]
        if r.kind != RES_QUOTE and r.kind != RES_TRADE and r.kind != RES_CLEAR:
            continue
        if r.bid_qty <= 0 or r.ask_qty <= 0:
            continue
        sym = r.symbol
        mid = (r.bid_px + r.ask_px) / (2.0 * PRICE_SCALE)
        s = state[sym]
        if s[S_SLOW] == 0.0:
            s[S_FAST] = mid
            s[S_SLOW] = mid
        s[S_FAST] += FAST * (mid - s[S_FAST])
        s[S_SLOW] += SLOW * (mid - s[S_SLOW])
        gap = (s[S_FAST] - s[S_SLOW]) / s[S_SLOW] * 1e4
        fields[sym, 0] = s[S_FAST]
        fields[sym, 1] = s[S_SLOW]
        fields[sym, 2] = gap
        direction = 0.0
        if gap >= THRESHOLD_BPS:
            direction = 1.0
        elif gap <= -THRESHOLD_BPS:
            direction = -1.0
        if direction != 0.0 and direction != s[S_DIRECTION] and k < out.shape[0]:
            stamp(out[k], r, np.int32(direction))
            out[k].values[0] = s[S_FAST]
            out[k].values[1] = s[S_SLOW]
            out[k].values[2] = gap
            k += 1
        if direction != 0.0:
            s[S_DIRECTION] = direction
    return k
