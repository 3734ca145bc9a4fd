"""Mooncake (Kimi) request traces: the FAST'25 release and the older arXiv trace.

Source: ``kvcache-ai/Mooncake``,
``FAST25-release/traces/{conversation,toolagent,synthetic}_trace.jsonl`` and
``FAST25-release/arxiv-trace/mooncake_trace.jsonl`` (first published at the repository root).
One JSON object per line with the same four keys in every file::

    {"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1, ..., 13]}

``timestamp`` is milliseconds from the trace start → ``arrival_s`` (seconds, not shifted: the
source already counts from its own zero, and gives no wall-clock origin, so ``origin`` is
null). ``input_length`` → ``input_tokens``, ``output_length`` → ``output_tokens``,
``hash_ids`` → ``hash_ids``: ids of the prompt's prefix blocks of 512 tokens, shared between
requests that share a prefix, so ``len(hash_ids) == ceil(input_length / 512)``.

Quirks kept as they are (they belong to analysis, not to loading):

- the conversation trace arrives in ~3 s ticks (1,180 distinct timestamps for 12,031
  requests), so inter-arrival structure below 3 s is an artefact of the release;
- a row whose ``hash_ids`` length differs from ``ceil(input_length / 512)`` is kept; the count
  of such rows is ``notes["hash_ids_length_violations"]`` (0 in the conversation trace).

Rejected with a reason: a line that is not a JSON object (e.g. a truncated last line), a
missing or non-numeric length or timestamp, a negative or fractional length, a negative
timestamp, and ``hash_ids`` that is not a list of non-negative integers.

Qin et al., "Mooncake: Trading More Storage for Less Computation — A KVCache-centric
Architecture for Serving LLM Chatbot", FAST 2025 (arXiv 2407.00079).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from servetrace.loaders.dataset import Dataset, Loaded, Part, RemoteFile
from servetrace.loaders.schema import validate
from servetrace.loaders.source import first_json, jsonl_rows, parse_number, sort_by

VERSION = "1"
KEYS = ["timestamp", "input_length", "output_length", "hash_ids"]
BLOCK_SIZE_TOKENS = 512
_BASE = "https://raw.githubusercontent.com/kvcache-ai/Mooncake/main/FAST25-release/"

# A JSON list of non-negative integers, as Polars' json_path_match re-serializes it: "[0,1,2]".
_HASH_LIST = r"^\[\s*(\d+(\s*,\s*\d+)*)?\s*\]$"

DATASET = Dataset(
    name="mooncake",
    title="Mooncake (Kimi) request traces",
    citation=("Ruoyu Qin, Zheming Li, Weiran He, Jialei Cui, Feng Ren, Mingxing Zhang, "
              "Yongwei Wu, Weimin Zheng, Xinran Xu. Mooncake: Trading More Storage for Less "
              "Computation — A KVCache-centric Architecture for Serving LLM Chatbot. "
              "FAST 2025, USENIX, pp. 155-170."),
    license="Apache-2.0",
    homepage="https://github.com/kvcache-ai/Mooncake/tree/main/FAST25-release",
    parts=(
        Part("conversation", (RemoteFile(
            _BASE + "traces/conversation_trace.jsonl", "conversation_trace.jsonl",
            size=3029533,
            sha256="b8cbb061a85206d729d91cdc2981f43c9e0d99209dce588d3af5f7934408b9df"),),
            "Kimi conversation requests (FAST'25 release), 12,031 requests"),
        Part("toolagent", (RemoteFile(
            _BASE + "traces/toolagent_trace.jsonl", "toolagent_trace.jsonl"),),
            "Kimi tool and agent requests (FAST'25 release)"),
        Part("synthetic", (RemoteFile(
            _BASE + "traces/synthetic_trace.jsonl", "synthetic_trace.jsonl"),),
            "synthetic trace with Poisson arrivals (FAST'25 release)"),
        Part("arxiv", (RemoteFile(
            _BASE + "arxiv-trace/mooncake_trace.jsonl", "mooncake_trace.jsonl"),),
            "the trace of the arXiv paper (2407.00079), first published at the repo root"),
    ),
)


def detect(path: Path) -> bool:
    """A JSON-lines file whose first object has exactly the four Mooncake keys."""
    obj = first_json(path)
    return isinstance(obj, dict) and sorted(obj) == sorted(KEYS)


def _hash_ids(text: pl.Expr) -> pl.Expr:
    """``[0,1,2]`` → ``List(Int64)``, vectorized; null where the text is not such a list."""
    items = (text.str.strip_chars().str.strip_chars("[]").str.replace_all(r"\s", "")
             .str.split(","))
    parsed = (pl.when(text.str.strip_chars().str.strip_chars("[] ") == "")
              .then(pl.lit([], dtype=pl.List(pl.Int64)))
              .otherwise(items.list.eval(pl.element().cast(pl.Int64, strict=False))))
    ok = text.str.contains(_HASH_LIST) & (parsed.list.eval(pl.element().is_null()).list.any()
                                          .not_())
    return pl.when(ok).then(parsed)


def load(paths: list[Path], trace: str) -> Loaded:
    """Read Mooncake JSONL file(s) onto ``requests`` (see the module docstring)."""
    rows = pl.concat([jsonl_rows(p, KEYS) for p in paths])
    parsed = rows.with_columns(
        (parse_number(pl.col("timestamp")) / 1000.0).alias("arrival_s"),
        parse_number(pl.col("input_length")).alias("input_tokens"),
        parse_number(pl.col("output_length")).alias("output_tokens"),
        _hash_ids(pl.col("hash_ids")).alias("hash_ids_parsed"),
    )
    parsed = parsed.with_columns(pl.coalesce(
        pl.col("reason"),
        pl.when(pl.col("arrival_s") < 0).then(
            pl.format("negative timestamp: {}", pl.col("timestamp"))),
        pl.when(pl.col("hash_ids").is_not_null() & pl.col("hash_ids_parsed").is_null()).then(
            pl.format("malformed hash_ids (expected a list of non-negative integers): {}",
                      pl.col("hash_ids").str.slice(0, 80))),
    ).alias("reason"))
    parsed = parsed.drop("hash_ids").rename({"hash_ids_parsed": "hash_ids"})
    text = {"arrival_s": "timestamp", "input_tokens": "input_length",
            "output_tokens": "output_length"}
    valid, rejects = validate("requests", parsed, trace=trace, text=text)
    valid = sort_by(valid)

    blocks = (pl.col("input_tokens") + BLOCK_SIZE_TOKENS - 1) // BLOCK_SIZE_TOKENS
    check = valid.select(
        (pl.col("hash_ids").is_not_null() & (pl.col("hash_ids").list.len() != blocks))
        .sum().alias("violations"),
        pl.col("hash_ids").is_null().sum().alias("missing"),
        pl.col("arrival_s").n_unique().alias("distinct"),
    ).row(0, named=True)
    notes = {
        "block_size_tokens": BLOCK_SIZE_TOKENS,
        "hash_ids_length_violations": int(check["violations"]),
        "hash_ids_missing": int(check["missing"]),
        "distinct_arrival_s": int(check["distinct"]),
        "timestamp_unit": "ms from trace start, stored as seconds",
    }
    return Loaded(tables={"requests": valid}, rejects=rejects, rows_read=rows.height,
                  origin=None, notes=notes, hash_block_tokens=BLOCK_SIZE_TOKENS,
                  hash_scope="global")
