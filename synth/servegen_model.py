"""Workload models built from ServeGen client pools (Xiang et al., NSDI 2026): per client, a
piecewise rate per 600 s window with its Gamma/Weibull inter-arrival shape, and lengths from the
published per-window PMFs, sampled exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy import special

from servetrace.synth.model import (
    WorkloadModel,
)
from servetrace.synth.parameters import (
    Group,
    Labels,
    Lengths,
    Piecewise,
    Table,
)


def _pmf_table(values: np.ndarray, probs: np.ndarray) -> Table:
    """The discrete :class:`Table` of a PMF: its support (values of positive probability,
    ascending, duplicates added up) and cumulative probabilities normalized to end at 1,
    sampled exactly by the inverse CDF (Devroye 1986, *Non-Uniform Random Variate
    Generation*, §III.2)."""
    v = np.asarray(values, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, None)
    keep = p > 0
    if not keep.any():
        return Table((0.0, 0.0), integer=True)
    v, inverse = np.unique(v[keep], return_inverse=True)
    p = np.bincount(inverse, weights=p[keep])
    cdf = np.cumsum(p) / p.sum()
    cdf[-1] = 1.0
    return Table(tuple(float(x) for x in v), integer=True, cdf=tuple(float(c) for c in cdf))


def _servegen_lengths(pmfs: pl.DataFrame) -> Lengths:
    """Lengths of one client window from its PMF rows (field, value, prob)."""
    fields = set(pmfs["field"].unique().to_list())

    def table(field: str) -> Table:
        rows = pmfs.filter(pl.col("field") == field)
        return _pmf_table(rows["value"].to_numpy(), rows["prob"].to_numpy())

    inp = table("input_tokens") if "input_tokens" in fields else (
        table("text_tokens") if "text_tokens" in fields else Table((0.0, 0.0), integer=True))
    out = table("output_tokens") if "output_tokens" in fields else \
        Table((0.0, 0.0), integer=True)
    return Lengths(inp, out, 0.0, 0.0)


def _shape_for_cv(families: np.ndarray, cv: np.ndarray) -> np.ndarray:
    """The shape giving coefficient of variation ``cv`` for each window's family (NaN where
    ``cv`` is missing or not positive, or the family is not Gamma/Weibull): gamma 1/cv²;
    Weibull k solving Γ(1 + 2/k)/Γ(1 + 1/k)² − 1 = cv² by bisection on ln k in
    [ln 0.02, ln 100] (the CV falls as k grows), vectorized over windows."""
    cv = np.asarray(cv, dtype=np.float64)
    ok = np.isfinite(cv) & (cv > 0)
    out = np.full(cv.shape, np.nan)
    gam = ok & (families == "Gamma")
    out[gam] = 1.0 / cv[gam] ** 2
    wei = ok & (families == "Weibull")
    target = cv[wei] ** 2
    lo, hi = np.full(target.shape, math.log(0.02)), np.full(target.shape, math.log(100.0))
    for _ in range(60):  # 60 halvings of a bracket of width ln 5000: far below float noise
        mid = (lo + hi) / 2
        k = np.exp(mid)
        cv2 = np.expm1(special.gammaln(1 + 2 / k) - 2 * special.gammaln(1 + 1 / k))
        high = cv2 > target  # CV too high: the shape must grow
        lo, hi = np.where(high, mid, lo), np.where(high, hi, mid)
    out[wei] = np.exp((lo + hi) / 2)
    return out


def from_servegen(client_windows: pl.DataFrame | pl.LazyFrame,
                  length_pmfs: pl.DataFrame | pl.LazyFrame | None = None, *,
                  clients: Sequence[str] | None = None,
                  source: str | None = None, iat: str = "fitted") -> WorkloadModel:
    """A :class:`WorkloadModel` of a ServeGen client pool, built directly from its tables.

    Per client (one group, ``tenant`` = client): :class:`Piecewise` arrivals — the window's
    ``rate``, its ``iat_family`` (Gamma/Weibull, Poisson where null) and ``shape``, windows of
    ``window_s`` repeating past the last — and per PMF window (6 h) input/output lengths
    from ``length_pmfs`` (``input_tokens``, else ``text_tokens``; ``output_tokens``), sampled
    exactly from each PMF (discrete :class:`Table`: inverse CDF over its support).
    ServeGen publishes input and output PMFs separately, with no joint distribution, so the
    copula correlation is 0 here (the only case where they are drawn independently); a
    window whose PMF is empty uses the client's PMF pooled over its windows. ``clients``
    keeps only those; ``source`` names the pool (default: the ``trace`` column, else
    ``servegen``).

    ``iat`` chooses what sets a window's inter-arrival shape, since ServeGen's tables carry
    two figures that disagree (on m-small a Weibull window's fitted shape has a CV of a
    median 0.81 times its published ``cv``): ``"fitted"`` (default, ServeGen's own
    generator) samples the fitted ``shape``; ``"cv"`` keeps the family and solves for the
    shape whose CV is the window's ``cv`` column (gamma: shape = 1/cv²; Weibull:
    Γ(1 + 2/k)/Γ(1 + 1/k)² − 1 = cv²), falling back to the fitted shape where ``cv`` is
    missing.
    Xiang et al., "ServeGen", NSDI 2026.
    """
    if iat not in ("fitted", "cv"):
        raise ValueError(f"from_servegen: iat must be 'fitted' or 'cv', not {iat!r}")
    cw = client_windows.collect() if isinstance(client_windows, pl.LazyFrame) else client_windows
    need = ("client", "window_start_s", "window_s", "rate")
    for c in need:
        if c not in cw.columns:
            raise ValueError(f"from_servegen: client_windows lacks column {c!r}")
    if cw.height == 0:
        raise ValueError("from_servegen: client_windows is empty")
    lp = (length_pmfs.collect() if isinstance(length_pmfs, pl.LazyFrame) else length_pmfs)
    if clients is not None:
        cw = cw.filter(pl.col("client").is_in(list(clients)))
        if cw.height == 0:
            raise ValueError(f"from_servegen: none of the clients {list(clients)[:5]} found")
    for c in ("iat_family", "shape", "cv"):
        if c not in cw.columns:
            cw = cw.with_columns(pl.lit(None, pl.String if c == "iat_family" else pl.Float64)
                                 .alias(c))
    if iat == "cv":
        shape = _shape_for_cv(cw["iat_family"].fill_null("").to_numpy(),
                              cw["cv"].cast(pl.Float64).fill_null(np.nan).to_numpy())
        cw = cw.with_columns(pl.Series("shape", shape).fill_nan(None)
                             .fill_null(cw["shape"].cast(pl.Float64)))
    trace = source or (cw["trace"][0] if "trace" in cw.columns else "servegen")
    cw = cw.sort("client", "window_start_s")
    t0 = float(cw["window_start_s"].min())
    span = float((cw["window_start_s"] + cw["window_s"]).max()) - t0
    expected = cw.group_by("client").agg((pl.col("rate") * pl.col("window_s")).sum()
                                         .alias("n")).sort("client")
    total = float(expected["n"].sum())
    groups = []
    for client, n in expected.iter_rows():  # one group per client
        rows = cw.filter(pl.col("client") == client)
        window = float(rows["window_s"][0])
        # windows on a regular grid from the pool's start (missing ones have rate 0)
        idx = np.rint((rows["window_start_s"].to_numpy() - t0) / window).astype(np.int64)
        n_w = math.ceil(span / window)
        rates = np.zeros(n_w)
        fams = np.full(n_w, "", dtype=object)
        shapes = np.ones(n_w)
        rates[idx] = rows["rate"].to_numpy()
        fams[idx] = rows["iat_family"].fill_null("").to_numpy()
        shapes[idx] = rows["shape"].fill_null(1.0).to_numpy()
        arrivals = Piecewise(window, tuple(float(v) for v in rates),
                             tuple(str(v) for v in fams), tuple(float(v) for v in shapes))
        by_window: tuple[Lengths, ...] = ()
        lw_s = 0.0
        pooled = Lengths(Table((0.0, 0.0), integer=True), Table((0.0, 0.0), integer=True),
                         0.0, 0.0)
        if lp is not None and lp.height:
            mine = lp.filter(pl.col("client") == client)
            if mine.height:
                pooled_rows = (mine.group_by("field", "value").agg(pl.col("prob").sum()))
                pooled = _servegen_lengths(pooled_rows)
                lw_s = float(mine["window_s"][0])
                n_lw = max(math.ceil(span / lw_s), 1)
                starts = np.rint((mine["window_start_s"].to_numpy() - t0) / lw_s)
                mine = mine.with_columns(pl.Series("_w", starts.astype(np.int64)))
                parts = {int(k[0]): f for k, f in mine.partition_by("_w", as_dict=True).items()}
                by_window = tuple(_servegen_lengths(parts[j]) if j in parts else pooled
                                  for j in range(n_lw))
        labels = Labels(("tenant",), ((str(client),),), (1.0,))
        groups.append(Group(str(client), float(n) / total if total > 0 else 0.0, arrivals,
                            pooled, labels, lengths_by_window=by_window,
                            lengths_window_s=lw_s))
    return WorkloadModel(str(trace), "tenant", span, round(total), tuple(groups))
