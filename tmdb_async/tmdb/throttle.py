"""Client-wide pacing: a request-rate limiter that backs off as a whole when TMDB says 429.

The promise is the one TMDB's CDN enforces: no one-second window holds more than ``rate``
requests, that is at most ``floor(rate)`` in any ``[t, t + 1)``; below 1/s, at most one in
any window of ``1 / rate`` seconds (consecutive requests that far apart). It must hold after
idle spells, pauses and rate changes too, and those edges are where a leaky bucket alone
breaks it: an idle bucket drains and then lets its whole capacity through on top of its
steady pace (with ``--rate 2`` that was three requests in one second, 9% of answers 429).

So two parts, with one job each:

- a **window guard** keeps the send times of the last requests (as many as one window may
  hold at ``max_rate``) and holds each release until the oldest one that counts has left the
  window. It alone makes the promise, whatever happened before, and with 20 ms to spare: its
  window is 20 ms longer than the promise's, so requests that reach TMDB up to 20 ms closer
  together than they left (a busy event loop, the network, the processes of one fleet each
  at its share) still keep it where TMDB counts. The shared pause after a 429 is checked at
  the same place, last, so no request slips through one;
- an **aiolimiter bucket** spaces requests evenly at 97.5% of what the window allows (39/s
  at 40/s: the benchmark's 1.027 × the ideal time with 0 × 429), so the server sees a smooth
  flow with room for network jitter and the guard only bites at edges. Its capacity is one
  request plus 20 ms of pace: a waiter woken late by a busy event loop keeps its turn
  instead of losing it (the pace would otherwise drift below target by the loop's latency).

A 429 says the *client* is too fast, not one request, so every worker slows down: a shared
pause (``Retry-After`` when TMDB sends a positive one, else a backoff that doubles while 429s
keep coming) stops all new requests. When 429s repeat (another within 5 s; a lone one is
usually a request delayed on the way, not a pace that is too fast) the pace also drops to
70% of itself or, when lower, to 95% of the successes counted in the last second — the best
estimate of what the server really allows — and it climbs back by 5% of ``rate`` per second
without a 429. It drops at most once a second, so one burst of 429s counts once. The window
promise then applies at the current rate.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque

from aiolimiter import AsyncLimiter

_PACE_SHARE = 0.975  # steady pace as a share of what the window allows: room for jitter
_LATENESS = 0.02  # seconds of pace the bucket holds beyond one request (late wake-ups)
_DECREASE = 0.7  # pace kept after repeated 429s
_RECOVERY_STEP = 0.05  # share of the rate regained per second without a 429
_MIN_SHARE = 0.05  # never below 5% of the rate: the shared pause does the rest
_DEFAULT_PAUSE = 1.0  # pause after a 429 without a usable Retry-After, doubling while they last
_ISOLATED = 5.0  # a 429 with no other this many seconds before it only pauses
# The guard's window is this much longer than the promise's: sends that reach the server up to
# this much closer together than they left (scheduling, the network, several processes of one
# fleet) still fit its window. It takes 20 of the 25.6 ms a second the 97.5% pace leaves, so
# the guard holds a punctual pace never, and one woken more than ~5 ms late sometimes (with
# wake-ups 0-20 ms late on a virtual clock: 0.967 of the rate, against 0.975; the rate-bound
# benchmark stayed at 1.027 x the ideal time).
_ARRIVAL_JITTER = 0.02


def _window(rate: float) -> tuple[int, float]:
    """``(requests, seconds)``: the most requests any window of that length may hold."""
    if rate >= 1.0:
        return math.floor(rate), 1.0
    return 1, 1.0 / rate


class Throttle:
    """Rate limit (requests/s) plus a shared pause after 429s."""

    def __init__(self, rate: float, max_pause: float = 60.0) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a finite number above 0, not {rate!r}")
        self.max_rate = rate
        self._max_pause = max_pause
        self.current_rate = rate
        self.lowest_rate = rate
        self._limiter = _bucket(rate)
        # The rate never rises above max_rate, so no window ever counts more sends than this.
        self._sent: deque[float] = deque(maxlen=_window(rate)[0])
        self._pause_until = float("-inf")
        self._last_decrease = float("-inf")
        self._last_change = float("-inf")
        self._last_429 = float("-inf")
        self._consecutive = 0  # pace cuts since the last success: the backoff's exponent
        self._successes: deque[float] = deque()  # the last second's, for _accepted_rate
        # Waiters queue here, not inside the bucket: a bucket replaced after a rate change
        # must not keep releasing a backlog at the old pace beside the new one, and the
        # guard's check-then-record must not interleave between two waiters.
        self._lock = asyncio.Lock()

    def _set_rate(self, rate: float, now: float) -> None:
        self.current_rate = rate
        self.lowest_rate = min(self.lowest_rate, rate)
        self._last_change = now
        # Safe to swap: requests queue on the lock, so at most one waits on the old bucket,
        # and the guard re-checks the window at the new rate before it sends.
        self._limiter = _bucket(rate)

    async def acquire(self) -> None:
        """Wait until the client may send one more request."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            # Before the bucket, so that its credit is not spent while a pause runs and the
            # first requests after it stay evenly spaced.
            await self._clear(loop)
            await self._limiter.acquire()
            # And last: a 429 or a pace cut may have come while the bucket held us.
            await self._clear(loop)
            self._sent.append(loop.time())

    async def _clear(self, loop: asyncio.AbstractEventLoop) -> None:
        # A loop, not one sleep: a 429 may push the pause further out or cut the rate while
        # we sleep, and timers may fire up to the clock's resolution early.
        while (delay := self._hold(loop.time())) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)

    def _hold(self, now: float) -> float:
        """Seconds until a send at ``now`` keeps the promise (<= 0: it may go now)."""
        wait = self._pause_until - now
        count, span = _window(self.current_rate)
        if len(self._sent) >= count:
            # With this send, the window (now - span - jitter, now] must not hold more than
            # count: the promise's window, with room for arrival jitter.
            wait = max(wait, self._sent[-count] + (span + _ARRIVAL_JITTER) - now)
        return wait

    def throttled(self, retry_after: float | None) -> float:
        """Record a 429; return the pause imposed on every worker (seconds)."""
        now = asyncio.get_running_loop().time()
        isolated = now - self._last_429 >= _ISOLATED
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
        return pause

    def _forget_successes(self, now: float) -> None:
        while self._successes and self._successes[0] < now - 1.0:
            self._successes.popleft()

    def _accepted_rate(self, now: float) -> float | None:
        """Successes per second over the last second (or since the first of them, if later)."""
        self._forget_successes(now)
        if len(self._successes) < 5:
            return None  # too little to go on (or a pause just emptied the window)
        span = now - self._successes[0]  # at most 1 s: older ones were forgotten
        return len(self._successes) / span if span >= 0.25 else None

    def succeeded(self) -> None:
        """Record a success: climb back towards the configured rate, a step per second."""
        self._consecutive = 0
        now = asyncio.get_running_loop().time()
        self._successes.append(now)
        self._forget_successes(now)
        if self.current_rate < self.max_rate and now - self._last_change >= 1.0:
            step = self.max_rate * _RECOVERY_STEP
            self._set_rate(min(self.max_rate, self.current_rate + step), now)


def _bucket(rate: float) -> AsyncLimiter:
    count, span = _window(rate)
    pace = _PACE_SHARE * count / span
    capacity = 1.0 + pace * _LATENESS
    return AsyncLimiter(capacity, capacity / pace)
