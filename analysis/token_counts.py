"""Counted tables of integer token values, shared by :mod:`servetrace.analysis.tokens` and
:mod:`servetrace.analysis.token_drift`: reading and checking the columns a function needs,
dense group ids, counts per (group, value) cell (:class:`_Runs`) where that table holds at
most :data:`_MAX_CELLS` cells (read as ``token_counts._MAX_CELLS`` at call time, so that a
test can force the sorting paths), and the small joins and checks every token function uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from servetrace.analysis.frames import lazy as as_lazy
from servetrace.analysis.frames import warn_empty

Frame = pl.DataFrame | pl.LazyFrame
By = str | Sequence[str] | None



def _collect(requests: Frame, columns: Sequence[str], fn: str, *,
             optional: Sequence[str] = ()) -> pl.DataFrame:
    """The named columns of ``requests`` (optional ones only where present), eagerly."""
    lazy = as_lazy(requests, f"{fn}: requests")
    schema = lazy.collect_schema()
    for column in columns:
        if column not in schema:
            raise ValueError(f"{fn}: requests has no column {column!r} "
                             f"(columns: {', '.join(schema.names())})")
    wanted = list(dict.fromkeys([*columns, *(c for c in optional if c in schema)]))
    if not wanted and schema.names():  # nothing to read but the row count
        frame = lazy.select(pl.nth(0).is_null().alias("__row")).collect()
    else:
        frame = lazy.select(wanted).collect()
    if frame.height == 0:
        raise ValueError(f"{fn}: requests is empty (no rows)")
    return frame


def _numeric(frame: pl.DataFrame, field: str, fn: str) -> None:
    if not frame.schema[field].is_numeric():
        raise ValueError(f"{fn}: column {field!r} must be numeric, "
                         f"not {frame.schema[field]}")


def _no_overlap(keys: list[str], fields: Sequence[str], fn: str) -> None:
    for key in keys:
        if key in fields:
            raise ValueError(f"{fn}: by column {key!r} is also an analysed field")


def _read(requests: Frame, keys: list[str], fields: Sequence[str], fn: str, *,
          extra: Sequence[str] = ()) -> pl.DataFrame:
    """The ``by`` keys, ``extra`` and numeric ``fields`` of ``requests``, eagerly, after
    checking that no key is also a field or an extra column."""
    _no_overlap(keys, [*fields, *extra], fn)
    frame = _collect(requests, [*keys, *extra, *fields], fn)
    warn_empty(frame, keys, as_lazy(requests, fn))
    for field in fields:
        _numeric(frame, field, fn)
    return frame


def _aggregate(frame: pl.DataFrame | pl.LazyFrame, keys: list[str],
               exprs: Sequence[pl.Expr]) -> pl.DataFrame:
    """``group_by(keys).agg(exprs)`` sorted by the keys, or a one-row ``select`` without keys."""
    lazy = frame.lazy()
    if keys:
        return lazy.group_by(keys).agg(exprs).sort(keys, nulls_last=True).collect()
    return lazy.select(exprs).collect()


def _group_ids(frame: pl.DataFrame, keys: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``frame`` with its key columns replaced by an integer group id ``_g`` ≥ 0, and the key
    table ``[_g, keys...]``: sorting and windowing on one integer is far cheaper than on
    strings. Ids are not in key order: callers sort their (small) results by the keys."""
    if not keys:
        return frame.with_columns(pl.lit(0, pl.Int64).alias("_g")), pl.DataFrame(
            {"_g": [0]}, schema={"_g": pl.Int64})
    dtype = frame.schema[keys[0]]
    if len(keys) == 1 and isinstance(dtype, pl.String | pl.Categorical | pl.Enum):
        # one text key: its categorical code is an id (nulls get one past the largest code)
        column = pl.col(keys[0])
        code = (column.cast(pl.Categorical) if dtype == pl.String else column).to_physical()
        code = code.cast(pl.Int64)
        frame = frame.with_columns(code.fill_null(code.max().fill_null(-1) + 1).alias("_g"))
        ids = frame.group_by("_g").agg(column.first())
        return frame.drop(keys), ids
    ids = frame.lazy().group_by(keys).agg().with_row_index("_g").collect()
    ids = ids.with_columns(pl.col("_g").cast(pl.Int64))
    return frame.join(ids, on=keys, how="left", nulls_equal=True).drop(keys), ids


def _value_counts(frame: pl.DataFrame, field: str) -> pl.DataFrame:
    """``[_g, field, _c]``: how many rows of each group ``_g`` hold each value, sorted by both.

    Integer values with integer groups are packed into one int64 (group · 2³² + offset) and
    counted by a sort and a run-length encoding, several times cheaper than a hash
    ``group_by`` when there are millions of distinct (group, value) pairs."""
    x = pl.col(field)
    if frame.height and frame.schema[field].is_integer():
        lims = frame.select(x.min().alias("lo"), x.max().alias("hi"),
                            pl.col("_g").max().alias("g")).row(0, named=True)
        if lims["hi"] - lims["lo"] < 2**32 and lims["g"] < 2**30:
            packed = frame.select((pl.col("_g").cast(pl.Int64) * 2**32
                                   + (x.cast(pl.Int64) - lims["lo"])).alias("k"))["k"]
            runs = packed.sort().rle().struct.unnest()
            key = runs["value"]
            return pl.DataFrame({
                "_g": key // 2**32, field: (key % 2**32 + lims["lo"]).cast(frame.schema[field]),
                "_c": runs["len"].cast(pl.Int64)})
    return (frame.group_by("_g", field).agg(pl.len().cast(pl.Int64).alias("_c"))
            .sort("_g", field))


# Counting paths. Token counts are integers of modest range, so a statistic that only needs
# the sorted values of each group (quantiles, sums of a function of the value, the ECDF) can
# be read from the counts of each (group, value) pair: one bincount over a dense group × value
# table, O(n + cells) and no sort. The sorted value runs give the same order statistics as a
# sort, so quantiles are identical to Polars'; sums are taken over runs (count × f(value)).

_MAX_CELLS = 1 << 26
"""Largest dense group × value table of the counting paths (64 Mi cells, 512 MB of int64)."""


@dataclass(frozen=True)
class _Runs:
    """Value runs of each group, sorted by (group, value): ``count`` rows of ``group`` hold
    ``value``. ``cum`` is the running total of ``count``; group j's rows are the global ranks
    [``base``[j], ``base``[j] + ``n``[j]) of that order."""

    group: np.ndarray
    value: np.ndarray
    count: np.ndarray
    cum: np.ndarray
    base: np.ndarray
    n: np.ndarray

    def order_stat(self, rank: np.ndarray) -> np.ndarray:
        """The value at 0-based ``rank`` within each group (clipped into the table)."""
        at = np.searchsorted(self.cum, self.base + rank, side="right")
        return self.value[np.minimum(at, len(self.value) - 1)]

    def quantile(self, q: float, method: str = "linear", nulls: np.ndarray | None = None
                 ) -> np.ndarray:
        """Polars' ``quantile(q, method)`` of each group (``"linear"`` or ``"lower"``); NaN for
        an empty group. Polars' rule, with the group's ``nulls`` sorted first: position
        h = (n − 1)·q + nulls; linear gives x_⌊h⌋ + (h − ⌊h⌋)(x_⌈h⌉ − x_⌊h⌋) (Hyndman & Fan
        1996, definition 7), lower x_⌊h⌋. The same floating-point steps, so the same bits."""
        n = self.n
        if len(self.value) == 0:
            return np.full(len(n), np.nan)
        h = (n - 1).astype(np.float64) * q
        skip = np.zeros(len(n), dtype=np.int64) if nulls is None else nulls
        if nulls is not None:
            h = h + nulls
        lo = np.floor(h)
        below = self.order_stat(lo.astype(np.int64) - skip).astype(np.float64)
        if method == "lower":
            out = below
        else:
            above = self.order_stat(np.ceil(h).astype(np.int64) - skip).astype(np.float64)
            out = np.where(below == above, below, (h - lo) * (above - below) + below)
        return np.where(n > 0, out, np.nan)

    def group_sum(self, per_run: np.ndarray) -> np.ndarray:
        """Σ over each group's runs of ``per_run`` (0 for an empty group)."""
        return np.bincount(self.group, weights=per_run, minlength=len(self.n))


def _runs(values: np.ndarray, gid: np.ndarray | None, n_groups: int) -> _Runs | None:
    """The :class:`_Runs` of integer ``values`` in groups ``gid`` (0..n_groups − 1; None: all
    in group 0) by counting; None when the dense table would exceed :data:`_MAX_CELLS`."""
    if values.size == 0:
        width, lo = 1, 0
    else:
        lo, hi = int(values.min()), int(values.max())
        width = hi - lo + 1
    if gid is None and 0 <= lo <= width:  # count from 0: the values are the cells
        lo, width = 0, lo + width
    if n_groups * width > _MAX_CELLS:
        return None
    if gid is None:
        cell = values - lo if lo else values
    else:  # gid · width + (value − lo), built in place
        cell = gid * width
        cell += values
        cell -= lo
    table = np.bincount(cell, minlength=n_groups * width)
    nonzero = np.flatnonzero(table)
    count = table[nonzero]
    group, value = np.divmod(nonzero, width)
    cum = np.cumsum(count)
    n = np.bincount(group, weights=count, minlength=n_groups).astype(np.int64)
    return _Runs(group, value + lo, count, cum, np.cumsum(n) - n, n)


def _dense_groups(frame: pl.DataFrame, keys: list[str]
                  ) -> tuple[np.ndarray | None, pl.DataFrame]:
    """Group ids 0..G − 1 of the rows (None without keys: one group) and the key table
    ``[_g, keys...]`` (one row per group present, ids not in key order)."""
    if not keys:
        return None, pl.DataFrame({"_g": [0]}, schema={"_g": pl.Int64})
    with_ids, ids = _group_ids(frame.select(keys), keys)
    codes = with_ids["_g"].to_numpy()
    present = ids["_g"].to_numpy()
    dense = np.arange(len(present), dtype=np.int64)
    if present.size and int(present.max()) < 4 * max(len(codes), 1) + (1 << 20):
        table = np.zeros(int(present.max()) + 1, dtype=np.int64)
        table[present] = dense
        gid = table[codes]
    else:
        order = np.argsort(present)
        gid = dense[order][np.searchsorted(present[order], codes)]
    return gid, ids.with_columns(pl.Series("_g", dense))


def _integer_values(column: pl.Series) -> np.ndarray | None:
    """The non-null values of an integer column as int64, or None (not integer, or beyond
    ±2^53, where Float64 statistics would round)."""
    if not column.dtype.is_integer():
        return None
    values = column.drop_nulls()
    if values.len() and (values.min() < -(2**53) or values.max() > 2**53):
        return None
    return values.to_numpy().astype(np.int64, copy=False)


def _join(left: pl.DataFrame, right: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Left join on ``keys``; without keys, ``right``'s single row (or nulls) beside ``left``."""
    if keys:
        return left.join(right, on=keys, how="left", nulls_equal=True)
    one = "__one"
    return (left.with_columns(pl.lit(1).alias(one))
            .join(right.with_columns(pl.lit(1).alias(one)), on=one, how="left").drop(one))


def _positive(value: float, name: str, fn: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{fn}: {name} must be a positive finite number, got {value!r}")
