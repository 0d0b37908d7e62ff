"""Files written whole or not at all."""
import os

import numpy as np
import pytest

from shmengine.export import save_json, save_table, write_atomically
from shmengine.table import TABLE


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "t.json"
    save_json(str(path), {"a": 1})

    def half_then_fail(fh):
        fh.write(b'{"a": ')
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomically(str(path), half_then_fail)
    assert path.read_text() == '{\n "a": 1\n}'
    assert os.listdir(tmp_path) == ["t.json"]


def test_a_refused_file_names_the_path_asked_for(tmp_path):
    target = tmp_path / "missing" / "t.npy"
    with pytest.raises(FileNotFoundError) as info:
        save_table(str(target), np.zeros(2, TABLE), ["A", "B"])
    assert info.value.filename == str(target)


@pytest.mark.parametrize("suffix", ["npy", "parquet"])
def test_tables_round_trip(tmp_path, suffix):
    import pyarrow.parquet as pq
    table = np.zeros(3, TABLE)
    table["volume"] = [1, 2, 3]
    path = str(tmp_path / f"t.{suffix}")
    save_table(path, table, ["A", "B", "C"])
    vol = np.load(path)["volume"] if suffix == "npy" else \
        pq.read_table(path).column("volume").to_numpy()
    assert list(vol) == [1, 2, 3]
    assert os.listdir(tmp_path) == [f"t.{suffix}"]
