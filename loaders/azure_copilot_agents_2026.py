"""GitHub Copilot coding-agent traces 2026 (Azure Public Dataset, June 1-7, 2026).

Source: ``Azure/AzurePublicDataset``, ``GitHubCopilotCodingAgentDataset2026.md`` and the folder
``analysis/GitHubCopilotCodingAgents/`` (``schema.json``, ``DATASET_CARD.md``,
``trace_loader.py``), CC-BY-4.0. A uniform sample of agentic-mode Copilot sessions of
non-enterprise users: 301,026 sessions, 1,189,581 user turns, 9,310,255 LLM calls and
7,767,261 tool batches (the card's and the notebook's counts). The real files are not in
``../shared/traces``: this loader is tested on files written in exactly the documented
shape (``schema.json``), not on real rows.

Files. The release ``ghcp-coding-agent-2026`` publishes one archive per day,
``date.2026-06-0N.tar.gz`` (the card's asset table: 119 to 593 MB), which extracts to
``date=2026-06-0N/manifest.json`` and ``shard-NNNN.jsonl.gz`` (gzip JSON lines, about 500
sessions per shard). The asset names and the tag are the card's; the download URLs below are
GitHub's release-asset form built from them
(``https://github.com/Azure/AzurePublicDataset/releases/download/<tag>/<asset>``), not
copied from a page, and were not fetched here: unconfirmed. The card gives approximate sizes
only, so no size or SHA-256 is checked. A part is one day; its archive is extracted into the
download cache (:func:`~servetrace.loaders.download.extract`, ``.jsonl.gz`` members only).
A local ``date=YYYY-MM-DD`` folder, an archive, a folder of days, or shard files load too;
``manifest.json`` is not read (its fields are not documented).

One JSON object per line, one session (``schema.json``; ``tokens.cached_pct`` and
``message_metadata`` are not read)::

    {"session_id": "...", "date": "2026-06-01",
     "turns": [{"turn_id": "...",
                "llm_calls": [{"message_id": "...", "timestamp": "...", "duration_ms": 2310.5,
                               "initiator_type": "user", "model": "Model A",
                               "result": "Success", "status_code": "OK",
                               "tokens": {"total": 51234, "prompt": 51000, "completion": 234,
                                          "cached": 48000, "cached_pct": 94.1},
                               "message_metadata": [...]}, ...],
                "tool_batches": [{"timestamp": "...", "duration_ms": 850.0,
                                  "auto_continue": true, "result": "...",
                                  "request_id": "...",
                                  "function_calls": [{"name": "read_file", "status": 1,
                                                      "duration_ms": 12.0}, ...]}, ...]},
               ...]}

Mapping, one ``requests`` row per LLM call:

- ``session`` = ``session_id``; ``turn`` = 1-based position of the turn in ``turns`` (the
  card: turns are ordered by time), shared by all calls of the turn; ``request_id`` =
  ``message_id``;
- ``arrival_s`` = ``timestamp`` (the call's start: the release's own loader takes
  ``timestamp + duration_ms`` as its end) in seconds from the earliest accepted call of the
  trace, which is ``origin`` (UTC). Timestamps are ISO 8601; ``Z``/``+00:00`` or no zone is
  UTC, another offset is converted to UTC. The release's metric code warns that these client
  timestamps can be skewed away from the session's ``date`` partition; such calls are
  counted (``notes.timestamp_outside_date``), not moved;
- ``server_s`` = ``latency_s`` = ``duration_ms`` / 1000: the one duration the release gives,
  "end-to-end LLM call duration" as the agent saw it;
- ``input_tokens`` = ``tokens.prompt``, ``output_tokens`` = ``tokens.completion``,
  ``cached_tokens`` = ``tokens.cached`` (prompt tokens served from cache);
- ``model`` = ``model`` (anonymized ``Model A``, ..., and ``tool-model``, the instant-apply edit
  model); ``request_type`` = ``initiator_type`` (``user``: the call that starts a turn,
  ``agent``: a follow-up call); ``failed`` = ``result`` is not ``Success`` (``UserCancel``
  included; null where ``result`` is absent);
- ``tool_s``: the tool time before the call, attributed as the release's own analysis does
  (``trace_metrics.tool_token_delta_box``: the tools that ran between two consecutive LLM
  calls of the same turn): Σ ``duration_ms`` / 1000 of the turn's tool batches that start
  strictly after the previous call of the turn starts and strictly before this call starts,
  counting only batches with at least one function call (the release's loader drops the
  others, after its KQL filter). 0 when no batch falls in the window; null for a call with no
  earlier call in its turn (no window) and for every call of a turn holding a rejected call
  or batch (a window could be wrong). Of calls starting at the same instant, the first in
  source order holds the window and the others get 0. Batches after a turn's last call are
  counted, not attributed (``notes.tool_batches_unattributed``, ``notes.tool_s_unattributed``);
- ``parent_request_id``: null. The release links no call to another (a tool batch's
  ``request_id`` names the call whose tools it ran, not the next call), and calls of a turn
  overlap in time (the paper's LLM parallelism), so a "previous call" would be invented;
  :mod:`servetrace.analysis.sessions` then orders a session's calls by arrival;
- ``think_s``, ``reasoning_tokens``, ``tenant``, ``subagent``, ``agent_depth``, ``hash_ids``,
  ``ttft_s``, ``tpot_s``: not in the release, null. With no hash ids, prefix-reuse analysis
  (``servetrace kvcache``) does not apply; the source's own ``cached_tokens`` do.

Rows read: every LLM call and every tool batch of a session line, plus each line rejected as a
whole. A call is stored when valid; a valid batch is accepted (it feeds ``tool_s``) without
a row of its own. So ``rows_read = accepted calls + accepted batches + rejects``.

Rejected with a reason: a line that is not valid JSON or not an object, has no
``session_id``, no ``turns`` list, a turn that is not an object, or a ``turns``,
``llm_calls``, ``tool_batches`` or ``function_calls`` value that is not a list (or ``tokens``
that is not an object); a call that is not an object, with a missing or unparsable
``timestamp``, a missing, unparsable, negative or fractional ``tokens.prompt`` or
``tokens.completion``, a bad ``tokens.cached``, or a negative or non-finite ``duration_ms``;
a tool batch that is not an object, with a missing or unparsable ``timestamp`` or a missing,
unparsable, negative or non-finite ``duration_ms``. A call's or batch's ``line`` is its
session's line and its ``raw`` the entry re-encoded as JSON (the fields read); a rejected
line's ``raw`` is its first 2,000 characters. Several shards make one trace as their folder
(one zero); named one by one, each file has its own zero and ``ingest`` refuses to combine
them.

Checked, not rejected (``notes``): ``tokens.total`` other than prompt + completion, cached
above prompt tokens, calls without ``duration_ms``, repeated ``message_id``s, batches whose
``request_id`` names no call of their session, calls per ``result``.

Cost: a shard is decoded in one JSON pass and flattened before the next is read; a written
shard of 500 sessions (16,000 calls, 14,000 batches, 22 MB of JSON) loads in about 4 s on two
shared cores, ten of them in 27 s at 440 MB peak memory.

Cite: Banruo Liu, Haoran Qiu, Íñigo Goiri, Rodrigo Fonseca, Ricardo Bianchini, Esha Choukse.
"Agentic Coding in the Wild: Characterizing GitHub Copilot Traces at Production Scale."
arXiv 2608.00101, 2026.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import polars as pl

from servetrace.loaders import download
from servetrace.loaders.dataset import Dataset, Loaded, Part, RemoteFile
from servetrace.loaders.schema import validate
from servetrace.loaders.source import (
    FormatError,
    first_json,
    parse_number,
    parse_timestamp,
    read_lines,
    sort_by,
)

VERSION = "1"
TAG = "ghcp-coding-agent-2026"
_RELEASE = f"https://github.com/Azure/AzurePublicDataset/releases/download/{TAG}/"
#: Days of the release and the card's approximate archive sizes.
DAYS = (("2026-06-01", "567 MB"), ("2026-06-02", "593 MB"), ("2026-06-03", "590 MB"),
        ("2026-06-04", "547 MB"), ("2026-06-05", "523 MB"), ("2026-06-06", "119 MB"),
        ("2026-06-07", "133 MB"))
_DAY_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
_ARCHIVE = re.compile(r"^date\.\d{4}-\d{2}-\d{2}\.tar\.gz$")


@dataclass(frozen=True)
class _Days(Dataset):
    """The dataset, whose extracted ``date=YYYY-MM-DD`` folders are also their day's part."""

    def part_for_path(self, path: Path) -> Part | None:
        m = _DAY_DIR.match(Path(path).name)
        return self.part(m.group(1)) if m and m.group(1) in dict(DAYS) else \
            super().part_for_path(path)


DATASET = _Days(
    name="azure_copilot_agents_2026",
    title="GitHub Copilot coding-agent traces 2026 (Azure Public Dataset)",
    citation=("Banruo Liu, Haoran Qiu, Íñigo Goiri, Rodrigo Fonseca, Ricardo Bianchini, Esha "
              "Choukse. Agentic Coding in the Wild: Characterizing GitHub Copilot Traces at "
              "Production Scale. arXiv 2608.00101, 2026."),
    license="CC-BY-4.0",
    homepage=("https://github.com/Azure/AzurePublicDataset/blob/master/"
              "GitHubCopilotCodingAgentDataset2026.md"),
    parts=tuple(Part(day, (RemoteFile(_RELEASE + f"date.{day}.tar.gz", f"date.{day}.tar.gz"),),
                     f"agentic Copilot sessions of {day} (UTC), archive ~{size} (release {TAG}; "
                     "URL in GitHub's release-asset form, unconfirmed)")
                for day, size in DAYS),
)

_S = pl.String
_TOKENS = pl.Struct({"total": _S, "prompt": _S, "completion": _S, "cached": _S})
_CALL = pl.Struct({"message_id": _S, "timestamp": _S, "duration_ms": _S,
                   "initiator_type": _S, "model": _S, "result": _S, "status_code": _S,
                   "tokens": _TOKENS})
_BATCH = pl.Struct({"timestamp": _S, "duration_ms": _S, "auto_continue": _S, "result": _S,
                    "request_id": _S,
                    "function_calls": pl.List(pl.Struct({"name": _S, "status": _S,
                                                         "duration_ms": _S}))})
_TURN = pl.Struct({"turn_id": _S, "llm_calls": pl.List(_CALL), "tool_batches": pl.List(_BATCH)})
#: Every leaf is read as its JSON text, so a wrong type is an unparsable value, not an error.
SESSION = {"session_id": _S, "date": _S, "turns": pl.List(_TURN)}
_NOT_LIST = r'"(turns|llm_calls|tool_batches|function_calls)"\s*:\s*[^\[\sn]'
_NOT_OBJECT = r'"(tokens)"\s*:\s*[^{\sn]'
_TURN_KEY = ["_src", "_line", "turn"]
_KEEP = ["request_id", "arrival_s", "session", "model", "input_tokens", "output_tokens",
         "failed", "latency_s", "turn", "request_type", "cached_tokens", "server_s", "tool_s"]
_RAW_CHARS = 2000  # a session line can run to megabytes; a rejected one keeps its head
_REJECTS = {"trace": pl.String, "source": pl.String, "line": pl.Int64, "raw": pl.String,
            "reason": pl.String}


# -- files ------------------------------------------------------------------------------------
def _is_archive(path: Path) -> bool:
    return path.is_file() and bool(_ARCHIVE.match(path.name))


def _shards(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and p.name.endswith((".jsonl.gz", ".jsonl")))


def _files(paths: list[Path]) -> list[Path]:
    """Shard files named in ``paths``: folders searched, day archives extracted."""
    out: list[Path] = []
    for path in map(Path, paths):
        if _is_archive(path):
            found = _shards(download.extract(path, suffix=".jsonl.gz"))
        elif path.is_dir():
            found = _shards(path)
        elif path.is_file():
            found = [path]
        else:
            raise FormatError(path, "no such file or folder")
        if not found:
            raise FormatError(path, "no .jsonl.gz or .jsonl shard files here")
        out += found
    return out


def detect(path: Path) -> bool:
    """A day archive (``date.YYYY-MM-DD.tar.gz``), a JSON-lines file whose first object has
    ``session_id`` and ``turns``, or a folder whose first shard is one."""
    path = Path(path)
    if path.is_dir():
        shards = _shards(path)
        return bool(shards) and detect(shards[0])
    if _is_archive(path):
        return True
    obj = first_json(path)
    return isinstance(obj, dict) and {"session_id", "turns"} <= set(obj)


# -- parsing ----------------------------------------------------------------------------------
def parse_time(text: pl.Expr) -> pl.Expr:
    """ISO 8601 text to naive UTC ``Datetime('ns')``: ``Z``, ``+00:00`` or no zone as UTC
    (:func:`~servetrace.loaders.source.parse_timestamp`), any other offset converted."""
    shifted = (text.str.strip_chars().str.replace("T", " ", literal=True)
               .str.to_datetime("%Y-%m-%d %H:%M:%S%.f%z", strict=False, time_unit="ns")
               .dt.convert_time_zone("UTC").dt.replace_time_zone(None))
    return pl.coalesce(parse_timestamp(text), shifted)


def _decode(lines: pl.DataFrame) -> pl.DataFrame | None:
    """The JSON lines decoded as :data:`SESSION`, one row per line; None when one of them is
    not valid JSON (the reader then stops)."""
    text = lines["raw"].str.join("\n").item() if lines.height else ""
    try:
        return pl.read_ndjson(io.BytesIO(text.encode()), schema=SESSION, ignore_errors=True)
    except pl.exceptions.ComputeError:
        return None


def _sessions(path: Path, trace: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(session lines decoded, with ``source`` and ``line``; rejected lines) of one shard."""
    lines = read_lines(path).with_columns(pl.lit(str(path)).alias("source"))
    ok = lines.filter(pl.col("reason").is_null())
    decoded = _decode(ok)
    if decoded is None:  # a line is not JSON: find it (a second, per-line parse)
        ok = ok.filter(pl.col("raw").str.json_path_match("$").is_not_null())
        decoded = _decode(ok)
    if decoded is None or decoded.height != ok.height:
        raise FormatError(path, f"{ok.height} JSON lines did not decode one row each")
    cols = ["source", "line", "raw", "reason"]
    unreadable = lines.filter(~pl.col("line").is_in(ok["line"].implode())).select(
        "source", "line", "raw", pl.coalesce("reason", pl.lit("malformed JSON line"))
        .alias("reason"))
    raw, sid = pl.col("raw"), pl.col("session_id")
    reason = pl.coalesce(
        pl.when(~raw.str.strip_chars().str.starts_with("{"))
        .then(pl.lit("JSON line that is not an object")),
        pl.when(sid.is_null() | (sid == "")).then(pl.lit("missing session_id")),
        pl.when(raw.str.contains(_NOT_LIST)).then(pl.format(
            "{} is not a list", raw.str.extract(_NOT_LIST, 1))),
        pl.when(raw.str.contains(_NOT_OBJECT)).then(pl.format(
            "{} is not an object", raw.str.extract(_NOT_OBJECT, 1))),
        pl.when(pl.col("turns").is_null()).then(pl.lit("missing turns list")),
        pl.when(pl.col("turns").list.eval(_not_object(pl.element(), _TURN)).list.any())
        .then(pl.lit("a turn that is not a JSON object")))
    checked = pl.concat([ok.select("source", "line", "raw"), decoded], how="horizontal") \
        .with_columns(reason.alias("reason"))
    bad = pl.concat([unreadable.select(cols),
                     checked.filter(pl.col("reason").is_not_null()).select(cols)])
    rejects = bad.select(pl.lit(trace).alias("trace"), "source", "line",
                         pl.col("raw").str.slice(0, _RAW_CHARS), "reason")
    return checked.filter(pl.col("reason").is_null()).drop("reason", "raw"), rejects


def _not_object(entry: pl.Expr, dtype: pl.Struct) -> pl.Expr:
    """Whether a decoded list element was no JSON object: Polars 2.1 decodes such an element
    (a number, a string) as null, older versions as a struct whose fields are all null; an
    object holding none of the documented fields reads the same and is refused alike."""
    return entry.is_null() | pl.all_horizontal(
        [entry.struct.field(f.name).is_null() for f in dtype.fields])


def _entries(turns: pl.DataFrame, column: str) -> pl.DataFrame:
    """One row per element of each turn's ``column`` list (``llm_calls``/``tool_batches``),
    with its turn keys; an element that is not an object is kept as a null ``_e``."""
    rows = (turns.select(*_TURN_KEY, pl.col("_line").alias("line"), "session", "date",
                         pl.col(column).alias("_e"))
            .filter(pl.col("_e").list.len() > 0).explode("_e"))
    entry = {"llm_calls": _CALL, "tool_batches": _BATCH}[column]
    return rows.with_columns(pl.col("_e").struct.json_encode().alias("raw"),
                             _not_object(pl.col("_e"), entry).alias("_not_object")
                             ).unnest("_e")


def _turns(sessions: pl.DataFrame) -> pl.DataFrame:
    rows = sessions.select(pl.col("source").alias("_src"), pl.col("line").alias("_line"),
                           pl.col("session_id").alias("session"), "date", "turns")
    rows = rows.filter(pl.col("turns").list.len() > 0).explode("turns")
    rows = rows.with_columns(
        (pl.int_range(pl.len()).over("_src", "_line") + 1).cast(pl.Int64).alias("turn"))
    return rows.unnest("turns")


# -- validation -------------------------------------------------------------------------------
def _calls(turns: pl.DataFrame, trace: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(valid calls, with ``_k`` the number of call entries of their turn; rejected calls;
    every call with a parseable start, valid or not: the tool windows)."""
    calls = _entries(turns, "llm_calls").unnest("tokens")
    calls = calls.with_columns(parse_time(pl.col("timestamp")).alias("_ts"),
                               parse_number(pl.col("duration_ms")).alias("_ms"),
                               pl.len().over(_TURN_KEY).alias("_k"))
    parsed = calls.with_columns(
        pl.col("_src").alias("source"),
        pl.when(pl.col("_ts").is_not_null()).then(0.0).alias("arrival_s"),
        (pl.col("_ms") / 1000.0).alias("server_s"),
        (pl.col("_ms") / 1000.0).alias("latency_s"),
        parse_number(pl.col("prompt")).alias("input_tokens"),
        parse_number(pl.col("completion")).alias("output_tokens"),
        parse_number(pl.col("cached")).alias("cached_tokens"),
        pl.col("message_id").alias("request_id"),
        pl.col("initiator_type").alias("request_type"),
        pl.when(pl.col("result").is_not_null()).then(pl.col("result") != "Success")
        .alias("failed"),
        pl.col("prompt").alias("tokens.prompt"), pl.col("completion").alias("tokens.completion"),
        pl.col("cached").alias("tokens.cached"),
    )
    checks = [(pl.col("_not_object"), pl.lit("LLM call entry that is not a JSON object")),
              (pl.col("_ms") < 0, pl.format("negative duration_ms: {}", pl.col("duration_ms")))]
    text = {"arrival_s": "timestamp", "server_s": "duration_ms", "latency_s": "duration_ms",
            "input_tokens": "tokens.prompt", "output_tokens": "tokens.completion",
            "cached_tokens": "tokens.cached"}
    valid, rejects = validate("requests", parsed, trace=trace, text=text, checks=checks,
                              fill_raw=False)
    windows = calls.filter(pl.col("_ts").is_not_null()).select(*_TURN_KEY, "_ts")
    return valid, rejects, windows


def _batches(turns: pl.DataFrame, trace: str
             ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(valid tool batches with ``_ts``, ``_s`` seconds and ``_n`` function calls; rejects;
    the turn keys holding a rejected batch)."""
    b = _entries(turns, "tool_batches").with_columns(
        parse_time(pl.col("timestamp")).alias("_ts"),
        parse_number(pl.col("duration_ms")).alias("_ms"),
        pl.col("function_calls").list.len().fill_null(0).alias("_n"))
    ms, ts = pl.col("duration_ms"), pl.col("timestamp")
    reason = pl.coalesce(
        pl.when(pl.col("_not_object")).then(pl.lit("tool batch entry that is not a JSON object")),
        pl.when(ts.is_null()).then(pl.lit("missing tool batch timestamp")),
        pl.when(pl.col("_ts").is_null()).then(pl.format("unparsable tool batch timestamp: '{}'",
                                                        ts)),
        pl.when(ms.is_null()).then(pl.lit("missing tool batch duration_ms")),
        pl.when(pl.col("_ms").is_null()).then(pl.format("unparsable tool batch duration_ms: '{}'",
                                                        ms)),
        pl.when(~pl.col("_ms").is_finite()).then(pl.format("non-finite tool batch duration_ms: {}",
                                                           ms)),
        pl.when(pl.col("_ms") < 0).then(pl.format("negative tool batch duration_ms: {}", ms)))
    b = b.with_columns(reason.alias("reason"))
    rejects = b.filter(pl.col("reason").is_not_null()).select(
        pl.lit(trace).alias("trace"), pl.col("_src").alias("source"), "line", "raw", "reason")
    valid = b.filter(pl.col("reason").is_null()).select(
        *_TURN_KEY, "session", "_ts", (pl.col("_ms") / 1000.0).alias("_s"), "_n", "request_id")
    return valid, rejects, b.filter(pl.col("reason").is_not_null()).select(_TURN_KEY).unique()


def tool_seconds(calls: pl.DataFrame, windows: pl.DataFrame, batches: pl.DataFrame,
                 bad_turns: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, float | int]]:
    """``calls`` with ``tool_s`` (see the module docstring), and the batches' attribution.

    ``windows`` holds the start ``_ts`` of every call with one (valid or not), ``batches``
    the valid batches (``_ts``, ``_s`` seconds, ``_n`` function calls), ``bad_turns`` the
    turn keys holding a rejected call or batch; all keyed by ``_src``, ``_line``, ``turn``.
    """
    tools = batches.filter(pl.col("_n") > 0).sort("_ts")
    starts = windows.sort("_ts").with_columns(pl.col("_ts").alias("_next"))
    after = tools.join_asof(starts, on="_ts", by=_TURN_KEY, strategy="forward",
                            allow_exact_matches=False, check_sortedness=False)
    after = after.join_asof(starts.rename({"_next": "_prev"}), on="_ts", by=_TURN_KEY,
                            strategy="backward", allow_exact_matches=False,
                            check_sortedness=False)
    placed = after.filter(pl.col("_next").is_not_null() & pl.col("_prev").is_not_null())
    per_call = placed.group_by(*_TURN_KEY, "_next").agg(pl.col("_s").sum().alias("_tool"))
    first = windows.group_by(_TURN_KEY).agg(pl.col("_ts").min().alias("_first"))
    out = (calls.with_row_index("_r").join(first, on=_TURN_KEY, how="left")
           .join(per_call.rename({"_next": "_ts"}), on=[*_TURN_KEY, "_ts"], how="left")
           .join(bad_turns.with_columns(pl.lit(True).alias("_bad")), on=_TURN_KEY, how="left")
           .sort("_r"))
    # of calls starting at the same instant, the first in source order holds the window
    lead = pl.int_range(pl.len()).over([*_TURN_KEY, "_ts"]) == 0
    out = out.with_columns(
        pl.when(pl.col("_bad").is_null() & (pl.col("_ts") > pl.col("_first")))
        .then(pl.when(lead).then(pl.col("_tool").fill_null(0.0)).otherwise(0.0))
        .alias("tool_s"))
    stats = {"tool_batches_attributed": placed.height,
             "tool_batches_unattributed": tools.height - placed.height,
             "tool_batches_without_function_calls": batches.height - tools.height,
             "tool_s_attributed": float(placed["_s"].sum()),
             "tool_s_unattributed": float(tools["_s"].sum() - placed["_s"].sum())}
    return out.drop("_r", "_first", "_tool", "_bad"), stats


# -- load -------------------------------------------------------------------------------------
def _shard(path: Path, trace: str) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """One shard: its valid calls (``tool_s`` set, start in ``_ts``), its rejects and its
    counts. Shards are read one at a time, so a day's nested sessions are never all held."""
    sessions, line_rejects = _sessions(path, trace)
    turns = _turns(sessions)
    calls, bad_calls, windows = _calls(turns, trace)
    batches, bad_batches, bad_batch_turns = _batches(turns, trace)
    bad_call_turns = calls.filter(pl.len().over(_TURN_KEY) < pl.col("_k")).select(_TURN_KEY)
    bad_turns = pl.concat([bad_call_turns, bad_batch_turns]).unique()
    calls, counts = tool_seconds(calls, windows, batches, bad_turns)
    ids = calls.select("session", "request_id").drop_nulls().unique()
    counts |= {
        "turns": turns.height, "tool_batches": batches.height,
        "lines_rejected": line_rejects.height, "calls_rejected": bad_calls.height,
        "tool_batches_rejected": bad_batches.height,
        "tool_batches_unmatched_request_id": batches.filter(
            pl.col("request_id").is_not_null()).join(ids, on=["session", "request_id"],
                                                     how="anti").height}
    rejects = pl.concat([line_rejects, bad_calls, bad_batches], how="diagonal_relaxed")
    return calls.select(*_KEEP, "_ts", "total", "result", "date"), rejects, counts


def load(paths: list[Path], trace: str) -> Loaded:
    """Read Copilot session shards, folders or day archives onto ``requests`` (see the module
    docstring)."""
    calls, rejects, counts = [], [], {}
    for path in _files(paths):
        good, bad, n = _shard(path, trace)
        calls.append(good)
        rejects.append(bad)
        counts = {k: counts.get(k, 0) + v for k, v in n.items()}
    call = pl.concat(calls)
    origin = call["_ts"].min() if call.height else None
    if origin is not None:
        call = call.with_columns(
            ((pl.col("_ts") - pl.lit(origin)).dt.total_nanoseconds() / 1e9).alias("arrival_s"))
    notes = {**_notes(call), **counts,
             "timestamp_unit": "s from the earliest accepted call (origin, UTC)"}
    all_rejects = pl.concat(rejects, how="diagonal_relaxed") \
        .select([pl.col(k).cast(t) for k, t in _REJECTS.items()])
    accepted = call.height + counts["tool_batches"]
    return Loaded(tables={"requests": sort_by(call.select(_KEEP))}, rejects=all_rejects,
                  rows_read=accepted + all_rejects.height, accepted=accepted,
                  origin=origin.replace(tzinfo=UTC) if origin is not None else None,
                  notes=notes)


def _notes(calls: pl.DataFrame) -> dict:
    """Checks of the accepted calls counted, not rejected (module docstring)."""
    stats = calls.select(
        pl.col("session").n_unique().alias("sessions"),
        pl.struct("session", "turn").n_unique().alias("turns_with_calls"),
        (pl.col("total").cast(pl.Float64, strict=False)
         != pl.col("input_tokens") + pl.col("output_tokens")).sum().alias("token_total_mismatch"),
        (pl.col("cached_tokens") > pl.col("input_tokens")).sum().alias("cached_above_prompt"),
        pl.col("server_s").null_count().alias("duration_missing"),
        (pl.col("request_id").drop_nulls().len() - pl.col("request_id").drop_nulls().n_unique())
        .alias("repeated_message_ids"),
        (pl.col("_ts").dt.date().cast(pl.String) != pl.col("date")).sum()
        .alias("timestamp_outside_date"),
    ).row(0, named=True)
    results = dict(calls.group_by(pl.col("result").fill_null("(none)")).len()
                   .sort("result").iter_rows())
    return {**{k: int(v or 0) for k, v in stats.items()}, "results": results}
