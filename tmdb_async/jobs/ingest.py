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
import json
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
from tmdb_async.jobs.chunks import ChunkedRun, keeps, replaces_other
from tmdb_async.jobs.deadlines import Remaining
from tmdb_async.jobs.dry import DryStore
from tmdb_async.jobs.source import IdEntry, ReadStats, entries_in, read_csv_ids, read_item_ids
from tmdb_async.jobs.summary import Estimate, Summary
from tmdb_async.lake import runstate
from tmdb_async.lake.homes import Home
from tmdb_async.lake.idmap import LakeIdMap
from tmdb_async.lake.layout import RAW_FOLDER, date_folder, source_stem
from tmdb_async.lake.ledger import ANSWERS, SIDECAR_FOLDER, Ledger, lake_records
from tmdb_async.lake.manifest import MANIFEST_FOLDER, Manifest
from tmdb_async.lake.profile import Profile
from tmdb_async.lake.storage import LocalStore, S3Store, Store, open_s3, parse_s3, read_source
from tmdb_async.settings import FORMATS, Settings
from tmdb_async.tmdb.client import ClientOptions, TmdbClient, asks_by_map

__all__ = ["Engine", "Estimate", "Summary", "estimate", "record_shape", "run"]

log = logging.getLogger(__name__)

"""Seconds left before the caller's deadline (for Lambda: the context's remaining time)."""

_REWRITE_FILES = 20  # files of another format rewritten per ledger commit
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
    ) as engine:
        slice_of = _slice(settings, batch, engine.s3)
        job = (
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
    async with open_s3(bool(dest_url or source_s3), settings.concurrency) as s3:
        if store is None:
            store = S3Store(s3, dest_url) if dest_url else LocalStore(settings.dest)
        job = (
            None if batch is not None else runstate.job_key(settings.source, record_shape(settings))
        )
        date, _, _ = await _resolve_date(settings, store, job)
        folder = date_folder(date)
        ledger = await Ledger(store, folder).read()
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
        profiles = await _profiles(store, folder)
        await _survey(
            found, settings, _slice(settings, batch, s3)(stats), ledger, lake, idmap, profiles
        )
        found.other_format = _other_formats(ledger, settings.output_format)
        found.refused = None if settings.replace else _guard_line(found, settings)
        if stats.exhausted or batch is not None:
            found.source_ids = stats.distinct if batch is None else len(batch)
        return found


async def _survey(
    found: Estimate,
    settings: Settings,
    entries: AsyncIterator[IdEntry],
    ledger: Ledger,
    lake: set[str],
    idmap: LakeIdMap,
    profiles: dict[str, Profile],
) -> None:
    """Sort every id of ``entries`` as the run's producer and client would, into ``found``."""
    profile = Profile.of(settings)
    shape = profile.shape
    differing: set[str] = set()
    async for entry in entries:
        found.unique_ids += 1
        home = ledger.home(entry.label)
        if keeps(home, shape, resume=settings.resume):
            found.kept += 1
            continue
        if settings.resume and _rewritable(home, profile, profiles):
            found.rewritten += 1
            continue
        if entry.problem is None and entry.imdb_id in lake:
            found.skipped += 1
            continue
        if home is not None:
            found.replaced += 1
        if entry.problem is not None:
            found.invalid += 1
            continue
        if home is not None and replaces_other(home, shape):
            found.replaced_other += 1
            differing.update(_differences(profiles.get(home.shape), profile))
        known = idmap.get(entry.imdb_id) if settings.detail == "full" else None
        if known is not None and not known.deleted and asks_by_map(known, settings.kind, "full"):
            found.by_map += 1
        else:
            found.unknown += 1
    found.unknown_high = 3 if settings.detail == "full" else 1
    found.differing = sorted(differing | set(found.differing))


async def _profiles(store: Store, folder: str) -> dict[str, Profile]:
    """shape -> :class:`Profile` of every run whose manifest the folder holds, in either
    format (what a rewrite made of its records): the ledger keeps a digest per id, the
    manifests say what it stands for."""
    found: dict[str, Profile] = {}
    for key in await store.list(f"{folder}/{MANIFEST_FOLDER}/"):
        raw = await store.get(key)
        try:
            body = json.loads(raw) if raw is not None else None
        except ValueError:
            continue
        given = body.get("settings") if isinstance(body, dict) else None
        profile = Profile.from_manifest(given) if isinstance(given, dict) else None
        if profile is None:
            continue
        for fmt in FORMATS:  # a rewrite's shape too
            other = dataclasses.replace(profile, output_format=fmt)
            found[other.shape] = other
    return found


_FLAGS = {"kind": "--kind", "detail": "--detail", "language": "--language"}


def _differences(old: Profile | None, new: Profile) -> list[str]:
    """The record settings of ``old`` that differ from ``new``, as flags and values."""
    if old is None:
        return ["settings no manifest of the folder records"]
    out = [
        f"{flag} {getattr(old, name)}, this run {getattr(new, name)}"
        for name, flag in _FLAGS.items()
        if getattr(old, name) != getattr(new, name)
    ]
    if old.append_to_response != new.append_to_response:
        shown = [",".join(p.append_to_response) or "(none)" for p in (old, new)]
        out.append(f"--append {shown[0]}, this run {shown[1]}")
    if old.output_format != new.output_format:
        out.append(f"--format {old.output_format}, this run {new.output_format}")
    return out


def _rewritable(home: Home | None, profile: Profile, profiles: dict[str, Profile]) -> bool:
    """An answer whose record settings differ from ``profile`` only in the format: with
    ``--replace`` it is rewritten into this format, not fetched again."""
    if home is None or home.outcome not in ANSWERS or home.shape == profile.shape:
        return False
    old = profiles.get(home.shape)
    return (
        old is not None and dataclasses.replace(old, output_format=profile.output_format) == profile
    )


def _format_of(name: str) -> str:
    return "jsonl" if name.endswith(".jsonl") else "json"


def _distinct_homes(ledger: Ledger) -> dict[Home, list[str]]:
    homes: dict[Home, list[str]] = {}
    for imdb_id, home in ledger.homes().items():
        homes.setdefault(home, []).append(imdb_id)
    return homes


def _other_formats(ledger: Ledger, fmt: str) -> dict[str, int]:
    """format -> how many of the folder's data files are in it, for formats other than ``fmt``."""
    files: dict[str, set[str]] = {}
    for home, _ in _distinct_homes(ledger).items():
        if home.outcome == "record" and _format_of(home.file) != fmt:
            files.setdefault(_format_of(home.file), set()).add(home.file)
    return {name: len(names) for name, names in sorted(files.items())}


def _guard_line(found: Estimate, settings: Settings) -> str | None:
    """The one line that stops a run replacing other settings' answers, or mixing formats
    in the folder, without ``--replace``; None when there is nothing to refuse."""
    parts: list[str] = []
    if found.other_format:
        held = ", ".join(
            f"{n} {fmt} file{'s' if n > 1 else ''}" for fmt, n in found.other_format.items()
        )
        parts.append(
            f"{found.date} holds {held} and this run writes {found.format}: one glob would "
            f"miss records; pass --replace to rewrite them as {found.format} (no request), "
            f"or --format {next(iter(found.other_format))}"
        )
    if found.replaced_other:
        low, high = found.requests
        slow, shigh = found.seconds
        parts.append(
            f"{found.date} holds {found.replaced_other} answers fetched with other record "
            f"settings ({'; '.join(found.differing)}); this run would fetch them again and "
            f"replace them: {_span(low, high)} requests in all, ~{_span(slow, shigh)} s at "
            f"{settings.rate:g}/s; pass --replace to go ahead, or run with those settings"
        )
    elif found.rewritten and not found.other_format:
        parts.append(
            f"{found.date} holds {found.rewritten} answers of --format "
            f"{'jsonl' if found.format == 'json' else 'json'}; pass --replace to take them "
            f"as {found.format} (no request)"
        )
    return "; and ".join(parts) or None


def _span(low: float, high: float) -> str:
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


async def _rewrite(ledger: Ledger, profile: Profile, profiles: dict[str, Profile]) -> int:
    """Move the folder's data files of another format into ``profile``'s, re-encoded through
    the ledger (each id's home moves, the old file disappears once emptied; no request), and
    take the answers whose settings differ only in the format as this format's, so that one
    glob sees every record. Returns the ids moved."""
    fmt = profile.output_format
    plans: dict[tuple[str, str], list[tuple[Home, list[str]]]] = {}
    for home, ids in _distinct_homes(ledger).items():
        data = home.outcome == "record" and _format_of(home.file) != fmt
        if not (data or _rewritable(home, profile, profiles)):
            continue
        old = profiles.get(home.shape)
        shape = home.shape if old is None else dataclasses.replace(old, output_format=fmt).shape
        name = home.file.rsplit("/", 1)[-1].split(".", 1)[0]  # <stem>-<commit>[-<chunk>]
        stem = name.rsplit("-", 1 if home.file.startswith(f"{SIDECAR_FOLDER}/") else 2)[0]
        plans.setdefault((shape, stem), []).append((home, ids))
    moved = 0
    for (shape, stem), homes in plans.items():
        for start in range(0, len(homes), _REWRITE_FILES):
            chunks: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
            read_from: dict[str, str] = {}
            for home, ids in homes[start : start + _REWRITE_FILES]:
                wanted = set(ids)
                items = [i for i in await ledger.items_of(home.file) if i.get("imdb_id") in wanted]
                read_from.update((i["imdb_id"], home.file) for i in items)
                chunks.append((items, []) if home.outcome == "record" else ([], items))
            # Read before the lock: an id another writer moved since stays where it is.
            done = await ledger.commit(chunks, shape=shape, fmt=fmt, stem=stem, only_from=read_from)
            moved += done.replaced
    if moved:
        log.info("rewrote %d ids of %s into %s files", moved, ledger.folder, fmt)
    return moved


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
    ) -> AsyncIterator[Engine]:
        """Open the run's clients; on the way out, save what the id map learned (within
        ``remaining``) and close them. ``compact``: fold the id map's segments (CLI runs
        and refreshes; never Distributed Map children)."""
        dest_url = parse_s3(settings.dest, "dest")
        run_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"
        async with AsyncExitStack() as stack:
            s3 = await stack.enter_async_context(
                open_s3(bool(dest_url or source_s3), settings.concurrency)
            )
            if store is None:
                store = S3Store(s3, dest_url) if dest_url else LocalStore(settings.dest)
            if settings.dry_run:  # a refresh's dry run: its steps write nothing out
                store = DryStore(store)
            idmap = await _id_map(store, run_id, settings, compact)
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
        ledger = await Ledger(self.store, folder).read()
        profiles = await _profiles(self.store, folder)
        await _survey(found, settings, entries, ledger, set(), self.idmap, profiles)

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
        ledger = await Ledger(store, folder, owner=self.run_id).load()
        lake = await lake_records(store, RAW_FOLDER) if settings.skip_existing else set()
        profiles: dict[str, Profile] = {}
        if again is not None and _foreign(ledger, shape):
            profiles = await _profiles(store, folder)
            found = Estimate(
                label, settings.dest, date.isoformat(), settings.output_format, settings.rate
            )
            await _survey(found, settings, again(), ledger, lake, self.idmap, profiles)
            found.other_format = _other_formats(ledger, settings.output_format)
            refused = _guard_line(found, settings)
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
            summary.rewritten = await _rewrite(ledger, Profile.of(settings), profiles)
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
            progress=progress,
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


async def _id_map(store: Store, owner: str, settings: Settings, compact: bool) -> LakeIdMap:
    """The lake's id map, read once (full detail only: ``/find`` items need no map). It is
    a cache: when it cannot be read, the run goes on without it."""
    idmap = LakeIdMap(store, owner)
    if settings.detail != "full":
        return idmap
    try:
        return await idmap.load(compact=compact)
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


def _foreign(ledger: Ledger, shape: str) -> bool:
    """Whether the folder holds answers a run of ``shape`` would not keep: another record
    setting's, or another format's (the format is part of the shape)."""
    return any(
        home.outcome in ANSWERS and home.shape != shape for _, home in ledger.homes().items()
    )


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
        await manifest.finish(summary.manifest_fields(client.stats.as_dict()))
        for pin in pinned:
            assert job is not None
            if summary.status in ("ok", "failed_ids"):
                await runstate.finished(store, job, pin, seen)
            else:
                await runstate.interrupted(store, job, pin, summary.next_offset)
    except IngestError as exc:
        if error is None:
            raise
        log.warning("could not record the failed run: %s", exc)
