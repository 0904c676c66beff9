"""2. Latency-bound: no server limit, 50 ± 5 ms per answer, concurrency 20.

Engine ids/s ÷ bare aiohttp ids/s, median of alternating pairs. The latency is jittered so
that N workers started together do not stay in lockstep (see ``common.JITTER``).
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import JITTER, LATENCY
from benchmarks.fake_server import FakeServer
from benchmarks.inputs import make_input
from benchmarks.runner import Runner
from benchmarks.scenarios.paired import pairs


def run(runner: Runner) -> dict[str, Any]:
    data = make_input(runner.plan.latency_ids, runner.work)
    with FakeServer(latency=LATENCY - JITTER / 2, jitter=JITTER) as server:
        result = pairs(runner, server, data, 20, "full", "latency")
    result["latency_s"] = LATENCY
    result["jitter_s"] = JITTER
    return result
