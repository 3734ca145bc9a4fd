"""FaaSRail experiment specification CSV (``faasrail-loadgen``'s input).

Source of truth: ``cslab-ntua/faasrail``. The spec is written by
``faasrail-shrinkray/shrinkray/specification.py`` (``Specification.to_csv``: Python's
``csv.writer``, one header row, then one row per function) and read by
``faasrail-loadgen/crates/faasrail-loadgen/src/source/client.rs`` (``parse_csv``: the header
line is discarded, the rows are deserialized by position into ``FunctionRow`` of
``source/mod.rs``: ``avg`` as f64, ``mapped_wreq`` as a string, the remaining fields as a
``Vec<u32>`` of requests per minute); ``mapped_wreq`` is JSON parsed into ``WorkloadRequest``
(``src/wreq.rs``: ``bench`` and ``payload`` strings, optional ``mean`` and ``stdev``)::

    avg,mapped_wreq,<minute>,<minute>,...
    412.5,"{""mean"":410.0,""bench"":""matmul-0a1b2c3d4e5f6a7b"",""payload"":""{}""}",7,0,12

Units: ``avg`` is the trace function's **mean execution time in milliseconds** (FaaSRail's
``dur_ms``, Azure's ``Average``); ``mapped_wreq.mean`` the mapped workload's mean execution
time, **milliseconds**; every later column the **invocations in one minute** (an integer ≥ 0),
columns in time order from ``first_minute`` (default: the first minute with an invocation) to
``last_minute``, minute ``m`` (1-based) covering ``[(m - 1)·60, m·60)`` s of the trace. The
load generator replays column ``k`` as its ``k``-th minute, spreading its requests within the
minute by its own IAT generator (Poisson or uniform); the header's minute labels are for
people (the loader skips the line). Rows are sorted by total invocations, largest first, and
functions without an invocation in the written minutes are left out, as ``shrinkray`` does.

FaaSRail's own scaling (``spec`` mode: every count × target peak RPM / peak RPM, then its
0.35 rounding rule; ``thumbnails``: minutes summed into groups) is *not* applied here:
servetrace scales with its own named operators before export
(:func:`servetrace.synth.serverless_scale.target_rate` with ``superpose_functions``, which
keeps the burst shape, or ``compress_time``, which is FaaSRail's time compression), so the
counts written are the trace's or the synthetic sample's as they are.

**Workload mapping** (``mapped_wreq``): with ``workloads``, a FaaSRail measurements file (a
JSON list of objects with ``bench``, ``payload`` — a JSON text — and ``mean`` in ms, as
``shrinkray``'s ``-w`` argument), each function is mapped to the workload whose mean is
nearest its ``avg`` (FaaSRail first collects every workload within ±1 % and then picks
benchmarks greedily for diversity; nearest-mean is the rule it falls back to when none is
within 1 %). The workload is named as ``shrinkray``'s ``Workload.get_name``:
``<bench>-<first 24 - len(bench) - 1 hex digits of sha256(json.dumps(payload))>``. Without
``workloads`` each function is its own workload: ``bench`` is the function id, ``payload``
``"{}"`` and ``mean`` its ``avg`` (a backend that invokes functions by id replays the trace
itself).

Input: ``invocations`` or ``invocation_counts`` (counted per minute as in
:mod:`servetrace.synth.export.vhive`), plus ``functions`` for the mean duration
(``duration_mean_s``); from ``invocations`` without ``functions`` the mean of ``duration_s``.
A function without a mean duration is a ``ValueError``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl

from servetrace.synth.export import _common, vhive

NAME = "faasrail"
REQUIRED = vhive.REQUIRED_COUNTS
TABLES = ("invocations", "invocation_counts")
SUFFIX = ".csv"
FUNCTION_ID_LEN = 24
"""Length of a FaaSRail workload name (``shrinkray/workload.py``, ``get_name``)."""
KEY = vhive.KEY


def workload_name(bench: str, payload: str) -> str:
    """FaaSRail's name of a (benchmark, payload) workload: the benchmark, a dash, and the
    first ``24 - len(bench) - 1`` hex digits of the SHA-256 of the payload re-serialized by
    Python's ``json.dumps`` (``shrinkray/workload.py``, ``Workload.get_name``)."""
    digest = hashlib.sha256(json.dumps(json.loads(payload)).encode("utf-8")).hexdigest()
    return f"{bench}-{digest[:FUNCTION_ID_LEN - len(bench) - 1]}"


def read_workloads(path: str | Path) -> pl.DataFrame:
    """FaaSRail's measured workloads (``bench``, ``payload``, ``mean`` ms) from its JSON list,
    with the FaaSRail ``name`` of each, sorted by ``mean``; errors name the file and entry."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line {exc.lineno} column {exc.colno}: not JSON "
                         f"({exc.msg})") from exc
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: expected a non-empty JSON list of workloads")
    rows = []
    for i, item in enumerate(data):  # one entry per measured workload, not per invocation
        ok = (isinstance(item, dict) and isinstance(item.get("bench"), str)
              and isinstance(item.get("payload"), str)
              and isinstance(item.get("mean"), int | float))
        if not ok:
            raise ValueError(f"{path}: entry {i}: expected an object with bench (string), "
                             f"payload (JSON text) and mean (ms)")
        try:
            name = workload_name(item["bench"], item["payload"])
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: entry {i}: payload is not JSON ({exc.msg})") from exc
        rows.append((item["bench"], item["payload"], float(item["mean"]), name))
    return pl.DataFrame(rows, schema={"bench": pl.String, "payload": pl.String,
                                      "mean": pl.Float64, "name": pl.String},
                        orient="row").sort("mean", maintain_order=True)


def nearest(means_ms: np.ndarray, workload_means_ms: np.ndarray) -> np.ndarray:
    """Index of the workload whose mean is nearest each function's (ties: the shorter)."""
    right = np.clip(np.searchsorted(workload_means_ms, means_ms), 1,
                    len(workload_means_ms) - 1) if len(workload_means_ms) > 1 else None
    if right is None:
        return np.zeros(len(means_ms), dtype=np.int64)
    left = right - 1
    return np.where(np.abs(workload_means_ms[right] - means_ms)
                    < np.abs(means_ms - workload_means_ms[left]), right, left)


def _mean_durations(data: pl.DataFrame, kind: str,
                    functions: pl.DataFrame | pl.LazyFrame | None) -> pl.DataFrame:
    """``tenant, app, function, avg`` (ms) per function."""
    if functions is not None:
        table = _common.collect(functions)
        _common.require(table, ["function"], NAME, "functions")
        return table.select(*vhive._keys(table),
                            (_common.optional(table, "duration_mean_s", pl.Float64) * 1000.0)
                            .alias("avg")).unique(KEY, keep="first", maintain_order=True)
    if kind == "invocations" and "duration_s" in data.columns:
        return data.select(*vhive._keys(data),
                           pl.col("duration_s").cast(pl.Float64)).group_by(
            KEY, maintain_order=True).agg((pl.col("duration_s").mean() * 1000.0).alias("avg"))
    return pl.DataFrame(schema={**{k: pl.String for k in KEY}, "avg": pl.Float64})


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *,
          functions: pl.DataFrame | pl.LazyFrame | None = None,
          workloads: str | Path | None = None,
          first_minute: int | None = None, last_minute: int | None = None
          ) -> _common.Export:
    """Write a FaaSRail spec CSV at ``path``: ``avg`` (ms, Float64), ``mapped_wreq`` (JSON
    text), then Int64 invocations per minute from ``first_minute`` to ``last_minute``
    (1-based, inclusive). ``frame`` is ``invocations`` or ``invocation_counts``;
    ``functions`` the canonical table; ``workloads`` a FaaSRail measurements JSON (module
    doc). Returns the :class:`~servetrace.synth.export._common.Export`, with FaaSRail's
    ways of reading the spec as notes (no single command line: its load generator is
    configured per deployment)."""
    data = _common.collect(frame)
    counts, kind = vhive._minute_counts(data)
    if counts.height == 0:
        raise ValueError(f"{NAME}: no invocations to write (the {kind} frame is empty)")
    lo = first_minute if first_minute is not None else int(counts["minute"].min())
    hi = last_minute if last_minute is not None else int(counts["minute"].max())
    if lo < 1 or hi < lo:
        raise ValueError(f"{NAME}: need 1 <= first_minute <= last_minute, got {lo}..{hi}")
    minutes = [str(m) for m in range(lo, hi + 1)]
    inside = counts.filter(pl.col("minute").is_between(lo, hi) & (pl.col("count") > 0))
    if inside.height == 0:
        raise ValueError(f"{NAME}: no invocations in minutes {lo}..{hi}")
    totals = inside.group_by(KEY, maintain_order=True).agg(pl.col("count").sum().alias("_n"))
    table = totals.join(_mean_durations(data, kind, functions), on=KEY, how="left",
                        maintain_order="left")
    lacking = table.filter(pl.col("avg").is_null() | pl.col("avg").is_nan())
    if lacking.height:
        shown = ", ".join(lacking["function"].head(3).to_list())
        raise ValueError(f"{NAME}: {lacking.height} of {table.height} function(s) have no mean "
                         f"duration (e.g. {shown}); FaaSRail needs avg for every function: "
                         f"pass a functions table, or invocations with duration_s")
    if workloads is not None:
        wl = read_workloads(workloads)
        pick = nearest(table["avg"].to_numpy(), wl["mean"].to_numpy())
        mapped = wl[pick].select(pl.col("mean"), pl.col("name").alias("bench"),
                                 pl.col("payload"))
    else:
        mapped = table.select(pl.col("avg").alias("mean"), pl.col("function").alias("bench"),
                              pl.lit("{}").alias("payload"))
    table = table.with_columns(mapped.select(pl.struct("mean", "bench", "payload")
                                             .struct.json_encode()).to_series()
                               .alias("mapped_wreq"))
    wide = inside.with_columns(pl.col("minute").cast(pl.String)).pivot(
        on="minute", index=KEY, values="count", on_columns=minutes)
    out = table.sort("_n", descending=True, maintain_order=True).join(
        wide, on=KEY, how="left", maintain_order="left").select(
        pl.col("avg"), pl.col("mapped_wreq"), *(vhive._int_or_zero(wide, m) for m in minutes))
    return _common.Export(_common.write_csv(out, path), "", (
        f"{out.height} function(s) x {len(minutes)} minute(s) of requests per minute; "
        f"FaaSRail's load generator replays the spec as written (scale the rate with "
        f"servetrace's operators before exporting, not FaaSRail's)",))
