"""Refresh (issue 11): the daily refresh of a lake at TMDB's 40 requests/s.

A lake of the ids ``tt0000001`` .. ``tt0010000`` (quick: 500) is ingested the way a real lake
is: a movies.csv (the fake's movie slots, ``--kind movie``) and a series.csv (its tv slots,
``--kind tv``), both with the fake's natural 1 id in 17 unknown, into the date folder of
:data:`LAKE_DATE`, by the engine in its child process against a fake without limit or latency
(the lake and its id map are what any run writes; only the speed of building them differs).

Then each case copies that lake and refreshes the copy with the CLI, ``python -m tmdb_async
refresh --dest COPY --date D --rate 40 --json``, in its own process (imports included in its
process time, not in the wall time: the summary's ``seconds`` start with the refresh), against
a fake in its own process at 40 requests/s (sliding window, 429 above it), 50 ms per answer,
with change lists (:func:`tmdb_devtools.fake_tmdb.changed_ids`): every TMDB id up to
``change_universe`` (full run 500,000) changes on 1 day in 49, so a day lists ~9,600 ids
(~97 pages of 100) and ~2% of the lake. A few of the lake's titles changed on the first day
are ``removed_ids`` on the refresh's fake (404 on details, listed every day): deleted.

- ``daily``: refresh on ``LAKE_DATE`` + 1, the first refresh of the lake, so its window is the
  one complete day since the ingest date;
- ``backlog``: the same lake refreshed on ``LAKE_DATE`` + 7: a week of change lists in one
  window (each list request spans up to 14 days), each changed title fetched once.

Each case checks the refresh against the fake's rule: the distinct ids of the change lists,
the lake's titles among them (``in_lake``), the titles the fake was asked (by TMDB id, from
``/__stats``: exactly the expected set, each once; by IMDb id, removed titles only), records
and deleted titles, the list pages (``ceil(ids ÷ 100)`` per kind). It reports requests per
changed title of the lake, list pages aside (all, those TMDB still has: the target, and the
removed ones); the wall time against the request bound (all requests ÷ 40/s); the 429s;
and, from the daily case, a projection for a lake of :data:`PROJECTED_TITLES` titles (see
:func:`project`).

Target rows are in the part itself (``rows``, the rows format of :mod:`benchmarks.report`),
and ``python -m benchmarks.scenarios.refresh RESULT.json`` rewrites the generated block of
BENCHMARKS.md's Refresh section from a result holding this part.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

# The fake's change-list rule, to compute the expected sets. benchmarks/_project.py is meant
# to be the only import of the dev tools, but it does not export these (yet).
from benchmarks._project import FAKE_TMDB_MODULE, FakeTmdbConfig, changed_ids, kind_of_number
from benchmarks.common import (
    LATENCY,
    MARKDOWN,
    ROOT,
    TMDB_RATE,
    TOKEN,
    UNLIMITED,
    log,
    replace_block,
    rewrite_from_result,
)
from benchmarks.fake_server import FakeServer
from benchmarks.inputs import input_of, number, slot_of
from benchmarks.report import Rows
from benchmarks.runner import Runner

LAKE_DATE = dt.date(2026, 3, 1)  # the ingest date: the first refresh starts from it
CHANGE_PERIOD = 49  # the fake's default: each title changes on 1 day in 49
PER_PAGE = 100  # ids per change-list page (TMDB's)
MAX_DAYS = 14  # days a change-list request may span (TMDB's)
PROJECTED_TITLES = 300_000
TABLE_START = "<!-- refresh:start -->"
TABLE_END = "<!-- refresh:end -->"
Kind = Literal["movie", "tv"]
KINDS: tuple[Kind, Kind] = ("movie", "tv")


@dataclass(frozen=True)
class Sizes:
    lake_ids: int  # tt0000001 .. tt{lake_ids}
    change_universe: int  # TMDB ids 1..this take part in the change lists
    removed: int  # the lake's titles changed on LAKE_DATE that TMDB removed (404)
    backlog_days: int


FULL = Sizes(lake_ids=10_000, change_universe=500_000, removed=3, backlog_days=7)
QUICK = Sizes(lake_ids=500, change_universe=20_000, removed=2, backlog_days=7)


class ChangeListServer(FakeServer):
    """:class:`~benchmarks.fake_server.FakeServer` with the change-list knobs on its command
    line (``--change-period``, ``--change-universe``, ``--removed-ids``, ``--today``)."""

    def __init__(self, config: FakeTmdbConfig, *, latency: float, rate_limit: float) -> None:
        super().__init__(latency=latency, rate_limit=rate_limit)
        self.config = config

    def __enter__(self) -> ChangeListServer:
        # FakeServer.__enter__ with more flags (it builds its command in place).
        port_file = self._folder / "port"
        command = [
            sys.executable, "-m", FAKE_TMDB_MODULE, "--host", "127.0.0.1", "--port", "0",
            "--port-file", str(port_file), "--token", TOKEN, "--latency", str(self.latency),
            "--change-period", str(self.config.change_period),
            "--change-universe", str(self.config.change_universe),
        ]  # fmt: skip
        if self.rate_limit is not None:
            command += ["--rate-limit", str(self.rate_limit)]
        if self.config.removed_ids:
            command += ["--removed-ids", ",".join(sorted(self.config.removed_ids))]
        if self.config.today is not None:
            command += ["--today", self.config.today.isoformat()]
        with (self._folder / "stderr").open("wb") as stderr:
            self._proc = subprocess.Popen(
                command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr
            )
        deadline = time.monotonic() + 20.0
        while not port_file.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self._stop()
                raise RuntimeError(f"fake TMDB did not start: {self._stderr()}")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{int(port_file.read_text().strip())}"
        return self


def run(runner: Runner) -> dict[str, Any]:
    sizes = QUICK if runner.plan.quick else FULL
    work = runner.work
    lake = work / "refresh-lake"
    ids = [f"tt{n:07d}" for n in range(1, sizes.lake_ids + 1)]
    titles = build_lake(runner, lake, ids)
    first_day = changed_in(titles, LAKE_DATE, LAKE_DATE, config(sizes, frozenset()))
    removed = pick_removed(first_day, sizes.removed)
    cfg = config(sizes, removed)
    cases = {}
    try:
        for name, days in (("daily", 1), ("backlog", sizes.backlog_days)):
            cases[name] = measure(runner, name, lake, titles, cfg, days)
    finally:
        shutil.rmtree(lake, ignore_errors=True)
    part: dict[str, Any] = {
        "lake_ids": len(ids),
        "lake_titles": len(titles),
        "lake_date": LAKE_DATE.isoformat(),
        "change_period": CHANGE_PERIOD,
        "change_universe": sizes.change_universe,
        "removed_ids": sorted(removed),
        "tmdb_rate": TMDB_RATE,
        "latency_s": LATENCY,
        "cases": cases,
        "projection": project(cases["daily"], len(titles)),
    }
    part["rows"] = rows(part)
    for row in part["rows"]:
        log(f"refresh: {row['figure']}: {row['shown']} (target {row['target']})")
    return part


def config(sizes: Sizes, removed: frozenset[str]) -> FakeTmdbConfig:
    return FakeTmdbConfig(
        token=TOKEN,
        change_period=CHANGE_PERIOD,
        change_universe=sizes.change_universe,
        removed_ids=removed,
    )


def build_lake(runner: Runner, lake: Path, ids: list[str]) -> dict[int, Kind]:
    """Ingest ``ids`` into ``lake`` on :data:`LAKE_DATE`, movies and series as two files;
    return the lake's titles, TMDB id -> kind (the fake's TMDB id of ``tt`` + n is n)."""
    movies = input_of(
        "refresh-movies", [i for i in ids if slot_of(number(i)) == "movie"], runner.work
    )
    series = input_of(
        "refresh-series", [i for i in ids if slot_of(number(i)) == "tv"], runner.work, series=True
    )
    found = 0
    with FakeServer() as server:  # no limit, no latency: only the lake matters here
        for data, kind in ((movies, "movie"), (series, "tv")):
            log(f"refresh: ingesting {len(data.ids)} ids, --kind {kind}, into the lake")
            report = runner.engine(
                server,
                data,
                concurrency=64,
                rate=UNLIMITED,
                kind=kind,
                date=LAKE_DATE.isoformat(),
                dest=lake,
            )
            if report["status"] != "ok" or report["records"] != data.found:
                raise RuntimeError(f"refresh: the lake's {kind} ingest went wrong: {report}")
            found += report["records"]
    titles = {n: kind for i in ids if (kind := kind_of_number(n := number(i))) is not None}
    assert found == len(titles), (found, len(titles))
    return titles


def changed_in(
    titles: dict[int, Kind], start: dt.date, end: dt.date, cfg: FakeTmdbConfig
) -> set[int]:
    """The lake's titles that the fake's change lists hold for [start, end]."""
    lists = {kind: set(changed_ids(kind, start, end, cfg)) for kind in KINDS}
    return {n for n, kind in titles.items() if n in lists[kind]}


def pick_removed(changed: set[int], count: int) -> frozenset[str]:
    """``count`` of ``changed``, movies and series in turn, as IMDb ids."""
    by_kind = {kind: sorted(n for n in changed if kind_of_number(n) == kind) for kind in KINDS}
    picked: list[int] = []
    while len(picked) < count and any(by_kind.values()):
        for kind in KINDS:
            if by_kind[kind] and len(picked) < count:
                picked.append(by_kind[kind].pop(0))
    return frozenset(f"tt{n:07d}" for n in picked)


def list_pages(start: dt.date, end: dt.date, cfg: FakeTmdbConfig) -> dict[str, int]:
    """Pages the change lists of [start, end] take, per kind, in requests of up to 14 days
    (an empty list is one page)."""
    pages = dict.fromkeys(KINDS, 0)
    piece = start
    while piece <= end:
        last = min(end, piece + dt.timedelta(days=MAX_DAYS - 1))
        for kind in KINDS:
            count = len(changed_ids(kind, piece, last, cfg))
            pages[kind] += max(1, math.ceil(count / PER_PAGE))
        piece = last + dt.timedelta(days=1)
    assert all(p <= 500 for p in pages.values()), pages  # no halving in these windows
    return pages


ROUTES = ("movie_changes", "tv_changes", "movie_by_id", "tv_by_id", "by_imdb_id", "find")


@dataclass
class Asked:
    """What the fake was asked (its ``path_counts``): requests by route, and per title
    number how often by TMDB id (details) and by IMDb id (``/3/{kind}/tt...``, ``/find``)."""

    routes: dict[str, int]
    by_id: dict[int, int]
    by_imdb: dict[int, int]


def asked_of(path_counts: dict[str, int]) -> Asked:
    routes = dict.fromkeys([*ROUTES, "other"], 0)
    by_id: dict[int, int] = {}
    by_imdb: dict[int, int] = {}
    for path, count in path_counts.items():
        parts = path.split("/")  # "", "3", kind or "find", what
        what = parts[3] if len(parts) == 4 and parts[1] == "3" else ""
        if parts[2:3] == ["find"] and what.startswith("tt") and what[2:].isdigit():
            route, titles, n = "find", by_imdb, int(what[2:])
        elif parts[2:3] in (["movie"], ["tv"]) and what == "changes":
            routes[f"{parts[2]}_changes"] += count
            continue
        elif parts[2:3] in (["movie"], ["tv"]) and what.isdigit():
            route, titles, n = f"{parts[2]}_by_id", by_id, int(what)
        elif parts[2:3] in (["movie"], ["tv"]) and what.startswith("tt") and what[2:].isdigit():
            route, titles, n = "by_imdb_id", by_imdb, int(what[2:])
        else:
            routes["other"] += count
            continue
        routes[route] += count
        titles[n] = titles.get(n, 0) + count
    return Asked(routes, by_id, by_imdb)


def refresh_cli(server: FakeServer, lake: Path, date: dt.date) -> dict[str, Any]:
    """``python -m tmdb_async refresh ... --json`` in its own process; its summary, plus the
    process's wall and CPU time (interpreter start and imports included)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TMDB_", "PYTHON"))}
    env["TMDB_READ_ACCESS_TOKEN"] = TOKEN
    command = [
        sys.executable, "-m", "tmdb_async", "refresh", "--dest", str(lake),
        "--date", date.isoformat(), "--tmdb-url", server.url, "--rate", f"{TMDB_RATE:g}",
        "--json", "--quiet",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False
    )
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"refresh failed ({completed.returncode}): {completed.stdout[-2000:]}"
            f"{completed.stderr[-3000:]}"
        )
    summary: dict[str, Any] = json.loads(lines[-1])
    for name in ("files", "sidecars", "manifests"):  # paths in a scratch folder: counts
        summary[name] = len(summary[name])
    summary["process_seconds"] = seconds
    summary["process_cpu_seconds"] = (after.ru_utime - before.ru_utime) + (
        after.ru_stime - before.ru_stime
    )
    return summary


def written(lake: Path, date: dt.date) -> tuple[set[str], set[str]]:
    """The IMDb ids of the records in ``date``'s folder, and of its ``deleted`` entries."""
    folder = lake / "Raw" / "TMDB" / "JSON" / f"{date:%Y/%m/%d}"
    records: list[str] = []
    for path in folder.glob("*.json"):
        records += [r["imdb_id"] for r in json.loads(path.read_text(encoding="utf-8"))]
    deleted: set[str] = set()
    for path in (folder / "_sidecars").glob("*.json"):
        for entry in json.loads(path.read_text(encoding="utf-8")):
            if entry.get("outcome") == "deleted":
                deleted.add(entry["imdb_id"])
    assert len(records) == len(set(records)), "a record written twice"
    return set(records), deleted


def measure(
    runner: Runner,
    name: str,
    lake: Path,
    titles: dict[int, Kind],
    cfg: FakeTmdbConfig,
    days: int,
) -> dict[str, Any]:
    start = LAKE_DATE
    end = start + dt.timedelta(days=days - 1)
    date = end + dt.timedelta(days=1)
    copy = runner.work / f"refresh-{name}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(lake, copy)
    removed = {number(i) for i in cfg.removed_ids}
    expected = changed_in(titles, start, end, cfg)
    pages = list_pages(start, end, cfg)
    changed = {kind: len(changed_ids(kind, start, end, cfg)) for kind in KINDS}
    try:
        # A fresh server per run: its sliding window must not remember the previous run.
        with ChangeListServer(
            dataclasses.replace(cfg, today=date),
            latency=LATENCY,
            rate_limit=TMDB_RATE,
        ) as server:
            log(
                f"refresh: {name}, {days} day(s) of changes, {len(titles)} titles in the lake, "
                f"{len(expected)} changed, at 40 req/s"
            )
            server.reset()
            cpu0 = server.cpu_seconds()
            summary = refresh_cli(server, copy, date)
            cpu1 = server.cpu_seconds()
            stats = server.stats()
        records, deleted = written(copy, date)
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    asked = asked_of(stats["path_counts"])
    by_route = asked.routes
    expected_ids = {f"tt{n:07d}" for n in expected}
    gone = removed & expected  # their details answer 404
    # The refresh against the fake's rule: any difference is an engine bug, not a figure.
    checks = {
        "status ok": summary["status"] == "ok",
        "window": summary["window"] == {"start": start.isoformat(), "end": end.isoformat()},
        "changed ids": summary["changed"] == changed,
        "in_lake = expected": summary["in_lake"] == len(expected),
        "asked by TMDB id = expected": set(asked.by_id) == expected,
        # A title answering 404 may be looked up by its IMDb id (a merged title is found
        # again there); no other title is.
        "asked by IMDb id only when gone": set(asked.by_imdb) <= gone,
        "records": records == expected_ids - cfg.removed_ids and summary["records"] == len(records),
        "deleted": deleted == {f"tt{n:07d}" for n in gone} and summary["deleted"] == len(gone),
        "list pages": summary["list_pages"] == sum(pages.values()),
        "list requests": by_route["movie_changes"] + by_route["tv_changes"]
        >= summary["list_pages"],
        # Each changed title once and each page once (and a removed title's IMDb id); a
        # retry (after a 429) adds one more.
        "requests": summary["requests"] - summary["retries"]
        == len(expected) + summary["list_pages"] + sum(asked.by_imdb.values()),
        "requests seen": stats["total_requests"] == summary["requests"],
        "no other route": by_route["other"] == 0,
    }
    failed = [check for check, ok in checks.items() if not ok]
    if failed:
        raise AssertionError(f"refresh {name}: {failed}; summary {summary}; routes {by_route}")
    requests, in_lake, pages_read = summary["requests"], summary["in_lake"], summary["list_pages"]
    # Requests of the titles TMDB still has (records) and of the removed ones (deleted); a
    # retried list page would count in neither, so both come from the fake's counts.
    of_gone = sum(asked.by_id.get(n, 0) + asked.by_imdb.get(n, 0) for n in gone)
    of_updated = sum(asked.by_id.values()) + sum(asked.by_imdb.values()) - of_gone
    bound = requests / TMDB_RATE
    result = {
        "summary": summary,
        "days": days,
        "window": summary["window"],
        "date": date.isoformat(),
        "changed": changed,
        "changed_total": sum(changed.values()),
        "in_lake": in_lake,
        "expected_in_lake": len(expected),
        "changed_share": in_lake / len(titles),
        "records": summary["records"],
        "deleted": summary["deleted"],
        "titles_asked": len(asked.by_id),
        "titles_asked_more_than_once": sum(1 for count in asked.by_id.values() if count > 1),
        "asked": {str(n): asked.by_id[n] for n in sorted(asked.by_id)},  # TMDB id -> requests
        "asked_by_imdb_id": {str(n): asked.by_imdb[n] for n in sorted(asked.by_imdb)},
        "list_pages": pages_read,
        "expected_list_pages": pages,
        "requests": requests,
        "retries": summary["retries"],
        "routes": by_route,
        "requests_per_changed_title": (requests - pages_read) / in_lake,
        "requests_per_updated_title": of_updated / max(1, summary["records"]),
        "requests_per_deleted_title": of_gone / len(gone) if gone else None,
        "wall_seconds": summary["seconds"],
        "request_bound_seconds": bound,
        "wall_over_request_bound": summary["seconds"] / bound,
        "throttled_429": stats["throttled"],
        "process_seconds": summary["process_seconds"],
        "process_cpu_seconds": summary["process_cpu_seconds"],
        "server_cpu_seconds": None if cpu0 is None or cpu1 is None else round(cpu1 - cpu0, 3),
    }
    log(
        f"refresh: {name}: {in_lake} of {len(titles)} titles changed, {requests} requests "
        f"({summary['list_pages']} list pages, "
        f"{result['requests_per_changed_title']:.3f} per changed title besides), wall "
        f"{summary['seconds']:.1f} s = {result['wall_over_request_bound']:.3f} × bound, "
        f"{result['throttled_429']} × 429"
    )
    return result


def project(daily: dict[str, Any], lake_titles: int) -> dict[str, Any]:
    """The daily refresh of a :data:`PROJECTED_TITLES`-title lake, from the daily case: the
    same share of the lake changed, at the measured requests per changed title, plus the
    measured list pages (the change lists are TMDB's, whatever the lake's size), at 40/s
    times the measured wall ÷ request bound."""
    changed = PROJECTED_TITLES * daily["in_lake"] / lake_titles
    requests = changed * daily["requests_per_changed_title"] + daily["list_pages"]
    seconds = requests / TMDB_RATE * daily["wall_over_request_bound"]
    return {
        "titles": PROJECTED_TITLES,
        "changed_share": daily["in_lake"] / lake_titles,
        "changed": changed,
        "list_pages": daily["list_pages"],
        "requests": requests,
        "seconds": seconds,
    }


def rows(part: dict[str, Any]) -> list[dict[str, Any]]:
    """The part's target rows, in the format of :mod:`benchmarks.report`. The target of
    requests per title is on the titles TMDB still has: how many of the lake's titles it
    removed in a day is the benchmark's choice, not a measurement (their cost is a row of
    its own)."""
    out = Rows()
    daily, backlog = part["cases"]["daily"], part["cases"]["backlog"]
    for key, case in (("daily", daily), ("backlog", backlog)):
        label = (
            f"daily, {part['lake_titles']:,}-title lake"
            if key == "daily"
            else (f"{case['days']}-day backlog")
        )
        value = case["requests_per_updated_title"]
        out.add(
            f"refresh_{key}_requests",
            f"8. refresh, {label}: requests ÷ changed title still on TMDB, list pages aside",
            value,
            "{:.3f}",
            "≤ 1.02",
            value <= 1.02,
        )
        if key == "daily":
            value = case["wall_over_request_bound"]
            out.add(
                "refresh_daily_wall",
                "8. refresh, daily: wall ÷ (all requests ÷ 40/s)",
                value,
                "{:.3f}",
                "≤ 1.05",
                value <= 1.05,
            )
        out.add(
            f"refresh_{key}_pages",
            f"8. refresh, {label.split(',')[0]}: change-list pages "
            f"({case['changed_total']:,} ids changed)",
            case["list_pages"],
            "{:d}",
            "report",
            None,
        )
        out.add(
            f"refresh_{key}_429",
            f"8. refresh, {label.split(',')[0]}: 429 answers",
            case["throttled_429"],
            "{:d}",
            "report",
            None,
        )
    if daily["requests_per_deleted_title"] is not None:
        out.add(
            "refresh_deleted_requests",
            "8. refresh, daily: requests ÷ title removed from TMDB (deleted)",
            daily["requests_per_deleted_title"],
            "{:.2f}",
            "report",
            None,
        )
    projection = part["projection"]
    out.add(
        "refresh_projection",
        f"8. refresh, daily, {projection['titles']:,}-title lake (projected): minutes",
        projection["seconds"] / 60,
        "{:.1f}",
        "report",
        None,
    )
    return list(out)


# --- the generated block of BENCHMARKS.md's Refresh section ------------------------------


def table(part: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    """The Refresh section's figures, as Markdown lines."""
    lines = [
        f"Measured {meta['date']} on {meta['machine']} (Python {meta['python']}, "
        f"{meta['cpus']} CPUs): a lake of {part['lake_titles']:,} titles "
        f"({part['lake_ids']:,} ids, {part['lake_ids'] - part['lake_titles']:,} unknown to "
        f"TMDB), change universe {part['change_universe']:,}, each title changed on 1 day in "
        f"{part['change_period']}; {len(part['removed_ids'])} of the first day's changed titles "
        f"removed from TMDB; fake and engine at {part['tmdb_rate']:g} requests/s, "
        f"{part['latency_s'] * 1000:.0f} ms per answer.",
        "",
        "| Figure | Measured | Target | Met |",
        "| --- | ---: | --- | :---: |",
    ]
    for row in rows(part):  # not part["rows"]: the labels as they are now
        met = {True: "yes", False: "**no**", None: "—"}[row["met"]]
        lines.append(f"| {row['figure']} | {row['shown']} | {row['target']} | {met} |")
    lines += [
        "",
        "| Case | Window | Ids listed (movie + tv) | Lake titles changed | Records | Deleted "
        "| List pages | Title requests | Requests | ÷ changed title | ÷ updated title "
        "| ÷ deleted title | Wall (s) | Wall ÷ (requests ÷ 40/s) | 429s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: |",
    ]
    for name in ("daily", "backlog"):
        case = part["cases"][name]
        window, per_deleted = case["window"], case["requests_per_deleted_title"]
        deleted = "—" if per_deleted is None else f"{per_deleted:.2f}"
        lines.append(
            f"| {name} | {window['start']} .. {window['end']} ({case['days']} d) | "
            f"{case['changed']['movie']:,} + {case['changed']['tv']:,} | {case['in_lake']:,} "
            f"({case['changed_share']:.2%}) | {case['records']:,} | {case['deleted']} | "
            f"{case['list_pages']} | {case['requests'] - case['list_pages']:,} | "
            f"{case['requests']:,} | {case['requests_per_changed_title']:.3f} | "
            f"{case['requests_per_updated_title']:.3f} | {deleted} | "
            f"{case['wall_seconds']:.1f} | {case['wall_over_request_bound']:.3f} | "
            f"{case['throttled_429']} |"
        )
    p, daily = part["projection"], part["cases"]["daily"]
    lines += [
        "",
        f"Projection for a {p['titles']:,}-title lake, daily: {p['titles']:,} × "
        f"{p['changed_share']:.4f} (the measured share changed) = {p['changed']:,.0f} changed "
        f"titles × {daily['requests_per_changed_title']:.3f} requests + {p['list_pages']} list "
        f"pages (TMDB's lists, whatever the lake's size) = {p['requests']:,.0f} requests, "
        f"÷ 40/s × {daily['wall_over_request_bound']:.3f} (the measured wall ratio) = "
        f"{p['seconds']:.0f} s ({p['seconds'] / 60:.1f} min).",
    ]
    return lines


def write_markdown(result: dict[str, Any], path: Path = MARKDOWN) -> None:
    """Replace the block between :data:`TABLE_START` and :data:`TABLE_END` in ``path``."""
    replace_block(path, TABLE_START, TABLE_END, table(result["refresh"], result["meta"]))


def main(argv: Sequence[str]) -> int:
    return rewrite_from_result(argv, "benchmarks.scenarios.refresh", write_markdown, "Refresh")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
