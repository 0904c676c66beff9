"""5. Cold start: ``import handler`` ÷ importing the libraries it needs, fresh interpreters.

Each command runs in a new interpreter from the repository root, without PYTHON* variables,
interleaved (load drift hits all alike); medians of the repeats. A probe lists the heavy
modules that ``import handler`` loads (none is the goal).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from typing import Any

from benchmarks.common import ROOT, log
from benchmarks.runner import Runner

COLD_IMPORTS = "import aiohttp, aioboto3, tenacity, aiolimiter"
HEAVY_MODULES = ("pandas", "numpy", "boto3", "botocore", "aioboto3", "matplotlib")


def run(runner: Runner) -> dict[str, Any]:
    repeats = runner.plan.cold_repeats
    commands = {
        "interpreter": "pass",
        "handler": "import handler",
        "libraries": COLD_IMPORTS,
        "handler_and_aioboto3": "import handler, aioboto3",
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    log(f"cold start: {len(commands)} imports x {repeats}")
    for _ in range(repeats):
        for name, code in commands.items():  # interleaved: load drift hits all alike
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=120)
            times[name].append(time.perf_counter() - started)
    median = {name: statistics.median(values) for name, values in times.items()}
    probe = (
        f"import sys, handler; print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout.strip()
    base = median["interpreter"]
    return {
        "repeats": repeats,
        "median_seconds": median,
        "samples": times,
        "ratio": median["handler"] / median["libraries"],
        "ratio_net_of_interpreter": (median["handler"] - base)
        / max(1e-9, median["libraries"] - base),
        "ratio_with_aioboto3": median["handler_and_aioboto3"] / median["libraries"],
        "heavy_modules_loaded_by_handler": [m for m in loaded.split(",") if m],
    }
