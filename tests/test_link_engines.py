"""Engines linked by multicast on this host (loopback): a subscriber that joins late
gets what the publisher no longer keeps in memory from the publisher's journal, and
its symbol names from the publisher."""
import random
import signal
import subprocess
import sys

import numpy as np

import shmengine
from shmengine import layout as L
from shmengine import shm

from conftest import ROOT, cli, engine, events_taken, segments_of, unique, wait_for
from test_mold import loopback_multicast  # noqa: F401  (a fixture)

SYMBOLS = 50


def test_late_subscriber_recovers_from_the_journal(loopback_multicast, tmp_path):  # noqa: F811
    group = f"239.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
    port = random.randint(20_000, 60_000)
    pub_table, sub_table = tmp_path / "pub.npy", tmp_path / "sub.npy"
    sub_name = unique("ls")
    with engine("--symbols", SYMBOLS, "--venues", 6, "--rate", 20_000, "--duration", 300,
                "--publish", f"udp://{group}:{port}?interface=127.0.0.1&history=1024",
                "--journal", tmp_path / "journal", "--save-snapshot", pub_table) as pub:
        wait_for(lambda: events_taken(pub.name) > 20_000, 60, "the publisher to be well ahead")
        # no --symbols or --venues: it takes the publisher's names and venues from the link
        sub = subprocess.Popen(
            [sys.executable, "-m", "shmengine.cli", "run", "--name", sub_name,
             "--source", f"udp://{group}:{port}?interface=127.0.0.1"
             f"&retransmit=127.0.0.1:{port + 1}&symbols=publisher",
             "--save-snapshot", str(sub_table)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # it joins live, then fetches the first 20,000 and more from the journal
            wait_for(lambda: events_taken(sub_name) > 30_000, 180, "the subscriber to catch up")
            with shmengine.attach(sub_name) as sub_eng, shmengine.attach(pub.name) as pub_eng:
                assert sub_eng.symbols.names == pub_eng.symbols.names
                assert len(sub_eng.symbols.names) == SYMBOLS
            cli("stop", pub.name, check=True)  # ends the session: the subscriber ends too
            out, err = pub.communicate(timeout=60)
            sub_out, sub_err = sub.communicate(timeout=120)
        finally:
            if sub.poll() is None:
                sub.send_signal(signal.SIGINT)
                try:
                    sub.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    sub.kill()
                    sub.communicate()
            for seg in segments_of(sub_name):
                shm.unlink(seg)
    assert pub.returncode == 0 and sub.returncode == 0, err + sub_err
    link = dict(zip(*[iter(sub_out.split("source udp: ")[1].splitlines()[0].split())] * 2))
    counts = {k: int(v.replace(",", "")) for k, v in link.items()}
    assert counts["retransmissions"] > 0 and counts["lost"] == 0, sub_out
    resent = int(out.split("publishing: ")[1].split("resent ")[1].split()[0].replace(",", ""))
    assert resent >= 19_000, out  # far more than the 1,024 it kept: the journal answered
    a, b = np.load(pub_table), np.load(sub_table)
    assert a["updates"].sum() > 0
    for field in a.dtype.names:
        if field not in L.WALL_CLOCK_FIELDS:
            assert np.array_equal(a[field], b[field], equal_nan=a[field].dtype.kind == "f"), field


def test_bad_publish_options():
    for url, needle in (("udp://239.1.1.1:5000?colour=red", "unknown option 'colour'"),
                        ("udp://239.1.1.1:5000?history=1000", "power of two"),
                        ("udp://239.1.1.1:5000?ttl=x", "ttl must be a whole number"),
                        ("udp://239.1.1.1", "publish must look like"),
                        ("udp://10.0.0.9:5000", "10.0.0.9 is not an IPv4 multicast group"),
                        ("udp://feedhost:5000", "feedhost is not an IPv4 multicast group")):
        res = cli("run", "--publish", url)
        assert res.returncode != 0 and needle in res.stderr, (url, res.stderr)
        assert "Traceback" not in res.stderr
    res = cli("run", "--source", "udp://239.1.1.1:5000?clock=atomic")
    assert res.returncode != 0 and "clock must be local or shared" in res.stderr
    for take, needle in (("3/2", "take must be K/N"), ("ZZZZ", "unknown symbol 'ZZZZ'")):
        res = cli("run", "--source", "udp://239.1.1.1:5000", "--take", take)
        assert res.returncode != 0 and needle in res.stderr and "Traceback" not in res.stderr
    for url, needle in (("udp://239.1.1.1:5000?symbols=publisher", "give retransmit=HOST:PORT"),
                        ("udp://239.1.1.1:5000?symbols=theirs&retransmit=127.0.0.1:9",
                         "symbols must be local or publisher"),
                        ("udp://239.1.1.1:5000?retransmit=9", "retransmit must be HOST:PORT")):
        res = cli("run", "--source", url)
        assert res.returncode != 0 and needle in res.stderr and "Traceback" not in res.stderr, \
            (url, res.stderr)
