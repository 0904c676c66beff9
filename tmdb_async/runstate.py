"""Interrupted runs continue in their own date folder.

A run without an explicit date writes into today's folder (UTC). Restarted after midnight,
it would split its ids over two folders, so each run records its job and date under
``Raw/TMDB/_state/runs/<job>.json`` when it starts and removes the record when it finishes
(``ok`` or ``failed_ids``). A run of the same job (same source, slice and record settings)
started without a date while a record exists continues in the recorded date's folder.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Sequence

from .storage import Store, parse_s3
from .writer import STATE_FOLDER, digest

log = logging.getLogger(__name__)


def job_key(source: str, offset: int, limit: int | None, shape: str) -> str:
    """Names a job: the source however it is spelled (``./x.csv`` is ``x.csv``)."""
    where = source if parse_s3(source, "source") else os.path.realpath(source)
    return digest([where, offset, limit, shape])


def items_key(ids: Sequence[str], shape: str) -> str:
    return digest([sorted(ids), shape])


def _key(job: str) -> str:
    return f"{STATE_FOLDER}/runs/{job}.json"


async def resolve_date(store: Store, job: str, given: dt.date | None) -> tuple[dt.date, bool]:
    """The date to write into, and whether it continues an interrupted run."""
    if given is not None:
        return given, False
    raw = await store.get(_key(job))
    if raw is not None:
        try:
            return dt.date.fromisoformat(json.loads(raw)["date"]), True
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a damaged run record %s", _key(job))
    return dt.datetime.now(dt.UTC).date(), False


async def started(store: Store, job: str, date: dt.date, source: str) -> None:
    body = {"date": date.isoformat(), "source": source}
    await store.put(_key(job), json.dumps(body).encode(), "application/json")


async def finished(store: Store, job: str) -> None:
    await store.delete(_key(job))
