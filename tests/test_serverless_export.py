"""Serverless exports (vHive per-second, FaaSRail spec, per-invocation CSV) read back by the
targets' documented parsing rules, on the real Azure Functions 2019 and 2021 samples and on a
synthetic sample of the serverless model."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from servetrace.loaders import azure_functions_2019, azure_functions_2021
from servetrace.synth import serverless as sv
from servetrace.synth.export import export, faasrail, invocations_csv, options, vhive

U32 = 2**32 - 1


@pytest.fixture(scope="module")
def af19(shared):
    return azure_functions_2019.load([shared / "azure_functions_2019"], "af19").tables


@pytest.fixture(scope="module")
def af21(shared):
    path = (shared / "azure_functions_2021"
            / "AzureFunctionsInvocationTraceForTwoWeeksJan2021.csv")
    return azure_functions_2021.load([path], "af21").tables["invocations"]


@pytest.fixture(scope="module")
def synthetic(af19):
    model = sv.fit(af19["invocation_counts"], af19["functions"])
    return model.sample(900.0, seed=3)


def read_faasrail(path: Path) -> list[tuple[float, dict, list[int]]]:
    """faasrail-loadgen's ``SourceClient::parse_csv``: the first line is dropped, each row is
    ``avg`` (f64), ``mapped_wreq`` (a string holding WorkloadRequest JSON), then u32 counts."""
    with open(path, newline="") as fh:
        fh.readline()
        rows = []
        for rec in csv.reader(fh):
            wreq = json.loads(rec[1])
            assert isinstance(wreq["bench"], str) and isinstance(wreq["payload"], str)
            assert isinstance(wreq.get("mean", 0.0), float | int)
            counts = [int(c) for c in rec[2:]]  # int() rejects "1.0" as serde's u32 does
            assert all(0 <= c <= U32 for c in counts)
            rows.append((float(rec[0]), wreq, counts))
    return rows


def read_invitro(folder: Path, columns: int) -> dict[str, list[int]]:
    """InVitro's ``parseInvocationTrace``: hashes among the first four header fields, counts
    from the column after ``Trigger``, ``columns`` of them parsed with ``strconv.Atoi``."""
    with open(folder / "invocations.csv", newline="") as fh:
        reader = csv.reader(fh)
        header = [h.lower() for h in next(reader)]
        first = header[:4].index("trigger") + 1
        fn = header[:4].index("hashfunction")
        return {r[fn]: [int(c) for c in r[first:first + columns]] for r in reader}


# -- FaaSRail -----------------------------------------------------------------------------------
def test_faasrail_spec_from_azure_2019(tmp_path, shared, af19):
    path = export(af19["invocation_counts"], "faasrail", tmp_path / "spec.csv",
                  functions=af19["functions"]).path
    rows = read_faasrail(path)
    with open(shared / "azure_functions_2019" / "invocations.csv", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        original = {r[2]: [int(c) for c in r[4:]] for r in reader}
    with open(path, newline="") as fh:
        assert next(csv.reader(fh)) == ["avg", "mapped_wreq", *header[4:]]  # minutes 480..959
    durations = {r["HashFunction"]: r["Average"]
                 for r in pl.read_csv(shared / "azure_functions_2019" / "durations.csv")
                 .iter_rows(named=True)}
    active = {k: v for k, v in original.items() if sum(v)}
    assert len(rows) == len(active)  # functions without an invocation are left out
    totals = [sum(c) for _, _, c in rows]
    assert totals == sorted(totals, reverse=True)
    for avg, wreq, counts in rows:
        assert counts == original[wreq["bench"]]
        assert wreq["payload"] == "{}" and wreq["mean"] == avg
        assert avg == pytest.approx(durations[wreq["bench"]], rel=1e-9)


def test_faasrail_workload_mapping(tmp_path):
    """Functions of mean 9, 26 and 400 ms map to the workloads of 10, 25 and 300 ms; names
    are FaaSRail's bench-hash of 24 characters."""
    workloads = [{"mean": 300.0, "stdev": 1.0, "bench": "video", "payload": '{"v": "a.mp4"}'},
                 {"mean": 10.0, "stdev": 0.1, "bench": "pyaes", "payload": '{"n":16}'},
                 {"mean": 25.0, "stdev": 0.2, "bench": "matmul_fb", "payload": '{"N": 8}'}]
    wl = tmp_path / "workloads.json"
    wl.write_text(json.dumps(workloads))
    frame = pl.DataFrame({"arrival_s": [1.0, 2.0, 3.0, 61.0, 62.0, 70.0],
                          "function": ["a", "a", "b", "c", "c", "c"],
                          "duration_s": [0.008, 0.010, 0.026, 0.4, 0.4, 0.4]})
    rows = read_faasrail(export(frame, "faasrail", tmp_path / "s.csv", workloads=wl))
    got = [(avg, w["bench"], w["mean"], c) for avg, w, c in rows]
    digest = hashlib.sha256(b'{"n": 16}').hexdigest()  # json.dumps re-spaces the payload
    assert got[0] == (pytest.approx(400.0), got[0][1], 300.0, [0, 3])
    assert got[0][1].startswith("video-") and len(got[0][1]) == 24
    assert got[1] == (pytest.approx(9.0), f"pyaes-{digest[:18]}", 10.0, [2, 0])
    assert got[2][1].startswith("matmul_fb-") and got[2][2] == 25.0 and got[2][3] == [1, 0]
    assert rows[1][1]["payload"] == '{"n":16}'  # the payload is sent as measured
    bad = tmp_path / "bad.json"
    bad.write_text('[{"bench": "x", "payload": "not json", "mean": 1}]')
    with pytest.raises(ValueError, match=r"bad.json: entry 0: payload is not JSON"):
        export(frame, "faasrail", tmp_path / "t.csv", workloads=bad)
    with pytest.raises(ValueError, match="no mean duration"):
        export(frame.drop("duration_s"), "faasrail", tmp_path / "t.csv")


# -- per-invocation CSV -------------------------------------------------------------------------
def test_invocations_csv_azure_2021(tmp_path, af21):
    path = export(af21, "invocations-csv", tmp_path / "inv.csv", tenancy=True).path
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        assert next(reader) == invocations_csv.TENANCY_HEADER
        rows = list(reader)
    assert len(rows) == af21.height == 998
    ordered = af21.sort("arrival_s", maintain_order=True)
    t = np.array([float(r[0]) for r in rows])
    assert np.all(np.diff(t) >= 0)
    assert np.abs(t - ordered["arrival_s"].to_numpy()).max() <= 5e-7
    assert [r[1] for r in rows] == ordered["function"].cast(pl.String).to_list()
    assert [r[3] for r in rows] == ordered["app"].cast(pl.String).to_list()
    ms = np.array([float(r[4]) for r in rows])
    assert np.allclose(ms, ordered["duration_s"].to_numpy() * 1000, rtol=0, atol=5e-7)
    assert {r[5] for r in rows} == {""}  # Azure 2021 has no memory
    again = export(af21, "invocations-csv", tmp_path / "r.csv", rebase=True).path
    first = pl.read_csv(again)
    assert first.columns == invocations_csv.HEADER and first["timestamp_s"][0] == 0.0


def test_invocations_csv_rejects_counts(tmp_path, af19, af21):
    with pytest.raises(ValueError, match="per-window counts have no invocation times"):
        export(af19["invocation_counts"], "invocations-csv", tmp_path / "x.csv")
    with pytest.raises(ValueError, match=r"lacks column\(s\) duration_s"):
        export(af21.drop("duration_s"), "invocations-csv", tmp_path / "x.csv")
    with pytest.raises(ValueError, match="negative duration"):
        export(af21.with_columns(duration_s=pl.lit(-1.0)), "invocations-csv", tmp_path / "x.csv")


# -- vHive / InVitro per second -----------------------------------------------------------------
def test_vhive_per_second_known_answer(tmp_path):
    """Arrivals at 0.2, 0.7, 1.5 and 3.99 s are 2, 1, 0, 1 invocations in seconds 1..4."""
    frame = pl.DataFrame({"arrival_s": [0.2, 0.7, 1.5, 3.99], "function": ["f"] * 4,
                          "duration_s": [0.1, 0.2, 0.3, 0.4], "memory_mb": [128.0] * 4})
    folder = export(frame, "vhive", tmp_path / "s", granularity="second").path
    assert read_invitro(folder, 4) == {"f": [2, 1, 0, 1]}
    with open(folder / "invocations.csv") as fh:
        assert fh.readline().strip().split(",")[4:] == ["1", "2", "3", "4"]
    minute = export(frame, "vhive", tmp_path / "m").path
    assert read_invitro(minute, 1) == {"f": [4]}
    assert options("vhive")["granularity"] == "minute"
    with pytest.raises(ValueError, match="granularity must be one of minute, second"):
        export(frame, "vhive", tmp_path / "x", granularity="hour")


def test_vhive_per_second_needs_times(tmp_path, af19):
    with pytest.raises(ValueError, match=r"do not fit in one 1 s column.*counts per 1 s "
                                         r"column need windows of at most 1 s"):
        export(af19["invocation_counts"], "vhive", tmp_path / "x", granularity="second",
               functions=af19["functions"])


# -- synthetic samples --------------------------------------------------------------------------
def test_synthetic_sample_exports(tmp_path, synthetic):
    """A model sample exports to all three formats with the sample's own counts."""
    secs = synthetic.group_by(pl.col("function").cast(pl.String)).agg(
        (pl.col("arrival_s").floor().cast(pl.Int64)).value_counts())
    folder = export(synthetic, "vhive", tmp_path / "v", granularity="second").path
    parsed = read_invitro(folder, 900)
    assert sum(map(sum, parsed.values())) == synthetic.height
    for row in secs.head(20).iter_rows():
        name, vc = row
        expected = [0] * 900
        for item in vc:
            expected[item["arrival_s"]] = item["count"]
        assert parsed[name] == expected
    back = azure_functions_2019.load([export(synthetic, "vhive", tmp_path / "m").path], "back")
    assert back.tables["invocation_counts"]["count"].sum() == synthetic.height
    assert back.rejects.height == 0

    rows = read_faasrail(export(synthetic, "faasrail", tmp_path / "f.csv").path)
    assert sum(sum(c) for _, _, c in rows) == synthetic.height
    assert all(len(c) == math.ceil(synthetic["arrival_s"].max() / 60) for _, _, c in rows)
    means = synthetic.group_by(pl.col("function").cast(pl.String)).agg(
        pl.col("duration_s").mean() * 1000)
    lookup = dict(means.iter_rows())
    assert all(avg == pytest.approx(lookup[w["bench"]]) for avg, w, _ in rows)

    inv = pl.read_csv(export(synthetic, "invocations-csv", tmp_path / "i.csv").path,
                      schema_overrides={"function": pl.String})
    assert inv.height == synthetic.height
    assert np.allclose(inv["memory_mb"].to_numpy(), synthetic["memory_mb"].to_numpy(),
                       atol=5e-7)
    assert vhive.TABLES == faasrail.TABLES == ("invocations", "invocation_counts")
