"""Azure Functions 2021 (Zhang et al., SOSP'21): start times, zero durations, bad input.

Expected values were computed independently from the CSV file with Python's ``csv`` module.
"""

from __future__ import annotations

import polars as pl
import pytest

from servetrace.loaders import azure_functions_2021, ingest, registry
from servetrace.loaders.source import FormatError
from tests.conftest import write

NAME = "AzureFunctionsInvocationTraceForTwoWeeksJan2021"
HEAD = "app,func,end_timestamp,duration\n"


@pytest.fixture(scope="module")
def real(shared):
    path = shared / "azure_functions_2021" / f"{NAME}.csv"
    return path, azure_functions_2021.load([path], "t")


def test_real_rows(real):
    _, loaded = real
    inv = loaded.tables["invocations"]
    assert loaded.rows_read == 998 == inv.height and loaded.rejects.is_empty()
    assert inv["arrival_s"].is_sorted()
    assert (inv["duration_s"] == 0).sum() == 43  # zero durations kept
    assert loaded.notes["zero_durations"] == 43
    assert inv["app"].n_unique() == 21 and inv["function"].n_unique() == 49
    assert inv["duration_s"].sum() == pytest.approx(24_782.782)
    first, last = inv.row(0, named=True), inv.row(-1, named=True)
    assert first["app"].startswith("7b2c43a2bc30f6bb")
    assert first["function"].startswith("e3cdb48830f66eb8")
    assert first["arrival_s"] == pytest.approx(0.07949090003967285 - 0.078, abs=1e-12)
    assert first["duration_s"] == 0.078
    assert last["function"].startswith("155e47f8e7f751d0")
    assert last["arrival_s"] == pytest.approx(6464.803797006607 - 0.001, abs=1e-9)
    assert "tenant" not in inv.columns  # no owner in this trace: stored as null


def test_sorted_by_start_not_end(real):
    """The file is in start-time order while its end timestamps are not sorted."""
    path, loaded = real
    ends = pl.read_csv(path)["end_timestamp"]
    assert not ends.is_sorted()
    inv = loaded.tables["invocations"]
    assert (inv["arrival_s"] + inv["duration_s"]).to_list() == pytest.approx(ends.to_list())


def test_ingest(shared, store):
    path = shared / "azure_functions_2021" / f"{NAME}.csv"
    assert registry.detect(path) is azure_functions_2021
    [rec] = ingest(path, store=store, progress=False)
    assert rec["trace"] == "azure_functions_2021/invocations"
    assert (rec["rows_read"], rec["rows"], rec["rejected"]) == (998, 998, 0)
    got = store.sql("SELECT count(*), count(*) FILTER (duration_s = 0), count(tenant), "
                    "min(arrival_s) FROM invocations")
    assert got.row(0)[:3] == (998, 43, 0)
    assert got.row(0)[3] == pytest.approx(0.0014909000396728517)


def test_unsorted_input_is_sorted_stably(tmp_path):
    path = write(tmp_path / f"{NAME}.txt", HEAD + "a,f1,10.0,2.0\na,f2,9.0,1.0\na,f3,8.5,0.0\n"
                                                 "a,f4,3.0,0.0\n")
    inv = azure_functions_2021.load([path], "t").tables["invocations"]
    assert inv.select("function", "arrival_s").rows() == [
        ("f4", 3.0), ("f1", 8.0), ("f2", 8.0), ("f3", 8.5)]


def test_bad_input(tmp_path):
    path = write(tmp_path / f"{NAME}.txt", HEAD + "a,f1,1.5,0.5\n"
                                                 "a,f2,2.5\n"
                                                 "a,f3,2.5,1,7\n"
                                                 "a,f4,soon,1\n"
                                                 "a,f5,3.0,-1\n"
                                                 ",f6,3.0,1\n"
                                                 "a,f7,4.0,\n"
                                                 "a,f8,4.0,0.0\n")
    loaded = azure_functions_2021.load([path], "t")
    assert dict(loaded.rejects.select("line", "reason").iter_rows()) == {
        3: "wrong number of columns: 3 (expected 4)",
        4: "wrong number of columns: 5 (expected 4)",
        5: "unparsable end_timestamp: 'soon'",
        6: "negative duration: -1",
        7: "missing app",
        8: "missing duration",
    }
    assert loaded.rejects["raw"].to_list()[:2] == ["a,f2,2.5", "a,f3,2.5,1,7"]
    inv = loaded.tables["invocations"]
    assert inv.select("function", "arrival_s").rows() == [("f1", 1.0), ("f8", 4.0)]
    assert loaded.rows_read == 8 == inv.height + loaded.rejects.height


def test_bad_numbers_on_the_fast_path(tmp_path):
    path = write(tmp_path / f"{NAME}.txt", HEAD + "a,f1,1.5,0.5\na,f2,3.0,-2.5\na,f3,inf,1\n")
    loaded = azure_functions_2021.load([path], "t")
    assert loaded.rejects.select("line", "reason", "raw").rows() == [
        (3, "negative duration: -2.5", "a,f2,3.0,-2.5"),
        (4, "non-finite end_timestamp: inf", "a,f3,inf,1")]


def test_wrong_header_and_rar(tmp_path):
    bad = write(tmp_path / "x.csv", "app,function,end_timestamp,duration\na,f,1,1\n")
    assert not azure_functions_2021.detect(bad)
    with pytest.raises(FormatError, match="unexpected header"):
        azure_functions_2021.load([bad], "t")
    rar = tmp_path / f"{NAME}.rar"
    rar.write_bytes(b"Rar!\x1a\x07\x00" + b"\x00" * 32)
    assert azure_functions_2021.detect(rar)
    with pytest.raises(FormatError, match="extract it"):
        azure_functions_2021.load([rar], "t")
