"""Altair charts of the analysis results.

Each function takes the frame an analysis function returned (its columns are named in the
docstring) and returns an ``alt.Chart``; nothing here computes a metric. Charts carry their data
inline, so :mod:`servetrace.analysis.report` can render them to SVG without a network, and
:func:`save_png` writes a PNG through vl-convert.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import altair as alt
import numpy as np
import polars as pl

from servetrace.analysis.fitting import distribution
from servetrace.analysis.frames import columns as _by

WIDTH, HEIGHT = 520, 240
MAX_POINTS = 2000  # per series; keeps inline SVG small for traces of any length
TOP_TENANTS = 8


def _color(frame: pl.DataFrame, by: str | Sequence[str] | None) -> tuple[pl.DataFrame, dict]:
    """Group columns joined into one ``group`` label for the colour channel."""
    cols = _by(by)
    if not cols:
        return frame, {}
    label = pl.concat_str([pl.col(c).cast(pl.String).fill_null("∅") for c in cols], separator="/")
    return frame.with_columns(label.alias("group")), {"color": alt.Color("group:N",
                                                                          title="/".join(cols))}


def _chart(frame: pl.DataFrame, title: str) -> alt.Chart:
    return alt.Chart(frame, title=title).properties(width=WIDTH, height=HEIGHT)


def dispersion(curve: pl.DataFrame, by: str | Sequence[str] | None = None) -> alt.Chart:
    """Index of dispersion of counts against window size (log–log), with the Poisson line IDC = 1.

    ``curve``: the frame of :func:`servetrace.analysis.burstiness.dispersion_curve` (window_s, idc).
    """
    frame, color = _color(curve.filter(pl.col("idc").is_finite() & (pl.col("idc") > 0)), by)
    lines = _chart(frame, "Index of dispersion across time scales").mark_line(point=True).encode(
        alt.X("window_s:Q", title="window (s)").scale(type="log"),
        alt.Y("idc:Q", title="variance / mean of counts").scale(type="log"),
        tooltip=["window_s", "idc", "peak_to_mean"], **color)
    poisson = alt.Chart(pl.DataFrame({"idc": [1.0]})).mark_rule(strokeDash=[4, 4], color="gray"
                                                                 ).encode(y="idc:Q")
    return lines + poisson


def peak_to_mean(curve: pl.DataFrame, by: str | Sequence[str] | None = None) -> alt.Chart:
    """Peak-to-mean ratio of counts per window size (``window_s``, ``peak_to_mean``)."""
    frame, color = _color(curve, by)
    return _chart(frame, "Peak-to-mean ratio of counts").mark_line(point=True).encode(
        alt.X("window_s:Q", title="window (s)").scale(type="log"),
        alt.Y("peak_to_mean:Q", title="max count / mean count").scale(type="log"), **color)


def _coarsen(counts: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """Merge consecutive windows so each series has at most :data:`MAX_POINTS` points."""
    windows = counts.group_by(by).len()["len"].max() if by else counts.height
    factor = max(1, int(np.ceil((windows or 1) / MAX_POINTS)))
    if factor == 1:
        return counts
    width = float(counts["window_start_s"].sort().diff().drop_nulls().min() or 1.0) * factor
    return (counts.with_columns((pl.col("window_start_s") // width * width).alias("window_start_s"))
            .group_by([*by, "window_start_s"]).agg(pl.col("count").sum()).sort("window_start_s"))


def rate(counts: pl.DataFrame, window_s: float, bursts: pl.DataFrame | None = None,
         by: str | Sequence[str] | None = None) -> alt.Chart:
    """Arrival rate over time from window counts, with detected bursts shaded.

    ``counts``: :func:`servetrace.analysis.burstiness.window_counts` (window_start_s, count);
    ``bursts``: :func:`servetrace.analysis.burstiness.bursts` (start_s, end_s).
    """
    cols = _by(by)
    coarse = _coarsen(counts, cols)
    step = coarse["window_start_s"].unique().sort().diff().drop_nulls().min() or window_s
    frame, color = _color(coarse.with_columns((pl.col("count") / step).alias("rate_per_s")), by)
    line = _chart(frame, "Arrival rate").mark_line().encode(
        alt.X("window_start_s:Q", title="time since trace start (s)"),
        alt.Y("rate_per_s:Q", title=f"arrivals per second ({step:g} s windows)"), **color)
    if bursts is None or bursts.height == 0:
        return line
    shade = alt.Chart(bursts.select("start_s", "end_s").head(MAX_POINTS)).mark_rect(
        opacity=0.2, color="firebrick").encode(x="start_s:Q", x2="end_s:Q")
    return shade + line


def fitted_cdf(values: np.ndarray | pl.Series, fits: pl.DataFrame, title: str,
               top: int = 3, *, x_title: str) -> alt.Chart:
    """Empirical CDF of ``values`` against the CDFs of the ``top`` best fits (log x).

    ``fits``: :func:`servetrace.analysis.fitting.fit_distributions` rows (family, params, rank_aic);
    ``x_title``: what the values are, with their unit ("inter-arrival time (s)").
    """
    x = np.asarray(values, dtype=np.float64)
    x = np.sort(x[np.isfinite(x) & (x > 0)])
    if len(x) == 0:
        raise ValueError(f"{title}: no positive values to plot")
    q = np.linspace(0.0, 1.0, min(len(x), 400))
    grid = np.quantile(x, q)
    parts = [pl.DataFrame({"x": grid, "cdf": np.searchsorted(x, grid, side="right") / len(x),
                           "curve": "data"})]
    whole = fits.filter(pl.col("rank_aic").is_not_null())  # tail-only fits describe x > u
    for row in whole.sort("rank_aic").head(top).iter_rows(named=True):
        dist = distribution(row["family"], row["params"])
        parts.append(pl.DataFrame({"x": grid, "cdf": dist.cdf(grid),
                                   "curve": f"{row['family']} (KS {row['ks']:.3f})"}))
    return _chart(pl.concat(parts), title).mark_line().encode(
        alt.X("x:Q", title=x_title).scale(type="log"), alt.Y("cdf:Q", title="CDF"),
        alt.Color("curve:N", title=None), strokeDash=alt.condition(
            alt.datum.curve == "data", alt.value([1, 0]), alt.value([5, 3])))


def ecdf(frame: pl.DataFrame, field: str, by: str | Sequence[str] | None = None) -> alt.Chart:
    """Token-length ECDF, log x: ``value`` and ``cdf`` of
    :func:`servetrace.analysis.tokens.ecdf`."""
    data, color = _color(frame.filter(pl.col("value") > 0), by)
    return _chart(data, f"ECDF of {field.replace('_', ' ')}").mark_line(interpolate="step-after"
                                                                        ).encode(
        alt.X("value:Q", title=field.replace("_", " ")).scale(type="log"),
        alt.Y("cdf:Q", title="fraction of requests ≤ x"), **color)


def output_by_input(frame: pl.DataFrame) -> alt.Chart:
    """Output-length quantiles per input bucket
    (:func:`servetrace.analysis.tokens.output_by_input`)."""
    data = frame.filter(pl.col("n") > 0).with_columns(
        ((pl.col("input_lo") * pl.col("input_hi").clip(lower_bound=1)).sqrt()).alias("input_mid"))
    base = _chart(data, "Output length by input length")
    band = base.mark_area(opacity=0.3).encode(
        alt.X("input_mid:Q", title="input tokens (bucket)").scale(type="log"),
        alt.Y("output_p10:Q", title="output tokens (p10–p90, median)").scale(type="log"),
        alt.Y2("output_p90:Q"))
    return band + base.mark_line(point=True).encode(x="input_mid:Q", y="output_p50:Q")


def drift(frame: pl.DataFrame, field: str) -> alt.Chart:
    """Wasserstein distance between consecutive windows
    (:func:`servetrace.analysis.tokens.drift`)."""
    return _chart(frame, f"Drift of {field.replace('_', ' ')} between consecutive windows"
                  ).mark_line(point=True).encode(
        alt.X("next_window_start_s:Q", title="window start (s)"),
        alt.Y("wasserstein:Q", title="Wasserstein distance (tokens)"), tooltip=["ks", "n_next"])


def components(breakdown: pl.DataFrame, by: str | Sequence[str] | None = None) -> alt.Chart:
    """Cold-start time shares per component
    (:func:`servetrace.analysis.coldstart.component_breakdown`)."""
    cols = _by(by)
    data, _ = _color(breakdown, by)
    y = alt.Y("group:N", title="/".join(cols)) if cols else alt.Y("component:N", title=None)
    return _chart(data, "Share of cold-start time by component").mark_bar().encode(
        alt.X("share:Q", title="share of total cold-start time").stack("normalize"
                                                                        if cols else None),
        y, alt.Color("component:N"), tooltip=["component", "share", "p50_s", "p99_s"])


def tradeoff(frame: pl.DataFrame) -> alt.LayerChart:
    """Cold-start fraction (log scale) against idle memory wasted, one labelled point per
    policy, the fixed keep-alives joined by a line
    (:func:`servetrace.analysis.keepalive.tradeoff`).

    The cold fraction spans orders of magnitude (no keep-alive: about 0.24 on the Azure
    Functions 2019 sample; fixed 4 h: 0.0002), so a linear axis would flatten every policy
    but "no keep-alive" onto zero and hide the hybrid point. Policies with no cold start at
    all cannot sit on a log axis and are named in the title instead."""
    drawn = frame.filter(pl.col("cold_fraction") > 0).with_row_index("_i").with_columns(
        pl.col("label").str.replace("^fixed ", "").alias("_short"))  # the colour says fixed
    left = frame.filter(~(pl.col("cold_fraction") > 0))["label"].to_list()
    title = "Keep-alive trade-off" + (f" (no cold start, not drawn: {', '.join(left)})"
                                      if left else "")
    x = alt.X("wasted_gb_s:Q", title="idle memory-time wasted (GB·s)")
    y = alt.Y("cold_fraction:Q", title="cold-start fraction (log scale)").scale(type="log")
    base = _chart(drawn, title)
    line = base.transform_filter(alt.datum.policy == "fixed").mark_line(color="gray").encode(
        x, y, alt.Order("keep_alive_s:Q"))
    points = base.mark_point(filled=True, size=70).encode(
        x, y, alt.Color("policy:N"), alt.Shape("policy:N"),
        tooltip=["label", "keep_alive_s", "cold_fraction", "wasted_gb_s"])
    # labels of neighbouring policies alternate above and below their points, so that close
    # points (fixed 2 h, fixed 4 h) do not print over each other
    above, below = (base.transform_filter(f"datum._i % 2 == {k}").mark_text(
        align="left", dx=6, dy=dy, fontSize=10).encode(x, y, text="_short:N")
        for k, dy in ((0, -9), (1, 12)))
    return line + points + above + below


def _top_tenants(frame: pl.DataFrame, by: str, value: str) -> pl.DataFrame:
    top = frame.group_by(by).agg(pl.col(value).max()).sort(value, descending=True).head(
        TOP_TENANTS)[by]
    return frame.filter(pl.col(by).is_in(top.implode()))


def service_over_time(service: pl.DataFrame, by: str = "tenant") -> alt.Chart:
    """Accumulated service per tenant over time
    (:class:`servetrace.analysis.fairness.SimResult.service`)."""
    data = _top_tenants(service, by, "service")
    times = data["time_s"].unique().sort()
    if len(times) > MAX_POINTS:
        keep = times.gather(np.linspace(0, len(times) - 1, MAX_POINTS).astype(np.int64))
        data = data.filter(pl.col("time_s").is_in(keep.implode()))
    return _chart(data, f"Service received, top {TOP_TENANTS} {by}s").mark_line().encode(
        alt.X("time_s:Q", title="time (s)"), alt.Y("service:Q", title="service (weighted tokens)"),
        alt.Color(f"{by}:N"))


def lorenz(tenant_service: pl.DataFrame, value: str = "service") -> alt.Chart:
    """Lorenz curve of per-tenant service (:func:`servetrace.analysis.fairness.tenant_service`)."""
    v = np.sort(tenant_service[value].drop_nulls().to_numpy().astype(np.float64))
    n = len(v)
    if n == 0:
        raise ValueError(f"no {value} values to plot")
    idx = np.unique(np.linspace(0, n, min(n + 1, MAX_POINTS)).astype(np.int64))
    cum = np.concatenate([[0.0], np.cumsum(v)])[idx] / max(v.sum(), 1e-300)
    data = pl.DataFrame({"tenants": idx / n, "share": cum})
    curve = _chart(data, f"Lorenz curve of {value}").mark_line().encode(
        alt.X("tenants:Q", title="fraction of tenants (smallest first)"),
        alt.Y("share:Q", title=f"fraction of {value}"))
    equal = alt.Chart(pl.DataFrame({"tenants": [0.0, 1.0], "share": [0.0, 1.0]})).mark_line(
        strokeDash=[4, 4], color="gray").encode(x="tenants:Q", y="share:Q")
    return curve + equal


def tenant_latency(frame: pl.DataFrame, by: str = "tenant") -> alt.Chart:
    """Mean and p99 latency per tenant and scheduler
    (:func:`servetrace.analysis.fairness.tenant_latency`)."""
    color = {"color": alt.Color("scheduler:N")} if "scheduler" in frame.columns else {}
    data = _top_tenants(frame, by, "n")
    return _chart(data, "Latency per tenant").mark_point(filled=True).encode(
        alt.X(f"{by}:N", title=by, sort="-y"),
        alt.Y("latency_p99_s:Q", title="p99 end-to-end latency (s)").scale(type="log"),
        tooltip=[by, "n", "latency_mean_s", "latency_p99_s", "ttft_mean_s"], **color)


def file_name(chart: alt.TopLevelMixin, suffix: str = ".png") -> str:
    """A file name saying what the chart shows: the first ten words of its title in lower
    case, joined by ``_`` ("Arrival rate" → ``arrival_rate.png``)."""
    spec = chart.to_dict()
    title = spec.get("title") or next((layer.get("title") for layer in spec.get("layer", [])
                                        if layer.get("title")), None) or "chart"
    text = title.get("text", "chart") if isinstance(title, dict) else str(title)
    words = re.findall(r"[a-z0-9]+", text.lower())[:10]
    return "_".join(words or ["chart"]) + suffix


def to_svg(chart: alt.TopLevelMixin) -> str:
    """The chart as an SVG document (rendered offline by vl-convert)."""
    import vl_convert

    return vl_convert.vegalite_to_svg(chart.to_dict())


def save_png(chart: alt.TopLevelMixin, path: str | Path, scale: float = 2.0) -> Path:
    """Write the chart as a PNG (vl-convert, no browser); returns the path."""
    import vl_convert

    path = Path(path)
    path.write_bytes(vl_convert.vegalite_to_png(chart.to_dict(), scale=scale))
    return path


TOP_SESSIONS = 8
MIN_TURN_REQUESTS = 5  # later turns of a handful of sessions are noise on a per-turn chart


def turn_times(stats: pl.DataFrame, statistic: str = "p50") -> alt.Chart:
    """Think, server and tool time per turn index, one line per metric (log y).

    ``stats``: :func:`servetrace.analysis.sessions.turn_stats` (turn, metric, n, ``statistic``);
    turns with fewer than :data:`MIN_TURN_REQUESTS` values and non-positive values are left
    out."""
    data = stats.filter(pl.col("metric").is_in(["think_s", "server_s", "tool_s"])
                        & (pl.col("n") >= MIN_TURN_REQUESTS) & pl.col("turn").is_not_null()
                        & (pl.col(statistic) > 0))
    if data.is_empty():
        raise ValueError("turn_times: no think, server or tool time in the turn stats")
    return _chart(data, f"Think, server and tool time by turn ({statistic}; turns with ≥ "
                  f"{MIN_TURN_REQUESTS} requests)").mark_line(
        point=True).encode(
        alt.X("turn:Q", title="turn index"),
        alt.Y(f"{statistic}:Q", title=f"time per request, {statistic} (s)").scale(type="log"),
        alt.Color("metric:N", title=None), tooltip=["turn", "metric", "n", "mean", statistic])


def growth_by_turn(stats: pl.DataFrame) -> alt.Chart:
    """Context growth per turn index: median and mean ``growth_tokens`` (symmetric log y, as
    compaction makes growth negative), turns with at least :data:`MIN_TURN_REQUESTS` values.
    ``stats``: :func:`servetrace.analysis.sessions.turn_stats` rows of metric
    ``growth_tokens``."""
    rows = stats.filter((pl.col("metric") == "growth_tokens")
                        & (pl.col("n") >= MIN_TURN_REQUESTS) & pl.col("turn").is_not_null())
    if rows.is_empty():
        raise ValueError("growth_by_turn: no request has a previous request to grow from")
    data = pl.concat([rows.select("turn", "n", pl.col(s).alias("tokens"),
                                  pl.lit(s).alias("statistic")) for s in ("p50", "mean")])
    return _chart(data, "Context growth per turn (new tokens since the previous request; "
                  f"turns with ≥ {MIN_TURN_REQUESTS} requests)"
                  ).mark_line(point=True).encode(
        alt.X("turn:Q", title="turn index"),
        alt.Y("tokens:Q", title="growth (tokens, symlog)").scale(type="symlog"),
        alt.Color("statistic:N", title=None), tooltip=["turn", "statistic", "tokens", "n"])


def context_by_turn(growth: pl.DataFrame, top: int = TOP_SESSIONS) -> alt.Chart:
    """Prompt (context) size per turn of the ``top`` sessions with the most main-agent turns.

    ``growth``: :func:`servetrace.analysis.sessions.context_growth` rows (session, turn,
    input_tokens; ``subagent`` where present: sub-agent requests are left out, they start
    contexts of their own)."""
    data = growth.filter(pl.col("session").is_not_null() & pl.col("turn").is_not_null())
    if "subagent" in data.columns:
        data = data.filter(pl.col("subagent").is_null())
    if data.is_empty():
        raise ValueError("context_by_turn: no session has turns")
    keep = (data.group_by("session").agg(pl.len()).sort(["len", "session"], descending=[True,
                                                                                     False])
            .head(top)["session"])
    data = data.filter(pl.col("session").is_in(keep.implode())).select(
        "session", "turn", "input_tokens")
    return _chart(data, f"Context size by turn, {len(keep)} longest sessions").mark_line().encode(
        alt.X("turn:Q", title="turn index"),
        alt.Y("input_tokens:Q", title="prompt size (input tokens)"),
        alt.Color("session:N"), tooltip=["session", "turn", "input_tokens"])


def lru_curve(curve: pl.DataFrame, infinite: float | None = None) -> alt.Chart:
    """LRU prefix-cache hit ratio against capacity (log x), token- and block-weighted, with
    the infinite cache's token hit ratio as a dashed line.

    ``curve``: :func:`servetrace.analysis.kvcache.lru_curve` (capacity_tokens,
    block_hit_ratio, token_hit_ratio)."""
    data = curve.filter(pl.col("capacity_tokens") > 0).unpivot(
        ["token_hit_ratio", "block_hit_ratio"], index=["capacity_tokens", "capacity_blocks"],
        variable_name="ratio", value_name="hit_ratio")
    lines = _chart(data, "LRU prefix cache: hit ratio by capacity").mark_line(point=True).encode(
        alt.X("capacity_tokens:Q", title="cache capacity (tokens, log scale)").scale(type="log"),
        alt.Y("hit_ratio:Q", title="hit ratio (cached share of input)").scale(domain=[0, 1]),
        alt.Color("ratio:N", title=None), alt.StrokeDash("ratio:N", title=None),
        tooltip=["capacity_tokens", "capacity_blocks", "ratio", "hit_ratio"])
    if infinite is None:
        return lines
    rule = alt.Chart(pl.DataFrame({"hit_ratio": [infinite]})).mark_rule(
        strokeDash=[4, 4], color="gray").encode(y="hit_ratio:Q")
    return lines + rule


def hit_by_turn(frame: pl.DataFrame) -> alt.Chart:
    """Prefix-cache token hit ratio per turn index, turns with at least
    :data:`MIN_TURN_REQUESTS` requests.

    ``frame``: :func:`servetrace.analysis.kvcache.reuse_by` per ``turn``."""
    data = frame.filter(pl.col("turn").is_not_null() & pl.col("token_hit_ratio").is_not_null()
                        & (pl.col("requests") >= MIN_TURN_REQUESTS))
    if data.is_empty():
        raise ValueError("hit_by_turn: no turn with input tokens")
    return _chart(data, f"Prefix-cache hit ratio by turn (turns with ≥ {MIN_TURN_REQUESTS} "
                  "requests)").mark_line(point=True).encode(
        alt.X("turn:Q", title="turn index"),
        alt.Y("token_hit_ratio:Q", title="token hit ratio (cached / input tokens)"
              ).scale(domain=[0, 1]),
        tooltip=["turn", "requests", "input_tokens", "token_hit_ratio", "block_hit_ratio"])


def session_hit_ratios(frame: pl.DataFrame) -> alt.Chart:
    """Per-session token hit ratio against the session's input tokens (log x), one point per
    session. ``frame``: :func:`servetrace.analysis.kvcache.reuse_by` per ``session``."""
    data = frame.filter(pl.col("session").is_not_null() & (pl.col("input_tokens") > 0)).select(
        "session", "requests", "input_tokens", "token_hit_ratio")
    if data.is_empty():
        raise ValueError("session_hit_ratios: no session with input tokens")
    if data.height > MAX_POINTS:
        data = data.sort("input_tokens").gather_every(int(np.ceil(data.height / MAX_POINTS)))
    return _chart(data, "Prefix-cache hit ratio per session").mark_point(filled=True).encode(
        alt.X("input_tokens:Q", title="session input (tokens, log scale)").scale(type="log"),
        alt.Y("token_hit_ratio:Q", title="token hit ratio (cached / input tokens)"
              ).scale(domain=[0, 1]),
        tooltip=["session", "requests", "input_tokens", "token_hit_ratio"])
