"""A user kernel that passes the trial batch (the run's first events) and raises
once it sees a later event (tests/test_kernels.py)."""
from numba import njit

RAISE_AFTER_SEQ = 20_000


@njit(cache=True)
def late_raise(records, n, rows, state, fields, out):
    for i in range(n):
        if records[i].seq > RAISE_AFTER_SEQ:
            raise ValueError("late_raise: seq past RAISE_AFTER_SEQ")
    return 0
