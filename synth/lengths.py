"""Token lengths of the workload model: a Gaussian copula of input and output with empirical
marginals, its input scores drawn by Latin hypercube (see :mod:`servetrace.synth.model`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

from servetrace.synth.parameters import (
    CHUNK,
    Group,
    Lengths,
    Table,
)


def _copula(lengths: Lengths, z_in: np.ndarray, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    """Input and output tokens from input normal scores ``z_in``: z_out = ρ z_in + √(1−ρ²) ε,
    each score mapped through Φ to its quantile table (in cache-sized chunks)."""
    n = len(z_in)
    x_in = np.empty(n, np.int64)
    x_out = np.empty(n, np.int64)
    c = math.sqrt(max(1.0 - lengths.rho ** 2, 0.0))
    buf = np.empty(min(n, CHUNK))
    for lo in range(0, n, CHUNK):  # chunks of CHUNK values, not requests
        z = z_in[lo:lo + CHUNK]
        k = len(z)
        eps = rng.standard_normal(k)
        eps *= c
        eps += lengths.rho * z
        u, o = buf[:k], np.empty(k)
        special.ndtr(z, out=u)
        lengths.input._ppf_into(u, o)
        x_in[lo:lo + k] = o
        special.ndtr(eps, out=u)
        lengths.output._ppf_into(u, o)
        x_out[lo:lo + k] = o
    return x_in, x_out


def _stratified_normal(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` standard normal input scores by Latin hypercube sampling (McKay, Beckman &
    Conover 1979): each run of :data:`CHUNK` consecutive requests takes one score in each of
    its CHUNK equally likely strata, in random order (a permutation per chunk: cache-sized,
    so about as fast as drawing the normals; one over all n would be several times slower).

    The requests are exchangeable, so nothing is lost by stratifying them, and a sample's
    input marginal is then the fitted table to within 1/CHUNK, where independent scores (like
    the baselines' resampling) leave it a sampling distance of about 1/√n away. The output
    score keeps its independent part, so the pair stays a Gaussian copula of correlation ρ.
    """
    u = np.empty(n)
    for lo in range(0, n, CHUNK):  # chunks of CHUNK values, not requests
        k = min(CHUNK, n - lo)
        u[lo:lo + k] = rng.permutation(k)
        u[lo:lo + k] += rng.random(k)
        u[lo:lo + k] /= k
    np.clip(u, 1e-16, 1.0 - 1e-16, out=u)  # Φ⁻¹(0) would be −∞
    return special.ndtri(u, out=u)


def _mean_tokens(g: Group) -> tuple[float, float]:
    if g.lengths_by_window:
        m = np.array([(lw.input.mean(), lw.output.mean()) for lw in g.lengths_by_window])
        return float(m[:, 0].mean()), float(m[:, 1].mean())
    return g.lengths.input.mean(), g.lengths.output.mean()


def _lengths(inp: np.ndarray, out: np.ndarray) -> Lengths:
    if len(inp) >= 3 and np.ptp(inp) > 0 and np.ptp(out) > 0:
        rs = float(stats.spearmanr(inp, out).statistic)
    else:
        rs = 0.0
    rs = 0.0 if not math.isfinite(rs) else rs
    rho = 2.0 * math.sin(math.pi * rs / 6.0)
    return Lengths(Table.empirical(inp, integer=True), Table.empirical(out, integer=True),
                   rho, rs)
