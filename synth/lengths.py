"""Token lengths of the workload model: a Gaussian copula of input and output with empirical
marginals, its input scores drawn by Latin hypercube (see :mod:`servetrace.synth.model`).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy import special

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


def pair_counts(inp: np.ndarray, out: np.ndarray) -> pl.DataFrame:
    """The joint histogram of (input, output) token lengths: columns ``input_tokens``,
    ``output_tokens`` (Int64) and ``len`` (UInt32), one row per distinct pair, in any
    order — what a store aggregates with ``GROUP BY input_tokens, output_tokens`` without
    reading a trace into memory (token lengths are small integers: a few hundred thousand
    distinct pairs at most, whatever the rows)."""
    frame = pl.DataFrame({"input_tokens": np.asarray(inp, dtype=np.int64),
                          "output_tokens": np.asarray(out, dtype=np.int64)})
    return frame.group_by("input_tokens", "output_tokens").len()


def _midranks(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean rank (1-based) of each distinct sorted value with ``counts`` copies: ties share
    the mean of the ranks they span, as :func:`scipy.stats.rankdata` gives them."""
    before = np.cumsum(counts) - counts
    return before + (counts + 1) / 2.0


def _spearman_from_pairs(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> float:
    """Spearman's ρ_S (Spearman 1904) of a sample given as distinct pairs (a, b) with
    counts ``w``: Pearson's correlation of the mid-ranks, ties at their mean rank — the
    value :func:`scipy.stats.spearmanr` returns on the expanded sample, within rounding."""
    n = float(w.sum())
    va, ia = np.unique(a, return_inverse=True)
    vb, ib = np.unique(b, return_inverse=True)
    ca = np.bincount(ia, weights=w, minlength=len(va))
    cb = np.bincount(ib, weights=w, minlength=len(vb))
    mid = (n + 1) / 2.0  # the mean rank of either margin
    ra = _midranks(va, ca) - mid
    rb = _midranks(vb, cb) - mid
    cov = float((w * ra[ia] * rb[ib]).sum())
    var = float((ca * ra * ra).sum()) * float((cb * rb * rb).sum())
    return cov / math.sqrt(var) if var > 0 else math.nan


def _lengths(inp: np.ndarray, out: np.ndarray) -> Lengths:
    return lengths_from_pairs(pair_counts(inp, out))


def lengths_from_pairs(pairs: pl.DataFrame) -> Lengths:
    """:class:`Lengths` from the joint histogram of token lengths (:func:`pair_counts`'
    columns): the empirical marginals of :meth:`Table.from_counts` (the tables
    :meth:`Table.empirical` builds from the raw values) and the copula correlation
    ρ = 2 sin(π ρ_S / 6) (Kruskal 1958) from the histogram's Spearman ρ_S. Nothing here
    grows with the number of requests, only with the number of distinct lengths."""
    pairs = pairs.sort("input_tokens", "output_tokens")
    a = pairs["input_tokens"].to_numpy().astype(np.float64)
    b = pairs["output_tokens"].to_numpy().astype(np.float64)
    w = pairs["len"].to_numpy().astype(np.float64)
    n = int(w.sum())
    rs = (_spearman_from_pairs(a, b, w)
          if n >= 3 and len(np.unique(a)) > 1 and len(np.unique(b)) > 1 else 0.0)
    rs = 0.0 if not math.isfinite(rs) else rs
    rho = 2.0 * math.sin(math.pi * rs / 6.0)
    margin_in = pairs.group_by("input_tokens").agg(pl.col("len").sum()).sort("input_tokens")
    margin_out = pairs.group_by("output_tokens").agg(pl.col("len").sum()).sort("output_tokens")
    return Lengths(Table.from_counts(margin_in["input_tokens"].to_numpy(),
                                     margin_in["len"].to_numpy(), integer=True),
                   Table.from_counts(margin_out["output_tokens"].to_numpy(),
                                     margin_out["len"].to_numpy(), integer=True),
                   rho, rs)
