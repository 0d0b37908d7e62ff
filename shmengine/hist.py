"""Latency histogram recorded in numba, read as an HdrHistogram.

The counts array has HdrHistogram's own layout (lowest 1, highest
layout.HIST_HIGHEST, layout.HIST_DIGITS significant digits), so a kernel
records with one index computation and readers hand the counts to the
``hdrh`` library for percentiles, encoding and comparison.
"""
import numpy as np
from hdrh.histogram import HdrHistogram
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import layout as L


def new_histogram():
    return HdrHistogram(1, L.HIST_HIGHEST, L.HIST_DIGITS)


_REF = new_histogram()
COUNTS_LEN = _REF.counts_len
_HALF_MAG = _REF.sub_bucket_half_count_magnitude
_HALF_COUNT = _REF.sub_bucket_half_count
_SUB_MASK = _REF.sub_bucket_mask
_UNIT_MAG = _REF.unit_magnitude
del _REF


@intrinsic
def bit_length(typingctx, v):
    """Bits needed for v > 0: 64 - count of leading zeros (one LZCNT)."""
    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        ctlz = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(i64, [i64, ir.IntType(1)]), "llvm.ctlz.i64")
        x = context.cast(builder, args[0], sig.args[0], types.int64)
        zeros = builder.call(ctlz, [x, ir.Constant(ir.IntType(1), 0)])
        return builder.sub(ir.Constant(i64, 64), zeros)
    return types.int64(v), codegen


@njit(cache=True, _nrt=False)
def counts_index(value):
    """HdrHistogram's counts index of ``value`` (clamped into the range)."""
    if value < 1:
        value = 1
    if value > L.HIST_HIGHEST:
        value = L.HIST_HIGHEST
    bucket = bit_length(value | _SUB_MASK) - _UNIT_MAG - (_HALF_MAG + 1)
    sub = value >> (bucket + _UNIT_MAG)
    return ((bucket + 1) << _HALF_MAG) + sub - _HALF_COUNT


@njit(cache=True, _nrt=False)
def record(counts, value):
    counts[counts_index(value)] += 1


U32_MAX = 0xFFFFFFFF


@njit(cache=True, _nrt=False)
def span_u32(ns):
    """A duration in ns as the uint32 stage fields carry it: clamped to [0, 4.29 s]."""
    return np.uint32(min(max(ns, 0), U32_MAX))


def to_hdr(counts):
    """An HdrHistogram holding a copy of ``counts`` (a racy but harmless read)."""
    hist = new_histogram()
    counts = np.array(counts, dtype=np.int64)
    for i in np.flatnonzero(counts):
        hist.record_value(hist.get_value_from_index(int(i)), int(counts[i]))
    return hist


def percentiles(counts, points=(50, 90, 99, 99.9, 99.99)):
    """{percentile: ns} and the total count, from a counts array."""
    hist = to_hdr(counts)
    return {p: hist.get_value_at_percentile(p) for p in points}, hist.get_total_count()
