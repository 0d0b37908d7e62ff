"""``shmengine doctor``: read the machine's CPU topology and advise how to pin an engine.

A pipeline is only as fast as its slowest busy process, and a busy process
is slow when it shares its core: with another process on the same CPU (they
take turns by time slice), with a spinner on its SMT sibling (they share one
core's execution units), or with the OS (interrupts and timers land on CPU 0
and on every CPU not isolated from the scheduler). Rings crossing NUMA nodes
move every cache line over the socket interconnect. The doctor reads all of
that from sysfs and procfs, recommends a ``--cpus`` list in the engine's
order (feed, workers..., aggregator; see ``config.cpu_plan``), and warns about
what would hurt.

    shmengine doctor --workers 4 --wait spin
    shmengine doctor engine.toml --json

Every reading goes through ``Machine``, whose roots tests replace with a fake
tree::

    facts = Machine(sysfs=tmp / "sys", procfs=tmp / "proc").read(interval=0)
"""
import dataclasses
import json
import os
import time
import tomllib

from . import config
from . import layout as L
from . import memory

HIGH_LOAD_PERCENT = 50.0    # a recommended CPU busier than this already runs other work
HIGH_STEAL_PERCENT = 5.0    # a vCPU losing more than this to the host is contended


def kernel_cpu_list(text):
    """CPUs of a kernel list ('0-3,8', or 'domain,managed_irq,2-7' in isolcpus=)."""
    parts = [p for p in text.strip().split(",") if p[:1].isdigit()]
    return config.parse_cpu_list(",".join(parts))


def fmt_cpus(cpus):
    """[0, 1, 2, 3, 8] -> '0-3,8'."""
    cpus = sorted(set(cpus))
    if not cpus:
        return "none"
    runs, start = [], cpus[0]
    for prev, cur in zip(cpus, cpus[1:] + [None]):
        if cur != prev + 1:
            runs.append(f"{start}-{prev}" if prev != start else f"{start}")
            start = cur
    return ",".join(runs)


def process_labels(n_workers):
    """Names of the engine's processes in ``cpu_plan`` order."""
    return [L.proc_name(i, n_workers + 2) for i in range(n_workers + 2)]


@dataclasses.dataclass
class Facts:
    """What ``Machine.read`` found; CPU keys are CPU numbers."""
    online: list
    affinity: set
    core: dict          # cpu -> (physical package, core id): one entry per physical core
    siblings: dict      # cpu -> CPUs sharing its core (itself included)
    nodes: dict         # NUMA node -> set of CPUs
    isolated: set
    nohz_full: set
    governors: dict     # cpu -> scaling governor; empty when cpufreq is not exposed
    vm: bool
    loadavg: tuple
    busy: dict          # cpu -> percent busy over ``interval`` (since boot when 0)
    steal: dict         # cpu -> percent taken by the hypervisor over the same time
    interval: float
    mem_available: int = None  # bytes (MemAvailable); None when procfs does not say
    shm_free: int = None       # bytes free in /dev/shm

    @property
    def usable(self):
        """CPUs the engine can be pinned to: its affinity, and isolated CPUs through taskset."""
        return sorted(set(self.online) & (self.affinity | self.isolated))

    def node_of(self, cpu):
        return next((n for n, cpus in sorted(self.nodes.items()) if cpu in cpus), 0)

    def cores_of(self, cpus):
        return {self.core[c] for c in cpus if c in self.core}


class Machine:
    """The machine as the kernel shows it under ``sysfs`` and ``procfs``."""

    def __init__(self, sysfs="/sys", procfs="/proc"):
        self.sysfs = os.fspath(sysfs)
        self.procfs = os.fspath(procfs)

    def _text(self, root, *parts):
        try:
            with open(os.path.join(root, *parts)) as fh:
                return fh.read()
        except OSError:
            return None

    def _cpu_text(self, *parts):
        return self._text(self.sysfs, "devices", "system", "cpu", *parts)

    def online(self):
        text = self._cpu_text("online")
        if text is None:
            raise config.ConfigError(f"cannot read {self.sysfs}/devices/system/cpu/online: "
                                     f"is sysfs mounted?")
        return kernel_cpu_list(text)

    def affinity(self):
        """CPUs this process may run on (``os.sched_getaffinity(0)``, read from procfs)."""
        for line in (self._text(self.procfs, "self", "status") or "").splitlines():
            if line.startswith("Cpus_allowed_list:"):
                return set(kernel_cpu_list(line.split(":", 1)[1]))
        return set(self.online())

    def topology(self, cpus):
        core, siblings = {}, {}
        for c in cpus:
            top = f"cpu{c}", "topology"
            package = self._cpu_text(*top, "physical_package_id")
            core_id = self._cpu_text(*top, "core_id")
            core[c] = (int(package or 0), int(core_id) if core_id is not None else c)
            thread = self._cpu_text(*top, "thread_siblings_list")
            siblings[c] = set(kernel_cpu_list(thread)) if thread else {c}
        return core, siblings

    def numa_nodes(self, cpus):
        base = os.path.join(self.sysfs, "devices", "system", "node")
        nodes = {}
        for entry in sorted(os.listdir(base)) if os.path.isdir(base) else []:
            text = self._text(base, entry, "cpulist")
            if entry.startswith("node") and entry[4:].isdigit() and text is not None:
                nodes[int(entry[4:])] = set(kernel_cpu_list(text))
        return nodes or {0: set(cpus)}

    def cmdline_cpus(self, key):
        """CPUs of a kernel boot parameter such as isolcpus= or nohz_full=."""
        for word in (self._text(self.procfs, "cmdline") or "").split():
            if word.startswith(key + "="):
                return set(kernel_cpu_list(word[len(key) + 1:]))
        return set()

    def isolated(self):
        listed = set(kernel_cpu_list(self._cpu_text("isolated") or ""))
        return listed | self.cmdline_cpus("isolcpus")

    def governors(self, cpus):
        govs = {c: self._cpu_text(f"cpu{c}", "cpufreq", "scaling_governor") for c in cpus}
        return {c: g.strip() for c, g in govs.items() if g is not None}

    def hypervisor(self):
        for line in (self._text(self.procfs, "cpuinfo") or "").splitlines():
            if line.startswith("flags"):
                return "hypervisor" in line.split(":", 1)[1].split()
        return False

    def loadavg(self):
        fields = (self._text(self.procfs, "loadavg") or "0 0 0").split()
        return tuple(float(f) for f in fields[:3])

    def cpu_times(self):
        """cpu -> (busy, steal, total) jiffies since boot, from /proc/stat."""
        times = {}
        for line in (self._text(self.procfs, "stat") or "").splitlines():
            name, *fields = line.split() or [""]
            if name.startswith("cpu") and name[3:].isdigit():
                # user nice system idle iowait irq softirq steal; guest time is inside user
                t = [int(f) for f in fields[:8]] + [0] * (8 - len(fields[:8]))
                total = sum(t)
                times[int(name[3:])] = (total - t[3] - t[4] - t[7], t[7], total)
        return times

    def mem_available(self):
        for line in (self._text(self.procfs, "meminfo") or "").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
        return None

    def read(self, interval=0.5):
        """All the facts; per-CPU load over ``interval`` seconds (since boot when 0)."""
        online = self.online()
        before = self.cpu_times() if interval > 0 else {}
        if interval > 0:
            time.sleep(interval)
        after = self.cpu_times()
        busy, steal = {}, {}
        for c, (b, s, t) in after.items():
            b0, s0, t0 = before.get(c, (0, 0, 0))
            span = max(t - t0, 1)
            busy[c] = 100.0 * (b - b0) / span
            steal[c] = 100.0 * (s - s0) / span
        core, siblings = self.topology(online)
        return Facts(online=online, affinity=self.affinity(), core=core, siblings=siblings,
                     nodes=self.numa_nodes(online), isolated=self.isolated(),
                     nohz_full=self.cmdline_cpus("nohz_full"),
                     governors=self.governors(online), vm=self.hypervisor(),
                     loadavg=self.loadavg(), busy=busy, steal=steal, interval=interval,
                     mem_available=self.mem_available(), shm_free=memory.host_shm_free())


# ---------------------------------------------------------------- advice

def recommend(facts, n_procs):
    """A CPU for each of ``n_procs`` processes, in ``cpu_plan`` order.

    One process per physical core, isolated (then nohz_full, then idle) cores
    first, all in one NUMA node when one has enough cores, CPU 0's core left to
    the OS when the others suffice. SMT siblings are used only when there are
    fewer physical cores than processes, and CPUs are shared only when there
    are fewer CPUs than processes, as ``config.place`` shares them.
    """
    by_core = {}
    for c in facts.usable:
        by_core.setdefault(facts.core[c], []).append(c)
    threads = [sorted(cpus, key=lambda c: (c not in facts.isolated, c))
               for cpus in by_core.values()]
    if len(threads) - 1 >= n_procs:
        threads = [t for t in threads if 0 not in t]

    def rank(t):
        c = t[0]
        return (c not in facts.isolated, c not in facts.nohz_full,
                facts.busy.get(c, 0.0) >= HIGH_LOAD_PERCENT, c)

    per_node = {}
    for t in sorted(threads, key=rank):
        per_node.setdefault(facts.node_of(t[0]), []).append(t)

    def fit(node):
        ts = per_node[node]
        isolated = sum(t[0] in facts.isolated for t in ts)
        idle = sum(facts.busy.get(t[0], 0.0) < HIGH_LOAD_PERCENT for t in ts)
        return (len(ts) >= n_procs, min(isolated, n_procs), min(idle, n_procs), -node)

    ordered = [t for node in sorted(per_node, key=fit, reverse=True) for t in per_node[node]]
    cpus = [t[0] for t in ordered] + [c for t in ordered for c in t[1:]]
    return config.place(cpus, n_procs - 2)


def check_given(facts, plan, labels, spin):
    """Warnings about a CPU list the user chose, pinned as ``config.cpu_plan`` pins it."""
    warnings = []
    online = set(facts.online)
    for c in sorted(set(plan)):
        if c not in online:
            warnings.append(f"CPU {c} does not exist here (online: {fmt_cpus(online)})")
        elif c not in facts.affinity:
            warnings.append(f"CPU {c} is outside this process's affinity "
                            f"({fmt_cpus(facts.affinity)}): `shmengine run` refuses it "
                            f"unless started under `taskset -c {fmt_cpus(facts.affinity | {c})}`")
    if spin:
        by_cpu = {}
        for label, c in zip(labels, plan):
            by_cpu.setdefault(c, []).append(label)
        for c, names in sorted(by_cpu.items()):
            if len(names) > 1:
                warnings.append(f"{' and '.join(names)} share CPU {c} with wait spin: "
                                f"each spins through the others' time slices")
        for i, (a, ca) in enumerate(zip(labels, plan)):
            for b, cb in zip(labels[i + 1:], plan[i + 1:]):
                if ca != cb and cb in facts.siblings.get(ca, ()):
                    warnings.append(f"{a} (CPU {ca}) and {b} (CPU {cb}) spin on SMT "
                                    f"siblings of one physical core")
    spare = len(facts.cores_of(facts.usable)) - len(facts.cores_of({0}))
    if 0 in plan and spare >= len(plan):
        warnings.append(f"CPU 0 takes much of the OS's interrupts and timers, and {spare} "
                        f"other cores are free: leave it to the OS")
    return warnings + check_plan(facts, plan)


def check_plan(facts, plan):
    """Warnings that hold for any pinning: NUMA spread and CPUs already busy."""
    warnings = []
    nodes = sorted({facts.node_of(c) for c in plan if c in facts.core})
    if len(nodes) > 1:
        warnings.append(f"the pipeline spans NUMA nodes {', '.join(map(str, nodes))}: "
                        f"rings between them cross the socket interconnect")
    for c in sorted(set(plan)):
        if facts.busy.get(c, 0.0) >= HIGH_LOAD_PERCENT:
            warnings.append(f"CPU {c} was {facts.busy[c]:.0f}% busy {_load_span(facts.interval)}: "
                            f"other work runs there and will compete with the engine")
    return warnings


def _load_span(interval):
    return f"over {interval:g} s" if interval > 0 else "since boot"


def machine_warnings(facts, n_procs, spin):
    """Warnings and notes about the machine and the process count, whatever the pinning."""
    warnings, notes = [], []
    usable = facts.usable
    cores = len(facts.cores_of(usable))
    if spin and n_procs > len(usable):
        fix = f"at most {len(usable) - 2} worker(s) or " if len(usable) > 2 else ""
        warnings.append(f"wait spin with {n_procs} processes on {len(usable)} usable CPUs "
                        f"oversubscribes them: spinners share CPUs by time slice and stall each "
                        f"other; use {fix}--wait adaptive")
    elif spin and n_procs > cores:
        fix = f"at most {cores - 2} worker(s) or " if cores > 2 else ""
        warnings.append(f"wait spin with {n_procs} processes on {cores} physical cores puts "
                        f"spinners on SMT siblings that share a core; use {fix}--wait adaptive")
    elif n_procs > len(usable):
        notes.append(f"{n_procs} processes share {len(usable)} CPUs; wait adaptive lets each "
                     f"sleep while the others run")
    elif n_procs > cores:
        notes.append(f"{n_procs} processes on {cores} physical cores: some run on SMT siblings "
                     f"and share a core's execution units")
    bad = {}
    for c in usable:
        gov = facts.governors.get(c)
        if gov is not None and gov != "performance":
            bad.setdefault(gov, []).append(c)
    for gov, cpus in sorted(bad.items()):
        warnings.append(f"CPUs {fmt_cpus(cpus)} use the cpufreq governor {gov!r}, not "
                        f"'performance': clocks drop while idle and ramp up late "
                        f"(`cpupower frequency-set -g performance`)")
    if not facts.governors:
        notes.append("no cpufreq governor in sysfs" + (
            ": usual in a virtual machine, where the host sets the clock" if facts.vm else ""))
    if facts.vm:
        notes.append("virtual machine (hypervisor flag in /proc/cpuinfo): CPUs here are vCPUs "
                     "the host schedules; pinning does not pin to physical cores")
    stolen = [c for c in usable if facts.steal.get(c, 0.0) >= HIGH_STEAL_PERCENT]
    if stolen:
        warnings.append(f"the hypervisor took >= {HIGH_STEAL_PERCENT:g}% of CPUs "
                        f"{fmt_cpus(stolen)} (steal time): the host is oversubscribed")
    if facts.loadavg[0] > len(usable):
        warnings.append(f"load average {facts.loadavg[0]:.2f} exceeds the {len(usable)} usable "
                        f"CPUs: other work already competes for them")
    return warnings, notes


def diagnose(facts, cfg, path=None):
    """The report on ``cfg`` (read from ``path``) on this machine; ``--json`` prints it."""
    spin = cfg.wait == "spin"
    labels = process_labels(cfg.workers)
    plan = recommend(facts, cfg.n_procs)
    warnings, notes = machine_warnings(facts, cfg.n_procs, spin)
    warnings += check_plan(facts, plan)
    outside = sorted(set(plan) - facts.affinity)
    taskset = f"taskset -c {fmt_cpus(facts.affinity | set(plan))}" if outside else ""
    if outside:
        notes.append(f"isolated CPUs {fmt_cpus(outside)} are outside this process's affinity: "
                     f"start the engine under `{taskset}` (its cgroup must allow them)")
    plain = sorted(set(plan) - facts.nohz_full)
    if spin and not facts.isolated and set(facts.online) - set(plan):
        notes.append(f"no isolated CPUs: the scheduler may run other tasks beside the spinners; "
                     f"booting with isolcpus={fmt_cpus(plan)} nohz_full={fmt_cpus(plan)} "
                     f"dedicates their CPUs")
    elif spin and plain and set(plan) <= facts.isolated:
        notes.append(f"CPUs {fmt_cpus(plain)} are isolated but not nohz_full: the scheduler "
                     f"tick still interrupts their spinners (boot with nohz_full= naming them)")
    idle = sorted({s for c in plan for s in facts.siblings.get(c, ())} - set(plan))
    given = None
    if cfg.cpus is not None:
        given_plan = config.cpu_plan(cfg)
        given = {"cpus": cfg.cpus, "plan": dict(zip(labels, given_plan)),
                 "warnings": check_given(facts, given_plan, labels, spin)}
    mem = None
    if facts.mem_available is not None:
        mem = memory.plan(cfg, memory.even_split(cfg.symbols, cfg.workers),
                          facts.mem_available, facts.shm_free)
        if mem["problem"]:
            warnings.append(mem["problem"])
    cpus_arg = ",".join(map(str, plan))
    command = " ".join(filter(None, (taskset, "shmengine run", path,
                                     f"--workers {cfg.workers} --wait {cfg.wait}",
                                     f"--cpus {cpus_arg}")))
    return {
        "machine": {
            "cpus_online": facts.online, "cpu_count": len(facts.online),
            "affinity": sorted(facts.affinity), "usable": facts.usable,
            "physical_cores": len(facts.cores_of(facts.online)),
            "packages": len({p for p, _ in facts.core.values()}),
            "smt": any(len(s) > 1 for s in facts.siblings.values()),
            "numa_nodes": {str(n): sorted(c) for n, c in sorted(facts.nodes.items())},
            "isolated": sorted(facts.isolated), "nohz_full": sorted(facts.nohz_full),
            "governors": {str(c): g for c, g in sorted(facts.governors.items())} or None,
            "virtual_machine": facts.vm, "loadavg": list(facts.loadavg),
            "load_interval_s": facts.interval,
            "busy_percent": {str(c): round(v, 1) for c, v in sorted(facts.busy.items())},
            "steal_percent": {str(c): round(v, 1) for c, v in sorted(facts.steal.items())},
        },
        "engine": {"workers": cfg.workers, "wait": cfg.wait, "processes": labels},
        "recommended": {"cpus": plan, "cpus_arg": cpus_arg, "plan": dict(zip(labels, plan)),
                        "taskset": taskset or None, "leave_idle": idle, "command": command},
        "given": given,
        "memory": mem,
        "warnings": warnings,
        "notes": notes,
    }


def _governors(governors):
    if not governors:
        return "not exposed"
    cpus = {}
    for c, g in governors.items():
        cpus.setdefault(g, []).append(int(c))
    return ", ".join(f"{g} on {fmt_cpus(cs)}" for g, cs in sorted(cpus.items()))


def _busy(percent):
    """Every CPU's load on a small machine; the mean and the busy ones on a large one."""
    if len(percent) <= 8:
        return "  ".join(f"cpu{c} {v:.0f}%" for c, v in percent.items())
    busy = [int(c) for c, v in percent.items() if v >= HIGH_LOAD_PERCENT]
    mean = sum(percent.values()) / len(percent)
    return f"mean {mean:.0f}%, at {HIGH_LOAD_PERCENT:g}% or more: {fmt_cpus(busy)}"


def format_report(doc):
    """The human report of a ``diagnose`` dict."""
    m, e, r = doc["machine"], doc["engine"], doc["recommended"]
    nodes = m["numa_nodes"]
    lines = [
        f"machine: {m['cpu_count']} CPUs online ({fmt_cpus(m['cpus_online'])}), "
        f"{m['physical_cores']} physical cores, {m['packages']} package(s), "
        f"SMT {'on' if m['smt'] else 'off'}, {len(nodes)} NUMA node(s)"
        + (", virtual machine" if m["virtual_machine"] else ""),
        f"  affinity of this process: {fmt_cpus(m['affinity'])}",
        "  NUMA: " + "  ".join(f"node{n} {fmt_cpus(c)}" for n, c in nodes.items()),
        f"  isolated: {fmt_cpus(m['isolated'])}   nohz_full: {fmt_cpus(m['nohz_full'])}",
        f"  governor: {_governors(m['governors'])}",
        f"  load average: {' '.join(f'{v:.2f}' for v in m['loadavg'])}   "
        f"busy {_load_span(m['load_interval_s'])}: {_busy(m['busy_percent'])}",
        "",
        f"engine: {e['workers']} worker(s), wait {e['wait']}: "
        f"{len(e['processes'])} processes ({', '.join(e['processes'])})",
        f"recommended: --cpus {r['cpus_arg']}",
        "  " + "  ".join(f"{label}: {c}" for label, c in r["plan"].items()),
    ]
    if r["leave_idle"]:
        idle = fmt_cpus(r['leave_idle'])
        lines.append(f"  leave idle (SMT siblings of the pinned CPUs): {idle}")
    lines.append(f"  {r['command']}")
    if doc["given"] is not None:
        g = doc["given"]
        lines += ["", f"given cpus {','.join(map(str, g['cpus']))}: "
                  + "  ".join(f"{label}: {c}" for label, c in g["plan"].items())]
        lines += [f"  warning: {w}" for w in g["warnings"]] or ["  no problem found"]
    if doc["memory"] is not None:
        lines += [""] + memory.describe(doc["memory"])
    if doc["warnings"] or doc["notes"]:
        lines.append("")
    lines += [f"warning: {w}" for w in doc["warnings"]]
    lines += [f"note: {n}" for n in doc["notes"]]
    return "\n".join(lines)


def load_config(path, workers, wait, cpus):
    """``config.load``, except that cpus are not held to this process's affinity.

    ``config.check`` refuses CPUs outside it; the doctor judges them against
    the machine it reads instead, and warns rather than refuses.
    """
    probe = [min(os.sched_getaffinity(0))]
    cfg = config.load(path, {"workers": workers, "wait": wait, "cpus": probe})
    if cpus is None and path:
        with open(path, "rb") as fh:
            cpus = tomllib.load(fh).get("cpus")
    if isinstance(cpus, str):
        cpus = config.parse_cpu_list(cpus)
    if cpus is not None and (not isinstance(cpus, list) or not cpus
                             or not all(type(c) is int and c >= 0 for c in cpus)):
        raise config.ConfigError(f"cpus must be a non-empty list of CPU numbers, got {cpus!r}")
    cfg.cpus = cpus
    return cfg


def add_parser(sub):
    p = sub.add_parser("doctor", help="read the CPU topology and recommend how to pin an engine")
    p.add_argument("config", nargs="?", help="TOML config file whose workers, wait and cpus "
                                             "to judge (flags override it)")
    p.add_argument("--workers", type=int, help="worker processes (default 1)")
    p.add_argument("--wait", help="spin | adaptive (default adaptive)")
    p.add_argument("--cpus", help="a CPU list to judge, e.g. 0,2-4 (feed, workers, aggregator)")
    p.add_argument("--interval", type=float, default=0.5,
                   help="seconds over which per-CPU load is measured (0: since boot)")
    p.add_argument("--json", action="store_true", help="print a JSON document for scripts")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args, machine=None):
    if args.interval < 0:
        raise config.ConfigError(f"interval must be >= 0 seconds, got {args.interval}")
    cfg = load_config(args.config, args.workers, args.wait, args.cpus)
    doc = diagnose((machine or Machine()).read(args.interval), cfg, args.config)
    print(json.dumps(doc, indent=2) if args.json else format_report(doc))
    return 0
