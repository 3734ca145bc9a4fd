"""The characterization commands of :mod:`servetrace.cli`: analyze, report, kvcache, sessions,
coldstart, keepalive and fairness (each a thin call into :mod:`servetrace.analysis`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import polars as pl
import typer

from servetrace.cli import (
    _ERRORS,
    EVENT_TABLES,
    TRACE_HELP,
    ByOpt,
    JsonOpt,
    StoreOpt,
    _check_by,
    _emit,
    _fail,
    _first_table,
    _functions,
    _rows,
    _show,
    _trace,
    _trace_or_file,
    app,
    err,
    out,
)
from servetrace.loaders import Store

EngineOpt = Annotated[str, typer.Option(
    "--engine", help="local (this process) or ray (Ray tasks; pip install 'servetrace[ray]')")]
RayAddressOpt = Annotated[str | None, typer.Option(
    "--ray-address", help="Ray cluster to join (auto, ray://host:10001; default: start a "
    "local Ray instance)")]
PartitionsOpt = Annotated[int | None, typer.Option(
    "--partitions", help="with --engine ray: parallel tasks (default 4 per CPU)")]


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
    engine: EngineOpt = "local", ray_address: RayAddressOpt = None,
    partitions: PartitionsOpt = None,
) -> None:
    """Characterize arrivals (burstiness) and token lengths of a stored trace.

    Without --report or --png, arrivals and token lengths are read out of core (in chunks
    and streamed aggregates, servetrace.analysis.out_of_core): a trace larger than memory
    gets the same figures. With --engine ray, the window counts and the length histogram
    are counted by parallel Ray tasks, each reading its rows of the store's files; the
    figures equal the local engine's."""
    from servetrace.analysis import burstiness, out_of_core, plots, tokens
    from servetrace.analysis import report as reports
    from servetrace.analysis.engine import get_engine

    if fmt not in ("table", "json"):
        _fail(ValueError(f"--format must be table or json, not {fmt!r}"))
    by = "request_class" if by == "class" else by
    groups = [by] if by else []
    try:
        if engine != "local" and (report or png):
            raise ValueError("--engine ray counts the figures out of core; --report and "
                             "--png read the trace in memory: run them without --engine")
        eng = None if engine == "local" and ray_address is None else get_engine(engine,
                                                                                 ray_address)
        s = Store(store)
        with err.status(f"characterizing {trace}"):
            table, events, _ = _first_table(
                s, trace, EVENT_TABLES, "arrival", columns={
                    "arrival_s", "window_start_s", "window_s", "count", "input_tokens",
                    "output_tokens", "failed", *groups}, collect=False)
            _check_by(_trace(trace, s).scan(table), by, f"table {table} of {trace!r}")
            timed = burstiness.has_arrivals(events)
            streamed = not (report or png) and table != "invocation_counts"
            if not streamed:
                events = events.collect()
            parallel = {"engine": eng, "partitions": partitions}
            arrivals = None if not timed else (
                out_of_core.arrival_summary(events, by=by, **parallel) if streamed
                else burstiness.summary(events, by=by))
            lengths = None if table != "requests" else (
                out_of_core.token_summary(events, by=by, **parallel) if streamed
                else tokens.summary(events, by=by))
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

    by = "request_class" if by == "class" else by
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
    by: Annotated[str, typer.Option("--by", help="tenant column (class: a mix's "
                                    "request_class)")] = "tenant",
    scheduler: Annotated[list[str] | None, typer.Option(
        "--scheduler", help="simulate: fcfs, vtc, fairserve (repeatable)")] = None,
    prefill: Annotated[float | None, typer.Option(help="server prompt tokens/s")] = None,
    decode: Annotated[float | None, typer.Option(help="server decode iterations/s")] = None,
    max_batch: Annotated[int | None, typer.Option(help="sequences per batch")] = None,
    engine: EngineOpt = "local", ray_address: RayAddressOpt = None,
    fmt: JsonOpt = "table", store: StoreOpt = None,
) -> None:
    """Per-tenant concentration of demand and a FCFS/VTC/FairServe simulation on one server;
    --by class compares a workload mix's classes instead of tenants.

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
        by = "request_class" if by == "class" else by
        if by != "tenant":  # the default keeps working on traces without tenants
            _check_by(requests, by, trace)
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
