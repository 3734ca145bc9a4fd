"""Replay of a ``requests`` trace against an OpenAI-compatible endpoint: open loop, with
sessions in closed loop.

Requests are sent to ``/v1/completions`` or ``/v1/chat/completions`` with ``stream: true``,
and what comes back is timed. Requests without a session, and the first request of each
session, are sent at their own scheduled time whatever happened before (open loop); the
later turns of a session and its sub-agents' requests are sent when the request they follow
has answered, plus the think time (closed loop, :mod:`servetrace.synth.replay_sessions`).
The results become a new trace in the store (``replay/<trace>/<UTC timestamp>``),
analysable like any other.

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
    A closed-loop request's deadline is the end of the response it waits for plus its
    ``delay_s``; it is then sent as above (``scheduled_s`` records that deadline).
    ``limit``/``duration_s`` replay the first requests of the schedule only.

Classes, offline backlog, models (the columns of a workload mix, :mod:`servetrace.synth.mix`)
    A request whose ``offline`` is true has no deadline: it joins a backlog at its
    ``scheduled_s`` and is sent, in arrival order, as soon as a slot is free: fewer than
    ``offline_concurrency`` offline requests in flight, or, without it, fewer than
    ``max_concurrency`` requests of both kinds. Online requests never wait for offline ones:
    their own bound counts online requests only, so with one shared ``max_concurrency`` the
    total in flight may pass it until the offline requests then in flight finish (the
    HyGen-style co-location where offline work fills what online traffic leaves).
    Offline requests are not closed loop; their ``send_lag_s`` and ``wait_s`` are the time
    spent in the backlog. Each request is sent to its trace ``model`` (a model or LoRA
    adapter name) when the server lists them all (``trace_models``), with its ``priority``
    in the body when ``send_priority`` is set. Records carry ``request_class``,
    ``priority``, ``model``, ``offline``, ``slo_ttft_s`` and ``slo_tpot_s``, so the summary
    is also per class and per model
    (:func:`~servetrace.synth.replay_results.summarize_by`), each request held to its own
    SLOs. A trace without these columns replays as before.

Requests
    With ``hash_ids`` in the trace and its block size given (``block_tokens``, ``hash_scope``),
    prompts are block prompts (:func:`servetrace.synth.prompts.block_prompts`): requests whose
    ids share a prefix share that prefix's text, so a server's prefix cache sees the trace's
    reuse (and :mod:`servetrace.analysis.kvcache` predicts what it finds). Otherwise the
    prompt has ``input_tokens`` words from :mod:`servetrace.synth.prompts`, exactly that many
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
    (the server's count), ``cached_tokens`` (the server's
    ``usage.prompt_tokens_details.cached_tokens``, streamed or not; null when it reports
    none), ``after_index`` and ``delay_s`` (closed loop: the request waited for and the
    delay after its end), ``status`` (HTTP) and ``error`` (null on success; a non-200
    status, a timeout or a connection error is recorded, never raised), ``failed``.
    Records are appended to the results file (JSON lines, flushed per completed request)
    as they finish, so a crash keeps everything finished; a ``<results>.meta.json`` beside
    it holds the run's settings, so :func:`recover` can store a crashed run. Ctrl-C stops
    the dispatch, cancels the requests in flight (not recorded: they did not finish) and
    returns what finished with ``interrupted=True``. ``progress`` receives a
    :class:`~servetrace.synth.replay_results.ReplayProgress` (sent, finished, failed, lag)
    every ``progress_interval_s``.
    The settings hold the trace's own token hit ratios (``meta["prefix"]``: infinite cache,
    and LRU at ``cache_tokens``), which the summary puts beside the achieved one.

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
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import polars as pl

from servetrace.extras import require
from servetrace.synth import replay_prompts
from servetrace.synth.replay_results import (
    RECORD_SCHEMA,
    ReplayProgress,
    ReplayResult,
    meta_path,
    with_class_columns,
)
from servetrace.synth.replay_sessions import DEPENDENCY_COLUMNS, dependencies, slice_plan

aiohttp = require("aiohttp", "replay", "replay against an endpoint")
yarl = require("yarl", "replay", "replay against an endpoint")

__all__ = ["endpoint_url", "redact_url", "replay", "replay_async", "schedule"]

_API_PATHS = {"completions": "/completions", "chat": "/chat/completions"}

SOURCE_CLASS_COLUMNS = ("request_class", "offline", "priority", "model", "slo_ttft_s",
                        "slo_tpot_s")
"""Columns of the source trace copied into the records, where present."""


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
             min_output_tokens: int = 1, keep: Sequence[str] = ()) -> pl.DataFrame:
    """The replay schedule of a canonical ``requests`` frame.

    Returns one row per request in arrival order (ties in trace order): ``index`` (0..n-1),
    ``request_id`` (the source's, else the index as text), ``tenant``, ``session``,
    ``scheduled_s = (arrival_s - min(arrival_s)) * time_scale``, ``input_tokens`` and
    ``max_tokens = max(output_tokens, min_output_tokens)``, then the columns of ``keep``
    the frame has (as they are).

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
    kept = [c for c in dict.fromkeys(keep) if c in names and c not in (
        "arrival_s", "input_tokens", "output_tokens", "request_id", "tenant", "session")]
    out = (frame.select(pl.col("arrival_s").cast(pl.Float64),
                        pl.col("input_tokens").cast(pl.Int64),
                        pl.col("output_tokens").cast(pl.Int64), *optional, *kept)
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
        .alias("max_tokens"), *kept,
    )


# -- prompts ---------------------------------------------------------------------------------
def _body(api: str, model: str, text: str, max_tokens: int, ignore_eos: bool,
          priority: int | None = None) -> bytes:
    """The JSON body of one streaming generation request (``priority``: vLLM's and SGLang's
    request field, lower first, sent only when given)."""
    req: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "stream": True,
                           "stream_options": {"include_usage": True}}
    if priority is not None:
        req["priority"] = priority
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

    def __init__(self, plan: pl.DataFrame, texts: Any, *, url: str, models: list[str],
                 api: str, ignore_eos: bool, timeout_s: float, max_concurrency: int | None,
                 offline_concurrency: int | None, send_priority: bool,
                 spin_s: float, secret: str | None, out: IO[str] | None,
                 progress: Callable[[ReplayProgress], None] | None):
        self.index = plan["index"].to_list()
        self.request_id = plan["request_id"].to_list()
        self.tenant = plan["tenant"].to_list()
        self.session_id = plan["session"].to_list()
        self.scheduled = plan["scheduled_s"].to_list()
        self.input_tokens = plan["input_tokens"].to_list()
        self.max_tokens = plan["max_tokens"].to_list()
        self.after = plan["after_index"].to_list()
        self.delay = plan["delay_s"].to_list()
        self.models = models
        classes = with_class_columns(plan)
        self.request_class = classes["request_class"].to_list()
        self.priority = classes["priority"].to_list()
        self.slo_ttft = classes["slo_ttft_s"].to_list()
        self.slo_tpot = classes["slo_tpot_s"].to_list()
        self.offline = classes["offline"].fill_null(False).to_list()
        self.send_priority = send_priority
        root = plan["after_index"].is_null()
        offline = classes["offline"].fill_null(False)
        self.roots = plan["index"].filter(root & ~offline).to_list()
        self.backlog = plan["index"].filter(root & offline).to_list()
        self.children: dict[int, list[int]] = dict(
            plan.filter(pl.col("after_index").is_not_null())
            .group_by("after_index", maintain_order=True).agg("index").iter_rows())
        self.texts = texts
        self.url, self.api = yarl.URL(url), api  # parsed once
        self.ignore_eos, self.timeout_s, self.spin_s = ignore_eos, timeout_s, spin_s
        self.secret = secret
        self.out = out
        self.progress = progress
        self.sem = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        self.max_concurrency = max_concurrency
        self.offline_concurrency = offline_concurrency
        self.online_in_flight = self.offline_in_flight = 0
        self.freed: asyncio.Event | None = None
        self.records: list[dict[str, Any]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.dispatched = 0
        self.failed = 0
        self.last_lag = self.max_lag = 0.0
        self.t0 = 0.0
        self.session: aiohttp.ClientSession | None = None

    def body(self, i: int) -> bytes:
        priority = self.priority[i] if self.send_priority else None
        return _body(self.api, self.models[i], self.texts[i], self.max_tokens[i],
                     self.ignore_eos, priority)

    def start(self, i: int, deadline: float) -> None:
        if self.after[i] is None and not self.offline[i]:
            self.online_in_flight += 1  # now, so that the backlog never sees a stale count
        loop = asyncio.get_running_loop()
        task = loop.create_task(self.one(i, deadline))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def until(self, deadline: float) -> None:
        """Sleep until ``spin_s`` before ``deadline``, then yield until it."""
        loop = asyncio.get_running_loop()
        delay = deadline - loop.time() - self.spin_s
        if delay > 0:
            await asyncio.sleep(delay)
        while loop.time() < deadline:
            await asyncio.sleep(0)

    async def dispatch(self) -> None:
        """Start every open-loop online request at its absolute deadline, and the offline
        backlog beside them (:meth:`drain`); the closed-loop ones are started by the
        request they wait for (:meth:`one`)."""
        drain = asyncio.get_running_loop().create_task(self.drain()) if self.backlog \
            else None
        try:
            for i in self.roots:
                deadline = self.t0 + self.scheduled[i]
                await self.until(deadline)
                self.start(i, deadline)
            if drain is not None:
                await drain
        finally:
            if drain is not None and not drain.done():
                drain.cancel()
                await asyncio.gather(drain, return_exceptions=True)

    def offline_free(self) -> bool:
        """Whether an offline request may go now: fewer than ``offline_concurrency``
        offline requests in flight, else fewer than ``max_concurrency`` requests of both
        kinds (online ones never wait for offline ones)."""
        if self.offline_concurrency is not None:
            return self.offline_in_flight < self.offline_concurrency
        assert self.max_concurrency is not None
        return self.online_in_flight + self.offline_in_flight < self.max_concurrency

    async def drain(self) -> None:
        """Send the offline backlog in arrival order: each request once its scheduled time
        has passed and as soon as :meth:`offline_free` allows."""
        self.freed = asyncio.Event()
        for i in self.backlog:
            deadline = self.t0 + self.scheduled[i]
            await self.until(deadline)
            while not self.offline_free():
                self.freed.clear()
                await self.freed.wait()
            self.offline_in_flight += 1
            self.start(i, deadline)

    def snapshot(self, elapsed_s: float) -> ReplayProgress:
        return ReplayProgress(total=len(self.scheduled), sent=self.dispatched,
                              finished=len(self.records), failed=self.failed,
                              lag_s=self.last_lag, max_lag_s=self.max_lag,
                              elapsed_s=elapsed_s)

    async def tick(self, interval_s: float) -> None:
        """Report progress every ``interval_s`` until cancelled."""
        assert self.progress is not None
        loop = asyncio.get_running_loop()
        while True:
            self.progress(self.snapshot(max(loop.time() - self.t0, 0.0)))
            await asyncio.sleep(interval_s)

    async def one(self, i: int, deadline: float) -> None:
        """Send request ``i`` at ``deadline``, time its response, record it (file,
        progress), then start the requests that wait for it."""
        loop = asyncio.get_running_loop()
        assert self.session is not None
        if self.after[i] is not None:
            await self.until(deadline)
            self.online_in_flight += 1
        self.dispatched += 1
        offline = self.offline[i]
        sem = None if offline else self.sem
        ready = acquired = loop.time()
        if offline:  # counted by drain() when it let the request go; waited there
            ready = deadline
        if sem is not None:
            await sem.acquire()
            acquired = loop.time()
        try:
            body = self.body(i)
            sent = loop.time()
            self.last_lag = sent - deadline
            self.max_lag = max(self.max_lag, self.last_lag)
            times: list[float] = []
            usage: dict[str, Any] = {}
            status, error, usage_out, usage_in = await _exchange(
                self.session, self.url, body, times, self.timeout_s, usage)
            end = loop.time()
        finally:
            if sem is not None:
                sem.release()
            if offline:
                self.offline_in_flight -= 1
            else:
                self.online_in_flight -= 1
            if self.freed is not None:
                self.freed.set()
        chunks = len(times)
        out_tokens = usage_out if usage_out is not None else chunks
        ttft = times[0] - sent if times else None
        latency = end - sent
        tpot = ((latency - ttft) / (out_tokens - 1)
                if ttft is not None and out_tokens > 1 and error is None else None)
        if error is not None and self.secret:
            error = error.replace(self.secret, "***")
        details = usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        record = {
            "index": self.index[i], "request_id": self.request_id[i],
            "tenant": self.tenant[i], "session": self.session_id[i],
            "scheduled_s": deadline - self.t0, "sent_s": sent - self.t0,
            "send_lag_s": sent - deadline, "wait_s": acquired - ready,
            "ttft_s": ttft, "tpot_s": tpot, "latency_s": latency,
            "itl_s": [b - a for a, b in itertools.pairwise(times)],
            "input_tokens": self.input_tokens[i], "max_tokens": self.max_tokens[i],
            "output_tokens": int(out_tokens), "chunks": chunks, "prompt_tokens": usage_in,
            "cached_tokens": cached, "after_index": self.after[i], "delay_s": self.delay[i],
            "status": status, "error": error, "failed": error is not None,
            "request_class": self.request_class[i], "priority": self.priority[i],
            "model": self.models[i], "offline": offline, "slo_ttft_s": self.slo_ttft[i],
            "slo_tpot_s": self.slo_tpot[i],
        }
        self.records.append(record)
        self.failed += error is not None
        if self.out is not None:
            self.out.write(json.dumps(record) + "\n")
            self.out.flush()
        for j in self.children.get(self.index[i], ()):
            self.start(j, end + self.delay[j])


async def _exchange(session: aiohttp.ClientSession, url: str | yarl.URL, body: bytes,
                    times: list[float], timeout_s: float, usage_seen: dict[str, Any] | None = None
                    ) -> tuple[int | None, str | None, int | None, int | None]:
    """POST one streaming generation request and read the response to its end.

    Appends to ``times`` the ``loop.time()`` of every chunk that carries text, as it
    arrives (so a cancelled exchange keeps what it saw). Returns ``(HTTP status or None,
    error or None, usage.completion_tokens, usage.prompt_tokens)``; never raises for a
    failure of the request (non-200 status, timeout, connection error, bad chunk).
    ``usage_seen``, when given, is updated with every ``usage`` object the server sends
    (the last one wins), ``prompt_tokens_details`` included.
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
                if usage_seen is not None:
                    usage_seen.update(usage)
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
                        if usage_seen is not None:
                            usage_seen.update(usage)
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
    return (await _list_models(session, models_url))[0]


async def _list_models(session: aiohttp.ClientSession, models_url: str) -> list[str]:
    """The models listed at ``models_url`` (LoRA adapters included, as vLLM lists them);
    ``ConnectionError`` when none is."""
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
    return [str(m["id"]) for m in data]


async def _request_models(session: aiohttp.ClientSession, models_url: str, plan: pl.DataFrame,
                          model: str | None, trace_models: bool | None
                          ) -> tuple[list[str], str, bool]:
    """``(model of every request, the default model, trace's names used?)``.

    ``trace_models`` True sends each request to its trace ``model`` (the default where
    null); False sends all to ``model`` (default: the first the server lists); None
    (auto) sends the trace's names when ``model`` is not given and the server lists every
    one of them (a mix's models or LoRA adapters), else as False.
    """
    names = (plan["model"].cast(pl.String) if "model" in plan.columns
             else pl.Series("model", [None] * plan.height, pl.String))
    wanted = set(names.drop_nulls().to_list())
    use = bool(trace_models) and bool(wanted)
    listed: list[str] | None = None
    if trace_models is None and model is None and wanted:
        listed = await _list_models(session, models_url)
        use = wanted <= set(listed)
    if model is None and (not use or names.null_count()):
        model = listed[0] if listed else await _discover_model(session, models_url)
    default = model if model is not None else sorted(wanted)[0]
    if not use:
        return [default] * plan.height, default, False
    return names.fill_null(default).to_list(), default, True


async def _replay(requests: pl.DataFrame | pl.LazyFrame, endpoint: str, *,
                  model: str | None, api: str | None, time_scale: float,
                  max_concurrency: int | None, timeout_s: float, api_key_env: str | None,
                  ignore_eos: bool, min_output_tokens: int, seed: int,
                  tokenizer: Callable[[str], int] | None, results: str | Path | None,
                  source: str | None, spin_s: float, start_delay_s: float,
                  progress: Callable[[ReplayProgress], None] | None,
                  progress_interval_s: float, closed_loop: bool, limit: int | None,
                  duration_s: float | None, block_tokens: int | None, hash_scope: str,
                  cache_tokens: int | None, offline_concurrency: int | None,
                  send_priority: bool, trace_models: bool | None) -> ReplayResult:
    """The replay; on cancellation returns what finished with ``interrupted=True``."""
    if max_concurrency is not None and max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1 or None, got {max_concurrency}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    if spin_s < 0 or start_delay_s < 0:
        raise ValueError("spin_s and start_delay_s must be >= 0")
    if not progress_interval_s > 0:
        raise ValueError(f"progress_interval_s must be > 0, got {progress_interval_s}")
    url, models_url, api = endpoint_url(endpoint, api)
    if offline_concurrency is not None and offline_concurrency < 1:
        raise ValueError(f"offline_concurrency must be >= 1 or None, got {offline_concurrency}")
    plan = schedule(requests, time_scale=time_scale, min_output_tokens=min_output_tokens,
                    keep=("hash_ids", *DEPENDENCY_COLUMNS, *SOURCE_CLASS_COLUMNS))
    if limit is not None or duration_s is not None:
        plan = slice_plan(plan, limit=limit, duration_s=duration_s)
    plan = dependencies(plan, time_scale=time_scale, closed_loop=closed_loop)
    if "offline" in plan.columns:  # backlog requests wait for a slot, never for a response
        off = pl.col("offline").cast(pl.Boolean).fill_null(False)
        plan = plan.with_columns(pl.col("offline").cast(pl.Boolean),
                                 pl.when(off).then(None).otherwise("after_index")
                                 .alias("after_index"),
                                 pl.when(off).then(None).otherwise("delay_s").alias("delay_s"))
        if (plan["offline"].any() and max_concurrency is None
                and offline_concurrency is None):
            raise ValueError(
                f"requests: {int(plan['offline'].sum()):,} offline requests go from a backlog "
                "as concurrency frees up: give max_concurrency (shared, online first) or "
                "offline_concurrency (--max-concurrency / --offline-concurrency)")
    texts, counts, shared = replay_prompts.prompts(plan, seed, tokenizer, block_tokens, hash_scope)
    if counts is not None:
        plan = plan.with_columns(pl.Series("input_tokens", counts))
    path = Path(results) if results is not None else None
    meta: dict[str, Any] = {
        "endpoint": redact_url(url), "api": api, "model": model, "time_scale": time_scale,
        "max_concurrency": max_concurrency, "offline_concurrency": offline_concurrency,
        "send_priority": send_priority, "timeout_s": timeout_s, "ignore_eos": ignore_eos,
        "min_output_tokens": min_output_tokens, "seed": seed, "source": source,
        "requests": plan.height, "tokenizer": tokenizer is not None,
        "api_key_env": api_key_env if api_key_env and os.environ.get(api_key_env) else None,
        "closed_loop": closed_loop, "closed_loop_requests": int(
            plan["after_index"].is_not_null().sum()),
        "limit": limit, "duration_s": duration_s,
        "prefix": replay_prompts.trace_hit_ratios(plan, block_tokens, hash_scope, cache_tokens)
        if shared and block_tokens is not None else None,
    }
    out: IO[str] | None = None
    interrupted = False
    session, secret = _session(api_key_env, timeout_s, max_concurrency)
    async with session:
        models, meta["model"], meta["trace_models"] = await _request_models(
            session, models_url, plan, model, trace_models)
        meta["models"] = sorted(set(models))
        run = _Run(plan, texts, url=url, models=models, api=api, ignore_eos=ignore_eos,
                   timeout_s=timeout_s, max_concurrency=max_concurrency,
                   offline_concurrency=offline_concurrency, send_priority=send_priority,
                   spin_s=spin_s, secret=secret, out=None, progress=progress)
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
        ticker = (loop.create_task(run.tick(progress_interval_s)) if progress is not None
                  else None)
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
            if ticker is not None:
                ticker.cancel()
                await asyncio.gather(ticker, return_exceptions=True)
                progress(run.snapshot(max(loop.time() - run.t0, 0.0)))  # type: ignore[misc]
            if out is not None:
                out.close()
    cancelled = run.dispatched - len(run.records)
    records = pl.DataFrame(run.records, schema=RECORD_SCHEMA) if run.records \
        else pl.DataFrame(schema=RECORD_SCHEMA)
    if meta["prefix"] is not None and cache_tokens is not None and records.height:
        meta["prefix"]["sent_order_lru_hit_ratio"] = replay_prompts.sent_order_ratio(
            plan, records, meta["prefix"]["block_tokens"], hash_scope, cache_tokens)
    return ReplayResult(records=records, meta=meta, interrupted=interrupted,
                        cancelled=cancelled if interrupted else 0,
                        not_sent=plan.height - run.dispatched, results_path=path)


_DEFAULTS: dict[str, Any] = {
    "model": None, "api": None, "time_scale": 1.0, "max_concurrency": None,
    "timeout_s": 300.0, "api_key_env": "OPENAI_API_KEY", "ignore_eos": True,
    "min_output_tokens": 1, "seed": 0, "tokenizer": None, "results": None, "source": None,
    "spin_s": 0.0, "start_delay_s": 0.05, "progress": None, "progress_interval_s": 1.0,
    "closed_loop": True, "limit": None, "duration_s": None, "block_tokens": None,
    "hash_scope": "global", "cache_tokens": None, "offline_concurrency": None,
    "send_priority": False, "trace_models": None,
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
           progress: Callable[[ReplayProgress], None] | None = None,
           progress_interval_s: float = 1.0, closed_loop: bool = True,
           limit: int | None = None, duration_s: float | None = None,
           block_tokens: int | None = None, hash_scope: str = "global",
           cache_tokens: int | None = None, offline_concurrency: int | None = None,
           send_priority: bool = False, trace_models: bool | None = None) -> ReplayResult:
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
    from the call's setup to the replay zero; ``progress(ReplayProgress)``: called (in the
    replay's own thread) every ``progress_interval_s`` seconds and once at the end;
    ``closed_loop``: sessions' later turns and sub-agents wait for the request before them
    (:mod:`servetrace.synth.replay_sessions`; False: every request open loop);
    ``limit``/``duration_s``: replay only the first ``limit`` requests / those scheduled
    before ``duration_s`` seconds; ``block_tokens`` and ``hash_scope``: the trace's hash
    block size and id scope, which make prompts share text where ``hash_ids`` share a prefix
    (None: independent prompts); ``cache_tokens``: the server's prefix-cache capacity in
    tokens, for the trace's LRU hit ratio beside the achieved one;
    ``offline_concurrency``: at most that many offline requests in flight (None: they use
    the slots of ``max_concurrency`` that online requests leave free; one of the two is
    needed when the trace has offline requests); ``send_priority``: send each request's
    ``priority`` in the body (vLLM and SGLang read it; vLLM refuses a non-zero one unless it
    runs ``--scheduling-policy priority``); ``trace_models``: send each request to its
    trace's ``model`` (True), to ``model`` (False), or the former when the server lists
    every name and ``model`` is not given (None).

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


