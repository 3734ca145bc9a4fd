"""Alibaba ServeGen multi-turn conversations (Bailian production; NSDI'26).

Source: ``alibaba/ServeGen``, ``data/conversations/conversations_hashed.json`` (Apache-2.0),
"a selectively released dataset of multi-turn conversations. Input and output content are
replaced with block hashes to preserve privacy, while structural characteristics are
retained" (the repository README). One JSON document: a list of conversations, each a list
of turns, each turn an object with exactly six keys::

    [[{"turn": 0, "timestamp": 1736000000.5, "input_token_count": 1030,
       "output_token_count": 3, "input_tokens": [11, 12, 13], "output_tokens": [7, 8, 9]},
      {"turn": 1, ...}],
     [...]]

The file is not in ``../shared/traces`` and could not be read here: its shape (the list of
lists, the six keys, ``turn`` counting 0, 1, ... within a conversation, integer counts and
integer hash lists) is taken from a public audit script that reads the real file and asserts
exactly that; the tests write files in this shape.

Mapping, one ``requests`` row per turn:

- ``session`` = the conversation's 0-based position in the file (the release has no id);
  ``request_id`` = ``<conversation>/<position>``; ``turn`` = position + 1 (canonical turns
  count from 1; the source's 0-based ``turn`` is checked against the position, and
  mismatches are counted in ``notes["turn_mismatch"]``); ``parent_request_id`` = the
  previous turn of the conversation (null for its first);
- ``arrival_s`` = ``timestamp`` minus the smallest timestamp of the file, read as seconds
  (the unit is not documented; ServeGen's other files count seconds). The release does not
  say what its zero is either, so ``origin`` is null and the raw zero is kept in
  ``notes["timestamp_zero"]``;
- ``input_tokens``/``output_tokens`` = ``input_token_count``/``output_token_count``;
- ``hash_ids`` = ``input_tokens`` (the hashed input blocks). Neither the block size nor the
  scope of the ids is documented, and the list is far shorter than the token count, so
  ``traces.hash_block_tokens`` and ``traces.hash_scope`` are null; ``notes`` gives the
  median tokens per hash id. Ids are stored as signed 64-bit integers: an id of 2^63 or
  more (an unsigned 64-bit hash) keeps its bits, so equal ids stay equal. ``output_tokens``
  (the hashed output) has no canonical column: only its length is checked against
  ``output_token_count`` (``notes["output_hash_length_mismatch"]``).

Rejected with a reason (rows read = turns + conversations that hold no turn): a
conversation that is not a list or is empty; a turn that is not an object; a missing or
non-numeric ``timestamp`` or count, a negative or fractional count, a ``turn`` that is not a
non-negative integer; ``input_tokens`` that is not a list of integers. The document is
one JSON value, so a reject's ``line`` is 1, its ``raw`` is the turn (or conversation)
re-encoded as JSON, and its reason names the conversation and the turn's position. A file
that is not a JSON list is an error naming the file.

Counted, not rejected (``notes``): timestamps that go back within a conversation.

Cite: Yuxing Xiang, Xue Li, Kun Qian, Yan Zhang, Wenyuan Yu, Ennan Zhai, Xin Jin, Jingren
Zhou. ServeGen: Workload Characterization and Generation of Large Language Model Serving in
Production. NSDI 2026, USENIX, pp. 1845-1859.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import polars as pl

from servetrace.loaders.dataset import Dataset, Loaded, Part, RemoteFile
from servetrace.loaders.schema import validate
from servetrace.loaders.servegen import DATASET as _SERVEGEN
from servetrace.loaders.source import FormatError, parse_number, sort_by

VERSION = "1"
KEYS = ("turn", "timestamp", "input_token_count", "output_token_count", "input_tokens",
        "output_tokens")
_URL = ("https://raw.githubusercontent.com/alibaba/ServeGen/main/data/conversations/"
        "conversations_hashed.json")
# Each key's JSON text lands in a column of its own name, but for the two whose names the
# canonical table uses for something else (turn: 1-based; input_tokens: the count).
_TEXT = {"turn": "turn_text", "timestamp": "timestamp", "input_token_count": "input_token_count",
         "output_token_count": "output_token_count", "input_tokens": "input_hash_list"}
_HEAD = re.compile(rb'^\s*\[\s*\[\s*\{')
_INT_LIST = r"^\[\s*(-?\d+(\s*,\s*-?\d+)*)?\s*\]$"

DATASET = Dataset(
    name="servegen_conversations",
    title="Alibaba ServeGen multi-turn conversations (hashed)",
    citation=_SERVEGEN.citation,
    license="Apache-2.0",
    homepage="https://github.com/alibaba/ServeGen/tree/main/data/conversations",
    parts=(Part("conversations", (RemoteFile(_URL, "conversations_hashed.json"),),
                "multi-turn conversations of Bailian production, content replaced by block "
                "hashes"),),
)


def detect(path: Path) -> bool:
    """A JSON document that opens as a list of lists of objects and names the turn keys."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        start = fh.read(4096)
    return bool(_HEAD.match(start)) and b'"input_token_count"' in start


# Turns as JSON text, one row per turn; a conversation without turns is one row of its own.
_TURNS = """
with convs as (
    select unnest(doc) as conv, generate_subscripts(doc, 1) - 1 as ci
    from (select from_json(content, '["JSON"]') as doc from read_text(?))),
kinds as (
    select ci, conv, json_type(conv) = 'ARRAY' and json_array_length(conv) > 0 as ok
    from convs),
items as (
    select ci, conv, ok,
           case when ok then from_json(conv, '["JSON"]') else [conv] end as items
    from kinds)
select ci, generate_subscripts(items, 1) - 1 as pos, ok, unnest(items) as t from items
"""


def _turns(path: Path) -> pl.DataFrame:
    """``ci``, ``pos``, ``raw`` and each key's JSON text (null where absent), plus the
    structural ``reason`` of a row that is no turn."""
    with open(path, "rb") as fh:
        if fh.read(4096).lstrip()[:1] != b"[":
            raise FormatError(path, "not a JSON list of conversations", line=1)
    con = duckdb.connect()
    try:
        cols = ", ".join(f"json_extract(t, '$.{k}')::VARCHAR as {_TEXT[k]}" for k in KEYS
                         if k in _TEXT)
        frame = con.execute(
            f"select ci, pos, ok, t::VARCHAR as raw, json_type(t) as kind, "
            f"json_array_length(json_extract(t, '$.output_tokens')) as _out_len, {cols} "
            f"from ({_TURNS}) order by ci, pos", [str(path)]).pl()
    except duckdb.Error as exc:
        raise FormatError(path, f"not a JSON list of conversations: "
                                f"{str(exc).splitlines()[0][:160]}", line=1) from exc
    finally:
        con.close()
    where = pl.format("conversation {}", pl.col("ci"))
    reason = (pl.when(~pl.col("ok")).then(pl.format("{}: not a non-empty list of turns", where))
              .when(pl.col("kind") != "OBJECT").then(
                  pl.format("{}, turn at position {}: not a JSON object", where, pl.col("pos"))))
    return frame.with_columns(reason.alias("reason"))


def _ids(text: pl.Expr) -> pl.Expr:
    """``[1,2,-3]`` → ``List(Int64)``, vectorized; an id of 2^63 or more keeps its 64 bits
    (read as unsigned, reinterpreted as signed); null where the text is no list of integers
    or an id is outside [-2^63, 2^64)."""
    items = text.str.strip_chars("[] ").str.replace_all(r"\s", "").str.split(",")
    one = pl.coalesce(pl.element().cast(pl.Int64, strict=False),
                      pl.element().cast(pl.UInt64, strict=False).reinterpret(signed=True))
    parsed = (pl.when(text.str.strip_chars("[] ") == "")
              .then(pl.lit([], dtype=pl.List(pl.Int64)))
              .otherwise(items.list.eval(one)))
    ok = text.str.contains(_INT_LIST) & ~parsed.list.eval(pl.element().is_null()).list.any()
    return pl.when(ok).then(parsed)


def load(paths: list[Path], trace: str) -> Loaded:
    """Read ``conversations_hashed.json`` file(s) onto ``requests`` (see the module
    docstring). Several files are several sets of conversations: ``session`` is then
    prefixed by the file's position (``<file>.<conversation>``)."""
    frames = []
    for i, path in enumerate(paths):
        turns = _turns(Path(path))
        prefix = pl.lit(f"{i}." if len(paths) > 1 else "")
        frames.append(turns.with_columns(
            pl.lit(str(path)).alias("source"),
            (prefix + pl.col("ci").cast(pl.String)).alias("session")))
    rows = pl.concat(frames)
    turn = parse_number(pl.col("turn_text"))
    rid = pl.col("session") + "/" + pl.col("pos").cast(pl.String)
    parsed = rows.with_columns(
        parse_number(pl.col("timestamp")).alias("_t"),
        parse_number(pl.col("input_token_count")).alias("input_tokens"),
        parse_number(pl.col("output_token_count")).alias("output_tokens"),
        _ids(pl.col("input_hash_list")).alias("_hash"),
        rid.alias("request_id"),
        pl.when(pl.col("pos") > 0).then(
            pl.col("session") + "/" + (pl.col("pos") - 1).cast(pl.String))
        .alias("parent_request_id"),
        (pl.col("pos") + 1).cast(pl.Int64).alias("turn_index"),
        turn.alias("_turn"),
        # a row number for now, so that the table's own reasons can be told where they are;
        # the document is one JSON value, and every reject's line becomes 1 below
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("line"),
    )
    where = pl.format("conversation {}, turn at position {}", pl.col("ci"), pl.col("pos"))
    checks = [
        (pl.col("turn_text").is_null(), pl.format("{}: missing turn", where)),
        (pl.col("_turn").is_null() | (pl.col("_turn") < 0)
         | (pl.col("_turn") != pl.col("_turn").floor()),
         pl.format("{}: turn is not a non-negative integer: {}", where, pl.col("turn_text"))),
        (pl.col("input_hash_list").is_null(), pl.format("{}: missing input_tokens", where)),
        (pl.col("_hash").is_null(),
         pl.format("{}: malformed input_tokens (expected a list of integers): {}", where,
                   pl.col("input_hash_list").str.slice(0, 80))),
    ]
    zero = parsed.filter(pl.col("reason").is_null())["_t"].min()
    parsed = parsed.with_columns(
        (pl.col("_t") - (zero if zero is not None else 0.0)).alias("arrival_s"))
    text = {"arrival_s": "timestamp", "input_tokens": "input_token_count",
            "output_tokens": "output_token_count"}
    valid, rejects = validate("requests", parsed, trace=trace, text=text, checks=checks,
                              fill_raw=False)
    places = parsed.select("line", where.alias("_where"))
    rejects = rejects.join(places, on="line", how="left", maintain_order="left").select(
        "trace", "source", pl.lit(1, pl.Int64).alias("line"), "raw",
        pl.when(pl.col("reason").str.starts_with("conversation ")).then(pl.col("reason"))
        .otherwise(pl.col("_where") + ": " + pl.col("reason")).alias("reason"))
    notes = _notes(valid, zero)
    valid = sort_by(valid.select(
        "request_id", "arrival_s", "session", "input_tokens", "output_tokens",
        pl.col("_hash").alias("hash_ids"), "parent_request_id",
        pl.col("turn_index").alias("turn")))
    return Loaded(tables={"requests": valid}, rejects=rejects, rows_read=rows.height,
                  origin=None, notes=notes, hash_block_tokens=None, hash_scope=None)


def _notes(valid: pl.DataFrame, zero: float | None) -> dict:
    notes: dict = {"timestamp_unit": "s; arrival_s counts from the smallest timestamp",
                   "timestamp_zero": zero}
    if not valid.height:
        return notes
    ratio = (pl.col("input_tokens") / pl.col("_hash").list.len()).filter(
        pl.col("_hash").list.len() > 0)
    stats = valid.select(
        pl.col("session").n_unique().alias("conversations"),
        (pl.col("_turn") != pl.col("turn_index") - 1).sum().alias("turn_mismatch"),
        (pl.col("_t").diff().over("session", order_by="turn_index") < 0).sum()
        .alias("timestamps_going_back"),
        (pl.col("_out_len").is_not_null() & (pl.col("_out_len") != pl.col("output_tokens")))
        .sum().alias("output_hash_length_mismatch"),
        ratio.median().alias("input_tokens_per_hash_id_median"),
    ).row(0, named=True)
    notes.update({k: (int(v) if isinstance(v, int) else v) for k, v in stats.items()})
    return notes
