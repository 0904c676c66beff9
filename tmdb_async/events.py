"""Lambda events → engine calls. ``handler.py`` only hands its event and context here.

Four event shapes (anything else is a :class:`~tmdb_async.errors.UsageError`):

- direct: ``{"source": "s3://…csv", "dest": "s3://bucket", "kind", "date", "offset", "limit",
  …}``, defaults from the same environment variables as the CLI (``TMDB_DEST``, …);
- Step Functions Distributed Map batch: ``{"Items": [{"id": "tt…", …}, …], "BatchInput":
  {"dest", "kind", "date", "global_rate", "max_concurrency"}}``. The request rate of each
  invocation is ``global_rate / max_concurrency`` so the whole fleet stays under TMDB's limit
  (the state machine passes the children that actually run at once as ``max_concurrency``);
- ``{"action": "prepare", "source", "dest", "max_items_per_batch", "max_concurrency",
  "state_machine", "execution", "execution_started"}``: writes the distinct ids of a big CSV
  as a small CSV for the Distributed Map to read, so no id is split across two batches, and
  returns the batch plan (:func:`~tmdb_async.jobs.fleet.plan_batches`: ``items_per_batch``,
  ``batches``, ``children``) when given the first two. Given the execution's identity (the
  last three, together), it first refuses with
  :class:`~tmdb_async.errors.ExecutionAlreadyRunning` while another execution of the same
  state machine that started earlier runs (:mod:`tmdb_async.jobs.prepare`);
- ``{"action": "refresh", "dest", "date", "since", …}``: fetches again the lake's titles TMDB
  changed (:mod:`tmdb_async.jobs.refresh`). ``date`` may be a timestamp such as EventBridge
  Scheduler's ``<aws.scheduler.scheduled-time>`` (its UTC date is the processing date), so a
  retry of one scheduled invocation continues the same refresh. A refresh stopped at the
  deadline raises :class:`~tmdb_async.errors.RefreshIncomplete` for Lambda's asynchronous
  retry to continue it;
- ``{"action": "status", "dest", "date", "failed"}``: what the lake holds, read from its
  ledgers, manifests and state files and nothing written
  (:func:`~tmdb_async.jobs.status.lake_status`; the result is its ``as_dict()``, the same
  object as ``tmdb-ingest status --json``).

Which keys each shape takes, their types and checks, and the ``global_rate`` /
``max_concurrency`` rule all come from the settings schema in :mod:`tmdb_async.settings`:
each shape is an :class:`~tmdb_async.settings.EventShape` (:data:`SHAPES`), which both reads
an event and, through :func:`events_schema`, documents it as ``docs/events.schema.json``.

The deadline is the context's remaining time, with the same safety margin rule as the CLI's
``--time-budget`` (:func:`~tmdb_async.jobs.deadlines.deadline_margin`): no new chunk starts
once less than the margin is left, and the result says where to continue (``next_offset`` or
``remaining_items`` with ``batch_input`` for the state machine's loop). An invocation that
could account for no id raises :class:`~tmdb_async.errors.DeadlineError` instead of handing
the same work back for ever.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tmdb_async import log as logsetup
from tmdb_async.credentials import Credentials, clean_secret
from tmdb_async.errors import CredentialsError, RefreshIncomplete, UsageError
from tmdb_async.jobs.deadlines import (
    deadline_margin,
    margin_override,
    no_progress,
    require_progress,
)
from tmdb_async.jobs.fleet import fleet_share
from tmdb_async.jobs.ingest import run
from tmdb_async.jobs.prepare import ExecutionRef, prepare_ids
from tmdb_async.jobs.progress import LogProgress
from tmdb_async.jobs.refresh import refresh
from tmdb_async.jobs.status import CONCURRENCY as STATUS_CONCURRENCY
from tmdb_async.jobs.status import lake_status
from tmdb_async.lake.storage import open_store, parse_s3
from tmdb_async.options import (
    BOOL,
    COUNT,
    DATE,
    DAY,
    NAME,
    OBJECT,
    ROWS,
    Choice,
    EventShape,
    JsonSchema,
    Option,
    Required,
)
from tmdb_async.settings import (
    AT_LEAST_1,
    BATCH_INPUT,
    REFRESH_SETTINGS,
    RUN_EVENT,
    SCHEMA,
    Settings,
    settings_from,
)

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = logging.getLogger(__name__)


def _allowed_buckets(env: Mapping[str, str]) -> set[str]:
    return {b.strip() for b in env.get("TMDB_ALLOWED_BUCKETS", "").split(",") if b.strip()}


def _check_location(url: str, field: str, env: Mapping[str, str]) -> None:
    """Lambda reads and writes S3 only, in allowed buckets, without path tricks."""
    s3 = parse_s3(url, field)
    if s3 is None:
        raise UsageError(f"{field}: {url!r} is not an s3:// URL (Lambda has no local files)")
    allowed = _allowed_buckets(env)
    if allowed and s3.bucket not in allowed:
        raise UsageError(f"{field}: bucket {s3.bucket!r} is not allowed (TMDB_ALLOWED_BUCKETS)")
    parts = s3.key.split("/")
    if s3.key.startswith("/") or any(part in ("..", ".") for part in parts) or "\\" in s3.key:
        raise UsageError(f"{field}: {url!r} has '..', '.', '\\' or a leading '/' in its key")


def _settings(values: dict[str, Any], source: str, env: Mapping[str, str]) -> Settings:
    """An event's settings over the environment's (the same variables as the CLI's)."""
    settings = settings_from(values, env, source=source)
    if not settings.dest:
        raise UsageError("event.dest: missing (or set TMDB_DEST)")
    _check_location(settings.dest, "event.dest", env)
    return settings


async def _credentials(env: Mapping[str, str]) -> Credentials:
    """Token from the environment, else from SSM Parameter Store through Powertools'
    Parameters, which caches it in the container (``TMDB_TOKEN_CACHE_SECONDS``, 15 min)."""
    found = Credentials.from_env(env)
    if found.secret:
        return found
    name = env.get("TMDB_TOKEN_SSM_PARAMETER", "")
    if not name:
        raise CredentialsError(
            "no TMDB credentials: set TMDB_TOKEN_SSM_PARAMETER (or TMDB_READ_ACCESS_TOKEN)"
        )
    from aws_lambda_powertools.utilities import parameters

    try:
        value = await asyncio.to_thread(
            parameters.get_parameter, name, decrypt=True, max_age=_TOKEN_CACHE_SECONDS
        )
    except parameters.exceptions.GetParameterError as exc:
        reason = _parameter_failure(exc, env)
        raise CredentialsError(f"SSM parameter {name!r}: {reason}") from None
    logsetup.register_secret(value)
    token = clean_secret(value, f"SSM parameter {name!r}")
    if token is None:
        raise CredentialsError(f"SSM parameter {name!r}: empty")
    logsetup.register_secret(token)
    return Credentials(read_access_token=token)


_TOKEN_CACHE_SECONDS = 900
# SSM's own code for a key it cannot use, and KMS's codes as SSM or the SDK pass them on.
_KMS_CODES = frozenset(
    {
        "InvalidKeyId",
        "DisabledException",
        "KeyUnavailableException",
        "KMSAccessDeniedException",
        "KMSDisabledException",
        "KMSInvalidStateException",
        "KMSNotFoundException",
        "InvalidCiphertextException",
        "IncorrectKeyException",
    }
)


def _parameter_failure(exc: BaseException, env: Mapping[str, str]) -> str:
    """Why the token's parameter could not be read, as the operator acts on it.

    Powertools wraps every failure in a ``GetParameterError`` raised inside its ``except``
    without ``from``, so the botocore error sits in ``__context__``, not ``__cause__``. The
    chain is walked for the first error with an AWS error code; only the code is shown (AWS's
    message names the key or the role, never the value). SSM reports a KMS key the role may
    not use as ``AccessDeniedException`` with a KMS message, so that message is looked at too.
    """
    seen: set[int] = set()
    error: BaseException | None = exc
    innermost = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        innermost = error
        details = (getattr(error, "response", None) or {}).get("Error", {})
        code = str(details.get("Code", ""))
        if code:
            return _explained(code, str(details.get("Message", "")), env)
        error = error.__cause__ or error.__context__
    return f"cannot read it ({type(innermost).__name__})"


def _explained(code: str, message: str, env: Mapping[str, str]) -> str:
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "this region"
    kms_message = "kms" in message.lower() or "ciphertext" in message.lower()
    if code in {"ParameterNotFound", "ParameterVersionNotFound"}:
        return f"not found in {region} ({code}): create it there, or fix its name"
    if (
        code in _KMS_CODES
        or code.startswith("KMS")
        or (code == "AccessDeniedException" and kms_message)
    ):
        return f"KMS refused to decrypt it ({code}): the role needs kms:Decrypt on its key"
    if code in {"AccessDeniedException", "AccessDenied", "UnauthorizedOperation"}:
        return f"access denied ({code}): the role needs ssm:GetParameter on it"
    return f"cannot read it ({code})"


_DEADLINE_HINT = "raise the function timeout, or lower MaxItemsPerBatch or the batch's limit"


def _margin(
    context: LambdaContext | None, env: Mapping[str, str]
) -> tuple[Callable[[], float] | None, float]:
    """The invocation's clock and safety margin (:func:`~tmdb_async.jobs.deadlines.deadline_margin`
    of the time left at its start)."""
    if context is None:
        return None, 0.0

    def remaining() -> float:
        return float(context.get_remaining_time_in_millis()) / 1000

    return remaining, deadline_margin(remaining(), margin_override(env))


def _require_time(remaining: Callable[[], float] | None, margin: float) -> None:
    """Less time left than the margin: the run could not even start a chunk."""
    if remaining is not None and remaining() <= margin:
        raise no_progress(margin, _DEADLINE_HINT)


async def handle(
    event: Any,
    context: LambdaContext | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run the job an event describes; return the JSON-able result."""
    env = dict(os.environ) if env is None else env
    if not isinstance(event, Mapping):
        raise UsageError(f"event: expected a JSON object, got {type(event).__name__}")
    request_id = getattr(context, "aws_request_id", None)
    remaining, margin = _margin(context, env)

    if event.get("action") == "prepare":
        values = PREPARE_EVENT.read(event, "event")
        source = values.pop("source", "")
        _check_location(source, "event.source", env)
        kept = ("dest", "kind", "date")
        settings = _settings({k: v for k, v in values.items() if k in kept}, source, env)
        plan = {k: values.get(k) for k in _PREPARE_PLAN}
        logsetup.log_context.set({"request_id": request_id, "action": "prepare"})
        return await prepare_ids(settings, **plan, execution=_execution(values))

    if event.get("action") == "refresh":
        return await _refresh(event, env, request_id, remaining, margin)

    if event.get("action") == "status":
        return await _status(event, env, request_id)

    if "Items" in event:
        read = BATCH_EVENT.read(event, "event")
        items = read["Items"]
        batch = event.get("BatchInput") or {}
        values = fleet_share(read.get("BatchInput", {}))
        settings = _settings(values, "items", env)
        settings = settings.with_changes(credentials=await _credentials(env)).validate()
        label = f"{len(items)} items"
        logsetup.log_context.set({"request_id": request_id, "batch": label})
        _require_time(remaining, margin)
        progress = LogProgress(f"batch of {label}")
        summary = await run(
            settings, items=items, remaining=remaining, safety_margin=margin, progress=progress
        )
        require_progress(summary, margin, _DEADLINE_HINT)
        result = summary.as_dict()
        result["batch_input"] = dict(batch)
        return result

    if "source" in event:
        values = RUN_EVENT.read(event, "event")
        source = values.pop("source", "")
        _check_location(source, "event.source", env)
        settings = _settings(values, source, env)
        settings = settings.with_changes(credentials=await _credentials(env)).validate()
        logsetup.log_context.set(
            {"request_id": request_id, "batch": f"{settings.offset}+{settings.limit}"}
        )
        _require_time(remaining, margin)
        progress = LogProgress(settings.source)
        summary = await run(settings, remaining=remaining, safety_margin=margin, progress=progress)
        require_progress(summary, margin, _DEADLINE_HINT)
        return summary.as_dict()

    raise UsageError(
        "event: unknown shape; expected {source, dest, …}, a Distributed Map batch "
        "{Items, BatchInput}, {action: 'prepare', source, dest}, {action: 'refresh', dest} or "
        "{action: 'status', dest}"
    )


#: A prepare event's batch plan inputs (the template's MaxItemsPerBatch, MapMaxConcurrency).
_PREPARE_PLAN = ("max_items_per_batch", "max_concurrency")
#: A prepare event's execution identity, for the one-execution-at-a-time check.
_PREPARE_RUN = ("state_machine", "execution", "execution_started")


def _own(**options: Option) -> dict[str, tuple[str, Option]]:
    """Event keys that are no setting, each read under its own name."""
    return {key: (key, option) for key, option in options.items()}


def _settings_of(*names: str) -> dict[str, tuple[str, Option]]:
    """The event keys of these settings (by name), read as the settings."""
    return {
        s.option.event: (s.name, s.option) for s in SCHEMA if s.name in names and s.option.event
    }


def _action(name: str) -> Option:
    return Option(f"always {name!r}: tells this shape apart", check=Choice((name,)), nullable=False)


#: A Step Functions Distributed Map batch: its rows and what every batch shares.
BATCH_EVENT = EventShape(
    "batch",
    "A Distributed Map batch: the ItemBatcher's rows and the BatchInput every batch shares.",
    _own(
        Items=Option("CSV rows (the ItemReader's)", ROWS, nullable=False),
        BatchInput=Option("what every batch shares", OBJECT),
    ),
    required=("Items",),
    nested={"BatchInput": BATCH_INPUT},
)
#: NAME refuses an empty string itself; this check puts ``minLength`` in the schema.
_NAMED = Required("the state machine passes its own identity")
#: The prepare step: the distinct ids of a big CSV as a small one, and the batch plan.
PREPARE_EVENT = EventShape(
    "prepare",
    "Write the distinct ids of a CSV for the Distributed Map and return the batch plan "
    "(given both counts). state_machine, execution and execution_started go together: the "
    "execution then first waits for no earlier execution of the same state machine.",
    {
        **_own(action=_action("prepare")),
        **_settings_of("source", "dest", "kind", "date"),
        **_own(
            max_items_per_batch=Option("ids per batch at most", COUNT, AT_LEAST_1),
            max_concurrency=Option("child workflows at once", COUNT, AT_LEAST_1),
            state_machine=Option("the state machine's ARN", NAME, _NAMED),
            execution=Option("this execution's ARN", NAME, _NAMED),
            execution_started=Option("this execution's start time", NAME, _NAMED),
        ),
    },
    required=("action",),
)


def _refresh_settings() -> dict[str, tuple[str, Option]]:
    keys = _settings_of(*REFRESH_SETTINGS)
    name, date = keys["date"]  # a scheduled refresh passes its scheduled time: the UTC date
    keys["date"] = name, replace(date, type=DAY, help=f"{date.help}; or a timestamp (its UTC date)")
    return keys


#: A refresh: the settings of :data:`~tmdb_async.settings.REFRESH_SETTINGS` that have an
#: event key (``tmdb_url`` has none: a function's TMDB is its ``TMDB_BASE_URL``).
REFRESH_EVENT = EventShape(
    "refresh",
    "Fetch again the lake's titles TMDB changed, into the processing date's folder.",
    {
        **_own(
            action=_action("refresh"),
            since=Option(
                "read the change lists from this day (default: the day after the last "
                "refresh); a timestamp gives its UTC date",
                DAY,
            ),
        ),
        **_refresh_settings(),
    },
    required=("action",),
)

#: What the lake holds (:mod:`tmdb_async.jobs.status`): reads, never writes.
STATUS_EVENT = EventShape(
    "status",
    "What the lake holds: per date folder the ids by outcome, the data files and the runs "
    "that wrote them; runs in progress, the refresh state and the id map's size. Reads "
    "ledgers, manifests and state files, never data files; writes nothing.",
    {
        **_own(action=_action("status")),
        **_settings_of("dest"),
        **_own(
            date=Option("this date folder only (YYYY-MM-DD)", DATE),
            failed=Option("list each folder's failed ids with their reasons", BOOL),
        ),
    },
    required=("action",),
)

#: Every event shape the handler takes, in the order it tells them apart.
SHAPES: tuple[EventShape, ...] = (
    PREPARE_EVENT,
    REFRESH_EVENT,
    STATUS_EVENT,
    BATCH_EVENT,
    RUN_EVENT,
)


def events_schema() -> JsonSchema:
    """The JSON Schema of every event :func:`handle` takes, from the same declarations that
    read them (``python -m tmdb_devtools schema`` writes it to ``docs/events.schema.json``).
    Python stays the judge: the schema cannot say that a rate is finite, or that
    ``append_to_response`` has at most 20 names."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "tmdb-ingest Lambda events",
        "description": "The events handler.lambda_handler takes (tmdb_async/events.py). "
        "Generated by `python -m tmdb_devtools schema`; do not edit.",
        "oneOf": [{"$ref": f"#/$defs/{shape.title}"} for shape in SHAPES],
        "$defs": {shape.title: shape.schema() for shape in SHAPES},
    }


def _execution(values: Mapping[str, Any]) -> ExecutionRef | None:
    """The execution a prepare event names (all three fields, or none of them)."""
    given = {k: values[k] for k in _PREPARE_RUN if k in values}
    if not given:
        return None
    missing = [k for k in _PREPARE_RUN if k not in given]
    if missing:
        raise UsageError(
            f"event.{missing[0]}: missing (state_machine, execution and "
            "execution_started go together)"
        )
    return ExecutionRef(given["state_machine"], given["execution"], given["execution_started"])


async def _refresh(
    event: Mapping[str, Any],
    env: Mapping[str, str],
    request_id: str | None,
    remaining: Callable[[], float] | None,
    margin: float,
) -> dict[str, Any]:
    values = REFRESH_EVENT.read(event, "event")
    values.pop("action")
    since = values.pop("since", None)
    settings = _settings(values, "refresh", env)
    settings = settings.with_changes(credentials=await _credentials(env)).validate()
    logsetup.log_context.set({"request_id": request_id, "action": "refresh"})
    _require_time(remaining, margin)
    progress = LogProgress("refresh")
    summary = await refresh(
        settings, since=since, remaining=remaining, safety_margin=margin, progress=progress
    )
    if summary.status == "incomplete":
        raise RefreshIncomplete(
            f"refresh of {summary.date}: stopped at the function's deadline after "
            f"{summary.records + summary.deleted + summary.kept} of {summary.in_lake} titles; "
            "the same event again continues it"
        )
    result = summary.as_dict()
    lag = refresh_lag_days(summary.date, summary.refreshed_through)
    if lag is not None:
        result["lag_days"] = lag  # the handler publishes it: the refresh-lag alarm's metric
    return result


def refresh_lag_days(date: str, refreshed_through: str | None) -> int | None:
    """Days from the last day whose change lists the refresh has read to its processing date:
    1 when the refresh is current (today's reads through yesterday), more when it fell
    behind. ``None`` before any refresh finished. The template's RefreshLagAlarm fires when it
    stays above 2, or is not published at all, for two days."""
    if refreshed_through is None:
        return None
    return (dt.date.fromisoformat(date) - dt.date.fromisoformat(refreshed_through)).days


async def _status(
    event: Mapping[str, Any], env: Mapping[str, str], request_id: str | None
) -> dict[str, Any]:
    values = STATUS_EVENT.read(event, "event")
    settings = _settings({k: v for k, v in values.items() if k == "dest"}, "status", env)
    logsetup.log_context.set({"request_id": request_id, "action": "status"})
    async with open_store(settings.dest, pool=STATUS_CONCURRENCY) as store:
        found = await lake_status(
            store, date=values.get("date"), failed=bool(values.get("failed", False))
        )
    return found.as_dict()
