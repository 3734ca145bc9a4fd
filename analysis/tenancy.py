"""Tenants of a canonical ``requests`` table, as :mod:`servetrace.analysis.fairness` and
:mod:`servetrace.analysis.scheduling` read them: the tenant key columns (``by``) and one label
per tenant, the service cost ``w_in · input_tokens + w_out · output_tokens`` (Sheng et al.,
OSDI 2024: the VTC artifact's prices), and the checks both modules share.

Any column can be the tenant key; ``by="class"`` is short for ``request_class``, the class of a
workload mix (:mod:`servetrace.analysis.classes`), so that fairness across classes (online
against offline, one priority level against another) is fairness across tenants.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl

from servetrace.analysis.classes import class_column
from servetrace.analysis.frames import columns, lazy

Frame = pl.DataFrame | pl.LazyFrame
By = str | Sequence[str]

W_IN = 1.0
"""Default cost of one input token (``input_price = 1`` in the VTC artifact's scheduler)."""
W_OUT = 2.0
"""Default cost of one output token (``output_price = 2`` in the VTC artifact's scheduler)."""
MEASURES = ("requests", "service")

_REQUIRED = ("arrival_s", "input_tokens", "output_tokens")


def _lazy(frame: Frame, name: str = "requests") -> pl.LazyFrame:
    return lazy(frame, name)


def _keys(by: By | None) -> list[str]:
    if by is None:
        raise ValueError("by: fairness groups requests by tenant; name the column(s), "
                         "e.g. by='tenant'")
    keys = [class_column(k) for k in columns(by)]  # "class": the mix's request_class
    if not keys:
        raise ValueError("by: no column given")
    return keys


def _check(lf: pl.LazyFrame, columns: Sequence[str], name: str = "requests") -> None:
    schema = lf.collect_schema()
    for c in columns:
        if c not in schema:
            raise ValueError(f"{name}: missing column {c!r}")


def _weights(w_in: float, w_out: float) -> None:
    for name, w in (("w_in", w_in), ("w_out", w_out)):
        if not (math.isfinite(w) and w >= 0):
            raise ValueError(f"{name}: must be a finite number >= 0, got {w!r}")
    if w_in == 0 and w_out == 0:
        raise ValueError("w_in, w_out: at least one token weight must be positive")


def _service(w_in: float, w_out: float) -> pl.Expr:
    return (w_in * pl.col("input_tokens").cast(pl.Float64)
            + w_out * pl.col("output_tokens").cast(pl.Float64))


def _strings(keys: Sequence[str], schema: pl.Schema) -> list[pl.Expr]:
    """The key columns, Categorical/Enum ones as strings (stable sorting and joins)."""
    return [pl.col(k).cast(pl.String) if isinstance(schema[k], pl.Categorical | pl.Enum)
            else pl.col(k) for k in keys]


def _label(keys: Sequence[str]) -> pl.Expr:
    """One string per tenant: the key column, or the key columns joined with ``/``."""
    if len(keys) == 1:
        return pl.col(keys[0]).cast(pl.String).alias("tenant")
    return pl.concat_str([pl.col(k).cast(pl.String) for k in keys], separator="/").alias(
        "tenant")


def _values(x: Sequence[float] | np.ndarray | pl.Series, name: str) -> np.ndarray:
    a = np.asarray(x.to_numpy() if isinstance(x, pl.Series) else x, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError(f"{name}: empty input")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: values must be finite")
    if (a < 0).any():
        raise ValueError(f"{name}: values must be >= 0")
    return a
