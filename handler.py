"""AWS Lambda entry point: ``handler.lambda_handler``.

A thin adapter: the event goes to :func:`tmdb_async.events.handle`, the same engine the
command line runs. Sessions (aiohttp, aioboto3) are created inside each invocation's
``asyncio.run``, never at import, so warm starts do not reuse a closed event loop.

Lambda plumbing comes from Powertools for AWS Lambda: its ``Logger`` writes every log line
(the engine's and the libraries', through :func:`tmdb_async.log.configure_lambda`, which
keeps the secret redaction) as JSON with the request id and cold start; its ``Metrics``
publish the run's counts in CloudWatch Embedded Metric Format.

Errors reach Lambda sanitized: an :class:`~tmdb_async.errors.IngestError` keeps its class
name (Step Functions matches on it) and any other exception keeps its type name, but the
message is :func:`~tmdb_async.errors.error_line`'s redacted line and the exception is
raised outside the ``except`` block, ``from None``, so no chained original (which could
hold the secret) is printed by the runtime.

Tracing (X-Ray) is off unless the stack turns it on (template parameter ``Tracing``, which
the function sees as ``TMDB_TRACING=Active``). Only then is Powertools' ``Tracer`` built:
building it imports the X-Ray SDK even when disabled, which a cold start without tracing
should not pay; ``POWERTOOLS_TRACE_DISABLED`` set true still turns it off. The Tracer
records the handler's subsegment (cold start annotation, the sanitized error) but patches no
library: the engine's requests run concurrently as asyncio tasks in one thread, and the
X-Ray SDK's Lambda context keeps one subsegment stack per thread, so per-request
subsegments would nest under whichever request happened to be open.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from tmdb_async import log
from tmdb_async.credentials import secret_values
from tmdb_async.errors import IngestError, error_line, redacted_traceback
from tmdb_async.events import handle
from tmdb_async.log import log_level

SERVICE = "tmdb-ingest"
powertools_logger = Logger(service=SERVICE)
metrics = Metrics(namespace=os.environ.get("TMDB_METRICS_NAMESPACE", "TmdbIngest"), service=SERVICE)
logger = logging.getLogger("tmdb_async")
_COUNTS = (
    "unique_ids",
    "records",
    "not_found",
    "invalid",
    "failed",
    "kept",
    "skipped",
    "deleted",  # a refresh's
    "in_lake",
    "list_pages",
    "requests",
    "throttled_429",
    "lag_days",  # a refresh's: days from the last change list read to its date
)

_Handler = Callable[[Any, Any], dict[str, Any]]


def tracing_enabled(env: Mapping[str, str]) -> bool:
    """On only in Lambda and only when the stack says so, so that tests and local runs
    never build the Tracer; Powertools' own switch, set true, still wins."""
    powertools_off = env.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() in _TRUTHY
    return "LAMBDA_TASK_ROOT" in env and env.get("TMDB_TRACING") == "Active" and not powertools_off


_TRUTHY = frozenset({"1", "true", "yes", "on", "y", "t"})


def _traced(function: _Handler) -> _Handler:
    if not tracing_enabled(os.environ):
        return function
    from aws_lambda_powertools import Tracer

    tracer = Tracer(service=SERVICE, auto_patch=False)
    # The response holds id lists that can pass X-Ray's 64 KB segment limit: not recorded.
    traced: _Handler = tracer.capture_lambda_handler(function, capture_response=False)
    return traced


@_traced
@metrics.log_metrics
@powertools_logger.inject_lambda_context
def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    try:
        return _invoke(event, context)
    except Exception as exc:
        metrics.add_metric(name="errors", unit=MetricUnit.Count, value=1)
        failure = _sanitized(exc)
    raise failure from None


def _invoke(event: Any, context: Any) -> dict[str, Any]:
    env = os.environ
    log.configure_lambda(powertools_logger, log_level(None, env, "INFO"), secret_values(env))
    result = asyncio.run(handle(event, context))
    for name in _COUNTS:
        if isinstance(result.get(name), int):
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=result[name])
    if isinstance(result.get("seconds"), float | int):
        metrics.add_metric(name="seconds", unit=MetricUnit.Seconds, value=result["seconds"])
    return result


def _sanitized(exc: Exception) -> Exception:
    """A new exception of the same type name whose message is the redacted line."""
    text = error_line(exc)
    if isinstance(exc, IngestError):
        cls: type[Exception] = type(exc)
    else:  # a bug: its redacted traceback goes to the log, its type name to Lambda
        logger.error("unexpected error\n%s", redacted_traceback(exc))
        cls = type(type(exc).__name__, (Exception,), {"__module__": __name__})
    clone = cls.__new__(cls, text)
    Exception.__init__(clone, text)  # whatever the subclass's own __init__ wants
    return clone
