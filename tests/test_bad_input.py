"""Bad input: each case gives a clear error or lands in `rejects`, and loses nothing."""

from __future__ import annotations

import pytest

from servetrace.loaders import azure_llm_2023, ingest
from servetrace.loaders.source import FormatError
from tests.conftest import write

HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
GOOD = ("2023-11-16 18:17:03.9799600,4808,10\n"
        "2023-11-16 18:17:04.0319600,3180,8\n")


def _load(tmp_path, body: str):
    path = write(tmp_path / "AzureLLMInferenceTrace_code.csv", HEADER + body)
    return path, azure_llm_2023.load([path], "t")


def _reasons(loaded) -> dict[int, str]:
    return dict(loaded.rejects.select("line", "reason").iter_rows())


def test_truncated_last_line(tmp_path):
    _, loaded = _load(tmp_path, GOOD + "2023-11-16 18:17:05.0000000,31")
    assert loaded.tables["requests"].height == 2
    assert _reasons(loaded) == {4: "wrong number of columns: 2 (expected 3)"}
    assert loaded.rejects["raw"][0] == "2023-11-16 18:17:05.0000000,31"


def test_negative_and_non_integer_tokens(tmp_path):
    _, loaded = _load(tmp_path, GOOD + "2023-11-16 18:17:05.0,-5,3\n2023-11-16 18:17:06.0,5,2.5\n")
    assert _reasons(loaded) == {
        4: "negative input_tokens (ContextTokens): -5",
        5: "non-integer output_tokens (GeneratedTokens): 2.5",
    }
    assert loaded.rows_read == 4 == loaded.tables["requests"].height + loaded.rejects.height
    # well-formed lines take the fast path; the text of the rejected ones is still kept
    assert loaded.rejects["raw"].to_list() == ["2023-11-16 18:17:05.0,-5,3",
                                               "2023-11-16 18:17:06.0,5,2.5"]


def test_padded_fields_read_alike_on_both_paths(tmp_path):
    """Spaces around fields are stripped whether or not the file is well-formed."""
    _, clean = _load(tmp_path, "2023-11-16 18:17:03.9 , 5 ,2\n")
    _, ragged = _load(tmp_path, "2023-11-16 18:17:03.9 , 5 ,2\n1,2\n")
    assert clean.tables["requests"]["input_tokens"].to_list() == [5]
    assert ragged.tables["requests"]["input_tokens"].to_list() == [5]


def test_blank_line_is_not_a_row(tmp_path):
    _, loaded = _load(tmp_path, GOOD + "\n2023-11-16 18:17:06.0,5,2\n")
    assert loaded.rows_read == 3 and loaded.rejects.is_empty()


def test_garbage_timestamp_and_missing_field(tmp_path):
    _, loaded = _load(tmp_path, GOOD + "yesterday,5,3\n2023-11-16 18:17:06.0,,3\n")
    assert _reasons(loaded) == {
        4: "unparsable arrival_s (TIMESTAMP): 'yesterday'",
        5: "missing required field input_tokens (ContextTokens)",
    }


def test_non_finite_and_text_tokens(tmp_path):
    _, loaded = _load(tmp_path, GOOD + "2023-11-16 18:17:05.0,inf,3\n2023-11-16 18:17:06.0,ten,3\n")
    assert _reasons(loaded) == {4: "non-finite input_tokens (ContextTokens)",
                                5: "unparsable input_tokens (ContextTokens): 'ten'"}


def test_wrong_header_names_file_and_line(tmp_path):
    path = write(tmp_path / "x.csv", "time,in,out\n" + GOOD)
    with pytest.raises(FormatError, match=r"x\.csv:1: unexpected header 'time,in,out'"):
        azure_llm_2023.load([path], "t")


def test_empty_file(tmp_path):
    path = write(tmp_path / "AzureLLMInferenceTrace_code.csv", "")
    with pytest.raises(FormatError, match="empty file"):
        azure_llm_2023.load([path], "t")


def test_unknown_format_is_a_clear_error(tmp_path, store):
    path = write(tmp_path / "mystery.csv", "a,b,c\n1,2,3\n")
    with pytest.raises(FormatError, match=r"mystery\.csv:1: matches no known format"):
        ingest(path, store=store)


def test_rejects_are_stored_and_counts_add_up(tmp_path, store):
    path, _ = _load(tmp_path, GOOD + "yesterday,5,3\n2023-11-16 18:17:06.0,1,-1\n")
    [rec] = ingest(path, store=store)
    assert (rec["rows_read"], rec["rows"], rec["rejected"]) == (4, 2, 2)
    rejects = store.sql("SELECT trace, line, reason FROM rejects ORDER BY line").rows()
    assert rejects == [
        ("azure_llm_2023/code", 4, "unparsable arrival_s (TIMESTAMP): 'yesterday'"),
        ("azure_llm_2023/code", 5, "negative output_tokens (GeneratedTokens): -1"),
    ]
