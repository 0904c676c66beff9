"""Refresh: only the titles TMDB changed are fetched again, once each, the way they were
ingested, into the processing date's folder; the expected sets come from the fake's
documented rule (:func:`tmdb_devtools.fake_tmdb.changed_ids`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from tests.conftest import TOKEN
from tests.support.asked import titles_asked
from tests.support.kill import Killed, KillingStore, declare_dead
from tests.support.lake import read_local
from tmdb_async import Credentials, Settings, run
from tmdb_async.errors import (
    DeadlineError,
    InputError,
    StorageError,
    TmdbUnreachable,
    UsageError,
)
from tmdb_async.jobs.refresh import (
    STATE_KEY,
    Plan,
    Window,
    finish_state,
    listing,
    pin_state,
    refresh,
)
from tmdb_async.lake.idmap import LakeIdMap, Title, rebuild
from tmdb_async.lake.profile import Profile
from tmdb_async.lake.storage import LocalStore
from tmdb_async.tmdb.client import TmdbClient
from tmdb_devtools.csvgen import write_csv
from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig, changed_ids, kind_of_number

INGESTED = dt.date(2026, 11, 10)
MOVIE = Profile("movie", "full", "pt-BR", (), "json")
TODAY = dt.date(2026, 11, 20)


def imdb(n: int) -> str:
    return f"tt{n:07d}"


def config(**changes: Any) -> FakeTmdbConfig:
    values: dict[str, Any] = {
        "token": TOKEN,
        "change_period": 7,
        "change_universe": 5_000,
        "today": TODAY,
    }
    values.update(changes)
    return FakeTmdbConfig(**values)


def options(dest: Path, url: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "source": "refresh",
        "dest": str(dest),
        "credentials": Credentials(read_access_token=TOKEN),
        "tmdb_url": url,
        "rate": 2000.0,
        "max_backoff": 0.05,
        "date": TODAY,
    }
    values.update(changes)
    return Settings(**values)


async def ingest(
    tmp_path: Path, lake: Path, url: str, ids: list[str], date: dt.date = INGESTED, **changes: Any
) -> None:
    csv_path = write_csv(tmp_path / f"in-{date}.csv", ids)
    await run(options(lake, url, source=str(csv_path), date=date, **changes))


def expected(ids: list[str], window: Window, cfg: FakeTmdbConfig) -> set[str]:
    """The lake's titles the fake lists as changed in ``window``."""
    changed = {
        kind: set(changed_ids(kind, window.start, window.end, cfg)) for kind in ("movie", "tv")
    }
    return {
        i
        for i in ids
        if (kind := kind_of_number(int(i[2:]))) is not None
        and int(i[2:]) not in cfg.removed_ids
        and int(i[2:]) in changed[kind]
    }


def folder(date: dt.date) -> str:
    return f"Raw/TMDB/JSON/{date:%Y/%m/%d}"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTmdb]:
    async with FakeTmdb(config()) as server:
        yield server


@pytest.fixture
def lists_read_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """The change lists are read whole whatever the lake's size: for the tests of how they
    are read, whose lakes are smaller than their lists (the whole-lake way's own tests are
    below)."""

    def always_lists(titles: int, pages_left: int) -> tuple[str, str]:
        return "change_lists", "the test reads the lists"

    monkeypatch.setattr(listing, "way", always_lists)


async def test_a_refresh_fetches_exactly_the_changed_titles_of_the_lake_once_each(
    tmp_path: Path, fake: FakeTmdb
) -> None:
    """Ingested on the 10th, refreshed on the 20th: the first refresh reads the days from
    the newest ingest date through the 19th, and writes one record per changed title of the
    lake, in one request each, the same record a run would write."""
    ids = [imdb(n) for n in range(1, 401)]
    lake = tmp_path / "lake"
    await ingest(tmp_path, lake, fake.url, ids)
    fake.reset_stats()
    summary = await refresh(options(lake, fake.url))
    window = Window(INGESTED, TODAY - dt.timedelta(days=1))
    want = expected(ids, window, fake.config)
    assert 40 < len(want) < 400  # the rule picks some, not all
    view = read_local(lake / folder(TODAY))
    assert not view.duplicates()
    assert set(view.records) == want and not view.outcomes
    assert all(n <= 100 for n in view.data_files.values())
    sent = fake.stats().path_counts
    asked = titles_asked(sent)
    assert {i for i, hits in asked.items() if hits} == want
    assert all(asked[i] == 1 for i in want)  # one request each, by TMDB id
    assert summary.status == "ok" and summary.records == len(want) == summary.in_lake
    assert summary.window == {"start": "2026-11-10", "end": "2026-11-19"}
    assert summary.requests == len(want) + summary.list_pages
    assert summary.refreshed_through == "2026-11-19"
    assert json.loads((lake / STATE_KEY).read_text())["through"] == "2026-11-19"
    before = {i: places[0][1] for i, places in read_local(lake / folder(INGESTED)).records.items()}
    after = {i: places[0][1] for i, places in view.records.items()}
    assert all(after[i] == before[i] for i in want)  # the fake's data did not change


async def test_the_next_refresh_reads_only_the_days_since_the_last_one(
    tmp_path: Path, fake: FakeTmdb
) -> None:
    ids = [imdb(n) for n in range(1, 201)]
    lake = tmp_path / "lake"
    await ingest(tmp_path, lake, fake.url, ids)
    await refresh(options(lake, fake.url))
    again = await refresh(options(lake, fake.url))  # the same day: nothing new
    assert again.status == "up_to_date" and again.requests == 0
    assert again.refreshed_through == "2026-11-19"
    tomorrow = TODAY + dt.timedelta(days=1)
    fake.reset_stats()
    nxt = await refresh(options(lake, fake.url, date=tomorrow))
    assert nxt.window == {"start": "2026-11-20", "end": "2026-11-20"}
    want = expected(ids, Window(TODAY, TODAY), fake.config)
    assert set(read_local(lake / folder(tomorrow)).records) == want
    assert nxt.records == len(want) and nxt.refreshed_through == "2026-11-20"


async def test_windows_longer_than_14_days_are_read_in_pieces_of_at_most_14(
    tmp_path: Path, fake: FakeTmdb, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, dt.date, dt.date, int]] = []
    original = TmdbClient.changes

    async def recording(self: TmdbClient, kind: Any, start: Any, end: Any, page: int) -> Any:
        asked.append((kind, start, end, page))
        return await original(self, kind, start, end, page)

    monkeypatch.setattr(TmdbClient, "changes", recording)
    ids = [imdb(n) for n in range(1, 301)]
    lake = tmp_path / "lake"
    await ingest(tmp_path, lake, fake.url, ids)
    since = dt.date(2026, 9, 30)  # 51 days through the 19th
    summary = await refresh(options(lake, fake.url), since=since)
    for kind in ("movie", "tv"):
        spans = sorted({(s, e) for k, s, e, _ in asked if k == kind})
        assert all((e - s).days + 1 <= 14 for s, e in spans)
        days = [s + dt.timedelta(days=d) for s, e in spans for d in range((e - s).days + 1)]
        assert days == [since + dt.timedelta(days=d) for d in range(51)]  # each day once
    assert 422 not in fake.stats().status_counts
    want = expected(ids, Window(since, TODAY - dt.timedelta(days=1)), fake.config)
    assert set(read_local(lake / folder(TODAY)).records) == want
    assert summary.records == len(want)


async def test_every_page_is_read(tmp_path: Path, lists_read_whole: None) -> None:
    """A universe of 60,000 titles changing every 3rd day: the movies' list of the 10 days is
    about 140 pages; titles listed only on late pages are refreshed too."""
    cfg = config(change_period=3, change_universe=60_000)
    async with FakeTmdb(cfg) as fake:
        ids = [imdb(n) for n in range(59_001, 59_401)]  # the highest ids: the last pages
        lake = tmp_path / "lake"
        await ingest(tmp_path, lake, fake.url, ids)
        summary = await refresh(options(lake, fake.url))
    window = Window(INGESTED, TODAY - dt.timedelta(days=1))
    want = expected(ids, window, cfg)
    pages = {
        kind: -(-len(changed_ids(kind, window.start, window.end, cfg)) // 100)
        for kind in ("movie", "tv")
    }
    assert pages["movie"] > 100
    assert summary.list_pages == pages["movie"] + pages["tv"]
    assert set(read_local(lake / folder(TODAY)).records) == want and want
    assert not summary.truncated


@pytest.mark.slow
async def test_a_list_cut_off_at_page_500_is_read_by_day_and_what_stays_cut_is_reported(
    tmp_path: Path,
    lists_read_whole: None,
) -> None:
    """Every title changes every 4th day: two days of movies are over 500 pages, so the
    window is read day by day (about 260 pages each, all read). With period 1 a single day
    of 60,000 movies is over 500 pages: the summary names it."""
    cfg = config(change_period=4, change_universe=150_000)
    ids = [imdb(n) for n in range(149_001, 149_301)]
    async with FakeTmdb(cfg) as fake:
        lake = tmp_path / "lake"
        await ingest(tmp_path, lake, fake.url, ids)
        since = TODAY - dt.timedelta(days=2)
        summary = await refresh(options(lake, fake.url), since=since)
    assert not summary.truncated
    want = expected(ids, Window(since, TODAY - dt.timedelta(days=1)), cfg)
    assert set(read_local(lake / folder(TODAY)).records) == want and want

    cut = config(change_period=1, change_universe=90_000)
    async with FakeTmdb(cut) as fake:
        lake = tmp_path / "lake2"
        await ingest(tmp_path, lake, fake.url, ids[:5], date=TODAY - dt.timedelta(days=1))
        summary = await refresh(options(lake, fake.url))
    assert [(t["kind"], t["start"], t["pages_read"]) for t in summary.truncated] == [
        ("movie", "2026-11-19", 500)
    ]
    assert summary.truncated[0]["total_results"] == len(
        changed_ids("movie", TODAY - dt.timedelta(days=1), TODAY - dt.timedelta(days=1), cut)
    )
    assert summary.status == "ok"


async def test_a_title_tmdb_removed_stays_watched_and_a_restore_is_refreshed(
    tmp_path: Path,
) -> None:
    """TMDB removes two titles: each is a ``deleted`` entry once. Listed again while still
    removed, each is asked once by its TMDB id (no ``/find``) and nothing new is written.
    ``idmap`` rebuild agrees with the refresh (the titles stay watched, not resurrected).
    Once TMDB serves them again, the next refresh that sees them listed fetches them as
    records, the way they were ingested."""
    ids = [imdb(n) for n in range(1, 101)]
    lake = tmp_path / "lake"
    async with FakeTmdb(config()) as fake:
        await ingest(tmp_path, lake, fake.url, ids, language="en-US")
    gone = {imdb(3), imdb(8)}  # a movie and a series
    cfg = config(removed_ids=frozenset(gone))
    async with FakeTmdb(cfg) as fake:
        summary = await refresh(options(lake, fake.url))
        view = read_local(lake / folder(TODAY))
        deleted = {i: places[0][1] for i, places in view.outcomes.items()}
        assert set(deleted) == gone
        assert {i: (e["outcome"], e["media_type"], e["tmdb_id"]) for i, e in deleted.items()} == {
            imdb(3): ("deleted", "movie", 3),
            imdb(8): ("deleted", "tv", 8),
        }
        assert summary.deleted == 2 and gone.isdisjoint(view.records)
        sent = fake.stats().path_counts
        assert all(sent[f"/3/find/{i}"] == 1 for i in gone)  # a 404 alone could be a merge
        assert all(titles_asked(sent)[i] <= 3 for i in gone)  # details, maybe direct, /find
        await rebuild(LocalStore(str(lake)))  # idmap: the same rule as the refresh's
        fake.reset_stats()
        tomorrow = TODAY + dt.timedelta(days=1)
        again = await refresh(options(lake, fake.url, date=tomorrow))  # listed every day
        sent = fake.stats().path_counts
        assert {i: titles_asked(sent)[i] for i in gone} == {i: 1 for i in gone}  # by TMDB id
        assert not any(sent.get(f"/3/find/{i}") for i in gone)
        assert again.deleted == 0 and again.still_deleted == 2
        assert not read_local(lake / folder(tomorrow)).outcomes  # nothing new written
    restored = TODAY + dt.timedelta(days=9)
    async with FakeTmdb(config()) as fake:  # TMDB serves them again: listed within a week
        back = await refresh(options(lake, fake.url, date=restored))
    records = read_local(lake / folder(restored)).records
    assert gone <= set(records) and back.status == "ok"
    assert all(records[i][0][1] == view_of(lake, i) for i in gone)  # as ingested (en-US)
    titles = await LakeIdMap(LocalStore(str(lake)), "check").load(compact=True)
    ingested_with = Profile.of(options(lake, fake.url, language="en-US"))
    assert titles.get(imdb(3)) == Title("movie", 3, profile=ingested_with)


async def test_a_refresh_killed_after_marking_titles_deleted_leaves_them_deleted_in_the_map(
    tmp_path: Path,
) -> None:
    """Killed at each storage write in turn, then run again to completion: the id map knows
    the removed titles as deleted, as ``idmap`` rebuild does (the repair follows the
    ledgers' latest answer for a title the map holds otherwise, not only for one it lacks),
    so the next refresh asks each once by its TMDB id and writes nothing new for them."""
    ids = [imdb(n) for n in range(1, 101)]
    gone = {imdb(3), imdb(8)}
    async with FakeTmdb(config()) as fake:
        await ingest(tmp_path, tmp_path / "lake", fake.url, ids, language="en-US")
    tomorrow = TODAY + dt.timedelta(days=1)
    async with FakeTmdb(config(removed_ids=frozenset(gone))) as fake:
        for budget in range(1, 100):
            lake = tmp_path / f"lake-{budget}"
            shutil.copytree(tmp_path / "lake", lake)
            store = KillingStore(LocalStore(str(lake)), budget)
            try:
                await refresh(options(lake, fake.url), store=store)  # type: ignore[arg-type]
            except Killed:
                declare_dead(lake)
                rerun = await refresh(options(lake, fake.url))
                assert rerun.status in ("ok", "up_to_date"), budget  # killed after its end
            else:
                break  # every write was a kill point
            fake.reset_stats()
            again = await refresh(options(lake, fake.url, date=tomorrow))
            sent = fake.stats().path_counts
            assert not any(sent.get(f"/3/find/{i}") for i in gone), budget
            assert again.deleted == 0 and again.still_deleted == 2, budget
            assert not read_local(lake / folder(tomorrow)).outcomes, budget
        assert budget > 10


def view_of(lake: Path, imdb_id: str) -> dict[str, Any]:
    """The record ``imdb_id`` was first ingested with."""
    return read_local(lake / folder(INGESTED)).records[imdb_id][0][1]


async def test_a_title_whose_tmdb_id_answers_404_but_whose_imdb_id_finds_it_is_refreshed(
    tmp_path: Path,
) -> None:
    """TMDB merged a duplicate: the id the map holds answers 404, /find names the title it
    became. That is a refresh of the title, not a deletion, and the map learns the new id."""
    lake = tmp_path / "lake"
    cfg = config(removed_ids=frozenset({imdb(99_990)}))  # listed as changed every day
    async with FakeTmdb(cfg) as fake:
        await ingest(tmp_path, lake, fake.url, [imdb(n) for n in range(1, 21)])
        titles = await LakeIdMap(LocalStore(str(lake)), "test").load(compact=True)
        titles.learn({"imdb_id": imdb(12), "media_type": "movie", "id": 99_990}, MOVIE)
        await titles.flush()
        summary = await refresh(options(lake, fake.url))
    view = read_local(lake / folder(TODAY))
    assert view.records[imdb(12)][0][1]["id"] == 12 and imdb(12) not in view.outcomes
    assert summary.deleted == 0
    after = await LakeIdMap(LocalStore(str(lake)), "check").load(compact=True)
    assert after.get(imdb(12)) == Title("movie", 12, profile=MOVIE)  # fetched as it was


async def test_each_title_is_refreshed_with_the_settings_it_was_ingested_with(
    tmp_path: Path, fake: FakeTmdb
) -> None:
    movies = [imdb(n) for n in range(1, 201) if kind_of_number(n) == "movie"]
    series = [imdb(n) for n in range(1, 201) if kind_of_number(n) == "tv"]
    lake = tmp_path / "lake"
    await ingest(tmp_path, lake, fake.url, movies, language="en-US", append_to_response=())
    await ingest(
        tmp_path,
        lake,
        fake.url,
        series,
        date=INGESTED + dt.timedelta(days=1),
        kind="tv",
        append_to_response=("credits",),
        output_format="jsonl",
    )
    summary = await refresh(options(lake, fake.url, language="fr-FR"))
    view = read_local(lake / folder(TODAY))
    for imdb_id, places in view.records.items():
        name, record = places[0]
        if imdb_id in movies:
            assert name.endswith(".json") and "credits" not in record
            assert record == read_local(lake / folder(INGESTED)).records[imdb_id][0][1]
        else:
            assert name.endswith(".jsonl") and "credits" in record
    assert {i for i in view.records if i in series} and {i for i in view.records if i in movies}
    assert summary.window == {"start": "2026-11-11", "end": "2026-11-19"}  # newest ingest


async def test_titles_of_a_killed_run_are_refreshed_with_the_settings_they_were_ingested_with(
    tmp_path: Path, fake: FakeTmdb
) -> None:
    """A run killed (nothing it does after the kill reaches storage: no final manifest, no
    id-map segment), then run again to completion: the ids the killed run committed are kept,
    not learned again. The refresh learns them from the ledgers, with the settings of the
    run that wrote them (its manifest is written before its first commit), not its own."""
    ids = [imdb(n) for n in range(1, 201)]
    lake = tmp_path / "lake"
    csv_path = write_csv(tmp_path / "in.csv", ids)
    ingested = {"language": "fr-FR", "output_format": "jsonl", "chunk_size": 25}
    settings = options(lake, fake.url, source=str(csv_path), date=INGESTED, **ingested)
    with pytest.raises(Killed):
        await run(settings, store=KillingStore(LocalStore(str(lake)), 14))  # type: ignore[arg-type]
    declare_dead(lake)
    assert not (lake / "Raw/TMDB/_state/idmap").exists()  # the killed run saved no lesson
    again = await run(settings)
    assert again.kept > 0 and again.status == "ok"  # the killed run's commits stand
    summary = await refresh(options(lake, fake.url))  # its own default settings
    refreshed = read_local(lake / folder(TODAY)).records
    before = read_local(lake / folder(INGESTED)).records
    assert summary.status == "ok" and refreshed
    assert all(places[0][0].endswith(".jsonl") for places in refreshed.values())
    assert all(places[0][1] == before[i][0][1] for i, places in refreshed.items())


async def test_a_killed_refresh_resumes_exactly_once(tmp_path: Path, fake: FakeTmdb) -> None:
    """Killed at every 7th storage write in turn: the rerun with the same date leaves each
    changed title once in the folder, fetches only what was not committed, and moves the
    state only when done."""
    ids = [imdb(n) for n in range(1, 401)]
    lake = tmp_path / "lake"
    await ingest(tmp_path, lake, fake.url, ids, chunk_size=25)
    want = expected(ids, Window(INGESTED, TODAY - dt.timedelta(days=1)), fake.config)
    budget = 1
    while True:
        store = KillingStore(LocalStore(str(lake)), budget)
        try:
            await refresh(options(lake, fake.url, chunk_size=25), store=store)  # type: ignore[arg-type]
        except Killed:
            declare_dead(lake)
            state = lake / STATE_KEY
            through = json.loads(state.read_text())["through"] if state.exists() else None
            assert through in (None, "2026-11-09", "2026-11-19")
            if through == "2026-11-19":  # moved only once every title was in
                assert set(read_local(lake / folder(TODAY)).records) == want
            budget += 7
            continue
        break
    assert budget > 8  # killed a few times
    fake.reset_stats()
    view = read_local(lake / folder(TODAY))
    assert not view.duplicates() and set(view.records) == want
    final = await refresh(options(lake, fake.url, chunk_size=25), since=INGESTED)
    assert final.kept == len(want) and final.records == 0  # all already there
    assert titles_asked(fake.stats().path_counts) == {}


async def test_a_processing_date_with_no_complete_day_to_read_is_up_to_date(
    tmp_path: Path, fake: FakeTmdb
) -> None:
    lake = tmp_path / "lake"
    await ingest(tmp_path, lake, fake.url, [imdb(1)], date=TODAY)
    summary = await refresh(options(lake, fake.url))
    assert summary.status == "up_to_date" and summary.requests == 0
    assert summary.refreshed_through == "2026-11-19"  # pinned: tomorrow reads the 20th
    with pytest.raises(UsageError, match="since: 2026-11-20 leaves no complete day"):
        await refresh(options(lake, fake.url), since=TODAY)


async def test_a_lake_without_data_is_refused(tmp_path: Path, fake: FakeTmdb) -> None:
    with pytest.raises(InputError, match="no ingested data to refresh"):
        await refresh(options(tmp_path / "empty", fake.url))


# --- what operators do, in any order: the refresh's promises after every step ------------

_operation = st.one_of(
    st.tuples(st.just("ingest"), st.integers(0, 6), st.integers(0, 3), st.none()),
    st.tuples(st.just("refresh"), st.integers(1, 8), st.none(), st.none()),
    st.tuples(st.just("killed"), st.integers(1, 8), st.none(), st.integers(1, 12)),
    st.tuples(st.just("since"), st.integers(1, 8), st.integers(0, 7), st.none()),
    st.tuples(st.just("remove"), st.integers(0, 0), st.integers(0, 1), st.none()),
)


# Found in CI: an ingest between a killed refresh and its continuation (that ingest's
# records are newer than the window's changes; the plan's titles stand).
@example(
    ("ingest", 0, 1, None),
    [("killed", 1, None, 2), ("ingest", 0, 0, None), ("refresh", 1, None, None)],
)
# Found in CI: TMDB removes a title after the day's refresh fetched it; a --since rerun
# that day keeps the record it fetched (one record per title per date folder).
@example(
    ("ingest", 0, 0, None),
    [("refresh", 1, None, None), ("remove", 0, 0, None), ("since", 1, 0, None)],
)
# Found by a helper: TMDB removes titles, a refresh records their deletion, TMDB restores
# them, and a --since rerun that day keeps the deletion (tomorrow's refresh reads the restore).
@example(
    ("ingest", 0, 0, None),
    [
        ("remove", 0, 0, None),
        ("refresh", 1, None, None),
        ("remove", 0, 0, None),
        ("since", 1, 0, None),
    ],
)
# TMDB removes titles the lake holds, then restores them.
@example(
    ("ingest", 0, 0, None),
    [
        ("remove", 0, 0, None),
        ("refresh", 2, None, None),
        ("remove", 0, 0, None),
        ("killed", 5, None, 9),
        ("refresh", 5, None, None),
    ],
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.tuples(st.just("ingest"), st.integers(0, 3), st.integers(0, 3), st.none()),
    st.lists(_operation, min_size=1, max_size=7),
)
def test_whatever_operators_do_each_refresh_holds_what_changed_once_and_no_day_is_lost(
    first: tuple[str, int, int | None, int | None],
    more: list[tuple[str, int, int | None, int | None]],
) -> None:
    """Ingests of slices on various days, refreshes on various days (killed after a random
    number of storage writes, or with --since), TMDB removing titles and restoring them, in
    any order. After every step: no folder holds an id twice; the refreshed day never moves
    back; and after a refresh that completed, its folder holds every lake title changed in
    its window that TMDB serves, none that it removed (each of those is a ``deleted`` entry,
    here or where it was first found removed), and the refreshed days since the first
    refresh have no gap. A restored title is a lake title changed in the window again."""
    steps = [first, *more]
    cfg = config(change_period=3, change_universe=600)
    base = dt.date(2026, 11, 1)
    slices = [[imdb(n) for n in range(1 + 60 * k, 61 + 60 * k)] for k in range(4)]
    groups = [
        frozenset([n for n in slices[k] if kind_of_number(int(n[2:])) is not None][:3])
        for k in range(2)
    ]

    async def scenario(root: Path) -> None:
        lake = root / "lake"
        lake_titles: dict[str, tuple[dt.date, int]] = {}  # title -> first ingest (date, step)
        planned: dict[dt.date, int] = {}  # a date's saved plan -> the step that made it
        ingested: list[dt.date] = []
        removed: frozenset[str] = frozenset()
        ever_removed: frozenset[str] = frozenset()
        ingests: dict[str, set[dt.date]] = {}  # title -> the dates it was ingested on
        toggled = -1  # the last step that removed or restored titles
        tmdb = cfg  # what TMDB serves now
        servers = contextlib.AsyncExitStack()
        fake = await servers.enter_async_context(FakeTmdb(tmdb))
        async with servers:
            for i, (action, day, arg, kill) in enumerate(steps):
                date = base + dt.timedelta(days=day)
                if action == "remove":  # TMDB removes a group of titles, or restores it
                    removed = removed ^ groups[arg or 0]
                    ever_removed |= removed
                    toggled = i
                    await servers.aclose()
                    tmdb = dataclasses.replace(cfg, removed_ids=removed)
                    fake = await servers.enter_async_context(FakeTmdb(tmdb))
                    continue
                if action == "ingest":
                    ids = slices[arg or 0]
                    await ingest(root, lake, fake.url, ids, date=date, chunk_size=25)
                    ingested.append(date)
                    for n in ids:
                        ingests.setdefault(n, set()).add(date)
                        if n in removed:
                            lake_titles.pop(n, None)  # its latest answer: not found
                        elif kind_of_number(int(n[2:])) is not None:
                            lake_titles.setdefault(n, (date, i))
                    continue
                since = None if action != "since" else base + dt.timedelta(days=arg or 0)
                before = _through(lake)
                before_view = read_local(lake / folder(date))
                had = set(before_view.records)
                # ids whose answer in this folder is a sidecar entry (deleted, not found): a
                # rerun the same day keeps it, as it keeps a record (one answer per date folder)
                answered = before_view.all_ids() - had
                # The first refresh starts after the newest ingest date.
                pinned = before or max(ingested) - dt.timedelta(days=1)
                plan_before = _plan_window(lake, date)
                unfinished = plan_before if since is None else None
                if unfinished is not None and before is not None and before >= unfinished.end:
                    unfinished = None  # finished; the file outlived a kill
                store: Any = LocalStore(str(lake))
                if action == "killed":
                    store = KillingStore(store, kill or 1)
                try:
                    summary = await refresh(
                        options(lake, fake.url, date=date, chunk_size=25), since=since, store=store
                    )
                except (InputError, UsageError):
                    continue  # --since after the last complete day
                except Killed:
                    event("a refresh was killed")
                    declare_dead(lake)
                    summary = None
                now = _through(lake)
                assert before is None or (now is not None and now >= before)  # never back
                saved = _plan_window(lake, date)
                kept = saved is not None and saved == plan_before and date in planned
                made = planned[date] if kept or (saved is None and date in planned) else i
                if saved is None:
                    planned.pop(date, None)
                elif not kept:
                    planned[date] = i
                view = read_local(lake / folder(date))
                assert not view.duplicates(), (i, view.duplicates())
                if summary is None or summary.window is None:
                    continue
                event("a refresh read changes")
                assert summary.status == "ok"
                window = Window(
                    dt.date.fromisoformat(summary.window["start"]),
                    dt.date.fromisoformat(summary.window["end"]),
                )
                if window != plan_before:
                    made = i  # a plan of its own
                if unfinished is not None:
                    assert window == unfinished  # the date's cut-off refresh, continued
                elif since is None:
                    assert window.start == pinned + dt.timedelta(days=1)  # no gap
                # A title ingested after the plan picked its titles was fetched after the
                # window's days were over: its record is already newer than their changes.
                known = [n for n, (d, step) in lake_titles.items() if d <= date and step < made]
                want = expected(known, window, tmdb) - removed - answered
                assert want <= set(view.records), (i, want - set(view.records))
                if toggled < made:  # TMDB removed these before the plan was made
                    # (a record already in this very folder is kept: it is that day's,
                    # whether an ingest or an earlier refresh of the day fetched it)
                    gone = {
                        n for n in removed & set(known) if date not in ingests[n] and n not in had
                    }
                    assert not gone & set(view.records), (i, gone & set(view.records))
                    assert all(_deleted_somewhere(lake, n) for n in gone), (i, gone)
                    if gone:
                        event("removed lake titles were refreshed as deleted")
                if want & (ever_removed - removed):
                    event("restored titles were refreshed as records")
                if window.start <= pinned + dt.timedelta(days=1):
                    assert now == max(window.end, pinned)
                else:  # a --since after a gap: the gap is still to read
                    assert now == pinned

    with tempfile.TemporaryDirectory() as root:
        asyncio.run(scenario(Path(root)))


def _deleted_somewhere(lake: Path, imdb_id: str) -> bool:
    for sidecar in (lake / "Raw/TMDB/JSON").glob("*/*/*/_sidecars/*.json"):
        if any(
            e["imdb_id"] == imdb_id and e["outcome"] == "deleted"
            for e in json.loads(sidecar.read_text())
        ):
            return True
    return False


def _plan_window(lake: Path, date: dt.date) -> Window | None:
    plan = lake / Plan.key(date)
    if not plan.exists():
        return None
    window = json.loads(plan.read_text())["window"]
    return Window(dt.date.fromisoformat(window["start"]), dt.date.fromisoformat(window["end"]))


def _through(lake: Path) -> dt.date | None:
    state = lake / STATE_KEY
    if not state.exists():
        return None
    return dt.date.fromisoformat(json.loads(state.read_text())["through"])


# --- found in review: each a test of the mechanism that now holds ------------------------


async def test_a_first_refresh_with_since_after_a_gap_leaves_the_gap_for_the_next_one(
    tmp_path: Path, fake: FakeTmdb
) -> None:
    ids = [imdb(n) for n in range(1, 201)]
    lake = tmp_path / "lake"
    await ingest(tmp_path, lake, fake.url, ids)
    await refresh(options(lake, fake.url), since=TODAY - dt.timedelta(days=1))
    assert _through(lake) == INGESTED - dt.timedelta(days=1)  # the 10th..18th are unread
    tomorrow = TODAY + dt.timedelta(days=1)
    summary = await refresh(options(lake, fake.url, date=tomorrow))
    assert summary.window == {"start": "2026-11-10", "end": "2026-11-20"}
    assert _through(lake) == TODAY


async def test_two_first_refreshes_agree_on_where_they_start(
    tmp_path: Path, fake: FakeTmdb
) -> None:
    """The pin is create-only: the slower refresh takes the first one's, even though that
    one's files already make the processing date look like the newest ingest."""
    lake = tmp_path / "lake"
    await ingest(tmp_path, lake, fake.url, [imdb(n) for n in range(1, 101)])
    store = KillingStore(LocalStore(str(lake)), 4)  # pins, then dies while writing
    with pytest.raises(Killed):
        await refresh(options(lake, fake.url), store=store)  # type: ignore[arg-type]
    declare_dead(lake)
    assert _through(lake) == INGESTED - dt.timedelta(days=1)
    later = await refresh(options(lake, fake.url))
    assert later.window == {"start": "2026-11-10", "end": "2026-11-19"}


async def test_a_title_that_keeps_failing_is_carried_and_the_days_move_on(
    tmp_path: Path,
) -> None:
    ids = [imdb(n) for n in range(1, 101)]
    lake = tmp_path / "lake"
    async with FakeTmdb(config()) as fake:
        await ingest(tmp_path, lake, fake.url, ids)
    want = expected(ids, Window(INGESTED, TODAY - dt.timedelta(days=1)), config())
    poison = sorted(want)[0]
    async with FakeTmdb(config(fault_ids=frozenset({poison}))) as fake:
        first = await refresh(options(lake, fake.url, max_attempts=2))
        assert first.status == "failed_ids" and first.exit_code == 1
        assert first.carried == [poison] and _through(lake) == TODAY - dt.timedelta(days=1)
        fake.reset_stats()
        tomorrow = TODAY + dt.timedelta(days=1)
        second = await refresh(options(lake, fake.url, date=tomorrow, max_attempts=2))
        assert second.window == {"start": "2026-11-20", "end": "2026-11-20"}  # one day only
        assert titles_asked(fake.stats().path_counts)[poison] >= 1  # asked again
        assert second.carried == [poison]
    async with FakeTmdb(config()) as fake:  # TMDB serves it again
        day3 = TODAY + dt.timedelta(days=2)
        third = await refresh(options(lake, fake.url, date=day3))
    assert third.carried == [] and poison in read_local(lake / folder(day3)).records


async def test_a_refresh_cut_off_while_listing_continues_by_its_date_without_rereading(
    tmp_path: Path, fake: FakeTmdb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five weeks since --since: six pieces of lists. The first call's time runs out after
    20 pages, inside the first window: it stops asking, keeps the pages it read in its plan
    and says to continue; the call again with the same date (no --since: the plan
    remembers it) reads only the pages not read, then fetches."""
    ids = [imdb(n) for n in range(1, 301)]
    lake = tmp_path / "lake"
    await ingest(tmp_path, lake, fake.url, ids)
    since = TODAY - dt.timedelta(days=35)
    asked: list[tuple[str, dt.date, dt.date, int]] = []
    original = TmdbClient.changes

    async def recording(self: TmdbClient, kind: Any, start: Any, end: Any, page: int) -> Any:
        asked.append((kind, start, end, page))
        return await original(self, kind, start, end, page)

    monkeypatch.setattr(TmdbClient, "changes", recording)
    first = await refresh(
        options(lake, fake.url),
        since=since,
        remaining=lambda: 100.0 if len(asked) < 20 else 1.0,
        safety_margin=10.0,
    )
    assert first.status == "incomplete" and first.exit_code == 4 and first.records == 0
    saved = json.loads((lake / Plan.key(TODAY)).read_text())
    assert sum(len(part["read"]) for part in saved["pages"].values()) == len(asked)
    before = set(asked)
    asked.clear()
    second = await refresh(options(lake, fake.url))
    assert second.status == "ok"
    assert second.window == {"start": since.isoformat(), "end": "2026-11-19"}
    assert not before & set(asked)  # no page read twice
    want = expected(ids, Window(since, TODAY - dt.timedelta(days=1)), fake.config)
    assert set(read_local(lake / folder(TODAY)).records) == want
    assert _through(lake) == TODAY - dt.timedelta(days=1)


async def test_a_first_refresh_cut_off_while_reading_lists_exits_4_and_loses_no_page(
    tmp_path: Path,
) -> None:
    """A real clock: TMDB at 20 requests/s, and the first window's lists need more pages
    than the budget lets it read. At the deadline no page starts, the ones in flight finish,
    the plan keeps what was read, and the refresh says to continue (not "no progress");
    the next call reads only the pages it lacks."""
    ids = [imdb(n) for n in range(1, 201)]
    lake = tmp_path / "lake"
    cfg = config(change_period=1, change_universe=3_000)  # every title changes every day
    async with FakeTmdb(cfg) as fake:
        await ingest(tmp_path, lake, fake.url, ids)
        fake.reset_stats()
        end = asyncio.get_running_loop().time() + 1.5
        first = await refresh(
            options(lake, fake.url, rate=20.0),
            remaining=lambda: end - asyncio.get_running_loop().time(),
            safety_margin=1.2,
        )
        assert first.status == "incomplete" and first.exit_code == 4
        saved = json.loads((lake / Plan.key(TODAY)).read_text())
        assert saved["pages"] and saved["groups"] is None  # cut off inside a window
        sent = fake.stats().path_counts
        first_pages = sum(n for path, n in sent.items() if path.endswith("/changes"))
        fake.reset_stats()
        second = await refresh(options(lake, fake.url))
        sent = fake.stats().path_counts
        pages = sum(n for path, n in sent.items() if path.endswith("/changes"))
    assert second.status == "ok"
    total = sum(
        -(-len(changed_ids(k, INGESTED, TODAY - dt.timedelta(days=1), cfg)) // 100)
        for k in ("movie", "tv")
    )
    assert first_pages + pages == total  # every page sent was kept: none read twice
    want = expected(ids, Window(INGESTED, TODAY - dt.timedelta(days=1)), cfg)
    assert set(read_local(lake / folder(TODAY)).records) == want


async def test_no_time_for_one_piece_of_the_lists_is_a_deadline_error(
    tmp_path: Path, fake: FakeTmdb
) -> None:
    lake = tmp_path / "lake"
    await ingest(tmp_path, lake, fake.url, [imdb(n) for n in range(1, 51)])
    with pytest.raises(DeadlineError, match="no progress before the deadline"):
        await refresh(options(lake, fake.url), remaining=lambda: 5.0, safety_margin=10.0)


async def test_dates_that_are_not_over_yet_are_refused(tmp_path: Path, fake: FakeTmdb) -> None:
    lake = tmp_path / "lake"
    await ingest(tmp_path, lake, fake.url, [imdb(n) for n in range(1, 21)])
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    with pytest.raises(UsageError, match="is after today"):
        await refresh(options(lake, fake.url, date=tomorrow))
    state = lake / STATE_KEY
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"through": "2099-01-01"}))
    with pytest.raises(StorageError, match="damaged refresh state"):
        await refresh(options(lake, fake.url))


async def test_each_profile_group_has_its_own_manifest(tmp_path: Path, fake: FakeTmdb) -> None:
    lake = tmp_path / "lake"
    await ingest(tmp_path, lake, fake.url, [imdb(n) for n in range(1, 101)], language="en-US")
    await ingest(tmp_path, lake, fake.url, [imdb(n) for n in range(101, 201)], date=INGESTED)
    summary = await refresh(options(lake, fake.url))
    assert len(summary.manifests) == len(set(summary.manifests)) == 2
    assert _records_in(summary.manifests) == summary.records


def _records_in(manifests: list[str]) -> int:
    return sum(json.loads(Path(m).read_text())["counts"]["records"] for m in manifests)


async def test_a_rebuilt_id_map_keeps_how_each_title_was_fetched(
    tmp_path: Path, fake: FakeTmdb
) -> None:
    """``idmap`` rebuilds the map from the records and the manifests of the runs that wrote
    them, so a refresh after it still fetches each title the way it was ingested."""
    ids = [imdb(n) for n in range(1, 201)]
    lake = tmp_path / "lake"
    ingested = {"language": "en-US", "append_to_response": ("credits",), "output_format": "jsonl"}
    await ingest(tmp_path, lake, fake.url, ids, **ingested)
    shutil.rmtree(lake / "Raw/TMDB/_state/idmap")
    await rebuild(LocalStore(str(lake)))
    await refresh(options(lake, fake.url))
    before = read_local(lake / folder(INGESTED)).records
    after = read_local(lake / folder(TODAY)).records
    assert after and all(after[i][0][1] == before[i][0][1] for i in after)
    assert all(places[0][0].endswith(".jsonl") for places in after.values())


# --- found in the second review ------------------------------------------------------------


async def test_titles_the_id_map_lost_are_learned_again_from_the_ledgers_before_picking(
    tmp_path: Path, fake: FakeTmdb
) -> None:
    """The map is a cache: here its only segment is gone (a run killed before writing it
    leaves the same). The refresh finds the lake's records in the ledgers and still
    refreshes every changed title."""
    ids = [imdb(n) for n in range(1, 301)]
    lake = tmp_path / "lake"
    await ingest(tmp_path, lake, fake.url, ids, language="en-US")
    shutil.rmtree(lake / "Raw/TMDB/_state/idmap")
    summary = await refresh(options(lake, fake.url))
    want = expected(ids, Window(INGESTED, TODAY - dt.timedelta(days=1)), fake.config)
    assert summary.map_repaired == sum(1 for i in ids if kind_of_number(int(i[2:])))
    assert set(read_local(lake / folder(TODAY)).records) == want
    before = read_local(lake / folder(INGESTED)).records
    assert all(
        r[0][1] == before[i][0][1] for i, r in read_local(lake / folder(TODAY)).records.items()
    )
    again = await refresh(options(lake, fake.url, date=TODAY + dt.timedelta(days=1)))
    assert again.map_repaired == 0  # learned for good


async def test_a_carried_failure_survives_a_refresh_that_did_not_ask_it(
    tmp_path: Path, fake: FakeTmdb
) -> None:
    lake = tmp_path / "lake"
    store = LocalStore(str(lake))
    await ingest(tmp_path, lake, fake.url, [imdb(n) for n in range(1, 21)])
    today = dt.datetime.now(dt.UTC).date()
    state = await pin_state(store, INGESTED - dt.timedelta(days=1), today)
    window = Window(INGESTED, INGESTED + dt.timedelta(days=2))
    state = await finish_state(store, window, ["tt1", "tt2"], ["tt2"], state, today)
    assert state.failed == ("tt2",)
    later = Window(window.end + dt.timedelta(days=1), window.end + dt.timedelta(days=1))
    state = await finish_state(store, later, ["tt3"], ["tt3"], state, today)
    assert state.failed == ("tt2", "tt3")  # tt2 was not asked: still carried
    state = await finish_state(store, later, ["tt2", "tt3"], [], state, today)
    assert state.failed == () and state.through == later.end
    gap = Window(later.end + dt.timedelta(days=3), later.end + dt.timedelta(days=3))
    state = await finish_state(store, gap, [], ["tt9"], state, today)
    assert state.through == later.end and state.failed == ("tt9",)  # gap: carried anyway


async def test_a_since_refresh_cut_off_continues_with_the_same_since(
    tmp_path: Path, lists_read_whole: None, fake: FakeTmdb
) -> None:
    lake = tmp_path / "lake"
    await ingest(tmp_path, lake, fake.url, [imdb(n) for n in range(1, 101)])
    since = TODAY - dt.timedelta(days=60)  # 5 pieces of lists per kind
    plan = lake / Plan.key(TODAY)

    def listed() -> bool:
        return plan.exists() and json.loads(plan.read_text())["groups"] is not None

    pages = []
    for _ in range(12):
        checks = iter(range(10_000))  # each call: time for about 40 pages of lists, then none
        summary = await refresh(
            options(lake, fake.url),
            since=since,
            remaining=lambda checks=checks: 100.0 if next(checks) < 40 or listed() else 1.0,  # type: ignore[misc]
            safety_margin=10.0,
        )
        pages.append(summary.list_pages)
        if summary.status == "ok":
            break
        assert summary.status == "incomplete" and plan.exists()
        assert json.loads(plan.read_text())["window"]["start"] == since.isoformat()
    assert not plan.exists() and len(pages) > 2  # it took several calls, and finished
    assert all(pages[:-1])  # each read more pages, never the same again (no progress: exit 2)


async def test_a_title_ingested_by_find_alone_is_deleted_when_find_no_longer_knows_it(
    tmp_path: Path,
) -> None:
    lake = tmp_path / "lake"
    async with FakeTmdb(config()) as fake:
        await ingest(tmp_path, lake, fake.url, [imdb(n) for n in range(1, 31)], detail="find")
    async with FakeTmdb(config(removed_ids=frozenset({imdb(3)}))) as fake:
        summary = await refresh(options(lake, fake.url))
    outcome = read_local(lake / folder(TODAY)).outcomes[imdb(3)][0][1]
    assert (outcome["outcome"], outcome["tmdb_id"]) == ("deleted", 3) and summary.deleted == 1


async def test_tmdb_unreachable_while_listing_is_one_error_not_a_group(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    async with FakeTmdb(config()) as fake:
        await ingest(tmp_path, lake, fake.url, [imdb(n) for n in range(1, 11)])
    # No connection at all: the client's breaker ends it (exit 5), not "a list TMDB would
    # not serve" (exit 1), whatever max_attempts is.
    with pytest.raises(TmdbUnreachable, match=r"TMDB unreachable at http://127\.0\.0\.1:9: "):
        await refresh(options(lake, "http://127.0.0.1:9", max_attempts=1))


#: Lists of about 566 pages for the 10 days from INGESTED (a title changes every 3rd day in
#: a universe of 60,000): more pages than a small lake has titles.
LONG_LISTS = config(change_period=3, change_universe=60_000)


def lake_titles_of(ids: list[str]) -> set[str]:
    """The titles of ``ids`` the lake holds (the fake knows them)."""
    return {i for i in ids if kind_of_number(int(i[2:])) is not None}


async def test_a_lake_with_fewer_titles_than_list_pages_fetches_every_title_once_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 titles against lists of about 566 pages: after the first page of each list the
    refresh fetches the lake's titles directly, each once (its first pages plus the lake),
    where reading the lists whole costs every page plus the changed titles. Both ways are
    run on copies of the same lake; the day moves the same."""
    ids = [imdb(n) for n in range(59_001, 59_101)]
    lake = tmp_path / "lake"
    async with FakeTmdb(LONG_LISTS) as fake:
        await ingest(tmp_path, lake, fake.url, ids)
        shutil.copytree(lake, tmp_path / "listed")
        fake.reset_stats()
        summary = await refresh(options(lake, fake.url))
        asked = titles_asked(fake.stats().path_counts)
        with monkeypatch.context() as patch:
            patch.setattr(listing, "way", lambda titles, left: ("change_lists", "old way"))
            fake.reset_stats()
            listed = await refresh(options(tmp_path / "listed", fake.url))
    titles = lake_titles_of(ids)
    assert summary.mode == "whole_lake" and listed.mode == "change_lists"
    assert summary.list_pages == 2  # the first page of each kind's list
    window = Window(INGESTED, TODAY - dt.timedelta(days=1))
    assert summary.changed == listed.changed  # as the lists' first pages announce it
    assert summary.changed == {
        kind: len(changed_ids(kind, window.start, window.end, LONG_LISTS))
        for kind in ("movie", "tv")
    }
    assert summary.reason is not None and summary.reason.startswith(f"{len(titles)} titles < ")
    assert summary.requests == summary.list_pages + len(titles)
    assert listed.list_pages > 500 and listed.requests > 5 * summary.requests
    assert set(asked) == titles and all(hits == 1 for hits in asked.values())
    view = read_local(lake / folder(TODAY))
    assert not view.duplicates() and set(view.records) == titles
    assert summary.status == "ok" and summary.in_lake == summary.records == len(titles)
    assert summary.refreshed_through == listed.refreshed_through == "2026-11-19"
    assert not (lake / Plan.key(TODAY)).exists()
    changed = expected(ids, window, LONG_LISTS)
    assert changed <= set(view.records)  # what the lists would have picked, and the rest
    assert set(read_local(tmp_path / "listed" / folder(TODAY)).records) == changed


async def test_a_lake_with_more_titles_than_list_pages_reads_the_lists(
    tmp_path: Path, fake: FakeTmdb
) -> None:
    ids = [imdb(n) for n in range(1, 401)]
    lake = tmp_path / "lake"
    await ingest(tmp_path, lake, fake.url, ids)
    summary = await refresh(options(lake, fake.url))
    assert summary.mode == "change_lists"
    titles = len(lake_titles_of(ids))
    assert summary.reason == f"{summary.list_pages - 2} remaining list pages <= {titles} titles"
    want = expected(ids, Window(INGESTED, TODAY - dt.timedelta(days=1)), fake.config)
    assert set(read_local(lake / folder(TODAY)).records) == want and len(want) < 400


async def test_a_killed_whole_lake_refresh_resumes_the_same_way_exactly_once(
    tmp_path: Path,
) -> None:
    """Killed at every 5th storage write in turn: the saved plan keeps the way it took,
    the rerun fetches only what was not committed, each title is once in the folder, and the
    day moves only when every title is in."""
    ids = [imdb(n) for n in range(59_001, 59_081)]
    lake = tmp_path / "lake"
    titles = lake_titles_of(ids)
    async with FakeTmdb(LONG_LISTS) as fake:
        await ingest(tmp_path, lake, fake.url, ids, chunk_size=10)
        budget, kills = 1, 0
        while True:
            store = KillingStore(LocalStore(str(lake)), budget)
            try:
                summary = await refresh(options(lake, fake.url, chunk_size=10), store=store)  # type: ignore[arg-type]
            except Killed:
                kills += 1
                declare_dead(lake)
                plan = lake / Plan.key(TODAY)
                if plan.exists():
                    assert json.loads(plan.read_text()).get("mode") in (None, "whole_lake")
                state = lake / STATE_KEY
                through = json.loads(state.read_text())["through"] if state.exists() else None
                assert through in (None, "2026-11-09", "2026-11-19")
                if through == "2026-11-19":
                    assert set(read_local(lake / folder(TODAY)).records) == titles
                budget += 5
                continue
            break
        assert kills > 3
        assert summary.status == "ok" and summary.refreshed_through == "2026-11-19"
        view = read_local(lake / folder(TODAY))
        assert not view.duplicates() and set(view.records) == titles
        fake.reset_stats()
        final = await refresh(options(lake, fake.url, chunk_size=10), since=INGESTED)
        assert final.mode == "whole_lake" and final.kept == len(titles) and final.records == 0
        assert titles_asked(fake.stats().path_counts) == {}  # all already in the folder
