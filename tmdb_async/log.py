"""Logging set-up: plain text on a terminal, one JSON object per line in Lambda, and a
filter that masks the TMDB secret in every record, whatever logger produced it.

The masking itself lives in :mod:`tmdb_async.redaction`, the one redaction point;
``register_secret``, ``redact`` and ``MASK`` are re-exported here for older imports.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

from .redaction import MASK, describe_error, redact, register_secret

__all__ = [
    "MASK",
    "JsonFormatter",
    "RedactSecrets",
    "configure",
    "describe_error",
    "log_context",
    "redact",
    "register_secret",
]

#: Fields added to every JSON log line (Lambda request id, batch label).
log_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "tmdb_ingest_log_context", default=None
)


class RedactSecrets(logging.Filter):
    """Mask credentials in the rendered message, the exception text and the stack: every
    registered secret, and ``api_key=…`` / ``Bearer …`` values even when none is registered
    (see :func:`tmdb_async.redaction.redact`)."""

    def redact(self, text: str) -> str:
        return redact(text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = self.redact(message), None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, as CloudWatch Logs Insights likes it."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(log_context.get() or {})
        if record.exc_info or record.exc_text:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(
    level: str = "INFO",
    fmt: str = "text",
    secrets: Iterable[str | None] = (),
    exclusive: bool = False,
) -> None:
    """Route all logging through one stderr handler that redacts ``secrets``.

    The filter sits on the handler, not a logger, so records of aiohttp, botocore or any
    library are masked too. ``exclusive`` removes every other root handler (in Lambda the
    runtime installs its own, which would print each line twice and unredacted).
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if exclusive or getattr(handler, "_tmdb_ingest", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._tmdb_ingest = True  # type: ignore[attr-defined]
    for secret in secrets:
        register_secret(secret)
    handler.addFilter(RedactSecrets())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # botocore's DEBUG output is huge and its credential lines are not ours to print.
    for noisy in ("botocore", "aiobotocore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
