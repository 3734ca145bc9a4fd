"""Azure LLM inference trace 2023 CSV (the Splitwise trace's own layout).

Source of truth: ``Azure/AzurePublicDataset``, ``AzureLLMInferenceDataset2023.md`` and
``data/AzureLLMInferenceTrace_{code,conv}.csv`` (read by this project's
``loaders/azure_llm_2023.py``): header ``TIMESTAMP,ContextTokens,GeneratedTokens``, one row
per request::

    TIMESTAMP,ContextTokens,GeneratedTokens
    2023-11-16 18:15:46.6805900,374,44

Units: ``TIMESTAMP`` is UTC wall-clock time with **7 fractional digits** (100 ns) and no
zone, ``origin + arrival_s`` rounded to 100 ns; the canonical table keeps times relative to
its trace zero, so the wall-clock origin is an option (``origin``: a ``datetime``, naive =
UTC, or ISO-8601 text; default the Unix epoch 1970-01-01 00:00:00, since a ``requests``
frame does not carry its trace's origin: pass ``traces.origin`` to restore the original
times). ``ContextTokens`` = ``input_tokens``, ``GeneratedTokens`` = ``output_tokens``.
Reading the file back with :mod:`servetrace.loaders.azure_llm_2023` gives the same arrivals (to 100
ns, counted from the first request) and lengths.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from servetrace.synth.export import _common

NAME = "azure-2023"
REQUIRED = ("arrival_s", "input_tokens", "output_tokens")
SUFFIX = ".csv"
_EPOCH = datetime(1970, 1, 1)


def origin_us(origin: datetime | str | None) -> int:
    """Microseconds from the Unix epoch to ``origin`` (naive = UTC; None = the epoch)."""
    if origin is None:
        return 0
    if isinstance(origin, str):
        try:
            origin = datetime.fromisoformat(origin.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"origin: not an ISO-8601 date-time: {origin!r}") from exc
    if not isinstance(origin, datetime):
        raise ValueError(f"origin: expected a datetime or ISO-8601 text, got {origin!r}")
    if origin.tzinfo is not None:
        origin = origin.astimezone(UTC).replace(tzinfo=None)
    return (origin - _EPOCH) // timedelta(microseconds=1)


def wall_clock(origin: datetime | str | None, digits: int) -> pl.Expr:
    """``arrival_s`` as UTC text ``YYYY-MM-DD HH:MM:SS.f…`` with ``digits`` (1..9)
    fractional digits: integer ticks of 10^-digits s, ``origin`` + ``round(arrival_s ·
    10^digits)``, so large origins lose no precision to floating point."""
    scale = 10 ** digits
    start = origin_us(origin) * scale // 10**6 if digits >= 6 else origin_us(origin) // (
        10 ** (6 - digits))
    ticks = (pl.col("arrival_s") * scale).round().cast(pl.Int64) + start
    secs = ticks.floordiv(scale)
    frac = (ticks - secs * scale).cast(pl.String).str.zfill(digits)
    return pl.concat_str(pl.from_epoch(secs, time_unit="s").dt.strftime("%Y-%m-%d %H:%M:%S"),
                         pl.lit("."), frac)


def write_layout(frame: pl.DataFrame | pl.LazyFrame, path: Path, *, name: str,
                 origin: datetime | str | None, digits: int) -> Path:
    """The Azure LLM trace's layout at ``path``: ``TIMESTAMP`` (text, ``digits`` fractional
    digits), ``ContextTokens``, ``GeneratedTokens`` (Int64), in arrival order; ``name`` is
    the format named in errors. Returns ``path``."""
    req = _common.requests(frame, name, REQUIRED)
    out = req.select(
        wall_clock(origin, digits).alias("TIMESTAMP"),
        pl.col("input_tokens").cast(pl.Int64).alias("ContextTokens"),
        pl.col("output_tokens").cast(pl.Int64).alias("GeneratedTokens"),
    )
    return _common.write_csv(out, path)


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *,
          origin: datetime | str | None = None) -> _common.Export:
    """Write ``frame`` (canonical ``requests``) as an Azure LLM 2023 CSV at ``path``:
    ``TIMESTAMP`` (text, 7 fractional digits), ``ContextTokens``, ``GeneratedTokens``
    (Int64), in arrival order. Returns ``path``.
    """
    written = write_layout(frame, path, name=NAME, origin=origin, digits=7)
    command = _common.shell("servetrace", "ingest", "azure_llm_2023", written)
    return _common.Export(written, command, ("the release's own layout; for inference-perf "
                                             "use the inference-perf-azure format",))
