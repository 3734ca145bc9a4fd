"""Inter-arrival times: statistics with explicit ties, and distribution fits.

Part of :mod:`servetrace.analysis.burstiness`, whose docstring states the conventions
(input shapes, resolution and ties, windows, span) and re-exports the public names.

References
----------
* Cox, D. R. & Lewis, P. A. W. (1966). *The Statistical Analysis of Series of Events*.
  Methuen. (Index of dispersion of counts.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl

from servetrace.analysis import fitting
from servetrace.analysis.counting import _BLOCK, By, Events, _frame, _prepare, _Prepared

#: A CV (and a best fit) is reported only when the mean gap is at least this many times the
#: resolution r: rounding then moves E[X²] by at most r²/6 ≤ 0.2 % of the mean's square.
MIN_GAP_RESOLUTIONS = 10


# --------------------------------------------------------------------------------------------
# Inter-arrival times


def _gaps(ev: _Prepared) -> tuple[np.ndarray, np.ndarray]:
    """(gid, gap) of consecutive arrivals within a group (ties are 0 after snapping)."""
    if "gaps" not in ev.memo:
        if ev.n_groups == 1:  # one group: every consecutive pair
            ev.memo["gaps"] = (ev.gid[1:], np.diff(ev.times))
        else:
            same = ev.gid[1:] == ev.gid[:-1]
            ev.memo["gaps"] = (ev.gid[1:][same], np.diff(ev.times)[same])
    return ev.memo["gaps"]


def _require_arrivals(ev: _Prepared, what: str) -> None:
    if ev.kind != "arrivals":
        raise ValueError(f"{what}: needs arrival times (an 'arrival_s' column); inter-arrival "
                         "times are not defined on window counts (invocation_counts)")


def _group_moments(gid: np.ndarray, x: np.ndarray, g: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, mean and sample standard deviation (n − 1, two passes) of ``x`` per group."""
    if g == 1:
        m = float(x.mean()) if x.size else np.nan
        sd = float(x.std(ddof=1)) if x.size > 1 else np.nan
        return np.array([x.size]), np.array([m]), np.array([sd])
    n = np.bincount(gid, minlength=g)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(gid, weights=x, minlength=g) / n
        dev = x - mean[gid]
        sd = np.sqrt(np.bincount(gid, weights=dev * dev, minlength=g) / (n - 1))
    return n, mean, np.where(n > 1, sd, np.nan)


_SELECT_MIN = 1 << 16      # below this many values, quantiles by a plain partition
_SELECT_SAMPLE = 1 << 14   # strided sample that brackets each wanted rank


def _quantiles(x: np.ndarray, qs: Sequence[float], zeros: int = 0) -> np.ndarray:
    """``np.quantile(x, qs)`` (linear) of finite ``x``, the same bits, without copying or
    partitioning all of ``x``; with ``zeros`` > 0 (``x`` ≥ 0 holding that many zeros), the
    quantiles of its positive values, whose order statistics are those of ``x`` past the
    zeros.

    NumPy's rule (Hyndman & Fan 1996, definition 7): with h = (n − 1)·q, the order statistics
    a = x_(⌊h⌋) and b = x_(⌊h⌋+1) (both x_(n−1) when h ≥ n − 1) are interpolated as NumPy's
    ``_lerp`` does, a + (b − a)·γ, or b − (b − a)·(1 − γ) when γ = h − ⌊h⌋ ≥ ½. The order
    statistics are selected inside a narrow band of values around each rank: a sorted strided
    sample of x brackets the rank (±4 binomial standard deviations), one pass counts the
    values below the band and gathers those in it, and a partition of the band gives the
    rank. A band that misses its rank (an unlucky sample) falls back to a full partition.
    """
    q = np.asarray(qs, dtype=np.float64)
    n = x.size - zeros
    if x.size < _SELECT_MIN:
        return np.quantile(x[x > 0] if zeros else x, q)
    h = (n - 1) * q
    lo = np.floor(h)
    first = lo.astype(np.int64)
    second = first + 1
    top = h >= n - 1
    first[top] = second[top] = n - 1
    ranks = np.unique(np.concatenate([first, second])) + zeros  # ranks in x
    sample = np.sort(x[:: x.size // _SELECT_SAMPLE])
    m = sample.size
    p = ranks / (x.size - 1)
    slack = 4 * np.sqrt(m * p * (1 - p)) + 8
    at_lo = np.floor(p * (m - 1) - slack).astype(np.int64)
    at_hi = np.ceil(p * (m - 1) + slack).astype(np.int64)
    low = np.where(at_lo <= 0, -np.inf, sample[np.clip(at_lo, 0, m - 1)])
    high = np.where(at_hi >= m - 1, np.inf, sample[np.clip(at_hi, 0, m - 1)])
    found: dict[int, float] = {}
    i = 0
    while i < ranks.size:  # one band per group of overlapping brackets (a handful)
        a, b, j = low[i], high[i], i + 1
        while j < ranks.size and low[j] <= b:
            a, b, j = min(a, low[j]), max(b, high[j]), j + 1
        below = int(np.count_nonzero(x < a))
        inside = x >= a
        inside &= x <= b
        band = x[inside]
        k = ranks[i:j] - below
        if k.min() < 0 or k.max() >= band.size:  # the band missed: select among all
            return np.quantile(x[x > 0] if zeros else x, q)
        found.update(zip(ranks[i:j].tolist(), np.partition(band, k)[k].tolist(),
                         strict=True))
        i = j
    a = np.array([found[r + zeros] for r in first.tolist()])
    b = np.array([found[r + zeros] for r in second.tolist()])
    gamma = h - first  # NumPy: h − ⌊h⌋, with ⌊h⌋ = −1 past the end (b − a = 0 there)
    gamma[top] = h[top] + 1
    diff = b - a
    out = a + diff * gamma
    upper = gamma >= 0.5
    out[upper] = (b - diff * (1 - gamma))[upper]
    return out


def _group_quantiles(gid: np.ndarray, x: np.ndarray, g: int, qs: Sequence[float]
                     ) -> np.ndarray:
    """Linear-interpolation quantiles of ``x`` per group: a (g, len(qs)) array, NaN if empty."""
    out = np.full((g, len(qs)), np.nan)
    if x.size == 0:
        return out
    if g == 1:
        out[0] = _quantiles(x, qs)
        return out
    frame = pl.DataFrame({"g": gid, "x": x}).group_by("g").agg(
        pl.col("x").quantile(q, "linear").alias(f"q{i}") for i, q in enumerate(qs))
    rows = frame["g"].to_numpy()
    for i in range(len(qs)):
        out[rows, i] = frame[f"q{i}"].to_numpy()
    return out


def _one_group_gaps(gap: np.ndarray, n_ties: int, qs: Sequence[float]
                    ) -> tuple[float, float, float, float, np.ndarray]:
    """Mean, sample SD, maximum and ``qs`` quantiles of the positive gaps of one group, and
    the sample SD of all its gaps, from gaps ≥ 0 of which ``n_ties`` are 0: the statistics
    :func:`_group_moments` and :func:`_quantiles` give, taken in blocks of rows without
    copying the positive gaps (the zeros add nothing to Σ x, and nothing to Σ (x − x̄)² over
    the positive gaps once masked; they are the lowest order statistics)."""
    n_all, n_pos = gap.size, gap.size - n_ties
    total = float(sum(float(gap[lo:lo + _BLOCK].sum()) for lo in range(0, n_all, _BLOCK)))
    mean_all = total / n_all if n_all else np.nan
    mean_pos = total / n_pos if n_pos else np.nan
    ss_all = ss_pos = 0.0
    for lo in range(0, n_all, _BLOCK):  # blocks of rows, not a loop over rows
        block = gap[lo:lo + _BLOCK]
        d = block - mean_all
        ss_all += float((d * d).sum())
        if n_ties:
            d = np.where(block > 0, block - mean_pos, 0.0)
            ss_pos += float((d * d).sum())
    ss_pos = ss_pos if n_ties else ss_all
    sd_all = math.sqrt(ss_all / (n_all - 1)) if n_all > 1 else np.nan
    sd_pos = math.sqrt(ss_pos / (n_pos - 1)) if n_pos > 1 else np.nan
    top = float(gap.max()) if n_pos else np.nan
    quantiles = (_quantiles(gap, qs, zeros=n_ties) if n_pos
                 else np.full(len(qs), np.nan))
    return mean_pos, sd_pos, top, sd_all, quantiles


def _interarrival(ev: _Prepared) -> pl.DataFrame:
    g = ev.n_groups
    n = np.array([ev.gid.size]) if g == 1 else np.bincount(ev.gid, minlength=g)
    bounds = np.concatenate([[0], np.cumsum(n)])
    duration = ev.times[bounds[1:] - 1] - ev.times[bounds[:-1]]
    ggid, gap = _gaps(ev)
    qs = (0.5, 0.9, 0.99)
    if g == 1:  # gaps ≥ 0 in time order: blocks of rows, no copies
        n_ties = np.array([np.count_nonzero(gap == 0)])
        mean, sd, top, sd_all, quantiles = _one_group_gaps(gap, int(n_ties[0]), qs)
        mean_b, sd_b, max_b = np.array([mean]), np.array([sd]), np.array([top])
        sd_req, q = np.array([sd_all]), quantiles[None, :]
    else:
        tie = gap == 0
        n_ties = np.bincount(ggid[tie], minlength=g)
        _, _, sd_req = _group_moments(ggid, gap, g)
        bg, bgap = ggid[~tie], gap[~tie]
        del tie
        n_b, mean_b, sd_b = _group_moments(bg, bgap, g)
        max_b = np.full(g, np.nan)
        starts = np.searchsorted(bg, np.arange(g))
        has = n_b > 0
        if has.any():
            max_b[has] = np.maximum.reduceat(bgap, starts[has])
        q = _group_quantiles(bg, bgap, g, qs)
    req = _request_figures(n, duration, n_ties, sd_req, ev.resolution_s)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _frame(ev, np.arange(g), {
            "n": req["n"], "duration_s": duration, "rate_per_s": req["rate_per_s"],
            "mean_s": mean_b, "cv": req["cv"],
            "p50_s": q[:, 0], "p90_s": q[:, 1], "p99_s": q[:, 2], "max_s": max_b,
            "tie_fraction": req["tie_fraction"], "resolution_s": req["resolution_s"],
            "n_batches": n - n_ties, "mean_batch_size": n / (n - n_ties),
            "cv_request": req["cv_request"], "cv_batch": sd_b / mean_b,
        })


def _request_figures(n: np.ndarray, duration: np.ndarray, n_ties: np.ndarray,
                     sd_req: np.ndarray, r: float) -> dict[str, np.ndarray]:
    """The request-level figures of :func:`interarrival_stats` per group from the arrivals
    ``n``, the span ``duration`` (last − first), the zero gaps ``n_ties`` and the sample SD of
    all gaps ``sd_req`` (what a pass over the gaps in chunks also gives)."""
    n_gaps = n - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_req = duration / n_gaps
        cv_req = np.where(n_gaps > 1, sd_req / mean_req, np.nan)
        return {"n": n.astype(np.int64), "duration_s": duration,
                "rate_per_s": np.where(duration > 0, n_gaps / duration, np.nan),
                "cv": np.where(_resolved(mean_req, r), cv_req, np.nan),
                "tie_fraction": np.where(n_gaps > 0, n_ties / n_gaps, np.nan),
                "resolution_s": np.full(n.size, r), "cv_request": cv_req}


def _resolved(mean_gap: np.ndarray, r: float) -> np.ndarray:
    """Whether a mean gap is at least :data:`MIN_GAP_RESOLUTIONS` times the resolution r."""
    return np.asarray(mean_gap) >= MIN_GAP_RESOLUTIONS * r


def interarrival_stats(events: Events, by: By = None) -> pl.DataFrame:
    """Inter-arrival times per group: mean, coefficient of variation, percentiles, ties.

    Gaps are taken between consecutive arrivals of a group after snapping the times to the
    data's :func:`resolution` r. A zero gap (two arrivals on the same tick, or at the
    identical instant when the timestamps are continuous) is a *tie*, counted in
    ``tie_fraction`` = zero gaps / all gaps; the arrivals sharing a timestamp form one
    *batch*.

    ``cv`` is the one CV of the package (``summary``, ``fidelity`` and the model's calibration
    use it): s / x̄ over *all* gaps of the group, ties included as zero gaps (Cox & Lewis
    1966, s with n − 1). Rounding the times to a grid of r adds e_i − e_(i−1) to each gap,
    with e uniform on (−r/2, r/2): the mean is unchanged and the variance grows by r²/6
    (Sheppard), so this CV holds at any resolution the gaps are large against: a gamma
    renewal process of CV 2 at 1 ms (20 % ties) gives 2.00, where dropping the ties gave
    1.74. It is null (not resolvable) when the mean gap is below
    :data:`MIN_GAP_RESOLUTIONS` × r (Mooncake's 3 s ticks, 10 requests per tick).
    ``cv_request`` is the same figure never nulled, for comparing two traces recorded on one
    grid; ``cv_batch``, ``mean_s``, ``p50_s``, ``p90_s``, ``p99_s`` and ``max_s`` describe the
    gaps between batches (the positive gaps): the ticks' process (for Mooncake the ticks).

    Percentiles interpolate linearly; ``rate_per_s = (n − 1) / duration_s`` = 1 / mean
    request-level gap, with ``duration_s`` = last − first arrival. A Poisson process has
    CV = 1; a gamma renewal process with shape κ has CV = 1/√κ.

    Returns ``[by..., n, duration_s, rate_per_s, mean_s, cv, p50_s, p90_s, p99_s, max_s,
    tie_fraction, resolution_s, n_batches, mean_batch_size, cv_request, cv_batch]``;
    statistics that need more gaps than a group has are null. Raises ``ValueError`` for
    counts input.
    """
    ev = _prepare(events, by)
    _require_arrivals(ev, "interarrival_stats")
    return _interarrival(ev)


# --------------------------------------------------------------------------------------------
# Distribution fits


def _fit_gaps(ev: _Prepared, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(gid, gap) of the gaps :func:`fit_interarrivals` describes, in time order per group.

    Continuous timestamps: the positive gaps (exact ties left out). On a grid of r > 0: every
    arrival moves by an independent uniform offset in (−r/2, r/2) (seeded) and the group is
    re-sorted, so tied arrivals are spread within their tick as the model's fitting does
    (:func:`servetrace.synth.model.fit_arrivals`) and every gap, ties included, is kept.
    """
    ggid, gap = _gaps(ev)
    r = ev.resolution_s
    if r <= 0:
        positive = gap > 0
        if positive.all():
            return ggid, gap
        if ev.n_groups == 1:  # ids all 0: a view of the right length
            kept = gap[positive]
            return ev.gid[: kept.size], kept
        return ggid[positive], gap[positive]
    tt = ev.times + np.random.default_rng(seed).uniform(-r / 2, r / 2, ev.times.size)
    if ev.n_groups == 1:
        tt.sort()
        return ev.gid[1:], np.diff(tt)
    order = np.lexsort((tt, ev.gid))
    tt, tg = tt[order], ev.gid[order]
    keep = tg[1:] == tg[:-1]
    return tg[1:][keep], np.diff(tt)[keep]


def interarrival_gaps(events: Events, by: By = None, *, seed: int = 0) -> pl.DataFrame:
    """The inter-arrival times that :func:`fit_interarrivals` describes, one row per gap.

    Continuous timestamps: the gaps between consecutive distinct timestamps of a group (exact
    ties left out). On a grid of r > 0: every arrival is spread uniformly within its tick
    (±r/2, with ``seed``) and all gaps are kept, ties included, the values to compare with a
    fitted CDF at scales above r. Returns ``[by..., gap_s]`` in time order within each group.
    Raises ``ValueError`` for counts input.
    """
    ev = _prepare(events, by)
    _require_arrivals(ev, "interarrival_gaps")
    gid, gap = _fit_gaps(ev, seed)
    return _frame(ev, gid, {"gap_s": gap})


def _fit(ev: _Prepared, families: Sequence[str], seed: int, max_samples: int,
         min_gaps: int) -> pl.DataFrame:
    ggid, gap = _gaps(ev)
    n_ties = (np.array([np.count_nonzero(gap == 0)]) if ev.n_groups == 1
              else np.bincount(ggid[gap == 0], minlength=ev.n_groups))
    r = ev.resolution_s
    if r <= 0:
        ggid, gap = _fit_gaps(ev, seed)
    else:  # gaps in whole ticks, ties included: the grouped-data likelihood
        gap = np.rint(gap / r).astype(np.int64)
    bounds = np.searchsorted(ggid, np.arange(ev.n_groups + 1))
    return _fit_groups(ev, [gap[bounds[g]:bounds[g + 1]] for g in range(ev.n_groups)],
                       n_ties, families, seed, max_samples, min_gaps)


def _fit_groups(ev: _Prepared, gaps: Sequence[np.ndarray | tuple[np.ndarray, np.ndarray]],
                n_ties: np.ndarray, families: Sequence[str], seed: int, max_samples: int,
                min_gaps: int) -> pl.DataFrame:
    """:func:`fit_interarrivals`' frame from each group's gaps: on a grid of r > 0 the gaps
    in whole ticks, or their histogram ``(ticks, counts)``; otherwise the positive gaps
    (or, out of core, the very subsample of them that :func:`fitting.fit_distributions`
    would draw)."""
    r = ev.resolution_s
    parts = []
    for g in range(ev.n_groups):  # one fit per group (each vectorized over its gaps)
        part = gaps[g]
        size = int(part[1].sum()) if isinstance(part, tuple) else part.size
        if size < min_gaps:
            continue
        if isinstance(part, tuple):
            fit = fitting.fit_rounded_counts(*part, r, families, seed=seed)
        elif r > 0:
            fit = fitting.fit_rounded(part, r, families, seed=seed)
        else:
            fit = fitting.fit_distributions(part, families, max_samples=max_samples,
                                            seed=seed)
        if fit.height == 0:
            continue
        fit = fit.with_columns(pl.lit(r).alias("resolution_s"),
                               pl.lit(int(n_ties[g]), dtype=pl.Int64).alias("n_ties"))
        parts.append(pl.concat([ev.keys[[g] * fit.height], fit], how="horizontal")
                     if ev.by else fit)
    if not parts:
        schema = {**ev.keys.schema, **fitting.FIT_SCHEMA, "resolution_s": pl.Float64,
                  "n_ties": pl.Int64}
        return pl.DataFrame(schema=schema)
    return pl.concat(parts)


def fit_interarrivals(events: Events, by: By = None,
                      families: Sequence[str] = fitting.DEFAULT_FAMILIES, *, seed: int = 0,
                      max_samples: int = 200_000, min_gaps: int = 10) -> pl.DataFrame:
    """Maximum-likelihood fits of the inter-arrival times, ranked by AIC and BIC, with KS.

    Continuous timestamps: :func:`servetrace.analysis.fitting.fit_distributions` (AIC, Akaike 1974;
    BIC, Schwarz 1978; KS distance) on each group's positive gaps (exact ties, zero gaps, are not
    fitted; their number is in ``n_ties``). Timestamps on a grid (:func:`resolution`
    r > 0): :func:`servetrace.analysis.fitting.fit_rounded` on *every* gap in whole ticks, ties
    included, by the grouped-data likelihood of a continuous gap read through rounded
    timestamps (Heitjan 1989): ties below the resolution are neither dropped (which biases
    the CV down and the family towards Weibull; a gamma renewal process of CV 2 at 1 ms has
    20 % ties) nor invented. ``loglik`` is then that of the tick counts, ``ks`` the discrete
    KS distance, and ``n`` counts the ties; ``seed`` only drives the search's starting point.
    The fitted process is the request process at the data's resolution, whose CV is
    :func:`interarrival_stats`' ``cv``. Groups with fewer than ``min_gaps`` gaps are left out.

    Returns ``[by..., family, params, n, n_dropped, n_params, loglik, aic, bic, ks, rank_aic,
    rank_bic, resolution_s, n_ties]``, per group sorted by ``rank_aic``. Raises
    ``ValueError`` for counts input.
    """
    ev = _prepare(events, by)
    _require_arrivals(ev, "fit_interarrivals")
    return _fit(ev, families, seed, max_samples, min_gaps)
