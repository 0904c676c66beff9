"""The refresh state (``Raw/TMDB/_state/refresh.json``): the last day whose changes are in
the lake, and the titles whose fetch failed, carried to the next refresh.

Written conditionally: the first refresh pins it create-only (a second first refresh takes
the first one's), and every later move is a compare-and-swap merged with whatever another
refresh saved meanwhile.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from tmdb_async.errors import Conflict, StorageError
from tmdb_async.jobs.refresh.window import DAY, Window
from tmdb_async.lake.layout import RAW_FOLDER, STATE_FOLDER, data_file_date
from tmdb_async.lake.storage import Store

STATE_KEY: Final = f"{STATE_FOLDER}/refresh.json"


@dataclass(frozen=True, slots=True)
class State:
    """``through``: every day up to it has been read and its titles fetched; ``failed``:
    titles whose fetch failed, carried to the next refresh."""

    through: dt.date | None
    failed: tuple[str, ...] = ()
    etag: str | None = None


async def read_state(store: Store, today: dt.date) -> State:
    found = await store.read(STATE_KEY)
    if found is None:
        return State(None)
    raw, etag = found
    try:
        body = json.loads(raw)
        through = dt.date.fromisoformat(body["through"])
        failed = tuple(str(i) for i in body.get("failed", []))
    except (ValueError, KeyError, TypeError, AttributeError):
        through = None
    if through is None or through >= today:  # nobody can have read a day not over yet
        raise StorageError(
            f"{store.url(STATE_KEY)}: damaged refresh state (a refreshed day is a date before "
            "today, UTC); fix it, or delete it and pass --since"
        )
    return State(through, failed, etag)


def _state_body(through: dt.date, failed: Iterable[str]) -> bytes:
    body = {"through": through.isoformat(), "failed": sorted(set(failed)), "saved_at": _now()}
    return json.dumps(body).encode()


async def pin_state(store: Store, through: dt.date, today: dt.date) -> State:
    """The first refresh's start, written only if there is no state yet (create-only): a
    refresh that lost the race takes the other's, whose files may already be in the lake
    and must not pass for a newer ingest."""
    with contextlib.suppress(Conflict):
        await store.write(
            STATE_KEY, _state_body(through, ()), "application/json", if_none_match=True
        )
    return await read_state(store, today)


def _moved(state: State, window: Window) -> dt.date:
    """Where a refresh that read ``window`` leaves the refreshed day: its end, unless that
    would skip a day never read (a ``--since`` after a gap), and never back."""
    through = state.through
    if through is not None and window.start > through + DAY:
        return through  # a gap: the next refresh reads it; failures are still carried
    return window.end if through is None else max(through, window.end)


async def finish_state(
    store: Store,
    window: Window,
    asked: Iterable[str],
    failed: Iterable[str],
    state: State,
    today: dt.date,
) -> State:
    """After a refresh accounted for every title of ``window``: the refreshed day moves to
    its end, unless that would skip a day never read (a ``--since`` after a gap), and never
    back. The carried failures lose the titles this refresh ``asked`` and gain those that
    ``failed`` now; any other refresh's stay. Conditional: a refresh that saved meanwhile
    is read again and merged with."""
    asked, failed = set(asked), set(failed)
    while True:
        carried = set(state.failed) - asked | failed
        new = _moved(state, window)
        if new == state.through and carried == set(state.failed):
            return state
        try:
            await store.write(
                STATE_KEY,
                _state_body(new, carried),
                "application/json",
                if_none_match=state.etag is None,
                if_match=state.etag,
            )
            return State(new, tuple(sorted(carried)))
        except Conflict:
            state = await read_state(store, today)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


async def newest_ingest_date(store: Store) -> dt.date | None:
    """The newest date folder holding a data file."""
    newest = None
    for key in await store.list(f"{RAW_FOLDER}/"):
        if (with_data := data_file_date(key)) is not None:
            newest = with_data if newest is None or with_data > newest else newest
    return newest
