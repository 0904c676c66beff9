"""CSV in S3 → TMDB (fake, loopback) → JSON files in S3, through moto's server over HTTP."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOKEN
from tests.support.lake import read_s3
from tmdb_async import Credentials, Settings, run
from tmdb_async.errors import InputError, StorageError
from tmdb_async.jobs.prepare import prepare_ids
from tmdb_async.lake.idmap import BASE_KEY, COMPACT_AT, SEGMENT_PREFIX, IdMap
from tmdb_devtools.csvgen import kind_of, title_ids, write_csv
from tmdb_devtools.fake_tmdb import FakeTmdb

SOURCE_KEY = "Raw/Local/CSV/Movies/2022/05/02/movies.csv"
DATA_KEY = re.compile(r"^Raw/TMDB/JSON/2022/05/02/movies-\d{8}-\d{2}\.json$")


def keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def body(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def s3_settings(url: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "source": f"s3://data-lake-x/{SOURCE_KEY}",
        "dest": "s3://data-lake-x",
        "credentials": Credentials(read_access_token=TOKEN),
        "tmdb_url": url,
        "date": dt.date(2022, 5, 2),
        "rate": 1000.0,
    }
    values.update(changes)
    return Settings(**values)


async def test_csv_in_s3_becomes_dated_chunked_json_in_s3(
    tmp_path: Path, s3: Any, lake: str, fake_tmdb: FakeTmdb
) -> None:
    ids = title_ids(230, "movie")
    # Compass-style: repeated rows per id, \N, accents, quotes; CRLF as Windows exports do.
    csv_path = write_csv(tmp_path / "movies.csv", [*ids, "tt99"], newline="\r\n")
    s3.upload_file(str(csv_path), lake, SOURCE_KEY)

    summary = await run(s3_settings(fake_tmdb.url))

    assert summary.status == "ok"
    data_keys = [k for k in keys(s3, lake, "Raw/TMDB/JSON/") if "/_" not in k]
    assert data_keys and all(DATA_KEY.match(k) for k in data_keys)
    view = read_s3(s3, lake, "Raw/TMDB/JSON/2022/05/02")
    assert all(n <= 100 for n in view.data_files.values())
    assert not view.duplicates() and not view.stray
    assert view.all_ids() == {*ids, "tt99"}
    records = view.record_ids()
    assert len(records) == sum(1 for i in ids if kind_of(int(i[2:])) is not None)
    manifest = body(s3, lake, summary.manifest.split(f"{lake}/", 1)[1])
    assert manifest["outcome"] == "ok"
    assert manifest["counts"]["records"] == len(records)
    assert TOKEN not in json.dumps(manifest)


async def test_large_source_is_read_in_ranged_chunks(
    tmp_path: Path, s3: Any, lake: str, fake_tmdb: FakeTmdb, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tmdb_async.lake.storage as storage

    monkeypatch.setattr(storage, "READ_CHUNK", 1000)  # force many ranged GETs, splitting lines
    ids = title_ids(60, "movie")
    s3.upload_file(str(write_csv(tmp_path / "m.csv", ids)), lake, SOURCE_KEY)
    summary = await run(s3_settings(fake_tmdb.url, detail="find"))
    assert summary.unique_ids == 60
    assert summary.rows_read > 60


async def test_missing_source_object_is_bad_input(lake: str, fake_tmdb: FakeTmdb) -> None:
    with pytest.raises(InputError, match=r"s3://data-lake-x/Raw/.*movies\.csv: no such S3 object"):
        await run(s3_settings(fake_tmdb.url))


async def test_missing_destination_bucket_fails_before_tmdb_is_called(
    tmp_path: Path, s3: Any, lake: str, fake_tmdb: FakeTmdb
) -> None:
    s3.upload_file(str(write_csv(tmp_path / "m.csv", title_ids(5, "movie"))), lake, SOURCE_KEY)
    with pytest.raises(StorageError, match="the bucket does not exist"):
        await run(s3_settings(fake_tmdb.url, dest="s3://no-such-bucket/prefix"))
    assert fake_tmdb.stats().total_requests == 0


async def test_prepare_writes_the_distinct_ids_for_distributed_map(
    tmp_path: Path, s3: Any, lake: str
) -> None:
    ids = title_ids(40, "movie")
    s3.upload_file(str(write_csv(tmp_path / "m.csv", ids)), lake, SOURCE_KEY)
    result = await prepare_ids(s3_settings("http://unused"))
    assert result["ids_bucket"] == lake
    assert result["unique_ids"] == 40
    text = s3.get_object(Bucket=lake, Key=result["ids_key"])["Body"].read().decode()
    assert text.splitlines() == ["id", *ids]
    assert result["ids_key"].startswith("Raw/TMDB/_work/movies-")


async def test_prepare_folds_the_id_map_once_for_the_whole_execution(
    tmp_path: Path, s3: Any, lake: str
) -> None:
    """Distributed Map children only read the map; the prepare step compacts it, once."""
    s3.upload_file(str(write_csv(tmp_path / "m.csv", title_ids(5, "movie"))), lake, SOURCE_KEY)
    for n in range(COMPACT_AT):  # what earlier children left: one segment each
        idmap = IdMap(tombstones=True)
        idmap.add(f"tt{n + 1:07d}", "movie", n + 1)
        s3.put_object(Bucket=lake, Key=f"{SEGMENT_PREFIX}{n:020d}-child.bin", Body=idmap.encode())
    await prepare_ids(s3_settings("http://unused"))
    assert s3.list_objects_v2(Bucket=lake, Prefix=SEGMENT_PREFIX).get("KeyCount") == 0
    base, _ = IdMap.decode(s3.get_object(Bucket=lake, Key=BASE_KEY)["Body"].read(), "base")
    assert len(base) == COMPACT_AT


async def test_a_batch_reads_its_part_of_the_id_map_by_byte_ranges_on_s3(lake: str) -> None:
    """Ranged GETs through aiobotocore on moto: the part a child reads holds the titles of
    its range, and only them."""
    from tmdb_async.lake.idmap_format import read_part
    from tmdb_async.lake.storage import open_store

    known = IdMap()
    for n in range(1, 10_001):
        known.add(f"tt{n * 2:07d}", "movie", n)
    async with open_store(f"s3://{lake}") as store:
        await store.put(BASE_KEY, known.encode(), "application/octet-stream")
        found = await read_part(store, BASE_KEY, 5_000, 5_400)
        assert found is not None
        assert list(found[0]) == list(range(5_000, 5_401, 2))
        assert IdMap.of_columns(*found[:3]).get("tt0005000") == known.get("tt0005000")
        assert await read_part(store, "Raw/TMDB/_state/idmap/none.bin", 1, 2) is None
