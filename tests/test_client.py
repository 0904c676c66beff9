"""Talking to TMDB: what the client sends, and how it treats each kind of answer.

Unit tests with aioresponses (no sockets; see conftest for the aiohttp 3.14 shim), the pure
classification functions without any I/O, and a few promises checked against the fake TMDB
on loopback (malformed HTTP answers, lone surrogates, cancellation).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.http_exceptions import BadStatusLine
from aioresponses import CallbackResult, aioresponses
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from tmdb_async.client import (
    ClientOptions,
    Found,
    LookupFailed,
    NotFound,
    Outcome,
    TmdbClient,
    classify,
    classify_error,
    parse_retry_after,
)
from tmdb_async.config import Credentials
from tmdb_async.errors import CredentialsError
from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig

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


def query(url: str) -> dict[str, str]:
    return dict(URL(url).query)


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
    (find_url, _), (movie_url, _) = sent(mocked)
    assert find_url.startswith(f"{BASE}/3/find/tt0133093?")
    assert query(find_url) == {"external_source": "imdb_id", "language": "pt-BR"}
    assert movie_url.startswith(f"{BASE}/3/movie/603?")
    assert query(movie_url) == {"language": "pt-BR", "append_to_response": "credits,keywords"}
    assert c._session.headers["Authorization"] == "Bearer tok-123"  # on every request


async def test_the_bearer_token_authenticates_over_a_real_socket() -> None:
    config = FakeTmdbConfig(token="tok-5e1f")
    creds = Credentials(read_access_token="tok-5e1f")
    async with (
        FakeTmdb(config) as fake,
        TmdbClient.open(options(base_url=fake.url, credentials=creds)) as c,
    ):
        assert isinstance(await c.lookup("tt0000001"), Found)
        assert fake.stats().status_counts == {200: 2}


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
    ((url, _),) = sent(mocked)
    assert query(url)["api_key"] == "k-1"
    assert "Authorization" not in c._session.headers


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
        assert c.stats.requests == 4


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
    assert c.stats.retries == 2  # counted once per retry, in one place


async def test_one_attempt_allowed_means_no_retry(mocked: aioresponses) -> None:
    mocked.get(FIND, status=502, payload={})
    async with TmdbClient.open(options(max_attempts=1)) as c:
        with pytest.raises(LookupFailed) as caught:
            await c.lookup("tt0000001")
        assert c.stats.retries == 0
    assert caught.value.attempts == 1
    assert caught.value.reason == "HTTP 502 on /3/find/tt0000001 after 1 attempt"


async def test_a_4xx_other_than_401_404_429_fails_the_id_without_retrying(
    mocked: aioresponses, client: TmdbClient
) -> None:
    mocked.get(FIND, status=400, payload={"status_code": 27, "status_message": "Too many"})
    with pytest.raises(LookupFailed, match="HTTP 400") as caught:
        await client.lookup("tt0000001")
    assert len(sent(mocked)) == 1
    assert caught.value.attempts == 1


async def test_a_4xx_after_a_retry_reports_the_attempts_really_made(
    mocked: aioresponses, client: TmdbClient
) -> None:
    mocked.get(FIND, status=503, payload={})
    mocked.get(FIND, status=403, payload={"status_message": "Forbidden"})
    with pytest.raises(LookupFailed) as caught:
        await client.lookup("tt0000001")
    assert caught.value.attempts == 2
    assert caught.value.reason == "HTTP 403 (Forbidden) on /3/find/tt0000001 after 2 attempts"


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


# --- classify: what an answer means, without I/O --------------------------------------------


def test_classify_a_200_object_is_ok_with_its_data() -> None:
    assert classify(200, b'{"id": 603}') == Outcome("ok", data={"id": 603})


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"movie_results": [', "invalid JSON body"),
        (b"\xff\xfe not utf-8 {", "invalid JSON body"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid JSON body"),  # RecursionError, not a crash
        (b"", "invalid JSON body"),
        (b"[1, 2]", "JSON body is not an object"),
        (b"null", "JSON body is not an object"),
    ],
)
def test_classify_an_unreadable_200_is_retried(body: bytes, reason: str) -> None:
    assert classify(200, body) == Outcome("retry", reason)


def test_classify_404_is_not_found_and_401_is_rejected() -> None:
    assert classify(404, b'{"status_code": 34}').kind == "not_found"
    rejected = classify(401, b'{"status_code": 7}')
    assert rejected.kind == "rejected"
    assert "TMDB_READ_ACCESS_TOKEN" in rejected.reason


@pytest.mark.parametrize(
    ("header", "retry_after"),
    [(None, None), ("2", 2.0), ("0.5", 0.5), ("0", 0.0), ("-1", None), ("inf", None),
     ("Wed, 21 Oct 2026 07:28:00 GMT", None)],
)  # fmt: skip
def test_classify_429_is_retried_with_its_retry_after(
    header: str | None, retry_after: float | None
) -> None:
    assert classify(429, b"{}", header) == Outcome("retry", "HTTP 429", retry_after)
    assert parse_retry_after(header) == retry_after


@pytest.mark.parametrize("status", [500, 502, 503, 504, 520, 408])
def test_classify_5xx_and_408_are_retried_with_tmdbs_message(status: int) -> None:
    body = json.dumps({"status_code": 46, "status_message": "Service\nmaintenance"}).encode()
    assert classify(status, body) == Outcome("retry", f"HTTP {status} (Service maintenance)")
    assert classify(status, b"<html>proxy error</html>") == Outcome("retry", f"HTTP {status}")


@pytest.mark.parametrize("status", [400, 403, 405, 410, 422, 204, 302])
def test_classify_other_statuses_fail_the_id_without_retry(status: int) -> None:
    body = b'{"status_code": 27, "status_message": "Too many append to response objects"}'
    outcome = classify(status, body)
    assert outcome.kind == "fail"
    assert outcome.reason.startswith(f"HTTP {status}")


def test_classify_keeps_a_lone_surrogate_escape_as_it_is() -> None:
    outcome = classify(200, b'{"overview": "broken emoji \\ud83d"}')
    assert outcome.kind == "ok"
    assert outcome.data == {"overview": "broken emoji \ud83d"}


@given(st.integers(min_value=100, max_value=599), st.binary(max_size=200), st.text(max_size=20))
def test_classify_never_raises_whatever_tmdb_sends(
    status: int, body: bytes, retry_after: str
) -> None:
    outcome = classify(status, body, retry_after)
    assert outcome.kind in ("ok", "not_found", "retry", "fail", "rejected")
    assert (outcome.data is not None) == (outcome.kind == "ok")
    assert outcome.retry_after is None or outcome.retry_after >= 0


def _response_error(url: str, headers: dict[str, str], message: str) -> aiohttp.ClientResponseError:
    info = aiohttp.RequestInfo(URL(url), "GET", CIMultiDictProxy(CIMultiDict(headers)), URL(url))
    return aiohttp.ClientResponseError(info, (), status=400, message=message)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (TimeoutError(), "timeout"),
        (aiohttp.ServerTimeoutError("read"), "timeout"),
        (aiohttp.ServerDisconnectedError(), "ServerDisconnectedError: Server disconnected"),
        (aiohttp.ClientPayloadError("Response payload is not completed"),
         "ClientPayloadError: Response payload is not completed"),
        (ConnectionResetError(104, "Connection reset by peer"),
         "ConnectionResetError: [Errno 104] Connection reset by peer"),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
         "SSLError: [SSL: WRONG_VERSION_NUMBER] wrong version number"),
        (BadStatusLine("HTTP/1.1 2x0"),
         "BadStatusLine: 400, message: Bad status line 'HTTP/1.1 2x0'"),
        (_response_error("http://t/3/find/tt1?api_key=K", {"Authorization": "Bearer T"},
                         "Bad status line"),
         "ClientResponseError: 400, Bad status line"),
    ],
)  # fmt: skip
def test_classify_error_retries_every_transport_error(error: Exception, reason: str) -> None:
    assert classify_error(error) == Outcome("retry", reason)


@pytest.mark.parametrize(
    "error",
    [RuntimeError("bug"), KeyError("id"), ValueError("?"), UnicodeError(), RecursionError()],
)
def test_classify_error_fails_the_id_on_anything_else(error: Exception) -> None:
    outcome = classify_error(error)
    assert outcome.kind == "fail"
    assert outcome.reason.startswith(f"unexpected {type(error).__name__}")


# --- promises: nothing on one request kills the run -------------------------------------------

TOKEN_CANARY = "canary-token-9d2e7f1a3b"
KEY_CANARY = "canary-key-4c8b2a6e0f"


async def test_a_malformed_http_response_is_retried_not_fatal(mocked: aioresponses) -> None:
    """aiohttp's ClientResponseError (a malformed answer) once, then TMDB answers."""
    malformed = _response_error(f"{BASE}/3/find/tt1", {}, "Bad status line 'HTTP/1.1 2x0'")
    mocked.get(FIND, exception=malformed)
    mocked.get(FIND, payload=MOVIE_FIND)
    mocked.get(MOVIE, payload={"id": 603})
    async with TmdbClient.open(options()) as c:
        assert isinstance(await c.lookup("tt0000001"), Found)
        assert c.stats.retries == 1
        assert c.stats.errors == {"ClientResponseError": 1}


async def test_malformed_http_answers_over_a_real_socket_are_retried_and_every_id_resolves() -> (
    None
):
    config = FakeTmdbConfig(token=TOKEN_CANARY, fault_malformed=0.3, seed=4)
    creds = Credentials(read_access_token=TOKEN_CANARY)
    ids = [f"tt{n:07d}" for n in range(1, 31)]
    async with FakeTmdb(config) as fake:
        async with TmdbClient.open(
            options(base_url=fake.url, credentials=creds, max_attempts=8)
        ) as c:
            results = await asyncio.gather(*(c.lookup(i) for i in ids))
        assert fake.stats().faults["malformed"] > 0
    assert all(isinstance(r, Found | NotFound) for r in results)
    assert c.stats.errors.get("ClientResponseError", 0) > 0


async def test_an_unexpected_error_fails_only_that_id(
    mocked: aioresponses, caplog: pytest.LogCaptureFixture
) -> None:
    def answer(url: URL, **kwargs: Any) -> CallbackResult:
        if "tt0000001" in str(url):
            raise RuntimeError("something nobody expected")
        return CallbackResult(payload=EMPTY_FIND)

    mocked.get(FIND, callback=answer, repeat=True)
    async with TmdbClient.open(options()) as c:
        first, second = await asyncio.gather(
            c.lookup("tt0000001"), c.lookup("tt0000002"), return_exceptions=True
        )
        assert c.stats.retries == 0  # a bug is not retried
        assert c.stats.errors == {"RuntimeError": 1}
    assert isinstance(first, LookupFailed)
    assert first.attempts == 1
    assert first.reason == (
        "unexpected RuntimeError: something nobody expected on /3/find/tt0000001 after 1 attempt"
    )
    assert isinstance(second, NotFound)
    assert "unexpected RuntimeError" in caplog.text


async def test_a_find_result_without_a_numeric_id_fails_only_that_id(
    mocked: aioresponses, client: TmdbClient
) -> None:
    mocked.get(FIND, payload={**MOVIE_FIND, "movie_results": [{"title": "no id"}]})
    with pytest.raises(LookupFailed, match="without a numeric id"):
        await client.lookup("tt0000001")


@pytest.mark.parametrize(
    "credentials",
    [Credentials(read_access_token=TOKEN_CANARY), Credentials(api_key=KEY_CANARY)],
    ids=["bearer", "api_key"],
)
async def test_failure_reasons_never_hold_the_token_or_the_api_key(
    mocked: aioresponses, caplog: pytest.LogCaptureFixture, credentials: Credentials
) -> None:
    """aiohttp's ClientResponseError carries the request: its str holds the URL (api_key),
    its repr every header (Bearer). Neither may reach a reason, a stat or a log line."""
    url = f"{BASE}/3/find/tt0000001?external_source=imdb_id&api_key={KEY_CANARY}"
    headers = {"Authorization": f"Bearer {TOKEN_CANARY}", "Accept": "application/json"}
    errors = [
        _response_error(url, headers, f"Bad status line 'HTTP/1.1 2x0' for {url}"),
        aiohttp.ClientConnectionError(f"boom on {url} with Authorization: Bearer {TOKEN_CANARY}"),
        RuntimeError(f"unexpected {headers!r} at {url}"),
    ]
    assert TOKEN_CANARY in repr(errors[0]) and KEY_CANARY in str(errors[0])  # the trap is real
    for error in errors[:2]:
        for _ in range(3):
            mocked.get(FIND, exception=error)
    mocked.get(FIND, exception=errors[2])
    caplog.set_level(logging.DEBUG)
    async with TmdbClient.open(options(credentials=credentials, max_attempts=3)) as c:
        failures = [
            await asyncio.gather(c.lookup("tt0000001"), return_exceptions=True) for _ in errors
        ]
        stats = json.dumps(c.stats.as_dict())
    texts = [stats, caplog.text]
    for (failure,) in failures:
        assert isinstance(failure, LookupFailed)
        texts += [failure.reason, str(failure), repr(failure)]
    assert [f.reason.split(":")[0] for (f,) in failures] == [
        "ClientResponseError",
        "ClientConnectionError",
        "unexpected RuntimeError",
    ]
    for text in texts:
        assert TOKEN_CANARY not in text
        assert KEY_CANARY not in text
        assert "?" not in text.replace("'?'", "")  # no query string at all


async def test_failure_reasons_never_hold_the_api_key_against_malformed_answers_on_loopback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = FakeTmdbConfig(token=KEY_CANARY, malformed_ids={"tt0000001"})
    creds = Credentials(api_key=KEY_CANARY)
    caplog.set_level(logging.DEBUG)
    async with FakeTmdb(config) as fake:
        async with TmdbClient.open(options(base_url=fake.url, credentials=creds)) as c:
            with pytest.raises(LookupFailed) as caught:
                await c.lookup("tt0000001")
            assert isinstance(await c.lookup("tt0000002"), Found)  # the run goes on
        assert fake.stats().faults["malformed"] == 3
    reason = caught.value.reason
    assert reason.startswith("ClientResponseError: 400, Bad status line")
    assert reason.endswith("on /3/find/tt0000001 after 3 attempts")
    for text in (reason, repr(caught.value), json.dumps(c.stats.as_dict()), caplog.text):
        assert KEY_CANARY not in text
        assert "api_key" not in text


async def test_cancellation_propagates() -> None:
    """Cancelling a lookup mid-request is not an error: no retry, no failure, no count."""
    on_server = asyncio.Event()

    async def hold(seconds: float) -> None:  # the fake's latency: the answer never comes
        on_server.set()
        await asyncio.Event().wait()

    config = FakeTmdbConfig(token=TOKEN_CANARY, latency=1.0)
    creds = Credentials(read_access_token=TOKEN_CANARY)
    async with (
        FakeTmdb(config, sleep=hold, shutdown_timeout=0.1) as fake,
        TmdbClient.open(options(base_url=fake.url, credentials=creds)) as c,
    ):
        task = asyncio.create_task(c.lookup("tt0000001"))
        async with asyncio.timeout(10):
            await on_server.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert c.stats.retries == 0
        assert c.stats.errors == {}
        assert c.stats.requests == 1


async def test_cancellation_during_a_retry_pause_propagates(mocked: aioresponses) -> None:
    mocked.get(FIND, status=503, payload={}, repeat=True)
    async with TmdbClient.open(options(max_backoff=30.0)) as c:
        task = asyncio.create_task(c.lookup("tt0000001"))
        async with asyncio.timeout(10):
            while c.stats.retries == 0:  # noqa: ASYNC110  (then it sleeps before attempt 2)
                await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert c.stats.requests == 1


# --- records pass through untouched -----------------------------------------------------------


async def test_a_lone_surrogate_in_a_record_passes_through_untouched(
    mocked: aioresponses, client: TmdbClient
) -> None:
    mocked.get(FIND, payload=MOVIE_FIND)
    raw = b'{"id": 603, "title": "Matrix", "overview": "half an emoji \\ud83d"}'
    mocked.get(MOVIE, status=200, body=raw, content_type="application/json")
    result = await client.lookup("tt0133093")
    assert isinstance(result, Found)
    assert result.record["overview"] == "half an emoji \ud83d"
    assert client.stats.retries == 0


async def test_a_lone_surrogate_from_the_fake_passes_through_untouched() -> None:
    config = FakeTmdbConfig(token=TOKEN_CANARY, surrogate_ids={"tt0000002"})
    creds = Credentials(read_access_token=TOKEN_CANARY)
    async with (
        FakeTmdb(config) as fake,
        TmdbClient.open(options(base_url=fake.url, credentials=creds)) as c,
    ):
        marked, plain = await c.lookup("tt0000002"), await c.lookup("tt0000003")
    assert isinstance(marked, Found) and isinstance(plain, Found)
    assert marked.record["overview"].endswith(" \ud83d")
    assert "\ud83d" not in plain.record["overview"]
