"""What a run tells whoever shows its progress: ids resolved, the total when known, and the
TMDB client's live counters (requests, 429s).

The engine takes ``progress: Callable[[int], None]``: it is called with the number of ids
*resolved* (answered by TMDB, found invalid, kept or skipped), as soon as they are, not when
their chunk is committed, so a bar moves from the first answer. A :class:`Progress` is such
a callable that is also told the run's total and its client's counters; the command line's
bar and the Lambda's log line (:class:`LogProgress`) are two of them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tmdb_async.tmdb.client import ClientStats

__all__ = ["LOG_INTERVAL", "LogProgress", "Progress", "Snapshot"]

#: Seconds between two progress log lines in Lambda.
LOG_INTERVAL = 30.0


class Snapshot:
    """Ids done of a total, and the rates since the start, as shown to an operator."""

    __slots__ = ("done", "rate", "requests", "seconds", "throttled", "total")

    def __init__(
        self, done: int, total: int | None, requests: int, throttled: int, seconds: float
    ) -> None:
        self.done = done
        self.total = total
        self.requests = requests
        self.throttled = throttled
        self.seconds = seconds
        self.rate = requests / seconds if seconds > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the pace so far (ids per second); None without a total or pace."""
        if self.total is None or self.done <= 0 or self.seconds <= 0:
            return None
        return max(0, self.total - self.done) * self.seconds / self.done


class Progress:
    """A progress callable (``progress(n)``: n more ids resolved) that also learns the total
    (:meth:`set_total`: the run's distinct ids, or a refresh's titles) and the client's
    counters (:meth:`attach`). Subclasses show it in :meth:`changed`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.done = 0
        self.total: int | None = None
        self.stats: ClientStats | None = None
        self._requests_before = 0

    def attach(self, stats: ClientStats) -> None:
        """The live counters of the client the run asks TMDB with (read, never written)."""
        self.stats = stats
        self._requests_before = stats.requests

    def set_total(self, total: int | None) -> None:
        self.total = total
        self.changed()

    def __call__(self, n: int) -> None:
        self.done += n
        self.changed()

    def snapshot(self) -> Snapshot:
        stats = self.stats
        requests = 0 if stats is None else stats.requests - self._requests_before
        throttled = 0 if stats is None else stats.throttled
        return Snapshot(self.done, self.total, requests, throttled, self.clock() - self.started)

    def changed(self) -> None:
        """Called after every change; show it (or not yet)."""


class LogProgress(Progress):
    """A log line (INFO, through the ``tmdb_async`` logger: Powertools JSON in Lambda) every
    ``interval`` seconds (:data:`LOG_INTERVAL` by default), on the first resolved id after
    it: where there is no terminal. Driven by the ids themselves, so it needs no task of its
    own; :meth:`final` logs a line at once."""

    def __init__(
        self,
        what: str,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        super().__init__(clock)
        self.what = what
        self.interval = LOG_INTERVAL if interval is None else interval
        self.logger = logger or logging.getLogger("tmdb_async.progress")
        self._next = self.started + self.interval

    def changed(self) -> None:
        if self.clock() >= self._next:
            self.final()

    def final(self) -> None:
        """Log the line now (and the next one an interval later)."""
        self._next = self.clock() + self.interval
        snap = self.snapshot()
        of = "" if snap.total is None else f" of {snap.total}"
        eta = snap.eta
        self.logger.info(
            "progress: %s: %d%s ids done, %.1f requests/s, %d x 429, ETA %s",
            self.what,
            snap.done,
            of,
            snap.rate,
            snap.throttled,
            "unknown" if eta is None else f"{eta:.0f}s",
            extra={
                "progress": {
                    "done": snap.done,
                    "total": snap.total,
                    "requests_per_second": round(snap.rate, 2),
                    "throttled_429": snap.throttled,
                    "eta_seconds": None if eta is None else round(eta),
                }
            },
        )
