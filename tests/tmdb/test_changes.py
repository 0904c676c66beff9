"""TMDB's change lists read by its rules: windows of at most 14 days, halved down to single
days when cut off at page 500, a day still cut off reported, every page read once, a list
without its page count or results refused (:mod:`tmdb_async.tmdb.changes`)."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from tmdb_async.errors import TmdbUnavailable
from tmdb_async.tmdb.changes import MAX_DAYS, MAX_PAGE, ChangeReader, Window, page_key, read_piece

TODAY = dt.date(2026, 11, 20)
DAY = dt.timedelta(days=1)


class _Lists:
    """A client whose change lists answer what a test says."""

    def __init__(self, page: dict[str, Any]) -> None:
        self.page = page

    async def changes(self, kind: str, start: dt.date, end: dt.date, page: int) -> Any:
        return self.page


class _Paged:
    """A client whose change list holds ``pages_per_day`` pages a day, one id per page (the
    id tells the day and the page), and which records every request."""

    def __init__(self, pages_per_day: dict[dt.date, int]) -> None:
        self.pages_per_day = pages_per_day
        self.asked: list[tuple[dt.date, dt.date, int]] = []

    async def changes(self, kind: str, start: dt.date, end: dt.date, page: int) -> Any:
        assert (end - start).days < MAX_DAYS and 1 <= page <= MAX_PAGE
        self.asked.append((start, end, page))
        days = [start + n * DAY for n in range((end - start).days + 1)]
        total = sum(self.pages_per_day.get(day, 1) for day in days)
        return {"page": page, "results": [{"id": page}], "total_pages": total}


@pytest.mark.parametrize(
    "page",
    [
        {"results": [{"id": 1}], "total_pages": "700"},
        {"results": [{"id": 1}]},
        {"results": None, "total_pages": 1},
        {"results": [], "total_pages": -1},
    ],
)
async def test_a_change_list_without_its_page_count_or_results_fails_the_refresh(
    page: dict[str, Any],
) -> None:
    with pytest.raises(TmdbUnavailable, match="TMDB /3/movie/changes"):
        await read_piece(_Lists(page), "movie", Window(TODAY, TODAY))  # type: ignore[arg-type]


def test_a_window_is_asked_in_consecutive_pieces_of_at_most_14_days() -> None:
    window = Window(TODAY - 30 * DAY, TODAY)
    pieces = list(window.pieces())
    assert [p.days for p in pieces] == [14, 14, 3]
    assert pieces[0].start == window.start and pieces[-1].end == window.end
    assert all(b.start == a.end + DAY for a, b in itertools.pairwise(pieces))


def test_halves_split_a_window_into_two_adjacent_windows() -> None:
    first, second = Window(TODAY, TODAY + 4 * DAY).halves()
    assert (first.days, second.days) == (2, 3) and second.start == first.end + DAY


async def test_a_piece_over_500_pages_is_read_by_halves_and_a_day_still_over_is_reported() -> None:
    crowded = TODAY + DAY
    client = _Paged({crowded: 612})
    piece = await read_piece(client, "movie", Window(TODAY, TODAY + 2 * DAY))  # type: ignore[arg-type]
    assert piece.truncated == [
        {
            "kind": "movie",
            "start": crowded.isoformat(),
            "end": crowded.isoformat(),
            "total_pages": 612,
            "total_results": None,
            "pages_read": MAX_PAGE,
        }
    ]
    pages = [(s, e, p) for s, e, p in client.asked if s == e == crowded]
    assert sorted(p for _, _, p in pages) == list(range(1, MAX_PAGE + 1))  # each page once


async def test_a_reader_built_from_what_was_read_reads_no_page_again() -> None:
    window = Window(TODAY, TODAY)
    client = _Paged({TODAY: 5})
    key = page_key("tv", window)
    reader = ChangeReader(client, totals={key: 5}, read={key: [1, 2, 4]})  # type: ignore[arg-type]
    assert await reader.piece("tv", window)
    assert sorted(p for _, _, p in client.asked) == [3, 5]
    harvest = reader.harvest()
    assert harvest.ids["tv"] == {3, 5} and harvest.completed == [("tv", "2026-11-20", "2026-11-20")]
    assert reader.in_part() == {}  # a piece read whole leaves no pages to remember


async def test_no_page_starts_once_the_reader_is_told_to_stop() -> None:
    client = _Paged({TODAY: 3})
    reader = ChangeReader(client, stop=lambda: True)  # type: ignore[arg-type]
    assert not await reader.piece("movie", Window(TODAY, TODAY))
    assert client.asked == [] and reader.pages == 0
