"""Keep-alive events: a serverless trace turned into per-unit event arrays for
:mod:`servetrace.analysis.keepalive`'s kernels.

An event is one invocation, or one window's ``c`` invocations of an ``invocation_counts`` table
spread within the window by systematic sampling with a random phase (the rule and the
duration and memory sources are told in :mod:`servetrace.analysis.keepalive`). Units (``by``)
are prepared in chunks of whole units, sorted by (unit, time), with each event's running busy
end ``M``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from servetrace.analysis.frames import lazy as _lazy

Frame = pl.DataFrame | pl.LazyFrame

_KEYS = ("trace", "tenant", "app", "function")


def _require(schema: pl.Schema, cols: Sequence[str], name: str) -> None:
    for c in cols:
        if c not in schema:
            raise ValueError(f"{name}: missing column {c!r}")


@dataclass
class _Events:
    """One chunk of whole units, sorted by (unit, time): one row per event.

    An event is one invocation (``c = 1``) or one window's ``c`` invocations starting at
    ``s``, ``s + h``, ..., each of duration ``d``.
    """

    keys: pl.DataFrame  # one row per unit: the by columns
    memory_mb: np.ndarray  # per unit, NaN where unknown
    unit: np.ndarray  # per event, 0..U-1, non-decreasing
    starts: np.ndarray  # first event of each unit
    s: np.ndarray
    c: np.ndarray  # int64 >= 1
    h: np.ndarray
    d: np.ndarray
    busy: np.ndarray  # running max of event ends within the unit (M)
    horizon: float

    def view(self, u0: int, u1: int) -> _Events:
        """Units ``u0 .. u1-1`` (NumPy views, no copies)."""
        a = int(self.starts[u0])
        b = int(self.starts[u1]) if u1 < len(self.starts) else len(self.s)
        return _Events(self.keys.slice(u0, u1 - u0), self.memory_mb[u0:u1],
                       self.unit[a:b] - u0, self.starts[u0:u1] - a, self.s[a:b],
                       self.c[a:b], self.h[a:b], self.d[a:b], self.busy[a:b], self.horizon)


def _function_table(functions: Frame, keys: list[str], schema: pl.Schema) -> pl.DataFrame:
    """Per function key: ``_fd`` (duration, s) and ``_fm`` (memory, MB), keys cast to the
    trace's types (a Categorical key joins on its categories, no strings built)."""
    lf = _lazy(functions, "functions")
    fs = lf.collect_schema()

    def first(cols: Sequence[str]) -> pl.Expr:
        have = [pl.col(c).cast(pl.Float64) for c in cols if c in fs]
        return pl.coalesce(have) if have else pl.lit(None, pl.Float64)

    return (lf.select(*[pl.col(k).cast(schema[k], strict=False) for k in keys],
                      first(["duration_mean_s", "duration_p50_s"]).alias("_fd"),
                      first(["memory_limit_mb", "memory_mean_mb", "memory_p50_mb"]).alias("_fm"))
            .group_by(keys).agg(pl.col("_fd").mean(), pl.col("_fm").max()).collect())


def _join_functions(rows: pl.LazyFrame, fx: pl.DataFrame, keys: list[str]) -> pl.LazyFrame:
    """Left-join ``_fd``/``_fm`` on all ``keys`` (nulls match nulls). When ``function`` alone
    is unique in ``fx`` the join is on it (one key is much faster) and the other keys are
    compared afterwards: a row whose other keys differ gets nulls, as the full join would.
    The trace's row order is kept: the functions of a unit's window are merged in that order,
    so an unordered join changed the merged duration, and a unit's idle time, in the last bit
    from one run to the next."""
    if len(keys) == 1 or fx["function"].n_unique() != fx.height:
        return rows.join(fx.lazy(), on=keys, how="left", nulls_equal=True,
                         maintain_order="left")
    other = [k for k in keys if k != "function"]
    right = fx.lazy().rename({k: f"_fx_{k}" for k in other})
    same = pl.all_horizontal([pl.col(k).eq_missing(pl.col(f"_fx_{k}")) for k in other])
    return (rows.join(right, on="function", how="left", maintain_order="left")
            .with_columns(pl.when(same).then(pl.col(c)).alias(c) for c in ("_fd", "_fm"))
            .drop([f"_fx_{k}" for k in other]))


def _unit_code(by: list[str], schema: pl.Schema) -> tuple[pl.Expr, bool]:
    """A 64-bit code per unit key, to group and order units (not to name them), and whether
    it is exact: a single Categorical column's physical code is; otherwise a hash."""
    if not by:
        return pl.lit(0, pl.UInt64), True
    if len(by) == 1 and isinstance(schema[by[0]], pl.Categorical | pl.Enum):
        return pl.col(by[0]).to_physical().cast(pl.UInt64).fill_null(2**64 - 1), True
    return (pl.col(by[0]).hash(seed=0) if len(by) == 1 else pl.struct(by).hash(seed=0)), False


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer (Steele, Lea, Flood, OOPSLA 2014): a uint64 → uint64 bijection."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _events(trace: Frame, by: list[str], *, functions: Frame | None, duration_s: float | None,
            horizon_s: float | None, spread: str, seed: int, chunk_rows: int
            ) -> Iterator[_Events]:
    """The trace as chunks of whole units (see :class:`_Events`)."""
    if spread not in ("phase", "even"):
        raise ValueError(f"spread must be 'phase' or 'even', got {spread!r}")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s >= 0):
        raise ValueError(f"duration_s must be finite and >= 0, got {duration_s!r}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows!r}")
    lf = _lazy(trace, "trace")
    schema = lf.collect_schema()
    if "arrival_s" in schema:
        counts, t = False, "arrival_s"
        need = ["arrival_s"]
    elif "window_start_s" in schema or "count" in schema:
        counts, t = True, "window_start_s"
        need = ["window_start_s", "window_s", "count"]
    else:
        raise ValueError("trace: missing column 'arrival_s' (invocations) or "
                         "'window_start_s' and 'count' (invocation_counts)")
    _require(schema, need + by, "trace")
    for c in by:
        if c in need:
            raise ValueError(f"by: {c!r} is a time or count column, not a unit")
    keys: list[str] = []
    fx = None
    if functions is not None:
        fschema = _lazy(functions, "functions").collect_schema()
        keys = [k for k in _KEYS if k in schema and k in fschema]
        if "function" not in keys:
            raise ValueError("functions: cannot be matched to the trace: both need a "
                             "'function' column")
        fx = _function_table(functions, keys, schema)
    cols = list(dict.fromkeys([*by, *need, *keys]))
    for extra in ("duration_s", "memory_mb"):
        if extra in schema and not counts:
            cols.append(extra)
    if "trace" in schema and "trace" not in by:
        n_traces = lf.select(pl.col("trace").n_unique()).collect().item()
        if n_traces > 1:
            raise ValueError(f"trace: {n_traces} traces in one frame; add 'trace' to by")
    base = lf.select(cols).collect()
    if base.height == 0:
        raise ValueError("trace: no rows")
    # the horizon: the end of the trace (last window's end, or last arrival + duration)
    if horizon_s is None:
        if counts:
            end = pl.col("window_start_s") + pl.col("window_s")
        elif "duration_s" in base.columns and duration_s is None:
            end = pl.col("arrival_s") + pl.col("duration_s").fill_null(0.0)
        else:
            end = pl.col("arrival_s") + (duration_s or 0.0)
        horizon = base.select(end.max()).item()
    else:
        horizon = float(horizon_s)
    if horizon is None or not math.isfinite(horizon):
        raise ValueError(f"trace: cannot find the trace end (horizon_s = {horizon!r})")
    code, exact = _unit_code(by, base.schema)
    n_chunks = max(1, math.ceil(base.height / chunk_rows)) if by else 1
    if n_chunks > 1:  # units to chunks by hash; rows grouped by chunk with one stable sort
        dtype = pl.UInt16 if n_chunks <= 1 << 16 else pl.UInt32
        ck = base.select((code.hash(seed=1) % n_chunks).cast(dtype)).to_series().to_numpy()
        perm, bounds = _group_rows(ck, n_chunks)
        del ck
    dur = [pl.lit(duration_s, pl.Float64)] if duration_s is not None else [
        *(["duration_s"] if "duration_s" in cols else []),
        *(["_fd"] if fx is not None else []), pl.lit(0.0)]
    mem = [*(["memory_mb"] if "memory_mb" in cols else []),
           *(["_fm"] if fx is not None else []), pl.lit(None, pl.Float64)]
    row = [*by, t, code.alias("_h"), pl.coalesce(dur).cast(pl.Float64).alias("_d"),
           pl.coalesce(mem).cast(pl.Float64).alias("_m"),
           *((pl.col("count").cast(pl.Int64).alias("_c"),
              pl.col("window_s").cast(pl.Float64).alias("_w")) if counts else ())]
    for k in range(n_chunks):
        ch = (base if n_chunks == 1
              else base.gather(perm.slice(bounds[k], bounds[k + 1] - bounds[k]))).lazy()
        if fx is not None:
            ch = _join_functions(ch, fx, keys)
        ch = ch.select(row)
        if counts:
            ch = ch.filter(pl.col("_c") > 0)
        rows = ch.collect()
        if rows.height:
            yield _prepare(rows, by, t, counts, spread, seed, horizon, exact)


def _group_rows(key: np.ndarray, n_keys: int, block: int = 1 << 24
                ) -> tuple[pl.Series, np.ndarray]:
    """A stable counting sort of rows by ``key`` (``0 ≤ key < n_keys``): the row indices
    grouped by key (32-bit, for :meth:`polars.DataFrame.gather`) and each key's bounds in
    them. Rows are placed a block at a time, so the only large array is the result."""
    counts = np.bincount(key, minlength=n_keys)
    bounds = np.r_[0, np.cumsum(counts)]
    idx = np.uint32 if len(key) < 1 << 32 else np.uint64
    perm = np.empty(len(key), idx)
    fill = bounds[:-1].copy()
    for lo in range(0, len(key), block):
        kb = key[lo:lo + block]
        o = np.argsort(kb, kind="stable")
        ks = kb[o]
        nb = np.bincount(kb, minlength=n_keys)
        rank = np.arange(len(o)) - (np.cumsum(nb) - nb)[ks]
        perm[fill[ks] + rank] = o + lo
        fill += nb
    return pl.Series(perm), bounds


def _order(ids: np.ndarray, t: np.ndarray, n_ids: int) -> np.ndarray:
    """Indices sorting rows by (unit id ``0 ≤ id < n_ids``, time).

    First a stable sort by id alone (a radix sort when ids fit 16 bits): enough when each
    unit's rows are already in time order, as in canonical tables sorted by time. Otherwise
    one stable sort (merging presorted runs) of ``id · span + (t - t_min)``, checked, else a
    lexicographic sort (when rounding merged close times of a unit)."""
    small = ids.astype(np.uint16) if n_ids <= 1 << 16 else ids
    order = np.argsort(small, kind="stable")
    i, ts = ids[order], t[order]
    if not ((i[1:] == i[:-1]) & (ts[1:] < ts[:-1])).any():
        return order
    t0 = float(t.min())
    span = 2.0 * (float(t.max()) - t0) + 1.0
    order = np.argsort(ids * span + (t - t0), kind="stable")
    i, ts = ids[order], t[order]
    if ((i[1:] == i[:-1]) & (ts[1:] < ts[:-1])).any():
        order = np.lexsort((t, ids))
    return order


def _prepare(ch: pl.DataFrame, by: list[str], t: str, counts: bool, spread: str, seed: int,
             horizon: float, exact: bool) -> _Events:
    """Rows of whole units to events sorted by (unit, time): a window's rows (several
    functions of one unit) are merged, counts added and durations averaged weighted by count.
    Units are told apart by their code ``_h`` (:func:`_unit_code`); if it is a hash and two
    keys of the chunk share it, by the keys themselves (a dense rank, slower)."""
    hsh = ch["_h"].to_numpy()
    uniq = np.sort(ch["_h"].unique().to_numpy())
    if not exact and len(uniq) != ch.select(pl.col(by[0]).n_unique() if len(by) == 1
                                            else pl.struct(by).n_unique()).item():
        ids = ch.select(pl.struct(by).rank("dense") - 1).to_series().to_numpy()
        ids = ids.astype(np.int64)
        n_ids = int(ids.max()) + 1
    elif exact and int(uniq[-1]) < 4 * len(hsh) + 1024:  # small codes: a lookup table
        lut = np.zeros(int(uniq[-1]) + 1, np.int64)
        lut[uniq] = np.arange(len(uniq))
        ids, n_ids = lut[hsh], len(uniq)
    else:
        ids, n_ids = np.searchsorted(uniq, hsh), len(uniq)
    tt = np.asarray(ch[t].to_numpy(), dtype=np.float64)
    if not np.isfinite(tt).all():
        raise ValueError(f"trace: non-finite {t}")
    order = _order(ids, tt, n_ids)
    ids, tt = ids[order], tt[order]
    d = np.asarray(ch["_d"].to_numpy(), dtype=np.float64)[order]
    if (d < 0).any() or not np.isfinite(d).all():
        raise ValueError("trace: negative or non-finite duration_s")
    new_unit = np.r_[True, ids[1:] != ids[:-1]]
    row_first = np.flatnonzero(new_unit)
    keys = ch.select(by).gather(order[row_first]) if by else pl.DataFrame()
    m = np.asarray(ch["_m"].to_numpy(), dtype=np.float64)[order]
    mem = np.fmax.reduceat(m, row_first)  # NaN only where the whole unit has none
    if counts:
        ev = np.flatnonzero(new_unit | np.r_[True, tt[1:] != tt[:-1]])
        n = ch["_c"].to_numpy()[order]
        w = np.asarray(ch["_w"].to_numpy(), dtype=np.float64)[order]
        if not (np.isfinite(w).all() and (w > 0).all()):
            raise ValueError("trace: window_s must be finite and > 0")
        if len(ev) < len(tt):  # several rows (functions) in one window of a unit
            c = np.add.reduceat(n, ev)
            w = np.maximum.reduceat(w, ev)
            d = _seg_sum(n * d, ev) / c
            new_unit, tt = new_unit[ev], tt[ev]
        else:
            c = n
    else:
        c = np.ones(len(tt), np.int64)
    first = np.flatnonzero(new_unit)
    unit = np.cumsum(new_unit) - 1
    if counts:
        h = w / c
        if spread == "even":
            u = np.full(len(tt), 0.5)
        else:  # one phase per (unit, window): hash of the unit's key, window start, seed
            ukey = (keys.select(pl.struct(pl.all().cast(pl.String)).hash(seed=0)).to_series()
                    .to_numpy() if by else np.zeros(1, np.uint64))
            salt = _mix64(np.full(1, seed % 2**64, np.uint64))
            x = _mix64(ukey[unit] ^ salt + tt.view(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
            u = (x >> np.uint64(11)).astype(np.float64) * 2.0**-53
        s = tt + u * h
    else:
        h = np.zeros(len(tt))
        s = tt
    end = s + (c - 1) * h + d
    busy = _seg_cummax(end, unit)
    return _Events(keys, mem, unit, first, s, c.astype(np.int64), h, d, busy, horizon)


def _seg_cummax(values: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Running maximum of ``values`` restarting at every change of ``unit`` (sorted)."""
    out = (pl.DataFrame({"u": pl.Series(unit).set_sorted(), "v": values})
           .select(pl.col("v").cum_max().over("u")).to_series().to_numpy())
    return np.asarray(out, dtype=np.float64)

def _seg_sum(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sums of ``x`` over the segments that begin at ``starts``, each added in row order.

    Not ``np.add.reduceat``: its pairwise float sums depend on where a segment lies in the
    array, so a unit's total would change in the last bits with the other units of its chunk
    (or partition); a sequential sum per segment (``bincount``) depends on the unit alone."""
    seg = np.zeros(len(x), np.int64)
    seg[starts[1:]] = 1
    return np.bincount(np.cumsum(seg), weights=x, minlength=len(starts))
