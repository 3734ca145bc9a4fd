"""Scaling a workload, each step recorded: rate rescaling, time compression, tenant thinning
and superposition, and targeting a hardware profile.

* **Rate rescaling** changes the mean rate and keeps the burst shape: on a model, every
  group's rate λ(t) becomes f·λ(t) (same modulation path in time, same renewal shape, same
  think times); on a trace, f ≤ 1 is independent p-thinning (a p-thinned Cox process is the Cox
  process of intensity p·λ(t), Daley & Vere-Jones 2003 §11.3), f > 1 fits a model
  (:func:`servetrace.synth.model.fit`) and samples it at ``rate_scale`` f over the trace's span.
* **Time compression** divides every arrival time by f: the rate grows by f and every time
  scale of the burst shape (burst lengths, think times, the diurnal period) shrinks by f.
* **Tenant thinning** keeps whole tenants (named, or a seeded random fraction of them);
  **superposition** merges traces (the union of point processes) in arrival order.
* **Hardware targeting**: :func:`rate_scale_for` picks the rate scale at which the model's
  offered load is a target utilization of a :class:`HardwareProfile` (formula there).

Every step is a :class:`~synth.model.ScaleRecord`. Model steps append to
:attr:`WorkloadModel.history`; trace steps return a :class:`Scaled` (the frame plus the
records so far), whose :meth:`Scaled.metadata` is a ``{key: JSON}`` dict to store as Parquet
key-value metadata (e.g. ``DataFrame.write_parquet(..., metadata=scaled.metadata())``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from servetrace.synth.model import WorkloadModel, fit
from servetrace.synth.parameters import Arrivals, Piecewise, ScaleRecord

METADATA_KEY = "servetrace:scaling"
"""Parquet key-value metadata key of the scaling records (a JSON list)."""


@dataclass(frozen=True)
class Scaled:
    """A scaled ``requests`` frame and the steps that made it, oldest first."""

    requests: pl.DataFrame
    records: tuple[ScaleRecord, ...] = ()

    def metadata(self) -> dict[str, str]:
        """``{METADATA_KEY: JSON list of {"op": ..., **params}}`` for Parquet metadata."""
        return {METADATA_KEY: records_json(self.records)}


def records_json(records: Sequence[ScaleRecord]) -> str:
    """The records as a JSON list of objects ``{"op": ..., <param>: <value text>, ...}``."""
    return json.dumps([{"op": r.op, **dict(r.params)} for r in records])


def _record(op: str, **params: object) -> ScaleRecord:
    return ScaleRecord(op, tuple((k, str(v)) for k, v in params.items()))


def _frame(requests: pl.DataFrame | pl.LazyFrame | Scaled, fn: str
           ) -> tuple[pl.DataFrame, tuple[ScaleRecord, ...]]:
    if isinstance(requests, Scaled):
        frame, records = requests.requests, requests.records
    elif isinstance(requests, pl.LazyFrame):
        frame, records = requests.collect(), ()
    elif isinstance(requests, pl.DataFrame):
        frame, records = requests, ()
    else:
        raise ValueError(f"{fn}: expected a requests frame, got {type(requests).__name__}")
    if "arrival_s" not in frame.columns:
        raise ValueError(f"{fn}: requests lacks column 'arrival_s'")
    return frame, records


def _positive(value: float, name: str, fn: str) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{fn}: {name} must be a positive number, got {value!r}")
    return float(value)


def scale_model(model: WorkloadModel, factor: float, *, op: str = "rescale_rate",
                **params: object) -> WorkloadModel:
    """``model`` with every group's rate multiplied by ``factor`` and the step recorded."""
    factor = _positive(factor, "factor", op)
    groups = []
    for g in model.groups:
        a = g.arrivals
        if isinstance(a, Piecewise):
            a = dataclasses.replace(a, rates=tuple(r * factor for r in a.rates))
        else:
            assert isinstance(a, Arrivals)
            a = dataclasses.replace(a, rate=a.rate * factor)
        groups.append(dataclasses.replace(g, arrivals=a))
    record = _record(op, factor=factor, **params)
    return dataclasses.replace(model, groups=tuple(groups), history=(*model.history, record))


def rescale_rate(model_or_requests: WorkloadModel | pl.DataFrame | pl.LazyFrame | Scaled,
                 factor: float, *, seed: int = 0) -> WorkloadModel | Scaled:
    """Multiply the mean rate by ``factor``, keeping the burst shape (see the module doc).

    A :class:`WorkloadModel` gives a model (rates × ``factor``, recorded in ``history``); a
    requests frame gives a :class:`Scaled`: for ``factor`` ≤ 1 the requests kept by seeded
    independent thinning, otherwise a sample of the model fitted to them, over their span, at
    ``rate_scale`` = ``factor``.
    """
    factor = _positive(factor, "factor", "rescale_rate")
    if isinstance(model_or_requests, WorkloadModel):
        return scale_model(model_or_requests, factor)
    frame, records = _frame(model_or_requests, "rescale_rate")
    if factor <= 1.0:
        keep = np.random.default_rng(seed).random(frame.height) < factor
        out = frame.filter(pl.Series(keep))
        how = "thinning"
    else:
        model = fit(frame)
        out = model.sample(model.span_s, seed, rate_scale=factor)
        how = "fit+sample"
    return Scaled(out, (*records, _record("rescale_rate", factor=factor, method=how,
                                          seed=seed)))


def compress_time(requests: pl.DataFrame | pl.LazyFrame | Scaled, factor: float) -> Scaled:
    """Arrival times divided by ``factor`` (> 1 compresses: rate × factor, all time scales of
    the arrival pattern ÷ factor); other columns untouched."""
    factor = _positive(factor, "factor", "compress_time")
    frame, records = _frame(requests, "compress_time")
    out = frame.with_columns(pl.col("arrival_s") / factor)
    return Scaled(out, (*records, _record("compress_time", factor=factor)))


def thin(requests: pl.DataFrame | pl.LazyFrame | Scaled, *,
         tenants: Sequence[str] | None = None, fraction: float | None = None,
         seed: int = 0, by: str = "tenant") -> Scaled:
    """Keep whole tenants: those named in ``tenants``, and/or a seeded random ``fraction`` of
    the (remaining) distinct values of ``by``. Null tenants count as one tenant."""
    frame, records = _frame(requests, "thin")
    if tenants is None and fraction is None:
        raise ValueError("thin: give tenants, fraction or both")
    if by not in frame.columns:
        raise ValueError(f"thin: requests lacks column {by!r}")
    out = frame
    if tenants is not None:
        out = out.filter(pl.col(by).cast(pl.String).is_in([str(t) for t in tenants]))
    if fraction is not None:
        if not (isinstance(fraction, int | float) and 0 < fraction <= 1):
            raise ValueError(f"thin: fraction must be in (0, 1], got {fraction!r}")
        keys = out.select(pl.col(by).cast(pl.String)).unique().sort(by, nulls_last=True)
        pick = np.random.default_rng(seed).random(keys.height) < fraction
        kept = keys.filter(pl.Series(pick))
        keep_null = kept[by].null_count() > 0
        out = out.filter(pl.col(by).cast(pl.String).is_in(kept[by].drop_nulls().implode())
                         | (pl.col(by).is_null() & pl.lit(keep_null)))
    return Scaled(out, (*records, _record(
        "thin", by=by, tenants=",".join(map(str, tenants)) if tenants is not None else "",
        fraction=fraction if fraction is not None else "", seed=seed)))


def superpose(*requests: pl.DataFrame | pl.LazyFrame | Scaled) -> Scaled:
    """The union of traces in arrival order (each row keeps its ``trace``); their records
    are kept, followed by one ``superpose`` record naming the parts' traces."""
    if not requests:
        raise ValueError("superpose: give at least one requests frame")
    frames, records = [], []
    for r in requests:
        f, rec = _frame(r, "superpose")
        frames.append(f)
        records.extend(rec)
    out = pl.concat(frames, how="diagonal_relaxed").sort("arrival_s", maintain_order=True)
    names = [",".join(sorted(f["trace"].drop_nulls().unique().to_list()))
             if "trace" in f.columns else "" for f in frames]
    return Scaled(out, (*records, _record("superpose", parts=len(frames),
                                          traces=";".join(names))))


@dataclass(frozen=True)
class HardwareProfile:
    """What a serving deployment sustains (measured by ``servetrace profile``).

    ``prefill_tokens_per_s`` and ``decode_tokens_per_s`` are aggregate throughputs at full
    batch; ``max_concurrent_sequences`` the batch limit; ``kv_cache_tokens`` the KV-cache
    capacity in tokens.
    """

    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    max_concurrent_sequences: int
    kv_cache_tokens: float
    name: str = ""

    def __post_init__(self) -> None:
        for f in ("prefill_tokens_per_s", "decode_tokens_per_s", "max_concurrent_sequences"):
            _positive(getattr(self, f), f, "HardwareProfile")
        if self.kv_cache_tokens != math.inf:  # inf: the server publishes no KV-cache size
            _positive(self.kv_cache_tokens, "kv_cache_tokens", "HardwareProfile")

    @staticmethod
    def from_yaml(source: str | Path) -> HardwareProfile:
        """A profile from a YAML file path or YAML text with the four keys (``name``
        optional; ``kv_cache_tokens: null``, written by ``servetrace profile`` when the server
        does not publish its KV-cache size, means no KV-cache limit)."""
        text = str(source)
        if isinstance(source, Path) or _is_file(text):
            text = Path(source).read_text()
        data = yaml.safe_load(text)
        if not isinstance(data, dict):
            raise ValueError("HardwareProfile: the YAML is not a mapping of keys to values")
        keys = ("prefill_tokens_per_s", "decode_tokens_per_s", "max_concurrent_sequences",
                "kv_cache_tokens")
        missing = [k for k in keys if k not in data]
        if missing:
            raise ValueError(f"HardwareProfile: missing key {missing[0]!r}")
        try:
            return HardwareProfile(float(data["prefill_tokens_per_s"]),
                                   float(data["decode_tokens_per_s"]),
                                   int(data["max_concurrent_sequences"]),
                                   math.inf if data["kv_cache_tokens"] is None
                                   else float(data["kv_cache_tokens"]),
                                   str(data.get("name", "")))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"HardwareProfile: {exc}") from exc


def _is_file(text: str) -> bool:
    if "\n" in text or (":" in text and not Path(text).suffix):
        return False
    try:
        return Path(text).is_file()
    except OSError:
        return False


@dataclass(frozen=True)
class Load:
    """Offered load of a model on a profile at a rate scale (fractions of capacity)."""

    rate: float
    compute: float
    sequences: float
    kv_cache: float

    @property
    def utilization(self) -> float:
        """The binding resource: max(compute, sequences, kv_cache)."""
        return max(self.compute, self.sequences, self.kv_cache)


def offered_load(model: WorkloadModel, profile: HardwareProfile,
                 rate_scale: float = 1.0) -> Load:
    """Offered load of ``model`` sampled at ``rate_scale`` on ``profile``.

    With λ the mean request rate, I and O the mean input and output tokens, P and D the
    prefill and decode throughputs, S the sequence limit and K the KV-cache tokens:

    * compute:   ρ_c = λ (I/P + O/D) — each request's share of the prefill and decode time;
    * sequences: ρ_s = λ T / S with T = I/P + O S / D, a request's residence time when each
      of S running sequences decodes at D/S tokens/s (Little's law, L = λT);
    * KV cache:  ρ_k = λ T (I + O/2) / K — sequences resident times their mean footprint
      (the prompt plus, on average, half the output).

    All three are linear in λ; the utilization is the largest (the binding resource).
    """
    rate_scale = _positive(rate_scale, "rate_scale", "offered_load")
    lam = model.mean_rate * rate_scale
    i, o = model.mean_tokens()
    p, d = profile.prefill_tokens_per_s, profile.decode_tokens_per_s
    s, k = profile.max_concurrent_sequences, profile.kv_cache_tokens
    residence = i / p + o * s / d
    return Load(lam, lam * (i / p + o / d), lam * residence / s,
                lam * residence * (i + o / 2) / k)


def rate_scale_for(model: WorkloadModel, profile: HardwareProfile,
                   utilization: float) -> float:
    """The ``rate_scale`` at which :func:`offered_load` reaches ``utilization`` (e.g. 0.8)."""
    utilization = _positive(utilization, "utilization", "rate_scale_for")
    base = offered_load(model, profile).utilization
    if not base > 0:
        raise ValueError("rate_scale_for: the model offers no load (zero rate or tokens)")
    return utilization / base


def target_hardware(model: WorkloadModel, profile: HardwareProfile,
                    utilization: float) -> WorkloadModel:
    """``model`` rescaled to offer ``utilization`` of ``profile``, the step recorded."""
    factor = rate_scale_for(model, profile, utilization)
    return scale_model(model, factor, op="target_hardware", profile=profile.name,
                       utilization=utilization,
                       prefill_tokens_per_s=profile.prefill_tokens_per_s,
                       decode_tokens_per_s=profile.decode_tokens_per_s,
                       max_concurrent_sequences=profile.max_concurrent_sequences,
                       kv_cache_tokens=profile.kv_cache_tokens)


def sample_metadata(model: WorkloadModel, duration_s: float, seed: int,
                    rate_scale: float = 1.0) -> dict[str, str]:
    """Parquet metadata of a sample: the model's source, version and scaling history plus
    the sampling call itself, as ``{METADATA_KEY: JSON}``; and where the model samples
    ``hash_ids``, their block size and scope (``hash_block_tokens``, ``hash_scope``: what
    ``traces`` holds for a stored trace), so that a command given the file (``kvcache``,
    ``replay``, ``export``) reads the blocks as the model wrote them."""
    records = (*model.history, _record("sample", source=model.source, version=model.version,
                                       duration_s=duration_s, seed=seed,
                                       rate_scale=rate_scale))
    meta = {METADATA_KEY: records_json(records)}
    prefix = next((g.prefix for g in model.groups if g.prefix is not None), None)
    if prefix is not None:
        meta["hash_block_tokens"] = str(prefix.block_tokens)
        meta["hash_scope"] = prefix.scope
    return meta
