"""Session and prefix-reuse fidelity: how closely a synthetic trace keeps a real trace's
sessions and KV-cache reuse, next to a session-naive baseline (see :mod:`~servetrace.synth.
fidelity`, which calls this module for every trace with sessions or ``hash_ids``).

Figures of one trace (:func:`reference` for the real one; the same code for a candidate):

* **KV-cache hit-ratio curve**: the token hit ratio of an LRU prefix cache of capacity C
  (:func:`servetrace.analysis.kvcache.lru_curve`: prefix semantics, one pass of stack
  distances, Mattson et al. 1970) at the trace's block size and id scope, over a log grid of
  :data:`CURVE_POINTS` capacities from one block to the real trace's footprint (its distinct
  blocks, :func:`~servetrace.analysis.kvcache.footprint_blocks`, beyond which LRU equals the
  infinite cache). Errors: ``hit_curve_max_abs`` = max over the grid of |h_syn(C) − h_real(C)|
  and ``hit_curve_mean_abs`` = their mean.
* **Infinite-cache hit ratio per scope** (``hit_inf_global``, ``hit_inf_session``):
  :func:`~servetrace.analysis.kvcache.hit_ratios`' token hit ratio, absolute error. The trace's
  own scope always; ``session`` as well where a globally scoped trace has sessions (the share
  a session-private cache would keep). A session-scoped trace (WEKA's agentic traces: ids
  local to a conversation) has no meaningful global scope.
* **Turns per session** (``turns_*``): :func:`~servetrace.analysis.sessions.session_table`'s
  ``turns``; **think gap** (``think_gap_*``): the time between consecutive requests of one
  session and agent (the client's think and tool time plus the server's time on the previous
  request: what a synthetic trace's arrival times carry; a trace's own ``think_s`` column is
  not something a sampled trace can be scored on); **context growth** (``growth_*``):
  :func:`~servetrace.analysis.sessions.context_growth`'s ``growth_tokens``. Each compared as
  distributions: two-sample Kolmogorov–Smirnov statistic and Wasserstein-1 distance.
* **Sub-agent fan-out** where the real trace names sub-agents: ``subagents_wasserstein``
  (sub-agents per session, :func:`~servetrace.analysis.sessions.session_table`) and
  ``subagent_share`` (:func:`~servetrace.analysis.sessions.summary`, absolute error); a
  candidate that names none has none.

Conventions. Requests without a session are sessions of one (for turns, the session scope
and the split). A candidate without ``hash_ids`` has no prefix sharing: every request's
``⌈input / block⌉`` blocks are new (:func:`fresh_blocks`), which is what benchmarks
replaying independent prompts (ShareGPT-style) give a prefix cache: no block is accessed
twice, so its hit ratio is 0 at every capacity (taken as such, without a cache pass).
Session figures are scored only where the real trace has sessions, KV figures only where
it has ``hash_ids``; a candidate without the feature (no sessions: no think gaps) leaves
that error undefined.

Baselines: :func:`~servetrace.synth.fidelity.baseline`'s Poisson and gamma (independent
lengths, no sessions, fresh blocks) and :func:`session_naive`: whole real sessions
resampled with replacement, started at Poisson times at the real session rate, hash ids
re-keyed so that two copies share exactly the blocks distinct real sessions shared.

Held out (:func:`split_sessions`): conversations, not time, are split, by a seeded hash of
the session key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
from scipy import stats

from servetrace.analysis import kvcache
from servetrace.analysis import sessions as sess
from servetrace.loaders import schema
from servetrace.synth import prefixes

CURVE_POINTS = 16
"""Capacities of the hit-ratio grid (log spaced from one block to the real footprint)."""
MAX_SAMPLE = 200_000
KV_METRICS = ("hit_curve_max_abs", "hit_curve_mean_abs", "hit_inf_global", "hit_inf_session")
SESSION_METRICS = ("turns_ks", "turns_wasserstein", "think_gap_ks", "think_gap_wasserstein",
                   "growth_ks", "growth_wasserstein", "subagents_wasserstein", "subagent_share")
KINDS = {**{m: "kvcache" for m in KV_METRICS}, **{m: "sessions" for m in SESSION_METRICS}}

Frame = pl.DataFrame | pl.LazyFrame
_KEY = "_session_key"


# --------------------------------------------------------------------------- what a trace has


def has_sessions(requests: pl.DataFrame) -> bool:
    """Some session holds more than one request."""
    if "session" not in requests.columns or requests["session"].null_count() == requests.height:
        return False
    return bool(requests["session"].drop_nulls().is_duplicated().any())


def has_hashes(requests: pl.DataFrame) -> bool:
    """Some request has at least one hash block."""
    return "hash_ids" in requests.columns and \
        int(requests["hash_ids"].list.len().fill_null(0).sum()) > 0


def applies(requests: pl.DataFrame) -> bool:
    """Whether a trace is scored on session figures: it has sessions or hash ids."""
    return has_sessions(requests) or has_hashes(requests)


def block_size(requests: pl.DataFrame) -> int:
    """The power of two nearest (in log) to Σ input tokens / Σ blocks: an estimate of the
    tokens per hash block for a caller that does not pass the trace's recorded
    ``hash_block_tokens`` (Mooncake 512, exact; WEKA's agentic traces 64, where blocks do
    not always cover the input exactly). Raises when the trace has no blocks."""
    blocks = requests["hash_ids"].list.len().fill_null(0)
    n = int(blocks.sum())
    if n == 0:
        raise ValueError("block_size: the requests carry no hash ids")
    tokens = float(requests.filter(blocks > 0)["input_tokens"].sum())
    return int(2 ** round(math.log2(max(tokens / n, 1.0))))


def _with_keys(requests: pl.DataFrame) -> pl.DataFrame:
    """``requests`` with ``_session_key``: the session, or a key of its own for a request
    without one (a session of one)."""
    session = pl.col("session").cast(pl.String) if "session" in requests.columns \
        else pl.lit(None, pl.String)
    return requests.with_columns(pl.coalesce(
        session, pl.format("\x00r{}", pl.int_range(pl.len(), dtype=pl.Int64))).alias(_KEY))


def _conversation_keys(requests: pl.DataFrame) -> pl.DataFrame:
    """:func:`_with_keys`, except in a trace without sessions whose requests carry hash ids
    (Mooncake's conversation trace): there a request's conversation, read from its prefix
    chain as the model reads it (:func:`servetrace.synth.prefixes.conversations`), is the
    key, so that whole conversations are resampled or split, not single turns of one (whose
    shared history would then pass for a prompt shared across sessions)."""
    if has_sessions(requests) or not has_hashes(requests):
        return _with_keys(requests)
    conversation = prefixes.conversations(requests)
    return requests.with_columns(pl.coalesce(
        pl.format("\x00c{}", conversation),
        pl.format("\x00r{}", pl.int_range(pl.len(), dtype=pl.Int64))).alias(_KEY))


# --------------------------------------------------------------------------- candidates


def fresh_blocks(requests: pl.DataFrame, block_tokens: int) -> pl.DataFrame:
    """``requests`` with ``hash_ids`` replaced by ``⌈input_tokens / block_tokens⌉`` ids that
    no other request has: no prefix sharing at all."""
    if block_tokens < 1:
        raise ValueError(f"fresh_blocks: block_tokens must be positive, got {block_tokens}")
    n = requests["input_tokens"].fill_null(0).clip(lower_bound=0).to_numpy().astype(np.int64)
    lens = -(-n // block_tokens)
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    ids = pl.Series(np.arange(offsets[-1], dtype=np.int64))
    lists = pa.LargeListArray.from_arrays(pa.array(offsets), ids.to_arrow())
    col = pl.Series("hash_ids", lists).cast(pl.List(pl.Int64))
    return requests.with_columns(col)


def session_naive(real: pl.DataFrame, duration_s: float, seed: int, *,
                  scope: str = "global") -> pl.DataFrame:
    """Whole real sessions resampled at Poisson starts: the session-naive baseline.

    Sessions (conversations read from the prefix chains in a trace with hash ids and no
    sessions, :func:`_conversation_keys`; other requests are sessions of one) start at the
    times of a Poisson process of rate λ = sessions / span of ``real`` (first to last arrival) on
    ``[0, duration_s)``; each start copies one real session, drawn uniformly with
    replacement, with its requests at their offsets from the session's first request (cut
    at ``duration_s``) and every column kept (turns, sub-agents, lengths, think times).
    Copy ``c`` of session ``s`` is session ``"s#c"`` (null stays null) and request
    ``"c/id"``. Under ``scope="global"`` a hash id that more than one real session uses (a
    shared system or tool prompt) is kept, and an id private to one session is re-keyed
    per copy, so copies share only what distinct sessions shared; under ``scope="session"``
    the ids are keyed by the (new) session already."""
    if real.height < 2:
        raise ValueError("session_naive: the real trace needs at least two requests")
    if scope not in kvcache.SCOPES:
        raise ValueError(f"session_naive: scope must be 'global' or 'session', got {scope!r}")
    rng = np.random.default_rng(seed)
    keyed = _conversation_keys(real)
    first = pl.col("arrival_s").min().over(_KEY)
    keyed = keyed.with_columns((pl.col("arrival_s") - first).alias("_offset"),
                               pl.col(_KEY).rank("dense").cast(pl.Int64).sub(1).alias("_s"))
    n_sess = int(keyed["_s"].max()) + 1
    span = float(real["arrival_s"].max() - real["arrival_s"].min())
    rate = n_sess / max(span, 1e-9)
    k = int(rng.poisson(rate * duration_s))
    starts = np.sort(rng.uniform(0.0, duration_s, k))  # Poisson: k uniform order statistics
    picks = pl.DataFrame({"_copy": np.arange(k, dtype=np.int64), "_start": starts,
                          "_s": rng.integers(0, n_sess, k).astype(np.int64)})
    out = (picks.join(keyed.with_row_index("_row"), on="_s", how="inner")
           .with_columns((pl.col("_start") + pl.col("_offset")).alias("arrival_s"))
           .filter(pl.col("arrival_s") < duration_s)
           .sort("arrival_s", "_copy", "_row"))
    copy = pl.col("_copy").cast(pl.String)
    renames = [pl.lit("baseline/session_naive").alias("trace"),
               pl.format("{}#{}", pl.col("session"), copy).alias("session")
               if "session" in out.columns else pl.lit(None, pl.String).alias("session")]
    for c in ("request_id", "parent_request_id"):
        if c in out.columns:
            renames.append(pl.format("{}/{}", copy, pl.col(c)).alias(c))
    out = out.with_columns(renames)
    if scope == "global" and has_hashes(real):
        out = out.with_columns(_rekey(keyed, out))
    return schema.conform("requests", out)


def _rekey(keyed: pl.DataFrame, out: pl.DataFrame) -> pl.Series:
    """Hash ids of the resampled rows of ``out``: ids of several real sessions kept, ids
    private to one session moved to ``max + 1 + copy · private + rank``."""
    ex = keyed.select(_KEY, pl.col("hash_ids")).explode("hash_ids").drop_nulls()
    owners = ex.unique().group_by("hash_ids").len()
    private = owners.filter(pl.col("len") == 1).select("hash_ids").sort("hash_ids") \
        .with_row_index("_rank")
    top = int(ex["hash_ids"].max()) + 1 if ex.height else 0
    n_priv = private.height
    cells = (out.select("_copy", "hash_ids").with_row_index("_r").explode("hash_ids")
             .with_row_index("_pos")
             .join(private, on="hash_ids", how="left")
             .with_columns(pl.when(pl.col("_rank").is_null()).then(pl.col("hash_ids"))
                           .otherwise(top + pl.col("_copy") * n_priv
                                      + pl.col("_rank").cast(pl.Int64)).alias("hash_ids"))
             .sort("_pos"))
    # every row back, in order: a row whose list is empty may leave no cell after explode
    lists = (pl.DataFrame({"_r": pl.int_range(out.height, dtype=pl.UInt32, eager=True)})
             .join(cells.group_by("_r").agg(pl.col("hash_ids").drop_nulls()), on="_r",
                   how="left", maintain_order="left"))
    empty = out["hash_ids"].list.len().fill_null(0) == 0
    col = lists["hash_ids"]
    return pl.select(pl.when(out["hash_ids"].is_null()).then(None)
                     .when(empty).then(out["hash_ids"]).otherwise(col)).to_series() \
        .alias("hash_ids")


def split_sessions(requests: Frame, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Conversation-level split for held-out scoring: (fit half, score half).

    A session goes wholly to one half, by the parity of Polars' seeded 64-bit hash of its
    key (stable for one Polars version); in a trace without sessions whose requests carry
    hash ids, a conversation read from the prefix chains
    (:func:`servetrace.synth.prefixes.conversations`) does; any other request is a session
    of one, keyed by its ``request_id`` (else its row in arrival order). Times are kept: both
    halves cover the same period, each with about half of the sessions."""
    frame = requests.lazy().collect().sort("arrival_s", maintain_order=True)
    session = pl.col("session").cast(pl.String) if "session" in frame.columns \
        else pl.lit(None, pl.String)
    rid = pl.col("request_id").cast(pl.String) if "request_id" in frame.columns \
        else pl.lit(None, pl.String)
    conversation = (prefixes.conversations(frame) if not has_sessions(frame)
                    and has_hashes(frame) else pl.lit(None, pl.Int64))
    key = pl.coalesce(pl.format("s{}", session), pl.format("c{}", conversation),
                      pl.format("r{}", rid),
                      pl.format("i{}", pl.int_range(pl.len(), dtype=pl.Int64)))
    side = (key.hash(seed=seed) % 2).alias("_side")
    frame = frame.with_columns(side)
    return (frame.filter(pl.col("_side") == 0).drop("_side"),
            frame.filter(pl.col("_side") == 1).drop("_side"))


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Figures:
    """The session figures of one trace (None where the trace lacks the feature)."""

    curve: np.ndarray | None = None
    inf: dict[str, float] = field(default_factory=dict)
    turns: np.ndarray | None = None
    gaps: np.ndarray | None = None
    growth: np.ndarray | None = None
    subagents: np.ndarray | None = None
    subagent_share: float | None = None


@dataclass(frozen=True)
class Reference:
    """The real trace's figures and the settings its candidates are measured with."""

    block_tokens: int | None
    scope: str
    scopes: tuple[str, ...]
    capacities: tuple[int, ...]
    sessions: bool
    subagents: bool
    figures: Figures


def _nonempty(x: np.ndarray) -> np.ndarray | None:
    x = x[np.isfinite(x)]
    return x if len(x) else None


def _kv(frame: pl.DataFrame, ref_block: int, scope: str, scopes: tuple[str, ...],
        capacities: tuple[int, ...]) -> tuple[np.ndarray, dict[str, float]]:
    if not has_hashes(frame):  # every block new: no access repeats, no capacity hits
        return np.zeros(len(capacities)), dict.fromkeys(scopes, 0.0)
    frame = _with_keys(frame).with_columns(pl.col(_KEY).alias("session"))
    curve = kvcache.lru_curve(frame, list(capacities), block_tokens=ref_block, scope=scope)
    inf = {s: kvcache.hit_ratios(frame, block_tokens=ref_block, scope=s).token_hit_ratio
           for s in scopes}
    return curve["token_hit_ratio"].to_numpy(), inf


def _figures(frame: pl.DataFrame, *, block_tokens: int | None,
             scope: str, scopes: tuple[str, ...], capacities: tuple[int, ...],
             with_sessions: bool, with_subagents: bool) -> Figures:
    curve, inf = None, {}
    if block_tokens is not None:
        curve, inf = _kv(frame, block_tokens, scope, scopes, capacities)
    if not with_sessions:
        return Figures(curve, inf)
    table = sess.session_table(frame) if "session" in frame.columns and \
        frame["session"].null_count() < frame.height else None
    singles = frame["session"].null_count() if "session" in frame.columns else frame.height
    turns = np.concatenate([
        table["turns"].fill_null(1).to_numpy().astype(np.float64) if table is not None
        else np.zeros(0), np.ones(singles)])
    gaps = growth = None
    if table is not None:
        agent = [pl.col("session"), pl.col("subagent") if "subagent" in frame.columns
                 else pl.lit(None, pl.String)]
        gaps = _nonempty(frame.filter(pl.col("session").is_not_null())
                         .sort("arrival_s", maintain_order=True)
                         .select(pl.col("arrival_s").diff().over(agent)).to_series()
                         .drop_nulls().to_numpy().astype(np.float64))
        growth = _nonempty(sess.context_growth(frame)["growth_tokens"].drop_nulls()
                           .to_numpy().astype(np.float64))
    subagents, share = None, None
    if with_subagents:
        subagents = np.concatenate([
            table["subagents"].fill_null(0).to_numpy().astype(np.float64)
            if table is not None else np.zeros(0), np.zeros(singles)])
        share = sess.summary(frame)["subagent_share"][0]
        share = 0.0 if share is None else float(share)
    return Figures(curve, inf, turns, gaps, growth, subagents, share)


def reference(real: Frame, *, block_tokens: int | None = None, scope: str = "global",
              points: int = CURVE_POINTS) -> Reference:
    """The real trace's session figures (module docstring) and the capacity grid.

    ``block_tokens`` and ``scope`` are the trace's ``hash_block_tokens`` and ``hash_scope``
    (the ``traces`` table); without ``block_tokens``, :func:`block_size` estimates it."""
    frame = real.lazy().collect().sort("arrival_s", maintain_order=True)
    if scope not in kvcache.SCOPES:
        raise ValueError(f"session fidelity: scope must be 'global' or 'session', got "
                         f"{scope!r}")
    hashes, with_sessions = has_hashes(frame), has_sessions(frame)
    capacities: tuple[int, ...] = ()
    scopes: tuple[str, ...] = ()
    block = None
    if hashes:
        block = int(block_tokens) if block_tokens is not None else block_size(frame)
        if block < 1:
            raise ValueError(f"session fidelity: block_tokens must be positive, got {block}")
        scopes = (scope, "session") if scope == "global" and with_sessions else (scope,)
        keyed = _with_keys(frame).with_columns(pl.col(_KEY).alias("session"))
        foot = kvcache.footprint_blocks(keyed, scope=scope)
        grid = np.unique(np.geomspace(1, max(foot, 1), points).round().astype(np.int64))
        capacities = tuple(int(b) * block for b in grid)
    subagents = with_sessions and bool(
        sess.session_table(frame)["subagents"].is_not_null().any())
    figures = _figures(frame, block_tokens=block, scope=scope, scopes=scopes,
                       capacities=capacities, with_sessions=with_sessions,
                       with_subagents=subagents)
    return Reference(block, scope, scopes, capacities, with_sessions, subagents, figures)


def figures(ref: Reference, candidate: Frame) -> Figures:
    """A candidate's figures, measured as :func:`reference` measured the real trace's."""
    frame = candidate.lazy().collect().sort("arrival_s", maintain_order=True)
    return _figures(frame, block_tokens=ref.block_tokens, scope=ref.scope,
                    scopes=ref.scopes, capacities=ref.capacities,
                    with_sessions=ref.sessions, with_subagents=ref.subagents)


# --------------------------------------------------------------------------- errors


def _sample(x: np.ndarray, seed: int) -> np.ndarray:
    if len(x) <= MAX_SAMPLE:
        return x
    return np.random.default_rng(seed).choice(x, MAX_SAMPLE, replace=False)


def _distances(name: str, a: np.ndarray | None, b: np.ndarray | None, seed: int
               ) -> dict[str, float | None]:
    if a is None or b is None or len(a) < 2 or len(b) < 2:
        return {f"{name}_ks": None, f"{name}_wasserstein": None}
    from servetrace.synth.fidelity import wasserstein  # that module imports this one

    a, b = _sample(a, seed), _sample(b, seed + 1)
    return {f"{name}_ks": float(stats.ks_2samp(a, b, method="asymp").statistic),
            f"{name}_wasserstein": wasserstein(a, b)}


def errors(ref: Reference, candidate: Frame, seed: int = 0) -> dict[str, float | None]:
    """The session errors of one candidate against :func:`reference` (lower is better;
    metrics that do not apply to the real trace are absent, undefined ones None)."""
    r, c = ref.figures, figures(ref, candidate)
    out: dict[str, float | None] = {}
    if ref.block_tokens is not None:
        diff = np.abs(c.curve - r.curve)
        out["hit_curve_max_abs"] = float(diff.max())
        out["hit_curve_mean_abs"] = float(diff.mean())
        for s in ref.scopes:
            a, b = c.inf.get(s), r.inf.get(s)
            out[f"hit_inf_{s}"] = abs(a - b) if a is not None and b is not None and \
                np.isfinite(a) and np.isfinite(b) else None
    if ref.sessions:
        out |= _distances("turns", r.turns, c.turns, seed)
        out |= _distances("think_gap", r.gaps, c.gaps, seed)
        if r.growth is not None:
            out |= _distances("growth", r.growth, c.growth, seed)
    if ref.subagents:
        d = _distances("subagents", r.subagents, c.subagents, seed)
        out["subagents_wasserstein"] = d["subagents_wasserstein"]
        out["subagent_share"] = abs(c.subagent_share - r.subagent_share) \
            if c.subagent_share is not None and r.subagent_share is not None else None
    return out


def real_values(ref: Reference) -> dict[str, float]:
    """The real trace's own value of the metrics that have one (the ``real`` column)."""
    out = {f"hit_inf_{s}": v for s, v in ref.figures.inf.items()}
    if ref.figures.subagent_share is not None:
        out["subagent_share"] = ref.figures.subagent_share
    return out
