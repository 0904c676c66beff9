"""Tests of the fake TMDB server, through a real aiohttp client on loopback.

The engine's tests trust this fake to behave like TMDB (shapes, error bodies) and to fail
exactly as configured, so both are pinned here. Waiting is done on events or with bounded
polling, never with a fixed sleep: the only timers are the server's simulated delays and
the client timeouts under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tmdb_devtools.fake_tmdb import (
    _STATE,  # the server behind an app, to see its cache
    FakeTmdb,
    FakeTmdbConfig,
    FakeTmdbStats,
    changed_ids,
    expected_kind,
    kind_of_number,
    main,
    make_app,
)

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPO_ROOT = Path(__file__).resolve().parents[1]
FIND = "/3/find/{}?external_source=imdb_id"
EMPTY_FIND: dict[str, list[Any]] = {
    "movie_results": [],
    "person_results": [],
    "tv_results": [],
    "tv_episode_results": [],
    "tv_season_results": [],
}
NOT_FOUND_34 = {
    "success": False,
    "status_code": 34,
    "status_message": "The resource you requested could not be found.",
}
APPEND = "append_to_response=credits,keywords,external_ids"
# Field sets from /work/shared/reference/tmdb-api.md (what the engine may rely on).
MOVIE_ITEM_KEYS = {
    "adult", "backdrop_path", "genre_ids", "id", "original_language", "original_title",
    "overview", "release_date", "poster_path", "popularity", "title", "video", "vote_average",
    "vote_count", "media_type",
}  # fmt: skip
TV_ITEM_KEYS = {
    "adult", "backdrop_path", "genre_ids", "id", "origin_country", "original_language",
    "original_name", "overview", "first_air_date", "poster_path", "popularity", "name",
    "vote_average", "vote_count", "media_type",
}  # fmt: skip
MOVIE_DETAIL_KEYS = {
    "adult", "backdrop_path", "belongs_to_collection", "budget", "genres", "homepage", "id",
    "imdb_id", "origin_country", "original_language", "original_title", "overview",
    "popularity", "poster_path", "production_companies", "production_countries",
    "release_date", "revenue", "runtime", "spoken_languages", "status", "tagline", "title",
    "video", "vote_average", "vote_count",
}  # fmt: skip
TV_DETAIL_KEYS = {
    "created_by", "episode_run_time", "first_air_date", "genres", "in_production", "languages",
    "last_air_date", "last_episode_to_air", "next_episode_to_air", "name", "networks",
    "number_of_episodes", "number_of_seasons", "origin_country", "original_name", "seasons",
    "status", "type", "vote_average", "vote_count", "id",
}  # fmt: skip


@contextlib.asynccontextmanager
async def serve(
    config: FakeTmdbConfig | None = None, **kwargs: Any
) -> AsyncIterator[tuple[FakeTmdb, aiohttp.ClientSession]]:
    """A started fake plus a client session pointed at it with the right token."""
    async with (
        FakeTmdb(config or FakeTmdbConfig(token=TOKEN), **kwargs) as fake,
        aiohttp.ClientSession(base_url=fake.url, headers=AUTH) as session,
    ):
        yield fake, session


async def get_json(session: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    async with session.get(path) as resp:
        return resp.status, await resp.json()


class FakeClock:
    """Frozen time for the rate limiter, so window arithmetic is exact and not timing luck."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class HeldSleep:
    """Replaces the server's latency sleep: requests stay in flight until ``release`` is set.

    That turns "N requests are concurrently in flight" into an event the test can wait for.
    """

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.entered = 0
        self.all_in = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.entered += 1
        if self.entered >= self.expected:
            self.all_in.set()
        await self.release.wait()


# --- data model ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("imdb_id", "kind"),
    [
        ("tt0000001", "movie"),
        ("tt0000010", "movie"),
        ("tt0000007", "tv"),
        ("tt0000019", "tv"),
        ("tt0000017", None),  # n % 17 == 0 wins over the tv rule (17 % 10 == 7)
        ("tt0000034", None),
        ("tt00000011", "movie"),  # more than 7 digits is still an IMDb id
        ("tt123456", None),  # fewer than 7 digits is not
        ("TT0000001", None),
        ("nm0000001", None),
        ("", None),
    ],
)
def test_expected_kind(imdb_id: str, kind: str | None) -> None:
    assert expected_kind(imdb_id) == kind


def test_config_rejects_out_of_range_knobs() -> None:
    for bad in (
        {"fault_5xx": 1.5},
        {"burst_429": -0.1},
        {"rate_limit": 0},
        {"retry_after": -1},
        {"max_connections": 0},
        {"latency": -0.1},
    ):
        with pytest.raises(ValueError):
            FakeTmdbConfig(**bad)


# --- /find ---------------------------------------------------------------------------------


async def test_find_movie() -> None:
    async with serve() as (_, session):
        status, body = await get_json(session, FIND.format("tt0000001") + "&language=pt-BR")
    assert status == 200
    assert set(body) == set(EMPTY_FIND)
    assert body["tv_results"] == []
    [item] = body["movie_results"]
    assert set(item) == MOVIE_ITEM_KEYS
    assert item["id"] == 1
    assert item["media_type"] == "movie"
    assert "language=pt-BR" in item["overview"]
    assert all(isinstance(g, int) for g in item["genre_ids"])


async def test_find_tv() -> None:
    async with serve() as (_, session):
        status, body = await get_json(session, FIND.format("tt0000007"))
    assert status == 200
    assert body["movie_results"] == []
    [item] = body["tv_results"]
    assert set(item) == TV_ITEM_KEYS
    assert item["id"] == 7
    assert item["media_type"] == "tv"
    assert "language=en-US" in item["overview"]


@pytest.mark.parametrize("external_id", ["tt0000017", "tt0000034", "tt12", "abc", "nm0000001"])
async def test_find_unknown_or_malformed_is_empty_200(external_id: str) -> None:
    async with serve() as (_, session):
        status, body = await get_json(session, FIND.format(external_id))
    assert (status, body) == (200, EMPTY_FIND)


@pytest.mark.parametrize("query", ["", "?external_source=tvdb_id"])
async def test_find_requires_imdb_external_source(query: str) -> None:
    async with serve() as (_, session):
        status, body = await get_json(session, f"/3/find/tt0000001{query}")
    assert status == 400
    assert body["success"] is False
    assert body["status_code"] == 5


# --- details -------------------------------------------------------------------------------


async def test_movie_details_with_append_and_language() -> None:
    path = "/3/movie/1?append_to_response=credits,keywords,external_ids,videos&language=de-DE"
    async with serve() as (_, session):
        status, body = await get_json(session, path)
        _, found = await get_json(session, FIND.format("tt0000001"))
    assert status == 200
    assert set(body) >= MOVIE_DETAIL_KEYS
    assert body["id"] == 1
    assert body["imdb_id"] == "tt0000001"
    assert "language=de-DE" in body["overview"]
    assert all(set(g) == {"id", "name"} for g in body["genres"])
    assert isinstance(body["runtime"], int)
    # Appended sub-resources, and nothing appended that was not asked for.
    assert {"cast", "crew"} <= set(body["credits"])
    assert body["credits"]["cast"][0]["character"]
    assert {"department", "job"} <= set(body["credits"]["crew"][0])
    assert body["keywords"]["keywords"]
    assert body["external_ids"]["imdb_id"] == "tt0000001"
    assert body["videos"] == {}
    assert "images" not in body
    # /find and details describe the same title.
    item = found["movie_results"][0]
    assert (item["title"], item["release_date"]) == (body["title"], body["release_date"])
    assert item["genre_ids"] == [g["id"] for g in body["genres"]]


async def test_tv_details_have_imdb_id_only_via_external_ids() -> None:
    async with serve() as (_, session):
        status, plain = await get_json(session, "/3/tv/7?language=fr-FR")
        _, appended = await get_json(
            session, "/3/tv/7?append_to_response=external_ids,keywords,credits"
        )
    assert status == 200
    assert set(plain) >= TV_DETAIL_KEYS
    assert "imdb_id" not in plain
    assert "language=fr-FR" in plain["overview"]
    assert plain["number_of_seasons"] >= 1
    assert appended["external_ids"]["imdb_id"] == "tt0000007"
    # TMDB's TV keywords list is under "results" (movies: "keywords").
    assert appended["keywords"]["results"]
    assert appended["credits"]["cast"]


@pytest.mark.parametrize("path", ["/3/movie/7", "/3/movie/17", "/3/tv/1", "/3/tv/34", "/3/tv/x"])
async def test_details_of_wrong_kind_is_404_code_34(path: str) -> None:
    async with serve() as (_, session):
        status, body = await get_json(session, path)
    assert (status, body) == (404, NOT_FOUND_34)


async def test_movie_by_imdb_id_is_the_movie_by_tmdb_id() -> None:
    """``/3/movie/{imdb_id}`` (undocumented on TMDB) answers exactly as ``/3/movie/{tmdb_id}``,
    language and appended sub-resources included: one request instead of find + details."""
    query = f"?language=pt-BR&{APPEND}"
    async with serve() as (fake, session):
        by_imdb = await get_json(session, f"/3/movie/tt0000001{query}")
        by_tmdb = await get_json(session, f"/3/movie/1{query}")
        other_language = await get_json(session, "/3/movie/tt0000001?language=de-DE")
    assert by_imdb[0] == 200
    assert by_imdb == by_tmdb
    body = by_imdb[1]
    assert (body["id"], body["imdb_id"]) == (1, "tt0000001")
    assert "language=pt-BR" in body["overview"]
    assert {"credits", "keywords", "external_ids"} <= set(body)
    assert "language=de-DE" in other_language[1]["overview"]
    assert "credits" not in other_language[1]  # nothing appended that was not asked for
    # Each path is counted as asked, so a benchmark can tell the two ways apart.
    assert fake.stats().path_counts == {"/3/movie/tt0000001": 2, "/3/movie/1": 1}


@pytest.mark.parametrize(
    "path",
    [
        "/3/movie/tt0000007",  # a series: TMDB answers IMDb ids on /movie for movies only
        "/3/movie/tt0000017",  # unknown to the fake (n % 17 == 0)
        "/3/movie/tt0000034",  # unknown
        "/3/movie/tt12",  # not an IMDb id (fewer than 7 digits)
        "/3/tv/tt0000007",  # /3/tv never takes an IMDb id, not even a series'
        "/3/tv/tt0000001",
        "/3/tv/tt0000017",
    ],
)
async def test_imdb_id_details_of_a_series_or_unknown_id_and_on_tv_are_404_code_34(
    path: str,
) -> None:
    async with serve() as (_, session):
        assert await get_json(session, f"{path}?{APPEND}") == (404, NOT_FOUND_34)


async def test_imdb_on_movie_off_drops_the_imdb_id_path_but_find_and_by_id_still_work() -> None:
    """``imdb_on_movie=False`` is TMDB no longer accepting IMDb ids on ``/movie``: the direct
    path is a 404 for every id, and the two-step way (find, then details by TMDB id) works."""
    config = FakeTmdbConfig(token=TOKEN, imdb_on_movie=False)
    async with serve(config) as (_, session):
        direct = await get_json(session, f"/3/movie/tt0000001?{APPEND}")
        _, found = await get_json(session, FIND.format("tt0000001"))
        status, details = await get_json(session, f"/3/movie/1?{APPEND}")
        _, found_tv = await get_json(session, FIND.format("tt0000007"))
        tv_status, _ = await get_json(session, "/3/tv/7")
        series_direct = await get_json(session, "/3/movie/tt0000007")
        unknown_direct = await get_json(session, "/3/movie/tt0000017")
    assert direct == (404, NOT_FOUND_34)
    assert series_direct == unknown_direct == (404, NOT_FOUND_34)
    assert [item["id"] for item in found["movie_results"]] == [1]
    assert (status, details["imdb_id"]) == (200, "tt0000001")
    assert {"credits", "keywords", "external_ids"} <= set(details)
    assert [item["id"] for item in found_tv["tv_results"]] == [7]
    assert tv_status == 200


def test_imdb_on_movie_is_on_by_default_and_off_with_its_cli_flag() -> None:
    from tmdb_devtools.fake_tmdb import _build_parser, _config_from_args

    parser = _build_parser()
    assert FakeTmdbConfig().imdb_on_movie is True
    assert _config_from_args(parser.parse_args([])).imdb_on_movie is True
    assert _config_from_args(parser.parse_args(["--no-imdb-on-movie"])).imdb_on_movie is False


async def test_append_to_response_limit_is_20() -> None:
    names = ",".join(f"n{i}" for i in range(21))
    async with serve() as (_, session):
        status, body = await get_json(session, f"/3/movie/1?append_to_response={names}")
        ok_status, _ = await get_json(session, f"/3/movie/1?append_to_response={names[:-4]}")
    assert status == 400
    assert body["status_code"] == 27
    assert ok_status == 200


# --- auth ----------------------------------------------------------------------------------


async def test_auth_styles_and_failures() -> None:
    path = FIND.format("tt0000001")
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN)) as fake, aiohttp.ClientSession() as session:
        results = {}
        for label, headers, extra in [
            ("none", {}, ""),
            ("wrong bearer", {"Authorization": "Bearer nope"}, ""),
            ("wrong api_key", {}, "&api_key=nope"),
            ("bearer", AUTH, ""),
            ("api_key", {}, f"&api_key={TOKEN}"),
        ]:
            async with session.get(fake.url + path + extra, headers=headers) as resp:
                results[label] = (resp.status, await resp.json())
    for label in ("none", "wrong bearer", "wrong api_key"):
        status, body = results[label]
        assert status == 401, label
        assert body["status_code"] == 7
        assert body["success"] is False
    assert results["bearer"][0] == 200
    assert results["api_key"][0] == 200


async def test_no_token_configured_accepts_anything() -> None:
    async with (
        FakeTmdb() as fake,
        aiohttp.ClientSession() as session,
        session.get(fake.url + FIND.format("tt0000001")) as resp,
    ):
        assert resp.status == 200


# --- rate and connection limits ------------------------------------------------------------


async def test_rate_limit_sliding_window_with_frozen_clock() -> None:
    clock = FakeClock()
    async with serve(FakeTmdbConfig(token=TOKEN, rate_limit=10), clock=clock) as (fake, session):
        first = await asyncio.gather(*(get_json(session, "/3/movie/1") for _ in range(30)))
        statuses = [status for status, _ in first]
        assert statuses.count(200) == 10
        assert statuses.count(429) == 20
        body = next(body for status, body in first if status == 429)
        assert body["status_code"] == 25
        async with session.get("/3/movie/1") as resp:
            assert resp.status == 429
            assert "Retry-After" not in resp.headers
        clock.now += 0.999  # still inside the window opened by the first accepted request
        assert (await get_json(session, "/3/movie/1"))[0] == 429
        clock.now += 0.001  # the first ten have now left the window
        again = await asyncio.gather(*(get_json(session, "/3/movie/1") for _ in range(15)))
        assert [status for status, _ in again].count(200) == 10
        assert fake.stats().throttled == 20 + 1 + 1 + 5


async def test_rate_limit_with_real_clock() -> None:
    async with serve(FakeTmdbConfig(token=TOKEN, rate_limit=10)) as (fake, session):
        started = time.monotonic()
        results = await asyncio.gather(*(get_json(session, "/3/movie/1") for _ in range(30)))
        elapsed = time.monotonic() - started
    accepted = [status for status, _ in results].count(200)
    # Every request arrived within `elapsed`, so at most this many windows were open.
    assert accepted <= 10 * (math.floor(elapsed) + 1)
    if elapsed < 1.0:
        assert accepted == 10
    assert fake.stats().throttled == 30 - accepted


@pytest.mark.parametrize(("retry_after", "header"), [(2, "2"), (0, "0"), (0.5, "0.5")])
async def test_429_carries_retry_after_when_configured(retry_after: float, header: str) -> None:
    config = FakeTmdbConfig(token=TOKEN, rate_limit=1, retry_after=retry_after)
    async with serve(config, clock=FakeClock()) as (_, session):
        assert (await get_json(session, "/3/movie/1"))[0] == 200
        async with session.get("/3/movie/1") as resp:
            assert resp.status == 429
            assert resp.headers["Retry-After"] == header


async def test_max_connections_rejects_the_excess_in_flight() -> None:
    held = HeldSleep(expected=3)
    config = FakeTmdbConfig(token=TOKEN, max_connections=3, latency=0.01)
    async with serve(config, sleep=held) as (fake, session):
        holders = [asyncio.create_task(get_json(session, "/3/movie/1")) for _ in range(3)]
        async with asyncio.timeout(5):
            await held.all_in.wait()
        excess = await asyncio.gather(*(get_json(session, "/3/movie/1") for _ in range(5)))
        assert [status for status, _ in excess] == [429] * 5
        assert all(body["status_code"] == 25 for _, body in excess)
        held.release.set()
        assert [status for status, _ in await asyncio.gather(*holders)] == [200] * 3
        stats = fake.stats()
    assert stats.throttled == 5
    assert stats.max_in_flight >= 3
    assert stats.in_flight == 0


# --- fault injection -----------------------------------------------------------------------


async def test_fault_5xx_answers_tmdb_error_bodies() -> None:
    codes = {500: 11, 502: 43, 503: 46, 504: 24}
    async with serve(FakeTmdbConfig(token=TOKEN, fault_5xx=1.0, seed=3)) as (fake, session):
        results = [await get_json(session, FIND.format("tt0000001")) for _ in range(12)]
    for status, body in results:
        assert status in codes
        assert body["success"] is False
        assert body["status_code"] == codes[status]
    assert len({status for status, _ in results}) > 1
    assert fake.stats().faults["5xx"] == 12


async def test_fault_reset_is_a_client_connection_error() -> None:
    async with serve(FakeTmdbConfig(token=TOKEN, fault_reset=1.0)) as (fake, session):
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(FIND.format("tt0000001")) as resp:
                await resp.read()
        stats = fake.stats()
    # aiohttp transparently retries an idempotent request once after a disconnect, so the
    # server may see two attempts for one client call; none of them got a response.
    assert stats.resets >= 1
    assert stats.total_requests == stats.resets
    assert stats.status_counts == {}


async def test_fault_bad_json_is_truncated_json() -> None:
    async with serve(FakeTmdbConfig(token=TOKEN, fault_bad_json=1.0)) as (fake, session):
        async with session.get(FIND.format("tt0000001")) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/json"
            with pytest.raises(json.JSONDecodeError):
                await resp.json()
        # Errors are not 200s, so they are left intact.
        status, body = await get_json(session, "/3/movie/7")
    assert (status, body["status_code"]) == (404, 34)
    assert fake.stats().faults["bad_json"] == 1


async def test_fault_slow_trips_the_client_timeout() -> None:
    # The answer would take 10 s; the client waits at most 1 s for it once the request is
    # sent (sock_read), so a TimeoutError means the client gave up first. No wall-clock
    # assertion: on a loaded machine only the order of events is reliable.
    config = FakeTmdbConfig(token=TOKEN, fault_slow=1.0, slow_seconds=10)
    async with serve(config) as (fake, session):
        with pytest.raises(asyncio.TimeoutError):
            async with session.get(
                FIND.format("tt0000001"), timeout=aiohttp.ClientTimeout(sock_read=1.0)
            ) as resp:
                await resp.read()
        assert fake.stats().faults["slow"] == 1


async def test_burst_429_honours_retry_after() -> None:
    config = FakeTmdbConfig(token=TOKEN, burst_429=1.0, retry_after=1)
    async with serve(config) as (fake, session), session.get(FIND.format("tt0000001")) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "1"
        assert (await resp.json())["status_code"] == 25
    assert fake.stats().faults["burst_429"] == 1


async def test_fault_ids_always_503_whichever_way_the_title_is_asked() -> None:
    config = FakeTmdbConfig(token=TOKEN, fault_ids=frozenset({"tt0000001"}))
    paths = [FIND.format("tt0000001"), "/3/movie/tt0000001", "/3/movie/1", "/3/tv/1"]
    async with serve(config) as (fake, session):
        failing = [await get_json(session, path) for path in paths * 2]
        other = await get_json(session, FIND.format("tt0000002"))
        details = await get_json(session, "/3/movie/2")
    assert [(s, b["status_code"]) for s, b in failing] == [(503, 46)] * 8
    assert other[0] == 200
    assert details[0] == 200
    assert fake.stats().faults["fault_id"] == 8


async def test_faults_are_reproducible_for_a_seed() -> None:
    async def statuses(seed: int) -> list[int]:
        config = FakeTmdbConfig(token=TOKEN, fault_5xx=0.5, burst_429=0.2, seed=seed)
        async with serve(config) as (_, session):
            return [(await get_json(session, "/3/movie/1"))[0] for _ in range(30)]

    first, again, other = await statuses(7), await statuses(7), await statuses(8)
    assert first == again
    assert first != other
    assert {200, 429} <= set(first)


async def test_fault_malformed_is_an_http_answer_aiohttp_rejects() -> None:
    async with serve(FakeTmdbConfig(token=TOKEN, fault_malformed=1.0)) as (fake, session):
        for path in (FIND.format("tt0000001"), "/3/movie/1"):
            with pytest.raises(aiohttp.ClientResponseError, match="Bad status line"):
                async with session.get(path) as resp:
                    await resp.read()
        stats = fake.stats()
    assert stats.faults["malformed"] == stats.total_requests == 2
    assert stats.status_counts == {}  # no real response was produced
    assert stats.resets == 0


async def test_malformed_ids_always_get_a_malformed_answer_whichever_way() -> None:
    config = FakeTmdbConfig(token=TOKEN, malformed_ids=["tt0000001"])  # any iterable
    assert config.malformed_ids == frozenset({"tt0000001"})
    async with serve(config) as (fake, session):
        for path in (FIND.format("tt0000001"), "/3/movie/tt0000001", "/3/movie/1"):
            with pytest.raises(aiohttp.ClientResponseError):
                async with session.get(path) as resp:
                    await resp.read()
        other = await get_json(session, FIND.format("tt0000002"))
        details = await get_json(session, "/3/movie/2")
    assert other[0] == 200
    assert details[0] == 200
    assert fake.stats().faults["malformed"] == 3


async def test_fault_malformed_leaves_the_other_faults_of_a_seed_where_they_were() -> None:
    async def statuses(malformed: float) -> list[int | None]:
        config = FakeTmdbConfig(token=TOKEN, fault_5xx=0.5, fault_malformed=malformed, seed=7)
        out: list[int | None] = []
        async with serve(config) as (_, session):
            for _ in range(30):
                try:
                    out.append((await get_json(session, "/3/movie/1"))[0])
                except aiohttp.ClientResponseError:
                    out.append(None)
        return out

    plain, with_malformed, again = await statuses(0.0), await statuses(0.3), await statuses(0.3)
    assert with_malformed == again  # reproducible
    assert None in with_malformed and None not in plain
    assert all(m is None or m == p for p, m in zip(plain, with_malformed, strict=True))


def test_config_rejects_a_malformed_probability_out_of_range() -> None:
    with pytest.raises(ValueError, match="fault_malformed"):
        FakeTmdbConfig(fault_malformed=1.5)


async def test_surrogate_ids_end_the_overview_with_a_lone_surrogate_escape() -> None:
    config = FakeTmdbConfig(token=TOKEN, surrogate_ids={"tt0000001", "tt0000007"})
    async with serve(config) as (fake, session):
        raws = {}
        for path in (
            FIND.format("tt0000001"), "/3/movie/1", "/3/tv/7", FIND.format("tt0000002"),
            "/3/movie/2",
        ):  # fmt: skip
            async with session.get(path) as resp:
                assert resp.status == 200
                raws[path] = await resp.read()
    for path in (FIND.format("tt0000001"), "/3/movie/1", "/3/tv/7"):
        raw = raws[path]
        assert b'\\ud83d"' in raw  # the JSON text holds the escape, and the bytes are ASCII
        body = json.loads(raw)
        item = body["movie_results"][0] if "movie_results" in body else body
        assert item["overview"].endswith(" \ud83d")
        with pytest.raises(UnicodeEncodeError):
            item["overview"].encode("utf-8")
    assert b"\\ud83d" not in raws[FIND.format("tt0000002")] + raws["/3/movie/2"]
    assert fake.stats().faults["surrogate"] == 3


def test_cli_flags_of_the_new_fault_modes() -> None:
    from tmdb_devtools.fake_tmdb import _build_parser, _config_from_args

    args = _build_parser().parse_args(
        ["--fault-malformed", "0.25", "--malformed-ids", "tt0000001,tt0000002",
         "--surrogate-ids", "tt0000003", "--surrogate-ids", "tt0000004"]
    )  # fmt: skip
    config = _config_from_args(args)
    assert config.fault_malformed == 0.25
    assert config.malformed_ids == {"tt0000001", "tt0000002"}
    assert config.surrogate_ids == {"tt0000003", "tt0000004"}


# --- change lists --------------------------------------------------------------------------

TODAY = date(2024, 3, 10)
KINDS = ("movie", "tv")


def changes_path(
    kind: str, start: date | None = None, end: date | None = None, **query: Any
) -> str:
    params = {"start_date": start, "end_date": end, **query}
    text = "&".join(f"{k}={v}" for k, v in params.items() if v is not None)
    return f"/3/{kind}/changes" + (f"?{text}" if text else "")


async def read_all_changes(
    session: aiohttp.ClientSession, kind: str, start: date, end: date
) -> list[dict[str, Any]]:
    """Every page of a window, as a client would read it: page 1, then up to total_pages."""
    status, first = await get_json(session, changes_path(kind, start, end))
    assert status == 200
    pages = [first]
    for page in range(2, first["total_pages"] + 1):
        status, body = await get_json(session, changes_path(kind, start, end, page=page))
        assert status == 200
        pages.append(body)
    return pages


def by_the_rule(kind: str, start: date, end: date, config: FakeTmdbConfig) -> list[int]:
    """The documented rule, scanned id by id and day by day (slow, for small universes)."""
    period, ids = config.change_period, set()
    removed = {int(i[2:]) for i in config.removed_ids}
    for offset in range((end - start).days + 1):
        residue = (start + timedelta(days=offset)).toordinal() * 17 % period
        for n in range(1, config.change_universe + 1):
            if kind_of_number(n) == kind and n % period == residue:
                ids.add(n)
        ids |= {n for n in removed if kind_of_number(n) == kind}
    return sorted(ids)


@pytest.mark.parametrize("period", [1, 7, 20, 49, 170, 1000])
@pytest.mark.parametrize("span", [0, 1, 3, 14])
def test_changed_ids_is_the_documented_rule(period: int, span: int) -> None:
    """``changed_ids`` (arithmetic progressions) lists exactly what the rule says, also for a
    period that shares factors with 10 or 17, and with removed titles (listed every day)."""
    config = FakeTmdbConfig(
        change_period=period,
        change_universe=3000,
        removed_ids=frozenset({"tt0000001", "tt0000007", "tt0009999", "tt0000017"}),
    )
    start = date(2024, 2, 27)
    for kind in KINDS:
        expected = by_the_rule(kind, start, start + timedelta(days=span), config)
        assert changed_ids(kind, start, start + timedelta(days=span), config) == expected
    assert changed_ids("movie", start, start - timedelta(days=1), config) == []


async def test_change_list_pages_are_changed_ids_of_the_window() -> None:
    """Both kinds: the pages, read in order, are the window's ids, each once, ascending, 100
    per page; the totals count the whole window."""
    config = FakeTmdbConfig(token=TOKEN, change_universe=20_000, today=TODAY)
    start, end = date(2024, 3, 1), date(2024, 3, 4)
    async with serve(config) as (fake, session):
        for kind in KINDS:
            expected = changed_ids(kind, start, end, config)
            assert len(expected) > 250  # three pages at least, so paging is exercised
            pages = await read_all_changes(session, kind, start, end)
            listed = [item["id"] for page in pages for item in page["results"]]
            assert listed == expected
            assert len(set(listed)) == len(listed)
            assert all(kind_of_number(n) == kind for n in listed)
            assert pages[1]["results"] != pages[0]["results"]
            assert [len(page["results"]) for page in pages[:-1]] == [100] * (len(pages) - 1)
            assert 1 <= len(pages[-1]["results"]) <= 100
            for number, page in enumerate(pages, start=1):
                assert set(page) == {"results", "page", "total_pages", "total_results"}
                assert page["page"] == number
                assert page["total_results"] == len(expected)
                assert page["total_pages"] == math.ceil(len(expected) / 100) == len(pages)
                assert all(
                    item == {"id": item["id"], "adult": None if item["id"] % 31 == 0 else False}
                    for item in page["results"]
                )
        # A page past the last one (but <= 500) is empty, with the same totals.
        status, beyond = await get_json(session, changes_path("tv", start, end, page=499))
        assert status == 200
        assert beyond["results"] == []
        assert beyond["page"] == 499
        assert beyond["total_results"] == len(changed_ids("tv", start, end, config))
        # Every page of a window was computed once (the server caches the window's list).
        assert fake.app[_STATE]._changed.cache_info().misses == 2


async def test_an_empty_change_list_is_one_empty_page() -> None:
    config = FakeTmdbConfig(token=TOKEN, change_universe=0)
    async with serve(config) as (_, session):
        status, body = await get_json(session, changes_path("movie", TODAY, TODAY))
    assert status == 200
    assert body == {"results": [], "page": 1, "total_pages": 1, "total_results": 0}


async def test_the_default_window_is_the_day_before_today_to_today() -> None:
    config = FakeTmdbConfig(token=TOKEN, change_universe=5000, today=TODAY)
    yesterday = TODAY - timedelta(days=1)
    async with serve(config) as (_, session):
        for kind in KINDS:
            _, default = await get_json(session, f"/3/{kind}/changes")
            _, explicit = await get_json(session, changes_path(kind, yesterday, TODAY))
            _, only_end = await get_json(session, changes_path(kind, end=TODAY))
            _, only_start = await get_json(session, changes_path(kind, start=TODAY))
            assert default == explicit == only_end
            assert default["total_results"] == len(changed_ids(kind, yesterday, TODAY, config))
            # Without end_date the window ends today; without start_date it starts a day
            # before end_date.
            assert only_start["total_results"] == len(changed_ids(kind, TODAY, TODAY, config))
            _, earlier = await get_json(session, changes_path(kind, end=date(2024, 1, 5)))
            assert [item["id"] for item in earlier["results"]] == changed_ids(
                kind, date(2024, 1, 4), date(2024, 1, 5), config
            )[:100]


async def test_without_today_the_default_window_ends_today_in_utc() -> None:
    config = FakeTmdbConfig(token=TOKEN, change_universe=5000)
    async with serve(config) as (_, session):
        status, body = await get_json(session, "/3/movie/changes")
    # Read "today" on both sides of the request, in case the test runs across midnight UTC.
    days = {datetime.now(UTC).date() - timedelta(days=d) for d in (0, 1)}
    assert status == 200
    assert body["total_results"] in {
        len(changed_ids("movie", day - timedelta(days=1), day, config)) for day in days
    }


INVALID_RANGE_20 = {
    "success": False,
    "status_code": 20,
    "status_message": "Invalid date range: Should be a range no longer than 14 days.",
}
INVALID_PAGE_22 = {
    "success": False,
    "status_code": 22,
    "status_message": "Invalid page: Pages start at 1 and max at 500. "
    "They are expected to be an integer.",
}
INVALID_DATE_23 = {
    "success": False,
    "status_code": 23,
    "status_message": "Invalid date: Format needs to be YYYY-MM-DD.",
}


@pytest.mark.parametrize("kind", KINDS)
async def test_a_window_longer_than_14_days_is_422_code_20(kind: str) -> None:
    start = date(2024, 2, 1)
    async with serve(FakeTmdbConfig(token=TOKEN, today=TODAY)) as (_, session):
        fourteen = await get_json(session, changes_path(kind, start, start + timedelta(days=14)))
        fifteen = await get_json(session, changes_path(kind, start, start + timedelta(days=15)))
        backwards = await get_json(session, changes_path(kind, start, start - timedelta(days=1)))
        # start_date alone, 15 days before today: the window runs to today, too long.
        from_start = await get_json(session, changes_path(kind, TODAY - timedelta(days=15)))
    assert fourteen[0] == 200
    assert fifteen == backwards == from_start == (422, INVALID_RANGE_20)


@pytest.mark.parametrize("page", ["0", "501", "x", "-1", "1.5", "", "²"])
async def test_a_page_outside_1_to_500_or_not_an_integer_is_400_code_22(page: str) -> None:
    async with serve(FakeTmdbConfig(token=TOKEN, today=TODAY)) as (_, session):
        assert await get_json(session, f"/3/tv/changes?page={page}") == (400, INVALID_PAGE_22)


@pytest.mark.parametrize("bad", ["2024-3-01", "20240301", "2024-02-30", "01-03-2024", "x", ""])
@pytest.mark.parametrize("param", ["start_date", "end_date"])
async def test_a_malformed_date_is_400_code_23(param: str, bad: str) -> None:
    async with serve(FakeTmdbConfig(token=TOKEN, today=TODAY)) as (_, session):
        answer = await get_json(session, f"/3/movie/changes?{param}={bad}&page=0")
    assert answer == (400, INVALID_DATE_23)  # a bad date wins over a bad page


async def test_reading_stops_at_page_500_but_the_totals_count_everything() -> None:
    """With the default universe, 14 days of movie changes are more than 500 pages: TMDB
    serves pages 1..500 only, and its totals still tell the client it was cut off."""
    config = FakeTmdbConfig(token=TOKEN, today=TODAY)
    start, end = TODAY - timedelta(days=14), TODAY
    expected = changed_ids("movie", start, end, config)
    async with serve(config) as (_, session):
        status, last = await get_json(session, changes_path("movie", start, end, page=500))
        beyond = await get_json(session, changes_path("movie", start, end, page=501))
    assert status == 200
    assert [item["id"] for item in last["results"]] == expected[49_900:50_000]
    assert last["total_results"] == len(expected) > 50_000
    assert last["total_pages"] == math.ceil(len(expected) / 100) > 500
    assert beyond == (400, INVALID_PAGE_22)


def test_about_1_in_49_lake_ids_change_a_day_and_every_last_digit_does() -> None:
    """Of the known ids tt1000000..tt1009999 (both kinds), 1.5%..2.5% change each day, and
    each day's changes cover every last digit, hence both kinds."""
    config = FakeTmdbConfig()
    lake = range(1_000_000, 1_010_000)
    known = sum(1 for n in lake if kind_of_number(n) is not None)
    for offset in range(30):
        day = TODAY + timedelta(days=offset)
        changed = {
            n for kind in KINDS for n in changed_ids(kind, day, day, config) if n in lake
        }  # fmt: skip
        assert 0.015 <= len(changed) / known <= 0.025, day
        assert {n % 10 for n in changed} == set(range(10)), day


async def test_removed_titles_are_gone_but_listed_as_changed_every_day() -> None:
    removed = frozenset({"tt0000001", "tt0000007"})  # a movie and a series
    config = FakeTmdbConfig(token=TOKEN, removed_ids=removed, change_universe=1000)
    async with serve(config) as (_, session):
        for path in ("/3/movie/1", "/3/movie/tt0000001", "/3/tv/7", f"/3/movie/1?{APPEND}"):
            assert await get_json(session, path) == (404, NOT_FOUND_34), path
        for imdb_id in sorted(removed):
            assert await get_json(session, FIND.format(imdb_id)) == (200, EMPTY_FIND)
        # Titles that were not removed are untouched.
        assert (await get_json(session, "/3/movie/2"))[0] == 200
        assert (await get_json(session, "/3/tv/8"))[0] == 200
        assert (await get_json(session, FIND.format("tt0000002")))[1]["movie_results"]
        for offset in range(60):
            day = TODAY + timedelta(days=offset)
            _, movies = await get_json(session, changes_path("movie", day, day))
            _, shows = await get_json(session, changes_path("tv", day, day))
            movie_ids = [item["id"] for item in movies["results"]]
            tv_ids = [item["id"] for item in shows["results"]]
            assert movie_ids.count(1) == 1 and 7 not in movie_ids, day  # each in its kind
            assert tv_ids.count(7) == 1 and 1 not in tv_ids, day


async def test_change_lists_go_through_the_gates_and_are_counted() -> None:
    """Auth, the rate limit and the statistics treat the change lists as any /3 request,
    and ``changes`` is never taken for a title id."""
    clock = FakeClock()
    # The rate gate comes before auth (a CDN rejects first), so the 401 takes a slot too.
    config = FakeTmdbConfig(token=TOKEN, rate_limit=4, today=TODAY, change_universe=5000)
    async with serve(config, clock=clock) as (fake, session):
        async with aiohttp.ClientSession() as anonymous:
            unauthorized = await get_json(anonymous, fake.url + "/3/movie/changes")
        answers = [await get_json(session, "/3/movie/changes") for _ in range(2)]
        answers.append(await get_json(session, "/3/tv/changes?page=2"))
        throttled = await get_json(session, "/3/tv/changes")
        stats = fake.stats()
    assert unauthorized[0] == 401
    assert [status for status, _ in answers] == [200, 200, 200]
    assert all(
        set(body) == {"results", "page", "total_pages", "total_results"} for _, body in answers
    )
    assert (throttled[0], throttled[1]["status_code"]) == (429, 25)
    assert stats.total_requests == 5
    assert stats.status_counts == {200: 3, 401: 1, 429: 1}
    assert stats.path_counts == {"/3/movie/changes": 3, "/3/tv/changes": 2}


def test_change_list_knobs_defaults_validation_and_cli_flags() -> None:
    from tmdb_devtools.fake_tmdb import _build_parser, _config_from_args

    default = FakeTmdbConfig()
    assert (default.change_period, default.change_universe) == (49, 1_500_000)
    assert (default.removed_ids, default.today) == (frozenset(), None)
    assert FakeTmdbConfig(removed_ids=["tt0000001"]).removed_ids == frozenset({"tt0000001"})
    for bad in ({"change_period": 0}, {"change_universe": -1}, {"today": "2024-03-10"}):
        with pytest.raises(ValueError):
            FakeTmdbConfig(**bad)

    parser = _build_parser()
    assert _config_from_args(parser.parse_args([])) == default
    config = _config_from_args(
        parser.parse_args(
            ["--change-period", "7", "--change-universe", "1000", "--today", "2024-03-10",
             "--removed-ids", "tt0000001,tt0000002", "--removed-ids", "tt0000003"]
        )
    )  # fmt: skip
    assert config.change_period == 7
    assert config.change_universe == 1000
    assert config.today == TODAY
    assert config.removed_ids == {"tt0000001", "tt0000002", "tt0000003"}
    for argv in (["--today", "2024-3-10"], ["--change-period", "0"], ["--change-universe", "-1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)


# --- stats ---------------------------------------------------------------------------------


async def test_stats_endpoint_counts_and_reset() -> None:
    async with serve() as (fake, session):
        for _ in range(3):
            await get_json(session, FIND.format("tt0000001"))
        async with aiohttp.ClientSession() as anonymous:  # control endpoints need no token
            await get_json(anonymous, fake.url + "/3/movie/1")  # 401
            status, body = await get_json(anonymous, fake.url + "/__stats")
            assert status == 200
            now = fake.stats()
            # The snapshot's own time, on the server's clock, is the only thing that moved.
            assert body["taken_at"] <= now.taken_at
            assert body == {**now.as_dict(), "taken_at": body["taken_at"]}
            stats = FakeTmdbStats.from_dict(body)
            assert stats == replace(now, taken_at=body["taken_at"])  # polling is not counted
            assert stats.total_requests == 4
            assert stats.status_counts == {200: 3, 401: 1}
            assert body["status_counts"] == {"200": 3, "401": 1}
            assert stats.path_counts == {"/3/find/tt0000001": 3, "/3/movie/1": 1}
            assert stats.max_in_flight >= 1
            assert stats.in_flight == 0
            assert stats.first_request_at is not None
            assert stats.last_request_at is not None
            assert stats.first_request_at <= stats.last_request_at <= time.monotonic()

            async with anonymous.post(fake.url + "/__reset") as resp:
                assert resp.status == 200
            cleared = fake.stats()
            assert cleared.total_requests == 0
            assert cleared.status_counts == {}
            assert cleared.path_counts == {}
            assert cleared.first_request_at is None

        await get_json(session, FIND.format("tt0000002"))
        fake.reset_stats()
        assert fake.stats().total_requests == 0


async def test_make_app_works_with_any_runner() -> None:
    """make_app is usable without FakeTmdb (e.g. under aiohttp's own test server)."""
    from aiohttp.test_utils import TestClient, TestServer

    async with TestClient(TestServer(make_app(FakeTmdbConfig(token=TOKEN)))) as client:
        resp = await client.get(FIND.format("tt0000007"), headers=AUTH)
        assert resp.status == 200
        assert (await resp.json())["tv_results"][0]["id"] == 7


# --- command line --------------------------------------------------------------------------


def test_cli_rejects_bad_probability(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--fault-5xx", "1.5"])
    assert exc.value.code == 2
    assert "fault-5xx" in capsys.readouterr().err


async def test_cli_serves_and_exits_on_sigterm(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tmdb_devtools.fake_tmdb",
        "--port",
        "0",
        "--port-file",
        str(port_file),
        "--token",
        TOKEN,
        "--fault-ids",
        "tt0000002,tt0000003",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while not port_file.exists():
            if proc.returncode is not None or loop.time() > deadline:
                assert proc.stderr is not None
                pytest.fail(f"server did not start: {(await proc.stderr.read()).decode()}")
            await asyncio.sleep(0.02)
        port = int(port_file.read_text())
        assert proc.stdout is not None
        async with asyncio.timeout(5):
            line = (await proc.stdout.readline()).decode().strip()
        assert line == f"fake TMDB listening on http://127.0.0.1:{port}"

        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers=AUTH) as session:
            assert (await get_json(session, FIND.format("tt0000001")))[0] == 200
            assert (await get_json(session, FIND.format("tt0000003")))[0] == 503
            status, stats = await get_json(session, "/__stats")
        assert status == 200
        assert stats["total_requests"] == 2

        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
        assert not port_file.exists()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
