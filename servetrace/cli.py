"""`servetrace`: ingest traces, list them, query them with SQL, run the demo.

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
                 columns: set[str] | None = None) -> tuple[str, pl.DataFrame, dict[str, int]]:
    """The first of ``tables`` the trace has rows in, collected, and its rows per table.

    With ``columns``, only those the table has are read: a step that needs 4 of the 30
    canonical columns holds a fraction of the trace in memory."""
    src = _trace(trace, store)
    rows = src.rows
    for table in tables:
        if rows.get(table):
            lf = src.scan(table)
            if columns is not None:
                lf = lf.select([c for c in lf.collect_schema().names() if c in columns])
            return table, lf.collect(), rows
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
                                           "model, function, trigger)")]


@app.command("analyze")
def analyze_cmd(
    trace: Annotated[str, typer.Argument(help=TRACE_HELP)],
    by: ByOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    report: Annotated[Path | None, typer.Option("--report", help="write a self-contained "
                                                "HTML report here")] = None,
    png: Annotated[Path | None, typer.Option("--png", help="also save each chart as a PNG "
                                             "in this folder")] = None,
    store: StoreOpt = None,
) -> None:
    """Characterize arrivals (burstiness) and token lengths of a stored trace."""
    from servetrace.analysis import burstiness, plots, tokens
    from servetrace.analysis import report as reports

    if fmt not in ("table", "json"):
        _fail(ValueError(f"--format must be table or json, not {fmt!r}"))
    groups = [by] if by else []
    try:
        s = Store(store)
        with err.status(f"characterizing {trace}"):
            table, events, _ = _first_table(
                s, trace, EVENT_TABLES, "arrival", columns={
                    "arrival_s", "window_start_s", "window_s", "count", "input_tokens",
                    "output_tokens", "failed", *groups})
            _check_by(_trace(trace, s).scan(table), by, f"table {table} of {trace!r}")
            timed = burstiness.has_arrivals(events)
            arrivals = burstiness.summary(events, by=by) if timed else None
            lengths = tokens.summary(events, by=by) if table == "requests" else None
            sections = []
            if report or png:
                sections.append(reports.arrivals(events, by=by, summary=arrivals) if timed else
                                reports.Section("Arrivals and burstiness",
                                                notes=(burstiness.NO_ARRIVALS,)))
                if lengths is not None:
                    sections.append(reports.token_lengths(events, by=by, summary=lengths))
    except _ERRORS as exc:
        _fail(exc)
    if fmt == "json":
        doc = {"trace": trace, "table": table, "by": by,
               "arrivals": None if arrivals is None else arrivals.to_dicts(),
               "tokens": None if lengths is None else lengths.to_dicts()}
        if arrivals is None:
            doc["notes"] = [burstiness.NO_ARRIVALS]
        sys.stdout.write(json.dumps(doc, default=str, indent=2) + "\n")
    else:
        if arrivals is None:
            err.print(f"{trace}: arrivals: {burstiness.NO_ARRIVALS}", highlight=False)
        else:
            _show(arrivals, groups, fmt, f"{trace}: arrivals ({table})")
        if lengths is not None:
            _show(lengths, groups, fmt, f"{trace}: token lengths")
    if report:
        report.write_text(reports.render(f"servetrace analysis of {trace}", sections,
                                         meta=_trace(trace, s).meta))
        err.print(f"report: {report}", highlight=False)
    if png:
        png.mkdir(parents=True, exist_ok=True)
        charts = [c for section in sections for c in section.charts]
        seen: dict[str, int] = {}
        for chart in charts:  # named after what they show; a repeated title gets _2, _3 ...
            name = plots.file_name(chart, "")
            seen[name] = seen.get(name, 0) + 1
            suffix = f"_{seen[name]}" if seen[name] > 1 else ""
            plots.save_png(chart, png / f"{name}{suffix}.png")
        err.print(f"{len(charts)} charts: {png}", highlight=False)


@app.command("report")
def report_cmd(
    trace: Annotated[str, typer.Argument(help=TRACE_HELP)],
    output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write")],
    by: ByOpt = None,
    store: StoreOpt = None,
) -> None:
    """Every analysis that applies to a trace's tables, in one self-contained HTML file."""
    from servetrace.analysis import report as reports

    try:
        s = Store(store)
        src = _trace(trace, s)
        rows = src.rows
        events = [t for t in ("requests", "invocations", "invocation_counts") if t in rows]
        if by and events:  # a column some event table has must have values there
            having = [t for t in events if by in src.scan(t).collect_schema().names()]
            for table in having or events[:1]:
                _check_by(src.scan(table), by, f"table {table} of {trace!r}")
        with err.status(f"analysing {trace} ({', '.join(rows)})"):
            block, scope = src.layout
            sections = reports.for_trace({t: src.scan(t) for t in rows}, by=by,
                                         hash_block_tokens=block, hash_scope=scope)
            page = reports.render(f"servetrace report: {trace}", sections, meta=src.meta)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(page)
    except _ERRORS as exc:
        _fail(exc)
    plural = "s" * (len(sections) != 1)
    out.print(f"report ({len(sections)} section{plural}): {output}", highlight=False)


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


@app.command("kvcache")
def kvcache_cmd(
    trace: Annotated[str, typer.Argument(help="trace id or requests .parquet whose requests "
                                         "carry hash_ids")],
    capacity: Annotated[list[int] | None, typer.Option(
        "--capacity", help="LRU capacity in tokens (repeat for several)")] = None,
    scope: Annotated[str | None, typer.Option(
        "--scope", help="global or session (default: the trace's)")] = None,
    block_tokens: Annotated[int | None, typer.Option(
        "--block-tokens", help="tokens per hash block (default: the trace's)")] = None,
    fmt: JsonOpt = "table", store: StoreOpt = None,
) -> None:
    """KV-cache prefix reuse: infinite-cache hit ratios and an LRU curve over capacities."""
    from dataclasses import asdict

    from servetrace.analysis import kvcache

    try:
        src = _trace(trace, Store(store))
        known_block, known_scope = src.layout
        frame = src.scan("requests").collect()
        if frame.height and frame["hash_ids"].null_count() == frame.height:
            raise ValueError(f"{trace}: its requests carry no hash_ids (the source publishes "
                             "no prefix block ids), so prefix reuse cannot be computed; the "
                             "cache hits the source reports, if any, are in "
                             "requests.cached_tokens (servetrace sql)")
        block = block_tokens or known_block
        if block is None:
            raise ValueError(f"{trace}: its block size is not recorded; name it with "
                             "--block-tokens N")
        scope = scope or known_scope
        with err.status(f"prefix reuse of {trace}"):
            ratios = kvcache.hit_ratios(frame, block_tokens=block, scope=scope)
            parts = {"hit_ratios": pl.DataFrame([{"block_tokens": block, "scope": scope,
                                                  **asdict(ratios)}])}
            if capacity:
                parts["lru"] = kvcache.lru_curve(frame, capacity, block_tokens=block,
                                                 scope=scope)
        _emit(trace, parts, fmt)
    except _ERRORS as exc:
        _fail(exc)


@app.command("sessions")
def sessions_cmd(
    trace: Annotated[str, typer.Argument(help=TRACE_HELP)],
    by: ByOpt = None, fmt: JsonOpt = "table", store: StoreOpt = None,
) -> None:
    """Sessions, turns and agents: requests and turns per session, think/server/tool time
    and context growth per turn, sub-agent share, request types."""
    from servetrace.analysis import sessions

    try:
        frame = _trace(trace, Store(store)).scan("requests")
        with err.status(f"sessions of {trace}"):
            parts = {"sessions": sessions.summary(frame, by=by),
                     "turns": sessions.turn_stats(frame, by=by),
                     "request_types": sessions.request_type_mix(frame, by=by)}
        _emit(trace, parts, fmt)
    except _ERRORS as exc:
        _fail(exc)


@app.command("coldstart")
def coldstart_cmd(
    trace: Annotated[str, typer.Argument(help="trace id with a cold_starts table")],
    by: ByOpt = None,
    keep_alive: Annotated[float, typer.Option("--keep-alive", help="keep-alive (s) in the "
                                              "pod utility ratio")] = 60.0,
    fmt: JsonOpt = "table", store: StoreOpt = None,
) -> None:
    """Cold-start components, per-minute correlations, fits and pod utility (Huawei 2025)."""
    from servetrace.analysis import coldstart

    try:
        s = Store(store)
        _, cold, rows = _first_table(s, trace, ("cold_starts",), "cold_starts")
        functions = _functions(s, trace, rows)
        parts = {"summary": coldstart.summary(cold, functions=functions),
                 "components": coldstart.component_breakdown(cold, by=by, functions=functions),
                 "minute_correlation": coldstart.minute_correlation(cold),
                 "cold_start_time_fits": coldstart.fit_cold_start_times(cold)}
        if rows.get("invocations"):
            pods = coldstart.pod_utility(cold, s.scan("invocations", trace).collect(),
                                         keep_alive_s=keep_alive, functions=functions)
            parts["pod_utility"] = coldstart.pod_utility_summary(pods)
        _emit(trace, parts, fmt)
    except _ERRORS as exc:
        _fail(exc)


EngineOpt = Annotated[str, typer.Option(
    "--engine", help="local (this process) or ray (Ray tasks; pip install 'servetrace[ray]')")]
RayAddressOpt = Annotated[str | None, typer.Option(
    "--ray-address", help="Ray cluster to join (auto, ray://host:10001; default: start a "
    "local Ray instance)")]
PartitionsOpt = Annotated[int | None, typer.Option(
    "--partitions", help="with --engine ray: parallel tasks (default 4 per CPU)")]


@app.command("keepalive")
def keepalive_cmd(
    trace: Annotated[str, typer.Argument(help="trace id with invocations or invocation_counts")],
    by: Annotated[str, typer.Option("--by", help="unit with its own instance: app or "
                                    "function")] = "app",
    keep_alive: Annotated[list[float] | None, typer.Option(
        "--keep-alive", help="fixed keep-alive lengths (s) of the trade-off curve "
        "(repeatable; default 0 s to 4 h)")] = None,
    memory_mb: Annotated[float | None, typer.Option(
        "--memory-mb", help="instance memory where the trace gives none")] = None,
    seed: Annotated[int, typer.Option(help="seed of the within-minute spreading")] = 0,
    engine: EngineOpt = "local", ray_address: RayAddressOpt = None,
    partitions: PartitionsOpt = None, fmt: JsonOpt = "table", store: StoreOpt = None,
) -> None:
    """Keep-alive policies (none, fixed, hybrid histogram): cold starts against idle memory.

    With --engine ray the units (apps or functions) are simulated as parallel Ray tasks that
    read the store's Parquet files themselves; the results equal the local engine's.
    """
    from dataclasses import asdict

    from servetrace.analysis import keepalive
    from servetrace.analysis.engine import get_engine

    try:
        s = Store(store)
        eng = None if engine == "local" and ray_address is None else get_engine(engine,
                                                                                 ray_address)
        tables = ("invocations", "invocation_counts")
        if eng is None:
            table, events, rows = _first_table(s, trace, tables,
                                               "invocations or invocation_counts")
            n = events.height
        else:  # workers read the files: the driver only plans
            rows = _rows(s, trace)
            table = next((t for t in tables if rows.get(t)), None)
            if table is None:
                raise ValueError(f"trace {trace!r} has no invocations or invocation_counts "
                                 f"rows (tables: {', '.join(rows) or 'none'})")
            events, n = s.scan(table, trace), rows[table]
        functions = _functions(s, trace, rows)
        options = {"by": by, "memory_mb": memory_mb, "functions": functions, "seed": seed}
        if eng is not None:
            options |= {"engine": eng, "partitions": partitions}
        with err.status(f"simulating keep-alive policies over {n:,} {table} rows"):
            curve = keepalive.tradeoff(events, **({"keep_alive_s": keep_alive}
                                                  if keep_alive else {}), **options)
            hybrid = keepalive.simulate(events, keepalive.HybridHistogram(), **options)
        parts = {"tradeoff": curve,
                 "hybrid_overall": pl.DataFrame([asdict(keepalive.overall(hybrid))]),
                 "hybrid_worst_units": hybrid.sort("cold_fraction", descending=True).head(10)}
        _emit(trace, parts, fmt)
    except _ERRORS as exc:
        _fail(exc)


@app.command("fairness")
def fairness_cmd(
    trace: Annotated[str, typer.Argument(help="trace id with a requests table")],
    by: Annotated[str, typer.Option("--by", help="tenant column")] = "tenant",
    scheduler: Annotated[list[str] | None, typer.Option(
        "--scheduler", help="simulate: fcfs, vtc, fairserve (repeatable)")] = None,
    prefill: Annotated[float | None, typer.Option(help="server prompt tokens/s")] = None,
    decode: Annotated[float | None, typer.Option(help="server decode iterations/s")] = None,
    max_batch: Annotated[int | None, typer.Option(help="sequences per batch")] = None,
    engine: EngineOpt = "local", ray_address: RayAddressOpt = None,
    fmt: JsonOpt = "table", store: StoreOpt = None,
) -> None:
    """Per-tenant concentration of demand and a FCFS/VTC/FairServe simulation on one server.

    The server options default to servetrace.analysis.fairness.DEFAULT_SERVER (8,000 prompt
    tokens/s, 30 decode iterations/s, 64 sequences: a stand-in for one model replica, not a
    measurement). With --engine ray each scheduler's simulation is one Ray task.
    """
    from servetrace.analysis import fairness
    from servetrace.analysis.engine import get_engine

    try:
        s = Store(store)
        eng = None if engine == "local" and ray_address is None else get_engine(engine,
                                                                                 ray_address)
        requests = _trace_or_file(trace, s)
        parts = {"summary": fairness.summary(requests, by=by),
                 "concentration": fairness.concentration(requests, by=by)}
        d = fairness.DEFAULT_SERVER
        server = fairness.Server(prefill or d.prefill_tokens_per_s,
                                 decode or d.decode_tokens_per_s, max_batch or d.max_batch)
        names = scheduler or ["fcfs", "vtc"]
        with err.status(f"simulating {', '.join(names)} over {requests.height:,} requests"):
            results = fairness.simulate_runs(requests, [(server, n) for n in names], by=by,
                                             engine=eng)
        for name, result in zip(names, results, strict=True):
            parts[f"{name}_service_difference"] = fairness.service_difference(result)
            parts[f"{name}_latency"] = fairness.tenant_latency(result).sort(
                "n", descending=True).head(20)
            if result.throttles.height:
                parts[f"{name}_throttles"] = result.throttles
        _emit(trace, parts, fmt)
    except _ERRORS as exc:
        _fail(exc)


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


@app.command("export")
def export_cmd(
    source: Annotated[str | None, typer.Argument(
        help="trace id in the store, or a .parquet file in a canonical schema (e.g. from "
             "`servetrace generate`); not needed with --to help")] = None,
    to: Annotated[str, typer.Option("--to", help="format: " + ", ".join(
        ["vllm-mooncake", "aiperf-mooncake", "aiperf-bailian", "sglang-mooncake",
         "guidellm-weka", "weka", "vidur", "vidur-pypi", "vhive", "faasrail",
         "invocations-csv", "..."]) + " (`--to help` lists them all)")] = "help",
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="file (folder for vhive and weka)")] = None,
    block_size: Annotated[int | None, typer.Option(
        "--block-size", help="tokens per hash id the consumer builds (default: the "
        "format's; the trace's ids are re-chunked to it)")] = None,
    keep_timestamps: Annotated[bool, typer.Option(
        "--keep-timestamps", help="keep the trace's time offsets instead of counting from "
        "the first request (formats that rebase by default)")] = False,
    hash_block_tokens: Annotated[int | None, typer.Option(
        "--hash-block-tokens", help="tokens per hash id in the source (default: the "
        "trace's; inferred for a Parquet file)")] = None,
    hash_scope: Annotated[str | None, typer.Option(
        "--hash-scope", help="global or session: the source ids' scope (default: the "
        "trace's; global for a Parquet file)")] = None,
    option: Annotated[list[str] | None, typer.Option(
        "--set", "--option", "-O", help="KEY=VALUE, another option of the format (e.g. "
        "--set date=2024-01-01, -O granularity=second for vhive, -O workloads=FILE for "
        "faasrail; `--to help` lists them); repeat for several")] = None,
    store: StoreOpt = None,
) -> None:
    """Write a trace in a format another tool replays, and print the command line that
    replays it (`--to help` lists the formats and their options)."""
    from servetrace.synth.export import FORMATS, export, options

    if to == "help":
        for name, module in FORMATS.items():
            first = " ".join((module.__doc__ or "").split()).split(". ")[0]
            out.print(f"{name:22} {first}", highlight=False, soft_wrap=True)
            opts = ", ".join(f"{k}={v}" for k, v in options(name).items() if k != "functions")
            out.print(f"{'':22} options: {opts or 'none'}", highlight=False, soft_wrap=True)
        return
    try:
        if source is None or output is None:
            raise ValueError(f"--to {to}: give a SOURCE trace and -o OUTPUT "
                             f"(only --to help needs neither)")
        accepted = options(to)
        given = _export_options(to, option or [])
        flags = {"block_size": block_size, "hash_block_tokens": hash_block_tokens,
                 "hash_scope": hash_scope, "rebase": False if keep_timestamps else None}
        for key, value in flags.items():
            if value is None:
                continue
            if key not in accepted:
                shown = "--keep-timestamps" if key == "rebase" else "--" + key.replace("_", "-")
                raise ValueError(f"{to}: {shown} does not apply (it accepts "
                                 f"{', '.join(accepted) or 'no options'})")
            given[key] = value
        s = Store(store)
        tables = getattr(FORMATS.get(to), "TABLES", None)
        if tables is not None and not Path(source).exists():
            _, frame, rows = _first_table(s, source, tables, " or ".join(tables))
            if "functions" in accepted:
                given.setdefault("functions", _functions(s, source, rows))
            result = export(frame, to, output, **given)
        elif tables is not None:
            result = export(_trace_or_file(source, s, "invocations"), to, output, **given)
        else:
            if "hash_block_tokens" in accepted and not Path(source).suffix == ".parquet":
                block, scope = _hash_layout(s, source)
                if block is not None:
                    given.setdefault("hash_block_tokens", block)
                    given.setdefault("hash_scope", scope)
            frame = _trace_or_file(source, s)
            if ("hash_scope" in accepted and "hash_scope" not in given
                    and "hash_ids" in frame.columns and "session" in frame.columns):
                err.print("note: hash ids taken as one namespace for the whole file; pass "
                          "--hash-scope session if they are local to each session",
                          highlight=False, soft_wrap=True)
            result = export(frame, to, output, **given)
    except _ERRORS as exc:
        _fail(exc)
    out.print(f"wrote {to}: {result.path}", highlight=False, soft_wrap=True)
    if result.command:
        out.print(f"replay it with:\n  {result.command}", highlight=False, soft_wrap=True)
    for note in result.notes:
        err.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)


def _export_defaults(to: str) -> dict[str, object]:
    from servetrace.synth.export import options

    return options(to)


def _export_options(to: str, given: list[str]) -> dict[str, object]:
    """``--option KEY=VALUE`` pairs typed as the format's defaults (bool, int, float, str);
    an unknown key or a value of the wrong type is a ``ValueError`` naming it."""
    defaults = _export_defaults(to)
    parsed: dict[str, object] = {}
    for item in given:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--option {item!r}: expected KEY=VALUE")
        if key not in defaults:
            raise ValueError(f"--option {key}: {to} accepts "
                             f"{', '.join(defaults) or 'no options'}")
        default = defaults[key]
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"--option {key}={value}: expected true or false")
            parsed[key] = value.lower() in ("true", "1", "yes")
        elif isinstance(default, int | float) or key in ("first_minute", "last_minute"):
            kind = float if isinstance(default, float) else int
            try:
                parsed[key] = kind(value)
            except ValueError as exc:
                raise ValueError(f"--option {key}={value}: expected "
                                 f"{'a number' if kind is float else 'an integer'}") from exc
        elif key == "functions":
            raise ValueError("--option functions: the stored trace's functions table is used")
        else:
            parsed[key] = value
    return parsed


def _serverless_source(source: str, store: Store
                       ) -> tuple[pl.DataFrame, pl.DataFrame | None] | None:
    """(table, functions) when ``source`` is a serverless trace (the table decides: a stored
    trace with invocations or invocation_counts and no requests, or a Parquet file with
    ``function`` and no ``input_tokens`` column); None otherwise."""
    path = Path(source)
    if path.suffix == ".parquet":
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        cols = pl.read_parquet_schema(path)
        return (pl.read_parquet(path), None) if ("function" in cols
                                                 and "input_tokens" not in cols) else None
    if path.exists():
        return None
    rows = _rows(store, source)
    if rows.get("requests"):
        return None
    for table in ("invocations", "invocation_counts"):
        if rows.get(table):
            return store.scan(table, source).collect(), _functions(store, source, rows)
    return None


def _model_type(path: Path) -> str:
    """``type`` of a model JSON file (ServerlessModel or WorkloadModel)."""
    try:
        head = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line {exc.lineno} column {exc.colno}: not JSON "
                         f"({exc.msg})") from exc
    return str(head.get("type")) if isinstance(head, dict) else ""


@app.command("fit")
def fit_cmd(
    trace: Annotated[str, typer.Argument(help="trace id in the store, or a requests .parquet")],
    output: Annotated[Path, typer.Option("-o", "--output", help="model JSON to write")],
    by: Annotated[str | None, typer.Option("--by", help="fit one arrival process per "
                                           "group: tenant, model, log_type")] = None,
    seed: Annotated[int, typer.Option(help="seed of the fit's calibration runs")] = 0,
    store: StoreOpt = None,
) -> None:
    """Fit a workload model (arrivals, lengths, sessions, prefixes) to a trace."""
    from servetrace.synth.model import fit
    from servetrace.synth.servegen_model import from_servegen

    try:
        s = Store(store)
        serverless = _serverless_source(trace, s)
        if serverless is not None:
            from servetrace.synth import serverless as sv
            table, functions = serverless
            with err.status(f"fitting {trace} (serverless)"):
                smodel = sv.fit(table, functions, source=trace)
            smodel.save(output)
            out.print(f"serverless model of {trace}: {smodel.n_functions:,} functions "
                      f"({sum(k == 'periodic' for k in smodel.functions.kind):,} timers), "
                      f"{smodel.mean_rate:.4g} invocations/s -> {output}", highlight=False)
            return
        if not Path(trace).exists() and _rows(s, trace).get("client_windows"):
            model = from_servegen(s.scan("client_windows", trace).collect(),
                                  s.scan("length_pmfs", trace).collect(), source=trace)
        else:
            requests = _scan_trace_or_file(trace, s)  # fitted out of core (synth.model.fit)
            _check_by(requests, by, f"the requests of {trace!r}")
            block, scope = (trace_files.hash_layout(Path(trace)) if Path(trace).exists()
                            else _hash_layout(s, trace))
            with err.status(f"fitting {trace}"):
                model = fit(requests, by=by, seed=seed, block_tokens=block, hash_scope=scope)
        model.save(output)
    except _ERRORS as exc:
        _fail(exc)
    out.print(f"model of {model.source}: {model.n_requests:,} requests, "
              f"{model.mean_rate:.4g} req/s, {len(model.groups)} group(s) -> {output}",
              highlight=False)


@app.command("generate")
def generate_cmd(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="model JSON (servetrace "
                                               "fit)")],
    duration: Annotated[float, typer.Option("--duration", help="seconds to synthesize")],
    output: Annotated[Path, typer.Option("-o", "--output", help="requests .parquet to write")],
    seed: Annotated[int, typer.Option("--seed", help="same seed, same trace")] = 0,
    rate_scale: Annotated[float, typer.Option("--rate-scale", help="multiply every rate "
                                              "(keeps the burst shape)")] = 1.0,
    profile: Annotated[Path | None, typer.Option("--profile", help="hardware profile YAML "
                                                 "(servetrace profile)")] = None,
    utilization: Annotated[float | None, typer.Option(
        "--utilization", help="with --profile: pick the rate scale that offers this load")] = None,
    functions: Annotated[int | None, typer.Option(
        "--functions", help="serverless: a representative subset of N functions")] = None,
    target_rps: Annotated[float | None, typer.Option(
        "--target-rps", help="serverless: scale to this many invocations per second")] = None,
    scale_op: Annotated[str, typer.Option(
        "--scale-op", help="serverless: superpose_functions (keeps burst shape) or "
        "compress_time (shrinks it)")] = "superpose_functions",
    cluster: Annotated[Path | None, typer.Option(
        "--cluster", help="serverless: cluster YAML (nodes, cores, memory_mb, keep_alive_s, "
        "hybrid); with --utilization, scale to that load of it")] = None,
) -> None:
    """Sample a synthetic requests trace from a model, scaled as asked, into Parquet.

    A serverless model (`servetrace fit` on invocations or invocation_counts) gives an
    invocations table; --functions and --target-rps select and scale its functions."""
    from servetrace.synth import scale
    from servetrace.synth.model import WorkloadModel

    try:
        if output.suffix != ".parquet":
            raise ValueError(f"-o {output}: write a .parquet file (then `servetrace export` "
                             "it to another tool's format)")
        if _model_type(model_path) == "ServerlessModel":
            frame = _generate_serverless(model_path, duration, output, seed, functions,
                                         target_rps, scale_op, cluster, utilization)
            out.print(f"{frame.height:,} invocations over {duration:g} s (seed {seed}) -> "
                      f"{output}", highlight=False)
            return
        if functions is not None or target_rps is not None or cluster is not None:
            raise ValueError("--functions, --target-rps and --cluster apply to serverless "
                             "models")
        if (profile is None) != (utilization is None):
            raise ValueError("--profile and --utilization go together")
        model = WorkloadModel.load(model_path)
        if profile is not None and utilization is not None:
            model = scale.target_hardware(model, scale.HardwareProfile.from_yaml(profile),
                                          utilization)
        frame = model.sample(duration, seed=seed, rate_scale=rate_scale)
        frame.write_parquet(output, metadata=scale.sample_metadata(model, duration, seed,
                                                                   rate_scale))
    except _ERRORS as exc:
        _fail(exc)
    out.print(f"{frame.height:,} requests over {duration:g} s (seed {seed}) -> {output}",
              highlight=False)


def _generate_serverless(model_path: Path, duration: float, output: Path, seed: int,
                         functions: int | None, target_rps: float | None,
                         scale_op: str, cluster: Path | None = None,
                         utilization: float | None = None) -> pl.DataFrame:
    """Representative subset (chosen on a pilot sample of the model's own functions as long
    as the fitted trace), then rate scaling, then the sample, with the steps as metadata."""
    from servetrace.synth import serverless as sv
    from servetrace.synth import serverless_scale as sc
    from servetrace.synth import serverless_subset as ss

    model = sv.ServerlessModel.load(model_path)
    if functions is not None:
        if not 0 < functions <= model.n_functions:
            raise ValueError(f"--functions {functions}: the model has {model.n_functions} "
                             "functions")
        with err.status(f"choosing {functions} representative functions"):
            feats = ss.features(model.sample(model.span_s, seed=seed))
            rows = ss.representative(feats, functions, seed)
            names = feats["function"].gather(rows).to_list()
            index = [model.functions.function.index(n) for n in names]
            model = sc.subset(model, index, op="representative_subset", seed=seed)
    if target_rps is not None:
        model = sc.target_rate(model, target_rps, op=scale_op, seed=seed)
    if (cluster is None) != (utilization is None):
        raise ValueError("--cluster and --utilization go together")
    if cluster is not None and utilization is not None:
        if target_rps is not None:
            raise ValueError("--target-rps and --cluster both set the rate: give one")
        with err.status(f"sizing to {utilization:g} of {cluster}"):
            model, _ = sc.size_to_cluster(model, _cluster(cluster), utilization, seed=seed)
    frame = model.sample(duration, seed=seed)
    frame.write_parquet(output, metadata=sc.metadata(model, duration, seed))
    return frame


def _cluster(path: Path) -> object:
    """A :class:`servetrace.synth.serverless_scale.Cluster` from YAML, errors naming the file."""
    import yaml

    from servetrace.synth.serverless_scale import Cluster

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not YAML ({exc})") from exc
    fields = ("nodes", "cores", "memory_mb", "keep_alive_s", "hybrid")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with {', '.join(fields)}")
    unknown = sorted(set(data) - set(fields))
    missing = [k for k in fields[:3] if k not in data]
    if unknown or missing:
        raise ValueError(f"{path}: " + "; ".join(
            ([f"unknown key(s) {', '.join(unknown)}"] if unknown else [])
            + ([f"missing {', '.join(missing)}"] if missing else [])))
    try:
        return Cluster(**data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


@app.command("compare")
def compare_cmd(
    real: Annotated[str, typer.Argument(help="real trace: store id or requests .parquet")],
    synthetic: Annotated[list[str], typer.Argument(
        help="synthetic trace(s): store ids or .parquet files; several (e.g. one per seed) "
             "give mean errors and their spread")],
    seed: Annotated[int, typer.Option(help="seed of the baselines")] = 0,
    reference: Annotated[str | None, typer.Option(
        "--reference", help="fit the baselines on this trace (store id or .parquet), e.g. "
        "the past the model was fitted on, and score every candidate on REAL: a held-out "
        "comparison (default: the baselines are built from REAL itself)")] = None,
    block_tokens: Annotated[int | None, typer.Option(
        "--block-tokens", help="tokens per hash block (default: the trace's; estimated for "
        "a .parquet file)")] = None,
    scope: Annotated[str | None, typer.Option(
        "--scope", help="hash id scope, global or session (default: the trace's)")] = None,
    fmt: JsonOpt = "table", store: StoreOpt = None,
) -> None:
    """Fidelity of synthetic traces to a real one, next to Poisson and gamma baselines
    (serverless traces: next to per-minute replay and per-function Poisson). Traces with
    sessions or hash ids also get KV-cache and session rows and a session-naive baseline."""
    from servetrace.synth.fidelity import fidelity

    try:
        s = Store(store)
        serverless = _serverless_source(real, s)
        if serverless is not None:
            from servetrace.synth import serverless_fidelity as sf
            table, functions = serverless
            runs = [pl.read_parquet(x) if x.endswith(".parquet") else
                    _serverless_source(x, s)[0] for x in synthetic]  # type: ignore[index]
            ref = None if reference is None else _serverless_source(reference, s)[0]  # type: ignore[index]
            result = sf.fidelity(table, runs if len(runs) > 1 else runs[0],
                                 functions=functions, reference=ref, seed=seed)
            _emit(real, {"serverless fidelity (errors; lower is better; baselines: "
                         "replay_uniform, poisson)": result}, fmt)
            return
        runs = [_trace_or_file(x, s) for x in synthetic]
        ref = None if reference is None else _trace_or_file(reference, s)
        known_block, known_scope = (None, "global") if Path(real).suffix == ".parquet" \
            else _hash_layout(s, real)
        table = fidelity(_trace_or_file(real, s), runs if len(runs) > 1 else runs[0],
                         seed=seed, reference=ref, block_tokens=block_tokens or known_block,
                         scope=scope or known_scope)
        _emit(real, {"fidelity (errors; lower is better)": table}, fmt)
    except _ERRORS as exc:
        _fail(exc)


@app.command("replay")
def replay_cmd(
    trace: Annotated[str | None, typer.Argument(help=TRACE_HELP + " (requests)")] = None,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="OpenAI-compatible base "
                                                 "URL")] = None,
    model: Annotated[str | None, typer.Option("--model", help="model name (default: the "
                                              "server's first)")] = None,
    time_scale: Annotated[float, typer.Option("--time-scale", help="multiply every "
                                              "scheduled time and think time (0.5 = twice "
                                              "the rate)")] = 1.0,
    max_concurrency: Annotated[int | None, typer.Option("--max-concurrency")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds a request may take "
                                           "before it is recorded as a timeout")] = 300.0,
    limit: Annotated[int | None, typer.Option("--limit", help="replay only the first N "
                                              "requests")] = None,
    duration: Annotated[float | None, typer.Option(
        "--duration", help="replay only the requests scheduled in the first S seconds "
        "(after --time-scale)")] = None,
    open_loop: Annotated[bool, typer.Option(
        "--open-loop", help="send every request at its trace time (default: later turns of "
        "a session and sub-agents wait for the response before them plus the think "
        "time)")] = False,
    block_tokens: Annotated[int | None, typer.Option(
        "--block-tokens", help="tokens per hash block: prompts share text where hash_ids "
        "share a prefix (default: the trace's)")] = None,
    hash_scope: Annotated[str | None, typer.Option(
        "--hash-scope", help="global or session (default: the trace's)")] = None,
    cache_tokens: Annotated[int | None, typer.Option(
        "--cache-tokens", help="the server's prefix-cache capacity in tokens: reports the "
        "trace's LRU hit ratio at it beside the achieved one")] = None,
    ttft_slo: Annotated[float | None, typer.Option("--ttft-slo", help="seconds")] = None,
    tpot_slo: Annotated[float | None, typer.Option("--tpot-slo", help="seconds")] = None,
    recover: Annotated[bool, typer.Option("--recover", help="only store replays that were "
                                          "killed before they were stored")] = False,
    fmt: JsonOpt = "table", store: StoreOpt = None,
) -> None:
    """Replay a trace against an endpoint (sessions in closed loop); the outcome becomes a
    new trace. Prints progress (sent, finished, failed, lag) on stderr while it runs, and the
    achieved prefix-cache hit ratio beside the trace's at the end.

    The API key is read from $OPENAI_API_KEY and never printed or stored. Replays killed
    before they were stored are stored first (or alone, with --recover). Exits 130 when
    interrupted (what finished is stored) and 1 when every request failed.
    """
    from dataclasses import asdict

    try:
        from servetrace.synth.replay_results import ProgressPrinter
        from servetrace.synth.replay_store import recover_pending, replay_trace

        s = Store(store)
        for name in recover_pending(s):
            err.print(f"stored the finished requests of an interrupted replay as {name}",
                      highlight=False)
        if recover:
            return
        if trace is None or endpoint is None:
            raise ValueError("replay needs a TRACE and --endpoint (or --recover alone)")
        src = _trace(trace, s)
        frame = src.scan("requests").collect() if src.path is not None else None
        known_block, known_scope = src.layout
        block = block_tokens or known_block
        printer = ProgressPrinter(sys.stderr)
        try:
            result = replay_trace(
                trace, endpoint, store=s, frame=frame, model=model, time_scale=time_scale,
                max_concurrency=max_concurrency, timeout_s=timeout, ttft_slo_s=ttft_slo,
                tpot_slo_s=tpot_slo, limit=limit, duration_s=duration,
                closed_loop=not open_loop, block_tokens=block,
                hash_scope=hash_scope or known_scope, cache_tokens=cache_tokens,
                progress=printer)
        finally:
            printer.close()
        summary = result.summary(ttft_slo_s=ttft_slo, tpot_slo_s=tpot_slo)
        _emit(result.trace or trace, {"replay": pl.DataFrame([asdict(summary)])}, fmt)
    except (*_ERRORS, ConnectionError) as exc:
        _fail(exc)
    if result.interrupted:
        raise typer.Exit(130)
    if summary.requests and not summary.succeeded:
        _fail(ValueError(f"every one of the {summary.requests:,} requests failed (stored as "
                         f"{result.trace}; see its failed and error columns in the results "
                         "file)"))


@app.command("profile")
def profile_cmd(
    endpoint: Annotated[str, typer.Option("--endpoint", help="OpenAI-compatible base URL")],
    output: Annotated[Path, typer.Option("-o", "--output", help="profile YAML to write")],
    model: Annotated[str | None, typer.Option("--model")] = None,
    level_s: Annotated[float, typer.Option("--level-s", help="seconds per concurrency "
                                           "level of the sweep")] = 10.0,
) -> None:
    """Measure an endpoint's prefill and decode throughput and concurrency knee (YAML)."""
    try:
        from servetrace.synth.profile import profile_endpoint, write_profile

        with err.status(f"profiling {endpoint}"):
            profile = profile_endpoint(endpoint, model=model, level_s=level_s)
        write_profile(profile, output)
    except (*_ERRORS, ConnectionError) as exc:
        _fail(exc)
    out.print(f"prefill {profile.prefill_tokens_per_s:,.0f} tok/s, decode "
              f"{profile.decode_tokens_per_s:,.0f} tok/s, knee at "
              f"{profile.max_concurrent_sequences} sequences -> {output}", highlight=False)


@app.command("demo")
def demo_cmd(
    store: StoreOpt = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="folder for the report, "
                                                "models, synthetic traces and exports "
                                                "(default: <store>/demo)")] = None,
) -> None:
    """The main job: ingest Azure LLM 2023 and Mooncake, characterize, fit, synthesize,
    compare, export for vLLM and GuideLLM, and write one HTML report."""
    import time

    from servetrace.synth import demo

    s = Store(store)
    folder = output or s.root / "demo"
    started = time.perf_counter()
    with err.status("starting") as status:
        def step(what: str) -> None:
            err.print(f"[{time.perf_counter() - started:6.1f} s] {what}", highlight=False)
            status.update(what)
        try:
            result = demo.run(s, folder, on_step=step)
        except _ERRORS as exc:
            _fail(exc)
    scores = result.fidelity.filter(pl.col("kind") == "arrivals").with_columns(
        pl.col("real", "model", "poisson", "gamma").round_sig_figs(3))
    for trace in result.traces:
        _print_frame(scores.filter(pl.col("trace") == trace).select(
            "metric", "real", "model", "poisson", "gamma", "verdict"), "table",
            title=f"{trace}: arrival errors, mean of {demo.RUNS} seeds (lower is better; "
            "verdict at 2 standard errors)")
    listing = _listing(s).filter(pl.col("trace").is_in(result.traces))
    _print_frame(listing.select("trace", "rows", "rejected", "span_s"), "table",
                 title="Traces (Azure LLM 2023: Patel et al., ISCA'24, CC-BY-4.0; Mooncake: "
                 "Qin et al., FAST'25, Apache-2.0)")
    for name, path in result.exports.items():
        out.print(f"export {name}: {path}", highlight=False)
    out.print(f"store: {s.db_path}  (try: duckdb {s.db_path} "
              "\"select trace, count(*) from requests group by 1 order by 1\")", highlight=False)
    out.print(f"done in {time.perf_counter() - started:.0f} s; report: {result.report}",
              highlight=False)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
