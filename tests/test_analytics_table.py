"""The ana segment: its header tells readers the run's settings; rows read consistently."""
import uuid

import numpy as np

from shmengine import layout as L
from shmengine import shm
from shmengine.analytics import make_params
from shmengine.analytics_table import AnalyticsTable


def test_header_carries_the_settings_and_rows_start_empty():
    name = shm.segment_name(f"tana{uuid.uuid4().hex[:8]}", "ana")
    params = make_params(bar_intervals=(250_000_000,), vwap_window=30_000_000_000,
                         vwap_buckets=30, ofi_window=2_000_000_000, ofi_buckets=4,
                         rv_interval=500_000_000, rv_samples=7, depth_levels=3,
                         impact_delay=3_000_000_000, impact_pending=9, signal_ofi=1234,
                         signal_spread_bps=12.5, signal_crossed=False)
    table = AnalyticsTable.create(name, 5, params)
    try:
        h = table.header
        assert table.enabled and int(h["n_symbols"]) == 5
        assert h["bar_interval_ns"].tolist() == [250_000_000, 0]
        assert (int(h["vwap_window_ns"]), int(h["vwap_buckets"])) == (30_000_000_000, 30)
        assert (int(h["ofi_window_ns"]), int(h["ofi_buckets"])) == (2_000_000_000, 4)
        assert (int(h["rv_interval_ns"]), int(h["rv_samples"])) == (500_000_000, 7)
        assert (int(h["impact_delay_ns"]), int(h["impact_pending"])) == (3_000_000_000, 9)
        assert int(h["depth_levels"]) == 3 and int(h["signal_ofi"]) == 1234
        assert float(h["signal_spread_bps"]) == 12.5 and int(h["signal_crossed"]) == 0
        rows = table.table()
        assert rows["symbol"].tolist() == list(range(5))
        assert np.isnan(rows["mid"]).all() and (rows["bar_start"] == -1).all()
        reader = AnalyticsTable.attach(name)
        assert reader.row(3)["symbol"] == 3 and not reader.rows.flags.writeable
        reader.close()
    finally:
        table.close()
        shm.unlink(name)


def test_a_run_without_analytics_says_so():
    name = shm.segment_name(f"tana{uuid.uuid4().hex[:8]}", "ana")
    table = AnalyticsTable.create(name, 2, None)
    try:
        assert not table.enabled
        assert int(table.header["row_size"]) == L.ANALYTICS_SIZE
    finally:
        table.close()
        shm.unlink(name)
