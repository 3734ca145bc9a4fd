"""Per-window count series of serverless functions, as :mod:`servetrace.synth.serverless`
fits and samples them: the dense functions × windows grid, timer detection, daily and weekly
log-harmonic profiles, the count and gap tables, the Hurst calibration of the copula's
ordering, and the Dirichlet positions of invocations within a window. The model and its
references are described in :mod:`servetrace.synth.serverless`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

BATCH_SIZE = 8
"""Quantiles of the invocations per firing kept per timer."""
TABLE_SIZE = 32
"""Quantiles of the non-zero per-window counts kept per modulated function."""
MIN_FIRINGS = 4
"""Fewest active windows for a periodic fit."""
TIMER_SHARE = 0.75
"""Share of a timer's gaps that must be on its period grid (g or k·g) ..."""
OTHER_SHARE = 0.95
"""... and of any other trigger's."""
COUNT_CV = 0.1
"""Largest CV of a periodic function's count per active window."""
COUNT_IDC = 0.2
"""Largest variance/mean of the count per window of a sub-window timer (Poisson: 1)."""
HURST_GRID = np.round(np.linspace(0.2, 0.99, 17), 3)
"""Candidate Hurst exponents of :func:`calibrate_hurst`."""
GAP_SIZE = 32
"""Quantiles of the gaps between active windows kept per sparse function."""
CALIBRATION_WINDOWS = 1440
"""Longest stretch :func:`calibrate_hurst` simulates (a day of minutes)."""
CALIBRATION_ROWS = 512
"""Functions whose simulated counts :func:`calibrate_hurst` holds at once."""
OFF_RUNS = (1, 2, 5, 10, 30)
"""OFF-run lengths (windows) whose counts :func:`calibrate_hurst` matches."""
DAY_S = 86400.0
WEEK_S = 7 * DAY_S
_KEYS = ("tenant", "app", "function")


@dataclass(frozen=True)
class Grid:
    """A trace as a dense functions × windows count matrix plus its function keys."""

    keys: pl.DataFrame
    """tenant, app, function, trigger; row i is function i."""
    counts: np.ndarray
    origin_s: float
    window_s: float
    times: pl.DataFrame | None = None
    """Per-invocation input only: ``fid``, ``arrival_s`` (from the origin), ``duration_s`` and
    ``memory_mb`` where the table has them."""


def _with_keys(frame: pl.DataFrame) -> pl.DataFrame:
    for c in (*_KEYS, "trigger"):
        if c not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(c))
    keep = (pl.Categorical, pl.Enum)  # grouped as integers; keys become strings later
    return frame.with_columns(pl.col(c).cast(pl.String) for c in (*_KEYS, "trigger")
                              if not isinstance(frame.schema[c], keep))


def grid(table: pl.DataFrame | pl.LazyFrame, window_s: float = 60.0) -> Grid:
    """The dense count matrix of an ``invocation_counts`` or ``invocations`` table.

    Counts keep their own window (one ``window_s`` for the whole table, else an error);
    invocations are counted in ``window_s`` windows from the floor of the first arrival.
    """
    frame = _with_keys(table.lazy().collect())
    if frame.height == 0:
        raise ValueError("serverless fit: the table has no rows")
    if "count" in frame.columns and "window_start_s" in frame.columns:
        windows = frame["window_s"].unique()
        if windows.len() != 1:
            raise ValueError(f"serverless fit: invocation_counts mixes window sizes "
                             f"{sorted(windows.to_list())}; fit one window size at a time")
        w = float(windows[0])
        frame = frame.filter(pl.col("count") > 0)
        start = frame["window_start_s"].to_numpy()
        origin = float(start.min())
        m = np.rint((start - origin) / w).astype(np.int64)
        weight = frame["count"].to_numpy()
        times = None
    elif "arrival_s" in frame.columns:
        w = float(window_s)
        t = frame["arrival_s"].to_numpy()
        origin = math.floor(float(t.min()) / w) * w
        m = ((t - origin) // w).astype(np.int64)
        weight = None
        times = frame
    else:
        raise ValueError("serverless fit: need an invocation_counts table (window_start_s, "
                         "window_s, count) or an invocations table (arrival_s)")
    # one hashing pass over the string keys: row lists per function, scattered back
    keys = (frame.select(*_KEYS, "trigger").with_row_index("_r")
            .group_by(list(_KEYS), maintain_order=True)
            .agg(pl.col("trigger").drop_nulls().first(), pl.col("_r")))
    fid = np.empty(frame.height, dtype=np.int64)
    fid[keys["_r"].explode().to_numpy()] = np.repeat(np.arange(keys.height),
                                                     keys["_r"].list.len().to_numpy())
    keys = keys.drop("_r").with_columns(pl.col(*_KEYS, "trigger").cast(pl.String))
    n_t = int(m.max()) + 1
    cell = fid * n_t + m
    if weight is None:
        counts = np.bincount(cell, minlength=keys.height * n_t)
    else:  # integer adds: no float grid of functions × windows to round and convert
        counts = np.zeros(keys.height * n_t, dtype=np.int64)
        np.add.at(counts, cell, np.rint(weight).astype(np.int64))
    counts = counts.astype(np.int64, copy=False).reshape(keys.height, n_t)
    if times is not None:
        cols = [pl.Series("fid", fid), (pl.col("arrival_s") - origin).alias("arrival_s")]
        cols += [pl.col(c) for c in ("duration_s", "memory_mb") if c in frame.columns]
        times = frame.select(cols)
    return Grid(keys, counts, origin, w, times)


def _segments(counts: np.ndarray) -> pl.DataFrame:
    """Active cells as (fid, m, c, gap to the previous active window of the same function)."""
    f, m = np.nonzero(counts)
    cells = pl.DataFrame({"fid": f, "m": m, "c": counts[f, m]})
    return cells.with_columns(pl.col("m").diff().over("fid").alias("gap"))


def detect_periodic(g: Grid) -> pl.DataFrame:
    """Per function: whether it is periodic, and its fitted timer parameters (module doc).

    Columns: fid, periodic, period_s, window_phase_s, batch, jitter, miss, active.
    """
    cells = _segments(g.counts)
    stats = cells.group_by("fid").agg(
        pl.len().alias("active"), pl.col("gap").drop_nulls().median().alias("g"),
        pl.col("c").median().alias("b"), pl.col("c").mean().alias("c_mean"),
        (pl.col("c").var(ddof=0) / pl.col("c").mean()).fill_null(0.0).alias("c_idc"),
        (pl.col("c").std(ddof=0) / pl.col("c").mean()).fill_null(0.0).alias("c_cv"),
        pl.col("m").min().alias("first"), pl.col("m").max().alias("last"),
        *[pl.col("c").quantile((j + 0.5) / BATCH_SIZE, "nearest").alias(f"q{j}")
          for j in range(BATCH_SIZE)])
    stats = stats.with_columns(pl.col("g").fill_null(1).round().clip(1, None).cast(pl.Int64))
    gaps = cells.drop_nulls("gap").join(stats.select("fid", "g"), on="fid")
    k = pl.col("gap") / pl.col("g")
    gap_stats = gaps.group_by("fid").agg(
        ((pl.col("gap") % pl.col("g")) == 0).mean().alias("on_grid"),
        (((pl.col("gap") - pl.col("g")).abs() == 1) & (pl.col("g") > 1)).mean().alias("jitter"),
        pl.when((pl.col("gap") % pl.col("g")) == 0).then(k - 1).otherwise(0).sum()
        .alias("missed"))
    stats = stats.join(gap_stats, on="fid", how="left").fill_null(0)
    trig = g.keys["trigger"].fill_null("").to_numpy()[stats["fid"].to_numpy()]
    need = np.where(trig == "timer", TIMER_SHARE, OTHER_SHARE)
    share = stats["on_grid"].to_numpy() + stats["jitter"].to_numpy()
    gw = stats["g"].to_numpy().astype(np.float64)
    sub = gw == 1  # fires in every window: b firings per window
    # several firings per window: their count must be steadier than a Poisson count's
    steady = ~sub | ((stats["c_idc"].to_numpy() <= COUNT_IDC)
                     & (stats["c_cv"].to_numpy() <= COUNT_CV))
    periodic = (stats["active"].to_numpy() >= MIN_FIRINGS) & (share >= need) & steady
    c_mean = stats["c_mean"].to_numpy()
    period = np.where(sub, g.window_s / np.maximum(c_mean, 1.0), gw * g.window_s)
    qs = stats.select(f"q{j}" for j in range(BATCH_SIZE)).to_numpy().astype(np.float64)
    batch = np.where(sub[:, None], 1.0, np.maximum(qs, 1.0))
    active = stats["active"].to_numpy()
    missed = stats["missed"].to_numpy().astype(np.float64)
    return pl.DataFrame({
        "fid": stats["fid"], "periodic": periodic, "period_s": period,
        "window_phase_s": (stats["first"].to_numpy() % gw) * g.window_s,
        "batch": batch, "jitter": stats["jitter"].to_numpy().astype(np.float64),
        "miss": missed / np.maximum(active + missed, 1), "active": active,
    }).sort("fid")


def _timer_phase(g: Grid, fids: np.ndarray, period: np.ndarray) -> np.ndarray:
    """Offset of the first firing after the origin, where times resolve it (circular mean of
    arrival mod period, Mardia & Jupp 2000), else NaN."""
    out = np.full(len(fids), np.nan)
    if g.times is None or len(fids) == 0:
        return out
    pos = pl.DataFrame({"fid": fids, "period": period, "j": np.arange(len(fids))})
    t = g.times.join(pos, on="fid")
    ang = 2 * np.pi * (t["arrival_s"].to_numpy() % t["period"].to_numpy()) / t["period"].to_numpy()
    t = t.with_columns(pl.Series("c", np.cos(ang)), pl.Series("s", np.sin(ang)))
    agg = t.group_by("j").agg(pl.col("c").sum(), pl.col("s").sum(), pl.col("period").first())
    phase = (np.arctan2(agg["s"].to_numpy(), agg["c"].to_numpy()) % (2 * np.pi)
             / (2 * np.pi) * agg["period"].to_numpy())
    out[agg["j"].to_numpy()] = phase
    return out


def _circulant_eigenvalues(h: float, n: int) -> np.ndarray:
    """Eigenvalues of the 2n-circulant embedding fGn's autocovariance
    γ(k) = ½(|k+1|^{2H} − 2|k|^{2H} + |k−1|^{2H}), k = 0..n (Davies & Harte 1987)."""
    k = np.arange(n + 1, dtype=np.float64)
    acov = 0.5 * (np.abs(k + 1) ** (2 * h) - 2 * k ** (2 * h) + np.abs(k - 1) ** (2 * h))
    circ = np.concatenate([acov, acov[-2:0:-1]])
    return np.maximum(np.fft.fft(circ).real, 0.0)


def fgn_rows(hurst: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance fractional Gaussian noise, one row per Hurst exponent, by circulant
    embedding (Davies & Harte 1987).

    The embedding's eigenvalues depend on H only, so they are computed once per distinct H
    (the fitted exponents lie on :data:`HURST_GRID`); H = ½ is white noise, drawn directly;
    and the real and imaginary parts of one complex transform are two independent paths
    (Dietrich & Newsam 1997, "Fast and exact simulation of stationary Gaussian processes
    through circulant embedding", SIAM J. Sci. Comput. 18(4)), so two rows of the same H
    share one FFT."""
    h = np.asarray(hurst, dtype=np.float64)
    out = np.empty((len(h), n))
    if n == 0 or len(h) == 0:
        return out
    m = 2 * n
    for hv in np.unique(h):  # distinct exponents (a grid of 17), not functions
        rows = np.flatnonzero(h == hv)
        if hv == 0.5:
            out[rows] = rng.standard_normal((len(rows), n))
            continue
        scale = np.sqrt(_circulant_eigenvalues(float(hv), n) / (2 * m))
        pairs = (len(rows) + 1) // 2
        w = rng.standard_normal((pairs, m)) + 1j * rng.standard_normal((pairs, m))
        y = np.fft.fft(scale * w, axis=1)[:, :n]
        # Re and Im each have the target covariance with variance ½·2 = 1 per part
        both = np.concatenate([y.real, y.imag]) * np.sqrt(2.0)
        out[rows] = both[:len(rows)]
    return out


def _harmonic_periods(span_s: float) -> tuple[float, ...]:
    periods: list[float] = []
    if span_s >= 2 * DAY_S:
        periods += [DAY_S, DAY_S / 2]
    if span_s >= 2 * WEEK_S:
        periods.append(WEEK_S)
    return tuple(periods)


def _design(t: np.ndarray, periods: tuple[float, ...]) -> np.ndarray:
    cols = []
    for p in periods:
        cols += [np.cos(2 * np.pi * t / p), np.sin(2 * np.pi * t / p)]
    return np.stack(cols, axis=1)


def fit_harmonics(counts: np.ndarray, window_s: float, origin_s: float,
                  periods: tuple[float, ...]) -> np.ndarray:
    """Least-squares log-harmonic profile per function on hourly counts: ln(c_h + ½) =
    a + Σ_p (α_p cos ωt + β_p sin ωt); returns (F, 2·len(periods)) coefficients."""
    if not periods:
        return np.zeros((counts.shape[0], 0))
    per = max(1, round(3600.0 / window_s))
    n_h = counts.shape[1] // per
    hourly = counts[:, :n_h * per].reshape(counts.shape[0], n_h, per).sum(axis=2)
    return harmonics_from_hourly(hourly, per, window_s, origin_s, periods)


def harmonics_from_hourly(hourly: np.ndarray, per: int, window_s: float, origin_s: float,
                          periods: tuple[float, ...]) -> np.ndarray:
    """:func:`fit_harmonics` from the hourly counts (F, hours) of ``per`` windows each."""
    n_h = hourly.shape[1]
    t = origin_s + (np.arange(n_h) + 0.5) * per * window_s
    x = np.column_stack([np.ones(n_h), _design(t, periods)])
    coef, *_ = np.linalg.lstsq(x, np.log(hourly.T + 0.5), rcond=None)
    return coef[1:].T


def _profile(coef: np.ndarray, t: np.ndarray, periods: tuple[float, ...]) -> np.ndarray:
    """exp(harmonic part) at times t, (F, len(t)), normalized to mean 1 per function."""
    if not periods:
        return np.ones((coef.shape[0], len(t)))
    d = np.exp(coef @ _design(t, periods).T)
    return d / d.mean(axis=1, keepdims=True)


def _count_tables(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero probability and mean-matched non-zero quantile table per row (module doc)."""
    n_t = x.shape[1]
    nz = x > 0
    n_nz = nz.sum(axis=1)
    zero_p = 1 - n_nz / n_t
    srt = np.sort(np.where(nz, x, np.inf), axis=1)  # non-zero values first, ascending
    probs = (np.arange(TABLE_SIZE) + 0.5) / TABLE_SIZE
    idx = np.minimum((probs[None, :] * n_nz[:, None]).astype(np.int64),
                     np.maximum(n_nz - 1, 0)[:, None])
    table = np.take_along_axis(srt, idx, axis=1)
    table[n_nz == 0] = 0.0
    mean_nz = np.where(n_nz > 0, np.where(nz, x, 0).sum(axis=1) / np.maximum(n_nz, 1), 0.0)
    tmean = table.mean(axis=1)
    table *= np.where(tmean > 0, mean_nz / np.where(tmean > 0, tmean, 1), 1.0)[:, None]
    return zero_p, table


def _gap_tables(counts: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``GAP_SIZE`` quantiles (inverted CDF at (j + ½)/GAP_SIZE) of the gaps, in windows,
    between the active windows of the selected rows, the trace taken as a circle; NaN rows
    elsewhere."""
    out = np.full((counts.shape[0], GAP_SIZE), np.nan)
    if not rows.any():
        return out
    seg = _segments(counts[rows])
    # the trace as a circle: the idle time before the first and after the last active window
    # is one more gap, so the gaps add up to the span and the rate is kept
    wrap = seg.group_by("fid").agg((counts.shape[1] - pl.col("m").max() + pl.col("m").min())
                                   .alias("gap"))
    cells = pl.concat([seg.drop_nulls("gap").select("fid", "gap"),
                       wrap.select("fid", pl.col("gap").cast(seg["gap"].dtype))])
    q = cells.group_by("fid").agg(
        pl.col("gap").quantile((j + 0.5) / GAP_SIZE, "nearest").alias(f"q{j}")
        for j in range(GAP_SIZE))
    sel = np.flatnonzero(rows)
    out[sel[q["fid"].to_numpy()]] = q.select(f"q{j}" for j in range(GAP_SIZE)).to_numpy()
    return out


def _renewal_cells(gaps: np.ndarray, table: np.ndarray, n_t: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Active windows of sparse functions as a renewal of their gap tables (the first one a
    uniform fraction of a drawn gap in; gaps stratified over the table), each with a count
    drawn from the non-zero table: (row, window, count) cells.

    Stratified: every ``GAP_SIZE`` draws (a cycle) use each quantile once, in random order, so
    a sample holds the table's gaps in their proportions (and the rate), not a multinomial of
    them. A cycle therefore spans exactly the table's sum S, and ⌈(n_t + max gap)/S⌉ + 1
    cycles cover the sample: each function draws about as many gaps as it has active windows
    (no draws for the windows it idles through)."""
    n = gaps.shape[0]
    if n == 0 or n_t == 0:
        return (np.zeros(0, np.int64),) * 3
    span = gaps.sum(axis=1)
    cycles = (np.ceil((n_t + gaps.max(axis=1)) / np.maximum(span, 1.0)) + 1).astype(np.int64)
    row = np.repeat(np.arange(n), cycles)
    perm = np.argsort(rng.random((len(row), GAP_SIZE)), axis=1)
    draw = gaps[row[:, None], perm].ravel()
    first = np.concatenate([[0], np.cumsum(cycles * GAP_SIZE)[:-1]])
    start = np.floor(rng.random(n) * draw[first])
    cs = np.cumsum(draw)  # integer-valued gaps: exact
    f = np.repeat(np.arange(n), cycles * GAP_SIZE)
    pos = start[f] + cs - cs[first][f]
    keep = pos < n_t
    r = f[keep]
    w = pos[keep].astype(np.int64)
    x = table[r, (rng.random(len(r)) * TABLE_SIZE).astype(np.int64)]
    return r, w, np.maximum(_stochastic_round(x, rng), 1)


def _rng(seed: int, part: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([0x5E7F11, seed, part])))


def _stochastic_round(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    fl = np.floor(x)
    return (fl + (rng.random(x.shape) < (x - fl))).astype(np.int64)


def _ranks(z: np.ndarray) -> np.ndarray:
    """Row-wise mid-rank scores (rank + ½)/T of ``z``: each row a permutation of the grid."""
    n_t = z.shape[1]
    order = np.argsort(z, axis=1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(n_t)[None, :], axis=1)
    return (rank + 0.5) / n_t


def _scores_to_counts(z: np.ndarray, zero_p: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Rank-matched copula (module doc): row-wise ranks of ``z`` through the zero share and
    the non-zero table, as real-valued counts (rounded later)."""
    # rank-matched: each sampled path visits the fitted marginal exactly
    return _ranks_to_counts(_ranks(z), zero_p, table)


def _ranks_to_counts(u: np.ndarray, zero_p: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Scores ``u`` (rows per function, or one row shared by all) through each function's zero
    share and non-zero table."""
    zp = zero_p[:, None]
    v = np.clip((u - zp) / np.maximum(1 - zp, 1e-12), 0, 1 - 1e-12)
    k = (v * TABLE_SIZE).astype(np.int64)
    return np.where(u < zp, 0.0, np.take_along_axis(table, k, axis=1))


def _log_idc(x: np.ndarray) -> np.ndarray:
    """ln IDC of row-wise block sums over 1, 2, 4, … windows (at least 8 blocks)."""
    n_f, n_t = x.shape
    out = []
    m = 1
    while n_t // m >= 8:
        k = n_t // m
        b = x[:, :k * m].reshape(n_f, k, m).sum(axis=2)
        mu = b.mean(axis=1)
        out.append(np.log(np.maximum(b.var(axis=1), 1e-12) / np.maximum(mu, 1e-12)))
        m *= 2
    return np.stack(out, axis=1) if out else np.zeros((n_f, 0))


def calibrate_hurst(x: np.ndarray, zero_p: np.ndarray, table: np.ndarray, seed: int = 0,
                    grid: np.ndarray = HURST_GRID, replicas: int = 3) -> np.ndarray:
    """H per function by simulated moments (McFadden 1989): for each H of ``grid``, rank-matched
    samples as long as the trace are drawn for all functions at once, and each function keeps
    the H whose mean ln IDC over block sizes 1, 2, 4, … windows and ln(1 + number of OFF runs
    of at least :data:`OFF_RUNS` windows) are closest (least squares) to the trace's. Counts
    carry the trend that rank scores flatten, so their IDC curve decides, and the OFF runs say
    how a sparse function's active windows cluster or spread (the idle times a keep-alive
    policy sees). Traces longer than :data:`CALIBRATION_WINDOWS` are calibrated on their first
    that many windows (the exponent is a property of the series' scaling, and the IDC curve
    reaches blocks of an eighth of the stretch): the cost per function is then bounded
    whatever the trace's length.

    The functions share their simulations' noise (common random numbers: one fGn path per H
    and replica, ranked once, read through each function's own marginal): each function's
    criterion has the distribution it has with noise of its own, and the cost per function is
    table look-ups instead of a transform and a sort. Functions are taken in
    chunks of :data:`CALIBRATION_ROWS` (memory bound; the result does not depend on it)."""
    x = x[:, :CALIBRATION_WINDOWS]
    n_f, n_t = x.shape
    if n_f == 0 or n_t // 2 < 8:
        return np.full(n_f, 0.5)
    rng = _rng(seed, 7)
    ranks = [[_ranks(fgn_rows(np.full(1, h), n_t, rng)) for _ in range(replicas)]
             for h in grid]  # a fixed grid of a dozen values, not functions
    out = np.empty(n_f)
    for lo in range(0, n_f, CALIBRATION_ROWS):  # chunks of functions bound memory
        sl = slice(lo, lo + CALIBRATION_ROWS)
        target = _log_idc(x[sl])
        target_runs = np.log1p(_runs(x[sl]))
        loss = np.empty((len(grid), target.shape[0]))
        for i, per_h in enumerate(ranks):
            sims = [_ranks_to_counts(u, zero_p[sl], table[sl]) for u in per_h]
            idc = np.mean([_log_idc(c) for c in sims], axis=0)
            runs = np.log1p(np.mean([_runs(c) for c in sims], axis=0))
            loss[i] = ((idc - target) ** 2).sum(axis=1) + ((runs - target_runs) ** 2).sum(axis=1)
        out[sl] = np.asarray(grid)[np.argmin(loss, axis=0)]
    return out


def _runs(x: np.ndarray) -> np.ndarray:
    """Per row, the number of OFF runs (maximal stretches of empty windows between active
    ones, the idle times a keep-alive policy sees) at least 1, 2, 5, 10 and 30 windows
    long: (rows, 5)."""
    off = np.zeros((x.shape[0], x.shape[1] + 2), dtype=np.int8)
    off[:, 1:-1] = x == 0
    d = np.diff(off, axis=1)
    rs, cs = np.nonzero(d == 1)
    _, ce = np.nonzero(d == -1)  # same rows, same order: each start has its end
    length = ce - cs
    inner = (cs > 0) & (ce < x.shape[1])  # before the first / after the last call: no idle
    out = np.zeros((x.shape[0], len(OFF_RUNS)))
    for j, k in enumerate(OFF_RUNS):  # five thresholds
        out[:, j] = np.bincount(rs, weights=(inner & (length >= k)).astype(np.float64),
                                minlength=x.shape[0])
    return out


def dirichlet_positions(counts: np.ndarray, kappa: float | np.ndarray,
                        rng: np.random.Generator) -> np.ndarray:
    """Positions in [0, 1) of ``counts[j]`` points per window: the first c of c + 1
    Dirichlet(κ) spacings' partial sums (κ one value, or one per window); concatenated
    window by window."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0)
    seg = counts + 1
    if np.ndim(kappa) == 0:
        g = rng.gamma(kappa, 1.0, int(seg.sum()))
    else:
        g = rng.gamma(np.repeat(np.asarray(kappa, dtype=np.float64), seg), 1.0)
    cs = np.cumsum(g)
    ends = np.cumsum(seg) - 1
    starts = ends - seg + 1
    base = np.where(starts > 0, cs[np.maximum(starts - 1, 0)], 0.0)
    tot = cs[ends] - base
    keep = np.ones(len(g), dtype=bool)
    keep[ends] = False
    win = np.repeat(np.arange(len(counts)), seg)[keep]
    return np.minimum((cs[keep] - base[win]) / tot[win], np.nextafter(1.0, 0.0))
