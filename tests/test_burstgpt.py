"""BurstGPT: the real JSON-lines sample, small v1/v2.0 CSVs with the real headers, bad input.

Expected values were computed independently with Python's ``csv``/``json`` modules.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from servetrace.loaders import burstgpt, ingest, registry
from servetrace.loaders.source import FormatError

V1_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"
V2_HEADER = ("Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,"
             "Total tokens,Log Type")

# The first three rows are real (quoted from a third-party README of BurstGPT_1.csv); then a
# failed API request (Response tokens 0) and one whose Total tokens is off by one.
V1 = f"""{V1_HEADER}
5,ChatGPT,472,18,490,Conversation log
45,ChatGPT,1087,230,1317,Conversation log
118,GPT-4,417,276,693,Conversation log
130,ChatGPT,1200,0,1200,API log
131,GPT-4,300,20,321,API log
"""

# Row 1 is the first real row of BurstGPT_3.csv; rows 2-3 are its sample rows 2-3 (same
# sessions and tokens, arrival 19440110 + arrival_ms/1000). Then an API log row without a
# session, out of time order and failed, and a failed conversation row with no Elapsed time.
V2 = f"""{V2_HEADER}
19440110.0,1722ac82-0a46-4bf0-aa08-89794e7a2b3f,43,GPT-4,906,446,1352,Conversation log
19440161.0,d5983bf9-4b48-497b-892b-a58995247443,3,ChatGPT,36,29,65,Conversation log
19440192.0,a5c69b35-4fbc-45e9-955e-18715e376d74,20,GPT-4,1779,123,1902,Conversation log
19440150.0,,12,ChatGPT,500,0,500,API log
19440200.5,1722ac82-0a46-4bf0-aa08-89794e7a2b3f,,GPT-4,1400,0,1400,Conversation log
"""

# canonical columns BurstGPT has no source for: sessions, agents and mix classes
ABSENT_COLUMNS = ("parent_request_id", "turn", "subagent", "agent_depth", "request_type",
                  "cached_tokens", "reasoning_tokens", "think_s", "server_s", "tool_s",
                  "request_class", "offline", "priority", "slo_ttft_s", "slo_tpot_s")
S1, S2, S3 = ("1722ac82-0a46-4bf0-aa08-89794e7a2b3f", "d5983bf9-4b48-497b-892b-a58995247443",
              "a5c69b35-4fbc-45e9-955e-18715e376d74")


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def sample(shared: Path) -> Path:
    return shared / "burstgpt_sample" / "sample.jsonl"


# -- the real JSON-lines sample ------------------------------------------------------------
def test_jsonl_sample(sample):
    loaded = burstgpt.load([sample], "t")
    req = loaded.tables["requests"]
    assert loaded.rows_read == 1000 and req.height == 1000 and loaded.rejects.height == 0
    assert req["input_tokens"].sum() == 713_848
    assert req["output_tokens"].sum() == 222_586
    sessions_cols = ABSENT_COLUMNS
    assert req.row(0, named=True) | {"hash_ids": None} == dict.fromkeys(sessions_cols) | {
        "request_id": "burstgpt-0", "arrival_s": 0.0, "tenant": S1, "session": S1,
        "model": None, "log_type": None, "input_tokens": 906, "output_tokens": 446,
        "failed": False, "latency_s": None, "ttft_s": None, "tpot_s": None,
        "num_images": None, "hash_ids": None}
    last = req.row(-1, named=True)
    assert (last["request_id"], last["arrival_s"], last["input_tokens"],
            last["output_tokens"], last["session"]) == (
        "burstgpt-999", 60664.0, 3922, 246, "aee38ad0-da20-4654-b614-1b72b86b51cf")
    assert req["arrival_s"][1] == 51.0 and req["arrival_s"][2] == 82.0
    assert req["arrival_s"].is_sorted() and req["arrival_s"].n_unique() == 987
    # 299 conversations; the two largest have 26 turns each
    assert req["session"].n_unique() == 299 and req["tenant"].n_unique() == 299
    assert (req["tenant"] == req["session"]).all()
    top = req.group_by("session").len().sort("len", descending=True)["len"].head(3).to_list()
    assert top == [26, 26, 25]
    assert req.filter(pl.col("session") == "313b905a-2252-45ca-bf14-46e87f6233dd").height == 26
    assert not req["failed"].any() and loaded.origin is None
    assert loaded.notes == {"failed": 0, "total_tokens_mismatch": 0}


def test_jsonl_sample_detected(sample):
    assert registry.detect(sample) is burstgpt
    assert burstgpt.DATASET.part_for_file(sample.name) is None  # not an official file


def test_jsonl_sample_ingest(sample, store):
    (record,) = ingest(sample, store=store)
    assert record["trace"] == "burstgpt/sample"
    assert (record["rows_read"], record["rows"], record["rejected"]) == (1000, 1000, 0)
    assert record["origin"] is None and record["source_urls"] == []
    got = store.sql("SELECT count(*), sum(input_tokens), sum(output_tokens), "
                    "count(DISTINCT session), max(arrival_s) FROM requests "
                    "WHERE trace = 'burstgpt/sample'")
    assert got.row(0) == (1000, 713_848, 222_586, 299, 60664.0)


def test_jsonl_bad_lines(tmp_path, sample):
    lines = sample.read_text().splitlines()[:3]
    lines[1] = lines[1].replace('"input_length": 36', '"input_length": -36')
    lines.append('{"request_id": "burstgpt-3", "arrival_ms": 95000.0, "input_len')  # cut off
    path = _write(tmp_path, "sample.jsonl", "\n".join(lines))
    loaded = burstgpt.load([path], "t")
    assert loaded.rows_read == 4 and loaded.tables["requests"].height == 2
    assert loaded.rejects.select("line", "reason").rows() == [
        (2, "negative input_tokens (input_length): -36"), (4, "malformed JSON line")]


# -- v1 CSV -------------------------------------------------------------------------------
def test_v1_csv(tmp_path):
    loaded = burstgpt.load([_write(tmp_path, "BurstGPT_1.csv", V1)], "t")
    req = loaded.tables["requests"]
    assert loaded.rows_read == 5 and req.height == 5 and loaded.rejects.height == 0
    assert req["arrival_s"].to_list() == [5.0, 45.0, 118.0, 130.0, 131.0]  # zero kept
    assert loaded.origin is None
    assert (req["input_tokens"].sum(), req["output_tokens"].sum()) == (3476, 544)
    assert req["failed"].to_list() == [False, False, False, True, False]
    assert req.row(3, named=True)["output_tokens"] == 0  # the failed row is kept
    assert req["tenant"].to_list() == ["ChatGPT/Conversation log", "ChatGPT/Conversation log",
                                       "GPT-4/Conversation log", "ChatGPT/API log",
                                       "GPT-4/API log"]
    assert req["model"].to_list() == ["ChatGPT", "ChatGPT", "GPT-4", "ChatGPT", "GPT-4"]
    assert req["log_type"][3] == "API log"
    assert req["session"].null_count() == 5 and req["latency_s"].null_count() == 5
    assert req["request_id"].null_count() == 5
    assert loaded.notes == {"failed": 1, "total_tokens_mismatch": 1}


def test_without_fails_file(tmp_path, store):
    no_fails = "\n".join(line for line in V1.splitlines() if ",0," not in line) + "\n"
    path = _write(tmp_path, "BurstGPT_without_fails_1.csv", no_fails)
    loaded = burstgpt.load([path], "t")
    assert loaded.tables["requests"].height == 4 and not loaded.tables["requests"]["failed"].any()
    (record,) = ingest(path, store=store)
    assert record["trace"] == "burstgpt/without_fails_1" and record["part"] == "without_fails_1"
    assert record["source_urls"] == [
        "https://github.com/HPMLL/BurstGPT/releases/download/v2.0/BurstGPT_without_fails_1.csv"]
    assert store.sql("SELECT count(*), count_if(failed) FROM requests").row(0) == (4, 0)


# -- v2.0 CSV -----------------------------------------------------------------------------
def test_v2_csv(tmp_path):
    loaded = burstgpt.load([_write(tmp_path, "BurstGPT_3.csv", V2)], "t")
    req = loaded.tables["requests"]
    assert loaded.rows_read == 5 and req.height == 5 and loaded.rejects.height == 0
    # sorted by Timestamp (the API row came fourth in the file); the collection's zero kept
    assert req["arrival_s"].to_list() == [19440110.0, 19440150.0, 19440161.0, 19440192.0,
                                          19440200.5]
    assert (req["input_tokens"].sum(), req["output_tokens"].sum()) == (4621, 598)
    assert req["failed"].to_list() == [False, True, False, False, True]
    assert req["session"].to_list() == [S1, None, S2, S3, S1]
    assert req["tenant"].to_list() == [S1, "ChatGPT/API log", S2, S3, S1]
    # Elapsed time is the request's response time: latency_s; empty stays null
    assert req["latency_s"].to_list() == [43.0, 12.0, 3.0, 20.0, None]
    sessions_cols = ABSENT_COLUMNS
    assert req.row(0, named=True) | {"hash_ids": None} == dict.fromkeys(sessions_cols) | {
        "request_id": None, "arrival_s": 19440110.0, "tenant": S1, "session": S1,
        "model": "GPT-4", "log_type": "Conversation log", "input_tokens": 906,
        "output_tokens": 446, "failed": False, "latency_s": 43.0, "ttft_s": None,
        "tpot_s": None, "num_images": None, "hash_ids": None}
    assert loaded.notes == {"failed": 2, "total_tokens_mismatch": 0}


def test_v2_ingest_and_detect(tmp_path, store):
    path = _write(tmp_path, "BurstGPT_3.csv", V2)
    assert registry.detect(path) is burstgpt
    (record,) = ingest(path, store=store)
    assert record["trace"] == "burstgpt/3"
    assert (record["rows_read"], record["rows"], record["rejected"]) == (5, 5, 0)
    assert (record["start_s"], record["end_s"]) == (19440110.0, 19440200.5)
    assert '"total_tokens_mismatch": 0' in record["notes"]
    got = store.sql("SELECT tenant, count(*) n, count_if(failed) f, sum(latency_s) l "
                    "FROM requests GROUP BY tenant ORDER BY tenant")
    assert got.rows() == [("1722ac82-0a46-4bf0-aa08-89794e7a2b3f", 2, 1, 43.0),
                          ("ChatGPT/API log", 1, 1, 12.0),
                          ("a5c69b35-4fbc-45e9-955e-18715e376d74", 1, 0, 20.0),
                          ("d5983bf9-4b48-497b-892b-a58995247443", 1, 0, 3.0)]


def test_v1_and_v2_files_in_one_trace(tmp_path):
    paths = [_write(tmp_path, "BurstGPT_1.csv", V1), _write(tmp_path, "BurstGPT_3.csv", V2)]
    loaded = burstgpt.load(paths, "t")
    req = loaded.tables["requests"]
    assert loaded.rows_read == req.height == 10 and req["arrival_s"].is_sorted()
    assert loaded.notes == {"failed": 3, "total_tokens_mismatch": 1}


# -- bad input ----------------------------------------------------------------------------
def test_bad_rows_rejected_with_line_and_reason(tmp_path):
    text = (f"{V1_HEADER}\n"
            "5,ChatGPT,472,18,490,Conversation log\n"       # 2 ok
            "45,ChatGPT,-3,230,227,Conversation log\n"      # 3 negative tokens
            "x1,ChatGPT,10,10,20,API log\n"                 # 4 garbage timestamp
            "60,GPT-4,12.5,3,15.5,API log\n"                # 5 non-integer tokens
            "-7,GPT-4,10,5,15,API log\n"                    # 6 negative timestamp
            "70,GPT-4,10,five,15,API log\n"                 # 7 unparsable tokens
            "75,GPT-4,10,5,,API log\n"                      # 8 ok, Total tokens missing
            "80,GPT-4,10")                                  # 9 truncated, no newline
    path = _write(tmp_path, "BurstGPT_1.csv", text)
    loaded = burstgpt.load([path], "t")
    req = loaded.tables["requests"]
    assert loaded.rows_read == 8 == req.height + loaded.rejects.height
    assert req["arrival_s"].to_list() == [5.0, 75.0]
    assert loaded.rejects.select("line", "reason").rows() == [
        (3, "negative input_tokens (Request tokens): -3"),
        (4, "unparsable arrival_s (Timestamp): 'x1'"),
        (5, "non-integer input_tokens (Request tokens): 12.5"),
        (6, "negative arrival_s (Timestamp): -7"),
        (7, "unparsable output_tokens (Response tokens): 'five'"),
        (9, "wrong number of columns: 3 (expected 6)"),
    ]
    assert loaded.rejects["raw"][-1] == "80,GPT-4,10"
    assert set(loaded.rejects["source"]) == {str(path)}
    assert loaded.notes["total_tokens_mismatch"] == 1


def test_bad_elapsed_time(tmp_path):
    rows = V2.splitlines()
    rows[1] = rows[1].replace(",43,", ",-2,")
    rows[2] = rows[2].replace(",3,", ",3s,")
    loaded = burstgpt.load([_write(tmp_path, "BurstGPT_3.csv", "\n".join(rows))], "t")
    assert loaded.rejects.select("line", "reason").rows() == [
        (2, "negative latency_s (Elapsed time): -2"),
        (3, "unparsable latency_s (Elapsed time): '3s'")]
    assert loaded.tables["requests"].height == 3


def test_wrong_header_names_file_and_line(tmp_path, store):
    path = _write(tmp_path, "BurstGPT_1.csv", V1.replace("Log Type", "LogType"))
    with pytest.raises(FormatError, match=r"BurstGPT_1\.csv:1: unexpected header") as err:
        burstgpt.load([path], "t")
    assert err.value.line == 1 and err.value.path == str(path)
    assert not burstgpt.detect(path)
    assert not store.db_path.exists()


def test_detect_rejects_other_formats(shared):
    assert not burstgpt.detect(shared / "mooncake_fast25" / "conversation_trace.jsonl")
    assert not burstgpt.detect(shared / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv")
