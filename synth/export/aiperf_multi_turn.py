"""AIPerf ``multi_turn`` custom dataset JSONL (``aiperf profile --input-file FILE
--custom-dataset-type multi_turn``, with ``--fixed-schedule`` to replay the timestamps).

Source of truth: ``ai-dynamo/aiperf`` (checked on the 0.13.0 wheel),
``aiperf/dataset/loader/models.py`` (pydantic models ``MultiTurn``: ``session_id`` and a
non-empty ``turns`` list of ``SingleTurn``, whose ``timestamp`` is in milliseconds and
``output_length`` > 0 or null) and ``src/aiperf/dataset/loader/multi_turn.py`` (one line per
conversation; lines with the same ``session_id`` are merged; the turns of a conversation are
sent in order, each with the conversation so far). One object per line::

    {"session_id": "s1", "turns": [{"text": "...", "timestamp": 0, "delay": null,
                                    "output_length": 40},
                                   {"text": "...", "timestamp": null, "delay": 9000,
                                    "output_length": 20}]}

Grouping: one line per ``session`` (the canonical conversation id), lines ordered by their
first turn's arrival and turns by arrival. A request whose ``session`` is null (or a frame
without the column) is a conversation of its own, named ``request-<row>`` after its row in
arrival order (0-based).

Units: ``timestamp`` whole **milliseconds** from the first request (``rebase``, the default:
AIPerf's fixed schedule replays absolute offsets; ``rebase=False`` keeps the trace zero);
``delay`` whole milliseconds: with ``think_times`` (default) a session's later turn whose
``think_s`` is known is sent ``think_s`` after the previous response (``delay``, timestamp
null; AIPerf forbids both), as the agent did, other turns at their timestamp; ``text``
synthetic (:mod:`servetrace.synth.prompts`), ≈ ``input_tokens`` tokens; with ``delta_inputs``
a turn's text is only what the turn adds, ``input_tokens`` minus the previous turn's
``input_tokens + output_tokens`` (at least one word), for traces whose input counts include
the history that AIPerf resends; ``output_length`` tokens, raised to ``min_output_tokens``
(default 1), null where 0.

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
from servetrace.synth.export.aiperf_single_turn import output_length

NAME = "aiperf-multi-turn"
REQUIRED = ("arrival_s", "input_tokens", "output_tokens")
SUFFIX = ".jsonl"


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *, seed: int = 0,
          rebase: bool = True, min_output_tokens: int = 1,
          delta_inputs: bool = False, think_times: bool = True,
          models: bool | None = None, priority: bool = False) -> _common.Export:
    """Write ``frame`` (canonical ``requests``) as an AIPerf multi_turn JSONL file at
    ``path``: ``session_id`` (String), ``turns`` (list of ``{text, timestamp (ms), delay
    (ms), output_length}``). ``seed`` fixes the text. Returns the Export with the ``aiperf
    profile`` command line.
    """
    req = _common.requests(frame, NAME, REQUIRED)
    req = req.with_columns(_common.session_ids(req).alias("session_id"))
    words = pl.col("input_tokens")
    if delta_inputs:
        before = (pl.col("input_tokens") + pl.col("output_tokens")).shift(1).over("session_id")
        words = (words - before.fill_null(0))
    counts = req.select(pl.max_horizontal(words, pl.lit(1)).cast(pl.Int64)).to_series()
    stamp, delay = _common.turn_schedule(req, rebase, think_times)
    extra, carried, hints = _classes.aiperf_extra(req, NAME, models=models, priority=priority)
    turns = req.select(
        "session_id",
        pl.struct(
            pl.lit(prompts.prompts(counts, seed)).alias("text"),
            stamp,
            delay,
            output_length(min_output_tokens),
            *([extra] if extra is not None else []),
        ).alias("turn"),
    )
    out = turns.group_by("session_id", maintain_order=True).agg(pl.col("turn").alias("turns"))
    written = _common.write_jsonl(out, path)
    command = _common.aiperf_command(written, "multi_turn")
    notes = (*_common.offset_notes(req, rebase, "AIPerf's fixed schedule waits for the "
                                   "absolute offset unless --fixed-schedule-auto-offset"),
             *_common.size_notes(written, NAME, "aiperf-mooncake (with session_id)"))
    return _common.Export(written, command, (*notes, *hints), carried)
