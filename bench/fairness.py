"""Fair-scheduling simulation benchmark: VTC over a million requests of a thousand tenants.

    python bench/fairness.py [--requests N] [--tenants T] [--rate R] [--subsample S]

Generates a multi-tenant trace: ``N`` requests (default 1,000,000) arriving as a Poisson
process of ``R`` requests/s (default 8, about the server's capacity, so queues build up and
drain), each from one of ``T`` tenants (default 1,000) drawn with Zipf(1) popularity, with
(input, output) token pairs resampled jointly from the real Azure LLM inference trace 2023
(conversation, ``../shared/traces/azure_llm_2023``; Patel et al., Splitwise, ISCA 2024).
The server (``servetrace.analysis.fairness.Server``): 20,000 prefill tokens/s, 25 decode tokens/s
per sequence (40 ms iterations), 128 sequences and 262,144 KV tokens per batch.

Measures, in this one process:

- servetrace VTC: ``servetrace.analysis.fairness.simulate(trace, server, "vtc")`` on all requests;
- servetrace FCFS on all requests (the cheapest policy through the same loop);
- baseline: a straightforward per-request-object VTC (one Python object per request, one loop
  turn per server iteration, a dict of counters scanned for the smallest; the structure of
  the VTC artifact's S-LoRA queue) on the first ``S`` requests (default 10,000), its time
  extrapolated linearly to ``N`` (the trace is stationary, so iterations grow with requests);
  servetrace VTC runs on the same prefix, and the two schedules are compared request by
  request (they implement the same semantics, so they must agree);
- ``service_difference`` (the VTC artifact's fairness table) of both full runs.

Prints seconds, million requests per second and peak RSS per stage, the ratios, and each
policy's mean latency and service difference.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import deque
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure, report

from servetrace.analysis import fairness as fa

SHARED = Path(__file__).resolve().parents[2] / "shared" / "traces"
SERVER = fa.Server(prefill_tokens_per_s=20_000.0, decode_tokens_per_s=25.0, max_batch=128,
                   max_batch_tokens=262_144)


def generate(n: int, tenants: int, rate: float, seed: int = 0) -> pl.DataFrame:
    """``n`` requests: Poisson arrivals, Zipf(1) tenants, Azure conversation token pairs."""
    az = pl.read_csv(SHARED / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv")
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, az.height, n)
    p = 1.0 / np.arange(1, tenants + 1)
    who = rng.choice(tenants, n, p=p / p.sum())
    return pl.DataFrame({
        "request_id": np.arange(n).astype(str),
        "tenant": np.char.add("tenant-", who.astype(str)),
        "arrival_s": np.cumsum(rng.exponential(1.0 / rate, n)),
        "input_tokens": az["ContextTokens"].to_numpy()[pick].astype(np.int64),
        "output_tokens": az["GeneratedTokens"].to_numpy()[pick].astype(np.int64),
    })


class Request:
    """One request of the baseline, as a per-request object."""

    __slots__ = ("arrival", "finish", "generated", "inp", "out", "start", "tenant")

    def __init__(self, tenant: str, arrival: float, inp: int, out: int) -> None:
        self.tenant, self.arrival, self.inp, self.out = tenant, arrival, inp, out
        self.generated = 0
        self.start: float | None = None
        self.finish: float | None = None


def naive_vtc(frame: pl.DataFrame, server: fa.Server, w_in: float = 1.0,
              w_out: float = 2.0) -> list[Request]:
    """VTC (Sheng et al., OSDI 2024, Algorithm 1, with the paper's lift) written plainly:
    every iteration takes the arrivals, admits by smallest counter, decodes one token for
    every running request."""
    reqs = [Request(*row) for row in frame.select(
        "tenant", "arrival_s", "input_tokens", "output_tokens").iter_rows()]
    order: dict[str, int] = {}
    for r in reqs:
        order.setdefault(r.tenant, len(order))
    queues: dict[str, deque[Request]] = {u: deque() for u in order}
    counter = dict.fromkeys(order, 0.0)
    running: list[Request] = []
    cap = server.max_batch_tokens or math.inf
    mem, last_left, i, n = 0, None, 0, len(reqs)
    t = reqs[0].arrival
    while True:
        while i < n and reqs[i].arrival <= t:
            r = reqs[i]
            i += 1
            if not queues[r.tenant]:
                waiting = [counter[v] for v in order if queues[v]]
                if waiting:
                    counter[r.tenant] = max(counter[r.tenant], min(waiting))
                elif last_left is not None:
                    counter[r.tenant] = max(counter[r.tenant], counter[last_left])
            queues[r.tenant].append(r)
        new: list[Request] = []
        while len(running) + len(new) < server.max_batch:
            waiting_users = [v for v in order if queues[v]]
            if not waiting_users:
                break
            u = min(waiting_users, key=lambda v: (counter[v], order[v]))
            r = queues[u][0]
            if (running or new) and mem + r.inp + r.out > cap:
                break
            queues[u].popleft()
            if not queues[u]:
                last_left = u
            counter[u] += w_in * r.inp
            r.start = t
            mem += r.inp + r.out
            new.append(r)
        if not running and not new:
            if i >= n:
                break
            t = max(t, reqs[i].arrival)
            continue
        t += sum(r.inp for r in new) / server.prefill_tokens_per_s
        t += 1.0 / server.decode_tokens_per_s
        running += new
        for r in running:
            r.generated += 1
            if r.out > 0:
                counter[r.tenant] += w_out
            if r.generated >= max(r.out, 1):
                r.finish = t
                mem -= r.inp + r.out
        running = [r for r in running if r.finish is None]
    return reqs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--tenants", type=int, default=1_000)
    ap.add_argument("--rate", type=float, default=8.0, help="arrivals per second")
    ap.add_argument("--subsample", type=int, default=10_000,
                    help="requests the per-request-object baseline runs")
    args = ap.parse_args()
    trace = generate(args.requests, args.tenants, args.rate)
    print(f"{trace.height:,} requests, {trace['tenant'].n_unique():,} tenants, "
          f"{trace['arrival_s'].max() / 3600:,.1f} h of arrivals at {args.rate} req/s; "
          f"server {SERVER}", flush=True)

    vtc = measure("servetrace vtc", lambda: fa.simulate(trace, SERVER, "vtc"))
    print(f"vtc: {vtc.seconds:.1f} s, {vtc.result.steps:,} events, "
          f"{vtc.result.iterations:,} iterations", flush=True)
    fcfs = measure("servetrace fcfs", lambda: fa.simulate(trace, SERVER, "fcfs"))
    print(f"fcfs: {fcfs.seconds:.1f} s", flush=True)

    sub = trace.head(args.subsample)
    naive = measure(f"naive vtc ({sub.height:,})", lambda: naive_vtc(sub, SERVER))
    small = measure(f"servetrace vtc ({sub.height:,})", lambda: fa.simulate(sub, SERVER, "vtc"))
    start = np.array([r.start for r in naive.result])
    finish = np.array([r.finish for r in naive.result])
    got = small.result.requests
    agree = (np.allclose(got["start_s"].to_numpy(), start, atol=1e-6)
             and np.allclose(got["finish_s"].to_numpy(), finish, atol=1e-6))

    diffs = {}
    for name, m in (("vtc", vtc), ("fcfs", fcfs)):
        diffs[name] = measure(f"service_difference {name}",
                              lambda m=m: fa.service_difference(m.result).row(0, named=True))

    print()
    print(report(args.requests, [vtc, fcfs]))
    print(report(sub.height, [naive, small]))
    print(report(args.requests, list(diffs.values())))
    extrapolated = naive.seconds * args.requests / sub.height
    print()
    print(f"baseline (per-request objects, per iteration) on {sub.height:,} requests: "
          f"{naive.seconds:.2f} s, extrapolated to {args.requests:,}: {extrapolated:,.0f} s")
    print(f"servetrace vtc vs the baseline: {extrapolated / vtc.seconds:.1f}x faster "
          f"(same prefix: {naive.seconds / small.seconds:.1f}x); schedules identical on the "
          f"prefix: {agree}")
    print(f"servetrace vtc vs fcfs through the same loop: {vtc.seconds / fcfs.seconds:.2f}x "
          f"the time")
    grow = {m.name: (m.peak_bytes - m.base_bytes) / 1e9 for m in (vtc, fcfs)}
    print("peak RSS growth during the stage: "
          + ", ".join(f"{k} {v:.2f} GB" for k, v in grow.items()))
    for name, m in (("vtc", vtc), ("fcfs", fcfs)):
        rq = m.result.requests
        d = diffs[name].result
        print(f"{name}: mean latency {rq['latency_s'].mean():,.1f} s, p99 "
              f"{rq['latency_s'].quantile(0.99):,.1f} s; service difference (tokens/s, 60 s "
              f"windows, 19 ticks) max {d['max']:,.1f} mean {d['mean']:,.1f} "
              f"variance {d['variance']:,.1f}")


if __name__ == "__main__":
    main()
