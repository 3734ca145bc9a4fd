"""AIPerf ``mooncake_trace`` custom dataset JSONL (``aiperf profile --input-file FILE
--custom-dataset-type mooncake_trace --fixed-schedule``).

Source of truth: the ``aiperf`` wheel on PyPI (checked: 0.13.0),
``aiperf/dataset/loader/models.py`` (pydantic model ``MooncakeTrace``: ``input_length`` int;
``output_length`` int; ``hash_ids`` list of int, allowed only with ``input_length``;
``timestamp`` and ``delay`` int|float "in milliseconds", not both; ``session_id`` optional),
``aiperf/dataset/loader/mooncake_trace.py`` and ``base_trace_loader.py`` (lines sharing a
``session_id`` form one conversation, sent in file order, each turn after the previous
response; other lines are conversations of their own; prompts are synthesized from
``hash_ids`` in blocks of ``--isl-block-size`` tokens, 512 by default for this type in
``plugins.yaml``), and ``aiperf/timing/strategies/fixed_schedule.py`` (a conversation's first
turn is sent at its ``timestamp`` as an **absolute** offset from the benchmark start unless
``--fixed-schedule-auto-offset``; a later turn at its ``timestamp``, or ``delay`` ms after
the previous response). One object per line::

    {"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1, ...],
     "session_id": "s1", "delay": null}

Units: ``timestamp`` whole **milliseconds** from the first request (``rebase``, the default;
``rebase=False`` keeps the trace zero); ``delay`` whole milliseconds; lengths in tokens
(output raised to ``min_output_tokens``, default 1); ``hash_ids`` name ``block_size``-token
blocks (default: the trace's own, 512 without ids), ``ceil(input_length / block_size)`` per
request, re-chunked as in :func:`servetrace.synth.export._common.consumer_hash_ids`; the
command line passes ``--isl-block-size``. ``sessions`` (default: when the frame has a
``session`` column with values) writes ``session_id`` (requests without one get
``request-<row>``), and with ``think_times`` a session's later turn whose ``think_s`` is known
gets ``delay`` = its think time instead of a timestamp: AIPerf then waits for the previous
response plus the think time, as the agent did.
Workload mixes: ``models`` (default: when the frame is a mix, i.e. has ``request_class``
values, and every request names a model) writes each request's ``model`` (model or LoRA
adapter) and ``priority=True`` its ``priority`` (null as 0; vLLM needs
``--scheduling-policy priority`` for a non-zero one) in ``extra``, which AIPerf 0.13.0
merges into the request body (:mod:`servetrace.synth.export._classes`).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from servetrace.synth.export import _classes, _common, mooncake

NAME = "aiperf-mooncake"
REQUIRED = mooncake.REQUIRED
SUFFIX = ".jsonl"


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *, rebase: bool = True,
          block_size: int | None = None, keep_hash_ids: bool = True,
          hash_block_tokens: int | None = None, hash_scope: str = "global",
          min_output_tokens: int = 1, sessions: bool | None = None,
          think_times: bool = True, models: bool | None = None,
          priority: bool = False) -> _common.Export:
    """Write ``frame`` (canonical ``requests``) as an AIPerf mooncake_trace JSONL file at
    ``path``: ``timestamp`` (ms, Int64), ``input_length``, ``output_length`` (Int64),
    ``hash_ids`` (List(Int64)) and, with ``sessions``, ``session_id`` and ``delay`` (ms);
    with ``models``/``priority``, ``extra`` (``model``, ``priority``).
    Returns the Export with the ``aiperf profile`` command line.
    """
    if min_output_tokens < 0:
        raise ValueError(f"min_output_tokens must be >= 0, got {min_output_tokens}")
    req = _common.requests(frame, NAME, REQUIRED)
    size = block_size or _common.trace_block_tokens(req, hash_block_tokens, keep_hash_ids)
    ids = _common.consumer_hash_ids(req, size, hash_block_tokens=hash_block_tokens,
                                    hash_scope=hash_scope, keep=keep_hash_ids)
    sessions = _common.has_sessions(req) if sessions is None else sessions
    if sessions:
        req = req.with_columns(_common.session_ids(req).alias("session_id"))
        stamp, delay = _common.turn_schedule(req, rebase, think_times)
    else:
        stamp, delay = _common.milliseconds(rebase).alias("timestamp"), None
    cols = [stamp,
            pl.col("input_tokens").cast(pl.Int64).alias("input_length"),
            _common.clip_output(min_output_tokens).cast(pl.Int64).alias("output_length"),
            pl.lit(ids).alias("hash_ids")]
    if sessions:
        cols += [pl.col("session_id"), delay]
    extra, carried, hints = _classes.aiperf_extra(req, NAME, models=models, priority=priority)
    if extra is not None:
        cols.append(extra)
    out = req.select(cols)
    written = _common.write_jsonl(out, path)
    command = _common.aiperf_command(written, "mooncake_trace", "--isl-block-size", size)
    notes = _common.offset_notes(req, rebase, "AIPerf's fixed schedule waits for the absolute "
                                 "offset unless --fixed-schedule-auto-offset")
    return _common.Export(written, command, (*notes, *hints), carried)
