"""Where embarrassingly parallel work runs: in this process (``local``) or on Ray (``ray``).

An :class:`Engine` maps a function over a list of partitions and returns the results in
partition order. The analyses that split into independent parts (per-unit keep-alive
simulation in :mod:`servetrace.analysis.keepalive`, one scheduler simulation per policy in
:mod:`servetrace.analysis.fairness`, one fidelity run per seed in
:mod:`servetrace.synth.fidelity`, buckets of per-tenant fits in :mod:`servetrace.synth.model`)
build the partitions, hand them to an engine and merge the results exactly as their
one-process path does, so both engines give the same answer.

- :class:`LocalEngine` runs the partitions one after another in this process: no dependency,
  the default.
- :class:`RayEngine` runs each partition as a Ray task (``ray.remote``; Moritz et al., "Ray: A
  Distributed Framework for Emerging AI Applications", OSDI 2018) on a local Ray instance or
  the cluster at ``address`` (``"auto"``, ``"ray://head:10001"``). Arguments shared by every
  partition are put in Ray's object store once (``ray.put``), not once per task. Ray is the
  optional extra ``servetrace[ray]``.

Data travels by path where it can: a partition that names Parquet files (a lazy
``scan_parquet`` plan, a scratch folder) is read by the worker itself, so a store on a shared
file system or on object storage that Polars reads (``s3://...``) never passes through the
driver. :func:`hash_bucket` assigns rows to partitions by a hash of their unit key that every
process computes alike (strings, not the process-local codes of a Categorical).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import polars as pl

from servetrace.extras import require

R = TypeVar("R")

ENGINES = ("local", "ray")


@runtime_checkable
class Engine(Protocol):
    """Maps a function over partitions: ``map(fn, parts, *shared) == [fn(p, *shared) ...]``."""

    name: str

    @property
    def workers(self) -> int:
        """How many partitions can run at once (CPU slots)."""
        ...

    def map(self, fn: Callable[..., R], parts: Sequence[Any], *shared: Any) -> list[R]:
        """``[fn(p, *shared) for p in parts]``, in the order of ``parts``."""
        ...


class LocalEngine:
    """Runs every partition in this process, one after another."""

    name = "local"

    @property
    def workers(self) -> int:
        return 1

    def map(self, fn: Callable[..., R], parts: Sequence[Any], *shared: Any) -> list[R]:
        return [fn(p, *shared) for p in parts]


class RayEngine:
    """Runs every partition as a Ray task (one CPU each).

    Connects to the Ray instance already initialized in this process if there is one, else
    calls ``ray.init(address=address, num_cpus=num_cpus)``: ``address=None`` starts a local
    instance, ``"auto"`` joins the cluster this machine belongs to, ``"ray://host:10001"`` a
    remote one through Ray Client. A task that raises re-raises here as the same exception
    type (Ray's ``RayTaskError`` subclasses the cause), so errors read as in the local engine.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        self._ray = require("ray", "ray", "the Ray engine (--engine ray)")
        if not self._ray.is_initialized():
            self._ray.init(address=address, num_cpus=num_cpus, include_dashboard=False,
                           log_to_driver=False, configure_logging=False)

    @property
    def workers(self) -> int:
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def map(self, fn: Callable[..., R], parts: Sequence[Any], *shared: Any) -> list[R]:
        ray = self._ray
        refs = [ray.put(s) for s in shared]
        task = ray.remote(num_cpus=1, max_retries=0)(fn)
        return ray.get([task.remote(p, *refs) for p in parts])


def get_engine(name: str = "local", address: str | None = None) -> Engine:
    """The engine called ``name`` (``local`` or ``ray``); ``address`` is Ray's cluster."""
    if name == "local":
        if address is not None:
            raise ValueError("--ray-address needs --engine ray")
        return LocalEngine()
    if name == "ray":
        return RayEngine(address)
    raise ValueError(f"engine: unknown engine {name!r}; one of {', '.join(ENGINES)}")


def hash_bucket(by: Sequence[str], buckets: int) -> pl.Expr:
    """``hash(key) mod buckets`` of each row's unit key (the ``by`` columns), as UInt32.

    The key columns are hashed as strings (nulls stay nulls inside the struct), so every
    process and every file of a trace puts a unit in the same bucket, whatever the physical
    codes of its Categorical columns. Polars guarantees the hash within one Polars version,
    which a Ray cluster shares with its driver.
    """
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    if not by:
        return pl.lit(0, pl.UInt32)
    key = pl.struct([pl.col(c).cast(pl.String) for c in by])
    return (key.hash(seed=0) % buckets).cast(pl.UInt32)
