"""Azure LLM 2023 on the real files: exact counts, sums, first/last rows, span."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest

from servetrace.loaders import azure_llm_2023, ingest, registry


@pytest.mark.parametrize(("part", "rows", "in_sum", "out_sum", "first", "last", "span"), [
    ("code", 8819, 18_059_974, 245_896, (4808, 10), (549, 173), 3435.948056),
    ("conv", 19366, 22_361_870, 4_088_665, (374, 44), (197, 183), 3501.721937),
])
def test_real_files(shared, part, rows, in_sum, out_sum, first, last, span):
    path = shared / "azure_llm_2023" / f"AzureLLMInferenceTrace_{part}.csv"
    loaded = azure_llm_2023.load([path], f"t/{part}")
    req = loaded.tables["requests"]
    assert loaded.rows_read == rows and req.height == rows and loaded.rejects.height == 0
    assert req["input_tokens"].sum() == in_sum
    assert req["output_tokens"].sum() == out_sum
    assert (req["input_tokens"][0], req["output_tokens"][0]) == first
    assert (req["input_tokens"][-1], req["output_tokens"][-1]) == last
    assert req["arrival_s"][0] == 0.0
    assert req["arrival_s"][-1] == pytest.approx(span, abs=1e-6)
    assert req["arrival_s"].is_sorted()


def test_seven_fractional_digits(shared):
    path = shared / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv"
    loaded = azure_llm_2023.load([path], "t")
    assert loaded.origin == datetime(2023, 11, 16, 18, 17, 3, 979960)
    # second row 2023-11-16 18:17:04.0319600: 52 ms after the first, at 100 ns resolution
    assert loaded.tables["requests"]["arrival_s"][1] == pytest.approx(0.052, abs=1e-7)


def test_no_trailing_newline_last_row_kept(shared):
    path = shared / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
    assert not path.read_bytes().endswith(b"\n")
    last = path.read_text().splitlines()[-1].split(",")
    req = azure_llm_2023.load([path], "t").tables["requests"]
    tail = req.filter(pl.col("arrival_s") == req["arrival_s"].max())
    assert (tail["input_tokens"][-1], tail["output_tokens"][-1]) == (int(last[1]), int(last[2]))


def test_detected_from_header(shared):
    assert registry.detect(shared / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv") \
        is azure_llm_2023


def test_published_medians(shared, store, mirror):
    """Splitwise (ISCA'24): conversation median input 1020, output 129 tokens."""
    ingest("azure_llm_2023/conv", store=store)
    med = store.sql("SELECT median(input_tokens) i, median(output_tokens) o FROM requests")
    assert med.row(0) == (1020, 129)
