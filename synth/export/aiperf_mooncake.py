"""AIPerf ``mooncake_trace`` custom dataset JSONL (``aiperf profile --input-file FILE
--custom-dataset-type mooncake_trace --fixed-schedule``).

Source of truth: ``ai-dynamo/aiperf``, ``src/aiperf/dataset/loader/models.py`` (pydantic
model ``MooncakeTrace``: ``input_length`` int; ``output_length`` int; ``hash_ids`` list of
int, allowed only with ``input_length``; ``timestamp`` int|float "in milliseconds";
``session_id`` optional) and ``src/aiperf/dataset/loader/mooncake_trace.py`` (each line is a
conversation of its own unless lines share a ``session_id``; prompts are synthesized from
``hash_ids`` in blocks of ``--isl-block-size`` tokens). One object per line::

    {"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1, ...]}

Units: ``timestamp`` whole **milliseconds** (``rebase``: from the first request);
lengths in tokens (output raised to ``min_output_tokens``, default 1); ``hash_ids`` name
512-token blocks, so run AIPerf with ``--isl-block-size 512``. With ``sessions`` the
canonical ``session`` is written as ``session_id`` where not null (AIPerf then sends a
session's rows in order, each after the previous one's response).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from servetrace.synth.export import _common, mooncake

NAME = "aiperf-mooncake"
REQUIRED = mooncake.REQUIRED
SUFFIX = ".jsonl"


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *, rebase: bool = False,
          block_size: int = _common.MOONCAKE_BLOCK_TOKENS, keep_hash_ids: bool = True,
          min_output_tokens: int = 1, sessions: bool = False) -> Path:
    """Write ``frame`` (canonical ``requests``) as an AIPerf mooncake_trace JSONL file at
    ``path``: ``timestamp`` (ms, Int64), ``input_length``, ``output_length`` (Int64),
    ``hash_ids`` (List(Int64)) and, with ``sessions``, ``session_id``. Returns ``path``.
    """
    if min_output_tokens < 0:
        raise ValueError(f"min_output_tokens must be >= 0, got {min_output_tokens}")
    req = _common.requests(frame, NAME, REQUIRED)
    out = mooncake.rows(req, rebase=rebase, block_size=block_size,
                        keep_hash_ids=keep_hash_ids, fmt=NAME)
    out = out.with_columns(pl.max_horizontal("output_length", pl.lit(min_output_tokens))
                           .cast(pl.Int64).alias("output_length"))
    if sessions:
        out = out.with_columns(req.select(_common.optional(req, "session", pl.String)
                                          .alias("session_id")).to_series())
    return _common.write_jsonl(out, path)
