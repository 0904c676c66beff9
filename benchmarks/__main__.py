"""Entry point: ``python -m benchmarks [--quick] [--no-chart] [--out FILE] ...`` from the repo root.

Runs the selected scenarios (all by default), writes the JSON result, the chart and, after a
full run, the table in BENCHMARKS.md, and prints one line per figure of the parts it ran.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.chart import write_chart
from benchmarks.common import FULL, LATENCY, MARKDOWN, QUICK, RESULTS, TMDB_RATE, TMP, log
from benchmarks.report import targets, write_markdown
from benchmarks.runner import Runner
from benchmarks.scenarios import SCENARIOS


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmarks of tmdb-ingest against the fake TMDB on loopback.",
    )
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke version")
    parser.add_argument(
        "--out",
        type=Path,
        help="JSON result path (default: results/latest.json, or results/tmp/quick.json)",
    )
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    parser.add_argument(
        "--no-markdown", action="store_true", help="do not rewrite the table in BENCHMARKS.md"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the engine children with pyinstrument (text reports next to the JSON)",
    )
    parser.add_argument(
        "--only",
        choices=tuple(SCENARIOS),
        action="append",
        help="run only these parts (repeatable); the JSON then holds only them",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    out: Path = args.out or (TMP / "quick.json" if args.quick else RESULTS / "latest.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    TMP.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="run-", dir=TMP) as folder:
        runner = Runner(plan, Path(folder), args.profile)
        for name in args.only or SCENARIOS:
            key, scenario = SCENARIOS[name]
            result[key] = scenario(runner)
        if args.profile:
            for report in Path(folder).glob("profile-*.txt"):
                shutil.copy(report, out.parent / report.name)
    result["meta"] = {
        "quick": plan.quick,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "machine": platform.machine() or "unknown",
        "cpus": os.cpu_count(),
        "seconds": time.perf_counter() - started,
        "latency_s": LATENCY,
        "tmdb_rate": TMDB_RATE,
    }
    complete = all(key in result for key, _ in SCENARIOS.values())
    result["targets"] = targets(result)  # the rows of the parts measured (--only: some)
    out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    log(f"wrote {out}")
    if complete and not args.no_chart:
        chart = out.parent / ("quick-scaling.png" if plan.quick else "scaling.png")
        if write_chart(result, chart):
            log(f"wrote {chart}")
    if complete and not plan.quick and not args.no_markdown:
        write_markdown(result)
        log(f"rewrote the table in {MARKDOWN}")
    for row in result["targets"]:
        met = {True: "met", False: "MISSED", None: ""}[row["met"]]
        print(f"{row['figure']:<66} {row['shown']:>9}  {row['target']:<9} {met}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
