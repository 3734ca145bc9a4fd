"""vLLM ``custom`` dataset JSONL (``vllm bench serve --dataset-name custom``).

Source of truth: ``vllm-project/vllm``, ``vllm/benchmarks/datasets.py`` (later split into
``vllm/benchmarks/datasets/custom.py``), class ``CustomDataset``: it reads a ``.jsonl`` file
with pandas, requires a ``prompt`` column, and takes each request's ``max_tokens`` from an
optional ``output_tokens`` column when ``--custom-output-len`` is ``-1`` or unset. One object
per line::

    {"prompt": "data every correct appear ...", "output_tokens": 129}

Units: ``prompt`` is synthetic text of ≈ ``input_tokens`` tokens (:mod:`servetrace.synth.prompts`:
one single-token word per token; at least one word, since a request needs a prompt);
``output_tokens`` is tokens, raised to ``min_output_tokens`` (default 1: a request cannot ask
for 0 tokens). The format has **no arrival times**: vLLM shuffles the rows (unless
``--disable-shuffle``) and paces them by ``--request-rate``; for timed replay use
``vllm-mooncake``. vLLM re-tokenizes the prompt (after its chat template unless
``--skip-chat-template``), so its measured prompt length is close to, not exactly,
``input_tokens``.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from servetrace.synth import prompts
from servetrace.synth.export import _common

NAME = "vllm-custom"
REQUIRED = ("input_tokens", "output_tokens")
SUFFIX = ".jsonl"


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *, seed: int = 0,
          min_output_tokens: int = 1) -> _common.Export:
    """Write ``frame`` (canonical ``requests``) as a vLLM custom JSONL file at ``path``:
    ``prompt`` (text, ≈ input_tokens tokens), ``output_tokens`` (Int64), in arrival order.
    ``seed`` fixes the prompt text. Returns ``path``.
    """
    req = _common.requests(frame, NAME, REQUIRED)
    text = prompts.prompts(req["input_tokens"].clip(lower_bound=1), seed)
    out = req.select(
        pl.lit(text).alias("prompt"),
        _common.clip_output(min_output_tokens).cast(pl.Int64).alias("output_tokens"),
    )
    written = _common.write_jsonl(out, path)
    command = _common.shell("vllm", "bench", "serve", "--backend", "openai-chat",
                            "--endpoint", "/v1/chat/completions", "--model", "MODEL",
                            "--dataset-name", "custom", "--dataset-path", written,
                            "--custom-output-len", "-1", "--num-prompts", out.height)
    return _common.Export(written, command,
                          _common.size_notes(written, NAME, "vllm-mooncake (timed_trace)"))
