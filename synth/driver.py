"""The modulation's Gaussian driver: fractional Gaussian noise and increments of fractional
Brownian motion over L windows, their exact finite-sample block variances, the fit of (H, L)
by aggregated variances, the dispersion test and the Wiener smoother of the windowed rates.

Part of the arrival model of :mod:`servetrace.synth.arrivals` (re-exported there); the model
as a whole, with its references, is described in :mod:`servetrace.synth.model`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def fgn(n: int, hurst: float, rng: np.random.Generator) -> np.ndarray:
    """Fractional Gaussian noise, unit variance, by circulant embedding (Davies & Harte 1987).

    Autocovariance γ(k) = ½(|k+1|^{2H} − 2|k|^{2H} + |k−1|^{2H}); embedded in a circulant of
    size 2n whose eigenvalues (one FFT) are non-negative for fGn (Craigmile 2003), so the
    sample is exact. One more FFT of complex white noise scaled by √(λ/2n) gives the path.
    """
    if n <= 0:
        return np.zeros(0)
    if n == 1 or abs(hurst - 0.5) < 1e-9:
        return rng.standard_normal(n)
    k = np.arange(n + 1, dtype=np.float64)
    h2 = 2.0 * hurst
    gamma = 0.5 * ((k + 1) ** h2 - 2 * k ** h2 + np.abs(k - 1) ** h2)
    c = np.concatenate([gamma, gamma[-2:0:-1]])
    lam = np.maximum(np.fft.fft(c).real, 0.0)
    m = len(c)
    w = rng.standard_normal(m) + 1j * rng.standard_normal(m)
    return np.fft.fft(np.sqrt(lam / m) * w).real[:n]


def driver_acov(hurst: float, memory: int, lags: int) -> np.ndarray:
    """Autocovariance γ(τ), τ = 0 … ``lags``, of the modulation's Gaussian driver
    z_i = B(i) − B(i − L): increments over ``memory`` = L windows of fractional Brownian motion
    B of Hurst exponent H. γ(τ) = ½(|τ+L|^{2H} + |τ−L|^{2H} − 2|τ|^{2H}) (Mandelbrot & Van
    Ness 1968). L = 1 is fractional Gaussian noise; a larger L behaves like fBm (a random
    trend) on scales below L windows and is stationary beyond them."""
    tau = np.arange(lags + 1, dtype=np.float64)
    h2 = 2.0 * hurst
    return 0.5 * (np.abs(tau + memory) ** h2 + np.abs(tau - memory) ** h2 - 2 * tau ** h2)


def driver(n: int, hurst: float, memory: int, rng: np.random.Generator) -> np.ndarray:
    """A path of the driver of :func:`driver_acov`: cumulative fGn differenced at lag L."""
    if memory <= 1:
        return fgn(n, hurst, rng)
    b = np.concatenate([[0.0], np.cumsum(fgn(n + memory, hurst, rng))])
    return b[memory:memory + n] - b[:n]


def _window_vars(acov: np.ndarray) -> np.ndarray:
    """V_j = Var(mean of j consecutive values), j = 0 … len(acov) − 1 (V_0 unused), of a
    stationary series: V_j = (j γ(0) + 2 Σ_{τ<j} (j − τ) γ(τ)) / j²."""
    n = len(acov) - 1
    j = np.arange(1, n + 1, dtype=np.float64)
    tau = np.arange(n + 1, dtype=np.float64)
    g1 = np.concatenate([[0.0], np.cumsum(acov[1:])])          # Σ_{τ=1}^{i} γ(τ)
    g2 = np.concatenate([[0.0], np.cumsum((tau * acov)[1:])])  # Σ_{τ=1}^{i} τ γ(τ)
    s = j * acov[0] + 2 * (j * g1[:-1] - g2[:-1])
    return np.concatenate([[np.nan], s / j ** 2])


def expected_block_vars(hurst: float, memory: int, n: int, ks: np.ndarray) -> np.ndarray:
    """E[sample variance of the m = ⌊n/k⌋ block means of size k] over n values of the driver:
    m/(m−1) · (V_k − V_{mk}) — the within-sample variances a trace of n windows shows."""
    v = _window_vars(driver_acov(hurst, memory, n))
    ks = np.asarray(ks, dtype=np.int64)
    m = n // ks
    return m / (m - 1) * (v[ks] - v[m * ks])


def _grid_block_vars(hurst: float, memories: Sequence[int], n: int, ks: np.ndarray
                     ) -> np.ndarray:
    """:func:`expected_block_vars` for every memory L in ``memories`` at one Hurst exponent,
    row by row, with the same arithmetic (the same floating-point values): the powers
    |τ|^{2H} are computed once for τ = 0 … n + max L and every γ_L(τ) is read off them by
    shifting, and only the V_j the block sizes need are formed from the running sums. The
    grid search of :func:`fit_driver` spent most of its time recomputing those powers per
    memory and in page faults on fresh temporaries; here the buffers are reused."""
    ks = np.asarray(ks, dtype=np.int64)
    m = n // ks
    need = np.concatenate([ks, m * ks])
    jj = need.astype(np.float64)
    h2 = 2.0 * hurst
    top = n + max(memories)
    pw = np.arange(top + 1, dtype=np.float64) ** h2
    tau = np.arange(n + 1, dtype=np.float64)
    acov = np.empty(n + 1)
    mirror = np.empty(n + 1)
    tmp = np.empty(n + 1)
    g1 = np.empty(n)
    g2 = np.empty(n)
    out = np.empty((len(memories), len(ks)))
    for r, memory in enumerate(memories):  # ≤ 22 memories, each a few passes over n lags
        if memory <= n:  # |τ − L| for τ = 0 … n: L … 1, then 0 … n − L
            mirror[:memory] = pw[memory:0:-1]
            mirror[memory:] = pw[:n + 1 - memory]
        else:
            mirror[:] = pw[memory:memory - n - 1:-1]
        np.add(pw[memory:memory + n + 1], mirror, out=acov)
        np.multiply(pw[:n + 1], 2, out=tmp)
        np.subtract(acov, tmp, out=acov)
        np.multiply(acov, 0.5, out=acov)
        np.cumsum(acov[1:], out=g1)
        np.multiply(tau, acov, out=tmp)
        np.cumsum(tmp[1:], out=g2)
        i = need - 1  # g[j − 1] = Σ_{τ=1}^{j−1}, as in :func:`_window_vars`
        s = jj * acov[0] + 2 * (jj * np.where(i > 0, g1[i - 1], 0.0)
                                - np.where(i > 0, g2[i - 1], 0.0))
        v = s / jj ** 2
        out[r] = m / (m - 1) * (v[:len(ks)] - v[len(ks):])
    return out


def _block_vars(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Block sizes k (log-spaced, ≥ 4 blocks) and the sample variances of the block means."""
    n = len(x)
    ks = np.unique(np.round(np.logspace(0, math.log10(max(n / 4, 1)), 16)).astype(np.int64))
    out = []
    for k in ks:  # a loop over ≤ 16 block sizes
        m = n // k
        out.append(float(x[: m * k].reshape(m, k).mean(axis=1).var(ddof=1)))
    return ks, np.array(out)


def fit_driver(x: np.ndarray, noise: float = 0.0) -> tuple[float, int, float]:
    """Hurst exponent H, memory L (windows) and signal scale of a windowed rate series
    ``x`` = signal + white noise of variance ``noise``.

    Aggregated-variance method (Taqqu, Teverovsky & Willinger 1995) generalized to the driver
    family of :func:`driver_acov` and made exact for a finite trace: for block sizes k the
    sample variance s²_k of the block means is matched, in log space, to

        S · E_{H,L}[s²_k] + noise / k

    where E is :func:`expected_block_vars` (it includes the downward bias that long-range
    dependence puts on a finite sample's variance, Beran 1994 §2) and S is fixed by k = 1.
    H on a grid over [0.05, 0.98], L over powers of 2 up to twice the series. Returns
    ``(H, L, S)``; ``(0.5, 1, 0)`` when the series holds no variance beyond the noise.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n < 8:
        return 0.5, 1, 0.0
    ks, sv = _block_vars(x)
    keep = sv > 0
    ks, sv = ks[keep], sv[keep]
    if len(sv) < 3 or sv[0] <= noise * 1.0001 or ks[0] != 1:
        return 0.5, 1, 0.0
    memories = [1 << i for i in range(int(math.log2(2 * n)) + 1)]
    hs = np.linspace(0.05, 0.98, 94)
    errs = np.full((len(memories), len(hs)), np.inf)
    signals = np.zeros_like(errs)
    for i, h in enumerate(hs):  # 94 Hurst values, each with every memory at once
        e_all = _grid_block_vars(float(h), memories, n, ks)
        for j, e in enumerate(e_all):  # ≤ 22 memories
            if not e[0] > 0:
                continue
            signal = (sv[0] - noise) / e[0]
            model = signal * e + noise / ks
            errs[j, i] = float(((np.log(np.maximum(model, 1e-300)) - np.log(sv)) ** 2).sum())
            signals[j, i] = signal
    best = (math.inf, 0.5, 1, 0.0)
    for j, memory in enumerate(memories):  # the first best in (memory, H) order, as scanned
        for i, h in enumerate(hs):
            if errs[j, i] < best[0] - 1e-12:
                best = (float(errs[j, i]), float(h), memory, float(signals[j, i]))
    return best[1], best[2], best[3]


def _modulated(x: np.ndarray, noise: float, alpha: float = 1e-3) -> bool:
    """Whether the windowed rate factors vary more than the renewal noise alone explains:
    the index-of-dispersion test (Cox & Lewis 1966, §6.4; (m−1) s²_k k / noise ~ χ²_{m−1})
    at every block size k with m ≥ 8 blocks, Bonferroni-corrected at level ``alpha``."""
    if len(x) < 8 or not noise > 0:
        return len(x) >= 2 and float(np.var(x)) > 0
    ks, sv = _block_vars(x)
    m = len(x) // ks
    use = m >= 8
    if not use.any():
        return False
    stat = (m[use] - 1) * sv[use] * ks[use] / noise
    crit = stats.chi2.ppf(1 - alpha / use.sum(), m[use] - 1)
    return bool((stat > crit).any())


def smoothed_factors(x: np.ndarray, noise: float, hurst: float, memory: int) -> np.ndarray:
    """The signal part of windowed rate factors ``x`` = s + e, e white noise of variance
    ``noise`` (the renewal's own count noise), for the modulation table.

    ŝ = Σ_s (Σ_s + noise · I)⁻¹ (x − x̄), the Wiener smoother (Wiener 1949) with Σ_s the
    autocovariance of the fitted driver (:func:`driver_acov`, Hurst exponent ``hurst``,
    memory ``memory`` windows) scaled to the signal variance Var x − noise; applied in the
    frequency domain on a zero-padded circulant embedding (O(n log n)). ŝ is then rescaled to
    the signal variance, floored at 0 and normalized to mean 1.

    Shrinking each window on its own toward 1 by √(1 − noise / Var x) gives the right variance
    but keeps the *noise's* shape (Poisson-like counts make it bell-shaped whatever the
    signal); pooling neighbouring windows by the signal's own correlation recovers the
    signal's shape, e.g. the bounded, flat-topped distribution of a slow ramp, whose peaks
    the pointwise table overstates. For a white signal (H = ½, L = 1) the two coincide.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    signal = float(x.var()) - noise
    if n < 2 or not signal > 0:
        return np.ones(n)
    m = 1 << math.ceil(math.log2(2 * n))
    acov = driver_acov(hurst, memory, m // 2)
    acov = acov * (signal / acov[0])
    spectrum = np.maximum(np.fft.rfft(np.concatenate([acov, acov[-2:0:-1]])).real, 0.0)
    y = np.zeros(m)
    y[:n] = x - x.mean()
    s = np.fft.irfft(np.fft.rfft(y) * (spectrum / (spectrum + max(noise, 0.0))), m)[:n]
    sd = float(s.std())
    if not sd > 0:
        return np.ones(n)
    out = np.maximum(1.0 + s * (math.sqrt(signal) / sd), 0.0)
    return out / out.mean()
