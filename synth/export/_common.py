"""Shared steps of the exporters: input checks, time units, block ids, writing files.

Every exporter takes the canonical ``requests`` table (``loaders/schema.py``) as a Polars
DataFrame or LazyFrame. :func:`requests` checks and orders it; the helpers below turn its
columns into the units a target reads. Columns the canonical schema allows to be absent
(a loader's frame may lack ``trace``, ``session`` ...) are treated as all-null.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

MOONCAKE_BLOCK_TOKENS = 512
"""Tokens per ``hash_ids`` block in the Mooncake traces (Qin et al., FAST 2025, §4)."""


def collect(frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """The frame, collected if lazy."""
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    if not isinstance(frame, pl.DataFrame):
        raise TypeError(f"expected a polars DataFrame or LazyFrame, got {type(frame).__name__}")
    return frame


def require(frame: pl.DataFrame, columns: Sequence[str], fmt: str, table: str) -> None:
    """Raise ``ValueError`` naming the format and every column of ``columns`` that the frame
    lacks or holds nulls in."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{fmt}: the {table} frame lacks column(s) {', '.join(missing)} "
                         f"(has {', '.join(frame.columns) or 'none'})")
    if frame.height:
        nulls = frame.select(pl.col(list(columns)).null_count()).row(0, named=True)
        bad = [f"{c} ({n} nulls)" for c, n in nulls.items() if n]
        if bad:
            raise ValueError(f"{fmt}: column(s) {', '.join(bad)} must not hold nulls")


def single_trace(frame: pl.DataFrame, fmt: str) -> None:
    """Raise ``ValueError`` when a ``trace`` column holds more than one trace id: traces have
    their own time zeros, so their rows cannot share one file's clock."""
    if "trace" in frame.columns:
        ids = frame["trace"].unique().drop_nulls()
        if ids.len() > 1:
            shown = ", ".join(sorted(ids.cast(pl.String).to_list())[:5])
            raise ValueError(f"{fmt}: the frame holds {ids.len()} traces ({shown}...); "
                             f"export one trace at a time (filter on the trace column)")


def requests(frame: pl.DataFrame | pl.LazyFrame, fmt: str,
             required: Sequence[str] = ("arrival_s", "input_tokens", "output_tokens")
             ) -> pl.DataFrame:
    """The ``requests`` frame checked for ``fmt`` and sorted by ``arrival_s`` (stable).

    Raises ``ValueError`` when a required column is missing or has nulls, when the frame is
    empty, or when it mixes traces; token counts must be non-negative.
    """
    out = collect(frame)
    require(out, required, fmt, "requests")
    if out.height == 0:
        raise ValueError(f"{fmt}: the requests frame is empty")
    single_trace(out, fmt)
    for col in ("input_tokens", "output_tokens"):
        if col in required and out[col].min() < 0:
            raise ValueError(f"{fmt}: column {col} holds a negative token count")
    if "arrival_s" in out.columns and not out["arrival_s"].is_sorted():
        out = out.sort("arrival_s", maintain_order=True)
    return out


def optional(frame: pl.DataFrame, column: str, dtype: pl.DataType) -> pl.Expr:
    """``column`` cast to ``dtype``, or an all-null literal when the frame lacks it."""
    if column in frame.columns:
        return pl.col(column).cast(dtype)
    return pl.lit(None, dtype)


def seconds(rebase: bool) -> pl.Expr:
    """``arrival_s`` in seconds, from the first request when ``rebase``."""
    arrival = pl.col("arrival_s")
    return arrival - arrival.min() if rebase else arrival


def milliseconds(rebase: bool) -> pl.Expr:
    """``arrival_s`` as whole milliseconds (Int64, rounded half to even): ``round(s·1000)``."""
    return (seconds(rebase) * 1000.0).round().cast(pl.Int64)


def hash_ids(frame: pl.DataFrame, block_size: int = MOONCAKE_BLOCK_TOKENS,
             keep: bool = True) -> pl.Series:
    """Block ids per request, ``List(Int64)``: the frame's ``hash_ids`` where present (with
    ``keep``), else ``ceil(input_tokens / block_size)`` fresh ids.

    Fresh ids are unique per request (no prefix sharing is invented): consecutive integers,
    request by request in row order, starting above the largest id kept. With ``keep`` and a
    ``block_size`` other than 512 while the frame carries ids, ``ValueError``: the kept ids
    name 512-token blocks (the canonical ``hash_ids`` are Mooncake's).
    """
    if block_size < 1:
        raise ValueError(f"block_size must be a positive number of tokens, got {block_size}")
    has = keep and "hash_ids" in frame.columns and frame["hash_ids"].null_count() < frame.height
    if has and block_size != MOONCAKE_BLOCK_TOKENS:
        raise ValueError(f"block_size={block_size}: the frame's hash_ids name "
                         f"{MOONCAKE_BLOCK_TOKENS}-token blocks; pass keep_hash_ids=False to "
                         f"generate {block_size}-token blocks instead")
    blocks = (pl.col("input_tokens") + block_size - 1) // block_size
    if has:
        kept = pl.col("hash_ids").cast(pl.List(pl.Int64))
        fresh = pl.when(kept.is_null()).then(blocks).otherwise(0)
        top = frame["hash_ids"].cast(pl.List(pl.Int64)).list.max().max()
        first = 0 if top is None else int(top) + 1
    else:
        kept, fresh, first = None, blocks, 0
    ends = fresh.cum_sum() + first
    made = pl.int_ranges(ends - fresh, ends, dtype=pl.Int64)
    ids = made if kept is None else pl.when(kept.is_not_null()).then(kept).otherwise(made)
    return frame.select(ids.alias("hash_ids")).to_series()


def block_mismatch(ids: pl.Series, input_tokens: pl.Series, block_size: int) -> int:
    """Rows whose ``len(ids)`` differs from ``ceil(input_tokens / block_size)``."""
    expected = (input_tokens + block_size - 1) // block_size
    return int((ids.list.len().cast(pl.Int64) != expected).sum())


def clip_output(minimum: int) -> pl.Expr:
    """``output_tokens`` raised to ``minimum`` (a benchmark client cannot ask for fewer than
    one token: ``max_tokens`` must be at least 1 in the OpenAI API)."""
    if minimum < 0:
        raise ValueError(f"min_output_tokens must be >= 0, got {minimum}")
    return pl.max_horizontal(pl.col("output_tokens"), pl.lit(minimum, pl.Int64))


def target(path: str | Path) -> Path:
    """``path`` as a Path whose parent folder exists."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def write_jsonl(frame: pl.DataFrame, path: str | Path) -> Path:
    """One JSON object per row (Polars ``write_ndjson``), keys in column order."""
    out = target(path)
    frame.write_ndjson(out)
    return out


def write_csv(frame: pl.DataFrame, path: str | Path) -> Path:
    """A header line, then one line per row (Polars ``write_csv``, ``\\n`` line ends)."""
    out = target(path)
    frame.write_csv(out)
    return out


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Export:
    """What an exporter wrote: ``path``, the consumer ``command`` line that reads it correctly
    (block size, row count and time flags filled in; ``MODEL`` and ``URL`` stand for the
    user's), ``notes`` for the user (sizes, re-chunking, what the consumer ignores, the
    workload-mix columns dropped) and the mix columns ``carried``.

    It is path-like (``os.fspath(result)`` and ``str(result)`` give the path), so it can be
    handed to anything that opens a path.
    """

    path: Path
    command: str
    notes: tuple[str, ...] = ()
    carried: tuple[str, ...] = ()
    """The workload-mix columns (``model``, ``priority``, ...) written per request; the
    others the frame has values in are named in a note (:mod:`._classes`)."""

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)


TEXT_WARN_BYTES = 256 * 2**20
"""Text exports larger than this get a note pointing at a block-id format instead."""


def size_notes(path: Path, fmt: str, alternative: str) -> tuple[str, ...]:
    """A note when the file (or folder) at ``path`` is over :data:`TEXT_WARN_BYTES`: long-prompt
    traces carry their prompts as text (the Mooncake conversation trace writes ≈ 0.9 GB of
    JSONL text), while ``alternative`` sends block ids and lengths instead."""
    size = (sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir()
            else path.stat().st_size)
    if size <= TEXT_WARN_BYTES:
        return ()
    return (f"{fmt}: wrote {size / 2**30:.2f} GiB of prompt text; {alternative} carries "
            f"the same requests as lengths and block ids in a fraction of the size",)


def shell(*parts: object) -> str:
    """A shell command line from ``parts`` (each quoted where the shell needs it)."""
    return " ".join(shlex.quote(str(p)) for p in parts)


# --------------------------------------------------------------------------- block ids


BLOCK_CANDIDATES = (16, 32, 64, 128, 256, 512, 1024)
"""Block sizes :func:`infer_block_tokens` considers (those the public traces use: Bailian 16,
WEKA 64, Mooncake 512)."""


def infer_block_tokens(frame: pl.DataFrame) -> int:
    """Tokens per ``hash_ids`` block, inferred from the rows: the one size of
    :data:`BLOCK_CANDIDATES` for which every row with ids has ``floor(in / b) <= len(ids) <=
    ceil(in / b)``. ``ValueError`` when none or several fit (pass ``hash_block_tokens``)."""
    rows = frame.filter(pl.col("hash_ids").is_not_null()).select(
        pl.col("hash_ids").list.len().cast(pl.Int64).alias("n"),
        pl.col("input_tokens").cast(pl.Int64).alias("i"))
    fits = [b for b in BLOCK_CANDIDATES if rows.height and rows.select(
        ((pl.col("n") >= pl.col("i") // b) & (pl.col("n") <= (pl.col("i") + b - 1) // b))
        .all()).item()]
    if len(fits) != 1:
        found = ", ".join(map(str, fits)) or "none"
        raise ValueError(f"cannot tell the tokens per hash_ids block from the rows (sizes that "
                         f"fit: {found}); pass hash_block_tokens (the trace's "
                         f"traces.hash_block_tokens)")
    return fits[0]


def _global_ids(frame: pl.DataFrame) -> pl.Series:
    """``hash_ids`` with session-local ids made global: each distinct (session, id) gets its
    own id (dense, in (session, id) order), so sessions never share a block. A request
    without a session is a session of its own.

    Works on the flat id buffer and the list offsets (one dense rank of the keys, the lists
    rebuilt from the same offsets): a session trace holds tens of millions of ids."""
    session = optional(frame, "session", pl.String).fill_null(
        pl.format("\x00row{}", pl.int_range(pl.len())))
    ids = frame["hash_ids"].cast(pl.List(pl.Int64))
    top = ids.list.max().max()
    width = max(int(top or 0), 0).bit_length() or 1
    codes = frame.select(session.rank("dense").cast(pl.Int64) - 1).to_series().to_numpy()
    if width + int(codes.max(initial=0)).bit_length() > 62:
        raise ValueError("hash_ids too large to make session-local ids global")
    lens = ids.list.len().fill_null(0).to_numpy().astype(np.int64)
    lists = ids.to_arrow()
    lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    flat = lists.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    key = pl.Series(np.repeat(codes, lens) * (1 << width) + flat)
    dense = (key.rank("dense") - 1).cast(pl.Int64).to_numpy()
    offsets = np.concatenate([[0], np.cumsum(lens)])
    null = ids.is_null().to_numpy()
    arr = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(dense),
                                        mask=pa.array(null) if null.any() else None)
    return pl.Series("hash_ids", arr).cast(pl.List(pl.Int64))


def consumer_hash_ids(frame: pl.DataFrame, block_size: int, *,
                      hash_block_tokens: int | None = None, hash_scope: str = "global",
                      keep: bool = True) -> pl.Series:
    """Block ids per request for a consumer that builds ``block_size`` tokens per id,
    ``List(Int64)``, exactly ``ceil(input_tokens / block_size)`` ids per request, one id
    namespace for the whole file.

    The frame's ``hash_ids`` (blocks of ``hash_block_tokens``; inferred from the rows when
    None, :func:`infer_block_tokens`) are kept with ``keep``: ids of ``hash_scope="session"``
    are first made global per (session, id); then re-chunked to ``block_size``: coarser by a
    whole factor ``k`` with :func:`servetrace.analysis.kvcache.rechunk` (a coarse id names the
    tuple of its ``k`` fine ids, so two requests share a coarse block iff they share all of
    it), finer by a whole factor ``k`` by splitting id ``h`` into ``h·k, ..., h·k + k - 1``
    (shared blocks stay shared, block by block). A request left with too many ids is cut to
    its length; one with too few (a trace that counts full blocks only, ``floor``) gets fresh
    ids for its tail, unique to it, as does every request without ids, so no sharing is
    invented. Other ratios of sizes raise ``ValueError``.
    """
    from servetrace.analysis import kvcache

    if block_size < 1:
        raise ValueError(f"block_size must be a positive number of tokens, got {block_size}")
    if hash_scope not in ("global", "session"):
        raise ValueError(f"hash_scope must be 'global' or 'session', got {hash_scope!r}")
    has = keep and "hash_ids" in frame.columns and frame["hash_ids"].null_count() < frame.height
    want = (pl.col("input_tokens").cast(pl.Int64) + block_size - 1) // block_size
    if not has:
        return hash_ids(frame.select("input_tokens"), block_size, keep=False)
    source = hash_block_tokens or infer_block_tokens(frame)
    ids = frame["hash_ids"].cast(pl.List(pl.Int64))
    if hash_scope == "session":
        ids = _global_ids(frame.with_columns(ids))
    if block_size > source and block_size % source == 0:
        ids = kvcache.rechunk(pl.DataFrame({"hash_ids": ids}), block_size // source)["hash_ids"]
    elif block_size < source and source % block_size == 0:
        k = source // block_size
        ids = pl.select(ids.list.eval(pl.int_ranges(pl.element() * k, pl.element() * k + k))
                        .list.eval(pl.element().explode())).to_series()
    elif block_size != source:
        raise ValueError(f"cannot re-chunk {source}-token blocks to {block_size}-token blocks: "
                         f"one size must be a whole multiple of the other")
    work = frame.select("input_tokens").with_columns(ids.alias("ids"))
    kept = pl.col("ids").list.head(want)
    short = (want - kept.list.len().fill_null(0)).clip(lower_bound=0)
    top = ids.list.max().max()
    first = 0 if top is None else int(top) + 1
    ends = short.cum_sum() + first
    fresh = pl.int_ranges(ends - short, ends, dtype=pl.Int64)
    out = work.select(pl.concat_list(kept.fill_null(pl.lit([], pl.List(pl.Int64))), fresh)
                      .alias("hash_ids"))
    return out.to_series()


def has_hash_ids(frame: pl.DataFrame) -> bool:
    """Whether any row of ``frame`` carries ``hash_ids``."""
    return "hash_ids" in frame.columns and frame["hash_ids"].null_count() < frame.height


def trace_block_tokens(frame: pl.DataFrame, hash_block_tokens: int | None,
                       keep: bool = True) -> int:
    """The block size a consumer file gets when the user names none: the trace's own
    (``hash_block_tokens``, else inferred from the kept ids), else Mooncake's 512."""
    if keep and has_hash_ids(frame):
        return hash_block_tokens or infer_block_tokens(frame)
    return MOONCAKE_BLOCK_TOKENS


def offset_notes(frame: pl.DataFrame, rebase: bool, why: str) -> tuple[str, ...]:
    """A note when timestamps are kept (``rebase=False``) and the first request is more
    than a minute after the trace zero: the consumer replays absolute offsets, so it idles
    that long before the first request."""
    first = float(frame["arrival_s"].min())
    if rebase or first <= 60.0:
        return ()
    return (f"timestamps kept: the first request is at {first:,.0f} s ({first / 86400:,.1f} "
            f"days) and {why}; export with rebase (the default) to start at 0",)


def session_ids(frame: pl.DataFrame) -> pl.Expr:
    """The ``session`` column as strings, a request without one named ``request-<row>``
    after its row (0-based, arrival order): a conversation of its own."""
    return pl.coalesce(optional(frame, "session", pl.String),
                       pl.format("request-{}", pl.int_range(pl.len())))


def has_sessions(frame: pl.DataFrame) -> bool:
    """Whether any row of ``frame`` names a ``session``."""
    return "session" in frame.columns and frame["session"].null_count() < frame.height


def turn_schedule(frame: pl.DataFrame, rebase: bool, think: bool) -> tuple[pl.Expr, pl.Expr]:
    """(``timestamp`` ms, ``delay`` ms) for a consumer that sends a session's turns in order
    (AIPerf): a session's first request keeps its timestamp; a later one, with ``think`` and a
    known ``think_s``, gets ``delay = round(think_s · 1000)`` (wait after the previous
    response, as the agent did) and a null timestamp, else its timestamp. Needs the column
    ``session_id`` (:func:`session_ids`)."""
    first = pl.int_range(pl.len()).over("session_id") == 0
    think_ms = (optional(frame, "think_s", pl.Float64) * 1000.0).round().cast(pl.Int64)
    delayed = ~first & think_ms.is_not_null() if think else pl.lit(False)
    stamp = pl.when(delayed).then(None).otherwise(milliseconds(rebase))
    delay = pl.when(delayed).then(think_ms).otherwise(None)
    return stamp.alias("timestamp"), delay.alias("delay")


def aiperf_command(path: Path, dataset_type: str, *extra: object) -> str:
    """``aiperf profile`` reading ``path`` as ``--custom-dataset-type dataset_type`` on its
    timestamps (``--fixed-schedule``; the file's timestamps count from its first request
    unless kept, see the format's ``rebase``)."""
    return shell("aiperf", "profile", "--model", "MODEL", "--url", "URL", "--endpoint-type",
                 "chat", "--streaming", "--input-file", path, "--custom-dataset-type",
                 dataset_type, "--fixed-schedule", *extra)
