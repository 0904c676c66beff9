"""Interrupted jobs continue in their own date folder, and only interrupted jobs pin one.

A run without an explicit date writes into today's folder (UTC). Restarted after midnight,
it would split its ids over two folders, so a run that has read ids *pins* its job's date::

    Raw/TMDB/_state/runs/<job>/<run>.json    {"date", "start", "end", "state", ...}

A *job* is a source with the settings that shape its records (:func:`job_key`); a pin holds
the slice of it that its run still owes. The rule, in one place:

- **pinned only while interrupted**: a run pins when it reads its first id (a run that fails
  before, on a missing file or a bad header, pins nothing); a run that finishes its slice
  (``ok`` or ``failed_ids``) removes its own pin; a run that stops early (deadline, error,
  Ctrl-C) leaves its pin ``interrupted``, narrowed to the part it did not finish.
- **a continuation is the same job**: a later run of the job that finishes a slice clears
  the parts of *interrupted* pins (of any date: that slice of the job is done) that its
  slice covers, and a pin of a run that died on this machine (kill -9) counts as
  interrupted; a run that stops again clears the same way the part it did finish, so a
  chain of continuations followed to the end leaves nothing.
- **two runs at once never clear each other**: a pin whose run is still going is its own
  run's to clear. A running run rewrites its pin every :data:`HEARTBEAT` seconds; a
  finishing run counts a pin as a dead run's when it died on this machine, or when the pin
  has not changed for two heartbeats since this run first saw it (:class:`Watch`, on this
  run's own monotonic clock, so a run killed in another container or host is found too,
  and no two machines' clocks are compared).

A run without a date continues in the newest date pinned for a slice overlapping its own.
Batches (Distributed Map children, a refresh's groups) never pin: their date is their
event's.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from tmdb_async.lake.layout import STATE_FOLDER, digest
from tmdb_async.lake.lease import _MACHINE, _dead_here
from tmdb_async.lake.storage import Store, parse_s3

log = logging.getLogger(__name__)

RUNS_FOLDER = f"{STATE_FOLDER}/runs"
HEARTBEAT = 60.0  # seconds between a running run's rewrites of its pin


def job_key(source: str, shape: str) -> str:
    """Names a job: the source however it is spelled (``./x.csv`` is ``x.csv``) and the
    settings that shape its records. Not its slice: a continuation is the same job."""
    where = source if parse_s3(source, "source") else os.path.realpath(source)
    return digest([where, shape])


@dataclass(frozen=True, slots=True)
class Pin:
    """What one run of a job still owes: positions ``start`` up to ``end`` (``None``: the
    end of the file), in the folder of ``date``."""

    run: str
    date: str
    start: int
    end: int | None
    state: Literal["running", "interrupted"] = "running"
    source: str = ""
    machine: str = _MACHINE
    pid: int = field(default_factory=os.getpid)
    beat: int = 0  # rewrites while running: a pin that stops changing is a dead run's

    def overlaps(self, start: int, end: int | None) -> bool:
        return (end is None or self.start < end) and (self.end is None or start < self.end)

    @property
    def live(self) -> bool:
        return self.state == "running" and not _dead_here(asdict(self))


def _key(job: str, run: str) -> str:
    return f"{RUNS_FOLDER}/{job}/{run}.json"


def _parse(raw: bytes) -> Pin | None:
    try:
        body: dict[str, Any] = json.loads(raw)
        pin = Pin(
            run=str(body["run"]),
            date=dt.date.fromisoformat(body["date"]).isoformat(),
            start=int(body["start"]),
            end=None if body["end"] is None else int(body["end"]),
            state="interrupted" if body.get("state") == "interrupted" else "running",
            source=str(body.get("source", "")),
            machine=str(body.get("machine", "")),
            pid=int(body.get("pid", 0)),
            beat=int(body.get("beat", 0)),
        )
    except (ValueError, KeyError, TypeError):
        return None
    return pin


async def _read(store: Store, job: str) -> list[tuple[Pin, bytes]]:
    found = []
    for key in await store.list(f"{RUNS_FOLDER}/{job}/"):
        raw = await store.get(key)
        if raw is None:
            continue  # removed since the listing
        pin = _parse(raw)
        if pin is None:
            log.warning("ignoring a damaged run record %s", store.url(key))
            continue
        found.append((pin, raw))
    return found


async def pins(store: Store, job: str) -> list[Pin]:
    """The job's pins; a damaged one is ignored (it protects nothing)."""
    return [pin for pin, _ in await _read(store, job)]


@dataclass(slots=True)
class Watch:
    """The job's pins as a run first saw them, and when (its own monotonic clock): one read
    tells the run its date (:meth:`date`) and, when it finishes, which pins stopped beating
    (:meth:`silent`)."""

    seen: dict[str, tuple[Pin, bytes]]
    at: float
    clock: Callable[[], float] = time.monotonic

    def date(self, start: int, end: int | None, given: dt.date | None) -> tuple[dt.date, bool]:
        """The date to write into, and whether it continues an interrupted run: ``given``,
        else the newest date pinned for a slice overlapping ``start..end``, else today
        (UTC)."""
        if given is not None:
            return given, False
        dates = [pin.date for pin, _ in self.seen.values() if pin.overlaps(start, end)]
        if dates:
            return dt.date.fromisoformat(max(dates)), True
        return dt.datetime.now(dt.UTC).date(), False

    def silent(self, pin: Pin, raw: bytes) -> bool:
        """Unchanged for two heartbeats since first seen: its run no longer beats."""
        first = self.seen.get(pin.run)
        return first is not None and first[1] == raw and self.clock() - self.at >= 2 * HEARTBEAT


async def watch(store: Store, job: str, clock: Callable[[], float] = time.monotonic) -> Watch:
    now = clock()
    return Watch({pin.run: (pin, raw) for pin, raw in await _read(store, job)}, now, clock)


async def beat(store: Store, job: str, pin: Pin) -> Pin:
    """The run is still going: rewrite its pin (see :data:`HEARTBEAT`)."""
    pin = replace(pin, beat=pin.beat + 1)
    await _save(store, job, pin)
    return pin


async def _save(store: Store, job: str, pin: Pin) -> None:
    # saved_at (this machine's clock) is for an operator's view only (``status``): the
    # engine itself never compares two machines' clocks (see :class:`Watch`).
    body = {**asdict(pin), "saved_at": round(time.time(), 3)}
    await store.put(_key(job, pin.run), json.dumps(body).encode(), "application/json")


@dataclass(frozen=True, slots=True)
class SavedPin:
    """A pin as an operator sees it: its job, and when it was last written (seconds since
    the epoch, by the writer's clock; ``None`` for a pin written before this was kept)."""

    job: str
    pin: Pin
    saved_at: float | None


async def every_pin(store: Store) -> list[SavedPin]:
    """Every job's pins (read only; a damaged one is left out, as :func:`pins` does)."""
    found = []
    for key in await store.list(f"{RUNS_FOLDER}/"):
        job = key[len(RUNS_FOLDER) + 1 :].split("/", 1)[0]
        raw = await store.get(key)
        pin = None if raw is None else _parse(raw)
        if raw is None or pin is None:
            continue
        saved = json.loads(raw).get("saved_at")
        found.append(SavedPin(job, pin, float(saved) if isinstance(saved, int | float) else None))
    return found


async def pin(store: Store, job: str, pin: Pin) -> None:
    """The run has read its first id: until it finishes, its date is the job's."""
    await _save(store, job, pin)


async def interrupted(
    store: Store, job: str, pin: Pin, next_offset: int | None, seen: Watch | None = None
) -> None:
    """The run stopped before the end of its slice: it owes ``next_offset`` onwards. What it
    did finish (``start`` up to ``next_offset``) is done for the runs it continued too, as
    when it finishes: a chain of stopped continuations followed to the end leaves no pin."""
    start = pin.start if next_offset is None else max(pin.start, next_offset)
    await _save(store, job, replace(pin, start=start, state="interrupted"))
    if start > pin.start:
        await _cover(store, job, pin.run, pin.start, start, seen)


async def finished(store: Store, job: str, done: Pin, seen: Watch | None = None) -> None:
    """The run finished its slice: its pin goes, and so does what it covered of the job's
    interrupted pins and dead runs' pins (the runs it continued)."""
    await store.delete(_key(job, done.run))
    await _cover(store, job, done.run, done.start, done.end, seen)


async def _cover(
    store: Store, job: str, run: str, start: int, end: int | None, seen: Watch | None
) -> None:
    """Run ``run`` accounted for ``start..end``: take it out of the job's interrupted pins
    and dead runs' pins; a live run's pin is its own run's to clear."""
    for other, raw in await _read(store, job):
        if other.run == run:
            continue
        if other.live and not (seen is not None and seen.silent(other, raw)):
            continue
        if not other.overlaps(start, end):
            continue
        rest = _minus(other, start, end)
        if rest is None:
            await store.delete(_key(job, other.run))
        elif rest != other:
            await _save(store, job, rest)


def _minus(pin: Pin, start: int, end: int | None) -> Pin | None:
    """``pin`` without ``start..end``: None when covered; unchanged when the rest would be
    two pieces (the slice finished lay inside it)."""
    covers_start = start <= pin.start
    covers_end = end is None or (pin.end is not None and pin.end <= end)
    if covers_start and covers_end:
        return None
    if covers_start and end is not None:
        return replace(pin, start=end, state="interrupted")
    if covers_end and start > pin.start:
        return replace(pin, end=start, state="interrupted")
    return pin
