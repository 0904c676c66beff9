"""The retry policy: every attempt of a request, the first included, in one tenacity loop.

:class:`Retries` runs an attempt function under :class:`tenacity.AsyncRetrying`, built from
tenacity's public strategy objects: stop after ``max_attempts``
(:func:`~tenacity.stop_after_attempt`), retry on :class:`Retryable` only
(:func:`~tenacity.retry_if_exception_type`), wait with :class:`RetryAfterOrBackoff` (the
server's ``Retry-After`` when the last answer carried one, else :class:`Backoff`), count each
retry (``before_sleep``) and sleep through :meth:`~tmdb_async.tmdb.breaker.Breaker.pause`, so
a tripped breaker ends every wait at once. The last error is re-raised (``reraise``);
cancellation is never retried: it propagates as it is.

Around that loop, the hold: attempts spent without an answer (no connection, or none of an
answer's status line and headers), while TMDB has answered nobody since and the breaker's
streak could be an outage (:attr:`~tmdb_async.tmdb.breaker.Breaker.holding`), do not fail
the request. Another round follows, until TMDB answers (this request, or another one, which
ends the streak) or the breaker trips; bounded by
:data:`~tmdb_async.tmdb.breaker.HOLD_SECONDS`. So no answer never marks an id failed on its
own, whatever ``max_attempts`` and the backoff are, except one title's own malformed or cut
answers (fewer than :data:`~tmdb_async.tmdb.breaker.TRIP_URLS` URLs), which fail that title.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
)
from tenacity.wait import wait_base

from tmdb_async.errors import GaveUp, Refused, Retryable
from tmdb_async.tmdb.breaker import HOLD_SECONDS, Breaker

T = TypeVar("T")


class Backoff(wait_base):
    """Exponential backoff with jitter: 0.5 s, 1 s, 2 s... after attempts 1, 2, 3..., plus up
    to 1 s at random (the workers spread out), never more than ``cap`` seconds."""

    def __init__(self, cap: float) -> None:
        self.cap = float(cap)

    def __call__(self, retry_state: RetryCallState) -> float:
        return self.after(retry_state.attempt_number)

    def after(self, attempt: int) -> float:
        """Seconds to wait after failed ``attempt``."""
        return min(self.cap, 0.5 * 2.0 ** (attempt - 1) + random.uniform(0, 1))


class RetryAfterOrBackoff(wait_base):
    """The server's ``Retry-After`` when the last attempt's :class:`Retryable` carries a
    positive one, never undercut (capped at ``backoff.cap``), plus a tenth of the backoff as
    jitter to spread the workers out again; else the ``backoff`` itself. (dlt's
    ``wait_exponential_retry_after`` is the same idea.)"""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        backoff = self.backoff(retry_state)
        if isinstance(exc, Retryable) and exc.retry_after:
            return min(exc.retry_after, self.backoff.cap) + backoff * 0.1
        return backoff


class Retries:
    """One client's retry policy (see the module's docstring), shared by its requests.

    ``on_retry`` is called before each wait between two attempts (the client counts
    retries there); the hold's waits between rounds are not retries and are not counted.
    """

    def __init__(
        self,
        *,
        max_attempts: int,
        max_backoff: float,
        breaker: Breaker,
        on_retry: Callable[[RetryCallState], None],
    ) -> None:
        self._breaker = breaker
        self._backoff = Backoff(max_backoff)
        self._policy = AsyncRetrying(
            stop=stop_after_attempt(max(1, max_attempts)),
            wait=RetryAfterOrBackoff(self._backoff),
            retry=retry_if_exception_type(Retryable),
            before_sleep=on_retry,
            sleep=breaker.pause,
            reraise=True,
        )
        # A controller holds one call's statistics, so each request in flight needs its own:
        # copies of the policy, pooled and reused (each call begins by resetting them).
        # Measured: a fresh copy per request leaves a reference cycle behind (the controller's
        # pending actions are its own bound methods) and doubled the GC passes of a run.
        self._idle: list[AsyncRetrying] = []

    async def call(self, attempt: Callable[[str, str], Awaitable[T]], path: str, url: str) -> T:
        """``await attempt(path, url)`` until it returns; raises :class:`GaveUp` once the
        attempts (and the hold) are spent or an attempt raises :class:`Refused`. Any other
        exception (``CredentialsError``, ``TmdbUnreachable``, cancellation) propagates."""
        idle = self._idle
        retrying = idle.pop() if idle else self._policy.copy()
        attempts = 0
        held_since: float | None = None
        try:
            while True:
                try:
                    result: T = await retrying(attempt, path, url)
                    return result
                except Retryable as exc:
                    attempts += retrying.statistics["attempt_number"]
                    now = self._breaker.clock()
                    held_since = now if held_since is None else held_since
                    if not (exc.connection and self._breaker.holding):
                        raise GaveUp(exc, attempts) from None
                    if now - held_since >= HOLD_SECONDS:
                        raise GaveUp(exc, attempts) from None
                    await self._breaker.pause(self._backoff.after(1))
                except Refused as exc:
                    attempts += retrying.statistics["attempt_number"]
                    raise GaveUp(exc, attempts) from None
        finally:
            idle.append(retrying)
