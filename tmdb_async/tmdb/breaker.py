"""Dead TMDB is found in seconds: the :class:`Breaker`, one per run.

It watches attempts that got no answer (see :data:`~tmdb_async.tmdb.answers.CONNECTION_ERRORS`):
no connection (DNS, refused, TLS, connect timeout), or a server that disconnected, reset the
connection, sent bytes that are not HTTP or let the request time out before an answer's
status line and headers. Once they have gone on for :data:`TRIP_SECONDS` without a single
answer from anyone, every attempt raises :class:`~tmdb_async.errors.TmdbUnreachable` instead
of retrying, so the run stops within seconds rather than failing every id after all its
retries; any answer (even a 5xx) closes the streak, so a lost connection among answers never
trips it. The waits between attempts go through :meth:`Breaker.pause`, so a trip ends
them at once.

Its clock and its waits are the module's seams ``_now`` and ``_pause``: tests drive them with
a virtual clock (``tests/tmdb/test_breaker.py``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import time
from typing import Final

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

from tmdb_async.errors import TmdbUnreachable
from tmdb_async.redaction import describe_error, redact, safe_url
from tmdb_async.tmdb.answers import CONNECTION_ERRORS

log = logging.getLogger(__name__)

#: The breaker trips once attempts without an answer have gone on this long, measured from
#: the start of the first failed attempt, with no answer from TMDB in between...
TRIP_SECONDS: Final = 5.0
#: ... and at least this many of them (a single slow connect is not an outage).
TRIP_FAILURES: Final = 3
#: A server that took the connection and gave no answer counts as an outage only once it did
#: so to this many different requests (URLs) in the streak: one title whose every answer is
#: malformed or cut (at most two URLs: by IMDb id, then ``/find``) is that title's failure,
#: not TMDB's, even when it is the last request left and nobody else is answered.
TRIP_URLS: Final = 3
#: How long a request whose attempts are all spent without an answer goes on trying while
#: TMDB answers nobody (see :meth:`tmdb_async.tmdb.retry.Retries.call`): past it, its id
#: fails as any other.
HOLD_SECONDS: Final = 2 * TRIP_SECONDS
#: The connect timeout, as a share of the request timeout: a connect that takes half of a
#: request's time is counted as "no connection", not as a slow answer (default 5 s).
CONNECT_SHARE: Final = 0.5


def _now() -> float:
    """The breaker's clock (a seam: tests drive it with a virtual clock)."""
    return time.monotonic()


async def _pause(seconds: float) -> None:
    """The wait between attempts (a seam: tests drive it with a virtual clock)."""
    await asyncio.sleep(seconds)


def no_answer_cause(exc: BaseException) -> str:
    """Why an attempt got no answer, in a few words for the one-line error."""
    if not isinstance(exc, CONNECTION_ERRORS):
        return "no answer: " + _after_connecting(exc)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        host = getattr(exc, "host", "")
        return f"DNS: cannot resolve {host}" if host else "DNS: the name does not resolve"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connect timeout"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "TLS: " + describe_error(exc, limit=120)
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, ConnectionRefusedError):
        return "connection refused"
    return describe_error(exc, limit=120)


def _after_connecting(exc: BaseException) -> str:
    """What a server that took the connection did instead of answering."""
    if isinstance(exc, TimeoutError):
        return "read timeout"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, ConnectionResetError) or (
        isinstance(exc, OSError) and exc.errno == errno.ECONNRESET
    ):
        return "connection reset"
    if isinstance(exc, aiohttp.ClientResponseError | HttpProcessingError):
        # aiohttp's parser says "400, Bad status line: Expected HTTP/...: b'\x15\x03...' ^":
        # its first words and the bytes it got, from the redacted text (no query string).
        text = describe_error(exc, limit=None, with_type=False)
        first = re.sub(r"^\d+, ", "", text).split(":")[0].strip() or type(exc).__name__
        got = re.search(r"""b(['"])(?:\\.|(?!\1).)*\1""", text)
        shown = f"{first[:60]}: {got.group(0)[:40]}" if got else first[:100]
        tls = got is not None and got.group(0)[2:].startswith(("\\x15\\x03", "\\x16\\x03"))
        return f"not HTTP ({shown}{'; a TLS port? use https://' if tls else ''})"
    return describe_error(exc, limit=120)


class Breaker:
    """Tells a dead TMDB from a bad moment, for the whole client (every worker, every route).

    Trips when attempts without an answer (no connection, or none of an answer's status
    line and headers: :data:`~tmdb_async.tmdb.answers.CONNECTION_ERRORS`) have gone on for
    :data:`TRIP_SECONDS`, at least :data:`TRIP_FAILURES` of them, without a single answer
    from anyone in between. Time, not a count alone: a count large enough to ignore a burst of
    20 workers failing at once would take a lone worker minutes of backoff to reach, and
    any count is reached at once by 20 workers hitting one restart. Any HTTP answer closes
    the streak, so one refused connection among answers never trips it, and a TMDB that
    answers 5xx is an outage the retries handle, not an unreachable one. Once tripped it
    stays tripped: every attempt of the run raises :class:`TmdbUnreachable`.
    """

    __slots__ = (
        "_answered_at",
        "_base",
        "_count",
        "_since",
        "_trip",
        "_unconnected",
        "_urls",
        "tripped",
    )

    def __init__(self, base_url: str) -> None:
        self._base = safe_url(base_url)
        self._count = 0
        self._unconnected = False  # the streak holds an attempt that made no connection
        self._urls: set[str] = set()  # the URLs that got no answer after connecting
        self._since: float | None = None  # start of the streak's first failed attempt
        self._answered_at = float("-inf")  # when TMDB last answered anyone
        self._trip = asyncio.Event()  # set when it trips: wakes the waits between attempts
        self.tripped: str | None = None  # the one-line message, once tripped

    @property
    def streak(self) -> int:
        """Attempts without an answer since TMDB last answered anyone."""
        return self._count

    @property
    def holding(self) -> bool:
        """Whether the streak could be an outage: an attempt made no connection, or
        :data:`TRIP_URLS` URLs got no answer after connecting. While it is, a request whose
        attempts are spent without an answer is held, not failed (see
        :class:`~tmdb_async.tmdb.retry.Retries`); one title's malformed or cut answers are
        not held: that title fails after its attempts."""
        return self._count > 0 and (self._unconnected or len(self._urls) >= TRIP_URLS)

    @staticmethod
    def clock() -> float:
        """The breaker's time, in seconds: what an attempt's start passed to :meth:`failed`
        and the hold of :class:`~tmdb_async.tmdb.retry.Retries` are measured with."""
        return _now()

    def answered(self) -> None:
        """TMDB answered (any status): the streak, if any, is over."""
        self._answered_at = _now()
        self._count = 0
        self._since = None
        self._unconnected = False
        if self._urls:
            self._urls.clear()

    def failed(self, started: float, exc: BaseException, url: str = "") -> None:
        """An attempt of ``url`` started at ``started`` got no answer (``exc``); raises
        :class:`TmdbUnreachable` when that makes the streak an outage: no connection, or
        no answer after connecting on :data:`TRIP_URLS` different URLs."""
        if self.tripped is None:
            self._count += 1
            if isinstance(exc, CONNECTION_ERRORS):
                self._unconnected = True
            else:
                self._urls.add(url)
            # Measured from the attempt's start, but never from before TMDB last answered
            # anyone: a request sent before that answer and timing out after it (10 s
            # later) has not seen TMDB silent for 10 s.
            begun = max(started, self._answered_at)
            if self._since is None or begun < self._since:
                self._since = begun
            lasted = _now() - self._since
            if self._count < TRIP_FAILURES or lasted < TRIP_SECONDS:
                return
            if not self._unconnected and len(self._urls) < TRIP_URLS:
                return  # one title's fault so far, not the server's
            self.tripped = redact(
                f"TMDB unreachable at {self._base}: {no_answer_cause(exc)} "
                f"({self._count} attempts without an answer in {lasted:.0f}s); "
                "stopped: no id was marked failed, run it again once TMDB answers"
            )
            self._trip.set()
            # INFO: the run ends with this text as its error (the CLI's one line, the Lambda
            # invocation's error); the log marks when it tripped, for INFO-level logs.
            log.info("%s", self.tripped)
        raise TmdbUnreachable(self.tripped)

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds`` before another attempt, or less if the breaker trips meanwhile:
        a tripped run ends now, not once every worker's backoff is over."""
        if self.tripped is not None:
            return
        waits = [asyncio.ensure_future(_pause(seconds)), asyncio.ensure_future(self._trip.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    def check(self) -> None:
        """Raises :class:`TmdbUnreachable` once tripped: no request is sent after it."""
        if self.tripped is not None:
            raise TmdbUnreachable(self.tripped)
