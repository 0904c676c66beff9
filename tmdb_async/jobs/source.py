"""Reading ids: stream a CSV (or a Distributed Map batch) into unique IMDb ids.

The Compass files are large (~165 MB), '|'-separated, one row per artist, so the same id
repeats on many consecutive rows. This module streams bytes line by line (memory stays flat),
finds the id column and delimiter from the header, validates each id, and yields each
distinct id value once, numbered in first-seen order. ``offset``/``limit`` slice that
numbering, so one file can be split into batches that never overlap.

Records are one per physical line: a quoted field may contain the delimiter, not a newline
(the Compass export never does). That keeps line numbers exact in error messages. A line ends
at LF, CRLF or a lone CR (universal newlines, as Python and Excel read them: old Excel for Mac
writes CR alone). The header and any row holding a quote are parsed by the csv module (same
rules for both, so their field counts agree); a row without a quote is split directly, which
is the common and fast case. Fields are bounded by the line limit alone
(:data:`MAX_LINE_BYTES`), not by the csv module's own 128 KiB default.

An IMDb title id is ``tt`` and 7 to 9 ASCII digits in its one canonical form: exactly 7 digits
(zero-padded) below 10,000,000, otherwise no leading zero. Anything else is yielded once with
the reason in ``problem`` (never sent to TMDB): Unicode digits (``tt０１３３０９３``), a
zero-padded variant or upper-case ``TT`` (the reason names the canonical form), or a number
longer than IMDb could issue (8-digit ids exist since 2018; 9 digits leave decades of room).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import re
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from tmdb_async.errors import InputError
from tmdb_async.imdb import canonical_number, check_id

ID_COLUMNS = ("id", "imdb_id", "tconst")
DELIMITERS = ("|", ",", ";", "\t")
MAX_LINE_BYTES = 1 << 20  # a line longer than 1 MiB is not a CSV row of this data set
# Canonical numbers below this bound are bits of a bitmap: 2**27 bits = 16 MiB at most, which
# covers every id IMDb has issued (~tt4e7 in 2025) with decades to spare; the bitmap grows
# with the largest such number seen. Valid numbers above it (and invalid values) go to a set.
BITMAP_NUMBERS = 1 << 27
_BITMAP_BYTES = BITMAP_NUMBERS // 8
_SHORT_KEY = 64  # an invalid value longer than this is remembered by a 16-byte digest


@dataclass(frozen=True, slots=True)
class IdEntry:
    """One distinct value of the id column.

    ``position`` numbers distinct values from 0 in first-seen order over the whole source
    (before ``offset``), so it is stable for a given file and names the batch it belongs to.
    ``problem`` is ``None`` for a valid IMDb id, else why it is not one.
    """

    position: int
    imdb_id: str
    line: int
    problem: str | None = None

    @property
    def label(self) -> str:
        """How outputs name this value: itself, or for a value too long to list (an invalid
        one) a prefix and a digest, distinct for distinct values and bounded in size."""
        if len(self.imdb_id) <= MAX_LABEL:
            return self.imdb_id
        digest = hashlib.sha256(self.imdb_id.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.imdb_id[:40]}…sha256:{digest[:16]}"


MAX_LABEL = 64


@dataclass(slots=True)
class ReadStats:
    """What the reader saw; filled in as it goes."""

    rows: int = 0
    distinct: int = 0
    exhausted: bool = False


def _describe_delimiter(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else repr(delimiter)


_FIELD_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _fields_up_to_a_line() -> Iterator[None]:
    """The csv module's field limit raised to a whole line for the ``with`` block, then put
    back. The limit is process-global (128 Ki characters by default), so it is never lowered
    and never left changed for other callers; the lock keeps two threads from restoring each
    other's value. A line is at most :data:`MAX_LINE_BYTES` bytes, so no field is longer."""
    with _FIELD_LIMIT_LOCK:
        previous = csv.field_size_limit()
        csv.field_size_limit(max(previous, MAX_LINE_BYTES + 1))
        try:
            yield
        finally:
            csv.field_size_limit(previous)


def _fields(line: str, delimiter: str, where: str, number: int) -> list[str]:
    """The fields of one line: the csv module's reading of it (quotes, doubled quotes), which
    is a plain split when the line has no quote. Header and rows are both read this way."""
    if '"' not in line:
        return line.split(delimiter)
    try:
        if len(line) < csv.field_size_limit():  # no field can reach csv's limit
            return next(csv.reader([line], delimiter=delimiter), [])
        with _fields_up_to_a_line():
            return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error as exc:  # e.g. a NUL byte
        reason = str(exc).partition(" - ")[0]
        raise InputError(f"{where}: line {number}: not valid CSV ({reason})") from None


def _find_id_column(header: str, where: str) -> tuple[str, int, int]:
    """Return (delimiter, id column index, number of columns) for a header line.

    Each candidate delimiter reads the header as CSV, exactly as rows are read, so a quoted
    name holding the delimiter (``tconst,"title, original",year``) is one column.
    """
    for delimiter in DELIMITERS:
        try:
            fields = _fields(header, delimiter, where, 1)
        except InputError:
            # Not CSV with this delimiter; report it only if it would have been the one.
            names = [name.strip().strip('"').lower() for name in header.split(delimiter)]
            if any(wanted in names for wanted in ID_COLUMNS):
                raise
            continue
        names = [name.strip().strip('"').lower() for name in fields]
        for wanted in ID_COLUMNS:
            if wanted in names:
                return delimiter, names.index(wanted), len(names)
    shown = header if len(header) <= 60 else header[:57] + "..."
    if not any(delimiter in header for delimiter in DELIMITERS):
        raise InputError(
            f"{where}: line 1: unknown delimiter: the header {shown!r} has no '|', ',', ';' "
            f"or tab and no id column ({', '.join(ID_COLUMNS)})"
        )
    raise InputError(
        f"{where}: line 1: no id column: the header {shown!r} has none of {', '.join(ID_COLUMNS)}"
    )


async def _text_blocks(
    chunks: AsyncIterable[bytes], where: str
) -> AsyncIterator[tuple[int, list[str]]]:
    """Split a byte stream into blocks of whole decoded lines: (first line number, lines).

    Decoding a whole block at once is several times faster than line by line; only when a
    block is not UTF-8 are its lines decoded one by one, to name the line at fault.
    """
    carry = b""
    number = 0  # lines yielded so far
    async for chunk in chunks:
        data = carry + chunk if carry else chunk
        # The last line end; a CR that ends the data may be half of a CRLF: keep it for later
        cut = max(data.rfind(b"\n"), data.rfind(b"\r", 0, len(data) - 1))
        if cut < 0:
            carry = data
        else:
            crlf = data[cut] == 0x0A and cut > 0 and data[cut - 1] == 0x0D
            block, carry = data[: cut - 1 if crlf else cut], data[cut + 1 :]
            lines = _decode_block(block, number + 1, where)
            if len(block) > MAX_LINE_BYTES:
                _check_lengths(lines, number + 1, where)
            yield number + 1, lines
            number += len(lines)
        if len(carry) > MAX_LINE_BYTES:
            raise InputError(f"{where}: line {number + 1}: longer than {MAX_LINE_BYTES} bytes")
    if carry:
        yield number + 1, _decode_block(carry, number + 1, where)


_LINE_END = re.compile(rb"\r\n?|\n")


def _decode_block(block: bytes, first: int, where: str) -> list[str]:
    """The lines of ``block`` (which ends where a line ends): LF, CRLF and a lone CR each end
    one line."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        for number, raw in enumerate(_LINE_END.split(block), first):
            _decode(raw, number, where)
        raise AssertionError("unreachable: some line failed to decode") from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.split("\n")


def _check_lengths(lines: list[str], first: int, where: str) -> None:
    for number, line in enumerate(lines, first):
        if len(line) > MAX_LINE_BYTES // 4 and len(line.encode()) > MAX_LINE_BYTES:
            raise InputError(f"{where}: line {number}: longer than {MAX_LINE_BYTES} bytes")


def _decode(raw: bytes, number: int, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{where}: line {number}: not UTF-8 (byte 0x{raw[exc.start]:02x} at byte "
            f"{exc.start + 1} of the line); re-export the file as UTF-8"
        ) from None


class _SeenIds:
    """Which id values were seen; what an id costs never depends on how big it is.

    A valid id whose number is below :data:`BITMAP_NUMBERS` is one bit of a bitmap indexed
    by its number: ~5 MB for all of IMDb instead of ~100 bytes per distinct id in a set of
    strings. The bitmap grows by a quarter past the largest number seen, never beyond the
    bound (16 MiB; the zeros it is extended with are fresh pages, so RSS grows by the bitmap
    alone). A larger valid number is kept in a set as an int; any other value as itself, or
    as a 16-byte digest when longer than 64 characters: under ~100 bytes per distinct value.
    """

    def __init__(self) -> None:
        self._bits = bytearray()
        self._other: set[int | str | bytes] = set()

    def add_number(self, number: int) -> bool:
        """Record a valid id by its number; True when it was not seen before."""
        if number >= BITMAP_NUMBERS:
            return self._add_other(number)
        bits = self._bits
        index = number >> 3
        if index >= len(bits):
            size = min(_BITMAP_BYTES, index + 1 + len(bits) // 4)
            bits.extend(bytes(size - len(bits)))
        mask = 1 << (number & 7)
        if bits[index] & mask:
            return False
        bits[index] |= mask
        return True

    def add_value(self, value: str) -> bool:
        """Record any other value (an invalid one); True when it was not seen before."""
        if len(value) > _SHORT_KEY:
            raw = value.encode("utf-8", "surrogatepass")
            return self._add_other(hashlib.blake2b(raw, digest_size=16).digest())
        return self._add_other(value)

    def _add_other(self, key: int | str | bytes) -> bool:
        if key in self._other:
            return False
        self._other.add(key)
        return True


class _Distinct:
    """Numbers distinct id values and keeps those inside the [offset, offset+limit) slice."""

    def __init__(self, offset: int, limit: int | None, stats: ReadStats) -> None:
        self._seen = _SeenIds()
        self._last: str | None = None  # ids repeat on consecutive rows: skip those at once
        self._start = offset
        self._stop = None if limit is None else offset + limit
        self.stats = stats

    @property
    def full(self) -> bool:
        return self._stop is not None and self.stats.distinct >= self._stop

    def add(self, value: str, line: int) -> IdEntry | None:
        """The entry for ``value`` if it is new and inside the slice, else None."""
        if value == self._last:
            return None
        self._last = value
        number = canonical_number(value)
        seen = self._seen
        if not (seen.add_value(value) if number is None else seen.add_number(number)):
            return None
        position = self.stats.distinct
        self.stats.distinct += 1
        if position < self._start or (self._stop is not None and position >= self._stop):
            return None
        return IdEntry(position, value, line, None if number is not None else check_id(value))


async def read_csv_ids(
    chunks: AsyncIterable[bytes],
    *,
    where: str,
    offset: int = 0,
    limit: int | None = None,
    stats: ReadStats | None = None,
) -> AsyncIterator[IdEntry]:
    """Yield the distinct ids of a CSV byte stream that fall in the offset/limit slice.

    Raises :class:`InputError` naming ``where`` and the line for anything that is not a
    readable CSV with an id column. Stops reading once the slice is complete.
    """
    stats = stats if stats is not None else ReadStats()
    distinct = _Distinct(offset, limit, stats)
    delimiter = ""
    column = width = 0
    async for first, lines in _text_blocks(chunks, where):
        for number, line in enumerate(lines, first):
            if number == 1:
                header = line.removeprefix("\ufeff")
                if not header.strip():
                    raise InputError(f"{where}: line 1: empty header line")
                delimiter, column, width = _find_id_column(header, where)
                continue
            if not line or line.isspace():
                continue  # blank lines (often a trailing one) carry no row
            if '"' in line:
                fields = _fields(line, delimiter, where, number)
                count, value = len(fields), fields[column] if column < len(fields) else ""
            else:  # the common case, without building every field
                count = line.count(delimiter) + 1
                value = line.split(delimiter, column + 1)[column] if column < count else ""
            if count != width:
                raise InputError(
                    f"{where}: line {number}: {count} fields, the header has {width} "
                    f"(delimiter {_describe_delimiter(delimiter)})"
                )
            stats.rows += 1
            entry = distinct.add(value.strip(), number)
            if entry is not None:
                yield entry
            if distinct.full:
                return
    if delimiter == "":
        raise InputError(f"{where}: empty file: no header line")
    if stats.rows == 0:
        raise InputError(f"{where}: no data rows after the header (line 1)")
    stats.exhausted = True


def read_item_ids(
    items: Iterable[object],
    *,
    where: str = "Items",
    offset: int = 0,
    limit: int | None = None,
    stats: ReadStats | None = None,
) -> list[IdEntry]:
    """The same as :func:`read_csv_ids` for a Distributed Map batch: CSV rows as objects."""
    stats = stats if stats is not None else ReadStats()
    distinct = _Distinct(offset, limit, stats)
    entries: list[IdEntry] = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            value = item
        elif isinstance(item, Mapping):
            key = next((k for k in item if str(k).strip().lower() in ID_COLUMNS), None)
            if key is None:
                raise InputError(
                    f"{where}[{index}]: no id field (expected one of {', '.join(ID_COLUMNS)})"
                )
            value = item[key]
            if not isinstance(value, str):
                raise InputError(f"{where}[{index}].{key}: expected a string id")
        else:
            raise InputError(f"{where}[{index}]: expected an object (a CSV row) or an id string")
        stats.rows += 1
        entry = distinct.add(value.strip(), index)
        if entry is not None:
            entries.append(entry)
    stats.exhausted = True
    return entries


async def entries_in(
    entries: Sequence[IdEntry], offset: int, limit: int | None
) -> AsyncIterator[IdEntry]:
    """Entries already read (a Distributed Map batch, a refresh's titles) as the engine reads
    a CSV: those numbered ``offset`` to ``offset + limit`` (excluded; to the end without a
    limit)."""
    stop = None if limit is None else offset + limit
    for entry in entries:
        if entry.position >= offset and (stop is None or entry.position < stop):
            yield entry
