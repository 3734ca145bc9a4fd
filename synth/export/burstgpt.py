"""BurstGPT CSV, the release's own layout (v1 ``BurstGPT_{1,2}.csv``, or v2.0
``BurstGPT_3.csv`` with sessions and elapsed time).

Source of truth: ``HPMLL/BurstGPT``, ``README.md`` (column meanings) and the release files
(read by this project's ``loaders/burstgpt.py``, whose docstring quotes the headers); also
``vllm-project/vllm``, ``vllm/benchmarks/datasets.py``, ``BurstGPTDataset``, which reads a v1
file by position (column 2 = request tokens, 3 = response tokens) and keeps only ``Model ==
"GPT-4"`` rows with response tokens > 0 — hence v1 is the default layout. Headers::

    v1:   Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type
    v2.0: Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,
          Total tokens,Log Type

Units: ``Timestamp`` is **seconds** (float) from the trace zero (BurstGPT's own zero is
midnight of its first day, which the canonical table keeps; ``rebase`` counts from the first
request instead); ``Request tokens`` = ``input_tokens``, ``Response tokens`` =
``output_tokens`` (a failed request is one with 0 response tokens), ``Total tokens`` their
sum; ``Elapsed time`` = ``latency_s`` in seconds (empty where null); ``Session ID`` =
``session`` (empty where null). ``Model`` and ``Log Type`` come from ``model`` and
``log_type``; where those are null (traces from other sources) they are filled with the
``model`` and ``log_type`` options, default ``GPT-4`` (the rows vLLM's reader keeps) and
``Conversation log``. Reading the file back with :mod:`servetrace.loaders.burstgpt` gives the same
arrivals, lengths, failures, models, log types, sessions and latencies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import polars as pl

from servetrace.synth.export import _common

NAME = "burstgpt"
REQUIRED = ("arrival_s", "input_tokens", "output_tokens")
SUFFIX = ".csv"
HEADER_V1 = ["Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens",
             "Log Type"]
HEADER_V2 = ["Timestamp", "Session ID", "Elapsed time", "Model", "Request tokens",
             "Response tokens", "Total tokens", "Log Type"]


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *,
          layout: Literal["v1", "v2"] = "v1", rebase: bool = False, model: str = "GPT-4",
          log_type: str = "Conversation log") -> _common.Export:
    """Write ``frame`` (canonical ``requests``) as a BurstGPT CSV at ``path`` with the
    ``layout`` header above (numbers: Timestamp and Elapsed time Float64, tokens Int64), in
    arrival order. Returns ``path``.
    """
    if layout not in ("v1", "v2"):
        raise ValueError(f"layout must be 'v1' or 'v2', got {layout!r}")
    req = _common.requests(frame, NAME, REQUIRED)
    columns = {
        "Timestamp": _common.seconds(rebase).cast(pl.Float64),
        "Session ID": _common.optional(req, "session", pl.String),
        "Elapsed time": _common.optional(req, "latency_s", pl.Float64),
        "Model": _common.optional(req, "model", pl.String).fill_null(model),
        "Request tokens": pl.col("input_tokens").cast(pl.Int64),
        "Response tokens": pl.col("output_tokens").cast(pl.Int64),
        "Total tokens": (pl.col("input_tokens") + pl.col("output_tokens")).cast(pl.Int64),
        "Log Type": _common.optional(req, "log_type", pl.String).fill_null(log_type),
    }
    header = HEADER_V1 if layout == "v1" else HEADER_V2
    out = req.select(columns[name].alias(name) for name in header)
    written = _common.write_csv(out, path)
    command = _common.shell("vllm", "bench", "serve", "--backend", "vllm", "--model", "MODEL",
                            "--dataset-name", "burstgpt", "--dataset-path", written,
                            "--num-prompts", out.height)
    return _common.Export(written, command, ("vLLM's burstgpt reader keeps GPT-4 rows with "
                                             "response tokens > 0 and paces them by "
                                             "--request-rate, not by the timestamps",))
