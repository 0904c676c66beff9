"""``--dry-run``: what a run would keep, skip, fetch and replace, and what it would cost, told
without a title request and without a write; sorted by the run's own rules, so the estimate
is what the run then does."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOKEN
from tests.support.asked import titles_asked
from tmdb_async import Credentials, Settings, run
from tmdb_async.errors import UsageError
from tmdb_async.jobs.ingest import estimate
from tmdb_async.jobs.refresh import refresh
from tmdb_async.jobs.refresh.run import refresh_estimate
from tmdb_devtools.csvgen import kind_of, title_ids, write_csv
from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig

DAY = dt.date(2022, 5, 2)


def settings(source: Path, dest: Path, url: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "credentials": Credentials(read_access_token=TOKEN),
        "tmdb_url": url,
        "date": DAY,
        "rate": 1000.0,
        "max_backoff": 0.05,
        "kind": "movie",
    }
    values.update(changes)
    return Settings(source=str(source), dest=str(dest), **values)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its bytes: a dry run must leave it as it is."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


async def test_a_dry_run_sends_no_request_and_writes_nothing(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    ids = title_ids(150, "movie")
    lake = tmp_path / "lake"
    await run(settings(write_csv(tmp_path / "first.csv", ids[:100]), lake, fake_tmdb.url))
    csv_path = write_csv(tmp_path / "movies.csv", [*ids, "tt12"])
    before = snapshot(lake)
    fake_tmdb.reset_stats()

    found = await estimate(settings(csv_path, lake, fake_tmdb.url))

    assert fake_tmdb.stats().total_requests == 0
    assert snapshot(lake) == before
    assert (found.unique_ids, found.kept, found.invalid, found.to_fetch) == (151, 100, 1, 50)
    assert found.source_ids == 151
    assert found.date == DAY.isoformat()


async def test_a_dry_run_into_an_empty_destination_creates_nothing(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    csv_path = write_csv(tmp_path / "movies.csv", title_ids(20, "movie"))
    found = await estimate(settings(csv_path, tmp_path / "lake", fake_tmdb.url))
    assert found.unknown == 20 and found.requests == (20, 60)
    assert not (tmp_path / "lake").exists()
    assert fake_tmdb.stats().total_requests == 0


async def test_the_estimate_is_what_the_run_then_does(tmp_path: Path, fake_tmdb: FakeTmdb) -> None:
    """Kept, skipped and replaced as the run counts them; the run's requests within the
    estimate's range; titles the id map knows cost one request each."""
    ids = title_ids(120, "movie")
    lake = tmp_path / "lake"
    found_ids = [i for i in ids if kind_of(int(i[2:])) == "movie"]
    await run(settings(write_csv(tmp_path / "a.csv", ids[:60]), lake, fake_tmdb.url))
    # Later days: ids[:60] have records in an earlier folder, the id map knows them.
    csv_path = write_csv(tmp_path / "b.csv", ids)
    for days, changes in ((1, {}), (2, {"skip_existing": True})):
        later = settings(csv_path, lake, fake_tmdb.url, date=DAY + dt.timedelta(days), **changes)
        found = await estimate(later)
        fake_tmdb.reset_stats()
        summary = await run(later)
        if changes:
            assert found.skipped == summary.skipped == len(found_ids)  # a record on day 1
        else:
            assert found.by_map == len(set(found_ids) & set(ids[:60]))
            assert found.unknown == 120 - found.by_map
        assert (found.kept, found.replaced) == (summary.kept, summary.replaced) == (0, 0)
        low, high = found.requests
        assert low <= summary.requests <= high
        # The run's folder now holds every id of the slice: a second estimate keeps them all.
        again = await estimate(later)
        assert again.kept == 120 - again.skipped and again.requests == (0, 0)


async def test_a_dry_run_of_other_settings_says_what_would_be_replaced_and_why(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    ids = title_ids(40, "movie")
    csv_path = write_csv(tmp_path / "movies.csv", ids)
    lake = tmp_path / "lake"
    first = await run(settings(csv_path, lake, fake_tmdb.url))
    found = await estimate(settings(csv_path, lake, fake_tmdb.url, kind="auto"))
    assert found.kept == 0 and found.replaced_other == found.replaced == 40
    assert found.differing == ["--kind movie, this run auto"]
    assert found.refused is not None and "--replace" in found.refused
    assert str(first.records + first.not_found) in found.refused
    sure = await estimate(settings(csv_path, lake, fake_tmdb.url, kind="auto", replace=True))
    assert sure.refused is None


async def test_an_offset_past_the_end_says_how_many_ids_the_source_has(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    csv_path = write_csv(tmp_path / "movies.csv", title_ids(30, "movie"))
    found = await estimate(settings(csv_path, tmp_path / "lake", fake_tmdb.url, offset=500))
    assert (found.unique_ids, found.source_ids) == (0, 30)
    summary = await run(settings(csv_path, tmp_path / "lake", fake_tmdb.url, offset=500))
    assert (summary.unique_ids, summary.source_ids) == (0, 30)


async def test_a_date_after_today_is_refused_before_any_io(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    csv_path = write_csv(tmp_path / "movies.csv", title_ids(3, "movie"))
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    for call in (run, estimate):
        with pytest.raises(UsageError, match=r"date: .* is after today .*UTC"):
            await call(settings(csv_path, tmp_path / "lake", fake_tmdb.url, date=tomorrow))
    assert not (tmp_path / "lake").exists()
    assert fake_tmdb.stats().total_requests == 0


async def test_a_refresh_dry_run_reads_the_change_lists_only_and_writes_nothing(
    tmp_path: Path,
) -> None:
    """The change lists are read (and counted); no title is asked; the state, the plan and
    the id map stay as they were; and the titles it names are those the refresh fetches."""
    today = dt.date(2026, 11, 20)
    config = FakeTmdbConfig(token=TOKEN, change_period=7, change_universe=5_000, today=today)
    ids = [f"tt{n:07d}" for n in range(1, 301)]
    lake = tmp_path / "lake"
    async with FakeTmdb(config) as fake:
        csv_path = write_csv(tmp_path / "in.csv", ids)
        await run(settings(csv_path, lake, fake.url, kind="auto", date=dt.date(2026, 11, 10)))
        before = snapshot(lake)
        fake.reset_stats()
        later = settings(Path("refresh"), lake, fake.url, date=today)
        found = await refresh_estimate(later)
        assert snapshot(lake) == before
        assert not titles_asked(fake.stats().path_counts)  # change lists only
        assert found.change_lists and found.change_list_requests == fake.stats().total_requests
        assert found.change_list_requests > 0 and found.to_fetch == found.by_map > 0
        fake.reset_stats()
        summary = await refresh(later)
    assert summary.records + summary.deleted + summary.not_found == found.to_fetch
    assert summary.requests - summary.list_pages == found.requests[0]
