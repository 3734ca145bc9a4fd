"""A Parquet file in a canonical schema is a trace for every command that takes one, and
`servetrace replay` replays it (sessions in closed loop) against the test server's prefix
cache, printing progress and the achieved hit ratio beside the trace's.

The file is two real WEKA agentic-coding conversations (blocks shrunk from 64 to 4 tokens,
as in tests/test_replay_sessions.py), with its block size in the Parquet metadata. Expected
figures come from the library functions on the same frame.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from servetrace.analysis import kvcache, sessions
from servetrace.cli import app
from servetrace.loaders import agentic_coding_weka
from servetrace.synth.server import Server, ServerConfig

runner = CliRunner()
BLOCK = 4


@pytest.fixture(scope="module")
def frame(shared: Path) -> pl.DataFrame:
    files = sorted((shared / "agentic_coding_weka").glob("*.json"))[:2]
    requests = agentic_coding_weka.load(files, "weka").tables["requests"]
    n = pl.col("hash_ids").list.len()
    return requests.with_columns(
        ((n - 1) * BLOCK + ((pl.col("input_tokens") - (n - 1) * 64) * BLOCK + 63) // 64)
        .alias("input_tokens"),
        pl.lit(2).alias("output_tokens"), pl.col("think_s").clip(upper_bound=20.0))


@pytest.fixture
def parquet(frame, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SERVETRACE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("COLUMNS", "200")
    path = tmp_path / "weka.parquet"
    frame.write_parquet(path, metadata={"hash_block_tokens": str(BLOCK),
                                        "hash_scope": "session"})
    return path


def _json(args: list[str]) -> dict:
    res = runner.invoke(app, [*args, "--format", "json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_analysis_commands_take_a_parquet_file(parquet, frame, tmp_path):
    doc = _json(["kvcache", str(parquet), "--capacity", "12000"])
    want = kvcache.hit_ratios(frame, block_tokens=BLOCK, scope="session")
    [row] = doc["hit_ratios"]
    assert (row["block_tokens"], row["scope"]) == (BLOCK, "session")  # from the metadata
    assert row["token_hit_ratio"] == pytest.approx(want.token_hit_ratio)
    curve = kvcache.lru_curve(frame, [12000], block_tokens=BLOCK, scope="session")
    assert doc["lru"][0]["token_hit_ratio"] == pytest.approx(curve["token_hit_ratio"][0])
    doc = _json(["sessions", str(parquet)])
    assert doc["sessions"] == json.loads(json.dumps(sessions.summary(frame).to_dicts(),
                                                    default=str))
    doc = _json(["analyze", str(parquet)])
    assert doc["table"] == "requests" and doc["tokens"][0]["n"] == frame.height
    res = runner.invoke(app, ["report", str(parquet), "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    assert "prefix" in (tmp_path / "r.html").read_text().lower()
    res = runner.invoke(app, ["export", str(parquet), "--to", "guidellm", "-o",
                              str(tmp_path / "g.jsonl")])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.drop("input_tokens"), "no 'input_tokens' column (requests)"),
    (lambda f: f.with_columns(pl.col("input_tokens").cast(pl.String)),
     "column 'input_tokens' is String, expected an integer (canonical requests schema)"),
    (lambda f: f.with_columns(pl.col("arrival_s").cast(pl.String)),
     "column 'arrival_s' is String, expected a number"),
    (lambda f: f.with_columns(pl.col("hash_ids").cast(pl.List(pl.String))),
     "column 'hash_ids' is List(String), expected a list of integers"),
])
def test_a_bad_parquet_file_is_named_with_its_column(parquet, frame, tmp_path, change,
                                                     message):
    bad = tmp_path / "bad.parquet"
    change(frame).write_parquet(bad)
    for command in (["sessions", str(bad)], ["kvcache", str(bad)], ["analyze", str(bad)],
                    ["replay", str(bad), "--endpoint", "http://127.0.0.1:9"]):
        res = runner.invoke(app, command)
        assert res.exit_code == 1, (command, res.output)
        text = " ".join(res.output.split())
        assert str(bad) in text.replace("\n", "") and message in text, (command, text)
        assert "Traceback" not in res.output


def test_missing_and_unreadable_files(tmp_path, parquet):
    res = runner.invoke(app, ["sessions", str(tmp_path / "none.parquet")])
    assert res.exit_code == 1 and "no such file" in res.output
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    res = runner.invoke(app, ["kvcache", str(junk)])
    assert res.exit_code == 1 and "not a readable Parquet file" in res.output


def test_replay_takes_the_parquet_file_in_closed_loop(parquet, frame):
    config = ServerConfig(prefill_base_s=0.001, prefill_tokens_per_s=1e8,
                          decode_tokens_per_s=1e4, block_size=BLOCK,
                          prefix_cache_tokens=10**9)
    with Server(config) as server:
        res = runner.invoke(app, ["replay", str(parquet), "--endpoint", server.url,
                                  "--time-scale", "0.001", "--limit", "40",
                                  "--cache-tokens", str(10**9), "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    [summary] = doc["replay"]
    assert doc["trace"].startswith("replay/weka/")
    head = frame.sort("arrival_s", maintain_order=True).head(40)
    want = kvcache.hit_ratios(head, block_tokens=BLOCK, scope="session").token_hit_ratio
    assert summary["requests"] == 40 and summary["failed"] == 0
    assert summary["trace_hit_ratio"] == pytest.approx(want)
    assert summary["hit_ratio"] == pytest.approx(want)  # an infinite cache: the same order
    assert summary["closed_loop_requests"] == 38 and summary["closed_loop_violations"] == 0
    # not a terminal: progress lines, not one per second, and the last one complete
    lines = [ln for ln in res.stderr.splitlines() if "sent " in ln]
    assert lines and "sent 40/40" in lines[-1] and "finished 40" in lines[-1]


def test_replay_duration_slice_open_loop(parquet, frame):
    config = ServerConfig(prefill_base_s=0.001, prefill_tokens_per_s=1e8,
                          decode_tokens_per_s=1e4, block_size=BLOCK)
    with Server(config) as server:
        res = runner.invoke(app, ["replay", str(parquet), "--endpoint", server.url,
                                  "--time-scale", "0.001", "--duration", "0.05",
                                  "--open-loop", "--format", "json"])
    assert res.exit_code == 0, res.output
    [summary] = json.loads(res.stdout)["replay"]
    offset = pl.col("arrival_s") - pl.col("arrival_s").min()
    assert summary["requests"] == frame.filter(offset * 0.001 < 0.05).height > 2
    assert summary["closed_loop_requests"] == 0
    assert summary["cached_tokens"] is None  # this server has no prefix cache
