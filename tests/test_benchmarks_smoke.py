"""Smoke run of the benchmark suite (``python -m benchmarks --quick``): catches a collapse.

The quick run is the full suite in miniature (fake TMDB in its own process, every client in
its own process). This test asserts structure and sanity only, never wall-clock times: every
id is accounted for, 429s stay a small share, concurrency helps, memory and CPU figures are
there, every request the fake saw is counted by route, the engine and the bare loop ask the
same requests (the seeds' loop find then details), a refresh asks exactly the lake's titles
in the fake's change lists, each once. Ratios get generous margins, because
CI machines are shared and noisy; requests per title are asserted only within what any
engine needs (1 to 3 per title), never against the targets of issue 10. It needs no
matplotlib (the chart is skipped).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.support.bench import run_quick
from tmdb_devtools.fake_tmdb import FakeTmdbConfig, changed_ids, kind_of_number

pytestmark = pytest.mark.slow  # ~55 s: about thirty child processes and sixteen fake servers


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    return run_quick("benchmarks", out, "--no-chart")


def _accounted(run: dict[str, Any]) -> None:
    """Every id ended as a record or a not-found; none failed."""
    assert run["failed"] == 0, run
    assert run["records"] + run["not_found"] == run["ids"], run
    assert run["records"] > 0, run


def test_every_part_and_target_is_reported(quick: dict[str, Any]) -> None:
    parts = ("rate_bound", "latency_bound", "cpu_bound", "memory", "cold_start", "scaling")
    for part in (*parts, "requests_per_title"):
        assert part in quick
    assert quick["meta"]["quick"] is True
    keys = {row["key"] for row in quick["targets"]}
    assert {"rate_full_wall", "rate_full_429", "latency_ratio", "cpu_ratio"} <= keys
    assert {"memory_ratio", "memory_peak", "cold_ratio", "scaling_gain"} <= keys
    assert {"requests_movies", "requests_movies_wall", "requests_series_rerun"} <= keys
    assert {"requests_mixed_blocks", "requests_fallback", "requests_movies_gain"} <= keys
    for row in quick["targets"]:
        assert row["met"] in (True, False, None)
        assert row["value"] == row["value"]  # not NaN


def test_rate_bound_runs_account_for_every_id_with_few_429s(quick: dict[str, Any]) -> None:
    rate = quick["rate_bound"]
    for detail in ("full", "find"):
        part = rate[detail]
        run = part["run"]
        _accounted(run)
        assert run["status"] == "ok"
        assert run["ids"] == rate["ids"]
        # Every request needed was sent (retries only add to it), and the fake saw them all.
        # Full: the one-request path, 1 per movie and 2 per unknown id; find: 1 per id.
        assert run["requests"] - run["retries"] == part["needed_requests"]
        assert run["server"]["requests"] == run["requests"]
        assert part["share_429"] <= 0.25  # generous: a collapse of the limiter shows as ~50%
        assert part["wall_over_ideal"] > 0.5  # faster than TMDB's rate would be a broken limit
    assert rate["full"]["run"]["server"]["routes"]["movie_by_imdb"] >= rate["ids"]
    assert rate["find"]["run"]["server"]["routes"]["find"] >= rate["ids"]
    seq = rate["sequential"]
    _accounted(seq["run"])
    # The seeds' loop is find then details: 2 per movie, 1 per unknown id, and 429s again.
    assert seq["run"]["requests"] - seq["run"]["throttled_429"] == seq["needed_requests"]
    assert seq["run"]["server"]["routes"]["movie_by_imdb"] == 0


def test_engine_and_bare_loop_agree_and_stay_comparable(quick: dict[str, Any]) -> None:
    for name in ("latency_bound", "cpu_bound"):
        part = quick[name]
        for pair in part["pairs"]:
            _accounted(pair["engine"])
            _accounted(pair["bare"])
            assert pair["engine"]["records"] == pair["bare"]["records"]
            # The same requests: /3/movie/{imdb_id} for every id, /find after a 404 (the
            # engine's retries aside; the bare loop makes none).
            engine, bare = pair["engine"]["server"], pair["bare"]["server"]
            assert bare["routes"]["movie_by_imdb"] == pair["bare"]["ids"]
            assert engine["requests"] - pair["engine"]["retries"] == bare["requests"]
        assert part["ratio"] > 0.2, part["ratio"]  # a collapse, not a tuning target
        assert part["engine_cpu_ms_per_id"] > 0
        assert part["bare_cpu_ms_per_id"] > 0


def test_concurrency_helps_as_a_ratio(quick: dict[str, Any]) -> None:
    points = quick["scaling"]["points"]
    assert [p["concurrency"] for p in points] == sorted(p["concurrency"] for p in points)
    low, high = points[0], points[-1]
    for point in points:
        _accounted(point["engine"])
    # c=20 against c=1 at 50 ms latency is ~15-20x in theory; 3x catches a serialised engine.
    assert high["engine_ids_per_s"] > 3 * low["engine_ids_per_s"]


REQUEST_CASES = (
    "movies", "series", "series_rerun", "mixed_blocks", "mixed_interleaved", "fallback",
)  # fmt: skip


def test_requests_per_title_cases_account_for_every_id_and_request(quick: dict[str, Any]) -> None:
    part = quick["requests_per_title"]
    assert set(part["cases"]) == set(REQUEST_CASES)
    for name in REQUEST_CASES:
        case = part["cases"][name]
        run = case["run"]
        _accounted(run)
        assert run["status"] == "ok", name
        assert case["titles"] == run["ids"] == part["ids_per_case"], name
        assert run["records"] == case["expected_records"], name
        # The fake saw what the engine sent, and every request falls in a known route.
        assert case["requests"] == run["requests"] == sum(case["routes"].values()), name
        assert case["routes"]["other"] == 0, name
        # At most three requests per title (direct, find, details) and, unknown ids aside,
        # at least one; the floor is an expectation, not a bound, so it is not compared.
        assert 0.5 < case["requests_per_title"] <= 3.0, name
        assert 1.0 <= case["floor_requests_per_title"] <= 2.0, name
        assert case["wall_over_request_bound"] > 0.5, name  # faster than 40/s: a broken limit
        assert case["throttled_429"] <= 0.25 * case["requests"], name
    kinds = {name: part["cases"][name]["composition"] for name in REQUEST_CASES}
    assert kinds["movies"]["tv"] == kinds["series"]["movie"] == 0
    assert kinds["mixed_blocks"] == kinds["mixed_interleaved"]  # the same ids, in another order
    assert min(kinds["mixed_blocks"].values()) > 0
    # The rerun fetched every id again, into the next day's folder of the same destination.
    first, rerun = part["cases"]["series"]["run"], part["cases"]["series_rerun"]["run"]
    assert rerun["date"] > first["date"]
    assert rerun["kept"] == 0
    assert rerun["records"] == first["records"]
    # Without IMDb ids on /movie, every movie record came from details by TMDB id.
    fallback = part["cases"]["fallback"]
    assert fallback["imdb_on_movie"] is False
    assert fallback["routes"]["movie_by_id"] >= fallback["run"]["records"]
    assert 1.0 < part["movies_find_details_per_title"] <= 2.0
    assert part["movies_gain_over_find_details"] > 0


def test_memory_and_cold_start_are_measured(quick: dict[str, Any]) -> None:
    memory = quick["memory"]
    _accounted(memory["small"])
    _accounted(memory["large"])
    assert memory["large"]["ids"] == memory["large_ids"]
    assert 0 < memory["small_peak_mb"] < 256
    assert memory["ratio"] < 2.0  # a leak per id would show even at these sizes
    cold = quick["cold_start"]
    assert set(cold["median_seconds"]) >= {"interpreter", "handler", "libraries"}
    assert "pandas" not in cold["heavy_modules_loaded_by_handler"]


def test_refresh_fetches_each_changed_title_of_the_lake_once(quick: dict[str, Any]) -> None:
    """Scenario 8 (issue 11): the titles the refresh asked are the lake's titles in the
    fake's change lists (its documented rule, recomputed here), each once; its requests are
    those titles plus the list pages; removed titles are deleted. No times, no targets."""
    part = quick["refresh"]
    assert set(part["cases"]) == {"daily", "backlog"}
    cfg = FakeTmdbConfig(
        change_period=part["change_period"],
        change_universe=part["change_universe"],
        removed_ids=part["removed_ids"],
    )
    lake = {
        n: kind for n in range(1, part["lake_ids"] + 1) if (kind := kind_of_number(n)) is not None
    }
    assert part["lake_titles"] == len(lake)
    removed = {int(i[2:]) for i in part["removed_ids"]}
    assert removed and removed <= set(lake)
    for name, case in part["cases"].items():
        start = dt.date.fromisoformat(case["window"]["start"])
        end = dt.date.fromisoformat(case["window"]["end"])
        assert start == dt.date.fromisoformat(part["lake_date"]), name  # the first refresh
        assert (end - start).days + 1 == case["days"], name
        lists = {kind: set(changed_ids(kind, start, end, cfg)) for kind in ("movie", "tv")}
        expected = {n for n, kind in lake.items() if n in lists[kind]}
        assert removed <= expected, name  # removed titles are listed every day
        summary = case["summary"]
        assert summary["status"] == "ok", name
        assert summary["changed"] == {kind: len(ids) for kind, ids in lists.items()}, name
        # The fetched set is the expected set, each title asked once by TMDB id (a retry
        # after a 429 may ask one again); only a removed title (404) by its IMDb id too.
        asked = {int(n): count for n, count in case["asked"].items()}
        by_imdb = {int(n): count for n, count in case["asked_by_imdb_id"].items()}
        assert set(asked) == expected and case["in_lake"] == len(expected), name
        assert sum(asked.values()) - len(asked) <= case["retries"], name
        assert set(by_imdb) <= removed, name
        assert case["records"] + case["deleted"] == len(expected), name
        assert case["deleted"] == len(removed), name
        # Requests = the titles fetched + the list pages (ceil(ids / 100) per kind).
        pages = sum(max(1, -(-len(ids) // 100)) for ids in lists.values())
        assert case["list_pages"] == pages == sum(case["expected_list_pages"].values()), name
        titles = len(expected) + sum(by_imdb.values())
        assert case["requests"] - case["retries"] == titles + case["list_pages"], name
        routes = case["routes"]
        assert routes["movie_by_id"] + routes["tv_by_id"] == sum(asked.values()), name
        assert routes["by_imdb_id"] + routes["find"] == sum(by_imdb.values()), name
        assert routes["movie_changes"] + routes["tv_changes"] >= case["list_pages"], name
        assert routes["other"] == 0, name
        assert case["wall_over_request_bound"] > 0.5, name  # faster than 40/s: a broken limit
        assert case["throttled_429"] <= 0.25 * case["requests"], name
    daily, backlog = part["cases"]["daily"], part["cases"]["backlog"]
    # A week of changes: more pages and more titles, each still fetched once.
    assert backlog["days"] > daily["days"] == 1
    assert backlog["list_pages"] > daily["list_pages"]
    assert backlog["in_lake"] > daily["in_lake"] > 0
    assert part["projection"]["requests"] > part["projection"]["changed"] > 0
    keys = {row["key"] for row in part["rows"]}
    assert {"refresh_daily_requests", "refresh_daily_wall", "refresh_daily_pages"} <= keys
    assert {"refresh_backlog_requests", "refresh_backlog_pages", "refresh_projection"} <= keys
    for row in part["rows"]:
        assert row["met"] in (True, False, None)
