"""GitHub Copilot coding-agent traces 2026: the real shards are not in ../shared/traces, so
these tests write gzip JSON-lines shards in the exact shape of the release's ``schema.json``
(Azure/AzurePublicDataset, analysis/GitHubCopilotCodingAgents/), one session per line, and
tar them the way the release does (``date.YYYY-MM-DD.tar.gz`` holding ``date=YYYY-MM-DD/``)."""

from __future__ import annotations

import gzip
import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from servetrace.cli import app
from servetrace.loaders import azure_copilot_agents_2026 as copilot
from servetrace.loaders import registry
from servetrace.loaders.ingest import ingest
from servetrace.loaders.store import Store

runner = CliRunner()
DAY = "2026-06-01"


def _call(mid: str, ts: str, ms: float | str | None, prompt: int | str | None, comp: int,
          cached: int, init: str = "agent", result: str = "Success") -> dict:
    tokens = {"total": (prompt or 0) + comp if isinstance(prompt, int | None) else 0,
              "prompt": prompt, "completion": comp, "cached": cached,
              "cached_pct": 100.0 * cached / prompt if isinstance(prompt, int) and prompt else 0}
    if prompt is None:
        del tokens["prompt"]
    return {"message_id": mid, "timestamp": ts, "duration_ms": ms, "initiator_type": init,
            "model": "Model B" if init == "user" else "Model A", "result": result,
            "status_code": "OK", "tokens": tokens,
            "message_metadata": [{"type": "System", "role": "system", "sequenceId": 0,
                                  "token_len": 12},
                                 {"type": "UserMessage", "role": "user", "sequenceId": 1,
                                  "token_len": 30}]}


def _batch(ts: str | None, ms: float, rid: str, calls: int = 1) -> dict:
    out = {"timestamp": ts, "duration_ms": ms, "auto_continue": True, "result": "Success",
           "request_id": rid,
           "function_calls": [{"name": "read_file", "status": 1, "duration_ms": ms / 2}] * calls}
    if ts is None:
        del out["timestamp"]
    return out


T = "2026-06-01T10:00:"
# Session s1, ground truth worked out by hand below.
S1 = {"session_id": "s1", "date": DAY, "turns": [
    {"turn_id": "t1",
     "llm_calls": [_call("m1", T + "00.000Z", 2000.0, 1000, 50, 0, "user"),
                   _call("m2", T + "05.000Z", 1500.0, 1200, 40, 1000),
                   _call("m3", T + "09.500Z", 1000.0, 1300, 30, 1200)],
     "tool_batches": [_batch(T + "02.100Z", 800.0, "m1", calls=2),   # m1 -> m2: 0.8 s
                      _batch(T + "03.000Z", 500.0, "m1"),            # m1 -> m2: 0.5 s
                      _batch(T + "07.000Z", 2000.0, "m2"),           # m2 -> m3: 2.0 s
                      _batch(T + "08.000Z", 900.0, "m2", calls=0)]},  # no function call
    {"turn_id": "t2",
     "llm_calls": [_call("m4", "2026-06-01T10:05:00Z", 3000.0, 2000, 100, 1300, "user",
                         result="UserCancel"),
                   # +02:00 offset: 10:05:30.250 UTC
                   _call("m5", "2026-06-01T12:05:30.250+02:00", 250.5, 2100, 10, 2000)],
     "tool_batches": [_batch("2026-06-01T10:05:10Z", 1000.0, "m4"),   # m4 -> m5: 1.0 s
                      _batch("2026-06-01T10:06:00Z", 500.0, "m5")]}]}  # after the last call
# Session s2: its first turn holds rejected entries (so its tool_s is unknown), the second
# is clean. Starts 90 s after s1.
U = "2026-06-01T10:01:"
S2 = {"session_id": "s2", "date": DAY, "turns": [
    {"turn_id": "u1",
     "llm_calls": [_call("n1", U + "30Z", 900.0, 500, 20, 0, "user"),
                   _call("n2", U + "35Z", -5, 600, 20, 500),               # negative duration
                   _call("n3", U + "40Z", 700.0, None, 20, 0),             # no tokens.prompt
                   _call("n4", "yesterday", 700.0, 700, 20, 0),            # bad timestamp
                   7,                                                      # not an object
                   _call("n5", U + "50Z", 700.0, 12.5, 20, 0),             # fractional
                   _call("n6", U + "55Z", 800.0, 900, 25, 600)],
     "tool_batches": [_batch(U + "32Z", -100.0, "n1"),                     # negative
                      _batch(None, 300.0, "n2"),                           # no timestamp
                      _batch(U + "52Z", 400.0, "n5")]},
    {"turn_id": "u2",
     "llm_calls": [_call("n7", "2026-06-01T10:02:00Z", 600.0, 1000, 30, 900, "user"),
                   _call("n8", "2026-06-01T10:02:03Z", 600.0, 1100, 30, 1000)],
     "tool_batches": [_batch("2026-06-01T10:02:01Z", 1500.0, "n7")]}]}
MALFORMED = [
    '{"session_id": "s9", "date": "2026-06-01", "turns": [{"turn_id": ',    # cut off
    "[1, 2, 3]",
    json.dumps({"date": DAY, "turns": []}),
    json.dumps({"session_id": "s7", "date": DAY}),
    json.dumps({"session_id": "s6", "date": DAY,
                "turns": [{"turn_id": "x", "llm_calls": 5, "tool_batches": []}]}),
    json.dumps({"session_id": "s5", "date": DAY, "turns": ["not a turn"]}),
]


def _shard(path: Path, sessions: list, extra: list[str] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(s) for s in sessions] + list(extra)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n\n".join(lines) + "\n")  # blank lines between sessions are not rows
    return path


def _day(root: Path, day: str = DAY) -> Path:
    """The release's layout: date=<day>/manifest.json and two shards."""
    folder = root / f"date={day}"
    _shard(folder / "shard-0000.jsonl.gz", [S1])
    _shard(folder / "shard-0001.jsonl.gz", [S2], MALFORMED)
    (folder / "manifest.json").write_text(json.dumps({"date": day}))
    return folder


def _archive(root: Path, day: str = DAY) -> Path:
    folder = _day(root / "src", day)
    out = root / f"date.{day}.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return out


def test_documented_session_maps_onto_requests(tmp_path: Path) -> None:
    path = _shard(tmp_path / "shard-0000.jsonl.gz", [S1])
    assert registry.detect(path) is copilot
    lo = copilot.load([path], "t")
    req = lo.tables["requests"]
    assert req["request_id"].to_list() == ["m1", "m2", "m3", "m4", "m5"]
    assert req["arrival_s"].to_list() == pytest.approx([0.0, 5.0, 9.5, 300.0, 330.25])
    assert str(lo.origin) == "2026-06-01 10:00:00+00:00"
    assert req["session"].unique().to_list() == ["s1"]
    assert req["turn"].to_list() == [1, 1, 1, 2, 2]
    assert req["server_s"].to_list() == pytest.approx([2.0, 1.5, 1.0, 3.0, 0.2505])
    assert req["latency_s"].to_list() == req["server_s"].to_list()
    assert req["input_tokens"].to_list() == [1000, 1200, 1300, 2000, 2100]
    assert req["output_tokens"].to_list() == [50, 40, 30, 100, 10]
    assert req["cached_tokens"].to_list() == [0, 1000, 1200, 1300, 2000]
    assert req["request_type"].to_list() == ["user", "agent", "agent", "user", "agent"]
    assert req["model"].to_list() == ["Model B", "Model A", "Model A", "Model B", "Model A"]
    assert req["failed"].to_list() == [False, False, False, True, False]
    # tools between consecutive calls of a turn; none before a turn's first call
    assert req["tool_s"].to_list() == pytest.approx([None, 1.3, 2.0, None, 1.0])
    for absent in ("parent_request_id", "think_s", "hash_ids", "subagent", "tenant"):
        assert absent not in req.columns  # null in the store: the release does not say
    assert (lo.rows_read, lo.accepted, lo.rejects.height) == (11, 11, 0)
    n = lo.notes
    assert (n["tool_batches_attributed"], n["tool_batches_unattributed"],
            n["tool_batches_without_function_calls"]) == (4, 1, 1)
    assert n["tool_s_attributed"] == pytest.approx(4.3)
    assert n["tool_s_unattributed"] == pytest.approx(0.5)
    assert n["results"] == {"Success": 4, "UserCancel": 1}
    assert (n["sessions"], n["turns"], n["token_total_mismatch"], n["cached_above_prompt"],
            n["tool_batches_unmatched_request_id"], n["timestamp_outside_date"]) == \
        (1, 2, 0, 0, 0, 0)


def test_malformed_lines_calls_and_batches_are_rejected(tmp_path: Path) -> None:
    path = _shard(tmp_path / "shard-0001.jsonl.gz", [S2], MALFORMED)
    lo = copilot.load([path], "t")
    req = lo.tables["requests"]
    assert req["request_id"].to_list() == ["n1", "n6", "n7", "n8"]
    # turn u1 holds rejected entries: its tool windows are unknown; u2 is clean
    assert req["tool_s"].to_list() == pytest.approx([None, None, None, 1.5])
    rejects = lo.rejects.sort("line", "reason")
    reasons = dict(zip(rejects["reason"], rejects["line"], strict=True))
    assert reasons == {
        "negative duration_ms: -5": 1,
        "missing required field input_tokens (tokens.prompt)": 1,
        "unparsable arrival_s (timestamp): 'yesterday'": 1,
        "LLM call entry that is not a JSON object": 1,
        "non-integer input_tokens (tokens.prompt): 12.5": 1,
        "negative tool batch duration_ms: -100": 1,
        "missing tool batch timestamp": 1,
        "malformed JSON line": 3,
        "JSON line that is not an object": 5,
        "missing session_id": 7,
        "missing turns list": 9,
        "llm_calls is not a list": 11,
        "a turn that is not a JSON object": 13,
    }
    # 6 whole lines + 9 calls + 4 batches read; 4 calls and 2 batches accepted
    assert (lo.rows_read, lo.accepted, lo.rejects.height) == (19, 6, 13)
    assert lo.rows_read == lo.accepted + lo.rejects.height
    assert (lo.notes["lines_rejected"], lo.notes["calls_rejected"],
            lo.notes["tool_batches_rejected"]) == (6, 5, 2)
    raw = rejects.filter(rejects["reason"] == "negative tool batch duration_ms: -100")["raw"][0]
    assert json.loads(raw)["request_id"] == "n1"


def test_checks_counted_not_rejected(tmp_path: Path) -> None:
    call = _call("k1", "2026-06-03T23:59:59Z", 10.0, 100, 5, 150, "user")
    call["tokens"]["total"] = 999
    twin = dict(_call("k1", "2026-06-04T00:00:01Z", None, 100, 5, 10))
    del twin["duration_ms"]
    s = {"session_id": "k", "date": "2026-06-03", "turns": [
        {"turn_id": "a", "llm_calls": [call, twin],
         "tool_batches": [_batch("2026-06-04T00:00:00Z", 10.0, "elsewhere")]}]}
    lo = copilot.load([_shard(tmp_path / "k.jsonl.gz", [s])], "t")
    n = lo.notes
    assert lo.tables["requests"].height == 2 and lo.rejects.height == 0
    assert (n["token_total_mismatch"], n["cached_above_prompt"], n["duration_missing"],
            n["repeated_message_ids"], n["timestamp_outside_date"],
            n["tool_batches_unmatched_request_id"]) == (1, 1, 1, 1, 1, 1)
    assert lo.tables["requests"]["server_s"].to_list() == [0.01, None]


def test_day_folder_and_archive_detected_and_ingested(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVETRACE_CACHE", str(tmp_path / "cache"))
    folder = _day(tmp_path / "downloaded_data")
    archive = _archive(tmp_path / "release")
    assert registry.detect(folder) is copilot and registry.detect(archive) is copilot
    assert copilot.DATASET.part_for_path(folder).name == DAY
    assert copilot.DATASET.part_for_path(archive).name == DAY
    store = Store(tmp_path / "store")
    [rec] = ingest(folder, store=store, progress=False)
    assert rec["trace"] == f"azure_copilot_agents_2026/{DAY}"
    assert (rec["rows_read"], rec["rows_accepted"], rec["rejected"]) == (30, 17, 13)
    row = store.sql("SELECT count(*), count(DISTINCT session), sum(cached_tokens), "
                    "count(tool_s), count(parent_request_id) FROM requests").row(0)
    assert row == (9, 2, 8000, 4, 0)
    origin = store.sql("SELECT origin, license FROM traces").row(0)
    assert str(origin[0]).startswith("2026-06-01 10:00:00") and origin[1] == "CC-BY-4.0"
    # the archive by dataset name, served from a mirror folder: same trace, same rows
    monkeypatch.setenv("SERVETRACE_MIRROR", str(tmp_path / "release"))
    [again] = ingest(f"azure_copilot_agents_2026/{DAY}", store=store, progress=False)
    assert (again["rows_read"], again["rows_accepted"], again["rejected"]) == (30, 17, 13)
    assert again["source_urls"][0].endswith(f"/ghcp-coding-agent-2026/date.{DAY}.tar.gz")


def test_cli_ingest_sessions_and_kvcache(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVETRACE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("COLUMNS", "200")
    shard = _shard(tmp_path / "shard-0000.jsonl.gz", [S1, S2], MALFORMED)
    res = runner.invoke(app, ["ingest", str(shard), "--trace", "copilot/one"])
    assert res.exit_code == 0, res.output
    assert "copilot/one: 30 rows read" in res.output and "13 rejected" in res.output
    res = runner.invoke(app, ["sessions", "copilot/one", "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    [summary] = out["sessions"]
    assert (summary["requests"], summary["sessions"], summary["turns_per_session_mean"]) == \
        (9, 2, 2.0)
    assert summary["tool_s_p50"] == pytest.approx(1.4)  # median of 1.3, 2.0, 1.0, 1.5
    types = {r["request_type"]: r["requests"] for r in out["request_types"]}
    assert types == {"user": 4, "agent": 5}
    res = runner.invoke(app, ["kvcache", "copilot/one"])
    assert res.exit_code == 1
    assert "no hash_ids" in res.output and "Traceback" not in res.output


def test_days_registered_and_listed() -> None:
    assert [p.name for p in copilot.DATASET.parts] == [f"2026-06-0{d}" for d in range(1, 8)]
    for part in copilot.DATASET.parts:
        [f] = part.files
        assert f.name == f"date.{part.name}.tar.gz"
        assert f.url == ("https://github.com/Azure/AzurePublicDataset/releases/download/"
                         f"ghcp-coding-agent-2026/{f.name}")
    res = runner.invoke(app, ["datasets", "--format", "json"])
    [row] = [d for d in json.loads(res.stdout) if d["name"] == "azure_copilot_agents_2026"]
    assert row["license"] == "CC-BY-4.0" and "2608.00101" in row["citation"]


def test_shard_of_malformed_lines_only(tmp_path: Path) -> None:
    lo = copilot.load([_shard(tmp_path / "bad.jsonl.gz", [], MALFORMED)], "t")
    assert lo.tables["requests"].height == 0 and lo.origin is None
    assert (lo.rows_read, lo.accepted, lo.rejects.height) == (6, 0, 6)


def test_shards_named_one_by_one_have_their_own_zero(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVETRACE_STORE", str(tmp_path / "store"))
    folder = _day(tmp_path)
    res = runner.invoke(app, ["ingest", str(folder / "shard-0000.jsonl.gz"),
                              str(folder / "shard-0001.jsonl.gz"), "--trace", "c/two"])
    assert res.exit_code == 1 and "different time origins" in res.output
    res = runner.invoke(app, ["ingest", str(folder), "--trace", "c/two"])
    assert res.exit_code == 0 and "30 rows read" in res.output
