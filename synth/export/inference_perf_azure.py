"""inference-perf ``AzurePublicDataset`` trace CSV (a trace-replay load in
``kubernetes-sigs/inference-perf``).

Source of truth: ``kubernetes-sigs/inference-perf``, ``inference_perf/utils/trace_reader.py``,
``AzurePublicDatasetReader``: it skips a header line when ``csv.Sniffer`` finds one, splits
each line on commas, parses field 0 as a UTC time (``%Y-%m-%d %H:%M:%S.%f`` after dropping a
``T``, a trailing ``Z`` and fractional digits beyond 6) and fields 1 and 2 as the input and
output token counts; arrivals are offsets from the **first line's** time, so rows must be in
arrival order (they are). Layout, the Azure LLM trace's::

    TIMESTAMP,ContextTokens,GeneratedTokens
    1970-01-01 00:00:00.000000,374,44

Units: ``TIMESTAMP`` UTC wall-clock time with **6 fractional digits** (microseconds, what
``%f`` holds), ``origin + arrival_s`` (``origin`` as in :mod:`servetrace.synth.export.azure_2023`,
default the Unix epoch; only offsets matter to inference-perf); token counts are integers.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from servetrace.synth.export import _common
from servetrace.synth.export.azure_2023 import write_layout

NAME = "inference-perf-azure"
REQUIRED = ("arrival_s", "input_tokens", "output_tokens")
SUFFIX = ".csv"


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *,
          origin: datetime | str | None = None) -> _common.Export:
    """Write ``frame`` (canonical ``requests``) as an inference-perf AzurePublicDataset CSV
    at ``path``: ``TIMESTAMP`` (text, 6 fractional digits), ``ContextTokens``,
    ``GeneratedTokens`` (Int64). Returns ``path``.
    """
    written = write_layout(frame, path, name=NAME, origin=origin, digits=6)
    command = _common.shell("inference-perf", "--load.type", "trace_replay",
                            "--load.trace.file", written, "--load.trace.format",
                            "AzurePublicDataset", "--data.type", "random",
                            "--data.trace.file", written)
    return _common.Export(written, command)
