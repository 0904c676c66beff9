"""Every exception the package raises on purpose, each operator-facing one with the exit
code the CLI documents.

Expected mistakes (bad input, bad usage, rejected credentials, unreachable storage, a time
budget that leaves no room for one chunk) are raised as :class:`IngestError` subclasses
whose message is one line naming the problem and where it is. The CLI prints that line and
exits with ``exit_code``; the Lambda handler raises it so Step Functions sees the class name
as the error type (the state machine matches on these names: they do not change). Anything
else is a bug: the CLI prints its traceback, redacted.

Every error text shown to an operator goes through :func:`error_line`, the one place
where the TMDB secret is masked.

The hierarchy::

    Exception
    ├── IngestError                 what an operator acts on          exit code
    │   ├── UsageError              an option, variable or event key       2
    │   ├── InputError              the CSV or the event's ids             2
    │   ├── CredentialsError        missing, malformed, or TMDB's 401      2
    │   ├── DeadlineError           the budget leaves no room for a chunk  2
    │   ├── ExecutionAlreadyRunning another execution started first        2
    │   ├── StorageError            source or destination                  3
    │   │   └── DamagedFile         a lake file the ledger cannot read     3
    │   ├── RefreshIncomplete       stopped at the deadline, titles left   4
    │   ├── TmdbUnavailable         a change-list page after every retry   1
    │   └── TmdbUnreachable         no connection to TMDB for a while      5
    │
    │   signals inside the engine, caught where they are meant to be:
    ├── Conflict                    a conditional write or delete lost (storage → ledger)
    ├── LeaseLost                   the folder lock is gone: stop writing (lease → ledger)
    ├── Retryable, Refused          one attempt's failure (client → retry)
    ├── GaveUp                      a request's last failure (retry → client)
    └── LookupFailed                an id could not be looked up (client → chunks: failed)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of ``python -m tmdb_async``."""

    OK = 0  #: every id is accounted for (written, not found or invalid)
    FAILED_IDS = 1  #: some ids failed after all retries (failed entries in _sidecars/)
    #: bad usage, bad input file or event, missing or rejected credentials, or a time budget
    #: too short for one chunk (:class:`DeadlineError`)
    BAD_INPUT = 2
    STORAGE = 3  #: the source or destination could not be read or written
    INCOMPLETE = 4  #: stopped at the time budget having done some ids; continue where it says
    #: TMDB gave no answer at all for a while (no connection, or a server that never answers
    #: HTTP): the run stopped starting ids; the ids it did not finish are not marked failed
    #: (:class:`TmdbUnreachable`)
    UNREACHABLE = 5
    INTERRUPTED = 130  #: stopped by Ctrl-C / SIGTERM


class IngestError(Exception):
    """Base class of the errors an operator is expected to act on."""

    exit_code: ExitCode = ExitCode.BAD_INPUT


class UsageError(IngestError):
    """An option, environment variable or event field has a value that cannot work."""


class InputError(IngestError):
    """The CSV (or the ids of an event) cannot be read as ids."""


class CredentialsError(IngestError):
    """TMDB credentials are missing or malformed, or TMDB rejected them (HTTP 401)."""


class StorageError(IngestError):
    """The source cannot be read or the destination cannot be written."""

    exit_code = ExitCode.STORAGE


class DamagedFile(StorageError):
    """A data or sidecar file the ledger cannot read, so it cannot move ids out of it."""


class DeadlineError(IngestError):
    """A run stopped at its deadline without accounting for a single id.

    Handing the same work back would make the caller (a shell loop on ``--offset``, the state
    machine's loop on ``remaining_items``) repeat it for ever, so this is a usage error (exit
    2): the budget is too short for one chunk. Step Functions matches on the class name.
    """

    exit_code = ExitCode.BAD_INPUT


class RefreshIncomplete(IngestError):
    """A refresh stopped at the Lambda deadline with titles left. Raised, not returned, so
    that Lambda's asynchronous retry runs the same event again (the same processing date),
    which continues it exactly where it stopped."""

    exit_code = ExitCode.INCOMPLETE


class TmdbUnavailable(IngestError):
    """TMDB did not answer a request the refresh cannot do without (a change list page)
    after every retry; nothing is marked refreshed, run it again."""

    exit_code = ExitCode.FAILED_IDS


class TmdbUnreachable(IngestError):
    """No attempt got an answer from TMDB for a while, whatever the id: a DNS failure, a
    refused connection, a TLS failure or a connect timeout, or a server that took the
    connection and never answered HTTP on several requests (the client's breaker,
    :class:`tmdb_async.tmdb.breaker.Breaker`). The run stops starting ids,
    commits what it has and raises this; the ids it did not finish keep what they had (none
    is marked failed), so running it again once TMDB answers continues it. A class of its own
    so that Step Functions tells "TMDB is down" from "this batch failed" (exit code 5)."""

    exit_code = ExitCode.UNREACHABLE


class ExecutionAlreadyRunning(IngestError):
    """Another execution of the same state machine is running and started first (or at the
    same moment with a smaller ARN). The execution fails at once with this error, having
    written nothing; start it again once the other one has finished. Exit code 2, as a
    usage error."""

    exit_code = ExitCode.BAD_INPUT


# --- signals inside the engine: caught where they are meant to be, never shown as such ---


class Conflict(Exception):
    """A conditional write or delete lost: the object is not in the state the caller saw.

    The folder ledger builds its lock on this (S3's ``If-None-Match: *`` and ``If-Match``);
    it never reaches the user as such.
    """


class LeaseLost(Exception):
    """Another writer took the folder lock over, or a storage call outlasted the lease:
    stop writing at once."""


class Retryable(Exception):
    """An attempt that another attempt may fix: ``reason`` says why, ``retry_after`` is the
    server's positive ``Retry-After`` in seconds (or ``None``), ``connection`` that the
    attempt got no answer at all: no connection, or none of an answer's status line and
    headers (what the breaker counts, see :data:`~tmdb_async.tmdb.answers.CONNECTION_ERRORS`)."""

    def __init__(
        self, reason: str, retry_after: float | None = None, *, connection: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.connection = connection


class Refused(Exception):
    """An attempt that another attempt would not fix (a 4xx, an unexpected error)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GaveUp(Exception):
    """The request failed: ``last`` is its last attempt's error, ``attempts`` how many were
    made in all (every round of the hold included)."""

    def __init__(self, last: Retryable | Refused, attempts: int) -> None:
        super().__init__(last.reason)
        self.last = last
        self.attempts = attempts

    @property
    def refused(self) -> bool:
        """Another attempt would get the same answer (not an outage)."""
        return isinstance(self.last, Refused)


class LookupFailed(Exception):
    """An id could not be looked up: retries exhausted, a request TMDB refuses (4xx), or an
    unexpected error while asking. ``reason`` is redacted and safe to write anywhere;
    ``refused`` says another attempt would get the same answer (not an outage)."""

    def __init__(self, reason: str, attempts: int, refused: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts
        self.refused = refused


def error_line(exc: BaseException) -> str:
    """One redacted line for an operator: an :class:`IngestError`'s message as it is, any
    other error as ``Type: message`` (cut to 300 characters). See :mod:`.redaction`."""
    from tmdb_async import redaction

    if isinstance(exc, IngestError):
        return redaction.describe_error(exc, limit=None, with_type=False)
    return redaction.describe_error(exc)


def unwrap_group(exc: BaseException) -> BaseException:
    """The first meaningful error out of a TaskGroup's ExceptionGroup: an
    :class:`IngestError` when there is one (its exit code and class name are what the CLI and
    Step Functions match), else the first error. Any other error is returned as it is."""
    while isinstance(exc, BaseExceptionGroup):
        preferred: list[BaseException] = [e for e in exc.exceptions if isinstance(e, IngestError)]
        exc = (preferred or list(exc.exceptions))[0]
    return exc


@contextlib.contextmanager
def first_error() -> Iterator[None]:
    """Around a TaskGroup: its failure raised as its first error (:func:`unwrap_group`), not
    as an ExceptionGroup."""
    try:
        yield
    except BaseExceptionGroup as group:
        raise unwrap_group(group) from None


def redacted_traceback(exc: BaseException) -> str:
    """The traceback of an unexpected error (a bug), with the secret masked."""
    import traceback

    from tmdb_async.redaction import redact

    return redact("".join(traceback.format_exception(exc)))


def exit_code_of(error_type: str, default: ExitCode) -> ExitCode:
    """The exit code of an :class:`IngestError` named by its class name, as Lambda and Step
    Functions report it (``errorType``); ``default`` for any other name."""
    found = {cls.__name__: cls for cls in _subclasses(IngestError)}.get(error_type)
    return found.exit_code if found is not None else default


def _subclasses(cls: type[IngestError]) -> list[type[IngestError]]:
    return [cls, *(sub for child in cls.__subclasses__() for sub in _subclasses(child))]
