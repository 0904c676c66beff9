"""Refreshing the lake: fetch again only the titles TMDB changed.

TMDB lists the ids it changed, per kind and per day (``/3/movie/changes``,
``/3/tv/changes``: at most 14 days a request, 100 ids a page, pages 1..500). A refresh with
processing date D (today or earlier, UTC):

1. picks its window of days: from the day after the last refreshed one
   (``Raw/TMDB/_state/refresh.json``, :class:`State`), or ``--since``; through D - 1, the
   last complete day (today's changes are read tomorrow, so each day is read once). The
   first refresh pins the state at the day before the newest ingest date, create-only and
   before writing anything, so that neither its own files nor a second first refresh can
   pass for a newer ingest;
2. reads both change lists for the window, every page, in requests of at most 14 days; a
   window cut off at page 500 is read in halves, down to single days, and a day still cut
   off is reported in ``truncated``, never dropped silently (the ``change_lists`` way).
   Unless the lake is smaller than the lists: once the first page of each piece told the
   lists' page counts, a lake with fewer titles (the id map's, plus the carried failures)
   than the pages left to read is refreshed the ``whole_lake`` way: every title of the lake
   is fetched, once each, as in 3 (a changed title costs one request either way, so this
   never costs more than the lists would). The way and why are saved in the plan, so a
   refresh cut off goes on the same way, and said in the summary (``mode``, ``reason``);
3. keeps the ids the lake's id map holds (repaired first from the date folders' ledgers: the
   map is a cache, and a killed run or a lost segment leaves titles out of it), plus the
   titles the last refresh failed, and
   fetches each once, ``/3/{movie|tv}/{id}`` with the settings it was ingested with (its
   :class:`~tmdb_async.lake.profile.Profile`), into D's folder through the same engine as ``run``
   (:meth:`~tmdb_async.jobs.ingest.Engine.ingest`): at most 100 records per file, exactly once,
   the same record shape. A title whose details answer 404 and whose IMDb id ``/find`` no
   longer finds is a ``deleted`` sidecar entry with its TMDB id (a 404 alone can be a merge:
   ``/find`` then names the new title, which is fetched). It stays in the id map, marked
   deleted: when a change list names its TMDB id again it is asked once by that id, and a
   title TMDB restored is a record again (one still removed writes nothing: its entry
   stands, ``still_deleted``);
4. once every title is accounted for, moves the state to the window's last day (never back,
   and not past a day never read: a ``--since`` after a gap leaves it), carrying the titles
   that failed to the next refresh.

The refresh of one date is a :class:`Plan` saved in the lake as it goes
(``Raw/TMDB/_state/refresh/<date>.json``): the window, the change-list pieces read and the
titles they named, then the groups to fetch. Run again with the same date after a kill, the
deadline or a Lambda retry, it continues the plan: pieces read are not read again, and the
folder's ledger keeps what was committed, so only the rest is fetched. Two refreshes at once
commit through the same ledger, so each title is still once in the folder.
"""

from __future__ import annotations

from tmdb_async.errors import TmdbUnavailable
from tmdb_async.jobs.refresh.plan import Group, Plan
from tmdb_async.jobs.refresh.run import refresh
from tmdb_async.jobs.refresh.state import (
    STATE_KEY,
    State,
    finish_state,
    newest_ingest_date,
    pin_state,
    read_state,
)
from tmdb_async.jobs.refresh.summary import RefreshSummary
from tmdb_async.jobs.refresh.window import Window, plan_window
from tmdb_async.tmdb.changes import MAX_DAYS, MAX_PAGE, read_piece

__all__ = [
    "MAX_DAYS",
    "MAX_PAGE",
    "STATE_KEY",
    "Group",
    "Plan",
    "RefreshSummary",
    "State",
    "TmdbUnavailable",
    "Window",
    "finish_state",
    "newest_ingest_date",
    "pin_state",
    "plan_window",
    "read_piece",
    "read_state",
    "refresh",
]
