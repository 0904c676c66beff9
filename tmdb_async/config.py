"""Run settings: one frozen dataclass, validated once, shared by the CLI and Lambda.

Every knob has a default that works against the real TMDB (20 connections, 40 requests/s,
``pt-BR``), and :func:`Settings.validate` rejects values that cannot work with a one-line
:class:`~tmdb_async.errors.UsageError` naming the field, before any I/O starts.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .errors import CredentialsError, DeadlineError, UsageError

Kind = Literal["movie", "tv", "auto"]
Detail = Literal["full", "find"]
OutputFormat = Literal["json", "jsonl"]

KINDS: tuple[str, ...] = ("movie", "tv", "auto")
DETAILS: tuple[str, ...] = ("full", "find")
FORMATS: tuple[str, ...] = ("json", "jsonl")
MAX_CHUNK = 100  # the data lake's contract: never more than 100 records per file
MAX_APPEND = 20  # TMDB answers 400 (code 27) above 20 append_to_response names
DEFAULT_TMDB_URL = "https://api.themoviedb.org"
DEFAULT_APPEND = ("credits", "keywords", "external_ids")
MAX_RATE = 1000.0  # requests/s: 25x TMDB's limit; anything above is a typo, not a plan
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
CREDENTIAL_VARIABLES = ("TMDB_READ_ACCESS_TOKEN", "TMDB_API_KEY")

_LANGUAGE = re.compile(r"^[a-z]{2}(-[A-Z]{2})?$")
_APPEND_NAME = re.compile(r"^[a-z_]+$")


@dataclass(frozen=True, slots=True)
class Credentials:
    """The TMDB secret. ``repr`` never shows it, so it cannot leak through logs of objects."""

    read_access_token: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials:
        """The credentials of the environment, surrounding whitespace stripped; a value with
        a control, space or non-ASCII character inside is a :class:`CredentialsError`."""
        env = os.environ if env is None else env
        return cls(
            read_access_token=clean_secret(
                env.get("TMDB_READ_ACCESS_TOKEN"), "TMDB_READ_ACCESS_TOKEN"
            ),
            api_key=clean_secret(env.get("TMDB_API_KEY"), "TMDB_API_KEY"),
        )

    @property
    def secret(self) -> str | None:
        """The value that must never be printed (for redaction filters)."""
        return self.read_access_token or self.api_key

    def require(self) -> None:
        if not self.secret:
            raise CredentialsError(
                "no TMDB credentials: set TMDB_READ_ACCESS_TOKEN (preferred) or TMDB_API_KEY"
            )

    def headers(self) -> dict[str, str]:
        # Bearer keeps the secret out of URLs, which aiohttp prints in its exceptions.
        if self.read_access_token:
            return {"Authorization": f"Bearer {self.read_access_token}"}
        return {}

    def params(self) -> dict[str, str]:
        if not self.read_access_token and self.api_key:
            return {"api_key": self.api_key}
        return {}

    def __repr__(self) -> str:
        kind = "bearer" if self.read_access_token else "api_key" if self.api_key else "none"
        return f"Credentials({kind}=***)"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything one run needs. Build with keywords; call :meth:`validate` before use."""

    source: str
    dest: str
    credentials: Credentials = field(default_factory=Credentials)
    kind: Kind = "auto"
    detail: Detail = "full"
    language: str = "pt-BR"
    append_to_response: tuple[str, ...] = DEFAULT_APPEND
    date: dt.date = field(default_factory=lambda: dt.datetime.now(dt.UTC).date())
    offset: int = 0
    limit: int | None = None
    chunk_size: int = MAX_CHUNK
    output_format: OutputFormat = "json"
    concurrency: int = 20
    rate: float = 40.0
    max_attempts: int = 6
    request_timeout: float = 10.0
    max_backoff: float = 30.0
    tmdb_url: str = DEFAULT_TMDB_URL
    resume: bool = True
    skip_existing: bool = False

    def validate(self) -> Settings:
        """Raise :class:`UsageError` for the first field that cannot work; return self."""
        if not self.source:
            raise UsageError("source: empty; give a local CSV path or s3://bucket/key")
        if not self.dest:
            raise UsageError("dest: empty; give a local folder or s3://bucket[/prefix]")
        if self.kind not in KINDS:
            raise UsageError(f"kind: {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.detail not in DETAILS:
            raise UsageError(f"detail: {self.detail!r} is not one of {', '.join(DETAILS)}")
        if self.output_format not in FORMATS:
            raise UsageError(f"format: {self.output_format!r} is not one of {', '.join(FORMATS)}")
        if not _LANGUAGE.match(self.language):
            raise UsageError(f"language: {self.language!r} is not like pt-BR or en")
        if len(self.append_to_response) > MAX_APPEND:
            raise UsageError(
                f"append_to_response: {len(self.append_to_response)} names, TMDB allows "
                f"at most {MAX_APPEND}"
            )
        for name in self.append_to_response:
            if not _APPEND_NAME.match(name):
                raise UsageError(f"append_to_response: {name!r} is not a TMDB namespace name")
        if not 1 <= self.chunk_size <= MAX_CHUNK:
            raise UsageError(f"chunk_size: {self.chunk_size} is outside 1..{MAX_CHUNK}")
        if self.offset < 0:
            raise UsageError(f"offset: {self.offset} is negative")
        if self.limit is not None and self.limit < 0:
            raise UsageError(f"limit: {self.limit} is negative")
        if self.concurrency < 1:
            raise UsageError(f"concurrency: {self.concurrency} must be at least 1")
        for name in ("rate", "request_timeout", "max_backoff"):
            _require_finite(getattr(self, name), name)
        check_rate(self.rate, "rate")
        if self.max_attempts < 1:
            raise UsageError(f"max_attempts: {self.max_attempts} must be at least 1")
        if not self.request_timeout > 0:
            raise UsageError(f"request_timeout: {self.request_timeout} must be above 0 s")
        if self.max_backoff < 0:
            raise UsageError(f"max_backoff: {self.max_backoff} is negative")
        if not self.tmdb_url.startswith(("http://", "https://")):
            raise UsageError(f"tmdb_url: {self.tmdb_url!r} is not an http(s) URL")
        return self

    def with_changes(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def public(self) -> dict[str, object]:
        """The settings as written to manifests and summaries: never the secret."""
        return {
            "source": self.source,
            "dest": self.dest,
            "kind": self.kind,
            "detail": self.detail,
            "language": self.language,
            "append_to_response": list(self.append_to_response),
            "date": self.date.isoformat(),
            "offset": self.offset,
            "limit": self.limit,
            "chunk_size": self.chunk_size,
            "format": self.output_format,
            "concurrency": self.concurrency,
            "rate": self.rate,
            "max_attempts": self.max_attempts,
            "request_timeout": self.request_timeout,
            "tmdb_url": self.tmdb_url,
            "resume": self.resume,
            "skip_existing": self.skip_existing,
        }


def parse_date(value: str, where: str = "date") -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: {value!r} is not a date like 2026-11-23") from None


def parse_append(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


#: Environment variables that give defaults to both the CLI and the Lambda handler.
ENV_DEFAULTS: dict[str, str] = {
    "TMDB_BASE_URL": "tmdb_url",
    "TMDB_DEST": "dest",
    "TMDB_KIND": "kind",
    "TMDB_DETAIL": "detail",
    "TMDB_LANGUAGE": "language",
    "TMDB_APPEND_TO_RESPONSE": "append_to_response",
    "TMDB_CHUNK_SIZE": "chunk_size",
    "TMDB_FORMAT": "output_format",
    "TMDB_CONCURRENCY": "concurrency",
    "TMDB_RATE": "rate",
    "TMDB_MAX_ATTEMPTS": "max_attempts",
    "TMDB_REQUEST_TIMEOUT": "request_timeout",
}
_INTS = {"chunk_size", "concurrency", "max_attempts"}
_FLOATS = {"rate", "request_timeout"}


def env_defaults(env: Mapping[str, str] | None = None) -> dict[str, object]:
    """Settings keywords found in the environment; a malformed value names its variable."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for variable, name in ENV_DEFAULTS.items():
        raw = env.get(variable, "").strip()
        if not raw:
            continue
        try:
            if name in _INTS:
                values[name] = int(raw)
            elif name in _FLOATS:
                values[name] = float(raw)
            elif name == "append_to_response":
                values[name] = parse_append(raw)
            else:
                values[name] = raw
        except ValueError:
            raise UsageError(f"{variable}: {raw!r} is not a number") from None
    return values


def _require_finite(value: float, where: str) -> None:
    if not math.isfinite(value):
        raise UsageError(f"{where}: {value!r} is not a finite number")


def check_rate(value: float, where: str) -> float:
    """A request rate that can work: finite, above 0 and at most :data:`MAX_RATE`."""
    _require_finite(value, where)
    if not value > 0:
        raise UsageError(f"{where}: {value!r} must be above 0 requests/s")
    if value > MAX_RATE:
        raise UsageError(f"{where}: {value!r} is above {MAX_RATE:g} requests/s")
    return value


def clean_secret(value: str | None, variable: str) -> str | None:
    """``value`` without surrounding whitespace (a pasted ``\\r`` or newline), ``None`` when
    empty. A control, space or non-ASCII character inside is a :class:`CredentialsError`
    naming ``variable``, never the value."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not all("!" <= char <= "~" for char in value):
        raise CredentialsError(
            f"{variable}: contains a space, control or non-ASCII character; "
            "set it to the TMDB credential alone"
        )
    return value


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """Every spelling of the credentials in ``env`` (as given and stripped), to be masked."""
    env = os.environ if env is None else env
    values: list[str] = []
    for variable in CREDENTIAL_VARIABLES:
        raw = env.get(variable) or ""
        values += [v for v in (raw, raw.strip()) if v and v not in values]
    return values


def parse_log_level(value: str, where: str) -> str:
    """One of :data:`LOG_LEVELS`, case-insensitive, else a :class:`UsageError`."""
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise UsageError(f"{where}: {value!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


def log_level(given: str | None, env: Mapping[str, str], default: str) -> str:
    """The log level: ``given`` (``--log-level``), else ``TMDB_LOG_LEVEL``, else ``default``."""
    if given is not None:
        return parse_log_level(given, "--log-level")
    configured = env.get("TMDB_LOG_LEVEL", "").strip()
    return parse_log_level(configured, "TMDB_LOG_LEVEL") if configured else default


# --- deadlines: one rule for the CLI's --time-budget and Lambda's remaining time -----------

MIN_MARGIN = 2.0
MAX_MARGIN = 60.0


def deadline_margin(budget_seconds: float, override: float | None = None) -> float:
    """Seconds kept back from a time budget to finish in-flight ids and write them: 10% of
    the budget, between 2 and 60 s (``override``: Lambda's ``TMDB_SAFETY_MARGIN_SECONDS``)."""
    if override is not None:
        return override
    return min(MAX_MARGIN, max(MIN_MARGIN, budget_seconds * 0.1))


def margin_override(env: Mapping[str, str]) -> float | None:
    """``TMDB_SAFETY_MARGIN_SECONDS`` when set: finite, 0 or more."""
    raw = env.get("TMDB_SAFETY_MARGIN_SECONDS", "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"TMDB_SAFETY_MARGIN_SECONDS: {raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"TMDB_SAFETY_MARGIN_SECONDS: {raw!r} must be a finite number >= 0")
    return value


def check_time_budget(budget: float, where: str = "--time-budget") -> float:
    """The safety margin of a usable time budget. A budget that is not finite, not above 0,
    or not larger than its margin leaves no time for one chunk: a :class:`UsageError`, not
    an endless continuation."""
    if not math.isfinite(budget) or not budget > 0:
        raise UsageError(f"{where}: {budget!r} must be a finite number of seconds above 0")
    margin = deadline_margin(budget)
    if budget <= margin:
        raise UsageError(
            f"{where}: {budget:g} s leaves no time for one chunk: the last {margin:g} s are "
            f"kept to finish in-flight ids (10% of the budget, {MIN_MARGIN:g}..{MAX_MARGIN:g} s)"
        )
    return margin


def no_progress(margin: float, hint: str) -> DeadlineError:
    return DeadlineError(f"no progress before the deadline ({margin:.0f} s safety margin): {hint}")


def require_progress(summary: Any, margin: float, hint: str) -> None:
    """A run that stopped at its deadline having accounted for no id would hand the same
    work back to a caller that loops on it for ever: :class:`DeadlineError` instead."""
    if summary.status == "incomplete" and summary.unique_ids == 0:
        raise no_progress(margin, hint)
