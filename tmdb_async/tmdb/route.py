"""Which request a title starts with: TMDB's IMDb-id movie path, or ``/find``.

A movie costs one request by ``/3/movie/{imdb_id}`` (undocumented, answered like
``/3/movie/{tmdb_id}``) and two by ``/find`` then details. A series or an unknown id costs one
more when asked directly first: the direct call answers 404 and ``/find`` follows. So with
``m`` the share of movies among recent titles, direct-first costs ``m + 3t + 2n`` requests per
title against ``2m + 2t + n`` find-first (``t`` series, ``n`` unknown, in ``auto``; for
``movie``, every non-movie costs 2 against 1). Both reduce to one rule: **ask directly while
movies outnumber the rest** in a recent window. ``/find`` answers also say what a title is, so
the window keeps learning whichever order is in use.

TMDB may stop accepting IMDb ids on ``/movie``. A direct 404 for a title ``/find`` then shows
to be a movie is a *miss*; once misses reach :data:`MISSES_TO_STOP` and outnumber the hits
among recent direct calls that ended on a movie, the run goes back to find-first for good. The
cost of noticing is bounded by the ids already in flight: a few dozen titles at 3 requests.

Pure bookkeeping, no I/O: the client reports what it saw, this decides.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Final, Literal

log = logging.getLogger(__name__)

Seen = Literal["movie", "tv", "none"]

WINDOW: Final = 50
"""Titles whose kind decides the order; small enough to follow a file's sections."""
DIRECT_WINDOW: Final = 32
"""Recent direct calls that ended on a movie, to tell a working direct path from a dead one."""
MISSES_TO_STOP: Final = 5


class Router:
    """The request order for one run's titles; ``movies_possible`` is False for ``--kind tv``."""

    def __init__(self, movies_possible: bool) -> None:
        self._movies_possible = movies_possible
        self._kinds: deque[bool] = deque(maxlen=WINDOW)  # True: a movie
        self._movies = 0  # movies in _kinds
        self._direct: deque[bool] = deque(maxlen=DIRECT_WINDOW)  # True: a hit
        self._hits = 0  # hits in _direct
        self.stopped = False  # direct calls abandoned for this run

    def direct_first(self) -> bool:
        """Ask ``/3/movie/{imdb_id}`` before ``/find``? Yes while movies outnumber the rest
        (and on an empty window: movie files are the common case)."""
        if not self._movies_possible or self.stopped:
            return False
        return 2 * self._movies >= len(self._kinds)

    def saw(self, kind: Seen) -> None:
        """A title was resolved as ``kind`` (``none``: TMDB does not know it)."""
        kinds = self._kinds
        if len(kinds) == kinds.maxlen and kinds[0]:
            self._movies -= 1
        movie = kind == "movie"
        kinds.append(movie)
        self._movies += movie

    def direct(self, hit: bool) -> None:
        """A direct call ended on a movie: answered (``hit``), or 404 then found by /find."""
        calls = self._direct
        if len(calls) == calls.maxlen and calls[0]:
            self._hits -= 1
        calls.append(hit)
        self._hits += hit
        misses = len(calls) - self._hits
        if not self.stopped and misses >= MISSES_TO_STOP and misses > self._hits:
            self.stopped = True
            log.warning(
                "TMDB answered 404 on /3/movie/{imdb_id} for %d of the last %d movies that "
                "/find knows: going back to /find first for the rest of the run",
                misses,
                len(calls),
            )
