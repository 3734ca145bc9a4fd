"""Every dataset servetrace knows, and which loader reads a given file.

A loader module is registered by listing it in ``_MODULES``; its ``DATASET`` names it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from servetrace.loaders.dataset import Dataset
from servetrace.loaders.source import FormatError, check_gzip, head

_MODULES = (
    "azure_llm_2023",
    "azure_llm_2024",
    "azure_lmm_2025",
    "burstgpt",
    "mooncake",
    "agentic_coding_weka",
    "qwen_bailian",
    "tracelab",
    "azure_copilot_agents_2026",
    "servegen",
    "servegen_conversations",
    "servegen_offline",
    "azure_functions_2019",
    "azure_functions_2021",
    "huawei_2023",
    "huawei_2025",
    "ibm_code_engine",
)


def modules() -> dict[str, ModuleType]:
    """Loader modules by dataset name, in registration order."""
    mods = [importlib.import_module(f"servetrace.loaders.{m}") for m in _MODULES]
    return {m.DATASET.name: m for m in mods}


def datasets() -> list[Dataset]:
    return [m.DATASET for m in modules().values()]


def module(name: str) -> ModuleType:
    """The loader module of a dataset (also its format name)."""
    mods = modules()
    if name not in mods:
        raise KeyError(f"unknown dataset or format {name!r}; known: {', '.join(mods)}")
    return mods[name]


def detect(path: str | Path) -> ModuleType:
    """The loader whose format matches the file's header (first match in registration order)."""
    path = Path(path)
    if not path.exists():
        raise FormatError(path, "no such file or folder")
    for mod in modules().values():
        try:
            if mod.detect(path):
                return mod
        except (OSError, ValueError):  # FormatError, UnicodeDecodeError, JSON errors
            continue
    if path.is_file():
        check_gzip(path)  # a gzip cut off before its first lines says so, not "no format"
    first = head(path, 1) if path.is_file() else []
    shown = repr(first[0][:120]) if first else "nothing"
    raise FormatError(path, f"matches no known format (first line: {shown}); "
                            f"name one with --as ({', '.join(modules())})", line=1)
