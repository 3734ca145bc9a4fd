"""Passes over a long array in chunks that give NumPy's results bit for bit.

The fit of a large trace holds its arrival times (8 bytes a request) and nothing else of
that length: gaps, rescaled gaps and their transforms are produced chunk by chunk from the
times, as generators of arrays. :func:`pairwise_sum` adds such a stream as ``np.sum`` adds
the whole array: NumPy sums a contiguous float64 array pairwise, splitting n values into
the first ⌊n/2⌋ rounded down to a multiple of 8 and the rest, down to blocks of at most
128 (``pairwise_sum`` in NumPy's ``loops_utils.h``); any node of that tree is summed the
same way by ``np.sum`` of the node alone, so the stream is cut at the tree's nodes of at
most :data:`LEAF` values and the node sums combined as NumPy combines them. Means and
standard deviations follow NumPy's ``_mean`` and ``_var`` (Σx / n, then Σ (x − x̄)² / n
with x̄ from the same sum). Order statistics and maxima need no order of addition.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

import numpy as np

#: Largest node of NumPy's pairwise tree summed in one ``np.sum`` (8 MB of float64).
LEAF = 1 << 20

Chunks = Callable[[], Iterator[np.ndarray]]
"""A restartable stream: each call yields the array's values again, chunk by chunk."""


class _Cursor:
    """Consecutive slices of a stream of chunks, whatever their sizes."""

    def __init__(self, chunks: Iterable[np.ndarray]) -> None:
        self._it = iter(chunks)
        self._buf = np.empty(0)

    def take(self, k: int) -> np.ndarray:
        parts, need = [], k
        while need:
            if not self._buf.size:
                self._buf = next(self._it)
                continue
            part, self._buf = self._buf[:need], self._buf[need:]
            parts.append(part)
            need -= part.size
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def pairwise_sum(chunks: Iterable[np.ndarray], n: int) -> float:
    """``np.sum`` of the ``n`` values the chunks hold end to end, bit for bit."""
    cursor = _Cursor(chunks)
    leaf = max(LEAF, 128)  # NumPy sums up to 128 values in one block: no node below

    def node(k: int) -> float:
        if k <= leaf:
            return float(np.sum(cursor.take(k))) if k else 0.0
        half = k // 2
        half -= half % 8
        return node(half) + node(k - half)  # left first: the stream's order

    return node(n)


def count(chunks: Chunks) -> int:
    return sum(int(c.size) for c in chunks())


def mean_std(chunks: Chunks, n: int) -> tuple[float, float]:
    """``x.mean()`` and ``x.std()`` (ddof 0) of the stream's ``n`` values, bit for bit."""
    mean = pairwise_sum(chunks(), n) / n

    def squares() -> Iterator[np.ndarray]:
        for c in chunks():
            d = c - mean
            d *= d
            yield d

    return mean, math.sqrt(pairwise_sum(squares(), n) / n)


def gather(chunks: Iterable[np.ndarray], index: np.ndarray) -> np.ndarray:
    """The values at the sorted positions ``index`` of the stream (no full copy)."""
    out, at, lo = [], 0, 0
    for c in chunks:
        hi = lo + c.size
        stop = int(np.searchsorted(index, hi))
        if stop > at:
            out.append(c[index[at:stop] - lo])
            at = stop
        lo = hi
    return np.concatenate(out) if out else np.empty(0)


def diffs(t: np.ndarray, chunk: int, *, nonzero: bool = False) -> Iterator[np.ndarray]:
    """``np.diff(t)`` (without its zeros with ``nonzero``), ``chunk`` gaps at a time."""
    for lo in range(0, max(t.size - 1, 0), chunk):
        d = np.diff(t[lo:lo + chunk + 1])
        yield d[d != 0] if nonzero else d
