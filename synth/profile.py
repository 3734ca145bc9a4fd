"""Hardware profile of an OpenAI-compatible endpoint, measured by a short sweep.

:func:`profile_endpoint` measures what :mod:`servetrace.synth.scale` needs to fit a workload to the
hardware it will run on, and :func:`write_profile` writes it as YAML whose first four keys
are the ones scaling reads:

``prefill_tokens_per_s``
    Prompt tokens processed per second. Measured single-stream: requests with prompts of
    ``prefill_tokens`` lengths (``max_tokens`` 1, ``prefill_repeats`` each, one at a
    time, each with a prompt of its own so that a prefix cache cannot shorten it); the
    median TTFT per length is fitted by least squares with
    ``TTFT = prefill_base_s + input_tokens / prefill_tokens_per_s`` (:func:`fit_prefill`),
    so HTTP, tokenization and scheduling overheads go to the intercept. Engines that batch
    prefills may reach somewhat more under load.
``decode_tokens_per_s``
    Aggregate output tokens per second at saturation: the largest throughput of the
    concurrency sweep. Each sweep level runs ``c`` closed-loop clients for ``level_s``
    seconds, each sending, one after another, requests with ``sweep_input_tokens`` prompt
    tokens and ``decode_tokens`` output tokens (``ignore_eos``; all share one prompt, so a
    prefix cache makes their prefill nearly free: the sweep measures decoding); the level's
    throughput is the number of stream chunks carrying text received in the window
    ``[start + warmup * level_s, start + level_s]`` divided by its length (one chunk is one
    token on vLLM and SGLang; requests still running at the end are cancelled). The
    single-sequence rate (``1 / median TPOT`` at the lowest level) is kept as
    ``decode_tokens_per_s_per_sequence``.
``max_concurrent_sequences``
    The knee of the sweep (:func:`find_knee`): ``round(X_max / X_1)``, the concurrency at
    which the throughput bound of a closed system, ``X(N) <= min(N X_1, X_max)``, turns
    flat (asymptotic bound analysis: Lazowska, Zahorjan, Graham and Sevcik, *Quantitative
    System Performance*, Prentice-Hall 1984, ch. 5). ``knee_found`` says whether the sweep
    reached it (the top level ran below 80 % of linear scaling); if not, the value is only
    a lower bound: sweep higher.
``kv_cache_tokens``
    KV-cache capacity in tokens, read from the server's Prometheus ``/metrics`` where it
    publishes it: vLLM's ``vllm:cache_config_info`` (``num_gpu_blocks`` ×
    ``block_size``) or SGLang's ``sglang:max_total_num_tokens``; else the value given, else
    null (it cannot be measured from outside without filling the cache).

Metadata follows: ``name`` (``model @ server``, the label
:class:`servetrace.synth.scale.HardwareProfile`
carries), ``decode_tokens_per_s_per_sequence``, ``prefill_base_s``,
``knee_found``, ``kv_cache_source``, ``endpoint`` (without credentials), ``model``,
``api``, ``measured_at`` (UTC), ``settings`` and the measured points (``prefill_points``,
``sweep``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from servetrace.extras import require
from servetrace.synth import replay as _rp
from servetrace.synth.prompts import prompt as make_prompt

aiohttp = require("aiohttp", "replay", "profiling an endpoint")

__all__ = [
    "PROFILE_KEYS",
    "EndpointProfile",
    "PrefillPoint",
    "SweepPoint",
    "find_knee",
    "fit_prefill",
    "profile_endpoint",
    "read_profile",
    "write_profile",
]

PROFILE_KEYS = ("prefill_tokens_per_s", "decode_tokens_per_s", "max_concurrent_sequences",
                "kv_cache_tokens")
"""The keys :mod:`servetrace.synth.scale` reads, first in the YAML file."""


@dataclass(frozen=True)
class PrefillPoint:
    """Median TTFT of single requests with ``input_tokens`` prompt tokens (``max_tokens``
    1), over ``requests`` tries of which ``failed`` failed."""

    input_tokens: int
    ttft_s: float
    requests: int
    failed: int = 0


@dataclass(frozen=True)
class SweepPoint:
    """One concurrency level of the decode sweep: ``output_tokens_per_s`` (aggregate, in the
    measurement window), requests completed and failed in the level, median TTFT and TPOT
    of the completed requests (seconds)."""

    concurrency: int
    output_tokens_per_s: float
    requests: int
    failed: int
    ttft_p50_s: float | None
    tpot_p50_s: float | None


@dataclass(frozen=True)
class EndpointProfile:
    """A measured hardware profile (see the module docstring for every field)."""

    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    max_concurrent_sequences: int
    kv_cache_tokens: int | None
    name: str | None = None
    decode_tokens_per_s_per_sequence: float | None = None
    prefill_base_s: float | None = None
    knee_found: bool | None = None
    kv_cache_source: str | None = None
    endpoint: str | None = None
    model: str | None = None
    api: str | None = None
    measured_at: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    prefill_points: tuple[PrefillPoint, ...] = ()
    sweep: tuple[SweepPoint, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain data, the :data:`PROFILE_KEYS` first (what :func:`write_profile` writes)."""
        out = asdict(self)
        out["prefill_points"] = [asdict(p) for p in self.prefill_points]
        out["sweep"] = [asdict(p) for p in self.sweep]
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def fit_prefill(input_tokens: Sequence[float] | np.ndarray,
                ttft_s: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """``(prefill_tokens_per_s, prefill_base_s)`` from TTFTs of single requests.

    Ordinary least squares of ``ttft_s = prefill_base_s + input_tokens / prefill_tokens_per_s``
    (the linear prefill-cost model of e.g. Vidur, Agrawal et al., MLSys 2024, at first
    order): the rate is ``1 / slope``. Raises ``ValueError`` for fewer than two distinct
    lengths, mismatched or non-finite inputs, or a slope that is not positive (TTFT did not
    grow with the prompt: use longer prompts).
    """
    x = np.asarray(input_tokens, dtype=np.float64)
    y = np.asarray(ttft_s, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("input_tokens and ttft_s must be 1-D and of the same length")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("input_tokens and ttft_s must be finite")
    if np.unique(x).size < 2:
        raise ValueError("input_tokens: need at least two distinct prompt lengths")
    slope, intercept = np.polyfit(x, y, 1)
    if not slope > 0:
        raise ValueError(f"prefill not measurable: TTFT does not grow with the prompt "
                         f"(slope {slope:.3g} s/token); use longer prefill_tokens")
    return float(1.0 / slope), float(intercept)


def find_knee(concurrency: Sequence[int] | np.ndarray,
              throughput: Sequence[float] | np.ndarray, *,
              saturated: float = 0.8) -> tuple[int, bool]:
    """``(knee, found)``: the concurrency where throughput stops growing with concurrency.

    ``knee = round(X_max / X_1)`` with ``X_max`` the largest throughput and ``X_1`` the
    per-client throughput at the lowest level (``X(c_min) / c_min``): in asymptotic bound
    analysis (Lazowska et al. 1984, ch. 5) a closed system's throughput is bounded by
    ``min(N X_1, X_max)`` and the two bounds cross at ``N* = X_max / X_1``. ``found`` is
    true when the highest level ran below ``saturated`` of linear scaling
    (``X(c_max) < saturated * c_max * X_1``): the sweep went past the knee. Raises
    ``ValueError`` for mismatched, empty or non-positive inputs.
    """
    c = np.asarray(concurrency, dtype=np.float64)
    x = np.asarray(throughput, dtype=np.float64)
    if c.shape != x.shape or c.ndim != 1 or c.size == 0:
        raise ValueError("concurrency and throughput must be 1-D, non-empty, same length")
    if not ((c > 0).all() and np.isfinite(x).all() and (x >= 0).all()):
        raise ValueError("concurrency must be > 0 and throughput finite and >= 0")
    order = np.argsort(c, kind="stable")
    c, x = c[order], x[order]
    per_client = x[0] / c[0]
    if not per_client > 0:
        raise ValueError("throughput at the lowest concurrency is 0: nothing was measured")
    knee = max(round(float(x.max() / per_client)), 1)
    found = bool(x[-1] < saturated * c[-1] * per_client)
    return knee, found


# -- measuring -------------------------------------------------------------------------------
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def _kv_from_metrics(text: str) -> tuple[int | None, str | None]:
    """KV-cache tokens from a Prometheus exposition (vLLM or SGLang), else ``(None, None)``."""
    for line in text.splitlines():
        if line.startswith("vllm:cache_config_info{"):
            labels = dict(_LABEL.findall(line))
            blocks, size = labels.get("num_gpu_blocks"), labels.get("block_size")
            if blocks and size and blocks.isdigit() and size.isdigit():
                return int(blocks) * int(size), "vllm:cache_config_info"
        if line.startswith("sglang:max_total_num_tokens"):
            try:
                return int(float(line.rsplit(" ", 1)[1])), "sglang:max_total_num_tokens"
            except (IndexError, ValueError):
                continue
    return None, None


async def _metrics(session: aiohttp.ClientSession, url: str) -> str:
    try:
        async with session.get(url) as resp:
            return await resp.text() if resp.status == 200 else ""
    except (aiohttp.ClientError, TimeoutError):
        return ""


async def _single(session: aiohttp.ClientSession, url: str, body: bytes, timeout_s: float,
                  times: list[float] | None = None
                  ) -> tuple[float | None, float | None, int, str | None]:
    """``(ttft, tpot, tokens, error)`` of one request sent now; the arrival time of each
    streamed chunk is appended to ``times`` as it comes (a caller's list to count tokens in a
    window, or a fresh one)."""
    loop = asyncio.get_running_loop()
    times = [] if times is None else times
    sent = loop.time()
    _, error, usage_out, _ = await _rp._exchange(session, url, body, times, timeout_s)
    end = loop.time()
    n = usage_out if usage_out is not None else len(times)
    ttft = times[0] - sent if times and error is None else None
    tpot = (end - times[0]) / (n - 1) if ttft is not None and n > 1 else None
    return ttft, tpot, n, error


async def _level(session: aiohttp.ClientSession, url: str, body: bytes, concurrency: int,
                 level_s: float, warmup: float, timeout_s: float) -> SweepPoint:
    """Run ``concurrency`` closed-loop clients for ``level_s`` seconds."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    stop = start + level_s
    chunks: list[list[float]] = []
    done: list[tuple[float | None, float | None, str | None]] = []

    async def client() -> None:
        while loop.time() < stop:
            times: list[float] = []
            chunks.append(times)
            ttft, tpot, _, error = await _single(session, url, body, timeout_s, times)
            done.append((ttft, tpot, error))

    tasks = [loop.create_task(client()) for _ in range(concurrency)]
    await asyncio.sleep(max(stop - loop.time(), 0.0))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    t = np.fromiter((x for times in chunks for x in times), dtype=np.float64)
    lo = start + warmup * level_s
    tokens = int(np.count_nonzero((t >= lo) & (t < stop)))
    ttft = np.array([d[0] for d in done if d[0] is not None], dtype=np.float64)
    tpot = np.array([d[1] for d in done if d[1] is not None], dtype=np.float64)
    return SweepPoint(
        concurrency=concurrency, output_tokens_per_s=tokens / (stop - lo),
        requests=len(done), failed=sum(d[2] is not None for d in done),
        ttft_p50_s=float(np.median(ttft)) if ttft.size else None,
        tpot_p50_s=float(np.median(tpot)) if tpot.size else None)


async def _profile(endpoint: str, *, model: str | None, api: str | None,
                   prefill_tokens: Sequence[int], prefill_repeats: int,
                   concurrency: Sequence[int], decode_tokens: int, sweep_input_tokens: int,
                   level_s: float, warmup: float, timeout_s: float,
                   api_key_env: str | None, kv_cache_tokens: int | None, seed: int,
                   progress: Callable[[str], None] | None) -> EndpointProfile:
    url, models_url, api = _rp.endpoint_url(endpoint, api)
    root = models_url.split("?", 1)[0].removesuffix("/models").removesuffix("/v1")
    say = progress or (lambda _msg: None)
    session, _ = _rp._session(api_key_env, timeout_s, None)
    async with session:
        if model is None:
            model = await _rp._discover_model(session, models_url)
        kv, kv_source = _kv_from_metrics(await _metrics(session, root + "/metrics"))
        if kv_cache_tokens is not None:
            kv, kv_source = kv_cache_tokens, "given"
        points = []
        for j, n in enumerate(prefill_tokens):
            say(f"prefill: {n} prompt tokens x {prefill_repeats}")
            ttfts, failed = [], 0
            for r in range(prefill_repeats):  # a prompt of its own: nothing for a prefix cache
                own = seed + 1 + j * prefill_repeats + r
                body = _rp._body(api, model, make_prompt(n, own), 1, True)
                ttft, _, _, error = await _single(session, url, body, timeout_s)
                if error is None and ttft is not None:
                    ttfts.append(ttft)
                else:
                    failed += 1
            if not ttfts:
                raise ConnectionError(f"{_rp.redact_url(url)}: every prefill request with "
                                      f"{n} prompt tokens failed")
            points.append(PrefillPoint(n, float(np.median(ttfts)), prefill_repeats, failed))
        prefill, base = fit_prefill([p.input_tokens for p in points],
                                    [p.ttft_s for p in points])
        body = _rp._body(api, model, make_prompt(sweep_input_tokens, seed), decode_tokens, True)
        sweep = []
        for c in concurrency:
            point = await _level(session, url, body, c, level_s, warmup, timeout_s)
            say(f"concurrency {c}: {point.output_tokens_per_s:,.0f} output tokens/s")
            sweep.append(point)
    if not sweep or not sweep[0].output_tokens_per_s > 0:
        raise ConnectionError(f"{_rp.redact_url(url)}: no tokens came back in the sweep")
    knee, found = find_knee([p.concurrency for p in sweep],
                            [p.output_tokens_per_s for p in sweep])
    tpot1 = sweep[0].tpot_p50_s
    return EndpointProfile(
        prefill_tokens_per_s=prefill,
        decode_tokens_per_s=max(p.output_tokens_per_s for p in sweep),
        max_concurrent_sequences=knee, kv_cache_tokens=kv,
        name=f"{model} @ {_rp.redact_url(root)}",
        decode_tokens_per_s_per_sequence=1.0 / tpot1 if tpot1 else None,
        prefill_base_s=base, knee_found=found, kv_cache_source=kv_source,
        endpoint=_rp.redact_url(url), model=model, api=api,
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        settings={"prefill_tokens": list(prefill_tokens), "prefill_repeats": prefill_repeats,
                  "concurrency": list(concurrency), "decode_tokens": decode_tokens,
                  "sweep_input_tokens": sweep_input_tokens, "level_s": level_s,
                  "warmup": warmup, "seed": seed},
        prefill_points=tuple(points), sweep=tuple(sweep))


def profile_endpoint(endpoint: str, *, model: str | None = None, api: str | None = None,
                     prefill_tokens: Sequence[int] = (256, 1024, 2048, 4096),
                     prefill_repeats: int = 3,
                     concurrency: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256),
                     decode_tokens: int = 128, sweep_input_tokens: int = 32,
                     level_s: float = 10.0, warmup: float = 0.25, timeout_s: float = 300.0,
                     api_key_env: str | None = "OPENAI_API_KEY",
                     kv_cache_tokens: int | None = None, seed: int = 0,
                     progress: Callable[[str], None] | None = None) -> EndpointProfile:
    """Measure an endpoint's hardware profile (the CLI's ``servetrace profile``).

    See the module docstring for the method. ``endpoint``, ``model``, ``api``,
    ``api_key_env`` as in :func:`servetrace.synth.replay.replay`; ``prefill_tokens``: prompt lengths
    of the prefill phase (``prefill_repeats`` requests each); ``concurrency``: the sweep's
    levels, ``level_s`` seconds each, the first ``warmup`` fraction not counted;
    ``decode_tokens`` and ``sweep_input_tokens``: the sweep requests' output and prompt
    lengths; ``kv_cache_tokens``: the capacity, when known and not published by the
    server; ``progress(message)``: called after each step. Takes about
    ``len(concurrency) * level_s`` plus the prefill requests' time.

    Raises ``ValueError`` for bad settings, ``ConnectionError`` when the server does not
    answer or every request of a step fails.
    """
    if prefill_repeats < 1 or decode_tokens < 2 or sweep_input_tokens < 0:
        raise ValueError("prefill_repeats must be >= 1, decode_tokens >= 2, "
                         "sweep_input_tokens >= 0")
    if len(set(prefill_tokens)) < 2 or min(prefill_tokens) < 0:
        raise ValueError("prefill_tokens: need at least two distinct lengths >= 0")
    if not concurrency or min(concurrency) < 1:
        raise ValueError("concurrency: need at least one level >= 1")
    if not (level_s > 0 and 0 <= warmup < 1 and math.isfinite(level_s)):
        raise ValueError("level_s must be > 0 and warmup in [0, 1)")
    box: dict[str, Any] = {}
    coro = _profile(endpoint, model=model, api=api, prefill_tokens=list(prefill_tokens),
                    prefill_repeats=prefill_repeats, concurrency=sorted(set(concurrency)),
                    decode_tokens=decode_tokens, sweep_input_tokens=sweep_input_tokens,
                    level_s=level_s, warmup=warmup, timeout_s=timeout_s,
                    api_key_env=api_key_env, kv_cache_tokens=kv_cache_tokens, seed=seed,
                    progress=progress)

    done = threading.Event()

    async def main() -> EndpointProfile:
        box["loop"], box["task"] = asyncio.get_running_loop(), asyncio.current_task()
        return await coro

    def run() -> None:  # in a thread of its own: works where a loop already runs (Jupyter)
        try:
            box["result"] = asyncio.run(main())
        except BaseException as exc:
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="servetrace-profile", daemon=True).start()
    try:
        while not done.wait(0.05):  # short waits, so that Ctrl-C reaches the main thread
            pass
    except KeyboardInterrupt:  # stop the sweep, then let the interrupt go on
        if "loop" in box:
            with contextlib.suppress(RuntimeError):
                box["loop"].call_soon_threadsafe(box["task"].cancel)
        done.wait()
        raise
    if "error" in box:
        raise box["error"]
    return box["result"]


def write_profile(profile: EndpointProfile, path: str | Path) -> Path:
    """Write ``profile`` as YAML at ``path`` (the :data:`PROFILE_KEYS` first); returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(profile.to_yaml())
    return path


def read_profile(path: str | Path) -> EndpointProfile:
    """Read a profile YAML file (written by :func:`write_profile`, or by hand with the
    :data:`PROFILE_KEYS` alone). Raises ``ValueError`` naming the file and the key at fault
    when a key is missing or not a positive number (``kv_cache_tokens`` may be null)."""
    path = Path(path)
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a YAML mapping of profile keys")
    for key in PROFILE_KEYS:
        value = data.get(key)
        if key not in data or (value is None and key != "kv_cache_tokens"):
            raise ValueError(f"{path}: missing key {key!r}")
        if value is not None and (isinstance(value, bool) or not isinstance(
                value, int | float) or not value > 0):
            raise ValueError(f"{path}: {key} must be a positive number, got {value!r}")
    known = {f for f in EndpointProfile.__dataclass_fields__}
    args = {k: v for k, v in data.items() if k in known}
    args["max_concurrent_sequences"] = int(args["max_concurrent_sequences"])
    if args.get("kv_cache_tokens") is not None:
        args["kv_cache_tokens"] = int(args["kv_cache_tokens"])
    args["prefill_points"] = tuple(PrefillPoint(**p) for p in data.get("prefill_points") or ())
    args["sweep"] = tuple(SweepPoint(**p) for p in data.get("sweep") or ())
    args["settings"] = dict(data.get("settings") or {})
    return EndpointProfile(**args)
