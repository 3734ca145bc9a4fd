"""One-pass ingest (DuckDB) stores a large CSV exactly as the loader's own reading does.

Chunks are made tiny (``SERVETRACE_CHUNK_BYTES``) so that small files count as large; the
whole-file ingest of the same bytes, by the loader itself, is the ground truth. A file with
any row the pass cannot vouch for must come out the same too, through the chunked reading.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from servetrace.loaders import Store, ingest, schema

BURST_V1 = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"
BURST_V2 = ("Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,"
            "Total tokens,Log Type")
AZURE = "TIMESTAMP,ContextTokens,GeneratedTokens"


def _v1(n: int = 3000) -> list[str]:
    # an empty Model (every 101st row) is null, and so is the tenant built from it
    return [f"{i // 3},{'' if i % 101 == 5 else 'ChatGPT' if i % 4 else 'GPT-4'},"
            f"{10 + i % 7},{i % 5},"
            f"{10 + i % 7 + i % 5},{'Conversation log' if i % 3 else 'API log'}"
            for i in range(n)]


def _v2(n: int = 3000) -> list[str]:
    return [f"{i * 0.5},{'' if i % 3 == 0 else f's{i % 17}'},{'' if i % 11 == 0 else i % 9 / 4}"
            f",ChatGPT,{i % 13},{i % 6},{i % 13 + i % 6},"
            f"{'Conversation log' if i % 3 else 'API log'}" for i in range(n)]


def _azure(n: int = 3000) -> list[str]:
    # both spellings of the week files: microseconds, and none on a whole second
    return [f"2024-05-10 {i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}"
            f"{'' if i % 10 == 0 else f'.{(i * 7919) % 1_000_000:06d}'}+00:00,"
            f"{100 + i % 977},{i % 301}" for i in range(n)]


def _ingest_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, header: str,
                 rows: list[str], fmt: str, end: str = "\n"
                 ) -> tuple[tuple[Store, dict], tuple[Store, dict]]:
    path = tmp_path / name
    path.write_bytes((end.join([header, *rows]) + end).encode())
    whole = Store(tmp_path / "whole")
    [rec_whole] = ingest(path, store=whole, as_format=fmt, progress=False)
    monkeypatch.setenv("SERVETRACE_CHUNK_BYTES", "4000")
    large = Store(tmp_path / "large")
    [rec_large] = ingest(path, store=large, as_format=fmt, progress=False)
    return (whole, rec_whole), (large, rec_large)


def _same(a: tuple[Store, dict], b: tuple[Store, dict], *, exact: bool = True) -> None:
    (x, rx), (y, ry) = a, b
    for key in ("rows_read", "rows_accepted", "rows", "rejected", "origin", "sha256",
                "tables", "start_s", "end_s"):
        assert ry[key] == (rx[key] if exact or not key.endswith("_s")
                           else pytest.approx(rx[key])), key
    assert json.loads(ry["notes"]) == json.loads(rx["notes"])
    p, q = x.scan("requests").collect(), y.scan("requests").collect()
    if exact:
        assert p.equals(q)
    else:  # the chunked reading puts chunks on one zero, to within float rounding
        assert (p["arrival_s"] - q["arrival_s"]).abs().max() < 1e-9
        assert p.drop("arrival_s").equals(q.drop("arrival_s"))
    cols = ["source", "line", "raw", "reason"]
    assert x.scan("rejects").collect().select(cols).equals(y.scan("rejects").collect()
                                                           .select(cols))
    assert y.sql("SELECT count(*) FROM requests").item() == p.height


@pytest.mark.parametrize(("name", "header", "rows", "fmt"), [
    ("BurstGPT_1.csv", BURST_V1, [*_v1()[:1500], "", *_v1()[1500:]], "burstgpt"),  # a blank
    ("BurstGPT_3.csv", BURST_V2, _v2(), "burstgpt"),
    ("AzureLLMInferenceTrace_conv_1week.csv", AZURE, _azure(), "azure_llm_2024"),
])
def test_one_pass_stores_what_the_loader_stores(tmp_path, monkeypatch, name, header, rows, fmt):
    whole, large = _ingest_both(tmp_path, monkeypatch, name, header, rows, fmt)
    _same(whole, large)
    assert _one_pass(large[1]) and large[1]["rows"] == len([r for r in rows if r])
    [file] = large[0].files("requests")
    written = pq.read_schema(file)
    # typed and documented like every store file; all-null columns are left out
    assert "hash_ids" not in written.names and {"arrival_s", "input_tokens"} <= set(
        written.names)
    for f in written:
        canonical = schema.REQUESTS.field(f.name)
        assert (f.type, f.metadata) == (canonical.type, canonical.metadata)
    assert pq.ParquetFile(file).metadata.num_row_groups > 1  # sized like chunks
    assert large[0].check()["problem"].null_count() == large[0].check().height


BAD_V1 = {  # rows the pass cannot vouch for: the loader reads the whole file instead
    "negative": "{t},ChatGPT,-3,1,-2,API log",
    "non-integer": "{t},ChatGPT,12.5,1,13.5,API log",
    "underscore": "{t},ChatGPT,1_000,1,1001,API log",
    "empty count": "{t},ChatGPT,,1,1,API log",
    "ragged": "{t},ChatGPT,1,1",
    "padded text": "{t}, ChatGPT,1,1,2,API log",
    "quoted": '{t},"ChatGPT",1,1,2,API log',
    "total differs": "{t},ChatGPT,1,1,3,API log",
    "not finite": "inf,ChatGPT,1,1,2,API log",
}


def _one_pass(rec: dict) -> bool:
    """Whether the trace was written in one pass: one requests file, no rejects."""
    return json.loads(rec["files"]) == {"requests": {"00000": rec["rows"]},
                                        "rejects": {"00000": 0}}


@pytest.mark.parametrize("kind", sorted(BAD_V1))
def test_a_file_the_pass_cannot_vouch_for_is_read_by_the_loader(tmp_path, monkeypatch, kind):
    rows = _v1(600)
    rows[400] = BAD_V1[kind].format(t=400 // 3)
    whole, large = _ingest_both(tmp_path, monkeypatch, "BurstGPT_1.csv", BURST_V1, rows,
                                "burstgpt")
    _same(whole, large)
    assert not _one_pass(large[1])  # the chunked reading


@pytest.mark.parametrize("bad", [
    "2024-05-10 00:05:00+02:00,5,5",        # another zone: rejected by the loader
    "2024-05-10 24:00:00+00:00,5,5",        # hour 24: DuckDB reads it, the loader does not
    "2024-05-10T00:05:00+00:00,5,5",        # a spelling the loader reads, the pass does not
    "2024-05-10 00:05:00.1234567+00:00,5,5",  # nanoseconds
    "2024-05-10 00:05:00.1234 6+00:00,5,5",   # 32 characters, not the week files' spelling
])
def test_azure_rows_the_pass_cannot_vouch_for(tmp_path, monkeypatch, bad):
    rows = _azure(600)
    rows[300] = bad
    whole, large = _ingest_both(tmp_path, monkeypatch, "AzureLLMInferenceTrace_conv_1week.csv",
                                AZURE, rows, "azure_llm_2024")
    _same(whole, large, exact=False)
    assert not _one_pass(large[1])


@pytest.mark.parametrize(("name", "header", "rows", "fmt", "late"), [
    ("BurstGPT_1.csv", BURST_V1, _v1(600), "burstgpt", "0,ChatGPT,1,1,2,API log"),
    ("AzureLLMInferenceTrace_conv_1week.csv", AZURE, _azure(600), "azure_llm_2024",
     "2024-05-09 23:00:00.5+00:00,5,5"),  # before the first row: the zero moves to it
])
def test_rows_out_of_time_order_are_sorted(tmp_path, monkeypatch, name, header, rows, fmt,
                                           late):
    rows[400] = late
    whole, large = _ingest_both(tmp_path, monkeypatch, name, header, rows, fmt)
    _same(whole, large, exact=fmt == "burstgpt")
    assert json.loads(large[1]["files"])["requests"] == {"s00000": 600}  # sorted by the store
    assert large[0].scan("requests").collect()["arrival_s"].is_sorted()


def test_crlf_line_ends(tmp_path, monkeypatch):
    whole, large = _ingest_both(tmp_path, monkeypatch, "BurstGPT_1.csv", BURST_V1, _v1(),
                                "burstgpt", end="\r\n")
    _same(whole, large)
    assert _one_pass(large[1])


def test_one_pass_is_skipped_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVETRACE_ONE_PASS", "0")
    whole, large = _ingest_both(tmp_path, monkeypatch, "BurstGPT_1.csv", BURST_V1, _v1(),
                                "burstgpt")
    _same(whole, large)
    assert not _one_pass(large[1])
    assert pl.scan_parquet(large[0].files("requests")).collect_schema().names() == list(
        schema.REQUESTS.names)


def test_a_killed_pass_leaves_nothing_behind(tmp_path, monkeypatch):
    """A pass killed mid-COPY leaves its scratch folder; the next ingest of the trace
    sweeps it with the other uncommitted files."""
    _, large = _ingest_both(tmp_path, monkeypatch, "BurstGPT_1.csv", BURST_V1, _v1(),
                            "burstgpt")
    folder = large[0].files("requests")[0].parent
    stray = folder / "20000101T000000-000000000000.onepass"
    stray.mkdir()
    (stray / "part0.parquet").write_bytes(b"PAR1")
    ingest(tmp_path / "BurstGPT_1.csv", store=large[0], as_format="burstgpt", progress=False)
    assert not stray.exists()
    assert [p.name.split(".", 1)[1] for p in folder.iterdir()] == ["00000.parquet"]
