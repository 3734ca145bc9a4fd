"""Sampling a :class:`~servetrace.synth.mix.Mix`: its sources loaded, its rate factors solved,
each component sampled through its envelopes, and the parts merged into one canonical
``requests`` table with the class columns set (see :mod:`~servetrace.synth.mix`).

Parts are merged so that nothing is shared by accident: every part's prefix block ids are
shifted past the previous parts' (a replayed trace's repeats and shifted copies too: two
copies of one conversation are two users, whose caches do not meet), sessions are renumbered
``s0``, ``s1``, … over (part, session), request ids number the merged rows in time order and
``parent_request_id`` follows them. The random streams of component i are seeded by
(seed, i), so changing one component leaves the others' requests as they were.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from servetrace.loaders.schema import conform
from servetrace.synth import mix_envelopes as me
from servetrace.synth.lengths import _copula, _stratified_normal
from servetrace.synth.mix import METADATA_KEY, Component, Mix, Natural, solve
from servetrace.synth.model import WorkloadModel, fit

_ROOT = 0x313A1C  # mixes into every seed: a mix's streams differ from a model's own

_BATCH_KEEP = ("input_tokens", "output_tokens", "tenant", "model", "log_type", "hash_ids",
               "num_images", "request_type", "cached_tokens", "reasoning_tokens")
"""Columns a batch keeps of the trace rows it takes (no times, no session structure)."""

Source = WorkloadModel | pl.DataFrame


@dataclass(frozen=True)
class MixSample:
    """A mix's sample and how it was made: per component the solved factor (a batch: its
    count), the expected and the sampled requests; ``notes`` what had to be dropped."""

    requests: pl.DataFrame
    mix: Mix
    duration_s: float
    seed: int
    rate_scale: float
    factors: tuple[float, ...]
    expected: tuple[float, ...]
    counts: tuple[int, ...]
    notes: tuple[str, ...] = ()
    hash_block_tokens: int | None = None
    hash_scope: str = "global"

    def metadata(self) -> dict[str, str]:
        """Parquet key-value metadata: :data:`~servetrace.synth.mix.METADATA_KEY` (the mix's
        name, components with factors and counts, envelopes, seed), the scaling record of
        ``servetrace generate`` and, where parts carry ``hash_ids``, their block size and
        scope."""
        from servetrace.synth.scale import METADATA_KEY as SCALING
        from servetrace.synth.scale import _record, records_json

        comps = []
        for i, c in enumerate(self.mix.components):
            d = {"label": c.label, "kind": c.kind, "source": c.source, "sha256": c.sha256,
                 "share": c.share, "request_class": c.request_class, "offline": c.offline,
                 "priority": c.priority, "slo_ttft_s": c.slo_ttft_s, "slo_tpot_s": c.slo_tpot_s,
                 "factor": self.factors[i], "expected_requests": self.expected[i],
                 "requests": self.counts[i]}
            if c.models is not None:
                d["models"] = {"law": c.models.law, "names": len(c.models.names),
                               "exponent": c.models.exponent, "source": c.models.source,
                               "per": c.models.per}
            comps.append(d)
        envs = [{"kind": e.kind, "label": e.label, "at_s": e.at_s, "duration_s": e.duration_s,
                 "height": e.height, "start": e.start, "window_s": e.window_s,
                 "windows": len(e.values), "source": e.source, "components": list(e.components)}
                for e in self.mix.envelopes]
        desc = {"name": self.mix.name, "version": self.mix.version, "by": self.mix.by,
                "rate": self.mix.rate, "duration_s": self.duration_s, "seed": self.seed,
                "rate_scale": self.rate_scale, "components": comps, "envelopes": envs,
                "notes": list(self.notes)}
        meta = {METADATA_KEY: json.dumps(desc),
                SCALING: records_json([_record("mix", name=self.mix.name,
                                               components=len(comps), duration_s=self.duration_s,
                                               seed=self.seed, rate_scale=self.rate_scale)])}
        if self.hash_block_tokens is not None:
            meta["hash_block_tokens"] = str(self.hash_block_tokens)
            meta["hash_scope"] = self.hash_scope
        return meta


def _seed(seed: int, *path: int) -> int:
    return int(np.random.SeedSequence([_ROOT, int(seed) & 0xFFFFFFFFFFFFFFFF, *path])
               .generate_state(1, np.uint64)[0] >> np.uint64(1))


def _rng(seed: int, *path: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([_ROOT, int(seed) & 0xFFFFFFFFFFFFFFFF,
                                                         *path]))


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file (a component's provenance)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve(source: str, base: str | Path | None) -> Path | None:
    """The file a source names (relative to ``base``), or None for a store trace id."""
    if not source.endswith((".json", ".parquet")):
        return None
    p = Path(source)
    return p if p.is_absolute() or base is None else Path(base) / p


def load_source(c: Component, base: str | Path | None, store: str | Path | None) -> Source:
    """A component's model (``.json``) or requests (``.parquet`` file, or store trace id)."""
    path = resolve(c.source, base)
    if path is not None and not path.exists():
        raise FileNotFoundError(f"component {c.label!r}: {path}: no such file")
    if path is not None and path.suffix == ".json":
        return WorkloadModel.load(path)
    if path is not None:
        try:
            frame = pl.read_parquet(path)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise ValueError(f"component {c.label!r}: {path}: not a readable Parquet file "
                             f"({exc})") from None
    else:
        from servetrace.loaders import Store

        frame = Store(store).scan("requests", c.source).collect()
        if frame.height == 0:
            raise ValueError(f"component {c.label!r}: no requests of trace {c.source!r} in "
                             "the store")
    if "input_tokens" not in frame.columns:
        raise ValueError(f"component {c.label!r}: {c.source}: not a requests trace (no "
                         "'input_tokens' column)")
    if c.kind != "batch":
        if "arrival_s" not in frame.columns or frame["arrival_s"].null_count() == frame.height:
            raise ValueError(f"component {c.label!r}: {c.source} has no arrival times (a "
                             "batch trace): use it as a batch")
        frame = frame.filter(pl.col("arrival_s").is_not_null()).sort("arrival_s",
                                                                      maintain_order=True)
        if frame.height < 2:
            raise ValueError(f"component {c.label!r}: {c.source} has fewer than 2 requests")
    return frame


def _span(frame: pl.DataFrame) -> tuple[float, float]:
    """(first arrival, span) of a trace, the span as :func:`~servetrace.synth.model.fit`
    takes it: (last − first)·n/(n − 1), one mean gap past the last arrival."""
    a = frame["arrival_s"]
    first, last, n = float(a.min()), float(a.max()), a.len()  # type: ignore[arg-type]
    span = (last - first) * n / (n - 1)
    if not span > 0:
        raise ValueError("the trace spans no time (all arrivals equal)")
    return first, span


def _mean_tokens(frame: pl.DataFrame) -> float:
    out = frame["output_tokens"].fill_null(0) if "output_tokens" in frame.columns else 0
    return float((frame["input_tokens"] + out).mean())  # type: ignore[arg-type, operator]


def natural(c: Component, src: Source, envelopes: tuple[me.Envelope, ...],
            duration_s: float) -> Natural:
    """What component ``c`` offers at factor 1 over ``duration_s`` (:class:`Natural`)."""
    if isinstance(src, WorkloadModel):
        tok = float(sum(src.mean_tokens()))
        if c.kind == "batch":
            return Natural(1.0, tok)
        return Natural(src.mean_rate * me.integral(envelopes, duration_s), tok)
    if c.kind == "batch":
        return Natural(1.0, _mean_tokens(src), src.height)
    _, span = _span(src)
    return Natural(src.height / span * me.integral(envelopes, duration_s), _mean_tokens(src))


def _units(frame: pl.DataFrame, by_session: bool = True) -> tuple[np.ndarray, int]:
    """Unit index per row: its (``_part``, ``session``) where the session is set, else the
    row itself; and the number of units."""
    n = frame.height
    if not by_session or "session" not in frame.columns or frame["session"].null_count() == n:
        return np.arange(n, dtype=np.int64), n
    part = pl.col("_part").cast(pl.String) if "_part" in frame.columns else pl.lit("")
    key = pl.concat_str([part, pl.col("session")], separator="/")
    r = frame.select((key.rank("dense").cast(pl.Int64) - 1).fill_null(-1)).to_series()
    r = r.to_numpy().copy()
    n_s = int(r.max()) + 1 if n else 0
    loose = r < 0
    r[loose] = n_s + np.arange(int(loose.sum()))
    return r, n_s + int(loose.sum())


def _thin(frame: pl.DataFrame, prob: Callable[[np.ndarray], np.ndarray],
          rng: np.random.Generator) -> pl.DataFrame:
    """Keep each unit (session, or request outside sessions) with probability ``prob`` at
    its first request's time: independent p-thinning of session starts."""
    if frame.height == 0:
        return frame
    unit, k = _units(frame)
    t = frame["arrival_s"].to_numpy()
    first = np.full(k, np.inf)
    np.minimum.at(first, unit, t)
    keep = rng.random(k) < prob(first)
    return frame.filter(pl.Series(keep[unit]))


def _replay_at(frame: pl.DataFrame, g: float, duration_s: float, rng: np.random.Generator
               ) -> pl.DataFrame:
    """A trace's own requests at rate factor ``g`` over [0, D): its times from its first
    arrival, repeated every span past its end; ⌈g⌉ copies, all but the first circularly
    shifted by a uniform offset (a session moves whole, by its start), each unit kept with
    probability g/⌈g⌉. Column ``_sub`` numbers the (copy, repeat) a row belongs to."""
    first, span = _span(frame)
    copies = max(math.ceil(g - 1e-12), 1)
    reps = math.ceil(duration_s / span) + 1
    t0 = frame["arrival_s"].to_numpy() - first
    unit, k = _units(frame)
    start = np.full(k, np.inf)
    np.minimum.at(start, unit, t0)
    pieces = []
    for j in range(copies):  # ⌈g⌉ copies, each a vectorized block
        shift = 0.0 if j == 0 else float(rng.uniform(0.0, span))
        t = np.mod(start[unit] + shift, span) + (t0 - start[unit])
        tt = (t[None, :] + span * np.arange(reps)[:, None]).ravel()
        rows = np.tile(np.arange(frame.height), reps)
        sub = np.repeat(np.arange(reps) + j * reps, frame.height)
        inside = tt < duration_s
        pieces.append(pl.DataFrame({"_row": rows[inside], "_sub": sub[inside],
                                    "arrival_s": tt[inside]}))
    idx = pl.concat(pieces)
    out = frame.drop("arrival_s").with_row_index("_row").join(
        idx, on="_row", how="inner", maintain_order="right").drop("_row")
    out = out.sort("arrival_s", maintain_order=True)
    out = out.with_columns(
        pl.when(pl.col("session").is_not_null()).then(
            pl.concat_str([pl.col("_sub").cast(pl.String), pl.col("session")], separator=":"))
        .alias("session")) if "session" in out.columns else out
    if "request_id" in out.columns:  # parents stay within their copy and repeat
        out = out.with_columns(
            pl.concat_str([pl.col("_sub").cast(pl.String), pl.col("request_id")],
                          separator=":").alias("request_id"),
            *([pl.concat_str([pl.col("_sub").cast(pl.String), pl.col("parent_request_id")],
                             separator=":").alias("parent_request_id")]
              if "parent_request_id" in out.columns else []))
    if "hash_ids" in out.columns and out["hash_ids"].null_count() < out.height:
        top = int(frame["hash_ids"].explode().max() or 0) + 1  # type: ignore[arg-type]
        out = out.with_columns(pl.col("hash_ids") + pl.col("_sub").cast(pl.Int64) * top)
    if copies * 1.0 != g:
        out = _thin(out.with_columns(pl.col("_sub").alias("_part")),
                    lambda t: np.full(len(t), g / copies), rng).drop("_part")
    return out.drop("_sub")


def _has_sessions(src: Source) -> bool:
    if isinstance(src, WorkloadModel):
        return any(g.sessions is not None for g in src.groups)
    return "session" in src.columns and src["session"].null_count() < src.height


def _arrival_pieces(c: Component, src: Source, f: float, envelopes: tuple[me.Envelope, ...],
                    duration_s: float, seed: int, i: int,
                    block: tuple[int | None, str] = (None, "global")) -> list[pl.DataFrame]:
    """Component i's requests through its envelopes (own process thinned by min(m, 1), an
    added copy at rate (M − 1)·f thinned by (max(m, 1) − 1)/(M − 1)). Without sessions the
    copy is sampled only up to the last time a multiplier exceeds 1
    (:func:`~servetrace.synth.mix_envelopes.excess_end`): past it every one of its points
    would be dropped. With sessions it runs to the end, so that a session starting in a
    spike keeps all its turns. ``block``: the trace's hash block size and id scope, for
    ``resample``'s fit."""
    if c.kind == "resample":
        assert isinstance(src, pl.DataFrame)
        src = fit(src, seed=_seed(seed, i, 9), block_tokens=block[0], hash_scope=block[1])

    def draw(scale: float, k: int, horizon: float) -> pl.DataFrame:
        if isinstance(src, WorkloadModel):
            return src.sample(horizon, _seed(seed, i, k), rate_scale=scale)
        return _replay_at(src, scale, horizon, _rng(seed, i, k))

    own = draw(f, 0, duration_s)
    if not envelopes:
        return [own]
    big = me.bound(envelopes)
    pieces = [_thin(own, lambda t: me.keep_probabilities(envelopes, t)[0], _rng(seed, i, 2))]
    if big > 1.0:
        horizon = duration_s if _has_sessions(src) else me.excess_end(envelopes, duration_s)
        extra = draw(f * (big - 1.0), 1, horizon)
        pieces.append(_thin(extra, lambda t: me.keep_probabilities(envelopes, t)[1],
                            _rng(seed, i, 3)))
    return pieces


def _batch(c: Component, src: Source, count: int, duration_s: float, seed: int, i: int
           ) -> pl.DataFrame:
    """``count`` offline requests at ``at_s``: lengths from a model's groups (in proportion
    to their rates, each its copula and labels) or a trace's rows (a random subset of
    distinct rows; past its size every row ⌊count/n⌋ times and a subset of the rest)."""
    if c.at_s >= duration_s:
        raise ValueError(f"component {c.label!r}: the batch at {c.at_s:g} s is past the "
                         f"sample's end ({duration_s:g} s)")
    rng = _rng(seed, i, 4)
    if isinstance(src, WorkloadModel):
        rates = np.array([g.request_rate for g in src.groups])
        per = rng.multinomial(count, rates / rates.sum())
        frames = []
        for g, n in zip(src.groups, per, strict=True):  # one vectorized draw per group
            if n == 0:
                continue
            inp, out = _copula(g.lengths, _stratified_normal(int(n), rng), rng)
            cols: dict[str, object] = {"input_tokens": inp, "output_tokens": out}
            lab = (rng.choice(len(g.labels.weights), size=int(n), p=np.asarray(g.labels.weights))
                   if len(g.labels.weights) > 1 else np.zeros(int(n), np.int64))
            for j, name in enumerate(g.labels.columns):
                cols[name] = pl.Series([v[j] for v in g.labels.values], dtype=pl.String
                                       ).gather(lab)
            frames.append(pl.DataFrame(cols))
        out_frame = pl.concat(frames, how="diagonal_relaxed")
    else:
        n = src.height
        if count <= n:
            rows = np.sort(rng.choice(n, size=count, replace=False))
        else:
            rows = np.concatenate([np.repeat(np.arange(n), count // n),
                                   np.sort(rng.choice(n, size=count % n, replace=False))])
        out_frame = src.select([x for x in _BATCH_KEEP if x in src.columns])[rows]
    return out_frame.with_columns(pl.lit(float(c.at_s)).alias("arrival_s"))


def _label(c: Component, frame: pl.DataFrame, seed: int, i: int) -> pl.DataFrame:
    """The component's class columns, and its model names drawn from its popularity law
    (one per session, or per request)."""
    cols = [pl.lit(c.request_class, pl.String).alias("request_class"),
            pl.lit(c.offline, pl.Boolean).alias("offline"),
            pl.lit(c.priority, pl.Int64).alias("priority"),
            pl.lit(c.slo_ttft_s, pl.Float64).alias("slo_ttft_s"),
            pl.lit(c.slo_tpot_s, pl.Float64).alias("slo_tpot_s"),
            pl.lit(i, pl.Int64).alias("_c")]
    frame = frame.with_columns(cols)
    if c.models is not None and frame.height:
        unit, k = _units(frame, by_session=c.models.per == "session")
        idx = c.models.draw(k, _rng(seed, i, 5))[unit]
        frame = frame.with_columns(pl.Series("model", list(c.models.names), pl.String)
                                   .gather(idx).alias("model"))
    return frame


def _block_layout(src: Source, c: Component, base: str | Path | None,
                  store: str | Path | None) -> tuple[int | None, str]:
    """(tokens per hash block, scope) of a source's ``hash_ids``, where known: a model's
    prefix, a Parquet file's metadata, a stored trace's ``traces`` row (Mooncake's
    documented 512 global where the row has none)."""
    if isinstance(src, WorkloadModel):
        p = next((g.prefix for g in src.groups if g.prefix is not None), None)
        return (p.block_tokens, p.scope) if p is not None else (None, "global")
    if "hash_ids" not in src.columns or src["hash_ids"].null_count() == src.height:
        return None, "global"
    path = resolve(c.source, base)
    if path is None:
        from servetrace.loaders import Store

        rows = Store(store).traces().filter(pl.col("trace") == c.source)
        if rows.is_empty():
            return None, "global"
        row = rows.row(0, named=True)
        if row.get("hash_block_tokens"):
            return int(row["hash_block_tokens"]), row.get("hash_scope") or "global"
        return (512 if row.get("dataset") == "mooncake" else None), "global"
    meta = {k.decode(): v.decode() for k, v in (pq.read_metadata(path).metadata or {}).items()}
    block = meta.get("hash_block_tokens")
    return (int(block) if block and block.isdigit() else None,
            meta.get("hash_scope", "global"))


def sample(mix: Mix, duration_s: float, seed: int, rate_scale: float = 1.0, *,
           base: str | Path | None = None, store: str | Path | None = None,
           sources: dict[str, Source] | None = None) -> MixSample:
    """See :meth:`Mix.sample`; ``sources`` (label → model or requests frame) replaces
    loading a component's source. Returns the table with how it was made."""
    if not (isinstance(duration_s, int | float) and math.isfinite(duration_s)
            and duration_s > 0):
        raise ValueError(f"mix sample: duration_s must be a positive number, got {duration_s!r}")
    if not (isinstance(rate_scale, int | float) and math.isfinite(rate_scale)
            and rate_scale > 0):
        raise ValueError(f"mix sample: rate_scale must be positive, got {rate_scale!r}")
    duration_s = float(duration_s)
    given = sources or {}
    srcs = [given[c.label] if c.label in given else load_source(c, base, store)
            for c in mix.components]
    envs = [mix.envelopes_of(c) for c in mix.components]
    nat = [natural(c, s, e, duration_s) for c, s, e in zip(mix.components, srcs, envs,
                                                            strict=True)]
    factors = solve(mix, nat, duration_s, rate_scale)
    notes: list[str] = []
    for c in mix.components:
        path = resolve(c.source, base)
        if c.sha256 and c.label not in given and path is not None \
                and file_sha256(path) != c.sha256:
            notes.append(f"component {c.label!r}: {path} has changed since the mix was made "
                         "(its SHA-256 differs from the mix's)")
    layout: tuple[int | None, str] | None = None
    parts: list[pl.DataFrame] = []
    id_base = 0
    expected = []
    for i, (c, src, e, f) in enumerate(zip(mix.components, srcs, envs, factors, strict=True)):
        block = (_block_layout(src, c, base, store)
                 if c.label not in given or isinstance(src, WorkloadModel) else (None, "global"))
        if c.kind == "batch":
            count = round(f)
            expected.append(float(count))
            pieces = [_batch(c, src, count, duration_s, seed, i)] if count else []
        else:
            expected.append(f * nat[i].requests)
            pieces = _arrival_pieces(c, src, f, e, duration_s, seed, i, block)
        for piece in pieces:  # a handful per component
            piece = piece.with_columns(pl.lit(len(parts), pl.Int64).alias("_part"))
            if "hash_ids" in piece.columns and piece["hash_ids"].null_count() < piece.height:
                if layout is None and block[0] is not None:
                    layout = block
                if block[0] is not None and layout is not None and block != layout:
                    notes.append(f"component {c.label!r}: hash_ids dropped (blocks of "
                                 f"{block[0]} tokens, {block[1]} scope, where the mix's "
                                 f"first are {layout[0]}, {layout[1]})")
                    piece = piece.drop("hash_ids")
                else:
                    top = piece["hash_ids"].explode().max()
                    piece = piece.with_columns(pl.col("hash_ids") + id_base)
                    id_base += int(top) + 1 if top is not None else 0  # type: ignore[arg-type]
            parts.append(_label(c, piece, seed, i))
    out = _merge(parts, mix.name)
    counts = np.bincount(out["_c"].to_numpy(), minlength=len(mix.components)) \
        if out.height else np.zeros(len(mix.components), np.int64)
    return MixSample(out.drop("_c"), mix, duration_s, int(seed), float(rate_scale),
                     tuple(factors), tuple(expected), tuple(int(x) for x in counts),
                     tuple(dict.fromkeys(notes)),
                     layout[0] if layout else None, layout[1] if layout else "global")


def _merge(parts: list[pl.DataFrame], name: str) -> pl.DataFrame:
    """The parts in time order with request ids, parents and sessions renumbered (module
    docstring); the component index stays in ``_c`` for :meth:`MixSample.metadata`."""
    if not parts:
        empty = conform("requests", pl.DataFrame({"trace": pl.Series([], dtype=pl.String),
                                                  "arrival_s": pl.Series([], dtype=pl.Float64),
                                                  "input_tokens": pl.Series([], dtype=pl.Int64)}))
        return empty.with_columns(pl.lit(None, pl.Int64).alias("_c"))
    parts = [p.with_columns((pl.col("request_id").cast(pl.String) if "request_id" in p.columns
                             else pl.int_range(pl.len()).cast(pl.String)).alias("_rid"))
             for p in parts]
    out = pl.concat(parts, how="diagonal_relaxed").sort("arrival_s", maintain_order=True)
    out = out.with_columns(pl.int_range(pl.len()).cast(pl.String).alias("request_id"),
                           pl.lit(f"synth/mix/{name}").alias("trace"))
    if "parent_request_id" in out.columns:
        ids = out.select("_part", pl.col("_rid").alias("parent_request_id"),
                         pl.col("request_id").alias("_new")).drop_nulls().unique(
            ["_part", "parent_request_id"], keep="first", maintain_order=True)
        out = out.join(ids, on=["_part", "parent_request_id"], how="left",
                       maintain_order="left").with_columns(
            pl.col("_new").alias("parent_request_id")).drop("_new")
    if "session" in out.columns and out["session"].null_count() < out.height:
        key = pl.concat_str([pl.col("_part").cast(pl.String), pl.col("session")], separator="/")
        new = pl.format("s{}", key.rank("dense").cast(pl.Int64) - 1)
        if "tenant" in out.columns:
            out = out.with_columns(pl.when(pl.col("tenant") == pl.col("session"))
                                   .then(new).otherwise(pl.col("tenant")).alias("tenant"))
        out = out.with_columns(pl.when(pl.col("session").is_not_null()).then(new)
                               .alias("session"))
    c = out["_c"]
    return conform("requests", out).with_columns(c)
