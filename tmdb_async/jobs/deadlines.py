"""Deadlines: a run stops in time to save what it learned (Lambda's timeout, --time-budget)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from tmdb_async.errors import DeadlineError, UsageError

MIN_MARGIN = 2.0

Remaining = Callable[[], float]
"""Seconds left before a run must have stopped (Lambda's context, or --time-budget)."""


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
