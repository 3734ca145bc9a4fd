"""Optional dependencies: import one, or fail with one line that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(ImportError):
    """A feature's optional dependency is not installed."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module``; if it is missing, raise :class:`MissingExtra` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(f"{feature} needs {module.split('.')[0]!r}, which is not installed: "
                           f"pip install 'servetrace[{extra}]'") from exc
