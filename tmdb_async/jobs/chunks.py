"""Chunk bookkeeping: what to fetch, in which chunk, and committing resolved chunks.

The producer asks the date folder's :class:`~tmdb_async.lake.ledger.Ledger` about each distinct
id: one already there from an equivalent run (same record settings; a failure is always
retried) is *kept*, not fetched; with ``skip_existing``, one with a record in another date
folder is *skipped*. The others are grouped into chunks of ``chunk_size`` ids in source
order. Workers resolve ids through the TMDB client; a resolved chunk waits for the
committer, which commits every chunk waiting as one ledger commit. At most a few chunks are
open at once (back-pressure), and the cursor passes an id only once it is placed, so a run
cut off at any point reports exactly where to continue.

When the client finds TMDB unreachable (:class:`~tmdb_async.errors.TmdbUnreachable`, its
breaker), the run halts: the producer starts no more ids, the workers leave the ids they
hold without a home (never ``failed``: nothing was learned about them), the chunks already
resolved are committed, and the chunks holding those ids stay open for the next run.

At the deadline (less than ``margin`` seconds left) nothing new is asked: the producer stops
reading, workers hand back the ids they have not started, and those whose first request
still waits for its turn (the rate, a connection) are handed back at once too, not waited
for (the continuation asks them all). Only the requests in flight finish, and are committed
with their chunks, cut short. So a stop and its continuation ask TMDB what one run would,
and what the run learned is saved.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from tmdb_async.errors import LookupFailed, TmdbUnreachable
from tmdb_async.jobs.deadlines import Remaining
from tmdb_async.jobs.source import IdEntry
from tmdb_async.lake.homes import Home
from tmdb_async.lake.idmap import FLUSH_AT, LakeIdMap
from tmdb_async.lake.ledger import ANSWERS, Ledger
from tmdb_async.lake.profile import Profile
from tmdb_async.settings import Settings
from tmdb_async.tmdb.answers import Deleted, Found, NotFound
from tmdb_async.tmdb.client import Sends, TmdbClient

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Chunk:
    first: int  # position of its first id
    expected: int = 0
    resolved: int = 0
    closed: bool = False
    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    sidecar: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)  # resolved, nothing to write

    @property
    def complete(self) -> bool:
        return self.closed and self.resolved == self.expected


@dataclass(slots=True)
class Counts:
    records: int = 0
    not_found: int = 0
    invalid: int = 0
    failed: int = 0
    deleted: int = 0
    still_deleted: int = 0
    kept: int = 0
    skipped: int = 0
    replaced: int = 0
    held: int = 0  # failed, but kept the answer they had (see Ledger.commit)
    blocked: int = 0  # their home is a damaged file: new results not written


def keeps(home: Home | None, shape: str, *, resume: bool) -> bool:
    """Whether a run of record ``shape`` keeps an id whose home in the date folder is
    ``home`` (not fetched): one from an equivalent run, or an invalid value (whatever the
    settings); never a failure, nothing without ``resume``. The run and its dry run
    (:func:`tmdb_async.jobs.ingest.estimate`) both ask this."""
    if home is None or not resume or home.outcome == "failed":
        return False
    return home.shape == shape or home.outcome == "invalid"


def replaces_other(home: Home | None, shape: str) -> bool:
    """Whether fetching an id replaces an answer (a record, not found, deleted) that a run
    with other record settings wrote: what the replacement guard counts."""
    return home is not None and home.outcome in ANSWERS and home.shape != shape


class ChunkedRun:
    """One run's producer, workers and committer; :func:`tmdb_async.jobs.ingest.run` drives it."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        client: TmdbClient,
        *,
        shape: str,
        stem: str,
        lake: set[str],
        idmap: LakeIdMap,
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
        self.idmap = idmap
        self.profile = Profile.of(settings)
        self.remaining = remaining
        self.margin = margin
        self.progress = progress
        self.queue: asyncio.Queue[tuple[Chunk, IdEntry] | None] = asyncio.Queue(
            2 * settings.concurrency
        )
        # Resolved chunks wait here for the committer, which takes all that are ready as one
        # commit. At most ``room`` chunks are open at once, so when commits lag (a slow
        # store, or TMDB answering faster than files are written) the producer waits
        # instead of memory filling up with resolved records.
        self.ready: asyncio.Queue[Chunk | None] = asyncio.Queue()
        self.room = asyncio.Semaphore(2 + -(-2 * settings.concurrency // settings.chunk_size))
        self.open: dict[int, Chunk] = {}  # uncommitted chunks by first position
        self.done = 0  # ids accounted for
        self.accounted: set[int] | None = set() if track else None  # a batch's hand-back
        self.counts = Counts()
        self.files: list[str] = []
        self.sidecars: list[str] = []
        self.held_failures: list[dict[str, Any]] = []
        self.damaged: list[str] = []  # one line per damaged file that blocked ids
        self.stopped_at: int | None = None
        self.handed_back: list[int] = []  # positions not started at the deadline
        self.cursor = settings.offset  # position after the last id read
        self.finished = False
        self.unreachable: TmdbUnreachable | None = None  # why the run halted, if it did

    def _out_of_time(self) -> bool:
        return self.remaining is not None and self.remaining() < self.margin

    def _halted(self) -> bool:
        return self.unreachable is not None

    def _keeps(self, home: Home | None) -> bool:
        return keeps(home, self.shape, resume=self.settings.resume)

    def _done(self, position: int) -> None:
        self.done += 1
        if self.accounted is not None:
            self.accounted.add(position)

    def _resolved(self) -> None:
        """One more id resolved: progress moves now, not when its chunk is committed (a bar
        would stand still for a chunk's worth of answers, or a whole run's with a chunk
        larger than the ids)."""
        if self.progress is not None:
            self.progress(1)

    async def produce(self, entries: AsyncIterator[IdEntry]) -> None:
        await self._feed(entries)
        # Not in a finally: on an error the TaskGroup cancels the workers, and a put into a
        # full queue nobody drains would hang the cancellation.
        for _ in range(self.settings.concurrency):
            await self.queue.put(None)

    async def _feed(self, entries: AsyncIterator[IdEntry]) -> None:
        chunk: Chunk | None = None
        async for entry in entries:
            if self._halted():
                self.stopped_at = entry.position
                if chunk is not None:
                    await self._close(chunk)  # its ids are all queued: commit it if done
                log.info("TMDB unreachable: not starting ids from position %d", entry.position)
                return
            # The cursor moves past an id only once it is done or in a chunk: a cancellation
            # in between (the deadline) must leave it for the continuation.
            if self._keeps(self.ledger.home(entry.label)):
                self.counts.kept += 1
                self._done(entry.position)
                self._resolved()
                self.cursor = entry.position + 1
                continue
            if entry.problem is None and entry.imdb_id in self.lake:
                self.counts.skipped += 1
                self._done(entry.position)
                self._resolved()
                self.cursor = entry.position + 1
                continue
            if chunk is None or chunk.expected == self.settings.chunk_size:
                if chunk is not None:
                    await self._close(chunk)
                await self.room.acquire()
                if self._out_of_time() or self._halted():
                    self.room.release()
                    self.stopped_at = entry.position
                    why = "TMDB unreachable" if self._halted() else "deadline near"
                    log.info("%s: not starting ids from position %d", why, entry.position)
                    return
                chunk = self.open[entry.position] = Chunk(entry.position)
            elif self._out_of_time():  # the chunk so far is committed as it is
                self.stopped_at = entry.position
                log.info("deadline near: not starting ids from position %d", entry.position)
                break
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
                self._resolved()
            else:
                await self.queue.put((chunk, entry))
        else:
            self.finished = True
        if chunk is not None:
            await self._close(chunk)

    async def _close(self, chunk: Chunk) -> None:
        chunk.closed = True
        if chunk.complete:
            self.ready.put_nowait(chunk)

    async def work(self) -> None:
        while (job := await self.queue.get()) is not None:
            chunk, entry = job
            if self._halted():
                continue  # left without a home: its chunk stays open for the next run
            if self._out_of_time():  # not started: the continuation asks it
                self._hand_back(chunk, entry)
                continue
            try:
                result = await self._lookup(entry.imdb_id)
            except TmdbUnreachable as exc:
                if self.unreachable is None:
                    self.unreachable = exc
                    # A producer waiting for room (open chunks that will now never
                    # complete) wakes up, sees the halt and stops.
                    self.room.release()
                continue
            except LookupFailed as exc:
                outcome = {"outcome": "failed", "reason": exc.reason, "attempts": exc.attempts}
                chunk.sidecar.append((entry.position, {"imdb_id": entry.imdb_id, **outcome}))
            else:
                if result is None:  # the deadline came before its first request went out
                    self._hand_back(chunk, entry)
                    continue
                if isinstance(result, Found):
                    chunk.records.append((entry.position, result.record))
                elif isinstance(result, NotFound):
                    outcome = {"outcome": "not_found", "reason": result.reason}
                    chunk.sidecar.append((entry.position, {"imdb_id": entry.imdb_id, **outcome}))
                elif isinstance(result, Deleted) and result.again:
                    chunk.unchanged.append(entry.position)  # its deleted entry stands
                elif isinstance(result, Deleted):
                    path = f"/3/{result.media_type}/{result.tmdb_id}"
                    outcome = {
                        "outcome": "deleted",
                        "reason": f"TMDB {path} answered 404",
                        "media_type": result.media_type,
                        "tmdb_id": result.tmdb_id,
                    }
                    chunk.sidecar.append((entry.position, {"imdb_id": entry.imdb_id, **outcome}))
            chunk.resolved += 1
            self._resolved()
            if chunk.complete:
                self.ready.put_nowait(chunk)

    def _hand_back(self, chunk: Chunk, entry: IdEntry) -> None:
        """``entry`` was not asked: out of its chunk, left for the continuation."""
        chunk.expected -= 1
        self.handed_back.append(entry.position)
        if chunk.complete:
            self.ready.put_nowait(chunk)

    async def _lookup(self, imdb_id: str) -> Found | NotFound | Deleted | None:
        """The client's lookup of ``imdb_id``; ``None`` when the deadline came while its first
        request still waited for its turn: nothing was asked, so it is not waited for (with
        20 connections at 10/s that wait is 2 s, past the margin's hard stop, which would
        cut the chunks holding the answers already in). A lookup that has sent a request is
        in flight: it finishes."""
        remaining = self.remaining
        if remaining is None:
            return await self.client.lookup(imdb_id)
        sends = Sends()
        task = asyncio.create_task(self.client.lookup_counting(imdb_id, sends))
        try:
            while not task.done() and not self._out_of_time():
                # Woken at the deadline; the caller's clock decides (it may not be time).
                await asyncio.wait({task}, timeout=max(0.001, remaining() - self.margin))
            if not task.done() and sends.count == 0:
                task.cancel()
                await asyncio.wait({task})
                if task.cancelled():
                    return None
            return await task
        finally:
            if not task.done():  # this worker was cancelled (the hard stop, an error)
                task.cancel()
                await asyncio.wait({task})
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: raised above, or of no one's interest now

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

    async def _commit(self, batch: list[Chunk]) -> None:
        for chunk in batch:
            chunk.records.sort(key=lambda pair: pair[0])
            chunk.sidecar.sort(key=lambda pair: pair[0])
        blocked: set[str] = set()
        if any(c.records or c.sidecar for c in batch):
            done = await self.ledger.commit(
                [
                    ([record for _, record in c.records], [entry for _, entry in c.sidecar])
                    for c in batch
                ],
                shape=self.shape,
                fmt=self.settings.output_format,
                stem=self.stem,
            )
            # Only now are the chunks done: a commit cut off by the deadline leaves them
            # open, and next_offset points at the first.
            folder = self.ledger.folder
            self.files += [self.ledger.store.url(f"{folder}/{name}") for name in done.data_files]
            if done.sidecar_file:
                self.sidecars.append(self.ledger.store.url(f"{folder}/{done.sidecar_file}"))
            self.counts.replaced += done.replaced
            self.counts.blocked += len(done.blocked)
            self.damaged += [line for line in done.damaged if line not in self.damaged]
            blocked = set(done.blocked)
            self.counts.held += len(done.held)
            held = set(done.held)
            self.held_failures += [e for c in batch for _, e in c.sidecar if e["imdb_id"] in held]
        for chunk in batch:
            del self.open[chunk.first]
            self.room.release()
            self.counts.records += sum(1 for _, r in chunk.records if r["imdb_id"] not in blocked)
            for _, entry in chunk.sidecar:
                if entry["imdb_id"] not in blocked:
                    name = entry["outcome"]
                    setattr(self.counts, name, getattr(self.counts, name) + 1)
            for position, _ in chunk.records:
                self._done(position)
            for position, _ in chunk.sidecar:
                self._done(position)
            self.counts.still_deleted += len(chunk.unchanged)
            for position in chunk.unchanged:
                self._done(position)
            for _, record in chunk.records:
                if record["imdb_id"] not in blocked:
                    self.idmap.learn(record, self.profile)
            for _, entry in chunk.sidecar:
                if entry["outcome"] == "deleted":  # kept, marked: a restore is refreshed
                    self.idmap.learn_deleted(
                        entry["imdb_id"], entry["media_type"], entry["tmdb_id"], self.profile
                    )
        # Only once the chunks are done: a deadline during this write leaves nothing open.
        if self.idmap.pending >= FLUSH_AT:
            await self.idmap.flush_quietly()

    def next_offset(self) -> int | None:
        """First position not accounted for; None when the whole slice is done."""
        pending = [start for start, chunk in self.open.items() if chunk.expected]
        pending += self.handed_back
        if self.stopped_at is not None:
            pending.append(self.stopped_at)
        elif not self.finished:
            pending.append(self.cursor)  # cancelled while reading
        return min(pending) if pending else None
