"""Check exports against the real consumers' own parsing code, from their published packages.

Usage: ``python bench/consumers.py [--work DIR] [--rows N] [--only NAME ...]``
(``PYTHON312``: a Python 3.12 interpreter for inference-perf, default ``python3.12``)

Each case writes a real trace from ``../shared/traces`` with
:func:`servetrace.synth.export.export`, hands the file to the consumer's own loader (the
published package, never a copy of its code) and compares what the consumer would send with
the source frame: row count (with the row limit the printed command line sets), time offsets
in seconds as the consumer schedules them, prompt and output lengths, hash-id blocks, and
sessions. Every case takes the file's command line as printed by the export, so the flags it
prints (block size, ``--num-prompts``) are the ones checked.

Consumers, and how their code is run (scratch environments under ``DIR``, default
``/tmp/servetrace-consumers``, outside the repository):

- **vLLM** ``timed_trace`` (wheel ``vllm``, downloaded with ``pip download --no-deps``; too
  heavy to install): ``vllm/benchmarks/datasets/datasets.py`` is imported alone with stub
  modules for the vLLM internals and imaging libraries it imports; the command line is parsed
  by vLLM's own ``add_dataset_parser`` (so ``--dataset-name timed-trace`` would be refused)
  and the rows come from ``TimedTrace(**vars(args)).sample(...)``, as ``vllm bench serve``
  does, with a 50,000-token vocabulary stand-in for the tokenizer. Checked: rows =
  ``--num-prompts`` = source rows, ``timestamp`` = ``arrival_s`` − first, prompt length =
  ``input_tokens`` exactly, output, and for each request the prompt tokens it shares with the
  previous request = ``min(512 · common hash-id prefix of the source, both lengths)``. The
  same file read with vLLM's defaults (no ``--timed-trace-chunk-hash-size`` and
  ``--num-prompts``) is run too and must fail.
- **SGLang** ``mooncake`` (wheel ``sglang``): ``sglang/benchmark/datasets/mooncake.py`` and
  ``common.py`` imported alone (stubs for ``transformers`` and the download helper);
  ``MooncakeDataset.load`` then ``get_mooncake_request_over_time`` driven on a virtual clock
  (its ``asyncio.sleep`` advances the clock), with a whitespace tokenizer. Checked: rows,
  send times = (ms − first)/1000 s, outputs, and the prompt length within 3% of
  ``input_tokens`` rounded up to whole 128-token blocks, for prompts of ≥ 1,024 tokens
  (SGLang ignores ``input_length`` and builds 128 words per id). The 512-token variant
  (``--set block_size=512``) is run too and must fail: on released SGLang its prompts are
  ≈ 4× short.
- **AIPerf** ``mooncake_trace`` (with ``session_id`` and think delays), ``bailian_trace`` and
  ``multi_turn`` (``pip install aiperf``): each line through the loader's pydantic model
  (``MooncakeTrace``, ``BailianTrace``, ``MultiTurn``), the loader's ``can_load`` detection and,
  for Bailian, the loader's own ``_group_into_sessions``. Checked: timestamps in ms (Bailian:
  s × 1000), lengths, ``len(hash_ids) = ceil(input / block)``, conversations = sessions.
  A workload mix (the Mooncake rows with 20 LoRA adapter names, two priorities and two
  classes): each request's ``extra`` as AIPerf keeps it (``mooncake_trace``: the turn the
  loader's own ``_build_turn`` makes, whose ``extra_body`` is merged into the request body;
  ``multi_turn``: the turn's ``extra``) = the trace's ``model`` and ``priority``.
- **GuideLLM** ``kind=trace_synthetic``, ``kind=mooncake`` and ``kind=weka`` (``guidellm``
  installed without ``torch``, whose data-loader wrapper it imports but this path does not
  use: stand-in classes take its place after ``transformers`` and ``datasets`` have found no
  torch): ``DatasetDeserializerFactory.deserialize`` on the ``--data`` JSON the printed
  command carries (the path of ``guidellm run --data``) with a word-level tokenizer over
  Faker's lorem words. Checked: rows, prompt lengths, and each synthetic prompt re-encoded
  has the requested length.
- **inference-perf** WEKA replay (``pip install inference-perf``, Python ≥ 3.12): every file
  through ``WekaTrace.model_validate`` from its ``weka_trace_replay_datagen``. Checked:
  conversations, requests (sub-agents included), ``t``, ``in``, ``out``, ``think_time``,
  ``block_size`` and at least ``floor(in / block)`` ids.
- **Vidur** 0.0.26 (``pip install --no-deps vidur`` + pandas): its
  ``TraceReplayRequestGenerator`` on the ``vidur-pypi`` file with the config the printed
  command sets. Checked: rows, ``arrived_at`` (s), prefill and decode tokens.

Last run (``--rows 500``; Python 3.11, inference-perf on 3.12; 10 WEKA conversations =
1,063 requests; one run of about 10 minutes on a shared machine at load average ≈ 9): all 15
cases OK, exit 0 — vLLM 0.34.0 (Mooncake and Azure; read with vLLM's defaults instead of the
printed flags the file fails as it must: prompts built from 16-token chunks, and 1,000 rows
when the file has more), SGLang 0.5.23 (128-token ids OK; the 512 variant fails as it must,
prompts 0.25–0.34 of the input), AIPerf 0.13.0 (4 cases), GuideLLM 0.8.1 (3),
inference-perf 0.7.0 (1), Vidur 0.0.26 (1). The same results are in the README's export
section.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "traces"

from servetrace.loaders import agentic_coding_weka, azure_llm_2023, mooncake  # noqa: E402
from servetrace.synth.export import Export, export  # noqa: E402

WHEELS = {"vllm": ("vllm==0.34.0", "vllm/benchmarks/datasets/"),
          "sglang": ("sglang==0.5.23", "sglang/benchmark/datasets/")}
GUIDELLM_DEPS = ["click~=8.4.0", "culsans~=0.10.0", "datasets>=5.0.1", "eval_type_backport",
                 "faker", "ftfy>=6.0.0", "httpx[http2]<1.0.0", "loguru", "msgpack",
                 "numpy>=2.0.0", "protobuf", "pydantic>=2.11.7", "pydantic-settings>=2.0.0",
                 "pyyaml", "rich", "sanic", "tabulate", "transformers", "uvloop>=0.18",
                 "more-itertools>=10.8.0", "typing-extensions>=4.15.0", "websockets>=13.0",
                 "tokenizers"]
VENVS = {"aiperf": ("python3.11", [["aiperf==0.13.0"]]),
         # GuideLLM without torch (6 GB): its data path does not import it
         "guidellm": ("python3.11", [GUIDELLM_DEPS, ["--no-deps", "guidellm==0.8.1"]]),
         "iperf": (os.environ.get("PYTHON312", "python3.12"), [["inference-perf==0.7.0"]]),
         # Vidur's trace reader needs pandas and scipy only (the rest pulls in wandb, streamlit)
         "vidur": ("python3.11", [["--no-deps", "vidur==0.0.26"], ["numpy", "pandas", "scipy"]])}

STUBS = r"""
import importlib.util, sys, types
class _Meta(type):
    def __getattr__(cls, name): return _Any
    def __or__(cls, other): return cls
    def __ror__(cls, other): return cls
class _Any(metaclass=_Meta):
    def __init__(self, *a, **k): pass
    def __call__(self, *a, **k): return _Any()
    def __getattr__(self, name): return _Any()
    def __class_getitem__(cls, key): return cls
def stub(name, **attrs):
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        n = ".".join(parts[:i])
        if n not in sys.modules:
            m = types.ModuleType(n); m.__path__ = []; m.__getattr__ = lambda a: _Any
            sys.modules[n] = m
    sys.modules[name].__dict__.update(attrs)
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec); sys.modules[name] = mod
    spec.loader.exec_module(mod); return mod
"""

VLLM = STUBS + r"""
import argparse, json, os, shlex
root, path, command = sys.argv[1], sys.argv[2], sys.argv[3]
for n in ("pybase64", "PIL", "vllm.inputs", "vllm.lora.request", "vllm.lora.utils",
          "vllm.multimodal.audio", "vllm.multimodal.image", "vllm.multimodal.utils",
          "vllm.tokenizers", "vllm.transformers_utils.repo_utils", "vllm.utils.argparse_utils",
          "vllm.utils.import_utils", "vllm.utils.mistral"):
    stub(n)
sys.modules["PIL"].Image = _Any
base = os.path.join(root, "vllm", "benchmarks", "datasets")
load("vllm.benchmarks.datasets.utils", os.path.join(base, "utils.py"))
ds = load("vllm.benchmarks.datasets.datasets", os.path.join(base, "datasets.py"))
parser = argparse.ArgumentParser()
ds.add_dataset_parser(parser)
args, _ = parser.parse_known_args(shlex.split(command)[3:])
assert args.dataset_name == "timed_trace"
class Tok:
    all_special_ids = []
    def get_vocab(self): return {str(i): i for i in range(50000)}
loader = ds.TimedTrace(**vars(args))
rows = loader.sample(tokenizer=Tok(), num_requests=args.num_prompts)
out, prev = [], []
for r in rows:
    p = list(r.prompt); n = 0
    while n < min(len(p), len(prev)) and p[n] == prev[n]: n += 1
    out.append([r.timestamp, r.prompt_len, r.expected_output_len, n]); prev = p
print(json.dumps({"version": "0.34.0 (wheel)", "rows": out,
                  "chunk": loader.chunk_size, "num_prompts": args.num_prompts}))
"""

SGLANG = STUBS + r"""
import asyncio, json, os, shlex
root, path, command = sys.argv[1], sys.argv[2], sys.argv[3]
stub("transformers", PreTrainedTokenizerBase=_Any)
stub("sglang.benchmark.utils", download_and_cache_file=_Any)
base = os.path.join(root, "sglang", "benchmark", "datasets")
load("sglang.benchmark.datasets.common", os.path.join(base, "common.py"))
mc = load("sglang.benchmark.datasets.mooncake", os.path.join(base, "mooncake.py"))
words = shlex.split(command)
num = int(words[words.index("--num-prompts") + 1])
records = mc.MooncakeDataset(dataset_path=path, mooncake_workload="conversation",
                             num_requests=num).load()
clock = [0.0]
class Clock:
    @staticmethod
    def perf_counter(): return clock[0]
async def sleep(s): clock[0] += max(s, 0.0)
mc.time = Clock
mc.asyncio = type("A", (), {"sleep": staticmethod(sleep)})
class Tok:
    def apply_chat_template(self, *a, **k): raise ValueError("no template")
    def encode(self, text): return text.split()
async def run():
    out = []
    async for row in mc.get_mooncake_request_over_time(records, Tok(), 1.0, 1):
        out.append([clock[0], row.prompt_len, row.output_len])
    return out
print(json.dumps({"version": "0.5.23 (wheel)", "rows": asyncio.run(run())}))
"""

AIPERF = r"""
import json, sys
from importlib.metadata import version
from aiperf.dataset.loader import models
from aiperf.dataset.loader.bailian_trace import BailianTraceDatasetLoader
from aiperf.dataset.loader.mooncake_trace import MooncakeTraceDatasetLoader
from aiperf.dataset.loader.multi_turn import MultiTurnDatasetLoader
kind, path = sys.argv[1], sys.argv[2]
with open(path) as fh:
    records = [json.loads(line) for line in fh]
rows, sessions = [], None
if kind == "mooncake_trace":
    detected = MooncakeTraceDatasetLoader.can_load(data=records[0])
    loader = MooncakeTraceDatasetLoader.__new__(MooncakeTraceDatasetLoader)
    loader._delay_cap_tracker = type("Cap", (), {"clamp": staticmethod(lambda d: d)})()
    for rec in records:
        t = models.MooncakeTrace.model_validate(rec)
        turn = MooncakeTraceDatasetLoader._build_turn(loader, t, "p") if t.extra else None
        rows.append([t.timestamp, t.delay, t.input_length, t.output_length,
                     len(t.hash_ids or []), t.session_id, turn and turn.extra_body])
elif kind == "bailian_trace":
    detected = BailianTraceDatasetLoader.can_load(data=records[0])
    items = [models.BailianTrace.model_validate(r) for r in records]
    for t in items:
        rows.append([t.timestamp * 1000.0, None, t.input_length, t.output_length,
                     len(t.hash_ids), None, None])
    groups = BailianTraceDatasetLoader._group_into_sessions(None, items)
    sessions = sorted(len(v) for v in groups.values())
else:
    detected = MultiTurnDatasetLoader.can_load(data=records[0])
    for rec in records:
        m = models.MultiTurn.model_validate(rec)
        for t in m.turns:
            rows.append([t.timestamp, t.delay, None, t.output_length, 0, m.session_id,
                         t.extra])
print(json.dumps({"version": version("aiperf"), "detected": detected, "rows": rows,
                  "sessions": sessions}))
"""

GUIDELLM = r"""
import json, sys
from importlib.metadata import version
from faker.providers.lorem.en_US import Provider as Lorem
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
import datasets  # noqa: F401  (before the stand-in below: it must find no torch either)
# GuideLLM's data package imports its torch DataLoader wrapper, unused on this path: two
# stand-in base classes instead of torch (6 GB); transformers has already found no torch
import importlib.machinery, sys, types
class _Meta(type):
    def __getattr__(cls, attr): return _Meta(attr, (), {})
class _Plain:
    def __init__(self, *a, **k): pass
    def __class_getitem__(cls, item): return cls
for name in ("torch", "torch.utils", "torch.utils.data", "torch.utils.data.dataloader",
             "torch.utils.data.dataset"):
    sys.modules[name] = types.ModuleType(name)
    sys.modules[name].__spec__ = importlib.machinery.ModuleSpec(name, None)
    sys.modules[name].__getattr__ = lambda attr: _Meta(attr, (), {})
sys.modules["torch.utils.data.dataloader"].DataLoader = type("DataLoader", (_Plain,), {})
sys.modules["torch.utils.data.dataset"].IterableDataset = type("IterableDataset", (_Plain,),
                                                               {})
from guidellm.data.deserializers.deserializer import DatasetDeserializerFactory
from guidellm.schemas.data.entrypoints import DataArgs

words = sorted(set(Lorem.word_list) | {w.capitalize() for w in Lorem.word_list})
vocab = {"[UNK]": 0, ".": 1, ",": 2, **{w: i + 3 for i, w in enumerate(words)}}
tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
proc = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
data_json = sys.argv[2]
config = DataArgs.model_validate(json.loads(data_json))
data = DatasetDeserializerFactory.deserialize(config=config, processor_factory=lambda: proc,
                                              random_seed=1)
rows = []
for item in data:
    for turn in json.loads(item["conversation_turns"])["turns"]:
        c = turn["columns"]
        rows.append([c["relative_timestamp_column"][0], c["prompt_tokens_count_column"][0],
                     c["output_tokens_count_column"][0],
                     len(proc.encode(c["text_column"][0], add_special_tokens=False))])
print(json.dumps({"version": version("guidellm"), "rows": rows}))
"""

IPERF = r"""
import glob, json, sys
from importlib.metadata import version
from inference_perf.datagen.replay.weka_trace_replay_datagen import WekaTrace
rows, convs = [], 0
for f in sorted(glob.glob(sys.argv[2] + "/*.json")):
    tr = WekaTrace.model_validate(json.load(open(f))); convs += 1
    for e in tr.requests:
        inner = e.requests if e.type == "subagent" else [e]
        spawn = e.t if e.type == "subagent" else 0.0
        for r in inner:
            rows.append([tr.id, spawn + r.t, r.input_length, r.output_length, r.think_time,
                         len(r.hash_ids), tr.block_size])
print(json.dumps({"version": version("inference-perf"), "rows": rows, "conversations": convs}))
"""

VIDUR = r"""
import json, shlex, sys
from importlib.metadata import version
from vidur.config import TraceRequestGeneratorConfig
from vidur.request_generator.trace_replay_request_generator import TraceReplayRequestGenerator
words = shlex.split(sys.argv[3]); cfg = {}
for i, w in enumerate(words):
    if w.startswith("--trace_request_generator_config_"):
        cfg[w[len("--trace_request_generator_config_"):]] = words[i + 1]
kw = {k: (float(v) if k.endswith("factor") else int(v) if k == "max_tokens" else v)
      for k, v in cfg.items()}
reqs = TraceReplayRequestGenerator(TraceRequestGeneratorConfig(**kw)).generate_requests()
print(json.dumps({"version": version("vidur"), "rows": [[r.arrived_at, r.num_prefill_tokens,
                                                         r.num_decode_tokens] for r in reqs]}))
"""


def wheel_root(work: Path, name: str) -> Path:
    """The consumer's wheel unpacked under ``work/wheels/name`` (downloaded if absent)."""
    spec, prefix = WHEELS[name]
    root = work / "wheels" / name
    if not (root / prefix).exists():
        dl = work / "downloads"
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", spec,
                        "-d", str(dl)], check=True)
        [whl] = sorted(dl.glob(f"{name}-*.whl"))
        with zipfile.ZipFile(whl) as z:
            z.extractall(root, [m for m in z.namelist() if m.startswith(prefix)])
    return root


def venv_python(work: Path, name: str) -> Path:
    """The scratch virtual environment's python (created with the consumer if absent)."""
    python = work / name / "bin" / "python"
    if not python.exists():
        interpreter, steps = VENVS[name]
        print(f"creating {work / name} with {name} (minutes)", flush=True)
        subprocess.run([interpreter, "-m", "venv", str(work / name)], check=True)
        for packages in steps:
            subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    return python


def probe(python: Path | str, code: str, *args: object) -> dict:
    done = subprocess.run([str(python), "-c", code, *map(str, args)], capture_output=True,
                          text=True)
    if done.returncode:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr else "failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rebased(frame: pl.DataFrame) -> np.ndarray:
    t = frame["arrival_s"].to_numpy()
    return t - t.min()


def check_vllm(work: Path, result: Export, frame: pl.DataFrame,
               defaults: bool = False) -> list[str]:
    command = result.command
    if defaults:  # what a user gets without the printed flags
        words = shlex.split(command)
        for flag in ("--timed-trace-chunk-hash-size", "--num-prompts"):
            i = words.index(flag)
            del words[i:i + 2]
        command = shlex.join(words)
    got = probe(sys.executable, VLLM, wheel_root(work, "vllm"), result.path, command)
    rows = np.array(got["rows"], dtype=np.float64).reshape(-1, 4)
    src = frame.sort("arrival_s", maintain_order=True)
    if rows.shape[0] != src.height:
        return [f"vLLM reads {rows.shape[0]} rows of {src.height}"]
    problems = []
    if np.abs(rows[:, 0] - _rebased(src)).max() > 1e-6:
        problems.append("timestamps (s) differ")
    if not (rows[:, 1] == src["input_tokens"].to_numpy()).all():
        problems.append("prompt lengths differ")
    if not (rows[:, 2] == src["output_tokens"].clip(1).to_numpy()).all():
        problems.append("output lengths differ")
    if "hash_ids" in src.columns:
        ids = src["hash_ids"].to_list()
        lens = src["input_tokens"].to_numpy()
        want = [0] + [min(512 * _common_prefix(ids[i - 1], ids[i]), lens[i - 1], lens[i])
                      for i in range(1, len(ids))]
        if not (rows[:, 3] == np.array(want)).all():
            problems.append("shared prompt prefixes differ from the trace's hash-id prefixes")
    return problems


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def check_sglang(work: Path, result: Export, frame: pl.DataFrame) -> list[str]:
    got = probe(sys.executable, SGLANG, wheel_root(work, "sglang"), result.path,
                result.command)
    rows = np.array(got["rows"], dtype=np.float64).reshape(-1, 3)
    src = frame.sort("arrival_s", maintain_order=True)
    if rows.shape[0] != src.height:
        return [f"SGLang reads {rows.shape[0]} rows of {src.height}"]
    problems = []
    if np.abs(rows[:, 0] - _rebased(src)).max() > 1e-3:
        problems.append("send times differ")
    if not (rows[:, 2] == src["output_tokens"].clip(1).to_numpy()).all():
        problems.append("output lengths differ")
    # SGLang ignores input_length: a prompt is 128 words per id, so input rounded up to 128
    inp = src["input_tokens"].to_numpy()
    whole = np.ceil(inp / 128) * 128
    long = inp >= 1024
    ratio = rows[long, 1] / whole[long]
    if np.abs(ratio - 1).max() > 0.03:
        problems.append(f"prompt / input_length rounded up to 128 from {ratio.min():.2f} to "
                        f"{ratio.max():.2f}")
    return problems


def check_aiperf(work: Path, result: Export, kind: str, frame: pl.DataFrame,
                 block: int) -> list[str]:
    got = probe(venv_python(work, "aiperf"), AIPERF, kind, result.path)
    src = frame.sort("arrival_s", maintain_order=True)
    if kind == "multi_turn":  # one line per session: compare in the file's session order
        order = {sid: i for i, sid in enumerate(dict.fromkeys(r[5] for r in got["rows"]))}
        src = src.with_columns(pl.col("session").replace_strict(order, default=None)
                               .alias("_o")).sort("_o", maintain_order=True)
    problems = [] if got["detected"] else [f"AIPerf does not detect {kind}"]
    rows = got["rows"]
    if len(rows) != src.height:
        return [*problems, f"{len(rows)} rows read, {src.height} written"]
    ms = np.round((src["arrival_s"] - frame["arrival_s"].min()).to_numpy() * 1000)
    stamps = np.array([np.nan if r[0] is None else r[0] for r in rows], dtype=np.float64)
    known = ~np.isnan(stamps)
    if np.abs(stamps[known] - ms[known]).max() > 0.5:
        problems.append("timestamps (ms) differ")
    if kind == "mooncake_trace" and "think_s" in src.columns:
        think = (src["think_s"].to_numpy() * 1000).round()
        delays = [(r[1], t) for r, t in zip(rows, think, strict=True) if r[1] is not None]
        if any(d != t for d, t in delays):
            problems.append("delays are not the think times")
    if kind != "multi_turn":
        if [r[2] for r in rows] != src["input_tokens"].to_list():
            problems.append("input lengths differ")
        if any(r[4] != -(-r[2] // block) for r in rows):
            problems.append(f"hash_ids are not ceil(input_length / {block}) blocks")
    if [r[3] for r in rows] != src["output_tokens"].clip(1).to_list():
        problems.append("output lengths differ")
    want = sorted(src.group_by("session").len()["len"].to_list()) \
        if "session" in src.columns else None
    if got["sessions"] is not None and got["sessions"] != want:
        problems.append("conversations differ from the sessions")
    if result.carried:  # a mix: each request's extra body is its model and priority
        extra = [r[6] or {} for r in rows]
        for col in result.carried:
            if [e.get(col) for e in extra] != src[col].to_list():
                problems.append(f"request bodies' {col} differ from the trace's")
    if kind == "mooncake_trace" and want is not None:
        per = sorted(pl.Series([r[5] for r in rows]).value_counts()["count"].to_list())
        if per != want:
            problems.append("session_id groups differ from the sessions")
    return problems


def check_guidellm(work: Path, result: Export, frame: pl.DataFrame) -> list[str]:
    data = shlex.split(result.command)[-1]
    got = probe(venv_python(work, "guidellm"), GUIDELLM, "-", data)
    rows = np.array(got["rows"], dtype=np.float64).reshape(-1, 4)
    if rows.shape[0] != frame.height:
        return [f"{rows.shape[0]} rows read, {frame.height} written"]
    problems = []
    if not np.array_equal(np.sort(rows[:, 1]), np.sort(frame["input_tokens"].to_numpy())):
        problems.append("input lengths differ")
    if not (rows[:, 3] == rows[:, 1]).all():
        problems.append("generated prompts are not of the requested length")
    return problems


def check_iperf(work: Path, result: Export, frame: pl.DataFrame, block: int) -> list[str]:
    got = probe(venv_python(work, "iperf"), IPERF, "-", result.path)
    rows = pl.DataFrame(got["rows"], schema=["session", "t", "in", "out", "think", "ids",
                                             "block"], orient="row")
    src = frame.with_columns((pl.col("arrival_s") - pl.col("arrival_s").min().over("session"))
                             .alias("t"))
    problems = []
    if got["conversations"] != src["session"].n_unique() or rows.height != src.height:
        return [f"{got['conversations']} conversations, {rows.height} requests read"]
    a = rows.sort("session", "t", "in")
    b = src.sort("session", "t", "input_tokens")
    if (a["t"] - b["t"]).abs().max() > 1e-9:
        problems.append("t differs")
    if not a["in"].equals(b["input_tokens"].alias("in")):
        problems.append("input lengths differ")
    if not a["think"].equals(b["think_s"].alias("think")):
        problems.append("think times differ")
    if (a["block"] != block).any() or (a["ids"] < a["in"] // block).any():
        problems.append("blocks differ")
    return problems


def check_vidur(work: Path, result: Export, frame: pl.DataFrame) -> list[str]:
    got = probe(venv_python(work, "vidur"), VIDUR, "-", result.path, result.command)
    rows = np.array(got["rows"], dtype=np.float64).reshape(-1, 3)
    src = frame.sort("arrival_s", maintain_order=True)
    if rows.shape[0] != src.height:
        return [f"{rows.shape[0]} rows read, {src.height} written"]
    problems = []
    if np.abs(rows[:, 0] - src["arrival_s"].to_numpy()).max() > 1e-6:
        problems.append("arrivals (s) differ")
    if not (rows[:, 1] == src["input_tokens"].clip(1).to_numpy()).all():
        problems.append("prefill tokens differ")
    if not (rows[:, 2] == src["output_tokens"].clip(1).to_numpy()).all():
        problems.append("decode tokens differ")
    return problems


def _expect_failure(problems: list[str]) -> list[str]:
    """A variant that must fail on the consumer (kept to show what the default fixes)."""
    if problems and not any(p.startswith("could not run") for p in problems):
        print(f"    (fails as expected: {'; '.join(problems)})", flush=True)
        return []
    return problems or ["expected this variant to fail on the consumer, it did not"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/servetrace-consumers"))
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    n = args.rows
    azure = azure_llm_2023.load([SHARED / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"],
                                "azure_llm_2023/conv").tables["requests"].head(n)
    moon = mooncake.load([SHARED / "mooncake_fast25" / "conversation_trace.jsonl"],
                         "mooncake/conversation").tables["requests"].head(n)
    files = sorted((SHARED / "agentic_coding_weka").glob("*.json"))[:10]
    weka = agentic_coding_weka.load(files, "agentic_coding_weka").tables["requests"]
    wk = {"hash_block_tokens": 64, "hash_scope": "session"}
    mix = moon.with_columns(  # mix columns on a real trace: 20 adapters, two priorities
        (pl.lit("lora-") + (pl.int_range(pl.len()) * 7 % 20).cast(pl.String)).alias("model"),
        (pl.int_range(pl.len()) % 2).alias("priority"),
        pl.when(pl.int_range(pl.len()) % 2 == 0).then(pl.lit("online"))
        .otherwise(pl.lit("batch")).alias("request_class"),
        pl.format("s{}", pl.int_range(pl.len()) // 3).alias("session"))
    cases = [
        ("vllm", "vllm-mooncake", moon, {}, "Mooncake conv",
         lambda r, f: check_vllm(args.work, r, f)),
        ("vllm", "vllm-mooncake", azure, {}, "Azure 2023 conv",
         lambda r, f: check_vllm(args.work, r, f)),
        ("vllm", "vllm-mooncake", moon, {}, "Mooncake, defaults",
         lambda r, f: _expect_failure(check_vllm(args.work, r, f, defaults=True))),
        ("sglang", "sglang-mooncake", moon, {}, "Mooncake conv",
         lambda r, f: check_sglang(args.work, r, f)),
        ("sglang", "sglang-mooncake", moon, {"block_size": 512}, "Mooncake conv, 512",
         lambda r, f: _expect_failure(check_sglang(args.work, r, f))),
        ("aiperf", "aiperf-mooncake", weka, wk, "WEKA sessions",
         lambda r, f: check_aiperf(args.work, r, "mooncake_trace", f, 64)),
        ("aiperf", "aiperf-mooncake", moon, {}, "Mooncake conv",
         lambda r, f: check_aiperf(args.work, r, "mooncake_trace", f, 512)),
        ("aiperf", "aiperf-mooncake", mix, {"priority": True}, "Mooncake + mix",
         lambda r, f: check_aiperf(args.work, r, "mooncake_trace", f, 512)),
        ("aiperf", "aiperf-multi-turn", mix, {"priority": True}, "Mooncake + mix",
         lambda r, f: check_aiperf(args.work, r, "multi_turn", f, 0)),
        ("aiperf", "aiperf-bailian", weka, wk, "WEKA sessions",
         lambda r, f: check_aiperf(args.work, r, "bailian_trace", f, 16)),
        ("aiperf", "aiperf-multi-turn", weka, {}, "WEKA sessions",
         lambda r, f: check_aiperf(args.work, r, "multi_turn", f, 0)),
        ("guidellm", "guidellm", azure, {}, "Azure 2023 conv",
         lambda r, f: check_guidellm(args.work, r, f)),
        ("guidellm", "guidellm-mooncake", moon, {}, "Mooncake conv",
         lambda r, f: check_guidellm(args.work, r, f)),
        ("guidellm", "guidellm-weka", weka, wk, "WEKA sessions",
         lambda r, f: check_guidellm(args.work, r, f)),
        ("iperf", "weka", weka, wk, "WEKA sessions",
         lambda r, f: check_iperf(args.work, r, f, 64)),
        ("vidur", "vidur-pypi", azure, {}, "Azure 2023 conv",
         lambda r, f: check_vidur(args.work, r, f)),
    ]
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for i, (consumer, name, frame, opts, source, check) in enumerate(cases):
            if args.only and consumer not in args.only:
                continue
            suffix = "" if name == "weka" else ".jsonl" if "vidur" not in name else ".csv"
            result = export(frame, name, Path(tmp) / f"{i}-{name}{suffix}", **opts)
            try:
                problems = check(result, frame)
            except (RuntimeError, subprocess.CalledProcessError) as exc:
                problems = [f"could not run: {exc}"]
            failed |= bool(problems)
            verdict = "OK" if not problems else "FAILED: " + "; ".join(problems)
            print(f"{name:<18} {source:<19} -> {consumer:<8} {frame.height:>5} rows: {verdict}",
                  flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
