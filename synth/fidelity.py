"""How closely a synthetic trace matches a real one, measured with the analysis functions.

:func:`fidelity` computes every metric on the real trace, on the candidate synthetic trace and on
two baselines generated the same way for the same duration:

* ``poisson``: Poisson arrivals at the real mean rate, input and output lengths resampled
  independently from the real marginals: what most serving benchmarks replay;
* ``gamma``: gamma-renewal arrivals whose CV is the real inter-arrival CV (vLLM's
  ``--burstiness`` is this process's shape, 1/CV²), lengths resampled independently.

Errors are relative (|synthetic − real| / |real|) for CV, peak-to-mean and the index of
dispersion (its largest relative error over the windows of :data:`WINDOWS_S`, 1 s to 1 h,
that hold at least :data:`MIN_WINDOWS` complete windows in both traces), absolute for the
Hurst exponent and Spearman's ρ, and distances for the KS and
Wasserstein comparisons of the distributions (two-sample, on up to 200,000 values each).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl
from scipy import stats

from analysis import burstiness, tokens
from loaders import schema

WINDOWS_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
MIN_WINDOWS = 30  # the IDC of n windows has a sampling SD of about √(2/(n−1)): 0.26 at 30
MAX_SAMPLE = 200_000
ARRIVAL_METRICS = ("iat_cv", "idc_max_rel_error", "hurst_av", "peak_to_mean_60s", "iat_ks",
                   "iat_wasserstein")


def _span(requests: pl.DataFrame) -> float:
    if requests.height == 0:
        return 0.0
    return float(requests["arrival_s"].max() - requests["arrival_s"].min())


def _sample(x: np.ndarray, seed: int) -> np.ndarray:
    x = x[np.isfinite(x)]
    if len(x) <= MAX_SAMPLE:
        return x
    return np.random.default_rng(seed).choice(x, MAX_SAMPLE, replace=False)


def _gaps(requests: pl.DataFrame) -> np.ndarray:
    return np.diff(np.sort(requests["arrival_s"].to_numpy()))


def baseline(real: pl.DataFrame, kind: str, duration_s: float, seed: int) -> pl.DataFrame:
    """A ``poisson`` or ``gamma`` baseline trace of ``duration_s`` for ``real`` (see module)."""
    if real.height < 2:
        raise ValueError("a baseline needs a real trace of at least two requests")
    rng = np.random.default_rng(seed)
    rate = (real.height - 1) / max(_span(real), 1e-9)
    expected = int(rate * duration_s * 1.2 + 10 * np.sqrt(rate * duration_s) + 10)
    if kind == "poisson":
        gaps = rng.exponential(1 / rate, expected)
    elif kind == "gamma":
        gaps_real = _gaps(real)
        cv = float(gaps_real.std() / gaps_real.mean()) if gaps_real.mean() > 0 else 1.0
        shape = 1 / max(cv, 1e-3) ** 2
        gaps = rng.gamma(shape, 1 / (rate * shape), expected)
    else:
        raise ValueError(f"unknown baseline {kind!r}; known: poisson, gamma")
    arrivals = np.cumsum(gaps)
    arrivals = arrivals[arrivals < duration_s]
    n = len(arrivals)
    pick_in = rng.integers(0, real.height, n)
    pick_out = rng.integers(0, real.height, n)  # independent of the input pick
    frame = pl.DataFrame({
        "trace": f"baseline/{kind}", "request_id": np.arange(n).astype(str),
        "arrival_s": arrivals,
        "input_tokens": real["input_tokens"].gather(pick_in),
        "output_tokens": real["output_tokens"].gather(pick_out),
    })
    return schema.conform("requests", frame)


def metrics(requests: pl.DataFrame, windows_s: tuple[float, ...] = WINDOWS_S) -> dict:
    """The figures :func:`fidelity` compares, for one trace (arrival and length figures)."""
    stats_row = burstiness.interarrival_stats(requests).row(0, named=True)
    curve = burstiness.dispersion_curve(requests, window_s=list(windows_s))
    hurst = burstiness.hurst(requests)
    av = hurst.filter(pl.col("method") == "aggregated_variance")["h"]
    ptm = curve.filter(pl.col("window_s") == 60.0)["peak_to_mean"]
    corr = tokens.correlation(requests).row(0, named=True)
    # cv_request counts tied arrivals as zero gaps: on a ticked trace (Mooncake, 3 s) the CV of
    # the gaps between distinct timestamps is ~0 and says nothing about the requests.
    return {"iat_cv": stats_row.get("cv_request", stats_row["cv"]),
            "idc": dict(zip(curve["window_s"].to_list(), curve["idc"].to_list(), strict=True)),
            "idc_windows": dict(zip(curve["window_s"].to_list(), curve["n_windows"].to_list(),
                                    strict=True)),
            "hurst_av": av[0] if av.len() else None,
            "peak_to_mean_60s": ptm[0] if ptm.len() else None,
            "spearman": corr["spearman"]}


def _rel(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not np.isfinite(a) or not np.isfinite(b) or b == 0:
        return None
    return abs(a - b) / abs(b)


def _abs(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not np.isfinite(a) or not np.isfinite(b):
        return None
    return abs(a - b)


def _idc_error(m: dict, r: dict) -> float | None:
    """Largest relative error of the IDC over windows with enough windows in both traces."""
    errors = [_rel(m["idc"].get(w), idc) for w, idc in r["idc"].items()
              if r["idc_windows"][w] >= MIN_WINDOWS and m["idc_windows"].get(w, 0) >= MIN_WINDOWS]
    errors = [e for e in errors if e is not None]
    return max(errors) if errors else None


def _shares(requests: pl.DataFrame, by: str) -> np.ndarray:
    """Group shares, largest first: synthetic tenants have new names, so shares are compared
    rank by rank (the largest real tenant against the largest synthetic one)."""
    counts = requests.group_by(by).len()["len"].to_numpy().astype(np.float64)
    return np.sort(counts / counts.sum())[::-1]


def _errors(real: pl.DataFrame, rm: dict, cand: pl.DataFrame, seed: int,
            by: str | None) -> dict[str, float | None]:
    cm = metrics(cand)
    rg, cg = _sample(_gaps(real), seed), _sample(_gaps(cand), seed + 1)
    out: dict[str, float | None] = {
        "iat_cv": _rel(cm["iat_cv"], rm["iat_cv"]),
        "idc_max_rel_error": _idc_error(cm, rm),
        "hurst_av": _abs(cm["hurst_av"], rm["hurst_av"]),
        "peak_to_mean_60s": _rel(cm["peak_to_mean_60s"], rm["peak_to_mean_60s"]),
        "iat_ks": float(stats.ks_2samp(rg, cg).statistic) if len(cg) > 1 else None,
        "iat_wasserstein": float(stats.wasserstein_distance(rg, cg)) if len(cg) > 1 else None,
    }
    for name in tokens.FIELDS:
        a = _sample(real[name].drop_nulls().to_numpy().astype(np.float64), seed)
        b = _sample(cand[name].drop_nulls().to_numpy().astype(np.float64), seed + 1)
        ok = len(a) > 1 and len(b) > 1
        short = name.split("_")[0]
        out[f"{short}_ks"] = float(stats.ks_2samp(a, b).statistic) if ok else None
        out[f"{short}_wasserstein"] = float(stats.wasserstein_distance(a, b)) if ok else None
    out["spearman"] = _abs(cm["spearman"], rm["spearman"])
    if by and by in real.columns and by in cand.columns and real[by].null_count() < real.height:
        rs, cs = _shares(real, by), _shares(cand, by)
        n = max(len(rs), len(cs))
        rs, cs = np.pad(rs, (0, n - len(rs))), np.pad(cs, (0, n - len(cs)))
        out[f"{by}_share_tv"] = float(0.5 * np.abs(rs - cs).sum())
    return out


def fidelity(real: pl.DataFrame | pl.LazyFrame, synthetic: pl.DataFrame | pl.LazyFrame, *,
             seed: int = 0, by: str | None = "tenant", baselines: bool = True,
             reference: pl.DataFrame | pl.LazyFrame | None = None) -> pl.DataFrame:
    """Compare ``synthetic`` to ``real`` on the analysis metrics, next to two baselines.

    The baselines take their rate, CV and lengths from ``reference`` (default: ``real``). On
    held-out time pass the part the model was fitted on: a baseline built from the held-out
    part itself would be told the answer the model has to predict.

    Returns one row per metric: metric, kind (arrivals, lengths, mix), real (the real trace's
    value where one exists), model (the synthetic trace's error), poisson and gamma (the
    baselines' errors, when ``baselines``), and ``model_best``: the model's error is the
    smallest. Errors are described in the module docstring; lower is better everywhere.
    """
    real = real.lazy().collect().sort("arrival_s")
    synthetic = synthetic.lazy().collect().sort("arrival_s")
    if real.height < 3 or synthetic.height < 3:
        raise ValueError(f"fidelity needs at least 3 requests in each trace "
                         f"(real {real.height}, synthetic {synthetic.height})")
    rm = metrics(real)
    duration = _span(synthetic)
    columns: dict[str, Mapping[str, float | None]] = {
        "model": _errors(real, rm, synthetic, seed, by)}
    source = real if reference is None else reference.lazy().collect().sort("arrival_s")
    if baselines:
        for i, kind in enumerate(("poisson", "gamma")):
            cand = baseline(source, kind, duration, seed + 10 + i)
            columns[kind] = _errors(real, rm, cand, seed, by)
    names = list(columns["model"])
    real_values = {"iat_cv": rm["iat_cv"], "hurst_av": rm["hurst_av"],
                   "peak_to_mean_60s": rm["peak_to_mean_60s"], "spearman": rm["spearman"]}
    frame = pl.DataFrame({
        "metric": names,
        "kind": ["arrivals" if n in ARRIVAL_METRICS else "mix" if n.endswith("_share_tv")
                 else "lengths" for n in names],
        "real": [real_values.get(n) for n in names],
        **{k: [v.get(n) for n in names] for k, v in columns.items()},
    }, schema_overrides={"real": pl.Float64, **{k: pl.Float64 for k in columns}})
    others = [pl.col(k) for k in columns if k != "model"]
    best = (pl.all_horizontal([pl.col("model") < o for o in others]) if others
            else pl.lit(True))
    return frame.with_columns(pl.when(pl.col("model").is_null()).then(None).otherwise(best)
                              .alias("model_best"))


def split_half(requests: pl.DataFrame | pl.LazyFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The first and second halves of a trace by time, each starting at 0 s (held-out tests)."""
    frame = requests.lazy().collect().sort("arrival_s")
    start = frame["arrival_s"].min()
    mid = start + _span(frame) / 2
    first = frame.filter(pl.col("arrival_s") < mid)
    second = frame.filter(pl.col("arrival_s") >= mid).with_columns(pl.col("arrival_s") - mid)
    return first.with_columns(pl.col("arrival_s") - start), second


def holdout(requests: pl.DataFrame | pl.LazyFrame, *, seed: int = 0,
            by: str | None = None) -> pl.DataFrame:
    """Fit on the first half of a trace, sample the second half's duration, compare to it.

    The baselines are built from the first half too (see :func:`fidelity`), so all three
    candidates know the same past and are judged on the same future.
    """
    from synth.model import fit

    first, second = split_half(requests)
    model = fit(first, by=by, seed=seed)
    synthetic = model.sample(_span(second), seed=seed)
    return fidelity(second, synthetic, seed=seed, reference=first)
