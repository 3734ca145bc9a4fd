"""Shared steps of the exporters: input checks, time units, block ids, writing files.

Every exporter takes the canonical ``requests`` table (``loaders/schema.py``) as a Polars
DataFrame or LazyFrame. :func:`requests` checks and orders it; the helpers below turn its
columns into the units a target reads. Columns the canonical schema allows to be absent
(a loader's frame may lack ``trace``, ``session`` ...) are treated as all-null.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

MOONCAKE_BLOCK_TOKENS = 512
"""Tokens per ``hash_ids`` block in the Mooncake traces (Qin et al., FAST 2025, §4)."""


def collect(frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """The frame, collected if lazy."""
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    if not isinstance(frame, pl.DataFrame):
        raise TypeError(f"expected a polars DataFrame or LazyFrame, got {type(frame).__name__}")
    return frame


def require(frame: pl.DataFrame, columns: Sequence[str], fmt: str, table: str) -> None:
    """Raise ``ValueError`` naming the format and every column of ``columns`` that the frame
    lacks or holds nulls in."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{fmt}: the {table} frame lacks column(s) {', '.join(missing)} "
                         f"(has {', '.join(frame.columns) or 'none'})")
    if frame.height:
        nulls = frame.select(pl.col(list(columns)).null_count()).row(0, named=True)
        bad = [f"{c} ({n} nulls)" for c, n in nulls.items() if n]
        if bad:
            raise ValueError(f"{fmt}: column(s) {', '.join(bad)} must not hold nulls")


def single_trace(frame: pl.DataFrame, fmt: str) -> None:
    """Raise ``ValueError`` when a ``trace`` column holds more than one trace id: traces have
    their own time zeros, so their rows cannot share one file's clock."""
    if "trace" in frame.columns:
        ids = frame["trace"].unique().drop_nulls()
        if ids.len() > 1:
            shown = ", ".join(sorted(ids.cast(pl.String).to_list())[:5])
            raise ValueError(f"{fmt}: the frame holds {ids.len()} traces ({shown}...); "
                             f"export one trace at a time (filter on the trace column)")


def requests(frame: pl.DataFrame | pl.LazyFrame, fmt: str,
             required: Sequence[str] = ("arrival_s", "input_tokens", "output_tokens")
             ) -> pl.DataFrame:
    """The ``requests`` frame checked for ``fmt`` and sorted by ``arrival_s`` (stable).

    Raises ``ValueError`` when a required column is missing or has nulls, when the frame is
    empty, or when it mixes traces; token counts must be non-negative.
    """
    out = collect(frame)
    require(out, required, fmt, "requests")
    if out.height == 0:
        raise ValueError(f"{fmt}: the requests frame is empty")
    single_trace(out, fmt)
    for col in ("input_tokens", "output_tokens"):
        if col in required and out[col].min() < 0:
            raise ValueError(f"{fmt}: column {col} holds a negative token count")
    if "arrival_s" in out.columns and not out["arrival_s"].is_sorted():
        out = out.sort("arrival_s", maintain_order=True)
    return out


def optional(frame: pl.DataFrame, column: str, dtype: pl.DataType) -> pl.Expr:
    """``column`` cast to ``dtype``, or an all-null literal when the frame lacks it."""
    if column in frame.columns:
        return pl.col(column).cast(dtype)
    return pl.lit(None, dtype)


def seconds(rebase: bool) -> pl.Expr:
    """``arrival_s`` in seconds, from the first request when ``rebase``."""
    arrival = pl.col("arrival_s")
    return arrival - arrival.min() if rebase else arrival


def milliseconds(rebase: bool) -> pl.Expr:
    """``arrival_s`` as whole milliseconds (Int64, rounded half to even): ``round(s·1000)``."""
    return (seconds(rebase) * 1000.0).round().cast(pl.Int64)


def hash_ids(frame: pl.DataFrame, block_size: int = MOONCAKE_BLOCK_TOKENS,
             keep: bool = True) -> pl.Series:
    """Block ids per request, ``List(Int64)``: the frame's ``hash_ids`` where present (with
    ``keep``), else ``ceil(input_tokens / block_size)`` fresh ids.

    Fresh ids are unique per request (no prefix sharing is invented): consecutive integers,
    request by request in row order, starting above the largest id kept. With ``keep`` and a
    ``block_size`` other than 512 while the frame carries ids, ``ValueError``: the kept ids
    name 512-token blocks (the canonical ``hash_ids`` are Mooncake's).
    """
    if block_size < 1:
        raise ValueError(f"block_size must be a positive number of tokens, got {block_size}")
    has = keep and "hash_ids" in frame.columns and frame["hash_ids"].null_count() < frame.height
    if has and block_size != MOONCAKE_BLOCK_TOKENS:
        raise ValueError(f"block_size={block_size}: the frame's hash_ids name "
                         f"{MOONCAKE_BLOCK_TOKENS}-token blocks; pass keep_hash_ids=False to "
                         f"generate {block_size}-token blocks instead")
    blocks = (pl.col("input_tokens") + block_size - 1) // block_size
    if has:
        kept = pl.col("hash_ids").cast(pl.List(pl.Int64))
        fresh = pl.when(kept.is_null()).then(blocks).otherwise(0)
        top = frame["hash_ids"].cast(pl.List(pl.Int64)).list.max().max()
        first = 0 if top is None else int(top) + 1
    else:
        kept, fresh, first = None, blocks, 0
    ends = fresh.cum_sum() + first
    made = pl.int_ranges(ends - fresh, ends, dtype=pl.Int64)
    ids = made if kept is None else pl.when(kept.is_not_null()).then(kept).otherwise(made)
    return frame.select(ids.alias("hash_ids")).to_series()


def block_mismatch(ids: pl.Series, input_tokens: pl.Series, block_size: int) -> int:
    """Rows whose ``len(ids)`` differs from ``ceil(input_tokens / block_size)``."""
    expected = (input_tokens + block_size - 1) // block_size
    return int((ids.list.len().cast(pl.Int64) != expected).sum())


def clip_output(minimum: int) -> pl.Expr:
    """``output_tokens`` raised to ``minimum`` (a benchmark client cannot ask for fewer than
    one token: ``max_tokens`` must be at least 1 in the OpenAI API)."""
    if minimum < 0:
        raise ValueError(f"min_output_tokens must be >= 0, got {minimum}")
    return pl.max_horizontal(pl.col("output_tokens"), pl.lit(minimum, pl.Int64))


def target(path: str | Path) -> Path:
    """``path`` as a Path whose parent folder exists."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def write_jsonl(frame: pl.DataFrame, path: str | Path) -> Path:
    """One JSON object per row (Polars ``write_ndjson``), keys in column order."""
    out = target(path)
    frame.write_ndjson(out)
    return out


def write_csv(frame: pl.DataFrame, path: str | Path) -> Path:
    """A header line, then one line per row (Polars ``write_csv``, ``\\n`` line ends)."""
    out = target(path)
    frame.write_csv(out)
    return out
