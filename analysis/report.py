"""One self-contained HTML report from the analyses that apply to a trace.

A report is a list of :class:`Section`; each section builder runs the analysis functions on the
frames it is given and keeps their tables and charts. :func:`render` turns sections into one
HTML string: charts are inline SVG rendered by vl-convert and tables plain HTML, so the file
opens anywhere with no network and no JavaScript. Nothing here writes files.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import altair as alt
import numpy as np
import polars as pl

from servetrace.analysis import (
    burstiness,
    classes,
    coldstart,
    fairness,
    keepalive,
    kvcache,
    plots,
    sessions,
    tokens,
)
from servetrace.analysis.frames import columns as _by

MAX_GROUPS_CHARTED = 10  # beyond this many groups, charts show the whole trace
MAX_TABLE_ROWS = 25


@dataclass(frozen=True)
class Section:
    """A titled part of a report: a lead paragraph, tables (caption, frame) and charts."""

    title: str
    lead: str = ""
    tables: tuple[tuple[str, pl.DataFrame], ...] = ()
    charts: tuple[alt.TopLevelMixin, ...] = ()
    notes: tuple[str, ...] = field(default=())


def _chart_by(frame: pl.DataFrame | pl.LazyFrame, by: str | Sequence[str] | None
              ) -> list[str] | None:
    """``by`` when it has few enough groups to colour a chart, else None (whole trace)."""
    cols = _by(by)
    if not cols:
        return None
    groups = frame.lazy().select(cols).unique().select(pl.len()).collect().item()
    return cols if groups <= MAX_GROUPS_CHARTED else None


def _attempt(notes: list[str], what: str, fn: Callable[[], object]) -> object | None:
    """Run one analysis; a trace it does not apply to becomes a note, not a failed report."""
    try:
        return fn()
    except ValueError as exc:
        notes.append(f"{what}: {exc}")
        return None


def arrivals(events: pl.DataFrame | pl.LazyFrame, by: str | Sequence[str] | None = None,
             title: str = "Arrivals and burstiness",
             summary: pl.DataFrame | None = None) -> Section:
    """Burstiness of ``events`` (``arrival_s`` rows or ``invocation_counts``), per group;
    ``summary``: :func:`servetrace.analysis.burstiness.summary` of the same, when already
    computed."""
    events = events.lazy().collect()
    notes: list[str] = []
    if summary is None:
        summary = burstiness.summary(events, by=by)
    chart_by = _chart_by(events, by)
    curve = burstiness.dispersion_curve(events, by=chart_by)
    tables: list[tuple[str, pl.DataFrame]] = [("Key figures", summary)]
    charts: list[alt.TopLevelMixin] = [plots.dispersion(curve, by=chart_by),
                                       plots.peak_to_mean(curve, by=chart_by)]
    window = 60.0
    counts = burstiness.window_counts(events, window)
    found = burstiness.bursts(events, window_s=window)
    charts.append(plots.rate(counts, window, bursts=found))
    is_events = "arrival_s" in events.columns
    if "notes" in summary.columns:
        notes.extend(n for n in summary["notes"].drop_nulls().unique(maintain_order=True)
                     .head(5))
    if is_events:
        stats = burstiness.interarrival_stats(events, by=by)
        tables.append(("Inter-arrival times", stats))
        whole = burstiness.interarrival_stats(events) if by else stats
        if whole["cv"].is_null().all():
            notes.append("inter-arrival fits: not shown, the timestamps' resolution "
                         f"({whole['resolution_s'][0]:g} s) is too coarse for the gaps")
            fits = None
        else:
            fits = _attempt(notes, "inter-arrival fits",
                            lambda: burstiness.fit_interarrivals(events))
        if isinstance(fits, pl.DataFrame) and fits.height:
            tables.append(("Inter-arrival fits (maximum likelihood, ranked by AIC)", fits))
            gaps = burstiness.interarrival_gaps(events)["gap_s"]
            charts.append(plots.fitted_cdf(gaps, fits, "Inter-arrival times: data and fits",
                                           x_title="inter-arrival time (s)"))
    tables.append(("Hurst exponent", burstiness.hurst(events, by=by)))
    periods = _attempt(notes, "periodicity", lambda: burstiness.periodicity(events, by=by))
    if isinstance(periods, pl.DataFrame):
        _dominant_periods(periods, tables, notes)
    tables.append((f"Bursts (rate above k × rolling baseline, {window:g} s windows)", found))
    lead = (f"{events.height:,} {'arrivals' if is_events else 'window counts'}. The index of "
            "dispersion is 1 at every window size for a Poisson process and grows with the "
            "window for traffic that is bursty across time scales.")
    return Section(title, lead, tuple(tables), tuple(charts), tuple(notes))


def _dominant_periods(periods: pl.DataFrame, tables: list[tuple[str, pl.DataFrame]],
                      notes: list[str]) -> None:
    """The periods that pass both of :func:`servetrace.analysis.burstiness.summary`'s tests
    (Fisher p-value and autocorrelation at the period); a note for peaks that pass only the
    first: a trend or a burst gives p ≈ 0 with no repetition (negative strength)."""
    p, a = burstiness.DOMINANT_P_VALUE, burstiness.DOMINANT_STRENGTH
    found = periods.filter((pl.col("p_value") < p) & (pl.col("strength") >= a))
    loose = periods.filter((pl.col("p_value") < p) & ~(pl.col("strength") >= a))
    if found.height:
        tables.append((f"Dominant periods (Fisher p < {p:g}, autocorrelation at the period "
                       f"≥ {a:g})", found))
    if loose.height:
        notes.append(f"periods: {loose.height} periodogram peak(s) with Fisher p < {p:g} "
                     f"do not repeat (autocorrelation at the period below {a:g}, down to "
                     f"{loose['strength'].min():.2f}): a trend or bursts, not a cycle; "
                     "not shown")
    elif not found.height:
        notes.append(f"periods: no periodogram peak with Fisher p < {p:g}")


def token_lengths(requests: pl.DataFrame | pl.LazyFrame, by: str | Sequence[str] | None = None,
                  title: str = "Token lengths", summary: pl.DataFrame | None = None) -> Section:
    """Input and output token lengths of ``requests``: summaries, fits, joint shape, drift;
    ``summary``: :func:`servetrace.analysis.tokens.summary` of the same, when already computed."""
    requests = requests.lazy().collect()
    notes: list[str] = []
    chart_by = _chart_by(requests, by)
    tables: list[tuple[str, pl.DataFrame]] = [
        ("Key figures", tokens.summary(requests, by=by) if summary is None else summary),
        ("Length summaries", tokens.length_summary(requests, by=by)),
        ("Input/output correlation", tokens.correlation(requests, by=by)),
    ]
    charts: list[alt.TopLevelMixin] = []
    for name in tokens.FIELDS:
        charts.append(plots.ecdf(tokens.ecdf(requests, name, by=chart_by), name, by=chart_by))
        fits = _attempt(notes, f"{name} fits", lambda name=name: tokens.fit_lengths(requests, name))
        if isinstance(fits, pl.DataFrame) and fits.height:
            tables.append((f"Fits of {name.replace('_', ' ')} (ranked by AIC)", fits))
            charts.append(plots.fitted_cdf(
                requests[name].drop_nulls(), fits, f"{name.replace('_', ' ')}: data and fits",
                x_title=f"{name.split('_')[0]} length (tokens)"))
    joint = tokens.output_by_input(requests)
    tables.append(("Output length by input bucket", joint))
    charts.append(plots.output_by_input(joint))
    span = requests["arrival_s"].max() if requests.height else None
    window = 86_400.0 if span is not None and span >= 3 * 86_400 else 3_600.0
    if span is not None and span >= 2 * window:
        for name in tokens.FIELDS:
            moved = tokens.drift(requests, name, window_s=window)
            tables.append((f"Drift of {name.replace('_', ' ')} ({window:g} s windows)", moved))
            charts.append(plots.drift(moved, name))
    elif span is None and requests.height:
        notes.append("drift: not measured, the requests have no arrival times (a batch trace)")
    else:
        notes.append("drift: the trace spans less than two hours, so there are no consecutive "
                     "hour windows to compare")
    if requests["failed"].drop_nulls().len():
        tables.append(("Failure rate", tokens.failure_rate(requests, by=by)))
    lead = (f"{requests.height:,} requests. Lengths are fitted by maximum likelihood on the "
            "positive values; the input/output correlation is what independent resampling "
            "would destroy.")
    return Section(title, lead, tuple(tables), tuple(charts), tuple(notes))


def tenant_fairness(requests: pl.DataFrame | pl.LazyFrame, by: str = "tenant",
                    server: fairness.Server = fairness.DEFAULT_SERVER,
                    schedulers: Sequence[str] = ("fcfs", "vtc"),
                    title: str = "Per-tenant fairness") -> Section:
    """Concentration of demand across tenants and a scheduler comparison on one server."""
    requests = requests.lazy().collect()
    served = fairness.tenant_service(requests, by=by)
    tables: list[tuple[str, pl.DataFrame]] = [
        ("Concentration", fairness.concentration(requests, by=by)),
        ("Tenants by service (w_in = 1, w_out = 2)", served),
    ]
    charts: list[alt.TopLevelMixin] = [plots.lorenz(served)]
    overused = fairness.overuse(requests, by=by)
    tables.append(("Windows where a tenant exceeds 2× its fair share", overused))
    latencies, differences = [], []
    for name in schedulers:
        result = fairness.simulate(requests, server, scheduler=name, by=by)
        differences.append(fairness.service_difference(result).with_columns(
            pl.lit(name).alias("scheduler")))
        latencies.append(fairness.tenant_latency(result).with_columns(
            pl.lit(name).alias("scheduler")))
        if name == "vtc":
            charts.append(plots.service_over_time(result.service))
        if result.throttles.height:
            tables.append((f"Throttled tenants ({name})", result.throttles))
    tables.append(("Service difference between backlogged tenants (VTC artifact metric)",
                   pl.concat(differences, how="diagonal_relaxed")))
    latency = pl.concat(latencies, how="diagonal_relaxed")
    tables.append(("Latency per tenant and scheduler", latency))
    charts.append(plots.tenant_latency(latency))
    lead = (f"{served.height:,} tenants ({by}), {requests.height:,} requests. Simulated on "
            f"one server: {server.prefill_tokens_per_s:g} prompt tokens/s, "
            f"{server.decode_tokens_per_s:g} decode iterations/s, {server.max_batch} "
            "sequences per batch.")
    return Section(title, lead, tuple(tables), tuple(charts))


def request_classes(requests: pl.DataFrame | pl.LazyFrame, by: str = "request_class",
                    title: str = "Request classes") -> Section:
    """The trace's classes (:mod:`servetrace.analysis.classes`): requests, tokens and their
    shares, mean rate, lengths and targets per class; the arrival rate over time and the
    length ECDFs per class (a class beyond :data:`MAX_GROUPS_CHARTED` leaves the charts to
    the whole trace); the same table per model where requests name several."""
    requests = requests.lazy().collect()
    col = classes.class_column(by)
    notes: list[str] = []
    mix = classes.class_mix(requests, col)
    tables: list[tuple[str, pl.DataFrame]] = [
        ("Per class (shares of requests and of input + output tokens; rate over the whole "
         "trace; lengths in tokens)", mix)]
    if col != "model" and "model" in requests.columns \
            and requests["model"].drop_nulls().n_unique() >= 2:
        tables.append(("Per model", classes.class_mix(requests, "model")))
    charts: list[alt.TopLevelMixin] = []
    chart_by = _chart_by(requests, col)
    if burstiness.has_arrivals(requests):
        span = float(requests["arrival_s"].max() - requests["arrival_s"].min())
        window = 60.0 if span >= 600 else max(span / 10, 1e-3)
        counts = _attempt(notes, "rate per class", lambda: burstiness.window_counts(
            requests, window, by=chart_by))
        if isinstance(counts, pl.DataFrame):
            charts.append(plots.rate(counts, window, by=chart_by))
    else:
        notes.append("rate per class: the requests have no arrival times (a batch trace)")
    for name in tokens.FIELDS:
        charts.append(plots.ecdf(tokens.ecdf(requests, name, by=chart_by), name, by=chart_by))
    lead = (f"{requests.height:,} requests in {mix.height:,} classes ({col}). Offline "
            "requests have no deadline (a replay sends them from a backlog); SLOs are the "
            "class's targets, in seconds.")
    return Section(title, lead, tuple(tables), tuple(charts), tuple(notes))


def cold_starts(cold: pl.DataFrame | pl.LazyFrame, functions: pl.DataFrame | None = None,
                invocations: pl.DataFrame | None = None, keep_alive_s: float = 60.0,
                title: str = "Cold starts") -> Section:
    """Cold-start components, their per-minute correlation, fits and the pod utility ratio."""
    cold = cold.lazy().collect()
    notes: list[str] = []
    breakdown = coldstart.component_breakdown(cold)
    tables: list[tuple[str, pl.DataFrame]] = [
        ("Key figures", coldstart.summary(cold, functions=functions)),
        ("Components", breakdown)]
    charts: list[alt.TopLevelMixin] = [plots.components(breakdown)]
    for by in ("region", "size"):
        if by == "size" or (by in cold.columns and cold[by].null_count() < cold.height):
            tables.append((f"Components by {by}", coldstart.component_breakdown(cold, by=by)))
    for what, fn in (("Per-minute Spearman correlation with the total",
                      lambda: coldstart.minute_correlation(cold)),
                     ("Fits of cold-start time", lambda: coldstart.fit_cold_start_times(cold)),
                     ("Fits of the time between cold starts",
                      lambda: coldstart.fit_intervals(cold))):
        result = _attempt(notes, what, fn)
        if isinstance(result, pl.DataFrame):
            tables.append((what, result))
    if invocations is not None and invocations.height:
        pods = _attempt(notes, "pod utility", lambda: coldstart.pod_utility(
            cold, invocations, keep_alive_s=keep_alive_s))
        if isinstance(pods, pl.DataFrame) and pods.height:
            tables.append((f"Pod utility ratio (keep-alive {keep_alive_s:g} s)",
                           coldstart.pod_utility_summary(pods)))
    lead = (f"{cold.height:,} cold starts. Components: pod allocation, code deployment, "
            "dependency deployment and scheduling (Joosen et al., EuroSys'25).")
    return Section(title, lead, tuple(tables), tuple(charts), tuple(notes))


def keep_alive(trace: pl.DataFrame | pl.LazyFrame, functions: pl.DataFrame | None = None,
               by: str = "app", title: str = "Keep-alive policies") -> Section:
    """The cold-start / idle-memory trade-off of fixed keep-alives and the hybrid histogram."""
    trace = trace.lazy().collect()
    curve = keepalive.tradeoff(trace, by=by, functions=functions)
    lead = (f"{trace.height:,} rows simulated per {by}: no keep-alive, fixed keep-alives, and "
            "the hybrid-histogram policy of Shahrad et al. (ATC'20); wasted memory is "
            "normalized to the fixed 10-minute policy.")
    return Section(title, lead, (("Trade-off", curve),), (plots.tradeoff(curve),))


def _figures(row: Mapping[str, object], definitions: Mapping[str, str] | None = None
             ) -> pl.DataFrame:
    """One row of figures as a two- or three-column table (figure, value[, definition]), so
    a wide summary reads down the page instead of overflowing it."""
    names = [k for k, v in row.items() if v is not None]
    out = {"figure": names, "value": [_text(row[k]) for k in names]}
    if definitions is not None:
        out["definition"] = [definitions.get(k, "") for k in names]
    return pl.DataFrame(out)


def _text(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def has_sessions(requests: pl.DataFrame) -> bool:
    """Whether ``requests`` names sessions or links turns (a non-null ``session`` or
    ``parent_request_id``): the traces :func:`session_structure` applies to."""
    return any(c in requests.columns and requests[c].null_count() < requests.height
               for c in ("session", "parent_request_id"))


def has_hash_ids(requests: pl.DataFrame) -> bool:
    """Whether some request of ``requests`` carries prefix-block ids (a non-empty
    ``hash_ids``): the traces :func:`kv_cache` applies to."""
    return "hash_ids" in requests.columns and bool(
        (requests["hash_ids"].list.len().fill_null(0) > 0).any())


SESSION_TABLE_COLUMNS = ("session", "requests", "turns", "subagents", "subagent_requests",
                         "max_depth", "duration_s", "input_tokens", "output_tokens", "think_s",
                         "server_s", "tool_s")
TURN_TABLE_METRICS = ("think_s", "server_s", "tool_s", "growth_tokens")


def session_structure(requests: pl.DataFrame | pl.LazyFrame,
                      title: str = "Sessions and agents") -> Section:
    """Sessions, turns and agents (:mod:`servetrace.analysis.sessions`) of the whole trace:
    the headline figures, one row per session (largest first), think, server and tool time
    and context growth per turn index, sub-agent fan-out and depth, and the request-type
    mix. Columns ending in ``_s`` are seconds; per-session times are sums over the
    session's requests."""
    requests = requests.lazy().collect()
    notes: list[str] = []
    head = sessions.summary(requests).row(0, named=True)
    tables: list[tuple[str, pl.DataFrame]] = [
        ("Key figures (per session; times and growth per request)", _figures(head))]
    charts: list[alt.TopLevelMixin] = []
    table = sessions.session_table(requests)
    if table.height:
        cols = [c for c in SESSION_TABLE_COLUMNS if table[c].null_count() < table.height]
        tables.append(("Sessions, most requests first (times: sums over the session's "
                       "requests, s)", table.sort(["requests", "session"],
                                                  descending=[True, False]).select(cols)))
    else:
        notes.append("session table: the trace links turns but names no sessions")
    stats = sessions.turn_stats(requests)
    wide = (stats.filter(pl.col("metric").is_in(TURN_TABLE_METRICS) & (pl.col("n") > 0))
            .pivot(on="metric", index=["turn", "requests"], values="p50", sort_columns=False))
    if wide.height:
        ordered = [m for m in TURN_TABLE_METRICS if m in wide.columns]
        tables.append(("Per turn index: medians (times in s, context growth in tokens)",
                       wide.sort("turn", nulls_last=True).select(
                           "turn", "requests", *(pl.col(m).alias(f"{m}_p50") for m in ordered))))
    for what, build in (("think/server/tool time by turn", lambda: plots.turn_times(stats)),
                        ("context growth by turn", lambda: plots.growth_by_turn(stats)),
                        ("context size by turn", lambda: plots.context_by_turn(
                            sessions.context_growth(requests)))):
        chart = _attempt(notes, what, build)
        if chart is not None:
            charts.append(chart)
    fan = sessions.fanout(requests)
    if fan["units"].sum():
        tables.append(("Sub-agent fan-out (sub-agents per session and per launching request) "
                       "and depth", fan))
    mix = sessions.request_type_mix(requests)
    if mix["request_type"].null_count() < mix.height:
        tables.append(("Request types, most requests first", mix.sort(
            ["requests", "request_type"], descending=[True, False], nulls_last=True)))
    n_sessions = head["sessions"]
    lead = (f"{requests.height:,} requests in {n_sessions:,} sessions. A turn is a request of "
            "a session's main agent in order (sub-agents count their own turns); think time "
            "is the client's delay before a request, server time the server's time on it; "
            "context growth is a request's input minus the previous request's input and "
            "output in the same session and agent (negative: the context was compacted).")
    return Section(title, lead, tuple(tables), tuple(charts), tuple(notes))


HIT_RATIO_DEFINITIONS = {
    "block_seen_ratio": "blocks whose key was accessed before / input blocks (no prefix rule)",
    "block_hit_ratio": "blocks in the cached prefix / input blocks",
    "token_hit_ratio": "cached-prefix tokens / input tokens (the prefill a cache saves)",
    "request_hit_ratio": "requests with a cached block / requests with a block",
    "mean_request_token_hit_ratio": "mean over requests of cached / input tokens",
}
LRU_POINTS = 20


def kv_cache(requests: pl.DataFrame | pl.LazyFrame, *, block_tokens: int,
             scope: kvcache.Scope = "global", title: str = "KV-cache prefix reuse",
             points: int = LRU_POINTS) -> Section:
    """Prefix (KV-cache) reuse of the trace's ``hash_ids`` (:mod:`servetrace.analysis.kvcache`):
    infinite-cache hit ratios with their definitions, the LRU hit ratio at ``points``
    capacities from one block to the trace's footprint (every block fits), the hit ratio by
    turn index and per session (both read off the one infinite cache of the trace).
    ``block_tokens`` and ``scope``: the trace's ``hash_block_tokens`` and ``hash_scope``."""
    requests = requests.lazy().collect()
    notes: list[str] = []
    reuse = kvcache.prefix_reuse(requests, block_tokens=block_tokens, scope=scope)
    whole = kvcache.reuse_by(reuse).row(0, named=True)
    ratios = {k: whole[k] for k in HIT_RATIO_DEFINITIONS}
    tables: list[tuple[str, pl.DataFrame]] = [(
        "Infinite cache (every block ever accessed stays cached)",
        _figures(ratios, HIT_RATIO_DEFINITIONS))]
    charts: list[alt.TopLevelMixin] = []
    # distinct blocks = first accesses = input blocks never seen before (no second pass)
    footprint = int(reuse["input_blocks"].sum() - reuse["seen_blocks"].sum())
    caps = np.unique(np.geomspace(1, max(footprint, 1), points).round().astype(np.int64))
    curve = kvcache.lru_curve(requests, (caps * block_tokens).tolist(),
                              block_tokens=block_tokens, scope=scope)
    charts.append(plots.lru_curve(curve, whole["token_hit_ratio"]))
    tables.append((f"LRU cache by capacity (the footprint, {footprint:,} blocks, holds every "
                   "block: the infinite cache)", curve))
    if "turn" in reuse.columns and reuse["turn"].null_count() < reuse.height:
        turns = kvcache.reuse_by(reuse, "turn")
        chart = _attempt(notes, "hit ratio by turn", lambda: plots.hit_by_turn(turns))
        if chart is not None:
            charts.append(chart)
        tables.append(("Hit ratio by turn index", turns.select(
            "turn", "requests", "input_tokens", "block_hit_ratio", "token_hit_ratio",
            "request_hit_ratio")))
    if "session" in reuse.columns and reuse["session"].null_count() < reuse.height:
        per = kvcache.reuse_by(reuse, "session").filter(pl.col("session").is_not_null())
        chart = _attempt(notes, "per-session hit ratios", lambda: plots.session_hit_ratios(per))
        if chart is not None:
            charts.append(chart)
        where = ("its own blocks only (session-scoped ids)" if scope == "session" else
                 "blocks any session cached (global ids)")
        tables.append((f"Per session, most input first: a session hits {where}",
                       per.sort(["input_tokens", "session"], descending=[True, False]).select(
                           "session", "requests", "input_blocks", "input_tokens",
                           "block_hit_ratio",
                           "token_hit_ratio", "request_hit_ratio",
                           "mean_request_token_hit_ratio")))
    else:
        notes.append("per-session hit ratios: the trace names no sessions")
    per_what = "session" if scope == "session" else "trace (global)"
    lead = (f"{whole['requests']:,} requests, {whole['input_blocks']:,} blocks of "
            f"{block_tokens} tokens, ids scoped per {per_what}. "
            "A block is usable only with its whole prefix (a request's cached prefix ends at "
            "its first miss). Infinite cache: token hit ratio = Σ cached-prefix tokens / Σ "
            f"input tokens = {_text(whole['token_hit_ratio'])}; block hit ratio = "
            f"{_text(whole['block_hit_ratio'])}. LRU: a cache of capacity C holds "
            "floor(C / block size) blocks, every capacity from one pass of stack distances "
            "(Mattson et al. 1970).")
    return Section(title, lead, tuple(tables), tuple(charts), tuple(notes))


def for_trace(tables: Mapping[str, pl.DataFrame | pl.LazyFrame],
              by: str | Sequence[str] | None = None, *, hash_block_tokens: int | None = None,
              hash_scope: kvcache.Scope = "global") -> list[Section]:
    """Every section that applies to one trace's canonical ``tables`` (name → frame).

    ``requests``: arrivals, token lengths, request classes where the trace has them
    (:func:`request_classes`) and, with two tenants or more, per-tenant fairness;
    a batch trace (no arrival times) gets a note in place of the arrivals section;
    with sessions or turn links, sessions and agents (:func:`session_structure`); with
    ``hash_ids``, KV-cache prefix reuse (:func:`kv_cache`) with blocks of
    ``hash_block_tokens`` tokens and ids of scope ``hash_scope`` (the trace's
    ``hash_block_tokens`` and ``hash_scope``; without a block size the section is a note).
    ``invocations`` (or, lacking them, ``invocation_counts``): arrivals and keep-alive
    policies, per app where the trace names apps, else per function. ``cold_starts``: the
    cold-start components (with ``functions`` and ``invocations`` where present). A section
    whose analysis does not apply to the data becomes a note in the report, not an error.
    Raises ``ValueError`` when no table has rows an analysis reads.
    """
    frames = {k: v.lazy().collect() for k, v in tables.items()}
    frames = {k: v for k, v in frames.items() if v.height}
    functions = frames.get("functions")
    builders: list[tuple[str, Callable[[], Section]]] = []
    if "requests" in frames:
        req = frames["requests"]
        if burstiness.has_arrivals(req):
            builders.append(("Arrivals and burstiness", lambda: arrivals(req, by=by)))
        else:
            builders.append(("Arrivals and burstiness", lambda: Section(
                "Arrivals and burstiness", notes=(burstiness.NO_ARRIVALS,))))
        builders.append(("Token lengths", lambda: token_lengths(req, by=by)))
        if classes.has_classes(req):
            builders.append(("Request classes", lambda: request_classes(req)))
        if req["tenant"].drop_nulls().n_unique() >= 2:
            builders.append(("Per-tenant fairness", lambda: tenant_fairness(req)))
        if has_sessions(req):
            builders.append(("Sessions and agents", lambda: session_structure(req)))
        if has_hash_ids(req):
            def prefixes() -> Section:
                if hash_block_tokens is None:
                    raise ValueError("the trace's tokens per hash block are not recorded")
                return kv_cache(req, block_tokens=hash_block_tokens, scope=hash_scope)
            builders.append(("KV-cache prefix reuse", prefixes))
    events = frames.get("invocations", frames.get("invocation_counts"))
    if events is not None:
        unit = "app" if events["app"].null_count() < events.height else "function"
        builders += [("Invocations and burstiness", lambda: arrivals(
                          events, by=by, title="Invocations and burstiness")),
                     ("Keep-alive policies", lambda: keep_alive(events, functions, by=unit))]
    if "cold_starts" in frames:
        builders.append(("Cold starts", lambda: cold_starts(
            frames["cold_starts"], functions, frames.get("invocations"))))
    if not builders:
        raise ValueError("no table a report analyses has rows (have: "
                         f"{', '.join(frames) or 'none'}; need requests, invocations, "
                         "invocation_counts or cold_starts)")
    sections = []
    for title, build in builders:
        notes: list[str] = []
        section = _attempt(notes, title, build)
        sections.append(section if isinstance(section, Section)
                        else Section(title, notes=tuple(notes)))
    return sections


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return html.escape(str(value))


def _params(text: str) -> str:
    """A fit's parameters (JSON) with 4 significant digits: ``shape=0.871, scale=0.2076``."""
    try:
        values = json.loads(text)
    except (TypeError, ValueError):
        return text
    if not isinstance(values, dict):
        return text
    return ", ".join(f"{k}={_cell(v) if isinstance(v, float) else v}"
                     for k, v in values.items())


def table_html(frame: pl.DataFrame, caption: str = "", max_rows: int = MAX_TABLE_ROWS) -> str:
    """A frame as an HTML table (first ``max_rows`` rows; the rest counted in the caption)."""
    more = frame.height - max_rows
    shown = frame.head(max_rows)
    if "params" in shown.columns:  # wide JSON: last, so the figures beside it stay in view
        shown = shown.select(pl.exclude("params"), pl.col("params").map_elements(
            _params, return_dtype=pl.String))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown.columns)
    # sentences (a Hurst note) wrap instead of running off the right edge of the table
    tags = ["<td class='text'>" if c in ("note", "notes") else "<td>" for c in shown.columns]
    body = "".join("<tr>" + "".join(f"{t}{_cell(v)}</td>" for t, v in zip(tags, row,
                                                                             strict=True))
                   + "</tr>" for row in shown.iter_rows())
    note = f" (first {max_rows} of {frame.height:,} rows)" if more > 0 else ""
    return (f"<table><caption>{html.escape(caption)}{note}</caption><thead><tr>{head}</tr>"
            f"</thead><tbody>{body}</tbody></table>")


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0;font-size:12px;display:block;overflow-x:auto}
caption{text-align:left;font-weight:600;padding:.3em 0}
th,td{border:1px solid #ddd;padding:2px 6px;text-align:right;white-space:nowrap}
td.text{white-space:normal;text-align:left;min-width:24em}
th{background:#f4f4f4}.chart{margin:1em 0}.note{color:#8a5a00}
.meta td{text-align:left;white-space:normal;min-width:6em}
"""


def render(title: str, sections: Sequence[Section], meta: pl.DataFrame | None = None) -> str:
    """The report as one HTML document; ``meta`` is the store's ``traces`` rows (cited sources)."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p>Generated by servetrace on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.</p>"]
    if meta is not None and meta.height:
        cols = [c for c in ("trace", "dataset", "rows", "rejected", "license", "citation")
                if c in meta.columns]
        parts.append("<div class='meta'>" + table_html(
            meta.select(cols), "Traces (cite these sources with any result shown here)")
            + "</div>")
    parts.append("<ul>" + "".join(f"<li><a href='#s{i}'>{html.escape(s.title)}</a></li>"
                                  for i, s in enumerate(sections)) + "</ul>")
    for i, section in enumerate(sections):
        parts.append(f"<h2 id='s{i}'>{html.escape(section.title)}</h2>")
        if section.lead:
            parts.append(f"<p>{html.escape(section.lead)}</p>")
        parts.extend(f"<div class='chart'>{plots.to_svg(c)}</div>" for c in section.charts)
        parts.extend(table_html(frame, caption) for caption, frame in section.tables)
        parts.extend(f"<p class='note'>{html.escape(n)}</p>" for n in section.notes)
    parts.append("</body></html>")
    return "\n".join(parts)
