"""The folder ledger: the one mechanism that decides what a date folder holds.

Every id resolved into a date folder has exactly one *home*: a data file holding its record,
or a sidecar file holding its latest outcome (``not_found``, ``invalid``, ``failed``). The
ledger maps id → home, outcome and the *shape* (the settings that made the record), as a
numbered log of commits under ``<folder>/_ledger/``::

    _ledger/lock.json              lease: who may commit now
    _ledger/log/0000000042.json    commit 42: its new files, their ids and what moved
    _ledger/staged/0000000042/…    commit 42's new files, until they are moved into place
    _ledger/checkpoint.json        the folded state up to some commit, to read less: a root
    _ledger/pages/…                naming pages cut by IMDb number (lake.ledger_pages)

A commit writes one chunk: a data file and/or a sidecar file named by the commit's number.
Under the lock it

1. folds the commits other writers made since it last looked (any run, any settings);
2. lists, for each of its ids that already has a home, the file that must *drop* it;
3. uploads its new files under staged names (``…/<name>.staged``, create-only);
4. writes the commit, create-only, naming the staged files: now it is decided;
5. applies it: rewrites (or deletes, when emptied) every file losing ids, *then* moves the
   new files into place with a server-side copy (a hard link locally), create-only;
   deletes the staged names; then slims the commit to ids only and releases the lock.

So a record's bytes are uploaded once: the copy happens inside S3. Commits written before
staging existed hold the content of their new files themselves; one left pending is rolled
forward from that content, as it always was.

Drops come before adds, so at no instant does a plain glob see an id twice; a file left
holding only replaced records disappears. A writer killed during step 5 leaves its lock
behind: the next writer (or the next run's :meth:`Ledger.load`) takes the lock over once
the lease expired (at once when the owner is a dead process on the same machine) and
re-applies the decided commit from its staged files, which is idempotent: a staged file
already gone was moved, and its final file is recognised by its MD5 and size. A writer
killed before step 4 decided nothing: its staged files are garbage, named for it alone,
swept with the log at the next checkpoint. So nothing is
twice at any instant, and an id outside a killed run is never lost.

The lock is a lease (:mod:`tmdb_async.lake.lease`): conditional writes, so two writers never both
hold it, and an expiry, so a dead holder blocks the folder for at most the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tmdb_async.errors import Conflict, DamagedFile, LeaseLost, StorageError
from tmdb_async.imdb import canonical_number
from tmdb_async.lake.codec import decode_file, encode_file
from tmdb_async.lake.homes import Home, HomeIndex
from tmdb_async.lake.lease import Lease
from tmdb_async.lake.ledger_pages import (
    PageRef,
    Root,
    checkpoint_body,
    cut,
    decode_page,
    decode_root,
    encode_page,
    page_key,
    touched,
)
from tmdb_async.lake.storage import Store, delete_once, md5_hex, write_once

log = logging.getLogger(__name__)

ANSWERS = frozenset({"record", "not_found", "deleted"})  # what only TMDB can say
SIDECAR_FOLDER = "_sidecars"
LEDGER_FOLDER = "_ledger"
# A staged file's name ends with this, so no glob of data files (``*.json``, ``*.jsonl``)
# ever matches one, wherever it lives.
STAGED_SUFFIX = ".staged"
CHECKPOINT_EVERY = 64  # commits between checkpoints: bounds what a new reader folds
REWRITE_RATIO = 4  # a checkpoint rewrites at most this many ids per id that changed…
CHECKPOINT_MOST = 1024  # …or, once the log holds this many commits,
LONG_LOG_RATIO = 16  # this many (a bounded multiple still: linear over a run)…
ENDING_RATIO = 64  # …or this many when a run ends (so a folder at rest has no log to fold)
LEASE_SECONDS = 60.0
WAIT_SECONDS = 300.0  # for a busy lock, before giving up with a StorageError


_Read = tuple[bytes, str, list[dict[str, Any]]]  # a data file's bytes, ETag and items


@dataclass(frozen=True, slots=True)
class Committed:
    """What one commit wrote (keys relative to the folder)."""

    version: int
    data_files: tuple[str, ...]
    sidecar_file: str | None
    replaced: int  # ids that had a home before and moved here
    held: tuple[str, ...] = ()  # failed ids that keep the answer they had (not written)
    blocked: tuple[str, ...] = ()  # ids left in a damaged file: their new result not written
    damaged: tuple[str, ...] = ()  # why: one line per damaged file, naming it


@dataclass(slots=True)
class _State:
    version: int = 0
    checkpoint: int = 0  # version of the checkpoint on storage
    homes: HomeIndex = field(default_factory=HomeIndex)
    pending: int | None = None  # the newest commit, if it still holds its bodies (unapplied)
    checkpoint_etag: str | None = None  # of the checkpoint read or written last
    root: Root | None = None  # the checkpoint's pages (None: no checkpoint, or format 1)
    legacy: bool = False  # read from a format-1 checkpoint: the next one writes every page
    tail: dict[str, Home] = field(default_factory=dict)  # changed since the checkpoint
    touched: set[int] = field(default_factory=set)  # pages of the root the tail falls in
    rewritten: int = 0  # ids a checkpoint now would write: the tail and those pages

    def note(self, imdb_id: str, home: Home) -> None:
        """``imdb_id`` changed since the checkpoint: what a checkpoint would rewrite grows
        by its page, the first time one of the page's ids changes."""
        if imdb_id not in self.tail:
            self.rewritten += 1
            number = canonical_number(imdb_id)
            pages = self.root.pages if self.root is not None else ()
            if pages and number is not None:
                at = next(iter(touched(pages, [number])))
                if at not in self.touched:
                    self.touched.add(at)
                    self.rewritten += pages[at].count
        self.tail[imdb_id] = home


@dataclass(frozen=True, slots=True)
class _Within:
    """The ids a partial view reads: their numbers (sorted), and whether any is not a
    canonical id (then the others page is read too)."""

    numbers: list[int]
    others: bool

    @classmethod
    def of(cls, ids: Iterable[str]) -> _Within:
        numbers: set[int] = set()
        others = False
        for imdb_id in ids:
            number = canonical_number(imdb_id)
            if number is None:
                others = True
            else:
                numbers.add(number)
        return cls(sorted(numbers), others)


class Ledger:
    """One date folder's ledger. :meth:`load` it, look ids up, :meth:`commit` chunks.

    ``within``: the ids this ledger will look up and commit (a Distributed Map child's
    batch). It then reads only the checkpoint pages that can hold them, plus every commit
    since the checkpoint: :meth:`home` is exact for those ids and for every id of those
    commits, and :meth:`homes` holds only what was read (see :attr:`partial`)."""

    def __init__(
        self,
        store: Store,
        folder: str,
        *,
        owner: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        lease_seconds: float | None = None,
        wait_seconds: float = WAIT_SECONDS,
        within: Iterable[str] | None = None,
    ) -> None:
        self.store = store
        self._within = None if within is None else _Within.of(within)
        # The pages a partial ledger read, by key: pages never change, and the checkpoint at
        # the end of its run rewrites the ones its commits touched, usually these.
        self._read: dict[str, list[tuple[int | str, Home]]] = {}
        self.folder = folder.rstrip("/")
        self.owner = owner or uuid.uuid4().hex[:12]
        self._clock = clock
        self._lease_seconds = LEASE_SECONDS if lease_seconds is None else lease_seconds
        self._wait = wait_seconds
        self._state = _State()
        self._mutex = asyncio.Lock()  # one commit at a time from this process
        self._lease: Lease | None = None
        self._holder = uuid.uuid4().hex  # this writer's lock, whichever Lease object wrote it
        self._settle = float("-inf")  # see Lease.settle: carried from one Lease to the next

    # --- reading -------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        return f"{self.folder}/{name}"

    def _log_key(self, version: int) -> str:
        return self._key(f"{LEDGER_FOLDER}/log/{version:010d}.json")

    @property
    def version(self) -> int:
        return self._state.version

    def home(self, imdb_id: str) -> Home | None:
        return self._state.homes.get(imdb_id)

    def homes(self) -> Mapping[str, Home]:
        """Every id's home, or, for a :attr:`partial` ledger, the homes it has read."""
        return self._state.homes

    @property
    def partial(self) -> bool:
        """Whether this ledger read only the pages of its ``within`` ids."""
        return self._within is not None

    async def load(self) -> Ledger:
        """Read the folder's state, and roll forward a commit a writer left half done (a dead
        one, or this one after losing the lock: only the newest commit can be pending)."""
        await self._reload()
        for _ in range(3):
            if self._state.pending is None:
                return self
            with contextlib.suppress(LeaseLost):
                async with self._locked():
                    pass  # holding the lock rolls the pending commit forward
                return self
            await self._reload()
        raise StorageError(
            f"{self.store.url(self._key(LEDGER_FOLDER))}: the pending commit "
            f"{self._state.pending} could not be rolled forward"
        )

    async def peek(self) -> Ledger:
        """Read the folder's state without the lock and without writing anything: for an
        operator's view (``status``), which must never change what it looks at. A commit
        left half applied counts as decided (its ids' homes are the files it names, as
        :attr:`pending` says); the next writer or :meth:`load` rolls it forward."""
        await self._reload()
        return self

    @property
    def pending(self) -> int | None:
        """The newest commit, when its writer stopped before applying it all."""
        return self._state.pending

    async def items_of(self, name: str) -> list[dict[str, Any]]:
        """The items of one of the folder's files (records, or sidecar entries); empty when
        it is gone. A damaged file raises :class:`DamagedFile`, naming it."""
        found = await self._readable(name)
        return [] if found is None else found[2]

    async def _reload(self) -> None:
        """Checkpoint, then every later commit. Without the lock a concurrent checkpoint can
        delete commits between our two reads: a gap in the numbers means read again."""
        for _ in range(10):
            state = _State()
            found = await self.store.read(self._key(f"{LEDGER_FOLDER}/checkpoint.json"))
            if found is not None:
                state = _parse_checkpoint(found[0], self.store.url(self._key(LEDGER_FOLDER)))
                state.checkpoint_etag = found[1]
                if state.root is not None and not await self._read_pages(state, state.root):
                    continue  # a page was replaced and deleted meanwhile: read again
            if await self._fold_new(state):
                self._state = state
                return
        raise StorageError(f"{self.store.url(self._key(LEDGER_FOLDER))}: changing too fast")

    async def _read_pages(self, state: _State, root: Root) -> bool:
        """Fill ``state.homes`` from the root's pages (this ledger's, when partial), in
        order; False when one is gone."""
        within = self._within
        refs = (
            [*root.pages, *([root.others] if root.others else [])]
            if within is None
            else root.wanted(within.numbers, within.others)
        )
        gate = asyncio.Semaphore(8)

        async def one(ref: PageRef) -> bytes | None:
            async with gate:
                return await self.store.get(self._key(ref.key))

        raws = await asyncio.gather(*(one(ref) for ref in refs))
        for ref, raw in zip(refs, raws, strict=True):
            if raw is None:
                return False
            try:
                items = decode_page(raw)
            except (ValueError, KeyError, TypeError, zlib.error):
                raise StorageError(
                    f"{self.store.url(self._key(ref.key))}: damaged ledger checkpoint page"
                ) from None
            state.homes.extend(items)
            if within is not None:
                self._read[ref.key] = items
        return True

    async def _fold_new(self, state: _State) -> bool:
        """Fold the commits after ``state.version``; False on a gap (they were compacted)."""
        keys = await self.store.list(
            self._key(f"{LEDGER_FOLDER}/log/"), start_after=self._log_key(state.version)
        )
        for key in keys:
            version = _version_of(key)
            if version is None:
                continue
            if version != state.version + 1:
                return False
            raw = await self.store.get(key)
            if raw is None:
                return False
            header, bodies = _parse_entry(raw, self.store.url(key))
            _fold(state, header)
            state.version = version
            state.pending = version if bodies or _staged(header) else None
        return True

    # --- committing ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _locked(self, wait: float | None = None) -> AsyncIterator[None]:
        """Hold the folder's lock (waiting up to ``wait`` seconds for it, the ledger's own
        wait by default), with every commit since we last looked folded in."""
        lease = Lease(
            self.store,
            self._key(f"{LEDGER_FOLDER}/lock.json"),
            self.owner,
            self._clock,
            self._lease_seconds,
            holder=self._holder,
            settle=self._settle,
        )
        await lease.acquire(self._wait if wait is None else wait)
        self._lease = lease
        try:
            if not await self._fold_new(self._state):
                await self._reload()
            if self._state.pending is not None:
                await self._roll_forward(self._state.pending)
            yield
        except LeaseLost:
            self._lease = None
            self._settle = max(self._settle, lease.settle)
            raise  # taken over (nothing to release), or ours to take back (see Lease.holder)
        except BaseException:
            self._lease = None
            with contextlib.suppress(Exception):
                await lease.release()  # a half-applied commit is rolled forward by the next
            raise
        self._lease = None
        await lease.release()

    async def _roll_forward(self, version: int) -> None:
        """Re-apply the newest commit if it still names staged files (or, written before
        staging, holds its files' bodies): its writer stopped (or died) while applying it.
        Only the newest can be pending: commits are applied under the lock before the next
        one is written."""
        raw = await self.store.get(self._log_key(version))
        if raw is not None:
            header, bodies = _parse_entry(raw, self.store.url(self._log_key(version)))
            if bodies or _staged(header):
                log.warning("rolling forward commit %d, left half-applied by its writer", version)
                await self._apply(header, bodies)
        self._state.pending = None

    async def commit(
        self,
        chunks: Sequence[tuple[Sequence[dict[str, Any]], Sequence[dict[str, Any]]]],
        *,
        shape: str,
        fmt: str,
        stem: str,
        only_from: Mapping[str, str] | None = None,
    ) -> Committed:
        """Give every id of some chunks its new home. Each chunk is ``(records, sidecar)``:
        its records (each with ``imdb_id``) go to one data file, its sidecar entries
        (``imdb_id``, ``outcome``, ``reason``…) to the commit's sidecar file. An id's older
        home anywhere in the folder drops it first. Several chunks make one commit: one lock,
        one log entry, however many files.

        ``only_from`` (id -> the file its item was read from) moves items that were read
        before the lock, a rewrite's: an id whose home changed since (another writer's
        commit, folded under the lock) is left where it is, so a stale copy never replaces
        a newer answer."""
        # Once decided (its log entry is being written), a commit is finished, not abandoned:
        # a cancelled thread or request could still land after the lock is released, so
        # cancellation (a deadline) waits for it, then goes on. Before that, nothing of it
        # is on storage yet, and a commit waiting for a busy lock stops at once.
        deciding: list[bool] = []
        task = asyncio.ensure_future(self._commit(chunks, shape, fmt, stem, deciding, only_from))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not deciding:
                task.cancel()
            if not task.done():
                await asyncio.wait([task])
            raise

    async def _commit(
        self,
        chunks: Sequence[tuple[Sequence[dict[str, Any]], Sequence[dict[str, Any]]]],
        shape: str,
        fmt: str,
        stem: str,
        deciding: list[bool],
        only_from: Mapping[str, str] | None = None,
    ) -> Committed:
        async with self._mutex:
            for attempt in range(3):
                decided: list[Committed] = []
                try:
                    async with self._locked():
                        return await self._commit_locked(
                            self._still_home(chunks, only_from),
                            shape,
                            fmt,
                            stem,
                            decided,
                            deciding,
                        )
                except LeaseLost:
                    if decided:
                        # Written before the lock was lost: whoever holds the lock next rolls
                        # it forward, and that may be us. Either way it is applied before we
                        # report it (a run never ends with its own commit unapplied).
                        log.warning(
                            "folder lock lost after commit %d was decided; finishing it",
                            decided[0].version,
                        )
                        await self.load()  # rolls the newest commit forward if pending
                        return decided[0]
                    log.warning("folder lock lost during a commit (attempt %d)", attempt + 1)
                    await self._reload()
            raise StorageError(f"{self.store.url(self.folder)}: lost the folder lock 3 times")

    def _still_home(
        self,
        chunks: Sequence[tuple[Sequence[dict[str, Any]], Sequence[dict[str, Any]]]],
        only_from: Mapping[str, str] | None,
    ) -> Sequence[tuple[Sequence[dict[str, Any]], Sequence[dict[str, Any]]]]:
        """``chunks`` without the items whose id no longer lives where ``only_from`` says
        (under the lock: the folder's state is current)."""
        if only_from is None:
            return chunks

        def here(item: dict[str, Any]) -> bool:
            home = self._state.homes.get(item["imdb_id"])
            return home is not None and home.file == only_from.get(item["imdb_id"])

        return [([r for r in rs if here(r)], [e for e in es if here(e)]) for rs, es in chunks]

    async def _commit_locked(
        self,
        chunks: Sequence[tuple[Sequence[dict[str, Any]], Sequence[dict[str, Any]]]],
        shape: str,
        fmt: str,
        stem: str,
        decided: list[Committed],
        deciding: list[bool],
    ) -> Committed:
        version = self._state.version + 1
        extension = "jsonl" if fmt == "jsonl" else "json"
        files: list[dict[str, Any]] = []
        bodies: list[bytes] = []
        data_files: list[str] = []
        # Read every file that must drop ids before the commit is decided: a decided commit
        # must be applied before any other, so one that cannot be (a damaged file) would
        # block every later writer of the folder. Here, a damaged file blocks only the ids it
        # holds: they stay where they are (``blocked``), and the rest of the commit goes on.
        # Under the lock no writer changes these files, so the apply below uses these bytes.
        current: dict[str, _Read | None] = {}
        damaged: dict[str, str] = {}
        for _, place in self._homes_of(chunks):
            if place.file not in current and place.file not in damaged:
                try:
                    current[place.file] = await self._readable(place.file)
                except DamagedFile as exc:
                    damaged[place.file] = str(exc)
        blocked = [i for i, place in self._homes_of(chunks) if place.file in damaged]
        if blocked:
            gone = set(blocked)
            chunks = [
                (
                    [r for r in records if r["imdb_id"] not in gone],
                    [e for e in entries if e["imdb_id"] not in gone],
                )
                for records, entries in chunks
            ]
        # A failure is not an answer: an id that has one here (a record, not found, deleted)
        # keeps it, and the failure is only reported (``held``).
        sidecar: list[dict[str, Any]] = []
        held: list[str] = []
        for entry in (entry for _, entries in chunks for entry in entries):
            home = self._state.homes.get(entry["imdb_id"])
            if entry["outcome"] == "failed" and home is not None and home.outcome in ANSWERS:
                held.append(entry["imdb_id"])
            else:
                sidecar.append(entry)
        if not sidecar and not any(records for records, _ in chunks):
            return Committed(
                self._state.version,
                (),
                None,
                0,
                tuple(held),
                tuple(blocked),
                tuple(damaged.values()),
            )
        for index, (records, _) in enumerate(c for c in chunks if c[0]):
            name = f"{stem}-{version:08d}-{index:02d}.{extension}"
            ids = [r["imdb_id"] for r in records]
            files.append({"key": name, "ids": ids, "outcome": "record"})
            bodies.append(encode_file(name, records))
            data_files.append(name)
        side_file = f"{SIDECAR_FOLDER}/{stem}-{version:08d}.json" if sidecar else None
        if side_file:
            ids = [e["imdb_id"] for e in sidecar]
            files.append(
                {"key": side_file, "ids": ids, "outcomes": [e["outcome"] for e in sidecar]}
            )
            bodies.append(encode_file(side_file, sidecar))
        drops: dict[str, list[str]] = {}
        for spec in files:
            for imdb_id in spec["ids"]:
                home = self._state.homes.get(imdb_id)
                if home is not None:
                    drops.setdefault(home.file, []).append(imdb_id)
        named = [imdb_id for spec in files for imdb_id in spec["ids"]]
        if len(set(named)) != len(named):
            raise ValueError(f"commit {version}: an id is named twice")  # a caller's bug
        for spec, body in zip(files, bodies, strict=True):
            spec["size"] = len(body)
            spec["md5"] = md5_hex(body)
            spec["staged"] = f"{LEDGER_FOLDER}/staged/{version:010d}/{self._holder[:16]}/" + (
                f"{spec['key']}{STAGED_SUFFIX}"
            )
        header = {
            "version": version,
            "writer": self.owner,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "shape": shape,
            "files": files,
            "drops": drops,
        }
        assert self._lease is not None
        for spec, body in zip(files, bodies, strict=True):
            await self._stage(spec["staged"], body, _content_type(spec["key"]))
        deciding.append(True)
        try:
            async with self._lease.held():
                await write_once(
                    self.store,
                    self._log_key(version),
                    _entry_bytes(header, ()),
                    if_none_match=True,
                )
        except Conflict:
            raise LeaseLost(self._log_key(version)) from None
        _fold(self._state, header)
        self._state.version = version
        self._state.pending = version
        decided.append(
            Committed(
                version=version,
                data_files=tuple(data_files),
                sidecar_file=side_file,
                replaced=sum(len(ids) for ids in drops.values()),
                held=tuple(held),
                blocked=tuple(blocked),
                damaged=tuple(damaged.values()),
            )
        )
        await self._apply(header, (), current)
        self._state.pending = None
        if self._checkpoint_due(ending=False):
            await self._write_checkpoint()
            if self._state.pending is None:
                await self._sweep_staged()
        return decided[0]

    async def _stage(self, name: str, body: bytes, content_type: str) -> None:
        """Upload a new file under its staged name, create-only. The name is this writer's
        and this (undecided) version's alone, so an object already there is this writer's
        own earlier attempt at the same commit (the lock was lost and taken back): its
        bytes are replaced, since nothing decided names them yet."""
        assert self._lease is not None
        async with self._lease.held():
            try:
                await write_once(
                    self.store, self._key(name), body, content_type, if_none_match=True
                )
            except Conflict:
                await self.store.write(self._key(name), body, content_type)

    async def _sweep_staged(self) -> None:
        """Delete staged files of commits up to the current one: every such commit is
        applied (its own were deleted) or was never decided (a writer died before writing
        it), so they are garbage. Later versions may be another writer's, being staged."""
        assert self._lease is not None
        prefix = self._key(f"{LEDGER_FOLDER}/staged/")
        for key in await self.store.list(prefix):
            number = key[len(prefix) :].split("/", 1)[0]
            if number.isascii() and number.isdigit() and int(number) <= self._state.version:
                async with self._lease.held():
                    await self.store.delete(key)

    async def _apply(
        self,
        header: Mapping[str, Any],
        bodies: Sequence[bytes],
        current: Mapping[str, _Read | None] | None = None,
    ) -> None:
        """Drops first, then the new files, then slim the commit to its header. Idempotent.
        ``bodies``: the new files' bytes of a commit written before staging existed (empty
        for a commit that names staged files, moved into place by :meth:`_move_staged`).
        ``current``: the files losing ids as :meth:`_readable` read them under this lock.

        Every data write is fenced as well as leased: a new file is created only if absent
        (or already holding these bytes: a roll-forward, or a retry that landed), and a file
        losing ids is replaced or deleted only in the version just read. A late write of a
        writer whose lease ran out therefore fails instead of undoing a newer commit. A new
        file arrives by a copy of its staged upload, and the roll-forward deletes the staged
        upload before any newer commit starts, so a late copy finds nothing to copy; only a
        copy the store itself began before that deletion and applied after a newer commit
        deleted the file is kept out by the lease's margin alone
        (:mod:`tmdb_async.lake.lease`)."""
        assert self._lease is not None
        for name, ids in header["drops"].items():
            async with self._lease.held():
                await self._drop(name, set(ids), (current or {}).get(name))
        for spec, body in zip(header["files"], bodies, strict=False):
            async with self._lease.held():
                try:
                    await write_once(
                        self.store,
                        self._key(spec["key"]),
                        body,
                        _content_type(spec["key"]),
                        if_none_match=True,
                    )
                except Conflict:
                    raise LeaseLost(f"{spec['key']}: changed by a later commit") from None
        if not bodies:
            await self._move_staged(header)
        async with self._lease.held():
            await self.store.write(
                self._log_key(int(header["version"])),
                _entry_bytes(_slim(header), ()),
                durable=False,
            )

    async def _move_staged(self, header: Mapping[str, Any]) -> None:
        """Copy each staged file to its name (create-only), then delete the staged names.

        Safe to stop anywhere and run again: a staged file still there is copied again (a
        final file already there must be this one: same MD5 and size, as after a copy whose
        answer was lost and whose retry was refused); a staged file gone was copied before
        its deletion, so its final file must be there and be this one."""
        assert self._lease is not None
        staged = [spec for spec in header["files"] if "staged" in spec]
        for spec in staged:
            async with self._lease.held():
                try:
                    moved = await self.store.copy(
                        self._key(spec["staged"]), self._key(spec["key"]), if_none_match=True
                    )
                except Conflict:
                    moved = None
            if moved is None:  # already there (ours, or a later commit's), or lost
                await self._check_moved(spec)
        for spec in staged:
            async with self._lease.held():
                await self.store.delete(self._key(spec["staged"]))

    async def _check_moved(self, spec: Mapping[str, Any]) -> None:
        found = await self.store.read(self._key(spec["key"]))
        if found is None:
            raise StorageError(
                f"{self.store.url(self._key(spec['key']))}: a decided commit's file is missing "
                f"and its staged copy {spec['staged']} is gone"
            )
        if len(found[0]) != int(spec["size"]) or md5_hex(found[0]) != spec["md5"]:
            raise LeaseLost(f"{spec['key']}: changed by a later commit")

    def _homes_of(
        self, chunks: Sequence[tuple[Sequence[dict[str, Any]], Sequence[dict[str, Any]]]]
    ) -> Iterator[tuple[str, Home]]:
        """(id, its home here) of every id of ``chunks`` that has one."""
        for records, entries in chunks:
            for item in (*records, *entries):
                home = self._state.homes.get(item["imdb_id"])
                if home is not None:
                    yield item["imdb_id"], home

    async def _readable(self, name: str) -> _Read | None:
        """A file's bytes, ETag and items (``None`` when it is gone); a :class:`StorageError` that
        names the file and a fix that loses nothing when it cannot be read."""
        key = self._key(name)
        found = await self.store.read(key)
        if found is None:
            return None
        raw, etag = found
        try:
            return raw, etag, decode_file(name, raw)
        except ValueError as exc:
            reason = str(exc).splitlines()[0][:80]
            raise DamagedFile(
                f"{self.store.url(key)}: damaged ({reason}); the ledger cannot move ids out of "
                "it, so its titles keep their place and their new results were not written. "
                "Repair it (one JSON object per record) or restore its last version, then run "
                "again; do not delete it: the folder's ledger places titles there"
            ) from None

    async def _drop(self, name: str, ids: set[str], found: _Read | None = None) -> None:
        key = self._key(name)
        found = found or await self._readable(name)
        if found is None:
            return
        _, etag, items = found
        kept = [item for item in items if item.get("imdb_id") not in ids]
        if len(kept) == len(items):
            return
        try:
            if kept:
                await write_once(
                    self.store, key, encode_file(name, kept), _content_type(name), if_match=etag
                )
            else:
                await delete_once(self.store, key, if_match=etag)
        except Conflict:
            # Changed since we read it: by a roll-forward of this same commit (then the ids
            # are gone and all is well), or by a newer writer (then we must stop).
            await self._drop_again(name, ids)

    async def _drop_again(self, name: str, ids: set[str]) -> None:
        found = await self.store.read(self._key(name))
        if found is None:
            return
        with contextlib.suppress(ValueError):
            if not any(item.get("imdb_id") in ids for item in decode_file(name, found[0])):
                return
        raise LeaseLost(f"{name}: changed by another writer while this one dropped ids")

    async def settle(self, wait: float = 5.0) -> None:
        """At the end of a run: write a checkpoint if the commits since the last one are
        worth it (:data:`ENDING_RATIO`), so that a folder at rest has no log for the next
        reader to fold. Best effort: a lock busy for ``wait`` seconds means another writer
        is at work and will checkpoint."""
        if self._state.version == self._state.checkpoint:
            return
        try:
            async with self._mutex, self._locked(wait):
                if self._checkpoint_due(ending=True):
                    await self._write_checkpoint()
        except (StorageError, LeaseLost) as exc:
            log.info("no checkpoint at the end of the run: %s", exc)

    def _checkpoint_due(self, *, ending: bool) -> bool:
        """Whether to checkpoint now. A checkpoint rewrites the pages the commits since the
        last one touched, so it waits until they changed enough of those pages
        (:data:`REWRITE_RATIO`): over a run, checkpoints then write a bounded multiple of
        what the run changed, not the folder again and again. A long log (a run writing in
        random order into a big folder) accepts a costlier one (:data:`LONG_LOG_RATIO`),
        so the log a reader folds stays short until the folder passes about 16 × 100 ×
        :data:`CHECKPOINT_MOST` ids."""
        state = self._state
        since = state.version - state.checkpoint
        if since <= 0 or (not ending and since < CHECKPOINT_EVERY):
            return False
        if state.legacy:
            return since >= CHECKPOINT_EVERY
        if ending:
            ratio = ENDING_RATIO
        else:
            ratio = REWRITE_RATIO if since < CHECKPOINT_MOST else LONG_LOG_RATIO
        return state.rewritten <= ratio * len(state.tail)

    async def _write_checkpoint(self) -> None:
        """New pages for the ranges the commits since the last checkpoint touched, then a
        new root naming them beside the untouched ones (:mod:`tmdb_async.lake.ledger_pages`).
        A format-1 checkpoint's folder is written whole, as pages, once."""
        state = self._state
        old = state.root
        try:
            pages, others, retired = await self._new_pages(state)
        except (_PageGone, Conflict):
            log.warning("a checkpoint page changed under us: leaving the log as it is")
            await self._reload()
            return
        root = Root(state.version, state.checkpoint, tuple(pages), others, tuple(retired))
        assert self._lease is not None
        try:  # conditional: a late write of a writer that lost the lock cannot regress it
            async with self._lease.held():
                state.checkpoint_etag = await write_once(
                    self.store,
                    self._key(f"{LEDGER_FOLDER}/checkpoint.json"),
                    root.encode(),
                    if_none_match=state.checkpoint_etag is None,
                    if_match=state.checkpoint_etag,
                )
        except Conflict:
            log.warning("the checkpoint changed under us: leaving the log as it is")
            await self._reload()  # take the newer checkpoint as ours
            return
        # Keep the commits after the previous checkpoint and the pages it named: a reader
        # that has just read that one still finds them.
        gone = [
            key
            for key in await self.store.list(self._key(f"{LEDGER_FOLDER}/log/"))
            if (v := _version_of(key)) is not None and v <= state.checkpoint
        ]
        gone += [self._key(key) for key in (old.retired if old is not None else ())]
        for key in gone:
            async with self._lease.held():
                await self.store.delete(key)
        state.checkpoint = state.version
        state.root = root
        state.legacy = False
        state.tail, state.touched, state.rewritten = {}, set(), 0

    async def _new_pages(self, state: _State) -> tuple[list[PageRef], PageRef | None, list[str]]:
        """(pages, others page, replaced page keys) of the state at ``state.version``."""
        old = state.root
        if state.legacy or old is None:
            kept: list[PageRef] = []
            others_ref = None
            changed = state.homes.items() if state.legacy else state.tail.items()
        else:
            kept, others_ref, changed = list(old.pages), old.others, state.tail.items()
        numbers: dict[int, Home] = {}
        others: dict[str, Home] = {}
        for imdb_id, home in changed:
            number = canonical_number(imdb_id)
            if number is None:
                others[imdb_id] = home
            else:
                numbers[number] = home
        written: list[PageRef] = []
        retired: list[str] = []
        serial = itertools.count()
        replaced: set[int] = set()
        for index, taken in sorted(touched(kept, numbers).items()):
            content: dict[int, Home] = {}
            if kept:
                content.update((int(n), h) for n, h in await self._page(kept[index]))
                replaced.add(index)
                retired.append(kept[index].key)
            content.update((n, numbers[n]) for n in taken)
            for piece in cut(sorted(content.items())):
                written.append(await self._put_page(state.version, next(serial), piece))
        if others:
            content_other: dict[str, Home] = {}
            if others_ref is not None:
                content_other.update((str(k), h) for k, h in await self._page(others_ref))
                retired.append(others_ref.key)
            content_other.update(others)
            others_ref = await self._put_page(
                state.version, next(serial), sorted(content_other.items())
            )
        pages = sorted(
            [p for i, p in enumerate(kept) if i not in replaced] + written, key=lambda p: p.low
        )
        return pages, others_ref, retired

    async def _page(self, ref: PageRef) -> list[tuple[int | str, Home]]:
        if ref.key in self._read:
            return self._read[ref.key]
        raw = await self.store.get(self._key(ref.key))
        if raw is None:
            raise _PageGone(ref.key)
        return decode_page(raw)

    async def _put_page(
        self, version: int, serial: int, items: Sequence[tuple[int | str, Home]]
    ) -> PageRef:
        key = page_key(version, serial)
        numbered = isinstance(items[0][0], int)
        assert self._lease is not None
        async with self._lease.held():
            await write_once(
                self.store,
                self._key(key),
                encode_page(items),
                "application/octet-stream",
                if_none_match=True,
            )
        low = int(items[0][0]) if numbered else -1
        high = int(items[-1][0]) if numbered else -1
        return PageRef(version, serial, low, high, len(items))


class _PageGone(Exception):
    """A page the root names is not on storage any more (a newer checkpoint's writer
    deleted it): this writer's root is stale."""


def _dump(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode()


def _content_type(name: str) -> str:
    return "application/x-ndjson" if name.endswith(".jsonl") else "application/json"


def _version_of(key: str) -> int | None:
    name = key.rsplit("/", 1)[-1]
    stem = name.removesuffix(".json")
    return int(stem) if stem.isascii() and stem.isdigit() and stem != name else None


def _fold(state: _State, header: Mapping[str, Any]) -> None:
    """Each id's new home. Ids with the same home share one :class:`Home` object: the map
    costs a dictionary slot per id, not an object."""
    shape = str(header.get("shape", ""))
    shared: dict[tuple[str, str], Home] = {}
    for spec in header["files"]:
        key = str(spec["key"])
        outcomes = spec.get("outcomes") or [spec.get("outcome", "record")] * len(spec["ids"])
        for imdb_id, outcome in zip(spec["ids"], outcomes, strict=True):
            home = shared.get((key, outcome))
            if home is None:
                home = shared[key, outcome] = Home(key, outcome, shape)
            state.homes.set(imdb_id, home)
            state.note(imdb_id, home)


def _staged(header: Mapping[str, Any]) -> bool:
    """Whether a commit still names staged files: it is not applied yet."""
    return any("staged" in spec for spec in header["files"])


def _slim(header: Mapping[str, Any]) -> dict[str, Any]:
    """An applied commit: its ids and homes, without what only applying it needed."""
    files = [
        {k: v for k, v in spec.items() if k not in ("staged", "md5")} for spec in header["files"]
    ]
    return {**header, "files": files}


def _entry_bytes(header: Mapping[str, Any], bodies: Sequence[bytes]) -> bytes:
    """A commit: its header as one JSON line, then, in a commit written before staging
    existed and until it was applied, its files' bytes."""
    return b"".join([_dump(header), b"\n", *bodies])


def _parse_entry(raw: bytes, where: str) -> tuple[dict[str, Any], list[bytes]]:
    """(header, file bodies): bodies only while the commit is not applied yet."""
    head, _, rest = raw.partition(b"\n")
    try:
        header = json.loads(head)
        if not isinstance(header, dict) or not isinstance(header.get("files"), list):
            raise ValueError
        bodies: list[bytes] = []
        if rest:
            position = 0
            for spec in header["files"]:
                size = int(spec["size"])
                bodies.append(rest[position : position + size])
                position += size
            if position != len(rest) or any(
                len(b) != int(s["size"]) for b, s in zip(bodies, header["files"], strict=True)
            ):
                raise ValueError
        return header, bodies
    except (ValueError, KeyError, TypeError):
        raise StorageError(f"{where}: damaged ledger commit (not the bytes it wrote)") from None


def _parse_checkpoint(raw: bytes, where: str) -> _State:
    """A root (format 2: its pages are read next), or a format-1 checkpoint holding every
    home itself (lakes written before pages: read whole, and the next checkpoint writes it
    as pages)."""
    try:
        body = checkpoint_body(raw)
        if "format" in body:
            root = decode_root(body)
            return _State(version=root.version, checkpoint=root.version, root=root)
        homes = HomeIndex()
        for file, outcome, shape, numbers, others in body["groups"]:
            home = Home(file, outcome, shape)
            for number in numbers:
                homes.set_number(int(number), home)
            for key in others:
                homes.set(key, home)
        version = int(body["version"])
    except (ValueError, KeyError, TypeError):
        raise StorageError(f"{where}/checkpoint.json: damaged ledger checkpoint") from None
    return _State(version=version, checkpoint=version, homes=homes, legacy=True)


async def date_folders(store: Store, root: str) -> list[str]:
    """The date folders under ``root`` that have a ledger, oldest first."""
    return sorted(
        {
            key.split(f"/{LEDGER_FOLDER}/", 1)[0]
            for key in await store.list(f"{root.rstrip('/')}/")
            if f"/{LEDGER_FOLDER}/" in key
        }
    )


async def latest_homes(store: Store, root: str) -> AsyncIterator[tuple[str, Mapping[str, Home]]]:
    """(folder, its homes) of every date folder under ``root``, oldest first: an id's home
    in a later folder is its latest outcome."""
    for folder in await date_folders(store, root):
        ledger = await Ledger(store, folder).peek()
        yield folder, ledger.homes()


async def lake_records(store: Store, root: str) -> set[str]:
    """Ids with a record in any date folder under ``root`` (for incremental runs)."""
    found: set[str] = set()
    async for _, homes in latest_homes(store, root):
        found.update(i for i, home in homes.items() if home.outcome == "record")
    return found
