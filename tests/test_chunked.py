"""servetrace.synth.chunked and the fit's chunked passes (issue 19, item 2).

Ground truth: NumPy's own results on the whole array (``np.sum``, ``mean``, ``std``,
``np.diff``), bit for bit, and the model fitted with chunks larger than the trace (every pass
one whole-array NumPy call, as before the passes were chunked).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl
import pytest

from servetrace.synth import arrivals, chunked, model
from servetrace.synth.model import fit

NUMPY_2 = int(np.__version__.split(".")[0]) >= 2


def _leaves(doc: Any) -> list[Any]:
    """Every scalar of a JSON document, in document order."""
    if isinstance(doc, dict):
        return [x for k in doc for x in [k, *_leaves(doc[k])]]
    if isinstance(doc, list):
        return [x for v in doc for x in _leaves(v)]
    return [doc]


@pytest.mark.parametrize("n", [0, 1, 7, 129, 1000, 100_003])
def test_pairwise_sum_mean_and_std_are_numpys_bit_for_bit(monkeypatch, n):
    monkeypatch.setattr(chunked, "LEAF", 64)
    x = np.random.default_rng(n).exponential(1.0, n) * 1e3
    pieces = np.array_split(x, 7)  # chunks of any size: the nodes cut across them
    assert chunked.pairwise_sum(iter(pieces), n) == float(np.sum(x))
    if n:
        mean, std = chunked.mean_std(lambda: iter(pieces), n)
        assert (mean, std) == (float(x.mean()), float(x.std()))
        pick = np.array([0, n // 3, n - 1]) if n > 2 else np.arange(n)
        assert np.array_equal(chunked.gather(iter(pieces), np.unique(pick)), x[np.unique(pick)])
    t = np.cumsum(np.where(np.arange(n) % 5 == 0, 0.0, x))
    got = np.concatenate([*chunked.diffs(t, 13, nonzero=True), np.empty(0)])
    d = np.diff(t)
    assert np.array_equal(got, d[d != 0])


def test_the_fit_in_small_chunks_is_the_fit_in_one(tmp_path, monkeypatch):
    """Gaps with ties and OFF periods, and a trace on a 1 s grid: the tick, the CV target,
    the OFF split, the renewal's moments and its subsample, read chunk by chunk, give the
    model of whole-array passes number for number."""
    rng = np.random.default_rng(7)
    n = 60_000
    t = np.cumsum(rng.exponential(0.05, n) * np.repeat(rng.gamma(0.5, 2, n // 500), 500))
    t = t + np.repeat(np.arange(n // 5000) * 500.0, 5000)  # silences: OFF periods
    traces = {"ties": np.sort(np.where(rng.random(n) < 0.1, np.floor(t), t)),
              "tick": np.floor(t)}
    for name, times in traces.items():
        path = tmp_path / f"{name}.parquet"
        pl.DataFrame({"trace": name, "arrival_s": times,
                      "input_tokens": rng.integers(1, 900, n),
                      "output_tokens": rng.integers(1, 300, n)}).write_parquet(path)
        whole = fit(pl.scan_parquet(path))
        with monkeypatch.context() as m:
            for module in (arrivals, model):
                m.setattr(module, "T_CHUNK", 1000)
            m.setattr(chunked, "LEAF", 512)
            small = fit(pl.scan_parquet(path))
        if NUMPY_2:
            assert small.to_json() == whole.to_json(), name
        else:  # NumPy 1.x's reductions group some sums differently: equal to 1e-12
            got, want = (_leaves(json.loads(m.to_json())) for m in (small, whole))
            floats = [isinstance(x, float) for x in want]
            assert [isinstance(x, float) for x in got] == floats, name
            assert [x for x, f in zip(got, floats, strict=True) if not f] == \
                [x for x, f in zip(want, floats, strict=True) if not f], name
            np.testing.assert_allclose([x for x, f in zip(got, floats, strict=True) if f],
                                       [x for x, f in zip(want, floats, strict=True) if f],
                                       rtol=1e-12, atol=1e-15, err_msg=name)
        a = whole.groups[0].arrivals
        assert a.off is not None and (a.tick_s == 1.0) == (name == "tick")
