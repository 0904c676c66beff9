"""The three measured clients, each run in its own child process (:mod:`benchmarks.child`).

- :func:`engine`: ``tmdb_async.run(Settings(...))`` on a CSV, writing to a local folder
  (``kind`` movie unless the spec says otherwise, ``date`` today unless given);
- :func:`bare`: the floor, one aiohttp session with N workers, nothing but requests and JSON,
  asking what the engine asks for a movie list: ``/3/movie/{imdb_id}`` first, ``/find``
  (then details by TMDB id) only after a 404;
- :func:`seq`: the seeds' way, the historical baseline: blocking urllib requests one id after
  another, ``/find`` then details.

Each takes the child's spec (a JSON-able dict) and returns its counts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import APPEND, LANGUAGE, TOKEN


def engine(spec: dict[str, Any]) -> dict[str, Any]:
    from tmdb_async import Credentials, Settings, run

    settings = Settings(
        source=spec["csv"],
        dest=spec["dest"],
        credentials=Credentials(read_access_token=TOKEN),
        tmdb_url=spec["url"],
        rate=spec["rate"],
        concurrency=spec["concurrency"],
        detail=spec["detail"],
        kind=spec.get("kind", "movie"),
        date=dt.date.fromisoformat(spec["date"]) if spec.get("date") else None,
    )
    summary = asyncio.run(run(settings))
    return {
        "status": summary.status,
        "ids": summary.unique_ids,
        "records": summary.records,
        "not_found": summary.not_found,
        "failed": summary.failed,
        "invalid": summary.invalid,
        "kept": summary.kept,
        "date": summary.date,
        "requests": summary.requests,
        "retries": summary.retries,
        "throttled_429": summary.throttled_429,
        "files": len(summary.files),
        "rows_read": summary.rows_read,
        "engine_seconds": summary.seconds,
    }


def bare(spec: dict[str, Any]) -> dict[str, Any]:
    """The floor: one aiohttp session, N workers, the engine's requests, parse JSON; nothing
    else. In ``full`` mode each id is asked on ``/3/movie/{imdb_id}`` (the details' params,
    ``append_to_response`` and ``language`` included) and only on a 404 on ``/find``, then
    details by TMDB id for a movie found there: the path the engine takes for a movie list
    (``--kind movie``; its router stays direct-first while movies outnumber the rest, and a
    fresh destination has no id map). In ``find`` mode, ``/find`` only."""
    import aiohttp

    ids = Path(spec["ids"]).read_text(encoding="utf-8").split()
    url, detail, concurrency = spec["url"], spec["detail"], spec["concurrency"]
    headers = {"Accept": "application/json", "Authorization": f"Bearer {TOKEN}"}
    find_params = {"external_source": "imdb_id", "language": LANGUAGE}
    detail_params = {"language": LANGUAGE, "append_to_response": APPEND}
    counts: Counter[str] = Counter()
    request_options: dict[str, Any] = {}

    async def main() -> None:
        if spec.get("timeout"):
            request_options["timeout"] = aiohttp.ClientTimeout(total=spec["timeout"])
        pending = iter(ids)
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def get(path: str, params: dict[str, str]) -> tuple[int, Any]:
                async with session.get(
                    url + path, params=params, headers=headers, **request_options
                ) as response:
                    status = response.status
                    counts[f"status_{status}"] += 1
                    counts["requests"] += 1
                    body = await response.read()
                    return status, json.loads(body) if status == 200 else None

            async def worker() -> None:
                for imdb_id in pending:
                    if detail == "full":
                        status, _ = await get(f"/3/movie/{imdb_id}", detail_params)
                        if status == 200:
                            counts["records"] += 1
                            continue
                        if status != 404:
                            counts["failed"] += 1
                            continue
                    _, found = await get(f"/3/find/{imdb_id}", find_params)
                    movies = (found or {}).get("movie_results") or []
                    if not movies:
                        counts["not_found"] += 1
                        continue
                    if detail == "full":
                        status, _ = await get(f"/3/movie/{movies[0]['id']}", detail_params)
                        if status != 200:
                            counts["failed"] += 1
                            continue
                    counts["records"] += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    asyncio.run(main())
    return {
        "ids": len(ids),
        "records": counts["records"],
        "not_found": counts["not_found"],
        "failed": counts["failed"],
        "requests": counts["requests"],
        "throttled_429": counts["status_429"],
    }


def seq(spec: dict[str, Any]) -> dict[str, Any]:
    """The seeds' way, kept as the historical baseline: one id after another, blocking urllib
    requests, ``/find`` then details (2 requests per movie, 1 per unknown id)."""
    ids = Path(spec["ids"]).read_text(encoding="utf-8").split()
    url, detail = spec["url"], spec["detail"]
    headers = {"Accept": "application/json", "Authorization": f"Bearer {TOKEN}"}
    counts: Counter[str] = Counter()

    def get(path: str, params: dict[str, str]) -> Any:
        request = urllib.request.Request(
            f"{url}{path}?{urllib.parse.urlencode(params)}", headers=headers
        )
        for _ in range(10):
            counts["requests"] += 1
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                exc.read()
                if exc.code == 404:
                    return None
                if exc.code != 429:
                    raise
                counts["throttled_429"] += 1
                time.sleep(1.0)
        raise RuntimeError(f"{path}: still throttled after 10 attempts")

    find_params = {"external_source": "imdb_id", "language": LANGUAGE}
    detail_params = {"language": LANGUAGE, "append_to_response": APPEND}
    for imdb_id in ids:
        movies = (get(f"/3/find/{imdb_id}", find_params) or {}).get("movie_results") or []
        if not movies:
            counts["not_found"] += 1
            continue
        if detail == "full" and get(f"/3/movie/{movies[0]['id']}", detail_params) is None:
            counts["failed"] += 1
            continue
        counts["records"] += 1
    return {
        "ids": len(ids),
        "records": counts["records"],
        "not_found": counts["not_found"],
        "failed": counts["failed"],
        "requests": counts["requests"],
        "throttled_429": counts["throttled_429"],
    }
