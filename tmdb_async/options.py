"""How a setting or an event key is declared: the type of its value, its check, where it comes
from (:class:`Option`), and how a mapping of them is read (:class:`EventShape`).

Checks are data, not closures: each is a small frozen dataclass whose ``check(value, name)``
raises the one-line :class:`~tmdb_async.errors.UsageError` naming its source, and whose
``schema()`` is the same rule as a JSON Schema fragment (``docs/events.schema.json``). A
fragment constrains only values of its JSON type (``minimum`` ignores strings), so a setting
that also takes its text form ("12.5") keeps both readings. The settings themselves are
declared in :mod:`tmdb_async.settings`.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tmdb_async.errors import UsageError


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
    setting: bool = False  # a Settings field's: Settings.validate checks it, naming the setting

    def schema(self) -> JsonSchema:
        """This option as the JSON Schema of an event key: its JSON types and its check."""
        types = [*self.type.schema, *(["null"] if self.nullable else [])]
        fragment: JsonSchema = {"description": self.help, "type": types}
        if self.check is not None:
            fragment.update(self.check.schema())
        if "enum" in fragment and self.nullable:  # an enum holds every allowed value
            fragment["enum"] = [*fragment["enum"], None]
        return fragment


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
            elif not option.setting and option.check is not None:
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
