"""Prefix (KV-cache) reuse of the canonical ``requests`` table: what a prompt finds cached.

A request's prompt is a sequence of *blocks* of ``block_tokens`` tokens (the last block may be
partial), named by the ``hash_ids`` column: the ids of its prefix blocks, in order. Two requests
that share an id share that block's KV cache. Every function takes the block size and the id
scope as arguments (the per-trace ``hash_block_tokens`` and ``hash_scope`` of the ``traces``
table: 512 tokens and global scope for Mooncake, 64 tokens and session scope for the agentic
WEKA traces, 16 tokens and global scope for Qwen-Bailian):

* ``scope="global"``: an id means the same block everywhere in the trace;
* ``scope="session"``: ids are local to a session (the ``session`` column), so a block is keyed
  by ``(session, hash id)`` and sessions never share blocks.

The model
---------
Requests are served one at a time in arrival order (``arrival_s``, ties and null arrival times
in row order: a batch trace without arrivals is replayed in file order). A request *accesses*
its blocks in prompt order; the trace is thereby flattened into one sequence of block accesses,
and every cache below is a cache of blocks over that sequence.

*Prefix semantics.* A block is usable only if every earlier block of the same prompt is usable
too (the KV of block ``j`` is computed over blocks ``0..j-1``; vLLM's automatic prefix caching
and SGLang's radix cache both match the longest cached prefix). A request's **cached prefix** is
therefore the run of leading blocks that are in the cache when it reaches them; a block found in
the cache after the first miss does not count. Its **cached tokens** are
``min(cached_blocks * block_tokens, input_tokens)`` (a partial last block counts only its
tokens). The blocks after the first miss are still accessed: they are computed and inserted
(or, if present, refreshed).

*Infinite cache.* Every block ever accessed stays cached: a block is cached iff its key was
accessed before (by an earlier request or earlier in the same prompt).

*LRU cache of C tokens.* The cache holds ``B = floor(C / block_tokens)`` blocks (a partial
block occupies a whole slot, as in paged KV allocators). Each access moves its block to the
most-recently-used end (inserting it on a miss, evicting the least recently used block when
more than ``B`` are held). Because the access order is the prompt order, a prompt's first block
is the least recent of its blocks after the request; vLLM instead frees a finished request's
blocks tail first, so its curve can be higher at small capacities. The model chosen here is the
one for which LRU's inclusion property holds over the flattened sequence, so one pass gives
every capacity exactly:

*Stack distances* (Mattson, Gecsei, Slutz & Traiger, "Evaluation techniques for storage
hierarchies", IBM Systems Journal 9(2), 1970). The stack distance ``d`` of an access is the
number of *distinct other* keys accessed since the previous access to its key (infinite for a
first access). An access hits an LRU cache of ``B`` blocks iff ``d < B``. With prefix
semantics, block ``j`` of a request is in the cached prefix at ``B`` iff
``max(d_0..d_j) < B`` over that request's accesses, so the whole hit-ratio-versus-capacity
curve follows from one histogram of these running maxima. :func:`stack_distances` computes
``d`` without a per-access loop: ``d(t) = (t - p - 1) - #{links nested in (p, t)}``, where a
*link* joins consecutive accesses ``(p, t)`` to one key (the accesses in between that are not
the last access of their key before ``t`` are exactly the starts of the links nested inside);
links that continue each other (``(p+i, t+i)``, a prefix re-read in the same order) have equal
distances and are merged, and the nested counts of the merged links come from a bitwise
(wavelet-style) stable partition, ``O(n log n)`` vectorized NumPy over ``n`` merged links.

Ratios (each a sum over the trace, or over a group)
----------------------------------------------------
* ``block_seen_ratio`` = blocks whose key was accessed before / all input blocks. No prefix
  condition: a block counts even if an earlier block of its prompt is new. On the Mooncake
  conversation trace (FAST'25 release, 12,031 requests, 288,500 blocks of 512 tokens) this is
  0.3664.
* ``block_hit_ratio`` = cached-prefix blocks / all input blocks (infinite cache, or LRU at a
  capacity).
* ``token_hit_ratio`` = cached tokens / input tokens (token-weighted: long prompts weigh more,
  a partial last block weighs its tokens). This is the share of prefill a prefix cache saves.
* ``request_hit_ratio`` = requests with at least one cached block / requests with a block.

:func:`reuse_by` pools these sums per group (turn index, session) of one :func:`prefix_reuse`
pass; the cache stays the trace's, so under global scope a session's hits include blocks other
sessions cached (:func:`hit_ratio_by_session`).

Qin et al., "Mooncake: Trading More Storage for Less Computation — A KVCache-centric
Architecture for Serving LLM Chatbot", FAST'25, Table 2, quote a "cache ratio" of 40% for the
conversation trace (average input 12,035 and output 343 tokens, which this trace reproduces).
We found no definition of that ratio in the paper's text or the trace release's README (which
speaks of "up to 50% cache hit ratio" for the earlier arXiv trace). The two differ in what is
averaged: 0.3664 pools all blocks of the trace (each block weighs the same, so long prompts
dominate), while the mean over requests of each request's cached share of its input tokens,
``mean_request_token_hit_ratio``, is 0.4094 on this trace, which rounds to the 40% quoted. Both
use an infinite cache and the same hash ids; the pooled token-weighted ratio is 0.3736.

Re-chunking (:func:`rechunk`): ids of ``k`` consecutive fine blocks ``[c*k, (c+1)*k)`` of a
prompt form coarse block ``c``; the coarse id names the *tuple* of those ``k`` fine ids (a short
tail forms a coarse block of its own), numbered 0, 1, ... in order of first appearance. Two
coarse blocks are the same iff all their fine blocks are, so a coarse prefix hit implies the fine
one; at the coarse size, a partially reused coarse block is a miss, as in a cache of that size.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from servetrace.analysis.frames import lazy as as_lazy

Frame = pl.DataFrame | pl.LazyFrame
Scope = Literal["global", "session"]
SCOPES = ("global", "session")
INF = np.iinfo(np.int64).max
"""The stack distance of a first access (never a hit at any capacity)."""


# --------------------------------------------------------------------------- inputs


def _check(block_tokens: int, scope: str, fn: str) -> None:
    if isinstance(block_tokens, bool) or not isinstance(block_tokens, int | np.integer) \
            or block_tokens <= 0:
        raise ValueError(f"{fn}: block_tokens must be a positive integer, got {block_tokens!r}")
    if scope not in SCOPES:
        raise ValueError(f"{fn}: scope must be 'global' or 'session', got {scope!r}")


def _keys(requests: Frame, scope: str, fn: str) -> tuple[pl.LazyFrame, list[str], list[str]]:
    """The requests, their columns, and the key columns of the scope (checked present)."""
    lf = as_lazy(requests, f"{fn}: requests")
    names = lf.collect_schema().names()
    need = ["hash_ids"] + (["session"] if scope == "session" else [])
    for c in need:
        if c not in names:
            raise ValueError(f"{fn}: requests has no {c!r} column")
    return lf, names, need


def _ordered(requests: Frame, scope: str, fn: str, extra: tuple[str, ...] = ()) -> pl.DataFrame:
    """The columns a function needs, in serving order (arrival, then row order)."""
    lf, names, need = _keys(requests, scope, fn)
    cols = need + [c for c in ("input_tokens", "arrival_s", *extra) if c in names and c not in
                   need]
    df = lf.select(cols).collect()
    if "arrival_s" in df.columns and not df["arrival_s"].is_sorted(nulls_last=True):
        df = df.sort("arrival_s", maintain_order=True, nulls_last=True)
    return df


@dataclass(frozen=True)
class _Flat:
    """The trace flattened into block accesses in serving order."""

    key: np.ndarray        # integer key of each access (dense within scope)
    req: np.ndarray        # request index of each access
    starts: np.ndarray     # first access of each request
    lens: np.ndarray       # blocks of each request
    tokens: np.ndarray     # tokens of each access (block_tokens, or the tail's)
    input_tokens: np.ndarray


def _columns(df: pl.DataFrame, block_tokens: int, scope: str
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Blocks and first access of each request, the key of each access, input tokens."""
    lens = df["hash_ids"].list.len().fill_null(0).to_numpy().astype(np.int64)
    n = df.height
    starts = np.zeros(n, np.int64)
    if n:
        np.cumsum(lens[:-1], out=starts[1:])
    ids = pl.Series(df["hash_ids"].to_arrow().flatten())    # the values, zero-copy
    if ids.null_count() or ids.len() != int(lens.sum()):
        raise ValueError("hash_ids: null ids inside a list")
    key = ids.to_numpy()
    # Narrow integer ids stay as they are (a zero-copy view): widening 290M ids to int64
    # would double the trace's largest column; the scans widen chunk by chunk.
    if key.dtype.kind not in "iu" or key.dtype == np.uint64:
        key = key.astype(np.int64)
    if scope == "session":
        sess = df["session"]
        if sess.null_count():
            raise ValueError("scope='session': requests with a null session")
        code = sess.rank("dense").to_numpy().astype(np.int64) - 1     # per request
        lo = int(key.min()) if len(key) else 0
        span = (int(key.max()) - lo + 1) if len(key) else 1
        if span * (int(code.max(initial=0)) + 1) < 1 << 62:          # (session, id) packed
            key = np.repeat(code * span, lens) + (key.astype(np.int64) - lo)
        else:
            frame = pl.DataFrame({"s": np.repeat(code, lens), "h": key})
            key = frame.select(pl.struct("s", "h").rank("dense") - 1).to_series().to_numpy()
    if "input_tokens" in df.columns:
        inp = df["input_tokens"].fill_null(0).to_numpy().astype(np.int64)
    else:
        inp = lens * block_tokens
    return lens, starts, key, inp


def _flatten(df: pl.DataFrame, block_tokens: int, scope: str) -> _Flat:
    lens, starts, key, inp = _columns(df, block_tokens, scope)
    req = np.repeat(np.arange(df.height, dtype=np.int64), lens)
    pos = np.arange(len(key), dtype=np.int64) - starts[req]
    left = inp[req] - pos * block_tokens
    tok = np.clip(left, 0, block_tokens) if len(key) else np.zeros(0, np.int64)
    return _Flat(key, req, starts, lens, tok, inp)


# --------------------------------------------------------------------------- distances


_CHUNK = 1 << 22
"""Block accesses per chunk of the scans (bounds their temporary memory)."""


def _dense(key: np.ndarray) -> np.ndarray:
    """``key`` as non-negative integers below a small bound (itself when it already is)."""
    if len(key) == 0:
        return key.astype(np.int64)
    lo, hi = int(key.min()), int(key.max())
    if lo >= 0 and hi < 2 * len(key) + (1 << 20):
        return key
    return pl.Series(key).rank("dense").to_numpy().astype(np.int64) - 1


def _scan(key: np.ndarray, chunk: int | None = None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One pass over the access sequence, in chunks of ``chunk`` accesses.

    Returns ``state`` (per access: 0 a first access, 2 the head of a run of links, 1 a link
    continuing the previous one: its previous access is the previous access's previous access
    plus one) and, per run head in order, its previous access ``a``, its own position ``b`` and
    its run's length ``m`` (int32 when the trace has fewer than 2**31 accesses). Previous
    accesses come from one sort per chunk of (key, position) packed in an int64 and a table of
    each key's last position so far."""
    key = _dense(np.asarray(key))
    chunk = chunk or _CHUNK
    t = len(key)
    state = np.zeros(t, np.int8)
    it = np.int32 if t < np.iinfo(np.int32).max else np.int64
    if t == 0:
        return state, *(np.zeros(0, it) for _ in range(3))
    last = np.full(int(key.max()) + 1, -1, it)
    heads_a, heads_b, heads_m = [], [], []
    carry_prev, carry_has = -2, False
    for t0 in range(0, t, chunk):
        t1 = min(t, t0 + chunk)
        n = t1 - t0
        shift = max(1, int(n - 1).bit_length())
        packed = (key[t0:t1].astype(np.int64) << shift) | np.arange(n, dtype=np.int64)
        packed = pl.Series(packed).sort().to_numpy()
        ks = packed >> shift
        order = packed & ((1 << shift) - 1)
        del packed
        new = np.empty(n, bool)
        new[0] = True
        np.not_equal(ks[1:], ks[:-1], out=new[1:])
        ps = np.empty(n, np.int64)                       # previous access, sorted order
        ps[1:] = order[:-1]
        ps += t0
        ps[new] = last[ks[new]]
        prev = np.empty(n, np.int64)
        prev[order] = ps
        end = np.empty(n, bool)
        end[-1] = True
        end[:-1] = new[1:]
        last[ks[end]] = order[end] + t0
        del ks, order, new, end, ps
        has = prev >= 0
        cont = np.empty(n, bool)
        cont[0] = has[0] and carry_has and prev[0] == carry_prev + 1
        cont[1:] = has[1:] & has[:-1] & (prev[1:] == prev[:-1] + 1)
        head = has & ~cont
        st = state[t0:t1]
        st[:] = has.view(np.int8) + head.view(np.int8)
        hpos = np.flatnonzero(head)
        stops = np.append(np.flatnonzero(st != 1), n)    # heads and first accesses
        if stops[0] > 0:                                 # the last run goes on in this chunk
            for ms in reversed(heads_m):
                if len(ms):
                    ms[-1] += stops[0]
                    break
        heads_m.append((stops[np.searchsorted(stops, hpos) + 1] - hpos).astype(it))
        heads_a.append(prev[head].astype(it))
        heads_b.append((hpos + t0).astype(it))
        carry_prev, carry_has = int(prev[-1]), bool(has[-1])
        del prev, has, cont, head, hpos, stops
    return state, *(np.concatenate(x) for x in (heads_a, heads_b, heads_m))


def _nested_weights(starts: list[np.ndarray], w: np.ndarray) -> np.ndarray:
    """For links ``i`` given in order of their ends, with starts ``a = starts.pop()`` (distinct;
    popped to free it early) and weights ``w``: ``W_i = sum of w_j over links j with
    a_j > a_i and j < i`` (the links nested in link ``i``).

    In start order the links form a sequence whose values ``v`` are their end ranks (a
    permutation of ``0..n-1``); ``W_i`` sums the weights of later elements with smaller values.
    Bit by bit from the top (a wavelet matrix): the elements sharing the bits above bit ``l``
    form a group, kept in start order by a stable partition; as ``v`` is a permutation, the
    group of prefix ``P`` occupies positions ``[P * 2**(l+1), (P+1) * 2**(l+1))`` and holds
    ``min(2**l, n - P * 2**(l+1))`` elements with bit ``l`` clear. An element with the bit set
    collects the weights of the later elements of its group with the bit clear; every pair
    ``j`` after ``i`` with ``v_j < v_i`` is counted once, at their highest differing bit."""
    a = starts.pop()
    n = len(a)
    if n == 0:
        return np.zeros(0, np.int64)
    it = np.int32 if int(w.sum()) + 2 * n < np.iinfo(np.int32).max else np.int64
    v = pl.Series(a).arg_sort().to_numpy().astype(it)   # end rank, in start order (a distinct)
    del a
    wt = w[v].astype(it, copy=False)
    del w
    acc = np.zeros(n, it)
    idx = np.arange(n, dtype=it)
    gs, c, x, y = (np.empty(n, it) for _ in range(4))   # scratch, reused at every level
    one = np.empty(n, bool)
    for level in range(max(1, int(n - 1).bit_length()) - 1, -1, -1):
        half = 1 << level
        np.right_shift(v, level + 1, out=gs)
        np.left_shift(gs, level + 1, out=gs)             # first position of the group
        np.bitwise_and(v, half, out=x)
        np.not_equal(x, 0, out=one)
        np.multiply(wt, ~one, out=x)
        np.cumsum(x, out=c)                              # weights of zeros, inclusive
        np.add(gs, 2 * half, out=x)
        np.minimum(x, n, out=x)
        x -= 1                                           # last position of the group
        np.take(c, x, out=y)
        y -= c
        y *= one
        acc += y                                         # later zeros of the group
        np.logical_not(one, out=one)                     # now: the zeros
        np.cumsum(one, out=c)
        c -= one                                         # zeros before, whole array
        np.take(c, gs, out=x)
        c -= x                                           # zeros before, within the group
        np.subtract(n, gs, out=x)
        np.minimum(x, half, out=x)                       # zeros in the group
        x += idx
        x -= c                                           # a one: after the group's zeros
        gs += c                                          # a zero: its place among them
        np.copyto(x, gs, where=one)                      # x: the new position
        for arr in (v, wt, acc):
            y[x] = arr
            arr[:] = y
    del gs, c, x, y, one
    return acc.astype(np.int64)                          # sorted by end rank now


def _head_distances(heads: list[np.ndarray]) -> np.ndarray:
    """Stack distance of each run head from ``heads = [a, b, m]`` (see :func:`_scan`), which it
    empties to free them early: ``(b - a - 1) - (links nested in (a, b))``. A run's links all
    have its head's distance, and the links of a run lie all inside or all outside any link not
    in the run, so the runs are counted with their lengths ``m`` as weights."""
    m = heads.pop()
    span = heads.pop(1)
    span -= heads[0]
    span -= 1
    return span - _nested_weights(heads, m)


def stack_distances(key: np.ndarray) -> np.ndarray:
    """LRU stack distance of each access of the key sequence ``key`` (Mattson et al. 1970):
    the number of distinct other keys accessed since the previous access to the same key;
    :data:`INF` for a first access. An access hits an LRU cache of ``B`` entries iff its
    distance is ``< B``. One pass, vectorized (see the module docstring)."""
    state, *heads = _scan(np.asarray(key))
    d_head = _head_distances(heads)
    out = np.full(len(state), INF, np.int64)
    has = state > 0
    out[has] = d_head[(np.cumsum(state == 2) - 1)[has]]
    return out


# --------------------------------------------------------------------------- per request


def _leading(hit: np.ndarray, flat: _Flat) -> np.ndarray:
    """Leading run of True per request."""
    cached = flat.lens.copy()
    miss = np.flatnonzero(~hit)
    if len(miss):
        r, first = np.unique(flat.req[miss], return_index=True)
        cached[r] = miss[first] - flat.starts[r]
    return cached


def prefix_reuse(requests: Frame, *, block_tokens: int, scope: Scope = "global",
                 capacity_tokens: int | None = None) -> pl.DataFrame:
    """Per request, in serving order (``request_index`` 0, 1, ...): ``input_blocks``;
    ``seen_blocks`` (blocks whose key was accessed before, no prefix condition);
    ``cached_blocks``, the longest prefix of its blocks in the cache on arrival;
    ``cached_tokens = min(cached_blocks * block_tokens, input_tokens)``. The cache is
    infinite, or an LRU of ``capacity_tokens`` tokens (see the module docstring for the model).
    Carries ``request_id``, ``session``, ``turn`` and ``arrival_s`` where present."""
    fn = "prefix_reuse"
    _check(block_tokens, scope, fn)
    df = _ordered(requests, scope, fn, ("request_id", "session", "turn"))
    flat = _flatten(df, block_tokens, scope)
    state = _scan(flat.key)[0]
    seen = np.bincount(flat.req, weights=state > 0, minlength=df.height).astype(np.int64)
    if capacity_tokens is None:
        hit = state > 0
    else:
        cap = _capacity_blocks(capacity_tokens, block_tokens, fn)
        hit = stack_distances(flat.key) < cap
    cached = _leading(hit, flat)
    keep = [c for c in ("request_id", "session", "turn", "arrival_s") if c in df.columns]
    if not keep:
        df = df.with_row_index("_row")
        keep = ["_row"]
    return df.select(keep).with_columns(
        pl.Series("request_index", np.arange(df.height, dtype=np.int64)),
        pl.Series("input_tokens", flat.input_tokens),
        pl.Series("input_blocks", flat.lens),
        pl.Series("seen_blocks", seen),
        pl.Series("cached_blocks", cached),
        pl.Series("cached_tokens", np.minimum(cached * block_tokens, flat.input_tokens)),
    ).drop("_row", strict=False)


def _capacity_blocks(capacity_tokens: int, block_tokens: int, fn: str) -> int:
    if isinstance(capacity_tokens, bool) or not isinstance(capacity_tokens, int | np.integer) \
            or capacity_tokens < 0:
        raise ValueError(f"{fn}: capacity must be a non-negative integer of tokens, got "
                         f"{capacity_tokens!r}")
    return int(capacity_tokens) // block_tokens


@dataclass(frozen=True)
class HitRatios:
    """Infinite-cache reuse of a trace (definitions in the module docstring)."""

    requests: int
    input_blocks: int
    input_tokens: int
    block_seen_ratio: float
    block_hit_ratio: float
    token_hit_ratio: float
    request_hit_ratio: float
    mean_request_token_hit_ratio: float


def hit_ratios(requests: Frame, *, block_tokens: int, scope: Scope = "global") -> HitRatios:
    """Infinite-cache ratios of the whole trace:

    * ``block_seen_ratio = Σ seen_blocks / Σ input_blocks``;
    * ``block_hit_ratio = Σ cached_blocks / Σ input_blocks``;
    * ``token_hit_ratio = Σ cached_tokens / Σ input_tokens``;
    * ``request_hit_ratio = #{cached_blocks > 0} / #{input_blocks > 0}``;
    * ``mean_request_token_hit_ratio = mean over requests with input of
      cached_tokens / input_tokens`` (each request weighs the same).

    Mooncake conversation trace (512-token blocks, global scope), in that order: 0.3664,
    0.3664 (its ids are chained: a block seen before always has its whole prefix seen before),
    0.3736, 0.9999 and 0.4094. The FAST'25 paper's Table 2 "cache ratio" of 40% matches the
    last, a mean of per-request ratios, not the 0.3664 share of blocks; the paper's text does
    not state its definition, so this is our reading, not a quotation."""
    r = prefix_reuse(requests, block_tokens=block_tokens, scope=scope)
    return hit_ratios_of(r)


def hit_ratios_of(reuse: pl.DataFrame) -> HitRatios:
    """:class:`HitRatios` of a :func:`prefix_reuse` frame already computed (NaN for a ratio
    without denominator)."""
    row = reuse_by(reuse).row(0, named=True)
    nan = float("nan")
    return HitRatios(
        requests=row["requests"], input_blocks=row["input_blocks"] or 0,
        input_tokens=row["input_tokens"] or 0,
        **{k: nan if row[k] is None else float(row[k]) for k in (
            "block_seen_ratio", "block_hit_ratio", "token_hit_ratio", "request_hit_ratio",
            "mean_request_token_hit_ratio")})


# --------------------------------------------------------------------------- LRU curve


def lru_curve(requests: Frame, capacities_tokens, *, block_tokens: int,
              scope: Scope = "global") -> pl.DataFrame:
    """Hit ratio of an LRU prefix cache versus its capacity, every capacity from one pass.

    One row per capacity (in the given order): ``capacity_tokens``, ``capacity_blocks =
    floor(capacity_tokens / block_tokens)``, ``block_hit_ratio = Σ cached_blocks / Σ
    input_blocks`` and ``token_hit_ratio = Σ cached_tokens / Σ input_tokens`` at that capacity.
    Block ``j`` of a request is in its cached prefix iff ``max(d_0..d_j) < capacity_blocks``
    (``d`` the stack distances, Mattson et al. 1970); the ratios are read off one histogram of
    these running maxima."""
    fn = "lru_curve"
    _check(block_tokens, scope, fn)
    caps_tokens = np.atleast_1d(np.asarray(capacities_tokens, dtype=object))
    caps = np.asarray([_capacity_blocks(c, block_tokens, fn) for c in caps_tokens], np.int64)
    caps_tokens = caps_tokens.astype(np.int64)
    df = _ordered(requests, scope, fn)
    lens, starts, key, inp = _columns(df, block_tokens, scope)
    state, *heads = _scan(key)
    del key
    d_head = _head_distances(heads)
    d_head = np.append(np.minimum(d_head, len(state) + 1), len(state) + 1)
    order = np.argsort(caps, kind="stable")
    sc = caps[order]
    nb = np.zeros(len(sc) + 1, np.int64)
    nt = np.zeros(len(sc) + 1, np.float64)
    t_all = len(state)
    big = t_all + 2
    bt = block_tokens
    inp = np.maximum(inp, 0)
    runs_before = 0
    # Request-aligned chunks of about _CHUNK accesses. Within a request the running maximum of
    # the distances changes only at *events*: the request's first block, a run head, the first
    # of consecutive first accesses; a segment from one event to the next has one running
    # maximum, ``end - start`` blocks and ``min(inp, end*bt) - min(inp, start*bt)`` tokens.
    cuts = np.searchsorted(starts, np.arange(0, t_all, _CHUNK), side="left")
    bounds = [0, *np.unique(cuts[(cuts > 0) & (cuts < len(lens))]).tolist(), len(lens)] \
        if t_all else [0]
    for r0, r1 in itertools.pairwise(bounds):
        t0 = int(starts[r0])
        t1 = int(starts[r1 - 1] + lens[r1 - 1])
        st = state[t0:t1]
        ev = st != 1
        ev[1:] &= ~((st[1:] == 0) & (st[:-1] == 0))
        rs = starts[r0:r1][lens[r0:r1] > 0] - t0
        ev[rs] = True
        pos = np.flatnonzero(ev)
        del ev
        kind = st[pos]
        run = np.cumsum(kind == 2) - 1 + runs_before
        runs_before = int(run[-1]) + 1 if len(run) else runs_before
        d = np.where(kind == 0, big - 1, d_head[run])          # run -1: the padding
        del run, kind
        req = np.searchsorted(rs, pos, side="right") - 1          # among non-empty requests
        d += req * big
        np.maximum.accumulate(d, out=d)
        d -= req * big                                          # running max in the request
        end = np.append(pos[1:], t1 - t0)
        first = rs[req]
        n_in = inp[r0:r1][lens[r0:r1] > 0][req]
        nblk = end - pos
        tok = np.minimum(n_in, (end - first) * bt) - np.minimum(n_in, (pos - first) * bt)
        del req, end, first, n_in, pos
        bucket = np.searchsorted(sc, d, side="right")           # hits every capacity > d
        bucket[d >= big - 1] = len(sc)                          # after a first access: never
        nb += np.bincount(bucket, weights=nblk, minlength=len(sc) + 1).astype(np.int64)
        nt += np.bincount(bucket, weights=tok, minlength=len(sc) + 1)
    hb = np.empty(len(sc), np.float64)
    ht = np.empty(len(sc), np.float64)
    hb[order] = np.cumsum(nb[: len(sc)])
    ht[order] = np.cumsum(nt[: len(sc)])
    tokens = int(inp.sum())
    return pl.DataFrame({
        "capacity_tokens": caps_tokens,
        "capacity_blocks": caps,
        "block_hit_ratio": hb / t_all if t_all else np.full(len(caps), np.nan),
        "token_hit_ratio": ht / tokens if tokens else np.full(len(caps), np.nan),
    })


# --------------------------------------------------------------------------- by group

REUSE_COLUMNS = ("requests", "input_blocks", "input_tokens", "cached_blocks", "cached_tokens",
                 "block_seen_ratio", "block_hit_ratio", "token_hit_ratio", "request_hit_ratio",
                 "mean_request_token_hit_ratio")


def reuse_by(reuse: pl.DataFrame, by: str | list[str] | None = None) -> pl.DataFrame:
    """The ratios of :func:`hit_ratios` per group of a :func:`prefix_reuse` frame, so that one
    pass over the trace gives the whole-trace, per-turn and per-session figures.

    Per group of the ``by`` columns (one row for the whole frame without ``by``; a null key is
    a group of its own, last): ``requests``, Σ ``input_blocks``, Σ ``input_tokens``,
    Σ ``cached_blocks``, Σ ``cached_tokens``, and over the group's requests
    ``block_seen_ratio``, ``block_hit_ratio``, ``token_hit_ratio``, ``request_hit_ratio`` and
    ``mean_request_token_hit_ratio`` as defined in :func:`hit_ratios` (null where the group
    has no block, no token or no request with input). The cache is the trace's, read off per
    group: under ``scope="global"`` a session's hits include blocks other sessions cached.
    Returns ``[by..., *REUSE_COLUMNS]`` sorted by the keys."""
    keys = [by] if isinstance(by, str) else list(by or [])
    for c in (*keys, "input_blocks", "seen_blocks", "cached_blocks", "cached_tokens",
              "input_tokens"):
        if c not in reuse.columns:
            raise ValueError(f"reuse_by: the reuse frame has no {c!r} column")

    def share(num: pl.Expr, den: pl.Expr) -> pl.Expr:
        return pl.when(den > 0).then(num / den)

    blocks, tokens = pl.col("input_blocks").sum(), pl.col("input_tokens").sum()
    with_input = pl.col("input_tokens") > 0
    exprs = [
        pl.len().cast(pl.Int64).alias("requests"), blocks.cast(pl.Int64).alias("input_blocks"),
        tokens.cast(pl.Int64).alias("input_tokens"),
        pl.col("cached_blocks").sum().cast(pl.Int64),
        pl.col("cached_tokens").sum().cast(pl.Int64),
        share(pl.col("seen_blocks").sum(), blocks).alias("block_seen_ratio"),
        share(pl.col("cached_blocks").sum(), blocks).alias("block_hit_ratio"),
        share(pl.col("cached_tokens").sum(), tokens).alias("token_hit_ratio"),
        share((pl.col("cached_blocks") > 0).sum(), (pl.col("input_blocks") > 0).sum())
        .alias("request_hit_ratio"),
        (pl.col("cached_tokens") / pl.col("input_tokens")).filter(with_input).mean()
        .alias("mean_request_token_hit_ratio"),
    ]
    if not keys:
        return reuse.select(exprs)
    return reuse.group_by(keys).agg(exprs).sort(keys, nulls_last=True)


def hit_ratio_by_turn(requests: Frame, *, block_tokens: int, scope: Scope = "global",
                      capacity_tokens: int | None = None) -> pl.DataFrame:
    """Infinite-cache (or LRU at ``capacity_tokens``) ratios per turn index (the ``turn``
    column, 1-based): ``requests``, ``input_blocks``, ``block_hit_ratio = Σ cached_blocks /
    Σ input_blocks`` and ``token_hit_ratio = Σ cached_tokens / Σ input_tokens`` over the
    requests of that turn, sorted by turn (a null turn is a group of its own, last). The
    cache is shared by all turns (it is the trace's cache, read off per turn)."""
    fn = "hit_ratio_by_turn"
    lf = as_lazy(requests, f"{fn}: requests")
    if "turn" not in lf.collect_schema().names():
        raise ValueError(f"{fn}: requests has no 'turn' column")
    r = prefix_reuse(lf, block_tokens=block_tokens, scope=scope, capacity_tokens=capacity_tokens)
    return (r.group_by("turn").agg(
        pl.len().alias("requests"),
        pl.col("input_blocks").sum(),
        (pl.col("cached_blocks").sum() / pl.col("input_blocks").sum()).alias("block_hit_ratio"),
        (pl.col("cached_tokens").sum() / pl.col("input_tokens").sum()).alias("token_hit_ratio"),
    ).sort("turn", nulls_last=True))


def hit_ratio_by_session(requests: Frame, *, block_tokens: int, scope: Scope = "global",
                         capacity_tokens: int | None = None) -> pl.DataFrame:
    """The ratios of :func:`reuse_by` per ``session`` (infinite cache, or LRU at
    ``capacity_tokens``). With ``scope="session"`` (session-local ids, e.g. WEKA's agentic
    traces) a session can only hit its own blocks, so its ratio is its own prefix reuse;
    with ``scope="global"`` it also hits blocks that other sessions cached (shared system
    prompts). Requests without a session form the null group, last.
    Returns ``[session, *REUSE_COLUMNS]``."""
    fn = "hit_ratio_by_session"
    lf = as_lazy(requests, f"{fn}: requests")
    if "session" not in lf.collect_schema().names():
        raise ValueError(f"{fn}: requests has no 'session' column")
    r = prefix_reuse(lf, block_tokens=block_tokens, scope=scope, capacity_tokens=capacity_tokens)
    return reuse_by(r, "session")


def footprint_blocks(requests: Frame, *, scope: Scope = "global") -> int:
    """Distinct blocks of the trace (keys of the scope: ids, or (session, id) pairs): the
    capacity, in blocks, beyond which an LRU cache equals the infinite one."""
    fn = "footprint_blocks"
    _check(1, scope, fn)
    lf, _, need = _keys(requests, scope, fn)
    return int(lf.select(need).explode("hash_ids").drop_nulls("hash_ids").unique()
               .select(pl.len()).collect().item())


# --------------------------------------------------------------------------- re-chunking


def rechunk(requests: Frame, factor: int) -> pl.DataFrame:
    """``requests`` with ``hash_ids`` re-chunked to blocks ``factor`` times coarser (e.g. 64 →
    512 tokens: ``factor=8``). Coarse block ``c`` of a prompt is fine blocks
    ``[c*factor, (c+1)*factor)`` (the tail may be shorter); its id numbers the tuple of their
    fine ids, 0, 1, ... in order of first appearance in row order. Ids stay in the scope they
    had (session-local ids give session-local coarse ids; key them by session as before)."""
    fn = "rechunk"
    if isinstance(factor, bool) or not isinstance(factor, int | np.integer) or factor < 1:
        raise ValueError(f"{fn}: factor must be a positive integer, got {factor!r}")
    df = as_lazy(requests, f"{fn}: requests").collect()
    if "hash_ids" not in df.columns:
        raise ValueError(f"{fn}: requests has no 'hash_ids' column")
    n = df.height
    cells = (df.select("hash_ids").with_row_index("r").explode("hash_ids")
             .drop_nulls("hash_ids")
             .with_columns((pl.int_range(pl.len()).over("r") // factor).alias("c")))
    chunks = cells.group_by("r", "c", maintain_order=True).agg(pl.col("hash_ids").alias("t"))
    # one coarse id per distinct tuple of fine ids, numbered in order of first appearance
    names = chunks.select("t").unique(maintain_order=True).with_row_index("coarse")
    coarse = chunks.join(names, on="t", how="left", maintain_order="left")
    lists = coarse.group_by("r", maintain_order=True).agg(pl.col("coarse").cast(pl.Int64))
    full = pl.DataFrame({"r": pl.int_range(n, dtype=pl.UInt32, eager=True)}).join(
        lists, on="r", how="left", maintain_order="left")
    empty = pl.lit([], pl.List(pl.Int64))
    col = pl.select(pl.when(df["hash_ids"].is_null()).then(None)
                    .otherwise(full["coarse"].fill_null(empty))).to_series()
    return df.with_columns(col.alias("hash_ids"))
