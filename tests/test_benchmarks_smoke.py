"""Smoke run of the benchmark suite (``python -m benchmarks --quick``): catches a collapse.

The quick run is the full suite in miniature (fake TMDB in its own process, every client in
its own process). This test asserts structure and sanity only, never wall-clock times: every
id is accounted for, 429s stay a small share, concurrency helps, memory and CPU figures are
there. Ratios get generous margins, because CI machines are shared and noisy. It needs no
matplotlib (the chart is skipped).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # ~30 s: a dozen child processes and five fake servers


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--no-chart", "--out", out],
        cwd=ROOT,  # ``benchmarks`` is a package at the repository root
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard, not a performance assertion
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _accounted(run: dict[str, Any]) -> None:
    """Every id ended as a record or a not-found; none failed."""
    assert run["failed"] == 0, run
    assert run["records"] + run["not_found"] == run["ids"], run
    assert run["records"] > 0, run


def test_every_part_and_target_is_reported(quick: dict[str, Any]) -> None:
    for part in ("rate_bound", "latency_bound", "cpu_bound", "memory", "cold_start", "scaling"):
        assert part in quick
    assert quick["meta"]["quick"] is True
    keys = {row["key"] for row in quick["targets"]}
    assert {"rate_full_wall", "rate_full_429", "latency_ratio", "cpu_ratio"} <= keys
    assert {"memory_ratio", "memory_peak", "cold_ratio", "scaling_gain"} <= keys
    for row in quick["targets"]:
        assert row["met"] in (True, False, None)
        assert row["value"] == row["value"]  # not NaN


def test_rate_bound_runs_account_for_every_id_with_few_429s(quick: dict[str, Any]) -> None:
    rate = quick["rate_bound"]
    for detail in ("full", "find"):
        part = rate[detail]
        run = part["run"]
        _accounted(run)
        assert run["status"] == "ok"
        assert run["ids"] == rate["ids"]
        # Every request needed was sent (retries only add to it), and the fake saw them all.
        assert run["requests"] >= part["needed_requests"]
        assert run["server"]["requests"] == run["requests"]
        assert part["share_429"] <= 0.25  # generous: a collapse of the limiter shows as ~50%
        assert part["wall_over_ideal"] > 0.5  # faster than TMDB's rate would be a broken limit
    _accounted(rate["sequential"]["run"])


def test_engine_and_bare_loop_agree_and_stay_comparable(quick: dict[str, Any]) -> None:
    for name in ("latency_bound", "cpu_bound"):
        part = quick[name]
        for pair in part["pairs"]:
            _accounted(pair["engine"])
            _accounted(pair["bare"])
            assert pair["engine"]["records"] == pair["bare"]["records"]
        assert part["ratio"] > 0.2, part["ratio"]  # a collapse, not a tuning target
        assert part["engine_cpu_ms_per_id"] > 0
        assert part["bare_cpu_ms_per_id"] > 0


def test_concurrency_helps_as_a_ratio(quick: dict[str, Any]) -> None:
    points = quick["scaling"]["points"]
    assert [p["concurrency"] for p in points] == sorted(p["concurrency"] for p in points)
    low, high = points[0], points[-1]
    for point in points:
        _accounted(point["engine"])
    # c=20 against c=1 at 50 ms latency is ~15-20x in theory; 3x catches a serialised engine.
    assert high["engine_ids_per_s"] > 3 * low["engine_ids_per_s"]


def test_memory_and_cold_start_are_measured(quick: dict[str, Any]) -> None:
    memory = quick["memory"]
    _accounted(memory["small"])
    _accounted(memory["large"])
    assert memory["large"]["ids"] == memory["large_ids"]
    assert 0 < memory["small_peak_mb"] < 256
    assert memory["ratio"] < 2.0  # a leak per id would show even at these sizes
    cold = quick["cold_start"]
    assert set(cold["median_seconds"]) >= {"interpreter", "handler", "libraries"}
    assert "pandas" not in cold["heavy_modules_loaded_by_handler"]
