"""Run settings: one frozen dataclass that is also the one schema of every setting.

Each field of :class:`Settings` declares, once, in its :class:`Option` metadata: its type,
default, environment variable, CLI flag, event key and validation. Everything else is
derived from that declaration: the CLI's options (:mod:`tmdb_async.cli`), the environment
reader (:func:`env_defaults`), the event reader and type checker (:func:`event_values`, used
by :mod:`tmdb_async.events`), :meth:`Settings.validate` and :meth:`Settings.public`.

Every knob has a default that works against the real TMDB (20 connections, 40 requests/s,
``pt-BR``). A value that cannot be parsed names where it came from (``--rate``,
``TMDB_RATE``, ``event.BatchInput.rate``); a value that cannot work is refused by
:meth:`Settings.validate` with a one-line :class:`~tmdb_async.errors.UsageError` naming the
field, before any I/O starts.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, Literal, NamedTuple

from tmdb_async.credentials import Credentials
from tmdb_async.errors import UsageError

MediaType = Literal["movie", "tv"]  # what TMDB calls a title's kind
Kind = Literal["movie", "tv", "auto"]  # a setting: a media type, or each id's own
MEDIA_TYPES: tuple[MediaType, ...] = ("movie", "tv")
Detail = Literal["full", "find"]
OutputFormat = Literal["json", "jsonl"]

KINDS: tuple[str, ...] = ("movie", "tv", "auto")
DETAILS: tuple[str, ...] = ("full", "find")
FORMATS: tuple[str, ...] = ("json", "jsonl")
MAX_CHUNK = 100  # the data lake's contract: never more than 100 records per file
MAX_APPEND = 20  # TMDB answers 400 (code 27) above 20 append_to_response names
MAX_RATE = 10_000.0  # requests/s: 250x TMDB's limit, room for load tests; inf or 1e400 is a typo
#: requests/s: one request every 100 s. Slower is a typo (``5e-324``, ``1e-300``), not a pace:
#: the throttle would wait ``1 / rate`` seconds (longer than the universe is old, or a float
#: overflow) and the run would hang in silence. At this floor a title of two requests takes
#: 200 s, which still fits a Lambda invocation (900 s).
MIN_RATE = 0.01
TMDB_MAX_CONNECTIONS = 20  # per IP: what a Distributed Map fleet shares
#: Simultaneous requests of one process: 5x TMDB's 20 connections per IP, room for load tests
#: and the benchmarks (64) against the fake. Each unit costs a worker and two chunks of
#: queue room up front, so ``1000000`` was 1.5 GB before the first request.
MAX_CONCURRENCY = 100
MAX_ATTEMPTS = 20  # per request: with the backoff's 30 s cap, 20 attempts already wait ~9 min
MAX_TIMEOUT = 300.0  # seconds per request: a third of a Lambda invocation; longer is a stall
DEFAULT_TMDB_URL = "https://api.themoviedb.org"
DEFAULT_APPEND = ("credits", "keywords", "external_ids")

_LANGUAGE = re.compile(r"^[a-z]{2}(-[A-Z]{2})?$")
_APPEND_NAME = re.compile(r"^[a-z_]+$")


# --- value types: one parser for text (CLI, environment) and one for JSON (events) --------


def parse_date(value: str, where: str = "date") -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: {value!r} is not a date like 2026-11-23") from None


def parse_append(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _number(convert: Callable[[str], Any], noun: str) -> Callable[[str, str], Any]:
    def parse(raw: str, where: str) -> Any:
        try:
            return convert(raw)
        except ValueError:
            raise UsageError(f"{where}: {raw!r} is not {noun}") from None

    return parse


@dataclass(frozen=True, slots=True)
class ValueType:
    """How a setting's value is read. ``text`` parses a CLI argument or an environment
    variable (``where`` names it); an event value is one of the ``json`` types (converted by
    ``of_json``) or a string given to ``text``."""

    noun: str  # "expected <noun>" in event errors
    text: Callable[[str, str], Any] | None  # None: no text form (booleans are flags)
    json: tuple[type, ...] = ()
    of_json: Callable[[Any], Any] = lambda value: value

    def from_json(self, value: Any, where: str) -> Any:
        if isinstance(value, self.json) and (bool in self.json or not isinstance(value, bool)):
            return self.of_json(value)
        if not isinstance(value, str) or self.text is None:
            got = repr(value) if self.json else type(value).__name__
            raise UsageError(f"{where}: expected {self.noun}, got {got}")
        try:
            return self.text(value, where)
        except UsageError:
            if not self.json:  # a date or name list: the parser's own message
                raise
            raise UsageError(f"{where}: expected {self.noun}, got {value!r}") from None


TEXT = ValueType("a string", lambda raw, where: raw)
INT = ValueType("an integer", _number(int, "an integer"), (int,), int)
FLOAT = ValueType("a number", _number(float, "a number"), (int, float), float)
BOOL = ValueType("true or false", None, (bool,))  # CLI flags and event booleans
NAMES = ValueType("a string", lambda raw, where: parse_append(raw))  # "a,b" -> ("a", "b")
DATE = ValueType("a string", parse_date)


# --- checks: one rule per setting, its message naming the setting ------------------------

Check = Callable[[Any, str], None]


def _required(hint: str) -> Check:
    def check(value: Any, name: str) -> None:
        if not value:
            raise UsageError(f"{name}: empty; {hint}")

    return check


def _one_of(choices: tuple[str, ...]) -> Check:
    def check(value: Any, name: str) -> None:
        if value not in choices:
            raise UsageError(f"{name}: {value!r} is not one of {', '.join(choices)}")

    return check


def _at_least_1(value: int, name: str) -> None:
    if value < 1:
        raise UsageError(f"{name}: {value} must be at least 1")


def _not_negative(value: float | None, name: str) -> None:
    if value is not None and value < 0:
        raise UsageError(f"{name}: {value} is negative")


def _chunk(value: int, name: str) -> None:
    if not 1 <= value <= MAX_CHUNK:
        raise UsageError(f"{name}: {value} is outside 1..{MAX_CHUNK}")


def _language(value: str, name: str) -> None:
    if not _LANGUAGE.match(value):
        raise UsageError(f"{name}: {value!r} is not like pt-BR or en")


def _append(value: tuple[str, ...], name: str) -> None:
    if len(value) > MAX_APPEND:
        raise UsageError(f"{name}: {len(value)} names, TMDB allows at most {MAX_APPEND}")
    for part in value:
        if not _APPEND_NAME.match(part):
            raise UsageError(f"{name}: {part!r} is not a TMDB namespace name")


def check_rate(value: float, name: str) -> None:
    """A request rate that can work: finite, :data:`MIN_RATE` to :data:`MAX_RATE`."""
    _finite(value, name)
    if not value > 0:
        raise UsageError(f"{name}: {value!r} must be above 0 requests/s")
    if value < MIN_RATE:
        raise UsageError(
            f"{name}: {value!r} is below {MIN_RATE:g} requests/s (one request every "
            f"{1 / MIN_RATE:g} s), too slow to schedule"
        )
    if value > MAX_RATE:
        raise UsageError(f"{name}: {value!r} is above {MAX_RATE:g} requests/s")


def _attempts(value: int, name: str) -> None:
    if not 1 <= value <= MAX_ATTEMPTS:
        raise UsageError(f"{name}: {value} is outside 1..{MAX_ATTEMPTS}")


def _timeout(value: float, name: str) -> None:
    _seconds(value, name)
    if value > MAX_TIMEOUT:
        raise UsageError(f"{name}: {value:g} is above {MAX_TIMEOUT:g} s")


def check_concurrency(value: int, name: str) -> None:
    """Simultaneous requests: 1 to :data:`MAX_CONCURRENCY`."""
    if not 1 <= value <= MAX_CONCURRENCY:
        raise UsageError(
            f"{name}: {value} is outside 1..{MAX_CONCURRENCY} (TMDB allows "
            f"{TMDB_MAX_CONNECTIONS} connections per IP)"
        )


def _seconds(value: float, name: str) -> None:
    if not value > 0:
        raise UsageError(f"{name}: {value} must be above 0 s")


def _http_url(value: str, name: str) -> None:
    if not value.startswith(("http://", "https://")):
        raise UsageError(f"{name}: {value!r} is not an http(s) URL")


def _finite(value: float, name: str) -> None:
    if not math.isfinite(value):
        raise UsageError(f"{name}: {value!r} is not a finite number")


# --- the schema ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    """Where a setting comes from and what it may be (the metadata of a Settings field).

    ``flag`` is the CLI option (``SOURCE`` for the positional argument; a boolean's flag
    sets the opposite of its default); ``env`` the environment variable giving a default to
    the CLI and Lambda; ``event`` the key of a direct Lambda event, also allowed in a
    Distributed Map ``BatchInput`` when ``batch``; ``public`` the name in manifests,
    summaries and validation messages (``None``: the setting is not shown).
    """

    help: str
    type: ValueType = TEXT
    check: Check | None = None
    env: str | None = None
    flag: str | None = None
    event: str | None = None
    batch: bool = False
    public: str | None = ""  # "": the field's own name
    metavar: str | None = None


_OPTION = "tmdb_option"


def _opt(**option: Any) -> dict[str, Option]:
    """A Settings field's metadata: ``field(default=…, metadata=_opt(type=…, env=…, …))``."""
    return {_OPTION: Option(**option)}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything one run needs. Build with keywords; call :meth:`validate` before use."""

    source: str = field(
        metadata=_opt(
            flag="SOURCE",
            event="source",
            check=_required("give a local CSV path or s3://bucket/key"),
            help="CSV path or s3://bucket/key ('|', ',', ';' or tab)",
        )
    )
    dest: str = field(
        metadata=_opt(
            env="TMDB_DEST",
            flag="--dest",
            event="dest",
            batch=True,
            check=_required("give a local folder or s3://bucket[/prefix]"),
            help="local folder or s3://bucket[/prefix]",
        )
    )
    credentials: Credentials = field(default_factory=Credentials)
    kind: Kind = field(
        default="auto",
        metadata=_opt(
            env="TMDB_KIND",
            flag="--kind",
            event="kind",
            batch=True,
            check=_one_of(KINDS),
            metavar="{movie,tv,auto}",
            help="movie, tv, or auto (whatever /find returns)",
        ),
    )
    detail: Detail = field(
        default="full",
        metadata=_opt(
            env="TMDB_DETAIL",
            flag="--detail",
            event="detail",
            batch=True,
            check=_one_of(DETAILS),
            metavar="{full,find}",
            help="full: /find + /movie or /tv details; find: /find only (half the requests)",
        ),
    )
    language: str = field(
        default="pt-BR",
        metadata=_opt(
            env="TMDB_LANGUAGE",
            flag="--language",
            event="language",
            batch=True,
            check=_language,
            help="TMDB language",
        ),
    )
    append_to_response: tuple[str, ...] = field(
        default=DEFAULT_APPEND,
        metadata=_opt(
            type=NAMES,
            env="TMDB_APPEND_TO_RESPONSE",
            flag="--append",
            event="append_to_response",
            batch=True,
            check=_append,
            metavar="A,B",
            help=f"TMDB append_to_response names (at most {MAX_APPEND})",
        ),
    )
    #: ``None``: not given; the engine resolves it when the run starts (today, UTC, or the
    #: date of an interrupted run of the same job).
    date: dt.date | None = field(
        default=None,
        metadata=_opt(
            type=DATE,
            flag="--date",
            event="date",
            batch=True,
            metavar="YYYY-MM-DD",
            help="processing date in the output path (default: today UTC, or the date of an "
            "interrupted run of the same job)",
        ),
    )
    offset: int = field(
        default=0,
        metadata=_opt(
            type=INT,
            flag="--offset",
            event="offset",
            check=_not_negative,
            help="skip this many distinct ids (first-seen order)",
        ),
    )
    limit: int | None = field(
        default=None,
        metadata=_opt(
            type=INT,
            flag="--limit",
            event="limit",
            check=_not_negative,
            help="take at most this many distinct ids (default all)",
        ),
    )
    chunk_size: int = field(
        default=MAX_CHUNK,
        metadata=_opt(
            type=INT,
            env="TMDB_CHUNK_SIZE",
            flag="--chunk-size",
            event="chunk_size",
            batch=True,
            check=_chunk,
            help=f"records per file, 1..{MAX_CHUNK}",
        ),
    )
    output_format: OutputFormat = field(
        default="json",
        metadata=_opt(
            env="TMDB_FORMAT",
            flag="--format",
            event="format",
            batch=True,
            public="format",
            check=_one_of(FORMATS),
            metavar="{json,jsonl}",
            help="json (an array) or jsonl (one object per line, for Athena/Spark)",
        ),
    )
    concurrency: int = field(
        default=TMDB_MAX_CONNECTIONS,
        metadata=_opt(
            type=INT,
            env="TMDB_CONCURRENCY",
            flag="--concurrency",
            event="concurrency",
            batch=True,
            check=check_concurrency,
            help=f"simultaneous requests, 1..{MAX_CONCURRENCY} (TMDB: 20 connections per IP)",
        ),
    )
    rate: float = field(
        default=40.0,
        metadata=_opt(
            type=FLOAT,
            env="TMDB_RATE",
            flag="--rate",
            event="rate",
            batch=True,
            check=check_rate,
            help=f"requests per second, client-wide ({MIN_RATE:g}..{MAX_RATE:g})",
        ),
    )
    max_attempts: int = field(
        default=6,
        metadata=_opt(
            type=INT,
            env="TMDB_MAX_ATTEMPTS",
            flag="--max-attempts",
            check=_attempts,
            help=f"attempts per request, 1..{MAX_ATTEMPTS} (429, 5xx, timeouts, resets, bad JSON)",
        ),
    )
    request_timeout: float = field(
        default=10.0,
        metadata=_opt(
            type=FLOAT,
            env="TMDB_REQUEST_TIMEOUT",
            flag="--timeout",
            check=_timeout,
            help=f"seconds per request (at most {MAX_TIMEOUT:g})",
        ),
    )
    max_backoff: float = field(
        default=30.0,
        metadata=_opt(
            type=FLOAT, public=None, check=_not_negative, help="longest wait between retries"
        ),
    )
    tmdb_url: str = field(
        default=DEFAULT_TMDB_URL,
        metadata=_opt(
            env="TMDB_BASE_URL",
            flag="--tmdb-url",
            check=_http_url,
            help="TMDB base URL (point it at the fake)",
        ),
    )
    resume: bool = field(
        default=True,
        metadata=_opt(
            type=BOOL,
            flag="--no-resume",
            help="redo every chunk, even those an interrupted earlier run of this job finished",
        ),
    )
    skip_existing: bool = field(
        default=False,
        metadata=_opt(
            type=BOOL,
            flag="--skip-existing",
            event="skip_existing",
            batch=True,
            help="incremental: skip ids earlier runs already wrote under <dest>/Raw/TMDB/JSON/",
        ),
    )

    def validate(self) -> Settings:
        """Raise :class:`UsageError` for the first setting that cannot work; return self."""
        for spec in SCHEMA:
            value = getattr(self, spec.name)
            if spec.option.type is FLOAT:
                _finite(value, spec.label)
            if spec.option.check is not None:
                spec.option.check(value, spec.label)
        return self

    def with_changes(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def public(self) -> dict[str, object]:
        """The settings as written to manifests and summaries: never the secret."""
        shown = {}
        for spec in SCHEMA:
            if spec.option.public is not None:
                value = getattr(self, spec.name)
                if isinstance(value, tuple):
                    value = list(value)
                elif isinstance(value, dt.date):
                    value = value.isoformat()
                shown[spec.label] = value
        return shown


class Spec(NamedTuple):
    """One setting of the schema: its field, its default and its :class:`Option`."""

    name: str
    default: Any
    option: Option

    @property
    def label(self) -> str:
        """The name in messages, manifests and summaries (``format`` for output_format)."""
        return self.option.public or self.name


#: Every setting, in the order of the dataclass (and of ``public()``).
SCHEMA: tuple[Spec, ...] = tuple(
    Spec(f.name, f.default, f.metadata[_OPTION]) for f in fields(Settings) if _OPTION in f.metadata
)

#: Environment variable -> field, derived from the schema (kept for older callers).
ENV_DEFAULTS: dict[str, str] = {s.option.env: s.name for s in SCHEMA if s.option.env}


def _text(spec: Spec, raw: str, where: str) -> Any:
    parse = spec.option.type.text
    assert parse is not None, f"{spec.name} has no text form"
    return parse(raw, where)


def env_defaults(env: Mapping[str, str] | None = None) -> dict[str, object]:
    """Settings keywords found in the environment; a malformed value names its variable."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for spec in SCHEMA:
        name = spec.option.env
        raw = env.get(name, "").strip() if name else ""
        if name and raw:
            values[spec.name] = _text(spec, raw, name)
    return values


def settings_from(
    given: Mapping[str, Any], env: Mapping[str, str] | None = None, **fixed: Any
) -> Settings:
    """Settings from ``given`` keywords over the environment's over the defaults, with the
    environment's credentials (not validated yet)."""
    env = os.environ if env is None else env
    values = {**env_defaults(env), **given, **fixed}
    for spec in SCHEMA:  # source and dest have no default: empty until validate() says so
        if spec.default is MISSING:
            values.setdefault(spec.name, "")
    return Settings(credentials=Credentials.from_env(env), **values)


# --- Lambda events ---------------------------------------------------------------------------

#: The settings ``refresh`` takes (command line and event): where, when and how fast. What
#: each title is fetched with comes from the id map (how it was ingested); language, append
#: and format serve titles whose settings the map does not know.
REFRESH_SETTINGS = frozenset(
    {
        "dest",
        "date",
        "language",
        "append_to_response",
        "chunk_size",
        "output_format",
        "concurrency",
        "rate",
        "max_attempts",
        "request_timeout",
        "tmdb_url",
    }
)

#: Distributed Map ``BatchInput`` keys that are not settings but shape two of them: each of
#: ``max_concurrency`` parallel invocations gets ``rate = global_rate / max_concurrency`` and
#: ``concurrency = 20 // max_concurrency``, so the fleet stays under TMDB's per-IP limits.
BATCH_ONLY: dict[str, Option] = {
    "global_rate": Option("requests/s for the whole fleet", FLOAT, check=check_rate),
    "max_concurrency": Option("invocations running at once", INT, check=_at_least_1),
}


def event_keys(*, batch: bool) -> dict[str, tuple[str, Option]]:
    """Event key -> (settings keyword, option): a direct event's, or a BatchInput's."""
    keys = {
        s.option.event: (s.name, s.option)
        for s in SCHEMA
        if s.option.event and (s.option.batch or not batch)
    }
    if batch:
        keys.update({key: (key, option) for key, option in BATCH_ONLY.items()})
    return keys


def check_keys(mapping: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """Refuse the first key of ``mapping`` that is not ``allowed``, listing those that are."""
    allowed = set(allowed)
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise UsageError(
            f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
        )


def event_values(event: Mapping[str, Any], where: str, *, batch: bool = False) -> dict[str, Any]:
    """Settings keywords of a direct event or a BatchInput: unknown keys refused, each value
    type-checked (a ``null`` is left out), every error naming ``where.key``. A batch's
    ``global_rate`` / ``max_concurrency`` are checked here and stay in the result for
    :func:`fleet_share`."""
    keys = event_keys(batch=batch)
    check_keys(event, keys, where)
    values: dict[str, Any] = {}
    for key, value in event.items():
        if value is None:
            continue
        name, option = keys[key]
        values[name] = option.type.from_json(value, f"{where}.{key}")
        if key in BATCH_ONLY and batch and option.check is not None:
            option.check(values[name], f"{where}.{key}")
    return values


# --- credentials and logging -----------------------------------------------------------------


# --- deadlines: one rule for the CLI's --time-budget and Lambda's remaining time -----------
