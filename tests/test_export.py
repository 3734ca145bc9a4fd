"""Exports (synth/export) and synthetic prompts (synth/prompts) on real traces.

Each format is written from a real trace (Azure LLM 2023 conversation, Mooncake FAST'25
conversation, the BurstGPT sample, the InVitro sample of Azure Functions 2019) and read back
as its target reads it: the exact keys or header, the value types, the units (ms = round(s ·
1000), seconds as float) and the row counts. Where this project has a loader for the format
(Mooncake, Azure 2023, BurstGPT, Azure Functions 2019 / InVitro) the file is loaded again and
compared with the frame it came from. Published ground truth: Vidur ships the Azure 2023
conversation trace as ``data/processed_traces/splitwise_conv.csv``, whose first rows are
``0.0,374,44``, ``4.314579,396,109``, ``4.541877,879,55``, ``4.710427,91,16``.
"""

from __future__ import annotations

import csv
import json
import math
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from servetrace.analysis import kvcache
from servetrace.loaders import (
    agentic_coding_weka,
    azure_functions_2019,
    azure_llm_2023,
    burstgpt,
    mooncake,
    qwen_bailian,
)
from servetrace.synth import prompts
from servetrace.synth.export import FORMATS, _common, export, options, vhive

NAMES = ["vllm-custom", "vllm-mooncake", "sglang-custom", "sglang-mooncake", "guidellm",
         "guidellm-mooncake", "guidellm-weka", "weka", "aiperf-single-turn",
         "aiperf-multi-turn", "aiperf-mooncake", "aiperf-bailian", "mooncake", "vidur",
         "vidur-pypi", "splitwise", "inference-perf-azure", "burstgpt", "azure-2023", "vhive",
         "faasrail", "invocations-csv"]
SERVERLESS_FORMATS = ["vhive", "faasrail", "invocations-csv"]
REQUEST_FORMATS = [n for n in NAMES if n not in SERVERLESS_FORMATS]


# -- fixtures: real traces through the loaders --------------------------------------------------
@pytest.fixture(scope="module")
def azure(shared):
    return azure_llm_2023.load([shared / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"],
                               "azure_llm_2023/conv")


@pytest.fixture(scope="module")
def conv(azure):
    return azure.tables["requests"]


@pytest.fixture(scope="module")
def moon(shared):
    return mooncake.load([shared / "mooncake_fast25" / "conversation_trace.jsonl"],
                         "mooncake/conversation").tables["requests"]


@pytest.fixture(scope="module")
def burst(shared):
    return burstgpt.load([shared / "burstgpt_sample" / "sample.jsonl"],
                         "burstgpt/sample").tables["requests"]


@pytest.fixture(scope="module")
def functions_sample(shared):
    return azure_functions_2019.load([shared / "azure_functions_2019"],
                                     "azure_functions_2019/sample")


def jsonl(path: Path) -> list[dict]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def words(text: str) -> int:
    return len(text.split(" ")) if text else 0


# -- registry and errors ------------------------------------------------------------------------
def test_registry_has_every_format_with_units_and_source():
    assert list(FORMATS) == NAMES
    for name, module in FORMATS.items():
        assert module.NAME == name
        assert callable(module.write) and isinstance(module.REQUIRED, tuple)
        doc = module.__doc__
        assert "Source of truth" in doc and "Units" in doc, name
        assert any(u in doc for u in ("milliseconds", "seconds", "minute", "tokens")), name


def test_unknown_format_and_option(tmp_path, conv):
    with pytest.raises(ValueError, match=r"unknown export format 'vllm'.*aiperf-mooncake.*vhive"):
        export(conv, "vllm", tmp_path / "x")
    with pytest.raises(ValueError, match=r"mooncake: unknown option\(s\) seed; it accepts "
                                         r"rebase, block_size, keep_hash_ids"):
        export(conv, "mooncake", tmp_path / "x", seed=1)
    assert options("aiperf-multi-turn") == {"seed": 0, "rebase": True, "min_output_tokens": 1,
                                            "delta_inputs": False, "think_times": True,
                                            "models": None, "priority": False}


@pytest.mark.parametrize("name", REQUEST_FORMATS)
def test_missing_column_named(tmp_path, conv, name):
    with pytest.raises(ValueError, match=rf"{name}: the requests frame lacks column\(s\) "
                                         r"input_tokens"):
        export(conv.drop("input_tokens").head(5), name, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_bad_frames_rejected(tmp_path, conv):
    two = pl.concat([conv.head(3).with_columns(trace=pl.lit("a")),
                     conv.head(3).with_columns(trace=pl.lit("b"))])
    with pytest.raises(ValueError, match="holds 2 traces"):
        export(two, "vidur", tmp_path / "x.csv")
    with pytest.raises(ValueError, match="requests frame is empty"):
        export(conv.head(0), "mooncake", tmp_path / "x.jsonl")
    nulls = conv.head(3).with_columns(pl.Series("output_tokens", [1, None, 2]))
    with pytest.raises(ValueError, match=r"output_tokens \(1 nulls\)"):
        export(nulls, "guidellm", tmp_path / "x.jsonl")
    with pytest.raises(ValueError, match="negative token count"):
        export(conv.head(3).with_columns(input_tokens=pl.lit(-1)), "vidur", tmp_path / "x.csv")
    with pytest.raises(ValueError, match="time_unit"):
        export(conv.head(3), "vllm-mooncake", tmp_path / "x.jsonl", time_unit="us")
    with pytest.raises(ValueError, match="vhive: expected an invocations frame"):
        export(conv.head(3), "vhive", tmp_path / "v")


def test_lazy_input_and_unsorted_rows(tmp_path, conv):
    """A LazyFrame is collected; rows are written in arrival order whatever the input order."""
    part = conv.head(50)
    path = export(part.reverse().lazy(), "vidur", tmp_path / "v.csv").path
    back = pl.read_csv(path)
    assert back["arrived_at"].to_list() == part["arrival_s"].to_list()


# -- Mooncake and its variants ------------------------------------------------------------------
def test_mooncake_round_trip(tmp_path, moon):
    path = export(moon, "mooncake", tmp_path / "trace.jsonl")
    rows = jsonl(path)
    assert len(rows) == moon.height == 12031
    assert all(list(r) == ["timestamp", "input_length", "output_length", "hash_ids"]
               for r in rows[:100])
    assert rows[0] == {"timestamp": 0, "input_length": 6758, "output_length": 500,
                       "hash_ids": list(range(14))}
    assert isinstance(rows[-1]["timestamp"], int) and rows[-1]["timestamp"] == 3_536_999
    back = mooncake.load([path], "again")
    assert back.rejects.height == 0 and back.notes["hash_ids_length_violations"] == 0
    assert back.tables["requests"].equals(moon)


def test_mooncake_from_azure_blocks_and_units(tmp_path, conv):
    """No hash_ids in Azure: ceil(input/512) fresh ids per request, none shared."""
    path = export(conv, "mooncake", tmp_path / "azure.jsonl")
    back = mooncake.load([path], "again")
    assert back.notes["hash_ids_length_violations"] == 0
    req = back.tables["requests"]
    assert req.height == conv.height
    ids = req["hash_ids"].explode()
    assert ids.n_unique() == ids.len() == int(((conv["input_tokens"] + 511) // 512).sum())
    ms = [r["timestamp"] for r in jsonl(path)[:500]]
    assert ms == [round(s * 1000) for s in conv["arrival_s"].head(500)]
    assert (req["arrival_s"] - conv["arrival_s"]).abs().max() <= 0.0005 + 1e-12


@pytest.mark.parametrize("name", ["aiperf-mooncake"])
def test_millisecond_mooncake_variants(tmp_path, moon, name):
    rows = jsonl(export(moon.head(400), name, tmp_path / "t.jsonl"))
    assert len(rows) == 400
    assert set(rows[0]) == {"timestamp", "input_length", "output_length", "hash_ids"}
    assert [r["timestamp"] for r in rows] == [round(s * 1000) for s in moon["arrival_s"][:400]]
    assert all(isinstance(r["timestamp"], int) and r["output_length"] >= 1 for r in rows)
    assert [r["hash_ids"] for r in rows] == moon["hash_ids"].head(400).to_list()


def test_aiperf_mooncake_sessions(tmp_path, burst):
    rows = jsonl(export(burst, "aiperf-mooncake", tmp_path / "t.jsonl", sessions=True))
    assert [r["session_id"] for r in rows] == burst["session"].to_list()
    assert all(len(r["hash_ids"]) == math.ceil(r["input_length"] / 512) for r in rows)


def test_vllm_timed_trace_seconds(tmp_path, moon):
    rows = jsonl(export(moon.head(300), "vllm-mooncake", tmp_path / "t.jsonl"))
    assert set(rows[0]) == {"timestamp", "input_length", "output_length", "hash_ids"}
    assert [r["timestamp"] for r in rows] == moon["arrival_s"].head(300).to_list()
    assert all(isinstance(r["timestamp"], float) for r in rows)
    ms = jsonl(export(moon.head(300), "vllm-mooncake", tmp_path / "m.jsonl", time_unit="ms"))
    assert [r["timestamp"] for r in ms] == [round(r["timestamp"] * 1000) for r in rows]


def test_guidellm_trace_seconds(tmp_path, conv):
    rows = jsonl(export(conv, "guidellm", tmp_path / "t.jsonl"))
    assert len(rows) == conv.height
    assert all(list(r) == ["timestamp", "input_length", "output_length"] for r in rows[:50])
    assert all(isinstance(r["timestamp"], float) and isinstance(r["input_length"], int)
               for r in rows[:50])
    assert [r["timestamp"] for r in rows] == conv["arrival_s"].to_list()
    shifted = conv.head(10).with_columns(pl.col("arrival_s") + 100.0)
    again = jsonl(export(shifted, "guidellm", tmp_path / "r.jsonl", rebase=True))
    assert again[0]["timestamp"] == 0.0
    assert again[-1]["timestamp"] == pytest.approx(conv["arrival_s"][9], abs=1e-9)


def test_guidellm_mooncake_block_rule(tmp_path, moon):
    rows = jsonl(export(moon.head(500), "guidellm-mooncake", tmp_path / "t.jsonl"))
    assert all(math.ceil(r["input_length"] / 512) == len(r["hash_ids"]) for r in rows)
    assert [r["timestamp"] for r in rows] == moon["arrival_s"].head(500).to_list()
    coarse = moon.head(3).with_columns(pl.col("input_tokens") * 4)  # ids of 2048 tokens
    split = jsonl(export(coarse, "guidellm-mooncake", tmp_path / "f.jsonl",
                         hash_block_tokens=2048))
    assert all(math.ceil(r["input_length"] / 512) == len(r["hash_ids"]) for r in split)
    assert split[0]["hash_ids"][:8] == [0, 1, 2, 3, 4, 5, 6, 7]  # id h → 4h .. 4h+3


def test_hash_ids_kept_and_generated_do_not_collide():
    frame = pl.DataFrame({"input_tokens": [1, 512, 513, 0, 1025],
                          "hash_ids": [[0, 6], None, [7], None, None]},
                         schema_overrides={"hash_ids": pl.List(pl.Int64)})
    assert _common.hash_ids(frame).to_list() == [[0, 6], [8], [7], [], [9, 10, 11]]
    assert _common.hash_ids(frame, keep=False).to_list() == [[0], [1], [2, 3], [],
                                                             [4, 5, 6]]
    assert _common.hash_ids(frame, 16, keep=False).list.len().to_list() == [1, 32, 33, 0, 65]
    with pytest.raises(ValueError, match="512-token blocks"):
        _common.hash_ids(frame, 16)


# -- formats with prompt text -------------------------------------------------------------------
def test_vllm_custom(tmp_path, conv):
    part = conv.head(400)
    rows = jsonl(export(part, "vllm-custom", tmp_path / "c.jsonl", seed=3))
    assert len(rows) == 400 and all(list(r) == ["prompt", "output_tokens"] for r in rows)
    assert [words(r["prompt"]) for r in rows] == part["input_tokens"].clip(1).to_list()
    assert [r["output_tokens"] for r in rows] == part["output_tokens"].clip(1).to_list()
    assert len({" ".join(r["prompt"].split()[:8]) for r in rows}) == 400  # no shared prefix
    again = jsonl(export(part, "vllm-custom", tmp_path / "d.jsonl", seed=3))
    assert again == rows


def test_sglang_custom(tmp_path, conv):
    part = conv.head(300).with_columns(pl.Series("output_tokens", [0] + [7] * 299))
    rows = jsonl(export(part, "sglang-custom", tmp_path / "c.jsonl"))
    assert len(rows) == 300 and all(list(r) == ["conversations"] for r in rows)
    turns = [r["conversations"] for r in rows]
    assert all([t["role"] for t in c] == ["user", "assistant"] for c in turns)
    assert [words(c[0]["content"]) for c in turns] == part["input_tokens"].clip(2).to_list()
    assert [words(c[1]["content"]) for c in turns] == [2] + [7] * 299  # SGLang drops < 2


def test_aiperf_single_turn(tmp_path, conv):
    part = conv.head(300).with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(0).otherwise("output_tokens")
        .alias("output_tokens"))
    rows = jsonl(export(part, "aiperf-single-turn", tmp_path / "s.jsonl",
                        min_output_tokens=0))
    assert all(list(r) == ["text", "timestamp", "output_length"] for r in rows)
    assert rows[0]["output_length"] is None  # AIPerf requires > 0: 0 is left to --osl
    assert [r["output_length"] for r in rows[1:]] == part["output_tokens"][1:].to_list()
    assert [r["timestamp"] for r in rows] == [round(s * 1000) for s in part["arrival_s"]]
    assert all(isinstance(r["timestamp"], int) and r["text"] for r in rows)
    assert [words(r["text"]) for r in rows] == part["input_tokens"].to_list()


def test_aiperf_multi_turn_groups_sessions(tmp_path, burst):
    rows = jsonl(export(burst, "aiperf-multi-turn", tmp_path / "m.jsonl"))
    sizes = burst.group_by("session").len()
    assert len(rows) == sizes.height == 299
    assert sum(len(r["turns"]) for r in rows) == burst.height
    got = {r["session_id"]: len(r["turns"]) for r in rows}
    assert got == dict(sizes.iter_rows())
    for r in rows:
        stamps = [t["timestamp"] for t in r["turns"]]
        assert stamps == sorted(stamps) and all(isinstance(s, int) for s in stamps)
        assert all(set(t) == {"text", "timestamp", "delay", "output_length"}
                   for t in r["turns"])
    firsts = [r["turns"][0]["timestamp"] for r in rows]
    assert firsts == sorted(firsts)
    one = next(r for r in rows if len(r["turns"]) > 2)
    sess = burst.filter(pl.col("session") == one["session_id"])
    assert [t["timestamp"] for t in one["turns"]] == [round(s * 1000)
                                                      for s in sess["arrival_s"]]


def test_aiperf_multi_turn_null_sessions_and_deltas(tmp_path):
    frame = pl.DataFrame({"arrival_s": [0.0, 1.0, 2.0, 3.0],
                          "session": ["a", None, "a", None],
                          "input_tokens": [10, 5, 40, 3], "output_tokens": [20, 2, 4, 1]})
    rows = jsonl(export(frame, "aiperf-multi-turn", tmp_path / "m.jsonl", delta_inputs=True))
    assert [r["session_id"] for r in rows] == ["a", "request-1", "request-3"]
    assert [words(t["text"]) for t in rows[0]["turns"]] == [10, 40 - 10 - 20]
    assert [t["timestamp"] for t in rows[0]["turns"]] == [0, 2000]
    assert [len(r["turns"]) for r in rows] == [2, 1, 1]


# -- CSV formats --------------------------------------------------------------------------------
def test_vidur_matches_its_shipped_azure_trace(tmp_path, conv):
    header, rows = csv_rows(export(conv, "vidur", tmp_path / "v.csv"))
    assert header == ["arrived_at", "num_prefill_tokens", "num_decode_tokens"]
    assert len(rows) == conv.height
    published = [(0.0, 374, 44), (4.314579, 396, 109), (4.541877, 879, 55), (4.710427, 91, 16)]
    for row, (t, p, d) in zip(rows, published, strict=False):
        assert float(row[0]) == pytest.approx(t, abs=1e-9)
        assert (int(row[1]), int(row[2])) == (p, d)


def test_splitwise(tmp_path, burst):
    frame = burst.head(20).with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(0).otherwise("output_tokens")
        .alias("output_tokens"))
    header, rows = csv_rows(export(frame, "splitwise", tmp_path / "s.csv"))
    assert header == ["request_id", "request_type", "application_id", "arrival_timestamp",
                      "batch_size", "prompt_size", "token_size"]
    assert [int(r[0]) for r in rows] == list(range(20))
    assert {(r[1], r[2], r[4]) for r in rows} == {("2", "0", "1")}
    assert [float(r[3]) for r in rows] == frame["arrival_s"].to_list()
    assert int(rows[0][6]) == 1  # a 0-token response still runs one token task
    assert [int(r[5]) for r in rows] == frame["input_tokens"].to_list()


def test_inference_perf_azure_offsets(tmp_path, conv):
    path = export(conv, "inference-perf-azure", tmp_path / "i.csv",
                  origin="2023-11-16T18:15:46.680590Z").path
    assert csv.Sniffer().has_header(path.read_text()[:2048])  # how it decides to skip line 1
    header, rows = csv_rows(path)
    assert header == ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
    assert rows[0][0] == "2023-11-16 18:15:46.680590"
    # parsed as inference-perf parses it: %f, offsets from the first line
    stamps = [datetime.strptime(r[0], "%Y-%m-%d %H:%M:%S.%f") for r in rows]
    offsets = np.array([(s - stamps[0]).total_seconds() for s in stamps])
    assert np.abs(offsets - conv["arrival_s"].to_numpy()).max() < 1e-6
    assert [int(r[1]) for r in rows[:100]] == conv["input_tokens"].head(100).to_list()


def test_azure_2023_byte_identical_and_round_trip(tmp_path, shared, azure, conv):
    path = export(conv, "azure-2023", tmp_path / "a.csv", origin=azure.origin).path
    original = (shared / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv").read_text()
    assert path.read_text() == original.replace("\r\n", "\n").rstrip("\n") + "\n"
    default = export(conv.head(2), "azure-2023", tmp_path / "e.csv").path
    assert default.read_text().splitlines()[1:] == ["1970-01-01 00:00:00.0000000,374,44",
                                                    "1970-01-01 00:00:04.3145790,396,109"]
    back = azure_llm_2023.load([path], "again").tables["requests"]
    assert back["input_tokens"].equals(conv["input_tokens"])
    assert (back["arrival_s"] - conv["arrival_s"]).abs().max() < 1e-7


def test_burstgpt_round_trip(tmp_path, burst):
    v2 = export(burst, "burstgpt", tmp_path / "b2.csv", layout="v2")
    header, rows = csv_rows(v2)
    assert header == burstgpt.HEADER_V2 and len(rows) == 1000
    assert all(int(r[6]) == int(r[4]) + int(r[5]) for r in rows)
    assert {r[3] for r in rows} == {"GPT-4"} and rows[0][2] == ""  # no model, no latency
    back = burstgpt.load([v2], "again").tables["requests"]
    for col in ("arrival_s", "session", "input_tokens", "output_tokens", "failed", "latency_s"):
        assert back[col].equals(burst[col]), col
    assert back["tenant"].cast(pl.String).equals(burst["tenant"].cast(pl.String))
    v1 = export(burst, "burstgpt", tmp_path / "b1.csv", model="ChatGPT", log_type="API log")
    header, rows = csv_rows(v1)
    assert header == burstgpt.HEADER_V1 and rows[0][1] == "ChatGPT" and rows[0][5] == "API log"
    again = burstgpt.load([v1], "v1").tables["requests"]
    assert again["input_tokens"].equals(burst["input_tokens"])
    assert again["tenant"].cast(pl.String).unique().to_list() == ["ChatGPT/API log"]


# -- vHive / InVitro ----------------------------------------------------------------------------
def test_vhive_round_trip(tmp_path, shared, functions_sample):
    counts = functions_sample.tables["invocation_counts"]
    functions = functions_sample.tables["functions"]
    folder = export(counts, "vhive", tmp_path / "trace", functions=functions).path
    assert sorted(p.name for p in folder.iterdir()) == ["durations.csv", "invocations.csv",
                                                        "memory.csv"]
    header, rows = csv_rows(folder / "invocations.csv")
    original, _ = csv_rows(shared / "azure_functions_2019" / "invocations.csv")
    assert header == original == [*vhive.INVOCATIONS_HEADER, *(str(m) for m in range(480, 960))]
    assert len(rows) == 500 and all(c.isdigit() for r in rows for c in r[4:])
    assert csv_rows(folder / "durations.csv")[0] == vhive.DURATIONS_HEADER
    assert csv_rows(folder / "memory.csv")[0] == vhive.MEMORY_HEADER

    back = azure_functions_2019.load([folder], "again")
    assert back.rejects.height == 0
    strings = pl.col(pl.Categorical).cast(pl.String)
    assert back.tables["invocation_counts"].with_columns(strings).equals(
        counts.with_columns(strings))
    got = back.tables["functions"]
    for col in functions.columns:
        if functions[col].dtype.is_float():
            assert np.allclose(got[col].to_numpy(), functions[col].to_numpy(), rtol=1e-12,
                               atol=0), col
        else:
            assert got[col].equals(functions[col]), col
    # durations are written in milliseconds
    dur = pl.read_csv(folder / "durations.csv")
    first = functions.row(0, named=True)
    line = dur.filter(pl.col("HashFunction") == first["function"]).row(0, named=True)
    assert line["percentile_Average_50"] == pytest.approx(first["duration_p50_s"] * 1000)
    assert line["Maximum"] == pytest.approx(first["duration_p100_s"] * 1000)


def test_vhive_from_invocations_known_answer(tmp_path):
    """Arrivals at 0, 30, 59.9, 60 and 185 s are 3, 1, 0, 1 invocations in minutes 1..4;
    durations 1..101 ms have median 51 ms, memory 100..300 MB has median 200 MB."""
    n = 101
    frame = pl.DataFrame({
        "arrival_s": [0.0, 30.0, 59.9, 60.0, 185.0] + [10.0] * (n - 5),
        "function": ["f"] * n,
        "duration_s": np.arange(1, n + 1) / 1000.0,
        "memory_mb": np.linspace(100.0, 300.0, n),
    })
    folder = export(frame, "vhive", tmp_path / "t").path
    header, rows = csv_rows(folder / "invocations.csv")
    assert header == [*vhive.INVOCATIONS_HEADER, "1", "2", "3", "4"]
    assert rows == [["f", "f", "f", "others", str(3 + n - 5), "1", "0", "1"]]
    dur = pl.read_csv(folder / "durations.csv").row(0, named=True)
    assert (dur["Count"], dur["Minimum"], dur["Maximum"]) == (n, 1.0, 101.0)
    assert dur["percentile_Average_50"] == pytest.approx(51.0)
    assert dur["Average"] == pytest.approx(51.0)
    mem = pl.read_csv(folder / "memory.csv").row(0, named=True)
    assert mem["AverageAllocatedMb_pct50"] == pytest.approx(200.0)
    assert mem["SampleCount"] == n
    with pytest.raises(ValueError, match="no memory statistics"):
        export(frame.drop("memory_mb"), "vhive", tmp_path / "u")


def test_vhive_windows_sum_to_minutes(tmp_path, functions_sample):
    functions = functions_sample.tables["functions"].head(1)
    f = functions.row(0, named=True)
    halves = pl.DataFrame({"tenant": [f["tenant"]] * 3, "app": [f["app"]] * 3,
                           "function": [f["function"]] * 3,
                           "window_start_s": [0.0, 30.0, 60.0], "window_s": [30.0] * 3,
                           "count": [2, 5, 1]})
    folder = export(halves, "vhive", tmp_path / "t", functions=functions).path
    header, rows = csv_rows(folder / "invocations.csv")
    assert header[4:] == ["1", "2"] and rows[0][3:] == [f["trigger"], "7", "1"]
    with pytest.raises(ValueError, match="do not fit in one minute"):
        export(halves.with_columns(window_s=pl.lit(120.0)), "vhive", tmp_path / "u",
               functions=functions)


# -- prompts ------------------------------------------------------------------------------------
def test_prompt_lengths_and_determinism():
    n = np.array([0, 1, 2, 12, 13, 700, 5])
    out = prompts.prompts(n, seed=4)
    assert out.dtype == pl.String and out.name == "prompt"
    assert [words(p) for p in out] == n.tolist()
    assert out[0] == "" and not any(p != p.strip() for p in out)
    assert out.equals(prompts.prompts(n, seed=4))
    assert not out.equals(prompts.prompts(n, seed=5))
    assert prompts.prompt(9, 2) == prompts.prompts([9], 2)[0]
    vocab = set(prompts.VOCABULARY)
    assert len(vocab) == len(prompts.VOCABULARY) == 768
    assert set(" ".join(out).split()) <= vocab


def test_prompts_share_no_prefix():
    out = prompts.prompts(np.full(3000, 8), seed=0)
    assert out.n_unique() == 3000


def test_prompts_reject_bad_counts():
    with pytest.raises(ValueError, match="negative"):
        prompts.prompts([3, -1], 0)
    with pytest.raises(ValueError, match="1-D"):
        prompts.prompts(np.ones((2, 2), dtype=int), 0)
    with pytest.raises(ValueError, match="whole numbers"):
        prompts.prompts(np.array([1.5]), 0)
    assert prompts.prompts([], 0).len() == 0


# -- sessions, block sizes and consumer command lines ----------------------------------------
@pytest.fixture(scope="module")
def weka(shared):
    """20 real WEKA conversations (64-token blocks, session-local ids, think times)."""
    files = sorted((shared / "agentic_coding_weka").glob("*.json"))[:20]
    return agentic_coding_weka.load(files, "weka").tables["requests"]


def test_block_ids_split_merge_and_scope_known_answer():
    """Hand-made: 512 → 128 splits id h into 4h..4h+3 and cuts to ceil(in/128); 64 → 128 pairs
    ids (a pair is one coarse id iff both match); session-local ids are made distinct; a short
    list is padded with fresh ids above every other."""
    frame = pl.DataFrame({"input_tokens": [600, 300], "hash_ids": [[5, 7], [5]]})
    ids = _common.consumer_hash_ids(frame, 128, hash_block_tokens=512)
    assert ids.to_list() == [[20, 21, 22, 23, 28], [20, 21, 22]]
    fine = pl.DataFrame({"input_tokens": [256, 256, 200],
                         "hash_ids": [[1, 2, 3, 4], [1, 2, 3, 9], [1, 2, 3]]})
    assert _common.consumer_hash_ids(fine, 128, hash_block_tokens=64).to_list() == \
        [[0, 1], [0, 2], [0, 3]]
    local = pl.DataFrame({"input_tokens": [128, 128, 128], "session": ["a", "a", "b"],
                          "hash_ids": [[0, 1], [0, 1], [0, 1]]})
    got = _common.consumer_hash_ids(local, 64, hash_block_tokens=64, hash_scope="session")
    assert got[0].to_list() == got[1].to_list() and set(got[0]).isdisjoint(got[2])
    floor = pl.DataFrame({"input_tokens": [100, 150], "hash_ids": [[0], [0, 1]]})
    assert _common.consumer_hash_ids(floor, 64, hash_block_tokens=64).to_list() == \
        [[0, 2], [0, 1, 3]]
    with pytest.raises(ValueError, match="one size must be a whole multiple"):
        _common.consumer_hash_ids(frame, 96, hash_block_tokens=512)
    assert _common.infer_block_tokens(pl.DataFrame({"input_tokens": [1024, 2000],
                                                    "hash_ids": [[0, 1], [0, 1, 2, 3]]})) == 512
    with pytest.raises(ValueError, match="pass hash_block_tokens"):
        _common.infer_block_tokens(pl.DataFrame({"input_tokens": [5],
                                                 "hash_ids": [[1, 2, 3, 4, 5, 6]]}))


def test_rechunked_ids_keep_the_traces_prefix_hits(tmp_path, weka, moon):
    """The cached prefix of every request (infinite cache) is the source's: same block size,
    session scope made global; coarser blocks can only lose hits, finer ones only gain."""
    src = kvcache.prefix_reuse(weka, block_tokens=64, scope="session")
    for size, check in ((64, "equal"), (512, "coarse")):
        rows = jsonl(export(weka, "vllm-mooncake", tmp_path / f"w{size}.jsonl",
                            block_size=size, hash_block_tokens=64, hash_scope="session"))
        assert all(len(r["hash_ids"]) == math.ceil(r["input_length"] / size) for r in rows)
        got = kvcache.prefix_reuse(pl.DataFrame({
            "arrival_s": [r["timestamp"] for r in rows],
            "input_tokens": [r["input_length"] for r in rows],
            "hash_ids": [r["hash_ids"] for r in rows]}), block_tokens=size)
        fine = src["cached_blocks"].to_numpy()
        if check == "equal":
            assert (got["cached_blocks"].to_numpy() == fine).all()
        else:
            assert (got["cached_blocks"].to_numpy() * 8 <= fine).all()
            assert got["cached_blocks"].sum() > 0.8 * fine.sum() / 8
    part = moon.head(2000)
    rows = jsonl(export(part, "sglang-mooncake", tmp_path / "s.jsonl"))
    coarse = kvcache.prefix_reuse(part, block_tokens=512)["cached_tokens"].to_numpy()
    split = kvcache.prefix_reuse(pl.DataFrame({
        "arrival_s": part["arrival_s"], "input_tokens": part["input_tokens"],
        "hash_ids": [r["hash_ids"] for r in rows]}), block_tokens=128)["cached_tokens"]
    assert (split.to_numpy() >= coarse).all() and split.sum() > 0


def test_vllm_timed_trace_rebases_and_prints_flags(tmp_path, conv):
    late = conv.head(100).with_columns(pl.col("arrival_s") + 19_440_110.0)
    result = export(late, "vllm-mooncake", tmp_path / "v.jsonl")
    rows = jsonl(result)
    assert rows[0]["timestamp"] == 0.0 and not result.notes
    assert rows[5]["timestamp"] == pytest.approx(conv["arrival_s"][5] - conv["arrival_s"][0])
    assert result.command.endswith(f"--dataset-name timed_trace --dataset-path {result.path} "
                                   f"--timed-trace-chunk-hash-size 512 --num-prompts 100")
    kept = export(late, "vllm-mooncake", tmp_path / "k.jsonl", rebase=False, time_unit="ms")
    assert jsonl(kept)[0]["timestamp"] == round(late["arrival_s"][0] * 1000)
    assert "--timed-trace-sec-multiplier 0.001" in kept.command
    assert "225.0 days" in kept.notes[0]


def test_aiperf_mooncake_sessions_with_think_delays(tmp_path, weka):
    result = export(weka, "aiperf-mooncake", tmp_path / "a.jsonl", hash_block_tokens=64,
                    hash_scope="session")
    rows = jsonl(result)
    assert "--custom-dataset-type mooncake_trace --fixed-schedule --isl-block-size 64" in \
        result.command
    req = weka.sort("arrival_s", maintain_order=True)
    assert [r["session_id"] for r in rows] == req["session"].to_list()
    first = req.select(pl.int_range(pl.len()).over("session") == 0).to_series().to_list()
    think = req["think_s"].to_list()
    for r, f, t in zip(rows, first, think, strict=True):
        if f or t is None:
            assert r["delay"] is None and isinstance(r["timestamp"], int)
        else:
            assert r["timestamp"] is None and r["delay"] == round(t * 1000)
    assert sum(r["delay"] is not None for r in rows) > 0.8 * len(rows)


def test_aiperf_bailian_round_trip(tmp_path, weka):
    """Read back with this project's Bailian reader: parents, turns, 16-token ids, seconds."""
    weka = weka.filter(pl.col("session").is_in(weka["session"].unique().sort().head(4).to_list()))
    result = export(weka, "aiperf-bailian", tmp_path / "b.jsonl", hash_block_tokens=64,
                    hash_scope="session")
    assert "--custom-dataset-type bailian_trace" in result.command
    assert "--isl-block-size" not in result.command
    back = qwen_bailian.load([result.path], "again")
    assert back.rejects.height == 0 and back.notes["hash_ids_length_violations"] == 0
    got = back.tables["requests"]
    req = weka.sort("arrival_s", maintain_order=True)
    assert got.height == req.height
    assert (got["arrival_s"] - (req["arrival_s"] - req["arrival_s"].min())).abs().max() < 1e-9
    assert got["input_tokens"].equals(req["input_tokens"])
    rows = jsonl(result)
    roots = sum(r["parent_chat_id"] == -1 for r in rows)
    assert roots == req["session"].n_unique()  # one tree per conversation
    assert all(r["parent_chat_id"] < r["chat_id"] for r in rows)


def test_weka_folder_round_trip_and_guidellm_lines(tmp_path, weka):
    result = export(weka, "weka", tmp_path / "w", hash_block_tokens=64, hash_scope="session")
    files = sorted(result.path.glob("*.json"))
    assert len(files) == weka["session"].n_unique() == 20
    assert "--load.type trace_session_replay" in result.command
    back = agentic_coding_weka.load(files, "again").tables["requests"].sort("session",
                                                                            "arrival_s")
    src = weka.sort("session", "arrival_s")
    for col in ("input_tokens", "output_tokens", "think_s", "server_s", "subagent"):
        assert back[col].equals(src[col]), col
    assert (back["arrival_s"] - src["arrival_s"]).abs().max() < 1e-9
    assert back["hash_ids"].list.len().equals((src["input_tokens"] + 63) // 64)
    lines = export(weka, "guidellm-weka", tmp_path / "g.jsonl", hash_block_tokens=64,
                   hash_scope="session")
    assert len(jsonl(lines)) == 20 and '"hash_id_block_size": 64' in lines.command


def test_vidur_both_layouts(tmp_path, conv):
    head = export(conv.head(3), "vidur", tmp_path / "h.csv")
    pypi = export(conv.head(3), "vidur-pypi", tmp_path / "p.csv")
    assert head.path.read_text().splitlines()[0] == "arrived_at,num_prefill_tokens," \
                                                    "num_decode_tokens"
    assert pypi.path.read_text().splitlines()[:2] == [
        "Date,Time,PromptTokenCount,CompletionTokenCount", "2023-08-21,0.0,374,44"]
    for r in (head, pypi):
        assert "--trace_request_generator_config_prefill_scale_factor 1" in r.command
        assert "--trace_request_generator_config_time_scale_factor 1" in r.command


def test_text_export_size_note(tmp_path, conv, monkeypatch):
    monkeypatch.setattr(_common, "TEXT_WARN_BYTES", 1000)
    result = export(conv.head(50), "aiperf-multi-turn", tmp_path / "m.jsonl")
    assert "GiB of prompt text" in result.notes[-1] and "aiperf-mooncake" in result.notes[-1]


def test_session_local_ids_keep_rows_with_no_blocks():
    # an empty id list leaves no cell after explode (newer Polars): its row must come back
    frame = pl.DataFrame({"session": ["a", "a", "b", None, "b"],
                          "hash_ids": [[1, 2], [], [1], None, [1, 3]]},
                         schema_overrides={"hash_ids": pl.List(pl.Int64)})
    assert _common._global_ids(frame).to_list() == [[0, 1], [], [2], None, [2, 3]]
