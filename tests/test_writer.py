"""What counts as a data file of a date folder (``tmdb_async/writer.py``): the one rule the
refresh (the newest ingest date) and the id-map rebuild (the files to learn from) share."""

from __future__ import annotations

import datetime as dt

import pytest

from tmdb_async.writer import data_file_date, date_folder


@pytest.mark.parametrize(
    ("key", "date"),
    [
        ("Raw/TMDB/JSON/2022/05/02/movies-0001.json", dt.date(2022, 5, 2)),
        ("Raw/TMDB/JSON/2022/05/02/movies-0001.jsonl", dt.date(2022, 5, 2)),
        ("Raw/TMDB/JSON/2022/05/02/_sidecars/not_found-0001.json", None),
        ("Raw/TMDB/JSON/2022/05/02/_ledger/log/0000000001.json", None),
        ("Raw/TMDB/JSON/2022/05/02/_manifests/run.json", None),
        ("Raw/TMDB/JSON/2022/05/02/.movies-0001.json.tmp-1a2b", None),  # a local temp file
        ("Raw/TMDB/JSON/2022/05/02/movies-0001.csv", None),
        ("Raw/TMDB/JSON/2022/13/45/movies-0001.json", None),  # not a date
        ("Raw/TMDB/JSON/2022/05/movies-0001.json", None),
        ("Raw/TMDB/_state/refresh.json", None),
    ],
)
def test_a_data_file_is_json_at_the_top_of_a_date_folder(key: str, date: dt.date | None) -> None:
    assert data_file_date(key) == date


def test_every_date_folder_names_its_own_date() -> None:
    day = dt.date(2026, 11, 24)
    assert data_file_date(f"{date_folder(day)}/x.json") == day
