"""Huawei Public cloud trace 2025 (EuroSys'25): cold starts, requests, functions, time series.

Joosen et al., "Serverless Cold Starts and Where to Find Them", EuroSys 2025, arXiv 2410.06145
(data and schema: sir-lab/data-release, ``README_data_release_2025.md``). Five regions R1..R5,
31 days (day 0..30). All times are seconds from the start of day 0 and do **not** reset daily
(day 30 starts at 2,592,000 s); they are kept as they are (``arrival_s = time``, origin null).

A function is ``funcName---userID---poolName`` as the dataset writes it (its ``funcID``), where
the pool ``poolNN-<cpu limit millicores>-<memory limit MB>`` is the prefix of the ``podID``
(``pool22-300-128-0001562370``); ``tenant`` is the userID. Each file's kind is told by its
header:

- cold starts ``day,time,clusterName,funcName,userID,requestID,totalCost_cold_start,
  podAllocationCost,deployCodeCost,deployDependencyCost,schedulingCost,podID[,region]`` →
  ``cold_starts``. ``region`` comes from the column where there is one, else from the file or
  folder name (``R1``..``R5``, e.g. ``huawei_2025_cold_starts_R2.csv``, ``R2/…``), else null.
  ``residual_s = totalCost_cold_start - (podAllocationCost + deployCodeCost +
  deployDependencyCost + schedulingCost)``; ``residual_flag`` is set where ``|residual_s|``
  exceeds :data:`RESIDUAL_TOLERANCE_S`. The files print the costs with 6 (and 3) decimals, so
  rounding alone leaves at most ~1.5 µs; the real rows add up exactly. Flagged rows are kept
  and counted in ``notes["residual_flagged"]``.
- requests ``time_worker,time_frontend,requestID,...,requestBodySize`` → ``invocations``:
  ``arrival_s = time_worker``, ``frontend_arrival_s = time_frontend``, ``duration_s =
  totalCost_worker`` (the README calls it the function execution time), the worker and
  frontend cost breakdown, ``cpu_usage`` (cores) and ``memory_usage_mb`` (pod averages over the
  request), ``request_body_bytes``. The frontend fields are empty (or ``NaN``) where the
  frontend log is missing: they stay null.
- runtime/trigger ``funcID,cpu_request,runtime,triggerType-invocationType`` → ``functions``:
  the last ``-`` splits trigger from invocation type, ``S`` → ``sync``, ``A`` → ``async``;
  ``unknown`` (on either side) → null. ``cpu_request`` is in millicores.
- per-minute time series ``day,time,<funcID>...`` (wide, an empty cell meaning nothing that
  minute): the metric is the ``metric`` argument, else read from the file name
  (``huawei_2025_timeseries_<metric>_minute...``, ``<metric>.csv``) or its parent folder.
  ``requests`` go to ``invocation_counts`` (60 s windows, ``window_start_s = time``; the
  specimen shows ``time`` already includes the day, so it is not ``day*86400 + time``);
  every other metric, ``num_cold_starts`` among them, goes to ``function_metrics`` with the
  metric's name, so cold-start counts sit beside the request counts under the same function
  and window keys without mixing two kinds of count in one column.
- the per-datacentre series published for forecasting research, ``date,<funcID>...`` with
  ``date`` like ``2016-07-01 00:05:00`` (5-minute steps there): ``window_start_s`` counts
  from midnight of the first file's first date (``origin``) and ``window_s`` is the step
  taken from the data. A ``day,time`` file is declared per minute: one whose rows are
  another step apart (e.g. that series converted to ``day,time``) is an error, as is any
  file whose gaps are not multiples of its step (``window_s`` in the notes).

Row accounting: one line is one source row (for the wide files too: a line is accepted or
rejected whole). Rejected: wrong number of columns, an unparsable or negative number, a
``time`` not on its ``day``, a ``podID``/``funcID`` without a pool, an unknown invocation type,
a repeated funcID.

Downloads: the official files are zips on Huawei OBS (an earlier README linked Google Drive);
only the runtime/trigger table is a plain CSV and is registered for download. Every other part
says in its description where its zip is: extract it and ingest the CSVs by path.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import polars as pl

from servetrace.loaders.dataset import Dataset, Loaded, Part, RemoteFile
from servetrace.loaders.huawei_2023 import Wide, read_wide, wide_header
from servetrace.loaders.schema import TABLES, empty, validate
from servetrace.loaders.source import (
    FormatError,
    csv_files,
    csv_rows,
    first_csv,
    header_fields,
    parse_number,
    sort_by,
)

VERSION = "1"
RESIDUAL_TOLERANCE_S = 1e-5
WINDOW_S = 60.0
DAY_S = 86400.0

COLD = ["day", "time", "clusterName", "funcName", "userID", "requestID", "totalCost_cold_start",
        "podAllocationCost", "deployCodeCost", "deployDependencyCost", "schedulingCost", "podID"]
REQUESTS = ["time_worker", "time_frontend", "requestID", "clusterName", "funcName", "podID",
            "userID", "totalCost_worker", "workerCost", "runtimeCost", "totalCost_frontend",
            "frontendCost", "busCost", "readBodyCost", "writeRspCost", "cpu_usage",
            "memory_usage", "requestBodySize"]
RUNTIME = ["funcID", "cpu_request", "runtime", "triggerType-invocationType"]
FRONTEND = ["time_frontend", "totalCost_frontend", "frontendCost", "busCost", "readBodyCost",
            "writeRspCost", "requestBodySize"]
INVOCATION_TYPES = {"S": "sync", "A": "async", "unknown": None}
# Units of the time-series metrics (README_data_release_2025.md); a metric may carry a
# statistic suffix (avg, std, quantiles), which keeps the unit.
UNITS = {"requests": "invocations", "num_cold_starts": "cold starts", "num_pods": "pods",
         "cpu_usage": "cores", "memory_usage": "MB", "requestBodySize": "bytes",
         **{c: "s" for c in ("busCost", "deployCodeCost", "deployDependencyCost",
                             "frontendCost", "podAllocationCost", "readBodyCost",
                             "runtimeCost", "schedulingCost", "totalCost",
                             "totalCost_cold_start", "totalCost_frontend", "workerCost",
                             "writeRspCost")}}
COUNT_METRICS = ("requests", "num_cold_starts", "num_pods")

_POOL = r"pool\d+-(\d+)-(\d+)"
_POD = re.compile(rf"^({_POOL})-\w+$")
_FUNC_ID = re.compile(rf"^(.+?)---(.+?)---({_POOL})$")
_REGION = re.compile(r"(?<![A-Za-z0-9])(R[1-5])(?![0-9])")
_TS_NAME = re.compile(r"timeseries_(.+?)(?:_(?:minute|partial))*$")

_OBS = "https://sir-dataset.obs.cn-east-3.myhuaweicloud.com/datasets/cold_start_dataset/"
_HOWTO = ("zipped on Huawei OBS, not fetched automatically: download {urls}, extract, and "
          "ingest the CSV files by path")
_REQUEST_ZIPS = {
    "R1": [f"R1/R1_{i:05d}_{i + 9:05d}.zip" for i in range(0, 200, 10)],
    "R2": [f"R2/R2_{i:05d}_{i + 19:05d}.zip" for i in range(0, 200, 20)],
    "R4": ["R4/R4_00000_00099.zip", "R4/R4_00100_00199.zip"],
    "R5": ["R5/R5.zip"],
}


def _zips(*names: str) -> str:
    return ", ".join(_OBS + n for n in names)


DATASET = Dataset(
    name="huawei_2025",
    title="Huawei Public cloud serverless trace 2025 (cold starts)",
    citation=("Artjom Joosen et al. Serverless Cold Starts and Where to Find Them. EuroSys 2025 "
              "(arXiv 2410.06145)."),
    license="CC-BY-4.0",
    homepage="https://github.com/sir-lab/data-release/blob/main/README_data_release_2025.md",
    parts=(
        *(Part(f"cold_starts/{r}", (), f"{r} cold-start events, 31 days; "
               + _HOWTO.format(urls=_zips(f"cold_start/{r}.zip")))
          for r in ("R1", "R2", "R3", "R4", "R5")),
        *(Part(f"requests/{r}", (), f"{r} per-request logs of day 30; "
               + _HOWTO.format(urls=_zips(*(f"per_request/{z}" for z in zs))))
          for r, zs in _REQUEST_ZIPS.items()),
        Part("runtime_trigger/R2", (RemoteFile(
            _OBS + "runtime_triggerType/df_funcID_runtime_triggerType.csv",
            "df_funcID_runtime_triggerType.csv"),),
            "runtime language, trigger and invocation type, CPU request per function (R2)"),
        *(Part(f"timeseries/{r}", (), f"{r} per-minute time series per function; "
               + _HOWTO.format(urls=_zips(f"quantiles/{r}.zip")))
          for r in ("R1", "R2", "R3", "R4", "R5")),
    ),
    tables=("cold_starts", "invocations", "functions", "invocation_counts", "function_metrics"),
)


def _kind(path: Path) -> str | None:
    header = header_fields(path)
    if header in (COLD, [*COLD, "region"]):
        return "cold_starts"
    if header == REQUESTS:
        return "requests"
    if header == RUNTIME:
        return "runtime_trigger"
    try:
        wide_header(path, _FUNC_ID, "funcName---userID---poolName", dated=True)
    except FormatError:
        return None
    return "timeseries"


def detect(path: Path) -> bool:
    """One of the four file kinds (by header), or a folder whose first CSV is one."""
    path = Path(path)
    if path.is_dir():
        first = first_csv(path)
        return first is not None and detect(first)
    try:
        return _kind(path) is not None
    except (OSError, ValueError):
        return False


def _region(path: Path) -> str | None:
    for name in (path.name, *(p.name for p in path.parents)):
        m = _REGION.search(name)
        if m:
            return m.group(1)
    return None


def _nan_to_null(columns: list[str]) -> list[pl.Expr]:
    """``NaN`` text (pandas' spelling of a missing value) as an empty field."""
    return [pl.when(pl.col(c).str.to_lowercase() == "nan").then(None).otherwise(pl.col(c))
            .alias(c) for c in columns]


def _negative(pairs: dict[str, str]) -> list[pl.Expr]:
    return [pl.when(pl.col(c) < 0).then(pl.format("negative {}: {}", pl.lit(src), pl.col(src)))
            for c, src in pairs.items()]


def _missing(columns: list[str]) -> list[pl.Expr]:
    return [pl.when(pl.col(c).is_null()).then(pl.lit(f"missing {c}")) for c in columns]


def _function(pool: str) -> pl.Expr:
    """The dataset's own function id, ``funcName---userID---poolName``."""
    return pl.concat_str("funcName", pl.lit("---"), "userID", pl.lit("---"), pool
                         ).alias("function")


def _bad_pod(pool: str) -> pl.Expr:
    """A reason where no pool could be parsed from ``podID``."""
    return pl.when(pl.col(pool).is_null()).then(pl.format(
        "podID '{}' does not start with a pool (poolNN-<cpu>-<memory>-<id>)", pl.col("podID")))


def _cold_starts(path: Path, trace: str) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    header = header_fields(path)
    rows = csv_rows(path, header)
    if "region" not in header:
        rows = rows.with_columns(pl.lit(_region(path), pl.String).alias("region"))
    costs = {"total_s": "totalCost_cold_start", "pod_alloc_s": "podAllocationCost",
             "deploy_code_s": "deployCodeCost", "deploy_dep_s": "deployDependencyCost",
             "scheduling_s": "schedulingCost"}
    pod = pl.col("podID").str.extract_groups(_POD.pattern)
    parsed = rows.with_columns(
        parse_number(pl.col("day")).alias("_day"),
        parse_number(pl.col("time")).alias("arrival_s"),
        *(parse_number(pl.col(src)).alias(c) for c, src in costs.items()),
        pod.struct.field("1").alias("pool"),
        parse_number(pod.struct.field("2")).alias("cpu_limit_m"),
        parse_number(pod.struct.field("3")).alias("memory_limit_mb"),
        pl.col("podID").alias("pod"), pl.col("clusterName").alias("cluster"),
        pl.col("userID").alias("tenant"), pl.col("requestID").alias("request_id"),
    ).with_columns(_function("pool"))
    parsed = parsed.with_columns(pl.coalesce(
        pl.col("reason"),
        *_missing(["funcName", "userID", "podID"]),
        _bad_pod("pool"),
        pl.when(pl.col("day").is_null()).then(pl.lit("missing day")),
        pl.when(pl.col("_day").is_null()).then(pl.format("unparsable day: '{}'", pl.col("day"))),
        pl.when((pl.col("arrival_s") / DAY_S).floor() != pl.col("_day")).then(pl.format(
            "time {} s is not on day {} (time counts seconds from the start of day 0)",
            pl.col("time"), pl.col("day"))),
        *_negative({"arrival_s": "time", **costs}),
    ).alias("reason"))
    valid, rejects = validate("cold_starts", parsed, trace=trace,
                              text={"arrival_s": "time", **costs})
    parts = pl.sum_horizontal(["pod_alloc_s", "deploy_code_s", "deploy_dep_s", "scheduling_s"])
    parts = pl.when(pl.all_horizontal(pl.col(c).is_not_null() for c in (
        "pod_alloc_s", "deploy_code_s", "deploy_dep_s", "scheduling_s"))).then(parts)
    valid = valid.with_columns((pl.col("total_s") - parts).alias("residual_s")).with_columns(
        (pl.col("residual_s").abs() > RESIDUAL_TOLERANCE_S).alias("residual_flag"))
    return valid, rejects, rows.height


def _requests(path: Path, trace: str) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    rows = csv_rows(path, REQUESTS).with_columns(_nan_to_null(FRONTEND))
    nums = {"arrival_s": "time_worker", "frontend_arrival_s": "time_frontend",
            "duration_s": "totalCost_worker", "worker_s": "workerCost",
            "runtime_s": "runtimeCost", "frontend_total_s": "totalCost_frontend",
            "frontend_s": "frontendCost", "bus_s": "busCost", "read_body_s": "readBodyCost",
            "write_rsp_s": "writeRspCost", "cpu_usage": "cpu_usage",
            "memory_usage_mb": "memory_usage", "request_body_bytes": "requestBodySize"}
    pod = pl.col("podID").str.extract_groups(_POD.pattern)
    parsed = rows.with_columns(
        *(parse_number(pl.col(src)).alias(c) for c, src in nums.items() if c != src),
        parse_number(pl.col("cpu_usage")).alias("_cpu"),
        pod.struct.field("1").alias("_pool"),
        pl.col("podID").alias("pod"), pl.col("clusterName").alias("cluster"),
        pl.col("userID").alias("tenant"), pl.col("requestID").alias("request_id"),
        pl.lit(_region(path), pl.String).alias("region"),
    ).with_columns(_function("_pool"))
    parsed = parsed.with_columns(pl.coalesce(
        pl.col("reason"),
        *_missing(["funcName", "userID", "podID"]),
        _bad_pod("_pool"),
        *_negative({c: s for c, s in nums.items() if c not in ("cpu_usage",
                                                                "request_body_bytes")}),
        # the source column has the canonical name: checked here, not by validate
        pl.when(pl.col("_cpu").is_null() & pl.col("cpu_usage").is_not_null()).then(
            pl.format("unparsable cpu_usage: '{}'", pl.col("cpu_usage"))),
        pl.when(pl.col("_cpu") < 0).then(pl.format("negative cpu_usage: {}", pl.col("cpu_usage"))),
    ).alias("reason")).drop("cpu_usage").rename({"_cpu": "cpu_usage"})
    text = {c: s for c, s in nums.items() if c != "cpu_usage"}
    valid, rejects = validate("invocations", parsed, trace=trace, text=text)
    return valid, rejects, rows.height


def _runtime_trigger(path: Path, trace: str) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    rows = csv_rows(path, RUNTIME)
    fid = pl.col("funcID").str.extract_groups(_FUNC_ID.pattern)
    tt = pl.col("triggerType-invocationType").str.extract_groups(r"^(.*)-([^-]*)$")
    parsed = rows.with_columns(
        pl.col("funcID").alias("function"),
        fid.struct.field("2").alias("tenant"),
        fid.struct.field("3").alias("pool"),
        parse_number(fid.struct.field("4")).alias("cpu_limit_m"),
        parse_number(fid.struct.field("5")).alias("memory_limit_mb"),
        parse_number(pl.col("cpu_request")).alias("cpu_request_m"),
        tt.struct.field("1").alias("_trigger"),
        tt.struct.field("2").alias("_inv"),
    ).with_columns(
        pl.when(pl.col("_trigger") != "unknown").then(pl.col("_trigger")).alias("trigger"),
        pl.col("_inv").replace_strict(INVOCATION_TYPES, default=None, return_dtype=pl.String)
        .alias("invocation_type"),
    )
    parsed = parsed.with_columns(pl.coalesce(
        pl.col("reason"),
        pl.when(pl.col("funcID").is_null()).then(pl.lit("missing funcID")),
        pl.when(pl.col("pool").is_null()).then(pl.format(
            "funcID '{}' is not funcName---userID---poolNN-<cpu>-<memory>", pl.col("funcID"))),
        pl.when(pl.col("_inv").is_null() | ~pl.col("_inv").is_in(list(INVOCATION_TYPES)))
        .then(pl.format("unknown triggerType-invocationType: '{}'",
                        pl.col("triggerType-invocationType"))),
        pl.when(pl.col("cpu_request_m") < 0).then(
            pl.format("negative cpu_request: {}", pl.col("cpu_request"))),
        pl.when(~pl.col("funcID").is_first_distinct()).then(
            pl.format("repeated funcID '{}'", pl.col("funcID"))),
    ).alias("reason"))
    valid, rejects = validate("functions", parsed, trace=trace,
                              text={"cpu_request_m": "cpu_request"})
    return valid, rejects, rows.height


def _ts_metric(path: Path, metric: str | None) -> str:
    if metric:
        return metric
    stem = path.stem.removeprefix("huawei_2025_")
    m = _TS_NAME.search(stem)
    if m:
        return m.group(1)
    if re.fullmatch(r"day_\d+", stem) or _unit(path.parent.name) is not None:
        return path.parent.name  # a day file, or any file in a folder named after a metric
    return re.sub(r"(_minute|_partial)+$", "", stem)


def _unit(metric: str) -> str | None:
    for base in sorted(UNITS, key=len, reverse=True):
        if metric == base or metric.startswith(base + "_"):
            return UNITS[base]
    return None


def _timeseries(path: Path, trace: str, metric: str | None, origin: datetime | None
                ) -> tuple[str, pl.DataFrame, pl.DataFrame, int, int, Wide]:
    """One wide file: ``day,time`` (declared per minute) or ``date`` (step from the data)."""
    name = _ts_metric(path, metric)
    funcs = wide_header(path, _FUNC_ID, "funcName---userID---poolName", dated=True)
    dated = header_fields(path)[0] == "date"
    wide = read_wide(path, funcs, trace, window_s=None if dated else WINDOW_S,
                     counts=name in COUNT_METRICS, origin=origin)
    tenant = (pl.col("function").cast(pl.String).str.split("---").list.get(1)
              .cast(pl.Categorical).alias("tenant"))
    long = wide.long.with_columns(tenant, pl.lit(wide.window_s).alias("window_s"))
    if name == "requests":
        long = long.select("tenant", "function", "window_start_s", "window_s",
                           pl.col("value").cast(pl.Int64).alias("count"))
    else:
        long = long.with_columns(pl.lit(name).alias("metric"),
                                 pl.lit(_unit(name), pl.String).alias("unit"))
    return name, long, wide.rejects, wide.rows_read, wide.accepted, wide


def load(paths: list[Path], trace: str, *, metric: str | None = None) -> Loaded:
    """Read Huawei 2025 CSV files (any mix of the four kinds, or folders of them).

    ``metric`` names the metric of time-series files whose name does not say it.
    """
    if not paths:
        raise FormatError(DATASET.name, "no files given: the Huawei 2025 files are "
                          "zipped on Huawei OBS; see the parts of `servetrace datasets` for "
                          "their URLs, extract them and ingest the CSV files by path")
    files = csv_files(paths)
    out: dict[str, list[pl.DataFrame]] = {}
    rejects = [empty("rejects")]
    rows_read = accepted = 0
    metrics: set[str] = set()
    steps: set[float] = set()
    origin: datetime | None = None  # set by the first file in the date layout
    for path in files:
        kind = _kind(path)
        if kind is None:
            raise FormatError(path, f"not a Huawei 2025 file (header "
                                    f"{','.join(header_fields(path)[:4])!r}...)", line=1)
        if kind == "timeseries":
            name, table, rej, n, ok, wide = _timeseries(path, trace, metric, origin)
            origin = wide.origin or origin
            steps.add(wide.window_s)
            metrics.add(name)
            target = "invocation_counts" if name == "requests" else "function_metrics"
        else:
            reader = {"cold_starts": _cold_starts, "requests": _requests,
                      "runtime_trigger": _runtime_trigger}[kind]
            table, rej, n = reader(path, trace)
            ok = table.height  # one row per accepted line
            target = {"cold_starts": "cold_starts", "requests": "invocations",
                      "runtime_trigger": "functions"}[kind]
        out.setdefault(target, []).append(table)
        rejects.append(rej)
        rows_read += n
        accepted += ok
    tables = {t: pl.concat([f.select([c for c in TABLES[t].names if c in f.columns])
                            for f in fs], how="diagonal_relaxed") for t, fs in out.items()}
    for t in ("cold_starts", "invocations"):
        if t in tables:
            tables[t] = sort_by(tables[t])
    rej = pl.concat(rejects, how="vertical_relaxed")
    notes: dict[str, object] = {"time": "seconds from the start of day 0 (no daily reset)",
                                "residual_tolerance_s": RESIDUAL_TOLERANCE_S}
    if "cold_starts" in tables:
        cs = tables["cold_starts"]
        notes["residual_flagged"] = int(cs["residual_flag"].sum())
        notes["max_abs_residual_s"] = cs["residual_s"].abs().max()
    if metrics:
        notes["timeseries_metrics"] = sorted(metrics)
        notes["window_s"] = sorted(steps)
    if origin is not None:
        notes["time"] = ("time series in the date layout: seconds from midnight of the first "
                         "file's first date (origin)")
    return Loaded(tables=tables, rejects=rej, rows_read=rows_read,
                  accepted=accepted, origin=origin, notes=notes)
