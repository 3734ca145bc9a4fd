"""vLLM ``timed-trace`` JSONL: a Mooncake-style trace that ``vllm bench serve`` replays on
its timestamps (``--dataset-name timed-trace``).

Source of truth: ``vllm-project/vllm`` pull request #39795 ("timed trace replay in ``vllm
bench serve``", merged 2026; its ``TimedTrace`` dataset in
``vllm/benchmarks/datasets/datasets.py`` is not in the searchable index, so the keys and
options below come from the pull request and from the options ``vllm bench serve`` prints:
``--timed-trace-label-{timestamp,input-length,output-length,hash-ids}`` default to the
Mooncake key names, ``--timed-trace-chunk-hash-size`` (tokens per hash id) defaults to 16 and
``--timed-trace-sec-multiplier`` (timestamp → seconds) to 1). One object per line::

    {"timestamp": 3.021, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1, ...]}

Units: ``timestamp`` is **seconds** from the trace zero (float; ``time_unit="ms"`` writes
whole milliseconds instead, then pass ``--timed-trace-sec-multiplier 0.001``);
``input_length``/``output_length`` are tokens (output raised to ``min_output_tokens``, default
1); ``hash_ids`` name **512-token** blocks as in Mooncake, so pass
``--timed-trace-chunk-hash-size 512`` (vLLM's default block is 16 tokens, the Alibaba
Bailian trace's). vLLM builds each prompt from the hash ids (same id, same tokens), which
keeps the trace's prefix sharing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import polars as pl

from servetrace.synth.export import _common

NAME = "vllm-mooncake"
REQUIRED = ("arrival_s", "input_tokens", "output_tokens")
SUFFIX = ".jsonl"


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *,
          time_unit: Literal["s", "ms"] = "s", rebase: bool = False,
          block_size: int = _common.MOONCAKE_BLOCK_TOKENS, keep_hash_ids: bool = True,
          min_output_tokens: int = 1) -> Path:
    """Write ``frame`` (canonical ``requests``) as a vLLM timed-trace JSONL file at ``path``:
    ``timestamp`` (s, Float64; or ms, Int64), ``input_length``, ``output_length`` (Int64),
    ``hash_ids`` (List(Int64)). Returns ``path``.
    """
    if time_unit not in ("s", "ms"):
        raise ValueError(f"time_unit must be 's' or 'ms', got {time_unit!r}")
    req = _common.requests(frame, NAME, REQUIRED)
    stamp = (_common.seconds(rebase).cast(pl.Float64) if time_unit == "s"
             else _common.milliseconds(rebase))
    out = req.select(
        stamp.alias("timestamp"),
        pl.col("input_tokens").cast(pl.Int64).alias("input_length"),
        _common.clip_output(min_output_tokens).cast(pl.Int64).alias("output_length"),
    ).with_columns(_common.hash_ids(req, block_size, keep_hash_ids))
    return _common.write_jsonl(out, path)
