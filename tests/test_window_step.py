"""Windowed loaders take the step from the data: the Huawei per-datacentre layout (``date``,
5-minute steps) is loaded with 300 s windows, and a file whose step is irregular or contradicts
the declared one is rejected. Function ids are real ones from ../shared/traces/specimens.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from servetrace.loaders import huawei_2023, huawei_2025, ingest, registry
from servetrace.loaders.source import FormatError
from tests.conftest import write


@pytest.fixture(scope="module")
def funcs(shared) -> list[str]:
    path = shared / "specimens" / "huawei_2025_timeseries_requests_minute_partial.csv"
    return path.read_text().splitlines()[0].split(",")[2:5]


def _dated(tmp_path: Path, funcs: list[str], times: list[str]) -> Path:
    rows = [f"2016-07-01 {t},{i + 1},,{2 * i}" for i, t in enumerate(times)]
    folder = tmp_path / "requests"
    folder.mkdir(exist_ok=True)
    return write(folder / "dc1.csv", "\n".join(["date," + ",".join(funcs), *rows]) + "\n")


def test_per_datacentre_date_layout(funcs, tmp_path):
    path = _dated(tmp_path, funcs, ["00:05:00", "00:10:00", "00:15:00", "00:25:00"])
    assert huawei_2025.detect(path) and registry.detect(path) is huawei_2025
    loaded = huawei_2025.load([path], "t")
    counts = loaded.tables["invocation_counts"]
    assert counts.select("function", "window_start_s", "window_s", "count").rows() == [
        (funcs[0], 300.0, 300.0, 1), (funcs[2], 300.0, 300.0, 0),
        (funcs[0], 600.0, 300.0, 2), (funcs[2], 600.0, 300.0, 2),
        (funcs[0], 900.0, 300.0, 3), (funcs[2], 900.0, 300.0, 4),
        (funcs[0], 1500.0, 300.0, 4), (funcs[2], 1500.0, 300.0, 6)]
    assert loaded.origin == datetime(2016, 7, 1)
    assert loaded.notes["window_s"] == [300.0]
    assert (loaded.rows_read, loaded.accepted) == (4, 4)


def test_date_layout_ingest_records_window(funcs, tmp_path, store):
    path = _dated(tmp_path, funcs, ["00:05:00", "00:10:00"])
    [rec] = ingest(path, store=store)
    assert store.sql("select distinct window_s from invocation_counts").rows() == [(300.0,)]
    assert rec["rows_read"] == 2


def test_day_time_file_at_five_minute_steps_is_rejected(funcs, tmp_path):
    """The same series converted to day,time: not silently 60 s windows."""
    folder = tmp_path / "requests"
    folder.mkdir()
    path = write(folder / "day_00.csv", "day,time," + ",".join(funcs) + "\n"
                 "0,300,1,,0\n0,600,2,,2\n0,900,3,,4\n")
    with pytest.raises(FormatError, match=r"day_00\.csv: rows are 300 s apart, but the file "
                                          r"is declared to hold 60 s windows"):
        huawei_2025.load([path], "t")


@pytest.mark.parametrize("times", [["00:05:00", "00:10:00", "00:17:00"],
                                   ["00:00:00", "00:00:30", "00:01:15"]])
def test_irregular_step_is_rejected(funcs, tmp_path, times):
    path = _dated(tmp_path, funcs, times)
    with pytest.raises(FormatError, match=r"dc1\.csv: irregular time steps"):
        huawei_2025.load([path], "t")


def test_huawei_2023_minute_folder_with_hourly_rows(tmp_path):
    folder = tmp_path / "requests_minute"
    folder.mkdir()
    path = write(folder / "day_000.csv", "day,time,0,1\n0,0,1,2\n0,3600,3,\n0,7200,,4\n")
    with pytest.raises(FormatError, match=r"rows are 3600 s apart, but the file is declared "
                                          r"to hold 60 s windows"):
        huawei_2023.load([path], "t")


def test_declared_step_is_kept_and_recorded(shared, tmp_path):
    """The real specimen (per minute, with a gap between head and tail rows) loads as before."""
    path = shared / "specimens" / "huawei_2025_timeseries_requests_minute_partial.csv"
    loaded = huawei_2025.load([path], "t")
    assert loaded.tables["invocation_counts"]["window_s"].unique().to_list() == [60.0]
    assert loaded.notes["window_s"] == [60.0]
