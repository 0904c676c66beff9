"""A run never silently replaces what other record settings fetched, nor mixes formats in a
date folder: it stops before its first TMDB request with one line saying what differs, how
much and at what cost, unless ``replace`` is given; then a format change rewrites the
folder's files without a request, so one glob sees every record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.jobs.test_dry_run import settings, snapshot
from tests.support.asked import titles_asked
from tests.support.lake import read_local
from tmdb_async import run
from tmdb_async.errors import UsageError
from tmdb_devtools.csvgen import title_ids, write_csv
from tmdb_devtools.fake_tmdb import FakeTmdb

FOLDER = "Raw/TMDB/JSON/2022/05/02"


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"kind": "auto"}, "--kind movie"),
        ({"language": "fr-FR"}, "--language pt-BR"),
        ({"append_to_response": ("credits",)}, "--append credits,keywords,external_ids"),
        ({"kind": "auto", "resume": False}, "--kind movie"),  # --no-resume is no consent
    ],
)
async def test_other_record_settings_stop_the_run_before_any_request(
    tmp_path: Path, fake_tmdb: FakeTmdb, changes: dict[str, Any], named: str
) -> None:
    ids = title_ids(50, "movie")
    csv_path = write_csv(tmp_path / "movies.csv", ids)
    lake = tmp_path / "lake"
    first = await run(settings(csv_path, lake, fake_tmdb.url))
    before = snapshot(lake)
    fake_tmdb.reset_stats()
    with pytest.raises(UsageError) as refused:
        await run(settings(csv_path, lake, fake_tmdb.url, **changes))
    line = str(refused.value)
    assert "\n" not in line and named in line and "--replace" in line
    assert f"{first.records + first.not_found} answers" in line
    assert "requests" in line
    assert fake_tmdb.stats().total_requests == 0
    assert snapshot(lake) == before  # not even a manifest


async def test_replace_fetches_them_again_and_says_how_many_it_replaced(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    ids = title_ids(50, "movie")
    csv_path = write_csv(tmp_path / "movies.csv", ids)
    lake = tmp_path / "lake"
    await run(settings(csv_path, lake, fake_tmdb.url))
    fake_tmdb.reset_stats()
    summary = await run(settings(csv_path, lake, fake_tmdb.url, kind="auto", replace=True))
    assert summary.replaced == 50 and summary.kept == 0
    assert set(titles_asked(fake_tmdb.stats().path_counts)) == set(ids)
    view = read_local(lake / FOLDER)
    assert not view.duplicates() and view.all_ids() == set(ids)


async def test_the_same_settings_without_resume_are_not_refused(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    csv_path = write_csv(tmp_path / "movies.csv", title_ids(20, "movie"))
    lake = tmp_path / "lake"
    await run(settings(csv_path, lake, fake_tmdb.url))
    summary = await run(settings(csv_path, lake, fake_tmdb.url, resume=False))
    assert summary.replaced == 20


async def test_another_format_is_refused_naming_both_formats(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    csv_path = write_csv(tmp_path / "movies.csv", title_ids(30, "movie"))
    lake = tmp_path / "lake"
    await run(settings(csv_path, lake, fake_tmdb.url))
    before = snapshot(lake)
    fake_tmdb.reset_stats()
    with pytest.raises(UsageError, match=r"holds 1 json file and this run writes jsonl") as no:
        await run(settings(csv_path, lake, fake_tmdb.url, output_format="jsonl"))
    assert "\n" not in str(no.value) and "--replace" in str(no.value)
    assert fake_tmdb.stats().total_requests == 0
    assert snapshot(lake) == before


async def test_replace_rewrites_the_folder_into_the_new_format_without_a_request(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    """Every id of the folder, in the slice or not, ends once in a file of the new format;
    none is asked again, and a later run of the new format keeps them all."""
    ids = title_ids(130, "movie")
    lake = tmp_path / "lake"
    await run(settings(write_csv(tmp_path / "all.csv", ids), lake, fake_tmdb.url, chunk_size=40))
    before = read_local(lake / FOLDER)
    part = write_csv(tmp_path / "part.csv", ids[:70])
    fake_tmdb.reset_stats()
    summary = await run(
        settings(part, lake, fake_tmdb.url, output_format="jsonl", replace=True, chunk_size=40)
    )
    assert fake_tmdb.stats().total_requests == 0
    assert summary.rewritten == 130 and summary.kept == 70 and summary.records == 0
    view = read_local(lake / FOLDER)
    assert not view.duplicates() and view.all_ids() == set(ids)
    data = [name for places in view.records.values() for name, _ in places]
    assert data and all(name.endswith(".jsonl") for name in data)
    assert not list((lake / FOLDER).glob("*.json"))
    assert {i: r for i, [(_, r)] in view.records.items()} == {
        i: r for i, [(_, r)] in before.records.items()
    }  # the same records, re-encoded
    again = await run(
        settings(write_csv(tmp_path / "all.csv", ids), lake, fake_tmdb.url, output_format="jsonl")
    )
    assert again.kept == 130 and fake_tmdb.stats().total_requests == 0


async def test_records_rewritten_twice_keep_their_own_settings_and_are_kept(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    """movie/jsonl, then a tv/json run of the last id rewrites the folder to json (the
    records' settings stay movie's: a shape no manifest names), then a movie/jsonl run of
    the other ids rewrites it back: they are kept as the first run's, without a request."""
    ids = title_ids(30, "movie")
    csv_path = write_csv(tmp_path / "movies.csv", ids)
    lake = tmp_path / "lake"
    first = await run(settings(csv_path, lake, fake_tmdb.url, output_format="jsonl"))
    last = settings(csv_path, lake, fake_tmdb.url, kind="tv", offset=29, replace=True)
    assert (await run(last)).rewritten == first.records
    fake_tmdb.reset_stats()
    back = await run(
        settings(csv_path, lake, fake_tmdb.url, output_format="jsonl", limit=29, replace=True)
    )
    assert back.kept == 29 and back.records == 0 and back.rewritten >= first.records - 1
    assert fake_tmdb.stats().total_requests == 0
    view = read_local(lake / FOLDER)
    assert not view.duplicates() and view.all_ids() == set(ids)
    assert not list((lake / FOLDER).glob("*.json"))
