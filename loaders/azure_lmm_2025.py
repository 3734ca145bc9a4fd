"""Azure LMM (multimodal) inference trace 2025 (the ModServe paper).

Source: ``Azure/AzurePublicDataset``, ``AzureLMMInferenceDataset2025.md`` (collected
October 15-22, 2024): ``data/AzureLMMInferenceTrace_multimodal.csv.gz``, a gzipped CSV of
about 1M requests. The file is read as it is downloaded; gzip is undone transparently, and an
already unpacked copy (``gunzip -k``) reads the same.

Header ``TIMESTAMP,NumImages,ContextTokens,GeneratedTokens``, one row per request.
``TIMESTAMP`` is ISO-8601 UTC with a ``T``, milliseconds and a ``Z``
(``2024-10-15T12:00:00.269Z``); ``NumImages`` → ``num_images``, ``ContextTokens`` →
``input_tokens``, ``GeneratedTokens`` → ``output_tokens``. ``arrival_s`` counts from the
earliest request, which becomes the trace's origin. One third-party reader split this file on
``;``: a file with another delimiter fails the header check at line 1 rather than being
misread.

Qiu et al., "ModServe: Modality- and Stage-Aware Resource Disaggregation for Scalable
Multimodal Model Serving", ACM SoCC 2025.
"""

from __future__ import annotations

from pathlib import Path

from servetrace.loaders.azure_llm_2023 import load_azure_csv
from servetrace.loaders.dataset import Dataset, Loaded, Part, RemoteFile
from servetrace.loaders.source import header_fields

VERSION = "1"
HEADER = ["TIMESTAMP", "NumImages", "ContextTokens", "GeneratedTokens"]

DATASET = Dataset(
    name="azure_lmm_2025",
    title="Azure LMM (multimodal) inference trace 2025",
    citation=("Haoran Qiu, Anish Biswas, Zihan Zhao, Jayashree Mohan, Alind Khare, "
              "Esha Choukse, Íñigo Goiri, Zeyu Zhang, Haiying Shen, Chetan Bansal, "
              "Ramachandran Ramjee, Rodrigo Fonseca. ModServe: Modality- and Stage-Aware "
              "Resource Disaggregation for Scalable Multimodal Model Serving. ACM SoCC 2025."),
    license="CC-BY-4.0",
    homepage="https://github.com/Azure/AzurePublicDataset/blob/master/AzureLMMInferenceDataset2025.md",
    parts=(
        # Neither size nor SHA-256 is published or agreed by independent sources: not pinned.
        Part("multimodal", (RemoteFile(
            "https://raw.githubusercontent.com/Azure/AzurePublicDataset/master/data/"
            "AzureLMMInferenceTrace_multimodal.csv.gz",
            "AzureLMMInferenceTrace_multimodal.csv.gz"),),
            "multimodal (image + text) requests, 1 week"),
    ),
)


def detect(path: Path) -> bool:
    """The multimodal file (gzipped or not): its four-column header with ``NumImages``."""
    return header_fields(path) == HEADER


def stream_header_lines(path: Path) -> int:
    """Rows stand alone: a large file is read in chunks, each after the header line
    (:mod:`servetrace.loaders.chunks`)."""
    return 1


def load(paths: list[Path], trace: str) -> Loaded:
    """Read the multimodal file(s) onto ``requests``, ``num_images`` filled."""
    return load_azure_csv(paths, trace, HEADER)
