"""Id lists for the runs: a Compass-style CSV for the engine, a plain list for the loops.

Also what a list costs in requests on each way to a record (:data:`DIRECT`, :data:`FIND`,
:data:`MAPPED`), by what the fake makes each id: the "requests needed" and "ideal" figures of
the scenarios are these costs, for the way the measured client really goes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks._project import kind_of, title_ids, write_csv

# Requests a title costs (``--detail full``), by what the fake makes it, when a client asks...
#: ``/3/movie/{imdb_id}`` first, then /find (and details by TMDB id) after a 404: the one-
#: request path. The engine's for a movie file (``--kind movie``, or ``auto`` while movies
#: outnumber the rest; no id map in a fresh destination) and the bare loop's. A series costs
#: 3 under ``auto`` (404, /find, details); under ``--kind movie`` /find ends it (2).
DIRECT: Mapping[str, int] = {"movie": 1, "tv": 3, "unknown": 2}
#: /find first, then details by TMDB id: the seeds' loop, the engine before issue 10 and the
#: engine's fallback when TMDB takes no IMDb ids on ``/3/movie``.
FIND: Mapping[str, int] = {"movie": 2, "tv": 2, "unknown": 1}
#: details by TMDB id from an id map that knows the title; an id TMDB did not know still
#: asks /find (TMDB may know it by now).
MAPPED: Mapping[str, int] = {"movie": 1, "tv": 1, "unknown": 1}


@dataclass(frozen=True)
class Input:
    """One id list, as a Compass-style CSV (for the engine) and a plain list (for loops)."""

    ids: list[str]
    csv: Path
    id_file: Path
    found: int  # ids TMDB finds: movies in make_input's lists, any kind in input_of's

    @property
    def needed_direct(self) -> int:
        """Requests of the one-request path (:data:`DIRECT`): what the engine (``--detail
        full``, ``--kind movie``, fresh destination) and the bare loop send for a movie list:
        1 per movie, 2 per unknown id (the 404, then /find)."""
        return cost(self.ids, DIRECT)

    @property
    def needed_find_details(self) -> int:
        """Requests of /find then details (:data:`FIND`): the seeds' loop's, 2 per found id,
        1 per unknown."""
        return cost(self.ids, FIND)


def make_input(count: int, folder: Path, *, max_artists: int = 4, start: int = 1_000_000) -> Input:
    """``count`` ids from ``tt{start}`` on that the fake makes movies or leaves unknown
    (~8% unknown)."""
    ids = title_ids(count, "movie", start=start)
    stem = f"ids-{count}-{start}-{max_artists}"
    csv_path = folder / f"{stem}.csv"
    id_file = folder / f"{stem}.txt"
    if not csv_path.exists():
        write_csv(csv_path, ids, max_artists=max_artists)
        id_file.write_text("\n".join(ids) + "\n", encoding="utf-8")
    found = sum(1 for imdb_id in ids if kind_of(int(imdb_id[2:])) == "movie")
    return Input(ids, csv_path, id_file, found=found)


def needed_requests(data: Input, detail: str) -> int:
    """Requests the engine needs for a movie list (fresh destination, no retries): the one-
    request path in ``full`` mode, one /find per id in ``find`` mode."""
    return data.needed_direct if detail == "full" else len(data.ids)


def cost(ids: Sequence[str], costs: Mapping[str, int]) -> int:
    """Requests ``ids`` need when every title costs what ``costs`` says for its kind."""
    return sum(costs[kind] * count for kind, count in composition(ids).items())


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
    return Input(ids, csv_path, id_file, found=found)
