"""Closed-loop sessions for :mod:`servetrace.synth.replay`: which request waits for which,
and how long after it finished.

An agent (or a person) sends the next turn of a session only after it has read the previous
response and thought, or run its tools; a sub-agent starts when the request that spawned it
has answered. A replay that sends every request at its trace time instead (open loop) sends
turns before the responses they build on exist whenever the server is slower than the
trace's, and never lets a faster server finish a session sooner. The tools that replay
agentic traces do the same (AIPerf's multi-turn and agentic trace replay, GuideLLM's and
inference-perf's WEKA replay: next turn after the response plus the recorded delay).

Rules (:func:`dependencies`), over the replay schedule in arrival order:

- ``after``: the request a request waits for. Its ``parent_request_id`` where that names a
  request of the replay that comes earlier in the schedule (the canonical turn DAG: previous
  turn, or the request that spawned a sub-agent); otherwise the previous request of its
  ``session`` in arrival order; null for the first request of a session, a request without
  a session, and every request when ``closed_loop`` is off. Requests with a null ``after``
  are sent open loop at ``scheduled_s``.
- ``delay_s``: the wait after ``after``'s response has ended, scaled by ``time_scale``:
  ``think_s + tool_s`` (a null one counts 0) where the trace gives either; else the trace's
  own gap between the two, ``arrival - (arrival_after + latency_after)``, with the
  predecessor's ``latency_s`` (else ``server_s``, else 0), clipped at 0.

At run time the request is sent at ``end of after's response + delay_s``; the records keep
``after_index`` and ``delay_s``, so that ``sent_s >= sent_s[after] + latency_s[after] +
delay_s`` can be checked on every row.

Slices (:func:`slice_plan`): ``limit`` keeps the first ``limit`` requests of the schedule,
``duration_s`` those scheduled before ``duration_s`` (seconds of the replay, after
``time_scale``). Both cut the trace's schedule; closed-loop requests of the slice may then
be sent later than ``duration_s``.
"""

from __future__ import annotations

import polars as pl

__all__ = ["DEPENDENCY_COLUMNS", "dependencies", "slice_plan"]

DEPENDENCY_COLUMNS = ("parent_request_id", "think_s", "tool_s", "latency_s", "server_s")
"""Columns of the source trace the rules read, where present."""


def slice_plan(plan: pl.DataFrame, *, limit: int | None = None,
               duration_s: float | None = None) -> pl.DataFrame:
    """The first ``limit`` rows of a schedule and/or those with ``scheduled_s <
    duration_s``; ``index`` is renumbered 0..n-1. Raises ``ValueError`` for ``limit < 1`` or
    ``duration_s <= 0``, or when nothing is left."""
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        plan = plan.head(limit)
    if duration_s is not None:
        if not duration_s > 0:
            raise ValueError(f"duration must be > 0 s, got {duration_s}")
        plan = plan.filter(pl.col("scheduled_s") < duration_s)
    if plan.is_empty():
        raise ValueError("requests: no rows left to replay in the slice")
    return plan.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("index"))


def dependencies(plan: pl.DataFrame, *, time_scale: float = 1.0,
                 closed_loop: bool = True) -> pl.DataFrame:
    """``plan`` (a replay schedule with ``index``, ``request_id``, ``session``,
    ``scheduled_s`` and any of :data:`DEPENDENCY_COLUMNS`) with ``after_index`` (Int64) and
    ``delay_s`` (Float64) added by the rules of the module docstring."""
    names = plan.columns
    if not closed_loop or plan.is_empty():
        return plan.with_columns(pl.lit(None, pl.Int64).alias("after_index"),
                                 pl.lit(None, pl.Float64).alias("delay_s"))

    def col(name: str, dtype: type[pl.DataType]) -> pl.Expr:
        return pl.col(name).cast(dtype) if name in names else pl.lit(None, dtype)

    ids = (plan.select(pl.col("request_id").alias("_pid"), pl.col("index").alias("_pidx"))
           .unique("_pid", keep="first"))
    frame = plan.with_columns(col("parent_request_id", pl.String).alias("_pid"))
    frame = frame.join(ids, on="_pid", how="left", maintain_order="left")
    by_parent = pl.when(pl.col("_pidx") < pl.col("index")).then(pl.col("_pidx"))
    by_session = pl.when(pl.col("session").is_not_null()).then(
        pl.col("index").shift(1).over("session"))
    frame = frame.with_columns(pl.coalesce(by_parent, by_session).alias("after_index"))
    busy = pl.coalesce(col("latency_s", pl.Float64), col("server_s", pl.Float64),
                       pl.lit(0.0)) * time_scale
    prev = frame.select(pl.col("index").alias("after_index"),
                        pl.col("scheduled_s").alias("_at"), busy.alias("_busy"))
    frame = frame.join(prev, on="after_index", how="left", maintain_order="left")
    think, tool = col("think_s", pl.Float64), col("tool_s", pl.Float64)
    given = think.is_not_null() | tool.is_not_null()
    gap = (pl.col("scheduled_s") - pl.col("_at") - pl.col("_busy")).clip(lower_bound=0.0)
    delay = (pl.when(pl.col("after_index").is_null()).then(None)
             .when(given).then((think.fill_null(0.0) + tool.fill_null(0.0)) * time_scale)
             .otherwise(gap))
    return (frame.with_columns(delay.clip(lower_bound=0.0).alias("delay_s"))
            .drop("_pid", "_pidx", "_at", "_busy"))
