"""Vidur ``trace_replay`` request-generator CSV for Vidur's **repository head** (the
``trace_file`` of its ``TraceRequestGeneratorConfig``, request generator type
``trace_replay``). ``pip install vidur`` (0.0.26) reads another layout,
``Date,Time,PromptTokenCount,CompletionTokenCount``, and fails on this one with ``KeyError:
'Date'``: use :mod:`servetrace.synth.export.vidur_pypi` for it.

Source of truth: ``microsoft/vidur``, ``vidur/request_generator/trace_replay_request_generator.py``
(``TraceReplayRequestGenerator`` reads the CSV with pandas and makes one request per row with
``arrived_at``, ``num_prefill_tokens`` and ``num_decode_tokens``; it scales both token counts
by the prefill/decode scale factors, clips them to at least 1 and to ``max_tokens`` in total,
and multiplies ``arrived_at`` by ``time_scale_factor``) and the traces it ships,
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


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *, rebase: bool = False
          ) -> _common.Export:
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
    written = _common.write_csv(out, path)
    top = int((out["num_prefill_tokens"] + out["num_decode_tokens"]).max())
    return _common.Export(written, command(written, top))


def command(path: Path, max_tokens: int, *extra: object) -> str:
    """``python -m vidur.main`` replaying the trace at ``path`` unscaled: Vidur's flat
    flags ``--trace_request_generator_config_*`` (time, prefill and decode scale 1, and
    ``max_tokens`` = the largest prompt + output, above which Vidur cuts the prompt)."""
    cfg = "--trace_request_generator_config_"
    return _common.shell("python", "-m", "vidur.main", "--request_generator_config_type",
                         "trace_replay", f"{cfg}trace_file", path, *extra,
                         f"{cfg}prefill_scale_factor", 1, f"{cfg}decode_scale_factor", 1,
                         f"{cfg}time_scale_factor", 1, f"{cfg}max_tokens", max_tokens)
