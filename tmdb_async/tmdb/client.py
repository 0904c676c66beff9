"""Talking to TMDB: one aiohttp session, bounded concurrency, a rate limit, and retries.

:class:`TmdbClient` turns an IMDb id into the TMDB record the data lake keeps, in one
request when it can (see :meth:`TmdbClient.lookup`): ``/3/{movie|tv}/{tmdb_id}`` for a title
the lake's id map knows, ``/3/movie/{imdb_id}`` for a likely movie
(:class:`~tmdb_async.tmdb.route.Router` decides), else ``/3/find/{imdb_id}`` then, in ``full``
detail mode, ``/3/movie/{id}`` or ``/3/tv/{id}``. It also reads TMDB's change lists
(:meth:`TmdbClient.changes`).

The client holds the session and the lookup strategy; the rest is its neighbours':

- What an answer means: :mod:`~tmdb_async.tmdb.answers` (:func:`classify`,
  :func:`classify_error`, pure functions) and the answers a lookup gives (:class:`Found`,
  :class:`NotFound`, :class:`Deleted`, :class:`LookupFailed`, re-exported here).
- Retries: :mod:`~tmdb_async.tmdb.retry`, one tenacity ``AsyncRetrying`` loop over every
  attempt of a request, the first included, honouring a positive ``Retry-After``.
- Dead TMDB: :mod:`~tmdb_async.tmdb.breaker`, one :class:`~tmdb_async.tmdb.breaker.Breaker`
  per run (shared by :meth:`TmdbClient.reshaped` clients).
- Concurrency: an :class:`asyncio.Semaphore` (TMDB allows ~20 connections per IP).
- Rate: :class:`~tmdb_async.tmdb.throttle.Throttle` (aiolimiter), slowed for everyone by a 429.

Any unexpected error while asking fails that id (:class:`LookupFailed`), never the run. 401
raises :class:`~tmdb_async.errors.CredentialsError` at once: the run must stop. Cancellation
propagates untouched. A 404 with TMDB's error body or an empty /find is "not found"
(:class:`NotFound`), never an error; a 404 without that body is another server's, and fails
the id.

Failure reasons are built by :func:`tmdb_async.redaction.describe_error` and
:func:`~tmdb_async.redaction.redact`: class name and a short message, never a ``repr``,
never headers, never a URL query string; the credentials are registered for masking when the
client is created.

Records are passed through as TMDB sent them: a string holding a lone surrogate (JSON
``"\\ud83d"``) is kept as is; encoding it is the writer's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import aiohttp
from tenacity import RetryCallState
from yarl import URL

from tmdb_async._version import __version__
from tmdb_async.credentials import Credentials
from tmdb_async.errors import (
    CredentialsError,
    GaveUp,
    LookupFailed,
    Refused,
    Retryable,
    TmdbUnreachable,
)
from tmdb_async.redaction import describe_error, redact, register_secret
from tmdb_async.settings import Detail, Kind, MediaType, Settings
from tmdb_async.tmdb.answers import (
    CONNECTION_ERRORS,
    REASON_LIMIT,
    Deleted,
    Found,
    NotFound,
    Verdict,
    classify,
    classify_error,
)
from tmdb_async.tmdb.breaker import CONNECT_SHARE, Breaker
from tmdb_async.tmdb.retry import Retries
from tmdb_async.tmdb.route import Router
from tmdb_async.tmdb.throttle import Throttle

__all__ = [
    "ClientOptions",
    "ClientStats",
    "IdMap",
    "KnownTitle",
    "Sends",
    "Timeline",
    "TmdbClient",
    "asks_by_map",
]

log = logging.getLogger(__name__)


class KnownTitle(Protocol):
    @property
    def media_type(self) -> MediaType: ...

    @property
    def tmdb_id(self) -> int: ...

    @property
    def narrow(self) -> bool: ...

    @property
    def deleted(self) -> bool: ...


class IdMap(Protocol):
    """What the client asks the id map (:class:`tmdb_async.lake.idmap.LakeIdMap`)."""

    def get(self, imdb_id: str, /) -> KnownTitle | None: ...

    def forget(self, imdb_id: str, /) -> None: ...


def asks_by_map(known: KnownTitle, kind: str, detail: str) -> bool:
    """Whether a title the id map knows is asked by its TMDB id (one request) in a run of
    ``kind`` and ``detail``; else it is asked as if new. A dry run's estimate asks this too."""
    if detail != "full":
        return False
    return kind == known.media_type or (kind == "auto" and not known.narrow)


_USER_AGENT = f"tmdb-ingest/{__version__} (+aiohttp)"


@dataclass(slots=True)
class Sends:
    """The requests one :meth:`TmdbClient.lookup_counting` has sent: 0 while its first one
    still waits for its turn (the rate, a connection), so nothing has been asked yet."""

    count: int = 0


_SENDS: contextvars.ContextVar[Sends | None] = contextvars.ContextVar("tmdb_sends", default=None)


TIMELINE_SERIES = ("requests", "throttled", "ids")
"""The series of a :class:`Timeline`, in the manifest's order."""
TIMELINE_POINTS = 1000
"""The most points a :class:`Timeline` keeps: past it, neighbouring buckets merge (the bucket
doubles), so a 4-hour run has 900 buckets of 16 s and its manifest stays a few KB."""


@dataclass(slots=True)
class Timeline:
    """Events counted per second of wall time from the first one, for the report's charts:
    ``requests`` (every attempt sent), ``throttled`` (429 answers), ``ids`` (ids a run has
    accounted for; counted by the run, not the client). At most :data:`TIMELINE_POINTS`
    buckets: when the run outlasts them, each pair of buckets merges into one twice as
    long. Cheap enough for every request: a clock read and a list update."""

    clock: Callable[[], float] = time.time
    t0: int | None = None
    step: int = 1
    series: dict[str, list[int]] = field(default_factory=dict)

    def add(self, name: str, n: int = 1) -> None:
        now = int(self.clock())
        if self.t0 is None:
            self.t0 = now
        index = max(0, now - self.t0) // self.step
        while index >= TIMELINE_POINTS:
            self._merge()
            index = max(0, now - self.t0) // self.step
        counts = self.series.setdefault(name, [])
        if len(counts) <= index:
            counts.extend([0] * (index + 1 - len(counts)))
        counts[index] += n

    def _merge(self) -> None:
        self.step *= 2
        for name, counts in self.series.items():
            self.series[name] = [sum(counts[i : i + 2]) for i in range(0, len(counts), 2)]

    def as_dict(self) -> dict[str, Any] | None:
        """The manifest's ``timeline``: ``t0`` (UTC, the first event's second), ``step``
        (seconds a bucket covers) and each series as :func:`encode_counts` text (every series
        as long as the longest); ``None`` when nothing happened."""
        if self.t0 is None:
            return None
        points = max(len(counts) for counts in self.series.values())
        found: dict[str, Any] = {
            "t0": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.t0)),
            "step": self.step,
        }
        for name in TIMELINE_SERIES:
            counts = self.series.get(name, [])
            found[name] = encode_counts(counts + [0] * (points - len(counts)))
        return found


def encode_counts(counts: list[int]) -> str:
    """Counts as short text, one line in an indented manifest: comma-separated, a run of
    equal values as ``value*times`` (``[0, 0, 0, 5, 7, 7]`` → ``"0*3,5,7*2"``)."""
    parts: list[str] = []
    i = 0
    while i < len(counts):
        j = i
        while j < len(counts) and counts[j] == counts[i]:
            j += 1
        parts.append(str(counts[i]) if j - i == 1 else f"{counts[i]}*{j - i}")
        i = j
    return ",".join(parts)


def decode_counts(text: str) -> list[int]:
    """The counts :func:`encode_counts` wrote; ``ValueError`` for any other text."""
    counts: list[int] = []
    for part in text.split(",") if text else ():
        value, _, times = part.partition("*")
        n = int(times) if times else 1
        if n < 1 or int(value) < 0:
            raise ValueError(f"not a count: {part!r}")
        counts += [int(value)] * n
    return counts


@dataclass(slots=True)
class ClientStats:
    """Counters for summaries and metrics; ``timeline``: requests and 429s per second."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0  # 429 answers
    by_map: int = 0  # titles fetched by the TMDB id the id map knew: 1 request
    map_stale: int = 0  # id-map entries TMDB no longer honours (then the other paths)
    direct: int = 0  # titles asked by IMDb id on /3/movie first
    direct_missed: int = 0  # ... that answered 404 for a movie /find then found
    deleted: int = 0  # titles of the lake whose details answered 404 in a refresh
    change_pages: int = 0  # pages of the change lists read
    status: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    timeline: Timeline = field(default_factory=Timeline)

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "throttled_429": self.throttled,
            "lookups": {
                "by_map": self.by_map,
                "map_stale": self.map_stale,
                "direct": self.direct,
                "direct_missed": self.direct_missed,
                "deleted": self.deleted,
            },
            "change_pages": self.change_pages,
            "status": {str(k): v for k, v in sorted(self.status.items())},
            "errors": dict(sorted(self.errors.items())),
        }


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """What the client needs from :class:`~tmdb_async.settings.Settings`."""

    base_url: str
    credentials: Credentials
    kind: Kind = "auto"
    detail: Detail = "full"
    language: str = "pt-BR"
    append_to_response: tuple[str, ...] = ()
    concurrency: int = 20
    rate: float = 40.0
    max_attempts: int = 6
    request_timeout: float = 10.0
    max_backoff: float = 30.0

    @classmethod
    def of(cls, settings: Settings) -> ClientOptions:
        """The client's part of the run settings: the same names, ``tmdb_url`` as the base."""
        names = [f.name for f in dataclasses.fields(cls) if f.name != "base_url"]
        return cls(base_url=settings.tmdb_url, **{n: getattr(settings, n) for n in names})


class TmdbClient:
    """Looks ids up on TMDB. Create with :meth:`open` inside the running event loop."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        options: ClientOptions,
        idmap: IdMap | None = None,
        *,
        deleted_on_404: bool = False,
        _share: TmdbClient | None = None,
    ) -> None:
        self._session = session
        self._options = options
        self._idmap = idmap
        self._deleted_on_404 = deleted_on_404
        self._router = Router(movies_possible=options.kind != "tv")
        if _share is None:
            self._semaphore = asyncio.Semaphore(options.concurrency)
            self._throttle = Throttle(options.rate, max_pause=options.max_backoff)
            self._breaker = Breaker(options.base_url)
        else:  # one connection limit, one rate and one breaker for the whole run
            self._semaphore, self._throttle = _share._semaphore, _share._throttle
            self._breaker = _share._breaker
        self._timeout = aiohttp.ClientTimeout(
            total=options.request_timeout, sock_connect=options.request_timeout * CONNECT_SHARE
        )
        credentials = options.credentials
        register_secret(credentials.read_access_token)
        register_secret(credentials.api_key)
        headers = {"Accept": "application/json", "User-Agent": _USER_AGENT}
        headers.update(credentials.headers())
        # Headers already set on the session (see open()) are not merged again per request.
        in_session = all(session.headers.get(k) == v for k, v in headers.items())
        self._headers: dict[str, str] | None = None if in_session else headers
        # Query strings are encoded once: only the path changes from request to request.
        base = str(URL(options.base_url.rstrip("/")))  # normalised once (IDNA, case)
        find = {"external_source": "imdb_id", "language": options.language}
        details = {"language": options.language}
        if options.append_to_response:
            details["append_to_response"] = ",".join(options.append_to_response)
        auth = credentials.params()
        self._find_url = f"{base}/3/find/{{}}?{urlencode({**find, **auth})}"
        self._details_url = f"{base}/3/{{}}/{{}}?{urlencode({**details, **auth})}"
        self._changes_url = f"{base}/3/{{}}/changes?{{}}"
        self._auth = auth
        # One retry policy for every attempt of every request (see tmdb_async.tmdb.retry).
        self._retries = Retries(
            max_attempts=options.max_attempts,
            max_backoff=options.max_backoff,
            breaker=self._breaker,
            on_retry=self._count_retry,
        )
        self._rejected = False
        self.stats: ClientStats = ClientStats() if _share is None else _share.stats

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, options: ClientOptions, idmap: IdMap | None = None
    ) -> AsyncIterator[TmdbClient]:
        """One session per run, sized to the concurrency, closed when the run ends.
        ``idmap`` (the lake's id map) lets a known title skip ``/find``."""
        connector = aiohttp.TCPConnector(limit=options.concurrency, ttl_dns_cache=300)
        headers = {"Accept": "application/json", "User-Agent": _USER_AGENT}
        headers.update(options.credentials.headers())
        async with aiohttp.ClientSession(
            connector=connector, headers=headers, raise_for_status=False
        ) as session:
            yield cls(session, options, idmap)

    def reshaped(
        self,
        *,
        kind: Kind,
        detail: Detail,
        language: str,
        append_to_response: tuple[str, ...],
        deleted_on_404: bool = False,
    ) -> TmdbClient:
        """A client asking for records of other settings over this one's session, with its
        connection limit, rate and statistics: a refresh fetches each title the way it was
        ingested. ``deleted_on_404``: a title of the id map whose details answer 404 and
        whose IMDb id finds nothing else is :class:`Deleted`."""
        options = dataclasses.replace(
            self._options,
            kind=kind,
            detail=detail,
            language=language,
            append_to_response=append_to_response,
        )
        return TmdbClient(
            self._session, options, self._idmap, deleted_on_404=deleted_on_404, _share=self
        )

    async def changes(
        self, media_type: MediaType, start: dt.date, end: dt.date, page: int
    ) -> dict[str, Any]:
        """One page of TMDB's change list of ``media_type`` for [start, end] (both days
        inclusive; TMDB refuses more than 14 days and pages outside 1..500).

        Raises :class:`LookupFailed` when TMDB could not answer, or refused the window."""
        query = urlencode(
            {
                "start_date": start.isoformat(),
                "end_date": end.isoformat(),
                "page": page,
                **self._auth,
            }
        )
        path = f"/3/{media_type}/changes"
        self.stats.change_pages += 1
        data = await self._get(path, self._changes_url.format(media_type, query))
        if data is None:
            raise LookupFailed(f"HTTP 404 on {path}", 1, refused=True)
        return data

    @property
    def unreachable(self) -> str | None:
        """Why TMDB is taken for unreachable (the breaker tripped), else ``None``."""
        return self._breaker.tripped

    @property
    def current_rate(self) -> float:
        """The request rate the client runs at now (below ``rate`` after 429s)."""
        return self._throttle.current_rate

    @property
    def lowest_rate(self) -> float:
        """The lowest rate the client adapted down to during the run."""
        return self._throttle.lowest_rate

    async def lookup(self, imdb_id: str) -> Found | NotFound | Deleted:
        """The TMDB record of ``imdb_id``, in as few requests as what is known allows.

        In ``full`` mode: a title of the id map is one request by its TMDB id; a movie is one
        request by its IMDb id (``/3/movie/tt…``) while the :class:`~tmdb_async.tmdb.route.Router`
        says so; anything else is ``/find`` then details. A 404 on a shortcut falls back to
        the next way, so a title is never reported missing because a shortcut failed.

        Raises :class:`LookupFailed` when TMDB could not answer after the allowed attempts
        (or an unexpected error hit this id), :class:`CredentialsError` when TMDB rejects the
        credentials, :class:`TmdbUnreachable` once the :class:`Breaker` has tripped.
        """
        opts = self._options
        # Canonical ids (tt + digits) need no quoting; anything else is quoted, never trusted.
        safe = imdb_id if imdb_id.isascii() and imdb_id.isalnum() else quote(imdb_id, safe="")
        idmap = self._idmap
        known = idmap.get(imdb_id) if idmap is not None else None
        if known is not None and known.deleted and not self._deleted_on_404:
            known = None  # a removed title is no shortcut: asked as if new
        if known is not None and asks_by_map(known, opts.kind, opts.detail):
            media_type, tmdb_id = known.media_type, known.tmdb_id
            path = f"/3/{media_type}/{tmdb_id}"
            url = self._details_url.format(media_type, tmdb_id)
            gone = False  # answered 404, not refused otherwise
            if self._deleted_on_404:
                try:
                    details = await self._get(path, url)
                except LookupFailed as exc:
                    if not exc.refused:
                        raise
                    details = None
                else:
                    gone = details is None
            else:
                details = await self._shortcut(path, url, outage_falls_back=False)
            if details is not None and _confirms(details, imdb_id, media_type):
                self.stats.by_map += 1
                return _found(details, imdb_id, media_type)
            if gone and known.deleted:  # watched since TMDB removed it: still removed
                return Deleted(media_type, tmdb_id, again=True)
            self.stats.map_stale += 1
            # A refresh's 404 asks /find only: by IMDb id a removed movie 404s too.
            result = await self._look_up(imdb_id, safe, direct=not gone)
            # Forgotten once the other ways answered (an outage there keeps the entry):
            # learnt again from the record if found.
            idmap.forget(imdb_id)  # type: ignore[union-attr]
            if gone and isinstance(result, NotFound):
                # Its TMDB id answers 404 and its IMDb id finds nothing: TMDB removed it.
                # (A 404 alone may be a merge: the IMDb id then finds the new title.)
                self.stats.deleted += 1
                return Deleted(media_type, tmdb_id)
            return result
        result = await self._look_up(imdb_id, safe)
        if self._deleted_on_404 and known is not None and isinstance(result, NotFound):
            # A title of the lake fetched by /find alone (``--detail find``): /find no
            # longer finding it is how TMDB says it removed it.
            if known.deleted:
                return Deleted(known.media_type, known.tmdb_id, again=True)
            idmap.forget(imdb_id)  # type: ignore[union-attr]
            self.stats.deleted += 1
            return Deleted(known.media_type, known.tmdb_id)
        return result

    async def lookup_counting(self, imdb_id: str, sends: Sends) -> Found | NotFound | Deleted:
        """:meth:`lookup`, counting each request it sends into ``sends``, so that its caller
        can tell an id not yet asked (still waiting for the rate's turn) from one in flight.
        Run it as a task of its own: the count is set in that task's context."""
        _SENDS.set(sends)
        return await self.lookup(imdb_id)

    async def _look_up(self, imdb_id: str, safe: str, *, direct: bool = True) -> Found | NotFound:
        """:meth:`lookup` without the id map: direct by IMDb id while the router says so
        (and ``direct``), else ``/find`` then details."""
        opts = self._options
        direct_missed = False
        if direct and opts.detail == "full" and self._router.direct_first():
            details = await self._shortcut(
                f"/3/movie/{imdb_id}",
                self._details_url.format("movie", safe),
                outage_falls_back=True,
            )
            self.stats.direct += 1  # not before: a lookup handed back at a deadline asked nothing
            if details is not None:
                self._router.saw("movie")
                self._router.direct(hit=True)
                return _found(details, imdb_id, "movie")
            direct_missed = True
        path = f"/3/find/{imdb_id}"
        found = await self._get(path, self._find_url.format(safe))
        picked = None if found is None else _pick(found, opts.kind)
        if opts.detail == "full":
            self._router.saw("none" if picked is None else picked[0])
            if direct_missed and picked is not None and picked[0] == "movie":
                self.stats.direct_missed += 1
                self._router.direct(hit=False)
        if found is None:
            return NotFound("TMDB /find answered 404")
        if picked is None:
            wanted = "movie or tv" if opts.kind == "auto" else opts.kind
            return NotFound(f"no {wanted} result on TMDB /find")
        media_type, item = picked
        if opts.detail == "find":
            return _found(dict(item), imdb_id, media_type)
        tmdb_id = item.get("id")
        if type(tmdb_id) is not int:  # bool is an int subclass, and no id
            raise LookupFailed(f"TMDB /find gave a {media_type} without a numeric id", 1)
        path = f"/3/{media_type}/{tmdb_id}"
        details = await self._get(path, self._details_url.format(media_type, tmdb_id))
        if details is None:
            return NotFound(f"TMDB {path} answered 404")
        return _found(details, imdb_id, media_type)

    async def _shortcut(
        self, path: str, url: str, *, outage_falls_back: bool
    ) -> dict[str, Any] | None:
        """GET a one-request way to a title; ``None`` when TMDB answers 404 *or refuses it*
        (another 4xx: it may stop taking IMDb ids with any status), so the caller falls back
        to ``/find`` instead of failing the id.

        Retries spent on the IMDb-id path also fall back (``outage_falls_back``): TMDB could
        break that undocumented path alone, with 5xx; ``/find`` then tells a broken path
        (the movie is found: a miss, see the router) from an outage (it fails too). On the
        documented path by TMDB id, spent retries are an outage and fail the id."""
        try:
            return await self._get(path, url)
        except LookupFailed as exc:
            if not (exc.refused or outage_falls_back):
                raise
            log.debug("%s: falling back to /find", exc.reason)
            return None

    async def _get(self, path: str, url: str) -> dict[str, Any] | None:
        """GET ``url`` (its ``path`` names it in reasons) with retries; ``None`` for 404.

        Every attempt, the first included, goes through :meth:`Retries.call
        <tmdb_async.tmdb.retry.Retries.call>` (tenacity's ``AsyncRetrying``, and the hold
        that keeps a request trying while TMDB answers nobody). Cancellation is not caught:
        it propagates as it is."""
        try:
            return await self._retries.call(self._attempt, path, url)
        except GaveUp as exc:
            attempts = exc.attempts
            plural = "s" if attempts != 1 else ""
            reason = redact(f"{exc.last.reason} on {path} after {attempts} attempt{plural}")
            raise LookupFailed(reason, attempts, exc.refused) from None

    async def _attempt(self, path: str, url: str) -> dict[str, Any] | None:
        """One request: its data, ``None`` for 404; else raises :class:`Retryable`,
        :class:`Refused`, :class:`CredentialsError` or :class:`TmdbUnreachable`. Any other
        exception is classified by :func:`classify_error` here, so nothing raised while
        asking escapes unclassified. A transport error raised after the request was sent
        and before the answer's status line and headers arrived is *no answer*: the breaker
        counts it (see :data:`~tmdb_async.tmdb.answers.CONNECTION_ERRORS`)."""
        if self._rejected:
            raise CredentialsError("TMDB rejected the credentials (HTTP 401)")
        breaker = self._breaker
        breaker.check()
        started = 0.0
        sent = answered = False
        try:
            async with self._semaphore:
                await self._throttle.acquire()
                breaker.check()  # tripped while this one waited for its turn
                if (sends := _SENDS.get()) is not None:
                    sends.count += 1
                self.stats.requests += 1
                self.stats.timeline.add("requests")
                started = breaker.clock()
                sent = True
                async with self._session.get(
                    URL(url, encoded=True), headers=self._headers, timeout=self._timeout
                ) as response:
                    answered = True  # the status line and headers arrived
                    breaker.answered()
                    status = response.status
                    stats = self.stats
                    stats.status[status] = stats.status.get(status, 0) + 1
                    retry_after = None if status == 200 else response.headers.get("Retry-After")
                    body = await response.read()
            outcome = classify(status, body, retry_after)
        except TmdbUnreachable:
            raise
        except Exception as exc:  # not CancelledError: a BaseException, it propagates
            if isinstance(exc, CONNECTION_ERRORS):
                outcome = Verdict("retry", describe_error(exc, limit=REASON_LIMIT))
            else:
                outcome = classify_error(exc)
            reason = outcome.reason
            self._count_error(reason if reason == "timeout" else type(exc).__name__)
            if outcome.kind != "retry":
                log.warning("%s on %s: the id fails", reason, path)
                raise Refused(reason) from None
            if sent and not answered:  # no answer: the breaker counts it, the retries hold it
                breaker.failed(started, exc, url)  # raises TmdbUnreachable once it trips
                raise Retryable(reason, connection=True) from None
            raise Retryable(reason) from None
        kind = outcome.kind
        if kind == "ok":
            self._throttle.succeeded()
            return outcome.data
        if kind == "not_found":
            self._throttle.succeeded()
            return None
        if kind == "rejected":
            self._rejected = True
            raise CredentialsError(outcome.reason)
        if kind == "fail":
            raise Refused(outcome.reason)
        if status == 429:
            self.stats.throttled += 1
            self.stats.timeline.add("throttled")
            pause = self._throttle.throttled(outcome.retry_after)
            log.debug("429: all workers pause %.2fs", pause)
        else:
            self._count_error(outcome.reason if status == 200 else f"HTTP {status}")
        raise Retryable(outcome.reason, outcome.retry_after)

    def _count_error(self, key: str) -> None:
        self.stats.errors[key] = self.stats.errors.get(key, 0) + 1

    def _count_retry(self, state: RetryCallState) -> None:
        self.stats.retries += 1


def _found(record: dict[str, Any], imdb_id: str, media_type: MediaType) -> Found:
    """The record the lake keeps, whichever path fetched it: keyed by the id asked for, TMDB's
    own value (rarely another id, or null) kept beside it as ``tmdb_imdb_id``."""
    if record.get("imdb_id", imdb_id) != imdb_id:
        record["tmdb_imdb_id"] = record["imdb_id"]
    record["imdb_id"] = imdb_id
    record.setdefault("media_type", media_type)
    return Found(record, media_type)


def _confirms(details: Mapping[str, Any], imdb_id: str, media_type: MediaType) -> bool:
    """Whether the details of a mapped TMDB id still belong to ``imdb_id``. A movie's say so
    (its ``imdb_id``; null means TMDB unlinked it); a series' only through an appended
    ``external_ids``, without which it is taken on trust."""
    if media_type == "movie":
        return details.get("imdb_id") == imdb_id
    extra = details.get("external_ids")
    return not isinstance(extra, Mapping) or extra.get("imdb_id") == imdb_id


def _pick(found: Mapping[str, Any], kind: Kind) -> tuple[MediaType, dict[str, Any]] | None:
    movies = found.get("movie_results") or []
    shows = found.get("tv_results") or []
    if kind in ("movie", "auto") and isinstance(movies, list) and movies:
        first = movies[0]
        if isinstance(first, dict):
            return "movie", first
    if kind in ("tv", "auto") and isinstance(shows, list) and shows:
        first = shows[0]
        if isinstance(first, dict):
            return "tv", first
    return None
