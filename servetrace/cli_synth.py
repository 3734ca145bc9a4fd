"""The synthesis commands of :mod:`servetrace.cli`: export, fit, generate, compare, replay,
serve, profile and demo (each a thin call into :mod:`servetrace.synth`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.markup import escape

from servetrace import trace_files
from servetrace.cli import (
    _ERRORS,
    TRACE_HELP,
    JsonOpt,
    StoreOpt,
    _check_by,
    _emit,
    _fail,
    _first_table,
    _functions,
    _hash_layout,
    _listing,
    _print_frame,
    _rows,
    _scan_trace_or_file,
    _trace,
    _trace_or_file,
    app,
    err,
    out,
)
from servetrace.cli_analysis import EngineOpt, PartitionsOpt, RayAddressOpt
from servetrace.loaders import Store


@app.command("export")
def export_cmd(
    source: Annotated[str | None, typer.Argument(
        help="trace id in the store, or a .parquet file in a canonical schema (e.g. from "
             "`servetrace generate`); not needed with --to help")] = None,
    to: Annotated[str, typer.Option("--to", help="format: " + ", ".join(
        ["vllm-mooncake", "aiperf-mooncake", "aiperf-bailian", "sglang-mooncake",
         "guidellm-weka", "weka", "vidur", "vidur-pypi", "vhive", "faasrail",
         "invocations-csv", "..."]) + " (`--to help` lists them all)")] = "help",
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="file (folder for vhive and weka)")] = None,
    block_size: Annotated[int | None, typer.Option(
        "--block-size", help="tokens per hash id the consumer builds (default: the "
        "format's; the trace's ids are re-chunked to it)")] = None,
    keep_timestamps: Annotated[bool, typer.Option(
        "--keep-timestamps", help="keep the trace's time offsets instead of counting from "
        "the first request (formats that rebase by default)")] = False,
    hash_block_tokens: Annotated[int | None, typer.Option(
        "--hash-block-tokens", help="tokens per hash id in the source (default: the "
        "trace's; inferred for a Parquet file)")] = None,
    hash_scope: Annotated[str | None, typer.Option(
        "--hash-scope", help="global or session: the source ids' scope (default: the "
        "trace's; global for a Parquet file)")] = None,
    option: Annotated[list[str] | None, typer.Option(
        "--set", "--option", "-O", help="KEY=VALUE, another option of the format (e.g. "
        "--set date=2024-01-01, -O granularity=second for vhive, -O workloads=FILE for "
        "faasrail; `--to help` lists them); repeat for several")] = None,
    store: StoreOpt = None,
) -> None:
    """Write a trace in a format another tool replays, and print the command line that
    replays it (`--to help` lists the formats and their options)."""
    from servetrace.synth.export import FORMATS, export, options

    if to == "help":
        for name, module in FORMATS.items():
            first = " ".join((module.__doc__ or "").split()).split(". ")[0]
            out.print(f"{name:22} {first}", highlight=False, soft_wrap=True)
            opts = ", ".join(f"{k}={v}" for k, v in options(name).items() if k != "functions")
            out.print(f"{'':22} options: {opts or 'none'}", highlight=False, soft_wrap=True)
        return
    try:
        if source is None or output is None:
            raise ValueError(f"--to {to}: give a SOURCE trace and -o OUTPUT "
                             f"(only --to help needs neither)")
        accepted = options(to)
        given = _export_options(to, option or [])
        flags = {"block_size": block_size, "hash_block_tokens": hash_block_tokens,
                 "hash_scope": hash_scope, "rebase": False if keep_timestamps else None}
        for key, value in flags.items():
            if value is None:
                continue
            if key not in accepted:
                shown = "--keep-timestamps" if key == "rebase" else "--" + key.replace("_", "-")
                raise ValueError(f"{to}: {shown} does not apply (it accepts "
                                 f"{', '.join(accepted) or 'no options'})")
            given[key] = value
        s = Store(store)
        tables = getattr(FORMATS.get(to), "TABLES", None)
        if tables is not None and not Path(source).exists():
            _, frame, rows = _first_table(s, source, tables, " or ".join(tables))
            if "functions" in accepted:
                given.setdefault("functions", _functions(s, source, rows))
            result = export(frame, to, output, **given)
        elif tables is not None:
            result = export(_trace_or_file(source, s, "invocations"), to, output, **given)
        else:
            if "hash_block_tokens" in accepted and not Path(source).suffix == ".parquet":
                block, scope = _hash_layout(s, source)
                if block is not None:
                    given.setdefault("hash_block_tokens", block)
                    given.setdefault("hash_scope", scope)
            frame = _trace_or_file(source, s)
            if ("hash_scope" in accepted and "hash_scope" not in given
                    and "hash_ids" in frame.columns and "session" in frame.columns):
                err.print("note: hash ids taken as one namespace for the whole file; pass "
                          "--hash-scope session if they are local to each session",
                          highlight=False, soft_wrap=True)
            result = export(frame, to, output, **given)
    except _ERRORS as exc:
        _fail(exc)
    out.print(f"wrote {to}: {result.path}", highlight=False, soft_wrap=True)
    if result.command:
        out.print(f"replay it with:\n  {result.command}", highlight=False, soft_wrap=True)
    for note in result.notes:
        err.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)


def _export_defaults(to: str) -> dict[str, object]:
    from servetrace.synth.export import options

    return options(to)


def _export_options(to: str, given: list[str]) -> dict[str, object]:
    """``--option KEY=VALUE`` pairs typed as the format's defaults (bool, int, float, str);
    an unknown key or a value of the wrong type is a ``ValueError`` naming it."""
    defaults = _export_defaults(to)
    parsed: dict[str, object] = {}
    for item in given:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--option {item!r}: expected KEY=VALUE")
        if key not in defaults:
            raise ValueError(f"--option {key}: {to} accepts "
                             f"{', '.join(defaults) or 'no options'}")
        default = defaults[key]
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"--option {key}={value}: expected true or false")
            parsed[key] = value.lower() in ("true", "1", "yes")
        elif isinstance(default, int | float) or key in ("first_minute", "last_minute"):
            kind = float if isinstance(default, float) else int
            try:
                parsed[key] = kind(value)
            except ValueError as exc:
                raise ValueError(f"--option {key}={value}: expected "
                                 f"{'a number' if kind is float else 'an integer'}") from exc
        elif default is None and value.lower() in ("true", "false"):  # bool | None options
            parsed[key] = value.lower() == "true"
        elif key == "functions":
            raise ValueError("--option functions: the stored trace's functions table is used")
        else:
            parsed[key] = value
    return parsed


def _serverless_source(source: str, store: Store, lazy: bool = False
                       ) -> tuple[pl.DataFrame, pl.DataFrame | None] | None:
    """(table, functions) when ``source`` is a serverless trace (the table decides: a stored
    trace with invocations or invocation_counts and no requests, or a Parquet file with
    ``function`` and no ``input_tokens`` column); None otherwise. ``lazy``: the table as a
    scan (the serverless fit reads it in the streaming engine)."""
    path = Path(source)
    if path.suffix == ".parquet":
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        cols = pl.read_parquet_schema(path)
        if "function" not in cols or "input_tokens" in cols:
            return None
        return (pl.scan_parquet(path) if lazy else pl.read_parquet(path)), None  # type: ignore[return-value]
    if path.exists():
        return None
    rows = _rows(store, source)
    if rows.get("requests"):
        return None
    for table in ("invocations", "invocation_counts"):
        if rows.get(table):
            scan = store.scan(table, source)
            return (scan if lazy else scan.collect()), _functions(store, source, rows)  # type: ignore[return-value]
    return None


def _model_type(path: Path) -> str:
    """``type`` of a model JSON file (ServerlessModel, WorkloadModel or Mix)."""
    try:
        head = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line {exc.lineno} column {exc.colno}: not JSON "
                         f"({exc.msg})") from exc
    return str(head.get("type")) if isinstance(head, dict) else ""


@app.command("fit")
def fit_cmd(
    trace: Annotated[str, typer.Argument(help="trace id in the store, or a requests .parquet")],
    output: Annotated[Path, typer.Option("-o", "--output", help="model JSON to write")],
    by: Annotated[str | None, typer.Option("--by", help="fit one arrival process per "
                                           "group: tenant, model, log_type")] = None,
    seed: Annotated[int, typer.Option(help="seed of the fit's calibration runs")] = 0,
    engine: EngineOpt = "local", ray_address: RayAddressOpt = None,
    partitions: PartitionsOpt = None, store: StoreOpt = None,
) -> None:
    """Fit a workload model (arrivals, lengths, sessions, prefixes) to a trace.

    With --by and --engine ray the groups are fitted as parallel Ray tasks (the group keys
    hashed into --partitions buckets); the model is the local engine's, byte for byte.
    """
    from servetrace.analysis.engine import get_engine
    from servetrace.synth.model import fit
    from servetrace.synth.servegen_model import from_servegen

    try:
        s = Store(store)
        eng = None if engine == "local" and ray_address is None else get_engine(engine,
                                                                                 ray_address)
        serverless = _serverless_source(trace, s, lazy=True)
        if eng is not None and (serverless is not None or (
                not Path(trace).exists() and _rows(s, trace).get("client_windows"))):
            raise ValueError(f"--engine {engine}: fits the groups of a requests trace; "
                             f"{trace!r} is a serverless or ServeGen trace (fitted locally)")
        if serverless is not None:
            from servetrace.synth import serverless as sv
            table, functions = serverless
            with err.status(f"fitting {trace} (serverless)"):
                smodel = sv.fit(table, functions, source=trace)
            smodel.save(output)
            out.print(f"serverless model of {trace}: {smodel.n_functions:,} functions "
                      f"({sum(k == 'periodic' for k in smodel.functions.kind):,} timers), "
                      f"{smodel.mean_rate:.4g} invocations/s -> {output}", highlight=False)
            return
        if not Path(trace).exists() and _rows(s, trace).get("client_windows"):
            model = from_servegen(s.scan("client_windows", trace).collect(),
                                  s.scan("length_pmfs", trace).collect(), source=trace)
        else:
            requests = _scan_trace_or_file(trace, s)  # fitted out of core (synth.model.fit)
            _check_by(requests, by, f"the requests of {trace!r}")
            block, scope = (trace_files.hash_layout(Path(trace)) if Path(trace).exists()
                            else _hash_layout(s, trace))
            with err.status(f"fitting {trace}"):
                model = fit(requests, by=by, seed=seed, block_tokens=block, hash_scope=scope,
                            engine=eng, partitions=partitions)
        model.save(output)
    except _ERRORS as exc:
        _fail(exc)
    out.print(f"model of {model.source}: {model.n_requests:,} requests, "
              f"{model.mean_rate:.4g} req/s, {len(model.groups)} group(s) -> {output}",
              highlight=False)


@app.command("generate")
def generate_cmd(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="model JSON (servetrace "
                                               "fit) or mix JSON (servetrace mix)")],
    duration: Annotated[float, typer.Option("--duration", help="seconds to synthesize")],
    output: Annotated[Path, typer.Option("-o", "--output", help="requests .parquet to write")],
    seed: Annotated[int, typer.Option("--seed", help="same seed, same trace")] = 0,
    rate_scale: Annotated[float, typer.Option("--rate-scale", help="multiply every rate "
                                              "(keeps the burst shape)")] = 1.0,
    profile: Annotated[Path | None, typer.Option("--profile", help="hardware profile YAML "
                                                 "(servetrace profile)")] = None,
    utilization: Annotated[float | None, typer.Option(
        "--utilization", help="with --profile: pick the rate scale that offers this load")] = None,
    functions: Annotated[int | None, typer.Option(
        "--functions", help="serverless: a representative subset of N functions")] = None,
    target_rps: Annotated[float | None, typer.Option(
        "--target-rps", help="serverless: scale to this many invocations per second")] = None,
    scale_op: Annotated[str, typer.Option(
        "--scale-op", help="serverless: superpose_functions (keeps burst shape) or "
        "compress_time (shrinks it)")] = "superpose_functions",
    cluster: Annotated[Path | None, typer.Option(
        "--cluster", help="serverless: cluster YAML (nodes, cores, memory_mb, keep_alive_s, "
        "hybrid); with --utilization, scale to that load of it")] = None,
    store: StoreOpt = None,
) -> None:
    """Sample a synthetic requests trace from a model, scaled as asked, into Parquet.

    A serverless model (`servetrace fit` on invocations or invocation_counts) gives an
    invocations table; --functions and --target-rps select and scale its functions. A mix
    (`servetrace mix`) gives its components' requests with their class columns; --store is
    where its trace-id sources are."""
    from servetrace.synth import scale
    from servetrace.synth.model import WorkloadModel

    try:
        if output.suffix != ".parquet":
            raise ValueError(f"-o {output}: write a .parquet file (then `servetrace export` "
                             "it to another tool's format)")
        if _model_type(model_path) == "ServerlessModel":
            frame = _generate_serverless(model_path, duration, output, seed, functions,
                                         target_rps, scale_op, cluster, utilization)
            out.print(f"{frame.height:,} invocations over {duration:g} s (seed {seed}) -> "
                      f"{output}", highlight=False)
            return
        if _model_type(model_path) == "Mix":
            if (functions, target_rps, cluster, profile, utilization) != (None,) * 5:
                raise ValueError("--functions, --target-rps, --cluster, --profile and "
                                 "--utilization do not apply to a mix (scale it with "
                                 "--rate-scale, or set its rate with `servetrace mix --rate`)")
            from servetrace.cli_mix import generate_mix

            frame = generate_mix(model_path, duration, output, seed, rate_scale, store)
            out.print(f"{frame.height:,} requests over {duration:g} s (seed {seed}) -> "
                      f"{output}", highlight=False)
            return
        if functions is not None or target_rps is not None or cluster is not None:
            raise ValueError("--functions, --target-rps and --cluster apply to serverless "
                             "models")
        if (profile is None) != (utilization is None):
            raise ValueError("--profile and --utilization go together")
        model = WorkloadModel.load(model_path)
        if profile is not None and utilization is not None:
            model = scale.target_hardware(model, scale.HardwareProfile.from_yaml(profile),
                                          utilization)
        frame = model.sample(duration, seed=seed, rate_scale=rate_scale)
        frame.write_parquet(output, metadata=scale.sample_metadata(model, duration, seed,
                                                                   rate_scale))
    except _ERRORS as exc:
        _fail(exc)
    out.print(f"{frame.height:,} requests over {duration:g} s (seed {seed}) -> {output}",
              highlight=False)


def _generate_serverless(model_path: Path, duration: float, output: Path, seed: int,
                         functions: int | None, target_rps: float | None,
                         scale_op: str, cluster: Path | None = None,
                         utilization: float | None = None) -> pl.DataFrame:
    """Representative subset (chosen on a pilot sample of the model's own functions as long
    as the fitted trace), then rate scaling, then the sample, with the steps as metadata."""
    from servetrace.synth import serverless as sv
    from servetrace.synth import serverless_scale as sc
    from servetrace.synth import serverless_subset as ss

    model = sv.ServerlessModel.load(model_path)
    if functions is not None:
        if not 0 < functions <= model.n_functions:
            raise ValueError(f"--functions {functions}: the model has {model.n_functions} "
                             "functions")
        with err.status(f"choosing {functions} representative functions"):
            feats = ss.features(model.sample(model.span_s, seed=seed))
            rows = ss.representative(feats, functions, seed)
            names = feats["function"].gather(rows).to_list()
            index = [model.functions.function.index(n) for n in names]
            model = sc.subset(model, index, op="representative_subset", seed=seed)
    if target_rps is not None:
        model = sc.target_rate(model, target_rps, op=scale_op, seed=seed)
    if (cluster is None) != (utilization is None):
        raise ValueError("--cluster and --utilization go together")
    if cluster is not None and utilization is not None:
        if target_rps is not None:
            raise ValueError("--target-rps and --cluster both set the rate: give one")
        with err.status(f"sizing to {utilization:g} of {cluster}"):
            model, _ = sc.size_to_cluster(model, _cluster(cluster), utilization, seed=seed)
    frame = model.sample(duration, seed=seed)
    frame.write_parquet(output, metadata=sc.metadata(model, duration, seed))
    return frame


def _cluster(path: Path) -> object:
    """A :class:`servetrace.synth.serverless_scale.Cluster` from YAML, errors naming the file."""
    import yaml

    from servetrace.synth.serverless_scale import Cluster

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not YAML ({exc})") from exc
    fields = ("nodes", "cores", "memory_mb", "keep_alive_s", "hybrid")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with {', '.join(fields)}")
    unknown = sorted(set(data) - set(fields))
    missing = [k for k in fields[:3] if k not in data]
    if unknown or missing:
        raise ValueError(f"{path}: " + "; ".join(
            ([f"unknown key(s) {', '.join(unknown)}"] if unknown else [])
            + ([f"missing {', '.join(missing)}"] if missing else [])))
    try:
        return Cluster(**data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


@app.command("compare")
def compare_cmd(
    real: Annotated[str, typer.Argument(help="real trace: store id or requests .parquet")],
    synthetic: Annotated[list[str], typer.Argument(
        help="synthetic trace(s): store ids or .parquet files; several (e.g. one per seed) "
             "give mean errors and their spread; or one model .json (servetrace fit), "
             "sampled --runs times over REAL's span")],
    seed: Annotated[int, typer.Option(help="seed of the baselines (and of a model's "
                                      "samples: SEED, SEED + 1, ...)")] = 0,
    runs: Annotated[int, typer.Option(
        "--runs", help="with a model .json: samples to score (mean errors, spread, verdict)"
        )] = 1,
    reference: Annotated[str | None, typer.Option(
        "--reference", help="fit the baselines on this trace (store id or .parquet), e.g. "
        "the past the model was fitted on, and score every candidate on REAL: a held-out "
        "comparison (default: the baselines are built from REAL itself)")] = None,
    block_tokens: Annotated[int | None, typer.Option(
        "--block-tokens", help="tokens per hash block (default: the trace's; estimated for "
        "a .parquet file)")] = None,
    scope: Annotated[str | None, typer.Option(
        "--scope", help="hash id scope, global or session (default: the trace's)")] = None,
    engine: EngineOpt = "local", ray_address: RayAddressOpt = None,
    fmt: JsonOpt = "table", store: StoreOpt = None,
) -> None:
    """Fidelity of synthetic traces to a real one, next to Poisson and gamma baselines
    (serverless traces: next to per-minute replay and per-function Poisson). Traces with
    sessions or hash ids also get KV-cache and session rows and a session-naive baseline.

    With --engine ray each run (its sample where SYNTHETIC is a model, its baselines and
    their metrics) is one Ray task; the table is the local engine's, bit for bit.
    """
    from servetrace.analysis.engine import get_engine
    from servetrace.synth.fidelity import ModelRun, fidelity

    try:
        s = Store(store)
        eng = None if engine == "local" and ray_address is None else get_engine(engine,
                                                                                 ray_address)
        model_json = [x for x in synthetic if x.endswith(".json")]
        if runs < 1:
            raise ValueError(f"--runs must be at least 1, got {runs}")
        if model_json and len(synthetic) > 1:
            raise ValueError(f"compare: a model ({model_json[0]}) is the only SYNTHETIC "
                             f"argument; its runs are --runs samples")
        if runs > 1 and not model_json:
            raise ValueError("--runs samples a model .json; trace files are one run each")
        serverless = _serverless_source(real, s)
        if serverless is not None and (eng is not None or model_json):
            raise ValueError(f"compare: {real!r} is a serverless trace: pass sampled "
                             f"invocation traces, scored locally (no model .json, no "
                             f"--engine {engine})")
        if serverless is not None:
            from servetrace.synth import serverless_fidelity as sf
            table, functions = serverless
            runs = [pl.read_parquet(x) if x.endswith(".parquet") else
                    _serverless_source(x, s)[0] for x in synthetic]  # type: ignore[index]
            ref = None if reference is None else _serverless_source(reference, s)[0]  # type: ignore[index]
            result = sf.fidelity(table, runs if len(runs) > 1 else runs[0],
                                 functions=functions, reference=ref, seed=seed)
            _emit(real, {"serverless fidelity (errors; lower is better; baselines: "
                         "replay_uniform, poisson)": result}, fmt)
            return
        real_frame = _trace_or_file(real, s)
        if model_json:
            from servetrace.synth.model import WorkloadModel

            model = WorkloadModel.load(model_json[0])
            span = (float(real_frame["arrival_s"].max() - real_frame["arrival_s"].min())
                    if real_frame.height else 0.0)
            cands: list = [ModelRun(model, span, seed + i) for i in range(runs)]
        else:  # on an engine the workers read the runs' files themselves
            cands = [_trace_or_file(x, s) if eng is None else _scan_trace_or_file(x, s)
                     for x in synthetic]
        ref = None if reference is None else _trace_or_file(reference, s)
        known_block, known_scope = (None, "global") if Path(real).suffix == ".parquet" \
            else _hash_layout(s, real)
        table = fidelity(real_frame, cands if len(cands) > 1 else cands[0],
                         seed=seed, reference=ref, block_tokens=block_tokens or known_block,
                         scope=scope or known_scope, engine=eng)
        _emit(real, {"fidelity (errors; lower is better)": table}, fmt)
    except _ERRORS as exc:
        _fail(exc)


@app.command("replay")
def replay_cmd(
    trace: Annotated[str | None, typer.Argument(help=TRACE_HELP + " (requests)")] = None,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="OpenAI-compatible base "
                                                 "URL")] = None,
    model: Annotated[str | None, typer.Option("--model", help="model name (default: the "
                                              "server's first)")] = None,
    time_scale: Annotated[float, typer.Option("--time-scale", help="multiply every "
                                              "scheduled time and think time (0.5 = twice "
                                              "the rate)")] = 1.0,
    max_concurrency: Annotated[int | None, typer.Option("--max-concurrency")] = None,
    offline_concurrency: Annotated[int | None, typer.Option(
        "--offline-concurrency", help="at most N offline requests in flight (default: the "
        "slots of --max-concurrency that online requests leave free)")] = None,
    send_priority: Annotated[bool, typer.Option(
        "--send-priority", help="send each request's priority in the body (vLLM needs "
        "--scheduling-policy priority for a non-zero one)")] = False,
    trace_models: Annotated[bool | None, typer.Option(
        "--trace-models/--no-trace-models", help="send each request to its trace's model "
        "(default: when --model is not given and the server lists every one)")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds a request may take "
                                           "before it is recorded as a timeout")] = 300.0,
    limit: Annotated[int | None, typer.Option("--limit", help="replay only the first N "
                                              "requests")] = None,
    duration: Annotated[float | None, typer.Option(
        "--duration", help="replay only the requests scheduled in the first S seconds "
        "(after --time-scale)")] = None,
    open_loop: Annotated[bool, typer.Option(
        "--open-loop", help="send every request at its trace time (default: later turns of "
        "a session and sub-agents wait for the response before them plus the think "
        "time)")] = False,
    block_tokens: Annotated[int | None, typer.Option(
        "--block-tokens", help="tokens per hash block: prompts share text where hash_ids "
        "share a prefix (default: the trace's)")] = None,
    hash_scope: Annotated[str | None, typer.Option(
        "--hash-scope", help="global or session (default: the trace's)")] = None,
    cache_tokens: Annotated[int | None, typer.Option(
        "--cache-tokens", help="the server's prefix-cache capacity in tokens: reports the "
        "trace's LRU hit ratio at it beside the achieved one")] = None,
    ttft_slo: Annotated[float | None, typer.Option(
        "--ttft-slo", help="seconds, for requests without their own slo_ttft_s")] = None,
    tpot_slo: Annotated[float | None, typer.Option(
        "--tpot-slo", help="seconds, for requests without their own slo_tpot_s")] = None,
    recover: Annotated[bool, typer.Option("--recover", help="only store replays that were "
                                          "killed before they were stored")] = False,
    fmt: JsonOpt = "table", store: StoreOpt = None,
) -> None:
    """Replay a trace against an endpoint (sessions in closed loop); the outcome becomes a
    new trace. Prints progress (sent, finished, failed, lag) on stderr while it runs, and the
    achieved prefix-cache hit ratio beside the trace's at the end; per class, model and
    priority (SLO attainment, goodput, throughput) where the trace has them. Offline
    requests go from a backlog as --max-concurrency or --offline-concurrency allows.

    The API key is read from $OPENAI_API_KEY and never printed or stored. Replays killed
    before they were stored are stored first (or alone, with --recover). Exits 130 when
    interrupted (what finished is stored) and 1 when every request failed.
    """
    from dataclasses import asdict

    try:
        from servetrace.synth.replay_results import ProgressPrinter, class_tables
        from servetrace.synth.replay_store import recover_pending, replay_trace

        s = Store(store)
        for name in recover_pending(s):
            err.print(f"stored the finished requests of an interrupted replay as {name}",
                      highlight=False)
        if recover:
            return
        if trace is None or endpoint is None:
            raise ValueError("replay needs a TRACE and --endpoint (or --recover alone)")
        src = _trace(trace, s)
        frame = src.scan("requests").collect() if src.path is not None else None
        known_block, known_scope = src.layout
        block = block_tokens or known_block
        printer = ProgressPrinter(sys.stderr)
        try:
            result = replay_trace(
                trace, endpoint, store=s, frame=frame, model=model, time_scale=time_scale,
                max_concurrency=max_concurrency, offline_concurrency=offline_concurrency,
                send_priority=send_priority, trace_models=trace_models,
                timeout_s=timeout, ttft_slo_s=ttft_slo,
                tpot_slo_s=tpot_slo, limit=limit, duration_s=duration,
                closed_loop=not open_loop, block_tokens=block,
                hash_scope=hash_scope or known_scope, cache_tokens=cache_tokens,
                progress=printer)
        finally:
            printer.close()
        summary = result.summary(ttft_slo_s=ttft_slo, tpot_slo_s=tpot_slo)
        groups = class_tables(result.records, ttft_slo_s=ttft_slo, tpot_slo_s=tpot_slo)
        _emit(result.trace or trace, {"replay": pl.DataFrame([asdict(summary)]), **groups},
              fmt)
    except (*_ERRORS, ConnectionError) as exc:
        _fail(exc)
    if result.interrupted:
        raise typer.Exit(130)
    if summary.requests and not summary.succeeded:
        _fail(ValueError(f"every one of the {summary.requests:,} requests failed (stored as "
                         f"{result.trace}; see its failed and error columns in the results "
                         "file)"))


@app.command("serve")
def serve_cmd(
    model: Annotated[list[str] | None, typer.Option(
        "--model", help="NAME or NAME=PREFILL_MS_PER_TOKEN,DECODE_MS_PER_TOKEN, repeated: "
        "the first is the default model (and the base of --lora), the others are served "
        "beside it at their own costs")] = None,
    lora: Annotated[list[str] | None, typer.Option(
        "--lora", help="a LoRA adapter of the first --model, repeated")] = None,
    max_loras: Annotated[int, typer.Option("--max-loras", help="adapters resident at "
                                           "once (LRU)")] = 1,
    lora_load_ms: Annotated[float, typer.Option(
        "--lora-load-ms", help="prefill time added when an adapter must be loaded")] = 0.0,
    prefill_ms: Annotated[float, typer.Option(
        "--prefill-ms-per-token", help="default model's prefill cost")] = 0.02,
    decode_ms: Annotated[float, typer.Option(
        "--decode-ms-per-token", help="default model's decode step, per sequence")] = 10.0,
    prefill_base_ms: Annotated[float, typer.Option("--prefill-base-ms")] = 5.0,
    max_num_seqs: Annotated[int, typer.Option(
        "--max-num-seqs", help="sequence slots; beyond them requests queue")] = 64,
    priority_scheduling: Annotated[bool, typer.Option(
        "--priority-scheduling", help="queued requests with a lower priority field go "
        "first")] = False,
    prefix_cache_tokens: Annotated[int | None, typer.Option(
        "--prefix-cache-tokens", help="LRU prefix cache of this many tokens")] = None,
    block_size: Annotated[int, typer.Option("--block-size")] = 16,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="0 picks a free port")] = 8000,
) -> None:
    """Run the local OpenAI-compatible test server (its token timing follows a cost model;
    see servetrace.synth.server) until Ctrl-C; prints its base URL first. Several models
    with their own costs, LoRA adapters with a load cost, and priority scheduling stand in
    for the serving systems a workload mix is replayed against."""
    try:
        from servetrace.synth.server import models_config, run_forever

        for name, value in (("--prefill-ms-per-token", prefill_ms),
                            ("--decode-ms-per-token", decode_ms)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        config = models_config(
            list(model or []), prefill_tokens_per_s=1e3 / prefill_ms,
            decode_tokens_per_s=1e3 / decode_ms, prefill_base_s=prefill_base_ms / 1e3,
            max_concurrent_sequences=max_num_seqs, lora_adapters=tuple(lora or ()),
            max_loras=max_loras, lora_load_s=lora_load_ms / 1e3,
            priority_scheduling=priority_scheduling, prefix_cache_tokens=prefix_cache_tokens,
            block_size=block_size)
        run_forever(config, host=host, port=port,
                    ready=lambda url: out.print(url, highlight=False, soft_wrap=True))
    except (*_ERRORS, OSError) as exc:
        _fail(exc)


@app.command("profile")
def profile_cmd(
    endpoint: Annotated[str, typer.Option("--endpoint", help="OpenAI-compatible base URL")],
    output: Annotated[Path, typer.Option("-o", "--output", help="profile YAML to write")],
    model: Annotated[str | None, typer.Option("--model")] = None,
    level_s: Annotated[float, typer.Option("--level-s", help="seconds per concurrency "
                                           "level of the sweep")] = 10.0,
) -> None:
    """Measure an endpoint's prefill and decode throughput and concurrency knee (YAML)."""
    try:
        from servetrace.synth.profile import profile_endpoint, write_profile

        with err.status(f"profiling {endpoint}"):
            profile = profile_endpoint(endpoint, model=model, level_s=level_s)
        write_profile(profile, output)
    except (*_ERRORS, ConnectionError) as exc:
        _fail(exc)
    out.print(f"prefill {profile.prefill_tokens_per_s:,.0f} tok/s, decode "
              f"{profile.decode_tokens_per_s:,.0f} tok/s, knee at "
              f"{profile.max_concurrent_sequences} sequences -> {output}", highlight=False)


@app.command("demo")
def demo_cmd(
    store: StoreOpt = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="folder for the report, "
                                                "models, synthetic traces and exports "
                                                "(default: <store>/demo)")] = None,
) -> None:
    """The main job: ingest Azure LLM 2023 and Mooncake, characterize, fit, synthesize,
    compare, export for vLLM and GuideLLM, and write one HTML report."""
    import time

    from servetrace.synth import demo

    s = Store(store)
    folder = output or s.root / "demo"
    started = time.perf_counter()
    with err.status("starting") as status:
        def step(what: str) -> None:
            err.print(f"[{time.perf_counter() - started:6.1f} s] {what}", highlight=False)
            status.update(what)
        try:
            result = demo.run(s, folder, on_step=step)
        except _ERRORS as exc:
            _fail(exc)
    scores = result.fidelity.filter(pl.col("kind") == "arrivals").with_columns(
        pl.col("real", "model", "poisson", "gamma").round_sig_figs(3))
    for trace in result.traces:
        _print_frame(scores.filter(pl.col("trace") == trace).select(
            "metric", "real", "model", "poisson", "gamma", "verdict"), "table",
            title=f"{trace}: arrival errors, mean of {demo.RUNS} seeds (lower is better; "
            "verdict at 2 standard errors)")
    listing = _listing(s).filter(pl.col("trace").is_in(result.traces))
    _print_frame(listing.select("trace", "rows", "rejected", "span_s"), "table",
                 title="Traces (Azure LLM 2023: Patel et al., ISCA'24, CC-BY-4.0; Mooncake: "
                 "Qin et al., FAST'25, Apache-2.0)")
    for name, path in result.exports.items():
        out.print(f"export {name}: {path}", highlight=False)
    out.print(f"store: {s.db_path}  (try: duckdb {s.db_path} "
              "\"select trace, count(*) from requests group by 1 order by 1\")", highlight=False)
    out.print(f"done in {time.perf_counter() - started:.0f} s; report: {result.report}",
              highlight=False)


# the mix command registers on `app` when imported
from servetrace import cli_mix  # noqa: E402, F401
