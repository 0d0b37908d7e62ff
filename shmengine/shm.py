"""POSIX shared-memory segments with a checked header.

A segment is ``/dev/shm/shmengine.<engine>.<part>``, created mode 0600 by the
supervisor and attached by every other process. Attaching checks the magic,
the layout version, the kind, the size and the READY state, so a foreign,
stale or half-built segment is a clear error rather than garbage.

posix_ipc is used rather than multiprocessing.shared_memory: before Python
3.13 the latter registers attached segments with a resource tracker that
unlinks them when a non-creating process exits.
"""
import mmap
import os
import time

import numpy as np
import posix_ipc

from . import layout as L

PREFIX = "shmengine."
# Every page is mapped when a process maps a segment, not at its first touch on the
# hot path: a minor fault costs microseconds, and a fresh engine takes thousands.
MAP_FLAGS = mmap.MAP_SHARED | mmap.MAP_POPULATE
SHM_DIR = "/dev/shm"


class SegmentError(Exception):
    """A segment is missing, foreign, stale or half-built."""


class EngineNotRunning(SegmentError):
    """No engine of that name has segments on this host."""


def segment_name(engine, part):
    return f"/{PREFIX}{engine}.{part}"


def check_engine_name(engine):
    if not isinstance(engine, str) or not engine or len(engine) > 64 \
            or not all(c.isalnum() or c in "-_" for c in engine):
        raise ValueError(f"bad engine name {engine!r}: use 1-64 letters, digits, '-' or '_'")
    return engine


class Segment:
    """One mapped segment: ``buf`` is the mmap, ``header`` its SEGMENT_HEADER."""

    def __init__(self, name, buf, writable):
        self.name = name
        self.buf = buf
        self.writable = writable
        self.header = np.ndarray((), L.SEGMENT_HEADER, buffer=buf, offset=0)

    @property
    def size(self):
        return len(self.buf)

    def view(self, dtype, offset=0, count=None):
        """A numpy view (no copy) of the segment from ``offset``."""
        dtype = np.dtype(dtype)
        if count is None:
            count = (len(self.buf) - offset) // dtype.itemsize
        return np.ndarray((count,), dtype, buffer=self.buf, offset=offset)

    def record(self, dtype, offset):
        return np.ndarray((), dtype, buffer=self.buf, offset=offset)

    def mark_ready(self):
        self.header["state"] = L.STATE_READY

    def close(self):
        # Views into buf keep it exported; drop ours and let the mmap go when
        # the last view does.
        self.header = None
        try:
            self.buf.close()
        except BufferError:
            pass

    @classmethod
    def create(cls, name, kind, size):
        try:
            shm = posix_ipc.SharedMemory(name, flags=posix_ipc.O_CREX, mode=0o600, size=size)
        except posix_ipc.ExistentialError:
            raise SegmentError(f"segment {name} already exists: another engine of that name is "
                               f"running, or one died (run `shmengine cleanup`)") from None
        try:
            # Reserve the pages now: a tmpfs that fills up later would otherwise kill
            # the first process to touch an unbacked page (SIGBUS), mid-run.
            os.posix_fallocate(shm.fd, 0, size)
            buf = mmap.mmap(shm.fd, size, flags=MAP_FLAGS)
        except OSError as e:
            shm.unlink()
            raise SegmentError(f"cannot reserve {size:,} bytes for segment {name} in /dev/shm: "
                               f"{e.strerror}") from None
        finally:
            shm.close_fd()
        seg = cls(name, buf, True)
        h = seg.header
        h["magic"] = L.MAGIC
        h["version"] = L.LAYOUT_VERSION
        h["kind"] = kind
        h["size"] = size
        h["state"] = L.STATE_BUILDING
        h["creator_pid"] = os.getpid()
        h["created_ns"] = time.time_ns()
        return seg

    @classmethod
    def attach(cls, name, kind, writable=False):
        try:
            shm = posix_ipc.SharedMemory(name, read_only=not writable)
        except posix_ipc.ExistentialError:
            raise SegmentError(f"no segment {name}") from None
        try:
            size = os.fstat(shm.fd).st_size
            if size < L.SEGMENT_HEADER.itemsize:
                raise SegmentError(f"segment {name} is {size} bytes, too small to be a "
                                   f"shmengine segment (foreign or half-built)")
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
            buf = mmap.mmap(shm.fd, size, flags=MAP_FLAGS, prot=prot)
        finally:
            shm.close_fd()
        seg = cls(name, buf, writable)
        try:
            check_header(seg.header, name, kind, size)
        except SegmentError:
            seg.close()
            raise
        return seg


def check_header(h, name, kind, size):
    if int(h["magic"]) != L.MAGIC:
        raise SegmentError(f"segment {name} is not a shmengine segment (bad magic)")
    if int(h["version"]) != L.LAYOUT_VERSION:
        raise SegmentError(f"segment {name} has layout version {int(h['version'])}, this "
                           f"shmengine reads version {L.LAYOUT_VERSION}: stale engine? "
                           f"run `shmengine cleanup`")
    if int(h["kind"]) != kind:
        got = L.SEGMENT_KIND_NAMES.get(int(h["kind"]), int(h["kind"]))
        raise SegmentError(f"segment {name} is a {got} segment, expected "
                           f"{L.SEGMENT_KIND_NAMES[kind]}")
    if int(h["size"]) != size:
        raise SegmentError(f"segment {name} says it is {int(h['size'])} bytes but is {size}")
    if int(h["state"]) != L.STATE_READY:
        raise SegmentError(f"segment {name} is half-built (its creator has not finished or "
                           f"died): try again, or run `shmengine cleanup`")


def unlink(name):
    """Remove a segment; True if it existed."""
    try:
        posix_ipc.unlink_shared_memory(name)
        return True
    except posix_ipc.ExistentialError:
        return False


def engine_segments(engine):
    """Names of every segment of an engine present on this host."""
    prefix = f"{PREFIX}{engine}."
    try:
        entries = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return []
    return sorted("/" + e for e in entries if e.startswith(prefix))


def engine_names():
    """Names of the engines with a meta segment on this host."""
    try:
        entries = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return []
    return sorted(e[len(PREFIX):-len(".meta")] for e in entries
                  if e.startswith(PREFIX) and e.endswith(".meta"))
