"""Writers for the trace formats other tools replay; one module per format.

Each module has ``NAME`` (its key in :data:`FORMATS`), ``REQUIRED`` (the canonical columns it
needs), ``SUFFIX`` (the file name ending its target expects; empty for a folder) and
``write(frame, path, **options) -> Path``; its docstring names the target's loader it was
checked against (repository and file) and the units of every field written.

==========================  =============================================  ==========
name                        target                                         time unit
==========================  =============================================  ==========
``vllm-custom``             vLLM ``--dataset-name custom`` JSONL           (none)
``vllm-mooncake``           vLLM ``--dataset-name timed-trace`` JSONL      s
``sglang-custom``           SGLang ``--dataset-name custom`` JSONL         (none)
``sglang-mooncake``         SGLang ``--dataset-name mooncake`` JSONL       ms
``guidellm``                GuideLLM ``kind=trace_synthetic`` JSONL        s
``guidellm-mooncake``       GuideLLM ``kind=mooncake`` JSONL               s
``aiperf-single-turn``      AIPerf ``single_turn`` JSONL                   ms
``aiperf-multi-turn``       AIPerf ``multi_turn`` JSONL                    ms
``aiperf-mooncake``         AIPerf ``mooncake_trace`` JSONL                ms
``mooncake``                Mooncake FAST'25 trace JSONL                   ms
``vidur``                   Vidur ``trace_replay`` CSV                     s
``splitwise``               splitwise-sim trace CSV                        s
``inference-perf-azure``    inference-perf ``AzurePublicDataset`` CSV      UTC, µs
``burstgpt``                BurstGPT CSV (v1 or v2.0 layout)               s
``azure-2023``              Azure LLM inference 2023 CSV                   UTC, 100 ns
``vhive``                   vHive/InVitro trace folder (3 CSVs)            min (or s)
``faasrail``                FaaSRail spec CSV (``faasrail-loadgen``)       minutes
``invocations-csv``         per-invocation CSV for simulators              s, ms, MB
==========================  =============================================  ==========

The LLM formats take the canonical ``requests`` table. The serverless formats name the
tables they take in ``TABLES``: ``vhive`` and ``faasrail`` take ``invocations`` or
``invocation_counts`` plus, optionally, ``functions``; ``invocations-csv`` takes
``invocations`` (a real per-invocation trace or a synthetic sample of
:mod:`servetrace.synth.serverless`).
Formats that carry text get synthetic prompts from :mod:`servetrace.synth.prompts`.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from types import ModuleType

import polars as pl

from servetrace.synth.export import (
    aiperf_mooncake,
    aiperf_multi_turn,
    aiperf_single_turn,
    azure_2023,
    burstgpt,
    faasrail,
    guidellm,
    guidellm_mooncake,
    inference_perf_azure,
    invocations_csv,
    mooncake,
    sglang_custom,
    sglang_mooncake,
    splitwise,
    vhive,
    vidur,
    vllm_custom,
    vllm_mooncake,
)

FORMATS: dict[str, ModuleType] = {module.NAME: module for module in (
    vllm_custom, vllm_mooncake, sglang_custom, sglang_mooncake, guidellm, guidellm_mooncake,
    aiperf_single_turn, aiperf_multi_turn, aiperf_mooncake, mooncake, vidur, splitwise,
    inference_perf_azure, burstgpt, azure_2023, vhive, faasrail, invocations_csv,
)}
"""Export formats by name (``servetrace export ... --to NAME``)."""

__all__ = ["FORMATS", "export", "options"]


def export(frame: pl.DataFrame | pl.LazyFrame, to: str, path: str | Path,
           **options: object) -> Path:
    """Write ``frame`` in format ``to`` at ``path`` (a file; a folder for ``vhive``).

    ``options`` go to the format's ``write`` (see :func:`options` and the module). Raises
    ``ValueError`` naming the known formats when ``to`` is not one of them, the accepted
    options when one is not, and the missing columns when the frame lacks what the format
    needs. Returns the path written.
    """
    module = FORMATS.get(to)
    if module is None:
        raise ValueError(f"unknown export format {to!r}; known formats: "
                         f"{', '.join(sorted(FORMATS))}")
    unknown = sorted(set(options) - set(_options(to)))
    if unknown:
        raise ValueError(f"{to}: unknown option(s) {', '.join(unknown)}; it accepts "
                         f"{', '.join(_options(to)) or 'none'}")
    return module.write(frame, Path(path), **options)


def options(to: str) -> dict[str, object]:
    """The keyword options of format ``to`` with their defaults (``ValueError`` if unknown)."""
    if to not in FORMATS:
        raise ValueError(f"unknown export format {to!r}; known formats: "
                         f"{', '.join(sorted(FORMATS))}")
    return dict(_options(to))


def _options(to: str) -> dict[str, object]:
    params = inspect.signature(FORMATS[to].write).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
