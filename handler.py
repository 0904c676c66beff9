"""AWS Lambda entry point: ``handler.lambda_handler``.

A thin adapter: the event goes to :func:`tmdb_async.events.handle`, the same engine the
command line runs. Sessions (aiohttp, aioboto3) are created inside each invocation's
``asyncio.run``, never at import, so warm starts do not reuse a closed event loop.

Errors reach Lambda sanitized: an :class:`~tmdb_async.errors.IngestError` keeps its class
name (Step Functions matches on it) and any other exception keeps its type name, but the
message is :func:`~tmdb_async.errors.describe_error`'s redacted line and the exception is
raised outside the ``except`` block, ``from None``, so no chained original (which could
hold the secret) is printed by the runtime.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from tmdb_async import log
from tmdb_async.config import log_level, secret_values
from tmdb_async.errors import IngestError, describe_error, redacted_traceback
from tmdb_async.events import emf_metrics, handle

logger = logging.getLogger("tmdb_async")


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    try:
        return _invoke(event, context)
    except Exception as exc:
        failure = _sanitized(exc)
    raise failure from None


def _invoke(event: Any, context: Any) -> dict[str, Any]:
    env = os.environ
    log.configure(
        level=log_level(None, env, "INFO"),
        fmt=env.get("TMDB_LOG_FORMAT", "json"),
        secrets=secret_values(env),
        exclusive=True,
    )
    result = asyncio.run(handle(event, context))
    namespace = env.get("TMDB_METRICS_NAMESPACE", "TmdbIngest")
    function = env.get("AWS_LAMBDA_FUNCTION_NAME", "local")
    print(emf_metrics(result, namespace, function), flush=True)  # CloudWatch EMF reads stdout
    return result


def _sanitized(exc: Exception) -> Exception:
    """A new exception of the same type name whose message is the redacted line."""
    text = describe_error(exc)
    if isinstance(exc, IngestError):
        cls: type[Exception] = type(exc)
    else:  # a bug: its redacted traceback goes to the log, its type name to Lambda
        logger.error("unexpected error\n%s", redacted_traceback(exc))
        cls = type(type(exc).__name__, (Exception,), {"__module__": __name__})
    clone = cls.__new__(cls, text)
    Exception.__init__(clone, text)  # whatever the subclass's own __init__ wants
    return clone
