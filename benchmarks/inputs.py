"""Id lists for the runs: a Compass-style CSV for the engine, a plain list for the loops."""

from __future__ import annotations

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
    found: int


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
