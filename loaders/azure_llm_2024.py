"""Azure LLM inference trace 2024 (the DynamoLLM paper): one week of code and conversation.

Source: ``Azure/AzurePublicDataset``, ``AzureLLMInferenceDataset2024.md`` (collected
May 10-19, 2024). The two week files are plain CSV (not gzipped), served as release assets of
the tag ``dataset-llm-2024`` since Azure moved its downloads off Blob storage:
``AzureLLMInferenceTrace_code_1week.csv`` and ``AzureLLMInferenceTrace_conv_1week.csv``.

Same columns as the 2023 trace, ``TIMESTAMP,ContextTokens,GeneratedTokens``, one row per
request; ``ContextTokens`` → ``input_tokens``, ``GeneratedTokens`` → ``output_tokens``.
``TIMESTAMP`` is UTC wall time with a ``+00:00`` zone; most rows carry microseconds
(``2024-05-10 00:00:00.009930+00:00``) but some have no fractional part at all
(``2024-05-10 00:00:01+00:00``), and both spellings are read. ``arrival_s`` counts from the
earliest request, which becomes the trace's origin.

The zone is also what tells these files from the 2023 ones (:func:`detect`), whose header is
identical but whose timestamps carry none.

Stojkovic et al., "DynamoLLM: Designing LLM Inference Clusters for Performance and Energy
Efficiency", arXiv 2408.00741 (HPCA 2025).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from servetrace.loaders import one_pass
from servetrace.loaders.azure_llm_2023 import HEADER, load_azure_csv
from servetrace.loaders.dataset import Dataset, Loaded, Part, RemoteFile
from servetrace.loaders.source import head, header_fields, parse_timestamps

VERSION = "1"
_RELEASE = "https://github.com/Azure/AzurePublicDataset/releases/download/dataset-llm-2024/"

DATASET = Dataset(
    name="azure_llm_2024",
    title="Azure LLM inference trace 2024 (one week)",
    citation=("Jovan Stojkovic, Chaojie Zhang, Íñigo Goiri, Josep Torrellas, Esha Choukse. "
              "DynamoLLM: Designing LLM Inference Clusters for Performance and Energy "
              "Efficiency. arXiv 2408.00741 (HPCA 2025)."),
    license="CC-BY-4.0",
    homepage="https://github.com/Azure/AzurePublicDataset/blob/master/AzureLLMInferenceDataset2024.md",
    parts=(
        # code_1week: the SHA-256 comes from a single third-party source and the byte size
        # is not agreed on, so neither is pinned.
        Part("code", (RemoteFile(
            _RELEASE + "AzureLLMInferenceTrace_code_1week.csv",
            "AzureLLMInferenceTrace_code_1week.csv"),),
            "coding assistant requests, 1 week (about 16.8M rows)"),
        # conv_1week: size and SHA-256 agreed by several independent third-party sources.
        Part("conv", (RemoteFile(
            _RELEASE + "AzureLLMInferenceTrace_conv_1week.csv",
            "AzureLLMInferenceTrace_conv_1week.csv",
            size=1_135_195_393,
            sha256="a0cc9b969a9bbf0fd811802cbf4323edd3a209ace791e3799ad4f9207f213941"),),
            "conversation requests, 1 week (about 27.3M rows)"),
    ),
)

_ZONES = ("+00:00", "Z")


def detect(path: Path) -> bool:
    """The 2024 week files: the Azure LLM header and a UTC-zoned timestamp in the first row."""
    lines = head(path, 2)
    return (header_fields(path) == HEADER and len(lines) > 1
            and lines[1].split(",")[0].strip().endswith(_ZONES))


def stream_header_lines(path: Path) -> int:
    """Rows stand alone: a large file is read in chunks, each after the header line
    (:mod:`servetrace.loaders.chunks`)."""
    return 1


def load(paths: list[Path], trace: str) -> Loaded:
    """Read week files onto ``requests`` (shared reader: :func:`load_azure_csv`)."""
    return load_azure_csv(paths, trace, HEADER)


def one_pass_plan(path: Path) -> one_pass.Plan | None:
    """A week file as SQL for :mod:`servetrace.loaders.one_pass`: the mapping of
    :func:`load`, with ``arrival_s`` counted from the first row's instant.

    A clean timestamp is spelled exactly ``YYYY-MM-DD HH:MM:SS[.ffffff]+00:00`` (the week
    files' two spellings) with an hour below 24, and DuckDB reads it; for such text
    DuckDB's microseconds are the nanoseconds :func:`load` reads, divided by 1,000. The pass
    keeps its result only where the file is in time order, so the first row is the earliest
    and ``arrival_s`` is what :func:`load` gives: nanoseconds from it times 1/1e9.
    """
    lines = head(path, 2)
    if header_fields(path) != HEADER or len(lines) < 2:
        return None
    parsed = parse_timestamps(pl.Series([lines[1].split(",")[0]]))
    first, origin_ns = parsed[0], parsed.dt.epoch("ns")[0]
    if first is None or origin_ns % 1000:
        return None
    ts, when = one_pass.ident("TIMESTAMP"), one_pass.ident("_when")
    d2 = "[0-9]" * 2
    day = f"{d2 * 2}-{d2}-{d2} {d2}:{d2}:{d2}"
    clean = [
        # GLOB costs DuckDB less per row than a regular expression or a translate
        f"(CASE length({ts}) WHEN 25 THEN {ts} GLOB '{day}+00:00' "
        f"WHEN 32 THEN {ts} GLOB '{day}.{'[0-9]' * 6}+00:00' ELSE false END)",
        f"substr({ts}, 12, 2) < '24'", f"{when} IS NOT NULL",
        one_pass.clean_count("ContextTokens"), one_pass.clean_count("GeneratedTokens")]
    return one_pass.Plan(
        columns=tuple(HEADER), clean=" AND ".join(clean), origin=first,
        types={"ContextTokens": "DOUBLE", "GeneratedTokens": "DOUBLE"},
        derived={"_when": f"TRY_CAST({ts} AS TIMESTAMP)"},
        # times the reciprocal, as Polars divides a column by a number
        select={"arrival_s": f"CAST((epoch_us({when}) - {origin_ns // 1000}) * 1000 AS DOUBLE)"
                             " * (1 / 1e9)",
                "input_tokens": one_pass.count("ContextTokens"),
                "output_tokens": one_pass.count("GeneratedTokens")})
