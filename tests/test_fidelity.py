"""Fidelity: the metrics agree on processes that match, the baselines are what the field runs, and
the fitted model beats them on the real traces, over several seeds, on the whole trace and on
held-out time (fit on the first half, compare with the second).

The acceptance tests score every candidate by its mean error over :data:`RUNS` runs (seeds 0 …
RUNS − 1 for the model, the matching baseline seeds for Poisson and gamma). Measured over 40
runs, each win asserted below holds by more than 6 standard errors of the difference (and the
assertions pass for five other blocks of 6 seeds); comparisons within noise over 40 runs are
asserted as ties (no worse than two standard errors of the 6-run means) together with a clear
win over the other baseline, and the comparisons the model loses are named with their cause
and not asserted.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from servetrace.loaders import azure_llm_2023, burstgpt, mooncake
from servetrace.loaders.schema import conform
from servetrace.synth.fidelity import (
    ARRIVAL_METRICS,
    _advance,
    baseline,
    fidelity,
    holdout,
    metrics,
    split_half,
    verdict,
    wasserstein,
)
from servetrace.synth.model import fit

RUNS = 6


def _renewal(shape: float, rate: float, duration: float, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.gamma(shape, 1 / (rate * shape), int(rate * duration * 1.3)))
    t = t[t < duration]
    return _with_lengths(t, rng)


def _with_lengths(t: np.ndarray, rng: np.random.Generator) -> pl.DataFrame:
    z = rng.multivariate_normal([0, 0], [[1, 0.6], [0.6, 1]], len(t))
    return conform("requests", pl.DataFrame({
        "trace": "truth", "request_id": np.arange(len(t)).astype(str), "arrival_s": t,
        "input_tokens": np.exp(6 + z[:, 0]).astype(np.int64) + 1,
        "output_tokens": np.exp(4 + z[:, 1]).astype(np.int64) + 1}))


def _cv(frame: pl.DataFrame) -> float:
    g = np.diff(frame["arrival_s"].to_numpy())
    return float(g.std() / g.mean())


# ----------------------------------------------------------------------------- ground truth


def test_two_samples_of_one_poisson_process_agree():
    real, other = _renewal(1.0, 5.0, 3600, 1), _renewal(1.0, 5.0, 3600, 2)
    table = fidelity(real, other, baselines=False)
    err = dict(zip(table["metric"], table["model"], strict=True))
    real_cv = table.filter(pl.col("metric") == "iat_cv")["real"][0]
    assert real_cv == pytest.approx(1.0, abs=0.03)
    assert err["iat_cv"] < 0.03 and err["iat_ks"] < 0.03 and err["hurst_av"] < 0.1
    assert err["idc_max_rel_error"] < 0.6  # two noisy estimates; SD ≈ 0.19 each at 60 s
    assert err["spearman"] < 0.05 and err["input_ks"] < 0.03


def test_baselines_have_the_real_rate_and_cv():
    real = _renewal(0.25, 5.0, 3600, 3)  # CV 2
    poisson, gamma = (baseline(real, k, 3600, seed=4) for k in ("poisson", "gamma"))
    for frame in (poisson, gamma):
        assert frame.height == pytest.approx(real.height, rel=0.1)
    assert _cv(gamma) == pytest.approx(2.0, rel=0.08)
    assert _cv(poisson) == pytest.approx(1.0, rel=0.05)
    with pytest.raises(ValueError, match="unknown baseline 'uniform'"):
        baseline(real, "uniform", 10, 0)


def test_gamma_baseline_takes_the_moment_cv_not_a_likelihood_fit():
    # lognormal gaps, σ = 1: CV = √(e − 1) = 1.311, while the maximum-likelihood gamma shape
    # solves ln κ − ψ(κ) = ln mean − mean ln = σ²/2, κ ≈ 1.13, a CV of 0.94. vLLM, Vidur and
    # ServeGen set κ = 1/CV²: the baseline must reproduce 1.31.
    rng = np.random.default_rng(21)
    t = np.cumsum(rng.lognormal(0.0, 1.0, 30_000) / math.exp(0.5) / 5.0)  # 5/s
    real = _with_lengths(t[t < 5000], rng)
    gamma = baseline(real, "gamma", 5000, seed=22)
    assert _cv(real) == pytest.approx(math.sqrt(math.e - 1), rel=0.05)
    assert _cv(gamma) == pytest.approx(_cv(real), rel=0.06)  # ± 3 SE at 25k gaps


def test_idc_error_ignores_windows_below_the_recording_grid():
    # one Poisson process at 5/s, recorded on a 3 s grid and continuously: at 1 s windows the
    # ticked copy has IDC ≈ 11 (a tick's ~15 arrivals in one 1 s window of three), a grid
    # artefact; on windows that are multiples of 3 s both have IDC ≈ 1.
    rng = np.random.default_rng(23)
    t = np.cumsum(rng.exponential(0.2, 80_000))
    t = t[t < 14_400]
    real, continuous = _with_lengths(np.floor(t / 3) * 3, rng), _with_lengths(t, rng)
    m = metrics(real)
    assert not m["idc_on_grid"][1.0] and m["idc_on_grid"][30.0]
    assert m["idc"][1.0] == pytest.approx(11.0, rel=0.15)
    table = fidelity(real, continuous, baselines=False)
    err = table.filter(pl.col("metric") == "idc_max_rel_error")["model"][0]
    assert err < 0.1  # the same arrivals, off by < 3 s; the 1 s window alone would give 0.9


def test_several_runs_give_mean_errors_and_their_spread():
    real = _renewal(0.5, 5.0, 3600, 5)
    runs = [_renewal(0.5, 5.0, 3600, s) for s in (6, 7, 8)]
    table = fidelity(real, runs, seed=3)
    singles = [fidelity(real, r, seed=3, baselines=False)["model"].to_numpy() for r in runs]
    assert table["model"].to_numpy() == pytest.approx(np.mean(singles, axis=0))
    assert table["model_sd"].to_numpy() == pytest.approx(np.std(singles, axis=0, ddof=1))
    assert {"poisson_sd", "gamma_sd"} <= set(table.columns)
    # run 0 meets the baselines of a single comparison with the same seed
    single, one_run = fidelity(real, runs[0], seed=3), fidelity(real, runs[:1], seed=3)
    assert "model_sd" not in single.columns and one_run["model_sd"].null_count() > 0
    for kind in ("model", "poisson", "gamma"):
        assert one_run[kind].to_numpy() == pytest.approx(single[kind].to_numpy())
    with pytest.raises(ValueError, match="empty sequence"):
        fidelity(real, [])
    with pytest.raises(ValueError, match="runs"):
        holdout(real, runs=0)


def test_verdict_is_a_two_standard_error_comparison_with_every_baseline():
    # difference 1, standard error √(0.5²/4 + 0.5²/4) = 0.354: 2.8 SE
    assert verdict((1.0, 0.5, 4), [(2.0, 0.5, 4), (9.0, 1.0, 40)]) == "win"
    assert verdict((1.0, 0.5, 4), [(1.6, 0.5, 4), (9.0, 1.0, 40)]) == "tie"  # 1.7 SE
    assert verdict((2.0, 0.5, 4), [(1.0, 0.5, 4), (9.0, 1.0, 40)]) == "loss"
    assert verdict((2.0, 0.5, 4), [(1.0, 0.5, 4)], z=3.0) == "tie"
    assert verdict((1.0, 0.0, 5), [(1.0, 0.0, 5)]) == "tie"  # no spread, no difference
    assert verdict((1.0, 0.0, 5), [(1.1, 0.0, 5)]) == "win"
    assert verdict((1.0, None, 1), [(2.0, 0.5, 4)]) is None
    assert verdict((1.0, 0.5, 4), [(None, None, 0)]) is None


def _switching(duration: float, seed: int) -> pl.DataFrame:
    """Poisson arrivals whose rate switches between 1/s and 9/s every 600 s on average
    (exponential sojourns): a Cox process whose IDC grows from 4 at 1 s to ~1,000 at 10 min."""
    rng = np.random.default_rng(seed)
    edges = np.concatenate([[0.0], np.cumsum(rng.exponential(600.0, int(duration / 300) + 8))])
    edges = edges[: np.searchsorted(edges, duration) + 1]
    rates = np.where(np.arange(len(edges) - 1) % 2 == rng.integers(2), 1.0, 9.0)
    parts = []
    for a, b, r in zip(edges[:-1], edges[1:], rates, strict=True):  # one per sojourn
        t = a + np.cumsum(rng.exponential(1 / r, int((b - a) * r * 1.5) + 20))
        parts.append(t[t < min(b, duration)])
    t = np.concatenate(parts)
    return _with_lengths(t, rng)


def test_verdicts_of_the_true_process_and_of_a_poisson_model():
    real = _switching(7_200, 30)
    truth = fidelity(real, [_switching(7_200, s) for s in range(31, 39)], seed=1)
    naive = fidelity(real, [_renewal(1.0, real.height / 7_200, 7_200, s)
                            for s in range(41, 49)], seed=1)
    v = dict(zip(truth["metric"], truth["verdict"], strict=True))
    w = {r["metric"]: r for r in naive.iter_rows(named=True)}
    # samples of the process itself disperse like it, the renewal baselines stay flat
    assert v["idc_max_rel_error"] == "win" and v["hurst_av"] == "win"
    # a Poisson model is the Poisson baseline: a tie with it on the dispersion, and a loss
    # against gamma on the CV it was not told
    for metric in ("idc_max_rel_error", "hurst_av"):
        r = w[metric]
        assert verdict((r["model"], r["model_sd"], 8), [(r["poisson"], r["poisson_sd"], 8)]) \
            == "tie", r
    assert w["iat_cv"]["verdict"] == "loss"
    assert set(truth["verdict"].drop_nulls()) <= {"win", "tie", "loss"}


def test_not_even_the_true_process_beats_the_gamma_baseline_on_cv():
    # The gamma baseline is told the real trace's CV and is a renewal process, whose sample CV
    # is tight; a modulated process's sample CV depends on how long each state lasted in the
    # sample. So samples of the very process that made the real trace score a larger mean CV
    # error than the baseline (4-11x here, a loss at 2 SE for two of these four): a CV
    # comparison against this baseline cannot be won, and the real traces' CV ties are no
    # evidence against the model.
    for k in range(4):
        real = _switching(7_200, 100 + k)
        table = fidelity(real, [_switching(7_200, 1000 + 20 * k + s) for s in range(8)], seed=k)
        cv = table.filter(pl.col("metric") == "iat_cv").row(0, named=True)
        assert cv["model"] > 2 * cv["gamma"], cv
        assert cv["model"] < cv["poisson"] / 3, cv
    assert "verdict" not in fidelity(real, real, baselines=True).columns  # one run: no spread


def test_held_out_samples_continue_the_time_of_day():
    # 5 days of a diurnal Poisson process starting at 05:00, split at 2.5 days: the second
    # half starts at 17:00, half a day out of phase with the first. Samples for it must follow
    # its clock, not the first half's.
    rng = np.random.default_rng(24)

    def rate(t: np.ndarray) -> np.ndarray:
        return 0.25 * (1 + 0.8 * np.sin(2 * np.pi * (t + 5 * 3600) / 86400))

    t = np.cumsum(rng.exponential(1 / 0.45, int(0.45 * 5 * 86400 * 1.05)))
    t = t[t < 5 * 86400]
    t = t[rng.random(len(t)) < rate(t) / 0.45]
    first, second = split_half(_with_lengths(t, rng))
    model = fit(first)
    offset = float(t[-1] - t[0]) / 2
    hours = (np.arange(48) + 0.5) * 3600
    truth = rate(hours + offset + t[0])

    def hourly(frame: pl.DataFrame) -> np.ndarray:
        return np.bincount((frame["arrival_s"].to_numpy() // 3600).astype(np.int64),
                           minlength=48)[:48]

    assert np.corrcoef(hourly(second), truth)[0, 1] > 0.95
    assert np.corrcoef(hourly(_advance(model, offset).sample(2 * 86400, 1)), truth)[0, 1] > 0.95
    assert np.corrcoef(hourly(model.sample(2 * 86400, 1)), truth)[0, 1] < -0.9  # first's clock


# ----------------------------------------------------------------------------- real traces


@pytest.fixture(scope="module")
def real_traces(shared):
    t = shared
    return {
        "code": azure_llm_2023.load([t / "azure_llm_2023/AzureLLMInferenceTrace_code.csv"],
                                    "azure_llm_2023/code").tables["requests"],
        "conv": azure_llm_2023.load([t / "azure_llm_2023/AzureLLMInferenceTrace_conv.csv"],
                                    "azure_llm_2023/conv").tables["requests"],
        "mooncake": mooncake.load([t / "mooncake_fast25/conversation_trace.jsonl"],
                                  "mooncake/conversation").tables["requests"],
        "burstgpt": burstgpt.load([t / "burstgpt_sample/sample.jsonl"],
                                  "burstgpt/sample").tables["requests"],
    }


@pytest.fixture(scope="module")
def scores(real_traces) -> dict[tuple[str, str], dict[str, dict[str, float]]]:
    """Mean errors and spreads over RUNS runs, per (trace, "whole" | "held") and metric."""
    out = {}
    for name, real in real_traces.items():
        span = float(real["arrival_s"].max() - real["arrival_s"].min())
        model = fit(real)
        whole = fidelity(real, [model.sample(span, seed=s) for s in range(RUNS)], seed=0)
        held = holdout(real, seed=0, runs=RUNS)
        for mode, table in (("whole", whole), ("held", held)):
            assert set(ARRIVAL_METRICS) <= set(table["metric"])
            out[name, mode] = {r["metric"]: r for r in table.iter_rows(named=True)}
    return out


def _wins(row: dict, baselines=("poisson", "gamma")) -> bool:
    return all(row[b] is None or row["model"] < row[b] for b in baselines)


def _tie(row: dict, other: str) -> bool:
    """The model's mean error is no worse than ``other``'s by more than two standard errors
    of the difference of the two RUNS-run means."""
    se = math.sqrt((row["model_sd"] ** 2 + row[f"{other}_sd"] ** 2) / RUNS)
    return row["model"] <= row[other] + 2 * se


# the clear wins: > 6 standard errors of the difference over 40 runs
WINS = {
    ("code", "whole"): ("idc_max_rel_error", "hurst_av", "iat_ks", "iat_wasserstein"),
    ("conv", "whole"): ("idc_max_rel_error", "hurst_av", "peak_to_mean_60s", "iat_ks",
                        "iat_wasserstein"),
    ("mooncake", "whole"): ("iat_cv", "idc_max_rel_error", "hurst_av", "iat_ks",
                            "iat_wasserstein"),
    ("burstgpt", "whole"): ("idc_max_rel_error", "hurst_av", "iat_ks", "iat_wasserstein"),
    ("code", "held"): ("idc_max_rel_error", "hurst_av", "iat_ks", "iat_wasserstein"),
    ("conv", "held"): ("idc_max_rel_error", "hurst_av", "peak_to_mean_60s", "iat_ks"),
    ("mooncake", "held"): ("idc_max_rel_error", "iat_ks", "iat_wasserstein"),
    ("burstgpt", "held"): (),
}
# CV errors the model's calibration must stay within (6-run means): Azure code's CV of 13 is
# made by a handful of 2–4 minute silences and moves ±5 % between seeds; the others ±0.5 %
CV_BOUND = {"code": 0.15, "conv": 0.03, "mooncake": 0.03}


@pytest.mark.parametrize("name", ["code", "conv", "mooncake", "burstgpt"])
def test_model_beats_both_baselines_on_the_whole_trace(scores, name):
    rows = scores[name, "whole"]
    for metric in WINS[name, "whole"]:
        assert _wins(rows[metric]), (name, metric, rows[metric])
    cv, ptm = rows["iat_cv"], rows["peak_to_mean_60s"]
    # CV: the gamma baseline is given the real CV, the model is calibrated to it; both land
    # within their sampling noise (Azure code: gamma's κ = 1/13² is noisier still).
    assert cv["model"] < cv["poisson"], cv
    if name != "burstgpt":
        assert _tie(cv, "gamma") and cv["model"] < CV_BOUND[name], cv
    else:  # the order of quiet and busy hours decides this CV: see the next test
        assert cv["model"] < 0.5, cv
    # peak-to-mean over ~58 one-minute windows moves ±20 % between seeds: a tie with the
    # closer baseline (gamma's clumps on code; Poisson on Mooncake's smooth hour), far from
    # the other.
    assert _tie(ptm, "poisson") and _tie(ptm, "gamma"), ptm
    assert ptm["model"] < max(ptm["poisson"], ptm["gamma"]) / 2, ptm


def test_burstgpt_cv_is_decided_by_the_order_of_its_quiet_and_busy_hours(real_traces):
    # The sample's nine quiet hours (36 session starts) come before its eight busy ones (263):
    # sessions' later turns (think times up to hours) spill forward into busy time only. The
    # real session starts expanded with the fitted turn and think-time tables keep the CV of
    # 3.5 within 10 %; the same starts in reverse order, busy hours first, spill turns into
    # the quiet ones and the CV drops by a third, the model's own shortfall. A model whose
    # rate is stationary over the trace draws that order at random; nothing fitted to 17
    # hours can tell a night from a random lull.
    from servetrace.synth.arrivals import _rng
    from servetrace.synth.sessions import _expand_sessions, _fit_sessions

    real = real_traces["burstgpt"]
    model = fit(real)
    _, starts = _fit_sessions(real)
    starts = starts - real["arrival_s"].min()
    real_cv = _cv(real.sort("arrival_s"))

    def mean_cv(st: np.ndarray) -> float:
        cvs = []
        for k in range(20):  # 20 expansions of the same starts
            t, _, _ = _expand_sessions(model.groups[0].sessions, st, model.span_s, 1.0,
                                       _rng(k, 7))
            cvs.append(np.diff(t).std() / np.diff(t).mean())
        return float(np.mean(cvs))

    assert real_cv == pytest.approx(3.50, abs=0.01)
    assert mean_cv(starts) == pytest.approx(real_cv, rel=0.1)
    assert mean_cv(np.sort(model.span_s - starts)) < 0.75 * real_cv


@pytest.mark.parametrize("name", ["code", "conv", "mooncake", "burstgpt"])
def test_model_holds_up_on_held_out_time(scores, real_traces, name):
    rows = scores[name, "held"]
    for metric in WINS[name, "held"]:
        assert _wins(rows[metric]), (name, metric, rows[metric])
    if name == "burstgpt":
        # 96 requests in the first half, 904 in the second: no model fitted on the quiet
        # half predicts the busy one's rate; the rate-bound figures (gaps, peaks) are lost,
        # and samples of ~100 requests mostly leave the Hurst exponent undefined. The
        # dispersion curve's shape still carries over: better than Poisson, within noise of
        # gamma (ahead by 6 standard errors over 40 runs, not in every block of 6)
        idc = rows["idc_max_rel_error"]
        assert _wins(idc, ("poisson",)) and _tie(idc, "gamma"), idc
        return
    cv, ptm = rows["iat_cv"], rows["peak_to_mean_60s"]
    # every candidate carries the first half's CV
    assert cv["model"] < cv["poisson"] and _tie(cv, "gamma"), cv
    if name == "mooncake":
        # the second half is smoother than the first (IDC at 60 s 1.2 against 2.5): the model
        # keeps the burstiness it saw, and the renewal baselines land closer on H and peaks
        first, second = split_half(real_traces[name])
        assert metrics(second)["idc"][60.0] < metrics(first)["idc"][60.0] / 1.5
        assert ptm["model"] < ptm["gamma"], ptm
        return
    assert _tie(ptm, "gamma") and ptm["model"] < ptm["poisson"], ptm
    if name == "conv":
        assert _tie(rows["iat_wasserstein"], "gamma") and _wins(rows["iat_wasserstein"],
                                                                 ("poisson",))


def test_split_half_restarts_both_halves_at_zero(real_traces):
    first, second = split_half(real_traces["conv"])
    assert first.height + second.height == real_traces["conv"].height
    assert first["arrival_s"].min() == 0.0 and second["arrival_s"].min() >= 0.0
    assert second["arrival_s"].max() <= first["arrival_s"].max() + 1.0


def test_wasserstein_is_the_mean_shift_and_scipys_distance():
    """W1 between a sample and itself shifted by c is c (Ramdas et al. 2017, a translation
    of the whole distribution); on unrelated samples the distance is SciPy's to rounding."""
    rng = np.random.default_rng(5)
    u = rng.lognormal(5.0, 1.5, 20_000)
    assert wasserstein(u, u + 3.0) == pytest.approx(3.0, rel=1e-12)
    assert wasserstein(np.array([0.0, 0.0]), np.array([1.0, 1.0])) == 1.0
    v = np.floor(rng.lognormal(5.0, 1.4, 30_000))
    assert wasserstein(u, v) == pytest.approx(stats.wasserstein_distance(u, v), rel=1e-12)
