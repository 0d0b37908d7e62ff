"""`shmengine inspect`: a live engine, a SIGKILLed engine's leftovers, broken segments."""
import hashlib
import json
import os
import time

import numpy as np
import psutil
import pytest

from shmengine import config, layout as L, shm
from shmengine.inspector import inspect_segment
from shmengine.market import symbol_names
from shmengine.segments import EngineSegments

from conftest import cli, engine, wait_for

ENGINE_ARGS = ("--rate", 20000, "--symbols", 50, "--workers", 2)
PARTS = {"meta", "stats", "snap", "ana", "bcast", "in.0", "in.1", "out.0", "out.1"}
RINGS = ("in.0", "in.1", "out.0", "out.1")


def inspect_json(name, *args):
    res = cli("inspect", name, "--json", *args)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    doc = json.loads(res.stdout)
    assert doc["engine"] == name
    return {s["part"]: s for s in doc["segments"]}


def assert_cursors_consistent(segs):
    for part in RINGS:
        r = segs[part]["ring"]
        assert 0 <= r["consumer_position"] <= r["producer_position"], (part, r)
        assert r["fill"] == r["producer_position"] - r["consumer_position"]
        assert 0 <= r["fill"] <= r["capacity"], (part, r)
    b = segs["bcast"]["bcast"]
    assert 0 <= b["producer_position"] <= b["producer_intent"]


def one_error_line(res, *needles):
    assert res.returncode == 1, res
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def part_names(name):
    return {seg[len(shm.segment_name(name, "")):] for seg in shm.engine_segments(name)}


def test_live_engine():
    with engine(*ENGINE_ARGS) as proc:
        name = proc.name
        lib = EngineSegments.attach(name)
        try:
            wait_for(lambda: min(r.producer_position for r in lib.inputs) > 0, 30,
                     "events in both input rings")
            segs = inspect_json(name)
            capacity = {f"{d}.{w}": r.capacity for d, rings in (("in", lib.inputs),
                                                                ("out", lib.outputs))
                        for w, r in enumerate(rings)}
            later = {f"in.{w}": r.producer_position for w, r in enumerate(lib.inputs)}
        finally:
            lib.close()
        assert set(segs) == PARTS == part_names(name)
        for part, s in segs.items():
            h = s["header"]
            assert h["magic_ok"] and h["state"] == "READY" and h["version"] == L.LAYOUT_VERSION
            assert h["size"] == s["file_size"] == os.path.getsize(s["path"])
            assert h["creator_pid"] == proc.pid and h["creator_alive"]
            assert s["mode"] == "-rw-------"
        assert_cursors_consistent(segs)
        for part in RINGS:
            assert segs[part]["ring"]["capacity"] == capacity[part]
        for part, pos in later.items():
            assert 0 < segs[part]["ring"]["producer_position"] <= pos
        meta = segs["meta"]["meta"]
        assert meta["supervisor_alive"] and meta["supervisor_pid"] == proc.pid
        assert meta["symbols"] == 50 and meta["workers"] == 2
        assert sum(meta["symbols_per_worker"]) == 50
        procs = segs["stats"]["stats"]["processes"]
        assert [p["label"] for p in procs] == ["feed", "worker 0", "worker 1", "aggregator"]
        children = {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
        for p in procs:
            assert p["alive"] and p["pid"] in children and psutil.pid_exists(p["pid"]), p
            assert p["heartbeat_age_s"] is not None and p["heartbeat_age_s"] < 60
        for part, s in segs.items():
            assert s["problems"] == [], (part, s["problems"])

        text = cli("inspect", name)
        assert text.returncode == 0 and "Traceback" not in text.stderr, text.stderr
        for part in PARTS:
            assert f"{shm.SHM_DIR}/{shm.PREFIX}{name}.{part}  " in text.stdout
        only = inspect_json(name, "--segment", "in.1")
        assert list(only) == ["in.1"] and only["in.1"]["ring"]["capacity"] == capacity["in.1"]
        one_error_line(cli("inspect", name, "--segment", "in.7"), "no segment 'in.7'", "in.1")


def gone(p):
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_dead_engine_leftovers():
    with engine(*ENGINE_ARGS) as proc:
        name = proc.name
        wait_for(lambda: inspect_json(name, "--segment", "out.1")["out.1"]["ring"]
                 ["producer_position"] > 0, 30, "results from worker 1")
        sup = psutil.Process(proc.pid)
        victims = [sup] + sup.children(recursive=True)
        for p in victims:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        proc.wait(10)
        wait_for(lambda: all(gone(p) for p in victims), 10, "the engine's processes to die")

        segs = inspect_json(name)
        assert set(segs) == PARTS
        meta = segs["meta"]
        assert not meta["meta"]["supervisor_alive"]
        assert any("is gone" in p for p in meta["problems"]), meta["problems"]
        assert all(not s["header"]["creator_alive"] for s in segs.values())
        stats = segs["stats"]
        procs = stats["stats"]["processes"]
        assert {p["pid"] for p in procs} == {p.pid for p in victims[1:]}
        assert not any(p["alive"] for p in procs)
        died = [p for p in stats["problems"] if p.startswith("died before stopping")]
        assert len(died) == 1 and all(f"(pid {p['pid']})" in died[0] for p in procs)
        assert_cursors_consistent(segs)
        assert segs["in.0"]["ring"]["producer_position"] > 0
        assert segs["out.1"]["ring"]["producer_position"] > 0

        text = cli("inspect", name)
        assert text.returncode == 0 and "Traceback" not in text.stderr, text.stderr
        assert "supervisor pid" in text.stdout and " dead " in text.stdout

        res = cli("cleanup")
        assert res.returncode == 0, res.stderr
        assert part_names(name) == set()
        one_error_line(cli("inspect", name), f"no segments of engine {name!r}")


def header_bytes(**fields):
    h = np.zeros((), L.SEGMENT_HEADER)
    h["magic"] = L.MAGIC
    h["version"] = L.LAYOUT_VERSION
    h["kind"] = L.SEG_META
    h["size"] = 4096
    h["state"] = L.STATE_READY
    h["creator_pid"] = os.getpid()
    h["created_ns"] = time.time_ns()
    for k, v in fields.items():
        h[k] = v
    return h.tobytes()


def full(header):
    return header + bytes(4096 - len(header))


BROKEN = {
    "bad-magic": ("meta", full(header_bytes(magic=0x1234)), "bad magic 0x0000000000001234"),
    "foreign-version": ("meta", full(header_bytes(version=L.LAYOUT_VERSION + 7)),
                        f"layout version {L.LAYOUT_VERSION + 7}, this shmengine reads version "
                        f"{L.LAYOUT_VERSION}"),
    "shorter-than-header": ("meta", b"SHMG",
                            "the file is 4 bytes, smaller than a 64-byte segment header"),
    "empty": ("meta", b"", "the file is 0 bytes"),
    "truncated": ("meta", header_bytes() + bytes(100),
                  "header says 4,096 bytes but the file is 164: truncated"),
    "wrong-kind": ("in.0", full(header_bytes(kind=L.SEG_SNAP)),
                   "header says kind snap, but this name holds a ring"),
    "half-built": ("stats", full(header_bytes(kind=L.SEG_STATS, state=L.STATE_BUILDING)),
                   "half-built"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_segment(engine_name, case):
    part, content, problem = BROKEN[case]
    seg = shm.segment_name(engine_name, part)
    path = shm.SHM_DIR + seg
    try:
        with open(path, "wb") as fh:
            fh.write(content)
        segs = inspect_json(engine_name)
        assert list(segs) == [part]
        assert any(problem in p for p in segs[part]["problems"]), segs[part]["problems"]
        text = cli("inspect", engine_name)
        assert text.returncode == 0 and "Traceback" not in text.stderr, text.stderr
        assert f"  ! {problem}" in text.stdout
        with open(path, "rb") as fh:
            assert fh.read() == content
    finally:
        shm.unlink(seg)
    assert part_names(engine_name) == set()


def test_half_built_ring_shows_its_cursors(engine_name):
    name = shm.segment_name(engine_name, "in.0")
    seg = shm.Segment.create(name, L.SEG_RING, L.ring_size(8, L.EVENT.itemsize))
    try:
        hdr64 = seg.view(np.int64, 0, L.RING_DATA_OFFSET // 8)
        hdr64[L.RING_CAPACITY_OFFSET // 8] = 8
        hdr64[L.RING_SLOT_SIZE_OFFSET // 8] = L.EVENT.itemsize
        hdr64[L.RING_PRODUCER_WORD] = 13
        hdr64[L.RING_CONSUMER_WORD] = 9
        with pytest.raises(shm.SegmentError, match="half-built"):
            shm.Segment.attach(name, L.SEG_RING)
        ring = inspect_json(engine_name)["in.0"]
        assert ring["header"]["state"] == "BUILDING" and ring["header"]["creator_alive"]
        assert ring["problems"] == [
            f"half-built (state BUILDING): its creator, pid {os.getpid()}, "
            f"is still running; what follows may be incomplete"]
        r = ring["ring"]
        assert (r["capacity"], r["producer_position"], r["consumer_position"], r["fill"]) == \
            (8, 13, 9, 4)
    finally:
        seg.close()
        shm.unlink(name)
    assert part_names(engine_name) == set()


def test_exact_values_and_read_only(engine_name):
    """Cursors, seqlocks and registrations set by hand come back as set; no byte changes."""
    cfg = config.load(None, {"name": engine_name, "symbols": 20, "workers": 2,
                             "ring_capacity": 4096, "batch": 256})
    segs = EngineSegments.create(cfg, symbol_names(20), os.getpid(),
                                 int(psutil.Process().create_time() * 1000))
    try:
        segs.inputs[1].hdr64[L.RING_PRODUCER_WORD] = 1000
        segs.inputs[1].hdr64[L.RING_CONSUMER_WORD] = 936
        segs.inputs[1].hdr32[L.RING_CONSUMER_WAIT_WORD32] = 1
        segs.inputs[1].hdr32[L.RING_CONSUMER_BELL_WORD32] = 77
        segs.bcast.hdr64[L.RING_PRODUCER_WORD] = 70_000
        segs.bcast.hdr64[L.RING_PRODUCER_INTENT_WORD] = 70_016
        segs.snap.rows["seqlock"][[3, 11]] = [5, 9]
        segs.ana.rows["seqlock"][19] = 1
        row = segs.stats.procs[1]
        row["pid"], row["role"], row["index"], row["events"] = os.getpid(), L.ROLE_WORKER, 0, 4242
        segs.stats.hists[0, 5] = 6

        before = {p: hashlib.sha256(open(shm.SHM_DIR + p, "rb").read()).digest()
                  for p in shm.engine_segments(engine_name)}
        got = inspect_json(engine_name)
        after = {p: hashlib.sha256(open(shm.SHM_DIR + p, "rb").read()).digest()
                 for p in shm.engine_segments(engine_name)}
        assert before == after

        r = got["in.1"]["ring"]
        assert (r["producer_position"], r["consumer_position"], r["fill"], r["capacity"]) == \
            (1000, 936, 64, 4096)
        assert r["fill_pct"] == pytest.approx(100 * 64 / 4096)
        assert (r["consumer_wait"], r["consumer_bell"], r["producer_wait"]) == (1, 77, 0)
        b = got["bcast"]["bcast"]
        assert (b["producer_position"], b["producer_intent"]) == (70_000, 70_016)
        assert b["held"] == cfg.bcast_capacity
        assert got["snap"]["snap"]["odd_rows"] == [3, 11]
        assert got["ana"]["ana"]["odd_seqlocks"] == 1
        procs = got["stats"]["stats"]["processes"]
        assert procs[1]["label"] == "worker 0" and procs[1]["alive"]
        assert procs[1]["events"] == 4242 and procs[1]["pid"] == os.getpid()
        assert [p["label"] for p in procs[2:]] == ["proc 2", "proc 3"]
        assert got["stats"]["stats"]["latency_counts"][L.STAGE_NAMES[0]] == 6
        meta = got["meta"]["meta"]
        assert meta["supervisor_alive"] and meta["symbols_per_worker"] == \
            np.bincount(segs.partition, minlength=2).tolist()
        for part in ("in.0", "out.0", "out.1", "meta", "stats", "bcast", "snap", "ana", "in.1"):
            assert got[part]["problems"] == [], part

        direct = inspect_segment(shm.segment_name(engine_name, "in.1"), "in.1")
        assert direct["ring"] == r
    finally:
        segs.close()
        segs.unlink()
    assert part_names(engine_name) == set()


def test_unknown_engine(engine_name):
    one_error_line(cli("inspect", engine_name), f"no segments of engine {engine_name!r}")
    one_error_line(cli("inspect", "bad/name"), "bad engine name")
