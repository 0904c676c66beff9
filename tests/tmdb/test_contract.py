"""Real TMDB shapes: the fake answers what TMDB's own OpenAPI description says it answers.

``/work/shared/reference/tmdb-openapi.json`` (copied from TMDB's developer site) is TMDB's
OpenAPI 3.1 description of v3 with its example answers. Every endpoint and parameter the
client uses is asked of the fake here, and each answer is validated against that
endpoint's schema (JSON Schema 2020-12, through openapi-schema-validator's
``OAS31Validator``). Some of TMDB's own examples break its schema; the fake follows the
examples, so exactly those deviations (:data:`DEVIATIONS`, each documented with its source in
docs/tmdb-api.md) are allowed, and only where TMDB's examples show them.

Also: an empty change list in either form TMDB uses is an empty day, and a change-list item
without an integer id is counted (``odd_items``), never dropped silently.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openapi_schema_validator import OAS31Validator
from yarl import URL

from tests.conftest import ROOT, TOKEN
from tests.support.lake import read_local
from tmdb_async.jobs.refresh import Window, read_piece, refresh
from tmdb_devtools.csvgen import title_ids
from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig

OPENAPI = Path("/work/shared/reference/tmdb-openapi.json")
DOCS = ROOT / "docs" / "tmdb-api.md"
LANGUAGE = "pt-BR"
APPENDED = "credits,keywords,external_ids"  # the default --append-to-response
DAY = dt.date(2026, 11, 20)

#: Where TMDB's own example answers break its own schema: (endpoint, schema path of the
#: failing keyword, JSON type of the value). docs/tmdb-api.md, "Where TMDB's examples break
#: its schema", names the example of each (its JSON pointer in the OpenAPI file).
DEVIATIONS: frozenset[tuple[str, str, str]] = frozenset(
    {
        ("/3/movie/changes", "properties/results/items/properties/adult/type", "null"),
        ("/3/tv/changes", "properties/results/items/properties/adult/type", "null"),
        (
            "/3/movie/{movie_id}",
            "properties/production_companies/items/properties/logo_path/type",
            "null",
        ),
        (
            "/3/tv/{series_id}",
            "properties/production_companies/items/properties/logo_path/type",
            "null",
        ),
        ("/3/tv/{series_id}", "properties/seasons/items/properties/vote_average/type", "number"),
    }
)

#: TMDB's error body (docs/tmdb-api.md, "Errors"); the OpenAPI file describes 200s only.
ERROR_BODY = {
    "type": "object",
    "required": ["success", "status_code", "status_message"],
    "properties": {
        "success": {"const": False},
        "status_code": {"type": "integer"},
        "status_message": {"type": "string"},
    },
}

ENDPOINTS = (
    "/3/find/{external_id}",
    "/3/movie/{movie_id}",
    "/3/tv/{series_id}",
    "/3/movie/changes",
    "/3/tv/changes",
)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    if not OPENAPI.exists():
        pytest.skip(f"{OPENAPI} (TMDB's OpenAPI description) is not on this machine")
    return json.loads(OPENAPI.read_text())


def _operation(openapi: dict[str, Any], endpoint: str) -> dict[str, Any]:
    return openapi["paths"][endpoint]["get"]


def _content(openapi: dict[str, Any], endpoint: str) -> dict[str, Any]:
    return _operation(openapi, endpoint)["responses"]["200"]["content"]["application/json"]


def _breaches(openapi: dict[str, Any], endpoint: str, answer: Any) -> Iterator[tuple[str, ...]]:
    """(endpoint, schema path, JSON type, where in the answer) of each schema error."""
    validator = OAS31Validator(_content(openapi, endpoint)["schema"])
    for error in validator.iter_errors(answer):
        yield (
            endpoint,
            "/".join(map(str, error.absolute_schema_path)),
            _json_type(error.instance),
            "/".join(map(str, error.absolute_path)),
        )


def _example(openapi: dict[str, Any], endpoint: str) -> tuple[str, Any]:
    """The JSON pointer and value of the endpoint's one example answer."""
    (name, example), *_ = _content(openapi, endpoint)["examples"].items()
    value = example["value"]
    escaped = endpoint.replace("~", "~0").replace("/", "~1")
    pointer = f"/paths/{escaped}/get/responses/200/content/application~1json/examples/{name}/value"
    return pointer, json.loads(value) if isinstance(value, str) else value


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_the_allowed_deviations_are_exactly_those_of_tmdbs_own_examples(
    openapi: dict[str, Any], endpoint: str
) -> None:
    """The list cannot drift: each deviation is in TMDB's example of its endpoint, the
    example breaks its schema nowhere else, and docs/tmdb-api.md cites the example."""
    pointer, example = _example(openapi, endpoint)
    found = {breach[:3] for breach in _breaches(openapi, endpoint, example)}
    assert found == {d for d in DEVIATIONS if d[0] == endpoint}
    if found:
        assert pointer in DOCS.read_text(), f"docs/tmdb-api.md does not cite {pointer}"


#: The query parameters the client sends, per endpoint (the ones
#: :func:`test_every_answer_the_client_reads_follows_tmdbs_schemas` asks the fake with);
#: :func:`test_the_client_asks_only_the_endpoints_and_parameters_checked_here` holds the
#: client to exactly these.
SENT: dict[str, frozenset[str]] = {
    "/3/find/{external_id}": frozenset({"external_source", "language"}),
    "/3/movie/{movie_id}": frozenset({"language", "append_to_response"}),
    "/3/tv/{series_id}": frozenset({"language", "append_to_response"}),
    "/3/movie/changes": frozenset({"start_date", "end_date", "page"}),
    "/3/tv/changes": frozenset({"start_date", "end_date", "page"}),
}
#: TMDB's other way to authenticate (docs/tmdb-api.md, "Authentication"): the OpenAPI file
#: declares the Bearer header only, so this query parameter is allowed on every endpoint.
AUTH_PARAMETER = "api_key"


def test_the_parameters_the_client_sends_are_tmdbs(openapi: dict[str, Any]) -> None:
    """Each query parameter the client sends is one the endpoint declares."""
    for endpoint, names in SENT.items():
        declared = {p["name"] for p in _operation(openapi, endpoint)["parameters"]}
        assert names <= declared, endpoint


def _endpoint(path: str) -> str:
    """The OpenAPI path of a request path the client sent (one of :data:`ENDPOINTS`)."""
    parts = path.split("/")
    if len(parts) == 4 and parts[2] == "find":
        return "/3/find/{external_id}"
    if len(parts) == 4 and parts[3] == "changes":
        return f"/3/{parts[2]}/changes"
    if len(parts) == 4 and parts[2] in ("movie", "tv"):
        return "/3/movie/{movie_id}" if parts[2] == "movie" else "/3/tv/{series_id}"
    return path


@pytest.mark.parametrize("auth", ["bearer", "api_key"])
async def test_the_client_asks_only_the_endpoints_and_parameters_checked_here(
    monkeypatch: pytest.MonkeyPatch, auth: str
) -> None:
    """The client itself, not a list kept by hand: every request it sends on every way it
    has (a movie by its IMDb id, /find then a series' details, a title by its TMDB id, find
    detail, no append, both change lists), as the fake saw it, names one of
    :data:`ENDPOINTS` with exactly the parameters of :data:`SENT` (some may be left out),
    and the API key only when it authenticates with one, never beside the Bearer token."""
    from tmdb_async.credentials import Credentials
    from tmdb_async.tmdb.client import ClientOptions, TmdbClient

    sent: dict[str, set[str]] = {}
    keys: list[bool] = []
    get = TmdbClient._get

    async def recording(self: TmdbClient, path: str, url: str) -> Any:
        parsed = URL(url)
        keys.append(AUTH_PARAMETER in parsed.query)
        names = set(parsed.query) - {AUTH_PARAMETER}
        sent.setdefault(_endpoint(parsed.path), set()).update(names)
        return await get(self, path, url)

    monkeypatch.setattr(TmdbClient, "_get", recording)
    credentials = (
        Credentials(read_access_token=TOKEN) if auth == "bearer" else Credentials(api_key=TOKEN)
    )
    movie_imdb, tv_imdb = title_ids(1, "movie")[0], title_ids(1, "tv")[0]
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN, today=DAY)) as fake:
        options = ClientOptions(
            base_url=fake.url,
            credentials=credentials,
            append_to_response=tuple(APPENDED.split(",")),
            rate=1000.0,
        )
        async with TmdbClient.open(options) as tmdb:
            movie = await tmdb.lookup(movie_imdb)
            series = await tmdb.lookup(tv_imdb)
            assert getattr(movie, "media_type", None) == "movie"
            assert getattr(series, "media_type", None) == "tv"
            for way in (
                tmdb.reshaped(kind="auto", detail="find", language=LANGUAGE, append_to_response=()),
                tmdb.reshaped(kind="tv", detail="full", language=LANGUAGE, append_to_response=()),
            ):
                assert await way.lookup(tv_imdb) is not None
            for kind in ("movie", "tv"):
                assert (await tmdb.changes(kind, DAY, DAY, 1))["page"] == 1
    assert set(sent) == set(ENDPOINTS)
    for endpoint, names in sent.items():
        assert names == SENT[endpoint], endpoint
    assert keys and all(key == (auth == "api_key") for key in keys)


@pytest.fixture
async def session() -> AsyncIterator[tuple[aiohttp.ClientSession, FakeTmdb]]:
    async with (
        FakeTmdb(FakeTmdbConfig(token=TOKEN, today=DAY)) as fake,
        aiohttp.ClientSession(fake.url, headers={"Authorization": f"Bearer {TOKEN}"}) as session,
    ):
        yield session, fake


async def _get(session: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    async with session.get(path) as response:
        return response.status, await response.json()


async def test_every_answer_the_client_reads_follows_tmdbs_schemas(
    openapi: dict[str, Any], session: tuple[aiohttp.ClientSession, FakeTmdb]
) -> None:
    """Each endpoint, with each parameter the client sends (language, append_to_response,
    IMDb ids on /3/movie, the change lists' dates and pages, an empty page), answered by the
    fake, breaks TMDB's schema only where TMDB's own examples do."""
    client, _ = session
    movie_imdb, tv_imdb = title_ids(1, "movie")[0], title_ids(1, "tv")[0]
    find = f"external_source=imdb_id&language={LANGUAGE}"
    details = f"language={LANGUAGE}"
    appended = f"{details}&append_to_response={APPENDED}"
    answers: list[tuple[str, str]] = []
    status, found_movie = await _get(client, f"/3/find/{movie_imdb}?{find}")
    movie_id = found_movie["movie_results"][0]["id"]
    status, found_tv = await _get(client, f"/3/find/{tv_imdb}?{find}")
    tv_id = found_tv["tv_results"][0]["id"]
    answers += [
        ("/3/find/{external_id}", f"/3/find/{movie_imdb}?{find}"),
        ("/3/find/{external_id}", f"/3/find/{tv_imdb}?{find}"),
        ("/3/find/{external_id}", f"/3/find/tt0000000?{find}"),  # nothing found: 200
        ("/3/movie/{movie_id}", f"/3/movie/{movie_id}?{details}"),
        ("/3/movie/{movie_id}", f"/3/movie/{movie_id}?{appended}"),
        ("/3/movie/{movie_id}", f"/3/movie/{movie_imdb}?{appended}"),  # by IMDb id
        ("/3/tv/{series_id}", f"/3/tv/{tv_id}?{details}"),
        ("/3/tv/{series_id}", f"/3/tv/{tv_id}?{appended}"),
    ]
    for kind in ("movie", "tv"):
        window = f"start_date={DAY - dt.timedelta(days=13)}&end_date={DAY}"
        answers += [
            (f"/3/{kind}/changes", f"/3/{kind}/changes?{window}&page=1"),
            (f"/3/{kind}/changes", f"/3/{kind}/changes?{window}&page=2"),
            (f"/3/{kind}/changes", f"/3/{kind}/changes?{window}&page=500"),  # past the end
        ]
    breaches: set[tuple[str, ...]] = set()
    for endpoint, path in answers:
        status, body = await _get(client, path)
        assert status == 200, path
        breaches |= {b[:3] for b in _breaches(openapi, endpoint, body)}
    assert breaches <= DEVIATIONS
    # The fake follows TMDB's example where it breaks the schema: nulls among the adults.
    assert {d for d in breaches if d[0].endswith("/changes")} == {
        d for d in DEVIATIONS if d[0].endswith("/changes")
    }


async def test_error_answers_have_tmdbs_error_body(
    session: tuple[aiohttp.ClientSession, FakeTmdb],
) -> None:
    from jsonschema import Draft202012Validator

    client, fake = session
    for path, status in (
        ("/3/movie/999999999?language=pt-BR", 404),
        ("/3/movie/changes?start_date=2026-01-01&end_date=2026-02-01", 422),
    ):
        answered, body = await _get(client, path)
        assert answered == status
        Draft202012Validator(ERROR_BODY).validate(body)
    async with aiohttp.ClientSession(fake.url) as anonymous:
        answered, body = await _get(anonymous, "/3/movie/1")
        assert answered == 401
        Draft202012Validator(ERROR_BODY).validate(body)


# --- the refresh reads TMDB's shapes -------------------------------------------------------


class _Lists:
    """A client whose change lists answer what a test says."""

    def __init__(self, *pages: dict[str, Any]) -> None:
        self.pages = pages

    async def changes(self, kind: str, start: dt.date, end: dt.date, page: int) -> Any:
        return self.pages[page - 1]


@pytest.mark.parametrize(
    "page",
    [
        {"page": 1, "results": [], "total_pages": 0, "total_results": 0},  # TMDB's other lists
        {"page": 1, "results": [], "total_pages": 1, "total_results": 0},
    ],
)
async def test_an_empty_change_list_in_either_form_is_an_empty_day(page: dict[str, Any]) -> None:
    piece = await read_piece(_Lists(page), "movie", Window(DAY, DAY))  # type: ignore[arg-type]
    assert piece.ids == set() and piece.odd_items == 0


async def test_change_list_items_without_an_integer_id_are_counted_not_dropped() -> None:
    first = {
        "page": 1,
        "results": [{"id": 5, "adult": None}, {"id": None}, {"adult": False}, "x", {"id": "7"}],
        "total_pages": 2,
        "total_results": 7,
    }
    second = {"page": 2, "results": [{"id": 6, "adult": False}, {"id": True}], "total_pages": 2}
    piece = await read_piece(_Lists(first, second), "tv", Window(DAY, DAY))  # type: ignore[arg-type]
    assert piece.ids == {5, 6}
    assert piece.odd_items == 5


async def test_a_refresh_reports_odd_change_list_items_in_its_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole refresh: a day whose list holds odd items counts them (``odd_items``, also in
    --json) and still moves on; titles are refreshed as usual."""
    from tests.jobs.test_refresh import config, ingest, options
    from tmdb_async.tmdb.client import TmdbClient

    ids = [f"tt{n:07d}" for n in range(1, 41)]
    lake = tmp_path / "lake"
    async with FakeTmdb(config()) as fake:
        await ingest(tmp_path, lake, fake.url, ids)
        original = TmdbClient.changes

        async def with_odd_items(self: Any, *args: Any) -> dict[str, Any]:
            page = dict(await original(self, *args))
            page["results"] = [*page["results"], {"id": None, "adult": None}]
            return page

        monkeypatch.setattr(TmdbClient, "changes", with_odd_items)
        summary = await refresh(options(lake, fake.url))
    assert summary.status == "ok"
    pages = summary.list_pages
    assert summary.odd_items == pages >= 2  # one per page read, both kinds
    assert summary.as_dict()["odd_items"] == summary.odd_items
    assert summary.refreshed_through == (DAY - dt.timedelta(days=1)).isoformat()
    assert read_local(lake / f"Raw/TMDB/JSON/{DAY:%Y/%m/%d}").records
