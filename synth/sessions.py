"""Sessions of the workload model: turns per session, think and server times and request
types by turn class fitted from the trace, and sessions expanded into requests when sampling
(see :mod:`servetrace.synth.model`; sub-agents in :mod:`~servetrace.synth.subagents`).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from servetrace.synth.arrivals import (
    _normal_scores,
    _tick,
    _times,
)
from servetrace.synth.lengths import (
    _lengths,
)
from servetrace.synth.parameters import (
    Arrivals,
    Piecewise,
    Sessions,
    Table,
)
from servetrace.synth.prefixes import (
    _classes,
)

MAX_TYPES = 16
"""Request types kept in a session model's mix (most frequent first)."""


def _filled(frame: pl.DataFrame, column: str) -> bool:
    return column in frame.columns and frame[column].null_count() < frame.height


def _fit_sessions(frame: pl.DataFrame) -> tuple[Sessions, np.ndarray]:
    """Turns per session, think times, lengths per turn index and the within-session
    correlation of input normal scores (requests without a session are sessions of one);
    also the session start times (first request of each session). Sub-agents' requests
    (``subagent`` filled) are not turns of their session: :func:`_fit_subagents` models
    them. Where the trace has ``think_s`` (and ``server_s``), think (and server) times by
    turn class; where it has ``request_type``, the type mix by turn class."""
    if _filled(frame, "subagent"):
        frame = frame.filter(pl.col("subagent").is_null())
    s = (frame.with_row_index("_i")
         .with_columns(pl.coalesce(pl.col("session"),
                                   pl.format("_row{}", pl.col("_i"))).alias("_s"))
         .sort("arrival_s", maintain_order=True)
         .with_columns(pl.int_range(pl.len()).over("_s").alias("_turn"),
                       pl.col("arrival_s").diff().over("_s").alias("_think")))
    per = s.group_by("_s").agg(pl.len().alias("n"), pl.col("arrival_s").min().alias("t0"),
                               (pl.col("arrival_s").max() - pl.col("arrival_s").min())
                               .alias("dur"))
    starts = np.sort(per["t0"].to_numpy())
    turns = Table.of(per["n"].to_numpy(), integer=True)
    think = s["_think"].drop_nulls().to_numpy()
    think = think[think > 0]
    think_t = Table.of(think, log=True) if len(think) >= 2 else Table((60.0, 60.0), log=True)
    # lengths per turn index; classes 1..C, the last pooling turns ≥ C, each ≥ 50 requests
    turn = s["_turn"].to_numpy()
    c_max = 1
    for c in range(2, 9):
        if (turn >= c - 1).sum() >= 50:
            c_max = c
    cls = np.minimum(turn, c_max - 1)
    inp, out = s["input_tokens"].to_numpy(), s["output_tokens"].to_numpy()
    by_turn = tuple(_lengths(inp[cls == c], out[cls == c]) for c in range(c_max))
    # within-session correlation of input normal scores between consecutive turns
    z = np.zeros(len(inp))
    for c in range(c_max):  # ≤ 8 classes
        sel = cls == c
        if sel.sum() > 1:
            z[sel] = _normal_scores(inp[sel])
    prev = (s.select(pl.Series("_z", z), "_s").with_columns(
        pl.col("_z").shift(1).over("_s").alias("_p")).drop_nulls())
    rho = float(np.corrcoef(prev["_z"], prev["_p"])[0, 1]) if prev.height > 2 else 0.0
    rho = min(max(rho if math.isfinite(rho) else 0.0, 0.0), 0.99)
    warm = float(per["dur"].quantile(0.95) or 0.0)
    think_by, server_by = _times_by_turn(s, turn)
    types, mix = _type_mix(s, turn)
    return Sessions(turns, think_t, by_turn, rho, warm, think_by, server_by, types, mix), starts


def _times_by_turn(s: pl.DataFrame, turn: np.ndarray
                   ) -> tuple[tuple[Table, ...], tuple[Table, ...]]:
    """Think time before each later turn and server time of the turn before it, per turn
    class 2, 3, … (the last pooled, each ≥ 50 turns); empty without ``think_s``. A missing
    value (the source's gaps) is left out of its table."""
    if not _filled(s, "think_s") or (turn > 0).sum() < 2:
        return (), ()
    k = _classes(turn, 1)
    cls = np.minimum(turn, k) - 1
    think = s["think_s"].to_numpy().astype(np.float64)
    server = (s.select(pl.col("server_s").shift(1).over("_s"))["server_s"].to_numpy()
              .astype(np.float64) if _filled(s, "server_s") else None)

    def table(x: np.ndarray) -> Table:
        x = x[np.isfinite(x)]
        return Table.of(np.maximum(x, 0.0)) if len(x) >= 2 else Table((0.0, 0.0))

    think_by = tuple(table(think[(turn > 0) & (cls == j)]) for j in range(k))
    server_by = (tuple(table(server[(turn > 0) & (cls == j)]) for j in range(k))
                 if server is not None else ())
    return think_by, server_by


def _type_mix(s: pl.DataFrame, turn: np.ndarray
              ) -> tuple[tuple[str, ...], tuple[tuple[float, ...], ...]]:
    """The :data:`MAX_TYPES` most frequent request types and their mix per turn class 1, 2,
    … (the last pooled, each ≥ 50 turns); a class's mix is over the kept types."""
    if not _filled(s, "request_type"):
        return (), ()
    rt = s["request_type"]
    top = (rt.drop_nulls().value_counts(sort=True).sort(["count", "request_type"],
                                                         descending=[True, False])
           .head(MAX_TYPES)["request_type"].to_list())
    code = rt.replace_strict(top, list(range(len(top))), default=-1,
                             return_dtype=pl.Int64).to_numpy()
    k = _classes(turn, 0)
    cls = np.minimum(turn, k - 1)
    mix = []
    for j in range(k):  # ≤ 8 turn classes
        counts = np.bincount(code[(cls == j) & (code >= 0)], minlength=len(top))
        total = counts.sum()
        mix.append(tuple(float(v) for v in (counts / total if total else
                                            np.full(len(top), 1 / len(top)))))
    return tuple(top), tuple(mix)


def _request_types(sessions: Sessions, turn: np.ndarray, rng: np.random.Generator
                   ) -> np.ndarray | None:
    """A request type index (into ``sessions.types``) per request from its turn class's
    mix; ``None`` where the model has no types."""
    if not sessions.types:
        return None
    k = len(sessions.type_mix)
    cls = np.minimum(turn, k - 1)
    u = rng.random(len(turn))
    out = np.zeros(len(turn), np.int64)
    for j, w in enumerate(sessions.type_mix):  # ≤ 8 turn classes
        sel = cls == j
        cdf = np.cumsum(w)
        out[sel] = np.minimum(np.searchsorted(cdf / cdf[-1], u[sel], side="right"),
                              len(w) - 1)
    return out


def _turn_gaps(sessions: Sessions, turn: np.ndarray, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per request (``turn`` 0 = first): the gap to the previous turn of its session, the
    client's think time and the server's time on the previous turn. Format 3 (tables by turn
    class): gap = server + think, each from its class's table; otherwise the gap is the
    think time (``think_s`` table: the trace's gaps) and the server time 0."""
    n = len(turn)
    later = turn > 0
    if not sessions.think_by_turn:
        think = np.where(later, sessions.think_s.ppf(rng.random(n)), 0.0)
        return think, think, np.zeros(n)
    think = np.zeros(n)
    server = np.zeros(n)
    k = len(sessions.think_by_turn)
    cls = np.minimum(turn, k) - 1
    for j in range(k):  # ≤ 8 turn classes
        sel = later & (cls == j)
        m = int(sel.sum())
        think[sel] = np.maximum(sessions.think_by_turn[j].ppf(rng.random(m)), 0.0)
        if sessions.server_by_turn:
            server[sel] = np.maximum(sessions.server_by_turn[j].ppf(rng.random(m)), 0.0)
    return think + server, think, server


def _expand_detail(sessions: Sessions, starts: np.ndarray, duration: float, tick: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """:func:`_expand_sessions` with the think and server times of each request."""
    k = np.maximum(sessions.turns.ppf(rng.random(len(starts))).astype(np.int64), 1)
    sess = np.repeat(np.arange(len(starts)), k)
    first = np.concatenate([[0], np.cumsum(k)[:-1]]).astype(np.int64)
    turn = np.arange(len(sess)) - first[sess]
    gap, think, server = _turn_gaps(sessions, turn, rng)
    cs = np.cumsum(gap)
    t = starts[sess] + cs - cs[first][sess] if len(sess) else np.zeros(0)
    if tick > 0:
        t = np.floor(t / tick) * tick
    keep = t < duration
    t, sess, turn, think, server = t[keep], sess[keep], turn[keep], think[keep], server[keep]
    order = np.argsort(t, kind="stable")
    return t[order], sess[order], turn[order], think[order], server[order]


def _expand_sessions(sessions: Sessions, starts: np.ndarray, duration: float, tick: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Requests of sessions starting at ``starts``: turns per session and the gaps between
    them (:func:`_turn_gaps`); turns past ``duration`` are cut. Returns times (sorted),
    session index and turn index (0 = first)."""
    t, sess, turn, _, _ = _expand_detail(sessions, starts, duration, tick, rng)
    return t, sess, turn


def _session_requests(a: Arrivals | Piecewise, sessions: Sessions, duration: float,
                      rate_scale: float, rng_t: np.random.Generator,
                      rng_s: np.random.Generator, *, detail: bool = False) -> tuple:
    """Requests of sessions starting in [−warm-up, duration): times, session, turn, and the
    number of sessions drawn (with ``detail``, also each request's think and server times).
    The warm-up (:attr:`Sessions.warmup_s`) fills the sample's
    start with sessions already under way, as in a window cut from a real trace. Turns are
    counted as :func:`_fit_sessions` counts them in a trace: from a session's first request
    inside the window (a session under way at 0 starts at turn 0), so that each request
    draws its lengths from the class it would have been fitted in; counting from the
    session's true start instead gave the warm-up's sessions the later turns' longer
    prompts (BurstGPT sample: mean input 1.3× the trace's)."""
    if sessions.together:
        m = a.mean_rate * rate_scale * duration
        starts = np.zeros(int(m) + int(rng_t.random() < m - int(m)))
    else:
        warm = sessions.warmup_s
        starts = _times(a, duration + warm, rate_scale, rng_t) - warm
    t, sess, turn, think, server = _expand_detail(sessions, starts, duration, _tick(a), rng_s)
    keep = t >= 0
    t, sess, turn, think, server = t[keep], sess[keep], turn[keep], think[keep], server[keep]
    first = np.full(len(starts), np.iinfo(np.int64).max)
    np.minimum.at(first, sess, turn)
    if detail:
        return t, sess, turn - first[sess], len(starts), think, server
    return t, sess, turn - first[sess], len(starts)
