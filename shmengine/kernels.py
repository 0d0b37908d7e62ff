"""User kernels: numba functions that run inside the workers, on each batch.

A user kernel is an ``@njit`` function with this signature::

    @njit(cache=True)
    def kernel(records, n, rows, state, fields, out):
        ...
        return k

* ``records[:n]``: the batch's stream in order (RESULT dtype): book results
  (kinds RES_QUOTE, RES_TRADE, RES_CLEAR; each carries the symbol's quote
  and tape after its event), bar closes (RES_BAR; view a record with
  ``records[i:i+1].view(BAR_RECORD)`` in Python, or read the BAR_RECORD
  fields by offset), signals and watermarks. Skip the kinds you don't need.
* ``rows``: the analytics table (ANALYTICS_ROW, one row per symbol id); the
  worker's own symbols are current as of the batch's end. Read only.
* ``state``: float64[n_symbols, kernel_state], the kernel's own, zero at
  start and kept between batches.
* ``fields``: float64[n_symbols, USER_FIELDS], what the kernel publishes:
  after the batch, the ``user`` field of each symbol with a result in the
  batch is set from it. Kernels of one run share these fields; give each
  its own indices.
* ``out``: USER_RECORD array; write records into ``out[0:k]`` and return k
  (at most ``len(out)``). Call ``stamp(out[j], records[i], tag)`` first:
  it copies the header of the record the new one reacts to, so it goes on
  the stream just after it. Records whose seq is not in the batch, or lower
  than one already placed, are dropped and counted (``user_dropped``). A
  record goes on the stream as RES_USER with its kernel's index, whatever
  kind it holds.

Name kernels in the config as ``"module:function"`` (an importable module)
or ``"path/to/file.py:function"``. Each is compiled and tried on a sample
batch before the engine starts; one that does not compile or raises stops
the start with a message naming it.
"""
import collections
import importlib
import multiprocessing
import os
import signal
import re
import sys

import numpy as np
from numba import njit
from numba.core.registry import CPUDispatcher

from . import layout as L
from .analytics import ROW_WORDS
from .atomics import fence_release, store_relaxed, store_release

UserKernels = collections.namedtuple("UserKernels", [
    "rows",     # the analytics rows, read-only to the kernels
    "states",   # float64[n_kernels, n_symbols, kernel_state]
    "fields",   # float64[n_symbols, USER_FIELDS]
    "outs",     # USER_RECORD[n_kernels, records per batch]
    "counts",   # int64[n_kernels]: records each kernel returned
    "cursor",   # int64[n_kernels]: records of each placed so far in the batch
])


class KernelError(ValueError):
    """A user kernel cannot be loaded, compiled or run; the message names it."""


@njit(cache=True)
def stamp(rec, source, tag):
    """Give a USER_RECORD the header of the record it reacts to, and a tag."""
    rec.seq = source.seq
    rec.exch_ts = source.exch_ts
    rec.recv_ts = source.recv_ts
    rec.proc_ts = source.proc_ts
    rec.symbol = source.symbol
    rec.venue = source.venue
    rec.kind = L.RES_USER
    rec.flags = 0
    rec.event_type = source.event_type
    rec.kernel = 0
    rec.tag = tag
    for j in range(L.USER_VALUES):
        rec.values[j] = 0.0


def load(spec):
    """The dispatcher named by ``"module:function"`` or ``"file.py:function"``."""
    module_name, sep, func_name = spec.rpartition(":")
    if not sep or not module_name or not func_name:
        raise KernelError(f"kernel {spec!r}: name it as module:function or file.py:function")
    try:
        if module_name.endswith(".py"):
            module = _import_file(spec, module_name)
        else:
            if os.getcwd() not in sys.path:
                sys.path.append(os.getcwd())
            module = importlib.import_module(module_name)
    except KernelError:
        raise
    except Exception as exc:
        raise KernelError(f"kernel {spec!r}: cannot import {module_name}: "
                          f"{type(exc).__name__}: {exc}") from None
    func = getattr(module, func_name, None)
    if func is None:
        raise KernelError(f"kernel {spec!r}: {module_name} has no function {func_name}")
    if not isinstance(func, CPUDispatcher):
        raise KernelError(f"kernel {spec!r}: {func_name} is not a numba @njit function")
    return func


def _import_file(spec, path):
    """Import file.py as the module ``file``, as a plain import from its folder would,
    so that numba's cache of its kernels serves both ways of loading it."""
    if not os.path.isfile(path):
        raise KernelError(f"kernel {spec!r}: no file {path}")
    path = os.path.abspath(path)
    folder, name = os.path.split(path)
    name = name[:-3]
    module = sys.modules.get(name)
    if module is not None:
        if os.path.abspath(getattr(module, "__file__", "") or "") != path:
            raise KernelError(f"kernel {spec!r}: a different module named {name} is already "
                              f"imported ({getattr(module, '__file__', '?')})")
        return module
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(name)


def make_pass(kernels):
    """One jitted function that runs every kernel on a batch, in order."""
    names = [f"k{i}" for i in range(len(kernels))]
    body = "\n".join(f"    counts[{i}] = min(max({n}(records, n, rows, states[{i}], fields, "
                     f"outs[{i}]), 0), outs.shape[1])" for i, n in enumerate(names))
    src = f"def user_pass(records, n, rows, states, fields, outs, counts):\n{body}\n"
    scope = dict(zip(names, kernels))
    exec(compile(src, "<shmengine user kernels>", "exec"), scope)
    return njit(scope["user_pass"])


def new_user_kernels(n_kernels, n_symbols, kernel_state, records_per_batch, rows):
    rows = rows.view()
    rows.flags.writeable = False  # numba then refuses to compile a kernel that writes them
    return UserKernels(
        rows=rows,
        states=np.zeros((n_kernels, n_symbols, kernel_state), np.float64),
        fields=np.zeros((n_symbols, L.USER_FIELDS), np.float64),
        outs=np.zeros((n_kernels, records_per_batch), L.USER_RECORD),
        counts=np.zeros(n_kernels, np.int64),
        cursor=np.zeros(n_kernels, np.int64),
    )


@njit(cache=True)
def merge(records, n, uk, local_index, rows, words, out, out_user, out_position, out_mask,
          dropped):
    """Copy ``records[:n]`` to the ring with each kernel's records after the last
    record of their seq; publish the kernels' fields of the symbols with results.

    ``out_user`` is ``out`` viewed as USER_RECORD. Returns how many records
    were written; counts dropped user records in ``dropped[0]``.
    """
    written = 0
    cursor = uk.cursor
    cursor[:] = 0
    for i in range(n):
        r = records[i]
        out[(out_position + written) & out_mask] = r
        written += 1
        k = r.kind
        if k == L.RES_QUOTE or k == L.RES_TRADE or k == L.RES_CLEAR:
            sym = np.int64(r.symbol)
            if sym < local_index.shape[0] and local_index[sym] >= 0:
                _publish_fields(rows, words, uk.fields, sym)
        if i + 1 < n and records[i + 1].seq == r.seq:
            continue  # place user records after the last record of their seq
        for kk in range(uk.counts.shape[0]):
            recs = uk.outs[kk]
            c = cursor[kk]
            while c < uk.counts[kk] and recs[c].seq <= r.seq:
                if recs[c].seq == r.seq:
                    recs[c].kernel = kk
                    # whatever the kernel wrote there: a user record never updates a
                    # row (the aggregator writes rows by the symbol of book results)
                    recs[c].kind = L.RES_USER
                    out_user[(out_position + written) & out_mask] = recs[c]
                    written += 1
                else:
                    dropped[0] += 1
                c += 1
            cursor[kk] = c
    for kk in range(uk.counts.shape[0]):
        dropped[0] += uk.counts[kk] - cursor[kk]
    return written


@njit(cache=True)
def _publish_fields(rows, words, fields, sym):
    base = sym * ROW_WORDS
    lock = words[base]
    store_relaxed(words, base, lock + 1)
    fence_release()  # the odd seqlock is visible before any field changes
    user = rows[sym].user
    for j in range(L.USER_FIELDS):
        user[j] = fields[sym, j]
    store_release(words, base, lock + 2)


_PREPARED = {}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _reason(exc):
    """The line of a numba error that says what is wrong, without colour codes."""
    from numba.core.errors import NumbaError
    if not isinstance(exc, NumbaError):
        return f"{type(exc).__name__}: {_ANSI.sub('', str(exc)).strip()}"
    lines = [_ANSI.sub("", ln).strip() for ln in str(exc).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("Failed in", "During:"))]
    return lines[0] if lines else _ANSI.sub("", str(exc)).strip()


def prepare(specs, trial_batch, n_symbols, kernel_state, batch):
    """Load, compile and try each kernel; return the jitted pass over all of them.

    ``trial_batch()`` gives (records, rows) to try them on. The trial runs in
    a child process first, so a kernel that crashes (e.g. writes out of
    bounds) is reported, not fatal. Raises KernelError naming the first
    kernel that cannot be imported, compiled or run.
    """
    key = (tuple(specs), n_symbols, kernel_state, batch)
    if key in _PREPARED:
        return _PREPARED[key]
    funcs = [load(spec) for spec in specs]
    _trial_in_child(specs, trial_batch, n_symbols, kernel_state, batch)
    records, rows = trial_batch()
    user_pass = _try(specs, funcs, records[:batch], rows, n_symbols, kernel_state, batch)
    _PREPARED[key] = user_pass
    return user_pass


def _try(specs, funcs, records, rows, n_symbols, kernel_state, batch):
    """Run each kernel on the trial records, then all through one pass; returns the pass."""
    from numba.core.types import Integer
    for i, (spec, func) in enumerate(zip(specs, funcs)):
        uk = new_user_kernels(1, n_symbols, kernel_state, batch, rows)
        args = (records, len(records), uk.rows, uk.states[0], uk.fields, uk.outs[0])
        try:
            try:
                func(*args)
            except ImportError:
                # numba's cache of this file was written when it was imported under
                # another module name, and cannot be loaded under this one: compile anew.
                func = funcs[i] = njit(func.py_func)
                func(*args)
        except Exception as exc:
            if _is_compile_error(exc) or not func.signatures:
                raise KernelError(f"kernel {spec!r} does not compile: {_reason(exc)}") from None
            raise KernelError(f"kernel {spec!r} raised {type(exc).__name__} on a trial batch: "
                              f"{exc}") from None
        returns = func.nopython_signatures[-1].return_type
        if not isinstance(returns, Integer):
            raise KernelError(f"kernel {spec!r} must return how many records it wrote (an "
                              f"integer); it returns {returns}")
    user_pass = make_pass(funcs)
    uk = new_user_kernels(len(funcs), n_symbols, kernel_state, batch, rows)
    user_pass(records, len(records), uk.rows, uk.states, uk.fields, uk.outs, uk.counts)
    return user_pass


def _is_compile_error(exc):
    from numba.core.errors import NumbaError
    return isinstance(exc, NumbaError)


def _trial_in_child(specs, trial_batch, n_symbols, kernel_state, batch):
    """Load and try the kernels in a forked child; raise its KernelError or its crash."""
    ctx = multiprocessing.get_context("fork")
    reader, writer = ctx.Pipe(duplex=False)

    def child():
        try:
            funcs = [load(spec) for spec in specs]
            records, rows = trial_batch()
            _try(specs, funcs, records[:batch], rows, n_symbols, kernel_state, batch)
            writer.send(None)
        except KernelError as exc:
            writer.send(str(exc))
        except BaseException as exc:  # anything else must still reach the parent as one line
            writer.send(f"kernels {', '.join(map(repr, specs))}: {type(exc).__name__}: {exc}")

    proc = ctx.Process(target=child, daemon=True)
    proc.start()
    writer.close()
    try:
        message = reader.recv()
    except EOFError:  # it died without a word
        message = None
    proc.join()
    reader.close()
    if message:
        raise KernelError(message)
    if proc.exitcode != 0:
        how = (f"was killed by {signal.Signals(-proc.exitcode).name}" if proc.exitcode < 0
               else f"exited with status {proc.exitcode}")
        raise KernelError(f"kernels {', '.join(map(repr, specs))}: the trial batch {how} "
                          f"(a kernel crashed: e.g. an index out of bounds)")
