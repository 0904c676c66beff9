"""The id map: what TMDB calls each IMDb id the lake already holds.

A title ingested once has a known TMDB id and media type, so it never needs ``/find`` again:
``/3/{movie|tv}/{tmdb_id}`` is one request, even for a series (which TMDB will not look up
by IMDb id). Runs learn the map from the records they commit and keep it in the lake::

    Raw/TMDB/_state/idmap/map.bin                  compacted base
    Raw/TMDB/_state/idmap/segments/<time>-<run>.bin  what one run learned since

A run reads it once (one LIST, the base, the segments the base has not merged) and, when
segments pile up, folds them into a new base with a conditional write, so two runs at once
cannot lose each other's base. In memory it is two sorted ``array`` columns.

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

What the lake knows of a title has one rule, :func:`lake_titles`: its latest answer from
TMDB in the date folders' ledgers (a record, ``deleted`` or ``not_found``; a failure is no
answer), with the profile of the run that wrote it (the manifest whose settings make the
commit's shape: every run writes its manifest before its first commit, killed runs too).
:func:`repair` (each refresh, for the titles the map lacks) and :func:`rebuild` (``idmap``)
both use it.

File format: a magic line, a JSON header line (``count``, ``merged`` segment names,
``profiles``), then ``count`` little-endian uint32 IMDb numbers, sorted, and as many uint64
values ``deleted << 50 | tmdb_id << 10 | profile << 2 | narrow << 1 | tv`` (``profile``
indexes the header's list; 255: unknown; TMDB ids stay below 2**40). ``narrow`` marks a series
learned by a ``--kind tv`` run, which never looked for a movie of the same IMDb id (``--kind
auto`` prefers the movie, so it does not use such an entry). Value 0 is a tombstone, kept in
segments only: forget the title. 12 bytes a title: 300,000 titles take 3.6 MB. Version 2
(no ``deleted`` bit) is read as it is; version 1 as described in :meth:`IdMap.decode`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from array import array
from bisect import bisect_left
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from tmdb_async.errors import Conflict, InputError, StorageError
from tmdb_async.imdb import canonical_form, canonical_number
from tmdb_async.lake.codec import decode_file
from tmdb_async.lake.homes import Home
from tmdb_async.lake.layout import RAW_FOLDER, STATE_FOLDER, data_file_date
from tmdb_async.lake.ledger import date_folders, latest_homes
from tmdb_async.lake.profile import Profile
from tmdb_async.lake.storage import Store
from tmdb_async.settings import MediaType

log = logging.getLogger(__name__)


MAP_FOLDER: Final = f"{STATE_FOLDER}/idmap"
BASE_KEY: Final = f"{MAP_FOLDER}/map.bin"
SEGMENT_PREFIX: Final = f"{MAP_FOLDER}/segments/"
COMPACT_AT: Final = 16
"""Segments a compacting run folds into a new base when it finds this many."""
READ_AT_MOST: Final = 64
"""Segments a run that does not compact reads at most (the newest)."""
FLUSH_AT: Final = 5_000
"""Titles learned before a run writes a segment mid-run (and at its end, whatever is left)."""

_MAGIC: Final = b"tmdb-ingest idmap 3\n"
_MAGIC_2: Final = b"tmdb-ingest idmap 2\n"  # read, never written: the same, with no deleted bit
_MAGIC_1: Final = b"tmdb-ingest idmap 1\n"  # read, never written: uint32 values, no profiles
_LIMIT: Final = 2**40  # TMDB ids: far above any there is, within the uint64 values
_TV: Final = 1
_NARROW: Final = 2
_PROFILE_SHIFT: Final = 2
_PROFILE_MASK: Final = 0xFF << _PROFILE_SHIFT
_UNKNOWN: Final = 255  # a title whose profile did not fit the table (or was not known)
_ID_SHIFT: Final = 10
_DELETED: Final = 1 << 50  # above every TMDB id << _ID_SHIFT (_LIMIT)
_FORGOTTEN: Final = 0
_CONTENT_TYPE: Final = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Title:
    """A title as TMDB knows it."""

    media_type: MediaType
    tmdb_id: int
    narrow: bool = False  # a series learned by a --kind tv run: --kind auto does not use it
    profile: Profile | None = None  # how its record was last fetched; None: not known
    deleted: bool = False  # TMDB removed it: watched by its TMDB id, never a shortcut


def _column() -> array[int]:
    column = array("I")
    if column.itemsize != 4:  # pragma: no cover  (every platform CPython runs on today)
        column = array("L")
    return column


def _wide() -> array[int]:
    return array("Q")


class IdMap:
    """IMDb id → :class:`Title`: sorted uint32 columns plus a dict of recent additions,
    merged into them in batches (like :class:`~tmdb_async.lake.homes.HomeIndex`)."""

    MERGE_AT = 8192

    def __init__(self, *, tombstones: bool = False) -> None:
        self._numbers = _column()
        self._values = _wide()
        self._recent: dict[int, int] = {}
        self._tombstones = tombstones  # a segment keeps them; a map applies them
        self.profiles: list[Profile] = []  # what the values' profile indexes name

    def profile_index(self, profile: Profile | None) -> int:
        """The index of ``profile`` in this map's table, added if new (255: unknown)."""
        if profile is None:
            return _UNKNOWN
        try:
            return self.profiles.index(profile)
        except ValueError:
            if len(self.profiles) >= _UNKNOWN:
                return _UNKNOWN
            self.profiles.append(profile)
            return len(self.profiles) - 1

    def __len__(self) -> int:
        self._merge()
        return len(self._numbers)

    def get(self, imdb_id: str) -> Title | None:
        number = canonical_number(imdb_id)
        value = None if number is None else self.value(number)
        return None if not value else self.title(value)

    def title(self, value: int) -> Title:
        """The :class:`Title` a packed value stands for."""
        index = (value & _PROFILE_MASK) >> _PROFILE_SHIFT
        return Title(
            "tv" if value & _TV else "movie",
            (value & (_DELETED - 1)) >> _ID_SHIFT,
            bool(value & _NARROW),
            self.profiles[index] if index < len(self.profiles) else None,
            bool(value & _DELETED),
        )

    def items(self) -> Iterator[tuple[int, int]]:
        """(IMDb number, packed value) of every title, in IMDb order."""
        self._merge()
        return zip(self._numbers, self._values, strict=True)

    def value(self, number: int) -> int | None:
        """The packed value of IMDb number ``number`` (see the module), or None."""
        value = self._recent.get(number)
        if value is None:
            numbers = self._numbers
            at = bisect_left(numbers, number)
            if at == len(numbers) or numbers[at] != number:
                return None
            value = self._values[at]
        return value

    def add(
        self,
        imdb_id: str,
        media_type: str,
        tmdb_id: object,
        narrow: bool = False,
        profile: Profile | None = None,
        deleted: bool = False,
    ) -> bool:
        """Record a title; False (nothing kept) for what the columns cannot hold."""
        packed = _pack(
            imdb_id, media_type, tmdb_id, narrow, self.profile_index(profile), deleted=deleted
        )
        if packed is None:
            return False
        self._set(*packed)
        return True

    def _set(self, number: int, value: int) -> None:
        self._recent[number] = value
        if len(self._recent) >= self.MERGE_AT:
            self._merge()

    def update(self, other: IdMap) -> None:
        """Take every title of ``other``; its entries win."""
        other._merge()
        self._merge()
        remap = [self.profile_index(p) for p in other.profiles]
        self._recent = {
            number: _reprofile(value, remap)
            for number, value in zip(other._numbers, other._values, strict=True)
        }
        self._merge()

    def _merge(self) -> None:
        if not self._recent:
            return
        recent = sorted(self._recent.items())
        self._recent = {}
        numbers, values = self._numbers, self._values
        merged_n, merged_v = _column(), _wide()
        i = 0
        for number, value in recent:
            at = bisect_left(numbers, number, i)
            merged_n.extend(numbers[i:at])
            merged_v.extend(values[i:at])
            merged_n.append(number)
            merged_v.append(value)
            i = at + 1 if at < len(numbers) and numbers[at] == number else at
        merged_n.extend(numbers[i:])
        merged_v.extend(values[i:])
        if not self._tombstones and _FORGOTTEN in merged_v:
            kept = [(n, v) for n, v in zip(merged_n, merged_v, strict=True) if v != _FORGOTTEN]
            merged_n, merged_v = _column(), _wide()
            merged_n.extend(n for n, _ in kept)
            merged_v.extend(v for _, v in kept)
        self._numbers, self._values = merged_n, merged_v

    def encode(self, merged: Iterable[str] = ()) -> bytes:
        self._merge()
        header = {
            "count": len(self._numbers),
            "merged": sorted(merged),
            "profiles": [p.as_json() for p in self.profiles],
        }
        numbers, values = _column(), _wide()
        numbers.extend(self._numbers)
        values.extend(self._values)
        if sys.byteorder == "big":  # pragma: no cover
            numbers.byteswap()
            values.byteswap()
        head = json.dumps(header, separators=(",", ":")).encode() + b"\n"
        return _MAGIC + head + numbers.tobytes() + values.tobytes()

    @classmethod
    def decode(cls, raw: bytes, where: str, *, tombstones: bool = False) -> tuple[IdMap, list[str]]:
        """The map in ``raw`` and the segment names its header says it merged."""
        try:
            version_1 = raw.startswith(_MAGIC_1)
            if not (version_1 or raw.startswith(_MAGIC) or raw.startswith(_MAGIC_2)):
                raise ValueError("not an id map")
            end = raw.index(b"\n", len(_MAGIC))
            header: Mapping[str, Any] = json.loads(raw[len(_MAGIC) : end])
            count = int(header["count"])
            merged = [str(name) for name in header.get("merged", [])]
            profiles = [Profile.from_json(p) for p in header.get("profiles", [])]
            body = raw[end + 1 :]
            numbers, values = _column(), _column() if version_1 else _wide()
            size = numbers.itemsize * count
            if len(body) != size + values.itemsize * count:
                raise ValueError("truncated")
            numbers.frombytes(body[:size])
            values.frombytes(body[size:])
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"{where}: damaged id map ({exc})") from None
        if sys.byteorder == "big":  # pragma: no cover
            numbers.byteswap()
            values.byteswap()
        if version_1:  # tmdb_id << 2 | flags, written before profiles were kept
            unknown = _UNKNOWN << _PROFILE_SHIFT
            wide = _wide()
            wide.extend(v and (v >> 2) << _ID_SHIFT | unknown | v & 3 for v in values)
            values = wide
        idmap = cls(tombstones=tombstones)
        idmap._numbers, idmap._values = numbers, values
        idmap.profiles = profiles
        return idmap, merged


def _reprofile(value: int, remap: list[int]) -> int:
    """``value`` with its profile index moved to another map's table."""
    if not value:
        return value
    index = (value & _PROFILE_MASK) >> _PROFILE_SHIFT
    new = remap[index] if index < len(remap) else _UNKNOWN
    return (value & ~_PROFILE_MASK) | new << _PROFILE_SHIFT


def _pack(
    imdb_id: str,
    media_type: str,
    tmdb_id: object,
    narrow: bool = False,
    profile: int = _UNKNOWN,
    *,
    deleted: bool = False,
) -> tuple[int, int] | None:
    """(IMDb number, packed value), or None for what the columns cannot hold."""
    number = canonical_number(imdb_id)
    if (
        number is None
        or number >= 2**32
        or media_type not in ("movie", "tv")
        or type(tmdb_id) is not int
        or not 0 < tmdb_id < _LIMIT
    ):
        return None
    tv = media_type == "tv"
    flags = (_NARROW if tv and narrow else 0) | (_TV if tv else 0)
    mark = _DELETED if deleted else 0
    return number, mark | tmdb_id << _ID_SHIFT | profile << _PROFILE_SHIFT | flags


def _imdb_elsewhere(record: Mapping[str, Any]) -> bool:
    """Whether TMDB's own data names another IMDb id than the one the record is keyed by
    (``tmdb_imdb_id``, or an appended ``external_ids``): mapping it would never confirm."""
    if "tmdb_imdb_id" in record:
        return True
    extra = record.get("external_ids")
    return isinstance(extra, Mapping) and extra.get("imdb_id") != record.get("imdb_id")


def _title_of(record: Mapping[str, Any]) -> tuple[str, str, object] | None:
    """(IMDb id, media type, TMDB id) of a record the map may keep, or None."""
    imdb_id, media_type = record.get("imdb_id"), record.get("media_type")
    if not isinstance(imdb_id, str) or not isinstance(media_type, str):
        return None
    if _imdb_elsewhere(record):
        return None
    return imdb_id, media_type, record.get("id")


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
        self._pending = (_column(), _wide())
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

    async def load(self, *, compact: bool) -> LakeIdMap:
        """Read the base and the segments it has not merged: all of them, folded into a new
        base once there are :data:`COMPACT_AT`, when ``compact``; else the newest
        :data:`READ_AT_MOST`.

        Segments are listed before the base is read: a compaction in between only merges
        (and deletes) segments into a base this read then sees, or at worst hides a few
        titles from this run, which costs it a ``/find`` each and nothing else.
        """
        store = self._store
        names = sorted(k.rsplit("/", 1)[-1] for k in await store.list(SEGMENT_PREFIX))
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

    async def _compact(self, etag: str | None, merged: set[str]) -> None:
        """Write everything known as the new base, then delete the segments it merged.

        The base names the segments it holds, so a segment whose deletion did not happen
        (a kill) is skipped by readers, and the next compaction deletes it."""
        store = self._store
        data = self._known.encode(merged)
        try:
            await store.write(
                BASE_KEY,
                data,
                _CONTENT_TYPE,
                if_none_match=etag is None,
                if_match=etag,
            )
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
        title = _title_of(record)
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
        packed = _pack(imdb_id, media_type, tmdb_id, narrow=narrow, profile=index, deleted=deleted)
        if packed is not None:
            self._note(*packed)

    def forget(self, imdb_id: str) -> None:
        """Drop ``imdb_id`` for later runs: TMDB no longer honours what the map said."""
        number = canonical_number(imdb_id)
        if number is not None:
            self._note(number, _FORGOTTEN)

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
        segment._recent = dict(zip(numbers, values, strict=True))  # the latest lesson wins
        name = f"{time.time_ns():020d}-{self._owner}-{self._written:04d}.bin"
        await self._store.write(SEGMENT_PREFIX + name, segment.encode(), _CONTENT_TYPE)
        self._written += 1
        self._pending = (_column(), _wide())
        self._pending_profiles = IdMap(tombstones=True)


_MANIFEST: Final = re.compile(rf"^{RAW_FOLDER}/\d{{4}}/\d{{2}}/\d{{2}}/_manifests/[^/]+\.json$")
_ANSWERS: Final = frozenset({"record", "deleted", "not_found"})
"""Outcomes that are TMDB's answer about a title; a failure or an invalid id says nothing."""


async def _manifest_bodies(store: Store, keys: Iterable[str]) -> list[Mapping[str, Any]]:
    found = []
    for key in sorted(keys):
        try:
            body = json.loads(await store.get(key) or b"null")
        except ValueError:
            continue
        if isinstance(body, Mapping) and isinstance(body.get("settings"), Mapping):
            found.append(body)
    return found


def _profiles_by_shape(manifests: Iterable[Mapping[str, Any]]) -> dict[str, Profile]:
    """The shape a ledger commit names → the profile that makes it: the settings of the run
    that wrote it, read from its manifest (written before its first commit, so a killed run
    has one too). A shape is the digest of its profile, so any manifest of it will do."""
    found: dict[str, Profile] = {}
    for body in manifests:
        profile = Profile.from_manifest(body["settings"])
        if profile is not None:
            found.setdefault(profile.shape, profile)
    return found


def _profiles_by_file(folder: str, manifests: Iterable[Mapping[str, Any]]) -> dict[str, Profile]:
    """Data file key → the profile of the finished run whose manifest lists it: for a folder
    written before the ledger, whose files name no shape."""
    found: dict[str, Profile] = {}
    for body in manifests:
        profile = Profile.from_manifest(body["settings"])
        files = body.get("files")
        if profile is not None and isinstance(files, list):
            found.update({f"{folder}/{str(url).rsplit('/', 1)[-1]}": profile for url in files})
    return found


def _narrow(profile: Profile | None) -> bool:
    return profile is None or profile.kind == "tv"


async def lake_titles(
    store: Store, wanted: Callable[[str], bool], *, unledgered: bool = False
) -> AsyncIterator[tuple[str, Title]]:
    """What the lake knows of each title ``wanted`` accepts: the one rule of the map.

    An id's latest answer from TMDB over the date folders' ledgers, oldest folder first: a
    record (its TMDB id and type, from its data file), ``deleted`` (from its sidecar entry,
    which names them: the title stays, marked deleted) or ``not_found`` (no title). A
    failure or an invalid id is no answer: the answer before it stands. The profile is that
    of the run whose commit wrote it: the manifest of the same folder whose settings make
    the commit's shape. Titles TMDB files under another IMDb id are left out (see
    :func:`_imdb_elsewhere`). Files are read only for the ids ``wanted``, each file once.

    ``unledgered``: first the folders written before the ledger (data files only, every
    record, the newer file winning); a ledgered folder's answer wins over them.
    :func:`rebuild` reads them, a refresh's :func:`repair` does not (it would read them all
    at every refresh).
    """
    listed = await store.list(f"{RAW_FOLDER}/")
    ledgered = set(await date_folders(store, RAW_FOLDER))
    manifests_of: dict[str, list[str]] = {}
    for key in listed:
        if _MANIFEST.match(key):
            manifests_of.setdefault(key.rsplit("/_manifests/", 1)[0], []).append(key)
    older: dict[str, Title] = {}  # from unledgered folders
    if unledgered:
        for key in sorted(k for k in listed if data_file_date(k) is not None):
            folder = key.rsplit("/", 1)[0]
            if folder in ledgered:
                continue
            bodies = await _manifest_bodies(store, manifests_of.get(folder, []))
            profile = _profiles_by_file(folder, bodies).get(key)
            for record in await _read_items(store, key):
                found = _title_of(record)
                if found is not None and wanted(found[0]):
                    title = _checked(*found, profile, deleted=False)
                    if title is not None:
                        older[found[0]] = title
    latest: dict[str, tuple[str, Home]] = {}
    async for folder, homes in latest_homes(store, RAW_FOLDER):
        for imdb_id, home in homes.items():
            if home.outcome in _ANSWERS and wanted(imdb_id):
                latest[imdb_id] = (folder, home)
    for imdb_id, title in older.items():
        if imdb_id not in latest:
            yield imdb_id, title
    older.clear()
    by_file: dict[tuple[str, str], dict[str, str]] = {}  # (folder, file) -> id -> shape
    for imdb_id, (folder, home) in latest.items():
        if home.outcome != "not_found":
            by_file.setdefault((folder, home.file), {})[imdb_id] = home.shape
    latest.clear()
    shapes: dict[str, dict[str, Profile]] = {}
    for (folder, name), ids in sorted(by_file.items()):
        if folder not in shapes:
            bodies = await _manifest_bodies(store, manifests_of.get(folder, []))
            shapes = {folder: _profiles_by_shape(bodies)}  # folders come in order
        for item in await _read_items(store, f"{folder}/{name}"):
            shape = ids.pop(str(item.get("imdb_id")), None)
            if shape is None:
                continue
            profile = shapes[folder].get(shape)
            if item.get("outcome") == "deleted":  # a sidecar entry names what TMDB removed
                imdb_id = str(item["imdb_id"])
                title = _checked(
                    imdb_id, item.get("media_type"), item.get("tmdb_id"), profile, deleted=True
                )
            elif "outcome" not in item and (found := _title_of(item)) is not None:
                imdb_id = found[0]
                title = _checked(*found, profile, deleted=False)
            else:
                continue
            if title is not None:
                yield imdb_id, title


def _checked(
    imdb_id: str, media_type: object, tmdb_id: object, profile: Profile | None, *, deleted: bool
) -> Title | None:
    """The :class:`Title` of what a file says, or None for what the map cannot hold."""
    if _pack(imdb_id, str(media_type), tmdb_id) is None:
        return None
    narrow = profile is None or profile.kind == "tv"
    return Title(media_type, tmdb_id, narrow, profile, deleted)  # type: ignore[arg-type]


async def _read_items(store: Store, key: str) -> list[dict[str, Any]]:
    """The records (or sidecar entries) of a file; none when it is gone or unreadable."""
    raw = await store.get(key)
    if raw is None:
        return []  # emptied by a commit since the listing: its ids live elsewhere now
    try:
        return [item for item in decode_file(key, raw) if isinstance(item, dict)]
    except ValueError as exc:
        log.warning("%s: skipped, not a data file (%s)", store.url(key), exc)
        return []


async def repair(titles: LakeIdMap, store: Store) -> int:
    """Teach ``titles`` every title of the lake (:func:`lake_titles`) it does not know;
    return how many it learned.

    The map is a cache: a run killed before its last segment, a segment that could not be
    written, a damaged base, all leave titles of the lake out of it. A refresh keeps only
    the titles the map knows, so it repairs the map first, by the rule :func:`rebuild`
    follows too. Titles TMDB files under another IMDb id are never learned, so their files
    are read again each time; they are few."""
    learned = 0
    async for imdb_id, title in lake_titles(store, lambda i: titles.get(i) is None):
        learned += titles.adopt(imdb_id, title)
    if learned:
        log.warning("id map: %d titles of the lake were missing from it, learned again", learned)
    return learned


@dataclass(frozen=True, slots=True)
class Rebuilt:
    """What :func:`rebuild` read and kept."""

    files: int
    titles: int


async def rebuild(store: Store) -> Rebuilt:
    """Learn the map again from the lake (:func:`lake_titles`, the rule :func:`repair`
    follows too, plus the folders written before the ledger) and write it as the base: for
    a lake ingested before the map existed, or one whose map was lost. Titles TMDB removed
    stay, marked deleted, so a refresh still watches them.

    Raises :class:`~tmdb_async.errors.InputError` when there is no data file at all (a
    mistyped destination must not replace a good map with an empty one)."""
    names = sorted(k.rsplit("/", 1)[-1] for k in await store.list(SEGMENT_PREFIX))
    found = await store.read(BASE_KEY)
    keys = [k for k in await store.list(f"{RAW_FOLDER}/") if data_file_date(k) is not None]
    if not keys:
        raise InputError(
            f"{store.url(RAW_FOLDER)}/: no data files to learn the id map from; is the "
            "destination right?"
        )
    learned = IdMap()
    async for imdb_id, title in lake_titles(store, lambda _: True, unledgered=True):
        learned.add(
            imdb_id,
            title.media_type,
            title.tmdb_id,
            narrow=title.narrow,
            profile=title.profile,
            deleted=title.deleted,
        )
    try:
        await store.write(
            BASE_KEY,
            learned.encode(names),
            _CONTENT_TYPE,
            if_none_match=found is None,
            if_match=None if found is None else found[1],
        )
    except Conflict:
        raise StorageError(
            f"{store.url(BASE_KEY)}: another run rewrote the id map meanwhile; rebuild again"
        ) from None
    for name in names:
        await store.delete(SEGMENT_PREFIX + name)
    return Rebuilt(len(keys), len(learned))
