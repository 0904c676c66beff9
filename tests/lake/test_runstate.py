"""A job pins its date only while it is interrupted: a continuation is the same job, a run
that read nothing pins nothing, two runs at once never clear each other's pin, and every
terminal outcome clears it (``tmdb_async/runstate.py``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOKEN
from tests.support.kill import Killed, KillingStore, declare_dead
from tmdb_async import Credentials, Settings, run
from tmdb_async.errors import InputError
from tmdb_async.jobs.summary import Summary
from tmdb_async.lake import runstate
from tmdb_async.lake.storage import LocalStore
from tmdb_devtools.csvgen import title_ids, write_csv
from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig


def _settings(csv_path: Path, lake: Path, url: str, **changes: object) -> Settings:
    values: dict[str, object] = {
        "credentials": Credentials(read_access_token=TOKEN),
        "tmdb_url": url,
        "rate": 1000.0,
        "chunk_size": 20,
        "date": None,
    }
    values.update(changes)
    return Settings(source=str(csv_path), dest=str(lake), **values)  # type: ignore[arg-type]


def _pins(lake: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted(lake.glob("Raw/TMDB/_state/runs/*/*.json"))]


async def test_a_continued_slice_clears_its_pin_and_the_next_plain_run_starts_afresh(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    ids = title_ids(400, "movie")
    csv_path = write_csv(tmp_path / "movies.csv", ids)
    lake = tmp_path / "lake"
    answered = 0

    def progress(n: int) -> None:
        nonlocal answered
        answered += n

    first = await run(
        _settings(csv_path, lake, fake_tmdb.url, offset=100, limit=200),
        remaining=lambda: 1000.0 if answered < 60 else 0.5,  # a clock driven by progress
        safety_margin=1.0,
        progress=progress,
    )
    assert first.status == "incomplete" and first.next_offset is not None
    (pin,) = _pins(lake)
    assert (pin["state"], pin["start"], pin["end"]) == ("interrupted", first.next_offset, 300)
    # Continued as printed: --offset N --limit L --date D.
    second = await run(
        _settings(
            csv_path,
            lake,
            fake_tmdb.url,
            offset=first.next_offset,
            limit=first.next_limit,
            date=dt.date.fromisoformat(first.date),
        )
    )
    assert second.status == "ok"
    assert _pins(lake) == []  # the job is done: nothing pins its date any more
    job = runstate.job_key(str(csv_path), "x")
    assert (await runstate.watch(LocalStore(str(lake)), job)).date(0, None, None) == (
        dt.datetime.now(dt.UTC).date(),
        False,
    )


async def _stopped_after(answers: int, settings: Settings) -> Summary:
    """``settings`` run until ``answers`` ids are answered, then its deadline comes."""
    answered = 0

    def progress(n: int) -> None:
        nonlocal answered
        answered += n

    return await run(
        settings,
        remaining=lambda: 1000.0 if answered < answers else 0.5,  # a clock driven by progress
        safety_margin=1.0,
        progress=progress,
    )


async def test_a_job_stopped_again_and_again_then_continued_to_the_end_pins_nothing(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    """Issue 18 row 6, a chain: a run stopped at its deadline, its continuation stopped too,
    and so on, each continued as printed until one finishes. The job is done: no pin is
    left (each stopped continuation clears what it finished from the pins of the runs it
    continued), so the next plain run starts a new date folder."""
    csv_path = write_csv(tmp_path / "movies.csv", title_ids(300, "movie"))
    lake = tmp_path / "lake"
    changes: dict[str, object] = {"offset": 50, "limit": 200}
    for _ in range(3):  # stopped three times, each a continuation of the one before
        stopped = await _stopped_after(40, _settings(csv_path, lake, fake_tmdb.url, **changes))
        assert stopped.status == "incomplete" and stopped.next_offset is not None
        changes = {
            "offset": stopped.next_offset,
            "limit": stopped.next_limit,
            "date": dt.date.fromisoformat(stopped.date),
        }
    last = await run(_settings(csv_path, lake, fake_tmdb.url, **changes))
    assert last.status == "ok"
    assert _pins(lake) == []  # the whole job is done: nothing pins its date any more
    job = runstate.job_key(str(csv_path), "x")
    assert (await runstate.watch(LocalStore(str(lake)), job)).date(0, None, None) == (
        dt.datetime.now(dt.UTC).date(),
        False,
    )


@pytest.mark.parametrize("problem", ["missing", "no id column"])
async def test_a_run_that_read_nothing_pins_nothing(
    tmp_path: Path, fake_tmdb: FakeTmdb, problem: str
) -> None:
    csv_path = tmp_path / "movies.csv"
    if problem == "no id column":
        csv_path.write_text("titulo|ano\nMatrix|1999\n", encoding="utf-8")
    with pytest.raises(InputError):
        await run(_settings(csv_path, tmp_path / "lake", fake_tmdb.url))
    assert _pins(tmp_path / "lake") == []


async def test_a_killed_run_is_continued_and_its_pin_cleared_by_the_restart(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    ids = title_ids(80, "movie")
    csv_path = write_csv(tmp_path / "movies.csv", ids)
    lake = tmp_path / "lake"
    with pytest.raises(Killed):
        await run(
            _settings(csv_path, lake, fake_tmdb.url), store=KillingStore(LocalStore(str(lake)), 8)
        )
    assert len(_pins(lake)) == 1
    declare_dead(lake)  # as after a real SIGKILL
    summary = await run(_settings(csv_path, lake, fake_tmdb.url))
    assert summary.status == "ok" and summary.unique_ids == len(ids)
    assert _pins(lake) == []


async def test_two_runs_of_one_job_at_once_never_clear_each_others_pin(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    day = "2026-11-24"
    live = runstate.Pin("live-run", day, 0, None)  # this process: alive
    done = runstate.Pin("done-run", day, 0, 400)
    stopped = runstate.Pin("stopped", day, 150, 300, state="interrupted")
    elsewhere = runstate.Pin("other-day", "2026-11-20", 400, None, state="interrupted")
    for pin in (live, done, stopped, elsewhere):
        await runstate.pin(store, "job", pin)
    await runstate.finished(store, "job", done)
    left = {p.run for p in await runstate.pins(store, "job")}
    assert left == {"live-run", "other-day"}  # the continued one went; a live one stays,
    # and so does what the finished slice did not cover
    part = runstate.Pin("part", day, 0, 200)
    await runstate.pin(store, "job", runstate.Pin("tail", day, 100, 400, state="interrupted"))
    await runstate.finished(store, "job", part)
    (tail,) = [p for p in await runstate.pins(store, "job") if p.run == "tail"]
    assert (tail.start, tail.end) == (200, 400)  # only what the finished slice covered


async def test_a_finished_job_clears_the_interrupted_pins_of_every_date(tmp_path: Path) -> None:
    """The job's slices owed in an older folder are done too once a run finished the whole
    job in the newer one: the next plain run starts afresh."""
    store = LocalStore(str(tmp_path))
    for run_, day, start, end in (("r0", "2026-11-19", 300, 400), ("r1", "2026-11-20", 100, 200)):
        pin = runstate.Pin(run_, day, start, end, state="interrupted")
        await runstate.pin(store, "job", pin)
    date, continued = (await runstate.watch(store, "job")).date(0, None, None)
    assert (date.isoformat(), continued) == ("2026-11-20", True)
    whole = runstate.Pin("whole", date.isoformat(), 0, None)
    await runstate.pin(store, "job", whole)
    await runstate.finished(store, "job", whole)
    assert await runstate.pins(store, "job") == []


async def test_a_pin_whose_run_stopped_beating_anywhere_is_cleared_a_beating_one_kept(
    tmp_path: Path,
) -> None:
    """A run killed in another container or on another host cannot be asked whether it is
    alive; a pin that has not changed for two heartbeats since the finishing run first saw
    it is a dead run's. One that beat meanwhile is a live run's, and stays."""
    store = LocalStore(str(tmp_path))
    day = "2026-11-20"
    killed = runstate.Pin("killed", day, 0, None, machine="other-container/boot/4026532999")
    going = runstate.Pin("going", day, 0, None, machine="other-host/boot/4026531836")
    for pin in (killed, going):
        await runstate.pin(store, "job", pin)
    now = [0.0]
    seen = await runstate.watch(store, "job", clock=lambda: now[0])
    restart = runstate.Pin("restart", day, 0, None)
    await runstate.pin(store, "job", restart)
    await runstate.beat(store, "job", going)
    now[0] += 2 * runstate.HEARTBEAT
    await runstate.finished(store, "job", restart, seen)
    assert [p.run for p in await runstate.pins(store, "job")] == ["going"]


async def test_a_running_run_renews_its_pin_until_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runstate, "HEARTBEAT", 0.02)
    beats: list[int] = []
    real_beat = runstate.beat

    async def counting(store: Any, job: str, pin: runstate.Pin) -> runstate.Pin:
        pin = await real_beat(store, job, pin)
        beats.append(pin.beat)
        return pin

    monkeypatch.setattr(runstate, "beat", counting)
    csv_path = write_csv(tmp_path / "movies.csv", title_ids(60, "movie"))
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN, latency=0.05)) as slow:
        summary = await run(_settings(csv_path, tmp_path / "lake", slow.url, concurrency=2))
    assert summary.status == "ok"
    assert beats and beats == list(range(1, len(beats) + 1))
    assert _pins(tmp_path / "lake") == []  # and it is gone with the run
    beating = [t for t in asyncio.all_tasks() if "_heartbeat" in repr(t.get_coro())]
    assert not beating  # no beat after the run
