"""The scaling chart: ids/s against concurrency (needs matplotlib, else skipped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import log


def write_chart(result: dict[str, Any], path: Path) -> bool:
    """ids/s against concurrency; ``False`` (no chart) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no chart (pip install -r benchmarks/requirements.txt)")
        return False
    scaling = result["scaling"]
    points = scaling["points"]
    xs = [p["concurrency"] for p in points]
    figure, axes = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    ideal = [p["ideal_ids_per_s"] for p in points]
    axes.plot(xs, ideal, "k:", label="ideal: c ÷ (latency × requests per id)")
    bare = [p["bare_ids_per_s"] for p in points]
    axes.plot(xs, bare, "s--", color="tab:gray", label="bare aiohttp loop")
    engine = [p["engine_ids_per_s"] for p in points]
    axes.plot(xs, engine, "o-", color="tab:blue", linewidth=2, label="engine (tmdb_async.run)")
    axes.axhline(
        scaling["tmdb_ceiling_ids_per_s"],
        color="tab:red",
        linestyle="-.",
        label=f"TMDB's 40 req/s ceiling ({scaling['tmdb_ceiling_ids_per_s']:.1f} ids/s)",
    )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xticks(xs, [str(x) for x in xs])
    axes.set_xlabel("concurrency (workers and connections)")
    axes.set_ylabel("ids per second (full records)")
    latency_ms = scaling["latency_s"] * 1000
    jitter_ms = scaling.get("jitter_s", 0.0) * 1000
    axes.set_title(
        f"ids/s against concurrency: {latency_ms:.0f} ± {jitter_ms / 2:.0f} ms latency, no limit"
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True
