"""Writers for the trace formats other tools replay; one module per format.

Each module has ``NAME`` (its key in :data:`FORMATS`), ``REQUIRED`` (the canonical columns it
needs), ``SUFFIX`` (the file name ending its target expects; empty for a folder) and
``write(frame, path, **options) -> Export``: the path written, the consumer's command line
that reads it correctly (block size, row count, time flags filled in; ``MODEL``/``URL`` are
the user's) and notes (re-chunking, sizes). Its docstring names the target's loader it was
checked against (repository and file, and the published version read) and the units of every
field written.

Block ids: formats that carry ``hash_ids`` write exactly ``ceil(input_tokens / block)`` ids of
the block size their consumer builds per id, the trace's ids re-chunked to it keeping the
prefix sharing (``hash_block_tokens``/``hash_scope`` describe the frame's ids: the trace's
``traces`` row; inferred from the rows when not given; see
:func:`servetrace.synth.export._common.consumer_hash_ids`). Timestamps: formats whose consumer
waits for absolute offsets (vLLM ``timed_trace``, AIPerf's fixed schedule) count from the first
request by default (``rebase=True``); ``rebase=False`` keeps the trace's offsets.

==========================  =============================================  ===============
name                        target                                         time unit
==========================  =============================================  ===============
``vllm-custom``             vLLM ``--dataset-name custom`` JSONL           (none)
``vllm-mooncake``           vLLM ``--dataset-name timed_trace`` JSONL      s
``sglang-custom``           SGLang ``--dataset-name custom`` JSONL         (none)
``sglang-mooncake``         SGLang ``--dataset-name mooncake`` JSONL       ms (128-token ids)
``guidellm``                GuideLLM ``kind=trace_synthetic`` JSONL        s
``guidellm-mooncake``       GuideLLM ``kind=mooncake`` JSONL               s
``guidellm-weka``           GuideLLM ``kind=weka`` JSONL (sessions)        s, think s
``weka``                    inference-perf WEKA replay folder (sessions)   s, think s
``aiperf-single-turn``      AIPerf ``single_turn`` JSONL                   ms
``aiperf-multi-turn``       AIPerf ``multi_turn`` JSONL (sessions)         ms, delay ms
``aiperf-mooncake``         AIPerf ``mooncake_trace`` JSONL (session_id)   ms, delay ms
``aiperf-bailian``          AIPerf ``bailian_trace`` JSONL (16-token ids)  s
``mooncake``                Mooncake FAST'25 trace JSONL                   ms
``vidur``                   Vidur ``trace_replay`` CSV (repository head)   s
``vidur-pypi``              Vidur 0.0.26 (PyPI) ``trace_replay`` CSV       s
``splitwise``               splitwise-sim trace CSV                        s
``inference-perf-azure``    inference-perf ``AzurePublicDataset`` CSV      UTC, µs
``burstgpt``                BurstGPT CSV (v1 or v2.0 layout)               s
``azure-2023``              Azure LLM inference 2023 CSV                   UTC, 100 ns
``vhive``                   vHive/InVitro trace folder (3 CSVs)            min (or s)
``faasrail``                FaaSRail spec CSV (``faasrail-loadgen``)       minutes
``invocations-csv``         per-invocation CSV for simulators              s, ms, MB
==========================  =============================================  ===============

``weka`` and ``vhive`` write folders. The LLM formats take the canonical ``requests`` table.
The serverless formats name the tables they take in ``TABLES``: ``vhive`` and ``faasrail``
take ``invocations`` or ``invocation_counts`` plus, optionally, ``functions``;
``invocations-csv`` takes ``invocations`` (a real per-invocation trace or a synthetic sample
of :mod:`servetrace.synth.serverless`). Formats that carry text get synthetic prompts from
:mod:`servetrace.synth.prompts`.
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import polars as pl

from servetrace.synth.export import (
    _classes,
    aiperf_bailian,
    aiperf_mooncake,
    aiperf_multi_turn,
    aiperf_single_turn,
    azure_2023,
    burstgpt,
    faasrail,
    guidellm,
    guidellm_mooncake,
    guidellm_weka,
    inference_perf_azure,
    invocations_csv,
    mooncake,
    sglang_custom,
    sglang_mooncake,
    splitwise,
    vhive,
    vidur,
    vidur_pypi,
    vllm_custom,
    vllm_mooncake,
    weka,
)
from servetrace.synth.export._common import Export

FORMATS: dict[str, ModuleType] = {module.NAME: module for module in (
    vllm_custom, vllm_mooncake, sglang_custom, sglang_mooncake, guidellm, guidellm_mooncake,
    guidellm_weka, weka, aiperf_single_turn, aiperf_multi_turn, aiperf_mooncake,
    aiperf_bailian, mooncake, vidur, vidur_pypi, splitwise, inference_perf_azure, burstgpt,
    azure_2023, vhive, faasrail, invocations_csv,
)}
"""Export formats by name (``servetrace export ... --to NAME``)."""

__all__ = ["FORMATS", "Export", "export", "options"]


def export(frame: pl.DataFrame | pl.LazyFrame, to: str, path: str | Path,
           **options: object) -> Export:
    """Write ``frame`` in format ``to`` at ``path`` (a file; a folder for ``vhive`` and
    ``weka``) and return the :class:`Export`: the path, the consumer command line that reads
    it, notes.

    ``options`` go to the format's ``write`` (see :func:`options` and the module). The notes
    name the workload-mix columns (``request_class``, ``offline``, ``priority``, SLOs,
    ``model``) the frame has values in and the format could not carry, and for consumers
    that assign LoRA adapters themselves, their flags with the trace's adapters and shares
    (:mod:`servetrace.synth.export._classes`). Raises
    ``ValueError`` naming the known formats when ``to`` is not one of them, the accepted
    options when one is not, and the missing columns when the frame lacks what the format
    needs.
    """
    module = FORMATS.get(to)
    if module is None:
        raise ValueError(f"unknown export format {to!r}; known formats: "
                         f"{', '.join(sorted(FORMATS))}")
    unknown = sorted(set(options) - set(_options(to)))
    if unknown:
        raise ValueError(f"{to}: unknown option(s) {', '.join(unknown)}; it accepts "
                         f"{', '.join(_options(to)) or 'none'}")
    result = module.write(frame, Path(path), **options)
    if not isinstance(frame, pl.DataFrame | pl.LazyFrame):
        return result
    names = frame.collect_schema().names()
    mix = frame.lazy().select([c for c in _classes.CLASS_COLUMNS if c in names]).collect()
    notes = _classes.dropped_notes(mix, to, result.carried)
    if to in LORA_CONSUMERS and "model" not in result.carried:
        notes += _classes.lora_notes(mix, LORA_CONSUMERS[to])
    return replace(result, notes=result.notes + notes) if notes else result


LORA_CONSUMERS = {"vllm-custom": "vllm", "vllm-mooncake": "vllm", "sglang-custom": "sglang",
                  "sglang-mooncake": "sglang", "weka": "inference-perf",
                  "inference-perf-azure": "inference-perf"}
"""Formats whose consumer assigns LoRA adapters itself: their notes give its flags or config
with the trace's adapters and shares (:func:`._classes.lora_notes`)."""


def options(to: str) -> dict[str, object]:
    """The keyword options of format ``to`` with their defaults (``ValueError`` if unknown)."""
    if to not in FORMATS:
        raise ValueError(f"unknown export format {to!r}; known formats: "
                         f"{', '.join(sorted(FORMATS))}")
    return dict(_options(to))


def _options(to: str) -> dict[str, object]:
    params = inspect.signature(FORMATS[to].write).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
