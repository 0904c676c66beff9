"""9. The fleet (issue 12): the Distributed Map's batches use the whole global rate, never more.

Time-compressed: the fake enforces 400 requests/s (10 × TMDB's 40, sliding window, 429 above
it) and answers in 5 ms (the usual 50 ms ÷ 10, so that a child's connections, 20 ÷ children,
keep the same headroom over its share as at TMDB's pace). Each case is ``python -m
tmdb_devtools local-map`` in its own process, the state machine's steps on one machine
(:mod:`tmdb_devtools.local_map`): the prepare step's batch plan
(:func:`tmdb_async.jobs.fleet.plan_batches`), ``MapMaxConcurrency`` 8 children at a time, each
at ``global_rate / children`` on a warm worker process whose imports are done before the Map
starts (:class:`tmdb_devtools.local_map.WorkerPool`: on AWS each child has a machine of its
own), ``MaxItemsPerBatch`` 500, ``--kind movie`` on a movies.csv of the fake's movie slots
(~6% unknown ids, 2 requests each).

The same files then go through the real definition on moto's Step Functions interpreter
(full runs only): ``statemachine/ingest.asl.json`` rendered from ``template.yaml``, each
Lambda invocation ``handler.lambda_handler`` under awslambdaric on one of ``MapMaxConcurrency``
warm runtimes, S3 and SSM on an in-process moto server (the harness of
``tests/test_state_machine.py``, :mod:`tests.support.sfn`). That path does what AWS does per
invocation (the token from SSM, the lease, the id map and the ledger on S3), so on a 2-CPU
machine moto, 8 runtimes and the fake share the CPUs.

Cases: 241 ids (a daily incremental file), 600 and 5,000 (quick: 241 and 600, local-map).
Each reports the plan (batches, children), the requests the fake saw, the achieved rate (requests
÷ the time from the first request's arrival to the last one's, at the fake) ÷ the global rate, the
highest count of requests in any one second (from ``/__stats`` polled every 20 ms: counts
between two polls at most 1 s apart, so a lower bound, within a poll's worth, of the true
highest), and the 429s (the fake's own sliding one-second window: any second above the rate
is a 429). A child whose first request comes late, or that idles between its batches, shows
as a lower rate.

Targets (the issue's): achieved ÷ global ≥ 0.9 for any file of 200 ids or more; never above
the global rate (highest one-second count ≤ 400, no 429).

``python -m benchmarks.scenarios.fleet RESULT.json`` rewrites the generated block of
BENCHMARKS.md's Fleet section from a result holding this part.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    LATENCY,
    MARKDOWN,
    ROOT,
    TMDB_RATE,
    TOKEN,
    log,
    replace_block,
    rewrite_from_result,
)
from benchmarks.fake_server import FakeServer, cpu_seconds_of
from benchmarks.inputs import input_of, slot_ids
from benchmarks.report import Rows
from benchmarks.runner import Runner

GLOBAL_RATE = 400.0  # requests/s: 10 × TMDB's, the fake's limit and the fleet's global rate
COMPRESSION = 10  # the fake's latency is LATENCY ÷ this
MAX_CONCURRENCY = 8
MAX_ITEMS_PER_BATCH = 500
FULL_SIZES = (241, 600, 5_000)
TMDB_PACE_SIZES = FULL_SIZES  # the interpreter at TMDB's own 40/s (5,000 ids: 2.5 min)
QUICK_SIZES = (241, 600)
START = 4_000_000  # ids of the fleet's files, apart from other scenarios'
DATE = "2026-04-01"
POLL = 0.02  # seconds between two /__stats polls
TABLE_START = "<!-- fleet:start -->"
TABLE_END = "<!-- fleet:end -->"


def run(runner: Runner) -> dict[str, Any]:
    sizes = QUICK_SIZES if runner.plan.quick else FULL_SIZES
    part: dict[str, Any] = {
        "global_rate": GLOBAL_RATE,
        "latency_s": LATENCY / COMPRESSION,
        "max_concurrency": MAX_CONCURRENCY,
        "max_items_per_batch": MAX_ITEMS_PER_BATCH,
        "cases": {str(n): measure(runner, n) for n in sizes},
    }
    if not runner.plan.quick:  # moto and 8 runtimes take the machine's CPUs: full runs only
        part["interpreter"] = {str(n): measure_on_interpreter(runner, n) for n in sizes}
        part["interpreter_tmdb_pace"] = {
            str(n): measure_on_interpreter(runner, n, TMDB_RATE) for n in TMDB_PACE_SIZES
        }
    part["rows"] = rows(part)
    return part


class Poller:
    """``/__stats`` ``total_requests`` every :data:`POLL` seconds, in a thread, each sample
    stamped with the server's clock (``taken_at``): a sample answered late on a busy machine
    still counts the requests of its own window."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with urllib.request.urlopen(f"{self.url}/__stats", timeout=10) as response:
                stats = json.loads(response.read())
            self.samples.append((float(stats["taken_at"]), int(stats["total_requests"])))
            self._stop.wait(POLL)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def highest_one_second(self) -> int:
        """The most requests counted between two samples at most one second apart."""
        best, start = 0, 0
        for t_end, n_end in self.samples:
            while self.samples[start][0] < t_end - 1.0:
                start += 1
            best = max(best, n_end - self.samples[start][1])
        return best


def measure(runner: Runner, count: int) -> dict[str, Any]:
    ids = slot_ids(count, {"movie"}, START)
    data = input_of(f"fleet-{count}", ids, runner.work)
    dest = runner.work / f"fleet-{count}-dest"
    shutil.rmtree(dest, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMDB_")}
    env["TMDB_READ_ACCESS_TOKEN"] = TOKEN
    log(f"fleet: {count} ids, local-map, {MAX_CONCURRENCY} children, {GLOBAL_RATE:g} req/s")
    try:
        with (
            FakeServer(latency=LATENCY / COMPRESSION, rate_limit=GLOBAL_RATE) as server,
            Poller(server.url) as poller,
        ):
            command = [
                sys.executable, "-m", "tmdb_devtools", "local-map", str(data.csv),
                "--dest", str(dest), "--kind", "movie", "--date", DATE,
                "--max-items-per-batch", str(MAX_ITEMS_PER_BATCH),
                "--max-concurrency", str(MAX_CONCURRENCY),
                "--global-rate", f"{GLOBAL_RATE:g}", "--tmdb-url", server.url, "--json",
            ]  # fmt: skip
            done = subprocess.run(
                command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
            )
            time.sleep(3 * POLL)  # one more sample after the last request
            stats = server.stats()
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(f"local-map failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(done.stdout.splitlines()[-1])
    result = {
        **{key: report[key] for key in _PLAN_AND_OUTCOME},
        **_rate_figures(stats, poller, GLOBAL_RATE),
        "wall_seconds": report["seconds"],
    }
    _log_case(f"fleet: {count} ids", result)
    return result


#: What a case reports of the plan and of the ids, as local-map's report names them.
_PLAN_AND_OUTCOME = (
    "ids",
    "records",
    "not_found",
    "failed",
    "status",
    "items_per_batch",
    "batches",
    "children",
    "invocations",
)


def _rate_figures(stats: dict[str, Any], poller: Poller, rate: float) -> dict[str, Any]:
    """What the fake saw: its requests, their span (first to last arrival), the achieved rate
    and its share of ``rate``, the highest one-second count and the 429s."""
    requests = int(stats["total_requests"])
    span = float(stats["last_request_at"]) - float(stats["first_request_at"])
    achieved = requests / span if span > 0 else 0.0
    return {
        "requests": requests,
        "span_seconds": span,
        "achieved_rate": achieved,
        "achieved_over_global": achieved / rate,
        "global_rate": rate,
        "highest_one_second": poller.highest_one_second(),
        "throttled_429": int(stats["throttled"]),
    }


def _log_case(label: str, r: dict[str, Any]) -> None:
    log(
        f"{label}: {r['batches']} batches of ≤ {r['items_per_batch']}, {r['children']} "
        f"children; {r['requests']} requests in {r['span_seconds']:.2f} s = "
        f"{r['achieved_rate']:.1f}/s = {r['achieved_over_global']:.3f} × global; highest "
        f"second {r['highest_one_second']}; {r['throttled_429']} × 429"
    )


SOURCE_KEY = "Raw/Local/CSV/Movies/2026/04/01/movies.csv"


@contextlib.contextmanager
def _aws_environment(endpoint: str) -> Iterator[None]:
    """moto's interpreter calls Lambda and S3 through boto3 from this process: credentials
    and region for it (set for the case, then restored)."""
    values = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def measure_on_interpreter(runner: Runner, count: int, rate: float = GLOBAL_RATE) -> dict[str, Any]:
    """The same file through the real definition on moto's Step Functions interpreter, each
    Lambda invocation ``handler.lambda_handler`` under awslambdaric (the harness of
    ``tests/test_state_machine.py``: :mod:`tests.support.sfn`), MapMaxConcurrency warm
    runtimes polling before the execution starts."""
    import boto3

    from tests.support.moto_server import moto_server
    from tests.support.sfn import BUCKET, LoopThread, state_machine

    ids = slot_ids(count, {"movie"}, START)
    data = input_of(f"fleet-sfn-{count}", ids, runner.work)
    logs = runner.work / f"fleet-sfn-{count}-logs"
    shutil.rmtree(logs, ignore_errors=True)
    # The interpreter logs as an error each Choice that finds no $.remaining_items (a batch
    # done), and warns of each ToleratedFailure* it does not apply: noise here.
    logging.getLogger("moto").setLevel(logging.CRITICAL)
    log(f"fleet: {count} ids, Step Functions interpreter, {MAX_CONCURRENCY} children, {rate:g}/s")
    loop = LoopThread()
    try:
        with (
            moto_server() as endpoint,
            _aws_environment(endpoint),
            FakeServer(latency=LATENCY * TMDB_RATE / rate, rate_limit=rate) as server,
            state_machine(
                endpoint,
                server.url,
                loop,
                logs,
                TOKEN,
                MaxItemsPerBatch=str(MAX_ITEMS_PER_BATCH),
                MapMaxConcurrency=str(MAX_CONCURRENCY),
                TmdbGlobalRate=f"{rate:g}",
            ) as harness,
        ):
            s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            s3.upload_file(str(data.csv), BUCKET, SOURCE_KEY)
            began = time.monotonic()
            while harness.lam.api.polls < MAX_CONCURRENCY:  # every runtime through its init
                if time.monotonic() - began > 120:
                    raise RuntimeError(f"runtimes not ready:\n{harness.lam.output()[-2000:]}")
                time.sleep(POLL)
            cpu_before = time.process_time()  # this process: moto, its interpreter, harness
            with Poller(server.url) as poller:
                execution = harness.run(
                    {"source_key": SOURCE_KEY, "kind": "movie", "date": DATE}, timeout=600
                )
                time.sleep(3 * POLL)  # one more sample after the last request
            stats = server.stats()
            cpu = {
                "moto_and_interpreter": time.process_time() - cpu_before,
                "runtimes": sum(cpu_seconds_of(p.pid) or 0.0 for p in harness.lam.procs),
                "fake": server.cpu_seconds(),
            }
            batches = [i for i in harness.lam.invocations if "Items" in (i.event or {})]
            output = harness.lam.output()
    finally:
        loop.close()
        shutil.rmtree(logs, ignore_errors=True)
    if execution.status != "SUCCEEDED":
        raise RuntimeError(f"execution {execution.status}: {execution.cause}\n{output[-2000:]}")
    prepared = execution.output["prepared"]
    payloads = [b.payload for b in batches if b.kind == "response"]
    result = {
        "ids": prepared["unique_ids"],
        "records": sum(p["records"] for p in payloads),
        "not_found": sum(p["not_found"] for p in payloads),
        "failed": sum(p["failed"] for p in payloads),
        "status": "ok" if len(payloads) == len(batches) else "failed",
        "items_per_batch": prepared["items_per_batch"],
        "batches": prepared["batches"],
        "children": prepared["children"],
        "invocations": len(batches),
        **_rate_figures(stats, poller, rate),
        "wall_seconds": execution.seconds,
        # CPU seconds the run took from the machine's CPUs (the runtimes' include their init)
        "cpu_seconds": cpu,
    }
    _log_case(f"fleet (interpreter, {rate:g}/s): {count} ids", result)
    return result


PATHS = (
    ("cases", "local-map", ""),
    ("interpreter", "interpreter", "_sfn"),
    ("interpreter_tmdb_pace", "interpreter, TMDB's pace", "_sfn_x1"),
)  # part key, name, row key


def rows(part: dict[str, Any]) -> list[dict[str, Any]]:
    """The part's target rows, in the format of :mod:`benchmarks.report`."""
    out = Rows()
    for key, path, suffix in PATHS:
        for name, case in part.get(key, {}).items():
            rate = case.get("global_rate", part["global_rate"])
            ratio = case["achieved_over_global"]
            out.add(
                f"fleet{suffix}_{name}_rate",
                f"9. fleet ({path}), {int(name):,} ids: achieved rate ÷ global rate",
                ratio,
                "{:.3f}",
                "≥ 0.9, ≤ 1",
                0.9 <= ratio <= 1.0 if case["ids"] >= 200 else ratio <= 1.0,
            )
            out.add(
                f"fleet{suffix}_{name}_peak",
                f"9. fleet ({path}), {int(name):,} ids: highest one-second count (429s)",
                case["highest_one_second"],
                "{:d}" + f" ({case['throttled_429']})",
                f"≤ {rate:g} (0)",
                case["highest_one_second"] <= rate and case["throttled_429"] == 0,
            )
    return list(out)


# --- the generated block of BENCHMARKS.md's Fleet section ----------------------------------


def table(part: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    """The Fleet section's figures, as Markdown lines."""
    lines = [
        f"Measured {meta['date']} on {meta['machine']} (Python {meta['python']}, "
        f"{meta['cpus']} CPUs): MapMaxConcurrency {part['max_concurrency']}, "
        f"MaxItemsPerBatch {part['max_items_per_batch']}, fake and global rate "
        f"{part['global_rate']:g} requests/s with {part['latency_s'] * 1000:.0f} ms per answer "
        f"(TMDB's pace: {TMDB_RATE:g} requests/s, {LATENCY * 1000:.0f} ms).",
        "",
        "| Through | Global rate | Ids | Batches (≤ ids each) | Children | Requests | Span (s) "
        "| Achieved (req/s) | ÷ global | Highest second | 429s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, path, _ in PATHS:
        cases = part.get(key, {})
        for name, c in sorted(cases.items(), key=lambda item: int(item[0])):
            rate = c.get("global_rate", part["global_rate"])
            lines.append(
                f"| {path} | {rate:g} | {int(name):,} | {c['batches']} ({c['items_per_batch']}) | "
                f"{c['children']} | {c['requests']:,} | {c['span_seconds']:.2f} | "
                f"{c['achieved_rate']:.1f} | {c['achieved_over_global']:.3f} | "
                f"{c['highest_one_second']} | {c['throttled_429']} |"
            )
    return lines


def write_markdown(result: dict[str, Any], path: Path = MARKDOWN) -> None:
    """Replace the block between :data:`TABLE_START` and :data:`TABLE_END` in ``path``."""
    replace_block(path, TABLE_START, TABLE_END, table(result["fleet"], result["meta"]))


def main(argv: Sequence[str]) -> int:
    return rewrite_from_result(argv, "benchmarks.scenarios.fleet", write_markdown, "Fleet")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
