"""One module per scenario, each with ``run(runner) -> dict`` (its part of the JSON result).

:data:`SCENARIOS` maps the ``--only`` name to the result key and the scenario's ``run``, in
the order a full run measures them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks.runner import Runner
from benchmarks.scenarios import (
    cold_start,
    cpu_bound,
    latency_bound,
    memory,
    rate_bound,
    requests_per_title,
    scaling,
)

Scenario = Callable[[Runner], dict[str, Any]]


def _refresh(runner: Runner) -> dict[str, Any]:
    """Scenario 8, imported when run: the module is also ``python -m
    benchmarks.scenarios.refresh RESULT.json`` (its figures in BENCHMARKS.md), which warns
    when the package has imported it already."""
    from benchmarks.scenarios import refresh

    return refresh.run(runner)


def _fleet(runner: Runner) -> dict[str, Any]:
    """Scenario 9, imported when run, like :func:`_refresh` (``python -m
    benchmarks.scenarios.fleet RESULT.json`` rewrites its figures in BENCHMARKS.md)."""
    from benchmarks.scenarios import fleet

    return fleet.run(runner)


#: ``--only`` name -> (key in the JSON result, the scenario's ``run``)
SCENARIOS: dict[str, tuple[str, Scenario]] = {
    "rate": ("rate_bound", rate_bound.run),
    "latency": ("latency_bound", latency_bound.run),
    "cpu": ("cpu_bound", cpu_bound.run),
    "memory": ("memory", memory.run),
    "cold": ("cold_start", cold_start.run),
    "scaling": ("scaling", scaling.run),
    "requests": ("requests_per_title", requests_per_title.run),
    "refresh": ("refresh", _refresh),
    "fleet": ("fleet", _fleet),
}
