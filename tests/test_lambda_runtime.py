"""The handler invoked as Lambda invokes it: awslambdaric, a Runtime API, one warm process.

``python -m awslambdaric handler.lambda_handler`` is the runtime interface client of Lambda's
managed Python runtimes. It runs here as a subprocess against a loopback Runtime API
(``tests/support/runtime_api.py``), with S3 on moto's server and the project's fake TMDB, both
served by this test's event loop while the subprocess is awaited through asyncio. Every case
goes through the same warm process, so each invocation's ``asyncio.run`` must build its own
sessions (a session kept from an earlier invocation would be bound to a closed loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, TOKEN
from tests.support.lake import read_s3
from tests.support.runtime_api import Invocation, Kind, RuntimeApi
from tmdb_devtools.csvgen import title_ids, write_csv
from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig

pytestmark = pytest.mark.slow  # about 10 s: a runtime process and a deadline run out for real

BUCKET = "data-lake-x"
KEY = "Raw/Local/CSV/Movies/2022/05/02/movies.csv"
DATE = "2022-05-02"
OUT_PREFIX = "Raw/TMDB/JSON/2022/05/02/"
SAFETY_MARGIN_S = 2.5  # TMDB_SAFETY_MARGIN_SECONDS of the runtime process
LONG_DEADLINE_MS = 120_000


@dataclass
class Runtime:
    """A running ``python -m awslambdaric handler.lambda_handler`` and what it printed."""

    process: asyncio.subprocess.Process
    api: RuntimeApi
    started: float
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    async def call(
        self, event: Any, deadline_ms: int, request_id: str
    ) -> tuple[Kind, dict[str, Any], Invocation]:
        """Invoke once; fail at once (with its stderr) if the runtime process dies instead."""
        invocation = self.api.submit(event, deadline_ms, request_id)
        exited = asyncio.ensure_future(self.process.wait())
        try:
            # A safety net only: every case answers long before this.
            async with asyncio.timeout(deadline_ms / 1000 + 60):
                waiters: set[asyncio.Future[Any]] = {invocation.future, exited}
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
        if not invocation.future.done():
            await asyncio.gather(*self.readers)
            raise AssertionError(
                f"runtime exited ({self.process.returncode}):\n" + "".join(self.stderr[-30:])
            )
        kind, payload = invocation.future.result()
        return kind, payload, invocation


async def _pump(stream: asyncio.StreamReader | None, into: list[str]) -> None:
    assert stream is not None
    while line := await stream.readline():
        into.append(line.decode("utf-8", "replace"))


def _runtime_env(address: str, tmdb_url: str) -> dict[str, str]:
    """Lambda's environment for a 512 MB python3.12 function, plus the function's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TMDB_", "AWS_LAMBDA_"))}
    env.update(
        AWS_LAMBDA_RUNTIME_API=address,
        AWS_LAMBDA_FUNCTION_NAME="tmdb-ingest",
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="512",
        AWS_LAMBDA_LOG_GROUP_NAME="/aws/lambda/tmdb-ingest",
        AWS_LAMBDA_LOG_STREAM_NAME="2022/05/02/[$LATEST]0123456789abcdef0123456789abcdef",
        AWS_LAMBDA_INITIALIZATION_TYPE="on-demand",
        AWS_EXECUTION_ENV="AWS_Lambda_python3.12",
        AWS_REGION="us-east-1",
        LAMBDA_TASK_ROOT=str(ROOT),
        TZ=":UTC",
        TMDB_READ_ACCESS_TOKEN=TOKEN,
        TMDB_BASE_URL=tmdb_url,
        TMDB_ALLOWED_BUCKETS=BUCKET,
        TMDB_DEST=f"s3://{BUCKET}",
        TMDB_RATE="1000",
        TMDB_SAFETY_MARGIN_SECONDS=str(SAFETY_MARGIN_S),
    )
    return env


@contextlib.asynccontextmanager
async def _runtime(tmdb_url: str) -> AsyncIterator[Runtime]:
    async with RuntimeApi() as api:
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "awslambdaric", "handler.lambda_handler"),
            cwd=ROOT,
            env=_runtime_env(api.address, tmdb_url),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        runtime = Runtime(process, api, started)
        runtime.readers = [
            asyncio.create_task(_pump(process.stdout, runtime.stdout)),
            asyncio.create_task(_pump(process.stderr, runtime.stderr)),
        ]
        try:
            yield runtime
        finally:
            if process.returncode is None:
                process.terminate()
            await process.wait()
            await asyncio.gather(*runtime.readers)


def _load(s3: Any, key: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    return entries


def _accounted(s3: Any) -> Counter[str]:
    """How often each id appears in the dated folder's data files and sidecars."""
    view = read_s3(s3, BUCKET, OUT_PREFIX)
    assert not view.stray, view.stray
    assert all(n <= 100 for n in view.data_files.values())
    return view.id_counts()


def _ids_in(s3: Any, urls: list[str]) -> list[str]:
    """The ids in the data files and sidecars an invocation reported."""
    keys = [url.removeprefix(f"s3://{BUCKET}/") for url in urls]
    return [entry["imdb_id"] for key in keys for entry in _load(s3, key)]


def _batch_input(**extra: Any) -> dict[str, Any]:
    return {
        "dest": f"s3://{BUCKET}",
        "kind": "movie",
        "date": DATE,
        "global_rate": 1000,
        "max_concurrency": 4,
        **extra,
    }


async def test_a_warm_awslambdaric_runtime_runs_every_event_shape(
    tmp_path: Path, s3: Any, lake: str
) -> None:
    ids_a = title_ids(40, "movie", start=1_000_000)
    ids_b = title_ids(30, "movie", start=2_000_000)
    ids_c = title_ids(100, "movie", start=3_000_000)
    s3.upload_file(str(write_csv(tmp_path / "movies.csv", ids_a)), lake, KEY)
    timings: dict[str, float] = {}
    succeeded: list[str] = []

    # Some latency, so requests overlap on the server as they do on TMDB.
    async with (
        FakeTmdb(FakeTmdbConfig(token=TOKEN, latency=0.01)) as fake,
        _runtime(fake.url) as runtime,
    ):
        # (a) a direct event: the CSV in S3, one row per artist.
        event_a = {"source": f"s3://{lake}/{KEY}", "date": DATE}
        kind, a, inv = await runtime.call(event_a, LONG_DEADLINE_MS, "req-a-direct")
        timings["cold start + (a)"] = time.monotonic() - runtime.started
        assert kind == "response", a
        assert a["status"] == "ok" and a["unique_ids"] == len(ids_a) and a["failed"] == 0
        assert a["files"] and all(
            f.startswith(f"s3://{lake}/{OUT_PREFIX}") for f in a["files"] + a["sidecars"]
        )
        succeeded.append(inv.request_id)

        # (b) a Distributed Map batch (extra CSV columns, as ItemReader passes them).
        event_b = {
            "Items": [{"id": i, "tituloPincipal": "Cidade de Deus"} for i in ids_b],
            "BatchInput": _batch_input(),
        }
        kind, b, inv = await runtime.call(event_b, LONG_DEADLINE_MS, "req-b-batch")
        assert kind == "response", b
        assert b["status"] == "ok" and b["unique_ids"] == len(ids_b)
        assert b["batch_input"] == event_b["BatchInput"]
        assert "remaining_items" not in b
        succeeded.append(inv.request_id)

        # (d) a bad event: the runtime reports the handler's error, one line, and lives on.
        bad = {"source": f"s3://{lake}/a.csv", "colour": "red"}
        kind, d, inv = await runtime.call(bad, LONG_DEADLINE_MS, "req-d-bad")
        assert kind == "error", d
        assert d["errorType"] == "UsageError"
        assert "unknown field 'colour'" in d["errorMessage"]
        assert "\n" not in d["errorMessage"]
        assert runtime.process.returncode is None

        # (c) a deadline a few seconds away: this batch runs at 50/2 = 25 requests/s and
        # needs about 190 requests, so it must stop early and hand back what is left.
        batch_input_c = _batch_input(global_rate=50, max_concurrency=2, concurrency=2)
        batch_input_c["chunk_size"] = 10
        event_c = {"Items": [{"id": i} for i in ids_c], "BatchInput": batch_input_c}
        kind, c1, inv = await runtime.call(event_c, 5_000, "req-c-short")
        assert kind == "response", c1
        assert inv.answered_at_ms is not None and inv.answered_at_ms < inv.deadline_ms
        timings["(c) answered before deadline by"] = (inv.deadline_ms - inv.answered_at_ms) / 1000
        assert c1["status"] == "incomplete"
        done = c1["unique_ids"]
        assert 0 < done < len(ids_c)
        timings["(c) ids done before the deadline"] = done
        left = [item["id"] for item in c1["remaining_items"]]
        assert left == ids_c[done:]
        resolved = _ids_in(s3, c1["files"] + c1["sidecars"])
        assert Counter(resolved + left) == Counter(ids_c), "every id exactly once"
        succeeded.append(inv.request_id)

        event_c2 = {"Items": c1["remaining_items"], "BatchInput": c1["batch_input"]}
        kind, c2, inv = await runtime.call(event_c2, LONG_DEADLINE_MS, "req-c-rest")
        assert kind == "response", c2
        assert c2["status"] == "ok" and c2["unique_ids"] == len(left)
        assert "remaining_items" not in c2
        succeeded.append(inv.request_id)
        served = [i for i in runtime.api.invocations.values() if i.answered_at_ms is not None]
        timings.update(
            {
                f"{i.request_id} s": ((i.answered_at_ms or 0) - (i.served_at_ms or 0)) / 1000
                for i in served
            }
        )

    # Across all five invocations, every id is in exactly one data record or sidecar entry.
    seen = _accounted(s3)
    assert seen == Counter(ids_a + ids_b + ids_c), "an id is missing or written twice"

    # stdout: one CloudWatch EMF line per invocation (Powertools Metrics): the counts of each
    # successful one, an error count for the failed one.
    emf = [json.loads(line) for line in runtime.stdout if '"CloudWatchMetrics"' in line]
    assert all(e["service"] == "tmdb-ingest" and "_aws" in e for e in emf)
    counted = [e["unique_ids"] for e in emf if "unique_ids" in e]  # Powertools: value lists
    assert counted == [[len(ids_a)], [len(ids_b)], [done], [len(left)]]
    assert [e["errors"] for e in emf if "errors" in e] == [[1]]

    # JSON log lines (Powertools Logger) carrying the request id of the invocation that wrote
    # them, the engine's own lines included.
    logs = [
        json.loads(line)
        for line in runtime.stdout + runtime.stderr
        if line.startswith("{") and '"level"' in line
    ]
    for request_id in succeeded:
        mine = [e for e in logs if e.get("function_request_id") == request_id]
        assert any(e["message"].startswith("run ") for e in mine), request_id  # the engine's

    everything = "".join(runtime.stdout + runtime.stderr)
    assert TOKEN not in everything
    assert TOKEN not in json.dumps([a, b, c1, c2, d])
    # The runtime itself logs the handler's error (type and message first) on stdout.
    assert any(
        line.startswith("[ERROR] UsageError: event: unknown field") for line in runtime.stdout
    )
    print("awslambdaric timings:", json.dumps(timings, indent=1))


async def test_the_scheduled_refresh_event_runs_under_awslambdaric(
    tmp_path: Path, s3: Any, lake: str
) -> None:
    """What EventBridge Scheduler sends: the scheduled time as the date. The refresh writes
    into that day's folder, and its counts reach CloudWatch as EMF metrics."""
    ids = title_ids(80, "movie", start=1) + title_ids(40, "tv", start=1)
    s3.upload_file(str(write_csv(tmp_path / "movies.csv", ids)), lake, KEY)
    cfg = FakeTmdbConfig(token=TOKEN, change_period=5, change_universe=2_000)
    async with FakeTmdb(cfg) as fake, _runtime(fake.url) as runtime:
        ingest = {"source": f"s3://{lake}/{KEY}", "date": "2026-11-10"}
        kind, first, _ = await runtime.call(ingest, LONG_DEADLINE_MS, "req-ingest")
        assert kind == "response" and first["status"] == "ok", first
        event = {"action": "refresh", "dest": f"s3://{lake}", "date": "2026-11-12T04:00:00Z"}
        kind, result, _ = await runtime.call(event, LONG_DEADLINE_MS, "req-refresh")
    assert kind == "response", result
    assert result["status"] == "ok" and result["date"] == "2026-11-12"
    assert result["window"] == {"start": "2026-11-10", "end": "2026-11-11"}
    view = read_s3(s3, lake, "Raw/TMDB/JSON/2026/11/12")
    assert len(view.records) == result["records"] > 0 and not view.duplicates()
    emf = [json.loads(line) for line in runtime.stdout if '"CloudWatchMetrics"' in line]
    assert [e["in_lake"] for e in emf if "in_lake" in e] == [[result["in_lake"]]]
    assert TOKEN not in "".join(runtime.stdout + runtime.stderr)
