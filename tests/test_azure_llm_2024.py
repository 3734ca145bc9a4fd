"""Azure LLM 2024 week traces on the real specimen rows (head 5 + tail 5 of each file).

Expected values were computed independently with Python's ``csv`` and ``datetime`` modules.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from servetrace.loaders import azure_llm_2023, azure_llm_2024, ingest, registry
from servetrace.loaders.source import FormatError

HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"


def _specimen(shared: Path, part: str) -> Path:
    return shared / "specimens" / f"AzureLLMInferenceTrace_{part}_1week_rows.csv"


@pytest.mark.parametrize(
    ("part", "in_sum", "out_sum", "first", "last", "origin", "head_end", "tail_start", "span"), [
        ("code", 24016, 180, (2162, 5), (4725, 8), datetime(2024, 5, 10, 0, 0, 0, 9930),
         0.07396, 604799.876559, 604799.919571),
        ("conv", 12767, 856, (1452, 3), (2688, 366), datetime(2024, 5, 12, 0, 0, 0, 1163),
         0.247116, 604799.75864, 604799.994297),
    ])
def test_specimen_rows(shared, part, in_sum, out_sum, first, last, origin, head_end,
                       tail_start, span):
    loaded = azure_llm_2024.load([_specimen(shared, part)], f"t/{part}")
    req = loaded.tables["requests"]
    assert loaded.rows_read == 10 and req.height == 10 and loaded.rejects.height == 0
    assert req["input_tokens"].sum() == in_sum and req["output_tokens"].sum() == out_sum
    assert (req["input_tokens"][0], req["output_tokens"][0]) == first
    assert (req["input_tokens"][-1], req["output_tokens"][-1]) == last
    assert loaded.origin == origin  # naive UTC: the +00:00 zone is read, not dropped blindly
    assert req["arrival_s"][0] == 0.0
    # head 5 + tail 5: the span jumps from the first seconds to the end of the week
    assert req["arrival_s"][4] == pytest.approx(head_end, abs=1e-9)
    assert req["arrival_s"][5] == pytest.approx(tail_start, abs=1e-9)
    assert req["arrival_s"][-1] == pytest.approx(span, abs=1e-9)
    assert req["arrival_s"].is_sorted()


def test_with_and_without_fractional_seconds(tmp_path, shared):
    rows = _specimen(shared, "code").read_text().splitlines()[:3]
    rows.insert(2, "2024-05-10 00:00:01+00:00,100,10")   # no fraction (as in the week files)
    rows.append("2024-05-10 00:00:00.5+00:00,7,1")       # a shorter fraction
    path = tmp_path / "week.csv"
    path.write_text("\n".join(rows) + "\n")
    loaded = azure_llm_2024.load([path], "t")
    req = loaded.tables["requests"]
    assert loaded.rejects.height == 0 and req.height == 4
    assert req["arrival_s"].to_list() == pytest.approx(
        [0.0, 0.007405, 0.49007, 0.99007], abs=1e-9)
    assert req["input_tokens"].to_list() == [2162, 2399, 7, 100]


def test_detected_as_2024_not_2023(shared):
    code = _specimen(shared, "code")
    assert azure_llm_2024.detect(code) and not azure_llm_2023.detect(code)
    assert registry.detect(code) is azure_llm_2024
    assert registry.detect(_specimen(shared, "conv")) is azure_llm_2024
    real_2023 = shared / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv"
    assert not azure_llm_2024.detect(real_2023)
    assert registry.detect(real_2023) is azure_llm_2023


def test_ingest_specimen(shared, store):
    (record,) = ingest(_specimen(shared, "conv"), store=store)
    trace = "azure_llm_2024/AzureLLMInferenceTrace_conv_1week_rows"
    assert record["trace"] == trace and record["part"] is None
    assert (record["rows_read"], record["rows"], record["rejected"]) == (10, 10, 0)
    got = store.sql(f"SELECT count(*), sum(input_tokens), sum(output_tokens), "
                    f"count(num_images), count(tenant), max(arrival_s) "
                    f"FROM requests WHERE trace = '{trace}'")
    assert got.row(0)[:5] == (10, 12767, 856, 0, 0)  # no images, no tenants in this source
    assert got.row(0)[5] == pytest.approx(604799.994297, abs=1e-9)
    origin = store.sql("SELECT origin FROM traces").item()
    assert origin == datetime(2024, 5, 12, 0, 0, 0, 1163, tzinfo=UTC)


def test_official_name_maps_to_part(tmp_path, shared, store):
    path = tmp_path / "AzureLLMInferenceTrace_code_1week.csv"
    path.write_bytes(_specimen(shared, "code").read_bytes())
    (record,) = ingest(path, store=store)
    assert record["trace"] == "azure_llm_2024/code"
    assert record["source_urls"] == [
        "https://github.com/Azure/AzurePublicDataset/releases/download/dataset-llm-2024/"
        "AzureLLMInferenceTrace_code_1week.csv"]
    assert store.sql("SELECT sum(input_tokens) FROM requests").item() == 24016


def test_bad_rows(tmp_path, shared):
    good = _specimen(shared, "code").read_text().splitlines()[:2]
    path = tmp_path / "week.csv"
    path.write_text("\n".join([
        *good,                                               # lines 1-2
        "2024-05-10 00:00:00.017335+05:00,2399,6",            # 3 a zone other than UTC
        "2024-05-10 00:00:00.022314+00:00,-76,15",            # 4 negative tokens
        "2024-05-10 00:00:00.037845+00:00,2376,1.5",          # 5 non-integer tokens
        "not a time,7670,8",                                  # 6 garbage timestamp
        "2024-05-16 23:59:59.886489+00:00,897,1",             # 7 ok
        "2024-05-16 23:59:59.925267+00:00,2842",              # 8 truncated, no newline
    ]))
    loaded = azure_llm_2024.load([path], "t")
    assert loaded.rows_read == 7 == loaded.tables["requests"].height + loaded.rejects.height
    assert loaded.rejects.select("line", "reason").rows() == [
        (3, "unparsable arrival_s (TIMESTAMP): '2024-05-10 00:00:00.017335+05:00'"),
        (4, "negative input_tokens (ContextTokens): -76"),
        (5, "non-integer output_tokens (GeneratedTokens): 1.5"),
        (6, "unparsable arrival_s (TIMESTAMP): 'not a time'"),
        (8, "wrong number of columns: 2 (expected 3)"),
    ]


def test_wrong_header(tmp_path):
    path = tmp_path / "week.csv"
    path.write_text("TIMESTAMP,ContextTokens,OutputTokens\n2024-05-10 00:00:00+00:00,1,1\n")
    with pytest.raises(FormatError, match=r"week\.csv:1: unexpected header"):
        azure_llm_2024.load([path], "t")
    assert not azure_llm_2024.detect(path)


def test_dataset_declaration():
    ds = azure_llm_2024.DATASET
    assert [p.name for p in ds.parts] == ["code", "conv"]
    assert ds.part("conv").files[0].sha256 == (
        "a0cc9b969a9bbf0fd811802cbf4323edd3a209ace791e3799ad4f9207f213941")
    assert ds.part("code").files[0].sha256 is None  # single-source hash: not pinned
    assert "DynamoLLM" in ds.citation
