"""ServeGen (NSDI'26) client pools on the real files: clients, windows, rates, PMF values;
malformed rows rejected with their line and reason; exact row accounting.

Expected values were computed independently with plain ``csv``, ``json`` and
``ast.literal_eval`` over the files in ../shared/traces/servegen.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from servetrace.loaders import ingest, registry, servegen
from servetrace.loaders.source import FormatError
from tests.conftest import write


@pytest.fixture(scope="module")
def small(shared):
    return servegen.load([shared / "servegen" / "language" / "m-small"], "t")


def _pmf(loaded, client: str, start: float, field: str) -> dict[float, float]:
    rows = loaded.tables["length_pmfs"].filter(
        (pl.col("client") == client) & (pl.col("window_start_s") == start)
        & (pl.col("field") == field))
    return dict(rows.select("value", "prob").rows())


def test_m_small_accounting(small):
    cw, lp = small.tables["client_windows"], small.tables["length_pmfs"]
    # 38 clients x 2016 windows of 600 s; 38 x 56 windows of 6 h x 2 fields
    assert (cw.height, lp.height) == (76_608, 946_307)
    assert small.rows_read == 76_608 + 4_256 == small.accepted
    assert small.rejects.height == 0
    assert small.notes["empty_pmfs"] == 2006
    assert small.notes["pmf_fields"] == ["input_tokens", "output_tokens"]


def test_m_small_client_windows(small):
    cw = small.tables["client_windows"]
    assert cw["client"].n_unique() == 38
    assert sorted(cw["client"].unique().to_list(), key=int)[:5] == ["0", "2", "3", "4", "6"]
    assert cw["iat_family"].value_counts().sort("iat_family").rows() == [
        (None, 45_032), ("Gamma", 22_364), ("Weibull", 9_212)]
    assert small.notes["active_windows"] == 31_576
    assert cw["rate"].sum() == pytest.approx(1_022_582.963333, abs=1e-5)
    assert cw["window_s"].unique().to_list() == [600.0]
    assert (cw["window_start_s"].min(), cw["window_start_s"].max()) == (0.0, 1_209_000.0)
    row = cw.filter((pl.col("client") == "12") & (pl.col("window_start_s") == 60_000))
    assert row.select("rate", "cv", "iat_family", "shape", "scale", "window_s").row(0) == (
        64.15333333333334, 1.0176549239508281, "Gamma", 0.9656037172961327,
        0.01614195801575162, 600.0)
    # client 0 is inactive until its window 239 (start 143400 s); inactive: no shape/scale
    c0 = cw.filter(pl.col("client") == "0")
    assert c0["iat_family"].is_not_null().arg_true()[0] == 239
    assert c0.row(239, named=True)["rate"] == 0.07666666666666666
    assert c0.row(0, named=True) == {
        "client": "0", "window_start_s": 0.0, "rate": 0.0, "cv": 0.0, "iat_family": None,
        "shape": None, "scale": None, "window_s": 600.0}


def test_m_small_length_pmfs(small):
    lp = small.tables["length_pmfs"]
    assert lp["window_s"].unique().to_list() == [21600.0]
    assert lp.select("client", "window_start_s").n_unique() == 1125
    pmf = _pmf(small, "12", 21600.0, "input_tokens")
    assert len(pmf) == 243 and (min(pmf), max(pmf)) == (34.0, 2158.0)
    assert pmf[40.0] == 0.1037502196623834
    out = _pmf(small, "12", 0.0, "output_tokens")
    assert len(out) == 70 and out[1.0] == 0.9725925978708546
    # the mean input length per PMF, summed over all windows and clients
    mean_in = lp.filter(pl.col("field") == "input_tokens").select(
        (pl.col("value") * pl.col("prob")).sum()).item()
    assert mean_in == pytest.approx(752_851.8025768766, rel=1e-12)
    assert _pmf(small, "0", 0.0, "input_tokens") == {}  # "{}": inactive window, no rows


def test_reason_pool(shared):
    loaded = servegen.load([shared / "servegen" / "reason" / "deepseek-r1"], "t")
    cw, lp = loaded.tables["client_windows"], loaded.tables["length_pmfs"]
    assert (cw.height, lp.height, loaded.rejects.height) == (10_512, 431_391, 0)
    assert loaded.rows_read == loaded.accepted == 10_512 + 876
    assert cw["client"].n_unique() == 73 and loaded.notes["active_windows"] == 3111
    assert cw["rate"].sum() == pytest.approx(2306.115, abs=1e-9)
    assert loaded.notes["pmf_fields"] == ["input_tokens", "output_tokens", "reason_ratio"]
    ratio = _pmf(loaded, "0", 0.0, "reason_ratio")
    assert len(ratio) == 501 and ratio[0.996007984031936] == 0.0  # zero mass is kept
    assert ratio[0.998003992015968] == 0.00023014959723819864
    assert _pmf(loaded, "0", 0.0, "input_tokens")[45.0] == 0.009666283084004603
    first = cw.filter((pl.col("client") == "0") & pl.col("iat_family").is_not_null()).row(
        0, named=True)
    assert (first["window_start_s"], first["rate"], first["scale"]) == (
        2400.0, 0.085, 73.01783087211976)


def test_multimodal_pool(shared):
    loaded = servegen.load([shared / "servegen" / "multimodal" / "mm-image"], "t")
    cw, lp = loaded.tables["client_windows"], loaded.tables["length_pmfs"]
    assert (cw.height, lp.height, loaded.rejects.height) == (5040, 67_921, 0)
    assert cw["client"].n_unique() == 35 and loaded.notes["active_windows"] == 2094
    assert len(loaded.notes["pmf_fields"]) == 8 and "image_count" in loaded.notes["pmf_fields"]
    assert _pmf(loaded, "0", 21600.0, "image_tokens") == {
        1196.0: 0.5199675527268189, 1222.0: 0.46181205540995884, 1230.0: 0.018220391863222263}


def _bad_pool(folder: Path) -> Path:
    folder.mkdir()
    write(folder / "chunk-7-trace.csv", "\r\n".join([
        "0,0,0,,0,0",
        "600,1.5,0.9,Gamma,1.2,0.5",
        "1200,1.5,0.9,Gamma,1.2",                # 5 columns
        "1800,2.0,1.1,Pareto,1.0,1.0",           # unknown family
        "2400,-1,1.0,Weibull,1.0,1.0",           # negative rate
        "3000,abc,1.0,Weibull,1.0,1.0",          # not a number
    ]) + "\r\n")
    pmfs = {
        "0": {"input_tokens": "{10: 0.25, 20: 0.75}",
              "output_tokens": "{1: 0.5, 2: __import__('os')}"},     # line 4: malformed
        "21600": {"input_tokens": "{}",                               # line 7: empty, kept
                  "output_tokens": "{1: 0.5, 2: 0.4}"},               # line 8: sums to 0.9
        "43200": {"input_tokens": "{5: 0.5, 5: 0.5}",                 # line 11: repeated
                  "output_tokens": "{3: 1.0}"},                       # line 12
    }
    write(folder / "chunk-7-dataset.json", json.dumps(pmfs, indent=2))
    return folder


def test_bad_rows_rejected(tmp_path):
    folder = _bad_pool(tmp_path / "pool")
    loaded = servegen.load([folder], "t")
    rej = loaded.rejects.with_columns(pl.col("source").str.extract(r"(trace|dataset)"))
    got = {(s, line): reason for s, line, reason in rej.select("source", "line", "reason").rows()}
    assert got == {
        ("trace", 3): "wrong number of columns: 5 (expected 6)",
        ("trace", 4): "unknown inter-arrival family: 'Pareto'",
        ("trace", 5): "negative rate: -1",
        ("trace", 6): "unparsable rate (c2_rate): 'abc'",
        ("dataset", 4): "malformed PMF (not a {value: prob} literal): "
                        "'{1: 0.5, 2: __import__('os')}'",
        ("dataset", 8): "PMF probabilities sum to 0.9 (tolerance 1e-06)",
        ("dataset", 11): "repeated value in PMF",
    }
    assert rej.filter(pl.col("line") == 4)["raw"].to_list() == [
        "1800,2.0,1.1,Pareto,1.0,1.0",
        '    "output_tokens": "{1: 0.5, 2: __import__(\'os\')}"']
    assert loaded.rows_read == 6 + 6 and loaded.accepted == 2 + 3
    assert loaded.rows_read == loaded.accepted + rej.height
    cw = loaded.tables["client_windows"]
    assert cw.select("client", "window_start_s", "rate", "iat_family").rows() == [
        ("7", 0.0, 0.0, None), ("7", 600.0, 1.5, "Gamma")]
    assert loaded.tables["length_pmfs"].select("window_start_s", "field", "value", "prob").rows(
    ) == [(0.0, "input_tokens", 10.0, 0.25), (0.0, "input_tokens", 20.0, 0.75),
          (43200.0, "output_tokens", 3.0, 1.0)]
    assert loaded.notes["empty_pmfs"] == 1


def test_unrecognized_json_line_is_a_rejected_row(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    write(folder / "chunk-1-dataset.json",
          '{\n  "0": {\n    "input_tokens": "{1: 1.0}",\n    "oops": 3\n  }\n}\n')
    loaded = servegen.load([folder], "t")
    assert loaded.rejects.select("line").item() == 4
    assert loaded.rejects["reason"].item().startswith("unrecognized line in dataset JSON")
    assert (loaded.rows_read, loaded.accepted) == (2, 1)
    assert loaded.notes["clients_without_trace_csv"] == ["1"]


def test_list_of_files_equals_folder(shared, tmp_path):
    """Downloaded files each land in their own cache folder: a list of files must load."""
    pool = shared / "servegen" / "multimodal" / "mm-image"
    files = [pool / "chunk-3-trace.csv", pool / "chunk-3-dataset.json",
             pool / "chunk-10-dataset.json", pool / "chunk-10-trace.csv"]
    loaded = servegen.load(files, "t")
    cw = loaded.tables["client_windows"]
    assert cw["client"].unique(maintain_order=True).to_list() == ["3", "10"]
    assert cw.height == 2 * 144 and loaded.rejects.height == 0
    with pytest.raises(FormatError, match="client 3 given twice"):
        servegen.load([*files, pool / "chunk-3-trace.csv"], "t")
    with pytest.raises(FormatError, match="not a ServeGen file"):
        servegen.load([shared / "mooncake_fast25" / "conversation_trace.jsonl"], "t")


def test_detect(shared):
    pool = shared / "servegen" / "language" / "m-small"
    assert servegen.detect(pool) and servegen.detect(pool / "chunk-12-trace.csv")
    assert servegen.detect(pool / "chunk-12-dataset.json")
    assert registry.detect(pool) is servegen
    assert not servegen.detect(shared / "servegen")
    assert not servegen.detect(shared / "mooncake_fast25" / "conversation_trace.jsonl")
    assert servegen.DATASET.part_for_file("m-small").name == "language/m-small"


def test_parts_list_each_chunk_file():
    part = servegen.DATASET.part("reason/deepseek-r1")
    assert len(part.files) == 2 * 73
    assert part.files[0].url == ("https://raw.githubusercontent.com/alibaba/ServeGen/main/"
                                 "data/reason/deepseek-r1/chunk-0-trace.csv")
    assert part.files[0].name == "reason/deepseek-r1/chunk-0-trace.csv"
    assert len(servegen.DATASET.part("language/m-small").files) == 2 * 38


def test_ingest_local_folder(shared, store):
    rec = ingest(shared / "servegen" / "multimodal" / "mm-image", store=store,
                 progress=False)[0]
    assert rec["trace"] == "servegen/multimodal/mm-image"
    assert (rec["rows_read"], rec["rows_accepted"], rec["rejected"]) == (6160, 6160, 0)
    assert json.loads(rec["tables"]) == {"client_windows": 5040, "length_pmfs": 67_921}
    got = store.sql("SELECT count(DISTINCT client) c, count(iat_family) a, sum(rate) r "
                    "FROM client_windows")
    assert got.row(0) == (35, 2094, pytest.approx(1364.35, abs=1e-9))
    p = store.sql("SELECT prob FROM length_pmfs WHERE client = '0' AND window_start_s = 21600 "
                  "AND field = 'image_tokens' AND value = 1222")
    assert p.item() == 0.46181205540995884


def test_ingest_by_name_through_mirror(store, mirror):
    """Each chunk file is fetched by its pool-qualified name, so the mirror's other pools'
    files of the same name (language/m-small/chunk-0-trace.csv sorts first) are not picked
    up instead."""
    rec = ingest("servegen/multimodal/mm-image", store=store, progress=False)[0]
    assert rec["trace"] == "servegen/multimodal/mm-image"
    assert all("/multimodal/mm-image/chunk-" in f for f in rec["source_files"])
    got = store.sql("SELECT count(*) n, count(DISTINCT client) c FROM client_windows")
    assert got.row(0) == (5040, 35)
    assert store.sql("SELECT count(DISTINCT field) FROM length_pmfs").item() == 8
