"""Sorted ``array`` columns with a dict of recent additions: the one merge of the lake's
compact maps (:class:`~tmdb_async.lake.homes.HomeIndex`, :class:`~tmdb_async.lake.idmap.IdMap`).

Both keep IMDb numbers in a sorted column beside a column of values, so a lookup is a
bisection and an id costs a few bytes instead of a dict entry's ~110. Inserting into the
middle of an ``array`` is linear, so additions wait in a dict and join the columns in
batches, in one pass.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Mapping


def merge_recent(
    numbers: array[int], values: array[int], recent: Mapping[int, int]
) -> tuple[array[int], array[int]]:
    """New columns holding ``numbers``/``values`` (sorted by number) and ``recent``
    (number → value), a recent value replacing the columns' one for the same number.

    The new columns keep the type codes of the old ones."""
    merged_n, merged_v = array(numbers.typecode), array(values.typecode)
    start = 0
    for number in sorted(recent):
        at = bisect_left(numbers, number, start)
        merged_n.extend(numbers[start:at])
        merged_v.extend(values[start:at])
        merged_n.append(number)
        merged_v.append(recent[number])
        start = at + 1 if at < len(numbers) and numbers[at] == number else at
    merged_n.extend(numbers[start:])
    merged_v.extend(values[start:])
    return merged_n, merged_v
