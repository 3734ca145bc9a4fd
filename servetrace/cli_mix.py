"""The `servetrace mix` command: build a workload mix (:mod:`servetrace.synth.mix`) from
models, traces and batches; `servetrace generate mix.json` samples it
(:func:`generate_mix`).

Per-source options take one value per SOURCE, comma-separated, ``-`` for "none" or "the
default" (``--share 0.8,0.2 --class online,offline --slo-ttft 1,-``); envelope options
take ``key=value`` lists and repeat (``--spike at=600,duration=300,height=3,to=chat``).

    servetrace mix conv.json burstgpt/sample --kind model,batch --share 0.8,0.2 \\
        --priority 0,1 --slo-ttft 1,- --adapters 20,- --zipf 1.1,- \\
        --spike at=600,duration=300,height=3 -o mix.json
    servetrace generate mix.json --duration 3600 -o mix.parquet
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.markup import escape

from servetrace.cli import _ERRORS, StoreOpt, _fail, app, err, out
from servetrace.loaders import Store


def _per_source(flag: str, what: str) -> object:
    """A per-source option: one value per SOURCE, comma-separated."""
    return typer.Option(flag, help=f"per source, comma-separated ('-': none): {what}")


def _values(flag: str, given: list[str] | None, n: int) -> list[str | None]:
    """The per-source values of ``flag`` (repeats and commas joined; ``-`` is None)."""
    if not given:
        return [None] * n
    vals = [v.strip() for g in given for v in g.split(",")]
    if len(vals) != n:
        raise ValueError(f"{flag}: {len(vals)} value(s) for {n} source(s); give one per "
                         f"source, comma-separated ({flag} {','.join(['X'] * n)}), '-' for none")
    return [None if v in ("-", "") else v for v in vals]


def _typed(flag: str, value: str | None, kind: type) -> object:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{flag}: {value!r} is not {'an integer' if kind is int else 'a number'}"
                         ) from None


def _frame(source: str, store: Store, columns: list[str]) -> pl.DataFrame:
    """Columns of a requests trace named on the command line (Parquet file or store id)."""
    path = Path(source)
    if path.suffix == ".parquet":
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        lf = pl.scan_parquet(path)
    else:
        if not (store.db_path.exists() and source in set(store.traces()["trace"])):
            raise ValueError(f"no trace {source!r} in store {store.root} (and not a .parquet "
                             "file)")
        lf = store.scan("requests", source)
    have = lf.collect_schema().names()
    missing = [c for c in columns if c not in have]
    if missing:
        raise ValueError(f"{source}: no {missing[0]!r} column")
    return lf.select(columns).collect()


def _popularity(label: str, adapters: str | None, law: str | None, store: Store) -> object:
    from servetrace.synth import mix_popularity as mp

    if adapters is None:
        if law is not None:
            raise ValueError(f"--zipf {law} for {label!r}: give --adapters (a number of "
                             "names, or a trace whose model column to use)")
        return None
    if adapters.isdigit():
        if law is None or law in ("fit", "empirical"):
            raise ValueError(f"--adapters {adapters} for {label!r}: give --zipf S, the "
                             "exponent of their popularity (fit and empirical need a trace)")
        s = _typed("--zipf", law, float)
        return mp.zipf(int(adapters), s, prefix="lora")  # type: ignore[arg-type]
    names = _frame(adapters, store, ["model"])["model"]
    return mp.from_trace(names, "empirical" if law == "empirical" else "zipf-fit",
                         source=adapters)


def _relative(source: str, folder: Path) -> str:
    """A file source relative to the mix file's folder (the mix travels with its sources)."""
    if not source.endswith((".json", ".parquet")):
        return source
    return os.path.relpath(Path(source).resolve(), folder.resolve())


def _label(source: str, taken: set[str]) -> str:
    base = Path(source).stem if source.endswith((".json", ".parquet")) else \
        source.replace("/", "_")
    label, k = base, 2
    while label in taken:
        label, k = f"{base}_{k}", k + 1
    taken.add(label)
    return label


@app.command("mix")
def mix_cmd(
    sources: Annotated[list[str], typer.Argument(
        metavar="SOURCE...", help="model JSON (servetrace fit), requests .parquet or store "
        "trace id, one per component")],
    output: Annotated[Path, typer.Option("-o", "--output", help="mix JSON to write")],
    kind: Annotated[list[str] | None, _per_source(
        "--kind", "model, replay, resample or batch (default: model for .json, replay "
        "otherwise)")] = None,
    label: Annotated[list[str] | None, _per_source(
        "--label", "component label (default: the file name or trace id)")] = None,
    share: Annotated[list[str] | None, _per_source(
        "--share", "share of the requests (or tokens); all or none, summing to 1")] = None,
    by: Annotated[str, typer.Option("--by", help="shares of requests or tokens")] = "requests",
    rate: Annotated[float | None, typer.Option(
        "--rate", help="total requests (or tokens, with --by tokens) per second; default: "
        "the first component with arrivals keeps its own rate")] = None,
    count: Annotated[list[str] | None, _per_source(
        "--count", "requests of a batch (without shares)")] = None,
    at: Annotated[list[str] | None, _per_source(
        "--at", "seconds at which a batch becomes available (default 0)")] = None,
    request_class: Annotated[list[str] | None, typer.Option(
        "--class", help="per source: online, offline or a class name of yours")] = None,
    priority: Annotated[list[str] | None, _per_source(
        "--priority", "scheduling priority, 0 the most urgent")] = None,
    slo_ttft: Annotated[list[str] | None, typer.Option(
        "--slo-ttft", help="per source: time-to-first-token target, seconds")] = None,
    slo_tpot: Annotated[list[str] | None, typer.Option(
        "--slo-tpot", help="per source: time-per-output-token target, seconds")] = None,
    adapters: Annotated[list[str] | None, typer.Option(
        "--adapters", help="per source: K adapter names lora-01..K, or a trace whose model "
        "column gives the names")] = None,
    zipf: Annotated[list[str] | None, typer.Option(
        "--zipf", help="per source: Zipf exponent S for K adapters; with a trace: fit "
        "(maximum likelihood, default) or empirical")] = None,
    spike: Annotated[list[str] | None, typer.Option(
        "--spike", help="at=S,duration=S,height=X[,label=..,to=A+B]; repeatable")] = None,
    step: Annotated[list[str] | None, typer.Option(
        "--step", help="at=S,height=X[,label=..,to=A+B]; repeatable")] = None,
    ramp: Annotated[list[str] | None, typer.Option(
        "--ramp", help="at=S,duration=S,height=X[,from=X,label=..,to=A+B]; repeatable")] = None,
    profile: Annotated[list[str] | None, typer.Option(
        "--profile", help="TRACE[,window=S,at=S,label=..,to=A+B]: the trace's windowed rate "
        "(mean 1) as a multiplier; repeatable")] = None,
    name: Annotated[str, typer.Option("--name", help="name of the mix (the sample's trace "
                                      "is synth/mix/NAME)")] = "mix",
    store: StoreOpt = None,
) -> None:
    """Combine models, traces and offline batches into a workload mix (JSON): shares,
    classes, priorities, SLOs, adapter popularity and rate envelopes. Sample it with
    `servetrace generate MIX.json`."""
    from servetrace.synth import mix as mx
    from servetrace.synth import mix_envelopes as me
    from servetrace.synth.mix_sample import file_sha256

    try:
        if output.suffix != ".json":
            raise ValueError(f"-o {output}: write a .json file")
        s = Store(store)
        n = len(sources)
        kinds = _values("--kind", kind, n)
        labels = _values("--label", label, n)
        shares = _values("--share", share, n)
        counts = _values("--count", count, n)
        ats = _values("--at", at, n)
        classes = _values("--class", request_class, n)
        prios = _values("--priority", priority, n)
        ttfts = _values("--slo-ttft", slo_ttft, n)
        tpots = _values("--slo-tpot", slo_tpot, n)
        adapt = _values("--adapters", adapters, n)
        laws = _values("--zipf", zipf, n)
        taken = {x for x in labels if x}
        comps = []
        for i, src in enumerate(sources):
            path = Path(src)
            if src.endswith((".json", ".parquet")) and not path.exists():
                raise FileNotFoundError(f"{path}: no such file")
            lab = labels[i] or _label(src, taken)
            comps.append(mx.component(
                lab, _relative(src, output.parent), kinds[i],
                share=_typed("--share", shares[i], float),
                count=_typed("--count", counts[i], int),
                at_s=_typed("--at", ats[i], float) or 0.0,
                request_class=classes[i], priority=_typed("--priority", prios[i], int),
                slo_ttft_s=_typed("--slo-ttft", ttfts[i], float),
                slo_tpot_s=_typed("--slo-tpot", tpots[i], float),
                models=_popularity(lab, adapt[i], laws[i], s),
                sha256=file_sha256(path) if path.is_file() else ""))
        envs = []
        for flag, specs in (("spike", spike), ("step", step), ("ramp", ramp)):
            envs += [me.Envelope(**me.parse(flag, x)) for x in specs or []]  # type: ignore[arg-type]
        for spec in profile or []:
            trace, _, rest = spec.partition(",")
            kw = me.parse("profile", rest)
            times = _frame(trace, s, ["arrival_s"])["arrival_s"].drop_nulls().to_numpy()
            envs.append(me.profile_from_times(
                times, float(kw.get("window_s", 60.0)),  # type: ignore[arg-type]
                label=str(kw["label"]) if kw["label"] != "profile" else f"profile {trace}",
                source=trace, at_s=float(kw.get("at_s", 0.0)),  # type: ignore[arg-type]
                components=tuple(kw.get("components", ()))))  # type: ignore[arg-type]
        mix = mx.Mix(tuple(comps), tuple(envs), by, rate, name)
        mix.save(output)
    except _ERRORS as exc:
        _fail(exc)
    for c in mix.components:
        what = [c.kind, c.request_class]
        what += [f"share {c.share:g}"] if c.share is not None else []
        what += [f"{c.count:,} requests"] if c.count is not None else []
        what += [f"priority {c.priority}"] if c.priority is not None else []
        what += [f"TTFT SLO {c.slo_ttft_s:g} s"] if c.slo_ttft_s is not None else []
        what += [f"TPOT SLO {c.slo_tpot_s:g} s"] if c.slo_tpot_s is not None else []
        if c.models is not None:
            what += [f"{len(c.models.names)} model names ({c.models.law}"
                     + (f" s={c.models.exponent:.3g})" if c.models.exponent is not None
                        else ")")]
        out.print(f"{escape(c.label)}: {escape(c.source)}, {', '.join(what)}", highlight=False,
                  soft_wrap=True)
    for e in mix.envelopes:
        out.print(f"envelope {escape(e.label)} ({e.kind}) on "
                  f"{escape(', '.join(e.components) or 'every component with arrivals')}",
                  highlight=False, soft_wrap=True)
    out.print(f"mix {escape(name)} of {len(mix.components)} component(s) -> {output}",
              highlight=False, soft_wrap=True)


def generate_mix(path: Path, duration: float, output: Path, seed: int, rate_scale: float,
                 store: Path | None) -> pl.DataFrame:
    """`servetrace generate MIX.json`: the sample, written with the mix as metadata."""
    from servetrace.synth.mix import Mix
    from servetrace.synth.mix_sample import sample

    mix = Mix.load(path)
    with err.status(f"sampling mix {mix.name}"):
        result = sample(mix, duration, seed, rate_scale, base=path.parent, store=store)
    result.requests.write_parquet(output, metadata=result.metadata())
    for c, k, e in zip(mix.components, result.counts, result.expected, strict=True):
        err.print(f"{escape(c.label)}: {k:,} requests (expected {e:,.0f})", highlight=False,
                  soft_wrap=True)
    for note in result.notes:
        err.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)
    return result.requests
