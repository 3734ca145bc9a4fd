"""Huawei 2023 (SoCC'23 "How Does It Function?") wide per-function time series on the real
specimen rows: wide to long, window starts (``time`` does not reset daily), metric from the
file or folder name, bad lines rejected whole with their line, exact accounting.

Expected values were computed independently with plain ``csv`` over the files in
../shared/traces/specimens.
"""

from __future__ import annotations

import json
import zipfile

import polars as pl
import pytest

from servetrace.loaders import huawei_2023, ingest, registry
from servetrace.loaders.source import FormatError
from tests.conftest import write

PRIVATE_MIN = "huawei_2023_private_requests_minute_partial.csv"
PRIVATE_SEC = "huawei_2023_private_requests_second_partial.csv"
PUBLIC_MIN = "huawei_2023_public_requests_minute_partial.csv"


@pytest.fixture(scope="module")
def spec(shared):
    return shared / "specimens"


def _per_function(counts: pl.DataFrame) -> dict[str, int]:
    agg = counts.group_by(pl.col("function").cast(pl.String)).agg(pl.col("count").sum())
    return dict(agg.rows())


def test_private_minute(spec):
    loaded = huawei_2023.load([spec / PRIVATE_MIN], "t")
    counts = loaded.tables["invocation_counts"]
    assert (loaded.rows_read, loaded.accepted, loaded.rejects.height) == (10, 10, 0)
    assert counts.height == 65 and counts["count"].sum() == 178_398
    assert _per_function(counts) == {"1": 1346, "190": 4283, "194": 170_403, "195": 151,
                                     "199": 244, "2": 749, "4": 69, "5": 69, "6": 1084}
    assert counts["window_s"].unique().to_list() == [60.0]
    # time counts from day 0 and does not reset: day 234's last minute starts at 20303940 s
    assert (counts["window_start_s"].min(), counts["window_start_s"].max()) == (0.0, 20_303_940.0)
    assert counts.row(0, named=True) == {"function": "4", "window_start_s": 0.0,
                                         "window_s": 60.0, "count": 6}
    assert "function_metrics" not in loaded.tables


def test_private_second_and_public(spec):
    sec = huawei_2023.load([spec / PRIVATE_SEC], "t").tables["invocation_counts"]
    assert (sec.height, sec["count"].sum()) == (85, 950_662)
    assert sec["window_s"].unique().to_list() == [1.0]
    assert sec["window_start_s"].max() == 20_303_999.0
    assert _per_function(sec)["33"] == 335_115
    pub = huawei_2023.load([spec / PUBLIC_MIN], "t").tables["invocation_counts"]
    assert (pub.height, pub["count"].sum()) == (31, 98_405)
    assert _per_function(pub) == {"2": 2, "3": 44_489, "4": 32_261, "6": 21_653}
    assert pub["window_start_s"].max() == 2_246_340.0  # day 25, minute 1439


def test_metric_from_folder_and_function_metrics(spec, tmp_path):
    """Official layout: the folder names the metric; non-request metrics go long."""
    folder = tmp_path / "private_dataset" / "cpu_usage_minute"
    folder.mkdir(parents=True)
    write(folder / "day_000.csv", "day,time,0,7\n0,0,12.5,\n0,60,,3.25\n")
    reqs = tmp_path / "private_dataset" / "requests_minute"
    reqs.mkdir()
    write(reqs / "day_000.csv", "day,time,0,7\n0,0,4.0,\n")
    loaded = huawei_2023.load([tmp_path / "private_dataset"], "t")
    fm = loaded.tables["function_metrics"]
    assert fm.select(pl.col("function").cast(pl.String), "window_start_s", "window_s",
                     "metric", "value", "unit").rows() == [
        ("0", 0.0, 60.0, "cpu_usage", 12.5, "%"), ("7", 60.0, 60.0, "cpu_usage", 3.25, "%")]
    assert loaded.tables["invocation_counts"]["count"].to_list() == [4]
    assert (loaded.rows_read, loaded.accepted) == (3, 3)
    # a bare day file outside such a folder: the metric must be given
    bare = write(tmp_path / "day_001.csv", "day,time,0\n1,86400,1\n")
    with pytest.raises(FormatError, match="cannot tell which metric"):
        huawei_2023.load([bare], "t")
    got = huawei_2023.load([bare], "t", metric="instances", resolution="minute")
    assert got.tables["function_metrics"].select("metric", "value", "unit").row(0) == (
        "instances", 1.0, "pods")


def test_bad_lines_rejected_whole(tmp_path):
    path = write(tmp_path / "requests_minute.csv", "\n".join([
        "day,time,0,1,2",
        "0,0,1.0,,2",           # good: 2 cells
        "0,60,1.0,2",           # 4 columns
        "0,120,abc,,1",         # garbage
        "0,180,,-3.0,",         # negative count
        "0,240,1.5,,",          # non-integer count
        "1,300,1,,",            # time not on day 1
        "0,330,1,,",            # off the minute grid
        "x,360,1,,",            # unparsable day
        "0,420,,,",             # no requests at all: accepted, no rows
        "0,480,5,6,7",          # good: 3 cells
    ]) + "\n")
    loaded = huawei_2023.load([path], "t")
    reasons = dict(loaded.rejects.select("line", "reason").rows())
    assert reasons == {
        3: "wrong number of columns: 4 (expected 5)",
        4: "unparsable value 'abc' for function 0 (column 3)",
        5: "negative value -3.0 for function 1 (column 4)",
        6: "non-integer count 1.5 for function 0 (column 3)",
        7: "time 300 s is not on day 1 (time counts seconds from the start of day 0)",
        8: "time 330 s is not on the 60 s window grid",
        9: "unparsable day: 'x'",
    }
    assert loaded.rejects.filter(pl.col("line") == 4)["raw"].item() == "0,120,abc,,1"
    assert loaded.rows_read == 10 == loaded.accepted + loaded.rejects.height
    counts = loaded.tables["invocation_counts"]
    assert counts.select(pl.col("function").cast(pl.String), "window_start_s", "count").rows() == [
        ("0", 0.0, 1), ("2", 0.0, 2), ("0", 480.0, 5), ("1", 480.0, 6), ("2", 480.0, 7)]


def test_wrong_header(tmp_path):
    path = write(tmp_path / "requests_minute.csv", "day,when,0\n0,0,1\n")
    with pytest.raises(FormatError, match=r"requests_minute\.csv:1: unexpected header"):
        huawei_2023.load([path], "t")
    dup = write(tmp_path / "requests_second.csv", "day,time,0,0\n0,0,1,1\n")
    with pytest.raises(FormatError, match="names function '0' twice"):
        huawei_2023.load([dup], "t")
    with pytest.raises(FormatError, match="no files given"):
        huawei_2023.load([], "t")


def test_detect_and_parts(spec):
    assert registry.detect(spec / PUBLIC_MIN) is huawei_2023
    assert not huawei_2023.detect(spec / "huawei_2025_timeseries_requests_minute_partial.csv")
    part = huawei_2023.DATASET.part("public/requests_minute")
    assert [f.name for f in part.files] == ["public_dataset.zip"]
    assert len(huawei_2023.DATASET.parts) == 12


def test_ingest(spec, store):
    rec = ingest(spec / PRIVATE_MIN, store=store, progress=False)[0]
    assert rec["trace"] == "huawei_2023/huawei_2023_private_requests_minute_partial"
    assert (rec["rows_read"], rec["rows_accepted"], rec["rejected"]) == (10, 10, 0)
    assert json.loads(rec["tables"]) == {"invocation_counts": 65}
    got = store.sql("SELECT count(*) n, sum(count) s, max(window_start_s) m, "
                    "count(DISTINCT function) f FROM invocation_counts")
    assert got.row(0) == (65, 178_398, 20_303_940.0, 9)


def test_official_zip_by_name(spec, tmp_path, monkeypatch, store):
    """A part by name: its zip (here from a mirror) is extracted and its name gives the metric."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "requests_minute.zip", "w") as zf:
        zf.writestr("requests_minute/day_000.csv", (spec / PRIVATE_MIN).read_text())
    monkeypatch.setenv("SERVETRACE_MIRROR", str(mirror))
    monkeypatch.setenv("SERVETRACE_CACHE", str(tmp_path / "cache"))
    [rec] = ingest("huawei_2023/private/requests_minute", store=store)
    direct = huawei_2023.load([spec / PRIVATE_MIN], "t")
    assert rec["trace"] == "huawei_2023/private/requests_minute"
    assert rec["rows"] == direct.tables["invocation_counts"].height
    total = store.sql("select sum(count) from invocation_counts").item()
    assert total == direct.tables["invocation_counts"]["count"].sum()


def test_folder_trace_id_tells_public_from_private(spec, tmp_path, store):
    """Both releases have a requests_minute folder; the parent folder decides the part."""
    for scope, name in (("public", PUBLIC_MIN), ("private", PRIVATE_MIN)):
        folder = tmp_path / scope / "requests_minute"
        folder.mkdir(parents=True)
        write(folder / "day_000.csv", (spec / name).read_text())
        [rec] = ingest(folder, store=store)
        assert rec["trace"] == f"huawei_2023/{scope}/requests_minute"
