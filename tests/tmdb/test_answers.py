"""What an answer means, without I/O: :mod:`tmdb_async.tmdb.answers`.

:func:`classify` reads TMDB's status, body and ``Retry-After``; :func:`classify_error` an
exception raised while asking. Each gives a :class:`Verdict` the client acts on.
"""

from __future__ import annotations

import json
import ssl

import aiohttp
import pytest
from aiohttp.http_exceptions import BadStatusLine
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from tmdb_async.tmdb.answers import Verdict, classify, classify_error, parse_retry_after


def response_error(url: str, headers: dict[str, str], message: str) -> aiohttp.ClientResponseError:
    """aiohttp's error for a malformed answer: it carries the request (URL and headers)."""
    info = aiohttp.RequestInfo(URL(url), "GET", CIMultiDictProxy(CIMultiDict(headers)), URL(url))
    return aiohttp.ClientResponseError(info, (), status=400, message=message)


def test_classify_a_200_object_is_ok_with_its_data() -> None:
    assert classify(200, b'{"id": 603}') == Verdict("ok", data={"id": 603})


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
    assert classify(200, body) == Verdict("retry", reason)


@pytest.mark.parametrize("body", [b"", b"<html>Not Found</html>", b"{}", b'{"status_code": "34"}'])
def test_classify_a_404_without_tmdbs_error_body_fails_the_id_not_found_is_tmdbs_word(
    body: bytes,
) -> None:
    """Another server's 404 (a proxy, a wrong --tmdb-url) is no answer from TMDB."""
    outcome = classify(404, body)
    assert outcome.kind == "fail"
    assert outcome.reason.startswith("HTTP 404 without TMDB's error body")


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
    assert classify(429, b"{}", header) == Verdict("retry", "HTTP 429", retry_after)
    assert parse_retry_after(header) == retry_after


@pytest.mark.parametrize("status", [500, 502, 503, 504, 520, 408])
def test_classify_5xx_and_408_are_retried_with_tmdbs_message(status: int) -> None:
    body = json.dumps({"status_code": 46, "status_message": "Service\nmaintenance"}).encode()
    assert classify(status, body) == Verdict("retry", f"HTTP {status} (Service maintenance)")
    assert classify(status, b"<html>proxy error</html>") == Verdict("retry", f"HTTP {status}")


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
        (response_error("http://t/3/find/tt1?api_key=K", {"Authorization": "Bearer T"},
                         "Bad status line"),
         "ClientResponseError: 400, Bad status line"),
    ],
)  # fmt: skip
def test_classify_error_retries_every_transport_error(error: Exception, reason: str) -> None:
    assert classify_error(error) == Verdict("retry", reason)


@pytest.mark.parametrize(
    "error",
    [RuntimeError("bug"), KeyError("id"), ValueError("?"), UnicodeError(), RecursionError()],
)
def test_classify_error_fails_the_id_on_anything_else(error: Exception) -> None:
    outcome = classify_error(error)
    assert outcome.kind == "fail"
    assert outcome.reason.startswith(f"unexpected {type(error).__name__}")
