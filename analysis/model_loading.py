"""Model loading in serverless LLM serving: cold starts that load a model's weights from a
storage tier.

An instance is a model replica (one per unit, ``by``: a model by default) and a cold start
loads the model's weights from a storage tier (GPU memory, host memory, SSD, remote), the
setting of ServerlessLLM (Fu et al., "ServerlessLLM: Low-Latency Serverless Inference for
Large Language Models", OSDI 2024) and λScale (Yu et al., "λScale: Enabling Fast Scaling
for Serverless Large Language Model Inference", 2025). The keep-alive rules are those of
:mod:`servetrace.analysis.keepalive` (a fixed keep-alive after the instance's busy end).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from servetrace.analysis.frames import columns as _by_list
from servetrace.analysis.frames import lazy as _lazy
from servetrace.analysis.keepalive_events import _require, _seg_cummax

Frame = pl.DataFrame | pl.LazyFrame


@dataclass(frozen=True)
class StorageTier:
    """Where a model's weights are loaded from on a cold start.

    ``load_s = latency_s + model_size_gb / bandwidth_gb_s`` (a transfer at the tier's
    sustained bandwidth plus a fixed start-up latency).
    """

    name: str
    bandwidth_gb_s: float
    latency_s: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.bandwidth_gb_s) and self.bandwidth_gb_s > 0):
            raise ValueError(f"StorageTier {self.name!r}: bandwidth_gb_s must be > 0, "
                             f"got {self.bandwidth_gb_s!r}")
        if not (math.isfinite(self.latency_s) and self.latency_s >= 0):
            raise ValueError(f"StorageTier {self.name!r}: latency_s must be >= 0, "
                             f"got {self.latency_s!r}")

    def load_s(self, model_size_gb: float) -> float:
        """Seconds to load ``model_size_gb`` GB from this tier."""
        return self.latency_s + model_size_gb / self.bandwidth_gb_s


#: Default tiers: nominal link rates, upper bounds on what a loader achieves; pass a
#: :class:`StorageTier` with measured figures for real hardware. The hierarchy (GPU
#: memory, host DRAM, local SSD, remote storage) is ServerlessLLM's (Fu et al., OSDI 2024);
#: loading from another GPU's memory over the network is λScale's (Yu et al., 2025).
TIERS: dict[str, StorageTier] = {
    # another GPU's memory over a 400 Gb/s RDMA NIC (λScale multicasts weights GPU to GPU)
    "gpu": StorageTier("gpu", 50.0),
    # host DRAM to GPU over PCIe 4.0 x16 (32 GB/s), ServerlessLLM's fastest local tier
    "host": StorageTier("host", 32.0),
    # one PCIe 4.0 NVMe SSD, sequential read (~7 GB/s)
    "ssd": StorageTier("ssd", 7.0),
    # remote storage over the network: 5 GB/s (40 Gb/s), the download rate of
    # ServerlessLLM's motivating example (a 130 GB checkpoint in about 26 s)
    "remote": StorageTier("remote", 5.0),
}


def _seg_searchsorted(unit: np.ndarray, t: np.ndarray, q_unit: np.ndarray, q_t: np.ndarray,
                      side: str) -> np.ndarray:
    """Insertion points of ``(q_unit, q_t)`` in rows sorted by ``(unit, t)``, exactly (one
    merged lexicographic sort), as :func:`numpy.searchsorted` with ``side``."""
    n = len(t)
    kind = np.r_[np.ones(n, np.int8), np.zeros(len(q_t), np.int8)]
    if side == "right":
        kind = 1 - kind  # queries after equal rows
    order = np.lexsort((kind, np.r_[t, q_t], np.r_[unit, q_unit]))
    is_row = order < n
    rows_before = np.cumsum(is_row) - is_row
    out = np.empty(len(q_t), np.int64)
    out[order[~is_row] - n] = rows_before[~is_row]
    return out


def _range_max(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``max(x[lo:hi])`` per query (``hi > lo``), from a sparse table (doubling windows)."""
    length = hi - lo
    k = np.floor(np.log2(length)).astype(np.int64)
    out = np.empty(len(lo))
    table = x
    for level in range(int(k.max()) + 1 if len(k) else 0):
        if level:
            half = 1 << (level - 1)
            table = np.maximum(table[:-half], table[half:])
        sel = np.flatnonzero(k == level)
        out[sel] = np.maximum(table[lo[sel]], table[hi[sel] - (1 << level)])
    return out


def _loading_colds(unit: np.ndarray, t: np.ndarray, sv: np.ndarray, first: np.ndarray,
                   load: float, keep: float) -> np.ndarray:
    """Which requests start a load (see :func:`model_loading`), without a loop over requests.

    Without loading delays a request ``j`` would be cold iff ``t_j > G_{j-1} + keep`` (``G``:
    running max of ``t + service`` in the unit); delays only lengthen busy periods, so the
    cold requests are among these *candidates*. A load started by ``c`` makes every
    request arriving before ``t_c + L`` end by ``D_c = t_c + L + max(service)`` over them,
    and leaves the rest of the episode as without delay; so after a cold ``c`` the next cold
    is the first candidate with ``t > D_c + keep``. The colds are then the chain of these
    successors from each unit's first request, found by pointer doubling (log rounds)."""
    n = len(t)
    g = _seg_cummax(t + sv, unit)
    cand = first.copy()
    cand[1:] |= t[1:] > g[:-1] + keep
    ci = np.flatnonzero(cand)
    m = len(ci)
    cu, ct = unit[ci], t[ci]
    r = np.maximum(_seg_searchsorted(unit, t, cu, ct + load, "left"), ci + 1)
    done = _range_max(sv, ci, r) + ct + load + keep
    pos = _seg_searchsorted(cu, ct, cu, done, "right")
    ok = pos < m
    nxt = np.full(m + 1, m, np.int64)
    nxt[:m][ok] = np.where(cu[pos[ok]] == cu[ok], pos[ok], m)
    on = np.zeros(m + 1, bool)
    on[:m] = first[ci]
    jump = nxt
    while (jump[:m] < m).any():  # after round k, on = chains' first 2^k members
        on[jump[np.flatnonzero(on[:m])]] = True
        on[m] = False
        jump = jump[jump]
    cold = np.zeros(n, bool)
    cold[ci[on[:m]]] = True
    return cold


def model_loading(requests: Frame, model_size_gb: float, tier: str | StorageTier,
                  keep_alive_s: float, by: str | Sequence[str] | None = "model", *,
                  service_s: float | None = None,
                  horizon_s: float | None = None) -> pl.DataFrame:
    """Cold starts of serverless LLM serving: one model replica per unit, loaded on demand.

    The replica of a unit (``by``: model or tenant) is the instance of the module's model,
    with cold starts that take ``L = tier.load_s(model_size_gb)`` (ServerlessLLM, Fu et al.
    OSDI 2024; λScale, Yu et al. 2025). A request arriving when no replica exists starts a
    load (a **cold start**, at ``t_c``); the replica is ready at ``R = t_c + L``; every request
    ``i`` of the episode starts at ``max(t_i, R)``, so it waits ``max(0, R - t_i)`` (the
    **added latency**: the cold request waits ``L``, requests arriving during the load wait
    the rest of it) and keeps the replica busy for ``service_s`` (default: the request's
    ``latency_s``, else 0; concurrent requests share the replica). The replica is unloaded
    ``keep_alive_s`` after its last busy moment; the next request after that is cold.
    The cold requests are found without a loop over requests (:func:`_loading_colds`).

    Returns:
        One row per unit, sorted by ``by``: the ``by`` columns, ``requests``,
        ``cold_starts``, ``cold_rate`` (= cold_starts / requests), ``delayed_requests``
        (requests that waited for a load, the cold ones included),
        ``added_latency_mean_s`` and ``added_latency_p99_s`` (over all the unit's requests,
        0 for those not delayed; linear interpolation), ``load_s``, ``replica_s`` (seconds a
        replica is resident, loading included, up to ``horizon_s``, default the end of the
        last request to finish), ``tier``.
    """
    if isinstance(tier, str):
        if tier not in TIERS:
            raise ValueError(f"tier: unknown storage tier {tier!r}; one of {sorted(TIERS)}")
        tier = TIERS[tier]
    if not isinstance(tier, StorageTier):
        raise ValueError(f"tier must be a name or a StorageTier, got {tier!r}")
    if not (math.isfinite(model_size_gb) and model_size_gb >= 0):
        raise ValueError(f"model_size_gb must be finite and >= 0, got {model_size_gb!r}")
    if not (math.isfinite(keep_alive_s) and keep_alive_s >= 0):
        raise ValueError(f"keep_alive_s must be finite and >= 0, got {keep_alive_s!r}")
    if service_s is not None and not (math.isfinite(service_s) and service_s >= 0):
        raise ValueError(f"service_s must be finite and >= 0, got {service_s!r}")
    cols = _by_list(by)
    lf = _lazy(requests, "requests")
    schema = lf.collect_schema()
    _require(schema, ["arrival_s", *cols], "requests")
    if "trace" in schema and "trace" not in cols:
        n_traces = lf.select(pl.col("trace").n_unique()).collect().item()
        if n_traces > 1:
            raise ValueError(f"requests: {n_traces} traces in one frame; add 'trace' to by")
    if service_s is not None:
        svc = pl.lit(float(service_s))
    elif "latency_s" in schema:
        svc = pl.col("latency_s").cast(pl.Float64).fill_null(0.0)
    else:
        svc = pl.lit(0.0)
    df = (lf.select(*cols, pl.col("arrival_s").cast(pl.Float64), svc.alias("_svc"))
          .sort([*cols, "arrival_s"])
          .with_columns((pl.struct(cols).rle_id() if cols else pl.lit(0, pl.UInt32))
                        .alias("_u"))
          .collect())
    if df.height == 0:
        raise ValueError("requests: no rows")
    t = df["arrival_s"].to_numpy()
    sv = df["_svc"].to_numpy()
    unit = df["_u"].to_numpy().astype(np.int64)
    if not np.isfinite(t).all():
        raise ValueError("requests: non-finite arrival_s")
    if (sv < 0).any() or not np.isfinite(sv).all():
        raise ValueError("requests: negative or non-finite latency_s (service time)")
    n = len(t)
    starts = np.flatnonzero(np.r_[True, unit[1:] != unit[:-1]])
    first = np.zeros(n, bool)
    first[starts] = True
    load = tier.load_s(model_size_gb)
    cold = _loading_colds(unit, t, sv, first, load, float(keep_alive_s))
    ep = np.maximum.accumulate(np.where(cold, np.arange(n), 0))  # the episode's cold request
    start = np.maximum(t, t[ep] + load)
    busy = _seg_cummax(start + sv, unit)
    wait = start - t
    horizon = float(horizon_s) if horizon_s is not None else float(busy.max())
    ci = np.flatnonzero(cold)
    ep_last = np.r_[ci[1:], n] - 1
    resident = np.maximum(np.minimum(busy[ep_last] + keep_alive_s, horizon) - t[ci], 0.0)
    n_units = len(starts)
    per = pl.DataFrame({"_u": unit, "_wait": wait}).group_by("_u").agg(
        pl.col("_wait").mean().alias("added_latency_mean_s"),
        pl.col("_wait").quantile(0.99, "linear").alias("added_latency_p99_s"),
    ).sort("_u")
    red = np.add.reduceat
    out = pl.DataFrame({
        "requests": np.diff(np.r_[starts, n]).astype(np.int64),
        "cold_starts": red(cold.astype(np.int64), starts),
        "delayed_requests": red((wait > 0).astype(np.int64), starts),
        "added_latency_mean_s": per["added_latency_mean_s"].to_numpy(),
        "added_latency_p99_s": per["added_latency_p99_s"].to_numpy(),
        "load_s": np.full(n_units, load),
        "replica_s": np.bincount(unit[ci], weights=resident, minlength=n_units),
    }).with_columns((pl.col("cold_starts") / pl.col("requests")).alias("cold_rate"),
                    pl.lit(tier.name).alias("tier"))
    out = out.select("requests", "cold_starts", "cold_rate", "delayed_requests",
                     "added_latency_mean_s", "added_latency_p99_s", "load_s", "replica_s",
                     "tier")
    if cols:
        out = pl.concat([df.select(cols).gather(starts), out], how="horizontal")
    return out
