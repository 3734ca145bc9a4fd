"""Arrival processes whose statistics are known analytically, shared by the tests."""

from __future__ import annotations

import numpy as np


def mmpp_arrivals(duration: float, seed: int, rates: tuple[float, float] = (20.0, 2.0),
                  sojourn: float = 60.0) -> np.ndarray:
    """Sorted arrival times of a two-state Markov-modulated Poisson process: exponential
    sojourns of mean ``sojourn`` seconds alternating between ``rates`` (per second), Poisson
    inside each state; short memory (H = 0.5 asymptotically, Cox & Lewis 1966)."""
    rng = np.random.default_rng(seed)
    k = int(duration / sojourn * 2) + 10
    ends = np.cumsum(rng.exponential(sojourn, k))
    starts = np.concatenate([[0.0], ends[:-1]])
    lam = np.where(np.arange(k) % 2 == 0, rates[0], rates[1])
    n = rng.poisson(lam * (ends - starts))
    t = np.repeat(starts, n) + rng.random(n.sum()) * np.repeat(ends - starts, n)
    return np.sort(t[t < duration])
