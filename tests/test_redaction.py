"""The one redaction point: secrets and credential-looking values never leave through a text
built by tmdb_async.redaction, registered or not."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from tmdb_async import log as logsetup
from tmdb_async import redaction
from tmdb_async.redaction import MASK, describe_error, redact, register_secret

TOKEN = "eyJhbGciOiJIUzI1NiJ9.canary-redaction-token.sig_-x"
KEY = "0123abcdcanarykey4567"


@pytest.fixture(autouse=True)
def _restore_registry() -> Iterator[None]:
    """Secrets registered by a test do not mask other tests' texts."""
    saved = (set(redaction._SECRETS), redaction._ORDERED)
    yield
    redaction._SECRETS.clear()
    redaction._SECRETS.update(saved[0])
    redaction._ORDERED = saved[1]


def _response_error(url: str, headers: dict[str, str]) -> aiohttp.ClientResponseError:
    info = aiohttp.RequestInfo(URL(url), "GET", CIMultiDictProxy(CIMultiDict(headers)), URL(url))
    return aiohttp.ClientResponseError(
        info, (), status=400, message="Bad status line:\n  Invalid status code", headers=None
    )


# --- redact --------------------------------------------------------------------------------


def test_a_registered_secret_is_masked_wherever_it_appears() -> None:
    register_secret(TOKEN)
    assert redact(f"a{TOKEN}b {TOKEN}") == f"a{MASK}b {MASK}"
    assert registration_is_global()


def registration_is_global() -> bool:
    return logsetup.redact(TOKEN) == MASK  # log re-exports the same registry


def test_the_url_encoded_spelling_of_a_secret_is_masked_too() -> None:
    secret = "s3cr3t/with+special=chars"
    register_secret(secret)
    assert redact("GET /x?token=s3cr3t%2Fwith%2Bspecial%3Dchars") == f"GET /x?token={MASK}"


def test_values_too_short_to_be_secrets_are_not_registered() -> None:
    register_secret("abc")
    register_secret("")
    register_secret(None)
    assert redact("abc def") == "abc def"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /3/find/tt1?external_source=imdb_id&api_key=abc123&x=1",
         "GET /3/find/tt1?external_source=imdb_id&api_key=***&x=1"),
        ("url='http://h/3/movie/1?API_KEY=abc123'", "url='http://h/3/movie/1?API_KEY=***'"),
        ("params={'language': 'pt-BR', 'api_key': 'abc123'}",
         "params={'language': 'pt-BR', 'api_key': '***'}"),
        ('{"api_key": "abc123"}', '{"api_key": "***"}'),
        ("next=%2F3%2Ffind%3Fapi_key%3Dabc123", "next=%2F3%2Ffind%3Fapi_key%3D***"),
    ],
)  # fmt: skip
def test_api_key_values_are_masked_even_unregistered(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer eyJ.abc-_.x", "Authorization: Bearer ***"),
        ("{'Authorization': 'Bearer eyJ.abc'}", "{'Authorization': 'Bearer ***'}"),
        ("<CIMultiDictProxy('Authorization': 'bearer eyJ.abc', 'Accept': 'x')>",
         "<CIMultiDictProxy('Authorization': 'bearer ***', 'Accept': 'x')>"),
        ("authorization=Basic dXNlcjpwYXNz", "authorization=***"),
        ("Bearer%20eyJ.abc", "Bearer%20***"),
    ],
)  # fmt: skip
def test_bearer_tokens_and_authorization_values_are_masked_even_unregistered(
    text: str, expected: str
) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "HTTP 503 (Service maintenance) on /3/find/tt0000001 after 3 attempts",
        "no TMDB credentials: set TMDB_READ_ACCESS_TOKEN (preferred) or TMDB_API_KEY",
        "",
        "ordinary text with *** already masked",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


_SECRET_CHARS = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@given(
    secret=st.text(_SECRET_CHARS, min_size=4, max_size=40),
    before=st.text(max_size=30),
    after=st.text(max_size=30),
)
def test_no_registered_secret_survives_redaction(secret: str, before: str, after: str) -> None:
    secret = "canary-" + secret  # never an ordinary word of another test's output
    register_secret(secret)
    out = redact(f"{before}{secret}{after}{secret}")
    assert secret not in out
    assert redact(out) == out  # idempotent


# --- describe_error ----------------------------------------------------------------------------


def test_describe_error_of_a_client_response_error_has_no_url_query_or_headers() -> None:
    url = f"https://api.themoviedb.org/3/find/tt1?external_source=imdb_id&api_key={KEY}"
    error = _response_error(url, {"Authorization": f"Bearer {TOKEN}"})
    assert KEY in str(error) and TOKEN in repr(error)  # what aiohttp would print
    assert describe_error(error) == "ClientResponseError: 400, Bad status line: Invalid status code"


def test_describe_error_drops_query_strings_and_object_dumps_from_any_message() -> None:
    error = aiohttp.ClientConnectionError(
        f"failed GET http://h/3/find/tt1?language=pt-BR&api_key={KEY} "
        f"RequestInfo(url=URL('x'), headers=<CIMultiDictProxy('Authorization': 'Bearer {TOKEN}')>)"
    )
    text = describe_error(error)
    assert text == "ClientConnectionError: failed GET http://h/3/find/tt1 …"
    assert KEY not in text and TOKEN not in text


def test_describe_error_never_uses_repr() -> None:
    class Leaky(Exception):
        def __repr__(self) -> str:
            return f"Leaky(headers={{'Authorization': 'Bearer {TOKEN}'}})"

    assert describe_error(Leaky("plain message")) == "Leaky: plain message"
    assert describe_error(Leaky()) == "Leaky"


def test_describe_error_is_one_bounded_line() -> None:
    error = RuntimeError("first line\n  second line\t" + "x" * 1000)
    text = describe_error(error, limit=60)
    assert "\n" not in text and "\t" not in text
    assert len(text) == 60
    assert text.startswith("RuntimeError: first line second line xxx")
    assert text.endswith("…")
    assert len(describe_error(error, limit=None)) > 1000


def test_describe_error_masks_registered_secrets_and_can_leave_the_type_out() -> None:
    register_secret(TOKEN)
    error = ValueError(f"token {TOKEN} rejected")
    assert describe_error(error) == f"ValueError: token {MASK} rejected"
    assert describe_error(error, with_type=False) == f"token {MASK} rejected"


def test_describe_error_survives_a_broken_str() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert describe_error(Broken()) == "Broken"


# --- log.py uses it ----------------------------------------------------------------------------


def test_log_reexports_the_redaction_functions() -> None:
    assert logsetup.redact is redact
    assert logsetup.register_secret is register_secret
    assert logsetup.describe_error is describe_error
    assert logsetup.MASK == MASK


def test_the_log_filter_masks_unregistered_tokens_and_keys_in_every_record() -> None:
    stream = io.StringIO()
    logsetup.configure("DEBUG", "text")
    handler = logging.getLogger().handlers[-1]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        logging.getLogger("aiohttp.client").debug("GET /3/find/tt1?api_key=%s", KEY)
        try:
            raise RuntimeError(f"headers: Authorization: Bearer {TOKEN}")
        except RuntimeError:
            logging.getLogger("some.library").exception("failed")
    finally:
        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    assert "api_key=***" in text
    assert "Bearer ***" in text
    assert KEY not in text and TOKEN not in text
