"""Scaling a serverless model, each step recorded in its history: subsets, superposition,
time compression, and sizing to a cluster.

Operators (each a :class:`~servetrace.synth.model.ScaleRecord` in
:attr:`~servetrace.synth.serverless.ServerlessModel.history`, written by :func:`metadata` as
the Parquet key-value metadata of a sample):

* ``subset`` / ``representative_subset``: whole functions kept (:func:`subset`, with the
  choice of :mod:`servetrace.synth.serverless_subset`);
* ``superpose_functions``: the rate × f with every function's burst shape kept — functions
  replicated ⌊f⌋ times plus once with probability f − ⌊f⌋ (f < 1 thins whole functions);
  the union of independent point processes (Daley & Vere-Jones 2003, §2.1);
* ``compress_time``: the rate × f with every time scale of the arrivals divided by f (the
  way FaaSRail shrinks a trace by summing minutes): burst lengths, timer periods and the daily
  cycle shrink; durations and memory do not;
* ``size_to_cluster``: superposition until a pilot sample offers a target share of a
  :class:`Cluster`'s binding resource, the warm instances and their memory counted by the
  keep-alive simulation (:mod:`servetrace.analysis.keepalive`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from servetrace.synth.parameters import ScaleRecord
from servetrace.synth.serverless import Chained, Functions, Modulated, Periodic, ServerlessModel
from servetrace.synth.serverless_counts import BATCH_SIZE, GAP_SIZE, TABLE_SIZE, _rng
from servetrace.synth.serverless_exact import IDLE_SIZE

# ----------------------------------------------------------------------------- scaling


def _record(op: str, **params: object) -> ScaleRecord:
    return ScaleRecord(op, tuple((k, str(v)) for k, v in params.items()))


def subset(model: ServerlessModel, index: np.ndarray | list[int], *, op: str = "subset",
           **params: object) -> ServerlessModel:
    """The model restricted (or replicated) to functions ``index`` in that order; repeated
    indices become replicas whose tenant, app and function are named ``<name>~<k>``: another
    owner's copy, with its own instance for keep-alive and its own share for fairness.
    Recorded as ``op`` in the history."""
    idx = np.asarray(index, dtype=np.int64)
    if idx.size == 0:
        raise ValueError("subset: no functions selected")
    if idx.min() < 0 or idx.max() >= model.n_functions:
        raise ValueError(f"subset: function index out of range 0..{model.n_functions - 1}")
    fn = model.functions
    rep = pl.DataFrame({"i": idx}).with_columns(pl.int_range(pl.len()).over("i").alias("k"))
    k = rep["k"].to_numpy()
    def renamed(values: tuple[str | None, ...]) -> tuple[str | None, ...]:
        col = pl.DataFrame({"v": pl.Series(list(values), dtype=pl.String).gather(idx), "k": k})
        return tuple(col.select(pl.when(pl.col("k") == 0).then(pl.col("v"))
                                .otherwise(pl.format("{}~{}", "v", "k")))
                     .to_series().to_list())

    def pick(t):
        return tuple(np.asarray(t, dtype=object)[idx].tolist())

    p, m = model.periodic, model.modulated

    def rows_of(kind_index: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """New function positions of this kind and their rows in the kind's arrays."""
        pos = np.full(model.n_functions, -1, dtype=np.int64)
        pos[list(kind_index)] = np.arange(len(kind_index))
        at = pos[idx]
        new = np.flatnonzero(at >= 0)
        return new, at[new]

    p_new, pj = rows_of(p.index)
    m_new, mj = rows_of(m.index)
    c = model.chained
    c_new, cj = rows_of(c.index)
    rng = _rng(int(np.asarray(idx).sum()) + len(idx), 5)
    period = np.asarray(p.period_s)[pj] if pj.size else np.zeros(0)
    # a replica is another function: its timer gets its own phase, not its original's
    replica = k[p_new] > 0
    phase = np.asarray(p.phase_s)[pj] if pj.size else np.zeros(0)
    wphase = np.asarray(p.window_phase_s)[pj] if pj.size else np.zeros(0)
    if replica.any():
        new_phase = rng.random(int(replica.sum())) * period[replica]
        phase = phase.copy()
        phase[replica] = new_phase
        wphase = wphase.copy()
        wphase[replica] = np.floor(new_phase / model.window_s) * model.window_s
    nh = 2 * len(m.harmonic_periods_s)
    tab = np.asarray(m.table).reshape(len(m.index), TABLE_SIZE)
    har = np.asarray(m.harmonics).reshape(len(m.index), nh)
    s = model.sizes
    dk = np.asarray(s.duration_s).reshape(model.n_functions, -1)[idx]
    mk = np.asarray(s.memory_mb).reshape(model.n_functions, -1)[idx]
    return dataclasses.replace(
        model,
        functions=Functions(renamed(fn.tenant), renamed(fn.app), renamed(fn.function),
                            pick(fn.trigger),
                            pick(fn.kind)),
        periodic=Periodic(
            index=tuple(p_new.tolist()), period_s=tuple(period.tolist()),
            phase_s=tuple(phase.tolist()), window_phase_s=tuple(wphase.tolist()),
            batch=tuple(np.asarray(p.batch).reshape(-1, BATCH_SIZE)[pj].ravel().tolist()),
            jitter=tuple(np.asarray(p.jitter)[pj].tolist()),
            miss=tuple(np.asarray(p.miss)[pj].tolist()),
            alive=tuple(np.asarray(p.alive)[pj].tolist()) if p.alive else (),
            offset_s=(tuple(np.asarray(p.offset_s).reshape(len(p.index), -1)[pj].ravel()
                            .tolist()) if p.offset_s else ())),
        modulated=Modulated(
            index=tuple(m_new.tolist()),
            zero_p=tuple(np.asarray(m.zero_p)[mj].tolist()),
            table=tuple(tab[mj].ravel().tolist()), hurst=tuple(np.asarray(m.hurst)[mj].tolist()),
            harmonic_periods_s=m.harmonic_periods_s, harmonics=tuple(har[mj].ravel().tolist()),
            gaps=(tuple(np.asarray(m.gaps).reshape(len(m.index), GAP_SIZE)[mj].ravel().tolist())
                  if m.gaps else ()),
            kappa=tuple(np.asarray(m.kappa)[mj].tolist()) if m.kappa else ()),
        sizes=dataclasses.replace(s, duration_s=tuple(dk.ravel().tolist()),
                                  memory_mb=tuple(mk.ravel().tolist())),
        chained=Chained(index=tuple(c_new.tolist()), idle_s=tuple(
            np.asarray(c.idle_s).reshape(len(c.index), IDLE_SIZE)[cj].ravel().tolist())
            if c.index else ()),
        n_invocations=model.n_invocations,
        history=(*model.history, _record(op, functions=len(idx), **params)))


def superpose_functions(model: ServerlessModel, factor: float, seed: int = 0) -> ServerlessModel:
    """Rate × ``factor`` with every function's burst shape kept (operator
    ``superpose_functions``): each function is kept ⌊factor⌋ times plus once more with
    probability factor − ⌊factor⌋ (seeded; factor < 1 is function thinning). Replicas are
    new functions (``<name>~k``) with independent draws and, for timers, their own phase.
    The expected rate is exactly ``factor`` × the model's; the achieved one is recorded."""
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"superpose_functions: factor must be finite and > 0, got {factor!r}")
    rng = _rng(seed, 6)
    whole = math.floor(factor)
    extra = rng.random(model.n_functions) < (factor - whole)
    reps = whole + extra.astype(np.int64)
    if reps.sum() == 0:
        reps[int(np.argmax(rng.random(model.n_functions)))] = 1
    idx = np.repeat(np.arange(model.n_functions), reps)
    out = subset(model, idx, op="superpose_functions", factor=factor, seed=seed)
    return dataclasses.replace(out, history=(*out.history[:-1], _record(
        "superpose_functions", factor=factor, seed=seed, functions=len(idx),
        rate_before=model.mean_rate, rate_after=out.mean_rate)))


def compress_time(model: ServerlessModel, factor: float) -> ServerlessModel:
    """Rate × ``factor`` by time compression (operator ``compress_time``, FaaSRail's way):
    every time scale of the arrivals (windows, timer periods, bursts, the daily cycle) shrinks
    by ``factor``; durations and memory are unchanged."""
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"compress_time: factor must be finite and > 0, got {factor!r}")
    return dataclasses.replace(model, time_scale=model.time_scale * factor,
                               history=(*model.history, _record("compress_time", factor=factor)))


def target_rate(model: ServerlessModel, target_rps: float, op: str = "superpose_functions",
                seed: int = 0) -> ServerlessModel:
    """Scale the model to ``target_rps`` invocations per second with ``op``
    (``superpose_functions`` keeps burst shape, ``compress_time`` changes it)."""
    if not (math.isfinite(target_rps) and target_rps > 0):
        raise ValueError(f"target_rate: target_rps must be finite and > 0, got {target_rps!r}")
    rate = model.mean_rate
    if rate <= 0:
        raise ValueError("target_rate: the model has a zero rate")
    if op == "superpose_functions":
        return superpose_functions(model, target_rps / rate, seed)
    if op == "compress_time":
        return compress_time(model, target_rps / rate)
    raise ValueError(f"target_rate: unknown op {op!r}; known: superpose_functions, "
                     "compress_time")


def metadata(model: ServerlessModel, duration_s: float, seed: int) -> dict[str, str]:
    """Parquet key-value metadata of a sample: scaling history plus the sampling call."""
    from servetrace.synth.scale import METADATA_KEY, records_json
    recs = (*model.history, _record("sample", source=model.source, version=model.version,
                                    duration_s=duration_s, seed=seed,
                                    within=f"{model.within.source} kappa={model.within.kappa:g}"))
    return {METADATA_KEY: records_json(recs)}


# ----------------------------------------------------------------------------- cluster sizing


@dataclass(frozen=True)
class Cluster:
    """A FaaS cluster: ``nodes`` × (``cores``, ``memory_mb``), and the keep-alive policy of
    :mod:`servetrace.analysis.keepalive` that decides how long idle instances hold memory."""

    nodes: int
    cores: float
    memory_mb: float
    keep_alive_s: float = 600.0
    hybrid: bool = False
    """Use the hybrid histogram policy (Shahrad et al., ATC 2020) instead of the fixed one."""

    def __post_init__(self) -> None:
        for name in ("nodes", "cores", "memory_mb"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"Cluster: {name} must be finite and > 0, got {v!r}")


@dataclass(frozen=True)
class Load:
    """Offered load of a sample on a :class:`Cluster` (fractions of its capacity)."""

    cpu: float
    """Σ durations (one core per running invocation) / (nodes · cores · duration)."""
    memory: float
    """Σ over apps of memory × (busy + kept-alive idle seconds) / (nodes · memory · duration)."""
    warm_instances: float
    """Time-averaged instances loaded (busy or kept alive)."""

    @property
    def utilization(self) -> float:
        """The binding resource: max(cpu, memory)."""
        return max(self.cpu, self.memory)


def offered_load(invocations: pl.DataFrame, cluster: Cluster, duration_s: float,
                 seed: int = 0) -> Load:
    """The load a sample offers a cluster, with the keep-alive simulation counting the warm
    instances (one per app, :func:`servetrace.analysis.keepalive.simulate`): CPU from the
    invocations' durations, memory from each app's instance memory × its busy and kept-alive
    seconds. Concurrency within an app is not multiplied out (the simulation's one-instance
    model), so memory is a lower bound where an app runs invocations in parallel."""
    from servetrace.analysis import keepalive

    if invocations.height == 0:
        return Load(0.0, 0.0, 0.0)
    pol = (keepalive.HybridHistogram(fallback_s=cluster.keep_alive_s) if cluster.hybrid
           else keepalive.FixedKeepAlive(cluster.keep_alive_s))
    frame = invocations.with_columns(pl.col("duration_s").fill_null(0.0),
                                     pl.col("memory_mb").fill_null(keepalive.DEFAULT_MEMORY_MB))
    per_app = keepalive.simulate(frame, pol, by="app", seed=seed, horizon_s=duration_s)
    busy = frame.group_by("app").agg(pl.col("duration_s").sum().alias("busy_s"))
    per_app = per_app.join(busy, on="app", how="left")
    held = per_app.select(((pl.col("busy_s") + pl.col("idle_s")) * pl.col("memory_mb")).sum(),
                          (pl.col("busy_s") + pl.col("idle_s")).sum().alias("t")).row(0)
    cpu = float(frame["duration_s"].sum()) / (cluster.nodes * cluster.cores * duration_s)
    mem = float(held[0]) / (cluster.nodes * cluster.memory_mb * duration_s)
    return Load(cpu, mem, float(held[1]) / duration_s)


def size_to_cluster(model: ServerlessModel, cluster: Cluster, utilization: float, *,
                    pilot_s: float = 3600.0, seed: int = 0, steps: int = 3
                    ) -> tuple[ServerlessModel, Load]:
    """Scale the model by :func:`superpose_functions` (burst shape kept) until a pilot sample
    of ``pilot_s`` offers ``utilization`` of the cluster's binding resource (operator
    ``size_to_cluster``, recorded with the cluster and the load reached). Offered load grows
    about linearly with the number of functions, so each step multiplies the factor by
    target / reached (a fixed point in a few steps)."""
    if not (0 < utilization and math.isfinite(utilization)):
        raise ValueError(f"size_to_cluster: utilization must be > 0, got {utilization!r}")
    factor = 1.0
    scaled, load = model, offered_load(model.sample(pilot_s, seed), cluster, pilot_s, seed)
    for _ in range(steps):  # a few fixed-point steps
        if load.utilization <= 0:
            raise ValueError("size_to_cluster: the model offers no load")
        factor *= utilization / load.utilization
        scaled = superpose_functions(model, factor, seed)
        load = offered_load(scaled.sample(pilot_s, seed), cluster, pilot_s, seed)
    record = _record("size_to_cluster", nodes=cluster.nodes, cores=cluster.cores,
                     memory_mb=cluster.memory_mb, keep_alive_s=cluster.keep_alive_s,
                     hybrid=cluster.hybrid, target=utilization, factor=factor,
                     cpu=round(load.cpu, 6), memory=round(load.memory, 6))
    return dataclasses.replace(scaled, history=(*scaled.history, record)), load
