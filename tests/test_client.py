"""Talking to TMDB: what the client sends, and how it treats each kind of answer.

Unit tests with aioresponses (no sockets); see conftest for the aiohttp 3.14 shim.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses

from tmdb_async.client import ClientOptions, Found, LookupFailed, NotFound, TmdbClient
from tmdb_async.config import Credentials
from tmdb_async.errors import CredentialsError

BASE = "http://tmdb.test"
FIND = re.compile(r"^http://tmdb\.test/3/find/tt\d+.*$")
MOVIE = re.compile(r"^http://tmdb\.test/3/movie/\d+.*$")
TV = re.compile(r"^http://tmdb\.test/3/tv/\d+.*$")
MOVIE_FIND = {
    "movie_results": [{"id": 603, "title": "Matrix", "media_type": "movie"}],
    "tv_results": [],
    "person_results": [],
    "tv_episode_results": [],
    "tv_season_results": [],
}
TV_FIND = {**MOVIE_FIND, "movie_results": [], "tv_results": [{"id": 1399, "name": "GoT"}]}
EMPTY_FIND = {**MOVIE_FIND, "movie_results": []}


def options(**changes: Any) -> ClientOptions:
    values: dict[str, Any] = {
        "base_url": BASE,
        "credentials": Credentials(read_access_token="tok-123"),
        "rate": 1000.0,
        "max_attempts": 3,
        "max_backoff": 0.01,
        "request_timeout": 2.0,
    }
    values.update(changes)
    return ClientOptions(**values)


@pytest.fixture
def mocked() -> aioresponses:
    with aioresponses() as m:
        yield m


@pytest.fixture
async def client() -> AsyncIterator[TmdbClient]:
    async with TmdbClient.open(options()) as c:
        yield c


def sent(m: aioresponses) -> list[tuple[str, dict[str, Any]]]:
    """(url, kwargs) of every request aioresponses saw, in order."""
    return [(str(url), call.kwargs) for (_, url), calls in m.requests.items() for call in calls]


async def test_full_mode_finds_then_fetches_details_with_language_and_append(
    mocked: aioresponses,
) -> None:
    mocked.get(FIND, payload=MOVIE_FIND)
    mocked.get(MOVIE, payload={"id": 603, "title": "Matrix", "imdb_id": "tt0133093"})
    async with TmdbClient.open(options(append_to_response=("credits", "keywords"))) as c:
        result = await c.lookup("tt0133093")
    assert result == Found(
        {"id": 603, "title": "Matrix", "imdb_id": "tt0133093", "media_type": "movie"}, "movie"
    )
    (find_url, find_kw), (movie_url, movie_kw) = sent(mocked)
    assert find_url.startswith(f"{BASE}/3/find/tt0133093")
    assert find_kw["params"]["external_source"] == "imdb_id"
    assert find_kw["params"]["language"] == "pt-BR"
    assert movie_url.startswith(f"{BASE}/3/movie/603")
    assert movie_kw["params"]["append_to_response"] == "credits,keywords"
    assert movie_kw["headers"]["Authorization"] == "Bearer tok-123"
    assert "api_key" not in movie_kw["params"]


async def test_tv_records_get_imdb_id_and_media_type_added(mocked: aioresponses) -> None:
    mocked.get(FIND, payload=TV_FIND)
    mocked.get(TV, payload={"id": 1399, "name": "GoT"})
    async with TmdbClient.open(options()) as c:
        result = await c.lookup("tt0944947")
    assert isinstance(result, Found)
    assert result.record == {
        "id": 1399,
        "name": "GoT",
        "imdb_id": "tt0944947",
        "media_type": "tv",
    }


async def test_find_mode_makes_one_call_per_id(mocked: aioresponses) -> None:
    mocked.get(FIND, payload=MOVIE_FIND)
    async with TmdbClient.open(options(detail="find")) as c:
        result = await c.lookup("tt0133093")
    assert isinstance(result, Found)
    assert result.record["title"] == "Matrix"
    assert len(sent(mocked)) == 1


@pytest.mark.parametrize(("kind", "payload"), [("movie", TV_FIND), ("tv", MOVIE_FIND)])
async def test_kind_filters_the_find_result(mocked: aioresponses, kind: str, payload: Any) -> None:
    mocked.get(FIND, payload=payload)
    async with TmdbClient.open(options(kind=kind)) as c:
        result = await c.lookup("tt0000001")
    assert isinstance(result, NotFound)
    assert kind in result.reason


async def test_empty_find_and_404_details_are_not_found_not_errors(
    mocked: aioresponses, client: TmdbClient
) -> None:
    mocked.get(FIND, payload=EMPTY_FIND)
    assert isinstance(await client.lookup("tt0000001"), NotFound)
    mocked.get(FIND, payload=MOVIE_FIND)
    mocked.get(MOVIE, status=404, payload={"status_code": 34})
    assert isinstance(await client.lookup("tt0000002"), NotFound)
    assert client.stats.retries == 0


async def test_api_key_goes_in_the_query_only_without_a_token(mocked: aioresponses) -> None:
    mocked.get(FIND, payload=EMPTY_FIND)
    async with TmdbClient.open(options(credentials=Credentials(api_key="k-1"))) as c:
        await c.lookup("tt0000001")
    ((_, kw),) = sent(mocked)
    assert kw["params"]["api_key"] == "k-1"
    assert "Authorization" not in kw["headers"]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_retried_then_succeeds(
    mocked: aioresponses, client: TmdbClient, status: int
) -> None:
    mocked.get(FIND, status=status, payload={"status_code": 43})
    mocked.get(FIND, payload=MOVIE_FIND)
    mocked.get(MOVIE, payload={"id": 603})
    assert isinstance(await client.lookup("tt0000001"), Found)
    assert client.stats.retries == 1


async def test_connection_errors_timeouts_and_bad_json_are_retried(
    mocked: aioresponses, client: TmdbClient
) -> None:
    mocked.get(FIND, exception=aiohttp.ServerDisconnectedError())
    mocked.get(FIND, exception=TimeoutError())
    mocked.get(FIND, status=200, body=b'{"movie_results": [', content_type="application/json")
    mocked.get(FIND, payload=EMPTY_FIND)
    async with TmdbClient.open(options(max_attempts=4)) as c:
        assert isinstance(await c.lookup("tt0000001"), NotFound)
        assert c.stats.retries == 3
        assert c.stats.errors == {
            "ServerDisconnectedError": 1,
            "timeout": 1,
            "invalid JSON body": 1,
        }


async def test_retries_are_bounded_and_the_last_error_is_the_reason(
    mocked: aioresponses,
) -> None:
    for _ in range(3):
        mocked.get(FIND, status=503, payload={"status_message": "Service maintenance"})
    async with TmdbClient.open(options(max_attempts=3)) as c:
        with pytest.raises(LookupFailed) as caught:
            await c.lookup("tt0000001")
    assert caught.value.attempts == 3
    assert caught.value.reason == (
        "HTTP 503 (Service maintenance) on /3/find/tt0000001 after 3 attempts"
    )
    assert len(sent(mocked)) == 3


async def test_a_4xx_other_than_401_404_429_fails_the_id_without_retrying(
    mocked: aioresponses, client: TmdbClient
) -> None:
    mocked.get(FIND, status=400, payload={"status_code": 27, "status_message": "Too many"})
    with pytest.raises(LookupFailed, match="HTTP 400"):
        await client.lookup("tt0000001")
    assert len(sent(mocked)) == 1


async def test_401_raises_credentials_error_and_stops_all_later_requests(
    mocked: aioresponses, client: TmdbClient
) -> None:
    mocked.get(FIND, status=401, payload={"status_code": 7}, repeat=True)
    with pytest.raises(CredentialsError, match="rejected"):
        await client.lookup("tt0000001")
    with pytest.raises(CredentialsError):
        await client.lookup("tt0000002")
    assert len(sent(mocked)) == 1  # no retry storm


async def test_429_with_retry_after_pauses_the_whole_client_and_slows_its_rate(
    mocked: aioresponses,
) -> None:
    seen: list[float] = []

    def stamp(url: Any, **kwargs: Any) -> CallbackResult:
        import asyncio

        seen.append(asyncio.get_running_loop().time())
        if len(seen) <= 2:
            return CallbackResult(status=429, headers={"Retry-After": "0.3"}, payload={})
        return CallbackResult(payload=EMPTY_FIND)

    mocked.get(FIND, callback=stamp, repeat=True)
    async with TmdbClient.open(options(rate=100.0, max_backoff=5.0)) as c:
        assert isinstance(await c.lookup("tt0000001"), NotFound)
        assert c.stats.throttled == 2
        # A lone 429 only pauses; the second within 5 s also cuts the pace by 30%.
        assert c.current_rate == 70.0
    assert seen[1] - seen[0] >= 0.3  # Retry-After honoured, never undercut
    assert seen[2] - seen[1] >= 0.3


async def test_429_without_retry_after_falls_back_to_backoff(mocked: aioresponses) -> None:
    mocked.get(FIND, status=429, payload={"status_code": 25})
    mocked.get(FIND, payload=EMPTY_FIND)
    async with TmdbClient.open(options()) as c:
        assert isinstance(await c.lookup("tt0000001"), NotFound)
        assert c.stats.throttled == 1
        assert c.stats.retries == 1


async def test_error_reasons_never_contain_the_query_string(mocked: aioresponses) -> None:
    for _ in range(2):
        mocked.get(FIND, exception=aiohttp.ClientConnectionError("boom"))
    creds = Credentials(api_key="SECRET-KEY-XYZ")
    async with TmdbClient.open(options(credentials=creds, max_attempts=2)) as c:
        with pytest.raises(LookupFailed) as caught:
            await c.lookup("tt0000001")
    assert "SECRET-KEY-XYZ" not in caught.value.reason
    assert "api_key" not in caught.value.reason
