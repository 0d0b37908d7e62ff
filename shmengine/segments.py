"""All the segments of one engine, created together and attached together.

    meta   engine info, symbol names, symbol -> worker partition map
    stats  per-process counters and the latency histogram
    in.W   feed -> worker W ring (EVENT)
    out.W  worker W -> aggregator ring (RESULT)
    snap   snapshot table
    ana    analytics table (rows stay empty in a run without analytics)
    bcast  broadcast ring of RESULT

The meta segment is created first and marked READY last, so an engine whose
meta is READY has all its other segments.
"""
import numpy as np

from . import layout as L
from . import shm
from .analytics_table import AnalyticsTable
from .broadcast import BroadcastRing
from .ring import Ring
from .snapshot import SnapshotTable
from .stats import StatsBlock


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def partition_map(names, n_workers):
    """Worker of each symbol: FNV-1a of its name, stable across runs and hosts."""
    return np.array([fnv1a64(n.encode()) % n_workers for n in names], dtype=np.uint16)


def encode_names(names):
    arr = np.zeros(len(names), dtype=f"S{L.SYMBOL_NAME_LEN}")
    for i, n in enumerate(names):
        b = n.encode("ascii")
        if not b or len(b) > L.SYMBOL_NAME_LEN:
            raise ValueError(f"symbol name {n!r} must be 1..{L.SYMBOL_NAME_LEN} ASCII characters")
        arr[i] = b
    return arr


class EngineSegments:
    """Mapped segments of engine ``name``: ``info``, ``names``, ``partition``,
    ``stats``, ``snap``, ``ana``, ``bcast``, ``inputs[w]``, ``outputs[w]``."""

    def __init__(self, name, meta, stats, snap, ana, bcast, inputs, outputs):
        self.name = name
        self.meta = meta
        self.info = meta.record(L.ENGINE_INFO, L.META_INFO_OFFSET)
        n = int(self.info["n_symbols"])
        self.names = meta.view(f"S{L.SYMBOL_NAME_LEN}", L.META_NAMES_OFFSET, n)
        self.partition = meta.view(np.uint16, L.partition_offset(n), n)
        self.stats = stats
        self.snap = snap
        self.ana = ana
        self.bcast = bcast
        self.inputs = inputs
        self.outputs = outputs

    @property
    def n_workers(self):
        return int(self.info["n_workers"])

    def symbol_names(self):
        return [b.decode() for b in self.names]

    @classmethod
    def create(cls, cfg, names, supervisor_pid, supervisor_start, analytics_params=None):
        name = cfg.name
        parts = []
        try:
            meta = shm.Segment.create(shm.segment_name(name, "meta"), L.SEG_META,
                                      L.meta_size(len(names)))
            parts.append(meta)
            info = meta.record(L.ENGINE_INFO, L.META_INFO_OFFSET)
            info["supervisor_pid"] = supervisor_pid
            info["supervisor_start"] = supervisor_start
            info["n_symbols"] = len(names)
            info["n_venues"] = cfg.venues
            info["n_workers"] = cfg.workers
            info["ring_capacity"] = cfg.ring_capacity
            info["bcast_capacity"] = cfg.bcast_capacity
            info["seed"] = cfg.seed
            info["wait"] = cfg.wait_mode
            info["run_state"] = L.RUN_STARTING
            meta.view(f"S{L.SYMBOL_NAME_LEN}", L.META_NAMES_OFFSET, len(names))[:] = \
                encode_names(names)
            meta.view(np.uint16, L.partition_offset(len(names)), len(names))[:] = \
                partition_map(names, cfg.workers)
            policy = L.POLICY_DROP if cfg.drop else L.POLICY_BLOCK
            stats = StatsBlock.create(shm.segment_name(name, "stats"), cfg.n_procs)
            parts.append(stats)
            snap = SnapshotTable.create(shm.segment_name(name, "snap"), len(names), cfg.venues)
            parts.append(snap)
            ana = AnalyticsTable.create(shm.segment_name(name, "ana"), len(names),
                                        analytics_params)
            parts.append(ana)
            bcast = BroadcastRing.create(shm.segment_name(name, "bcast"), cfg.bcast_capacity)
            parts.append(bcast)
            inputs, outputs = [], []
            for w in range(cfg.workers):
                inputs.append(Ring.create(shm.segment_name(name, f"in.{w}"), cfg.ring_capacity,
                                          L.EVENT, policy))
                parts.append(inputs[-1])
                outputs.append(Ring.create(shm.segment_name(name, f"out.{w}"),
                                           cfg.result_ring_capacity, L.RESULT, policy))
                parts.append(outputs[-1])
            meta.mark_ready()
        except BaseException:
            # Remove only what this call created: a name clash must not delete the
            # segments of the engine that owns the name.
            for p in parts:
                p.close()
                shm.unlink(p.name)
            raise
        return cls(name, meta, stats, snap, ana, bcast, inputs, outputs)

    @classmethod
    def attach(cls, name, writable=False):
        """Attach every segment; raises EngineNotRunning or SegmentError."""
        shm.check_engine_name(name)
        meta_name = shm.segment_name(name, "meta")
        try:
            meta = shm.Segment.attach(meta_name, L.SEG_META, writable)
        except shm.SegmentError as exc:
            if str(exc).startswith("no segment"):
                raise shm.EngineNotRunning(
                    f"no engine named {name!r} is running on this host "
                    f"(no /dev/shm{meta_name}); start one with `shmengine run --name {name}`"
                ) from None
            raise
        info = meta.record(L.ENGINE_INFO, L.META_INFO_OFFSET)
        n_workers = int(info["n_workers"])
        seg = lambda part: shm.segment_name(name, part)  # noqa: E731
        stats = StatsBlock.attach(seg("stats"), writable)
        snap = SnapshotTable.attach(seg("snap"), writable)
        ana = AnalyticsTable.attach(seg("ana"), writable)
        bcast = BroadcastRing.attach(seg("bcast"), writable=writable)
        inputs = [Ring.attach(seg(f"in.{w}"), L.EVENT, writable) for w in range(n_workers)]
        outputs = [Ring.attach(seg(f"out.{w}"), L.RESULT, writable) for w in range(n_workers)]
        return cls(name, meta, stats, snap, ana, bcast, inputs, outputs)

    def close(self):
        for r in self.inputs + self.outputs:
            r.close()
        self.bcast.close()
        self.snap.close()
        self.ana.close()
        self.stats.close()
        self.info = self.names = self.partition = None
        self.meta.close()

    def unlink(self):
        for seg in shm.engine_segments(self.name):
            shm.unlink(seg)
