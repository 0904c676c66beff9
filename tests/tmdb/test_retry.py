"""Retries: which failures are tried again, how many times, how long apart, what is counted.

The policy (:mod:`tmdb_async.tmdb.retry`) seen through the client, with aioresponses (no
sockets) and the fake TMDB on loopback for malformed HTTP and cancellation; then its strategy
objects and the hold on their own. Waits that matter run on the virtual clock
(``tests/support/virtual_clock.py``) or the breaker's seams, never on the machine's.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses
from tenacity import RetryCallState
from yarl import URL

from tests.support.virtual_clock import run_virtual
from tests.tmdb.test_answers import response_error
from tests.tmdb.test_breaker import VirtualTime, _refused
from tests.tmdb.test_client import (
    ANY,
    BASE,
    DIRECT,
    EMPTY_FIND,
    FIND,
    TOKEN_CANARY,
    direct_answers_404,
    options,
    sent,
)
from tmdb_async.credentials import Credentials
from tmdb_async.errors import CredentialsError, GaveUp, LookupFailed, Refused, Retryable
from tmdb_async.tmdb import breaker as breaker_module
from tmdb_async.tmdb.answers import Found, NotFound
from tmdb_async.tmdb.breaker import HOLD_SECONDS, Breaker
from tmdb_async.tmdb.client import TmdbClient
from tmdb_async.tmdb.retry import Backoff, Retries, RetryAfterOrBackoff
from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


@pytest.fixture
async def client() -> AsyncIterator[TmdbClient]:
    async with TmdbClient.open(options()) as c:
        yield c


# --- what is retried, and how many times ---------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_retried_then_succeeds(
    mocked: aioresponses, client: TmdbClient, status: int
) -> None:
    mocked.get(DIRECT, status=status, payload={"status_code": 43})
    mocked.get(DIRECT, payload={"id": 603})
    assert isinstance(await client.lookup("tt0000001"), Found)
    assert client.stats.retries == 1
    assert len(sent(mocked)) == 2  # the same request twice, nothing else


async def test_connection_errors_timeouts_and_bad_json_are_retried(
    mocked: aioresponses,
) -> None:
    mocked.get(DIRECT, exception=aiohttp.ServerDisconnectedError())
    mocked.get(DIRECT, exception=TimeoutError())
    mocked.get(
        DIRECT, status=200, body=b'{"id": 603, "title": "Ma', content_type="application/json"
    )
    mocked.get(DIRECT, payload={"id": 603})
    async with TmdbClient.open(options(max_attempts=4)) as c:
        assert isinstance(await c.lookup("tt0000001"), Found)
        assert c.stats.retries == 3
        assert c.stats.errors == {
            "ServerDisconnectedError": 1,
            "timeout": 1,
            "invalid JSON body": 1,
        }
        assert c.stats.requests == 4


@pytest.mark.parametrize("on", ["/3/movie/tt0000001", "/3/find/tt0000001"])
async def test_retries_are_bounded_and_the_last_error_is_the_reason(
    mocked: aioresponses, on: str
) -> None:
    """Exhausted retries fail the id with the last error: on /find (after the direct 404),
    and on the direct request followed by /find (TMDB answering 503 everywhere)."""
    on_find = on.startswith("/3/find/")
    if on_find:
        direct_answers_404(mocked)
    for _ in range(3):
        for pattern in (FIND,) if on_find else (DIRECT, FIND):
            mocked.get(pattern, status=503, payload={"status_message": "Service maintenance"})
    async with TmdbClient.open(options(max_attempts=3)) as c:
        with pytest.raises(LookupFailed) as caught:
            await c.lookup("tt0000001")
    assert caught.value.attempts == 3
    find = "/3/find/tt0000001"
    assert caught.value.reason == f"HTTP 503 (Service maintenance) on {find} after 3 attempts"
    paths = [URL(url).path for url, _ in sent(mocked)]
    assert paths.count(on) == 3 and paths.count(find) == 3
    assert len(paths) == (4 if on_find else 6)  # the direct 404, or its 3 attempts, first
    assert c.stats.retries == (2 if on_find else 4)  # counted once per retry, in one place


async def test_one_attempt_allowed_means_no_retry(mocked: aioresponses) -> None:
    direct_answers_404(mocked)
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
    direct_answers_404(mocked)
    mocked.get(FIND, status=400, payload={"status_code": 27, "status_message": "Too many"})
    with pytest.raises(LookupFailed, match="HTTP 400") as caught:
        await client.lookup("tt0000001")
    assert [URL(url).path for url, _ in sent(mocked)] == [
        "/3/movie/tt0000001",  # the direct 404
        "/3/find/tt0000001",  # once: not retried
    ]
    assert caught.value.attempts == 1


async def test_a_4xx_after_a_retry_reports_the_attempts_really_made(
    mocked: aioresponses, client: TmdbClient
) -> None:
    direct_answers_404(mocked)
    mocked.get(FIND, status=503, payload={})
    mocked.get(FIND, status=403, payload={"status_message": "Forbidden"})
    with pytest.raises(LookupFailed) as caught:
        await client.lookup("tt0000001")
    assert caught.value.attempts == 2
    assert caught.value.reason == "HTTP 403 (Forbidden) on /3/find/tt0000001 after 2 attempts"


async def test_401_raises_credentials_error_and_stops_all_later_requests(
    mocked: aioresponses, client: TmdbClient
) -> None:
    mocked.get(ANY, status=401, payload={"status_code": 7}, repeat=True)  # whatever is asked
    with pytest.raises(CredentialsError, match="rejected"):
        await client.lookup("tt0000001")
    with pytest.raises(CredentialsError):
        await client.lookup("tt0000002")
    assert len(sent(mocked)) == 1  # no retry storm


def test_429_with_retry_after_pauses_the_whole_client_and_slows_its_rate() -> None:
    """On the virtual clock: the pauses are TMDB's, not the test's."""
    seen: list[float] = []

    def stamp(url: Any, **kwargs: Any) -> CallbackResult:
        seen.append(asyncio.get_running_loop().time())
        if len(seen) <= 2:
            return CallbackResult(status=429, headers={"Retry-After": "0.3"}, payload={})
        return CallbackResult(payload={"id": 603})

    async def scenario() -> None:
        with aioresponses() as mocked:
            mocked.get(DIRECT, callback=stamp, repeat=True)
            async with TmdbClient.open(options(rate=100.0, max_backoff=5.0)) as c:
                assert isinstance(await c.lookup("tt0000001"), Found)
                assert c.stats.throttled == 2
                # A lone 429 only pauses; the second within 5 s also cuts the pace by 30%.
                assert c.current_rate == 70.0

    run_virtual(scenario())
    assert seen[1] - seen[0] >= 0.3  # Retry-After honoured, never undercut
    assert seen[2] - seen[1] >= 0.3


async def test_429_without_retry_after_falls_back_to_backoff(mocked: aioresponses) -> None:
    direct_answers_404(mocked)
    mocked.get(FIND, status=429, payload={"status_code": 25})
    mocked.get(FIND, payload=EMPTY_FIND)
    async with TmdbClient.open(options()) as c:
        assert isinstance(await c.lookup("tt0000001"), NotFound)
        assert c.stats.throttled == 1
        assert c.stats.retries == 1


async def test_error_reasons_never_contain_the_query_string(mocked: aioresponses) -> None:
    for _ in range(2):
        mocked.get(DIRECT, exception=aiohttp.ClientConnectionError("boom"))
        mocked.get(FIND, exception=aiohttp.ClientConnectionError("boom"))
    creds = Credentials(api_key="SECRET-KEY-XYZ")
    async with TmdbClient.open(options(credentials=creds, max_attempts=2)) as c:
        with pytest.raises(LookupFailed) as caught:
            await c.lookup("tt0000001")
    assert (
        caught.value.reason == "ClientConnectionError: boom on /3/find/tt0000001 after 2 attempts"
    )
    assert "SECRET-KEY-XYZ" not in caught.value.reason
    assert "api_key" not in caught.value.reason


# --- nothing on one request kills the run -------------------------------------------------


async def test_a_malformed_http_response_is_retried_not_fatal(mocked: aioresponses) -> None:
    """aiohttp's ClientResponseError (a malformed answer) once, then TMDB answers."""
    malformed = response_error(f"{BASE}/3/movie/tt1", {}, "Bad status line 'HTTP/1.1 2x0'")
    mocked.get(DIRECT, exception=malformed)
    mocked.get(DIRECT, payload={"id": 603})
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

    direct_answers_404(mocked)
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


# --- cancellation is no failure ----------------------------------------------------------------


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


async def test_cancellation_during_a_retry_pause_propagates(
    mocked: aioresponses, monkeypatch: pytest.MonkeyPatch
) -> None:
    pausing = asyncio.Event()

    async def backoff(seconds: float) -> None:  # the wait before attempt 2: longer than the test
        pausing.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(breaker_module, "_pause", backoff)
    mocked.get(DIRECT, status=503, payload={}, repeat=True)
    async with TmdbClient.open(options(max_backoff=30.0)) as c:
        task = asyncio.create_task(c.lookup("tt0000001"))
        async with asyncio.timeout(10):
            await pausing.wait()
        assert c.stats.retries == 1  # counted, then it waits before attempt 2
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert c.stats.requests == 1
        assert c.stats.status == {503: 1}


@pytest.fixture
def virtual(monkeypatch: pytest.MonkeyPatch) -> VirtualTime:
    time = VirtualTime()
    monkeypatch.setattr(breaker_module, "_now", time.clock)
    monkeypatch.setattr(breaker_module, "_pause", time.pause)
    return time


# --- the strategies on their own -------------------------------------------------------------


def failed_attempt(number: int, error: Exception) -> RetryCallState:
    """tenacity's state after attempt ``number`` raised ``error``."""
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = number
    try:
        raise error
    except Exception:
        state.set_exception(sys.exc_info())  # type: ignore[arg-type]
    return state


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5])
def test_the_backoff_doubles_from_half_a_second_plus_up_to_a_second_of_jitter(
    attempt: int,
) -> None:
    base = 0.5 * 2 ** (attempt - 1)
    waits = [Backoff(cap=30.0).after(attempt) for _ in range(200)]
    assert all(base <= w <= base + 1 for w in waits)
    assert len(set(waits)) > 1  # jitter: the workers spread out
    assert all(w <= 3.0 for w in (Backoff(cap=3.0).after(attempt) for _ in range(200)))


@pytest.mark.parametrize(("retry_after", "floor"), [(2.0, 2.0), (100.0, 30.0)])
def test_a_retry_after_is_waited_never_undercut_capped_with_a_tenth_of_the_backoff(
    retry_after: float, floor: float
) -> None:
    wait = RetryAfterOrBackoff(Backoff(cap=30.0))
    state = failed_attempt(1, Retryable("HTTP 429", retry_after))
    waits = [wait(state) for _ in range(200)]
    assert all(floor + 0.05 <= w <= floor + 0.15 for w in waits)


@pytest.mark.parametrize(
    "error", [Retryable("HTTP 503"), Retryable("HTTP 429", 0.0), Retryable("timeout")]
)
def test_without_a_positive_retry_after_the_wait_is_the_backoff(error: Exception) -> None:
    wait = RetryAfterOrBackoff(Backoff(cap=30.0))
    waits = [wait(failed_attempt(3, error)) for _ in range(200)]
    assert all(2.0 <= w <= 3.0 for w in waits)


def retries(breaker: Breaker, max_attempts: int, counted: list[int]) -> Retries:
    return Retries(
        max_attempts=max_attempts,
        max_backoff=30.0,
        breaker=breaker,
        on_retry=lambda state: counted.append(state.attempt_number),
    )


def test_a_refused_attempt_ends_the_call_with_the_attempts_made(virtual: VirtualTime) -> None:
    answers: list[Exception] = [Retryable("HTTP 503"), Refused("HTTP 403")]
    counted: list[int] = []

    async def attempt(path: str, url: str) -> None:
        raise answers.pop(0)

    async def scenario() -> None:
        with pytest.raises(GaveUp) as caught:
            await retries(Breaker("https://tmdb"), 6, counted).call(attempt, "/p", "u")
        assert caught.value.refused
        assert caught.value.attempts == 2
        assert caught.value.last.reason == "HTTP 403"

    asyncio.run(scenario())
    assert counted == [1]  # one retry, before attempt 2


def test_connection_failures_while_tmdb_answered_since_are_not_held(
    virtual: VirtualTime,
) -> None:
    counted: list[int] = []

    async def attempt(path: str, url: str) -> None:
        raise Retryable("ClientConnectorError", connection=True)

    async def scenario() -> None:
        with pytest.raises(GaveUp) as caught:  # the breaker's streak is 0: TMDB answered
            await retries(Breaker("https://tmdb"), 3, counted).call(attempt, "/p", "u")
        assert not caught.value.refused
        assert caught.value.attempts == 3

    asyncio.run(scenario())
    assert counted == [1, 2]


def test_connection_failures_while_tmdb_answers_nobody_are_held_in_rounds_for_hold_seconds(
    virtual: VirtualTime,
) -> None:
    """Each round spends its attempts (backoff from attempt 1 again); the request gives up
    once HOLD_SECONDS have passed since the first round ended, every attempt counted."""
    counted: list[int] = []
    made: list[float] = []

    async def attempt(path: str, url: str) -> None:
        made.append(virtual.now)
        raise Retryable("ClientConnectorError", connection=True)

    async def scenario() -> None:
        breaker = Breaker("https://tmdb")
        breaker.failed(virtual.now, _refused())  # a streak: 1, no trip: a refusal
        with pytest.raises(GaveUp) as caught:
            await retries(breaker, 2, counted).call(attempt, "/p", "u")
        assert caught.value.attempts == len(made)
        assert breaker.tripped is None

    asyncio.run(scenario())
    rounds = len(made) // 2
    assert len(made) == 2 * rounds and rounds > 2  # held: more rounds than one
    assert counted == [1] * rounds  # one retry per round; the waits between rounds are not
    first_round_over = made[1]
    assert made[-1] - first_round_over >= HOLD_SECONDS - 1.5  # at most one wait short
    assert made[-3] - first_round_over < HOLD_SECONDS  # the last round began inside the hold
