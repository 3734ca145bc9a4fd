"""Reading source files as numbered rows, so every row can be accounted for.

A source file is read as lines (decoded once, split by Polars), each kept with its 1-based
line number and its raw text, byte for byte. Splitting into fields is a vectorized string
operation, which lets a row with the wrong number of columns or a truncated JSON object be
rejected with its line instead of aborting the whole file. Gzip is decompressed
transparently. Blank lines are not rows.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import zlib
from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl


class FormatError(ValueError):
    """A file cannot be read as the format it was asked to be read as.

    The message names the file and, where there is one, the line at fault.
    """

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        self.path, self.line, self.message = str(path), line, message
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


def _gunzip(path: Path) -> bytes:
    """A gzip file's content (every member); a truncated or corrupt stream is a FormatError
    that says where the stream ended. Nothing of such a file is loaded."""
    data = path.read_bytes()
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        inflate = zlib.decompressobj(wbits=31)
        try:
            out.append(inflate.decompress(data[pos:]))
            out.append(inflate.flush())
        except zlib.error as exc:
            raise FormatError(path, f"corrupt gzip data in the member starting at compressed "
                                    f"byte {pos:,} ({exc}); no rows of this file were kept"
                              ) from exc
        if not inflate.eof:
            got = sum(map(len, out))
            lines = sum(chunk.count(b"\n") for chunk in out)
            raise FormatError(path, f"gzip stream ends early, at compressed byte {len(data):,} "
                                    f"of a truncated file (after {got:,} bytes, {lines:,} "
                                    f"complete lines of content); no rows of this file were "
                                    f"kept")
        pos = len(data) - len(inflate.unused_data)
        if not data[pos:].strip(b"\0"):  # gzip's own reader ignores trailing zero padding
            break
    return b"".join(out)


def _content(path: Path) -> bytes:
    """The bytes of a file, gunzipped when it starts with the gzip magic."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return _gunzip(path) if magic == b"\x1f\x8b" else path.read_bytes()


def check_gzip(path: str | Path) -> None:
    """Raise the :class:`FormatError` of :func:`read_lines` if ``path`` is a broken gzip."""
    path = Path(path)
    with open(path, "rb") as fh:
        if fh.read(2) == b"\x1f\x8b":
            _gunzip(path)


def head(path: str | Path, n: int = 2, *, errors: str = "replace") -> list[str]:
    """The first ``n`` non-empty lines of a (possibly gzipped) file, for format detection.

    A gzip stream that ends early just ends the lines here; reading the file says why.
    ``errors="strict"`` raises UnicodeDecodeError on a line that is not UTF-8.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    out: list[str] = []
    try:
        with opener(path, "rb") as fh:
            for raw in fh:
                line = raw.decode("utf-8", errors=errors).strip("\r\n\ufeff")
                if line.strip():
                    out.append(line)
                if len(out) >= n:
                    break
    except (EOFError, zlib.error, gzip.BadGzipFile):
        pass
    return out


_CHUNK = 1 << 26  # the line reader decodes at most this many bytes at once


def read_lines(path: str | Path) -> pl.DataFrame:
    """All lines of a file: ``line`` (1-based, Int64), ``raw`` (String) and ``reason``.

    ``raw`` is the line byte for byte, without its ``\\n`` or ``\\r\\n`` (and without a
    UTF-8 byte order mark at the start of the file); blank lines are dropped. Every byte is
    data: there is no separator of any kind. A line that is not valid UTF-8 is never
    silently replaced: its bytes that are not UTF-8 appear in ``raw`` as ``\\xNN`` and
    ``reason`` says how many there are (null for every valid line), so that the row is
    rejected. Gzip is decompressed; a truncated stream is a :class:`FormatError`.
    """
    path = Path(path)
    if not path.exists():
        raise FormatError(path, "no such file")
    data = _content(path)
    if not data.strip():
        raise FormatError(path, "empty file")
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark is not part of line 1
        data = data[3:]
    frames = []
    pos = 0
    while pos < len(data):  # a loop over 64 MiB chunks cut at line ends, not over rows
        end = len(data)
        if pos + _CHUNK < len(data):
            cut = data.rfind(b"\n", pos, pos + _CHUNK)
            cut = cut if cut >= 0 else data.find(b"\n", pos + _CHUNK)
            end = len(data) if cut < 0 else cut + 1
        frames.append(_decode_lines(data[pos:end]))
        pos = end
    del data
    frame = pl.concat(frames) if len(frames) > 1 else frames[0]
    bad = pl.col("_bad")
    reason = (pl.when(bad > 0).then(pl.format(
        "invalid UTF-8: {} byte{} shown as \\xNN in raw", bad,
        pl.when(bad == 1).then(pl.lit("")).otherwise(pl.lit("s"))))
        if frame["_bad"].max() else pl.lit(None, pl.String))  # formatted only where needed
    frame = frame.select(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("line"), "raw",
                         reason.alias("reason"))
    return frame.filter(pl.col("raw").str.strip_chars() != "")


def _decode_lines(chunk: bytes) -> pl.DataFrame:
    """Lines of ``chunk`` (whole lines): ``raw`` and ``_bad``, the count of non-UTF-8 bytes.

    Valid UTF-8 (the usual case) is decoded once and split by Polars. Otherwise the chunk is
    decoded with each invalid byte as ``\\xNN`` (4 bytes for 1, and never a newline), and a
    line's count of invalid bytes is its growth over its source length divided by 3.
    """
    try:
        text, bad = chunk.decode("utf-8"), False
    except UnicodeDecodeError:
        text, bad = chunk.decode("utf-8", "backslashreplace"), True
    lines = pl.Series("raw", [text]).str.split("\n").explode()
    if chunk.endswith(b"\n"):
        lines = lines.head(-1)
    if not bad:
        return pl.DataFrame([lines.str.strip_suffix("\r")]).with_columns(
            pl.lit(0, pl.Int64).alias("_bad"))
    ends = np.flatnonzero(np.frombuffer(chunk, np.uint8) == 10)
    if len(ends) < len(lines):
        ends = np.append(ends, len(chunk))
    source_len = np.diff(np.concatenate([[-1], ends])) - 1
    frame = pl.DataFrame([lines, pl.Series("_src", source_len, dtype=pl.Int64)])
    return frame.select(
        pl.col("raw").str.strip_suffix("\r"),
        ((pl.col("raw").str.len_bytes().cast(pl.Int64) - pl.col("_src")) // 3).alias("_bad"))


@dataclass(frozen=True)
class FileStats:
    """One pass over a file's bytes: its SHA-256 and counts that vouch for its shape."""

    sha256: str
    size: int
    newlines: int
    commas: int
    gzip: bool
    ends_with_newline: bool

    @property
    def lines(self) -> int:
        return self.newlines + (0 if self.ends_with_newline or not self.size else 1)


@functools.lru_cache(maxsize=64)
def _stats(path: str, size: int, mtime_ns: int) -> FileStats:
    h = hashlib.sha256()
    newlines = commas = 0
    last = b"\n"
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
        fh.seek(0)
        while chunk := fh.read(1 << 22):
            h.update(chunk)
            if not gz:
                newlines += chunk.count(b"\n")
                commas += chunk.count(b",")
            last = chunk[-1:]
    return FileStats(h.hexdigest(), size, newlines, commas, gz, last == b"\n")


def file_stats(path: str | Path) -> FileStats:
    """SHA-256, newline and comma counts of a file, computed once per file version."""
    return _stats(*_version(path))


_SHA256: dict[tuple[str, int, int], str] = {}


def _version(path: str | Path) -> tuple[str, int, int]:
    st = Path(path).stat()
    return str(Path(path).resolve()), st.st_size, st.st_mtime_ns


def file_sha256(path: str | Path) -> str:
    """A file's SHA-256, computed once per file version (or taken while it was streamed)."""
    key = _version(path)
    return _SHA256.get(key) or _stats(*key).sha256


def remember_sha256(path: str | Path, digest: str) -> None:
    """Record the SHA-256 of a file computed while reading it some other way (a stream), so
    :func:`file_sha256` does not read it again while it is unchanged."""
    _SHA256[_version(path)] = digest


def csv_rows(path: str | Path, columns: list[str], *, header: bool = True,
             numeric: Collection[str] = (), categorical: Collection[str] = ()
             ) -> pl.DataFrame:
    """Rows of a simple CSV (no quoted separators), numbered by line.

    Returns ``source``, ``line``, ``raw``, ``reason`` and one column per name in ``columns``,
    in that order on either path below (empty fields are null): String, except that
    ``categorical`` columns are Categorical (same values) and, on the fast path only,
    ``numeric`` columns are already Float64 (see below). ``reason`` is set for a row with the
    wrong number of fields. With ``header`` the first line is skipped; the caller checks it
    (:func:`expect_header`).

    Fast path: when the file's comma and line counts prove that every line has exactly
    ``len(columns)`` fields (no blank, short or long lines), Polars' multithreaded CSV reader
    parses it, ``numeric`` columns straight to Float64, and ``raw`` is left null
    (:func:`with_raw` fills it for the rows that end up rejected). Its result is used only if
    it is what the line-based path would give: a numeric field Polars cannot parse, or a text
    field that is empty or starts or ends with white space, sends the file down that path, and
    so does a ``numeric`` value of 2^53 or more (float64 cannot hold every integer there).
    A numeric column read as Float64 holds exactly what :func:`parse_number` gives for its
    text; a caller that quotes source text in messages takes the text of those rows from
    :func:`csv_rows_at`. Otherwise every line is read as text and split, so each malformed
    line is reported with its own line number and text.

    The file's :func:`file_stats` pass (SHA-256 and counts) runs in a thread while Polars
    parses; it is cached, so the file's hash costs nothing later.
    """
    n = len(columns)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(file_stats, path)
        fast = _fast_csv(path, columns, header, numeric, categorical)
        stats = pending.result()
    if (fast is not None and not stats.gzip and stats.size
            and stats.commas == (n - 1) * stats.lines):
        out = fast.with_columns(
            pl.lit(str(path)).alias("source"),
            pl.int_range(1 + int(header), pl.len() + 1 + int(header),
                         dtype=pl.Int64).alias("line"),
            pl.lit(None, pl.String).alias("raw"),
            pl.lit(None, pl.String).alias("reason"),
        )
    else:
        del fast
        lines = read_lines(path)
        if header:
            lines = lines.slice(1)
        out = _split(lines, path, columns, categorical)
    # Both paths give the same columns in the same order, so files read either way concatenate.
    return out.select("source", "line", "raw", "reason", *columns)


_EXACT_LIMIT = float(2**53)  # float64 holds every integer below this, and no more


def _fast_csv(path: str | Path, columns: list[str], header: bool, numeric: Collection[str],
              categorical: Collection[str]) -> pl.DataFrame | None:
    """Polars' reading of a plain CSV, or None where it may differ from the line-based one."""
    with open(path, "rb") as fh:
        if fh.read(2) == b"\x1f\x8b":
            return None
    dtypes = {c: pl.Float64 if c in numeric else pl.Categorical if c in categorical
              else pl.String for c in columns}
    try:
        fast = pl.read_csv(path, has_header=False, skip_rows=int(header), new_columns=columns,
                           schema_overrides=dtypes, infer_schema=False, quote_char='"')
    except (pl.exceptions.PolarsError, OSError):
        return None
    if fast.width != len(columns):
        return None
    nums = [c for c in columns if c in numeric]
    if nums and fast.height and fast.select(
            pl.max_horizontal(pl.when(pl.col(nums).is_finite()).then(pl.col(nums).abs())
                              .max()) >= _EXACT_LIMIT).item():
        return None  # float64 may have rounded an integer there: read the text
    text = [c for c in columns if c not in numeric]
    if text and fast.height:
        # A text field padded with white space (or empty) reads differently on the two paths.
        # Categorical columns are checked on their few distinct values only.
        def odd(c: str) -> pl.Expr:
            v = (pl.col(c).unique() if c in categorical else pl.col(c)).cast(pl.String)
            return ((v.str.strip_chars() != v) | (v == "")).any().alias(c)

        if any(fast.select([odd(c) for c in text]).row(0)):
            return None
    return fast


def _split(lines: pl.DataFrame, path: str | Path, columns: list[str],
           categorical: Collection[str] = ()) -> pl.DataFrame:
    """Numbered text lines split into String fields, with a reason for a wrong field count."""
    n = len(columns)
    fields = pl.col("raw").str.split_exact(",", n - 1) if n > 1 else None
    found = pl.col("raw").str.count_matches(",", literal=True) + 1
    out = lines.with_columns(
        pl.lit(str(path)).alias("source"),
        pl.coalesce(pl.col("reason"), pl.when(found != n).then(
            pl.format("wrong number of columns: {} (expected {})", found, pl.lit(n))
        )).alias("reason"),
    )
    if fields is None:
        parts = [pl.col("raw").alias(columns[0])]
    else:
        parts = [fields.struct.field(f"field_{i}").alias(c) for i, c in enumerate(columns)]
    return out.with_columns(parts).with_columns(
        [_clean(pl.col(c)).alias(c) for c in columns]).with_columns(
        [pl.col(c).cast(pl.Categorical) for c in columns if c in categorical])


def csv_rows_at(path: str | Path, columns: list[str], lines: Iterable[int], *,
                categorical: Collection[str] = ()) -> pl.DataFrame:
    """The rows of :func:`csv_rows`'s line-based path for the given line numbers only.

    Used on the error path to quote the source text of rows that the fast path read as
    numbers; the file is read once more, as text.
    """
    wanted = pl.Series("line", sorted(set(lines)), dtype=pl.Int64)
    picked = read_lines(path).filter(pl.col("line").is_in(wanted.implode()))
    return _split(picked, path, columns, categorical)


def with_raw(rejects: pl.DataFrame) -> pl.DataFrame:
    """Fill a null ``raw`` of rejected rows with the text of their line in ``source``.

    Rows parsed on the fast path carry no text; only rejected ones need it, so their files
    are re-read here, on the error path alone.
    """
    missing = rejects.filter(pl.col("raw").is_null())
    if missing.is_empty():
        return rejects
    texts = pl.concat([
        read_lines(src).select(pl.lit(src).alias("source"), "line", pl.col("raw").alias("_t"))
        for src in missing["source"].unique().to_list() if Path(src).is_file()
    ] or [pl.DataFrame(schema={"source": pl.String, "line": pl.Int64, "_t": pl.String})])
    return (rejects.join(texts, on=["source", "line"], how="left", maintain_order="left")
            .with_columns(pl.coalesce("raw", "_t").alias("raw")).drop("_t"))


def _clean(expr: pl.Expr) -> pl.Expr:
    expr = expr.str.strip_chars().str.strip_chars('"')
    return pl.when(expr == "").then(None).otherwise(expr)


def first_json(path: str | Path) -> Any:
    """The first line of a file parsed as JSON, or None (no such file, empty, not JSON):
    what a JSON-lines format's ``detect`` looks at."""
    path = Path(path)
    if not path.is_file():
        return None
    first = head(path, 1)
    if not first:
        return None
    try:
        return json.loads(first[0])
    except ValueError:
        return None


def header_fields(path: str | Path) -> list[str]:
    """The header line of a CSV file split into stripped field names (UTF-8, never replaced)."""
    try:
        first = head(path, 1, errors="strict")
    except UnicodeDecodeError as exc:
        raise FormatError(path, f"header is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} "
                                f"at byte {exc.start + 1} of the line)", line=1) from exc
    if not first:
        raise FormatError(path, "empty file")
    return [f.strip().strip('"') for f in first[0].split(",")]


def jsonl_rows(path: str | Path, keys: list[str]) -> pl.DataFrame:
    """Rows of a JSON-lines file with the value of each top-level key as text.

    Returns ``source``, ``line``, ``raw``, ``reason`` and one String column per key (the
    JSON text of the value: a number, a string without quotes, or a list like ``[1,2]``).
    ``reason`` is set for a line that is not a JSON object.
    """
    lines = read_lines(path)
    raw = pl.col("raw").str.strip_chars()
    values = [raw.str.json_path_match(f"$.{k}").alias(k) for k in keys]
    is_object = raw.str.starts_with("{") & raw.str.ends_with("}")
    out = lines.with_columns(values).with_columns(
        pl.lit(str(path)).alias("source"),
        pl.coalesce(pl.col("reason"), pl.when(
            ~is_object | pl.all_horizontal([pl.col(k).is_null() for k in keys]))
            .then(pl.lit("malformed JSON line"))).alias("reason"),
    )
    return out


def parse_number(text: pl.Expr) -> pl.Expr:
    """Source text to Float64; null where the text is not a number."""
    return text.cast(pl.Float64, strict=False)


def parse_timestamp(text: pl.Expr) -> pl.Expr:
    """Source text to a naive UTC ``Datetime('ns')``; null where it is not a timestamp.

    Accepts ``YYYY-MM-DD HH:MM:SS`` with 0 to 9 fractional digits, a ``T`` separator, and a
    ``Z`` or ``+00:00`` zone (the Azure 2023, 2024 and 2025 spellings). Other offsets are
    rejected rather than guessed.
    """
    t = (text.str.strip_chars().str.replace(r"(Z|[+-]00:?00)$", "")
         .str.replace("T", " ", literal=True))
    return pl.coalesce(
        t.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="ns"),
        t.str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False, time_unit="ns"),
    )


_SPELLINGS = ("%Y-%m-%d %H:%M:%S%.f+00:00", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.fZ",
              "%Y-%m-%d %H:%M:%S%.fZ", "%Y-%m-%dT%H:%M:%S%.f+00:00")


def parse_timestamps(text: pl.Series) -> pl.Series:
    """:func:`parse_timestamp` of a whole column, faster when the column has one spelling.

    The first value's spelling (one of the Azure ones, ``%.f`` matching no fraction too)
    is parsed by one strict format over the column; only the values it leaves null go
    through :func:`parse_timestamp`'s general reading. The result is the same.
    """
    first = text.drop_nulls().head(1)
    for spelling in _SPELLINGS:
        if first.str.to_datetime(spelling, strict=False).null_count() == 0 and len(first):
            fast = text.str.to_datetime(spelling, strict=False, time_unit="ns")
            missed = fast.is_null() & text.is_not_null()
            if not missed.any():
                return fast
            slow = pl.select(parse_timestamp(pl.lit(text.filter(missed)))).to_series()
            return fast.scatter(missed.arg_true(), slow)
    return pl.select(parse_timestamp(pl.lit(text))).to_series().alias(text.name)


def expect_header(path: str | Path, expected: list[str]) -> None:
    """Raise :class:`FormatError` at line 1 unless the CSV header is exactly ``expected``."""
    found = header_fields(path)
    if found != expected:
        raise FormatError(path, f"unexpected header {','.join(found)!r}; "
                                f"expected {','.join(expected)!r}", line=1)


def to_relative_seconds(frame: pl.DataFrame, column: str = "arrival_s"
                        ) -> tuple[pl.DataFrame, datetime | None]:
    """Turn an absolute ``Datetime`` column into seconds from its minimum, sorted ascending.

    Returns the frame and the origin (the minimum, naive UTC), which becomes trace metadata.
    The sort is stable, so rows with equal times keep their source order.
    """
    if frame.is_empty():
        return frame.with_columns(pl.col(column).cast(pl.Float64)), None
    origin = frame[column].min()
    out = frame.with_columns(
        ((pl.col(column) - pl.lit(origin)).dt.total_nanoseconds() / 1e9).alias(column))
    return sort_by(out, column), origin


def sort_by(frame: pl.DataFrame, column: str = "arrival_s") -> pl.DataFrame:
    """``frame`` stably sorted by ``column``; a check, not a sort, when it already is."""
    if frame.is_empty() or frame[column].is_sorted():
        return frame
    return frame.sort(column, maintain_order=True)


def csv_files(paths: list[Path] | list[str]) -> list[Path]:
    """Files named in ``paths``, each folder replaced by the ``.csv`` files under it (sorted)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.csv") if p.is_file())
            if not found:
                raise FormatError(path, "no .csv files in this folder")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise FormatError(path, "no such file or folder")
    return files


def first_csv(folder: Path) -> Path | None:
    """The first ``.csv`` file under ``folder`` in sorted order: what detection looks at."""
    return next(iter(sorted(p for p in folder.rglob("*.csv") if p.is_file())), None)
