"""Vidur ``trace_replay`` request-generator CSV (the ``trace_file`` of its
``TraceRequestGeneratorConfig``, request generator type ``trace_replay``).

Source of truth: ``microsoft/vidur``, ``vidur/request_generator/trace_replay_request_generator.py``
(``TraceReplayRequestGenerator`` reads the CSV with pandas and makes one request per row with
``arrived_at``, ``num_prefill_tokens`` and ``num_decode_tokens``; it scales both token counts
by the prefill/decode scale factors, clips them to at least 1 and to ``max_tokens`` in total,
and multiplies ``arrived_at`` by ``time_scale_factor``; early versions read Azure-style
``Date,Time,PromptTokenCount,CompletionTokenCount`` columns instead) and the traces it ships,
``data/processed_traces/splitwise_conv.csv`` (the Azure LLM 2023 conversation trace), whose
header is exactly::

    arrived_at,num_prefill_tokens,num_decode_tokens
    0.0,374,44

Units: ``arrived_at`` is **seconds** (float) from the trace zero (``rebase``: from the first
request; Vidur's own traces start at 0.0); token counts are integers, written as in the
trace (Vidur itself raises zeros to 1).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from servetrace.synth.export import _common

NAME = "vidur"
REQUIRED = ("arrival_s", "input_tokens", "output_tokens")
SUFFIX = ".csv"


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *, rebase: bool = False) -> Path:
    """Write ``frame`` (canonical ``requests``) as a Vidur trace CSV at ``path``:
    ``arrived_at`` (s, Float64), ``num_prefill_tokens``, ``num_decode_tokens`` (Int64), in
    arrival order. Returns ``path``.
    """
    req = _common.requests(frame, NAME, REQUIRED)
    out = req.select(
        _common.seconds(rebase).cast(pl.Float64).alias("arrived_at"),
        pl.col("input_tokens").cast(pl.Int64).alias("num_prefill_tokens"),
        pl.col("output_tokens").cast(pl.Int64).alias("num_decode_tokens"),
    )
    return _common.write_csv(out, path)
