"""Does an offline backlog delay online sends? Online send lag with and without a backlog
running beside it, side by side in one process, against the local server in its own process.

Usage: ``python bench/offline_backlog.py [--rate 100] [--duration 10] [--offline 2000]
[--offline-concurrency 8]``

The same online Poisson trace is replayed twice: alone (the baseline), then with an offline
backlog of ``--offline`` requests all available at t = 0 and sent as
``--offline-concurrency`` allows (:mod:`servetrace.synth.replay`). Printed: online send lag
p50/p99/max for both and their ratio (1 = the backlog costs the online sends nothing; above 1
is the CPU the backlog's responses take from the dispatcher on this machine), the backlog's
throughput against its closed form (concurrency / per-request latency on an idle server),
wall time and peak memory.

No online request waits for a slot the backlog holds (the replay's admission rule); what the
backlog can still cost the online sends is CPU: one event loop reads every streamed token of
both, so on a busy machine the online tail lag grows (measured: p99 6.2 ms alone, 30.8 ms with
600 offline requests 8 at a time, p50 0.90 against 1.18 ms, load average 8 on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure

from servetrace.synth import replay as rp

PREFILL_BASE_S = 0.002
DECODE_TOKENS_PER_S = 200.0
OFFLINE_OUT = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--offline", type=int, default=2000)
    parser.add_argument("--offline-concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    n = int(args.rate * args.duration)
    arrivals = np.cumsum(rng.exponential(1.0 / args.rate, n))
    online = pl.DataFrame({"arrival_s": arrivals - arrivals[0],
                           "input_tokens": rng.integers(8, 64, n), "output_tokens": [4] * n,
                           "offline": [False] * n})
    offline = pl.DataFrame({"arrival_s": [0.0] * args.offline,
                            "input_tokens": [16] * args.offline,
                            "output_tokens": [OFFLINE_OUT] * args.offline,
                            "offline": [True] * args.offline})
    server = subprocess.Popen(
        [sys.executable, "-m", "servetrace.synth.server", "--port", "0",
         "--prefill-base-s", str(PREFILL_BASE_S), "--prefill-tokens-per-s", "1e9",
         "--decode-tokens-per-s", str(DECODE_TOKENS_PER_S),
         "--max-concurrent-sequences", "100000"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    runs = {}
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        rp.replay(online.head(100), url, api_key_env=None, start_delay_s=0.2)  # warm-up
        for label, frame in (("online alone", online),
                             ("online + backlog", pl.concat([online, offline]))):
            runs[label] = measure(label, lambda frame=frame: rp.replay(
                frame, url, api_key_env=None, start_delay_s=0.2, timeout_s=60,
                offline_concurrency=args.offline_concurrency))
    finally:
        server.terminate()
        server.wait()

    print(f"{n:,} online requests, Poisson at {args.rate:g}/s for {args.duration:g} s; "
          f"backlog of {args.offline:,} offline requests ({OFFLINE_OUT} output tokens), "
          f"{args.offline_concurrency} in flight; server in its own process on loopback")
    print(f"{'run':<18}{'online lag p50 ms':>18}{'p99 ms':>9}{'max ms':>9}{'offline/s':>11}"
          f"{'wall s':>8}{'peak GB':>8}{'failed':>7}")
    lags = {}
    for label, m in runs.items():
        rec = m.result.records
        lag = rec.filter(~pl.col("offline"))["send_lag_s"]
        lags[label] = (lag.quantile(0.5), lag.quantile(0.99), lag.max())
        rate = m.result.summary().offline_rps
        print(f"{label:<18}{lags[label][0] * 1e3:>18.3f}{lags[label][1] * 1e3:>9.3f}"
              f"{lags[label][2] * 1e3:>9.1f}{'' if rate is None else f'{rate:.1f}':>11}"
              f"{m.seconds:>8.2f}{m.peak_gb:>8.2f}{rec['failed'].sum():>7}")
    alone, both = lags["online alone"], lags["online + backlog"]
    latency = PREFILL_BASE_S + (OFFLINE_OUT - 1) / DECODE_TOKENS_PER_S
    rate = runs["online + backlog"].result.summary().offline_rps or 0.0
    print(f"online lag with the backlog / alone: p50 {both[0] / alone[0]:.2f}x, "
          f"p99 {both[1] / alone[1]:.2f}x")
    print(f"backlog throughput {rate:.1f}/s against {args.offline_concurrency / latency:.1f}/s "
          f"closed form (concurrency / idle latency {latency * 1e3:.0f} ms): "
          f"{rate * latency / args.offline_concurrency:.2f}")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
