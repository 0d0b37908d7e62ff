"""What a run holds in memory, summed before anything is created.

Segments are populated when they are mapped, and every process touches its
private state before its first event (``process.prefault``), so a run takes
what these sizes say from its first second. A configuration that cannot fit
(result rings of 2**26 slots, 4,096 levels per book side of 10,000 symbols on
8 venues, ...) stops the start with one line that names its largest parts,
instead of the kernel's OOM killer ending the supervisor with the segments
it made left filling /dev/shm.

    parts = shared_parts(cfg, n_symbols) + private_parts(cfg, owned)  # [(what, bytes)]
    check(cfg, owned)              # ConfigError when the run does not fit this host
    plan(cfg, owned, available, shm_free)   # the same as a dict, for reports
"""
import os

import psutil

from . import analytics, book
from . import layout as L
from .config import ConfigError
from .hist import COUNTS_LEN
from .process import analytics_params, book_orders
from .shm import SHM_DIR

# What an engine process holds besides its state: the interpreter, numpy, numba
# and the loaded kernels (120-210 MiB RSS each, benchmarks/RESULTS.md).
PROCESS_BYTES = 200 << 20


def shared_parts(cfg, n_symbols):
    """[(what, bytes)] of the run's segments, largest first."""
    w = cfg.workers
    parts = [
        (f"broadcast ring ({cfg.bcast_capacity:,} slots of {L.RESULT.itemsize} bytes, "
         "bcast_capacity)", L.ring_size(cfg.bcast_capacity, L.RESULT.itemsize)),
        (f"result rings ({w} x {cfg.result_ring_capacity:,} slots of {L.RESULT.itemsize} "
         "bytes, result_ring_capacity)",
         w * L.ring_size(cfg.result_ring_capacity, L.RESULT.itemsize)),
        (f"event rings ({w} x {cfg.ring_capacity:,} slots of {L.EVENT.itemsize} bytes, "
         "ring_capacity)", w * L.ring_size(cfg.ring_capacity, L.EVENT.itemsize)),
        ("snapshot and analytics tables",
         L.snap_size(n_symbols) + L.analytics_size(n_symbols)),
        ("names and counters", L.meta_size(n_symbols) + L.stats_size(cfg.n_procs, COUNTS_LEN)),
    ]
    return sorted(parts, key=lambda p: -p[1])


def private_parts(cfg, owned):
    """[(what, bytes)] the processes hold privately; ``owned`` is each worker's symbol count."""
    books = sum(book.state_nbytes(n, cfg.venues, cfg.symbols, cfg.book_levels,
                                  book_orders(cfg, n)) for n in owned)
    levels = sum(book.levels_nbytes(n, cfg.venues, cfg.book_levels) for n in owned)
    orders = ", ".join(f"{book_orders(cfg, n):,}" for n in owned)
    parts = [
        (f"book price levels (symbols x {cfg.venues} venues x 2 sides x {cfg.book_levels:,} "
         "book_levels x 24 bytes)", levels),
        (f"order maps and the rest of the books ({orders} live orders, book_orders)",
         books - levels),
        (f"{cfg.n_procs + 1} processes (interpreter, numba, kernels)",
         (cfg.n_procs + 1) * PROCESS_BYTES),
    ]
    params = analytics_params(cfg)
    if params is not None:
        parts.append(("analytics state (vwap_buckets, ofi_buckets, rv_samples, "
                      "impact_pending per symbol)",
                      sum(analytics.state_nbytes(n, cfg.symbols, params) for n in owned)))
    if cfg.kernels:
        parts.append((f"user kernel state ({len(cfg.kernels)} kernels x {cfg.symbols:,} "
                      f"symbols x {cfg.kernel_state} kernel_state x 8 bytes, per worker)",
                      len(owned) * len(cfg.kernels) * cfg.symbols * cfg.kernel_state * 8))
    return sorted(parts, key=lambda p: -p[1])


def _gib(n):
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def even_split(n_symbols, n_workers):
    """Symbols per worker when they spread evenly (the partition map nearly does)."""
    return [n_symbols // n_workers + (w < n_symbols % n_workers) for w in range(n_workers)]


def host_available():
    """Bytes this host can give a new run now (MemAvailable)."""
    return psutil.virtual_memory().available


def host_shm_free():
    """Bytes free in /dev/shm, where the segments live."""
    st = os.statvfs(SHM_DIR)
    return st.f_bavail * st.f_frsize


def plan(cfg, owned, available, shm_free):
    """What the run holds against what the host has, as a dict; ``problem`` says
    why it does not fit (None when it does)."""
    shared = shared_parts(cfg, cfg.symbols)
    parts = sorted(shared + private_parts(cfg, owned), key=lambda p: -p[1])
    need_shared = sum(n for _, n in shared)
    need = sum(n for _, n in parts)
    problem = None
    if need_shared > shm_free:
        problem = (f"the run's segments need {_gib(need_shared)} but {SHM_DIR} has "
                   f"{_gib(shm_free)} free ({_largest(shared)})")
    elif need > available:
        problem = (f"the run needs {_gib(need)} of memory but this host has "
                   f"{_gib(available)} available ({_largest(parts)})")
    return {"total_bytes": need, "shared_bytes": need_shared, "available_bytes": available,
            "shm_free_bytes": shm_free, "problem": problem,
            "parts": [{"what": what, "bytes": n} for what, n in parts]}


def _largest(parts, k=2):
    return "; ".join(f"{what}: {_gib(n)}" for what, n in parts[:k])


def check(cfg, owned, available=None, shm_free=None):
    """Raise ConfigError when the run's segments do not fit /dev/shm or the whole run
    does not fit the memory this host has available (or the figures given)."""
    p = plan(cfg, owned, host_available() if available is None else available,
             host_shm_free() if shm_free is None else shm_free)
    if p["problem"]:
        raise ConfigError(p["problem"])


def describe(p):
    """Lines on a plan for a report."""
    lines = [f"memory: the run holds about {_gib(p['total_bytes'])} "
             f"({_gib(p['shared_bytes'])} of it segments in {SHM_DIR}); this host has "
             f"{_gib(p['available_bytes'])} available, {_gib(p['shm_free_bytes'])} free in "
             f"{SHM_DIR}"]
    lines += [f"  {_gib(part['bytes']):>9}  {part['what']}" for part in p["parts"][:3]]
    return lines
