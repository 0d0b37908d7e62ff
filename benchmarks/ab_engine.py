"""The whole engine of this tree against the one of a git revision: interleaved `shmengine run`s.

    python benchmarks/ab_engine.py [--against REV] [--pairs N] [-- RUN FLAGS...]
    python benchmarks/ab_engine.py --against HEAD~1 --pairs 5 -- --events 40000000 \\
        --workers 1 --no-analytics

This machine's speed drifts by up to 2x within minutes, so two runs taken one
after the other say little about a change of a few percent. Here the two
builds run alternately, a pair at a time: the revision is exported with
``git archive`` into a temporary directory (the compiled C modules are taken
from this tree), and each run is ``python -m shmengine.cli run`` with the
flags after ``--`` (default ``--events 40000000 --workers 1``), started in
that tree with its own numba cache. The first pair only warms the caches and
is not counted. Printed per run: events/s and each process's CPU ns per
event (from ``--summary-json``); at the end the medians of each build and the
median of the per-pair ratios this tree / base. Throughput is set by the
busiest CPU; a process's CPU per event says which part a change moved.
"""
import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RUN = ["--events", "40000000", "--workers", "1"]


def export(rev, into):
    """The tree at rev (package and build files) in ``into``; returns the path."""
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    for lib in glob.glob(os.path.join(ROOT, "shmengine", "*.so")):
        shutil.copy(lib, os.path.join(into, "shmengine"))
    return into


def run_once(tree, flags):
    """One `shmengine run` of the package in ``tree``; returns its summary dict."""
    with tempfile.NamedTemporaryFile(suffix=".json") as fh:
        cmd = [sys.executable, "-m", "shmengine.cli", "run", "--name",
               f"ab{uuid.uuid4().hex[:8]}", "--summary-json", fh.name, *flags]
        env = dict(os.environ, PYTHONPATH=tree)
        env.pop("NUMBA_CACHE_DIR", None)  # each tree keeps its cache beside its code
        res = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} in {tree} failed:\n{res.stdout}\n{res.stderr}")
        return json.load(open(fh.name))


def describe(label, summary):
    n = summary["events"]
    cpu = "  ".join(f"{name} {seconds / n * 1e9:5.1f}"
                    for name, seconds in summary.get("cpu_s", {}).items())
    return f"{label:<5} {summary['events_per_s'] / 1e6:7.2f} M events/s   CPU ns/event: {cpu}"


def main():
    argv = sys.argv[1:]
    flags = DEFAULT_RUN
    if "--" in argv:
        cut = argv.index("--")
        argv, flags = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="HEAD", help="git revision (default HEAD)")
    parser.add_argument("--pairs", type=int, default=5, help="counted pairs (default 5)")
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    with tempfile.TemporaryDirectory(prefix="shmengine_ab_") as tmp:
        trees = {"base": export(args.against, tmp), "tree": ROOT}
        print(f"this tree against {args.against}: shmengine run {' '.join(flags)}; "
              f"{args.pairs} pairs after a warm-up pair")
        rates = {label: [] for label in trees}
        for pair in range(args.pairs + 1):
            for label, tree in trees.items():
                summary = run_once(tree, flags)
                print(("warm  " if pair == 0 else "      ") + describe(label, summary),
                      flush=True)
                if pair:
                    rates[label].append(summary["events_per_s"])
        ratios = [t / b for t, b in zip(rates["tree"], rates["base"])]
        print(f"median M events/s: base {statistics.median(rates['base']) / 1e6:.2f}, "
              f"tree {statistics.median(rates['tree']) / 1e6:.2f}; tree / base, median of "
              f"pairs {statistics.median(ratios):.3f} "
              f"(range {min(ratios):.3f}..{max(ratios):.3f})")


if __name__ == "__main__":
    main()
