"""The class columns of a workload mix in the exports: which a format carries, which it drops,
and how each consumer can be told about LoRA adapters and priorities.

Columns (``loaders/schema.py``): ``request_class``, ``offline``, ``priority``, ``slo_ttft_s``,
``slo_tpot_s`` and ``model`` (the model or LoRA adapter name a request sends). Every export
gets a note naming those of them that have values in the frame and that its format does not
carry (:func:`dropped_notes`, added by :func:`servetrace.synth.export.export`), so nothing is
lost silently.

What the consumers can carry (checked against their published packages):

- AIPerf 0.13.0 (``aiperf/dataset/loader/models.py``): ``SingleTurn``, ``MultiTurn`` turns
  and ``MooncakeTrace`` take ``extra``, a dict shallow-merged into the request body at
  dispatch (``aiperf/endpoints/openai_completions.py``, ``openai_chat.py``: after the
  ``model`` the formatter sets, so ``extra.model`` wins). :func:`aiperf_extra` writes
  ``model`` and ``priority`` there: per request, exactly.
- vLLM 0.34.0 ``vllm bench serve`` (``vllm/benchmarks/serve.py``): ``--lora-modules NAMES``
  with ``--lora-assignment random|round-robin`` picks an adapter per request itself; the
  ``custom`` and ``timed_trace`` datasets have no per-request model or priority field
  (``--extra-body`` is one body for all). The names and the trace's shares go in a note.
- SGLang 0.5.23 ``bench_serving`` (``sglang/benchmark/serving.py``): ``--lora-name NAMES``
  with ``--lora-request-distribution skewed --lora-zipf-alpha A``, where adapter ``i`` (in
  the order given) gets ``A`` times the requests of adapter ``i + 1`` (weights ``A^-i``);
  :func:`lora_notes` fits ``A`` to the trace's ranked shares (least squares on the log
  shares) and prints the flags. No per-request field.
- inference-perf 0.7.0 (``inference_perf/config/loadgen/config.py``):
  ``load.lora_traffic_split``, a list of ``{name, split}`` whose splits must add up to
  exactly 1.0 (compared with ``!=``); :func:`lora_notes` writes the trace's shares as
  multiples of 2^-16, whose float sum is exact.

No consumer reads a class label, an offline flag or per-request SLO targets: those are
always dropped (``servetrace replay`` keeps them all).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

CLASS_COLUMNS = ("request_class", "offline", "priority", "slo_ttft_s", "slo_tpot_s", "model")
"""The canonical columns of a workload mix the exports account for."""

SPLIT_UNIT = 2.0**-16
"""inference-perf's splits are written as multiples of this, so that they add up to 1.0
exactly in floating point."""

_SHOWN = 8  # names listed in a note


def with_values(frame: pl.DataFrame) -> list[str]:
    """The :data:`CLASS_COLUMNS` that ``frame`` has and holds a value in."""
    present = [c for c in CLASS_COLUMNS if c in frame.columns]
    if not present or frame.is_empty():
        return []
    row = frame.select(pl.col(c).is_not_null().any() for c in present).row(0)
    return [c for c, has in zip(present, row, strict=True) if has]


def is_mix(frame: pl.DataFrame) -> bool:
    """Whether ``frame`` is a workload mix: some request has a ``request_class``, so its
    ``model`` column names what each request sends (rather than the model a source trace
    happened to record, such as BurstGPT's ``ChatGPT``)."""
    return "request_class" in with_values(frame)


def model_shares(frame: pl.DataFrame) -> pl.DataFrame:
    """``model``, ``requests`` and ``share`` of the requests that name a model, most
    requests first (ties by name)."""
    counts = (frame.filter(pl.col("model").is_not_null())
              .group_by(pl.col("model").cast(pl.String)).agg(pl.len().alias("requests")))
    return (counts.with_columns((pl.col("requests") / pl.col("requests").sum()).alias("share"))
            .sort(["requests", "model"], descending=[True, False]))


def dyadic_splits(shares: np.ndarray) -> np.ndarray:
    """``shares`` (adding up to 1) as multiples of :data:`SPLIT_UNIT`, each at least one
    unit, adding up to exactly 1.0 (the remainder goes to the largest)."""
    units = np.maximum(np.round(np.asarray(shares) / SPLIT_UNIT), 1.0)
    units[int(np.argmax(units))] += 1 / SPLIT_UNIT - units.sum()
    return units * SPLIT_UNIT


def geometric_alpha(shares: np.ndarray) -> float | None:
    """The ratio ``A`` of SGLang's skewed LoRA distribution (weights ``A^-i`` over adapters
    ranked by share) fitted to ranked ``shares`` by least squares on their logs; None for
    fewer than two adapters. SGLang requires ``A > 1``: a flatter trace gets
    ``--lora-request-distribution uniform`` instead (see :func:`lora_notes`)."""
    s = np.sort(np.asarray(shares, dtype=np.float64))[::-1]
    if s.size < 2:
        return None
    slope = np.polyfit(np.arange(s.size), np.log(s), 1)[0]
    return float(math.exp(-slope))


def aiperf_extra(frame: pl.DataFrame, fmt: str, *, models: bool | None,
                 priority: bool) -> tuple[pl.Expr | None, tuple[str, ...], tuple[str, ...]]:
    """The ``extra`` object of AIPerf's custom datasets (module docstring) and the columns it
    carries: ``model`` when ``models`` (None: when ``frame`` is a mix, :func:`is_mix`, and
    every request names one), ``priority`` when ``priority`` (a null priority is sent as 0,
    vLLM's and SGLang's default); then notes on what could be written with the options.
    Raises ``ValueError`` when ``models=True`` and some request names no model."""
    has = with_values(frame)
    fields: list[pl.Expr] = []
    carried: list[str] = []
    if models is None:
        models = is_mix(frame) and "model" in has and frame["model"].null_count() == 0
    if models:
        if "model" not in frame.columns or frame["model"].null_count():
            n = frame.height if "model" not in frame.columns else frame["model"].null_count()
            raise ValueError(f"{fmt}: models=True but {n:,} requests name no model")
        fields.append(pl.col("model").cast(pl.String).alias("model"))
        carried.append("model")
    notes = []
    if "priority" in has:
        if priority:
            fields.append(pl.col("priority").cast(pl.Int64).fill_null(0).alias("priority"))
            carried.append("priority")
        else:
            notes.append(f"{fmt}: priorities not written; `--set priority=true` puts them in "
                         "`extra` (vLLM then needs --scheduling-policy priority)")
    if not models and "model" in has:
        notes.append(f"{fmt}: model names not written (written by default for a mix whose "
                     "every request names one; `--set models=true` forces them)")
    expr = pl.struct(fields).alias("extra") if fields else None
    return expr, tuple(carried), tuple(notes)


def dropped_notes(frame: pl.DataFrame, fmt: str, carried: tuple[str, ...] = ()) -> tuple[str, ...]:
    """A note naming the class columns ``frame`` has values in that ``fmt`` did not carry
    (``carried``): empty when there are none."""
    lost = [c for c in with_values(frame) if c not in carried]
    if not lost:
        return ()
    what = []
    for c in lost:
        if c == "model":
            names = model_shares(frame)["model"].to_list()
            shown = ", ".join(names[:_SHOWN]) + (", ..." if len(names) > _SHOWN else "")
            what.append(f"model ({len(names):,} names: {shown})")
        else:
            what.append(c)
    return (f"{fmt}: not written (no field for them in the format, or not asked for): "
            f"{'; '.join(what)}. `servetrace replay` keeps them all (per-class and per-model "
            "attainment).",)


def lora_notes(frame: pl.DataFrame, consumer: str) -> tuple[str, ...]:
    """How to spread a mix's requests over its models or adapters in ``consumer``
    (``"vllm"``, ``"sglang"`` or ``"inference-perf"``), which pick an adapter per request
    themselves: the flags or config with the trace's names and shares. Empty unless
    ``frame`` is a mix naming two models or more."""
    if not is_mix(frame) or "model" not in with_values(frame):
        return ()
    shares = model_shares(frame)
    if shares.height < 2:
        return ()
    names = shares["model"].to_list()
    top = ", ".join(f"{m} {s:.1%}" for m, s in zip(names[:_SHOWN], shares["share"],
                                                    strict=False))
    if consumer == "vllm":
        return (f"vllm bench serve assigns adapters itself, uniformly (`--lora-modules "
                f"{' '.join(names)} --lora-assignment random`), not with the trace's shares "
                f"({top}{', ...' if len(names) > _SHOWN else ''}).",)
    if consumer == "sglang":
        alpha = geometric_alpha(shares["share"].to_numpy())
        dist = (f"--lora-request-distribution skewed --lora-zipf-alpha {alpha:.4g}"
                if alpha is not None and alpha > 1 else "--lora-request-distribution uniform")
        return (f"SGLang's bench_serving assigns adapters itself: `--lora-name "
                f"{' '.join(names)} {dist}` gives adapter i (in that order) A times the "
                f"requests of adapter i+1, fitted to the trace's shares ({top}).",)
    if consumer == "inference-perf":
        splits = dyadic_splits(shares["share"].to_numpy())
        items = ", ".join(f"{{name: {m}, split: {s!r}}}" for m, s in
                          zip(names, splits.tolist(), strict=True))
        return (f"inference-perf assigns adapters itself with the trace's shares given as "
                f"`load: {{lora_traffic_split: [{items}]}}` in its config (splits add up to "
                "exactly 1.0, as it requires); per request the adapter is random.",)
    raise ValueError(f"unknown consumer {consumer!r}")
