"""SGLang ``custom`` dataset JSONL (``python -m sglang.bench_serving --dataset-name custom``).

Source of truth: ``sgl-project/sglang``, ``python/sglang/benchmark/datasets/custom.py``,
``sample_custom_requests``: each line is a JSON object whose ``conversations`` (or
``conversation``) list has at least two turns; the first turn's ``content`` (or ``value``)
is the prompt and the second's is the completion, whose token count becomes the request's
output length unless ``--sharegpt-output-len`` pins it. Rows whose prompt or completion
tokenizes to fewer than 2 tokens are dropped by SGLang. One object per line::

    {"conversations": [{"role": "user", "content": "..."},
                       {"role": "assistant", "content": "..."}]}

Units: both texts are synthetic (:mod:`servetrace.synth.prompts`), of ≈ ``input_tokens`` and ≈
``output_tokens`` tokens (one single-token word per token), raised to 2 words for the prompt
and to ``min_output_tokens`` (default 2) for the completion so that SGLang keeps every
request. SGLang re-tokenizes both with the served model's tokenizer, so lengths are
approximate. The format has **no arrival
times**: SGLang shuffles the rows and paces them by ``--request-rate``; for timed replay use
``sglang-mooncake``.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from servetrace.synth import prompts
from servetrace.synth.export import _common

NAME = "sglang-custom"
REQUIRED = ("input_tokens", "output_tokens")
SUFFIX = ".jsonl"
MIN_TOKENS = 2  # SGLang drops a row whose prompt or completion is shorter


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *, seed: int = 0,
          min_output_tokens: int = MIN_TOKENS) -> _common.Export:
    """Write ``frame`` (canonical ``requests``) as a SGLang custom JSONL file at ``path``:
    one ``conversations`` pair (user prompt, assistant completion) per request, in arrival
    order. ``seed`` fixes the text (the completion uses ``seed + 1``). Returns ``path``.
    """
    req = _common.requests(frame, NAME, REQUIRED)
    outputs = req.select(_common.clip_output(min_output_tokens)).to_series()
    turns = pl.DataFrame({
        "user": prompts.prompts(req["input_tokens"].clip(lower_bound=MIN_TOKENS), seed),
        "assistant": prompts.prompts(outputs, seed + 1),
    })
    out = turns.select(pl.concat_list(
        pl.struct(pl.lit("user").alias("role"), pl.col("user").alias("content")),
        pl.struct(pl.lit("assistant").alias("role"), pl.col("assistant").alias("content")),
    ).alias("conversations"))
    written = _common.write_jsonl(out, path)
    command = _common.shell("python", "-m", "sglang.bench_serving", "--backend", "sglang",
                            "--dataset-name", "custom", "--dataset-path", written,
                            "--num-prompts", out.height)
    return _common.Export(written, command,
                          _common.size_notes(written, NAME, "sglang-mooncake"))
