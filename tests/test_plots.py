"""Charts render offline from the result frames the analyses return."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from servetrace.analysis import plots
from servetrace.analysis.fitting import fit_distributions


def _curve() -> pl.DataFrame:
    return pl.DataFrame({"window_s": [1.0, 10.0, 100.0] * 2, "idc": [1.0, 1.1, 0.9, 2, 8, 30],
                         "peak_to_mean": [3.0, 1.5, 1.2, 4, 3, 2],
                         "tenant": ["a"] * 3 + ["b"] * 3})


def test_dispersion_chart_carries_the_curve_and_the_poisson_line():
    spec = plots.dispersion(_curve(), by="tenant").to_dict()
    line, poisson = spec["layer"]
    assert poisson["mark"]["type"] == "rule"
    assert line["encoding"]["x"]["scale"]["type"] == "log"
    assert line["encoding"]["color"]["field"] == "group"
    datasets = spec["datasets"]
    sizes = sorted(len(v) for v in datasets.values())
    assert sizes == [1, 6]  # the rule at IDC = 1, and six curve points
    svg = plots.to_svg(plots.dispersion(_curve(), by="tenant"))
    assert svg.startswith("<svg") and "Index of dispersion" in svg


def test_rate_chart_is_coarsened_to_a_bounded_number_of_points():
    counts = pl.DataFrame({"window_start_s": np.arange(100_000, dtype=np.float64),
                           "count": np.ones(100_000, dtype=np.int64)})
    chart = plots.rate(counts, 1.0, bursts=pl.DataFrame({"start_s": [10.0], "end_s": [20.0]}))
    spec = chart.to_dict()
    points = max(len(v) for v in spec["datasets"].values())
    assert points <= plots.MAX_POINTS
    rates = [row["rate_per_s"] for d in spec["datasets"].values() for row in d
             if "rate_per_s" in row]
    assert rates and all(r == pytest.approx(1.0) for r in rates)  # coarsening keeps the rate


def test_fitted_cdf_and_png(tmp_path):
    x = np.random.default_rng(0).gamma(2.0, 1.0, 5000)
    chart = plots.fitted_cdf(x, fit_distributions(x), "gaps", x_title="gap (s)")
    assert chart.to_dict()["encoding"]["x"]["title"] == "gap (s)"  # issue 17, item 10: a unit
    assert plots.file_name(chart) == "gaps.png"
    curves = {row["curve"] for d in chart.to_dict()["datasets"].values() for row in d}
    assert "data" in curves and any(c.startswith("gamma") for c in curves)
    png = plots.save_png(chart, tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no positive values"):
        plots.fitted_cdf(np.zeros(3), fit_distributions(x), "gaps", x_title="gap (s)")


def test_tradeoff_puts_every_policy_on_a_log_axis_and_names_it():
    # issue 17, item 10: the Azure Functions 2019 sample's trade-off (cold fraction from 0.24
    # down to 0.0002): on a linear axis all but "no keep-alive" sat on zero, hybrid hidden
    frame = pl.DataFrame({
        "policy": ["fixed", "fixed", "fixed", "fixed", "hybrid"],
        "label": ["no keep-alive", "fixed 1 min", "fixed 10 min", "fixed 4 h", "hybrid histogram"],
        "keep_alive_s": [0.0, 60.0, 600.0, 14400.0, None],
        "cold_fraction": [0.2406, 0.008436, 0.0008963, 0.0, 0.0005635],
        "wasted_gb_s": [0.0, 2.951e5, 6.407e5, 9.329e5, 5.07e5]})
    spec = plots.tradeoff(frame).to_dict()
    layers = spec["layer"]
    assert all(layer["encoding"]["y"]["scale"]["type"] == "log" for layer in layers)
    [data] = spec["datasets"].values()
    assert {r["label"] for r in data} == {"no keep-alive", "fixed 1 min", "fixed 10 min",
                                          "hybrid histogram"}  # 0 cannot sit on a log axis
    assert "not drawn: fixed 4 h" in layers[0]["title"]
    assert [layer["mark"]["type"] for layer in layers[2:]] == ["text", "text"]  # labelled
    assert plots.file_name(plots.tradeoff(frame.head(2))) == "keep_alive_trade_off.png"


def test_lorenz_of_equal_tenants_is_the_diagonal():
    chart = plots.lorenz(pl.DataFrame({"tenant": list("abcd"), "service": [5.0] * 4}))
    rows = max(chart.to_dict()["datasets"].values(), key=len)
    assert len(rows) == 5
    assert [r["share"] for r in rows] == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    skewed = plots.lorenz(pl.DataFrame({"tenant": list("ab"), "service": [1.0, 3.0]}))
    assert [r["share"] for r in max(skewed.to_dict()["datasets"].values(), key=len)] == \
        pytest.approx([0, 0.25, 1])
