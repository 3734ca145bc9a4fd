"""Alibaba Qwen-Bailian usage traces (KVCache in the Wild, USENIX ATC'25).

Source: ``alibaba-edu/qwen-bailian-usagetraces-anon`` (Apache-2.0, files in Git LFS):
``qwen_traceA_blksz_16.jsonl`` (to-C), ``qwen_traceB_blksz_16.jsonl`` (to-B),
``qwen_thinking_blksz_16.jsonl`` and ``qwen_coder_blksz_16.jsonl``. One JSON object per line::

    {"chat_id": 159, "parent_chat_id": 55, "timestamp": 61.114, "input_length": 521,
     "output_length": 132, "type": "text", "turn": 2, "hash_ids": [1089, 1090, ...]}

The real files are not in ``../shared/traces``: this loader is tested on files written in
exactly this documented format, not on real rows.

Mapping: ``chat_id`` → ``request_id``; ``parent_chat_id`` → ``parent_request_id`` (``-1``, a
root, → null); ``timestamp`` (seconds from the file's start; no wall-clock origin, so
``origin`` is null) → ``arrival_s``; ``input_length``/``output_length`` →
``input_tokens``/``output_tokens``; ``type`` (text, search, image, file, ... as the source
names it) → ``request_type``; ``turn`` → ``turn``; ``hash_ids`` → ``hash_ids``: salted SipHash
of 16-token blocks remapped to integers, one namespace for the whole file (the trace's
``hash_scope`` is ``global``, ``hash_block_tokens`` 16). The release has no session id
(sessions are the trees of parent links), no sub-agents, cached or reasoning tokens, or
think/server time: those columns stay null.

Rejected with a reason: a line that is not a JSON object, a missing or non-numeric
timestamp or length, a negative or fractional length, a negative timestamp, a ``turn`` that
is not a positive integer, a ``chat_id`` missing, and ``hash_ids`` that is not a list of
non-negative integers. Counted, not rejected (``notes``): parents that name no request of
the file, and ``hash_ids`` lengths other than ``ceil(input_length / 16)``.

Cite: Jiahao Wang, Jinbo Han, Xingda Wei, Sijie Shen, Dingyan Zhang, Chenguang Fang, Rong
Chen, Wenyuan Yu, Haibo Chen. KVCache Cache in the Wild: Characterizing and Optimizing
KVCache Cache at a Large Cloud Provider. USENIX ATC 2025.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from servetrace.loaders.dataset import Dataset, Loaded, Part, RemoteFile
from servetrace.loaders.mooncake import _hash_ids
from servetrace.loaders.schema import validate
from servetrace.loaders.source import first_json, jsonl_rows, parse_number, sort_by

VERSION = "1"
KEYS = ["chat_id", "parent_chat_id", "timestamp", "input_length", "output_length", "type",
        "turn", "hash_ids"]
BLOCK_SIZE_TOKENS = 16
_BASE = ("https://media.githubusercontent.com/media/alibaba-edu/"
         "qwen-bailian-usagetraces-anon/main/")
# File names as the upstream README lists them; size and SHA-256 from the Git LFS pointers
# where the pointer could be read (the thinking and coder files, commit 0b4273a).
_FILES = (("traceA", "qwen_traceA_blksz_16.jsonl", "to-C (consumer) requests", None, None),
          ("traceB", "qwen_traceB_blksz_16.jsonl", "to-B (business, API) requests", None, None),
          ("thinking", "qwen_thinking_blksz_16.jsonl", "requests to reasoning models",
           27901454, "41ac36d9d1b54d084eeb6b05e9d142ba9d02f8bf79cfc9fff418d8ab7cdee906"),
          ("coder", "qwen_coder_blksz_16.jsonl", "requests to coder models",
           132054902, "3d74974cebb7bccb69b1ca6ea210a44d9a3033443c0271ed015327284dea1aff"))

DATASET = Dataset(
    name="qwen_bailian",
    title="Alibaba Qwen-Bailian usage traces (KVCache in the Wild)",
    citation=("Jiahao Wang, Jinbo Han, Xingda Wei, Sijie Shen, Dingyan Zhang, Chenguang Fang, "
              "Rong Chen, Wenyuan Yu, Haibo Chen. KVCache Cache in the Wild: Characterizing "
              "and Optimizing KVCache Cache at a Large Cloud Provider. USENIX ATC 2025."),
    license="Apache-2.0",
    homepage="https://github.com/alibaba-edu/qwen-bailian-usagetraces-anon",
    parts=tuple(Part(name, (RemoteFile(_BASE + file, file, size=size, sha256=sha),), desc)
                for name, file, desc, size, sha in _FILES),
)


def detect(path: Path) -> bool:
    """A JSON-lines file whose first object has the Qwen-Bailian keys."""
    obj = first_json(path)
    return isinstance(obj, dict) and {"chat_id", "parent_chat_id", "hash_ids"} <= set(obj)


def tree_roots(ids: pl.Series, parents: pl.Series) -> pl.DataFrame:
    """The root of each node's tree in a forest given by parent links, vectorized.

    ``ids`` are unique node ids, ``parents[i]`` the id of node i's parent (null for a root).
    A parent that is not among ``ids`` makes the node a root of its own (an orphan). Pointer
    jumping (Wyllie's list ranking, as in Hillis & Steele, "Data Parallel Algorithms", CACM
    1986): ``ptr`` starts at the parent's row (the node's own for a root; one join maps ids
    to rows) and each round sets ``ptr = ptr[ptr]`` with one vectorized gather over all
    nodes, so a node at depth d reaches its root after
    ``ceil(log2(d))`` rounds. A node whose pointer ends on no root (it lies on, or under, a
    cycle of links) gets a null root.

    Returns ``id``, ``root`` (in the order of ``ids``) and ``orphan`` (the parent was given
    but names no node).
    """
    frame = pl.DataFrame({"id": ids.cast(pl.String), "parent": parents.cast(pl.String)})
    # one join maps each parent id to its row (a repeated id: its first row stands for it);
    # after that a round is a gather, ptr[ptr], with no hashing
    rows = frame.select("id").with_row_index("_row").unique("id", keep="first",
                                                              maintain_order=True)
    frame = frame.with_row_index("_self").join(
        rows.rename({"id": "parent", "_row": "_up"}), on="parent", how="left",
        maintain_order="left")
    frame = frame.with_columns(
        (pl.col("parent").is_not_null() & pl.col("_up").is_null()).alias("orphan"),
        pl.coalesce("_up", "_self").alias("_ptr"))
    start = frame["_ptr"]
    ptr = start
    for _ in range(int(frame.height).bit_length() + 1):
        nxt = ptr.gather(ptr)
        if (nxt == ptr).all():
            break
        ptr = nxt
    # a pointer left on no real root (a row that is its own start) went round a cycle
    real = start.gather(ptr) == ptr
    frame = frame.with_columns(
        pl.when(real.alias("_real")).then(frame["id"].gather(ptr)).alias("ptr"))
    return frame.select("id", pl.col("ptr").alias("root"), "orphan")


def load(paths: list[Path], trace: str) -> Loaded:
    """Read Qwen-Bailian JSONL file(s) onto ``requests`` (see the module docstring)."""
    rows = pl.concat([jsonl_rows(p, KEYS) for p in paths])
    turn = parse_number(pl.col("turn"))
    parent = pl.col("parent_chat_id").str.strip_chars().str.strip_chars('"')
    parsed = rows.with_columns(
        parse_number(pl.col("timestamp")).alias("arrival_s"),
        parse_number(pl.col("input_length")).alias("input_tokens"),
        parse_number(pl.col("output_length")).alias("output_tokens"),
        _hash_ids(pl.col("hash_ids")).alias("_hash"),
        pl.col("chat_id").str.strip_chars().str.strip_chars('"').alias("request_id"),
        pl.when(parent != "-1").then(parent).alias("parent_request_id"),
        pl.col("type").alias("request_type"),
        turn.cast(pl.Int64, strict=False).alias("_turn"),
    )
    parsed = parsed.with_columns(pl.coalesce(
        pl.col("reason"),
        pl.when(pl.col("request_id").is_null() | (pl.col("request_id") == "")).then(
            pl.lit("missing chat_id")),
        pl.when(pl.col("arrival_s") < 0).then(
            pl.format("negative timestamp: {}", pl.col("timestamp"))),
        pl.when(pl.col("turn").is_not_null() & ((turn < 1) | (turn != turn.floor())
                                                | turn.is_null())).then(
            pl.format("turn is not a positive integer: {}", pl.col("turn"))),
        pl.when(pl.col("hash_ids").is_not_null() & pl.col("_hash").is_null()).then(
            pl.format("malformed hash_ids (expected a list of non-negative integers): {}",
                      pl.col("hash_ids").str.slice(0, 80))),
    ).alias("reason"))
    parsed = parsed.drop("hash_ids", "turn").rename({"_hash": "hash_ids", "_turn": "turn"})
    text = {"arrival_s": "timestamp", "input_tokens": "input_length",
            "output_tokens": "output_length"}
    valid, rejects = validate("requests", parsed, trace=trace, text=text)
    valid = sort_by(valid.drop([c for c in ("chat_id", "parent_chat_id", "type")
                                if c in valid.columns]))
    roots = tree_roots(valid["request_id"], valid["parent_request_id"])
    valid = valid.with_columns(roots["root"].alias("session"))
    blocks = (pl.col("input_tokens") + BLOCK_SIZE_TOKENS - 1) // BLOCK_SIZE_TOKENS
    ids = valid["request_id"]
    check = valid.select(
        (pl.col("hash_ids").is_not_null() & (pl.col("hash_ids").list.len() != blocks))
        .sum().alias("hash_ids_length_violations"),
        (pl.col("parent_request_id").is_not_null()
         & ~pl.col("parent_request_id").is_in(ids.implode())).sum().alias("orphan_parents"),
        pl.col("parent_request_id").is_null().sum().alias("roots"),
        pl.col("session").n_unique().alias("sessions"),
    ).row(0, named=True)
    notes = {**{k: int(v) for k, v in check.items()},
             "parent_cycles": int(roots["root"].null_count()),
             "block_size_tokens": BLOCK_SIZE_TOKENS,
             "timestamp_unit": "s from the file's start"}
    return Loaded(tables={"requests": valid}, rejects=rejects, rows_read=rows.height,
                  origin=None, notes=notes, hash_block_tokens=BLOCK_SIZE_TOKENS,
                  hash_scope="global")
