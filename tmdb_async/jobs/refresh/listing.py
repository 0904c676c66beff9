"""Reading a plan's change lists (:class:`~tmdb_async.tmdb.changes.ChangeReader`) into the
plan: the lake's titles the ids name, the pieces read whole, the pages of those read in
part, saved every :data:`SAVE_PAGES` pages, after each 14-day window and when it stops, so a
refresh cut off anywhere continues from its plan; then the titles grouped for fetching."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from typing import Any, Final

from tmdb_async.errors import first_error
from tmdb_async.jobs.deadlines import Remaining
from tmdb_async.jobs.ingest import Engine
from tmdb_async.jobs.refresh.plan import CHANGE_LISTS, WHOLE_LAKE, PagesRead, Plan
from tmdb_async.jobs.refresh.window import Window
from tmdb_async.lake.idmap import LakeIdMap
from tmdb_async.lake.storage import Store
from tmdb_async.settings import MEDIA_TYPES, MediaType
from tmdb_async.tmdb.changes import ChangeReader

log = logging.getLogger(__name__)

SAVE_PAGES: Final = 100
"""Change-list pages read between two saves of the plan (and at every stop)."""


class Lister:
    """Reads a plan's change-list pages: never one again that a save of the plan holds,
    none started once ``stop()`` says the deadline is near (the ones in flight finish). What
    it read goes into the plan, with the lake's titles it named, at :meth:`save`."""

    def __init__(
        self,
        reader_of: Callable[[Callable[[], Awaitable[None]]], ChangeReader],
        plan: Plan,
        idmap: LakeIdMap,
        store: Store,
        map_ready: Awaitable[int] | None = None,
    ) -> None:
        self.plan, self.idmap, self.store, self.map_ready = plan, idmap, store, map_ready
        self.reader = reader_of(self._counted)
        self.unsaved = 0
        self._saving = asyncio.Lock()

    async def _counted(self) -> None:
        self.unsaved += 1
        if self.unsaved >= SAVE_PAGES and not self._saving.locked():
            await self.save()

    async def save(self) -> None:
        """Move what was read into the plan (the lake's titles its ids name), then save it."""
        async with self._saving:
            if self.map_ready is not None:
                await self.map_ready
            # From here to the plan's encoding nothing awaits: the pages and ids saved agree.
            plan, read = self.plan, self.reader.harvest()
            self.unsaved = 0
            known = set(plan.selected)
            for kind in MEDIA_TYPES:
                plan.changed[kind] = plan.changed.get(kind, 0) + len(read.ids[kind])
                plan.selected += [
                    i for i in in_lake(self.idmap, kind, read.ids[kind]) if i not in known
                ]
                known.update(plan.selected)
            plan.truncated += read.truncated
            plan.odd_items += read.odd_items
            plan.done += read.completed
            plan.pages = {
                key: PagesRead(total, tuple(pages))
                for key, (total, pages) in self.reader.in_part().items()
            }
            await plan.save(self.store)


def in_lake(idmap: LakeIdMap, kind: MediaType, changed: set[int]) -> Iterator[str]:
    """The IMDb ids of the lake's titles of ``kind`` among TMDB ids ``changed``: one scan of
    the map, in IMDb order."""
    for imdb_id, title in idmap.entries():
        if title.media_type == kind and title.tmdb_id in changed:
            yield imdb_id


async def list_changes(
    engine: Engine,
    plan: Plan,
    remaining: Remaining | None,
    margin: float,
    map_ready: Awaitable[int] | None = None,
) -> int:
    """Read the plan's change-list pages not read yet (saved as it reads); then group its
    titles. At the deadline no page starts, those in flight finish and the plan is saved.
    Returns the pages read by this call (plus one for the grouping): 0 is no progress."""
    pages = plan.pages

    def reader_of(on_page: Callable[[], Awaitable[None]]) -> ChangeReader:
        return ChangeReader(
            engine.client,
            totals={key: part.total for key, part in pages.items()},
            read={key: part.read for key, part in pages.items()},
            stop=lambda: remaining is not None and remaining() < margin,
            concurrency=engine.settings.concurrency,
            on_page=on_page,
        )

    lister = Lister(reader_of, plan, engine.idmap, engine.store, map_ready)
    hard_stop = None if remaining is None else max(0.0, remaining() - margin / 3)
    if plan.mode is None and plan.groups is None:
        if not await _read_whole(lister, hard_stop, lister.reader.count):
            await lister.save()
            return lister.reader.pages
        await _decide(lister, map_ready)
    if plan.mode == WHOLE_LAKE:
        if plan.groups is not None:
            return lister.reader.pages
        await _group(engine, plan, map_ready)
        return lister.reader.pages + 1
    if not await _read_whole(lister, hard_stop, lister.reader.piece):
        await lister.save()
        return lister.reader.pages
    if plan.groups is not None:
        return lister.reader.pages
    await _group(engine, plan, map_ready)
    return lister.reader.pages + 1


async def _decide(lister: Lister, map_ready: Awaitable[int] | None) -> None:
    """The first page of every piece read: which way is cheaper, saved in the plan (a
    refresh cut off later goes on the same way). Each changed title of the lake costs one
    request either way, so the lists are worth reading only while they have fewer pages
    left than the lake has titles; else every title of the lake is fetched, once each."""
    if map_ready is not None:
        await map_ready
    plan = lister.plan
    left = lister.reader.pages_left()
    lake = lake_titles(lister.idmap, plan.carried)
    plan.mode, plan.reason = way(len(lake), left)
    if plan.mode == WHOLE_LAKE:
        # The lists are not read on: their size is what their first pages announce.
        announced: dict[str, int] = dict.fromkeys(MEDIA_TYPES, 0)
        for key, results in lister.reader.announced.items():
            announced[key.split("/")[0]] += results
        for kind, results in announced.items():
            plan.changed[kind] = max(plan.changed.get(kind, 0), results)
        known = set(plan.selected)
        plan.selected += [i for i in lake if i not in known]
    log.info("refresh %s..%s: %s (%s)", plan.window.start, plan.window.end, plan.mode, plan.reason)
    await lister.save()


def way(titles: int, pages_left: int) -> tuple[str, str]:
    """Which way a refresh goes, and why: the whole lake when it has fewer titles than the
    change lists have pages left (a lower bound of what reading them costs more)."""
    if titles < pages_left:
        return WHOLE_LAKE, f"{titles:,} titles < {pages_left:,} remaining list pages"
    return CHANGE_LISTS, f"{pages_left:,} remaining list pages <= {titles:,} titles"


def lake_titles(idmap: LakeIdMap, carried: Iterable[str]) -> list[str]:
    """Every title of the lake: the id map's (those TMDB removed too: a restore is read by
    asking them), then the carried failures it does not hold."""
    return list(dict.fromkeys([*(imdb_id for imdb_id, _ in idmap.entries()), *carried]))


async def _group(engine: Engine, plan: Plan, map_ready: Awaitable[int] | None) -> None:
    """The lists read whole: the plan's titles grouped (from the repaired map), saved."""
    if map_ready is not None:
        await map_ready
    plan.group(engine.idmap)
    await plan.save(engine.store)
    log.info(
        "refresh %s..%s: %d movies and %d series listed, %d titles of the lake",
        plan.window.start,
        plan.window.end,
        plan.changed["movie"],
        plan.changed["tv"],
        sum(1 for _ in plan.titles),
    )


async def _read_whole(
    lister: Lister,
    hard_stop: float | None,
    read: Callable[[MediaType, Window], Coroutine[Any, Any, bool]],
) -> bool:
    """``read`` the plan's pieces (whole, or their first page only), a window's two kinds
    at once; True when every one is read. What was read is saved after each window, and
    kept when reading fails."""
    try:
        async with asyncio.timeout(hard_stop):  # a last resort: a page stuck in retries
            for pair in by_window(lister.plan.pieces()):
                if lister.reader.stop():
                    return False
                # Both kinds of a window at once: neither waits for the other's first page.
                with first_error():
                    async with asyncio.TaskGroup() as group:
                        tasks = [group.create_task(read(kind, window)) for kind, window in pair]
                await lister.save()
                if not all(task.result() for task in tasks):
                    return False
    except TimeoutError:
        return False
    except BaseException:
        with contextlib.suppress(Exception):
            await lister.save()  # what was read is kept for the next call
        raise
    return True


def by_window(
    pieces: Iterable[tuple[MediaType, Window]],
) -> list[list[tuple[MediaType, Window]]]:
    """The pieces still to read, those of one window (one per kind) together."""
    together: dict[Window, list[tuple[MediaType, Window]]] = {}
    for kind, window in pieces:
        together.setdefault(window, []).append((kind, window))
    return list(together.values())
