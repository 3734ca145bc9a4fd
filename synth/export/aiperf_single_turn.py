"""AIPerf ``single_turn`` custom dataset JSONL (``aiperf profile --input-file FILE
--custom-dataset-type single_turn``, with ``--fixed-schedule`` to replay the timestamps).

Source of truth: ``ai-dynamo/aiperf``, ``src/aiperf/dataset/loader/models.py`` (pydantic
model ``SingleTurn``: ``text`` str; ``timestamp`` int|float, "in milliseconds"; ``delay``
excludes ``timestamp``; ``output_length`` int > 0 or null, sent as ``max_tokens``;
``session_id`` optional) and ``src/aiperf/dataset/loader/single_turn.py`` (each line one
request; lines sharing a ``session_id`` are sent in order with their history, so none is
written here: every request is its own conversation). One object per line::

    {"text": "data every correct ...", "timestamp": 3021, "output_length": 129}

Units: ``timestamp`` is whole **milliseconds** from the first request (``rebase``, the
default: AIPerf's fixed schedule replays absolute offsets; ``rebase=False`` keeps the trace
zero); ``text`` is synthetic (:mod:`servetrace.synth.prompts`) of ≈ ``input_tokens``
tokens, at least one word (AIPerf rejects a row without content); ``output_length`` is tokens,
raised to ``min_output_tokens`` (default 1), and null where it would be 0 (AIPerf requires
> 0; null leaves the length to ``--osl``).

Workload mixes: ``models`` (default: when the frame is a mix, i.e. has ``request_class``
values, and every request names a model) writes each request's ``model`` (model or LoRA
adapter) and ``priority=True`` its ``priority`` (null as 0; vLLM needs
``--scheduling-policy priority`` for a non-zero one) in ``extra``, which AIPerf 0.13.0
merges into the request body (:mod:`servetrace.synth.export._classes`).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from servetrace.synth import prompts
from servetrace.synth.export import _classes, _common

NAME = "aiperf-single-turn"
REQUIRED = ("arrival_s", "input_tokens", "output_tokens")
SUFFIX = ".jsonl"


def output_length(min_output_tokens: int) -> pl.Expr:
    """``output_tokens`` raised to ``min_output_tokens``, null where 0 (AIPerf: > 0)."""
    out = _common.clip_output(min_output_tokens).cast(pl.Int64)
    return pl.when(out > 0).then(out).alias("output_length")


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *, seed: int = 0,
          rebase: bool = True, min_output_tokens: int = 1, models: bool | None = None,
          priority: bool = False) -> _common.Export:
    """Write ``frame`` (canonical ``requests``) as an AIPerf single_turn JSONL file at
    ``path``: ``text`` (String), ``timestamp`` (ms, Int64), ``output_length`` (Int64 or
    null), in arrival order. ``seed`` fixes the text. Returns ``path``.
    """
    req = _common.requests(frame, NAME, REQUIRED)
    text = prompts.prompts(req["input_tokens"].clip(lower_bound=1), seed)
    extra, carried, hints = _classes.aiperf_extra(req, NAME, models=models, priority=priority)
    out = req.select(
        pl.lit(text).alias("text"),
        _common.milliseconds(rebase).alias("timestamp"),
        output_length(min_output_tokens),
        *([extra] if extra is not None else []),
    )
    written = _common.write_jsonl(out, path)
    notes = (*_common.offset_notes(req, rebase, "AIPerf's fixed schedule waits for the "
                                   "absolute offset unless --fixed-schedule-auto-offset"),
             *_common.size_notes(written, NAME, "aiperf-mooncake"))
    return _common.Export(written, _common.aiperf_command(written, "single_turn"),
                          (*notes, *hints), carried)
