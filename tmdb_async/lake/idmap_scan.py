"""The id map learnt again from the lake itself: :func:`lake_titles`, the one rule of what
the lake knows of a title, and the two ways it is used, :func:`repair` (each refresh, for
the titles the map lacks) and :func:`rebuild` (the ``idmap`` command).

What the lake knows of a title is its latest answer from TMDB in the date folders' ledgers
(a record, ``deleted`` or ``not_found``; a failure is no answer), with the profile of the
run that wrote it (the manifest whose settings make the commit's shape: every run writes its
manifest before its first commit, killed runs too). A title TMDB removed stays, marked
``deleted``, so a refresh still watches its TMDB id.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from tmdb_async.errors import Conflict, DamagedFile, InputError, StorageError
from tmdb_async.lake import idmap_format as fmt
from tmdb_async.lake.codec import decode_file
from tmdb_async.lake.homes import Home
from tmdb_async.lake.idmap_columns import IdMap, Title, record_title
from tmdb_async.lake.layout import RAW_FOLDER, data_file_date
from tmdb_async.lake.ledger import date_folders, latest_homes
from tmdb_async.lake.manifest import read_manifests
from tmdb_async.lake.profile import Profile
from tmdb_async.lake.storage import Store

log = logging.getLogger(__name__)


class Adopter(Protocol):
    """What :func:`repair` teaches: a run's :class:`~tmdb_async.lake.idmap.LakeIdMap`."""

    def get(self, imdb_id: str) -> Title | None: ...

    def adopt(self, imdb_id: str, title: Title) -> bool: ...


_MANIFEST: Final = re.compile(rf"^{RAW_FOLDER}/\d{{4}}/\d{{2}}/\d{{2}}/_manifests/[^/]+\.json$")
_ANSWERS: Final = frozenset({"record", "deleted", "not_found"})
"""Outcomes that are TMDB's answer about a title; a failure or an invalid id says nothing."""


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


@dataclass(frozen=True, slots=True)
class Damaged:
    """A data file :func:`lake_titles` could not read: its titles are left out."""

    url: str
    reason: str
    titles: int | None  # what the ledger places there (None: a folder without a ledger)


async def lake_titles(
    store: Store,
    wanted: Callable[[str, bool], bool],
    *,
    unledgered: bool = False,
    damaged: list[Damaged] | None = None,
) -> AsyncIterator[tuple[str, Title]]:
    """What the lake knows of each title ``wanted`` accepts: the one rule of the map.

    An id's latest answer from TMDB over the date folders' ledgers, oldest folder first: a
    record (its TMDB id and type, from its data file), ``deleted`` (from its sidecar entry,
    which names them: the title stays, marked deleted) or ``not_found`` (no title). A
    failure or an invalid id is no answer: the answer before it stands. The profile is that
    of the run whose commit wrote it: the manifest of the same folder whose settings make
    the commit's shape. Titles TMDB files under another IMDb id are left out (see
    :func:`~tmdb_async.lake.idmap_columns.record_title`). Files are read only for the ids
    ``wanted`` (asked with the id and whether its latest answer is ``deleted``), each file
    once.

    ``unledgered``: first the folders written before the ledger (data files only, every
    record, the newer file winning); a ledgered folder's answer wins over them.
    :func:`rebuild` reads them, a refresh's :func:`repair` does not (it would read them all
    at every refresh).

    A file that cannot be read is left out: added to ``damaged`` when given (the caller
    reports it), logged otherwise.
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
            bodies = await read_manifests(store, manifests_of.get(folder, []))
            profile = _profiles_by_file(folder, bodies).get(key)
            for record in await _read_items(store, key, damaged, None):
                found = record_title(record)
                if found is not None and wanted(found[0], False):
                    title = _checked(*found, profile, deleted=False)
                    if title is not None:
                        older[found[0]] = title
    latest: dict[str, tuple[str, Home]] = {}
    async for folder, homes in latest_homes(store, RAW_FOLDER):
        for imdb_id, home in homes.items():
            if home.outcome not in _ANSWERS:
                continue
            if wanted(imdb_id, home.outcome == "deleted"):
                latest[imdb_id] = (folder, home)
            else:  # a newer answer than any kept so far, and not wanted
                latest.pop(imdb_id, None)
                older.pop(imdb_id, None)
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
            bodies = await read_manifests(store, manifests_of.get(folder, []))
            shapes = {folder: _profiles_by_shape(bodies)}  # folders come in order
        for item in await _read_items(store, f"{folder}/{name}", damaged, len(ids)):
            shape = ids.pop(str(item.get("imdb_id")), None)
            if shape is None:
                continue
            profile = shapes[folder].get(shape)
            if item.get("outcome") == "deleted":  # a sidecar entry names what TMDB removed
                imdb_id = str(item["imdb_id"])
                title = _checked(
                    imdb_id, item.get("media_type"), item.get("tmdb_id"), profile, deleted=True
                )
            elif "outcome" not in item and (found := record_title(item)) is not None:
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
    if fmt.pack(imdb_id, str(media_type), tmdb_id) is None:
        return None
    narrow = profile is None or profile.kind == "tv"
    return Title(media_type, tmdb_id, narrow, profile, deleted)  # type: ignore[arg-type]


async def _read_items(
    store: Store, key: str, damaged: list[Damaged] | None, titles: int | None
) -> list[dict[str, Any]]:
    """The records (or sidecar entries) of a file; none when it is gone or unreadable (an
    unreadable one is added to ``damaged``, or logged when there is no list)."""
    raw = await store.get(key)
    if raw is None:
        return []  # emptied by a commit since the listing: its ids live elsewhere now
    try:
        return [item for item in decode_file(key, raw) if isinstance(item, dict)]
    except ValueError as exc:
        reason = str(exc).splitlines()[0][:80]
        if damaged is None:
            log.warning(
                "%s: damaged (%s), its titles left out of the id map", store.url(key), reason
            )
        else:
            damaged.append(Damaged(store.url(key), reason, titles))
        return []


async def repair(titles: Adopter, store: Store) -> int:
    """Teach ``titles`` every title of the lake (:func:`lake_titles`) it does not know, or
    knows as deleted when the lake's latest answer is not (or the other way round); return
    how many it learned.

    The map is a cache: a run killed before its last segment, a segment that could not be
    written, a damaged base, all leave titles of the lake out of it. A refresh keeps only
    the titles the map knows, so it repairs the map first, by the rule :func:`rebuild`
    follows too. Titles TMDB files under another IMDb id are never learned, so their files
    are read again each time; they are few.

    A title the map holds with the other mark is a commit whose lesson was lost (a refresh
    killed after committing ``deleted`` entries, before its segment): kept as it was, the
    map would send the next refresh to ``/find`` and a new ``deleted`` entry for it, or
    take a restored title for a still deleted one. Only the ledgers are read for that."""

    def wanted(imdb_id: str, deleted: bool) -> bool:
        known = titles.get(imdb_id)
        return known is None or known.deleted != deleted

    learned = 0
    async for imdb_id, title in lake_titles(store, wanted):
        learned += titles.adopt(imdb_id, title)
    if learned:
        log.warning(
            "id map: %d titles of the lake were missing from it or marked otherwise, learned again",
            learned,
        )
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
    mistyped destination must not replace a good map with an empty one), and
    :class:`~tmdb_async.errors.DamagedFile` after writing the map when a data file could not
    be read: the map then holds every other title, and the line names the file."""
    names = await fmt.segment_names(store)
    found = await store.read(fmt.BASE_KEY)
    keys = [k for k in await store.list(f"{RAW_FOLDER}/") if data_file_date(k) is not None]
    if not keys:
        raise InputError(
            f"{store.url(RAW_FOLDER)}/: no data files to learn the id map from; is the "
            "destination right?"
        )
    learned = IdMap()
    damaged: list[Damaged] = []
    async for imdb_id, title in lake_titles(
        store, lambda _, __: True, unledgered=True, damaged=damaged
    ):
        learned.add(
            imdb_id,
            title.media_type,
            title.tmdb_id,
            narrow=title.narrow,
            profile=title.profile,
            deleted=title.deleted,
        )
    try:
        await fmt.write_base(store, learned.encode(names), None if found is None else found[1])
    except Conflict:
        raise StorageError(
            f"{store.url(fmt.BASE_KEY)}: another run rewrote the id map meanwhile; rebuild again"
        ) from None
    for name in names:
        await store.delete(fmt.SEGMENT_PREFIX + name)
    if damaged:
        first = damaged[0]
        held = "the" if first.titles is None else f"the {first.titles}"
        why = "" if first.titles is None else ": the folder's ledger places titles there"
        more = "".join(f"; also damaged: {d.url}" for d in damaged[1:])
        raise DamagedFile(
            f"{first.url}: damaged ({first.reason}); the id map was rebuilt without {held} "
            "titles it holds, so a refresh does not watch them. Repair it (one JSON object "
            "per record) or restore its last version, then run idmap again; do not delete "
            f"it{why}{more}"
        )
    return Rebuilt(len(keys), len(learned))
