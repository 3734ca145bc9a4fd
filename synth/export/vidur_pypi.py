"""Vidur ``trace_replay`` CSV for the **PyPI release** (``pip install vidur``, 0.0.26), whose
reader differs from the repository head's (:mod:`servetrace.synth.export.vidur`).

Source of truth: the ``vidur`` 0.0.26 wheel, ``vidur/request_generator/
trace_replay_request_generator.py`` (``TraceReplayRequestGenerator``: reads the CSV with
pandas, keeps the rows whose ``Date`` equals ``--trace_request_generator_config_date``
(default ``2023-08-21``), multiplies ``PromptTokenCount`` by ``prefill_scale_factor``
(default **0.3**), ``CompletionTokenCount`` by ``decode_scale_factor`` and ``Time`` by
``time_scale_factor`` (default **0.04**), clips both counts to at least 1, cuts prompts so
prompt + completion ≤ ``max_tokens`` (default 4096), and makes one request per row with
``arrived_at = Time``) and ``vidur/config/config.py`` (``TraceRequestGeneratorConfig``; flat
command-line flags ``--trace_request_generator_config_<field>``). The repository-head layout
(``arrived_at,...``) fails here with ``KeyError: 'Date'``, and this one fails at the head. The
command line returned sets every scale factor to 1 and ``max_tokens`` to the largest request,
so the defaults do not silently shrink the trace. Header and first row::

    Date,Time,PromptTokenCount,CompletionTokenCount
    2023-08-21,0.0,374,44

Units: ``Time`` is **seconds** (float) from the trace zero (``rebase``: from the first
request); ``Date`` is the constant ``date`` on every row (the reader only filters on it);
counts are tokens.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from servetrace.synth.export import _common, vidur

NAME = "vidur-pypi"
REQUIRED = ("arrival_s", "input_tokens", "output_tokens")
SUFFIX = ".csv"
DEFAULT_DATE = "2023-08-21"
"""``TraceRequestGeneratorConfig.date``'s default in vidur 0.0.26."""


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *, rebase: bool = False,
          date: str = DEFAULT_DATE) -> _common.Export:
    """Write ``frame`` (canonical ``requests``) as a vidur 0.0.26 trace CSV at ``path``:
    ``Date`` (String), ``Time`` (s, Float64), ``PromptTokenCount``, ``CompletionTokenCount``
    (Int64), in arrival order. Returns the Export with the ``vidur.main`` command line."""
    req = _common.requests(frame, NAME, REQUIRED)
    out = req.select(
        pl.lit(date).alias("Date"),
        _common.seconds(rebase).cast(pl.Float64).alias("Time"),
        pl.col("input_tokens").cast(pl.Int64).alias("PromptTokenCount"),
        pl.col("output_tokens").cast(pl.Int64).alias("CompletionTokenCount"),
    )
    written = _common.write_csv(out, path)
    top = int((out["PromptTokenCount"].clip(1) + out["CompletionTokenCount"].clip(1)).max())
    command = vidur.command(written, top, "--trace_request_generator_config_date", date)
    return _common.Export(written, command)
