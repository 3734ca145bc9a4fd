"""The canonical tables: names, types and units, fixed in one place.

Every loader maps its source onto these tables and every row passes :func:`validate`
before it is written. Units live in each Arrow field's metadata (``unit``); a field whose
metadata says ``kind=count`` must hold a non-negative integer. Non-nullable fields are the
ones a row cannot exist without; everything else stays null where a source lacks it.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl
import pyarrow as pa

from loaders.source import with_raw


def _f(name: str, type_: pa.DataType, unit: str = "", *, required: bool = False,
       count: bool = False, doc: str = "") -> pa.Field:
    meta = {"unit": unit, "doc": doc}
    if count:
        meta["kind"] = "count"
    return pa.field(name, type_, nullable=not required, metadata=meta)


_trace = _f("trace", pa.string(), required=True, doc="trace id, e.g. azure_llm_2023/code")
_arrival = _f("arrival_s", pa.float64(), "s", required=True,
              doc="seconds from the trace's own zero (traces.origin), ascending")

REQUESTS = pa.schema([
    _trace,
    _f("request_id", pa.string(), doc="source request id where the source has one"),
    _arrival,
    _f("tenant", pa.string(), doc="unit of fairness (BurstGPT session/model, ServeGen client)"),
    _f("session", pa.string(), doc="conversation/session id"),
    _f("model", pa.string(), doc="model name as given by the source"),
    _f("log_type", pa.string(), doc="source request class, e.g. BurstGPT 'Conversation log'"),
    _f("input_tokens", pa.int64(), "tokens", required=True, count=True),
    _f("output_tokens", pa.int64(), "tokens", required=True, count=True),
    _f("failed", pa.bool_(), doc="request failed (BurstGPT: Response tokens = 0)"),
    _f("latency_s", pa.float64(), "s", doc="end-to-end latency"),
    _f("ttft_s", pa.float64(), "s", doc="time to first token"),
    _f("tpot_s", pa.float64(), "s", doc="time per output token after the first"),
    _f("num_images", pa.int64(), "images", count=True),
    _f("hash_ids", pa.list_(pa.int64()), "block ids",
       doc="ids of the prompt's prefix blocks (Mooncake: 512-token blocks)"),
])

INVOCATIONS = pa.schema([
    _trace,
    _arrival,
    _f("tenant", pa.string(), doc="owner / user id"),
    _f("app", pa.string()),
    _f("function", pa.string()),
    _f("duration_s", pa.float64(), "s", doc="execution time"),
    _f("memory_mb", pa.float64(), "MB"),
    _f("trigger", pa.string()),
    _f("runtime", pa.string()),
    _f("region", pa.string()),
    _f("cluster", pa.string()),
    _f("pod", pa.string()),
])

INVOCATION_COUNTS = pa.schema([
    _trace,
    _f("tenant", pa.string()),
    _f("app", pa.string()),
    _f("function", pa.string(), required=True),
    _f("trigger", pa.string()),
    _f("window_start_s", pa.float64(), "s", required=True),
    _f("window_s", pa.float64(), "s", required=True),
    _f("count", pa.int64(), "invocations", required=True, count=True),
])

_pcts = ("p0", "p1", "p25", "p50", "p75", "p99", "p100")
FUNCTIONS = pa.schema([
    _trace,
    _f("tenant", pa.string()),
    _f("app", pa.string()),
    _f("function", pa.string(), required=True),
    _f("trigger", pa.string()),
    _f("runtime", pa.string()),
    _f("pool", pa.string()),
    _f("cpu_limit_m", pa.float64(), "millicores"),
    _f("memory_limit_mb", pa.float64(), "MB"),
    _f("invocations", pa.int64(), "invocations", count=True),
    _f("duration_mean_s", pa.float64(), "s"),
    *[_f(f"duration_{p}_s", pa.float64(), "s") for p in _pcts],
    _f("memory_mean_mb", pa.float64(), "MB"),
    *[_f(f"memory_{p}_mb", pa.float64(), "MB") for p in ("p1", "p5", "p25", "p50", "p75",
                                                          "p95", "p99", "p100")],
])

COLD_STARTS = pa.schema([
    _trace,
    _arrival,
    _f("region", pa.string()),
    _f("cluster", pa.string()),
    _f("tenant", pa.string()),
    _f("function", pa.string()),
    _f("pod", pa.string()),
    _f("pool", pa.string()),
    _f("cpu_limit_m", pa.float64(), "millicores"),
    _f("memory_limit_mb", pa.float64(), "MB"),
    _f("total_s", pa.float64(), "s"),
    _f("pod_alloc_s", pa.float64(), "s"),
    _f("deploy_code_s", pa.float64(), "s"),
    _f("deploy_dep_s", pa.float64(), "s"),
    _f("scheduling_s", pa.float64(), "s"),
])

CLIENT_WINDOWS = pa.schema([
    _trace,
    _f("client", pa.string(), required=True),
    _f("window_start_s", pa.float64(), "s", required=True),
    _f("window_s", pa.float64(), "s", required=True),
    _f("rate", pa.float64(), "req/s", required=True),
    _f("cv", pa.float64(), "", doc="coefficient of variation of inter-arrival times"),
    _f("iat_family", pa.string(), doc="Gamma, Weibull or null (no fit)"),
    _f("shape", pa.float64()),
    _f("scale", pa.float64(), "s"),
])

LENGTH_PMFS = pa.schema([
    _trace,
    _f("client", pa.string(), required=True),
    _f("window_start_s", pa.float64(), "s", required=True),
    _f("window_s", pa.float64(), "s", required=True),
    _f("field", pa.string(), required=True, doc="input_tokens, output_tokens, ..."),
    _f("value", pa.float64(), required=True),
    _f("prob", pa.float64(), required=True),
])

REJECTS = pa.schema([
    _trace,
    _f("source", pa.string(), required=True, doc="file the row came from"),
    _f("line", pa.int64(), required=True, doc="1-based line in that file"),
    _f("raw", pa.string(), doc="the row as read"),
    _f("reason", pa.string(), required=True),
])

TABLES: dict[str, pa.Schema] = {
    "requests": REQUESTS,
    "invocations": INVOCATIONS,
    "invocation_counts": INVOCATION_COUNTS,
    "functions": FUNCTIONS,
    "cold_starts": COLD_STARTS,
    "client_windows": CLIENT_WINDOWS,
    "length_pmfs": LENGTH_PMFS,
    "rejects": REJECTS,
}


class SchemaError(ValueError):
    """A frame does not fit its canonical table."""


def polars_schema(table: str) -> pl.Schema:
    """The Polars schema of a canonical table."""
    return pl.Schema(pl.from_arrow(TABLES[table].empty_table()).schema)


def empty(table: str) -> pl.DataFrame:
    """A zero-row frame of a canonical table."""
    return pl.DataFrame(schema=polars_schema(table))


def conform(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Select and cast ``frame`` to the table's columns, in order; absent columns become null.

    Raises :class:`SchemaError` when a required column is absent or holds nulls, or when a
    column cannot be cast losslessly.
    """
    schema = polars_schema(table)
    fields = TABLES[table]
    cols = []
    for name, dtype in schema.items():
        if name in frame.columns:
            cols.append(pl.col(name).cast(dtype, strict=True))
        elif not fields.field(name).nullable:
            raise SchemaError(f"{table}: required column {name!r} is missing")
        else:
            cols.append(pl.lit(None, dtype=dtype).alias(name))
    try:
        out = frame.select(cols)
    except pl.exceptions.PolarsError as exc:
        raise SchemaError(f"{table}: {exc}") from exc
    for name in schema.names():
        if not fields.field(name).nullable and out[name].null_count():
            raise SchemaError(f"{table}: required column {name!r} has nulls")
    return out


def to_arrow(table: str, frame: pl.DataFrame) -> pa.Table:
    """The frame as an Arrow table with the canonical fields (units in field metadata).

    Column types are the ones Polars exports (e.g. ``string_view`` for ``string``), so no data
    is copied; Parquet stores both the same way.
    """
    arrow = conform(table, frame).to_arrow()
    fields = [pa.field(f.name, arrow.schema.field(f.name).type, f.nullable, f.metadata)
              for f in TABLES[table]]
    return pa.Table.from_arrays(arrow.columns, schema=pa.schema(fields))


def _reasons(table: str, frame: pl.DataFrame, text: Mapping[str, str]) -> list[pl.Expr]:
    """One expression per check, each null where the row passes and a reason where it fails.

    Checked in order, per column: missing required value, unparsable text, non-finite number,
    negative or non-integer count. ``text[col]`` names the column holding the source text that
    ``col`` was parsed from, so a null can be told apart as missing or unparsable.
    """
    checks: list[pl.Expr] = []
    fields = TABLES[table]
    for field in fields:
        name = field.name
        if name not in frame.columns or name == "trace":
            continue
        col = pl.col(name)
        src = pl.col(text[name]) if name in text else None
        blank = src.is_null() | (src.str.strip_chars() == "") if src is not None else None
        label = f"{name} ({text[name]})" if name in text and text[name] != name else name
        if not field.nullable:
            checks.append(pl.when(col.is_null() & (blank if blank is not None else True))
                          .then(pl.lit(f"missing required field {label}")))
        if src is not None:
            checks.append(pl.when(col.is_null() & ~blank).then(
                pl.format("unparsable {}: '{}'", pl.lit(label), src)))
        dtype = frame.schema[name]
        if dtype.is_float():
            checks.append(pl.when(~col.is_finite()).then(pl.lit(f"non-finite {label}")))
        if field.metadata and field.metadata.get(b"kind") == b"count" and dtype.is_numeric():
            shown = src.str.strip_chars() if src is not None else col
            checks.append(pl.when(col < 0).then(
                pl.format("negative {}: {}", pl.lit(label), shown)))
            if dtype.is_float():
                checks.append(pl.when(col.is_finite() & (col != col.floor())).then(
                    pl.format("non-integer {}: {}", pl.lit(label), shown)))
    return checks


def validate(table: str, frame: pl.DataFrame, *, trace: str,
             text: Mapping[str, str] | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split parsed source rows into valid rows and rejected rows with a reason.

    ``frame`` holds ``source`` (file name), ``line`` (1-based), ``raw`` (the row as read),
    optionally ``reason`` (a structural fault found while reading, such as a wrong number of
    columns), and the table's columns already parsed, null where parsing failed. ``text``
    maps a parsed column to the column of source text it came from.

    Returns ``(valid, rejects)``: ``valid`` keeps every column of ``frame`` except the
    bookkeeping ones, with counts cast to integers; ``rejects`` fits the ``rejects`` table.
    Every input row lands in exactly one of the two.
    """
    text = dict(text or {})
    for col in text.values():
        if col not in frame.columns:
            raise SchemaError(f"validate: text column {col!r} is not in the frame")
    structural = pl.col("reason") if "reason" in frame.columns else pl.lit(None, pl.String)
    checks = [structural, *_reasons(table, frame, text)]
    checked = frame.with_columns(pl.coalesce(checks).cast(pl.String).alias("reason"))
    bad = checked.filter(pl.col("reason").is_not_null())
    rejects = with_raw(bad.select(
        pl.lit(trace).alias("trace"), pl.col("source").cast(pl.String),
        pl.col("line").cast(pl.Int64), pl.col("raw").cast(pl.String), pl.col("reason")))
    good = checked.filter(pl.col("reason").is_null())
    counts = [f.name for f in TABLES[table]
              if f.metadata and f.metadata.get(b"kind") == b"count" and f.name in good.columns]
    good = good.with_columns(pl.col(counts).cast(pl.Int64)).drop(
        [c for c in ("source", "line", "raw", "reason", *text.values()) if c in good.columns
         and c not in TABLES[table].names])
    return good, rejects
