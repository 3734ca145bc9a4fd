"""Representative subsets of serverless functions, against the InVitro-style and random ones.

A replay of a large trace (Azure Functions 2019: ~50,000 functions a day) on a test cluster
uses a few hundred functions, and which ones decides what the experiment sees. Per function
(:func:`features`): invocation rate (invocations/s), inter-arrival CV (minute resolution, as
:func:`servetrace.synth.serverless_fidelity.iat_cv`; −1 for functions with under three
invocations, so their share is matched too), mean duration, mean memory and trigger.

:func:`distances` measures a subset against the whole trace: the Kolmogorov–Smirnov distance
and the 1-Wasserstein distance (on log10 for rate, duration and memory; on the CV itself) of
each continuous feature, and the total-variation distance of the trigger mix.

:func:`representative` chooses n functions that minimize the stated distance

    D(S) = Σ_features [ KS_f(S) + W1_f(S) / sd_f ] ,

sd_f the whole trace's standard deviation of feature f (on the W1 scale), under trigger
quotas (largest-remainder apportionment of n to the trace's trigger mix, so the trigger TV
is the smallest any subset of n can have). It starts from a stratified draw (per trigger,
systematic over rate order with a random start) and improves it by local search: each step
scores a batch of random same-trigger swaps at once (cumulative membership counts along
each feature's sorted order give every candidate's KS and W1 in one array operation) and
keeps the best if it lowers D (stopping after :data:`PATIENCE` steps without gain). Both
distances are exact for empirical distributions: both
step functions only change at the trace's own values.

Comparisons: :func:`invitro` is the InVitro sampler's criterion as we read it (Ustiugov et al.,
"Enabling In-Vitro Serverless Systems Research", CHEOPS 2023; ``vhive-serverless/invitro``
``sampler``): among ``draws`` random subsets, the one with the smallest sum of Wasserstein
distances of the per-function invocation rate and of duration × memory; :func:`random_subset`
is a uniform draw without replacement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from servetrace.synth import serverless_counts as svc
from servetrace.synth import serverless_fidelity as sf

CONTINUOUS = ("rate", "iat_cv", "duration", "memory")
LOG = {"rate": True, "iat_cv": False, "duration": True, "memory": True}
STEPS = 400
"""Local-search steps of :func:`representative` ..."""
BATCH = 64
"""... candidate swaps scored per step ..."""
PATIENCE = 60
"""... and steps without improvement before it stops."""


def features(table: pl.DataFrame | pl.LazyFrame,
             functions: pl.DataFrame | pl.LazyFrame | None = None) -> pl.DataFrame:
    """One row per function of ``table`` (``invocation_counts`` or ``invocations``): tenant,
    app, function, trigger, rate, iat_cv, duration, memory (module doc); sizes from the
    ``functions`` table's ``duration_mean_s``/``memory_mean_mb`` (per-invocation means when
    the table has them)."""
    frame = table.lazy().collect()
    fx = None if functions is None else svc._with_keys(functions.lazy().collect())
    g = svc.grid(frame, 60.0)
    if fx is not None:
        g = svc.Grid(g.keys.join(fx.select(*sf._KEYS, pl.col("trigger").alias("_t")).unique(
            sf._KEYS, keep="first"), on=sf._KEYS, how="left", nulls_equal=True,
            maintain_order="left").with_columns(pl.coalesce("trigger", "_t").alias("trigger"))
            .drop("_t"), g.counts, g.origin_s, g.window_s, g.times)
    cv = sf.iat_cv(g.counts, g.window_s)
    return g.keys.with_columns(
        pl.col("trigger").fill_null("unknown"),
        pl.Series("rate", g.counts.sum(axis=1) / (g.counts.shape[1] * g.window_s)),
        pl.Series("iat_cv", np.where(np.isfinite(cv), cv, -1.0)),
        pl.Series("duration", sf._sizes(frame, g, fx, "duration_s", "duration_mean_s")),
        pl.Series("memory", sf._sizes(frame, g, fx, "memory_mb", "memory_mean_mb")))


def _scale(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.log10(np.maximum(x, 1e-12)) if LOG[name] else x


@dataclass(frozen=True)
class _Axis:
    """One feature in sorted order: tie-group ends and the gaps between distinct values."""

    order: np.ndarray
    rank: np.ndarray
    """Position of each row in ``order``."""
    ends: np.ndarray
    dx: np.ndarray
    f_all: np.ndarray
    sd: float


def _axis(x: np.ndarray) -> _Axis:
    x = np.where(np.isfinite(x), x, np.nanmin(x[np.isfinite(x)]) - 1 if np.isfinite(x).any()
                 else 0.0)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    ends = np.r_[np.flatnonzero(np.diff(xs) > 0), len(xs) - 1]
    dx = np.r_[np.diff(xs[ends]), 0.0]
    rank = np.empty(len(x), dtype=np.int64)
    rank[order] = np.arange(len(x))
    return _Axis(order, rank, ends, dx, (ends + 1) / len(xs), float(xs.std()) or 1.0)


def _swap_scores(member: np.ndarray, n: int, axes: list[_Axis], outs: np.ndarray,
                 ins: np.ndarray) -> np.ndarray:
    """D of ``member`` with each swap (outs[k] → ins[k]) applied: the swap moves the subset's
    empirical CDF by 1/n between the two rows' sorted positions, so no candidate is built."""
    total = np.zeros(len(outs))
    for a in axes:
        cur = np.cumsum(member[a.order])[a.ends] / n - a.f_all
        step = ((a.ends[None, :] >= a.rank[ins][:, None]).astype(np.float64)
                - (a.ends[None, :] >= a.rank[outs][:, None]))
        diff = np.abs(cur[None, :] + step / n)
        total += diff.max(axis=1) + (diff * a.dx).sum(axis=1) / a.sd
    return total


def _score(member: np.ndarray, n: int, axes: list[_Axis]) -> tuple[np.ndarray, np.ndarray]:
    """KS and W1/sd per candidate (rows of ``member``) and feature: (M, features) each."""
    ks, w1 = [], []
    for a in axes:
        cum = np.cumsum(member[:, a.order], axis=1)[:, a.ends] / n
        diff = np.abs(cum - a.f_all)
        ks.append(diff.max(axis=1))
        w1.append((diff * a.dx).sum(axis=1) / a.sd)
    return np.stack(ks, axis=1), np.stack(w1, axis=1)


def _quotas(trigger: np.ndarray, n: int) -> dict[str, int]:
    names, counts = np.unique(trigger, return_counts=True)
    share = counts / counts.sum() * n
    q = np.floor(share).astype(np.int64)
    rest = n - int(q.sum())
    q[np.argsort(-(share - q), kind="stable")[:rest]] += 1
    return dict(zip(names.tolist(), q.tolist(), strict=True))


def _axes(feats: pl.DataFrame) -> list[_Axis]:
    return [_axis(_scale(c, feats[c].to_numpy())) for c in CONTINUOUS]


def representative(feats: pl.DataFrame, n: int, seed: int = 0, *, steps: int = STEPS,
                   batch: int = BATCH) -> np.ndarray:
    """Row indices of ``n`` functions of ``feats`` minimizing D under trigger quotas."""
    p = feats.height
    if not 0 < n <= p:
        raise ValueError(f"representative: n must be in 1..{p}, got {n}")
    rng = np.random.default_rng(seed)
    trig = feats["trigger"].to_numpy().astype(str)
    rate = feats["rate"].to_numpy()
    member = np.zeros(p, dtype=bool)
    for name, q in _quotas(trig, n).items():
        rows = np.flatnonzero(trig == name)
        rows = rows[np.argsort(rate[rows], kind="stable")]
        pos = (rng.random() + np.arange(q)) * len(rows) / max(q, 1)
        member[rows[np.minimum(pos.astype(np.int64), len(rows) - 1)]] = True
    axes = _axes(feats)
    ks, w1 = _score(member[None, :], n, axes)
    best = float(ks.sum() + w1.sum())
    stale = 0
    for _ in range(steps):  # local-search steps, each scoring a batch of swaps at once
        ins = np.flatnonzero(member)
        outs = rng.choice(ins, batch)
        pool = np.flatnonzero(~member)
        if len(pool) == 0:
            break
        cand_in = rng.choice(pool, 8 * batch)
        # a swap stays inside a trigger: the first same-trigger candidate per removed row
        same = trig[cand_in][None, :] == trig[outs][:, None]
        has = same.any(axis=1)
        if not has.any():
            continue
        ins_new = cand_in[np.argmax(same, axis=1)][has]
        outs = outs[has]
        total = _swap_scores(member, n, axes, outs, ins_new)
        k = int(np.argmin(total))
        if total[k] < best - 1e-12:
            best = float(total[k])
            member[outs[k]], member[ins_new[k]] = False, True
            stale = 0
        else:
            stale += 1
            if stale >= PATIENCE:
                break
    return np.flatnonzero(member)


def random_subset(feats: pl.DataFrame, n: int, seed: int = 0) -> np.ndarray:
    """``n`` row indices drawn uniformly without replacement."""
    return np.sort(np.random.default_rng(seed).choice(feats.height, n, replace=False))


def invitro(feats: pl.DataFrame, n: int, seed: int = 0, draws: int = 256) -> np.ndarray:
    """The InVitro-style subset (module doc): the best of ``draws`` random subsets by the sum
    of 1-Wasserstein distances of log10 rate and log10(duration × memory)."""
    rng = np.random.default_rng(seed)
    p = feats.height
    member = np.zeros((draws, p), dtype=bool)
    picks = np.argsort(rng.random((draws, p)), axis=1)[:, :n]
    np.put_along_axis(member, picks, True, axis=1)
    dm = feats["duration"].to_numpy() * feats["memory"].to_numpy()
    axes = [_axis(_scale("rate", feats["rate"].to_numpy())), _axis(_scale("duration", dm))]
    _, w1 = _score(member, n, axes)
    return np.flatnonzero(member[int(np.argmin(w1.sum(axis=1)))])


def distances(feats: pl.DataFrame, rows: np.ndarray) -> dict[str, float]:
    """KS and W1 of each continuous feature and the trigger TV of subset ``rows`` against
    all of ``feats`` (module doc)."""
    member = np.zeros(feats.height, dtype=bool)
    member[np.asarray(rows)] = True
    n = int(member.sum())
    out: dict[str, float] = {}
    for name, a in zip(CONTINUOUS, _axes(feats), strict=True):
        ks, w1 = _score(member[None, :], n, [a])
        out[f"{name}_ks"] = float(ks[0, 0])
        out[f"{name}_wasserstein"] = float(w1[0, 0] * a.sd)
    trig = feats["trigger"].to_numpy().astype(str)
    names = np.unique(trig)
    p_all = np.array([(trig == t).mean() for t in names])
    p_sub = np.array([(trig[member] == t).mean() for t in names])
    out["trigger_tv"] = float(0.5 * np.abs(p_all - p_sub).sum())
    return out


def compare(feats: pl.DataFrame, n: int, seeds: range | list[int]) -> pl.DataFrame:
    """Distances of the representative, InVitro-style and random subsets over ``seeds``: one
    row per (seed, method) with every distance of :func:`distances`."""
    rows = []
    for s in seeds:  # seeds of an experiment, not functions
        for method, pick in (("representative", representative), ("invitro", invitro),
                             ("random", random_subset)):
            rows.append({"seed": s, "method": method, **distances(feats, pick(feats, n, s))})
    return pl.DataFrame(rows)
