"""The canonical tables: names, types and units, fixed in one place.

Every loader maps its source onto these tables and every row passes :func:`validate`
before it is written. Units live in each Arrow field's metadata (``unit``); a field whose
metadata says ``kind=count`` must hold a non-negative integer. Non-nullable fields are the
ones a row cannot exist without; everything else stays null where a source lacks it.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

import polars as pl
import pyarrow as pa

from servetrace.loaders.source import csv_rows_at, with_raw

# Meanings of the columns that several tables share; a field gives its own ``doc`` otherwise.
_DOCS = {
    "tenant": "unit of fairness: owner / user id (Azure Functions HashOwner, Huawei userID)",
    "app": "application id (Azure Functions HashApp)",
    "function": "function id (Azure Functions HashFunction, Huawei funcID)",
    "trigger": "what invokes the function: http, timer, queue, event, ...",
    "runtime": "language runtime of the function",
    "region": "cloud region",
    "cluster": "cluster within the region",
    "pod": "pod (instance) that served the invocation",
    "pool": "resource pool the pod came from (Huawei 2025, parsed from podID)",
    "cpu_limit_m": "CPU limit of the function's pods",
    "memory_limit_mb": "memory limit of the function's pods",
    "window_start_s": "start of the window, seconds from the trace's own zero",
    "window_s": "length of the window",
    "client": "ServeGen client id (the tenant)",
    "input_tokens": "prompt length",
    "output_tokens": "response length",
    "num_images": "images in the request (Azure multimodal 2025 NumImages)",
    "memory_mb": "memory allocated to the invocation",
    "count": "invocations in the window",
    "invocations": "invocations of the function over the trace",
    "total_s": "cold-start time, total as recorded",
    "pod_alloc_s": "cold-start component: pod allocation",
    "deploy_code_s": "cold-start component: deploying the function's code",
    "deploy_dep_s": "cold-start component: deploying its dependencies",
    "scheduling_s": "cold-start component: scheduling",
    "rate": "request rate of the client in the window",
    "shape": "shape parameter of the fitted inter-arrival distribution",
    "scale": "scale parameter of the fitted inter-arrival distribution",
    "value": "a value of the field (token count)",
    "prob": "probability of that value in the window's PMF",
    "reason": "why the row was rejected",
    "duration_mean_s": "mean execution time",
    "memory_mean_mb": "mean allocated memory",
}


def _f(name: str, type_: pa.DataType, unit: str = "", *, required: bool = False,
       count: bool = False, doc: str = "") -> pa.Field:
    doc = doc or _DOCS.get(name) or _percentile_doc(name)
    if not doc:
        raise AssertionError(f"schema field {name!r} has no doc")
    meta = {"unit": unit, "doc": doc}
    if count:
        meta["kind"] = "count"
    return pa.field(name, type_, nullable=not required, metadata=meta)


def _percentile_doc(name: str) -> str:
    """``duration_p99_s`` -> "percentile 99 of execution time" (Azure Functions 2019)."""
    what, _, rest = name.partition("_p")
    pct = rest.split("_")[0]
    noun = {"duration": "execution time", "memory": "allocated memory"}.get(what)
    return f"percentile {pct} of {noun}" if noun and pct.isdigit() else ""


_trace = _f("trace", pa.string(), required=True, doc="trace id, e.g. azure_llm_2023/code")
_arrival = _f("arrival_s", pa.float64(), "s", required=True,
              doc="seconds from the trace's own zero (traces.origin), ascending")

BATCH_ABSENT = ("arrival_s", "output_tokens")
"""``requests`` columns that every online trace has but a batch (offline) trace may lack:
a batch job is submitted whole, so it has no arrival times (ServeGen offline, Yang et al.,
SOSP'26), and some batch releases give no output lengths. They are nullable in the Arrow
schema; :func:`validate` requires them unless the loader names them in ``absent``, and the
store accepts null arrivals only in a trace flagged ``traces.batch``."""

REQUESTS = pa.schema([
    _trace,
    _f("request_id", pa.string(), doc="source request id where the source has one"),
    _f("arrival_s", pa.float64(), "s",
       doc="seconds from the trace's own zero (traces.origin), ascending; null in a batch "
           "(offline) trace, which has no arrival times (traces.batch)"),
    _f("tenant", pa.string(), doc="unit of fairness (BurstGPT session/model, ServeGen client)"),
    _f("session", pa.string(), doc="conversation/session id"),
    _f("model", pa.string(), doc="model name as given by the source"),
    _f("log_type", pa.string(), doc="source request class, e.g. BurstGPT 'Conversation log'"),
    _f("input_tokens", pa.int64(), "tokens", required=True, count=True),
    _f("output_tokens", pa.int64(), "tokens", count=True,
       doc="response length; null only in a batch trace whose source gives none"),
    _f("failed", pa.bool_(), doc="request failed (BurstGPT: Response tokens = 0)"),
    _f("latency_s", pa.float64(), "s", doc="end-to-end latency"),
    _f("ttft_s", pa.float64(), "s", doc="time to first token"),
    _f("tpot_s", pa.float64(), "s", doc="time per output token after the first"),
    _f("num_images", pa.int64(), "images", count=True),
    _f("hash_ids", pa.list_(pa.int64()), "block ids",
       doc="ids of the prompt's prefix blocks (block size and id scope: traces."
           "hash_block_tokens, traces.hash_scope; Mooncake: 512-token blocks, global)"),
    _f("parent_request_id", pa.string(),
       doc="request_id of the request this one follows in the turn DAG; null for a root"),
    _f("turn", pa.int64(), "turns", doc="1-based turn index within its session"),
    _f("subagent", pa.string(), doc="sub-agent id; null for the main agent"),
    _f("agent_depth", pa.int64(), "levels",
       doc="0 for the main agent, 1 for its sub-agents, 2 for theirs, ..."),
    _f("request_type", pa.string(),
       doc="kind of request as the source names it: text, search, image, file, tool_result, "
           "thinking, ..."),
    _f("cached_tokens", pa.int64(), "tokens", count=True,
       doc="input tokens the source reports as served from cache"),
    _f("reasoning_tokens", pa.int64(), "tokens", count=True,
       doc="output tokens spent on reasoning (thinking), as the source reports them"),
    _f("think_s", pa.float64(), "s", doc="client think time before the request"),
    _f("server_s", pa.float64(), "s", doc="server (API) time of the request"),
    _f("tool_s", pa.float64(), "s", doc="tool time before the request, where the source gives it"),
    _f("request_class", pa.string(),
       doc="workload class the request belongs to in a mix: online, offline, or a label of "
           "the mix's own (servetrace.synth.mix)"),
    _f("offline", pa.bool_(),
       doc="throughput-oriented request with no deadline: replay sends it from a backlog "
           "once its arrival_s has passed, whenever a concurrency slot is free"),
    _f("priority", pa.int64(), "levels", doc="scheduling priority, 0 the most urgent"),
    _f("slo_ttft_s", pa.float64(), "s", doc="time-to-first-token target of the request's class"),
    _f("slo_tpot_s", pa.float64(), "s",
       doc="time-per-output-token target of the request's class"),
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
    _f("request_id", pa.string(), doc="source request id (Huawei 2025 requestID)"),
    _f("total_exec_s", pa.float64(), "s",
       doc="total execution time as the platform records it, beside the app's own "
           "duration_s (IBM Code Engine TotalExecTimes)"),
    _f("frontend_arrival_s", pa.float64(), "s",
       doc="arrival at the frontend, same zero as arrival_s (Huawei 2025 time_frontend)"),
    _f("worker_s", pa.float64(), "s", doc="time spent in the worker (Huawei workerCost)"),
    _f("runtime_s", pa.float64(), "s", doc="time spent in the runtime (Huawei runtimeCost)"),
    _f("frontend_total_s", pa.float64(), "s",
       doc="end-to-end time measured by the frontend (Huawei totalCost_frontend)"),
    _f("frontend_s", pa.float64(), "s", doc="frontend monitoring and forwarding (frontendCost)"),
    _f("bus_s", pa.float64(), "s", doc="time in the busProxy component (Huawei busCost)"),
    _f("read_body_s", pa.float64(), "s", doc="reading the request body (readBodyCost)"),
    _f("write_rsp_s", pa.float64(), "s", doc="writing the response (writeRspCost)"),
    _f("cpu_usage", pa.float64(), "cores",
       doc="pod CPU usage averaged over the request's execution (Huawei cpu_usage)"),
    _f("memory_usage_mb", pa.float64(), "MB",
       doc="pod memory usage averaged over the request's execution (Huawei memory_usage)"),
    _f("request_body_bytes", pa.int64(), "bytes", count=True,
       doc="size of the request body (Huawei requestBodySize)"),
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
    _f("cpu_request_m", pa.float64(), "millicores",
       doc="CPU initially requested, below the limit (Huawei 2025 cpu_request)"),
    _f("invocation_type", pa.string(), doc="sync, async or null (Huawei 2025 S/A)"),
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
    _f("request_id", pa.string(), doc="request that triggered the cold start"),
    _f("residual_s", pa.float64(), "s",
       doc="total_s minus the sum of pod_alloc_s, deploy_code_s, deploy_dep_s, scheduling_s"),
    _f("residual_flag", pa.bool_(),
       doc="|residual_s| exceeds the loader's tolerance: the parts do not add up to total_s"),
])

FUNCTION_METRICS = pa.schema([
    _trace,
    _f("tenant", pa.string()),
    _f("function", pa.string(), required=True),
    _f("window_start_s", pa.float64(), "s", required=True),
    _f("window_s", pa.float64(), "s", required=True),
    _f("metric", pa.string(), required=True,
       doc="source metric name, e.g. Huawei 2023 cpu_usage, Huawei 2025 num_cold_starts"),
    _f("value", pa.float64(), required=True, doc="in the unit named by the unit column"),
    _f("unit", pa.string(), doc="unit of value as the source documents it; null if it does not"),
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
    "function_metrics": FUNCTION_METRICS,
    "rejects": REJECTS,
}


TRACES = pa.schema([
    _f("trace", pa.string(), required=True, doc="trace id, e.g. azure_llm_2023/code (key)"),
    _f("dataset", pa.string(), doc="registered dataset name, or the format of a local file"),
    _f("part", pa.string(), doc="part of the dataset, e.g. code or conv"),
    _f("format", pa.string(), doc="source format the loader read"),
    _f("source_urls", pa.list_(pa.string()), doc="official download addresses"),
    _f("source_files", pa.list_(pa.string()), doc="file names read"),
    _f("sha256", pa.list_(pa.string()), doc="SHA-256 of each source file, in that order"),
    _f("origin", pa.timestamp("us", tz="UTC"),
       doc="absolute time of arrival_s = 0 (UTC); null when the source does not give it"),
    _f("start_s", pa.float64(), "s", doc="first arrival_s"),
    _f("end_s", pa.float64(), "s", doc="last arrival_s"),
    _f("rows_read", pa.int64(), "rows", doc="source rows read (rows_accepted + rejected)"),
    _f("rows_accepted", pa.int64(), "rows", doc="source rows that passed validation"),
    _f("rows", pa.int64(), "rows", doc="rows stored over all tables (cells for wide sources)"),
    _f("rejected", pa.int64(), "rows", doc="source rows sent to rejects"),
    _f("tables", pa.string(), doc="JSON: rows stored per canonical table"),
    _f("files", pa.string(),
       doc="JSON: per table, the rows of each of its Parquet files (file suffix: rows) when "
           "a streamed ingest wrote several; null when each table is one file"),
    _f("loader_version", pa.string(), doc="loader module and servetrace version"),
    _f("license", pa.string(), doc="license of the source data"),
    _f("citation", pa.string(), doc="paper to cite wherever results built on it are shown"),
    _f("notes", pa.string(), doc="JSON: checks counted but not rejected, loader remarks"),
    _f("hash_block_tokens", pa.int64(), "tokens",
       doc="tokens per hash block of requests.hash_ids; null when the trace has none"),
    _f("hash_scope", pa.string(),
       doc="scope of hash ids: 'global' (one namespace for the trace) or 'session' (ids "
           "local to a session); null when the trace has none"),
    _f("batch", pa.bool_(),
       doc="true for a batch (offline) trace: requests submitted as one job, arrival_s null; "
           "arrival analyses skip it"),
    _f("ingest_id", pa.string(), doc="id of the committed ingest (its Parquet file names)"),
    _f("ingested_at", pa.timestamp("us", tz="UTC"), doc="when the ingest was committed (UTC)"),
])
"""The store's ``traces`` metadata table (one row per ingested trace)."""


class SchemaError(ValueError):
    """A frame does not fit its canonical table."""


def comment(field: pa.Field) -> str:
    """The field's meaning and unit as one line, the comment its SQL column carries."""
    meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
    unit = f" [{meta['unit']}]" if meta.get("unit") else ""
    return f"{meta['doc']}{unit}"


def polars_schema(table: str) -> pl.Schema:
    """The Polars schema of a canonical table (a copy: the caller may change it)."""
    return pl.Schema(_polars_schema(table))


@functools.cache
def _polars_schema(table: str) -> pl.Schema:
    # Converting the Arrow schema costs tens of ms: once per table, not once per file written.
    return pl.Schema(pl.from_arrow(TABLES[table].empty_table()).schema)


def empty(table: str) -> pl.DataFrame:
    """A zero-row frame of a canonical table."""
    return pl.DataFrame(schema=polars_schema(table))


def conform(table: str, frame: pl.DataFrame, *, categorical: bool = False) -> pl.DataFrame:
    """Select and cast ``frame`` to the table's columns, in order; absent columns become null.

    With ``categorical`` a Categorical or Enum column stays so where the table has a string
    (same values, no strings built); :func:`write_parquet` stores it as a string column.
    Raises :class:`SchemaError` when a required column is absent or holds nulls, or when a
    column cannot be cast losslessly.
    """
    schema = polars_schema(table)
    fields = TABLES[table]
    cols = []
    for name, dtype in schema.items():
        if name in frame.columns:
            have = frame.schema[name]
            if categorical and dtype == pl.String and isinstance(have, pl.Categorical | pl.Enum):
                cols.append(pl.col(name))
            else:
                cols.append(pl.col(name).cast(dtype, strict=True))
        elif not fields.field(name).nullable:
            raise SchemaError(f"{table}: required column {name!r} is missing")
        else:
            cols.append(pl.lit(None, dtype=dtype).alias(name))
    try:
        out = frame.select(cols)
    except pl.exceptions.PolarsError as exc:
        raise SchemaError(f"{table}: {exc}") from exc
    required = [n for n in schema.names() if not fields.field(n).nullable]
    if required and out.height:
        nulls = out.select(pl.col(required).null_count()).row(0, named=True)
        for name in required:
            if nulls[name]:
                raise SchemaError(f"{table}: required column {name!r} has nulls")
    return out


def write_parquet(table: str, frame: pl.DataFrame, path: str | Path) -> None:
    """Write the frame as a Parquet file of the table (zstd), read back with canonical types.

    Polars writes the columns (in parallel; a Categorical column goes out as the dictionary
    it already is, so strings are neither built nor hashed), required fields as required
    Parquet columns. The file's Arrow schema is the canonical one, units and all, so Arrow,
    Polars and DuckDB readers see ``string`` columns with the field metadata, whatever the
    in-memory types were.
    """
    out = conform(table, frame, categorical=True)
    exported = out.head(0).to_arrow().schema  # the types Polars writes, for its writer
    fields = [pa.field(f.name, exported.field(f.name).type, f.nullable,
                       {**(exported.field(f.name).metadata or {}), **f.metadata})
              for f in TABLES[table]]
    out.write_parquet(path, compression="zstd", arrow_schema=pa.schema(fields),
                      metadata={"ARROW:schema": _arrow_schema(table)})


@functools.cache
def _arrow_schema(table: str) -> str:
    """The table's Arrow schema as Parquet files carry it (``ARROW:schema``: IPC, base64)."""
    return base64.b64encode(TABLES[table].serialize().to_pybytes()).decode()


def _reasons(table: str, frame: pl.DataFrame, text: Mapping[str, str],
             absent: Collection[str] = ()) -> list[tuple[pl.Expr, pl.Expr]]:
    """One ``(fails, reason)`` pair per check: where ``fails`` is true, ``reason`` says why.

    Checked in order, per column: missing required value, unparsable text, non-finite number,
    negative, non-integer or out-of-range (2^63 or more) count. ``text[col]`` names the
    column holding the source text that ``col`` was parsed from, so a null can be told apart
    as missing or unparsable, and an integer count is stored from its text exactly. (A text
    column already read as a number stands for its text only where it is null; rows that
    fail a check quoting it must be validated again from their text.)
    """
    checks: list[tuple[pl.Expr, pl.Expr]] = []
    fields = TABLES[table]
    required = {f.name for f in fields if not f.nullable}
    if table == "requests":
        required |= set(BATCH_ABSENT) - set(absent)
    for field in fields:
        name = field.name
        if name not in frame.columns or name == "trace":
            continue
        col = pl.col(name)
        src = pl.col(text[name]) if name in text else None
        is_text = src is not None and frame.schema[text[name]] == pl.String
        if src is None:
            blank = None
        elif is_text:
            blank = src.is_null() | (src.str.strip_chars() == "")
        else:
            blank = src.is_null()
        label = f"{name} ({text[name]})" if name in text and text[name] != name else name
        if name in required:
            checks.append((col.is_null() & (blank if blank is not None else True),
                           pl.lit(f"missing required field {label}")))
        if src is not None:
            checks.append((col.is_null() & ~blank,
                           pl.format("unparsable {}: '{}'", pl.lit(label), src)))
        dtype = frame.schema[name]
        if dtype.is_float():
            checks.append((~col.is_finite(), pl.lit(f"non-finite {label}")))
        if field.metadata and field.metadata.get(b"kind") == b"count" and dtype.is_numeric():
            shown = src.str.strip_chars() if is_text else src if src is not None else col
            checks.append((col < 0, pl.format("negative {}: {}", pl.lit(label), shown)))
            if dtype.is_float():
                checks.append((col.is_finite() & (col != col.floor()),
                               pl.format("non-integer {}: {}", pl.lit(label), shown)))
                # Int64 holds less than 2^63; text read exactly (see _exact) is kept up to it.
                big = col.is_finite() & (col >= _INT64_LIMIT)
                if is_text:
                    big = big & _exact(src).is_null()
                checks.append((big, pl.format("{} out of range (2^63 or more): {}",
                                              pl.lit(label), shown)))
    return checks


_INT64_LIMIT = float(2**63)


def _exact(text: pl.Expr) -> pl.Expr:
    """Integer source text read as Int64 exactly (no float64 in between); null otherwise."""
    return text.str.strip_chars().str.strip_chars('"').cast(pl.Int64, strict=False)


def validate_csv(table: str, path: str | Path, columns: list[str], rows: pl.DataFrame,
                 parse: Callable[[pl.DataFrame], pl.DataFrame], *, trace: str,
                 text: Mapping[str, str], checks: Sequence[tuple[pl.Expr, pl.Expr]] = (),
                 categorical: Collection[str] = ()) -> tuple[pl.DataFrame, pl.DataFrame]:
    """:func:`validate` of ``parse(rows)``, for ``rows`` read by
    :func:`~loaders.source.csv_rows`, whose fast path reads numeric columns as numbers.

    Then a rejected row has no source text, so its reason, which quotes that text, is built
    again from the rejected lines alone read as text (:func:`~loaders.source.csv_rows_at`).
    """
    typed = any(rows.schema[c] != pl.String for c in columns if c not in categorical)
    valid, rejects = validate(table, parse(rows), trace=trace, text=text, checks=checks,
                              fill_raw=not typed)
    if typed and rejects.height:
        again = csv_rows_at(path, columns, rejects["line"], categorical=categorical)
        _, rejects = validate(table, parse(again), trace=trace, text=text, checks=checks)
    return valid, rejects


def validate(table: str, frame: pl.DataFrame, *, trace: str,
             text: Mapping[str, str] | None = None,
             checks: Sequence[tuple[pl.Expr, pl.Expr]] = (),
             fill_raw: bool = True,
             absent: Collection[str] = ()) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split parsed source rows into valid rows and rejected rows with a reason.

    ``frame`` holds ``source`` (file name), ``line`` (1-based), ``raw`` (the row as read),
    optionally ``reason`` (a structural fault found while reading, such as a wrong number of
    columns), and the table's columns already parsed, null where parsing failed. ``text``
    maps a parsed column to the column of source text it came from. ``checks`` are the
    loader's own ``(fails, reason)`` pairs, tried after ``reason`` and before the table's.
    A row's reason is the first that applies. ``absent`` names :data:`BATCH_ABSENT` columns
    the source does not have (a batch trace): they may be null; every other one is required
    as in an online trace. With ``fill_raw`` (the default) a rejected
    row's missing ``raw`` is read back from its file (:func:`~loaders.source.with_raw`).

    Returns ``(valid, rejects)``: ``valid`` keeps every column of ``frame`` except the
    bookkeeping ones, with counts cast to integers; ``rejects`` fits the ``rejects`` table.
    Every input row lands in exactly one of the two.

    Whether a row fails is decided first, over all rows, from the conditions alone; the
    reasons (formatted text) are built only for the rows that fail.
    """
    text = dict(text or {})
    for col in text.values():
        if col not in frame.columns:
            raise SchemaError(f"validate: text column {col!r} is not in the frame")
    structural = ([(pl.col("reason").is_not_null(), pl.col("reason"))]
                  if "reason" in frame.columns else [])
    unknown = set(absent) - set(BATCH_ABSENT)
    if unknown:
        raise SchemaError(f"validate: only {', '.join(BATCH_ABSENT)} may be absent, not "
                          f"{', '.join(sorted(unknown))}")
    pairs = [*structural, *checks, *_reasons(table, frame, text, absent)]
    reason = (pl.coalesce([pl.when(fails).then(why) for fails, why in pairs]).cast(pl.String)
              if pairs else pl.lit(None, pl.String))
    fails = pl.any_horizontal([f.fill_null(False) for f, _ in pairs]) if pairs else pl.lit(False)
    mask = frame.select(fails.alias("_fails")).to_series()
    if mask.any():
        bad = frame.filter(mask).with_columns(reason.alias("reason"))
        if bad["reason"].null_count():  # a check that fails without a reason: decide as text
            checked = frame.with_columns(reason.alias("reason"))
            mask = checked["reason"].is_not_null()
            bad = checked.filter(mask)
        good = frame.filter(~mask)
    else:
        bad = frame.clear().with_columns(pl.lit(None, pl.String).alias("reason"))
        good = frame
    rejects = bad.select(
        pl.lit(trace).alias("trace"), pl.col("source").cast(pl.String),
        pl.col("line").cast(pl.Int64), pl.col("raw").cast(pl.String), pl.col("reason"))
    if fill_raw:
        rejects = with_raw(rejects)
    counts = [f.name for f in TABLES[table]
              if f.metadata and f.metadata.get(b"kind") == b"count" and f.name in good.columns]
    # A count whose source text is an integer is read from that text, exactly: float64 holds
    # integers exactly only below 2^53.
    exact = {c: text[c] for c in counts
             if c in text and good.schema[text[c]] == pl.String and good.schema[c].is_float()}
    good = good.with_columns(
        # (the float is cast only where the text is not an exact integer: below 2^63, since
        # rows at or above it were rejected)
        *(pl.coalesce(_exact(pl.col(t)), pl.col(c).cast(pl.Int64, strict=False)).alias(c)
          for c, t in exact.items()),
        pl.col([c for c in counts if c not in exact]).cast(pl.Int64)).drop(
        [c for c in ("source", "line", "raw", "reason", *text.values()) if c in good.columns
         and c not in TABLES[table].names])
    return good, rejects
