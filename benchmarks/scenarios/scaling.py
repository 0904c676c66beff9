"""6. Scaling: ids/s against concurrency, engine and bare loop, no limit, 50 ± 5 ms.

Each concurrency gets the same number of ids per worker; the ideal is
c ÷ (latency × requests per id), with the requests both clients send for a movie list (the
one-request path: 1 per movie, 2 per unknown id). TMDB's own ceiling at 40 requests/s is
drawn for scale.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import JITTER, LATENCY, TMDB_RATE, log
from benchmarks.fake_server import FakeServer
from benchmarks.inputs import make_input
from benchmarks.runner import Runner


def run(runner: Runner) -> dict[str, Any]:
    points = []
    with FakeServer(latency=LATENCY - JITTER / 2, jitter=JITTER) as server:
        for concurrency in runner.plan.scaling:
            count = runner.plan.scaling_ids_per_worker * concurrency
            data = make_input(count, runner.work)
            log(f"scaling: c={concurrency}, {count} ids, engine and bare")
            engine = runner.engine(server, data, concurrency=concurrency)
            bare = runner.bare(server, data, concurrency=concurrency)
            requests_per_id = data.needed_direct / count
            points.append(
                {
                    "concurrency": concurrency,
                    "ids": count,
                    "engine_ids_per_s": engine["ids_per_s"],
                    "bare_ids_per_s": bare["ids_per_s"],
                    "ratio": engine["ids_per_s"] / bare["ids_per_s"],
                    "requests_per_id": requests_per_id,
                    "ideal_ids_per_s": concurrency / (LATENCY * requests_per_id),
                    "engine": engine,
                    "bare": bare,
                }
            )
    tmdb_ceiling = TMDB_RATE / points[-1]["requests_per_id"]
    return {
        "latency_s": LATENCY,
        "jitter_s": JITTER,
        "points": points,
        "tmdb_ceiling_ids_per_s": tmdb_ceiling,
    }
