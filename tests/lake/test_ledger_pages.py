"""The ledger's checkpoint as pages: a batch reads the part of the folder its ids need, and
a checkpoint rewrites the part that changed. Every view agrees with a whole read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tmdb_async.lake import ledger as ledger_module
from tmdb_async.lake import ledger_pages
from tmdb_async.lake.idmap_columns import IdMap
from tmdb_async.lake.idmap_format import BASE_KEY, read_part, write_base
from tmdb_async.lake.ledger import Ledger
from tmdb_async.lake.ledger_pages import checkpoint_body
from tmdb_async.lake.storage import LocalStore

FOLDER = "Raw/TMDB/JSON/2022/05/03"


def rec(n: int, v: int = 0) -> dict[str, Any]:
    return {"imdb_id": f"tt{n:07d}", "id": n, "title": f"t{n} v{v}"}


class Counting(LocalStore):
    """A folder that counts what is read, by file name."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.got: list[str] = []

    async def get(self, key: str) -> bytes | None:
        self.got.append(key.rsplit("/", 1)[-1])
        return await super().get(key)


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_pages, "PAGE_IDS", 8)
    monkeypatch.setattr(ledger_module, "CHECKPOINT_EVERY", 4)


async def _folder(root: Path, numbers: list[int]) -> Ledger:
    """A folder holding ``numbers`` in commits of 5 (in the order given), then at rest."""
    writer = await Ledger(LocalStore(str(root)), FOLDER).load()
    for at in range(0, len(numbers), 5):
        chunk = [rec(n) for n in numbers[at : at + 5]]
        await writer.commit([(chunk, [])], shape="s", fmt="json", stem="m")
    await writer.settle()
    return writer


def _root(root: Path) -> dict[str, Any]:
    body: dict[str, Any] = checkpoint_body((root / FOLDER / "_ledger/checkpoint.json").read_bytes())
    return body


async def test_a_batch_reads_only_the_pages_of_its_ids_and_sees_their_homes_exactly(
    tmp_path: Path,
) -> None:
    numbers = [(n * 7919) % 200 + 1 for n in range(200)]  # every number 1..200, shuffled
    writer = await _folder(tmp_path, numbers)
    pages = _root(tmp_path)["pages"]
    assert len(pages) >= 10
    store = Counting(str(tmp_path))
    wanted = [f"tt{n:07d}" for n in range(101, 111)]
    batch = await Ledger(store, FOLDER, within=wanted).load()
    assert batch.partial
    for imdb_id in wanted:
        assert batch.home(imdb_id) == writer.home(imdb_id) is not None
    read = [name for name in store.got if name.endswith(".jz")]
    assert 1 <= len(read) <= 3 < len(pages)
    assert len(batch.homes()) < len(writer.homes())
    new = [f"tt{n:07d}" for n in range(5_000, 5_010)]
    fresh = Counting(str(tmp_path))
    elsewhere = await Ledger(fresh, FOLDER, within=new).load()
    assert not [name for name in fresh.got if name.endswith(".jz")]  # no page holds them
    assert all(elsewhere.home(i) is None for i in new)


async def test_a_batch_commit_moves_an_id_another_writer_placed_after_the_checkpoint(
    tmp_path: Path,
) -> None:
    """The pages are the state at the checkpoint; the commits since are folded whole, so an
    id moved meanwhile by another writer is dropped from where it is now."""
    writer = await _folder(tmp_path, list(range(1, 41)))
    await writer.commit([([rec(15, 1)], [])], shape="s", fmt="json", stem="m")  # moves tt0000015
    batch = await Ledger(LocalStore(str(tmp_path)), FOLDER, within=["tt0000015"]).load()
    assert batch.home("tt0000015") == writer.home("tt0000015")
    await batch.commit([([rec(15, 2)], [])], shape="s", fmt="json", stem="b")
    files = [p for p in (tmp_path / FOLDER).glob("*.json") if '"tt0000015"' in p.read_text()]
    assert len(files) == 1 and "v2" in files[0].read_text()
    whole = await Ledger(LocalStore(str(tmp_path)), FOLDER).load()
    assert whole.home("tt0000015") == batch.home("tt0000015")
    assert len(whole.homes()) == 40


async def test_a_checkpoint_rewrites_only_the_pages_its_commits_touched(tmp_path: Path) -> None:
    writer = await _folder(tmp_path, list(range(1, 201)))
    before = {tuple(p) for p in _root(tmp_path)["pages"]}
    for v in range(4):  # the same range again: its pages change, the others stay
        chunk = [rec(n, v + 1) for n in range(50, 55)]
        await writer.commit([(chunk, [])], shape="s", fmt="json", stem="m")
    await writer.settle()
    after = {tuple(p) for p in _root(tmp_path)["pages"]}
    kept, written = before & after, after - before
    assert len(written) == 1 and len(kept) == len(before) - 1
    reread = await Ledger(LocalStore(str(tmp_path)), FOLDER).load()
    assert dict(reread.homes()) == dict(writer.homes())


async def test_a_folder_checkpointed_before_pages_is_read_whole_then_written_as_pages(
    tmp_path: Path,
) -> None:
    """Lakes hold format-1 checkpoints (every home in one file): they keep loading, and the
    next checkpoint writes the folder as pages once."""
    store = LocalStore(str(tmp_path))
    legacy = {
        "version": 3,
        "previous": 0,
        "groups": [["m-00000001-00.json", "record", "s", [1, 2, 3], []]],
    }
    await store.put(f"{FOLDER}/_ledger/checkpoint.json", json.dumps(legacy).encode(), "x")
    await store.put(
        f"{FOLDER}/m-00000001-00.json", json.dumps([rec(1), rec(2), rec(3)]).encode(), "x"
    )
    writer = await Ledger(store, FOLDER).load()
    assert writer.home("tt0000002") is not None
    for n in range(4, 8):
        await writer.commit([([rec(n)], [])], shape="s", fmt="json", stem="m")
    body = _root(tmp_path)
    assert body["format"] == 2 and sum(p[4] for p in body["pages"]) == 7
    reread = await Ledger(LocalStore(str(tmp_path)), FOLDER, within=["tt0000002"]).load()
    assert reread.home("tt0000002") == writer.home("tt0000002")


async def test_a_child_reads_only_the_part_of_the_id_map_its_range_needs(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    known = IdMap()
    for n in range(1, 20_001):
        known.add(f"tt{n * 3:07d}", "movie", n)
    await write_base(store, known.encode(), None)
    found = await read_part(store, BASE_KEY, 30_000, 31_500)
    assert found is not None
    numbers = found[0]
    assert list(numbers) == list(range(30_000, 31_501, 3))  # the range's titles, only them
    part = IdMap.of_columns(*found[:3])
    assert part.get("tt0030003") == known.get("tt0030003")
    beyond = await read_part(store, BASE_KEY, 90_000, 91_000)
    assert beyond is not None and len(beyond[0]) == 0


async def test_a_batch_checkpoints_its_pages_without_reading_them_again(tmp_path: Path) -> None:
    """A partial ledger keeps the pages it read (pages never change): the checkpoint at the
    end of its run rewrites them from memory, and the next reader sees the batch's homes."""
    await _folder(tmp_path, list(range(1, 201)))
    store = Counting(str(tmp_path))
    wanted = [f"tt{n:07d}" for n in range(120, 125)]
    batch = await Ledger(store, FOLDER, within=wanted).load()
    read_at_open = [name for name in store.got if name.endswith(".jz")]
    for v in range(4):
        await batch.commit(
            [([rec(n, v) for n in range(120, 125)], [])], shape="s", fmt="json", stem="b"
        )
    await batch.settle()
    assert [name for name in store.got if name.endswith(".jz")] == read_at_open
    assert _root(tmp_path)["version"] == batch.version  # checkpointed
    reread = await Ledger(LocalStore(str(tmp_path)), FOLDER).load()
    assert reread.home("tt0000122") == batch.home("tt0000122")
    assert len(reread.homes()) == 200


async def test_a_child_does_not_read_the_names_of_the_segments_a_map_merged(
    tmp_path: Path,
) -> None:
    """A base compacted from many segments names them all in its header, last: a reader of a
    part stops before them (the header says its own length)."""

    class Ranged(LocalStore):
        def __init__(self, root: str) -> None:
            super().__init__(root)
            self.bytes = 0

        async def read_part(self, key: str, start: int, end: int) -> tuple[bytes, str] | None:
            found = await super().read_part(key, start, end)
            self.bytes += 0 if found is None else len(found[0])
            return found

    known = IdMap()
    for n in range(1, 5_001):
        known.add(f"tt{n:07d}", "movie", n)
    merged = [f"{n:020d}-run{n:06d}-0000.bin" for n in range(2_000)]  # ~80 kB of names
    store = Ranged(str(tmp_path))
    await write_base(store, known.encode(merged), None)
    found = await read_part(store, BASE_KEY, 2_000, 2_100)
    assert found is not None and list(found[0]) == list(range(2_000, 2_101))
    # the first 4 kB, the numbers between two index points (2 strides at most) and 101
    # values: 21 kB, where the names alone are 80 kB
    assert store.bytes <= 4096 + 2 * 2048 * 4 + 101 * 8
