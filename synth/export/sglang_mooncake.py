"""SGLang ``mooncake`` dataset JSONL (``python -m sglang.bench_serving --dataset-name
mooncake --dataset-path FILE``), replayed on its timestamps.

Source of truth: ``sgl-project/sglang``, ``python/sglang/benchmark/datasets/mooncake.py``:
SGLang reads every line as JSON, sorts by ``timestamp``, waits ``(timestamp - first) / 1000``
seconds (times ``--mooncake-slowdown-factor``) before each record, and builds the prompt
from ``hash_ids`` alone (per id, the id then ``--mooncake-block-size`` repetitions of the
word "hi"; older versions fix 128), sending ``output_length`` as the output length (256 when
absent). ``input_length`` is carried but not read. One object per line, the Mooncake
layout (:mod:`servetrace.synth.export.mooncake`)::

    {"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1, ...]}

Units: ``timestamp`` whole **milliseconds**; lengths in tokens (output raised to
``min_output_tokens``, default 1); ``hash_ids`` name 512-token blocks, so pass
``--mooncake-block-size 512`` for prompts of ≈ ``input_length`` rounded up to whole blocks.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from servetrace.synth.export import _common, mooncake

NAME = "sglang-mooncake"
REQUIRED = mooncake.REQUIRED
SUFFIX = ".jsonl"


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *, rebase: bool = False,
          block_size: int = _common.MOONCAKE_BLOCK_TOKENS, keep_hash_ids: bool = True,
          min_output_tokens: int = 1) -> Path:
    """Write ``frame`` (canonical ``requests``) as a SGLang mooncake JSONL file at ``path``:
    ``timestamp`` (ms, Int64), ``input_length``, ``output_length`` (Int64), ``hash_ids``.
    Returns ``path``.
    """
    if min_output_tokens < 0:
        raise ValueError(f"min_output_tokens must be >= 0, got {min_output_tokens}")
    out = mooncake.rows(frame, rebase=rebase, block_size=block_size,
                        keep_hash_ids=keep_hash_ids, fmt=NAME)
    out = out.with_columns(pl.max_horizontal("output_length", pl.lit(min_output_tokens))
                           .cast(pl.Int64).alias("output_length"))
    return _common.write_jsonl(out, path)
