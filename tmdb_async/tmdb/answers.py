"""What TMDB's answers mean: pure functions and the answers a lookup gives, no I/O.

:func:`classify` reads an HTTP answer (status, body, ``Retry-After``) and
:func:`classify_error` an exception raised while asking; each returns a :class:`Verdict`
that the client acts on. 429, 5xx, 408 and unreadable bodies are worth another attempt, and
so is *every* transport error (:data:`TRANSPORT_ERRORS`: aiohttp's ``ClientError`` family,
malformed HTTP answers, ``OSError``/SSL errors, timeouts); 404 with TMDB's error body is an
answer ("not found"), 401 stops the run, any other status or error (a 404 without TMDB's
body included: another server's) fails the id.

A lookup ends as :class:`Found`, :class:`NotFound` or :class:`Deleted`, or raises
:class:`LookupFailed`. Reasons are built by :func:`tmdb_async.redaction.describe_error`:
class name and a short message, never a ``repr``, never headers, never a URL query string.

Nothing here imports the client: :mod:`~tmdb_async.tmdb.client` imports this module.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any, Final, Literal

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

from tmdb_async.redaction import describe_error
from tmdb_async.settings import MediaType

REASON_LIMIT: Final = 160  # characters of an error's own message in a failure reason
_REJECTED_MESSAGE: Final = (
    "TMDB rejected the credentials (HTTP 401, status_code 7): check "
    "TMDB_READ_ACCESS_TOKEN / TMDB_API_KEY"
)


# --- the answers a lookup gives --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Found:
    """A TMDB record, as TMDB returned it plus top-level ``imdb_id`` and ``media_type``."""

    record: dict[str, Any]
    media_type: MediaType


@dataclass(frozen=True, slots=True)
class NotFound:
    """TMDB does not know the id (for the requested kind)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Deleted:
    """A title of the lake whose details TMDB now answers with 404 (a refresh's finding).
    ``again``: the id map already had it as deleted (watched): nothing new to write."""

    media_type: MediaType
    tmdb_id: int
    again: bool = False


# --- what one attempt's answer means ---------------------------------------------------------

VerdictKind = Literal["ok", "not_found", "retry", "fail", "rejected"]


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 4 object.__setattr__ per answer
class Verdict:
    """What one attempt's answer means.

    - ``ok``: ``data`` is the JSON object TMDB sent;
    - ``not_found``: HTTP 404 with TMDB's error body, an answer, not an error;
    - ``retry``: worth another attempt; ``reason`` says why, ``retry_after`` is a positive
      ``Retry-After`` in seconds (or ``None``);
    - ``fail``: another attempt would get the same answer; the id fails with ``reason``;
    - ``rejected``: HTTP 401, the credentials are wrong and the whole run must stop.
    """

    kind: VerdictKind
    reason: str = ""
    retry_after: float | None = None
    data: dict[str, Any] | None = None


_NOT_FOUND: Final = Verdict("not_found", "HTTP 404")
_NOT_TMDB_404: Final = Verdict(
    "fail", "HTTP 404 without TMDB's error body: not TMDB's answer (check --tmdb-url)"
)
_REJECTED: Final = Verdict("rejected", _REJECTED_MESSAGE)
_RETRY_STATUSES: Final = frozenset({408, 429})  # besides every 5xx


#: Errors of the way to TMDB, not of TMDB's answer: worth another attempt. aiohttp wraps a
#: malformed HTTP answer in ``ClientResponseError`` (a ``ClientError``); the parser's own
#: ``HttpProcessingError`` and ``OSError`` (resets, SSL, DNS) are listed for the paths that
#: let them through unwrapped. ``asyncio.TimeoutError`` is ``TimeoutError``, an ``OSError``.
TRANSPORT_ERRORS: Final = (aiohttp.ClientError, HttpProcessingError, OSError)

#: Errors raised before any byte of an answer, because no connection to TMDB could be made:
#: the name does not resolve (``ClientConnectorDNSError``), the connection is refused or
#: unroutable, TLS fails (``ClientSSLError`` and the certificate errors are
#: ``ClientConnectorError`` too), or the connect timeout passes (``ConnectionTimeoutError``,
#: see :data:`~tmdb_async.tmdb.breaker.CONNECT_SHARE`).
#:
#: The :class:`~tmdb_async.tmdb.breaker.Breaker` counts *no answer*: these, and every other
#: transport error (:data:`TRANSPORT_ERRORS`, timeouts) raised after a request was sent and
#: before its answer's status line and headers arrived: the server disconnected or reset the
#: connection, sent bytes that are not HTTP (``http://`` to a TLS port), or let the request
#: time out without a status line. A server that never answers HTTP is not TMDB for this
#: run's purpose: once that goes on with no answer from anyone, the run stops and loses
#: nothing (no id is marked failed), and the rerun continues. After connecting, it takes
#: :data:`~tmdb_async.tmdb.breaker.TRIP_URLS` different URLs: one title whose every answer is
#: malformed fails that title, not the run. An error after the headers (a
#: body cut short, bad JSON) is an answer's fault, a normal retry the breaker never sees; and
#: any answer ends the streak, so a lost connection among answers never trips it.
CONNECTION_ERRORS: Final = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


def classify(status: int, body: bytes, retry_after: str | None = None) -> Verdict:
    """The meaning of an HTTP answer: its status, its body, its ``Retry-After`` header."""
    if status == 200:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # bad JSON or UTF-8 (ValueError), absurd nesting
            return Verdict("retry", "invalid JSON body")
        if not isinstance(data, dict):
            return Verdict("retry", "JSON body is not an object")
        return Verdict("ok", data=data)
    if status == 404:
        # TMDB's 404 carries its error body (status_code 34). A 404 without one comes from
        # another server (a proxy, a wrong --tmdb-url): not TMDB saying "not found", so it
        # fails the id, and a failure never replaces an answer.
        return _NOT_FOUND if _tmdb_error(body) else _NOT_TMDB_404
    if status == 401:
        return _REJECTED
    if status == 429:
        return Verdict("retry", "HTTP 429", parse_retry_after(retry_after))
    reason = f"HTTP {status}{status_message(body)}"
    if status >= 500 or status in _RETRY_STATUSES:
        return Verdict("retry", reason, parse_retry_after(retry_after))
    return Verdict("fail", reason)


def classify_error(exc: Exception) -> Verdict:
    """The meaning of an exception raised while asking TMDB (never ``CancelledError``): a
    transport error is ``retry``, anything else ``fail``; the reason is redacted and short."""
    if isinstance(exc, TimeoutError):
        return Verdict("retry", "timeout")
    if isinstance(exc, TRANSPORT_ERRORS):
        return Verdict("retry", describe_error(exc, limit=REASON_LIMIT))
    return Verdict("fail", "unexpected " + describe_error(exc, limit=REASON_LIMIT))


def parse_retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds; ``None`` when absent, negative or an HTTP date."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # HTTP-date forms are not used by TMDB's CDN; fall back to backoff
    return seconds if 0 <= seconds < float("inf") else None


def _tmdb_error(body: bytes) -> bool:
    """Whether ``body`` is TMDB's error body: a JSON object with an integer ``status_code``."""
    with contextlib.suppress(ValueError, RecursionError):
        data = json.loads(body)
        return isinstance(data, dict) and type(data.get("status_code")) is int
    return False


def status_message(body: bytes) -> str:
    """`` (TMDB's status_message)`` of an error body, or nothing."""
    with contextlib.suppress(ValueError, RecursionError):
        data = json.loads(body)
        if isinstance(data, dict) and isinstance(data.get("status_message"), str):
            return f" ({' '.join(data['status_message'].split())[:120]})"
    return ""
