"""How closely a synthetic trace matches a real one, measured with the analysis functions.

:func:`fidelity` computes every metric on the real trace, on the candidate synthetic trace and on
two baselines generated the same way for the same duration:

* ``poisson``: Poisson arrivals at the real mean rate, input and output lengths resampled
  independently from the real marginals: what most serving benchmarks replay;
* ``gamma``: gamma-renewal arrivals at the real mean rate whose coefficient of variation is
  the real inter-arrival CV, s/x̄ of all gaps (the method-of-moments fit, shape
  κ = 1/CV²), lengths resampled independently. This is how the field parameterizes "gamma
  arrivals with a CV": vLLM's ``--burstiness`` is the shape κ (gaps
  ``gamma(shape=κ, scale=1/(rate·κ))``), Vidur's and Veeksha's gamma interval generators take
  a ``cv`` and use κ = 1/cv², and ServeGen publishes per-window ``cv`` with Gamma shape
  exactly 1/cv² (Xiang et al., NSDI 2026). A maximum-likelihood gamma fit would give another
  κ wherever the gaps are not gamma, and so not the trace's CV. On the whole trace this
  baseline is therefore *told* the real CV, and its CV error is only its sampling noise: the
  CV comparison ties there by construction and is informative on held-out time only.

Errors are relative (|synthetic − real| / |real|) for CV, peak-to-mean at 60 s and the index of
dispersion (its largest relative error over the windows of :data:`WINDOWS_S`, 1 s to 1 h,
that are whole multiples of the real trace's time resolution, :func:`servetrace.analysis.burstiness.
resolution` — structure below the recording grid is an artefact, as in :mod:`analysis.
burstiness` — and hold at least :data:`MIN_WINDOWS` complete windows in both traces), absolute
for the Hurst exponent and Spearman's ρ, and distances for the KS and Wasserstein comparisons
of the distributions (two-sample, on up to 200,000 values each).

One synthetic trace is one draw of a random process, and so are the baselines: single
comparisons are noisy (a peak-to-mean over 60 windows moves by ±20 % between seeds of the
same model). Pass several synthetic traces (samples of one model under different seeds) to
score each candidate by its *mean* error over as many runs, every run drawing its own
baselines from seeds that depend only on ``seed`` and the run's index (so two models
compared with the same ``seed`` meet the same baselines). The standard deviations over runs
are reported beside the means, and the ``verdict`` says whether the model's mean error is
lower than every baseline's by more than two standard errors of the difference (a win),
higher than any one's by as much (a loss), or neither (a tie: over these runs the comparison
is within noise).

Traces with sessions or ``hash_ids`` are also scored on the session and prefix-reuse figures
of :mod:`~servetrace.synth.session_fidelity` (the KV-cache hit-ratio curve, infinite-cache hit
ratios, turns per session, think gaps, context growth, sub-agent fan-out; rows of kind
``kvcache`` and ``sessions``), and a third baseline joins the two: ``session_naive``, whole
real sessions resampled at Poisson starts (:func:`~servetrace.synth.session_fidelity.
session_naive`), scored on every metric (its verdicts: session and KV-cache rows only).
Poisson and gamma carry no sessions and no shared prefix (every block new). A trace without
sessions or hash ids is scored as before.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from scipy import stats

from servetrace.analysis import burstiness, tokens
from servetrace.loaders import schema
from servetrace.synth import session_fidelity as sf

if TYPE_CHECKING:
    from servetrace.analysis.engine import Engine
    from servetrace.synth.model import WorkloadModel

WINDOWS_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
MIN_WINDOWS = 30  # the IDC of n windows has a sampling SD of about √(2/(n−1)): 0.26 at 30
MAX_SAMPLE = 200_000
ARRIVAL_METRICS = ("iat_cv", "idc_max_rel_error", "hurst_av", "peak_to_mean_60s", "iat_ks",
                   "iat_wasserstein")
BASELINES = ("poisson", "gamma")
SESSION_BASELINE = "session_naive"
VERDICT_Z = 2.0
"""Standard errors of a difference of mean errors that make a win or a loss (else a tie)."""

Frame = pl.DataFrame | pl.LazyFrame


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
    """A ``poisson`` or ``gamma`` baseline trace of ``duration_s`` for ``real`` (see module).

    Rate λ = (n − 1) / span of ``real``; the gamma's shape is κ = 1/CV² with CV = s/x̄ of
    ``real``'s gaps (ties included), gaps ``gamma(κ, 1/(λκ))``, vLLM's ``--burstiness κ``.
    """
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
    """The figures :func:`fidelity` compares, for one trace (arrival and length figures).

    ``idc`` maps each window of ``windows_s`` to the index of dispersion, ``idc_windows`` to
    its number of complete windows and ``idc_on_grid`` to whether it is a whole multiple of
    the trace's resolution (:func:`servetrace.analysis.burstiness.dispersion_curve`).
    """
    stats_row = burstiness.interarrival_stats(requests).row(0, named=True)
    curve = burstiness.dispersion_curve(requests, window_s=list(windows_s))
    hurst = burstiness.hurst(requests)
    av = hurst.filter(pl.col("method") == "aggregated_variance")["h"]
    ptm = curve.filter(pl.col("window_s") == 60.0)["peak_to_mean"]
    corr = tokens.correlation(requests).row(0, named=True)
    windows = curve["window_s"].to_list()
    # the package's one CV (interarrival_stats' cv: all gaps, ties as zero gaps), in its
    # never-nulled form: both traces sit on the same grid, so the figure compares like for
    # like even where the grid is too coarse to read it as the process's CV (Mooncake, 3 s)
    return {"iat_cv": stats_row["cv_request"],
            "idc": dict(zip(windows, curve["idc"].to_list(), strict=True)),
            "idc_windows": dict(zip(windows, curve["n_windows"].to_list(), strict=True)),
            "idc_on_grid": dict(zip(windows, curve["on_grid"].to_list(), strict=True)),
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
    """Largest relative error of the IDC over the windows on the real trace's grid that hold
    enough complete windows in both traces."""
    errors = [_rel(m["idc"].get(w), idc) for w, idc in r["idc"].items()
              if r["idc_on_grid"].get(w, True) and r["idc_windows"][w] >= MIN_WINDOWS
              and m["idc_windows"].get(w, 0) >= MIN_WINDOWS]
    errors = [e for e in errors if e is not None]
    return max(errors) if errors else None


def _shares(requests: pl.DataFrame, by: str) -> np.ndarray:
    """Group shares, largest first: synthetic tenants have new names, so shares are compared
    rank by rank (the largest real tenant against the largest synthetic one)."""
    counts = requests.group_by(by).len()["len"].to_numpy().astype(np.float64)
    return np.sort(counts / counts.sum())[::-1]


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    # the statistic only: its exact p-value costs seconds at 10⁴ values and is not used
    return float(stats.ks_2samp(a, b, method="asymp").statistic)


def wasserstein(u: np.ndarray, v: np.ndarray) -> float:
    """First Wasserstein distance between the empirical distributions of samples ``u`` and
    ``v``: ∫ |F_u(x) − F_v(x)| dx over the merged sorted values (Ramdas, García Trillos &
    Cuturi, "On Wasserstein two-sample testing", Entropy 2017; the formula of SciPy's
    ``wasserstein_distance``). The integral is NumPy's pairwise sum of the products, not
    SciPy's BLAS dot product, whose last bits change with the number of BLAS threads (a Ray
    worker runs one): the same samples give the same distance in every process."""
    u, v = np.sort(u), np.sort(v)
    merged = np.sort(np.concatenate((u, v)), kind="mergesort")
    at = merged[:-1]
    cdf_u = np.searchsorted(u, at, "right") / u.size
    cdf_v = np.searchsorted(v, at, "right") / v.size
    return float(np.sum(np.abs(cdf_u - cdf_v) * np.diff(merged)))


def _errors(real: pl.DataFrame, rm: dict, cand: pl.DataFrame, seed: int,
            by: str | None) -> dict[str, float | None]:
    cm = metrics(cand)
    rg, cg = _sample(_gaps(real), seed), _sample(_gaps(cand), seed + 1)
    ok_gaps = len(rg) > 1 and len(cg) > 1
    out: dict[str, float | None] = {
        "iat_cv": _rel(cm["iat_cv"], rm["iat_cv"]),
        "idc_max_rel_error": _idc_error(cm, rm),
        "hurst_av": _abs(cm["hurst_av"], rm["hurst_av"]),
        "peak_to_mean_60s": _rel(cm["peak_to_mean_60s"], rm["peak_to_mean_60s"]),
        "iat_ks": _ks(rg, cg) if ok_gaps else None,
        "iat_wasserstein": wasserstein(rg, cg) if ok_gaps else None,
    }
    for name in tokens.FIELDS:
        a = _sample(real[name].drop_nulls().to_numpy().astype(np.float64), seed)
        b = _sample(cand[name].drop_nulls().to_numpy().astype(np.float64), seed + 1)
        ok = len(a) > 1 and len(b) > 1
        short = name.split("_")[0]
        out[f"{short}_ks"] = _ks(a, b) if ok else None
        out[f"{short}_wasserstein"] = wasserstein(a, b) if ok else None
    out["spearman"] = _abs(cm["spearman"], rm["spearman"])
    if by and by in real.columns and by in cand.columns and real[by].null_count() < real.height:
        rs, cs = _shares(real, by), _shares(cand, by)
        n = max(len(rs), len(cs))
        rs, cs = np.pad(rs, (0, n - len(rs))), np.pad(cs, (0, n - len(cs)))
        out[f"{by}_share_tv"] = float(0.5 * np.abs(rs - cs).sum())
    return out


def _baseline_seed(seed: int, run: int, k: int) -> int:
    """Seed of baseline ``k`` (0 poisson, 1 gamma, 2 session_naive) in run ``run``: run 0
    keeps the historical ``seed + 10 + k`` for Poisson and gamma; later runs never reuse
    another run's seed; the session-naive baseline's seeds lie a million above."""
    if k == 2:
        return seed + 1_000_000 + run
    return seed + 10 + 2 * run + k


Summary = tuple[float | None, float | None, int]
"""Mean error, standard deviation over runs (None under two runs) and number of runs."""


def _mean_sd(values: list[float | None]) -> Summary:
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return None, None, 0
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None), int(v.size)


def verdict(model: Summary, baselines: Sequence[Summary], z: float = VERDICT_Z) -> str | None:
    """``"win"``, ``"tie"`` or ``"loss"`` of a model against baselines, each given as (mean
    error, standard deviation over runs, number of runs).

    The difference of two means of independent runs has the standard error
    √(s_m²/n_m + s_b²/n_b) (Welch 1947). The model wins when its mean error is below every
    baseline's by more than ``z`` standard errors, loses when it is above any baseline's by
    more than ``z``, and ties otherwise. ``None`` when a spread is undefined (fewer than two
    runs, or a missing error).
    """
    m, sm, nm = model
    if m is None or sm is None or nm < 2:
        return None
    gaps = []
    for b, sb, nb in baselines:
        if b is None or sb is None or nb < 2:
            return None
        se = math.sqrt(sm ** 2 / nm + sb ** 2 / nb)
        if se > 0:
            gaps.append((b - m) / se)
        else:  # no spread at all: any difference is decisive
            gaps.append(math.copysign(math.inf, b - m) if b != m else 0.0)
    if any(g < -z for g in gaps):
        return "loss"
    return "win" if all(g > z for g in gaps) else "tie"


@dataclasses.dataclass(frozen=True)
class ModelRun:
    """A run that is sampled where it is scored: ``model.sample(duration_s, seed=seed)``.

    Passed to :func:`fidelity` in place of a trace, the sample is drawn inside the run's
    task (on an engine's worker), so the driver never holds the synthetic traces.
    """

    model: WorkloadModel
    duration_s: float
    seed: int


Run = Frame | ModelRun


@dataclasses.dataclass(frozen=True)
class _Context:
    """What every run's task shares: the real trace, its figures, the baselines' source."""

    real: pl.DataFrame
    rm: dict
    source: pl.DataFrame
    sref: sf.Reference | None
    seed: int
    by: str | None
    others: tuple[str, ...]


def _short(real: int, synthetic: int | str) -> ValueError:
    return ValueError(f"fidelity needs at least 3 requests in each trace "
                      f"(real {real}, synthetic {synthetic})")


def _score(ctx: _Context, cand: pl.DataFrame) -> dict[str, float | None]:
    out = _errors(ctx.real, ctx.rm, cand, ctx.seed, ctx.by)
    return out if ctx.sref is None else out | sf.errors(ctx.sref, cand, ctx.seed)


def _score_run(part: tuple[int, Run], ctx: _Context) -> dict[str, dict[str, float | None]]:
    """One run's errors (one engine task): the candidate's, then each baseline's, drawn for
    the candidate's duration with the run's seeds."""
    i, run = part
    frame = (run.model.sample(run.duration_s, seed=run.seed) if isinstance(run, ModelRun)
             else run).lazy().collect().sort("arrival_s")
    if frame.height < 3:
        raise _short(ctx.real.height, frame.height)
    out = {"model": _score(ctx, frame)}
    duration = _span(frame)
    del frame
    for k, kind in enumerate(ctx.others):
        if kind == SESSION_BASELINE:
            cand = sf.session_naive(ctx.source, duration, _baseline_seed(ctx.seed, i, k),
                                    scope=ctx.sref.scope)  # type: ignore[union-attr]
        else:
            cand = baseline(ctx.source, kind, duration, _baseline_seed(ctx.seed, i, k))
        out[kind] = _score(ctx, cand)
    return out


def fidelity(real: Frame, synthetic: Run | Sequence[Run], *,
             seed: int = 0, by: str | None = "tenant", baselines: bool = True,
             reference: Frame | None = None, block_tokens: int | None = None,
             scope: str = "global", engine: Engine | None = None) -> pl.DataFrame:
    """Compare ``synthetic`` to ``real`` on the analysis metrics, next to two baselines.

    ``synthetic`` is one trace, or a sequence of traces (runs: samples of one model under
    different seeds). With n runs every candidate is scored by its mean error over n
    comparisons with ``real``; run i compares ``synthetic[i]`` and baselines drawn with
    seeds ``seed + 10 + 2i`` (Poisson) and ``seed + 11 + 2i`` (gamma) for that run's
    duration. The baselines take their rate, CV and lengths from ``reference`` (default:
    ``real``). On held-out time pass the part the model was fitted on: a baseline built from
    the held-out part itself would be told the answer the model has to predict. A run may
    also be a :class:`ModelRun`, sampled where it is scored.

    ``engine``: an :class:`~servetrace.analysis.engine.Engine` that scores each run (its
    sample, its baselines and all their metrics) as one task, the real trace's figures
    shared by every task; the driver only merges the runs' error rows, so the table is the
    one the local path gives, bit for bit. Default: one run after another in this process.

    A ``real`` trace with sessions or ``hash_ids`` also gets the rows of
    :mod:`~servetrace.synth.session_fidelity` (kinds ``kvcache`` and ``sessions``) and the
    ``session_naive`` baseline (seed ``seed + 1,000,000 + i`` in run i), at the trace's
    ``block_tokens`` and hash id ``scope`` (the ``traces`` table's ``hash_block_tokens`` and
    ``hash_scope``; without ``block_tokens`` it is estimated,
    :func:`~servetrace.synth.session_fidelity.block_size`).

    Returns one row per metric: metric, kind (arrivals, lengths, mix, kvcache, sessions),
    real (the real trace's value where one exists), model (the synthetic trace's error),
    poisson, gamma and session_naive where it applies (the baselines' errors, when
    ``baselines``), and ``model_best``: the model's error is the smallest (null where an
    error is undefined). With a sequence the errors are means over the runs where they are
    defined, and ``model_sd``, ``poisson_sd``, ... (sample standard deviations over the
    runs) follow, then ``verdict`` (with baselines): ``win``, ``tie`` or ``loss`` by
    :func:`verdict`, a difference of more than :data:`VERDICT_Z` standard errors. The
    verdict on arrival, length and mix metrics is against Poisson and gamma (the
    session-naive baseline's errors are shown beside them: it replays real requests, so its
    lengths are the trace's own); on a session or KV-cache metric it is against every
    baseline, less those that cannot have the figure (Poisson's think gaps: it has no
    sessions). Errors are described in the module docstrings; lower is better everywhere.
    """
    from servetrace.analysis.engine import LocalEngine

    single = isinstance(synthetic, pl.DataFrame | pl.LazyFrame | ModelRun)
    runs: list[Run] = [synthetic] if single else list(synthetic)  # type: ignore[list-item]
    if not runs:
        raise ValueError("fidelity: synthetic is an empty sequence of traces")
    real = real.lazy().collect().sort("arrival_s")
    # traces at hand are checked before any work; the others where they are drawn or read
    short = [r.height for r in runs if isinstance(r, pl.DataFrame) and r.height < 3]
    if real.height < 3 or short:
        raise _short(real.height, short[0] if short else "ok")
    rm = metrics(real)
    source = real if reference is None else reference.lazy().collect().sort("arrival_s")
    sref = (sf.reference(real, block_tokens=block_tokens, scope=scope)
            if sf.applies(real) else None)
    others = (*BASELINES, *((SESSION_BASELINE,) if sref is not None else ())) \
        if baselines else ()
    kinds = ("model", *others)
    ctx = _Context(real, rm, source, sref, seed, by, others)
    scored = (engine or LocalEngine()).map(_score_run, list(enumerate(runs)), ctx)
    per_run: dict[str, list[Mapping[str, float | None]]] = {
        k: [run[k] for run in scored] for k in kinds}
    names = list(per_run["model"][0])
    columns: dict[str, list[float | None]] = {}
    summary = {k: [_mean_sd([run.get(n) for run in per_run[k]]) for n in names] for k in kinds}
    for k in kinds:
        columns[k] = [p[0] for p in summary[k]]
        if not single:
            columns[f"{k}_sd"] = [p[1] for p in summary[k]]
    real_values = {"iat_cv": rm["iat_cv"], "hurst_av": rm["hurst_av"],
                   "peak_to_mean_60s": rm["peak_to_mean_60s"], "spearman": rm["spearman"],
                   **(sf.real_values(sref) if sref is not None else {})}
    means = {k: columns[k] for k in kinds}
    frame = pl.DataFrame({
        "metric": names,
        "kind": [sf.KINDS.get(n) or ("arrivals" if n in ARRIVAL_METRICS else "mix"
                                     if n.endswith("_share_tv") else "lengths")
                 for n in names],
        "real": [real_values.get(n) for n in names],
        **means,
    }, schema_overrides={"real": pl.Float64, **{k: pl.Float64 for k in means}})
    cols = [pl.col(k) for k in others]
    best = (pl.all_horizontal([pl.col("model") < o for o in cols]) if cols
            else pl.lit(True))
    frame = frame.with_columns(pl.when(pl.col("model").is_null()).then(None).otherwise(best)
                               .alias("model_best"))
    if not single:
        frame = frame.with_columns(*(pl.Series(f"{k}_sd", columns[f"{k}_sd"], pl.Float64)
                                     for k in kinds))
        if baselines:
            frame = frame.with_columns(pl.Series("verdict", [
                _verdict(n, summary["model"][i], {b: summary[b][i] for b in others})
                for i, n in enumerate(names)], pl.String))
    return frame


def _verdict(name: str, model: Summary, baselines: dict[str, Summary]) -> str | None:
    """:func:`verdict` against Poisson and gamma on arrival, length and mix metrics (as
    before the session-naive baseline existed, so these verdicts keep their meaning); on a
    session or KV-cache metric against every baseline that can have the figure."""
    if name not in sf.KINDS:
        return verdict(model, [baselines[b] for b in BASELINES])
    defined = [b for b in baselines.values() if b[2] > 0]
    return verdict(model, defined) if defined else None


def split_half(requests: Frame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The first and second halves of a trace by time, each starting at 0 s (held-out tests)."""
    frame = requests.lazy().collect().sort("arrival_s")
    start = frame["arrival_s"].min()
    mid = start + _span(frame) / 2
    first = frame.filter(pl.col("arrival_s") < mid)
    second = frame.filter(pl.col("arrival_s") >= mid).with_columns(pl.col("arrival_s") - mid)
    return first.with_columns(pl.col("arrival_s") - start), second


def _advance(model: WorkloadModel, offset_s: float) -> WorkloadModel:
    """``model`` with the time of day/week of its sample's zero moved ``offset_s`` later.

    A sample's zero is the fitted trace's first arrival for the diurnal and weekly harmonics
    (:class:`servetrace.synth.parameters.Arrivals`); to continue the fitted trace (held-out
    time starts where the fitted part ends), the harmonics' phase moves by that much.
    Everything else in the model is stationary and unaffected; ServeGen window tables
    (:class:`servetrace.synth.parameters.Piecewise`) are not shifted.
    """
    from servetrace.synth.parameters import Arrivals

    def shift(group):  # one per group
        a = group.arrivals
        if not isinstance(a, Arrivals) or not a.harmonics:
            return group
        return dataclasses.replace(group, arrivals=dataclasses.replace(
            a, phase_s=a.phase_s + float(offset_s)))

    return dataclasses.replace(model, groups=tuple(shift(g) for g in model.groups))


def holdout(requests: Frame, *, seed: int = 0, by: str | None = None,
            runs: int = 1, split: str = "time", block_tokens: int | None = None,
            scope: str = "global", engine: Engine | None = None) -> pl.DataFrame:
    """Fit on one half of a trace, sample the other half's duration, compare to it.

    ``split="time"``: fit on the first half by time, score the second; samples continue the
    fitted half in time of day (:func:`advance`). ``split="sessions"``: a conversation-level
    split (:func:`~servetrace.synth.session_fidelity.split_sessions`, seeded by ``seed``):
    fit on half of the sessions, score on the other half, over the same period (both halves
    moved by the trace's first arrival, so they keep their alignment).

    The model is fitted with ``seed``; with ``runs`` > 1 it is sampled under seeds ``seed``,
    ``seed + 1``, … and scored by mean errors (see :func:`fidelity`, which also takes
    ``block_tokens`` and ``scope``). The baselines are built from the fitted half too, so
    every candidate knows the same past and is judged on the same held-out part. With an
    ``engine`` each run is sampled and scored in its own task (:class:`ModelRun`).
    """
    from servetrace.synth.model import fit

    if runs < 1:
        raise ValueError(f"holdout: runs must be at least 1, got {runs}")
    frame = requests.lazy().collect().sort("arrival_s")
    if split == "time":
        first, second = split_half(frame)
        model = _advance(fit(first, by=by, seed=seed), _span(frame) / 2)
    elif split == "sessions":
        start = frame["arrival_s"].min()
        first, second = (h.with_columns(pl.col("arrival_s") - start)
                         for h in sf.split_sessions(frame, seed))
        if first.height < 3 or second.height < 3:
            raise ValueError(f"holdout: a session split of {frame.height} requests left "
                             f"{first.height} and {second.height}; it needs at least 3 each")
        model = fit(first, by=by, seed=seed)
    else:
        raise ValueError(f"holdout: split must be 'time' or 'sessions', got {split!r}")
    duration = _span(second)
    samples = [ModelRun(model, duration, seed + i) for i in range(runs)]
    return fidelity(second, samples[0] if runs == 1 else samples, seed=seed, reference=first,
                    block_tokens=block_tokens, scope=scope, engine=engine)
