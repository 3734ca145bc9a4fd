"""GuideLLM Mooncake trace file (``--data kind=mooncake,...`` with ``--profile kind=replay``).

Source of truth: ``vllm-project/guidellm``,
``src/guidellm/data/deserializers/trace_mooncake.py``: the ``trace_synthetic`` columns
(:mod:`servetrace.synth.export.guidellm`) plus ``hash_ids`` (a list of non-negative ints, each
standing for ``hash_id_block_size`` = 512 tokens by default); every row must satisfy
``ceil(input_length / 512) == len(hash_ids)`` or GuideLLM rejects the file. Prompts are built
block by block from the ids, so shared ids give shared prefixes. One object per line::

    {"timestamp": 0.0, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1, ...]}

Units: ``timestamp`` is **seconds** (float) — GuideLLM reads every trace's timestamps as
seconds, so this differs from the Mooncake release, whose timestamps are milliseconds;
lengths are tokens (output raised to ``min_output_tokens``, default 1); ``hash_ids`` name
``block_size``-token blocks (default 512; the printed command passes the same
``hash_id_block_size``), the trace's own ids re-chunked to that size.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from servetrace.synth.export import _common, guidellm

NAME = "guidellm-mooncake"
REQUIRED = guidellm.REQUIRED
SUFFIX = ".jsonl"


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *, rebase: bool = False,
          block_size: int = _common.MOONCAKE_BLOCK_TOKENS, keep_hash_ids: bool = True,
          hash_block_tokens: int | None = None, hash_scope: str = "global",
          min_output_tokens: int = 1) -> _common.Export:
    """Write ``frame`` (canonical ``requests``) as a GuideLLM Mooncake JSONL file at
    ``path``: ``timestamp`` (s), ``input_length``, ``output_length``, ``hash_ids``
    (``ceil(input_length / block_size)`` per request, the trace's ids re-chunked to
    ``block_size``: :func:`servetrace.synth.export._common.consumer_hash_ids`, so GuideLLM's
    block rule holds). Returns the Export with the ``guidellm run`` command line.
    """
    req, out = guidellm.rows(frame, rebase=rebase, min_output_tokens=min_output_tokens,
                             fmt=NAME)
    ids = _common.consumer_hash_ids(req, block_size, hash_block_tokens=hash_block_tokens,
                                    hash_scope=hash_scope, keep=keep_hash_ids)
    written = _common.write_jsonl(out.with_columns(ids), path)
    return _common.Export(written, guidellm.command(written, "mooncake",
                                                    hash_id_block_size=block_size))
