"""`servetrace`: the command line. This module holds the app, the store commands (ingest,
list, sql, check, datasets) and the helpers every command shares (a trace id or a Parquet
file as a trace, errors as one line); the characterization commands are in
:mod:`servetrace.cli_analysis`, the synthesis commands (export, fit, generate, compare,
replay, serve, profile, demo) in :mod:`servetrace.cli_synth`.

Thin by design: each command parses its options, calls ``loaders``/``analysis``/``synth``,
and prints. Any error reaches the user as one line (file, line, problem) and exit code 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from servetrace import __version__, trace_files
from servetrace.extras import MissingExtra
from servetrace.loaders import Store, ingest
from servetrace.loaders.download import DownloadError
from servetrace.loaders.source import FormatError
from servetrace.loaders.store import StoreError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Load, characterize and synthesize LLM-serving and serverless traces.")
out = Console()
err = Console(stderr=True)

StoreOpt = Annotated[Path | None, typer.Option(
    "--store", help="store folder (default $SERVETRACE_STORE or ./data)")]
FormatOpt = Annotated[str, typer.Option("--format", help="table, csv or json")]

def _show_version(value: bool) -> None:
    if value:
        out.print(f"servetrace {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True,
        help="print the installed version and exit")] = False) -> None:
    """Load, characterize and synthesize LLM-serving and serverless traces."""


_ERRORS = (FormatError, DownloadError, StoreError, MissingExtra, KeyError, ValueError, OSError,
           pl.exceptions.PolarsError)


def _fail(exc: BaseException) -> None:
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    err.print(f"[bold red]error:[/] {escape(msg)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _print_frame(frame: pl.DataFrame, fmt: str, title: str | None = None) -> None:
    if fmt == "json":
        sys.stdout.write(json.dumps(frame.to_dicts(), default=str, indent=2) + "\n")
    elif fmt == "csv":
        sys.stdout.write(frame.write_csv())
    elif fmt == "table":
        table = Table(title=title, show_lines=False)
        for col in frame.columns:
            table.add_column(col, overflow="fold")
        for row in frame.iter_rows():
            table.add_row(*("" if v is None else f"{v:,}" if isinstance(v, int)
                            else f"{v:.6g}" if isinstance(v, float) else str(v) for v in row))
        out.print(table)
    else:
        raise ValueError(f"--format must be table, csv or json, not {fmt!r}")


@app.command("ingest")
def ingest_cmd(
    source: Annotated[list[str], typer.Argument(
        help="dataset name (e.g. azure_llm_2023 or azure_llm_2023/code) or a local "
             "file/folder; several local files go into one trace (--trace) in one commit")],
    as_format: Annotated[str | None, typer.Option("--as", help="format (dataset) name, "
                                                  "instead of detecting it")] = None,
    trace: Annotated[str | None, typer.Option("--trace", help="trace id to store under")] = None,
    replace: Annotated[bool, typer.Option(
        "--replace", help="let a re-ingest drop tables the trace holds that it does not "
                          "write")] = False,
    store: StoreOpt = None,
) -> None:
    """Load a trace into the store (replacing an earlier copy of the same trace)."""
    try:
        with err.status(f"ingesting {' '.join(source)} (download, parse, validate, write)"):
            records = ingest(source if len(source) > 1 else source[0], as_format=as_format,
                             trace=trace, store=Store(store), replace=replace)
    except _ERRORS as exc:
        _fail(exc)
    for r in records:
        out.print(f"ingested [bold]{escape(r['trace'])}[/]: {_accounting(r)}", highlight=False)
    empty = [r["trace"] for r in records if r["rows_read"] and not r["rows_accepted"]]
    if empty:
        _fail(ValueError(f"every row of {', '.join(empty)} was rejected (kept in rejects: "
                         "servetrace sql \"select line, reason from rejects where trace = "
                         f"'{empty[0]}' limit 20\")"))


def _accounting(record: dict) -> str:
    """Rows read, stored and rejected; for wide sources (one row, many values) the values
    stored are named as such, so that read = accepted + rejected is visible."""
    read, accepted, stored, rejected = (record[k] for k in ("rows_read", "rows_accepted",
                                                            "rows", "rejected"))
    if stored == accepted:
        return f"{read:,} rows read, {stored:,} stored, {rejected:,} rejected"
    return (f"{read:,} rows read, {accepted:,} accepted ({stored:,} rows stored: "
            f"{record['tables']}), {rejected:,} rejected")


def _listing(store: Store) -> pl.DataFrame:
    return store.sql("""
        SELECT t.trace, k.key AS "table", CAST(k.value AS BIGINT) AS rows, t.rows_read,
               t.rejected,
               t.start_s, t.end_s, t.end_s - t.start_s AS span_s, t.origin, t.dataset
        FROM traces t, json_each(t.tables) k
        ORDER BY t.trace, k.key
    """)


@app.command("list")
def list_cmd(store: StoreOpt = None, fmt: FormatOpt = "table") -> None:
    """The traces in the store: table, rows, rejected rows, time span, origin."""
    try:
        s = Store(store)
        _print_frame(_listing(s), fmt, title="traces")
        _require_intact(s)
    except _ERRORS as exc:
        _fail(exc)


@app.command("sql")
def sql_cmd(query: Annotated[str, typer.Argument(help="SQL over the store's views")],
            store: StoreOpt = None, fmt: FormatOpt = "table") -> None:
    """Run SQL over the store (views: requests, invocations, ..., rejects, traces)."""
    import duckdb

    try:
        s = Store(store)
        _require_intact(s)
        _print_frame(s.sql(query), fmt)
    except (*_ERRORS, duckdb.Error) as exc:
        _fail(exc)


def _require_intact(store: Store) -> None:
    """Fail naming the first committed file that is missing or unreadable: SQL over a
    damaged store would otherwise count its rows as absent."""
    bad = store.check(full=False).drop_nulls("problem")
    if bad.height:
        path, problem = bad.row(0)[-2:]
        raise StoreError(f"{path}: {problem} ({bad.height} damaged file(s): run servetrace "
                         "check, then re-ingest those traces)")


@app.command("check")
def check_cmd(trace: Annotated[str | None, typer.Option("--trace", help="only this trace")]
              = None, store: StoreOpt = None, fmt: FormatOpt = "table") -> None:
    """Verify the store: every committed file exists, reads in full and holds its rows."""
    try:
        report = Store(store).check(trace)
    except _ERRORS as exc:
        _fail(exc)
    bad = report.drop_nulls("problem")
    if fmt != "table" or bad.height:
        _print_frame(bad if fmt == "table" else report, fmt, title="damaged files")
    if bad.height:
        raise typer.Exit(1)
    err.print(f"{report.height} files of {report['trace'].n_unique()} traces: all present, "
              "readable and holding the rows traces records", highlight=False)


@app.command("datasets")
def datasets_cmd(fmt: FormatOpt = "table") -> None:
    """The datasets servetrace can download and load, with their parts and citations."""
    from servetrace.loaders import registry

    frame = pl.DataFrame([
        {"name": d.name, "title": d.title, "parts": ", ".join(p.name for p in d.parts),
         "tables": ", ".join(d.tables), "license": d.license, "citation": d.citation}
        for d in registry.datasets()])
    try:
        _print_frame(frame, fmt, title="datasets")
    except _ERRORS as exc:
        _fail(exc)


EVENT_TABLES = ("requests", "invocations", "invocation_counts")
TRACE_HELP = ("trace id in the store (see `servetrace list`), or a .parquet file in a "
              "canonical schema (e.g. from `servetrace generate`)")


def _rows(store: Store, trace: str) -> dict[str, int]:
    """Rows per canonical table of one stored trace (tables with no rows left out)."""
    row = store.traces().filter(pl.col("trace") == trace)
    if row.is_empty():
        raise StoreError(f"no trace {trace!r} in store {store.root} (see `servetrace list`)")
    return {k: int(v) for k, v in json.loads(row["tables"][0]).items() if int(v) > 0}


class _Trace:
    """A trace named on the command line: a trace id of the store, or a Parquet file in a
    canonical schema (what `servetrace generate` writes), the same to every command."""

    def __init__(self, source: str, store: Store):
        self.name = source
        self.store = store
        path = Path(source)
        self.path = path if path.suffix == ".parquet" or (path.is_file() and not
                                                          _in_store(store, source)) else None
        if self.path is not None:
            self.table, self.columns = trace_files.table_of(self.path)
            import pyarrow.parquet as pq

            self.rows = {self.table: pq.read_metadata(self.path).num_rows}
        else:
            self.rows = _rows(store, source)

    def scan(self, table: str) -> pl.LazyFrame:
        """One table of the trace (a file holds one: asking for another is an error)."""
        if self.path is None:
            return self.store.scan(table, self.name)
        if table != self.table:
            raise ValueError(f"{self.path}: holds a {self.table} table, not {table}")
        from servetrace.loaders import schema

        # as the store gives a table: every canonical column, in order, with its type
        # (checked castable by _file_table); absent ones null, others left out
        return pl.scan_parquet(self.path).select([
            pl.col(name).cast(dtype) if name in self.columns else
            (pl.lit(self.path.stem) if name == "trace" else pl.lit(None)).cast(dtype).alias(name)
            for name, dtype in schema.polars_schema(table).items()])

    @property
    def layout(self) -> tuple[int | None, str]:
        """(tokens per hash block, id scope): see :func:`_hash_layout` and
        :func:`servetrace.trace_files.hash_layout`."""
        if self.path is None:
            return _hash_layout(self.store, self.name)
        return trace_files.hash_layout(self.path)

    @property
    def meta(self) -> pl.DataFrame | None:
        """The store's ``traces`` row (a file has none)."""
        if self.path is not None:
            return None
        return self.store.traces().filter(pl.col("trace") == self.name)


def _in_store(store: Store, name: str) -> bool:
    return store.db_path.exists() and name in set(store.traces()["trace"])


def _trace(source: str, store: Store) -> _Trace:
    return _Trace(source, store)


def _first_table(store: Store, trace: str, tables: tuple[str, ...], what: str,
                 columns: set[str] | None = None, *, collect: bool = True
                 ) -> tuple[str, pl.DataFrame, dict[str, int]]:
    """The first of ``tables`` the trace has rows in, collected (or, with ``collect``
    false, its lazy scan), and its rows per table.

    With ``columns``, only those the table has are read: a step that needs 4 of the 30
    canonical columns holds a fraction of the trace in memory."""
    src = _trace(trace, store)
    rows = src.rows
    for table in tables:
        if rows.get(table):
            lf = src.scan(table)
            if columns is not None:
                lf = lf.select([c for c in lf.collect_schema().names() if c in columns])
            return table, (lf.collect() if collect else lf), rows
    raise ValueError(f"trace {trace!r} has no {what} rows (tables: {', '.join(rows) or 'none'})")


def _functions(store: Store, trace: str, rows: dict[str, int]) -> pl.DataFrame | None:
    return store.scan("functions", trace).collect() if rows.get("functions") else None


def _transpose(frame: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """Figures as rows and groups as columns: readable for a handful of groups."""
    names = (frame.select(pl.concat_str([pl.col(c).cast(pl.String).fill_null("∅")
                                         for c in by], separator="/")).to_series().to_list()
             if by else ["value"])
    body = frame.drop(by).with_columns(pl.col(pl.Float64).round_sig_figs(5)).cast(pl.String)
    body = body.select(c for c in body.columns if body[c].dtype == pl.String)  # no nested
    return body.transpose(include_header=True, header_name="figure", column_names=names)


def _show(frame: pl.DataFrame, by: list[str], fmt: str, title: str) -> None:
    if fmt == "table" and (frame.height == 1 or (by and frame.height <= 8)):
        frame = _transpose(frame, by)
    _print_frame(frame, fmt, title=title)


def _check_by(frame: pl.DataFrame | pl.LazyFrame, by: str | None, where: str) -> None:
    """Refuse a ``--by`` column that ``frame`` lacks or that is null in every row (one null
    group says nothing), naming the columns that have values."""
    from servetrace.analysis import frames

    if not by:
        return
    if by not in frame.collect_schema().names():
        problem = "no such column"
    elif frames.empty(frame, [by]):
        problem = "the column is empty (null in every row)"
    else:
        return
    raise ValueError(f"--by {by!r}: {problem} in {where}; columns with values: "
                     f"{', '.join(frames.groupable(frame)) or 'none'}")


ByOpt = Annotated[str | None, typer.Option("--by", help="group by this column (e.g. tenant, "
                                           "model, function, trigger; class: a mix's "
                                           "request_class)")]


def _emit(trace: str, parts: dict[str, pl.DataFrame], fmt: str) -> None:
    """Print named result frames as tables, or as one JSON document for scripts."""
    if fmt == "json":
        doc = {"trace": trace, **{k: v.to_dicts() for k, v in parts.items()}}
        sys.stdout.write(json.dumps(doc, default=str, indent=2) + "\n")
        return
    if fmt != "table":
        raise ValueError(f"--format must be table or json, not {fmt!r}")
    for name, frame in parts.items():
        _show(frame, [], "table", f"{trace}: {name.replace('_', ' ')}")


JsonOpt = Annotated[str, typer.Option("--format", help="table or json")]


def _hash_layout(store: Store, trace: str) -> tuple[int | None, str]:
    """(tokens per hash block, id scope) as ``traces`` records them, else as the dataset
    documents them (Mooncake: 512 tokens, global), else (None, "global")."""
    meta = store.traces().filter(pl.col("trace") == trace)
    if meta.is_empty():
        raise StoreError(f"no trace {trace!r} in store {store.root}")
    row = meta.row(0, named=True)
    if row.get("hash_block_tokens"):
        return int(row["hash_block_tokens"]), row.get("hash_scope") or "global"
    return (512 if row["dataset"] == "mooncake" else None), "global"


def _trace_or_file(source: str, store: Store, table: str = "requests") -> pl.DataFrame:
    """A canonical table from a Parquet file (e.g. `servetrace generate`'s) or a stored trace."""
    return _trace(source, store).scan(table).collect()


def _scan_trace_or_file(source: str, store: Store, table: str = "requests") -> pl.LazyFrame:
    """:func:`_trace_or_file`, lazily: nothing is read until a step asks for columns."""
    path = Path(source)
    if path.suffix == ".parquet" and path.exists():
        return pl.scan_parquet(path)
    if path.suffix == ".parquet":
        raise FileNotFoundError(f"{path}: no such file")
    _rows(store, source)
    return store.scan(table, source)


# the commands of the other two modules register on `app` when imported
from servetrace import cli_analysis, cli_synth  # noqa: E402, F401


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
