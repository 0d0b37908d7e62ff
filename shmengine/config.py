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
    bar_intervals = ["1s", "1m"]   # durations: "250ms", "1s", "5m", "1h" or seconds
    signal_spread_bps = 25.0
"""
import dataclasses
import math
import os
import tempfile
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
    linger: bool = False           # after the stream ends, serve the final state until stopped
    # synthetic | itch:FILE | journal:DIR | udp://GROUP:PORT (sources.py)
    source: str = "synthetic"
    speed: float = 0.0             # replay at this many times the source's clock; 0: flat out
    itch_date: str = ""            # itch source: the trading day (YYYY-MM-DD); "": from midnight
    # itch source: symbols named before the first order ("start") or in the "whole" file
    itch_directory: str = "start"
    take: str = ""                 # udp source: only these symbols ("K/N" hash share, or names)
    journal: str = ""              # write the sequenced stream to this journal directory
    publish: str = ""              # publish the sequenced stream: udp://GROUP:PORT[?options]
    # Ring sizes keep the working set in a last-level cache: a 320-byte result ring of
    # 2**18 records (84 MB) made the aggregator 3x slower than one of 2**16.
    ring_capacity: int = 1 << 14   # events per feed->worker ring (64 B each)
    result_ring_capacity: int = 1 << 13  # results per worker->aggregator ring (320 B each)
    bcast_capacity: int = 1 << 16  # results kept in the broadcast ring for readers
    batch: int = 1024              # most records a process moves at once
    drop: bool = False             # drop (and count) instead of blocking when a ring is full
    book_levels: int = 64          # price levels kept per side per venue
    book_orders: int = 0           # live orders per worker; 0: 64 per (symbol, venue), >= 2**20
    heartbeat_timeout: float = 5.0  # seconds without a heartbeat before a process is declared hung
    spins: int = None              # PAUSE loops before yielding; default: see spin_budget
    yields: int = None             # adaptive: sched_yield calls before sleeping; the same
    sleep_us: int = 1000           # adaptive: longest single futex sleep
    # Analytics (see shmengine/analytics.py); durations on the exchange clock.
    analytics: bool = True         # false: books only
    bar_intervals: list = None     # OHLCV bar lengths, at most 2; default 1s and 1m
    vwap_window: object = "60s"    # rolling VWAP window ...
    vwap_buckets: int = 60         # ... in this many buckets
    ofi_window: object = "1s"      # rolling order-flow imbalance window ...
    ofi_buckets: int = 10          # ... in this many buckets
    rv_interval: object = "1s"     # realized volatility: mid sampled this often ...
    rv_samples: int = 60           # ... over this many grid steps
    depth_levels: int = 5          # levels summed into depth_bid / depth_ask
    impact_delay: object = "1s"    # realized spread and price impact: mid this long after
    impact_pending: int = 128      # trades followed at once per symbol
    signal_ofi: int = 0            # fire at |ofi| >= this many shares; 0: off
    signal_spread_bps: float = 50.0  # fire at a quoted spread >= this; 0: off
    signal_crossed: bool = True    # fire when a symbol's consolidated quote crosses
    kernels: list = None           # user kernels, "module:function" or "file.py:function"
    kernel_state: int = 16         # float64 state per symbol for each user kernel

    @property
    def wait_mode(self):
        return L.WAIT_SPIN if self.wait == "spin" else L.WAIT_ADAPTIVE

    @property
    def n_procs(self):
        return self.workers + 2


DEFAULT_SPINS = 2000
DEFAULT_YIELDS = 100

_INT_RANGES = {
    "symbols": (1, L.MAX_SYMBOLS), "venues": (1, L.MAX_VENUES), "workers": (1, L.MAX_WORKERS),
    "events": (0, 2**62), "seed": (0, 2**63 - 1), "ring_capacity": (64, 1 << 26),
    "bcast_capacity": (64, 1 << 26), "result_ring_capacity": (64, 1 << 26),
    "batch": (1, 1 << 16), "book_levels": (2, 4096),
    "book_orders": (0, 1 << 28), "spins": (0, 1 << 30),
    "yields": (0, 1 << 20), "sleep_us": (1, 1_000_000),
    "vwap_buckets": (1, 1 << 16), "ofi_buckets": (1, 1 << 16), "rv_samples": (1, 1 << 16),
    "depth_levels": (1, L.TOP_LEVELS), "impact_pending": (1, 1 << 16), "signal_ofi": (0, 2**62),
    "kernel_state": (1, 1 << 16),
}
MAX_RATE = 1e9  # events/s: one a nanosecond, beyond any feed (and the pacing's arithmetic)
DURATION_KEYS = ("vwap_window", "ofi_window", "rv_interval", "impact_delay")
_UNITS_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
             "h": 3_600_000_000_000}


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
    _source_settings(values)
    known = _field_types()
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]!r} ({_hint_key(unknown[0], known)})")
    cfg = Config(**{k: _coerce(k, v, known[k]) for k, v in values.items()})
    check(cfg)
    return cfg


# keys a user may write as the command-line flag that sets them
_FLAG_KEYS = {"bars": "bar_intervals", "kernel": "kernels", "no_analytics": "analytics"}


def _hint_key(key, known):
    """What a mistyped config key was likely meant to be."""
    import difflib
    text = str(key).replace("-", "_")
    if text in _FLAG_KEYS:
        return f"the flag --{text.replace('_', '-')} sets {_FLAG_KEYS[text]}"
    if text in known:
        return f"write it {text}"
    alike = difflib.get_close_matches(text, list(known), n=3, cutoff=0.6)
    if alike:
        return f"did you mean {', '.join(alike)}?"
    return f"known: {', '.join(sorted(known))}"


def _source_settings(values):
    """Refuse settings the run's source would ignore (asked for, they were meant), and
    give a replay the venues its journal was written with: fewer would drop the
    events of the others."""
    from . import sources
    source = values.get("source")
    if not isinstance(source, str):
        return  # (_coerce says what is wrong with it)
    kind, arg = sources.parse(source)
    if kind == L.SRC_SYNTHETIC:
        return
    if values.get("rate"):
        raise ConfigError("rate paces the synthetic market: a file or a journal is paced with "
                          "speed, a multicast link by its publisher")
    named_by = {L.SRC_ITCH: "the ITCH file", L.SRC_JOURNAL: "the journal"}.get(kind)
    if kind == L.SRC_UDP and arg.get("symbols") == "publisher":
        named_by = "the publisher"
    if "symbols" in values and named_by:
        raise ConfigError(f"the symbols come from {named_by}: leave symbols out")
    if "venues" in values and kind == L.SRC_ITCH:
        raise ConfigError("an ITCH file is one venue's feed: leave venues out")
    stream = sources.journal_stream(arg) if kind == L.SRC_JOURNAL else None
    if stream is None:
        return
    venues = stream["venues"]
    asked = values.setdefault("venues", venues)
    if type(asked) is int and asked < venues:
        raise ConfigError(f"journal {arg} holds events of {venues} venues: venues = {asked} "
                          f"would drop those of venues {asked}..{venues - 1} (leave venues "
                          f"out to take the journal's)")


def parse_duration(key, value):
    """'250ms', '1s', '5m', '1h', or a number of seconds -> int ns."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ns = value * 1_000_000_000
    elif isinstance(value, str):
        text = value.strip()
        for unit in sorted(_UNITS_NS, key=len, reverse=True):
            if text.endswith(unit):
                try:
                    ns = float(text[:-len(unit)]) * _UNITS_NS[unit]
                except ValueError:
                    break
                break
        else:
            ns = None
        if ns is None or not text[:1].isdigit():
            raise ConfigError(f"{key} must be a duration such as 250ms, 1s, 5m or 1h, "
                              f"got {value!r}")
    else:
        raise ConfigError(f"{key} must be a duration such as 250ms, 1s, 5m or 1h, got {value!r}")
    if ns != ns or ns <= 0 or ns > 2**62:
        raise ConfigError(f"{key} must be a positive duration, got {value!r}")
    return int(round(ns))


def _coerce(key, value, typ):
    want = typ if typ in (int, float, str, bool) else None
    if key in DURATION_KEYS:
        return parse_duration(key, value)
    if key == "kernels":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
            raise ConfigError(
                f"kernels must be a list of \"module:function\" names, got {value!r}")
        return value
    if key == "bar_intervals":
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"bar_intervals must be a list of durations, got {value!r}")
        return [parse_duration("bar_intervals", v) for v in value]
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
        if not math.isfinite(value):  # (argparse and TOML both read nan and inf)
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
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
        if v is not None and not lo <= v <= hi:
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
    if not 0 <= cfg.rate <= MAX_RATE:
        raise ConfigError(f"rate must be 0 (as fast as possible) to {MAX_RATE:.0e} events/s, "
                          f"got {cfg.rate:g}")
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
    for key in DURATION_KEYS:
        if isinstance(getattr(cfg, key), str):
            setattr(cfg, key, parse_duration(key, getattr(cfg, key)))
    if cfg.bar_intervals is None:
        cfg.bar_intervals = [1_000_000_000, 60_000_000_000]
    if len(cfg.bar_intervals) > L.MAX_BAR_INTERVALS:
        raise ConfigError(f"bar_intervals takes at most {L.MAX_BAR_INTERVALS} durations, "
                          f"got {len(cfg.bar_intervals)}")
    if cfg.signal_spread_bps < 0:
        raise ConfigError(f"signal_spread_bps must be >= 0, got {cfg.signal_spread_bps}")
    for key, buckets in (("vwap_window", "vwap_buckets"), ("ofi_window", "ofi_buckets")):
        if getattr(cfg, key) % getattr(cfg, buckets):
            raise ConfigError(f"{key} ({getattr(cfg, key)} ns) must divide into {buckets} "
                              f"({getattr(cfg, buckets)}) whole ns")
    cfg.kernels = cfg.kernels or []
    if cfg.kernels and not cfg.analytics:
        raise ConfigError("kernels need analytics = true (they read the analytics table)")
    if cfg.kernels and cfg.result_ring_capacity < 2 * (len(cfg.kernels) + 1) * cfg.batch:
        raise ConfigError(f"with {len(cfg.kernels)} kernel(s), result_ring_capacity must be at "
                          f"least {2 * (len(cfg.kernels) + 1) * cfg.batch} for batch {cfg.batch}")
    from . import sources
    kind, _ = sources.parse(cfg.source)
    if cfg.speed < 0:
        raise ConfigError(f"speed must be >= 0 (0: as fast as possible), got {cfg.speed}")
    if cfg.speed and kind not in (L.SRC_ITCH, L.SRC_JOURNAL):
        raise ConfigError("speed paces a replay: it needs source itch:FILE or journal:DIR")
    if cfg.itch_directory not in ("start", "whole"):
        raise ConfigError(f"itch_directory must be start or whole, got {cfg.itch_directory!r}")
    if cfg.itch_directory != "start" and kind != L.SRC_ITCH:
        raise ConfigError("itch_directory says where an ITCH file names its symbols: it needs "
                          "source itch:FILE")
    if cfg.itch_date:
        if kind != L.SRC_ITCH:
            raise ConfigError("itch_date dates an ITCH file's times: it needs source itch:FILE")
        sources.itch_midnight_ns(cfg.itch_date)
    if cfg.take and kind != L.SRC_UDP:
        raise ConfigError("take picks symbols from a multicast link: it needs source udp://...")
    if cfg.take and cfg.journal:
        raise ConfigError("a journal holds a whole stream: it cannot be written from a "
                          "subscriber that takes only some symbols")
    if cfg.publish:
        from .outputs import publish_options
        publish_options(cfg.publish)
    if cfg.journal and os.path.isdir(cfg.journal) and any(
            e.endswith(".shj") for e in os.listdir(cfg.journal)):
        raise ConfigError(f"journal {cfg.journal} already holds a stream: give a new directory "
                          f"(or replay it with `shmengine replay {cfg.journal}`)")
    if cfg.save_snapshot and not cfg.save_snapshot.endswith((".npy", ".parquet")):
        raise ConfigError(f"save_snapshot must end in .npy or .parquet, got {cfg.save_snapshot!r}")
    # refused now rather than after the run, when what it made would be lost
    for key in ("save_snapshot", "summary_json"):
        if getattr(cfg, key):
            _check_writable(key, getattr(cfg, key), directory=False)
    if cfg.journal:
        _check_writable("journal", cfg.journal, directory=True)
    return cfg


def _check_writable(key, path, directory):
    """Refuse a path the run could not write: a file (or, with ``directory``, a
    directory made with its parents) in a writable place."""
    path = os.path.abspath(path)
    if os.path.exists(path) and os.path.isdir(path) != directory:
        raise ConfigError(f"{key} {path} is {'not ' if directory else ''}a directory")
    place = path if directory and os.path.isdir(path) else os.path.dirname(path)
    if not directory and not os.path.isdir(place):
        raise ConfigError(f"{key} {path}: no directory {place}")
    while not os.path.exists(place):  # a journal directory is made with its parents
        place = os.path.dirname(place)
    try:  # a trial file: permission bits say nothing to root, nor of /proc or a full disk
        tempfile.TemporaryFile(dir=place).close()
    except OSError as e:
        raise ConfigError(f"{key} {path}: cannot write in {place} ({e.strerror})") from None


def analytics_settings(cfg):
    """Keyword arguments of ``analytics.make_params`` for this config."""
    return dict(bar_intervals=tuple(cfg.bar_intervals), vwap_window=cfg.vwap_window,
                vwap_buckets=cfg.vwap_buckets, ofi_window=cfg.ofi_window,
                ofi_buckets=cfg.ofi_buckets, rv_interval=cfg.rv_interval,
                rv_samples=cfg.rv_samples, depth_levels=cfg.depth_levels,
                impact_delay=cfg.impact_delay, impact_pending=cfg.impact_pending,
                signal_ofi=cfg.signal_ofi, signal_spread_bps=cfg.signal_spread_bps,
                signal_crossed=cfg.signal_crossed)


def cpu_plan(cfg):
    """CPU for each process in order feed, worker 0..W-1, aggregator.

    A ``cpus`` list is taken in that order (and repeated); without one, the
    CPUs this process may use are placed by ``place``.
    """
    if cfg.cpus:
        return [cfg.cpus[i % len(cfg.cpus)] for i in range(cfg.n_procs)]
    return place(sorted(os.sched_getaffinity(0)), cfg.workers)


def place(cpus, workers):
    """CPUs for feed, workers, aggregator: one each while there are enough; otherwise
    the feed and the aggregator share the first and the workers spread over the rest.

    Each stage wakes the next (feed -> workers -> aggregator); a woken process on
    its waker's CPU waits for the waker's time slice (milliseconds, not
    microseconds), so no process shares a CPU with one it wakes or that wakes it.
    """
    n = workers + 2
    if len(cpus) >= n or len(cpus) == 1:
        return [cpus[i % len(cpus)] for i in range(n)]
    rest = cpus[1:]
    return [cpus[0]] + [rest[w % len(rest)] for w in range(workers)] + [cpus[0]]


def shares_cpu(plan, proc):
    """True if process ``proc`` of ``plan`` shares its CPU with another of the engine's."""
    return plan.count(plan[proc]) > 1


def batch_scheduled(cfg, plan, proc):
    """Whether process ``proc`` (the aggregator) runs SCHED_BATCH: when it shares the
    feed's CPU and the feed runs flat out (a synthetic market without --rate, a
    file or journal at speed 0).

    A SCHED_BATCH task that wakes does not preempt the one running, so the
    results of a worker's batch no longer switch the feed out for the
    aggregator each time (~7,500 switches a second each way at 8 M events/s):
    the aggregator takes several batches per turn. Paced runs keep the normal
    policy, where a wake-up served at once keeps latency down.
    """
    from . import sources
    kind = sources.parse(cfg.source)[0]
    flat_out = (cfg.rate == 0 if kind == L.SRC_SYNTHETIC else
                cfg.speed == 0 if kind in (L.SRC_ITCH, L.SRC_JOURNAL) else False)
    return flat_out and plan[proc] == plan[0] and proc != 0


def spin_budget(cfg, shared):
    """(spins, yields) of a process's adaptive wait: as configured, else 2000 PAUSEs
    (~50 us) and 100 yields on a CPU of its own, and none on a shared CPU, where
    spinning only keeps the core from the process it waits for."""
    spins = cfg.spins if cfg.spins is not None else (0 if shared and cfg.wait == "adaptive"
                                                     else DEFAULT_SPINS)
    yields = cfg.yields if cfg.yields is not None else (0 if shared else DEFAULT_YIELDS)
    return spins, yields
