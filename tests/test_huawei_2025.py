"""Huawei 2025 (EuroSys'25 "Serverless Cold Starts and Where to Find Them") on the real
specimen rows: cold starts (pool parsing, residual and flag, region), requests (null frontend
fields), runtime/trigger table (trigger and sync/async), per-minute time series; bad rows
rejected with line and reason; exact accounting.

Expected values were computed independently with plain ``csv`` over the files in
../shared/traces/specimens.
"""

from __future__ import annotations

import json

import polars as pl
import pytest

from servetrace.loaders import huawei_2025, ingest, registry
from servetrace.loaders.source import FormatError
from tests.conftest import write


@pytest.fixture(scope="module")
def spec(shared):
    return shared / "specimens"


def test_cold_starts_r2(spec):
    loaded = huawei_2025.load([spec / "huawei_2025_cold_starts_R2.csv"], "t")
    cs = loaded.tables["cold_starts"]
    assert (loaded.rows_read, loaded.accepted, loaded.rejects.height, cs.height) == (10, 10, 0, 10)
    assert cs["region"].unique().to_list() == ["R2"]  # from the file name
    assert cs["total_s"].sum() == pytest.approx(7.847067, abs=1e-12)
    assert cs.row(0, named=True) | {"request_id": None} == {
        "arrival_s": 0.323, "region": "R2", "cluster": "1", "tenant": "1111",
        "function": "979---1111---pool22-300-128", "pod": "pool22-300-128-0001562370",
        "pool": "pool22-300-128", "cpu_limit_m": 300.0, "memory_limit_mb": 128.0,
        "total_s": 0.289404, "pod_alloc_s": 0.000243, "deploy_code_s": 0.213,
        "deploy_dep_s": 0.0, "scheduling_s": 0.076161, "request_id": None,
        "residual_s": 0.0, "residual_flag": False}
    assert cs["arrival_s"].max() == 2_678_395.264  # day 30: time does not reset daily
    assert cs["residual_s"].abs().max() < 1e-15 and not cs["residual_flag"].any()
    assert loaded.notes["residual_flagged"] == 0


def test_cold_starts_all_regions(spec):
    cs = huawei_2025.load([spec / "huawei_2025_cold_starts_all_regions.csv"], "t"
                          ).tables["cold_starts"]
    assert cs["region"].to_list() == ["R1"] * 5 + ["R5"] * 5
    assert cs["total_s"].sum() == pytest.approx(17.993263, abs=1e-12)
    pools = cs.select("pool", "cpu_limit_m", "memory_limit_mb").unique().sort("cpu_limit_m")
    assert pools.rows() == [("pool22-300-128", 300.0, 128.0), ("pool23-400-256", 400.0, 256.0),
                            ("pool24-600-512", 600.0, 512.0),
                            ("pool26-1000-1024", 1000.0, 1024.0),
                            ("pool34-3400-4096", 3400.0, 4096.0),
                            ("pool35-6600-8192", 6600.0, 8192.0)]
    assert cs.filter(pl.col("tenant") == "201")["function"].item() == "224---201---pool35-6600-8192"


def test_residual_flag_and_bad_cold_starts(tmp_path):
    header = ",".join(huawei_2025.COLD)
    (tmp_path / "R3").mkdir()
    path = write(tmp_path / "R3" / "cold.csv", "\n".join([
        header,
        "0,1.5,1,10,20,req1,1.000000,0.100000,0.200,0.300,0.400000,pool22-300-128-0000000001",
        "0,2.5,1,10,20,req2,1.100000,0.100000,0.200,0.300,0.400000,pool22-300-128-0000000002",
        "0,3.5,1,10,20,req3,1.000000,0.100000,0.200,0.300,0.400000,nopool",
        "1,4.5,1,10,20,req4,1.000000,0.100000,0.200,0.300,0.400000,pool22-300-128-0000000004",
        "0,5.5,1,10,20,req5,-1.0,0.100000,0.200,0.300,0.400000,pool22-300-128-0000000005",
        "0,6.5,1,10,20,req6,1.0,0.1,0.2,0.3",
        "0,7.5,1,10,20,req7,abc,0.100000,0.200,0.300,0.400000,pool22-300-128-0000000007",
    ]) + "\n")
    loaded = huawei_2025.load([path], "t")
    assert dict(loaded.rejects.select("line", "reason").rows()) == {
        4: "podID 'nopool' does not start with a pool (poolNN-<cpu>-<memory>-<id>)",
        5: "time 4.5 s is not on day 1 (time counts seconds from the start of day 0)",
        6: "negative totalCost_cold_start: -1.0",
        7: "wrong number of columns: 10 (expected 12)",
        8: "unparsable total_s (totalCost_cold_start): 'abc'",
    }
    assert loaded.rows_read == 7 == loaded.accepted + loaded.rejects.height
    cs = loaded.tables["cold_starts"]
    assert cs.select("request_id", "region", "residual_flag").rows() == [
        ("req1", "R3", False), ("req2", "R3", True)]  # region from the folder name
    assert cs["residual_s"].to_list()[1] == pytest.approx(0.1, abs=1e-12)
    assert loaded.notes["residual_flagged"] == 1


def test_requests(spec):
    loaded = huawei_2025.load([spec / "huawei_2025_requests_R2.csv"], "t")
    inv = loaded.tables["invocations"]
    assert (inv.height, loaded.rejects.height) == (10, 0)
    assert inv["duration_s"].sum() == pytest.approx(0.213502, abs=1e-12)
    assert inv["cpu_usage"].sum() == pytest.approx(1.64833, abs=1e-12)
    assert inv["memory_usage_mb"].sum() == pytest.approx(313.902347, abs=1e-9)
    assert inv["request_body_bytes"].sum() == 2082
    assert inv["frontend_total_s"].sum() == pytest.approx(0.078685, abs=1e-12)
    # the last five rows lack the frontend log: every frontend field stays null
    front = ["frontend_arrival_s", "frontend_total_s", "frontend_s", "bus_s", "read_body_s",
             "write_rsp_s", "request_body_bytes"]
    assert inv.select(pl.col(front).null_count()).row(0) == (5,) * 7
    assert inv.select(pl.col("worker_s", "runtime_s").null_count()).row(0) == (0, 0)
    first = inv.row(0, named=True)
    assert (first["arrival_s"], first["frontend_arrival_s"], first["function"], first["tenant"],
            first["region"], first["cluster"], first["request_body_bytes"]) == (
        2_592_000.02, 2_592_000.021, "411---301---pool22-300-128", "301", "R2", "3", 2)
    assert first["request_id"] == "b54cf4cd859e62637c91fd47cef816f291a9efec3b9d17"


def test_requests_nan_frontend_and_bad_rows(spec, tmp_path):
    lines = (spec / "huawei_2025_requests_R2.csv").read_text().splitlines()
    nan_row = lines[6].replace(",,,,,,", ",NaN,NaN,NaN,NaN,NaN,").replace(",,", ",NaN,", 1)
    path = write(tmp_path / "requests.csv", "\n".join([
        lines[0], lines[1], nan_row,
        lines[2].replace(",0.000000,", ",-0.5,"),
        lines[3].replace(",26.652344,", ",lots,"),
        lines[4].replace(",979.0", ",979.5"),
    ]) + "\n")
    loaded = huawei_2025.load([path], "t")
    assert loaded.rows_read == 5 == loaded.accepted + loaded.rejects.height
    assert dict(loaded.rejects.select("line", "reason").rows()) == {
        4: "negative cpu_usage: -0.5",
        5: "unparsable memory_usage_mb (memory_usage): 'lots'",
        6: "non-integer request_body_bytes (requestBodySize): 979.5",
    }
    inv = loaded.tables["invocations"]
    assert inv.height == 2 and inv["frontend_total_s"].null_count() == 1
    assert inv["region"].to_list() == [None] * 2  # no R1..R5 in the name


def test_runtime_trigger(spec):
    loaded = huawei_2025.load([spec / "huawei_2025_runtime_trigger_R2.csv"], "t")
    fn = loaded.tables["functions"]
    assert (fn.height, loaded.rejects.height) == (10, 0)
    assert fn.select("trigger", "invocation_type").rows() == (
        [("workflow", "sync")] * 5 + [("APIG", "sync")] + [(None, None)] * 4)
    assert fn.row(5, named=True) == {
        "tenant": "486", "function": "565---486---pool30-1800-2048", "trigger": "APIG",
        "runtime": "http", "pool": "pool30-1800-2048", "cpu_limit_m": 1800.0,
        "memory_limit_mb": 2048.0, "cpu_request_m": 1000.0, "invocation_type": "sync"}
    assert fn["cpu_request_m"].sum() == 2000.0


def test_runtime_trigger_bad_rows(tmp_path):
    path = write(tmp_path / "rt.csv", "\n".join([
        ",".join(huawei_2025.RUNTIME),
        "1---2---pool22-300-128,100,Python3,timer-A",
        "1---2---pool22-300-128,100,Python3,timer-A",
        "3---2---nopool,100,Java,http-S",
        "4---2---pool22-300-128,100,Java,http-X",
        "5---2---pool22-300-128,ten,Java,http-S",
    ]) + "\n")
    loaded = huawei_2025.load([path], "t")
    assert dict(loaded.rejects.select("line", "reason").rows()) == {
        3: "repeated funcID '1---2---pool22-300-128'",
        4: "funcID '3---2---nopool' is not funcName---userID---poolNN-<cpu>-<memory>",
        5: "unknown triggerType-invocationType: 'http-X'",
        6: "unparsable cpu_request_m (cpu_request): 'ten'",
    }
    assert loaded.tables["functions"].select("trigger", "invocation_type").rows() == [
        ("timer", "async")]


def test_timeseries(spec, tmp_path):
    loaded = huawei_2025.load([spec / "huawei_2025_timeseries_requests_minute_partial.csv"], "t")
    counts = loaded.tables["invocation_counts"]
    assert (loaded.rows_read, loaded.accepted, counts.height) == (10, 10, 13)
    assert counts["count"].sum() == 21
    per = dict(counts.group_by(pl.col("function").cast(pl.String)).agg(pl.col("count").sum())
               .rows())
    assert per == {"1263---582---pool23-400-256": 13, "1740---726---pool22-300-128": 3,
                   "343---192---pool22-300-128": 2, "400---418---pool22-300-128": 3}
    assert counts["window_start_s"].max() == 2_678_340.0  # time, not day*86400 + time
    assert counts.filter(pl.col("tenant") == "582").height == 6
    # cold-start counts: same layout, to function_metrics under the metric's name
    folder = tmp_path / "num_cold_starts"
    folder.mkdir()
    path = write(folder / "day_00.csv",
                 "day,time,400---418---pool22-300-128\n0,0,2.0\n0,60,\n0,120,-1\n")
    got = huawei_2025.load([path], "t")
    fm = got.tables["function_metrics"]
    assert fm.select("tenant", "window_start_s", "metric", "value", "unit").rows() == [
        ("418", 0.0, "num_cold_starts", 2.0, "cold starts")]
    assert dict(got.rejects.select("line", "reason").rows()) == {
        4: "negative value -1 for function 400---418---pool22-300-128 (column 3)"}
    assert (got.rows_read, got.accepted) == (3, 2)


def test_wrong_header_and_no_files(tmp_path):
    path = write(tmp_path / "x.csv", "day,time,clusterName\n0,1,2\n")
    with pytest.raises(FormatError, match=r"x\.csv:1: not a Huawei 2025 file"):
        huawei_2025.load([path], "t")
    with pytest.raises(FormatError, match="zipped on Huawei OBS"):
        huawei_2025.load([], "t")


def test_detect_and_parts(spec):
    for name in ("cold_starts_R2", "cold_starts_all_regions", "requests_R2",
                 "runtime_trigger_R2", "timeseries_requests_minute_partial"):
        assert registry.detect(spec / f"huawei_2025_{name}.csv") is huawei_2025
    rt = huawei_2025.DATASET.part("runtime_trigger/R2")
    assert rt.files[0].url.endswith("runtime_triggerType/df_funcID_runtime_triggerType.csv")
    assert huawei_2025.DATASET.part_for_file("df_funcID_runtime_triggerType.csv") is rt
    assert "R1_00190_00199.zip" in huawei_2025.DATASET.part("requests/R1").description


def test_ingest_by_dataset_name_without_files_fails_clearly(store):
    with pytest.raises(FormatError, match="no files given"):
        ingest("huawei_2025/cold_starts/R1", store=store, progress=False)


def test_ingest(spec, store):
    rec = ingest(spec / "huawei_2025_cold_starts_all_regions.csv", store=store,
                 progress=False)[0]
    assert (rec["rows_read"], rec["rows_accepted"], rec["rejected"]) == (10, 10, 0)
    assert json.loads(rec["tables"]) == {"cold_starts": 10}
    got = store.sql("SELECT region, count(*) n, round(sum(total_s), 6) s, "
                    "count(*) FILTER (WHERE residual_flag) f FROM cold_starts "
                    "GROUP BY region ORDER BY region")
    assert got.rows() == [("R1", 5, 8.311254, 0), ("R5", 5, 9.682009, 0)]
    rec = ingest(spec / "huawei_2025_requests_R2.csv", store=store, progress=False)[0]
    got = store.sql("SELECT count(*), count(frontend_total_s), sum(request_body_bytes) "
                    "FROM invocations")
    assert got.row(0) == (10, 5, 2082)
