"""Counts beyond float64: stored exactly below 2^63, rejected with a reason at 2^63 and above.

Rows are real rows from ../shared/traces (or the documented format) with one count changed.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from servetrace.cli import app
from servetrace.loaders import (
    azure_functions_2019,
    azure_llm_2023,
    burstgpt,
    huawei_2025,
    mooncake,
)
from tests.conftest import write

EXACT = 9_007_199_254_740_993        # 2^53 + 1: float64 makes it ...992
MAX = 9_223_372_036_854_775_807      # 2^63 - 1: the largest Int64
TOO_BIG = ["9223372036854775808", "18446744073709551616"]  # 2^63 and 2^64


def _azure(shared: Path, tmp_path: Path, values: list[str]) -> Path:
    src = (shared / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv").read_text()
    header, *rows = src.splitlines()[: 1 + len(values)]
    body = [f"{r.split(',')[0]},{v},{r.split(',')[2]}" for r, v in zip(rows, values, strict=True)]
    return write(tmp_path / "AzureLLMInferenceTrace_code.csv", "\n".join([header, *body]) + "\n")


def _accounted(loaded, table: str = "requests") -> None:
    assert loaded.rows_read == loaded.tables[table].height + loaded.rejects.height


def test_azure_llm_big_counts(shared, tmp_path):
    path = _azure(shared, tmp_path, ["4808", str(EXACT), str(MAX), *TOO_BIG])
    loaded = azure_llm_2023.load([path], "t")
    assert loaded.tables["requests"]["input_tokens"].to_list() == [4808, EXACT, MAX]
    assert dict(loaded.rejects.select("line", "reason").rows()) == {
        5: "input_tokens (ContextTokens) out of range (2^63 or more): 9223372036854775808",
        6: "input_tokens (ContextTokens) out of range (2^63 or more): 18446744073709551616",
    }
    assert loaded.rejects["raw"][0] == path.read_text().splitlines()[4]
    _accounted(loaded)


def test_big_count_on_the_fast_path_is_exact(shared, tmp_path):
    """A well-formed file is read as numbers; a count above 2^53 still is not rounded."""
    path = _azure(shared, tmp_path, ["4808", str(EXACT)])
    loaded = azure_llm_2023.load([path], "t")
    assert loaded.tables["requests"]["input_tokens"].to_list() == [4808, EXACT]


def test_burstgpt_csv_and_jsonl(shared, tmp_path):
    csv = write(tmp_path / "BurstGPT_1.csv",
                "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                "5,ChatGPT,472,18,490,Conversation log\n"
                f"45,ChatGPT,{EXACT},230,{EXACT + 230},Conversation log\n"
                f"118,GPT-4,417,{TOO_BIG[1]},693,Conversation log\n")
    loaded = burstgpt.load([csv], "t")
    assert loaded.tables["requests"]["input_tokens"].to_list() == [472, EXACT]
    assert loaded.rejects.select("line", "reason").rows() == [
        (4, "output_tokens (Response tokens) out of range (2^63 or more): "
            "18446744073709551616")]
    _accounted(loaded)

    lines = (shared / "burstgpt_sample" / "sample.jsonl").read_text().splitlines()[:3]
    rows = [json.loads(line) for line in lines]
    rows[1]["input_length"] = EXACT
    rows[2]["output_length"] = int(TOO_BIG[0])
    path = write(tmp_path / "sample.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    loaded = burstgpt.load([path], "t")
    assert sorted(loaded.tables["requests"]["input_tokens"].to_list()) == [
        rows[0]["input_length"], EXACT]
    assert loaded.rejects.select("line", "reason").rows() == [
        (3, "output_tokens (output_length) out of range (2^63 or more): 9223372036854775808")]
    _accounted(loaded)


def test_mooncake(shared, tmp_path):
    lines = (shared / "mooncake_fast25" / "conversation_trace.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines[:3]]
    rows[1]["output_length"] = EXACT
    rows[2]["output_length"] = int(TOO_BIG[1])
    path = write(tmp_path / "conversation_trace.jsonl",
                 "\n".join(json.dumps(r) for r in rows) + "\n")
    loaded = mooncake.load([path], "t")
    assert loaded.tables["requests"]["output_tokens"].to_list() == [500, EXACT]
    [(line, reason)] = loaded.rejects.select("line", "reason").rows()
    assert line == 3 and reason.startswith("output_tokens (output_length) out of range")
    _accounted(loaded)


def test_azure_functions_2019_minute_counts(shared, tmp_path):
    """A per-minute count that float64 cannot hold exactly is a reject, never a traceback."""
    src = (shared / "azure_functions_2019" / "invocations.csv").read_text().splitlines()
    header, rows = src[0], src[1:4]
    cells = rows[1].split(",")
    cells[4] = TOO_BIG[1]
    rows[1] = ",".join(cells)
    cells = rows[2].split(",")
    cells[5] = str(EXACT)
    rows[2] = ",".join(cells)
    path = write(tmp_path / "invocations_per_function_md.anon.d01.csv",
                 "\n".join([header, *rows]) + "\n")
    loaded = azure_functions_2019.load([path], "t")
    assert dict(loaded.rejects.select("line", "reason").rows()) == {
        3: f"count (minute 480) too large to store exactly (2^53 or more): {TOO_BIG[1]}",
        4: f"count (minute 481) too large to store exactly (2^53 or more): {EXACT}",
    }
    assert loaded.rows_read == 3 == loaded.accepted + loaded.rejects.height


def test_huawei_2025_timeseries_count(tmp_path):
    folder = tmp_path / "requests"
    folder.mkdir()
    path = write(folder / "day_00.csv", "day,time,400---418---pool22-300-128\n"
                 f"0,0,1.0\n0,60,{EXACT}\n0,120,{TOO_BIG[0]}\n")
    loaded = huawei_2025.load([path], "t")
    assert loaded.tables["invocation_counts"]["count"].to_list() == [1]
    assert [r.split(" for ")[0] for r in loaded.rejects["reason"]] == [
        f"count {EXACT} too large to store exactly (2^53 or more)",
        f"count {TOO_BIG[0]} too large to store exactly (2^53 or more)"]
    assert (loaded.rows_read, loaded.accepted) == (3, 1)


def test_cli_ingest_of_huge_count_has_no_traceback(shared, tmp_path, monkeypatch):
    monkeypatch.setenv("SERVETRACE_STORE", str(tmp_path / "store"))
    path = _azure(shared, tmp_path, ["4808", str(EXACT), TOO_BIG[1]])
    res = CliRunner().invoke(app, ["ingest", str(path)])
    assert res.exit_code == 0, res.output
    assert "3 rows read, 2 stored, 1 rejected" in res.output
    res = CliRunner().invoke(app, ["sql", "select input_tokens from requests order by 1",
                                   "--format", "csv"])
    assert res.stdout == f"input_tokens\n4808\n{EXACT}\n"
    assert pl.read_csv(path).height == 3
