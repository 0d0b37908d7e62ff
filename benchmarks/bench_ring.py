"""Ring throughput: 64-byte events between two pinned processes, beside memcpy.

    python benchmarks/bench_ring.py [--events 50000000] [--repeat 5]

The producer copies whole 64-byte EVENT records into the ring and stamps
their seq; the consumer checks every record. Throughput is timed by the
consumer from its first record to its last. The baseline is a plain copy of
the same bytes in one process (numpy.copyto between two buffers of the
ring's size), measured in the same run.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from shmengine import layout as L  # noqa: E402
from shmengine import shm  # noqa: E402
from shmengine.ring import Ring  # noqa: E402


def one_run(count, batch, capacity, wait, cpus):
    name = f"/shmengine.bench{uuid.uuid4().hex[:8]}.ring"
    ring = Ring.create(name, capacity, L.EVENT)
    try:
        cmd = [sys.executable, "-m", "shmengine.ring_probe"]
        args = [name, str(count), str(batch), wait]
        c = subprocess.Popen(cmd + ["consume"] + args + [str(cpus[1])], stdout=subprocess.PIPE,
                             cwd=ROOT)
        p = subprocess.Popen(cmd + ["produce"] + args + [str(cpus[0])], stdout=subprocess.PIPE,
                             cwd=ROOT)
        p.communicate(timeout=600)
        out = json.loads(c.communicate(timeout=600)[0])
        if out["errors"]:
            raise SystemExit(f"ring lost or reordered {out['errors']} records")
        return count / (out["transfer_ns"] / 1e9)
    finally:
        ring.close()
        shm.unlink(name)


def memcpy_rate(capacity, repeat):
    """Records/s of a plain single-process copy of ring-sized buffers."""
    src = np.ones(capacity * 64, np.uint8)
    dst = np.zeros_like(src)
    rates = []
    for _ in range(repeat):
        n = max(1, (1 << 30) // len(src))
        t = time.perf_counter()
        for _ in range(n):
            np.copyto(dst, src)
        rates.append(n * capacity / (time.perf_counter() - t))
    return statistics.median(rates)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--capacity", type=int, nargs="+", default=[4096, 65536])
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--wait", nargs="+", default=["spin", "adaptive"])
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))[:2]
    if len(cpus) < 2:
        cpus = cpus * 2
    from shmengine.ring_probe import warm
    warm()
    print(f"{'wait':<9}{'capacity':>9}{'batch':>7}{'M events/s':>12}{'GB/s':>7}"
          f"{'memcpy M rec/s':>16}{'ratio':>7}   min..max M events/s")
    for capacity in args.capacity:
        base = memcpy_rate(capacity, args.repeat)
        for wait in args.wait:
            for batch in args.batch:
                rates = [one_run(args.events, batch, capacity, wait, cpus)
                         for _ in range(args.repeat)]
                med = statistics.median(rates)
                print(f"{wait:<9}{capacity:>9}{batch:>7}{med / 1e6:>12.1f}{med * 64 / 1e9:>7.2f}"
                      f"{base / 1e6:>16.1f}{med / base:>7.2f}   {min(rates) / 1e6:.0f}.."
                      f"{max(rates) / 1e6:.0f}", flush=True)


if __name__ == "__main__":
    main()
