"""Faults from TMDB: a flaky API never loses an id, never writes one twice, and never makes
the client hammer it. The fake TMDB injects the faults; nothing here sleeps to synchronise."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOKEN
from tests.support.lake import read_local
from tmdb_async import Credentials, Settings, run
from tmdb_async.tmdb.answers import Found, NotFound
from tmdb_async.tmdb.client import ClientOptions, TmdbClient
from tmdb_devtools.csvgen import title_ids, write_csv
from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig

MAX_ATTEMPTS = 4
# aiohttp itself re-sends an idempotent request once when a *reused* keep-alive connection
# turns out dead (RFC 9112 §9.3.1), so a reset can cost two server hits per attempt.
SERVER_HITS_PER_ATTEMPT = 2


def _outputs(folder: Path) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    view = read_local(folder)
    sidecars: dict[str, list[dict[str, Any]]] = {}
    for places in view.outcomes.values():
        for _, entry in places:
            sidecars.setdefault(entry["outcome"], []).append(entry)
    return view.record_ids(), sidecars


@pytest.mark.slow
@pytest.mark.parametrize("retry_after", [None, 0.2], ids=["429-no-retry-after", "429-retry-after"])
async def test_every_id_is_accounted_for_under_all_faults_at_once(
    tmp_path: Path, retry_after: float | None
) -> None:
    config = FakeTmdbConfig(
        token=TOKEN,
        fault_5xx=0.05,
        fault_reset=0.03,
        fault_bad_json=0.02,
        fault_slow=0.01,
        slow_seconds=3.0,
        burst_429=0.03,
        retry_after=retry_after,
        seed=11,
    )
    ids = title_ids(600, "movie", start=4_000_000)
    csv_path = write_csv(tmp_path / "movies.csv", ids)
    async with FakeTmdb(config) as fake:
        settings = Settings(
            source=str(csv_path),
            dest=str(tmp_path / "lake"),
            credentials=Credentials(read_access_token=TOKEN),
            tmdb_url=fake.url,
            date=dt.date(2022, 5, 2),
            rate=1000.0,
            max_attempts=MAX_ATTEMPTS,
            request_timeout=0.5,  # the slow fault (3 s) is a timeout for the client
            max_backoff=0.2,
        )
        # A guard against hangs, not a performance assertion: every wait is bounded.
        async with asyncio.timeout(240):
            summary = await run(settings)
        stats = fake.stats()

    injected = stats.faults
    assert all(injected.get(kind, 0) > 0 for kind in ("5xx", "reset", "bad_json", "slow"))
    assert injected.get("burst_429", 0) > 0

    records, sidecars = _outputs(tmp_path / "lake" / "Raw/TMDB/JSON/2022/05/02")
    failed = sidecars.get("failed", [])
    accounted = records + [e["imdb_id"] for entries in sidecars.values() for e in entries]
    assert sorted(accounted) == sorted(ids)  # nothing lost, nothing twice
    assert summary.failed == len(failed)

    for path, hits in stats.path_counts.items():
        # Bounded retries: no id or detail page is asked for more than its attempts allow.
        assert hits <= MAX_ATTEMPTS * SERVER_HITS_PER_ATTEMPT, path
    for entry in failed:
        # A failure is reported only once every attempt was spent, with the last error.
        assert entry["attempts"] == MAX_ATTEMPTS
        assert entry["reason"].endswith(f"after {MAX_ATTEMPTS} attempts")
        assert stats.path_counts[f"/3/find/{entry['imdb_id']}"] >= MAX_ATTEMPTS or (
            "/3/movie/" in entry["reason"]
        )


async def test_a_429_slows_the_whole_client_down_not_just_one_request() -> None:
    """Against a server limit 5x below the client's configured rate, the shared pause and
    the lowered rate keep the 429s to a small share; without them most requests would be."""
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN, rate_limit=20)) as fake:
        options = ClientOptions(
            base_url=fake.url,
            credentials=Credentials(read_access_token=TOKEN),
            detail="find",
            concurrency=20,
            rate=100.0,
            max_attempts=10,
            max_backoff=2.0,
        )
        async with TmdbClient.open(options) as client:
            ids = title_ids(120, "movie", start=8_000_000)
            results = await asyncio.gather(*(client.lookup(i) for i in ids))
            assert all(isinstance(r, Found | NotFound) for r in results)
            assert client.lowest_rate <= 40.0  # adapted well below its configured 100/s
            share = client.stats.throttled / client.stats.requests
    # Measured here: ~20% for this short run (mostly the first second, before any 429 is
    # seen; ~7% over 600 ids); a client that only retried the one request would see ~80%.
    assert share < 0.3, f"{client.stats.throttled} of {client.stats.requests} were 429"
