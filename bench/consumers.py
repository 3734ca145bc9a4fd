"""Check exports against real consumers installed from PyPI: GuideLLM and AIPerf.

Usage: ``python bench/consumers.py [--venvs DIR] [--rows N]``

GuideLLM (``guidellm`` on PyPI, with ``transformers``, ``datasets`` and ``torch``: about
6 GB) and AIPerf (``aiperf``, about 1.2 GB) are too heavy for the test suite, so this script
installs each into a scratch virtual environment outside the repository (``DIR/guidellm``
and ``DIR/aiperf``, default ``DIR`` = ``/tmp/servetrace-consumers``; reused when they
exist), writes real traces from ``../shared/traces`` with :func:`servetrace.synth.export.export`,
and has the consumer's own code read them:

- ``guidellm`` (GuideLLM ``kind=trace_synthetic``) from the Azure LLM 2023 conversation
  trace and ``guidellm-mooncake`` (GuideLLM ``kind=mooncake``) from the Mooncake
  conversation trace go through GuideLLM's ``DatasetDeserializerFactory.deserialize``
  with ``DataArgs`` ``{"kind": KIND, "source": {"kind": "json_file", "path": FILE}}``
  (the code path of ``guidellm benchmark --data``). Every replayed row is compared with
  the canonical frame it came from: the relative timestamp (GuideLLM replays offsets from
  the first row, in seconds) to 1 µs, prompt and output token counts exactly, and the
  synthetic prompt GuideLLM generated, re-encoded, has the requested length. GuideLLM
  needs a tokenizer and a hub tokenizer cannot be downloaded here, so a word-level
  tokenizer over Faker's lorem words (the text GuideLLM's prompt generator draws from) is
  built in memory.
- ``aiperf-mooncake`` (AIPerf ``--custom-dataset-type mooncake_trace``) from both traces
  goes through AIPerf's ``MooncakeTraceDatasetLoader.can_load`` (format detection on the
  first line) and its pydantic ``MooncakeTrace`` model on every line (the parse its loader
  does): timestamps in ms equal ``round((arrival_s - first) * 1000)``, lengths equal,
  ``len(hash_ids) == ceil(input_length / 512)``. AIPerf's prompt synthesis from
  ``hash_ids`` needs a hub tokenizer and is not exercised.

Last run (GuideLLM 0.8.1, AIPerf 0.13.0, Python 3.11, 200 rows each): every check OK.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "traces"

from servetrace.loaders import azure_llm_2023, mooncake  # noqa: E402
from servetrace.synth.export import export  # noqa: E402

PACKAGES = {"guidellm": "guidellm==0.8.1", "aiperf": "aiperf==0.13.0"}

GUIDELLM = r"""
import json, sys
from importlib.metadata import version
from faker.providers.lorem.en_US import Provider as Lorem
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from guidellm.data.deserializers.deserializer import DatasetDeserializerFactory
from guidellm.schemas.data.entrypoints import DataArgs

words = sorted(set(Lorem.word_list) | {w.capitalize() for w in Lorem.word_list})
vocab = {"[UNK]": 0, ".": 1, ",": 2, **{w: i + 3 for i, w in enumerate(words)}}
tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
proc = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
kind, path = sys.argv[1], sys.argv[2]
config = DataArgs.model_validate({"kind": kind, "source": {"kind": "json_file", "path": path}})
data = DatasetDeserializerFactory.deserialize(config=config, processor_factory=lambda: proc,
                                              random_seed=1)
rows = []
for item in data:
    for turn in json.loads(item["conversation_turns"])["turns"]:
        c = turn["columns"]
        rows.append([c["relative_timestamp_column"][0], c["prompt_tokens_count_column"][0],
                     c["output_tokens_count_column"][0],
                     len(proc.encode(c["text_column"][0], add_special_tokens=False))])
print(json.dumps({"version": version("guidellm"), "reader": type(config).__name__,
                  "rows": rows}))
"""

AIPERF = r"""
import json, sys
from importlib.metadata import version
from aiperf.dataset.loader.models import MooncakeTrace
from aiperf.dataset.loader.mooncake_trace import MooncakeTraceDatasetLoader

with open(sys.argv[2]) as fh:
    records = [json.loads(line) for line in fh]
detected = MooncakeTraceDatasetLoader.can_load(data=records[0])
rows = []
for rec in records:
    t = MooncakeTrace.model_validate(rec)
    rows.append([t.timestamp, t.input_length, t.output_length, len(t.hash_ids or [])])
print(json.dumps({"version": version("aiperf"), "reader": f"can_load={detected}",
                  "detected": detected, "rows": rows}))
"""


def ensure_venv(venv: Path, package: str) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} and installing {package} (GBs, minutes)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", package], check=True)
    return python


def _run(python: Path, code: str, kind: str, path: Path) -> dict:
    out = subprocess.run([str(python), "-c", code, kind, str(path)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_guidellm(python: Path, kind: str, path: Path, frame: pl.DataFrame) -> list[str]:
    got = _run(python, GUIDELLM, kind, path)
    rows = np.array(got["rows"], dtype=np.float64).reshape(-1, 4)
    want = frame.sort("arrival_s", maintain_order=True)
    t = (want["arrival_s"] - want["arrival_s"][0]).to_numpy()
    if rows.shape[0] != want.height:
        return [f"{rows.shape[0]} rows read, {want.height} written"]
    rows = rows[np.lexsort((rows[:, 2], rows[:, 1], rows[:, 0]))]  # GuideLLM sorts by time
    ref = np.lexsort((want["output_tokens"].to_numpy(), want["input_tokens"].to_numpy(), t))
    problems = []
    if np.abs(rows[:, 0] - t[ref]).max() > 1e-6:
        problems.append("timestamps differ")
    if not (rows[:, 1] == want["input_tokens"].to_numpy()[ref]).all():
        problems.append("input lengths differ")
    if not (rows[:, 2] == want["output_tokens"].clip(1).to_numpy()[ref]).all():
        problems.append("output lengths differ")
    if not (rows[:, 3] == rows[:, 1]).all():
        problems.append("generated prompts are not of the requested length")
    return problems


def check_aiperf(python: Path, path: Path, frame: pl.DataFrame) -> list[str]:
    got = _run(python, AIPERF, "mooncake_trace", path)
    rows = np.array(got["rows"], dtype=np.float64).reshape(-1, 4)
    want = frame.sort("arrival_s", maintain_order=True)
    problems = [] if got["detected"] else ["AIPerf does not detect the format"]
    if rows.shape[0] != want.height:
        return [*problems, f"{rows.shape[0]} rows read, {want.height} written"]
    ms = np.round((want["arrival_s"] - want["arrival_s"][0]).to_numpy() * 1000)
    if not (rows[:, 0] == ms).all():
        problems.append("timestamps (ms) differ")
    if not (rows[:, 1] == want["input_tokens"].to_numpy()).all():
        problems.append("input lengths differ")
    if not (rows[:, 2] == want["output_tokens"].clip(1).to_numpy()).all():
        problems.append("output lengths differ")
    if not (rows[:, 3] == np.ceil(rows[:, 1] / 512)).all():
        problems.append("hash_ids are not ceil(input_length / 512) blocks")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venvs", type=Path, default=Path("/tmp/servetrace-consumers"))
    parser.add_argument("--rows", type=int, default=200)
    args = parser.parse_args()
    pythons = {name: ensure_venv(args.venvs / name, spec) for name, spec in PACKAGES.items()}
    azure = azure_llm_2023.load([SHARED / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"],
                                "azure_llm_2023/conv").tables["requests"].head(args.rows)
    moon = mooncake.load([SHARED / "mooncake_fast25" / "conversation_trace.jsonl"],
                         "mooncake/conversation").tables["requests"].head(args.rows)
    cases = [("guidellm", "trace_synthetic", azure, "Azure 2023 conv"),
             ("guidellm-mooncake", "mooncake", moon, "Mooncake conv"),
             ("aiperf-mooncake", "mooncake_trace", moon, "Mooncake conv"),
             ("aiperf-mooncake", "mooncake_trace", azure, "Azure 2023 conv")]
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, kind, frame, source) in enumerate(cases):
            path = export(frame, name, Path(tmp) / f"{i}-{name}.jsonl")
            consumer = "aiperf" if name.startswith("aiperf") else "guidellm"
            python = pythons[consumer]
            problems = (check_aiperf(python, path, frame) if consumer == "aiperf"
                        else check_guidellm(python, kind, path, frame))
            failed |= bool(problems)
            verdict = "OK" if not problems else "FAILED: " + "; ".join(problems)
            print(f"{name:<18} {source:<16} -> {consumer} {kind:<16} "
                  f"{frame.height} rows: {verdict}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
