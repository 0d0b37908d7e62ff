"""The journal: an append-only file record of the feed's sequenced event stream.

Everything downstream of the feed is a deterministic function of its output,
so a journal of that output is the engine's audit trail and what a replay or a
recovery starts from. It is written in whole batches (a few Python calls per
batch, never one per event), buffered into blocks, and each block carries its
own CRC, so a journal cut off by a crash or a power loss is detected and cut
back to its last whole block, like a kdb+ tickerplant log check (``-11!``).

Usage::

    with JournalWriter("/var/journal/prod", session="PROD000001") as jw:
        jw.append(events)              # EVENT records, seq contiguous
        jw.flush()                     # write the partial block (and fsync if asked)

    r = JournalReader("/var/journal/prod")
    for batch in r.batches():          # EVENT arrays, block by block, in seq order
        ...
    print(check("/var/journal/prod", repair=True))

Format (all integers little-endian; a C reader needs nothing else)
-------------------------------------------------------------------

A journal is a directory. Its segment files are named by the seq of the first
record they hold, as 20 decimal digits with the suffix ``.shj``
(``00000000000000000000.shj``); other files are ignored. Segments are read in
the order of that number; each starts where the one before ended.

A segment file is a 64-byte segment header followed by blocks::

    offset size  field
     0      8    magic           b"SHMEJNL1"
     8      2    format_version  FORMAT_VERSION (2; 1 is read too)
    10      2    record_size     64 (layout.EVENT.itemsize)
    12      4    layout_version  layout.LAYOUT_VERSION of the writer (EVENT layout)
    16      8    first_seq       seq of the first record in this segment (= file name)
    24      8    created_ns      wall clock when the segment was created, ns since the epoch
    32     10    session         ASCII, space-padded on the right (as MoldUDP64 sessions)
    42     18    zero
    60      4    header_crc      CRC of bytes 0..59

A block is a 64-byte block header followed by its payload::

    offset size  field
     0      4    magic           b"SJBK"
     4      4    count           records in the payload, >= 1
     8      8    first_seq       seq of the first record of the payload
    16      4    payload_bytes   count * record_size
    20      4    payload_crc     CRC of the payload
    24      8    written_ns      wall clock when the block was written, ns since the epoch
    32     28    zero
    60      4    header_crc      CRC of bytes 0..59

Every CRC of a segment, its header's and its blocks', is CRC-32C
(Castagnoli, as iSCSI and ext4; the SSE4.2 instruction computes it) in format
version 2, and zlib's CRC-32 in version 1. A journal may hold segments of
both: a writer continues an existing segment in that segment's version.

The payload is ``count`` EVENT records (``layout.EVENT``, 64 bytes each) with
seq ``first_seq .. first_seq + count - 1``. Each block's first_seq is the one
before's plus its count, across segments too. A block never spans two
segments. Every header and payload starts at a multiple of 64 bytes, so a
segment can be memory-mapped and its payloads viewed as EVENT arrays in place.
A segment with a header and no block is valid (it holds nothing); an empty
directory is an empty journal.

The writer writes a block with one ``writev`` of header and payload, so after
a crash the end of the last segment can hold a partial block; ``check`` finds
it (and any other damage) and ``check(repair=True)`` cuts it off.
"""
import fcntl
import os
import re
import struct
import time
import zlib
from dataclasses import dataclass, field

import google_crc32c
import numpy as np
from numba import njit

from . import layout as L

FORMAT_VERSION = 2


def _crc32c(data):
    if isinstance(data, np.ndarray):  # the library takes read-only buffers only
        data = data.view()
        data.flags.writeable = False
    return google_crc32c.value(data)


# a format version's CRC: zlib's CRC-32 runs at ~3-4 GB/s here, CRC-32C in
# hardware at ~24 GB/s, which takes ~20 ns a record off the feed's journal work
CRCS = {1: zlib.crc32, 2: _crc32c}
SEGMENT_MAGIC = b"SHMEJNL1"
BLOCK_MAGIC = b"SJBK"
SEGMENT_HEADER_SIZE = 64
BLOCK_HEADER_SIZE = 64
RECORD_SIZE = L.EVENT.itemsize
SESSION_SIZE = 10
SUFFIX = ".shj"
DEFAULT_SEGMENT_BYTES = 256 << 20
DEFAULT_BLOCK_RECORDS = 4096

# Both headers: 60 bytes of fields, then the CRC-32 of those 60 bytes.
_SEGMENT = struct.Struct("<8sHHIQq10s18x")
_BLOCK = struct.Struct("<4sIQIIq28x")
_NAME = re.compile(r"^(\d{20})\.shj$")

# Kinds of problem that check() reports.
TRUNCATED = "truncated"                # a header or payload cut off by the end of the file
GARBAGE = "garbage"                    # bytes after the last whole block that are not a block
BAD_BLOCK_HEADER = "bad block header"  # a block's magic is right but not the rest of its header
BAD_CRC = "bad crc"                    # a payload that does not match its CRC
SEQ_GAP = "seq discontinuity"          # a block or segment not starting where the last ended
BAD_HEADER = "bad segment header"      # a segment header that is damaged, or not this journal's


class JournalError(ValueError):
    """A journal on disk that cannot be used as asked: what is wrong and what to do."""


@dataclass
class Problem:
    """The first damage found: its kind, where the good data ends, and what was seen."""
    kind: str
    segment: str        # file name
    offset: int         # byte offset in that file where its good data ends
    seq: int            # the seq expected next (None before any header was read)
    detail: str

    def __str__(self):
        at = f" (next seq {self.seq})" if self.seq is not None else ""
        return f"{self.kind} in {self.segment} at byte {self.offset}{at}: {self.detail}"


@dataclass
class Block:
    offset: int         # of its block header in the segment file
    count: int
    first_seq: int
    payload_crc: int


@dataclass
class Segment:
    name: str
    path: str
    size: int                   # bytes in the file
    first_seq: int = None
    created_ns: int = None
    session: str = None
    layout_version: int = None
    format_version: int = None
    good_bytes: int = 0         # end of its last whole good block (0: no good header)
    blocks: list = field(default_factory=list)

    @property
    def records(self):
        return sum(b.count for b in self.blocks)


@dataclass
class Report:
    """What check() found (and, with repair, what it cut); ``str()`` reads as a report."""
    path: str
    segments: list
    problem: Problem = None
    later: list = field(default_factory=list)   # segment files after the damaged one
    verified: bool = False                       # payload CRCs were checked
    cut: list = field(default_factory=list)      # what repair did, one line each

    @property
    def blocks(self):
        return sum(len(s.blocks) for s in self.segments)

    @property
    def records(self):
        return sum(s.records for s in self.segments)

    @property
    def first_seq(self):
        for s in self.segments:
            if s.blocks:
                return s.blocks[0].first_seq
        return None

    @property
    def last_seq(self):
        for s in reversed(self.segments):
            if s.blocks:
                return s.blocks[-1].first_seq + s.blocks[-1].count - 1
        return None

    @property
    def ok(self):
        return self.problem is None

    def __str__(self):
        seqs = "no records" if self.first_seq is None else \
            f"seq {self.first_seq}..{self.last_seq}"
        lines = [f"journal {self.path}: {len(self.segments)} segment(s), {self.blocks} block(s), "
                 f"{self.records} record(s), {seqs}"]
        if self.problem is None:
            lines.append("ok" + (" (payload CRCs verified)" if self.verified else ""))
        else:
            lines.append(f"problem: {self.problem}")
            if self.later:
                lines.append(f"after it: {len(self.later)} more segment file(s): "
                             + ", ".join(self.later))
        lines.extend(f"repair: {line}" for line in self.cut)
        return "\n".join(lines)


def segment_name(first_seq):
    return f"{first_seq:020d}{SUFFIX}"


def _with_crc(fields, crc):
    return fields + crc(fields).to_bytes(4, "little")


def _segment_header(first_seq, session, created_ns, version):
    return _with_crc(_SEGMENT.pack(SEGMENT_MAGIC, version, RECORD_SIZE, L.LAYOUT_VERSION,
                                   first_seq, created_ns, session.encode("ascii")), CRCS[version])


def _block_header(count, first_seq, payload_crc, crc):
    return _with_crc(_BLOCK.pack(BLOCK_MAGIC, count, first_seq, count * RECORD_SIZE, payload_crc,
                                 time.time_ns()), crc)


def _crc_ok(raw, crc):
    return crc(raw[:60]) == int.from_bytes(raw[60:64], "little")


def _segment_names(path):
    if not os.path.isdir(path):
        raise JournalError(f"no journal at {path}: not a directory")
    return sorted((n for n in os.listdir(path) if _NAME.match(n)), key=lambda n: int(n[:20]))


def scan(path, verify="all"):
    """Walk a journal's headers and blocks up to the first problem; return a Report.

    ``verify`` says whose payload CRCs to check: "all", "last" (the last
    segment only) or "none" (headers only: fast, one read per block). Raises
    JournalError only for a path that is not a directory or a journal written
    with another EVENT layout; damage is reported, never raised.
    """
    path = os.fspath(path)
    names = _segment_names(path)
    report = Report(path, [], verified=verify == "all")
    expected = None
    first = None
    for i, name in enumerate(names):
        seg = Segment(name, os.path.join(path, name), 0)
        report.segments.append(seg)
        check_payloads = verify == "all" or (verify == "last" and i == len(names) - 1)
        with open(seg.path, "rb") as fh:
            seg.size = os.fstat(fh.fileno()).st_size
            problem = _scan_header(fh, seg, first, expected)
            if problem is None:
                if first is None:
                    first = seg
                expected = seg.first_seq
                problem, expected = _scan_blocks(fh, seg, expected, check_payloads)
        if problem is not None:
            report.problem = problem
            report.later = names[i + 1:]
            break
    return report


def _scan_header(fh, seg, first, expected):
    raw = fh.read(SEGMENT_HEADER_SIZE)

    def bad(kind, detail):
        return Problem(kind, seg.name, 0, expected, detail)

    if len(raw) < SEGMENT_HEADER_SIZE:
        return bad(TRUNCATED, f"segment header cut off ({len(raw)} of {SEGMENT_HEADER_SIZE} "
                              "bytes)")
    magic, fmt, rsize, lver, first_seq, created, session = _SEGMENT.unpack_from(raw)
    if magic != SEGMENT_MAGIC:
        return bad(BAD_HEADER, f"not a journal segment (magic {magic!r})")
    if fmt not in CRCS or rsize != RECORD_SIZE:
        return bad(BAD_HEADER, f"format version {fmt}, record size {rsize}: this shmengine "
                               f"reads versions {', '.join(map(str, CRCS))}, size {RECORD_SIZE}")
    if not _crc_ok(raw, CRCS[fmt]):
        return bad(BAD_HEADER, "segment header CRC mismatch")
    seg.first_seq, seg.created_ns, seg.layout_version = first_seq, created, lver
    seg.format_version = fmt
    seg.session = session.decode("ascii", "replace").rstrip(" ")
    if first is None and lver != L.LAYOUT_VERSION:
        raise JournalError(f"journal {os.path.dirname(seg.path)} holds events of layout version "
                           f"{lver}; this shmengine reads version {L.LAYOUT_VERSION}")
    if first is not None and (lver, seg.session) != (first.layout_version, first.session):
        return bad(BAD_HEADER, f"segment of session {seg.session!r} layout {lver} in a journal "
                               f"of session {first.session!r} layout {first.layout_version}")
    if first_seq != int(seg.name[:20]):
        return bad(BAD_HEADER, f"header says first seq {first_seq}, file name says "
                               f"{int(seg.name[:20])}")
    if expected is not None and first_seq != expected:
        return bad(SEQ_GAP, f"segment starts at seq {first_seq}, expected {expected}")
    seg.good_bytes = SEGMENT_HEADER_SIZE
    return None


def _scan_blocks(fh, seg, expected, check_payloads):
    crc_of = CRCS[seg.format_version]
    off = SEGMENT_HEADER_SIZE
    while off < seg.size:
        def bad(kind, detail):
            return Problem(kind, seg.name, off, expected, detail), expected

        rest = seg.size - off
        fh.seek(off)
        raw = fh.read(BLOCK_HEADER_SIZE)
        if len(raw) < BLOCK_HEADER_SIZE:
            return bad(TRUNCATED, f"block header cut off ({rest} of {BLOCK_HEADER_SIZE} bytes)")
        magic, count, first_seq, nbytes, crc, _ = _BLOCK.unpack_from(raw)
        if magic != BLOCK_MAGIC:
            return bad(GARBAGE, f"the {rest} byte(s) from here to the end of the file do not "
                                "start with a block header")
        if not _crc_ok(raw, crc_of):
            return bad(BAD_BLOCK_HEADER, "block header CRC mismatch")
        if count == 0 or nbytes != count * RECORD_SIZE:
            return bad(BAD_BLOCK_HEADER, f"block of {count} records with {nbytes} payload bytes")
        if first_seq != expected:
            return bad(SEQ_GAP, f"block starts at seq {first_seq}, expected {expected}")
        if rest < BLOCK_HEADER_SIZE + nbytes:
            return bad(TRUNCATED, f"block of {count} records (seq {first_seq}..) cut off: "
                                  f"{rest - BLOCK_HEADER_SIZE} of {nbytes} payload bytes")
        if check_payloads and crc_of(fh.read(nbytes)) != crc:
            return bad(BAD_CRC, f"payload of the block of {count} records (seq {first_seq}.."
                                f"{first_seq + count - 1}) does not match its CRC")
        seg.blocks.append(Block(off, count, first_seq, crc))
        off += BLOCK_HEADER_SIZE + nbytes
        expected += count
        seg.good_bytes = off
    return None, expected


def check(path, repair=False):
    """Verify every header, seq and payload CRC of a journal; return a Report.

    With ``repair=True``, cut the journal back to its last whole good block:
    the damaged segment is truncated there (removed if no whole block is left
    in it) and every later segment file is removed; ``report.cut`` says what
    was cut. A journal open by a writer is not repaired (JournalError).

        >>> print(check("/var/journal/prod", repair=True))
    """
    path = os.fspath(path)
    if not repair:
        return scan(path, "all")
    _segment_names(path)
    with _DirLock(path):
        report = scan(path, "all")
        if report.problem is not None:
            _cut(report)
    return report


def _cut(report):
    """Truncate the journal to the good data the report found (the directory is locked)."""
    bad = next(s for s in report.segments if s.name == report.problem.segment)
    for name in report.later:
        p = os.path.join(report.path, name)
        size = os.path.getsize(p)
        os.unlink(p)
        report.cut.append(f"removed {name} ({size} bytes), a later segment after the damage")
    if bad.blocks:
        with open(bad.path, "r+b") as fh:
            fh.truncate(bad.good_bytes)
            os.fsync(fh.fileno())
        report.cut.append(f"truncated {bad.name} from {bad.size} to {bad.good_bytes} bytes "
                          f"({bad.size - bad.good_bytes} bytes cut), after its last whole block "
                          f"(seq {report.last_seq})")
        bad.size = bad.good_bytes
    else:
        os.unlink(bad.path)
        report.segments.remove(bad)
        report.cut.append(f"removed {bad.name} ({bad.size} bytes): no whole block in it")
    _fsync_dir(report.path)


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _DirLock:
    """An exclusive flock on the journal directory: one writer (or repair) at a time."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise JournalError(f"journal {path} is open by a writer; stop it first") from None

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


class JournalReader:
    """Read a journal's records in seq order, block by block.

    Opening reads every segment and block header (no payload) up to the first
    damage: ``first_seq``, ``last_seq`` (None when empty), ``count`` and
    ``session`` describe that structurally whole prefix. ``batches()`` also
    checks each payload's CRC and stops before the first bad one; ``problem``
    then names it (it names the structural damage, if any, from the start).
    A reader sees the journal as it was when opened.

        >>> r = JournalReader("/var/journal/prod")
        >>> events = np.concatenate(list(r.batches()))   # small journals only
    """

    def __init__(self, path):
        self.report = scan(path, "none")
        self.path = self.report.path
        self.problem = self.report.problem
        self.first_seq = self.report.first_seq
        self.last_seq = self.report.last_seq
        self.count = self.report.records
        self.session = self.report.segments[0].session if self.report.segments else None

    def batches(self, start=None):
        """Yield EVENT arrays in seq order; from seq ``start`` on if given."""
        for seg in self.report.segments:
            if not seg.blocks or (start is not None and
                                  seg.blocks[-1].first_seq + seg.blocks[-1].count <= start):
                continue
            with open(seg.path, "rb") as fh:
                for b in seg.blocks:
                    if start is not None and b.first_seq + b.count <= start:
                        continue
                    events = np.empty(b.count, L.EVENT)
                    payload = events.view(np.uint8)
                    fh.seek(b.offset + BLOCK_HEADER_SIZE)
                    got = fh.readinto(payload)
                    if got != len(payload) or \
                            CRCS[seg.format_version](payload) != b.payload_crc:
                        kind = BAD_CRC if got == len(payload) else TRUNCATED
                        self.problem = Problem(kind, seg.name, b.offset, b.first_seq,
                                               f"payload of the block of {b.count} records "
                                               f"(seq {b.first_seq}..) "
                                               + ("does not match its CRC" if kind == BAD_CRC
                                                  else "is shorter than when the reader opened"))
                        return
                    if start is not None and b.first_seq < start:
                        events = events[start - b.first_seq:]
                    yield events


@njit(cache=True)
def _first_break(seq):
    """Index of the first seq that does not follow the one before it by 1; 0 if none.

    A kernel because numpy's diff-and-compare allocates twice and costs ~4 us
    on a 64-record batch, most of the append's budget at 5 M events/s.
    """
    one = np.uint64(1)
    for i in range(1, seq.shape[0]):
        if seq[i] - seq[i - 1] != one:   # uint64 throughout: exact for any seq
            return i
    return 0


def _session_bytes(session):
    if len(session) > SESSION_SIZE or not all(" " <= c <= "~" for c in session):
        raise ValueError(f"journal session must be at most {SESSION_SIZE} printable ASCII "
                         f"characters, got {session!r}")
    return session.ljust(SESSION_SIZE)


class JournalWriter:
    """Append batches of EVENT records to a journal directory.

    ``append(events)`` checks that seqs continue the journal without gap or
    overlap (ValueError naming the seqs), copies them into a block buffer and
    writes a block each time ``block_records`` are buffered (a batch that
    fills whole blocks is written straight from the caller's array).
    ``flush()`` writes the partial block, then fdatasyncs when ``fsync``.
    Segments rotate before a block would take one past ``segment_bytes``.

    Opening a journal that exists continues it after its last whole block:
    a block cut off at the end of the last segment (a crash mid-write) is
    truncated first, and ``recovered`` is the Report saying so; any other
    damage raises JournalError (run ``shmengine journal check DIR --repair``).
    ``first_seq`` is the seq the journal must start at (None: the first
    append's). ``session`` (10 ASCII characters, MoldUDP64 style) defaults to
    an existing journal's, or the UTC date for a new one.

        >>> with JournalWriter("/tmp/j", session="TEST") as jw:
        ...     jw.append(new_market(50, 2, seed=1).generate(1000))
    """

    def __init__(self, path, session=None, segment_bytes=DEFAULT_SEGMENT_BYTES,
                 block_records=DEFAULT_BLOCK_RECORDS, fsync=False, first_seq=None):
        if not 1 <= int(block_records) <= (1 << 32) // RECORD_SIZE - 1:
            raise ValueError(f"block_records must be in 1..{(1 << 32) // RECORD_SIZE - 1}, "
                             f"got {block_records}")
        min_bytes = SEGMENT_HEADER_SIZE + BLOCK_HEADER_SIZE + int(block_records) * RECORD_SIZE
        if int(segment_bytes) < min_bytes:
            raise ValueError(f"segment_bytes {segment_bytes} cannot hold a block of "
                             f"{block_records} records: at least {min_bytes}")
        self.path = os.fspath(path)
        self.segment_bytes = int(segment_bytes)
        self.block_records = int(block_records)
        self.fsync = bool(fsync)
        self.recovered = None
        self._fd = None
        self._failed = None
        self._buf = np.empty(self.block_records, L.EVENT)
        self._buf_bytes = self._buf.view(np.uint8)
        self._fill = 0
        os.makedirs(self.path, exist_ok=True)
        self._lock = _DirLock(self.path)
        try:
            self._open(session, first_seq)
        except BaseException:
            self._lock.release()
            raise

    def _open(self, session, first_seq):
        report = scan(self.path, "last")
        p = report.problem
        if p is not None:
            last = report.segments[-1]
            if p.kind != TRUNCATED or p.segment != last.name:
                raise JournalError(f"journal {self.path} is damaged: {p}; run `shmengine journal "
                                   f"check {self.path} --repair` to cut it back to its last "
                                   "whole block")
            _cut(report)
            self.recovered = report
        segs = report.segments
        old = segs[0].session if segs else None
        if session is not None and old is not None and session.rstrip(" ") != old:
            raise ValueError(f"journal {self.path} is of session {old!r}, not {session!r}")
        self.session = _session_bytes(session if session is not None else
                                      old if old is not None else time.strftime("%Y%m%d",
                                                                                time.gmtime()))
        self._next_seq = report.last_seq + 1 if report.last_seq is not None else \
            segs[-1].first_seq if segs else None
        if first_seq is not None:
            if self._next_seq is not None and self._next_seq != first_seq:
                raise ValueError(f"journal {self.path} continues at seq {self._next_seq}, "
                                 f"not {first_seq}")
            self._next_seq = int(first_seq)
        if segs:
            last = segs[-1]
            self._fd = os.open(last.path, os.O_WRONLY | os.O_APPEND)
            self._seg_bytes = last.size
            self._seg_blocks = len(last.blocks)
            self._crc = CRCS[last.format_version]  # blocks continue in their segment's version

    @property
    def next_seq(self):
        """The seq the next append must start with (None until the first, for a new journal)."""
        return self._next_seq

    def append(self, events):
        """Journal a batch of EVENT records whose seqs continue the journal."""
        if self._failed is not None:
            raise JournalError(f"journal {self.path}: an earlier write failed ({self._failed}); "
                               "reopen it to continue after its last whole block")
        if self._lock.fd is None:
            raise ValueError(f"journal {self.path} is closed")
        if not isinstance(events, np.ndarray) or events.dtype != L.EVENT or events.ndim != 1:
            raise ValueError("append takes a 1-d numpy array of layout.EVENT records")
        n = len(events)
        if n == 0:
            return
        seq = events["seq"]
        first = int(seq[0])
        expected = first if self._next_seq is None else self._next_seq
        if first != expected:
            what = "a gap" if first > expected else "an overlap"
            raise ValueError(f"journal {self.path}: batch starts at seq {first}, expected "
                             f"{expected} ({what} of {abs(first - expected)})")
        i = _first_break(seq) if n > 1 else 0
        if i:
            raise ValueError(f"journal {self.path}: seq {int(seq[i])} follows seq "
                             f"{int(seq[i - 1])} inside the batch (position {i})")
        self._next_seq = first + n
        data = (events if events.flags.c_contiguous else np.ascontiguousarray(events)) \
            .view(np.uint8)
        try:
            self._take(data, n, first)
        except OSError as exc:
            self._failed = exc
            raise

    def _take(self, data, n, first):
        i = 0
        cap = self.block_records
        if self._fill:
            k = min(n, cap - self._fill)
            self._buf_bytes[self._fill * RECORD_SIZE:(self._fill + k) * RECORD_SIZE] = \
                data[:k * RECORD_SIZE]
            self._fill += k
            i = k
            if self._fill == cap:
                self._write_block(self._buf_bytes, cap, first + i - cap)
                self._fill = 0
        while n - i >= cap:
            self._write_block(data[i * RECORD_SIZE:(i + cap) * RECORD_SIZE], cap, first + i)
            i += cap
        if i < n:
            self._buf_bytes[:(n - i) * RECORD_SIZE] = data[i * RECORD_SIZE:]
            self._fill = n - i

    def _write_block(self, payload, count, first_seq):
        size = BLOCK_HEADER_SIZE + count * RECORD_SIZE
        if self._fd is None or (self._seg_blocks and self._seg_bytes + size > self.segment_bytes):
            self._new_segment(first_seq)
        payload = payload[:count * RECORD_SIZE]
        _write_all(self._fd, [_block_header(count, first_seq, self._crc(payload), self._crc),
                              payload])
        self._seg_bytes += size
        self._seg_blocks += 1

    def _new_segment(self, first_seq):
        if self._fd is not None:
            if self.fsync:
                os.fdatasync(self._fd)
            os.close(self._fd)
            self._fd = None
        name = os.path.join(self.path, segment_name(first_seq))
        try:
            self._fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise JournalError(f"journal {self.path}: segment {name} already exists") from None
        _write_all(self._fd, [_segment_header(first_seq, self.session, time.time_ns(),
                                              FORMAT_VERSION)])
        self._crc = CRCS[FORMAT_VERSION]
        self._seg_bytes = SEGMENT_HEADER_SIZE
        self._seg_blocks = 0
        if self.fsync:
            _fsync_dir(self.path)

    def flush(self):
        """Write the buffered partial block; with ``fsync``, fdatasync the segment."""
        if self._lock.fd is None:
            return
        try:
            if self._fill:
                self._write_block(self._buf_bytes, self._fill, self._next_seq - self._fill)
                self._fill = 0
            if self.fsync and self._fd is not None:
                os.fdatasync(self._fd)
        except OSError as exc:
            self._failed = exc
            raise

    def close(self):
        """Flush and close; the journal can be reopened to continue."""
        if self._lock.fd is None:
            return
        try:
            if self._failed is None:
                self.flush()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _write_all(fd, parts):
    """writev every byte of parts (a regular file returns short only on errors like ENOSPC)."""
    total = sum(len(p) for p in parts)
    done = os.writev(fd, parts)
    if done < total:
        rest = memoryview(b"".join(bytes(p) for p in parts))[done:]
        while len(rest):
            rest = rest[os.write(fd, rest):]
