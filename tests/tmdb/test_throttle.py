"""The throttle's promises, on a virtual clock (no real sleeping, no wall-clock flakiness).

The promise: no window of one second (of ``1 / rate`` seconds below 1/s) holds more than
``max(1, floor(rate))`` requests, at any rate from 0.5 to 1,000/s, whatever came before: an
idle spell, a 429 pause, a cut of the pace or its recovery (the current rate is the limit
then). The windows checked here are 20 ms longer than that, so that the promise still holds
where the requests arrive (the server's clock), up to 20 ms closer together than they left.
And the pace stays close to the rate: the guard must not starve it.
"""

from __future__ import annotations

import asyncio
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.virtual_clock import run_virtual
from tmdb_async.tmdb.throttle import Throttle

RATES = [0.5, 1.0, 2.0, 2.5, 5.0, 8.0, 40.0, 1000.0]

Release = tuple[float, float]  # (loop time of the release, the throttle's rate at that moment)


# --- the promise, written independently of the implementation ------------------------------


ARRIVAL_JITTER = 0.02  # seconds: how much closer together requests may arrive than they left


def limit(rate: float) -> tuple[int, float]:
    """``(count, span)``: at most ``count`` requests in any window ``[t, t + span)``."""
    return max(1, math.floor(rate)), max(1.0, 1.0 / rate) + ARRIVAL_JITTER


def fullest_window(times: Sequence[float], span: float) -> int:
    """The most releases in one window ``[t, t + span)``, trying a window at every release."""
    return max((bisect_left(times, t + span) - i for i, t in enumerate(times)), default=0)


def overfull_windows(log: Sequence[Release]) -> list[str]:
    """Every window that holds more than its limit, judged at the rate current at its last
    release (so a window that straddles a cut of the pace is held to the lower rate)."""
    times = [t for t, _ in log]
    assert times == sorted(times)
    found = []
    for k, (t, rate) in enumerate(log):
        count, span = limit(rate)
        # Releases i <= k with t_i + span <= t are outside the window [t_i, t_i + span).
        first = bisect_right(times, t, 0, k + 1, key=lambda s, span=span: s + span)
        if k + 1 - first > count:
            found.append(f"[{times[first]:.6f}, +{span:g}) holds {k + 1 - first} > {count}")
    return found


# --- driving the throttle ------------------------------------------------------------------


async def send(
    throttle: Throttle,
    requests: int,
    log: list[Release],
    *,
    workers: int = 20,
    answered: bool = False,
) -> None:
    """``requests`` requests shared by ``workers`` concurrent workers, each release logged;
    ``answered``: each gets a success 50 ms later, reported to the throttle as the client does.
    """
    loop = asyncio.get_running_loop()
    todo = iter(range(requests))

    async def worker() -> None:
        for _ in todo:  # one shared iterator: each request is taken by exactly one worker
            await throttle.acquire()
            log.append((loop.time(), throttle.current_rate))
            if answered:
                await asyncio.sleep(0.05)
                throttle.succeeded()

    await asyncio.gather(*(worker() for _ in range(min(workers, requests))))


def requests_for(rate: float, windows: int = 10) -> int:
    """Enough requests to fill ``windows`` windows (at least 40, at most 3,000)."""
    count, _ = limit(rate)
    return min(3000, max(40, count * windows))


# --- the window promise --------------------------------------------------------------------


@pytest.mark.parametrize("rate", RATES)
def test_no_window_holds_more_than_the_rate_under_a_steady_load(rate: float) -> None:
    async def scenario() -> list[Release]:
        throttle, log = Throttle(rate), []
        await send(throttle, requests_for(rate), log)
        return log

    log = run_virtual(scenario())
    count, span = limit(rate)
    assert fullest_window([t for t, _ in log], span) <= count
    assert overfull_windows(log) == []


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("idle", [0.2, 0.999, 1.0, 1.5, 10.0, 3600.0])
def test_an_idle_spell_does_not_let_a_burst_through(rate: float, idle: float) -> None:
    """Issue 8: after an idle spell, ``--rate 2`` sent 3 requests in one second."""

    async def scenario() -> list[Release]:
        throttle, log = Throttle(rate), []
        for _ in range(3):
            await send(throttle, requests_for(rate, windows=2), log)
            await asyncio.sleep(idle * max(1.0, 1.0 / rate))
            await send(throttle, 1, log)  # a lone request between spells, too
            await asyncio.sleep(idle)
        return log

    assert overfull_windows(run_virtual(scenario())) == []


@pytest.mark.parametrize("rate", [0.5, 1.0, 2.0, 8.0, 40.0])
def test_after_an_idle_spell_the_first_request_goes_at_once(rate: float) -> None:
    async def scenario() -> float:
        loop, throttle, log = asyncio.get_running_loop(), Throttle(rate), []
        await send(throttle, 3, log)
        await asyncio.sleep(100.0)
        back = loop.time()
        await throttle.acquire()
        return loop.time() - back

    assert run_virtual(scenario()) == 0.0


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("retry_after", [None, 0.3, 2.0])
def test_a_429_pause_holds_every_worker_and_the_window_holds_after_it(
    rate: float, retry_after: float | None
) -> None:
    async def scenario() -> tuple[list[Release], int, float]:
        loop, throttle, log = asyncio.get_running_loop(), Throttle(rate), []
        busy = asyncio.create_task(send(throttle, requests_for(rate, windows=6), log))
        await asyncio.sleep(2.5 * limit(rate)[1])
        pause = throttle.throttled(retry_after)
        at, before = loop.time(), len(log)
        await busy
        return log, before, at + pause

    log, before, resume = run_virtual(scenario())
    assert 0 < before < len(log)
    assert all(t >= resume for t, _ in log[before:]), "a worker sent during the shared pause"
    assert overfull_windows(log) == []


@pytest.mark.parametrize("rate", [2.0, 8.0, 40.0, 1000.0])
def test_cuts_of_the_pace_and_its_recovery_keep_every_window_within_the_current_rate(
    rate: float,
) -> None:
    """Repeated 429s cut the pace (below 1/s for the low rates), quiet seconds restore it;
    every window is held to the rate in force when its last request went."""

    async def scenario() -> tuple[list[Release], Throttle]:
        loop, throttle, log = asyncio.get_running_loop(), Throttle(rate, max_pause=2.0), []

        async def server_says_429() -> None:
            for moment in (1.0, 1.5, 3.0, 4.5):  # the first alone only pauses
                await asyncio.sleep(moment - loop.time())
                throttle.throttled(None)

        requests = min(6000, int(12 * rate))  # long enough to climb back for a while
        await asyncio.gather(send(throttle, requests, log, answered=True), server_says_429())
        return log, throttle

    log, throttle = run_virtual(scenario())
    assert throttle.lowest_rate <= 0.7**2 * rate  # the pace was really cut, more than once
    assert len({rate for _, rate in log}) >= 5  # requests went at many rates, down and up
    assert overfull_windows(log) == []


# --- the pace ------------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "seconds"), [(2.0, 120.0), (40.0, 30.0), (1000.0, 3.0)])
def test_the_guard_does_not_starve_the_pace(rate: float, seconds: float) -> None:
    async def scenario() -> int:
        loop, throttle, log = asyncio.get_running_loop(), Throttle(rate), []
        end = loop.time() + seconds

        async def worker() -> None:
            while loop.time() < end:
                await throttle.acquire()
                log.append((loop.time(), rate))

        await asyncio.gather(*(worker() for _ in range(20)))
        return sum(1 for t, _ in log if t < end)

    sent = run_virtual(scenario())
    assert sent / seconds >= 0.95 * rate
    assert sent / seconds <= rate


# --- the promise against arbitrary arrival patterns ----------------------------------------

# The whole range, but most examples at rates whose windows a burst of up to 60 requests can
# fill, and that cuts of the pace can push below 1/s.
_rates = st.floats(0.5, 12.0) | st.floats(0.5, 80.0) | st.floats(0.5, 1000.0)
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("burst"), st.integers(min_value=1, max_value=60)),
        st.tuples(st.just("idle"), st.floats(min_value=0.0, max_value=4.0)),  # in windows
        st.tuples(st.just("429"), st.none() | st.floats(min_value=0.0, max_value=5.0)),
    ),
    min_size=1,
    max_size=15,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rate=_rates, steps=_steps, start=st.sampled_from([0.0, 98765.4321, 3e7]))
def test_no_arrival_pattern_breaks_the_window_promise(
    rate: float, steps: list[tuple[str, float | None]], start: float
) -> None:
    """Bursts (overlapping each other), idle gaps and 429s in any order: every request that
    goes is answered with a success (so the pace also recovers between the 429s). The clock
    starts at 0 or late (a long-running host's monotonic clock), where rounding is coarser."""

    async def scenario() -> list[Release]:
        throttle, log = Throttle(rate, max_pause=10.0), []
        running = []
        for kind, value in steps:
            if kind == "burst":
                assert isinstance(value, int)
                running.append(asyncio.create_task(send(throttle, value, log, answered=True)))
            elif kind == "idle":
                assert value is not None
                await asyncio.sleep(value * limit(throttle.current_rate)[1])
            else:
                throttle.throttled(value)
        await asyncio.gather(*running)
        return log

    assert overfull_windows(run_virtual(scenario(), start=start)) == []


# --- 429s: a shared pause, a cut of the pace when they repeat, recovery by steps ------------


def at_times(*moments: float, then: Callable[[Throttle], object], rate: float = 40.0) -> list:
    """Call ``then(throttle)`` at each virtual moment; collect the results."""

    async def scenario() -> list:
        loop, throttle, results = asyncio.get_running_loop(), Throttle(rate), []
        for moment in moments:
            await asyncio.sleep(moment - loop.time())
            results.append((then(throttle), throttle.current_rate))
        return results

    return run_virtual(scenario())


def test_a_429_pauses_every_worker_not_just_the_one_that_got_it() -> None:
    async def scenario() -> tuple[float, list[float]]:
        loop, throttle, log = asyncio.get_running_loop(), Throttle(40.0), []
        busy = asyncio.create_task(send(throttle, 200, log))
        await asyncio.sleep(1.0)
        pause = throttle.throttled(3.0)
        resume, before = loop.time() + pause, len(log)
        await busy
        return pause, [t - resume for t, _ in log[before:]]

    pause, after = run_virtual(scenario())
    assert pause == 3.0
    assert min(after) >= 0.0
    assert min(after) < 0.001  # and the first request goes when the pause ends


def test_retry_after_sets_the_pause_up_to_max_pause() -> None:
    async def scenario() -> list[float]:
        throttle = Throttle(40.0, max_pause=5.0)
        return [throttle.throttled(2.5), throttle.throttled(30.0)]

    assert run_virtual(scenario()) == [2.5, 5.0]


def test_without_retry_after_the_pause_doubles_while_429s_keep_coming() -> None:
    pauses = [p for p, _ in at_times(0.0, 1.0, 2.0, 3.0, 4.0, then=lambda t: t.throttled(None))]
    assert pauses == [1.0, 1.0, 2.0, 4.0, 8.0]


def test_a_lone_429_pauses_but_keeps_the_pace() -> None:
    results = at_times(0.0, 10.0, then=lambda t: t.throttled(None))
    assert [rate for _, rate in results] == [40.0, 40.0]


def test_repeated_429s_cut_the_pace_by_30_percent_at_most_once_a_second() -> None:
    results = at_times(0.0, 0.5, 0.9, 1.55, 1.6, then=lambda t: t.throttled(None))
    assert [rate for _, rate in results] == pytest.approx([40.0, 28.0, 28.0, 19.6, 19.6])


def test_a_cut_goes_down_to_the_accepted_rate_when_that_is_lower() -> None:
    async def scenario() -> float:
        throttle = Throttle(40.0)
        for _ in range(10):  # the server accepted 10/s over the last second
            throttle.succeeded()
            await asyncio.sleep(0.1)
        throttle.throttled(None)
        throttle.throttled(None)
        return throttle.current_rate

    assert run_virtual(scenario()) == pytest.approx(0.95 * 10)


def test_the_pace_never_drops_below_5_percent_of_the_rate() -> None:
    results = at_times(*range(20), then=lambda t: t.throttled(0.1))
    assert min(rate for _, rate in results) == pytest.approx(2.0)


def test_the_pace_recovers_by_steps_of_5_percent_of_the_rate_a_second() -> None:
    async def scenario() -> tuple[list[float], float]:
        throttle, rates = Throttle(40.0), []
        throttle.throttled(None)
        await asyncio.sleep(0.5)
        throttle.throttled(None)  # cut to 28/s
        for _ in range(40):  # a success every half second
            await asyncio.sleep(0.5)
            throttle.succeeded()
            rates.append(throttle.current_rate)
        return rates, throttle.lowest_rate

    rates, lowest = run_virtual(scenario())
    assert lowest == pytest.approx(28.0)
    assert rates[:6] == pytest.approx([28.0, 30.0, 30.0, 32.0, 32.0, 34.0])
    assert max(rates) == rates[-1] == 40.0  # back to the rate, never above it


@pytest.mark.parametrize("rate", [0.0, -1.0, math.nan, math.inf])
def test_the_rate_must_be_finite_and_above_zero(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        Throttle(rate)
