"""Maximum-likelihood fits of positive continuous distributions, ranked by AIC and BIC.

One routine for every fitted quantity in the package (inter-arrival times, token lengths,
cold-start times), so their fits are comparable: the same families, the same estimators, the
same goodness-of-fit figures.

* AIC = 2k − 2 ln L̂ (Akaike 1974), BIC = k ln n − 2 ln L̂ (Schwarz 1978), k free parameters.
* KS = sup_x |F_n(x) − F̂(x)|, the Kolmogorov–Smirnov distance between the empirical CDF and the
  fitted one. Its p-value is not reported: the parameters are estimated from the same data, so
  the standard KS p-value would be wrong (Lilliefors 1967); use KS as a distance.

Discrete data (token counts) are fitted as if continuous; the ranking is what matters there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy import optimize, special, stats

FAMILIES = ("exponential", "gamma", "weibull", "lognormal", "pareto", "lognormal_mixture2")
DEFAULT_FAMILIES = ("exponential", "gamma", "weibull", "lognormal")
MIXTURE_SAMPLES = 50_000

_N_PARAMS = {"exponential": 1, "gamma": 2, "weibull": 2, "lognormal": 2, "pareto": 2,
             "lognormal_mixture2": 5}

FIT_SCHEMA = {"family": pl.String, "params": pl.String, "n": pl.Int64, "n_dropped": pl.Int64,
              "n_params": pl.Int64, "loglik": pl.Float64, "aic": pl.Float64, "bic": pl.Float64,
              "ks": pl.Float64, "rank_aic": pl.Int64, "rank_bic": pl.Int64}


@dataclass(frozen=True)
class Distribution:
    """A fitted distribution: ``family`` from :data:`FAMILIES` and its named ``params``.

    Parameterizations: exponential ``scale`` (mean); gamma ``shape``, ``scale``; weibull
    ``shape``, ``scale``; lognormal ``mu``, ``sigma`` of ln x; pareto ``alpha``, ``xm`` (type I,
    support x ≥ xm); lognormal_mixture2 ``w`` (weight of component 1), ``mu1``, ``sigma1``,
    ``mu2``, ``sigma2``.
    """

    family: str
    params: dict[str, float] = field(hash=False)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown distribution family {self.family!r}; "
                             f"known: {', '.join(FAMILIES)}")

    def _scipy(self):  # a scipy frozen distribution
        p = self.params
        match self.family:
            case "exponential":
                return stats.expon(scale=p["scale"])
            case "gamma":
                return stats.gamma(p["shape"], scale=p["scale"])
            case "weibull":
                return stats.weibull_min(p["shape"], scale=p["scale"])
            case "lognormal":
                return stats.lognorm(p["sigma"], scale=math.exp(p["mu"]))
            case "pareto":
                return stats.pareto(p["alpha"], scale=p["xm"])
        raise AssertionError(self.family)

    def _components(self) -> tuple[float, float, float, float, float]:
        p = self.params
        return p["w"], p["mu1"], p["sigma1"], p["mu2"], p["sigma2"]

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.family != "lognormal_mixture2":
            return self._scipy().logpdf(x)
        w, m1, s1, m2, s2 = self._components()
        y = np.log(x)
        return np.logaddexp(math.log(w) + stats.norm.logpdf(y, m1, s1),
                            math.log1p(-w) + stats.norm.logpdf(y, m2, s2)) - y

    def cdf(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.family != "lognormal_mixture2":
            return self._scipy().cdf(x)
        w, m1, s1, m2, s2 = self._components()
        with np.errstate(divide="ignore"):
            y = np.log(np.maximum(x, 0.0))
        return w * stats.norm.cdf(y, m1, s1) + (1 - w) * stats.norm.cdf(y, m2, s2)

    def ppf(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, dtype=np.float64)
        if self.family != "lognormal_mixture2":
            return self._scipy().ppf(q)
        # Monotone mixture CDF: bisection in log space, vectorized over q (60 halvings reach
        # float precision from a bracket spanning both components by 12 sigma).
        w, m1, s1, m2, s2 = self._components()
        lo = np.full(q.shape, min(m1 - 12 * s1, m2 - 12 * s2))
        hi = np.full(q.shape, max(m1 + 12 * s1, m2 + 12 * s2))
        for _ in range(60):
            mid = (lo + hi) / 2
            below = w * stats.norm.cdf(mid, m1, s1) + (1 - w) * stats.norm.cdf(mid, m2, s2) < q
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        return np.exp((lo + hi) / 2)

    def rvs(self, size: int, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        if self.family != "lognormal_mixture2":
            return self._scipy().rvs(size=size, random_state=rng)
        w, m1, s1, m2, s2 = self._components()
        first = rng.random(size) < w
        return np.exp(np.where(first, rng.normal(m1, s1, size), rng.normal(m2, s2, size)))

    def mean(self) -> float:
        if self.family != "lognormal_mixture2":
            return float(self._scipy().mean())
        w, m1, s1, m2, s2 = self._components()
        return w * math.exp(m1 + s1 * s1 / 2) + (1 - w) * math.exp(m2 + s2 * s2 / 2)


def distribution(family: str, params: dict[str, float] | str) -> Distribution:
    """The :class:`Distribution` of a :func:`fit_distributions` row (params: JSON or dict)."""
    return Distribution(family, json.loads(params) if isinstance(params, str) else dict(params))


def _gamma_mle(x: np.ndarray) -> dict[str, float]:
    """Gamma MLE: solve ln k − ψ(k) = ln x̄ − mean(ln x) (Choi & Wette 1969), scale = x̄ / k."""
    mean = float(x.mean())
    s = math.log(mean) - float(np.log(x).mean())
    if s <= 0:  # all values equal: the limit is a point mass; report a very large shape
        return {"shape": 1e8, "scale": mean / 1e8}
    k = (3 - s + math.sqrt((s - 3) ** 2 + 24 * s)) / (12 * s)  # Minka's starting point
    for _ in range(50):
        step = (math.log(k) - special.digamma(k) - s) / (1 / k - special.polygamma(1, k))
        k = max(k - step, k / 10)
        if abs(step) < 1e-10 * k:
            break
    return {"shape": k, "scale": mean / k}


def _weibull_mle(x: np.ndarray) -> dict[str, float]:
    """Weibull MLE: shape k solves 1/k + mean(ln x) − Σ xᵏ ln x / Σ xᵏ = 0; λ = (mean xᵏ)^(1/k)."""
    logx = np.log(x)
    mlog = float(logx.mean())
    z = logx - logx.max()  # scale-free: work with x / max(x) to keep xᵏ finite

    def score(k: float) -> float:
        xk = np.exp(k * z)
        return 1 / k + mlog - float((xk * logx).sum() / xk.sum())

    lo, hi = 1e-3, 1.0
    while score(hi) > 0 and hi < 1e4:
        hi *= 2
    k = optimize.brentq(score, lo, hi, xtol=1e-10) if score(lo) * score(hi) < 0 else hi
    scale = math.exp(logx.max()) * float(np.exp(k * z).mean()) ** (1 / k)
    return {"shape": k, "scale": scale}


def _ties(x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Where sorted ``x`` holds at most half as many distinct values as values: the index of
    each distinct value's first occurrence and its count (as float); else (empty, None)."""
    none = np.zeros(0, dtype=np.int64), None
    if x.size < 2 or not bool(np.all(x[1:] >= x[:-1])):
        return none
    first = np.flatnonzero(np.concatenate([[True], x[1:] != x[:-1]]))
    if len(first) > x.size // 2:
        return none
    return first, np.diff(np.append(first, x.size)).astype(np.float64)


def _mixture_mle(x: np.ndarray, iterations: int = 200, tol: float = 1e-7) -> dict[str, float]:
    """Two-component lognormal mixture by EM on ln x (Dempster, Laird & Rubin 1977).

    Starts from the lower and upper quartiles of ln x; stops when the mean log-likelihood per
    value improves by less than ``tol`` nats, or after ``iterations`` steps. Sorted ``x`` with
    many ties (token counts) is iterated on its distinct values weighted by their counts.
    """
    y = np.log(x)
    lo, hi = np.quantile(y, [0.25, 0.75])
    sd = max(float(y.std()), 1e-3)
    w, m1, s1, m2, s2 = 0.5, float(lo), sd / 2, float(hi), sd / 2
    total = len(y)
    # Sorted values with many ties (token counts): iterate on the distinct values, each
    # weighted by its count; the sums are the same, over far fewer terms.
    first, weights = _ties(y)
    if weights is not None:
        y = y[first]

    def wsum(v: np.ndarray) -> float:
        # elementwise sums, not BLAS dot products: OpenBLAS threads stall on a busy machine
        return float(v.sum() if weights is None else (weights * v).sum())

    sum_y = wsum(y)
    previous = -np.inf
    for _ in range(iterations):
        a = math.log(w) - math.log(s1) - 0.5 * ((y - m1) / s1) ** 2
        b = math.log1p(-w) - math.log(s2) - 0.5 * ((y - m2) / s2) ** 2
        r = special.expit(a - b)  # responsibility of component 1
        loglik = wsum(np.logaddexp(a, b)) / total
        n1 = wsum(r)
        n2 = total - n1
        if n1 < 1e-9 or n2 < 1e-9:
            break
        w = min(max(n1 / total, 1e-9), 1 - 1e-9)
        ry = wsum(r * y)
        m1 = ry / n1
        m2 = (sum_y - ry) / n2
        s1 = max(math.sqrt(wsum(r * (y - m1) ** 2) / n1), 1e-6)
        s2 = max(math.sqrt(wsum((1 - r) * (y - m2) ** 2) / n2), 1e-6)
        if loglik - previous < tol:
            break
        previous = loglik
    if m1 > m2:  # label components by location, so fits are comparable
        w, m1, s1, m2, s2 = 1 - w, m2, s2, m1, s1
    return {"w": w, "mu1": m1, "sigma1": s1, "mu2": m2, "sigma2": s2}


def fit_family(x: np.ndarray, family: str) -> Distribution:
    """The maximum-likelihood :class:`Distribution` of ``family`` for positive values ``x``."""
    match family:
        case "exponential":
            params = {"scale": float(x.mean())}
        case "gamma":
            params = _gamma_mle(x)
        case "weibull":
            params = _weibull_mle(x)
        case "lognormal":
            logx = np.log(x)
            params = {"mu": float(logx.mean()), "sigma": max(float(logx.std()), 1e-12)}
        case "pareto":  # Type I; xm = min(x), α = n / Σ ln(x / xm)
            xm = float(x.min())
            total = float(np.log(x / xm).sum())
            params = {"alpha": len(x) / total if total > 0 else 1e8, "xm": xm}
        case "lognormal_mixture2":
            # EM costs a pass per step: estimate on an evenly spread subset (the values are
            # sorted, so a stride keeps every quantile), then score on all values as the
            # other families are.
            params = _mixture_mle(x[:: max(1, len(x) // MIXTURE_SAMPLES)])
        case _:
            raise ValueError(f"unknown distribution family {family!r}; "
                             f"known: {', '.join(FAMILIES)}")
    return Distribution(family, params)


def ks_distance(x_sorted: np.ndarray, dist: Distribution) -> float:
    """sup |F_n − F| over sorted values (both one-sided gaps at each jump of F_n)."""
    n = len(x_sorted)
    f = dist.cdf(x_sorted)
    i = np.arange(1, n + 1)
    return float(max((i / n - f).max(), (f - (i - 1) / n).max()))


def _ks_runs(values: np.ndarray, end: np.ndarray, n: int, dist: Distribution) -> float:
    """:func:`ks_distance` of sorted data given as distinct ``values`` whose runs of ties end
    at ranks ``end`` (1-based): within a run F is constant, so its largest gaps are at the
    run's last rank i = end (i/n − F) and its first, i − 1 = the previous run's end
    (F − (i − 1)/n). The same value, from one CDF evaluation per distinct value."""
    f = dist.cdf(values)
    start = np.concatenate([[0], end[:-1]])
    return float(max((end / n - f).max(), (f - start / n).max()))


def _ranked(rows: list[dict]) -> pl.DataFrame:
    """Fit rows as a :data:`FIT_SCHEMA` frame, ranked by AIC and by BIC, best AIC first."""
    frame = pl.DataFrame(rows, schema={k: v for k, v in FIT_SCHEMA.items()
                                       if k not in ("rank_aic", "rank_bic")})
    return (frame.with_columns(
        pl.col("aic").rank("ordinal").cast(pl.Int64).alias("rank_aic"),
        pl.col("bic").rank("ordinal").cast(pl.Int64).alias("rank_bic"))
        .sort("rank_aic"))


def fit_distributions(x: np.ndarray | pl.Series, families: Sequence[str] = DEFAULT_FAMILIES,
                      *, max_samples: int = 200_000, seed: int = 0) -> pl.DataFrame:
    """Fit each family by maximum likelihood and rank them by AIC (and BIC).

    Values that are not finite and positive are dropped (counted in ``n_dropped``); above
    ``max_samples`` values a seeded uniform subsample without replacement is fitted, which keeps
    the standard error of every parameter far below the differences that decide a ranking.
    Integer input is subsampled before its conversion to float (the same draws). When the
    fitted values hold many ties (token counts), the log-likelihood Σ ln f(x_i) and the KS
    distance are taken over the distinct values weighted by their counts: the same sums.

    Returns one row per family: family, params (JSON object), n, n_dropped, n_params, loglik,
    aic, bic, ks, rank_aic (1 = best), rank_bic; sorted by rank_aic. Empty when no value is left.
    """
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown distribution family {unknown[0]!r}; "
                         f"known: {', '.join(FAMILIES)}")
    values = x.to_numpy() if isinstance(x, pl.Series) else np.asarray(x)
    if values.dtype.kind in "iu":  # integers: finite; converted once subsampled
        keep = values > 0
    else:
        values = values.astype(np.float64, copy=False)
        keep = np.isfinite(values) & (values > 0)
    dropped = int(len(values) - np.count_nonzero(keep))
    if dropped:
        values = values[keep]
    if len(values) > max_samples:
        rng = np.random.default_rng(seed)
        values = rng.choice(values, size=max_samples, replace=False)
    if len(values) < 2:
        return pl.DataFrame(schema=FIT_SCHEMA)
    values = np.sort(values.astype(np.float64))
    n = len(values)
    # many ties (token counts): log-likelihood and KS from the distinct values and their
    # counts, the same sums over far fewer density and CDF evaluations
    first, weights = _ties(values)
    distinct = values[first] if weights is not None else values
    end = np.append(first[1:], n) if weights is not None else None
    rows = []
    for family in families:
        dist = fit_family(values, family)
        logpdf = dist.logpdf(distinct)
        loglik = float((logpdf if weights is None else weights * logpdf).sum())
        k = _N_PARAMS[family]
        rows.append({"family": family, "params": json.dumps(dist.params), "n": n,
                     "n_dropped": dropped, "n_params": k, "loglik": loglik,
                     "aic": 2 * k - 2 * loglik, "bic": k * math.log(n) - 2 * loglik,
                     "ks": ks_distance(values, dist) if end is None
                     else _ks_runs(distinct, end, n, dist)})
    return _ranked(rows)


# --------------------------------------------------------------------------------------------
# Gaps between rounded timestamps

#: Families :func:`fit_rounded` supports (those with a closed-form integrated CDF).
ROUNDED_FAMILIES = ("exponential", "gamma", "weibull", "lognormal")
_ROUNDED_EXACT_STEPS = 64  # above this many ticks, P(K = k) ≈ r·f(k·r) (error O(r²f''))


def _integrated_cdf(dist: Distribution, x: np.ndarray) -> np.ndarray:
    """G(x) = ∫₀ˣ F(u) du (0 for x ≤ 0), in closed form for :data:`ROUNDED_FAMILIES`.

    exponential(θ): x − θ(1 − e^(−x/θ)); gamma(a, θ): x·P(a, x/θ) − aθ·P(a+1, x/θ);
    weibull(k, λ): x − λΓ(1 + 1/k)·P(1/k, (x/λ)^k); lognormal(μ, σ):
    x·Φ(z) − e^(μ+σ²/2)·Φ(z − σ), z = (ln x − μ)/σ (P: regularized lower incomplete gamma).
    """
    p = dist.params
    x = np.maximum(np.asarray(x, dtype=np.float64), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        match dist.family:
            case "exponential":
                th = p["scale"]
                g = x + th * np.expm1(-x / th)
            case "gamma":
                a, th = p["shape"], p["scale"]
                g = x * special.gammainc(a, x / th) - a * th * special.gammainc(a + 1, x / th)
            case "weibull":
                k, lam = p["shape"], p["scale"]
                g = x - lam * special.gamma(1 + 1 / k) * special.gammainc(1 / k, (x / lam) ** k)
            case "lognormal":
                mu, s = p["mu"], p["sigma"]
                z = (np.log(np.where(x > 0, x, 1.0)) - mu) / s
                g = np.where(x > 0, x * special.ndtr(z)
                             - math.exp(mu + s * s / 2) * special.ndtr(z - s), 0.0)
            case _:
                raise ValueError(f"{dist.family}: not supported on rounded gaps; use one of "
                                 f"{', '.join(ROUNDED_FAMILIES)}")
    return np.where(x > 0, g, 0.0)


def rounded_pmf(dist: Distribution, steps: np.ndarray, resolution_s: float) -> np.ndarray:
    """P(K = k): the probability that a gap X ~ ``dist`` between two timestamps rounded to a
    grid of ``resolution_s`` = r reads k ticks.

    With independent uniform rounding phases the observed gap is k with probability
    1 − |X/r − k| for |X/r − k| < 1 (a triangular kernel), so
    P(K = k) = ∫ f(x)(1 − |x/r − k|)⁺ dx = [G((k+1)r) − 2G(kr) + G((k−1)r)] / r with
    G = ∫ F (:func:`_integrated_cdf`; Heitjan 1989, *Inference from grouped continuous data*,
    Statist. Sci. 4(2)); above 64 ticks r·f(kr), which that second difference tends to.
    """
    k = np.asarray(steps, dtype=np.float64)
    r = float(resolution_s)
    exact = k <= _ROUNDED_EXACT_STEPS
    out = np.empty(k.size)
    ke = k[exact]
    out[exact] = (_integrated_cdf(dist, (ke + 1) * r) - 2 * _integrated_cdf(dist, ke * r)
                  + _integrated_cdf(dist, (ke - 1) * r)) / r
    if (~exact).any():
        out[~exact] = r * np.exp(dist.logpdf(k[~exact] * r))
    return out


def _rounded_params(family: str, theta: np.ndarray) -> dict[str, float]:
    if family == "exponential":
        return {"scale": float(np.exp(theta[0]))}
    if family == "lognormal":
        return {"mu": float(theta[0]), "sigma": float(np.exp(theta[1]))}
    return {"shape": float(np.exp(theta[0])), "scale": float(np.exp(theta[1]))}


def _rounded_theta(dist: Distribution) -> np.ndarray:
    p = dist.params
    if dist.family == "exponential":
        return np.array([math.log(p["scale"])])
    if dist.family == "lognormal":
        return np.array([p["mu"], math.log(p["sigma"])])
    return np.array([math.log(p["shape"]), math.log(p["scale"])])


def fit_rounded(steps: np.ndarray, resolution_s: float,
                families: Sequence[str] = DEFAULT_FAMILIES, *, seed: int = 0) -> pl.DataFrame:
    """Maximum-likelihood fits of gaps between timestamps rounded to a grid, ties included.

    ``steps`` are the observed gaps in ticks of ``resolution_s`` (integers ≥ 0; 0 is a tie).
    Each family's continuous parameters maximize the grouped-data likelihood
    ln L = Σ_k n_k ln P(K = k) (:func:`rounded_pmf`; Heitjan 1989), summed over the distinct
    k with their counts n_k, so ties carry their information instead of being dropped or
    jittered. The search (Nelder–Mead on log parameters) starts from the continuous MLE of the
    gaps spread by a triangular jitter of one tick (seeded with ``seed``). AIC and BIC as in
    :func:`fit_distributions`; ``ks`` is the discrete Kolmogorov–Smirnov distance
    max_k |F_n(k) − P(K ≤ k)|, with P(K ≤ k) = [G((k+1)r) − G(kr)] / r.

    Returns the :data:`FIT_SCHEMA` frame (``n`` counts every gap, ties included).
    """
    unknown = [f for f in families if f not in ROUNDED_FAMILIES]
    if unknown:
        raise ValueError(f"{unknown[0]}: not supported on rounded gaps; use one of "
                         f"{', '.join(ROUNDED_FAMILIES)}")
    k_all = np.asarray(steps)
    if k_all.size < 2 or not k_all.any():
        return pl.DataFrame(schema=FIT_SCHEMA)
    ks, counts = np.unique(np.rint(k_all).astype(np.int64), return_counts=True)
    return fit_rounded_counts(ks, counts, resolution_s, families, seed=seed)


#: Above this many gaps, :func:`fit_rounded_counts` starts from this many evenly spaced ones.
MAX_START_GAPS = 1 << 22


def fit_rounded_counts(ks: np.ndarray, counts: np.ndarray, resolution_s: float,
                       families: Sequence[str] = DEFAULT_FAMILIES, *, seed: int = 0
                       ) -> pl.DataFrame:
    """:func:`fit_rounded` of the gaps' histogram: ``counts[i]`` gaps of ``ks[i]`` ticks
    (``ks`` distinct, ascending), all the likelihood reads; a trace too large to hold passes
    its histogram. The search's start spreads at most :data:`MAX_START_GAPS` gaps (evenly
    spaced order statistics of the histogram) by the triangular jitter, so memory stays
    bounded whatever the number of gaps."""
    unknown = [f for f in families if f not in ROUNDED_FAMILIES]
    if unknown:
        raise ValueError(f"{unknown[0]}: not supported on rounded gaps; use one of "
                         f"{', '.join(ROUNDED_FAMILIES)}")
    ks = np.asarray(ks, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if n < 2 or not (ks[counts > 0] != 0).any():
        return pl.DataFrame(schema=FIT_SCHEMA)
    r = float(resolution_s)
    weights = counts.astype(np.float64)
    rng = np.random.default_rng(seed)
    if n <= MAX_START_GAPS:
        spread = np.repeat(ks, counts) + rng.random(n) - rng.random(n)
    else:
        rank = np.arange(MAX_START_GAPS, dtype=np.int64) * n // MAX_START_GAPS
        spread = (ks[np.searchsorted(np.cumsum(counts), rank, side="right")]
                  + rng.random(MAX_START_GAPS) - rng.random(MAX_START_GAPS))
    start_x = np.sort(np.abs(spread[spread != 0]) * r)
    start_x = start_x[:: max(1, start_x.size // 200_000)]  # a start: evenly spread quantiles
    ecdf = np.cumsum(weights) / n
    rows = []
    for family in families:
        start = fit_family(start_x, family)

        def nll(theta: np.ndarray, family: str = family) -> float:
            d = Distribution(family, _rounded_params(family, theta))
            p = rounded_pmf(d, ks, r)
            if not np.all(np.isfinite(p)) or (p <= 0).any():
                return 1e300
            return -float((weights * np.log(p)).sum())

        theta0 = _rounded_theta(start)
        res = optimize.minimize(nll, theta0, method="Nelder-Mead",
                                options={"xatol": 1e-7, "fatol": 1e-6, "maxiter": 2000})
        theta = res.x if res.fun <= nll(theta0) else theta0
        dist = Distribution(family, _rounded_params(family, theta))
        loglik = -nll(theta)
        cdf = (_integrated_cdf(dist, (ks + 1) * r) - _integrated_cdf(dist, ks * r)) / r
        prev = np.concatenate([[0.0], ecdf[:-1]])
        # between observed k the empirical CDF is flat: check both sides of each jump
        ks_dist = float(max(np.abs(ecdf - cdf).max(), np.abs(prev - (cdf - rounded_pmf(
            dist, ks, r))).max()))
        kk = _N_PARAMS[family]
        rows.append({"family": family, "params": json.dumps(dist.params), "n": n,
                     "n_dropped": 0, "n_params": kk, "loglik": loglik,
                     "aic": 2 * kk - 2 * loglik, "bic": kk * math.log(n) - 2 * loglik,
                     "ks": ks_dist})
    return _ranked(rows)
