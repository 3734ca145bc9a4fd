"""Streaming ingest: a file read in chunks is stored exactly as the same file read whole.

Chunks are made tiny here (``SERVETRACE_CHUNK_BYTES``) so real sample files cross many chunk
boundaries; the whole-file ingest of the same bytes is the ground truth.
"""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import polars as pl
import pytest

from servetrace.loaders import Store, ingest
from servetrace.loaders.source import FormatError


def _both(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int = 20_000,
          **kw) -> tuple[tuple[Store, dict], tuple[Store, dict]]:
    whole = Store(tmp_path / "whole")
    [rec_whole] = ingest(path, store=whole, progress=False, **kw)
    monkeypatch.setenv("SERVETRACE_CHUNK_BYTES", str(chunk))
    streamed = Store(tmp_path / "streamed")
    [rec_streamed] = ingest(path, store=streamed, progress=False, **kw)
    return (whole, rec_whole), (streamed, rec_streamed)


def _same(a: Store, b: Store, table: str = "requests") -> None:
    x, y = a.scan(table).collect(), b.scan(table).collect()
    assert x.height == y.height
    assert y["arrival_s"].is_sorted()
    diff = (x["arrival_s"] - y["arrival_s"]).abs().max()
    assert diff is None or diff < 1e-9  # one shift of the zero, in float64 seconds
    assert x.drop("arrival_s").equals(y.drop("arrival_s"))
    cols = ["source", "line", "raw", "reason"]
    assert a.scan("rejects").collect().select(cols).equals(
        b.scan("rejects").collect().select(cols))


def _with_bad_rows(shared: Path, tmp_path: Path) -> Path:
    """The Azure 2023 code trace with three bad rows, in three different chunks."""
    lines = (shared / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv").read_text(
        ).splitlines()
    lines[100] = "not a time,1,2"
    lines[4000] = lines[4000].rsplit(",", 1)[0] + ",-5"
    lines[8000] = "2023-11-16 18:15:46.6805900,1"
    path = tmp_path / "AzureLLMInferenceTrace_code.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_chunked_azure_csv_is_stored_as_read_whole(shared, tmp_path, monkeypatch):
    path = _with_bad_rows(shared, tmp_path)
    (whole, rw), (streamed, rs) = _both(path, tmp_path, monkeypatch)
    files = json.loads(rs["files"])
    assert len(files["requests"]) > 10 and rw["files"] is None
    for key in ("rows_read", "rows_accepted", "rows", "rejected", "origin", "start_s",
                "end_s", "sha256", "tables"):
        assert rs[key] == pytest.approx(rw[key]) if key.endswith("_s") else rs[key] == rw[key]
    assert rs["rejected"] == 3 and rs["rows_read"] == 8819
    _same(whole, streamed)
    rejects = streamed.scan("rejects").collect().sort("line")
    assert rejects["line"].to_list() == [101, 4001, 8001]  # the source file's own lines
    assert set(rejects["source"]) == {str(path)}
    assert streamed.check()["problem"].null_count() == streamed.check().height
    assert streamed.sql("SELECT count(*) FROM requests").item() == 8816


def test_a_file_out_of_time_order_is_sorted_across_chunks(shared, tmp_path, monkeypatch):
    """The second half first: later chunks reach before the first chunk's origin, so the
    trace is re-sorted (stably) and re-zeroed at the end."""
    lines = (shared / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv").read_text(
        ).splitlines()
    half = len(lines) // 2
    path = tmp_path / "AzureLLMInferenceTrace_conv.csv"
    path.write_text("\n".join([lines[0], *lines[half:], *lines[1:half]]) + "\n")
    (whole, rw), (streamed, rs) = _both(path, tmp_path, monkeypatch)
    assert rs["origin"] == rw["origin"] and rs["start_s"] == 0.0
    assert all(part.startswith("s") for part in json.loads(rs["files"])["requests"])
    _same(whole, streamed)


def test_chunked_gzip_and_a_truncated_one(shared, tmp_path, monkeypatch):
    src = (shared / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv").read_bytes()
    path = tmp_path / "AzureLLMInferenceTrace_conv.csv.gz"
    path.write_bytes(gzip.compress(src[: len(src) // 2]) + gzip.compress(src[len(src) // 2:]))
    (whole, _), (streamed, rs) = _both(path, tmp_path, monkeypatch, chunk=2_000,
                                       as_format="azure_llm_2023")
    assert len(json.loads(rs["files"])["requests"]) > 10
    _same(whole, streamed)
    cut = tmp_path / "cut" / "AzureLLMInferenceTrace_conv.csv.gz"
    cut.parent.mkdir()
    cut.write_bytes(path.read_bytes()[:-200])
    store = Store(tmp_path / "cut-store")
    with pytest.raises(FormatError, match="gzip stream ends early"):
        ingest(cut, store=store, as_format="azure_llm_2023", progress=False)
    assert not list((store.root / "requests").glob("*/*.parquet")) if store.root.exists() \
        else True


def test_chunked_burstgpt_adds_its_counts(tmp_path, monkeypatch):
    header = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"
    rows = [f"{i},ChatGPT,{10 + i % 7},{i % 5},{10 + i % 7 + i % 5 + (i % 11 == 0)}," +
            ("Conversation log" if i % 3 else "API log") for i in range(3000)]
    rows[1234] = "1234,ChatGPT,x,1,2,API log"
    path = tmp_path / "BurstGPT_1.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    (whole, rw), (streamed, rs) = _both(path, tmp_path, monkeypatch, chunk=4_000)
    assert len(json.loads(rs["files"])["requests"]) > 10
    assert json.loads(rs["notes"]) == json.loads(rw["notes"])
    assert json.loads(rs["notes"])["failed"] == 600
    _same(whole, streamed)


def test_a_bad_header_names_the_source_file(shared, tmp_path, monkeypatch):
    path = tmp_path / "AzureLLMInferenceTrace_code.csv"
    lines = (shared / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv").read_text(
        ).splitlines()
    path.write_text("\n".join(["TIMESTAMP,Context,GeneratedTokens", *lines[1:]]) + "\n")
    monkeypatch.setenv("SERVETRACE_CHUNK_BYTES", "20000")
    with pytest.raises(FormatError) as err:
        ingest(path, store=Store(tmp_path / "s"), as_format="azure_llm_2023", progress=False)
    assert err.value.path == str(path) and err.value.line == 1


def test_chunk_size_must_be_positive(shared, tmp_path, monkeypatch):
    monkeypatch.setenv("SERVETRACE_CHUNK_BYTES", "lots")
    with pytest.raises(ValueError, match="SERVETRACE_CHUNK_BYTES"):
        ingest(shared / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv",
               store=Store(tmp_path / "s"), progress=False)


def test_time_range_query_reads_only_the_files_that_hold_it(shared, tmp_path, monkeypatch):
    """Chunk files follow each other in time, so each holds a narrow arrival_s range."""
    path = shared / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv"
    monkeypatch.setenv("SERVETRACE_CHUNK_BYTES", "20000")
    store = Store(tmp_path / "s")
    ingest(path, store=store, progress=False)
    spans = [pl.scan_parquet(f).select(pl.col("arrival_s").min().alias("lo"),
                                       pl.col("arrival_s").max().alias("hi")).collect().row(0)
             for f in store.files("requests")]
    assert all(hi <= lo for (_, hi), (lo, _) in itertools.pairwise(spans))
