"""Per-invocation CSV for serverless simulators: one line per invocation, units in the header.

Serverless simulators (SimFaaS, faas-sim, keep-alive and scheduling simulators) replay a list
of invocations, each with its arrival time, function, execution time and memory. This writer
gives them that list from a real per-invocation trace (Azure Functions 2021) or from a
synthetic sample of the serverless model (``servetrace generate``).

Source of truth: this docstring (the layout is servetrace's own; no simulator defines a
common one): RFC 4180 CSV (comma separated, ``\\n`` line ends, one header line naming the
unit of every column), read back by Python's ``csv`` module or any CSV reader::

    timestamp_s,function,duration_ms,memory_mb
    0.512004,f1,1840.25,170.0

Units:

- ``timestamp_s``: **seconds** from the trace zero (from the first invocation with
  ``rebase``), the arrival (start) time, written to the microsecond; rows in time order;
- ``function``: the function id (with ``tenancy``, ``owner`` and ``app`` follow it: the
  Owner → App → Function hierarchy of Shahrad et al., ATC 2020, which keep-alive policies
  and fair schedulers key on);
- ``duration_ms``: execution time, **milliseconds** (the canonical ``duration_s`` × 1000);
- ``memory_mb``: allocated memory, **MB**; empty where the trace has none (Azure 2021 records
  no memory).

Input: the canonical ``invocations`` table (``arrival_s``, ``function``, ``duration_s``;
optional ``tenant``, ``app``, ``memory_mb``). Per-window counts (``invocation_counts``) carry
no invocation times: fit and sample the serverless model first (its sample is an
``invocations`` table). A missing or null ``duration_s`` is an error: a simulator needs every
invocation's service time.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from servetrace.synth.export import _common

NAME = "invocations-csv"
REQUIRED = ("arrival_s", "function", "duration_s")
TABLES = ("invocations",)
SUFFIX = ".csv"
HEADER = ["timestamp_s", "function", "duration_ms", "memory_mb"]
TENANCY_HEADER = ["timestamp_s", "function", "owner", "app", "duration_ms", "memory_mb"]


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *, rebase: bool = False,
          tenancy: bool = False) -> _common.Export:
    """Write one CSV line per invocation at ``path`` (columns and units: module doc), in time
    order. ``rebase`` counts time from the first invocation; ``tenancy`` adds ``owner`` and
    ``app``. Returns the :class:`~servetrace.synth.export._common.Export`: no consumer
    command (simulators read the file their own way), the columns and units as a note."""
    data = _common.collect(frame)
    if "window_start_s" in data.columns and "arrival_s" not in data.columns:
        raise ValueError(f"{NAME}: per-window counts have no invocation times; fit the "
                         f"serverless model and sample it (servetrace fit, generate), then "
                         f"export the sample")
    _common.require(data, REQUIRED, NAME, "invocations")
    if data.height == 0:
        raise ValueError(f"{NAME}: the invocations frame is empty")
    _common.single_trace(data, NAME)
    if data["duration_s"].min() < 0:
        raise ValueError(f"{NAME}: column duration_s holds a negative duration")
    if not data["arrival_s"].is_sorted():
        data = data.sort("arrival_s", maintain_order=True)
    function = pl.col("function").cast(pl.String)
    out = data.select(
        _common.seconds(rebase).round(6).alias("timestamp_s"), function.alias("function"),
        *((_common.optional(data, "tenant", pl.String).alias("owner"),
           _common.optional(data, "app", pl.String).alias("app")) if tenancy else ()),
        (pl.col("duration_s").cast(pl.Float64) * 1000.0).round(6).alias("duration_ms"),
        _common.optional(data, "memory_mb", pl.Float64).fill_nan(None).round(6)
        .alias("memory_mb"))
    return _common.Export(_common.write_csv(out, path), "", (
        f"columns {', '.join(out.columns)}: timestamp_s in seconds"
        f"{' from the first invocation' if rebase else ' of the trace'}, duration_ms in "
        f"milliseconds, memory_mb in MB",))
