"""The refresh, step by step: the processing date, the plan resumed or made, the change
lists read (:mod:`.listing`), the titles fetched through the ingest engine, the state moved.
See :mod:`tmdb_async.jobs.refresh` for the design."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

from tmdb_async.errors import InputError, UsageError
from tmdb_async.jobs.deadlines import Remaining, no_progress
from tmdb_async.jobs.ingest import Engine, Estimate, Summary
from tmdb_async.jobs.progress import Progress
from tmdb_async.jobs.refresh.listing import list_changes
from tmdb_async.jobs.refresh.plan import Plan
from tmdb_async.jobs.refresh.state import (
    State,
    finish_state,
    newest_ingest_date,
    pin_state,
    read_state,
)
from tmdb_async.jobs.refresh.summary import RefreshSummary
from tmdb_async.jobs.refresh.window import DAY, plan_window
from tmdb_async.jobs.source import IdEntry, ReadStats, entries_in
from tmdb_async.lake.idmap import repair
from tmdb_async.lake.layout import RAW_FOLDER, date_folder
from tmdb_async.lake.ledger import Ledger
from tmdb_async.lake.storage import Store
from tmdb_async.settings import Settings

_DEADLINE_HINT = "give it more time (--time-budget, or the function's timeout)"


@dataclass(frozen=True, slots=True)
class _Limits:
    """The caller's deadline, and what it leaves for the end."""

    remaining: Remaining | None
    margin: float
    progress: Callable[[int], None] | None
    report: Callable[[Summary], None] | None = None


async def refresh(
    settings: Settings,
    *,
    since: dt.date | None = None,
    remaining: Remaining | None = None,
    safety_margin: float = 0.0,
    progress: Callable[[int], None] | None = None,
    store: Store | None = None,
    report: Callable[[Summary], None] | None = None,
) -> RefreshSummary:
    """Refresh the lake at ``settings.dest`` into the folder of ``settings.date`` (today,
    UTC, when None). See :mod:`tmdb_async.jobs.refresh` for what it does. ``report`` gets
    each group's :class:`Summary` as its part of the run ends, however it ends.

    Raises :class:`~tmdb_async.errors.IngestError` for bad usage, unusable storage, rejected
    credentials or a change list TMDB would not serve, and
    :class:`~tmdb_async.errors.DeadlineError` when stopped at the deadline without any
    progress.
    """
    started = time.monotonic()
    today = dt.datetime.now(dt.UTC).date()
    settings = _refresh_settings(settings, since, today)
    date = settings.date
    assert date is not None
    summary = RefreshSummary(dest=settings.dest, date=date.isoformat())
    limits = _Limits(remaining, safety_margin, progress, report)
    async with Engine.open(settings, store=store, compact=True, remaining=remaining) as engine:
        if isinstance(progress, Progress):
            progress.attach(engine.client.stats)
        state, plan = await _resume_or_plan(engine.store, date, since, today)
        if plan is None:
            assert state.through is not None
            summary.status = "up_to_date"
            summary.refreshed_through = state.through.isoformat()
            summary.seconds = round(time.monotonic() - started, 3)
            return summary
        summary.window = plan.window.as_json()
        listed = await _list_and_fetch(engine, settings, plan, summary, limits, started)
        if plan.groups is None or summary.status == "incomplete":
            return _incomplete(summary, state, listed, safety_margin)
        await _finish(engine.store, plan, state, summary, today)
    return summary


async def refresh_estimate(
    settings: Settings, *, since: dt.date | None = None, store: Store | None = None
) -> Estimate:
    """What :func:`refresh` would do (``--dry-run``): its own steps, the change lists read
    (those requests are spent, and counted), then each group of titles sorted by the run's
    rules (:meth:`Engine.survey`) instead of fetched. Nothing is written: the state, the
    plan and the id map's repair stay in memory (:class:`~tmdb_async.jobs.dry.DryStore`)."""
    today = dt.datetime.now(dt.UTC).date()
    settings = _refresh_settings(settings.with_changes(dry_run=True), since, today)
    assert settings.date is not None
    found = Estimate(
        source="refresh",
        dest=settings.dest,
        date=settings.date.isoformat(),
        format=settings.output_format,
        rate=settings.rate,
        change_lists=True,
    )
    async with Engine.open(settings, store=store, compact=False) as engine:
        state, plan = await _resume_or_plan(engine.store, settings.date, since, today)
        if plan is None:
            found.note = f"up to date: changes refreshed through {state.through}"
            return found
        repairing = None
        if plan.groups is None:
            repairing = asyncio.create_task(repair(engine.idmap, engine.store))
        await list_changes(engine, plan, None, 0.0, repairing)
        if repairing is not None:
            _repaired(repairing, 0)
        for group in plan.groups or []:
            entries = [IdEntry(at, imdb_id, at + 1) for at, imdb_id in enumerate(group.ids)]
            await engine.survey(group.settings(settings), entries_in(entries, 0, None), found)
        found.change_list_requests = engine.client.stats.requests
    return found


def _refresh_settings(settings: Settings, since: dt.date | None, today: dt.date) -> Settings:
    """The settings a refresh runs with, checked before any I/O: its processing date (today
    when None, never after it), full details, every title asked whatever it is."""
    settings.validate()
    settings.credentials.require()
    date = settings.date or today
    if date > today:
        raise UsageError(
            f"date: {date.isoformat()} is after today ({today.isoformat()}, UTC); a refresh "
            "reads the change lists of days that are over"
        )
    if since is not None:
        plan_window(date, since, since)  # refused before any I/O when it reads no day
    # Full details (the id map is read for them only); every title is asked whatever it is.
    return settings.with_changes(
        date=date, offset=0, limit=None, skip_existing=False, detail="full", kind="auto"
    )


async def _resume_or_plan(
    store: Store, date: dt.date, since: dt.date | None, today: dt.date
) -> tuple[State, Plan | None]:
    """The state, and the date's saved plan when it is still to continue, else a new plan;
    no plan when every complete day is refreshed already."""
    state = await read_state(store, today)
    plan = await Plan.load(store, date)
    if plan is not None and state.through is not None and state.through >= plan.window.end:
        plan = None  # finished; its file outlived a kill
    if plan is not None and since is not None and plan.window.start != since:
        plan = None  # another window asked for: a new plan
    if plan is not None:
        return state, plan
    if state.through is None:
        state = await _first_state(store, today)
    assert state.through is not None
    window = plan_window(date, since, state.through)
    if window.days < 1:
        return state, None
    return state, Plan(date, window, carried=list(state.failed))


async def _first_state(store: Store, today: dt.date) -> State:
    """The first refresh's state, pinned at the day before the newest ingest date."""
    newest = await newest_ingest_date(store)
    if newest is None:
        raise InputError(f"{RAW_FOLDER}/: no ingested data to refresh; run an ingestion first")
    # An ingest dated in the future (run takes any --date) cannot pin later than yesterday:
    # no day after it is over.
    return await pin_state(store, min(newest, today) - DAY, today)


async def _list_and_fetch(
    engine: Engine,
    settings: Settings,
    plan: Plan,
    summary: RefreshSummary,
    limits: _Limits,
    started: float,
) -> int:
    """Read the lists, then fetch the titles when they are read whole; the summary counts
    whatever was done, also when stopped by an error. Returns the list pages read."""
    # The titles are picked from the map: it is made whole first, while the first lists
    # are read (neither waits for the other).
    repairing = None
    if plan.groups is None:
        repairing = asyncio.create_task(repair(engine.idmap, engine.store))
    before = engine.client.stats.requests
    try:
        listed = await list_changes(engine, plan, limits.remaining, limits.margin, repairing)
        if plan.groups is not None:
            await _fetch(engine, settings, plan, summary, limits)
    finally:
        if repairing is not None:
            summary.map_repaired = _repaired(repairing, summary.map_repaired)
        _count(summary, plan, engine, before, started)
    return listed


def _repaired(repairing: asyncio.Task[int], otherwise: int) -> int:
    """The titles the map repair learned; a repair not needed (stopped first) is cancelled."""
    if not repairing.done():
        repairing.cancel()  # stopped before the map was needed
    elif not repairing.cancelled() and repairing.exception() is None:
        return repairing.result()
    return otherwise


def _count(
    summary: RefreshSummary, plan: Plan, engine: Engine, before: int, started: float
) -> None:
    stats = engine.client.stats
    summary.mode, summary.reason = plan.mode, plan.reason
    summary.changed = dict(plan.changed)
    summary.truncated = plan.truncated
    summary.odd_items = plan.odd_items
    summary.in_lake = sum(1 for _ in plan.titles)
    summary.requests = stats.requests - before
    summary.list_pages = stats.change_pages
    summary.retries = stats.retries
    summary.throttled_429 = stats.throttled
    summary.seconds = round(time.monotonic() - started, 3)


def _incomplete(
    summary: RefreshSummary, state: State, listed: int, margin: float
) -> RefreshSummary:
    """A refresh stopped before every title was accounted for: the day does not move. No
    page read and no title done is no progress at all (a deadline error)."""
    summary.status = "incomplete"
    done = summary.records + summary.deleted + summary.not_found + summary.failed
    if not listed and not done:
        raise no_progress(margin, _DEADLINE_HINT)
    summary.refreshed_through = state.through.isoformat() if state.through else None
    return summary


async def _finish(
    store: Store, plan: Plan, state: State, summary: RefreshSummary, today: dt.date
) -> None:
    """Every title accounted for: the state moves, carrying the titles that failed, and the
    plan is done."""
    failed = await _failed(store, plan)
    state = await finish_state(store, plan.window, plan.titles, failed, state, today)
    await store.delete(Plan.key(plan.date))
    summary.refreshed_through = None if state.through is None else state.through.isoformat()
    summary.carried = list(state.failed)


async def _fetch(
    engine: Engine, settings: Settings, plan: Plan, summary: RefreshSummary, limits: _Limits
) -> None:
    """Fetch the plan's groups, each with the settings its titles were ingested with, into
    the date's folder through the ingest engine (its ledger: exactly once)."""
    started = time.monotonic()
    if isinstance(limits.progress, Progress):  # the titles to fetch: known once listed
        limits.progress.set_total(sum(len(group.ids) for group in plan.groups or []))
    label = f"refresh {plan.window.start.isoformat()}..{plan.window.end.isoformat()}"
    for index, group in enumerate(plan.groups or []):
        part = group.settings(settings)
        client = engine.client.reshaped(
            kind=part.kind,
            detail=part.detail,
            language=part.language,
            append_to_response=part.append_to_response,
            deleted_on_404=True,
        )
        entries = [IdEntry(at, imdb_id, at + 1) for at, imdb_id in enumerate(group.ids)]
        result = await engine.ingest(
            part,
            client,
            entries_in(entries, 0, None),
            job=None,  # a refresh's date is explicit: it never pins one
            label=label,
            stem="refresh",
            part=f"-{index}",
            batch=None,
            stats=ReadStats(),
            started=started,
            remaining=limits.remaining,
            safety_margin=limits.margin,
            progress=limits.progress,
            report=limits.report,
        )
        summary.add(result)
        if summary.status == "incomplete":
            return


async def _failed(store: Store, plan: Plan) -> list[str]:
    """The plan's titles whose latest outcome in the date folder is a failure."""
    ledger = await Ledger(store, date_folder(plan.date), owner="refresh-check").load()
    return [
        imdb_id
        for imdb_id in plan.titles
        if (home := ledger.home(imdb_id)) is not None and home.outcome == "failed"
    ]
