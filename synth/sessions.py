"""Sessions of the workload model: turns per session and think times fitted from the trace,
and sessions expanded into requests when sampling (see :mod:`servetrace.synth.model`).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from servetrace.synth.arrivals import (
    _normal_scores,
)
from servetrace.synth.lengths import (
    _lengths,
)
from servetrace.synth.parameters import (
    Sessions,
    Table,
)


def _fit_sessions(frame: pl.DataFrame) -> tuple[Sessions, np.ndarray]:
    """Turns per session, think times, lengths per turn index and the within-session
    correlation of input normal scores (requests without a session are sessions of one);
    also the session start times (first request of each session)."""
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
    return Sessions(turns, think_t, by_turn, rho, warm), starts


