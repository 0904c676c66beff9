"""What the lake holds, for an operator (``tmdb-ingest status``, the ``status`` event).

Read from the bookkeeping only, never from the data files, so it answers in seconds on a lake
of any size, on S3 too: one listing of ``Raw/TMDB/JSON/`` (date folders, data files and
their format, manifests), each date folder's ledger (every id's home and outcome), its runs'
manifests, the run pins (runs in progress or interrupted), the refresh state and the id map.
``failed`` adds the failed ids with their reasons, read from the sidecar files the ledger
says hold them (and no other).

It writes nothing and takes no lock (:meth:`~tmdb_async.lake.ledger.Ledger.peek`): looking
at a lake while a run writes it is safe, and what it shows is each folder as of its read.

The result is a tree of frozen dataclasses (:class:`LakeStatus` at the top); ``as_dict()``
is the ``--json`` line and the event's result, with the keys documented on each class.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal, TypeVar

from tmdb_async.errors import StorageError
from tmdb_async.jobs.refresh.state import STATE_KEY, read_state
from tmdb_async.lake import idmap_format, runstate
from tmdb_async.lake.codec import decode_file
from tmdb_async.lake.idmap import BASE_KEY, SEGMENT_PREFIX, IdMap
from tmdb_async.lake.layout import RAW_FOLDER, STATE_FOLDER, date_folder
from tmdb_async.lake.ledger import LEDGER_FOLDER, SIDECAR_FOLDER, Ledger
from tmdb_async.lake.manifest import MANIFEST_FOLDER
from tmdb_async.lake.storage import Store

T = TypeVar("T")

OUTCOMES: Final = ("record", "not_found", "invalid", "failed", "deleted")
"""Every outcome an id can have in a folder, in the order they are shown."""
CONCURRENCY: Final = 16
"""Reads at once: enough to hide S3's latency, few enough for a small connection pool."""


@dataclass(frozen=True, slots=True)
class Outcomes:
    """Ids by their outcome (in a folder: each id once, its home's outcome)."""

    record: int = 0
    not_found: int = 0
    invalid: int = 0
    failed: int = 0
    deleted: int = 0

    @property
    def total(self) -> int:
        return self.record + self.not_found + self.invalid + self.failed + self.deleted

    @classmethod
    def of(cls, counts: Mapping[str, int]) -> Outcomes:
        return cls(**{name: int(counts.get(name, 0)) for name in OUTCOMES})

    def __add__(self, other: Outcomes) -> Outcomes:
        return Outcomes(*(getattr(self, n) + getattr(other, n) for n in OUTCOMES))

    def as_dict(self) -> dict[str, int]:
        return {**{name: getattr(self, name) for name in OUTCOMES}, "total": self.total}


@dataclass(frozen=True, slots=True)
class FormatStatus:
    """The data files of one format in a folder: ``format`` (``json`` or ``jsonl``),
    ``files`` and the ``records`` the ledger places in them."""

    format: str
    files: int
    records: int


@dataclass(frozen=True, slots=True)
class RunStatus:
    """One run (or one part of a run) that wrote the folder, from its manifest: ``run`` id,
    ``manifest`` (its location), ``source``, ``outcome`` (``running`` until it ends, then
    ``ok``, ``failed_ids``, ``incomplete`` or ``error``; a run killed outright stays
    ``running``: see the lake's ``in_progress``), ``started_at``/``finished_at`` (UTC),
    ``continued`` (it continued an interrupted run), ``settings`` (the public ones: never a
    secret), ``counts`` (its summary's counts) and ``error``."""

    run: str
    manifest: str
    source: str
    outcome: str
    started_at: str | None
    finished_at: str | None
    continued: bool
    settings: Mapping[str, Any]
    counts: Mapping[str, int]
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "settings": dict(self.settings), "counts": dict(self.counts)}


@dataclass(frozen=True, slots=True)
class FailedId:
    """A failed id of a folder: ``imdb_id``, ``reason`` (the last error, as the run wrote
    it), ``attempts`` and the sidecar ``file`` holding it."""

    imdb_id: str
    reason: str
    attempts: int | None
    file: str


@dataclass(frozen=True, slots=True)
class FolderStatus:
    """One date folder: ``date``, ``path``, ``ids`` by outcome (each id of the folder once),
    ``formats`` of its data files, ``sidecar_files``, ``stray_files`` (top-level data files
    the ledger does not know: not written by a run), the ledger's ``version`` (commits so
    far) and ``pending`` (a commit its writer left half applied: the next writer finishes
    it), the ``runs`` that wrote it, oldest first, and (asked for) its ``failed`` ids."""

    date: str
    path: str
    ids: Outcomes
    formats: tuple[FormatStatus, ...]
    sidecar_files: int
    stray_files: tuple[str, ...]
    version: int
    pending: int | None
    runs: tuple[RunStatus, ...]
    failed: tuple[FailedId, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "date": self.date,
            "path": self.path,
            "ids": self.ids.as_dict(),
            "formats": [asdict(f) for f in self.formats],
            "sidecar_files": self.sidecar_files,
            "stray_files": list(self.stray_files),
            "version": self.version,
            "pending": self.pending,
            "runs": [run.as_dict() for run in self.runs],
            "failed": None if self.failed is None else [asdict(f) for f in self.failed],
        }


PinState = Literal["running", "interrupted"]


@dataclass(frozen=True, slots=True)
class PinStatus:
    """A run that owes part of its job (:mod:`tmdb_async.lake.runstate`): ``run``, ``job``,
    ``date`` (the folder it writes), ``source``, ``start``/``end`` (the positions it still
    owes; ``end`` null: to the end of the file), ``state`` and ``why``: ``running`` while its
    pin beats (rewritten within two heartbeats), else ``interrupted``: it stopped early (a
    deadline, an error, Ctrl-C), its process died on this machine, or its pin went silent
    (killed elsewhere). ``saved_at``: when the pin was last written (UTC, by the writer's
    clock; null for a pin of an older version). The same job run again continues it."""

    run: str
    job: str
    date: str
    source: str
    start: int
    end: int | None
    state: PinState
    why: str
    saved_at: str | None


@dataclass(frozen=True, slots=True)
class RefreshStatus:
    """The refresh state: ``refreshed_through`` (every day up to it has been read), the
    ``carried`` failures the next refresh asks again, or ``error`` when it is damaged."""

    refreshed_through: str | None
    carried: tuple[str, ...]
    error: str | None = None


@dataclass(frozen=True, slots=True)
class IdMapStatus:
    """The id map (:mod:`tmdb_async.lake.idmap`): ``titles`` it knows (base and segments
    together), of which ``deleted`` TMDB removed; the compacted ``base_titles``; the
    ``segments`` the base has not merged yet; ``damaged`` files, skipped as a run does."""

    titles: int
    deleted: int
    base_titles: int
    segments: int
    damaged: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LakeStatus:
    """What a lake holds: ``dest``, ``read_at`` (UTC), ``folders`` (oldest first),
    ``totals`` (their ``ids`` summed: an id in two folders counts twice), ``in_progress``
    (run pins), ``refresh`` (null before the first refresh) and ``idmap``."""

    dest: str
    read_at: str
    folders: tuple[FolderStatus, ...]
    in_progress: tuple[PinStatus, ...]
    refresh: RefreshStatus | None
    idmap: IdMapStatus

    @property
    def totals(self) -> Outcomes:
        return sum((f.ids for f in self.folders), Outcomes())

    def as_dict(self) -> dict[str, Any]:
        return {
            "dest": self.dest,
            "read_at": self.read_at,
            "totals": self.totals.as_dict(),
            "folders": [folder.as_dict() for folder in self.folders],
            "in_progress": [asdict(pin) for pin in self.in_progress],
            "refresh": None if self.refresh is None else asdict(self.refresh),
            "idmap": asdict(self.idmap),
        }


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class _Reader:
    """The store, with at most :data:`CONCURRENCY` reads at once."""

    def __init__(self, store: Store, concurrency: int) -> None:
        self.store = store
        self._slots = asyncio.Semaphore(concurrency)

    async def bounded(self, work: Awaitable[T]) -> T:
        async with self._slots:
            return await work

    async def get(self, key: str) -> bytes | None:
        return await self.bounded(self.store.get(key))


async def lake_status(
    store: Store,
    *,
    date: dt.date | None = None,
    failed: bool = False,
    concurrency: int = CONCURRENCY,
    clock: Callable[[], float] = time.time,
) -> LakeStatus:
    """What the lake in ``store`` holds (``date``: that folder alone); ``failed``: with each
    folder's failed ids and why. A :class:`~tmdb_async.errors.StorageError` naming the place
    when there is no lake there (or no such date folder)."""
    reader = _Reader(store, concurrency)
    raw_keys, state_keys = await asyncio.gather(
        store.list(f"{RAW_FOLDER}/"), store.list(f"{STATE_FOLDER}/")
    )
    if not raw_keys and not state_keys:
        raise StorageError(
            f"{store.url('')}: no lake here (nothing under {RAW_FOLDER}/ or {STATE_FOLDER}/)"
        )
    by_folder = _by_folder(raw_keys)
    if date is not None:
        wanted = date_folder(date)
        if wanted not in by_folder:
            raise StorageError(f"{store.url(wanted)}: no date folder with a ledger")
        by_folder = {wanted: by_folder[wanted]}
    folders, pins, refresh, idmap = await asyncio.gather(
        asyncio.gather(
            *(_folder(reader, folder, keys, failed) for folder, keys in by_folder.items())
        ),
        _pins(store, clock()),
        _refresh(store),
        _idmap(reader),
    )
    return LakeStatus(
        dest=store.url("").rstrip("/"),
        read_at=_iso(clock()),
        folders=tuple(folders),
        in_progress=pins,
        refresh=refresh,
        idmap=idmap,
    )


def _by_folder(keys: Iterable[str]) -> dict[str, list[str]]:
    """Date folder → its keys (relative to it), for the folders that have a ledger."""
    found: dict[str, list[str]] = {}
    for key in keys:
        parts = key[len(RAW_FOLDER) + 1 :].split("/", 3)
        if len(parts) < 4 or not all(p.isdigit() for p in parts[:3]):
            continue
        found.setdefault(f"{RAW_FOLDER}/{'/'.join(parts[:3])}", []).append(parts[3])
    return {
        folder: names
        for folder, names in sorted(found.items())
        if any(name.startswith(f"{LEDGER_FOLDER}/") for name in names)
    }


async def _folder(reader: _Reader, folder: str, names: list[str], failed: bool) -> FolderStatus:
    store = reader.store
    manifest_keys = [
        f"{folder}/{n}"
        for n in names
        if n.startswith(f"{MANIFEST_FOLDER}/") and n.endswith(".json") and n.count("/") == 1
    ]
    ledger, manifests = await asyncio.gather(
        reader.bounded(Ledger(store, folder).peek()),
        asyncio.gather(*(_run(reader, key) for key in manifest_keys)),
    )
    outcomes: Counter[str] = Counter()
    per_file: Counter[str] = Counter()
    failed_files: set[str] = set()
    for _, home in ledger.homes().items():
        outcomes[home.outcome] += 1
        if home.outcome == "record":
            per_file[home.file] += 1
        elif home.outcome == "failed":
            failed_files.add(home.file)
    data = [n for n in names if "/" not in n and n.endswith((".json", ".jsonl"))]
    formats: dict[str, list[int]] = {}
    for name in data:
        entry = formats.setdefault(name.rsplit(".", 1)[1], [0, 0])
        entry[0] += 1
        entry[1] += per_file.get(name, 0)
    failures = None
    if failed:
        failures = await _failures(reader, folder, sorted(failed_files), ledger)
    runs = sorted((r for r in manifests if r is not None), key=lambda r: r.started_at or "")
    return FolderStatus(
        date=folder[len(RAW_FOLDER) + 1 :].replace("/", "-"),
        path=store.url(folder),
        ids=Outcomes.of(outcomes),
        formats=tuple(FormatStatus(f, n, r) for f, (n, r) in sorted(formats.items())),
        sidecar_files=sum(1 for n in names if n.startswith(f"{SIDECAR_FOLDER}/")),
        stray_files=tuple(n for n in data if n not in per_file),
        version=ledger.version,
        pending=ledger.pending,
        runs=tuple(runs),
        failed=failures,
    )


async def _run(reader: _Reader, key: str) -> RunStatus | None:
    """A manifest as a :class:`RunStatus`; one that is gone or damaged is left out."""
    raw = await reader.get(key)
    try:
        body = json.loads(raw) if raw is not None else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return None
    counts, settings = body.get("counts"), body.get("settings")
    counts = counts if isinstance(counts, dict) else {}
    settings = settings if isinstance(settings, dict) else {}
    return RunStatus(
        run=str(body.get("run", "")),
        manifest=reader.store.url(key),
        source=str(body.get("source", "")),
        outcome=str(body.get("outcome", "")),
        started_at=body.get("started_at"),
        finished_at=body.get("finished_at"),
        continued=bool(body.get("continued", False)),
        settings=settings,
        counts={str(k): v for k, v in counts.items() if isinstance(v, int)},
        error=body.get("error"),
    )


async def _failures(
    reader: _Reader, folder: str, files: list[str], ledger: Ledger
) -> tuple[FailedId, ...]:
    """The folder's failed ids with their reasons: the entries of the sidecar files the
    ledger names as their home (an entry a later commit superseded is not one)."""
    bodies = await asyncio.gather(*(reader.get(f"{folder}/{name}") for name in files))
    found = []
    for name, raw in zip(files, bodies, strict=True):
        if raw is None:
            continue  # a half-applied commit's file, not written yet
        try:
            entries = decode_file(name, raw)
        except ValueError:
            raise StorageError(f"{reader.store.url(f'{folder}/{name}')}: damaged") from None
        for entry in entries:
            imdb_id = str(entry.get("imdb_id", ""))
            home = ledger.home(imdb_id)
            if entry.get("outcome") == "failed" and home is not None and home.file == name:
                attempts = entry.get("attempts")
                found.append(
                    FailedId(
                        imdb_id,
                        str(entry.get("reason", "")),
                        attempts if isinstance(attempts, int) else None,
                        name,
                    )
                )
    return tuple(sorted(found, key=lambda f: f.imdb_id))


async def _pins(store: Store, now: float) -> tuple[PinStatus, ...]:
    found = []
    for saved in await runstate.every_pin(store):
        pin = saved.pin
        state: PinState = "interrupted"
        silent = None if saved.saved_at is None else now - saved.saved_at
        if pin.state == "interrupted":
            why = "stopped before the end of its slice"
        elif not pin.live:
            why = "its process died on this machine"
        elif silent is not None and silent > 2 * runstate.HEARTBEAT:
            why = f"its pin has been silent for {silent:.0f} s"
        else:
            state, why = "running", "its pin beats"
        found.append(
            PinStatus(
                run=pin.run,
                job=saved.job,
                date=pin.date,
                source=pin.source,
                start=pin.start,
                end=pin.end,
                state=state,
                why=why,
                saved_at=None if saved.saved_at is None else _iso(saved.saved_at),
            )
        )
    return tuple(sorted(found, key=lambda p: (p.date, p.run)))


async def _refresh(store: Store) -> RefreshStatus | None:
    if await store.read(STATE_KEY) is None:
        return None
    try:
        # dt.date.max: show the state as it is; refusing a future day is the refresh's job.
        state = await read_state(store, dt.date.max)
    except StorageError as exc:
        return RefreshStatus(None, (), str(exc))
    through = None if state.through is None else state.through.isoformat()
    return RefreshStatus(through, state.failed)


async def _idmap(reader: _Reader) -> IdMapStatus:
    """Base and every segment it has not merged, folded as a compacting run would (without
    writing the new base)."""
    store = reader.store
    names = await idmap_format.segment_names(store)
    raw_base = await reader.get(BASE_KEY)
    known, merged, damaged = IdMap(), set[str](), []
    if raw_base is not None:
        try:
            known, listed = IdMap.decode(raw_base, store.url(BASE_KEY))
            merged = set(listed)
        except StorageError as exc:
            damaged.append(str(exc))
    base_titles = len(known)
    fresh = [name for name in names if name not in merged]
    segments = await asyncio.gather(*(reader.get(SEGMENT_PREFIX + name) for name in fresh))
    for name, raw in zip(fresh, segments, strict=True):
        if raw is None:
            continue  # compacted since the listing
        try:
            segment, _ = IdMap.decode(raw, store.url(SEGMENT_PREFIX + name), tombstones=True)
        except StorageError as exc:
            damaged.append(str(exc))
            continue
        known.update(segment)
    deleted = sum(1 for _, value in known.items() if idmap_format.unpack(value)[4])
    return IdMapStatus(len(known), deleted, base_titles, len(fresh), tuple(damaged))


def status_lines(found: LakeStatus) -> list[str]:
    """``status``'s human text: a table of the date folders, then each folder's runs, the
    runs in progress, the refresh state, the id map and (asked for) the failed ids."""
    lines = [f"lake: {found.dest}  (read {found.read_at})", ""]
    head = ("date", "ids", *(n.replace("_", " ") for n in OUTCOMES), "files", "runs")
    rows = [head]
    for folder in found.folders:
        files = ", ".join(f"{f.files} {f.format}" for f in folder.formats) or "-"
        rows.append(
            (
                folder.date,
                str(folder.ids.total),
                *(str(getattr(folder.ids, n)) for n in OUTCOMES),
                files,
                str(len(folder.runs)),
            )
        )
    if len(found.folders) > 1:
        totals = found.totals
        rows.append(
            ("all", str(totals.total), *(str(getattr(totals, n)) for n in OUTCOMES), "", "")
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        cells = [
            cell.ljust(width) if i in (0, len(row) - 2) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    if not found.folders:
        lines.append("(no date folder)")
    for folder in found.folders:
        notes = [f"ledger v{folder.version}"]
        if folder.pending is not None:
            notes.append(f"commit {folder.pending} half applied: the next writer finishes it")
        if folder.stray_files:
            notes.append(
                f"{len(folder.stray_files)} files no run wrote: {', '.join(folder.stray_files[:3])}"
            )
        lines += ["", f"{folder.date}: {folder.path}  ({'; '.join(notes)})"]
        for one in folder.runs:
            shown = {k: one.settings.get(k) for k in _SHOWN_SETTINGS if k in one.settings}
            settings = " ".join(f"{k}={_shown(v)}" for k, v in shown.items())
            counts = ", ".join(f"{k} {v}" for k, v in one.counts.items() if v and k != "rows_read")
            lines.append(
                f"  {one.outcome:<10} {one.run}  {one.source}  {one.started_at or '?'} .. "
                f"{one.finished_at or '…'}"
            )
            if settings:
                lines.append(f"  {'':<10} {settings}")
            if counts:
                lines.append(f"  {'':<10} {counts}")
            if one.error:
                lines.append(f"  {'':<10} error: {one.error}")
        if folder.failed:
            lines.append(f"  failed ids ({len(folder.failed)}):")
            lines += [
                f"    {f.imdb_id}  {f.reason}" + (f" ({f.attempts} attempts)" if f.attempts else "")
                for f in folder.failed
            ]
        elif folder.failed is not None:
            lines.append("  failed ids: none")
    lines.append("")
    if found.in_progress:
        lines.append("runs in progress or interrupted:")
        for pin in found.in_progress:
            end = "end" if pin.end is None else str(pin.end)
            line = f"  {pin.state:<11} {pin.run}  {pin.source}  into {pin.date}, "
            if pin.state == "interrupted":
                line += f"owes {pin.start}..{end} ({pin.why}; run the job again to continue)"
            else:
                line += f"positions {pin.start}..{end} ({pin.why})"
            lines.append(line)
    else:
        lines.append("runs in progress or interrupted: none")
    refresh = found.refresh
    if refresh is None:
        lines.append("refresh: never run")
    elif refresh.error:
        lines.append(f"refresh: {refresh.error}")
    else:
        carried = ", ".join(refresh.carried) if refresh.carried else "none"
        lines.append(
            f"refresh: changes refreshed through {refresh.refreshed_through}; "
            f"carried failures: {carried}"
        )
    idmap = found.idmap
    lines.append(
        f"id map: {idmap.titles} titles ({idmap.deleted} deleted by TMDB); base "
        f"{idmap.base_titles}, {idmap.segments} segments not merged yet"
    )
    lines += [f"  damaged, skipped: {d}" for d in idmap.damaged]
    return lines


#: The settings a run line shows (all of them are in ``--json``).
_SHOWN_SETTINGS = ("kind", "detail", "language", "append_to_response", "format", "offset", "limit")


def _shown(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)
