"""Refreshing the lake: fetch again only the titles TMDB changed.

TMDB lists the ids it changed, per kind and per day (``/3/movie/changes``,
``/3/tv/changes``: at most 14 days a request, 100 ids a page, pages 1..500). A refresh with
processing date D (today or earlier, UTC):

1. picks its window of days: from the day after the last refreshed one
   (``Raw/TMDB/_state/refresh.json``, :class:`State`), or ``--since``; through D - 1, the
   last complete day (today's changes are read tomorrow, so each day is read once). The
   first refresh pins the state at the day before the newest ingest date, create-only and
   before writing anything, so that neither its own files nor a second first refresh can
   pass for a newer ingest;
2. reads both change lists for the window, every page, in requests of at most 14 days; a
   window cut off at page 500 is read in halves, down to single days, and a day still cut
   off is reported in ``truncated``, never dropped silently;
3. keeps the ids the lake's id map holds (repaired first from the date folders' ledgers: the
   map is a cache, and a killed run or a lost segment leaves titles out of it), plus the
   titles the last refresh failed, and
   fetches each once, ``/3/{movie|tv}/{id}`` with the settings it was ingested with (its
   :class:`~tmdb_async.lake.profile.Profile`), into D's folder through the same engine as ``run``
   (:meth:`~tmdb_async.jobs.ingest.Engine.ingest`): at most 100 records per file, exactly once,
   the same record shape. A title whose details answer 404 and whose IMDb id ``/find`` no
   longer finds is a ``deleted`` sidecar entry with its TMDB id (a 404 alone can be a merge:
   ``/find`` then names the new title, which is fetched). It stays in the id map, marked
   deleted: when a change list names its TMDB id again it is asked once by that id, and a
   title TMDB restored is a record again (one still removed writes nothing: its entry
   stands, ``still_deleted``);
4. once every title is accounted for, moves the state to the window's last day (never back,
   and not past a day never read: a ``--since`` after a gap leaves it), carrying the titles
   that failed to the next refresh.

The refresh of one date is a :class:`Plan` saved in the lake as it goes
(``Raw/TMDB/_state/refresh/<date>.json``): the window, the change-list pieces read and the
titles they named, then the groups to fetch. Run again with the same date after a kill, the
deadline or a Lambda retry, it continues the plan: pieces read are not read again, and the
folder's ledger keeps what was committed, so only the rest is fetched. Two refreshes at once
commit through the same ledger, so each title is still once in the folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from tmdb_async.errors import Conflict, ExitCode, IngestError, InputError, StorageError, UsageError
from tmdb_async.jobs.deadlines import Remaining, no_progress
from tmdb_async.jobs.ingest import Engine, _aiter, _unwrap
from tmdb_async.jobs.source import IdEntry, ReadStats
from tmdb_async.jobs.summary import Summary
from tmdb_async.lake.idmap import LakeIdMap, repair
from tmdb_async.lake.layout import RAW_FOLDER, STATE_FOLDER, data_file_date, date_folder
from tmdb_async.lake.ledger import Ledger
from tmdb_async.lake.profile import Profile
from tmdb_async.lake.storage import Store
from tmdb_async.settings import MEDIA_TYPES, MediaType, Settings
from tmdb_async.tmdb.client import LookupFailed, TmdbClient

log = logging.getLogger(__name__)

STATE_KEY: Final = f"{STATE_FOLDER}/refresh.json"
PLAN_FOLDER: Final = f"{STATE_FOLDER}/refresh"
MAX_DAYS: Final = 14  # days a change-list request may span (TMDB: 422, status_code 20)
MAX_PAGE: Final = 500  # the last page TMDB serves (400, status_code 22)

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
class RefreshSummary:
    """What a refresh did: the CLI's ``--json`` line and the Lambda result.

    ``changed`` counts the distinct ids of the change lists, ``in_lake`` those the id map
    holds (what the refresh accounts for: ``records`` + ``deleted`` + ``still_deleted`` +
    ``not_found`` + ``failed`` + ``kept``; ``still_deleted``: titles TMDB had removed, listed
    again, asked once by their TMDB id and still removed). ``requests`` are every request to
    TMDB, ``list_pages`` of them for the change lists.
    """

    dest: str
    date: str
    status: str = "ok"  # ok | up_to_date | failed_ids | incomplete | error
    window: dict[str, str] | None = None
    refreshed_through: str | None = None
    changed: dict[str, int] = field(default_factory=lambda: {k: 0 for k in MEDIA_TYPES})
    in_lake: int = 0
    records: int = 0
    deleted: int = 0
    still_deleted: int = 0
    not_found: int = 0
    failed: int = 0
    kept: int = 0
    truncated: list[dict[str, Any]] = field(default_factory=list)
    #: change-list items without an integer TMDB id (no title to refresh): counted, so a
    #: change in TMDB's answers shows instead of passing for a quiet day
    odd_items: int = 0
    files: list[str] = field(default_factory=list)
    sidecars: list[str] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)
    requests: int = 0
    list_pages: int = 0
    retries: int = 0
    throttled_429: int = 0
    carried: list[str] = field(default_factory=list)  # failed: asked again next refresh
    map_repaired: int = 0  # titles of the lake the id map had lost, learned again
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
        for name in ("records", "deleted", "still_deleted", "not_found", "failed", "kept"):
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
    """``through``: every day up to it has been read and its titles fetched; ``failed``:
    titles whose fetch failed, carried to the next refresh."""

    through: dt.date | None
    failed: tuple[str, ...] = ()
    etag: str | None = None


async def read_state(store: Store, today: dt.date) -> State:
    found = await store.read(STATE_KEY)
    if found is None:
        return State(None)
    raw, etag = found
    try:
        body = json.loads(raw)
        through = dt.date.fromisoformat(body["through"])
        failed = tuple(str(i) for i in body.get("failed", []))
    except (ValueError, KeyError, TypeError, AttributeError):
        through = None
    if through is None or through >= today:  # nobody can have read a day not over yet
        raise StorageError(
            f"{store.url(STATE_KEY)}: damaged refresh state (a refreshed day is a date before "
            "today, UTC); fix it, or delete it and pass --since"
        )
    return State(through, failed, etag)


def _state_body(through: dt.date, failed: Iterable[str]) -> bytes:
    body = {"through": through.isoformat(), "failed": sorted(set(failed)), "saved_at": _now()}
    return json.dumps(body).encode()


async def pin_state(store: Store, through: dt.date, today: dt.date) -> State:
    """The first refresh's start, written only if there is no state yet (create-only): a
    refresh that lost the race takes the other's, whose files may already be in the lake
    and must not pass for a newer ingest."""
    with contextlib.suppress(Conflict):
        await store.write(
            STATE_KEY, _state_body(through, ()), "application/json", if_none_match=True
        )
    return await read_state(store, today)


async def finish_state(
    store: Store,
    window: Window,
    asked: Iterable[str],
    failed: Iterable[str],
    state: State,
    today: dt.date,
) -> State:
    """After a refresh accounted for every title of ``window``: the refreshed day moves to
    its end, unless that would skip a day never read (a ``--since`` after a gap), and never
    back. The carried failures lose the titles this refresh ``asked`` and gain those that
    ``failed`` now; any other refresh's stay. Conditional: a refresh that saved meanwhile
    is read again and merged with."""
    asked, failed = set(asked), set(failed)
    while True:
        through = state.through
        carried = set(state.failed) - asked | failed
        if through is not None and window.start > through + _DAY:
            new = through  # a gap: the next refresh reads it; failures are still carried
        else:
            new = window.end if through is None else max(through, window.end)
        if new == through and carried == set(state.failed):
            return state
        assert new is not None
        try:
            await store.write(
                STATE_KEY,
                _state_body(new, carried),
                "application/json",
                if_none_match=state.etag is None,
                if_match=state.etag,
            )
            return State(new, tuple(sorted(carried)))
        except Conflict:
            state = await read_state(store, today)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


async def newest_ingest_date(store: Store) -> dt.date | None:
    """The newest date folder holding a data file."""
    newest = None
    for key in await store.list(f"{RAW_FOLDER}/"):
        if (with_data := data_file_date(key)) is not None:
            newest = with_data if newest is None or with_data > newest else newest
    return newest


def plan_window(date: dt.date, since: dt.date | None, through: dt.date) -> Window:
    """The days a refresh on ``date`` reads: from ``since``, else the day after ``through``;
    through ``date`` - 1. Empty (``start`` > ``end``) when already refreshed."""
    end = date - _DAY
    if since is not None:
        if since > end:
            raise UsageError(
                f"since: {since.isoformat()} leaves no complete day before the processing "
                f"date {date.isoformat()} (a refresh reads days up to the one before it)"
            )
        return Window(since, end)
    return Window(through + _DAY, end)


# --- the plan: what one refresh (one date) reads and fetches, kept until it is done -------


@dataclass(slots=True)
class Plan:
    """A refresh of one processing date, saved in the lake as it goes
    (``Raw/TMDB/_state/refresh/<date>.json``): the window, the change-list pieces read and
    the lake's titles they named, then the groups to fetch. A refresh of the same date cut
    off (deadline, kill, Lambda retry) continues it: the pieces read are not read again."""

    date: dt.date
    window: Window
    carried: list[str] = field(default_factory=list)  # failed last time: asked again
    done: list[list[str]] = field(default_factory=list)  # [kind, start, end] read
    selected: list[str] = field(default_factory=list)  # IMDb ids of the lake, once each
    changed: dict[str, int] = field(default_factory=lambda: {k: 0 for k in MEDIA_TYPES})
    truncated: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] | None = None  # {"profile", "media_type", "ids"}
    odd_items: int = 0  # change-list items without an integer id, in the pieces read
    # Pieces read in part: "kind/start/end" of a request window -> {"total", "read" pages}
    pages: dict[str, dict[str, Any]] = field(default_factory=dict)

    @staticmethod
    def key(date: dt.date) -> str:
        return f"{PLAN_FOLDER}/{date.isoformat()}.json"

    @classmethod
    async def load(cls, store: Store, date: dt.date) -> Plan | None:
        raw = await store.get(cls.key(date))
        if raw is None:
            return None
        try:
            body = json.loads(raw)
            window = body["window"]
            plan = cls(
                date,
                Window(
                    dt.date.fromisoformat(window["start"]), dt.date.fromisoformat(window["end"])
                ),
                [str(i) for i in body["carried"]],
                [[str(kind), str(start), str(end)] for kind, start, end in body["done"]],
                [str(i) for i in body["selected"]],
                {str(k): int(v) for k, v in body["changed"].items()},
                [dict(cut) for cut in body["truncated"]],
                None if body["groups"] is None else [_group(g) for g in body["groups"]],
                int(body.get("odd_items", 0)),  # absent from plans saved before it existed
                {
                    str(key): {"total": int(part["total"]), "read": [int(p) for p in part["read"]]}
                    for key, part in body.get("pages", {}).items()
                },
            )
            if plan.window.end != date - _DAY or plan.window.days < 1:
                raise ValueError("its window does not end the day before its date")
            return plan
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("%s: damaged refresh plan, starting it again", store.url(cls.key(date)))
            return None

    async def save(self, store: Store) -> None:
        body = {
            "date": self.date.isoformat(),
            "window": self.window.as_json(),
            "carried": self.carried,
            "done": self.done,
            "selected": self.selected,
            "changed": self.changed,
            "truncated": self.truncated,
            "groups": self.groups,
            "odd_items": self.odd_items,
            "pages": self.pages,
        }
        await store.put(self.key(self.date), json.dumps(body).encode(), "application/json")

    def pieces(self) -> Iterator[tuple[MediaType, Window]]:
        """The change-list requests still to read: per kind, the window in 14-day pieces."""
        for kind in MEDIA_TYPES:
            for piece in self.window.pieces():
                if [kind, piece.start.isoformat(), piece.end.isoformat()] not in self.done:
                    yield kind, piece

    def group(self, idmap: LakeIdMap) -> None:
        """The titles to fetch, by the profile they were ingested with."""
        groups: dict[tuple[str, str | None], dict[str, Any]] = {}
        wanted = dict.fromkeys([*self.selected, *self.carried])
        for imdb_id in wanted:
            title = idmap.get(imdb_id)
            if title is None:
                continue  # forgotten since (TMDB no longer honoured its entry)
            profile = title.profile
            if profile is None:  # by media type: each kind is fetched as such
                key, media_type = ("", title.media_type)
            else:
                key, media_type = (json.dumps(profile.as_json(), sort_keys=True), None)
            group = groups.setdefault(
                (key, media_type),
                {
                    "profile": None if profile is None else profile.as_json(),
                    "media_type": media_type,
                    "ids": [],
                },
            )
            group["ids"].append(imdb_id)
        self.groups = list(groups.values())


def _group(data: Mapping[str, Any]) -> dict[str, Any]:
    """A saved group, checked: a profile that parses, or a kind; ids as strings."""
    profile = data["profile"]
    if profile is None and data["media_type"] not in MEDIA_TYPES:
        raise ValueError("a group with neither profile nor kind")
    return {
        "profile": None if profile is None else Profile.from_json(profile).as_json(),
        "media_type": data["media_type"],
        "ids": [str(i) for i in data["ids"]],
    }


# --- the change lists ----------------------------------------------------------------------


SAVE_PAGES: Final = 100
"""Change-list pages read between two saves of the plan (and at every stop)."""


def _page_key(kind: MediaType, window: Window) -> str:
    return f"{kind}/{window.start.isoformat()}/{window.end.isoformat()}"


class _Lister:
    """Reads a plan's change-list pages: never one again that a save of the plan holds,
    none started once ``stop()`` says the deadline is near (the ones in flight finish), at
    most ``concurrency`` at once per request window. What it read goes into the plan, with
    the lake's titles it named, at :meth:`save`: every :data:`SAVE_PAGES` pages, after each
    14-day window and when it stops, so a refresh cut off anywhere continues from its plan."""

    def __init__(
        self,
        client: TmdbClient,
        plan: Plan,
        *,
        idmap: LakeIdMap | None = None,
        store: Store | None = None,
        stop: Callable[[], bool] = lambda: False,
        concurrency: int = 20,
        map_ready: Awaitable[int] | None = None,
    ) -> None:
        self.client, self.plan, self.idmap, self.store = client, plan, idmap, store
        self.stop = stop
        self.concurrency = max(1, concurrency)
        self.map_ready = map_ready
        self.totals = {k: int(v["total"]) for k, v in plan.pages.items()}
        self.read = {k: set(v["read"]) for k, v in plan.pages.items()}
        self.ids: dict[MediaType, set[int]] = {k: set() for k in MEDIA_TYPES}  # not in the plan yet
        self.truncated: list[dict[str, Any]] = []
        self.odd_items = 0  # items without an integer id, not in the plan yet
        self.completed: list[list[str]] = []
        self.pages = 0  # read by this call
        self.unsaved = 0
        self._saving = asyncio.Lock()

    async def piece(self, kind: MediaType, window: Window) -> bool:
        """Read one piece (at most 14 days); True when every page of it is read."""
        whole = await self._window(kind, window)
        if whole:
            self.completed.append([kind, window.start.isoformat(), window.end.isoformat()])
        return whole

    async def _window(self, kind: MediaType, window: Window) -> bool:
        key = _page_key(kind, window)
        read = self.read.setdefault(key, set())
        total = self.totals.get(key)
        if total is None:
            if self.stop():
                return False
            first = await _page(self.client, kind, window, 1)
            total = self.totals[key] = _total_pages(first, kind, window)
            if total <= MAX_PAGE or window.days == 1:
                self._take(first, kind, window, 1)
                if total > MAX_PAGE:
                    self.truncated.append(_cut(first, kind, window, total))
            read.add(1)
            await self._counted()
        if total > MAX_PAGE and window.days > 1:
            log.info("%s changes %s: %d pages, read in halves", kind, window.as_json(), total)
            whole = True
            for half in window.halves():
                whole = await self._window(kind, half) and whole
            return whole
        last = min(total, MAX_PAGE)
        todo = iter([page for page in range(2, last + 1) if page not in read])

        async def worker() -> None:
            for page in todo:
                if self.stop():
                    return
                data = await _page(self.client, kind, window, page)
                self._take(data, kind, window, page)
                read.add(page)
                await self._counted()

        async with _first_error(), asyncio.TaskGroup() as group:
            # Both kinds read at once: half the connections each.
            for _ in range(min(max(1, self.concurrency // len(MEDIA_TYPES)), last - len(read))):
                group.create_task(worker())
        return len(read) >= last

    def _take(self, data: Mapping[str, Any], kind: MediaType, window: Window, page: int) -> None:
        ids, odd = _ids(data, kind, window, page)
        self.ids[kind].update(ids)
        self.odd_items += odd

    async def _counted(self) -> None:
        self.pages += 1
        self.unsaved += 1
        if self.unsaved >= SAVE_PAGES and not self._saving.locked():
            await self.save()

    async def save(self) -> None:
        """Move what was read into the plan (the lake's titles its ids name), then save it."""
        if self.idmap is None or self.store is None:
            return
        async with self._saving:
            if self.map_ready is not None:
                await self.map_ready
            # From here to the plan's encoding nothing awaits: the pages and ids saved agree.
            plan, ids, self.ids = self.plan, self.ids, {k: set() for k in MEDIA_TYPES}
            self.unsaved = 0
            known = set(plan.selected)
            for kind in MEDIA_TYPES:
                plan.changed[kind] = plan.changed.get(kind, 0) + len(ids[kind])
                plan.selected += [i for i in in_lake(self.idmap, kind, ids[kind]) if i not in known]
                known.update(plan.selected)
            plan.truncated += self.truncated
            self.truncated = []
            plan.odd_items += self.odd_items
            self.odd_items = 0
            for piece_kind, start, end in self.completed:  # whole pieces: pages are done
                plan.done.append([piece_kind, start, end])
                inside = Window(dt.date.fromisoformat(start), dt.date.fromisoformat(end))
                for key in [k for k in self.totals if _within(k, piece_kind, inside)]:
                    del self.totals[key]
                    self.read.pop(key, None)
            self.completed = []
            plan.pages = {
                key: {"total": total, "read": sorted(self.read.get(key, ()))}
                for key, total in self.totals.items()
            }
            await plan.save(self.store)


def _within(key: str, kind: str, window: Window) -> bool:
    k, start, end = key.split("/")
    return k == kind and window.start.isoformat() <= start and end <= window.end.isoformat()


def _total_pages(first: Mapping[str, Any], kind: MediaType, window: Window) -> int:
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


def _cut(first: Mapping[str, Any], kind: MediaType, window: Window, total: int) -> dict[str, Any]:
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


@dataclass(slots=True)
class _Piece:
    ids: set[int] = field(default_factory=set)
    truncated: list[dict[str, Any]] = field(default_factory=list)
    odd_items: int = 0  # list items without an integer id: counted, never silently dropped


async def read_piece(client: TmdbClient, kind: MediaType, window: Window) -> _Piece:
    """Every TMDB id one change list holds for ``window`` (at most 14 days)."""
    lister = _Lister(client, Plan(window.end + _DAY, window))
    await lister.piece(kind, window)
    return _Piece(lister.ids[kind], lister.truncated, lister.odd_items)


@contextlib.asynccontextmanager
async def _first_error() -> AsyncIterator[None]:
    """A TaskGroup's failure as its first error (a TmdbUnavailable, a CredentialsError...),
    not an ExceptionGroup: what the CLI's exit codes and Step Functions' error names match."""
    try:
        yield
    except BaseExceptionGroup as group:
        raise _unwrap(group) from None


async def _page(
    client: TmdbClient, kind: MediaType, window: Window, page: int
) -> Mapping[str, Any]:
    try:
        return await client.changes(kind, window.start, window.end, page)
    except LookupFailed as exc:
        raise TmdbUnavailable(f"TMDB change list: {exc.reason}") from None


def _ids(
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


def in_lake(idmap: LakeIdMap, kind: MediaType, changed: set[int]) -> Iterator[str]:
    """The IMDb ids of the lake's titles of ``kind`` among TMDB ids ``changed``: one scan of
    the map, in IMDb order."""
    for imdb_id, title in idmap.entries():
        if title.media_type == kind and title.tmdb_id in changed:
            yield imdb_id


def _settings_for(settings: Settings, group: Mapping[str, Any]) -> Settings:
    if group["profile"] is None:  # ingested before profiles were kept: this refresh's own
        return settings.with_changes(kind=group["media_type"], detail="full")
    profile = Profile.from_json(group["profile"])
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
    credentials or a change list TMDB would not serve, and
    :class:`~tmdb_async.errors.DeadlineError` when stopped at the deadline without any
    progress.
    """
    settings.validate()
    settings.credentials.require()
    started = time.monotonic()
    today = dt.datetime.now(dt.UTC).date()
    date = settings.date or today
    if date > today:
        raise UsageError(
            f"date: {date.isoformat()} is after today ({today.isoformat()}, UTC); a refresh "
            "reads the change lists of days that are over"
        )
    if since is not None:
        plan_window(date, since, since)  # refused before any I/O when it reads no day
    # Full details (the id map is read for them only); every title is asked whatever it is.
    settings = settings.with_changes(
        date=date, offset=0, limit=None, skip_existing=False, detail="full", kind="auto"
    )
    summary = RefreshSummary(dest=settings.dest, date=date.isoformat())
    async with Engine.open(settings, store=store, compact=True, remaining=remaining) as engine:
        store = engine.store
        state = await read_state(store, today)
        plan = await Plan.load(store, date)
        if plan is not None and state.through is not None and state.through >= plan.window.end:
            plan = None  # finished; its file outlived a kill
        if plan is not None and since is not None and plan.window.start != since:
            plan = None  # another window asked for: a new plan
        if plan is None:
            if state.through is None:
                newest = await newest_ingest_date(store)
                if newest is None:
                    raise InputError(
                        f"{RAW_FOLDER}/: no ingested data to refresh; run an ingestion first"
                    )
                # An ingest dated in the future (run takes any --date) cannot pin later
                # than yesterday: no day after it is over.
                state = await pin_state(store, min(newest, today) - _DAY, today)
            assert state.through is not None
            window = plan_window(date, since, state.through)
            if window.days < 1:
                summary.status = "up_to_date"
                summary.refreshed_through = state.through.isoformat()
                summary.seconds = round(time.monotonic() - started, 3)
                return summary
            plan = Plan(date, window, carried=list(state.failed))
        summary.window = plan.window.as_json()
        # The titles are picked from the map: it is made whole first, while the first lists
        # are read (neither waits for the other).
        repairing = None
        if plan.groups is None:
            repairing = asyncio.create_task(repair(engine.idmap, store))
        before = engine.client.stats.requests
        try:
            listed = await _list(engine, plan, remaining, safety_margin, repairing)
            if plan.groups is not None:
                await _fetch(engine, settings, plan, summary, remaining, safety_margin, progress)
        finally:
            if repairing is not None:
                if not repairing.done():
                    repairing.cancel()  # stopped before the map was needed
                elif not repairing.cancelled() and repairing.exception() is None:
                    summary.map_repaired = repairing.result()
            stats = engine.client.stats
            summary.changed = dict(plan.changed)
            summary.truncated = plan.truncated
            summary.odd_items = plan.odd_items
            summary.in_lake = sum(len(g["ids"]) for g in plan.groups or [])
            summary.requests = stats.requests - before
            summary.list_pages = stats.change_pages
            summary.retries = stats.retries
            summary.throttled_429 = stats.throttled
            summary.seconds = round(time.monotonic() - started, 3)
        if plan.groups is None or summary.status == "incomplete":
            summary.status = "incomplete"
            done = summary.records + summary.deleted + summary.not_found + summary.failed
            if not listed and not done:
                raise no_progress(safety_margin, _DEADLINE_HINT)
            summary.refreshed_through = state.through.isoformat() if state.through else None
            return summary
        failed = await _failed(store, plan)
        asked = [i for group in plan.groups or [] for i in group["ids"]]
        state = await finish_state(store, plan.window, asked, failed, state, today)
        await store.delete(Plan.key(date))
        summary.refreshed_through = None if state.through is None else state.through.isoformat()
        summary.carried = list(state.failed)
    return summary


_DEADLINE_HINT = "give it more time (--time-budget, or the function's timeout)"


async def _list(
    engine: Engine,
    plan: Plan,
    remaining: Remaining | None,
    margin: float,
    map_ready: Awaitable[int] | None = None,
) -> int:
    """Read the plan's change-list pages not read yet (see :class:`_Lister`: saved as it
    reads); then group its titles. At the deadline no page starts, those in flight finish
    and the plan is saved. Returns the pages read by this call (plus one for the grouping):
    0 is no progress."""
    lister = _Lister(
        engine.client,
        plan,
        idmap=engine.idmap,
        store=engine.store,
        stop=lambda: remaining is not None and remaining() < margin,
        concurrency=engine.settings.concurrency,
        map_ready=map_ready,
    )
    hard_stop = None if remaining is None else max(0.0, remaining() - margin / 3)
    whole = True
    try:
        async with asyncio.timeout(hard_stop):  # a last resort: a page stuck in retries
            for pair in _by_window(plan.pieces()):
                if lister.stop():
                    whole = False
                    break
                # Both kinds of a window at once: neither waits for the other's first page.
                async with _first_error(), asyncio.TaskGroup() as group:
                    tasks = [group.create_task(lister.piece(kind, window)) for kind, window in pair]
                await lister.save()
                if not all(task.result() for task in tasks):
                    whole = False
                    break
    except TimeoutError:
        whole = False
    except BaseException:
        with contextlib.suppress(Exception):
            await lister.save()  # what was read is kept for the next call
        raise
    if not whole:
        await lister.save()
        return lister.pages
    read = lister.pages
    if plan.groups is None:
        read += 1
        if map_ready is not None:
            await map_ready
        plan.group(engine.idmap)
        await plan.save(engine.store)
        groups: list[dict[str, Any]] = plan.groups or []
        log.info(
            "refresh %s..%s: %d movies and %d series listed, %d titles of the lake",
            plan.window.start,
            plan.window.end,
            plan.changed["movie"],
            plan.changed["tv"],
            sum(len(group["ids"]) for group in groups),
        )
    return read


def _by_window(
    pieces: Iterable[tuple[MediaType, Window]],
) -> list[list[tuple[MediaType, Window]]]:
    """The pieces still to read, those of one window (one per kind) together."""
    together: dict[Window, list[tuple[MediaType, Window]]] = {}
    for kind, window in pieces:
        together.setdefault(window, []).append((kind, window))
    return list(together.values())


async def _fetch(
    engine: Engine,
    settings: Settings,
    plan: Plan,
    summary: RefreshSummary,
    remaining: Remaining | None,
    margin: float,
    progress: Callable[[int], None] | None,
) -> None:
    started = time.monotonic()
    for index, group in enumerate(plan.groups or []):
        part = _settings_for(settings, group)
        ids = group["ids"]
        client = engine.client.reshaped(
            kind=part.kind,
            detail=part.detail,
            language=part.language,
            append_to_response=part.append_to_response,
            deleted_on_404=True,
        )
        entries = [IdEntry(position, imdb_id, position + 1) for position, imdb_id in enumerate(ids)]
        result = await engine.ingest(
            part,
            client,
            _aiter(entries, 0, None),
            job=None,  # a refresh's date is explicit: it never pins one
            label=f"refresh {plan.window.start.isoformat()}..{plan.window.end.isoformat()}",
            stem="refresh",
            part=f"-{index}",
            batch=None,
            stats=ReadStats(),
            started=started,
            remaining=remaining,
            safety_margin=margin,
            progress=progress,
        )
        summary.add(result)
        if summary.status == "incomplete":
            return


async def _failed(store: Store, plan: Plan) -> list[str]:
    """The plan's titles whose latest outcome in the date folder is a failure."""
    ledger = await Ledger(store, date_folder(plan.date), owner="refresh-check").load()
    return [
        imdb_id
        for group in plan.groups or []
        for imdb_id in group["ids"]
        if (home := ledger.home(imdb_id)) is not None and home.outcome == "failed"
    ]
