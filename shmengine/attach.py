"""Read-only access to a running engine from any process on the host.

    import shmengine
    with shmengine.attach("default") as eng:
        row = eng.snapshot("AAPL")            # book and analytics of one symbol
        print(row["bid_px"] / shmengine.PRICE_SCALE, row["microprice"])
        table = eng.table()                    # every symbol
        for rec in eng.subscribe():            # the broadcast stream, in seq order
            ...

Every mapping is read-only: a strategy cannot disturb the engine, and the
engine never waits for a strategy. A subscriber that falls a whole ring
behind gets ``Lapped`` and resynchronises from ``table()``.
"""
import difflib
import time

import numpy as np

from . import layout as L
from . import broadcast
from .broadcast import Lapped
from .segments import EngineSegments
from .shm import SegmentError
from .supervisor import engine_alive
from .table import combine


class UnknownSymbol(KeyError):
    def __str__(self):
        return self.args[0]


class Symbols:
    """Symbol names <-> ids: ``symbols["AAPL"] -> 17``, ``symbols.name(17) -> "AAPL"``."""

    def __init__(self, names):
        self.names = list(names)
        self.ids = {n: i for i, n in enumerate(self.names)}

    def __len__(self):
        return len(self.names)

    def __iter__(self):
        return iter(self.names)

    def __contains__(self, name):
        return name in self.ids

    def __getitem__(self, name):
        try:
            return self.ids[name]
        except KeyError:
            raise UnknownSymbol(f"unknown symbol {name!r} ({len(self.names)} symbols; "
                                f"{self._hint(name)})") from None

    def _hint(self, name):
        """Names like an unknown one (its case changed, or a letter off), else the first few."""
        text = str(name)
        alike = [n for n in self.names if n.upper() == text.upper()]
        alike += [n for n in difflib.get_close_matches(text.upper(), self.names, n=3)
                  if n not in alike]
        if alike:
            return f"did you mean {', '.join(alike[:3])}?"
        return f"e.g. {', '.join(self.names[:3])}"

    def name(self, symbol_id):
        return self.names[symbol_id]


class EngineDied(RuntimeError):
    """The engine stopped without draining: killed, or failed (a process died)."""


class Subscription:
    """An iterator over the broadcast stream from the moment of subscribing.

    ``for rec in sub`` yields RESULT records one by one and ends when the engine
    has stopped and everything it published is read. ``sub.poll()`` returns
    whatever is new as an array (empty for good once a stopped engine's stream is
    read). Both raise ``EngineDied`` once everything published is read if the
    engine was killed or failed instead, and ``Lapped`` if the reader fell a
    whole ring behind; the subscription then continues from the newest record.
    """

    CHECK_S = 0.05  # how often an empty poll() looks whether the engine died

    def __init__(self, engine, reader, symbols=None, kinds=None):
        self.engine = engine
        self.reader = reader
        self._checked = time.monotonic()
        # what to keep, as bool arrays by symbol id and by kind (None: everything)
        self._symbols = self._kinds = None
        if symbols is not None or kinds is not None:
            self._symbols = np.ones(len(engine.symbols), np.bool_)
            self._kinds = np.ones(256, np.bool_)
        if symbols is not None:
            self._symbols[:] = False
            self._symbols[[engine._symbol_id(s) for s in _listed(symbols)]] = True
        if kinds is not None:
            self._kinds[:] = False
            self._kinds[[_kind(k) for k in _listed(kinds)]] = True

    @property
    def position(self):
        return self.reader.position

    def poll(self, max_n=4096):
        check = time.monotonic() - self._checked >= self.CHECK_S
        if check:
            self._checked = time.monotonic()
        return self._next(max_n, check)[0]

    def _next(self, max_n, check_end):
        """(records, ended): the next records of the symbols and kinds subscribed to (all
        without a filter). When there are none and ``check_end``: ended is True if the
        engine stopped and its stream is read, and EngineDied is raised if it was
        killed or failed instead."""
        if self.engine.closed:
            raise ValueError(f"engine {self.engine.name!r} is closed: attach again and "
                             "subscribe to follow its stream")
        start = self.position
        batch = self.reader.poll(max_n, self._symbols, self._kinds)
        if self.position != start or not check_end or self.engine.running():
            return batch, False
        batch = self.reader.poll(max_n, self._symbols, self._kinds)  # published as it stopped
        if self.position != start:
            return batch, False
        state = self.engine.state()
        if state in ("dead", "failed"):
            why = (f"died (its supervisor, pid {int(self.engine.segs.info['supervisor_pid'])}, "
                   f"is gone)" if state == "dead" else "failed (its supervisor said why)")
            raise EngineDied(f"engine {self.engine.name!r} {why} without draining: its stream "
                             f"ends at position {self.position:,}")
        return batch, True

    def __iter__(self):
        while True:
            start = self.position
            batch, ended = self._next(4096, True)
            if ended:
                return
            if self.position == start:
                self.engine._idle()  # nothing new (records looked at and left are news)
            yield from batch


_KINDS = {name: kind for kind, name in L.RESULT_KIND_NAMES.items()
          if kind not in (L.RES_WATERMARK, L.RES_END)}


def _listed(values):
    return [values] if isinstance(values, (str, int, np.integer)) else list(values)


def _kind(kind):
    if isinstance(kind, str) and kind in _KINDS:
        return _KINDS[kind]
    if isinstance(kind, (int, np.integer)) and int(kind) in _KINDS.values():
        return int(kind)
    raise ValueError(f"unknown record kind {kind!r} (one of {', '.join(_KINDS)})")


class _Closed:
    """The segments of an Engine after close(): any use says so."""

    def __init__(self, name):
        self.name = name

    def __getattr__(self, attr):
        raise ValueError(f"engine {self.name!r} is closed: attach again to read it")


_LIVE_STATES = (L.RUN_STARTING, L.RUN_RUNNING, L.RUN_DRAINING)


class Engine:
    """A running engine, attached read-only. Use ``shmengine.attach(name)``."""

    def __init__(self, name):
        self.segs = EngineSegments.attach(name, writable=False)
        if not engine_alive(self.segs.info):
            pid = int(self.segs.info["supervisor_pid"])
            self.segs.close()
            raise SegmentError(f"engine {name!r} is not running (its supervisor, pid {pid}, is "
                               f"gone) but left its segments: run `shmengine cleanup`")
        self.name = name
        self.symbols = Symbols(self.segs.symbol_names())
        self.n_venues = int(self.segs.info["n_venues"])
        self._sleep = 0.0005

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Unmap the engine's segments; rows and tables already read stay valid."""
        if not isinstance(self.segs, _Closed):
            self.segs.close()
            self.segs = _Closed(self.name)

    @property
    def closed(self):
        return isinstance(self.segs, _Closed)

    def state(self):
        """'starting', 'running', 'draining', 'stopped' (drained, lingering), 'failed', or
        'dead' (its supervisor was killed: nothing more will come)."""
        state = int(self.segs.info["run_state"])
        if state in _LIVE_STATES and not engine_alive(self.segs.info):
            return "dead"
        return L.RUN_STATE_NAMES.get(state, "?")

    def running(self):
        """True while events may still arrive."""
        return int(self.segs.info["run_state"]) in _LIVE_STATES and \
            engine_alive(self.segs.info)

    def _idle(self):
        time.sleep(self._sleep)

    def _symbol_id(self, symbol):
        if isinstance(symbol, (int, np.integer)) and not isinstance(symbol, (bool, np.bool_)):
            if not 0 <= symbol < len(self.symbols):
                raise UnknownSymbol(f"symbol id {symbol} out of range 0..{len(self.symbols) - 1}")
            return int(symbol)
        return self.symbols[symbol]

    def snapshot(self, symbol):
        """The symbol's (name or id) book and analytics as one TABLE record (a copy).

        The book part and the analytics part are each consistent; see
        ``shmengine.table``.
        """
        sym = self._symbol_id(symbol)
        return combine(self.segs.snap.row(sym)[None], self.segs.ana.row(sym)[None])[0]

    def table(self):
        """Every symbol as a TABLE array (see ``snapshot``)."""
        return combine(self.segs.snap.table(), self.segs.ana.table())

    def analytics(self, symbol):
        """The symbol's analytics row alone (ANALYTICS_ROW record, consistent)."""
        return self.segs.ana.row(self._symbol_id(symbol))

    @property
    def analytics_enabled(self):
        return self.segs.ana.enabled

    def subscribe(self, from_position=None, symbols=None, kinds=None):
        """Follow the broadcast stream from now (or from ``from_position``).

        ``symbols`` (names or ids) and ``kinds`` (``"trade"``, ``"bar"``, ... or
        layout.RES_* values) keep only those records, filtered a batch at a time:
        ``eng.subscribe(symbols=["NIF", "ZAU"], kinds=["trade", "bar"])``.
        """
        if from_position is not None:
            newest = broadcast.tail(self.segs.bcast.hdr64)
            if not 0 <= from_position <= newest:
                raise ValueError(f"from_position must be a position of the stream, 0..{newest:,} "
                                 f"(the next record to come), got {from_position:,}")
        return Subscription(self, self.segs.bcast.reader(from_position), symbols, kinds)

    def stats(self):
        """Counters of every process, the market-wide figures and latency percentiles."""
        segs = self.segs
        procs = segs.stats.procs.copy()
        hdr = segs.snap.header
        pct, count = segs.stats.latency()
        return {
            "name": self.name,
            "state": self.state(),
            "events": int(hdr["events"]),
            "results": int(hdr["results"]),
            "locked": int(hdr["locked"]),
            "crossed": int(hdr["crossed"]),
            "processes": [{f: row[f].item() for f in procs.dtype.names if not f.startswith("_")}
                          for row in procs],
            "analytics": segs.ana.enabled,
            "link": segs.stats.link_counters(),
            "latency_ns": pct,
            "latency_samples": count,
            "rings": [{"name": r.name, "capacity": r.capacity, "fill": r.fill(),
                       "drops": r.drops} for r in segs.inputs + segs.outputs],
        }


def attach(name="default"):
    """Attach read-only to the engine ``name`` running on this host."""
    return Engine(name)


__all__ = ["attach", "Engine", "EngineDied", "Lapped", "Symbols", "Subscription",
           "UnknownSymbol"]
