"""Mooncake trace JSONL: the FAST'25 release's own format.

Source of truth: ``kvcache-ai/Mooncake``, ``FAST25-release/traces/*_trace.jsonl`` (and this
project's reader of it, ``loaders/mooncake.py``). One JSON object per line with exactly four
keys, in this order::

    {"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1, ...]}

Units: ``timestamp`` is whole **milliseconds** from the trace start, ``round(arrival_s ·
1000)`` (integers, as in the release; sub-millisecond arrival structure is rounded away);
``input_length`` and ``output_length`` are tokens; ``hash_ids`` are ids of the prompt's
**512-token** prefix blocks, ``len(hash_ids) = ceil(input_length / 512)``. A request's
``hash_ids`` are kept where the frame has them (re-chunked to 512 tokens when the trace's
blocks differ); elsewhere each request gets fresh ids of its own (see
:func:`servetrace.synth.export._common.consumer_hash_ids`), so no prefix sharing is invented.

The command line returned is AIPerf's (``mooncake_trace`` reads this layout; with the trace's
own timestamps it gets ``--fixed-schedule-auto-offset``). Reading the file back with
:mod:`servetrace.loaders.mooncake` gives the same arrivals (to the millisecond), lengths and
block ids.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from servetrace.synth.export import _common

NAME = "mooncake"
REQUIRED = ("arrival_s", "input_tokens", "output_tokens")
SUFFIX = ".jsonl"


def rows(frame: pl.DataFrame | pl.LazyFrame, *, rebase: bool = False,
         block_size: int = _common.MOONCAKE_BLOCK_TOKENS, keep_hash_ids: bool = True,
         hash_block_tokens: int | None = None, hash_scope: str = "global",
         fmt: str = NAME) -> pl.DataFrame:
    """The Mooncake records as a frame: ``timestamp`` (ms, Int64), ``input_length``,
    ``output_length`` (tokens, Int64), ``hash_ids`` (List(Int64), ``block_size`` tokens each,
    :func:`servetrace.synth.export._common.consumer_hash_ids`); one row per request in
    arrival order. ``rebase`` counts time from the first request instead of the trace zero.
    """
    req = _common.requests(frame, fmt, REQUIRED)
    return req.select(
        _common.milliseconds(rebase).alias("timestamp"),
        pl.col("input_tokens").cast(pl.Int64).alias("input_length"),
        pl.col("output_tokens").cast(pl.Int64).alias("output_length"),
    ).with_columns(_common.consumer_hash_ids(req, block_size,
                                             hash_block_tokens=hash_block_tokens,
                                             hash_scope=hash_scope, keep=keep_hash_ids))


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *, rebase: bool = False,
          block_size: int = _common.MOONCAKE_BLOCK_TOKENS, keep_hash_ids: bool = True,
          hash_block_tokens: int | None = None, hash_scope: str = "global"
          ) -> _common.Export:
    """Write ``frame`` (canonical ``requests``) as a Mooncake trace JSONL file at ``path``.

    Options: ``rebase`` (time from the first request), ``block_size`` (tokens per id, 512 as
    in the release; the frame's ids, of ``hash_block_tokens`` tokens and scope
    ``hash_scope``, are re-chunked to it). Returns the Export with AIPerf's command line.
    """
    out = rows(frame, rebase=rebase, block_size=block_size, keep_hash_ids=keep_hash_ids,
               hash_block_tokens=hash_block_tokens, hash_scope=hash_scope)
    written = _common.write_jsonl(out, path)
    extra = [] if rebase else ["--fixed-schedule-auto-offset"]
    command = _common.aiperf_command(written, "mooncake_trace", "--isl-block-size",
                                     block_size, *extra)
    return _common.Export(written, command)
