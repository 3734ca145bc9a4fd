"""TraceLab: LLM rounds of Claude Code and Codex coding agents in the wild (UW SyFI Lab).

Source: https://github.com/uw-syfi/TraceLab, release asset ``syfi_coding_trace.jsonl.gz``
(release ``v0.0.1``: 357,161 LLM rounds, Claude 140,338 and Codex 216,823, from 43
pseudonymized developers; dataset license CC BY 4.0, ``LICENSE-DATASET.md``). One JSON object
per line, one LLM invocation (a *round*) per line; gzip is read transparently. The release's
prebuilt DuckDB file is not read here (use the JSONL).

The real file is not in ``../shared/traces``: this loader is tested on files written in the
documented shape. What was confirmed, and where (repository at commit ``0b8a262``):

* the field names, nesting and meanings: the repository README ("Data format": token
  accounting, ``timing_events[]``, ``tools[]``, latency fields),
  ``example_sessions/sanitized/README.md`` (the fields a public, sanitized row keeps),
  ``artifacts/utils/DB_SCHEMA.md`` (types of every column, "``prefix_tokens``:
  cached/prefix portion", ``round_index``: "position within the session"; ``round_id``,
  ``trace_key`` and ``(session_id, round_index)`` are *not* unique in the release),
  ``docs/prompt_cache_accounting.md`` (``prefix_tokens`` is Claude's
  ``cache_read_input_tokens`` and Codex's ``cached_input_tokens``; ``newly_append_tokens`` is
  Claude's ``input_tokens + cache_creation_input_tokens`` and Codex's
  ``max(0, input − cached)``; Codex ``output_tokens`` include the reasoning tokens), and the
  metric definitions of ``artifacts/utils/README.md`` (input events ``user_message`` and
  ``tool_result``, model-output events ``reasoning``, ``text`` and ``tool_call``; "observable
  generation time" = latest input event → last model-output event of the round);
* the exact shape (key order, ``null`` for absent values, millisecond UTC timestamps ending
  in ``Z``, Codex ``usage_report`` events, Claude rows without ``turn_id``, Codex rows without
  ``project``): ``example_sessions/sanitized/round_trace.jsonl`` (19 rows, 10 Claude and 9
  Codex), read to check this loader, not copied. A row looks like (values made up)::

    {"provider": "codex", "session_id": "codex:1b2c…", "round_index": 3,
     "round_id": "7f1e…:3", "turn_id": "7f1e…", "model": "gpt-5.4",
     "input_tokens_total": 10152, "prefix_tokens": 9984, "newly_append_tokens": 168,
     "claude_uncached_input_tokens": null, "claude_cache_creation_input_tokens": null,
     "claude_cache_read_input_tokens": null, "output_tokens": 233,
     "reasoning_output_tokens": 26,
     "timing_events": [{"event_type": "tool_result", "timestamp": "2026-03-21T10:06:14.634Z",
                        "source": "response_item.function_call_output", ...},
                       {"event_type": "reasoning", "timestamp": "2026-03-21T10:06:16.103Z"},
                       {"event_type": "tool_call", "timestamp": "2026-03-21T10:06:18.480Z",
                        "tool_name": "exec_command", "tool_index": 0, ...},
                       {"event_type": "usage_report", "timestamp": "..."}],
     "tools": [{"tool_index": 0, "tool_name": "exec_command", "emitted_at": "...",
                "result_at": "...", "tool_wall_latency_ms": 91,
                "tool_internal_latency_ms": 0, "is_error": false, ...}],
     "current_input_event_count": 1, ..., "first_input_event_type": "tool_result",
     "store": ".codex", "trace_key": "codex:codex:1b2c…:7f1e…:3"}

Mapping, one ``requests`` row per round (``START`` is the round's request start, below):

- ``request_id`` = ``trace_key`` (the extractor's ``provider:session_id:round_id`` key; not
  unique in the release, duplicates are kept and counted in ``notes``); ``session`` =
  ``session_id``; ``tenant`` = ``user`` (pseudonymous developer) where the row has it;
  ``model`` = ``model``; ``log_type`` = ``provider`` (``claude`` or ``codex``);
- ``turn`` = ``round_index + 1`` (the round's position in its session, made 1-based);
  ``request_type`` = ``first_input_event_type`` (``user_message`` or ``tool_result``);
- ``input_tokens`` = ``prefix_tokens + newly_append_tokens`` (the README's
  ``input_tokens_total``); ``cached_tokens`` = ``prefix_tokens`` (the provider-reported cache
  read, per ``docs/prompt_cache_accounting.md``); ``output_tokens`` = ``output_tokens``;
  ``reasoning_tokens`` = ``reasoning_output_tokens`` (Codex; null for Claude, whose
  thinking tokens the source does not split out);
- ``START`` = the latest input event at or before the round's first model-output event (all
  input events when the round has none), else the round's first timestamped event (counted
  as ``arrival_from_first_event``). ``arrival_s`` = seconds from the earliest ``START`` of
  the trace, which is ``origin`` (UTC); sessions of different developers interleave in time;
- ``server_s`` = ``latency_s`` = last model-output event − ``START``: TraceLab's observable
  generation time, the one request-duration measurement the client logs give (null when the
  round has no model-output event); ``ttft_s`` stays null (the logs time content blocks, not
  the first token);
- the gap before a request, ``START`` minus the latest event of the previous round of the same
  session (``round_index`` order, then file order), is ``think_s`` when the event at
  ``START`` is a ``user_message`` (TraceLab's human input wait) and ``tool_s`` when it is a
  ``tool_result`` (tool time the agent waited through); null for a session's first round,
  and null when negative (rounds that overlap in time, counted in ``notes``);
- ``parent_request_id``, ``subagent``, ``agent_depth``, ``hash_ids``, ``ttft_s``, ``tpot_s``:
  not in the release (sanitized session ids do not show which sessions are sub-agents),
  null. ``tools[]`` are counted in ``notes`` (their latencies are per tool, not per request).

Rejected with a reason: a line that is not a JSON object; ``prefix_tokens``,
``newly_append_tokens`` or ``output_tokens`` missing, non-numeric, negative or fractional;
``reasoning_output_tokens`` or ``input_tokens_total`` present but non-numeric, negative or
fractional; a ``round_index`` that is not a non-negative integer; ``timing_events`` missing or
not a list; a ``timing_events`` timestamp that is not an ISO-8601 time (a ``Z`` or numeric
UTC offset is read; a time without one is read as UTC); a round without any timestamped
event. Counted, not rejected (``notes``): ``input_tokens_total`` other than prefix +
appended, events without a timestamp, rounds without model output, duplicate ``trace_key``.

Cite: TraceLab: a real-world Claude / Codex trace and open toolkit for coding-agent workload
analysis. SyFI Lab, University of Washington, 2026. https://tracelab.cs.washington.edu,
https://github.com/uw-syfi/TraceLab (dataset CC BY 4.0; the authors give no formal citation
entry yet).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from servetrace.loaders.dataset import Dataset, Loaded, Part, RemoteFile
from servetrace.loaders.schema import validate
from servetrace.loaders.source import (
    FormatError,
    first_json,
    jsonl_rows,
    parse_number,
    parse_timestamp,
    sort_by,
)

VERSION = "1"
KEYS = ["provider", "session_id", "round_index", "turn_id", "model", "user",
        "input_tokens_total", "prefix_tokens", "newly_append_tokens", "output_tokens",
        "reasoning_output_tokens", "first_input_event_type", "trace_key", "timing_events",
        "tools"]
#: Event types of the round's input and of the model's output (artifacts/utils/README.md).
INPUT_EVENTS = ("user_message", "tool_result")
OUTPUT_EVENTS = ("reasoning", "text", "tool_call")
_RELEASE = "https://github.com/uw-syfi/TraceLab/releases/download/v0.0.1/"
# A flat JSON object; quoted strings may hold braces.
_OBJECT = r'\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*\}'

DATASET = Dataset(
    name="tracelab",
    title="TraceLab: Claude Code and Codex coding-agent LLM rounds (UW SyFI Lab)",
    citation=("TraceLab: a real-world Claude / Codex trace and open toolkit for coding-agent "
              "workload analysis. SyFI Lab, University of Washington, 2026. "
              "https://tracelab.cs.washington.edu, https://github.com/uw-syfi/TraceLab."),
    license="CC-BY-4.0",
    homepage="https://github.com/uw-syfi/TraceLab",
    parts=(Part("coding_trace", (RemoteFile(
        _RELEASE + "syfi_coding_trace.jsonl.gz", "syfi_coding_trace.jsonl.gz",
        sha256="9d265eae69a31cae203848bea936f018148eed7ca8bf56050c5abe96da0b4e6b"),),
        "release v0.0.1: 357,161 LLM rounds (Claude 140,338, Codex 216,823) of 43 "
        "developers, with timing events and tool records"),),
)


def detect(path: Path) -> bool:
    """A JSON-lines file whose first object has TraceLab's round keys."""
    obj = first_json(path)
    return isinstance(obj, dict) and {"prefix_tokens", "newly_append_tokens",
                                      "timing_events"} <= set(obj)


def parse_iso(text: pl.Expr) -> pl.Expr:
    """ISO-8601 text to a naive UTC ``Datetime('ns')``; null where it is not one.

    ``Z``, ``+00:00`` and no zone (read as UTC) go through
    :func:`~servetrace.loaders.source.parse_timestamp`; another numeric offset is applied.
    """
    offset = text.str.strip_chars().str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_unit="ns", time_zone="UTC")
    return pl.coalesce(parse_timestamp(text), offset.dt.replace_time_zone(None))


def _count_checks(key: str, *, required: bool) -> list[tuple[pl.Expr, pl.Expr]]:
    """``(fails, reason)`` pairs for a token count read from the text of ``key``."""
    text = pl.col(key)
    value = parse_number(text)
    checks = [(text.is_not_null() & value.is_null(),
               pl.format("unparsable {}: '{}'", pl.lit(key), text)),
              (value < 0, pl.format("negative {}: {}", pl.lit(key), text)),
              (value.is_finite() & (value != value.floor()),
               pl.format("non-integer {}: {}", pl.lit(key), text))]
    if required:
        checks.insert(0, (text.is_null(), pl.lit(f"missing {key}")))
    return checks


def events(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per timing event: ``_row``, ``_i`` (0-based position), ``event_type``,
    ``_ts_text`` and ``_ts`` (parsed, naive UTC), plus ``_is_in``/``_is_out`` flags."""
    ev = pl.col("timing_events")
    out = rows.select(
        "_row", pl.when(ev.str.starts_with("[")).then(ev.str.extract_all(_OBJECT))
        .alias("_obj")).explode("_obj").filter(pl.col("_obj").is_not_null())
    out = out.with_columns(
        pl.int_range(pl.len()).over("_row").alias("_i"),
        pl.col("_obj").str.json_path_match("$.event_type").alias("event_type"),
        pl.col("_obj").str.json_path_match("$.timestamp").alias("_ts_text"))
    return out.with_columns(
        parse_iso(pl.col("_ts_text")).alias("_ts"),
        pl.col("event_type").is_in(INPUT_EVENTS).alias("_is_in"),
        pl.col("event_type").is_in(OUTPUT_EVENTS).alias("_is_out")).drop("_obj")


def round_times(ev: pl.DataFrame) -> pl.DataFrame:
    """Per round (``_row``): the request start, its event type, the first and last model
    output, the last event of any type, and the first bad timestamp (see module docstring)."""
    ts = pl.col("_ts")
    first_out = ts.filter(pl.col("_is_out")).min().over("_row")
    ev = ev.with_columns(first_out.alias("_first_out"))
    trigger = pl.col("_is_in") & ts.is_not_null() & (
        pl.col("_first_out").is_null() | (ts <= pl.col("_first_out")))
    bad = pl.col("_ts_text").is_not_null() & ts.is_null()
    return ev.group_by("_row").agg(
        ts.filter(trigger).max().alias("_start_in"),
        pl.col("event_type").filter(trigger).sort_by(ts.filter(trigger)).last()
        .alias("_trigger"),
        ts.min().alias("_first"),
        ts.max().alias("_last"),
        ts.filter(pl.col("_is_out")).max().alias("_last_out"),
        pl.len().alias("_events"),
        pl.col("_ts_text").is_null().sum().alias("_untimed"),
        pl.col("_i").filter(bad).first().alias("_bad_i"),
        pl.col("_ts_text").filter(bad).first().alias("_bad_ts"),
    )


def _seconds(delta: pl.Expr) -> pl.Expr:
    return delta.dt.total_microseconds() / 1e6


def load(paths: list[Path], trace: str) -> Loaded:
    """Read TraceLab round JSONL file(s) onto ``requests`` (see the module docstring).

    Several files are one trace with one time origin (the earliest request start of all).
    """
    if not paths:
        raise FormatError(".", "no TraceLab files given")
    rows = pl.concat([jsonl_rows(p, KEYS) for p in paths]).with_row_index("_row")
    times = round_times(events(rows))
    rows = rows.join(times, on="_row", how="left")
    ev = pl.col("timing_events")
    ri = parse_number(pl.col("round_index"))
    start = pl.coalesce("_start_in", "_first")
    parsed = rows.with_columns(
        (parse_number(pl.col("prefix_tokens")) + parse_number(pl.col("newly_append_tokens")))
        .alias("input_tokens"),
        parse_number(pl.col("prefix_tokens")).alias("cached_tokens"),
        parse_number(pl.col("output_tokens")).alias("output_tokens_n"),
        parse_number(pl.col("reasoning_output_tokens")).alias("reasoning_tokens"),
        start.alias("_start"),
        # an absolute time, only so that validate sees a number; made relative below
        (start.dt.epoch("us") / 1e6).alias("arrival_s"),
        _seconds(pl.col("_last_out") - start).alias("server_s"),
        (ri.cast(pl.Int64, strict=False) + 1).alias("turn"),
    )
    checks = [
        *_count_checks("prefix_tokens", required=True),
        *_count_checks("newly_append_tokens", required=True),
        *_count_checks("output_tokens", required=True),
        *_count_checks("reasoning_output_tokens", required=False),
        *_count_checks("input_tokens_total", required=False),
        (pl.col("round_index").is_not_null() & (ri.is_null() | (ri < 0) | (ri != ri.floor())),
         pl.format("round_index is not a non-negative integer: {}", pl.col("round_index"))),
        (ev.is_null(), pl.lit("missing timing_events")),
        (~ev.str.starts_with("["),
         pl.format("timing_events is not a list: {}", ev.str.slice(0, 60))),
        (pl.col("_bad_ts").is_not_null(),
         pl.format("unparsable ISO-8601 timestamp in timing_events[{}]: '{}'",
                   pl.col("_bad_i"), pl.col("_bad_ts"))),
        (pl.col("_start").is_null(), pl.lit("no timing event with a timestamp")),
    ]
    parsed = parsed.drop("output_tokens").rename({"output_tokens_n": "output_tokens"})
    valid, rejects = validate("requests", parsed, trace=trace, checks=checks)
    valid, origin = _relative(valid)
    valid = _gaps(valid)
    notes = _notes(valid, rows.height - rejects.height)
    valid = valid.with_columns(
        pl.col("trace_key").alias("request_id"), pl.col("session_id").alias("session"),
        pl.col("user").alias("tenant"), pl.col("provider").alias("log_type"),
        pl.col("first_input_event_type").alias("request_type"),
        pl.col("server_s").alias("latency_s"))
    keep = ["request_id", "arrival_s", "tenant", "session", "model", "log_type",
            "input_tokens", "output_tokens", "latency_s", "turn", "request_type",
            "cached_tokens", "reasoning_tokens", "think_s", "server_s", "tool_s"]
    return Loaded(tables={"requests": sort_by(valid.select(keep))}, rejects=rejects,
                  rows_read=rows.height, origin=origin, notes=notes)


def _relative(valid: pl.DataFrame) -> tuple[pl.DataFrame, datetime | None]:
    """``arrival_s`` as seconds from the earliest request start, which is the origin."""
    if valid.is_empty():
        return valid, None
    origin = valid["_start"].min()
    return valid.with_columns(_seconds(pl.col("_start") - pl.lit(origin)).alias("arrival_s")), \
        origin


def _gaps(valid: pl.DataFrame) -> pl.DataFrame:
    """``think_s``/``tool_s``: request start minus the previous round's last event, per
    session in ``round_index`` then file order (``_row``), by the event at the start."""
    order = valid.sort("session_id", "turn", "_row", nulls_last=True)
    prev = pl.when(pl.col("session_id").is_not_null()).then(
        pl.col("_last").shift(1).over("session_id"))
    order = order.with_columns(_seconds(pl.col("_start") - prev).alias("_gap"))
    gap = pl.when(pl.col("_gap") >= 0).then(pl.col("_gap"))
    return order.with_columns(
        (pl.col("_gap") < 0).alias("_overlap"),
        pl.when(pl.col("_trigger") == "user_message").then(gap).alias("think_s"),
        pl.when(pl.col("_trigger") == "tool_result").then(gap).alias("tool_s"),
    ).sort("_row")


def _notes(valid: pl.DataFrame, accepted: int) -> dict:
    notes: dict = {"rounds": accepted,
                   "timestamp_unit": "s from the earliest request start (origin, UTC)"}
    if valid.is_empty():
        return notes
    tools = pl.col("tools").str.count_matches(r'"tool_index"\s*:').fill_null(0)
    total = pl.col("input_tokens_total").cast(pl.Float64, strict=False)
    keys = pl.col("trace_key").drop_nulls()
    stats = valid.select(
        pl.col("session_id").n_unique().alias("sessions"),
        pl.col("user").drop_nulls().n_unique().alias("users"),
        pl.col("turn_id").drop_nulls().n_unique().alias("codex_turns"),
        pl.col("_events").sum().alias("timing_events"),
        pl.col("_untimed").sum().alias("events_without_timestamp"),
        pl.col("_last_out").is_null().sum().alias("rounds_without_model_output"),
        pl.col("_start_in").is_null().sum().alias("arrival_from_first_event"),
        (total.is_not_null() & (total != pl.col("input_tokens"))).sum()
        .alias("input_tokens_total_mismatch"),
        (keys.len() - keys.n_unique()).alias("duplicate_trace_keys"),
        pl.col("_overlap").fill_null(False).sum().alias("overlapping_rounds"),
        pl.col("think_s").is_not_null().sum().alias("rounds_with_think_time"),
        pl.col("tool_s").is_not_null().sum().alias("rounds_with_tool_time"),
        tools.sum().alias("tool_records"),
    ).row(0, named=True)
    notes.update({k: int(v) for k, v in stats.items()})
    notes["providers"] = dict(valid.group_by(pl.col("provider").fill_null("(none)")).len()
                              .sort("provider").iter_rows())
    return notes
