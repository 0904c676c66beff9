"""TMDB's change lists and the rules of reading them whole.

``/3/movie/changes`` and ``/3/tv/changes`` list the ids TMDB changed in a span of days: at
most :data:`MAX_DAYS` days a request (more is a 422), 100 ids a page, pages 1 to
:data:`MAX_PAGE` (a later page is a 400). So a :class:`Window` of days is asked in pieces of
at most 14 days (:meth:`Window.pieces`); a piece whose first page counts more than 500 pages
is read in halves (:meth:`Window.halves`), down to single days, and a day still over 500
pages is read to page 500 and reported as cut off, never dropped silently. An item without
an integer id names no title: it is counted (``odd_items``), not dropped silently.

:class:`ChangeReader` reads pieces that way, remembering per request window the page count
and the pages read, so a reader built again from what a caller saved reads no page twice.
What is done with the ids (the lake's titles they name, the saved plan) is the caller's:
this module knows TMDB, not the lake.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from tmdb_async.errors import LookupFailed, TmdbUnavailable, first_error
from tmdb_async.settings import MEDIA_TYPES, MediaType
from tmdb_async.tmdb.client import TmdbClient

log = logging.getLogger(__name__)

MAX_DAYS: Final = 14  # days a change-list request may span (TMDB: 422, status_code 20)
MAX_PAGE: Final = 500  # the last page TMDB serves (400, status_code 22)

DAY: Final = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Window:
    """Days ``start`` through ``end``, both included."""

    start: dt.date
    end: dt.date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def pieces(self, days: int = MAX_DAYS) -> Iterator[Window]:
        """Consecutive windows of at most ``days`` days covering this one."""
        start = self.start
        while start <= self.end:
            end = min(self.end, start + (days - 1) * DAY)
            yield Window(start, end)
            start = end + DAY

    def halves(self) -> tuple[Window, Window]:
        middle = self.start + (self.days // 2 - 1) * DAY
        return Window(self.start, middle), Window(middle + DAY, self.end)

    def as_json(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def page_key(kind: MediaType, window: Window) -> str:
    """How a request window is named among the pages read: ``kind/start/end``."""
    return f"{kind}/{window.start.isoformat()}/{window.end.isoformat()}"


def within(key: str, kind: str, window: Window) -> bool:
    """Whether the request window named ``key`` is one of ``kind`` inside ``window``."""
    k, start, end = key.split("/")
    return k == kind and window.start.isoformat() <= start and end <= window.end.isoformat()


def total_pages(first: Mapping[str, Any], kind: MediaType, window: Window) -> int:
    """The page count a first page announces; a list without one cannot be read whole."""
    total = first.get("total_pages")
    if total == 0 and type(total) is int:
        # An empty list, the way TMDB's other paged endpoints answer one (page 1 of 0):
        # an empty day, the same as one empty page (total_pages 1).
        total = 1
    if type(total) is not int or total < 1:
        raise TmdbUnavailable(
            f"TMDB /3/{kind}/changes {window.start}..{window.end}: no page count "
            f"(total_pages {str(total)[:20]!r})"
        )
    return total


def cut_off(
    first: Mapping[str, Any], kind: MediaType, window: Window, total: int
) -> dict[str, Any]:
    """The report of a day whose list goes past page 500 (the refresh's ``truncated``)."""
    results = first.get("total_results")
    log.warning(
        "%s changes of %s: %s ids in %d pages, TMDB serves 500; the rest is unknown",
        kind,
        window.start.isoformat(),
        results,
        total,
    )
    return {
        "kind": kind,
        **window.as_json(),
        "total_pages": total,
        "total_results": results,
        "pages_read": MAX_PAGE,
    }


def page_ids(
    data: Mapping[str, Any], kind: MediaType, window: Window, page: int
) -> tuple[list[int], int]:
    """The TMDB ids of one page, and how many items had none. An item without an integer id
    (``bool`` is not one) names no title: it is counted (``odd_items``) and reported, never
    dropped silently."""
    results = data.get("results")
    if not isinstance(results, list):
        raise TmdbUnavailable(
            f"TMDB /3/{kind}/changes {window.start}..{window.end} page {page}: no results list"
        )
    ids = [
        item["id"] for item in results if isinstance(item, Mapping) and type(item.get("id")) is int
    ]
    odd = len(results) - len(ids)
    if odd:
        log.warning(
            "TMDB /3/%s/changes %s..%s page %d: %d items without an integer id (not titles)",
            kind,
            window.start,
            window.end,
            page,
            odd,
        )
    return ids, odd


async def _page(
    client: TmdbClient, kind: MediaType, window: Window, page: int
) -> Mapping[str, Any]:
    try:
        return await client.changes(kind, window.start, window.end, page)
    except LookupFailed as exc:
        raise TmdbUnavailable(f"TMDB change list: {exc.reason}") from None


@dataclass(slots=True)
class Harvest:
    """What a :class:`ChangeReader` read since it was last harvested."""

    ids: dict[MediaType, set[int]]
    truncated: list[dict[str, Any]]
    odd_items: int
    completed: list[tuple[MediaType, str, str]]  # pieces read whole: (kind, start, end)


class ChangeReader:
    """Reads change-list pieces by TMDB's rules (see the module): never a page again that
    ``read`` holds for a request window whose count ``totals`` holds, none started once
    ``stop()`` says so (those in flight finish), at most half of ``concurrency`` at once per
    request window (both kinds are read at once). ``on_page`` is awaited after every page
    read: where a caller saves what was read."""

    def __init__(
        self,
        client: TmdbClient,
        *,
        totals: Mapping[str, int] | None = None,
        read: Mapping[str, Iterable[int]] | None = None,
        stop: Callable[[], bool] = lambda: False,
        concurrency: int = 20,
        on_page: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.totals = dict(totals or {})
        self.read = {key: set(pages) for key, pages in (read or {}).items()}
        self.stop = stop
        self.concurrency = max(1, concurrency)
        self.on_page = on_page
        self.pages = 0  # read by this reader
        # The ids each first page read by this reader announces (``total_results``)
        self.announced: dict[str, int] = {}
        self._harvest = _empty()

    async def piece(self, kind: MediaType, window: Window) -> bool:
        """Read one piece (at most 14 days); True when every page of it is read."""
        whole = await self._window(kind, window)
        if whole:
            self._harvest.completed.append((kind, window.start.isoformat(), window.end.isoformat()))
        return whole

    async def count(self, kind: MediaType, window: Window) -> bool:
        """Read one piece's first page only, for its page count (kept in ``totals``; a
        later :meth:`piece` does not read it again). False when stopped first."""
        key = page_key(kind, window)
        if key in self.totals:
            return True
        if self.stop():
            return False
        await self._first(kind, window, key)
        self.read.setdefault(key, set()).add(1)
        await self._counted()
        return True

    def pages_left(self) -> int:
        """A lower bound of the pages still to read of the request windows whose count is
        known: a window read in halves re-reads its first page's ids, so it costs at least
        its count less the page read."""
        left = 0
        for key, total in self.totals.items():
            kind, start, end = key.split("/")
            inside = Window(dt.date.fromisoformat(start), dt.date.fromisoformat(end))
            if any(k != key and within(k, kind, inside) for k in self.totals):
                continue  # read in halves: the halves' counts stand for it
            done = len(self.read.get(key, ()))
            left += max(0, (min(total, MAX_PAGE) if start == end else total) - done)
        return left

    def harvest(self) -> Harvest:
        """What was read since the last harvest; the pieces read whole are forgotten from
        ``totals`` and ``read`` (their pages are done), so those hold the pieces read in part."""
        harvest, self._harvest = self._harvest, _empty()
        for kind, start, end in harvest.completed:
            inside = Window(dt.date.fromisoformat(start), dt.date.fromisoformat(end))
            for key in [k for k in self.totals if within(k, kind, inside)]:
                del self.totals[key]
                self.read.pop(key, None)
        return harvest

    def in_part(self) -> dict[str, tuple[int, list[int]]]:
        """The request windows read in part: their page count and the pages read."""
        return {key: (total, sorted(self.read.get(key, ()))) for key, total in self.totals.items()}

    async def _window(self, kind: MediaType, window: Window) -> bool:
        key = page_key(kind, window)
        read = self.read.setdefault(key, set())
        total = self.totals.get(key)
        if total is None:
            if self.stop():
                return False
            total = await self._first(kind, window, key)
            read.add(1)
            await self._counted()
        if total > MAX_PAGE and window.days > 1:
            log.info("%s changes %s: %d pages, read in halves", kind, window.as_json(), total)
            whole = True
            for half in window.halves():
                whole = await self._window(kind, half) and whole
            return whole
        return await self._rest(kind, window, read, min(total, MAX_PAGE))

    async def _first(self, kind: MediaType, window: Window, key: str) -> int:
        """Page 1: the page count; its ids unless the window is read in halves."""
        first = await _page(self.client, kind, window, 1)
        total = self.totals[key] = total_pages(first, kind, window)
        if type(results := first.get("total_results")) is int:
            self.announced[key] = results
        if total <= MAX_PAGE or window.days == 1:
            self._take(first, kind, window, 1)
            if total > MAX_PAGE:
                self._harvest.truncated.append(cut_off(first, kind, window, total))
        return total

    async def _rest(self, kind: MediaType, window: Window, read: set[int], last: int) -> bool:
        todo = iter([page for page in range(2, last + 1) if page not in read])

        async def worker() -> None:
            for page in todo:
                if self.stop():
                    return
                data = await _page(self.client, kind, window, page)
                self._take(data, kind, window, page)
                read.add(page)
                await self._counted()

        with first_error():
            async with asyncio.TaskGroup() as group:
                # Both kinds read at once: half the connections each.
                share = max(1, self.concurrency // len(MEDIA_TYPES))
                for _ in range(min(share, last - len(read))):
                    group.create_task(worker())
        return len(read) >= last

    def _take(self, data: Mapping[str, Any], kind: MediaType, window: Window, page: int) -> None:
        ids, odd = page_ids(data, kind, window, page)
        self._harvest.ids[kind].update(ids)
        self._harvest.odd_items += odd

    async def _counted(self) -> None:
        self.pages += 1
        if self.on_page is not None:
            await self.on_page()


def _empty() -> Harvest:
    return Harvest({k: set() for k in MEDIA_TYPES}, [], 0, [])


@dataclass(slots=True)
class Piece:
    """Every TMDB id one change list holds for a piece, what was cut off, the odd items."""

    ids: set[int] = field(default_factory=set)
    truncated: list[dict[str, Any]] = field(default_factory=list)
    odd_items: int = 0  # list items without an integer id: counted, never silently dropped


async def read_piece(client: TmdbClient, kind: MediaType, window: Window) -> Piece:
    """Every TMDB id one change list holds for ``window`` (at most 14 days)."""
    reader = ChangeReader(client)
    await reader.piece(kind, window)
    harvest = reader.harvest()
    return Piece(harvest.ids[kind], harvest.truncated, harvest.odd_items)
