"""The days a refresh reads: from the day after the last refreshed one (or ``--since``)
through the day before the processing date, the last complete day (today's changes are read
tomorrow, so each day is read once).

:class:`Window` itself is TMDB's unit of a change list (:mod:`tmdb_async.tmdb.changes`, which
cannot import the jobs); it is re-exported here, where the refresh's day arithmetic is.
"""

from __future__ import annotations

import datetime as dt

from tmdb_async.errors import UsageError
from tmdb_async.tmdb.changes import DAY, Window

__all__ = ["DAY", "Window", "plan_window"]


def plan_window(date: dt.date, since: dt.date | None, through: dt.date) -> Window:
    """The days a refresh on ``date`` reads: from ``since``, else the day after ``through``;
    through ``date`` - 1. Empty (``start`` > ``end``) when already refreshed."""
    end = date - DAY
    if since is not None:
        if since > end:
            raise UsageError(
                f"since: {since.isoformat()} leaves no complete day before the processing "
                f"date {date.isoformat()} (a refresh reads days up to the one before it)"
            )
        return Window(since, end)
    return Window(through + DAY, end)
