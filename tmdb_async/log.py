"""Logging set-up: plain text on a terminal, Powertools' JSON lines in Lambda (and in the
local Distributed Map's workers), and a filter that masks the TMDB secret in every record,
whatever logger produced it.

The masking itself lives in :mod:`tmdb_async.redaction`, the one redaction point;
``register_secret``, ``redact`` and ``MASK`` are re-exported here for older imports.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from tmdb_async.options import Choice
from tmdb_async.redaction import MASK, describe_error, redact, register_secret

__all__ = [
    "MASK",
    "ContextFields",
    "RedactSecrets",
    "configure",
    "configure_lambda",
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
        if record.exc_info and record.exc_info[1] is not None:
            # Formatters (Powertools' among them) render exc_info themselves, value included:
            # hand them a stand-in of the same type name whose message is masked.
            kind, value, trace = record.exc_info
            stand_in = type(kind.__name__, (Exception,), {"__module__": kind.__module__})
            record.exc_info = (stand_in, stand_in(self.redact(str(value))), trace)
        record.msg, record.args = self.redact(message), None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class ContextFields(logging.Filter):
    """Copy :data:`log_context` (request id, batch label) onto each record: JSON formatters
    print a record's extra attributes as fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (log_context.get() or {}).items():
            setattr(record, key, value)
        return True


def _json_formatter() -> logging.Formatter:
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    return LambdaPowertoolsFormatter()


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
    handler.addFilter(ContextFields())
    if fmt == "json":
        handler.setFormatter(_json_formatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _install(handler, level)


def configure_lambda(logger: Any, level: str, secrets: Iterable[str | None] = ()) -> None:
    """Every log record, the engine's and the libraries', as a Powertools JSON line (with the
    request id and cold start that ``inject_lambda_context`` put on its formatter), redacted.

    The Lambda runtime's own root handler is removed: it would print each line twice, and
    unredacted.
    """
    for secret in secrets:
        register_secret(secret)
    logger.setLevel(level.upper())
    own = logger.registered_handler
    if not any(isinstance(f, RedactSecrets) for f in own.filters):
        own.addFilter(RedactSecrets())
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logger.registered_formatter)
    handler.addFilter(RedactSecrets())
    handler.addFilter(ContextFields())
    for old in list(logging.getLogger().handlers):
        logging.getLogger().removeHandler(old)
    _install(handler, level)


def _install(handler: logging.Handler, level: str) -> None:
    root = logging.getLogger()
    handler._tmdb_ingest = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # botocore's DEBUG output is huge and its credential lines are not ours to print.
    for noisy in ("botocore", "aiobotocore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))


LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOG_LEVEL = Choice(LOG_LEVELS)


def parse_log_level(value: str, where: str) -> str:
    """One of :data:`LOG_LEVELS`, case-insensitive, else a :class:`UsageError` quoting the
    value as given."""
    level = value.strip().upper()
    if level not in _LOG_LEVEL.choices:
        _LOG_LEVEL.check(value, where)
    return level


def log_level(given: str | None, env: Mapping[str, str], default: str) -> str:
    """The log level: ``given`` (``--log-level``), else ``TMDB_LOG_LEVEL``, else ``default``
    (WARNING for the CLI, INFO for Lambda)."""
    if given is not None:
        return parse_log_level(given, "--log-level")
    configured = env.get("TMDB_LOG_LEVEL", "").strip()
    return parse_log_level(configured, "TMDB_LOG_LEVEL") if configured else default
