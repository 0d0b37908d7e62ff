"""What the feed copies its sequenced stream to: a journal, a multicast group.

Both take each batch right after the feed routed it (``write(events)``), in
the feed process, so they see exactly the sequence the workers see.

    --journal DIR            append-only journal (the audit trail; ``shmengine
                             replay DIR`` feeds an engine from it)
    --publish udp://GROUP:PORT[?interface=IP&ttl=N&retransmit=PORT&history=N]
                             MoldUDP64 over multicast, with a retransmission
                             server on PORT (default: the group's port + 1)
                             answering from the last N events sent and, with
                             --journal, from the journal for anything older
"""
import os
import sys
import time

import numpy as np

from . import layout as L
from .config import ConfigError
from .export import save_json, write_atomically
from .sources import NAMES_FILE, STREAM_FILE, parse_udp

HEARTBEAT_S = 1.0  # a publisher with nothing to send says so this often
# After the end of session, requests are answered until none came for SERVE_QUIET_S
# (at most SERVE_AFTER_END_S): subscribers still filling gaps get their answers.
SERVE_QUIET_S = 0.5
SERVE_AFTER_END_S = 3.0


JOURNAL_FLUSH_S = 0.05  # a journal's partial block reaches the file at least this often


class Outputs:
    """The feed's outputs. A journal write that fails (a full disk, an I/O error)
    stops the journal, not the engine: its readers keep their stream. The error
    is one line on stderr, ``journaling`` in the link counters turns
    JOURNAL_FAILED, and the supervisor ends the run with exit code 1."""

    def __init__(self, journal=None, publisher=None, server=None, journal_state=None):
        self.journal = journal
        self.publisher = publisher
        self.server = server
        self.journal_state = journal_state if journal_state is not None else \
            L.JOURNAL_OFF if journal is None else L.JOURNAL_ON
        self.last_sent = self.last_flush = time.monotonic()
        self.journal_records = self.journal_flushes = 0

    def _journal(self, act):
        """Run act(journal); on a write error, stop the journal and say so."""
        try:
            act(self.journal)
        except OSError as exc:
            journal_failed(self.journal.path, self.journal_records, exc)
            try:
                self.journal.close()
            except OSError:
                pass
            self.journal = None
            self.journal_state = L.JOURNAL_FAILED
            return False
        return True

    def write(self, events):
        if self.journal is not None and self._journal(lambda j: j.append(events)):
            self.journal_records += len(events)
        if self.publisher is not None:
            self.publisher.send(events)
            self.last_sent = time.monotonic()

    def idle(self):
        """Between batches: flush the journal now and then, answer retransmission
        requests, heartbeat when quiet."""
        now = time.monotonic()
        if self.journal is not None and now - self.last_flush >= JOURNAL_FLUSH_S:
            if self._journal(lambda j: j.flush()):
                self.journal_flushes += 1
            self.last_flush = now
        if self.server is not None:
            self.server.poll()
        if self.publisher is not None and time.monotonic() - self.last_sent >= HEARTBEAT_S:
            self.publisher.heartbeat()
            self.last_sent = time.monotonic()

    def count(self, link):
        link["journaling"] = self.journal_state
        link["publishing"] = self.publisher is not None
        link["journal_records"] = self.journal_records
        link["journal_bytes"] = self.journal_records * L.EVENT.itemsize
        link["journal_flushes"] = self.journal_flushes
        if self.publisher is not None:
            for key in ("packets", "messages", "heartbeats"):
                link[f"pub_{key}"] = self.publisher.counters[key]
        if self.server is not None:
            link["pub_requests"] = self.server.counters["requests"]
            link["pub_resent"] = self.server.counters["replied_messages"]

    def close(self, beat=lambda: None):
        """Flush the journal; tell subscribers the session ended, then keep answering
        their requests for the gaps they still have until they go quiet."""
        if self.journal is not None:
            self._journal(lambda j: j.close())
        if self.publisher is not None:
            self.publisher.end()
        if self.server is not None:
            start = quiet = time.monotonic()
            while time.monotonic() - quiet < SERVE_QUIET_S and \
                    time.monotonic() - start < SERVE_AFTER_END_S:
                if self.server.poll(timeout=0.05):
                    quiet = time.monotonic()
                beat()
            self.server.close()
        if self.publisher is not None:
            self.publisher.close()


def journal_failed(path, records, exc):
    print(f"shmengine: journal {path} stopped after taking {records:,} events: "
          f"{exc.strerror or exc}; the engine runs on without it (`shmengine journal check "
          f"{path} --repair` keeps its whole blocks)", file=sys.stderr, flush=True)


def open_outputs(cfg, names):
    journal = publisher = server = None
    journal_state = L.JOURNAL_ON if cfg.journal else L.JOURNAL_OFF
    stream = {"venues": cfg.venues, "symbols": len(names)}  # what a replay or subscriber sizes by
    if cfg.journal:
        from .journal import JournalWriter
        try:
            os.makedirs(cfg.journal, exist_ok=True)
            # whole or not at all: a replay reads them to size its engine
            write_atomically(os.path.join(cfg.journal, NAMES_FILE),
                             lambda fh: fh.write("".join(f"{n}\n" for n in names).encode()))
            save_json(os.path.join(cfg.journal, STREAM_FILE), stream)
            journal = JournalWriter(cfg.journal, session=cfg.name[:10])
        except OSError as exc:
            journal_failed(cfg.journal, 0, exc)
            journal_state = L.JOURNAL_FAILED
    if cfg.publish:
        from .multicast import DEFAULT_HISTORY, Publisher, RetransmitServer
        opts = publish_options(cfg.publish)
        publisher = Publisher(opts["group"], opts["port"], interface=opts.get("interface"),
                              ttl=int(opts.get("ttl", 1)), session=cfg.name[:10],
                              history=int(opts.get("history", DEFAULT_HISTORY)))
        server = RetransmitServer(Recall(publisher, journal, cfg.journal),
                                  session=publisher.session,
                                  host=opts.get("interface") or "0.0.0.0",
                                  port=opts["retransmit"], names=names, stream=stream)
    return Outputs(journal, publisher, server, journal_state)


PUBLISH_OPTIONS = ("interface", "ttl", "retransmit", "history")


def publish_options(url):
    """The options of a --publish URL, checked (a ConfigError says what is wrong)."""
    opts = parse_udp(url, "publish")
    unknown = set(opts) - {"group", "port", *PUBLISH_OPTIONS}
    if unknown:
        raise ConfigError(f"publish {url!r}: unknown option {sorted(unknown)[0]!r} "
                          f"({', '.join(PUBLISH_OPTIONS)})")
    for key in ("ttl", "retransmit", "history"):
        if key in opts and not opts[key].isdigit():
            raise ConfigError(f"publish {url!r}: {key} must be a whole number")
    history = int(opts.get("history", 1))
    if history < 1 or history & (history - 1):
        raise ConfigError(f"publish {url!r}: history must be a power of two, got {history}")
    if int(opts.get("ttl", 1)) > 255:
        raise ConfigError(f"publish {url!r}: ttl must be at most 255")
    opts["retransmit"] = int(opts.get("retransmit", opts["port"] + 1))
    if not 1 <= opts["retransmit"] <= 65535:
        raise ConfigError(f"publish {url!r}: the retransmission port must be 1..65535 (by "
                          f"default the group's port + 1), got {opts['retransmit']}")
    return opts


class Recall:
    """What the retransmission server sends for a request: the publisher's recent
    history, and what is older from the journal, when the engine writes one."""

    def __init__(self, publisher, journal, path):
        self.publisher = publisher
        self.journal = journal
        self.path = path

    def __call__(self, seq, count):
        events = self.publisher.history(seq, count)
        if self.journal is None or (len(events) and int(events[0]["seq"]) == seq):
            return events
        older = count if not len(events) else int(events[0]["seq"]) - seq
        from .journal import JournalReader
        self.journal.flush()
        got, n = [], 0
        for batch in JournalReader(self.path).batches(start=seq):
            got.append(batch[:older - n])
            n += len(got[-1])
            if n >= older:
                break
        return np.concatenate(got) if got else events
