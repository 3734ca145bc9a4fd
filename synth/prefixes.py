"""Prefix sharing of the workload model: a common root prefix and conversation chains of
hash-id blocks, fitted from ``hash_ids`` and sampled consistent with the input lengths (see
:mod:`servetrace.synth.model`).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from servetrace.synth.lengths import (
    _lengths,
)
from servetrace.synth.parameters import (
    BLOCK_TOKENS,
    Prefix,
    Table,
)


def _fit_prefix(frame: pl.DataFrame, block_tokens: int = BLOCK_TOKENS) -> Prefix | None:
    h = frame.select(pl.col("hash_ids")).with_row_index("_i").filter(
        pl.col("hash_ids").list.len() > 0)
    if h.height < 10:
        return None
    # root blocks: leading blocks shared by the most common first block's requests
    first = h["hash_ids"].list.first()
    top = first.value_counts(sort=True).row(0)
    root_share = top[1] / h.height
    with_root = h.filter(first == top[0])
    # common leading length among root requests: positions where one id covers ≥ 90 %
    root_blocks = 0
    for pos in range(16):  # ≤ 16 leading positions
        col = with_root["hash_ids"].list.get(pos, null_on_oob=True)
        vc = col.drop_nulls().value_counts(sort=True)
        if vc.height == 0 or vc.row(0)[1] < 0.9 * with_root.height:
            break
        root_blocks += 1
    if root_share < 0.5 or root_blocks == 0:
        root_blocks, root_share = 0, 0.0
    chain = h.select("_i", pl.col("hash_ids").list.get(root_blocks, null_on_oob=True)
                     .alias("_c")).filter(pl.col("_c").is_not_null())
    if chain.height < 2:
        return Prefix(block_tokens, root_blocks, root_share, Table((1.0, 1.0), integer=True),
                      1.0)
    sizes = chain.group_by("_c").len()["len"].to_numpy()
    gaps = (chain.sort("_i").with_columns(pl.col("_i").diff().over("_c").alias("_g"))
            ["_g"].drop_nulls().to_numpy())
    gap = float(gaps.mean()) if len(gaps) else 1.0
    # lengths by position within the chain (classes of ≥ 50 requests, at most 8)
    lengths = frame.select("input_tokens", "output_tokens").with_row_index("_i")
    position = (chain.sort("_i").with_columns(pl.int_range(pl.len()).over("_c").alias("_p"))
                .select("_i", "_p"))
    lengths = lengths.join(position, on="_i", how="left").with_columns(
        pl.col("_p").fill_null(0))
    pos = lengths["_p"].to_numpy()
    c_max = 1
    for c in range(2, 9):  # ≤ 8 classes
        if (pos >= c - 1).sum() >= 50:
            c_max = c
    cls = np.minimum(pos, c_max - 1)
    inp, out = lengths["input_tokens"].to_numpy(), lengths["output_tokens"].to_numpy()
    by_position = tuple(_lengths(inp[cls == c], out[cls == c]) for c in range(c_max))
    return Prefix(block_tokens, root_blocks, float(root_share), Table.of(sizes, integer=True),
                  gap, by_position)


def _prefix_chains(p: Prefix, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Chain (conversation) and position within it of ``n`` requests in arrival order: chain
    sizes from their table, members at exponential distances (mean ``chain_gap``) in request
    order from a uniform start."""
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    mean_size = max(p.chain_sizes.mean(), 1.0)
    m = int(n / mean_size * 1.2) + 16
    sizes = np.maximum(p.chain_sizes.ppf(rng.random(m)).astype(np.int64), 1)
    while sizes.sum() < n:  # rare top-up, in chunks
        sizes = np.concatenate([sizes, np.maximum(
            p.chain_sizes.ppf(rng.random(m)).astype(np.int64), 1)])
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n) + 1]
    chain = np.repeat(np.arange(len(sizes)), sizes)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    step = rng.exponential(p.chain_gap, len(chain))
    step[first] = 0.0
    cs = np.cumsum(step)
    at = rng.random(len(sizes))[chain] * n + cs - cs[first][chain]
    chain = chain[np.argsort(at)][:n]
    by_time = np.argsort(chain, kind="stable")
    start = np.searchsorted(chain[by_time], chain[by_time], side="left")
    position = np.empty(n, np.int64)
    position[by_time] = np.arange(n) - start
    return chain, position


def _prefix_ids(p: Prefix, chain: np.ndarray, inp: np.ndarray, rng: np.random.Generator, *,
                reorder: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flattened hash ids, list offsets and a permutation of the requests' lengths.

    With ``reorder`` the (input, output) pairs of a chain's members are permuted among them
    so that inputs grow along the chain, as a conversation's prompt grows by its history (the
    pairs, hence the joint length distribution, are unchanged). Each member's blocks are the
    root blocks, then the chain's leading blocks: a member shares with the earlier ones as
    many blocks as the longest of them has."""
    n = len(inp)
    nb = np.maximum(-(-inp // p.block_tokens), 0).astype(np.int64)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64)
    perm = np.arange(n)
    if reorder:  # the k-th shortest member of a chain takes the chain's k-th slot in time
        by_time = np.argsort(chain, kind="stable")
        by_len = np.lexsort((nb, chain))
        perm[by_time] = by_len
        nb = nb[perm]
    root = np.where(rng.random(n) < p.root_share, np.minimum(nb, p.root_blocks), 0)
    own = nb - root
    # block ids: roots 0..root_blocks-1, then per chain a range as long as its longest member
    longest = np.zeros(int(chain.max()) + 1, np.int64)
    np.maximum.at(longest, chain, own)
    base = p.root_blocks + np.concatenate([[0], np.cumsum(longest)[:-1]])
    # each request = two runs of consecutive ids: root [0, root) and own [base_c, base_c+own)
    seg_len = np.stack([root, own], axis=1).ravel()
    seg_val = np.stack([np.zeros(n, np.int64), base[chain]], axis=1).ravel()
    nz = seg_len > 0
    seg_len, seg_val = seg_len[nz], seg_val[nz]
    total = int(seg_len.sum())
    # ids = one cumulative sum of steps: +1 inside a run, a jump at each run's start
    steps = np.ones(total, np.int64)
    if total:
        seg_off = np.cumsum(seg_len) - seg_len
        steps[seg_off[0]] = seg_val[0]
        steps[seg_off[1:]] = seg_val[1:] - (seg_val[:-1] + seg_len[:-1] - 1)
    ids = np.cumsum(steps)
    offsets = np.concatenate([[0], np.cumsum(nb)]).astype(np.int64)
    return ids, offsets, perm
