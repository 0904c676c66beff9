"""The parent side of a measurement: start a client in a child process against a fake server.

:class:`Runner` holds what one invocation shares (the plan, a scratch folder, ``--profile``)
and measures one client run at a time: it resets the fake, samples the fake's CPU time around
the child, and adds the fake's own counts and the per-id figures to the child's report.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, UNLIMITED, Plan
from benchmarks.fake_server import FakeServer, route_counts
from benchmarks.inputs import Input

CHILD_MODULE = "benchmarks.child"


def run_child(spec: dict[str, Any], timeout: float = 900.0) -> dict[str, Any]:
    """Run ``spec`` in a fresh interpreter; return its JSON report."""
    completed = subprocess.run(
        [sys.executable, "-m", CHILD_MODULE, json.dumps(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"child {spec['mode']} failed ({completed.returncode}): {completed.stderr[-3000:]}"
        )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"child {spec['mode']} printed no report: {completed.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(lines[-1])
    return report


class Runner:
    """One invocation's children: the engine, the bare loop and the seeds' loop."""

    def __init__(self, plan: Plan, work: Path, profile: bool) -> None:
        self.plan = plan
        self.work = work  # scratch folder: inputs, engine output, profiles
        self.profile = profile
        self.runs = 0

    def engine(
        self,
        server: FakeServer,
        data: Input,
        *,
        concurrency: int,
        rate: float = UNLIMITED,
        detail: str = "full",
        kind: str = "movie",
        date: str | None = None,
        dest: Path | None = None,
        label: str = "",
    ) -> dict[str, Any]:
        """One engine run into a fresh folder, removed afterwards; or into ``dest``, which
        is kept (the caller's, e.g. for a rerun into the same destination)."""
        self.runs += 1
        out = dest or self.work / f"out-{self.runs}"
        spec: dict[str, Any] = {
            "mode": "engine",
            "url": server.url,
            "csv": str(data.csv),
            "dest": str(out),
            "rate": rate,
            "concurrency": concurrency,
            "detail": detail,
            "kind": kind,
        }
        if date is not None:
            spec["date"] = date
        if self.profile and label:
            spec["profile"] = str(self.work / f"profile-{label}.txt")
        try:
            return self._measure(server, spec)
        finally:
            if dest is None:
                shutil.rmtree(out, ignore_errors=True)

    def bare(
        self, server: FakeServer, data: Input, *, concurrency: int, detail: str = "full"
    ) -> dict[str, Any]:
        spec = {
            "mode": "bare",
            "url": server.url,
            "ids": str(data.id_file),
            "concurrency": concurrency,
            "detail": detail,
        }
        return self._measure(server, spec)

    def seq(self, server: FakeServer, data: Input, *, detail: str = "full") -> dict[str, Any]:
        spec = {"mode": "seq", "url": server.url, "ids": str(data.id_file), "detail": detail}
        return self._measure(server, spec)

    @staticmethod
    def _measure(server: FakeServer, spec: dict[str, Any]) -> dict[str, Any]:
        server.reset()
        cpu0 = server.cpu_seconds()
        report = run_child(spec)
        cpu1 = server.cpu_seconds()
        stats = server.stats()
        report["server"] = {
            "requests": stats["total_requests"],
            "throttled": stats["throttled"],
            "max_in_flight": stats["max_in_flight"],
            "routes": route_counts(stats["path_counts"]),
            "cpu_seconds": None if cpu0 is None or cpu1 is None else round(cpu1 - cpu0, 3),
        }
        report["ids_per_s"] = report["ids"] / report["seconds"] if report["seconds"] else 0.0
        report["cpu_ms_per_id"] = 1000 * (report["cpu_user"] + report["cpu_sys"]) / report["ids"]
        return report
