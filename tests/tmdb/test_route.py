"""Which request a title starts with: the router's rule, checked without any I/O."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmdb_async.tmdb.route import DIRECT_WINDOW, MISSES_TO_STOP, WINDOW, Router, Seen

COST_DIRECT = {"movie": 1, "tv": 3, "none": 2}  # /3/movie/tt…; then /find and details
COST_FIND = {"movie": 2, "tv": 2, "none": 1}  # /find, then details


def test_a_fresh_run_asks_movies_directly() -> None:
    assert Router(movies_possible=True).direct_first()


def test_a_tv_run_never_asks_directly() -> None:
    router = Router(movies_possible=False)
    for _ in range(WINDOW):
        router.saw("movie")
    assert not router.direct_first()


def test_a_series_section_switches_to_find_first_and_movies_switch_back() -> None:
    router = Router(movies_possible=True)
    switched_after = None
    for n in range(1, WINDOW + 1):
        router.saw("tv")
        if not router.direct_first():
            switched_after = n
            break
    assert switched_after == 1  # one series outnumbers zero movies
    for _ in range(WINDOW):
        router.saw("tv")
    back_after = 0
    while not router.direct_first():
        router.saw("movie")
        back_after += 1
    assert back_after == WINDOW // 2  # movies are half the window again


def test_unknown_ids_count_against_direct_calls() -> None:
    router = Router(movies_possible=True)
    for seen in ["movie", "none", "none"] * 10:
        router.saw(seen)  # type: ignore[arg-type]
    assert not router.direct_first()


@given(st.lists(st.sampled_from(["movie", "tv", "none"]), min_size=1, max_size=3 * WINDOW))
def test_the_order_chosen_is_the_cheaper_one_for_the_recent_mix(kinds: list[Seen]) -> None:
    router = Router(movies_possible=True)
    for kind in kinds:
        router.saw(kind)
    recent = kinds[-WINDOW:]
    direct = sum(COST_DIRECT[k] for k in recent)
    find = sum(COST_FIND[k] for k in recent)
    if direct != find:
        assert router.direct_first() == (direct < find)


def test_a_dead_direct_path_is_abandoned_after_a_few_misses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = Router(movies_possible=True)
    with caplog.at_level(logging.WARNING):
        for _ in range(MISSES_TO_STOP):
            assert router.direct_first()
            router.saw("movie")
            router.direct(hit=False)
    assert router.stopped and not router.direct_first()
    assert "going back to /find first" in caplog.text
    for _ in range(2 * WINDOW):  # for good: movies do not bring it back
        router.saw("movie")
    assert not router.direct_first()


def test_occasional_misses_among_hits_keep_the_direct_path() -> None:
    router = Router(movies_possible=True)
    for n in range(10 * DIRECT_WINDOW):
        router.direct(hit=n % 3 != 0)  # a third missing: misses never outnumber hits
    assert not router.stopped


def test_a_direct_path_that_dies_mid_run_is_noticed_within_the_window() -> None:
    router = Router(movies_possible=True)
    for _ in range(10_000):
        router.direct(hit=True)
    misses = 0
    while not router.stopped:
        router.direct(hit=False)
        misses += 1
    assert misses == DIRECT_WINDOW // 2 + 1  # the first point where misses outnumber hits


@given(st.lists(st.booleans(), max_size=200))
def test_stopping_needs_enough_misses_outnumbering_the_hits(calls: list[bool]) -> None:
    router = Router(movies_possible=True)
    stopped_at = None
    for n, hit in enumerate(calls):
        router.direct(hit)
        recent = calls[max(0, n + 1 - DIRECT_WINDOW) : n + 1]
        misses = recent.count(False)
        should_stop = misses >= MISSES_TO_STOP and misses > len(recent) - misses
        if stopped_at is None:
            assert router.stopped == should_stop
            if should_stop:
                stopped_at = n
        else:
            assert router.stopped  # once stopped, for the rest of the run
