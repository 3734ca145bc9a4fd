"""Alibaba ServeGen offline (batch) inference traces (ACDC, SOSP'26).

Source: ``alibaba/ServeGen``, ``data/offline/trace_a.jsonl`` … ``trace_f.jsonl`` (Apache-2.0),
documented in ``data/offline/README.md``. Each file is one complete production batch job of
Alibaba Cloud Model Studio (Bailian), one JSON object per line, in two shapes:

- content-hash traces ``trace_a``/``b``/``c`` (dictionary translation, text generation, image
  captioning)::

    {"request_id": 0, "type": "multimodal", "input_length": 446,
     "hash_ids": [655296, 655297, ...], "img_ids": ["img_00001"]}

- stat traces ``trace_d``/``e``/``f`` (generation-heavy, scoring, multimodal balanced)::

    {"request_id": 0, "type": "text", "input_length": 61, "output_length": 2370,
     "duration": 14000}

The tests write files in exactly these shapes (the real rows read from the repository: keys
in this order, ``", "`` separators, ``img_ids`` ``[]`` for a text request); no real file is
in ``../shared/traces``.

A batch job is submitted whole, so there are no arrival times: ``arrival_s`` is null and
the trace is flagged ``traces.batch`` (``Loaded.batch``). ``request_id`` keeps the order of
the submitted input file, and the rows are stored in that order. What analyses do with it:
arrival metrics (burstiness, inter-arrival fits, the arrival part of ``servetrace analyze``,
the report's arrivals section, ``fit``) do not apply and say so in one line instead of
failing; length analyses (``tokens``, the report's token section) and the prefix-cache
analyses over ``hash_ids`` (request order as the replay order) still run.

Mapping: ``request_id`` → ``request_id``; ``type`` (``text``/``multimodal``) →
``request_type``; ``input_length`` → ``input_tokens``; ``output_length`` → ``output_tokens``
(stat traces; null in content-hash traces, which give none); ``duration`` (end-to-end
completion time, ms) → ``latency_s``; ``hash_ids`` → ``hash_ids``: remapped salted hashes of
the input's 16-token prefix blocks in one namespace shared by all content-hash traces
(``hash_block_tokens`` 16, ``hash_scope`` ``global``); ``img_ids`` → ``num_images`` (its
length; the ids themselves, identical for an identical image URL within a task, are counted
in ``notes``: ``image_refs`` and ``distinct_images``). ``session``, ``tenant``, ``model`` and
the timing columns stay null.

Rejected with a reason: a line that is not a JSON object, a missing ``request_id``, a missing
or non-numeric ``input_length``, a negative or fractional length, a stat row without
``output_length`` or ``duration``, a negative ``duration``, a content-hash row without
``hash_ids`` or with ``hash_ids`` that is not a list of non-negative integers, and
``img_ids`` that is not a list of strings. The shape of a file is that of its first object
(``hash_ids`` present: content-hash). Counted, not rejected (``notes``):
``len(hash_ids) != ceil(input_length / 16)`` and request ids out of file order.

Cite: Leping Yang, Xue Li, Kun Qian, Erci Xu, Mingzhen Han, Haoran Zhu, Tao He, Zuolong Yin,
Ennan Zhai, Wenyuan Yu, Jingren Zhou, Guangtao Xue. Batched in Back: Characterizing and
Optimizing Offline LLM Inference in Production with ACDC. SOSP 2026
(doi:10.1145/3830418.3843877). The data ship with ServeGen (Xiang et al., NSDI 2026).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from servetrace.loaders.dataset import Dataset, Loaded, Part, RemoteFile
from servetrace.loaders.mooncake import _hash_ids
from servetrace.loaders.schema import validate
from servetrace.loaders.source import FormatError, first_json, jsonl_rows, parse_number

VERSION = "1"
HASH_KEYS = ["request_id", "type", "input_length", "hash_ids", "img_ids"]
STAT_KEYS = ["request_id", "type", "input_length", "output_length", "duration"]
BLOCK_SIZE_TOKENS = 16
_BASE = "https://raw.githubusercontent.com/alibaba/ServeGen/main/data/offline/"
# (part, workload, requests) as data/offline/README.md lists them.
_TRACES = (("trace_a", "dictionary translation, content hashes", 51429),
           ("trace_b", "text generation, content hashes", 51047),
           ("trace_c", "image captioning (multimodal), content hashes", 50954),
           ("trace_d", "generation-heavy (short in, long out), lengths and durations", 49986),
           ("trace_e", "scoring / classification (long in, short out), lengths and durations",
            49999),
           ("trace_f", "multimodal balanced, lengths and durations", 49985))
# Strings in a JSON list, as Polars' json_path_match re-serializes it: ["a","b"].
_STR_LIST = r'^\[\s*("[^"\\]*"(\s*,\s*"[^"\\]*")*)?\s*\]$'

DATASET = Dataset(
    name="servegen_offline",
    title="Alibaba ServeGen offline (batch) inference traces",
    citation=("Leping Yang, Xue Li, Kun Qian, Erci Xu, Mingzhen Han, Haoran Zhu, Tao He, "
              "Zuolong Yin, Ennan Zhai, Wenyuan Yu, Jingren Zhou, Guangtao Xue. Batched in "
              "Back: Characterizing and Optimizing Offline LLM Inference in Production with "
              "ACDC. SOSP 2026 (doi:10.1145/3830418.3843877). Released with ServeGen (Xiang "
              "et al., NSDI 2026)."),
    license="Apache-2.0",
    homepage="https://github.com/alibaba/ServeGen/tree/main/data/offline",
    parts=tuple(Part(name, (RemoteFile(_BASE + f"{name}.jsonl", f"{name}.jsonl"),),
                     f"one batch job: {what}; {n:,} requests, no arrival times")
                for name, what, n in _TRACES),
)


def _shape(obj: object) -> str | None:
    """``hash`` or ``stat`` for a first object of either documented shape, else None."""
    if not isinstance(obj, dict) or not {"request_id", "type", "input_length"} <= set(obj):
        return None
    if "hash_ids" in obj and "img_ids" in obj:
        return "hash"
    if "output_length" in obj and "duration" in obj:
        return "stat"
    return None


def detect(path: Path) -> bool:
    """A JSON-lines file whose first object is a content-hash or a stat batch record."""
    return _shape(first_json(path)) is not None


def _parse(rows: pl.DataFrame, shape: str) -> pl.DataFrame:
    """Source text → canonical columns, with the loader's own reasons in ``reason``."""
    rid = pl.col("request_id").str.strip_chars().str.strip_chars('"')
    out = rows.with_columns(
        pl.when(rid != "").then(rid).alias("request_id"),
        pl.lit(None, pl.Float64).alias("arrival_s"),
        pl.col("type").alias("request_type"),
        parse_number(pl.col("input_length")).alias("input_tokens"),
    )
    if shape == "hash":
        n_img = pl.col("img_ids").str.count_matches(r'"[^"\\]*"')
        out = out.with_columns(
            _hash_ids(pl.col("hash_ids")).alias("_hash"),
            pl.when(pl.col("img_ids").str.contains(_STR_LIST)).then(n_img).alias("num_images"))
        mine = [
            pl.when(pl.col("hash_ids").is_null()).then(pl.lit("missing hash_ids")),
            pl.when(pl.col("_hash").is_null()).then(pl.format(
                "malformed hash_ids (expected a list of non-negative integers): {}",
                pl.col("hash_ids").str.slice(0, 80))),
            pl.when(pl.col("img_ids").is_not_null() & pl.col("num_images").is_null()).then(
                pl.format("malformed img_ids (expected a list of strings): {}",
                          pl.col("img_ids").str.slice(0, 80))),
        ]
    else:
        duration = parse_number(pl.col("duration"))
        out = out.with_columns(
            parse_number(pl.col("output_length")).alias("output_tokens"),
            (duration / 1000.0).alias("latency_s"), duration.alias("_duration"))
        mine = [
            pl.when(pl.col("duration").is_null()).then(pl.lit("missing duration")),
            pl.when(pl.col("_duration") < 0).then(
                pl.format("negative duration: {}", pl.col("duration"))),
        ]
    reason = pl.coalesce(
        pl.col("reason"),
        pl.when(pl.col("request_id").is_null()).then(pl.lit("missing request_id")), *mine)
    return out.with_columns(reason.alias("reason"))


def load(paths: list[Path], trace: str) -> Loaded:
    """Read ServeGen offline JSONL file(s) onto ``requests`` (see the module docstring)."""
    shapes = {p: _shape(first_json(p)) for p in paths}
    for path, shape in shapes.items():
        if shape is None:
            raise FormatError(path, "first line is not a ServeGen offline record (needs "
                                    "request_id, type, input_length and either hash_ids and "
                                    "img_ids or output_length and duration)", line=1)
    if len(set(shapes.values())) > 1:
        raise FormatError(paths[-1], "content-hash and stat offline traces have different "
                                     "columns; ingest them as separate traces")
    shape = shapes[paths[0]]
    keys = HASH_KEYS if shape == "hash" else STAT_KEYS
    rows = pl.concat([jsonl_rows(p, keys) for p in paths])
    parsed = _parse(rows, shape)
    if shape == "hash":
        parsed = parsed.drop("hash_ids").rename({"_hash": "hash_ids"})
    text = {"input_tokens": "input_length"}
    if shape == "stat":
        text |= {"output_tokens": "output_length", "latency_s": "duration"}
    absent = ("arrival_s", "output_tokens") if shape == "hash" else ("arrival_s",)
    valid, rejects = validate("requests", parsed, trace=trace, text=text, absent=absent)
    keep = [c for c in ("request_id", "arrival_s", "input_tokens", "output_tokens",
                        "latency_s", "num_images", "hash_ids", "request_type")
            if c in valid.columns]
    valid = valid.select(keep)
    return Loaded(tables={"requests": valid}, rejects=rejects, rows_read=rows.height,
                  origin=None, notes=_notes(valid, parsed, shape),
                  hash_block_tokens=BLOCK_SIZE_TOKENS if shape == "hash" else None,
                  hash_scope="global" if shape == "hash" else None, batch=True)


def _notes(valid: pl.DataFrame, parsed: pl.DataFrame, shape: str) -> dict:
    """Counted checks and the figures of a batch job that are not columns."""
    rid = valid["request_id"].cast(pl.Int64, strict=False)
    notes: dict = {"shape": "content-hash" if shape == "hash" else "stat",
                   "arrivals": "none: one batch job, submitted whole",
                   "request_id_out_of_order": int((rid.diff() <= 0).sum())}
    if shape == "hash":
        blocks = (pl.col("input_tokens") + BLOCK_SIZE_TOKENS - 1) // BLOCK_SIZE_TOKENS
        notes["hash_ids_length_violations"] = int(valid.select(
            (pl.col("hash_ids").list.len() != blocks).sum()).item())
        notes["block_size_tokens"] = BLOCK_SIZE_TOKENS
        ok = parsed.filter(pl.col("reason").is_null())
        images = ok.select(pl.col("img_ids").str.extract_all(r'"[^"\\]*"').alias("i")) \
            .explode("i").drop_nulls()
        notes["image_refs"] = images.height
        notes["distinct_images"] = images["i"].n_unique() if images.height else 0
    else:
        notes["duration_unit"] = "ms, stored as latency_s in seconds"
    return notes
