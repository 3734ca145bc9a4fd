"""Fairness: concentration measures against closed forms, the scheduler simulation against a
plain per-iteration reference and against answers known by construction (timings, the VTC
bound, a flooding tenant), and the real BurstGPT, Azure and ServeGen rows for sanity."""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from servetrace.analysis import fairness as fa
from servetrace.analysis import scheduling
from servetrace.analysis.fairness import Server
from servetrace.loaders import azure_llm_2023, burstgpt, servegen

# --- helpers ----------------------------------------------------------------------------------


def _requests(tenant, arrival, inp, out) -> pl.DataFrame:
    n = len(arrival)
    return pl.DataFrame({
        "request_id": [f"r{i}" for i in range(n)],
        "tenant": list(tenant) if not isinstance(tenant, str) else [tenant] * n,
        "arrival_s": np.asarray(arrival, dtype=np.float64),
        "input_tokens": np.broadcast_to(np.asarray(inp, dtype=np.int64), (n,)).copy(),
        "output_tokens": np.broadcast_to(np.asarray(out, dtype=np.int64), (n,)).copy()})


def _reference(frame: pl.DataFrame, server: Server, scheduler: str, lift: str = "paper",
               w_in: float = 1.0, w_out: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """The same server and schedulers written the obvious way: one request object per row,
    one loop turn per iteration, a dict of counters (VTC, Sheng et al. Algorithm 1: lift on
    arrival to an empty per-tenant queue, smallest counter first, ties to the tenant seen
    first, ``w_in`` per input token at admission, ``w_out`` per decoded token).
    Returns (start, finish) per row."""
    rows = frame.select("tenant", "arrival_s", "input_tokens", "output_tokens").rows()
    order: dict[str, int] = {}
    for r in rows:
        order.setdefault(r[0], len(order))
    queues = {u: deque() for u in order}
    counter = dict.fromkeys(order, 0.0)
    fifo: deque = deque()
    reqs = [{"i": i, "u": u, "a": a, "in": x, "out": y, "gen": 0, "start": None, "fin": None}
            for i, (u, a, x, y) in enumerate(rows)]
    running: list[dict] = []
    mem, last_left, i, n = 0, None, 0, len(reqs)
    cap = server.max_batch_tokens or math.inf
    t = reqs[0]["a"]
    while True:
        while i < n and reqs[i]["a"] <= t:
            r = reqs[i]
            i += 1
            if scheduler == "fcfs":
                fifo.append(r)
                continue
            u = r["u"]
            if not queues[u]:
                waiting = [counter[v] for v in order if queues[v]]
                if waiting:
                    counter[u] = max(counter[u], min(waiting))
                elif lift == "paper" and last_left is not None:
                    counter[u] = max(counter[u], counter[last_left])
            queues[u].append(r)
        new: list[dict] = []
        while len(running) + len(new) < server.max_batch:
            if scheduler == "fcfs":
                if not fifo:
                    break
                r = fifo[0]
                if (running or new) and mem + r["in"] + r["out"] > cap:
                    break
                fifo.popleft()
            else:
                waiting = [v for v in order if queues[v]]
                if not waiting:
                    break
                u = min(waiting, key=lambda v: (counter[v], order[v]))
                r = queues[u][0]
                if (running or new) and mem + r["in"] + r["out"] > cap:
                    break
                queues[u].popleft()
                if not queues[u]:
                    last_left = u
                counter[u] += w_in * r["in"]
            r["start"] = t
            mem += r["in"] + r["out"]
            new.append(r)
        if not running and not new:
            if i >= n:
                break
            t = max(t, reqs[i]["a"])
            continue
        t += sum(r["in"] for r in new) / server.prefill_tokens_per_s
        t += 1.0 / server.decode_tokens_per_s
        running += new
        for r in running:
            r["gen"] += 1
            if r["out"] > 0:
                counter[r["u"]] += w_out
            if r["gen"] >= max(r["out"], 1):
                r["fin"] = t
                mem -= r["in"] + r["out"]
        running = [r for r in running if r["fin"] is None]
    return (np.array([r["start"] for r in reqs]), np.array([r["fin"] for r in reqs]))


def _mixed(seed: int, n: int = 300, tenants: int = 5) -> pl.DataFrame:
    """Skewed tenants, uniform arrivals plus a burst of 60 at t = 5 s, zero-length outputs."""
    rng = np.random.default_rng(seed)
    p = np.arange(1, tenants + 1, dtype=float)
    ten = rng.choice(tenants, n, p=p / p.sum())
    arrival = np.sort(np.concatenate([rng.uniform(0, 20, n - 60), np.full(60, 5.0)]))
    return _requests([f"t{x}" for x in ten], arrival, rng.integers(0, 300, n),
                     rng.integers(0, 60, n))


@pytest.fixture(scope="module")
def bgpt(shared: Path) -> pl.DataFrame:
    path = shared / "burstgpt_sample" / "sample.jsonl"
    return burstgpt.load([path], "burstgpt/sample").tables["requests"]


# --- concentration: closed forms --------------------------------------------------------------


def test_gini_jain_hhi_exact_values():
    n = 7
    assert fa.gini(np.full(n, 3.0)) == pytest.approx(0.0, abs=1e-12)
    assert fa.jain(np.full(n, 3.0)) == pytest.approx(1.0)
    assert fa.hhi(np.full(n, 3.0)) == pytest.approx(1 / n)
    one = np.zeros(n)
    one[2] = 5.0
    assert fa.gini(one) == pytest.approx((n - 1) / n)
    assert fa.jain(one) == pytest.approx(1 / n)
    assert fa.hhi(one) == pytest.approx(1.0)
    # 1..m: mean absolute difference (m² − 1)/(3m) over twice the mean (m + 1)/2
    m = 100
    assert fa.gini(np.arange(1, m + 1)) == pytest.approx((m - 1) / (3 * m))
    # the sorted formula against the defining double sum
    x = np.random.default_rng(3).lognormal(0, 1.5, 300)
    direct = np.abs(x[:, None] - x[None, :]).sum() / (2 * x.size**2 * x.mean())
    assert fa.gini(x) == pytest.approx(direct, rel=1e-12)
    assert fa.gini(pl.Series(x)) == fa.gini(list(x))
    assert math.isnan(fa.gini([0.0, 0.0])) and math.isnan(fa.jain([0, 0]))


def test_gini_and_jain_of_known_distributions():
    """Exponential: Gini 1/2, CV 1 so Jain 1/(1 + CV²) = 1/2; uniform(0, 1): Gini 1/3,
    CV² = 1/3 so Jain 3/4. With 400,000 draws the standard errors are below 0.002."""
    rng = np.random.default_rng(11)
    e, u = rng.exponential(1.0, 400_000), rng.uniform(0.0, 1.0, 400_000)
    assert fa.gini(e) == pytest.approx(0.5, abs=0.006)
    assert fa.jain(e) == pytest.approx(0.5, abs=0.006)
    assert fa.gini(u) == pytest.approx(1 / 3, abs=0.006)
    assert fa.jain(u) == pytest.approx(0.75, abs=0.006)


def test_equal_tenants_give_jain_one():
    t = [f"t{i % 8}" for i in range(80)]
    c = fa.concentration(_requests(t, np.arange(80.0), 100, 50))
    assert c["measure"].to_list() == ["requests", "service"]
    for row in c.iter_rows(named=True):
        assert row["tenants"] == 8
        assert row["jain"] == pytest.approx(1.0)
        assert row["gini"] == pytest.approx(0.0, abs=1e-12)
        assert row["hhi"] == pytest.approx(1 / 8)
        assert row["top1pct_share"] == pytest.approx(1 / 8)  # ceil(1 % of 8) = 1 tenant
        assert row["top10_share"] == pytest.approx(1.0)  # fewer than 10 tenants


def test_concentration_of_ranked_tenants():
    """Tenant k (k = 1..100) sends k requests of 10 input and 5 output tokens."""
    k = np.repeat(np.arange(1, 101), np.arange(1, 101))
    req = _requests([f"u{x:03d}" for x in k], np.arange(k.size, dtype=float), 10, 5)
    ts = fa.tenant_service(req)
    assert ts.columns == ["tenant", "requests", "input_tokens", "output_tokens", "service",
                          "share"]
    assert ts["tenant"][0] == "u100" and ts["requests"][0] == 100
    assert ts["service"][0] == 100 * (10 + 2 * 5)
    assert ts["share"].sum() == pytest.approx(1.0)
    c = fa.concentration(req).row(1, named=True)  # service ∝ requests here
    assert c["top10_share"] == pytest.approx(sum(range(91, 101)) / 5050)
    assert c["top1pct_share"] == pytest.approx(100 / 5050)
    assert c["gini"] == pytest.approx(99 / 300)
    assert c["jain"] == pytest.approx(5050**2 / (100 * sum(x * x for x in range(1, 101))))


def test_jain_is_one_over_n_hhi_on_servegen_clients(shared: Path):
    """ServeGen m-small clients' request volumes (Σ rate × window): J = 1/(n · HHI) exactly,
    and the measures stay within their ranges."""
    folder = shared / "servegen" / "language" / "m-small"
    cw = servegen.load(sorted(folder.glob("chunk-*-trace.csv")), "sg").tables["client_windows"]
    vol = (cw.group_by("client").agg((pl.col("rate") * pl.col("window_s")).sum().alias("n"))
           ["n"].to_numpy())
    n = vol.size
    assert n == 38
    assert fa.jain(vol) == pytest.approx(1 / (n * fa.hhi(vol)), rel=1e-12)
    assert 1 / n <= fa.jain(vol) <= 1 and 1 / n <= fa.hhi(vol) <= 1
    assert 0 < fa.gini(vol) < (n - 1) / n


def test_burstgpt_sample_tenant_service(bgpt: pl.DataFrame):
    ts = fa.tenant_service(bgpt)
    assert ts["requests"].sum() == bgpt.height == 1000
    assert ts.height == bgpt["tenant"].n_unique()
    assert ts["service"].sum() == pytest.approx(
        bgpt["input_tokens"].sum() + 2 * bgpt["output_tokens"].sum())
    assert ts["service"].is_sorted(descending=True)
    s = fa.summary(bgpt).row(0, named=True)
    c = fa.concentration(bgpt).row(1, named=True)
    assert s["tenants"] == ts.height and s["gini_service"] == pytest.approx(c["gini"])
    assert s["top_tenant"] == ts["tenant"][0]
    assert s["top_tenant_share"] == pytest.approx(ts["share"][0])
    assert s["overusing_tenants"] == fa.overuse(bgpt)["tenant"].n_unique()


def test_overuse_in_windows():
    """Window [0, 60): a sends 10 requests, b and c one each: fair share 12/3 = 4 requests,
    a's ratio 2.5 > 2. Window [60, 120): three tenants, one request each: nobody. Window
    [120, 180): a alone with 50 requests: a lone tenant has ratio 1."""
    t = ["a"] * 10 + ["b", "c"] + ["a", "b", "c"] + ["a"] * 50
    arrival = [*np.linspace(0, 50, 10), 10, 20, 61, 62, 63, *np.linspace(121, 170, 50)]
    over = fa.overuse(_requests(t, arrival, 7, 3), factor=2.0, measure="requests")
    assert over.select("window_start_s", "tenant", "requests", "tenants").rows() == [
        (0.0, "a", 10, 3)]
    assert over["fair_share"][0] == pytest.approx(4.0) and over["ratio"][0] == pytest.approx(2.5)
    by_service = fa.overuse(_requests(t, arrival, 7, 3), factor=2.0)
    assert by_service["fair_share"][0] == pytest.approx(12 * 13 / 3)
    assert fa.overuse(_requests(t, arrival, 7, 3), factor=2.6, measure="requests").height == 0


def test_errors_name_the_fault():
    req = _requests("a", [0.0], 1, 1)
    with pytest.raises(ValueError, match="missing column 'tenant'"):
        fa.tenant_service(req.drop("tenant"))
    with pytest.raises(ValueError, match="by:"):
        fa.concentration(req, by=None)
    with pytest.raises(ValueError, match="no rows"):
        fa.tenant_service(req.clear())
    with pytest.raises(ValueError, match="gini: values must be >= 0"):
        fa.gini([1.0, -1.0])
    with pytest.raises(ValueError, match="jain: empty"):
        fa.jain([])
    with pytest.raises(ValueError, match=r"Server\.max_batch"):
        Server(100.0, 10.0, 0)
    with pytest.raises(ValueError, match=r"Server\.decode_tokens_per_s"):
        Server(100.0, -1.0, 4)
    with pytest.raises(ValueError, match="scheduler"):
        fa.simulate(req, Server(100.0, 10.0, 4), "lifo")
    with pytest.raises(ValueError, match="weights"):
        fa.simulate(req, Server(100.0, 10.0, 4), "vtc", weights={"a": 2.0})
    with pytest.raises(ValueError, match="column 'arrival_s' has nulls"):
        fa.simulate(req.with_columns(pl.lit(None, pl.Float64).alias("arrival_s")),
                    Server(100.0, 10.0, 4))


# --- simulation: known by construction --------------------------------------------------------


def test_single_request_timing_and_service():
    """500 input tokens at 1,000 tokens/s, then 10 tokens at 50/s per sequence: the first
    token after 0.5 + 0.02 s, the last after 0.5 + 10 × 0.02 s. Service 500 + 2 × 10, of which
    500 + 2 × 5 after 5 decode iterations (0.6 s)."""
    res = fa.simulate(_requests("a", [1.0], 500, 10), Server(1000.0, 50.0, 4),
                      service_interval_s=0.6)
    r = res.requests.row(0, named=True)
    assert (r["start_s"], r["queue_s"]) == (1.0, 0.0)
    assert r["ttft_s"] == pytest.approx(0.52)
    assert r["finish_s"] == pytest.approx(1.7) and r["latency_s"] == pytest.approx(0.7)
    sv = res.service.filter(pl.col("tenant") == "a")
    at = sv.filter((pl.col("time_s") - 1.6).abs() < 1e-9)
    assert at["service"].item() == pytest.approx(510.0)
    assert sv["service"][-1] == 520.0 and sv["time_s"][-1] == pytest.approx(1.7)


@pytest.mark.parametrize("scheduler", ["fcfs", "vtc", "fairserve"])
def test_saturated_server_makespan(scheduler):
    """12 identical requests at t = 0, 4 sequences per batch: three waves, each 4 × 100 input
    tokens at 2,000 tokens/s plus 10 decode iterations of 0.05 s (FairServe's throttle set
    out of reach: its weighted counter alone)."""
    extra = {"throttle_factor": 100.0} if scheduler == "fairserve" else {}
    res = fa.simulate(_requests([f"t{i % 3}" for i in range(12)], np.zeros(12), 100, 10),
                      Server(2000.0, 20.0, 4), scheduler, **extra)
    finish = np.sort(res.requests["finish_s"].to_numpy())
    wave = 400 / 2000 + 10 * 0.05
    np.testing.assert_allclose(finish, np.repeat([wave, 2 * wave, 3 * wave], 4))
    assert res.requests["ttft_s"].min() == pytest.approx(0.2 + 0.05)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_simulation_matches_reference(seed):
    """Event-driven, closed-form counters and the naive per-iteration loop agree to the float
    rounding of the clock, for FCFS and both VTC lift variants, with and without a KV
    token limit (head-of-line blocking)."""
    frame = _mixed(seed)
    for tokens in (None, 1500):
        server = Server(4000.0, 40.0, 6, tokens)
        for scheduler, lift in (("fcfs", "paper"), ("vtc", "paper"), ("vtc", "artifact")):
            start, finish = _reference(frame, server, scheduler, lift)
            got = fa.simulate(frame, server, scheduler, lift=lift).requests
            np.testing.assert_allclose(got["start_s"].to_numpy(), start, atol=1e-9)
            np.testing.assert_allclose(got["finish_s"].to_numpy(), finish, atol=1e-9)


def test_lift_variants_differ_and_batched_arrivals_equal_one_by_one(monkeypatch):
    frame = _mixed(4, n=500, tenants=9)
    server = Server(4000.0, 40.0, 6, 1500)
    paper = fa.simulate(frame, server, "vtc", lift="paper")
    assert not paper.requests.equals(fa.simulate(frame, server, "vtc", lift="artifact").requests)
    for scheduler in ("vtc", "fairserve"):
        monkeypatch.setattr(scheduling, "_FEW", 0)
        vec = fa.simulate(frame, server, scheduler, service_interval_s=1.0)
        monkeypatch.setattr(scheduling, "_FEW", 10**9)
        one = fa.simulate(frame, server, scheduler, service_interval_s=1.0)
        assert vec.requests.equals(one.requests) and vec.service.equals(one.service)


def _flood() -> pl.DataFrame:
    """A: 400 requests at t = 0; B: one every 2 s from t = 0.001 for 200 s; all 100 in, 100 out."""
    b = np.arange(0.0, 200.0, 2.0) + 0.001
    return pl.concat([_requests("A", np.zeros(400), 100, 100), _requests("B", b, 100, 100)])


FLOOD_SERVER = Server(10_000.0, 50.0, 4, 1000)


def test_flooding_tenant_starves_the_other_under_fcfs_not_vtc():
    """FCFS serves A's 400 requests first: 100 waves of (0.04 s prefill + 2 s decode) = 204 s,
    so B's requests, all sent before then, wait for the end of the flood. VTC lifts B's counter
    to A's on arrival; A's grows with decoding, so B takes the next free slot: at most two
    request service times (≤ 2.1 s each) of waiting."""
    fl = _flood()
    fcfs = fa.tenant_latency(fa.simulate(fl, FLOOD_SERVER, "fcfs")).row(1, named=True)
    vtc_res = fa.simulate(fl, FLOOD_SERVER, "vtc")
    vtc = fa.tenant_latency(vtc_res).row(1, named=True)
    assert fcfs["tenant"] == vtc["tenant"] == "B"
    first_b = fa.simulate(fl, FLOOD_SERVER, "fcfs").requests.filter(pl.col("tenant") == "B")
    assert first_b["start_s"].min() == pytest.approx(100 * (0.04 + 2.0), abs=0.05)
    assert fcfs["latency_mean_s"] > 100.0
    assert vtc["latency_mean_s"] < 5.0 and vtc["ttft_p99_s"] < 4.3
    b = vtc_res.requests.filter(pl.col("tenant") == "B")
    assert b["queue_s"].max() < 4.2
    # the artifact's service difference: under FCFS B asks for 300 tokens every 2 s (150/s)
    # and gets nothing during the flood, so most ticks give min(A's rate, 150) = 150; under
    # VTC B is served as it asks
    d_fcfs = fa.service_difference(fa.simulate(fl, FLOOD_SERVER, "fcfs")).row(0, named=True)
    d_vtc = fa.service_difference(vtc_res).row(0, named=True)
    assert d_fcfs["mean"] > 100.0 > 10.0 > d_vtc["mean"]


def _backlogged_gap(res: fa.SimResult) -> float:
    """max over tenant pairs and sample times s < t of |W_f(s, t) − W_g(s, t)|, with every
    tenant backlogged (a request waiting) throughout [0, t]."""
    rq = res.requests
    until = rq.group_by("tenant").agg(pl.col("start_s").max())["start_s"].min()
    sv = (res.service.pivot(on="tenant", index="time_s", values="service").sort("time_s")
          .with_columns(pl.exclude("time_s").forward_fill().fill_null(0.0))
          .filter(pl.col("time_s") < until))
    w = sv.drop("time_s").to_numpy()
    w = np.vstack([np.zeros(w.shape[1]), w])  # W = 0 at the start, where all were queued
    gap = 0.0
    for f in range(w.shape[1]):
        for g in range(f + 1, w.shape[1]):
            d = w[:, f] - w[:, g]
            gap = max(gap, d.max() - d.min())
    return gap


@pytest.mark.parametrize("seed", [0, 1])
def test_vtc_keeps_backlogged_service_difference_within_its_bound(seed):
    """Three tenants queue all their requests at once (short, medium and long ones); while all
    are backlogged, VTC keeps every pair's service difference over any interval within
    2·max(w_in·L_input, w_out·M) (Sheng et al., OSDI 2024, §4), FCFS does not."""
    rng = np.random.default_rng(seed)
    parts = []
    for k, (name, n, lo, hi) in enumerate((("s", 400, 10, 60), ("m", 150, 50, 200),
                                           ("l", 60, 200, 500))):
        parts.append(_requests(name, np.full(n, 0.001 * k), rng.integers(lo, hi, n),
                               rng.integers(lo // 2, hi // 2, n)))
    frame = pl.concat(parts)
    server = Server(5000.0, 50.0, 8, 2000)
    bound = fa.vtc_bound(frame, server)
    assert bound == 2 * max(frame["input_tokens"].max(), 2 * 2000)
    vtc = _backlogged_gap(fa.simulate(frame, server, "vtc", service_interval_s=0.02))
    fcfs = _backlogged_gap(fa.simulate(frame, server, "fcfs", service_interval_s=0.02))
    assert vtc <= bound < fcfs


def test_equal_tenants_get_equal_service_under_vtc():
    """Four tenants with identical backlogs and two batch slots each: VTC admits them in turn,
    so while all wait their services differ by at most one request's cost D = 80 + 2·40, and
    (Popoviciu: variance ≤ (D/2)²) Jain's index is at least 1 / (1 + (D / 2 / mean)²)."""
    frame = pl.concat([_requests(f"t{k}", np.zeros(100), 80, 40) for k in range(4)])
    res = fa.simulate(frame, Server(8000.0, 40.0, 8), "vtc", service_interval_s=0.5)
    until = res.requests.group_by("tenant").agg(pl.col("start_s").max())["start_s"].min()
    at = res.service.filter(pl.col("time_s") < until)["time_s"].max()
    sv = res.service.filter(pl.col("time_s") <= at).group_by("tenant").agg(
        pl.col("service").last())["service"].to_numpy()
    assert sv.size == 4 and sv.max() - sv.min() <= 80 + 2 * 40
    assert 1.0 >= fa.jain(sv) >= 1 / (1 + (80 / sv.mean()) ** 2)
    assert sv.mean() > 20 * 160  # a long stretch of backlog, not a trivial sample


def test_fairserve_throttles_only_the_flooding_tenant():
    """A sends 10 req/s for 60 s, B one every 4 s; the server serves about 3 req/s, so it is
    overloaded. A exceeds its fair share (half the requests of the last minute), B never."""
    a = np.arange(0, 60, 0.1)
    b = np.arange(0, 60, 4.0) + 0.05
    frame = pl.concat([_requests("A", a, 50, 50), _requests("B", b, 50, 50)]).sort("arrival_s")
    server = Server(10_000.0, 30.0, 4)
    res = fa.simulate(frame, server, "fairserve")
    th = res.throttles
    assert th.height > 0 and th["tenant"].unique().to_list() == ["A"]
    assert th["requests"].sum() == res.requests["throttled"].sum()
    assert (th["end_s"] >= th["start_s"]).all()
    thr = res.requests.filter(pl.col("throttled"))
    assert thr["start_s"].null_count() == thr.height  # rejected: never served
    lat = fa.tenant_latency(res).row(1, named=True)
    fcfs = fa.tenant_latency(fa.simulate(frame, server, "fcfs")).row(1, named=True)
    assert lat["tenant"] == "B" and lat["throttled"] == 0 and lat["n"] == b.size
    assert lat["latency_mean_s"] < fcfs["latency_mean_s"] / 5
    # weighted 100:1, A's share (100/101 of the requests) is above what it sends (40/41),
    # while B, sending 1/41 of them, now exceeds its 1/101: the throttle turns to B
    heavy = fa.simulate(frame, server, "fairserve", weights={"A": 100.0})
    assert heavy.throttles["tenant"].unique().to_list() == ["B"]
    assert heavy.requests.filter(pl.col("tenant") == "A")["throttled"].sum() == 0


def test_over_share_matches_brute_force():
    """The vectorized trailing-window fair-share test, with tied arrival times and weights,
    against its definition request by request."""
    rng = np.random.default_rng(5)
    for _ in range(5):
        n = 250
        ten = rng.integers(0, 6, n)
        t = np.sort(rng.integers(0, 150, n)).astype(float)
        w = rng.uniform(0.5, 3.0, 6)
        got = scheduling._over_share(t, ten, w, 10.0, 1.2)
        want = []
        for i in range(n):
            js = [j for j in range(i + 1) if t[j] > t[i] - 10.0]
            own = sum(ten[j] == ten[i] for j in js)
            active = sum(w[v] for v in {ten[j] for j in js})
            want.append(own > 1.2 * len(js) * w[ten[i]] / active)
        assert got.tolist() == want


def _artifact_difference(res: fa.SimResult, ticks: int = 20, window: float = 60.0) -> list:
    """plot_6.2_work_diff.py's per-tick service difference, transcribed loop for loop."""
    rows = res.requests.to_dicts()
    users = sorted({r["tenant"] for r in rows})
    t0 = min(r["arrival_s"] for r in rows)
    big_t = max(r["arrival_s"] for r in rows) - t0
    xs = [t0 + big_t / ticks * i for i in range(1, ticks)]
    out = []
    for x in xs:
        lo, hi = x - window / 2, x + window / 2
        got, asked = [], []
        for u in users:
            s = d = 0.0
            for r in rows:
                if r["tenant"] != u:
                    continue
                cost = r["input_tokens"] + 2 * r["output_tokens"]
                if lo <= r["arrival_s"] <= hi:
                    d += cost
                if r["finish_s"] is None:
                    continue
                a, e = r["arrival_s"] + r["ttft_s"], r["finish_s"]
                s += cost * max(min(hi, e) - max(lo, a), 0) / (e - a)
            got.append(s / window)
            asked.append(d / window)
        top = max(got)
        out.append(max(min(top - g, q - g) for g, q in zip(got, asked, strict=True)))
    return out


def test_service_difference_follows_the_artifact():
    res = fa.simulate(_flood(), FLOOD_SERVER, "fcfs")
    want = np.array(_artifact_difference(res))
    over_time = fa.service_difference_over_time(res)
    assert over_time.height == 19
    np.testing.assert_allclose(over_time["difference"].to_numpy(), want, rtol=1e-9, atol=1e-9)
    d = fa.service_difference(res).row(0, named=True)
    assert d["max"] == pytest.approx(want.max())
    assert d["mean"] == pytest.approx(want.mean())
    assert d["variance"] == pytest.approx(want.var())


# --- real rows --------------------------------------------------------------------------------


def test_burstgpt_sample_through_all_schedulers(bgpt: pl.DataFrame):
    """299 sessions of the real sample (time compressed 100× so that requests overlap)."""
    frame = bgpt.with_columns(pl.col("arrival_s") / 100)
    server = Server(4000.0, 30.0, 8, 16_000)
    for scheduler in fa.SCHEDULERS:
        res = fa.simulate(frame, server, scheduler)
        rq = res.requests
        assert rq.height == 1000 and rq["tenant"].n_unique() == 299
        ok = rq.filter(~pl.col("throttled"))
        assert ok["finish_s"].null_count() == 0
        assert (ok["start_s"] >= ok["arrival_s"]).all()
        first = ok["arrival_s"] + ok["ttft_s"]
        assert ((first >= ok["start_s"]) & (first <= ok["finish_s"])).fill_null(True).all()
        # service is conserved: what the samples end with is what the served requests cost
        last = res.service.group_by("tenant").agg(pl.col("service").max())
        cost = ok.group_by("tenant").agg(
            (pl.col("input_tokens") + 2 * pl.col("output_tokens")).sum().alias("c"))
        both = cost.join(last, on="tenant", how="left")
        np.testing.assert_allclose(both["service"].to_numpy(), both["c"].to_numpy())
        lat = fa.tenant_latency(res)
        assert lat.height == 299 and lat["n"].sum() == ok.height
        assert res.requests.equals(fa.simulate(frame, server, scheduler).requests)


def test_single_tenant_vtc_is_fcfs_on_azure(shared: Path):
    """With one tenant, VTC's smallest counter is always that tenant's oldest request: the
    same schedule as FCFS, on 3,000 real Azure conversation requests."""
    path = shared / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
    req = azure_llm_2023.load([path], "azure_llm_2023/conv").tables["requests"].head(3000)
    req = req.with_columns(pl.lit("all").alias("tenant"))
    server = Server(8000.0, 25.0, 16, 60_000)
    fcfs = fa.simulate(req, server, "fcfs").requests
    vtc = fa.simulate(req, server, "vtc").requests
    assert fcfs["start_s"].equals(vtc["start_s"]) and fcfs["finish_s"].equals(vtc["finish_s"])
    assert fcfs["latency_s"].min() > 0
    assert fa.concentration(req).row(0, named=True)["jain"] == 1.0
