"""Progress tells the truth: it moves per resolved id (kept and skipped ids count), before
any chunk is committed, reaches the distinct ids, and learns the client's counters; where
there is no terminal, a log line comes at a steady interval (on a virtual clock here)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOKEN
from tests.support.memory_store import MemoryStore
from tmdb_async.credentials import Credentials
from tmdb_async.events import handle
from tmdb_async.jobs import progress as progress_module
from tmdb_async.jobs.ingest import run
from tmdb_async.jobs.progress import LogProgress, Progress
from tmdb_async.jobs.refresh import refresh
from tmdb_async.settings import Settings
from tmdb_devtools.csvgen import title_ids, write_csv
from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig


def _settings(source: Path, dest: Path, url: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "credentials": Credentials(read_access_token=TOKEN),
        "tmdb_url": url,
        "rate": 1000.0,
        "max_backoff": 0.05,
    }
    values.update(changes)
    return Settings(source=str(source), dest=str(dest), **values)


class _Recording(Progress):
    """Every value ``done`` took, and the total it was told."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def changed(self) -> None:
        self.seen.append(self.done)


class _WatchedStore(MemoryStore):
    """Notes how far progress was when the first data file was written (the first commit)."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress
        self.done_at_first_commit: int | None = None

    async def write(self, key: str, data: bytes, *args: Any, **kwargs: Any) -> str:
        is_data = key.startswith("Raw/TMDB/JSON/") and "/_" not in key
        if is_data and self.done_at_first_commit is None:
            self.done_at_first_commit = self.progress.done
        return await super().write(key, data, *args, **kwargs)


async def test_progress_moves_for_every_id_before_the_first_commit(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    ids = title_ids(60, "movie")  # some unknown to TMDB: resolved as not found
    csv_path = write_csv(tmp_path / "movies.csv", ids)
    progress = _Recording()
    store = _WatchedStore(progress)
    # One chunk larger than the ids: the only commit comes after the last answer.
    summary = await run(
        _settings(csv_path, tmp_path / "lake", fake_tmdb.url, chunk_size=100),
        progress=progress,
        store=store,
    )
    assert summary.unique_ids == 60
    assert store.done_at_first_commit == 60
    assert progress.seen == list(range(1, 61))


async def test_kept_ids_count_as_done_and_progress_learns_the_client_counters(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    ids = title_ids(40, "movie")
    csv_path = write_csv(tmp_path / "movies.csv", ids)
    lake = tmp_path / "lake"
    await run(_settings(csv_path, lake, fake_tmdb.url, limit=25))
    progress = _Recording()
    summary = await run(_settings(csv_path, lake, fake_tmdb.url), progress=progress)
    assert summary.kept == 25
    assert progress.done == summary.unique_ids == 40
    snap = progress.snapshot()
    assert snap.requests == summary.requests > 0  # this run's requests, not the first's
    assert snap.throttled == 0


async def test_a_batch_tells_its_total_before_the_first_id(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    ids = title_ids(30, "movie")
    progress = _Recording()
    items = [{"id": i} for i in ids + ids[:5]]  # repeated rows: 30 distinct ids
    await run(
        _settings(Path("items"), tmp_path / "lake", fake_tmdb.url, offset=4, limit=20),
        items=items,
        progress=progress,
    )
    assert progress.total == 20
    assert progress.seen[0] == 0  # told before any id was resolved
    assert progress.done == 20


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_lambda_progress_line_comes_every_interval_with_done_total_rate_and_eta(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    progress = LogProgress("s3://lake/movies.csv", interval=30.0, clock=clock)
    progress.set_total(100)
    caplog.set_level(logging.INFO, logger="tmdb_async.progress")
    lines: list[tuple[float, str]] = []
    for second in range(1, 91):  # one id a second for 90 s
        clock.now = 1000.0 + second
        progress(1)
        lines += [(clock.now - 1000.0, r.getMessage()) for r in caplog.records]
        caplog.clear()
    assert [at for at, _ in lines] == [30.0, 60.0, 90.0]
    assert lines[0][1] == (
        "progress: s3://lake/movies.csv: 30 of 100 ids done, 0.0 requests/s, 0 x 429, ETA 70s"
    )
    assert lines[2][1].endswith("90 of 100 ids done, 0.0 requests/s, 0 x 429, ETA 10s")


def test_the_lambda_progress_line_without_a_total_has_no_eta(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    progress = LogProgress("refresh", interval=30.0, clock=clock)
    caplog.set_level(logging.INFO, logger="tmdb_async.progress")
    clock.now += 31
    progress(5)
    (record,) = caplog.records
    assert record.getMessage().endswith("refresh: 5 ids done, 0.0 requests/s, 0 x 429, ETA unknown")
    assert record.progress == {  # type: ignore[attr-defined]
        "done": 5,
        "total": None,
        "requests_per_second": 0.0,
        "throttled_429": 0,
        "eta_seconds": None,
    }


async def test_a_refresh_tells_its_titles_as_the_total_and_reaches_it(tmp_path: Path) -> None:
    today = dt.date(2026, 11, 20)
    cfg = FakeTmdbConfig(token=TOKEN, change_period=7, change_universe=5_000, today=today)
    ids = [f"tt{n:07d}" for n in range(1, 301)]
    lake = tmp_path / "lake"
    async with FakeTmdb(cfg) as fake:
        csv_path = write_csv(tmp_path / "in.csv", ids)
        await run(_settings(csv_path, lake, fake.url, date=dt.date(2026, 11, 10)))
        progress = _Recording()
        summary = await refresh(
            _settings(Path("refresh"), lake, fake.url, date=today), progress=progress
        )
    assert summary.status == "ok" and summary.in_lake > 0
    assert progress.total == summary.in_lake
    assert progress.done == summary.in_lake
    assert progress.seen[0] == 0  # the total came before the first title
    assert progress.snapshot().requests == summary.requests


async def test_a_lambda_batch_logs_progress_lines_with_its_total(
    s3: Any, lake: str, fake_tmdb: FakeTmdb, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.setattr(progress_module, "LOG_INTERVAL", 0.0)  # a line at every id
    caplog.set_level(logging.INFO, logger="tmdb_async.progress")
    ids = title_ids(12, "movie")
    event = {"Items": [{"id": i} for i in ids], "BatchInput": {"dest": f"s3://{lake}"}}
    env = {
        "TMDB_READ_ACCESS_TOKEN": TOKEN,
        "TMDB_BASE_URL": fake_tmdb.url,
        "TMDB_ALLOWED_BUCKETS": lake,
        "TMDB_RATE": "1000",
    }
    result = await handle(event, None, env)
    assert result["status"] == "ok"
    lines = [r.getMessage() for r in caplog.records if r.name == "tmdb_async.progress"]
    assert len(lines) == 13  # the total, then each id
    assert lines[0].startswith("progress: batch of 12 items: 0 of 12 ids done, ")
    assert lines[-1].startswith("progress: batch of 12 items: 12 of 12 ids done, ")
