"""The local store: Parquet files per table and trace, and one DuckDB database over them.

Layout under the store folder (default ``./data``, else ``--store DIR`` or
``$SERVETRACE_STORE``)::

    servetrace.duckdb                       views over the Parquet files + the `traces` table
    <table>/_schema/empty.parquet           zero rows: keeps the view typed before any ingest
    <table>/<quoted trace>/<ingest_id>.parquet          one file per table, or
    <table>/<quoted trace>/<ingest_id>.<NNNNN>.parquet  several, in time order (streamed)

A trace is committed by one DuckDB transaction that replaces its row in ``traces``. The views
only show files whose ``ingest_id`` is committed there, so a reader never sees half a trace:
an ingest that dies before its commit leaves files nobody sees (swept by the next ingest),
and the previous version stays visible until the commit, after which its files are deleted.
Re-ingesting a trace therefore replaces it.

A large source is ingested as a stream of chunks (:mod:`servetrace.loaders.chunks`): each
chunk's tables are written as their own files before the next chunk is read, so memory stays
that of one chunk, and the files of a table follow each other in time, each with row-group
statistics that let a time-range query skip the others.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from servetrace.loaders import schema
from servetrace.loaders.dataset import Loaded
from servetrace.loaders.one_pass import OnePass, Written

DB_NAME = "servetrace.duckdb"

STORAGE_VERSION = "v1.0.0"
"""DuckDB storage format of ``servetrace.duckdb``: the oldest one DuckDB 1.x writes, which
every DuckDB since 1.0 opens, the command-line tool included (DuckDB 2.0 writes a format that
1.x cannot read; see https://duckdb.org/docs/stable/internals/storage)."""

LAYOUT = "servetrace store layout 3, schema " + hashlib.sha256("\n".join(
    f"{t}.{f.name} {f.type} {schema.comment(f)}"
    for t, s in {**schema.TABLES, "traces": schema.TRACES}.items() for f in s).encode()
).hexdigest()[:12]
"""Stamped into each view's comment: views and comments written by another layout or another
schema (a column added, a unit changed) are rebuilt on the next write."""

TRACE_COLUMNS = tuple(schema.TRACES.names)


def _sql_type(t: pa.DataType) -> str:
    if pa.types.is_list(t):
        return f"{_sql_type(t.value_type)}[]"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    return {pa.string(): "VARCHAR", pa.float64(): "DOUBLE", pa.int64(): "BIGINT",
            pa.bool_(): "BOOLEAN"}[t]


TRACES_DDL = "CREATE TABLE IF NOT EXISTS traces (\n{}\n)".format(",\n".join(
    f"    {f.name} {_sql_type(f.type)}{' PRIMARY KEY' if f.name == 'trace' else ''}"
    for f in schema.TRACES))


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# Where the views find their files. DuckDB resolves a relative path against the working
# directory, not the database file, and a view cannot call a table function with a subquery,
# so the views derive the store folder from the one constant that names the database file:
# ``temp_directory`` defaults to "<database path>.tmp" (DuckDB inserts the ".tmp" before a
# "?" in the path, which is undone here). The folder is then escaped for DuckDB's glob
# ("[", "*", "?" become one-character classes), so any folder name works. A connection whose
# temp_directory names no servetrace.duckdb (a store ATTACHed to another database, or a
# temp_directory set by hand) gets one error that says what to do instead of wrong rows.
_DB_FILE = r"regexp_replace(current_setting('temp_directory'), '\.tmp(\?|$)', '\1')"
_LOCATE_ERROR = ("servetrace: the views of this store read the Parquet files beside the "
                 "servetrace.duckdb that was opened, but the temp_directory of this connection "
                 "(' || current_setting('temp_directory') || ') names no servetrace.duckdb. "
                 "Open <store>/servetrace.duckdb itself (duckdb <store>/servetrace.duckdb, or "
                 "duckdb.connect(path, read_only=True)) rather than through ATTACH, and leave "
                 "temp_directory at its default.")
_ROOT_GLOB = (
    rf"regexp_replace(CASE WHEN regexp_matches({_DB_FILE}, '(^|[/\\])servetrace\.duckdb$') "
    rf"THEN regexp_replace({_DB_FILE}, 'servetrace\.duckdb$', '') "
    rf"ELSE error('{_LOCATE_ERROR}') END, '([\[*?])', '[\1]', 'g')")


class StoreError(RuntimeError):
    """The store cannot do what was asked (bad trace id, lost rows, locked database)."""


def _check_arrivals(trace: str, requests: pl.DataFrame, batch: bool) -> None:
    """Null ``arrival_s`` belongs to batch traces alone, and a batch trace has no arrivals:
    a trace is either one or the other, never a mix (``traces.batch`` says which)."""
    if "arrival_s" not in requests.columns or not requests.height:
        if not batch and requests.height:
            raise StoreError(f"{trace}: requests without arrival_s in a trace not flagged batch")
        return
    nulls = requests["arrival_s"].null_count()
    if batch and nulls != requests.height:
        raise StoreError(f"{trace}: a batch trace has no arrival times, but "
                         f"{requests.height - nulls} requests have one")
    if not batch and nulls:
        raise StoreError(f"{trace}: {nulls} requests have a null arrival_s in a trace not "
                         "flagged batch")
    missing = (requests["output_tokens"].null_count() if "output_tokens" in requests.columns
               else requests.height)
    if not batch and missing:
        raise StoreError(f"{trace}: {missing} requests have no output_tokens in a trace not "
                         "flagged batch")


class AccountingError(StoreError):
    """Rows read differ from rows stored plus rows rejected."""


@dataclass(frozen=True)
class Provenance:
    """Where a trace came from, recorded in ``traces`` beside the row counts."""

    dataset: str
    part: str | None
    format: str
    source_urls: tuple[str, ...]
    source_files: tuple[str, ...]
    sha256: tuple[str, ...]
    loader_version: str
    license: str
    citation: str


def default_root() -> Path:
    return Path(os.environ.get("SERVETRACE_STORE") or "data")


def check_trace_id(trace: str) -> str:
    """Trace ids are path-like names: letters, digits and ``_ . - / :``, not starting with _."""
    ok = trace and not trace.startswith(("_", "/", ".")) and all(
        c.isalnum() or c in "_.-/:" for c in trace) and ".." not in trace
    if not ok:
        raise StoreError(f"invalid trace id {trace!r}: use letters, digits and _ . - / :")
    return trace


def _quote(trace: str) -> str:
    return urllib.parse.quote(trace, safe="")


@contextlib.contextmanager
def file_lock(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold an advisory ``flock`` on ``path`` (created with its folder if need be) for the
    ``with`` block; yields True. With ``wait=False`` it yields False at once when another
    process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _file_name(ingest_id: str, part: str) -> str:
    """``<ingest_id>.parquet``, or ``<ingest_id>.<part>.parquet`` for one of several files."""
    return f"{ingest_id}.{part}.parquet" if part else f"{ingest_id}.parquet"


def _file_problem(path: Path, *, rows: int | None = None, full: bool = False) -> str | None:
    """Why a committed Parquet file cannot be trusted, or None: missing, unreadable footer,
    (with ``full``) unreadable data, or a row count other than ``rows``."""
    if not path.exists():
        return "committed file is missing"
    try:
        n = pq.read_table(path).num_rows if full else pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowException) as exc:
        return f"committed file cannot be read ({exc})"
    if rows is not None and n != rows:
        return f"committed file holds {n} rows, traces records {rows}"
    return None


class Store:
    """A store folder. Cheap to create; opens DuckDB only for the duration of a call."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()
        self.db_path = self.root / DB_NAME

    # -- connections -------------------------------------------------------------------
    def connect(self, *, read_only: bool = False,
                wait_s: float = 30.0) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with the views in place. Close it (or use ``with``).

        DuckDB lets one process write or several read; a connection refused for a lock held
        by another servetrace process (which holds it only for a commit or a query) is
        retried for up to ``wait_s`` seconds.
        """
        if read_only and not self.db_path.exists():
            raise StoreError(f"no store at {self.root} (no {DB_NAME} there): ingest a trace "
                             "first, or name the store with --store DIR")
        if not read_only:
            if "?" in str(self.db_path.resolve()):
                # DuckDB cuts the write-ahead log's path at a "?" (as if a URL's query), so a
                # commit there fails; reading such a store works.
                raise StoreError(f"{self.db_path}: DuckDB cannot write a database whose path "
                                 "contains '?'; write the store elsewhere, then copy or move "
                                 "it here (reading it here works)")
            self.root.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                con = duckdb.connect(str(self.db_path), read_only=read_only, config={} if read_only
                                     else {"storage_compatibility_version": STORAGE_VERSION})
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise StoreError(
                        f"{self.db_path}: cannot open the store database ({exc})") from exc
                time.sleep(0.02)
        if not read_only:
            self._ensure(con)
        return con

    def create(self) -> Store:
        """Create the store folder, its database and its views if they do not exist yet."""
        self.connect().close()
        return self

    def _ensure(self, con: duckdb.DuckDBPyConnection) -> None:
        """Create ``traces`` and the views, with a comment on every column, unless current."""
        self.root.mkdir(parents=True, exist_ok=True)
        con.execute(TRACES_DDL)
        have = {name for (name,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'traces'").fetchall()}
        for field in schema.TRACES:  # a store made before a column was added gets it (null)
            if field.name not in have:
                con.execute(f"ALTER TABLE traces ADD COLUMN {field.name} "
                            f"{_sql_type(field.type)}")
        for table in schema.TABLES:
            empty = self.root / table / "_schema" / "empty.parquet"
            if not empty.exists():
                empty.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(schema.TABLES[table].empty_table(), empty)
        current = {name for (name,) in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal AND comment LIKE ?",
            [f"%({LAYOUT})"]).fetchall()}
        if current >= set(schema.TABLES):
            return
        con.execute("BEGIN TRANSACTION")
        for field in schema.TRACES:
            con.execute(f"COMMENT ON COLUMN traces.{field.name} IS "
                        f"{_sql_str(schema.comment(field))}")
        for table, fields in schema.TABLES.items():
            con.execute(f"""
                CREATE OR REPLACE VIEW {table} AS
                SELECT * EXCLUDE (filename) FROM read_parquet(
                    {_ROOT_GLOB} || '{table}/*/*.parquet', filename = true,
                    union_by_name = true)
                WHERE split_part(parse_filename(filename), '.', 1)
                      IN (SELECT ingest_id FROM traces)
            """)
            con.execute(f"COMMENT ON VIEW {table} IS "
                        f"{_sql_str(f'canonical table {table} ({LAYOUT})')}")
            for field in fields:
                con.execute(f"COMMENT ON COLUMN {table}.{field.name} IS "
                            f"{_sql_str(schema.comment(field))}")
        con.execute("COMMIT")

    # -- reading -----------------------------------------------------------------------
    def traces(self) -> pl.DataFrame:
        """The ``traces`` metadata table."""
        with self.connect(read_only=True) as con:
            return con.sql("SELECT * FROM traces ORDER BY trace").pl()

    def sql(self, query: str) -> pl.DataFrame:
        """Run SQL over the store (views: every canonical table, plus ``traces``)."""
        with self.connect(read_only=True) as con:
            return con.sql(query).pl()

    def committed(self, trace: str | None = None) -> pl.DataFrame:
        """One row per committed Parquet file: trace, table, path, rows recorded in ``traces``.

        Every trace has a ``rejects`` file and one file per table it stored (even when empty).
        """
        meta = self.traces()
        if trace is not None:
            meta = meta.filter(pl.col("trace") == trace)
            if meta.is_empty():
                raise StoreError(f"no trace {trace!r} in store {self.root}")
        rows = []
        for t, ingest_id, tables, rejected, files in meta.select(
                "trace", "ingest_id", "tables", "rejected", "files").iter_rows():
            per_file = json.loads(files) if files else {
                table: {"": n} for table, n in {**json.loads(tables),
                                                 "rejects": rejected}.items()}
            rows += [{"trace": t, "table": table, "rows": n,
                      "path": str(self.root / table / _quote(t) / _file_name(ingest_id, part))}
                     for table, parts in per_file.items() for part, n in parts.items()]
        return pl.DataFrame(rows, schema={"trace": pl.String, "table": pl.String,
                                          "rows": pl.Int64, "path": pl.String})

    def files(self, table: str, trace: str | None = None) -> list[Path]:
        """The committed Parquet files of a table, optionally of one trace.

        Raises :class:`StoreError` naming a committed file that is missing or whose footer
        cannot be read (a damaged store: ``servetrace check`` lists every such file).
        """
        if table not in schema.TABLES:
            raise StoreError(f"unknown table {table!r}; known: {', '.join(schema.TABLES)}")
        out = []
        for path in self.committed(trace).filter(pl.col("table") == table)["path"]:
            problem = _file_problem(Path(path))
            if problem:
                raise StoreError(f"{path}: {problem}; the store is damaged (run servetrace "
                                 "check, then re-ingest the trace)")
            out.append(Path(path))
        return out

    def check(self, trace: str | None = None, *, full: bool = True) -> pl.DataFrame:
        """Verify every committed file: it exists, reads (in full, or only its footer with
        ``full=False``), and holds the rows that ``traces`` records. One row per file, with
        ``problem`` null where all is well."""
        files = self.committed(trace)
        problems = [_file_problem(Path(p), rows=n, full=full)
                    for p, n in files.select("path", "rows").iter_rows()]
        return files.with_columns(pl.Series("problem", problems, dtype=pl.String))

    def scan(self, table: str, trace: str | None = None) -> pl.LazyFrame:
        """A lazy Polars frame over a committed table (canonical schema even when empty)."""
        files = self.files(table, trace)
        if not files:
            return schema.empty(table).lazy()
        # (a file written in one pass may leave out columns that are null throughout)
        return pl.scan_parquet(files, glob=False, schema=schema.polars_schema(table),
                               missing_columns="insert", extra_columns="ignore").select(
            [pl.col(c).cast(t) for c, t in schema.polars_schema(table).items()])

    # -- writing -----------------------------------------------------------------------
    def write(self, trace: str, loaded: Loaded | Iterable[Loaded],
              provenance: Provenance | Callable[[], Provenance], *,
              replace: bool = False) -> dict[str, Any]:
        """Commit one trace atomically, replacing any earlier version. Returns its record.

        ``loaded`` is one :class:`Loaded`, or the chunks of a streamed source (an iterable
        of them, such as :class:`servetrace.loaders.chunks.Stream`): each chunk's tables are
        written as soon as it arrives, and all of them are committed together at the end.
        ``provenance`` may be a function, called once everything is written (a streamed
        source is hashed while it is read).

        Writers of one trace are serialized by a lock file held from the first file written
        to the sweep after the commit, so concurrent ingests of a trace both succeed, the later
        commit winning whole. Replacing a trace that holds a table this ingest does not
        write (cold starts, then a requests file under the same id) needs ``replace=True``.
        """
        check_trace_id(trace)
        ingest_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"
        with self._lock(trace):
            try:
                record = self._write(trace, ingest_id, loaded, provenance, replace)
            except BaseException:
                self._discard(trace, ingest_id)  # files of a failed ingest, at once
                raise
        self._sweep_orphans()
        return record

    def _write(self, trace: str, ingest_id: str, loaded: Loaded | Iterable[Loaded],
               provenance: Provenance | Callable[[], Provenance], replace: bool
               ) -> dict[str, Any]:
        pieces: Iterable[Any] = [loaded] if isinstance(loaded, Loaded) else loaded
        if isinstance(loaded, OnePass):  # written by DuckDB, unless it hands over to a Stream
            pieces = loaded.pieces(self.root / "requests" / _quote(trace), ingest_id)
        numbered = not isinstance(loaded, Loaded)
        files: dict[str, dict[str, int]] = {}
        span: list[float | None] = [None, None]
        ordered = True  # every table's files follow each other in arrival_s
        last: dict[str, float] = {}
        read = accepted = rejected = 0
        first: Loaded | None = None
        for k, piece in enumerate(pieces):
            first = first or piece
            if isinstance(piece, Written):  # its requests files are in place already
                read, accepted = read + piece.rows_read, accepted + piece.rows_read
                ordered = ordered and piece.ordered
                for part, n, lo, hi in piece.files:
                    files.setdefault("requests", {})[part] = n
                    if lo is not None:
                        ordered = ordered and lo >= last.get("requests", lo)
                        last["requests"] = hi
                        span = [lo if span[0] is None else min(span[0], lo),
                                hi if span[1] is None else max(span[1], hi)]
                part = f"{k:05d}"
                self._write_file(trace, "rejects", schema.empty("rejects"),
                                 _file_name(ingest_id, part))
                files.setdefault("rejects", {})[part] = 0
                continue
            n_accepted = piece.accepted if piece.accepted is not None else sum(
                f.height for f in piece.tables.values())
            if piece.rows_read != n_accepted + piece.rejects.height:
                where = f" (chunk {k + 1})" if numbered else ""
                raise AccountingError(
                    f"{trace}{where}: rows read ({piece.rows_read}) != rows accepted "
                    f"({n_accepted}) + rows rejected ({piece.rejects.height})")
            read, accepted = read + piece.rows_read, accepted + n_accepted
            rejected += piece.rejects.height
            part = f"{k:05d}" if numbered else ""
            for table, frame in {**piece.tables, "rejects": piece.rejects}.items():
                if table not in schema.TABLES:
                    raise StoreError(f"{trace}: loader produced unknown table {table!r}")
                if table == "requests":
                    _check_arrivals(trace, frame, piece.batch)
                if ("arrival_s" in frame.columns and table != "rejects"
                        and frame.height > frame["arrival_s"].null_count()):
                    lo, hi = frame["arrival_s"].min(), frame["arrival_s"].max()
                    ordered = ordered and lo >= last.get(table, lo)
                    last[table] = hi
                    span = [lo if span[0] is None else min(span[0], lo),
                            hi if span[1] is None else max(span[1], hi)]
                self._write_file(trace, table, frame, _file_name(ingest_id, part))
                files.setdefault(table, {})[part] = frame.height
        if first is None:
            raise StoreError(f"{trace}: the source gave nothing to ingest")
        origin, notes = first.origin, first.notes
        shift = 0.0
        if numbered:
            origin = getattr(loaded, "origin", origin)
            notes = getattr(loaded, "notes", None) or notes
            shift = getattr(loaded, "shift_s", 0.0)
            if not ordered or shift:
                for table in [t for t in files if t in last]:
                    files[table] = self._sort_files(trace, table, ingest_id, files[table], shift)
                span = [None if v is None else v + shift for v in span]
        if not replace:
            self._check_keeps_tables(trace, set(files) - {"rejects"})
        stored = {t: sum(parts.values()) for t, parts in files.items() if t != "rejects"}
        if callable(provenance):
            provenance = provenance()
        record = {
            "trace": trace,
            "dataset": provenance.dataset,
            "part": provenance.part,
            "format": provenance.format,
            "source_urls": list(provenance.source_urls),
            "source_files": list(provenance.source_files),
            "sha256": list(provenance.sha256),
            "origin": origin.replace(tzinfo=UTC) if origin else None,
            "start_s": span[0],
            "end_s": span[1],
            "rows_read": read,
            "rows_accepted": accepted,
            "rows": sum(stored.values()),
            "rejected": rejected,
            "tables": json.dumps(stored),
            "files": json.dumps(files) if numbered else None,
            "loader_version": provenance.loader_version,
            "license": provenance.license,
            "citation": provenance.citation,
            "notes": json.dumps(notes, default=str),
            "hash_block_tokens": first.hash_block_tokens,
            "hash_scope": first.hash_scope,
            "batch": first.batch,
            "ingest_id": ingest_id,
            "ingested_at": datetime.now(UTC),
        }
        self._commit(record)
        self._sweep(trace, keep=ingest_id)
        return record

    def _write_file(self, trace: str, table: str, frame: pl.DataFrame, name: str) -> None:
        """One Parquet file of a table, written under a temporary name, then renamed."""
        out = schema.conform(
            table, frame.with_columns(pl.lit(trace).cast(pl.Categorical).alias("trace")),
            categorical=True)
        folder = self.root / table / _quote(trace)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{name}.tmp"
        schema.write_parquet(table, out, tmp)
        os.replace(tmp, folder / name)

    def _sort_files(self, trace: str, table: str, ingest_id: str, parts: dict[str, int],
                    shift_s: float, rows_per_file: int = 2_000_000) -> dict[str, int]:
        """Rewrite a streamed table's files sorted by ``arrival_s`` (stably: ties keep their
        file and row order) and shifted by ``shift_s``, with DuckDB's sort, which spills to
        disk rather than holding the table in memory. Returns the new files' row counts."""
        folder = self.root / table / _quote(trace)
        old = [folder / _file_name(ingest_id, p) for p in parts]
        listed = ", ".join(_sql_str(str(p)) for p in old)
        with duckdb.connect(config={"memory_limit": "1GB", "preserve_insertion_order": True,
                                    "temp_directory": str(folder / f"{ingest_id}.sorting")}
                            ) as con:
            rel = con.sql(f"""
                SELECT * EXCLUDE (filename, file_row_number) REPLACE
                    (arrival_s + {float(shift_s)!r} AS arrival_s)
                FROM read_parquet([{listed}], filename = true, file_row_number = true)
                ORDER BY arrival_s, filename, file_row_number""")
            # to_arrow_reader is fetch_arrow_reader's name since DuckDB 1.4 (the old one warns)
            reader = getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader
            reader = reader(rows_per_file)
            out: dict[str, int] = {}
            for k, batch in enumerate(reader):
                frame = pl.from_arrow(pa.Table.from_batches([batch]))
                part = f"s{k:05d}"
                self._write_file(trace, table, frame, _file_name(ingest_id, part))
                out[part] = frame.height
        for path in old:
            path.unlink()
        shutil.rmtree(folder / f"{ingest_id}.sorting", ignore_errors=True)
        return out

    def _commit(self, record: dict[str, Any]) -> None:
        """The commit point: one transaction replaces the trace's row in ``traces``."""
        trace = record["trace"]
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            con.execute("DELETE FROM traces WHERE trace = ?", [trace])
            cols = ", ".join(TRACE_COLUMNS)
            marks = ", ".join("?" for _ in TRACE_COLUMNS)
            con.execute(f"INSERT INTO traces ({cols}) VALUES ({marks})",
                        [record[c] for c in TRACE_COLUMNS])
            con.execute("COMMIT")

    def remove(self, trace: str) -> None:
        """Drop a trace: its ``traces`` row first (the commit point), then its files."""
        with self._lock(trace):
            with self.connect() as con:
                con.execute("DELETE FROM traces WHERE trace = ?", [trace])
            self._sweep(trace, keep=None)

    def _lock(self, trace: str, *, wait: bool = True) -> contextlib.AbstractContextManager[bool]:
        """The trace's writer lock, ``_locks/<trace>.lock`` (see :func:`file_lock`)."""
        return file_lock(self.root / "_locks" / f"{_quote(trace)}.lock", wait=wait)

    def _check_keeps_tables(self, trace: str, tables: set[str]) -> None:
        if not self.db_path.exists():
            return
        old = self.traces().filter(pl.col("trace") == trace)
        if old.is_empty():
            return
        dropped = {t: n for t, n in json.loads(old["tables"][0]).items() if t not in tables}
        if dropped:
            held = ", ".join(f"{t} ({n:,} rows)" for t, n in sorted(dropped.items()))
            raise StoreError(
                f"trace {trace!r} already holds {held}, which this ingest would drop: ingest "
                f"all of its files together (servetrace ingest FILE1 FILE2 ... --trace "
                f"{trace}), or pass --replace (replace=True) to drop them")

    def _sweep_orphans(self) -> None:
        """Delete files that no commit names (an ingest killed before its commit), in every
        trace folder whose writer lock is free."""
        committed = dict(self.traces().select("trace", "ingest_id").iter_rows())
        folders = {p.name for table in schema.TABLES if (self.root / table).is_dir()
                   for p in (self.root / table).iterdir() if p.is_dir() and p.name != "_schema"}
        for name in folders:
            trace = urllib.parse.unquote(name)
            with self._lock(trace, wait=False) as mine:
                if mine:
                    self._sweep(trace, keep=committed.get(trace))

    def _discard(self, trace: str, ingest_id: str) -> None:
        """Delete the files of one uncommitted ingest of ``trace``."""
        for table in schema.TABLES:
            folder = self.root / table / _quote(trace)
            for path in folder.glob(f"{ingest_id}.*") if folder.is_dir() else ():
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)

    def _sweep(self, trace: str, keep: str | None) -> None:
        """Delete files of ``trace`` from superseded or uncommitted ingests."""
        for table in schema.TABLES:
            folder = self.root / table / _quote(trace)
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if keep is None or not path.name.startswith(keep):
                    if path.is_dir():  # a killed ingest's scratch folder (one pass, sorting)
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
            if keep is None:
                shutil.rmtree(folder, ignore_errors=True)
