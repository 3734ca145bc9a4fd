"""vHive / InVitro loader trace folder: ``invocations.csv``, ``durations.csv``, ``memory.csv``.

Source of truth: ``vhive-serverless/invitro``, ``pkg/trace/azure_trace_parser.go``
(``AzureTraceParser.Parse`` reads the three files from one folder; the invocations header
must name ``HashOwner``, ``HashApp``, ``HashFunction`` among its first four fields, and the
per-minute counts are read as integers from the column after ``Trigger``, one column per
minute for the experiment's duration, at most 1440) and ``pkg/common/trace_types.go``
(``FunctionRuntimeStats`` and ``FunctionMemoryStats``, read by header name with gocsv as
floats). The files follow the Azure Functions 2019 release
(``Azure/AzurePublicDataset``, ``AzureFunctionsDataset2019.md``) in the per-function memory
variant of InVitro's sampled traces (``data/traces/``), which this project's
``loaders/azure_functions_2019.py`` also reads::

    invocations.csv  HashOwner,HashApp,HashFunction,Trigger,<m>,<m+1>,...,<M>
    durations.csv    HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,
                     percentile_Average_{0,1,25,50,75,99,100}
    memory.csv       HashFunction,HashOwner,HashApp,SampleCount,AverageAllocatedMb,
                     AverageAllocatedMb_pct{1,5,25,50,75,95,99,100}

Units: ``invocations.csv`` holds **invocations per minute** (integers, 0 where none): minute
``m`` (1-based) covers ``[(m - 1)·60, m·60)`` seconds from the trace zero, the columns run
without gaps from the first to the last minute with an invocation (or ``first_minute`` ..
``last_minute``), so InVitro, which reads columns by position, replays them in order from
the first; a trace longer than a day keeps counting minutes past 1440 (InVitro replays at
most 1440). Durations are **milliseconds** (``Minimum`` = p0, ``Maximum`` = p100, rounded to
the nanosecond), memory **MB** (Azure's allocated memory).

**Per-second traces** (``granularity="second"``): the loader's ``"Granularity": "second"``
setting (``docs/configuration.md``; ``cmd/loader.go`` ``parseTraceGranularity``) reads the
same files but takes every invocation column as one second: column ``s`` (1-based) holds the
**invocations in second** ``[(s - 1), s)`` from the trace zero, and the specification
generator (``pkg/generator/specification.go``, ``generateIATPerGranularity``) spreads them
within that second (1,000,000 µs instead of 60,000,000). The parser still reads at most 1440
columns, so InVitro replays at most the first 24 minutes of a per-second folder; the writer
keeps every second (pass ``first_minute``/``last_minute``, then counted in seconds, to cut
a window). Only per-invocation times (``invocations``) or windows of at most a second can
be counted per second; per-minute counts are an error.

**Synthetic traces**: ``servetrace generate`` on a serverless model writes a canonical
``invocations`` Parquet with ``duration_s`` and ``memory_mb`` drawn per invocation from each
function's fitted quantile functions, so it exports like a real per-invocation trace: counts
from its arrivals, statistics from its own draws (``Count``/``SampleCount`` = invocations in
the sample).

Input, either table of ``loaders/schema.py``:

- ``invocations`` (``arrival_s``, ``function``; optional ``tenant``, ``app``, ``trigger``,
  ``duration_s``, ``memory_mb``): per-minute counts are counted from the arrivals; without a
  ``functions`` table the duration and memory statistics are computed from ``duration_s``
  and ``memory_mb`` (mean, count, linear-interpolation percentiles);
- ``invocation_counts`` (``function``, ``window_start_s``, ``window_s``, ``count``): windows
  that divide a minute are summed into their minute; longer or straddling windows are an
  error. Statistics then come from ``functions``.

``functions`` (the canonical table) gives ``duration_mean_s`` and ``duration_p{0,1,25,50,75,
99,100}_s`` (× 1000 → ms), ``memory_mean_mb`` and ``memory_p{1,5,25,50,75,95,99,100}_mb``,
``trigger``, and ``invocations`` as ``Count`` and ``SampleCount`` (the canonical table keeps
no separate memory sample count). Functions are keyed by (``tenant``, ``app``,
``function``); a null ``tenant`` or ``app`` is written as the function's own id (InVitro
needs all three hashes) and a null ``trigger`` as ``others`` (Azure's catch-all class).
Every function of ``invocations.csv`` needs both statistics (InVitro stops otherwise), so a
missing one is a ``ValueError``. Reading the folder back with
:mod:`servetrace.loaders.azure_functions_2019` gives the same non-zero counts and statistics.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from servetrace.synth.export import _common

NAME = "vhive"
REQUIRED_INVOCATIONS = ("arrival_s", "function")
REQUIRED_COUNTS = ("function", "window_start_s", "window_s", "count")
REQUIRED = REQUIRED_COUNTS
TABLES = ("invocations", "invocation_counts")
SUFFIX = ""
WINDOW_S = 60.0
KEY = ["tenant", "app", "function"]
DURATION_PCTS = (0, 1, 25, 50, 75, 99, 100)
MEMORY_PCTS = (1, 5, 25, 50, 75, 95, 99, 100)
INVOCATIONS_HEADER = ["HashOwner", "HashApp", "HashFunction", "Trigger"]
DURATIONS_HEADER = ["HashOwner", "HashApp", "HashFunction", "Average", "Count", "Minimum",
                    "Maximum", *(f"percentile_Average_{p}" for p in DURATION_PCTS)]
MEMORY_HEADER = ["HashFunction", "HashOwner", "HashApp", "SampleCount", "AverageAllocatedMb",
                 *(f"AverageAllocatedMb_pct{p}" for p in MEMORY_PCTS)]
DEFAULT_TRIGGER = "others"
GRANULARITY = {"minute": 60.0, "second": 1.0}
"""Seconds per ``invocations.csv`` column for InVitro's ``Granularity`` setting."""


def _keys(frame: pl.DataFrame) -> list[pl.Expr]:
    """``tenant``, ``app``, ``function`` as strings, null owner/app = the function id."""
    function = pl.col("function").cast(pl.String)
    return [_common.optional(frame, "tenant", pl.String).fill_null(function).alias("tenant"),
            _common.optional(frame, "app", pl.String).fill_null(function).alias("app"),
            function.alias("function")]


def _minute_counts(frame: pl.DataFrame, window_s: float = WINDOW_S) -> tuple[pl.DataFrame, str]:
    """(``tenant, app, function, trigger, minute, count`` per function and column, kind): a
    column is ``window_s`` long (60: a minute, 1: a second) and ``minute`` its 1-based index."""
    cols = set(frame.columns)
    unit = "minute" if window_s == WINDOW_S else f"{window_s:g} s column"
    trigger = _common.optional(frame, "trigger", pl.String).alias("trigger")
    if set(REQUIRED_COUNTS) <= cols:
        _common.require(frame, REQUIRED_COUNTS, NAME, "invocation_counts")
        start, width = pl.col("window_start_s"), pl.col("window_s")
        minute = (start / window_s).floor()
        bad = frame.filter((width <= 0) | (start < 0)
                           | (start + width > (minute + 1) * window_s + 1e-9))
        if bad.height:
            row = bad.row(0, named=True)
            raise ValueError(f"{NAME}: {bad.height} window(s) do not fit in one {unit}, e.g. "
                             f"window_start_s={row['window_start_s']}, window_s="
                             f"{row['window_s']}; counts per {unit} need windows of at "
                             f"most {window_s:g} s that do not straddle one")
        if frame["count"].min() < 0:
            raise ValueError(f"{NAME}: column count holds a negative count")
        long = frame.select(*_keys(frame), trigger, (minute.cast(pl.Int64) + 1).alias("minute"),
                            pl.col("count").cast(pl.Int64))
        kind = "invocation_counts"
    elif set(REQUIRED_INVOCATIONS) <= cols:
        _common.require(frame, REQUIRED_INVOCATIONS, NAME, "invocations")
        if frame["arrival_s"].min() < 0:
            raise ValueError(f"{NAME}: column arrival_s holds a negative time")
        long = frame.select(*_keys(frame), trigger,
                            ((pl.col("arrival_s") / window_s).floor().cast(pl.Int64) + 1)
                            .alias("minute"), pl.lit(1, pl.Int64).alias("count"))
        kind = "invocations"
    else:
        raise ValueError(f"{NAME}: expected an invocations frame (columns "
                         f"{', '.join(REQUIRED_INVOCATIONS)}) or an invocation_counts frame "
                         f"(columns {', '.join(REQUIRED_COUNTS)}); got "
                         f"{', '.join(frame.columns) or 'no columns'}")
    _common.single_trace(frame, NAME)
    counts = long.group_by([*KEY, "minute"], maintain_order=True).agg(
        pl.col("trigger").drop_nulls().first(), pl.col("count").sum())
    return counts, kind


def _statistics_from_invocations(frame: pl.DataFrame) -> pl.DataFrame:
    """Per function: duration mean/count/percentiles (s) and memory mean/percentiles (MB)."""
    aggs = [pl.len().alias("invocations")]
    if "duration_s" in frame.columns:
        d = pl.col("duration_s").cast(pl.Float64)
        aggs += [d.mean().alias("duration_mean_s"), d.count().alias("_duration_n"),
                 *(d.quantile(p / 100, "linear").alias(f"duration_p{p}_s")
                   for p in DURATION_PCTS)]
    if "memory_mb" in frame.columns:
        m = pl.col("memory_mb").cast(pl.Float64)
        aggs += [m.mean().alias("memory_mean_mb"), m.count().alias("_memory_n"),
                 *(m.quantile(p / 100, "linear").alias(f"memory_p{p}_mb")
                   for p in MEMORY_PCTS)]
    return frame.select(*_keys(frame), *(c for c in ("duration_s", "memory_mb")
                                         if c in frame.columns)).group_by(
        KEY, maintain_order=True).agg(aggs)


def _functions(functions: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    table = _common.collect(functions)
    _common.require(table, ["function"], NAME, "functions")
    _common.single_trace(table, NAME)
    wanted = ["trigger", "invocations", "duration_mean_s",
              *(f"duration_p{p}_s" for p in DURATION_PCTS), "memory_mean_mb",
              *(f"memory_p{p}_mb" for p in MEMORY_PCTS)]
    dtypes = {"trigger": pl.String, "invocations": pl.Int64}
    return table.select(*_keys(table), *(_common.optional(table, c, dtypes.get(c, pl.Float64))
                                         .alias(c) for c in wanted)).unique(
        KEY, keep="first", maintain_order=True)


def _missing(table: pl.DataFrame, columns: list[str], what: str) -> None:
    lacking = table.filter(pl.any_horizontal(pl.col(columns).is_null()))
    if lacking.height:
        shown = ", ".join(lacking["function"].head(3).to_list())
        raise ValueError(f"{NAME}: {lacking.height} of {table.height} function(s) have no "
                         f"{what} statistics (e.g. {shown}); InVitro needs them for every "
                         f"function: pass a functions table, or invocations with "
                         f"{'duration_s' if what == 'duration' else 'memory_mb'}")


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *,
          functions: pl.DataFrame | pl.LazyFrame | None = None,
          first_minute: int | None = None, last_minute: int | None = None,
          granularity: str = "minute") -> _common.Export:
    """Write an InVitro trace folder at ``path`` (created if needed): ``invocations.csv``
    (Int64 counts per minute), ``durations.csv`` (ms, Float64; ``Count`` Int64) and
    ``memory.csv`` (MB, Float64; ``SampleCount`` Int64), one row per function in the order
    of ``functions`` then of first appearance. ``frame`` is ``invocations`` or
    ``invocation_counts``; ``functions`` the canonical ``functions`` table. Minutes outside
    ``first_minute`` .. ``last_minute`` (1-based, inclusive) are left out. With
    ``granularity="second"`` every column counts one second instead (InVitro's
    ``"Granularity": "second"``), and ``first_minute``/``last_minute`` number seconds.
    Returns the :class:`~servetrace.synth.export._common.Export` (folder, loader command).
    """
    if granularity not in GRANULARITY:
        raise ValueError(f"{NAME}: granularity must be one of {', '.join(GRANULARITY)}, got "
                         f"{granularity!r}")
    data = _common.collect(frame)
    counts, kind = _minute_counts(data, GRANULARITY[granularity])
    seen = counts.group_by(KEY, maintain_order=True).agg(
        pl.col("trigger").drop_nulls().first(), pl.col("count").sum().alias("_total"))
    if functions is not None:
        stats = _functions(functions)
    elif kind == "invocations":
        stats = _statistics_from_invocations(data)
    else:
        stats = pl.DataFrame(schema={k: pl.String for k in KEY})
    rows = pl.concat([stats.select(KEY), seen.select(KEY)]).unique(maintain_order=True)
    if rows.height == 0:
        raise ValueError(f"{NAME}: no functions to write (the {kind} frame is empty)")
    table = rows.join(stats, on=KEY, how="left", maintain_order="left").join(
        seen.rename({"trigger": "_trigger"}), on=KEY, how="left", maintain_order="left")
    table = table.with_columns(
        pl.coalesce(*(c for c in ("trigger", "_trigger") if c in table.columns),
                    pl.lit(DEFAULT_TRIGGER)).alias("trigger"),
        pl.coalesce(*(c for c in ("invocations", "_total") if c in table.columns),
                    pl.lit(0, pl.Int64)).cast(pl.Int64).alias("invocations"))

    lo = first_minute if first_minute is not None else (
        int(counts["minute"].min()) if counts.height else 1)
    hi = last_minute if last_minute is not None else (
        int(counts["minute"].max()) if counts.height else lo)
    if lo < 1 or hi < lo:
        raise ValueError(f"{NAME}: need 1 <= first_minute <= last_minute, got {lo}..{hi}")
    minutes = [str(m) for m in range(lo, hi + 1)]
    inside = counts.filter(pl.col("minute").is_between(lo, hi))
    wide = (inside.with_columns(pl.col("minute").cast(pl.String))
            .pivot(on="minute", index=KEY, values="count", on_columns=minutes)
            if inside.height else pl.DataFrame(schema={k: pl.String for k in KEY}))
    invocations = table.select(*KEY, "trigger").join(
        wide, on=KEY, how="left", maintain_order="left").select(
        pl.col("tenant").alias("HashOwner"), pl.col("app").alias("HashApp"),
        pl.col("function").alias("HashFunction"), pl.col("trigger").alias("Trigger"),
        *(_int_or_zero(wide, m) for m in minutes))

    duration_cols = ["duration_mean_s", *(f"duration_p{p}_s" for p in DURATION_PCTS)]
    memory_cols = ["memory_mean_mb", *(f"memory_p{p}_mb" for p in MEMORY_PCTS)]
    for cols, what in ((duration_cols, "duration"), (memory_cols, "memory")):
        for c in cols:
            if c not in table.columns:
                table = table.with_columns(pl.lit(None, pl.Float64).alias(c))
        _missing(table, cols, what)

    def ms(col: str) -> pl.Expr:
        return (pl.col(col) * 1000.0).round(6)

    durations = table.select(
        pl.col("tenant").alias("HashOwner"), pl.col("app").alias("HashApp"),
        pl.col("function").alias("HashFunction"), ms("duration_mean_s").alias("Average"),
        pl.coalesce(*(c for c in ("_duration_n", "invocations") if c in table.columns))
        .cast(pl.Int64).alias("Count"),
        ms("duration_p0_s").alias("Minimum"), ms("duration_p100_s").alias("Maximum"),
        *(ms(f"duration_p{p}_s").alias(f"percentile_Average_{p}") for p in DURATION_PCTS))
    memory = table.select(
        pl.col("function").alias("HashFunction"), pl.col("tenant").alias("HashOwner"),
        pl.col("app").alias("HashApp"),
        pl.coalesce(*(c for c in ("_memory_n", "invocations") if c in table.columns))
        .cast(pl.Int64).alias("SampleCount"),
        pl.col("memory_mean_mb").cast(pl.Float64).alias("AverageAllocatedMb"),
        *(pl.col(f"memory_p{p}_mb").cast(pl.Float64).alias(f"AverageAllocatedMb_pct{p}")
          for p in MEMORY_PCTS))

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    invocations.write_csv(folder / "invocations.csv")
    durations.write_csv(folder / "durations.csv")
    memory.write_csv(folder / "memory.csv")
    command = _common.shell("go", "run", "cmd/loader.go", "--config", "CONFIG.json")
    return _common.Export(folder, command, (f"InVitro reads the folder named by TracePath in "
                                            f"its JSON config: set \"TracePath\": "
                                            f"\"{folder}\"",))


def _int_or_zero(wide: pl.DataFrame, minute: str) -> pl.Expr:
    """Minute column ``minute`` as Int64 with 0 where the function had no invocation."""
    if minute in wide.columns:
        return pl.col(minute).fill_null(0).cast(pl.Int64)
    return pl.lit(0, pl.Int64).alias(minute)
