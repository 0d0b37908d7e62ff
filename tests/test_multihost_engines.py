"""Three engines on three hosts (network namespaces): one publishes its stream over
multicast, two subscribe to half the symbols each through 5 % packet loss, and
each ends with the publisher's rows for its symbols.

Needs root, iproute2 and nftables; skipped otherwise, saying which is missing.
"""
import os
import random
import subprocess
import sys
import uuid

import numpy as np
import pytest

import shmengine
from shmengine import layout as L
from shmengine.market import symbol_names
from shmengine.segments import fnv1a64

from conftest import ROOT, segments_of, wait_for

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netns_peer import Hosts, missing_tools  # noqa: E402

pytestmark = pytest.mark.skipif(missing_tools() is not None, reason=str(missing_tools()))

SYMBOLS = 100
EVENTS = 300_000


@pytest.fixture
def hosts():
    try:
        net = Hosts(["pub", "s1", "s2"], lossy=["s1", "s2"], loss_percent=5)
        net.__enter__()
    except RuntimeError as e:
        pytest.skip(f"cannot build network namespaces here: {e}")
    try:
        yield net
    finally:
        net.remove()
        assert net.remaining() == []


def _running(name):
    try:
        with shmengine.attach(name) as eng:
            return eng.state() == "running"
    except Exception:
        return False


def test_subscriber_engines_equal_the_publisher_for_their_symbols(hosts, tmp_path):
    group = f"239.98.{random.randint(0, 255)}.{random.randint(1, 254)}"
    port = random.randint(20_000, 60_000)
    pub_addr = hosts.address("pub")
    tag = uuid.uuid4().hex[:6]
    names = {h: f"mh{h}{tag}" for h in ("pub", "s1", "s2")}
    procs = []

    def start(host, *args):
        cmd = [*hosts.run_args(host), sys.executable, "-m", "shmengine.cli", "run",
               "--name", names[host], "--symbols", SYMBOLS, "--workers", 1,
               "--save-snapshot", tmp_path / f"{host}.npy", *args]
        procs.append(subprocess.Popen([str(c) for c in cmd], cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
        return procs[-1]

    try:
        subs = [start(h, "--source", f"udp://{group}:{port}?retransmit={pub_addr}:{port + 1}"
                                     f"&interface={hosts.address(h)}", "--take", f"{k}/2")
                for k, h in enumerate(("s1", "s2"))]
        for h in ("s1", "s2"):
            wait_for(lambda: _running(names[h]), 120, f"subscriber {h}")
        pub = start("pub", "--publish", f"udp://{group}:{port}?interface={pub_addr}",
                    "--events", EVENTS, "--rate", 300_000)
        out, err = pub.communicate(timeout=180)
        assert pub.returncode == 0, err
        reports = []
        for sub in subs:
            out, err = sub.communicate(timeout=120)
            assert sub.returncode == 0, err
            reports.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for name in names.values():
            left = segments_of(name)
            for seg in left:
                shm_unlink(seg)
            assert not left, f"segments left by {name}"

    for out in reports:
        link = dict(zip(*[iter(out.split("source udp: ")[1].splitlines()[0].split())] * 2))
        counts = {k: int(v.replace(",", "")) for k, v in link.items()}
        assert counts["gaps"] > 0 and counts["retransmissions"] > 0, out
        assert counts["lost"] == 0, out
    published = np.load(tmp_path / "pub.npy")
    names_ = symbol_names(SYMBOLS)
    for k, host in enumerate(("s1", "s2")):
        got = np.load(tmp_path / f"{host}.npy")
        mine = np.array([fnv1a64(n.encode()) % 2 == k for n in names_])
        assert mine.any() and (got["updates"][~mine] == 0).all()
        for field in got.dtype.names:
            if field not in L.WALL_CLOCK_FIELDS:
                assert np.array_equal(got[field][mine], published[field][mine],
                                      equal_nan=got[field].dtype.kind == "f"), \
                    f"{host}: {field} differs from the publisher's"


def shm_unlink(seg):
    from shmengine import shm
    shm.unlink(seg)
