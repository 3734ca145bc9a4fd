"""Azure Functions 2019 (Shahrad et al., ATC'20): the InVitro sample, bad input, several days.

Expected values were computed independently from the CSV files with Python's ``csv`` module.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import polars as pl
import pytest

from servetrace.loaders import azure_functions_2019, ingest, registry
from servetrace.loaders.source import FormatError
from tests.conftest import write

TRIGGERS = ["event", "http", "orchestration", "others", "queue", "storage", "timer"]
BY_TRIGGER = {"event": 2_169_319, "http": 60_601, "orchestration": 24_224, "others": 16,
              "queue": 670_036, "storage": 7_324, "timer": 106_382}


@pytest.fixture(scope="module")
def sample(shared):
    return azure_functions_2019.load([shared / "azure_functions_2019"], "t")


def test_invocation_counts(sample):
    c = sample.tables["invocation_counts"]
    assert c.height == 58_121  # non-zero function-minutes of 500 x 480
    assert c["count"].sum() == 3_037_902
    assert c["tenant"].n_unique() == 428
    assert c["function"].n_unique() == 500 and c["app"].n_unique() == 476
    assert sorted(c["trigger"].cast(pl.String).unique().to_list()) == TRIGGERS
    assert (c["count"] > 0).all() and (c["window_s"] == 60.0).all()
    # minute 480 of day 1 starts at 479 min; minute 959 at 958 min
    assert (c["window_start_s"].min(), c["window_start_s"].max()) == (28_740.0, 57_480.0)
    # function-major (file line order), minutes ascending within each function
    assert c.group_by("function").agg(pl.col("window_start_s").is_sorted().alias("s"))["s"].all()
    assert c.filter(pl.col("window_start_s") == 28_740.0).height == 101
    assert c.filter(pl.col("window_start_s") == 57_480.0).height == 109
    first, last = c.row(0, named=True), c.row(-1, named=True)
    assert first["function"].startswith("0951ccc96bb7542d")  # line 2: one call, minute 552
    assert (first["window_start_s"], first["count"]) == (33_060.0, 1)
    assert last["function"].startswith("d2c607b2e6b1e21b")  # line 501, minute 959
    assert (last["window_start_s"], last["count"]) == (57_480.0, 1)
    by = c.group_by(pl.col("trigger").cast(pl.String)).agg(pl.col("count").sum())
    assert dict(by.iter_rows()) == BY_TRIGGER


def test_functions(sample):
    f = sample.tables["functions"]
    assert f.height == 500 and f.null_count().sum_horizontal()[0] == 0
    first = f.row(0, named=True)
    assert first["function"].startswith("0951ccc96bb7542d")
    assert (first["trigger"], first["invocations"]) == ("http", 1)
    assert first["duration_mean_s"] == pytest.approx(2.638)
    assert first["duration_p50_s"] == pytest.approx(2.638)
    assert (first["memory_mean_mb"], first["memory_p1_mb"], first["memory_p100_mb"]) == (
        50.8, 31.2, 68.4)
    top = f.sort("invocations", descending=True).row(0, named=True)
    assert top["function"].startswith("1992918c23cc9224") and top["invocations"] == 1_915_521
    assert f["invocations"].sum() == 3_037_902
    assert f["memory_mean_mb"].sum() == pytest.approx(39_629.718018575826)


def test_accounting(sample):
    assert sample.rows_read == 1_500 == sample.accepted  # 500 lines in each of 3 files
    assert sample.rejects.is_empty()
    assert sample.notes["memory_layout"] == "function"


def test_detect_and_ingest_folder(shared, store):
    folder = shared / "azure_functions_2019"
    assert registry.detect(folder) is azure_functions_2019
    assert registry.detect(folder / "invocations.csv") is azure_functions_2019
    [rec] = ingest(folder, store=store, progress=False)
    assert rec["trace"] == "azure_functions_2019/sample"
    assert (rec["rows_read"], rec["rows_accepted"], rec["rejected"]) == (1500, 1500, 0)
    got = store.sql("SELECT sum(count) n, count(DISTINCT tenant) o, count(*) r "
                    "FROM invocation_counts")
    assert got.row(0) == (3_037_902, 428, 58_121)
    assert store.sql("SELECT count(*) FROM functions").item() == 500


# -- bad input ------------------------------------------------------------------------------
HEAD = "HashOwner,HashApp,HashFunction,Trigger,1,2,3\n"


def _inv(tmp_path: Path, body: str, day: str = "d01") -> Path:
    return write(tmp_path / f"invocations_per_function_md.anon.{day}.csv", HEAD + body)


def test_bad_invocation_lines(tmp_path):
    path = _inv(tmp_path, "o,a,f1,http,1,0,2\n"
                          "o,a,f2,timer,0,1\n"          # truncated
                          "o,a,f3,timer,0,1,1,9\n"      # one column too many
                          "o,a,f4,queue,0,-1,1\n"
                          "o,a,f5,queue,2.5,0,1\n"
                          "o,a,f6,queue,0,0,abc\n"
                          "o,a,,queue,1,1,1\n"
                          "o,a,f8,event,0,3,0\n")
    loaded = azure_functions_2019.load([path], "t")
    assert dict(loaded.rejects.select("line", "reason").iter_rows()) == {
        3: "wrong number of columns: 6 (expected 7)",
        4: "wrong number of columns: 8 (expected 7)",
        5: "negative count (minute 2): -1",
        6: "non-integer count (minute 1): 2.5",
        7: "unparsable count (minute 3): 'abc'",
        8: "missing HashFunction",
    }
    assert loaded.rejects["raw"][0] == "o,a,f2,timer,0,1"
    c = loaded.tables["invocation_counts"]
    assert c.select("function", "window_start_s", "count").rows() == [
        ("f1", 0.0, 1), ("f1", 120.0, 2), ("f8", 60.0, 3)]
    assert loaded.rows_read == 8 == loaded.accepted + loaded.rejects.height


def test_bad_numbers_on_the_fast_path(tmp_path):
    """A well-formed file is parsed as numbers; rejected rows still quote their text."""
    path = _inv(tmp_path, "o,a,f1,http,1,0,2\no,a,f2,http,1,-3,2\no,a,f3,http,0,0,1.50\n")
    loaded = azure_functions_2019.load([path], "t")
    assert loaded.rejects.select("line", "reason", "raw").rows() == [
        (3, "negative count (minute 2): -3", "o,a,f2,http,1,-3,2"),
        (4, "non-integer count (minute 3): 1.50", "o,a,f3,http,0,0,1.50")]


def test_bad_durations_and_memory(tmp_path):
    dur = write(tmp_path / "function_durations_percentiles.anon.d01.csv",
                ",".join(azure_functions_2019.DURATION_HEADER) + "\n"
                "o,a,f1,3,10,1.0,9.0,1,1,2,3,4,8,9\n"
                "o,a,f2,3,1.5,1.0,9.0,1,1,2,3,4,8,9\n"
                "o,a,f3,x,10,1.0,9.0,1,1,2,3,4,8,9\n"
                "o,a,f4,3,10,1.0,9.0,1,1,2,3,4,8,-9\n")
    mem = write(tmp_path / "app_memory_percentiles.anon.d01.csv",
                ",".join(azure_functions_2019.MEMORY_APP_HEADER) + "\n"
                "o,a,5,100.0,90,91,92,93,94,95,96,97\n"
                "o,b,5,100.0,90,91\n")
    loaded = azure_functions_2019.load([dur, mem], "t")
    assert loaded.rejects.select("source", "line", "reason").rows() == [
        (str(dur), 3, "non-integer Count: 1.5"),
        (str(dur), 4, "unparsable Average: 'x'"),
        (str(dur), 5, "negative percentile_Average_100: -9"),
        (str(mem), 3, "wrong number of columns: 6 (expected 12)"),
    ]
    f = loaded.tables["functions"]
    assert f.select("function", "duration_mean_s", "duration_p100_s", "memory_mean_mb").rows() \
        == [("f1", 0.003, 0.009, 100.0)]
    assert loaded.rows_read == 6 == loaded.accepted + 4


def test_wrong_header(tmp_path):
    path = write(tmp_path / "x.csv", "HashOwner,HashApp,HashFunction,Trigger,1,one\no,a,f,h,1,1\n")
    assert not azure_functions_2019.detect(path)
    with pytest.raises(FormatError, match="unexpected header"):
        azure_functions_2019.load([path], "t")


# -- several days -----------------------------------------------------------------------------
DUR_HEAD = ",".join(azure_functions_2019.DURATION_HEADER) + "\n"


def test_days_continue(tmp_path):
    d1 = _inv(tmp_path, "o,a,f1,http,1,0,2\n", "d01")
    d2 = _inv(tmp_path, "o,a,f1,http,0,4,0\no,a,f2,timer,1,0,0\n", "d02")
    write(tmp_path / "function_durations_percentiles.anon.d01.csv",
          DUR_HEAD + "o,a,f1,1000,1,1.0,1.0,1,1,1,1,1,1,1\n")
    write(tmp_path / "function_durations_percentiles.anon.d02.csv",
          DUR_HEAD + "o,a,f1,4000,3,1.0,9.0,1,1,2,3,4,8,9\no,a,f2,7,1,7.0,7.0,7,7,7,7,7,7,7\n")
    loaded = azure_functions_2019.load([tmp_path], "t")
    c = loaded.tables["invocation_counts"]
    assert c.select("function", "window_start_s", "count").rows() == [
        ("f1", 0.0, 1), ("f1", 120.0, 2),
        ("f1", 86_460.0, 4), ("f2", 86_400.0, 1)]  # day 2, minutes 2 and 1
    f = loaded.tables["functions"]
    assert f.select("function", "invocations", "duration_mean_s", "duration_p50_s").rows() == [
        ("f1", 7, pytest.approx((1 * 1000 + 3 * 4000) / 4 / 1000), None),  # two days: no pcts
        ("f2", 1, 0.007, 0.007)]
    assert loaded.notes["days"] == [1, 2]
    # only day 2: its minutes keep their place in the fortnight
    only2 = azure_functions_2019.load([d2], "t").tables["invocation_counts"]
    assert only2["window_start_s"].to_list() == [86_460.0, 86_400.0]
    assert d1.exists()


def test_day_file_is_a_part_and_same_day_twice_fails(tmp_path, store):
    d3 = _inv(tmp_path, "o,a,f1,http,1,0,2\n", "d03")
    [rec] = ingest(d3, store=store, progress=False)
    assert rec["trace"] == "azure_functions_2019/d03"
    assert store.sql("SELECT min(window_start_s) FROM invocation_counts").item() == 172_800.0
    copy = tmp_path / "other"
    copy.mkdir()
    twin = _inv(copy, "o,a,f9,http,1,0,2\n", "d03")
    with pytest.raises(FormatError, match="same day"):
        azure_functions_2019.load([d3, twin], "t")


def test_archive_extracted_per_day(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVETRACE_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "src" / "azurefunctions-dataset2019"
    src.mkdir(parents=True)
    _inv(src, "o,a,f1,http,1,0,2\n", "d01")
    _inv(src, "o,a,f2,http,0,5,0\n", "d02")
    archive = tmp_path / "azurefunctions-dataset2019.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(src, arcname="azurefunctions-dataset2019")
    assert azure_functions_2019.detect(archive)
    loaded = azure_functions_2019.load([archive], "azure_functions_2019/d02")
    assert loaded.tables["invocation_counts"].select("function", "window_start_s").rows() == [
        ("f2", 86_460.0)]
    assert len(list((tmp_path / "cache" / "extracted").rglob("*.csv"))) == 2
    with pytest.raises(FormatError, match="holds 14 days"):
        azure_functions_2019.load([archive], "mine")


def _reorder(src: Path, dst: Path, order: list[str]) -> Path:
    """``src`` (a real CSV) with its columns in ``order``, same rows."""
    pl.read_csv(src, infer_schema=False).select(order).write_csv(dst)
    return dst


def test_memory_file_owner_first_is_loaded_by_header(shared, tmp_path, sample):
    """The InVitro memory variant that starts HashOwner,HashApp,HashFunction,SampleCount,..."""
    folder = tmp_path / "azure_functions_2019"
    folder.mkdir()
    src = shared / "azure_functions_2019"
    for name in ("invocations.csv", "durations.csv"):
        (folder / name).write_bytes((src / name).read_bytes())
    mem_header = (src / "memory.csv").read_text().splitlines()[0].split(",")
    assert mem_header[0] == "HashFunction"
    owner_first = ["HashOwner", "HashApp", "HashFunction", *mem_header[3:]]
    _reorder(src / "memory.csv", folder / "memory.csv", owner_first)
    loaded = azure_functions_2019.load([folder], "t")
    got, want = loaded.tables["functions"], sample.tables["functions"]
    assert got["memory_mean_mb"].null_count() == want["memory_mean_mb"].null_count() < got.height
    assert got.equals(want)
    assert loaded.notes["memory_layout"] == "function"


def test_durations_and_invocations_in_another_column_order(shared, tmp_path, sample):
    src = shared / "azure_functions_2019"
    dur = src / "durations.csv"
    header = dur.read_text().splitlines()[0].split(",")
    d = _reorder(dur, tmp_path / "durations.csv", header[3:] + header[:3][::-1])
    inv_header = (src / "invocations.csv").read_text().splitlines()[0].split(",")
    i = _reorder(src / "invocations.csv", tmp_path / "invocations.csv",
                 inv_header[4:] + inv_header[:4][::-1])
    m = tmp_path / "memory.csv"
    m.write_bytes((src / "memory.csv").read_bytes())
    loaded = azure_functions_2019.load([i, d, m], "t")
    assert loaded.tables["functions"].equals(sample.tables["functions"])
    assert loaded.tables["invocation_counts"].equals(sample.tables["invocation_counts"])


def test_folder_with_a_file_it_cannot_load_fails(shared, tmp_path, store):
    folder = tmp_path / "azure_functions_2019"
    folder.mkdir()
    for name in ("invocations.csv", "durations.csv"):
        (folder / name).write_bytes((shared / "azure_functions_2019" / name).read_bytes())
    write(folder / "memory.csv", "HashApp,SampleCount,AverageAllocatedMb\na,1,2.0\n")
    with pytest.raises(FormatError, match=r"memory\.csv:1: unexpected header: not an Azure"):
        ingest(folder, store=store)
