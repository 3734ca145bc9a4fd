"""Fairness across tenants: concentration of demand, scheduler simulation, service difference.

Works on the canonical ``requests`` table grouped by tenant (``by``, default ``tenant``: the
BurstGPT session, the ServeGen client, ...; ``by="class"``: a workload mix's
``request_class``, see :mod:`servetrace.analysis.tenancy`). Two parts here, and the scheduler
simulation (:func:`simulate`, :class:`Server`) of :mod:`servetrace.analysis.scheduling`,
re-exported:

**Concentration** of per-tenant demand (:func:`tenant_service`, :func:`concentration`):
requests and *service*, the cost function of Sheng et al. (below),
``service = w_in · input_tokens + w_out · output_tokens`` (``w_in = 1``, ``w_out = 2`` by
default, as in the authors' code), summarised by the Gini coefficient (:func:`gini`), Jain's
fairness index (:func:`jain`), the Herfindahl–Hirschman index (:func:`hhi`) and the shares of
the top 1 % and the top 10 tenants. Tenants whose demand exceeds a multiple of their fair share in a
window: :func:`overuse`.

**Service difference** (:func:`service_difference`) as the VTC artifact computes it for its
tables (``fair_bench/plot/plot_6.2_work_diff.py``): a request's service is spread evenly
from its first token to its finish; at ticks ``t_i = t_0 + i (T − t_0)/n`` (``i = 1 … n−1``,
``T`` the last arrival) each tenant's received service rate ``s_j`` and requested rate
``d_j`` (service of the requests arriving in the window) over a window of ``window_s``
centred on the tick give ``diff(t_i) = max_j min(max_k s_k − s_j, d_j − s_j)``; the table
reports the maximum, mean and variance of ``diff`` over the ticks.

Concentration formulas: Gini ``G = Σ_i Σ_j |x_i − x_j| / (2 n² x̄)`` (mean absolute
difference over twice the mean; Gini 1912); Jain's index ``J = (Σ x)² / (n Σ x²)`` (Jain,
Chiu & Hawe, DEC-TR-301, 1984); ``HHI = Σ s_i²`` over shares ``s_i`` (Herfindahl 1950,
Hirschman 1945). Note ``J = 1 / (n · HHI)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import polars as pl

from servetrace.analysis.scheduling import (
    DEFAULT_SERVER,
    SCHEDULERS,
    Scheduler,
    Server,
    SimResult,
    simulate,
    simulate_runs,
    vtc_bound,
)
from servetrace.analysis.tenancy import (
    _REQUIRED,
    MEASURES,
    W_IN,
    W_OUT,
    By,
    Frame,
    _check,
    _keys,
    _label,
    _lazy,
    _service,
    _strings,
    _values,
    _weights,
)

__all__ = ["DEFAULT_SERVER", "MEASURES", "SCHEDULERS", "W_IN", "W_OUT", "Scheduler", "Server",
           "SimResult", "concentration", "gini", "hhi", "jain", "overuse",
           "service_difference", "service_difference_over_time", "simulate", "simulate_runs",
           "summary", "tenant_latency", "tenant_service", "vtc_bound"]


# ---------------------------------------------------------------------------------------------
# concentration


def gini(x: Sequence[float] | np.ndarray | pl.Series) -> float:
    """Gini coefficient of non-negative amounts: mean absolute difference over twice the mean.

    ``G = Σ_i Σ_j |x_i − x_j| / (2 n² x̄)``, computed from the sorted values as
    ``G = 2 Σ_i i·x_(i) / (n Σ x) − (n + 1)/n`` (Gini 1912). 0 when all amounts are equal,
    ``(n − 1)/n`` when one holds everything. NaN when every amount is 0. Raises
    ``ValueError`` on empty, negative or non-finite input.
    """
    a = np.sort(_values(x, "gini"))
    total = a.sum()
    if total == 0:
        return math.nan
    n = a.size
    return float(2.0 * np.dot(np.arange(1, n + 1, dtype=np.float64), a) / (n * total)
                 - (n + 1) / n)


def jain(x: Sequence[float] | np.ndarray | pl.Series) -> float:
    """Jain's fairness index ``J = (Σ x)² / (n Σ x²)`` (Jain, Chiu & Hawe, DEC-TR-301, 1984).

    1 when all amounts are equal, ``1/n`` when one holds everything; ``J = 1/(1 + CV²)`` with
    CV the population coefficient of variation. NaN when every amount is 0.
    """
    a = _values(x, "jain")
    sq = float(np.dot(a, a))
    if sq == 0:
        return math.nan
    return float(a.sum() ** 2 / (a.size * sq))


def hhi(shares: Sequence[float] | np.ndarray | pl.Series) -> float:
    """Herfindahl–Hirschman index ``HHI = Σ s_i²`` of market shares (Herfindahl 1950).

    The input is normalised to sum to 1 first, so raw amounts work as well as shares. From
    ``1/n`` (equal shares) to 1 (one tenant). NaN when every amount is 0.
    """
    a = _values(shares, "hhi")
    total = a.sum()
    if total == 0:
        return math.nan
    s = a / total
    return float(np.dot(s, s))


def _top_share(a: np.ndarray, k: int) -> float:
    total = a.sum()
    if total == 0:
        return math.nan
    k = min(max(k, 1), a.size)
    return float(np.partition(a, a.size - k)[a.size - k:].sum() / total)


def tenant_service(requests: Frame, by: By = "tenant", w_in: float = W_IN,
                   w_out: float = W_OUT) -> pl.DataFrame:
    """Per-tenant demand: requests, tokens and service, with each tenant's share of service.

    ``service = w_in · Σ input_tokens + w_out · Σ output_tokens`` (the linear cost function of
    Sheng et al., OSDI 2024, §3); ``share = service / Σ service``. One row per tenant (a null
    key is a tenant of its own), sorted by service, largest first.

    Returns the ``by`` columns, then ``requests``, ``input_tokens``, ``output_tokens``,
    ``service``, ``share``.
    """
    keys = _keys(by)
    _weights(w_in, w_out)
    lf = _lazy(requests)
    _check(lf, [*keys, "input_tokens", "output_tokens"])
    schema = lf.collect_schema()
    out = (lf.select(*_strings(keys, schema), "input_tokens", "output_tokens")
           .group_by(keys)
           .agg(pl.len().cast(pl.Int64).alias("requests"),
                pl.col("input_tokens").cast(pl.Int64).sum(),
                pl.col("output_tokens").cast(pl.Int64).sum())
           .with_columns(_service(w_in, w_out).alias("service"))
           .with_columns((pl.col("service") / pl.col("service").sum()).alias("share"))
           .sort(["service", *keys], descending=[True] + [False] * len(keys), nulls_last=True)
           .collect())
    if out.height == 0:
        raise ValueError("requests: no rows")
    return out


def _concentration_row(measure: str, a: np.ndarray) -> dict[str, object]:
    n = a.size
    return {"measure": measure, "tenants": n, "gini": gini(a), "jain": jain(a), "hhi": hhi(a),
            "top1pct_share": _top_share(a, math.ceil(0.01 * n)),
            "top10_share": _top_share(a, 10)}


_CONCENTRATION_SCHEMA = {"measure": pl.String, "tenants": pl.Int64, "gini": pl.Float64,
                         "jain": pl.Float64, "hhi": pl.Float64, "top1pct_share": pl.Float64,
                         "top10_share": pl.Float64}


def concentration(requests: Frame, by: By = "tenant", w_in: float = W_IN,
                  w_out: float = W_OUT) -> pl.DataFrame:
    """How concentrated demand is across tenants, by request count and by service.

    One row per measure (``requests``, ``service``; see :func:`tenant_service`) with the
    number of tenants, :func:`gini`, :func:`jain`, :func:`hhi`, ``top1pct_share`` (the share
    of the ``ceil(1 % × tenants)`` largest tenants) and ``top10_share`` (the 10 largest, or
    all when there are fewer).

    Returns ``measure``, ``tenants``, ``gini``, ``jain``, ``hhi``, ``top1pct_share``,
    ``top10_share``.
    """
    ts = tenant_service(requests, by, w_in, w_out)
    rows = [_concentration_row(m, ts[m].to_numpy().astype(np.float64)) for m in MEASURES]
    return pl.DataFrame(rows, schema=_CONCENTRATION_SCHEMA)


def overuse(requests: Frame, factor: float = 2.0, window_s: float = 60.0, by: By = "tenant",
            w_in: float = W_IN, w_out: float = W_OUT,
            measure: Literal["service", "requests"] = "service") -> pl.DataFrame:
    """Tenants whose demand in a window exceeds ``factor`` × their fair share of it.

    Time is cut into windows ``[k·window_s, (k+1)·window_s)`` of ``arrival_s``. In each
    window, a tenant's demand is its ``measure`` (service, see :func:`tenant_service`, or
    requests) of the requests arriving then, and the fair share is the window's total demand
    split equally among the ``tenants`` active in it (a max-min fair share would need the
    server's capacity, which the trace does not give). A tenant overuses when
    ``demand > factor × fair_share``; ``ratio = demand / fair_share`` (at most ``tenants``,
    so a lone tenant never overuses when ``factor ≥ 1``).

    Returns one row per (window, overusing tenant), by window then ratio, largest first:
    ``window_start_s``, the ``by`` columns, ``requests``, ``service``, ``tenants``,
    ``fair_share``, ``ratio``.
    """
    keys = _keys(by)
    _weights(w_in, w_out)
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"factor: must be a finite number > 0, got {factor!r}")
    if not (math.isfinite(window_s) and window_s > 0):
        raise ValueError(f"window_s: must be a finite number > 0, got {window_s!r}")
    if measure not in MEASURES:
        raise ValueError(f"measure: must be one of {MEASURES}, got {measure!r}")
    lf = _lazy(requests)
    _check(lf, [*keys, *_REQUIRED])
    schema = lf.collect_schema()
    per = (lf.select(*_strings(keys, schema),
                     ((pl.col("arrival_s") / window_s).floor() * window_s)
                     .alias("window_start_s"),
                     _service(w_in, w_out).alias("service"))
           .group_by(["window_start_s", *keys])
           .agg(pl.len().cast(pl.Int64).alias("requests"), pl.col("service").sum())
           .with_columns(pl.len().over("window_start_s").cast(pl.Int64).alias("tenants"),
                         (pl.col(measure).cast(pl.Float64).sum().over("window_start_s")
                          / pl.len().over("window_start_s")).alias("fair_share"))
           .with_columns((pl.col(measure) / pl.col("fair_share")).alias("ratio")))
    return (per.filter(pl.col(measure) > factor * pl.col("fair_share"))
            .select("window_start_s", *keys, "requests", "service", "tenants", "fair_share",
                    "ratio")
            .sort(["window_start_s", "ratio", *keys],
                  descending=[False, True] + [False] * len(keys), nulls_last=True)
            .collect())


def summary(requests: Frame, by: By = "tenant", w_in: float = W_IN, w_out: float = W_OUT,
            factor: float = 2.0, window_s: float = 60.0) -> pl.DataFrame:
    """Key fairness figures of a trace, one row (for the CLI and the report).

    ``tenants``, ``requests``, ``service`` (totals); ``gini_requests``, ``gini_service``,
    ``jain_service``, ``hhi_service``, ``top1pct_share_service``, ``top10_share_service``
    (:func:`concentration`); ``top_tenant`` and ``top_tenant_share`` (largest by service; its
    key joined with ``/`` when ``by`` has several columns); ``overusing_tenants``: tenants that
    overuse (:func:`overuse` with ``factor`` and ``window_s``) in at least one window, and
    ``overuse_windows_share``: the share of non-empty windows with at least one of them.
    """
    keys = _keys(by)
    ts = tenant_service(requests, by, w_in, w_out)
    req = ts["requests"].to_numpy().astype(np.float64)
    srv = ts["service"].to_numpy().astype(np.float64)
    over = overuse(requests, factor, window_s, by, w_in, w_out)
    lf = _lazy(requests)
    windows = (lf.select((pl.col("arrival_s") / window_s).floor().alias("w"))
               .select(pl.col("w").n_unique()).collect().item())
    top = ts.head(1).select(_label(keys)).item()
    return pl.DataFrame({
        "tenants": [ts.height], "requests": [int(req.sum())], "service": [float(srv.sum())],
        "gini_requests": [gini(req)], "gini_service": [gini(srv)], "jain_service": [jain(srv)],
        "hhi_service": [hhi(srv)],
        "top1pct_share_service": [_top_share(srv, math.ceil(0.01 * srv.size))],
        "top10_share_service": [_top_share(srv, 10)],
        "top_tenant": [top], "top_tenant_share": [float(ts["share"][0])],
        "overusing_tenants": [over.select(keys).unique().height],
        "overuse_windows_share": [over["window_start_s"].n_unique() / windows if windows
                                  else math.nan],
    }, schema={"tenants": pl.Int64, "requests": pl.Int64, "service": pl.Float64,
               "gini_requests": pl.Float64, "gini_service": pl.Float64,
               "jain_service": pl.Float64, "hhi_service": pl.Float64,
               "top1pct_share_service": pl.Float64, "top10_share_service": pl.Float64,
               "top_tenant": pl.String, "top_tenant_share": pl.Float64,
               "overusing_tenants": pl.Int64, "overuse_windows_share": pl.Float64})


# ---------------------------------------------------------------------------------------------
# results


def _windowed(result: SimResult, ticks: int, window_s: float
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tick times; per (tenant, tick) the service rate received and requested in the window
    centred on the tick, and the service accumulated from the start to the tick."""
    if not isinstance(result, SimResult):
        raise TypeError(f"result: expected a SimResult, got {type(result).__name__}")
    if not (isinstance(ticks, int) and ticks >= 2):
        raise ValueError(f"ticks: must be an integer >= 2, got {ticks!r}")
    if not (math.isfinite(window_s) and window_s > 0):
        raise ValueError(f"window_s: must be a finite number > 0, got {window_s!r}")
    req = result.requests
    if req.height == 0:
        raise ValueError("result: no requests")
    code = req.select(pl.col("tenant").rank("dense").cast(pl.Int64) - 1).to_series()
    code = code.fill_null(code.max() + 1 if code.null_count() < req.height else 0).to_numpy()
    n_ten = int(code.max()) + 1
    arrival = req["arrival_s"].to_numpy()
    t0, t_end = float(arrival.min()), float(arrival.max())
    x = t0 + (t_end - t0) / ticks * np.arange(1, ticks)
    lo, hi = x - window_s / 2, x + window_s / 2
    cost = (result.w_in * req["input_tokens"].to_numpy().astype(np.float64)
            + result.w_out * req["output_tokens"].to_numpy().astype(np.float64))
    served = ~req["finish_s"].is_null().to_numpy()
    s = (req["arrival_s"] + req["ttft_s"].fill_null(0.0)).to_numpy()
    e = req["finish_s"].fill_null(0.0).to_numpy()
    s = np.where(req["ttft_s"].is_null().to_numpy(), e, s)
    m = x.size
    got = np.zeros(n_ten * m)
    acc = np.zeros(n_ten * m)
    asked = np.zeros(n_ten * m)
    chunk = max(1, 1_000_000 // m)
    for a in range(0, req.height, chunk):  # bounded memory: chunks of requests × ticks
        sl = slice(a, a + chunk)
        idx = (code[sl] * m)[:, None] + np.arange(m)[None, :]
        sv, ev, cv, ok = s[sl, None], e[sl, None], cost[sl, None], served[sl, None]
        dur = ev - sv
        point = dur <= 1e-12
        span = np.where(point, 1.0, dur)
        win = np.clip(np.minimum(hi, ev) - np.maximum(lo, sv), 0.0, None) / span
        win = np.where(point, (ev >= lo) & (ev <= hi), win)
        upto = np.clip(np.minimum(x, ev) - sv, 0.0, None) / span
        upto = np.where(point, ev <= x, np.minimum(upto, 1.0))
        flat, size = idx.ravel(), n_ten * m
        got += np.bincount(flat, np.where(ok, cv * win, 0.0).ravel(), size)
        acc += np.bincount(flat, np.where(ok, cv * upto, 0.0).ravel(), size)
        av = arrival[sl, None]
        asked += np.bincount(flat, np.where((av >= lo) & (av <= hi), cv, 0.0).ravel(), size)
    shape = (n_ten, m)
    return (x, got.reshape(shape) / window_s, asked.reshape(shape) / window_s,
            acc.reshape(shape))


def service_difference_over_time(result: SimResult, ticks: int = 20,
                                 window_s: float = 60.0) -> pl.DataFrame:
    """The VTC artifact's service difference at each tick (see the module docstring).

    ``difference``: ``max_j min(max_k s_k − s_j, d_j − s_j)`` over the tenants, with ``s_j``
    and ``d_j`` the received and requested service rates (per second) in the window of
    ``window_s`` centred on the tick; ``accumulated_difference``: ``max_j A_j − min_j A_j``
    with ``A_j`` the service tenant ``j`` received from the start to the tick (the artifact's
    "absolute difference in service" plots). A request's service ``w_in · input + w_out ·
    output`` is spread evenly from its first token to its finish (one with no decode time is
    counted at its finish, where the artifact drops it).

    Returns ``time_s``, ``difference``, ``accumulated_difference``, one row per tick.
    """
    x, got, asked, acc = _windowed(result, ticks, window_s)
    diff = np.max(np.minimum(got.max(axis=0)[None, :] - got, asked - got), axis=0)
    return pl.DataFrame({"time_s": x, "difference": diff,
                         "accumulated_difference": acc.max(axis=0) - acc.min(axis=0)})


def service_difference(result: SimResult, ticks: int = 20, window_s: float = 60.0
                       ) -> pl.DataFrame:
    """Max, mean and variance over ticks of the service difference, as the VTC artifact's
    fairness tables report them (``fair_bench/plot/plot_6.2_work_diff.py``: 20 ticks, 60 s
    windows; the variance is the population variance).

    Returns one row: ``max``, ``mean``, ``variance`` (service per second).
    """
    d = service_difference_over_time(result, ticks, window_s)["difference"].to_numpy()
    return pl.DataFrame({"max": [float(d.max())], "mean": [float(d.mean())],
                         "variance": [float(d.var())]})


def tenant_latency(result: SimResult) -> pl.DataFrame:
    """Per-tenant latency and time to first token of a simulation (served requests only).

    Quantiles are linear interpolations between order statistics. Returns ``tenant``, ``n``
    (served requests), ``throttled`` (rejected), ``latency_mean_s``, ``latency_p50_s``,
    ``latency_p99_s``, ``ttft_mean_s``, ``ttft_p99_s``, ``queue_mean_s``, sorted by tenant.
    """
    if not isinstance(result, SimResult):
        raise TypeError(f"result: expected a SimResult, got {type(result).__name__}")
    served = pl.col("finish_s").is_not_null()
    lat, ttft = pl.col("latency_s").filter(served), pl.col("ttft_s").filter(served)
    return (result.requests.group_by("tenant")
            .agg(served.sum().cast(pl.Int64).alias("n"),
                 pl.col("throttled").sum().cast(pl.Int64).alias("throttled"),
                 lat.mean().alias("latency_mean_s"),
                 lat.quantile(0.5, "linear").alias("latency_p50_s"),
                 lat.quantile(0.99, "linear").alias("latency_p99_s"),
                 ttft.mean().alias("ttft_mean_s"),
                 ttft.quantile(0.99, "linear").alias("ttft_p99_s"),
                 pl.col("queue_s").filter(served).mean().alias("queue_mean_s"))
            .sort("tenant", nulls_last=True))
