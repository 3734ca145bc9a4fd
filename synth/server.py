"""A small OpenAI-compatible streaming server whose token timing follows a cost model.

It stands in for a real inference server (vLLM, SGLang) wherever servetrace needs one over
real HTTP: the tests of :mod:`servetrace.synth.replay` and :mod:`servetrace.synth.profile`, the
demo and the notebooks. It generates no text worth reading; what it models is *when* tokens come
out.

Endpoints: ``POST /v1/completions`` and ``POST /v1/chat/completions`` (``stream`` true or
false; ``stream_options.include_usage`` adds a final usage chunk, as in the OpenAI API and
vLLM), ``GET /v1/models``, ``GET /metrics`` (Prometheus text; with ``kv_cache_tokens`` set
it includes vLLM's ``vllm:cache_config_info`` gauge, ``num_gpu_blocks`` × ``block_size`` =
the KV-cache capacity in tokens) and ``GET /health``.

Cost model (all times from :class:`ServerConfig`), the shape of a continuous-batching
engine such as vLLM (Kwon et al., *Efficient Memory Management for Large Language Model
Serving with PagedAttention*, SOSP 2023):

- a request first waits for one of ``max_concurrent_sequences`` sequence slots (vLLM's
  ``max_num_seqs``); beyond that concurrency requests queue (FIFO), which is the knee a
  profile sweep finds: aggregate decode throughput grows linearly with concurrency up to
  the slot count and stays flat after it;
- prefill is serialized (one prefill at a time, FIFO) and takes
  ``prefill_base_s + input_tokens / prefill_tokens_per_s``; the first token is sent when
  it ends, so an idle server's TTFT is that sum;
- each sequence then emits one token every ``1 / decode_tokens_per_s`` seconds (token ``k``
  at ``t_first + k / decode_tokens_per_s``, on absolute times so the rate does not drift),
  ``max_tokens`` in all, or fewer when ``ignore_eos`` is false and ``eos_after_tokens`` is
  set (the sequence "meets EOS" after that many tokens);
- ``input_tokens`` is approximated by the number of whitespace-separated words of the
  prompt (all message contents for chat), exact for :mod:`servetrace.synth.prompts` prompts.

Several models (``models``: :class:`ModelSpec` name, prefill and decode rates): each request
is costed with the rates of the model it names, the default ``model`` with the server's own.
All models share one engine (the slots and the serialized prefill above), as co-located
models or fine-tuned variants time-sharing one accelerator do. A model name the server does
not serve gets HTTP 404 with vLLM's message.

LoRA adapters (``lora_adapters``, of the default model, with its rates): the server holds the
``max_loras`` adapters used last (vLLM's ``--max-loras``, the adapters resident at once); a
request for an adapter not among them loads it first, which adds ``lora_load_s`` to its
prefill (serialized like the prefill itself) and evicts the least recently used one. This is
the plain LRU adapter cache of S-LoRA (Sheng et al., *S-LoRA: Serving Thousands of Concurrent
LoRA Adapters*, MLSys 2024) and vLLM, without its batching limits: a miss costs a fixed load
time whatever the adapter's rank. ``lora_loads`` counts the loads.

Priority scheduling (``priority_scheduling``): when every slot is busy, waiting requests get
the next free slot lowest ``priority`` field first (vLLM's ``--scheduling-policy priority``:
lower is more urgent, ties in arrival order); without it, or without the field, waiting is
FIFO. A running request is never preempted.

Prefix cache (``prefix_cache_tokens`` set): an LRU cache of prompt blocks of ``block_size``
words (:class:`PrefixCache`), looked up when a request's prefill starts. A request's cached
tokens are its longest run of leading blocks found in the cache (a partial last block counts
its words); its prefill then costs ``prefill_base_s + (input_tokens - cached) /
prefill_tokens_per_s``, and the usage it reports carries
``prompt_tokens_details.cached_tokens`` as vLLM and the OpenAI API do. The cache follows the
model of :mod:`servetrace.analysis.kvcache` access for access (a block is keyed by its text,
every block of a prompt is accessed in prompt order and moved to the most-recent end, the
least recent is evicted beyond ``prefix_cache_tokens // block_size`` blocks), so over the
same order of requests it reports what :func:`~servetrace.analysis.kvcache.lru_curve`
predicts for that capacity. Keying by a block's own text rather than by the chain of its
prefix matches the analysis; the two agree whenever ids are chained (a block id implies its
prefix), as in Mooncake's and in hash-derived traces. Blocks of different models (and
adapters) are different blocks, as in vLLM, whose block hashes include the LoRA id.
``prefix_log`` lists, in lookup order, ``(request number, prompt tokens, cached tokens)``.

Faults: ``fail_every`` (every Nth request, counted from 1 over both generation endpoints,
answers HTTP 500), ``fail_fraction`` (that fraction at random, seeded), ``stall_every`` /
``stall_fraction`` (the request hangs ``stall_s`` seconds before anything is sent, then
proceeds). With ``api_key`` set, requests without ``Authorization: Bearer <key>`` get 401.
An unknown ``model`` gets 404, as vLLM answers.

Run it in-process (a background thread with its own event loop)::

    with serve(ServerConfig(decode_tokens_per_s=100)) as url:   # "http://127.0.0.1:PORT"
        ...

or as a process: ``servetrace serve --port 8000 [--model NAME=PREFILL_MS,DECODE_MS ...]``
(:func:`models_config`, :func:`run_forever`), or ``python -m servetrace.synth.server --port
8000 [--decode-tokens-per-s 50 ...]`` (every field of :class:`ServerConfig` as a flag)
(``--port 0`` picks a free port; the first line printed is the base URL).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import itertools
import json
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from servetrace.extras import require
from servetrace.synth.prompts import VOCABULARY

web = require("aiohttp.web", "replay", "the local test server")

__all__ = ["ModelSpec", "PrefixCache", "Server", "ServerConfig", "models_config", "parse_model",
           "run_forever", "serve"]


@dataclass(frozen=True)
class ModelSpec:
    """A model the server serves besides its default one, with its own costs: prefill
    and decode rates in tokens per second (decode per sequence)."""

    name: str
    prefill_tokens_per_s: float
    decode_tokens_per_s: float

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a model needs a name")
        for name in ("prefill_tokens_per_s", "decode_tokens_per_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"model {self.name!r}: {name} must be > 0, "
                                 f"got {getattr(self, name)}")


def parse_model(text: str) -> tuple[str, float | None, float | None]:
    """``NAME`` or ``NAME=PREFILL_MS_PER_TOKEN,DECODE_MS_PER_TOKEN`` (the command line's
    ``--model``) as ``(name, prefill tokens/s, decode tokens/s)``, rates None when not
    given. Raises ``ValueError`` naming the text for another form or a cost not > 0."""
    name, sep, costs = text.partition("=")
    name = name.strip()
    if not name:
        raise ValueError(f"--model {text!r}: expected NAME or NAME=PREFILL_MS,DECODE_MS")
    if not sep:
        return name, None, None
    parts = costs.split(",")
    try:
        prefill_ms, decode_ms = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"--model {text!r}: expected NAME=PREFILL_MS_PER_TOKEN,"
                         "DECODE_MS_PER_TOKEN (two numbers, ms per token)") from None
    if not (prefill_ms > 0 and decode_ms > 0):
        raise ValueError(f"--model {text!r}: costs must be > 0 ms per token")
    return name, 1e3 / prefill_ms, 1e3 / decode_ms


@dataclass(frozen=True)
class ServerConfig:
    """Cost model and fault knobs of the test server (see the module docstring).

    Rates are in tokens per second; ``decode_tokens_per_s`` is per sequence, so the
    server's aggregate decode capacity is ``decode_tokens_per_s * max_concurrent_sequences``.
    """

    model: str = "servetrace-test"
    prefill_base_s: float = 0.005
    prefill_tokens_per_s: float = 50_000.0
    decode_tokens_per_s: float = 100.0
    max_concurrent_sequences: int = 64
    kv_cache_tokens: int | None = None
    block_size: int = 16
    prefix_cache_tokens: int | None = None
    eos_after_tokens: int | None = None
    default_max_tokens: int = 16
    fail_every: int = 0
    fail_fraction: float = 0.0
    stall_every: int = 0
    stall_fraction: float = 0.0
    stall_s: float = 0.0
    api_key: str | None = None
    seed: int = 0
    models: tuple[ModelSpec, ...] = ()
    lora_adapters: tuple[str, ...] = ()
    max_loras: int = 1
    lora_load_s: float = 0.0
    priority_scheduling: bool = False

    def __post_init__(self) -> None:
        names = [self.model, *(m.name for m in self.models), *self.lora_adapters]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"model names must differ: {', '.join(repeated)} given twice")
        if self.max_loras < 1:
            raise ValueError(f"max_loras must be >= 1, got {self.max_loras}")
        if self.lora_load_s < 0:
            raise ValueError(f"lora_load_s must be >= 0, got {self.lora_load_s}")
        for name in ("prefill_tokens_per_s", "decode_tokens_per_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_concurrent_sequences < 1:
            raise ValueError("max_concurrent_sequences must be >= 1, "
                             f"got {self.max_concurrent_sequences}")
        for name in ("prefill_base_s", "stall_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("fail_fraction", "stall_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("fail_every", "stall_every", "block_size", "default_max_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.prefix_cache_tokens is not None:
            if self.prefix_cache_tokens < 0:
                raise ValueError("prefix_cache_tokens must be >= 0, got "
                                 f"{self.prefix_cache_tokens}")
            if self.block_size < 1:
                raise ValueError("a prefix cache needs block_size >= 1")

    def rates(self, model: str) -> tuple[float, float] | None:
        """``(prefill, decode)`` tokens per second of a model or adapter the server serves;
        None for another name."""
        if model == self.model or model in self.lora_adapters:
            return self.prefill_tokens_per_s, self.decode_tokens_per_s
        for spec in self.models:
            if spec.name == model:
                return spec.prefill_tokens_per_s, spec.decode_tokens_per_s
        return None

    def ttft_s(self, input_tokens: int | np.ndarray,
               model: str | None = None) -> float | np.ndarray:
        """TTFT of a request on an idle server: ``prefill_base_s + input / prefill rate`` of
        ``model`` (default: the server's own; add ``lora_load_s`` for an adapter not
        loaded)."""
        rates = self.rates(model or self.model)
        if rates is None:
            raise ValueError(f"the server does not serve model {model!r}")
        return self.prefill_base_s + np.asarray(input_tokens) / rates[0]


class PrefixCache:
    """An LRU cache of prompt blocks with prefix semantics (the model of
    :mod:`servetrace.analysis.kvcache`; Mattson et al., IBM Systems Journal 9(2), 1970, for
    LRU). ``capacity_tokens // block_size`` blocks of ``block_size`` words; a partial block
    takes a whole slot."""

    def __init__(self, capacity_tokens: int, block_size: int):
        self.block_size = block_size
        self.capacity_blocks = capacity_tokens // block_size
        self.blocks: OrderedDict[str, None] = OrderedDict()
        self.queries = 0
        self.hits = 0

    def access(self, words: list[str], salt: str = "") -> int:
        """Look up and insert a prompt's blocks in order; returns its cached tokens (the
        words of its longest run of leading blocks that were cached when reached).
        ``salt`` (a model name) keeps the blocks of different models apart."""
        bs, cached, prefix = self.block_size, 0, True
        blocks = self.blocks
        for start in range(0, len(words), bs):  # blocks of one prompt: a sequential LRU walk
            key = salt + "\0" + " ".join(words[start:start + bs])
            if key in blocks:
                blocks.move_to_end(key)
                if prefix:
                    cached += min(bs, len(words) - start)
            else:
                prefix = False
                blocks[key] = None
                while len(blocks) > self.capacity_blocks:
                    blocks.popitem(last=False)
        self.queries += len(words)
        self.hits += cached
        return cached


class _Slots:
    """``n`` sequence slots, granted to waiters lowest ``(priority, arrival)`` first (FIFO
    when every priority is the same)."""

    def __init__(self, n: int):
        self.free = n
        self.waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self.order = itertools.count()

    async def acquire(self, priority: int = 0) -> None:
        if self.free > 0 and not self.waiting:
            self.free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self.waiting, (priority, next(self.order), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # granted, then cancelled
                self.release()
            raise

    def release(self) -> None:
        while self.waiting:
            _, _, future = heapq.heappop(self.waiting)
            if not future.done():  # a cancelled waiter's future is done: skip it
                future.set_result(None)
                return
        self.free += 1


@dataclass(frozen=True)
class Received:
    """What the server saw of one generation request (for tests)."""

    number: int
    path: str
    authorization: str | None
    body: dict[str, Any]


class _App:
    """The request handlers and the shared state of the cost model (one event loop)."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.counter = itertools.count(1)
        self.rng = np.random.default_rng(config.seed)
        self.received: list[Received] = []
        self.running = 0
        self.waiting = 0
        self.slots: _Slots | None = None
        self.loras: OrderedDict[str, None] = OrderedDict()
        self.lora_loads = 0
        self.prefill: asyncio.Lock | None = None
        self.cache = (PrefixCache(config.prefix_cache_tokens, config.block_size)
                      if config.prefix_cache_tokens is not None else None)
        self.prefix_log: list[tuple[int, int, int]] = []

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/health", self.health)
        app.on_startup.append(self._startup)
        return app

    async def _startup(self, _app: web.Application) -> None:
        self.slots = _Slots(self.config.max_concurrent_sequences)
        self.prefill = asyncio.Lock()

    # -- small endpoints -----------------------------------------------------------------
    async def models(self, _request: web.Request) -> web.Response:
        c = self.config
        entry = {"object": "model", "created": 0, "owned_by": "servetrace"}
        return web.json_response({"object": "list", "data": [
            *({"id": name, "root": name, "parent": None, **entry}
              for name in (c.model, *(m.name for m in c.models))),
            *({"id": name, "root": name, "parent": c.model, **entry}
              for name in c.lora_adapters)]})

    async def health(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def metrics(self, _request: web.Request) -> web.Response:
        lines = [f"vllm:num_requests_running {self.running}",
                 f"vllm:num_requests_waiting {self.waiting}"]
        c = self.config
        if c.kv_cache_tokens is not None and c.block_size:
            blocks = c.kv_cache_tokens // c.block_size
            lines.append(f'vllm:cache_config_info{{block_size="{c.block_size}",'
                         f'num_gpu_blocks="{blocks}"}} 1.0')
        if self.cache is not None:  # vLLM v1's counters, in tokens
            lines += [f"vllm:prefix_cache_queries_total {self.cache.queries}",
                      f"vllm:prefix_cache_hits_total {self.cache.hits}"]
        if c.lora_adapters:
            lines.append(f"servetrace:lora_loads_total {self.lora_loads}")
        return web.Response(text="\n".join(lines) + "\n")

    # -- generation ----------------------------------------------------------------------
    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    def _error(self, status: int, message: str) -> web.Response:
        return web.json_response({"object": "error", "message": message, "code": status},
                                 status=status)

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        c = self.config
        number = next(self.counter)
        auth = request.headers.get("Authorization")
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, "request body is not JSON")
        self.received.append(Received(number, request.path, auth, body))
        if c.api_key is not None and auth != f"Bearer {c.api_key}":
            return self._error(401, "invalid or missing API key")
        model = str(body.get("model", c.model))
        rates = c.rates(model)
        if rates is None:
            return self._error(404, f"The model `{model}` does not exist.")
        prefill_rate, decode_rate = rates
        priority = body.get("priority", 0) if c.priority_scheduling else 0
        if not isinstance(priority, int):
            return self._error(400, f"priority must be an integer, not {priority!r}")
        fail = (c.fail_every and number % c.fail_every == 0) or (
            c.fail_fraction and self.rng.random() < c.fail_fraction)
        if fail:
            return self._error(500, "injected failure")
        stall = (c.stall_every and number % c.stall_every == 0) or (
            c.stall_fraction and self.rng.random() < c.stall_fraction)
        if stall:
            await asyncio.sleep(c.stall_s)
        if chat:
            text = " ".join(str(m.get("content") or "") for m in body.get("messages", []))
        else:
            prompt = body.get("prompt", "")
            text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
        prompt_words = text.split()
        input_tokens = len(prompt_words)
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        max_tokens = c.default_max_tokens if max_tokens is None else int(max_tokens)
        n_out = max_tokens
        if not body.get("ignore_eos", False) and c.eos_after_tokens is not None:
            n_out = min(n_out, c.eos_after_tokens)
        finish = "length" if n_out == max_tokens else "stop"
        stream = bool(body.get("stream", False))
        usage_chunk = stream and bool((body.get("stream_options") or {}).get("include_usage"))
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{number}"
        created = int(time.time())
        loop = asyncio.get_running_loop()
        assert self.slots is not None and self.prefill is not None
        self.waiting += 1
        try:
            await self.slots.acquire(priority)
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            if _gone(request):  # the client left while queued: abort, as vLLM does
                return web.Response(status=499)
            async with self.prefill:
                cached = 0
                if self.cache is not None:
                    cached = self.cache.access(prompt_words, model)
                    self.prefix_log.append((number, input_tokens, cached))
                cost = c.prefill_base_s + (input_tokens - cached) / prefill_rate
                if model in c.lora_adapters:
                    cost += self._lora(model)
                await _sleep_until(loop, loop.time() + cost)
            t_first = loop.time()
            usage: dict[str, Any] = {"prompt_tokens": input_tokens, "completion_tokens": n_out,
                                     "total_tokens": input_tokens + n_out}
            if self.cache is not None:
                usage["prompt_tokens_details"] = {"cached_tokens": cached}
            words = [VOCABULARY[(number + k) % len(VOCABULARY)] for k in range(n_out)]
            if not stream:
                await _sleep_until(loop, t_first + (n_out - 1) / decode_rate)
                text_out = " " + " ".join(words) if words else ""
                choice = ({"index": 0, "message": {"role": "assistant", "content": text_out},
                           "finish_reason": finish} if chat else
                          {"index": 0, "text": text_out, "logprobs": None,
                           "finish_reason": finish})
                return web.json_response({
                    "id": ident, "object": "chat.completion" if chat else "text_completion",
                    "created": created, "model": model, "choices": [choice],
                    "usage": usage})
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                                   "Cache-Control": "no-cache"})
            head = {"id": ident, "object": "chat.completion.chunk" if chat
                    else "text_completion", "created": created, "model": model}
            try:
                await response.prepare(request)
                for k, word in enumerate(words):
                    await _sleep_until(loop, t_first + k / decode_rate)
                    end = finish if k == n_out - 1 else None
                    if chat:
                        delta = ({"role": "assistant", "content": " " + word} if k == 0
                                 else {"content": " " + word})
                        choice = {"index": 0, "delta": delta, "finish_reason": end}
                    else:
                        choice = {"index": 0, "text": " " + word, "logprobs": None,
                                  "finish_reason": end}
                    await response.write(_sse({**head, "choices": [choice]}))
                if usage_chunk:
                    await response.write(_sse({**head, "choices": [], "usage": usage}))
                await response.write(b"data: [DONE]\n\n")
                await response.write_eof()
            except ConnectionResetError:  # the client went away: abort the sequence
                pass
            return response
        finally:
            self.running -= 1
            self.slots.release()


    def _lora(self, adapter: str) -> float:
        """Seconds to make ``adapter`` resident: 0 when it is among the ``max_loras`` used
        last, else ``lora_load_s`` (evicting the least recently used one)."""
        if adapter in self.loras:
            self.loras.move_to_end(adapter)
            return 0.0
        self.loras[adapter] = None
        while len(self.loras) > self.config.max_loras:
            self.loras.popitem(last=False)
        self.lora_loads += 1
        return self.config.lora_load_s


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    delay = deadline - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)


class Server:
    """The test server on ``127.0.0.1`` in a background thread with its own event loop.

    ``start()`` returns the base URL (``http://127.0.0.1:PORT``, a free port unless ``port``
    is given); ``stop()`` shuts it down. Also a context manager. ``received`` lists the
    generation requests it saw (number, path, Authorization header, JSON body).
    """

    def __init__(self, config: ServerConfig | None = None, *, port: int = 0,
                 host: str = "127.0.0.1"):
        self.config = config or ServerConfig()
        self.host = host
        self.port = port
        self._state = _App(self.config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def received(self) -> list[Received]:
        return list(self._state.received)

    @property
    def lora_loads(self) -> int:
        """LoRA adapter loads so far (requests for an adapter that was not resident)."""
        return self._state.lora_loads

    @property
    def prefix_log(self) -> list[tuple[int, int, int]]:
        """``(request number, prompt tokens, cached tokens)`` in prefix-cache lookup order."""
        return list(self._state.prefix_log)

    def start(self) -> str:
        if self._thread is not None:
            return self.url
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        ready = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._runner = loop.run_until_complete(_start(self._state.app(), sock))
            except BaseException as exc:
                failed.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.close()

        self._thread = threading.Thread(target=run, name=f"synth.server:{self.port}",
                                        daemon=True)
        self._thread.start()
        ready.wait()
        if failed:
            self._thread = None
            raise failed[0]
        return self.url

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        if self._runner is not None:
            done = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            with contextlib.suppress(Exception):
                done.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


async def _start(app: web.Application, sock: socket.socket) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    await web.SockSite(runner, sock, backlog=1024).start()
    return runner


@contextlib.contextmanager
def serve(config: ServerConfig | None = None, *, port: int = 0) -> Iterator[str]:
    """Run the test server in a background thread for the ``with`` block; yields its base
    URL (``http://127.0.0.1:PORT``)."""
    server = Server(config, port=port)
    try:
        yield server.start()
    finally:
        server.stop()


def models_config(specs: list[str], **options: Any) -> ServerConfig:
    """A :class:`ServerConfig` from the command line's ``--model`` texts
    (:func:`parse_model`): the first names the default model (its costs, when given,
    replace ``prefill_tokens_per_s``/``decode_tokens_per_s``), the others are served
    beside it with their costs (the default model's where not given); ``options`` are the
    other fields."""
    if not specs:
        return ServerConfig(**options)
    name, prefill, decode = parse_model(specs[0])
    options["model"] = name
    if prefill is not None:
        options["prefill_tokens_per_s"], options["decode_tokens_per_s"] = prefill, decode
    base = ServerConfig(**options)
    extra = []
    for text in specs[1:]:
        other, p, d = parse_model(text)
        extra.append(ModelSpec(other, p or base.prefill_tokens_per_s,
                               d or base.decode_tokens_per_s))
    return ServerConfig(**{**options, "models": tuple(extra)})


def run_forever(config: ServerConfig, *, host: str = "127.0.0.1", port: int = 8000,
                ready: Any = None) -> None:
    """Serve ``config`` on ``host:port`` in this thread until interrupted (Ctrl-C);
    ``ready(url)`` is called once it listens (``port`` 0 picks a free port)."""
    state = _App(config)
    sock = _bind(host, port)

    async def run() -> None:
        runner = await _start(state.app(), sock)
        url = f"http://{host}:{sock.getsockname()[1]}"
        if ready is not None:
            ready(url)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


def main(argv: list[str] | None = None) -> None:
    """``python -m servetrace.synth.server``: serve until interrupted; prints the base URL first."""
    parser = argparse.ArgumentParser(prog="python -m servetrace.synth.server", description=__doc__
                                     .split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    special = ("models", "lora_adapters", "priority_scheduling")
    for f in fields(ServerConfig):
        if f.name in special:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        kind = str if f.name in ("model", "api_key") else int if f.name in (
            "max_concurrent_sequences", "kv_cache_tokens", "block_size", "eos_after_tokens",
            "prefix_cache_tokens", "max_loras",
            "default_max_tokens", "fail_every", "stall_every", "seed") else float
        parser.add_argument(flag, type=kind, default=default, help=f"default {default}")
    parser.add_argument("--extra-model", action="append", default=[],
                        help="NAME or NAME=PREFILL_MS_PER_TOKEN,DECODE_MS_PER_TOKEN, repeated")
    parser.add_argument("--lora-adapter", action="append", default=[],
                        help="a LoRA adapter of --model, repeated")
    parser.add_argument("--priority-scheduling", action="store_true")
    args = parser.parse_args(argv)
    options = {f.name: getattr(args, f.name) for f in fields(ServerConfig)
               if f.name not in special}
    options["lora_adapters"] = tuple(args.lora_adapter)
    options["priority_scheduling"] = args.priority_scheduling
    config = models_config([options.pop("model"), *args.extra_model], **options)
    run_forever(config, host=args.host, port=args.port,
                ready=lambda url: print(url, flush=True))


if __name__ == "__main__":
    main()
