"""The folder ledger: each id has one home in a date folder, whoever commits, whenever they
die. Local folders and S3 (moto's server, conditional writes over HTTP)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.kill import Killed
from tests.support.lake import read_local, read_s3
from tmdb_async.errors import StorageError
from tmdb_async.lake import ledger as ledger_module
from tmdb_async.lake.ledger import Ledger
from tmdb_async.lake.storage import LocalStore, S3Store, Store, open_s3, parse_s3

FOLDER = "Raw/TMDB/JSON/2022/05/02"


def rec(imdb_id: str, n: int = 0) -> dict[str, Any]:
    return {"imdb_id": imdb_id, "id": n, "title": f"title {imdb_id} v{n}"}


def side(imdb_id: str, outcome: str = "not_found") -> dict[str, Any]:
    return {"imdb_id": imdb_id, "outcome": outcome, "reason": "r"}


class Recording:
    """A store that records every write and can run a hook after a chosen read."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.writes: list[tuple[str, str]] = []
        self.after_get: dict[str, Callable[[], Awaitable[None]]] = {}
        self.fail_after: int | None = None  # die (raise) before this many more writes

    def url(self, key: str) -> str:
        return self.inner.url(key)

    def _spend(self, op: str, key: str) -> None:
        if self.fail_after is not None:
            if self.fail_after == 0:
                raise Killed
            self.fail_after -= 1
        self.writes.append((op, key.rsplit("/", 2)[-1] if "/_" in key else key.rsplit("/", 1)[-1]))

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        self._spend("put", key)
        return await self.inner.put(key, data, content_type)

    async def write(self, key: str, data: bytes, content_type: str = "", **kw: Any) -> str:
        self._spend("write", key)
        return await self.inner.write(key, data, **kw)

    async def delete(self, key: str, **kw: Any) -> None:
        self._spend("delete", key)
        await self.inner.delete(key, **kw)

    async def copy(self, src_key: str, dst_key: str, **kw: Any) -> str | None:
        self._spend("copy", dst_key)
        return await self.inner.copy(src_key, dst_key, **kw)

    async def get(self, key: str) -> bytes | None:
        data = await self.inner.get(key)
        hook = self.after_get.pop(key, None)
        if hook is not None:
            await hook()
        return data

    async def read(self, key: str) -> tuple[bytes, str] | None:
        found = await self.inner.read(key)
        hook = self.after_get.pop(key, None)
        if hook is not None:
            await hook()
        return found

    async def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        return await self.inner.list(prefix, start_after)


async def test_a_commit_takes_an_id_out_of_its_old_file_before_writing_its_new_home(
    tmp_path: Path,
) -> None:
    store = Recording(LocalStore(str(tmp_path)))
    ledger = await Ledger(store, FOLDER).load()
    first = await ledger.commit(
        [([rec("tt0000001"), rec("tt0000002")], [])], shape="s", fmt="json", stem="m"
    )
    store.writes.clear()
    second = await ledger.commit([([rec("tt0000001", 1)], [])], shape="s", fmt="json", stem="m")
    names = [name for _, name in store.writes]
    assert names.index(first.data_files[0]) < names.index(second.data_files[0])  # drop, then add
    assert second.replaced == 1
    view = read_local(tmp_path / FOLDER)
    assert view.records["tt0000001"] == [(second.data_files[0], rec("tt0000001", 1))]
    assert set(view.records) == {"tt0000001", "tt0000002"} and not view.duplicates()


async def test_a_file_left_with_only_replaced_entries_disappears(tmp_path: Path) -> None:
    ledger = await Ledger(LocalStore(str(tmp_path)), FOLDER).load()
    first = await ledger.commit(
        [([rec("tt0000001")], [side("tt0000002")])], shape="s", fmt="jsonl", stem="m"
    )
    await ledger.commit(
        [([rec("tt0000002"), rec("tt0000001")], [])], shape="s", fmt="json", stem="m"
    )
    assert first.data_files and first.sidecar_file
    assert not (tmp_path / FOLDER / first.data_files[0]).exists()
    assert not (tmp_path / FOLDER / first.sidecar_file).exists()
    view = read_local(tmp_path / FOLDER)
    assert set(view.records) == {"tt0000001", "tt0000002"} and not view.outcomes


async def test_a_stale_lease_is_taken_over_and_the_half_applied_commit_rolled_forward(
    tmp_path: Path,
) -> None:
    now = [1000.0]
    store = Recording(LocalStore(str(tmp_path)))
    writer = await Ledger(store, FOLDER, clock=lambda: now[0]).load()
    old = await writer.commit(
        [([rec("tt0000001"), rec("tt0000002")], [])], shape="s", fmt="json", stem="m"
    )
    # Dies after the lock, the staged file and the commit are written, before anything is
    # applied.
    store.fail_after = 3
    with pytest.raises(Killed):
        await writer.commit(
            [([rec("tt0000001", 1), rec("tt0000003")], [])], shape="s", fmt="json", stem="m"
        )
    assert (tmp_path / FOLDER / "_ledger/lock.json").exists()  # left behind by the dead writer
    view = read_local(tmp_path / FOLDER)
    assert set(view.records) == {"tt0000001", "tt0000002"}  # nothing applied yet

    waiting = Ledger(LocalStore(str(tmp_path)), FOLDER, clock=lambda: now[0], wait_seconds=0.05)
    with pytest.raises(StorageError, match="locked by another run"):
        await waiting.commit([([rec("tt0000009")], [])], shape="s", fmt="json", stem="m")

    # The lease runs out: the lock stays unchanged for a whole lease on the reader's clock.
    ticking = itertools.count(now[0], ledger_module.LEASE_SECONDS / 8)
    reader = await Ledger(LocalStore(str(tmp_path)), FOLDER, clock=lambda: next(ticking)).load()
    view = read_local(tmp_path / FOLDER)
    assert not view.duplicates()
    assert view.records["tt0000001"][0][1] == rec("tt0000001", 1)  # rolled forward
    assert set(view.records) == {"tt0000001", "tt0000002", "tt0000003"}
    assert old.data_files[0] in view.data_files and view.data_files[old.data_files[0]] == 1
    assert reader.home("tt0000003") is not None
    assert not (tmp_path / FOLDER / "_ledger/lock.json").exists()


async def test_a_checkpoint_compacts_the_log_and_a_new_reader_sees_the_same_homes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_module, "CHECKPOINT_EVERY", 3)
    writer = await Ledger(LocalStore(str(tmp_path)), FOLDER).load()
    for n in range(10):
        await writer.commit(
            [([rec(f"tt{1000000 + n:07d}", n), rec("tt0000001", n)], [])],
            shape="s",
            fmt="json",
            stem="m",
        )
    logs = sorted(p.name for p in (tmp_path / FOLDER / "_ledger/log").iterdir())
    assert len(logs) < 10  # compacted: only commits after the previous checkpoint stay
    reader = await Ledger(LocalStore(str(tmp_path)), FOLDER).load()
    assert dict(reader.homes()) == dict(writer.homes())
    assert reader.version == writer.version == 10


async def test_a_reader_racing_a_checkpoint_reads_again_instead_of_missing_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_module, "CHECKPOINT_EVERY", 2)
    writer = await Ledger(LocalStore(str(tmp_path)), FOLDER).load()
    for n in range(3):
        await writer.commit([([rec(f"tt{2000000 + n:07d}")], [])], shape="s", fmt="json", stem="m")
    racing = Recording(LocalStore(str(tmp_path)))

    async def commits_and_two_checkpoints_meanwhile() -> None:
        for n in range(3, 8):
            await writer.commit(
                [([rec(f"tt{2000000 + n:07d}")], [])], shape="s", fmt="json", stem="m"
            )

    racing.after_get[f"{FOLDER}/_ledger/checkpoint.json"] = commits_and_two_checkpoints_meanwhile
    reader = await Ledger(racing, FOLDER).load()
    assert reader.version == writer.version == 8
    assert dict(reader.homes()) == dict(writer.homes())


async def _s3_store(s3: Any) -> S3Store:
    url = parse_s3("s3://data-lake-x", "dest")
    assert url is not None
    return S3Store(s3, url)


async def test_writers_committing_at_once_on_s3_give_every_id_one_home(s3: Any, lake: str) -> None:
    """Four writers (like Map children, or two runs at once) commit overlapping ids into one
    S3 folder through the conditional-write lease: no id twice, none lost."""
    ids = [f"tt{3000000 + n:07d}" for n in range(40)]
    async with open_s3(True, 16) as client:
        store = await _s3_store(client)

        async def writer(w: int) -> None:
            ledger = await Ledger(store, FOLDER, owner=f"w{w}").load()
            for k in range(6):
                chunk = ids[(w * 7 + k * 5) % 30 :][:10]
                await ledger.commit(
                    [([rec(i, w) for i in chunk[:7]], [side(i) for i in chunk[7:]])],
                    shape="s",
                    fmt="json",
                    stem=f"w{w}",
                )

        await asyncio.gather(*(writer(w) for w in range(4)))
        final = await Ledger(store, FOLDER).load()
    view = read_s3(s3, lake, FOLDER)
    assert not view.duplicates(), view.duplicates()
    assert view.all_ids() == set(final.homes())
    for imdb_id, home in final.homes().items():
        assert view.places(imdb_id) == [home.file]
    assert final.version == 24
    assert not view.stray


async def test_s3_conditional_writes_refuse_a_stale_version(s3: Any, lake: str) -> None:
    from tmdb_async.errors import Conflict

    async with open_s3(True, 4) as client:
        store = await _s3_store(client)
        etag = await store.write("k.json", b"1", if_none_match=True)
        with pytest.raises(Conflict):
            await store.write("k.json", b"2", if_none_match=True)
        new = await store.write("k.json", b"2", if_match=etag)
        with pytest.raises(Conflict):
            await store.write("k.json", b"3", if_match=etag)
        with pytest.raises(Conflict):
            await store.delete("k.json", if_match=etag)
        await store.delete("k.json", if_match=new)
        assert await store.read("k.json") is None


class Gated(Recording):
    """Holds the first data file's arrival (its copy into place) until the test opens the
    gate."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def copy(self, src_key: str, dst_key: str, **kw: Any) -> str | None:
        if dst_key.endswith("-00.json") and not self.entered.is_set():
            self.entered.set()
            await self.gate.wait()
        return await super().copy(src_key, dst_key, **kw)


async def test_a_commit_cancelled_by_the_deadline_finishes_before_the_lock_is_released(
    tmp_path: Path,
) -> None:
    """A cancelled write (a thread, an HTTP request) can still land later: a commit is
    finished, not abandoned, so nothing lands after another writer took the lock."""
    store = Gated(LocalStore(str(tmp_path)))
    ledger = await Ledger(store, FOLDER).load()
    commit = asyncio.create_task(
        ledger.commit([([rec("tt0000001")], [])], shape="s", fmt="json", stem="m")
    )
    await store.entered.wait()
    commit.cancel()
    store.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await commit
    names = [name for _, name in store.writes]
    assert names.index("m-00000001-00.json") < names.index("lock.json", 1)  # data, then release
    assert read_local(tmp_path / FOLDER).records["tt0000001"]
    assert not (tmp_path / FOLDER / "_ledger/lock.json").exists()


async def test_a_commit_never_names_an_id_twice(tmp_path: Path) -> None:
    ledger = await Ledger(LocalStore(str(tmp_path)), FOLDER).load()
    with pytest.raises(ValueError, match="named twice"):
        await ledger.commit(
            [([rec("tt0000001")], []), ([rec("tt0000001", 1)], [])], shape="s", fmt="json", stem="m"
        )
    assert not read_local(tmp_path / FOLDER).all_ids()


class Uploads(Recording):
    """Counts the bytes sent to storage (a copy sends none: the store copies them)."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.sent = 0

    async def write(self, key: str, data: bytes, content_type: str = "", **kw: Any) -> str:
        self.sent += len(data)
        return await super().write(key, data, content_type, **kw)


async def _commit_fresh_ids(ledger: Ledger, commits: int, per_commit: int) -> list[str]:
    """Records of about 1 KB (a TMDB record with its details is 3 KB on average): the commit's
    own bookkeeping (its ids, the lock) is the rest of what is uploaded."""
    ids = [f"tt{4000000 + n:07d}" for n in range(commits * per_commit)]
    for c in range(commits):
        chunk = ids[c * per_commit : (c + 1) * per_commit]
        await ledger.commit(
            [
                (
                    [{**rec(i, 7), "overview": "x" * 1000} for i in chunk[:-5]],
                    [side(i) for i in chunk[-5:]],
                )
            ],
            shape="s",
            fmt="jsonl",
            stem="m",
        )
    return ids


def _data_bytes(files: dict[str, bytes]) -> int:
    return sum(len(b) for k, b in files.items() if "/_ledger/" not in k)


async def test_a_records_bytes_are_uploaded_once(tmp_path: Path) -> None:
    store = Uploads(LocalStore(str(tmp_path)))
    ledger = await Ledger(store, FOLDER).load()
    ids = await _commit_fresh_ids(ledger, 4, 500)
    files = await asyncio.to_thread(
        lambda: {
            str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()
        }
    )
    view = read_local(tmp_path / FOLDER)
    assert view.all_ids() == set(ids) and not view.duplicates()
    assert store.sent / _data_bytes(files) <= 1.05  # was 2.0: the commit held the bytes too
    assert not list((tmp_path / FOLDER / "_ledger").glob("staged/**/*.staged"))


async def test_a_records_bytes_are_uploaded_once_on_s3(s3: Any, lake: str) -> None:
    """A few thousand ids into moto's S3: bytes sent ÷ bytes of the folder's files."""
    async with open_s3(True, 8) as client:
        store = Uploads(await _s3_store(client))
        ledger = await Ledger(store, FOLDER).load()
        ids = await _commit_fresh_ids(ledger, 6, 500)
    files = {
        o["Key"]: s3.get_object(Bucket=lake, Key=o["Key"])["Body"].read()
        for o in s3.list_objects_v2(Bucket=lake)["Contents"]
    }
    assert read_s3(s3, lake, FOLDER).all_ids() == set(ids)
    ratio = store.sent / _data_bytes(files)
    assert ratio <= 1.05, ratio
    assert not [k for k in files if k.endswith(ledger_module.STAGED_SUFFIX)]


async def test_a_commit_killed_after_staging_is_rolled_forward_from_its_staged_files(
    tmp_path: Path,
) -> None:
    """Killed at each write of a commit (the lock, two staged files, the commit, the drop,
    two copies, two deletes, the slim entry, the release): the next writer finds every id
    once, with the new answer once the commit was decided, and no staged file of it left."""
    import glob

    from tests.support.kill import KillingStore, declare_dead

    for budget in range(11):
        lake = tmp_path / str(budget)
        ledger = await Ledger(LocalStore(str(lake)), FOLDER).load()
        await ledger.commit(
            [([rec("tt0000001"), rec("tt0000002")], [])], shape="s", fmt="json", stem="m"
        )
        dying = Ledger(KillingStore(LocalStore(str(lake)), budget), FOLDER)
        with pytest.raises(Killed):
            await dying.commit(
                [([rec("tt0000001", 1), rec("tt0000003", 1)], [side("tt0000004")])],
                shape="s",
                fmt="json",
                stem="m",
            )
        decided = (lake / FOLDER / "_ledger/log/0000000002.json").exists()
        data_globs = [f"{lake / FOLDER}/**/*.json", f"{lake / FOLDER}/**/*.jsonl"]
        for pattern in data_globs:  # a staged file is never data, whatever the glob
            assert not [p for p in glob.glob(pattern, recursive=True) if "staged" in p]
        declare_dead(lake)
        reader = await Ledger(LocalStore(str(lake)), FOLDER).load()
        view = read_local(lake / FOLDER)
        assert not view.duplicates(), (budget, view.duplicates())
        if decided:
            assert reader.version == 2
            assert view.records["tt0000001"][0][1] == rec("tt0000001", 1), budget
            assert view.all_ids() == {"tt0000001", "tt0000002", "tt0000003", "tt0000004"}
            assert not list((lake / FOLDER / "_ledger").glob("staged/0000000002/**/*.staged"))
            assert reader.pending is None
        else:
            assert view.records["tt0000001"][0][1] == rec("tt0000001"), budget
            assert view.all_ids() == {"tt0000001", "tt0000002"}
        # The folder goes on: the next commit is applied whatever the dead one left.
        await reader.commit([([rec("tt0000005")], [])], shape="s", fmt="json", stem="m")
        assert not read_local(lake / FOLDER).duplicates()


async def test_an_old_format_pending_commit_still_rolls_forward(tmp_path: Path) -> None:
    """A commit written before staging existed holds its files' bytes after its header; left
    pending (its writer died before slimming it), the next writer applies it from them."""
    import json

    from tmdb_async.lake.codec import encode_file

    writer = await Ledger(LocalStore(str(tmp_path)), FOLDER).load()
    first = await writer.commit(
        [([rec("tt0000001"), rec("tt0000002")], [])], shape="s", fmt="json", stem="m"
    )
    name, side_name = "m-00000002-00.json", "_sidecars/m-00000002.json"
    bodies = [encode_file(name, [rec("tt0000001", 1)]), encode_file(side_name, [side("tt0000003")])]
    header = {
        "version": 2,
        "writer": "old",
        "at": "2025-01-01T00:00:00Z",
        "shape": "s",
        "files": [
            {"key": name, "ids": ["tt0000001"], "outcome": "record", "size": len(bodies[0])},
            {
                "key": side_name,
                "ids": ["tt0000003"],
                "outcomes": ["not_found"],
                "size": len(bodies[1]),
            },
        ],
        "drops": {first.data_files[0]: ["tt0000001"]},
    }
    entry = tmp_path / FOLDER / "_ledger/log/0000000002.json"
    entry.write_bytes(json.dumps(header).encode() + b"\n" + b"".join(bodies))

    reader = await Ledger(LocalStore(str(tmp_path)), FOLDER).load()
    view = read_local(tmp_path / FOLDER)
    assert reader.version == 2 and reader.pending is None
    assert view.records["tt0000001"] == [(name, rec("tt0000001", 1))]
    assert view.records["tt0000002"] == [(first.data_files[0], rec("tt0000002"))]
    assert view.outcomes["tt0000003"][0][0] == side_name and not view.duplicates()
    assert entry.read_bytes() == json.dumps(header, separators=(",", ":")).encode() + b"\n"


async def test_moto_5_2_5_copy_object_ignores_the_destinations_if_none_match(
    s3: Any, lake: str
) -> None:
    """A fact about the test double, not about S3 (docs/aws-and-tooling.md): moto's
    ``copy_object`` checks only ``x-amz-copy-source-if-none-match``, so the create-only
    fence of :meth:`S3Store.copy` is tested against a stub client, not moto. When moto
    honours it, this fails: then moto can test the fence."""
    s3.put_object(Bucket=lake, Key="a", Body=b"new")
    s3.put_object(Bucket=lake, Key="b", Body=b"old")
    s3.copy_object(Bucket=lake, Key="b", CopySource={"Bucket": lake, "Key": "a"}, IfNoneMatch="*")
    assert s3.get_object(Bucket=lake, Key="b")["Body"].read() == b"new"


async def test_an_s3_copy_is_create_only_and_says_when_its_source_is_gone() -> None:
    from botocore.exceptions import ClientError

    from tmdb_async.errors import Conflict

    class Client:
        def __init__(self, code: str | None) -> None:
            self.code = code
            self.sent: dict[str, Any] = {}

        async def copy_object(self, **kwargs: Any) -> dict[str, Any]:
            self.sent = kwargs
            if self.code:
                raise ClientError({"Error": {"Code": self.code}}, "CopyObject")
            return {"CopyObjectResult": {"ETag": '"abc"'}}

    def store(client: Client) -> S3Store:
        url = parse_s3("s3://bucket/lake", "dest")
        assert url is not None
        return S3Store(client, url)

    ok = Client(None)
    assert await store(ok).copy("s.staged", "f.json") == "abc"
    assert ok.sent == {
        "Bucket": "bucket",
        "Key": "lake/f.json",
        "CopySource": {"Bucket": "bucket", "Key": "lake/s.staged"},
        "IfNoneMatch": "*",
    }
    with pytest.raises(Conflict):
        await store(Client("PreconditionFailed")).copy("s.staged", "f.json")
    assert await store(Client("NoSuchKey")).copy("s.staged", "f.json") is None
    with pytest.raises(StorageError, match="access denied"):
        await store(Client("AccessDenied")).copy("s.staged", "f.json")


async def test_a_local_copy_is_a_create_only_link(tmp_path: Path) -> None:
    from tmdb_async.errors import Conflict

    store = LocalStore(str(tmp_path))
    etag = await store.write("s.staged", b"data")
    assert await store.copy("s.staged", "d/f.json") == etag
    assert (tmp_path / "s.staged").stat().st_ino == (tmp_path / "d/f.json").stat().st_ino
    with pytest.raises(Conflict):
        await store.copy("s.staged", "d/f.json")
    assert await store.copy("gone.staged", "d/g.json") is None
