"""Run the engine itself, as the peers' reference: ``shmengine run`` in a
subprocess under a unique name, books only, for a fixed number of events,
saving its final snapshot table and its summary.

Whatever happens (failure, timeout, Ctrl-C), the engine is stopped and none
of its segments is left behind.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid

import numpy as np

from shmengine import shm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STOP_TIMEOUT_S = 30


class EngineFailed(RuntimeError):
    pass


def run(events, symbols, venues, workers, seed=1, rate=0.0, timeout_s=None):
    """The engine's summary dict (see ``supervisor.summary``) with its final
    table (``table.TABLE``) under ``"table"``."""
    name = f"peers{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="shme-peers-") as tmp:
        table_path = os.path.join(tmp, "table.npy")
        summary_path = os.path.join(tmp, "summary.json")
        cmd = [sys.executable, "-m", "shmengine.cli", "run", "--name", name, "--no-analytics",
               "--events", str(events), "--symbols", str(symbols), "--venues", str(venues),
               "--workers", str(workers), "--seed", str(seed), "--rate", repr(float(rate)),
               "--save-snapshot", table_path, "--summary-json", summary_path]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=ROOT)
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise EngineFailed(f"the engine did not finish {events:,} events within "
                               f"{timeout_s:.0f} s") from None
        finally:
            _stop(proc)
            for seg in shm.engine_segments(name):
                shm.unlink(seg)
        if proc.returncode != 0:
            raise EngineFailed(f"{' '.join(cmd)} exited with status {proc.returncode}:\n"
                               f"{out}{err}")
        with open(summary_path) as fh:
            summary = json.load(fh)
        summary["table"] = np.load(table_path)
    return summary


def _stop(proc):
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)  # the engine drains and removes its segments
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
