"""The current state of every title, one query away: the queries of ``docs/queries/`` run
against a lake built by real runs and refreshes against the fake TMDB.

A title's current state is its event with the latest processing date (the date folder of
the file holding it), where its events are its records and its ``deleted`` sidecar entries;
it is current only if that latest event is a record. The expected set is computed here
from the folders themselves (:func:`tests.support.lake.read_local`), then each engine's
query must give exactly that: DuckDB and Spark run their files as they are; the Athena
DDL is checked for its shape, and its view's logic runs on DuckDB after sqlglot's
translation from Trino's dialect.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from tests.jobs.test_refresh import config, imdb, ingest, options
from tests.support.lake import read_local
from tmdb_async.jobs.refresh import refresh
from tmdb_async.lake.layout import RAW_FOLDER, date_folder
from tmdb_async.lake.ledger import SIDECAR_FOLDER
from tmdb_devtools.fake_tmdb import FakeTmdb

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ROOT / "docs" / "queries"
INGESTED = dt.date(2026, 11, 17)  # ids 1–120, JSON arrays
REFRESHED = dt.date(2026, 11, 20)  # the changed titles again; TMDB removed 3 and 8
REINGESTED = dt.date(2026, 11, 29)  # --format jsonl: 3 (restored by TMDB), 101–140
REMOVED = frozenset({imdb(3), imdb(8)})
RESTORED = imdb(3)


async def build_lake(tmp_path: Path) -> Path:
    """Three date folders written by real runs: an ingest, a refresh that re-fetches the
    changed titles and records TMDB's removal of two titles as ``deleted`` entries, and a
    ``--format jsonl`` run that fetches some titles again, new ones, and one removed title
    that TMDB serves again."""
    lake = tmp_path / "lake"
    async with FakeTmdb(config()) as fake:
        await ingest(tmp_path, lake, fake.url, [imdb(n) for n in range(1, 121)], INGESTED)
    async with FakeTmdb(config(removed_ids=REMOVED)) as fake:
        await refresh(options(lake, fake.url, date=REFRESHED))
    async with FakeTmdb(config(removed_ids=REMOVED - {RESTORED})) as fake:
        again = [RESTORED] + [imdb(n) for n in range(101, 141)]
        await ingest(tmp_path, lake, fake.url, again, REINGESTED, output_format="jsonl")
    return lake


@dataclass(frozen=True)
class Expected:
    """What the folders hold, read file by file, and the current state derived from it."""

    rows: int  # records across every folder
    titles: int  # distinct imdb_ids among them
    deleted: frozenset[str]  # titles whose latest event is a ``deleted`` entry
    current: dict[str, tuple[dt.date, dict[str, Any]]]  # imdb_id -> (date, record)


def expected_state(lake: Path) -> Expected:
    events: dict[str, list[tuple[dt.date, str, dict[str, Any]]]] = {}
    rows = 0
    for folder in sorted((lake / RAW_FOLDER).glob("*/*/*")):
        date = dt.date(*(int(part) for part in folder.parts[-3:]))
        view = read_local(folder)
        assert not view.duplicates()  # the ledger's promise the query relies on
        for imdb_id, places in view.records.items():
            rows += len(places)
            events.setdefault(imdb_id, []).append((date, "record", places[0][1]))
        for imdb_id, entries in view.outcomes.items():
            if entries[0][1]["outcome"] == "deleted":
                events.setdefault(imdb_id, []).append((date, "deleted", entries[0][1]))
    latest = {i: max(e, key=lambda event: event[0]) for i, e in events.items()}
    titles = sum(1 for e in events.values() if any(kind == "record" for _, kind, _ in e))
    return Expected(
        rows=rows,
        titles=titles,
        deleted=frozenset(i for i, (_, kind, _) in latest.items() if kind == "deleted"),
        current={i: (d, r) for i, (d, kind, r) in latest.items() if kind == "record"},
    )


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return asyncio.run(build_lake(tmp_path_factory.mktemp("current")))


@pytest.fixture(scope="module")
def want(lake: Path) -> Expected:
    return expected_state(lake)


def test_the_test_lake_holds_copies_deletions_a_restore_and_both_formats(
    lake: Path, want: Expected
) -> None:
    """The lake is the case the queries are for: more rows than titles (a refresh and a
    rerun wrote new copies), titles TMDB removed, one of them restored, and .json beside
    .jsonl."""
    deletions = {
        entry["imdb_id"]
        for folder in (REFRESHED, REINGESTED)
        for entries in read_local(lake / date_folder(folder)).outcomes.values()
        for _, entry in entries
        if entry["outcome"] == "deleted"
    }
    assert deletions == REMOVED
    assert want.deleted == REMOVED - {RESTORED}
    assert want.current[RESTORED][0] == REINGESTED
    assert want.rows > want.titles > len(want.current) > 100
    dates = Counter(d for d, _ in want.current.values())
    assert set(dates) == {INGESTED, REFRESHED, REINGESTED}
    names = {p.name for p in (lake / RAW_FOLDER).glob("*/*/*/*") if p.is_file()}
    assert any(n.endswith(".json") for n in names) and any(n.endswith(".jsonl") for n in names)


def _check(rows: list[dict[str, Any]], want: Expected) -> None:
    """``rows`` (imdb_id, processing_date, the record's fields) are the current state."""
    ids = [row["imdb_id"] for row in rows]
    assert len(ids) == len(set(ids)) == len(want.current)
    assert set(ids) == set(want.current)
    assert want.deleted.isdisjoint(ids)
    for row in rows:
        date, record = want.current[row["imdb_id"]]
        assert row["processing_date"] == date, row["imdb_id"]  # the latest copy
        assert (row["id"], row["media_type"]) == (record["id"], record["media_type"])


def _duckdb_rows(lake: Path) -> list[dict[str, Any]]:
    con = duckdb.connect()
    con.execute("SET VARIABLE lake = ?", [str(lake)])
    result = con.sql((QUERIES / "current_duckdb.sql").read_text())
    return [dict(zip(result.columns, row, strict=True)) for row in result.fetchall()]


def test_the_duckdb_query_gives_the_latest_record_of_every_title_tmdb_still_has(
    lake: Path, want: Expected
) -> None:
    _check(_duckdb_rows(lake), want)


def test_the_duckdb_query_reads_a_lake_without_any_sidecar(tmp_path: Path, lake: Path) -> None:
    """No ``_sidecars/`` anywhere (every id found, nothing deleted): no error, every title."""
    copy = tmp_path / "lake"
    shutil.copytree(lake, copy, ignore=shutil.ignore_patterns(SIDECAR_FOLDER))
    assert not list(copy.rglob(f"{SIDECAR_FOLDER}/*"))
    rows = _duckdb_rows(copy)
    assert {row["imdb_id"] for row in rows} == set(expected_state(copy).current)


def _spark_statements() -> list[str]:
    text = (QUERIES / "current_spark.sql").read_text()
    return [s for s in text.split(";\n") if s.strip()]


@pytest.mark.slow
def test_the_spark_query_gives_the_same_current_state(lake: Path, want: Expected) -> None:
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[1]")
        .appName("tmdb-current-state")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "512m")
        .config("spark.sql.shuffle.partitions", "1")
        .getOrCreate()
    )
    try:
        spark.sparkContext.setLogLevel("ERROR")
        spark.sql(f"SET lake={lake}")
        *views, query = _spark_statements()
        for statement in views:
            spark.sql(statement)
        rows = [row.asDict() for row in spark.sql(query).collect()]
    finally:
        spark.stop()
    _check(rows, want)


def _athena_statements() -> list[Any]:
    text = (QUERIES / "athena.sql").read_text()
    return [s for s in sqlglot.parse(text, read="athena") if s is not None and s.key == "create"]


def test_the_athena_tables_project_the_lake_layout() -> None:
    """Both tables are partitioned by the date folder with partition projection; their
    location templates are the layout's paths (the date folder, and its sidecar folder)."""
    tables = {}
    for statement in _athena_statements():
        if statement.args.get("kind") != "TABLE":
            continue
        properties = statement.find_all(exp.Property)
        values = {p.name: p.text("value") for p in properties if type(p) is exp.Property}
        location = statement.find(exp.LocationProperty)
        assert location is not None
        location = location.this.name
        tables[statement.this.this.name] = (location, values)
    assert set(tables) == {"tmdb_lines", "tmdb_sidecar_lines"}
    bucket = "s3://data-lake-x"
    day = dt.date(2026, 11, 24)
    for name, (location, values) in tables.items():
        assert location == f"{bucket}/{RAW_FOLDER}/"
        assert values["projection.enabled"] == "true"
        assert values["projection.dt.type"] == "date"
        java = values["projection.dt.format"]
        python = java.replace("yyyy", "%Y").replace("MM", "%m").replace("dd", "%d")
        template = values["storage.location.template"]
        projected = template.replace("${dt}", day.strftime(python))
        folder = f"{bucket}/{date_folder(day)}/"
        assert projected == (folder if name == "tmdb_lines" else f"{folder}{SIDECAR_FOLDER}/")


def _athena_lines(lake: Path, sidecars: bool) -> list[tuple[str, str]]:
    """(line, dt) as the text SerDe reads the table's files: every line of the files at a
    partition's location, none from ``_``- or ``.``-prefixed names below it."""
    lines = []
    for folder in sorted((lake / RAW_FOLDER).glob("*/*/*")):
        where = folder / SIDECAR_FOLDER if sidecars else folder
        day = "/".join(folder.parts[-3:])
        for path in sorted(where.glob("*")):
            if path.is_file() and not path.name.startswith(("_", ".")):
                lines += [(line, day) for line in path.read_text().split("\n") if line]
    return lines


def test_the_athena_view_gives_the_same_current_state_on_duckdb(lake: Path, want: Expected) -> None:
    """The view's query, translated from Trino's dialect by sqlglot, run on DuckDB over the
    lines Athena's tables would hold."""
    (view,) = [s for s in _athena_statements() if s.args.get("kind") == "VIEW"]
    assert view.this.name == "tmdb_current"
    text = (QUERIES / "athena.sql").read_text()
    select = re.search(r"CREATE OR REPLACE VIEW tmdb_current AS\n(.*?);", text, re.S)
    assert select is not None
    query = sqlglot.transpile(select[1], read="trino", write="duckdb")[0]
    con = duckdb.connect()
    for table, sidecars in (("tmdb_lines", False), ("tmdb_sidecar_lines", True)):
        con.execute(f"CREATE TABLE {table} (line VARCHAR, dt VARCHAR)")
        con.executemany(f"INSERT INTO {table} VALUES (?, ?)", _athena_lines(lake, sidecars))
    result = con.sql(query)
    rows = [dict(zip(result.columns, row, strict=True)) for row in result.fetchall()]
    assert [c for c in result.columns] == [
        "imdb_id",
        "media_type",
        "tmdb_id",
        "title",
        "processing_date",
        "record",
    ]
    for row in rows:
        row["id"] = row["tmdb_id"]
        record = json.loads(row["record"])
        assert record == want.current[row["imdb_id"]][1]  # the whole record, as written
        assert row["title"] == record.get("title", record.get("name"))
    _check(rows, want)
