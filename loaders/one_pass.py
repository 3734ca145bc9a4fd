"""One-pass ingest of a large plain CSV: DuckDB reads, types, checks and writes it.

A loader that defines ``one_pass_plan(path) -> Plan | None`` lets a large uncompressed CSV
skip the chunked reading of :mod:`servetrace.loaders.chunks`. DuckDB's CSV reader splits
the file into fields (quoting off; numbers typed by the reader, the rest text), SQL maps
and tests every row, and ``COPY`` writes the canonical columns straight to one Parquet file
(zstd) in the file's order, in row groups (:func:`rows_per_group`) whose statistics let a
time-range query skip the others. (DuckDB writes several files in parallel, not in order, so
the time partitions are row groups, not files; zstd at level 1, the level that cost least
here.) Meanwhile a thread hashes the file (SHA-256, which releases the GIL).

The plan's ``clean`` condition holds only for a row that the loader's own reading accepts
with exactly the values the plan's ``select`` computes. It is conservative: it may send a
good row the long way, never a bad one through. A row that is not clean, a CSV error
(wrong number of fields, invalid UTF-8, a number the reader cannot read, a line too long),
or a text value the loader would strip (white space, quotes) end this pass (blank lines
are no rows to either reader): its file is deleted and the loader's own reading ingests
the source, rejects and all. The stored trace is the same either way
(``tests/test_one_pass.py``); only the time differs (a file with a rejected row pays for
the aborted pass too). Rows out of time order are kept: the store sorts them afterwards
(:meth:`~servetrace.loaders.store.Store.write`), as it does a streamed file's.

The file written here carries the canonical Arrow schema (types, units, docs) of the columns
it holds in its ``ARROW:schema`` metadata. It leaves out the columns the format never fills
(DuckDB's writer spends as much on twenty-odd all-null columns as on the data); the store's
views and :meth:`~servetrace.loaders.store.Store.scan` read them as null. DuckDB writes every
Parquet column as optional: the required columns hold no nulls because ``clean`` requires
them, not because the file says so.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from servetrace.loaders import schema
from servetrace.loaders.dataset import Loaded
from servetrace.loaders.source import header_fields, remember_sha256

ABORT = "servetrace one-pass: a row needs the loader's own reading"
"""The error a row that is not clean raises inside DuckDB, ending the pass."""

_EXACT = 2**53  # float64 holds every integer below this


@dataclass(frozen=True)
class Plan:
    """How one CSV format maps onto ``requests`` in SQL.

    ``columns``: the header, in order; ``types``: DuckDB type of a field, typed by the CSV
    reader (``DOUBLE`` reads exactly what Polars reads, except ``1_000``: a file holding
    ``_`` anywhere is left to the loader), ``VARCHAR`` (text, ``NULL`` when empty) for the
    rest. ``derived``: name -> SQL over the fields, computed once per row.
    ``select``: canonical column -> SQL over fields and derived values; the other canonical
    columns are stored null. ``clean``: SQL condition, true only for rows the loader accepts
    with those values. ``text``: canonical string columns whose values the loader would
    strip of white space and quotes (and null when empty); checked on the written files.
    ``notes``: note -> Polars aggregate over the written ``requests``; ``fixed_notes``:
    notes whose value ``clean`` guarantees (a row that would change it is not clean).
    ``origin``: the instant ``arrival_s`` counts from, or None.
    """

    columns: tuple[str, ...]
    select: dict[str, str]
    clean: str
    types: dict[str, str] = field(default_factory=dict)
    derived: dict[str, str] = field(default_factory=dict)
    text: tuple[str, ...] = ()
    notes: dict[str, pl.Expr] = field(default_factory=dict)
    fixed_notes: dict[str, Any] = field(default_factory=dict)
    origin: datetime | None = None


# -- SQL pieces for plans ---------------------------------------------------------------
def ident(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def clean_number(column: str, *, required: bool = True) -> str:
    """A ``DOUBLE`` field that is finite and non-negative; an optional one may be empty.
    (DuckDB orders NaN above infinity.)"""
    x = ident(column)
    test = f"({x} >= 0 AND {x} < 'inf'::DOUBLE)"
    return test if required else f"({x} IS NULL OR {test})"


def clean_count(column: str) -> str:
    """A ``DOUBLE`` field holding a whole number from 0 to 2^53 (exact in float64, so the
    count stored from it equals the loader's, which reads integer text exactly)."""
    x = ident(column)
    return f"({x} >= 0 AND {x} < {_EXACT} AND {x} = floor({x}))"


def count(column: str) -> str:
    """A ``DOUBLE`` field as a count; exact where :func:`clean_count` holds."""
    return f"CAST({ident(column)} AS BIGINT)"


# -- the pass ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Written:
    """What one pass stored: ``requests`` files (part, rows, least and greatest
    ``arrival_s``)."""

    files: tuple[tuple[str, int, float, float], ...]
    rows_read: int
    origin: datetime | None
    notes: dict[str, Any]
    ordered: bool = True
    """False where rows are out of time order: the store sorts them (stably)."""
    shift_s: float = 0.0
    """Seconds every ``arrival_s`` still needs to count from ``origin``."""
    hash_block_tokens: None = None
    hash_scope: None = None
    batch: bool = False


class _Abort(Exception):
    """The pass cannot store this file as the loader would."""


def _hash_and_scan(path: Path, out: dict[str, Any], block: int = 1 << 22) -> None:
    """SHA-256 of ``path`` and whether it holds an underscore (run in a thread beside
    DuckDB; both release the GIL or hold it only for a ``memchr``)."""
    digest = hashlib.sha256()
    underscore = False
    with open(path, "rb") as fh:
        while data := fh.read(block):
            digest.update(data)
            underscore = underscore or data.find(b"_") >= 0
    out.update(sha256=digest.hexdigest(), underscore=underscore)


def sql_str(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def rows_per_group(chunk_bytes: int, path: Path) -> int:
    """Rows per Parquet row group: about as many as one chunk of the source holds (its
    first lines' mean length), at most DuckDB's default 122,880 (larger groups made the
    pass slower here, and smaller ones let a time-range query skip more)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    per_line = max(1, len(head) // max(1, head.count(b"\n")))
    return max(1, min(chunk_bytes // per_line, 122_880))


def write(path: Path, plan: Plan, trace: str, folder: Path, prefix: str,
          rows_per_group: int) -> Written:
    """Store ``path`` as ``folder/<prefix>.00000.parquet``; raises :class:`_Abort` (having
    deleted it) where the loader's own reading is needed."""
    stats: dict[str, Any] = {}
    hasher = threading.Thread(target=_hash_and_scan, args=(path, stats), daemon=True)
    hasher.start()
    staging = folder / f"{prefix}.onepass"
    try:
        return _write(path, plan, trace, folder, prefix, rows_per_group, staging, stats, hasher)
    except BaseException:
        hasher.join()
        for f in folder.glob(f"{prefix}.*"):
            shutil.rmtree(f) if f.is_dir() else f.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write(path: Path, plan: Plan, trace: str, folder: Path, prefix: str, group: int,
           staging: Path, stats: dict[str, Any], hasher: threading.Thread) -> Written:
    if header_fields(path) != list(plan.columns):
        raise _Abort("header")
    folder.mkdir(parents=True, exist_ok=True)
    staging.mkdir()
    fields = [f for f in schema.REQUESTS if f.name == "trace" or f.name in plan.select]
    cols = [f"{sql_str(trace) if f.name == 'trace' else plan.select[f.name]} AS {ident(f.name)}"
            for f in fields]
    arrow = base64.b64encode(pa.schema(fields).serialize().to_pybytes()).decode()
    types = "{" + ", ".join(f"{sql_str(c)}: {sql_str(plan.types.get(c, 'VARCHAR'))}"
                            for c in plan.columns) + "}"
    derived = "".join(f", {e} AS {ident(k)}" for k, e in plan.derived.items())
    query = f"""
        COPY (
            SELECT {', '.join(cols)}
            FROM (SELECT *{derived} FROM read_csv(
                {sql_str(str(path))}, columns = {types}, header = true, auto_detect = false,
                delim = ',', quote = '', escape = '', comment = '', strict_mode = true,
                null_padding = false))
            WHERE CASE WHEN {plan.clean} THEN true ELSE error({sql_str(ABORT)}) END
        ) TO {sql_str(str(staging / "part0.parquet"))} (
            FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, ROW_GROUP_SIZE {group},
            RETURN_STATS true,
            KV_METADATA {{'ARROW:schema': {sql_str(arrow)}}})
    """
    try:
        with duckdb.connect(config={"preserve_insertion_order": True,
                                    "memory_limit": "1GB"}) as con:
            con.execute("SET enable_progress_bar = false")
            result = con.execute(query).fetchall()
    except (duckdb.InvalidInputException, duckdb.ConversionException) as exc:
        raise _Abort(str(exc)) from None
    hasher.join()
    written = sorted((int(Path(r[0]).stem.removeprefix("part")), Path(r[0]), int(r[1]))
                     for r in result)
    rows = sum(n for _, _, n in written)
    if stats["underscore"] and any(t != "VARCHAR" for t in plan.types.values()):
        raise _Abort("an underscore, which DuckDB may have read as a digit separator")
    [(_, file, _)] = written
    target = folder / f"{prefix}.00000.parquet"
    file.rename(target)
    checks = _check_written(target, plan)
    if checks["odd"]:
        raise _Abort("text the loader would strip")
    origin, shift_s = plan.origin, 0.0
    if origin is not None and checks["min"] is not None and checks["min"] < 0:
        # an earlier row than the first: the zero moves to it, and the store sorts and
        # shifts the rows (as for a streamed file: exact to float rounding, not bit for bit)
        ahead_us = round(-checks["min"] * 1e6)
        origin, shift_s = origin - timedelta(microseconds=ahead_us), ahead_us * 1000 / 1e9
    remember_sha256(path, stats["sha256"])
    return Written(files=(("00000", rows, checks["min"], checks["max"]),), rows_read=rows,
                   origin=origin, notes={**checks["notes"], **plan.fixed_notes},
                   ordered=checks["ordered"], shift_s=shift_s)


def _check_written(path: Path, plan: Plan, batch_rows: int = 1 << 20) -> dict[str, Any]:
    """One read of the written file, a batch at a time (memory stays that of a batch):
    whether ``arrival_s`` is in order, its least and greatest value, the plan's notes
    (added over the batches) and whether a ``text`` column holds a value the loader would
    strip (tested on the distinct values)."""
    arrival = pl.col("arrival_s")
    ordered, low, high, last = True, None, None, None
    notes: dict[str, Any] = dict.fromkeys(plan.notes, 0)
    distinct: dict[str, set[str]] = {c: set() for c in plan.text}
    needed = ["arrival_s", *plan.text, *{c for e in plan.notes.values()
                                        for c in e.meta.root_names()}]
    for batch in pq.ParquetFile(path).iter_batches(batch_rows, columns=list(dict.fromkeys(
            needed))):
        frame = pl.DataFrame(batch)
        row = frame.select(
            (arrival.diff() < 0).any().alias("_back"), arrival.first().alias("_first"),
            arrival.last().alias("_last"), arrival.min().alias("_min"),
            arrival.max().alias("_max"), *(e.alias(k) for k, e in plan.notes.items())
        ).row(0, named=True)
        ordered = ordered and not row["_back"] and (
            last is None or row["_first"] is None or row["_first"] >= last)
        last = row["_last"] if row["_last"] is not None else last
        low = row["_min"] if low is None else min(low, row["_min"])
        high = row["_max"] if high is None else max(high, row["_max"])
        for k in plan.notes:
            notes[k] += row[k]
        for c in plan.text:
            distinct[c].update(frame[c].drop_nulls().unique().to_list())
    values = pl.DataFrame({"v": sorted({v for vs in distinct.values() for v in vs})},
                          schema={"v": pl.String})
    v = pl.col("v")
    odd = values.select(((v.str.strip_chars().str.strip_chars('"') != v) | (v == "")).any()
                        ).item()
    return {"ordered": ordered, "min": low, "max": high, "notes": notes, "odd": bool(odd)}


@dataclass
class OnePass:
    """A large CSV ingested by :func:`write` when it can be, else by ``fallback()``.

    :meth:`pieces` yields one :class:`Written` or the fallback's pieces; afterwards
    ``origin``, ``notes`` and ``shift_s`` are those of whichever ran (as on
    :class:`servetrace.loaders.chunks.Stream`), and ``took`` says which: ``"one-pass"``
    or ``"fallback: <why>"``.
    """

    mod: ModuleType
    path: Path
    trace: str
    chunk_bytes: int
    fallback: Callable[[], Loaded | Iterable[Loaded]]
    origin: Any = None
    notes: dict[str, Any] | None = None
    shift_s: float = 0.0
    took: str = ""

    def pieces(self, folder: Path, prefix: str) -> Iterator[Any]:
        plan = self.mod.one_pass_plan(self.path)
        try:
            if plan is None:
                raise _Abort("no plan for this file")
            done = write(self.path, plan, self.trace, folder, prefix,
                         rows_per_group(self.chunk_bytes, self.path))
        except _Abort as why:
            self.took = f"fallback: {str(why).splitlines()[0][:200]}"
        else:
            self.took, self.origin, self.notes = "one-pass", done.origin, done.notes
            self.shift_s = done.shift_s
            yield done
            return
        rest = self.fallback()
        if isinstance(rest, Loaded):
            yield rest
            self.origin, self.notes = rest.origin, rest.notes
            return
        yield from rest
        self.origin = getattr(rest, "origin", None)
        self.notes = getattr(rest, "notes", None)
        self.shift_s = getattr(rest, "shift_s", 0.0)
