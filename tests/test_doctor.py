"""`shmengine doctor`: topology reading on fake sysfs/procfs trees and on this machine."""
import glob
import json
import os
import random
import re
import shutil

import pytest

from shmengine import shm
from shmengine.doctor import (Machine, diagnose, fmt_cpus, kernel_cpu_list, load_config,
                              process_labels)

from conftest import cli, engine

PACKAGES, CORES = 2, 8      # the fake server: 2 sockets x 8 cores x 2 threads = 32 CPUs
N_CPUS = PACKAGES * CORES * 2


def server_cpu(package, core, thread):
    """Intel numbering: first threads of every core, then their siblings."""
    return thread * PACKAGES * CORES + package * CORES + core


def write(root, path, text):
    full = root / path
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_text(text)


def fake_server(root, isolcpus="", nohz_full="", affinity=None, governor="performance",
                busy=None, vm=False, mem_available_kb=None):
    """A sysfs/procfs tree of a 2-socket, 16-core SMT server; returns its Machine.

    ``busy`` maps CPUs to the percent of time busy since boot (the others idle).
    """
    cpu = "sys/devices/system/cpu"
    write(root, f"{cpu}/online", f"0-{N_CPUS - 1}\n")
    write(root, f"{cpu}/isolated", isolcpus + "\n")
    nodes = {p: [] for p in range(PACKAGES)}
    for p in range(PACKAGES):
        for c in range(CORES):
            pair = [server_cpu(p, c, t) for t in range(2)]
            nodes[p] += pair
            for n in pair:
                write(root, f"{cpu}/cpu{n}/topology/core_id", f"{c}\n")
                write(root, f"{cpu}/cpu{n}/topology/physical_package_id", f"{p}\n")
                write(root, f"{cpu}/cpu{n}/topology/thread_siblings_list", fmt_cpus(pair) + "\n")
                if governor:
                    write(root, f"{cpu}/cpu{n}/cpufreq/scaling_governor", governor + "\n")
    for p, cpus in nodes.items():
        write(root, f"sys/devices/system/node/node{p}/cpulist", fmt_cpus(cpus) + "\n")
    iso = set(kernel_cpu_list(isolcpus))
    allowed = affinity if affinity is not None else set(range(N_CPUS)) - iso
    write(root, "proc/self/status", f"Name:\tpython\nCpus_allowed_list:\t{fmt_cpus(allowed)}\n")
    cmdline = "ro quiet" + (f" isolcpus=domain,managed_irq,{isolcpus}" if isolcpus else "") \
        + (f" nohz_full={nohz_full}" if nohz_full else "")
    write(root, "proc/cmdline", cmdline + "\n")
    flags = "fpu sse2 ht avx2" + (" hypervisor" if vm else "")
    write(root, "proc/cpuinfo", "".join(f"processor\t: {n}\nflags\t\t: {flags}\n\n"
                                        for n in range(N_CPUS)))
    write(root, "proc/loadavg", "0.50 0.40 0.30 1/200 1234\n")
    stat = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    for n in range(N_CPUS):
        b = (busy or {}).get(n, 0)
        stat.append(f"cpu{n} {b * 100} 0 0 {(100 - b) * 100} 0 0 0 0 0 0")
    write(root, "proc/stat", "\n".join(stat) + "\nintr 0\n")
    if mem_available_kb is not None:
        write(root, "proc/meminfo", f"MemTotal:       {2 * mem_available_kb} kB\n"
                                    f"MemFree:        {mem_available_kb} kB\n"
                                    f"MemAvailable:   {mem_available_kb} kB\n")
    return Machine(sysfs=root / "sys", procfs=root / "proc")


def advise(machine, workers=1, wait="adaptive", cpus=None):
    return diagnose(machine.read(interval=0), load_config(None, workers, wait, cpus))


def physical_core(cpu):
    return cpu % (PACKAGES * CORES)


def node(cpu):
    return physical_core(cpu) // CORES


# ---------------------------------------------------------------- this machine

def test_report_on_this_machine():
    res = cli("doctor", "--interval", "0.1")
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert re.search(rf"\b{os.cpu_count()} CPUs online", res.stdout), res.stdout
    assert "recommended: --cpus " in res.stdout


def test_machine_reads_what_the_os_reports():
    facts = Machine().read(interval=0)
    assert len(facts.online) == os.cpu_count()
    assert facts.affinity == os.sched_getaffinity(0)
    assert set(facts.core) == set(facts.online)
    assert all(c in facts.siblings[c] for c in facts.online)


def test_copy_of_this_machine_reads_the_same(tmp_path):
    """A tree copied from /sys and /proc gives the facts the live ones give."""
    patterns = ["sys/devices/system/cpu/online", "sys/devices/system/cpu/isolated",
                "sys/devices/system/cpu/cpu[0-9]*/topology/core_id",
                "sys/devices/system/cpu/cpu[0-9]*/topology/physical_package_id",
                "sys/devices/system/cpu/cpu[0-9]*/topology/thread_siblings_list",
                "sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor",
                "sys/devices/system/node/node[0-9]*/cpulist",
                "proc/self/status", "proc/cmdline", "proc/cpuinfo", "proc/loadavg"]
    for pattern in patterns:
        for src in glob.glob("/" + pattern):
            dst = tmp_path / src.lstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    live = Machine().read(interval=0)
    copy = Machine(sysfs=tmp_path / "sys", procfs=tmp_path / "proc").read(interval=0)
    for field in ("online", "core", "siblings", "nodes", "isolated", "nohz_full", "governors",
                  "vm"):
        assert getattr(copy, field) == getattr(live, field), field
    doc = diagnose(copy, load_config(None, 1, "adaptive", None))
    notes = " ".join(doc["notes"])
    assert ("no cpufreq governor" in notes) == (not live.governors)
    assert ("virtual machine" in notes) == live.vm


def test_recommended_cpus_run_the_engine(engine_name):
    res = cli("doctor", "--json", "--workers", "2", "--interval", "0", check=True)
    rec = json.loads(res.stdout)["recommended"]
    assert len(rec["cpus"]) == 4
    assert set(rec["cpus"]) <= os.sched_getaffinity(0)
    run = cli("run", "--name", engine_name, "--cpus", rec["cpus_arg"], "--workers", 2,
              "--events", 20000)
    assert run.returncode == 0, run.stderr
    assert "20,000 events" in run.stdout
    assert not shm.engine_segments(engine_name)


def test_engine_pins_where_recommended():
    rec = json.loads(cli("doctor", "--json", "--interval", "0", check=True).stdout)["recommended"]
    import shmengine
    with engine("--cpus", rec["cpus_arg"], "--workers", 1, "--events", 20000, "--linger") as proc:
        with shmengine.attach(proc.name) as eng:
            pinned = [p["cpu"] for p in eng.stats()["processes"]]
    assert pinned == rec["cpus"]


def test_spin_oversubscription_on_this_machine():
    usable = len(Machine().read(interval=0).usable)
    res = cli("doctor", "--workers", usable, "--wait", "spin", "--interval", "0", check=True)
    assert "oversubscribes" in res.stdout
    res = cli("doctor", "--workers", usable, "--wait", "adaptive", "--interval", "0", check=True)
    assert "oversubscribes" not in res.stdout


# ---------------------------------------------------------------- fake server

def test_spin_processes_get_whole_cores(tmp_path):
    machine = fake_server(tmp_path)
    for workers in (2, 6, CORES * PACKAGES - 2):
        doc = advise(machine, workers, "spin")
        plan = doc["recommended"]["cpus"]
        assert len({physical_core(c) for c in plan}) == len(plan), plan
        siblings = {server_cpu(node(c), physical_core(c) % CORES, 1) for c in plan}
        assert set(doc["recommended"]["leave_idle"]) == siblings - set(plan)
        assert not [w for w in doc["warnings"] if "SMT" in w or "oversubscribes" in w]


def test_given_smt_siblings_for_spin_warn(tmp_path):
    machine = fake_server(tmp_path)
    a, b = server_cpu(0, 3, 0), server_cpu(0, 3, 1)
    given = advise(machine, 1, "spin", f"{server_cpu(0, 2, 0)},{a},{b}")["given"]
    assert any("SMT siblings" in w and f"CPU {a}" in w and f"CPU {b}" in w
               for w in given["warnings"]), given
    apart = advise(machine, 1, "spin", f"{server_cpu(0, 2, 0)},{a},{server_cpu(0, 4, 0)}")
    assert apart["given"]["warnings"] == []


def test_spin_beyond_physical_cores_warns(tmp_path):
    machine = fake_server(tmp_path)
    doc = advise(machine, PACKAGES * CORES, "spin")
    assert any("SMT siblings" in w for w in doc["warnings"]), doc["warnings"]
    doc = advise(machine, N_CPUS, "spin")
    assert any("oversubscribes" in w and f"{N_CPUS} usable CPUs" in w
               for w in doc["warnings"]), doc["warnings"]
    assert not [w for w in advise(machine, N_CPUS, "adaptive")["warnings"]
                if "oversubscribes" in w]


def test_isolated_cpus_preferred(tmp_path):
    iso = [server_cpu(1, c, 0) for c in range(2, CORES)]      # 6 cores on socket 1
    iso_list = fmt_cpus(iso + [server_cpu(1, c, 1) for c in range(2, CORES)])
    machine = fake_server(tmp_path, isolcpus=iso_list, nohz_full=iso_list)
    doc = advise(machine, 2, "spin")
    plan = doc["recommended"]["cpus"]
    assert set(plan) <= set(iso)
    assert len({physical_core(c) for c in plan}) == len(plan)
    # isolated CPUs are outside the default affinity: the command widens it with taskset
    assert doc["recommended"]["command"].startswith("taskset -c ")
    assert set(kernel_cpu_list(doc["recommended"]["taskset"].split()[-1])) >= set(plan)
    assert not any("no isolated CPUs" in n for n in doc["notes"])


def test_given_cpus_outside_machine_or_affinity_warn(tmp_path):
    iso = fmt_cpus([server_cpu(1, c, t) for c in range(4, CORES) for t in (0, 1)])
    machine = fake_server(tmp_path, isolcpus=iso)
    outside = server_cpu(1, 5, 0)
    given = advise(machine, 1, "adaptive", f"1,{outside},{N_CPUS + 8}")["given"]
    assert any(f"CPU {N_CPUS + 8} does not exist" in w for w in given["warnings"]), given
    assert any(f"CPU {outside} is outside this process's affinity" in w
               for w in given["warnings"]), given
    assert not any("CPU 1 " in w for w in given["warnings"])


def test_pipeline_stays_in_one_numa_node(tmp_path):
    machine = fake_server(tmp_path)
    for workers in (1, 3, CORES - 3):                   # CORES - 1 processes fit beside CPU 0
        plan = advise(machine, workers)["recommended"]["cpus"]
        assert len({node(c) for c in plan}) == 1, plan
        assert 0 not in plan and server_cpu(0, 0, 1) not in plan
    doc = advise(machine, CORES)                      # CORES + 2 processes: no node holds them
    assert len({node(c) for c in doc["recommended"]["cpus"]}) == 2
    assert any("spans NUMA nodes 0, 1" in w for w in doc["warnings"])


def test_isolated_node_holds_the_pipeline(tmp_path):
    iso = fmt_cpus([server_cpu(1, c, t) for c in range(2, CORES) for t in (0, 1)])
    machine = fake_server(tmp_path, isolcpus=iso)
    plan = advise(machine, CORES - 2)["recommended"]["cpus"]  # CORES processes, 6 isolated
    assert {node(c) for c in plan} == {1}
    assert set(plan[:CORES - 2]) == {server_cpu(1, c, 0) for c in range(2, CORES)}


def test_busy_cpus_avoided_and_reported(tmp_path):
    busy = {server_cpu(0, c, t): 90 for c in range(CORES) for t in (0, 1)}
    machine = fake_server(tmp_path, busy=busy)
    doc = advise(machine, 2, cpus="1,2,3,4")
    assert {node(c) for c in doc["recommended"]["cpus"]} == {1}
    assert not any("busy" in w for w in doc["warnings"])
    assert any("CPU 1 was 90% busy since boot" in w for w in doc["given"]["warnings"])


def test_busy_cores_skipped_within_a_node(tmp_path):
    busy = {server_cpu(0, c, t): 90 for c in (1, 2) for t in (0, 1)}
    plan = advise(fake_server(tmp_path, busy=busy), 1)["recommended"]["cpus"]
    assert len({node(c) for c in plan}) == 1
    assert not set(plan) & set(busy), plan


def test_cpu0_used_when_cores_are_short(tmp_path):
    machine = fake_server(tmp_path)
    plan = advise(machine, PACKAGES * CORES - 2, "spin")["recommended"]["cpus"]
    assert 0 in plan


# ---------------------------------------------------------------- governor, VM

@pytest.mark.parametrize("governor", ["powersave", "ondemand"])
def test_governor_not_performance_warns(tmp_path, governor):
    doc = advise(fake_server(tmp_path, governor=governor))
    assert any(repr(governor) in w and "performance" in w for w in doc["warnings"])


def test_performance_governor_and_absent_governor(tmp_path):
    doc = advise(fake_server(tmp_path / "perf"))
    assert not any("governor" in w for w in doc["warnings"] + doc["notes"])
    doc = advise(fake_server(tmp_path / "vm", governor="", vm=True))
    assert doc["machine"]["governors"] is None
    assert any("no cpufreq governor" in n and "virtual machine" in n for n in doc["notes"])
    assert doc["machine"]["virtual_machine"]


def test_text_report_of_fake_server(tmp_path, capsys):
    from types import SimpleNamespace
    from shmengine.doctor import cmd_doctor
    machine = fake_server(tmp_path, governor="powersave")
    args = SimpleNamespace(config=None, workers=N_CPUS, wait="spin", cpus=None, interval=0,
                           json=False)
    assert cmd_doctor(args, machine) == 0
    out = capsys.readouterr().out
    assert f"{N_CPUS} CPUs online" in out and f"{PACKAGES * CORES} physical cores" in out
    assert "SMT on" in out and "2 NUMA node(s)" in out
    assert re.search(r"^warning: wait spin .* oversubscribes", out, re.M), out
    assert re.search(r"^warning: .*'powersave'", out, re.M), out


def test_memory_of_the_run_against_the_host(tmp_path, capsys):
    from types import SimpleNamespace
    from shmengine.doctor import cmd_doctor
    cfg = tmp_path / "engine.toml"
    cfg.write_text("symbols = 10000\nvenues = 8\nbook_levels = 4096\nworkers = 2\n")
    small = fake_server(tmp_path / "small", mem_available_kb=8 << 20)  # 8 GiB
    doc = diagnose(small.read(interval=0), load_config(str(cfg), None, None, None), str(cfg))
    mem = doc["memory"]
    assert mem["available_bytes"] == 8 << 30
    assert mem["parts"][0]["bytes"] == 10_000 * 8 * 2 * 4096 * 24  # the price levels
    assert mem["problem"].startswith("the run needs 16.") and mem["problem"] in doc["warnings"]
    large = fake_server(tmp_path / "large", mem_available_kb=64 << 20)
    args = SimpleNamespace(config=str(cfg), workers=None, wait=None, cpus=None, interval=0,
                           json=False)
    assert cmd_doctor(args, large) == 0
    out = capsys.readouterr().out
    assert re.search(r"^memory: the run holds about 16\.\d GiB .* 64\.0 GiB available", out,
                     re.M), out
    assert "14.6 GiB  book price levels" in out and "warning: the run needs" not in out
    # without /proc/meminfo the doctor says nothing of memory
    assert diagnose(fake_server(tmp_path / "none").read(interval=0),
                    load_config(None, 1, None, None))["memory"] is None


# ---------------------------------------------------------------- config and errors

def test_config_file_is_judged(tmp_path):
    cfg = tmp_path / "engine.toml"
    cfg.write_text(f'workers = 3\nwait = "spin"\ncpus = [0, 1, 1, 2, {N_CPUS + 1}]\n')
    machine = fake_server(tmp_path / "tree")
    doc = diagnose(machine.read(interval=0), load_config(str(cfg), None, None, None), str(cfg))
    assert doc["engine"] == {"workers": 3, "wait": "spin", "processes": process_labels(3)}
    assert str(cfg) in doc["recommended"]["command"]
    warnings = doc["given"]["warnings"]
    assert any("worker 0 and worker 1 share CPU 1" in w for w in warnings), warnings
    assert any(f"CPU {N_CPUS + 1} does not exist" in w for w in warnings), warnings
    flags = load_config(str(cfg), 5, "adaptive", "4-10")
    assert (flags.workers, flags.wait, flags.cpus) == (5, "adaptive", list(range(4, 11)))


def _one_line_error(res, needle):
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], res.stderr


@pytest.mark.parametrize("text, needle", [
    ("workers = 0\n", "workers must be between 1 and"),
    ('wait = "sleepy"\n', "wait must be 'spin' or 'adaptive'"),
    ("workers = [\n", "is not valid TOML"),
    ("cpus = [1, \"x\"]\n", "cpus must be a"),
    ("cpus = []\n", "cpus must be a non-empty list"),
    ("colour = 3\n", "unknown config key 'colour'"),
])
def test_bad_config_file(tmp_path, text, needle):
    cfg = tmp_path / "engine.toml"
    cfg.write_text(text)
    _one_line_error(cli("doctor", cfg, "--interval", "0"), needle)


@pytest.mark.parametrize("args, needle", [
    (["missing.toml"], "config file missing.toml not found"),
    (["--cpus", "a-b"], "bad CPU list"),
    (["--wait", "sleepy"], "wait must be 'spin' or 'adaptive'"),
    (["--interval", "-1"], "interval must be >= 0"),
])
def test_bad_arguments(args, needle):
    _one_line_error(cli("doctor", *args), needle)


def test_cpu_list_round_trip():
    rng = random.Random(7)
    for _ in range(200):
        cpus = set(rng.sample(range(64), rng.randint(0, 20)))
        assert set(kernel_cpu_list("" if not cpus else fmt_cpus(cpus))) == cpus
    assert kernel_cpu_list("nohz,domain,managed_irq,2-4,9\n") == [2, 3, 4, 9]


def test_given_cpu0_warns_only_when_cores_are_spare(tmp_path):
    machine = fake_server(tmp_path)
    spare = advise(machine, 1, cpus="0,1,2")["given"]["warnings"]
    assert any(w.startswith("CPU 0 ") for w in spare), spare
    full = advise(machine, PACKAGES * CORES - 2, cpus=f"0-{PACKAGES * CORES - 1}")
    assert not any(w.startswith("CPU 0 ") for w in full["given"]["warnings"])


def test_spin_without_isolation_or_tickless_is_noted(tmp_path):
    doc = advise(fake_server(tmp_path / "plain"), 2, "spin")
    plan = fmt_cpus(doc["recommended"]["cpus"])
    assert any(f"isolcpus={plan} nohz_full={plan}" in n for n in doc["notes"]), doc["notes"]
    iso = fmt_cpus([server_cpu(1, c, t) for c in range(2, CORES) for t in (0, 1)])
    machine = fake_server(tmp_path / "iso", isolcpus=iso)
    doc = advise(machine, 2, "spin")
    assert any("isolated but not nohz_full" in n for n in doc["notes"]), doc["notes"]
    assert not any("nohz_full" in n for n in advise(machine, 2, "adaptive")["notes"])
