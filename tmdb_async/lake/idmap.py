"""The id map: what TMDB calls each IMDb id the lake already holds.

A title ingested once has a known TMDB id and media type, so it never needs ``/find`` again:
``/3/{movie|tv}/{tmdb_id}`` is one request, even for a series (which TMDB will not look up
by IMDb id). Runs learn the map from the records they commit and keep it in the lake, as a
compacted base plus one segment per run's lessons.

A run reads it once (one LIST, the base, the segments the base has not merged) and, when
segments pile up, folds them into a new base with a conditional write, so two runs at once
cannot lose each other's base.

The map is a cache of the lake, never its truth: a title missing from it costs a ``/find``
(a run killed with -9 loses what it learned since its last segment, an unreadable map is
ignored), and an entry TMDB no longer honours (a details 404, or details naming another IMDb
id) sends the client back to the other ways and is forgotten. Records are the same whichever
way fetched them; a record whose TMDB-side IMDb id differs from the one asked is not learned.

Only command-line runs and the Step Functions prepare step compact (see :meth:`LakeIdMap.load`):
Distributed Map children start together and would all read every segment and race to
compact; they read the base and the newest :data:`READ_AT_MOST` segments instead (the ids of
one execution are in one batch each, so its siblings' lessons are of no use to a child).

Each title also keeps its :class:`~tmdb_async.lake.profile.Profile`, the settings its record was
last fetched with, so that a refresh fetches it again the same way (``tmdb_async.jobs.refresh``).

A title TMDB removed stays in the map, marked ``deleted``: the refresh keeps watching its
TMDB id, so when a change list names it again it is asked once by that id, and a restored
title becomes a record again (a deleted title is never a shortcut for a run).

This module is the run's view, :class:`LakeIdMap`, and the map's public names. The rest:

- :mod:`tmdb_async.lake.idmap_columns`: the map in memory (:class:`Title`, :class:`IdMap`);
- :mod:`tmdb_async.lake.idmap_format`: its files (where, their bytes, the packed value);
- :mod:`tmdb_async.lake.idmap_scan`: the map learnt again from the lake's data files and
  manifests by one rule, :func:`lake_titles`, which :func:`repair` (each refresh, for the
  titles the map lacks or marks deleted otherwise than the ledgers) and :func:`rebuild`
  (``idmap``) both follow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from tmdb_async.errors import Conflict, StorageError
from tmdb_async.imdb import canonical_form, canonical_number
from tmdb_async.lake import idmap_format as fmt
from tmdb_async.lake.idmap_columns import IdMap, Title, record_title
from tmdb_async.lake.idmap_format import BASE_KEY, MAP_FOLDER, SEGMENT_PREFIX
from tmdb_async.lake.idmap_scan import Rebuilt, lake_titles, rebuild, repair
from tmdb_async.lake.profile import Profile
from tmdb_async.lake.storage import Store

__all__ = [
    "BASE_KEY",
    "COMPACT_AT",
    "FLUSH_AT",
    "MAP_FOLDER",
    "READ_AT_MOST",
    "SEGMENT_PREFIX",
    "IdMap",
    "LakeIdMap",
    "Rebuilt",
    "Title",
    "lake_titles",
    "rebuild",
    "repair",
]

log = logging.getLogger(__name__)


COMPACT_AT: Final = 16
"""Segments a compacting run folds into a new base when it finds this many."""
READ_AT_MOST: Final = 64
"""Segments a run that does not compact reads at most (the newest)."""
FLUSH_AT: Final = 5_000
"""Titles learned before a run writes a segment mid-run (and at its end, whatever is left)."""


class LakeIdMap:
    """The lake's id map for one run: read once by :meth:`load`, taught by :meth:`learn`
    as records are committed, its lessons written as segments by :meth:`flush`."""

    def __init__(self, store: Store, owner: str) -> None:
        self._store = store
        self._owner = owner
        self._known = IdMap()
        # What this run learned since its last flush, in commit order: at most FLUSH_AT
        # titles, 12 bytes each. Not added to _known: a run asks each title once, so its own
        # lessons serve later runs. Known or not, every title is written again: the newest
        # lesson must win over anything older, and compaction folds the repeats.
        self._pending = (fmt.number_column(), fmt.value_column())
        self._pending_profiles = IdMap(tombstones=True)  # holds the segment's profile table
        self._written = 0

    def get(self, imdb_id: str) -> Title | None:
        return self._known.get(imdb_id)

    def __len__(self) -> int:
        return len(self._known)

    def entries(self) -> Iterator[tuple[str, Title]]:
        """(IMDb id, :class:`Title`) of every title read, in IMDb order."""
        known = self._known
        for number, value in known.items():
            yield canonical_form(number), known.title(value)

    @property
    def pending(self) -> int:
        """Titles learned and not yet written to a segment."""
        return len(self._pending[0])

    async def load(self, *, compact: bool, within: Iterable[str] | None = None) -> LakeIdMap:
        """Read the base and the segments it has not merged: all of them, folded into a new
        base once there are :data:`COMPACT_AT`, when ``compact``; else the newest
        :data:`READ_AT_MOST`.

        ``within`` (a Distributed Map child's ids): only the base's titles in the range of
        those ids, and no segment. The prepare step compacted the segments just before the
        Map, so they hold only its siblings' lessons, of no use to a child whose ids are
        in no other batch.

        Segments are listed before the base is read: a compaction in between only merges
        (and deletes) segments into a base this read then sees, or at worst hides a few
        titles from this run, which costs it a ``/find`` each and nothing else.
        """
        store = self._store
        if within is not None:
            return await self._load_part(within)
        names = await fmt.segment_names(store)
        found = await store.read(BASE_KEY)
        merged: set[str] = set()
        etag = None
        if found is not None:
            raw, etag = found
            try:
                self._known, listed = IdMap.decode(raw, store.url(BASE_KEY))
                merged = set(listed)
            except StorageError as exc:  # rebuilt from the segments and later runs
                log.warning("%s: starting from an empty id map", exc)
        fresh = [name for name in names if name not in merged]
        if not compact and len(fresh) > READ_AT_MOST:
            log.info("id map: reading the newest %d of %d segments", READ_AT_MOST, len(fresh))
            fresh = fresh[-READ_AT_MOST:]
        for name in fresh:  # in name order: time first, so newer lessons win
            raw_segment = await store.get(SEGMENT_PREFIX + name)
            if raw_segment is None:
                continue  # compacted and deleted since the listing
            try:
                segment, _ = IdMap.decode(
                    raw_segment, store.url(SEGMENT_PREFIX + name), tombstones=True
                )
            except StorageError as exc:
                log.warning("%s: skipped", exc)
                continue
            self._known.update(segment)
        if compact and len(fresh) >= COMPACT_AT:
            await self._compact(etag, merged & set(names) | set(fresh))
        return self

    async def _load_part(self, within: Iterable[str]) -> LakeIdMap:
        numbers = [n for i in within if (n := canonical_number(i)) is not None]
        if not numbers:
            return self
        try:
            found = await fmt.read_part(self._store, BASE_KEY, min(numbers), max(numbers))
        except StorageError as exc:
            log.warning("%s: starting from an empty id map", exc)
            return self
        if found is not None:
            self._known = IdMap.of_columns(*found[:3])
        return self

    async def _compact(self, etag: str | None, merged: set[str]) -> None:
        """Write everything known as the new base, then delete the segments it merged.

        The base names the segments it holds, so a segment whose deletion did not happen
        (a kill) is skipped by readers, and the next compaction deletes it."""
        store = self._store
        data = self._known.encode(merged)
        try:
            await fmt.write_base(store, data, etag)
        except Conflict:
            return  # another run compacted first; its base holds these segments or newer
        for name in sorted(merged):
            try:
                await store.delete(SEGMENT_PREFIX + name)
            except StorageError as exc:
                log.warning("could not delete a merged id-map segment: %s", exc)
                return

    def learn(self, record: Mapping[str, Any], profile: Profile) -> None:
        """Note the title of a record committed by a run of ``profile`` (its ``imdb_id``,
        ``media_type``, ``id``)."""
        title = record_title(record)
        if title is not None:
            self._lesson(*title, narrow=profile.kind == "tv", profile=profile)

    def adopt(self, imdb_id: str, title: Title) -> bool:
        """Know ``title`` (what the lake holds of ``imdb_id``, :func:`lake_titles`) in this
        run too (unlike :meth:`learn`), and write it to the next segment: :func:`repair`'s
        way in."""
        fields = (imdb_id, title.media_type, title.tmdb_id, title.narrow, title.profile)
        if not self._known.add(*fields, deleted=title.deleted):
            return False
        self._lesson(*fields[:3], narrow=title.narrow, profile=title.profile, deleted=title.deleted)
        return True

    def learn_deleted(
        self, imdb_id: str, media_type: str, tmdb_id: object, profile: Profile
    ) -> None:
        """Note that TMDB removed the title ``imdb_id`` (its details answer 404 and ``/find``
        no longer finds it): kept, marked deleted, so a refresh still watches its TMDB id."""
        self._lesson(
            imdb_id,
            media_type,
            tmdb_id,
            narrow=profile.kind == "tv",
            profile=profile,
            deleted=True,
        )

    def _lesson(
        self,
        imdb_id: str,
        media_type: str,
        tmdb_id: object,
        *,
        narrow: bool,
        profile: Profile | None,
        deleted: bool = False,
    ) -> None:
        index = self._pending_profiles.profile_index(profile)
        packed = fmt.pack(
            imdb_id, media_type, tmdb_id, narrow=narrow, profile=index, deleted=deleted
        )
        if packed is not None:
            self._note(*packed)

    def forget(self, imdb_id: str) -> None:
        """Drop ``imdb_id`` for later runs: TMDB no longer honours what the map said."""
        number = canonical_number(imdb_id)
        if number is not None:
            self._note(number, fmt.FORGOTTEN)

    def _note(self, number: int, value: int) -> None:
        self._pending[0].append(number)
        self._pending[1].append(value)

    async def flush_quietly(self) -> None:
        """:meth:`flush`, a failure only logged: losing a segment costs requests, not data."""
        try:
            await self.flush()
        except StorageError as exc:
            log.warning("could not save the id map's new titles: %s", exc)

    async def flush(self) -> None:
        """Write what was learned since the last flush as a new segment."""
        numbers, values = self._pending
        if not numbers:
            return
        segment = self._pending_profiles
        segment.set_packed(numbers, values)  # the latest lesson wins
        name = f"{time.time_ns():020d}-{self._owner}-{self._written:04d}.bin"
        await fmt.write_segment(self._store, name, segment.encode())
        self._written += 1
        self._pending = (fmt.number_column(), fmt.value_column())
        self._pending_profiles = IdMap(tombstones=True)
