"""Run settings: one frozen dataclass that is also the one schema of every setting.

Each field of :class:`Settings` declares, once, in its :class:`Option` metadata: its type,
default, environment variable, CLI flag, event key and validation. The validation is data
(:mod:`tmdb_async.options`: :class:`Range`, :class:`Choice`, :class:`Finite`, …, frozen
dataclasses with ``check`` and ``schema``), so it can be run, type-checked and read.
Everything else is derived from that declaration: the CLI's options and help
(:mod:`tmdb_async.cli`), the environment reader (:func:`env_defaults`), the event shapes
(:class:`~tmdb_async.options.EventShape`, read and documented as JSON Schema by
:mod:`tmdb_async.events`), :meth:`Settings.validate` and :meth:`Settings.public`.

Every knob has a default that works against the real TMDB (20 connections, 40 requests/s,
``pt-BR``). A value that cannot be parsed names where it came from (``--rate``,
``TMDB_RATE``, ``event.BatchInput.rate``); a value that cannot work is refused by
:meth:`Settings.validate` with a one-line :class:`~tmdb_async.errors.UsageError` naming the
field, before any I/O starts.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, Literal, NamedTuple

from tmdb_async.credentials import Credentials
from tmdb_async.options import (
    BOOL,
    DATE,
    FLOAT,
    INT,
    NAMES,
    All,
    Ceiling,
    Choice,
    EventShape,
    Finite,
    Floor,
    Names,
    NotNegative,
    Option,
    Pattern,
    Positive,
    Range,
    Required,
)

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

# --- the checks of more than one setting (see tmdb_async.options) -------------------------

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


_OPTION = "tmdb_option"


def _opt(**option: Any) -> dict[str, Option]:
    """A Settings field's metadata: ``field(default=…, metadata=_opt(type=…, env=…, …))``."""
    return {_OPTION: Option(**option, setting=True)}


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
            help="processing date in the output path, never after today UTC (default: "
            "today, or the date of an interrupted run of the same job)",
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
            "replace the old (those of other record settings only with --replace)",
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
    replace: bool = field(
        default=False,
        metadata=_opt(
            type=BOOL,
            flag="--replace",
            event="replace",
            batch=True,
            help="let the run replace what the date folder holds from runs with other record "
            "settings (kind, detail, language, append: fetched again), and rewrite its files "
            "of the other format into this one (no request); without it such a run stops "
            "before its first request, naming the difference and its cost",
        ),
    )
    dry_run: bool = field(
        default=False,
        metadata=_opt(
            type=BOOL,
            flag="--dry-run",
            public=None,
            help="send no title request and write nothing: print the distinct ids, what the "
            "date folder keeps, what would be skipped or replaced, and the requests and time "
            "the run would take at --rate (a refresh still reads the change lists)",
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
        "dry_run",
    }
)

#: Distributed Map ``BatchInput`` keys that are not settings but shape two of them: each of
#: ``max_concurrency`` parallel invocations gets ``rate = global_rate / max_concurrency`` and
#: ``concurrency = 20 // max_concurrency``, so the fleet stays under TMDB's per-IP limits.
BATCH_ONLY: dict[str, Option] = {
    "global_rate": Option("requests/s for the whole fleet", FLOAT, check=RATE),
    "max_concurrency": Option("invocations running at once", INT, check=AT_LEAST_1),
}


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
