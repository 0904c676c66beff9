"""4. Memory: peak RSS of the engine on a large CSV ÷ on a small one.

No limit, no latency, ``--detail find``, concurrency 64; 1,000 ids against 100,000 ids
(a ~350,000-row CSV). A cost per id would show as a ratio well above 1.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import log
from benchmarks.fake_server import FakeServer
from benchmarks.inputs import make_input
from benchmarks.runner import Runner


def run(runner: Runner) -> dict[str, Any]:
    plan = runner.plan
    small = make_input(plan.memory_small, runner.work, max_artists=plan.memory_max_artists)
    log(f"memory: writing a CSV of {plan.memory_large} ids")
    large = make_input(plan.memory_large, runner.work, max_artists=plan.memory_max_artists)
    runs = {}
    with FakeServer(latency=0.0) as server:
        for name, data in (("small", small), ("large", large)):
            log(f"memory: engine, detail=find, {len(data.ids)} ids, c=64")
            runs[name] = runner.engine(
                server, data, concurrency=64, detail="find", label=f"memory-{name}"
            )
    small_mb = runs["small"]["maxrss_kb"] / 1024
    large_mb = runs["large"]["maxrss_kb"] / 1024
    return {
        "small": runs["small"],
        "large": runs["large"],
        "small_ids": len(small.ids),
        "large_ids": len(large.ids),
        "large_csv_rows": runs["large"]["rows_read"],
        "large_csv_mb": large.csv.stat().st_size / 2**20,
        "small_peak_mb": small_mb,
        "large_peak_mb": large_mb,
        "imports_mb": runs["large"]["rss_after_imports_kb"] / 1024,
        "ratio": large_mb / small_mb,
    }
