"""Deadlines: on a big CSV with a Lambda budget far too short for it, the handler stops in
time, keeps what it finished, and says where to continue."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOKEN
from tmdb_async.events import handle
from tmdb_devtools.csvgen import title_ids, write_csv
from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig

pytestmark = pytest.mark.slow
KEY = "Raw/Local/CSV/Movies/2022/05/02/movies.csv"


class Clock:
    """Lambda's context: a real deadline, ``budget`` seconds from now."""

    aws_request_id = "deadline-test"

    def __init__(self, budget: float) -> None:
        self.deadline = time.monotonic() + budget

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A Compass-sized file: ~165 MB, ~1.2 million rows, 400,000 distinct ids."""
    ids = title_ids(400_000, "movie", start=20_000_000)
    path = write_csv(tmp_path_factory.mktemp("big") / "movies.csv", ids, max_artists=5)
    assert path.stat().st_size > 150_000_000
    return path, ids


async def test_a_165_mb_csv_on_a_short_budget_stops_in_time_and_continues_exactly(
    big_csv: tuple[Path, list[str]], s3: Any, lake: str
) -> None:
    path, ids = big_csv
    s3.upload_file(str(path), lake, KEY)
    env = {
        "TMDB_READ_ACCESS_TOKEN": TOKEN,
        "TMDB_DEST": "s3://data-lake-x",
        "TMDB_RATE": "40",
        "TMDB_SAFETY_MARGIN_SECONDS": "6",
    }
    # TMDB at its real pace: 40 requests/s. 390,000 ids would need hours; the budget is ~20 s.
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN, rate_limit=40, latency=0.05)) as fake:
        env["TMDB_BASE_URL"] = fake.url
        offset = 390_000  # the last batch of the file: the whole file is read to get there
        event = {"source": f"s3://{lake}/{KEY}", "date": "2022-05-02", "offset": offset}
        # The budget leaves 14 s for ids after the read, plus twice what one plain read of
        # the object takes on this machine now: a loaded machine reads slower, and the
        # promise is about stopping in time, not about reading fast.
        started = time.monotonic()
        s3.get_object(Bucket=lake, Key=KEY)["Body"].read()
        clock = Clock(budget=14.0 + 2 * (time.monotonic() - started))
        first = await handle(event, clock, env)
        left_ms = clock.get_remaining_time_in_millis()
        assert left_ms > 0, "the handler overran its deadline"
        assert first["status"] == "incomplete"
        assert first["next_offset"] > offset

        again = {**event, "offset": first["next_offset"], "limit": 300}
        second = await handle(again, Clock(budget=600.0), env)
        assert second["status"] == "ok"

    done_ids = ids[offset : first["next_offset"] + 300]
    seen: list[str] = []
    for result in (first, second):
        for url in result["files"]:
            key = url.split(f"{lake}/", 1)[1]
            seen += [
                r["imdb_id"] for r in json.loads(s3.get_object(Bucket=lake, Key=key)["Body"].read())
            ]
        for url in result["sidecars"]:
            key = url.split(f"{lake}/", 1)[1]
            seen += [
                e["imdb_id"] for e in json.loads(s3.get_object(Bucket=lake, Key=key)["Body"].read())
            ]
    assert sorted(seen) == sorted(done_ids)  # no gap, no overlap between the two invocations
