"""``shmengine inspect NAME``: every segment of an engine as it lies in /dev/shm.

``status`` attaches through ``Segment.attach``, which refuses anything but a
healthy segment. An operator looking at a hung or dead engine needs the
opposite: to see the leftovers of a SIGKILLed supervisor, a segment its
creator never finished, one from another layout version or another program,
a truncated file. So this reads each file read-only, shows its raw
SEGMENT_HEADER, says in one line what is wrong with it, and decodes the body
only when the header vouches for the layout. It never writes to a segment:
the mapping is PROT_READ, so it cannot disturb a live engine.

Cursors are read in an order that keeps them consistent on a live ring: the
consumer position before the producer position (the consumer never passes
the producer), the broadcast tail before its intent (the tail never passes
the intent).

    shmengine inspect prod
    shmengine inspect prod --segment in.0 --json
"""
import datetime
import json
import mmap
import os
import pwd
import stat
import time

import numpy as np
import psutil

from . import layout as L
from . import shm

STATE_NAMES = {L.STATE_BUILDING: "BUILDING", L.STATE_READY: "READY"}
POLICY_NAMES = {L.POLICY_BLOCK: "block", L.POLICY_DROP: "drop"}
PART_ORDER = ("meta", "stats", "in", "out", "snap", "ana", "bcast")
PROC_IDENTITY = ("proc", "label", "role", "index", "pid", "alive", "cpu", "state",
                 "heartbeat_age_s")  # shown on a process's first line; the rest are counters
MAX_LISTED = 8  # rows named when listing odd seqlocks or sample symbols


def add_parser(sub):
    p = sub.add_parser("inspect", help="every segment of an engine, raw: headers, rings, rows")
    p.add_argument("name", nargs="?", default="default")
    p.add_argument("--json", action="store_true", help="print a JSON document")
    p.add_argument("--segment", metavar="PART", help="only this segment, e.g. in.0 or stats")
    p.set_defaults(func=cmd_inspect)


def cmd_inspect(args):
    shm.check_engine_name(args.name)
    names = shm.engine_segments(args.name)
    if not names:
        raise shm.EngineNotRunning(f"no segments of engine {args.name!r} in {shm.SHM_DIR} "
                                   f"(`shmengine list` shows the engines on this host)")
    parts = {part_of(args.name, n): n for n in names}
    if args.segment is not None:
        if args.segment not in parts:
            raise shm.SegmentError(f"engine {args.name!r} has no segment {args.segment!r}; "
                                   f"it has {', '.join(sorted(parts, key=part_key))}")
        parts = {args.segment: parts[args.segment]}
    doc = {"engine": args.name, "segments": [inspect_segment(parts[p], p)
                                             for p in sorted(parts, key=part_key)]}
    print(json.dumps(doc, indent=1) if args.json else format_engine(doc))
    return 0


def part_of(engine, name):
    """``in.0`` from ``/shmengine.ENGINE.in.0``."""
    return name[len(shm.segment_name(engine, "")):]


def part_key(part):
    stem, _, index = part.partition(".")
    rank = PART_ORDER.index(stem) if stem in PART_ORDER else len(PART_ORDER)
    return (rank, int(index) if index.isdigit() else -1, part)


def expected_layout(part):
    """(segment kind, record dtype or None) a segment named ``part`` should have."""
    stem, _, index = part.partition(".")
    if stem in ("in", "out") and index.isdigit():
        return L.SEG_RING, (L.EVENT if stem == "in" else L.RESULT)
    fixed = {"meta": L.SEG_META, "stats": L.SEG_STATS, "snap": L.SEG_SNAP,
             "ana": L.SEG_ANALYTICS, "bcast": L.SEG_BCAST}
    if stem in fixed and not index:
        return fixed[stem], (L.RESULT if stem == "bcast" else None)
    return None, None


# ---------------------------------------------------------------- one segment

def inspect_segment(name, part):
    """A dict describing segment ``name``: file, header, problems, and its decoded body."""
    path = shm.SHM_DIR + name
    report = {"part": part, "path": path, "problems": []}
    problems = report["problems"]
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        problems.append("removed while being inspected")
        return report
    except OSError as exc:
        report.update(file_info(os.stat(path)))
        problems.append(f"cannot open it read-only: {exc.strerror}")
        return report
    try:
        st = os.fstat(fd)
        report.update(file_info(st))
        if st.st_size < L.SEGMENT_HEADER.itemsize:
            problems.append(f"the file is {st.st_size} bytes, smaller than a "
                            f"{L.SEGMENT_HEADER.itemsize}-byte segment header: truncated, "
                            f"or not a shmengine segment")
            return report
        buf = mmap.mmap(fd, st.st_size, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    seg = shm.Segment(name, buf, writable=False)
    try:
        report["header"] = header_info(seg.header, st.st_size)
        kind, dtype = expected_layout(part)
        if header_problems(report["header"], kind, st.st_size, problems):
            decode_body(seg, report, kind, dtype)
    finally:
        seg.close()
    return report


def file_info(st):
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    return {"mode": stat.filemode(st.st_mode), "owner": owner, "file_size": st.st_size}


def header_info(h, file_size):
    created_ns = int(h["created_ns"])
    return {
        "magic": f"{int(h['magic']):#018x}",
        "magic_ok": int(h["magic"]) == L.MAGIC,
        "version": int(h["version"]),
        "code_version": L.LAYOUT_VERSION,
        "kind": L.SEGMENT_KIND_NAMES.get(int(h["kind"]), int(h["kind"])),
        "size": int(h["size"]),
        "file_size": file_size,
        "state": STATE_NAMES.get(int(h["state"]), int(h["state"])),
        "creator_pid": int(h["creator_pid"]),
        "creator_alive": pid_alive(int(h["creator_pid"])),
        "created_ns": created_ns,
        "created": wall_time(created_ns),
    }


def header_problems(hdr, kind, file_size, problems):
    """Append what is wrong with the header; True if the body can be decoded."""
    if not hdr["magic_ok"]:
        problems.append(f"bad magic {hdr['magic']}: not a shmengine segment")
        return False
    if hdr["version"] != L.LAYOUT_VERSION:
        problems.append(f"layout version {hdr['version']}, this shmengine reads version "
                        f"{L.LAYOUT_VERSION}: left by another release; its body is not decoded")
        return False
    if kind is None:
        problems.append(f"unexpected segment name: not a part of an engine "
                        f"(header says kind {hdr['kind']})")
        return False
    if hdr["kind"] != L.SEGMENT_KIND_NAMES[kind]:
        problems.append(f"header says kind {hdr['kind']}, but this name holds a "
                        f"{L.SEGMENT_KIND_NAMES[kind]} segment")
        return False
    if hdr["size"] > file_size:
        problems.append(f"header says {hdr['size']:,} bytes but the file is {file_size:,}: "
                        f"truncated")
    elif hdr["size"] < file_size:
        problems.append(f"header says {hdr['size']:,} bytes but the file is {file_size:,}")
    if hdr["state"] != "READY":
        who = "still running" if hdr["creator_alive"] else "gone"
        problems.append(f"half-built (state {hdr['state']}): its creator, pid "
                        f"{hdr['creator_pid']}, is {who}; what follows may be incomplete")
    return True


def decode_body(seg, report, kind, dtype):
    decoders = {L.SEG_META: meta_info, L.SEG_STATS: stats_info, L.SEG_SNAP: snap_info,
                L.SEG_ANALYTICS: ana_info, L.SEG_BCAST: bcast_info}
    try:
        if kind == L.SEG_RING:
            body = ring_info(seg, dtype, report["problems"])
        else:
            body = decoders[kind](seg, report["problems"])
    except (ValueError, TypeError, IndexError) as exc:
        # A half-built or truncated body can hold counts that point past the file.
        report["problems"].append(f"body unreadable ({exc}): its counts do not fit the file")
        return
    report[L.SEGMENT_KIND_NAMES[kind]] = body


# ---------------------------------------------------------------- bodies

def meta_info(seg, problems):
    from .supervisor import engine_alive
    info = seg.record(L.ENGINE_INFO, L.META_INFO_OFFSET)
    n = int(info["n_symbols"])
    n_workers = int(info["n_workers"])
    names = seg.view(f"S{L.SYMBOL_NAME_LEN}", L.META_NAMES_OFFSET, n)
    partition = seg.view(np.uint16, L.partition_offset(n), n)
    per_worker = np.bincount(partition, minlength=n_workers)
    out = {
        "run_state": L.RUN_STATE_NAMES.get(int(info["run_state"]), int(info["run_state"])),
        "stop_request": int(info["stop_request"]),
        "supervisor_pid": int(info["supervisor_pid"]),
        "supervisor_alive": bool(engine_alive(info)),
        "symbols": n,
        "venues": int(info["n_venues"]),
        "workers": n_workers,
        "ring_capacity": int(info["ring_capacity"]),
        "bcast_capacity": int(info["bcast_capacity"]),
        "seed": int(info["seed"]),
        "wait": L.WAIT_NAMES.get(int(info["wait"]), int(info["wait"])),
        "sample_symbols": [b.decode("ascii", "replace") for b in names[:MAX_LISTED]],
        "symbols_per_worker": [int(c) for c in per_worker[:n_workers]],
    }
    if not out["supervisor_alive"]:
        problems.append(f"the supervisor, pid {out['supervisor_pid']}, is gone: the engine is "
                        f"dead (`shmengine cleanup` removes its segments)")
    if len(per_worker) > n_workers:
        problems.append(f"{int(per_worker[n_workers:].sum())} symbol(s) mapped to a worker "
                        f">= {n_workers}")
    return out


def stats_info(seg, problems):
    from .stats import StatsBlock, proc_label
    block = StatsBlock(seg)
    now = time.monotonic_ns()  # heartbeats are CLOCK_MONOTONIC, as is this
    procs = []
    for i, row in enumerate(block.procs):
        beat = int(row["heartbeat_ns"])
        proc = {"proc": i,
                "label": proc_label(row) if int(row["role"]) in L.ROLE_NAMES else f"proc {i}",
                "role": L.ROLE_NAMES.get(int(row["role"]), int(row["role"])),
                "index": int(row["index"]),
                "pid": int(row["pid"]),
                "alive": pid_alive(int(row["pid"])),
                "state": L.RUN_STATE_NAMES.get(int(row["state"]), int(row["state"])),
                # a beat can land between our clock read and the row read
                "heartbeat_age_s": max(now - beat, 0) / 1e9 if beat else None}
        for f in L.PROC_STATS.names:
            if f not in proc and not f.startswith("_") and f != "heartbeat_ns":
                proc[f] = row[f].item()
        procs.append(proc)
    totals = block.hists.sum(axis=1)
    died = [p for p in procs if p["pid"] and not p["alive"] and p["state"] != "stopped"]
    if died:
        problems.append("died before stopping: " + ", ".join(f"{p['label']} (pid {p['pid']})"
                                                             for p in died))
    return {"processes": procs,
            "latency_counts": {L.STAGE_NAMES.get(k, str(k)): int(c) for k, c in enumerate(totals)},
            "link": block.link_counters()}


def ring_words(seg):
    return (seg.view(np.int64, 0, L.RING_DATA_OFFSET // 8),
            seg.view(np.uint32, 0, L.RING_DATA_OFFSET // 4))


def ring_geometry(seg, hdr64, dtype, problems):
    capacity = int(hdr64[L.RING_CAPACITY_OFFSET // 8])
    slot_size = int(hdr64[L.RING_SLOT_SIZE_OFFSET // 8])
    policy = int(hdr64[L.RING_POLICY_OFFSET // 8])
    if capacity < 2 or capacity & (capacity - 1):
        problems.append(f"capacity {capacity} is not a power of two >= 2")
    if slot_size != dtype.itemsize:
        problems.append(f"slots are {slot_size} bytes, {dtype.itemsize} expected")
    if L.ring_size(capacity, slot_size) != seg.size:
        problems.append(f"{capacity} slots of {slot_size} bytes need "
                        f"{L.ring_size(capacity, slot_size):,} bytes, the segment has "
                        f"{seg.size:,}")
    return {"capacity": capacity, "slot_size": slot_size,
            "policy": POLICY_NAMES.get(policy, policy)}


def ring_info(seg, dtype, problems):
    hdr64, hdr32 = ring_words(seg)
    out = ring_geometry(seg, hdr64, dtype, problems)
    consumer = int(hdr64[L.RING_CONSUMER_WORD])
    producer = int(hdr64[L.RING_PRODUCER_WORD])
    fill = producer - consumer
    capacity = out["capacity"]
    out.update({
        "producer_position": producer,
        "consumer_position": consumer,
        "fill": fill,
        "fill_pct": 100.0 * fill / capacity if capacity > 0 else None,
        "consumer_wait": int(hdr32[L.RING_CONSUMER_WAIT_WORD32]),
        "consumer_bell": int(hdr32[L.RING_CONSUMER_BELL_WORD32]),
        "producer_wait": int(hdr32[L.RING_PRODUCER_WAIT_WORD32]),
        "producer_bell": int(hdr32[L.RING_PRODUCER_BELL_WORD32]),
        "drops": int(hdr64[L.RING_DROPS_WORD]),
    })
    if consumer > producer:
        problems.append(f"consumer position {consumer:,} is ahead of the producer's "
                        f"{producer:,}")
    elif fill > capacity:
        problems.append(f"fill {fill:,} exceeds the capacity {capacity:,}")
    return out


def bcast_info(seg, problems):
    hdr64, _ = ring_words(seg)
    out = ring_geometry(seg, hdr64, L.RESULT, problems)
    producer = int(hdr64[L.RING_PRODUCER_WORD])
    intent = int(hdr64[L.RING_PRODUCER_INTENT_WORD])
    out.update({"producer_position": producer, "producer_intent": intent,
                "held": min(producer, out["capacity"]),
                "drops": int(hdr64[L.RING_DROPS_WORD])})
    if intent < producer:
        problems.append(f"intent {intent:,} is behind the producer position {producer:,}")
    return out


def seqlock_rows(seg, header_dtype, header_offset, row_dtype, rows_offset, problems):
    hdr = seg.record(header_dtype, header_offset)
    header = {f: hdr[f].tolist() for f in header_dtype.names if not f.startswith("_")}
    n = int(hdr["n_symbols"])
    if int(hdr["row_size"]) != row_dtype.itemsize:
        problems.append(f"rows are {int(hdr['row_size'])} bytes, {row_dtype.itemsize} expected")
    locks = seg.view(row_dtype, rows_offset, n)["seqlock"]
    odd = np.flatnonzero(locks & 1)
    return {"rows": n, "header": header, "odd_seqlocks": int(len(odd)),
            "odd_rows": [int(i) for i in odd[:MAX_LISTED]]}


def snap_info(seg, problems):
    return seqlock_rows(seg, L.SNAP_HEADER, L.SNAP_HEADER_OFFSET, L.SNAPSHOT_ROW,
                        L.SNAP_ROWS_OFFSET, problems)


def ana_info(seg, problems):
    return seqlock_rows(seg, L.ANA_HEADER, L.ANA_HEADER_OFFSET, L.ANALYTICS_ROW,
                        L.ANA_ROWS_OFFSET, problems)


# ---------------------------------------------------------------- processes and clocks

def pid_alive(pid):
    """True if ``pid`` runs (a zombie, killed but not yet reaped, counts as dead)."""
    if pid <= 0:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def wall_time(ns):
    if ns <= 0:
        return None
    try:
        return datetime.datetime.fromtimestamp(ns / 1e9).isoformat(sep=" ", timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return None


# ---------------------------------------------------------------- text

def format_engine(doc):
    n = len(doc["segments"])
    lines = [f"engine {doc['engine']}: {n} segment(s) in {shm.SHM_DIR}"]
    for seg in doc["segments"]:
        lines.append("")
        lines.extend(format_segment(seg))
    return "\n".join(lines)


def format_segment(seg):
    lines = [f"{seg['part']}  {seg['path']}"]
    if "mode" in seg:
        lines[0] += f"  {seg['mode']} {seg['owner']}  {seg['file_size']:,} bytes"
    if "header" in seg:
        lines.append("  header: " + fmt_header(seg["header"]))
    for kind, fmt in FORMATTERS.items():
        if kind in seg:
            lines.extend("  " + ln for ln in fmt(seg[kind]))
    lines.extend(f"  ! {p}" for p in seg["problems"])
    return lines


def fmt_header(h):
    size = "= file" if h["size"] == h["file_size"] else f"!= file {h['file_size']:,}"
    return (f"magic {'ok' if h['magic_ok'] else 'BAD ' + h['magic']}, version {h['version']} "
            f"(code {h['code_version']}), kind {h['kind']}, size {h['size']:,} {size}, "
            f"{h['state']}, creator pid {h['creator_pid']} "
            f"{'alive' if h['creator_alive'] else 'dead'}, created {h['created'] or '-'}")


def fmt_meta(m):
    alive = "alive" if m["supervisor_alive"] else "dead"
    per = ", ".join(f"w{w} {c:,}" for w, c in enumerate(m["symbols_per_worker"]))
    return [f"engine: {m['run_state']}{', stop requested' if m['stop_request'] else ''}, "
            f"supervisor pid {m['supervisor_pid']} {alive}",
            f"{m['symbols']:,} symbols ({', '.join(m['sample_symbols'])}"
            f"{', ...' if m['symbols'] > len(m['sample_symbols']) else ''}), "
            f"{m['venues']} venues, {m['workers']} worker(s), wait {m['wait']}, seed {m['seed']}",
            f"ring capacity {m['ring_capacity']:,}, broadcast capacity {m['bcast_capacity']:,}",
            f"partition (symbols per worker): {per}"]


def fmt_stats(s):
    lines = []
    for p in s["processes"]:
        age = p["heartbeat_age_s"]
        alive = "alive" if p["alive"] else "-" if not p["pid"] else \
            "exited" if p["state"] == "stopped" else "dead"
        lines.append(f"{p['label']:<12} pid {p['pid']:<8} {alive:<7} "
                     f"cpu {p['cpu']:>3}  {p['state']:<9} heartbeat "
                     f"{'-' if age is None else f'{age:.3f} s ago'}")
        lines.append("    " + "  ".join(f"{k} {v:,}" for k, v in p.items()
                                         if k not in PROC_IDENTITY))
    lines.append("latency histogram counts: " + "  ".join(
        f"{k} {v:,}" for k, v in s["latency_counts"].items()))
    link = s["link"]
    lines.append(f"link: source {L.SOURCE_KIND_NAMES.get(link['source'], link['source'])}  "
                 + "  ".join(f"{k} {v:,}" for k, v in link.items() if k != "source"))
    return lines


def fmt_ring(r):
    pct = "-" if r["fill_pct"] is None else f"{r['fill_pct']:.1f}%"
    return [f"capacity {r['capacity']:,} x {r['slot_size']} B, policy {r['policy']}",
            f"producer {r['producer_position']:,}  consumer {r['consumer_position']:,}  "
            f"fill {r['fill']:,} ({pct})  drops {r['drops']:,}",
            f"consumer wait {r['consumer_wait']} bell {r['consumer_bell']}  "
            f"producer wait {r['producer_wait']} bell {r['producer_bell']}"]


def fmt_bcast(b):
    return [f"capacity {b['capacity']:,} x {b['slot_size']} B, policy {b['policy']}",
            f"producer {b['producer_position']:,}  intent {b['producer_intent']:,}  "
            f"held {b['held']:,}  drops {b['drops']:,}"]


def fmt_rows(t):
    header = "  ".join(f"{k} {v}" for k, v in t["header"].items()
                       if k not in ("n_symbols", "row_size"))
    odd = ""
    if t["odd_seqlocks"]:
        odd = f" (rows {', '.join(map(str, t['odd_rows']))}" \
              f"{', ...' if t['odd_seqlocks'] > len(t['odd_rows']) else ''})"
    return [f"{t['rows']:,} rows; {t['odd_seqlocks']} with an odd seqlock "
            f"(being written, or torn by a dead writer){odd}",
            header]


FORMATTERS = {"meta": fmt_meta, "stats": fmt_stats, "ring": fmt_ring, "bcast": fmt_bcast,
              "snap": fmt_rows, "ana": fmt_rows}
