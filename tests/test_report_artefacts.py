"""What the HTML report shows: no artefact presented as a finding (issue 17, item 10).

Ground truth: a Poisson process with one 10-minute burst has no period (the periodogram still
gives p ≈ 0 at low frequencies, with a negative autocorrelation at the "period"); a Poisson
process whose rate follows a 600 s sine has one."""

from __future__ import annotations

import re

import numpy as np
import polars as pl
import pytest

from servetrace.analysis import burstiness, report


def _poisson(rate: np.ndarray, dt: float, rng: np.random.Generator) -> np.ndarray:
    """Arrivals of an inhomogeneous Poisson process with ``rate`` per step of ``dt``."""
    n = rng.poisson(rate * dt)
    starts = np.repeat(np.arange(rate.size) * dt, n)
    return np.sort(starts + rng.random(n.sum()) * dt)


def _periods_shown(section: report.Section) -> pl.DataFrame | None:
    return next((t for c, t in section.tables if c.startswith("Dominant periods")), None)


def test_a_burst_is_not_shown_as_a_period() -> None:
    rng = np.random.default_rng(2)
    rate = np.full(4 * 3600, 5.0)
    rate[5000:5600] = 50.0
    events = pl.DataFrame({"arrival_s": _poisson(rate, 1.0, rng)})
    raw = burstiness.periodicity(events)
    assert (raw["p_value"] < 0.01).all() and (raw["strength"] < 0.1).all()  # the artefact
    assert raw["strength"].min() < 0
    section = report.arrivals(events)
    assert _periods_shown(section) is None
    [note] = [n for n in section.notes if n.startswith("periods:")]
    assert "3 periodogram peak(s)" in note and "not a cycle" in note
    assert "Dominant periods" not in report.render("t", [section])


def test_a_cycle_is_shown_with_its_strength() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(4 * 3600)
    events = pl.DataFrame({"arrival_s": _poisson(5 + 4 * np.sin(2 * np.pi * t / 600), 1.0,
                                                  rng)})
    periods = _periods_shown(report.arrivals(events))
    assert periods is not None and periods["period_s"][0] == pytest.approx(600, rel=0.02)
    assert (periods["strength"] >= burstiness.DOMINANT_STRENGTH).all()


def test_fit_tables_put_the_wide_params_column_last() -> None:
    fits = pl.DataFrame({"family": ["gamma"],
                         "params": ['{"shape": 0.8709678036830343, "scale": 0.2}'],
                         "loglik": [1.0], "aic": [2.0], "ks": [0.01]})
    html = report.table_html(fits, "fits")
    assert re.findall(r"<th>([^<]*)</th>", html) == ["family", "loglik", "aic", "ks", "params"]
    assert "<td>shape=0.871, scale=0.2</td>" in html  # compact, not 17-digit JSON


def test_notes_wrap_in_their_cell() -> None:
    # a Hurst note is a sentence: with the table's nowrap it ran off the visible table
    frame = pl.DataFrame({"method": ["aggregated_variance"], "h": [0.86],
                          "note": ["the variance-time curve bends back toward slope -1"]})
    html = report.table_html(frame)
    assert "<td class='text'>the variance-time curve" in html and "<td>0.86</td>" in html
    page = report.render("t", [report.Section("s", tables=(("Hurst", frame),))])
    assert "td.text{white-space:normal" in page
