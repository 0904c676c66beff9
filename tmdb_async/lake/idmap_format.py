"""The id map's files: where they live in the lake, their bytes, and the packed value a
title is kept as, in memory as on disk (:mod:`tmdb_async.lake.idmap` tells the story)::

    Raw/TMDB/_state/idmap/map.bin                    compacted base
    Raw/TMDB/_state/idmap/segments/<time>-<run>.bin  what one run learned since

A base and a segment have one format: a magic line, a JSON header line (``count``,
``merged`` segment names, ``profiles``), then ``count`` little-endian uint32 IMDb numbers,
sorted, and as many uint64 values ``deleted << 50 | tmdb_id << 10 | profile << 2 | narrow
<< 1 | tv`` (``profile`` indexes the header's list; 255: unknown; TMDB ids stay below
2**40). ``narrow`` marks a series learned by a ``--kind tv`` run, which never looked for a
movie of the same IMDb id (``--kind auto`` prefers the movie, so it does not use such an
entry). Value 0 is a tombstone, kept in segments only: forget the title. 12 bytes a title:
300,000 titles take 3.6 MB. Version 2 (no ``deleted`` bit) is read as it is; version 1 as
described in :func:`decode`. Maps already in lakes must keep loading: change this only
with a new magic line, and keep reading the old ones.

The base is only ever replaced by a conditional write (:func:`write_base`), so two runs
compacting at once cannot lose each other's base.
"""

from __future__ import annotations

import json
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from typing import Any, Final

from tmdb_async.errors import StorageError
from tmdb_async.imdb import canonical_number
from tmdb_async.lake.layout import STATE_FOLDER
from tmdb_async.lake.profile import Profile
from tmdb_async.lake.storage import Store, read_range

MAP_FOLDER: Final = f"{STATE_FOLDER}/idmap"
BASE_KEY: Final = f"{MAP_FOLDER}/map.bin"
SEGMENT_PREFIX: Final = f"{MAP_FOLDER}/segments/"
CONTENT_TYPE: Final = "application/octet-stream"

INDEX_STRIDE: Final = 2048
"""Every this many titles, the header notes (number, position): a reader wanting a range of
numbers reads the header and that range's part of the columns (:func:`read_part`)."""
_HEAD_GUESS: Final = 4096  # bytes read first: the magic line and a header with its index
_NO_HEAD: Final = "0" * 10  # the header's length, before it is known (the same width)

UNKNOWN_PROFILE: Final = 255  # a title whose profile did not fit the table (or was not known)
FORGOTTEN: Final = 0  # the tombstone value: forget the title

_MAGIC: Final = b"tmdb-ingest idmap 3\n"
_MAGIC_2: Final = b"tmdb-ingest idmap 2\n"  # read, never written: the same, with no deleted bit
_MAGIC_1: Final = b"tmdb-ingest idmap 1\n"  # read, never written: uint32 values, no profiles
_LIMIT: Final = 2**40  # TMDB ids: far above any there is, within the uint64 values
_TV: Final = 1
_NARROW: Final = 2
_PROFILE_SHIFT: Final = 2
_PROFILE_MASK: Final = 0xFF << _PROFILE_SHIFT
_ID_SHIFT: Final = 10
_DELETED: Final = 1 << 50  # above every TMDB id << _ID_SHIFT (_LIMIT)


def number_column() -> array[int]:
    """An empty column of IMDb numbers: uint32."""
    column = array("I")
    if column.itemsize != 4:  # pragma: no cover  (every platform CPython runs on today)
        column = array("L")
    return column


def value_column() -> array[int]:
    """An empty column of packed values: uint64."""
    return array("Q")


def pack(
    imdb_id: str,
    media_type: str,
    tmdb_id: object,
    narrow: bool = False,
    profile: int = UNKNOWN_PROFILE,
    *,
    deleted: bool = False,
) -> tuple[int, int] | None:
    """(IMDb number, packed value), or None for what the columns cannot hold."""
    number = canonical_number(imdb_id)
    if (
        number is None
        or number >= 2**32
        or media_type not in ("movie", "tv")
        or type(tmdb_id) is not int
        or not 0 < tmdb_id < _LIMIT
    ):
        return None
    tv = media_type == "tv"
    flags = (_NARROW if tv and narrow else 0) | (_TV if tv else 0)
    mark = _DELETED if deleted else 0
    return number, mark | tmdb_id << _ID_SHIFT | profile << _PROFILE_SHIFT | flags


def unpack(value: int) -> tuple[bool, int, bool, int, bool]:
    """(tv, TMDB id, narrow, profile index, deleted) of a packed value."""
    return (
        bool(value & _TV),
        (value & (_DELETED - 1)) >> _ID_SHIFT,
        bool(value & _NARROW),
        (value & _PROFILE_MASK) >> _PROFILE_SHIFT,
        bool(value & _DELETED),
    )


def reprofile(value: int, remap: list[int]) -> int:
    """``value`` with its profile index moved to another map's table (``remap[old]``)."""
    if not value:
        return value
    index = (value & _PROFILE_MASK) >> _PROFILE_SHIFT
    new = remap[index] if index < len(remap) else UNKNOWN_PROFILE
    return (value & ~_PROFILE_MASK) | new << _PROFILE_SHIFT


def encode(
    numbers: array[int], values: array[int], profiles: Iterable[Profile], merged: Iterable[str]
) -> bytes:
    """The bytes of a map whose sorted columns are ``numbers``/``values``."""
    # What a reader of a part needs comes first, the header's own length ("head", fixed
    # width) before all: it can start on the columns without reading the merged names.
    header = {
        "count": len(numbers),
        "head": _NO_HEAD,
        "profiles": [p.as_json() for p in profiles],
        "index": [[numbers[at], at] for at in range(0, len(numbers), INDEX_STRIDE)],
        "high": numbers[-1] if numbers else 0,
        "merged": sorted(merged),
    }
    little_n, little_v = number_column(), value_column()
    little_n.extend(numbers)
    little_v.extend(values)
    if sys.byteorder == "big":  # pragma: no cover
        little_n.byteswap()
        little_v.byteswap()
    text = json.dumps(header, separators=(",", ":")).encode()
    head = text.replace(f'"head":"{_NO_HEAD}"'.encode(), f'"head":"{len(text):010d}"'.encode(), 1)
    head += b"\n"
    return _MAGIC + head + little_n.tobytes() + little_v.tobytes()


def decode(raw: bytes, where: str) -> tuple[array[int], array[int], list[Profile], list[str]]:
    """(numbers, packed values, profile table, merged segment names) of the map in ``raw``;
    :class:`~tmdb_async.errors.StorageError` naming ``where`` when it is not one.

    Version 1 held uint32 values ``tmdb_id << 2 | narrow << 1 | tv``, written before
    profiles were kept: its titles keep their ids and flags, with an unknown profile."""
    try:
        version_1 = raw.startswith(_MAGIC_1)
        if not (version_1 or raw.startswith(_MAGIC) or raw.startswith(_MAGIC_2)):
            raise ValueError("not an id map")
        end = raw.index(b"\n", len(_MAGIC))
        header: Mapping[str, Any] = json.loads(raw[len(_MAGIC) : end])
        count = int(header["count"])
        merged = [str(name) for name in header.get("merged", [])]
        profiles = [Profile.from_json(p) for p in header.get("profiles", [])]
        body = raw[end + 1 :]
        numbers, values = number_column(), number_column() if version_1 else value_column()
        size = numbers.itemsize * count
        if len(body) != size + values.itemsize * count:
            raise ValueError("truncated")
        numbers.frombytes(body[:size])
        values.frombytes(body[size:])
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"{where}: damaged id map ({exc})") from None
    if sys.byteorder == "big":  # pragma: no cover
        numbers.byteswap()
        values.byteswap()
    if version_1:
        unknown = UNKNOWN_PROFILE << _PROFILE_SHIFT
        wide = value_column()
        wide.extend(v and (v >> 2) << _ID_SHIFT | unknown | v & 3 for v in values)
        values = wide
    return numbers, values, profiles, merged


Columns = tuple["array[int]", "array[int]", list[Profile], list[str]]


async def read_part(store: Store, key: str, low: int, high: int) -> Columns | None:
    """What :func:`decode` gives, but only the titles around ``low`` … ``high`` (a
    Distributed Map child's sorted batch), read by byte ranges through the header's index:
    a few kB instead of 12 bytes per title of the lake. ``None`` when there is no map. A
    map without an index (written before it), or one replaced between the reads, is read
    whole."""
    where = store.url(key)
    found = await read_range(store, key, 0, _HEAD_GUESS)
    if found is None:
        return None
    head, tag = found
    fields = _leading(head)
    if fields is not None and "head" in fields and not fields.keys() >= _PART_KEYS:
        found = await read_range(store, key, 0, len(_MAGIC) + int(fields["head"]) + 1)
        if found is None or found[1] != tag:
            return await _whole(store, key)  # replaced meanwhile
        fields = _leading(found[0])
    if fields is None or not fields.keys() >= _PART_KEYS:
        return await _whole(store, key)  # written before maps had an index
    try:
        count = int(fields["count"])
        end = len(_MAGIC) + int(fields["head"])
        index = [(int(n), int(at)) for n, at in fields["index"]]
        highest = int(fields["high"])
        profiles = [Profile.from_json(p) for p in fields["profiles"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"{where}: damaged id map ({exc})") from None
    merged: list[str] = []  # not read: a part is never compacted
    numbers, values = number_column(), value_column()
    lows = [n for n, _ in index]
    first = index[max(0, bisect_right(lows, low) - 1)][1] if index else 0
    after = bisect_right(lows, high)
    last = index[after][1] if after < len(index) else count
    if first < last and low <= highest:
        body = end + 1
        size_n, size_v = numbers.itemsize, values.itemsize
        # The numbers between the two index points first (4 bytes a title), then the values
        # of the titles really in the range only (8 bytes each).
        part_n = await read_range(store, key, body + size_n * first, body + size_n * last)
        if part_n is None or part_n[1] != tag:
            return await _whole(store, key)  # replaced meanwhile (a compaction)
        if len(part_n[0]) != size_n * (last - first):
            raise StorageError(f"{where}: damaged id map (truncated)")
        between = number_column()
        between.frombytes(part_n[0])
        if sys.byteorder == "big":  # pragma: no cover
            between.byteswap()
        start, stop = bisect_left(between, low), bisect_right(between, high)
        if start < stop:
            at = body + size_n * count + size_v * (first + start)
            part_v = await read_range(store, key, at, at + size_v * (stop - start))
            if part_v is None or part_v[1] != tag:
                return await _whole(store, key)
            if len(part_v[0]) != size_v * (stop - start):
                raise StorageError(f"{where}: damaged id map (truncated)")
            numbers = between[start:stop]
            values.frombytes(part_v[0])
            if sys.byteorder == "big":  # pragma: no cover
                values.byteswap()
    return numbers, values, profiles, merged


_PART_KEYS: Final = frozenset({"count", "head", "profiles", "index", "high"})


def _leading(head: bytes) -> dict[str, Any] | None:
    """The header's fields that are whole in ``head`` (the start of a map), in order; None
    when it is not a map of this version."""
    if not head.startswith(_MAGIC):
        return None
    text = head[len(_MAGIC) :].decode("ascii", errors="replace")
    if not text.startswith("{"):
        return None
    decoder = json.JSONDecoder()
    found: dict[str, Any] = {}
    at = 1
    while True:
        try:
            key, at = decoder.raw_decode(text, at)
            if text[at] != ":":
                return found
            value, at = decoder.raw_decode(text, at + 1)
        except (ValueError, IndexError):
            return found  # cut off here
        found[str(key)] = value
        if at >= len(text) or text[at] != ",":
            return found
        at += 1


async def _whole(store: Store, key: str) -> Columns | None:
    raw = await store.get(key)
    return None if raw is None else decode(raw, store.url(key))


async def write_base(store: Store, data: bytes, etag: str | None) -> None:
    """Replace the base read with ``etag`` (None: there was none) by ``data``;
    :class:`~tmdb_async.lake.storage.Conflict` when another run replaced it meanwhile."""
    await store.write(BASE_KEY, data, CONTENT_TYPE, if_none_match=etag is None, if_match=etag)


async def write_segment(store: Store, name: str, data: bytes) -> None:
    await store.write(SEGMENT_PREFIX + name, data, CONTENT_TYPE)


async def segment_names(store: Store) -> list[str]:
    """The names of the segments in the lake, oldest first (names start with the time)."""
    return sorted(k.rsplit("/", 1)[-1] for k in await store.list(SEGMENT_PREFIX))
