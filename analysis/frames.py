"""The checks every analysis function makes of its input: a Polars frame, made lazy, and its
``by`` columns."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

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


class EmptyGroupWarning(UserWarning):
    """A ``by`` column holds no value in any row: every row falls into one null group."""


def empty(frame: pl.DataFrame | pl.LazyFrame, cols: Sequence[str]) -> list[str]:
    """The columns of ``cols`` that are null in every row of a non-empty ``frame`` (Azure LLM
    2023 has no tenant or model, so ``by="tenant"`` would give one null group)."""
    if not cols:
        return []
    counts = lazy(frame, "frame").select(pl.len().alias("__rows"),
                                         *(pl.col(c).count() for c in cols)).collect().row(0)
    return [c for c, n in zip(cols, counts[1:], strict=True) if counts[0] and n == 0]


def groupable(frame: pl.DataFrame | pl.LazyFrame) -> list[str]:
    """The columns of ``frame`` one could group by: not floating point or nested, and holding a
    value in some row."""
    lf = lazy(frame, "frame")
    schema = lf.collect_schema()
    cols = [c for c, t in schema.items() if not (t.is_float() or t.is_nested())]
    if not cols:
        return []
    counts = lf.select(pl.col(cols).count()).collect().row(0)
    return [c for c, n in zip(cols, counts, strict=True) if n]


def empty_by_message(frame: pl.DataFrame | pl.LazyFrame, cols: Sequence[str],
                     source: pl.DataFrame | pl.LazyFrame | None = None) -> str | None:
    """Why grouping ``frame`` by ``cols`` would be meaningless (None: it is not): the ``by``
    columns with no value, and the columns of ``source`` (the whole input ``frame`` was
    selected from; default ``frame``) that do have values."""
    none = empty(frame, cols)
    if not none:
        return None
    frame = frame if source is None else source
    names = ", ".join(repr(c) for c in none)
    return (f"by: {names} {'is' if len(none) == 1 else 'are'} null in every row, so every "
            f"row falls into one null group; columns with values: "
            f"{', '.join(groupable(frame)) or 'none'}")


def _outside_level() -> int:
    """The ``stacklevel`` of the first caller outside servetrace (its analysis, synth and
    loaders folders included), so a warning points at the user's line."""
    import servetrace
    from servetrace import analysis, loaders, synth

    roots = tuple(str(Path(m.__file__).resolve().parent) + os.sep
                  for m in (servetrace, analysis, loaders, synth))
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(roots):
        level, frame = level + 1, frame.f_back
    return level


def warn_empty(frame: pl.DataFrame | pl.LazyFrame, cols: Sequence[str],
               source: pl.DataFrame | pl.LazyFrame | None = None) -> None:
    """:class:`EmptyGroupWarning` when a ``by`` column is null in every row of ``frame``
    (collected: the check is then free); ``source`` as in :func:`empty_by_message`."""
    message = empty_by_message(frame, cols, source)
    if message is not None:
        warnings.warn(message, EmptyGroupWarning, stacklevel=_outside_level())


def lazy(frame: pl.DataFrame | pl.LazyFrame, name: str) -> pl.LazyFrame:
    """``frame`` as a LazyFrame; :class:`NotAFrameError` naming ``name`` when it is neither."""
    if isinstance(frame, pl.LazyFrame):
        return frame
    if isinstance(frame, pl.DataFrame):
        return frame.lazy()
    raise NotAFrameError(f"{name}: expected a polars DataFrame or LazyFrame, got "
                         f"{type(frame).__name__}")
