"""The journal: byte-exact round trips, rotation, reopening, and every kind of damage."""
import argparse
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import zlib

from google_crc32c import value as crc32c

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shmengine import journal as J
from shmengine import journal_cli
from shmengine import layout as L
from shmengine.market import new_market

from conftest import ROOT, wait_for

BLOCK = 100                      # records per block in most tests
BLOCK_BYTES = J.BLOCK_HEADER_SIZE + BLOCK * L.EVENT.itemsize


@pytest.fixture(scope="module")
def events():
    ev = new_market(50, 2, seed=7).generate(5000)
    ev["seq"] = np.arange(len(ev), dtype=np.uint64)
    return ev


def write(path, ev, sizes=(37, 250, 1, 999), block_records=BLOCK, **kw):
    """Journal ev in batches cycling through sizes; return the segment file names."""
    with J.JournalWriter(path, session="TEST01", block_records=block_records, **kw) as jw:
        i = k = 0
        while i < len(ev):
            n = sizes[k % len(sizes)]
            jw.append(ev[i:i + n])
            i += n
            k += 1
    return segment_files(path)


def segment_files(path):
    return sorted(n for n in os.listdir(path) if n.endswith(J.SUFFIX))


def read_all(path):
    r = J.JournalReader(path)
    batches = list(r.batches())
    out = np.concatenate(batches) if batches else np.zeros(0, L.EVENT)
    return r, out


def assert_run(out, ev):
    """out is a contiguous run of ev's records, byte for byte."""
    s = int(out["seq"][0]) if len(out) else 0
    assert out.tobytes() == ev[s:s + len(out)].tobytes()


def test_round_trip_is_byte_identical(tmp_path, events):
    write(tmp_path, events)
    r, out = read_all(tmp_path)
    assert out.tobytes() == events.tobytes()
    assert (r.first_seq, r.last_seq, r.count, r.session) == (0, len(events) - 1, len(events),
                                                           "TEST01")
    assert r.problem is None
    report = J.check(tmp_path)
    assert report.ok and report.verified and report.records == len(events)
    assert report.blocks == len(events) // BLOCK


def test_flush_writes_partial_blocks_and_start_skips(tmp_path, events):
    with J.JournalWriter(tmp_path, session="S", block_records=BLOCK) as jw:
        jw.append(events[:30])
        jw.flush()
        assert J.JournalReader(tmp_path).count == 30
        jw.append(events[30:1000])
    r = J.JournalReader(tmp_path)
    first = next(r.batches())
    assert len(first) == 30
    tail = np.concatenate(list(r.batches(start=517)))
    assert tail.tobytes() == events[517:1000].tobytes()


def test_documented_format_reads_back(tmp_path, events):
    """A reader written from the module docstring alone sees the same records."""
    write(tmp_path, events[:1234], segment_bytes=40 * BLOCK_BYTES)
    records = []
    expected = 0
    for name in segment_files(tmp_path):
        data = (tmp_path / name).read_bytes()
        magic, fmt, rsize, lver, first_seq, _, session = struct.unpack_from("<8sHHIQq10s", data)
        assert (magic, fmt, rsize, lver) == (b"SHMEJNL1", 2, 64, L.LAYOUT_VERSION)
        assert first_seq == int(name[:20]) == expected and session == b"TEST01    "
        assert crc32c(data[:60]) == int.from_bytes(data[60:64], "little")
        off = 64
        while off < len(data):
            magic, count, bseq, nbytes, crc = struct.unpack_from("<4sIQII", data, off)
            assert magic == b"SJBK" and bseq == expected and nbytes == 64 * count
            assert crc32c(data[off:off + 60]) == int.from_bytes(data[off + 60:off + 64],
                                                                "little")
            payload = data[off + 64:off + 64 + nbytes]
            assert crc32c(payload) == crc
            records.append(payload)
            off += 64 + nbytes
            expected += count
    assert b"".join(records) == events[:1234].tobytes()


def test_rotation_across_segments(tmp_path, events):
    limit = J.SEGMENT_HEADER_SIZE + 7 * BLOCK_BYTES + 10
    names = write(tmp_path, events, segment_bytes=limit)
    assert len(names) == -(-len(events) // (7 * BLOCK))
    for name in names:
        assert os.path.getsize(tmp_path / name) <= limit
    starts = [int(n[:20]) for n in names]
    assert starts == list(range(0, len(events), 7 * BLOCK))
    _, out = read_all(tmp_path)
    assert out.tobytes() == events.tobytes()


def test_reopen_continues_and_keeps_session(tmp_path, events):
    write(tmp_path, events[:1550], segment_bytes=5 * BLOCK_BYTES + 64)
    with J.JournalWriter(tmp_path, block_records=BLOCK, segment_bytes=5 * BLOCK_BYTES + 64) as jw:
        assert jw.next_seq == 1550 and jw.recovered is None
        jw.append(events[1550:3000])
    r, out = read_all(tmp_path)
    assert out.tobytes() == events[:3000].tobytes() and r.session == "TEST01"
    assert J.check(tmp_path).ok
    with pytest.raises(ValueError, match="session 'TEST01', not 'OTHER'"):
        J.JournalWriter(tmp_path, session="OTHER")
    with pytest.raises(ValueError, match="continues at seq 3000, not 10"):
        J.JournalWriter(tmp_path, first_seq=10)


@pytest.mark.parametrize("start, message", [(150, "expected 100 \\(a gap of 50\\)"),
                                            (60, "expected 100 \\(an overlap of 40\\)")])
def test_gap_or_overlap_is_rejected(tmp_path, events, start, message):
    with J.JournalWriter(tmp_path, block_records=BLOCK) as jw:
        jw.append(events[:100])
        with pytest.raises(ValueError, match=f"starts at seq {start}, {message}"):
            jw.append(events[start:start + 10])
        jw.append(events[100:200])
    _, out = read_all(tmp_path)
    assert out.tobytes() == events[:200].tobytes()


def test_discontinuity_inside_a_batch_is_rejected(tmp_path, events):
    batch = events[:50].copy()
    batch["seq"][20:] += 3
    with J.JournalWriter(tmp_path) as jw:
        with pytest.raises(ValueError, match="seq 23 follows seq 19 inside the batch"):
            jw.append(batch)
        with pytest.raises(ValueError, match="layout.EVENT"):
            jw.append(np.zeros(3, L.RESULT))
        assert jw.next_seq is None
    assert J.JournalReader(tmp_path).count == 0


def test_first_seq_is_enforced(tmp_path, events):
    with J.JournalWriter(tmp_path, first_seq=0) as jw:
        with pytest.raises(ValueError, match="starts at seq 5, expected 0"):
            jw.append(events[5:9])


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="session"):
        J.JournalWriter(tmp_path, session="TOO-LONG-SESSION")
    with pytest.raises(ValueError, match="cannot hold a block"):
        J.JournalWriter(tmp_path, segment_bytes=1000, block_records=100)
    with pytest.raises(J.JournalError, match="not a directory"):
        J.JournalReader(tmp_path / "missing")
    with pytest.raises(J.JournalError, match="not a directory"):
        J.check(tmp_path / "missing")


def test_one_writer_at_a_time(tmp_path, events):
    with J.JournalWriter(tmp_path) as jw:
        jw.append(events[:10])
        with pytest.raises(J.JournalError, match="open by a writer"):
            J.JournalWriter(tmp_path)
        with pytest.raises(J.JournalError, match="open by a writer"):
            J.check(tmp_path, repair=True)


def test_empty_directory(tmp_path):
    r, out = read_all(tmp_path)
    assert (r.count, r.first_seq, r.last_seq, r.problem, len(out)) == (0, None, None, None, 0)
    report = J.check(tmp_path, repair=True)
    assert report.ok and report.records == 0 and report.cut == []


def last_block_offset(path):
    name = segment_files(path)[-1]
    return name, J.scan(path, "none").segments[-1].blocks[-1].offset


@pytest.mark.parametrize("cut", [1, 17, 59, 63, 64, 65, 64 + 64 * 37 + 5, BLOCK_BYTES - 1])
def test_truncated_last_block(tmp_path, events, cut):
    write(tmp_path, events[:2000], segment_bytes=6 * BLOCK_BYTES + 64)
    name, start = last_block_offset(tmp_path)
    os.truncate(tmp_path / name, start + cut)
    kept = 2000 - BLOCK

    report = J.check(tmp_path)
    assert report.problem.kind == J.TRUNCATED
    assert (report.problem.segment, report.problem.offset, report.problem.seq) == \
        (name, start, kept)
    assert report.records == kept and report.last_seq == kept - 1
    r, out = read_all(tmp_path)
    assert r.problem.kind == J.TRUNCATED and out.tobytes() == events[:kept].tobytes()

    repaired = J.check(tmp_path, repair=True)
    assert os.path.getsize(tmp_path / name) == start
    assert f"({cut} bytes cut)" in repaired.cut[0]
    assert J.check(tmp_path).ok
    _, out = read_all(tmp_path)
    assert out.tobytes() == events[:kept].tobytes()


def test_reopen_cuts_a_torn_tail_and_continues(tmp_path, events):
    write(tmp_path, events[:1000])
    name, start = last_block_offset(tmp_path)
    os.truncate(tmp_path / name, start + 64 + 300)
    with J.JournalWriter(tmp_path, block_records=BLOCK) as jw:
        assert jw.recovered.problem.kind == J.TRUNCATED and jw.next_seq == 900
        jw.append(events[900:1500])
    _, out = read_all(tmp_path)
    assert out.tobytes() == events[:1500].tobytes()


def corrupt(path, name, offset):
    with open(path / name, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x40]))


def test_flipped_payload_byte(tmp_path, events):
    names = write(tmp_path, events, segment_bytes=10 * BLOCK_BYTES + 64)
    seg = J.scan(tmp_path, "none").segments[2]
    block = seg.blocks[4]
    corrupt(tmp_path, names[2], block.offset + 64 + 1000)

    report = J.check(tmp_path)
    assert report.problem.kind == J.BAD_CRC and report.problem.segment == names[2]
    assert report.problem.offset == block.offset and report.last_seq == block.first_seq - 1
    assert report.later == names[3:]

    r, out = read_all(tmp_path)
    assert r.problem.kind == J.BAD_CRC and out.tobytes() == events[:block.first_seq].tobytes()

    repaired = J.check(tmp_path, repair=True)
    assert sum("a later segment after the damage" in line for line in repaired.cut) == \
        len(names) - 3
    assert segment_files(tmp_path) == names[:3]
    assert J.check(tmp_path).records == block.first_seq
    with J.JournalWriter(tmp_path, block_records=BLOCK) as jw:
        jw.append(events[block.first_seq:])
    _, out = read_all(tmp_path)
    assert out.tobytes() == events.tobytes()


def test_reopen_refuses_damage_before_the_tail(tmp_path, events):
    """Reopening verifies the last segment's payloads; damage there is not cut silently."""
    names = write(tmp_path, events[:1000])
    block = J.scan(tmp_path, "none").segments[-1].blocks[5]
    corrupt(tmp_path, names[-1], block.offset + 64 + 7)
    with pytest.raises(J.JournalError, match="bad crc .* check .* --repair"):
        J.JournalWriter(tmp_path)
    assert J.check(tmp_path).records == 500


def test_flipped_block_header_byte(tmp_path, events):
    names = write(tmp_path, events[:1000])
    seg = J.scan(tmp_path, "none").segments[0]
    corrupt(tmp_path, names[0], seg.blocks[3].offset + 10)
    report = J.check(tmp_path)
    assert report.problem.kind == J.BAD_BLOCK_HEADER and report.records == 300


@pytest.mark.parametrize("offset", [0, 13, 33, 61])
def test_bad_segment_header(tmp_path, events, offset):
    names = write(tmp_path, events, segment_bytes=10 * BLOCK_BYTES + 64)
    corrupt(tmp_path, names[1], offset)
    report = J.check(tmp_path)
    assert report.problem.kind == J.BAD_HEADER and report.problem.segment == names[1]
    assert report.records == 10 * BLOCK
    _, out = read_all(tmp_path)
    assert out.tobytes() == events[:10 * BLOCK].tobytes()
    repaired = J.check(tmp_path, repair=True)
    assert any(f"removed {names[1]}" in line and "no whole block" in line
               for line in repaired.cut)
    assert segment_files(tmp_path) == names[:1]


def test_bad_first_segment_header_leaves_nothing_readable(tmp_path, events):
    names = write(tmp_path, events[:500])
    corrupt(tmp_path, names[0], 3)
    r, out = read_all(tmp_path)
    assert r.count == 0 and len(out) == 0 and r.problem.kind == J.BAD_HEADER


def test_other_layout_version_is_refused(tmp_path, events):
    names = write(tmp_path, events[:500])
    head = bytearray((tmp_path / names[0]).read_bytes()[:64])
    head[12:16] = (L.LAYOUT_VERSION + 1).to_bytes(4, "little")
    head[60:64] = crc32c(bytes(head[:60])).to_bytes(4, "little")
    with open(tmp_path / names[0], "r+b") as fh:
        fh.write(head)
    with pytest.raises(J.JournalError, match=f"layout version {L.LAYOUT_VERSION + 1}"):
        J.JournalReader(tmp_path)


def test_missing_middle_segment_is_a_seq_discontinuity(tmp_path, events):
    names = write(tmp_path, events, segment_bytes=10 * BLOCK_BYTES + 64)
    os.unlink(tmp_path / names[2])
    report = J.check(tmp_path)
    assert report.problem.kind == J.SEQ_GAP and report.problem.segment == names[3]
    assert "starts at seq 3000, expected 2000" in report.problem.detail
    assert report.records == 2000


@pytest.mark.parametrize("tail, kind", [(b"\0" * 4096, J.GARBAGE), (b"junk" * 3, J.TRUNCATED),
                                        (b"J" * 200, J.GARBAGE)])
def test_trailing_bytes(tmp_path, events, tail, kind):
    names = write(tmp_path, events[:1000])
    with open(tmp_path / names[-1], "ab") as fh:
        fh.write(tail)
    report = J.check(tmp_path)
    assert report.problem.kind == kind and report.records == 1000
    J.check(tmp_path, repair=True)
    assert J.check(tmp_path).ok and J.JournalReader(tmp_path).count == 1000


@pytest.fixture(scope="module")
def pristine(events):
    """A three-segment journal, as {file name: bytes}."""
    d = tempfile.mkdtemp(prefix="shme-journal-")
    try:
        write(d, events[:1500], block_records=50,
              segment_bytes=J.SEGMENT_HEADER_SIZE + 10 * (64 + 50 * 64))
        return {n: open(os.path.join(d, n), "rb").read() for n in segment_files(d)}
    finally:
        shutil.rmtree(d)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_damage_never_crashes(pristine, events, data):
    names = sorted(pristine)
    d = tempfile.mkdtemp(prefix="shme-journal-")
    try:
        files = {n: bytearray(b) for n, b in pristine.items()}
        for _ in range(data.draw(st.integers(0, 3), label="flips")):
            name = data.draw(st.sampled_from(names))
            i = data.draw(st.integers(0, len(files[name]) - 1))
            files[name][i] ^= data.draw(st.integers(1, 255))
        if data.draw(st.booleans(), label="truncate"):
            name = data.draw(st.sampled_from(names))
            del files[name][data.draw(st.integers(0, len(files[name]))):]
        if data.draw(st.booleans(), label="drop a segment"):
            del files[data.draw(st.sampled_from(names))]
        for n, b in files.items():
            with open(os.path.join(d, n), "wb") as fh:
                fh.write(b)

        r, out = read_all(d)
        assert_run(out, events)
        assert len(out) <= r.count
        report = J.check(d)
        assert report.records == len(out)
        if files == pristine:
            assert report.ok and len(out) == 1500
        repaired = J.check(d, repair=True)
        assert repaired.records == len(out)
        again = J.check(d)
        assert again.ok and again.records == len(out)
        _, out2 = read_all(d)
        assert out2.tobytes() == out.tobytes()
    finally:
        shutil.rmtree(d)


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from shmengine.journal import JournalWriter
    from shmengine.market import new_market
    m = new_market(50, 2, seed=3)
    seq = 0
    with JournalWriter(sys.argv[1], block_records=64, segment_bytes=1 << 20) as jw:
        while True:
            ev = m.generate(1000, seq0=seq)
            jw.append(ev)
            jw.flush()
            seq += 1000
""")


def test_kill_9_mid_write_leaves_a_repairable_prefix(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=ROOT,
                            stderr=subprocess.PIPE)
    try:
        wait_for(lambda: sum(os.path.getsize(tmp_path / n) for n in segment_files(tmp_path))
                 > 3 << 20 or proc.poll() is not None, 60, "the writer to write 3 MiB")
        assert proc.poll() is None, proc.stderr.read().decode()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(segment_files(tmp_path)) >= 3
    J.check(tmp_path, repair=True)
    report = J.check(tmp_path)
    assert report.ok and report.first_seq == 0
    r, out = read_all(tmp_path)
    assert r.count == report.records > (3 << 20) // 128
    assert np.array_equal(out["seq"], np.arange(len(out), dtype=np.uint64))
    with J.JournalWriter(tmp_path) as jw:
        assert jw.next_seq == len(out)


def run_cli(*argv):
    p = argparse.ArgumentParser(prog="shmengine")
    journal_cli.add_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["journal", *map(str, argv)])
    return args.func(args)


def test_cli_check_repair_and_info(tmp_path, events, capsys):
    names = write(tmp_path, events[:1000], segment_bytes=4 * BLOCK_BYTES + 64)
    assert run_cli("info", tmp_path) == 0
    text = capsys.readouterr().out
    assert "session 'TEST01'" in text and all(n in text for n in names)
    assert "1000 record(s), seq 0..999" in text

    os.truncate(tmp_path / names[-1], os.path.getsize(tmp_path / names[-1]) - 5)
    assert run_cli("check", tmp_path) == 1
    assert "problem: truncated" in capsys.readouterr().out
    assert run_cli("check", tmp_path, "--repair") == 0
    assert "repair: truncated" in capsys.readouterr().out
    assert run_cli("check", tmp_path) == 0
    assert "900 record(s), seq 0..899" in capsys.readouterr().out


def test_cli_errors_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        run_cli("check", tmp_path / "nope")
    for command in ("info", "check"):  # an empty or mistyped directory is no journal
        with pytest.raises(ValueError, match="holds no journal segment"):
            run_cli(command, tmp_path)


def test_crc_is_castagnoli():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert J.CRCS[2](np.frombuffer(b"123456789", np.uint8).copy()) == 0xE3069283


def test_a_version_1_journal_reads_and_continues(tmp_path, events, monkeypatch):
    """Journals of format 1 (zlib CRC-32) stay readable; a writer continues their last
    segment in version 1 and starts new segments in version 2."""
    monkeypatch.setattr(J, "FORMAT_VERSION", 1)
    write(tmp_path, events[:700], segment_bytes=40 * BLOCK_BYTES)
    first = segment_files(tmp_path)
    data = (tmp_path / first[0]).read_bytes()
    assert struct.unpack_from("<H", data, 8)[0] == 1
    assert zlib.crc32(data[:60]) == int.from_bytes(data[60:64], "little")
    monkeypatch.setattr(J, "FORMAT_VERSION", 2)
    with J.JournalWriter(tmp_path, segment_bytes=40 * BLOCK_BYTES, block_records=BLOCK) as jw:
        jw.append(events[700:5000])
    names = segment_files(tmp_path)
    assert len(names) > len(first)
    versions = [struct.unpack_from("<H", (tmp_path / n).read_bytes(), 8)[0] for n in names]
    assert versions[:len(first)] == [1] * len(first) and set(versions[len(first):]) == {2}
    report = J.check(tmp_path)
    assert report.ok and report.problem is None, report
    r, out = read_all(tmp_path)
    assert out.tobytes() == events[:5000].tobytes()
