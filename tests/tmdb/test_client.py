"""Looking titles up: what the client sends, the answers it gives, and the ways it takes.

Unit tests with aioresponses (no sockets; see conftest for the aiohttp 3.14 shim) and a few
promises checked against the fake TMDB on loopback (authentication, redacted reasons, lone
surrogates). What an answer means is ``test_answers.py``; retries are ``test_retry.py``; the
breaker is ``test_breaker.py``.

In ``full`` detail mode a lookup may take three ways (see :meth:`TmdbClient.lookup`): by the
TMDB id the id map knows, by IMDb id on ``/3/movie/tt…`` ("direct"), or ``/find`` then
details. Tests about the request machinery drive whichever way suits them; tests about the
``/find`` way let ``/3/movie/tt…`` answer 404 (:data:`DIRECT`) and count that request too.
The last sections specify the ways themselves, against :class:`Catalogue`, a tiny TMDB.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses
from yarl import URL

from tests.tmdb.test_answers import response_error
from tmdb_async.credentials import Credentials
from tmdb_async.errors import LookupFailed
from tmdb_async.lake.idmap import Title
from tmdb_async.tmdb.answers import Found, NotFound
from tmdb_async.tmdb.client import ClientOptions, TmdbClient
from tmdb_async.tmdb.route import MISSES_TO_STOP, WINDOW
from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig

BASE = "http://tmdb.test"
ANY = re.compile(r"^http://tmdb\.test/3/.*$")
FIND = re.compile(r"^http://tmdb\.test/3/find/tt\d+.*$")
DIRECT = re.compile(r"^http://tmdb\.test/3/movie/tt\d+.*$")  # a movie asked by IMDb id
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
NOT_FOUND = {
    "success": False,
    "status_code": 34,
    "status_message": "The resource you requested could not be found.",
}
TOKEN_CANARY = "canary-token-9d2e7f1a3b"
KEY_CANARY = "canary-key-4c8b2a6e0f"


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
    """(url, kwargs) of every request aioresponses saw: grouped by URL, in the order each URL
    was first asked (a URL asked twice appears twice, next to itself)."""
    return [(str(url), call.kwargs) for (_, url), calls in m.requests.items() for call in calls]


def query(url: str) -> dict[str, str]:
    return dict(URL(url).query)


def direct_answers_404(m: aioresponses) -> None:
    """``/3/movie/tt…`` knows no id: every lookup goes on to ``/find``."""
    m.get(DIRECT, status=404, payload=NOT_FOUND, repeat=True)


async def test_full_mode_finds_then_fetches_details_with_language_and_append(
    mocked: aioresponses,
) -> None:
    """When ``/3/movie/tt…`` answers 404: ``/find``, then the details by TMDB id."""
    direct_answers_404(mocked)
    mocked.get(FIND, payload=MOVIE_FIND)
    mocked.get(MOVIE, payload={"id": 603, "title": "Matrix", "imdb_id": "tt0133093"})
    async with TmdbClient.open(options(append_to_response=("credits", "keywords"))) as c:
        result = await c.lookup("tt0133093")
    assert result == Found(
        {"id": 603, "title": "Matrix", "imdb_id": "tt0133093", "media_type": "movie"}, "movie"
    )
    (direct_url, _), (find_url, _), (movie_url, _) = sent(mocked)
    assert direct_url.startswith(f"{BASE}/3/movie/tt0133093?")
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
        assert isinstance(await c.lookup("tt0000001"), Found)  # a movie: /3/movie/tt0000001
        assert fake.stats().status_counts == {200: 1}


async def test_tv_records_get_imdb_id_and_media_type_added(mocked: aioresponses) -> None:
    direct_answers_404(mocked)  # as TMDB does for a series
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
    direct_answers_404(mocked)  # a series, asked as a movie (never asked under kind=tv)
    mocked.get(FIND, payload=payload)
    async with TmdbClient.open(options(kind=kind)) as c:
        result = await c.lookup("tt0000001")
    assert isinstance(result, NotFound)
    assert kind in result.reason


async def test_empty_find_and_404_details_are_not_found_not_errors(
    mocked: aioresponses, client: TmdbClient
) -> None:
    direct_answers_404(mocked)
    mocked.get(FIND, payload=EMPTY_FIND)
    assert isinstance(await client.lookup("tt0000001"), NotFound)
    mocked.get(FIND, payload=MOVIE_FIND)
    mocked.get(MOVIE, status=404, payload={"status_code": 34})
    assert isinstance(await client.lookup("tt0000002"), NotFound)
    assert client.stats.retries == 0


async def test_api_key_goes_in_the_query_only_without_a_token(mocked: aioresponses) -> None:
    direct_answers_404(mocked)
    mocked.get(FIND, payload=EMPTY_FIND)
    async with TmdbClient.open(options(credentials=Credentials(api_key="k-1"))) as c:
        await c.lookup("tt0000001")
    urls = [url for url, _ in sent(mocked)]
    assert [URL(url).path for url in urls] == ["/3/movie/tt0000001", "/3/find/tt0000001"]
    for url in urls:
        assert query(url)["api_key"] == "k-1"
    assert "Authorization" not in c._session.headers


# --- failure reasons: one id fails, nothing leaks ---------------------------------------------


async def test_a_find_result_without_a_numeric_id_fails_only_that_id(
    mocked: aioresponses, client: TmdbClient
) -> None:
    direct_answers_404(mocked)
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
        response_error(url, headers, f"Bad status line 'HTTP/1.1 2x0' for {url}"),
        aiohttp.ClientConnectionError(f"boom on {url} with Authorization: Bearer {TOKEN_CANARY}"),
        RuntimeError(f"unexpected {headers!r} at {url}"),
    ]
    assert TOKEN_CANARY in repr(errors[0]) and KEY_CANARY in str(errors[0])  # the trap is real
    direct_answers_404(mocked)
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
    # tt0000007 (a series on the fake) gets malformed HTTP every time it is asked: on /find
    # after the direct 404, or (as the fake now has it) on /3/movie/tt0000007 itself.
    config = FakeTmdbConfig(token=KEY_CANARY, malformed_ids={"tt0000007"})
    creds = Credentials(api_key=KEY_CANARY)
    caplog.set_level(logging.DEBUG)
    async with FakeTmdb(config) as fake:
        async with TmdbClient.open(options(base_url=fake.url, credentials=creds)) as c:
            with pytest.raises(LookupFailed) as caught:
                await c.lookup("tt0000007")
            assert isinstance(await c.lookup("tt0000002"), Found)  # the run goes on
        assert fake.stats().faults["malformed"] == 6  # the direct path, then /find
    reason = caught.value.reason
    assert reason.startswith("ClientResponseError: 400, Bad status line")
    assert re.search(r" on /3/find/tt0000007 after 3 attempts$", reason)
    for text in (reason, repr(caught.value), json.dumps(c.stats.as_dict()), caplog.text):
        assert KEY_CANARY not in text
        assert "api_key" not in text


# --- records pass through untouched -----------------------------------------------------------


async def test_a_lone_surrogate_in_a_record_passes_through_untouched(
    mocked: aioresponses, client: TmdbClient
) -> None:
    raw = b'{"id": 603, "title": "Matrix", "overview": "half an emoji \\ud83d"}'
    mocked.get(DIRECT, status=200, body=raw, content_type="application/json")
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


# --- the ways to a record: a tiny TMDB ---------------------------------------------------------


class Catalogue:
    """A tiny TMDB behind aioresponses: what each IMDb id is, and every URL asked, in order.

    ``titles`` maps IMDb ids to ``(media_type, tmdb_id)``; any other id is unknown. It
    answers ``/find``, the details by TMDB id (``details``, or a default body naming the IMDb
    id) and, while ``imdb_on_movie``, a movie's IMDb id on ``/3/movie/tt…`` with the very body
    of ``/3/movie/{tmdb_id}``, as TMDB does. Everything else is TMDB's 404 (status_code 34).
    """

    def __init__(
        self,
        titles: dict[str, tuple[str, int]],
        *,
        imdb_on_movie: bool = True,
        refusal: int = 404,
        details: dict[tuple[str, int], dict[str, Any]] | None = None,
    ) -> None:
        self.titles = titles
        self.imdb_on_movie = imdb_on_movie
        self.refusal = refusal  # the status of /3/movie/tt… once TMDB no longer takes it
        self.details = {
            (media_type, tmdb_id): self.default_details(imdb_id, media_type, tmdb_id)
            for imdb_id, (media_type, tmdb_id) in titles.items()
        }
        self.details.update(details or {})
        self.asked: list[str] = []

    @staticmethod
    def default_details(imdb_id: str, media_type: str, tmdb_id: int) -> dict[str, Any]:
        if media_type == "movie":
            return {"id": tmdb_id, "title": f"Movie {tmdb_id}", "imdb_id": imdb_id, "runtime": 99}
        return {"id": tmdb_id, "name": f"Series {tmdb_id}", "number_of_seasons": 3}

    def mock(self, m: aioresponses) -> Catalogue:
        m.get(ANY, callback=self.answer, repeat=True)
        return self

    @property
    def paths(self) -> list[str]:
        return [URL(url).path for url in self.asked]

    @property
    def direct_calls(self) -> int:
        return sum(path.startswith("/3/movie/tt") for path in self.paths)

    def record(self, imdb_id: str) -> Found:
        """What a lookup of ``imdb_id`` must give: the details plus imdb_id and media_type."""
        media_type, tmdb_id = self.titles[imdb_id]
        body = {**self.details[(media_type, tmdb_id)], "imdb_id": imdb_id}
        return Found({**body, "media_type": media_type}, media_type)  # type: ignore[arg-type]

    def answer(self, url: URL, **kwargs: Any) -> CallbackResult:
        self.asked.append(str(url))
        _, _, what, key = url.path.split("/")
        title = self.titles.get(key)
        if what == "find":
            found = {**EMPTY_FIND}
            if title is not None:
                media_type, tmdb_id = title
                item = {"id": tmdb_id, "media_type": media_type, "popularity": 1.5}
                found[f"{media_type}_results"] = [item]
            return CallbackResult(payload=found)
        refused = what == "movie" and key.startswith("tt") and not self.imdb_on_movie
        if refused and self.refusal != 404:
            return CallbackResult(status=self.refusal, payload=INVALID_ID)
        if what == "movie" and self.imdb_on_movie and title is not None and title[0] == "movie":
            key = str(title[1])
        body = self.details.get((what, int(key))) if key.isdigit() else None
        if body is None:
            return CallbackResult(status=404, payload=NOT_FOUND)
        return CallbackResult(payload=body)


async def lookups(
    catalogue: Catalogue, client: TmdbClient, ids: list[str]
) -> tuple[list[Found | NotFound], list[int]]:
    """Each id looked up in turn: the results, and how many requests each one cost."""
    results, costs = [], []
    for imdb_id in ids:
        before = len(catalogue.asked)
        results.append(await client.lookup(imdb_id))
        costs.append(len(catalogue.asked) - before)
    return results, costs


INVALID_ID = {"success": False, "status_code": 6, "status_message": "Invalid id."}


class Known(dict[str, Title]):
    """The id map as the client sees it: titles by IMDb id, and the ones it forgot."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.forgotten: list[str] = []

    def forget(self, imdb_id: str) -> None:
        self.forgotten.append(imdb_id)


def sent_paths(m: aioresponses) -> list[str]:
    return [URL(url).path for url, _ in sent(m)]


MATRIX = {"tt0133093": ("movie", 603)}
GOT = {"tt0944947": ("tv", 1399)}


# --- a movie by its IMDb id: one request -------------------------------------------------------


async def test_a_movie_costs_one_request_by_its_imdb_id_with_language_and_append(
    mocked: aioresponses,
) -> None:
    catalogue = Catalogue(MATRIX).mock(mocked)
    append = options(append_to_response=("credits", "keywords"))
    async with TmdbClient.open(append) as c:
        direct = await c.lookup("tt0133093")
        assert (c.stats.requests, c.stats.direct, c.stats.direct_missed) == (1, 1, 0)
    (url,) = catalogue.asked
    assert url.startswith(f"{BASE}/3/movie/tt0133093?")
    assert query(url) == {"language": "pt-BR", "append_to_response": "credits,keywords"}
    assert direct == catalogue.record("tt0133093")
    # The same payload by /find then details (TMDB no longer answering IMDb ids on /movie):
    catalogue.imdb_on_movie = False
    async with TmdbClient.open(append) as c:
        assert await c.lookup("tt0133093") == direct
    assert catalogue.paths[1:] == ["/3/movie/tt0133093", "/3/find/tt0133093", "/3/movie/603"]
    assert query(catalogue.asked[-1]) == query(url)


async def test_a_series_is_found_by_find_after_the_direct_404(mocked: aioresponses) -> None:
    catalogue = Catalogue(GOT).mock(mocked)
    async with TmdbClient.open(options()) as c:
        result = await c.lookup("tt0944947")
        assert c.stats.direct == 1
        assert c.stats.direct_missed == 0  # a series is no miss of the direct way
    assert catalogue.paths == ["/3/movie/tt0944947", "/3/find/tt0944947", "/3/tv/1399"]
    assert result == catalogue.record("tt0944947")
    assert result.media_type == "tv"


async def test_a_movie_the_direct_way_misses_is_found_by_find(mocked: aioresponses) -> None:
    catalogue = Catalogue(MATRIX, imdb_on_movie=False).mock(mocked)
    async with TmdbClient.open(options()) as c:
        result = await c.lookup("tt0133093")
        assert (c.stats.direct, c.stats.direct_missed) == (1, 1)
    assert catalogue.paths == ["/3/movie/tt0133093", "/3/find/tt0133093", "/3/movie/603"]
    assert result == catalogue.record("tt0133093")


async def test_an_unknown_id_is_not_found_after_the_direct_404_and_an_empty_find(
    mocked: aioresponses,
) -> None:
    catalogue = Catalogue(MATRIX).mock(mocked)
    async with TmdbClient.open(options()) as c:
        result = await c.lookup("tt0000017")
        assert c.stats.retries == 0
    assert isinstance(result, NotFound)
    assert catalogue.paths == ["/3/movie/tt0000017", "/3/find/tt0000017"]


# --- which way first: the recent titles decide -------------------------------------------------


async def test_a_run_of_series_goes_find_first_and_movies_bring_direct_calls_back(
    mocked: aioresponses,
) -> None:
    shows = {f"tt{1_000_000 + n}": ("tv", n) for n in range(1, 61)}
    movies = {f"tt{2_000_000 + n}": ("movie", 5000 + n) for n in range(1, 61)}
    catalogue = Catalogue({**shows, **movies}).mock(mocked)
    async with TmdbClient.open(options()) as c:
        results, costs = await lookups(catalogue, c, list(shows))
        assert results == [catalogue.record(i) for i in shows]
        direct = catalogue.direct_calls
        # A fresh run asks directly; the first series' answers turn it to /find first, far
        # sooner than the window (50) or the 60 series.
        assert 1 <= direct <= 3
        assert costs == [3] * direct + [2] * (len(shows) - direct)  # then /find, /3/tv/{n}
        assert not c._router.stopped  # a series' direct 404 is no sign of a dead direct way

        results, costs = await lookups(catalogue, c, list(movies))
        assert results == [catalogue.record(i) for i in movies]
    # Movies come back: /find first until they are half the recent titles again, then
    # one request each.
    find_first = costs.count(2)
    assert 0 < find_first <= WINDOW // 2
    assert costs == [2] * find_first + [1] * (len(movies) - find_first)
    assert catalogue.direct_calls == direct + len(movies) - find_first


async def test_movies_among_fewer_series_keep_asking_directly(mocked: aioresponses) -> None:
    """Direct-first costs 1 per movie and 3 per series: cheaper while movies outnumber."""
    ids = [f"tt{3_000_000 + n}" for n in range(1, 61)]
    titles = {i: ("tv" if n % 3 == 2 else "movie", n + 1) for n, i in enumerate(ids)}
    catalogue = Catalogue(titles).mock(mocked)
    async with TmdbClient.open(options()) as c:
        results, costs = await lookups(catalogue, c, ids)
        assert results == [catalogue.record(i) for i in ids]
        assert costs == [3 if titles[i][0] == "tv" else 1 for i in ids]
        assert c.stats.direct == len(ids)
        assert c.stats.direct_missed == 0
        assert not c._router.stopped


async def test_kind_tv_never_asks_for_a_movie_by_imdb_id(mocked: aioresponses) -> None:
    movies = {f"tt{4_000_000 + n}": ("movie", n) for n in range(1, 11)}
    catalogue = Catalogue({**movies, **GOT}).mock(mocked)
    async with TmdbClient.open(options(kind="tv")) as c:
        results, costs = await lookups(catalogue, c, [*movies, "tt0944947", "tt0000017"])
        assert c.stats.direct == 0
    assert not any(path.startswith("/3/movie/") for path in catalogue.paths)
    assert all(isinstance(r, NotFound) for r in results[:10])  # movies: /find only
    assert results[10] == catalogue.record("tt0944947")
    assert isinstance(results[11], NotFound)
    assert costs == [1] * 10 + [2, 1]


@pytest.mark.parametrize("refusal", [404, 400, 422])
async def test_when_tmdb_stops_answering_imdb_ids_on_movie_the_run_goes_find_first(
    mocked: aioresponses, caplog: pytest.LogCaptureFixture, refusal: int
) -> None:
    """Whatever status TMDB refuses IMDb ids with (a 404, or another 4xx), no movie is lost
    and the direct path is abandoned after a few misses."""
    movies = {f"tt{5_000_000 + n}": ("movie", n) for n in range(1, 61)}
    catalogue = Catalogue(movies, imdb_on_movie=False, refusal=refusal).mock(mocked)
    caplog.set_level(logging.WARNING)
    async with TmdbClient.open(options()) as c:
        results, costs = await lookups(catalogue, c, list(movies))
        assert c._router.stopped
        assert c.stats.direct == c.stats.direct_missed == catalogue.direct_calls
    assert results == [catalogue.record(i) for i in movies]  # no movie lost on the way
    direct = catalogue.direct_calls
    assert direct <= MISSES_TO_STOP == 5
    # A few movies at 3 requests (the direct 404, /find, details), then never again: 2 each.
    assert costs == [3] * direct + [2] * (len(movies) - direct)
    assert sum(costs) <= 2 * len(movies) + 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per run
    assert "going back to /find first" in warnings[0].getMessage()


# --- the id map: a known title in one request by its TMDB id ---------------------------------


@pytest.mark.parametrize(
    ("titles", "imdb_id"), [(MATRIX, "tt0133093"), (GOT, "tt0944947")], ids=["movie", "series"]
)
async def test_a_title_the_id_map_knows_costs_one_request_by_its_tmdb_id(
    mocked: aioresponses, titles: dict[str, tuple[str, int]], imdb_id: str
) -> None:
    catalogue = Catalogue(titles).mock(mocked)
    media_type, tmdb_id = titles[imdb_id]
    known = Known({imdb_id: Title(media_type, tmdb_id)})  # type: ignore[arg-type]
    async with TmdbClient.open(options(append_to_response=("credits",)), known) as c:
        result = await c.lookup(imdb_id)
        assert (c.stats.by_map, c.stats.map_stale, c.stats.direct) == (1, 0, 0)
    (url,) = catalogue.asked
    assert url.startswith(f"{BASE}/3/{media_type}/{tmdb_id}?")  # a series too
    assert query(url) == {"language": "pt-BR", "append_to_response": "credits"}
    assert result == catalogue.record(imdb_id)


@pytest.mark.parametrize(
    ("kind", "titles", "imdb_id", "paths"),
    [
        ("movie", GOT, "tt0944947", ["/3/movie/tt0944947", "/3/find/tt0944947"]),
        ("tv", MATRIX, "tt0133093", ["/3/find/tt0133093"]),
    ],
    ids=["series-in-a-movie-run", "movie-in-a-tv-run"],
)
async def test_a_mapped_title_of_a_kind_the_run_excludes_is_not_fetched(
    mocked: aioresponses,
    kind: str,
    titles: dict[str, tuple[str, int]],
    imdb_id: str,
    paths: list[str],
) -> None:
    catalogue = Catalogue(titles).mock(mocked)
    known = Known({imdb_id: Title(*titles[imdb_id])})  # type: ignore[arg-type]
    async with TmdbClient.open(options(kind=kind), known) as c:
        result = await c.lookup(imdb_id)
        assert (c.stats.by_map, c.stats.map_stale) == (0, 0)
    assert isinstance(result, NotFound)
    assert f"no {kind} result" in result.reason
    assert catalogue.paths == paths


STALE_CATALOGUE = {
    **MATRIX,
    "tt0234215": ("movie", 604),  # The Matrix Reloaded
    **GOT,
    "tt0475784": ("tv", 1400),  # Westworld
}
WESTWORLD = {"id": 1400, "name": "Westworld", "external_ids": {"imdb_id": "tt0475784"}}


@pytest.mark.parametrize(
    ("imdb_id", "stale", "paths"),
    [
        # The TMDB id is gone (404): the movie is asked by its IMDb id.
        ("tt0133093", Title("movie", 999), ["/3/movie/999", "/3/movie/tt0133093"]),
        # The TMDB id now names another IMDb id (TMDB merged or moved it).
        ("tt0133093", Title("movie", 604), ["/3/movie/604", "/3/movie/tt0133093"]),
        # A series: the direct 404, /find, details.
        (
            "tt0944947",
            Title("tv", 9999),
            ["/3/tv/9999", "/3/movie/tt0944947", "/3/find/tt0944947", "/3/tv/1399"],
        ),
        (  # another series, by the external_ids the details carry
            "tt0944947",
            Title("tv", 1400),
            ["/3/tv/1400", "/3/movie/tt0944947", "/3/find/tt0944947", "/3/tv/1399"],
        ),
    ],
    ids=["movie-gone", "movie-moved", "series-gone", "series-moved"],
)
async def test_a_stale_id_map_entry_falls_back_and_the_record_is_still_right(
    mocked: aioresponses, imdb_id: str, stale: Title, paths: list[str]
) -> None:
    catalogue = Catalogue(STALE_CATALOGUE, details={("tv", 1400): WESTWORLD}).mock(mocked)
    known = Known({imdb_id: stale})
    async with TmdbClient.open(options(), known) as c:
        result = await c.lookup(imdb_id)
        assert (c.stats.by_map, c.stats.map_stale) == (0, 1)
    assert known.forgotten == [imdb_id]  # for later runs; learnt again from the new record
    assert catalogue.paths == paths
    assert result == catalogue.record(imdb_id)
    assert isinstance(result, Found)
    assert "tmdb_imdb_id" not in result.record


async def test_find_mode_ignores_the_id_map(mocked: aioresponses) -> None:
    catalogue = Catalogue(MATRIX).mock(mocked)
    known = Known({"tt0133093": Title("movie", 603)})
    async with TmdbClient.open(options(detail="find"), known) as c:
        result = await c.lookup("tt0133093")
        assert (c.stats.by_map, c.stats.map_stale, c.stats.direct) == (0, 0, 0)
    assert catalogue.paths == ["/3/find/tt0133093"]
    assert result == Found(
        {"id": 603, "media_type": "movie", "popularity": 1.5, "imdb_id": "tt0133093"}, "movie"
    )


# --- one record, whichever way fetched it ------------------------------------------------------

CREDITS = {"cast": [{"id": 6384, "name": "Keanu Reeves"}], "crew": []}


@pytest.mark.parametrize(
    ("payload", "record"),
    [
        (
            {"id": 603, "title": "Matrix", "imdb_id": "tt0133093"},
            {"id": 603, "title": "Matrix", "imdb_id": "tt0133093", "media_type": "movie"},
        ),
        (  # TMDB's own null is kept beside the id asked for
            {"id": 603, "title": "Matrix", "imdb_id": None},
            {
                "id": 603,
                "title": "Matrix",
                "imdb_id": "tt0133093",
                "tmdb_imdb_id": None,
                "media_type": "movie",
            },
        ),
        (
            {"id": 603, "title": "Matrix"},
            {"id": 603, "title": "Matrix", "imdb_id": "tt0133093", "media_type": "movie"},
        ),
        (
            {"id": 603, "imdb_id": "tt0133093", "credits": CREDITS},
            {"id": 603, "imdb_id": "tt0133093", "credits": CREDITS, "media_type": "movie"},
        ),
    ],
    ids=["plain", "null-imdb-id", "no-imdb-id", "appended"],
)
async def test_a_movie_record_is_the_same_by_the_map_directly_and_by_find(
    mocked: aioresponses, payload: dict[str, Any], record: dict[str, Any]
) -> None:
    catalogue = Catalogue(MATRIX, details={("movie", 603): payload}).mock(mocked)
    found: dict[str, Found | NotFound] = {}
    async with TmdbClient.open(options(), Known({"tt0133093": Title("movie", 603)})) as c:
        found["map"] = await c.lookup("tt0133093")
    async with TmdbClient.open(options()) as c:
        found["direct"] = await c.lookup("tt0133093")
    catalogue.imdb_on_movie = False
    async with TmdbClient.open(options()) as c:
        found["find"] = await c.lookup("tt0133093")
    # A movie whose details do not name the IMDb id asked for cannot confirm a map entry:
    # the map's way costs one more request, the record is the same.
    unconfirmed = ["/3/movie/tt0133093"] if payload.get("imdb_id") != "tt0133093" else []
    assert catalogue.paths == [
        "/3/movie/603",  # map
        *unconfirmed,
        "/3/movie/tt0133093",  # direct
        "/3/movie/tt0133093",  # find: after the direct 404
        "/3/find/tt0133093",
        "/3/movie/603",
    ]
    assert found == dict.fromkeys(("map", "direct", "find"), Found(record, "movie"))


async def test_a_series_record_is_the_same_by_the_map_and_by_find(mocked: aioresponses) -> None:
    payload = {"id": 1399, "name": "GoT", "external_ids": {"imdb_id": "tt0944947"}}
    catalogue = Catalogue(GOT, details={("tv", 1399): payload}).mock(mocked)
    found: dict[str, Found | NotFound] = {}
    async with TmdbClient.open(options(), Known({"tt0944947": Title("tv", 1399)})) as c:
        found["map"] = await c.lookup("tt0944947")
    async with TmdbClient.open(options()) as c:
        found["find"] = await c.lookup("tt0944947")
    assert catalogue.paths == [
        "/3/tv/1399",
        "/3/movie/tt0944947",
        "/3/find/tt0944947",
        "/3/tv/1399",
    ]
    record = {**payload, "imdb_id": "tt0944947", "media_type": "tv"}
    assert found == dict.fromkeys(("map", "find"), Found(record, "tv"))


async def test_a_mapped_title_tmdb_refuses_falls_back_instead_of_failing(
    mocked: aioresponses,
) -> None:
    catalogue = Catalogue(MATRIX).mock(mocked)
    mocked.get(re.compile(r"^http://tmdb\.test/3/movie/999\b.*$"), status=400, payload=INVALID_ID)
    known = Known({"tt0133093": Title("movie", 999)})
    async with TmdbClient.open(options(), known) as c:
        result = await c.lookup("tt0133093")
        assert (c.stats.by_map, c.stats.map_stale, c.stats.direct) == (0, 1, 1)
    assert result == catalogue.record("tt0133093")


async def test_a_direct_path_broken_with_5xx_alone_falls_back_and_is_abandoned(
    mocked: aioresponses,
) -> None:
    """TMDB could break the undocumented IMDb-id path alone, with 5xx: spent retries there
    fall back to /find, which finds the movies (misses), and the run stops asking directly.
    On the documented path by TMDB id, spent retries fail the id (an outage)."""
    movies = {f"tt{5_000_000 + n}": ("movie", n) for n in range(1, 11)}
    catalogue = Catalogue(movies)
    mocked.get(DIRECT, status=503, repeat=True)
    catalogue.mock(mocked)
    async with TmdbClient.open(options()) as c:
        results, _ = await lookups(catalogue, c, list(movies))
        assert c._router.stopped
    assert results == [catalogue.record(i) for i in movies]
    direct = [p for p in sent_paths(mocked) if p.startswith("/3/movie/tt")]
    assert len(direct) == MISSES_TO_STOP * 3  # 3 attempts each, then never again


async def test_an_outage_on_the_tmdb_id_path_fails_the_id(mocked: aioresponses) -> None:
    mocked.get(re.compile(r"^http://tmdb\.test/3/movie/603\b.*$"), status=503, repeat=True)
    async with TmdbClient.open(options(), Known({"tt0133093": Title("movie", 603)})) as c:
        with pytest.raises(LookupFailed, match=r"HTTP 503 on /3/movie/603 after 3 attempts"):
            await c.lookup("tt0133093")
    assert all("/3/find/" not in url and "/movie/tt" not in url for url, _ in sent(mocked))


@pytest.mark.parametrize(("kind", "used"), [("tv", True), ("auto", False)])
async def test_a_series_a_tv_run_learned_serves_tv_runs_only(
    mocked: aioresponses, kind: str, used: bool
) -> None:
    """One IMDb id can be a movie and a series on TMDB; --kind auto takes the movie. A series
    learned by a --kind tv run never looked for the movie, so auto does not trust it."""
    both = {"tt0944947": ("tv", 1399)}
    catalogue = Catalogue(both).mock(mocked)
    known = Known({"tt0944947": Title("tv", 1399, narrow=True)})
    async with TmdbClient.open(options(kind=kind), known) as c:
        result = await c.lookup("tt0944947")
        assert c.stats.by_map == int(used)
    assert result == catalogue.record("tt0944947")
    assert (catalogue.paths[0] == "/3/tv/1399") == used
