"""GuideLLM trace file (``--data kind=trace_synthetic,...`` with ``--profile kind=replay``).

Source of truth: ``vllm-project/guidellm``,
``src/guidellm/data/deserializers/trace_synthetic.py`` (columns ``timestamp``,
``input_length``, ``output_length`` by default, read as float, int32 and int32; rows sorted by
timestamp; each request is replayed at its offset from the first row's timestamp, with a
synthetic prompt of ``input_length`` tokens) and ``docs/guides/trace_replay.md`` (the replay
options ``max_wait`` and ``max_session_wait`` are "in original trace seconds", so timestamps
are seconds). One object per line (a ``json_file`` source)::

    {"timestamp": 0.0, "input_length": 1020, "output_length": 129}

Units: ``timestamp`` is **seconds** (float) from the trace zero (``rebase`` counts from the
first request; GuideLLM itself replays offsets from the first row); lengths are tokens, the
output raised to ``min_output_tokens`` (default 1).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from servetrace.synth.export import _common

NAME = "guidellm"
REQUIRED = ("arrival_s", "input_tokens", "output_tokens")
SUFFIX = ".jsonl"


def rows(frame: pl.DataFrame | pl.LazyFrame, *, rebase: bool = False,
         min_output_tokens: int = 1, fmt: str = NAME) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the checked requests, the GuideLLM records: ``timestamp`` (s, Float64),
    ``input_length``, ``output_length`` (Int64))."""
    req = _common.requests(frame, fmt, REQUIRED)
    out = req.select(
        _common.seconds(rebase).cast(pl.Float64).alias("timestamp"),
        pl.col("input_tokens").cast(pl.Int64).alias("input_length"),
        _common.clip_output(min_output_tokens).cast(pl.Int64).alias("output_length"),
    )
    return req, out


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *, rebase: bool = False,
          min_output_tokens: int = 1) -> _common.Export:
    """Write ``frame`` (canonical ``requests``) as a GuideLLM trace JSONL file at ``path``.
    Returns the Export with the ``guidellm run`` command line."""
    _, out = rows(frame, rebase=rebase, min_output_tokens=min_output_tokens)
    written = _common.write_jsonl(out, path)
    return _common.Export(written, command(written, "trace_synthetic"))


def command(path: Path, kind: str, **options: object) -> str:
    """``guidellm run`` replaying the file at ``path`` as ``--data kind=KIND`` (a JSON
    object: the ``source`` is a nested ``json_file``)."""
    data = {"kind": kind, "source": {"kind": "json_file", "path": str(path)}, **options}
    return _common.shell("guidellm", "run", "--target", "URL", "--profile", "kind=replay",
                         "--data", json.dumps(data))
