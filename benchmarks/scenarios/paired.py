"""Engine against the bare aiohttp loop on the same server and ids, in alternating pairs.

Shared by the latency-bound and the CPU-bound scenarios: each pair is one engine run and one
bare run back to back; the figures are the medians of the pair ratios. Both clients ask the
same requests for the same ids (the one-request path, see :func:`benchmarks.clients.bare`);
the requests per id the fake saw from each are reported beside the ratios.
"""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.common import log
from benchmarks.fake_server import FakeServer
from benchmarks.inputs import Input
from benchmarks.runner import Runner


def pairs(
    runner: Runner, server: FakeServer, data: Input, concurrency: int, detail: str, label: str
) -> dict[str, Any]:
    count = runner.plan.pairs
    done = []
    for index in range(count):
        log(f"{label}: pair {index + 1}/{count}, {len(data.ids)} ids, c={concurrency}")
        # Alternate the order so that a drift in machine load does not favour one side.
        if index % 2 == 0:
            engine = runner.engine(
                server, data, concurrency=concurrency, detail=detail, label=label
            )
            bare = runner.bare(server, data, concurrency=concurrency, detail=detail)
        else:
            bare = runner.bare(server, data, concurrency=concurrency, detail=detail)
            engine = runner.engine(server, data, concurrency=concurrency, detail=detail)
        done.append(
            {
                "engine": engine,
                "bare": bare,
                "ratio": engine["ids_per_s"] / bare["ids_per_s"],
                "cpu_ratio": engine["cpu_ms_per_id"] / bare["cpu_ms_per_id"],
            }
        )
    return {
        "ids": len(data.ids),
        "concurrency": concurrency,
        "detail": detail,
        "ratio": statistics.median(p["ratio"] for p in done),
        "cpu_ratio": statistics.median(p["cpu_ratio"] for p in done),
        "engine_ids_per_s": statistics.median(p["engine"]["ids_per_s"] for p in done),
        "bare_ids_per_s": statistics.median(p["bare"]["ids_per_s"] for p in done),
        "engine_cpu_ms_per_id": statistics.median(p["engine"]["cpu_ms_per_id"] for p in done),
        "bare_cpu_ms_per_id": statistics.median(p["bare"]["cpu_ms_per_id"] for p in done),
        "engine_requests_per_id": statistics.median(_requests_per_id(p["engine"]) for p in done),
        "bare_requests_per_id": statistics.median(_requests_per_id(p["bare"]) for p in done),
        "pairs": done,
    }


def _requests_per_id(report: dict[str, Any]) -> float:
    """Requests the fake saw per id of one run."""
    return float(report["server"]["requests"]) / report["ids"]
