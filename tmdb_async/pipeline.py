"""Orchestrating one run: ids in, TMDB records out, every id accounted for exactly once.

The flow is a producer and ``concurrency`` workers joined by a bounded queue (back-pressure:
the CSV is read only as fast as TMDB answers)::

    source ──read ids──▶ producer ──Queue(2×concurrency)──▶ workers ──TmdbClient──▶ TMDB
                                                              │
                                          chunk complete ◀────┘──▶ ChunkWriter ──▶ dest

Ids are grouped into *chunks* of ``chunk_size`` consecutive positions. A chunk is written
(one data file, at most ``chunk_size`` records, in source order) as soon as all its ids are
resolved, so memory holds only the chunks that still have an id in flight. Not-found,
invalid and failed ids are kept per chunk and reach the sidecars only with their chunk, so a
run cut short by its deadline reports exactly the ids of the chunks it wrote, and
``next_offset`` (a chunk boundary) says where the next run starts: no gap, no overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .client import ClientOptions, Found, LookupFailed, NotFound, TmdbClient
from .config import Settings
from .errors import ExitCode, IngestError
from .ids import IdEntry, ReadStats, read_csv_ids, read_item_ids
from .storage import LocalStore, S3Store, Store, parse_s3, read_source
from .writer import ChunkWriter, ingested_ids, run_tag, source_stem

log = logging.getLogger(__name__)

Remaining = Callable[[], float]
"""Seconds left before the caller's deadline (for Lambda: the context's remaining time)."""


@dataclass(slots=True)
class Summary:
    """What a run did. ``as_dict()`` is the CLI's ``--json`` line and the Lambda result."""

    source: str
    dest: str
    date: str
    status: str = "ok"  # ok | failed_ids | incomplete | error
    unique_ids: int = 0
    records: int = 0
    not_found: int = 0
    invalid: int = 0
    failed: int = 0
    skipped: int = 0  # incremental mode: already ingested by an earlier run
    resumed_chunks: int = 0  # finished by an interrupted earlier run of the same job
    files: list[str] = field(default_factory=list)
    sidecars: list[str] = field(default_factory=list)
    manifest: str | None = None
    seconds: float = 0.0
    requests: int = 0
    retries: int = 0
    throttled_429: int = 0
    rows_read: int = 0
    next_offset: int | None = None
    remaining_items: list[dict[str, str]] | None = None
    error: str | None = None

    @property
    def exit_code(self) -> ExitCode:
        return {
            "ok": ExitCode.OK,
            "failed_ids": ExitCode.FAILED_IDS,
            "incomplete": ExitCode.INCOMPLETE,
        }.get(self.status, ExitCode.BAD_INPUT)

    def as_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]
        data["files_written"] = len(self.files)
        data["exit_code"] = int(self.exit_code)
        if self.remaining_items is None:
            del data["remaining_items"]
        return data


@dataclass(slots=True)
class _Chunk:
    start: int
    marker: dict[str, Any] | None = None  # an earlier run's part marker, while it still fits
    expected: int = 0
    resolved: int = 0
    closed: bool = False
    ids: list[str] = field(default_factory=list)
    held: list[IdEntry] = field(default_factory=list)  # entries skipped on the marker's word
    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    not_found: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.closed and self.resolved == self.expected


class _Run:
    """State of one run; the public entry point is :func:`run`."""

    def __init__(
        self,
        settings: Settings,
        writer: ChunkWriter,
        client: TmdbClient,
        remaining: Remaining | None,
        margin: float,
        progress: Callable[[int], None] | None,
        done: dict[int, dict[str, Any]] | None = None,
        skip: set[str] | None = None,
        content_names: bool = False,
    ) -> None:
        self.settings = settings
        self.content_names = content_names
        self.flushed: set[int] = set()  # starts of the chunks written (or resumed) in this run
        self.done = done or {}
        self.skip = skip or set()
        self.resumed = 0
        self.written_ids = 0
        self.writer = writer
        self.client = client
        self.remaining = remaining
        self.margin = margin
        self.progress = progress
        self.chunks: dict[int, _Chunk] = {}
        self.queue: asyncio.Queue[IdEntry | None] = asyncio.Queue(2 * settings.concurrency)
        self.stopped_at: int | None = None
        self.cursor = settings.offset  # first position of the chunk after the newest one
        self.finished = False  # the producer read the whole slice
        self.counts = {"records": 0, "not_found": 0, "invalid": 0, "failed": 0, "skipped": 0}
        self.files: list[str] = []
        self.sidecars: dict[str, list[dict[str, Any]]] = {
            "not_found": [],
            "invalid": [],
            "failed": [],
        }

    def _out_of_time(self) -> bool:
        return self.remaining is not None and self.remaining() < self.margin

    def chunk_start(self, position: int) -> int:
        """Chunks sit on fixed chunk_size boundaries, clipped to the slice's offset so two
        batches splitting one boundary window name their files differently."""
        return max(self.settings.offset, position - position % self.settings.chunk_size)

    async def produce(self, entries: AsyncIterator[IdEntry]) -> None:
        await self._feed(entries)
        # Not in a finally: on an error the TaskGroup cancels the workers, and a put into a
        # full queue nobody drains would hang the cancellation.
        for _ in range(self.settings.concurrency):
            await self.queue.put(None)

    async def _feed(self, entries: AsyncIterator[IdEntry]) -> None:
        current: _Chunk | None = None
        async for entry in entries:
            start = self.chunk_start(entry.position)
            if current is None or current.start != start:
                if current is not None:
                    await self._close(current)
                if self._out_of_time():
                    self.stopped_at = start
                    log.info("deadline near: not starting ids from position %d", start)
                    return
                current = self.chunks[start] = _Chunk(start, marker=self.done.get(start))
                self.cursor = start + self.settings.chunk_size - start % self.settings.chunk_size
            current.expected += 1
            current.ids.append(entry.imdb_id)
            if current.marker is not None:
                marked: list[str] = current.marker.get("ids", [])
                index = len(current.ids) - 1
                if index < len(marked) and marked[index] == entry.imdb_id:
                    current.held.append(entry)
                    current.resolved += 1
                    continue
                await self._unresume(current)
            await self._dispatch(current, entry)
        if current is not None:
            await self._close(current)
        self.finished = True

    async def _dispatch(self, chunk: _Chunk, entry: IdEntry) -> None:
        if entry.problem is not None:
            chunk.invalid.append(
                {"imdb_id": entry.imdb_id, "reason": entry.problem, "line": entry.line}
            )
            chunk.resolved += 1
        elif entry.imdb_id in self.skip:
            chunk.skipped.append(entry.imdb_id)
            chunk.resolved += 1
        else:
            await self.queue.put(entry)

    async def _unresume(self, chunk: _Chunk) -> None:
        """The source no longer matches the marker (it changed): do the chunk after all."""
        log.info("chunk %d: source differs from its part marker, fetching it again", chunk.start)
        held, chunk.held, chunk.marker = chunk.held, [], None
        chunk.resolved -= len(held)
        for entry in held:
            await self._dispatch(chunk, entry)

    async def work(self) -> None:
        while (entry := await self.queue.get()) is not None:
            chunk = self.chunks[self.chunk_start(entry.position)]
            try:
                result = await self.client.lookup(entry.imdb_id)
            except LookupFailed as exc:
                chunk.failed.append(
                    {"imdb_id": entry.imdb_id, "reason": exc.reason, "attempts": exc.attempts}
                )
            else:
                if isinstance(result, Found):
                    chunk.records.append((entry.position, result.record))
                elif isinstance(result, NotFound):
                    chunk.not_found.append({"imdb_id": entry.imdb_id, "reason": result.reason})
            chunk.resolved += 1
            if self.progress is not None:
                self.progress(1)
            if chunk.complete:
                await self._flush(chunk)

    async def _close(self, chunk: _Chunk) -> None:
        if chunk.marker is not None and len(chunk.marker.get("ids", [])) != chunk.expected:
            await self._unresume(chunk)
        chunk.closed = True
        if chunk.complete:
            await self._flush(chunk)

    def _name(self, chunk: _Chunk) -> str:
        """A batch's chunks are named by their ids: a continuation or a retried invocation
        that redoes a chunk (say, cut off between its data file and its marker) then
        overwrites the same file instead of adding a second copy of its records."""
        return run_tag(chunk.ids) if self.content_names else f"{chunk.start:08d}"

    async def _flush(self, chunk: _Chunk) -> None:
        if chunk.marker is not None:
            marker = chunk.marker
            self.resumed += 1
        else:
            chunk.records.sort(key=lambda pair: pair[0])
            file = None
            if chunk.records:
                records = [record for _, record in chunk.records]
                file = await self.writer.write_chunk(self._name(chunk), records)
            marker = {
                "start": chunk.start,
                "ids": chunk.ids,
                "records": [record["imdb_id"] for _, record in chunk.records],
                "not_found": chunk.not_found,
                "invalid": chunk.invalid,
                "failed": chunk.failed,
                "skipped": chunk.skipped,
                "file": file,
            }
            # The marker comes after the data file: a kill between the two leaves a chunk
            # that the next run redoes (same file name), never one it trusts half-written.
            await self.writer.write_part(self._name(chunk), marker)
        # Only now is the chunk done: if a write is cancelled (deadline), it stays pending
        # and next_offset points at it, so the next run writes it (same name) again.
        del self.chunks[chunk.start]
        self.flushed.add(chunk.start)
        if marker.get("file"):
            self.files.append(marker["file"])
        self.counts["records"] += len(marker.get("records", []))
        self.counts["skipped"] += len(marker.get("skipped", []))
        for name in ("not_found", "invalid", "failed"):
            entries: list[dict[str, Any]] = marker.get(name, [])
            self.counts[name] += len(entries)
            self.sidecars[name].extend(entries)
        if self.progress is not None:
            self.progress(len(chunk.invalid) + len(chunk.skipped) + len(chunk.held))

    def next_offset(self) -> int | None:
        """First position not accounted for, on a chunk boundary; None when all is done."""
        pending = [start for start, chunk in self.chunks.items() if chunk.expected]
        if self.stopped_at is not None:
            pending.append(self.stopped_at)
        elif not self.finished:
            pending.append(self.cursor)  # cancelled while reading: resume after the last chunk
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


@contextlib.asynccontextmanager
async def _s3_client(needed: bool, pool: int) -> AsyncIterator[Any]:
    """One aioboto3 S3 client per run, inside the running loop; ``None`` if not needed."""
    if not needed:
        yield None
        return
    import aioboto3  # imported lazily: local runs do not pay for boto's import time
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": 8, "mode": "standard"},  # 500/503 SlowDown/resets retried
        max_pool_connections=max(10, pool),
        connect_timeout=10,
        read_timeout=60,
    )
    async with aioboto3.Session().client("s3", config=config) as s3:
        yield s3


def _job_identity(
    settings: Settings, items: Sequence[object] | None, skip: set[str]
) -> list[object]:
    """What names the output files: the source and every setting that shapes a record.

    In incremental mode the set of ids skipped is part of it: a later incremental run of a
    grown CSV must not overwrite the files that hold the ids it skips.
    """
    # A batch's identity is its settings alone: its chunks are named by their own ids.
    source = "items" if items is not None else settings.source
    skipped = run_tag(sorted(skip)) if settings.skip_existing else None
    return [
        skipped,
        source,
        settings.kind,
        settings.detail,
        settings.language,
        list(settings.append_to_response),
        settings.output_format,
        settings.chunk_size,
    ]


async def run(
    settings: Settings,
    *,
    items: Sequence[object] | None = None,
    remaining: Remaining | None = None,
    safety_margin: float = 0.0,
    progress: Callable[[int], None] | None = None,
) -> Summary:
    """Run one ingestion job and return its :class:`Summary`.

    ``items`` replaces the CSV source with rows of a Step Functions Distributed Map batch.
    ``remaining``/``safety_margin``: stop starting new chunks once fewer than
    ``safety_margin`` seconds remain; the summary then has ``status="incomplete"`` and
    ``next_offset`` (or ``remaining_items`` for a batch) to continue from.

    Raises :class:`~tmdb_async.errors.IngestError` for bad input, rejected credentials or
    unusable storage, after recording what was written in the manifest when it can.
    """
    settings.validate()
    settings.credentials.require()
    started = time.monotonic()
    source_label = settings.source if items is None else f"items[{len(items)}]"
    summary = Summary(source=source_label, dest=settings.dest, date=settings.date.isoformat())
    dest_url = parse_s3(settings.dest, "dest")
    source_url = None if items is not None else parse_s3(settings.source, "source")
    stats = ReadStats()

    async with (
        _s3_client(bool(dest_url or source_url), settings.concurrency) as s3,
        TmdbClient.open(_client_options(settings)) as client,
    ):
        store: Store = S3Store(s3, dest_url) if dest_url else LocalStore(settings.dest)
        skip = await ingested_ids(store) if settings.skip_existing else set()
        slice_end = "end" if settings.limit is None else str(settings.offset + settings.limit)
        writer = ChunkWriter(
            store,
            date=settings.date,
            stem="batch" if items is not None else source_stem(settings.source),
            tag=run_tag(_job_identity(settings, items, skip)),
            slice_label=(
                run_tag([e.imdb_id for e in read_item_ids(items)])
                if items is not None
                else f"{settings.offset}-{slice_end}"
            ),
            fmt=settings.output_format,
        )
        manifest: dict[str, Any] = {
            "settings": settings.public(),
            "source": source_label,
            "outcome": "running",
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        # Written first: proves the destination is writable before TMDB quota is spent.
        summary.manifest = await writer.write_manifest(manifest)

        done: dict[int, dict[str, Any]] = {}
        if settings.resume and items is None:
            # Chunks an earlier, interrupted run of this same job finished (and that had no
            # failures: those are worth another try).
            parts = await writer.load_parts()
            done = {start: m for start, m in parts.items() if not m.get("failed")}
        job = _Run(
            settings,
            writer,
            client,
            remaining,
            safety_margin,
            progress,
            done,
            skip,
            content_names=items is not None,
        )
        if items is not None:
            entries: AsyncIterator[IdEntry] = _aiter(
                read_item_ids(items, offset=settings.offset, limit=settings.limit, stats=stats)
            )
        else:
            entries = read_csv_ids(
                read_source(settings.source, s3),
                where=settings.source,
                offset=settings.offset,
                limit=settings.limit,
                stats=stats,
            )
        error: BaseException | None = None
        # Past the soft margin no new chunk starts; past a third of it, whatever is still in
        # flight is cancelled, leaving time to write the sidecars and the manifest.
        hard_stop = None if remaining is None else max(0.0, remaining() - safety_margin / 3)
        try:
            async with asyncio.timeout(hard_stop) as budget, asyncio.TaskGroup() as group:
                group.create_task(job.produce(entries))
                for _ in range(settings.concurrency):
                    group.create_task(job.work())
        except TimeoutError:
            if not budget.expired():
                error = TimeoutError("unexpected timeout")
            log.warning("deadline reached: in-flight ids cancelled, their chunks stay pending")
        except BaseException as exc:  # recorded in the manifest, then re-raised
            error = _unwrap(exc)
        finally:
            summary.seconds = round(time.monotonic() - started, 3)
            _fill(summary, job, client, stats, items)
            if error is not None:
                summary.status = "error"
                summary.error = str(error) if isinstance(error, IngestError) else repr(error)
            await _finish(summary, job, writer, manifest, error)
        if error is not None:
            raise error
    log.info(
        "run %s: %d ids, %d records, %d not found, %d invalid, %d failed, %d files in %.1fs",
        summary.status,
        summary.unique_ids,
        summary.records,
        summary.not_found,
        summary.invalid,
        summary.failed,
        len(summary.files),
        summary.seconds,
    )
    return summary


async def _aiter(entries: Sequence[IdEntry]) -> AsyncIterator[IdEntry]:
    for entry in entries:
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
    items: Sequence[object] | None,
) -> None:
    summary.records = job.counts["records"]
    summary.not_found = job.counts["not_found"]
    summary.invalid = job.counts["invalid"]
    summary.failed = job.counts["failed"]
    summary.unique_ids = sum(job.counts.values())
    summary.skipped = job.counts["skipped"]
    summary.resumed_chunks = job.resumed
    summary.files = sorted(job.files)
    summary.requests = client.stats.requests
    summary.retries = client.stats.retries
    summary.throttled_429 = client.stats.throttled
    summary.rows_read = stats.rows
    summary.next_offset = job.next_offset()
    if summary.next_offset is not None:
        summary.status = "incomplete"
        if items is not None:
            # Chunks after a pending one may have finished: hand back only what is not done.
            left = read_item_ids(items, offset=summary.next_offset)
            summary.remaining_items = [
                {"id": entry.imdb_id}
                for entry in left
                if job.chunk_start(entry.position) not in job.flushed
            ]
    elif summary.failed:
        summary.status = "failed_ids"


async def _finish(
    summary: Summary,
    job: _Run,
    writer: ChunkWriter,
    manifest: dict[str, Any],
    error: BaseException | None,
) -> None:
    """Write sidecars and the final manifest; never mask the run's own error."""
    try:
        sidecars = []
        for name, entries in job.sidecars.items():
            if entries:
                sidecars.append(await writer.write_sidecar(name, entries))
        summary.sidecars = sidecars
        manifest.update(
            outcome=summary.status,
            finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            counts={
                "unique_ids": summary.unique_ids,
                "records": summary.records,
                "not_found": summary.not_found,
                "invalid": summary.invalid,
                "failed": summary.failed,
                "skipped": summary.skipped,
                "resumed_chunks": summary.resumed_chunks,
                "rows_read": summary.rows_read,
            },
            files=summary.files,
            sidecars=summary.sidecars,
            next_offset=summary.next_offset,
            seconds=summary.seconds,
            tmdb=job.client.stats.as_dict(),
            error=summary.error,
        )
        await writer.write_manifest(manifest)
    except IngestError as exc:
        if error is None:
            raise
        log.warning("could not record the failed run: %s", exc)


async def prepare_ids(settings: Settings) -> dict[str, Any]:
    """Write the distinct id values of ``settings.source`` as a one-column CSV.

    For Step Functions: its Distributed Map reads this small file instead of the raw CSV,
    where one title's rows (one per artist) could straddle two batches and be fetched twice.
    Invalid values are kept, so the batch that gets them reports them in its sidecar.
    """
    settings.validate()
    dest_url = parse_s3(settings.dest, "dest")
    source_url = parse_s3(settings.source, "source")
    stats = ReadStats()
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="|", lineterminator="\n")
    writer.writerow(["id"])
    async with _s3_client(bool(dest_url or source_url), 4) as s3:
        async for entry in read_csv_ids(
            read_source(settings.source, s3), where=settings.source, stats=stats
        ):
            writer.writerow([entry.imdb_id])
        store: Store = S3Store(s3, dest_url) if dest_url else LocalStore(settings.dest)
        key = f"Raw/TMDB/_work/{source_stem(settings.source)}-{run_tag([settings.source])}/ids.csv"
        url = await store.put(key, buffer.getvalue().encode(), "text/csv")
    bucket, _, ids_key = url.removeprefix("s3://").partition("/")
    return {
        "ids_url": url,
        "ids_bucket": bucket if dest_url else None,
        "ids_key": ids_key if dest_url else url,
        "unique_ids": stats.distinct,
        "rows_read": stats.rows,
    }
