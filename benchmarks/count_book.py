"""The book kernel's instructions, mispredicted branches and cache misses per event.

This tree's kernel against a git revision's, counted by valgrind's callgrind:

    python benchmarks/count_book.py [--against REV] [--stream synthetic|itch|market|all]
                                    [--analytics] [--events N] [--lines N | --asm FILE]

Timings on this machine drift by up to 2x within minutes; counts do not.
Each kernel runs under valgrind's callgrind (a simulated CPU: its branch
predictor is simpler than a real one and its caches are the ones given, by
default a 32 KB L1 and a 2 MB last level, as this machine's L2) over the
same stream as ``ab_book.py``: a fresh book fed the --warm events, then N
events, and only those N are counted (the call runs inside a C function
that switches counting on and off). Printed per event: instructions,
mispredicted branches (conditional and indirect), L1 data misses and
last-level data misses (reads and writes), for both kernels, and tree / base.

It needs valgrind (``apt-get install valgrind``). A kernel runs some 50x
slower under it: one stream takes a few minutes. The revision is exported
once into /tmp/shmengine_count/REV so that its compiled kernels are cached.
Valgrind's simulated CPU has fewer features than this one (no AVX-512), and
numba compiles for the CPU it sees, so every run, also the native one that
fills the cache, compiles for the simulated CPU (NUMBA_CPU_NAME and
NUMBA_CPU_FEATURES): the counted code is close to, not the same as, what
runs natively.

With ``--lines N`` only this tree's kernel is counted, compiled with line
tables (NUMBA_DEBUGINFO, cached apart), and the N source lines that run the
most instructions are printed with their counts per event. The line tables
change the code: numba inlines less (the prefetch helper becomes a call),
so the total is some 10 % above the plain code's. A function inlined from
another module is shown under the caller's file with its own line numbers.
``--asm FILE`` counts this tree's plain code alone instead and writes its
listing to FILE, each instruction with how often it ran per event (with
--stream all, the last stream's).
"""
import argparse
import collections
import functools
import glob
import hashlib
import linecache
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import ab_book  # noqa: E402  (this folder)

EXPORTS = "/tmp/shmengine_count"
LOOP = '''# {package} sources: {digest}
from numba import njit
from {package}.book import process


@njit(cache=True, _nrt=False)
def run_kernel(events, n, state, ana, results, bars, signals, counters):
    mask = results.shape[0] - 1
    written = 0
    for start in range(0, n, {batch}):
        written += process(events, start, min({batch}, n - start), (1 << 62) - 1, state,
                           results, written, mask, 0, counters, ana, bars, signals)
    return written
'''
COUNTS = {  # what is printed -> callgrind's events that add up to it
    "instructions": ("Ir",),
    "mispredicts": ("Bcm", "Bim"),
    "L1 misses": ("D1mr", "D1mw"),
    "LL misses": ("DLmr", "DLmw"),
}


def child(args):
    """Run one kernel over the stream (under callgrind, from the parent)."""
    from shmengine.layout import BAR_RECORD, RESULT, SIGNAL_RECORD
    sys.path.insert(0, args.child_path)
    package = "shmengine_base" if args.child_label == "base" else "shmengine"
    if args.child_map:
        keep_object_code()
    loop = __import__(f"{package}_loop")
    events, n_symbols, n_venues = STREAMS[args.stream](args.warm)
    state, ana, counters = ab_book.fresh_state(package, n_symbols, n_venues, args.analytics,
                                               1 << 20)
    results = np.zeros(ab_book.RING, RESULT)
    bars, signals = ((results.view(BAR_RECORD), results.view(SIGNAL_RECORD))
                     if args.analytics else (None, None))
    warm = min(args.warm, len(events) // 2)
    loop.run_kernel(events[:warm], warm, state, ana, results, bars, signals, counters)
    timed = events[warm:warm + args.child_events]
    # counted: what runs inside this C function (callgrind --toggle-collect)
    functools.reduce(lambda _, __: loop.run_kernel(timed, len(timed), state, ana, results,
                                                   bars, signals, counters), (0, 0))
    if args.child_map:
        save_code_map(loop.run_kernel, args.child_map)


def keep_object_code():
    """Make each code library loaded from numba's cache keep its object code (numba
    drops it once loaded), for save_code_map."""
    from numba.core.codegen import CPUCodeLibrary
    setter = CPUCodeLibrary._set_compiled_object

    def keeping(library, value):
        library.kept_object = value
        setter(library, value)
    CPUCodeLibrary._set_compiled_object = keeping


def save_code_map(dispatcher, prefix):
    """Write the kernel's object code to prefix.o and where its code sits in memory to
    prefix.txt: a symbol of the object and that symbol's address in this process."""
    (compiled,) = dispatcher.overloads.values()
    library = compiled.library
    name = compiled.fndesc.llvm_func_name
    with open(prefix + ".o", "wb") as f:
        f.write(getattr(library, "kept_object", None) or library._get_compiled_object())
    with open(prefix + ".txt", "w") as f:
        f.write(f"{name} {library.get_pointer_to_function(name)}\n")


STREAMS = {"synthetic": ab_book.synthetic_stream, "itch": ab_book.itch_stream,
           "market": ab_book.market_stream}


def prepare(rev):
    """A directory holding the revision as shmengine_base and both kernels' loops."""
    path = os.path.join(EXPORTS, rev)
    if not os.path.isdir(os.path.join(path, "shmengine_base")):
        os.makedirs(EXPORTS, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=rev + ".", dir=EXPORTS)
        saved = list(sys.path)
        ab_book.export(rev, tmp)
        sys.path[:] = saved
        os.rename(tmp, path)
    for package, folder in (("shmengine", os.path.join(ROOT, "shmengine")),
                            ("shmengine_base", os.path.join(path, "shmengine_base"))):
        # numba's cache of the loop holds the kernel it calls, and only the loop's own
        # file keys it: the loop names a digest of the package's sources
        digest = hashlib.sha256()
        for name in sorted(glob.glob(os.path.join(folder, "*.py"))):
            digest.update(open(name, "rb").read())
        source = LOOP.format(package=package, batch=ab_book.BATCH, digest=digest.hexdigest())
        file = os.path.join(path, f"{package}_loop.py")
        if not os.path.exists(file) or open(file).read() != source:
            with open(file, "w") as f:  # rewritten only when changed: it keys the cache
                f.write(source)
    return path


def simulated_cpu():
    """numba's settings for the CPU that valgrind simulates."""
    probe = ("import llvmlite.binding as ll; "
             "print(ll.get_host_cpu_name()); print(ll.get_host_cpu_features().flatten())")
    done = subprocess.run(["valgrind", "-q", sys.executable, "-c", probe],
                          capture_output=True, text=True, check=True)
    name, features = done.stdout.split()
    return {"NUMBA_CPU_NAME": name, "NUMBA_CPU_FEATURES": features}


def count(args, path, label, lines=False):
    """Per event counts of one kernel over the stream; with ``lines``, also per source
    line of the kernel: {(file, line): counts}."""
    def command(n):
        return ([sys.executable, os.path.abspath(__file__), "--stream", args.stream_one,
                 "--warm", str(args.warm), "--child-label", label, "--child-path", path,
                 "--child-events", str(n)] + (["--analytics"] if args.analytics else [])
                + (["--child-map", os.path.join(path, "map")] if lines else []))
    env = dict(os.environ, **args.cpu_env)
    options = []
    if lines and not args.asm:  # line tables in the code, cached apart from the plain code
        env.update(NUMBA_DEBUGINFO="1", NUMBA_CACHE_DIR=os.path.join(path, "debuginfo_cache"))
    if lines:
        options = ["--dump-instr=yes", "--dump-line=no", "--compress-pos=no",
                   "--compress-strings=no"]
    native = subprocess.run(command(16), capture_output=True, text=True, env=env)
    if native.returncode:  # (that run compiled the kernel and the stream's generator)
        sys.exit(f"the {label} kernel failed:\n{native.stderr[-3000:]}")
    with tempfile.NamedTemporaryFile(prefix="shmengine_callgrind_") as out:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--collect-atstart=no",
             "--toggle-collect=functools_reduce", "--branch-sim=yes", "--cache-sim=yes",
             f"--D1={args.l1}", f"--LL={args.ll}", f"--callgrind-out-file={out.name}"]
            + options + command(args.events), capture_output=True, text=True, env=env)
        if done.returncode:
            sys.exit(f"the {label} kernel failed under callgrind:\n{done.stderr[-3000:]}")
        text = open(out.name).read()
    names = re.search(r"^events:(.*)$", text, re.M).group(1).split()
    totals = [int(v) for v in re.search(r"^totals:(.*)$", text, re.M).group(1).split()]
    per_event = per_event_counts(dict(zip(names, totals)), args.events)
    if not lines:
        return per_event
    by_line = collections.defaultdict(lambda: np.zeros(len(names), np.int64))
    where, listing = code_lines(os.path.join(path, "map"))
    by_address = {}
    for address, costs in instruction_costs(text, len(names)):
        by_line[where.get(address, ("?", 0))] += costs
        by_address[address] = by_address.get(address, 0) + costs[names.index("Ir")]
    if args.asm:
        with open(args.asm, "w") as f:
            for address, row in listing:
                f.write(f"{by_address.get(address, 0) / args.events:8.2f} {row}\n")
    return per_event, {loc: per_event_counts(dict(zip(names, costs.tolist())), args.events)
                       for loc, costs in by_line.items()}


def per_event_counts(found, n_events):
    return {k: sum(found.get(e, 0) for e in events) / n_events for k, events in COUNTS.items()}


def instruction_costs(text, n_counts):
    """(address, costs) of each instruction line of a callgrind file written with
    --dump-instr=yes --dump-line=no --compress-pos=no; a call's inclusive cost,
    the line after calls=, is skipped."""
    skip = False
    for row in text.splitlines():
        if row.startswith("calls="):
            skip = True
        elif row.startswith("0x"):
            if skip:
                skip = False
                continue
            fields = row.split()
            costs = np.zeros(n_counts, np.int64)
            costs[:len(fields) - 1] = [int(v) for v in fields[1:]]
            yield int(fields[0], 16), costs


def code_lines(prefix):
    """{address in the counted process: (source file, line)} of the kernel's code, and
    its listing: [(address, instruction)]."""
    name, address = open(prefix + ".txt").read().split()
    symbols = subprocess.run(["nm", prefix + ".o"], check=True, capture_output=True,
                             text=True).stdout
    (offset,) = [int(row.split()[0], 16) for row in symbols.splitlines()
                 if row.split()[-1] == name]
    base = int(address) - offset
    listing = subprocess.run(["objdump", "-d", "-l", "--no-show-raw-insn", prefix + ".o"],
                             check=True, capture_output=True, text=True).stdout
    where = {}
    rows = []
    here = ("?", 0)
    for row in listing.splitlines():
        found = re.match(r"^(/\S+\.py):(\d+)", row)
        if found:
            here = (found.group(1), int(found.group(2)))
            continue
        found = re.match(r"^\s+([0-9a-f]+):\t", row)
        if found:
            where[base + int(found.group(1), 16)] = here
            rows.append((base + int(found.group(1), 16), row))
    return where, rows


def print_lines(by_line, top):
    """The source lines that run the most instructions, with their counts per event."""
    print(f"{'instr':>7} {'mispr':>6} {'L1':>6} {'LL':>6}  line")
    ranked = sorted(by_line.items(), key=lambda item: -item[1]["instructions"])
    for (file, line), c in ranked[:top]:
        text = linecache.getline(file, line).strip() if line else ""
        print(f"{c['instructions']:7.2f} {c['mispredicts']:6.3f} {c['L1 misses']:6.3f} "
              f"{c['LL misses']:6.3f}  {os.path.basename(file)}:{line}  {text[:70]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ab_book.kernel_arguments(parser, "synthetic")
    parser.add_argument("--events", type=int, default=1 << 18,
                        help="events counted (default 2**18)")
    parser.add_argument("--warm", type=int, default=1 << 20,
                        help="events fed to each fresh book first (default 2**20)")
    parser.add_argument("--l1", default="32768,8,64", help="simulated L1 data cache "
                        "(size,associativity,line; default 32768,8,64)")
    parser.add_argument("--ll", default="2097152,16,64", help="simulated last-level cache "
                        "(default 2097152,16,64: this machine's L2)")
    parser.add_argument("--lines", type=int, metavar="N",
                        help="count this tree's kernel alone, and print the N source lines "
                             "that run the most instructions (the kernel is compiled with "
                             "line tables, which changes its code a little)")
    parser.add_argument("--asm", metavar="FILE",
                        help="count this tree's plain code alone (no line tables) and write "
                             "its listing to FILE, each instruction with its runs per event")
    parser.add_argument("--child-label", help=argparse.SUPPRESS)
    parser.add_argument("--child-map", help=argparse.SUPPRESS)
    parser.add_argument("--child-path", help=argparse.SUPPRESS)
    parser.add_argument("--child-events", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_label:
        child(args)
        return
    if subprocess.run(["which", "valgrind"], capture_output=True).returncode:
        sys.exit("count_book.py needs valgrind: apt-get install valgrind")
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", args.against],
                         check=True, capture_output=True, text=True).stdout.strip()
    path = prepare(rev)
    args.cpu_env = simulated_cpu()
    chosen = list(STREAMS) if args.stream == "all" else [args.stream]
    what = "books and analytics" if args.analytics else "books"
    alone = args.lines or args.asm
    kernels = "this tree" if alone else f"this tree against {args.against} ({rev})"
    print(f"{kernels}, {what}, per event over {args.events:,} events after {args.warm:,}; "
          f"callgrind, L1 {args.l1}, LL {args.ll}, compiled for {args.cpu_env['NUMBA_CPU_NAME']}")
    if alone:
        for name in chosen:
            args.stream_one = name
            per_event, by_line = count(args, path, "tree", lines=True)
            print(f"{name}: " + ", ".join(f"{v:.2f} {k}" for k, v in per_event.items()))
            if args.asm:
                print(f"listing with runs per event written to {args.asm}")
            else:
                print_lines(by_line, args.lines)
        return
    print(f"{'stream':<10} {'count':<13} {'base':>9} {'tree':>9} {'tree/base':>9}")
    for name in chosen:
        args.stream_one = name
        per_event = {label: count(args, path, label) for label in ("base", "tree")}
        for k in COUNTS:
            base, tree = per_event["base"][k], per_event["tree"][k]
            ratio = f"{tree / base:9.3f}" if base else f"{'-':>9}"
            print(f"{name:<10} {k:<13} {base:9.2f} {tree:9.2f} {ratio}")


if __name__ == "__main__":
    main()
