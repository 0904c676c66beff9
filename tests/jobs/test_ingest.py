"""Orchestrating a run: every distinct id ends exactly once in a data file or a sidecar,
files hold at most ``chunk_size`` records under the dated Raw path, and runs are repeatable."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOKEN
from tests.support.asked import titles_asked
from tests.support.lake import read_local
from tmdb_async import Credentials, Settings, run
from tmdb_async.errors import CredentialsError, InputError, StorageError, UsageError
from tmdb_async.lake.idmap import LakeIdMap
from tmdb_async.lake.storage import LocalStore
from tmdb_devtools.csvgen import kind_of, title_ids, write_csv
from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig

DAY = dt.date(2022, 5, 2)
FOLDER = "Raw/TMDB/JSON/2022/05/02"


def settings(source: Path | str, dest: Path | str, url: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "credentials": Credentials(read_access_token=TOKEN),
        "tmdb_url": url,
        "date": DAY,
        "rate": 1000.0,
        "max_backoff": 0.05,
    }
    values.update(changes)
    return Settings(source=str(source), dest=str(dest), **values)


def load_output(dest: Path) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[Any]]]:
    """(data file name -> records, outcome -> sidecar entries) of the dated folder."""
    view = read_local(dest / FOLDER)
    data: dict[str, list[dict[str, Any]]] = {}
    for places in view.records.values():
        for name, record in places:
            data.setdefault(name, []).append(record)
    sidecars: dict[str, list[Any]] = {}
    for places in view.outcomes.values():
        for _, entry in places:
            sidecars.setdefault(entry["outcome"], []).append(entry)
    return data, sidecars


def assert_exactly_once(dest: Path, expected_ids: list[str]) -> None:
    view = read_local(dest / FOLDER)
    assert not view.duplicates()  # nothing twice
    assert view.all_ids() == set(expected_ids)  # nothing lost, nothing extra
    assert not view.stray  # only data at the top of the folder


async def test_every_distinct_id_ends_once_in_data_or_sidecar(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    ids = title_ids(250, "movie")
    csv_path = write_csv(tmp_path / "movies.csv", [*ids[:100], "tt12", *ids[100:], "\\N"])
    summary = await run(settings(csv_path, tmp_path / "lake", fake_tmdb.url, kind="movie"))

    unknown = [i for i in ids if kind_of(int(i[2:])) is None]
    assert summary.status == "ok"
    assert summary.unique_ids == 252
    assert summary.records == 250 - len(unknown)
    assert summary.not_found == len(unknown)
    assert summary.invalid == 2
    assert summary.failed == 0
    assert summary.exit_code == 0
    assert_exactly_once(tmp_path / "lake", [*ids, "tt12", "\\N"])
    _, sidecars = load_output(tmp_path / "lake")
    assert sorted(e["imdb_id"] for e in sidecars["invalid"]) == ["\\N", "tt12"]
    sent = fake_tmdb.stats().path_counts
    assert not [p for p in sent if p.endswith(("/tt12", "/\\N", "/%5CN"))]  # never sent
    assert all(e["reason"] for e in sidecars["not_found"])


async def test_files_hold_at_most_chunk_size_records_in_source_order(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    ids = title_ids(230, "movie")
    csv_path = write_csv(tmp_path / "movies.csv", ids)
    summary = await run(settings(csv_path, tmp_path / "lake", fake_tmdb.url, chunk_size=40))
    data, _ = load_output(tmp_path / "lake")
    assert len(data) == len(summary.files) == 6
    assert all(1 <= len(records) <= 40 for records in data.values())
    name = re.compile(r"^movies-\d{8}-\d{2}\.json$")  # commit number, chunk within it
    assert all(name.match(file) for file in data)
    in_files = [r["imdb_id"] for file in sorted(data) for r in data[file]]
    assert in_files == [i for i in ids if kind_of(int(i[2:])) is not None]


async def test_records_keep_tmdb_payload_and_add_imdb_id_and_media_type(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    movies = title_ids(3, "movie", start=3_000_001)
    shows = title_ids(3, "tv", start=3_000_001)
    csv_path = write_csv(tmp_path / "mixed.csv", [*movies, *shows])
    await run(settings(csv_path, tmp_path / "lake", fake_tmdb.url, append_to_response=("credits",)))
    data, _ = load_output(tmp_path / "lake")
    records = {r["imdb_id"]: r for rs in data.values() for r in rs}
    for imdb_id in movies:
        if imdb_id in records:
            assert records[imdb_id]["media_type"] == "movie"
            assert "credits" in records[imdb_id]
            assert "runtime" in records[imdb_id]
    for imdb_id in shows:
        if imdb_id in records:
            assert records[imdb_id]["media_type"] == "tv"
            assert "number_of_seasons" in records[imdb_id]


async def test_find_mode_jsonl_output(tmp_path: Path, fake_tmdb: FakeTmdb) -> None:
    ids = title_ids(30, "movie")
    csv_path = write_csv(tmp_path / "movies.csv", ids)
    summary = await run(
        settings(csv_path, tmp_path / "lake", fake_tmdb.url, detail="find", output_format="jsonl")
    )
    assert summary.requests == 30  # one call per id
    data, _ = load_output(tmp_path / "lake")
    (name,) = data
    assert name.endswith(".jsonl")
    assert all(r["media_type"] == "movie" and "title" in r for r in data[name])


async def test_rerunning_without_resume_replaces_every_record_and_removes_the_old_files(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    ids = title_ids(120, "movie")
    csv_path = write_csv(tmp_path / "movies.csv", ids)
    first = await run(settings(csv_path, tmp_path / "lake", fake_tmdb.url, resume=False))
    fake_tmdb.reset_stats()
    second = await run(settings(csv_path, tmp_path / "lake", fake_tmdb.url, resume=False))
    assert set(titles_asked(fake_tmdb.stats().path_counts)) == set(ids)  # really fetched again
    assert second.replaced == second.unique_ids == 120
    assert not set(first.files) & set(second.files)
    assert not any(map(os.path.exists, first.files))  # emptied files disappear
    assert_exactly_once(tmp_path / "lake", ids)


async def test_a_transient_failure_never_replaces_an_answer_tmdb_gave(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    """A rerun that must fetch again (``--no-resume``, another language) during a TMDB outage
    keeps every record and every not-found entry as they were, and reports the failures."""
    ids = title_ids(60, "movie")
    csv_path = write_csv(tmp_path / "movies.csv", ids)
    lake = tmp_path / "lake"
    first = await run(settings(csv_path, lake, fake_tmdb.url))
    before = read_local(lake / FOLDER)
    answered = set(before.records) | set(before.outcomes)
    assert first.records and first.not_found and answered == set(ids)
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN, fault_5xx=1.0)) as outage:
        for changes in ({"resume": False}, {"language": "fr-FR", "replace": True}):
            summary = await run(settings(csv_path, lake, outage.url, max_attempts=2, **changes))
            assert summary.status == "failed_ids" and summary.exit_code == 1
            assert summary.failed == summary.held == 60 and summary.sidecars == []
            assert read_local(lake / FOLDER) == before  # every record and entry as it was
            manifest = json.loads(await asyncio.to_thread(Path(summary.manifest or "").read_text))
            assert {e["imdb_id"] for e in manifest["held_failures"]} == set(ids)
            assert manifest["counts"]["held"] == 60


async def test_a_finished_job_run_again_keeps_every_id_without_calling_tmdb(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    ids = title_ids(120, "movie")
    csv_path = write_csv(tmp_path / "movies.csv", ids)
    first = await run(settings(csv_path, tmp_path / "lake", fake_tmdb.url))
    requests = fake_tmdb.stats().total_requests
    second = await run(settings(csv_path, tmp_path / "lake", fake_tmdb.url))
    assert fake_tmdb.stats().total_requests == requests
    assert (second.kept, second.records, second.files) == (120, 0, [])
    assert all(map(os.path.exists, first.files))
    assert_exactly_once(tmp_path / "lake", ids)


async def test_an_edited_csv_keeps_what_the_folder_holds_and_fetches_only_new_ids(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    ids = title_ids(150, "movie")
    csv_path = write_csv(tmp_path / "movies.csv", ids[:120])
    await run(settings(csv_path, tmp_path / "lake", fake_tmdb.url))
    write_csv(csv_path, [*ids[:50], *ids[120:], *ids[50:120]])  # rows inserted mid-file
    fake_tmdb.reset_stats()
    second = await run(settings(csv_path, tmp_path / "lake", fake_tmdb.url))
    assert (second.kept, second.unique_ids) == (120, 150)
    assert set(titles_asked(fake_tmdb.stats().path_counts)) == set(ids[120:])
    assert_exactly_once(tmp_path / "lake", ids)


async def test_incremental_mode_fetches_only_ids_without_a_record_in_the_lake(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    ids = title_ids(180, "movie")
    csv_path = write_csv(tmp_path / "movies.csv", ids[:100])
    lake = tmp_path / "lake"
    first = await run(settings(csv_path, lake, fake_tmdb.url, skip_existing=True))
    write_csv(csv_path, [*ids[:40], *ids[100:], *ids[40:100]])  # grown, reordered
    fake_tmdb.reset_stats()
    next_day = dt.date(2022, 5, 3)
    second = await run(settings(csv_path, lake, fake_tmdb.url, skip_existing=True, date=next_day))
    assert second.skipped == first.records
    new_ids = set(ids[100:])
    fetched = set(titles_asked(fake_tmdb.stats().path_counts))
    old_not_found = {i for i in ids[:100] if kind_of(int(i[2:])) is None}
    assert fetched == new_ids | old_not_found  # not-found ids are asked again; found ones not
    written = read_local(lake / FOLDER).record_ids()
    written += read_local(lake / "Raw/TMDB/JSON/2022/05/03").record_ids()
    assert len(written) == len(set(written))  # no record twice across both days
    assert set(written) == {i for i in ids if kind_of(int(i[2:])) is not None}


async def test_batches_of_one_file_never_collide_and_cover_it_exactly(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    ids = title_ids(260, "movie")
    csv_path = write_csv(tmp_path / "movies.csv", ids)
    lake = tmp_path / "lake"
    for offset in (0, 90, 180):  # batch edges fall inside 100-id chunks on purpose
        await run(settings(csv_path, lake, fake_tmdb.url, offset=offset, limit=90))
    assert_exactly_once(lake, ids)


async def test_failed_ids_go_to_the_failed_sidecar_with_the_last_error(tmp_path: Path) -> None:
    ids = title_ids(20, "movie")
    known = [i for i in ids if kind_of(int(i[2:])) is not None]
    broken = set(known[:2])
    config = FakeTmdbConfig(token=TOKEN, fault_ids=frozenset(broken))
    async with FakeTmdb(config) as fake:
        csv_path = write_csv(tmp_path / "movies.csv", ids)
        summary = await run(settings(csv_path, tmp_path / "lake", fake.url, max_attempts=3))
        stats = fake.stats()
    assert summary.status == "failed_ids"
    assert summary.exit_code == 1
    assert summary.failed == 2
    _, sidecars = load_output(tmp_path / "lake")
    assert {e["imdb_id"] for e in sidecars["failed"]} == broken
    assert all("HTTP 503" in e["reason"] and e["attempts"] == 3 for e in sidecars["failed"])
    asked = titles_asked(stats.path_counts)
    # Bounded attempts: 3 by IMDb id on /movie, then 3 on /find (TMDB answers 503 on both).
    assert all(asked[imdb_id] == 6 for imdb_id in broken)
    assert_exactly_once(tmp_path / "lake", ids)


async def test_rejected_credentials_stop_the_run_at_once(tmp_path: Path) -> None:
    async with FakeTmdb(FakeTmdbConfig(token="the-right-one")) as fake:
        csv_path = write_csv(tmp_path / "movies.csv", title_ids(200, "movie"))
        with pytest.raises(CredentialsError, match="rejected"):
            await run(settings(csv_path, tmp_path / "lake", fake.url))
        stats = fake.stats()
    assert stats.total_requests <= 20  # at most the requests already in flight
    manifest = next((tmp_path / "lake" / FOLDER / "_manifests").glob("movies-*.json"))
    assert json.loads(manifest.read_text())["outcome"] == "error"


async def test_deadline_stops_and_the_continuation_completes(
    tmp_path: Path,
) -> None:
    ids = title_ids(300, "movie")
    csv_path = write_csv(tmp_path / "movies.csv", ids)
    lake = tmp_path / "lake"
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN)) as fake:
        answered = 0

        def remaining() -> float:
            # A clock driven by progress, not time: plenty left until 150 ids are answered.
            return 1000.0 if answered < 150 else 0.5

        def progress(n: int) -> None:
            nonlocal answered
            answered += n

        first = await run(
            settings(csv_path, lake, fake.url, chunk_size=50),
            remaining=remaining,
            safety_margin=1.0,
            progress=progress,
        )
        assert first.status == "incomplete"
        assert first.exit_code == 4
        assert first.next_offset is not None and 150 <= first.next_offset < 300
        second = await run(
            settings(csv_path, lake, fake.url, chunk_size=50, offset=first.next_offset)
        )
    assert second.status == "ok"
    assert first.unique_ids + second.unique_ids == 300
    assert_exactly_once(lake, ids)


async def test_a_deadline_wastes_no_request_and_keeps_what_the_run_learned(
    tmp_path: Path,
) -> None:
    """At the deadline nothing new is asked, the requests in flight finish and are
    committed, and the id map's lessons are saved: a stop and its continuation ask TMDB
    exactly what one run asks. (A clock driven by requests, not time.)"""
    ids = title_ids(240, "movie", start=7_000_000) + title_ids(60, "tv", start=7_100_000)
    csv_path = write_csv(tmp_path / "movies.csv", ids)
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN, latency=0.01)) as fake:
        await run(settings(csv_path, tmp_path / "one", fake.url))
        one_run = fake.stats().total_requests
        fake.reset_stats()
        lake = tmp_path / "lake"
        at_deadline: list[int] = []

        def remaining() -> float:
            sent = fake.stats().total_requests
            if sent < 80:
                return 1000.0
            at_deadline.append(sent)
            return 1.0

        first = await run(
            settings(csv_path, lake, fake.url, concurrency=8),
            remaining=remaining,
            safety_margin=2.0,
        )
        sent_first = fake.stats().total_requests
        assert first.status == "incomplete" and first.next_offset is not None
        # After the deadline: only what was in flight (a series asked by IMDb id may go on
        # to /find, then its details): never a new id.
        assert sent_first - at_deadline[0] <= 3 * 8
        learned = await LakeIdMap(LocalStore(str(lake)), "check").load(compact=False)
        assert len(learned) == first.records  # saved: the next run needs no /find for them
        second = await run(settings(csv_path, lake, fake.url, offset=first.next_offset))
        assert second.status == "ok"
        assert fake.stats().total_requests == one_run
    assert_exactly_once(lake, ids)


async def test_ids_still_waiting_for_the_rate_at_the_deadline_are_handed_back_not_waited_for(
    tmp_path: Path,
) -> None:
    """At the deadline an id whose first request has not been sent (it waits for the rate's
    turn) is not in flight: it is handed back at once, so what TMDB answered is committed
    well before the hard stop. Before, the run waited for every started id: at 5/s with 20
    connections that is 4 s of queue against the 2.7 s a 4 s margin leaves, so the hard stop
    cut the one open chunk and its answers were asked again (exit 2, "no progress", on the
    command line). A real clock: the queue is the throttle's; the answers (10 ms) have 2.7 s
    to come, so a loaded machine does not reach the hard stop."""
    ids = title_ids(60, "movie", start=7_300_000)
    csv_path = write_csv(tmp_path / "m.csv", ids)
    common = {"rate": 5.0, "concurrency": 20, "chunk_size": 100, "kind": "movie"}
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN, latency=0.01)) as fake:
        await run(settings(csv_path, tmp_path / "one", fake.url, **{**common, "rate": 1000.0}))
        one_run = fake.stats().total_requests
        fake.reset_stats()
        lake = tmp_path / "lake"
        deadline = time.monotonic() + 5.5  # 1.5 s of ids, then the 4 s margin

        first = await run(
            settings(csv_path, lake, fake.url, **common),
            remaining=lambda: deadline - time.monotonic(),
            safety_margin=4.0,
        )
        assert first.status == "incomplete" and first.next_offset is not None
        assert first.unique_ids > 0
        # Every title asked was committed: none waits in the continuation with its answer lost.
        asked = set(titles_asked(fake.stats().path_counts))
        assert asked == set(ids[: first.next_offset]) and first.unique_ids == first.next_offset
        assert fake.stats().cancelled == 0
        fast = {**common, "rate": 1000.0, "offset": first.next_offset}
        second = await run(settings(csv_path, lake, fake.url, **fast))
        assert second.status == "ok"
        assert fake.stats().total_requests == one_run
    assert_exactly_once(lake, ids)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"chunk_size": 101}, "chunk_size: 101 is outside 1..100"),
        ({"chunk_size": 0}, "chunk_size: 0 is outside 1..100"),
        ({"offset": -1}, "offset: -1 is negative"),
        ({"limit": -5}, "limit: -5 is negative"),
        ({"kind": "episode"}, "kind: 'episode' is not one of movie, tv, auto"),
        ({"concurrency": 0}, "concurrency: 0 is outside 1..100"),
        ({"rate": 0.0}, "rate: 0.0 must be above 0"),
    ],
)
async def test_bad_settings_are_refused_before_any_io(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        await run(
            settings(tmp_path / "nope.csv", tmp_path / "lake", "http://127.0.0.1:9", **changes)
        )
    assert not (tmp_path / "lake").exists()


async def test_missing_credentials_are_refused(tmp_path: Path) -> None:
    s = settings("x.csv", tmp_path, "http://127.0.0.1:9", credentials=Credentials())
    with pytest.raises(CredentialsError, match="TMDB_READ_ACCESS_TOKEN"):
        await run(s)


async def test_missing_source_is_bad_input(tmp_path: Path, fake_tmdb: FakeTmdb) -> None:
    with pytest.raises(InputError, match="no such file"):
        await run(settings(tmp_path / "missing.csv", tmp_path / "lake", fake_tmdb.url))


async def test_unwritable_destination_fails_before_tmdb_is_called(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    csv_path = write_csv(tmp_path / "movies.csv", title_ids(5, "movie"))
    with pytest.raises(StorageError, match="cannot write"):
        await run(settings(csv_path, blocker, fake_tmdb.url))
    assert fake_tmdb.stats().total_requests == 0


async def test_a_batch_cut_off_with_a_chunk_still_retrying_hands_back_only_unfinished_ids(
    tmp_path: Path,
) -> None:
    """Chunks after a pending one may finish before the deadline: the continuation must get
    only the ids of unfinished chunks, or their records would be written twice."""
    ids = title_ids(100, "movie", start=8_000_000)
    stuck = ids[35]  # always 503: still retrying when the budget runs out
    config = FakeTmdbConfig(token=TOKEN, fault_ids=frozenset({stuck}))
    lake = tmp_path / "lake"
    async with FakeTmdb(config) as fake:
        s = settings("items", lake, fake.url, chunk_size=10, concurrency=5, max_backoff=30.0)
        end = time.monotonic() + 4.0  # a real deadline: the hard stop needs real time
        first = await run(
            s,
            items=[{"id": i} for i in ids],
            remaining=lambda: end - time.monotonic(),
            safety_margin=3.0,
        )
        assert first.status == "incomplete"
        left = [item["id"] for item in first.remaining_items or []]
        assert stuck in left
        assert len(left) < 100 - 30  # chunks finished after the stuck one are not handed back
        second = await run(s.with_changes(max_attempts=2, max_backoff=0.05), items=left)
    assert first.unique_ids + second.unique_ids == 100
    assert_exactly_once(lake, ids)


async def test_a_huge_invalid_value_is_listed_once_under_a_bounded_label(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    huge = "tt" + "9" * 5000
    ids = title_ids(5, "movie")
    csv_path = write_csv(tmp_path / "movies.csv", [*ids, huge])
    lake = tmp_path / "lake"
    first = await run(settings(csv_path, lake, fake_tmdb.url))
    again = await run(settings(csv_path, lake, fake_tmdb.url))
    _, sidecars = load_output(lake)
    (entry,) = sidecars["invalid"]
    assert len(entry["imdb_id"]) < 100 and entry["imdb_id"].startswith("tt999")
    assert "longer than IMDb could issue" in entry["reason"]
    assert (first.invalid, again.kept) == (1, 6)  # kept by the rerun, not listed twice


# --- requests per title ---------------------------------------------------------------------


async def test_a_movie_costs_one_request_and_an_unknown_id_two(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    ids = title_ids(150, "movie")
    summary = await run(
        settings(write_csv(tmp_path / "m.csv", ids), tmp_path / "lake", fake_tmdb.url, kind="movie")
    )
    assert summary.records > 130 and summary.not_found > 0
    assert summary.requests == fake_tmdb.stats().total_requests
    # /3/movie/tt… answers a movie; an unknown id answers 404 there, then /find says so.
    assert summary.requests == summary.records + 2 * summary.not_found


async def test_a_rerun_the_next_day_asks_each_known_title_once_by_its_tmdb_id(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    """A series file costs /find + details the first time; the lake's id map then knows every
    title it holds, so the next day's run costs one request per title, series included, and
    writes the very same records."""
    ids = title_ids(60, "tv") + title_ids(60, "movie")
    csv_path = write_csv(tmp_path / "mixed.csv", ids)
    lake = tmp_path / "lake"
    first = await run(settings(csv_path, lake, fake_tmdb.url))
    fake_tmdb.reset_stats()
    next_day = dt.date(2022, 5, 3)
    second = await run(settings(csv_path, lake, fake_tmdb.url, date=next_day))
    sent = fake_tmdb.stats().path_counts
    assert second.records == first.records and second.not_found == first.not_found
    asked = titles_asked(sent)
    known = [i for i in ids if kind_of(int(i[2:])) is not None]
    assert all(asked[i] == 1 for i in known)  # one request each, by the TMDB id
    assert all(f"/3/{kind_of(int(i[2:]))}/{int(i[2:])}" in sent for i in known)
    assert second.requests == len(known) + sum(asked[i] for i in set(ids) - set(known))

    def by_id(folder: str) -> dict[str, dict[str, Any]]:
        return {i: places[0][1] for i, places in read_local(lake / folder).records.items()}

    assert by_id(FOLDER) == by_id("Raw/TMDB/JSON/2022/05/03")  # the same records either way
    assert (lake / "Raw/TMDB/_state/idmap").is_dir()


async def test_when_tmdb_stops_answering_imdb_ids_on_movie_the_run_goes_back_to_find_first(
    tmp_path: Path,
) -> None:
    """Never worse than find + details: a dead direct path is noticed within the ids already
    in flight, and every title still gets its record."""
    ids = title_ids(300, "movie")
    config = FakeTmdbConfig(token=TOKEN, imdb_on_movie=False)
    async with FakeTmdb(config) as fake:
        csv_path = write_csv(tmp_path / "m.csv", ids)
        summary = await run(settings(csv_path, tmp_path / "lake", fake.url, kind="movie"))
        sent = fake.stats().path_counts
    direct = [p for p in sent if "/movie/tt" in p]
    assert summary.status == "ok"
    assert summary.records == len([i for i in ids if kind_of(int(i[2:])) == "movie"])
    assert len(direct) <= 50  # noticed within the first ~50 ids (20 of them in flight)
    find_first = 2 * summary.records + summary.not_found  # what find + details costs
    assert summary.requests <= find_first + len(direct)
    assert_exactly_once(tmp_path / "lake", ids)


class _NoIdMap:
    """A destination whose id map cannot be read (access denied on Raw/TMDB/_state/idmap/)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.map_reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _check(self, key: str) -> None:
        if key.startswith("Raw/TMDB/_state/idmap"):
            self.map_reads += 1
            raise StorageError(f"{key}: cannot read: AccessDenied")

    async def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        self._check(prefix)
        return await self.inner.list(prefix, start_after)

    async def read(self, key: str) -> Any:
        self._check(key)
        return await self.inner.read(key)


@pytest.mark.parametrize("detail", ["full", "find"])
async def test_an_unreadable_id_map_costs_requests_never_the_run(
    tmp_path: Path, fake_tmdb: FakeTmdb, detail: str
) -> None:
    from tmdb_async.lake.storage import LocalStore

    ids = title_ids(30, "movie")
    store = _NoIdMap(LocalStore(str(tmp_path / "lake")))
    summary = await run(
        settings(
            write_csv(tmp_path / "m.csv", ids), tmp_path / "lake", fake_tmdb.url, detail=detail
        ),
        store=store,  # type: ignore[arg-type]
    )
    assert summary.status == "ok"
    assert_exactly_once(tmp_path / "lake", ids)
    assert store.map_reads == (1 if detail == "full" else 0)  # /find items need no map


async def test_a_stalled_id_map_write_never_holds_the_run_past_its_bound(
    tmp_path: Path,
    fake_tmdb: FakeTmdb,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The run's last id-map segment is saved within a bound (and the caller's deadline):
    a write that never returns costs that segment, not the run or its summary."""
    import tmdb_async.jobs.ingest as pipeline
    from tmdb_async.lake.storage import LocalStore

    monkeypatch.setattr(pipeline, "_SAVE_SECONDS", 0.2)
    never = asyncio.Event()

    class Stalling(_NoIdMap):
        async def list(self, prefix: str, start_after: str | None = None) -> list[str]:
            return await self.inner.list(prefix, start_after)

        async def read(self, key: str) -> Any:
            return await self.inner.read(key)

        async def write(self, key: str, data: bytes, *args: Any, **kwargs: Any) -> str:
            if key.startswith("Raw/TMDB/_state/idmap/segments/"):
                await never.wait()
            return await self.inner.write(key, data, *args, **kwargs)

    ids = title_ids(30, "movie")
    store = Stalling(LocalStore(str(tmp_path / "lake")))
    caplog.set_level(logging.WARNING)
    summary = await run(
        settings(write_csv(tmp_path / "m.csv", ids), tmp_path / "lake", fake_tmdb.url),
        store=store,  # type: ignore[arg-type]
    )
    assert summary.status == "ok" and summary.records > 0
    assert_exactly_once(tmp_path / "lake", ids)
    assert "id-map titles not saved within 0.2s" in caplog.text
