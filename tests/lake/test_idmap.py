"""The id map: IMDb id → TMDB media type and id, learned from committed records, kept in the
lake as a compacted base plus one segment per run's lessons."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import tracemalloc
from array import array
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmdb_async.errors import InputError
from tmdb_async.lake import idmap as idmap_module
from tmdb_async.lake.idmap import (
    BASE_KEY,
    SEGMENT_PREFIX,
    IdMap,
    LakeIdMap,
    Rebuilt,
    Title,
    rebuild,
)
from tmdb_async.lake.profile import Profile
from tmdb_async.lake.storage import LocalStore, S3Store, Store, open_s3, parse_s3

AUTO = Profile("auto", "full", "pt-BR", ("credits",), "json")
TV = Profile("tv", "full", "en-US", (), "jsonl")
MOVIE = Profile("movie", "full", "pt-BR", (), "json")
numbers = st.integers(1, 999_999_999)
titles = st.tuples(st.sampled_from(["movie", "tv"]), st.integers(1, 2**40 - 1))


def imdb(n: int) -> str:
    return f"tt{n:07d}"


def record(n: int, media_type: str = "movie", tmdb_id: int | None = None) -> dict[str, Any]:
    return {"imdb_id": imdb(n), "media_type": media_type, "id": tmdb_id or n + 7}


@settings(max_examples=150)
@given(st.lists(st.tuples(numbers, titles), max_size=300))
def test_it_answers_like_a_dict_and_survives_its_own_bytes(
    writes: list[tuple[int, tuple[str, int]]],
) -> None:
    idmap, model = IdMap(), {}
    idmap.MERGE_AT = 7  # type: ignore[misc]  # merge often: the sorted columns get exercised
    for n, (media_type, tmdb_id) in writes:
        assert idmap.add(imdb(n), media_type, tmdb_id)
        model[n] = Title(media_type, tmdb_id)  # type: ignore[arg-type]
    assert len(idmap) == len(model)
    assert all(idmap.get(imdb(n)) == title for n, title in model.items())
    assert idmap.get("tt0000000") is None
    decoded, merged = IdMap.decode(idmap.encode(["b", "a"]), "here")
    assert merged == ["a", "b"]
    assert all(decoded.get(imdb(n)) == title for n, title in model.items())
    assert len(decoded) == len(model)


def test_what_the_columns_cannot_hold_is_not_kept() -> None:
    idmap = IdMap()
    assert not idmap.add("tt01000001", "movie", 1)  # not canonical
    assert not idmap.add("nm0000001", "movie", 1)
    assert not idmap.add("tt0000001", "person", 1)
    assert not idmap.add("tt0000001", "movie", True)  # bool is not an id
    assert not idmap.add("tt0000001", "movie", 2**40)
    assert not idmap.add("tt0000001", "movie", "603")
    assert len(idmap) == 0


def test_300000_titles_take_a_few_megabytes() -> None:
    source = IdMap()
    for n in range(1, 300_001):
        source.add(imdb(n * 3), "tv" if n % 4 == 0 else "movie", n)
    raw = source.encode()
    # 12 bytes per title on disk, and the header's index: a pair per 2,048 titles
    assert len(raw) < 300_000 * 12 + 100 + 300_000 // 2048 * 20
    tracemalloc.start()
    try:
        loaded, _ = IdMap.decode(raw, "here")
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 4 * 2**20  # 3.6 MB of columns, in memory as on disk
    assert loaded.get(imdb(300_000 * 3)) == Title("tv", 300_000)


def test_a_damaged_file_is_a_one_line_storage_error() -> None:
    raw = IdMap().encode()
    for bad in (
        b"",
        b"something else\n",
        raw[:-1] + b"\x00\x00",
        raw.replace(b'"count":0', b'"count":3'),
    ):
        with pytest.raises(Exception, match=r"^here: damaged id map"):
            IdMap.decode(bad, "here")


async def test_a_run_teaches_the_next_one_through_a_segment(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    first = await LakeIdMap(store, "run-a").load(compact=True)
    assert len(first) == 0
    first.learn(record(133093, "movie", 603), AUTO)
    first.learn(record(944947, "tv", 1399), AUTO)
    first.learn({"imdb_id": "tt0000003", "media_type": "movie"}, AUTO)  # no id: nothing to learn
    assert first.get("tt0944947") is None  # a run asks each title once: lessons are for later
    assert first.pending == 2
    await first.flush()
    assert first.pending == 0
    (segment,) = await store.list(SEGMENT_PREFIX)
    assert "run-a" in segment
    second = await LakeIdMap(store, "run-b").load(compact=True)
    assert second.get("tt0133093") == Title("movie", 603, profile=AUTO)
    assert second.get("tt0944947") == Title("tv", 1399, profile=AUTO)
    second.learn(record(133093, "movie", 603), AUTO)  # known already: written again, newest wins
    await second.flush()
    assert len(await store.list(SEGMENT_PREFIX)) == 2
    assert (await LakeIdMap(store, "run-c").load(compact=True)).get("tt0133093") == Title(
        "movie", 603, profile=AUTO
    )


async def test_a_newer_lesson_wins(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    for run, tmdb_id in (("a", 1), ("b", 2)):
        lake_map = await LakeIdMap(store, run).load(compact=True)
        lake_map.learn(record(10, "movie", tmdb_id), AUTO)
        await lake_map.flush()
    assert (await LakeIdMap(store, "c").load(compact=True)).get(imdb(10)) == Title(
        "movie", 2, profile=AUTO
    )


async def test_segments_are_folded_into_the_base_once_they_pile_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idmap_module, "COMPACT_AT", 4)
    store = LocalStore(str(tmp_path))
    for n in range(4):
        lake_map = await LakeIdMap(store, f"r{n}").load(compact=True)
        lake_map.learn(record(n + 1), AUTO)
        await lake_map.flush()
    assert len(await store.list(SEGMENT_PREFIX)) == 4
    assert await store.get(BASE_KEY) is None
    compacting = await LakeIdMap(store, "r9").load(compact=True)  # finds 4: folds them
    assert await store.list(SEGMENT_PREFIX) == []
    _, merged = IdMap.decode(await store.get(BASE_KEY) or b"", "base")
    assert len(merged) == 4
    after = await LakeIdMap(store, "r10").load(compact=True)
    assert len(after) == len(compacting) == 4
    assert all(after.get(imdb(n + 1)) == Title("movie", n + 8, profile=AUTO) for n in range(4))


async def test_a_damaged_base_costs_requests_not_the_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalStore(str(tmp_path))
    await store.write(BASE_KEY, b"garbage", "application/octet-stream")
    with caplog.at_level(logging.WARNING):
        lake_map = await LakeIdMap(store, "r").load(compact=True)
    assert len(lake_map) == 0
    assert "damaged id map" in caplog.text


class _Flaky:
    """A store whose deletes of segments fail: a compaction killed before cleaning up."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.fail_deletes = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def delete(self, key: str, **kw: Any) -> None:
        if self.fail_deletes:
            raise asyncio.CancelledError  # the process died here
        await self.inner.delete(key, **kw)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("learn"),
                st.lists(st.tuples(st.integers(1, 30), titles), max_size=5),
                st.sampled_from([AUTO, TV, MOVIE]),
            ),
            st.tuples(st.just("load"), st.booleans(), st.none()),
        ),
        max_size=25,
    )
)
def test_whatever_runs_write_and_compact_every_lesson_is_kept_newest_first(
    steps: list[tuple[str, Any, Profile | None]],
) -> None:
    """Runs of several profiles learn and flush, others load (and compact, sometimes killed
    before deleting the folded segments): a load always sees the newest lesson of every
    title, with the profile of the run that taught it."""

    async def scenario(root: str) -> None:
        store = _Flaky(LocalStore(root))
        model: dict[int, Title] = {}
        for i, (action, arg, profile) in enumerate(steps):
            if action == "learn":
                assert profile is not None
                lake_map = await LakeIdMap(store, f"r{i:03d}").load(compact=True)  # type: ignore[arg-type]
                for n, (media_type, tmdb_id) in arg:
                    lake_map.learn(record(n, media_type, tmdb_id), profile)
                    narrow = media_type == "tv" and profile.kind == "tv"
                    model[n] = Title(media_type, tmdb_id, narrow, profile)  # type: ignore[arg-type]
                await lake_map.flush()
            else:
                store.fail_deletes = arg
                with contextlib.suppress(asyncio.CancelledError):
                    await LakeIdMap(store, f"r{i:03d}").load(compact=True)  # type: ignore[arg-type]
                store.fail_deletes = False
            seen = await LakeIdMap(store, "reader").load(compact=True)  # type: ignore[arg-type]
            assert {n: seen.get(imdb(n)) for n in range(1, 31) if seen.get(imdb(n))} == model

    original = idmap_module.COMPACT_AT
    idmap_module.COMPACT_AT = 3
    try:
        with tempfile.TemporaryDirectory() as root:
            asyncio.run(scenario(root))
    finally:
        idmap_module.COMPACT_AT = original


async def test_runs_compacting_at_once_on_s3_lose_nothing(
    s3: Any, lake: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idmap_module, "COMPACT_AT", 3)
    async with open_s3(True, 16) as client:
        url = parse_s3(f"s3://{lake}/prefix", "dest")
        assert url is not None
        store = S3Store(client, url)
        for n in range(6):
            lake_map = await LakeIdMap(store, f"r{n}").load(compact=True)
            lake_map.learn(record(n + 1, "tv", 100 + n), AUTO)
            await lake_map.flush()
        loads = await asyncio.gather(
            *(LakeIdMap(store, f"c{k}").load(compact=True) for k in range(4))
        )
        assert all(len(m) == 6 for m in loads)
        after = await LakeIdMap(store, "after").load(compact=True)
        assert all(after.get(imdb(n + 1)) == Title("tv", 100 + n, profile=AUTO) for n in range(6))
        assert await store.get(BASE_KEY) is not None


async def test_a_series_learned_by_a_tv_run_is_narrow(tmp_path: Path) -> None:
    """A --kind tv run never looked for a movie of the same IMDb id; --kind auto prefers
    the movie, so the client does not use such an entry under auto (see test_client)."""
    store = LocalStore(str(tmp_path))
    lake_map = await LakeIdMap(store, "r").load(compact=True)
    lake_map.learn(record(944947, "tv", 1399), TV)
    lake_map.learn(record(475784, "tv", 1400), AUTO)
    lake_map.learn(record(133093, "movie", 603), MOVIE)
    await lake_map.flush()
    seen = await LakeIdMap(store, "s").load(compact=True)
    assert seen.get("tt0944947") == Title("tv", 1399, narrow=True, profile=TV)
    assert seen.get("tt0475784") == Title("tv", 1400, profile=AUTO)
    assert seen.get("tt0133093") == Title("movie", 603, profile=MOVIE)


async def test_a_record_tmdb_files_under_another_imdb_id_is_not_learned(tmp_path: Path) -> None:
    """Its details would never confirm the entry: every later run would pay for the map's
    way and then the others."""
    store = LocalStore(str(tmp_path))
    lake_map = await LakeIdMap(store, "r").load(compact=True)
    lake_map.learn({**record(1), "tmdb_imdb_id": "tt0000099"}, AUTO)
    lake_map.learn({**record(2, "tv"), "external_ids": {"imdb_id": "tt0000098"}}, AUTO)
    lake_map.learn({**record(3, "tv"), "external_ids": {"imdb_id": None}}, AUTO)
    lake_map.learn({**record(4, "tv"), "external_ids": {"imdb_id": imdb(4)}}, AUTO)
    await lake_map.flush()
    seen = await LakeIdMap(store, "s").load(compact=True)
    assert [n for n in range(1, 5) if seen.get(imdb(n))] == [4]


async def test_a_forgotten_title_is_gone_for_later_runs_until_learnt_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idmap_module, "COMPACT_AT", 2)
    store = LocalStore(str(tmp_path))

    async def a_run(name: str, action: str) -> LakeIdMap:
        lake_map = await LakeIdMap(store, name).load(compact=True)
        if action == "learn":
            lake_map.learn(record(7, "movie", 70), AUTO)
        elif action == "forget":
            lake_map.forget(imdb(7))
        await lake_map.flush()
        return lake_map

    await a_run("a", "learn")
    assert (await a_run("b", "forget")).get(imdb(7)) == Title(
        "movie", 70, profile=AUTO
    )  # still, for b
    after = await a_run("c", "")  # reads both segments, compacts them: no tombstone left
    assert after.get(imdb(7)) is None
    base, _ = IdMap.decode(await store.get(BASE_KEY) or b"", "base")
    assert len(base) == 0
    await a_run("d", "learn")
    assert (await a_run("e", "")).get(imdb(7)) == Title("movie", 70, profile=AUTO)


async def test_a_run_that_does_not_compact_reads_the_newest_segments_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Distributed Map children: bounded reads, and no race to rewrite the base."""
    monkeypatch.setattr(idmap_module, "READ_AT_MOST", 3)
    store = LocalStore(str(tmp_path))
    for n in range(1, 6):
        lake_map = await LakeIdMap(store, f"r{n}").load(compact=False)
        lake_map.learn(record(n), AUTO)
        await lake_map.flush()
    child = await LakeIdMap(store, "child").load(compact=False)
    assert [n for n in range(1, 6) if child.get(imdb(n))] == [3, 4, 5]
    assert await store.get(BASE_KEY) is None
    assert len(await store.list(SEGMENT_PREFIX)) == 5
    assert len(await LakeIdMap(store, "cli").load(compact=True)) == 5


async def test_rebuild_learns_every_data_file_and_refuses_a_lake_without_any(
    tmp_path: Path,
) -> None:
    store = LocalStore(str(tmp_path))
    with pytest.raises(InputError, match=r"no data files to learn the id map from"):
        await rebuild(store)
    older = [record(1, "movie", 10), record(2, "tv", 20)]
    newer = [record(1, "movie", 11)]
    await store.write("Raw/TMDB/JSON/2022/05/02/m-00000001-00.json", encode(older), "x")
    await store.write("Raw/TMDB/JSON/2023/01/09/m-00000001-00.jsonl", encode(newer, True), "x")
    await store.write("Raw/TMDB/JSON/2023/01/09/_sidecars/m-00000001.json", b"[]", "x")
    stale = await LakeIdMap(store, "r").load(compact=True)
    stale.learn(record(3), AUTO)
    await stale.flush()
    assert await rebuild(store) == Rebuilt(files=2, titles=2)
    seen = await LakeIdMap(store, "s").load(compact=True)
    assert seen.get(imdb(1)) == Title("movie", 11)  # the newer date wins
    assert seen.get(imdb(2)) == Title("tv", 20, narrow=True)  # its run's kind is unknown
    assert seen.get(imdb(3)) is None  # the lake is the truth: segments are folded away
    assert await store.list(SEGMENT_PREFIX) == []


def encode(records: list[dict[str, Any]], lines: bool = False) -> bytes:
    if lines:
        return "".join(json.dumps(r) + "\n" for r in records).encode()
    return json.dumps(records).encode()


def test_a_map_written_before_profiles_were_kept_is_still_read() -> None:
    """Version 1 (uint32 values ``tmdb_id << 2 | narrow << 1 | tv``): its titles keep their
    ids and flags, with no profile (a refresh then uses its own settings)."""
    numbers, values = array("I", [10, 20, 30]), array("I", [603 << 2, 1399 << 2 | 3, 0])
    head = json.dumps({"count": 3, "merged": ["s1"]}).encode()
    raw = b"tmdb-ingest idmap 1\n" + head + b"\n" + numbers.tobytes() + values.tobytes()
    loaded, merged = IdMap.decode(raw, "old", tombstones=True)
    assert merged == ["s1"]
    assert loaded.get(imdb(10)) == Title("movie", 603)
    assert loaded.get(imdb(20)) == Title("tv", 1399, narrow=True)
    assert loaded.get(imdb(30)) is None  # a tombstone stays one


def test_profiles_beyond_the_table_are_kept_as_unknown() -> None:
    idmap = IdMap()
    for n in range(300):
        idmap.add(imdb(n + 1), "movie", n + 1, profile=Profile("auto", "full", f"l{n}", (), "json"))
    assert idmap.get(imdb(1)) == Title("movie", 1, profile=idmap.profiles[0])
    assert idmap.get(imdb(300)) == Title("movie", 300)  # the 300th profile did not fit
    decoded, _ = IdMap.decode(idmap.encode(), "here")
    assert decoded.get(imdb(255)) == Title("movie", 255, profile=idmap.profiles[254])
    assert decoded.get(imdb(256)) == Title("movie", 256)


def test_the_file_format_is_the_one_lakes_already_hold() -> None:
    """Bytes written before the map was split into modules: maps in lakes must keep loading,
    and a map written today must read the same in an older run."""
    segment = IdMap(tombstones=True)
    segment.add("tt0133093", "movie", 603)
    segment.add("tt0944947", "tv", 1399, narrow=True, profile=TV, deleted=True)
    segment.set_packed([7], [0])  # a tombstone: forget tt0000007
    written = (
        b'tmdb-ingest idmap 3\n{"count":3,"merged":["s1","s2"],"profiles":[{"kind":"tv",'
        b'"detail":"full","language":"en-US","append_to_response":[],"output_format":"jsonl"}]}\n'
        b"\x07\x00\x00\x00\xe5\x07\x02\x003k\x0e\x00"  # the IMDb numbers, sorted
        b"\x00\x00\x00\x00\x00\x00\x00\x00"  # tt0000007: forgotten
        b"\xfco\t\x00\x00\x00\x00\x00"  # tt0133093: movie 603, profile unknown
        b"\x03\xdc\x15\x00\x00\x00\x04\x00"  # tt0944947: narrow deleted tv 1399, profile 0
    )
    # Written today, the header leads with what a reader of a part needs (read_part): its
    # own length, the profiles, an index of the columns and the highest number; older runs
    # read it whole and ignore the keys they do not know.
    indexed = (
        b'tmdb-ingest idmap 3\n{"count":3,"head":"0000000192","profiles":[{"kind":"tv",'
        b'"detail":"full","language":"en-US","append_to_response":[],"output_format":"jsonl"}],'
        b'"index":[[7,0]],"high":944947,"merged":["s1","s2"]}\n'
    ) + written[written.index(b"}]}\n") + 4 :]
    assert len(indexed.split(b"\n")[1]) == 192
    assert segment.encode(["s2", "s1"]) == indexed
    for raw in (written, indexed):
        assert IdMap.decode(raw, "here", tombstones=True)[0].value(944947) != 0
    loaded, merged = IdMap.decode(written, "here", tombstones=True)
    assert merged == ["s1", "s2"]
    assert loaded.get("tt0133093") == Title("movie", 603)
    assert loaded.get("tt0944947") == Title("tv", 1399, True, TV, deleted=True)
    assert loaded.value(7) == 0
