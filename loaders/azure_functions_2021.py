"""Azure Functions invocation trace 2021: one row per invocation, two weeks of January 2021.

Zhang et al., "Faster and Cheaper Serverless Computing on Harvested Resources", SOSP 2021
(data: ``Azure/AzurePublicDataset``, ``AzureFunctionsInvocationTrace2021.md``).

Source: ``AzureFunctionsInvocationTraceForTwoWeeksJan2021.txt`` (the official download is a
RAR archive holding it; the InVitro project ships a ``.csv`` copy of its first rows), header
``app,func,end_timestamp,duration``: ``end_timestamp`` is seconds from the trace's start and
``duration`` is seconds. Rows are ordered by start time, not by ``end_timestamp``.

Mapped onto ``invocations``: ``arrival_s = end_timestamp - duration`` (seconds from the
trace's own zero, not shifted: the source already counts from it and gives no wall-clock
origin, so ``origin`` is null), ``duration_s = duration`` (zero durations are kept, they are
real rows), ``app`` and ``function`` as given. The trace has no owner, so ``tenant`` is null.
Rows are sorted by ``arrival_s`` (stable: equal start times keep the file order, and a file
already in that order is only checked).

Rejected with a reason: a wrong number of columns, a missing ``app`` or ``func``, a missing,
unparsable or non-finite ``end_timestamp`` or ``duration``, and a negative ``duration``.

Download: the official file is a RAR archive, which the Python standard library cannot read
and which servetrace does not add a dependency for. ``servetrace ingest azure_functions_2021``
downloads it into the cache and then stops with a message naming the file: extract it
(``unrar x``, ``7z x`` or ``bsdtar -xf``) and ingest the ``.txt`` by path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from servetrace.loaders.dataset import Dataset, Loaded, Part, RemoteFile
from servetrace.loaders.schema import validate
from servetrace.loaders.source import (
    FormatError,
    csv_rows,
    csv_rows_at,
    expect_header,
    header_fields,
    parse_number,
    sort_by,
)

VERSION = "1"
HEADER = ["app", "func", "end_timestamp", "duration"]
NAME = "AzureFunctionsInvocationTraceForTwoWeeksJan2021"



@dataclass(frozen=True)
class _Dataset(Dataset):
    """The extracted ``.txt`` (or a ``.csv`` copy) belongs to the ``invocations`` part."""

    def part_for_file(self, filename: str) -> Part | None:
        if Path(filename.removesuffix(".gz")).stem == NAME:
            return self.part("invocations")
        return super().part_for_file(filename)


DATASET = _Dataset(
    name="azure_functions_2021",
    title="Azure Functions invocation trace 2021 (two weeks, per invocation)",
    citation=("Yanqi Zhang, Íñigo Goiri, Gohar Irfan Chaudhry, Rodrigo Fonseca, Sameh "
              "Elnikety, Christina Delimitrou, Ricardo Bianchini. Faster and Cheaper Serverless "
              "Computing on Harvested Resources. SOSP 2021, ACM, pp. 724-739."),
    license="CC-BY-4.0",
    homepage=("https://github.com/Azure/AzurePublicDataset/blob/master/"
              "AzureFunctionsInvocationTrace2021.md"),
    parts=(
        Part("invocations", (RemoteFile(
            f"https://github.com/Azure/AzurePublicDataset/raw/master/data/{NAME}.rar",
            f"{NAME}.rar"),),
            "every invocation of 119 apps over 14 days (RAR archive of a CSV .txt)"),
    ),
    tables=("invocations",),
)


def detect(path: Path) -> bool:
    """The trace's header (in a ``.csv`` or ``.txt``), or the official RAR archive."""
    path = Path(path)
    if path.is_file() and path.name == f"{NAME}.rar":
        return True
    return path.is_file() and header_fields(path) == HEADER


def _check_readable(path: Path) -> None:
    with open(path, "rb") as fh:
        magic = fh.read(7)
    if magic.startswith(b"Rar!\x1a\x07") or path.suffix == ".rar":
        raise FormatError(path, "this is the official RAR archive, which the Python standard "
                                "library cannot extract; extract it (unrar x, 7z x or "
                                f"bsdtar -xf {path}) and ingest the extracted "
                                f"{NAME}.txt by path")


def stream_header_lines(path: Path) -> int:
    """Rows stand alone: a large file is read in chunks, each after the header line
    (:mod:`servetrace.loaders.chunks`)."""
    return 1


def load(paths: list[Path], trace: str) -> Loaded:
    """Read the invocation CSV/TXT file(s) onto ``invocations``, sorted by start time."""
    frames = []
    for path in map(Path, paths):
        _check_readable(path)
        expect_header(path, HEADER)
        frames.append(csv_rows(path, HEADER, numeric=["end_timestamp", "duration"]))
    rows = pl.concat(frames, how="vertical_relaxed")
    fast = rows.schema["end_timestamp"] != pl.String
    end = pl.col("end_timestamp") if fast else parse_number(pl.col("end_timestamp"))
    dur = pl.col("duration") if fast else parse_number(pl.col("duration"))
    parsed = rows.with_columns(
        end.alias("_end"), dur.alias("duration_s"),
        pl.col("func").alias("function"),
    ).with_columns((pl.col("_end") - pl.col("duration_s")).alias("arrival_s"))
    checks = [
        (pl.col("app").is_null(), pl.lit("missing app")),
        (pl.col("func").is_null(), pl.lit("missing func")),
        (pl.col("_end").is_null(), pl.lit("missing or unparsable end_timestamp")),
        (~pl.col("_end").is_finite(), pl.lit("non-finite end_timestamp")),
        (pl.col("duration_s").is_null(), pl.lit("missing or unparsable duration")),
        (~pl.col("duration_s").is_finite(), pl.lit("non-finite duration")),
        (pl.col("duration_s") < 0, pl.lit("negative duration")),
    ]
    valid, rejects = validate("invocations", parsed, trace=trace, checks=checks)
    if rejects.height:
        rejects = _quote(rejects)
    valid = sort_by(valid.select("arrival_s", "app", "function", "duration_s"), "arrival_s")
    notes = {"zero_durations": int((valid["duration_s"] == 0).sum()),
             "negative_arrivals": int((valid["arrival_s"] < 0).sum())}
    return Loaded(tables={"invocations": valid}, rejects=rejects, rows_read=rows.height,
                  origin=None, notes=notes)


def _quote(rejects: pl.DataFrame) -> pl.DataFrame:
    """Reasons of rejected rows restated from their source text (read again, error path)."""
    texts = pl.concat([csv_rows_at(src, HEADER, grp["line"].to_list()).with_columns(
        pl.lit(src).alias("source")) for (src,), grp in rejects.group_by("source",
                                                                          maintain_order=True)])
    out = rejects.join(texts.select("source", "line", pl.col("reason").alias("_wrong"),
                                    "app", "func", "end_timestamp", "duration"),
                       on=["source", "line"], how="left", maintain_order="left")

    def number(col: str) -> pl.Expr:
        t, v = pl.col(col), parse_number(pl.col(col))
        return (pl.when(t.is_null()).then(pl.lit(f"missing {col}"))
                .when(v.is_null()).then(pl.format(f"unparsable {col}: '{{}}'", t))
                .when(~v.is_finite()).then(pl.format(f"non-finite {col}: {{}}", t)))

    dur = parse_number(pl.col("duration"))
    reason = pl.coalesce(
        pl.col("_wrong"),
        pl.when(pl.col("app").is_null()).then(pl.lit("missing app")),
        pl.when(pl.col("func").is_null()).then(pl.lit("missing func")),
        number("end_timestamp"), number("duration"),
        pl.when(dur < 0).then(pl.format("negative duration: {}", pl.col("duration"))),
        pl.col("reason"))
    return out.with_columns(reason.alias("reason")).select(rejects.columns)
