"""IBM Cloud Code Engine traces (EuroSys'26): 62 days, 1,780 apps, over 1.9 billion requests.

Nasiri et al., "In-Production Characterization of an Open Source Serverless Platform and New
Scaling Strategies", EuroSys 2026 (data: ``ubc-cirrus-lab/ibm-cloud-code-engine-traces``,
MIT license). Facts below are from that repository's README and sample script.

Source: pickled pandas DataFrames, one row per application (``NamespaceHash``, ``AppHash``,
32 hex digits each), whose other cells are Python lists:

- ``app_configs.pickle`` (1,780 rows): ``AppContainerRequestCpu`` (vCPU),
  ``AppContainerRequestMemory`` (GB), ``AppContainerConcurrency`` and ``AppMinScale``
  (instances; 0 means scale to zero), each a list of one value per day (62), NaN on days the
  app had no configuration; the real lists mix ints and floats;
- ``week_1.pickle`` .. ``week_10.pickle``: ``NumEvents`` and four lists of ``NumEvents``
  values in the same request order: ``InvocationTimes`` (s), ``AppExecTimes`` and
  ``TotalExecTimes`` (ms), ``PodHash`` (the pod that served the request).

The pickles are never opened with plain :mod:`pickle`: :class:`FrameUnpickler` admits only
the pandas and NumPy globals (:data:`ALLOWED`) that rebuild a DataFrame of object, integer and
float columns, and refuses any other global (``os.system``, ``builtins.eval``, ...) with an
error naming the file and the global, before anything in the file runs. The layout was read
from the real ``app_configs.pickle`` (protocol 5, object columns, written with pandas 2 and
NumPy 2) with :mod:`pickletools`, which runs nothing. Rebuilding a frame needs pandas (the
``ibm`` extra); it is converted to Arrow at once, slice by slice, and released.

Mapped onto the canonical tables (an app is Code Engine's unit of deployment, so ``app`` and
``function`` are both ``AppHash``; ``tenant`` is the namespace):

- a week file → ``invocations``, one row per request: ``arrival_s`` from ``InvocationTimes``,
  ``duration_s = AppExecTimes / 1000``, ``total_exec_s = TotalExecTimes / 1000``, ``pod``.
  The README gives the times in seconds without an origin. Values of 10^9 s or more are
  read as Unix time: ``origin`` is then 00:00 UTC of the file's first request day and
  ``arrival_s`` counts from it; smaller values already count from the trace's own zero
  (``origin`` null). ``notes["time_base"]`` says which applied.
- ``app_configs.pickle`` → ``function_metrics`` (the daily values, ``window_s = 86400``,
  day *d* at ``window_start_s = 86400 d`` from the trace's first day, ``metric`` the source
  column, ``unit`` as the README gives it; NaN days are absent) and ``functions`` (one row per
  app: ``cpu_request_m`` = 1000 × the median daily vCPU, ``memory_limit_mb`` = 1000 × the
  median daily GB; the median over days is the authors' own summary in
  ``sample-scripts/plot_app_configs.py``; the source's field is the container's memory
  *request*, stored as its limit since the schema has no memory request).

Row accounting (``rows_read == accepted + rejected``): in a week file a source row is one
request (one position in the lists) of an app row whose lists are consistent, and each app
row that is not (a missing ``AppHash`` or list, a cell of the wrong type, lists whose lengths
differ from ``NumEvents``) counts as one row, rejected whole since its requests cannot be
paired up. A request is rejected for a missing or non-finite invocation time, and for a
negative or infinite execution time (a NaN execution time is kept as null and counted in
``notes``). In ``app_configs.pickle`` a row is an app, rejected for a missing ``AppHash``,
a missing or non-list cell, daily lists of different lengths, or a negative or infinite value.
``rejects.line`` is the 1-based row of the frame; ``raw`` names the app (and the request).

Large frames: a week file is one frame that pickle can only rebuild whole (about 5 GB
unpacked), so one file is the unit of memory; it is converted :data:`SLICE_EVENTS` requests
at a time (whole app rows, cut by ``NumEvents``) and each week is ingested as its own trace.

Download: the official files are 7-Zip archives (``app_configs.7z``; each week split into
volumes ``week_N.7z.001`` ...), plain files in the repository's ``compressed_data/``
(listed from its git tree; only ``app_configs.7z``'s size and SHA-256 were confirmed, from
the repository's blob, the week volumes' are not known here). 7-Zip is not in the Python
standard library, so ``servetrace ingest ibm_code_engine/<part>`` downloads the archive and
stops with the command that extracts it (``7z x``); ingest the ``.pickle`` by path. Tests use
frames written in the exact layout above (the real files are not shipped).
"""

from __future__ import annotations

import _compat_pickle
import io
import itertools
import pickle
import re
import reprlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from servetrace.extras import require
from servetrace.loaders.dataset import Dataset, Loaded, Part, RemoteFile, combine
from servetrace.loaders.schema import empty, validate
from servetrace.loaders.source import FormatError, sort_by

VERSION = "1"
SLICE_EVENTS = 5_000_000
"""Requests converted at once from a week frame (bounded memory beside the frame itself)."""
UNIX_TIME_S = 1e9
"""``InvocationTimes`` at or above this are Unix time (2001-09-09 on); below, trace-relative."""
DAY_S = 86400.0

KEY_COLUMNS = ["NamespaceHash", "AppHash"]
TRAFFIC_LISTS = ["InvocationTimes", "AppExecTimes", "TotalExecTimes", "PodHash"]
TRAFFIC_COLUMNS = [*KEY_COLUMNS, "NumEvents", *TRAFFIC_LISTS]
CONFIG_UNITS = {"AppContainerRequestCpu": "vCPU", "AppContainerRequestMemory": "GB",
                "AppContainerConcurrency": "requests", "AppMinScale": "instances"}
CONFIG_COLUMNS = [*KEY_COLUMNS, *CONFIG_UNITS]

# (module, name) of every global a trace frame may name: what pickle protocols 2-5 write for
# a DataFrame of object/int64/float64 blocks with a RangeIndex (pandas 1.x-3.x, NumPy 1.x-2.x
# spellings; protocol 0-2 names are read in Python 3 terms). Any other global, however
# harmless it looks, is refused.
ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("pandas", "DataFrame"), ("pandas.core.frame", "DataFrame"),
    ("pandas", "Series"), ("pandas.core.series", "Series"),
    ("pandas", "Index"), ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.base", "_new_Index"),
    ("pandas", "RangeIndex"), ("pandas.core.indexes.range", "RangeIndex"),
    ("pandas.core.internals.managers", "BlockManager"),
    ("pandas.core.internals.managers", "SingleBlockManager"),
    ("pandas._libs.internals", "_unpickle_block"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    ("builtins", "slice"), ("builtins", "bytearray"),
    ("_codecs", "encode"),
})

_BASE = ("https://github.com/ubc-cirrus-lab/ibm-cloud-code-engine-traces/raw/main/"
         "compressed_data/")
# Volumes per weekly archive, from the repository's tree (compressed_data/).
_VOLUMES = {1: 6, 2: 8, 3: 8, 4: 8, 5: 7, 6: 7, 7: 7, 8: 7, 9: 7, 10: 3}
_ARCHIVE = re.compile(r"^(app_configs\.7z|week_(\d+)\.7z\.\d{3})$")


class UnsafePickleError(FormatError):
    """A pickle names a global outside :data:`ALLOWED`; nothing in it was run."""


class FrameUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds only pandas DataFrames (see :data:`ALLOWED`).

    Pickle runs whatever callable a file names; restricting :meth:`find_class` to an explicit
    allow-list is the defence the Python documentation gives ("Restricting Globals").
    """

    def __init__(self, file: io.BufferedReader, path: Path):
        super().__init__(file)
        self.path = path
        head = file.peek(2)[:2]
        # pickle spells globals the Python 2 way below protocol 3 (its PROTO opcode comes first)
        self.python2_names = not (len(head) == 2 and head[0] == 0x80 and head[1] >= 3)

    def find_class(self, module: str, name: str) -> Any:
        module, name = _python3_name(module, name) if self.python2_names else (module, name)
        if (module, name) not in ALLOWED:
            raise UnsafePickleError(
                self.path, f"refused to unpickle the global {module}.{name}: a trace frame "
                "needs only pandas and NumPy classes, so this file is not one (it may be "
                "malicious); nothing in it was run")
        if module.startswith("numpy._core."):
            try:  # NumPy 1.x reads NumPy 2 pickles through its old module names
                return super().find_class(module, name)
            except ModuleNotFoundError:
                return super().find_class(module.replace("numpy._core.", "numpy.core.", 1),
                                          name)
        return super().find_class(module, name)


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """A protocol 0-2 pickle's Python 2 spelling of a global (``__builtin__.eval``) in Python
    3 terms, as :mod:`pickle` itself maps it when it loads one."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def read_frame(path: Path, columns: list[str]) -> Any:
    """The pandas DataFrame pickled in ``path``, rebuilt by :class:`FrameUnpickler`.

    Raises :class:`FormatError` naming the file when it is not a pickle, holds anything but
    a DataFrame, or lacks one of ``columns``.
    """
    require("pandas", "ibm", "reading the IBM Code Engine trace (pickled pandas frames)")
    try:
        with open(path, "rb") as fh:
            frame = FrameUnpickler(fh, path).load()
    except FormatError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, ImportError) as exc:
        raise FormatError(path, f"not a readable pickled frame ({type(exc).__name__}: "
                                f"{exc})") from exc
    if type(frame).__name__ != "DataFrame":
        raise FormatError(path, f"holds a {type(frame).__name__}, not a DataFrame")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise FormatError(path, f"frame lacks the column(s) {', '.join(missing)} (has "
                                f"{', '.join(map(str, frame.columns))})")
    return frame


def _arrow(values: np.ndarray, type_: pa.DataType, column: str) -> tuple[pa.Array, pa.Array]:
    """A frame column slice as Arrow (NaN/None cells and list items null) and, per row, why
    a cell could not be converted (null where it could)."""
    try:
        return (pa.array(values, type=type_, from_pandas=True),
                pa.nulls(len(values), pa.string()))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        pass
    # Error path only: find the offending cells one by one.
    cells, why = [], []
    for cell in values:
        try:
            cells.append(pa.array([cell], type=type_, from_pandas=True))
            why.append(None)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            cells.append(pa.nulls(1, type_))
            why.append(f"{column} is not {_kind(type_)}: {reprlib.repr(cell)}")
    return pa.concat_arrays(cells), pa.array(why, pa.string())


def _kind(type_: pa.DataType) -> str:
    if pa.types.is_list(type_):
        return f"a list of {_kind(type_.value_type)}"
    return "text" if pa.types.is_string(type_) else "numbers"


def _columns(frame: Any, lo: int, hi: int, types: dict[str, pa.DataType]) -> pl.DataFrame:
    """Rows ``lo:hi`` of the frame's ``types`` columns as Polars, with ``line`` (1-based) and
    ``_bad`` (the first unconvertible cell's description)."""
    out, bad = {}, {}
    for column, type_ in types.items():
        arr, why = _arrow(frame[column].to_numpy()[lo:hi], type_, column)
        out[column], bad[column] = pl.from_arrow(arr), pl.from_arrow(why)
    return pl.DataFrame(out).with_columns(
        pl.int_range(lo + 1, hi + 1, dtype=pl.Int64).alias("line"),
        pl.DataFrame(bad).select(pl.coalesce(pl.all())).to_series().alias("_bad"))


def slices(num_events: np.ndarray, max_events: int) -> list[tuple[int, int]]:
    """Row ranges ``[lo, hi)`` of about ``max_events`` requests each (by ``NumEvents``; an app
    row is never split, so a row larger than that is a slice of its own)."""
    n = len(num_events)
    if n == 0:
        return []
    counts = np.nan_to_num(np.asarray(num_events, dtype=np.float64), nan=0.0, posinf=0.0,
                           neginf=0.0).clip(min=0)
    # a row joins the slice in which its first request falls
    bucket = np.floor((np.cumsum(counts) - counts) / max_events)
    cuts = np.flatnonzero(np.diff(bucket)) + 1
    bounds = [0, *cuts.tolist(), n]
    return list(itertools.pairwise(bounds))


def _shown(*columns: str) -> list[pl.Expr]:
    """Columns as text for a message, ``null`` where missing (``pl.format`` drops nulls)."""
    return [pl.col(c).cast(pl.String).fill_null("null") for c in columns]


def _key_checks() -> list[tuple[pl.Expr, pl.Expr]]:
    return [(pl.col("_bad").is_not_null(), pl.col("_bad")),
            (pl.col("AppHash").is_null(), pl.lit("missing AppHash"))]


def _traffic_rows(rows: pl.DataFrame, path: Path, trace: str
                  ) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """One slice of app rows → (valid ``invocations`` rows, rejects, source rows read)."""
    lens = {c: pl.col(c).list.len() for c in TRAFFIC_LISTS}
    n = pl.col("NumEvents")
    checks = [*_key_checks(),
              *[(pl.col(c).is_null(), pl.lit(f"missing {c}")) for c in TRAFFIC_LISTS],
              (n.is_null() | ~n.is_finite() | (n < 0) | (n != n.floor()),
               pl.format("NumEvents is not a count: {}", *_shown("NumEvents"))),
              (pl.any_horizontal([lens[c] != n for c in TRAFFIC_LISTS]),
               pl.format("list lengths differ from NumEvents {}: InvocationTimes {}, "
                         "AppExecTimes {}, TotalExecTimes {}, PodHash {}",
                         n.cast(pl.Int64, strict=False), *lens.values()))]
    fails = pl.any_horizontal([f.fill_null(False) for f, _ in checks])
    bad_rows = rows.filter(fails).with_columns(
        pl.lit(str(path)).alias("source"),
        pl.format("NamespaceHash={} AppHash={} NumEvents={}",
                  *_shown("NamespaceHash", "AppHash", "NumEvents")).alias("raw"))
    _, row_rejects = validate("invocations", bad_rows.select(
        "source", "line", "raw", "NamespaceHash", "AppHash", "NumEvents", *TRAFFIC_LISTS,
        "_bad", pl.lit(0.0).alias("arrival_s")), trace=trace, checks=checks, fill_raw=False)
    events = rows.filter(~fails).select(
        "line", pl.col("NamespaceHash").cast(pl.Categorical).alias("tenant"),
        pl.col("AppHash").cast(pl.Categorical).alias("app"), *TRAFFIC_LISTS,
        pl.int_ranges(1, pl.col("InvocationTimes").list.len() + 1).alias("_k"),
    ).explode([*TRAFFIC_LISTS, "_k"]).with_columns(
        pl.col("InvocationTimes").alias("arrival_s"),
        (pl.col("AppExecTimes") / 1000.0).alias("duration_s"),
        (pl.col("TotalExecTimes") / 1000.0).alias("total_exec_s"),
        pl.col("PodHash").cast(pl.Categorical).alias("pod"))
    t, app_ms, total_ms = (pl.col(c) for c in TRAFFIC_LISTS[:3])
    event_checks = [
        (t.is_null(), pl.lit("missing InvocationTimes value")),
        (t.is_infinite(), pl.format("non-finite InvocationTimes value: {}", t)),
        (app_ms.is_infinite(), pl.format("non-finite AppExecTimes value: {}", app_ms)),
        (app_ms < 0, pl.format("negative AppExecTimes value: {} ms", app_ms)),
        (total_ms.is_infinite(), pl.format("non-finite TotalExecTimes value: {}", total_ms)),
        (total_ms < 0, pl.format("negative TotalExecTimes value: {} ms", total_ms)),
    ]
    event_fails = pl.any_horizontal([f.fill_null(False) for f, _ in event_checks])
    bad_events = events.filter(event_fails).with_columns(
        pl.lit(str(path)).alias("source"),
        pl.format("AppHash={} request {}: InvocationTimes={} AppExecTimes={} "
                  "TotalExecTimes={} PodHash={}", *_shown("app", "_k", *TRAFFIC_LISTS)
                  ).alias("raw"))
    _, event_rejects = validate("invocations", bad_events, trace=trace, checks=event_checks,
                                fill_raw=False)
    valid = events.filter(~event_fails).select(
        "arrival_s", "tenant", "app", pl.col("app").alias("function"), "duration_s",
        "total_exec_s", "pod")
    return valid, pl.concat([row_rejects, event_rejects]), bad_rows.height + events.height


def load_traffic(path: Path, trace: str, *, max_events: int = SLICE_EVENTS) -> Loaded:
    """A ``week_N.pickle`` onto ``invocations``, converted ``max_events`` requests at a time."""
    frame = read_frame(path, TRAFFIC_COLUMNS)
    types = {"NamespaceHash": pa.string(), "AppHash": pa.string(), "NumEvents": pa.float64(),
             "InvocationTimes": pa.list_(pa.float64()), "AppExecTimes": pa.list_(pa.float64()),
             "TotalExecTimes": pa.list_(pa.float64()), "PodHash": pa.list_(pa.string())}
    num_events, _ = _arrow(frame["NumEvents"].to_numpy(), pa.float64(), "NumEvents")
    bounds = slices(num_events.to_numpy(zero_copy_only=False), max_events)
    valid, rejects, read = [], [], 0
    for lo, hi in bounds:
        v, r, n = _traffic_rows(_columns(frame, lo, hi, types), path, trace)
        valid.append(v)
        rejects.append(r)
        read += n
    del frame  # the pandas frame ends here; only Arrow-backed Polars frames remain
    inv = pl.concat(valid, rechunk=False) if valid else empty("invocations").select(
        "arrival_s", "tenant", "app", "function", "duration_s", "total_exec_s", "pod")
    origin, base = None, "relative"
    if inv.height and inv["arrival_s"].min() >= UNIX_TIME_S:
        first = datetime.fromtimestamp(inv["arrival_s"].min(), UTC)
        origin = datetime(first.year, first.month, first.day, tzinfo=UTC)
        inv = inv.with_columns(pl.col("arrival_s") - origin.timestamp())
        base = "unix"
    inv = sort_by(inv, "arrival_s")
    notes = {"time_base": base, "apps": inv["app"].n_unique(),
             "null_app_exec_times": int(inv["duration_s"].null_count()),
             "null_total_exec_times": int(inv["total_exec_s"].null_count())}
    return Loaded(tables={"invocations": inv}, rejects=pl.concat(rejects) if rejects else
                  empty("rejects"), rows_read=read, origin=origin, notes=notes)


def load_configs(path: Path, trace: str) -> Loaded:
    """``app_configs.pickle`` onto ``functions`` (median configuration per app) and
    ``function_metrics`` (each day's configuration)."""
    frame = read_frame(path, CONFIG_COLUMNS)
    types = {"NamespaceHash": pa.string(), "AppHash": pa.string(),
             **{c: pa.list_(pa.float64()) for c in CONFIG_UNITS}}
    rows = _columns(frame, 0, len(frame), types)
    del frame
    lens = [pl.col(c).list.len() for c in CONFIG_UNITS]
    checks = [*_key_checks(),
              *[(pl.col(c).is_null(), pl.lit(f"missing {c}")) for c in CONFIG_UNITS],
              (pl.any_horizontal([ln != lens[0] for ln in lens[1:]]),
               pl.format("daily lists of different lengths: AppContainerRequestCpu {}, "
                         "AppContainerRequestMemory {}, AppContainerConcurrency {}, "
                         "AppMinScale {}", *lens)),
              *[(pl.col(c).list.eval((pl.element() < 0) | pl.element().is_infinite())
                 .list.any(), pl.lit(f"negative or infinite {c} value"))
                for c in CONFIG_UNITS]]
    fails = pl.any_horizontal([f.fill_null(False) for f, _ in checks])
    bad = rows.filter(fails).with_columns(
        pl.lit(str(path)).alias("source"),
        pl.format("NamespaceHash={} AppHash={}", *_shown("NamespaceHash", "AppHash")
                  ).alias("raw"))
    _, rejects = validate("functions", bad.with_columns(pl.col("AppHash").alias("function")),
                          trace=trace, checks=checks, fill_raw=False)
    good = rows.filter(~fails).rename({"NamespaceHash": "tenant", "AppHash": "app"})
    functions = good.select(
        "tenant", "app", pl.col("app").alias("function"),
        (pl.col("AppContainerRequestCpu").list.median() * 1000.0).alias("cpu_request_m"),
        (pl.col("AppContainerRequestMemory").list.median() * 1000.0).alias("memory_limit_mb"))
    daily = good.select(
        "tenant", pl.col("app").alias("function"), *CONFIG_UNITS,
        pl.int_ranges(0, pl.col("AppMinScale").list.len()).alias("_day"),
    ).explode([*CONFIG_UNITS, "_day"]).unpivot(
        index=["tenant", "function", "_day"], on=list(CONFIG_UNITS), variable_name="metric",
    ).drop_nulls("value").select(
        "tenant", "function", (pl.col("_day") * DAY_S).alias("window_start_s"),
        pl.lit(DAY_S).alias("window_s"), "metric", "value",
        pl.col("metric").replace_strict(CONFIG_UNITS).alias("unit"))
    notes = {"days": int(good["AppMinScale"].list.len().max() or 0),
             "apps_changing_cpu": int(good.select(
                 pl.col("AppContainerRequestCpu").list.drop_nulls().list.n_unique() > 1
             ).to_series().sum())}
    return Loaded(tables={"functions": functions, "function_metrics": daily},
                  rejects=rejects, rows_read=rows.height, accepted=good.height, notes=notes)


def _parts() -> tuple[Part, ...]:
    configs = Part("app_configs", (RemoteFile(
        _BASE + "app_configs.7z", "app_configs.7z", size=46676,
        sha256="d52e7cb3444d5fe6631f69b9730ec3f08c2cb7d4fcb06a7a0558f60c145b8b86"),),
        "daily configuration of the 1,780 apps (7-Zip archive of app_configs.pickle)")
    weeks = tuple(Part(f"week_{w}", tuple(
        RemoteFile(_BASE + f"week_{w}.7z.{v:03d}", f"week_{w}.7z.{v:03d}")
        for v in range(1, n + 1)),
        f"every request of week {w} (7-Zip volumes of week_{w}.pickle)")
        for w, n in _VOLUMES.items())
    return (configs, *weeks)


@dataclass(frozen=True)
class _Dataset(Dataset):
    """``week_3.pickle`` (or one of its archive volumes) is part ``week_3``."""

    def part_for_file(self, filename: str) -> Part | None:
        stem = re.sub(r"\.7z(\.\d{3})?$", "", filename.removesuffix(".gz"))
        stem = stem.removesuffix(".pickle").removesuffix(".pkl")
        return next((p for p in self.parts if p.name == stem), None) or \
            super().part_for_file(filename)


DATASET = _Dataset(
    name="ibm_code_engine",
    title="IBM Cloud Code Engine traces (62 days, per request, with app configurations)",
    citation=("Nima Nasiri, Nalin Munshi, Simon D. Moser, Marius Pirvu, Vijay Sundaresan, "
              "Daryl Maier, Thatta Premnath, Norman Böwing, Sathish Gopalakrishnan, Mohammad "
              "Shahrad. In-Production Characterization of an Open Source Serverless Platform "
              "and New Scaling Strategies. EuroSys 2026, ACM."),
    license="MIT",
    homepage="https://github.com/ubc-cirrus-lab/ibm-cloud-code-engine-traces",
    parts=_parts(),
    tables=("invocations", "functions", "function_metrics"),
)


def _tail(path: Path, size: int = 65536) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - size))
        return fh.read()


def detect(path: Path) -> bool:
    """An official archive by name, or a pickle whose header names pandas and whose tail
    holds this trace's column names (read as bytes; nothing is unpickled)."""
    path = Path(path)
    if not path.is_file():
        return False
    if _ARCHIVE.match(path.name):
        return True
    with open(path, "rb") as fh:
        head = fh.read(512)
    if len(head) < 2 or head[0] != 0x80 or head[1] < 2 or b"pandas" not in head:
        return False
    tail = _tail(path)
    return b"AppHash" in tail and (b"InvocationTimes" in tail or b"AppMinScale" in tail)


def _check_not_archive(path: Path) -> None:
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic == b"7z\xbc\xaf\x27\x1c" or _ARCHIVE.match(path.name):
        first = re.sub(r"\.\d{3}$", ".001", path.name)
        raise FormatError(path, "this is the official 7-Zip archive, which the Python "
                                f"standard library cannot extract; run `7z x {first}` in its "
                                "folder (all volumes beside it) and ingest the extracted "
                                ".pickle by path")


def load(paths: list[Path], trace: str) -> Loaded:
    """Each file (a week's requests or the app configurations) onto its tables."""
    loads = []
    for path in map(Path, paths):
        _check_not_archive(path)
        tail = _tail(path)
        loader = load_configs if b"AppMinScale" in tail and b"InvocationTimes" not in tail \
            else load_traffic
        loads.append((path.name, loader(path, trace)))
    return combine(loads)

