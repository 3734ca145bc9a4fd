"""Mooncake (FAST'25) on the real conversation trace: exact counts, sums, first/last rows,
the 3 s ticks, the 512-token block rule; bad lines rejected with their line and reason.

Expected values were computed independently with plain ``json`` over the file.
"""

from __future__ import annotations

import json
import re

import polars as pl
import pytest

from servetrace.loaders import ingest, mooncake, registry
from servetrace.loaders.source import FormatError
from tests.conftest import write


@pytest.fixture(scope="module")
def conv(shared):
    return mooncake.load([shared / "mooncake_fast25" / "conversation_trace.jsonl"],
                         "mooncake/conversation")


def test_real_conversation_trace(conv):
    req = conv.tables["requests"]
    assert conv.rows_read == 12031 and req.height == 12031 and conv.rejects.height == 0
    assert conv.origin is None
    assert req["input_tokens"].sum() == 144_793_823
    assert req["output_tokens"].sum() == 4_122_048
    assert req.row(0) == (0.0, 6758, 500, list(range(14)))
    last = req.row(-1, named=True)
    assert last["arrival_s"] == pytest.approx(3536.999, abs=1e-9)
    assert (last["input_tokens"], last["output_tokens"]) == (20774, 508)
    assert len(last["hash_ids"]) == 41 and last["hash_ids"][:3] == [0, 182750, 182751]
    assert req["arrival_s"].is_sorted()
    assert req["hash_ids"].list.len().sum() == 288_500
    assert req["hash_ids"].list.max().max() == 182_789


def test_quirks_preserved(conv):
    """~3 s ticks: 1,180 distinct timestamps for 12,031 requests; len(hash_ids) =
    ceil(input_length / 512) on every row."""
    req = conv.tables["requests"]
    assert req["arrival_s"].n_unique() == 1180
    assert conv.notes["distinct_arrival_s"] == 1180
    assert conv.notes["block_size_tokens"] == 512
    assert conv.notes["hash_ids_length_violations"] == 0


def test_bad_lines(tmp_path):
    lines = [
        '{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [0, 1]}',
        "this is not json",
        '{"timestamp": 3000, "input_length": 10, "output_length": -3, "hash_ids": [2]}',
        '{"timestamp": 3000, "input_length": 10, "output_length": 3, "hash_ids": [2, 2.5]}',
        '{"timestamp": 4000, "input_length": 1000, "output_length": 7, "hash_ids": [9]}',
        '{"timestamp": -5, "input_length": 10, "output_length": 3, "hash_ids": [3]}',
        '{"timestamp": 6000, "input_length": 10, "outp',
    ]
    path = write(tmp_path / "t.jsonl", "\n".join(lines))
    loaded = mooncake.load([path], "t")
    req = loaded.tables["requests"]
    assert req.select("arrival_s", "input_tokens", "output_tokens", "hash_ids").rows() == [
        (0.0, 600, 5, [0, 1]), (4.0, 1000, 7, [9])]
    # the second kept row breaks the block rule (1 id for 1000 tokens): kept, counted
    assert loaded.notes["hash_ids_length_violations"] == 1
    rej = loaded.rejects.sort("line")
    assert rej["line"].to_list() == [2, 3, 4, 6, 7]
    reasons = rej["reason"].to_list()
    assert reasons[0] == "malformed JSON line"
    assert re.fullmatch(r"negative output_tokens \(output_length\): -3(\.0)?", reasons[1])
    assert reasons[2].startswith("malformed hash_ids") and "2.5" in reasons[2]
    assert reasons[3] == "negative timestamp: -5"
    assert reasons[4] == "malformed JSON line"
    assert rej["raw"].to_list()[0] == "this is not json"
    assert rej["source"].unique().to_list() == [str(path)]
    assert loaded.rows_read == 7 == req.height + rej.height


def test_detect(shared, tmp_path):
    conv = shared / "mooncake_fast25" / "conversation_trace.jsonl"
    assert mooncake.detect(conv)
    assert registry.detect(conv) is mooncake
    assert not mooncake.detect(shared / "mooncake_fast25")
    assert not mooncake.detect(shared / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv")
    other = write(tmp_path / "o.jsonl", json.dumps({"timestamp": 0, "input_length": 1}) + "\n")
    assert not mooncake.detect(other)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(FormatError, match="no such file"):
        mooncake.load([tmp_path / "absent.jsonl"], "t")


def test_ingest_local_file(shared, store):
    rec = ingest(shared / "mooncake_fast25" / "conversation_trace.jsonl", store=store,
                 progress=False)[0]
    assert rec["trace"] == "mooncake/conversation"
    assert (rec["rows_read"], rec["rows"], rec["rejected"]) == (12031, 12031, 0)
    got = store.sql("SELECT count(*) n, sum(input_tokens) i, sum(len(hash_ids)) h, "
                    "count(DISTINCT arrival_s) d, max(arrival_s) m FROM requests")
    assert got.row(0) == (12031, 144_793_823, 288_500, 1180, pytest.approx(3536.999))
    meta = store.sql("SELECT origin, notes, source_urls FROM traces").row(0, named=True)
    assert meta["origin"] is None
    assert json.loads(meta["notes"])["block_size_tokens"] == 512
    assert meta["source_urls"] == [
        "https://raw.githubusercontent.com/kvcache-ai/Mooncake/main/FAST25-release/traces/"
        "conversation_trace.jsonl"]


def test_ingest_by_name_verifies_published_hash(store, mirror):
    """The download path (served by the mirror) checks the file's size and SHA-256."""
    ingest("mooncake/conversation", store=store, progress=False)
    assert store.sql("SELECT count(*) FROM requests").item() == 12031
    part = mooncake.DATASET.part("conversation")
    assert part.files[0].size == 3_029_533
    assert mooncake.DATASET.part("arxiv").files[0].url.endswith(
        "FAST25-release/arxiv-trace/mooncake_trace.jsonl")
    assert [p.name for p in mooncake.DATASET.parts] == [
        "conversation", "toolagent", "synthetic", "arxiv"]


def test_toolagent_registers_512_token_global_blocks(shared, store, tmp_path):
    """The toolagent part is the conversation trace's format: its traces row records the
    same hash layout (512-token blocks, one global namespace) as the conversation part."""
    lines = (shared / "mooncake_fast25" / "conversation_trace.jsonl").read_text().splitlines()
    path = write(tmp_path / "toolagent_trace.jsonl", "\n".join(lines[:50]) + "\n")
    [rec] = ingest(path, store=store, progress=False)
    ingest(shared / "mooncake_fast25" / "conversation_trace.jsonl", store=store, progress=False)
    assert rec["trace"] == "mooncake/toolagent"
    got = store.sql("SELECT trace, hash_block_tokens, hash_scope, batch FROM traces "
                    "ORDER BY trace").rows()
    assert got == [("mooncake/conversation", 512, "global", False),
                   ("mooncake/toolagent", 512, "global", False)]
    assert mooncake.DATASET.part("toolagent").files[0].url.endswith(
        "FAST25-release/traces/toolagent_trace.jsonl")


def test_tables_fit_schema(conv):
    from servetrace.loaders.schema import conform
    out = conform("requests", conv.tables["requests"].with_columns(pl.lit("t").alias("trace")))
    assert out.schema["hash_ids"] == pl.List(pl.Int64)
