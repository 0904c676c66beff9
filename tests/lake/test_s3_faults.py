"""Faults from S3: transient errors are retried by botocore's retry configuration; a
persistent failure ends the run with a clear message, and nothing claims success for files
that were not written."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, TOKEN
from tests.support.lake import read_s3
from tests.support.s3proxy import S3FaultProxy, S3Faults
from tmdb_async import Credentials, Settings, run
from tmdb_async.errors import InputError, StorageError
from tmdb_async.lake import ledger
from tmdb_devtools.csvgen import title_ids, write_csv
from tmdb_devtools.fake_tmdb import FakeTmdb

KEY = "Raw/Local/CSV/Movies/2022/05/02/movies.csv"


def _settings(url: str) -> Settings:
    return Settings(
        source=f"s3://data-lake-x/{KEY}",
        dest="s3://data-lake-x",
        credentials=Credentials(read_access_token=TOKEN),
        tmdb_url=url,
        date=dt.date(2022, 5, 2),
        rate=1000.0,
        chunk_size=20,
    )


@pytest.fixture
def upload(tmp_path: Path, s3: Any, lake: str) -> list[str]:
    ids = title_ids(120, "movie")
    s3.upload_file(str(write_csv(tmp_path / "m.csv", ids)), lake, KEY)
    return ids


async def test_transient_s3_errors_are_retried_and_nothing_is_lost(
    s3_env: str,
    s3: Any,
    upload: list[str],
    fake_tmdb: FakeTmdb,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    faults = S3Faults(slow_down=0.15, internal_error=0.1, reset=0.05, seed=2)
    async with S3FaultProxy(s3_env, faults) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        summary = await run(_settings(fake_tmdb.url))
    assert faults.counts["SlowDown"] and faults.counts["InternalError"] and faults.counts["reset"]
    assert summary.status == "ok"
    view = read_s3(s3, "data-lake-x", "Raw/TMDB/JSON/2022/05/02")
    assert not view.duplicates()
    assert view.all_ids() == set(upload)


async def test_writes_whose_answer_was_lost_after_landing_cost_nothing_and_lose_nothing(
    s3_env: str,
    s3: Any,
    upload: list[str],
    fake_tmdb: FakeTmdb,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """S3 applied the write and its answer was lost (a 500 after the write landed): botocore
    sends it again, and a conditional write's retry fails because of its own first attempt.
    The lease, the ledger's commits and its fenced data writes recognise their own write.

    No lease waits: a writer that did not recognise its own lock would wait it out (an hour
    here) or give up on it (after five minutes), so the bound below tells a lease wait from
    a run slowed by the machine's load, which takes seconds."""
    monkeypatch.setattr(ledger, "LEASE_SECONDS", 3600.0)
    faults = S3Faults(lost_answer=0.3, seed=5)
    async with S3FaultProxy(s3_env, faults) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        assert ledger.WAIT_SECONDS < 600 < ledger.LEASE_SECONDS
        summary = await asyncio.wait_for(run(_settings(fake_tmdb.url)), 600)  # no lease waits
    assert any(p.endswith("/_ledger/lock.json") for p in faults.lost)  # lease
    assert any("/_ledger/log/" in p for p in faults.lost)  # commits
    assert any(re.search(r"/movies-\d{8}-\d{2}\.json$", p) for p in faults.lost)  # data
    assert summary.status == "ok" and summary.unique_ids == len(upload)
    view = read_s3(s3, "data-lake-x", "Raw/TMDB/JSON/2022/05/02")
    assert not view.duplicates()
    assert view.all_ids() == set(upload)
    listing = s3.list_objects_v2(Bucket="data-lake-x", Prefix="Raw/TMDB/JSON/2022/05/02/_ledger/")
    assert "lock.json" not in {o["Key"].rsplit("/", 1)[-1] for o in listing.get("Contents", [])}


async def test_access_denied_from_the_start_fails_before_tmdb_is_called(
    s3_env: str, upload: list[str], fake_tmdb: FakeTmdb, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with S3FaultProxy(s3_env, S3Faults(deny_puts_after=0)) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        with pytest.raises(StorageError, match=r"s3://data-lake-x/Raw/TMDB/.*: cannot write: "):
            await run(_settings(fake_tmdb.url))
    assert fake_tmdb.stats().total_requests == 0


async def test_access_denied_mid_run_exits_3_and_claims_nothing(
    s3_env: str, upload: list[str], fake_tmdb: FakeTmdb, s3: Any, lake: str
) -> None:
    async with S3FaultProxy(s3_env, S3Faults(deny_puts_after=3)) as proxy:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TMDB_")}
        env.update(AWS_ENDPOINT_URL=proxy.url, TMDB_READ_ACCESS_TOKEN=TOKEN)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tmdb_async", "run", f"s3://data-lake-x/{KEY}",
            "--dest", "s3://data-lake-x", "--tmdb-url", fake_tmdb.url, "--chunk-size", "20",
            "--json", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 3
    assert "cannot write: access denied" in err.decode()
    result = json.loads(out.decode().splitlines()[-1])
    assert result["status"] == "error"
    # The counts the run reached come along; every file it claims is really there.
    claimed = [*result.get("files", []), *result.get("sidecars", [])]
    stored = {o["Key"] for o in s3.list_objects_v2(Bucket=lake).get("Contents", [])}
    assert {url.split(f"{lake}/", 1)[1] for url in claimed} <= stored


async def test_source_access_denied_is_bad_input(
    s3_env: str, upload: list[str], fake_tmdb: FakeTmdb, monkeypatch: pytest.MonkeyPatch
) -> None:
    class DenyGets(S3FaultProxy):
        async def _handle(self, request: Any) -> Any:
            if request.method == "GET" and KEY in request.path:
                return self._error(403, "AccessDenied", "Access Denied")
            return await super()._handle(request)

    async with DenyGets(s3_env, S3Faults()) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        with pytest.raises(InputError, match=r"movies\.csv: access denied reading the source"):
            await run(_settings(fake_tmdb.url))


async def test_a_copy_whose_answer_was_lost_is_recognised_as_landed() -> None:
    """The copy into place lands, its answer is lost, and the retry is refused (create-only,
    as S3 does; moto would not refuse it): the ledger reads the file back, finds its own
    bytes, and finishes the commit."""
    from tests.support.faulty import FaultyStore
    from tests.support.memory_store import MemoryStore

    memory = MemoryStore()
    store = FaultyStore(memory, rule=lambda op, key, n: "lost" if op == "copy" else None)
    folder = "Raw/TMDB/JSON/2022/05/02"
    book = await ledger.Ledger(store, folder).load()  # type: ignore[arg-type]
    done = await book.commit(
        [([{"imdb_id": "tt0000001", "id": 1}], [{"imdb_id": "tt0000002", "outcome": "invalid"}])],
        shape="s",
        fmt="json",
        stem="m",
    )
    assert store.lost == [f"{folder}/{done.data_files[0]}", f"{folder}/{done.sidecar_file}"]
    assert json.loads(memory.objects[f"{folder}/{done.data_files[0]}"])[0]["imdb_id"] == "tt0000001"
    assert not [k for k in memory.objects if k.endswith(ledger.STAGED_SUFFIX)]
    assert (await ledger.Ledger(memory, folder).load()).pending is None  # type: ignore[arg-type]


async def test_a_copy_refused_by_another_file_is_not_taken_for_its_own() -> None:
    """A final name already holding other bytes (a late write of another writer) is not
    this commit's file: the commit stops (lease lost) instead of claiming it."""
    from tests.support.faulty import FaultyStore
    from tests.support.memory_store import MemoryStore
    from tmdb_async.errors import LeaseLost

    memory = MemoryStore()
    folder = "Raw/TMDB/JSON/2022/05/02"
    memory.objects[f"{folder}/m-00000001-00.json"] = b'[{"imdb_id": "tt0000009"}]'
    book = await ledger.Ledger(FaultyStore(memory), folder).load()  # type: ignore[arg-type]
    with pytest.raises((LeaseLost, StorageError)):
        await book.commit(
            [([{"imdb_id": "tt0000001", "id": 1}], [])], shape="s", fmt="json", stem="m"
        )
    assert json.loads(memory.objects[f"{folder}/m-00000001-00.json"]) == [{"imdb_id": "tt0000009"}]
