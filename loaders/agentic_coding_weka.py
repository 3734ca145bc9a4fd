"""Agentic coding sessions (Claude Code through a proxy, anonymized), published by WEKA.

Source: ``callanjfox/kv-cache-tester``, folder ``traces/`` (``trace_NNNN.json``, Apache-2.0),
the traces replayed by its ``trace_replay_tester.py`` (format in its
``docs/trace_replay_tester.md``). ``../shared/traces/agentic_coding_weka`` holds 231 of the
upstream conversations; the registered part lists those 231 files. A folder of conversation
files, or several files, is one trace. One JSON document per file (one conversation)::

    {"id": "trace_0002", "models": [...], "block_size": 64, "hash_id_scope": "local",
     "tool_tokens": 12448, "system_tokens": 2882, "totals": {...},
     "requests": [{"t": 0.0, "type": "n", "model": "...", "in": 15818, "out": 154,
                   "hash_ids": [1, 2, ...], "input_types": ["text"], "output_types": [...],
                   "stop": "tool_use", "api_time": 5.7, "think_time": 9.0, "ttft": 1.2}, ...,
                  {"t": 961.3, "type": "subagent", "agent_id": "agent_001", "requests": [...],
                   "subagent_type": "Explore", "duration_ms": 10509, ...}]}

Mapping, one ``requests`` row per LLM request (sub-agents' requests included, at any depth):

- ``session`` = the file's ``id``; ``request_id`` = ``<id>/<path>``, the path being the
  0-based positions in the nested ``requests`` lists (``trace_0004/182.3``: the fourth request
  of the sub-agent entry at position 182);
- ``arrival_s`` = ``t``, seconds from the conversation's first request; a sub-agent's ``t`` is
  from its own start, so its requests get the sub-agent entry's arrival added. Each
  conversation starts at 0 (the release gives no wall-clock time, ``origin`` is null), so the
  conversations of a trace overlap in time as if started together;
- ``subagent`` = the entry's ``agent_id`` (null for the main agent); ``agent_depth`` = 0, 1, ...
  by nesting; ``turn`` = 1-based position of the request among its agent's requests (the
  order of the list, which is ascending in ``t``);
- ``parent_request_id``: the agent's previous request; an agent's first request follows the
  request that preceded its sub-agent entry (its launcher); null for a conversation's first;
- ``input_tokens``/``output_tokens`` = ``in``/``out``; ``hash_ids`` = ``hash_ids`` (64-token
  blocks, full blocks only: ``len == floor(in / 64)`` in every real row; ids local to the
  conversation, and a sub-agent's ids continue in its parent's namespace, so the trace's
  ``hash_scope`` is ``session``; a file saying ``hash_id_scope: global`` makes it ``global``);
- ``think_s`` = ``think_time`` (client delay before the request), ``server_s`` = ``api_time``
  (server time on it), ``ttft_s`` = ``ttft``; null where the key is absent (57, 595 and 4,512
  of the 5,237 real requests);
- ``request_type`` = ``input_types`` joined with ``+`` (what the request adds to the context:
  ``tool_result``, ``text``, ``text+thinking``...); ``log_type`` = ``type`` as upstream
  documents it: ``s`` → ``streaming``, ``n`` → ``non-streaming``;
- ``cached_tokens``, ``reasoning_tokens``, ``tool_s``, ``latency_s``: not in the source, null.

A sub-agent entry is structure, not a request: it is not a row (its ``agent_id``, type,
duration and status are counted in ``notes``). Rows read = LLM request entries + rejected
sub-agent entries + rejected files.

Rejected with a reason: a file that is not one JSON object with a ``requests`` list (one
reject for the whole file, line 1; also a file whose ``hash_ids`` holds a bare number, which
the JSON reader would silently read as a one-element list), a file whose ``block_size`` or
scope differs from the trace's first file; a sub-agent entry without a ``requests`` list; a
request with a missing or non-numeric ``t``, ``in`` or ``out``, a negative or fractional
token count, a negative time, or ``hash_ids`` that are not non-negative integers. Files are
single-line JSON, so a reject's ``line`` is 1 and ``raw`` is the request re-encoded as JSON.

Checked, not rejected (``notes``): ``hash_ids`` length other than ``floor(in / 64)``; files
whose ``totals.combined_tokens`` disagree with the sum of their requests' ``in``/``out``.

Cite: Callan Fox (WEKA), "KV Cache Tester: agentic coding traces",
https://github.com/callanjfox/kv-cache-tester (Apache-2.0).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from servetrace.loaders.dataset import Dataset, Loaded, Part, RemoteFile
from servetrace.loaders.schema import validate
from servetrace.loaders.source import FormatError, sort_by

VERSION = "1"
BLOCK_SIZE_TOKENS = 64
_BASE = "https://raw.githubusercontent.com/callanjfox/kv-cache-tester/main/traces/"
_SHIPPED = (
    "0002 0004 0007 0012 0014 0015 0016 0017 0019 0020 0021 0022 0026 0028 0030 0032 0034 0036 "
    "0037 0038 0039 0040 0043 0044 0047 0048 0052 0054 0055 0057 0058 0060 0064 0066 0068 0069 "
    "0072 0074 0075 0076 0078 0080 0084 0085 0087 0089 0091 0094 0095 0099 0100 0101 0102 0103 "
    "0106 0108 0111 0115 0116 0118 0120 0123 0125 0126 0127 0128 0129 0134 0138 0142 0144 0146 "
    "0153 0157 0165 0166 0167 0173 0174 0179 0180 0188 0189 0192 0199 0201 0211 0214 0217 0218 "
    "0219 0222 0228 0232 0233 0234 0240 0242 0244 0255 0258 0259 0260 0263 0265 0272 0277 0288 "
    "0290 0292 0296 0302 0304 0305 0306 0312 0317 0323 0325 0326 0329 0332 0341 0344 0347 0349 "
    "0350 0351 0355 0356 0358 0359 0360 0362 0364 0365 0368 0371 0373 0375 0393 0398 0403 0404 "
    "0408 0426 0427 0432 0438 0448 0449 0454 0455 0456 0460 0462 0464 0471 0472 0473 0474 0476 "
    "0477 0480 0482 0484 0485 0486 0496 0502 0504 0505 0506 0508 0511 0512 0515 0517 0519 0521 "
    "0525 0526 0529 0534 0536 0537 0538 0546 0549 0553 0555 0559 0565 0568 0569 0574 0589 0590 "
    "0598 0613 0614 0615 0616 0620 0630 0638 0647 0650 0653 0666 0674 0675 0676 0683 0685 0693 "
    "0694 0700 0704 0707 0710 0713 0718 0719 0721 0722 0723 0728 0729 0731 0732 ")

DATASET = Dataset(
    name="agentic_coding_weka",
    title="Agentic coding sessions (Claude Code, WEKA kv-cache-tester traces)",
    citation=("Callan Fox (WEKA). KV Cache Tester: agentic coding traces (Claude Code sessions "
              "captured through a proxy, anonymized; 64-token hash blocks). "
              "https://github.com/callanjfox/kv-cache-tester, traces/."),
    license="Apache-2.0",
    homepage="https://github.com/callanjfox/kv-cache-tester",
    parts=(Part("traces", tuple(RemoteFile(_BASE + f"trace_{n}.json", f"trace_{n}.json")
                                for n in _SHIPPED.split()),
                "231 agentic coding conversations (5,237 LLM requests, sub-agents included)"),),
)

_SCOPES = {"local": "session", "session": "session", "global": "global"}
_HEAD = re.compile(rb'^\s*\{.*"block_size"\s*:.*"requests"\s*:\s*\[', re.S)
_SCALAR_HASH = re.compile(rb'"hash_ids"\s*:\s*[-0-9"tf{]')
_NUMERIC = ("t", "in", "out", "think_time", "api_time", "ttft")


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in map(Path, paths):
        out += sorted(p for p in path.rglob("*.json") if p.is_file()) if path.is_dir() \
            else [path]
    return out


def detect(path: Path) -> bool:
    """A JSON document that opens with the conversation keys (``block_size`` then a
    ``requests`` list), or a folder whose first ``.json`` file is one."""
    path = Path(path)
    if path.is_dir():
        files = _files([path])
        return bool(files) and detect(files[0])
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        start = fh.read(4096)
    return bool(_HEAD.match(start))


def _file_reject(trace: str, path: Path, reason: str) -> pl.DataFrame:
    with open(path, "rb") as fh:
        raw = fh.read(200).decode("utf-8", "replace")
    return pl.DataFrame({"trace": [trace], "source": [str(path)], "line": [1], "raw": [raw],
                         "reason": [reason]})


def _level(entries: pl.DataFrame) -> pl.DataFrame:
    """Rows of ``entries.requests`` (one list per row, with its context columns), one per
    list element, with the element's position and the request it follows."""
    ctx = ["_session", "_path", "_base", "_agent", "_depth", "_launcher"]
    rows = (entries.select(*ctx, "requests").with_row_index("_list")
            .explode("requests"))
    rows = rows.with_columns(pl.int_range(pl.len()).over("_list").alias("_pos"))
    rows = rows.with_columns(pl.col("requests").struct.json_encode().alias("raw")) \
        .unnest("requests")
    for key in ("type", "agent_id", "requests", *_NUMERIC):
        if key not in rows.columns:
            rows = rows.with_columns(pl.lit(None).alias(key))
    path = pl.when(pl.col("_path") == "").then(pl.col("_pos").cast(pl.String)).otherwise(
        pl.col("_path") + "." + pl.col("_pos").cast(pl.String))
    is_sub = pl.col("type").cast(pl.String) == "subagent"
    rid = pl.col("_session") + "/" + path
    prev = (pl.when(~is_sub.fill_null(False)).then(rid).shift(1).over("_list")
            .forward_fill().over("_list"))
    return rows.with_columns(
        path.alias("_path"), is_sub.fill_null(False).alias("_is_sub"),
        rid.alias("request_id"),
        pl.coalesce(prev, pl.col("_launcher")).alias("parent_request_id"))


def _flatten(doc: pl.DataFrame, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """All request entries (any depth) and the sub-agent entries of one conversation."""
    entries = doc.select(
        pl.col("id").cast(pl.String).alias("_session"), pl.lit("").alias("_path"),
        pl.lit(0.0).alias("_base"), pl.lit(None, pl.String).alias("_agent"),
        pl.lit(0, pl.Int64).alias("_depth"), pl.lit(None, pl.String).alias("_launcher"),
        "requests")
    requests, subagents = [], []
    while entries.height:
        rows = _level(entries)
        if "requests" not in rows.columns or not rows["requests"].dtype.is_nested():
            rows = rows.with_columns(pl.lit(None).alias("requests"))
        t = pl.col("t").cast(pl.Float64, strict=False)
        subs = rows.filter("_is_sub").with_columns(
            (pl.col("_base") + t).alias("_arrival"))
        requests.append(rows.filter(~pl.col("_is_sub")).drop("requests"))
        subagents.append(subs.with_columns(
            pl.lit(source).alias("source"),
            pl.when(pl.col("requests").is_null()).then(
                pl.lit("sub-agent entry without a requests list")).when(
                pl.col("_arrival").is_null()).then(
                pl.format("sub-agent entry with a missing or non-numeric t: {}",
                          pl.col("t").cast(pl.String))).alias("reason")).drop("requests"))
        ok = subs.filter(pl.col("requests").is_not_null() & pl.col("_arrival").is_not_null())
        entries = ok.select(
            "_session", "_path", pl.col("_arrival").alias("_base"),
            pl.col("agent_id").cast(pl.String).alias("_agent"),
            (pl.col("_depth") + 1).alias("_depth"),
            pl.col("parent_request_id").alias("_launcher"), "requests") \
            if ok.height and ok["requests"].dtype.is_nested() else entries.clear()
    return (pl.concat(requests, how="diagonal_relaxed"),
            pl.concat(subagents, how="diagonal_relaxed"))


def _hash_ids(col: pl.Expr, dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr]:
    """(parsed List(Int64), malformed flag)."""
    if isinstance(dtype, pl.List):
        parsed = col.list.eval(pl.element().cast(pl.Int64, strict=False))
        bad = col.is_not_null() & (parsed.list.eval(pl.element().is_null() | (pl.element() < 0))
                                   .list.any()).fill_null(True)
        return parsed, bad
    if dtype == pl.Null:
        return pl.lit(None, pl.List(pl.Int64)), pl.lit(False)
    return pl.lit(None, pl.List(pl.Int64)), col.is_not_null()


def load(paths: list[Path], trace: str) -> Loaded:
    """Read conversation JSON file(s) or folder(s) onto ``requests`` (see the module
    docstring)."""
    files = _files(paths)
    if not files:
        raise FormatError(paths[0] if paths else ".", "no conversation .json files")
    frames, rejects, subagents = [], [], []
    layout: tuple[int, str] | None = None
    rows_read = 0
    totals = []
    for path in files:
        data = path.read_bytes()
        if _SCALAR_HASH.search(data):
            rejects.append(_file_reject(trace, path, "hash_ids that is not a list"))
            rows_read += 1
            continue
        try:
            doc = pl.read_json(data, infer_schema_length=None)
        except (pl.exceptions.PolarsError, ValueError) as exc:
            rejects.append(_file_reject(trace, path, f"not a conversation JSON object: "
                                                     f"{str(exc).splitlines()[0][:120]}"))
            rows_read += 1
            continue
        if doc.height != 1 or "requests" not in doc.columns or "id" not in doc.columns \
                or not isinstance(doc.schema["requests"], pl.List):
            rejects.append(_file_reject(trace, path, "not a conversation JSON object (needs "
                                                     "id and a requests list)"))
            rows_read += 1
            continue
        block = doc["block_size"][0] if "block_size" in doc.columns else None
        scope = _SCOPES.get(str(doc["hash_id_scope"][0])) if "hash_id_scope" in doc.columns \
            else None
        this = (int(block) if block is not None else None, scope or "session")
        layout = layout or this
        if this != layout:
            rejects.append(_file_reject(
                trace, path, f"hash layout {this[0]} tokens/{this[1]} differs from the trace's "
                             f"{layout[0]} tokens/{layout[1]}"))
            rows_read += 1
            continue
        if doc.schema["requests"] == pl.List(pl.Null):
            continue
        reqs, subs = _flatten(doc, str(path))
        frames.append(reqs.with_columns(pl.lit(str(path)).alias("source")))
        subagents.append(subs)
        if "totals" in doc.columns:
            totals.append(doc.select(pl.col("id").cast(pl.String).alias("_session"),
                                     pl.col("totals")))
    sub = pl.concat(subagents, how="diagonal_relaxed") if subagents else pl.DataFrame()
    if sub.height:
        bad_sub = sub.filter(pl.col("reason").is_not_null())
        rejects.append(bad_sub.select(
            pl.lit(trace).alias("trace"), "source", pl.lit(1, pl.Int64).alias("line"),
            "raw", "reason"))
        rows_read += bad_sub.height
    rows = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    valid = rows
    if rows.height:
        valid, bad = _validate(rows, trace)
        rejects.append(bad)
        rows_read += rows.height
    rejects_frame = (pl.concat(rejects, how="diagonal_relaxed") if rejects else
                     pl.DataFrame(schema={"trace": pl.String, "source": pl.String,
                                          "line": pl.Int64, "raw": pl.String,
                                          "reason": pl.String}))
    notes = _notes(valid, sub, totals, layout)
    block_tokens, scope = layout or (BLOCK_SIZE_TOKENS, "session")
    return Loaded(tables={"requests": valid}, rejects=rejects_frame, rows_read=rows_read,
                  origin=None, notes=notes, hash_block_tokens=block_tokens, hash_scope=scope)


def _validate(rows: pl.DataFrame, trace: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    text = {k: k for k in _NUMERIC}  # the source text of each number, named by its key
    hash_parsed, hash_bad = _hash_ids(pl.col("hash_ids"), rows.schema.get("hash_ids", pl.Null)) \
        if "hash_ids" in rows.columns else (pl.lit(None, pl.List(pl.Int64)), pl.lit(False))
    types = pl.col("input_types").list.eval(pl.element().cast(pl.String)).list.join("+") \
        if isinstance(rows.schema.get("input_types"), pl.List) else pl.lit(None, pl.String)
    kind = pl.col("type").cast(pl.String)
    parsed = rows.with_columns(
        *(pl.col(k).cast(pl.Float64, strict=False).alias(f"_{k}") for k in _NUMERIC),
    ).with_columns(
        *(pl.col(k).cast(pl.String).alias(t) for k, t in text.items()),
    ).with_columns(
        (pl.col("_base") + pl.col("_t")).alias("arrival_s"),
        pl.col("_in").alias("input_tokens"), pl.col("_out").alias("output_tokens"),
        pl.col("_think_time").alias("think_s"), pl.col("_api_time").alias("server_s"),
        pl.col("_ttft").alias("ttft_s"),
        hash_parsed.alias("_hash"), hash_bad.alias("_hash_bad"),
        pl.col("_session").alias("session"), pl.col("_agent").alias("subagent"),
        pl.col("_depth").alias("agent_depth"),
        pl.col("model").cast(pl.String).alias("model") if "model" in rows.columns
        else pl.lit(None, pl.String).alias("model"),
        pl.when(kind == "s").then(pl.lit("streaming")).when(kind == "n")
        .then(pl.lit("non-streaming")).otherwise(kind).alias("log_type"),
        types.alias("request_type"),
        pl.lit(1, pl.Int64).alias("line"),
    )
    # turn: 1-based rank among the requests of the same list (agent instance), in list order
    list_key = pl.col("request_id").str.replace(r"(\.|/)\d+$", "")
    parsed = parsed.with_columns(
        (pl.int_range(pl.len()).over(list_key.alias("_k")) + 1).cast(pl.Int64).alias("turn"))
    checks = [
        (pl.col("_hash_bad"), pl.format("malformed hash_ids (expected non-negative integers): {}",
                                        pl.col("raw").str.extract(r'"hash_ids":(\[[^\]]{0,60})'))),
        *((pl.col(f"_{k}") < 0, pl.format("negative {}: {}", pl.lit(k), pl.col(text[k])))
          for k in ("t", "think_time", "api_time", "ttft")),
    ]
    parsed = parsed.drop("hash_ids").rename({"_hash": "hash_ids"})
    vtext = {"arrival_s": text["t"], "input_tokens": text["in"], "output_tokens": text["out"],
             "think_s": text["think_time"], "server_s": text["api_time"],
             "ttft_s": text["ttft"]}
    valid, rejects = validate("requests", parsed, trace=trace, text=vtext, checks=checks,
                              fill_raw=False)
    keep = ["request_id", "arrival_s", "session", "model", "log_type", "input_tokens",
            "output_tokens", "ttft_s", "hash_ids", "parent_request_id", "turn", "subagent",
            "agent_depth", "request_type", "think_s", "server_s"]
    return sort_by(valid.select(keep)), rejects


def _notes(valid: pl.DataFrame, sub: pl.DataFrame, totals: list[pl.DataFrame],
           layout: tuple[int | None, str] | None) -> dict:
    notes: dict = {"conversations": 0, "subagent_entries": sub.height,
                   "timestamp_unit": "s from each conversation's first request"}
    if not valid.height:
        return notes
    block = (layout or (BLOCK_SIZE_TOKENS,))[0] or BLOCK_SIZE_TOKENS
    stats = valid.select(
        pl.col("session").n_unique().alias("conversations"),
        (pl.col("subagent").is_not_null()).sum().alias("subagent_requests"),
        (pl.col("hash_ids").is_not_null()
         & (pl.col("hash_ids").list.len() != pl.col("input_tokens") // block))
        .sum().alias("hash_ids_length_violations"),
        pl.col("think_s").null_count().alias("think_time_missing"),
        pl.col("server_s").null_count().alias("api_time_missing"),
    ).row(0, named=True)
    notes.update({k: int(v) for k, v in stats.items()})
    if sub.height and "subagent_type" in sub.columns:
        notes["subagent_types"] = dict(sub.group_by(pl.col("subagent_type").cast(pl.String))
                                       .len().sort("subagent_type").iter_rows())
    if totals:
        tot = pl.concat(totals, how="diagonal_relaxed").select(
            "_session", pl.col("totals").struct.field("combined_tokens").alias("c"))
        sums = valid.group_by("session").agg(pl.col("input_tokens").sum().alias("i"),
                                              pl.col("output_tokens").sum().alias("o"))
        joined = tot.join(sums, left_on="_session", right_on="session", how="left")
        notes["totals_mismatch"] = int(joined.select(
            ((pl.col("c").struct.field("input") != pl.col("i"))
             | (pl.col("c").struct.field("output") != pl.col("o"))).fill_null(True).sum()
        ).item())
    return notes
