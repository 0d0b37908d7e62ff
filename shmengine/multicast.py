"""The multicast link between hosts: MoldUDP64 publisher, retransmission server, subscriber.

The publisher frames sequenced EVENT records as MoldUDP64 packets (see
mold.py) and sends a whole batch of packets to the multicast group in one
sendmmsg. It keeps the last ``history`` events so that a RetransmitServer
can answer requests for what a subscriber missed. A Subscriber joins the
group, reads with recvmmsg, puts packets back in order, asks the server
(unicast, from a socket of its own) for every gap, and hands out each event
once, in order, optionally only those of its own symbols.

Publishing host::

    pub = Publisher("239.1.1.1", 31001, interface="10.99.0.1")
    server = RetransmitServer(pub, host="10.99.0.1", port=31002).start()
    pub.send(events)              # EVENT array, seq continuing from pub.next_seq
    pub.heartbeat()               # now and then while idle
    pub.end()                     # end of session
    server.close(); pub.close()

Receiving host::

    sub = Subscriber("239.1.1.1", 31001, interface="10.99.0.2",
                     retransmit=("10.99.0.1", 31002), symbols=range(0, 500))
    out = np.empty(4096, layout.EVENT)
    while not sub.ended:
        n = sub.read(out)         # the next events of those symbols, in seq order
    print(sub.counters)           # packets, gaps, requests, retransmissions, ...

A server given the publisher's symbol names also answers for them (the
directory of mold.py), so a subscriber can start with the publisher's names::

    RetransmitServer(pub, host="10.99.0.1", port=31002, names=names).start()
    names = fetch_names(("10.99.0.1", 31002))    # on the receiving host

Addresses are IPv4; ``interface`` is the address of the interface to send
from or to join on (None: the routing table's choice).
"""
import errno
import os
import select
import socket
import struct
import threading
import time

import numpy as np

from . import layout as L
from . import mold
from ._net import ffi, lib

DEFAULT_HISTORY = 1 << 20
RCVBUF = 16 << 20
SNDBUF = 4 << 20
MAX_DATAGRAM = 65536
ANSWER_WAIT = 1.0  # s after a request during which its answers are looked for
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)  # Linux values; Python names neither
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)


class NetError(OSError):
    """A socket call failed; the message names the call and the address."""


def _addr(host):
    """An IPv4 address as sendmmsg wants it: the 4 bytes in network order, read natively."""
    return struct.unpack("=I", socket.inet_aton(host))[0]


def _check(rc, what):
    if rc < 0:
        raise NetError(-rc, f"{what}: {os.strerror(-rc)}")
    return rc


def _set_buffer(sock, option, force, size):
    """Ask for a socket buffer of size bytes, beyond the sysctl cap when allowed (root)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, option, size)


class _Sender:
    """Packs EVENT rows into MoldUDP64 packets and sends them with sendmmsg."""

    def __init__(self, sock, session, mtu):
        self.sock = sock
        self.session = mold.session_bytes(session)
        self._session = np.frombuffer(self.session, np.uint8).copy()
        self.per_packet = mold.messages_per_packet(mtu)
        size = mold.HEADER_LEN + self.per_packet * mold.BLOCK_LEN
        self._out = np.empty(size * lib.SHME_NET_BATCH, np.uint8)
        self._lens = np.empty(lib.SHME_NET_BATCH, np.uint32)
        self._out_c = ffi.from_buffer("uint8_t[]", self._out)
        self._lens_c = ffi.from_buffer("uint32_t[]", self._lens)
        nothing = np.zeros((0, mold.MESSAGE_LEN), np.uint8)
        mold.pack(nothing, 0, 0, self._session, self.per_packet, self._out, self._lens)
        mold.consecutive(nothing, 0)  # compiled now rather than on the first send

    def send_rows(self, raw, addr, port):
        """Send every row of raw (EVENT bytes); returns the number of packets."""
        total = 0
        done = 0
        n = raw.shape[0]
        while done < n:
            packets, used, _ = mold.pack(raw, done, n - done, self._session, self.per_packet,
                                         self._out, self._lens)
            sent = _check(lib.shme_net_send(self.sock.fileno(), self._out_c, self._lens_c,
                                            packets, addr, port), "sendmmsg")
            if sent < packets:
                raise NetError(errno.EAGAIN, f"sendmmsg sent {sent} of {packets} packets")
            total += packets
            done += used
        return total

    def send_control(self, seq, count, addr, port):
        self.sock.sendto(mold.encode_control(self.session, seq, count),
                         (socket.inet_ntoa(struct.pack("=I", addr)), port))


class Publisher:
    """Sends the sequenced event stream to a multicast group as MoldUDP64 packets.

    group, port: the destination (239.0.0.0/8 for an organisation's own
    groups); interface: address of the interface to send from; ttl: router
    hops (1 stays on the subnet); session: the 10-byte session name (default
    from the clock); mtu: the link's MTU, packets are filled up to it;
    history: events kept for retransmission (a power of two); loop: whether
    subscribers on this host receive the packets too; first_seq: the seq the
    stream starts at (a publisher taking over a journal's stream).

    send() takes EVENT arrays whose seq continues from next_seq with no gap.
    """

    def __init__(self, group, port, interface=None, ttl=1, session=None,
                 mtu=mold.DEFAULT_MTU, history=DEFAULT_HISTORY, loop=True, first_seq=0):
        if history < 1 or history & (history - 1):
            raise ValueError(f"history must be a power of two, got {history}")
        self.group, self.port = group, int(port)
        self._dest = _addr(group)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, int(loop))
            if interface:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                                socket.inet_aton(interface))
                sock.bind((interface, 0))
            _set_buffer(sock, socket.SO_SNDBUF, SO_SNDBUFFORCE, SNDBUF)
        except OSError as e:
            sock.close()
            raise NetError(e.errno, f"cannot send to {group}:{port} from "
                                    f"{interface or 'the default interface'}: {e.strerror}")
        if session is None:
            session = f"{int(time.time() * 10) % 10**10:010d}"
        self._sender = _Sender(sock, session, mtu)
        self.session = self._sender.session
        self.mtu = mtu
        self.next_seq = int(first_seq)
        self._first_seq = self._kept_end = int(first_seq)
        self._history = np.zeros(history, L.EVENT)
        self._lock = threading.Lock()
        self.counters = {"packets": 0, "messages": 0, "heartbeats": 0}

    def send(self, events):
        """Frame and send events (EVENT array, seq = next_seq, next_seq + 1, ...).

        Returns the number of packets sent. Blocks while the socket's send
        buffer is full.
        """
        raw = mold.event_bytes(events)
        n = raw.shape[0]
        if n == 0:
            return 0
        if not mold.consecutive(raw, self.next_seq):
            raise ValueError(f"events must continue the stream at seq {self.next_seq} with no "
                             f"gap; got seq {int(events[0]['seq'])}..{int(events[-1]['seq'])}")
        self._remember(raw)
        packets = self._sender.send_rows(raw, self._dest, self.port)
        self.next_seq += n
        self.counters["packets"] += packets
        self.counters["messages"] += n
        return packets

    def heartbeat(self):
        """Tell subscribers the stream is alive and which seq comes next (send when idle)."""
        self._sender.send_control(self.next_seq + 1, mold.HEARTBEAT, self._dest, self.port)
        self.counters["heartbeats"] += 1

    def end(self, repeat=3):
        """Send the end-of-session packet repeat times (a lost one is no worse than a late one)."""
        for _ in range(repeat):
            self._sender.send_control(self.next_seq + 1, mold.END_OF_SESSION, self._dest,
                                      self.port)

    def history(self, seq, count):
        """A copy of the kept events seq..seq+count-1 (event seqs), clipped to what is kept."""
        size = self._history.shape[0]
        with self._lock:
            first = max(int(seq), self._kept_end - size, self._first_seq)
            last = min(int(seq) + int(count), self._kept_end)
            if last <= first:
                return np.empty(0, L.EVENT)
            idx = np.arange(first, last) & (size - 1)
            return self._history[idx]

    def _remember(self, raw):
        """Keep raw (EVENT rows as bytes: a plain copy, unlike a structured one)."""
        size = self._history.shape[0]
        kept = self._history.view(np.uint8).reshape(size, mold.MESSAGE_LEN)
        tail = raw[-size:]
        start = (self.next_seq + raw.shape[0] - tail.shape[0]) & (size - 1)
        first = min(size - start, tail.shape[0])
        with self._lock:
            kept[start:start + first] = tail[:first]
            kept[:tail.shape[0] - first] = tail[first:]
            # kept before sent: a request for a packet of this batch is answered
            self._kept_end = self.next_seq + raw.shape[0]

    def close(self):
        self._sender.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RetransmitServer:
    """Answers MoldUDP64 requests (unicast UDP) with the events asked for.

    source: a Publisher (its history and session) or a callable
    ``source(seq, count) -> EVENT array`` for event seqs seq..seq+count-1
    (fewer when not all are available), e.g. read from a journal; session is
    then required. max_reply caps the messages sent for one request (the
    subscriber asks again for the rest). ``names``: the symbol names it
    serves as the directory (None: it has none); ``stream``: a dict said to
    whoever asks what the stream holds (``{"venues": V, "symbols": S}``; None:
    it does not answer). Run it with start() (a thread) or call poll() from a
    loop of your own.
    """

    def __init__(self, source, host="127.0.0.1", port=0, session=None,
                 mtu=mold.DEFAULT_MTU, max_reply=4096, names=None, stream=None):
        if isinstance(source, Publisher):
            self._events, session = source.history, source.session
        elif callable(source) and session is not None:
            self._events = source
        else:
            raise ValueError("source is a Publisher, or a callable with a session")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
            _set_buffer(sock, socket.SO_SNDBUF, SO_SNDBUFFORCE, SNDBUF)
        except OSError as e:
            sock.close()
            raise NetError(e.errno, f"cannot listen for requests on {host}:{port}: {e.strerror}")
        self._sender = _Sender(sock, session, mtu)
        self.session = self._sender.session
        self.address = sock.getsockname()
        self.max_reply = max_reply
        self.mtu = mtu
        self.names = None if names is None else list(names)
        self.stream = None if stream is None else mold.encode_stream(stream)
        self.counters = {"requests": 0, "replied_packets": 0, "replied_messages": 0,
                         "unavailable": 0, "rejected": 0, "directory": 0}
        self._stop = threading.Event()
        self._thread = None

    def poll(self, timeout=0.0):
        """Answer every waiting request (waiting up to timeout s for one); return how many."""
        sock = self._sender.sock
        handled = 0
        ready = select.select([sock], [], [], timeout)[0]
        while ready:
            try:
                data, (host, port) = sock.recvfrom(mold.REQUEST_LEN + 1, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            self._answer(data, host, port)
            handled += 1
        return handled

    def _answer(self, data, host, port):
        req = mold.decode_request(data)
        if req is not None and req[0] == mold.DIRECTORY_SESSION and self.names is not None:
            self.counters["directory"] += 1
            self._sender.sock.sendto(mold.encode_names(self.names, req[1], self.mtu),
                                     (host, port))
            return
        if req is not None and req[0] == mold.STREAM_SESSION and self.stream is not None:
            self.counters["directory"] += 1
            self._sender.sock.sendto(self.stream, (host, port))
            return
        if req is None or req[0] != self.session:
            self.counters["rejected"] += 1
            return
        _, seq, count = req
        self.counters["requests"] += 1
        events = self._events(seq - 1, min(count, self.max_reply))
        if events.shape[0] == 0:
            self.counters["unavailable"] += 1
            return
        packets = self._sender.send_rows(mold.event_bytes(events), _addr(host), port)
        self.counters["replied_packets"] += packets
        self.counters["replied_messages"] += events.shape[0]

    def start(self):
        """Serve from a daemon thread until close(); returns self."""
        def serve():
            while not self._stop.is_set():
                self.poll(0.05)
        self._thread = threading.Thread(target=serve, name="mold-retransmit", daemon=True)
        self._thread.start()
        return self

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._sender.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _ask(server, what, timeout, retry):
    """A generator over the answers of a RetransmitServer at ``server`` (host, port):
    send() it a request, get the next datagram back. It asks again every ``retry``
    s without one (a lost datagram, or a server not up yet) and raises NetError
    when ``timeout`` s pass."""
    host, port = server[0], int(server[1])
    deadline = time.monotonic() + timeout
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.connect((host, port))
        request = yield
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NetError(errno.ETIMEDOUT, f"no {what} from {host}:{port} "
                               f"within {timeout:g} s")
            try:
                sock.send(request)
                if not select.select([sock], [], [], min(retry, left))[0]:
                    continue
                data = sock.recv(MAX_DATAGRAM)
            except ConnectionRefusedError:  # nothing listens there (yet)
                time.sleep(min(retry, max(left, 0)))
                continue
            request = (yield data) or request
    finally:
        sock.close()


def fetch_names(server, timeout=30.0, retry=0.2):
    """The symbol names a RetransmitServer at ``server`` (host, port) serves.

    Asks for them a packet at a time, again every ``retry`` s without an
    answer; raises NetError when the whole directory did not come within
    ``timeout`` s.
    """
    names = []
    ask = _ask(server, "symbol directory", timeout, retry)
    next(ask)
    try:
        while True:
            data = ask.send(mold.encode_request(mold.DIRECTORY_SESSION, len(names) + 1,
                                                mold.MAX_REQUEST))
            try:
                seq, got = mold.decode_names(data)
            except mold.MoldError:
                continue
            if seq != len(names) + 1:
                continue  # the late answer to an earlier request
            if got is None:
                return names
            names.extend(got)
    finally:
        ask.close()


def fetch_stream(server, timeout=5.0, retry=0.2):
    """What a RetransmitServer at ``server`` says its stream holds: a dict such as
    ``{"venues": 4, "symbols": 1000}``. NetError when no answer came in ``timeout`` s."""
    ask = _ask(server, "stream description", timeout, retry)
    next(ask)
    try:
        while True:
            try:
                return mold.decode_stream(ask.send(mold.encode_request(mold.STREAM_SESSION,
                                                                       1, 1)))
            except mold.MoldError:
                continue
    finally:
        ask.close()


class Subscriber:
    """Receives a MoldUDP64 event stream from a multicast group, gap free and in order.

    port 0 binds a free port (then ``port`` says which, for the publisher and
    for further subscribers on this host). interface: address of the
    interface to join on; retransmit: (host, port)
    of a RetransmitServer (None: gaps are only counted, then given up);
    symbols: the symbol ids read() returns (None: all; every seq is tracked
    either way); session: expected session (None: the first packet's);
    start: first event seq wanted (None: join live at the first packet);
    window: events buffered ahead of the next due; request_timeout (s) and
    retries: how long and how often a gap is asked for before it is given
    up and counted as lost.
    """

    def __init__(self, group, port=0, interface=None, retransmit=None, symbols=None,
                 session=None, start=0, window=1 << 17, request_timeout=0.05, retries=20,
                 batch=64, max_datagram=MAX_DATAGRAM):
        self.tracker = mold.GapTracker(session=session, start=start, window=window,
                                       symbols=symbols, request_timeout=request_timeout,
                                       retries=retries)
        self._group = self._retx = None
        try:
            self._group = self._join(group, int(port), interface)
            self.port = self._group.getsockname()[1]
            if retransmit is not None:
                self._retx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                if interface:
                    self._retx.bind((interface, 0))
                self._retx.connect((retransmit[0], int(retransmit[1])))
                _set_buffer(self._retx, socket.SO_RCVBUF, SO_RCVBUFFORCE, RCVBUF)
        except OSError as e:
            self.close()
            raise NetError(e.errno, f"cannot subscribe to {group}:{port} on "
                                    f"{interface or 'the default interface'}: {e.strerror}")
        batch = min(batch, lib.SHME_NET_BATCH)
        self._bufs = np.zeros((batch, max_datagram), np.uint8)
        self._lens = np.zeros(batch, np.uint32)
        self._bufs_c = ffi.from_buffer("uint8_t[]", self._bufs)
        self._lens_c = ffi.from_buffer("uint32_t[]", self._lens)
        self._flags = {False: np.zeros(batch, np.uint8), True: np.ones(batch, np.uint8)}
        self._answers_until = 0.0
        self._poller = select.poll()
        for s in (self._group, self._retx):
            if s is not None:
                self._poller.register(s, select.POLLIN)

    @staticmethod
    def _join(group, port, interface):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Only this socket's own groups: by default Linux delivers every group
        # any socket on the host joined on this port.
        sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        _set_buffer(sock, socket.SO_RCVBUF, SO_RCVBUFFORCE, RCVBUF)
        sock.bind((group, port))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                        socket.inet_aton(group) + socket.inet_aton(interface or "0.0.0.0"))
        return sock

    @property
    def counters(self):
        """What the tracker counted: the names in mold.COUNTERS (packets, gaps, lost, ...)."""
        return self.tracker.counters

    @property
    def ended(self):
        """True once the publisher ended the session and every event before it was read."""
        return self.tracker.ended

    @property
    def next_seq(self):
        return self.tracker.next_seq

    def read(self, out, timeout=0.1):
        """Fill out (EVENT array) with the next in-order events; return how many.

        Waits up to timeout seconds for something to return; 0 on timeout or
        once ended. Reads from the sockets only while out has room, so a slow
        reader leaves the backlog in the kernel's socket buffer.
        """
        n = self.tracker.read(out)
        deadline = time.monotonic() + timeout
        wait_ms = 0
        while n < out.shape[0]:
            got = self._receive(wait_ms)
            self._request()
            n += self.tracker.read(out[n:])
            if n and not got or self.ended:
                break
            left = deadline - time.monotonic()
            if not n and left <= 0:
                break
            wait_ms = 0 if n else max(1, min(int(left * 1000),
                                             int(self.tracker.request_timeout * 1000)))
        return n

    def _receive(self, wait_ms):
        """Drain the sockets; when nothing came, wait up to wait_ms for either.

        The request socket is read only while answers may still come (a
        second after the last request), which saves a system call per read
        on a clean stream.
        """
        retx = self._retx if time.monotonic() < self._answers_until else None
        got = self._drain(self._group, False) + self._drain(retx, True)
        if got == 0 and wait_ms > 0 and self._poller.poll(wait_ms):
            got = self._drain(self._group, False) + self._drain(self._retx, True)
        return got

    def _drain(self, sock, retransmitted):
        """Receive what is queued on sock.

        The stream is left queued in the kernel while the window is half full
        of events nobody read yet; answers to requests are always taken,
        since they are what fills the gap holding the window up.
        """
        if sock is None:
            return 0
        total = 0
        slot = self._bufs.shape[1]
        tracker = self.tracker
        while retransmitted or tracker.held < tracker.window.shape[0] // 2:
            n = lib.shme_net_recv(sock.fileno(), self._bufs_c, slot, self._lens_c,
                                  ffi.NULL, ffi.NULL, self._bufs.shape[0], 0)
            if n == -errno.ECONNREFUSED:
                continue  # an earlier request found no server; the next round asks again
            _check(n, "recvmmsg")
            if n == 0:
                break
            tracker.accept(self._bufs, self._lens, n, self._flags[retransmitted])
            total += n
            if n < self._bufs.shape[0]:
                break
        return total

    def _request(self):
        due = self.tracker.requests(time.monotonic())
        if not due or self._retx is None:
            return
        session = self.tracker.session
        self._answers_until = time.monotonic() + ANSWER_WAIT
        for seq, count in due:
            try:
                self._retx.send(mold.encode_request(session, seq, count))
            except OSError:
                pass  # unreachable server (ECONNREFUSED): the next round asks again

    def close(self):
        for s in (self._group, self._retx):
            if s is not None:
                s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
