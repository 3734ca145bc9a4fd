"""Azure Functions trace 2019 ("Serverless in the Wild"), per-minute counts and percentiles.

Shahrad et al., "Serverless in the Wild: Characterizing and Optimizing the Serverless Workload
at a Large Cloud Provider", USENIX ATC 2020 (data: ``Azure/AzurePublicDataset``,
``AzureFunctionsDataset2019.md``). Owner → App → Function is the tenancy hierarchy;
``tenant`` = ``HashOwner``, ``app`` = ``HashApp``, ``function`` = ``HashFunction``.

Source files (official: one ``tar.xz`` of 40 CSVs, 14 days of July 2019)::

    invocations_per_function_md.anon.dNN.csv   HashOwner,HashApp,HashFunction,Trigger,1..1440
    function_durations_percentiles.anon.dNN.csv HashOwner,HashApp,HashFunction,Average,Count,
        Minimum,Maximum,percentile_Average_{0,1,25,50,75,99,100}          (milliseconds)
    app_memory_percentiles.anon.dNN.csv          HashOwner,HashApp,SampleCount,
        AverageAllocatedMb,AverageAllocatedMb_pct{1,5,25,50,75,95,99,100}  (MB, d01..d12 only)

The vHive/InVitro sampler's variant (``vhive-serverless/invitro``, ``data/traces/``) is read
too: ``invocations.csv`` with any set of minute columns (``480..959`` there),
``durations.csv`` and ``memory.csv`` per *function* (``HashFunction`` first, or
``HashOwner,HashApp,HashFunction,...``). A file's kind is told from its header's column names
in any order, not from its name, and columns are read by name; a CSV in a folder that fits no
layout fails the load (it is never skipped while listed as a source). The day comes from the
``.dNN.`` in its name (day 1 when there is none).

Tables:

- ``invocation_counts``: the wide per-minute table in long form, 60 s windows, one row per
  function × minute **with a count > 0**: zero minutes are implicit (absent rows), which keeps
  a day at ~24 % of the dense size in the real data. Day NN's minute m starts at
  ``window_start_s = ((NN - 1) * 1440 + m - 1) * 60``, so several day files ingested as one
  trace continue in time (the InVitro file's minute 480 starts at 28,740 s). Rows are ordered
  by day file (in day order), then by the function's line in its file, then by window: the
  order of the wide table read row by row, which Parquet stores compactly. Wide to long is
  vectorized: Polars reads the file (numbers straight to Float64 when it is well-formed),
  each minute column is filtered to its non-zero cells lazily and the results concatenated
  and sorted by line; no dense long table and no Python loop over rows.
- ``functions``: one row per (owner, app, function) seen in any file: ``trigger`` and
  ``invocations`` (sum of the per-minute counts) from the invocation files; ``duration_mean_s``
  = ``Average`` and ``duration_pN_s`` = ``percentile_Average_N``, ms → s; memory from the app
  memory file joined onto every function of the app (or, in the InVitro layout, per function):
  ``memory_mean_mb`` = ``AverageAllocatedMb``, ``memory_pN_mb`` = ``AverageAllocatedMb_pctN``.
  ``Count``, ``Minimum``, ``Maximum`` and ``SampleCount`` have no column in ``functions``;
  they are validated and used below but not stored. When several day files describe one
  function (or app), the means are combined exactly (weighted by ``Count`` /
  ``SampleCount``) and the percentiles, which cannot be combined, are left null; ingest one
  day per trace (the ``dNN`` parts) to keep them.

Validation: a source row is one line of any file. A line is rejected whole, with the first
fault: wrong number of columns, a missing hash, a count cell that is missing, unparsable,
non-finite, negative or fractional (named by its minute), a duration or memory figure that
is missing, unparsable, non-finite or negative, or a fractional ``Count``/``SampleCount``.
So ``rows_read == accepted + rejected`` counts lines while ``invocation_counts`` holds one row
per non-zero cell. A header that is none of the three layouts is a :class:`FormatError`.

Download: the dataset's parts are the days ``d01``..``d14``; each names the one official
archive, which is downloaded once (cached by URL) and extracted with :mod:`tarfile` (xz) into
``$SERVETRACE_CACHE/extracted/`` on first use (≈ 2 GB of CSV). Which day a part loads is
taken from the trace id's last component (``.../dNN``); an archive loaded under another
trace id is an error that says so. Several days as one trace: extract the archive (or let a
part do it) and ingest the day files or their folder by path (≈ 2 GB peak memory per day of
``invocation_counts``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from servetrace.loaders import download
from servetrace.loaders.dataset import Dataset, Loaded, Part, RemoteFile
from servetrace.loaders.schema import empty
from servetrace.loaders.source import (
    FormatError,
    csv_rows,
    csv_rows_at,
    header_fields,
    parse_number,
    with_raw,
)

VERSION = "1"
WINDOW_S = 60.0
MINUTES_PER_DAY = 1440
DAYS = 14

ID_COLUMNS = ["HashOwner", "HashApp", "HashFunction", "Trigger"]
DURATION_HEADER = ["HashOwner", "HashApp", "HashFunction", "Average", "Count", "Minimum",
                   "Maximum", *(f"percentile_Average_{p}" for p in (0, 1, 25, 50, 75, 99, 100))]
MEMORY_APP_HEADER = ["HashOwner", "HashApp", "SampleCount", "AverageAllocatedMb",
                     *(f"AverageAllocatedMb_pct{p}" for p in (1, 5, 25, 50, 75, 95, 99, 100))]
MEMORY_FUNCTION_HEADER = ["HashFunction", *MEMORY_APP_HEADER]

_DUR_PCTS = (0, 1, 25, 50, 75, 99, 100)
_MEM_PCTS = (1, 5, 25, 50, 75, 95, 99, 100)
_KEY = ["tenant", "app", "function"]
_RENAME = {"HashOwner": "tenant", "HashApp": "app", "HashFunction": "function",
           "Trigger": "trigger"}
_DAY = re.compile(r"\.d(\d{2})\.csv(\.gz)?$")
_ARCHIVE = "azurefunctions-dataset2019.tar.xz"
_PART = re.compile(r"(?:^|/)d(\d{2})$")

ARCHIVE = RemoteFile(
    "https://github.com/Azure/AzurePublicDataset/releases/download/dataset-functions-2019/"
    "azurefunctions_dataset2019_azurefunctions-dataset2019.tar.xz",
    _ARCHIVE,
    sha256="aff8b3ca7240a41a109e4ee598e0a96e45fcb92e7b8395ac19cb3748cd260d89",
)


@dataclass(frozen=True)
class _Dataset(Dataset):
    """Adds two ways of naming a part from a local path: a day file's ``.dNN.`` (its part
    is ``dNN``, from the official archive) and a folder named after the dataset itself, as in
    ``../shared/traces/azure_functions_2019`` (part ``sample``, no official files)."""

    def part_for_file(self, filename: str) -> Part | None:
        found = super().part_for_file(filename)
        if found is not None:
            return found
        m = _DAY.search(filename)
        if m and 1 <= int(m.group(1)) <= DAYS:
            return self.part(f"d{m.group(1)}")
        if filename == self.name:
            return Part("sample", (), "a local sample of the trace (e.g. InVitro's)")
        return None


DATASET = _Dataset(
    name="azure_functions_2019",
    title="Azure Functions trace 2019 (per-minute invocations, durations, memory)",
    citation=("Mohammad Shahrad, Rodrigo Fonseca, Íñigo Goiri, Gohar Chaudhry, Paul Batum, "
              "Jason Cooke, Eduardo Laureano, Colby Tresness, Mark Russinovich, Ricardo "
              "Bianchini. Serverless in the Wild: Characterizing and Optimizing the Serverless "
              "Workload at a Large Cloud Provider. USENIX ATC 2020, pp. 205-218."),
    license="CC-BY-4.0",
    homepage="https://github.com/Azure/AzurePublicDataset/blob/master/AzureFunctionsDataset2019.md",
    parts=tuple(Part(f"d{d:02d}", (ARCHIVE,),
                     f"day {d} of 14: per-minute invocations, durations"
                     + (", app memory" if d <= 12 else " (no memory file for this day)"))
                for d in range(1, DAYS + 1)),
    tables=("invocation_counts", "functions"),
)


# -- which file is which --------------------------------------------------------------------
def _minutes(header: list[str]) -> list[str] | None:
    """The minute columns of an invocations header (the four id columns and minute numbers,
    in any order), or None if it is not one."""
    rest = [c for c in header if c not in ID_COLUMNS]
    if (len(header) - len(rest) != len(ID_COLUMNS) or not rest or len(set(header)) != len(header)
            or not all(c.isdigit() and int(c) >= 1 for c in rest)):
        return None
    return rest


_LAYOUTS = {"durations": DURATION_HEADER, "memory_app": MEMORY_APP_HEADER,
            "memory_function": MEMORY_FUNCTION_HEADER}


def _kind(path: Path) -> str | None:
    """``invocations``, ``durations``, ``memory_app``, ``memory_function`` or None.

    Told by the header's set of column names: the columns of a layout in any order (the
    InVitro sampler writes the per-function memory file both ``HashFunction`` first and
    ``HashOwner,HashApp,HashFunction,...``); columns are then read by name.
    """
    header = header_fields(path)
    if _minutes(header) is not None:
        return "invocations"
    if len(set(header)) != len(header):
        return None
    return next((k for k, cols in _LAYOUTS.items() if set(header) == set(cols)), None)


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith(".tar.xz") and "dataset2019" in path.name


def detect(path: Path) -> bool:
    """One of the three file layouts (by header), a folder holding one, or the archive."""
    path = Path(path)
    if path.is_dir():
        return any(_safe_kind(p) for p in sorted(path.iterdir()) if p.suffix == ".csv")
    return _is_archive(path) or _safe_kind(path) is not None


def _safe_kind(path: Path) -> str | None:
    try:
        return _kind(path) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _day(path: Path) -> int:
    m = _DAY.search(path.name)
    return int(m.group(1)) if m else 1


def _file_kind(path: Path) -> str:
    kind = _kind(path)
    if kind is None:
        raise FormatError(path, "unexpected header: not an Azure Functions 2019 invocations, "
                                "durations or memory file (none of their layouts, in any "
                                "column order); move it out of the folder or fix its header",
                          line=1)
    return kind


# -- the archive ------------------------------------------------------------------------------
def _files(paths: list[Path], trace: str) -> list[tuple[str, Path]]:
    """(kind, file) for every input, folders expanded and archives extracted."""
    out: list[tuple[str, Path]] = []
    for path in map(Path, paths):
        if _is_archive(path):
            m = _PART.search(trace)
            if not m:
                raise FormatError(path, "the archive holds 14 days; load it as a part "
                                        "(trace id ending in /d01../d14), or extract it and "
                                        "ingest the day files or their folder by path")
            folder = download.extract(path)
            day = f".d{m.group(1)}."
            found = [(k, p) for p in sorted(folder.rglob("*.csv"))
                     if day in p.name and (k := _kind(p))]
            if not found:
                raise FormatError(path, f"the archive has no files for day {m.group(1)}")
            out.extend(found)
        elif path.is_dir():
            csvs = [p for p in sorted(path.iterdir()) if p.suffix == ".csv"]
            if not any(_safe_kind(p) for p in csvs):
                raise FormatError(path, "no Azure Functions 2019 files (invocations, durations "
                                        "or memory CSVs) in this folder")
            # every CSV of the folder is loaded, or the load fails naming the one it cannot
            out.extend((_file_kind(p), p) for p in csvs)
        else:
            out.append((_file_kind(path), path))
    return out


# -- reading and checking one file ------------------------------------------------------------
_EXACT_LIMIT = float(2**53)  # float64 holds every integer below this, and no more


def _fails(ids: list[str], numbers: list[str], integers: list[str]) -> pl.Expr:
    """Whether a row has any fault: cheap horizontal reductions over all rows."""
    conds = [pl.col("reason").is_not_null(), *(pl.col(c).is_null() for c in ids)]
    if numbers:
        conds += [pl.any_horizontal([pl.col(c).is_null() for c in numbers]),
                  ~pl.sum_horizontal(numbers).is_finite(),
                  pl.min_horizontal(numbers) < 0]
    if integers:
        conds.append(pl.any_horizontal([pl.col(c) != pl.col(c).floor() for c in integers]))
        # counts are read as float64, exact only below 2^53, and their row sum is stored too
        conds.append(pl.sum_horizontal(pl.col(integers).abs()) >= _EXACT_LIMIT)
    return pl.any_horizontal(conds).fill_null(True)


def _reason(ids: list[str], numbers: list[str], integers: list[str],
            label: dict[str, str]) -> pl.Expr:
    """The first fault of a row read as text (columns String): for the failing rows only."""
    reasons = [pl.col("reason")]
    reasons += [pl.when(pl.col(c).is_null()).then(pl.lit(f"missing {c}")) for c in ids]
    for c in numbers:
        t, v = pl.col(c), parse_number(pl.col(c))
        what = label[c]
        chain = (pl.when(t.is_null()).then(pl.lit(f"missing {what}"))
                 .when(v.is_null()).then(pl.format(f"unparsable {what}: '{{}}'", t))
                 .when(~v.is_finite()).then(pl.format(f"non-finite {what}: {{}}", t))
                 .when(v < 0).then(pl.format(f"negative {what}: {{}}", t)))
        if c in integers:
            chain = (chain.when(v != v.floor()).then(pl.format(f"non-integer {what}: {{}}", t))
                     .when(v >= _EXACT_LIMIT).then(pl.format(
                         f"{what} too large to store exactly (2^53 or more): {{}}", t)))
        reasons.append(chain)
    if integers:
        total = pl.sum_horizontal([parse_number(pl.col(c)) for c in integers])
        reasons.append(pl.when(total >= _EXACT_LIMIT).then(pl.lit(
            "counts of the row sum to 2^53 or more: too large to store exactly")))
    return pl.coalesce(reasons).fill_null(pl.lit("invalid row"))


def _read(path: Path, header: list[str], ids: list[str], numbers: list[str],
          integers: list[str], label: dict[str, str], trace: str, *,
          categorical: tuple[str, ...] = ()) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Read one CSV, numbers as Float64: (valid rows, rejects, rows read).

    Rows are flagged over the whole file with horizontal reductions; only the flagged ones
    are read again as text to name their first fault with the source text.
    """
    rows = csv_rows(path, header, numeric=numbers, categorical=categorical)
    schema = rows.schema  # built once: a frame's schema is rebuilt on every access
    rows = rows.with_columns([parse_number(pl.col(c)).alias(c) for c in numbers
                              if schema[c] == pl.String])
    mask = rows.select(_fails(ids, numbers, integers).alias("_bad")).to_series()
    if not mask.any():
        return rows, empty("rejects").with_columns(pl.lit(trace).alias("trace")), rows.height
    bad_lines = rows.filter(mask)["line"]
    text = csv_rows_at(path, header, bad_lines.to_list(), categorical=categorical)
    text = text.join(rows.filter(mask).select("line", pl.col("reason").alias("_r")),
                     on="line", how="left")
    text = text.with_columns(pl.coalesce("_r", "reason").alias("reason"))
    rejects = with_raw(text.select(
        pl.lit(trace).alias("trace"), pl.lit(str(path)).alias("source"),
        pl.col("line").cast(pl.Int64), pl.col("raw").cast(pl.String),
        _reason(ids, numbers, integers, label).cast(pl.String).alias("reason")))
    return rows.filter(~mask), rejects, rows.height


@dataclass
class _Counts:
    counts: pl.DataFrame
    functions: pl.DataFrame
    rejects: pl.DataFrame
    rows_read: int
    minutes: int


def _invocations(path: Path, trace: str) -> _Counts:
    """One invocations file: its non-zero cells as ``invocation_counts`` rows."""
    header = header_fields(path)
    minutes = _minutes(header)
    if minutes is None:
        raise FormatError(path, "unexpected invocations header", line=1)
    label = {c: f"count (minute {c})" for c in minutes}
    rows, rejects, read = _read(path, header, ID_COLUMNS[:3], minutes, minutes, label, trace,
                                categorical=tuple(ID_COLUMNS))
    day = _day(path)
    ordered = sorted(minutes, key=int)
    starts = pl.Series("window_start_s", [((day - 1) * MINUTES_PER_DAY + int(c) - 1)
                                          * WINDOW_S for c in ordered], dtype=pl.Float64)
    good = rows.select(*ID_COLUMNS, *minutes).with_row_index("_row")
    del rows
    functions = good.select(
        *(pl.col(c).cast(pl.String).alias(_RENAME[c]) for c in ID_COLUMNS),
        pl.sum_horizontal(minutes).cast(pl.Int64).alias("invocations"))
    ids = good.select(pl.col(c).alias(_RENAME[c]) for c in ID_COLUMNS)
    lazy = good.lazy()
    # One lazy filter per minute column, run in parallel; only non-zero cells are kept. The
    # result is minute-major; a stable sort on the line makes it function-major, which
    # Parquet stores ~15x smaller (runs of the same function) and writes ~5x faster.
    cells = pl.concat([
        lazy.select("_row", pl.lit(k, pl.UInt32).alias("_k"), pl.col(c).alias("count"))
        .filter(pl.col("count") > 0)
        for k, c in enumerate(ordered)]).collect()
    del good, lazy  # the wide matrix is no longer needed
    cells = cells.sort("_row", maintain_order=True)
    counts = ids[cells["_row"]].with_columns(
        starts.gather(cells["_k"]),
        pl.lit(WINDOW_S).alias("window_s"),
        cells["count"].cast(pl.Int64).alias("count"),
    )
    return _Counts(counts, functions, rejects, read, len(minutes))


def _durations(path: Path, trace: str) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    numbers = DURATION_HEADER[3:]
    rows, rejects, read = _read(path, header_fields(path), DURATION_HEADER[:3], numbers,
                                ["Count"], {c: c for c in numbers}, trace)
    return rows.select(
        *(pl.col(c).alias(_RENAME[c]) for c in DURATION_HEADER[:3]),
        pl.col("Count").alias("_n"),
        (pl.col("Average") / 1000).alias("duration_mean_s"),
        *((pl.col(f"percentile_Average_{p}") / 1000).alias(f"duration_p{p}_s")
          for p in _DUR_PCTS)), rejects, read


def _memory(path: Path, header: list[str], trace: str
            ) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    ids = [c for c in header if c in _RENAME]
    numbers = [c for c in header if c not in _RENAME]
    rows, rejects, read = _read(path, header, ids, numbers, ["SampleCount"],
                                {c: c for c in numbers}, trace)
    return rows.select(
        *(pl.col(c).alias(_RENAME[c]) for c in ids),
        pl.col("SampleCount").alias("_n"),
        pl.col("AverageAllocatedMb").alias("memory_mean_mb"),
        *(pl.col(f"AverageAllocatedMb_pct{p}").alias(f"memory_p{p}_mb") for p in _MEM_PCTS),
    ), rejects, read


def _combine(frame: pl.DataFrame, key: list[str], mean: str, pcts: list[str]) -> pl.DataFrame:
    """One row per key: ``mean`` weighted by ``_n``; percentiles kept only where one row
    describes the key (percentiles of several days cannot be combined)."""
    n = pl.col("_n")
    return frame.group_by(key, maintain_order=True).agg(
        pl.when(n.sum() > 0).then((pl.col(mean) * n).sum() / n.sum())
        .otherwise(pl.col(mean).mean()).alias(mean),
        *(pl.when(pl.len() == 1).then(pl.col(p).first()).alias(p) for p in pcts),
    )


# -- the trace --------------------------------------------------------------------------------
def load(paths: list[Path], trace: str) -> Loaded:
    """Read day files, a folder of them, or the official archive (as a ``dNN`` part)."""
    files = _files(paths, trace)
    inv = sorted(((p, _day(p)) for k, p in files if k == "invocations"), key=lambda x: x[1])
    days = [d for _, d in inv]
    if len(set(days)) != len(days):
        raise FormatError(inv[0][0], "two invocations files for the same day "
                                     f"({', '.join(str(p) for p, _ in inv)}); give one per day")
    read = accepted = 0  # source lines; accepted ones counted from what they produced
    rejects: list[pl.DataFrame] = []
    counts, inv_funcs = [], []
    minutes = []
    for path, _ in inv:
        c = _invocations(path, trace)
        counts.append(c.counts)
        inv_funcs.append(c.functions)
        rejects.append(c.rejects)
        read += c.rows_read
        accepted += c.functions.height  # one row per accepted line
        minutes.append(c.minutes)
    durs, mems = [], []
    mem_kinds = {k for k, _ in files if k.startswith("memory")}
    if len(mem_kinds) > 1:
        raise FormatError(paths[0], "memory files of both layouts (per app and per function) "
                                    "in one trace")
    for kind, path in sorted(files, key=lambda kp: _day(kp[1])):
        if kind == "durations":
            frame, rej, n = _durations(path, trace)
            durs.append(frame)
        elif kind.startswith("memory"):
            frame, rej, n = _memory(path, header_fields(path), trace)
            mems.append(frame)
        else:
            continue
        rejects.append(rej)
        read += n
        accepted += frame.height

    tables: dict[str, pl.DataFrame] = {}
    if counts:
        tables["invocation_counts"] = pl.concat(counts)
    functions = None
    if inv_funcs:
        functions = pl.concat(inv_funcs).group_by(_KEY, maintain_order=True).agg(
            pl.col("trigger").drop_nulls().first(), pl.col("invocations").sum())
    if durs:
        dur = _combine(pl.concat(durs), _KEY, "duration_mean_s",
                       [f"duration_p{p}_s" for p in _DUR_PCTS])
        functions = dur if functions is None else functions.join(
            dur, on=_KEY, how="full", coalesce=True, maintain_order="left_right")
    unmatched_memory = 0
    if mems:
        mem_key = _KEY if "memory_function" in mem_kinds else ["tenant", "app"]
        mem = _combine(pl.concat(mems), mem_key, "memory_mean_mb",
                       [f"memory_p{p}_mb" for p in _MEM_PCTS])
        if functions is None and mem_key == _KEY:
            functions = mem
        elif functions is not None:
            unmatched_memory = mem.join(functions, on=mem_key, how="anti").height
            functions = functions.join(mem, on=mem_key, how="left", maintain_order="left")
        else:
            unmatched_memory = mem.height
    if functions is not None:
        tables["functions"] = functions

    rejected = pl.concat([empty("rejects").with_columns(pl.lit(trace).alias("trace")),
                          *rejects], how="vertical_relaxed")
    notes = {
        "days": days,
        "window_s": WINDOW_S,
        "zero_minutes": "implicit (only minutes with count > 0 are stored)",
        "minute_columns": minutes,
        "invocations": int(tables["invocation_counts"]["count"].sum()) if counts else 0,
        "functions": functions.height if functions is not None else 0,
        "memory_layout": (sorted(mem_kinds)[0].removeprefix("memory_") if mem_kinds else None),
        "memory_rows_without_functions": unmatched_memory,
        "percentiles": "null where several day files describe one function or app",
    }
    return Loaded(tables=tables, rejects=rejected, rows_read=read,
                  accepted=accepted, origin=None, notes=notes)
