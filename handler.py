"""AWS Lambda entry point: ``handler.lambda_handler``.

A thin adapter: the event goes to :func:`tmdb_async.events.handle`, the same engine the
command line runs. Sessions (aiohttp, aioboto3) are created inside each invocation's
``asyncio.run``, never at import, so warm starts do not reuse a closed event loop.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from tmdb_async import log
from tmdb_async.events import emf_metrics, handle


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    log.configure(
        level=os.environ.get("TMDB_LOG_LEVEL", "INFO"),
        fmt=os.environ.get("TMDB_LOG_FORMAT", "json"),
        secrets=[os.environ.get("TMDB_READ_ACCESS_TOKEN"), os.environ.get("TMDB_API_KEY")],
        exclusive=True,
    )
    result = asyncio.run(handle(event, context))
    namespace = os.environ.get("TMDB_METRICS_NAMESPACE", "TmdbIngest")
    function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
    print(emf_metrics(result, namespace, function), flush=True)  # CloudWatch EMF reads stdout
    return result
