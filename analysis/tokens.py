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
  :data:`_counts._MAX_CELLS` cells); elsewhere from sorts. Both give the same figures: quantiles and
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

The counted tables and checks every function shares are in
:mod:`~servetrace.analysis.token_counts`; drift and the failure rate over time in
:mod:`~servetrace.analysis.token_drift` (re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl

from servetrace.analysis import token_counts as _counts
from servetrace.analysis.fitting import FIT_SCHEMA, fit_distributions
from servetrace.analysis.frames import columns as _keys
from servetrace.analysis.frames import lazy as as_lazy
from servetrace.analysis.frames import warn_empty
from servetrace.analysis.token_counts import (
    By,
    Frame,
    _aggregate,
    _collect,
    _dense_groups,
    _group_ids,
    _integer_values,
    _join,
    _no_overlap,
    _numeric,
    _read,
    _runs,
    _value_counts,
)
from servetrace.analysis.token_drift import (  # noqa: F401 (drift: re-exported)
    drift,
    failure_rate,
)

FIELDS = ("input_tokens", "output_tokens")
FIT_FAMILIES = ("lognormal", "gamma", "weibull", "pareto", "lognormal_mixture2")
"""All five families of :func:`fit_lengths`; ``pareto`` is the tail fit (see there)."""
WHOLE_FAMILIES = ("lognormal", "gamma", "weibull", "lognormal_mixture2")
"""The whole-distribution families, ranked against each other (the best fit of :func:`summary`)."""
TAIL_Q = 0.9
"""Default threshold quantile of the Pareto tail: the 90th percentile of the positive values."""

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
    :data:`_counts._MAX_CELLS`).

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
    if max(widths) * n_groups > _counts._MAX_CELLS // 4:  # a few float tables of this size at once
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
