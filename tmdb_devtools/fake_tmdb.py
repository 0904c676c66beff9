"""A deterministic fake of the TMDB API v3, built on aiohttp.web.

Why a fake at all: the real API is rate limited, needs a key, changes data under our feet and
cannot be made to fail on demand. The engine's interesting code paths (429 handling, retries,
connection resets, timeouts, truncated bodies) only get exercised if something produces those
failures reliably. This module is that something, and it is used three ways:

1. in-process from pytest: ``async with FakeTmdb(FakeTmdbConfig(...)) as fake: fake.url``;
2. from the command line for demos and load tests: ``python -m tmdb_devtools.fake_tmdb --port 0``;
3. in its own process for benchmarks, so that the server's CPU time does not compete with the
   client under test (``/__stats`` reports what the server saw).

Data is derived from the IMDb id alone (see :func:`expected_kind`), so there is no storage and
any id can be served. As on TMDB, a title's details answer by TMDB id (``/3/movie/{n}``,
``/3/tv/{n}``), and ``/3/movie/{imdb_id}`` (undocumented) answers a movie's IMDb id with the
very body of ``/3/movie/{n}``; a series' or an unknown IMDb id there, and any IMDb id on
``/3/tv``, is a 404 (status_code 34). ``imdb_on_movie=False`` simulates TMDB dropping that
undocumented feature: every ``/3/movie/{imdb_id}`` is then a 404, while ``/find`` and the
details by TMDB id keep working.

Change lists (``/3/movie/changes``, ``/3/tv/changes``) follow :func:`changed_ids`, a rule
exported so that tests can compute the expected sets: TMDB id n of kind k is changed on day d
iff (1 <= n <= ``change_universe`` or n is in one of ``change_ranges``), ``kind_of_number(n)
== k`` and
``n % change_period == (d.toordinal() * 17) % change_period``; a title of ``removed_ids`` (of
kind k) is listed as changed every day, whatever ``change_universe`` says. A window
[start_date, end_date] (both days inclusive) lists the union over its days, each id once, in
ascending order, 100 per page (``{"id": n, "adult": false}`` items, ``"adult": null`` for
1 id in 31, as in TMDB's own example answers). As on TMDB the window
defaults to the last 24 hours (``today`` - 1 day to ``today``; an absent ``start_date`` is
end_date - 1 day, an absent ``end_date`` is ``today``), may span at most 14 days
(end_date - start_date <= 14 days, else 422 status_code 20; end_date before start_date too),
takes dates as YYYY-MM-DD only (else 400 status_code 23) and pages 1..500 only (else 400
status_code 22), even when ``total_pages`` and ``total_results`` report more. A title's
answers show its changes: from the day after each change, 3 more votes and another
popularity (:func:`changes_before`), so a refresh fetches records that differ. With the
default period of 49, which is coprime with 10, a title changes on 1 day in 49 and every last
digit, hence both kinds, gets changes every day. A title of ``removed_ids`` is gone as on
TMDB: its details (by TMDB id, and ``/3/movie/{imdb_id}``) are a 404 (status_code 34) and
``/find`` lists nothing for it.

Faults are drawn from ``random.Random(seed)``, so a run is reproducible for a given arrival
order of requests.

Only aiohttp and the standard library are used, so the module can be copied anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import math
import os
import random
import re
import signal
import socket
import string
import struct
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self

from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = [
    "CHANGES_EPOCH",
    "LONE_SURROGATE",
    "MALFORMED_RESPONSE",
    "SAMPLE_RANGES",
    "FakeTmdb",
    "FakeTmdbConfig",
    "FakeTmdbStats",
    "changed_ids",
    "changes_before",
    "expected_kind",
    "kind_of_number",
    "main",
    "make_app",
    "takes_part",
]

Kind = Literal["movie", "tv"]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

_IMDB_ID_RE: Final = re.compile(r"^tt(\d{7,})$")
_MAX_APPEND: Final = 20
_DEFAULT_LANGUAGE: Final = "en-US"
_DATE_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_CHANGES_PER_PAGE: Final = 100

_MAX_CHANGES_PAGE: Final = 500
_MAX_CHANGES_WINDOW: Final = timedelta(days=14)
#: kind_of_number(n) depends on n % 10 and n % 17 only, hence on n % 170.
_KIND_CYCLE: Final = 170
#: The first day :func:`changes_before` counts.
CHANGES_EPOCH: Final = date(2000, 1, 1)
#: The TMDB ids of the bundled samples (samples/movies.csv from 1,000,000, samples/series.csv
#: from 2,000,000): with ``change_ranges=SAMPLE_RANGES`` and ``change_universe=0`` the change
#: lists hold the samples' titles and nothing else (a few pages), as the demo runs it.
SAMPLE_RANGES: Final = ((1_000_000, 1_000_999), (2_000_000, 2_000_999))

# --- TMDB error bodies ---------------------------------------------------------------------
# The texts are the ones TMDB sends, so that an engine logging status_message shows what a
# human would see in production.
_ERR_AUTH: Final = (401, 7, "Invalid API key: You must be granted a valid key.")
_ERR_NOT_FOUND: Final = (404, 34, "The resource you requested could not be found.")
_ERR_PARAMS: Final = (400, 5, "Invalid parameters: Your request parameters are incorrect.")
_ERR_DATE_RANGE: Final = (
    422,
    20,
    "Invalid date range: Should be a range no longer than 14 days.",
)
_ERR_PAGE: Final = (
    400,
    22,
    "Invalid page: Pages start at 1 and max at 500. They are expected to be an integer.",
)
_ERR_DATE: Final = (400, 23, "Invalid date: Format needs to be YYYY-MM-DD.")
_ERR_APPEND: Final = (
    400,
    27,
    "Too many append to response objects: The maximum number of remote calls is 20.",
)
_ERR_RATE: Final = (
    429,
    25,
    "Your request count (#) is over the allowed limit of (40).",
)
_ERR_5XX: Final[dict[int, tuple[int, int, str]]] = {
    500: (500, 11, "Internal error: Something went wrong, contact TMDb."),
    502: (502, 43, "Couldn't connect to the backend server."),
    503: (503, 46, "The API is undergoing maintenance. Try again later."),
    504: (504, 24, "Your request to the backend server timed out. Try again."),
}

_FAULT_KINDS: Final = (
    "burst_429", "reset", "5xx", "slow", "bad_json", "fault_id", "malformed", "surrogate",
)  # fmt: skip

#: What the malformed fault sends instead of a response, then it closes the connection: the
#: status code is not a number, so aiohttp's client parser rejects the answer (aiohttp raises
#: ``ClientResponseError``, status 400, "Bad status line"), as it would a broken proxy's.
MALFORMED_RESPONSE: Final = b"HTTP/1.1 2x0 Malformed\r\nContent-Length: 2\r\n\r\n{}"
#: What a title of ``surrogate_ids`` gets at the end of its ``overview``: half of an emoji's
#: UTF-16 pair. JSON allows the escape and Python parses it, but the string cannot be encoded
#: as UTF-8 until something escapes it again.
LONE_SURROGATE: Final = "\ud83d"


def expected_kind(imdb_id: str) -> Kind | None:
    """Return what the fake server will say ``imdb_id`` is: ``"movie"``, ``"tv"`` or ``None``.

    Exported so that tests and sample generators predict the server's answer from the same
    rule instead of re-implementing it (and drifting). The rule, for ``tt`` + digits = n:
    n % 17 == 0 -> unknown; n % 10 in (7, 8, 9) -> TV series with tv id n; else movie id n.
    Anything that is not ``tt`` followed by at least 7 digits is unknown, as on TMDB.
    """
    match = _IMDB_ID_RE.match(imdb_id)
    if match is None:
        return None
    return kind_of_number(int(match.group(1)))


def _numbers(imdb_ids: frozenset[str]) -> frozenset[int]:
    """The title numbers of ``imdb_ids``: the fake's TMDB id of ``tt`` + n is n."""
    return frozenset(int(m.group(1)) for i in imdb_ids if (m := _IMDB_ID_RE.match(i)))


def kind_of_number(n: int) -> Kind | None:
    """The kind rule on the numeric part; shared by /find and the /movie and /tv lookups."""
    if n % 17 == 0:
        return None
    if n % 10 in (7, 8, 9):
        return "tv"
    return "movie"


# --- configuration -------------------------------------------------------------------------


def _change_adult(n: int) -> bool | None:
    """A change-list item's ``adult``, as TMDB's own examples give it: mostly false, some
    null (3 of 100 items in ``/3/movie/changes``'s example, against the schema's boolean;
    see docs/tmdb-api.md, "Where TMDB's examples break its schema")."""
    return None if n % 31 == 0 else False


@dataclass(frozen=True)
class FakeTmdbConfig:
    """Behaviour knobs of the fake server; every field is also a CLI flag.

    Frozen so that a running server's behaviour cannot change under a test; build a new
    server to change it. Probabilities are per /3 request and independent of each other.
    """

    token: str | None = None
    """Accepted Bearer token / api_key. ``None`` accepts any request, even unauthenticated."""
    latency: float = 0.0
    """Seconds added to every /3 response that passes the rate and connection gates."""
    latency_jitter: float = 0.0
    """Extra latency drawn uniformly from [0, latency_jitter] per request."""
    rate_limit: float | None = None
    """Requests/s over a sliding window; above it -> 429 (status_code 25)."""
    retry_after: float | None = None
    """Retry-After seconds sent with every 429; ``None`` sends no header (TMDB is unreliable)."""
    max_connections: int | None = None
    """Concurrent in-flight /3 requests allowed; the one above it gets a 429 at once.

    Only bites when requests overlap on the server, i.e. with ``latency`` > 0 (see
    :attr:`FakeTmdbStats.max_in_flight`)."""
    fault_5xx: float = 0.0
    """Probability of a 500/502/503/504 with a TMDB error body."""
    fault_reset: float = 0.0
    """Probability of aborting the TCP connection (RST) without any response."""
    fault_bad_json: float = 0.0
    """Probability that a 200 body is truncated (still Content-Type application/json)."""
    fault_slow: float = 0.0
    """Probability of waiting ``slow_seconds`` before answering (to trip client timeouts)."""
    slow_seconds: float = 30.0
    burst_429: float = 0.0
    """Probability of a 429 regardless of the actual rate (CDN hiccup)."""
    fault_ids: frozenset[str] = field(default_factory=frozenset)
    """IMDb ids that always answer 503, to make "retries exhausted" deterministic: on /find,
    on /3/movie/{imdb_id} and on their details by TMDB id, whichever way a client asks."""
    fault_malformed: float = 0.0
    """Probability of a malformed HTTP answer (:data:`MALFORMED_RESPONSE`, then the connection
    closes) instead of any response. Drawn from its own RNG stream, so enabling it leaves
    the other faults of a seed where they were."""
    malformed_ids: frozenset[str] = field(default_factory=frozenset)
    """IMDb ids that always get a malformed HTTP answer, by any path (as ``fault_ids``)."""
    surrogate_ids: frozenset[str] = field(default_factory=frozenset)
    """IMDb ids whose title ends its ``overview`` with a lone surrogate escape (raw JSON
    ``"\\ud83d"``, :data:`LONE_SURROGATE`), in /find items and details alike."""
    imdb_on_movie: bool = True
    """Whether ``/3/movie/{imdb_id}`` answers a movie's IMDb id (TMDB does, undocumented) with
    the body of ``/3/movie/{tmdb_id}``. ``False`` simulates TMDB dropping the feature: every
    ``/3/movie/tt...`` is a 404 (status_code 34), movie or not, while ``/find`` and the details
    by TMDB id work as before. ``/3/tv/{imdb_id}`` is a 404 either way, as on TMDB."""
    change_period: int = 49
    """A title is in the change lists on 1 day in ``change_period`` (see :func:`changed_ids`).
    49 is coprime with 10, so every last digit, hence both kinds, gets changes every day."""
    change_universe: int = 1_500_000
    """TMDB ids 1..change_universe take part in the change lists."""
    change_ranges: tuple[tuple[int, int], ...] = ()
    """More TMDB ids that take part in the change lists: each ``(first, last)``, both included
    (the demo's: :data:`SAMPLE_RANGES`, the bundled samples' ids, with ``change_universe`` 0)."""
    removed_ids: frozenset[str] = field(default_factory=frozenset)
    """IMDb ids of titles TMDB removed: their details (by TMDB id, or ``/3/movie/{imdb_id}``)
    are a 404 (status_code 34), ``/find`` lists nothing for them, and the change lists of
    their kind list them every day."""
    today: date | None = None
    """The fake's "today", the end of the change lists' default window; ``None`` = UTC today."""
    seed: int = 0

    def __post_init__(self) -> None:
        """Fail at construction, not on the first request, when a knob is out of range."""
        # Accept any iterable of ids (list, set) but store a frozenset so the config stays
        # hashable and immutable.
        for name in ("fault_ids", "malformed_ids", "surrogate_ids", "removed_ids"):
            if not isinstance(getattr(self, name), frozenset):
                object.__setattr__(self, name, frozenset(getattr(self, name)))
        probabilities = (
            "fault_5xx", "fault_reset", "fault_bad_json", "fault_slow", "burst_429",
            "fault_malformed",
        )  # fmt: skip
        for name in probabilities:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
        for name in ("latency", "latency_jitter", "slow_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.rate_limit is not None and not self.rate_limit > 0:
            raise ValueError(f"rate_limit must be > 0 or None, got {self.rate_limit!r}")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError(f"retry_after must be >= 0 or None, got {self.retry_after!r}")
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError(f"max_connections must be >= 1 or None, got {self.max_connections}")
        if self.change_period < 1:
            raise ValueError(f"change_period must be >= 1, got {self.change_period!r}")
        if self.change_universe < 0:
            raise ValueError(f"change_universe must be >= 0, got {self.change_universe!r}")
        for pair in self.change_ranges:
            if len(pair) != 2 or not 1 <= pair[0] <= pair[1]:
                raise ValueError(
                    f"change_ranges: expected (first, last), 1 <= first <= last, got {pair!r}"
                )
        if self.today is not None and not isinstance(self.today, date):
            raise ValueError(f"today must be a datetime.date or None, got {self.today!r}")


# --- change lists --------------------------------------------------------------------------


def changed_ids(kind: Kind, start: date, end: date, config: FakeTmdbConfig) -> list[int]:
    """The TMDB ids of ``kind`` that ``/3/{kind}/changes`` lists for [start, end], ascending.

    The rule (also in the module docstring): TMDB id n of kind ``kind`` is changed on day d
    iff (1 <= n <= ``config.change_universe`` or n is in one of ``config.change_ranges``),
    ``kind_of_number(n) == kind`` and
    ``n % config.change_period == (d.toordinal() * 17) % config.change_period``; a title of
    ``config.removed_ids`` of that kind is changed every day. Both days are inclusive; the
    window lists the union over its days, each id once. ``end`` before ``start`` is empty.

    Built from arithmetic progressions, never a scan of the universe: the kind of n depends
    on n % 170 only, so the ids of one day's residue r are a few progressions of step
    lcm(period, 170), one per start x < lcm with x % period == r and the right kind.
    """
    period, universe = config.change_period, config.change_universe
    days = (end - start).days + 1
    # The residue of a day repeats every `period` days, so a longer window adds nothing.
    residues = {(start.toordinal() + i) * 17 % period for i in range(min(max(days, 0), period))}
    cycle = math.lcm(period, _KIND_CYCLE)
    starts = [
        x for r in residues for x in range(r, cycle, period) if kind_of_number(x) == kind
    ]  # x >= 1: kind_of_number(0) is None
    ids: list[int] = []
    for first in starts:
        ids.extend(range(first, universe + 1, cycle))
    for low, high in config.change_ranges:
        for first in starts:
            start_at = low + (first - low) % cycle  # the first id >= low of this progression
            ids.extend(n for n in range(start_at, high + 1, cycle) if n > universe)
    removed = [n for n in _numbers(config.removed_ids) if n >= 1 and kind_of_number(n) == kind]
    if removed and residues:
        return sorted(set(ids).union(removed))
    if config.change_ranges:  # ranges may overlap each other
        return sorted(set(ids))
    ids.sort()
    return ids


def takes_part(n: int, config: FakeTmdbConfig) -> bool:
    """Whether TMDB id ``n`` is ever in the change lists by the rule (``removed_ids`` aside)."""
    return 1 <= n <= config.change_universe or any(
        low <= n <= high for low, high in config.change_ranges
    )


def changes_before(n: int, day: date, config: FakeTmdbConfig) -> int:
    """How many times title ``n`` changed from :data:`CHANGES_EPOCH` to the day before ``day``
    (0 for a title outside the change lists). A title's details and ``/find`` item are the
    ones of that count (see :func:`_core`): a title fetched after a day it changed shows
    more votes and another popularity than before, as on TMDB, while a title that did not
    change answers exactly as before. Changes of ``day`` itself show from the next day on: a
    title is fetched again by a refresh, which reads the change lists of days that are over.
    """
    if not takes_part(n, config):
        return 0
    return _changes_before(n % config.change_period, day, config.change_period)


@functools.lru_cache(maxsize=4096)
def _changes_before(residue: int, day: date, period: int) -> int:
    first, last = CHANGES_EPOCH.toordinal(), day.toordinal() - 1
    count = 0
    for offset in range(min(period, max(0, last - first + 1))):
        ordinal = first + offset
        if ordinal * 17 % period == residue:
            count += (last - ordinal) // period + 1
    return count


# --- statistics ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeTmdbStats:
    """A snapshot of what the server saw; ``as_dict()`` is exactly the ``/__stats`` JSON.

    Only API traffic is counted (everything except ``/__stats`` and ``/__reset``), so that
    polling the stats does not disturb them.
    """

    total_requests: int
    status_counts: dict[int, int]
    """Responses actually produced, by HTTP status (resets and cancellations have none)."""
    throttled: int
    """Number of 429 responses (rate limit, connection limit and burst_429 together)."""
    resets: int
    """Connections aborted by the reset fault."""
    cancelled: int
    """Requests whose client went away while the handler was still running (e.g. timeout)."""
    faults: dict[str, int]
    """Injected faults by kind: burst_429, reset, 5xx, slow, bad_json, fault_id, malformed,
    surrogate (titles served with a lone surrogate)."""
    path_counts: dict[str, int]
    in_flight: int
    max_in_flight: int
    """Most /3 requests being handled at the same time, rejected ones included.

    A request is "in flight" from arrival until its handler returns. With ``latency`` 0 a
    handler never yields, so this stays near 1 whatever the client does: give the server some
    latency (e.g. 0.05 s) to make the client's real concurrency visible here.
    """
    first_request_at: float | None
    """time.monotonic() at the first request's arrival (CLOCK_MONOTONIC is host-wide)."""
    last_request_at: float | None
    taken_at: float
    """time.monotonic() when this snapshot was taken: a poller that counts requests between
    two snapshots uses the server's clock, not the time the answer reached it."""

    def as_dict(self) -> dict[str, Any]:
        """JSON form; status codes become string keys, as JSON requires."""
        return {
            "total_requests": self.total_requests,
            "status_counts": {str(k): v for k, v in sorted(self.status_counts.items())},
            "throttled": self.throttled,
            "resets": self.resets,
            "cancelled": self.cancelled,
            "faults": dict(self.faults),
            "path_counts": dict(self.path_counts),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "first_request_at": self.first_request_at,
            "last_request_at": self.last_request_at,
            "taken_at": self.taken_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FakeTmdbStats:
        """Rebuild from ``/__stats`` JSON, for benchmarks that run the server in a subprocess."""
        return cls(
            total_requests=int(data["total_requests"]),
            status_counts={int(k): int(v) for k, v in data["status_counts"].items()},
            throttled=int(data["throttled"]),
            resets=int(data["resets"]),
            cancelled=int(data["cancelled"]),
            faults={str(k): int(v) for k, v in data["faults"].items()},
            path_counts={str(k): int(v) for k, v in data["path_counts"].items()},
            in_flight=int(data["in_flight"]),
            max_in_flight=int(data["max_in_flight"]),
            first_request_at=data["first_request_at"],
            last_request_at=data["last_request_at"],
            taken_at=float(data["taken_at"]),
        )


class _StatsCollector:
    """Mutable counters behind :class:`FakeTmdbStats`; only touched from the event loop."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        """Clear counters but keep the live in-flight gauge, which is still true after a reset."""
        self.total = 0
        self.status_counts: dict[int, int] = {}
        self.throttled = 0
        self.resets = 0
        self.cancelled = 0
        self.faults: dict[str, int] = dict.fromkeys(_FAULT_KINDS, 0)
        self.path_counts: dict[str, int] = {}
        self.max_in_flight = self.in_flight
        self.first_at: float | None = None
        self.last_at: float | None = None

    def arrived(self, path: str) -> None:
        # Wall-clock monotonic on purpose, not the injectable rate-limit clock: these
        # timestamps are compared with the client's own time.monotonic() in benchmarks.
        now = time.monotonic()
        self.total += 1
        self.path_counts[path] = self.path_counts.get(path, 0) + 1
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def responded(self, status: int) -> None:
        self.status_counts[status] = self.status_counts.get(status, 0) + 1
        if status == 429:
            self.throttled += 1

    def fault(self, kind: str) -> None:
        self.faults[kind] = self.faults.get(kind, 0) + 1

    def snapshot(self) -> FakeTmdbStats:
        return FakeTmdbStats(
            total_requests=self.total,
            status_counts=dict(self.status_counts),
            throttled=self.throttled,
            resets=self.resets,
            cancelled=self.cancelled,
            faults=dict(self.faults),
            path_counts=dict(self.path_counts),
            in_flight=self.in_flight,
            max_in_flight=self.max_in_flight,
            first_request_at=self.first_at,
            last_request_at=self.last_at,
            taken_at=time.monotonic(),
        )


# --- rate limiting -------------------------------------------------------------------------


class _SlidingWindowLimiter:
    """Sliding-window log: at most ``capacity`` accepted requests in any ``window`` seconds.

    For an integer rate r this is "r requests accepted in the last 1.0 s", which is how a CDN
    ceiling behaves (no smoothing, bursts up to the limit pass). Fractional rates keep the
    same average by scaling the window (rate 0.5 -> 1 request per 2 s, 2.5 -> 2 per 0.8 s).
    """

    def __init__(self, rate: float, clock: Clock) -> None:
        self.capacity = max(1, math.floor(rate))
        self.window = self.capacity / rate
        self._clock = clock
        self._accepted: deque[float] = deque()

    def try_acquire(self) -> bool:
        now = self._clock()
        cutoff = now - self.window
        while self._accepted and self._accepted[0] <= cutoff:
            self._accepted.popleft()
        if len(self._accepted) >= self.capacity:
            return False
        self._accepted.append(now)
        return True


# --- deterministic synthetic data ----------------------------------------------------------

_MOVIE_GENRES: Final = {
    28: "Action",
    12: "Adventure",
    16: "Animation",
    35: "Comedy",
    80: "Crime",
    99: "Documentary",
    18: "Drama",
    10751: "Family",
    14: "Fantasy",
    36: "History",
    27: "Horror",
    10402: "Music",
    9648: "Mystery",
    10749: "Romance",
    878: "Science Fiction",
    53: "Thriller",
    10752: "War",
    37: "Western",
}
_TV_GENRES: Final = {
    10759: "Action & Adventure",
    16: "Animation",
    35: "Comedy",
    80: "Crime",
    99: "Documentary",
    18: "Drama",
    10751: "Family",
    10762: "Kids",
    9648: "Mystery",
    10763: "News",
    10764: "Reality",
    10765: "Sci-Fi & Fantasy",
    10766: "Soap",
    10767: "Talk",
    10768: "War & Politics",
    37: "Western",
}
# iso_639_1 -> (english_name, native name, iso_3166_1, country name, weight)
_LANGUAGES: Final = {
    "en": ("English", "English", "US", "United States of America", 60),
    "fr": ("French", "Français", "FR", "France", 6),
    "ja": ("Japanese", "日本語", "JP", "Japan", 6),
    "ko": ("Korean", "한국어/조선말", "KR", "South Korea", 5),
    "es": ("Spanish", "Español", "ES", "Spain", 6),
    "de": ("German", "Deutsch", "DE", "Germany", 5),
    "it": ("Italian", "Italiano", "IT", "Italy", 4),
    "hi": ("Hindi", "हिन्दी", "IN", "India", 4),
    "pt": ("Portuguese", "Português", "BR", "Brazil", 4),
}
_ADJECTIVES: Final = (
    "Silent", "Crimson", "Last", "Hidden", "Broken", "Golden", "Endless", "Frozen", "Wild",
    "Distant", "Electric", "Forgotten", "Midnight", "Hollow", "Restless", "Burning",
)  # fmt: skip
_NOUNS: Final = (
    "River", "Empire", "Garden", "Signal", "Harbor", "Witness", "Frontier", "Orchard",
    "Machine", "Summer", "Lighthouse", "Kingdom", "Stranger", "Archive", "Tide", "Circus",
)  # fmt: skip
_FIRST_NAMES: Final = (
    "Ana", "Bruno", "Chloé", "Daniel", "Emi", "Farah", "Gustavo", "Hana", "Ivan", "Julia",
    "Kenji", "Lucía", "Marco", "Nadia", "Omar", "Priya", "Rafael", "Sofia", "Tomás", "Yuna",
)  # fmt: skip
_LAST_NAMES: Final = (
    "Almeida", "Becker", "Costa", "Dubois", "Endo", "Fischer", "García", "Haddad", "Ito",
    "Kim", "Lopes", "Moreau", "Novak", "Okafor", "Park", "Rossi", "Silva", "Tanaka",
)  # fmt: skip
_KEYWORDS: Final = (
    "based on novel or book", "friendship", "revenge", "small town", "coming of age",
    "dystopia", "heist", "time travel", "family relationships", "road trip", "murder",
    "investigation", "love", "survival", "politics", "music", "sequel", "biography",
)  # fmt: skip
_NETWORKS: Final = (
    (49, "HBO", "US"), (213, "Netflix", "US"), (4, "BBC One", "GB"), (174, "AMC", "US"),
    (6, "NBC", "US"), (1, "Fuji TV", "JP"), (866, "tvN", "KR"), (285, "Canal+", "FR"),
    (31, "ZDF", "DE"), (533, "Rai 1", "IT"),
)  # fmt: skip
_COMPANIES: Final = (
    (4, "Paramount Pictures", "US"), (33, "Universal Pictures", "US"), (25, "20th Century Fox",
    "US"), (104, "Canal+", "FR"), (882, "Toho", "JP"), (7036, "CJ Entertainment", "KR"),
    (174, "Warner Bros. Pictures", "US"), (1632, "Lionsgate", "US"), (5358, "Medusa Film",
    "IT"), (12, "New Line Cinema", "US"),
)  # fmt: skip
_IMAGE_ALPHABET: Final = string.ascii_letters + string.digits


def _image_path(rng: random.Random) -> str:
    """TMDB image paths look like ``/AbC...27 chars.jpg``; clients join them to a base URL."""
    return "/" + "".join(rng.choices(_IMAGE_ALPHABET, k=27)) + ".jpg"


def _date(rng: random.Random, first_year: int = 1925, last_year: int = 2025) -> str:
    year, month, day = rng.randint(first_year, last_year), rng.randint(1, 12), rng.randint(1, 28)
    return f"{year:04d}-{month:02d}-{day:02d}"


def _person_name(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"


def _credit_id(rng: random.Random) -> str:
    return "".join(rng.choices("0123456789abcdef", k=24))


@dataclass(frozen=True)
class _Core:
    """Fields shared by a title's /find item and its details, so the two always agree."""

    kind: Kind
    tmdb_id: int
    title: str
    original_title: str
    original_language: str
    genre_ids: list[int]
    date: str
    popularity: float
    vote_average: float
    vote_count: int
    poster_path: str | None
    backdrop_path: str | None
    genre_name: str

    @property
    def imdb_id(self) -> str:
        return f"tt{self.tmdb_id:07d}"

    @property
    def country(self) -> str:
        return _LANGUAGES[self.original_language][2]


def _core(kind: Kind, n: int, changes: int = 0) -> _Core:
    """Derive a title's facts from its id alone, and what moves from the times it changed
    (:func:`changes_before`): 3 more votes at each change, and a popularity within 10 %
    of its base, another at each change.

    Seeded with a string (hashed with SHA-512 by ``random``, independent of PYTHONHASHSEED),
    so every process, and the server-wide fault seed, agree on the data for an id.
    """
    rng = random.Random(f"{kind}:{n}")
    genres = _MOVIE_GENRES if kind == "movie" else _TV_GENRES
    genre_ids = rng.sample(sorted(genres), k=rng.randint(1, 3))
    codes = list(_LANGUAGES)
    language = rng.choices(codes, weights=[_LANGUAGES[c][4] for c in codes])[0]
    title = f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
    if rng.random() < 0.3:
        title += f" {rng.randint(2, 4)}" if kind == "movie" else f": {rng.choice(_NOUNS)}"
    original = title if language == "en" else f"{title} ({_LANGUAGES[language][1]})"
    return _Core(
        kind=kind,
        tmdb_id=n,
        title=title,
        original_title=original,
        original_language=language,
        genre_ids=genre_ids,
        date=_date(rng, 1925 if kind == "movie" else 1950),
        popularity=round(rng.uniform(0.6, 180.0) * (1 + (changes * 37 % 21 - 10) / 100), 3),
        vote_average=round(rng.uniform(1.0, 9.4), 3),
        vote_count=rng.randint(0, 35000) + 3 * changes,
        poster_path=_image_path(rng) if rng.random() < 0.95 else None,
        backdrop_path=_image_path(rng) if rng.random() < 0.85 else None,
        genre_name=genres[genre_ids[0]],
    )


def _overview(core: _Core, language: str) -> str:
    """Mentions ``language`` so that tests can see which language the client asked for."""
    noun = "film" if core.kind == "movie" else "series"
    genre = core.genre_name.lower()
    article = "an" if genre[0] in "aeiou" else "a"
    return (
        f"{core.title} is {article} {genre} {noun} synthesised by the fake TMDB server "
        f"for id {core.tmdb_id} (language={language})."
    )


def _movie_item(core: _Core, language: str) -> dict[str, Any]:
    return {
        "adult": False,
        "backdrop_path": core.backdrop_path,
        "genre_ids": list(core.genre_ids),
        "id": core.tmdb_id,
        "original_language": core.original_language,
        "original_title": core.original_title,
        "overview": _overview(core, language),
        "release_date": core.date,
        "poster_path": core.poster_path,
        "popularity": core.popularity,
        "title": core.title,
        "video": False,
        "vote_average": core.vote_average,
        "vote_count": core.vote_count,
        "media_type": "movie",
    }


def _tv_item(core: _Core, language: str) -> dict[str, Any]:
    return {
        "adult": False,
        "backdrop_path": core.backdrop_path,
        "genre_ids": list(core.genre_ids),
        "id": core.tmdb_id,
        "origin_country": [core.country],
        "original_language": core.original_language,
        "original_name": core.original_title,
        "overview": _overview(core, language),
        "first_air_date": core.date,
        "poster_path": core.poster_path,
        "popularity": core.popularity,
        "name": core.title,
        "vote_average": core.vote_average,
        "vote_count": core.vote_count,
        "media_type": "tv",
    }


def _genres(core: _Core) -> list[dict[str, Any]]:
    names = _MOVIE_GENRES if core.kind == "movie" else _TV_GENRES
    return [{"id": g, "name": names[g]} for g in core.genre_ids]


def _companies(rng: random.Random) -> list[dict[str, Any]]:
    picked = rng.sample(_COMPANIES, k=rng.randint(1, 3))
    return [
        {
            "id": cid,
            "logo_path": _image_path(rng).replace(".jpg", ".png"),
            "name": name,
            "origin_country": country,
        }
        for cid, name, country in picked
    ]


def _language_fields(core: _Core) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    english, native, country, country_name, _ = _LANGUAGES[core.original_language]
    countries = [{"iso_3166_1": country, "name": country_name}]
    spoken = [{"english_name": english, "iso_639_1": core.original_language, "name": native}]
    return countries, spoken


def _movie_details(core: _Core, language: str) -> dict[str, Any]:
    rng = random.Random(f"movie-details:{core.tmdb_id}")
    countries, spoken = _language_fields(core)
    collection = None
    if rng.random() < 0.2:
        collection = {
            "id": 10_000 + core.tmdb_id,
            "name": f"{core.title} Collection",
            "poster_path": _image_path(rng),
            "backdrop_path": _image_path(rng),
        }
    budget = rng.choice((0, rng.randint(1, 250) * 1_000_000))
    return {
        "adult": False,
        "backdrop_path": core.backdrop_path,
        "belongs_to_collection": collection,
        "budget": budget,
        "genres": _genres(core),
        "homepage": rng.choice(("", f"https://www.example.com/films/{core.tmdb_id}")),
        "id": core.tmdb_id,
        "imdb_id": core.imdb_id,
        "origin_country": [core.country],
        "original_language": core.original_language,
        "original_title": core.original_title,
        "overview": _overview(core, language),
        "popularity": core.popularity,
        "poster_path": core.poster_path,
        "production_companies": _companies(rng),
        "production_countries": countries,
        "release_date": core.date,
        "revenue": int(budget * rng.uniform(0.0, 4.0)),
        "runtime": rng.randint(70, 190),
        "spoken_languages": spoken,
        "status": "Released",
        "tagline": f"Every {core.title.split()[-1].lower()} has a secret.",
        "title": core.title,
        "video": False,
        "vote_average": core.vote_average,
        "vote_count": core.vote_count,
    }


def _episode(
    rng: random.Random, core: _Core, season: int, number: int, air_date: str
) -> dict[str, Any]:
    return {
        "id": core.tmdb_id * 1000 + season * 100 + number,
        "name": f"Episode {number}",
        "overview": "",
        "vote_average": round(rng.uniform(5.0, 9.5), 1),
        "vote_count": rng.randint(0, 500),
        "air_date": air_date,
        "episode_number": number,
        "episode_type": "standard",
        "production_code": "",
        "runtime": rng.randint(22, 62),
        "season_number": season,
        "show_id": core.tmdb_id,
        "still_path": _image_path(rng),
    }


def _tv_details(core: _Core, language: str) -> dict[str, Any]:
    rng = random.Random(f"tv-details:{core.tmdb_id}")
    countries, spoken = _language_fields(core)
    first_year = int(core.date[:4])
    n_seasons = rng.randint(1, 8)
    per_season = [rng.randint(6, 24) for _ in range(n_seasons)]
    in_production = rng.random() < 0.4
    last_year = min(2025, first_year + n_seasons)
    last_air_date = _date(rng, last_year, last_year)
    seasons = []
    if rng.random() < 0.3:
        seasons.append(
            {
                "air_date": core.date,
                "episode_count": rng.randint(1, 3),
                "id": core.tmdb_id * 100,
                "name": "Specials",
                "overview": "",
                "poster_path": None,
                "season_number": 0,
                "vote_average": 0.0,
            }
        )
    for number, count in enumerate(per_season, start=1):
        seasons.append(
            {
                "air_date": f"{min(2025, first_year + number - 1):04d}{core.date[4:]}",
                "episode_count": count,
                "id": core.tmdb_id * 100 + number,
                "name": f"Season {number}",
                "overview": "",
                "poster_path": _image_path(rng),
                "season_number": number,
                "vote_average": round(rng.uniform(5.0, 9.0), 1),
            }
        )
    network_id, network_name, network_country = rng.choice(_NETWORKS)
    creator_rng = random.Random(f"tv-creator:{core.tmdb_id}")
    return {
        "adult": False,
        "backdrop_path": core.backdrop_path,
        "created_by": [
            {
                "id": creator_rng.randint(1, 4_000_000),
                "credit_id": _credit_id(creator_rng),
                "name": (name := _person_name(creator_rng)),
                "original_name": name,
                "gender": creator_rng.choice((1, 2)),
                "profile_path": _image_path(creator_rng),
            }
        ],
        "episode_run_time": [rng.choice((22, 24, 30, 45, 50, 60))],
        "first_air_date": core.date,
        "genres": _genres(core),
        "homepage": rng.choice(("", f"https://www.example.com/tv/{core.tmdb_id}")),
        "id": core.tmdb_id,
        "in_production": in_production,
        "languages": [core.original_language],
        "last_air_date": last_air_date,
        "last_episode_to_air": _episode(rng, core, n_seasons, per_season[-1], last_air_date),
        "next_episode_to_air": (
            _episode(rng, core, n_seasons + 1, 1, "2026-09-01") if in_production else None
        ),
        "name": core.title,
        "networks": [
            {
                "id": network_id,
                "logo_path": _image_path(rng).replace(".jpg", ".png"),
                "name": network_name,
                "origin_country": network_country,
            }
        ],
        "number_of_episodes": sum(per_season),
        "number_of_seasons": n_seasons,
        "origin_country": [core.country],
        "original_language": core.original_language,
        "original_name": core.original_title,
        "overview": _overview(core, language),
        "popularity": core.popularity,
        "poster_path": core.poster_path,
        "production_companies": _companies(rng),
        "production_countries": countries,
        "seasons": seasons,
        "spoken_languages": spoken,
        "status": "Returning Series" if in_production else rng.choice(("Ended", "Canceled")),
        "tagline": "",
        "type": rng.choice(("Scripted", "Scripted", "Miniseries", "Documentary", "Reality")),
        "vote_average": core.vote_average,
        "vote_count": core.vote_count,
    }


def _person(rng: random.Random) -> dict[str, Any]:
    name = _person_name(rng)
    return {
        "adult": False,
        "gender": rng.choice((0, 1, 2)),
        "id": rng.randint(1, 4_000_000),
        "known_for_department": "Acting",
        "name": name,
        "original_name": name,
        "popularity": round(rng.uniform(0.5, 60.0), 3),
        "profile_path": _image_path(rng) if rng.random() < 0.8 else None,
    }


def _credits(core: _Core) -> dict[str, Any]:
    rng = random.Random(f"{core.kind}-credits:{core.tmdb_id}")
    cast = []
    for order in range(rng.randint(3, 6)):
        person = _person(rng)
        if core.kind == "movie":
            person["cast_id"] = order + 1
        person.update(
            character=f"{rng.choice(_FIRST_NAMES)} {rng.choice(_NOUNS)}",
            credit_id=_credit_id(rng),
            order=order,
        )
        cast.append(person)
    crew = []
    for department, job in (
        ("Directing", "Director"),
        ("Writing", "Screenplay"),
        ("Production", "Producer"),
    )[: rng.randint(2, 3)]:
        person = _person(rng)
        person.update(
            known_for_department=department,
            credit_id=_credit_id(rng),
            department=department,
            job=job,
        )
        crew.append(person)
    return {"id": core.tmdb_id, "cast": cast, "crew": crew}


def _keywords(core: _Core) -> dict[str, Any]:
    """Movies use ``keywords``, TV uses ``results``: that asymmetry is real TMDB behaviour."""
    rng = random.Random(f"{core.kind}-keywords:{core.tmdb_id}")
    picked = rng.sample(_KEYWORDS, k=rng.randint(1, 5))
    items = [{"id": 1000 + _KEYWORDS.index(name), "name": name} for name in picked]
    key = "keywords" if core.kind == "movie" else "results"
    return {"id": core.tmdb_id, key: items}


def _external_ids(core: _Core) -> dict[str, Any]:
    rng = random.Random(f"{core.kind}-external:{core.tmdb_id}")
    ids: dict[str, Any] = {"id": core.tmdb_id, "imdb_id": core.imdb_id}
    if core.kind == "tv":
        ids.update(
            freebase_mid=None,
            freebase_id=None,
            tvdb_id=rng.randint(70_000, 450_000),
            tvrage_id=None,
        )
    ids.update(
        wikidata_id=f"Q{rng.randint(1000, 130_000_000)}" if rng.random() < 0.7 else None,
        facebook_id=None,
        instagram_id=None,
        twitter_id=None,
    )
    return ids


_APPENDERS: Final[dict[str, Callable[[_Core], dict[str, Any]]]] = {
    "credits": _credits,
    "keywords": _keywords,
    "external_ids": _external_ids,
}


# --- HTTP layer ----------------------------------------------------------------------------


def _error(spec: tuple[int, int, str], headers: dict[str, str] | None = None) -> web.Response:
    status, code, message = spec
    body = {"success": False, "status_code": code, "status_message": message}
    return web.json_response(body, status=status, headers=headers)


def _format_retry_after(seconds: float) -> str:
    """Integral values as delay-seconds (RFC 9110); fractions kept so tests can stay fast."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


@dataclass(frozen=True)
class _Roll:
    """One request's random draws. Always drawn in full, so the RNG sequence per request is
    fixed and a seed reproduces the same faults whichever knobs are enabled."""

    jitter: float
    burst_429: bool
    reset: bool
    fault_5xx: int | None
    slow: bool
    bad_json: bool
    malformed: bool


class _ConnectionAborted(Exception):
    """Internal signal from the reset fault to the middleware: no status to record."""


class _Server:
    """State and handlers of one app instance (config, RNG, limiter, stats)."""

    def __init__(self, config: FakeTmdbConfig, clock: Clock, sleep: Sleep) -> None:
        self.config = config
        self.stats = _StatsCollector()
        self._rng = random.Random(config.seed)
        # A stream of its own: the draws of the older faults stay what a seed always gave.
        self._malformed_rng = random.Random(f"{config.seed}:malformed")
        self._surrogates = _numbers(config.surrogate_ids)
        self._fault_numbers = _numbers(config.fault_ids)
        self._malformed_numbers = _numbers(config.malformed_ids)
        self._removed_numbers = _numbers(config.removed_ids)
        # Every page of a window asks for the same list: compute it once per window.
        self._changed = functools.lru_cache(maxsize=16)(self._changed_ids)
        self._sleep = sleep
        self._limiter = (
            _SlidingWindowLimiter(config.rate_limit, clock) if config.rate_limit else None
        )
        self._retry_headers = (
            {"Retry-After": _format_retry_after(config.retry_after)}
            if config.retry_after is not None
            else None
        )

    # -- gates and faults --

    def _authorized(self, request: web.Request) -> bool:
        token = self.config.token
        if token is None:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip() == token:
            return True
        return request.query.get("api_key") == token

    def _roll(self) -> _Roll:
        cfg, rng = self.config, self._rng
        jitter = rng.random() * cfg.latency_jitter
        burst = rng.random() < cfg.burst_429
        reset = rng.random() < cfg.fault_reset
        fail = rng.random() < cfg.fault_5xx
        status = rng.choice((500, 502, 503, 504))
        slow = rng.random() < cfg.fault_slow
        bad_json = rng.random() < cfg.fault_bad_json
        malformed = self._malformed_rng.random() < cfg.fault_malformed
        return _Roll(jitter, burst, reset, status if fail else None, slow, bad_json, malformed)

    def _throttle(self) -> web.Response:
        return _error(_ERR_RATE, headers=self._retry_headers)

    @staticmethod
    def _abort(request: web.Request) -> None:
        """Drop the connection with a TCP RST and no response bytes.

        SO_LINGER(on, 0) turns close() into a reset, which is what a client sees when a load
        balancer kills a connection; a plain close would be a clean FIN. aiohttp then fails
        quietly writing our placeholder response to the closed transport.
        """
        transport = request.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    def _malformed(self, request: web.Request) -> None:
        """Send :data:`MALFORMED_RESPONSE` instead of a response and close the connection.

        The bytes go straight to the transport, ahead of anything aiohttp would write; the
        close is a clean FIN after them, so the client reads them and its parser fails
        (a reset could reach it first and look like the reset fault).
        """
        self.stats.fault("malformed")
        transport = request.transport
        if transport is not None and not transport.is_closing():
            transport.write(MALFORMED_RESPONSE)
            transport.close()
        raise _ConnectionAborted

    async def _api(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Everything between "request arrived" and "route handler", in CDN-then-backend order.

        Connection and rate gates come first and answer at once (a CDN rejects before the
        backend does any work), then auth, simulated latency, faults, and the route.
        """
        cfg = self.config
        if cfg.max_connections is not None and self.stats.in_flight > cfg.max_connections:
            return self._throttle()
        if self._limiter is not None and not self._limiter.try_acquire():
            return self._throttle()
        if not self._authorized(request):
            return _error(_ERR_AUTH)
        roll = self._roll()
        delay = cfg.latency + roll.jitter
        if delay > 0:
            await self._sleep(delay)
        if roll.burst_429:
            self.stats.fault("burst_429")
            return self._throttle()
        if roll.reset:
            self.stats.fault("reset")
            self.stats.resets += 1
            self._abort(request)
            raise _ConnectionAborted
        if roll.malformed:
            self._malformed(request)
        if roll.fault_5xx is not None:
            self.stats.fault("5xx")
            return _error(_ERR_5XX[roll.fault_5xx])
        if roll.slow:
            self.stats.fault("slow")
            await self._sleep(cfg.slow_seconds)
        response = await handler(request)
        if roll.bad_json and response.status == 200 and isinstance(response, web.Response):
            self.stats.fault("bad_json")
            body = response.body
            raw = body if isinstance(body, bytes) else b"{}"
            return web.Response(
                body=raw[: max(1, len(raw) // 2)], status=200, content_type="application/json"
            )
        return response

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count API traffic and apply gates/faults; control endpoints pass straight through."""
        if request.path in ("/__stats", "/__reset"):
            return await handler(request)
        stats = self.stats
        stats.arrived(request.path)
        try:
            response = await self._api(request, handler)
        except _ConnectionAborted:
            # Something must be returned; writing it fails silently on the aborted (or, for
            # a malformed answer, closing) transport.
            return web.Response(status=500)
        except web.HTTPException as exc:
            stats.responded(exc.status)
            raise
        except asyncio.CancelledError:
            # handler_cancellation=True: the client disconnected (typically its timeout).
            stats.cancelled += 1
            raise
        finally:
            stats.in_flight -= 1
        stats.responded(response.status)
        return response

    # -- routes --

    async def find(self, request: web.Request) -> web.Response:
        if request.query.get("external_source") != "imdb_id":
            return _error(_ERR_PARAMS)
        external_id = request.match_info["external_id"]
        if external_id in self.config.fault_ids:
            self.stats.fault("fault_id")
            return _error(_ERR_5XX[503])
        if external_id in self.config.malformed_ids:
            self._malformed(request)
        language = request.query.get("language", _DEFAULT_LANGUAGE)
        movies: list[dict[str, Any]] = []
        shows: list[dict[str, Any]] = []
        match = _IMDB_ID_RE.match(external_id)
        if match is not None:
            n = int(match.group(1))
            kind = kind_of_number(n) if n not in self._removed_numbers else None
            if kind == "movie":
                core = _core("movie", n, self._change_count(n))
                movies.append(self._surrogate(n, _movie_item(core, language)))
            elif kind == "tv":
                core = _core("tv", n, self._change_count(n))
                shows.append(self._surrogate(n, _tv_item(core, language)))
        return web.json_response(
            {
                "movie_results": movies,
                "person_results": [],
                "tv_results": shows,
                "tv_episode_results": [],
                "tv_season_results": [],
            }
        )

    async def movie(self, request: web.Request) -> web.Response:
        return self._details(request, "movie")

    async def tv(self, request: web.Request) -> web.Response:
        return self._details(request, "tv")

    def _details(self, request: web.Request, kind: Kind) -> web.Response:
        raw_id = request.match_info["id"]
        asked = _IMDB_ID_RE.match(raw_id)
        title = int(raw_id) if raw_id.isdigit() else int(asked.group(1)) if asked else None
        if title in self._fault_numbers:
            self.stats.fault("fault_id")
            return _error(_ERR_5XX[503])
        if title in self._malformed_numbers:
            self._malformed(request)
        n: int | None = None
        if raw_id.isdigit():
            n = int(raw_id)
        elif kind == "movie" and self.config.imdb_on_movie and (match := _IMDB_ID_RE.match(raw_id)):
            # /3/movie/{imdb_id} is undocumented but works on TMDB (for movies only), unless
            # the config says TMDB dropped it (imdb_on_movie=False).
            n = int(match.group(1))
        if n is None or kind_of_number(n) != kind or n in self._removed_numbers:
            return _error(_ERR_NOT_FOUND)
        names = [p.strip() for p in request.query.get("append_to_response", "").split(",")]
        names = [p for p in names if p]
        if len(names) > _MAX_APPEND:
            return _error(_ERR_APPEND)
        language = request.query.get("language", _DEFAULT_LANGUAGE)
        core = _core(kind, n, self._change_count(n))
        body = _movie_details(core, language) if kind == "movie" else _tv_details(core, language)
        for name in names:
            appender = _APPENDERS.get(name)
            body[name] = appender(core) if appender is not None else {}
        return web.json_response(self._surrogate(n, body))

    async def movie_changes(self, request: web.Request) -> web.Response:
        return self._changes(request, "movie")

    async def tv_changes(self, request: web.Request) -> web.Response:
        return self._changes(request, "tv")

    def _changes(self, request: web.Request, kind: Kind) -> web.Response:
        """One page of the change list; when several parameters are wrong, dates win."""
        query = request.query
        today = self._today()
        end = _query_date(query.get("end_date"), today)
        start = _query_date(
            query.get("start_date"), end - timedelta(days=1) if end is not None else None
        )
        if end is None or start is None:
            return _error(_ERR_DATE)
        if not timedelta(0) <= end - start <= _MAX_CHANGES_WINDOW:
            return _error(_ERR_DATE_RANGE)
        page = _query_page(query.get("page"))
        if page is None:
            return _error(_ERR_PAGE)
        ids = self._changed(kind, start, end)
        first = (page - 1) * _CHANGES_PER_PAGE
        return web.json_response(
            {
                "results": [
                    {"id": n, "adult": _change_adult(n)}
                    for n in ids[first : first + _CHANGES_PER_PAGE]
                ],
                "page": page,
                # TMDB answers an empty window as one empty page, and reports the full count
                # even beyond the pages it lets a client read (1..500).
                "total_pages": max(1, math.ceil(len(ids) / _CHANGES_PER_PAGE)),
                "total_results": len(ids),
            }
        )

    def _today(self) -> date:
        return self.config.today or datetime.now(UTC).date()

    def _change_count(self, n: int) -> int:
        """The changes a title answered now shows (:func:`changes_before` today)."""
        return changes_before(n, self._today(), self.config)

    def _changed_ids(self, kind: Kind, start: date, end: date) -> list[int]:
        """:func:`changed_ids` under this server's config; cached in ``self._changed``."""
        return changed_ids(kind, start, end, self.config)

    def _surrogate(self, n: int, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with :data:`LONE_SURROGATE` after its overview when ``n`` is one of
        ``surrogate_ids``; ``json.dumps`` (ASCII) writes it as the escape ``\\ud83d``."""
        if n in self._surrogates:
            self.stats.fault("surrogate")
            body["overview"] = f"{body['overview']} {LONE_SURROGATE}"
        return body

    async def not_found(self, request: web.Request) -> web.Response:
        """Unknown /3 paths get TMDB's JSON 404 rather than aiohttp's plain-text one."""
        return _error(_ERR_NOT_FOUND)

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.snapshot().as_dict())

    async def post_reset(self, request: web.Request) -> web.Response:
        self.stats.reset()
        return web.json_response({"success": True})


def _query_date(raw: str | None, default: date | None) -> date | None:
    """A YYYY-MM-DD query parameter (``default`` when absent); ``None`` when malformed."""
    if raw is None:
        return default
    if not _DATE_RE.fullmatch(raw):
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:  # 2024-02-30 and the like
        return None


def _query_page(raw: str | None) -> int | None:
    """The ``page`` query parameter (1 when absent); ``None`` unless an integer in 1..500."""
    if raw is None:
        return 1
    if not (raw.isascii() and raw.isdigit()):
        return None
    page = int(raw)
    return page if 1 <= page <= _MAX_CHANGES_PAGE else None


_STATE: Final = web.AppKey("fake_tmdb_state", _Server)


def make_app(
    config: FakeTmdbConfig | None = None,
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
) -> web.Application:
    """Build the aiohttp application (for aiohttp's TestServer, gunicorn, or :class:`FakeTmdb`).

    ``clock`` drives the rate-limit window and ``sleep`` every simulated delay (latency,
    fault_slow). Both are injectable so tests can freeze time or hold requests in flight
    deterministically instead of racing real timers.
    """
    server = _Server(config or FakeTmdbConfig(), clock, sleep)
    app = web.Application(middlewares=[server.middleware])
    app[_STATE] = server
    app.router.add_get("/3/find/{external_id}", server.find)
    # The change lists before the details, or "changes" would be taken for an id.
    app.router.add_get("/3/movie/changes", server.movie_changes)
    app.router.add_get("/3/tv/changes", server.tv_changes)
    app.router.add_get("/3/movie/{id}", server.movie)
    app.router.add_get("/3/tv/{id}", server.tv)
    app.router.add_get("/3/{tail:.*}", server.not_found)
    app.router.add_get("/__stats", server.get_stats)
    app.router.add_post("/__reset", server.post_reset)
    return app


def _base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class FakeTmdb:
    """Runs :func:`make_app` on a real loopback socket inside the current event loop.

    A real socket (rather than mocking the client) is the point: the engine's aiohttp
    connector, timeouts and connection-error handling are exercised as in production.
    """

    def __init__(
        self,
        config: FakeTmdbConfig | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        shutdown_timeout: float = 1.0,
    ) -> None:
        self.config = config or FakeTmdbConfig()
        self.app = make_app(self.config, clock=clock, sleep=sleep)
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:41234``; add ``/3/...``."""
        if self._url is None:
            raise RuntimeError("FakeTmdb is not started")
        return self._url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 = a free port) and return the base URL."""
        if self._runner is not None:
            raise RuntimeError("FakeTmdb is already started")
        # access_log=None: logging every request would dominate load-test CPU time.
        # handler_cancellation=True: a client that times out stops the handler, as a real
        # server would, so stop() does not wait for a 30 s fault_slow sleep.
        runner = web.AppRunner(
            self.app,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=self._shutdown_timeout,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            actual_port = int(runner.addresses[0][1])
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._url = _base_url(host, actual_port)
        return self._url

    async def stop(self) -> None:
        """Close the listener and connections; in-flight handlers get ``shutdown_timeout``."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def stats(self) -> FakeTmdbStats:
        """Same content as ``GET /__stats``."""
        return self.app[_STATE].stats.snapshot()

    def reset_stats(self) -> None:
        """Same as ``POST /__reset``."""
        self.app[_STATE].stats.reset()


# --- command line --------------------------------------------------------------------------


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _id_range(text: str) -> tuple[tuple[int, int], ...]:
    """``FIRST-LAST`` (both included), or ``samples``: :data:`SAMPLE_RANGES`."""
    if text == "samples":
        return SAMPLE_RANGES
    first, sep, last = text.partition("-")
    if not (sep and first.isdigit() and last.isdigit() and 1 <= int(first) <= int(last)):
        raise argparse.ArgumentTypeError(f"must be FIRST-LAST, 1 <= FIRST <= LAST, got {text}")
    return ((int(first), int(last)),)


def _iso_date(text: str) -> date:
    parsed = _query_date(text, None)
    if parsed is None:
        raise argparse.ArgumentTypeError(f"must be a date YYYY-MM-DD, got {text}")
    return parsed


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tmdb_devtools.fake_tmdb",
        description="Deterministic fake TMDB API v3 server for demos, tests and load tests.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    add("--port", type=int, default=8765, help="port to bind; 0 picks a free one (default 8765)")
    add("--port-file", type=Path, help="write the bound port here (atomically) once listening")
    add("--token", help="required Bearer token / api_key (default: accept anything)")
    add("--latency", type=_non_negative, default=0.0, help="seconds added to each response")
    add("--latency-jitter", type=_non_negative, default=0.0, help="extra uniform [0, J] seconds")
    add("--rate-limit", type=_positive, help="requests/s over a sliding 1 s window, then 429")
    add("--retry-after", type=_non_negative, help="Retry-After seconds on 429 (default: none)")
    add("--max-connections", type=_positive_int, help="concurrent requests before 429")
    add("--fault-5xx", type=_probability, default=0.0, help="probability of 500/502/503/504")
    add("--fault-reset", type=_probability, default=0.0, help="probability of a TCP reset")
    add("--fault-bad-json", type=_probability, default=0.0, help="probability of truncated JSON")
    add("--fault-slow", type=_probability, default=0.0, help="probability of a slow answer")
    add("--slow-seconds", type=_non_negative, default=30.0, help="delay of a slow answer")
    add("--burst-429", type=_probability, default=0.0, help="probability of a spurious 429")
    add(
        "--fault-malformed",
        type=_probability,
        default=0.0,
        help="probability of a malformed HTTP answer (bad status line, then close)",
    )
    add(
        "--fault-ids",
        action="append",
        default=[],
        metavar="ID[,ID...]",
        help="IMDb ids whose /find always answers 503 (comma-separated, repeatable)",
    )
    add(
        "--malformed-ids",
        action="append",
        default=[],
        metavar="ID[,ID...]",
        help="IMDb ids whose /find always gets a malformed HTTP answer",
    )
    add(
        "--surrogate-ids",
        action="append",
        default=[],
        metavar="ID[,ID...]",
        help="IMDb ids whose overview ends with a lone surrogate escape (\\ud83d)",
    )
    add(
        "--no-imdb-on-movie",
        dest="imdb_on_movie",
        action="store_false",
        help="/3/movie/{imdb_id} answers 404 for every id, as if TMDB dropped the feature "
        "(/find and details by TMDB id still work)",
    )
    add(
        "--change-period",
        type=_positive_int,
        default=49,
        help="a title is in the change lists on 1 day in N (default 49)",
    )
    add(
        "--change-universe",
        type=_non_negative_int,
        default=1_500_000,
        help="TMDB ids 1..N take part in the change lists (default 1500000)",
    )
    add(
        "--change-range",
        dest="change_ranges",
        action="append",
        type=_id_range,
        default=[],
        metavar="FIRST-LAST",
        help="TMDB ids FIRST..LAST take part in the change lists too (repeatable); "
        "'samples' for the bundled samples' ids",
    )
    add(
        "--removed-ids",
        action="append",
        default=[],
        metavar="ID[,ID...]",
        help="IMDb ids of titles TMDB removed: 404 on details, absent from /find, "
        "in the change lists every day",
    )
    add(
        "--today",
        type=_iso_date,
        help="the fake's today (YYYY-MM-DD), end of the change lists' default window "
        "(default: UTC today)",
    )
    add("--seed", type=int, default=0, help="seed of the fault RNG (default 0)")
    return parser


def _id_list(chunks: list[str]) -> frozenset[str]:
    return frozenset(part.strip() for chunk in chunks for part in chunk.split(",") if part.strip())


def _config_from_args(args: argparse.Namespace) -> FakeTmdbConfig:
    return FakeTmdbConfig(
        token=args.token,
        latency=args.latency,
        latency_jitter=args.latency_jitter,
        rate_limit=args.rate_limit,
        retry_after=args.retry_after,
        max_connections=args.max_connections,
        fault_5xx=args.fault_5xx,
        fault_reset=args.fault_reset,
        fault_bad_json=args.fault_bad_json,
        fault_slow=args.fault_slow,
        slow_seconds=args.slow_seconds,
        burst_429=args.burst_429,
        fault_ids=_id_list(args.fault_ids),
        fault_malformed=args.fault_malformed,
        malformed_ids=_id_list(args.malformed_ids),
        surrogate_ids=_id_list(args.surrogate_ids),
        imdb_on_movie=args.imdb_on_movie,
        change_period=args.change_period,
        change_universe=args.change_universe,
        change_ranges=tuple(pair for ranges in args.change_ranges for pair in ranges),
        removed_ids=_id_list(args.removed_ids),
        today=args.today,
        seed=args.seed,
    )


def _write_atomically(path: Path, text: str) -> None:
    """Temp file + rename, so a script polling for the file never reads a partial port."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


async def _serve(config: FakeTmdbConfig, host: str, port: int, port_file: Path | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C still raises
            loop.add_signal_handler(signum, stop.set)
    fake = FakeTmdb(config)
    url = await fake.start(host, port)
    try:
        if port_file is not None:
            _write_atomically(port_file, f"{url.rsplit(':', 1)[1]}\n")
        print(f"fake TMDB listening on {url}", flush=True)
        await stop.wait()
    finally:
        await fake.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; ``python -m tmdb_devtools fake-tmdb ...`` can delegate here.

    Runs until SIGINT/SIGTERM and returns 0 on a clean shutdown, 1 if it cannot listen.
    """
    args = _build_parser().parse_args(list(argv) if argv is not None else None)
    config = _config_from_args(args)
    try:
        asyncio.run(_serve(config, args.host, args.port, args.port_file))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"fake TMDB: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.port_file is not None:
            # A stale port file would send the next run's wrapper script to a dead port.
            with contextlib.suppress(OSError):
                args.port_file.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
