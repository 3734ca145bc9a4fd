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

from collections.abc import Sequence

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
