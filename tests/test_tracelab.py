"""TraceLab (uw-syfi/TraceLab): the real release is not in ../shared/traces, so these tests
write rounds in the exact documented shape of its public JSONL (the keys, key order, nesting,
``null``s and millisecond ``Z`` timestamps of the repository's sanitized example rows, with
values of our own) and check every mapped value against hand-computed ground truth."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from servetrace.cli import app
from servetrace.loaders import registry, tracelab
from servetrace.loaders.ingest import ingest
from servetrace.loaders.store import Store

runner = CliRunner()
DAY = "2026-03-21T"


def _ev(kind: str, clock: str | None, **extra) -> dict:
    source = {"user_message": "event_msg.user_message", "reasoning": "response_item.reasoning",
              "text": "response_item.message", "tool_call": "response_item.function_call",
              "tool_result": "response_item.function_call_output",
              "usage_report": "event_msg.token_count"}[kind]
    ev = {"event_type": kind, "timestamp": None if clock is None else f"{DAY}{clock}Z",
          "source": source}
    if clock is None:
        del ev["timestamp"]
    return {**ev, **extra}


def _tool(i: int, name: str, emitted: str, result: str, wall: int) -> dict:
    return {"tool_index": i, "tool_name": name, "tool_call_id": f"call_{name}{i}",
            "emitted_at": f"{DAY}{emitted}Z", "result_at": f"{DAY}{result}Z", "input_chars": 90,
            "result_chars": 120, "tool_wall_latency_ms": wall, "tool_internal_latency_ms": None,
            "is_error": False}


def _codex(session: str, index: int, turn: str, prefix: int, append: int, out: int,
           reasoning: int, events: list, tools: list = ()) -> dict:
    sid = f"codex:{session}"
    return {"provider": "codex", "session_id": sid, "round_index": index,
            "round_id": f"{turn}:{index}", "turn_id": turn, "model": "gpt-5.4",
            "input_tokens_total": prefix + append, "prefix_tokens": prefix,
            "newly_append_tokens": append, "claude_uncached_input_tokens": None,
            "claude_cache_creation_input_tokens": None, "claude_cache_read_input_tokens": None,
            "output_tokens": out, "reasoning_output_tokens": reasoning, "timing_events": events,
            "tools": list(tools), "current_input_event_count": 1,
            "current_user_message_count": 1, "current_tool_result_count": 0,
            "current_user_message_chars": 40, "current_tool_result_chars": 0,
            "current_input_chars": 40, "first_input_event_type": events[0]["event_type"],
            "store": ".codex", "user": "user_0a0a0a0a",
            "trace_key": f"codex:{sid}:{turn}:{index}"}


def _claude(index: int, prefix: int, uncached: int, created: int, out: int, events: list,
            tools: list = (), first: str | None = "user_message") -> dict:
    sid = "claude:5e5e5e5e-0000-4000-8000-000000000001"
    msg = f"msg_{index:024x}"
    return {"provider": "claude", "project": "project_1234abcd", "session_id": sid,
            "round_index": index, "round_id": msg, "model": "claude-opus-4-8",
            "input_tokens_total": prefix + uncached + created, "prefix_tokens": prefix,
            "newly_append_tokens": uncached + created, "claude_uncached_input_tokens": uncached,
            "claude_cache_creation_input_tokens": created,
            "claude_cache_read_input_tokens": prefix, "output_tokens": out,
            "reasoning_output_tokens": None, "timing_events": events, "tools": list(tools),
            "current_input_event_count": 1, "current_user_message_count": 1,
            "current_tool_result_count": 0, "current_user_message_chars": 146,
            "current_tool_result_chars": 0, "current_input_chars": 146,
            "first_input_event_type": first, "store": ".claude", "user": "user_0b0b0b0b",
            "trace_key": f"claude:{sid}:{msg}"}


# Session A (Codex): a user turn of two rounds (the second after a tool), then a new user turn.
A0 = _codex("aaaa", 0, "turn-1", 6000, 1000, 300, 120, [
    _ev("user_message", "10:00:00.000", content_chars=40), _ev("reasoning", "10:00:02.000"),
    _ev("text", "10:00:03.500"), _ev("tool_call", "10:00:04.000", tool_name="exec_command"),
    _ev("usage_report", "10:00:04.010")],
    [_tool(0, "exec_command", "10:00:04.000", "10:00:04.250", 250)])
A1 = _codex("aaaa", 1, "turn-1", 7168, 400, 80, 0, [
    _ev("tool_result", "10:00:04.250", result_chars=120), _ev("reasoning", "10:00:05.000"),
    _ev("text", "10:00:06.250"), _ev("usage_report", "10:00:06.260")])
A2 = _codex("aaaa", 2, "turn-2", 7424, 500, 50, 10, [
    _ev("user_message", "10:01:00.000"), _ev("text", "10:01:01.500"),
    _ev("usage_report", "10:01:01.510")])
# Session B (Claude): parallel tools, the round starts at the *latest* tool result; then a
# round with no input event (starts at its first event) and one event without a timestamp.
B0 = _claude(0, 20000, 1000, 2000, 700, [
    _ev("user_message", "10:00:30.500"), _ev("reasoning", "10:00:33.000"),
    _ev("text", "10:00:33.400"), _ev("tool_call", "10:00:34.000", tool_name="Bash"),
    _ev("tool_call", "10:00:34.500", tool_name="WebSearch")],
    [_tool(0, "Bash", "10:00:34.000", "10:00:35.000", 1000),
     _tool(1, "WebSearch", "10:00:34.500", "10:00:41.000", 6500)])
B1 = _claude(1, 23000, 2, 1198, 400, [
    _ev("tool_result", "10:00:35.000"), _ev("tool_result", "10:00:41.000"),
    _ev("text", "10:00:44.000")], first="tool_result")
B2 = dict(_claude(2, 24200, 2, 398, 90, [
    _ev("reasoning", "10:00:50.000"), _ev("text", None), _ev("text", "10:00:52.000")],
    first=None), input_tokens_total=24601)  # one more than prefix + appended: counted
# Session C (Codex): the second round starts before the first one's last event.
C0 = _codex("cccc", 0, "turn-9", 0, 900, 20, 5, [
    _ev("user_message", "10:02:00.000"), _ev("text", "10:02:10.000")])
C1 = _codex("cccc", 1, "turn-9", 896, 30, 10, 0, [
    _ev("tool_result", "10:02:05.000"), _ev("text", "10:02:06.000")])
GOOD = [A0, A1, B0, B1, B2, A2, C0, C1]


def _bad_time() -> dict:
    row = json.loads(json.dumps(A1))
    row["timing_events"][1]["timestamp"] = "2026-03-21 around ten"
    return row


BAD = [  # (line text, reason prefix)
    ('{"provider": "codex", "session_id": "codex:x", "prefix_tokens": 5,', "malformed JSON"),
    (json.dumps(_bad_time()), "unparsable ISO-8601 timestamp in timing_events[1]: "
                              "'2026-03-21 around ten'"),
    (json.dumps(dict(A1, newly_append_tokens=-5)), "negative newly_append_tokens: -5"),
    (json.dumps({k: v for k, v in A1.items() if k != "prefix_tokens"}), "missing prefix_tokens"),
    (json.dumps({k: v for k, v in A1.items() if k != "timing_events"}),
     "missing timing_events"),
    (json.dumps(dict(A1, output_tokens=12.5)), "non-integer output_tokens: 12.5"),
    (json.dumps(dict(A1, reasoning_output_tokens="many")),
     "unparsable reasoning_output_tokens: 'many'"),
    (json.dumps(dict(A1, round_index=-1)), "round_index is not a non-negative integer: -1"),
    (json.dumps(dict(A1, timing_events=[_ev("text", None)])), "no timing event with a timestamp"),
    (json.dumps(dict(A1, timing_events="oops")), "timing_events is not a list: oops"),
    ("[1, 2, 3]", "malformed JSON"),
]


def _write(path: Path, rows: list[dict], bad: list[tuple[str, str]] = ()) -> Path:
    text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)
    text += "\n".join(line for line, _ in bad) + ("\n" if bad else "")
    path.write_text(text)
    return path


def test_documented_rows_map_onto_requests(tmp_path: Path) -> None:
    path = _write(tmp_path / "syfi_coding_trace.jsonl", GOOD)
    assert registry.detect(path) is tracelab
    assert tracelab.DATASET.part_for_file("syfi_coding_trace.jsonl.gz").name == "coding_trace"
    lo = tracelab.load([path], "t")
    assert (lo.rows_read, lo.rejects.height) == (8, 0)
    assert lo.origin == datetime(2026, 3, 21, 10, 0, 0)
    req = lo.tables["requests"]
    expect = pl.DataFrame({
        "request_id": [A0["trace_key"], A1["trace_key"], B0["trace_key"], B1["trace_key"],
                       B2["trace_key"], A2["trace_key"], C1["trace_key"], C0["trace_key"]],
        "arrival_s": [0.0, 4.25, 30.5, 41.0, 50.0, 60.0, 125.0, 120.0],
        "input_tokens": [7000, 7568, 23000, 24200, 24600, 7924, 926, 900],
        "cached_tokens": [6000, 7168, 20000, 23000, 24200, 7424, 896, 0],
        "output_tokens": [300, 80, 700, 400, 90, 50, 10, 20],
        "reasoning_tokens": [120, 0, None, None, None, 10, 0, 5],
        "turn": [1, 2, 1, 2, 3, 3, 2, 1],
        "request_type": ["user_message", "tool_result", "user_message", "tool_result", None,
                         "user_message", "tool_result", "user_message"],
        "server_s": [4.0, 2.0, 4.0, 3.0, 2.0, 1.5, 1.0, 10.0],
        "think_s": [None, None, None, None, None, 53.74, None, None],
        "tool_s": [None, 0.24, None, 6.5, None, None, None, None],
    }).sort("arrival_s")
    got = req.select(expect.columns)
    assert got["request_id"].to_list() == expect["request_id"].to_list()
    for col in expect.columns[1:]:
        want, have = expect[col].to_list(), got[col].to_list()
        assert have == pytest.approx(want, abs=1e-9) if col.endswith("_s") else have == want, col
    assert req["latency_s"].to_list() == req["server_s"].to_list()
    assert req["log_type"].to_list() == ["codex", "codex", "claude", "claude", "claude",
                                         "codex", "codex", "codex"]
    assert set(req["tenant"]) == {"user_0a0a0a0a", "user_0b0b0b0b"}
    assert req["session"].n_unique() == 3 and set(req["model"]) == {"gpt-5.4",
                                                                      "claude-opus-4-8"}
    for absent in ("parent_request_id", "subagent", "agent_depth", "ttft_s", "hash_ids"):
        assert absent not in req.columns  # null in the store: the release has no such field
    n = lo.notes
    assert (n["sessions"], n["users"], n["codex_turns"], n["tool_records"]) == (3, 2, 3, 3)
    assert (n["timing_events"], n["events_without_timestamp"]) == (27, 1)
    assert (n["arrival_from_first_event"], n["input_tokens_total_mismatch"]) == (1, 1)
    assert (n["overlapping_rounds"], n["rounds_with_think_time"],
            n["rounds_with_tool_time"]) == (1, 1, 2)
    assert n["providers"] == {"claude": 3, "codex": 5} and n["duplicate_trace_keys"] == 0


def test_malformed_lines_are_rejected_with_reasons(tmp_path: Path) -> None:
    path = _write(tmp_path / "mixed.jsonl", GOOD, BAD)
    path.write_text(path.read_text() + "\n\n")  # blank lines are not rows
    lo = tracelab.load([path], "t")
    assert lo.tables["requests"].height == len(GOOD)
    assert lo.rows_read == len(GOOD) + len(BAD) == lo.tables["requests"].height \
        + lo.rejects.height
    rej = lo.rejects.sort("line")
    assert rej["line"].to_list() == list(range(len(GOOD) + 1, len(GOOD) + len(BAD) + 1))
    for (line, reason), got in zip(BAD, rej.iter_rows(named=True), strict=True):
        assert got["reason"].startswith(reason), (got["reason"], reason)
        assert got["raw"] == line and got["source"] == str(path)
    # a rejected round is not anyone's previous round: A1's tool time is unchanged
    req = lo.tables["requests"]
    assert req.filter(pl.col("request_id") == A1["trace_key"])["tool_s"].to_list() \
        == pytest.approx([0.24])


def test_iso_times_with_offsets_are_utc() -> None:
    texts = pl.Series(["2026-03-21T10:00:44.000Z", "2026-03-21T12:00:44+02:00",
                       "2026-03-21T05:30:44.000-04:30", "2026-03-21T10:00:44",
                       "2026-03-21T25:00:00Z", "yesterday"])
    got = pl.select(tracelab.parse_iso(pl.lit(texts))).to_series().to_list()
    assert got[:4] == [datetime(2026, 3, 21, 10, 0, 44)] * 4 and got[4:] == [None, None]


def test_gzip_release_and_several_files_share_one_origin(tmp_path: Path) -> None:
    raw = "".join(json.dumps(r) + "\n" for r in GOOD[:4])
    gz = tmp_path / "syfi_coding_trace.jsonl.gz"
    gz.write_bytes(gzip.compress(raw.encode()))
    assert registry.detect(gz) is tracelab
    other = _write(tmp_path / "more.jsonl", GOOD[4:])
    lo = tracelab.load([gz, other], "t")
    assert lo.tables["requests"].height == 8 and lo.origin == datetime(2026, 3, 21, 10)
    # A2 (second file) follows A1 (first file) in its session: its think time spans the files
    req = lo.tables["requests"]
    assert req.filter(pl.col("request_id") == A2["trace_key"])["think_s"].to_list() \
        == pytest.approx([53.74])


def test_other_formats_are_not_detected(tmp_path: Path) -> None:
    qwen = tmp_path / "q.jsonl"
    qwen.write_text(json.dumps({"chat_id": 0, "parent_chat_id": -1, "timestamp": 0.0,
                                "input_length": 4, "output_length": 2, "type": "text",
                                "turn": 1, "hash_ids": [0]}) + "\n")
    assert not tracelab.detect(qwen) and registry.detect(qwen) is not tracelab


def test_ingest_through_the_store(tmp_path: Path) -> None:
    path = _write(tmp_path / "syfi_coding_trace.jsonl", GOOD, BAD)
    store = Store(tmp_path / "store")
    [rec] = ingest(path, store=store, progress=False)
    assert rec["trace"] == "tracelab/coding_trace"
    assert (rec["rows_read"], rec["rows_accepted"], rec["rejected"]) == (19, 8, 11)
    row = store.sql("SELECT dataset, license, origin, source_urls FROM traces").row(0)
    assert row[:2] == ("tracelab", "CC-BY-4.0")
    assert row[2].replace(tzinfo=None) == datetime(2026, 3, 21, 10)
    assert row[3] == [tracelab.DATASET.parts[0].files[0].url]
    got = store.sql("SELECT sum(input_tokens), sum(cached_tokens), sum(reasoning_tokens), "
                    "count(think_s), count(tool_s), count(parent_request_id) FROM requests "
                    "WHERE trace = 'tracelab/coding_trace'").row(0)
    assert got == (sum(r["prefix_tokens"] + r["newly_append_tokens"] for r in GOOD),
                   sum(r["prefix_tokens"] for r in GOOD), 135, 1, 2, 0)
    assert store.sql("SELECT count(*) FROM rejects").item() == 11


def test_cli_ingest_and_sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVETRACE_STORE", str(tmp_path / "store"))
    path = _write(tmp_path / "rounds.jsonl", GOOD, BAD)
    res = runner.invoke(app, ["ingest", str(path), "--trace", "tracelab/mine"])
    assert res.exit_code == 0, res.output
    assert "tracelab/mine" in res.output
    res = runner.invoke(app, ["sessions", "tracelab/mine", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    [summary] = doc["sessions"]
    assert (summary["requests"], summary["sessions"]) == (8, 3)
    assert summary["think_s_p50"] == pytest.approx(53.74)
    assert summary["tool_s_p50"] == pytest.approx((0.24 + 6.5) / 2)
    assert summary["server_s_p50"] == pytest.approx(2.5)  # of 1, 1.5, 2, 2, 3, 4, 4, 10
    assert summary["subagent_share"] is None  # no sub-agent column in the release
    mix = {r["request_type"]: r["requests"] for r in doc["request_types"]}
    assert mix == {"user_message": 4, "tool_result": 3, None: 1}
    # a file of another format read as TraceLab: one clear line, no traceback
    other = tmp_path / "other.jsonl"
    other.write_text('{"chat_id": 1, "timestamp": 0}\n')
    res = runner.invoke(app, ["ingest", str(other), "--as", "tracelab", "--trace", "x/y"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "every row of x/y was rejected" in res.output
