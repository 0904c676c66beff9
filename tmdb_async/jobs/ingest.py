"""Orchestrating one run: ids in, TMDB records out, every id accounted for exactly once.

A producer and ``concurrency`` workers joined by a bounded queue (back-pressure: the CSV is
read only as fast as TMDB answers)::

    source ─read ids─▶ producer ─Queue(2×concurrency)─▶ workers ─TmdbClient─▶ TMDB
                          │                               │
              kept / skipped / invalid        chunk resolved ─▶ Ledger.commit ─▶ date folder

What to fetch and how chunks are committed is :mod:`tmdb_async.jobs.chunks`; what a date folder
holds, whatever ran before, is :mod:`tmdb_async.lake.ledger`'s job. This module opens the run (its
date, manifest, ledger, clients), drives the tasks and reports.

TMDB unreachable (the client's breaker): no id starts after it, the chunks already resolved
are committed, the rest stay open for the next run, and the run raises
:class:`~tmdb_async.errors.TmdbUnreachable` (exit 5) after recording it in the manifest.

Deadline: once less than ``safety_margin`` seconds remain no request starts (see
:mod:`tmdb_async.jobs.chunks`); the requests in flight finish and are committed, the id map's
lessons are saved, and ``next_offset`` (``remaining_items`` for a batch) names the first id
not accounted for. Only what is still running at a third of the margin (a request stuck in
retries) is cancelled. A continuation keeps what was committed, so nothing is fetched twice
and nothing is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

from tmdb_async.errors import (
    DamagedFile,
    IngestError,
    StorageError,
    UsageError,
    error_line,
    unwrap_group,
)
from tmdb_async.jobs.chunks import ChunkedRun
from tmdb_async.jobs.deadlines import Remaining
from tmdb_async.jobs.dry import DryStore
from tmdb_async.jobs.progress import Progress
from tmdb_async.jobs.source import IdEntry, ReadStats, entries_in, read_csv_ids, read_item_ids
from tmdb_async.jobs.summary import Estimate, Summary
from tmdb_async.jobs.survey import foreign, other_formats, profiles_of, refusal, rewrite, survey
from tmdb_async.lake import runstate
from tmdb_async.lake.idmap import LakeIdMap
from tmdb_async.lake.layout import RAW_FOLDER, date_folder, source_stem
from tmdb_async.lake.ledger import Ledger, lake_records
from tmdb_async.lake.manifest import Manifest
from tmdb_async.lake.profile import Profile
from tmdb_async.lake.storage import LocalStore, S3Store, Store, open_s3, parse_s3, read_source
from tmdb_async.settings import Settings
from tmdb_async.tmdb.client import ClientOptions, Timeline, TmdbClient

__all__ = ["Engine", "Estimate", "Summary", "estimate", "record_shape", "run"]

log = logging.getLogger(__name__)

"""Seconds left before the caller's deadline (for Lambda: the context's remaining time)."""

_SAVE_SECONDS = 5.0  # at most, for the run's last id-map segment (a lost one costs requests)
_SAVE_RESERVE = 0.25  # seconds of the deadline left after it (to return the result)


def record_shape(settings: Settings) -> str:
    """The settings that make a record what it is (:class:`~tmdb_async.lake.profile.Profile`). Two
    runs of one shape fetch the same thing, so the second keeps the first's ids; any other
    shape fetches them again."""
    return Profile.of(settings).shape


async def run(
    settings: Settings,
    *,
    items: Sequence[object] | None = None,
    remaining: Remaining | None = None,
    safety_margin: float = 0.0,
    progress: Callable[[int], None] | None = None,
    store: Store | None = None,
    report: Callable[[Summary], None] | None = None,
) -> Summary:
    """Run one ingestion job and return its :class:`Summary`.

    ``items`` replaces the CSV source with rows of a Step Functions Distributed Map batch.
    ``store`` replaces the destination ``settings.dest`` names (to embed the engine over
    another storage, or to observe and interrupt its writes in tests).
    ``progress``: called with the ids resolved as they are (a
    :class:`~tmdb_async.jobs.progress.Progress` is also given the client's counters).
    ``remaining``/``safety_margin``: stop starting new chunks once fewer than
    ``safety_margin`` seconds remain; the summary then has ``status="incomplete"`` and
    ``next_offset`` (or ``remaining_items`` for a batch) to continue from.

    ``report`` is handed the summary as the run ends, however it ends (an error, a
    cancellation): the counts so far, the manifest and where to continue.

    Raises :class:`~tmdb_async.errors.IngestError` for bad input, rejected credentials or
    unusable storage, after recording what was written in the manifest when it can; a
    :class:`~tmdb_async.errors.UsageError` before any TMDB request when the run would
    replace what other record settings wrote, or mix formats in the date folder, without
    ``settings.replace`` (see :meth:`Engine.ingest`).
    """
    settings.validate()
    _refuse_future(settings.date)
    settings.credentials.require()
    started = time.monotonic()
    stats = ReadStats()
    batch = None if items is None else read_item_ids(items, stats=stats)
    source_url = None if items is not None else parse_s3(settings.source, "source")
    async with Engine.open(
        settings,
        store=store,
        compact=batch is None,
        source_s3=source_url is not None,
        remaining=remaining,
        within=None if batch is None else [entry.label for entry in batch],
    ) as engine:
        if isinstance(progress, Progress):
            progress.attach(engine.client.stats)
            if batch is not None:  # a CSV's total is the caller's: it costs a reading pass
                end = None if settings.limit is None else settings.offset + settings.limit
                progress.set_total(len(batch[settings.offset : end]))
        slice_of = _slice(settings, batch, engine.s3)
        job = (  # a batch's date is its event's: it never pins one
            None if batch is not None else runstate.job_key(settings.source, record_shape(settings))
        )
        return await engine.ingest(
            settings,
            engine.client,
            slice_of(stats),
            again=lambda: slice_of(ReadStats()),
            report=report,
            job=job,
            label=settings.source if batch is None else f"items[{len(batch)}]",
            stem="batch" if batch is not None else source_stem(settings.source),
            batch=batch,
            stats=stats,
            started=started,
            remaining=remaining,
            safety_margin=safety_margin,
            progress=progress,
        )


def _refuse_future(date: dt.date | None) -> None:
    """A run's folder is its processing day: never one that has not begun (UTC)."""
    today = dt.datetime.now(dt.UTC).date()
    if date is not None and date > today:
        raise UsageError(
            f"date: {date.isoformat()} is after today ({today.isoformat()}, UTC); a run "
            "writes into the folder of a day that has begun"
        )


def _slice(
    settings: Settings, batch: Sequence[IdEntry] | None, s3: Any
) -> Callable[[ReadStats], AsyncIterator[IdEntry]]:
    """The run's slice of ids, read afresh at each call (a guard or a dry run reads it
    before the run does)."""

    def entries(stats: ReadStats) -> AsyncIterator[IdEntry]:
        if batch is not None:
            return entries_in(batch, settings.offset, settings.limit)
        return read_csv_ids(
            read_source(settings.source, s3),
            where=settings.source,
            offset=settings.offset,
            limit=settings.limit,
            stats=stats,
        )

    return entries


async def _resolve_date(
    settings: Settings, store: Store, job: str | None
) -> tuple[dt.date, bool, runstate.Watch | None]:
    """(the run's date, whether it continues an interrupted run, what the job's pins say):
    ``--date``, else an interrupted run's of the same job, else today (UTC)."""
    end = None if settings.limit is None else settings.offset + settings.limit
    seen = None if job is None else await runstate.watch(store, job)
    if seen is None:
        return settings.date or dt.datetime.now(dt.UTC).date(), False, None
    date, continued = seen.date(settings.offset, end, settings.date)
    return date, continued, seen


async def estimate(
    settings: Settings, *, items: Sequence[object] | None = None, store: Store | None = None
) -> Estimate:
    """What :func:`run` would do with ``settings``, without doing it (``--dry-run``): no
    TMDB request (no client is even opened) and nothing written. It reads the slice, the
    date folder's ledger (a commit left half done is read, not rolled forward), its
    manifests, the id map (the newest segments only: a dry run compacts nothing) and, with
    ``skip_existing``, the lake's ledgers; and it sorts each id with the run's own rules
    (:func:`~tmdb_async.jobs.chunks.keeps`, :func:`~tmdb_async.tmdb.client.asks_by_map`)."""
    settings.validate()
    _refuse_future(settings.date)
    stats = ReadStats()
    batch = None if items is None else read_item_ids(items, stats=stats)
    dest_url = parse_s3(settings.dest, "dest")
    source_s3 = items is None and parse_s3(settings.source, "source") is not None
    needed = bool((dest_url and store is None) or source_s3)
    async with open_s3(needed, settings.concurrency) as s3:
        if store is None:
            store = S3Store(s3, dest_url) if dest_url else LocalStore(settings.dest)
        job = (
            None if batch is not None else runstate.job_key(settings.source, record_shape(settings))
        )
        date, _, _ = await _resolve_date(settings, store, job)
        folder = date_folder(date)
        ledger = await Ledger(store, folder).peek()
        idmap = LakeIdMap(store, "dry-run")
        if settings.detail == "full":
            with contextlib.suppress(StorageError):
                idmap = await idmap.load(compact=False)
        lake = await lake_records(store, RAW_FOLDER) if settings.skip_existing else set()
        found = Estimate(
            source=settings.source if batch is None else f"items[{len(batch)}]",
            dest=settings.dest,
            date=date.isoformat(),
            format=settings.output_format,
            rate=settings.rate,
        )
        profiles = await profiles_of(store, folder)
        await survey(
            found, settings, _slice(settings, batch, s3)(stats), ledger, lake, idmap, profiles
        )
        found.other_format = other_formats(ledger, settings.output_format)
        found.refused = None if settings.replace else refusal(found, settings)
        if stats.exhausted or batch is not None:
            found.source_ids = stats.distinct if batch is None else len(batch)
        return found


@dataclasses.dataclass(slots=True)
class Engine:
    """What one run opens once, inside the event loop: the S3 client, the destination, the
    lake's id map and the TMDB client (one aiohttp session). :meth:`ingest` runs a job on
    them; a refresh runs several (one per record profile) on one engine."""

    settings: Settings
    s3: Any
    store: Store
    idmap: LakeIdMap
    client: TmdbClient
    run_id: str

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        settings: Settings,
        *,
        store: Store | None = None,
        compact: bool,
        source_s3: bool = False,
        remaining: Remaining | None = None,
        within: Sequence[str] | None = None,
    ) -> AsyncIterator[Engine]:
        """Open the run's clients; on the way out, save what the id map learned (within
        ``remaining``) and close them. ``compact``: fold the id map's segments (CLI runs
        and refreshes; never Distributed Map children). ``within``: a batch's ids, the
        only part of the id map it reads."""
        dest_url = parse_s3(settings.dest, "dest")
        run_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"
        async with AsyncExitStack() as stack:
            s3 = await stack.enter_async_context(
                open_s3(bool(dest_url or source_s3), settings.concurrency)
            )
            if store is None:
                store = S3Store(s3, dest_url) if dest_url else LocalStore(settings.dest)
                if isinstance(store, LocalStore):  # before the id map's read
                    await store.check_root()
            if settings.dry_run:  # a refresh's dry run: its steps write nothing out
                store = DryStore(store)
            idmap = await _id_map(store, run_id, settings, compact, within)
            client = await stack.enter_async_context(
                TmdbClient.open(ClientOptions.of(settings), idmap)
            )
            try:
                yield cls(settings, s3, store, idmap, client, run_id)
            finally:
                await _save_lessons(idmap, remaining)

    async def survey(
        self, settings: Settings, entries: AsyncIterator[IdEntry], found: Estimate
    ) -> None:
        """Add to ``found`` what :meth:`ingest` would do with ``entries`` in the folder of
        ``settings.date`` (a refresh's dry run, group by group), reading only."""
        assert settings.date is not None
        folder = date_folder(settings.date)
        ledger = await Ledger(self.store, folder).peek()
        profiles = await profiles_of(self.store, folder)
        await survey(found, settings, entries, ledger, set(), self.idmap, profiles)

    async def ingest(
        self,
        settings: Settings,
        client: TmdbClient,
        entries: AsyncIterator[IdEntry],
        *,
        job: str | None,
        label: str,
        stem: str,
        part: str = "",
        batch: Sequence[IdEntry] | None,
        stats: ReadStats,
        started: float,
        remaining: Remaining | None,
        safety_margin: float,
        progress: Callable[[int], None] | None,
        again: Callable[[], AsyncIterator[IdEntry]] | None = None,
        report: Callable[[Summary], None] | None = None,
    ) -> Summary:
        """Account for every id of ``entries`` exactly once in the date folder (see the
        module): resolve the date, write the manifest, drive the producer, workers and
        committer, and report. ``batch``: the ids handed back when the deadline stops it;
        ``part`` tells apart the manifests of several jobs of one run.

        ``again`` (the slice read afresh) arms the guard: when the folder holds answers
        of other record settings or data files of another format, the slice is surveyed
        first (:func:`estimate`'s rules) and, without ``settings.replace``, the run stops
        with one :class:`~tmdb_async.errors.UsageError` line before any TMDB request or
        write; with it, the other format's files are rewritten into this one first.
        ``report`` gets the summary however the run ends."""
        store, shape = self.store, record_shape(settings)
        end = None if settings.limit is None else settings.offset + settings.limit
        date, continued, seen = await _resolve_date(settings, store, job)
        if continued:
            log.warning("continuing the interrupted run of %s in its folder", date.isoformat())
        folder = date_folder(date)
        summary = Summary(source=label, dest=settings.dest, date=date.isoformat())
        # A batch reads the ledger's pages of its own ids, not the whole folder.
        within = None if batch is None else [entry.label for entry in batch]
        ledger = await Ledger(store, folder, owner=self.run_id, within=within).load()
        lake = await lake_records(store, RAW_FOLDER) if settings.skip_existing else set()
        profiles: dict[str, Profile] = {}
        if again is not None and foreign(ledger, shape):
            profiles = await profiles_of(store, folder)
            found = Estimate(
                label, settings.dest, date.isoformat(), settings.output_format, settings.rate
            )
            await survey(found, settings, again(), ledger, lake, self.idmap, profiles)
            found.other_format = other_formats(ledger, settings.output_format)
            refused = refusal(found, settings)
            if refused is not None and not settings.replace:
                raise UsageError(refused)
        manifest = Manifest(
            store,
            folder,
            f"{stem}-{self.run_id}{part}",
            {
                "run": self.run_id,
                "source": label,
                "settings": {**settings.public(), "date": date.isoformat()},
                "continued": continued,
            },
        )
        # Written first: proves the destination is writable before TMDB quota is spent.
        summary.manifest = await manifest.write()
        pinned: list[runstate.Pin] = []  # once the run has read an id
        beating: asyncio.Task[None] | None = None
        if job is not None:
            pin = runstate.Pin(
                f"{self.run_id}{part}", date.isoformat(), settings.offset, end, source=label
            )
            entries = _pinning(entries, store, job, pin, pinned)
        if profiles and settings.replace:
            summary.rewritten = await rewrite(ledger, Profile.of(settings), profiles)
        # This part's own timeline: a refresh's parts share the client, one after another.
        timeline = client.stats.timeline = Timeline()
        job_run = ChunkedRun(
            settings,
            ledger,
            client,
            shape=shape,
            stem=stem,
            lake=lake,
            idmap=self.idmap,
            remaining=remaining,
            margin=safety_margin,
            progress=_counting(progress, timeline),
            track=batch is not None,
        )
        requests_before = client.stats.requests
        error: BaseException | None = None
        hard_stop = None if remaining is None else max(0.0, remaining() - safety_margin / 3)
        if job is not None:
            beating = asyncio.create_task(_heartbeat(store, job, pinned))
        try:
            async with asyncio.timeout(hard_stop) as budget, asyncio.TaskGroup() as outer:
                outer.create_task(job_run.commit_all())
                async with asyncio.TaskGroup() as group:
                    group.create_task(job_run.produce(entries))
                    for _ in range(settings.concurrency):
                        group.create_task(job_run.work())
                job_run.ready.put_nowait(None)
            # A checkpoint for the next reader, in what the deadline leaves (best effort:
            # one cut short costs the next reader a longer log, nothing else).
            spare = None if remaining is None else remaining() - safety_margin
            if spare is None or spare > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(spare):
                        await ledger.settle(wait=5.0 if spare is None else min(5.0, spare))
            # TMDB unreachable: what was resolved is committed above; the run ends with the
            # breaker's one line, its ids left for the next run (none marked failed).
            error = job_run.unreachable
            if error is None and job_run.damaged:  # the rest is written; these ids wait
                error = DamagedFile(
                    f"{job_run.damaged[0]} ({job_run.counts.blocked} ids kept their place)"
                )
        except TimeoutError:
            if not budget.expired():
                error = TimeoutError("unexpected timeout")
            log.warning("deadline reached: ids still in retries cancelled, their chunks stay open")
        except BaseException as exc:  # recorded in the manifest, then re-raised
            error = unwrap_group(exc)
        finally:
            if beating is not None:
                beating.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beating
            summary.seconds = round(time.monotonic() - started, 3)
            _fill(summary, job_run, client, stats, batch, requests_before)
            if error is not None:
                summary.status = "error"
                summary.error = error_line(error)
            await _finish(summary, manifest, client, store, job, pinned, seen, error)
            if report is not None:
                report(summary)
        if error is not None:
            raise error
        log.info(
            "run %s: %d ids, %d records, %d not found, %d invalid, %d failed, %d kept in %.1fs",
            summary.status,
            summary.unique_ids,
            summary.records,
            summary.not_found,
            summary.invalid,
            summary.failed,
            summary.kept,
            summary.seconds,
        )
        return summary


def _counting(progress: Callable[[int], None] | None, timeline: Timeline) -> Callable[[int], None]:
    """``progress``, also counting the ids done into the manifest's timeline."""

    def counted(n: int) -> None:
        timeline.add("ids", n)
        if progress is not None:
            progress(n)

    return counted


async def _pinning(
    entries: AsyncIterator[IdEntry],
    store: Store,
    job: str,
    pin: runstate.Pin,
    pinned: list[runstate.Pin],
) -> AsyncIterator[IdEntry]:
    """``entries``, pinning the job's date before the first (:mod:`tmdb_async.lake.runstate`):
    a run that read nothing pins nothing."""
    async for entry in entries:
        if not pinned:
            await runstate.pin(store, job, pin)
            pinned.append(pin)
        yield entry


async def _heartbeat(store: Store, job: str, pinned: list[runstate.Pin]) -> None:
    """While the run goes, its pin beats (:data:`~tmdb_async.lake.runstate.HEARTBEAT`), so that
    a run killed anywhere is found dead by the run that finishes its job."""
    while True:
        await asyncio.sleep(runstate.HEARTBEAT)
        if not pinned:
            continue
        try:
            pinned[0] = await runstate.beat(store, job, pinned[0])
        except IngestError as exc:  # a missed beat costs nothing but a later clean-up
            log.warning("run record not renewed: %s", exc)


async def _id_map(
    store: Store, owner: str, settings: Settings, compact: bool, within: Sequence[str] | None
) -> LakeIdMap:
    """The lake's id map, read once (full detail only: ``/find`` items need no map). It is
    a cache: when it cannot be read, the run goes on without it."""
    idmap = LakeIdMap(store, owner)
    if settings.detail != "full":
        return idmap
    try:
        return await idmap.load(compact=compact, within=within)
    except StorageError as exc:
        log.warning("id map not read, every title is looked up: %s", exc)
        return LakeIdMap(store, owner)


async def _save_lessons(idmap: LakeIdMap, remaining: Remaining | None) -> None:
    """The run's last id-map segment, within what is left of the caller's deadline."""
    left = None if remaining is None else remaining() - _SAVE_RESERVE
    seconds = _SAVE_SECONDS if left is None else min(_SAVE_SECONDS, left)
    if seconds <= 0:
        log.warning("no time left to save %d id-map titles", idmap.pending)
        return
    try:
        async with asyncio.timeout(seconds):
            await idmap.flush_quietly()
    except TimeoutError:
        log.warning("id-map titles not saved within %.1fs", seconds)


def _fill(
    summary: Summary,
    job: ChunkedRun,
    client: TmdbClient,
    stats: ReadStats,
    batch: Sequence[IdEntry] | None,
    requests_before: int = 0,
) -> None:
    for count in dataclasses.fields(job.counts):  # the summary has a field of each name
        setattr(summary, count.name, getattr(job.counts, count.name))
    summary.unique_ids = job.done
    summary.files = sorted(job.files)
    summary.sidecars = sorted(job.sidecars)
    summary.held_failures = job.held_failures
    summary.requests = client.stats.requests - requests_before
    summary.retries = client.stats.retries
    summary.throttled_429 = client.stats.throttled
    summary.rows_read = stats.rows
    if stats.exhausted:
        summary.source_ids = stats.distinct
    summary.next_offset = job.next_offset()
    if summary.next_offset is not None:
        summary.status = "incomplete"
        limit = job.settings.limit
        if limit is not None:  # the continuation ends where the slice ended
            summary.next_limit = job.settings.offset + limit - summary.next_offset
        if batch is not None:
            summary.remaining_items = [
                {"id": entry.imdb_id}
                for entry in batch
                if entry.position >= summary.next_offset
                and entry.position not in (job.accounted or ())
            ]
    elif summary.failed:
        summary.status = "failed_ids"


async def _finish(
    summary: Summary,
    manifest: Manifest,
    client: TmdbClient,
    store: Store,
    job: str | None,
    pinned: Sequence[runstate.Pin],
    seen: runstate.Watch | None,
    error: BaseException | None,
) -> None:
    """Write the final manifest and settle the run's pin (cleared when its slice is done,
    left interrupted otherwise); never mask the run's own error."""
    try:
        stats = client.stats
        await manifest.finish(summary.manifest_fields(stats.as_dict(), stats.timeline.as_dict()))
        for pin in pinned:
            assert job is not None
            if summary.status in ("ok", "failed_ids"):
                await runstate.finished(store, job, pin, seen)
            else:
                await runstate.interrupted(store, job, pin, summary.next_offset, seen)
    except IngestError as exc:
        if error is None:
            raise
        log.warning("could not record the failed run: %s", exc)
