"""Parquet files as traces: a file in a canonical schema (what `servetrace generate` writes)
is a trace for every command that takes one (:class:`servetrace.cli._Trace`).

:func:`table_of` decides which canonical table a file holds from its columns and checks their
types against the canonical schema (:mod:`servetrace.loaders.schema`) without reading the data;
:func:`hash_layout` reads the hash block size and id scope a file's metadata records.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from servetrace.loaders import schema

__all__ = ["hash_layout", "table_of"]

_KINDS = {"int": "an integer", "float": "a number", "str": "text", "bool": "a boolean",
          "list": "a list of integers"}


def _kind(dtype: pl.DataType) -> str:
    """What a column holds, coarsely: the canonical type a file's column must match."""
    if dtype.is_integer():
        return "int"
    if dtype.is_float():
        return "float"
    if isinstance(dtype, pl.String | pl.Categorical | pl.Enum):
        return "str"
    if dtype == pl.Boolean:
        return "bool"
    if isinstance(dtype, pl.List) and dtype.inner is not None and dtype.inner.is_integer():
        return "list"
    return str(dtype)


def _fits(have: str, want: str) -> bool:
    return have == want or (want == "float" and have == "int")


def table_of(path: Path) -> tuple[str, pl.Schema]:
    """The canonical table a Parquet file holds (requests, invocations or invocation_counts,
    decided by its columns) and its schema, checked: every required column (but ``trace``)
    present and every canonical column of a type that casts to the canonical one. Errors
    name the file and the column."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        have = pl.read_parquet_schema(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise ValueError(f"{path}: not a readable Parquet file ({exc})") from exc
    cols = set(have)
    if "input_tokens" in cols:
        table = "requests"
    elif {"window_start_s", "count"} <= cols:
        table = "invocation_counts"
    elif {"function", "arrival_s"} <= cols:
        table = "invocations"
    else:
        raise ValueError(f"{path}: not a trace in a canonical schema: no 'input_tokens' column "
                         "(requests), no 'function' and 'arrival_s' (invocations), no "
                         "'window_start_s' and 'count' (invocation_counts); its columns: "
                         f"{', '.join(have) or 'none'}")
    fields = schema.TABLES[table]
    for name, dtype in schema.polars_schema(table).items():
        if name not in cols:
            if not fields.field(name).nullable and name != "trace":
                raise ValueError(f"{path}: column {name!r} is missing (required in the "
                                 f"canonical {table} schema)")
            continue
        want, got = _kind(dtype), _kind(have[name])
        if not _fits(got, want):
            raise ValueError(f"{path}: column {name!r} is {have[name]}, expected "
                             f"{_KINDS.get(want, want)} (canonical {table} schema)")
    return table, have


def hash_layout(path: Path) -> tuple[int | None, str]:
    """(tokens per hash block, id scope) a Parquet file's key-value metadata records: keys
    ``hash_block_tokens``/``hash_scope``, at the top level or inside a JSON value."""
    found: dict[str, object] = {}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key in ("hash_block_tokens", "hash_scope"):
                if node.get(key) is not None:
                    found.setdefault(key, node[key])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    meta = pq.read_metadata(path).metadata or {}
    for key, raw in meta.items():
        name, text = key.decode(errors="replace"), raw.decode(errors="replace")
        if name in ("hash_block_tokens", "hash_scope"):
            found.setdefault(name, text)
        elif name != "ARROW:schema":
            try:
                walk(json.loads(text))
            except ValueError:
                continue
    block = found.get("hash_block_tokens")
    return (int(block) if block is not None else None,  # type: ignore[call-overload]
            str(found.get("hash_scope") or "global"))
