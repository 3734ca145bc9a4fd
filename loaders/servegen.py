"""Alibaba ServeGen per-client workload descriptions (Bailian production, 2025).

Source: ``alibaba/ServeGen``, ``data/<category>/<pool>/``: per client ``<id>`` two files,

- ``chunk-<id>-trace.csv``: no header, CRLF line endings, one line per 600 s window:
  ``window start s, rate req/s, cv, family, shape, scale`` where family is ``Gamma``,
  ``Weibull`` or empty (an inactive window, written ``0,0,0,,0,0``) → ``client_windows``;
- ``chunk-<id>-dataset.json``: ``{"<window start s>": {"<field>": "<PMF>"}}``, written with
  ``json.dump(indent=2)`` (one window key or field per line), where each PMF is a Python
  dict literal ``{value: prob, ...}`` → ``length_pmfs``, one row per (value, prob). Language
  pools give ``input_tokens``/``output_tokens`` per 6 h window; ``reason/deepseek-r1`` adds
  ``reason_ratio`` (float values); ``multimodal/mm-image`` gives ``text_tokens``,
  ``image_tokens``, ``audio_tokens``, ``video_tokens``, ``image_count``, ``audio_count``,
  ``video_count`` and ``output_tokens``.

``client`` is the chunk id as written in the file name. ``window_s`` is not in the files: it
is the smallest positive spacing between a client's window starts (600 s in the CSVs; 21600 s
between the JSON keys of every pool here), falling back to ServeGen's 600 s / 21600 s for a
client with a single window. Inactive windows are kept (rate 0, ``iat_family`` null), and
``shape``/``scale`` are null wherever there is no family (the source writes 0 placeholders).

The PMF strings are never evaluated (ServeGen's own ``clientpool.py`` calls ``eval``). Each
must match the grammar ``{NUMBER: NUMBER, ...}`` and is then split with vectorized string
operations. Rejected, with the line of the string in the JSON file: a string outside that
grammar, a probability outside [0, 1] or non-finite, a repeated value, and probabilities whose
sum differs from 1 by more than :data:`SUM_TOLERANCE` (the real files are within 2e-13).
An empty ``{}`` (a window in which the client was inactive) is accepted and yields no rows;
``notes["empty_pmfs"]`` counts them. A trace CSV line is rejected for a wrong number of
columns, an unparsable or negative number, an unknown family, or a family without its shape
and scale.

Row accounting: the source rows are the trace CSV lines plus the PMF strings (one per window
and field; a JSON line that is neither structure nor a window key nor a field is a row too,
and rejected). One PMF string becomes many ``length_pmfs`` rows, so ``Loaded.accepted``
counts accepted source rows, and ``rows_read == accepted + rejected``.

Xiang et al., "ServeGen: Workload Characterization and Generation of Large Language Model
Serving in Production", NSDI 2026 (arXiv 2505.09999).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from servetrace.loaders.dataset import Dataset, Loaded, Part, RemoteFile
from servetrace.loaders.schema import empty, validate
from servetrace.loaders.source import FormatError, csv_rows, head, parse_number, read_lines

VERSION = "1"
# The CSV has no header: its columns by number and meaning.
TRACE_COLUMNS = ["c1_start", "c2_rate", "c3_cv", "c4_family", "c5_shape", "c6_scale"]
FAMILIES = ("Gamma", "Weibull")
SUM_TOLERANCE = 1e-6
DEFAULT_TRACE_WINDOW_S = 600.0
DEFAULT_PMF_WINDOW_S = 21600.0

_FILE = re.compile(r"^chunk-(\d+)-(trace\.csv|dataset\.json)$")
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PAIR = rf"\s*{_NUM}\s*:\s*{_NUM}\s*"
_PMF = rf"^\{{{_PAIR}(?:,{_PAIR})*\}}$"
_EMPTY = r"^\{\s*\}$"
# Lines of the official json.dump(indent=2) layout.
_STRUCTURE = r'^\s*(\{|\}|\},|\{\}|\{\},|"[^"]*"\s*:\s*\{\s*\}\s*,?)\s*$'
_WINDOW = r'^\s*"([^"]*)"\s*:\s*\{\s*$'
_FIELD_PREFIX = r'^\s*"([^"]*)"\s*:\s*"'  # a field line: this, the PMF, then '"' [',']

_BASE = "https://raw.githubusercontent.com/alibaba/ServeGen/main/data/"
# Client ids as found in ../shared/traces/servegen (the m-small copy there lacks 1, 5, 8, 11
# and 38, which a fork lists; the upstream listing could not be confirmed).
_CLIENTS = {
    "language/m-small": (0, 2, 3, 4, 6, 7, 9, 10, *range(12, 38), 39, 40, 41, 42),
    "reason/deepseek-r1": tuple(range(73)),
    "multimodal/mm-image": tuple(range(35)),
}


def _files(pool: str) -> tuple[RemoteFile, ...]:
    """Both files of every client of a pool. ``name`` keeps ``<category>/<pool>/`` because
    every pool has a ``chunk-0-trace.csv``: a bare name would find the wrong pool's file in
    a mirror and in ``part_for_file``."""
    return tuple(RemoteFile(_BASE + f"{pool}/chunk-{c}-{kind}", f"{pool}/chunk-{c}-{kind}")
                 for c in _CLIENTS[pool] for kind in ("trace.csv", "dataset.json"))


DATASET = Dataset(
    name="servegen",
    title="Alibaba ServeGen per-client workload descriptions",
    citation=("Yuxing Xiang, Xue Li, Kun Qian, Yan Zhang, Wenyuan Yu, Ennan Zhai, Xin Jin, "
              "Jingren Zhou. ServeGen: Workload Characterization and Generation of Large "
              "Language Model Serving in Production. NSDI 2026, USENIX, pp. 1845-1859 "
              "(arXiv 2505.09999)."),
    license="Apache-2.0",
    homepage="https://github.com/alibaba/ServeGen",
    parts=(
        Part("language/m-small", _files("language/m-small"),
             "small language model pool: 14 days, 600 s rate windows, 6 h length PMFs"),
        Part("reason/deepseek-r1", _files("reason/deepseek-r1"),
             "DeepSeek-R1 reasoning pool: 1 day; PMFs of input, output and reason ratio"),
        Part("multimodal/mm-image", _files("multimodal/mm-image"),
             "image-language model pool: 1 day; PMFs of text, image, audio, video tokens"),
    ),
    tables=("client_windows", "length_pmfs"),
)


def detect(path: Path) -> bool:
    """A folder holding ``chunk-<id>-trace.csv``/``-dataset.json`` files, or one such file."""
    path = Path(path)
    if path.is_dir():
        return any(_FILE.match(p.name) for p in path.iterdir() if p.is_file())
    m = _FILE.match(path.name)
    if not m:
        return False
    first = head(path, 1)
    if m.group(2) == "trace.csv":
        return bool(first) and first[0].count(",") == len(TRACE_COLUMNS) - 1
    return bool(first) and first[0].lstrip().startswith("{")


def _chunk_files(paths: list[Path]) -> tuple[dict[str, Path], dict[str, Path]]:
    """Trace and dataset files by client id, from folders and/or single files."""
    traces: dict[str, Path] = {}
    datasets: dict[str, Path] = {}
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and _FILE.match(p.name))
            if not found:
                raise FormatError(path, "no chunk-<client>-trace.csv or -dataset.json files")
        elif _FILE.match(path.name):
            found = [path]
        else:
            raise FormatError(path, "not a ServeGen file (expected chunk-<client>-trace.csv "
                                    "or chunk-<client>-dataset.json)")
        for f in found:
            m = _FILE.match(f.name)
            if m is None:  # unreachable: every path in `found` matched above
                continue
            target = traces if m.group(2) == "trace.csv" else datasets
            if m.group(1) in target:
                raise FormatError(f, f"client {m.group(1)} given twice (also {target[m.group(1)]})")
            target[m.group(1)] = f
    return traces, datasets


def _by_client(files: dict[str, Path]) -> list[tuple[str, Path]]:
    return sorted(files.items(), key=lambda kv: int(kv[0]))


def _spacing(frame: pl.DataFrame, column: str, default: float) -> pl.DataFrame:
    """Per client: the smallest positive gap between distinct values of ``column``."""
    gaps = pl.col(column).unique().sort().diff().drop_nulls()
    return frame.group_by("client").agg(
        gaps.min().fill_null(default).alias("window_s"),
        (gaps.n_unique() > 1).alias("irregular"),
    )


def _client_windows(files: dict[str, Path], trace: str) -> tuple[pl.DataFrame, pl.DataFrame,
                                                                   int, int]:
    """The trace CSVs onto ``client_windows``: (valid, rejects, rows read, irregular)."""
    frames = [csv_rows(p, TRACE_COLUMNS, header=False).with_columns(pl.lit(c).alias("client"))
              for c, p in _by_client(files)]
    if not frames:
        return pl.DataFrame(), pl.DataFrame(), 0, 0
    rows = pl.concat(frames)
    parsed = rows.with_columns(
        parse_number(pl.col("c1_start")).alias("window_start_s"),
        parse_number(pl.col("c2_rate")).alias("rate"),
        parse_number(pl.col("c3_cv")).alias("cv"),
        pl.col("c4_family").alias("iat_family"),
        parse_number(pl.col("c5_shape")).alias("shape"),
        parse_number(pl.col("c6_scale")).alias("scale"),
    )
    fam = pl.col("iat_family")
    parsed = parsed.with_columns(pl.coalesce(
        pl.col("reason"),
        pl.when(fam.is_not_null() & ~fam.is_in(FAMILIES)).then(
            pl.format("unknown inter-arrival family: '{}'", fam)),
        pl.when(pl.col("window_start_s") < 0).then(
            pl.format("negative window start: {}", pl.col("c1_start"))),
        pl.when(pl.col("rate") < 0).then(pl.format("negative rate: {}", pl.col("c2_rate"))),
        pl.when(pl.col("cv") < 0).then(pl.format("negative cv: {}", pl.col("c3_cv"))),
        pl.when(fam.is_not_null() & (pl.col("c5_shape").is_null()
                                     | pl.col("c6_scale").is_null())).then(
            pl.format("{} without shape and scale", fam)),
    ).alias("reason"))
    text = {"window_start_s": "c1_start", "rate": "c2_rate", "cv": "c3_cv",
            "shape": "c5_shape", "scale": "c6_scale"}
    valid, rejects = validate("client_windows", parsed, trace=trace, text=text)
    valid = valid.drop("c4_family").with_columns(
        pl.when(fam.is_not_null()).then(pl.col("shape")).alias("shape"),
        pl.when(fam.is_not_null()).then(pl.col("scale")).alias("scale"),
    )
    spacing = _spacing(valid, "window_start_s", DEFAULT_TRACE_WINDOW_S)
    valid = valid.join(spacing.drop("irregular"), on="client", how="left")
    return valid, rejects, rows.height, int(spacing["irregular"].sum())


def _dataset_rows(path: Path, client: str) -> pl.DataFrame:
    """The source rows of a dataset JSON: one per field line (a PMF string) plus one per
    line that fits none of the official layout's line kinds; window keys forward-filled."""
    lines = read_lines(path)
    raw = pl.col("raw")
    start = raw.str.slice(0, 512)  # keys are short; PMF strings can be ~100 kB
    prefix = start.str.extract(_FIELD_PREFIX, 0)
    rest = raw.str.slice(prefix.str.len_chars()).str.strip_chars_end().str.strip_suffix(",")
    closed = rest.str.ends_with('"')
    out = lines.with_columns(
        start.str.extract(_WINDOW, 1).alias("window_key"),
        pl.when(closed).then(start.str.extract(_FIELD_PREFIX, 1)).alias("field"),
        pl.when(closed).then(rest.str.strip_suffix('"')).alias("pmf"),
        (raw.str.len_chars() < 512).and_(raw.str.contains(_STRUCTURE)).alias("structure"),
    ).with_columns(pl.col("window_key").forward_fill().alias("window_text"))
    rows = out.filter(pl.col("window_key").is_null() & ~pl.col("structure"))
    return rows.select(
        pl.lit(str(path)).alias("source"), "line", "raw", pl.lit(client).alias("client"),
        "window_text", "field", "pmf",
        pl.when(pl.col("field").is_null()).then(
            pl.lit("unrecognized line in dataset JSON (expected the official layout: "
                   "one window key or one field per line)"))
        .when(pl.col("window_text").is_null()).then(pl.lit("PMF outside a window"))
        .alias("reason"),
    )


def _length_pmfs(files: dict[str, Path], trace: str
                 ) -> tuple[pl.DataFrame, pl.DataFrame, int, int, dict[str, object]]:
    """The dataset JSONs onto ``length_pmfs``: (rows, rejects, rows read, accepted, notes)."""
    frames = [_dataset_rows(p, c) for c, p in _by_client(files)]
    if not frames:
        return pl.DataFrame(), pl.DataFrame(), 0, 0, {}
    rows = pl.concat(frames).with_row_index("row")
    pmf = pl.col("pmf").str.strip_chars()
    rows = rows.with_columns(
        parse_number(pl.col("window_text")).alias("window_start_s"),
        pmf.str.contains(_EMPTY).fill_null(False).alias("empty"),
    ).with_columns(pl.coalesce(
        pl.col("reason"),
        pl.when(pl.col("window_start_s").is_null() | ~pl.col("window_start_s").is_finite()
                | (pl.col("window_start_s") < 0)).then(
            pl.format("unparsable window start: '{}'", pl.col("window_text"))),
        pl.when(~pl.col("empty") & ~pmf.str.contains(_PMF)).then(
            pl.concat_str(pl.lit("malformed PMF (not a {value: prob} literal): '"),
                          pmf.str.slice(0, 80), pl.lit("'"))),
    ).alias("reason"))

    # Split the well-formed, non-empty PMFs into (value, prob) pairs: vectorized, no eval.
    good = rows.filter(pl.col("reason").is_null() & ~pl.col("empty"))
    pairs = good.select(
        "row", pmf.str.strip_chars("{} ").str.split(",").alias("pair"),
    ).explode("pair").with_columns(
        pl.col("pair").str.split_exact(":", 1).alias("kv"),
    ).select(
        "row",
        pl.col("kv").struct.field("field_0").str.strip_chars().cast(pl.Float64, strict=False)
        .alias("value"),
        pl.col("kv").struct.field("field_1").str.strip_chars().cast(pl.Float64, strict=False)
        .alias("prob"),
    )
    checks = pairs.group_by("row").agg(
        pl.col("prob").sum().alias("total"),
        (~pl.col("value").is_finite()).fill_null(True).any().alias("bad_value"),
        (~pl.col("prob").is_finite() | (pl.col("prob") < 0) | (pl.col("prob") > 1))
        .fill_null(True).any().alias("bad_prob"),
        (pl.col("value").n_unique() != pl.len()).alias("repeated"),
    ).with_columns(
        pl.when(pl.col("bad_value")).then(pl.lit("non-finite value in PMF"))
        .when(pl.col("bad_prob")).then(pl.lit("probability outside [0, 1] in PMF"))
        .when(pl.col("repeated")).then(pl.lit("repeated value in PMF"))
        .when((pl.col("total") - 1).abs() > SUM_TOLERANCE).then(
            pl.format("PMF probabilities sum to {} (tolerance {})", pl.col("total"),
                      pl.lit(f"{SUM_TOLERANCE:g}")))
        .alias("pmf_reason"),
    )
    rows = rows.join(checks.select("row", "pmf_reason", "total"), on="row", how="left")
    rows = rows.with_columns(pl.coalesce("reason", "pmf_reason").alias("reason"))

    bad = rows.filter(pl.col("reason").is_not_null())
    rejects = bad.select(pl.lit(trace).alias("trace"), "source", "line", "raw", "reason")
    ok = rows.filter(pl.col("reason").is_null())
    keys = rows.filter(pl.col("window_start_s").is_finite() & (pl.col("window_start_s") >= 0))
    spacing = _spacing(keys.select("client", "window_start_s"), "window_start_s",
                       DEFAULT_PMF_WINDOW_S)
    table = (pairs.join(ok.select("row", "client", "window_start_s", "field"), on="row")
             .join(spacing.drop("irregular"), on="client", how="left")
             .sort("row", maintain_order=True)
             .select("client", "window_start_s", "window_s", "field", "value", "prob"))
    sum_err = ok["total"].drop_nulls()
    notes: dict[str, object] = {
        "pmf_fields": sorted(ok["field"].unique().to_list()),
        "empty_pmfs": int(ok["empty"].sum()),
        "pmf_sum_tolerance": SUM_TOLERANCE,
        "pmf_max_sum_error": float((sum_err - 1).abs().max()) if sum_err.len() else None,
        "pmf_irregular_window_clients": int(spacing["irregular"].sum()),
    }
    return table, rejects, rows.height, ok.height, notes


def load(paths: list[Path], trace: str) -> Loaded:
    """Read a ServeGen client pool (a folder, or a list of chunk files and/or folders)."""
    traces, datasets = _chunk_files(paths)
    windows, w_rejects, w_read, irregular = _client_windows(traces, trace)
    pmfs, p_rejects, p_read, p_accepted, notes = _length_pmfs(datasets, trace)
    tables: dict[str, pl.DataFrame] = {}
    if w_read:
        tables["client_windows"] = windows.sort(
            pl.col("client").cast(pl.Int64), "window_start_s", maintain_order=True)
    if p_read:
        tables["length_pmfs"] = pmfs
    rejects = pl.concat([empty("rejects"), *(r for r in (w_rejects, p_rejects) if r.height)],
                        how="vertical_relaxed")
    cw = tables.get("client_windows")
    notes = {
        "clients": len(set(traces) | set(datasets)),
        "clients_without_trace_csv": sorted(set(datasets) - set(traces), key=int),
        "clients_without_dataset_json": sorted(set(traces) - set(datasets), key=int),
        "trace_rows_read": w_read,
        "pmf_rows_read": p_read,
        "active_windows": int(cw["iat_family"].is_not_null().sum()) if cw is not None else 0,
        "window_s_client_windows": sorted(cw["window_s"].unique().to_list()) if cw is not None
        else [],
        "window_s_length_pmfs": sorted(pmfs["window_s"].unique().to_list()) if p_read else [],
        "irregular_window_clients": irregular,
        **notes,
    }
    accepted = (windows.height if w_read else 0) + p_accepted  # one window per line
    return Loaded(tables=tables, rejects=rejects, rows_read=w_read + p_read,
                  accepted=accepted, origin=None, notes=notes)
