"""Settings without a run (:mod:`tmdb_async.settings`): the one schema (issue 9), its checks
as data (issue 19), and the rules of issue 8 rows 12-14 (finite rates, the deadline margin,
credentials, log levels)."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable
from dataclasses import fields, is_dataclass, replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import ROOT
from tmdb_async.cli import _parser, settings_from_args
from tmdb_async.credentials import Credentials
from tmdb_async.errors import CredentialsError, DeadlineError, ExitCode, UsageError
from tmdb_async.jobs.deadlines import check_time_budget, deadline_margin
from tmdb_async.jobs.fleet import fleet_share
from tmdb_async.log import parse_log_level
from tmdb_async.options import Choice, Finite, Pattern, Range
from tmdb_async.settings import (
    DEFAULT_APPEND,
    MAX_RATE,
    SCHEMA,
    Settings,
    env_defaults,
    event_values,
    settings_from,
)


@pytest.mark.parametrize(
    ("budget", "margin"), [(5, 2.0), (20, 2.0), (100, 10.0), (900, 60.0), (10_000, 60.0)]
)
def test_one_deadline_margin_rule_ten_percent_between_2_and_60_s(
    budget: float, margin: float
) -> None:
    assert deadline_margin(budget) == margin
    assert deadline_margin(budget, override=7.5) == 7.5  # TMDB_SAFETY_MARGIN_SECONDS


@pytest.mark.parametrize("budget", [0.0, -1.0, math.nan, math.inf, 1.0, 2.0])
def test_a_time_budget_too_short_for_one_chunk_is_a_usage_error(budget: float) -> None:
    with pytest.raises(UsageError, match="--time-budget"):
        check_time_budget(budget)


def test_a_usable_time_budget_gives_its_margin() -> None:
    assert check_time_budget(2.5) == 2.0
    assert check_time_budget(300) == 30.0


def test_a_deadline_error_exits_2_like_any_usage_error() -> None:
    assert DeadlineError.exit_code == ExitCode.BAD_INPUT == 2


def test_a_token_with_a_trailing_carriage_return_is_stripped_and_works() -> None:
    found = Credentials.from_env({"TMDB_READ_ACCESS_TOKEN": " abc.def-123\r\n"})
    assert found.read_access_token == "abc.def-123"
    assert found.headers() == {"Authorization": "Bearer abc.def-123"}
    assert Credentials.from_env({"TMDB_API_KEY": "\t\r\n"}).secret is None  # blank = unset


@pytest.mark.parametrize("variable", ["TMDB_READ_ACCESS_TOKEN", "TMDB_API_KEY"])
@pytest.mark.parametrize("inside", ["\r", "\n", "\x00", "\x7f", " ", "é", "\u00a0"])
def test_a_token_with_control_characters_is_refused_without_echoing_it(
    variable: str, inside: str
) -> None:
    with pytest.raises(CredentialsError) as caught:
        Credentials.from_env({variable: f"zq9-secret{inside}part-7x"})
    assert str(caught.value).startswith(f"{variable} contains a space, control")
    assert "zq9" not in str(caught.value) and "7x" not in str(caught.value)


@pytest.mark.parametrize("value", ["verbose", "", "10", "warn", "INFO2"])
def test_an_unknown_log_level_is_a_usage_error(value: str) -> None:
    with pytest.raises(UsageError, match=r"TMDB_LOG_LEVEL: .* is not one of DEBUG, INFO"):
        parse_log_level(value, "TMDB_LOG_LEVEL")


@pytest.mark.parametrize("value", ["debug", "Info", " WARNING ", "error", "critical"])
def test_log_levels_are_case_insensitive(value: str) -> None:
    assert parse_log_level(value, "--log-level") == value.strip().upper()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rate": math.inf}, "rate: inf is not a finite number"),
        ({"rate": math.nan}, "rate: nan is not a finite number"),
        ({"rate": 10000.5}, "rate: 10000.5 is above 10000 requests/s"),
        ({"rate": 0.0}, "rate: 0.0 must be above 0 requests/s"),
        ({"request_timeout": math.inf}, "request_timeout: inf is not a finite number"),
        ({"request_timeout": 0.0}, "request_timeout: 0.0 must be above 0 s"),
        ({"max_backoff": math.nan}, "max_backoff: nan is not a finite number"),
    ],
)
def test_rate_inf_or_nan_is_a_usage_error_not_a_hang(
    changes: dict[str, float], message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        Settings(source="m.csv", dest="out", **changes).validate()  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_the_highest_rate_is_allowed() -> None:
    assert Settings(source="m.csv", dest="out", rate=MAX_RATE).validate().rate == MAX_RATE


# --- issue 9: one settings schema ----------------------------------------------------------

#: A valid text for each setting with a flag, an environment variable or an event key, and
#: the value it must become, whichever of the three gave it.
SAMPLES: dict[str, tuple[str, object]] = {
    "source": ("s3://data-lake-x/in/movies.csv", "s3://data-lake-x/in/movies.csv"),
    "dest": ("s3://data-lake-x/out", "s3://data-lake-x/out"),
    "kind": ("tv", "tv"),
    "detail": ("find", "find"),
    "language": ("en", "en"),
    "append_to_response": (" credits, videos ,", ("credits", "videos")),
    "date": ("2022-05-02", dt.date(2022, 5, 2)),
    "offset": ("7", 7),
    "limit": ("9", 9),
    "chunk_size": ("50", 50),
    "output_format": ("jsonl", "jsonl"),
    "concurrency": ("4", 4),
    "rate": ("12.5", 12.5),
    "max_attempts": ("3", 3),
    "request_timeout": ("2.5", 2.5),
    "tmdb_url": ("http://127.0.0.1:1", "http://127.0.0.1:1"),
}
PUBLIC_KEYS = [
    "source",
    "dest",
    "kind",
    "detail",
    "language",
    "append_to_response",
    "date",
    "offset",
    "limit",
    "chunk_size",
    "format",
    "concurrency",
    "rate",
    "max_attempts",
    "request_timeout",
    "tmdb_url",
    "resume",
    "skip_existing",
    "replace",
]


def _cli_settings(*argv: str, env: dict[str, str] | None = None) -> Settings:
    args = _parser().parse_args(["run", *argv])
    return settings_from_args(args, {"TMDB_DEST": "out", **(env or {})})


def test_every_setting_is_declared_once_in_the_schema() -> None:
    declared = {spec.name for spec in SCHEMA}
    assert declared == {f.name for f in fields(Settings)} - {"credentials"}
    for attribute in ("flag", "env", "event"):
        names = [getattr(s.option, attribute) for s in SCHEMA if getattr(s.option, attribute)]
        assert len(names) == len(set(names)), f"a {attribute} is used twice"


def test_the_schema_matches_the_readme_configuration_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    by_flag = {s.option.flag: s for s in SCHEMA if s.option.flag}
    documented: set[str] = set()
    for row in table.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`--"):
            continue
        flags = re.findall(r"`(--[a-z-]+)`", cells[0])
        env = re.findall(r"`(TMDB_[A-Z_]+)`", cells[1])
        for flag in flags:
            documented.add(flag)
            if flag in ("--time-budget", "--log-level"):  # run options, not settings
                continue
            assert by_flag[flag].option.env == (env[0] if env else None), flag
            default = cells[2].strip("`")
            if re.fullmatch(r"[0-9.]+", default):
                assert float(by_flag[flag].default) == float(default), flag
            elif cells[2].startswith("`"):
                shown = by_flag[flag].default
                shown = ",".join(shown) if isinstance(shown, tuple) else shown
                assert shown == default, flag
    assert set(by_flag) - {"SOURCE"} <= documented  # every flag is documented


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_setting_means_the_same_from_the_cli_the_environment_and_an_event(name: str) -> None:
    spec = next(s for s in SCHEMA if s.name == name)
    text, expected = SAMPLES[name]
    option = spec.option
    if option.flag == "SOURCE":
        assert _cli_settings(text).source == expected
    elif option.flag:
        assert getattr(_cli_settings("in.csv", option.flag, text), name) == expected
    if option.env:
        assert getattr(settings_from({"source": "in.csv"}, {option.env: text}), name) == expected
        assert env_defaults({option.env: text}) == {name: expected}
    if option.event:
        assert event_values({option.event: text}, "event") == {name: expected}
        if option.batch:
            assert event_values({option.event: text}, "event.BatchInput", batch=True) == {
                name: expected
            }
        if isinstance(expected, int | float):  # as a JSON number too
            assert event_values({option.event: expected}, "event") == {name: expected}


def test_booleans_are_flags_and_event_booleans() -> None:
    assert _cli_settings("in.csv").resume is True
    assert _cli_settings("in.csv", "--no-resume").resume is False
    assert _cli_settings("in.csv", "--skip-existing").skip_existing is True
    assert event_values({"skip_existing": True}, "event") == {"skip_existing": True}
    with pytest.raises(UsageError, match=r"event\.skip_existing: expected true or false"):
        event_values({"skip_existing": "yes"}, "event")


def test_options_override_the_environment_which_overrides_the_defaults() -> None:
    env = {"TMDB_RATE": "20", "TMDB_KIND": "tv", "TMDB_FORMAT": "jsonl"}
    settings = _cli_settings("in.csv", "--rate", "10", env=env)
    assert (settings.rate, settings.kind, settings.output_format) == (10.0, "tv", "jsonl")
    assert settings.detail == "full"  # neither: the default
    from_event = settings_from(event_values({"rate": 5}, "event"), {**env, "TMDB_DEST": "d"})
    assert (from_event.rate, from_event.kind, from_event.dest) == (5.0, "tv", "d")


@pytest.mark.parametrize(
    ("where", "make", "message"),
    [
        ("cli", lambda: _cli_settings("in.csv", "--offset", "x"), "--offset: 'x' is not an"),
        ("cli", lambda: _cli_settings("in.csv", "--date", "5/2"), "--date: '5/2' is not a date"),
        ("cli", lambda: _cli_settings("in.csv", "--kind", "x"), "kind: 'x' is not one of"),
        ("env", lambda: env_defaults({"TMDB_RATE": "fast"}), "TMDB_RATE: 'fast' is not a number"),
        ("env", lambda: env_defaults({"TMDB_CHUNK_SIZE": "1.5"}), "TMDB_CHUNK_SIZE: '1.5' is"),
        ("event", lambda: event_values({"limit": 1.5}, "event"), "event.limit: expected an int"),
        ("event", lambda: event_values({"kind": 1}, "event"), "event.kind: expected a string"),
        (
            "event",
            lambda: event_values({"date": "x"}, "event.BatchInput", batch=True),
            "event.BatchInput.date: 'x' is not a date",
        ),
        ("event", lambda: event_values({"global_rate": 1}, "event"), "unknown field 'global_rate'"),
        (
            "event",
            lambda: event_values({"offset": 1}, "event.BatchInput", batch=True),
            "event.BatchInput: unknown field 'offset'",
        ),
    ],
)
def test_a_malformed_value_names_where_it_came_from(
    where: str, make: Callable[[], object], message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        make()
    assert message in str(caught.value), where


@pytest.mark.parametrize(
    ("batch", "rate", "concurrency"),
    [
        ({"global_rate": 40, "max_concurrency": 4}, 10.0, 5),
        ({"global_rate": 40, "max_concurrency": 3}, 40 / 3, 6),
        ({"global_rate": 40, "max_concurrency": 40}, 1.0, 1),
        ({"global_rate": 30}, 30.0, 20),
        ({"global_rate": 40, "max_concurrency": 4, "rate": 7, "concurrency": 2}, 7.0, 2),
    ],
)
def test_a_batch_gets_its_share_of_the_global_rate_and_connections(
    batch: dict[str, int], rate: float, concurrency: int
) -> None:
    values = fleet_share(event_values(batch, "event.BatchInput", batch=True))
    settings = settings_from(values, {"TMDB_DEST": "d"}, source="items").validate()
    assert (settings.rate, settings.concurrency) == (rate, concurrency)


def test_the_date_is_optional_and_public_shows_it_as_iso_or_null() -> None:
    settings = Settings(source="in.csv", dest="out").validate()
    assert settings.date is None
    assert settings.public()["date"] is None
    dated = settings.with_changes(date=dt.date(2022, 5, 2))
    assert dated.public()["date"] == "2022-05-02"
    assert list(dated.public()) == PUBLIC_KEYS
    assert json.loads(json.dumps(dated.public()))["append_to_response"] == list(DEFAULT_APPEND)
    assert "credentials" not in dated.public() and "max_backoff" not in dated.public()


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_any_rate_is_either_refused_or_finite_and_at_most_max_rate(rate: float) -> None:
    try:
        settings = Settings(source="in.csv", dest="out", rate=rate).validate()
    except UsageError as refused:
        assert str(refused).startswith("rate: ")
    else:
        assert 0 < settings.rate <= MAX_RATE and math.isfinite(settings.rate)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--rate", "5e-324"], {}, "rate: 5e-324 is below 0.01 requests/s"),
        (["--rate", "1e-300"], {}, "rate: 1e-300 is below 0.01 requests/s"),
        ([], {"TMDB_RATE": "1e-310"}, "rate: 1e-310 is below 0.01 requests/s"),
        (["--concurrency", "1000000"], {}, "concurrency: 1000000 is outside 1..100"),
        ([], {"TMDB_CONCURRENCY": "101"}, "concurrency: 101 is outside 1..100"),
        (["--concurrency", "0"], {}, "concurrency: 0 is outside 1..100"),
        (["--max-attempts", "1000000000"], {}, "max_attempts: 1000000000 is outside 1..20"),
        (["--timeout", "1e300"], {}, "request_timeout: 1e+300 is above 300 s"),
    ],
)
def test_every_setting_is_bounded_and_a_value_past_its_bound_is_one_usage_line(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    """A rate too slow to schedule (a silent hang, or a traceback from ``1 / rate``), a
    concurrency that costs memory before the first request: refused before any I/O."""
    with pytest.raises(UsageError) as caught:
        _cli_settings("m.csv", *argv, env=env)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_the_bounds_themselves_are_allowed() -> None:
    settings = _cli_settings("m.csv", "--rate", "0.01", "--concurrency", "100")
    assert (settings.rate, settings.concurrency) == (0.01, 100)


# --- issue 19: the checks are data --------------------------------------------------------


def _checked() -> list[tuple[str, Any]]:
    from tmdb_async.settings import BATCH_ONLY

    options = [(s.label, s.option) for s in SCHEMA] + list(BATCH_ONLY.items())
    return [(name, option) for name, option in options if option.check is not None]


def test_every_check_is_a_frozen_dataclass_that_can_be_read_and_compared() -> None:
    for name, option in _checked():
        check = option.check
        assert is_dataclass(check) and type(check).__dataclass_params__.frozen, name  # type: ignore[attr-defined]
        assert check == replace(check), name  # equal by value: readable, not a closure
        assert isinstance(check.schema(), dict), name
    by_name = dict(_checked())
    assert by_name["concurrency"].check == Range(1, 100, " (TMDB allows 20 connections per IP)")
    assert by_name["kind"].check == Choice(("movie", "tv", "auto"))
    assert by_name["max_concurrency"].check == Range(1)


def _schema_allows(option: Any, value: object) -> bool:
    from jsonschema import Draft202012Validator

    return bool(Draft202012Validator(option.schema()).is_valid(value))


def _check_allows(option: Any, value: object, name: str) -> bool:
    try:
        option.check.check(value, name)
    except UsageError:
        return False
    return True


@given(st.integers(-1_000, 1_000_000) | st.floats(-1e6, 1e6))
def test_a_numeric_check_and_its_json_schema_allow_the_same_numbers(number: float) -> None:
    for name, option in _checked():
        if "number" in option.type.schema or "integer" in option.type.schema:
            value = option.type.from_json(number, name) if isinstance(number, int) else number
            if "integer" in option.type.schema and not isinstance(number, int):
                continue
            assert _check_allows(option, value, name) == _schema_allows(option, number), name


@given(st.text(alphabet="abAB-_,  \tx", max_size=12) | st.sampled_from(["en", "pt-BR", "movie"]))
def test_a_text_check_and_its_json_schema_allow_the_same_strings(text: str) -> None:
    for name, option in _checked():
        if option.type.schema == ("string",) and name not in ("source", "dest"):
            value = option.type.from_json(text, name)
            assert _check_allows(option, value, name) == _schema_allows(option, text), (name, text)


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (Range(1, 100), 0, "x: 0 is outside 1..100"),
        (Range(1), 0, "x: 0 must be at least 1"),
        (Choice(("a", "b")), "c", "x: 'c' is not one of a, b"),
        (Pattern("^https?://", "an http(s) URL"), "ftp://h", "x: 'ftp://h' is not an http(s) URL"),
        (Finite(), math.inf, "x: inf is not a finite number"),
    ],
)
def test_a_check_raises_its_one_line_message(check: Any, value: object, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        check.check(value, "x")
    assert str(caught.value) == message
