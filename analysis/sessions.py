"""Sessions, turns and agents of the canonical ``requests`` table.

Multi-turn and agentic workloads (chat sessions, coding agents with tool calls and nested
sub-agents) are shaped by their sessions rather than by independent arrivals: a session is a
chain (or DAG) of requests whose prompt grows turn by turn, separated by the client's think and
tool time. This module measures that structure: a per-session table (:func:`session_table`),
one row per sub-agent (:func:`subagent_table`), think, server and tool time and context growth
per turn index (:func:`turn_stats`), the context growth of every request
(:func:`context_growth`), sub-agent fan-out and depth (:func:`fanout`), the request-type mix
(:func:`request_type_mix`) and the headline numbers (:func:`summary`).

Sources:

* Qin et al., "Mooncake: Trading More Storage for Less Computation — A KVCache-centric
  Architecture for Serving LLM Chatbot", FAST 2025 — multi-turn sessions whose prompts share
  and extend earlier prompts (the conversation and tool-agent traces).
* Wang et al., "KVCache Cache in the Wild: Characterizing and Optimizing KVCache Cache at a
  Large Cloud Provider", USENIX ATC 2025 (the Qwen-Bailian traces) — turn DAGs through
  ``parent_chat_id``, turn index, request types; per-turn reuse and the time between turns.
* Wang et al., "BurstGPT: A Real-World Workload Dataset to Optimize LLM Serving Systems",
  KDD 2025 (arXiv 2401.17644) — conversation sessions and requests per session.
* WEKA's agentic coding traces (callanjfox/kv-cache-tester, Apache-2.0) — Claude Code sessions
  with nested sub-agents, ``think_time`` (client delay before a request) and ``api_time``
  (server time); their README's medians (48 requests per conversation, think time 10 s, API
  time 6.5 s) are what :func:`summary` reports for such a trace.

Conventions shared by every function:

* ``requests`` is a :class:`polars.DataFrame` or :class:`polars.LazyFrame`; only the columns a
  function needs are read, and everything is one vectorized Polars plan (window expressions,
  one self-join for parent links): nothing loops over requests, sessions or groups. The
  cost is one sort by (trace, session, sub-agent, arrival) and, where needed, the join: on
  2 million requests in 50,000 sessions each function takes 2–6 s on two cores
  (:func:`request_type_mix`, which needs neither, a few ms).
* Columns. ``arrival_s``, ``input_tokens`` and ``output_tokens`` are required (the canonical
  schema makes them non-null). Every other column is optional: ``trace``, ``request_id``,
  ``session``, ``tenant``, ``model``, ``latency_s``, ``parent_request_id``, ``turn``,
  ``subagent``, ``agent_depth``, ``request_type``, ``cached_tokens``, ``reasoning_tokens``,
  ``think_s``, ``server_s``, ``tool_s``. A column that is absent is read as all null, and a
  column that is all null *within a trace* tells nothing about that trace: the canonical store
  holds every column, null where the source lacks it (Mooncake and BurstGPT have ``session``
  at most; the Mooncake conversation trace has no session at all).
* Sessions. A session is a distinct (``trace``, ``session``) pair (``session`` alone when there
  is no ``trace`` column). Rows with a null session belong to no session: they count as
  requests in :func:`summary` and :func:`request_type_mix`, and are left out of every
  per-session figure. So a trace without sessions gives an empty :func:`session_table`, null
  per-session figures in :func:`summary` and, unless it has parent links, null context
  growth (no previous request is known). Sessions are not derived from parent links (a
  Qwen-Bailian trace without a session column has a turn DAG but no session table).
* Agents. A request is issued by the main agent when its ``subagent`` is null, by the
  sub-agent of that id otherwise; ``agent_depth`` is 0 for the main agent, 1 for its
  sub-agents and so on, and is reported as given (null when absent). A request *is a
  sub-agent request* when ``subagent`` is non-null or ``agent_depth`` > 0; this is known only
  in a trace where one of the two columns holds a value (otherwise sub-agent counts and shares
  are null, not 0).
* Turns. ``turn`` is the 1-based turn index of the source where the trace holds any; in a
  trace without it, the turn of a request with a session is derived as its 1-based rank in
  arrival order among the requests of the same session and agent (ties kept in input order),
  and is null without a session.
* ``by`` is a column name or a list of them (tenant, model, ...; ``ValueError`` when absent);
  result frames start with the ``by`` columns, sorted by them, a null key being a group of its
  own. Per-session figures are keyed by the ``by`` columns *and* the session, so a session
  whose requests go to two models appears once per model when ``by="model"``.
* Quantiles are Polars' linear interpolation (Hyndman & Fan 1996, definition 7) over the
  non-null values; null where there are none. Sums are null when every summand is null.
* Batch traces (no arrival times) have nothing to order by: ``arrival_s`` must be non-null.
  Derived turns and the arrival-order fallback of context growth would be meaningless on them.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from servetrace.analysis.frames import columns as _keys
from servetrace.analysis.frames import lazy as as_lazy

__all__ = [
    "context_growth",
    "fanout",
    "request_type_mix",
    "session_table",
    "subagent_table",
    "summary",
    "turn_stats",
]

Frame = pl.DataFrame | pl.LazyFrame
By = str | Sequence[str] | None

REQUIRED = ("arrival_s", "input_tokens", "output_tokens")
#: Optional columns and the type they are read as when absent.
OPTIONAL: dict[str, pl.DataType] = {
    "trace": pl.String(), "request_id": pl.String(), "session": pl.String(),
    "parent_request_id": pl.String(), "turn": pl.Int64(), "subagent": pl.String(),
    "agent_depth": pl.Int64(), "request_type": pl.String(), "latency_s": pl.Float64(),
    "cached_tokens": pl.Int64(), "reasoning_tokens": pl.Int64(), "think_s": pl.Float64(),
    "server_s": pl.Float64(), "tool_s": pl.Float64(),
}
TIMES = ("think_s", "server_s", "tool_s")
TOKENS = ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens")
QUANTILES = (0.5, 0.9, 0.99)
SESSION_COLUMNS = ("requests", "turns", "subagents", "subagent_requests", "max_depth",
                   "first_arrival_s", "last_arrival_s", "duration_s", *TOKENS, *TIMES)
SUBAGENT_COLUMNS = ("subagent", "agent_depth", "spawned_by", "requests", "first_arrival_s",
                    "last_arrival_s", "duration_s", "input_tokens", "output_tokens")
GROWTH_COLUMNS = ("arrival_s", "input_tokens", "output_tokens", "prev_input_tokens",
                  "prev_output_tokens", "growth_tokens", "previous")
TURN_COLUMNS = ("turn", "metric", "requests", "n", "mean")
FANOUT_COLUMNS = ("level", "units", "with_subagents", "mean", "p50", "p99", "max", "max_depth")
MIX_COLUMNS = ("request_type", "requests", "share", "input_tokens", "output_tokens",
               "input_share")
SUMMARY_COLUMNS = (
    "requests", "sessions", "requests_per_session_mean", "requests_per_session_p50",
    "requests_per_session_p99", "turns_per_session_mean", "turns_per_session_p50",
    "duration_s_p50", *(f"{c}_p50" for c in TIMES), "context_growth_p50", "subagent_share",
    "sessions_with_subagents")

# Internal column names (never collide with canonical ones: they start with "_").
_T, _S, _ROW = "_trace", "_session", "_row"


# --------------------------------------------------------------------------- helpers


def _qname(q: float) -> str:
    """0.5 -> "p50", 0.999 -> "p99.9"."""
    return f"p{round(100 * q, 6):g}"


def _check_quantiles(quantiles: Sequence[float], fn: str) -> list[float]:
    qs = [float(q) for q in quantiles]
    for q in qs:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"{fn}: quantile {q} is not in [0, 1]")
    if len({_qname(q) for q in qs}) != len(qs):
        raise ValueError(f"{fn}: repeated quantile in {qs}")
    return qs


def _nsum(column: str | pl.Expr) -> pl.Expr:
    """Σ of the non-null values; null when all are null (Polars' sum would give 0)."""
    c = pl.col(column) if isinstance(column, str) else column
    return pl.when(c.count() > 0).then(c.sum()).otherwise(None)


def _session_keys(keys: list[str], present: set[str]) -> list[str]:
    """The columns naming a session in the output, after the ``by`` keys."""
    return [c for c in ("trace", "session") if c in present and c not in keys]


def _prepare(requests: Frame, fn: str, keys: list[str], *, order: bool = True,
             growth: bool = True) -> tuple[pl.LazyFrame, set[str]]:
    """``requests`` with every optional column (absent ones as typed nulls), the internal
    columns every function uses, and the set of columns the input really has.

    Internal columns: ``_row`` (input order), ``_trace``/``_session`` (the trace and session
    keys, "" for a missing trace), ``_sub`` (is a sub-agent request; null where unknown),
    ``_turn`` (source or derived turn), ``_prev_in``/``_prev_out``/``_previous`` (the previous
    request of :func:`context_growth`), ``growth_tokens`` and ``_end_s`` (arrival + latency).
    Without ``order`` the arrival-order columns (``_turn``, ``_arr_in``, ``_arr_out``) are
    skipped (no sort); without ``growth`` the parent join and the growth columns are. Rows
    come back in no particular order: sort by ``_row`` for the input order."""
    lazy = as_lazy(requests, f"{fn}: requests")
    schema = lazy.collect_schema()
    for column in (*REQUIRED, *keys):
        if column not in schema:
            raise ValueError(f"{fn}: requests has no column {column!r} "
                             f"(columns: {', '.join(schema.names())})")
    for column in REQUIRED:
        if not schema[column].is_numeric():
            raise ValueError(f"{fn}: column {column!r} must be numeric, not {schema[column]}")
    present = {c for c in OPTIONAL if c in schema}
    wanted = list(dict.fromkeys([*keys, *REQUIRED, *(c for c in OPTIONAL if c in schema)]))
    lazy = lazy.select(wanted).with_row_index(_ROW)
    lazy = lazy.with_columns(
        *(pl.lit(None, dtype).alias(c) for c, dtype in OPTIONAL.items() if c not in schema))
    casts = {c: OPTIONAL[c] for c in ("request_id", "parent_request_id", "session", "subagent",
                                      "request_type")}
    lazy = lazy.with_columns(
        pl.col("arrival_s").cast(pl.Float64),
        pl.col("input_tokens").cast(pl.Int64), pl.col("output_tokens").cast(pl.Int64),
        *(pl.col(c).cast(d).alias(f"_{c}") for c, d in casts.items()),
        pl.col("trace").cast(pl.String).fill_null("").alias(_T),
    ).with_columns(pl.col("_session").alias(_S))

    def known(column: str) -> pl.Expr:  # the trace holds at least one value of the column
        return pl.col(column).is_not_null().any().over(_T)

    agent = [_T, _S, "_subagent"]
    sub_known = known("_subagent") | known("agent_depth")
    is_sub = pl.col("_subagent").is_not_null() | (pl.col("agent_depth").fill_null(0) > 0)
    has_session = pl.col(_S).is_not_null()
    end = pl.col("arrival_s") + pl.coalesce("latency_s", "server_s", pl.lit(0.0))
    lazy = lazy.with_columns(pl.when(sub_known).then(is_sub).otherwise(None).alias("_sub"),
                             end.alias("_end_s"))
    if not order:
        return lazy, present
    # arrival order within session and agent: one sort, then window shifts
    lazy = lazy.sort(_T, _S, "_subagent", "arrival_s", _ROW, nulls_last=True)
    rank = pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over(agent)
    lazy = lazy.with_columns(
        pl.when(known("turn")).then(pl.col("turn").cast(pl.Int64))
        .when(has_session).then(rank).otherwise(None).alias("_turn"),
        pl.when(has_session).then(pl.col("input_tokens").shift(1).over(agent))
        .alias("_arr_in"),
        pl.when(has_session).then(pl.col("output_tokens").shift(1).over(agent))
        .alias("_arr_out"),
        known("_parent_request_id").alias("_by_parent"),
    )
    if not growth:
        return lazy, present
    # the parent of each request, where parent links exist: a self-join on the request id
    parents = (lazy.filter(pl.col("_request_id").is_not_null())
               .select(_T, pl.col("_request_id").alias("_parent_request_id"),
                       pl.col(_S).alias("_p_session"), pl.col("_subagent").alias("_p_agent"),
                       pl.col("input_tokens").alias("_p_in"),
                       pl.col("output_tokens").alias("_p_out"))
               .unique(subset=[_T, "_parent_request_id"], keep="first", maintain_order=True))
    lazy = lazy.join(parents, on=[_T, "_parent_request_id"], how="left")
    same_agent = (pl.col(_S).eq_missing(pl.col("_p_session"))
                  & pl.col("_subagent").eq_missing(pl.col("_p_agent")))
    by_parent = pl.col("_by_parent")
    parent_ok = pl.col("_p_in").is_not_null() & same_agent
    lazy = lazy.with_columns(
        pl.when(by_parent).then(pl.when(parent_ok).then(pl.col("_p_in")))
        .otherwise(pl.col("_arr_in")).alias("_prev_in"),
        pl.when(by_parent).then(pl.when(parent_ok).then(pl.col("_p_out")))
        .otherwise(pl.col("_arr_out")).alias("_prev_out"),
    ).with_columns(
        pl.when(pl.col("_prev_in").is_null()).then(None)
        .when(by_parent).then(pl.lit("parent")).otherwise(pl.lit("arrival")).alias("_previous"),
        (pl.col("input_tokens") - pl.col("_prev_in") - pl.col("_prev_out"))
        .alias("growth_tokens"),
    )
    return lazy, present


def _by(by: By, fn: str, outputs: Sequence[str]) -> list[str]:
    """The ``by`` keys; ``ValueError`` for a key that is also a result column of ``fn``."""
    keys = _keys(by)
    for key in keys:
        if key in outputs:
            raise ValueError(f"{fn}: by column {key!r} is also a result column")
    return keys


def _sorted(frame: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    return frame.sort(keys, nulls_last=True) if keys else frame


def _group(frame: pl.LazyFrame, keys: list[str], exprs: Sequence[pl.Expr]) -> pl.LazyFrame:
    """``group_by(keys).agg(exprs)`` sorted by the keys, or a one-row ``select``."""
    if keys:
        return frame.group_by(keys).agg(exprs).sort(keys, nulls_last=True)
    return frame.select(exprs)


# --------------------------------------------------------------------------- tables


def _sessions(lazy: pl.LazyFrame, keys: list[str], present: set[str]) -> pl.LazyFrame:
    skeys = _session_keys(keys, present)
    main = pl.col("_sub").fill_null(False).not_()
    subagents = (pl.when(pl.col("_sub").is_not_null().any())
                 .then(pl.col("_subagent").drop_nulls().n_unique()).cast(pl.Int64))
    exprs = [
        pl.len().cast(pl.Int64).alias("requests"),
        pl.coalesce(pl.col("_turn").filter(main).max(), pl.col("_turn").max()).alias("turns"),
        subagents.alias("subagents"),
        pl.col("_sub").cast(pl.Int64).sum().alias("subagent_requests"),
        pl.col("agent_depth").max().alias("max_depth"),
        pl.col("arrival_s").min().alias("first_arrival_s"),
        pl.col("arrival_s").max().alias("last_arrival_s"),
        (pl.col("_end_s").max() - pl.col("arrival_s").min()).alias("duration_s"),
        *(_nsum(c).cast(pl.Int64).alias(c) for c in TOKENS),
        *(_nsum(c).alias(c) for c in TIMES),
    ]
    grouped = (lazy.filter(pl.col(_S).is_not_null())
               .group_by([*keys, _T, _S])
               .agg(*exprs, (pl.col("_sub").count() > 0).alias("_sub_known")))
    grouped = grouped.with_columns(
        pl.when(pl.col("_sub_known")).then(pl.col("subagent_requests"))
        .alias("subagent_requests"))
    out = grouped.with_columns(pl.col(_T).alias("trace"), pl.col(_S).alias("session"))
    return _sorted(out.select(*keys, *skeys, *SESSION_COLUMNS), [*keys, *skeys])


def session_table(requests: Frame, by: By = None) -> pl.DataFrame:
    """One row per session (and ``by`` group): its size, agents, duration and totals.

    Per session ``S`` (the requests of one (trace, session) pair and ``by`` group):

    * ``requests`` = |S|; ``turns`` = max ``turn`` over the main agent's requests of ``S``
      (over all of ``S`` when it has none), the turn being the source's or the derived one
      (module docstring);
    * ``subagents`` = number of distinct non-null ``subagent`` ids in ``S``;
      ``subagent_requests`` = number of sub-agent requests; ``max_depth`` = max
      ``agent_depth`` (null where the trace does not say);
    * ``first_arrival_s`` = min aᵢ, ``last_arrival_s`` = max aᵢ and
      ``duration_s`` = maxᵢ (aᵢ + Lᵢ) − minᵢ aᵢ, with aᵢ the arrival and Lᵢ the request's
      ``latency_s``, else its ``server_s``, else 0 (so the duration runs from the first arrival
      to the end of the last request where its latency is known, to the last arrival
      otherwise);
    * ``input_tokens``, ``output_tokens``, ``cached_tokens``, ``reasoning_tokens``,
      ``think_s``, ``server_s``, ``tool_s``: Σ over ``S`` (null when all null).

    Rows without a session are left out: a trace without sessions gives an empty frame.
    Returns ``[by..., trace (if a column), session, requests, turns, subagents,
    subagent_requests, max_depth, first_arrival_s, last_arrival_s, duration_s, input_tokens,
    output_tokens, cached_tokens, reasoning_tokens, think_s, server_s, tool_s]``, sorted.
    """
    keys = _by(by, "session_table", SESSION_COLUMNS)
    lazy, present = _prepare(requests, "session_table", keys, growth=False)
    return _sessions(lazy, keys, present).collect()


def subagent_table(requests: Frame, by: By = None) -> pl.DataFrame:
    """One row per sub-agent: (trace, session, ``subagent``) with a non-null ``subagent``.

    ``agent_depth`` = its largest depth (null where unknown); ``spawned_by`` = the
    ``parent_request_id`` of its first request (in arrival order) when that parent is a
    request of another agent of the same session, i.e. the request that launched it (null
    without parent links); ``requests``; ``first_arrival_s``, ``last_arrival_s``,
    ``duration_s`` (as in :func:`session_table`); Σ ``input_tokens`` and ``output_tokens``.

    Empty when the input has no sub-agent ids (``agent_depth`` alone names no sub-agent).
    Returns ``[by..., trace (if a column), session, subagent, agent_depth, spawned_by,
    requests, first_arrival_s, last_arrival_s, duration_s, input_tokens, output_tokens]``.
    """
    keys = _by(by, "subagent_table", SUBAGENT_COLUMNS)
    lazy, present = _prepare(requests, "subagent_table", keys)
    return _subagents(lazy, keys, present).collect()


def _subagents(lazy: pl.LazyFrame, keys: list[str], present: set[str]) -> pl.LazyFrame:
    skeys = _session_keys(keys, present)
    launched = (pl.col("_p_session").eq_missing(pl.col(_S))
                & pl.col("_p_agent").ne_missing(pl.col("_subagent")))
    spawner = pl.when(launched).then(pl.col("_parent_request_id"))
    grouped = (lazy.filter(pl.col(_S).is_not_null() & pl.col("_subagent").is_not_null())
               .group_by([*keys, _T, _S, "_subagent"])
               .agg(pl.col("agent_depth").max(),
                    spawner.sort_by("arrival_s", _ROW).first().alias("spawned_by"),
                    pl.len().cast(pl.Int64).alias("requests"),
                    pl.col("arrival_s").min().alias("first_arrival_s"),
                    pl.col("arrival_s").max().alias("last_arrival_s"),
                    (pl.col("_end_s").max() - pl.col("arrival_s").min()).alias("duration_s"),
                    pl.col("input_tokens").sum(), pl.col("output_tokens").sum()))
    out = grouped.with_columns(pl.col(_T).alias("trace"), pl.col(_S).alias("session"),
                               pl.col("_subagent").alias("subagent"))
    return _sorted(out.select(*keys, *skeys, *SUBAGENT_COLUMNS), [*keys, *skeys, "subagent"])


def context_growth(requests: Frame, by: By = None) -> pl.DataFrame:
    """The context growth of every request: how much its input exceeds the previous
    request's whole context (input plus output) within the same session and agent.

    For request i with previous request p (below)::

        growth_tokens_i = input_tokens_i − (input_tokens_p + output_tokens_p)

    In a multi-turn chat or agent loop the next prompt is the previous prompt, the previous
    answer and what was added since (the user's message, tool results), so growth ≥ 0 is the
    number of new tokens appended between the two requests; growth < 0 means the context was
    truncated, compacted or rebuilt. (Mooncake, FAST'25, and Wang et al., ATC'25, describe
    this append-only growth of multi-turn prompts.)

    The previous request p: in a trace whose ``parent_request_id`` holds any value (a turn
    DAG), p is the request's parent, found by ``request_id`` within the trace, and only when
    the parent is in the same session and issued by the same agent (same ``session`` and
    ``subagent``, null matching null, so parent links need no session column): a root, a
    parent missing from the input, and the first request of a sub-agent (whose parent is the
    request of another agent that launched it) have none. In a trace without parent links, p
    is the previous request of the same session and agent in arrival order (ties in input
    order), and a request without a session has none. Where there is no p,
    ``growth_tokens`` is null.

    Returns one row per request, in input order: ``[by..., trace, session, subagent,
    request_id, turn (each where the input has the column), arrival_s, input_tokens,
    output_tokens, prev_input_tokens, prev_output_tokens, growth_tokens, previous]`` where
    ``turn`` is the source's or derived turn and ``previous`` says how p was found
    (``"parent"``, ``"arrival"``, or null without p).
    """
    keys = _by(by, "context_growth", GROWTH_COLUMNS)
    lazy, present = _prepare(requests, "context_growth", keys)
    ids = [c for c in ("trace", "session", "subagent", "request_id") if c in present
           and c not in keys]
    turn = [pl.col("_turn").alias("turn")] if "turn" not in keys else []
    return lazy.sort(_ROW).select(
        *keys, *ids, *turn, "arrival_s", "input_tokens", "output_tokens",
        pl.col("_prev_in").alias("prev_input_tokens"),
        pl.col("_prev_out").alias("prev_output_tokens"),
        "growth_tokens", pl.col("_previous").alias("previous")).collect()


def turn_stats(requests: Frame, by: By = None,
               quantiles: Sequence[float] = QUANTILES) -> pl.DataFrame:
    """Think time, server time, tool time and context growth per turn index.

    For each ``by`` group, turn index k (``turn``, or the derived turn: module docstring) and
    metric m ∈ {``think_s`` (the client's delay before the request), ``server_s`` (the
    server's time on it), ``tool_s`` (tool time before it), ``growth_tokens`` (see
    :func:`context_growth`)}: over the requests of turn k with a non-null m, ``n`` = their
    number, ``mean`` = Σm/n and the ``quantiles`` (columns ``p50``, ``p90``, ``p99`` by
    default). Rows without a turn (no session and no source turn) form the turn-null group.
    Every metric is listed for every turn, with ``n`` = 0 and null statistics where the trace
    has no values (Mooncake: no times and, without sessions, no growth).

    Returns ``[by..., turn, metric, requests, n, mean, p50, p90, p99]`` sorted by the keys,
    the turn and the metric order above; ``requests`` counts the turn's requests.
    """
    fn = "turn_stats"
    keys = _by(by, "turn_stats", TURN_COLUMNS)
    qs = _check_quantiles(quantiles, fn)
    lazy, _present = _prepare(requests, fn, keys)
    metrics = [*TIMES, "growth_tokens"]
    gkeys = [*keys, "_turn"]
    wide = lazy.group_by(gkeys).agg(
        pl.len().cast(pl.Int64).alias("requests"),
        *(e for m in metrics for e in (
            pl.col(m).count().cast(pl.Int64).alias(f"{m}|n"),
            pl.col(m).cast(pl.Float64).mean().alias(f"{m}|mean"),
            *(pl.col(m).cast(pl.Float64).quantile(q, "linear").alias(f"{m}|{_qname(q)}")
              for q in qs))))
    stats = ["n", "mean", *(_qname(q) for q in qs)]
    long = pl.concat([
        wide.select(*gkeys, "requests", pl.lit(i, pl.Int8).alias("_m"),
                    pl.lit(m).alias("metric"), *(pl.col(f"{m}|{s}").alias(s) for s in stats))
        for i, m in enumerate(metrics)])
    return (long.sort([*gkeys, "_m"], nulls_last=True)
            .select(*keys, pl.col("_turn").alias("turn"), "metric", "requests", *stats)
            .collect())


def fanout(requests: Frame, by: By = None) -> pl.DataFrame:
    """Sub-agent fan-out per session and per launching request, and agent depth.

    Two levels per ``by`` group:

    * ``level = "session"``: over the sessions where sub-agents are known (module docstring),
      x = the number of distinct sub-agents of the session (0 for most); ``units`` = sessions,
      ``with_subagents`` = sessions with x ≥ 1;
    * ``level = "parent_request"``: over the requests that launched at least one sub-agent
      (the ``spawned_by`` of :func:`subagent_table`, which needs parent links), x = the
      number of sub-agents each launched; ``units`` = ``with_subagents`` = those requests.

    ``mean``, ``p50``, ``p99``, ``max`` of x, and ``max_depth`` = the largest ``agent_depth``
    among the units' requests (sessions) or launched sub-agents (parent requests). A level
    with no unit has ``units`` = 0 and null statistics (traces without sub-agent information
    or parent links). Returns ``[by..., level, units, with_subagents, mean, p50, p99, max,
    max_depth]``.
    """
    keys = _by(by, "fanout", FANOUT_COLUMNS)
    lazy, present = _prepare(requests, "fanout", keys)
    sessions = _sessions(lazy, keys, present).filter(pl.col("subagents").is_not_null())
    per_parent = (_subagents(lazy, keys, present)
                  .filter(pl.col("spawned_by").is_not_null())
                  .group_by([*keys, *_session_keys(keys, present), "spawned_by"])
                  .agg(pl.len().cast(pl.Int64).alias("subagents"), pl.col("agent_depth").max()
                       .alias("max_depth")))

    def level(frame: pl.LazyFrame, name: str) -> pl.LazyFrame:
        x = pl.col("subagents")
        exprs = [pl.len().cast(pl.Int64).alias("units"),
                 (x > 0).sum().cast(pl.Int64).alias("with_subagents"),
                 x.cast(pl.Float64).mean().alias("mean"),
                 x.cast(pl.Float64).quantile(0.5, "linear").alias("p50"),
                 x.cast(pl.Float64).quantile(0.99, "linear").alias("p99"),
                 x.max().cast(pl.Int64).alias("max"),
                 pl.col("max_depth").max().cast(pl.Int64).alias("max_depth")]
        out = _group(frame, keys, exprs)
        if keys:  # groups present in the input but without units still get a row
            out = (lazy.select(keys).unique().join(out, on=keys, how="left", nulls_equal=True)
                   .with_columns(pl.col("units", "with_subagents").fill_null(0)))
        return out.with_columns(pl.lit(name).alias("level"))

    out = pl.concat([level(sessions, "session"), level(per_parent, "parent_request")])
    return out.select(*keys, *FANOUT_COLUMNS).sort([*keys, "level"], nulls_last=True,
                                                  descending=[*([False] * len(keys)), True]
                                                  ).collect()


def request_type_mix(requests: Frame, by: By = None) -> pl.DataFrame:
    """Requests and tokens by ``request_type`` (text, search, image, file, tool result,
    thinking, ... as the source names them).

    Per ``by`` group and type t: ``requests``; ``share`` = requests of t / requests of the
    group; ``input_tokens``, ``output_tokens`` = Σ over t; ``input_share`` = Σ input of t /
    Σ input of the group. A null type is a type of its own, so a trace without types gives
    one row per group with ``request_type`` null and ``share`` 1.

    Returns ``[by..., request_type, requests, share, input_tokens, output_tokens,
    input_share]`` sorted by the keys and the type (null last).
    """
    keys = _by(by, "request_type_mix", MIX_COLUMNS)
    lazy, _present = _prepare(requests, "request_type_mix", keys, order=False,
                                  growth=False)
    gkeys = [*keys, "_request_type"]
    counts = lazy.group_by(gkeys).agg(pl.len().cast(pl.Int64).alias("requests"),
                                      pl.col("input_tokens").sum(),
                                      pl.col("output_tokens").sum())
    total = (lambda c: c.sum().over(keys)) if keys else (lambda c: c.sum())
    return (counts.with_columns(
        (pl.col("requests") / total(pl.col("requests"))).alias("share"),
        (pl.col("input_tokens") / total(pl.col("input_tokens"))).alias("input_share"))
        .sort(gkeys, nulls_last=True)
        .select(*keys, pl.col("_request_type").alias("request_type"), "requests", "share",
                "input_tokens", "output_tokens", "input_share").collect())


def summary(requests: Frame, by: By = None) -> pl.DataFrame:
    """Headline session figures per ``by`` group, for the CLI and the report.

    ``requests`` = all rows; ``sessions`` = distinct (trace, session) pairs (0 without
    sessions); over the sessions of :func:`session_table`: ``requests_per_session_mean``,
    ``_p50``, ``_p99``, ``turns_per_session_mean``, ``_p50``, ``duration_s_p50``; over the
    requests: ``think_s_p50``, ``server_s_p50``, ``tool_s_p50``, ``context_growth_p50`` (the
    median ``growth_tokens`` of :func:`context_growth` over requests that have one);
    ``subagent_share`` = sub-agent requests / requests whose agent is known (null where no
    trace of the group names sub-agents); ``sessions_with_subagents`` = share of the sessions
    with known agents that have at least one sub-agent. Null where the inputs are absent.

    Returns ``[by..., requests, sessions, requests_per_session_mean, requests_per_session_p50,
    requests_per_session_p99, turns_per_session_mean, turns_per_session_p50, duration_s_p50,
    think_s_p50, server_s_p50, tool_s_p50, context_growth_p50, subagent_share,
    sessions_with_subagents]``.
    """
    keys = _by(by, "summary", SUMMARY_COLUMNS)
    lazy, present = _prepare(requests, "summary", keys)
    med = "linear"
    per_request = _group(lazy, keys, [
        pl.len().cast(pl.Int64).alias("requests"),
        *(pl.col(c).quantile(0.5, med).alias(f"{c}_p50") for c in TIMES),
        pl.col("growth_tokens").cast(pl.Float64).quantile(0.5, med).alias("context_growth_p50"),
        pl.col("_sub").cast(pl.Float64).mean().alias("subagent_share"),
    ])
    n = pl.col("requests").cast(pl.Float64)
    turns = pl.col("turns").cast(pl.Float64)
    sessions = _sessions(lazy, keys, present)
    per_session = _group(sessions, keys, [
        pl.len().cast(pl.Int64).alias("sessions"),
        n.mean().alias("requests_per_session_mean"),
        n.quantile(0.5, med).alias("requests_per_session_p50"),
        n.quantile(0.99, med).alias("requests_per_session_p99"),
        turns.mean().alias("turns_per_session_mean"),
        turns.quantile(0.5, med).alias("turns_per_session_p50"),
        pl.col("duration_s").quantile(0.5, med).alias("duration_s_p50"),
        (pl.col("subagents") > 0).cast(pl.Float64).mean().alias("sessions_with_subagents"),
    ])
    if keys:
        out = _sorted(per_request.join(per_session, on=keys, how="left", nulls_equal=True),
                      keys)
    else:
        out = pl.concat([per_request, per_session], how="horizontal")
    out = out.with_columns(pl.col("sessions").fill_null(0))
    return out.select(
        *keys, "requests", "sessions", "requests_per_session_mean", "requests_per_session_p50",
        "requests_per_session_p99", "turns_per_session_mean", "turns_per_session_p50",
        "duration_s_p50", *(f"{c}_p50" for c in TIMES), "context_growth_p50",
        "subagent_share", "sessions_with_subagents").collect()
