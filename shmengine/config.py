"""Engine configuration: defaults, TOML files, command-line overrides, checks.

Every tunable lives here. ``load(path, overrides)`` returns a checked
``Config`` or raises ``ConfigError`` with one line that says what is wrong.

Example ``engine.toml``::

    name = "prod"
    symbols = 2000
    venues = 4
    workers = 2
    cpus = [2, 3, 4, 5]
    rate = 1000000        # events/s; 0 = as fast as possible
    wait = "adaptive"
"""
import dataclasses
import os
import tomllib

from . import layout as L
from .shm import check_engine_name


class ConfigError(ValueError):
    """A configuration value or flag is wrong; the message says which and why."""


@dataclasses.dataclass
class Config:
    name: str = "default"
    symbols: int = 1000
    venues: int = 4
    workers: int = 1
    cpus: list = None              # CPUs to pin to, in order: feed, workers..., aggregator
    rate: float = 0.0              # events/s, 0 = as fast as possible
    duration: float = 0.0          # seconds, 0 = until stopped
    events: int = 0                # stop after this many events, 0 = no limit
    wait: str = "adaptive"         # spin | adaptive
    seed: int = 1
    save_snapshot: str = ""        # .npy or .parquet file for the final snapshot table
    summary_json: str = ""         # write the final figures (and latency histogram) here
    linger: bool = False           # after the stream ends, keep serving the final state until stopped
    # Ring sizes keep the working set in a last-level cache: a 320-byte result ring of
    # 2**18 records (84 MB) made the aggregator 3x slower than one of 2**16.
    ring_capacity: int = 1 << 14   # events per feed->worker ring (64 B each)
    result_ring_capacity: int = 1 << 13  # results per worker->aggregator ring (320 B each)
    bcast_capacity: int = 1 << 16  # results kept in the broadcast ring for readers
    batch: int = 1024              # most records a process moves at once
    drop: bool = False             # drop (and count) instead of blocking when a ring is full
    book_levels: int = 64          # price levels kept per side per venue
    book_orders: int = 0           # live orders per worker; 0: 64 per (symbol, venue) it owns
    heartbeat_timeout: float = 5.0  # seconds without a heartbeat before a process is declared hung
    spins: int = 2000              # wait strategy: PAUSE loops before yielding (~50 us)
    yields: int = 100              # adaptive: sched_yield calls before sleeping
    sleep_us: int = 1000           # adaptive: longest single futex sleep

    @property
    def wait_mode(self):
        return L.WAIT_SPIN if self.wait == "spin" else L.WAIT_ADAPTIVE

    @property
    def n_procs(self):
        return self.workers + 2


_INT_RANGES = {
    "symbols": (1, L.MAX_SYMBOLS), "venues": (1, L.MAX_VENUES), "workers": (1, L.MAX_WORKERS),
    "events": (0, 2**62), "seed": (0, 2**63 - 1), "ring_capacity": (64, 1 << 26),
    "bcast_capacity": (64, 1 << 26), "result_ring_capacity": (64, 1 << 26), "batch": (1, 1 << 16), "book_levels": (2, 4096),
    "book_orders": (0, 1 << 28), "spins": (0, 1 << 30),
    "yields": (0, 1 << 20), "sleep_us": (1, 1_000_000),
}


def _field_types():
    return {f.name: f.type for f in dataclasses.fields(Config)}


def load(path=None, overrides=None):
    """Defaults, then the TOML file at ``path``, then non-None ``overrides``."""
    values = {}
    if path:
        try:
            with open(path, "rb") as fh:
                values.update(tomllib.load(fh))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = _field_types()
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    cfg = Config(**{k: _coerce(k, v, known[k]) for k, v in values.items()})
    check(cfg)
    return cfg


def _coerce(key, value, typ):
    want = typ if typ in (int, float, str, bool) else None
    if key == "cpus":
        if isinstance(value, str):
            value = parse_cpu_list(value)
        if not isinstance(value, list) or not all(isinstance(c, int) for c in value):
            raise ConfigError(f"cpus must be a list of CPU numbers, got {value!r}")
        return value
    if want is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if want is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if want is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if want is str and not isinstance(value, str):
        raise ConfigError(f"{key} must be a string, got {value!r}")
    return value


def parse_cpu_list(text):
    """'0,2-4' -> [0, 2, 3, 4]."""
    cpus = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = part.split("-")
                cpus.extend(range(int(lo), int(hi) + 1))
            elif part:
                cpus.append(int(part))
    except ValueError:
        raise ConfigError(f"bad CPU list {text!r}: use e.g. 0,2-4") from None
    return cpus


def check(cfg):
    try:
        check_engine_name(cfg.name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for key, (lo, hi) in _INT_RANGES.items():
        v = getattr(cfg, key)
        if not lo <= v <= hi:
            raise ConfigError(f"{key} must be between {lo} and {hi}, got {v}")
    for key in ("ring_capacity", "result_ring_capacity", "bcast_capacity"):
        v = getattr(cfg, key)
        if v & (v - 1):
            raise ConfigError(f"{key} must be a power of two, got {v}")
    if cfg.batch > cfg.bcast_capacity // 4:
        raise ConfigError(f"batch ({cfg.batch}) must be at most a quarter of bcast_capacity "
                          f"({cfg.bcast_capacity})")
    for key in ("ring_capacity", "result_ring_capacity"):
        if cfg.batch > getattr(cfg, key) // 2:
            raise ConfigError(f"batch ({cfg.batch}) must be at most half of {key} "
                              f"({getattr(cfg, key)})")
    if cfg.wait not in ("spin", "adaptive"):
        raise ConfigError(f"wait must be 'spin' or 'adaptive', got {cfg.wait!r}")
    if cfg.rate < 0:
        raise ConfigError(f"rate must be >= 0 events/s, got {cfg.rate}")
    if cfg.duration < 0:
        raise ConfigError(f"duration must be >= 0 seconds, got {cfg.duration}")
    if cfg.heartbeat_timeout <= 0:
        raise ConfigError("heartbeat_timeout must be > 0 seconds")
    if cfg.cpus is not None:
        allowed = os.sched_getaffinity(0)
        if not cfg.cpus:
            raise ConfigError("cpus is empty: give at least one CPU")
        bad = [c for c in cfg.cpus if c not in allowed]
        if bad:
            raise ConfigError(f"CPU {bad[0]} is not available here (usable: "
                              f"{','.join(map(str, sorted(allowed)))})")
    if cfg.save_snapshot and not cfg.save_snapshot.endswith((".npy", ".parquet")):
        raise ConfigError(f"save_snapshot must end in .npy or .parquet, got {cfg.save_snapshot!r}")
    return cfg


def cpu_plan(cfg):
    """CPU for each process in order feed, worker 0..W-1, aggregator."""
    cpus = cfg.cpus or sorted(os.sched_getaffinity(0))
    return [cpus[i % len(cpus)] for i in range(cfg.n_procs)]
