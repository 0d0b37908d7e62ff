import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager

import numpy as np
import psutil
import pytest

from shmengine import shm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, timeout=120, check=False):
    """Run the shmengine CLI in a subprocess; returns CompletedProcess (text)."""
    res = subprocess.run([sys.executable, "-m", "shmengine.cli", *map(str, args)],
                         capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if check and res.returncode != 0:
        raise AssertionError(f"shmengine {' '.join(map(str, args))} failed "
                             f"({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def unique(prefix):
    """An engine name no other run uses."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def segments_of(name):
    return shm.engine_segments(name)


def wait_for(pred, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _attachable(name):
    import shmengine
    try:
        with shmengine.attach(name) as eng:
            return eng.state() in ("running", "stopped")
    except Exception:
        return False


def events_taken(name):
    """Events engine ``name`` took so far; 0 while it cannot be attached (yet)."""
    import shmengine
    try:
        with shmengine.attach(name) as eng:
            return eng.stats()["events"]
    except shm.SegmentError:  # (EngineNotRunning is one)
        return 0


@contextmanager
def engine(*args, name=None, wait_state=True):
    """Start `shmengine run` in a subprocess; stop it and check nothing is left."""
    name = name or f"t{uuid.uuid4().hex[:10]}"
    proc = subprocess.Popen([sys.executable, "-m", "shmengine.cli", "run", "--name", name,
                             *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    children = []
    try:
        if wait_state:
            def up():
                if proc.poll() is not None:
                    raise AssertionError(f"engine exited early ({proc.returncode}):\n"
                                         f"{proc.stdout.read()}\n{proc.stderr.read()}")
                return _attachable(name)
            wait_for(up, 120, f"engine {name} to start")
            children = psutil.Process(proc.pid).children(recursive=True)
        proc.name = name
        proc.children_at_start = children
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for c in children:
            try:
                c.wait(10)
            except psutil.NoSuchProcess:
                pass
            except psutil.TimeoutExpired:
                c.kill()
        left = segments_of(name)
        for seg in left:
            shm.unlink(seg)
        assert not left, f"segments left behind: {left}"


@pytest.fixture
def engine_name():
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    for seg in segments_of(name):
        shm.unlink(seg)


def assert_same(a, b, wall, what):
    """Every field of two record arrays equal but the ``wall``-clock ones (NaN equals NaN)."""
    assert len(a) == len(b), what
    for name in a.dtype.names:
        if name not in wall:
            assert np.array_equal(a[name], b[name], equal_nan=a[name].dtype.kind == "f"), \
                f"{what}: field {name} differs"


def drained_stream(eng):
    """Everything on an engine's broadcast ring from its start (it must fit the ring)."""
    sub = eng.subscribe(from_position=0)
    chunks = [sub.poll()]
    while len(chunks[-1]):
        chunks.append(sub.poll())
    return np.concatenate(chunks)


def final_state(*args):
    """(table, stream, stats) of an engine run with ``args`` once it drained (--linger)."""
    import shmengine
    with engine(*args, "--linger") as proc:
        with shmengine.attach(proc.name) as eng:
            wait_for(lambda: eng.state() == "stopped", 120, "the engine to drain")
            return eng.table(), drained_stream(eng), eng.stats()
