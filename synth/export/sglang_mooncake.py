"""SGLang ``mooncake`` dataset JSONL (``python -m sglang.bench_serving --backend sglang
--dataset-name mooncake --dataset-path FILE --num-prompts N``), replayed on its timestamps.

Source of truth: the ``sglang`` wheel on PyPI (checked: 0.5.23),
``sglang/benchmark/datasets/mooncake.py`` and ``sglang/benchmark/serving.py``: SGLang reads
every line as JSON, keeps the first ``--num-prompts`` (default 1000), sorts by
``timestamp``, waits ``(timestamp - first) / 1000`` seconds (× ``--mooncake-slowdown-factor``)
before each record (only with ``--backend sglang``; other backends ignore the timestamps),
and builds the prompt from ``hash_ids`` alone: per id, the id's digits then **128** words
"hi" (fixed in every released version; there is no ``--mooncake-block-size`` option), then
one closing sentence. ``input_length`` is carried but not read; ``output_length`` is the
output length (256 when absent). So a prompt is ≈ 128 tokens per id, and the ids must
name 128-token blocks for the replayed prompts to have the trace's lengths.

Variants (``block_size``):

- ``128`` (default): for every released SGLang (checked 0.5.23). The trace's ids are
  re-chunked to 128-token blocks keeping the prefix sharing: a 512-token Mooncake block ``h``
  becomes blocks ``4h .. 4h+3``, 64-token WEKA blocks are paired by
  :func:`servetrace.analysis.kvcache.rechunk`; each request gets ``ceil(input_length / 128)``
  ids.
- ``512`` (or another size): the Mooncake release's own blocks, for an SGLang build that has
  a ``--mooncake-block-size`` option (none released as of 0.5.23); the command line then
  carries ``--mooncake-block-size``. Released versions would replay these prompts 4× short.

One object per line, the Mooncake layout (:mod:`servetrace.synth.export.mooncake`)::

    {"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1, ...]}

Units: ``timestamp`` whole **milliseconds** (SGLang replays offsets from the first row, so
``rebase`` changes nothing it replays); lengths in tokens (output raised to
``min_output_tokens``, default 1).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from servetrace.synth.export import _common, mooncake

NAME = "sglang-mooncake"
REQUIRED = mooncake.REQUIRED
SUFFIX = ".jsonl"

RELEASED_BLOCK_TOKENS = 128
"""Tokens SGLang builds per hash id in every released version (``" ".join(["hi"] * 128)``)."""


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *, rebase: bool = False,
          block_size: int = RELEASED_BLOCK_TOKENS, keep_hash_ids: bool = True,
          hash_block_tokens: int | None = None, hash_scope: str = "global",
          min_output_tokens: int = 1) -> _common.Export:
    """Write ``frame`` (canonical ``requests``) as a SGLang mooncake JSONL file at ``path``:
    ``timestamp`` (ms, Int64), ``input_length``, ``output_length`` (Int64), ``hash_ids``
    (``block_size`` tokens each). Returns the Export with the ``sglang.bench_serving``
    command line.
    """
    if min_output_tokens < 0:
        raise ValueError(f"min_output_tokens must be >= 0, got {min_output_tokens}")
    req = _common.requests(frame, NAME, REQUIRED)
    out = req.select(
        _common.milliseconds(rebase).alias("timestamp"),
        pl.col("input_tokens").cast(pl.Int64).alias("input_length"),
        _common.clip_output(min_output_tokens).cast(pl.Int64).alias("output_length"),
    ).with_columns(_common.consumer_hash_ids(req, block_size,
                                             hash_block_tokens=hash_block_tokens,
                                             hash_scope=hash_scope, keep=keep_hash_ids))
    written = _common.write_jsonl(out, path)
    extra: list[object] = []
    notes: tuple[str, ...] = ()
    if block_size != RELEASED_BLOCK_TOKENS:
        extra = ["--mooncake-block-size", block_size]
        notes = (f"{block_size}-token blocks need an SGLang with --mooncake-block-size (none "
                 f"released as of 0.5.23, which builds {RELEASED_BLOCK_TOKENS} tokens per id); "
                 f"the default block_size={RELEASED_BLOCK_TOKENS} fits released versions",)
    command = _common.shell("python", "-m", "sglang.bench_serving", "--backend", "sglang",
                            "--dataset-name", "mooncake", "--dataset-path", written,
                            "--num-prompts", out.height, *extra)
    return _common.Export(written, command, notes)
