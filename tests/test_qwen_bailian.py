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
    assert req["session"].to_list() == ["0", "1", "0", "0"]  # the root of each tree
    assert lo.notes["sessions"] == 2 and lo.notes["orphan_parents"] == 0
    assert "think_s" not in req.columns  # null in the store


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
    # Git LFS files are served from media.githubusercontent.com, not raw.githubusercontent.com
    assert files[0].url == ("https://media.githubusercontent.com/media/alibaba-edu/"
                            f"qwen-bailian-usagetraces-anon/main/{files[0].name}")
    if part in ("thinking", "coder"):  # the LFS pointers give size and SHA-256
        assert files[0].size and len(files[0].sha256 or "") == 64


def _node(chat: int, parent: int, t: float) -> dict:
    return {"chat_id": chat, "parent_chat_id": parent, "timestamp": t, "input_length": 16,
            "output_length": 1, "type": "text", "turn": 1, "hash_ids": [chat]}


def test_sessions_are_the_roots_of_a_known_forest(tmp_path: Path) -> None:
    # Forest (chat_id <- parent): 10 <- 11 <- 12 <- 13 <- 14 (a chain of depth 4, so pointer
    # jumping needs more than one round), 10 <- 15 <- 16 (a branch), 20 alone,
    # 30 <- 31 <- 32 with 30's parent 99 absent from the file (an orphan: its own root),
    # and 40 <- 41 whose parent line is malformed (rejected): 41 becomes an orphan root.
    rows = [_node(10, -1, 0), _node(11, 10, 1), _node(12, 11, 2), _node(13, 12, 3),
            _node(14, 13, 4), _node(15, 10, 5), _node(16, 15, 6), _node(20, -1, 7),
            _node(30, 99, 8), _node(31, 30, 9), _node(32, 31, 10),
            dict(_node(40, -1, 11), input_length=-1), _node(41, 40, 12)]
    path = _write(tmp_path / "forest.jsonl", rows)
    lo = qwen_bailian.load([path], "t")
    req = lo.tables["requests"]
    got = dict(zip(req["request_id"].to_list(), req["session"].to_list(), strict=True))
    assert got == {"10": "10", "11": "10", "12": "10", "13": "10", "14": "10", "15": "10",
                   "16": "10", "20": "20", "30": "30", "31": "30", "32": "30", "41": "41"}
    assert lo.rejects.height == 1 and lo.rows_read == 13
    assert lo.notes["orphan_parents"] == 2 and lo.notes["sessions"] == 4
    assert lo.notes["parent_cycles"] == 0


def test_tree_roots_cycles_and_repeated_ids() -> None:
    import polars as pl

    ids = pl.Series(["a", "b", "c", "d", "e", "f", "f"])
    parents = pl.Series(["b", "a", "a", None, "d", "e", "x"])  # a <-> b a cycle, c under it
    out = qwen_bailian.tree_roots(ids, parents)
    assert out["root"].to_list() == [None, None, None, "d", "d", "d", "f"]  # by row
    assert out["orphan"].to_list() == [False, False, False, False, False, False, True]
