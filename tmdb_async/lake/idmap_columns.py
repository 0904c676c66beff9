"""The id map in memory: IMDb id → :class:`Title` in two sorted ``array`` columns.

A dict of 300,000 titles would cost ~35 MB of a 512 MB Lambda; the columns hold 12 bytes a
title, the same as the file (:mod:`tmdb_async.lake.idmap_format`, whose packed values they
keep), so a map loads with one copy. Additions wait in a small dict and join the columns in
batches (:func:`~tmdb_async.lake.sorted_columns.merge_recent`, the ledger's merge too).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tmdb_async.imdb import canonical_number
from tmdb_async.lake import idmap_format as fmt
from tmdb_async.lake.profile import Profile
from tmdb_async.lake.sorted_columns import merge_recent
from tmdb_async.settings import MediaType


@dataclass(frozen=True, slots=True)
class Title:
    """A title as TMDB knows it."""

    media_type: MediaType
    tmdb_id: int
    narrow: bool = False  # a series learned by a --kind tv run: --kind auto does not use it
    profile: Profile | None = None  # how its record was last fetched; None: not known
    deleted: bool = False  # TMDB removed it: watched by its TMDB id, never a shortcut


class IdMap:
    """IMDb id → :class:`Title`: sorted uint32 columns plus a dict of recent additions,
    merged into them in batches (like :class:`~tmdb_async.lake.homes.HomeIndex`)."""

    MERGE_AT = 8192

    def __init__(self, *, tombstones: bool = False) -> None:
        self._numbers = fmt.number_column()
        self._values = fmt.value_column()
        self._recent: dict[int, int] = {}
        self._tombstones = tombstones  # a segment keeps them; a map applies them
        self.profiles: list[Profile] = []  # what the values' profile indexes name

    def profile_index(self, profile: Profile | None) -> int:
        """The index of ``profile`` in this map's table, added if new (255: unknown)."""
        if profile is None:
            return fmt.UNKNOWN_PROFILE
        try:
            return self.profiles.index(profile)
        except ValueError:
            if len(self.profiles) >= fmt.UNKNOWN_PROFILE:
                return fmt.UNKNOWN_PROFILE
            self.profiles.append(profile)
            return len(self.profiles) - 1

    def __len__(self) -> int:
        self._merge()
        return len(self._numbers)

    def get(self, imdb_id: str) -> Title | None:
        number = canonical_number(imdb_id)
        value = None if number is None else self.value(number)
        return None if not value else self.title(value)

    def title(self, value: int) -> Title:
        """The :class:`Title` a packed value stands for."""
        tv, tmdb_id, narrow, index, deleted = fmt.unpack(value)
        return Title(
            "tv" if tv else "movie",
            tmdb_id,
            narrow,
            self.profiles[index] if index < len(self.profiles) else None,
            deleted,
        )

    def items(self) -> Iterator[tuple[int, int]]:
        """(IMDb number, packed value) of every title, in IMDb order."""
        self._merge()
        return zip(self._numbers, self._values, strict=True)

    def value(self, number: int) -> int | None:
        """The packed value of IMDb number ``number`` (see the format), or None."""
        value = self._recent.get(number)
        if value is None:
            numbers = self._numbers
            at = bisect_left(numbers, number)
            if at == len(numbers) or numbers[at] != number:
                return None
            value = self._values[at]
        return value

    def add(
        self,
        imdb_id: str,
        media_type: str,
        tmdb_id: object,
        narrow: bool = False,
        profile: Profile | None = None,
        deleted: bool = False,
    ) -> bool:
        """Record a title; False (nothing kept) for what the columns cannot hold."""
        packed = fmt.pack(
            imdb_id, media_type, tmdb_id, narrow, self.profile_index(profile), deleted=deleted
        )
        if packed is None:
            return False
        self._set(*packed)
        return True

    def set_packed(self, numbers: Iterable[int], values: Iterable[int]) -> None:
        """Set each IMDb number's packed value (its profile index naming this map's table),
        in order: a later value for the same number wins."""
        for number, value in zip(numbers, values, strict=True):
            self._set(number, value)

    def _set(self, number: int, value: int) -> None:
        self._recent[number] = value
        if len(self._recent) >= self.MERGE_AT:
            self._merge()

    def update(self, other: IdMap) -> None:
        """Take every title of ``other``; its entries win."""
        other._merge()
        self._merge()
        remap = [self.profile_index(p) for p in other.profiles]
        self._recent = {
            number: fmt.reprofile(value, remap)
            for number, value in zip(other._numbers, other._values, strict=True)
        }
        self._merge()

    def _merge(self) -> None:
        if not self._recent:
            return
        merged_n, merged_v = merge_recent(self._numbers, self._values, self._recent)
        self._recent = {}
        if not self._tombstones and fmt.FORGOTTEN in merged_v:
            kept = [(n, v) for n, v in zip(merged_n, merged_v, strict=True) if v != fmt.FORGOTTEN]
            merged_n, merged_v = fmt.number_column(), fmt.value_column()
            merged_n.extend(n for n, _ in kept)
            merged_v.extend(v for _, v in kept)
        self._numbers, self._values = merged_n, merged_v

    def encode(self, merged: Iterable[str] = ()) -> bytes:
        """The map's file (:func:`~tmdb_async.lake.idmap_format.encode`), naming the
        segments ``merged`` into it."""
        self._merge()
        return fmt.encode(self._numbers, self._values, self.profiles, merged)

    @classmethod
    def decode(cls, raw: bytes, where: str, *, tombstones: bool = False) -> tuple[IdMap, list[str]]:
        """The map in ``raw`` and the segment names its header says it merged."""
        numbers, values, profiles, merged = fmt.decode(raw, where)
        return cls.of_columns(numbers, values, profiles, tombstones=tombstones), merged

    @classmethod
    def of_columns(
        cls,
        numbers: array[int],
        values: array[int],
        profiles: list[Profile],
        *,
        tombstones: bool = False,
    ) -> IdMap:
        """The map of sorted columns as :mod:`~tmdb_async.lake.idmap_format` reads them."""
        idmap = cls(tombstones=tombstones)
        idmap._numbers, idmap._values = numbers, values
        idmap.profiles = profiles
        return idmap


def record_title(record: Mapping[str, Any]) -> tuple[str, str, object] | None:
    """(IMDb id, media type, TMDB id) of a record the map may keep, or None.

    A record whose TMDB data names another IMDb id than the one it is keyed by
    (``tmdb_imdb_id``, or an appended ``external_ids``) is not kept: its details would
    never confirm the entry."""
    imdb_id, media_type = record.get("imdb_id"), record.get("media_type")
    if not isinstance(imdb_id, str) or not isinstance(media_type, str):
        return None
    if _imdb_elsewhere(record):
        return None
    return imdb_id, media_type, record.get("id")


def _imdb_elsewhere(record: Mapping[str, Any]) -> bool:
    if "tmdb_imdb_id" in record:
        return True
    extra = record.get("external_ids")
    return isinstance(extra, Mapping) and extra.get("imdb_id") != record.get("imdb_id")
