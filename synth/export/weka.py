"""WEKA agentic-coding trace files (the ``callanjfox/kv-cache-tester`` layout), replayed by
inference-perf's WEKA trace replay (``weka``: a folder of ``*.json``, one conversation per
file) and by GuideLLM's ``kind=weka`` (``guidellm-weka``: one conversation per line).

Source of truth, checked on the wheels from PyPI:

- inference-perf 0.7.0, ``inference_perf/datagen/replay/weka_trace_replay_datagen.py``
  (pydantic ``WekaTrace``: ``id``, ``models`` (list of str), ``block_size`` int,
  ``requests``: entries discriminated by ``type``: ``"n"`` (``t`` float, ``model`` str, ``in``,
  ``out`` int, ``hash_ids``, ``api_time``, ``think_time`` optional) or ``"subagent"``
  (``t``, ``agent_id``, ``subagent_type`` str, ``requests``: ``"n"`` entries only); a
  ``trace_directory`` is globbed for ``*.json``) and ``inference_perf/config/datagen/replay.py``
  (``WekaTraceReplayConfig``: ``trace_directory``, ``default_block_size``,
  ``use_think_time_only``, ``trace_idle_gap_cap_seconds``; command-line flags are the
  config's dotted paths, ``inference_perf/utils/cli_parser.py``);
- GuideLLM 0.8.1, ``guidellm/data/deserializers/trace_weka.py`` and
  ``guidellm/schemas/data/deserializers/trace_weka.py`` (columns ``t``, ``in``, ``out``,
  ``id``, ``hash_ids``; ``hash_id_block_size`` default 64; each row must have ``floor`` or
  ``ceil(in / block)`` ids; a sub-agent's inner ``t`` smaller than its entry's ``t`` is read
  as relative to the spawn; ``hash_id_scope`` ``local`` gives each conversation its own ids).

One document per ``session`` (a request without one is a conversation of its own)::

    {"id": "s1", "models": ["MODEL"], "block_size": 64, "hash_id_scope": "global",
     "tool_tokens": 0, "system_tokens": 0,
     "requests": [{"t": 0.0, "type": "n", "model": "MODEL", "in": 15818, "out": 154,
                   "hash_ids": [0, 1, ...], "think_time": 9.0, "api_time": 5.7}, ...,
                  {"t": 961.3, "type": "subagent", "agent_id": "agent_001",
                   "subagent_type": "subagent", "requests": [{"t": 0.0, ...}, ...]}]}

Mapping (Units: times in seconds, lengths in tokens): ``t`` = ``arrival_s`` minus the
session's first arrival, **seconds**; a sub-agent (rows with a ``subagent``) is one entry at
its first request's ``t``, its requests' ``t`` relative to that spawn (the inverse of
:mod:`servetrace.loaders.agentic_coding_weka`); a sub-agent of a sub-agent is written as a
sub-agent of the session (inference-perf allows one level); ``in``/``out`` =
``input_tokens``/``output_tokens``; ``think_time`` = ``think_s`` (seconds of client delay
before the request; null where unknown), ``api_time`` = ``server_s``; ``model`` = the row's
``model`` (``MODEL`` where null); every request is ``type: "n"``. ``hash_ids``: ``ceil(in /
block_size)`` ids of ``block_size`` tokens (default: the trace's own, 64 without ids), made
global and re-chunked as in :func:`servetrace.synth.export._common.consumer_hash_ids`, hence
``hash_id_scope: global``. The format has no wall-clock start per conversation: the consumers
schedule conversations themselves, so the sessions' start times are not carried.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl

from servetrace.synth.export import _common

NAME = "weka"
REQUIRED = ("arrival_s", "input_tokens", "output_tokens")
SUFFIX = ""
DEFAULT_BLOCK_TOKENS = 64
"""WEKA's block size, and GuideLLM's ``hash_id_block_size`` default."""

_REQUEST = pl.Struct({"t": pl.Float64, "type": pl.String, "model": pl.String,
                      "in": pl.Int64, "out": pl.Int64, "hash_ids": pl.List(pl.Int64),
                      "think_time": pl.Float64, "api_time": pl.Float64})


def conversations(frame: pl.DataFrame | pl.LazyFrame, *, block_size: int | None = None,
                  keep_hash_ids: bool = True, hash_block_tokens: int | None = None,
                  hash_scope: str = "global", fmt: str = NAME) -> tuple[pl.DataFrame, int]:
    """(one row per conversation: ``id`` and ``doc``, the WEKA document as a struct, in order
    of the conversations' first requests; the block size written)."""
    req = _common.requests(frame, fmt, REQUIRED)
    size = block_size or (_common.trace_block_tokens(req, hash_block_tokens, keep_hash_ids)
                          if _common.has_hash_ids(req) and keep_hash_ids
                          else DEFAULT_BLOCK_TOKENS)
    ids = _common.consumer_hash_ids(req, size, hash_block_tokens=hash_block_tokens,
                                    hash_scope=hash_scope, keep=keep_hash_ids)
    agent = _common.optional(req, "subagent", pl.String)
    req = req.with_columns(_common.session_ids(req).alias("sid"), agent.alias("agent"),
                           pl.lit(ids).alias("ids"))
    req = req.with_columns((pl.col("arrival_s") - pl.col("arrival_s").min().over("sid"))
                           .alias("t_abs"))
    req = req.with_columns(
        pl.when(pl.col("agent").is_null()).then(pl.col("t_abs"))
        .otherwise(pl.col("t_abs") - pl.col("t_abs").min().over("sid", "agent")).alias("t"),
        _common.optional(req, "model", pl.String).fill_null("MODEL").alias("model_"))

    def request(t: pl.Expr) -> pl.Expr:
        return pl.struct(
            t.cast(pl.Float64).alias("t"), pl.lit("n").alias("type"),
            pl.col("model_").alias("model"),
            pl.col("input_tokens").cast(pl.Int64).alias("in"),
            pl.col("output_tokens").cast(pl.Int64).alias("out"),
            pl.col("ids").alias("hash_ids"),
            _common.optional(req, "think_s", pl.Float64).alias("think_time"),
            _common.optional(req, "server_s", pl.Float64).alias("api_time"))

    none = pl.lit(None, pl.String)
    top = req.filter(pl.col("agent").is_null()).select(
        "sid", pl.col("t_abs").alias("at"), pl.lit(0).alias("kind"),
        request(pl.col("t")).alias("r"), none.alias("agent_id"),
        pl.lit(None, pl.List(_REQUEST)).alias("inner"))
    sub = (req.filter(pl.col("agent").is_not_null())
           .group_by("sid", "agent", maintain_order=True)
           .agg(pl.col("t_abs").min().alias("at"), request(pl.col("t")).alias("inner"))
           .select("sid", "at", pl.lit(1).alias("kind"), pl.lit(None, _REQUEST).alias("r"),
                   pl.col("agent").alias("agent_id"), "inner"))
    entries = pl.concat([top, sub]).sort("sid", "at", "kind", maintain_order=True)
    entry = pl.struct(
        pl.col("at").alias("t"),
        pl.when(pl.col("kind") == 0).then(pl.lit("n")).otherwise(pl.lit("subagent"))
        .alias("type"),
        pl.col("r").struct.field("model"), pl.col("r").struct.field("in"),
        pl.col("r").struct.field("out"), pl.col("r").struct.field("hash_ids"),
        pl.col("r").struct.field("think_time"), pl.col("r").struct.field("api_time"),
        pl.col("agent_id"),
        pl.when(pl.col("kind") == 1).then(pl.lit("subagent")).otherwise(none)
        .alias("subagent_type"),
        pl.col("inner").alias("requests"))
    order = req.group_by("sid", maintain_order=True).agg(pl.col("model_").first().alias("m"))
    docs = (entries.select("sid", entry.alias("e"))
            .group_by("sid", maintain_order=True).agg(pl.col("e").alias("requests"))
            .join(order, on="sid", how="left", maintain_order="left"))
    docs = order.select("sid").join(docs, on="sid", how="left", maintain_order="left")
    out = docs.select(
        pl.col("sid").alias("id"),
        pl.struct(pl.col("sid").alias("id"), pl.concat_list(pl.col("m")).alias("models"),
                  pl.lit(size, pl.Int64).alias("block_size"),
                  pl.lit("global").alias("hash_id_scope"),
                  pl.lit(0, pl.Int64).alias("tool_tokens"),
                  pl.lit(0, pl.Int64).alias("system_tokens"),
                  "requests").alias("doc"))
    return out, size


def _file_name(conversation: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", conversation) + ".json"


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *, block_size: int | None = None,
          keep_hash_ids: bool = True, hash_block_tokens: int | None = None,
          hash_scope: str = "global") -> _common.Export:
    """Write ``frame`` (canonical ``requests``) as a folder of WEKA trace files at ``path``
    (created; one ``<session>.json`` per conversation, names made file-safe and unique).
    Returns the Export with the inference-perf configuration to use it."""
    docs, size = conversations(frame, block_size=block_size, keep_hash_ids=keep_hash_ids,
                               hash_block_tokens=hash_block_tokens, hash_scope=hash_scope)
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    names = docs.select(pl.col("id").map_elements(_file_name, return_dtype=pl.String)
                        .alias("n")).to_series()
    if names.n_unique() < names.len():
        names = pl.Series([f"{i:06d}-{n}" for i, n in enumerate(names)])
    lines = docs.select("doc").unnest("doc").write_ndjson().splitlines()
    for name, line in zip(names, lines, strict=True):  # one file per conversation
        (folder / name).write_text(json.dumps(json.loads(line), separators=(",", ":")))
    command = _common.shell("inference-perf", "--load.type", "trace_session_replay",
                            "--data.type", "weka_trace_replay",
                            "--data.weka_trace_replay.trace_directory", folder,
                            "--data.weka_trace_replay.default_block_size", size)
    return _common.Export(folder, command, (f"{docs.height} conversation files of "
                                            f"{size}-token blocks",))
