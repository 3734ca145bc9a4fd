"""ServeGen offline (batch) traces: no real file is in ../shared/traces, so these tests write
files in the exact shape of the real rows of ``alibaba/ServeGen`` ``data/offline/`` (keys in
that order, ``json.dumps`` separators, ``img_ids`` ``[]`` for text requests)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from servetrace.analysis import burstiness
from servetrace.cli import app
from servetrace.loaders import registry, servegen_offline
from servetrace.loaders.dataset import Loaded
from servetrace.loaders.ingest import ingest
from servetrace.loaders.schema import SchemaError, validate
from servetrace.loaders.store import Store, StoreError

runner = CliRunner()


def _hash_row(i: int, n: int, shared: int, first: int, kind: str = "text",
              imgs: list[str] | None = None) -> dict:
    """A content-hash request: ``shared`` prefix blocks 0.., then fresh ids from ``first``."""
    blocks = -(-n // 16)
    ids = list(range(shared)) + list(range(first, first + blocks - shared))
    return {"request_id": i, "type": kind, "input_length": n, "hash_ids": ids,
            "img_ids": imgs or []}


_HASH = [_hash_row(0, 271, 10, 100), _hash_row(1, 288, 10, 200),
         _hash_row(2, 446, 23, 300, "multimodal", ["img_00001"]),
         _hash_row(3, 420, 23, 400, "multimodal", ["img_00002", "img_00001"])]
_STAT = [{"request_id": 0, "type": "text", "input_length": 61, "output_length": 2370,
          "duration": 14000},
         {"request_id": 1, "type": "text", "input_length": 54, "output_length": 2031,
          "duration": 11630},
         {"request_id": 2, "type": "multimodal", "input_length": 1207, "output_length": 495,
          "duration": 13254}]


def _write(path: Path, rows: list, extra: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + extra)
    return path


def test_content_hash_trace(tmp_path: Path) -> None:
    path = _write(tmp_path / "trace_c.jsonl", _HASH)
    assert registry.detect(path) is servegen_offline
    assert servegen_offline.DATASET.part_for_file(path.name).name == "trace_c"
    lo = servegen_offline.load([path], "t")
    req = lo.tables["requests"]
    assert (lo.rows_read, req.height, lo.rejects.height) == (4, 4, 0)
    assert lo.batch and (lo.hash_block_tokens, lo.hash_scope) == (16, "global")
    assert req["request_id"].to_list() == ["0", "1", "2", "3"]  # submission order kept
    assert req["arrival_s"].null_count() == 4 and "output_tokens" not in req.columns
    assert req["input_tokens"].to_list() == [271, 288, 446, 420]
    assert req["num_images"].to_list() == [0, 0, 1, 2]
    assert req["request_type"].to_list() == ["text", "text", "multimodal", "multimodal"]
    assert req["hash_ids"][2].to_list()[:24] == [*range(23), 300]
    notes = lo.notes
    assert notes["hash_ids_length_violations"] == 0 and notes["request_id_out_of_order"] == 0
    assert (notes["image_refs"], notes["distinct_images"]) == (3, 2)


def test_stat_trace(tmp_path: Path) -> None:
    path = _write(tmp_path / "trace_f.jsonl", _STAT)
    lo = servegen_offline.load([path], "t")
    req = lo.tables["requests"]
    assert lo.batch and (lo.hash_block_tokens, lo.hash_scope) == (None, None)
    assert req["output_tokens"].to_list() == [2370, 2031, 495]
    assert req["latency_s"].to_list() == [14.0, 11.63, 13.254]  # duration is ms
    assert req["arrival_s"].null_count() == 3 and "hash_ids" not in req.columns


def test_malformed_rows_are_rejected(tmp_path: Path) -> None:
    bad = [dict(_HASH[0], request_id=10, input_length=-3),
           dict(_HASH[0], request_id=11, hash_ids=[1, "x"]),
           dict(_HASH[0], request_id=12, img_ids=[3]),
           {k: v for k, v in _HASH[0].items() if k != "hash_ids"} | {"request_id": 13},
           dict(_HASH[0], request_id=14, input_length=2.5)]
    path = _write(tmp_path / "trace_a.jsonl", _HASH + bad, extra='{"request_id": 15, "ty\n')
    lo = servegen_offline.load([path], "t")
    reasons = lo.rejects.sort("line")["reason"].to_list()
    assert lo.rows_read == 10 == lo.tables["requests"].height + len(reasons)
    assert lo.rejects.sort("line")["line"].to_list() == [5, 6, 7, 8, 9, 10]
    assert reasons[0].startswith("negative input_tokens")
    assert reasons[1].startswith("malformed hash_ids")
    assert reasons[2].startswith("malformed img_ids")
    assert reasons[3] == "missing hash_ids"
    assert reasons[4].startswith("non-integer input_tokens")
    assert reasons[5] == "malformed JSON line"

    stat_bad = [dict(_STAT[0], request_id=5, duration=-1),
                {k: v for k, v in _STAT[0].items() if k != "output_length"},
                {k: v for k, v in _STAT[0].items() if k != "duration"}]
    lo = servegen_offline.load([_write(tmp_path / "trace_d.jsonl", _STAT + stat_bad)], "t")
    reasons = lo.rejects.sort("line")["reason"].to_list()
    assert reasons[0].startswith("negative duration")
    assert reasons[1].startswith("missing required field output_tokens")
    assert reasons[2] == "missing duration"
    assert lo.tables["requests"].height == 3


def test_ingest_by_name_and_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _write(mirror / "trace_a.jsonl", _HASH)
    _write(mirror / "trace_d.jsonl", _STAT)
    monkeypatch.setenv("SERVETRACE_MIRROR", str(mirror))
    monkeypatch.setenv("SERVETRACE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("COLUMNS", "200")
    res = runner.invoke(app, ["ingest", "servegen_offline/trace_a"])
    assert res.exit_code == 0, res.output
    [rec] = ingest("servegen_offline/trace_d", store=Store(tmp_path / "store"), progress=False)
    assert (rec["rows_read"], rec["rows"], rec["rejected"], rec["batch"]) == (3, 3, 0, True)
    meta = Store(tmp_path / "store").sql(
        "SELECT trace, batch, start_s, hash_block_tokens, hash_scope, source_urls FROM traces "
        "ORDER BY trace")
    assert meta.row(0)[:5] == ("servegen_offline/trace_a", True, None, 16, "global")
    assert meta.row(0)[5] == ["https://raw.githubusercontent.com/alibaba/ServeGen/main/data/"
                              "offline/trace_a.jsonl"]
    res = runner.invoke(app, ["analyze", "servegen_offline/trace_d"])
    assert res.exit_code == 0, res.output
    assert "no arrival times" in res.output and "output_median" in res.output
    res = runner.invoke(app, ["analyze", "servegen_offline/trace_a", "--format", "json"])
    doc = json.loads(res.stdout)
    assert doc["arrivals"] is None and doc["tokens"][0]["input_median"] == 354.0
    page = tmp_path / "r.html"
    res = runner.invoke(app, ["report", "servegen_offline/trace_d", "-o", str(page)])
    assert res.exit_code == 0, res.output
    assert "no arrival times" in page.read_text() and "Token lengths" in page.read_text()
    res = runner.invoke(app, ["fit", "servegen_offline/trace_d", "-o", str(tmp_path / "m")])
    assert res.exit_code == 1 and "no arrival times" in res.output
    assert "Traceback" not in res.output


def test_store_keeps_batch_and_online_apart(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    from servetrace.loaders.store import Provenance
    prov = Provenance("x", None, "x", (), (), (), "x/1", "MIT", "x")
    none = pl.DataFrame({"arrival_s": [None, None], "input_tokens": [1, 2],
                         "output_tokens": [1, 1]}, schema_overrides={"arrival_s": pl.Float64})
    empty_rejects = pl.DataFrame(schema={"trace": pl.String, "source": pl.String,
                                         "line": pl.Int64, "raw": pl.String, "reason": pl.String})
    with pytest.raises(StoreError, match="not flagged batch"):
        store.write("a/b", Loaded({"requests": none}, empty_rejects, 2), prov)
    some = none.with_columns(pl.Series("arrival_s", [0.0, None]))
    with pytest.raises(StoreError, match="a batch trace has no arrival times"):
        store.write("a/b", Loaded({"requests": some}, empty_rejects, 2, batch=True), prov)
    no_out = pl.DataFrame({"arrival_s": [0.0], "input_tokens": [1]})
    with pytest.raises(StoreError, match="no output_tokens"):
        store.write("a/c", Loaded({"requests": no_out}, empty_rejects, 1), prov)
    rec = store.write("a/d", Loaded({"requests": none}, empty_rejects, 2, batch=True), prov)
    assert rec["batch"] and rec["start_s"] is None


def test_online_loaders_still_require_arrivals() -> None:
    rows = pl.DataFrame({"source": ["f", "f"], "line": [1, 2], "raw": ["a", "b"],
                         "ts": ["", "1"], "arrival_s": [None, 1.0], "input_tokens": [1.0, 1.0],
                         "out": ["2", ""], "output_tokens": [2.0, None]})
    text = {"arrival_s": "ts", "output_tokens": "out"}
    _, rejects = validate("requests", rows, trace="t", text=text)
    assert rejects["reason"].to_list() == ["missing required field arrival_s (ts)",
                                           "missing required field output_tokens (out)"]
    good, rejects = validate("requests", rows, trace="t", text=text,
                             absent=("arrival_s", "output_tokens"))
    assert good.height == 2 and rejects.height == 0
    with pytest.raises(SchemaError, match="may be absent"):
        validate("requests", rows, trace="t", absent=("input_tokens",))


def test_arrival_metrics_refuse_a_batch_trace_in_one_line() -> None:
    batch = pl.DataFrame({"arrival_s": [None, None, None]}, schema={"arrival_s": pl.Float64})
    assert not burstiness.has_arrivals(batch)
    assert burstiness.has_arrivals(pl.DataFrame({"arrival_s": [None, 2.0]}))
    with pytest.raises(ValueError, match="no arrival times"):
        burstiness.summary(batch)
