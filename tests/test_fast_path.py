"""The CSV fast path gives what the line-based path gives, and the store keeps the schema."""

from __future__ import annotations

import pyarrow.parquet as pq

from servetrace.loaders import burstgpt, ingest, schema
from servetrace.loaders.source import csv_rows
from tests.conftest import write

HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
BODY = ("5,ChatGPT,472,18,490,Conversation log\n"
        "-7.50,GPT-4,10,5,15,API log\n"           # negative timestamp, quoted as written
        "45,ChatGPT,-03,230,227,Conversation log\n"  # negative tokens, quoted as written
        "60,GPT-4,12.50,3,15.5,API log\n"          # non-integer tokens
        "61,GPT-4,,3,3,API log\n"                  # missing tokens
        "62,GPT-4,1e1,inf,3,API log\n"             # 1e1 is 10; inf is not finite
        "75,GPT-4,10,5,,API log\n")


def _both(tmp_path):
    fast = write(tmp_path / "BurstGPT_1.csv", HEADER + BODY)
    slow = write(tmp_path / "BurstGPT_2.csv", HEADER + BODY + "80,GPT-4,10\n")  # ragged
    return burstgpt.load([fast], "t"), burstgpt.load([slow], "t"), fast


def test_typed_fast_path_matches_line_path(tmp_path):
    fast, slow, path = _both(tmp_path)
    assert csv_rows(path, burstgpt.HEADER_V1, numeric=burstgpt.NUMERIC).schema[
        "Timestamp"].is_float()  # the fast path was taken
    assert fast.tables["requests"].equals(slow.tables["requests"])
    assert fast.rejects.drop("source").rows() == slow.rejects.drop("source").rows()[:-1]
    assert fast.rejects.select("line", "reason", "raw").rows() == [
        (3, "negative arrival_s (Timestamp): -7.50", "-7.50,GPT-4,10,5,15,API log"),
        (4, "negative input_tokens (Request tokens): -03",
         "45,ChatGPT,-03,230,227,Conversation log"),
        (5, "non-integer input_tokens (Request tokens): 12.50", "60,GPT-4,12.50,3,15.5,API log"),
        (6, "missing required field input_tokens (Request tokens)", "61,GPT-4,,3,3,API log"),
        (7, "non-finite output_tokens (Response tokens)", "62,GPT-4,1e1,inf,3,API log"),
    ]
    assert fast.notes == slow.notes == {"failed": 0, "total_tokens_mismatch": 1}


def test_padded_or_empty_text_takes_the_line_path(tmp_path):
    for body in ("5, ChatGPT,1,2,3,API log\n", '5,"",1,2,3,API log\n'):
        path = write(tmp_path / "BurstGPT_1.csv", HEADER + body)
        rows = csv_rows(path, burstgpt.HEADER_V1, numeric=burstgpt.NUMERIC)
        assert rows["raw"].to_list() == [body.rstrip("\n")]  # read as text
    assert rows["Model"].to_list() == [None]


def test_parquet_files_carry_the_canonical_schema(tmp_path, store):
    path = write(tmp_path / "BurstGPT_1.csv", HEADER + BODY)
    ingest(path, store=store)
    [file] = store.files("requests")
    def fields(sch):
        return [(f.name, f.nullable, f.metadata,
                 f.type.value_type if hasattr(f.type, "value_type") else f.type) for f in sch]

    assert fields(pq.read_schema(file)) == fields(schema.REQUESTS)  # units and required kept
    assert pq.read_table(file).column("tenant").to_pylist() == ["ChatGPT/Conversation log",
                                                                "GPT-4/API log"]
