"""Errors the engine raises on purpose, each with the exit code the CLI documents.

Expected mistakes (bad input, bad usage, rejected credentials, unreachable storage) are
raised as :class:`IngestError` subclasses whose message is one line naming the problem
and where it is. The CLI prints that line and exits with ``exit_code``; the Lambda
handler raises it so Step Functions sees the class name as the error type. Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of ``python -m tmdb_async``."""

    OK = 0  #: every id is accounted for (written, not found or invalid)
    FAILED_IDS = 1  #: some ids failed after all retries (listed in the _failed sidecar)
    BAD_INPUT = 2  #: bad usage, bad input file or event, missing or rejected credentials
    STORAGE = 3  #: the source or destination could not be read or written
    INCOMPLETE = 4  #: stopped at the time budget; the summary says where to continue
    INTERRUPTED = 130  #: stopped by Ctrl-C / SIGTERM


class IngestError(Exception):
    """Base class of the errors an operator is expected to act on."""

    exit_code: ExitCode = ExitCode.BAD_INPUT


class UsageError(IngestError):
    """An option or event field has a value that cannot work."""


class InputError(IngestError):
    """The CSV (or the ids of an event) cannot be read as ids."""


class CredentialsError(IngestError):
    """TMDB credentials are missing, or TMDB rejected them (HTTP 401)."""


class StorageError(IngestError):
    """The source cannot be read or the destination cannot be written."""

    exit_code = ExitCode.STORAGE


class DeadlineError(IngestError):
    """A Lambda invocation had too little time left to finish even one chunk."""

    exit_code = ExitCode.INCOMPLETE
