"""Popularity laws of the model or adapter names a mix's requests send
(:mod:`~servetrace.synth.mix`).

Many fine-tuned variants of one base model, or many LoRA adapters on one server, are
requested with skewed popularity; which name a request carries decides what it costs to
serve. A :class:`Popularity` is a finite law over names, rank 1 first:

* **Zipf** over K names with exponent s: P(rank k) = k^(−s) / H(K, s), H(K, s) = Σ_{j≤K} j^(−s)
  (Zipf 1949; the bounded-support form of the discrete power law, Clauset, Shalizi & Newman,
  SIAM Review 2009, §3);
* **Zipf fitted** to a trace's ``model`` column: its names ranked by request count, the
  exponent by maximum likelihood (:func:`fit_zipf_exponent`);
* **empirical**: a trace's names at their shares of its requests.

A session keeps one name (``per="session"``: a conversation talks to one adapter), drawn
once per session; requests outside sessions draw their own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import optimize

LAWS = ("zipf", "zipf-fit", "empirical")
"""Values of :attr:`Popularity.law`."""

MAX_EXPONENT = 60.0
"""Upper end of the exponent search: past it all but the first name have probability < 1e-18."""


@dataclass(frozen=True)
class Popularity:
    """A law over ``names`` (rank 1 first) with probabilities ``weights`` (summing to 1).

    ``law``: ``zipf`` (``exponent`` given), ``zipf-fit`` (``exponent`` fitted to the
    counts of the trace ``source``), ``empirical`` (the shares of ``source``'s names);
    ``per``: ``session`` (one name per session) or ``request``.
    """

    names: tuple[str, ...]
    weights: tuple[float, ...]
    law: str = "zipf"
    exponent: float | None = None
    source: str = ""
    per: str = "session"

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(str(x) for x in self.names))
        object.__setattr__(self, "weights", tuple(float(x) for x in self.weights))
        if isinstance(self.exponent, int) and not isinstance(self.exponent, bool):
            object.__setattr__(self, "exponent", float(self.exponent))
        if self.law not in LAWS:
            raise ValueError(f"popularity: law must be one of {', '.join(LAWS)}, "
                             f"got {self.law!r}")
        if self.per not in ("session", "request"):
            raise ValueError(f"popularity: per must be 'session' or 'request', got {self.per!r}")
        if not self.names or len(self.names) != len(self.weights):
            raise ValueError("popularity: give as many weights as names (at least one)")
        if len(set(self.names)) != len(self.names):
            raise ValueError("popularity: names must be distinct")
        w = np.asarray(self.weights, dtype=np.float64)
        if not (np.isfinite(w).all() and (w >= 0).all() and abs(w.sum() - 1.0) < 1e-9):
            raise ValueError("popularity: weights must be non-negative and sum to 1")

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` indices into :attr:`names`, independent draws from the law (inverse CDF)."""
        cdf = np.cumsum(np.asarray(self.weights, dtype=np.float64))
        idx = np.searchsorted(cdf / cdf[-1], rng.random(n), side="right")
        return np.minimum(idx, len(self.names) - 1)


def zipf_weights(k: int, s: float) -> np.ndarray:
    """P(rank j) = j^(−s) / H(K, s) for j = 1..K (module docstring)."""
    if not (isinstance(k, int | np.integer) and k >= 1):
        raise ValueError(f"zipf: the number of names must be a positive integer, got {k!r}")
    if not (math.isfinite(s) and s >= 0):
        raise ValueError(f"zipf: the exponent must be a non-negative number, got {s!r}")
    w = np.arange(1, int(k) + 1, dtype=np.float64) ** -float(s)
    return w / w.sum()


def adapter_names(k: int, prefix: str) -> tuple[str, ...]:
    """``prefix-01`` … ``prefix-K`` (zero-padded to the width of K, rank order)."""
    width = len(str(k))
    return tuple(f"{prefix}-{j:0{width}d}" for j in range(1, k + 1))


def zipf(names: int | tuple[str, ...] | list[str], s: float, *, prefix: str = "adapter",
         per: str = "session") -> Popularity:
    """Zipf popularity of exponent ``s`` over ``names`` (rank order) or over K generated
    names (:func:`adapter_names`)."""
    names = adapter_names(names, prefix) if isinstance(names, int) else tuple(names)
    w = zipf_weights(len(names), s)
    return Popularity(names, tuple(float(x) for x in w), "zipf", float(s), "", per)


def _mean_log_rank(k: int, s: float) -> tuple[float, float]:
    """E_s[ln k] and Var_s[ln k] under Zipf(K, s)."""
    w = zipf_weights(k, s)
    lk = np.log(np.arange(1, k + 1, dtype=np.float64))
    m = float(w @ lk)
    return m, float(w @ (lk - m) ** 2)


def fit_zipf_exponent(counts: np.ndarray | list[int]) -> float:
    """Maximum-likelihood Zipf exponent of ``counts`` given in rank order (rank 1 first).

    The log-likelihood of counts n_k at ranks k = 1..K is ℓ(s) = −s Σ n_k ln k − N ln H(K, s);
    ℓ'(s) = 0 gives E_s[ln k] = (1/N) Σ n_k ln k (the law's mean log-rank equals the
    sample's), the estimator of Clauset, Shalizi & Newman (SIAM Review 2009, eq. 3.5) with
    the bounded normalizer H(K, s) in place of ζ(s). E_s[ln k] falls with s (its derivative is
    −Var_s[ln k]), so the root is unique; found by Brent's method on [0, :data:`MAX_EXPONENT`]
    (0 where the counts are flatter than uniform). Ranks taken from the same counts (a
    trace's names sorted by count) bias the tail towards the law slightly; the bias is far
    below the standard error (:func:`zipf_standard_error`) once each name has tens of
    requests.
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or len(c) < 1 or not (np.isfinite(c).all() and (c >= 0).all()):
        raise ValueError("fit_zipf_exponent: counts must be non-negative numbers in rank order")
    n = c.sum()
    if n <= 0:
        raise ValueError("fit_zipf_exponent: the counts are all zero")
    k = len(c)
    if k == 1:
        return 0.0
    target = float(c @ np.log(np.arange(1, k + 1, dtype=np.float64)) / n)
    if target >= _mean_log_rank(k, 0.0)[0]:
        return 0.0
    if target <= _mean_log_rank(k, MAX_EXPONENT)[0]:
        return MAX_EXPONENT
    return float(optimize.brentq(lambda s: _mean_log_rank(k, s)[0] - target, 0.0,
                                 MAX_EXPONENT, xtol=1e-10))


def zipf_standard_error(k: int, s: float, n: int) -> float:
    """Asymptotic standard error of :func:`fit_zipf_exponent` on ``n`` draws: the Fisher
    information of one draw is −ℓ''(s)/N = Var_s[ln k], so se = 1/√(n Var_s[ln k])."""
    return 1.0 / math.sqrt(n * _mean_log_rank(k, s)[1])


def name_counts(models: pl.Series) -> pl.DataFrame:
    """Requests per non-null name, most requested first (ties by name): ``model``, ``len``."""
    return (models.drop_nulls().cast(pl.String).to_frame("model").group_by("model").len()
            .sort(["len", "model"], descending=[True, False]))


def from_trace(models: pl.Series, law: str = "zipf-fit", *, source: str = "",
               per: str = "session") -> Popularity:
    """The popularity of a trace's ``model`` column: ``zipf-fit`` (its names ranked by
    count, Zipf of the maximum-likelihood exponent) or ``empirical`` (their shares)."""
    if law not in ("zipf-fit", "empirical"):
        raise ValueError(f"popularity from {source or 'a trace'}: law must be zipf-fit or "
                         f"empirical, got {law!r}")
    counts = name_counts(models)
    if counts.height == 0:
        raise ValueError(f"popularity from {source or 'a trace'}: its 'model' column has no "
                         "names")
    names = tuple(counts["model"].to_list())
    c = counts["len"].to_numpy().astype(np.float64)
    if law == "empirical":
        return Popularity(names, tuple(float(x) for x in c / c.sum()), law, None, source, per)
    s = fit_zipf_exponent(c)
    return Popularity(names, tuple(float(x) for x in zipf_weights(len(names), s)), law, s,
                      source, per)
