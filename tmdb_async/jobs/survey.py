"""What a run would do to its date folder, told before it does it: each id of a slice sorted
by the run's own rules (:func:`~tmdb_async.jobs.chunks.keeps`,
:func:`~tmdb_async.tmdb.client.asks_by_map`) into an :class:`Estimate` (``--dry-run``, and
the guard's figures); the guard's one line, when the folder holds answers of other record
settings or files of another format; and, with ``--replace``, the rewrite of those files
into the run's format, through the folder's ledger and without a request.

The ledger keeps a digest of each id's record settings (its shape); the folder's manifests
say what each digest stands for (:func:`profiles_of`), so the guard can name the setting
that differs.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any

from tmdb_async.jobs.chunks import keeps, replaces_other
from tmdb_async.jobs.source import IdEntry
from tmdb_async.jobs.summary import Estimate
from tmdb_async.lake.homes import Home
from tmdb_async.lake.idmap import LakeIdMap
from tmdb_async.lake.ledger import ANSWERS, SIDECAR_FOLDER, Ledger
from tmdb_async.lake.manifest import MANIFEST_FOLDER, read_manifests
from tmdb_async.lake.profile import Profile
from tmdb_async.lake.storage import Store
from tmdb_async.settings import FORMATS, Settings
from tmdb_async.tmdb.client import asks_by_map

__all__ = ["foreign", "other_formats", "profiles_of", "refusal", "rewrite", "survey"]

log = logging.getLogger(__name__)

_REWRITE_FILES = 20  # files of another format rewritten per ledger commit


async def survey(
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


async def profiles_of(store: Store, folder: str) -> dict[str, Profile]:
    """shape -> :class:`Profile` of every run whose manifest the folder holds, in either
    format (what a rewrite made of its records): the ledger keeps a digest per id, the
    manifests say what it stands for."""
    found: dict[str, Profile] = {}
    keys = await store.list(f"{folder}/{MANIFEST_FOLDER}/")
    for body in await read_manifests(store, keys):
        profile = Profile.from_manifest(body["settings"])
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


def other_formats(ledger: Ledger, fmt: str) -> dict[str, int]:
    """format -> how many of the folder's data files are in it, for formats other than ``fmt``."""
    files: dict[str, set[str]] = {}
    for home, _ in _distinct_homes(ledger).items():
        if home.outcome == "record" and _format_of(home.file) != fmt:
            files.setdefault(_format_of(home.file), set()).add(home.file)
    return {name: len(names) for name, names in sorted(files.items())}


def refusal(found: Estimate, settings: Settings) -> str | None:
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


async def rewrite(ledger: Ledger, profile: Profile, profiles: dict[str, Profile]) -> int:
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


def foreign(ledger: Ledger, shape: str) -> bool:
    """Whether the folder holds answers a run of ``shape`` would not keep: another record
    setting's, or another format's (the format is part of the shape)."""
    return any(
        home.outcome in ANSWERS and home.shape != shape for _, home in ledger.homes().items()
    )
