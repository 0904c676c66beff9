"""The id map: IMDb id → TMDB media type and id, learned from committed records, kept in the
lake as a compacted base plus one segment per run's lessons."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmdb_async import idmap as idmap_module
from tmdb_async.idmap import BASE_KEY, SEGMENT_PREFIX, IdMap, LakeIdMap, Title
from tmdb_async.storage import LocalStore, S3Store, Store, open_s3, parse_s3

numbers = st.integers(1, 999_999_999)
titles = st.tuples(st.sampled_from(["movie", "tv"]), st.integers(1, 2**31 - 1))


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
    assert not idmap.add("tt0000001", "movie", 2**31)
    assert not idmap.add("tt0000001", "movie", "603")
    assert len(idmap) == 0


def test_300000_titles_take_a_few_megabytes() -> None:
    source = IdMap()
    for n in range(1, 300_001):
        source.add(imdb(n * 3), "tv" if n % 4 == 0 else "movie", n)
    raw = source.encode()
    assert len(raw) < 300_000 * 8 + 100  # 8 bytes per title on disk
    tracemalloc.start()
    try:
        loaded, _ = IdMap.decode(raw, "here")
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 3 * 2**20  # 2.4 MB of columns, in memory as on disk
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
    first = await LakeIdMap(store, "run-a").load()
    assert len(first) == 0
    first.learn(record(133093, "movie", 603))
    first.learn(record(944947, "tv", 1399))
    first.learn({"imdb_id": "tt0000003", "media_type": "movie"})  # no id: nothing to learn
    assert first.get("tt0944947") is None  # a run asks each title once: lessons are for later
    assert first.pending == 2
    await first.flush()
    assert first.pending == 0
    (segment,) = await store.list(SEGMENT_PREFIX)
    assert "run-a" in segment
    second = await LakeIdMap(store, "run-b").load()
    assert second.get("tt0133093") == Title("movie", 603)
    assert second.get("tt0944947") == Title("tv", 1399)
    second.learn(record(133093, "movie", 603))  # known already: written again, newest wins
    await second.flush()
    assert len(await store.list(SEGMENT_PREFIX)) == 2
    assert (await LakeIdMap(store, "run-c").load()).get("tt0133093") == Title("movie", 603)


async def test_a_newer_lesson_wins(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    for run, tmdb_id in (("a", 1), ("b", 2)):
        lake_map = await LakeIdMap(store, run).load()
        lake_map.learn(record(10, "movie", tmdb_id))
        await lake_map.flush()
    assert (await LakeIdMap(store, "c").load()).get(imdb(10)) == Title("movie", 2)


async def test_segments_are_folded_into_the_base_once_they_pile_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idmap_module, "COMPACT_AT", 4)
    store = LocalStore(str(tmp_path))
    for n in range(4):
        lake_map = await LakeIdMap(store, f"r{n}").load()
        lake_map.learn(record(n + 1))
        await lake_map.flush()
    assert len(await store.list(SEGMENT_PREFIX)) == 4
    assert await store.get(BASE_KEY) is None
    compacting = await LakeIdMap(store, "r9").load()  # finds 4: folds them
    assert await store.list(SEGMENT_PREFIX) == []
    _, merged = IdMap.decode(await store.get(BASE_KEY) or b"", "base")
    assert len(merged) == 4
    after = await LakeIdMap(store, "r10").load()
    assert len(after) == len(compacting) == 4
    assert all(after.get(imdb(n + 1)) == Title("movie", n + 8) for n in range(4))


async def test_a_damaged_base_costs_requests_not_the_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalStore(str(tmp_path))
    await store.write(BASE_KEY, b"garbage", "application/octet-stream")
    with caplog.at_level(logging.WARNING):
        lake_map = await LakeIdMap(store, "r").load()
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
                st.just("learn"), st.lists(st.tuples(st.integers(1, 30), titles), max_size=5)
            ),
            st.tuples(st.just("load"), st.booleans()),
        ),
        max_size=25,
    )
)
def test_whatever_runs_write_and_compact_every_lesson_is_kept_newest_first(
    steps: list[tuple[str, Any]],
) -> None:
    """Runs learn and flush, others load (and compact, sometimes killed before deleting the
    folded segments): a load always sees the newest lesson of every title."""

    async def scenario(root: str) -> None:
        store = _Flaky(LocalStore(root))
        model: dict[int, Title] = {}
        for i, (action, arg) in enumerate(steps):
            if action == "learn":
                lake_map = await LakeIdMap(store, f"r{i:03d}").load()  # type: ignore[arg-type]
                for n, (media_type, tmdb_id) in arg:
                    lake_map.learn(record(n, media_type, tmdb_id))
                    model[n] = Title(media_type, tmdb_id)
                await lake_map.flush()
            else:
                store.fail_deletes = arg
                with contextlib.suppress(asyncio.CancelledError):
                    await LakeIdMap(store, f"r{i:03d}").load()  # type: ignore[arg-type]
                store.fail_deletes = False
            seen = await LakeIdMap(store, "reader").load()  # type: ignore[arg-type]
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
            lake_map = await LakeIdMap(store, f"r{n}").load()
            lake_map.learn(record(n + 1, "tv", 100 + n))
            await lake_map.flush()
        loads = await asyncio.gather(*(LakeIdMap(store, f"c{k}").load() for k in range(4)))
        assert all(len(m) == 6 for m in loads)
        after = await LakeIdMap(store, "after").load()
        assert all(after.get(imdb(n + 1)) == Title("tv", 100 + n) for n in range(6))
        assert await store.get(BASE_KEY) is not None
