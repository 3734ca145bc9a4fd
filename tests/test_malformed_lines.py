"""Malformed source lines are rejects with a reason, whatever the other files look like.

Real files from ../shared/traces with one line changed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from servetrace.loaders import azure_llm_2023, ingest, servegen

BAD_TRACE_LINES = {
    "too few fields": (b"1800,0,0\n", "wrong number of columns: 3 (expected 6)"),
    "too many fields": (b"1800,0,0,,0,0,7\n", "wrong number of columns: 7 (expected 6)"),
    "binary": (b"\x00\x01\x02\x03,\x04\n", "wrong number of columns: 2 (expected 6)"),
}


def _pool(shared: Path, tmp_path: Path, extra: bytes) -> Path:
    """The real m-small pool with one line appended to client 0's trace CSV."""
    folder = tmp_path / "m-small"
    shutil.copytree(shared / "servegen" / "language" / "m-small", folder)
    path = folder / "chunk-0-trace.csv"
    path.write_bytes(path.read_bytes() + extra)
    return folder


@pytest.mark.parametrize("case", list(BAD_TRACE_LINES))
def test_servegen_malformed_trace_line_is_a_reject(shared, tmp_path, case):
    extra, reason = BAD_TRACE_LINES[case]
    folder = _pool(shared, tmp_path, extra)
    clean = servegen.load([shared / "servegen" / "language" / "m-small"], "t")
    loaded = servegen.load([folder], "t")
    assert loaded.rejects.select("source", "line", "reason").rows() == [
        (str(folder / "chunk-0-trace.csv"), 2017, reason)]  # the file has 2,016 lines
    assert loaded.rows_read == clean.rows_read + 1
    assert loaded.rows_read == loaded.accepted + loaded.rejects.height
    assert loaded.tables["client_windows"].equals(clean.tables["client_windows"])


def test_servegen_malformed_trace_line_through_ingest(shared, tmp_path, store):
    folder = _pool(shared, tmp_path, b"1800,0,0\n")
    [rec] = ingest(folder, store=store)
    assert rec["rejected"] == 1 and rec["rows_read"] == rec["rows_accepted"] + 1


def test_azure_files_read_differently_concatenate(shared, tmp_path):
    """One well-formed file (fast path) and one with a short line (line path) load together."""
    src = shared / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv"
    lines = src.read_text().splitlines()
    good = tmp_path / "a.csv"
    good.write_text("\n".join(lines[:4]) + "\n")
    bad = tmp_path / "b.csv"
    bad.write_text("\n".join(lines[:1] + lines[4:7]) + "\n2023-11-16 18:17:05.0,31\n")
    loaded = azure_llm_2023.load([good, bad], "t")
    assert loaded.tables["requests"].height == 6
    assert loaded.rejects.select("line", "reason").rows() == [
        (5, "wrong number of columns: 2 (expected 3)")]
