"""GuideLLM ``kind=weka`` JSONL: WEKA agentic-coding conversations, one per line
(``guidellm run --profile kind=replay --data '{"kind": "weka", "source": {"kind":
"json_file", "path": FILE}, "hash_id_block_size": 64}'``).

Source of truth: the ``guidellm`` wheel on PyPI (checked: 0.8.1),
``guidellm/data/deserializers/trace_weka.py`` (each line of the file is one conversation
with ``id`` and a ``requests`` list; rows need ``t``, ``in``, ``out`` and ``hash_ids`` with
``floor`` or ``ceil(in / hash_id_block_size)`` ids, else the conversation is rejected; a
``type: "subagent"`` entry is replayed as a child chain spawned from the preceding parent
turn) and ``guidellm/schemas/data/deserializers/trace_weka.py`` (``WEKATraceFormatArgs``:
``hash_id_block_size`` default 64). The documents are exactly those of
:mod:`servetrace.synth.export.weka` (mapping, units and block ids there).

Units: ``t`` in **seconds** from the conversation's first request, ``think_time`` and
``api_time`` in seconds, ``hash_ids`` of ``block_size`` tokens (the command passes the same
``hash_id_block_size``).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from servetrace.synth.export import _common, weka

NAME = "guidellm-weka"
REQUIRED = weka.REQUIRED
SUFFIX = ".jsonl"


def write(frame: pl.DataFrame | pl.LazyFrame, path: Path, *, block_size: int | None = None,
          keep_hash_ids: bool = True, hash_block_tokens: int | None = None,
          hash_scope: str = "global") -> _common.Export:
    """Write ``frame`` (canonical ``requests``) as GuideLLM WEKA JSONL at ``path``, one
    conversation per line. Returns the Export with the ``guidellm run`` command line."""
    docs, size = weka.conversations(frame, block_size=block_size, keep_hash_ids=keep_hash_ids,
                                    hash_block_tokens=hash_block_tokens,
                                    hash_scope=hash_scope, fmt=NAME)
    written = _common.write_jsonl(docs.select("doc").unnest("doc"), path)
    data = {"kind": "weka", "source": {"kind": "json_file", "path": str(written)},
            "hash_id_block_size": size}
    command = _common.shell("guidellm", "run", "--target", "URL", "--profile", "kind=replay",
                            "--data", json.dumps(data))
    return _common.Export(written, command, (f"{docs.height} conversations of {size}-token "
                                             f"blocks",))
