"""The demo's refresh visibly does something: the fake's change lists, as the demo runs it,
hold the bundled samples' series and movies every day, and a title fetched after a day it
changed answers with more votes and another popularity (an unchanged one answers as
before). ``make demo`` itself is run end to end (slow)."""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import ROOT, TOKEN
from tmdb_devtools.fake_tmdb import (
    SAMPLE_RANGES,
    FakeTmdb,
    FakeTmdbConfig,
    changed_ids,
    changes_before,
)

#: The fake as scripts/demo.sh starts it (checked against the script below).
DEMO_FLAGS = "--change-universe 0 --change-range samples --change-period 7"
DEMO = FakeTmdbConfig(token=TOKEN, change_universe=0, change_ranges=SAMPLE_RANGES, change_period=7)


def _sample_ids(name: str) -> set[int]:
    lines = (ROOT / "samples" / name).read_text(encoding="utf-8").splitlines()[1:]
    ids = (line.split("|", 1)[0].strip() for line in lines)
    return {int(m.group(1)) for i in ids if (m := re.fullmatch(r"tt(\d{7,9})", i))}


def test_the_demo_starts_the_fake_with_the_sample_change_lists() -> None:
    assert DEMO_FLAGS in (ROOT / "scripts" / "demo.sh").read_text(encoding="utf-8")


@pytest.mark.parametrize("offset", range(7))  # every residue of the 7-day cycle
def test_the_demo_change_lists_hold_sample_series_and_movies_on_any_refresh_date(
    offset: int,
) -> None:
    # The demo refreshes the changes of the day before today: whatever today is, some of
    # the samples' series and movies are in that day's lists, and the lists stay short.
    day = dt.date(2026, 12, 4) + dt.timedelta(days=offset)
    series = set(changed_ids("tv", day, day, DEMO)) & _sample_ids("series.csv")
    movies = set(changed_ids("movie", day, day, DEMO)) & _sample_ids("movies.csv")
    assert len(series) >= 5
    assert len(movies) >= 25
    assert len(changed_ids("movie", day, day, DEMO)) <= 200  # two pages


def test_the_default_change_lists_leave_the_change_ranges_alone() -> None:
    day = dt.date(2026, 12, 4)
    plain = FakeTmdbConfig(token=TOKEN)
    assert changed_ids("tv", day, day, plain) == changed_ids(
        "tv", day, day, FakeTmdbConfig(token=TOKEN, change_ranges=())
    )
    assert not set(changed_ids("tv", day, day, plain)) & _sample_ids("series.csv")


def test_changes_before_counts_the_change_days_before_the_day() -> None:
    day = dt.date(2026, 12, 4)
    (series, *_) = sorted(set(changed_ids("tv", day, day, DEMO)) & _sample_ids("series.csv"))
    assert changes_before(series, day + dt.timedelta(days=1), DEMO) == (
        changes_before(series, day, DEMO) + 1
    )
    # The next change is 7 days later: nothing moves in between.
    assert changes_before(series, day + dt.timedelta(days=7), DEMO) == (
        changes_before(series, day + dt.timedelta(days=1), DEMO)
    )
    assert changes_before(2_500_000, day, DEMO) == 0  # outside the change lists


async def _answers(config: FakeTmdbConfig, kind: str, n: int) -> tuple[Any, Any]:
    """(details, /find item) of TMDB id ``n``."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        FakeTmdb(config) as fake,
        aiohttp.ClientSession(base_url=fake.url, headers=headers) as session,
    ):
        async with session.get(f"/3/{kind}/{n}") as resp:
            details = await resp.json()
        async with session.get(f"/3/find/tt{n:07d}?external_source=imdb_id") as resp:
            found = await resp.json()
    (item,) = found[f"{kind}_results"]
    return details, item


async def test_a_title_fetched_after_its_change_shows_more_votes_and_another_popularity() -> None:
    day = dt.date(2026, 12, 4)
    changed = set(changed_ids("tv", day, day, DEMO)) & _sample_ids("series.csv")
    n = min(changed)
    before, item_before = await _answers(replace(DEMO, today=day), "tv", n)
    after, item_after = await _answers(replace(DEMO, today=day + dt.timedelta(days=1)), "tv", n)
    assert after["vote_count"] == before["vote_count"] + 3
    assert after["popularity"] != before["popularity"]
    assert {k: v for k, v in after.items() if k not in ("vote_count", "popularity")} == {
        k: v for k, v in before.items() if k not in ("vote_count", "popularity")
    }
    # /find agrees with the details, before and after.
    assert (item_before["vote_count"], item_before["popularity"]) == (
        before["vote_count"],
        before["popularity"],
    )
    assert (item_after["vote_count"], item_after["popularity"]) == (
        after["vote_count"],
        after["popularity"],
    )


async def test_a_title_that_did_not_change_answers_as_before() -> None:
    day = dt.date(2026, 12, 4)
    unchanged = _sample_ids("series.csv") - set(changed_ids("tv", day, day, DEMO))
    n = min(m for m in unchanged if m % 10 in (7, 8, 9) and m % 17)
    before, _ = await _answers(replace(DEMO, today=day), "tv", n)
    after, _ = await _answers(replace(DEMO, today=day + dt.timedelta(days=1)), "tv", n)
    assert after == before


@pytest.mark.slow
def test_make_demo_refreshes_series_and_movies_with_changed_records(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMDB_")}
    env.update({"PYTHON": sys.executable, "OUT": str(tmp_path / "out")})
    result = subprocess.run(
        ["bash", "scripts/demo.sh"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = result.stdout + result.stderr
    line = re.search(r"ok: changes of .*: (\d+) movies, (\d+) series, (\d+) in the lake", text)
    assert line is not None, text
    assert int(line.group(3)) > 0
    shown = re.findall(r"^  tt\d+ (movie|tv) .* vote_count +(\d+) -> (\d+)", text, re.M)
    assert {kind for kind, _, _ in shown} == {"movie", "tv"}
    assert all(int(after) > int(before) for _, before, after in shown)
    differ = re.search(r"(\d+) of (\d+) refreshed records differ from the day before", text)
    assert differ is not None and differ.group(1) == differ.group(2) != "0"
    # The operator's view, in order: the cost first, nothing twice, the guard, then what the
    # lake holds, its current state and the page to look at.
    assert "dry run: nothing sent to TMDB, nothing written" in text
    assert "all 241 already in" in text and "nothing to fetch" in text
    assert "this run auto); this run would fetch them again" in text
    assert "refresh: changes refreshed through" in text
    if importlib.util.find_spec("duckdb") is not None:
        assert re.search(r"  (\d+) titles, each once \(\1 distinct\)", text), text
    assert (tmp_path / "out" / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE")
