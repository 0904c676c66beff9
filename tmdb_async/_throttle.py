"""Client-wide pacing: a request-rate limiter that backs off as a whole when TMDB says 429.

A 429 tells us the *client* is too fast, not one request, so every worker must slow down:
a shared pause (``Retry-After`` when TMDB sends a positive one, else a short backoff) stops
all new requests, and the request rate is halved (at most once per second, so one burst of
429s counts once) and then recovers by 5% of the configured rate per second of successes,
like TCP's AIMD: a halved rate takes ten quiet seconds to come back.

The rate itself is aiolimiter's leaky bucket. To run below the configured rate without
rebuilding the bucket, each request acquires ``max_rate / current_rate`` units of it.
"""

from __future__ import annotations

import asyncio

from aiolimiter import AsyncLimiter

_BURST_SECONDS = 0.1  # bucket size in seconds of traffic: small, so 429s at the edge are rare
_RECOVERY_STEP = 0.05  # share of the configured rate regained per second without a 429
_DEFAULT_PAUSE = 1.0  # pause after a 429 without a usable Retry-After, doubling while they last


class Throttle:
    """Rate limit (requests/s) plus a shared pause after 429s."""

    def __init__(self, rate: float, max_pause: float = 60.0) -> None:
        self.max_rate = rate
        self._max_pause = max_pause
        self._capacity = max(1.0, rate * _BURST_SECONDS)
        self._limiter = AsyncLimiter(self._capacity, self._capacity / rate)
        self._min_rate = rate / self._capacity
        self.current_rate = rate
        self.lowest_rate = rate
        self._last_change = float("-inf")
        self._pause_until = 0.0
        self._last_decrease = float("-inf")
        self._consecutive = 0
        self._primed = False

    async def acquire(self) -> None:
        """Wait until the client may send one more request."""
        loop = asyncio.get_running_loop()
        # A loop, not an Event: each 429 may push the shared pause further out while we sleep.
        while (delay := self._pause_until - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)
        if not self._primed:
            # An idle leaky bucket drains, then lets a whole bucket through at once on top of
            # the steady rate: at the start and after each pause that burst is exactly what
            # trips the server's window again. Filling it first keeps the pace smooth.
            self._primed = True
            await self._limiter.acquire(self._capacity)
        await self._limiter.acquire(self.max_rate / self.current_rate)

    def throttled(self, retry_after: float | None) -> float:
        """Record a 429; return the pause imposed on every worker (seconds)."""
        now = asyncio.get_running_loop().time()
        if now - self._last_decrease >= 1.0:
            self._last_decrease = self._last_change = now
            self.current_rate = max(self._min_rate, self.current_rate / 2)
            self.lowest_rate = min(self.lowest_rate, self.current_rate)
            self._consecutive += 1
        if retry_after is not None and retry_after > 0:
            pause = min(retry_after, self._max_pause)
        else:
            pause = min(_DEFAULT_PAUSE * 2 ** max(0, self._consecutive - 1), self._max_pause)
        self._pause_until = max(self._pause_until, now + pause)
        self._primed = False
        return pause

    def succeeded(self) -> None:
        """Record a success: climb back towards the configured rate, a step per second."""
        self._consecutive = 0
        if self.current_rate < self.max_rate:
            now = asyncio.get_running_loop().time()
            if now - self._last_change >= 1.0:
                self._last_change = now
                step = self.max_rate * _RECOVERY_STEP
                self.current_rate = min(self.max_rate, self.current_rate + step)
