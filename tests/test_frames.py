"""The checks of an analysis' input (analysis.frames): a ``by`` column that is null in every
row warns in the Python API (Azure LLM 2023 has no tenant or model: issue 17, item 11)."""

from __future__ import annotations

import warnings
from pathlib import Path

import polars as pl
import pytest

from servetrace.analysis import burstiness, frames, tokens
from servetrace.loaders import azure_llm_2023
from servetrace.loaders.schema import conform
from servetrace.synth import model


@pytest.fixture(scope="module")
def code(shared: Path) -> pl.DataFrame:
    """The canonical requests table as the store holds it (every schema column)."""
    loaded = azure_llm_2023.load([shared / "azure_llm_2023/AzureLLMInferenceTrace_code.csv"],
                                 "azure_llm_2023/code")
    return conform("requests", loaded.tables["requests"].with_columns(
        pl.lit("azure_llm_2023/code").alias("trace")))


def test_empty_and_groupable_columns(code: pl.DataFrame) -> None:
    assert code["tenant"].null_count() == code.height == 8819  # the trace names no tenant
    assert frames.empty(code, ["tenant", "model", "trace"]) == ["tenant", "model"]
    assert frames.empty(code.lazy(), []) == []
    assert frames.empty(code.head(0), ["tenant"]) == []  # no rows: nothing to say
    have = frames.groupable(code)
    assert "trace" in have and "input_tokens" in have
    assert "tenant" not in have and "arrival_s" not in have  # empty; floating point


@pytest.mark.parametrize("call", [
    lambda f: burstiness.summary(f, by="tenant"),
    lambda f: burstiness.hurst(f.lazy(), by=["trace", "tenant"]),
    lambda f: tokens.summary(f, by="tenant"),
    lambda f: tokens.length_summary(f, by="model"),
    lambda f: model.fit(f, by="tenant"),
])
def test_an_empty_by_column_warns_at_the_callers_line(code: pl.DataFrame, call) -> None:
    with pytest.warns(frames.EmptyGroupWarning, match="null in every row") as caught:
        call(code)
    # the whole input's columns with values, not only those the function read
    assert str(caught[0].message).endswith("columns with values: trace, input_tokens, "
                                           "output_tokens")
    assert caught[0].filename == __file__  # points at the user's code, not servetrace's


def test_a_filled_by_column_does_not_warn(code: pl.DataFrame) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", frames.EmptyGroupWarning)
        assert burstiness.summary(code, by="trace").height == 1
        assert tokens.summary(code.with_columns(pl.lit("a").alias("tenant")),
                              by="tenant").height == 1
