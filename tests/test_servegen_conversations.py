"""ServeGen multi-turn conversations: the real file is not in ../shared/traces, so these tests
write ``conversations_hashed.json`` in its shape: one JSON list of conversations, each a list
of turn objects with exactly the keys turn (0-based), timestamp, input_token_count,
output_token_count, input_tokens and output_tokens (integer hash lists)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from servetrace.cli import app
from servetrace.loaders import registry, servegen_conversations
from servetrace.loaders.source import FormatError
from servetrace.loaders.store import Store

runner = CliRunner()
T0 = 1_736_000_000.25


def _turn(turn: int, t: float, n_in: int, n_out: int, ids: list[int]) -> dict:
    return {"turn": turn, "timestamp": t, "input_token_count": n_in,
            "output_token_count": n_out, "input_tokens": ids,
            "output_tokens": list(range(900, 900 + n_out))}


# Conversation 0: three turns whose inputs grow by the previous turns (shared id prefix);
# conversation 1: one turn, starting between them; conversation 2: an id of 2^64 - 1.
_CONVS = [
    [_turn(0, T0, 1030, 3, [11, 12]), _turn(1, T0 + 308.0, 2100, 2, [11, 12, 13, 14]),
     _turn(2, T0 + 3222.5, 2600, 4, [11, 12, 13, 14, 15])],
    [_turn(0, T0 + 100.0, 50, 1, [20])],
    [_turn(0, T0 + 5.0, 10, 1, [2**64 - 1, 7])],
]


def _write(path: Path, convs: list) -> Path:
    path.write_text(json.dumps(convs))
    return path


def test_conversations_load(tmp_path: Path) -> None:
    path = _write(tmp_path / "conversations_hashed.json", _CONVS)
    assert registry.detect(path) is servegen_conversations
    assert servegen_conversations.DATASET.part_for_file(path.name).name == "conversations"
    lo = servegen_conversations.load([path], "t")
    req = lo.tables["requests"]
    assert (lo.rows_read, req.height, lo.rejects.height) == (5, 5, 0)
    assert req["request_id"].to_list() == ["0/0", "2/0", "1/0", "0/1", "0/2"]  # by arrival
    assert req["arrival_s"].to_list() == [0.0, 5.0, 100.0, 308.0, 3222.5]
    assert req["session"].to_list() == ["0", "2", "1", "0", "0"]
    assert req["turn"].to_list() == [1, 1, 1, 2, 3]
    assert req["parent_request_id"].to_list() == [None, None, None, "0/0", "0/1"]
    assert req["input_tokens"].to_list() == [1030, 10, 50, 2100, 2600]
    assert req["output_tokens"].to_list() == [3, 1, 1, 2, 4]
    assert req["hash_ids"][3].to_list() == [11, 12, 13, 14]
    assert req["hash_ids"][1].to_list() == [-1, 7]  # 2^64 - 1 keeps its 64 bits
    assert (lo.hash_block_tokens, lo.hash_scope, lo.origin) == (None, None, None)
    notes = lo.notes
    assert notes["timestamp_zero"] == T0 and notes["conversations"] == 3
    assert notes["turn_mismatch"] == 0 and notes["timestamps_going_back"] == 0
    assert notes["output_hash_length_mismatch"] == 0
    # tokens per hash id: 515, 525, 520, 50, 5 -> median 515
    assert notes["input_tokens_per_hash_id_median"] == 515.0


def test_malformed_turns_are_rejected(tmp_path: Path) -> None:
    good = _CONVS[0]
    bad = [
        "not a conversation",
        [],
        [good[0], 7],
        [{k: v for k, v in good[0].items() if k != "timestamp"}],
        [dict(good[0], input_token_count=-5)],
        [dict(good[0], output_token_count=2.5)],
        [dict(good[0], turn="one")],
        [dict(good[0], input_tokens=[1, "x"])],
        [dict(good[0], turn=3, output_tokens=[1])],  # counted, not rejected
    ]
    lo = servegen_conversations.load([_write(tmp_path / "c.json", [good, *bad])], "t")
    reasons = lo.rejects["reason"].to_list()
    req = lo.tables["requests"]
    assert lo.rows_read == 3 + 1 + 1 + 2 + 1 + 1 + 1 + 1 + 1 + 1 == req.height + len(reasons)
    assert reasons == [
        "conversation 1: not a non-empty list of turns",
        "conversation 2: not a non-empty list of turns",
        "conversation 3, turn at position 1: not a JSON object",
        "conversation 4, turn at position 0: missing required field arrival_s (timestamp)",
        "conversation 5, turn at position 0: negative input_tokens (input_token_count): -5",
        "conversation 6, turn at position 0: non-integer output_tokens (output_token_count): "
        "2.5",
        'conversation 7, turn at position 0: turn is not a non-negative integer: "one"',
        'conversation 8, turn at position 0: malformed input_tokens (expected a list of '
        'integers): [1,"x"]',
    ]
    assert set(lo.rejects["line"].to_list()) == {1}
    assert lo.rejects["raw"][2] == "7"
    assert lo.notes["turn_mismatch"] == 1 and lo.notes["output_hash_length_mismatch"] == 1
    assert sorted(req["session"].unique().to_list()) == ["0", "3", "9"]


def test_not_a_list_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "conversations_hashed.json"
    path.write_text('{"turn": 0}')
    with pytest.raises(FormatError, match="not a JSON list of conversations"):
        servegen_conversations.load([path], "t")
    path.write_text('[[{"turn": 0, ')
    with pytest.raises(FormatError, match=r"conversations_hashed\.json:1: not a JSON list"):
        servegen_conversations.load([path], "t")


def test_ingest_by_name_and_sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _write(mirror / "conversations_hashed.json", _CONVS)
    monkeypatch.setenv("SERVETRACE_MIRROR", str(mirror))
    monkeypatch.setenv("SERVETRACE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("COLUMNS", "200")
    res = runner.invoke(app, ["ingest", "servegen_conversations"])
    assert res.exit_code == 0, res.output
    store = Store(tmp_path / "store")
    meta = store.sql("SELECT trace, rows_read, rejected, batch, hash_block_tokens, "
                     "source_urls FROM traces").row(0)
    assert meta[:5] == ("servegen_conversations/conversations", 5, 0, False, None)
    assert meta[5] == ["https://raw.githubusercontent.com/alibaba/ServeGen/main/data/"
                       "conversations/conversations_hashed.json"]
    got = store.sql("SELECT session, count(*) n, max(turn) t FROM requests GROUP BY session "
                    "ORDER BY session")
    assert got.rows() == [("0", 3, 3), ("1", 1, 1), ("2", 1, 1)]
    res = runner.invoke(app, ["analyze", "servegen_conversations/conversations"])
    assert res.exit_code == 0, res.output
    bad = tmp_path / "broken.json"
    bad.write_text("[[{\"turn\": 0, \"input_token_count\": 1")
    res = runner.invoke(app, ["ingest", str(bad), "--as", "servegen_conversations"])
    assert res.exit_code == 1 and "broken.json:1" in res.output
    assert "Traceback" not in res.output
