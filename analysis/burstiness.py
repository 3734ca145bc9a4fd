"""Burstiness of arrival processes: inter-arrival times, counts, dispersion, self-similarity.

The metrics live in :mod:`~servetrace.analysis.counting` (resolution, groups, window counts),
:mod:`~servetrace.analysis.interarrival` (statistics and fits of the gaps),
:mod:`~servetrace.analysis.dispersion`, :mod:`~servetrace.analysis.hurst`,
:mod:`~servetrace.analysis.periodicity` and :mod:`~servetrace.analysis.bursts`; this module
re-exports their public names and adds :func:`summary`.

Every function takes ``events``, a Polars DataFrame or LazyFrame in one of two shapes, told
apart by its columns:

* **arrivals** — an ``arrival_s`` column (the canonical ``requests``, ``invocations`` or
  ``cold_starts`` tables): one row per event, seconds from the trace's zero;
* **counts** — ``window_start_s``, ``window_s`` and ``count`` (the canonical
  ``invocation_counts`` table): events per window. All rows must share one ``window_s``, the
  *base window*; rows that fall into the same group and window are added up. Inter-arrival
  statistics and fits are not defined on counts: :func:`interarrival_stats`,
  :func:`interarrival_gaps` and :func:`fit_interarrivals` raise ``ValueError`` (and
  :func:`summary` leaves their columns null); everything else works at integer multiples of
  the base window.

``by`` (a column name or a list of them) splits the events into groups (tenant, model,
function, trigger, ...); result frames then start with the ``by`` columns, one group per
distinct combination present in the data, sorted by them. Only the ``by`` columns and the time
columns are read, so a LazyFrame scan of a large Parquet store reads nothing else.

Conventions shared by all functions
-----------------------------------
*Resolution and ties.* :func:`resolution` finds the grid the timestamps sit on (3 s for the
Mooncake conversation trace, whose requests arrive in ~3 s ticks; 0.0 for continuous
timestamps). When it is positive, arrival times are snapped to that grid before anything else
(removing the millisecond jitter of the ticks), arrivals on the same tick are *ties*, and
windows finer than the grid are never used by default: structure below the resolution is an
artefact of the recording, not burstiness.

*Windows.* A window of size ``w`` is the half-open interval ``[o + k·w, o + (k+1)·w)`` for an
integer ``k``, aligned to the trace's zero: ``o = 0`` for arrivals; for counts ``o`` is the
phase of the base windows (``min(window_start_s) mod window_s``, 0 for every canonical
loader). Windows never align to a group's first event.

*Span.* All groups share the span of the whole input: for arrivals ``[first arrival, last
arrival + resolution)`` (the last arrival itself when the resolution is 0), for counts
``[first window start, last window end)``. Statistics over windows (dispersion, Hurst,
periodicity, bursts) use the *complete* windows inside the span, including the empty ones:
a group silent for hours has zero counts there. :func:`window_counts` lists every window that
overlaps the span (or ``[start_s, end_s)``), partial edge windows included.

*Vectorization.* Window counts come from integer bucketing of the (sorted) times and run-length
counting, coarser windows are aggregated from finer ones, and per-group series are processed as
matrices (groups × windows) in chunks of a few million cells; there is no loop over events.

References
----------
* Cox, D. R. & Lewis, P. A. W. (1966). *The Statistical Analysis of Series of Events*.
  Methuen. (Index of dispersion of counts.)
* Leland, W. E., Taqqu, M. S., Willinger, W. & Wilson, D. V. (1994). On the self-similar
  nature of Ethernet traffic (extended version). *IEEE/ACM Trans. Networking* 2(1), 1–15.
* The Hurst estimators' own references (R/S, aggregated variance, DFA and their
  finite-sample corrections) are in :mod:`~servetrace.analysis.hurst`.
* Fisher, R. A. (1929). Tests of significance in harmonic analysis. *Proc. R. Soc. A* 125,
  54–59.
* Beran, J. (1994). *Statistics for Long-Memory Processes*. Chapman & Hall.
* Wang, Y. et al. (2024). BurstGPT: A real-world workload dataset to optimize LLM serving
  systems. arXiv:2401.17644 (KDD 2025). (Burstiness of LLM serving workloads.)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from servetrace.analysis import fitting
from servetrace.analysis.bursts import _bursts, bursts
from servetrace.analysis.counting import (  # noqa: F401 (re-exported)
    MAX_SERIES,
    MIN_WINDOW_S,
    MIN_WINDOWS,
    NO_ARRIVALS,
    WINDOW_LADDER_S,
    By,
    Events,
    _prepare,
    _Prepared,
    _snap,
    has_arrivals,
    resolution,
    window_counts,
)
from servetrace.analysis.dispersion import _dispersion, dispersion_curve
from servetrace.analysis.hurst import (  # noqa: F401 (re-exported)
    HURST_BEND,
    HURST_MIN_R2,
    LONG_MEMORY_H,
    MIN_HURST_EVENTS,
    _hurst,
    hurst,
)
from servetrace.analysis.interarrival import (
    MIN_GAP_RESOLUTIONS,
    _fit,
    _interarrival,
    fit_interarrivals,
    interarrival_gaps,
    interarrival_stats,
)
from servetrace.analysis.periodicity import (
    DOMINANT_P_VALUE,
    DOMINANT_STRENGTH,
    _periodicity,
    periodicity,
)

__all__ = [
    "bursts",
    "dispersion_curve",
    "fit_interarrivals",
    "hurst",
    "interarrival_gaps",
    "interarrival_stats",
    "periodicity",
    "resolution",
    "summary",
    "window_counts",
]


# --------------------------------------------------------------------------------------------
# Summary


#: The columns of :func:`summary` after the ``by`` columns, in order.
SUMMARY_COLUMNS = (
    "n", "duration_s", "rate_per_s", "cv", "resolution_s", "idc_1s", "idc_60s", "idc_3600s",
    "peak_to_mean_60s", "hurst_av", "hurst_rs", "hurst_dfa", "hurst_memory", "best_fit",
    "dominant_period_s", "n_bursts", "tie_fraction", "dominant_period_strength", "notes")


def summary(events: Events, by: By = None, *, seed: int = 0) -> pl.DataFrame:
    """One row per group with the key burstiness figures (for the CLI and the report).

    Columns: ``[by..., n, duration_s, rate_per_s, cv, resolution_s, idc_1s, idc_60s,
    idc_3600s, peak_to_mean_60s, hurst_av, hurst_rs, hurst_dfa, hurst_memory, best_fit,
    dominant_period_s, n_bursts, tie_fraction, dominant_period_strength, notes]``
    (:data:`SUMMARY_COLUMNS`).
    ``seed`` is the fits' starting point on gridded timestamps.

    * n, duration_s, rate_per_s, cv, tie_fraction: :func:`interarrival_stats` (cv at the
      data's resolution). For counts input: n = Σ counts, duration_s = the span,
      rate_per_s = n / duration_s, cv, tie_fraction and best_fit are null;
    * idc_1s, idc_60s, idc_3600s, peak_to_mean_60s: :func:`dispersion_curve` at 1 s, 60 s and
      3600 s, each snapped up to a multiple of the resolution; null with fewer than
      :data:`MIN_WINDOWS` complete windows, and null (with a note) for a window below the
      resolution (Mooncake's 3 s ticks: idc_1s; per-minute counts: idc_1s);
    * hurst_av, hurst_rs, hurst_dfa, hurst_memory: :func:`hurst` with its default base
      window (its ``h`` per method and its ``memory`` verdict);
    * best_fit: the family ranked first by AIC in :func:`fit_interarrivals` (fitted on at
      most 50,000 gaps per group, for speed);
    * dominant_period_s / _strength: the highest :func:`periodicity` periodogram peak when its
      Fisher p-value is below :data:`DOMINANT_P_VALUE` and its strength (autocorrelation at
      the period) at least :data:`DOMINANT_STRENGTH`, else null. Fisher's test alone rejects
      white noise for any non-stationary series (a single burst gives p ≈ 0 at a low
      frequency); the autocorrelation asks that the series actually repeat;
    * n_bursts: :func:`bursts` with its defaults (60 s windows, k = 2, 1 h baseline);
    * notes: why figures are null where the data cannot resolve them (cv and best_fit when
      the mean gap is under :data:`MIN_GAP_RESOLUTIONS` × the resolution; a window below the
      resolution; counts input), "; "-separated; null when nothing is left out.
    """
    ev = _prepare(events, by)
    if ev.kind == "arrivals":
        return _summary(ev, _interarrival(ev),
                        lambda: _fit(ev, fitting.DEFAULT_FAMILIES, seed, SUMMARY_FIT_GAPS, 10))
    return _summary(ev, None, None)


#: :func:`summary`'s ``best_fit`` is fitted on at most this many gaps per group.
SUMMARY_FIT_GAPS = 50_000


def _summary(ev: _Prepared, ia: pl.DataFrame | None,
             fits: Callable[[], pl.DataFrame] | None) -> pl.DataFrame:
    """:func:`summary` of prepared events; for arrivals ``ia``, the request-level columns of
    :func:`interarrival_stats` (``n, duration_s, rate_per_s, cv, resolution_s,
    tie_fraction, cv_request``), and ``fits``, what gives :func:`fit_interarrivals`' frame
    with :data:`SUMMARY_FIT_GAPS` gaps and ``min_gaps`` 10 (at least its ``by`` columns,
    ``family`` and ``rank_aic``): in memory or out of core
    (:mod:`~servetrace.analysis.out_of_core`), the rest is the same code."""
    g = ev.n_groups
    if ia is not None:
        base = ia.select("n", "duration_s", "rate_per_s", "cv", "resolution_s", "tie_fraction")
    else:
        n = np.bincount(ev.gid, weights=ev.base_c, minlength=g).astype(np.int64)
        span = ev.end_s - ev.start_s
        base = pl.DataFrame({"n": n, "duration_s": np.full(g, span),
                             "rate_per_s": n / span, "cv": np.full(g, np.nan),
                             "resolution_s": np.full(g, ev.resolution_s),
                             "tie_fraction": np.full(g, np.nan)}).fill_nan(None)
    below = {w: w < ev.unit_s * (1 - 1e-9) for w in (1.0, 60.0, 3600.0)}
    d1, d60, d3600 = ({k: np.where(below[w], np.nan, v) for k, v in
                       _dispersion(ev, _snap(w, ev.unit_s), MIN_WINDOWS).items()}
                      for w in (1.0, 60.0, 3600.0))
    cols: dict[str, object] = {"idc_1s": d1["idc"], "idc_60s": d60["idc"],
                               "idc_3600s": d3600["idc"],
                               "peak_to_mean_60s": d60["peak_to_mean"]}
    hu = _hurst(ev, None)
    for method, name in (("aggregated_variance", "hurst_av"), ("rs", "hurst_rs"),
                         ("dfa", "hurst_dfa")):
        cols[name] = _per_group(ev, hu.filter(pl.col("method") == method), "h")
    cols["hurst_memory"] = _per_group(ev, hu.filter(pl.col("method") == "dfa"), "memory")
    if ia is not None and fits is not None:
        best = _per_group(ev, fits().filter(pl.col("rank_aic") == 1), "family")
        unresolved = ia["cv"].is_null() & ia["cv_request"].is_not_null()
        cols["best_fit"] = pl.select(pl.when(unresolved).then(None).otherwise(best))
        cols["best_fit"] = cols["best_fit"].to_series().alias("best_fit")
    else:
        cols["best_fit"] = pl.Series([None] * g, dtype=pl.String)
    per = _periodicity(ev, None, 1).filter(
        (pl.col("method") == "periodogram") & (pl.col("p_value") < DOMINANT_P_VALUE)
        & (pl.col("strength") >= DOMINANT_STRENGTH))
    cols["dominant_period_s"] = _per_group(ev, per, "period_s")
    cols["dominant_period_strength"] = _per_group(ev, per, "strength")
    bu = _bursts(ev, 60.0, 2.0, 3600.0, 1)
    nb = _per_group(ev, bu.group_by(list(ev.by)).agg(pl.len().alias("n")) if ev.by
                    else pl.DataFrame({"n": [bu.height]}), "n")
    cols["n_bursts"] = nb.fill_null(0).cast(pl.Int64)
    notes = _summary_notes(ev, ia, below)
    hurst_notes = [_per_group(ev, hu.filter(pl.col("method") == m), "note").alias(m)
                   for m in ("aggregated_variance", "dfa")]
    cols["notes"] = pl.DataFrame([notes, *hurst_notes]).select(pl.concat_str(
        pl.all(), separator="; ", ignore_nulls=True).replace("", None))["notes"]
    extra = pl.DataFrame(cols)
    extra = extra.with_columns(pl.col(c).fill_nan(None) for c, d in extra.schema.items()
                               if d.is_float())
    body = pl.concat([base, extra], how="horizontal").select(SUMMARY_COLUMNS)
    return pl.concat([ev.keys, body], how="horizontal") if ev.by else body


def _summary_notes(ev: _Prepared, ia: pl.DataFrame | None, below: dict[float, bool]
                   ) -> pl.Series:
    """Why :func:`summary` leaves a figure null where the data cannot resolve it, per group
    (null when nothing is left out): "; "-separated, naming the columns."""
    r = ev.resolution_s
    parts: list[pl.Expr] = []
    if ia is None:
        parts.append(pl.lit("cv, tie_fraction, best_fit: window counts have no arrival times"))
        frame = pl.DataFrame({"_": np.zeros(ev.n_groups)})
    else:
        frame = ia.select(pl.col("cv").is_null() & pl.col("cv_request").is_not_null(),
                          (pl.col("duration_s") / (pl.col("n") - 1)).alias("gap"))
        parts.append(pl.when(pl.col("cv")).then(pl.format(
            f"cv, best_fit: the mean gap ({{}} s) is under {MIN_GAP_RESOLUTIONS} × the "
            f"resolution ({r:g} s), which hides the gaps", pl.col("gap").round_sig_figs(3))))
    late = [w for w, b in below.items() if b]
    if late:
        names = ", ".join(["idc_1s", "idc_60s, peak_to_mean_60s", "idc_3600s"][i]
                          for i, w in enumerate(below) if below[w])
        parts.append(pl.lit(f"{names}: window below the resolution ({r:g} s)"))
    notes = frame.with_columns(pl.concat_str(parts, separator="; ", ignore_nulls=True)
                               .alias("notes"))["notes"]
    return notes.replace("", None)


def _per_group(ev: _Prepared, frame: pl.DataFrame, column: str) -> pl.Series:
    """``column`` of ``frame`` (≤ one row per group) aligned to the groups, null where absent."""
    if not ev.by:
        value = frame[column][0] if frame.height else None
        return pl.Series(column, [value], dtype=frame.schema[column])
    keyed = ev.keys.join(frame.select(*ev.by, column), on=list(ev.by), how="left",
                         nulls_equal=True, maintain_order="left")
    return keyed[column]
