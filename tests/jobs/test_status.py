"""``status``: what the lake holds, read from ledgers, manifests and state files only.

The lake is built by real runs against the fake TMDB (records, not found, invalid, failed),
a refresh that finds titles TMDB deleted and carries a failure, and a killed run; every count
``status`` gives is checked against the files themselves (:func:`read_local`), and the lake
is byte for byte the same after ``status`` read it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.jobs.test_refresh import INGESTED, TODAY, config, expected, folder, imdb, options
from tests.support.kill import Killed, KillingStore, declare_dead
from tests.support.lake import FolderView, read_local, read_s3
from tmdb_async import run
from tmdb_async.errors import StorageError
from tmdb_async.jobs.refresh import Window, refresh
from tmdb_async.jobs.status import LakeStatus, lake_status, status_lines
from tmdb_async.lake import runstate
from tmdb_async.lake.idmap import LakeIdMap
from tmdb_async.lake.storage import LocalStore, open_store
from tmdb_devtools.csvgen import write_csv
from tmdb_devtools.fake_tmdb import FakeTmdb

KILLED = INGESTED + dt.timedelta(days=1)
INVALID = "tt12x"


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``root`` (hidden ones too): its digest and modification time."""
    return {
        path.relative_to(root).as_posix(): (
            hashlib.md5(path.read_bytes()).hexdigest(),
            path.stat().st_mtime_ns,
        )
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def outcomes_of(view: FolderView) -> dict[str, int]:
    """Ids by outcome, as the files say (each id is in one place: checked)."""
    assert not view.duplicates()
    counts = Counter({"record": len(view.records)})
    counts.update(places[0][1]["outcome"] for places in view.outcomes.values())
    return {name: counts[name] for name in ("record", "not_found", "invalid", "failed", "deleted")}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], str, str]:
    """(lake, ids ingested, the id that failed at ingest, the title the refresh carries)."""
    import asyncio

    tmp_path = tmp_path_factory.mktemp("status")
    lake = tmp_path / "lake"
    ids = [imdb(n) for n in range(1, 121)]
    changed = expected(ids, Window(INGESTED, TODAY - dt.timedelta(days=1)), config())
    gone = {imdb(3), imdb(8)}
    carried = sorted(changed - gone)[0]
    poison = sorted(set(ids) - changed - gone)[5]

    async def build() -> None:
        csv_path = write_csv(tmp_path / "in.csv", [*ids, INVALID])
        async with FakeTmdb(config(fault_ids=frozenset({poison}))) as fake:
            first = await run(
                options(lake, fake.url, source=str(csv_path), date=INGESTED, max_attempts=2)
            )
            assert first.status == "failed_ids" and first.invalid == 1
        cfg = config(removed_ids=frozenset(gone), fault_ids=frozenset({carried}))
        async with FakeTmdb(cfg) as fake:
            refreshed = await refresh(options(lake, fake.url, max_attempts=2))
            assert refreshed.deleted == 2 and refreshed.carried == [carried]
            more = write_csv(tmp_path / "more.csv", [imdb(n) for n in range(200, 400)])
            killed = options(lake, fake.url, source=str(more), date=KILLED, chunk_size=20)
            with pytest.raises(Killed):
                await run(killed, store=KillingStore(LocalStore(str(lake)), 14))  # type: ignore[arg-type]
        declare_dead(lake)

    asyncio.run(build())
    return lake, ids, poison, carried


async def test_each_folder_s_ids_by_outcome_and_files_are_what_the_folder_holds(
    built: tuple[Path, list[str], str, str],
) -> None:
    lake, _, _, _ = built
    status = await lake_status(LocalStore(str(lake)))
    assert [f.date for f in status.folders] == [str(INGESTED), str(KILLED), str(TODAY)]
    for shown in status.folders:
        view = read_local(lake / folder(dt.date.fromisoformat(shown.date)))
        assert shown.ids.as_dict() == {**outcomes_of(view), "total": len(view.all_ids())}
        by_format: dict[str, list[int]] = {}
        for name, records in view.data_files.items():
            entry = by_format.setdefault(name.rsplit(".", 1)[1], [0, 0])
            entry[0] += 1
            entry[1] += records
        assert {f.format: [f.files, f.records] for f in shown.formats} == by_format
        assert shown.stray_files == ()
        assert shown.sidecar_files == len(
            list((lake / folder(dt.date.fromisoformat(shown.date)) / "_sidecars").glob("*.json"))
        )
    ingested, killed, refreshed = status.folders
    assert ingested.ids.record and ingested.ids.not_found and ingested.ids.invalid == 1
    assert ingested.ids.failed == 1 and refreshed.ids.deleted == 2 and killed.ids.record
    assert status.totals.total == sum(f.ids.total for f in status.folders)


async def test_the_runs_of_each_folder_come_from_its_manifests(
    built: tuple[Path, list[str], str, str],
) -> None:
    lake, ids, _, _ = built
    status = await lake_status(LocalStore(str(lake)))
    ingested, killed, refreshed = status.folders
    (first,) = ingested.runs
    assert first.outcome == "failed_ids" and first.source.endswith("in.csv")
    assert first.counts["unique_ids"] == len(ids) + 1 and first.counts["failed"] == 1
    assert first.settings["date"] == str(INGESTED) and first.finished_at is not None
    assert "credentials" not in json.dumps(first.as_dict())
    (dead,) = killed.runs  # killed outright: its manifest never got its end
    assert dead.outcome == "running" and dead.finished_at is None
    manifests = list((lake / folder(TODAY) / "_manifests").glob("*.json"))
    assert len(refreshed.runs) == len(manifests) >= 1
    assert {r.outcome for r in refreshed.runs} == {"failed_ids"}


async def test_a_killed_run_shows_as_interrupted_and_the_refresh_state_as_saved(
    built: tuple[Path, list[str], str, str],
) -> None:
    lake, _, _, carried = built
    status = await lake_status(LocalStore(str(lake)))
    (pin,) = status.in_progress
    assert pin.date == str(KILLED) and pin.state == "interrupted"
    assert pin.why == "its process died on this machine" and pin.source.endswith("more.csv")
    assert status.refresh is not None
    assert status.refresh.refreshed_through == str(TODAY - dt.timedelta(days=1))
    assert status.refresh.carried == (carried,)


async def test_the_id_map_size_is_what_a_run_reads(
    built: tuple[Path, list[str], str, str],
) -> None:
    lake, _, _, _ = built
    status = await lake_status(LocalStore(str(lake)))
    known = await LakeIdMap(LocalStore(str(lake)), "check").load(compact=False)
    assert status.idmap.titles == len(known) > 0
    assert status.idmap.deleted == sum(1 for _, title in known.entries() if title.deleted) == 2


async def test_failed_lists_the_failed_ids_with_the_reasons_of_their_sidecar_entries(
    built: tuple[Path, list[str], str, str],
) -> None:
    lake, _, poison, _ = built
    without = await lake_status(LocalStore(str(lake)))
    assert all(f.failed is None for f in without.folders)
    status = await lake_status(LocalStore(str(lake)), failed=True, date=INGESTED)
    (shown,) = status.folders
    view = read_local(lake / folder(INGESTED))
    in_files = {
        i: places[0][1]["reason"]
        for i, places in view.outcomes.items()
        if places[0][1]["outcome"] == "failed"
    }
    assert shown.failed is not None
    assert {f.imdb_id: f.reason for f in shown.failed} == in_files == {poison: in_files[poison]}
    assert shown.failed[0].attempts == 2 and "503" in shown.failed[0].reason


async def test_status_writes_nothing_and_takes_no_lock(
    built: tuple[Path, list[str], str, str],
) -> None:
    lake, _, _, _ = built
    before = snapshot(lake)
    await lake_status(LocalStore(str(lake)), failed=True)
    assert snapshot(lake) == before


async def test_as_dict_is_json_with_the_documented_keys(
    built: tuple[Path, list[str], str, str],
) -> None:
    lake, _, _, _ = built
    status = await lake_status(LocalStore(str(lake)), failed=True)
    data = json.loads(json.dumps(status.as_dict()))
    assert list(data) == ["dest", "read_at", "totals", "folders", "in_progress", "refresh", "idmap"]
    assert list(data["folders"][0]) == [
        "date",
        "path",
        "ids",
        "formats",
        "sidecar_files",
        "stray_files",
        "version",
        "pending",
        "runs",
        "failed",
    ]
    assert set(data["idmap"]) == {"titles", "deleted", "base_titles", "segments", "damaged"}
    assert set(data["refresh"]) == {"refreshed_through", "carried", "error"}
    text = "\n".join(status_lines(status))
    assert str(INGESTED) in text and "interrupted" in text and "failed ids (1)" in text


async def test_a_pin_that_stopped_beating_elsewhere_is_interrupted(tmp_path: Path) -> None:
    """A run on another machine rewrites its pin every heartbeat: one not rewritten for two
    is a dead run's, whatever its state says."""
    store = LocalStore(str(tmp_path))
    pin = runstate.Pin("r1", "2026-11-10", 0, None, source="movies.csv", machine="elsewhere")
    await runstate.pin(store, "job1", pin)
    now = time.time()
    fresh = await lake_status(store, clock=lambda: now + runstate.HEARTBEAT)
    late = await lake_status(store, clock=lambda: now + 3 * runstate.HEARTBEAT)
    assert [(p.run, p.state) for p in fresh.in_progress] == [("r1", "running")]
    assert [(p.run, p.state) for p in late.in_progress] == [("r1", "interrupted")]
    assert "silent" in late.in_progress[0].why


async def test_a_place_without_a_lake_is_one_storage_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=f"{tmp_path / 'nothing'}: no lake here"):
        await lake_status(LocalStore(str(tmp_path / "nothing")))


async def test_a_date_without_a_folder_is_one_storage_error_naming_it(
    built: tuple[Path, list[str], str, str],
) -> None:
    lake, _, _, _ = built
    with pytest.raises(StorageError, match="2001/01/01: no date folder"):
        await lake_status(LocalStore(str(lake)), date=dt.date(2001, 1, 1))


def _etags(s3: Any, bucket: str) -> dict[str, str]:
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = obj["ETag"]
    return found


async def test_on_s3_status_counts_what_the_folders_hold_and_changes_no_object(
    tmp_path: Path, s3: Any, lake: str
) -> None:
    ids = [imdb(n) for n in range(1, 61)]
    csv_path = write_csv(tmp_path / "in.csv", [*ids, INVALID])
    dest = f"s3://{lake}/prefix"
    async with FakeTmdb(config()) as fake:
        await run(options(dest, fake.url, source=str(csv_path), date=INGESTED, chunk_size=20))
    before = _etags(s3, lake)
    async with open_store(dest) as store:
        status: LakeStatus = await lake_status(store, failed=True)
    assert _etags(s3, lake) == before
    (shown,) = status.folders
    view = read_s3(s3, lake, f"prefix/{folder(INGESTED)}")
    assert shown.ids.as_dict() == {**outcomes_of(view), "total": len(ids) + 1}
    assert shown.path == f"{dest}/{folder(INGESTED)}" and status.dest == dest
    assert [(f.format, f.files) for f in shown.formats] == [("json", len(view.data_files))]
