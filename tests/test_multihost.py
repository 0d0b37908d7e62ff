"""Publisher and subscribers on separate hosts (network namespaces) with packet loss:
the link alone, then three whole engines (one publishing, two subscribing to half
the symbols each, ending with the publisher's rows for their symbols).

Needs root, iproute2 and nftables (Debian: apt-get install iproute2 nftables);
skipped otherwise, saying which is missing.
"""
import json
import os
import random
import select
import subprocess
import sys
import uuid

import numpy as np
import pytest

import shmengine
from shmengine import layout as L
from shmengine import shm
from shmengine.market import new_market, symbol_names
from shmengine.segments import fnv1a64

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import ROOT, segments_of, wait_for  # noqa: E402
from netns_peer import Hosts, missing_tools  # noqa: E402

PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netns_peer.py")
EVENTS = 200_000
SYMBOLS = 100
ENGINE_EVENTS = 300_000
SEED = 4
LOSS_PERCENT = 5

pytestmark = pytest.mark.skipif(missing_tools() is not None, reason=str(missing_tools()))


class Peers:
    """The role processes started in the namespaces; all are killed on exit."""

    def __init__(self, hosts):
        self.hosts = hosts
        self.procs = []

    def start(self, host, role, *args):
        proc = subprocess.Popen([*self.hosts.run_args(host), sys.executable, PEER, role, *args],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    @staticmethod
    def line(proc, timeout=120):
        """The next line proc prints, failing with its stderr if it dies or stays silent."""
        if select.select([proc.stdout], [], [], timeout)[0]:
            text = proc.stdout.readline()
            if text:
                return text.strip()
        proc.kill()
        raise AssertionError(f"{proc.args[4:6]} printed nothing: {proc.stderr.read()}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for f in (proc.stdin, proc.stdout, proc.stderr):
                f.close()


@pytest.fixture
def hosts():
    try:
        net = Hosts(["pub", "s1", "s2"], lossy=["s1", "s2"], loss_percent=LOSS_PERCENT)
        net.__enter__()
    except RuntimeError as e:
        pytest.skip(f"cannot build network namespaces here: {e}")
    try:
        yield net
    finally:
        net.remove()
        assert net.remaining() == []


def test_subscribers_recover_every_lost_packet(hosts, tmp_path):
    group = f"239.99.{random.randint(0, 255)}.{random.randint(1, 254)}"
    port = random.randint(20_000, 60_000)
    common = ["--group", group, "--port", str(port), "--events", str(EVENTS),
              "--seed", str(SEED)]
    pub_addr = hosts.address("pub")
    with Peers(hosts) as peers:
        pub = peers.start("pub", "publish", *common, "--interface", pub_addr,
                          "--retransmit-port", str(port + 1))
        assert peers.line(pub) == "ready"
        subs = []
        for rem, host in enumerate(["s1", "s2"]):
            sub = peers.start(host, "subscribe", *common, "--interface", hosts.address(host),
                              "--retransmit", f"{pub_addr}:{port + 1}",
                              "--symbols-mod", "2", "--symbols-rem", str(rem),
                              "--out", str(tmp_path / f"{host}.npy"), "--timeout", "150")
            assert peers.line(sub) == "ready"
            subs.append(sub)
        pub.stdin.write("go\n")
        pub.stdin.flush()
        reports = [json.loads(peers.line(sub, 180)) for sub in subs]
        pub.stdin.close()
        pub_report = json.loads(peers.line(pub, 30))

    events = new_market(100, 2, SEED).generate(EVENTS, seq0=0)
    assert pub_report["messages"] == EVENTS
    assert pub_report["server"]["replied_messages"] > 0
    for rem, report in enumerate(reports):
        got = np.load(tmp_path / f"s{rem + 1}.npy")
        want = events[events["symbol"] % 2 == rem]
        assert report["ended"] and report["next_seq"] == EVENTS, report
        assert len(got) == len(want) and got.tobytes() == want.tobytes()
        assert report["gaps"] > 0 and report["retransmissions"] > 0, report
        assert report["requests"] > 0 and report["lost"] == 0, report
        # the nftables rule really dropped about LOSS_PERCENT % of the stream
        stream_packets = pub_report["packets"]
        received = report["packets"] - report["retransmissions"] - report["heartbeats"]
        assert received < stream_packets * (1 - LOSS_PERCENT / 200), report


# ---------------------------------------------------------------- whole engines

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
                    "--events", ENGINE_EVENTS, "--rate", 300_000)
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
                shm.unlink(seg)
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

