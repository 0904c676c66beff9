"""Settings rules that need no run: the deadline margin, credentials, log levels, rates."""

from __future__ import annotations

import math

import pytest

from tmdb_async.config import (
    Credentials,
    Settings,
    check_time_budget,
    deadline_margin,
    parse_log_level,
)
from tmdb_async.errors import CredentialsError, DeadlineError, ExitCode, UsageError


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
    assert str(caught.value).startswith(f"{variable}: ")
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
        ({"rate": 1000.5}, "rate: 1000.5 is above 1000 requests/s"),
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
    assert Settings(source="m.csv", dest="out", rate=1000).validate().rate == 1000
