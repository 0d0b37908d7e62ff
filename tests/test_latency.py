"""Stage latencies: recorded by the aggregator, read by `shmengine latency`."""
import json
import os

import numpy as np
from PIL import Image

from shmengine import layout as L
from shmengine.aggregator import record_stages
from shmengine.hist import COUNTS_LEN, to_hdr
from shmengine.latency import LatencyReport
from shmengine.supervisor import format_summary

from conftest import cli, engine, segments_of, unique, wait_for


def test_stages_split_the_total_exactly():
    hists = np.zeros((L.N_STAGES, COUNTS_LEN), np.int64)
    rec = np.zeros(1, L.RESULT)[0]
    rec["recv_ts"] = 1_000_000
    rec["feed_ns"] = 1_500
    rec["proc_ts"] = 1_000_000 + 1_500 + 20_000
    rec["worker_ns"] = 7_000
    record_stages(hists, rec, 1_000_000 + 1_500 + 20_000 + 7_000 + 300)
    got = {name: to_hdr(hists[k]) for k, name in L.STAGE_NAMES.items()}
    want = {"total": 28_800, "feed": 1_500, "ring": 20_000, "worker": 7_000, "merge": 300}
    for name, value in want.items():
        h = got[name]
        assert h.get_total_count() == 1, name
        assert h.values_are_equivalent(h.get_max_value(), value), (name, h.get_max_value())


def _check_png(path, stages):
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (1200, 450)
        meta = json.loads(img.info["Description"])
        pixels = np.asarray(img.convert("L"))
    assert sorted(meta["stages"]) == sorted(stages)
    assert all(n > 0 for n in meta["stages"].values())
    assert pixels.std() > 10, "the plot is blank"
    return meta


def test_live_engine_report_plot_save_compare(tmp_path):
    png, saved = tmp_path / "lat.png", tmp_path / "lat.json"
    with engine("--symbols", 100, "--workers", 2, "--rate", 100_000) as proc:
        wait_for(lambda: LatencyReport.from_engine(proc.name).stages["total"].get_total_count()
                 > 1000, 60, "latency samples")
        res = cli("latency", proc.name, "--watch", 1, "--plot", png, "--save", saved,
                  check=True)
        for name in L.STAGE_NAMES.values():
            assert f"\n{name} " in res.stdout
        assert "no samples" not in res.stdout and "throughput over" in res.stdout
        res = cli("latency", proc.name, "--compare", saved, check=True)
        assert "vs" in res.stdout
    meta = _check_png(png, L.STAGE_NAMES.values())
    assert meta["throughput_samples"] >= 5

    report = LatencyReport.load(saved)
    rates = [r for _, r in report.throughput]
    assert 50_000 < np.median(rates) < 150_000
    same = cli("latency", "--from", saved, "--compare", saved, check=True).stdout
    assert same.count("x1.00") == 3 * L.N_STAGES


def test_stage_means_add_up_to_the_total(tmp_path):
    saved = tmp_path / "lat.json"
    with engine("--symbols", 100, "--workers", 2, "--rate", 200_000, "--events", 200_000,
                "--linger") as proc:
        wait_for(lambda: cli("list").stdout.count("stopped"), 60, "the engine to drain")
        cli("latency", proc.name, "--save", saved, check=True)
    report = LatencyReport.load(saved)
    counts = {n: h.get_total_count() for n, h in report.stages.items()}
    assert len(set(counts.values())) == 1 and counts["total"] > 100_000
    means = report.means()
    parts = sum(means[n] for n in ("feed", "ring", "worker", "merge"))
    # Each value is kept to 3 significant digits: the parts add up to the total within that.
    assert abs(parts - means["total"]) <= 0.005 * means["total"]


def test_summary_json_and_dead_engine_leftovers(tmp_path):
    summary = tmp_path / "summary.json"
    cli("run", "--name", unique("lat"), "--symbols", 50, "--events", 200_000,
        "--summary-json", summary, check=True)
    res = cli("latency", "--from", summary, check=True)
    d = json.loads(summary.read_text())
    samples = d["latency_samples"]
    assert samples > 0 and f"{samples:,} results" in res.stdout
    assert d["started"] is True and "still starting" not in format_summary(d)
    assert "still starting" in format_summary({**d, "started": False})

    with engine("--symbols", 50, "--workers", 1, "--rate", 50_000) as proc:
        name = proc.name
        wait_for(lambda: LatencyReport.from_engine(name).stages["total"].get_total_count(),
                 60, "latency samples")
        proc.kill()
        proc.wait()
        for c in proc.children_at_start:
            c.wait(30)
        res = cli("latency", name, check=True)
        assert "no samples" not in res.stdout
        cli("cleanup", check=True)
        assert not segments_of(name)


def test_bad_input(tmp_path):
    res = cli("latency", "nosuchengine")
    assert res.returncode == 1 and "no engine named 'nosuchengine'" in res.stderr
    assert "Traceback" not in res.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    res = cli("latency", "--from", bad)
    assert res.returncode == 1 and "is not JSON" in res.stderr and "Traceback" not in res.stderr
    bad.write_text(json.dumps({"stages": {"total": "garbage"}}))
    res = cli("latency", "--from", bad)
    assert res.returncode == 1 and "no stage histograms" in res.stderr
    bad.write_text(json.dumps({"stages": {n: "garbage" for n in L.STAGE_NAMES.values()}}))
    res = cli("latency", "--from", bad)
    assert res.returncode == 1 and "not an encoded HdrHistogram" in res.stderr
    res = cli("latency", "x", "--watch", -1)
    assert res.returncode == 1 and "--watch" in res.stderr


def test_a_file_that_cannot_be_written_is_one_line(tmp_path):
    # a report to read: the one a finished run writes
    summary = tmp_path / "summary.json"
    cli("run", "--name", f"tlatw{os.getpid()}", "--symbols", 20, "--events", 20_000,
        "--summary-json", summary, check=True)
    for flag, path in (("--save", "/proc/lat.json"), ("--plot", "/proc/lat.png"),
                       ("--save", tmp_path / "no" / "lat.json")):
        res = cli("latency", "--from", summary, flag, path)
        assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert lines == [f"shmengine: error: {path}: No such file or directory"], res.stderr
    assert os.listdir(tmp_path) == ["summary.json"]  # and no temporary file left
