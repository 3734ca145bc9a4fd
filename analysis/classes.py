"""Request classes of a workload mix: how a trace's requests, tokens and arrivals divide
among its classes (the ``request_class`` column, :mod:`servetrace.synth.mix`), or among the
values of another column (``model``, ``priority``).

A class is a label a mix gives its components (online, offline, a priority level, an SLO
tier); a trace without the column has no classes, and the functions here refuse it rather
than report one null class. ``by="class"`` is short for ``request_class``.

Per class (:func:`class_mix`)
    ``requests`` and ``request_share = requests / all requests``; ``input_tokens`` and
    ``output_tokens`` (sums) and ``token_share = (input + output) / all input + output``;
    ``rate_rps = requests / span`` with ``span = max(arrival_s) - min(arrival_s)`` of the
    whole trace (null for a batch trace or a zero span), the class's mean rate over the
    trace, so classes add up to the trace's; ``offline`` (requests flagged offline),
    ``priority_min``/``priority_max``, ``slo_ttft_s``/``slo_tpot_s`` (the class's target
    where its requests share one value, else null), ``models`` (distinct model names);
    length percentiles ``input_p50``, ``input_p99``, ``output_p50``, ``output_p99`` (linear
    interpolation).

Rate over time per class: :func:`servetrace.analysis.burstiness.window_counts` with
``by="request_class"``, as :func:`servetrace.analysis.report.request_classes` charts it.
"""

from __future__ import annotations

import polars as pl

from servetrace.analysis.frames import lazy

__all__ = ["CLASS_COLUMN", "class_column", "class_mix", "has_classes"]

CLASS_COLUMN = "request_class"


def class_column(by: str) -> str:
    """The column a ``by`` names: ``"class"`` is ``request_class``, others are themselves."""
    return CLASS_COLUMN if by == "class" else by


def has_classes(requests: pl.DataFrame | pl.LazyFrame, by: str = CLASS_COLUMN) -> bool:
    """Whether some request of ``requests`` has a value in ``by`` (default ``request_class``)."""
    col = class_column(by)
    lf = lazy(requests, "requests")
    if col not in lf.collect_schema().names():
        return False
    return bool(lf.select(pl.col(col).is_not_null().any()).collect().item())


def _one(col: str, name: str) -> pl.Expr:
    """The column's value where the group's non-null values are one, else null."""
    return pl.when(pl.col(col).drop_nulls().n_unique() == 1).then(
        pl.col(col).drop_nulls().first()).alias(name)


def class_mix(requests: pl.DataFrame | pl.LazyFrame, by: str = CLASS_COLUMN) -> pl.DataFrame:
    """Requests, tokens, rate, lengths and targets per class (module docstring), one row per
    value of ``by`` (requests without one form a null row), most requests first.

    Raises ``ValueError`` when ``requests`` lacks ``input_tokens``/``output_tokens`` or
    the ``by`` column, or when that column is null in every row.
    """
    col = class_column(by)
    lf = lazy(requests, "requests")
    names = lf.collect_schema().names()
    for need in ("input_tokens", "output_tokens", col):
        if need not in names:
            raise ValueError(f"requests: missing column {need!r}")
    if not has_classes(lf, col):
        raise ValueError(f"requests: column {col!r} is null in every row (no classes)")

    def opt(name: str, dtype: type[pl.DataType]) -> pl.Expr:
        return pl.col(name).cast(dtype) if name in names else pl.lit(None, dtype).alias(name)

    optional = {"arrival_s": pl.Float64, "offline": pl.Boolean, "priority": pl.Int64,
                "slo_ttft_s": pl.Float64, "slo_tpot_s": pl.Float64, "model": pl.String}
    frame = lf.select(
        pl.col(col), pl.col("input_tokens").cast(pl.Int64),
        pl.col("output_tokens").cast(pl.Int64),
        *(opt(name, dtype) for name, dtype in optional.items() if name != col))
    if col in optional:  # grouped by it, and still summarized (min, max, distinct)
        frame = frame.with_columns(pl.col(col).alias(f"_{col}"))
    src = {name: f"_{name}" if name == col else name for name in optional}
    totals = frame.select(
        pl.len().alias("_n"),
        (pl.col("input_tokens").sum() + pl.col("output_tokens").sum()).alias("_tokens"),
        (pl.col("arrival_s").max() - pl.col("arrival_s").min()).alias("_span"))
    tokens = pl.col("input_tokens").fill_null(0) + pl.col("output_tokens").fill_null(0)
    return (frame.group_by(col).agg(
        pl.len().alias("requests"),
        pl.col("input_tokens").sum(), pl.col("output_tokens").sum(),
        tokens.sum().alias("_class_tokens"),
        pl.col(src["offline"]).cast(pl.Boolean).fill_null(False).sum().alias("offline"),
        pl.col(src["priority"]).min().cast(pl.Int64).alias("priority_min"),
        pl.col(src["priority"]).max().cast(pl.Int64).alias("priority_max"),
        _one(src["slo_ttft_s"], "slo_ttft_s"), _one(src["slo_tpot_s"], "slo_tpot_s"),
        pl.col(src["model"]).drop_nulls().n_unique().alias("models"),
        pl.col("input_tokens").quantile(0.5, "linear").alias("input_p50"),
        pl.col("input_tokens").quantile(0.99, "linear").alias("input_p99"),
        pl.col("output_tokens").quantile(0.5, "linear").alias("output_p50"),
        pl.col("output_tokens").quantile(0.99, "linear").alias("output_p99"),
    ).join(totals, how="cross").select(
        col, "requests", (pl.col("requests") / pl.col("_n")).alias("request_share"),
        "input_tokens", "output_tokens",
        (pl.col("_class_tokens") / pl.col("_tokens")).alias("token_share"),
        pl.when(pl.col("_span") > 0).then(pl.col("requests") / pl.col("_span"))
        .alias("rate_rps"),
        "offline", "priority_min", "priority_max", "slo_ttft_s", "slo_tpot_s", "models",
        "input_p50", "input_p99", "output_p50", "output_p99",
    ).sort(["requests", col], descending=[True, False], nulls_last=True).collect())
