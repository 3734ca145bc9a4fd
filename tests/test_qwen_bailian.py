"""Qwen-Bailian usage traces: the real files are not in ../shared/traces, so these tests
write files in the exact documented format (keys, -1 for a root, 16-token hash blocks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servetrace.loaders import qwen_bailian, registry
from servetrace.loaders.ingest import ingest
from servetrace.loaders.store import Store

_ROWS = [
    {"chat_id": 0, "parent_chat_id": -1, "timestamp": 0.0, "input_length": 40,
     "output_length": 12, "type": "text", "turn": 1, "hash_ids": [0, 1, 2]},
    {"chat_id": 1, "parent_chat_id": -1, "timestamp": 0.5, "input_length": 16,
     "output_length": 3, "type": "image", "turn": 1, "hash_ids": [3]},
    {"chat_id": 2, "parent_chat_id": 0, "timestamp": 7.25, "input_length": 70,
     "output_length": 20, "type": "text", "turn": 2, "hash_ids": [0, 1, 2, 4, 5]},
    {"chat_id": 3, "parent_chat_id": 2, "timestamp": 9.0, "input_length": 90,
     "output_length": 8, "type": "search", "turn": 3, "hash_ids": [0, 1, 2, 4, 5, 6]},
]


def _write(path: Path, rows: list, extra: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + extra)
    return path


def test_documented_format_loads(tmp_path: Path) -> None:
    path = _write(tmp_path / "qwen_traceA_blksz_16.jsonl", _ROWS)
    assert registry.detect(path) is qwen_bailian
    assert qwen_bailian.DATASET.part_for_file(path.name).name == "traceA"
    lo = qwen_bailian.load([path], "t")
    req = lo.tables["requests"]
    assert (req.height, lo.rows_read, lo.rejects.height) == (4, 4, 0)
    assert req["request_id"].to_list() == ["0", "1", "2", "3"]
    assert req["parent_request_id"].to_list() == [None, None, "0", "2"]
    assert req["turn"].to_list() == [1, 1, 2, 3]
    assert req["request_type"].to_list() == ["text", "image", "text", "search"]
    assert req["arrival_s"].to_list() == [0.0, 0.5, 7.25, 9.0]
    assert req["hash_ids"][3].to_list() == [0, 1, 2, 4, 5, 6]
    assert (lo.hash_block_tokens, lo.hash_scope) == (16, "global")
    assert lo.notes["hash_ids_length_violations"] == 0 and lo.notes["roots"] == 2
    assert "session" not in req.columns and "think_s" not in req.columns  # null in the store


def test_malformed_rows_are_rejected(tmp_path: Path) -> None:
    bad = [dict(_ROWS[0], chat_id=10, input_length=-4),
           dict(_ROWS[0], chat_id=11, hash_ids=[1, "x"]),
           dict(_ROWS[0], chat_id=12, turn=0),
           dict(_ROWS[0], chat_id=13, timestamp="soon")]
    path = _write(tmp_path / "q.jsonl", _ROWS + bad, extra='{"chat_id": 14, "parent')
    lo = qwen_bailian.load([path], "t")
    assert lo.tables["requests"].height == 4
    reasons = lo.rejects.sort("line")["reason"].to_list()
    assert len(reasons) == 5 and lo.rows_read == 9
    assert reasons[0].startswith("negative input_tokens")
    assert reasons[1].startswith("malformed hash_ids")
    assert reasons[2].startswith("turn is not a positive integer")
    assert reasons[3].startswith("unparsable arrival_s")


def test_ingest_records_16_token_global_blocks(tmp_path: Path) -> None:
    path = _write(tmp_path / "qwen_coder_blksz_16.jsonl", _ROWS)
    store = Store(tmp_path / "store")
    [rec] = ingest(path, store=store, progress=False)
    assert rec["trace"] == "qwen_bailian/coder"
    row = store.sql("SELECT hash_block_tokens, hash_scope FROM traces").row(0)
    assert row == (16, "global")


@pytest.mark.parametrize("part", ["traceA", "traceB", "thinking", "coder"])
def test_parts_registered(part: str) -> None:
    files = qwen_bailian.DATASET.part(part).files
    assert files[0].name.endswith("_blksz_16.jsonl") and "qwen-bailian" in files[0].url
