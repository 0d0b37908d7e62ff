"""User kernels that must not get past the engine's start-up (tests/test_kernels.py).

Each is named on the command line as ``tests/kernels/broken.py:NAME`` (or as the
module ``tests.kernels.broken:NAME``) and should stop ``shmengine run`` with one
line naming it. Name each one always the same way (raises_on_trial as a module, the
rest as a file): a numba cache entry names the module its function was compiled in.
"""
from numba import njit

from shmengine.kernels import stamp
from shmengine.layout import RES_TRADE


@njit(cache=True)
def undefined_name(records, n, rows, state, fields, out):
    k = 0
    for i in range(n):
        k += no_such_global_in_broken_py  # noqa: F821 - the point of this kernel
    return k


@njit(cache=True)
def bad_field(records, n, rows, state, fields, out):
    total = 0
    for i in range(n):
        total += records[i].no_such_field
    return 0


@njit(cache=True)
def raises_on_trial(records, n, rows, state, fields, out):
    for i in range(n):
        if records[i].kind == RES_TRADE:
            raise ValueError("trial boom from raises_on_trial")
    return 0


def plain_python(records, n, rows, state, fields, out):  # no @njit
    return 0


@njit(cache=True)
def returns_nothing(records, n, rows, state, fields, out):
    """Forgets ``return k``: compiles and runs alone, but returns None."""
    for i in range(n):
        if records[i].kind == RES_TRADE:
            fields[records[i].symbol, 7] += 1.0


@njit(cache=True)
def fine(records, n, rows, state, fields, out):
    """A correct kernel, to sit beside the broken ones."""
    k = 0
    for i in range(n):
        if records[i].kind == RES_TRADE and k < out.shape[0]:
            stamp(out[k], records[i], 7)
            k += 1
    return k
