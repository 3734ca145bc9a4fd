"""How closely a synthetic serverless trace matches a real one, next to two replay baselines.

Every trace (real, synthetic, baseline) is compared on its per-window counts (the 60 s grid of
Azure Functions 2019, the finest resolution the per-minute trace records; per-invocation
tables are counted on the same grid, :func:`servetrace.synth.serverless.grid`). Where the
real trace has per-invocation times (Azure Functions 2021), the same figures are computed
below the grid too (:data:`FINE_METRICS`, for every candidate alike: all are per-invocation
tables). Metrics (:func:`metrics`), and the error of a candidate (:func:`errors`, lower is
better everywhere):

* ``idc_max_rel_error``: the index of dispersion of the whole trace's counts, IDC(w) =
  Var/mean of counts in windows of w ∈ :data:`WINDOWS_S` (those with at least
  :data:`MIN_WINDOWS` windows), largest relative error over w;
* ``function_idc_ks``: Kolmogorov–Smirnov distance of the per-function IDC at 60 s
  (burstiness across functions);
* ``iat_cv_ks``: KS distance of the per-function inter-arrival CV, and ``cv0_share_error``
  / ``cv1_share_error``: absolute error of the share of *apps* whose IAT CV is 0 (timers)
  and ≤ 1 — the view of Shahrad et al., "Serverless in the Wild", USENIX ATC 2020, Fig. 7.
  IATs at the grid's resolution: a window's c invocations sit at its start (c − 1 zero
  gaps), so the CV of a unit with N ≥ 3 invocations in windows m_1 ≤ … ≤ m_N is that of the
  gaps Δm·w (closed form from Σ Δm and Σ Δm²);
* ``rate_ks`` and ``rate_wasserstein`` (on log10 invocations/s): the distribution of the
  invocation rate across functions;
* ``duration_mean_error`` / ``memory_mean_error``: median over functions of |ln(sample mean /
  published mean)|: the published per-function ``duration_mean_s`` and ``memory_mean_mb``
  (Azure 2019's ``Average`` columns) are not used by the fit, so they check the quantile
  interpolation out of sample; ``duration_ks`` / ``memory_ks``: KS distance across functions
  of those means;
* ``cold_fixed10_error`` / ``cold_hybrid_error``: relative error of the overall cold-start
  fraction under a fixed 10-minute keep-alive and under the hybrid histogram policy
  (:mod:`servetrace.analysis.keepalive`, per app, Shahrad et al. 2020), with
  ``cold_fixed10_p75_error``: absolute error of the 75th-percentile app cold-start fraction.

Sub-minute (:data:`FINE_METRICS`, real trace with ``arrival_s``):

* ``fine_idc_max_rel_error``: the IDC curve of the whole trace's counts in windows of
  :data:`FINE_WINDOWS_S` (1 … 30 s), largest relative error;
* ``exact_iat_cv_ks`` / ``exact_cv1_share_error``: KS distance of the per-function IAT CV
  from the exact arrival times (functions with three invocations or more), and the absolute
  error of the share of functions with CV ≤ 1 (timers' exact CV is near 0 but not 0, so
  the CV-0 share stays a per-minute figure);
* ``gap_ks``: KS distance of all per-function inter-arrival gaps pooled (the within-minute
  shape: fan-out bursts are gaps of milliseconds, uniform spreading makes them seconds);
* ``cold_fixed10s_error`` / ``cold_fixed60s_error``: relative error of the cold-start
  fraction under a fixed keep-alive of 10 s and 60 s, simulated per app on the invocations
  themselves (their own durations), where within-minute placement decides warm or cold.

Baselines (:func:`baseline`), built from a ``reference`` trace (the real one, or on held-out
time the fitted first half):

* ``replay_uniform``: the reference's per-minute counts replayed (cyclically, when the sample
  is longer) with each minute's invocations at uniform random times inside it — the default
  of the vHive/InVitro loader (Ustiugov et al., "Enabling In-Vitro Serverless Systems
  Research", CHEOPS 2023) — and durations and memory drawn uniformly between neighbouring
  percentiles (:func:`servetrace.synth.serverless_quantiles.piecewise_uniform`). On the whole
  trace it *is* the real per-minute trace, so it ties or wins by construction on every
  per-minute metric: the informative comparisons are held-out time and, where the real
  trace has per-invocation times, the sub-minute metrics;
* ``poisson``: each function a Poisson process at its reference mean rate (SimFaaS,
  faas-sim), same sizes as ``replay_uniform``.

:func:`holdout` fits on the first half of the trace (the first half of its days; of its time
when it spans less than two days) and scores the second. Several runs (seeds) give mean errors,
their standard deviations and a ``verdict`` (:func:`servetrace.synth.fidelity.verdict`: win,
tie or loss by more than two standard errors).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy import stats

from servetrace.analysis import keepalive
from servetrace.loaders.schema import conform
from servetrace.synth import serverless as sv
from servetrace.synth import serverless_counts as svc
from servetrace.synth import serverless_quantiles as sq
from servetrace.synth.fidelity import verdict

WINDOWS_S = (60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
MIN_WINDOWS = 16
FINE_WINDOWS_S = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Sub-minute IDC windows, for a real trace with per-invocation times."""
FINE_KEEP_ALIVE_S = (10.0, 60.0)
"""Short fixed keep-alives, simulated on per-invocation times."""
BASELINES = ("replay_uniform", "poisson")
Frame = pl.DataFrame | pl.LazyFrame
_KEYS = ["tenant", "app", "function"]


def _idc(series: np.ndarray, window_s: float, base_s: float,
         windows: Sequence[float] = WINDOWS_S) -> dict[float, float]:
    out = {}
    for w in windows:
        k = round(w / base_s)
        n = len(series) // k
        if k < 1 or n < MIN_WINDOWS or abs(k * base_s - w) > 1e-9:
            continue
        b = series[:n * k].reshape(n, k).sum(axis=1)
        if b.mean() > 0:
            out[w] = float(b.var() / b.mean())
    return out


def iat_cv(counts: np.ndarray, window_s: float) -> np.ndarray:
    """Per-row IAT CV with a window's invocations at its start (module doc); NaN under three
    invocations or when all fall in one window."""
    f, m = np.nonzero(counts)
    c = counts[f, m]
    n = np.bincount(f, weights=c, minlength=counts.shape[0])
    same = np.r_[False, f[1:] == f[:-1]]
    dm = np.where(same, np.diff(m, prepend=0), 0).astype(np.float64)
    s1 = np.bincount(f, weights=dm, minlength=counts.shape[0])
    s2 = np.bincount(f, weights=dm * dm, minlength=counts.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s1 / (n - 1)
        var = s2 / (n - 1) - mean ** 2
        cv = np.sqrt(np.maximum(var, 0.0)) / mean
    return np.where((n >= 3) & (mean > 0), cv, np.nan)


def _sizes(table: pl.DataFrame, g: svc.Grid, functions: pl.DataFrame | None,
           column: str, published: str) -> np.ndarray:
    """Per function: the mean of ``column`` over the table's invocations where it has them,
    else the ``functions`` table's ``published`` mean."""
    out = np.full(g.keys.height, np.nan)
    keyed = g.keys.select(_KEYS).with_row_index("_f")
    t = g.times
    if t is not None and column in t.columns and t[column].null_count() < t.height:
        agg = t.drop_nulls(column).group_by("fid").agg(pl.col(column).mean())
        out[agg["fid"].to_numpy()] = agg[column].to_numpy()
    elif functions is not None and published in functions.columns:
        fx = svc._with_keys(functions).select(*_KEYS, published).unique(_KEYS, keep="first")
        j = keyed.join(fx, on=_KEYS, nulls_equal=True)
        out[j["_f"].to_numpy()] = j[published].to_numpy()
    return out


def _fine(frame: pl.DataFrame, g: svc.Grid) -> dict:
    """Sub-minute figures of a per-invocation table (module doc): whole-trace counts in
    1 s bins, per-function gaps between exact arrival times, and cold starts simulated on the
    invocations themselves (per app, durations from ``duration_s``)."""
    if g.times is None:
        raise ValueError("fidelity: sub-minute metrics need per-invocation times (arrival_s)")
    t = g.times.select("fid", "arrival_s").sort("fid", "arrival_s")
    base = FINE_WINDOWS_S[0]
    n_b = math.ceil(g.counts.shape[1] * g.window_s / base)
    total = np.bincount(np.minimum((t["arrival_s"].to_numpy() // base).astype(np.int64),
                                   n_b - 1), minlength=n_b).astype(np.float64)
    gaps = t.with_columns(pl.col("arrival_s").diff().over("fid").alias("gap")).drop_nulls("gap")
    per = gaps.group_by("fid").agg(
        (pl.col("gap").std(ddof=0) / pl.col("gap").mean()).alias("cv"), pl.len().alias("n"))
    per = per.filter((pl.col("n") >= 2) & (pl.col("cv").is_finite()))
    cold = {}
    for k in FINE_KEEP_ALIVE_S:
        o = keepalive.overall(keepalive.simulate(frame, keepalive.FixedKeepAlive(k), by="app"))
        cold[k] = o.cold_fraction
    return {"idc": _idc(total, base, base, FINE_WINDOWS_S), "iat_cv": per["cv"].to_numpy(),
            "gap": gaps["gap"].to_numpy(), "cold": cold}


def metrics(table: Frame, functions: Frame | None = None, *, seed: int = 0,
            fine: bool | None = None) -> dict:
    """The figures :func:`errors` compares, for one ``invocation_counts`` or ``invocations``
    table (with its ``functions`` table for published sizes and keep-alive durations);
    ``fine`` (default: where the table has per-invocation times) adds the sub-minute ones."""
    frame = table.lazy().collect()
    fx = None if functions is None else svc._with_keys(functions.lazy().collect())
    g = svc.grid(frame, 60.0)
    w = g.window_s
    total = g.counts.sum(axis=0).astype(np.float64)
    mean = g.counts.mean(axis=1)
    var = g.counts.var(axis=1)
    active = mean > 0
    app_id = g.keys.select(pl.col("app").fill_null(pl.col("function"))
                           .rank("dense").cast(pl.Int64) - 1)["app"].to_numpy()
    apps = np.zeros((int(app_id.max()) + 1, g.counts.shape[1]), dtype=np.int64)
    np.add.at(apps, app_id, g.counts)
    app_cv = iat_cv(apps, w)
    app_cv = app_cv[np.isfinite(app_cv)]
    counts = (pl.DataFrame({"f": np.nonzero(g.counts)[0], "m": np.nonzero(g.counts)[1]})
              .with_columns(pl.Series("count", g.counts[g.counts > 0])))
    counts_table = g.keys.with_row_index("f").join(counts, on="f").select(
        *_KEYS, (pl.col("m") * w).cast(pl.Float64).alias("window_start_s"),
        pl.lit(w).alias("window_s"), "count")
    dmean = _sizes(frame, g, fx, "duration_s", "duration_mean_s")
    dur_fx = fx
    if g.times is not None and "duration_s" in g.times.columns:
        dur_fx = g.keys.select(_KEYS).with_columns(pl.Series("duration_mean_s", dmean))
    ka = {}
    for name, pol in (("fixed10", keepalive.FixedKeepAlive(600.0)),
                      ("hybrid", keepalive.HybridHistogram())):
        o = keepalive.overall(keepalive.simulate(counts_table, pol, by="app", functions=dur_fx,
                                                 seed=seed))
        ka[name] = (o.cold_fraction, o.p75_app_cold_fraction)
    return {
        "idc": _idc(total, w, w),
        "function_idc": (var[active] / mean[active]),
        "iat_cv": iat_cv(g.counts, w),
        "cv0_share": float((app_cv < 1e-9).mean()) if len(app_cv) else None,
        "cv1_share": float((app_cv <= 1.0).mean()) if len(app_cv) else None,
        "rate": g.counts.sum(axis=1) / (g.counts.shape[1] * w),
        "duration_mean": dmean,
        "memory_mean": _sizes(frame, g, fx, "memory_mb", "memory_mean_mb"),
        "keys": g.keys.select(_KEYS),
        "cold": ka,
        "fine": _fine(frame, g) if (g.times is not None if fine is None else fine) else None,
    }


def _ks(a: np.ndarray, b: np.ndarray) -> float | None:
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2:
        return None
    return float(stats.ks_2samp(a, b).statistic)


def _matched_log_error(rm: dict, cm: dict, name: str) -> float | None:
    """Median over functions present in both of |ln(candidate / real)|."""
    r = rm["keys"].with_columns(pl.Series("r", rm[name]))
    c = cm["keys"].with_columns(pl.Series("c", cm[name]))
    j = r.join(c, on=_KEYS, nulls_equal=True).filter(
        pl.col("r").is_finite() & pl.col("c").is_finite() & (pl.col("r") > 0) & (pl.col("c") > 0))
    if j.height == 0:
        return None
    return float(np.median(np.abs(np.log(j["c"].to_numpy() / j["r"].to_numpy()))))


def errors(rm: dict, cm: dict) -> dict[str, float | None]:
    """Errors of a candidate's :func:`metrics` ``cm`` against the real ``rm`` (module doc)."""
    common = sorted(set(rm["idc"]) & set(cm["idc"]))
    idc = (max(abs(cm["idc"][w] - rm["idc"][w]) / rm["idc"][w] for w in common)
           if common else None)

    def absdiff(k):
        return None if rm[k] is None or cm[k] is None else abs(cm[k] - rm[k])

    def rel(a, b):
        return abs(a - b) / b if b > 0 else None

    lr, lc = (np.log10(x[x > 0]) for x in (rm["rate"], cm["rate"]))
    return {
        "idc_max_rel_error": idc,
        "function_idc_ks": _ks(rm["function_idc"], cm["function_idc"]),
        "iat_cv_ks": _ks(rm["iat_cv"], cm["iat_cv"]),
        "cv0_share_error": absdiff("cv0_share"),
        "cv1_share_error": absdiff("cv1_share"),
        "rate_ks": _ks(rm["rate"], cm["rate"]),
        "rate_wasserstein": float(stats.wasserstein_distance(lr, lc)) if len(lr) and len(lc)
        else None,
        "duration_mean_error": _matched_log_error(rm, cm, "duration_mean"),
        "duration_ks": _ks(rm["duration_mean"], cm["duration_mean"]),
        "memory_mean_error": _matched_log_error(rm, cm, "memory_mean"),
        "memory_ks": _ks(rm["memory_mean"], cm["memory_mean"]),
        "cold_fixed10_error": rel(cm["cold"]["fixed10"][0], rm["cold"]["fixed10"][0]),
        "cold_fixed10_p75_error": abs(cm["cold"]["fixed10"][1] - rm["cold"]["fixed10"][1]),
        "cold_hybrid_error": rel(cm["cold"]["hybrid"][0], rm["cold"]["hybrid"][0]),
        **_fine_errors(rm["fine"], cm["fine"]),
    }


FINE_METRICS = ("fine_idc_max_rel_error", "exact_iat_cv_ks", "exact_cv1_share_error",
                "gap_ks", *(f"cold_fixed{int(k)}s_error" for k in FINE_KEEP_ALIVE_S))
"""The sub-minute error names (module doc), present where the real trace has times."""


def _fine_errors(rf: dict | None, cf: dict | None) -> dict[str, float | None]:
    if rf is None:
        return {}
    if cf is None:
        return dict.fromkeys(FINE_METRICS)
    common = sorted(set(rf["idc"]) & set(cf["idc"]))
    share = [float((x <= 1.0).mean()) if len(x) else None for x in (rf["iat_cv"], cf["iat_cv"])]
    return {
        "fine_idc_max_rel_error": (max(abs(cf["idc"][w] - rf["idc"][w]) / rf["idc"][w]
                                       for w in common) if common else None),
        "exact_iat_cv_ks": _ks(rf["iat_cv"], cf["iat_cv"]),
        "exact_cv1_share_error": (None if None in share else abs(share[1] - share[0])),
        "gap_ks": _ks(rf["gap"], cf["gap"]),
        **{f"cold_fixed{int(k)}s_error": (abs(cf["cold"][k] - rf["cold"][k]) / rf["cold"][k]
                                          if rf["cold"][k] > 0 else None)
           for k in FINE_KEEP_ALIVE_S},
    }


def baseline(reference: Frame, kind: str, duration_s: float, seed: int,
             functions: Frame | None = None) -> pl.DataFrame:
    """A ``replay_uniform`` or ``poisson`` baseline ``invocations`` table (module doc)."""
    frame = reference.lazy().collect()
    fx = None if functions is None else functions.lazy().collect()
    g = svc.grid(frame, 60.0)
    w = g.window_s
    rng = np.random.default_rng(seed)
    n_t = math.ceil(duration_s / w)
    if kind == "replay_uniform":
        cols = np.arange(n_t) % g.counts.shape[1]
        c = g.counts[:, cols]
        f, m = np.nonzero(c)
        cnt = c[f, m]
        t = (np.repeat(m, cnt) + rng.random(int(cnt.sum()))) * w
        fid = np.repeat(f, cnt)
    elif kind == "poisson":
        rate = g.counts.sum(axis=1) / (g.counts.shape[1] * w)
        n = rng.poisson(rate * duration_s)
        fid = np.repeat(np.arange(len(rate)), n)
        t = rng.random(int(n.sum())) * duration_s
    else:
        raise ValueError(f"unknown baseline {kind!r}; known: {', '.join(BASELINES)}")
    keep = t < duration_s
    fid, t = fid[keep], t[keep]
    order = np.argsort(t, kind="stable")
    fid, t = fid[order], t[order]
    dk = sv._knots(fx, g, sq.DURATION_COLUMNS, sq.DURATION_PROBS, "duration_s")
    mk = sv._knots(fx, g, sq.MEMORY_COLUMNS, sq.MEMORY_PROBS, "memory_mb")
    dur = sq.piecewise_uniform(np.asarray(sq.DURATION_PROBS), dk, fid, rng.random(len(fid)))
    mem = sq.piecewise_uniform(np.asarray(sq.MEMORY_PROBS), mk, fid, rng.random(len(fid)))
    out = pl.DataFrame({
        "trace": f"baseline/{kind}", "arrival_s": t,
        **{k: sv.labels(g.keys[k].to_list(), fid, k)
           for k in ("tenant", "app", "function", "trigger")},
        "duration_s": dur, "memory_mb": mem,
    }).with_columns(pl.col("duration_s", "memory_mb").fill_nan(None))
    return conform("invocations", out, categorical=True)


def _span(frame: pl.DataFrame) -> float:
    g = svc.grid(frame, 60.0)
    return g.counts.shape[1] * g.window_s


def fidelity(real: Frame, synthetic: pl.DataFrame | Sequence[pl.DataFrame], *,
             functions: Frame | None = None, reference: Frame | None = None,
             seed: int = 0, baselines: bool = True) -> pl.DataFrame:
    """Compare ``synthetic`` (one trace or runs under several seeds) to ``real`` next to the
    baselines built from ``reference`` (default ``real``) with the same seeds per run, each
    as long as that run (on the 60 s grid).

    Returns one row per metric: metric, model, replay_uniform, poisson (mean errors over
    runs), with several runs their ``_sd`` columns and ``verdict``; ``model_best`` where the
    model's mean error is the smallest (ties with an exact baseline are not best)."""
    runs = [synthetic] if isinstance(synthetic, pl.DataFrame) else list(synthetic)
    if not runs:
        raise ValueError("fidelity: no synthetic traces")
    fx = None if functions is None else functions.lazy().collect()
    real_f = real.lazy().collect()
    ref = real_f if reference is None else reference.lazy().collect()
    rm = metrics(real_f, fx, seed=seed)
    fine = rm["fine"] is not None  # candidates are per-invocation: scored the same way
    kinds = ("model", *(BASELINES if baselines else ()))
    per: dict[str, list[dict]] = {k: [] for k in kinds}
    for i, s in enumerate(runs):
        per["model"].append(errors(rm, metrics(s, fx, seed=seed, fine=fine)))
        if baselines:
            duration = _span(s)  # as long as the candidate it stands beside
            for k, kind in enumerate(BASELINES):
                b = baseline(ref, kind, duration, seed + 10 + 2 * i + k, fx)
                per[kind].append(errors(rm, metrics(b, fx, seed=seed, fine=fine)))
    names = list(per["model"][0])

    def summary(kind, name):
        v = np.array([r[name] for r in per[kind] if r[name] is not None], dtype=np.float64)
        if v.size == 0:
            return None, None, 0
        return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None), int(v.size)

    table = {k: [summary(k, n) for n in names] for k in kinds}
    cols: dict[str, list] = {"metric": names}
    for k in kinds:
        cols[k] = [s[0] for s in table[k]]
    if len(runs) > 1:
        for k in kinds:
            cols[f"{k}_sd"] = [s[1] for s in table[k]]
        if baselines:
            cols["verdict"] = [verdict(table["model"][i], [table[b][i] for b in BASELINES])
                               for i in range(len(names))]
    out = pl.DataFrame(cols, schema_overrides={k: pl.Float64 for k in cols if k not in
                                               ("metric", "verdict")}, strict=False)
    if baselines:
        best = pl.all_horizontal([pl.col("model") < pl.col(b) for b in BASELINES])
        out = out.with_columns(pl.when(pl.col("model").is_null()).then(None).otherwise(best)
                               .alias("model_best"))
    return out


def split_half(table: Frame) -> tuple[pl.DataFrame, pl.DataFrame, float]:
    """First and second halves by time (the first half of the days when the trace spans two
    or more, else of its time), each from its own zero; returns (first, second, offset_s)."""
    frame = table.lazy().collect()
    if "window_start_s" in frame.columns:
        t = "window_start_s"
        start = float(frame[t].min())
        end = float((frame[t] + frame["window_s"]).max())
    else:
        t = "arrival_s"
        start, end = float(frame[t].min()), float(frame[t].max())
    span = end - start
    half = (math.floor(span / svc.DAY_S / 2) * svc.DAY_S if span >= 2 * svc.DAY_S
            else math.floor(span / 2 / 60.0) * 60.0)
    mid = start + half
    first = frame.filter(pl.col(t) < mid).with_columns(pl.col(t) - start)
    second = frame.filter(pl.col(t) >= mid).with_columns(pl.col(t) - mid)
    return first, second, half


def holdout(table: Frame, functions: Frame | None = None, *, seed: int = 0, runs: int = 3,
            within: sv.WithinWindow | None = None) -> pl.DataFrame:
    """Fit on the first half, sample the second half's span continuing the fitted time
    (timer phases, harmonics), compare to the second half; baselines from the first half."""
    fx = None if functions is None else functions.lazy().collect()
    first, second, offset = split_half(table)
    model = sv.fit(first, fx, within=within)
    duration = _span(second)
    samples = [model.sample(duration, seed + i, start_s=offset) for i in range(runs)]
    return fidelity(second, samples if runs > 1 else samples[0], functions=fx,
                    reference=first, seed=seed)
