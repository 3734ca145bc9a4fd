"""The line reader keeps every byte: 0x1F is an ordinary byte, invalid UTF-8 is a reject (never
replaced silently), a rejected row's ``raw`` is its source line, and a truncated gzip is one
clear error. Rows are real rows from ../shared/traces or files in the documented formats.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from servetrace.cli import app
from servetrace.loaders import azure_functions_2021, azure_llm_2023, burstgpt, ingest, servegen
from servetrace.loaders.source import FormatError, read_lines

AZURE = "azure_llm_2023/AzureLLMInferenceTrace_code.csv"


def _azure(shared: Path, tmp_path: Path, extra: list[bytes], n: int = 3) -> Path:
    """The real header and first ``n`` rows, then ``extra`` lines (bytes, as written)."""
    lines = (shared / AZURE).read_bytes().splitlines()[: n + 1]
    path = tmp_path / "AzureLLMInferenceTrace_code.csv"
    path.write_bytes(b"\n".join(lines + extra) + b"\n")
    return path


def _reasons(loaded) -> dict[int, str]:
    return dict(loaded.rejects.select("line", "reason").rows())


# -- item 7: byte 0x1F --------------------------------------------------------------------------
def test_unit_separator_in_the_first_line(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"a\x1fb,c\r\nd,e\n")
    assert read_lines(path).rows() == [(1, "a\x1fb,c", None), (2, "d,e", None)]


def test_unit_separator_later_is_kept_in_raw(shared, tmp_path):
    row = b"2023-11-16 18:17:05.0000000,31\x1f,7,8"
    path = _azure(shared, tmp_path, [row])
    loaded = azure_llm_2023.load([path], "t")
    assert loaded.rejects.select("line", "raw").rows() == [(5, row.decode())]
    assert _reasons(loaded) == {5: "wrong number of columns: 4 (expected 3)"}


@pytest.mark.parametrize("others", [[], [b"2023-11-16 18:17:06.0,31"]])
def test_row_with_unit_separator_is_judged_alike_whatever_the_other_rows(shared, tmp_path,
                                                                          others):
    row = b"2023-11-16 18:17:05.0000000,4808,10\x1fjunk"
    path = _azure(shared, tmp_path, [row, *others])
    loaded = azure_llm_2023.load([path], "t")
    assert loaded.tables["requests"].height == 3
    assert loaded.rejects.filter(loaded.rejects["line"] == 5).select("reason", "raw").rows() \
        == [("unparsable output_tokens (GeneratedTokens): '10\x1fjunk'", row.decode())]


# -- item 6: invalid UTF-8 ----------------------------------------------------------------------
INVALID = "invalid UTF-8: 2 bytes shown as \\xNN in raw"


def test_burstgpt_invalid_utf8_model_is_a_reject(tmp_path):
    path = tmp_path / "BurstGPT_1.csv"
    path.write_bytes(b"Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                     b"5,ChatGPT,472,18,490,Conversation log\n"
                     b"45,ChatGPT\xff\xfe,1087,230,1317,Conversation log\n")
    loaded = burstgpt.load([path], "t")
    assert loaded.tables["requests"]["model"].cast(str).to_list() == ["ChatGPT"]
    assert loaded.rejects.select("line", "reason", "raw").rows() == [
        (3, INVALID, "45,ChatGPT\\xff\\xfe,1087,230,1317,Conversation log")]
    assert loaded.rows_read == 2 == loaded.tables["requests"].height + loaded.rejects.height


def test_burstgpt_jsonl_invalid_utf8_string_field(shared, tmp_path):
    lines = (shared / "burstgpt_sample" / "sample.jsonl").read_bytes().splitlines()[:3]
    lines[1] = lines[1].replace(b'"session_id": "', b'"session_id": "\xff\xfe')
    path = tmp_path / "sample.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    loaded = burstgpt.load([path], "t")
    assert _reasons(loaded) == {2: INVALID}
    assert "\ufffd" not in "".join(loaded.tables["requests"]["session"].cast(str).to_list())


def test_azure_functions_2021_invalid_utf8(shared, tmp_path):
    name = "AzureFunctionsInvocationTraceForTwoWeeksJan2021.csv"
    lines = (shared / "azure_functions_2021" / name).read_bytes().splitlines()[:4]
    lines[2] = b"\xe9" + lines[2][1:]
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    loaded = azure_functions_2021.load([path], "t")
    assert _reasons(loaded) == {3: "invalid UTF-8: 1 byte shown as \\xNN in raw"}
    assert loaded.rejects["raw"][0] == "\\xe9" + lines[2][1:].decode()
    assert loaded.tables["invocations"].height == 2


def test_servegen_non_utf8_trace_line(shared, tmp_path):
    import shutil
    folder = tmp_path / "m-small"
    shutil.copytree(shared / "servegen" / "language" / "m-small", folder)
    path = folder / "chunk-0-trace.csv"
    path.write_bytes(path.read_bytes() + b"1800,0\xff,0,,0,0\n")
    loaded = servegen.load([folder], "t")
    assert loaded.rejects.select("line", "reason", "raw").rows() == [
        (2017, "invalid UTF-8: 1 byte shown as \\xNN in raw", "1800,0\\xff,0,,0,0")]


def test_invalid_utf8_reject_is_stored(tmp_path, store):
    path = tmp_path / "BurstGPT_1.csv"
    path.write_bytes(b"Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                     b"5,ChatGPT\xff\xfe,472,18,490,Conversation log\n"
                     b"45,ChatGPT,1087,230,1317,Conversation log\n")
    [rec] = ingest(path, store=store)
    assert (rec["rows_read"], rec["rows"], rec["rejected"]) == (2, 1, 1)
    assert store.sql("select raw, reason from rejects").rows() == [
        ("5,ChatGPT\\xff\\xfe,472,18,490,Conversation log", INVALID)]
    assert store.sql("select count(*) from requests where model like '%\ufffd%'").item() == 0


def test_invalid_utf8_in_a_header_is_named(shared, tmp_path):
    name = "AzureFunctionsInvocationTraceForTwoWeeksJan2021.csv"
    lines = (shared / "azure_functions_2021" / name).read_bytes().splitlines()[:3]
    path = tmp_path / name
    path.write_bytes(b"\n".join([b"app,func\xff,end_timestamp,duration", *lines[1:]]) + b"\n")
    with pytest.raises(FormatError, match=r":1: header is not valid UTF-8 \(byte 0xff at byte 9"):
        azure_functions_2021.load([path], "t")


# -- item 5: truncated gzip ---------------------------------------------------------------------
def _truncated(shared: Path, tmp_path: Path, keep: float | int) -> Path:
    data = gzip.compress((shared / AZURE).read_bytes())
    cut = int(len(data) * keep) if isinstance(keep, float) else keep
    path = tmp_path / "AzureLLMInferenceTrace_code.csv.gz"
    path.write_bytes(data[:cut])
    return path


def test_truncated_gzip_is_one_clear_error(shared, tmp_path):
    path = _truncated(shared, tmp_path, 0.5)
    size = path.stat().st_size
    with pytest.raises(FormatError) as info:
        azure_llm_2023.load([path], "t")
    msg = str(info.value)
    assert msg.startswith(f"{path}: ")
    assert f"gzip stream ends early, at compressed byte {size:,}" in msg
    assert "no rows of this file were kept" in msg and "\n" not in msg


@pytest.mark.parametrize("keep", [0.5, 30])
def test_cli_truncated_gzip(shared, tmp_path, monkeypatch, keep):
    monkeypatch.setenv("SERVETRACE_STORE", str(tmp_path / "store"))
    path = _truncated(shared, tmp_path, keep)
    res = CliRunner().invoke(app, ["ingest", str(path)])
    assert res.exit_code == 1
    out = " ".join(res.output.split())
    assert "Aborted" not in out and "Traceback" not in out
    assert str(path) in out and "gzip stream ends early" in out
    assert "no rows of this file were kept" in out
    res = CliRunner().invoke(app, ["list", "--format", "json"])
    assert json.loads(res.stdout or "[]") == []
