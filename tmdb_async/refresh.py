"""Refreshing the lake: fetch again only the titles TMDB changed.

TMDB lists the ids it changed, per kind and per day (``/3/movie/changes``,
``/3/tv/changes``: at most 14 days a request, 100 ids a page, pages 1..500). A refresh with
processing date D:

1. picks its window of days (:func:`plan`): from the day after the last refreshed one
   (``Raw/TMDB/_state/refresh.json``), or ``--since``, or, the first time, from the newest
   ingest date (then recorded at once as "refreshed through the day before", so that a rerun
   does not take its own files for a newer ingest); through D - 1, the last complete day
   (today's changes are read tomorrow, so each day is read once);
2. reads both change lists for the window, every page, in requests of at most 14 days, and
   a window cut off at page 500 in halves, down to single days (:func:`read_changes`; a day
   still cut off is reported in ``truncated``, never dropped silently);
3. keeps the ids the lake's id map holds, and fetches each once, ``/3/{movie|tv}/{id}`` with
   the settings it was ingested with (its :class:`~tmdb_async.shape.Profile`), into D's
   folder through the same engine as ``run`` (:meth:`~tmdb_async.pipeline.Engine.ingest`):
   at most 100 records per file, exactly once, the same record shape. A title whose details
   now answer 404 is a ``deleted`` entry of the folder's sidecar, with its TMDB id, and
   leaves the id map;
4. records the window's last day as refreshed, only once every changed title is accounted
   for without failure, and only when no day is left unread before the window (a
   ``--since`` after a gap does not move it).

A refresh killed at any point (or stopped at its deadline) is run again with the same date:
it reads the same window, the folder's ledger keeps what was committed, and only the rest is
fetched. Two refreshes at once commit through the same ledger, so each title is still once
in the folder; the state only ever moves forward.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from . import runstate
from .client import LookupFailed, MediaType, TmdbClient
from .config import Settings
from .errors import ExitCode, IngestError, InputError, StorageError, UsageError
from .idmap import LakeIdMap
from .ids import IdEntry, ReadStats
from .pipeline import Engine, Remaining, record_shape
from .shape import Profile
from .storage import Conflict, Store
from .summary import Summary
from .writer import RAW_FOLDER, STATE_FOLDER

log = logging.getLogger(__name__)

STATE_KEY: Final = f"{STATE_FOLDER}/refresh.json"
MAX_DAYS: Final = 14  # days a change-list request may span (TMDB: 422, status_code 20)
MAX_PAGE: Final = 500  # the last page TMDB serves (400, status_code 22)
KINDS: Final[tuple[MediaType, ...]] = ("movie", "tv")

_DATE_FOLDER: Final = re.compile(rf"^{RAW_FOLDER}/(\d{{4}})/(\d{{2}})/(\d{{2}})/[^/_][^/]*$")
_DAY: Final = dt.timedelta(days=1)


class TmdbUnavailable(IngestError):
    """TMDB did not answer a request the refresh cannot do without (a change list page)
    after every retry; nothing is marked refreshed, run it again."""

    exit_code = ExitCode.FAILED_IDS


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
            end = min(self.end, start + (days - 1) * _DAY)
            yield Window(start, end)
            start = end + _DAY

    def halves(self) -> tuple[Window, Window]:
        middle = self.start + (self.days // 2 - 1) * _DAY
        return Window(self.start, middle), Window(middle + _DAY, self.end)

    def as_json(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


@dataclass(slots=True)
class Changes:
    """What the change lists of a window hold: TMDB ids by kind, pages read, and the days
    whose list was cut off at page 500 (the ids past it are unknown)."""

    ids: dict[MediaType, set[int]] = field(default_factory=lambda: {k: set() for k in KINDS})
    pages: int = 0
    truncated: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class RefreshSummary:
    """What a refresh did: the CLI's ``--json`` line and the Lambda result.

    ``changed`` counts the distinct ids of the change lists, ``in_lake`` those the id map
    holds (what the refresh accounts for: ``records`` + ``deleted`` + ``not_found`` +
    ``failed`` + ``kept``). ``requests`` are every request to TMDB, ``list_pages`` of them
    for the change lists.
    """

    dest: str
    date: str
    status: str = "ok"  # ok | up_to_date | failed_ids | incomplete | error
    window: dict[str, str] | None = None
    refreshed_through: str | None = None
    changed: dict[str, int] = field(default_factory=lambda: {k: 0 for k in KINDS})
    in_lake: int = 0
    records: int = 0
    deleted: int = 0
    not_found: int = 0
    failed: int = 0
    kept: int = 0
    truncated: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    sidecars: list[str] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)
    requests: int = 0
    list_pages: int = 0
    retries: int = 0
    throttled_429: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def exit_code(self) -> ExitCode:
        return {
            "ok": ExitCode.OK,
            "up_to_date": ExitCode.OK,
            "failed_ids": ExitCode.FAILED_IDS,
            "incomplete": ExitCode.INCOMPLETE,
        }.get(self.status, ExitCode.BAD_INPUT)

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["exit_code"] = int(self.exit_code)
        return data

    def add(self, part: Summary) -> None:
        """Count one profile's run in."""
        for name in ("records", "deleted", "not_found", "failed", "kept"):
            setattr(self, name, getattr(self, name) + getattr(part, name))
        self.files += part.files
        self.sidecars += part.sidecars
        if part.manifest:
            self.manifests.append(part.manifest)
        if part.status == "incomplete" or (part.status == "failed_ids" and self.status == "ok"):
            self.status = part.status


# --- the state: the last day whose changes are in the lake -------------------------------


@dataclass(frozen=True, slots=True)
class State:
    through: dt.date | None
    etag: str | None = None


async def read_state(store: Store) -> State:
    found = await store.read(STATE_KEY)
    if found is None:
        return State(None)
    raw, etag = found
    try:
        return State(dt.date.fromisoformat(json.loads(raw)["through"]), etag)
    except (ValueError, KeyError, TypeError):
        raise StorageError(
            f"{store.url(STATE_KEY)}: damaged refresh state; fix it or delete it and pass --since"
        ) from None


async def save_state(store: Store, through: dt.date, state: State) -> None:
    """Record ``through`` as refreshed, never moving back: a conditional write, and on a
    conflict (another refresh saved meanwhile) the newer day wins."""
    while True:
        if state.through is not None and state.through >= through:
            return
        body = json.dumps({"through": through.isoformat(), "saved_at": _now()}).encode()
        try:
            await store.write(
                STATE_KEY,
                body,
                "application/json",
                if_none_match=state.etag is None,
                if_match=state.etag,
            )
            return
        except Conflict:
            state = await read_state(store)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


async def newest_ingest_date(store: Store) -> dt.date | None:
    """The newest date folder holding a data file."""
    newest = None
    for key in await store.list(f"{RAW_FOLDER}/"):
        if (m := _DATE_FOLDER.match(key)) is not None:
            with_data = dt.date(int(m[1]), int(m[2]), int(m[3]))
            newest = with_data if newest is None or with_data > newest else newest
    return newest


def plan(
    date: dt.date, since: dt.date | None, through: dt.date | None, newest: dt.date | None
) -> Window:
    """The days a refresh on ``date`` reads: from ``since``, else the day after ``through``
    (the state), else ``newest`` (the newest ingest date); through ``date`` - 1. Empty
    (``start`` > ``end``) when those days are already refreshed."""
    end = date - _DAY
    if since is not None:
        if since > end:
            raise UsageError(
                f"since: {since.isoformat()} leaves no complete day before the processing "
                f"date {date.isoformat()} (a refresh reads days up to the one before it)"
            )
        return Window(since, end)
    if through is not None:
        return Window(through + _DAY, end)
    if newest is None:
        raise InputError(
            f"{RAW_FOLDER}/: no ingested data to refresh; run an ingestion first, or pass "
            "--since to read the change lists anyway"
        )
    return Window(newest, end)


# --- the change lists ----------------------------------------------------------------------


async def read_changes(client: TmdbClient, window: Window) -> Changes:
    """Every TMDB id both change lists hold for ``window``."""
    changes = Changes()
    for kind in KINDS:
        for piece in window.pieces():
            await _read_window(client, kind, piece, changes)
    return changes


async def _read_window(
    client: TmdbClient, kind: MediaType, window: Window, changes: Changes
) -> None:
    first = await _page(client, kind, window, 1, changes)
    total = first.get("total_pages")
    total = total if type(total) is int and total >= 1 else 1
    if total > MAX_PAGE and window.days > 1:
        log.info("%s changes %s: %d pages, read in halves", kind, window.as_json(), total)
        for half in window.halves():
            await _read_window(client, kind, half, changes)
        return
    ids = changes.ids[kind]
    ids.update(_ids(first, kind, window, 1))
    last = min(total, MAX_PAGE)
    if total > MAX_PAGE:
        results = first.get("total_results")
        log.warning(
            "%s changes of %s: %s ids in %d pages, TMDB serves 500; the rest is unknown",
            kind,
            window.start.isoformat(),
            results,
            total,
        )
        changes.truncated.append(
            {
                "kind": kind,
                **window.as_json(),
                "total_pages": total,
                "total_results": results,
                "pages_read": MAX_PAGE,
            }
        )
    async with asyncio.TaskGroup() as group:  # pages at once, the client's limits apply
        tasks = [
            group.create_task(_page(client, kind, window, page, changes))
            for page in range(2, last + 1)
        ]
    for page, task in enumerate(tasks, start=2):
        ids.update(_ids(task.result(), kind, window, page))


async def _page(
    client: TmdbClient, kind: MediaType, window: Window, page: int, changes: Changes
) -> Mapping[str, Any]:
    try:
        data = await client.changes(kind, window.start, window.end, page)
    except LookupFailed as exc:
        raise TmdbUnavailable(f"TMDB change list: {exc.reason}") from None
    changes.pages += 1
    return data


def _ids(data: Mapping[str, Any], kind: MediaType, window: Window, page: int) -> Iterator[int]:
    results = data.get("results")
    if not isinstance(results, list):
        raise TmdbUnavailable(
            f"TMDB /3/{kind}/changes {window.start}..{window.end} page {page}: no results list"
        )
    for item in results:
        if isinstance(item, Mapping) and type(item.get("id")) is int:
            yield item["id"]


# --- what to fetch -------------------------------------------------------------------------


def select(titles: LakeIdMap, changes: Changes) -> dict[Profile | None, list[str]]:
    """The lake's titles among ``changes``, by the profile they were ingested with
    (``None``: not known, for titles of a rebuilt or older map). One scan of the map: each
    IMDb id once, in IMDb order, whatever number of days or pages listed it."""
    movies, shows = changes.ids["movie"], changes.ids["tv"]
    groups: dict[Profile | None, list[str]] = {}
    for imdb_id, title in titles.titles():
        if title.tmdb_id in (shows if title.media_type == "tv" else movies):
            groups.setdefault(title.profile, []).append(imdb_id)
    return groups


def _settings_for(settings: Settings, profile: Profile | None, media_type: MediaType) -> Settings:
    if profile is None:  # ingested before profiles were kept: this refresh's own settings
        return settings.with_changes(kind=media_type, detail="full")
    return settings.with_changes(
        kind=profile.kind,
        detail=profile.detail,
        language=profile.language,
        append_to_response=profile.append_to_response,
        output_format=profile.output_format,
    )


# --- the refresh ---------------------------------------------------------------------------


async def refresh(
    settings: Settings,
    *,
    since: dt.date | None = None,
    remaining: Remaining | None = None,
    safety_margin: float = 0.0,
    progress: Callable[[int], None] | None = None,
    store: Store | None = None,
) -> RefreshSummary:
    """Refresh the lake at ``settings.dest`` into the folder of ``settings.date`` (today,
    UTC, when None). See the module for what it does.

    Raises :class:`~tmdb_async.errors.IngestError` for bad usage, unusable storage, rejected
    credentials or a change list TMDB would not serve.
    """
    settings.validate()
    settings.credentials.require()
    started = time.monotonic()
    date = settings.date or dt.datetime.now(dt.UTC).date()
    # Full details (the id map is read for them only); every title is asked whatever it is.
    settings = settings.with_changes(
        date=date, offset=0, limit=None, skip_existing=False, detail="full", kind="auto"
    )
    summary = RefreshSummary(dest=settings.dest, date=date.isoformat())
    async with Engine.open(settings, store=store, compact=True, remaining=remaining) as engine:
        state = await read_state(engine.store)
        newest = None if since or state.through else await newest_ingest_date(engine.store)
        window = plan(date, since, state.through, newest)
        if state.through is None:
            # Pinned before anything is written: this refresh's own files (or a later
            # ingest) would otherwise move "the newest ingest date" of a rerun.
            await save_state(engine.store, window.start - _DAY, state)
            state = await read_state(engine.store)
        if window.days < 1:
            summary.status = "up_to_date"
            summary.refreshed_through = (state.through or window.start - _DAY).isoformat()
            summary.seconds = round(time.monotonic() - started, 3)
            return summary
        summary.window = window.as_json()
        changes = await read_changes(engine.client, window)
        summary.list_pages = changes.pages
        summary.truncated = changes.truncated
        summary.changed = {kind: len(ids) for kind, ids in changes.ids.items()}
        groups = select(engine.titles, changes)
        summary.in_lake = sum(len(ids) for ids in groups.values())
        log.info(
            "refresh %s..%s: %d movies and %d series changed, %d of them in the lake",
            window.start,
            window.end,
            summary.changed["movie"],
            summary.changed["tv"],
            summary.in_lake,
        )
        try:
            for profile, ids in groups.items():
                for media_type, part in _by_kind(profile, ids, engine.titles):
                    result = await _refresh_group(
                        engine,
                        _settings_for(settings, profile, media_type),
                        part,
                        window,
                        remaining=remaining,
                        safety_margin=safety_margin,
                        progress=progress,
                        started=started,
                    )
                    summary.add(result)
                    if summary.status == "incomplete":
                        break
                if summary.status == "incomplete":
                    break
        finally:
            stats = engine.client.stats
            summary.requests = stats.requests
            summary.retries = stats.retries
            summary.throttled_429 = stats.throttled
            summary.seconds = round(time.monotonic() - started, 3)
        through = state.through
        # "Through X" promises every day up to X was read: a --since window that leaves a
        # gap after X does not move it (the next refresh reads the gap). Days cut off at page
        # 500 count as read: rereading them gets the same 500 pages (the summary lists them).
        if summary.status == "ok" and (through is None or window.start <= through + _DAY):
            await save_state(engine.store, window.end, state)
            through = max(window.end, through or window.end)
        summary.refreshed_through = None if through is None else through.isoformat()
    return summary


def _by_kind(
    profile: Profile | None, ids: list[str], titles: LakeIdMap
) -> Iterator[tuple[MediaType, list[str]]]:
    """A profile's ids as one group; titles of unknown profile by media type (each kind is
    then fetched as such)."""
    if profile is not None:
        yield ("tv" if profile.kind == "tv" else "movie"), ids
        return
    for kind in KINDS:
        part = [i for i in ids if (t := titles.get(i)) is not None and t.media_type == kind]
        if part:
            yield kind, part


async def _refresh_group(
    engine: Engine,
    settings: Settings,
    ids: list[str],
    window: Window,
    *,
    remaining: Remaining | None,
    safety_margin: float,
    progress: Callable[[int], None] | None,
    started: float,
) -> Summary:
    client = engine.client.reshaped(
        kind=settings.kind,
        detail=settings.detail,
        language=settings.language,
        append_to_response=settings.append_to_response,
        deleted_on_404=True,
    )
    entries = [IdEntry(position, imdb_id, position + 1) for position, imdb_id in enumerate(ids)]
    return await engine.ingest(
        settings,
        client,
        _aiter(entries),
        job=runstate.items_key(ids, record_shape(settings)),
        label=f"refresh {window.start.isoformat()}..{window.end.isoformat()}",
        stem="refresh",
        batch=None,
        stats=ReadStats(),
        started=started,
        remaining=remaining,
        safety_margin=safety_margin,
        progress=progress,
    )


async def _aiter(entries: list[IdEntry]) -> AsyncIterator[IdEntry]:
    for entry in entries:
        yield entry
