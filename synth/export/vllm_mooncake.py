"""vLLM ``timed_trace`` JSONL: a Mooncake-style trace that ``vllm bench serve`` replays on
its timestamps (``--dataset-name timed_trace``; the parser accepts only the underscore
spelling, ``timed-trace`` is an error).

Source of truth: the ``vllm`` wheel on PyPI (checked: 0.34.0),
``vllm/benchmarks/datasets/datasets.py`` class ``TimedTrace`` and ``vllm/benchmarks/serve.py``.
It reads the file line by line in file order (no sorting), takes ``timestamp`` ×
``--timed-trace-sec-multiplier`` (default 1) as seconds from the benchmark start (an
**absolute** offset: the first request waits for its own timestamp), and builds each prompt
from ``hash_ids``: ``--timed-trace-chunk-hash-size`` tokens per id (default **16**), stopping
at ``input_length`` tokens; it stops reading after ``--num-prompts`` rows (default **1000**).
A file whose ids name 512-token blocks read with the defaults replays 1,000 rows with prompts
up to 32× too short, so the command line returned here always carries both flags. One object
per line::

    {"timestamp": 3.021, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1, ...]}

Units: ``timestamp`` **seconds** (float) from the first request (``rebase``, the default;
``rebase=False`` keeps the trace's offsets; ``time_unit="ms"`` writes whole milliseconds and
the command gets ``--timed-trace-sec-multiplier 0.001``); lengths in tokens (output raised to
``min_output_tokens``, default 1); ``hash_ids``: ``block_size`` tokens per id, exactly
``ceil(input_length / block_size)`` ids, the trace's ids re-chunked to that size (see
:func:`servetrace.synth.export._common.consumer_hash_ids`), so same id, same tokens: the
trace's prefix sharing reaches vLLM's prefix cache. ``block_size=None`` (default) writes the
trace's own block size (512 when it has no ids).
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
          time_unit: Literal["s", "ms"] = "s", rebase: bool = True,
          block_size: int | None = None, keep_hash_ids: bool = True,
          hash_block_tokens: int | None = None, hash_scope: str = "global",
          min_output_tokens: int = 1) -> _common.Export:
    """Write ``frame`` (canonical ``requests``) as a vLLM timed_trace JSONL file at ``path``:
    ``timestamp`` (s, Float64; or ms, Int64), ``input_length``, ``output_length`` (Int64),
    ``hash_ids`` (List(Int64), ``block_size`` tokens each). ``hash_block_tokens`` and
    ``hash_scope`` describe the frame's ids (the trace's ``traces`` row; inferred when None).
    Returns the :class:`~servetrace.synth.export._common.Export` with the ``vllm bench serve``
    command line.
    """
    if time_unit not in ("s", "ms"):
        raise ValueError(f"time_unit must be 's' or 'ms', got {time_unit!r}")
    req = _common.requests(frame, NAME, REQUIRED)
    size = block_size or _common.trace_block_tokens(req, hash_block_tokens, keep_hash_ids)
    stamp = (_common.seconds(rebase).cast(pl.Float64) if time_unit == "s"
             else _common.milliseconds(rebase))
    out = req.select(
        stamp.alias("timestamp"),
        pl.col("input_tokens").cast(pl.Int64).alias("input_length"),
        _common.clip_output(min_output_tokens).cast(pl.Int64).alias("output_length"),
    ).with_columns(_common.consumer_hash_ids(req, size, hash_block_tokens=hash_block_tokens,
                                             hash_scope=hash_scope, keep=keep_hash_ids))
    written = _common.write_jsonl(out, path)
    flags = ["--timed-trace-chunk-hash-size", size, "--num-prompts", out.height]
    if time_unit == "ms":
        flags += ["--timed-trace-sec-multiplier", "0.001"]
    command = _common.shell("vllm", "bench", "serve", "--backend", "vllm", "--model", "MODEL",
                            "--dataset-name", "timed_trace", "--dataset-path", written, *flags)
    notes = _common.offset_notes(req, rebase, "vLLM waits for each absolute timestamp")
    return _common.Export(written, command, notes)
