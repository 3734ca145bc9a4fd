"""Deterministic synthetic prompts of a given length in tokens, for formats that carry text.

A prompt of ``n`` tokens is ``n`` words drawn from :data:`VOCABULARY` and joined by single
spaces. The vocabulary holds 768 common lower-case English words, each a single token both
with and without a leading space in the OpenAI BPE vocabularies ``cl100k_base`` (GPT-4, and
the base of Llama 3's 128k vocabulary) and ``o200k_base`` (GPT-4o); the words were taken in
merge order (most frequent first) from ``cl100k_base``, kept when they are dictionary words
(Debian ``wamerican``), and cleared of word fragments, code keywords and sensitive words.
BPE pre-tokenizers split text at spaces before merging, so such a prompt encodes to exactly
``n`` tokens: measured on 2,000 prompts of 0..4,000 words (``bpe-openai`` 0.1.4, offline
copies of both vocabularies), tokens / words = 1.000 for both, every prompt exact. Other
tokenizers are approximations: a SentencePiece vocabulary such as Llama 2's or Mistral's
also keeps most short common words whole, so expect a ratio near, and a little above, 1
(not measured here: no such tokenizer is available offline). A server's chat template adds
its own tokens on top.

Prompts are independent: the rows of :func:`prompts` start at distinct word positions of
one random word stream, so no two prompts share a prefix (a prefix cache finds nothing to
reuse across requests, as in a trace without ``hash_ids``). The same ``n_tokens`` and
``seed`` give the same text. The text is built without a Python loop over rows: the rows
are Arrow string views into that one word stream (zero copy; 16 bytes per row plus the
stream), returned as a Polars String series.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import polars as pl
import pyarrow as pa

VOCABULARY: tuple[str, ...] = tuple((
    "the and for this that with you new from are not was have get can all will your out has "
    "but set more his they per data one name end their who time man which any value app about "
    "add over type part work when use off other been had were file would our year some there "
    "said her like let also than just result them into what list case first act only print "
    "its back need start user under then may how people should test make after right long she "
    "read form want number require key two size where while look could know hand most try now "
    "him break every point error text show find current used play log see help these pass "
    "down even item don did through last event again high line does before because state here "
    "final run very model way call well object years default view many being good using "
    "request child person style method expect found post such think much count check open "
    "next follow car game path each support own sign those system best same create made mark "
    "group world process main color report take day top free action index real build message "
    "input art between table head must order say product double place week program response "
    "code without ref still field team second going range fact home left direct allow page "
    "around really image target both put level document local content develop too great month "
    "super title context life catch pay change position old book version three law base "
    "during against power width label project element success date big map few match node "
    "another care effect service since non full turn body stand block keep throw things red "
    "control come custom source ask output email business required might never hard called "
    "options height small access job address little port status update link given better feel "
    "already always parent got less account valid bit sure search invest rest interest "
    "perform site values won video cell player cost total load clear row short company done "
    "health children days initial online instance reason within design school consider "
    "include stop later client love able men give copy either lead family option exist offer "
    "water step display times four far present room once results continue talk grow mean "
    "until market area length kind light side example camp miss based plan away button near "
    "country author specific along express begin software win thing why single rights women "
    "season possible sent command recent money auto working window least record making close "
    "percent past write move special city tell select course late amount looking hold pot "
    "property low price today means story meet sort thought task review switch above question "
    "word provide research publish cover whether having large created host role web deal "
    "problem press though points ever services actually million files often info space store "
    "format details face save items social major expected yet food members bar send diff "
    "makes global contact except news device previous material below media fail black added "
    "buy came delete card root handle getting claim air enter location night doing pick watch "
    "human tax girl box strong house track pack section wait terms apply session others fund "
    "subject history users future started mode games products bad needs known seen border "
    "live variable provided hope young website study network limit cut went fire official "
    "visit received months learn mind quick comment series hot original bill frame draw comes "
    "filter remove front selected virtual anything hours models early center language ago "
    "easy download students due cannot white register period screen common suggest accept "
    "random hit click players among answer walk age five friend clean words header issue land "
    "stream quality works half simple empty cook nothing running someone share entry changes "
    "personal events whole needed likely writing rate correct fall features minutes similar "
    "taken son moment bring trying member foot board push please types edit defined instead "
    "idea film phone active article almost sell connect feature via install complete general "
    "reserved party normal music speed doc taking forward failed sender term probably returns "
    "weight favor loss engine issues parse stay lower perfect former six margin heart rather "
    "building security however inside graph tag attempt round friends campaign energy raise "
    "wanted policy third training prior exit release shall outside ground unique pour tree "
    "matter shows ball fast memory fit industry extra reported wrong unit takes appear coming "
    "settings quite blog everyone pretty menu names actual fields cases higher respect "
    "progress mid resource dim numbers sound alert contract lines soon join fill choose "
    "office flag note upon groups risk woman gets included cause focus multiple receive "
).split())

_WORDS = np.array(VOCABULARY)
_LENGTHS = np.char.str_len(_WORDS).astype(np.int64)
_INLINE = 12  # Arrow string views hold strings of up to 12 bytes inline
_MAX_STREAM = 2**31 - 1  # view offsets are 32-bit


def prompt(n_tokens: int, seed: int) -> str:
    """One synthetic prompt of ``n_tokens`` words (≈ tokens, see the module docstring).

    The same as ``prompts([n_tokens], seed)[0]``. Raises ``ValueError`` for a negative count.
    """
    return prompts(np.array([n_tokens]), seed)[0]


def prompts(n_tokens: np.ndarray | pl.Series | Sequence[int], seed: int) -> pl.Series:
    """One synthetic prompt per element of ``n_tokens``: a String series named ``prompt``.

    Row ``i`` holds ``n_tokens[i]`` words separated by single spaces (no leading or trailing
    space; the empty string for 0), which BPE tokenizers read as ≈ ``n_tokens[i]`` tokens.
    Rows start at distinct positions of one random stream of ``max(n) + len(n)`` words drawn
    uniformly from :data:`VOCABULARY` with ``numpy.random.default_rng(seed)``, so prompts
    share no prefix. Deterministic in (``n_tokens``, ``seed``).

    Raises ``ValueError`` when ``n_tokens`` is not one-dimensional, holds a null, a negative
    or a fractional count, or asks for a word stream of more than 2**31 - 1 bytes.
    """
    if isinstance(n_tokens, pl.Series):
        if n_tokens.null_count():
            raise ValueError("n_tokens: null token count")
        n_tokens = n_tokens.to_numpy()
    counts = np.asarray(n_tokens)
    if counts.ndim != 1:
        raise ValueError(f"n_tokens: expected a 1-D array, got shape {counts.shape}")
    if counts.size and not np.issubdtype(counts.dtype, np.integer):
        if not np.issubdtype(counts.dtype, np.floating) or not np.all(
                np.isfinite(counts) & (counts == np.floor(counts))):
            raise ValueError("n_tokens: token counts must be whole numbers")
    counts = counts.astype(np.int64)
    if counts.size and counts.min() < 0:
        raise ValueError(f"n_tokens: negative token count {int(counts.min())}")
    rows = counts.size
    if rows == 0:
        return pl.Series("prompt", [], dtype=pl.String)
    rng = np.random.default_rng(seed)
    total = int(counts.max()) + rows  # words in the stream
    chosen = rng.integers(0, _WORDS.size, size=total)
    starts = np.zeros(total + 1, dtype=np.int64)  # byte offset of each word in the stream
    np.cumsum(_LENGTHS[chosen] + 1, out=starts[1:])
    if starts[-1] > _MAX_STREAM:
        raise ValueError(f"n_tokens: {total} words need a stream over 2 GiB; export in parts")
    stream = (" ".join(_WORDS[chosen].tolist()) + " ").encode("ascii")
    first = rng.permutation(rows)  # distinct first word for every row
    offset = starts[first]
    length = np.where(counts > 0, starts[first + counts] - 1 - offset, 0)
    return pl.Series("prompt", _views(stream, offset, length))


def _views(stream: bytes, offset: np.ndarray, length: np.ndarray) -> pa.Array:
    """An Arrow ``string_view`` array whose row ``i`` is ``stream[offset[i]:][:length[i]]``.

    Layout (Arrow columnar format, variable-size binary view): 16 bytes per row, the length
    (int32) then either the string itself inline (length <= 12) or its first 4 bytes, the
    data buffer index (0) and the offset (int32) into that buffer.
    """
    rows = offset.size
    data = np.frombuffer(stream, dtype=np.uint8)
    views = np.zeros((rows, 16), dtype=np.uint8)
    views[:, 0:4] = length.astype("<i4").view(np.uint8).reshape(rows, 4)
    window = np.minimum(offset[:, None] + np.arange(_INLINE), data.size - 1)
    head = data[window]
    head[np.arange(_INLINE) >= length[:, None]] = 0
    inline = length <= _INLINE
    views[inline, 4:16] = head[inline]
    views[~inline, 4:8] = head[~inline, :4]
    views[~inline, 12:16] = (offset[~inline].astype("<i4").view(np.uint8)
                             .reshape(-1, 4))
    return pa.Array.from_buffers(pa.string_view(), rows,
                                 [None, pa.py_buffer(views), pa.py_buffer(stream)])


# -- block-structured prompts (prefix sharing) ---------------------------------------------------
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer (Steele, Lea & Flood, *Fast splittable pseudorandom number
    generators*, OOPSLA 2014): a bijection of uint64 whose outputs look independent."""
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def block_keys(hash_ids: pl.Series, session: pl.Series | None = None) -> np.ndarray:
    """One uint64 key per block of ``hash_ids`` (a List series), flattened in prompt order.

    Global scope (``session`` None): the key is the id itself. Session scope: the key mixes
    the session's text with the id, so equal ids of different sessions get different keys
    (as ``analysis.kvcache`` keys them by ``(session, id)``)."""
    ids = pl.Series(hash_ids.to_arrow().flatten())
    if ids.null_count():
        raise ValueError("hash_ids: null ids inside a list")
    key = ids.cast(pl.Int64).to_numpy().astype(np.uint64)
    if session is None:
        return key
    if session.null_count():
        raise ValueError("session scope: requests with a null session")
    lens = hash_ids.list.len().fill_null(0).to_numpy()
    salt = session.cast(pl.String).hash(seed=7).to_numpy().astype(np.uint64)
    with np.errstate(over="ignore"):
        return _mix(np.repeat(salt, lens) * _GOLDEN) ^ key


def block_prompts(hash_ids: pl.Series, input_tokens: np.ndarray | pl.Series | Sequence[int],
                  block_tokens: int, seed: int = 0, *,
                  session: pl.Series | None = None, first_row: int = 0) -> pl.Series:
    """Prompts whose shared hash-id prefixes are shared text: what a server's prefix cache
    needs to see a trace's reuse (a String series named ``prompt``, one row per request).

    Request ``i`` has ``input_tokens[i]`` words; word ``p`` belongs to block ``p //
    block_tokens`` and is word ``p % block_tokens`` of that block's text. The text of a block
    is a function of its key alone (:func:`block_keys`: the hash id, or (session, id) with
    ``session`` given) and ``seed``: ``block_tokens`` words drawn from :data:`VOCABULARY` by
    SplitMix64 of (key, position, seed). So two prompts with the same leading ids start with
    the same text, and different ids give different text (two blocks of 16 or more words
    coincide with probability at most 768**-16). A partial last block is the start of its
    block's text. Words past the last block (``input_tokens`` above ``len(hash_ids) *
    block_tokens``) and the words of a request without ``hash_ids`` are the request's own
    (keyed by its row, counted from ``first_row``), shared with no other request.

    The word count is the token count for the BPE vocabularies of the module docstring; for
    another tokenizer see :func:`exact_block_prompts`. Built without a Python loop over rows
    or words (string views into one byte stream, as :func:`prompts`).

    Raises ``ValueError`` for a block size < 1, lengths of another size than ``hash_ids``,
    negative lengths, null ids, or a stream over 2 GiB.
    """
    words = block_words(hash_ids, input_tokens, block_tokens, seed, session=session,
                        first_row=first_row)
    counts = np.asarray(input_tokens.to_numpy() if isinstance(input_tokens, pl.Series)
                        else input_tokens, dtype=np.int64)
    return _join(words, counts)


def block_words(hash_ids: pl.Series, input_tokens: np.ndarray | pl.Series | Sequence[int],
                block_tokens: int, seed: int = 0, *, session: pl.Series | None = None,
                extra: int | np.ndarray = 0, first_row: int = 0) -> np.ndarray:
    """The vocabulary index of every word of :func:`block_prompts`, flattened (request ``i``
    holds ``input_tokens[i] + extra[i]`` words; the extra ones follow the same rule). Rows
    are numbered from ``first_row`` (a request's own words depend on its row), so that the
    rows of a trace built in parts are the rows of the trace built whole."""
    if isinstance(block_tokens, bool) or not block_tokens >= 1:
        raise ValueError(f"block_tokens must be a positive integer, got {block_tokens!r}")
    if isinstance(input_tokens, pl.Series):
        if input_tokens.null_count():
            raise ValueError("input_tokens: null token count")
        input_tokens = input_tokens.to_numpy()
    counts = np.asarray(input_tokens, dtype=np.int64) + extra
    if counts.ndim != 1 or counts.size != hash_ids.len():
        raise ValueError(f"input_tokens: {counts.size} lengths for {hash_ids.len()} requests")
    if counts.size and counts.min() < 0:
        raise ValueError(f"input_tokens: negative token count {int(counts.min())}")
    keys = block_keys(hash_ids, session)
    nblocks = hash_ids.list.len().fill_null(0).to_numpy().astype(np.int64)
    first = np.zeros(counts.size, np.int64)
    np.cumsum(nblocks[:-1], out=first[1:])
    wstart = np.zeros(counts.size + 1, np.int64)
    np.cumsum(counts, out=wstart[1:])
    req = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    pos = np.arange(wstart[-1], dtype=np.int64) - wstart[req]
    blk, off = np.divmod(pos, block_tokens)
    shared = blk < nblocks[req]
    key = np.empty(pos.size, np.uint64)
    key[shared] = keys[first[req[shared]] + blk[shared]]
    # a request's own words: keyed by its row, in a domain apart from the ids (top bit set)
    own = ~shared
    key[own] = _mix((req[own] + first_row).astype(np.uint64) + np.uint64(1 << 63)) ^ blk[
        own].astype(np.uint64)
    with np.errstate(over="ignore"):
        h = _mix(_mix(key ^ np.uint64(seed) * _GOLDEN) + off.astype(np.uint64))
    return (h % np.uint64(len(VOCABULARY))).astype(np.int64)


_PADDED = np.zeros((len(VOCABULARY), int(_LENGTHS.max()) + 1), dtype=np.uint8)
for _i, _w in enumerate(VOCABULARY):
    _PADDED[_i, : len(_w)] = np.frombuffer(_w.encode("ascii"), dtype=np.uint8)
_PADDED[np.arange(len(VOCABULARY)), _LENGTHS] = ord(" ")


def _join(words: np.ndarray, counts: np.ndarray) -> pl.Series:
    """Rows of ``counts[i]`` consecutive words of ``words`` joined by single spaces."""
    rows = counts.size
    if rows == 0:
        return pl.Series("prompt", [], dtype=pl.String)
    size = _LENGTHS[words] + 1
    starts = np.zeros(words.size + 1, np.int64)
    np.cumsum(size, out=starts[1:])
    if starts[-1] > _MAX_STREAM:
        raise ValueError(f"prompts: {words.size} words need a stream over 2 GiB; replay or "
                         "export in parts")
    mask = np.arange(_PADDED.shape[1]) <= _LENGTHS[words][:, None]
    stream = _PADDED[words][mask].tobytes()
    wstart = np.zeros(rows + 1, np.int64)
    np.cumsum(counts, out=wstart[1:])
    offset = starts[wstart[:-1]]
    length = np.where(counts > 0, starts[wstart[1:]] - 1 - offset, 0)
    return pl.Series("prompt", _views(stream, offset, length))


def exact_block_prompts(hash_ids: pl.Series, input_tokens: np.ndarray, block_tokens: int,
                        count: Callable[[str], int], seed: int = 0, *,
                        session: pl.Series | None = None) -> tuple[list[str], np.ndarray]:
    """:func:`block_prompts` made exact for a tokenizer: ``(texts, token counts)``.

    ``count`` counts a text's tokens (for instance ``lambda s: len(tok.encode(s,
    add_special_tokens=False))``). Every prompt is counted once; a prompt whose count is not
    ``input_tokens[i]`` gets more or fewer words at its end (the same word sequence, run on
    past its length) until the count is ``input_tokens[i]`` or the largest below it. Only
    the end moves, so a prompt keeps the shared text of its leading blocks as long as the
    tokenizer counts about a token per word; the words of a block and the tokenizer's tokens
    no longer line up block for block when it does not. One tokenizer call per try: a loop
    over the prompts that miss, not vectorizable.
    """
    n = np.asarray(input_tokens, dtype=np.int64)
    extra = n + 8  # room to run on: up to twice the length
    words = block_words(hash_ids, n, block_tokens, seed, session=session, extra=extra)
    texts = _join(words, n + extra).to_list()
    out, counts = [], np.zeros(n.size, np.int64)
    for i, target in enumerate(n.tolist()):
        text, counts[i] = fit_words(texts[i].split(" "), target, count)
        out.append(text)
    return out, counts


def fit_words(words: list[str], target: int, count: Callable[[str], int]) -> tuple[str, int]:
    """The longest leading run of ``words`` (joined by spaces) whose ``count`` (a tokenizer's)
    is at most ``target``, and that count: a secant step on the word count (at most 16
    tokenizer calls), then words taken off while the count is over. One tokenizer call per
    try: not vectorizable."""
    k = target
    c = count(" ".join(words[:k]))
    for _ in range(16):
        if c == target:
            break
        k = min(max(k + (target - c), 0), len(words))
        c = count(" ".join(words[:k]))
    while c > target and k > 0:
        k -= 1
        c = count(" ".join(words[:k]))
    return " ".join(words[:k]), c
