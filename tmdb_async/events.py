"""Lambda events → engine calls. ``handler.py`` only hands its event and context here.

Three event shapes (anything else is a :class:`~tmdb_async.errors.UsageError`):

- direct: ``{"source": "s3://…csv", "dest": "s3://bucket", "kind", "date", "offset", "limit",
  …}``, defaults from the same environment variables as the CLI (``TMDB_DEST``, …);
- Step Functions Distributed Map batch: ``{"Items": [{"id": "tt…", …}, …], "BatchInput":
  {"dest", "kind", "date", "global_rate", "max_concurrency"}}``. The request rate of each
  invocation is ``global_rate / max_concurrency`` so the whole fleet stays under TMDB's limit;
- ``{"action": "prepare", "source", "dest"}``: writes the distinct ids of a big CSV as a small
  CSV for the Distributed Map to read, so no id is split across two batches.

The deadline is the context's remaining time: no new chunk starts once less than the safety
margin is left, and the result says where to continue (``next_offset`` or
``remaining_items`` with ``batch_input`` for the state machine's loop).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from . import log as logsetup
from .config import (
    Credentials,
    Settings,
    check_rate,
    clean_secret,
    deadline_margin,
    env_defaults,
    margin_override,
    no_progress,
    parse_append,
    parse_date,
    require_progress,
)
from .errors import CredentialsError, UsageError
from .pipeline import prepare_ids, run
from .storage import parse_s3

logger = logging.getLogger(__name__)

_DIRECT_FIELDS = {
    "source",
    "dest",
    "kind",
    "detail",
    "language",
    "append_to_response",
    "date",
    "offset",
    "limit",
    "chunk_size",
    "format",
    "concurrency",
    "rate",
    "skip_existing",
}
_BATCH_FIELDS = (_DIRECT_FIELDS - {"source", "offset", "limit"}) | {
    "global_rate",
    "max_concurrency",
}
_PREPARE_FIELDS = {"action", "source", "dest"}
_INTS = {"offset", "limit", "chunk_size", "concurrency", "max_concurrency"}
_FLOATS = {"rate", "global_rate"}
_BOOLS = {"skip_existing"}
_TMDB_MAX_CONNECTIONS = 20

_token_cache: dict[str, str] = {}  # SSM parameter name -> token (a string, not a session)


class LambdaContext(Protocol):
    aws_request_id: str

    def get_remaining_time_in_millis(self) -> int: ...


def _typed(fields: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Check the type of each known field; name the field that is wrong."""
    values: dict[str, Any] = {}
    for name, value in fields.items():
        if value is None:
            continue
        if name in _BOOLS:
            if not isinstance(value, bool):
                raise UsageError(f"{where}.{name}: expected true or false, got {value!r}")
            values[name] = value
        elif name in _INTS:
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise UsageError(f"{where}.{name}: expected an integer, got {value!r}")
            try:
                values[name] = int(value)
            except ValueError:
                raise UsageError(f"{where}.{name}: expected an integer, got {value!r}") from None
        elif name in _FLOATS:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise UsageError(f"{where}.{name}: expected a number, got {value!r}")
            try:
                values[name] = float(value)
            except ValueError:
                raise UsageError(f"{where}.{name}: expected a number, got {value!r}") from None
        elif not isinstance(value, str):
            raise UsageError(f"{where}.{name}: expected a string, got {type(value).__name__}")
        else:
            values[name] = value
    return values


def _check_fields(event: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(event) - allowed)
    if unknown:
        raise UsageError(
            f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
        )


def _allowed_buckets(env: Mapping[str, str]) -> set[str]:
    return {b.strip() for b in env.get("TMDB_ALLOWED_BUCKETS", "").split(",") if b.strip()}


def _check_location(
    url: str, field: str, env: Mapping[str, str], local_paths: bool = False
) -> None:
    """Lambda reads and writes S3 only, in allowed buckets, without path tricks."""
    s3 = parse_s3(url, field)
    if s3 is None:
        if local_paths:
            return
        raise UsageError(f"{field}: {url!r} is not an s3:// URL (Lambda has no local files)")
    allowed = _allowed_buckets(env)
    if allowed and s3.bucket not in allowed:
        raise UsageError(f"{field}: bucket {s3.bucket!r} is not allowed (TMDB_ALLOWED_BUCKETS)")
    parts = s3.key.split("/")
    if s3.key.startswith("/") or any(part in ("..", ".") for part in parts) or "\\" in s3.key:
        raise UsageError(f"{field}: {url!r} has '..', '.', '\\' or a leading '/' in its key")


def _settings(
    values: dict[str, Any], source: str, env: Mapping[str, str], local_paths: bool = False
) -> Settings:
    merged: dict[str, Any] = env_defaults(env)
    renames = {"format": "output_format"}
    for name, value in values.items():
        merged[renames.get(name, name)] = value
    if isinstance(merged.get("append_to_response"), str):
        merged["append_to_response"] = parse_append(merged["append_to_response"])
    if isinstance(merged.get("date"), str):
        merged["date"] = parse_date(merged["date"], "event.date")
    merged.setdefault("dest", "")
    if not merged["dest"]:
        raise UsageError("event.dest: missing (or set TMDB_DEST)")
    _check_location(merged["dest"], "event.dest", env, local_paths)
    return Settings(source=source, credentials=Credentials.from_env(env), **merged)


async def _credentials(env: Mapping[str, str]) -> Credentials:
    """Token from the environment, else from SSM Parameter Store (cached per container)."""
    found = Credentials.from_env(env)
    if found.secret:
        return found
    name = env.get("TMDB_TOKEN_SSM_PARAMETER", "")
    if not name:
        raise CredentialsError(
            "no TMDB credentials: set TMDB_TOKEN_SSM_PARAMETER (or TMDB_READ_ACCESS_TOKEN)"
        )
    if name not in _token_cache:
        import aioboto3

        try:
            async with aioboto3.Session().client("ssm") as ssm:
                response = await ssm.get_parameter(Name=name, WithDecryption=True)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            raise CredentialsError(f"SSM parameter {name!r}: cannot read it ({code})") from None
        value = response["Parameter"]["Value"]
        logsetup.register_secret(value)
        token = clean_secret(value, f"SSM parameter {name!r}")
        if token is None:
            raise CredentialsError(f"SSM parameter {name!r}: empty")
        logsetup.register_secret(token)
        _token_cache[name] = token
    return Credentials(read_access_token=_token_cache[name])


_DEADLINE_HINT = "raise the function timeout, or lower MaxItemsPerBatch or the batch's limit"


def _margin(
    context: LambdaContext | None, env: Mapping[str, str]
) -> tuple[Callable[[], float] | None, float]:
    """The invocation's clock and safety margin (:func:`~tmdb_async.config.deadline_margin`
    of the time left at its start)."""
    if context is None:
        return None, 0.0
    remaining = lambda: context.get_remaining_time_in_millis() / 1000  # noqa: E731
    return remaining, deadline_margin(remaining(), margin_override(env))


def _require_time(remaining: Callable[[], float] | None, margin: float) -> None:
    """Less time left than the margin: the run could not even start a chunk."""
    if remaining is not None and remaining() <= margin:
        raise no_progress(margin, _DEADLINE_HINT)


async def handle(
    event: Any,
    context: LambdaContext | None = None,
    env: Mapping[str, str] | None = None,
    *,
    local_paths: bool = False,
) -> dict[str, Any]:
    """Run the job an event describes; return the JSON-able result.

    ``local_paths`` lets source and dest be local paths: only for the local Distributed Map
    driver (:mod:`tmdb_async.local_map`), never in Lambda.
    """
    env = dict(os.environ) if env is None else env
    if not isinstance(event, Mapping):
        raise UsageError(f"event: expected a JSON object, got {type(event).__name__}")
    request_id = getattr(context, "aws_request_id", None)
    remaining, margin = _margin(context, env)

    if event.get("action") == "prepare":
        _check_fields(event, _PREPARE_FIELDS, "event")
        values = _typed({k: v for k, v in event.items() if k != "action"}, "event")
        source = values.get("source") or ""
        _check_location(source, "event.source", env, local_paths)
        settings = _settings({"dest": values.get("dest", "")}, source, env, local_paths)
        logsetup.log_context.set({"request_id": request_id, "action": "prepare"})
        return await prepare_ids(settings)

    if "Items" in event:
        _check_fields(event, {"Items", "BatchInput"}, "event")
        items = event["Items"]
        if not isinstance(items, list):
            raise UsageError("event.Items: expected a list of CSV rows")
        batch = event.get("BatchInput") or {}
        if not isinstance(batch, Mapping):
            raise UsageError("event.BatchInput: expected an object")
        _check_fields(batch, _BATCH_FIELDS, "event.BatchInput")
        values = _typed(batch, "event.BatchInput")
        global_rate = values.pop("global_rate", None)
        fleet = values.pop("max_concurrency", None)
        if fleet is not None and fleet < 1:
            raise UsageError(f"event.BatchInput.max_concurrency: {fleet} must be at least 1")
        if global_rate is not None:
            check_rate(global_rate, "event.BatchInput.global_rate")
        if global_rate is not None:
            values.setdefault("rate", global_rate / (fleet or 1))
        if fleet:
            values.setdefault("concurrency", max(1, _TMDB_MAX_CONNECTIONS // fleet))
        settings = _settings(values, "items", env, local_paths)
        settings = settings.with_changes(credentials=await _credentials(env)).validate()
        label = f"{len(items)} items"
        logsetup.log_context.set({"request_id": request_id, "batch": label})
        _require_time(remaining, margin)
        summary = await run(settings, items=items, remaining=remaining, safety_margin=margin)
        require_progress(summary, margin, _DEADLINE_HINT)
        result = summary.as_dict()
        result["batch_input"] = dict(batch)
        return result

    if "source" in event:
        _check_fields(event, _DIRECT_FIELDS, "event")
        values = _typed(event, "event")
        source = values.pop("source")
        _check_location(source, "event.source", env, local_paths)
        settings = _settings(values, source, env, local_paths)
        settings = settings.with_changes(credentials=await _credentials(env)).validate()
        logsetup.log_context.set(
            {"request_id": request_id, "batch": f"{settings.offset}+{settings.limit}"}
        )
        _require_time(remaining, margin)
        summary = await run(settings, remaining=remaining, safety_margin=margin)
        require_progress(summary, margin, _DEADLINE_HINT)
        return summary.as_dict()

    raise UsageError(
        "event: unknown shape; expected {source, dest, …}, a Distributed Map batch "
        "{Items, BatchInput} or {action: 'prepare', source, dest}"
    )


def emf_metrics(summary: Mapping[str, Any], namespace: str, function: str) -> str:
    """One CloudWatch Embedded Metric Format line for a run's result."""
    names = ["unique_ids", "records", "not_found", "invalid", "failed", "throttled_429", "seconds"]
    return json.dumps(
        {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": namespace,
                        "Dimensions": [["function"]],
                        "Metrics": [
                            {"Name": n, "Unit": "Seconds" if n == "seconds" else "Count"}
                            for n in names
                        ],
                    }
                ],
            },
            "function": function,
            **{n: summary.get(n, 0) for n in names},
        }
    )
