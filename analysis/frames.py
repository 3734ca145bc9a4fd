"""The checks every analysis function makes of its input: a Polars frame, made lazy, and its
``by`` columns."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl


class NotAFrameError(TypeError, ValueError):
    """The input is not a Polars frame. A ``TypeError`` by nature, and a ``ValueError`` so the
    callers (and the CLI) that handle bad input as ``ValueError`` catch it too."""


def columns(by: str | Sequence[str] | None) -> list[str]:
    """A ``by`` argument as a list of column names (empty for None); ``ValueError`` for a name
    that is not a string or a column named twice."""
    keys = [] if by is None else [by] if isinstance(by, str) else list(by)
    for k in keys:
        if not isinstance(k, str):
            raise ValueError(f"by: column names must be strings, got {k!r}")
    if len(set(keys)) != len(keys):
        raise ValueError(f"by: repeated column in {keys}")
    return keys


def lazy(frame: pl.DataFrame | pl.LazyFrame, name: str) -> pl.LazyFrame:
    """``frame`` as a LazyFrame; :class:`NotAFrameError` naming ``name`` when it is neither."""
    if isinstance(frame, pl.LazyFrame):
        return frame
    if isinstance(frame, pl.DataFrame):
        return frame.lazy()
    raise NotAFrameError(f"{name}: expected a polars DataFrame or LazyFrame, got "
                         f"{type(frame).__name__}")
