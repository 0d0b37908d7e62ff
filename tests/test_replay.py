"""A run's journal replays into an identical engine: same table, same stream."""
import os

import numpy as np

from shmengine import layout as L

from conftest import assert_same, cli, engine, final_state, unique, wait_for

EVENTS = 40_000  # the whole stream fits the broadcast ring


def test_replay_equals_the_original_run(tmp_path):
    journal = tmp_path / "journal"
    common = ("--symbols", 60, "--venues", 3, "--workers", 2, "--seed", 7)
    table, stream, _ = final_state(*common, "--events", EVENTS, "--journal", journal)
    assert sorted(os.listdir(journal))[-1] == "symbols.txt"
    replay_table, replay_stream, _ = final_state("--source", f"journal:{journal}",
                                                 "--workers", 1)
    assert len(stream) > EVENTS // 2
    assert_same(replay_stream, stream, L.WALL_CLOCK_FIELDS, "stream")
    assert_same(replay_table, table, L.WALL_CLOCK_FIELDS, "table")
    assert int(table["last_seq"].max()) == EVENTS - 1


def test_replay_command_paced(tmp_path):
    journal = tmp_path / "journal"
    cli("run", "--name", unique("jr"), "--symbols", 20, "--events", 20_000,
        "--journal", journal, "--rate", 0, check=True)
    res = cli("replay", journal, "--name", unique("jp"), "--speed", 1e6,
              check=True)
    assert "20,000 events" in res.stdout


def test_journal_flags_refuse_bad_use(tmp_path):
    journal = tmp_path / "journal"
    cli("run", "--name", unique("jb"), "--symbols", 10, "--events", 1000,
        "--journal", journal, check=True)
    for args, needle in (
            (("run", "--journal", journal), "already holds a stream"),
            (("run", "--speed", 2), "speed paces a replay"),
            (("run", "--take", "0/2"), "take picks symbols"),
            (("run", "--source", "nonsense"), "source must be"),
            (("run", "--source", "itch:/no/such/file"), "not found"),
            (("run", "--publish", "tcp://x"), "publish must look like"),
            (("replay", tmp_path), "not a journal")):
        res = cli(*args)
        assert res.returncode != 0 and needle in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr
    assert np.all([name.endswith((".shj", ".txt", ".json")) for name in os.listdir(journal)])


def test_a_journal_cut_off_mid_write_replays_its_good_prefix(tmp_path):
    journal = tmp_path / "journal"
    cli("run", "--name", unique("jc"), "--symbols", 20, "--events", 50_000,
        "--journal", journal, check=True)
    segment = journal / sorted(f for f in os.listdir(journal) if f.endswith(".shj"))[-1]
    size = segment.stat().st_size
    with open(segment, "r+b") as fh:  # power lost in the middle of the last block
        fh.truncate(size - 1000)
    res = cli("replay", journal, "--name", unique("jd"))
    assert res.returncode == 1, res.stderr  # it replayed less than the journal holds
    assert "Traceback" not in res.stderr
    kept = int(res.stderr.split("replayed the ")[1].split(" events")[0].replace(",", ""))
    assert 0 < kept < 50_000 and f"{kept:,} events" in res.stdout
    assert f"source journal: messages {kept:,}  bad 1" in res.stdout
    res = cli("journal", "check", journal)
    assert res.returncode == 1 and "truncated" in (res.stdout + res.stderr).lower()
    cli("journal", "check", journal, "--repair", check=True)
    assert cli("journal", "check", journal).returncode == 0
    res = cli("replay", journal, "--name", unique("je"), check=True)
    assert f"{kept:,} events" in res.stdout and "replayed the" not in res.stderr
    assert f"source journal: messages {kept:,}  bad 0" in res.stdout


def test_a_replay_takes_the_journal_s_venues(tmp_path):
    journal = tmp_path / "journal"
    table, stream, _ = final_state("--symbols", 12, "--venues", 7, "--seed", 3,
                                   "--events", 20_000, "--journal", journal)
    assert "written with 12 symbols on 7 venues" in cli("journal", "info", journal,
                                                         check=True).stdout
    # no --venues: the journal's 7, not the default 4 (which would drop a third of it)
    replay_table, replay_stream, _ = final_state("--source", f"journal:{journal}")
    assert_same(replay_stream, stream, L.WALL_CLOCK_FIELDS, "stream")
    assert_same(replay_table, table, L.WALL_CLOCK_FIELDS, "table")
    assert (stream["venue"] >= 4).any()
    res = cli("replay", journal, "--venues", 5)
    assert res.returncode == 2 and "holds events of 7 venues" in res.stderr, res.stderr
    assert "would drop those of venues 5..6" in res.stderr
    names = (journal / "symbols.txt").read_text().splitlines()
    (journal / "symbols.txt").write_text("".join(f"{n}\n" for n in names[:3]))
    res = cli("replay", journal)
    assert res.returncode == 2 and "names 3 symbols but the stream was written with 12" \
        in res.stderr, res.stderr
    (journal / "stream.json").write_text("{not json")
    res = cli("replay", journal)
    assert res.returncode == 2 and "cannot read stream.json" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_an_older_journal_s_foreign_events_are_counted_and_named_once(tmp_path):
    from shmengine.journal import JournalReader
    journal = tmp_path / "journal"
    cli("run", "--name", unique("jo"), "--symbols", 12, "--venues", 7, "--events", 20_000,
        "--journal", journal, check=True)
    (journal / "stream.json").unlink()  # as a journal written before it was recorded
    names = (journal / "symbols.txt").read_text().splitlines()
    (journal / "symbols.txt").write_text("".join(f"{n}\n" for n in names[:5]))
    events = np.concatenate(list(JournalReader(journal).batches()))
    foreign = (events["symbol"] >= 5) | (events["venue"] >= 4)
    assert (events["symbol"] >= 5).any()
    assert ((events["symbol"] < 5) & (events["venue"] >= 4)).any()
    res = cli("replay", journal, "--name", unique("jp"))  # 5 symbols, the default 4 venues
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.count("sends events of symbol id") == 1, res.stderr
    assert res.stderr.count("sends events of venue") == 1, res.stderr
    assert "beyond this engine's 5 symbols" in res.stderr and "names fewer symbols" in res.stderr
    assert f"bad events {int(foreign.sum()):,}," in res.stdout, res.stdout
    assert "20,000 events" in res.stdout


def test_status_shows_the_source_and_the_journal(tmp_path):
    journal = tmp_path / "journal"
    cli("run", "--name", unique("jf"), "--symbols", 20, "--events", 30_000,
        "--journal", journal, check=True)
    with engine("--source", f"journal:{journal}", "--speed", 1e-3, "--journal",
                tmp_path / "again") as proc:
        wait_for(lambda: "records" in cli("status", proc.name).stdout, 30, "journal counters")
        out = cli("status", proc.name, check=True).stdout
    assert "source journal: messages" in out and "journal:" in out
    done = int(out.split("source journal: messages ")[1].split()[0].replace(",", ""))
    assert 0 < done <= 30_000
