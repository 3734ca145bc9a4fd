"""Sampling format 3's sessions as turn DAGs (see :mod:`servetrace.synth.model`): session
requests with their think and server times by turn, request types and sub-agents, and with
prefix blocks the chains of hash ids each turn extends (:mod:`~servetrace.synth.prefixes`);
without prefix blocks, lengths from each turn class's copula.
"""

from __future__ import annotations

import math

import numpy as np

from servetrace.synth.arrivals import _even_scores, _rng, _times
from servetrace.synth.lengths import _copula, _stratified_normal
from servetrace.synth.parameters import Group, Sessions
from servetrace.synth.prefixes import _chain_ids, _chain_lengths, _prefix_chains
from servetrace.synth.sessions import _request_types, _session_requests
from servetrace.synth.subagents import _subagent_requests


def _previous(chain: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Index of the previous member of each request's chain (−1 for a chain's first)."""
    order = np.lexsort((position, chain))
    c = chain[order]
    prev = np.full(len(chain), -1, np.int64)
    later = np.concatenate([[False], c[1:] == c[:-1]]) if len(c) else np.zeros(0, bool)
    prev[order[later]] = order[np.flatnonzero(later) - 1]
    return prev


def _sample_chains(g: Group, gi: int, duration: float, seed: int, rate_scale: float
                   ) -> dict[str, object]:
    """A group of format 3: sessions as turn DAGs (with their sub-agents), and with
    :attr:`Prefix.growth` sessions or conversations as chains of requests whose inputs grow
    and whose hash ids extend the previous member's
    (:func:`~servetrace.synth.prefixes._chain_ids`). Without prefix blocks a session's
    lengths come from its turn classes' copulas (a shared per-session input score) and a
    sub-agent's from its first request's."""
    rng_t, rng_l, rng_s, rng_p, rng_lab = (_rng(seed, gi, k) for k in range(5))
    p = g.prefix if g.prefix is not None and g.prefix.growth else None
    ids = offsets = None
    extra: dict[str, np.ndarray] = {}
    session_idx = None
    if g.sessions is not None:
        ss = g.sessions
        t, sess, turn, n_sess, think, server = _session_requests(
            g.arrivals, ss, duration, rate_scale, rng_t, rng_s, detail=True)
        sub = _subagent_requests(ss, t, sess, duration, _rng(seed, gi, 5))
        n_main, n_sub = len(t), len(sub["t"])
        sa = ss.subagents
        first = sa.first if sa is not None and sa.first is not None else ss.by_turn[0]
        position = np.concatenate([turn, sub["turn"]])
        if p is not None:
            inp_m, out_m, drop_m = _chain_lengths(p, ss.by_turn[0], ss.by_turn, sess, turn,
                                                  rng_l)
            inp_s, out_s, drop_s = _chain_lengths(p, first, ss.by_turn, sub["agent"],
                                                  sub["turn"], _rng(seed, gi, 6), remap=False)
            n_agents = int(sub["agent"].max()) + 1 if n_sub else 0
            agent_session = np.full(n_agents, -1, np.int64)
            agent_session[sub["agent"]] = sub["session"]
            chain = np.concatenate([sess, n_sess + sub["agent"]])
            ids, offsets = _chain_ids(p, chain, position, np.concatenate([inp_m, inp_s]),
                                      np.concatenate([drop_m, drop_s]), rng_p,
                                      np.concatenate([np.full(n_sess, -1), agent_session]),
                                      sa.root_blocks if sa is not None else 0)
        else:
            inp_m, out_m = _turn_lengths(ss, sess, turn, n_sess, rng_l)
            inp_s, out_s = _copula(first, _stratified_normal(n_sub, _rng(seed, gi, 6)),
                                   _rng(seed, gi, 6))
        inp = np.concatenate([inp_m, inp_s])
        out = np.concatenate([out_m, out_s])
        parent = np.concatenate([_previous(sess, turn), sub["parent"]])
        t = np.concatenate([t, sub["t"]])
        session_idx = np.concatenate([sess, sub["session"]])
        extra = {"turn": position + 1, "parent": parent,
                 "agent": np.concatenate([np.full(n_main, -1), sub["agent"]]),
                 "agent_depth": np.concatenate([np.zeros(n_main, np.int64), sub["depth"]]),
                 "think_s": np.concatenate([think, sub["think"]]),
                 "server_s": np.concatenate([server, sub["server"]])}
        types = _request_types(ss, position, rng_s)
        if types is not None:
            extra["request_type"] = types
        # requests in time order (sub-agents interleave with their sessions)
        order = np.argsort(t, kind="stable")
        inv = np.empty(len(order), np.int64)
        inv[order] = np.arange(len(order))
        if ids is not None and offsets is not None:
            nb = np.diff(offsets)
            starts = offsets[:-1][order]
            ids = ids[np.repeat(starts, nb[order]) + np.arange(int(nb.sum()))
                      - np.repeat(np.cumsum(nb[order]) - nb[order], nb[order])]
            offsets = np.concatenate([[0], np.cumsum(nb[order])]).astype(np.int64)
        t, inp, out, session_idx = t[order], inp[order], out[order], session_idx[order]
        extra = {k: v[order] for k, v in extra.items()}
        extra["parent"] = np.where(extra["parent"] >= 0, inv[np.maximum(extra["parent"], 0)],
                                   -1)
    else:
        assert p is not None
        t = _times(g.arrivals, duration, rate_scale, rng_t)
        chain, position = _prefix_chains(p, len(t), rng_p)
        first = p.by_position[0] if p.by_position else g.lengths
        inp, out, drop = _chain_lengths(p, first, p.by_position or (g.lengths,), chain,
                                        position, rng_l)
        ids, offsets = _chain_ids(p, chain, position, inp, drop, rng_p)
    n = len(t)
    lab = (rng_lab.choice(len(g.labels.weights), size=n, p=np.asarray(g.labels.weights))
           if len(g.labels.weights) > 1 else np.zeros(n, np.int64))
    return {"t": t, "input": inp, "output": out, "labels": lab, "session": session_idx,
            "hash": (ids, offsets) if ids is not None else None, "extra": extra}


def _turn_lengths(ss: Sessions, sess: np.ndarray, turn: np.ndarray, n_sess: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Lengths per turn class, with a shared session component in the input score."""
    rho = ss.input_rho
    z_sess = rng.standard_normal(n_sess)[sess]
    z_in = math.sqrt(rho) * z_sess + math.sqrt(1 - rho) * rng.standard_normal(len(turn))
    cls = np.minimum(turn, len(ss.by_turn) - 1)
    inp = np.empty(len(turn), np.int64)
    out = np.empty(len(turn), np.int64)
    for c, lm in enumerate(ss.by_turn):  # ≤ 8 turn classes
        sel = cls == c
        inp[sel], out[sel] = _copula(lm, _even_scores(z_in[sel]), rng)
    return inp, out


def _has_dag(ss: Sessions | None) -> bool:
    """Whether sessions carry format 3's turn DAG (times or types by turn, sub-agents)."""
    return ss is not None and bool(ss.think_by_turn or ss.types or ss.subagents is not None)
