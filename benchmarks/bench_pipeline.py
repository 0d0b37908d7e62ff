"""End to end: synthetic feed -> workers -> aggregator -> snapshot, via `shmengine run`.

    python benchmarks/bench_pipeline.py throughput [--events 20000000] [--repeat 3]
    python benchmarks/bench_pipeline.py latency [--rate 1000000] [--duration 10]
    python benchmarks/bench_pipeline.py startup [--repeat 5]
    python benchmarks/bench_pipeline.py memory [--symbols 10000] [--venues 4]

Every figure is a median over --repeat runs. Throughput is printed beside the
synthetic source alone (one core, in process, no rings) measured in the same
run, so the ratio says what the pipeline keeps of its source's speed.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def run_engine(*args, env=None):
    """Run `shmengine run ARGS` to the end; returns its summary dict."""
    with tempfile.NamedTemporaryFile(suffix=".json") as fh:
        cmd = [sys.executable, "-m", "shmengine.cli", "run", "--name",
               f"bench{uuid.uuid4().hex[:6]}", "--summary-json", fh.name, *map(str, args)]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
        if res.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}")
        return json.load(open(fh.name))


def source_rate(symbols, venues, events):
    from shmengine import layout as L
    from shmengine.market import generate, new_market
    import numpy as np
    m = new_market(symbols, venues, seed=1)
    out = np.zeros(1 << 12, L.EVENT)
    args = m.kernel_args()
    generate(*args, out, 0, len(out) - 1, 1000, 0, 0)
    t = time.perf_counter()
    done = 0
    while done < events:
        generate(*args, out, 0, len(out) - 1, 4096, done, 0)
        done += 4096
    return done / (time.perf_counter() - t)


def throughput(a):
    print(f"events {a.events:,}, {a.symbols} symbols x {a.venues} venues, median of {a.repeat}")
    src = statistics.median(source_rate(a.symbols, a.venues, a.events // 4)
                            for _ in range(a.repeat))
    print(f"synthetic source alone (1 core, no rings): {src / 1e6:.2f} M events/s")
    print(f"{'workers':>8}{'wait':>10}{'analytics':>10}{'M events/s':>12}{'vs source':>11}"
          f"{'p50 us':>10}{'p99 us':>10}")
    for workers in a.workers:
        for wait in a.wait:
            for analytics in a.analytics:
                extra = () if analytics == "on" else ("--no-analytics",)
                runs = [run_engine("--events", a.events, "--symbols", a.symbols, "--venues",
                                   a.venues, "--workers", workers, "--wait", wait, *extra)
                        for _ in range(a.repeat)]
                rate = statistics.median(r["events_per_s"] for r in runs)
                p50 = statistics.median(r["latency_ns"]["50"] for r in runs) / 1e3
                p99 = statistics.median(r["latency_ns"]["99"] for r in runs) / 1e3
                print(f"{workers:>8}{wait:>10}{analytics:>10}{rate / 1e6:>12.2f}"
                      f"{rate / src:>11.2f}{p50:>10,.0f}{p99:>10,.0f}", flush=True)


def latency(a):
    print(f"paced at {a.rate:,.0f} events/s for {a.duration} s, {a.symbols} symbols, "
          f"median of {a.repeat}")
    print(f"{'workers':>8}{'wait':>10}{'events/s':>12}{'p50 us':>9}{'p99 us':>9}"
          f"{'p99.9 us':>10}{'max us':>10}")
    for workers in a.workers:
        for wait in a.wait:
            runs = [run_engine("--rate", a.rate, "--duration", a.duration, "--symbols",
                               a.symbols, "--workers", workers, "--wait", wait)
                    for _ in range(a.repeat)]
            med = lambda key: statistics.median(r["latency_ns"][key] for r in runs) / 1e3  # noqa
            rate = statistics.median(r["events_per_s"] for r in runs)
            mx = statistics.median(r["latency_max_ns"] for r in runs) / 1e3
            print(f"{workers:>8}{wait:>10}{rate:>12,.0f}{med('50'):>9.1f}{med('99'):>9.1f}"
                  f"{med('99.9'):>10.1f}{mx:>10.0f}", flush=True)


def startup(a):
    warm = [run_engine("--events", 100_000, "--symbols", a.symbols)["first_snapshot_s"]
            for _ in range(a.repeat)]
    print(f"warm numba cache: process start -> first published snapshot, median of "
          f"{a.repeat}: {statistics.median(warm):.2f} s (min {min(warm):.2f})")
    cache = tempfile.mkdtemp(prefix="shmengine-numba-")
    try:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        cold = run_engine("--events", 100_000, "--symbols", a.symbols, env=env)
        print(f"cold numba cache (empty NUMBA_CACHE_DIR): {cold['first_snapshot_s']:.2f} s")
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def memory(a):
    import psutil
    import shmengine
    from shmengine import layout as L
    from shmengine import shm
    name = f"benchmem{uuid.uuid4().hex[:6]}"
    proc = subprocess.Popen([sys.executable, "-m", "shmengine.cli", "run", "--name", name,
                             "--symbols", str(a.symbols), "--venues", str(a.venues),
                             "--workers", str(a.workers[0]), "--rate", "500000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                eng = shmengine.attach(name)
                if eng.state() == "running":
                    break
                eng.close()
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("engine did not start")
            time.sleep(0.2)
        time.sleep(5)
        print(f"{a.symbols} symbols x {a.venues} venues, {a.workers[0]} worker(s)")
        total = 0
        for seg in shm.engine_segments(name):
            size = os.stat("/dev/shm" + seg).st_size
            total += size
            print(f"  segment {seg:<40} {size / 2**20:>9.1f} MiB")
        print(f"  segments total {total / 2**20:.1f} MiB")
        for p in eng.stats()["processes"]:
            rss = psutil.Process(p["pid"]).memory_info().rss
            role = L.ROLE_NAMES[p["role"]]
            print(f"  {role} {p['index']:<3} pid {p['pid']:<8} RSS {rss / 2**20:>8.1f} MiB")
        sup = psutil.Process(proc.pid).memory_info().rss
        print(f"  supervisor      pid {proc.pid:<8} RSS {sup / 2**20:>8.1f} MiB")
        eng.close()
    finally:
        subprocess.run([sys.executable, "-m", "shmengine.cli", "stop", name], cwd=ROOT,
                       capture_output=True)
        proc.wait(60)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["throughput", "latency", "startup", "memory"])
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--venues", type=int, default=4)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--wait", nargs="+", default=["spin", "adaptive"])
    ap.add_argument("--analytics", nargs="+", choices=["on", "off"], default=["on", "off"],
                    help="throughput: with the built-in analytics, without, or both")
    ap.add_argument("--rate", type=float, default=1_000_000)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    {"throughput": throughput, "latency": latency, "startup": startup, "memory": memory}[a.what](a)


if __name__ == "__main__":
    main()
