"""Reading ids: stream a CSV (or a Distributed Map batch) into unique IMDb ids.

The Compass files are large (~165 MB), '|'-separated, one row per artist, so the same id
repeats on many consecutive rows. This module streams bytes line by line (memory stays flat),
finds the id column and delimiter from the header, validates each id, and yields each
distinct id value once, numbered in first-seen order. ``offset``/``limit`` slice that
numbering, so one file can be split into batches that never overlap.

Records are one per physical line: a quoted field may contain the delimiter, not a newline
(the Compass export never does). That keeps line numbers exact in error messages.
"""

from __future__ import annotations

import csv
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass

from .errors import InputError

ID_COLUMNS = ("id", "imdb_id", "tconst")
DELIMITERS = ("|", ",", ";", "\t")
MAX_LINE_BYTES = 1 << 20  # a line longer than 1 MiB is not a CSV row of this data set
IMDB_ID = re.compile(r"^tt\d{7,}$")
_NULL = "\\N"


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


@dataclass(slots=True)
class ReadStats:
    """What the reader saw; filled in as it goes."""

    rows: int = 0
    distinct: int = 0
    exhausted: bool = False


def _describe_delimiter(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else repr(delimiter)


def _find_id_column(header: str, where: str) -> tuple[str, int, int]:
    """Return (delimiter, id column index, number of columns) for a header line."""
    for delimiter in DELIMITERS:
        names = [name.strip().strip('"').lower() for name in header.split(delimiter)]
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


def check_id(value: str) -> str | None:
    """Why ``value`` is not an IMDb title id, or ``None`` when it is one."""
    if value == "" or value == _NULL:
        return "empty id"
    if not IMDB_ID.match(value):
        return "not an IMDb title id (tt + 7 or more digits)"
    return None


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
        cut = data.rfind(b"\n")
        if cut < 0:
            carry = data
        else:
            block, carry = data[:cut], data[cut + 1 :]
            lines = _decode_block(block, number + 1, where)
            if len(block) > MAX_LINE_BYTES:
                _check_lengths(lines, number + 1, where)
            yield number + 1, lines
            number += len(lines)
        if len(carry) > MAX_LINE_BYTES:
            raise InputError(f"{where}: line {number + 1}: longer than {MAX_LINE_BYTES} bytes")
    if carry:
        yield number + 1, _decode_block(carry, number + 1, where)


def _decode_block(block: bytes, first: int, where: str) -> list[str]:
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        for number, raw in enumerate(block.split(b"\n"), first):
            _decode(raw, number, where)
        raise AssertionError("unreachable: some line failed to decode") from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").removesuffix("\r")
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


def _split(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter), [])


class _SeenIds:
    """Which id values were seen. A canonical IMDb id (``tt`` + its number, 7 digits or more
    without extra leading zeros) is one bit of a bitmap indexed by its number, so memory is
    bounded by the largest id (~5 MB for all of IMDb), not ~100 bytes per distinct id as in a
    set of strings; any other value goes into a small set."""

    def __init__(self) -> None:
        self._bits = bytearray()
        self._other: set[str] = set()

    def add(self, value: str) -> bool:
        """Record ``value``; True when it was not seen before."""
        digits = value[2:]
        if (
            value.startswith("tt")
            and len(digits) >= 7
            and digits.isascii()
            and digits.isdigit()
            and (len(digits) == 7 or digits[0] != "0")
        ):
            index, bit = divmod(int(digits), 8)
            if index >= len(self._bits):
                self._bits.extend(bytes(index + 1 - len(self._bits) + len(self._bits) // 4))
            mask = 1 << bit
            if self._bits[index] & mask:
                return False
            self._bits[index] |= mask
            return True
        if value in self._other:
            return False
        self._other.add(value)
        return True


class _Distinct:
    """Numbers distinct id values and keeps those inside the [offset, offset+limit) slice."""

    def __init__(self, offset: int, limit: int | None, stats: ReadStats) -> None:
        self._seen = _SeenIds()
        self._start = offset
        self._stop = None if limit is None else offset + limit
        self.stats = stats

    @property
    def full(self) -> bool:
        return self._stop is not None and self.stats.distinct >= self._stop

    def add(self, value: str, line: int) -> IdEntry | None:
        if not self._seen.add(value):
            return None
        position = self.stats.distinct
        self.stats.distinct += 1
        if position < self._start or (self._stop is not None and position >= self._stop):
            return None
        return IdEntry(position, value, line, check_id(value))


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
                fields = _split(line, delimiter)
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
