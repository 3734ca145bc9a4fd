"""Azure LMM 2025 multimodal trace on the real specimen rows (head 5 + tail 5), gzipped too.

Expected values were computed independently with Python's ``csv`` and ``datetime`` modules.
"""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import pytest

from servetrace.loaders import azure_lmm_2025, ingest, registry
from servetrace.loaders.source import FormatError

OFFICIAL = "AzureLMMInferenceTrace_multimodal.csv.gz"
ORIGIN = datetime(2024, 10, 15, 12, 0, 0, 269000)


@pytest.fixture
def specimen(shared: Path) -> Path:
    return shared / "specimens" / "AzureLMMInferenceTrace_multimodal_rows.csv"


@pytest.fixture
def gzipped(tmp_path: Path, specimen: Path) -> Path:
    """The specimen gzipped under the official file name, in a mirror-like folder."""
    path = tmp_path / "mirror" / OFFICIAL
    path.parent.mkdir()
    path.write_bytes(gzip.compress(specimen.read_bytes()))
    return path


def _check(loaded) -> None:
    req = loaded.tables["requests"]
    assert loaded.rows_read == 10 and req.height == 10 and loaded.rejects.height == 0
    assert req["input_tokens"].sum() == 12859 and req["output_tokens"].sum() == 1395
    assert req["num_images"].sum() == 22
    assert req["num_images"].to_list() == [0, 1, 1, 0, 1, 16, 1, 1, 1, 0]
    assert req.row(0) == (0.0, 770, 491, 0)
    assert req.row(-1)[1:] == (841, 63, 0)
    assert loaded.origin == ORIGIN  # Z + milliseconds
    # milliseconds are exact; head 5 + tail 5, so the span jumps from 7.3 s to the week's end
    assert req["arrival_s"].to_list() == pytest.approx(
        [0.0, 5.55, 6.244, 7.063, 7.297, 604799.27, 604799.444, 604799.562, 604799.693,
         604799.695], abs=1e-9)


def test_specimen_rows(specimen):
    _check(azure_lmm_2025.load([specimen], "t"))


def test_gzipped(gzipped):
    assert gzipped.read_bytes()[:2] == b"\x1f\x8b"
    assert azure_lmm_2025.detect(gzipped)
    assert registry.detect(gzipped) is azure_lmm_2025
    _check(azure_lmm_2025.load([gzipped], "t"))


def test_detected(specimen, shared):
    assert registry.detect(specimen) is azure_lmm_2025
    assert not azure_lmm_2025.detect(
        shared / "specimens" / "AzureLLMInferenceTrace_code_1week_rows.csv")


def test_ingest_gzipped_file(gzipped, store):
    (record,) = ingest(gzipped, store=store)
    assert record["trace"] == "azure_lmm_2025/multimodal" and record["part"] == "multimodal"
    assert (record["rows_read"], record["rows"], record["rejected"]) == (10, 10, 0)
    got = store.sql("SELECT count(*), sum(num_images), max(num_images), sum(input_tokens), "
                    "sum(output_tokens), origin FROM requests JOIN traces USING (trace) "
                    "GROUP BY origin")
    assert got.row(0) == (10, 22, 16, 12859, 1395, ORIGIN.replace(tzinfo=UTC))


def test_ingest_by_name_from_mirror(gzipped, store, monkeypatch):
    """The download path: the official file name found in SERVETRACE_MIRROR."""
    monkeypatch.setenv("SERVETRACE_MIRROR", str(gzipped.parent))
    (record,) = ingest("azure_lmm_2025", store=store, progress=False)
    assert record["trace"] == "azure_lmm_2025/multimodal"
    assert record["source_urls"] == [
        "https://raw.githubusercontent.com/Azure/AzurePublicDataset/master/data/" + OFFICIAL]
    assert store.sql("SELECT sum(num_images) FROM requests").item() == 22


def test_bad_rows(tmp_path, specimen):
    lines = specimen.read_text().splitlines()
    lines[2] = lines[2].replace(",1,949,", ",-1,949,")             # negative images
    lines[3] = lines[3].replace(",1,964,", ",1.5,964,")            # non-integer images
    lines[4] = "2024-10-15T12:00:07.332+01:00,0,78,5"               # not UTC
    lines[5] = lines[5].replace("2024-10-15T12:00:07.566Z", "yesterday")
    lines[-1] = lines[-1][:-2]                                      # cut: '...,0,841,'
    path = tmp_path / "mm.csv.gz"
    path.write_bytes(gzip.compress("\n".join(lines).encode()))
    loaded = azure_lmm_2025.load([path], "t")
    assert loaded.rows_read == 10 == loaded.tables["requests"].height + loaded.rejects.height
    assert loaded.rejects.select("line", "reason").rows() == [
        (3, "negative num_images (NumImages): -1"),
        (4, "non-integer num_images (NumImages): 1.5"),
        (5, "unparsable arrival_s (TIMESTAMP): '2024-10-15T12:00:07.332+01:00'"),
        (6, "unparsable arrival_s (TIMESTAMP): 'yesterday'"),
        (11, "missing required field output_tokens (GeneratedTokens)"),
    ]


def test_other_delimiter_fails_at_line_1(tmp_path, specimen):
    path = tmp_path / "mm.csv"
    path.write_text(specimen.read_text().replace(",", ";"))
    with pytest.raises(FormatError, match=r"mm\.csv:1: unexpected header"):
        azure_lmm_2025.load([path], "t")
    assert not azure_lmm_2025.detect(path)


def test_dataset_declaration():
    (part,) = azure_lmm_2025.DATASET.parts
    assert part.name == "multimodal" and part.files[0].name == OFFICIAL
    assert part.files[0].size is None and part.files[0].sha256 is None
    assert "ModServe" in azure_lmm_2025.DATASET.citation
