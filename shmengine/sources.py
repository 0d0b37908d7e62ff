"""Where the feed's events come from, and where it copies them.

    synthetic            the embedded market simulator (default; generated in numba)
    itch:FILE            a NASDAQ TotalView-ITCH 5.0 file (plain or gzip)
    journal:DIR          a journal this engine wrote (``--journal DIR``): a replay
    udp://GROUP:PORT     another engine's stream over multicast (MoldUDP64); options
                         retransmit=HOST:PORT, interface=IP, clock=shared,
                         symbols=publisher (its names and venue count)

Every source but the synthetic one is read in Python a batch at a time into
the feed's EVENT buffer; ``feed.send_batch`` stamps and routes it. Sources
that carry the engine's sequence numbers (a journal, a multicast link) keep
them, so a replay or a subscriber reproduces the original seqs; the others
are numbered from 0. ``--speed X`` replays a file or journal on its own
clock X times faster (0: as fast as possible).

The symbols must be known before the engine starts: an ITCH file names its
own (a first pass reads its stock directory), a journal keeps the names it
was written with, the synthetic market uses the synthetic names of
``--symbols``, and a multicast subscriber either the same (start it with the
publisher's ``--symbols``) or, with ``symbols=publisher``, the publisher's
own names, asked of its retransmission server (waiting up to
DIRECTORY_WAIT_S for the publisher to come up).
"""
import ipaddress
import os
import socket
import sys
from urllib.parse import parse_qs, urlsplit

import numpy as np
import psutil

from . import layout as L
from .config import ConfigError
from .market import symbol_names
from .segments import partition_map

NAMES_FILE = "symbols.txt"  # beside a journal's segments: one name per line, in id order
STREAM_FILE = "stream.json"  # and what the stream was written with: {"venues": V, "symbols": S}
DIRECTORY_WAIT_S = 30.0


def parse(spec):
    """(kind, argument) of a --source value; a ConfigError says what is wrong."""
    if spec in ("", "synthetic"):
        return L.SRC_SYNTHETIC, None
    if spec.startswith("itch:"):
        return L.SRC_ITCH, spec[len("itch:"):]
    if spec.startswith("journal:"):
        return L.SRC_JOURNAL, spec[len("journal:"):]
    if spec.startswith("udp://"):
        opts = parse_udp(spec, "source")
        unknown = set(opts) - {"group", "port", "retransmit", "interface", "clock", "symbols"}
        if unknown:
            raise ConfigError(f"source {spec!r}: unknown option {sorted(unknown)[0]!r} "
                              f"(retransmit=HOST:PORT, interface=IP, clock=local|shared, "
                              f"symbols=local|publisher)")
        if opts.get("clock", "local") not in ("local", "shared"):
            raise ConfigError(f"source {spec!r}: clock must be local or shared")
        if opts.get("symbols", "local") not in ("local", "publisher"):
            raise ConfigError(f"source {spec!r}: symbols must be local or publisher")
        if "retransmit" in opts:
            retransmit_address(opts)
        if opts.get("symbols") == "publisher" and "retransmit" not in opts:
            raise ConfigError(f"source {spec!r}: symbols=publisher asks the publisher's "
                              f"retransmission server: give retransmit=HOST:PORT")
        return L.SRC_UDP, opts
    raise ConfigError(f"source must be synthetic, itch:FILE, journal:DIR or udp://GROUP:PORT, "
                      f"got {spec!r}")


def parse_udp(url, what):
    """{'group', 'port', and the query's options} of udp://GROUP:PORT[?k=v&...]."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "udp" or not parts.hostname or not port:
        raise ConfigError(f"{what} must look like udp://239.1.1.1:5000, got {url!r}")
    try:
        group = ipaddress.IPv4Address(parts.hostname)
    except ValueError:
        group = None
    if group is None or not group.is_multicast:
        # a unicast address here would send the whole stream to that host
        raise ConfigError(f"{what} {url!r}: {parts.hostname} is not an IPv4 multicast group "
                          f"(224.0.0.0 to 239.255.255.255)")
    opts = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if "interface" in opts:
        check_interface(opts["interface"], f"{what} {url!r}")
    return {"group": parts.hostname, "port": port, **opts}


def check_interface(address, what):
    """An interface=IP option must name an IPv4 address of this host (of its network
    namespace): the socket calls that take it fail only once the engine runs."""
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        raise ConfigError(f"{what}: interface must be an IPv4 address, got {address!r}") \
            from None
    mine = sorted({a.address for addrs in psutil.net_if_addrs().values() for a in addrs
                   if a.family == socket.AF_INET})
    if address not in mine:
        raise ConfigError(f"{what}: interface {address} is not an address of this host "
                          f"(it has {', '.join(mine) or 'none'})")


def itch_midnight_ns(day):
    """Midnight in New York (where NASDAQ's ITCH times count from) of YYYY-MM-DD, ns since
    the epoch; 0 for ""."""
    if not day:
        return 0
    import datetime
    import zoneinfo
    try:
        date = datetime.date.fromisoformat(day)
    except ValueError:
        raise ConfigError(f"itch_date must be a day as YYYY-MM-DD, got {day!r}") from None
    midnight = datetime.datetime(date.year, date.month, date.day,
                                 tzinfo=zoneinfo.ZoneInfo("America/New_York"))
    return int(midnight.timestamp()) * 1_000_000_000


def names(cfg):
    """Symbol names of the run, in id order."""
    kind, arg = parse(cfg.source)
    if kind == L.SRC_ITCH:
        from .itch import scan_symbols
        if not os.path.exists(arg):
            raise ConfigError(f"ITCH file {arg} not found")
        if not os.path.isfile(arg):
            raise ConfigError(f"ITCH file {arg} is not a regular file")
        found = scan_symbols(arg, whole=cfg.itch_directory == "whole")
        if not found:
            raise ConfigError(f"ITCH file {arg} has no stock directory (R) message: no symbols")
        return found
    if kind == L.SRC_JOURNAL:
        path = os.path.join(arg, NAMES_FILE)
        try:
            with open(path) as fh:
                found = [line.strip() for line in fh if line.strip()]
        except FileNotFoundError:
            raise ConfigError(f"{arg} is not a journal of this engine (no {NAMES_FILE})") \
                from None
        stream = journal_stream(arg)
        if stream is not None and len(found) != stream["symbols"]:
            raise ConfigError(f"journal {arg}: {NAMES_FILE} names {len(found):,} symbols but "
                              f"the stream was written with {stream['symbols']:,}")
        return found
    if kind == L.SRC_UDP and arg.get("symbols") == "publisher":
        from .multicast import NetError, fetch_names
        try:
            return fetch_names(retransmit_address(arg), timeout=DIRECTORY_WAIT_S)
        except (NetError, OSError) as e:
            raise ConfigError(f"source {cfg.source}: {e.strerror or e} (is the publisher "
                              f"running, with its retransmission server there?)") from None
    return symbol_names(cfg.symbols)


def source_venues(cfg):
    """The venues of the run: an ITCH feed is one venue's; a subscriber with
    ``symbols=publisher`` takes the publisher's count (its names have just come from
    the same server); else ``cfg.venues`` (a replay's comes from its journal, in
    config.load)."""
    kind, arg = parse(cfg.source)
    if kind == L.SRC_ITCH:
        return 1
    if kind == L.SRC_UDP and arg.get("symbols") == "publisher":
        from .multicast import NetError, fetch_stream
        try:
            venues = fetch_stream(retransmit_address(arg)).get("venues")
        except (NetError, OSError) as e:
            raise ConfigError(f"source {cfg.source}: {e.strerror or e}") from None
        if type(venues) is not int or not 1 <= venues <= L.MAX_VENUES:
            raise ConfigError(f"source {cfg.source}: the publisher says it has {venues!r} "
                              f"venues (1..{L.MAX_VENUES} expected)")
        return venues
    return cfg.venues


def journal_stream(path):
    """What a journal's stream was written with, {"venues": V, "symbols": S}; None for a
    journal written before it was recorded."""
    import json
    try:
        with open(os.path.join(path, STREAM_FILE)) as fh:
            stream = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ConfigError(f"journal {path}: cannot read {STREAM_FILE}: "
                          f"{getattr(e, 'strerror', None) or e}") from None
    if not (isinstance(stream, dict) and all(
            type(stream.get(k)) is int and stream[k] >= 1 for k in ("venues", "symbols"))):
        raise ConfigError(f"journal {path}: {STREAM_FILE} must hold positive integers "
                          f"\"venues\" and \"symbols\", got {stream!r}")
    return stream


def retransmit_address(opts):
    """(host, port) of a udp source's retransmit=HOST:PORT option."""
    host, _, port = opts["retransmit"].rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"retransmit must be HOST:PORT (port 1..65535), got "
                          f"{opts['retransmit']!r}")
    return host, int(port)


def checked_names(cfg):
    """``names(cfg)``, refused when the engine cannot hold that many."""
    found = names(cfg)
    if len(found) > L.MAX_SYMBOLS:
        raise ConfigError(f"source {cfg.source} names {len(found):,} symbols; an engine holds "
                          f"at most {L.MAX_SYMBOLS:,}")
    return found


def taken(cfg, names_):
    """Which symbols a subscriber keeps: None (all), or a set of ids from ``take``:
    "K/N" (the K-th of N hash partitions, as hosts split a universe) or names."""
    take = cfg.take
    if not take:
        return None
    if "/" in take:
        try:
            k, n = (int(x) for x in take.split("/"))
        except ValueError:
            k = n = -1
        if not 0 <= k < n:
            raise ConfigError(f"take must be K/N with 0 <= K < N, or symbol names; got {take!r}")
        return set(np.flatnonzero(partition_map(names_, n) == k).tolist())
    ids = {s: i for i, s in enumerate(names_)}
    wanted = [s.strip() for s in take.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in ids]
    if unknown:
        raise ConfigError(f"take names unknown symbol {unknown[0]!r}")
    return {ids[s] for s in wanted}


class ItchSource:
    """An ITCH file's order messages as events, numbered here."""

    keep_seq = False
    keep_recv = False
    kind = L.SRC_ITCH

    def __init__(self, path, date_ns, n_symbols):
        from .itch import ItchReader
        self.reader = ItchReader(path, date_ns=date_ns, max_symbols=n_symbols)

    def read(self, buf):
        return self.reader.read(buf)

    @property
    def eof(self):
        return self.reader.eof

    def count(self, link):
        link["messages"] = sum(self.reader.counts.values())
        bad = self.reader.bad
        link["bad"] = sum(bad.values())
        link["bytes"] = self.reader.read_bytes
        # the file ends before its data does (cut off, or a damaged gzip stream)
        link["lost"] = int(bad["truncated"] > 0 or bad["gzip_error"] > 0)

    def close(self):
        damage = self.reader.damage()
        if damage:
            print(f"shmengine: warning: ITCH file {damage}", file=sys.stderr, flush=True)
        self.reader.close()


class JournalSource:
    """A journal's blocks, with their own seqs."""

    keep_seq = True
    keep_recv = False
    kind = L.SRC_JOURNAL

    def __init__(self, path):
        from .journal import JournalReader
        self.path = path
        self.reader = JournalReader(path)
        self.blocks = self.reader.batches()
        self.pending = None
        self.done = 0
        self.eof = False

    def read(self, buf):
        n = 0
        while n < len(buf):
            if self.pending is None or not len(self.pending):
                self.pending = next(self.blocks, None)
                if self.pending is None:
                    self.eof = True
                    break
            k = min(len(buf) - n, len(self.pending))
            buf[n:n + k] = self.pending[:k]
            self.pending = self.pending[k:]
            n += k
        self.done += n
        return n

    def count(self, link):
        link["messages"] = self.done
        link["bytes"] = self.done * L.EVENT.itemsize
        link["bad"] = int(self.reader.problem is not None)  # the block it stopped at
        link["lost"] = link["bad"]  # and the rest of the journal after it

    def close(self):
        self.blocks.close()
        if self.reader.problem is not None:
            print(f"shmengine: journal {self.path}: {self.reader.problem}; replayed the "
                  f"{self.done:,} events before it", file=sys.stderr, flush=True)


# what a subscriber counts and drops, shown together as "bad"
BAD_DATAGRAMS = ("wrong_session", "oversized", "truncated", "garbage", "beyond_window")


class UdpSource:
    """A multicast subscriber: in-order events, gaps filled, maybe a subset of symbols.

    With ``clock=shared`` in the URL (hosts on one clock: namespaces of one
    machine, or PTP), events keep the publisher's receive time, so this
    engine's latency figures run from the publisher's receive.
    """

    keep_seq = True
    kind = L.SRC_UDP

    def __init__(self, opts, symbols):
        self.keep_recv = opts.get("clock") == "shared"
        from .multicast import Subscriber
        retransmit = retransmit_address(opts) if "retransmit" in opts else None
        self.sub = Subscriber(opts["group"], opts["port"], interface=opts.get("interface"),
                              retransmit=retransmit, symbols=symbols)

    def read(self, buf):
        return self.sub.read(buf)

    @property
    def eof(self):
        return self.sub.ended

    def count(self, link):
        c = self.sub.counters
        for key in ("packets", "messages", "gaps", "requests", "retransmissions", "duplicates",
                    "late", "lost"):
            link[key] = c[key]
        link["bad"] = sum(c[k] for k in BAD_DATAGRAMS)
        link["bytes"] = c["messages"] * L.EVENT.itemsize

    def close(self):
        self.sub.close()


def open_source(cfg, names_):
    """The feed's reader for a non-synthetic source (opened in the feed process)."""
    kind, arg = parse(cfg.source)
    if kind == L.SRC_ITCH:
        return ItchSource(arg, itch_midnight_ns(cfg.itch_date), len(names_))
    if kind == L.SRC_JOURNAL:
        return JournalSource(arg)
    if kind == L.SRC_UDP:
        return UdpSource(arg, taken(cfg, names_))
    raise ValueError("the synthetic source is generated inside the feed's kernel")
