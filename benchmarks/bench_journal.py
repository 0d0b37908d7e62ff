"""Journal write throughput beside plain ``file.write`` of the same bytes.

    python benchmarks/bench_journal.py                 # into /tmp; say what /tmp is (df -T /tmp)
    python benchmarks/bench_journal.py --dir /dev/shm --mb 64 --repeat 5

For each batch size, the same EVENT stream (seq contiguous) is written:

    journal           JournalWriter.append per batch, blocks of --block records, one
                      flush at the end
    journal+flush     ... and flush() after every batch (a partial block per batch)
    journal+fsync     ... flush() with fsync=True after every batch (fdatasync each time)
    file.write        open(..., "wb").write(bytes of the batch), one flush at the end
    file.write+fsync  ... and flush + os.fdatasync after every batch

Each figure is the median of --repeat runs; fsync runs are bounded by
--fsync-seconds. The journal's CRC (CRC-32C) alone is timed too, beside
zlib.crc32. Files are removed after each run, so with a disk behind /tmp the
figures are mostly page-cache speed.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import zlib

import numpy as np

from shmengine import layout as L
from shmengine.journal import CRCS, FORMAT_VERSION, JournalWriter
from shmengine.market import new_market


def stream(n):
    ev = new_market(1000, 4, seed=1).generate(n)
    ev["seq"] = np.arange(n, dtype=np.uint64)
    return ev


def run_journal(d, ev, batch, block, flush, fsync, seconds):
    with JournalWriter(d, session="BENCH", block_records=block, fsync=fsync) as jw:
        t0 = time.perf_counter()
        i = 0
        while i < len(ev):
            jw.append(ev[i:i + batch])
            i += batch
            if flush:
                jw.flush()
                if seconds and time.perf_counter() - t0 > seconds:
                    break
        jw.flush()
        return min(i, len(ev)), time.perf_counter() - t0


def run_file(d, ev, batch, fsync, seconds):
    data = ev.view(np.uint8)
    width = batch * L.EVENT.itemsize
    with open(os.path.join(d, "plain.bin"), "wb") as fh:
        t0 = time.perf_counter()
        i = 0
        while i < len(data):
            fh.write(data[i:i + width])
            i += width
            if fsync:
                fh.flush()
                os.fdatasync(fh.fileno())
                if time.perf_counter() - t0 > seconds:
                    break
        fh.flush()
        return min(i, len(data)) // L.EVENT.itemsize, time.perf_counter() - t0


def median_rate(fn, repeat, root):
    rates = []
    for _ in range(repeat):
        d = tempfile.mkdtemp(prefix="shme-bench-journal-", dir=root)
        try:
            n, dt = fn(d)
            rates.append(n / dt)
        finally:
            shutil.rmtree(d)
    return statistics.median(rates)


def crc_rate(crc, block_bytes, total):
    buf = np.random.default_rng(0).integers(0, 256, block_bytes, dtype=np.uint8)
    reps = max(1, total // block_bytes)
    t0 = time.perf_counter()
    for _ in range(reps):
        crc(buf)
    return reps * block_bytes / (time.perf_counter() - t0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default="/tmp", help="where to write (default /tmp)")
    p.add_argument("--mb", type=int, default=128, help="MiB of events per run")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--block", type=int, default=4096, help="records per journal block")
    p.add_argument("--batches", default="64,1024,4096")
    p.add_argument("--fsync-seconds", type=float, default=1.0, dest="fsync_seconds")
    args = p.parse_args(argv)

    ev = stream((args.mb << 20) // L.EVENT.itemsize)
    mb = L.EVENT.itemsize / 1e6
    print(f"# {len(ev):,d} events ({args.mb} MiB) per run into {args.dir}, median of "
          f"{args.repeat}, journal blocks of {args.block} records")
    for name, crc in (("journal CRC-32C", CRCS[FORMAT_VERSION]), ("zlib.crc32", zlib.crc32)):
        print(f"{name} on {args.block * 64 // 1024} KiB blocks: "
              f"{crc_rate(crc, args.block * 64, 1 << 30) / 1e9:.2f} GB/s")
    print("| batch | mode | events/s | MB/s |")
    print("|---:|---|---:|---:|")
    for batch in map(int, args.batches.split(",")):
        modes = [
            ("journal", lambda d: run_journal(d, ev, batch, args.block, False, False, 0)),
            ("journal+flush", lambda d: run_journal(d, ev, batch, args.block, True, False, 0)),
            ("journal+fsync", lambda d: run_journal(d, ev, batch, args.block, True, True,
                                                    args.fsync_seconds)),
            ("file.write", lambda d: run_file(d, ev, batch, False, 0)),
            ("file.write+fsync", lambda d: run_file(d, ev, batch, True, args.fsync_seconds)),
        ]
        for name, fn in modes:
            rate = median_rate(fn, args.repeat, args.dir)
            print(f"| {batch} | {name} | {rate:,.0f} | {rate * mb:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
