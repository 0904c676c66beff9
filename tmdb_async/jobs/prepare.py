"""Prepare a CSV for Step Functions: one execution at a time, its distinct ids as a small
one-column CSV sorted by IMDb number (so that each batch is a contiguous run of numbers),
the batch plan, and the lake's id map compacted once for the execution.

The Distributed Map reads this file instead of the raw CSV, where one title's rows (one per
artist) could straddle two batches and be fetched twice. Invalid values are kept, so the
batch that gets them lists them in its sidecar.

**One execution at a time.** Every child of an execution runs at its share of the whole
global rate, so two executions at once would double it. Given the execution's identity (the
state machine passes ``$$.StateMachine.Id``, ``$$.Execution.Id`` and
``$$.Execution.StartTime``), prepare first lists the state machine's RUNNING executions
(``states:ListExecutions``) and refuses with :class:`ExecutionAlreadyRunning`, before it
reads or writes anything, when one of them started earlier. Ties on the start time go to
the smaller execution ARN, so of two executions started at once exactly one goes on.

**The batch plan** (:func:`tmdb_async.jobs.fleet.plan_batches`): given the template's
``MaxItemsPerBatch`` and ``MapMaxConcurrency``, the result says how many ids a batch gets
and how many children run at once, so that a small file keeps the whole rate busy.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tmdb_async.errors import ExecutionAlreadyRunning, StorageError, UsageError
from tmdb_async.imdb import canonical_number
from tmdb_async.jobs.fleet import plan_batches
from tmdb_async.jobs.ingest import estimate
from tmdb_async.jobs.source import ReadStats, read_csv_ids
from tmdb_async.lake.idmap import LakeIdMap
from tmdb_async.lake.layout import digest, source_stem
from tmdb_async.lake.storage import (
    LocalStore,
    S3Store,
    Store,
    open_s3,
    parse_s3,
    read_source,
    s3_error_code,
)
from tmdb_async.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExecutionRef:
    """Who is preparing: the state machine's and the execution's ARNs and its start time
    (``$$.Execution.StartTime``, ISO 8601; ``None`` if unknown)."""

    state_machine: str
    execution: str
    started: str | None = None


def _instant(value: Any) -> dt.datetime | None:
    """A start time at the millisecond (what Step Functions keeps), as an aware datetime."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, dt.datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    instant: dt.datetime = value.astimezone(dt.UTC)
    return instant.replace(microsecond=value.microsecond // 1000 * 1000)


_LAST = dt.datetime.max.replace(tzinfo=dt.UTC)


def _began(entry: Mapping[str, Any]) -> dt.datetime:
    """When a listed execution began running this time: its ``redriveDate`` if it was
    redriven (a redrive of an old execution is a newcomer), else its ``startDate``."""
    start = _instant(entry.get("startDate")) or _LAST
    redriven = _instant(entry.get("redriveDate"))
    return max(start, redriven) if redriven is not None else start


def _order(entry: Mapping[str, Any]) -> tuple[dt.datetime, str]:
    return _began(entry), str(entry.get("executionArn"))


def earlier_executions(
    me: ExecutionRef, running: Iterable[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The executions of ``running`` (ListExecutions entries: ``executionArn``,
    ``startDate``, ``redriveDate``) that go before ``me``: began earlier, or at the same
    millisecond with a smaller ARN. ``me``'s own beginning is its entry's in the list when it
    is there (the same clock and precision as the others'), else ``me.started``; unknown,
    every other running execution goes first."""
    entries = list(running)
    mine = next((e for e in entries if e.get("executionArn") == me.execution), None)
    my_key = _order(mine) if mine is not None else (_instant(me.started) or _LAST, me.execution)
    return [e for e in entries if e.get("executionArn") != me.execution and _order(e) < my_key]


@contextlib.asynccontextmanager
async def open_sfn(region: str) -> AsyncIterator[Any]:
    """One aioboto3 Step Functions client per invocation, inside the running loop (as
    :func:`tmdb_async.lake.storage.open_s3`)."""
    import aioboto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": 8, "mode": "standard"},  # throttling retried
        connect_timeout=10,
        read_timeout=30,
    )
    async with aioboto3.Session().client("stepfunctions", region_name=region, config=config) as sfn:
        yield sfn


async def check_single_execution(me: ExecutionRef, sfn: Any | None = None) -> None:
    """Raise :class:`ExecutionAlreadyRunning` if a RUNNING execution of ``me``'s state
    machine goes before it (:func:`earlier_executions`)."""
    parts = me.state_machine.split(":")
    if len(parts) < 7 or parts[2] != "states" or parts[5] != "stateMachine":
        raise UsageError(f"event.state_machine: {me.state_machine!r} is not a state machine ARN")
    if sfn is None:
        async with open_sfn(parts[3]) as client:
            return await check_single_execution(me, client)
    running: list[Mapping[str, Any]] = []
    try:
        paginator = sfn.get_paginator("list_executions")
        pages = paginator.paginate(stateMachineArn=me.state_machine, statusFilter="RUNNING")
        async for page in pages:
            running += page.get("executions", [])
    except Exception as exc:
        code = s3_error_code(exc)
        raise UsageError(
            f"{me.state_machine}: cannot list its running executions ({code}); the function's "
            "role needs states:ListExecutions on it (template.yaml)"
        ) from None
    first = earlier_executions(me, running)
    if first:
        other = min(first, key=_order)
        began = _began(other)
        raise ExecutionAlreadyRunning(
            f"{me.execution}: another execution of this state machine is running "
            f"({other['executionArn']}, started {'?' if began == _LAST else began.isoformat()}); "
            "this one stops without writing anything: start it again once that one has finished"
        )


def _id_order(value: str) -> tuple[int, str]:
    """Ids by IMDb number, invalid values after them: each batch of the Map is then a
    contiguous run of numbers, and its child reads only the ledger pages and the part of
    the id map that run needs (:mod:`tmdb_async.lake.ledger_pages`)."""
    number = canonical_number(value)
    return (number, "") if number is not None else (2**63, value)


async def _guard(settings: Settings, values: list[str], store: Store) -> None:
    """The run's guard (:func:`~tmdb_async.jobs.ingest.estimate`'s refusal), once for the
    whole execution, before anything is written: each child reads only the ledger pages
    of its own ids (:mod:`tmdb_async.lake.ledger_pages`), so only here is the whole date
    folder seen, and a file that would mix formats in it, or replace answers fetched with
    other record settings, stops the execution with the same one line as a CLI run."""
    found = await estimate(settings, items=[{"id": v} for v in values], store=store)
    if found.refused is not None:
        raise UsageError(found.refused)


async def _compact_id_map(store: Store) -> None:
    """Fold the id map's segments once per execution, here, before the Map starts: its
    children start together and only read (see :mod:`tmdb_async.lake.idmap`)."""
    try:
        await LakeIdMap(store, "prepare").load(compact=True)
    except StorageError as exc:
        log.warning("id map not compacted: %s", exc)


async def prepare_ids(
    settings: Settings,
    *,
    max_items_per_batch: int | None = None,
    max_concurrency: int | None = None,
    execution: ExecutionRef | None = None,
) -> dict[str, Any]:
    """Write the distinct id values of ``settings.source`` under ``Raw/TMDB/_work/``.

    With ``execution``, first refuse if another execution of its state machine goes first.
    With ``max_items_per_batch`` and ``max_concurrency``, the result also has the batch plan
    (``items_per_batch``, ``batches``, ``children``) for ``unique_ids``."""
    settings.validate()
    if execution is not None:
        await check_single_execution(execution)
    dest_url = parse_s3(settings.dest, "dest")
    source_url = parse_s3(settings.source, "source")
    stats = ReadStats()
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="|", lineterminator="\n")
    writer.writerow(["id"])
    async with open_s3(bool(dest_url or source_url), 4) as s3:
        values = [
            entry.imdb_id
            async for entry in read_csv_ids(
                read_source(settings.source, s3), where=settings.source, stats=stats
            )
        ]
        writer.writerows([value] for value in sorted(values, key=_id_order))
        store: Store = S3Store(s3, dest_url) if dest_url else LocalStore(settings.dest)
        if settings.date is not None:
            await _guard(settings, values, store)
        key = f"Raw/TMDB/_work/{source_stem(settings.source)}-{digest([settings.source])}/ids.csv"
        url = await store.put(key, buffer.getvalue().encode(), "text/csv")
        await _compact_id_map(store)
    bucket, _, ids_key = url.removeprefix("s3://").partition("/")
    result: dict[str, Any] = {
        "ids_url": url,
        "ids_bucket": bucket if dest_url else None,
        "ids_key": ids_key if dest_url else url,
        "unique_ids": stats.distinct,
        "rows_read": stats.rows,
    }
    if max_items_per_batch is not None and max_concurrency is not None:
        result.update(plan_batches(stats.distinct, max_items_per_batch, max_concurrency).as_dict())
    return result
