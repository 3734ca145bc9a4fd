"""The one check every analysis function makes of its input: a Polars frame, made lazy."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl


class NotAFrameError(TypeError, ValueError):
    """The input is not a Polars frame. A ``TypeError`` by nature, and a ``ValueError`` so the
    callers (and the CLI) that handle bad input as ``ValueError`` catch it too."""


def columns(by: str | Sequence[str] | None) -> list[str]:
    """A ``by`` argument as a list of column names (empty for None)."""
    return [] if by is None else [by] if isinstance(by, str) else list(by)


def lazy(frame: pl.DataFrame | pl.LazyFrame, name: str) -> pl.LazyFrame:
    """``frame`` as a LazyFrame; :class:`NotAFrameError` naming ``name`` when it is neither."""
    if isinstance(frame, pl.LazyFrame):
        return frame
    if isinstance(frame, pl.DataFrame):
        return frame.lazy()
    raise NotAFrameError(f"{name}: expected a polars DataFrame or LazyFrame, got "
                         f"{type(frame).__name__}")
