"""Orchestrating one run: ids in, TMDB records out, every id accounted for exactly once.

A producer and ``concurrency`` workers joined by a bounded queue (back-pressure: the CSV is
read only as fast as TMDB answers)::

    source ─read ids─▶ producer ─Queue(2×concurrency)─▶ workers ─TmdbClient─▶ TMDB
                          │                               │
              kept / skipped / invalid        chunk resolved ─▶ Ledger.commit ─▶ date folder

The producer asks the date folder's :class:`~tmdb_async.ledger.Ledger` about each distinct
id: one already there from an equivalent run (same record settings; a failure is always
retried) is *kept*, not fetched. The others are grouped into chunks of ``chunk_size`` ids in
source order; a resolved chunk is committed through the ledger, which gives each id its one
home in the folder whatever earlier runs wrote. Exactly-once is the ledger's job; this module
only decides what to fetch and when to stop.

Deadline: no chunk starts once less than ``safety_margin`` seconds remain, in-flight work is
cancelled at a third of it, and ``next_offset`` (``remaining_items`` for a batch) names the
first id not accounted for. A continuation keeps what was committed, so nothing is fetched
twice and nothing is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import runstate
from .client import ClientOptions, Found, LookupFailed, NotFound, TmdbClient
from .config import Settings
from .errors import IngestError, describe_error
from .ids import IdEntry, ReadStats, read_csv_ids, read_item_ids
from .ledger import Home, Ledger, lake_records
from .storage import LocalStore, S3Store, Store, open_s3, parse_s3, read_source
from .summary import Manifest, Summary
from .writer import RAW_FOLDER, date_folder, digest, source_stem

__all__ = ["Summary", "record_shape", "run"]

log = logging.getLogger(__name__)

Remaining = Callable[[], float]
"""Seconds left before the caller's deadline (for Lambda: the context's remaining time)."""


def record_shape(settings: Settings) -> str:
    """The settings that make a record what it is. Two runs of one shape fetch the same
    thing, so the second keeps the first's ids; any other shape fetches them again."""
    return digest(
        [
            settings.kind,
            settings.detail,
            settings.language,
            list(settings.append_to_response),
            settings.output_format,
        ]
    )


@dataclass(slots=True)
class _Chunk:
    first: int  # position of its first id
    expected: int = 0
    resolved: int = 0
    closed: bool = False
    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    sidecar: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.closed and self.resolved == self.expected


@dataclass(slots=True)
class _Counts:
    records: int = 0
    not_found: int = 0
    invalid: int = 0
    failed: int = 0
    kept: int = 0
    skipped: int = 0
    replaced: int = 0


class _Run:
    """State of one run; the public entry point is :func:`run`."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        client: TmdbClient,
        *,
        shape: str,
        stem: str,
        lake: set[str],
        remaining: Remaining | None,
        margin: float,
        progress: Callable[[int], None] | None,
        track: bool,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.client = client
        self.shape = shape
        self.stem = stem
        self.lake = lake
        self.remaining = remaining
        self.margin = margin
        self.progress = progress
        self.queue: asyncio.Queue[tuple[_Chunk, IdEntry] | None] = asyncio.Queue(
            2 * settings.concurrency
        )
        # Resolved chunks wait here for the committer, which takes all that are ready as one
        # commit. At most ``room`` chunks are open at once, so when commits lag (a slow
        # store, or TMDB answering faster than files are written) the producer waits
        # instead of memory filling up with resolved records.
        self.ready: asyncio.Queue[_Chunk | None] = asyncio.Queue()
        self.room = asyncio.Semaphore(2 + -(-2 * settings.concurrency // settings.chunk_size))
        self.open: dict[int, _Chunk] = {}  # uncommitted chunks by first position
        self.done = 0  # ids accounted for
        self.accounted: set[int] | None = set() if track else None  # a batch's hand-back
        self.counts = _Counts()
        self.files: list[str] = []
        self.sidecars: list[str] = []
        self.stopped_at: int | None = None
        self.cursor = settings.offset  # position after the last id read
        self.finished = False

    def _out_of_time(self) -> bool:
        return self.remaining is not None and self.remaining() < self.margin

    def _keeps(self, home: Home | None) -> bool:
        if home is None or not self.settings.resume or home.outcome == "failed":
            return False
        return home.shape == self.shape or home.outcome == "invalid"

    def _done(self, position: int) -> None:
        self.done += 1
        if self.accounted is not None:
            self.accounted.add(position)
        if self.progress is not None:
            self.progress(1)

    async def produce(self, entries: AsyncIterator[IdEntry]) -> None:
        await self._feed(entries)
        # Not in a finally: on an error the TaskGroup cancels the workers, and a put into a
        # full queue nobody drains would hang the cancellation.
        for _ in range(self.settings.concurrency):
            await self.queue.put(None)

    async def _feed(self, entries: AsyncIterator[IdEntry]) -> None:
        chunk: _Chunk | None = None
        async for entry in entries:
            # The cursor moves past an id only once it is done or in a chunk: a cancellation
            # in between (the deadline) must leave it for the continuation.
            if self._keeps(self.ledger.home(entry.label)):
                self.counts.kept += 1
                self._done(entry.position)
                self.cursor = entry.position + 1
                continue
            if entry.problem is None and entry.imdb_id in self.lake:
                self.counts.skipped += 1
                self._done(entry.position)
                self.cursor = entry.position + 1
                continue
            if chunk is None or chunk.expected == self.settings.chunk_size:
                if chunk is not None:
                    await self._close(chunk)
                await self.room.acquire()
                if self._out_of_time():
                    self.room.release()
                    self.stopped_at = entry.position
                    log.info("deadline near: not starting ids from position %d", entry.position)
                    return
                chunk = self.open[entry.position] = _Chunk(entry.position)
            chunk.expected += 1
            self.cursor = entry.position + 1
            if entry.problem is not None:
                chunk.sidecar.append(
                    (
                        entry.position,
                        {
                            "imdb_id": entry.label,
                            "outcome": "invalid",
                            "reason": entry.problem,
                            "line": entry.line,
                        },
                    )
                )
                chunk.resolved += 1
            else:
                await self.queue.put((chunk, entry))
        if chunk is not None:
            await self._close(chunk)
        self.finished = True

    async def _close(self, chunk: _Chunk) -> None:
        chunk.closed = True
        if chunk.complete:
            self.ready.put_nowait(chunk)

    async def work(self) -> None:
        while (job := await self.queue.get()) is not None:
            chunk, entry = job
            try:
                result = await self.client.lookup(entry.imdb_id)
            except LookupFailed as exc:
                outcome = {"outcome": "failed", "reason": exc.reason, "attempts": exc.attempts}
                chunk.sidecar.append((entry.position, {"imdb_id": entry.imdb_id, **outcome}))
            else:
                if isinstance(result, Found):
                    # The ledger keys records by the id asked for; TMDB's own value (rarely
                    # another id, or null) is kept beside it.
                    if result.record.get("imdb_id") != entry.imdb_id:
                        result.record["tmdb_imdb_id"] = result.record.get("imdb_id")
                        result.record["imdb_id"] = entry.imdb_id
                    chunk.records.append((entry.position, result.record))
                elif isinstance(result, NotFound):
                    outcome = {"outcome": "not_found", "reason": result.reason}
                    chunk.sidecar.append((entry.position, {"imdb_id": entry.imdb_id, **outcome}))
            chunk.resolved += 1
            if chunk.complete:
                self.ready.put_nowait(chunk)

    async def commit_all(self) -> None:
        """Commit resolved chunks, all that are ready as one commit, until ``None`` comes.
        ``None`` is queued after the last chunk, so it always ends a batch."""
        while True:
            waiting = [await self.ready.get()]
            while not self.ready.empty():
                waiting.append(self.ready.get_nowait())
            batch = [chunk for chunk in waiting if chunk is not None]
            if batch:
                await self._commit(batch)
            if waiting[-1] is None:
                return

    async def _commit(self, batch: list[_Chunk]) -> None:
        for chunk in batch:
            chunk.records.sort(key=lambda pair: pair[0])
            chunk.sidecar.sort(key=lambda pair: pair[0])
        done = await self.ledger.commit(
            [
                ([record for _, record in c.records], [entry for _, entry in c.sidecar])
                for c in batch
            ],
            shape=self.shape,
            fmt=self.settings.output_format,
            stem=self.stem,
        )
        # Only now are the chunks done: a commit cut off by the deadline leaves them open,
        # and next_offset points at the first.
        folder = self.ledger.folder
        self.files += [self.ledger.store.url(f"{folder}/{name}") for name in done.data_files]
        if done.sidecar_file:
            self.sidecars.append(self.ledger.store.url(f"{folder}/{done.sidecar_file}"))
        self.counts.replaced += done.replaced
        for chunk in batch:
            del self.open[chunk.first]
            self.room.release()
            self.counts.records += len(chunk.records)
            for _, entry in chunk.sidecar:
                name = entry["outcome"]
                setattr(self.counts, name, getattr(self.counts, name) + 1)
            for position, _ in chunk.records:
                self._done(position)
            for position, _ in chunk.sidecar:
                self._done(position)

    def next_offset(self) -> int | None:
        """First position not accounted for; None when the whole slice is done."""
        pending = [start for start, chunk in self.open.items() if chunk.expected]
        if self.stopped_at is not None:
            pending.append(self.stopped_at)
        elif not self.finished:
            pending.append(self.cursor)  # cancelled while reading
        return min(pending) if pending else None


def _client_options(settings: Settings) -> ClientOptions:
    return ClientOptions(
        base_url=settings.tmdb_url,
        credentials=settings.credentials,
        kind=settings.kind,
        detail=settings.detail,
        language=settings.language,
        append_to_response=settings.append_to_response,
        concurrency=settings.concurrency,
        rate=settings.rate,
        max_attempts=settings.max_attempts,
        request_timeout=settings.request_timeout,
        max_backoff=settings.max_backoff,
    )


async def run(
    settings: Settings,
    *,
    items: Sequence[object] | None = None,
    remaining: Remaining | None = None,
    safety_margin: float = 0.0,
    progress: Callable[[int], None] | None = None,
    store: Store | None = None,
) -> Summary:
    """Run one ingestion job and return its :class:`Summary`.

    ``items`` replaces the CSV source with rows of a Step Functions Distributed Map batch.
    ``store`` replaces the destination ``settings.dest`` names (to embed the engine over
    another storage, or to observe and interrupt its writes in tests).
    ``remaining``/``safety_margin``: stop starting new chunks once fewer than
    ``safety_margin`` seconds remain; the summary then has ``status="incomplete"`` and
    ``next_offset`` (or ``remaining_items`` for a batch) to continue from.

    Raises :class:`~tmdb_async.errors.IngestError` for bad input, rejected credentials or
    unusable storage, after recording what was written in the manifest when it can.
    """
    settings.validate()
    settings.credentials.require()
    started = time.monotonic()
    shape = record_shape(settings)
    label = settings.source if items is None else f"items[{len(items)}]"
    dest_url = parse_s3(settings.dest, "dest")
    source_url = None if items is not None else parse_s3(settings.source, "source")
    stats = ReadStats()
    batch = None if items is None else read_item_ids(items, stats=stats)

    async with (
        open_s3(bool(dest_url or source_url), settings.concurrency) as s3,
        TmdbClient.open(_client_options(settings)) as client,
    ):
        if store is None:
            store = S3Store(s3, dest_url) if dest_url else LocalStore(settings.dest)
        if batch is None:
            job = runstate.job_key(settings.source, settings.offset, settings.limit, shape)
        else:
            job = runstate.items_key([e.imdb_id for e in batch], shape)
        date, continued = await runstate.resolve_date(store, job, settings.date)
        if continued:
            log.warning("continuing the interrupted run of %s in its folder", date.isoformat())
        folder = date_folder(date)
        run_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"
        stem = "batch" if batch is not None else source_stem(settings.source)
        summary = Summary(source=label, dest=settings.dest, date=date.isoformat())
        manifest = Manifest(
            store,
            folder,
            f"{stem}-{run_id}",
            {
                "run": run_id,
                "source": label,
                "settings": {**settings.public(), "date": date.isoformat()},
                "continued": continued,
            },
        )
        # Written first: proves the destination is writable before TMDB quota is spent.
        summary.manifest = await manifest.write()
        await runstate.started(store, job, date, label)
        ledger = await Ledger(store, folder, owner=run_id).load()
        lake = await lake_records(store, RAW_FOLDER) if settings.skip_existing else set()
        job_run = _Run(
            settings,
            ledger,
            client,
            shape=shape,
            stem=stem,
            lake=lake,
            remaining=remaining,
            margin=safety_margin,
            progress=progress,
            track=batch is not None,
        )
        if batch is not None:
            entries: AsyncIterator[IdEntry] = _aiter(batch, settings.offset, settings.limit)
        else:
            entries = read_csv_ids(
                read_source(settings.source, s3),
                where=settings.source,
                offset=settings.offset,
                limit=settings.limit,
                stats=stats,
            )
        error: BaseException | None = None
        hard_stop = None if remaining is None else max(0.0, remaining() - safety_margin / 3)
        try:
            async with asyncio.timeout(hard_stop) as budget, asyncio.TaskGroup() as outer:
                outer.create_task(job_run.commit_all())
                async with asyncio.TaskGroup() as group:
                    group.create_task(job_run.produce(entries))
                    for _ in range(settings.concurrency):
                        group.create_task(job_run.work())
                job_run.ready.put_nowait(None)
        except TimeoutError:
            if not budget.expired():
                error = TimeoutError("unexpected timeout")
            log.warning("deadline reached: in-flight ids cancelled, their chunks stay open")
        except BaseException as exc:  # recorded in the manifest, then re-raised
            error = _unwrap(exc)
        finally:
            summary.seconds = round(time.monotonic() - started, 3)
            _fill(summary, job_run, client, stats, batch)
            if error is not None:
                summary.status = "error"
                summary.error = describe_error(error)
            await _finish(summary, manifest, client, store, job, error)
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


async def _aiter(
    entries: Sequence[IdEntry], offset: int, limit: int | None
) -> AsyncIterator[IdEntry]:
    stop = None if limit is None else offset + limit
    for entry in entries:
        if entry.position >= offset and (stop is None or entry.position < stop):
            yield entry


def _unwrap(exc: BaseException) -> BaseException:
    """The first meaningful error out of a TaskGroup's ExceptionGroup."""
    while isinstance(exc, BaseExceptionGroup):
        preferred = [e for e in exc.exceptions if isinstance(e, IngestError)]
        exc = (preferred or list(exc.exceptions))[0]
    return exc


def _fill(
    summary: Summary,
    job: _Run,
    client: TmdbClient,
    stats: ReadStats,
    batch: Sequence[IdEntry] | None,
) -> None:
    counts = job.counts
    summary.records = counts.records
    summary.not_found = counts.not_found
    summary.invalid = counts.invalid
    summary.failed = counts.failed
    summary.kept = counts.kept
    summary.skipped = counts.skipped
    summary.replaced = counts.replaced
    summary.unique_ids = job.done
    summary.files = sorted(job.files)
    summary.sidecars = sorted(job.sidecars)
    summary.requests = client.stats.requests
    summary.retries = client.stats.retries
    summary.throttled_429 = client.stats.throttled
    summary.rows_read = stats.rows
    summary.next_offset = job.next_offset()
    if summary.next_offset is not None:
        summary.status = "incomplete"
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
    job: str,
    error: BaseException | None,
) -> None:
    """Write the final manifest and close the run record; never mask the run's own error."""
    try:
        await manifest.finish(summary, client.stats.as_dict())
        if summary.status in ("ok", "failed_ids"):
            await runstate.finished(store, job)
    except IngestError as exc:
        if error is None:
            raise
        log.warning("could not record the failed run: %s", exc)
