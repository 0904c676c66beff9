"""The ledger's id → home map, compact enough for a whole movies.csv in one folder.

A dict of id strings to homes costs ~110 bytes per id: 300,000 ids would be ~33 MB of a
512 MB Lambda, and a run's own commits would grow it as it goes. Canonical IMDb ids are
numbers, and a folder holds few distinct homes (one per file and outcome), so this keeps
sorted ``array`` columns of numbers and home slots (16 bytes per id), a small dict of recent
additions merged into them in batches, and a plain dict for the rare non-canonical key (an
invalid value's label).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from tmdb_async.imdb import canonical_form, canonical_number
from tmdb_async.lake.sorted_columns import merge_recent

Outcome = Literal["record", "not_found", "invalid", "failed", "deleted"]
"""What a folder holds for an id: its record, or the sidecar entry saying why there is none."""


@dataclass(frozen=True, slots=True)
class Home:
    """Where an id lives in the folder, with its outcome and the shape that made it."""

    file: str  # relative to the folder: "movies-00000042-00.json", "_sidecars/movies-….json"
    outcome: Outcome
    shape: str


class HomeIndex(Mapping[str, Home]):
    """id → :class:`Home`."""

    MERGE_AT = 8192  # recent additions kept in a dict before they join the sorted columns

    def __init__(self) -> None:
        self._numbers = array("q")
        self._slots = array("l")
        self._recent: dict[int, int] = {}
        self._other: dict[str, int] = {}
        self._homes: list[Home] = []
        self._slot_of: dict[Home, int] = {}

    def _slot(self, home: Home) -> int:
        slot = self._slot_of.get(home)
        if slot is None:
            slot = self._slot_of[home] = len(self._homes)
            self._homes.append(home)
        return slot

    def _find(self, number: int) -> int:
        """Position of ``number`` in the sorted columns, or -1."""
        at = bisect_left(self._numbers, number)
        return at if at < len(self._numbers) and self._numbers[at] == number else -1

    def get(self, key: str, default: Home | None = None) -> Home | None:  # type: ignore[override]
        number = canonical_number(key)
        if number is None:
            slot = self._other.get(key)
        else:
            slot = self._recent.get(number)
            if slot is None and (at := self._find(number)) >= 0:
                slot = self._slots[at]
        return default if slot is None else self._homes[slot]

    def __getitem__(self, key: str) -> Home:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def set(self, key: str, home: Home) -> None:
        number = canonical_number(key)
        if number is None:
            self._other[key] = self._slot(home)
        else:
            self.set_number(number, home)

    def set_number(self, number: int, home: Home) -> None:
        slot = self._slot(home)
        at = self._find(number)
        if at >= 0:
            self._slots[at] = slot
            return
        self._recent[number] = slot
        if len(self._recent) >= self.MERGE_AT:
            self._merge()

    def extend(self, items: Iterable[tuple[int | str, Home]]) -> None:
        """Add ``items`` (IMDb number or other key, home): checkpoint pages read in order, so
        numbers above every one held are appended to the columns, with no bisection."""
        numbers, slots = self._numbers, self._slots
        for key, home in items:
            if isinstance(key, str):
                self.set(key, home)
            elif (not numbers or key > numbers[-1]) and key not in self._recent:
                numbers.append(key)
                slots.append(self._slot(home))
            else:
                self.set_number(key, home)

    def _merge(self) -> None:
        self._numbers, self._slots = merge_recent(self._numbers, self._slots, self._recent)
        self._recent = {}

    def __len__(self) -> int:
        return len(self._numbers) + len(self._recent) + len(self._other)

    def __iter__(self) -> Iterator[str]:
        for key, _ in self.items():
            yield key

    def items(self) -> Iterator[tuple[str, Home]]:  # type: ignore[override]
        homes = self._homes
        for number, slot in zip(self._numbers, self._slots, strict=True):
            yield canonical_form(number), homes[slot]
        for number, slot in self._recent.items():
            yield canonical_form(number), homes[slot]
        for key, slot in self._other.items():
            yield key, homes[slot]

    def groups(self) -> Iterator[tuple[Home, array[int], list[str]]]:
        """(home, its canonical numbers, its other keys): what a checkpoint stores."""
        numbers: dict[int, array[int]] = {}
        for number, slot in zip(self._numbers, self._slots, strict=True):
            numbers.setdefault(slot, array("q")).append(number)
        for number, slot in self._recent.items():
            numbers.setdefault(slot, array("q")).append(number)
        others: dict[int, list[str]] = {}
        for key, slot in self._other.items():
            others.setdefault(slot, []).append(key)
        for slot in sorted(numbers.keys() | others.keys()):
            yield self._homes[slot], numbers.get(slot, array("q")), others.get(slot, [])
