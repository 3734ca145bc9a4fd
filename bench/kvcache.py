"""KV-cache benchmark: the LRU hit-ratio-versus-capacity curve of a 10M-request trace.

    python bench/kvcache.py [--requests N] [--capacities K] [--subsample S] [--block-tokens B]

Generates a multi-turn conversation trace: ``N`` requests (default 10,000,000) in sessions of
geometrically distributed length (mean 5 turns) that start uniformly over a day and space their
turns by exponential think times (mean 60 s), all interleaved in arrival order. A prompt is one
of 500 system prompts (Zipf(1) popularity, 4 blocks) followed by the session's context: every
turn appends 1 + Poisson(4) new blocks to it, so a prompt re-reads the previous turn's blocks
and adds new ones (the structure of the Mooncake and agentic traces); about 30 blocks per
request, ``B`` tokens per block (default 64). The ids are one flat ``uint32`` buffer under the
list column, which ``lru_curve`` reads in place (int64 ids would double the trace's size).

Measures, in this one process:

- servetrace: ``servetrace.analysis.kvcache.lru_curve`` at ``K`` capacities (default 50,
  geometric from 64 blocks to the trace's id range (every block fits)), all from one pass (stack
  distances);
- baseline: a plain Python ``OrderedDict`` LRU (the same model: blocks touched in prompt order,
  cached prefix = hits before the first miss), simulated once per capacity, on the first ``S``
  requests (default 100,000; it would take about an hour on all of them), its time extrapolated
  linearly to ``N`` requests (per-access cost is constant); servetrace runs on the same prefix
  and the two curves are compared capacity by capacity (they must agree exactly). The
  baseline's input is prepared as Python lists beforehand, outside its timing.

Prints seconds and peak RSS per stage, the whole process's peak RSS and the ratio.
"""

from __future__ import annotations

import argparse
import resource
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure, report

from servetrace.analysis import kvcache as kv

SYS_PROMPTS = 500
SYS_BLOCKS = 4


def generate(n: int, seed: int = 0) -> pl.DataFrame:
    """``n`` requests of multi-turn sessions (see the module docstring), in arrival order.

    The hash ids are built as one flat ``uint32`` buffer with ``int64`` offsets, filled in
    chunks, and become the ``hash_ids`` list column without a copy; per-request temporaries
    are freed as soon as they are used, so the trace is the only large thing left."""
    rng = np.random.default_rng(seed)
    turns = rng.geometric(1 / 5, n)                      # more sessions than needed
    cut = int(np.searchsorted(np.cumsum(turns), n)) + 1
    turns = turns[:cut]
    turns[-1] -= int(turns.sum()) - n
    sess = np.repeat(np.arange(cut, dtype=np.int64), turns)
    first = np.zeros(cut, np.int64)
    np.cumsum(turns[:-1], out=first[1:])
    turn = np.arange(n, dtype=np.int64) - first[sess]    # 0-based
    new = 1 + rng.poisson(4, n)
    ctx = np.cumsum(new)
    ctx -= (ctx - new)[first][sess]                      # context blocks at this turn
    del new
    start = rng.uniform(0, 86_400, cut)
    t = rng.exponential(60.0, n)
    t[first] = 0.0
    np.cumsum(t, out=t)
    t -= t[first][sess]
    t += start[sess]
    del start
    p = 1.0 / np.arange(1, SYS_PROMPTS + 1)
    sysp = rng.choice(SYS_PROMPTS, cut, p=p / p.sum())[sess]
    span = np.zeros(cut, np.int64)                       # each session's block id range
    np.cumsum(ctx[first + turns - 1][:-1], out=span[1:])
    base = SYS_PROMPTS * SYS_BLOCKS + span[sess]
    top = SYS_PROMPTS * SYS_BLOCKS + int(span[-1] + ctx[first[-1] + turns[-1] - 1])
    if top > np.iinfo(np.uint32).max:
        raise ValueError(f"{n:,} requests need {top:,} block ids, more than uint32 holds")
    del span, first, turns
    order = np.argsort(t, kind="stable")
    t, ctx, base, sysp, sess, turn = (x[order] for x in (t, ctx, base, sysp, sess, turn))
    del order
    lens = SYS_BLOCKS + ctx
    del ctx
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lens, out=offsets[1:])
    values = np.empty(int(offsets[-1]), np.uint32)
    step = 1 << 20
    for r0 in range(0, n, step):                         # fill in chunks: bounded temporaries
        r1 = min(n, r0 + step)
        o0, o1 = offsets[r0], offsets[r1]
        req = np.repeat(np.arange(r0, r1), lens[r0:r1])
        pos = np.arange(o0, o1) - offsets[req]
        values[o0:o1] = np.where(pos < SYS_BLOCKS, sysp[req] * SYS_BLOCKS + pos,
                                 base[req] + pos - SYS_BLOCKS)
    del base, sysp, req, pos
    ids = pl.from_arrow(pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values)))
    del offsets, values                                  # the list column holds them now
    return pl.DataFrame({
        "arrival_s": t,
        "session": sess,
        "turn": turn + 1,
        "input_tokens": lens * BLOCK_TOKENS - rng.integers(0, BLOCK_TOKENS, n),
        "hash_ids": ids,
    })


BLOCK_TOKENS = 64


def ordered_dict_lru(reqs: list[list[int]], tokens: list[int], blocks: int,
                     block_tokens: int) -> tuple[float, float]:
    """One capacity, simulated plainly: (block hit ratio, token hit ratio)."""
    cache: OrderedDict[int, None] = OrderedDict()
    hit_blocks = hit_tokens = total = 0
    for ids, inp in zip(reqs, tokens, strict=True):
        run, cached = True, 0
        for h in ids:
            if h in cache:
                cache.move_to_end(h)
                cached += run
            else:
                run = False
                cache[h] = None
                if len(cache) > blocks:
                    cache.popitem(last=False)
        hit_blocks += cached
        hit_tokens += min(cached * block_tokens, inp)
        total += len(ids)
    return hit_blocks / total, hit_tokens / sum(tokens)


def main() -> None:
    global BLOCK_TOKENS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=10_000_000)
    ap.add_argument("--capacities", type=int, default=50)
    ap.add_argument("--subsample", type=int, default=100_000,
                    help="requests the OrderedDict baseline runs")
    ap.add_argument("--block-tokens", type=int, default=64)
    args = ap.parse_args()
    BLOCK_TOKENS = args.block_tokens
    gen = measure("generate", lambda: generate(args.requests))
    trace = gen.result
    blocks = int(trace["hash_ids"].list.len().sum())
    values = np.asarray(trace["hash_ids"].to_arrow().flatten())     # zero-copy
    distinct = int(values.max()) + 1                                # ids are dense by design
    del values
    caps = np.unique(np.geomspace(64, distinct, args.capacities).astype(np.int64))
    caps_tokens = (caps * BLOCK_TOKENS).tolist()
    print(f"{trace.height:,} requests, {trace['session'].n_unique():,} sessions, "
          f"{blocks:,} blocks ({blocks / trace.height:.1f} per request), {distinct:,} ids; "
          f"{len(caps)} capacities from {caps[0]:,} to {caps[-1]:,} blocks of {BLOCK_TOKENS} "
          f"tokens", flush=True)

    curve = measure("servetrace lru_curve",
                    lambda: kv.lru_curve(trace, caps_tokens, block_tokens=BLOCK_TOKENS))
    print(f"servetrace: {curve.seconds:.1f} s for the whole curve", flush=True)

    sub = trace.head(args.subsample)
    reqs = sub["hash_ids"].to_list()
    toks = sub["input_tokens"].to_list()
    sub_blocks = sum(map(len, reqs))
    base = measure(f"OrderedDict x{len(caps)} ({sub.height:,})", lambda: [
        ordered_dict_lru(reqs, toks, int(c), BLOCK_TOKENS) for c in caps])
    small = measure(f"servetrace ({sub.height:,})",
                    lambda: kv.lru_curve(sub, caps_tokens, block_tokens=BLOCK_TOKENS))
    want = np.array(base.result)
    got = small.result.select("block_hit_ratio", "token_hit_ratio").to_numpy()
    agree = bool(np.allclose(want, got, rtol=0, atol=1e-12))

    print()
    print(report(args.requests, [gen, curve]))
    print(report(sub.height, [base, small]))
    extrapolated = base.seconds * blocks / sub_blocks
    print()
    print(f"baseline (OrderedDict, once per capacity) on {sub.height:,} requests "
          f"({sub_blocks:,} blocks): {base.seconds:.2f} s, extrapolated to {blocks:,} blocks: "
          f"{extrapolated:,.0f} s")
    print(f"servetrace vs the baseline: {extrapolated / curve.seconds:.1f}x faster for the "
          f"whole curve (same prefix: {base.seconds / small.seconds:.1f}x); curves identical "
          f"on the prefix: {agree}")
    print(f"peak RSS during lru_curve: {curve.peak_gb:.2f} GB "
          f"(+{(curve.peak_bytes - curve.base_bytes) / 1e9:.2f} GB over the "
          f"{curve.base_bytes / 1e9:.2f} GB before, which holds the trace)")
    print(f"peak RSS of the whole process (generation, curve, baseline): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9:.2f} GB")
    c = curve.result
    for i in np.linspace(0, c.height - 1, 6).astype(int):
        row = c.row(int(i), named=True)
        print(f"  {row['capacity_blocks']:>12,} blocks: block hit {row['block_hit_ratio']:.4f}"
              f"  token hit {row['token_hit_ratio']:.4f}")


if __name__ == "__main__":
    main()
