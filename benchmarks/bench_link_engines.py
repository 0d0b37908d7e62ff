"""Engine to engine over multicast, across network namespaces (needs root, iproute2).

    python benchmarks/bench_link_engines.py [--events 2000000] [--rate 0] [--repeat 3]

A publisher engine (synthetic market, `--publish`) in one namespace, a
subscriber engine (`--source udp://...?clock=shared`) in another, veth legs
on a bridge, no loss injected. Reports the subscriber's events/s (its feed's
start to its last published row), the link's packets, and its latency from
the publisher's receive to the subscriber's published snapshot (one clock:
the namespaces share the machine's), beside the publisher's own latency in
the same run. Medians over --repeat runs.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from netns_peer import Hosts, missing_tools  # noqa: E402


def running(name):
    import shmengine
    try:
        with shmengine.attach(name) as eng:
            return eng.state() == "running"
    except Exception:
        return False


def engine(hosts, host, name, summary, *args):
    cmd = [*hosts.run_args(host), sys.executable, "-m", "shmengine.cli", "run", "--name", name,
           "--summary-json", summary, "--no-analytics", *map(str, args)]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def once(hosts, events, rate, symbols):
    group = f"239.97.{random.randint(0, 255)}.{random.randint(1, 254)}"
    port = random.randint(20_000, 60_000)
    pub_addr = hosts.address("pub")
    tag = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory() as tmp:
        sub_json, pub_json = os.path.join(tmp, "sub.json"), os.path.join(tmp, "pub.json")
        sub = engine(hosts, "sub", f"bls{tag}", sub_json, "--symbols", symbols, "--source",
                     f"udp://{group}:{port}?retransmit={pub_addr}:{port + 1}"
                     f"&interface={hosts.address('sub')}&clock=shared")
        deadline = time.monotonic() + 180
        while not running(f"bls{tag}"):  # the subscriber joins before the stream starts
            if sub.poll() is not None or time.monotonic() > deadline:
                sub.kill()
                raise SystemExit(f"the subscriber did not start: {sub.communicate()[1]}")
            time.sleep(0.1)
        pub = engine(hosts, "pub", f"blp{tag}", pub_json, "--symbols", symbols, "--events",
                     events, "--rate", rate,
                     "--publish", f"udp://{group}:{port}?interface={pub_addr}")
        try:
            for p in (pub, sub):
                out, err = p.communicate(timeout=300)
                if p.returncode != 0:
                    raise SystemExit(f"engine failed:\n{out}\n{err}")
        finally:
            for p in (pub, sub):
                if p.poll() is None:
                    p.kill()
                    p.wait()
        return json.load(open(sub_json)), json.load(open(pub_json))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--rate", type=float, default=0)
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    why = missing_tools(loss=False)
    if why:
        raise SystemExit(f"bench_link_engines: {why}")
    rows = []
    with Hosts(["pub", "sub"]) as hosts:
        for _ in range(args.repeat):
            sub, pub = once(hosts, args.events, args.rate, args.symbols)
            rows.append((sub, pub))
    med = lambda xs: statistics.median(xs)  # noqa: E731
    print(f"events {args.events:,}, rate {args.rate or 'as fast as possible'}, "
          f"{args.symbols} symbols, median of {args.repeat}")
    print(f"publisher events/s        {med([p['events_per_s'] for _, p in rows]):>14,.0f}")
    print(f"subscriber events/s       {med([s['events_per_s'] for s, _ in rows]):>14,.0f}")
    print(f"link packets              {med([s['link']['packets'] for s, _ in rows]):>14,.0f}")
    resent = med([s['link']['retransmissions'] for s, _ in rows])
    print(f"retransmitted messages    {resent:>14,.0f}")
    for p in ("50", "99", "99.9"):
        print(f"p{p:<5} publisher receive -> remote snapshot "
              f"{med([s['latency_ns'][p] for s, _ in rows]) / 1e3:>10,.1f} us   "
              f"(publisher's own snapshot "
              f"{med([q['latency_ns'][p] for _, q in rows]) / 1e3:,.1f} us)")


if __name__ == "__main__":
    main()
