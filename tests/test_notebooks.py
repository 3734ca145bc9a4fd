"""The notebooks run top to bottom in the project's own kernel, offline, inside temporary
folders, and show the key figures they promise (counts and medians of the real samples,
answers known by construction, orderings the tutorials state)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
MARK = "servetrace-notebook-probe "
# appended to the executed copy only: which interpreter ran, and the takeaway figures
PROBE = f"""\
import json as _json, sys as _sys
print({MARK!r} + _json.dumps({{"executable": _sys.executable, "prefix": _sys.prefix,
                               "takeaway": takeaway}}, default=str))"""


def _stream_text(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", ())
                   if o.get("output_type") == "stream")


def _execute(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """Run ``nb`` (CellExecutionError, with the cell's source, propagates) and read the probe."""
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    [line] = [ln for ln in _stream_text(nb.cells[-1]).splitlines() if ln.startswith(MARK)]
    return json.loads(line[len(MARK):])


def _takeaway_text(nb: nbformat.NotebookNode) -> str:
    [cell] = [c for c in nb.cells if "takeaway" in c.metadata.get("tags", [])]
    return _stream_text(cell)


# --- what each notebook must show ---------------------------------------------------------------


def _llm_traces(t: dict[str, Any], text: str) -> None:
    # Azure 2023 conv/code: counts and medians of the real files (as `servetrace demo` prints)
    assert t["conv_requests"] == 19366
    assert (t["conv_median_input"], t["conv_median_output"]) == (1020, 129)
    assert (t["code_median_input"], t["code_median_output"]) == (1469, 13)
    assert "median prompt 1,020 tokens, median output 129" in text
    # far from Poisson (IDC 1, CV 1): conv's IDC at 60 s is ~16, code's gap CV ~13
    assert t["conv_idc_60s"] > 5.0 and t["code_cv"] > 5.0
    assert t["code_bursts"] > 0 and t["code_burst_share"] > 0.5  # "most ... in bursts"
    assert 0.5 < t["conv_hurst_av"] < 1.1
    assert t["mooncake_resolution_s"] == 3.0  # the conversation trace's 3 s ticks
    assert t["burstgpt_tenants"] == 299


def _serverless(t: dict[str, Any], text: str) -> None:
    assert t["huawei_cold_starts"] == 10
    # the specimens' shares: scheduling 0.63 of the cold-start time, the next 0.26
    assert t["huawei_dominant_component"] == "scheduling_s"
    assert (t["af2019_invocations"], t["af2019_apps"]) == (3_037_902, 476)
    assert t["af2021_invocations"] == 998
    # the hybrid policy beats the fixed 10 minutes on both axes (Shahrad et al.'s claim)
    assert t["hybrid_cold_fraction"] < t["fixed10_cold_fraction"]
    assert t["hybrid_p75_app_cold_fraction"] < t["fixed10_p75_app_cold_fraction"]
    assert 0.0 < t["hybrid_wasted_normalized"] < 1.0
    assert "3,037,902 invocations of 476 apps" in text
    # synthesis: the model keeps every function; the 2021 rows cluster within the minute
    assert t["synth_functions"] == 500 and 0 < t["synth_timers"] < 500
    assert 0.0 < t["within_kappa"] < 1.0
    assert t["holdout_metrics"] == 14
    assert t["holdout_model_beats_poisson"] >= 10
    assert t["subset_representative_beats_random"] is True
    rs = t["subset_rate_ks"]
    assert rs["representative"] < rs["random"]
    # both operators double the rate; compressed time halves idle gaps: fewer cold starts
    for rate in t["scaled_rates"].values():
        assert rate == pytest.approx(2 * t["model_rate"], rel=0.25)
    assert t["scaled_cold"]["compress_time"] < t["scaled_cold"]["superpose_functions"]
    assert t["sized_utilization"] == pytest.approx(0.5, rel=0.2)
    assert "a representative 100-function subset is closer than a random one" in text


def _fairness(t: dict[str, Any], text: str) -> None:
    assert (t["burstgpt_tenants"], t["burstgpt_requests"]) == (299, 1000)
    assert 0.0 < t["burstgpt_gini_service"] < 1.0
    # the flood: B queues behind A's 100 waves of ~2 s under FCFS; VTC serves B within about
    # two request service times (~2.1 s each)
    assert t["flood_b_latency_fcfs_s"] > 100.0
    assert t["flood_b_latency_vtc_s"] < 5.0
    assert t["burstgpt_light_latency_vtc_s"] < t["burstgpt_light_latency_fcfs_s"]
    assert t["servegen_difference_vtc"] < t["servegen_difference_fcfs"]
    assert "VTC serves B in" in text


def _synthesize(t: dict[str, Any], text: str) -> None:
    assert t["fitted_requests"] == 19366
    assert t["fitted_rate"] == pytest.approx(19366 / 3501.72, rel=1e-3)
    # the model keeps the long-range dependence a Poisson replay loses
    assert t["hurst_error_model"] < t["hurst_error_poisson"]
    assert t["idc_error_model"] < t["idc_error_poisson"]
    # every request of the synthetic workload went over HTTP and came back
    assert t["replay_requests"] == t["workload_requests"] > 0
    assert t["replay_succeeded"] == t["replay_requests"] and t["replay_failed"] == 0
    assert t["measured_prefill_tokens_per_s"] > 0
    assert f"{t['replay_requests']} succeeded" in text


def _agentic(t: dict[str, Any], text: str) -> None:
    # the 231 real conversations, every request accounted for (sub-agents included)
    assert (t["weka_requests"], t["weka_rejected"], t["weka_sessions"]) == (5237, 0, 231)
    assert t["weka_subagent_requests"] == 101
    assert (t["weka_block_tokens"], t["weka_scope"]) == (64, "session")
    # the upstream README's medians per request: think 10 s, API time 6.5 s
    assert t["weka_think_s_p50"] == 10.0
    assert abs(t["weka_server_s_p50"] - 6.5) < 1.0
    assert t["weka_context_growth_p50"] > 0          # prompts grow turn by turn
    # the LRU curve rises from nothing to the infinite cache at the footprint
    assert t["weka_lru_sorted"] and t["weka_lru_smallest"] < 0.01
    assert t["weka_lru_footprint"] == pytest.approx(t["weka_token_hit_ratio"], abs=1e-12)
    # session-scoped ids: a first turn has nothing of its own cached, later turns re-read
    assert t["weka_turn1_token_hit_ratio"] < 0.01 < 0.9 < t["weka_later_token_hit_ratio"]
    assert t["weka_token_hit_ratio_if_global"] > t["weka_token_hit_ratio"]   # aliasing
    assert t["weka_sessions_with_ratio"] == 231
    # a coarse prefix hit implies the fine one: coarser blocks can only lose
    assert t["weka_token_hit_ratio_512"] <= t["weka_token_hit_ratio"]
    # Mooncake conversation trace: 0.3664 of blocks seen before; 40% per request (FAST'25)
    assert t["moon_block_seen_ratio"] == pytest.approx(0.3664, abs=5e-5)
    assert round(t["moon_mean_request_token_hit_ratio"], 2) == 0.41
    assert "5,237 requests in 231 conversations (101 in sub-agents)" in text
    # synthesis keeps the reuse: the model's LRU curve is the closest, its infinite-cache
    # ratio within 0.02 of the trace's at 1x and at 2x rate (2x the sessions over the span)
    mae = t["synth_curve_mae"]
    assert mae["real"] == 0.0
    assert mae["model"] < mae["session-naive"] and mae["model"] < mae[
        "Poisson, independent lengths"]
    assert abs(t["synth_infinite"]["model"] - t["weka_token_hit_ratio"]) < 0.02
    assert t["synth_infinite"]["Poisson, independent lengths"] == 0.0
    assert t["synth_2x_sessions"] > 1.5 * 231
    assert abs(t["synth_2x_infinite"] - t["weka_token_hit_ratio"]) < 0.02
    # closed-loop replay: no turn early, the server's LRU hit exactly what the analysis predicts
    assert t["replay_requests"] > 10 and t["replay_violations"] == 0
    assert t["replay_hit_ratio"] == pytest.approx(t["replay_predicted"], abs=1e-12)
    assert 0.0 < t["replay_hit_ratio"] < 1.0


def _mixes(t: dict[str, Any], text: str) -> None:
    # what was asked: shares 0.6 / 0.3 / 0.1, a 3x spike, Zipf(1.1) over 20 adapters
    share = t["share"]
    assert abs(share["interactive"] - 0.6) < 0.06 and abs(share["standard"] - 0.3) < 0.06
    assert abs(share["offline"] - 0.1) < 0.02  # a batch's count is its share, exactly
    assert t["offline_requests"] > 0
    assert abs(t["spike_ratio_mean"] - 3.0) < 3 * t["spike_ratio_se"] + 0.3
    assert abs(t["zipf_fitted"] - 1.1) < 0.2 and t["adapters"] >= 15
    # every request replayed; the backlog never counts against an SLO
    assert t["replayed"] == t["requests"] and t["failed"] == 0
    assert set(t["attainment"]) == {"interactive", "standard", "offline"}
    assert t["attainment"]["offline"] == 1.0
    # priority scheduling: in the spike the priority-0 class waits less than priority 1
    spike = t["ttft_p50_in_spike"]
    assert spike["interactive"] < spike["standard"]
    assert "Replayed with priority scheduling" in text


CHECKS: dict[str, Callable[[dict[str, Any], str], None]] = {
    "01_llm_traces": _llm_traces,
    "02_serverless_cold_starts": _serverless,
    "03_fairness": _fairness,
    "04_synthesize_and_replay": _synthesize,
    "05_agentic_sessions": _agentic,
    "06_workload_mixes": _mixes,
}


def test_every_notebook_is_checked():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_committed_notebook_is_clean(name):
    """Valid nbformat 4, kernel python3, outputs cleared, one takeaway cell."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert sum("takeaway" in c.metadata.get("tags", []) for c in code) == 1
    assert any(c.cell_type == "markdown" for c in nb.cells)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_notebook_runs(name, mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel's tempfile.mkdtemp() lands here
    before = sorted(NOTEBOOKS.rglob("*"))
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    probe = _execute(nb)
    # the kernel is the project's interpreter (the venv's python3 kernelspec runs `python`)
    assert probe["executable"] == sys.executable
    assert probe["prefix"] == sys.prefix
    CHECKS[name](probe["takeaway"], _takeaway_text(nb))
    # nothing written beside the notebooks; the work folder was temporary and is removed
    assert sorted(NOTEBOOKS.rglob("*")) == before
    assert not list(tmp_path.glob("servetrace-*"))


def test_default_mirror_is_shared_beside_the_repo(shared, tmp_path, monkeypatch):
    """Without SERVETRACE_MIRROR the setup cell finds ../shared/traces from notebooks/."""
    monkeypatch.delenv("SERVETRACE_MIRROR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    nb = nbformat.read(NOTEBOOKS / "01_llm_traces.ipynb", as_version=4)
    setup = next(c for c in nb.cells if c.cell_type == "code")
    nb.cells = [setup, nbformat.v4.new_code_cell(
        "takeaway = {'mirror': str(MIRROR), 'env': os.environ['SERVETRACE_MIRROR'],\n"
        "            'cache': os.environ['SERVETRACE_CACHE'], 'work': str(WORK)}\n"
        "shutil.rmtree(WORK)")]
    t = _execute(nb)["takeaway"]
    assert t["mirror"] == t["env"] == str(shared.resolve())
    assert Path(t["work"]).parent == tmp_path
    assert Path(t["cache"]).is_relative_to(t["work"])
