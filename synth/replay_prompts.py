"""The prompts of a replay (:mod:`servetrace.synth.replay`) and the trace's own prefix-cache
hit ratios beside which the achieved one is reported.

Prompts are block prompts (:func:`servetrace.synth.prompts.block_prompts`) where the plan
carries ``hash_ids`` and the block size is known (requests whose ids share a prefix share that
prefix's text), else independent prompts of ``input_tokens`` words; a tokenizer, when given,
makes their lengths exact. A long trace's block prompts are built a chunk of rows at a time
(:class:`ChunkedPrompts`), so they never sit in memory together.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from servetrace.synth.prompts import block_prompts, exact_block_prompts, fit_words
from servetrace.synth.prompts import prompts as make_prompts

__all__ = ["ChunkedPrompts", "exact_prompts", "prompts", "sent_order_ratio",
           "trace_hit_ratios"]


def exact_prompts(n_tokens: np.ndarray, seed: int,
                   count: Callable[[str], int]) -> tuple[list[str], np.ndarray]:
    """Prompts whose ``count`` is ``n_tokens`` (or the largest not above it), by adjusting
    word counts of :mod:`servetrace.synth.prompts` text; returns the texts and their counts."""
    long = make_prompts(2 * n_tokens + 8, seed)
    texts, counts = [], np.zeros(n_tokens.size, dtype=np.int64)
    for i, n in enumerate(n_tokens.tolist()):  # one tokenizer call per try: not vectorizable
        text, counts[i] = fit_words(long[i].split(" "), n, count)
        texts.append(text)
    return texts, counts



def prompts(plan: pl.DataFrame, seed: int, tokenizer: Callable[[str], int] | None,
             block_tokens: int | None, hash_scope: str) -> tuple[Any, np.ndarray | None, bool]:
    """``(texts, token counts or None, prefix sharing?)`` of the plan's requests: block
    prompts (:func:`~servetrace.synth.prompts.block_prompts`) where the plan carries
    ``hash_ids`` and ``block_tokens`` is known, else independent prompts."""
    n_in = plan["input_tokens"].to_numpy()
    shared = (block_tokens is not None and "hash_ids" in plan.columns
              and plan["hash_ids"].null_count() < plan.height)
    if not shared:
        if tokenizer is not None:
            return (*exact_prompts(n_in, seed, tokenizer), False)
        return make_prompts(n_in, seed), None, False
    if hash_scope not in ("global", "session"):
        raise ValueError(f"hash_scope must be 'global' or 'session', not {hash_scope!r}")
    assert block_tokens is not None
    ids = plan["hash_ids"]
    session = plan["session"] if hash_scope == "session" else None
    if tokenizer is not None:
        return (*exact_block_prompts(ids, n_in, block_tokens, tokenizer, seed,
                                     session=session), True)
    return ChunkedPrompts(ids, n_in, block_tokens, seed, session), None, True


class ChunkedPrompts:
    """Block prompts built ``words_per_chunk`` words of consecutive rows at a time, when a
    row of the chunk is first asked for, the last few chunks kept: a long session trace's
    prompts (hundreds of millions of words) never sit in memory together. Row ``i`` is the
    row :func:`~servetrace.synth.prompts.block_prompts` gives for the whole trace."""

    def __init__(self, ids: pl.Series, n: np.ndarray, block_tokens: int, seed: int,
                 session: pl.Series | None, words_per_chunk: int = 8_000_000, keep: int = 4):
        self.ids, self.n, self.block_tokens, self.seed = ids, n, block_tokens, seed
        self.session = session
        ends = np.cumsum(n)
        cuts = np.searchsorted(ends, np.arange(words_per_chunk, int(ends[-1]) if n.size else 0,
                                               words_per_chunk), side="right")
        self.bounds = np.unique(np.concatenate([[0], cuts, [n.size]])).astype(np.int64)
        self.keep = keep
        self.chunks: OrderedDict[int, pl.Series] = OrderedDict()

    def __len__(self) -> int:
        return int(self.n.size)

    def __getitem__(self, i: int) -> str:
        c = int(np.searchsorted(self.bounds, i, side="right")) - 1
        chunk = self.chunks.get(c)
        if chunk is None:
            lo, hi = int(self.bounds[c]), int(self.bounds[c + 1])
            chunk = block_prompts(
                self.ids.slice(lo, hi - lo), self.n[lo:hi], self.block_tokens, self.seed,
                session=None if self.session is None else self.session.slice(lo, hi - lo),
                first_row=lo)
            self.chunks[c] = chunk
            while len(self.chunks) > self.keep:
                self.chunks.popitem(last=False)
        else:
            self.chunks.move_to_end(c)
        return chunk[i - int(self.bounds[c])]


def trace_hit_ratios(plan: pl.DataFrame, block_tokens: int, scope: str,
                      cache_tokens: int | None) -> dict[str, Any]:
    """The trace's own token hit ratios (:mod:`servetrace.analysis.kvcache`): infinite
    cache, and LRU at ``cache_tokens`` when given, in the schedule's order."""
    from servetrace.analysis import kvcache

    frame = plan.select("hash_ids", "input_tokens", "session", "scheduled_s")
    ratios = kvcache.hit_ratios(frame, block_tokens=block_tokens, scope=scope)  # type: ignore[arg-type]
    out: dict[str, Any] = {"block_tokens": block_tokens, "scope": scope,
                           "cache_tokens": cache_tokens,
                           "trace_hit_ratio": ratios.token_hit_ratio, "trace_lru_hit_ratio": None}
    if cache_tokens is not None:
        curve = kvcache.lru_curve(frame, [cache_tokens], block_tokens=block_tokens,
                                  scope=scope)  # type: ignore[arg-type]
        out["trace_lru_hit_ratio"] = float(curve["token_hit_ratio"][0])
    return out


def sent_order_ratio(plan: pl.DataFrame, records: pl.DataFrame, block_tokens: int,
                      scope: str, cache_tokens: int) -> float:
    """The trace's LRU token hit ratio at ``cache_tokens`` over the requests that finished,
    in the order they were sent: what a server whose prefix cache is that LRU reports
    (:mod:`servetrace.analysis.kvcache`), however closed loop and concurrency reordered
    them (up to requests sent within the same instant that the server takes the other way
    round)."""
    from servetrace.analysis import kvcache

    sent = (plan.select("index", "hash_ids", "input_tokens", "session")
            .join(records.select("index", pl.col("sent_s").alias("arrival_s")), on="index")
            .sort("arrival_s", "index"))
    curve = kvcache.lru_curve(sent, [cache_tokens], block_tokens=block_tokens,
                              scope=scope)  # type: ignore[arg-type]
    return float(curve["token_hit_ratio"][0])
