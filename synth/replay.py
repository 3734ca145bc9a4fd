"""Open-loop replay of a ``requests`` trace against an OpenAI-compatible endpoint.

Each request of the trace is sent at its own scheduled time, whatever happened to the
requests before it (open loop), to ``/v1/completions`` or ``/v1/chat/completions`` with
``stream: true``, and what comes back is timed. The results become a new trace in the
store (``replay/<trace>/<UTC timestamp>``), analysable like any other.

Schedule
    ``scheduled_s = (arrival_s - min(arrival_s)) * time_scale``: the replay starts with the
    trace's first request (``time_scale`` 0.5 plays it twice as fast, 2 half as fast), rows
    in arrival order (ties kept in trace order).

Dispatch
    One asyncio event loop. The absolute deadline of every request (``loop.time()`` at the
    replay zero plus ``scheduled_s``) is computed up front; the dispatcher sleeps until
    ``spin_s`` before a deadline, then yields to the loop (``asyncio.sleep(0)``, which lets
    responses be read) until the deadline is reached, and starts the request as a task
    without waiting for it. With the default ``spin_s = 0`` it sleeps straight to the
    deadline: asyncio's poll timeout is rounded up to whole milliseconds, so a wake-up is
    up to ~1 ms late (never early); a positive ``spin_s`` trims that to tens of µs at the
    cost of CPU time, which on a small, busy machine is better spent reading responses
    (``bench/replay.py`` measures both). Deadlines are absolute, so a late wake-up delays
    one request, never the ones after it (a sleep-after-send dispatcher accumulates every
    wake-up's lateness and drifts).
    ``send_lag_s = sent_s - scheduled_s``, where ``sent_s`` is taken in the request's task
    immediately before the HTTP client is called: the lag includes the dispatcher's
    wake-up, the task's start, and, with ``max_concurrency``, the wait for a free slot
    (also recorded alone as ``wait_s``). Bounded concurrency keeps the schedule's order but
    is no longer open loop: a request waits while ``max_concurrency`` others are in flight.

Requests
    The prompt has ``input_tokens`` words from :mod:`servetrace.synth.prompts`, exactly that many
    tokens for the ``cl100k_base``/``o200k_base`` BPE vocabularies and an approximation for
    others. Given ``tokenizer`` (a function counting a text's tokens, for instance
    ``lambda s: len(tok.encode(s, add_special_tokens=False))`` for a Hugging Face
    tokenizer), the word count of every prompt is adjusted before the replay until the
    tokenizer counts ``input_tokens`` (or the largest count not above it). A chat endpoint
    adds its template's tokens on top; use ``api="completions"`` for exact prompt lengths.
    ``max_tokens`` is the trace's ``output_tokens`` (at least ``min_output_tokens``), with
    ``ignore_eos: true`` (vLLM and SGLang extension; set ``ignore_eos=False`` for servers
    that reject unknown fields, such as the OpenAI API) and
    ``stream_options.include_usage`` so the server reports its own token counts.
    The API key is read from the environment variable ``api_key_env`` (default
    ``OPENAI_API_KEY``) and sent as ``Authorization: Bearer``; it is never logged, stored or
    written to results (error texts are scrubbed of it).

Per request (the *records*, :data:`RECORD_SCHEMA`)
    ``scheduled_s``, ``sent_s`` (both from the replay zero), ``send_lag_s``, ``wait_s``;
    ``ttft_s`` (first chunk carrying text, from ``sent_s``), ``itl_s`` (inter-token
    times: the gaps between chunks carrying text), ``tpot_s``
    (``(latency_s - ttft_s) / (output_tokens - 1)``, the definition of vLLM's
    ``benchmarks/benchmark_serving.py``), ``latency_s`` (end of the response, or the
    error, from ``sent_s``), ``output_tokens`` (the server's ``usage.completion_tokens``
    where it reports one, else the number of chunks carrying text), ``prompt_tokens``
    (the server's count), ``status`` (HTTP) and ``error`` (null on success; a non-200
    status, a timeout or a connection error is recorded, never raised), ``failed``.
    Records are appended to the results file (JSON lines, flushed per completed request)
    as they finish, so a crash keeps everything finished; a ``<results>.meta.json`` beside
    it holds the run's settings, so :func:`recover` can store a crashed run. Ctrl-C stops
    the dispatch, cancels the requests in flight (not recorded: they did not finish) and
    returns what finished with ``interrupted=True``.

The results become a trace of the store through :mod:`servetrace.synth.replay_store`;
the records, their summary and the result object are in
:mod:`servetrace.synth.replay_results`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import re
import threading
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import numpy as np
import polars as pl

from servetrace.extras import require
from servetrace.synth.prompts import prompts as make_prompts
from servetrace.synth.replay_results import RECORD_SCHEMA, ReplayResult, meta_path

aiohttp = require("aiohttp", "replay", "replay against an endpoint")
yarl = require("yarl", "replay", "replay against an endpoint")

__all__ = ["endpoint_url", "redact_url", "replay", "replay_async", "schedule"]

_API_PATHS = {"completions": "/completions", "chat": "/chat/completions"}


# -- pure helpers ------------------------------------------------------------------------------
def endpoint_url(endpoint: str, api: str | None = None) -> tuple[str, str, str]:
    """``(generation URL, models URL, api)`` for an endpoint given as a server root
    (``http://host:8000``), an OpenAI base URL (``.../v1``) or a full generation URL
    (``.../v1/completions``, ``.../v1/chat/completions``, which decides ``api``).

    ``api`` is ``"completions"`` (default) or ``"chat"``. Raises ``ValueError`` for another
    ``api``, a URL that is not http(s), or an ``api`` that contradicts the URL's path.
    """
    parts = urllib.parse.urlsplit(endpoint.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"endpoint: expected an http(s) URL, got {redact_url(endpoint)!r}")
    if api is not None and api not in _API_PATHS:
        raise ValueError(f"api must be 'completions' or 'chat', not {api!r}")
    path = parts.path.rstrip("/")
    named = None
    for kind, suffix in (("chat", "/chat/completions"), ("completions", "/completions")):
        if path.endswith(suffix):
            named, path = kind, path[: -len(suffix)]
            break
    if named is not None and api is not None and api != named:
        raise ValueError(f"endpoint path says api={named!r} but api={api!r} was given")
    api = api or named or "completions"
    base = path if path.endswith("/v1") else path + "/v1"
    root = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "", "", "")).rstrip("/")
    query = f"?{parts.query}" if parts.query else ""
    return root + base + _API_PATHS[api] + query, root + base + "/models" + query, api


def redact_url(url: str) -> str:
    """``url`` without user info (``user:password@``) and query string, for logs and notes."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def schedule(requests: pl.DataFrame | pl.LazyFrame, *, time_scale: float = 1.0,
             min_output_tokens: int = 1) -> pl.DataFrame:
    """The replay schedule of a canonical ``requests`` frame.

    Returns one row per request in arrival order (ties in trace order): ``index`` (0..n-1),
    ``request_id`` (the source's, else the index as text), ``tenant``, ``session``,
    ``scheduled_s = (arrival_s - min(arrival_s)) * time_scale``, ``input_tokens`` and
    ``max_tokens = max(output_tokens, min_output_tokens)``.

    Raises ``ValueError`` for a missing column (``arrival_s``, ``input_tokens``,
    ``output_tokens``), nulls or non-finite values in them, negative token counts, an empty
    frame, or ``time_scale`` not > 0.
    """
    if not (math.isfinite(time_scale) and time_scale > 0):
        raise ValueError(f"time_scale must be a finite number > 0, got {time_scale}")
    if min_output_tokens < 0:
        raise ValueError(f"min_output_tokens must be >= 0, got {min_output_tokens}")
    frame = requests.lazy() if isinstance(requests, pl.DataFrame) else requests
    names = frame.collect_schema().names()
    for col in ("arrival_s", "input_tokens", "output_tokens"):
        if col not in names:
            raise ValueError(f"requests: missing column {col!r}")
    optional = [pl.col(c).cast(pl.String) if c in names else pl.lit(None, pl.String).alias(c)
                for c in ("request_id", "tenant", "session")]
    out = (frame.select(pl.col("arrival_s").cast(pl.Float64),
                        pl.col("input_tokens").cast(pl.Int64),
                        pl.col("output_tokens").cast(pl.Int64), *optional)
           .with_row_index("_row").sort("arrival_s", "_row").collect())
    if out.is_empty():
        raise ValueError("requests: no rows to replay")
    for col in ("arrival_s", "input_tokens", "output_tokens"):
        if out[col].null_count():
            raise ValueError(f"requests: column {col!r} has nulls")
    if not out["arrival_s"].is_finite().all():
        raise ValueError("requests: column 'arrival_s' has non-finite values")
    for col in ("input_tokens", "output_tokens"):
        if out[col].min() < 0:
            raise ValueError(f"requests: column {col!r} has negative token counts")
    return out.with_row_index("index").select(
        pl.col("index").cast(pl.Int64),
        pl.coalesce("request_id", pl.col("index").cast(pl.String)).alias("request_id"),
        "tenant", "session",
        ((pl.col("arrival_s") - pl.col("arrival_s").min()) * time_scale).alias("scheduled_s"),
        "input_tokens",
        pl.max_horizontal("output_tokens", pl.lit(min_output_tokens, pl.Int64))
        .alias("max_tokens"),
    )


# -- prompts ---------------------------------------------------------------------------------
def _exact_prompts(n_tokens: np.ndarray, seed: int,
                   count: Callable[[str], int]) -> tuple[list[str], np.ndarray]:
    """Prompts whose ``count`` is ``n_tokens`` (or the largest not above it), by adjusting
    word counts of :mod:`servetrace.synth.prompts` text; returns the texts and their counts."""
    long = make_prompts(2 * n_tokens + 8, seed)
    texts, counts = [], np.zeros(n_tokens.size, dtype=np.int64)
    for i, n in enumerate(n_tokens.tolist()):  # one tokenizer call per try: not vectorizable
        words = long[i].split(" ")
        k = n
        c = count(" ".join(words[:k]))
        for _ in range(16):
            if c == n:
                break
            k = min(max(k + (n - c), 0), len(words))
            c = count(" ".join(words[:k]))
        while c > n and k > 0:
            k -= 1
            c = count(" ".join(words[:k]))
        texts.append(" ".join(words[:k]))
        counts[i] = c
    return texts, counts


def _body(api: str, model: str, text: str, max_tokens: int, ignore_eos: bool) -> bytes:
    """The JSON body of one streaming generation request."""
    req: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "stream": True,
                           "stream_options": {"include_usage": True}}
    if api == "chat":
        req["messages"] = [{"role": "user", "content": text}]
    else:
        req["prompt"] = text
    if ignore_eos:
        req["ignore_eos"] = True
    return json.dumps(req, separators=(",", ":")).encode()


def _session(api_key_env: str | None, timeout_s: float, limit: int | None
             ) -> tuple[aiohttp.ClientSession, str | None]:
    """An HTTP client session (Bearer key from ``api_key_env``) and the key, for scrubbing."""
    secret = os.environ.get(api_key_env) if api_key_env else None
    headers = {"Content-Type": "application/json"}
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    connector = aiohttp.TCPConnector(limit=limit or 0, limit_per_host=0, keepalive_timeout=30)
    return aiohttp.ClientSession(connector=connector, headers=headers,
                                 timeout=aiohttp.ClientTimeout(total=timeout_s)), secret


# -- the run ---------------------------------------------------------------------------------
class _Run:
    """State of one replay inside its event loop."""

    def __init__(self, plan: pl.DataFrame, texts: Any, *, url: str, model: str, api: str,
                 ignore_eos: bool, timeout_s: float, max_concurrency: int | None,
                 spin_s: float, secret: str | None, out: IO[str] | None,
                 progress: Callable[[int, int], None] | None):
        self.index = plan["index"].to_list()
        self.request_id = plan["request_id"].to_list()
        self.tenant = plan["tenant"].to_list()
        self.session_id = plan["session"].to_list()
        self.scheduled = plan["scheduled_s"].to_list()
        self.input_tokens = plan["input_tokens"].to_list()
        self.max_tokens = plan["max_tokens"].to_list()
        self.texts = texts
        self.url, self.model, self.api = yarl.URL(url), model, api  # parsed once
        self.ignore_eos, self.timeout_s, self.spin_s = ignore_eos, timeout_s, spin_s
        self.secret = secret
        self.out = out
        self.progress = progress
        self.sem = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        self.records: list[dict[str, Any]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.dispatched = 0
        self.t0 = 0.0
        self.session: aiohttp.ClientSession | None = None

    def body(self, i: int) -> bytes:
        return _body(self.api, self.model, self.texts[i], self.max_tokens[i], self.ignore_eos)

    async def dispatch(self) -> None:
        """Start every request at its absolute deadline (sleep, then yield until it)."""
        loop = asyncio.get_running_loop()
        spin = self.spin_s
        for i, offset in enumerate(self.scheduled):
            deadline = self.t0 + offset
            delay = deadline - loop.time() - spin
            if delay > 0:
                await asyncio.sleep(delay)
            while loop.time() < deadline:
                await asyncio.sleep(0)
            task = loop.create_task(self.one(i, deadline))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            self.dispatched = i + 1

    async def one(self, i: int, deadline: float) -> None:
        """Send request ``i``, time its response, record it (file, progress)."""
        loop = asyncio.get_running_loop()
        assert self.session is not None
        ready = acquired = loop.time()
        if self.sem is not None:
            await self.sem.acquire()
            acquired = loop.time()
        try:
            body = self.body(i)
            sent = loop.time()
            times: list[float] = []
            status, error, usage_out, usage_in = await _exchange(
                self.session, self.url, body, times, self.timeout_s)
            end = loop.time()
        finally:
            if self.sem is not None:
                self.sem.release()
        chunks = len(times)
        out_tokens = usage_out if usage_out is not None else chunks
        ttft = times[0] - sent if times else None
        latency = end - sent
        tpot = ((latency - ttft) / (out_tokens - 1)
                if ttft is not None and out_tokens > 1 and error is None else None)
        if error is not None and self.secret:
            error = error.replace(self.secret, "***")
        record = {
            "index": self.index[i], "request_id": self.request_id[i],
            "tenant": self.tenant[i], "session": self.session_id[i],
            "scheduled_s": self.scheduled[i], "sent_s": sent - self.t0,
            "send_lag_s": sent - deadline, "wait_s": acquired - ready,
            "ttft_s": ttft, "tpot_s": tpot, "latency_s": latency,
            "itl_s": [b - a for a, b in itertools.pairwise(times)],
            "input_tokens": self.input_tokens[i], "max_tokens": self.max_tokens[i],
            "output_tokens": int(out_tokens), "chunks": chunks, "prompt_tokens": usage_in,
            "status": status, "error": error, "failed": error is not None,
        }
        self.records.append(record)
        if self.out is not None:
            self.out.write(json.dumps(record) + "\n")
            self.out.flush()
        if self.progress is not None:
            self.progress(len(self.records), len(self.scheduled))


async def _exchange(session: aiohttp.ClientSession, url: str | yarl.URL, body: bytes,
                    times: list[float], timeout_s: float
                    ) -> tuple[int | None, str | None, int | None, int | None]:
    """POST one streaming generation request and read the response to its end.

    Appends to ``times`` the ``loop.time()`` of every chunk that carries text, as it
    arrives (so a cancelled exchange keeps what it saw). Returns ``(HTTP status or None,
    error or None, usage.completion_tokens, usage.prompt_tokens)``; never raises for a
    failure of the request (non-200 status, timeout, connection error, bad chunk).
    """
    loop = asyncio.get_running_loop()
    status = error = usage_out = usage_in = None
    try:
        async with session.post(url, data=body) as resp:
            status = resp.status
            if status != 200:
                text = (await resp.text(errors="replace"))[:300]
                error = f"HTTP {status}: {text}"
            elif resp.content_type != "text/event-stream":  # the server ignored stream
                obj = await resp.json(content_type=None)
                usage = obj.get("usage") or {}
                usage_out, usage_in = usage.get("completion_tokens"), usage.get("prompt_tokens")
                times.append(loop.time())
            else:
                async for line in resp.content:
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":  # read on to the end of the body, so that
                        continue  # the connection goes back to the pool
                    now = loop.time()
                    if _TEXT.search(data) and b'"usage"' not in data and b'"error"' \
                            not in data:  # a plain token chunk: no need to parse it
                        times.append(now)
                        continue
                    obj = json.loads(data)
                    if _has_text(obj):
                        times.append(now)
                    usage = obj.get("usage")
                    if usage:
                        usage_out = usage.get("completion_tokens", usage_out)
                        usage_in = usage.get("prompt_tokens", usage_in)
                    if obj.get("error"):
                        error = f"stream error: {json.dumps(obj['error'])[:300]}"
    except TimeoutError:
        error = f"timeout: no complete response within {timeout_s:g} s"
    except Exception as exc:  # any failure of one request is recorded, not raised
        error = f"{type(exc).__name__}: {exc}"[:300]
    return status, error, usage_out, usage_in


# a chunk whose text, chat content or reasoning text is a non-empty JSON string
_TEXT = re.compile(rb'"(?:text|content|reasoning_content|reasoning)"\s*:\s*"(?!")')


def _has_text(obj: dict[str, Any]) -> bool:
    """Whether a stream chunk carries generated text (completion text, chat content, or a
    reasoning model's reasoning text)."""
    for choice in obj.get("choices") or ():
        if choice.get("text"):
            return True
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning"):
            return True
    return False


async def _discover_model(session: aiohttp.ClientSession, models_url: str) -> str:
    """The first model listed at ``models_url``; ``ConnectionError`` when none is."""
    try:
        async with session.get(models_url) as resp:
            if resp.status != 200:
                raise ConnectionError(f"{redact_url(models_url)}: HTTP {resp.status} listing "
                                      "models; pass model=")
            data = (await resp.json(content_type=None)).get("data") or []
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ConnectionError(f"{redact_url(models_url)}: cannot list models "
                              f"({type(exc).__name__}: {exc}); is the server up?") from exc
    if not data:
        raise ConnectionError(f"{redact_url(models_url)}: the server lists no model; pass model=")
    return str(data[0]["id"])


async def _replay(requests: pl.DataFrame | pl.LazyFrame, endpoint: str, *,
                  model: str | None, api: str | None, time_scale: float,
                  max_concurrency: int | None, timeout_s: float, api_key_env: str | None,
                  ignore_eos: bool, min_output_tokens: int, seed: int,
                  tokenizer: Callable[[str], int] | None, results: str | Path | None,
                  source: str | None, spin_s: float, start_delay_s: float,
                  progress: Callable[[int, int], None] | None) -> ReplayResult:
    """The replay; on cancellation returns what finished with ``interrupted=True``."""
    if max_concurrency is not None and max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1 or None, got {max_concurrency}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    if spin_s < 0 or start_delay_s < 0:
        raise ValueError("spin_s and start_delay_s must be >= 0")
    url, models_url, api = endpoint_url(endpoint, api)
    plan = schedule(requests, time_scale=time_scale, min_output_tokens=min_output_tokens)
    n_in = plan["input_tokens"].to_numpy()
    if tokenizer is not None:
        texts, counts = _exact_prompts(n_in, seed, tokenizer)
        plan = plan.with_columns(pl.Series("input_tokens", counts))
    else:
        texts = make_prompts(n_in, seed)
    path = Path(results) if results is not None else None
    meta: dict[str, Any] = {
        "endpoint": redact_url(url), "api": api, "model": model, "time_scale": time_scale,
        "max_concurrency": max_concurrency, "timeout_s": timeout_s, "ignore_eos": ignore_eos,
        "min_output_tokens": min_output_tokens, "seed": seed, "source": source,
        "requests": plan.height, "tokenizer": tokenizer is not None,
        "api_key_env": api_key_env if api_key_env and os.environ.get(api_key_env) else None,
    }
    out: IO[str] | None = None
    interrupted = False
    session, secret = _session(api_key_env, timeout_s, max_concurrency)
    async with session:
        if model is None:
            model = await _discover_model(session, models_url)
            meta["model"] = model
        run = _Run(plan, texts, url=url, model=model, api=api, ignore_eos=ignore_eos,
                   timeout_s=timeout_s, max_concurrency=max_concurrency, spin_s=spin_s,
                   secret=secret, out=None, progress=progress)
        run.session = session
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            out = run.out = path.open("w")
        loop = asyncio.get_running_loop()
        run.t0 = loop.time() + start_delay_s
        zero = datetime.now(UTC) + timedelta(seconds=run.t0 - loop.time())
        meta["started_at"] = zero.isoformat()
        if path is not None:
            meta_path(path).write_text(json.dumps(meta, indent=2))
        try:
            await run.dispatch()
            while run.tasks:
                await asyncio.wait(set(run.tasks))
        except asyncio.CancelledError:
            interrupted = True
            for task in run.tasks:
                task.cancel()
            await asyncio.gather(*run.tasks, return_exceptions=True)
        finally:
            if out is not None:
                out.close()
    cancelled = run.dispatched - len(run.records)
    records = pl.DataFrame(run.records, schema=RECORD_SCHEMA) if run.records \
        else pl.DataFrame(schema=RECORD_SCHEMA)
    return ReplayResult(records=records, meta=meta, interrupted=interrupted,
                        cancelled=cancelled if interrupted else 0,
                        not_sent=plan.height - run.dispatched, results_path=path)


_DEFAULTS: dict[str, Any] = {
    "model": None, "api": None, "time_scale": 1.0, "max_concurrency": None,
    "timeout_s": 300.0, "api_key_env": "OPENAI_API_KEY", "ignore_eos": True,
    "min_output_tokens": 1, "seed": 0, "tokenizer": None, "results": None, "source": None,
    "spin_s": 0.0, "start_delay_s": 0.05, "progress": None,
}


async def replay_async(requests: pl.DataFrame | pl.LazyFrame, endpoint: str,
                       **options: Any) -> ReplayResult:
    """:func:`replay` inside a running event loop (same options).

    Cancelling the task stops the dispatch, cancels the requests in flight and re-raises
    ``CancelledError``; what finished is in the results file (``results=``).
    """
    unknown = set(options) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"replay: unknown options {sorted(unknown)}")
    result = await _replay(requests, endpoint, **{**_DEFAULTS, **options})
    if result.interrupted:
        raise asyncio.CancelledError()
    return result


def replay(requests: pl.DataFrame | pl.LazyFrame, endpoint: str, *,
           model: str | None = None, api: str | None = None, time_scale: float = 1.0,
           max_concurrency: int | None = None, timeout_s: float = 300.0,
           api_key_env: str | None = "OPENAI_API_KEY", ignore_eos: bool = True,
           min_output_tokens: int = 1, seed: int = 0,
           tokenizer: Callable[[str], int] | None = None, results: str | Path | None = None,
           source: str | None = None, spin_s: float = 0.0, start_delay_s: float = 0.05,
           progress: Callable[[int, int], None] | None = None) -> ReplayResult:
    """Replay a canonical ``requests`` frame against ``endpoint`` (see the module docstring).

    ``endpoint``: server root, ``.../v1`` or a full generation URL (:func:`endpoint_url`);
    ``model``: the model to ask for (default: the first listed by ``/v1/models``);
    ``api``: ``"completions"`` or ``"chat"``; ``time_scale``: multiplies the trace's
    offsets; ``max_concurrency``: at most that many requests in flight (None: unbounded);
    ``timeout_s``: a request without a complete response by then is recorded as a timeout;
    ``api_key_env``: environment variable holding the API key (None: send none);
    ``seed``: of the prompts; ``tokenizer``: counts tokens, for exact prompt lengths;
    ``results``: results file (JSON lines, appended as requests finish; None: none);
    ``source``: the source trace's id, recorded in the settings; ``spin_s``: how long before
    a deadline the dispatcher stops sleeping and yields until it; ``start_delay_s``: time
    from the call's setup to the replay zero; ``progress(done, total)``: called (in the
    replay's own thread) as requests finish.

    Runs in a thread of its own (so it works where an event loop already runs, as in
    Jupyter). Ctrl-C stops it: the result then holds what finished, ``interrupted=True``.
    Raises ``ValueError`` for bad options or a bad frame and ``ConnectionError`` when the
    model must be discovered and the server does not answer.
    """
    options = {k: v for k, v in locals().items() if k not in ("requests", "endpoint")}
    box: dict[str, Any] = {}
    ready, done = threading.Event(), threading.Event()

    def run() -> None:
        loop = asyncio.new_event_loop()
        try:
            task = loop.create_task(_replay(requests, endpoint, **options))
            box["loop"], box["task"] = loop, task
            ready.set()
            box["result"] = loop.run_until_complete(task)
        except BaseException as exc:
            box["error"] = exc
        finally:
            ready.set()
            loop.close()
            done.set()

    threading.Thread(target=run, name="servetrace-replay", daemon=True).start()
    try:
        # Short waits on an Event (not Thread.join, whose interruption breaks the thread's
        # state in Python 3.11): a signal may land on another thread, and the main thread
        # runs Python's handler (KeyboardInterrupt) only when it wakes.
        while not done.wait(0.05):
            pass
    except KeyboardInterrupt:
        # Cancel, then wait for what finished. A second Ctrl-C meanwhile must not lose it:
        # it lands in this loop and the wait goes on (cancellation takes milliseconds).
        cancelled = False
        while not done.is_set():
            try:
                ready.wait()
                if not cancelled:
                    cancelled = True
                    with contextlib.suppress(RuntimeError):  # the loop closed: it finished
                        box["loop"].call_soon_threadsafe(box["task"].cancel)
                done.wait()
            except KeyboardInterrupt:
                continue
    if "error" in box:
        raise box["error"]
    return box["result"]


