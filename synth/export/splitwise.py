"""splitwise-sim trace CSV (``trace.filename`` in its Hydra configuration).

Source of truth: ``Mutinifni/splitwise-sim``: ``trace.py`` (``Trace.from_csv`` reads the CSV
with pandas and builds one ``Request.from_dict(row)`` per row), ``request.py`` (fields
``request_id``, ``request_type`` — 2 is ``GENERATIVE_LLM``, the only type it accepts —,
``application_id``, ``arrival_timestamp``, ``batch_size``, ``prompt_size``, ``token_size``;
a request runs a prompt task of ``prompt_size`` tokens, then a token task of ``token_size -
1`` tokens), ``generate_trace.py`` (arrival times are cumulative exponential gaps in
**seconds**) and ``traces/test_trace.csv``, whose header is exactly::

    request_id,request_type,application_id,arrival_timestamp,batch_size,prompt_size,token_size
    0,2,0,1,1,4096,32

Units: ``arrival_timestamp`` is **seconds** (float) from the trace zero (``rebase``: from the
first request); ``request_id`` is the 0-based row number in arrival order;
``request_type`` = 2, ``application_id`` = ``application_id`` option (default 0),
``batch_size`` = 1; ``prompt_size`` and ``token_size`` are tokens, raised to at least 1 (a
token task of ``token_size - 1`` cannot be negative, and a prompt task needs a prompt).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from servetrace.synth.export import _common

NAME = "splitwise"
REQUIRED = ("arrival_s", "input_tokens", "output_tokens")
SUFFIX = ".csv"
GENERATIVE_LLM = 2


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *, rebase: bool = False,
          application_id: int = 0) -> _common.Export:
    """Write ``frame`` (canonical ``requests``) as a splitwise-sim trace CSV at ``path``
    (columns above; Int64 except ``arrival_timestamp``, Float64). Returns ``path``."""
    req = _common.requests(frame, NAME, REQUIRED)
    out = req.select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("request_id"),
        pl.lit(GENERATIVE_LLM, pl.Int64).alias("request_type"),
        pl.lit(application_id, pl.Int64).alias("application_id"),
        _common.seconds(rebase).cast(pl.Float64).alias("arrival_timestamp"),
        pl.lit(1, pl.Int64).alias("batch_size"),
        pl.col("input_tokens").cast(pl.Int64).clip(lower_bound=1).alias("prompt_size"),
        pl.col("output_tokens").cast(pl.Int64).clip(lower_bound=1).alias("token_size"),
    )
    written = _common.write_csv(out, path)
    command = _common.shell("python", "run.py", f"trace.filename={written.stem}")
    return _common.Export(written, command, (f"splitwise-sim reads traces/{written.name}: "
                                             f"copy the file into its traces/ folder",))
