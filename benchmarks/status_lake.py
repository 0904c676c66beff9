"""``status`` on a lake of 300,000 titles on moto's S3: how long it takes to answer.

``python -m benchmarks.status_lake [--titles 300000] [--runs 3]`` from the repo root. Not one
of the scenarios of ``python -m benchmarks`` (it measures no run against TMDB): it prints its
figures and writes nothing else.

The lake is built quickly, without TMDB: synthetic chunks committed through the folder's
:class:`~tmdb_async.lake.ledger.Ledger` (as a run commits them: data files of 100 records,
sidecar files, the ledger's log and checkpoints), in an ingest folder (every title; 5 % not
found, 0.1 % failed) and a refresh folder (2 % of the titles again, a few deleted), the runs'
manifests, an interrupted run's pin, the refresh state and an id map base of every title.
Then ``python -m tmdb_async status --dest s3://… --json`` runs ``--runs`` times as an
operator runs it (a new process each time, against moto in another process), and
``--failed`` once.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import moto_env

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "status-bench"
CHUNK = 100  # records per data file, the default chunk size
PER_COMMIT = 20  # chunks per ledger commit (a run commits as chunks finish: fewer, bigger)


def _serve(queue: Any) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.support.moto_server import moto_server

    with moto_server() as endpoint:
        queue.put(endpoint)
        while True:
            time.sleep(3600)


async def _folder(store: Any, folder: str, ids: list[int], stem: str, shape: str) -> None:
    from tmdb_async.lake.ledger import Ledger

    ledger = await Ledger(store, folder, owner=f"bench-{stem}").load()
    for start in range(0, len(ids), CHUNK * PER_COMMIT):
        chunks = []
        for at in range(start, min(start + CHUNK * PER_COMMIT, len(ids)), CHUNK):
            records, entries = [], []
            for n in ids[at : at + CHUNK]:
                imdb_id = f"tt{n:07d}"
                if n % 20 == 0:
                    entries.append({"imdb_id": imdb_id, "outcome": "not_found", "reason": "x"})
                elif n % 1000 == 7:
                    entries.append(
                        {
                            "imdb_id": imdb_id,
                            "outcome": "failed",
                            "reason": "HTTP 503",
                            "attempts": 5,
                        }
                    )
                elif stem == "refresh" and n % 1000 == 501:
                    entries.append({"imdb_id": imdb_id, "outcome": "deleted", "reason": "404"})
                else:
                    records.append(
                        {"imdb_id": imdb_id, "id": n, "media_type": "movie", "title": f"T{n}"}
                    )
            chunks.append((records, entries))
        await ledger.commit(chunks, shape=shape, fmt="json", stem=stem)


async def build(titles: int) -> None:
    from tmdb_async.lake import runstate
    from tmdb_async.lake.idmap import IdMap
    from tmdb_async.lake.idmap_format import write_base
    from tmdb_async.lake.layout import STATE_FOLDER, date_folder
    from tmdb_async.lake.manifest import Manifest
    from tmdb_async.lake.storage import open_store

    ingest, refreshed = dt.date(2026, 11, 10), dt.date(2026, 11, 20)
    every = list(range(1, titles + 1))
    again = every[::50]
    async with open_store(f"s3://{BUCKET}", pool=20) as store:
        for date, ids, stem in ((ingest, every, "movies"), (refreshed, again, "refresh")):
            folder = date_folder(date)
            manifest = Manifest(
                store, folder, f"{stem}-bench", {"run": "bench", "source": stem, "settings": {}}
            )
            await manifest.write()
            await _folder(store, folder, ids, stem, "bench-shape")
            await manifest.finish({"outcome": "ok", "counts": {"unique_ids": len(ids)}})
        pin = runstate.Pin("killed", str(ingest), 1000, None, "interrupted", "movies.csv")
        await runstate.pin(store, "benchjob", pin)
        body = {"through": str(refreshed - dt.timedelta(days=1)), "failed": ["tt0000007"]}
        await store.put(
            f"{STATE_FOLDER}/refresh.json", json.dumps(body).encode(), "application/json"
        )
        known = IdMap()
        for n in every:
            known.add(f"tt{n:07d}", "movie", n)
        await write_base(store, known.encode(), None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.status_lake")
    parser.add_argument("--titles", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    queue: Any = multiprocessing.get_context("spawn").Queue()
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(queue,), daemon=True)
    server.start()
    try:
        endpoint = queue.get(timeout=60)
        env = moto_env(endpoint)
        os.environ.update(env)
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        began = time.perf_counter()
        asyncio.run(build(args.titles))
        print(f"built a lake of {args.titles} titles in {time.perf_counter() - began:.1f} s")
        command = [sys.executable, "-m", "tmdb_async", "status", "--dest", f"s3://{BUCKET}"]
        for flags in [["--json"]] * args.runs + [["--json", "--failed"]]:
            began = time.perf_counter()
            done = subprocess.run(
                [*command, *flags], env=env, cwd=ROOT, capture_output=True, check=True
            )
            seconds = time.perf_counter() - began
            shown = json.loads(done.stdout)
            failed = sum(len(f["failed"] or ()) for f in shown["folders"])
            print(
                f"status {' '.join(flags)}: {seconds:.2f} s wall; totals {shown['totals']}; "
                f"id map {shown['idmap']['titles']} titles; failed listed {failed}"
            )
    finally:
        server.terminate()
        server.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
