"""Id lists for the runs: a Compass-style CSV for the engine, a plain list for the loops."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from benchmarks._project import kind_of, title_ids, write_csv


@dataclass(frozen=True)
class Input:
    """One id list, as a Compass-style CSV (for the engine) and a plain list (for loops)."""

    ids: list[str]
    csv: Path
    id_file: Path
    needed_full: int  # requests a find + details run needs: 2 per found id, 1 per unknown
    found: int  # ids TMDB finds: movies in make_input's lists, any kind in input_of's


def make_input(count: int, folder: Path, *, max_artists: int = 4, start: int = 1_000_000) -> Input:
    ids = title_ids(count, "movie", start=start)
    stem = f"ids-{count}-{start}-{max_artists}"
    csv_path = folder / f"{stem}.csv"
    id_file = folder / f"{stem}.txt"
    if not csv_path.exists():
        write_csv(csv_path, ids, max_artists=max_artists)
        id_file.write_text("\n".join(ids) + "\n", encoding="utf-8")
    found = sum(1 for imdb_id in ids if kind_of(int(imdb_id[2:])) == "movie")
    return Input(ids, csv_path, id_file, needed_full=2 * found + (count - found), found=found)


def needed_requests(data: Input, detail: str) -> int:
    return data.needed_full if detail == "full" else len(data.ids)


def number(imdb_id: str) -> int:
    return int(imdb_id[2:])


def slot_of(n: int) -> str:
    """The file title number ``n`` belongs in, ``"movie"`` or ``"tv"``: the kind the fake gives
    it, or, for a number it leaves unknown, the kind of its neighbours with the same last
    digit. ``n + 10`` keeps that digit and is never a multiple of 17 when ``n`` is, so the
    fake's own rule (``kind_of``) names it. A movies file then holds the movie slots and a
    series file the tv slots, each with the fake's natural 1 in 17 unknown ids (~6%).
    """
    slot = kind_of(n) or kind_of(n + 10)
    if slot is None:
        raise AssertionError(f"the fake's kind rule changed: tt{n:07d}, tt{n + 10:07d} unknown")
    return slot


def slot_ids(count: int, slots: Collection[str], start: int) -> list[str]:
    """The first ``count`` ids from ``tt{start}`` on whose slot (:func:`slot_of`) is in
    ``slots``: ``{"movie"}`` a movies.csv, ``{"tv"}`` a series.csv, both the natural mix
    (~66% movies, ~28% series, ~6% unknown)."""
    ids: list[str] = []
    n = start
    while len(ids) < count:
        if slot_of(n) in slots:
            ids.append(f"tt{n:07d}")
        n += 1
    return ids


def composition(ids: Collection[str]) -> dict[str, int]:
    """How many of ``ids`` the fake makes movies, series (``tv``) and ``unknown``."""
    counts = Counter(kind_of(number(imdb_id)) or "unknown" for imdb_id in ids)
    return {kind: counts[kind] for kind in ("movie", "tv", "unknown")}


def input_of(name: str, ids: list[str], folder: Path, *, series: bool = False) -> Input:
    """``ids`` in this order as ``<name>.csv`` (series.csv's header when ``series``) and
    ``<name>.txt``; ``found`` counts every id TMDB finds, movie or series."""
    csv_path = folder / f"{name}.csv"
    id_file = folder / f"{name}.txt"
    write_csv(csv_path, ids, series=series)
    id_file.write_text("\n".join(ids) + "\n", encoding="utf-8")
    found = len(ids) - composition(ids)["unknown"]
    return Input(ids, csv_path, id_file, needed_full=2 * found + (len(ids) - found), found=found)
