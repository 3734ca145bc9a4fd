"""AIPerf ``bailian_trace`` JSONL: the Alibaba Qwen-Bailian trace layout (``aiperf profile
--input-file FILE --custom-dataset-type bailian_trace --fixed-schedule``).

Source of truth: the ``aiperf`` wheel on PyPI (checked: 0.13.0),
``aiperf/dataset/loader/models.py`` (pydantic model ``BailianTrace``: ``chat_id`` int;
``parent_chat_id`` int, -1 for a root; ``timestamp`` float **seconds**; ``input_length``,
``output_length`` int; ``type`` str; ``turn`` int; ``hash_ids`` list of int, **16-token**
blocks) and ``aiperf/dataset/loader/bailian_trace.py`` (a conversation is a tree of
``parent_chat_id`` links, grouped by its root and sent in ``turn`` order; timestamps × 1000
become milliseconds; the block size 16 comes from ``plugins.yaml``). With ``--fixed-schedule``
AIPerf sends each turn at its timestamp as an absolute offset from the benchmark start
(unless ``--fixed-schedule-auto-offset``). The same layout as this project's reader
:mod:`servetrace.loaders.qwen_bailian`. One object per line::

    {"chat_id": 1, "parent_chat_id": 0, "timestamp": 61.114, "input_length": 521,
     "output_length": 132, "type": "text", "turn": 2, "hash_ids": [1089, 1090, ...]}

Mapping: ``chat_id`` = the row (0-based, arrival order); ``parent_chat_id`` = the row of the
request's ``parent_request_id`` where the frame names one that it holds, else the previous
request of its ``session``, else -1; ``turn`` = 1-based position in its session in arrival
order (AIPerf orders a conversation by it; a request without a session is turn 1);
``type`` = ``request_type`` (``text`` where null).

Units: ``timestamp`` **seconds** (float) from the first request (``rebase``, the default;
``rebase=False`` keeps the trace zero); lengths in tokens (output raised to
``min_output_tokens``, default 1); ``hash_ids``: ``block_size`` (16) tokens per id,
``ceil(input_length / 16)`` per request, the trace's ids split or re-chunked to 16 tokens
keeping the prefix sharing (:func:`servetrace.synth.export._common.consumer_hash_ids`).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from servetrace.synth.export import _common

NAME = "aiperf-bailian"
REQUIRED = ("arrival_s", "input_tokens", "output_tokens")
SUFFIX = ".jsonl"
BLOCK_TOKENS = 16
"""Tokens per hash id in the Bailian release and in AIPerf's ``bailian_trace`` loader."""


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *, rebase: bool = True,
          block_size: int = BLOCK_TOKENS, keep_hash_ids: bool = True,
          hash_block_tokens: int | None = None, hash_scope: str = "global",
          min_output_tokens: int = 1) -> _common.Export:
    """Write ``frame`` (canonical ``requests``) as an AIPerf bailian_trace JSONL file at
    ``path``. Returns the Export with the ``aiperf profile`` command line (with
    ``--isl-block-size`` when ``block_size`` is not 16)."""
    req = _common.requests(frame, NAME, REQUIRED)
    req = req.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("chat_id"),
                           _common.session_ids(req).alias("session_id"))
    linked = pl.lit(None, pl.Int64)
    if "parent_request_id" in req.columns and "request_id" in req.columns:
        rows = req.select(pl.col("request_id").cast(pl.String),
                          pl.col("chat_id").alias("parent_row")).unique("request_id",
                                                                        keep="first")
        req = req.join(rows, left_on=pl.col("parent_request_id").cast(pl.String),
                       right_on="request_id", how="left", maintain_order="left")
        linked = pl.col("parent_row")
    previous = pl.col("chat_id").shift(1).over("session_id")
    ids = _common.consumer_hash_ids(req, block_size, hash_block_tokens=hash_block_tokens,
                                    hash_scope=hash_scope, keep=keep_hash_ids)
    out = req.select(
        "chat_id",
        pl.coalesce(linked, previous, pl.lit(-1, pl.Int64)).alias("parent_chat_id"),
        _common.seconds(rebase).cast(pl.Float64).alias("timestamp"),
        pl.col("input_tokens").cast(pl.Int64).alias("input_length"),
        _common.clip_output(min_output_tokens).cast(pl.Int64).alias("output_length"),
        _common.optional(req, "request_type", pl.String).fill_null("text").alias("type"),
        (pl.int_range(pl.len(), dtype=pl.Int64).over("session_id") + 1).alias("turn"),
        pl.lit(ids).alias("hash_ids"),
    )
    written = _common.write_jsonl(out, path)
    extra = [] if block_size == BLOCK_TOKENS else ["--isl-block-size", block_size]
    command = _common.aiperf_command(written, "bailian_trace", *extra)
    notes = _common.offset_notes(req, rebase, "AIPerf's fixed schedule waits for the absolute "
                                 "offset unless --fixed-schedule-auto-offset")
    return _common.Export(written, command, notes)
