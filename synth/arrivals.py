"""Arrivals of the workload model: the Cox process, fitted and sampled.

The rate driver (fractional Gaussian noise and its finite-sample variances, in
:mod:`~servetrace.synth.driver`), the base window,
diurnal/weekly harmonics, ON/OFF silences, the renewal inside a window fitted on time-rescaled
gaps, the inter-arrival CV calibration by simulated moments, and the sampling of times by time
rescaling. The model as a whole, with its references, is described in
:mod:`servetrace.synth.model`.
"""

from __future__ import annotations

__all__ = ["driver", "driver_acov", "expected_block_vars", "fgn", "fit_arrivals", "fit_driver",
           "floored", "smoothed_factors"]

import dataclasses
import json
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from scipy import special, stats

from servetrace.synth import chunked
from servetrace.synth.driver import (  # fgn, driver_acov: re-exported, as before the split
    _modulated,
    driver,
    driver_acov,
    expected_block_vars,
    fgn,
    fit_driver,
    smoothed_factors,
)
from servetrace.synth.parameters import (
    _SEED_ROOT,
    CALIBRATION_EVENTS,
    CALIBRATION_RUNS,
    CALIBRATION_STEPS,
    DAY_S,
    FLOOR_STEPS,
    LADDER_S,
    MIN_OFF,
    MIN_WINDOWS,
    TABLE_SIZE,
    WEEK_S,
    WINDOW_COUNT,
    Arrivals,
    Harmonic,
    OnOff,
    Piecewise,
    Renewal,
    Sessions,
    Table,
)


def _rng(seed: int, *path: int) -> np.random.Generator:
    """An independent generator per (seed, component path): changing one part of a model or
    of the sampling never shifts the random numbers of another."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(
        [_SEED_ROOT, int(seed) & 0xFFFFFFFFFFFFFFFF, *path])))


def _normal_scores(x: np.ndarray) -> np.ndarray:
    """Φ⁻¹((rank − ½)/n), ties at their mean rank (van der Waerden scores)."""
    r = stats.rankdata(x)
    return special.ndtri((r - 0.5) / len(x))


def _even_scores(z: np.ndarray) -> np.ndarray:
    """Evenly spaced normal scores Φ⁻¹((r + ½)/n) in the rank order r of ``z``.

    The rank-order method of Iman & Conover (1982): the scores keep the ranks, hence the
    rank correlations, of ``z``, and their distribution is the normal one stratified into n
    equal parts (Latin hypercube sampling, McKay, Beckman & Conover 1979). Used where
    a sample's draws are strongly dependent (a session's turns share most of their input
    score, ρ ≈ 0.85 on BurstGPT): independent scores would make a sample's length marginal
    hang on a few hundred session draws, far noisier than the trace's own marginal.
    """
    n = len(z)
    if n == 0:
        return z
    rank = np.empty(n)
    rank[np.argsort(z, kind="stable")] = np.arange(n)
    return special.ndtri((rank + 0.5) / n)


def _detect_tick(t: np.ndarray) -> float:
    """The grid the timestamps sit on (s), or 0 when they are continuous.

    The candidate grids are the smallest gap between distinct timestamps divided by 1 … 10
    (a trace with gaps of 2 s and 9 s sits on a 1 s grid); the first that is ≥ 1 ms (within
    2 %: float differences of millisecond stamps read 0.000999999999976) and of
    which every such gap is a whole multiple, within 2 % of the grid, is taken (Mooncake: 3 s
    ticks with ±3 ms jitter; BurstGPT: whole seconds), refined by least squares and rounded
    to the millisecond.
    """
    if not _is_sorted(t):
        return _tick_of_gaps(np.diff(np.unique(t)))
    return _tick_of_gaps(None, t)


def _tick_of_gaps(d: np.ndarray | None, t: np.ndarray | None = None) -> float:
    """:func:`_detect_tick` of the positive gaps ``d``, or (``d`` None) of the non-zero gaps
    of the sorted times ``t``, read chunk by chunk with NumPy's sums (no array of gaps)."""
    if d is not None:
        def gaps() -> Iterator[np.ndarray]:
            yield d
    else:
        def gaps() -> Iterator[np.ndarray]:
            return chunked.diffs(t, T_CHUNK, nonzero=True)
    n = chunked.count(gaps)
    if n < 2:
        return 0.0
    low = 1.5 * min(float(c.min()) for c in gaps() if c.size)
    near = [np.unique(c[c < low], return_counts=True) for c in gaps()]
    values = np.concatenate([v for v, _ in near])
    counts = np.concatenate([c for _, c in near])
    values, inverse = np.unique(values, return_inverse=True)
    counts = np.bincount(inverse, weights=counts).astype(np.int64)
    cum = np.cumsum(counts)  # np.median of d[d < low] from its distinct values
    size = int(cum[-1])
    middle = values[np.searchsorted(cum, [(size - 1) // 2, size // 2], side="right")]
    q0 = float(np.mean(middle)) if size % 2 == 0 else float(middle[0])
    total = None
    for k in range(1, 11):  # ≤ 10 candidate grids
        q = q0 / k
        if q < 1e-3 * (1 - 0.02):  # 1 ms within the grid's 2 % (0.000999999999976 is 1 ms)
            break
        if total is None:
            total = chunked.pairwise_sum(gaps(), n)
        # the multiples, then the grid refined on them (Σ d / Σ m), twice
        q = total / chunked.pairwise_sum((_multiples(c, q) for c in gaps()), n)
        worst = max(float(np.abs(c - _multiples(c, q) * q).max()) for c in gaps() if c.size)
        if worst <= 0.02 * q:
            return round(q, 3)
    return 0.0


def _multiples(d: np.ndarray, q: float) -> np.ndarray:
    """max(rint(d / q), 1): the whole number of grid steps of q in each gap."""
    m = d / q
    np.rint(m, out=m)
    return np.maximum(m, 1.0, out=m)


T_CHUNK = 1 << 21
"""Times per chunk where a pass over a trace's times builds temporaries (16 MB each)."""


def _bin_counts(t: np.ndarray, width: float, length: int, clip: int | None = None
                ) -> np.ndarray:
    """Events per bin ``⌊t / width⌋`` (bins ≥ ``clip`` counted in bin ``clip``), bins
    0 … ``length`` − 1, added up chunk by chunk (integer sums: the same as one
    ``np.bincount``)."""
    out = np.zeros(length, dtype=np.int64)
    for lo in range(0, len(t), T_CHUNK):
        b = (t[lo:lo + T_CHUNK] // width).astype(np.int64)
        if clip is not None:
            np.minimum(b, clip, out=b)
        out += np.bincount(b, minlength=length)[:length]
    return out


def _pick_window(rate: float, span: float) -> float:
    want = WINDOW_COUNT / rate if rate > 0 else span
    ladder = [w for w in LADDER_S if w <= span / MIN_WINDOWS]
    if not ladder:
        return max(span / MIN_WINDOWS, 1e-3)
    fits = [w for w in ladder if w >= want]
    return fits[0] if fits else ladder[-1]


def _harmonic_design(t: np.ndarray, harmonics: Sequence[tuple[float, int]]) -> np.ndarray:
    cols = []
    for period, k in harmonics:
        ang = 2 * np.pi * k * t / period
        cols += [np.cos(ang), np.sin(ang)]
    return np.stack(cols, axis=1) if cols else np.zeros((len(t), 0))


def _harmonic_value(a: Arrivals, t: np.ndarray) -> np.ndarray:
    if not a.harmonics:
        return np.ones_like(t)
    x = _harmonic_design(t + a.phase_s, [(h.period_s, h.k) for h in a.harmonics])
    coef = np.array([v for h in a.harmonics for v in (h.a, h.b)])
    return np.exp(x @ coef - a.offset)


def _clock(a: Arrivals, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Grid t_j over [0, duration] (steps of at most 60 s) and D(t_j) = ∫₀^{t_j} d(u) du, the
    deterministic clock of the harmonics (mean rate 1, so D(t) ≈ t over whole periods)."""
    n = max(math.ceil(duration / 60.0), 1)
    grid = np.linspace(0.0, duration, n + 1)
    d = _harmonic_value(a, (grid[:-1] + grid[1:]) / 2)
    return grid, np.concatenate([[0.0], np.cumsum(d * np.diff(grid))])


def _fit_harmonics(t: np.ndarray, span: float, phase: float
                   ) -> tuple[tuple[Harmonic, ...], float]:
    """Diurnal (≥ 2 days) and weekly (≥ 2 weeks) harmonics of ln(hourly count + ½)."""
    terms: list[tuple[float, int]] = []
    if span >= 2 * DAY_S:
        terms += [(DAY_S, k) for k in (1, 2, 3)]
    if span >= 2 * WEEK_S:
        terms += [(WEEK_S, k) for k in (1, 2)]
    if not terms:
        return (), 0.0
    hours = int(span // 3600)
    counts = _bin_counts(t, 3600.0, hours)
    mid = (np.arange(hours) + 0.5) * 3600 + phase
    x = _harmonic_design(mid, terms)
    y = np.log(counts + 0.5)
    design = np.column_stack([np.ones(hours), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    harmonics = tuple(Harmonic(p, k, float(coef[1 + 2 * i]), float(coef[2 + 2 * i]))
                      for i, (p, k) in enumerate(terms))
    # normalize: the mean of exp(harmonics) over the longest period is 1
    period = max(p for p, _ in terms)
    grid = np.linspace(0, period, 4096, endpoint=False)
    offset = float(np.log(np.exp(_harmonic_design(grid, terms) @ coef[1:]).mean()))
    return harmonics, offset


def _fit_renewal(u: np.ndarray) -> Renewal:
    """Unit-mean renewal for rescaled gaps ``u`` (see the module docstring); ``u`` is
    overwritten (rescaled in place: the gaps of a large trace are not copied). The fit
    itself reads them through :func:`_fit_renewal_of`, which makes them chunk by chunk."""
    ok = np.isfinite(u) & (u > 0)
    u = u if ok.all() else u[ok]
    del ok
    if len(u) < 20:
        return Renewal("exponential")
    u /= u.mean()
    return _renewal(u, float(u.std() / u.mean()), lambda: u.copy())


def _fit_renewal_of(t: np.ndarray, rates: np.ndarray, window: float,
                    cells: np.ndarray | None = None, table: bool = True) -> Renewal:
    """``_fit_renewal(_rescaled_gaps(t, rates, window))``, the same renewal, without an
    array of gaps: the rescaled gaps are made chunk by chunk for each sum
    (:mod:`~servetrace.synth.chunked`, NumPy's sums bit for bit), the fit's subsample of
    50,000 is gathered by its indices, and only a renewal that falls back to the empirical
    table (its quantiles need every gap) holds the gaps, and only with ``table`` (without,
    an empirical renewal comes without its table: :func:`_with_table`). ``cells``:
    :func:`_window_of`."""
    def kept() -> Iterator[np.ndarray]:  # the gaps _fit_renewal keeps: finite and positive
        for u in _rescaled_chunks(t, rates, window, cells):
            ok = np.isfinite(u) & (u > 0)
            yield u if ok.all() else u[ok]

    n = chunked.count(kept)
    if n < 20:
        return Renewal("exponential")
    scale = chunked.pairwise_sum(kept(), n) / n

    def scaled() -> Iterator[np.ndarray]:  # u /= u.mean()
        for u in kept():
            yield u / scale

    mean, std = chunked.mean_std(scaled, n)
    if n > RENEWAL_SAMPLE:  # fit_distributions' own subsample (its indices depend on n only)
        pick = np.sort(np.random.default_rng(0).choice(n, size=RENEWAL_SAMPLE, replace=False))
        sample = chunked.gather(scaled(), pick)
    else:
        sample = np.concatenate(list(scaled()))
    def every() -> np.ndarray:  # one array, filled chunk by chunk
        out = np.empty(n)
        at = 0
        for u in scaled():
            out[at:at + u.size] = u
            at += u.size
        return out

    return _renewal(sample, float(std / mean), every if table else None)


def _with_table(renewal: Renewal, t: np.ndarray, rates: np.ndarray, window: float
                ) -> Renewal:
    """``renewal`` with the empirical table :func:`_fit_renewal_of` left out, built from the
    rescaled gaps of the same ``rates`` (the renewal's own)."""
    if renewal.family != "empirical" or renewal.table is not None:
        return renewal
    full = _fit_renewal_of(t, rates, window)
    return dataclasses.replace(renewal, table=full.table)


#: The renewal's family is chosen on at most this many rescaled gaps.
RENEWAL_SAMPLE = 50_000


def _renewal(sample: np.ndarray, cv: float, every: Callable[[], np.ndarray] | None
             ) -> Renewal:
    """The renewal of :func:`_fit_renewal` from the unit-mean gaps' ``sample`` (all of them,
    or fit_distributions' subsample), their ``cv``, and ``every`` gap on demand (an array
    the table may reorder); without ``every`` an empirical renewal has no table yet
    (:func:`_with_table` adds it)."""
    from servetrace.analysis.fitting import fit_distributions

    fits = fit_distributions(sample, ("gamma", "weibull"), max_samples=RENEWAL_SAMPLE)
    best = fits.row(0, named=True)
    shape = float(json.loads(best["params"])["shape"])
    crit = 1.36 / math.sqrt(best["n"])
    if best["ks"] <= crit:
        return Renewal(best["family"], shape=shape, cv=cv, ks=float(best["ks"]))
    table = None if every is None else _quantile_table(every())
    return Renewal("empirical", table=table, cv=cv, ks=float(best["ks"]))


def _quantile_table(u: np.ndarray) -> Table:
    """``Table.of(u, log=True)``, partitioning ``u`` in place (no copy of the gaps)."""
    k = int(min(TABLE_SIZE, max(len(u), 2)))
    q = np.quantile(u, np.linspace(0.0, 1.0, k), overwrite_input=True)
    return Table(tuple(float(v) for v in q), True)


def _window_of(t: np.ndarray, window: float, n_w: int) -> np.ndarray:
    """min(⌊t / window⌋, n_w − 1) of every time (int32: 4 bytes a request), which the passes
    of :func:`_rescaled_chunks` share: the float floor division is most of a pass's cost."""
    out = np.empty(len(t), dtype=np.int32 if n_w < 2**31 else np.int64)
    for lo in range(0, len(t), T_CHUNK):
        w = t[lo:lo + T_CHUNK] // window
        np.minimum(w, n_w - 1, out=w)
        out[lo:lo + T_CHUNK] = w
    return out


def _rescaled_chunks(t: np.ndarray, rates: np.ndarray, window: float,
                     cells: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """:func:`_rescaled_gaps`, chunk by chunk (the same values end to end); ``cells``:
    :func:`_window_of` of the times, where the caller has it."""
    n_w = len(rates)
    edges_mass = np.concatenate([[0.0], np.cumsum(rates * window)])
    limit = n_w * window
    prev = None
    for lo in range(0, len(t), T_CHUNK):
        tt = t[lo:lo + T_CHUNK]
        inside = tt < limit
        tt = tt[inside]
        if not len(tt):
            continue
        w = (np.minimum((tt // window).astype(np.int64), n_w - 1) if cells is None
             else cells[lo:lo + T_CHUNK][inside])
        lam = edges_mass[w] + rates[w] * (tt - w * window)
        yield np.diff(lam, prepend=prev) if prev is not None else np.diff(lam)
        prev = lam[-1]


def _rescaled_gaps(t: np.ndarray, rates: np.ndarray, window: float) -> np.ndarray:
    """Gaps of Λ(t_k), Λ piecewise linear with ``rates`` per window (time rescaling)."""
    n_w = len(rates)
    edges_mass = np.concatenate([[0.0], np.cumsum(rates * window)])
    limit = n_w * window
    m = sum(int(np.count_nonzero(t[lo:lo + T_CHUNK] < limit))
            for lo in range(0, len(t), T_CHUNK))
    out = np.empty(max(m - 1, 0))
    at, prev = 0, None
    for lo in range(0, len(t), T_CHUNK):  # chunks of times: the temporaries stay small
        tt = t[lo:lo + T_CHUNK]
        tt = tt[tt < limit]
        if not len(tt):
            continue
        w = np.minimum((tt // window).astype(np.int64), n_w - 1)
        lam = edges_mass[w] + rates[w] * (tt - w * window)
        if prev is not None:
            out[at] = lam[0] - prev
            at += 1
        out[at:at + len(lam) - 1] = np.diff(lam)
        at += len(lam) - 1
        prev = lam[-1]
    return out


def _split_off(t: np.ndarray, span: float
               ) -> tuple[np.ndarray, float, OnOff | None, np.ndarray | None]:
    """OFF periods: gaps longer than the base window Δ (the modulation cannot hold a rate of 0
    for long); kept when there are at least :data:`MIN_OFF` of them.

    Returns the arrivals in ON time (each OFF gap replaced by the median ON gap), the ON span,
    the :class:`OnOff` (interior ON periods when there are enough, else all) and the level of
    each arrival's ON period. A level is the period's rate over the mean ON rate, shrunk
    toward 1 by √(1 − v/Var) where v is the mean Poisson variance 1/(λ_on · duration) of a
    period's rate estimate: bursts differ in intensity, not only in length."""
    tau = _pick_window(len(t) / span, span)
    if sum(int(np.count_nonzero(g > tau)) for g in chunked.diffs(t, T_CHUNK)) < MIN_OFF:
        return t, span, None, None  # no array of gaps for a trace without OFF periods
    g = np.diff(t)
    is_off = g > tau
    fill = float(np.median(g[~is_off])) if (~is_off).any() else 0.0
    cut = np.where(is_off, g - fill, 0.0)
    t_on = t - np.concatenate([[0.0], np.cumsum(cut)])
    span_on = span - float(cut.sum())
    ends = t_on[:-1][is_off] + fill / 2
    bounds = np.concatenate([[0.0], ends, [max(span_on, float(ends[-1]))]])
    dur = np.maximum(np.diff(bounds), fill)
    period = np.minimum(np.searchsorted(bounds, t_on, side="right") - 1, len(dur) - 1)
    counts = np.bincount(period, minlength=len(dur)).astype(np.float64)
    rate_on = len(t) / span_on
    level = counts / (dur * rate_on)
    var = float(level.var())
    noise = float(np.mean(1.0 / (rate_on * dur)))
    shrink = math.sqrt(max(0.0, 1.0 - noise / var)) if var > 0 else 0.0
    level = np.maximum(1.0 + shrink * (level - 1.0), 0.05)
    level = level / level.mean()
    on = dur[1:-1] if len(dur) - 2 >= MIN_OFF // 2 else dur
    levels = level[1:-1] if len(dur) - 2 >= MIN_OFF // 2 else level
    return t_on, span_on, OnOff(Table.of(on, log=True), Table.of(g[is_off] - fill, log=True),
                                Table.of(levels / levels.mean())), level[period]


def fit_arrivals(times: np.ndarray, span_s: float | None = None, *, origin_s: float | None = None,
                 phase_s: float | None = None, tick_s: float | None = None,
                 detect_off: bool = True,
                 calibrate: bool = True, seed: int = 0) -> Arrivals:
    """Fit :class:`Arrivals` to event times (s) of a trace starting at ``origin_s``.

    ``origin_s`` defaults to the first time, ``phase_s`` (the absolute time of ``origin_s``,
    for the diurnal/weekly phase) to ``origin_s``, ``span_s`` to n mean gaps, ``tick_s`` to the
    detected grid (:func:`_detect_tick`). Steps: spreading ticked times uniformly within their
    tick (seeded); OFF periods (:func:`_split_off`, with ``detect_off``); base window Δ from
    :data:`LADDER_S` (≈ :data:`WINDOW_COUNT` events per window, ≥ :data:`MIN_WINDOWS`
    windows); harmonics when the span allows; windowed rate factors x_i (mean 1); the renewal
    fitted to the gaps rescaled by the modulation; x_i shrunk toward 1 by
    s = √(1 − v_noise/Var x), v_noise = CV_r²/(λ̄Δ) being the renewal's own contribution to
    Var x (renewal refitted thrice); the dispersion test (:func:`_modulated`); the driver
    (:func:`fit_driver`); the modulation table from the Wiener-smoothed factors
    (:func:`smoothed_factors`); with ``calibrate``, the renewal's CV (:func:`_calibrate_cv`).
    """
    t = np.asarray(times, dtype=np.float64)
    t = t.copy() if _is_sorted(t) else np.sort(t)  # one working copy of the times
    return _fit_sorted(t, span_s, origin_s=origin_s, phase_s=phase_s, tick_s=tick_s,
                       detect_off=detect_off, calibrate=calibrate, seed=seed)


def _fit_sorted(t: np.ndarray, span_s: float | None = None, *, origin_s: float | None = None,
                phase_s: float | None = None, tick_s: float | None = None,
                detect_off: bool = True, calibrate: bool = True, seed: int = 0) -> Arrivals:
    """:func:`fit_arrivals` of sorted float64 times ``t``, which it takes over (shifts and
    overwrites): a caller that holds the times of a large trace passes them without a copy."""
    n = len(t)
    if n < 2:
        raise ValueError("fit_arrivals: at least 2 arrivals are needed")
    origin = float(t[0]) if origin_s is None else float(origin_s)
    t -= origin
    if t[0] < 0:
        raise ValueError("fit_arrivals: an arrival precedes origin_s")
    target = _cv_target(t) if calibrate else None  # what the raw times are needed for
    tick = _detect_tick(t) if tick_s is None else float(tick_s)
    span = float(span_s) if span_s is not None else float(t[-1] - t[0]) * n / (n - 1)
    if tick > 0:
        rng = _rng(seed, 1)
        for lo in range(0, n, T_CHUNK):  # the draws of one random(n), a chunk at a time
            spread = rng.random(min(T_CHUNK, n - lo))
            spread *= tick
            t[lo:lo + T_CHUNK] += spread
        del spread
        t.sort()
        span = max(span, float(np.floor(t[-1] / tick) + 1) * tick)
    if not span > 0:
        raise ValueError("fit_arrivals: the arrivals span no time (all equal)")
    phase = origin if phase_s is None else float(phase_s)
    harmonics, offset = _fit_harmonics(t, span, phase)
    if harmonics:  # the daily/weekly profile as a change of clock: τ = D(t) = ∫₀ᵗ d(u) du
        proto = Arrivals(1.0, 1.0, Table((1.0,)), 0.5, span, Renewal("exponential"),
                         harmonics, offset, phase, tick)
        grid, clock = _clock(proto, span)
        for lo in range(0, n, T_CHUNK):  # in place, a chunk at a time
            t[lo:lo + T_CHUNK] = np.interp(t[lo:lo + T_CHUNK], grid, clock)
        span = float(clock[-1])
    off, level_at = None, None
    if detect_off:
        t, span, off, level_at = _split_off(t, span)
    rate = n / span
    window = _pick_window(rate, span)
    n_w = max(int(span // window), 1)
    det = np.ones(n_w)
    if level_at is not None:  # the ON-period levels act like a known multiplier per window
        mid = np.minimum(np.searchsorted(t, (np.arange(n_w) + 0.5) * window), len(t) - 1)
        det = det * level_at[mid]
    counts = _bin_counts(t, window, n_w, clip=n_w).astype(np.float64)
    x = counts / (rate * window * det)
    x = x / x.mean() if x.mean() > 0 else np.ones(n_w)
    var_x = float(x.var())
    shrink = 1.0
    renewal = Renewal("exponential")
    cells = _window_of(t, window, n_w)
    for _ in range(3):  # renewal ↔ shrinkage, a fixed point in a few steps
        xs = np.maximum(1.0 + shrink * (x - 1.0), 0.0)
        rates = rate * det * xs
        # an empirical table waits for the last renewal: the loop reads only the CV
        renewal = _fit_renewal_of(t, rates, window, cells, table=False)
        noise = float(np.mean(renewal.cv ** 2 / (rate * window * det)))
        shrink = math.sqrt(max(0.0, 1.0 - noise / var_x)) if var_x > 0 else 1.0
    xs = np.maximum(1.0 + shrink * (x - 1.0), 0.0)
    xs = xs / xs.mean() if xs.mean() > 0 else np.ones(n_w)
    if not _modulated(x, noise):  # no rate variation beyond the renewal's own noise
        shrink, xs = 0.0, np.ones(n_w)
        rates = rate * det
        renewal = _fit_renewal_of(t, rates, window, cells, table=False)
    del cells  # 4 bytes a request: freed before a table holds the rescaled gaps
    renewal = _with_table(renewal, t, rates, window)
    hurst, memory, _ = fit_driver(x, noise) if n_w >= 8 and shrink > 0 else (0.5, 1, 0.0)
    if n_w >= 8 and shrink > 0:  # the table holds the signal's shape, not the noise's
        xs = smoothed_factors(x, noise, hurst, memory)
    fitted = Arrivals(rate, window, Table.of(xs), hurst, span, renewal, harmonics, offset,
                      phase, tick, off, memory)
    return _calibrate_to(fitted, target, seed) if calibrate else fitted


def _sample_cv(a: Arrivals, horizon: float, runs: int, seed: int,
               sessions: Sessions | None = None) -> tuple[float | None, float]:
    """Mean inter-arrival CV and mean count of ``runs`` samples of ``horizon`` seconds
    (seeds fixed by ``seed``: common random numbers across candidates); ``None`` for the CV
    when no sample has three gaps."""
    cvs, counts = [], []
    for r in range(runs):  # more runs for a short trace, whose CV is noisier
        if sessions is None:
            t = _arrival_times(a, horizon, 1.0, _rng(seed, 2, r))
        else:
            from servetrace.synth.sessions import _session_requests  # sessions import us

            t = _session_requests(a, sessions, horizon, 1.0, _rng(seed, 2, r),
                                  _rng(seed, 3, r))[0]
        d = np.diff(t)
        counts.append(len(t))
        if len(d) > 2 and d.mean() > 0:
            cvs.append(d.std() / d.mean())
    return (float(np.mean(cvs)) if cvs else None), float(np.mean(counts))


def floored(table: Table, floor: float) -> Table:
    """The modulation table with every rate factor below ``floor`` raised to it, renormalized
    to mean 1 (see :func:`_calibrate_cv`)."""
    v = np.maximum(np.asarray(table.values, dtype=np.float64), floor)
    mean = Table(tuple(float(x) for x in v)).mean()
    return Table(tuple(float(x) for x in v / mean)) if mean > 0 else table


def _calibrate_cv(a: Arrivals, raw: np.ndarray, seed: int,
                  sessions: Sessions | None = None) -> Arrivals:
    """Match the mean inter-arrival CV of samples as long as the trace (up to
    :data:`CALIBRATION_EVENTS` events each; :data:`CALIBRATION_RUNS` seeds, up to 4× as many
    for short traces; common random numbers) to the trace's own (``raw`` times) — the
    method of simulated moments (McFadden 1989) — by moving the part of the model that the
    CV identifies and nothing else.

    With slow modulation, the gaps of a renewal of CV c_r run at rate λ̄x are a mixture over
    events (weight x) of renewal gaps scaled by 1/(λ̄x), so E[g] = 1/λ̄ and

        CV² = (1 + c_r²) · E[1/x] − 1,

    E over time: the inter-arrival CV is set by the renewal *and the harmonic mean of the
    rate factors*, i.e. by how low the modulation goes. The renewal is identified on its own
    by the time-rescaled gaps inside windows (Brown et al. 2002; :func:`_fit_renewal`), the
    process inside a state; the low tail of the modulation table is the least certain part
    of the fit (windowed counts there are few and noisy, and the smoother's rescaling to the
    signal variance overshoots toward 0, where 1/x diverges). So:

    * samples *too bursty* (CV above the trace's by more than 0.5 %): the modulation's low
      tail is lifted — every factor below a floor φ is raised to φ and the table renormalized
      to mean 1 (:func:`floored`), φ found by regula falsi on [min x, 1] (the sample CV
      falls as φ grows), the renewal left as fitted. On a two-state MMPP (20/s and 2/s, 60 s
      sojourns) raising the renewal's CV instead made it nearly regular (Weibull, CV 0.26)
      though each state is Poisson, and missed the gap distribution;
    * samples *not bursty enough*: the renewal's CV is raised (a few fixed-point steps, the
      factor bounded to [¼, 4]): lower tails that the modulation lacks (rare long silences
      shorter than the OFF threshold) are left to the renewal.

    Where ``a`` models session starts (``sessions`` given), the samples are the sessions'
    requests and only the start rate is corrected, so that the mean number of requests
    matches (sessions are cut by both ends of a trace). The renewal of session starts is left
    as fitted: raising its CV to reach the requests' CV (which a handful of long silences
    decide in a short trace) would clump whole sessions and overshoot the peaks.
    """
    return _calibrate_to(a, _cv_target(raw), seed, sessions)


def _is_sorted(t: np.ndarray) -> bool:
    return bool((t[1:] >= t[:-1]).all())


def _cv_target(raw: np.ndarray) -> tuple[float, int, float] | None:
    """What :func:`_calibrate_cv` takes from the trace's times: their inter-arrival CV, the
    events k of a calibration sample and its horizon (s); None when there is nothing to
    match. Computed once, so that the fit need not keep a copy of the raw times."""
    raw = raw if _is_sorted(raw) else np.sort(raw)
    n = len(raw) - 1
    if n < 10:
        return None
    mean, std = chunked.mean_std(lambda: chunked.diffs(raw, T_CHUNK), n)  # g.mean(), g.std()
    if not mean > 0:
        return None
    target = float(std / mean)
    k = min(len(raw), CALIBRATION_EVENTS)
    horizon = float(raw[k - 1] - raw[0]) * k / max(k - 1, 1)
    if not horizon > 0:
        return None
    return target, k, horizon


def _calibrate_to(a: Arrivals, goal: tuple[float, int, float] | None, seed: int,
                  sessions: Sessions | None = None) -> Arrivals:
    """:func:`_calibrate_cv` given :func:`_cv_target`'s figures."""
    if goal is None:
        return a
    target, k, horizon = goal
    runs = min(4 * CALIBRATION_RUNS, max(CALIBRATION_RUNS, CALIBRATION_EVENTS // k))
    if sessions is not None:
        rate = a.rate
        best, best_err = a, math.inf
        for _ in range(CALIBRATION_STEPS):  # ≤ 6 fixed-point steps, each a batch of samples
            cand = dataclasses.replace(a, rate=rate)
            _, count = _sample_cv(cand, horizon, runs, seed, sessions)
            ratio = k / max(count, 1.0)
            err = abs(math.log(ratio))
            if err < best_err:
                best, best_err = cand, err
            if err < 0.005:
                break
            rate = rate * ratio
        return best
    got, _ = _sample_cv(a, horizon, runs, seed)
    if got is None:
        return a
    if math.log(got / target) > 0.005:
        return _calibrate_floor(a, target, horizon, 4 * runs, seed, got)
    base_cv = max(a.renewal.cv, 0.05)
    factor = 1.0
    best, best_err = a, abs(math.log(got / target))
    for _ in range(CALIBRATION_STEPS):  # ≤ 6 fixed-point steps, each a batch of samples
        factor = min(max(factor * target / got, 0.25), 4.0)
        cand = dataclasses.replace(a, renewal=a.renewal.with_cv(base_cv * factor))
        got_c, _ = _sample_cv(cand, horizon, runs, seed)
        if got_c is None:
            break
        got = got_c
        err = abs(math.log(got / target))
        if err < best_err:
            best, best_err = cand, err
        if err < 0.005:
            break
    return best


def _calibrate_floor(a: Arrivals, target: float, horizon: float, runs: int, seed: int,
                     got: float) -> Arrivals:
    """The floor φ of the modulation table (:func:`floored`) whose samples have CV
    ``target`` (``got`` the CV without a floor, above it): the root of
    f(φ) = ln(CV(φ)/target) on [min x, 1] by the Illinois variant of regula falsi (Dowell &
    Jarratt 1971), at most :data:`FLOOR_STEPS` batches of samples (common random numbers,
    so the sample CV is monotone in φ up to the renewal's noise). Called with twice the
    renewal calibration's runs: the CV of a sample with slow windows is noisier (its long
    gaps are few)."""
    def f(phi: float) -> tuple[float | None, Arrivals]:
        cand = dataclasses.replace(a, modulation=floored(a.modulation, phi))
        cv, _ = _sample_cv(cand, horizon, runs, seed)
        return (None if cv is None else math.log(cv / target)), cand

    lo, f_lo = float(min(a.modulation.values)), math.log(got / target)
    hi = 1.0
    f_hi, best = f(hi)
    if f_hi is None:
        return a
    best_err = abs(f_hi)
    if f_hi >= 0:  # even a flat low side is too bursty: the closest the floor gets
        return best
    side = 0
    for _ in range(FLOOR_STEPS - 1):  # each step a batch of samples
        mid = (lo * f_hi - hi * f_lo) / (f_hi - f_lo)
        f_mid, cand = f(mid)
        if f_mid is None:
            break
        if abs(f_mid) < best_err:
            best, best_err = cand, abs(f_mid)
        if best_err < 0.002:
            break
        if f_mid > 0:
            lo, f_lo = mid, f_mid
            if side == 1:
                f_hi /= 2
            side = 1
        else:
            hi, f_hi = mid, f_mid
            if side == -1:
                f_lo /= 2
            side = -1
    return best


def _unit_points(renewal: Renewal, total: float, rng: np.random.Generator) -> np.ndarray:
    """Renewal epochs of unit mean rate in [0, total), stationary-ish start (uniform offset)."""
    if total <= 0:
        return np.zeros(0)
    cv = max(renewal.cv, 1.0)
    n = int(total + 6.0 * cv * math.sqrt(total) + 16)
    parts = [renewal.draw(rng, n)]
    parts[0][0] *= rng.random()
    s = np.cumsum(parts[0])
    chunks = [s]
    while chunks[-1][-1] < total:  # rare: top up in chunks, never per event
        more = np.cumsum(renewal.draw(rng, max(n // 4, 16))) + chunks[-1][-1]
        chunks.append(more)
    s = np.concatenate(chunks) if len(chunks) > 1 else s
    return s[: np.searchsorted(s, total)]


def _on_off(off: OnOff, duration: float, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray, float]:
    """Alternating ON/OFF durations covering ``duration``: ON-time boundaries, the OFF time
    accumulated before each ON period, and the total ON time."""
    cycle = off.on_s.mean() + off.off_s.mean()
    m = int(duration / cycle * 1.5) + 8
    on = off.on_s.ppf(rng.random(m))
    gap = off.off_s.ppf(rng.random(m))
    on[0] *= rng.random()  # the sample starts at a random point of an ON period
    while (on + gap).sum() < duration:  # rare top-up, in chunks
        on = np.concatenate([on, off.on_s.ppf(rng.random(m))])
        gap = np.concatenate([gap, off.off_s.ppf(rng.random(m))])
    ends = np.cumsum(on + gap)
    k = int(np.searchsorted(ends, duration)) + 1
    on, gap = on[:k], gap[:k]
    bounds = np.cumsum(on)
    shift = np.concatenate([[0.0], np.cumsum(gap)])
    return bounds, shift, float(bounds[-1])


def _arrival_times(a: Arrivals, duration: float, rate_scale: float,
                   rng: np.random.Generator,
                   levels: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Arrival times in [0, duration): see :class:`Arrivals`; ``levels`` = (ON-period ends,
    their rate levels) multiply the rate of the windows inside each period."""
    if a.harmonics:  # sample on the deterministic clock τ = D(t), then map back to t
        grid, clock = _clock(a, duration)
        tau = _arrival_times(dataclasses.replace(a, harmonics=(), tick_s=0.0),
                             float(clock[-1]), rate_scale, rng, levels)
        t = np.interp(tau, clock, grid)
        t = t[t < duration]
        if a.tick_s > 0:
            t = np.floor(t / a.tick_s) * a.tick_s
        return t
    if a.off is not None:
        bounds, shift, on_total = _on_off(a.off, duration, rng)
        levels = (a.off.levels.ppf(rng.random(len(bounds))) if a.off.levels is not None
                  else None)
        s = _arrival_times(dataclasses.replace(a, off=None, tick_s=0.0), on_total, rate_scale,
                           rng, (bounds, levels) if levels is not None else None)
        t = s + shift[np.searchsorted(bounds, s, side="right")]
        t = t[t < duration]
        if a.tick_s > 0:
            t = np.floor(t / a.tick_s) * a.tick_s
        return t
    n_w = math.ceil(duration / a.window_s) + 1
    span_w = max(int(a.span_s // a.window_s), 2)
    z = driver(n_w, a.hurst, a.memory, rng)
    if n_w > 2 and z.std() > 0:  # realized spread := its expectation for this horizon
        ratio = (expected_block_vars(a.hurst, a.memory, n_w, np.array([1]))[0]
                 / expected_block_vars(a.hurst, a.memory, span_w, np.array([1]))[0])
        # the driver's ranks onto evenly spaced scores: the windows' rate factors are the
        # table's quantiles exactly, so a sample's share of slow windows, which sets its
        # gaps' CV (:func:`_calibrate_cv`), is the fitted one and not a draw of it
        z = _even_scores(z) * math.sqrt(max(float(ratio), 0.0))
    else:
        z = z - z.mean()
    x = a.modulation.ppf(special.ndtr(z))
    edges = np.arange(n_w + 1) * a.window_s
    if levels is not None:
        ends, lv = levels
        x = x * lv[np.minimum(np.searchsorted(ends, edges[:-1] + a.window_s / 2), len(lv) - 1)]
    lam = a.rate * rate_scale * x
    mass = np.concatenate([[0.0], np.cumsum(lam * a.window_s)])
    s = _unit_points(a.renewal, float(mass[-1]), rng)
    # Λ⁻¹ by window: count the (sorted) epochs per window, then invert each window linearly
    per = np.diff(np.searchsorted(s, mass))
    w = np.repeat(np.arange(n_w), per)
    t = edges[w] + (s - mass[w]) / lam[w]
    t = t[t < duration]
    if a.tick_s > 0:
        t = np.floor(t / a.tick_s) * a.tick_s
    return t


def _piecewise_times(p: Piecewise, duration: float, rate_scale: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Per window, renewal epochs with that window's family and shape, then concatenated."""
    n_w = math.ceil(duration / p.window_s)
    idx = np.arange(n_w) % len(p.rates)
    rates = np.asarray(p.rates)[idx] * rate_scale
    fam = np.asarray(p.families)[idx]
    shape = np.asarray(p.shapes)[idx]
    shape = np.where((fam == "") | ~(shape > 0), 1.0, shape)
    mean_n = rates * p.window_s
    cv2 = np.where(fam == "Gamma", 1.0 / shape,
                   np.where(fam == "Weibull",
                            special.gamma(1 + 2 / shape) / special.gamma(1 + 1 / shape) ** 2 - 1,
                            1.0))
    draws = np.where(mean_n > 0,
                     np.ceil(mean_n + 8 * np.sqrt(mean_n * np.maximum(cv2, 1.0)) + 16), 0)
    draws = draws.astype(np.int64)
    total = int(draws.sum())
    win = np.repeat(np.arange(n_w), draws)
    fam_d, shape_d = fam[win], shape[win]
    g = np.empty(total)
    is_g, is_w = fam_d == "Gamma", fam_d == "Weibull"
    is_e = ~(is_g | is_w)
    g[is_g] = rng.gamma(shape_d[is_g], 1.0 / shape_d[is_g])
    g[is_w] = rng.weibull(shape_d[is_w]) / special.gamma(1 + 1 / shape_d[is_w])
    g[is_e] = rng.exponential(1.0, int(is_e.sum()))
    starts = np.concatenate([[0], np.cumsum(draws)[:-1]])
    first = starts[draws > 0]
    g[first] *= rng.random(len(first))
    cs = np.cumsum(g)
    base = np.concatenate([[0.0], cs])[starts]
    local = (cs - base[win]) / np.where(rates[win] > 0, rates[win], 1.0)
    keep = local < p.window_s
    t = win[keep] * p.window_s + local[keep]
    t = np.sort(t[t < duration])
    if p.tick_s > 0:
        t = np.floor(t / p.tick_s) * p.tick_s
    return t


def _tick(a: Arrivals | Piecewise) -> float:
    return a.tick_s


def _times(a: Arrivals | Piecewise, duration: float, rate_scale: float,
           rng: np.random.Generator) -> np.ndarray:
    if isinstance(a, Piecewise):
        return _piecewise_times(a, duration, rate_scale, rng)
    return _arrival_times(a, duration, rate_scale, rng)
