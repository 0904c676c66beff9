"""Cost at full scale (issue 22): a 300,000-id file into moto's S3, side by side in one run.

``python -m benchmarks.full_scale [--ids 300000] [--quick]`` from the repo root. Not one of
the scenarios of ``python -m benchmarks``: it prints a table and writes its JSON to
``benchmarks/results/full_scale.json`` (``--quick``: ``results/tmp/full_scale.json``).

Everything runs on this machine: the fake TMDB in its own process without rate limit or
latency (the suite's CPU-bound setting; with its change lists, for the refreshes), and moto's
S3 in another process behind a small WSGI counter (:class:`_Counting`) that counts, by HTTP
method, the requests, the request body bytes moto read and the response bytes it sent. The
engine runs as its users run it: the CLI in a subprocess for the ingest, the no-op rerun and
the refreshes; the Lambda event entry (:func:`tmdb_async.events.handle`) in this process for
the Distributed Map steps (``prepare``, then one batch), as ``handler.py`` hands it events.

The steps, in order:

1. a Compass CSV of ``--ids`` ids (~3.5 rows per id, ids on consecutive rows) is uploaded and
   ``prepare`` writes its distinct ids, sorted, under ``Raw/TMDB/_work/``; eight batches of
   ``Sizes.batch`` ids from its middle (contiguous slices, as the ItemBatcher takes them)
   are set aside;
2. the CSV without those batches' rows is ingested by ``python -m tmdb_async run`` into the
   bucket's date folder: throughput by tenth of the run from the manifest's timeline (ids per
   second, by tenth of its seconds), S3 requests per 100 records by method, and bytes
   uploaded (PUT/POST bodies) ÷ the data files' bytes (``Raw/TMDB/JSON/…/*.json``, the
   ``_``-folders aside);
3. ``prepare`` again (the next execution's: it folds the id map the ingest learned into its
   base), then batches through the event entry (a warm-up batch first, so none pays the
   imports), four rounds of three, each first in turn: on an untouched bucket, on a new
   day's folder of the same lake (a bucket holding the full lake's id map alone) and on
   the full folder; every batch of set-aside ids or ids the fake was never asked; the
   medians compared. "Open" = from the call to the fake's first request; and the whole
   call, with the S3 requests and bytes read;
4. the file again, less the new day's batches (every id is now in the folder): the no-op
   rerun;
5. ``refresh`` of a small lake (fewer titles than the day's change-list pages) and of the
   full one, for the day after the ingest: requests, seconds, and the plan's way (``mode``).

The ingest's file is the full file less the set-aside ids (1.3 % of them at 300,000), so
that the full folder's batches find a folder holding every other id of their file: the last
batches of an execution.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._project import FakeTmdbConfig
from benchmarks.common import RESULTS, ROOT, TMP, TOKEN, UNLIMITED, log, moto_env
from benchmarks.inputs import Input, make_input
from benchmarks.scenarios.refresh import ChangeListServer
from tmdb_async.lake.idmap_format import BASE_KEY

DATE = dt.date(2026, 11, 20)  # the ingest's date folder
REFRESH_DATE = DATE + dt.timedelta(days=1)  # a daily refresh: the window is DATE alone
BATCH = 500  # ids per Distributed Map batch (the state machine's MaxItemsPerBatch)
CONCURRENCY = 64  # the suite's CPU-bound setting
PAIRS = 4  # measured (empty, full) pairs of batches, in alternating order
EMPTY = tuple(f"empty-{k}" for k in range(PAIRS))  # one untouched bucket per empty batch
# An empty date folder in the same lake: a bucket holding the full lake's id map alone.
NEW_DAY = tuple(f"new-day-{k}" for k in range(PAIRS))
BUCKETS = ("full", *EMPTY, *NEW_DAY, "warm", "small")


@dataclass(frozen=True)
class Sizes:
    ids: int  # ids of the big file
    small_lake: int  # ids of the small lake (fewer titles than a day's change-list pages)
    batch: int = BATCH  # ids per measured batch


FULL = Sizes(ids=300_000, small_lake=200)
QUICK = Sizes(ids=3_000, small_lake=100, batch=100)


# --- moto's S3 in another process, counted ------------------------------------------------


@dataclass
class _Tally:
    requests: dict[str, int] = field(default_factory=dict)
    body_bytes: dict[str, int] = field(default_factory=dict)  # request bodies read by moto
    response_bytes: dict[str, int] = field(default_factory=dict)


class _CountedInput:
    """``wsgi.input`` counting what the app reads of it (chunked uploads included)."""

    def __init__(self, inner: Any, add: Callable[[int], None]) -> None:
        self._inner, self._add = inner, add

    def read(self, *args: Any) -> bytes:
        data: bytes = self._inner.read(*args)
        self._add(len(data))
        return data

    def readline(self, *args: Any) -> bytes:
        data: bytes = self._inner.readline(*args)
        self._add(len(data))
        return data

    def __iter__(self) -> Iterator[bytes]:
        for line in self._inner:
            self._add(len(line))
            yield line


class _Counting:
    """WSGI middleware around moto's app: counts by method; ``GET /__counts`` answers the
    tally as JSON and starts a new one (no bucket name starts with ``_``)."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._tally = _Tally()
        self._lock = threading.Lock()

    def _add(self, table: dict[str, int], method: str, n: int) -> None:
        with self._lock:  # the server answers on many threads; += on a dict is not atomic
            table[method] = table.get(method, 0) + n

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/__counts":
            with self._lock:
                tally, self._tally = self._tally, _Tally()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(asdict(tally)).encode()]
        method = str(environ.get("REQUEST_METHOD", "?"))
        tally = self._tally
        self._add(tally.requests, method, 1)
        environ["wsgi.input"] = _CountedInput(
            environ["wsgi.input"], lambda n: self._add(tally.body_bytes, method, n)
        )
        return self._counted(self._app(environ, start_response), tally, method)

    def _counted(self, body: Iterable[bytes], tally: _Tally, method: str) -> Iterator[bytes]:
        try:
            for chunk in body:
                self._add(tally.response_bytes, method, len(chunk))
                yield chunk
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()


def _list_moto_modules_once() -> None:
    """The speed-up of ``tests/support/moto_server.py`` (whose function is private there):
    moto's dispatcher lists its package folder on every request; the folder does not change
    while the server runs, so it is listed once. Behaviour unchanged, a third less server CPU
    under load, and the same server as the suite's other S3 benchmarks."""
    import moto.backends as backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules


def _serve(queue: Any) -> None:
    """moto's server (as ``ThreadedMotoServer`` builds it) behind :class:`_Counting`."""
    sys.path.insert(0, str(ROOT))
    import logging

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    _list_moto_modules_once()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = _Counting(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    queue.put(f"http://127.0.0.1:{server.server_address[1]}")
    server.serve_forever()


def counts(endpoint: str) -> dict[str, dict[str, int]]:
    """The S3 server's tally since the last call (and a new one started)."""
    import urllib.request

    with urllib.request.urlopen(f"{endpoint}/__counts", timeout=30) as response:
        found: dict[str, dict[str, int]] = json.loads(response.read())
        return found


def _s3(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint)


# --- the CLI, as a user runs it ----------------------------------------------------------


def cli(args: Sequence[str], env: dict[str, str]) -> tuple[dict[str, Any], float]:
    """``python -m tmdb_async ARGS --json --quiet``: its JSON summary and wall seconds."""
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "tmdb_async", *args, "--json", "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=7200,
        check=False,
    )
    seconds = time.perf_counter() - began
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr[-3000:]}")
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary, seconds


def run_cli(csv: Path, bucket: str, url: str, env: dict[str, str]) -> tuple[dict[str, Any], float]:
    return cli(
        [
            "run", str(csv), "--dest", f"s3://{bucket}", "--kind", "movie",
            "--date", DATE.isoformat(), "--tmdb-url", url, "--rate", f"{UNLIMITED:g}",
            "--concurrency", str(CONCURRENCY),
        ],
        env,
    )  # fmt: skip


def refresh_cli(bucket: str, url: str, env: dict[str, str]) -> tuple[dict[str, Any], float]:
    return cli(
        [
            "refresh", "--dest", f"s3://{bucket}", "--date", REFRESH_DATE.isoformat(),
            "--tmdb-url", url, "--rate", f"{UNLIMITED:g}",
        ],
        env,
    )  # fmt: skip


# --- what the lake holds -------------------------------------------------------------------


def _objects(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def data_bytes(s3: Any, bucket: str) -> tuple[int, int]:
    """Bytes and count of the data files under ``Raw/TMDB/JSON/``: ``*.json`` / ``*.jsonl``
    outside the ``_``-folders (sidecars, ledger, manifests)."""
    total = files = 0
    for item in _objects(s3, bucket, "Raw/TMDB/JSON/"):
        key = str(item["Key"])
        if key.endswith((".json", ".jsonl")) and not any(p.startswith("_") for p in key.split("/")):
            total += int(item["Size"])
            files += 1
    return total, files


def timeline_of(s3: Any, bucket: str) -> dict[str, Any] | None:
    """The ``timeline`` of the ingest's manifest under the date folder (read right after the
    ingest, the folder's only run so far)."""
    found: dict[str, Any] | None = None
    for item in _objects(s3, bucket, f"Raw/TMDB/JSON/{DATE:%Y/%m/%d}/"):
        key = str(item["Key"])
        if "manifest" in key and key.endswith(".json"):
            body = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            if isinstance(body, dict) and isinstance(body.get("timeline"), dict):
                found = body["timeline"]
    return found


def tenths(timeline: dict[str, Any]) -> list[float]:
    """Ids per second in each tenth of the run's seconds (fewer parts when the run has fewer
    than ten buckets); the last bucket counts as a whole one."""
    from tmdb_async.jobs.report import RunTimeline

    parsed = RunTimeline.of(timeline)
    if parsed is None or not parsed.ids:
        return []
    ids = parsed.ids
    parts = min(10, len(ids))
    rates = []
    for i in range(parts):
        piece = ids[i * len(ids) // parts : (i + 1) * len(ids) // parts]
        rates.append(sum(piece) / (len(piece) * parsed.step))
    return rates


# --- the Distributed Map's steps, through the event entry ----------------------------------


def handle(event: dict[str, Any]) -> dict[str, Any]:
    from tmdb_async.events import handle as entry

    return asyncio.run(entry(event, None, dict(os.environ)))


def prepare(bucket: str, source_key: str) -> list[str]:
    """``prepare`` on the uploaded file; the distinct ids of its ``ids.csv``, in order."""
    from tmdb_devtools.local_map import read_items  # the ItemReader's reading of the CSV

    result = handle(
        {"action": "prepare", "source": f"s3://{bucket}/{source_key}", "dest": f"s3://{bucket}"}
    )
    body = _s3(os.environ["AWS_ENDPOINT_URL"]).get_object(
        Bucket=result["ids_bucket"], Key=result["ids_key"]
    )["Body"]
    return [item["id"] for item in read_items(body.read().decode())]


def batch_event(bucket: str, ids: Sequence[str]) -> dict[str, Any]:
    """The ItemBatcher's batch of ``ids`` for the whole fleet at the unlimited rate."""
    from tmdb_devtools.local_map import make_batch_input, make_batches

    batch_input = make_batch_input(f"s3://{bucket}", "movie", DATE, UNLIMITED, 1)
    [event] = make_batches([{"id": i} for i in ids], len(ids), batch_input)
    return event


def open_batch(
    server: ChangeListServer, endpoint: str, bucket: str, ids: Sequence[str]
) -> dict[str, Any]:
    """One batch invocation on ``bucket``: seconds to the fake's first request and in all,
    and what it asked of S3."""
    counts(endpoint)
    server.reset()
    # Each batch starts from the same collector state, as a Lambda invocation would: the
    # garbage earlier batches left in this one process (each opens its own aioboto3
    # session) otherwise lands, as a full collection, in whichever batch allocates next.
    gc.collect()
    began = time.monotonic()
    result = handle(batch_event(bucket, ids))
    seconds = time.monotonic() - began
    first = server.stats()["first_request_at"]
    tally = counts(endpoint)
    return {
        "records": result["records"],
        "not_found": result["not_found"],
        "open_seconds": None if first is None else first - began,
        "seconds": seconds,
        "s3_requests": sum(tally["requests"].values()),
        "s3_requests_by_method": tally["requests"],
        "bytes_read": sum(tally["response_bytes"].values()),
    }


# --- the steps -----------------------------------------------------------------------------


def without(data: Input, drop: set[str], path: Path) -> Path:
    """``data``'s CSV less the rows of the ids in ``drop``."""
    with data.csv.open(encoding="utf-8") as src, path.open("w", encoding="utf-8") as out:
        for n, line in enumerate(src):
            if n == 0 or line.split("|", 1)[0] not in drop:
                out.write(line)
    return path


def ingest(endpoint: str, url: str, csv: Path, bucket: str, env: dict[str, str]) -> dict[str, Any]:
    """Step 2: the CLI's ingest of ``csv``, with the S3 server's counts for it."""
    counts(endpoint)
    summary, seconds = run_cli(csv, bucket, url, env)
    tally = counts(endpoint)
    s3 = _s3(endpoint)
    size, files = data_bytes(s3, bucket)
    timeline = timeline_of(s3, bucket)
    rates = tenths(timeline) if timeline is not None else []
    records = int(summary["records"])
    uploaded = tally["body_bytes"].get("PUT", 0) + tally["body_bytes"].get("POST", 0)
    return {
        "summary": {k: summary.get(k) for k in ("status", "unique_ids", "records", "not_found",
                                                 "failed", "requests", "seconds")},
        "wall_seconds": seconds,
        "ids_per_second": int(summary["unique_ids"]) / seconds,
        "tenths_ids_per_second": rates,
        "late_over_early": rates[-1] / rates[0] if len(rates) > 1 and rates[0] else None,
        "throughput_from": "the manifest's timeline (ids per second, by tenth of its seconds)",
        "s3_requests_by_method": tally["requests"],
        "s3_requests_per_100_records": {
            m: 100 * n / max(1, records) for m, n in sorted(tally["requests"].items())
        },
        "bytes_uploaded": uploaded,
        "body_bytes_by_method": tally["body_bytes"],
        "data_bytes": size,
        "data_files": files,
        "uploaded_over_data": uploaded / size if size else None,
    }  # fmt: skip


def noop_rerun(endpoint: str, url: str, csv: Path, env: dict[str, str]) -> dict[str, Any]:
    """Step 4: the whole file again into the full folder."""
    counts(endpoint)
    summary, seconds = run_cli(csv, "full", url, env)
    tally = counts(endpoint)
    return {
        "wall_seconds": seconds,
        "summary_seconds": summary.get("seconds"),
        "tmdb_requests": summary.get("requests"),
        "records": summary.get("records"),
        "s3_requests": sum(tally["requests"].values()),
        "s3_requests_by_method": tally["requests"],
    }


def refresh(endpoint: str, url: str, bucket: str, env: dict[str, str]) -> dict[str, Any]:
    """Step 5: the daily refresh of ``bucket``'s lake."""
    counts(endpoint)
    summary, seconds = refresh_cli(bucket, url, env)
    tally = counts(endpoint)
    keys = ("status", "mode", "reason", "in_lake", "list_pages", "requests", "records", "seconds")
    return {
        **{k: summary.get(k) for k in keys},
        "wall_seconds": seconds,
        "s3_requests": sum(tally["requests"].values()),
    }


def measure(sizes: Sizes, endpoint: str, server: ChangeListServer) -> dict[str, Any]:
    env = moto_env(endpoint, TMDB_READ_ACCESS_TOKEN=TOKEN)
    os.environ.update(env)
    os.environ["TMDB_BASE_URL"] = server.url  # the batch events' TMDB (the CLI's: --tmdb-url)
    s3 = _s3(endpoint)
    for bucket in BUCKETS:
        s3.create_bucket(Bucket=bucket)
    data = make_input(sizes.ids, TMP, max_artists=6)
    rows = sum(1 for _ in data.csv.open(encoding="utf-8")) - 1
    s3.upload_file(str(data.csv), "full", "Source/ids.csv")
    log(f"full_scale: {len(data.ids):,} ids, {rows:,} rows; prepare")
    began = time.perf_counter()
    ids = prepare("full", "Source/ids.csv")
    prepare_seconds = time.perf_counter() - began
    size = sizes.batch
    middle = len(ids) // 2 - PAIRS * size
    # Each measured batch asks the fake TMDB for ids never asked before, and the pairs run
    # in alternating orders (empty, full, then full, empty, …); the ratios are of medians.
    # Set aside (never ingested, so in no folder and not in the map): the full folder's
    # batches, then the new day's.
    aside = [ids[middle + k * size : middle + (k + 1) * size] for k in range(2 * PAIRS)]
    others = [ids[len(ids) - (k + 1) * size : len(ids) - k * size] for k in range(PAIRS)]
    warm = ids[:size]
    left_out = {i for batch in aside for i in batch}
    part = without(data, left_out, TMP / f"full-scale-{sizes.ids}-less-batches.csv")
    log("full_scale: ingest")
    result: dict[str, Any] = {
        "ids": len(data.ids),
        "rows": rows,
        "batch_ids": size,
        "set_aside": len(left_out),
    }
    result["prepare_seconds"] = prepare_seconds
    result["ingest"] = ingest(endpoint, server.url, part, "full", env)
    # The next execution's prepare folds the id map the ingest learned into its base, as
    # it would before its Map: the batches then read their part of a real map.
    prepare("full", "Source/ids.csv")
    # (A small lake's map is its segments alone: prepare compacts only 16 or more.)
    based = s3.list_objects_v2(Bucket="full", Prefix=BASE_KEY).get("KeyCount", 0) > 0
    for bucket in NEW_DAY if based else ():
        s3.copy_object(Bucket=bucket, Key=BASE_KEY, CopySource={"Bucket": "full", "Key": BASE_KEY})
    result["id_map_base"] = based
    log("full_scale: the batches: a warm-up, then empty and full in pairs, alternating")
    # The benchmark's own data (every id of the file, the CSV's rows) is no Lambda's: out of
    # the collector's way, so that a full collection of it does not land in one batch.
    gc.collect()
    gc.freeze()
    open_batch(server, endpoint, "warm", warm)
    runs: list[dict[str, dict[str, Any]]] = []
    for k in range(PAIRS):
        batches = {
            "empty": (EMPTY[k], others[k]),
            "new_day": (NEW_DAY[k], aside[PAIRS + k]),
            "full": ("full", aside[k]),
        }
        order = list(batches)[k % 3 :] + list(batches)[: k % 3]  # each first in turn
        runs.append({name: open_batch(server, endpoint, *batches[name]) for name in order})
    middle_run = {name: _median([run[name] for run in runs]) for name in runs[0]}
    empty, new_day, full = middle_run["empty"], middle_run["new_day"], middle_run["full"]
    result["batch"] = {
        "empty": empty,
        "new_day": new_day,
        "full": full,
        "runs": runs,
        **ratios(empty, full),
        "over_new_day": ratios(new_day, full),
    }
    log("full_scale: no-op rerun")
    # The file again, less the new day's batches (in other buckets): every id is in the folder.
    new_days = {i for batch in aside[PAIRS:] for i in batch}
    again = without(data, new_days, TMP / f"full-scale-{sizes.ids}-rerun.csv")
    result["noop_rerun"] = noop_rerun(endpoint, server.url, again, env)
    result["noop_rerun"]["ids"] = len(data.ids) - len(new_days)
    log("full_scale: refreshes")
    small = make_input(sizes.small_lake, TMP, start=1)
    result["small_lake_ingest"] = run_cli(small.csv, "small", server.url, env)[0].get("records")
    result["refresh"] = {
        "small": refresh(endpoint, server.url, "small", env),
        "full": refresh(endpoint, server.url, "full", env),
    }
    return result


def _median(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The median of each number over ``runs`` (dicts of the same keys); others from the
    first. The rounds themselves are kept in the result: they show the spread."""
    middle: dict[str, Any] = dict(runs[0])
    for key, value in runs[0].items():
        values = [run[key] for run in runs]
        if isinstance(value, int | float) and all(isinstance(v, int | float) for v in values):
            middle[key] = statistics.median(values)
    return middle


def ratios(empty: dict[str, Any], full: dict[str, Any]) -> dict[str, float | None]:
    def over(key: str) -> float | None:
        a, b = full[key], empty[key]
        return None if a is None or not b else a / b

    return {
        "open_full_over_empty": over("open_seconds"),
        "seconds_full_over_empty": over("seconds"),
        "bytes_full_over_empty": over("bytes_read"),
        "requests_full_over_empty": over("s3_requests"),
    }


# --- the table -----------------------------------------------------------------------------


def _f(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def table(result: dict[str, Any]) -> list[str]:
    """The figures as Markdown lines."""
    ing, batch, rerun = result["ingest"], result["batch"], result["noop_rerun"]
    empty, new_day, full = batch["empty"], batch["new_day"], batch["full"]
    per100 = ", ".join(f"{m} {v:.2f}" for m, v in ing["s3_requests_per_100_records"].items())
    lines = [
        "| what | measured |",
        "|---|---|",
        f"| ingest of {ing['summary']['unique_ids']:,} ids ({result['rows']:,} rows) into S3 | "
        f"{ing['wall_seconds']:.1f} s wall, {ing['ids_per_second']:,.0f} ids/s, "
        f"{ing['summary']['records']:,} records |",
        "| throughput by tenth (ids/s, manifest timeline) | "
        + ", ".join(f"{r:,.0f}" for r in ing["tenths_ids_per_second"])
        + " |",
        f"| late ÷ early (last tenth ÷ first) | {_f(ing['late_over_early'], '.2f')} |",
        f"| S3 requests per 100 records, by method | {per100} |",
        f"| bytes uploaded ÷ data bytes | {ing['bytes_uploaded']:,} ÷ {ing['data_bytes']:,} = "
        f"{_f(ing['uploaded_over_data'], '.2f')} |",
        f"| no-op rerun of the file ({rerun['ids']:,} ids) | {rerun['wall_seconds']:.1f} "
        f"s wall, {rerun['tmdb_requests']} TMDB requests, {rerun['s3_requests']} S3 requests |",
    ]
    rows = (("an empty bucket", empty), ("a new day's folder", new_day), ("the full folder", full))
    for name, row in rows:
        lines.append(
            f"| {result['batch_ids']}-id batch, {name} | open "
            f"{_f(row['open_seconds'], '.3f')} s, all {row['seconds']:.2f} s, "
            f"{row['bytes_read']:,.0f} bytes read, {row['s3_requests']:.0f} S3 requests |"
        )
    for name, over in (("an empty bucket", batch), ("a new day's folder", batch["over_new_day"])):
        lines.append(
            f"| batch, full folder ÷ {name} | open {_f(over['open_full_over_empty'], '.2f')}×, "
            f"all {_f(over['seconds_full_over_empty'], '.2f')}×, bytes read "
            f"{_f(over['bytes_full_over_empty'], '.2f')}×, S3 requests "
            f"{_f(over['requests_full_over_empty'], '.2f')}× |"
        )
    for name, row in result["refresh"].items():
        lines.append(
            f"| refresh, {name} lake ({row['in_lake']:,} titles to fetch) | "
            f"{row['requests']} requests ({row['list_pages']} list pages), "
            f"{row['wall_seconds']:.1f} s wall, way: {row['mode']} ({row['reason']}) |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.full_scale")
    parser.add_argument("--ids", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.ids is not None:
        sizes = Sizes(ids=args.ids, small_lake=sizes.small_lake)
    out = args.out or (TMP if args.quick else RESULTS) / "full_scale.json"
    TMP.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")
    queue: Any = context.Queue()
    moto = context.Process(target=_serve, args=(queue,), daemon=True)
    moto.start()
    began = time.perf_counter()
    try:
        endpoint = queue.get(timeout=60)
        config = FakeTmdbConfig(token=TOKEN)  # the default change lists
        with ChangeListServer(config, latency=0.0, rate_limit=None) as server:  # type: ignore[arg-type]
            result = measure(sizes, endpoint, server)
    finally:
        moto.terminate()
        moto.join()
    result["meta"] = {
        "date": dt.date.today().isoformat(),
        "quick": args.quick,
        "seconds": time.perf_counter() - began,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "command": "python -m benchmarks.full_scale" + (" --quick" if args.quick else ""),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("\n".join(table(result)))
    log(f"full_scale: {result['meta']['seconds']:.0f} s in all; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
