"""Cold starts: component breakdown, per-minute correlations, fitted times, pod utility.

Works on the canonical ``cold_starts`` table (one row per cold start, with its total time and
four components), with ``functions`` (runtime, trigger) and ``invocations`` (the requests a pod
served) where present. The metrics follow Joosen et al., *Serverless Cold Starts and Where to
Find Them*, EuroSys 2025 (arXiv 2410.06145), written "the Huawei paper" below:

* a cold start's time is the sum of four components (the paper's Table 1 fields): pod
  allocation (find an idle pod in the function's resource pool or start one), code
  deployment, dependency deployment and scheduling, :data:`COMPONENTS`;
  ``total_s = pod_alloc_s + deploy_code_s + deploy_dep_s + scheduling_s`` up to the loader's
  recorded ``residual_s``;
* resource sizes are split as in the paper: *small* is a CPU limit ≤ 400 millicores **and** a
  memory limit ≤ 256 MB, every other known size is *large* (:func:`size_class`);
* the per-minute Spearman correlation of cold-start time with each component and with the
  number of cold starts is the method of the paper's Figure 12 (:func:`minute_correlation`);
* the pod utility ratio ``U = (pod lifetime − keep-alive) / cold-start time`` is the paper's
  measure of a pod's useful life relative to what its cold start cost (:func:`pod_utility`).

Which tables share which keys (see :mod:`servetrace.loaders.huawei_2025`): a function is the
dataset's ``funcName---userID---poolName`` in the ``function`` column of all three tables, so
``runtime`` and ``trigger`` are joined from ``functions`` on ``function`` alone (the tables
come from different files, hence different ``trace`` ids). A pod is ``podID`` in the ``pod``
column of ``cold_starts`` and ``invocations``. The Huawei runtime/trigger table covers the
functions of region R2 only; cold starts of functions it does not list get null runtime and
trigger, which form their own group.

Rows whose total or any component is null or not finite are left out of the component
statistics (their count is the difference between ``n`` and the table's height). Rows the
loader flagged (``residual_flag``) are kept: their parts do not add up to the total, so the
four shares of a group then sum to ``1 − Σ residual_s / Σ total_s`` rather than 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import polars as pl
from scipy import stats

from servetrace.analysis.fitting import DEFAULT_FAMILIES, FIT_SCHEMA, fit_distributions
from servetrace.analysis.frames import columns as _keys
from servetrace.analysis.frames import lazy as _lazy

COMPONENTS = ("pod_alloc_s", "deploy_code_s", "deploy_dep_s", "scheduling_s")
TOTAL = "total_s"
SMALL_CPU_M = 400.0
SMALL_MEMORY_MB = 256.0
KEEP_ALIVE_S = 60.0
"""Default keep-alive: Huawei keeps an idle pod for one minute (the Huawei paper)."""

Frame = pl.DataFrame | pl.LazyFrame
By = str | Sequence[str] | None

_ORDER = {c: i for i, c in enumerate((*COMPONENTS, TOTAL, "count"))}


# ---------------------------------------------------------------------------------------------
# helpers


def _with_keys(frame: Frame, keys: list[str], functions: Frame | None, *, table: str,
               need: Sequence[str]) -> pl.LazyFrame:
    """``frame`` (lazy) with every ``by`` column present: its own, ``size``, or from functions.

    A key that is not a column of ``frame`` is joined from ``functions`` on ``function`` (left
    join; the functions are reduced to distinct rows first and must not disagree); ``size`` is
    :func:`size_class` of the CPU and memory limits, themselves joined where ``frame`` lacks
    them.
    """
    lf = _lazy(frame, table)
    schema = lf.collect_schema()
    missing = [c for c in need if c not in schema]
    if missing:
        raise ValueError(f"{table}: missing column {missing[0]!r}")
    wanted: list[str] = []
    for k in keys:
        if k in schema:
            continue
        if k == "size":
            wanted += [c for c in ("cpu_limit_m", "memory_limit_mb") if c not in schema]
        else:
            wanted.append(k)
    if wanted:
        if functions is None:
            raise ValueError(f"by: {wanted[0]!r} is not a column of {table}; runtime, trigger "
                             "and other function attributes need the functions table "
                             "(functions=...)")
        if "function" not in schema:
            raise ValueError(f"{table}: missing column 'function' (needed to join functions "
                             f"for by={wanted[0]!r})")
        flf = _lazy(functions, "functions")
        fschema = flf.collect_schema()
        absent = [c for c in ("function", *wanted) if c not in fschema]
        if absent:
            raise ValueError(f"functions: missing column {absent[0]!r} (by={keys})")
        dim = flf.select(pl.col("function").cast(pl.String), *wanted).unique().collect()
        dup = dim.filter(pl.col("function").is_duplicated())
        if dup.height:
            raise ValueError(f"functions: function {dup['function'][0]!r} has more than one "
                             f"value of {wanted}")
        lf = lf.with_columns(pl.col("function").cast(pl.String)).join(
            dim.lazy(), on="function", how="left")
    if "size" in keys and "size" not in schema:
        lf = lf.with_columns(size_class("cpu_limit_m", "memory_limit_mb"))
    return lf


def _complete(columns: Sequence[str]) -> pl.Expr:
    """True where every column is non-null and finite (null counts as not)."""
    return pl.all_horizontal(pl.col(c).is_finite().fill_null(False) for c in columns)


def _sorted(frame: pl.DataFrame, keys: Sequence[str], *more: str) -> pl.DataFrame:
    cols = [*keys, *more]
    return frame.sort(cols, nulls_last=True) if cols else frame


def _fits(values: pl.DataFrame, keys: list[str], column: str, families: Sequence[str],
          max_samples: int, seed: int) -> pl.DataFrame:
    """:func:`~analysis.fitting.fit_distributions` of ``column`` per group of ``keys``."""
    if not keys:
        return fit_distributions(values[column], families, max_samples=max_samples, seed=seed)
    groups = _sorted(values.group_by(keys).agg(pl.col(column)), keys)
    key_schema = {k: groups.schema[k] for k in keys}
    parts = [pl.DataFrame(schema={**key_schema, **FIT_SCHEMA})]
    for row in groups.iter_rows(named=True):  # one fit per group, not per row
        fit = fit_distributions(pl.Series(column, row[column], pl.Float64), families,
                                max_samples=max_samples, seed=seed)
        parts.append(fit.select(*(pl.lit(row[k], key_schema[k]).alias(k) for k in keys),
                                pl.all()))
    return pl.concat(parts, how="vertical")


# ---------------------------------------------------------------------------------------------
# size classes and component breakdown


def size_class(cpu_limit_m: str | pl.Expr = "cpu_limit_m",
               memory_limit_mb: str | pl.Expr = "memory_limit_mb", *,
               cpu_max_m: float = SMALL_CPU_M, memory_max_mb: float = SMALL_MEMORY_MB) -> pl.Expr:
    """``"small"`` where CPU limit ≤ 400 millicores and memory limit ≤ 256 MB, else ``"large"``.

    The Huawei paper's split of function resource sizes (its smallest pools, 300-128 and
    400-256, are the small ones). Three-valued: a null limit gives null unless the other limit
    already makes the size large. Column names or expressions; the result is named ``size``.
    """
    cpu = pl.col(cpu_limit_m) if isinstance(cpu_limit_m, str) else cpu_limit_m
    mem = pl.col(memory_limit_mb) if isinstance(memory_limit_mb, str) else memory_limit_mb
    small = (cpu <= cpu_max_m) & (mem <= memory_max_mb)  # Kleene: false & null = false
    return (pl.when(small).then(pl.lit("small")).when(~small).then(pl.lit("large"))
            .otherwise(pl.lit(None, pl.String)).alias("size"))


def component_breakdown(cold_starts: Frame, by: By = None, functions: Frame | None = None, *,
                        include_total: bool = False) -> pl.DataFrame:
    """Each component's share of total cold-start time, and its percentiles, per group.

    For a group G and component c (one of :data:`COMPONENTS`), over the cold starts i ∈ G whose
    total and four components are all known:

    * ``total_s`` = Σᵢ cᵢ (seconds spent in c), ``n`` = |G|;
    * ``share`` = Σᵢ cᵢ / Σᵢ totalᵢ, the fraction of the group's cold-start time spent in c
      (the Huawei paper's breakdown of cold-start time by component);
    * ``mean_s``, ``p50_s``, ``p90_s``, ``p99_s``: mean and percentiles (linear interpolation)
      of cᵢ.

    ``by`` names columns of ``cold_starts`` (region, cluster, pool, ...), ``"size"``
    (:func:`size_class` of the limits), or columns of ``functions`` joined on ``function``
    (runtime, trigger, invocation_type). With ``include_total`` each group gets a last row
    ``component = "total_s"`` (share 1) holding the percentiles of the total itself; it is off
    by default so that the component rows of a group add up to the whole.

    Returns ``[by..., component, n, total_s, share, mean_s, p50_s, p90_s, p99_s]``, sorted by
    the groups then components in :data:`COMPONENTS` order. Raises ``ValueError`` on a missing
    column or when no cold start has all its times.
    """
    keys = _keys(by)
    values = [*COMPONENTS, TOTAL] if include_total else list(COMPONENTS)
    lf = _with_keys(cold_starts, keys, functions, table="cold_starts", need=[TOTAL, *COMPONENTS])
    lf = lf.filter(_complete([TOTAL, *COMPONENTS]))
    gk = keys or ["_all"]
    if not keys:
        lf = lf.with_columns(pl.lit(0).alias("_all"))
    lf = lf.select(*gk, *COMPONENTS, pl.col(TOTAL).alias("_total"),
                   *([pl.col(TOTAL)] if include_total else []))
    grand = lf.group_by(gk).agg(pl.col("_total").sum().alias("_grand"))
    v = pl.col("_v")
    out = (lf.unpivot(on=values, index=gk, variable_name="component", value_name="_v")
           .group_by([*gk, "component"])
           .agg(pl.len().cast(pl.Int64).alias("n"), v.sum().alias("total_s"),
                v.mean().alias("mean_s"), v.quantile(0.5, "linear").alias("p50_s"),
                v.quantile(0.9, "linear").alias("p90_s"),
                v.quantile(0.99, "linear").alias("p99_s"))
           .join(grand, on=gk, how="left", nulls_equal=True)
           .with_columns((pl.col("total_s") / pl.col("_grand")).alias("share"),
                         pl.col("component").replace_strict(_ORDER).alias("_order"))
           .collect())
    if out.height == 0:
        raise ValueError("cold_starts: no row with total_s and all four components "
                         f"({', '.join(COMPONENTS)}) known")
    out = _sorted(out, keys, "_order")
    return out.select(*keys, "component", "n", "total_s", "share", "mean_s", "p50_s", "p90_s",
                      "p99_s")


# ---------------------------------------------------------------------------------------------
# per-minute correlation


def _spearman_p(rho: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Two-sided p-value of Spearman's ρ from n pairs: t = ρ √((n−2)/(1−ρ²)) on n−2 d.f."""
    rho = np.asarray(rho, dtype=np.float64)
    df = np.asarray(n, dtype=np.float64) - 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t = rho * np.sqrt(df / ((1 - rho) * (1 + rho)))
        p = 2 * stats.t.sf(np.abs(t), df)
    p = np.where(np.abs(rho) >= 1, 0.0, p)
    return np.where((df > 0) & np.isfinite(rho), p, np.nan)


def minute_correlation(cold_starts: Frame, by: By = None, window_s: float = 60.0, *,
                       functions: Frame | None = None,
                       statistic: Literal["mean", "sum"] = "mean") -> pl.DataFrame:
    """Spearman's ρ between per-window cold-start time and each component, and the count.

    The method of the Huawei paper's Figure 12: cut time into windows of ``window_s`` seconds
    (w = ⌊arrival_s / window_s⌋, aligned to the trace's zero), summarize each window of a
    group by its cold starts' ``statistic`` (``"mean"``, the default: the average cold-start
    time and average components in that minute, like the dataset's per-minute cost series; or
    ``"sum"``) and their number, then correlate across windows::

        ρ(total, x) = Pearson correlation of rank(total_w) and rank(x_w) (ties: average ranks)

    for x in the four components and ``count`` (Spearman 1904). Only windows with at least one
    complete cold start enter (there is no cold-start time in an empty window). ``p_value`` is
    the two-sided test of ρ = 0 from t = ρ √((n − 2) / (1 − ρ²)) with n − 2 degrees of freedom
    (as :func:`scipy.stats.spearmanr`). ``spearman`` and ``p_value`` are null where they are
    undefined: fewer than three windows, or a constant series.

    Returns ``[by..., variable, n_windows, spearman, p_value]`` with ``variable`` one of
    :data:`COMPONENTS` or ``"count"``.
    """
    if not (np.isfinite(window_s) and window_s > 0):
        raise ValueError(f"window_s must be a positive number of seconds, got {window_s!r}")
    if statistic not in ("mean", "sum"):
        raise ValueError(f"statistic must be 'mean' or 'sum', got {statistic!r}")
    keys = _keys(by)
    lf = _with_keys(cold_starts, keys, functions, table="cold_starts",
                    need=["arrival_s", TOTAL, *COMPONENTS])
    lf = lf.filter(_complete(["arrival_s", TOTAL, *COMPONENTS]))
    gk = keys or ["_all"]
    if not keys:
        lf = lf.with_columns(pl.lit(0).alias("_all"))
    variables = [*COMPONENTS, "count"]

    def stat(c: str) -> pl.Expr:
        return (pl.col(c).mean() if statistic == "mean" else pl.col(c).sum()).alias(c)

    windows = (lf.group_by([*gk, (pl.col("arrival_s") / window_s).floor().alias("_w")])
               .agg(pl.len().cast(pl.Float64).alias("count"), stat(TOTAL),
                    *(stat(c) for c in COMPONENTS)))
    corr = (windows.group_by(gk)
            .agg(pl.len().cast(pl.Int64).alias("n_windows"),
                 *(pl.corr(TOTAL, v, method="spearman").alias(v) for v in variables))
            .unpivot(on=variables, index=[*gk, "n_windows"], variable_name="variable",
                     value_name="spearman")
            .collect())
    if corr.height == 0:
        raise ValueError("cold_starts: no row with arrival_s, total_s and all four "
                         "components known")
    rho = corr["spearman"].to_numpy()
    n = corr["n_windows"].to_numpy()
    rho = np.where(n >= 3, rho, np.nan)
    corr = corr.with_columns(pl.Series("spearman", rho).fill_nan(None),
                             pl.Series("p_value", _spearman_p(rho, n)).fill_nan(None),
                             pl.col("variable").replace_strict(_ORDER).alias("_order"))
    return _sorted(corr, keys, "_order").select(*keys, "variable", "n_windows", "spearman",
                                                 "p_value")


# ---------------------------------------------------------------------------------------------
# fitted distributions


def fit_cold_start_times(cold_starts: Frame, by: By = None, functions: Frame | None = None, *,
                         families: Sequence[str] = DEFAULT_FAMILIES, max_samples: int = 200_000,
                         seed: int = 0) -> pl.DataFrame:
    """Maximum-likelihood fits of the cold-start time ``total_s``, per group.

    :func:`servetrace.analysis.fitting.fit_distributions` of the positive finite ``total_s`` of
    each group (the Huawei paper fits cold-start times to compare regions). Groups with fewer than
    two positive values get no rows.

    Returns ``[by..., family, params, n, n_dropped, n_params, loglik, aic, bic, ks, rank_aic,
    rank_bic]``, sorted by group then ``rank_aic``.
    """
    keys = _keys(by)
    lf = _with_keys(cold_starts, keys, functions, table="cold_starts", need=[TOTAL])
    values = lf.select(*keys, pl.col(TOTAL).cast(pl.Float64)).collect()
    if values.height == 0:
        raise ValueError("cold_starts: empty, no cold-start time to fit")
    return _fits(values, keys, TOTAL, families, max_samples, seed)


def cold_start_intervals(cold_starts: Frame, by: By = None, functions: Frame | None = None, *,
                         per_function: bool = False) -> pl.DataFrame:
    """Times between consecutive cold starts, per group (and per function).

    Within each group of ``by`` (with ``per_function``: of ``by`` and ``function``), cold
    starts are ordered by ``arrival_s`` and ``interval_s = arrival_s[k] − arrival_s[k − 1]``:
    without ``per_function`` the inter-arrival times of the group's cold starts whatever their
    function (the platform's view), with it the gaps between one function's own cold starts.
    The first cold start of a group has no interval. Cold starts logged in the same
    millisecond give zero intervals; they are kept here.

    Returns ``[by..., (function,) arrival_s, interval_s]`` in group and time order.
    """
    keys = _keys(by)
    seq = [*keys, "function"] if per_function and "function" not in keys else keys
    need = ["arrival_s", *(["function"] if per_function else [])]
    lf = _with_keys(cold_starts, keys, functions, table="cold_starts", need=need)
    gap = pl.col("arrival_s").diff()
    lf = (lf.select(*seq, pl.col("arrival_s").cast(pl.Float64))
          .filter(pl.col("arrival_s").is_finite())
          .sort("arrival_s")
          .with_columns((gap.over(seq) if seq else gap).alias("interval_s"))
          .filter(pl.col("interval_s").is_not_null()))
    return _sorted(lf.collect(), seq, "arrival_s")


def fit_intervals(cold_starts: Frame, by: By = None, functions: Frame | None = None, *,
                  per_function: bool = False, families: Sequence[str] = DEFAULT_FAMILIES,
                  max_samples: int = 200_000, seed: int = 0) -> pl.DataFrame:
    """Maximum-likelihood fits of the time between cold starts, per group.

    The intervals are those of :func:`cold_start_intervals` (overall within each group, or
    with ``per_function`` each function's own gaps, pooled over the group's functions); the
    Huawei paper studies the inter-arrival times of cold starts per region. Zero
    intervals (cold starts in the same millisecond) cannot enter a fit of a positive
    distribution: they are dropped and counted in ``n_dropped``.

    Returns ``[by..., family, params, n, n_dropped, n_params, loglik, aic, bic, ks, rank_aic,
    rank_bic]``.
    """
    keys = _keys(by)
    gaps = cold_start_intervals(cold_starts, by, functions, per_function=per_function)
    if gaps.height == 0:
        raise ValueError("cold_starts: fewer than two cold starts in every group, no interval "
                         "to fit")
    return _fits(gaps, keys, "interval_s", families, max_samples, seed)


# ---------------------------------------------------------------------------------------------
# pod utility


def pod_utility(cold_starts: Frame, invocations: Frame, keep_alive_s: float = KEEP_ALIVE_S,
                by: By = None, functions: Frame | None = None) -> pl.DataFrame:
    """Pod utility ratio U of every pod with a cold start and requests (the Huawei paper).

    For a pod p, with its cold start at ``a_p`` taking ``C_p`` = ``total_s`` seconds and its
    requests j (from ``invocations.pod``) arriving at ``t_j`` and running ``d_j`` =
    ``duration_s`` seconds (a null duration counts as 0)::

        start_p    = min(a_p, min_j t_j)            (first sign of the pod)
        end_p      = max_j (t_j + d_j)              (its last request's end)
        lifetime_p = end_p − start_p + keep_alive   (it idles keep_alive s, then is removed)
        U_p        = (lifetime_p − keep_alive) / C_p

    U is the pod's useful lifetime in multiples of the cold start that created it (Joosen et
    al., EuroSys'25): U < 1 means the pod spent more time starting than serving. With lifetimes
    rebuilt from request logs the keep-alive cancels in U (U = (end − start) / C); it sets
    ``lifetime_s`` and stands for the measured lifetime in the paper's definition, which would
    exceed this one only for pods kept beyond their last request plus the keep-alive.

    Pods are matched on ``pod`` (and ``region`` where both tables have it, nulls matching
    nulls). Only pods with both a cold start and at least one request are returned: the
    Huawei request tables cover day 30 only, so older pods have no requests and pods created
    before the cold-start log have no cold start. A pod with several cold-start rows keeps its
    earliest. U is null where ``C_p`` is not positive.

    ``by`` names columns of ``cold_starts``, ``"size"``, or columns of ``functions`` (runtime,
    trigger). Returns ``[by..., pod, function, n_requests, start_s, end_s, lifetime_s,
    cold_start_s, utility]``, sorted by group and pod.
    """
    if not (np.isfinite(keep_alive_s) and keep_alive_s >= 0):
        raise ValueError(f"keep_alive_s must be a non-negative number of seconds, got "
                         f"{keep_alive_s!r}")
    keys = _keys(by)
    cs = _with_keys(cold_starts, keys, functions, table="cold_starts",
                    need=["pod", "function", "arrival_s", TOTAL])
    inv = _lazy(invocations, "invocations")
    ischema = inv.collect_schema()
    absent = [c for c in ("pod", "arrival_s", "duration_s") if c not in ischema]
    if absent:
        raise ValueError(f"invocations: missing column {absent[0]!r}")
    on = ["region", "pod"] if ("region" in ischema and "region" in cs.collect_schema()) \
        else ["pod"]
    first = pl.col("arrival_s").arg_min()  # a pod's earliest cold start
    pods = (cs.filter(pl.col("pod").is_not_null() & pl.col("arrival_s").is_not_null())
            .group_by(on)
            .agg(*(pl.col(k).get(first) for k in keys if k not in on),
                 pl.col("function").get(first).cast(pl.String),
                 pl.col("arrival_s").min().alias("_cold_at"),
                 pl.col(TOTAL).get(first).alias("cold_start_s")))
    served = (inv.filter(pl.col("pod").is_not_null())
              .with_columns(pl.col(c).cast(pl.String) for c in on)
              .group_by(on)
              .agg(pl.len().cast(pl.Int64).alias("n_requests"),
                   pl.col("arrival_s").min().alias("_first"),
                   (pl.col("arrival_s") + pl.col("duration_s").fill_null(0.0)).max()
                   .alias("end_s")))
    out = (pods.with_columns(pl.col(c).cast(pl.String) for c in on)
           .join(served, on=on, how="inner", nulls_equal=True)
           .with_columns(pl.min_horizontal("_cold_at", "_first").alias("start_s"))
           .with_columns((pl.col("end_s") - pl.col("start_s") + keep_alive_s)
                         .alias("lifetime_s"))
           .with_columns(pl.when(pl.col("cold_start_s") > 0)
                         .then((pl.col("lifetime_s") - keep_alive_s) / pl.col("cold_start_s"))
                         .alias("utility"))
           .collect())
    out = _sorted(out, keys, "pod")
    return out.select(*keys, "pod", "function", "n_requests", "start_s", "end_s", "lifetime_s",
                      "cold_start_s", "utility")


def pod_utility_summary(pods: Frame, by: By = None) -> pl.DataFrame:
    """Distribution of the pod utility ratio per group, from :func:`pod_utility`'s frame.

    Over the pods of a group with a known U: ``n_pods``, ``median_utility``, ``mean_utility``,
    ``p10_utility``, ``p90_utility`` (linear interpolation), ``share_below_1`` (fraction of
    pods with U < 1, which served for less time than their cold start took: the Huawei paper
    reads U this way), ``median_lifetime_s`` and ``median_cold_start_s``. The ``by``
    columns must be in ``pods`` (pass the same ``by`` to :func:`pod_utility`).

    Returns ``[by..., n_pods, median_utility, mean_utility, p10_utility, p90_utility,
    share_below_1, median_lifetime_s, median_cold_start_s]``.
    """
    keys = _keys(by)
    lf = _lazy(pods, "pods")
    schema = lf.collect_schema()
    absent = [c for c in (*keys, "utility", "lifetime_s", "cold_start_s") if c not in schema]
    if absent:
        raise ValueError(f"pods: missing column {absent[0]!r} (pods is pod_utility's frame; "
                         "give it the same by)")
    u = pl.col("utility")
    aggs = [pl.len().cast(pl.Int64).alias("n_pods"), u.median().alias("median_utility"),
            u.mean().alias("mean_utility"), u.quantile(0.1, "linear").alias("p10_utility"),
            u.quantile(0.9, "linear").alias("p90_utility"),
            (u < 1).mean().alias("share_below_1"),
            pl.col("lifetime_s").median().alias("median_lifetime_s"),
            pl.col("cold_start_s").median().alias("median_cold_start_s")]
    lf = lf.filter(u.is_not_null() & u.is_not_nan())
    out = (lf.group_by(keys).agg(aggs) if keys else lf.select(aggs)).collect()
    if out.height == 0 or out["n_pods"].sum() == 0:
        raise ValueError("pods: no pod with a known utility")
    return _sorted(out, keys)


# ---------------------------------------------------------------------------------------------
# key figures


def summary(cold_starts: Frame, functions: Frame | None = None) -> pl.DataFrame:
    """Key cold-start figures in one row, for the command line and the report.

    ``n_cold_starts``, ``n_functions``, ``n_pods``, ``n_regions``; ``span_s`` (last − first
    arrival) and ``per_minute`` (cold starts per minute over that span, null for a zero span);
    ``mean_total_s``, ``p50_total_s``, ``p90_total_s``, ``p99_total_s``, ``max_total_s`` of the
    cold-start time; ``share_<component>`` (Σ component / Σ total over complete rows, as in
    :func:`component_breakdown`) and ``dominant_component`` (the largest share);
    ``share_small`` (fraction of cold starts of known size that are small, :func:`size_class`);
    ``n_residual_flagged`` and ``max_abs_residual_s`` where the loader's residual columns are
    present. With ``functions``: ``share_with_runtime`` (fraction of cold starts whose function
    has a known runtime), ``top_runtime`` and ``top_trigger`` (most cold starts).
    """
    lf = _with_keys(cold_starts, [], None, table="cold_starts",
                    need=["arrival_s", TOTAL, *COMPONENTS])
    schema = lf.collect_schema()

    def n_unique(c: str) -> pl.Expr:
        return (pl.col(c).drop_nulls().n_unique() if c in schema else pl.lit(None)).cast(
            pl.Int64).alias(f"n_{c}s" if c != "function" else "n_functions")

    t = pl.col(TOTAL)
    complete = _complete([TOTAL, *COMPONENTS])
    grand = t.filter(complete).sum()
    size = (size_class() if {"cpu_limit_m", "memory_limit_mb"} <= set(schema)
            else pl.lit(None, pl.String))
    span = pl.col("arrival_s").max() - pl.col("arrival_s").min()
    row = lf.select(
        pl.len().cast(pl.Int64).alias("n_cold_starts"),
        n_unique("function"), n_unique("pod"), n_unique("region"),
        span.alias("span_s"),
        pl.when(span > 0).then(pl.len() / span * 60.0).alias("per_minute"),
        t.mean().alias("mean_total_s"), t.quantile(0.5, "linear").alias("p50_total_s"),
        t.quantile(0.9, "linear").alias("p90_total_s"),
        t.quantile(0.99, "linear").alias("p99_total_s"), t.max().alias("max_total_s"),
        *((pl.col(c).filter(complete).sum() / grand).alias(f"share_{c}") for c in COMPONENTS),
        (size == "small").mean().alias("share_small"),
        (pl.col("residual_flag").sum().cast(pl.Int64) if "residual_flag" in schema
         else pl.lit(None, pl.Int64)).alias("n_residual_flagged"),
        (pl.col("residual_s").abs().max() if "residual_s" in schema
         else pl.lit(None, pl.Float64)).alias("max_abs_residual_s"),
    ).collect()
    if row["n_cold_starts"][0] == 0:
        raise ValueError("cold_starts: empty")
    shares = row.select(f"share_{c}" for c in COMPONENTS).row(0)
    known = [(s, c) for s, c in zip(shares, COMPONENTS, strict=True) if s is not None]
    row = row.with_columns(pl.lit(max(known)[1] if known else None, pl.String)
                           .alias("dominant_component"))
    if functions is not None:
        joined = _with_keys(cold_starts, ["runtime", "trigger"], functions,
                            table="cold_starts", need=["function"])

        def top(c: str) -> pl.Expr:
            return pl.col(c).drop_nulls().mode().sort().first().alias(f"top_{c}")

        extra = joined.select(pl.col("runtime").is_not_null().mean().alias("share_with_runtime"),
                              top("runtime"), top("trigger")).collect()
        row = pl.concat([row, extra], how="horizontal")
    return row
