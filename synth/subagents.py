"""Sub-agents of the workload model's sessions: how often a turn launches sub-agents, how
many, how deep and how long they run, fitted from the turn DAG of a ``requests`` table
(``subagent``, ``parent_request_id``) and sampled as more requests of their session (see
:mod:`servetrace.synth.model`).

A coding agent hands a task to sub-agents (Claude Code's ``Task`` tool: an ``Explore`` agent
with its own system prompt and its own growing context); their requests are the sub-agent
entries of WEKA's agentic traces (``callanjfox/kv-cache-tester``, ``trace_replay_tester.md``).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from servetrace.synth.lengths import _lengths
from servetrace.synth.parameters import Sessions, SubAgents, Table
from servetrace.synth.prefixes import _shared_blocks
from servetrace.synth.sessions import _filled, _turn_gaps


def _fit_subagents(frame: pl.DataFrame) -> SubAgents | None:
    """Spawning probability per main-agent turn, sub-agents per launching request, turns per
    sub-agent, the nested spawning probability per sub-agent turn and the deepest level,
    the root blocks that a session's sub-agents share (median common leading run of a
    sub-agent's first request with the session's previous sub-agent's), and the lengths of
    a sub-agent's first request. ``None`` without sub-agents or the DAG's columns."""
    need = ("subagent", "parent_request_id", "request_id", "session")
    if not all(_filled(frame, c) for c in need):
        return None
    main = frame.filter(pl.col("subagent").is_null())
    sub = frame.filter(pl.col("subagent").is_not_null())
    if sub.height == 0 or main.height == 0:
        return None
    depth = (pl.col("agent_depth").max() if "agent_depth" in sub.columns
             else pl.lit(1, pl.Int64))
    agents = (sub.group_by("session", "subagent", maintain_order=True)
              .agg(pl.len().alias("n"), pl.col("parent_request_id").first().alias("launcher"),
                   depth.fill_null(1).alias("depth"), pl.col("input_tokens").first(),
                   pl.col("output_tokens").first(), pl.col("hash_ids").first()))
    launchers = agents.group_by("session", "launcher").len()
    from_main = launchers.join(main.select(pl.col("request_id").alias("launcher")),
                               on="launcher", how="semi").height
    firsts = agents.with_columns(pl.col("hash_ids").shift(1).over("session").alias("_ph"))
    firsts = firsts.filter(pl.col("_ph").is_not_null() & pl.col("hash_ids").is_not_null())
    root = int(np.median(_shared_blocks(firsts, "hash_ids", "_ph"))) if firsts.height else 0
    return SubAgents(
        spawn_p=from_main / main.height,
        fanout=Table.of(launchers["len"].to_numpy(), integer=True),
        turns=Table.of(agents["n"].to_numpy(), integer=True),
        nested_p=(launchers.height - from_main) / sub.height,
        max_depth=int(agents["depth"].max() or 1),
        root_blocks=root,
        first=_lengths(agents["input_tokens"].to_numpy(), agents["output_tokens"].to_numpy()))


def _subagent_requests(sessions: Sessions, t: np.ndarray, sess: np.ndarray, duration: float,
                       rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Sub-agent requests launched from the requests at times ``t`` of sessions ``sess``
    (the main agents'), level by level down to ``max_depth``: a request launches with
    probability ``spawn_p`` (``nested_p`` inside a sub-agent) ``fanout`` sub-agents of
    ``turns`` turns each; a sub-agent's first request follows its launcher, and each next
    one the previous, by the sessions' server + think gaps; requests past ``duration`` are
    cut. Returns arrays: ``t``, ``session``, ``agent`` (0, 1, … over the sample), ``turn``
    (0-based in its agent), ``parent`` (index into the launching requests followed by
    these, in their order: the launcher for a first turn, the previous turn otherwise),
    ``depth``, ``think``, ``server``."""
    sa = sessions.subagents
    keys = ("t", "session", "agent", "turn", "parent", "depth", "think", "server")
    out: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    if sa is None:
        return {k: np.zeros(0, np.float64 if k in ("t", "think", "server") else np.int64)
                for k in keys}
    cand_t, cand_s = t, sess
    cand_idx = np.arange(len(t))  # index of each candidate launcher in the combined order
    base = len(t)
    n_agents = 0
    for level in range(1, sa.max_depth + 1):  # ≤ a few nesting levels
        p = sa.spawn_p if level == 1 else sa.nested_p
        spawn = np.flatnonzero(rng.random(len(cand_t)) < p)
        if len(spawn) == 0:
            break
        fan = np.maximum(sa.fanout.ppf(rng.random(len(spawn))).astype(np.int64), 1)
        launcher = np.repeat(spawn, fan)
        turns = np.maximum(sa.turns.ppf(rng.random(len(launcher))).astype(np.int64), 1)
        agent = np.repeat(np.arange(len(launcher)), turns)
        first = np.concatenate([[0], np.cumsum(turns)[:-1]])
        turn = np.arange(len(agent)) - first[agent]
        gap, think, server = _turn_gaps(sessions, turn + 1, rng)
        cs = np.cumsum(gap)
        ts = cand_t[launcher][agent] + cs - np.concatenate([[0.0], cs])[first][agent]
        keep = ts < duration
        # parent: the launcher for a first turn, the previous turn of the agent otherwise
        here = base + np.cumsum(keep) - 1  # combined index of each kept request
        parent = np.where(turn == 0, cand_idx[launcher][agent],
                          np.concatenate([[0], here[:-1]]))
        # a cut turn cuts the agent's later ones (times grow along an agent)
        for k, v in (("t", ts), ("session", cand_s[launcher][agent]),
                     ("agent", agent + n_agents), ("turn", turn), ("parent", parent),
                     ("depth", np.full(len(agent), level)), ("think", think),
                     ("server", server)):
            out[k].append(v[keep])
        n_agents += len(launcher)
        cand_t, cand_s = ts[keep], cand_s[launcher][agent][keep]
        cand_idx = here[keep]
        base += int(keep.sum())
    return {k: (np.concatenate(v) if v else
                np.zeros(0, np.float64 if k in ("t", "think", "server") else np.int64))
            for k, v in out.items()}
