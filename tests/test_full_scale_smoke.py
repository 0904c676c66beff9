"""Smoke run of the full-size benchmark (``python -m benchmarks.full_scale --quick``).

A few thousand ids through the same steps as the 300,000-id run (moto's S3 and the fake TMDB
in their own processes, the CLI and the Lambda event entry): catches a collapse of the
benchmark or of what it measures. Counts and ratios that cannot flake only, never seconds.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from tests.support.bench import run_quick

pytestmark = pytest.mark.slow  # ~10 s: moto, the fake TMDB and five CLI runs


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out: Path = tmp_path_factory.mktemp("full-scale") / "full_scale.json"
    return run_quick("benchmarks.full_scale", out)


def test_the_ingest_accounts_for_every_id_and_uploads_its_data(quick: dict[str, Any]) -> None:
    ingest = quick["ingest"]
    summary = ingest["summary"]
    assert summary["status"] == "ok" and summary["failed"] == 0
    assert summary["records"] + summary["not_found"] == summary["unique_ids"]
    assert summary["unique_ids"] == quick["ids"] - quick["set_aside"]
    # Every data byte went up at least once, and the ratio is a number.
    assert ingest["data_bytes"] > 0
    assert math.isfinite(ingest["uploaded_over_data"]) and ingest["uploaded_over_data"] >= 1
    assert ingest["s3_requests_per_100_records"]["PUT"] > 0
    assert ingest["tenths_ids_per_second"] and min(ingest["tenths_ids_per_second"]) > 0


def test_a_batch_opens_the_full_folder_without_reading_the_whole_lake(
    quick: dict[str, Any],
) -> None:
    batch = quick["batch"]
    for side in ("empty", "new_day", "full"):
        assert batch[side]["records"] + batch[side]["not_found"] == quick["batch_ids"]
        assert batch[side]["open_seconds"] is not None  # it reached TMDB
    assert batch["full"]["bytes_read"] < quick["ingest"]["data_bytes"]


def test_the_rerun_of_the_whole_file_asks_tmdb_nothing(quick: dict[str, Any]) -> None:
    rerun = quick["noop_rerun"]
    assert rerun["tmdb_requests"] == 0 and rerun["records"] == 0


def test_a_small_lakes_refresh_costs_no_more_than_fetching_the_lake(
    quick: dict[str, Any],
) -> None:
    small, full = quick["refresh"]["small"], quick["refresh"]["full"]
    assert small["status"] == full["status"] == "ok"
    assert small["requests"] <= quick["small_lake_ingest"] + small["list_pages"]
    assert small["list_pages"] < full["list_pages"]  # it stopped reading the lists early
