"""Huawei Private and Public cloud traces 2023 (SoCC'23), per-function time series.

Joosen et al., "How Does It Function? Characterizing Long-term Trends in Production Serverless
Workloads", ACM SoCC 2023, doi:10.1145/3620678.3624783, arXiv 2312.10127 (data and schema:
sir-lab/data-release, ``README_data_release_2023.md``).

Source layout (official zips, one folder per metric and resolution)::

    private_dataset/<metric>_<minute|second>/day_000.csv ... day_234.csv   (200 functions)
    public_dataset/requests_minute/day_00.csv ... day_25.csv               (5,093 functions)

Every file is wide: header ``day,time,<function id>...``, one line per minute (or second),
one column per function, an empty cell meaning nothing was recorded (no requests). ``time``
counts seconds from the start of day 0 and does **not** reset daily (day 234 starts at
20,217,600 s), so ``window_start_s = time``; a line whose ``time`` is not on its ``day``
(``time // 86400 != day``) or not on the window grid (a multiple of 60 s per minute) is
rejected.

Which metric a file holds is not in the file: it is taken, in this order, from the
``metric``/``resolution`` arguments of :func:`load`, from the file name
(``..._<metric>_<minute|second>...``, e.g. the specimen
``huawei_2023_private_requests_minute_partial.csv``), or from the parent folder's name as in
the official zips (``requests_minute/day_000.csv``). Otherwise loading fails with a message
saying so. ``requests`` go to ``invocation_counts``; every other metric (function and platform
delay, CPU and memory usage and limits, instances) goes to ``function_metrics`` (long:
function, window_start_s, window_s, metric, value, unit).

Wide to long is vectorized per file (Polars' CSV reader, then ``unpivot`` and a filter on
empty cells); no dense matrix is built in Python. A source row is one line: it is accepted
whole or rejected whole (wrong number of columns, unparsable day/time, a cell that is not a
number, non-finite or negative, a non-integer request count), with the first fault's reason,
so ``rows_read == accepted + rejected`` counts lines while the tables hold one row per
non-empty cell.

Downloads: the files are zips on Huawei OBS (and, in an earlier README, Google Drive); they are
listed in each part's description, not fetched: extract them and ingest the folder or files by
path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from servetrace.loaders import download
from servetrace.loaders.dataset import Dataset, Loaded, Part, RemoteFile
from servetrace.loaders.schema import empty
from servetrace.loaders.source import (
    FormatError,
    csv_files,
    csv_rows,
    csv_rows_at,
    first_csv,
    header_fields,
    parse_number,
    parse_timestamp,
    with_raw,
)

VERSION = "1"
DAY_S = 86400.0
RESOLUTIONS = {"minute": 60.0, "second": 1.0}
# Units as README_data_release_2023.md states them; None where it states none.
METRICS: dict[str, str | None] = {
    "requests": "invocations",
    "function_delay": None,      # "function execution time averaged over all pods"
    "platform_delay": None,      # "scheduling time and some network overheads"
    "cpu_usage": "%",            # of the allocated CPU, averaged over all pods
    "memory_usage": "%",         # of the allocated memory, averaged over all pods
    "cpu_limit": "normalized",   # allocated CPU for all pods (normalized)
    "memory_limit": "MB",        # allocated memory for all pods
    "instances": "pods",
}
_METRIC_RE = re.compile(
    r"(?:^|_)(" + "|".join(METRICS) + r")_(minute|second)(?:[_.-]|$)")
_FUNC_ID = re.compile(r"^\d+$")

_OBS = "https://sir-dataset.obs.cn-east-3.myhuaweicloud.com/datasets/"
_PUBLIC_ZIP = "public_dataset.zip"  # holds requests per minute only


def _part(scope: str, folder: str, desc: str) -> Part:
    """A metric's zip on Huawei OBS: downloaded, then extracted into the cache by ``load``."""
    if scope == "private":
        file = RemoteFile(f"{_OBS}private_dataset/{folder}.zip", f"{folder}.zip")
    else:
        file = RemoteFile(f"{_OBS}public_dataset/{_PUBLIC_ZIP}", _PUBLIC_ZIP)
    return Part(f"{scope}/{folder}", (file,), desc)


DATASET = Dataset(
    name="huawei_2023",
    title="Huawei Private and Public cloud serverless traces 2023",
    citation=("Artjom Joosen et al. How Does It Function? Characterizing Long-term Trends in "
              "Production Serverless Workloads. ACM Symposium on Cloud Computing (SoCC) 2023. "
              "doi:10.1145/3620678.3624783 (arXiv 2312.10127)"),
    license="CC-BY-4.0",
    homepage="https://github.com/sir-lab/data-release/blob/main/README_data_release_2023.md",
    parts=(
        *(_part("private", f"{m}_minute", f"Huawei Private, {m} per minute, 200 functions, "
                                          "235 days") for m in METRICS),
        *(_part("private", f"{m}_second", f"Huawei Private, {m} per second, 200 functions")
          for m in ("requests", "function_delay", "platform_delay")),
        _part("public", "requests_minute",
              "Huawei Public, requests per minute, 5,093 functions, 26 days"),
    ),
    tables=("invocation_counts", "function_metrics"),
)


@dataclass(frozen=True)
class Wide:
    """One wide file in long form: the non-empty cells of its accepted lines."""

    long: pl.DataFrame      # function (Categorical), window_start_s, value (Float64)
    rejects: pl.DataFrame   # the rejects table
    rows_read: int
    accepted: int           # lines that passed, counted from the checked lines
    window_s: float         # the step between rows, taken from the data
    origin: datetime | None = None  # the zero of window_start_s, for the ``date`` layout


def wide_header(path: Path, valid: re.Pattern[str], what: str, *, dated: bool = False
                ) -> list[str]:
    """The function columns of a wide ``day,time,<function>...`` file (or, with ``dated``,
    ``date,<function>...``); FormatError if not."""
    header = header_fields(path)
    lead = 1 if dated and header[:1] == ["date"] else 2
    if (lead == 2 and header[:2] != ["day", "time"]) or len(header) <= lead:
        expected = f"'day,time,<{what}>...'" + (f" or 'date,<{what}>...'" if dated else "")
        raise FormatError(path, f"unexpected header {','.join(header[:4])!r}...; expected "
                                f"{expected}", line=1)
    funcs = header[lead:]
    bad = [f for f in funcs if not valid.match(f)]
    if bad:
        raise FormatError(path, f"header column {bad[0]!r} is not a {what}", line=1)
    if len(set(funcs)) != len(funcs):
        seen: set[str] = set()
        dup = next(f for f in funcs if f in seen or seen.add(f))  # type: ignore[func-returns-value]
        raise FormatError(path, f"header names function {dup!r} twice", line=1)
    return funcs


def read_wide(path: Path, funcs: list[str], trace: str, *, window_s: float | None,
              counts: bool, origin: datetime | None = None) -> Wide:
    """A wide per-function time series file in long form, validated line by line.

    Polars reads the file (multithreaded, numbers straight to Float64 when the file is
    well-formed; line by line as text otherwise), the function columns are unpivoted and empty
    cells dropped. ``time`` is seconds from the start of day 0 (it does not reset daily) and
    must lie on ``day`` and on the ``window_s`` grid. With ``counts`` a cell must be a
    non-negative integer, otherwise a non-negative finite number. Reasons quote the source
    text: lines rejected after the fast path are checked again from their text.

    The ``date,<function>...`` layout (one ``YYYY-MM-DD HH:MM:SS`` per line, as in the
    per-datacentre series) counts ``window_start_s`` from ``origin``, by default midnight of
    the file's first date. Either way the step between rows is taken from the data (the
    smallest gap between accepted times) and returned as ``window_s``: a file whose gaps are
    not all multiples of that step, or whose step is not the declared ``window_s`` (None: no
    declaration), is a :class:`FormatError`.
    """
    dated = header_fields(path)[0] == "date"
    lead = ["date"] if dated else ["day", "time"]
    cols = [*lead, *(f"c{i}" for i in range(len(funcs)))]
    names = pl.DataFrame({"col": cols[len(lead):], "ci": pl.int_range(len(funcs), eager=True),
                          "function": pl.Series(funcs, dtype=pl.Categorical)})
    rows = csv_rows(path, cols, numeric=cols[len(lead) if dated else 0:])
    if dated and origin is None:
        first = rows.select(parse_timestamp(pl.col("date")).min()).item()
        origin = datetime.combine(first.date(), datetime.min.time()) if first else None
    grid = None if dated else window_s
    lines, long = _check(rows, names, window_s=grid, counts=counts, origin=origin)
    bad = lines.filter(pl.col("reason").is_not_null())
    if bad.height and rows.schema[cols[-1]] != pl.String:  # fast path: quote the text
        text_rows = csv_rows_at(path, cols, bad["line"].to_list())
        requoted, _ = _check(text_rows, names, window_s=grid, counts=counts, origin=origin)
        bad = bad.drop("reason").join(requoted.select("line", "reason"), on="line", how="left")
    rejects = with_raw(bad.select(pl.lit(trace).alias("trace"),
                                  pl.lit(str(path)).alias("source"), "line",
                                  pl.col("raw").cast(pl.String), "reason"))
    good = lines.filter(pl.col("reason").is_null()).select("line", "window_start_s")
    step = _step(path, good["window_start_s"], window_s)
    out = (long.join(good, on="line", how="inner").sort("line", "ci")
           .select("function", "window_start_s", "value"))
    return Wide(out, rejects, rows.height, good.height, step, origin)


def _step(path: Path, times: pl.Series, declared: float | None) -> float:
    """The step between rows: the smallest gap between distinct times, checked (see
    :func:`read_wide`)."""
    gaps = times.unique().sort().diff().drop_nulls()
    if gaps.is_empty():
        if declared is None:
            raise FormatError(path, "one time only: the window length cannot be told from "
                                    "the data")
        return declared
    step = float(gaps.min())
    ratio = gaps / step
    odd = gaps.filter((ratio - ratio.round()).abs() > 1e-9)
    if odd.len():
        raise FormatError(path, f"irregular time steps: rows {step:g} s and {odd[0]:g} s apart "
                                f"(every gap must be a multiple of the smallest)")
    if declared is not None and abs(step - declared) > 1e-9:
        raise FormatError(path, f"rows are {step:g} s apart, but the file is declared to hold "
                                f"{declared:g} s windows (by its name, folder or layout); "
                                f"ingest it as what it is, e.g. in the 'date,<function>...' "
                                f"layout, whose step is taken from the data")
    return step


def _check(rows: pl.DataFrame, names: pl.DataFrame, *, window_s: float | None, counts: bool,
           origin: datetime | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per line (line, raw, window_start_s, reason or null) and the long non-empty cells."""
    fcols = names["col"].to_list()

    def num(c: str) -> pl.Expr:
        return parse_number(pl.col(c)) if rows.schema[c] == pl.String else pl.col(c)

    def shown(c: str) -> pl.Expr:
        return pl.col(c).cast(pl.String)

    if "date" in rows.columns:
        stamp = parse_timestamp(pl.col("date"))
        time = (stamp - pl.lit(origin)).dt.total_nanoseconds() / 1e9
        line_reason = pl.coalesce(
            pl.col("reason"),
            pl.when(pl.col("date").is_null()).then(pl.lit("missing date")),
            pl.when(stamp.is_null()).then(pl.format("unparsable date: '{}'", shown("date"))),
            pl.when(time < 0).then(pl.format("date {} is before the trace origin {}",
                                             shown("date"), pl.lit(str(origin)))),
        )
        return _cells(rows, names, fcols, time, line_reason, counts)
    day, time = num("day"), num("time")
    line_reason = pl.coalesce(
        pl.col("reason"),
        pl.when(pl.col("day").is_null()).then(pl.lit("missing day")),
        pl.when(day.is_null()).then(pl.format("unparsable day: '{}'", shown("day"))),
        pl.when(pl.col("time").is_null()).then(pl.lit("missing time")),
        pl.when(time.is_null()).then(pl.format("unparsable time: '{}'", shown("time"))),
        pl.when(~day.is_finite() | (day < 0) | (day != day.floor())).then(
            pl.format("bad day: {}", shown("day"))),
        pl.when(~time.is_finite() | (time < 0)).then(pl.format("bad time: {}", shown("time"))),
        pl.when((time / DAY_S).floor() != day).then(
            pl.format("time {} s is not on day {} (time counts seconds from the start of "
                      "day 0)", shown("time"), shown("day"))),
        *([pl.when((time / window_s) != (time / window_s).floor()).then(
            pl.format("time {} s is not on the {} s window grid", shown("time"),
                      pl.lit(f"{window_s:g}")))] if window_s is not None else []),
    )
    return _cells(rows, names, fcols, time, line_reason, counts)


def _cells(rows: pl.DataFrame, names: pl.DataFrame, fcols: list[str], time: pl.Expr,
           line_reason: pl.Expr, counts: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    lines = rows.select("line", "raw", time.alias("window_start_s"),
                        line_reason.alias("reason"))
    long = rows.select("line", *fcols).unpivot(index="line", variable_name="col",
                                               value_name="cell")
    long = long.filter(pl.col("cell").is_not_null())
    value = parse_number(pl.col("cell")) if long.schema["cell"] == pl.String else pl.col("cell")
    long = long.with_columns(value.alias("value")).join(names, on="col", how="left")
    cell = pl.col("cell").cast(pl.String)
    where = pl.format("function {} (column {})", pl.col("function").cast(pl.String),
                      pl.col("ci") + 3)
    checks = [
        pl.when(pl.col("value").is_null()).then(pl.format("unparsable value '{}' for {}",
                                                          cell, where)),
        pl.when(~pl.col("value").is_finite()).then(pl.format("non-finite value for {}", where)),
        pl.when(pl.col("value") < 0).then(pl.format("negative value {} for {}", cell, where)),
    ]
    if counts:
        checks.append(pl.when(pl.col("value") != pl.col("value").floor()).then(
            pl.format("non-integer count {} for {}", cell, where)))
        # read as float64, which holds every integer below 2^53 and not all above
        checks.append(pl.when(pl.col("value") >= float(2**53)).then(
            pl.format("count {} too large to store exactly (2^53 or more) for {}", cell, where)))
    long = long.with_columns(pl.coalesce(checks).alias("cell_reason"))
    cell_bad = (long.filter(pl.col("cell_reason").is_not_null()).sort("line", "ci")
                .group_by("line", maintain_order=True).agg(pl.col("cell_reason").first()))
    lines = lines.join(cell_bad, on="line", how="left").with_columns(
        pl.coalesce("reason", "cell_reason").alias("reason")).drop("cell_reason")
    return lines, long


def _metric_of(path: Path, metric: str | None, resolution: str | None) -> tuple[str, str]:
    if metric is not None and resolution is not None:
        return metric, resolution
    for name in (path.name, path.parent.name):
        m = _METRIC_RE.search(name)
        if m:
            return metric or m.group(1), resolution or m.group(2)
    raise FormatError(path, "cannot tell which metric this file holds: keep it in a folder "
                            "named <metric>_<minute|second> as in the official zips (e.g. "
                            "requests_minute/day_000.csv), or pass metric= and resolution= "
                            f"(metrics: {', '.join(METRICS)})")


def _inputs(paths: list[Path]) -> list[tuple[Path, tuple[str | None, str | None]]]:
    """CSV files with the (metric, resolution) their zip's name tells, if any.

    An official zip (``<metric>_<minute|second>.zip``, or the public ``public_dataset.zip``)
    is extracted once into the download cache; its name says which metric it holds.
    """
    out: list[tuple[Path, tuple[str | None, str | None]]] = []
    for path in map(Path, paths):
        if path.suffix == ".zip":
            m = _METRIC_RE.search(path.name)
            hint = (m.group(1), m.group(2)) if m else (
                ("requests", "minute") if path.name == _PUBLIC_ZIP else (None, None))
            out += [(f, hint) for f in csv_files([download.extract(path)])]
        else:
            out += [(f, (None, None)) for f in csv_files([path])]
    return out


def detect(path: Path) -> bool:
    """A wide ``day,time,<integer function id>...`` file, or a folder of them."""
    path = Path(path)
    if path.is_dir():
        first = first_csv(path)
        return first is not None and detect(first)
    try:
        wide_header(path, _FUNC_ID, "function id")
    except FormatError:
        return False
    return True


def load(paths: list[Path], trace: str, *, metric: str | None = None,
         resolution: str | None = None) -> Loaded:
    """Read Huawei 2023 ``day_NNN.csv`` files (or folders of them) onto ``invocation_counts``
    (requests) and ``function_metrics`` (every other metric)."""
    if not paths:
        raise FormatError(DATASET.name, "no files given")
    if metric is not None and metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    if resolution is not None and resolution not in RESOLUTIONS:
        raise ValueError(f"unknown resolution {resolution!r}; known: minute, second")
    counts, metrics, rejects = [], [], [empty("rejects")]
    rows_read = accepted = 0
    seen: dict[tuple[str, str], int] = {}
    for path, hint in _inputs(paths):
        m, res = _metric_of(path, metric or hint[0], resolution or hint[1])
        funcs = wide_header(path, _FUNC_ID, "function id")
        wide = read_wide(path, funcs, trace, window_s=RESOLUTIONS[res],
                         counts=m in ("requests",))
        rows_read += wide.rows_read
        accepted += wide.accepted
        rejects.append(wide.rejects)
        seen[(m, res)] = seen.get((m, res), 0) + 1
        long = wide.long.with_columns(pl.lit(wide.window_s).alias("window_s"))
        if m == "requests":
            counts.append(long.select("function", "window_start_s", "window_s",
                                      pl.col("value").cast(pl.Int64).alias("count")))
        else:
            metrics.append(long.with_columns(pl.lit(m).alias("metric"),
                                             pl.lit(METRICS[m], pl.String).alias("unit")))
    tables: dict[str, pl.DataFrame] = {}
    if counts:
        tables["invocation_counts"] = pl.concat(counts)
    if metrics:
        tables["function_metrics"] = pl.concat(metrics)
    rej = pl.concat(rejects, how="vertical_relaxed")
    notes = {"files": {f"{m}_{r}": n for (m, r), n in seen.items()},
             "time": "seconds from the start of day 0 (no daily reset)"}
    return Loaded(tables=tables, rejects=rej, rows_read=rows_read,
                  accepted=accepted, notes=notes)
