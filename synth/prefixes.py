"""Prefix sharing of the workload model: root prefixes shared across chains, and chains of
hash-id blocks (a session's agent, or a conversation) in which each member extends the
previous member's blocks, fitted from ``hash_ids`` (the block size read from the lengths
where the trace does not give it) and sampled consistent with the input lengths, with fresh
ids for new blocks (see :mod:`servetrace.synth.model`).
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import special

from servetrace.synth.arrivals import (
    _even_scores,
)
from servetrace.synth.lengths import (
    _copula,
    _lengths,
    _stratified_normal,
)
from servetrace.synth.parameters import (
    BLOCK_TOKENS,
    Lengths,
    Prefix,
    Table,
)


def _fit_prefix(frame: pl.DataFrame, block_tokens: int = BLOCK_TOKENS,
                scope: str = "global") -> Prefix | None:
    """The prefix structure of a trace's ``hash_ids`` (blocks of ``block_tokens``; ``scope``
    the trace's ``hash_scope``); ``None`` with fewer than 10 requests holding hash ids.
    Chains are a session's agents (session and sub-agent) where ``session`` is filled,
    otherwise the conversations read from the first block after the root."""
    h = frame.select(pl.col("hash_ids")).with_row_index("_i").filter(
        pl.col("hash_ids").list.len() > 0)
    if h.height < 10:
        return None
    root_blocks, root_share = _root(h["hash_ids"])
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
    if frame["session"].null_count() < frame.height:
        sub = pl.col("subagent") if "subagent" in frame.columns else pl.lit(None, pl.String)
        key = pl.concat_str([pl.col("session"), pl.coalesce(sub, pl.lit(""))], separator="/")
    else:
        key = pl.col("hash_ids").list.get(root_blocks, null_on_oob=True)
    roots, weights, growth, rounding, inputs = _fit_chain(frame, key, block_tokens, scope)
    gap_table = Table.of(np.maximum(gaps, 1), log=True) if len(gaps) >= 2 else None
    return Prefix(block_tokens, root_blocks, float(root_share), Table.of(sizes, integer=True),
                  gap, by_position, roots, weights, growth, rounding, scope, gap_table,
                  inputs)


def _root(hash_ids: pl.Series) -> tuple[int, float]:
    """Leading blocks most requests share (a system prompt) and the share of requests that
    start with them: the requests of the most common first block, and the leading positions
    where one id covers at least 90 % of them; (0, 0) when under half of the requests (of
    non-empty ``hash_ids``) start with that block."""
    first = hash_ids.list.first()
    top = first.value_counts(sort=True).row(0)
    root_share = top[1] / len(hash_ids)
    with_root = hash_ids.filter(first == top[0])
    root_blocks = 0
    for pos in range(16):  # ≤ 16 leading positions
        vc = with_root.list.get(pos, null_on_oob=True).drop_nulls().value_counts(sort=True)
        if vc.height == 0 or vc.row(0)[1] < 0.9 * len(with_root):
            break
        root_blocks += 1
    if root_share < 0.5 or root_blocks == 0:
        return 0, 0.0
    return root_blocks, float(root_share)


def conversations(requests: pl.DataFrame) -> pl.Series:
    """The conversation of each request of a trace without sessions, read from its prefix
    chain as :func:`_fit_prefix` reads it: the first hash id after the blocks most requests
    share (:func:`_root`). Null for a request without blocks past the root."""
    ids = requests["hash_ids"]
    filled = ids.filter(ids.list.len() > 0)
    root = _root(filled)[0] if len(filled) else 0
    return ids.list.get(root, null_on_oob=True).alias("conversation")


def _prefix_chains(p: Prefix, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Chain (conversation) and position within it of ``n`` requests in arrival order, as a
    window cut from a stationary chain process, the way a trace's window cuts its
    conversations: chains (sizes from their table) start uniformly on ``[-n, n)`` at one
    member per request on average, members at distances in request order from
    ``chain_gaps`` (exponential of mean ``chain_gap`` without it), and the first ``n``
    members at or after 0 are the sample's; positions count from a chain's first member in
    the window. Starting every chain inside the window and cutting the members that ran past
    its end instead kept the short distances and lost the long ones (Mooncake's median
    distance 330 requests against the trace's 421, and an LRU curve too high at mid
    capacities: mean error 0.017 against 0.005 cut from the stationary process)."""
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    mean_size = max(p.chain_sizes.mean(), 1.0)
    m = int(rng.poisson(2 * n / mean_size)) + 16
    sizes = np.maximum(p.chain_sizes.ppf(rng.random(m)).astype(np.int64), 1)
    chain = np.repeat(np.arange(m), sizes)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    step = (p.chain_gaps.ppf(rng.random(len(chain))) if p.chain_gaps is not None
            else rng.exponential(p.chain_gap, len(chain)))
    step[first] = 0.0
    cs = np.cumsum(step)
    at = rng.uniform(-n, n, m)[chain] + cs - cs[first][chain]
    keep = at >= 0
    chain = chain[keep][np.argsort(at[keep], kind="stable")[:n]]
    if len(chain) < n:  # too few members at or after 0 (tiny n): the rest are single turns
        chain = np.concatenate([chain, m + np.arange(n - len(chain))])
    chain = np.unique(chain, return_inverse=True)[1].astype(np.int64)
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


MAX_ROOTS = 8
"""Shared root prefixes kept (most popular first)."""


MAX_ROOT_BLOCKS = 4096
"""Longest root prefix looked for (blocks)."""


def _shared_blocks(frame: pl.DataFrame, a: str, b: str) -> np.ndarray:
    """Per row, the length of the common leading run of the list columns ``a`` and ``b``
    (one explode of both lists cut to the shorter, then the first mismatch per row)."""
    m = pl.min_horizontal(pl.col(a).list.len(), pl.col(b).list.len())
    d = frame.select(pl.int_range(pl.len()).alias("_r"), m.alias("_m"),
                     pl.col(a).list.head(m).alias("_a"), pl.col(b).list.head(m).alias("_b"))
    x = d.select("_r", "_a", "_b").explode(["_a", "_b"]).with_columns(
        pl.int_range(pl.len()).over("_r").alias("_j"))
    first = x.filter(pl.col("_a") != pl.col("_b")).group_by("_r").agg(pl.col("_j").min())
    out = d.select("_r", "_m").join(first, on="_r", how="left").sort("_r")
    return out.select(pl.coalesce("_j", "_m")).to_series().to_numpy().astype(np.int64)


def _classes(position: np.ndarray, start: int, least: int = 50, most: int = 8) -> int:
    """Number of position classes start, start+1, …, the last pooling the rest, each with at
    least ``least`` members (at most ``most`` classes, at least one)."""
    c_max = 1
    for c in range(2, most + 1):  # ≤ 8 classes
        if (position >= start + c - 1).sum() >= least:
            c_max = c
    return c_max


def _log_class(position: np.ndarray) -> np.ndarray:
    """Log-spaced class of 0-based chain positions: 0, 1, 2, 3, then 4–7, 8–15, 16–31, …
    (a context saturates and is compacted over tens of turns, not at turn 8)."""
    pos = np.asarray(position, np.int64)
    big = 4 + np.floor(np.log2(np.maximum(pos, 4) / 4)).astype(np.int64)
    return np.where(pos < 4, pos, big)


def _log_classes(position: np.ndarray, least: int = 50) -> int:
    """Number of log-spaced position classes (:func:`_log_class`), the last pooling the
    rest, such that the last has at least ``least`` members (at least one class)."""
    cls = _log_class(position)
    counts = np.bincount(cls)
    tail = np.cumsum(counts[::-1])[::-1]  # members at or above each class
    ok = np.flatnonzero(tail >= least)
    return int(ok[-1]) + 1 if len(ok) else 1


def _rounding(frame: pl.DataFrame, block_tokens: int) -> str:
    """``"floor"`` where more rows have ⌊input / block⌋ blocks than ⌈input / block⌉."""
    n = pl.col("hash_ids").list.len()
    c = frame.filter(pl.col("hash_ids").is_not_null()).select(
        (n == (pl.col("input_tokens") + block_tokens - 1) // block_tokens).sum().alias("c"),
        (n == pl.col("input_tokens") // block_tokens).sum().alias("f"))
    return "floor" if c["f"][0] > c["c"][0] else "ceil"


BLOCK_CANDIDATES = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
"""Block sizes (tokens) :func:`block_size` tries."""


def block_size(frame: pl.DataFrame) -> int:
    """The block size (tokens) of a table's ``hash_ids`` read from its lengths: the
    candidate of :data:`BLOCK_CANDIDATES` for which the most rows hold ⌈input / block⌉ or
    ⌊input / block⌋ blocks (ties to the larger); :data:`BLOCK_TOKENS` (Mooncake's 512) when
    no row has hash ids. Pass the trace's ``traces.hash_block_tokens`` where it is known."""
    h = frame.filter(pl.col("hash_ids").is_not_null()).select("input_tokens", "hash_ids")
    if h.height == 0:
        return BLOCK_TOKENS
    n = pl.col("hash_ids").list.len()
    hits = h.select([((n == (pl.col("input_tokens") + b - 1) // b)
                      | (n == pl.col("input_tokens") // b)).sum().alias(str(b))
                     for b in BLOCK_CANDIDATES]).row(0)
    best = max(range(len(hits)), key=lambda i: (hits[i], BLOCK_CANDIDATES[i]))
    return BLOCK_CANDIDATES[best] if hits[best] > 0 else BLOCK_TOKENS


def _blocks(p: Prefix, inp: np.ndarray) -> np.ndarray:
    b = p.block_tokens
    nb = inp // b if p.rounding == "floor" else -(-inp // b)
    return np.maximum(nb, 0).astype(np.int64)


def _fit_roots(firsts: pl.DataFrame) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Root prefixes shared across chains: among the chains' first requests, the most common
    first blocks (each opening ≥ 1 % of the chains and at least 2), each with the leading
    run of blocks that ≥ 90 % of the chains opening with it share; popularity = share of
    chains."""
    n = firsts.height
    f = firsts.select(pl.col("hash_ids").list.first().alias("_f"), "hash_ids").drop_nulls("_f")
    top = (f.group_by("_f").len().filter(pl.col("len") >= max(2, 0.01 * n))
           .sort(["len", "_f"], descending=[True, False]).head(MAX_ROOTS))
    if top.height == 0:
        return (), ()
    # position of each block within its request: rank inside the exploded request
    x = (f.join(top, on="_f").with_row_index("_q")
         .with_columns(pl.col("hash_ids").list.head(MAX_ROOT_BLOCKS))
         .explode("hash_ids").drop_nulls("hash_ids")
         .with_columns(pl.int_range(pl.len()).over("_q").alias("_j")))
    common = (x.group_by("_f", "len", "_j", "hash_ids").agg(pl.len().alias("k"))
              .group_by("_f", "len", "_j").agg(pl.col("k").max())
              .filter(pl.col("k") >= 0.9 * pl.col("len"))
              .sort("_f", "_j")
              .with_columns((pl.col("_j") == pl.int_range(pl.len()).over("_f")).alias("ok"))
              .filter(pl.col("ok")).group_by("_f").agg(pl.len().alias("blocks")))
    top = top.join(common, on="_f", how="left").fill_null(0).filter(pl.col("blocks") > 0) \
        .sort(["len", "_f"], descending=[True, False])
    return (tuple(int(v) for v in top["blocks"]),
            tuple(float(v) / n for v in top["len"]))


def _fit_chain(frame: pl.DataFrame, chain: pl.Expr, block_tokens: int, scope: str
               ) -> tuple[tuple[int, ...], tuple[float, ...], tuple[Lengths, ...], str,
                          tuple[Table, ...]]:
    """Chain structure of requests grouped by ``chain`` (a conversation, or a session's
    agent): roots shared across chains (``global`` scope only: ids local to a session say
    nothing across sessions), and per position class 1, 2, … the copula of the input tokens
    appended to the previous member's and of the previous member's blocks not kept (the
    previous list minus the common leading run of the two lists), and the input marginal
    per log-spaced position class (:func:`_log_class`). Rows in time order."""
    c = (frame.select(chain.alias("_c"), "input_tokens", "hash_ids")
         .filter(pl.col("_c").is_not_null() & pl.col("hash_ids").is_not_null())
         .with_columns(pl.int_range(pl.len()).over("_c").alias("_p"),
                       pl.col("input_tokens").shift(1).over("_c").alias("_pin"),
                       pl.col("hash_ids").shift(1).over("_c").alias("_ph")))
    rounding = _rounding(frame, block_tokens)
    roots: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()
    if scope == "global":
        roots, weights = _fit_roots(c.filter(pl.col("_p") == 0))
    later = c.filter(pl.col("_p") > 0)
    if later.height < 2:
        return roots, weights, (), rounding, ()
    all_pos = c["_p"].to_numpy()
    k_in = _log_classes(all_pos)
    cls_in = np.minimum(_log_class(all_pos), k_in - 1)
    all_in = c["input_tokens"].to_numpy()
    inputs = tuple(Table.empirical(all_in[cls_in == j], integer=True) for j in range(k_in))
    shared = _shared_blocks(later, "hash_ids", "_ph")
    dropped = later["_ph"].list.len().to_numpy().astype(np.int64) - shared
    growth = (later["input_tokens"] - later["_pin"]).to_numpy()
    pos = later["_p"].to_numpy()
    k = _classes(pos, 1)
    cls = np.minimum(pos, k) - 1
    lengths = tuple(_lengths(growth[cls == j], dropped[cls == j]) for j in range(k))
    return roots, weights, lengths, rounding, inputs


def _chain_order(chain: np.ndarray, position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Requests sorted by (chain, position), and the index of each one's chain head in that
    order."""
    order = np.lexsort((position, chain))
    c = chain[order]
    head = np.searchsorted(c, c, side="left")
    return order, head


def _chain_lengths(p: Prefix, first: Lengths, by_class: tuple[Lengths, ...],
                   chain: np.ndarray, position: np.ndarray, rng: np.random.Generator,
                   remap: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Input, output and dropped blocks of requests on chains (format 3): a chain's first
    input and output from ``first``; each later input = the previous one + the growth drawn
    from its position class (inputs ≥ 1); with ``remap``, the inputs of each class are then
    mapped in their rank order onto the evenly spaced quantiles of the class's fitted input
    marginal (``inputs_by_position``, by log-spaced class, else ``by_class``; Iman &
    Conover 1982): chains keep their order of growth and the
    sample the fitted marginals. Summed growths alone drift from them, as independent
    growths add up where real contexts saturate and get compacted: WEKA's sample held 1.4×
    the trace's blocks, Mooncake's input KS was 0.033 against 0.010 for resampling;
    outputs from ``by_class`` (classes by position) given the input's rank in its class
    (the copula's conditional law)."""
    n = len(chain)
    inp = np.zeros(n, np.int64)
    out = np.zeros(n, np.int64)
    dropped = np.zeros(n, np.int64)
    if n == 0:
        return inp, out, dropped
    order, head = _chain_order(chain, position)
    pos = position[order]
    is_first = np.arange(n) == head
    i0, o0 = _copula(first, _stratified_normal(int(is_first.sum()), rng), rng)
    g = np.zeros(n, np.int64)
    d = np.zeros(n, np.int64)
    cls = np.minimum(pos, len(p.growth)) - 1
    for j, lm in enumerate(p.growth):  # ≤ 8 position classes
        sel = ~is_first & (cls == j)
        g[sel], d[sel] = _copula(lm, _stratified_normal(int(sel.sum()), rng), rng)
    cs = np.cumsum(g)
    base = np.zeros(n, np.int64)
    base[is_first] = i0
    x = np.maximum(base[head] + cs - cs[head], 1)
    kc = np.minimum(pos, len(by_class) - 1)
    if remap:  # each class's fitted marginal, in the ranks the chains gave
        if p.inputs_by_position:
            tables = p.inputs_by_position
            rc = np.minimum(_log_class(pos), len(tables) - 1)
        else:
            tables, rc = tuple(lm.input for lm in by_class), kc
        for j, table in enumerate(tables):  # ≤ a few dozen position classes
            sel = rc == j
            z = _even_scores(x[sel] + rng.random(int(sel.sum())) * 0.5)
            x[sel] = table.ppf(special.ndtr(z))
    y = np.zeros(n, np.int64)
    y[is_first] = o0
    for j, lm in enumerate(by_class):  # ≤ 8 position classes
        sel = ~is_first & (kc == j)
        if sel.any():
            z = _even_scores(x[sel] + rng.random(int(sel.sum())) * 0.5)
            y[sel] = _copula(lm, z, rng)[1]
    inp[order], out[order], dropped[order] = x, y, d
    return inp, out, dropped


def _chain_ids(p: Prefix, chain: np.ndarray, position: np.ndarray, inp: np.ndarray,
               dropped: np.ndarray, rng: np.random.Generator,
               group: np.ndarray | None = None, group_blocks: int = 0
               ) -> tuple[np.ndarray, np.ndarray]:
    """Hash ids of requests on chains (format 3), flattened in request order, and list
    offsets: a chain's first request opens with its root (drawn by popularity, or none);
    each later one keeps the previous member's first ``len − dropped`` blocks and appends
    new ones; root positions always keep the root's ids. A chain with ``group`` ≥ 0 (per
    chain: a session's sub-agents) opens instead with its group's own ``group_blocks``
    root. Ids: roots first, then group roots, then a fresh integer per new block of the
    sample (no two chains share one by chance).

    Vectorized by a sort of all blocks by (chain, position in the list, request): a block is
    new where its position is past the kept run of its request, otherwise the same as the
    block before it in that order (the previous member's, at the same position)."""
    n = len(chain)
    nb = _blocks(p, inp)
    offsets = np.concatenate([[0], np.cumsum(nb)]).astype(np.int64)
    if n == 0 or offsets[-1] == 0:
        return np.zeros(int(offsets[-1]), np.int64), offsets
    order, head = _chain_order(chain, position)
    nb_o = nb[order]
    prev = np.concatenate([[0], nb_o[:-1]])
    keep = np.where(np.arange(n) == head, 0, np.clip(prev - dropped[order], 0, nb_o))
    # roots by chain
    n_chain = int(chain.max()) + 1
    roots = np.asarray(p.roots, np.int64)
    w = np.asarray(p.root_weights, np.float64)
    if len(roots):
        u = rng.random(n_chain)
        pick = np.searchsorted(np.cumsum(w), u, side="right")  # len(roots) = no root
        has = pick < len(roots)
        root_len = np.where(has, roots[np.minimum(pick, len(roots) - 1)], 0)
        root_base = np.concatenate([[0], np.cumsum(roots)[:-1]])[np.minimum(pick, len(roots) - 1)]
    else:
        root_len = np.zeros(n_chain, np.int64)
        root_base = np.zeros(n_chain, np.int64)
    fresh_base = int(roots.sum())
    if group is not None and group_blocks > 0:
        g = np.full(n_chain, -1, np.int64)
        g[: len(group)] = group
        in_group = g >= 0
        root_len = np.where(in_group, group_blocks, root_len)
        root_base = np.where(in_group, fresh_base + g * group_blocks, root_base)
        fresh_base += (int(g.max()) + 1) * group_blocks if in_group.any() else 0
    total = int(nb_o.sum())
    req = np.repeat(np.arange(n), nb_o)  # request (in chain order) of each block
    start = np.concatenate([[0], np.cumsum(nb_o)[:-1]])
    j = np.arange(total) - start[req]
    c_e = chain[order][req]
    new = j >= keep[req]
    # one int64 key for (chain, j, request): chain c spans requests [a_c, b_c) of the chain
    # order and positions j < its longest list M_c, so key = Σ_{c'<c} M_c'·len_c' +
    # j·len_c + (request − a_c) is unique, and one argsort replaces a three-key lexsort
    first_o = np.flatnonzero(np.arange(n) == head)
    length = np.diff(np.concatenate([first_o, [n]]))
    most = np.maximum.reduceat(nb_o, first_o)
    cbase = np.concatenate([[0], np.cumsum(most * length)[:-1]])
    ci = np.searchsorted(first_o, np.arange(n), side="right") - 1  # chain rank per request
    key = cbase[ci][req] + j * length[ci][req] + (req - first_o[ci][req])
    srt = np.argsort(key, kind="stable")  # ascending runs per request: a merge of runs
    new_s = new[srt]
    fresh = np.cumsum(new_s) - 1
    last = np.maximum.accumulate(np.where(new_s, np.arange(total), 0))
    ids_s = fresh[last] + fresh_base
    ids = np.empty(total, np.int64)
    ids[srt] = ids_s
    in_root = j < root_len[c_e]
    ids[in_root] = root_base[c_e[in_root]] + j[in_root]
    # back to request order
    inv = np.empty(n, np.int64)
    inv[order] = np.arange(n)
    seg = np.repeat(start[inv], nb)  # start of each request's run in chain order
    within = np.arange(int(offsets[-1])) - np.repeat(offsets[:-1], nb)
    return ids[seg + within], offsets
