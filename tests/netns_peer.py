"""Hosts in network namespaces for the multicast tests and benchmark, and the roles they run.

``Hosts`` builds one namespace per host plus a hub namespace holding a
bridge; each host has one veth leg on the bridge, an address in
10.99.0.0/24 and a route for 239.0.0.0/8 through it. Nothing is created in
the namespace the tests run in, so deleting the namespaces removes every
veth, bridge and nftables table. Namespace names carry the creating
process's pid, so leftovers of a run that died are recognised and removed.
Needs root, iproute2 and (for loss) nftables.

Run as a script inside a namespace (``ip netns exec NS python netns_peer.py
ROLE ...``), it plays one role and prints one JSON line of what it counted:

    publish    waits for a line on stdin, publishes the synthetic stream
               new_market(100, 2, seed).generate(n) with seq 0..n-1, then
               sends end-of-session packets and answers retransmission
               requests until stdin closes
    subscribe  prints "ready" once joined, reads until the end of session,
               saves what it read to --out (an EVENT array, .npy) if given
    sendto / recvfrom   the same packets, one system call each (baseline)
"""
import argparse
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time

PREFIX = "shmemc-"
SUBNET = "10.99.0"


def _run(*cmd):
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.strip()}")
    return res.stdout


def missing_tools(loss=True):
    """Why namespaces with packet loss cannot be built here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    tools = ["ip"] + (["nft"] if loss else [])
    lacking = [t for t in tools if shutil.which(t) is None]
    if lacking:
        return f"needs {', '.join(lacking)} (Debian packages iproute2, nftables)"
    return None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers():
    """Delete namespaces of earlier runs whose creating process is gone."""
    for line in _run("ip", "netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(PREFIX):
            continue
        pid = name[len(PREFIX):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


class Hosts:
    """Namespaces joined by a bridge: Hosts(["pub", "s1"], lossy=["s1"]).

    address(host) is its IPv4 address, run_args(host) the command prefix
    that runs inside it. lossy hosts drop `loss_percent` % of the UDP
    datagrams they receive (nftables numgen on input). Use as a context
    manager: everything is removed on exit, whatever happened.
    """

    def __init__(self, hosts, lossy=(), loss_percent=5, mtu=1500):
        self.hosts = list(hosts)
        self.lossy = list(lossy)
        self.loss_percent = loss_percent
        self.mtu = mtu
        self.tag = f"{PREFIX}{os.getpid()}-{os.urandom(2).hex()}"
        self.hub = f"{self.tag}-hub"

    def ns(self, host):
        return f"{self.tag}-{host}"

    def address(self, host):
        return f"{SUBNET}.{self.hosts.index(host) + 1}"

    def run_args(self, host):
        return ["ip", "netns", "exec", self.ns(host)]

    def __enter__(self):
        try:
            self._build()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc):
        self.remove()

    def _build(self):
        clean_leftovers()
        hub = self.hub
        _run("ip", "netns", "add", hub)
        _run("ip", "-n", hub, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        _run("ip", "-n", hub, "link", "set", "br0", "mtu", str(self.mtu), "up")
        for i, host in enumerate(self.hosts):
            ns = self.ns(host)
            _run("ip", "netns", "add", ns)
            leg = f"leg{i}"
            _run("ip", "-n", hub, "link", "add", leg, "mtu", str(self.mtu), "type", "veth",
                 "peer", "name", "eth0", "mtu", str(self.mtu), "netns", ns)
            _run("ip", "-n", hub, "link", "set", leg, "master", "br0", "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
            _run("ip", "-n", ns, "route", "add", "239.0.0.0/8", "dev", "eth0")
            if host in self.lossy:
                nft = ["ip", "netns", "exec", ns, "nft"]
                _run(*nft, "add table inet shmemc")
                _run(*nft, "add chain inet shmemc input { type filter hook input priority 0; }")
                _run(*nft, "add rule inet shmemc input meta l4proto udp numgen random mod 100 "
                           f"< {self.loss_percent} drop")

    def remove(self):
        for name in [self.ns(h) for h in self.hosts] + [self.hub]:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)

    def remaining(self):
        """Namespaces of this object still present (none after remove())."""
        lines = _run("ip", "netns", "list").splitlines()
        names = {line.split()[0] for line in lines if line.strip()}
        return sorted(n for n in names if n.startswith(self.tag))


# ---- roles ---------------------------------------------------------------------------

def _stream(args):
    from shmengine.market import new_market
    return new_market(args.symbols_total, 2, args.seed).generate(args.events, seq0=0)


def _publish(args):
    from shmengine.multicast import Publisher, RetransmitServer
    events = _stream(args)
    with Publisher(args.group, args.port, args.interface, mtu=args.mtu) as pub, \
            RetransmitServer(pub, args.interface, args.retransmit_port, mtu=args.mtu) as server:
        server.start()
        print("ready", flush=True)
        sys.stdin.readline()
        t0 = time.perf_counter()
        for start in range(0, len(events), args.chunk):
            pub.send(events[start:start + args.chunk])
        seconds = time.perf_counter() - t0
        while not select.select([sys.stdin], [], [], 0.05)[0]:
            pub.end(repeat=1)
        sys.stdin.read()
        print(json.dumps({"seconds": seconds, **pub.counters, "server": server.counters}),
              flush=True)


def _subscribe(args):
    import numpy as np
    from shmengine import layout as L
    from shmengine.multicast import Subscriber
    host, port = args.retransmit.split(":")
    symbols = range(args.symbols_rem, args.symbols_total, args.symbols_mod)
    # kept whole only when saved; otherwise one small buffer, as a live consumer reads
    out = np.zeros(args.events + 1 if args.out else 8192, L.EVENT)
    n = 0
    with Subscriber(args.group, args.port, args.interface, retransmit=(host, int(port)),
                    symbols=symbols) as sub:
        print("ready", flush=True)
        deadline = time.monotonic() + args.timeout
        first = None
        while not sub.ended and time.monotonic() < deadline:
            got = sub.read(out[n:] if args.out else out, timeout=0.1)
            if got and first is None:
                first = time.perf_counter()
            n += got
        seconds = time.perf_counter() - first if first else 0.0
        if args.out:
            np.save(args.out, out[:n])
        print(json.dumps({"read": n, "ended": sub.ended, "seconds": seconds,
                          "next_seq": sub.next_seq, **sub.counters}), flush=True)
    return 0 if sub.ended else 3


def _sendto(args):
    from shmengine import mold
    from shmengine.multicast import SNDBUF, SO_SNDBUFFORCE
    events = _stream(args)
    packets = mold.encode_packets(events, b"BASELINE", args.mtu)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(args.interface))
    sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, SNDBUF)
    print("ready", flush=True)
    sys.stdin.readline()
    dest = (args.group, args.port)
    t0 = time.perf_counter()
    for p in packets:
        sock.sendto(p, dest)
    seconds = time.perf_counter() - t0
    end = b"BASELINE  " + (len(events) + 1).to_bytes(8, "big") + b"\xff\xff"
    while not select.select([sys.stdin], [], [], 0.05)[0]:
        sock.sendto(end, dest)
    sys.stdin.read()
    print(json.dumps({"seconds": seconds, "packets": len(packets)}), flush=True)


def _recvfrom(args):
    from shmengine.multicast import RCVBUF, SO_RCVBUFFORCE
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
    sock.bind((args.group, args.port))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                    socket.inet_aton(args.group) + socket.inet_aton(args.interface))
    sock.settimeout(args.timeout)
    buf = bytearray(65536)
    print("ready", flush=True)
    packets = messages = 0
    first = None
    while True:
        n = sock.recv_into(buf)
        count = int.from_bytes(buf[18:20], "big")
        if n == 20 and count == 0xFFFF:
            break
        if first is None:
            first = time.perf_counter()
        packets += 1
        messages += count
    seconds = time.perf_counter() - first if first else 0.0
    print(json.dumps({"seconds": seconds, "packets": packets, "messages": messages}), flush=True)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("role", choices=["publish", "subscribe", "sendto", "recvfrom"])
    p.add_argument("--group", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--interface", required=True)
    p.add_argument("--retransmit", default="")
    p.add_argument("--retransmit-port", type=int, default=0)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--symbols-total", type=int, default=100)
    p.add_argument("--symbols-mod", type=int, default=1)
    p.add_argument("--symbols-rem", type=int, default=0)
    p.add_argument("--mtu", type=int, default=1500)
    p.add_argument("--chunk", type=int, default=4096)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    return {"publish": _publish, "subscribe": _subscribe, "sendto": _sendto,
            "recvfrom": _recvfrom}[args.role](args) or 0


if __name__ == "__main__":
    sys.exit(main())
