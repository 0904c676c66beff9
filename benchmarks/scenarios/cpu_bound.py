"""3. CPU-bound: no limit, no latency, concurrency 64, output to a local folder.

Engine ids/s ÷ bare aiohttp ids/s and the CPU ms per id of each (median of alternating
pairs), plus the fake server's own CPU ms per id (it shares the machine's two cores).
"""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.fake_server import FakeServer
from benchmarks.inputs import make_input
from benchmarks.runner import Runner
from benchmarks.scenarios.paired import pairs


def run(runner: Runner) -> dict[str, Any]:
    data = make_input(runner.plan.cpu_ids, runner.work)
    with FakeServer(latency=0.0) as server:
        result = pairs(runner, server, data, 64, "full", "cpu")
    server_ms = [
        1000 * p[side]["server"]["cpu_seconds"] / p[side]["ids"]
        for p in result["pairs"]
        for side in ("engine", "bare")
        if p[side]["server"]["cpu_seconds"] is not None
    ]
    result["server_cpu_ms_per_id"] = statistics.median(server_ms) if server_ms else None
    return result
