"""Workload mixes (servetrace.synth.mix): shares, popularity laws and envelopes checked
against what was asked, on Poisson processes of known rate (a count over an interval of
expected mass μ has standard deviation √μ), within 4 standard deviations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats
from typer.testing import CliRunner

from servetrace.cli import app
from servetrace.synth import mix_envelopes as me
from servetrace.synth import mix_popularity as mp
from servetrace.synth.mix import Mix, component
from servetrace.synth.mix_sample import sample
from servetrace.synth.model import WorkloadModel
from servetrace.synth.parameters import (
    Arrivals,
    Group,
    Labels,
    Lengths,
    Renewal,
    Sessions,
    Table,
)

runner = CliRunner()
D = 3600.0


def poisson(rate: float, inputs=(100,), outputs=(10,), name: str = "p") -> WorkloadModel:
    """A model whose sample is a Poisson process of ``rate`` per second (flat modulation,
    exponential gaps) with lengths drawn from ``inputs``/``outputs``."""
    a = Arrivals(rate, 60.0, Table((1.0, 1.0)), 0.5, D, Renewal("exponential"))
    lengths = Lengths(Table.empirical(np.array(inputs, float), integer=True),
                      Table.empirical(np.array(outputs, float), integer=True), 0.0, 0.0)
    return WorkloadModel(name, None, D, int(rate * D),
                         (Group(None, 1.0, a, lengths, Labels((), ((),), (1.0,))),))


def zipf_law(k: int, s: float) -> np.ndarray:
    """P(rank j) ∝ j^(−s), j = 1..k: the ground truth, written out here."""
    w = 1.0 / np.arange(1, k + 1) ** s
    return w / w.sum()


def within(count: float, mean: float, sd: float | None = None, k: float = 4.0) -> bool:
    return abs(count - mean) <= k * (math.sqrt(mean) if sd is None else sd)


def session_trace(rate: float = 0.5, span: float = D, seed: int = 3) -> pl.DataFrame:
    """Sessions starting as a Poisson process, three turns 5 s apart, each turn's prefix
    blocks extending the previous one's (a chain), the parent the previous turn."""
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.uniform(0.0, span, rng.poisson(rate * span)))
    n = len(starts)
    t = (starts[:, None] + np.array([0.0, 5.0, 10.0])[None, :]).ravel()
    s = np.repeat(np.arange(n), 3)
    turn = np.tile(np.arange(3), n)
    rid = np.arange(3 * n)
    frame = pl.DataFrame({
        "trace": "t", "request_id": rid.astype(str), "arrival_s": t,
        "session": [f"c{x}" for x in s], "input_tokens": 100 * (turn + 1),
        "output_tokens": np.full(3 * n, 20),
        "parent_request_id": [str(r - 1) if k else None for r, k in zip(rid, turn,
                                                                         strict=True)],
        "hash_ids": [list(range(4 * x, 4 * x + k + 1)) for x, k in zip(s, turn, strict=True)],
    })
    return frame.sort("arrival_s", maintain_order=True)


def test_request_shares_are_met_and_batches_count_exactly():
    m = Mix((component("a", "a.json", share=0.5, priority=0, slo_ttft_s=1.0),
             component("b", "b.json", share=0.3, priority=1, slo_tpot_s=0.05),
             component("c", "c.json", share=0.1, request_class="bulk"),
             component("bat", "a.json", kind="batch", share=0.1, at_s=60.0)))
    src = {"a": poisson(2.0), "b": poisson(5.0), "c": poisson(0.5), "bat": poisson(2.0)}
    r = sample(m, D, 0, sources=src)
    # a keeps its rate (7,200 expected): the total is 14,400, b 4,320, c and the batch 1,440
    assert r.factors[0] == 1.0 and r.expected == pytest.approx((7200, 4320, 1440, 1440))
    assert r.factors[1] == pytest.approx(4320 / 18000)
    df = r.requests
    counts = dict(df.group_by("request_class", "priority").len().select(
        pl.concat_str("request_class", pl.col("priority").cast(pl.String), separator="/",
                      ignore_nulls=True), "len").iter_rows())
    assert within(counts["online/0"], 7200) and within(counts["online/1"], 4320)
    assert within(counts["bulk"], 1440)
    assert counts["offline"] == 1440 == r.counts[3]  # a batch has no sampling error
    bat = df.filter(pl.col("offline"))
    assert (bat["arrival_s"] == 60.0).all() and (bat["request_class"] == "offline").all()
    online = df.filter(~pl.col("offline"))
    assert (online.filter(pl.col("priority") == 0)["slo_ttft_s"] == 1.0).all()
    assert online.filter(pl.col("priority") == 1)["slo_tpot_s"].unique().to_list() == [0.05]
    assert df["request_id"].to_list() == [str(i) for i in range(df.height)]
    assert df["arrival_s"].is_sorted() and (df["trace"] == "synth/mix/mix").all()
    # rate_scale multiplies every component, batches included
    doubled = sample(m, D, 0, 2.0, sources=src)
    assert doubled.expected == pytest.approx((14400, 8640, 2880, 2880))
    assert within(doubled.counts[0], 14400) and doubled.counts[3] == 2880
    # a total rate instead of the first component's own
    r = sample(Mix(m.components, rate=3.0), D, 0, sources=src)
    assert sum(r.expected) == pytest.approx(3.0 * D)
    assert within(r.counts[1], 0.3 * 3.0 * D) and r.counts[3] == round(0.1 * 3.0 * D)


def test_token_shares_are_met():
    a = poisson(2.0, inputs=(100, 300), outputs=(50,))    # 250 tokens a request
    b = poisson(5.0, inputs=(1000,), outputs=(10, 30))    # 1,020
    m = Mix((component("a", "a.json", share=0.6, priority=0),
             component("b", "b.json", share=0.3, priority=1),
             component("bat", "b.json", kind="batch", share=0.1)), by="tokens")
    r = sample(m, D, 1, sources={"a": a, "b": b, "bat": b})
    total = 2.0 * D * 250 / 0.6
    assert r.expected[1] * 1020 == pytest.approx(0.3 * total)
    assert r.counts[2] == round(0.1 * total / 1020)  # a batch of b's lengths: 1,020 each
    batch = r.requests.filter(pl.col("offline"))
    assert within((batch["input_tokens"] + batch["output_tokens"]).sum(), 0.1 * total,
                  math.sqrt(r.counts[2]) * 10 + 1)  # outputs 10 or 30, stratified inputs
    tok = r.requests.filter(~pl.col("offline")).group_by("priority").agg(
        (pl.col("input_tokens") + pl.col("output_tokens")).sum()).sort("priority")
    got = tok["input_tokens"].to_list()
    # compound Poisson: Var(Σ X) = E[N]·E[X²]
    assert within(got[0], 0.6 * total, math.sqrt(2.0 * D * (150**2 + 350**2) / 2))
    assert within(got[1], 0.3 * total, math.sqrt(r.expected[1] * (1010**2 + 1030**2) / 2))


def test_zipf_exponent_is_recovered_by_maximum_likelihood():
    rng = np.random.default_rng(11)
    k, s, n = 20, 1.1, 20_000
    counts = rng.multinomial(n, zipf_law(k, s))
    se = mp.zipf_standard_error(k, s, n)
    assert 0.005 < se < 0.05
    assert abs(mp.fit_zipf_exponent(counts) - s) < 3 * se
    # from a trace's model column, ranks taken from the counts themselves
    names = np.repeat([f"m{j:02d}" for j in rng.permutation(k)], counts)
    pop = mp.from_trace(pl.Series(rng.permutation(names)), source="t")
    assert pop.law == "zipf-fit" and abs(pop.exponent - s) < 4 * se
    assert pop.weights == pytest.approx(tuple(zipf_law(k, pop.exponent)))
    assert mp.fit_zipf_exponent(np.full(10, 500)) == 0.0  # uniform: s = 0
    emp = mp.from_trace(pl.Series(["x"] * 6 + ["y"] * 3 + ["z"] + [None]), "empirical")
    assert emp.names == ("x", "y", "z") and emp.weights == pytest.approx((0.6, 0.3, 0.1))
    with pytest.raises(ValueError, match="no names"):
        mp.from_trace(pl.Series([None, None], dtype=pl.String))


def test_adapter_names_follow_the_asked_zipf_law():
    law = mp.zipf(20, 1.1, prefix="lora", per="request")
    assert law.names[0] == "lora-01" and law.names[-1] == "lora-20"
    m = Mix((component("a", "a.json", models=law),))
    df = sample(m, D, 2, sources={"a": poisson(4.0)}).requests
    counts = df["model"].value_counts().to_dict(as_series=False)
    observed = np.array([dict(zip(counts["model"], counts["count"], strict=True)).get(x, 0)
                         for x in law.names])
    assert law.weights == pytest.approx(tuple(zipf_law(20, 1.1)))
    expected = observed.sum() * zipf_law(20, 1.1)
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    assert abs(mp.fit_zipf_exponent(observed) - 1.1) < 4 * mp.zipf_standard_error(
        20, 1.1, int(observed.sum()))
    # a law twice as steep is rejected by the same test
    steep = observed.sum() * zipf_law(20, 2.2)
    assert stats.chisquare(observed, steep).pvalue < 1e-6


def test_a_session_keeps_one_adapter(tmp_path):
    trace = session_trace()
    m = Mix((component("chat", "t.parquet", models=mp.zipf(5, 1.0)),))
    df = sample(m, D, 0, sources={"chat": trace}).requests
    per = df.group_by("session").agg(pl.col("model").n_unique())
    assert per["model"].max() == 1 and df["model"].n_unique() == 5


def test_spike_multiplies_the_rate_inside_and_leaves_the_process_outside():
    lam, at, dur, h = 4.0, 600.0, 300.0, 3.0
    spike = me.Envelope("spike", "burst", at_s=at, duration_s=dur, height=h)
    plain = Mix((component("a", "a.json"),))
    spiked = Mix((component("a", "a.json"),), (spike,))
    src = {"a": poisson(lam)}
    base = sample(plain, D, 5, sources=src).requests["arrival_s"].to_numpy()
    t = sample(spiked, D, 5, sources=src).requests["arrival_s"].to_numpy()
    inside = (t >= at) & (t < at + dur)
    assert within(inside.sum(), lam * h * dur)
    assert within((~inside).sum(), lam * (D - dur))
    # where m = 1 the process is kept as it was: the same points, none added or dropped
    b_out = base[(base < at) | (base >= at + dur)]
    assert np.array_equal(t[~inside], b_out)
    assert sample(spiked, D, 5, sources=src).expected[0] == pytest.approx(lam * (D + 2 * dur))


def test_step_down_thins_and_step_up_adds():
    lam = 5.0
    for h in (0.5, 2.0):
        m = Mix((component("a", "a.json"),), (me.Envelope("step", "s", at_s=1800.0, height=h),))
        t = sample(m, D, 7, sources={"a": poisson(lam)}).requests["arrival_s"].to_numpy()
        assert within((t < 1800).sum(), lam * 1800)
        assert within((t >= 1800).sum(), lam * h * 1800)


def test_ramp_slope_matches_the_asked_one():
    lam, at, dur, lo, hi = 3.0, 600.0, 2400.0, 1.0, 4.0
    ramp = me.Envelope("ramp", "up", at_s=at, duration_s=dur, height=hi, start=lo)
    m = Mix((component("a", "a.json"),), (ramp,))
    t = sample(m, D, 9, sources={"a": poisson(lam)}).requests["arrival_s"].to_numpy()
    w = 60.0
    edges = np.arange(at, at + dur + w / 2, w)
    counts = np.histogram(t, edges)[0]
    mid = (edges[:-1] + edges[1:]) / 2
    slope = np.polyfit(mid, counts, 1)[0]
    want = lam * w * (hi - lo) / dur  # requests per window gained per second
    mu = lam * w * ramp.multiplier(mid)
    x = mid - mid.mean()
    se = math.sqrt((x**2 * mu).sum()) / (x**2).sum()  # OLS slope under Poisson counts
    assert abs(slope - want) < 4 * se
    assert within((t < at).sum(), lam * lo * at) and within((t >= at + dur).sum(),
                                                             lam * hi * (D - at - dur))


def test_profile_from_another_trace_shapes_the_rate():
    rng = np.random.default_rng(4)
    period, peak = 1800.0, 8.0
    cand = np.sort(rng.uniform(0, 2 * D, rng.poisson(peak * 2 * D)))
    true = 0.5 * (1 + 0.8 * np.sin(2 * np.pi * cand / period))  # λ(t)/peak
    other = cand[rng.random(len(cand)) < true] + 1000.0  # its own zero elsewhere
    prof = me.profile_from_times(other, 60.0, label="diurnal", source="other")
    mids = (np.arange(len(prof.values)) + 0.5) * 60.0
    assert np.mean(prof.values) == pytest.approx(1.0)
    assert np.corrcoef(prof.values, 1 + 0.8 * np.sin(2 * np.pi * mids / period))[0, 1] > 0.9
    lam = 5.0
    m = Mix((component("a", "a.json"),), (prof,))
    r = sample(m, D, 3, sources={"a": poisson(lam)})
    t = r.requests["arrival_s"].to_numpy()
    counts = np.histogram(t, np.arange(0, D + 1, 60.0))[0]
    assert np.corrcoef(counts, prof.multiplier(np.arange(0, D, 60.0) + 30))[0, 1] > 0.85
    assert within(len(t), lam * me.integral((prof,), D))


def test_envelope_integral_is_exact():
    spike = me.Envelope("spike", at_s=600.0, duration_s=300.0, height=3.0)
    ramp = me.Envelope("ramp", at_s=0.0, duration_s=D, height=2.0)
    # ∫ (1 + t/D) dt over [0, D) plus (3 − 1)∫ over the spike: 5400 + 2·362.5
    assert me.integral((spike, ramp), D) == pytest.approx(6125.0, rel=1e-12)
    assert me.bound((spike, ramp)) == 6.0
    assert me.excess_end((spike,), D) == 900.0 and me.excess_end((spike, ramp), D) == D
    down = me.Envelope("ramp", at_s=100.0, duration_s=200.0, height=0.5, start=2.0)
    assert me.excess_end((down,), D) == 300.0
    with pytest.raises(ValueError, match="duration_s must be positive"):
        me.Envelope("spike", at_s=1.0, height=2.0)
    assert me.parse("spike", "at=600,duration=300,height=3,to=a+b") == {
        "kind": "spike", "at_s": 600.0, "duration_s": 300.0, "height": 3.0,
        "components": ("a", "b"), "label": "spike"}
    with pytest.raises(ValueError, match="missing duration"):
        me.parse("spike", "at=600,height=3")


def test_sessions_stay_whole_through_a_spike_and_replays_superpose_copies():
    trace = session_trace()
    n_sess = trace["session"].n_unique()
    m = Mix((component("chat", "t.parquet"),))
    same = sample(m, D, 0, sources={"chat": trace}).requests
    first = trace["arrival_s"].min()
    kept = trace.filter(pl.col("arrival_s") - first < D)
    assert np.array_equal(same["arrival_s"].to_numpy(), kept["arrival_s"].to_numpy() - first)
    spike = me.Envelope("spike", "burst", at_s=1200.0, duration_s=600.0, height=3.0)
    r = sample(Mix(m.components, (spike,)), D, 1, sources={"chat": trace})
    df = r.requests
    sess = df.group_by("session").agg(pl.col("arrival_s").min().alias("t0"), pl.len())
    whole = sess.filter(pl.col("t0") < D - 10.0)
    assert (whole["len"] == 3).all()  # turns of a kept session are all kept
    starts = sess["t0"].to_numpy()
    rate = n_sess / D
    assert within(((starts >= 1200) & (starts < 1800)).sum(), rate * 3.0 * 600)
    # parents are the previous turn of the same session, renumbered with the rows
    joined = df.join(df.select(pl.col("request_id").alias("parent_request_id"),
                               pl.col("session").alias("ps"),
                               pl.col("arrival_s").alias("pt")), on="parent_request_id")
    assert joined.height == df.filter(pl.col("parent_request_id").is_not_null()).height
    assert (joined["session"] == joined["ps"]).all()
    assert ((joined["arrival_s"] - joined["pt"] - 5.0).abs() < 1e-6).all()
    # 2.5 times the trace's rate: ⌈2.5⌉ shifted copies, each session kept with p = 2.5/3
    fast = sample(Mix(m.components, rate=2.5 * trace.height / D), D, 2,
                  sources={"chat": trace}).requests
    got = fast["session"].n_unique()
    assert within(got, 2.5 * n_sess, math.sqrt(3 * n_sess * (2.5 / 3) * (1 - 2.5 / 3)) + 2)
    # no two copies share a block by accident: each session's ids are its own
    owners = fast.explode("hash_ids").group_by("hash_ids").agg(pl.col("session").n_unique())
    assert owners["session"].max() == 1


def test_batches_from_a_trace_take_its_rows():
    trace = session_trace()
    n = trace.height
    m = Mix((component("a", "a.json"),
             component("few", "t.parquet", kind="batch", count=100),
             component("many", "t.parquet", kind="batch", count=2 * n + 7, at_s=30.0)))
    r = sample(m, D, 0, sources={"a": poisson(1.0), "few": trace, "many": trace})
    assert r.counts[1:] == (100, 2 * n + 7)
    many = r.requests.filter(pl.col("arrival_s") == 30.0)
    assert many["offline"].all() and many["session"].null_count() == many.height
    pairs = trace.group_by("input_tokens").len()
    got = many.group_by("input_tokens").len().join(pairs, on="input_tokens")
    assert ((got["len"] >= 2 * got["len_right"]) & (got["len"] <= 3 * got["len_right"])).all()
    with pytest.raises(ValueError, match="past the sample's end"):
        sample(Mix((component("b", "a.json", kind="batch", count=5, at_s=D),)), D, 0,
               sources={"b": poisson(1.0)})


def test_same_seed_same_mix_and_components_do_not_disturb_each_other():
    src = {"a": poisson(2.0), "b": poisson(5.0, inputs=(50, 70))}
    m1 = Mix((component("a", "a.json", share=0.5, priority=0, models=mp.zipf(8, 1.0)),
              component("b", "b.json", share=0.5, priority=1)),
             (me.Envelope("spike", "s", at_s=100.0, duration_s=60.0, height=2.0),))
    one, two = (sample(m1, 600.0, 4, sources=src).requests for _ in range(2))
    assert one.equals(two)
    assert not one.equals(sample(m1, 600.0, 5, sources=src).requests)
    m2 = Mix((m1.components[0], component("b", "b.json", share=0.5, priority=1)),
             m1.envelopes)
    m3 = Mix((component("a", "a.json", share=0.8, priority=0, models=mp.zipf(8, 1.0)),
              component("b", "b.json", share=0.2, priority=1)), m1.envelopes)
    a1 = one.filter(pl.col("priority") == 0).select("arrival_s", "model", "input_tokens")
    a3 = sample(m3, 600.0, 4, sources=src).requests.filter(pl.col("priority") == 0)
    assert a1.equals(a3.select("arrival_s", "model", "input_tokens"))
    assert sample(m2, 600.0, 4, sources=src).requests.equals(one)


def test_json_round_trip_is_byte_identical(tmp_path):
    prof = me.profile_from_times(np.sort(np.random.default_rng(0).uniform(0, 600, 900)), 60.0,
                                 source="x", components=("a",))
    m = Mix((component("a", "a.json", share=0.6, priority=0, slo_ttft_s=1, slo_tpot_s=0.1,
                       models=mp.zipf(20, 1.1)),
             component("t", "t.parquet", kind="resample", share=0.3, priority=1,
                       models=mp.from_trace(pl.Series(["x", "y", "x"]), "empirical")),
             component("b", "a.json", kind="batch", share=0.1, at_s=10)),
            (me.Envelope("spike", "s", at_s=600, duration_s=300, height=3), prof,
             me.Envelope("ramp", "r", at_s=0, duration_s=60, height=2, start=0.5,
                         components=("t",))), by="tokens", rate=12, name="demo")
    text = m.to_json()
    assert Mix.from_json(text) == m and Mix.from_json(text).to_json() == text
    path = m.save(tmp_path / "m.json")
    assert Mix.load(path).to_json().encode() == path.read_bytes()
    doc = json.loads(text)
    assert doc["type"] == "Mix" and doc["version"] == "1"
    bad = dict(doc, version="9")
    with pytest.raises(ValueError, match="version '9'"):
        Mix.from_json(json.dumps(bad))
    (tmp_path / "x.json").write_text(text.replace('"at_s": 10.0', '"at_z": 10.0'))
    with pytest.raises(ValueError, match=r"x.json: Component: unknown field\(s\) at_z"):
        Mix.load(tmp_path / "x.json")


@pytest.mark.parametrize(("build", "message"), [
    (lambda: Mix((component("a", "a.json", share=0.6), component("b", "b.json", share=0.6))),
     "shares must sum to 1"),
    (lambda: Mix((component("a", "a.json", share=1.0), component("b", "b.json"))),
     "give every component a share or none"),
    (lambda: Mix((component("a", "a.json"),),
                 (me.Envelope("step", "s", at_s=1.0, height=2.0, components=("z",)),)),
     "no component labelled z"),
    (lambda: Mix((component("a", "a.json"), component("a", "b.json"))), "repeated: a"),
    (lambda: component("a", "a.json", kind="batch", count=3, share=0.5), "a share or a count"),
    (lambda: component("a", "a.json", priority=-1), "non-negative integer"),
])
def test_bad_mixes_are_refused_with_a_reason(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVETRACE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


def test_cli_mix_generate_round_trip(env: Path):
    poisson(2.0, inputs=(100, 200), outputs=(30,)).save(env / "chat.json")
    session_trace().write_parquet(env / "t.parquet")
    out = env / "mixes" / "mix.json"
    out.parent.mkdir()
    res = runner.invoke(app, [
        "mix", str(env / "chat.json"), str(env / "t.parquet"), str(env / "chat.json"),
        "--kind", "model,replay,batch", "--label", "chat,agents,backlog",
        "--share", "0.6,0.3,0.1", "--priority", "0,1,-", "--slo-ttft", "1,-,-",
        "--adapters", "20,-,-", "--zipf", "1.1,-,-",
        "--spike", "at=600,duration=300,height=3,to=chat", "--ramp",
        "at=0,duration=3600,height=2,to=agents", "--profile", f"{env / 't.parquet'},window=120",
        "--name", "demo", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "chat: ../chat.json, model, online, share 0.6, priority 0, TTFT SLO 1 s, 20 model" \
        in res.output
    doc = json.loads(out.read_text())
    assert [c["source"] for c in doc["components"]] == ["../chat.json", "../t.parquet",
                                                        "../chat.json"]
    assert [e["kind"] for e in doc["envelopes"]] == ["spike", "ramp", "profile"]
    sample_path = env / "s.parquet"
    res = runner.invoke(app, ["generate", str(out), "--duration", "1800", "--seed", "3",
                              "-o", str(sample_path)])
    assert res.exit_code == 0, res.output
    df = pl.read_parquet(sample_path)
    assert {"request_class", "offline", "priority", "slo_ttft_s", "slo_tpot_s"} <= set(df.columns)
    assert set(df["request_class"]) == {"online", "offline"}
    assert df.filter(pl.col("priority") == 0)["model"].str.starts_with("lora-").all()
    assert df.filter(pl.col("offline")).height == round(
        json.loads(pl.read_parquet_metadata(sample_path)["servetrace:mix"])["components"][2]
        ["factor"])
    meta = json.loads(pl.read_parquet_metadata(sample_path)["servetrace:mix"])
    assert meta["name"] == "demo" and meta["seed"] == 3
    assert [c["requests"] for c in meta["components"]] == [
        df.filter(pl.col("priority") == 0).height, df.filter(pl.col("priority") == 1).height,
        df.filter(pl.col("offline")).height]
    assert (df["trace"] == "synth/mix/demo").all()
    again = env / "s2.parquet"
    assert runner.invoke(app, ["generate", str(out), "--duration", "1800", "--seed", "3",
                               "-o", str(again)]).exit_code == 0
    assert pl.read_parquet(again).equals(df)
    poisson(2.5, inputs=(100, 200), outputs=(30,)).save(env / "chat.json")  # refitted
    res = runner.invoke(app, ["generate", str(out), "--duration", "60", "-o", str(again)])
    assert res.exit_code == 0 and "has changed since the mix was made" in res.output


@pytest.mark.parametrize(("args", "message"), [
    (["mix", "{d}/chat.json", "{d}/chat.json", "--share", "0.8", "0.2", "-o", "{d}/m.json"],
     "--share: 1 value(s) for 3 source(s)"),
    (["mix", "{d}/chat.json", "--spike", "at=5", "-o", "{d}/m.json"],
     "--spike 'at=5': missing duration, height"),
    (["mix", "{d}/chat.json", "--adapters", "20", "-o", "{d}/m.json"], "give --zipf S"),
    (["mix", "{d}/nope.json", "-o", "{d}/m.json"], "nope.json: no such file"),
    (["generate", "{d}/bad.json", "--duration", "10", "-o", "{d}/x.parquet"],
     "bad.json: Component: unknown field(s) colour"),
])
def test_cli_mix_errors_are_one_line(env: Path, args, message):
    poisson(1.0).save(env / "chat.json")
    bad = Mix((component("a", "chat.json"),)).to_json().replace('"label"', '"colour": 1,\n'
                                                                '   "label"', 1)
    (env / "bad.json").write_text(bad)
    res = runner.invoke(app, [a.format(d=env) for a in args])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert message in " ".join(res.output.split()), res.output


def test_resample_fits_the_trace_and_samples_it_at_the_solved_rate():
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0, D, 7200))  # Poisson, 2 per second
    trace = pl.DataFrame({"trace": "x", "arrival_s": t,
                          "input_tokens": rng.integers(10, 500, len(t)),
                          "output_tokens": rng.integers(1, 100, len(t))})
    r = sample(Mix((component("a", "x.parquet", kind="resample"),), rate=4.0), D, 0,
               sources={"a": trace})
    assert r.factors[0] == pytest.approx(2.0, rel=1e-3)
    assert within(r.counts[0], 4.0 * D)
    assert np.isin(r.requests["arrival_s"].to_numpy(), t).mean() < 0.01  # sampled, not replayed


def test_cli_adapters_from_a_trace_fit_or_copy_its_model_column(env: Path):
    poisson(1.0).save(env / "chat.json")
    rng = np.random.default_rng(8)
    counts = rng.multinomial(5000, zipf_law(12, 0.9))
    names = np.repeat([f"ft-{j}" for j in range(12)], counts)
    pl.DataFrame({"arrival_s": np.arange(5000.0), "input_tokens": np.full(5000, 10),
                  "model": rng.permutation(names)}).write_parquet(env / "models.parquet")
    for law in ("fit", "empirical"):
        out = env / f"{law}.json"
        res = runner.invoke(app, ["mix", str(env / "chat.json"), "--adapters",
                                  str(env / "models.parquet"), "--zipf", law, "-o", str(out)])
        assert res.exit_code == 0, res.output
        pop = Mix.load(out).components[0].models
        assert pop.names[0] == "ft-0" and len(pop.names) == 12
        if law == "fit":
            assert pop.law == "zipf-fit"
            assert abs(pop.exponent - 0.9) < 4 * mp.zipf_standard_error(12, 0.9, 5000)
        else:
            assert pop.law == "empirical" and pop.weights[0] == pytest.approx(
                counts.max() / 5000)


def test_a_batch_trace_without_times_is_the_backlog_whole(tmp_path):
    # canonical rows of a batch job (ServeGen offline): no arrival times, no output lengths
    job = pl.DataFrame({"trace": "servegen_offline/trace_a",
                        "request_id": [str(i) for i in range(40)],
                        "arrival_s": pl.Series([None] * 40, dtype=pl.Float64),
                        "input_tokens": np.arange(40) + 100,
                        "output_tokens": pl.Series([None] * 40, dtype=pl.Int64),
                        "hash_ids": [[i, i + 1] for i in range(40)]})
    m = Mix((component("chat", "a.json", priority=0),
             component("job", "servegen_offline/trace_a", kind="batch", at_s=5.0)))
    r = sample(m, 60.0, 0, sources={"chat": poisson(1.0), "job": job})
    back = r.requests.filter(pl.col("offline"))
    assert r.counts[1] == 40 and back["input_tokens"].sort().to_list() == list(range(100, 140))
    assert (back["arrival_s"] == 5.0).all() and back["output_tokens"].null_count() == 40
    job.write_parquet(tmp_path / "job.parquet")
    with pytest.raises(ValueError, match=r"has no arrival times .* use it as a batch"):
        sample(Mix((component("job", "job.parquet"),)), 60.0, 0, base=tmp_path)


def test_a_spike_on_a_session_model_multiplies_session_starts_and_keeps_sessions_whole():
    # Poisson session starts at 0.5/s, three turns 5 s apart: 1.5 requests/s
    a = Arrivals(0.5, 60.0, Table((1.0, 1.0)), 0.5, D, Renewal("exponential"))
    lengths = Lengths(Table.empirical(np.array([100.0]), integer=True),
                      Table.empirical(np.array([10.0]), integer=True), 0.0, 0.0)
    turns = Sessions(Table((3.0, 3.0), integer=True), Table((5.0, 5.0)), (lengths,), 0.0, 10.0)
    model = WorkloadModel("s", None, D, 5400, (Group(None, 1.0, a, lengths,
                                                     Labels((), ((),), (1.0,)), turns),))
    spike = me.Envelope("spike", "s", at_s=1200.0, duration_s=600.0, height=3.0)
    r = sample(Mix((component("a", "a.json"),), (spike,)), D, 0, sources={"a": model})
    assert r.expected[0] == pytest.approx(1.5 * (D + 2 * 600))
    sess = r.requests.group_by("session").agg(pl.col("arrival_s").min().alias("t0"),
                                              pl.col("arrival_s").max().alias("t1"), pl.len())
    inner = sess.filter((pl.col("t0") >= 10.0) & (pl.col("t0") < D - 10.0))  # not cut
    assert (inner["len"] == 3).all()  # a session that starts in the spike runs on whole
    assert (inner.filter(pl.col("t0") >= 1790.0)["t1"] > 1800.0).any()
    starts = sess["t0"].to_numpy()
    assert within(((starts >= 1200) & (starts < 1800)).sum(), 0.5 * 3.0 * 600)
    assert within(((starts >= 1800) | (starts < 1200)).sum(), 0.5 * (D - 600))
