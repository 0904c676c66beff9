"""Load: thousands of ids against the fake TMDB in its own process, with a server-side rate
limit and a few faults. Nothing is lost or duplicated; the client never exceeds its limits.

Marked slow (tens of seconds); CI runs it. The figures at TMDB's real 40 requests/s are
measured by ``benchmarks/``, not asserted here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, TOKEN
from tests.support.lake import read_local
from tmdb_async import Credentials, Settings, run
from tmdb_devtools.csvgen import kind_of, title_ids, write_csv

pytestmark = pytest.mark.slow
IDS = 5000
SERVER_RATE = 400  # requests/s: a tenth of a minute of work instead of four minutes at 40/s


@pytest.fixture
async def fake_process() -> AsyncIterator[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tmdb_devtools",
        "fake-tmdb",
        "--port",
        "0",
        "--token",
        TOKEN,
        "--latency",
        "0.02",
        "--rate-limit",
        str(SERVER_RATE),
        "--max-connections",
        "20",
        "--fault-5xx",
        "0.01",
        "--seed",
        "3",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        # The fake prints "fake TMDB listening on URL" once it accepts connections.
        line = await asyncio.wait_for(process.stdout.readline(), timeout=20)
        yield line.decode().rsplit(" ", 1)[1].strip()
    finally:
        process.terminate()
        await process.wait()


def _stats(url: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{url}/__stats") as response:
        return json.loads(response.read())


async def test_5000_ids_under_a_server_rate_limit_none_lost_none_twice(
    tmp_path: Path, fake_process: str
) -> None:
    ids = title_ids(IDS, "movie", start=7_000_000)
    csv_path = write_csv(tmp_path / "movies.csv", ids, max_artists=3)
    settings = Settings(
        source=str(csv_path),
        dest=str(tmp_path / "lake"),
        credentials=Credentials(read_access_token=TOKEN),
        tmdb_url=fake_process,
        date=dt.date(2022, 5, 2),
        kind="movie",
        rate=SERVER_RATE * 0.95,
        concurrency=20,
    )
    summary = await run(settings)
    stats = await asyncio.to_thread(_stats, fake_process)

    folder = tmp_path / "lake" / "Raw/TMDB/JSON/2022/05/02"
    view = read_local(folder)
    assert all(n <= 100 for n in view.data_files.values())
    assert view.all_ids() == set(ids)  # nothing lost
    assert not view.duplicates()  # nothing twice
    assert summary.status == "ok"
    assert summary.records == sum(1 for i in ids if kind_of(int(i[2:])) is not None)
    assert stats["max_in_flight"] <= 20  # the semaphore held
    assert summary.throttled_429 <= 0.01 * summary.requests  # the limiter held the server's pace
