"""Token-length characterization of the canonical ``requests`` table.

Per trace or group (``by``): summaries and ECDFs of input and output tokens, maximum-likelihood
fits (lognormal, gamma, Weibull, a two-component lognormal mixture, ranked by AIC/BIC with the
KS distance, see :mod:`analysis.fitting`) and a Pareto/Zipf tail (Hill estimator above a
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
  seeded subsample of each (see :func:`analysis.fitting.fit_distributions`).
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

import numpy as np
import polars as pl

from analysis.fitting import FIT_SCHEMA, fit_distributions
from analysis.frames import lazy as as_lazy

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


def _keys(by: By) -> list[str]:
    if by is None:
        return []
    keys = [by] if isinstance(by, str) else list(by)
    if len(set(keys)) != len(keys):
        raise ValueError(f"by: repeated column in {keys}")
    return keys


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
    _no_overlap(keys, fields, fn)
    frame = _collect(requests, [*keys, *fields], fn)
    stats = ("n", "mean", "median", "p90", "p99", "max", "zeros", "nulls")
    exprs = []
    for i, field in enumerate(fields):  # one pass over the groups for every field
        _numeric(frame, field, fn)
        x = pl.col(field).cast(pl.Float64)
        exprs += [e.alias(f"{i}_{stat}") for e, stat in zip((
            x.count().cast(pl.Int64), x.mean(), x.median(), x.quantile(0.9, "linear"),
            x.quantile(0.99, "linear"), x.max(), (x == 0).sum().cast(pl.Int64),
            x.null_count().cast(pl.Int64)), stats, strict=True)]
    wide = _aggregate(frame, keys, exprs)
    out = pl.concat([wide.select(*keys, pl.lit(field).alias("field"),
                                 *(pl.col(f"{i}_{stat}").alias(stat) for stat in stats))
                     for i, field in enumerate(fields)])
    return out.sort(keys, nulls_last=True, maintain_order=True) if keys else out


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
    _no_overlap(keys, [field], fn)
    frame = _collect(requests, [*keys, field], fn)
    _numeric(frame, field, fn)
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
    _no_overlap(keys, [field], fn)
    frame = _collect(requests, [*keys, field], fn)
    _numeric(frame, field, fn)
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
    out = _join(heads, tails, keys)
    return out.select(
        *keys, pl.lit(field).alias("field"), "n", pl.lit(float(q)).alias("q"),
        pl.col("u").alias("threshold"), pl.col("k").fill_null(0), "alpha",
        (pl.col("alpha") / pl.col("k").sqrt()).alias("alpha_se"),
        (1 / pl.col("alpha")).alias("zipf_exponent"), "ks", "loglik")


def fit_lengths(requests: Frame, field: str = "input_tokens", by: By = None,
                families: Sequence[str] = FIT_FAMILIES, *, tail_q: float = TAIL_Q,
                min_n: int = 100, max_samples: int = 200_000, seed: int = 0) -> pl.DataFrame:
    """Maximum-likelihood fits of ``field`` per group, ranked by AIC and BIC, with KS.

    Whole-distribution families (``lognormal``, ``gamma``, ``weibull``, ``lognormal_mixture2``
    and ``exponential``) are fitted by :func:`analysis.fitting.fit_distributions` on the
    positive values (zeros — BurstGPT's failed responses — are dropped and counted in
    ``n_dropped``; above ``max_samples`` values a subsample seeded by ``seed`` is fitted), and
    ranked against each other: ``rank_aic``/``rank_bic`` = 1 is the best. The mixture's EM
    dominates the cost and is linear in the sample: a smaller ``max_samples`` (at 50,000 values
    the standard error of a lognormal's μ is still σ/√n ≈ 0.005 σ) makes large groups cheaper.

    ``pareto`` is the tail: a Pareto (type I) law with scale ``threshold`` (the ``tail_q``
    quantile) and Hill's α fitted to the values above it (:func:`tail_index`). Its likelihood
    is conditional on the tail, so it is not ranked (``rank_aic``/``rank_bic`` null): its
    ``n`` is the number of exceedances and ``n_dropped`` the other values; ``params`` is
    ``{"alpha", "xm"}`` as :func:`analysis.fitting.distribution` reads it (the law of
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
    _no_overlap(keys, FIELDS, fn)
    frame = _collect(requests, [*keys, *FIELDS], fn)
    for field in FIELDS:
        _numeric(frame, field, fn)
    both = pl.col("input_tokens").is_not_null() & pl.col("output_tokens").is_not_null()
    x = pl.col("input_tokens").cast(pl.Float64).filter(both)
    y = pl.col("output_tokens").cast(pl.Float64).filter(both)
    ranked = _counting_ranks(frame, keys)
    if ranked is not None:
        frame, spearman = ranked, pl.corr(pl.col("_rx").filter(both), pl.col("_ry").filter(both))
    else:  # ranks of the columns as they are: integer ranking is cheaper than float ranking
        spearman = pl.corr(pl.col("input_tokens").filter(both),
                           pl.col("output_tokens").filter(both), method="spearman")
    return _aggregate(frame, keys, [
        both.sum().cast(pl.Int64).alias("n"),
        pl.corr(x, y).alias("pearson"),
        spearman.alias("spearman"),
        pl.corr(x.log1p(), y.log1p()).alias("pearson_log"),
        (~both).sum().cast(pl.Int64).alias("nulls"),
    ])


_MAX_RANK_CELLS = 50_000_000  # group × value table of the counting ranks (8 bytes each)


def _counting_ranks(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame | None:
    """``frame`` plus ``_rx``/``_ry``: average ranks of the token counts within each group
    over the rows where both are known, by counting (ties share the mean of their ranks, as
    in Spearman's ρ). Token counts are small non-negative integers, so a bincount over
    (group, value) replaces two sorts; None when they are not, or the table would be large.
    """
    both = frame["input_tokens"].is_not_null() & frame["output_tokens"].is_not_null()
    with_ids, _ = _group_ids(frame, keys)
    g = with_ids["_g"].to_numpy()
    ok = both.to_numpy()
    out = []
    for field in FIELDS:
        column = frame[field]
        if not column.dtype.is_integer():
            return None
        v = column.fill_null(0).to_numpy().astype(np.int64, copy=False)
        top, groups = int(v.max()) + 1, int(g.max()) + 1
        if v.min() < 0 or top * groups > _MAX_RANK_CELLS:
            return None
        cell = g * top + v
        counts = np.bincount(cell[ok], minlength=top * groups).reshape(groups, top)
        below = np.cumsum(counts, axis=1) - counts  # values < v within the group
        average = (below + (counts + 1) / 2.0).ravel()
        out.append(average[cell])
    return frame.with_columns(pl.Series("_rx", out[0]), pl.Series("_ry", out[1]))


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
    _no_overlap(keys, FIELDS, fn)
    frame = _collect(requests, [*keys, *FIELDS], fn)
    for field in FIELDS:
        _numeric(frame, field, fn)
    pairs = frame.drop_nulls(list(FIELDS))
    top = pairs["input_tokens"].max()
    cuts = _edges(edges, float(top) if top is not None else 0.0, fn)
    his = [*cuts[1:].tolist(), None]
    buckets = pl.DataFrame({"_b": np.arange(1, len(cuts) + 1, dtype=np.int64),
                            "input_lo": cuts, "input_hi": his},
                           schema={"_b": pl.Int64, "input_lo": pl.Float64,
                                   "input_hi": pl.Float64})
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
    _no_overlap(keys, [field, "arrival_s"], fn)
    frame = _collect(requests, [*keys, "arrival_s", field], fn)
    _numeric(frame, field, fn)
    frame, ids = _group_ids(frame, keys)
    rows = frame.lazy().select(
        pl.col("_g").cast(pl.Int64).alias("g"),
        (pl.col("arrival_s") / window_s).floor().cast(pl.Int64).alias("w"),
        pl.col(field).cast(pl.Float64).alias("v"),
    ).filter(pl.col("v").is_finite() & pl.col("w").is_not_null()).collect()
    g, w_first, w_next, n, n_next, wasserstein, ks = _window_distances(rows)
    distances = pl.DataFrame({
        "_g": g, "window_start_s": w_first * window_s, "next_window_start_s": w_next * window_s,
        "n": n, "n_next": n_next, "wasserstein": wasserstein, "ks": ks,
    }, schema={"_g": ids.schema["_g"], "window_start_s": pl.Float64,
               "next_window_start_s": pl.Float64, "n": pl.Int64, "n_next": pl.Int64,
               "wasserstein": pl.Float64, "ks": pl.Float64})
    return (distances.join(ids, on="_g", how="left", maintain_order="left")
            .select(*keys, *distances.columns[1:])
            .sort([*keys, "window_start_s"], nulls_last=True))


def _window_distances(rows: pl.DataFrame) -> tuple[np.ndarray, ...]:
    """W₁ and KS between consecutive non-empty windows, for all groups at once.

    ``rows``: one per request, ``g`` group id, ``w`` window index, ``v`` value. Each request
    gets one int64 key ordered by (group, window, value); one sort and a run-length encoding
    give the counts per (window, value), in order. Pair j compares window j with window j + 1
    of the same group: window j's counts (side A) and window j + 1's (side B) are two sorted
    runs keyed (j, value), merged in linear time by a stable sort; cumulative counts within a
    pair give F and G at every point of the union of their values.

    Returns (group, first window index, next window index, n, n_next, W₁, KS) arrays, one entry
    per pair, ordered by group then window.
    """
    empty = np.zeros(0, dtype=np.int64)
    nothing = (empty, empty, empty, empty, empty, empty.astype(float), empty.astype(float))
    if rows.height == 0:
        return nothing
    g, w, v = pl.col("g"), pl.col("w"), pl.col("v")
    lims = rows.select(g.max().alias("g_max"), w.min().alias("w_min"), w.max().alias("w_max"),
                       v.min().alias("v_min"), v.max().alias("v_max"),
                       (v == v.floor()).all().alias("integral")).row(0, named=True)
    w_min, v_min = lims["w_min"], lims["v_min"]
    n_w = lims["w_max"] - w_min + 1
    values: pl.Series | None = None  # distinct values, where ranks are not offsets
    if lims["integral"] and lims["v_max"] - v_min < 2.0**40:
        rank, n_r = (v - v_min).cast(pl.Int64), int(lims["v_max"] - v_min) + 1
    else:
        values = rows["v"].unique().sort()
        rank, n_r = pl.lit(values).search_sorted(v).cast(pl.Int64), len(values)
    window = g * n_w + (w - w_min)  # ordered by group, then time
    window_ids: np.ndarray | None = None  # distinct windows, where ids are not offsets
    if (lims["g_max"] + 1) * n_w * n_r >= 2**62:  # keys would overflow: dense numbering
        if values is None:
            values = rows["v"].unique().sort()
            rank, n_r = pl.lit(values).search_sorted(v).cast(pl.Int64), len(values)
        if (lims["g_max"] + 1) * n_w * n_r >= 2**62:
            distinct = rows.select(window.unique().sort())["g"]
            window_ids = distinct.to_numpy()
            window = pl.lit(distinct).search_sorted(window).cast(pl.Int64)
    sorted_keys = rows.select((window * n_r + rank).alias("k"))["k"].to_numpy(writable=True)
    sorted_keys.sort()
    runs = pl.Series(sorted_keys).rle().struct.unnest()
    keys, counts = runs["value"].to_numpy(), runs["len"].to_numpy().astype(np.int64)

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
    value = rank_m + v_min if values is None else values.to_numpy()[rank_m]
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
