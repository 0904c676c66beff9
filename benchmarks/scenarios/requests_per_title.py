"""7. Requests per title (issue 10): what one title costs in TMDB requests, and in time.

Every run is the engine at ``rate=40``, ``concurrency=20`` against a fresh fake at 40
requests/s (sliding window, 429 above it) with 50 ms per answer, ``--detail full``. Cases, N
ids each (``plan.requests_ids``), a fresh destination each unless said:

- ``movies``: a movies.csv (the fake's movie slots: movies and ~6% unknown), ``--kind movie``;
- ``series``: a series.csv (tv slots: series and ~6% unknown), ``--kind tv``;
- ``series_rerun``: the same file into the same destination on the next day (``--date``),
  ``--kind tv``: everything is fetched again (resume is per date folder), with whatever the
  first run left in the destination (the id map);
- ``mixed_blocks``: one file with both, the movie slots of a range of ids followed by its tv
  slots (a movies.csv and a series.csv put together), ``--kind auto``;
- ``mixed_interleaved``: the same ids shuffled (~66% movies, 28% series, 6% unknown in any
  order), ``--kind auto``; reported, no target;
- ``fallback``: the movies file, ``--kind movie``, against a fake that no longer answers
  IMDb ids on ``/3/movie`` (``--no-imdb-on-movie``).

Each case reports the titles (distinct ids), the requests the fake saw, by route (find,
movie by IMDb id, movie by TMDB id, tv by TMDB id), requests ÷ title, the wall time against
the request bound (requests ÷ 40/s: what the fake's limit allows for those requests), the
429s, and the floor: the fewest requests per title a run can expect for its ids without
knowing each id's kind (:data:`~benchmarks.inputs.DIRECT` or :data:`~benchmarks.inputs.FIND`,
whichever is cheaper, per block of a file; the rerun: :data:`~benchmarks.inputs.MAPPED`,
knowing every id the first run found). It is an expectation, not a bound: a run that guesses
right by luck goes below it. Titles per hour of the movies case are also compared with find +
details on the same ids (:data:`~benchmarks.inputs.FIND`: 2 per movie, 1 per unknown id).
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import LATENCY, TMDB_RATE, log
from benchmarks.fake_server import FakeServer
from benchmarks.inputs import (
    DIRECT,
    FIND,
    MAPPED,
    Input,
    composition,
    cost,
    input_of,
    number,
    slot_ids,
    slot_of,
)
from benchmarks.runner import Runner

FIRST_DATE = "2026-01-01"  # the date folder of the first run into a destination
NEXT_DATE = "2026-01-02"  # the rerun's, a day later
SHUFFLE_SEED = 10
# Where each file's ids start, so no two files share an id.
MOVIES_START, SERIES_START, MIXED_START = 1_000_000, 2_000_000, 3_000_000


@dataclass(frozen=True)
class Case:
    name: str
    data: Input
    kind: str  # the engine's --kind
    floor: float  # the fewest requests per title without knowing each id's kind
    date: str | None = None
    dest: Path | None = None  # kept across cases (None: a fresh folder, removed after)
    imdb_on_movie: bool = True


def floor(*blocks: Sequence[str], costs: Mapping[str, int] | None = None) -> float:
    """Requests per title of ``blocks`` together: each at ``costs``, or by default at the
    cheaper of :data:`DIRECT` and :data:`FIND` for that block."""
    total = sum(
        cost(ids, costs) if costs else min(cost(ids, DIRECT), cost(ids, FIND)) for ids in blocks
    )
    return total / sum(len(ids) for ids in blocks)


def run(runner: Runner) -> dict[str, Any]:
    count, work = runner.plan.requests_ids, runner.work
    movie_ids = slot_ids(count, {"movie"}, MOVIES_START)
    series_ids = slot_ids(count, {"tv"}, SERIES_START)
    mixed = slot_ids(count, {"movie", "tv"}, MIXED_START)
    movie_block = [i for i in mixed if slot_of(number(i)) == "movie"]
    series_block = [i for i in mixed if slot_of(number(i)) == "tv"]
    interleaved = random.Random(SHUFFLE_SEED).sample(mixed, len(mixed))
    movies = input_of(f"requests-movies-{count}", movie_ids, work)
    series = input_of(f"requests-series-{count}", series_ids, work, series=True)
    blocks = input_of(f"requests-blocks-{count}", movie_block + series_block, work)
    shuffled = input_of(f"requests-interleaved-{count}", interleaved, work)
    series_dest = work / "requests-series-dest"
    rerun_floor = floor(series_ids, costs=MAPPED)
    movies_find_details = floor(movie_ids, costs=FIND)
    cases = [
        Case("movies", movies, "movie", floor(movie_ids)),
        Case("series", series, "tv", floor(series_ids), FIRST_DATE, series_dest),
        Case("series_rerun", series, "tv", rerun_floor, NEXT_DATE, series_dest),
        Case("mixed_blocks", blocks, "auto", floor(movie_block, series_block)),
        Case("mixed_interleaved", shuffled, "auto", floor(mixed)),
        # No IMDb ids on /movie: find first is all that works.
        Case("fallback", movies, "movie", movies_find_details, imdb_on_movie=False),
    ]
    results: dict[str, Any] = {}
    try:
        for case in cases:
            results[case.name] = measure(runner, case)
    finally:
        shutil.rmtree(series_dest, ignore_errors=True)
    return {
        "ids_per_case": count,
        "tmdb_rate": TMDB_RATE,
        "latency_s": LATENCY,
        "cases": results,
        # Titles per hour at 40 requests/s, against find + details on the same ids (2 per
        # movie, 1 per unknown id: the engine before issue 10, the seeds' loop).
        "movies_find_details_per_title": movies_find_details,
        "movies_gain_over_find_details": movies_find_details
        / results["movies"]["requests_per_title"],
    }


def measure(runner: Runner, case: Case) -> dict[str, Any]:
    # A fresh server per run: its sliding window must not remember the previous run.
    with FakeServer(
        latency=LATENCY, rate_limit=TMDB_RATE, imdb_on_movie=case.imdb_on_movie
    ) as server:
        log(f"requests: {case.name}, --kind {case.kind}, {len(case.data.ids)} ids at 40 req/s")
        report = runner.engine(
            server,
            case.data,
            concurrency=20,
            rate=TMDB_RATE,
            kind=case.kind,
            date=case.date,
            dest=case.dest,
            label=f"requests-{case.name}",
        )
    titles, requests = report["ids"], report["server"]["requests"]
    bound = requests / TMDB_RATE
    kinds = composition(case.data.ids)
    result = {
        "run": report,
        "kind": case.kind,
        "date": case.date,
        "imdb_on_movie": case.imdb_on_movie,
        "titles": titles,
        "composition": kinds,
        # What a run of --kind movie or tv can find; auto finds both.
        "expected_records": kinds["movie"] + kinds["tv"]
        if case.kind == "auto"
        else kinds[case.kind],
        "requests": requests,
        "routes": report["server"]["routes"],
        "requests_per_title": requests / titles,
        "floor_requests_per_title": case.floor,
        "wall_seconds": report["seconds"],
        "request_bound_seconds": bound,
        "wall_over_request_bound": report["seconds"] / bound,
        "throttled_429": report["server"]["throttled"],
    }
    log(
        f"requests: {case.name}: {titles} titles, {requests} requests "
        f"({result['requests_per_title']:.3f} per title, floor {case.floor:.3f}), "
        f"wall {report['seconds']:.1f} s = {result['wall_over_request_bound']:.3f} × bound, "
        f"{result['throttled_429']} × 429"
    )
    return result
