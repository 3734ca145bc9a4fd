"""Token-length characterization of the canonical ``requests`` table.

Per trace or group (``by``): summaries and ECDFs of input and output tokens, maximum-likelihood
fits (lognormal, gamma, Weibull, a two-component lognormal mixture, ranked by AIC/BIC with the
KS distance, see :mod:`servetrace.analysis.fitting`) and a Pareto/Zipf tail (Hill estimator above a
quantile threshold), the joint distribution of input and output (Pearson/Spearman correlation,
output quantiles by input bucket), drift between consecutive time windows (Wasserstein-1 and
KS distances) and the failure rate.

Sources:

* Patel et al., "Splitwise: Efficient Generative LLM Inference Using Phase Splitting",
  ISCA 2024 — token-length distributions of the Azure 2023 traces (conversation: median input
  1020, median output 129 tokens).
* Wang et al., "BurstGPT: A Real-World Workload Dataset to Optimize LLM Serving Systems",
  KDD 2025 (arXiv 2401.17644, 2024) — Zipf-like request lengths, failed requests as zero-token
  responses, and distributions that shift over time.
* Hill, "A Simple General Approach to Inference About the Tail of a Distribution",
  Annals of Statistics 3(5), 1975 — the tail index.
* Newman, "Power laws, Pareto distributions and Zipf's law", Contemporary Physics 46(5), 2005 —
  a Pareto tail of index α is a Zipf rank-size law of exponent 1/α.
* Spearman (1904), Pearson (1895) correlation; Kolmogorov (1933) / Smirnov (1948) two-sample
  distance; Wasserstein-1 (earth mover's) distance, e.g. Ramdas, García Trillos & Cuturi,
  "On Wasserstein Two-Sample Testing", Entropy 19(2), 2017.

Conventions shared by every function:

* ``requests`` is a :class:`polars.DataFrame` or :class:`polars.LazyFrame`; only the columns a
  function needs are read (projection pushdown on a scan), and all work is vectorized in
  Polars/NumPy: nothing loops over requests. :func:`fit_lengths` loops over groups, fitting a
  seeded subsample of each (see :func:`servetrace.analysis.fitting.fit_distributions`).
* Integer token counts take few distinct values, so summaries, quantiles, the tail, the
  correlations, drift and windowed failure rates are computed from counts per (group, value)
  or (window, value) cell — one bincount, no sort — wherever that table is small (at most
  :data:`_MAX_CELLS` cells); elsewhere from sorts. Both give the same figures: quantiles and
  counts exactly, sums up to the rounding of their order.
* ``by`` is a column name or a list of them; result frames start with the ``by`` columns,
  sorted by them. A null key is a group of its own.
* Nulls: a row whose analysed token field is null is excluded from that field's statistics and
  counted (``nulls`` in :func:`length_summary`, :func:`correlation` and :func:`fit_lengths`);
  the canonical schema makes the token columns non-null, so this matters only for frames built
  by hand. A null ``failed`` means "unknown" (sources without the column, e.g. Azure): it is
  excluded from the failure rate, and a missing ``failed`` column counts as all null.
* Token counts of zero are kept by every statistic except the fits and the tail, which are
  defined on positive values (BurstGPT's failed requests have zero response tokens).
* Errors raise :class:`ValueError` naming the function and the column or parameter at fault.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from servetrace.analysis.fitting import FIT_SCHEMA, fit_distributions
from servetrace.analysis.frames import columns as _keys
from servetrace.analysis.frames import lazy as as_lazy
from servetrace.analysis.frames import warn_empty

FIELDS = ("input_tokens", "output_tokens")
FIT_FAMILIES = ("lognormal", "gamma", "weibull", "pareto", "lognormal_mixture2")
"""All five families of :func:`fit_lengths`; ``pareto`` is the tail fit (see there)."""
WHOLE_FAMILIES = ("lognormal", "gamma", "weibull", "lognormal_mixture2")
"""The whole-distribution families, ranked against each other (the best fit of :func:`summary`)."""
TAIL_Q = 0.9
"""Default threshold quantile of the Pareto tail: the 90th percentile of the positive values."""

Frame = pl.DataFrame | pl.LazyFrame
By = str | Sequence[str] | None


# --------------------------------------------------------------------------- helpers


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


# --------------------------------------------------------------------------- summaries


def length_summary(requests: Frame, by: By = None,
                   fields: Sequence[str] = FIELDS) -> pl.DataFrame:
    """Mean, median, p90, p99 and max of each token field, per group.

    Quantiles interpolate linearly between order statistics (NumPy's default, Hyndman & Fan
    1996 definition 7); the median of an even count is the mean of the two middle values, so
    the Azure 2023 conversation trace gives Splitwise's published medians (1020 input and 129
    output tokens; Patel et al., ISCA 2024).

    Returns ``[by..., field, n, mean, median, p90, p99, max, zeros, nulls]``: one row per group
    and field; ``n`` non-null values, ``zeros`` values equal to 0 (BurstGPT's failed responses
    have 0 output tokens), ``nulls`` rows excluded because the field is null.
    """
    fn = "length_summary"
    keys = _keys(by)
    fields = list(fields)
    if not fields:
        raise ValueError(f"{fn}: fields is empty")
    frame = _read(requests, keys, fields, fn)
    stats = ("n", "mean", "median", "p90", "p99", "max", "zeros", "nulls")
    exprs = []
    for i, field in enumerate(fields):  # one pass over the groups for every field
        x = pl.col(field).cast(pl.Float64)
        exprs += [e.alias(f"{i}_{stat}") for e, stat in zip((
            x.count().cast(pl.Int64), x.mean(), x.median(), x.quantile(0.9, "linear"),
            x.quantile(0.99, "linear"), x.max(), (x == 0).sum().cast(pl.Int64),
            x.null_count().cast(pl.Int64)), stats, strict=True)]
    counted = _length_stats(frame, keys, fields)
    if counted is not None:
        return counted
    wide = _aggregate(frame, keys, exprs)
    out = pl.concat([wide.select(*keys, pl.lit(field).alias("field"),
                                 *(pl.col(f"{i}_{stat}").alias(stat) for stat in stats))
                     for i, field in enumerate(fields)])
    return out.sort(keys, nulls_last=True, maintain_order=True) if keys else out


def _length_stats(frame: pl.DataFrame, keys: list[str], fields: list[str]
                  ) -> pl.DataFrame | None:
    """:func:`length_summary` of integer fields by counting (see :class:`_Runs`): the same
    figures as the Polars aggregation, exactly (sums of integers below 2^53 are exact in
    Float64 whatever their order); None where it does not apply."""
    if not all(frame.schema[field].is_integer() for field in fields):
        return None
    gid, ids = _dense_groups(frame, keys)
    n_groups = ids.height
    parts = []
    for i, field in enumerate(fields):
        column = frame[field]
        values = _integer_values(column)
        if values is None or (values.size and max(-int(values.min()), int(values.max()))
                              * values.size >= 2**53):
            return None
        g, nulls = gid, np.zeros(n_groups, dtype=np.int64)
        if column.null_count():
            known = column.is_not_null().to_numpy()
            g = None if gid is None else gid[known]
            nulls = (np.array([column.null_count()]) if gid is None
                     else np.bincount(gid[~known], minlength=n_groups))
        runs = _runs(values, g, n_groups)
        if runs is None:
            return None
        n = runs.n
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = runs.group_sum((runs.value * runs.count).astype(np.float64)) / n
        top = runs.order_stat(n - 1).astype(np.float64) if len(runs.value) else np.zeros(
            n_groups)
        parts.append(pl.DataFrame({
            "_g": np.arange(n_groups), "_f": np.full(n_groups, i),
            "field": [field] * n_groups, "n": n, "mean": mean,
            "median": runs.quantile(0.5, nulls=nulls),
            "p90": runs.quantile(0.9, nulls=nulls), "p99": runs.quantile(0.99, nulls=nulls),
            "max": np.where(n > 0, top, np.nan),
            "zeros": runs.group_sum(np.where(runs.value == 0, runs.count, 0)).astype(np.int64),
            "nulls": nulls.astype(np.int64)}).fill_nan(None))
    out = pl.concat(parts)
    stats = ("n", "mean", "median", "p90", "p99", "max", "zeros", "nulls")
    if not keys:
        return out.select("field", *stats)
    return (out.join(ids, on="_g", how="left").sort([*keys, "_f"], nulls_last=True)
            .select(*keys, "field", *stats))


def ecdf(requests: Frame, field: str = "input_tokens", by: By = None,
         points: int = 200) -> pl.DataFrame:
    """The empirical CDF F_n(v) = #{x_i ≤ v} / n of ``field`` per group, downsampled.

    Distinct values are kept so that each of the ``points`` equal-probability bins
    ((j−1)/points, j/points] keeps its last value: at most ``points`` rows per group, always
    including the maximum (F = 1), and F is exact (not interpolated) at every kept value.
    Null values are excluded (n counts the non-null ones).

    Returns ``[by..., value, cdf]`` sorted by group and value.
    """
    fn = "ecdf"
    keys = _keys(by)
    if isinstance(points, bool) or not isinstance(points, int) or points < 1:
        raise ValueError(f"{fn}: points must be a positive integer, got {points!r}")
    frame = _read(requests, keys, [field], fn)
    frame, ids = _group_ids(frame.drop_nulls(field), keys)  # integer groups: cheap to sort
    counted = _value_counts(frame, field).lazy().with_columns(
        pl.col("_c").cum_sum().over("_g").alias("cum"),
        pl.col("_c").sum().over("_g").alias("total"))
    # bin j = ceil(cum · points / total), in integers so that no rounding moves a value
    binned = counted.with_columns(
        ((pl.col("cum") * points + pl.col("total") - 1) // pl.col("total")).alias("bin"))
    kept = binned.filter(pl.col("cum") == pl.col("cum").max().over(["_g", "bin"]))
    return (kept.join(ids.lazy(), on="_g", how="left", maintain_order="left")
            .select(*keys, pl.col(field).cast(pl.Float64).alias("value"),
                    (pl.col("cum") / pl.col("total")).alias("cdf"))
            .sort([*keys, "value"], nulls_last=True).collect())


# --------------------------------------------------------------------------- fits


def tail_index(requests: Frame, field: str = "input_tokens", by: By = None,
               q: float = TAIL_Q) -> pl.DataFrame:
    """Pareto tail above the ``q`` quantile: Hill's estimator of the tail index α.

    On the positive values of each group, the threshold u is their ``q`` quantile taken as an
    observed value (lower order statistic), and the k values x_i > u are the tail. Hill (1975):

        α̂ = k / Σ_{x_i > u} ln(x_i / u),    se(α̂) ≈ α̂ / √k,

    the maximum-likelihood α of a Pareto (type I) law with scale u fitted to the exceedances,
    P(X > x | X > u) = (x / u)^(−α). ``ks`` is the Kolmogorov–Smirnov distance between the
    exceedances and that law; ``loglik`` = k ln α̂ + k α̂ ln u − (α̂ + 1) Σ ln x_i is the
    log-likelihood of the exceedances alone (conditional on the tail, so not comparable with
    a whole-distribution fit). ``zipf_exponent`` = 1/α̂ is the exponent of the equivalent Zipf
    rank-size law x_(r) ∝ r^(−1/α) (Newman 2005), the form in which BurstGPT (Wang et al.)
    describes request lengths. Token counts are discrete: ties at u fall below the threshold.

    Returns ``[by..., field, n, q, threshold, k, alpha, alpha_se, zipf_exponent, ks, loglik]``;
    ``n`` positive values, α and the rest null where k = 0.
    """
    fn = "tail_index"
    keys = _keys(by)
    if not (0 < q < 1):
        raise ValueError(f"{fn}: q must be in (0, 1), got {q!r}")
    frame = _read(requests, keys, [field], fn)
    counted = _tail_counted(frame, field, keys, q)
    if counted is not None:
        heads, tails = counted
        return _tail_frame(heads, tails, keys, field, q)
    x = pl.col("x")
    base = frame.lazy().select(*keys, pl.col(field).cast(pl.Float64).alias("x"))
    ok = x.is_finite() & (x > 0)
    heads = _aggregate(base, keys, [ok.sum().cast(pl.Int64).alias("n"),
                                    x.filter(ok).quantile(q, "lower").alias("u")])
    positive = base.filter(ok)
    positive = (positive.join(heads.lazy(), on=keys, nulls_equal=True) if keys
                else positive.with_columns(pl.lit(heads["u"][0], pl.Float64).alias("u")))
    group = [*keys, "u"]  # u is constant within a group
    tail = (positive.filter(x > pl.col("u")).sort([*keys, "x"], nulls_last=True)
            .with_columns(pl.len().over(group).cast(pl.Int64).alias("k"),
                          (x / pl.col("u")).log().sum().over(group).alias("s"),
                          pl.int_range(1, pl.len() + 1).over(group).alias("i"))
            .with_columns((pl.col("k") / pl.col("s")).alias("alpha"))
            .with_columns((1 - (x / pl.col("u")) ** (-pl.col("alpha"))).alias("F")))
    tails = _aggregate(tail, keys, [
        pl.col("k").first(),
        pl.col("alpha").first(),
        pl.max_horizontal((pl.col("i") / pl.col("k") - pl.col("F")).max(),
                          (pl.col("F") - (pl.col("i") - 1) / pl.col("k")).max()).alias("ks"),
        (pl.col("k").first() * pl.col("alpha").first().log()
         + pl.col("k").first() * pl.col("alpha").first() * pl.col("u").first().log()
         - (pl.col("alpha").first() + 1) * x.log().sum()).alias("loglik"),
    ])
    return _tail_frame(heads, tails, keys, field, q)


def _tail_frame(heads: pl.DataFrame, tails: pl.DataFrame, keys: list[str], field: str,
                q: float) -> pl.DataFrame:
    """The :func:`tail_index` result from ``heads`` ``[keys..., n, u]`` (every group) and
    ``tails`` ``[keys..., k, alpha, ks, loglik]`` (groups with a tail)."""
    out = _join(heads, tails, keys)
    return out.select(
        *keys, pl.lit(field).alias("field"), "n", pl.lit(float(q)).alias("q"),
        pl.col("u").alias("threshold"), pl.col("k").fill_null(0), "alpha",
        (pl.col("alpha") / pl.col("k").sqrt()).alias("alpha_se"),
        (1 / pl.col("alpha")).alias("zipf_exponent"), "ks", "loglik")


def _tail_counted(frame: pl.DataFrame, field: str, keys: list[str], q: float
                  ) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """:func:`tail_index`'s per-group threshold and tail figures of an integer field from its
    value runs (see :class:`_Runs`), or None where counting does not apply. A run of c equal
    exceedances v ends at rank C within the tail: it adds c·ln(v/u) to Σ ln(x/u), and its
    largest KS gaps are C/k − F(v) and F(v) − (C − c)/k, the values at its last and first
    rows."""
    gid, ids = _dense_groups(frame, keys)
    values = _integer_values(frame[field])
    if values is None:
        return None
    known = frame[field].is_not_null().to_numpy() if frame[field].null_count() else None
    if gid is not None and known is not None:
        gid = gid[known]
    positive = values > 0
    if not positive.all():
        values = values[positive]
        gid = None if gid is None else gid[positive]
    runs = _runs(values, gid, ids.height)
    if runs is None:
        return None
    u = runs.quantile(q, "lower")
    heads = pl.DataFrame({"_g": np.arange(ids.height), "n": runs.n, "u": u}).fill_nan(None)
    tail = runs.value > u[runs.group]  # NaN u (no values) has no tail
    group, value = runs.group[tail], runs.value[tail].astype(np.float64)
    count, u_t = runs.count[tail], u[runs.group[tail]]
    k = np.bincount(group, weights=count, minlength=ids.height).astype(np.int64)
    total = np.bincount(group, weights=count * np.log(value / u_t), minlength=ids.height)
    log_x = np.bincount(group, weights=count * np.log(value), minlength=ids.height)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = k / total
        end = np.cumsum(count) - (np.cumsum(k) - k)[group]  # rank of each run's last row
        f = 1 - (value / u_t) ** (-alpha[group])
        gap = np.maximum(end / k[group] - f, f - (end - count) / k[group])
        loglik = k * np.log(alpha) + k * alpha * np.log(u) - (alpha + 1) * log_x
    ks = np.full(ids.height, -np.inf)
    np.maximum.at(ks, group, gap)
    has = k > 0
    tails = pl.DataFrame({"_g": np.flatnonzero(has), "k": k[has], "alpha": alpha[has],
                          "ks": ks[has], "loglik": loglik[has]})
    if not keys:
        return heads.drop("_g"), tails.drop("_g")
    heads = (heads.join(ids, on="_g", how="left").sort(keys, nulls_last=True)
             .select(*keys, "n", "u"))
    return heads, tails.join(ids, on="_g", how="left").select(*keys, "k", "alpha", "ks",
                                                              "loglik")


def fit_lengths(requests: Frame, field: str = "input_tokens", by: By = None,
                families: Sequence[str] = FIT_FAMILIES, *, tail_q: float = TAIL_Q,
                min_n: int = 100, max_samples: int = 200_000, seed: int = 0) -> pl.DataFrame:
    """Maximum-likelihood fits of ``field`` per group, ranked by AIC and BIC, with KS.

    Whole-distribution families (``lognormal``, ``gamma``, ``weibull``, ``lognormal_mixture2``
    and ``exponential``) are fitted by :func:`servetrace.analysis.fitting.fit_distributions` on the
    positive values (zeros — BurstGPT's failed responses — are dropped and counted in
    ``n_dropped``; above ``max_samples`` values a subsample seeded by ``seed`` is fitted), and
    ranked against each other: ``rank_aic``/``rank_bic`` = 1 is the best. The mixture's EM
    dominates the cost and is linear in the sample: a smaller ``max_samples`` (at 50,000 values
    the standard error of a lognormal's μ is still σ/√n ≈ 0.005 σ) makes large groups cheaper.

    ``pareto`` is the tail: a Pareto (type I) law with scale ``threshold`` (the ``tail_q``
    quantile) and Hill's α fitted to the values above it (:func:`tail_index`). Its likelihood
    is conditional on the tail, so it is not ranked (``rank_aic``/``rank_bic`` null): its
    ``n`` is the number of exceedances and ``n_dropped`` the other values; ``params`` is
    ``{"alpha", "xm"}`` as :func:`servetrace.analysis.fitting.distribution` reads it (the law of
    X given X > threshold). Tail index details (standard error, Zipf exponent) are in
    :func:`tail_index`.

    Groups with fewer than ``min_n`` positive values are not fitted (absent from the result):
    a trace with many small tenants would otherwise spend its time fitting noise.

    Returns ``[by..., field, <fit_distributions columns>, scope, threshold, nulls]``:
    family, params (JSON), n, n_dropped, n_params, loglik, aic, bic, ks, rank_aic, rank_bic;
    ``scope`` is ``"all"`` or ``"tail"``, ``threshold`` null for whole fits, ``nulls`` the
    group's rows with a null ``field``. Per group: ranked fits first (by rank_aic), then the
    tail.
    """
    fn = "fit_lengths"
    keys = _keys(by)
    families = list(families)
    if not families:
        raise ValueError(f"{fn}: families is empty")
    if isinstance(min_n, bool) or not isinstance(min_n, int) or min_n < 2:
        raise ValueError(f"{fn}: min_n must be an integer ≥ 2, got {min_n!r}")
    _no_overlap(keys, [field], fn)
    whole = [f for f in families if f != "pareto"]
    fit_distributions([], whole)  # raises on an unknown family before any work
    frame = _collect(requests, [*keys, field], fn)
    _numeric(frame, field, fn)
    x = pl.col(field)
    counts = _aggregate(frame, keys, [
        (x.cast(pl.Float64) > 0).sum().cast(pl.Int64).alias("_positive"),
        x.null_count().cast(pl.Int64).alias("nulls")])
    fitted = counts.filter(pl.col("_positive") >= min_n).drop("_positive")

    columns = [*keys, "field", *FIT_SCHEMA, "scope", "threshold", "nulls"]
    parts: list[pl.DataFrame] = []
    if whole and fitted.height:
        frame = frame.join(fitted.select(keys), on=keys, nulls_equal=True) if keys else frame
        groups = (frame.partition_by(keys, maintain_order=True, include_key=True)
                  if keys else [frame])
        for group in groups:  # one fit per group (a subsample of it), never per request
            fits = fit_distributions(group[field], whole, max_samples=max_samples, seed=seed)
            head = group.select(keys).head(1)
            parts.append(head.join(fits, how="cross") if keys else fits)
        whole_fits = pl.concat(parts).with_columns(pl.lit("all").alias("scope"),
                                                   pl.lit(None, pl.Float64).alias("threshold"))
        parts = [_join(whole_fits, fitted, keys)]
    if "pareto" in families and fitted.height:
        tails = tail_index(frame, field, keys, q=tail_q).filter(pl.col("k") > 0)
        tails = _join(fitted, tails, keys).filter(pl.col("k") > 0)
        parts.append(tails.select(
            *keys, "nulls",
            pl.lit("pareto").alias("family"),
            pl.struct(pl.col("alpha"), pl.col("threshold").alias("xm"))
            .struct.json_encode().alias("params"),
            pl.col("k").alias("n"), (pl.col("n") - pl.col("k")).alias("n_dropped"),
            pl.lit(2, pl.Int64).alias("n_params"), "loglik",
            (4 - 2 * pl.col("loglik")).alias("aic"),
            (2 * pl.col("k").cast(pl.Float64).log() - 2 * pl.col("loglik")).alias("bic"),
            "ks", pl.lit(None, pl.Int64).alias("rank_aic"),
            pl.lit(None, pl.Int64).alias("rank_bic"),
            pl.lit("tail").alias("scope"), "threshold"))
    if not parts:
        schema = {**frame.select(keys).schema, "field": pl.String, **FIT_SCHEMA,
                  "scope": pl.String, "threshold": pl.Float64, "nulls": pl.Int64}
        return pl.DataFrame(schema=schema)
    out = pl.concat([p.with_columns(pl.lit(field).alias("field")).select(columns)
                     for p in parts], how="vertical_relaxed")
    return out.sort(keys, nulls_last=True, maintain_order=True) if keys else out


# --------------------------------------------------------------------------- joint


def correlation(requests: Frame, by: By = None) -> pl.DataFrame:
    """Correlation of input and output tokens per group.

    * ``pearson``: r = cov(x, y) / (σ_x σ_y) (Pearson 1895);
    * ``spearman``: Pearson's r of the ranks, ties given their average rank (Spearman 1904);
      for a bivariate normal with correlation ρ — or any monotone transform of one, such as
      lognormal marginals — it equals (6/π) arcsin(ρ/2) (Kruskal 1958);
    * ``pearson_log``: Pearson's r of ln(1 + x) and ln(1 + y), the scale on which token lengths
      are roughly normal; the +1 keeps zero-token (failed) responses defined.

    Rows with a null in either column are excluded and counted (``nulls``). A correlation is
    NaN when a column is constant within the group (or n < 2).

    Returns ``[by..., n, pearson, spearman, pearson_log, nulls]``.
    """
    fn = "correlation"
    keys = _keys(by)
    frame = _read(requests, keys, FIELDS, fn)
    counted = _correlation_counted(frame, keys)
    if counted is not None:
        return counted
    both = pl.col("input_tokens").is_not_null() & pl.col("output_tokens").is_not_null()
    x = pl.col("input_tokens").cast(pl.Float64).filter(both)
    y = pl.col("output_tokens").cast(pl.Float64).filter(both)
    return _aggregate(frame, keys, [
        both.sum().cast(pl.Int64).alias("n"),
        pl.corr(x, y).alias("pearson"),
        pl.corr(pl.col("input_tokens").filter(both), pl.col("output_tokens").filter(both),
                method="spearman").alias("spearman"),
        pl.corr(x.log1p(), y.log1p()).alias("pearson_log"),
        (~both).sum().cast(pl.Int64).alias("nulls"),
    ])


_CHUNK = 1 << 20  # rows per block of the pairwise sums (temporaries stay in cache)


def _correlation_counted(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame | None:
    """:func:`correlation` of non-negative integer token counts by counting; None where it
    does not apply (a column not integer or negative, or a group × value table above
    :data:`_MAX_CELLS`).

    Each coefficient is Pearson's r of a transform a = f(x), b = h(y) of the two columns:
    the identity (pearson), the average rank within the group (spearman: values below v
    plus (c_v + 1)/2 for the c_v ties at v) and ln(1 + ·) (pearson_log). As x and y take few
    distinct values, f and h are tables over (group, value) built from the counts c_v, and
    so are the means ā = Σ_v c_v f(v) / n and the sums of squares Σ_v c_v (f(v) − ā)². Only
    the cross term Σ_i (a_i − ā)(b_i − b̄) needs the rows: two table look-ups per row, in
    blocks. r = S_ab / √(S_aa S_bb) (two-pass centred sums, as a direct computation)."""
    columns = [frame[field] for field in FIELDS]
    if not all(c.dtype.is_integer() for c in columns):
        return None
    gid, ids = _dense_groups(frame, keys)
    n_groups = ids.height
    both = (columns[0].is_not_null() & columns[1].is_not_null()).to_numpy()
    every = bool(both.all())
    if not every:
        nulls = (np.array([int((~both).sum())]) if gid is None
                 else np.bincount(gid[~both], minlength=n_groups))
        gid = None if gid is None else gid[both]
        columns = [c.filter(pl.Series(both)) for c in columns]
    else:
        nulls = np.zeros(n_groups, dtype=np.int64)
    values = [c.to_numpy().astype(np.int64, copy=False) for c in columns]
    if values[0].size and min(int(v.min()) for v in values) < 0:
        return None
    widths = [int(v.max()) + 1 if v.size else 1 for v in values]
    if max(widths) * n_groups > _MAX_CELLS // 4:  # a few float tables of this size at once
        return None
    cells = [v if gid is None else gid * width + v
             for v, width in zip(values, widths, strict=True)]
    counts = [np.bincount(cell, minlength=n_groups * width).reshape(n_groups, width)
              for cell, width in zip(cells, widths, strict=True)]
    n = counts[0].sum(1)

    def centred(c: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The table f − ā of one column (flat, indexed by cell) and its Σ c (f − ā)²."""
        grid = np.arange(c.shape[1], dtype=np.float64)
        if name == "spearman":
            table = np.cumsum(c, axis=1) - c + (c + 1) / 2.0
        else:
            table = np.broadcast_to(grid if name == "pearson" else np.log1p(grid), c.shape)
        with np.errstate(invalid="ignore", divide="ignore"):
            d = table - ((c * table).sum(1) / n)[:, None]
        return d.ravel(), (c * d * d).sum(1)

    names = ("pearson", "spearman", "pearson_log")
    tables = {name: (centred(counts[0], name), centred(counts[1], name)) for name in names}
    sab = {name: np.zeros(n_groups) for name in names}
    total = len(values[0])
    for lo in range(0, total, _CHUNK):  # blocks of rows, not a loop over rows
        cx, cy = cells[0][lo:lo + _CHUNK], cells[1][lo:lo + _CHUNK]
        for name, ((da, _), (db, _)) in tables.items():
            part = da[cx] * db[cy]
            if gid is None:
                sab[name][0] += part.sum()
            else:
                sab[name] += np.bincount(gid[lo:lo + _CHUNK], weights=part, minlength=n_groups)
    out: dict[str, np.ndarray] = {}
    for name, ((_, saa), (_, sbb)) in tables.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = sab[name] / np.sqrt(saa * sbb)
    result = pl.DataFrame({"_g": np.arange(n_groups), "n": n.astype(np.int64), **out,
                           "nulls": nulls.astype(np.int64)})
    if not keys:
        if total == 0:  # Polars' correlation of no rows is null
            result = result.with_columns(pl.col(list(out)).fill_nan(None))
        return result.drop("_g")
    return (result.join(ids, on="_g", how="left").sort(keys, nulls_last=True)
            .select(*keys, "n", *out, "nulls"))


def _edges(edges: Sequence[float] | None, top: float, fn: str) -> np.ndarray:
    if edges is None:  # 0, 1, 2, 4, ..., 2^K with 2^K > the largest input
        k = math.floor(math.log2(top)) + 1 if top >= 1 else 0
        return np.array([0.0, *(2.0 ** np.arange(k + 1))])
    array = np.asarray(list(edges), dtype=np.float64)
    if array.ndim != 1 or len(array) < 1 or not np.isfinite(array).all():
        raise ValueError(f"{fn}: edges must be a non-empty sequence of finite numbers")
    if (np.diff(array) <= 0).any():
        raise ValueError(f"{fn}: edges must be strictly increasing, got {list(edges)}")
    return array


def output_by_input(requests: Frame, by: By = None,
                    edges: Sequence[float] | None = None) -> pl.DataFrame:
    """Output-token quantiles conditional on the input length, by input bucket.

    Bucket i holds the requests with edges[i] ≤ input_tokens < edges[i+1]; inputs at or above
    the last edge form an open bucket (``input_hi`` null) and inputs below the first edge are
    excluded. Default edges: 0, 1, 2, 4, …, 2^K with 2^K above the largest input, so every
    request falls in a closed bucket. Only non-empty buckets are returned. Quantiles
    interpolate linearly; rows with a null in either column are excluded.

    Returns ``[by..., input_lo, input_hi, n, output_p10, output_p50, output_p90,
    output_mean]``, sorted by group and bucket.
    """
    fn = "output_by_input"
    keys = _keys(by)
    frame = _read(requests, keys, FIELDS, fn)
    pairs = frame.drop_nulls(list(FIELDS))
    top = pairs["input_tokens"].max()
    cuts = _edges(edges, float(top) if top is not None else 0.0, fn)
    his = [*cuts[1:].tolist(), None]
    buckets = pl.DataFrame({"_b": np.arange(1, len(cuts) + 1, dtype=np.int64),
                            "input_lo": cuts, "input_hi": his},
                           schema={"_b": pl.Int64, "input_lo": pl.Float64,
                                   "input_hi": pl.Float64})
    counted = _output_counted(pairs, keys, cuts)
    if counted is not None:
        stats = counted.lazy()
        return (stats.join(buckets.lazy(), on="_b").sort([*keys, "_b"], nulls_last=True)
                .select(*keys, "input_lo", "input_hi", "n", "output_p10", "output_p50",
                        "output_p90", "output_mean").collect())
    out = pl.col("output_tokens").cast(pl.Float64)
    located = pairs.lazy().with_columns(
        pl.lit(pl.Series(cuts)).search_sorted(pl.col("input_tokens").cast(pl.Float64),
                                              side="right").cast(pl.Int64).alias("_b"))
    stats = (located.filter(pl.col("_b") > 0).group_by([*keys, "_b"]).agg(
        pl.len().cast(pl.Int64).alias("n"),
        out.quantile(0.1, "linear").alias("output_p10"),
        out.quantile(0.5, "linear").alias("output_p50"),
        out.quantile(0.9, "linear").alias("output_p90"),
        out.mean().alias("output_mean")))
    return (stats.join(buckets.lazy(), on="_b").sort([*keys, "_b"], nulls_last=True)
            .select(*keys, "input_lo", "input_hi", "n", "output_p10", "output_p50",
                    "output_p90", "output_mean").collect())


def _output_counted(pairs: pl.DataFrame, keys: list[str], cuts: np.ndarray
                    ) -> pl.DataFrame | None:
    """:func:`output_by_input`'s per-bucket figures ``[keys..., _b, n, output_p10, output_p50,
    output_p90, output_mean]`` (non-empty buckets ``_b`` ≥ 1) from the value runs of the
    output tokens in each (group, input bucket) (see :class:`_Runs`); None where counting
    does not apply. ``pairs`` has no nulls."""
    if not pairs["input_tokens"].dtype.is_integer():
        return None
    outputs = _integer_values(pairs["output_tokens"])
    if outputs is None or (outputs.size and max(-int(outputs.min()), int(outputs.max()))
                           * outputs.size >= 2**53):
        return None
    gid, ids = _dense_groups(pairs, keys)
    inputs = _integer_values(pairs["input_tokens"])
    if inputs is None:
        return None
    width = len(cuts) + 1  # bucket 0: below the first edge
    lo, hi = (int(inputs.min()), int(inputs.max())) if inputs.size else (0, 0)
    if hi - lo < max(1 << 16, inputs.size // 4):  # look the bucket of each value up
        table = np.searchsorted(cuts, np.arange(lo, hi + 1, dtype=np.float64), side="right")
        bucket = table[inputs - lo]
    else:
        bucket = np.searchsorted(cuts, inputs.astype(np.float64), side="right")
    runs = _runs(outputs, bucket if gid is None else gid * width + bucket, ids.height * width)
    if runs is None:
        return None
    n = runs.n
    cell = np.flatnonzero((n > 0) & (np.arange(len(n)) % width > 0))
    mean = runs.group_sum((runs.value * runs.count).astype(np.float64))[cell] / n[cell]
    stats = pl.DataFrame({
        "_g": cell // width, "_b": cell % width, "n": n[cell],
        "output_p10": runs.quantile(0.1)[cell], "output_p50": runs.quantile(0.5)[cell],
        "output_p90": runs.quantile(0.9)[cell], "output_mean": mean},
        schema_overrides={"_g": pl.Int64, "_b": pl.Int64, "n": pl.Int64})
    if not keys:
        return stats.drop("_g")
    return stats.join(ids, on="_g", how="left").drop("_g")


# --------------------------------------------------------------------------- time


def drift(requests: Frame, field: str = "input_tokens", window_s: float = 3600.0,
          by: By = None) -> pl.DataFrame:
    """Distance between the distributions of ``field`` in consecutive time windows.

    Windows are [j·w, (j+1)·w) of ``arrival_s`` (w = ``window_s``, aligned to the trace's zero);
    each non-empty window is compared with the next non-empty one of its group (a gap shows as
    ``next_window_start_s`` − ``window_start_s`` > w). With F and G the two empirical CDFs on
    the sorted union of their values v_1 < … < v_m:

        wasserstein = W₁ = ∫ |F − G| dv = Σ_j |F(v_j) − G(v_j)| (v_{j+1} − v_j),
        ks          = sup_v |F(v) − G(v)|  (two-sample Kolmogorov–Smirnov statistic),

    the same values as ``scipy.stats.wasserstein_distance`` and ``ks_2samp(...).statistic``,
    computed for all window pairs at once from per-(window, value) counts. W₁ is in tokens
    (the mean shift when one distribution is a translate of the other); KS is in [0, 1].
    BurstGPT (Wang et al.) shows request and response lengths whose distributions shift over
    time; hour (3600 s) and day (86400 s) windows are the natural scales. Null values are
    excluded.

    Returns ``[by..., window_start_s, next_window_start_s, n, n_next, wasserstein, ks]``.
    """
    fn = "drift"
    keys = _keys(by)
    _positive(window_s, "window_s", fn)
    frame = _read(requests, keys, [field], fn, extra=["arrival_s"])
    if keys:
        frame, ids = _group_ids(frame, keys)
    else:
        ids = pl.DataFrame({"_g": [0]}, schema={"_g": pl.Int64})
    column = frame[field]
    known = frame["arrival_s"].is_not_null() & column.is_not_null()
    if column.dtype.is_float():
        known = known & column.is_finite()
    if not known.all():
        frame, column = frame.filter(known), column.filter(known)
    t = frame["arrival_s"].cast(pl.Float64).to_numpy()
    if not np.isfinite(t).all():
        raise ValueError(f"{fn}: arrival_s has non-finite values")
    with np.errstate(over="ignore"):
        scaled = t / window_s
    np.floor(scaled, out=scaled)
    if scaled.size and max(-scaled.min(), scaled.max()) >= 2.0**62:
        raise ValueError(f"{fn}: arrival_s / window_s beyond ±2^62 windows; use a larger "
                         "window_s")
    w = scaled.astype(np.int64)
    del scaled
    values = _integer_values(column)
    v = values if values is not None else column.cast(pl.Float64).to_numpy()
    group = frame["_g"].cast(pl.Int64).to_numpy() if keys else None
    g, w_first, w_next, n, n_next, wasserstein, ks = _window_distances(group, w, v)
    distances = pl.DataFrame({
        "_g": g, "window_start_s": w_first * window_s, "next_window_start_s": w_next * window_s,
        "n": n, "n_next": n_next, "wasserstein": wasserstein, "ks": ks,
    }, schema={"_g": ids.schema["_g"], "window_start_s": pl.Float64,
               "next_window_start_s": pl.Float64, "n": pl.Int64, "n_next": pl.Int64,
               "wasserstein": pl.Float64, "ks": pl.Float64})
    return (distances.join(ids, on="_g", how="left", maintain_order="left")
            .select(*keys, *distances.columns[1:])
            .sort([*keys, "window_start_s"], nulls_last=True))


def _window_distances(g: np.ndarray | None, w: np.ndarray, v: np.ndarray
                      ) -> tuple[np.ndarray, ...]:
    """W₁ and KS between consecutive non-empty windows, for all groups at once.

    One entry per request: ``g`` group id (None: one group), ``w`` window index (overwritten),
    ``v`` value (int64 or float64, finite). Each request gets one int64 key ordered by
    (group, window, value rank). With few cells, the full table of counts gives every
    window's CDF on the common grid of values (:func:`_dense_distances`). Otherwise counting
    the keys (a bincount when the table fits, else one sort and a run-length encoding) gives
    the counts per (window, value), in order; pair j compares window j with window j + 1 of
    the same group: window j's counts (side A) and window j + 1's (side B) are two sorted
    runs keyed (j, value), merged in linear time by a stable sort; cumulative counts within
    a pair give F and G at every point of the union of their values.

    Returns (group, first window index, next window index, n, n_next, W₁, KS) arrays, one entry
    per pair, ordered by group then window.
    """
    empty = np.zeros(0, dtype=np.int64)
    nothing = (empty, empty, empty, empty, empty, empty.astype(float), empty.astype(float))
    if w.size == 0:
        return nothing
    g_max = 0 if g is None else int(g.max())
    w_min = int(w.min())
    n_w = int(w.max()) - w_min + 1
    v_min, v_max = v.min(), v.max()
    integral = v.dtype.kind in "iu" or bool(np.all(v == np.floor(v)))
    values: np.ndarray | None = None  # distinct values, where ranks are not offsets
    if integral and v_max - v_min < _MAX_CELLS:
        # ranks among the distinct values by counting over the value range: the (window,
        # rank) table then holds no empty value columns
        base = 0 if v.dtype.kind in "iu" and 0 <= v_min <= v_max // 2 else v_min
        offset = v if base == 0 else (v - base).astype(np.int64, copy=False)
        present = np.bincount(offset) > 0
        values = np.flatnonzero(present) + float(base)
        rank, n_r = (np.cumsum(present) - 1)[offset], len(values)
        del offset, present
    elif integral and v_max - v_min < 2.0**40:
        rank, n_r = (v - v_min).astype(np.int64), int(v_max - v_min) + 1
    else:
        values, rank = np.unique(v.astype(np.float64), return_inverse=True)
        n_r = len(values)
    window = w  # by group, then time (in place: w is not used again)
    window -= w_min
    if g is not None:
        window += g * n_w
    window_ids: np.ndarray | None = None  # distinct windows, where ids are not offsets
    if (g_max + 1) * n_w * n_r >= 2**62:  # keys would overflow: dense numbering
        if values is None:
            values, rank = np.unique(v.astype(np.float64), return_inverse=True)
            n_r = len(values)
        if (g_max + 1) * n_w * n_r >= 2**62:
            window_ids, window = np.unique(window, return_inverse=True)
    window *= n_r
    window += rank
    key = window
    del window, rank
    cells = (g_max + 1) * n_w * n_r if window_ids is None else len(window_ids) * n_r
    if window_ids is None and cells <= min(_MAX_CELLS // 4, max(1 << 22, key.size)):
        # few cells: CDFs of every window on the common grid of values, pairs at once
        table = np.bincount(key, minlength=cells).reshape(-1, n_r)
        del key
        grid = values if values is not None else np.arange(n_r) + float(v_min)
        return _dense_distances(table, grid, n_w, w_min) or nothing
    if cells <= min(_MAX_CELLS, max(_MAX_CELLS // 4, 8 * key.size)):
        # counting, not sorting: the non-zero cells of a dense table, in key order
        table = np.bincount(key, minlength=cells)
        keys = np.flatnonzero(table)
        counts = table[keys]
        del table
    else:
        key.sort()
        first = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
        keys, counts = key[first], np.diff(np.append(first, key.size))
    del key

    key_window = keys // n_r
    key_rank = keys - key_window * n_r
    window_first = np.flatnonzero(np.r_[True, key_window[1:] != key_window[:-1]])
    window_code = key_window[window_first]
    if window_ids is not None:
        window_code = window_ids[window_code]
    window_n = np.add.reduceat(counts, window_first)
    window_g, window_w = window_code // n_w, window_code % n_w + w_min
    has_next = np.r_[window_g[1:] == window_g[:-1], False]
    if not has_next.any():
        return nothing
    index = np.repeat(np.arange(len(window_first)), np.diff(np.r_[window_first, len(keys)]))
    side_a = has_next[index]
    side_b = np.r_[False, has_next[:-1]][index]
    n_a = int(side_a.sum())
    both = np.concatenate([index[side_a] * n_r + key_rank[side_a],
                           (index[side_b] - 1) * n_r + key_rank[side_b]])
    # merge the two sorted runs: a stable sort (timsort) finds them and merges them in linear
    # time; equal keys keep A first
    order = np.argsort(both, kind="stable")
    both = both[order]
    pair = both // n_r
    rank_m = both - pair * n_r
    del both
    step_counts = np.concatenate([counts[side_a], counts[side_b]])[order]
    cum_a = np.cumsum(np.where(order < n_a, step_counts, 0))
    cum_b = np.cumsum(step_counts)
    cum_b -= cum_a
    del order, step_counts
    # counts before pair j: the A sides of earlier pairs hold n of their first window, the B
    # sides n of their second
    first_n = np.where(has_next, window_n, 0)
    second_n = np.where(has_next, np.r_[window_n[1:], 0], 0)
    before_a = np.cumsum(first_n) - first_n
    before_b = np.cumsum(second_n) - second_n
    gap = np.abs((cum_a - before_a[pair]) / window_n[pair]
                 - (cum_b - before_b[pair]) / window_n[pair + 1])
    del cum_a, cum_b
    value = rank_m + float(v_min) if values is None else values[rank_m]
    same_pair = np.r_[pair[1:] == pair[:-1], False]
    step = np.where(same_pair, np.r_[value[1:], 0.0] - value, 0.0)
    # a value present on both sides appears twice: only its last row has both counts in
    last = ~same_pair | np.r_[rank_m[1:] != rank_m[:-1], True]
    start = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
    pairs = pair[start]
    wasserstein = np.add.reduceat(gap * step, start)
    ks = np.maximum.reduceat(np.where(last, gap, 0.0), start)
    return (window_g[pairs], window_w[pairs], window_w[pairs + 1], window_n[pairs],
            window_n[pairs + 1], wasserstein, ks)


def _dense_distances(table: np.ndarray, grid: np.ndarray, n_w: int, w_min: int
                     ) -> tuple[np.ndarray, ...] | None:
    """:func:`_window_distances` from the full table of counts: row g·n_w + j is window
    w_min + j of group g, column i the count of value ``grid[i]`` (ascending). Each non-empty
    window's empirical CDF on the grid is its cumulative counts over n; between two grid
    points both CDFs are flat, so W₁ = Σ_i |F − G|(grid_i)·(grid_{i+1} − grid_i) and KS is
    the largest |F − G| on the grid: the same values as on the union of the two windows'
    values (W₁ up to the rounding of a longer sum). None when no window has a successor."""
    window_n = table.sum(1)
    code = np.flatnonzero(window_n)
    window_g, window_w, window_n = code // n_w, code % n_w + w_min, window_n[code]
    first = np.flatnonzero(window_g[1:] == window_g[:-1])  # pair j: windows j and j + 1
    if first.size == 0:
        return None
    cdf = np.cumsum(table[code], axis=1) / window_n[:, None]
    gap = np.abs(cdf[first] - cdf[first + 1])
    del cdf
    wasserstein = (gap[:, :-1] * np.diff(grid)).sum(1)
    return (window_g[first], window_w[first], window_w[first + 1], window_n[first],
            window_n[first + 1], wasserstein, gap.max(1))


def failure_rate(requests: Frame, by: By = None,
                 window_s: float | None = None) -> pl.DataFrame:
    """Share of failed requests per group (and per time window when ``window_s`` is given).

    rate = failed / n_known, where ``failed`` counts rows whose ``failed`` column is true and
    ``n_known`` the rows where it is not null. BurstGPT (Wang et al.) marks a failed request by
    a response of zero tokens; its loader sets ``failed`` from that. Sources that do not record
    failures (Azure, Mooncake) leave ``failed`` null or absent: their ``failed`` and ``rate``
    are null, never 0. Windows are [j·w, (j+1)·w) of ``arrival_s``; only non-empty ones appear.

    Returns ``[by..., (window_start_s,) n, failed, rate, n_known]``; ``n`` all rows.
    """
    fn = "failure_rate"
    keys = _keys(by)
    if window_s is not None:
        _positive(window_s, "window_s", fn)
    _no_overlap(keys, ["failed"], fn)
    needed = [*keys, "arrival_s"] if window_s is not None else keys
    frame = _collect(requests, needed, fn, optional=["failed"])
    if "failed" not in frame.columns or frame.schema["failed"] == pl.Null:
        frame = frame.with_columns(pl.lit(None, pl.Boolean).alias("failed"))
    elif frame.schema["failed"] != pl.Boolean:
        raise ValueError(f"{fn}: column 'failed' must be Boolean, not {frame.schema['failed']}")
    if window_s is not None:
        counted = _failures_counted(frame, keys, window_s)
        if counted is not None:
            return counted
    group = list(keys)
    if window_s is not None:
        frame = frame.with_columns(
            ((pl.col("arrival_s") / window_s).floor() * window_s).alias("window_start_s"))
        group.append("window_start_s")
    known = pl.col("failed").is_not_null().sum().cast(pl.Int64)
    return _aggregate(frame, group, [
        pl.len().cast(pl.Int64).alias("n"),
        pl.when(known > 0).then(pl.col("failed").sum().cast(pl.Int64)).alias("failed"),
        pl.when(known > 0).then(pl.col("failed").sum() / known).alias("rate"),
        known.alias("n_known"),
    ])


def _failures_counted(frame: pl.DataFrame, keys: list[str], window_s: float
                      ) -> pl.DataFrame | None:
    """:func:`failure_rate` per window by counting rows per (group, window) cell, or None
    where counting does not apply (arrival_s not all finite, or too many cells)."""
    t = frame["arrival_s"].cast(pl.Float64)
    if t.null_count():
        return None
    t = t.to_numpy()
    if t.size == 0 or not np.isfinite(t).all():
        return None
    with np.errstate(over="ignore"):
        scaled = t / window_s
    start = np.floor(scaled, out=scaled)  # the window start, in windows (Polars' floor)
    w_min, w_max = float(start.min()), float(start.max())
    if not w_max - w_min < _MAX_CELLS:  # also NaN-safe: t / window_s may overflow
        return None
    gid, ids = _dense_groups(frame, keys)
    n_w = int(w_max - w_min) + 1
    if n_w * ids.height > _MAX_CELLS // 4:  # three count tables of this size
        return None
    start -= w_min
    cell = start.astype(np.int64)
    del scaled, start
    if gid is not None:
        cell += gid * n_w
    cells = n_w * ids.height
    n = np.bincount(cell, minlength=cells)
    failed = frame["failed"]
    known = failed.is_not_null().to_numpy()
    n_known = np.bincount(cell[known], minlength=cells) if not known.all() else n
    n_failed = np.bincount(cell[failed.fill_null(False).to_numpy()], minlength=cells)
    present = np.flatnonzero(n)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = n_failed[present] / n_known[present]
    has = n_known[present] > 0
    out = pl.DataFrame({
        "_g": present // n_w,
        "window_start_s": (present % n_w + w_min) * window_s,
        "n": n[present], "failed": pl.Series(n_failed[present]).set(~pl.Series(has), None),
        "rate": pl.Series(rate).set(~pl.Series(has), None), "n_known": n_known[present]},
        schema_overrides={"_g": pl.Int64, "n": pl.Int64, "failed": pl.Int64,
                          "n_known": pl.Int64})
    if not keys:
        return out.drop("_g")
    return (out.join(ids, on="_g", how="left").sort([*keys, "window_start_s"], nulls_last=True)
            .select(*keys, "window_start_s", "n", "failed", "rate", "n_known"))


# --------------------------------------------------------------------------- overview


def summary(requests: Frame, by: By = None, *, families: Sequence[str] = WHOLE_FAMILIES,
            min_n: int = 100, max_samples: int = 200_000, seed: int = 0) -> pl.DataFrame:
    """Key token figures per group, for the CLI and the report.

    Combines :func:`length_summary`, :func:`correlation`, :func:`fit_lengths` (the family ranked
    first by AIC among ``families``, null where the group has fewer than ``min_n`` positive
    values or ``families`` is empty) and :func:`failure_rate`; reads ``requests`` once.
    Fitting dominates the cost (the mixture's EM): about 30–50 ms of CPU per group and field
    for groups of a few thousand requests, several seconds per field for a group of 200,000 or
    more; lower ``max_samples`` for large groups, and with thousands of tenants pass
    ``families=()`` or raise ``min_n``.

    Returns ``[by..., n, input_mean, input_median, input_p99, output_mean, output_median,
    output_p99, spearman, input_best_fit, output_best_fit, failure_rate]``; ``n`` all rows.
    """
    fn = "summary"
    keys = _keys(by)
    _no_overlap(keys, [*FIELDS, "failed"], fn)
    frame = _collect(requests, [*keys, *FIELDS], fn, optional=["failed"])
    warn_empty(frame, keys, as_lazy(requests, fn))
    lengths = length_summary(frame, keys)
    out = failure_rate(frame, keys).select(*keys, "n", pl.col("rate").alias("failure_rate"))
    for field, prefix in zip(FIELDS, ("input", "output"), strict=True):
        figures = lengths.filter(pl.col("field") == field).select(
            *keys, *(pl.col(s).alias(f"{prefix}_{s}") for s in ("mean", "median", "p99")))
        out = _join(out, figures, keys)
    out = _join(out, correlation(frame, keys).select(*keys, "spearman"), keys)
    ranked = [f for f in families if f != "pareto"]
    for field, prefix in zip(FIELDS, ("input", "output"), strict=True):
        name = f"{prefix}_best_fit"
        if ranked:
            best = (fit_lengths(frame, field, keys, ranked, min_n=min_n,
                                max_samples=max_samples, seed=seed)
                    .filter(pl.col("rank_aic") == 1).select(*keys, pl.col("family").alias(name)))
            out = _join(out, best, keys)
        else:
            out = out.with_columns(pl.lit(None, pl.String).alias(name))
    return out.select(*keys, "n", "input_mean", "input_median", "input_p99", "output_mean",
                      "output_median", "output_p99", "spearman", "input_best_fit",
                      "output_best_fit", "failure_rate")
