"""Client-wide pacing: a request-rate limiter that backs off as a whole when TMDB says 429.

``rate`` is a ceiling in the sense TMDB's CDN applies it: no more than ``rate`` requests in
any one-second window. aiolimiter's leaky bucket lets a full bucket through on top of its
steady pace, so the bucket is kept tiny (``rate / 50`` requests, at least one) and the steady
pace is ``rate`` minus that burst. One more unit of credit lets a waiter woken late by the
event loop catch up instead of losing its turn; only after such a delay can a window hold one
request over ``rate`` (measured: 0–0.1% of requests answered 429 at the edge).

A 429 says the *client* is too fast, not one request, so every worker slows down: a shared
pause (``Retry-After`` when TMDB sends a positive one, else a backoff that doubles while 429s
keep coming) stops all new requests. When 429s repeat (another within 5 s; a lone one is
usually a request delayed on the way, not a pace that is too fast) the pace also drops (at
most once per second, so one burst of 429s counts once) to 70% of itself or, when lower,
to 95% of the successes counted in the
last second — the best estimate of what the server really allows — and it climbs back by 5%
of ``rate`` per second without a 429.
"""

from __future__ import annotations

import asyncio
from collections import deque

from aiolimiter import AsyncLimiter

_BURST_SHARE = 0.02  # bucket size as a share of the rate: small, so windows stay under it
_DECREASE = 0.7  # pace kept after a 429
_RECOVERY_STEP = 0.05  # share of the rate regained per second without a 429
_MIN_SHARE = 0.05  # never below 5% of the rate: the shared pause does the rest
_DEFAULT_PAUSE = 1.0  # pause after a 429 without a usable Retry-After, doubling while they last


class Throttle:
    """Rate limit (requests/s) plus a shared pause after 429s."""

    def __init__(self, rate: float, max_pause: float = 60.0) -> None:
        self.max_rate = rate
        self._max_pause = max_pause
        self._burst = max(1.0, rate * _BURST_SHARE)
        self.current_rate = rate
        self.lowest_rate = rate
        self._limiter = self._bucket(rate)
        self._pause_until = 0.0
        self._last_decrease = float("-inf")
        self._last_change = float("-inf")
        self._last_429 = float("-inf")
        self._consecutive = 0
        self._primed = False
        self._started: float | None = None
        # Waiters queue here, not inside the bucket: a bucket replaced after a rate change
        # must not keep releasing a backlog at the old pace beside the new one.
        self._lock = asyncio.Lock()
        self._successes: deque[float] = deque()

    def _bucket(self, rate: float) -> AsyncLimiter:
        # Steady pace = rate - burst, so burst + one second of pace stays within the rate.
        # One unit more than the burst is kept in the bucket, primed full: a waiter woken a
        # little late (event-loop jitter) then finds its credit instead of a bucket clamped
        # at empty, so the pace does not drift below target by the loop's latency.
        pace = max(rate - self._burst, rate * 0.9)
        return AsyncLimiter(self._burst + 1, (self._burst + 1) / pace)

    def _set_rate(self, rate: float, now: float) -> None:
        self.current_rate = rate
        self.lowest_rate = min(self.lowest_rate, rate)
        self._last_change = now
        # Safe to swap: requests queue on the lock, so at most one waits on the old bucket.
        self._limiter = self._bucket(rate)
        self._primed = False

    async def acquire(self) -> None:
        """Wait until the client may send one more request."""
        loop = asyncio.get_running_loop()
        if self._started is None:
            self._started = loop.time()
        # A loop, not an Event: each 429 may push the shared pause further out while we sleep.
        while (delay := self._pause_until - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)
        async with self._lock:
            if not self._primed:
                # An idle leaky bucket drains, then lets a whole bucket through at once on top
                # of the steady pace: at the start and after each pause that burst is exactly
                # what trips the server's window. Filling it first keeps the pace smooth.
                self._primed = True
                await self._limiter.acquire(self._burst + 1)
            await self._limiter.acquire()

    def throttled(self, retry_after: float | None) -> float:
        """Record a 429; return the pause imposed on every worker (seconds)."""
        now = asyncio.get_running_loop().time()
        isolated = now - self._last_429 >= 5.0
        self._last_429 = now
        if not isolated and now - self._last_decrease >= 1.0:
            self._last_decrease = now
            self._consecutive += 1
            target = self.current_rate * _DECREASE
            seen = self._accepted_rate(now)
            if seen is not None:
                target = min(target, seen * 0.95)
            self._set_rate(max(self.max_rate * _MIN_SHARE, target), now)
        if retry_after is not None and retry_after > 0:
            pause = min(retry_after, self._max_pause)
        else:
            pause = min(_DEFAULT_PAUSE * 2 ** max(0, self._consecutive - 1), self._max_pause)
        self._pause_until = max(self._pause_until, now + pause)
        self._primed = False
        return pause

    def _accepted_rate(self, now: float) -> float | None:
        """Successes per second over the last second (or since the start, if shorter)."""
        while self._successes and self._successes[0] < now - 1.0:
            self._successes.popleft()
        span = min(1.0, now - (self._started if self._started is not None else now))
        if span < 0.25 or len(self._successes) < 5:
            return None  # too little to go on (or a pause just emptied the window)
        return len(self._successes) / span

    def succeeded(self) -> None:
        """Record a success: climb back towards the configured rate, a step per second."""
        self._consecutive = 0
        now = asyncio.get_running_loop().time()
        self._successes.append(now)
        while self._successes[0] < now - 1.0:  # only the last second is ever needed
            self._successes.popleft()
        if self.current_rate < self.max_rate and now - self._last_change >= 1.0:
            step = self.max_rate * _RECOVERY_STEP
            self._set_rate(min(self.max_rate, self.current_rate + step), now)
