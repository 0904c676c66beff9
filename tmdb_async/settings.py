"""Run settings: one frozen dataclass that is also the one schema of every setting.

Each field of :class:`Settings` declares, once, in its :class:`Option` metadata: its type,
default, environment variable, CLI flag, event key and validation. The validation is data
(:class:`Range`, :class:`Choice`, :class:`Pattern`, :class:`Finite`, …: frozen dataclasses
with ``check`` and ``schema``), so it can be run, type-checked and read. Everything else is
derived from that declaration: the CLI's options and help (:mod:`tmdb_async.cli`), the
environment reader (:func:`env_defaults`), the event shapes (:class:`EventShape`, read and
documented as JSON Schema by :mod:`tmdb_async.events`), :meth:`Settings.validate` and
:meth:`Settings.public`.

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
from typing import Any, Literal, NamedTuple, Protocol

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
    ``of_json``, whose ValueError means "not one of them") or a string given to ``text``.
    ``schema`` names the JSON types an event may use, the text form's ``string`` included."""

    noun: str  # "expected <noun>" in event errors
    text: Callable[[str, str], Any] | None  # None: no text form (booleans are flags)
    schema: tuple[str, ...]
    json: tuple[type, ...] = ()
    of_json: Callable[[Any], Any] = lambda value: value
    quote: bool = True  # False: a refused value is named by its type only (a big container)

    def from_json(self, value: Any, where: str) -> Any:
        if isinstance(value, self.json) and (bool in self.json or not isinstance(value, bool)):
            try:
                return self.of_json(value)
            except ValueError:
                raise UsageError(f"{where}: expected {self.noun}, got {value!r}") from None
        if not isinstance(value, str) or self.text is None:
            got = repr(value) if self.json and self.quote else type(value).__name__
            raise UsageError(f"{where}: expected {self.noun}, got {got}")
        try:
            return self.text(value, where)
        except UsageError:
            if not self.json:  # a date or name list: the parser's own message
                raise
            raise UsageError(f"{where}: expected {self.noun}, got {value!r}") from None


def _whole(value: float) -> int:
    if not math.isfinite(value) or value != int(value):
        raise ValueError(value)
    return int(value)


def _non_empty(value: str) -> str:
    if not value:
        raise ValueError(value)
    return value


def parse_day(value: str, where: str) -> dt.date:
    """A date, or the UTC date of an RFC 3339 timestamp (EventBridge Scheduler's
    ``<aws.scheduler.scheduled-time>``)."""
    if "T" not in value:
        return parse_date(value, where)
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{where}: {value!r} is not a date or a timestamp") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.date()


TEXT = ValueType("a string", lambda raw, where: raw, ("string",))
INT = ValueType("an integer", _number(int, "an integer"), ("integer", "string"), (int,), int)
FLOAT = ValueType("a number", _number(float, "a number"), ("number", "string"), (int, float), float)
BOOL = ValueType("true or false", None, ("boolean",), (bool,))  # CLI flags and event booleans
NAMES = ValueType("a string", lambda raw, where: parse_append(raw), ("string",))  # "a,b"
DATE = ValueType("a string", parse_date, ("string",))
#: A date or a timestamp (its UTC date): a refresh's ``date`` and ``since``.
DAY = ValueType("a string", parse_day, ("string",))
#: A JSON number that is whole (``4`` or ``4.0``), never a string: a prepare event's counts.
COUNT = ValueType("an integer", None, ("integer",), (int, float), _whole)
#: A non-empty JSON string, never another type: a prepare event's execution identity.
NAME = ValueType("a non-empty string", None, ("string",), (str,), _non_empty)
#: A batch's ``Items`` (CSV rows) and ``BatchInput`` (an object of its own keys).
ROWS = ValueType("a list of CSV rows", None, ("array",), (list,), quote=False)
OBJECT = ValueType("an object", None, ("object",), (Mapping,), quote=False)


# --- checks: data, one rule per setting, its message naming the setting ------------------
#
# Each check is a small frozen dataclass: ``check(value, name)`` raises the one-line
# UsageError, ``schema()`` is the same rule as a JSON Schema fragment (docs/events.schema.json).
# A fragment constrains only values of its JSON type (``minimum`` ignores strings), so a
# setting that also takes its text form ("12.5") keeps both readings.

JsonSchema = dict[str, Any]


class Check(Protocol):
    """A validation rule that can be read: run it, or show it as JSON Schema."""

    def check(self, value: Any, name: str) -> None: ...

    def schema(self) -> JsonSchema: ...


@dataclass(frozen=True, slots=True)
class Required:
    """Not empty; ``hint`` says what to give instead."""

    hint: str

    def check(self, value: Any, name: str) -> None:
        if not value:
            raise UsageError(f"{name}: empty; {self.hint}")

    def schema(self) -> JsonSchema:
        return {"minLength": 1}


@dataclass(frozen=True, slots=True)
class Choice:
    """One of ``choices``."""

    choices: tuple[str, ...]

    def check(self, value: Any, name: str) -> None:
        if value not in self.choices:
            raise UsageError(f"{name}: {value!r} is not one of {', '.join(self.choices)}")

    def schema(self) -> JsonSchema:
        return {"enum": list(self.choices)}


@dataclass(frozen=True, slots=True)
class Pattern:
    """Text matching ``regex`` from its start (``re.match``); ``like`` describes it."""

    regex: str
    like: str  # "{value!r} is not <like>"

    def check(self, value: Any, name: str) -> None:
        if not re.match(self.regex, value):
            raise UsageError(f"{name}: {value!r} is not {self.like}")

    def schema(self) -> JsonSchema:
        return {"pattern": self.regex}


@dataclass(frozen=True, slots=True)
class Names:
    """A list of at most ``most`` names, each matching ``regex`` (TMDB's append_to_response).
    Its text form is ``"a,b"``; the schema's pattern is that text's shape."""

    most: int
    regex: str = r"^[a-z_]+$"

    def check(self, value: tuple[str, ...], name: str) -> None:
        if len(value) > self.most:
            raise UsageError(f"{name}: {len(value)} names, TMDB allows at most {self.most}")
        for part in value:
            if not re.match(self.regex, part):
                raise UsageError(f"{name}: {part!r} is not a TMDB namespace name")

    def schema(self) -> JsonSchema:
        return {"pattern": r"^[\s,]*([a-z_]+\s*(,[\s,]*|$))*$"}


@dataclass(frozen=True, slots=True)
class Range:
    """A whole number from ``low`` to ``high`` (``None``: no upper bound); ``note`` says why
    the bound is there."""

    low: int
    high: int | None = None
    note: str = ""

    def check(self, value: int, name: str) -> None:
        if self.high is None:
            if value < self.low:
                raise UsageError(f"{name}: {value} must be at least {self.low}")
        elif not self.low <= value <= self.high:
            raise UsageError(f"{name}: {value} is outside {self.low}..{self.high}{self.note}")

    def schema(self) -> JsonSchema:
        bounds: JsonSchema = {"minimum": self.low}
        if self.high is not None:
            bounds["maximum"] = self.high
        return bounds


@dataclass(frozen=True, slots=True)
class NotNegative:
    """0 or more (``None``, "not given", passes)."""

    def check(self, value: float | None, name: str) -> None:
        if value is not None and value < 0:
            raise UsageError(f"{name}: {value} is negative")

    def schema(self) -> JsonSchema:
        return {"minimum": 0}


@dataclass(frozen=True, slots=True)
class Finite:
    """Not inf or nan (JSON has neither; a CLI or environment text may: ``1e400``)."""

    def check(self, value: float, name: str) -> None:
        if not math.isfinite(value):
            raise UsageError(f"{name}: {value!r} is not a finite number")

    def schema(self) -> JsonSchema:
        return {}


@dataclass(frozen=True, slots=True)
class Positive:
    """Above 0, in ``unit``."""

    unit: str

    def check(self, value: float, name: str) -> None:
        if not value > 0:
            raise UsageError(f"{name}: {value!r} must be above 0 {self.unit}")

    def schema(self) -> JsonSchema:
        return {"exclusiveMinimum": 0}


@dataclass(frozen=True, slots=True)
class Floor:
    """At least ``low`` ``unit``; ``why`` follows the message."""

    low: float
    unit: str
    why: str = ""

    def check(self, value: float, name: str) -> None:
        if value < self.low:
            raise UsageError(f"{name}: {value!r} is below {self.low:g} {self.unit}{self.why}")

    def schema(self) -> JsonSchema:
        return {"minimum": self.low}


@dataclass(frozen=True, slots=True)
class Ceiling:
    """At most ``high`` ``unit``. ``short`` shows the value with ``:g`` (``1e+300``)."""

    high: float
    unit: str
    short: bool = False

    def check(self, value: float, name: str) -> None:
        if value > self.high:
            shown = f"{value:g}" if self.short else repr(value)
            raise UsageError(f"{name}: {shown} is above {self.high:g} {self.unit}")

    def schema(self) -> JsonSchema:
        return {"maximum": self.high}


@dataclass(frozen=True, slots=True)
class All:
    """Each check in turn: the first that fails is the message."""

    checks: tuple[Check, ...]

    def check(self, value: Any, name: str) -> None:
        for rule in self.checks:
            rule.check(value, name)

    def schema(self) -> JsonSchema:
        merged: JsonSchema = {}
        for rule in self.checks:
            merged.update(rule.schema())
        return merged


#: A request rate that can work: finite, :data:`MIN_RATE` to :data:`MAX_RATE` requests/s.
RATE = All(
    (
        Finite(),
        Positive("requests/s"),
        Floor(
            MIN_RATE,
            "requests/s",
            f" (one request every {1 / MIN_RATE:g} s), too slow to schedule",
        ),
        Ceiling(MAX_RATE, "requests/s"),
    )
)
#: Simultaneous requests: 1 to :data:`MAX_CONCURRENCY`.
CONCURRENCY = Range(1, MAX_CONCURRENCY, f" (TMDB allows {TMDB_MAX_CONNECTIONS} connections per IP)")
#: A count of something that must happen at least once (batches, invocations).
AT_LEAST_1 = Range(1)


# --- the schema ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    """Where a setting comes from and what it may be (the metadata of a Settings field).

    ``flag`` is the CLI option (``SOURCE`` for the positional argument; a boolean's flag
    sets the opposite of its default); ``env`` the environment variable giving a default to
    the CLI and Lambda; ``event`` the key of a direct Lambda event, also allowed in a
    Distributed Map ``BatchInput`` when ``batch``; ``public`` the name in manifests,
    summaries and validation messages (``None``: the setting is not shown). An event key
    whose value is ``null`` is not given, unless not ``nullable``.
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
    nullable: bool = True

    def schema(self) -> JsonSchema:
        """This option as the JSON Schema of an event key: its JSON types and its check."""
        types = [*self.type.schema, *(["null"] if self.nullable else [])]
        fragment: JsonSchema = {"description": self.help, "type": types}
        if self.check is not None:
            fragment.update(self.check.schema())
        if "enum" in fragment and self.nullable:  # an enum holds every allowed value
            fragment["enum"] = [*fragment["enum"], None]
        return fragment


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
            check=Required("give a local CSV path or s3://bucket/key"),
            help="CSV path or s3://bucket/key ('|', ',', ';' or tab)",
        )
    )
    dest: str = field(
        metadata=_opt(
            env="TMDB_DEST",
            flag="--dest",
            event="dest",
            batch=True,
            check=Required("give a local folder or s3://bucket[/prefix]"),
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
            check=Choice(KINDS),
            help="movie, tv, or auto (whichever TMDB has; a movie first when both)",
        ),
    )
    detail: Detail = field(
        default="full",
        metadata=_opt(
            env="TMDB_DETAIL",
            flag="--detail",
            event="detail",
            batch=True,
            check=Choice(DETAILS),
            help="full: the title's details (/3/movie or /3/tv; /find first only when the id map "
            "or the IMDb id does not lead there); find: the short /find item only (no details "
            "request per title, fewer fields)",
        ),
    )
    language: str = field(
        default="pt-BR",
        metadata=_opt(
            env="TMDB_LANGUAGE",
            flag="--language",
            event="language",
            batch=True,
            check=Pattern(r"^[a-z]{2}(-[A-Z]{2})?$", "like pt-BR or en"),
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
            check=Names(MAX_APPEND),
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
            check=NotNegative(),
            help="skip this many distinct ids (first-seen order)",
        ),
    )
    limit: int | None = field(
        default=None,
        metadata=_opt(
            type=INT,
            flag="--limit",
            event="limit",
            check=NotNegative(),
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
            check=Range(1, MAX_CHUNK),
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
            check=Choice(FORMATS),
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
            check=CONCURRENCY,
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
            check=RATE,
            help=f"requests per second, client-wide ({MIN_RATE:g}..{MAX_RATE:g})",
        ),
    )
    max_attempts: int = field(
        default=6,
        metadata=_opt(
            type=INT,
            env="TMDB_MAX_ATTEMPTS",
            flag="--max-attempts",
            check=Range(1, MAX_ATTEMPTS),
            help=f"attempts per request, 1..{MAX_ATTEMPTS} (429, 5xx, timeouts, resets, bad JSON)",
        ),
    )
    request_timeout: float = field(
        default=10.0,
        metadata=_opt(
            type=FLOAT,
            env="TMDB_REQUEST_TIMEOUT",
            flag="--timeout",
            check=All((Finite(), Positive("s"), Ceiling(MAX_TIMEOUT, "s", short=True))),
            help=f"seconds per request (at most {MAX_TIMEOUT:g})",
        ),
    )
    max_backoff: float = field(
        default=30.0,
        metadata=_opt(
            type=FLOAT,
            public=None,
            check=All((Finite(), NotNegative())),
            help="longest wait between retries",
        ),
    )
    tmdb_url: str = field(
        default=DEFAULT_TMDB_URL,
        metadata=_opt(
            env="TMDB_BASE_URL",
            flag="--tmdb-url",
            check=Pattern("^https?://", "an http(s) URL"),
            help="TMDB base URL (point it at the fake)",
        ),
    )
    resume: bool = field(
        default=True,
        metadata=_opt(
            type=BOOL,
            flag="--no-resume",
            help="fetch every id again, even those the date folder already holds from an "
            "equivalent run (same kind, detail, language, append, format); the new records "
            "replace the old",
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
            if spec.option.check is not None:
                spec.option.check.check(value, spec.label)
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
    "global_rate": Option("requests/s for the whole fleet", FLOAT, check=RATE),
    "max_concurrency": Option("invocations running at once", INT, check=AT_LEAST_1),
}


def check_keys(mapping: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """Refuse the first key of ``mapping`` that is not ``allowed``, listing those that are."""
    allowed = set(allowed)
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise UsageError(
            f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
        )


@dataclass(frozen=True, slots=True)
class EventShape:
    """One shape of Lambda event (or of an object inside one): every key it may have, each
    read by an :class:`Option`, and nothing else. The same declaration reads an event
    (:meth:`read`) and documents it (:meth:`schema`, ``docs/events.schema.json``).

    ``keys`` maps an event key to the Settings keyword it gives (or a name of its own) and
    its option. ``required`` are the keys the handler tells this shape by; ``nested`` reads
    a key whose value is an object of its own shape (a batch's ``BatchInput``).
    """

    title: str
    description: str
    keys: Mapping[str, tuple[str, Option]]
    required: tuple[str, ...] = ()
    nested: Mapping[str, EventShape] = field(default_factory=dict)

    def read(self, event: Mapping[str, Any], where: str) -> dict[str, Any]:
        """Keyword -> value: unknown keys refused, each value type-checked (a ``null`` is
        left out), every error naming ``where.key``. A setting's value is checked later by
        :meth:`Settings.validate` (naming the setting); any other key's here."""
        check_keys(event, self.keys, where)
        values: dict[str, Any] = {}
        for key, value in event.items():
            name, option = self.keys[key]
            if value is None and option.nullable:
                continue
            at = f"{where}.{key}"
            values[name] = option.type.from_json(value, at)
            if key in self.nested:
                values[name] = self.nested[key].read(values[name], at)
            elif name not in _SETTING_NAMES and option.check is not None:
                option.check.check(values[name], at)
        return values

    def schema(self) -> JsonSchema:
        properties: JsonSchema = {}
        for key, (_, option) in self.keys.items():
            fragment = option.schema()
            if key in self.nested:
                fragment = {**self.nested[key].schema(), "type": fragment["type"]}
            properties[key] = fragment
        shape: JsonSchema = {
            "title": self.title,
            "description": self.description,
            "type": "object",
            "properties": properties,
        }
        if self.required:
            shape["required"] = list(self.required)
        shape["additionalProperties"] = False
        return shape


_SETTING_NAMES = frozenset(spec.name for spec in SCHEMA)


def _setting_keys(*, batch: bool) -> dict[str, tuple[str, Option]]:
    return {
        s.option.event: (s.name, s.option)
        for s in SCHEMA
        if s.option.event and (s.option.batch or not batch)
    }


#: A direct event: every setting with an event key.
RUN_EVENT = EventShape(
    "run",
    "A direct run: the ids of a CSV on S3 (defaults from the same environment variables as "
    "the CLI).",
    _setting_keys(batch=False),
    required=("source",),
)
#: A Distributed Map batch's ``BatchInput``: the batch settings, and the fleet's two keys.
BATCH_INPUT = EventShape(
    "BatchInput",
    "What every batch of one Distributed Map shares. Each invocation gets "
    "rate = global_rate / max_concurrency and concurrency = 20 // max_concurrency unless "
    "rate or concurrency is given.",
    {**_setting_keys(batch=True), **{key: (key, option) for key, option in BATCH_ONLY.items()}},
)


def event_values(event: Mapping[str, Any], where: str, *, batch: bool = False) -> dict[str, Any]:
    """Settings keywords of a direct event or a BatchInput (:meth:`EventShape.read`). A
    batch's ``global_rate`` / ``max_concurrency`` are checked here and stay in the result
    for :func:`~tmdb_async.jobs.fleet.fleet_share`."""
    return (BATCH_INPUT if batch else RUN_EVENT).read(event, where)
