"""The agentic coding sessions (WEKA kv-cache-tester format): the 231 real conversations in
../shared/traces/agentic_coding_weka, and malformed copies of real ones."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from servetrace.loaders import agentic_coding_weka as weka
from servetrace.loaders import registry
from servetrace.loaders.ingest import ingest
from servetrace.loaders.store import Store


@pytest.fixture(scope="module")
def folder(shared: Path) -> Path:
    return shared / "agentic_coding_weka"


def test_every_request_accounted_for(folder: Path) -> None:
    assert registry.detect(folder) is weka
    assert registry.detect(folder / "trace_0002.json") is weka
    lo = weka.load([folder], "t")
    req = lo.tables["requests"]
    assert (req.height, lo.rows_read, lo.rejects.height) == (5237, 5237, 0)
    assert req["session"].n_unique() == 231
    assert req["subagent"].is_not_null().sum() == 101
    assert req.filter(pl.col("agent_depth") == 0).height == 5136
    assert (lo.hash_block_tokens, lo.hash_scope) == (64, "session")
    assert lo.notes["subagent_entries"] == 9 and lo.notes["totals_mismatch"] == 0
    assert lo.notes["hash_ids_length_violations"] == 0
    assert req["request_id"].n_unique() == 5237
    assert req["arrival_s"].is_sorted()
    # one root per conversation; every parent is a request of the same conversation
    assert req["parent_request_id"].null_count() == 231
    ids = set(req["request_id"])
    assert set(req["parent_request_id"].drop_nulls()) <= ids
    assert (req["think_s"].null_count(), req["server_s"].null_count()) == (57, 595)


def test_mapping_of_one_conversation_with_a_subagent(folder: Path) -> None:
    doc = json.loads((folder / "trace_0014.json").read_text())
    lo = weka.load([folder / "trace_0014.json"], "t")
    req = lo.tables["requests"].sort("request_id")
    at = {r["request_id"]: r for r in req.iter_rows(named=True)}
    entry = doc["requests"][36]
    assert entry["type"] == "subagent"
    first = entry["requests"][0]
    sub = at["trace_0014/36.0"]
    assert sub["arrival_s"] == pytest.approx(entry["t"] + first["t"])
    assert (sub["subagent"], sub["agent_depth"], sub["turn"]) == (entry["agent_id"], 1, 1)
    assert sub["parent_request_id"] == "trace_0014/35"          # its launcher
    assert at["trace_0014/37"]["parent_request_id"] == "trace_0014/35"
    assert at["trace_0014/37"]["turn"] == 37
    r0 = doc["requests"][0]
    row = at["trace_0014/0"]
    assert (row["input_tokens"], row["output_tokens"], row["hash_ids"]) == (
        r0["in"], r0["out"], r0["hash_ids"])
    assert row["request_type"] == "+".join(r0["input_types"])
    assert row["log_type"] == {"n": "non-streaming", "s": "streaming"}[r0["type"]]
    assert row["think_s"] == r0.get("think_time") and row["server_s"] == r0.get("api_time")
    assert row["cached_tokens"] is None if "cached_tokens" in row else True


def test_malformed_files_and_rows_are_rejected_with_reasons(folder: Path, tmp_path: Path):
    doc = json.loads((folder / "trace_0014.json").read_text())
    n = sum(1 for r in doc["requests"] if r["type"] != "subagent") + len(
        doc["requests"][36]["requests"])
    doc["requests"][1]["in"] = "abc"
    doc["requests"][2]["t"] = -1.0
    doc["requests"][3]["hash_ids"] = [1, -2]
    doc["requests"][4]["out"] = 1.5
    (tmp_path / "a.json").write_text(json.dumps(doc))
    bad_sub = json.loads((folder / "trace_0014.json").read_text())
    del bad_sub["requests"][36]["requests"]
    (tmp_path / "b.json").write_text(json.dumps(bad_sub))
    (tmp_path / "c.json").write_text(json.dumps(doc)[:5000])          # cut off
    lo = weka.load([tmp_path], "t")
    reasons = lo.rejects.sort("reason")["reason"].to_list()
    assert len(reasons) == 6
    assert any("unparsable input_tokens (in): 'abc'" in r for r in reasons)
    assert any("negative t" in r for r in reasons)
    assert any("malformed hash_ids" in r for r in reasons)
    assert any("non-integer output_tokens" in r for r in reasons)
    assert "sub-agent entry without a requests list" in reasons
    assert any(r.startswith("not a conversation JSON object") for r in reasons)
    kept = lo.tables["requests"].height
    assert kept == (n - 4) + (n - len(doc["requests"][36]["requests"]))
    assert lo.rows_read == kept + lo.rejects.height


def test_ingest_records_the_hash_layout(folder: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    [rec] = ingest(folder, store=store, progress=False)
    assert (rec["rows_read"], rec["rejected"]) == (5237, 0)
    got = store.sql("SELECT hash_block_tokens, hash_scope FROM traces").row(0)
    assert got == (64, "session")
    n = store.sql("SELECT count(*) FROM requests WHERE subagent IS NOT NULL").item()
    assert n == 101
