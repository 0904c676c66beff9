"""1. Rate-bound (the real case): the fake at TMDB's 40 requests/s with 429s above it.

The engine at ``rate=40``, ``concurrency=20`` with ``--detail full`` and ``find``: wall time
against the ideal (requests needed ÷ 40/s) and the share of 429 answers. Requests needed are
those of the path the engine takes (:func:`~benchmarks.inputs.needed_requests`): in ``full``
mode ``/3/movie/{imdb_id}`` first, 1 per movie and 2 per unknown id (the 404, then /find);
in ``find`` mode one /find per id. The seeds' sequential loop (find then details, the
historical baseline) runs a subset of the ids, for its time per id; its ideal is its own
requests, 2 per movie and 1 per unknown id, at 40/s.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import LATENCY, TMDB_RATE, log
from benchmarks.fake_server import FakeServer
from benchmarks.inputs import make_input, needed_requests
from benchmarks.runner import Runner


def run(runner: Runner) -> dict[str, Any]:
    data = make_input(runner.plan.rate_ids, runner.work)
    seq_data = make_input(runner.plan.seq_ids, runner.work)
    out: dict[str, Any] = {
        "ids": len(data.ids),
        "found": data.found,
        "tmdb_rate": TMDB_RATE,
        "latency_s": LATENCY,
    }
    for detail in ("full", "find"):
        # A fresh server per run: its sliding window must not remember the previous run.
        with FakeServer(latency=LATENCY, rate_limit=TMDB_RATE) as server:
            log(f"rate-bound: engine, detail={detail}, {len(data.ids)} ids at 40 req/s")
            report = runner.engine(
                server,
                data,
                concurrency=20,
                rate=TMDB_RATE,
                detail=detail,
                label=f"rate-{detail}",
            )
        needed = needed_requests(data, detail)
        ideal = needed / TMDB_RATE
        out[detail] = {
            "run": report,
            "needed_requests": needed,
            "ideal_seconds": ideal,
            "wall_over_ideal": report["seconds"] / ideal,
            "share_429": report["throttled_429"] / max(1, report["requests"]),
        }
    with FakeServer(latency=LATENCY, rate_limit=TMDB_RATE) as server:
        log(f"rate-bound: seeds' sequential loop, {len(seq_data.ids)} ids")
        report = runner.seq(server, seq_data)
    seq_per_id = report["seconds"] / len(seq_data.ids)
    ideal_per_id = seq_data.needed_find_details / TMDB_RATE / len(seq_data.ids)
    engine_per_id = out["full"]["run"]["seconds"] / len(data.ids)
    out["sequential"] = {
        "run": report,
        "ids": len(seq_data.ids),
        "needed_requests": seq_data.needed_find_details,
        "seconds_per_id": seq_per_id,
        "wall_over_ideal": seq_per_id / ideal_per_id,
        "engine_speedup": seq_per_id / engine_per_id,
        "projected_seconds_for_rate_ids": seq_per_id * len(data.ids),
    }
    return out
