"""What a replay produces: its per-request records, their summary, and the result object.

The records (:data:`RECORD_SCHEMA`) are written as JSON lines while a replay runs
(:mod:`servetrace.synth.replay`), read back by :func:`load_results`, summarized by
:func:`summarize` (dispatch accuracy, latency percentiles, SLO attainment, goodput, the offline
backlog's throughput) and, per request class, model or priority, by :func:`summarize_by`, and
turned into canonical ``requests`` rows by :func:`to_requests`.

Stored trace (:func:`to_requests`)
    ``arrival_s`` is the *actual* send time from the replay zero (what the server saw; the
    schedule stays in the results file), ``input_tokens`` the requested prompt length,
    ``output_tokens`` the tokens received, ``failed``, ``latency_s``, ``ttft_s``,
    ``tpot_s`` as measured, ``cached_tokens`` as the server reported them, ``model`` the
    model sent, ``tenant``/``session``/
    ``request_id`` from the source trace. ``traces.origin`` is the replay zero in UTC;
    ``traces.notes`` holds the settings and the :class:`ReplaySummary`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import polars as pl

from servetrace.loaders import schema

RECORD_SCHEMA = pl.Schema({
    "index": pl.Int64,            # row of the schedule (0-based, arrival order)
    "request_id": pl.String,      # source request_id, else the index
    "tenant": pl.String,
    "session": pl.String,
    "scheduled_s": pl.Float64,    # s from the replay zero
    "sent_s": pl.Float64,         # s from the replay zero
    "send_lag_s": pl.Float64,     # sent_s - scheduled_s
    "wait_s": pl.Float64,         # part of the lag spent waiting for a concurrency slot
    "ttft_s": pl.Float64,         # s from sent_s to the first chunk with text
    "tpot_s": pl.Float64,         # (latency_s - ttft_s) / (output_tokens - 1)
    "latency_s": pl.Float64,      # s from sent_s to the end of the response (or the error)
    "itl_s": pl.List(pl.Float64),  # gaps between chunks with text, s
    "input_tokens": pl.Int64,     # requested prompt length
    "max_tokens": pl.Int64,       # requested output length
    "output_tokens": pl.Int64,    # received
    "chunks": pl.Int64,           # stream chunks that carried text
    "prompt_tokens": pl.Int64,    # the server's count of the prompt, where reported
    "cached_tokens": pl.Int64,    # usage.prompt_tokens_details.cached_tokens, where reported
    "after_index": pl.Int64,      # closed loop: the request this one waited for, else null
    "delay_s": pl.Float64,        # closed loop: think/tool time after it ended (scaled)
    "status": pl.Int64,           # HTTP status; null when no response came
    "error": pl.String,           # null on success
    "failed": pl.Boolean,
    "request_class": pl.String,   # the source's class (a mix's online, offline, or a label)
    "priority": pl.Int64,         # the source's priority, 0 the most urgent
    "model": pl.String,           # the model (or LoRA adapter) the request was sent to
    "offline": pl.Boolean,        # sent from the offline backlog
    "slo_ttft_s": pl.Float64,     # the source's TTFT target for the request, s
    "slo_tpot_s": pl.Float64,     # the source's TPOT target for the request, s
})
"""Columns of the per-request results (the results file and :attr:`ReplayResult.records`)."""

CLASS_COLUMNS = ("request_class", "priority", "model", "offline", "slo_ttft_s", "slo_tpot_s")
"""Record columns a replay copies from the source's class columns (null where it has none;
results files written before they existed read them as null)."""


@dataclass(frozen=True)
class ReplayProgress:
    """Where a running replay stands: requests ``sent`` (of ``total``), ``finished``
    (``failed`` among them), the send lag of the latest request sent (``lag_s``: how far
    behind its deadline the replay runs) and the largest so far, seconds since the zero."""

    total: int
    sent: int
    finished: int
    failed: int
    lag_s: float
    max_lag_s: float
    elapsed_s: float

    def line(self) -> str:
        """One line for a terminal or a log."""
        return (f"{self.elapsed_s:7.1f} s  sent {self.sent:,}/{self.total:,}  finished "
                f"{self.finished:,}  failed {self.failed:,}  in flight "
                f"{self.sent - self.finished:,}  lag {self.lag_s * 1e3:.1f} ms (max "
                f"{self.max_lag_s * 1e3:.1f} ms)")


class ProgressPrinter:
    """Prints :class:`ReplayProgress` to ``stream`` (stderr): on a terminal, one line
    rewritten in place at every call (a replay calls every ``progress_interval_s``, 1 s by
    default); elsewhere (a log file, a pipe, CI) a line every ``every_s`` seconds of the
    replay and the last one, so that an hour's replay writes 120 lines, not 3,600."""

    def __init__(self, stream: IO[str] | None = None, *, every_s: float = 30.0,
                 tty: bool | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_s = every_s
        self.last: float | None = None
        self.open = False

    def __call__(self, progress: ReplayProgress) -> None:
        if self.tty:
            self.stream.write("\r" + progress.line() + "\x1b[K")
            self.open = True
        elif (self.last is None or progress.elapsed_s - self.last >= self.every_s
              or progress.finished == progress.total):
            self.stream.write(progress.line() + "\n")
            self.last = progress.elapsed_s
        self.stream.flush()

    def close(self) -> None:
        """End the line a terminal shows."""
        if self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False


def meta_path(results: Path) -> Path:
    return results.with_name(results.name + ".meta.json")


def load_results(path: str | Path) -> pl.DataFrame:
    """The records of a results file (JSON lines), in :data:`RECORD_SCHEMA`.

    A last line cut short by a crash is ignored; rows come in completion order.
    """
    data = Path(path).read_bytes()
    data = data[: data.rfind(b"\n") + 1]
    if not data:
        return pl.DataFrame(schema=RECORD_SCHEMA)
    return pl.read_ndjson(data, schema=RECORD_SCHEMA)


def to_requests(records: pl.DataFrame, *, model: str | None = None,
                trace: str = "replay") -> pl.DataFrame:
    """The canonical ``requests`` rows of a replay's records, in send order.

    ``arrival_s`` = ``sent_s`` (the actual send time from the replay zero), ``input_tokens``
    requested, ``output_tokens`` received, ``failed``, ``latency_s``, ``ttft_s``,
    ``tpot_s`` measured, ``cached_tokens`` reported, ``model`` the model each request was
    sent to (else ``model``), ``request_id``/``tenant``/``session`` and the class columns
    (``request_class``, ``priority``, ``offline``, ``slo_ttft_s``, ``slo_tpot_s``) kept.
    """
    records = with_class_columns(records)
    frame = records.sort("sent_s", "index").select(
        pl.lit(trace).alias("trace"), "request_id", pl.col("sent_s").alias("arrival_s"),
        "tenant", "session", pl.coalesce("model", pl.lit(model, pl.String)).alias("model"),
        "input_tokens", "output_tokens", "failed", "latency_s", "ttft_s", "tpot_s",
        "cached_tokens", "request_class", "offline", "priority", "slo_ttft_s", "slo_tpot_s")
    return schema.conform("requests", frame)


def with_class_columns(records: pl.DataFrame) -> pl.DataFrame:
    """``records`` with every :data:`CLASS_COLUMNS` column (null where missing)."""
    missing = [pl.lit(None, RECORD_SCHEMA[c]).alias(c) for c in CLASS_COLUMNS
               if c not in records.columns]
    return records.with_columns(missing) if missing else records


@dataclass(frozen=True)
class ReplaySummary:
    """What a replay achieved: dispatch accuracy, latencies, SLO attainment and goodput.

    Rates: ``target_rate = (n - 1) / (max scheduled_s - min scheduled_s)`` and
    ``achieved_rate = (n - 1) / (max sent_s - min sent_s)``, requests per second (null for
    fewer than two requests or a zero span), ``rate_error = achieved / target - 1``.
    ``duration_s`` runs from the replay zero to the last response's end.

    SLO attainment (Zhong et al., *DistServe: Disaggregating Prefill and Decoding for
    Goodput-optimized Large Language Model Serving*, OSDI 2024): the fraction of the
    requests sent that succeeded with ``ttft_s <= ttft_slo_s`` and ``tpot_s <= tpot_slo_s``
    (a threshold left ``None`` is no constraint; a request with one output token has no
    TPOT and meets any TPOT SLO). Each request is held to its own targets where the trace
    gives them (``slo_ttft_s``, ``slo_tpot_s``: a mix's class targets), else to
    ``ttft_slo_s``/``tpot_slo_s``. Goodput is, as in vLLM's ``benchmark_serving.py``
    ``--goodput``, those good requests per second of ``duration_s``
    (``goodput_tokens_per_s``: their output tokens per second).
    Offline backlog: ``offline_requests`` were sent from it; ``offline_rps`` and
    ``offline_tokens_per_s`` are the successful ones and their output tokens per second of
    the backlog's span (first offline send to last offline end), null when there were none.
    Latency percentiles are over successful requests (null when none).

    Prefix cache: ``prompt_tokens`` and ``cached_tokens`` sum the server's counts over the
    requests that report cached tokens; ``hit_ratio = cached_tokens / prompt_tokens`` (null
    when no request reports them), next to the trace's own token hit ratio with an infinite
    cache (``trace_hit_ratio``) and with an LRU cache of the server's capacity
    (``trace_lru_hit_ratio``, in the schedule's order; ``sent_order_lru_hit_ratio``, in the
    order the requests were sent, which closed loop changes), from
    :mod:`servetrace.analysis.kvcache`, where known. A server whose prefix cache is an LRU
    of blocks reports ``hit_ratio == sent_order_lru_hit_ratio``; a gap measures how its
    cache differs.
    Closed loop: ``closed_loop_requests`` waited for another request;
    ``closed_loop_violations`` counts those sent before that request's end plus their delay
    (0 unless the replay is broken).
    """

    requests: int
    succeeded: int
    failed: int
    duration_s: float
    target_rate: float | None
    achieved_rate: float | None
    rate_error: float | None
    send_lag_p50_s: float
    send_lag_p99_s: float
    send_lag_max_s: float
    ttft_p50_s: float | None
    ttft_p99_s: float | None
    tpot_p50_s: float | None
    tpot_p99_s: float | None
    latency_p50_s: float | None
    latency_p99_s: float | None
    output_tokens: int
    output_tokens_per_s: float
    ttft_slo_s: float | None
    tpot_slo_s: float | None
    slo_attainment: float
    goodput_rps: float
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    hit_ratio: float | None = None
    trace_hit_ratio: float | None = None
    trace_lru_hit_ratio: float | None = None
    sent_order_lru_hit_ratio: float | None = None
    closed_loop_requests: int = 0
    closed_loop_violations: int = 0
    goodput_tokens_per_s: float = 0.0
    offline_requests: int = 0
    offline_rps: float | None = None
    offline_tokens_per_s: float | None = None


def closed_loop_check(records: pl.DataFrame) -> pl.DataFrame:
    """The closed-loop records with ``ready_s = sent_s[after] + latency_s[after] +
    delay_s`` (the earliest time the request may go) and ``early_s = ready_s - sent_s``
    (positive only for a request sent too early)."""
    ends = records.select(pl.col("index").alias("after_index"),
                          (pl.col("sent_s") + pl.col("latency_s")).alias("_end"))
    return (records.filter(pl.col("after_index").is_not_null())
            .join(ends, on="after_index", how="left", maintain_order="left")
            .with_columns((pl.col("_end") + pl.col("delay_s")).alias("ready_s"))
            .with_columns((pl.col("ready_s") - pl.col("sent_s")).alias("early_s"))
            .drop("_end"))


def summarize(records: pl.DataFrame, *, ttft_slo_s: float | None = None,
              tpot_slo_s: float | None = None, trace_hit_ratio: float | None = None,
              trace_lru_hit_ratio: float | None = None,
              sent_order_lru_hit_ratio: float | None = None) -> ReplaySummary:
    """Summarize a replay's records (see :class:`ReplaySummary` for every formula).

    Raises ``ValueError`` for empty records or a missing :data:`RECORD_SCHEMA` column.
    """
    missing = [c for c in RECORD_SCHEMA if c not in records.columns
               and c not in CLASS_COLUMNS]
    if missing:
        raise ValueError(f"records: missing columns {missing}")
    if records.is_empty():
        raise ValueError("records: no requests to summarize")
    records = with_class_columns(records)
    good = _good(ttft_slo_s, tpot_slo_s)
    ok = ~pl.col("failed")
    offline = pl.col("offline").fill_null(False)
    off_span = ((pl.col("sent_s") + pl.col("latency_s").fill_null(0.0)).filter(offline).max()
                - pl.col("sent_s").filter(offline).min())

    def q(col: str, p: float) -> pl.Expr:
        return pl.col(col).filter(ok).quantile(p, "linear").alias(f"{col}_{p}")

    reported = pl.col("cached_tokens").is_not_null()
    row = records.select(
        pl.len().alias("n"), ok.sum().alias("succeeded"),
        pl.col("prompt_tokens").filter(reported).sum().alias("prompt"),
        pl.col("cached_tokens").filter(reported).sum().alias("cached"),
        reported.sum().alias("reported"),
        pl.col("after_index").is_not_null().sum().alias("closed"),
        (pl.col("sent_s") + pl.col("latency_s").fill_null(0.0)).max().alias("end"),
        (pl.col("scheduled_s").max() - pl.col("scheduled_s").min()).alias("sched_span"),
        (pl.col("sent_s").max() - pl.col("sent_s").min()).alias("sent_span"),
        pl.col("send_lag_s").quantile(0.5, "linear").alias("lag50"),
        pl.col("send_lag_s").quantile(0.99, "linear").alias("lag99"),
        pl.col("send_lag_s").max().alias("lagmax"),
        *(q(c, p) for c in ("ttft_s", "tpot_s", "latency_s") for p in (0.5, 0.99)),
        pl.col("output_tokens").sum().alias("tokens"), good.sum().alias("good"),
        pl.col("output_tokens").filter(good).sum().alias("good_tokens"),
        offline.sum().alias("offline"), off_span.alias("off_span"),
        (ok & offline).sum().alias("offline_ok"),
        pl.col("output_tokens").filter(ok & offline).sum().alias("offline_tokens"),
    ).row(0, named=True)
    off_span = row["off_span"] if row["offline"] and row["off_span"] else None
    n = row["n"]
    duration = max(float(row["end"]), 0.0)
    target = (n - 1) / row["sched_span"] if n > 1 and row["sched_span"] > 0 else None
    achieved = (n - 1) / row["sent_span"] if n > 1 and row["sent_span"] > 0 else None
    return ReplaySummary(
        requests=n, succeeded=row["succeeded"], failed=n - row["succeeded"],
        duration_s=duration, target_rate=target, achieved_rate=achieved,
        rate_error=achieved / target - 1 if target and achieved else None,
        send_lag_p50_s=row["lag50"], send_lag_p99_s=row["lag99"], send_lag_max_s=row["lagmax"],
        ttft_p50_s=row["ttft_s_0.5"], ttft_p99_s=row["ttft_s_0.99"],
        tpot_p50_s=row["tpot_s_0.5"], tpot_p99_s=row["tpot_s_0.99"],
        latency_p50_s=row["latency_s_0.5"], latency_p99_s=row["latency_s_0.99"],
        output_tokens=int(row["tokens"]),
        output_tokens_per_s=row["tokens"] / duration if duration > 0 else 0.0,
        ttft_slo_s=ttft_slo_s, tpot_slo_s=tpot_slo_s,
        slo_attainment=row["good"] / n,
        goodput_rps=row["good"] / duration if duration > 0 else 0.0,
        prompt_tokens=int(row["prompt"]) if row["reported"] else None,
        cached_tokens=int(row["cached"]) if row["reported"] else None,
        hit_ratio=row["cached"] / row["prompt"] if row["reported"] and row["prompt"] else None,
        trace_hit_ratio=trace_hit_ratio, trace_lru_hit_ratio=trace_lru_hit_ratio,
        sent_order_lru_hit_ratio=sent_order_lru_hit_ratio,
        closed_loop_requests=int(row["closed"]),
        closed_loop_violations=int((closed_loop_check(records)["early_s"] > 1e-9).sum())
        if row["closed"] else 0,
        goodput_tokens_per_s=row["good_tokens"] / duration if duration > 0 else 0.0,
        offline_requests=int(row["offline"]),
        offline_rps=row["offline_ok"] / off_span if off_span else None,
        offline_tokens_per_s=row["offline_tokens"] / off_span if off_span else None,
    )


def _slo_checked(ttft_slo_s: float | None, tpot_slo_s: float | None) -> None:
    for name, slo in (("ttft_slo_s", ttft_slo_s), ("tpot_slo_s", tpot_slo_s)):
        if slo is not None and not slo > 0:
            raise ValueError(f"{name} must be > 0, got {slo}")


def _good(ttft_slo_s: float | None, tpot_slo_s: float | None) -> pl.Expr:
    """Whether a record succeeded within its own SLOs (``slo_ttft_s``, ``slo_tpot_s``), else
    within the given ones; a missing target is no constraint, a missing TPOT (one output
    token) meets any."""
    _slo_checked(ttft_slo_s, tpot_slo_s)
    ttft = pl.coalesce(pl.col("slo_ttft_s"), pl.lit(ttft_slo_s, pl.Float64))
    tpot = pl.coalesce(pl.col("slo_tpot_s"), pl.lit(tpot_slo_s, pl.Float64))
    return (~pl.col("failed") & (ttft.is_null() | (pl.col("ttft_s") <= ttft).fill_null(False))
            & (tpot.is_null() | (pl.col("tpot_s") <= tpot).fill_null(True)))


GROUP_COLUMNS = ("request_class", "model", "priority")
"""Record columns :func:`summarize_by` groups by."""


def summarize_by(records: pl.DataFrame, by: str = "request_class", *,
                 ttft_slo_s: float | None = None,
                 tpot_slo_s: float | None = None) -> pl.DataFrame:
    """Per-group summary of a replay's records: one row per value of ``by``
    (``request_class``, ``model`` or ``priority``; nulls form a group of their own), sorted.

    Columns: ``by``, ``requests``, ``failed``, ``offline`` (sent from the backlog),
    ``ttft_p50_s``/``ttft_p99_s``/``tpot_p50_s``/``tpot_p99_s`` (over the group's successful
    requests, linear interpolation), ``ttft_slo_s``/``tpot_slo_s`` (the group's target
    where all its requests share one, from the trace's columns or the given SLOs),
    ``slo_attainment`` (good requests / requests, each held to its own targets as in
    :class:`ReplaySummary`), ``goodput_rps`` and ``goodput_tokens_per_s`` (good requests and
    their output tokens per second of the whole replay's ``duration_s``, so groups add up to
    the replay's), ``throughput_rps`` and ``output_tokens_per_s`` (successful requests and
    their output tokens per second of the same duration: an offline class's throughput),
    ``request_share`` of the replay's requests.

    Raises ``ValueError`` for empty records or another ``by``.
    """
    if by not in GROUP_COLUMNS:
        raise ValueError(f"by must be one of {', '.join(GROUP_COLUMNS)}, not {by!r}")
    if records.is_empty():
        raise ValueError("records: no requests to summarize")
    records = with_class_columns(records)
    good = _good(ttft_slo_s, tpot_slo_s)
    ok = ~pl.col("failed")
    duration = max(float(records.select(
        (pl.col("sent_s") + pl.col("latency_s").fill_null(0.0)).max()).item()), 0.0)
    per_s = 1.0 / duration if duration > 0 else 0.0

    def q(col: str, p: float, name: str) -> pl.Expr:
        return pl.col(col).filter(ok).quantile(p, "linear").alias(name)

    def target(col: str, given: float | None) -> pl.Expr:
        t = pl.coalesce(pl.col(col), pl.lit(given, pl.Float64))
        return pl.when(t.n_unique() == 1).then(t.first()).alias(col[4:-2] + "_slo_s")

    return (records.group_by(by).agg(
        pl.len().alias("requests"), (~ok).sum().alias("failed"),
        pl.col("offline").fill_null(False).sum().alias("offline"),
        q("ttft_s", 0.5, "ttft_p50_s"), q("ttft_s", 0.99, "ttft_p99_s"),
        q("tpot_s", 0.5, "tpot_p50_s"), q("tpot_s", 0.99, "tpot_p99_s"),
        target("slo_ttft_s", ttft_slo_s), target("slo_tpot_s", tpot_slo_s),
        (good.sum() / pl.len()).alias("slo_attainment"),
        (good.sum() * per_s).alias("goodput_rps"),
        (pl.col("output_tokens").filter(good).sum() * per_s).alias("goodput_tokens_per_s"),
        (ok.sum() * per_s).alias("throughput_rps"),
        (pl.col("output_tokens").filter(ok).sum() * per_s).alias("output_tokens_per_s"),
    ).with_columns((pl.col("requests") / records.height).alias("request_share"))
        .sort(by, nulls_last=True))


@dataclass(frozen=True)
class ReplayResult:
    """The outcome of a replay.

    ``records``: one row per request that finished (:data:`RECORD_SCHEMA`, completion
    order). ``meta``: the settings (endpoint without credentials, model, api, time scale,
    concurrency, timeout, seed, replay zero in UTC, source trace). ``interrupted``: the
    replay was stopped (Ctrl-C or cancellation) before every request finished;
    ``cancelled`` requests were in flight then and ``not_sent`` never left. ``trace``: the
    store trace written (:func:`write_replay`), else ``None``.
    """

    records: pl.DataFrame
    meta: dict[str, Any]
    interrupted: bool = False
    cancelled: int = 0
    not_sent: int = 0
    results_path: Path | None = None
    trace: str | None = None

    def requests(self) -> pl.DataFrame:
        """The canonical ``requests`` rows (:func:`to_requests`)."""
        return to_requests(self.records, model=self.meta.get("model"),
                           trace=self.trace or "replay")

    def summary(self, *, ttft_slo_s: float | None = None,
                tpot_slo_s: float | None = None) -> ReplaySummary:
        """:func:`summarize` of the records, with the trace's hit ratios from ``meta``."""
        return summarize(self.records, ttft_slo_s=ttft_slo_s, tpot_slo_s=tpot_slo_s,
                         **trace_ratios(self.meta))

    def summary_by(self, by: str = "request_class", *, ttft_slo_s: float | None = None,
                   tpot_slo_s: float | None = None) -> pl.DataFrame:
        """:func:`summarize_by` of the records (per class, model or priority)."""
        return summarize_by(self.records, by, ttft_slo_s=ttft_slo_s, tpot_slo_s=tpot_slo_s)


def class_tables(records: pl.DataFrame, *, ttft_slo_s: float | None = None,
                 tpot_slo_s: float | None = None) -> dict[str, pl.DataFrame]:
    """The per-group summaries worth showing for these records: ``"per class"`` when any
    request has a class, ``"per model"`` when they went to more than one model,
    ``"per priority"`` when they carry more than one priority (:func:`summarize_by`)."""
    if records.is_empty():
        return {}
    records = with_class_columns(records)
    tables = {}
    for by, name, least in (("request_class", "per class", 1), ("model", "per model", 2),
                            ("priority", "per priority", 2)):
        if records[by].drop_nulls().n_unique() >= least:
            tables[name] = summarize_by(records, by, ttft_slo_s=ttft_slo_s,
                                        tpot_slo_s=tpot_slo_s)
    return tables


def trace_ratios(meta: dict[str, Any]) -> dict[str, float | None]:
    """``trace_hit_ratio``, ``trace_lru_hit_ratio`` and ``sent_order_lru_hit_ratio`` of a
    replay's settings (None when its prompts did not share prefixes)."""
    prefix = meta.get("prefix") or {}
    return {k: prefix.get(k) for k in ("trace_hit_ratio", "trace_lru_hit_ratio",
                                       "sent_order_lru_hit_ratio")}
