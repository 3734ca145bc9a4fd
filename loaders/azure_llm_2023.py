"""Azure LLM inference trace 2023 (the Splitwise paper), code and conversation.

Source: ``Azure/AzurePublicDataset``, ``data/AzureLLMInferenceTrace_{code,conv}.csv``.
Header ``TIMESTAMP,ContextTokens,GeneratedTokens``; ``TIMESTAMP`` is UTC wall time with 7
fractional digits and no zone (``2023-11-16 18:17:03.9799600``); one row per request.
``ContextTokens`` → ``input_tokens``, ``GeneratedTokens`` → ``output_tokens``.

Patel et al., "Splitwise: Efficient Generative LLM Inference Using Phase Splitting",
ISCA 2024. The published medians of the conversation trace are 1020 input and 129 output
tokens.

:func:`load_azure_csv` is shared by the 2024 week traces and the 2025 multimodal trace, which
use the same columns (the latter adds ``NumImages``) with other timestamp spellings.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from servetrace.loaders.dataset import Dataset, Loaded, Part, RemoteFile
from servetrace.loaders.schema import validate_csv
from servetrace.loaders.source import (
    csv_rows,
    expect_header,
    head,
    header_fields,
    parse_number,
    parse_timestamps,
    to_relative_seconds,
)

VERSION = "1"
HEADER = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
_BASE = "https://raw.githubusercontent.com/Azure/AzurePublicDataset/master/data/"

DATASET = Dataset(
    name="azure_llm_2023",
    title="Azure LLM inference trace 2023",
    citation=("Pratyush Patel, Esha Choukse, Chaojie Zhang, Aashaka Shah, Íñigo Goiri, "
              "Saeed Maleki, Ricardo Bianchini. Splitwise: Efficient Generative LLM Inference "
              "Using Phase Splitting. ISCA 2024."),
    license="CC-BY-4.0",
    homepage="https://github.com/Azure/AzurePublicDataset/blob/master/AzureLLMInferenceDataset2023.md",
    parts=(
        Part("code", (RemoteFile(
            _BASE + "AzureLLMInferenceTrace_code.csv", "AzureLLMInferenceTrace_code.csv",
            size=320117,
            sha256="54e9a6d2a4bd06ba1e060304b900abbc74cbea53de96506e60fe5bb4f2277fb6"),),
            "coding assistant requests, 1 hour"),
        Part("conv", (RemoteFile(
            _BASE + "AzureLLMInferenceTrace_conv.csv", "AzureLLMInferenceTrace_conv.csv",
            size=719188,
            sha256="2f1e5b666d4e3055fdbba98598ce2ec307767b9064e03e2fa46676dbcc7d0bf8"),),
            "conversation requests, 1 hour"),
    ),
)


def detect(path: Path) -> bool:
    """The 2023 files: the Azure header and a zone-less timestamp in the first row."""
    lines = head(path, 2)
    return (header_fields(path) == HEADER and len(lines) > 1
            and not lines[1].split(",")[0].endswith(("Z", "+00:00")))


def load_azure_csv(paths: list[Path], trace: str, header: list[str]) -> Loaded:
    """Read Azure LLM/LMM CSV files (``TIMESTAMP``, [``NumImages``,] tokens) onto ``requests``."""
    counts = [c for c in header if c != "TIMESTAMP"]
    text = {"arrival_s": "TIMESTAMP", "input_tokens": "ContextTokens",
            "output_tokens": "GeneratedTokens", "num_images": "NumImages"}
    text = {k: v for k, v in text.items() if v in header}

    def parse(rows: pl.DataFrame) -> pl.DataFrame:
        return rows.with_columns(
            parse_timestamps(rows["TIMESTAMP"]).alias("arrival_s"),
            *(parse_number(pl.col(v)).alias(k) for k, v in text.items() if v in counts))

    valids, rejects, read = [], [], 0
    for path in paths:
        expect_header(path, header)
        rows = csv_rows(path, header, numeric=counts)
        valid, bad = validate_csv("requests", path, header, rows, parse, trace=trace,
                                  text=text)
        valids.append(valid)
        rejects.append(bad)
        read += rows.height
    valid, origin = to_relative_seconds(pl.concat(valids))
    return Loaded(tables={"requests": valid}, rejects=pl.concat(rejects), rows_read=read,
                  origin=origin)


def stream_header_lines(path: Path) -> int:
    """Rows stand alone: a large file is read in chunks, each after the header line
    (:mod:`servetrace.loaders.chunks`)."""
    return 1


def load(paths: list[Path], trace: str) -> Loaded:
    return load_azure_csv(paths, trace, HEADER)
