"""Paths, constants and the sizes of a run, shared by the parent and the child processes."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # the repository: cwd of every child process
BENCH_DIR = ROOT / "benchmarks"
RESULTS = BENCH_DIR / "results"
TMP = RESULTS / "tmp"  # git-ignored scratch space (CSVs, engine output)
MARKDOWN = BENCH_DIR / "BENCHMARKS.md"
TABLE_START = "<!-- results:start -->"
TABLE_END = "<!-- results:end -->"

TOKEN = "bench-token-3c5e"
LATENCY = 0.05  # seconds the fake adds to every answer (roughly TMDB's from a nearby region)
# Latency-bound runs draw each answer's latency from LATENCY ± JITTER/2 (same mean). With a
# constant latency, N workers that start together stay in lockstep: the fake receives them
# as one burst, answers them one after another, and the last of each burst waits for the
# others on both sides (measured: a bare loop 8% slower than the same loop with jitter).
JITTER = 0.01
TMDB_RATE = 40.0  # requests/s: what the fake enforces in the rate-bound case, and the client's
# Client rate of the "no limit" runs: the most the engine accepts (config.MAX_RATE), about
# 4x what any of them sends (~2,600 requests/s, the bare loop CPU-bound). Not higher: the
# throttle keeps the send times of one window, floor(rate) of them (100,000 floats, ~4 MB
# of peak RSS, at 100,000/s), which would show in the memory figure.
UNLIMITED = 10_000.0
LANGUAGE = "pt-BR"  # the engine's default; the bare loops ask for the same
APPEND = "credits,keywords,external_ids"  # the engine's default append_to_response


@dataclass(frozen=True)
class Plan:
    """Sizes of one invocation: the full run or the quick smoke run."""

    quick: bool
    rate_ids: int  # ids of the rate-bound runs (engine, full and find)
    seq_ids: int  # ids of the seeds' sequential loop (a subset: it is slow by design)
    latency_ids: int
    cpu_ids: int
    pairs: int  # engine/bare pairs per ratio; the median of the pair ratios is reported
    memory_small: int
    memory_large: int
    memory_max_artists: int  # rows per id are 1..this: 6 gives ~3.5 rows per id
    cold_repeats: int
    scaling: tuple[int, ...]
    scaling_ids_per_worker: int
    requests_ids: int  # ids per case of the requests-per-title runs (all at 40 req/s)


FULL = Plan(
    quick=False,
    rate_ids=1000,
    seq_ids=200,
    latency_ids=1000,
    cpu_ids=2000,
    pairs=3,
    memory_small=1000,
    memory_large=100_000,
    memory_max_artists=6,
    cold_repeats=7,
    scaling=(1, 5, 10, 20, 40),
    scaling_ids_per_worker=30,
    requests_ids=1000,
)
QUICK = Plan(
    quick=True,
    rate_ids=30,
    seq_ids=5,
    latency_ids=100,
    cpu_ids=200,
    pairs=1,
    memory_small=100,
    memory_large=2000,
    memory_max_artists=6,
    cold_repeats=1,
    scaling=(1, 20),
    scaling_ids_per_worker=6,
    requests_ids=120,
)


def moto_env(endpoint: str, **extra: str) -> dict[str, str]:
    """This process's environment for a child talking to moto's S3 at ``endpoint``: no
    ``TMDB_``, ``AWS_`` or ``PYTHON`` variable of the caller's, test credentials, and
    ``extra``."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TMDB_", "AWS_", "PYTHON"))},
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        **extra,
    }


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def replace_block(path: Path, start: str, end: str, lines: Sequence[str]) -> None:
    """Replace the block between the markers ``start`` and ``end`` in ``path`` (both must be
    there) with ``lines``, markers kept: how a scenario rewrites its own figures."""
    text = path.read_text(encoding="utf-8")
    if start not in text or end not in text:
        raise SystemExit(f"{path}: no {start} ... {end} block")
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    path.write_text(head + "\n".join([start, *lines, end]) + tail, encoding="utf-8")


def rewrite_from_result(
    argv: Sequence[str], module: str, write: Callable[[dict[str, Any]], None], what: str
) -> int:
    """``python -m MODULE RESULT.json``: ``write`` a full run's figures into BENCHMARKS.md."""
    if len(argv) != 1:
        raise SystemExit(f"usage: python -m {module} RESULT.json")
    result = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    if result["meta"]["quick"]:
        raise SystemExit(f"{argv[0]}: a --quick result; the table takes a full run")
    write(result)
    log(f"rewrote the {what} figures in {MARKDOWN}")
    return 0
