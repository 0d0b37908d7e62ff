"""A run's memory summed before it starts, against what the state really holds."""
import os

import numpy as np
import pytest

from shmengine import analytics, book, layout as L, memory
from shmengine.config import ConfigError, load
from shmengine.order_map import map_nbytes, new_order_map

from conftest import cli, unique


@pytest.mark.parametrize("n_local, n_venues, n_total, levels, orders", [
    (2, 2, 8, 64, 1 << 20), (100, 4, 1000, 16, 5000), (1, 8, 1, 2, 1), (0, 3, 5, 4, 7)])
def test_book_bytes_are_what_new_book_makes(n_local, n_venues, n_total, levels, orders):
    state = book.new_book(np.arange(n_local), n_venues, n_total, max_levels=levels,
                          max_orders=orders)
    made = sum(a.nbytes for a in state if isinstance(a, np.ndarray))
    assert book.state_nbytes(n_local, n_venues, n_total, levels, orders) == made
    assert map_nbytes(orders) == sum(a.nbytes for a in new_order_map(orders))


@pytest.mark.parametrize("n_local, n_total, settings", [
    (2, 8, {}), (0, 5, {}),
    (100, 1000, dict(vwap_window=6_000_000_000, vwap_buckets=6, ofi_buckets=5,
                     rv_samples=7, impact_pending=3))])
def test_analytics_bytes_are_what_new_analytics_makes(n_local, n_total, settings):
    params = analytics.make_params(**settings)
    ana = analytics.new_analytics(np.arange(n_local), 4, n_total, params,
                                  rows=np.zeros(n_total, L.ANALYTICS_ROW))
    private = ("local_index", "symbols", "params", "state", "vwap", "ofi", "rv_step", "rv_sq",
               "pend_i", "pend_mid")
    assert set(private) | {"rows", "words", "state_words", "n_venues"} == set(ana._fields)
    made = sum(getattr(ana, f).nbytes for f in private)
    assert analytics.state_nbytes(n_local, n_total, params) == made


def test_a_run_that_does_not_fit_names_its_largest_parts():
    cfg = load(None, {"symbols": 10_000, "venues": 8, "book_levels": 4096, "workers": 2})
    owned = [5_000, 5_000]
    parts = memory.private_parts(cfg, owned)
    assert parts[0][0].startswith("book price levels")
    assert parts[0][1] == 10_000 * 8 * 2 * 4096 * 24
    need = sum(n for _, n in memory.shared_parts(cfg, cfg.symbols) + parts)
    memory.check(cfg, owned, available=need, shm_free=need)  # fits exactly
    with pytest.raises(ConfigError, match=r"needs (\d+\.\d) GiB of memory but this host has "
                                          r"\1 GiB available \(book price levels"):
        memory.check(cfg, owned, available=need - 1, shm_free=need)
    cfg = load(None, {"bcast_capacity": 1 << 26, "result_ring_capacity": 1 << 20})
    with pytest.raises(ConfigError, match=r"segments need 20\.\d GiB but /dev/shm has 1\.0 "
                                          r"GiB free \(broadcast ring \(67,108,864 slots"):
        memory.check(cfg, [cfg.symbols], available=1 << 40, shm_free=1 << 30)


def test_run_refuses_rings_larger_than_dev_shm():
    st = os.statvfs("/dev/shm")
    free = st.f_bavail * st.f_frsize
    if free >= 3 * L.ring_size(1 << 26, L.RESULT.itemsize):
        pytest.skip("/dev/shm here holds three rings of 2**26 results: nothing to refuse")
    name = unique("mem")
    toml = f'name = "{name}"\nworkers = 2\nduration = 1\n' \
           f'bcast_capacity = {1 << 26}\nresult_ring_capacity = {1 << 26}\n'
    path = f"/tmp/{name}.toml"
    with open(path, "w") as fh:
        fh.write(toml)
    try:
        res = cli("run", path, timeout=60)
    finally:
        os.unlink(path)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "the run's segments need 60.0 GiB" in lines[0], res.stderr
    assert not [f for f in os.listdir("/dev/shm") if name in f]


_FULL_SHM = """
import os, sys
from shmengine import layout as L, shm
try:
    shm.Segment.create("/shmengine.fulltest.meta", L.SEG_META, 4 << 20)
except shm.SegmentError as e:
    print(e)
print(sorted(os.listdir("/dev/shm")))
"""


def test_a_segment_that_does_not_fit_dev_shm_is_refused_when_created():
    # A 1 MiB /dev/shm of a private mount namespace: without reserving its pages, the
    # 4 MiB segment would map, and the first write past 1 MiB would kill with SIGBUS.
    import shutil
    import subprocess
    import sys
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) for a private /dev/shm")
    res = subprocess.run(
        ["unshare", "--mount", "sh", "-c",
         f"mount -t tmpfs -o size=1m tmpfs /dev/shm && exec {sys.executable} -c '{_FULL_SHM}'"],
        capture_output=True, text=True, timeout=60)
    if "mount" in res.stderr and res.returncode != 0:
        pytest.skip(f"cannot mount a private /dev/shm here: {res.stderr.strip()}")
    assert res.returncode == 0, res.stderr
    assert "cannot reserve 4,194,304 bytes for segment /shmengine.fulltest.meta in /dev/shm: " \
        "No space left on device" in res.stdout, res.stdout
    assert res.stdout.splitlines()[-1] == "[]"  # nothing left behind
