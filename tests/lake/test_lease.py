"""The folder lock: no timing assumption an operator can break, and no storage answer lost
after the write landed can make a writer give up a lock, or a commit, that is its own.

Clocks here are each writer's own monotonic clock; they are injected so that one writer's
can be far ahead of another's (skew) or move while it waits (a lease running out)."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.faulty import FaultyStore
from tests.support.kill import Killed, KillingStore, declare_dead
from tests.support.lake import read_local
from tests.support.memory_store import MemoryStore
from tests.support.virtual_clock import run_virtual
from tmdb_async.errors import StorageError
from tmdb_async.lake.lease import MARGIN_SHARE
from tmdb_async.lake.ledger import Ledger
from tmdb_async.lake.storage import LocalStore

FOLDER = "Raw/TMDB/JSON/2022/05/02"
LOCK = f"{FOLDER}/_ledger/lock.json"


def rec(imdb_id: str, n: int = 0) -> dict[str, Any]:
    return {"imdb_id": imdb_id, "id": n, "title": f"title {imdb_id} v{n}"}


def _commit(ledger: Ledger, *records: dict[str, Any]) -> Any:
    return ledger.commit([(list(records), [])], shape="s", fmt="json", stem="m")


async def test_a_writer_whose_clock_is_far_ahead_never_takes_over_a_live_lock(
    tmp_path: Path,
) -> None:
    store = FaultyStore(LocalStore(str(tmp_path)), rule=lambda op, key, n: None)
    holder = await Ledger(store, FOLDER, clock=lambda: 1000.0).load()
    store.rule = lambda op, key, n: "stall" if key.endswith("-00.json") else None
    stalled = asyncio.create_task(_commit(holder, rec("tt0000001")))
    async with asyncio.timeout(20):
        await store.stalling.wait()  # holding the lock, stalled in its data write
    # The other machine's clock is a day ahead: the lock's age is not its to judge.
    skewed = Ledger(
        LocalStore(str(tmp_path)), FOLDER, clock=lambda: 1000.0 + 86_400, wait_seconds=0.3
    )
    with pytest.raises(StorageError, match="locked by another run"):
        await _commit(skewed, rec("tt0000002"))
    store.release()
    await stalled
    assert set(read_local(tmp_path / FOLDER).records) == {"tt0000001"}


def test_a_storage_call_never_outlasts_the_lease_and_its_commit_still_finishes(
    tmp_path: Path,
) -> None:
    """On the virtual clock, with a store that needs no thread: only the stalled call can
    reach the lease's bound, however loaded the machine (see :class:`MemoryStore`)."""
    calls = {"stalled": 0}

    def rule(op: str, key: str, n: int) -> str | None:
        if key.endswith("-00.json") and calls["stalled"] == 0:
            calls["stalled"] += 1
            return "stall"  # the first put of the data file hangs (a dead connection)
        return None

    async def scenario() -> Any:
        memory = MemoryStore()
        store = FaultyStore(memory, rule=rule)
        clock = asyncio.get_running_loop().time
        ledger = await Ledger(store, FOLDER, clock=clock, lease_seconds=0.6).load()
        done = await asyncio.wait_for(_commit(ledger, rec("tt0000001"), rec("tt0000002")), 20)
        assert len(store.late) == 1  # cancelled at the lease's bound, not left running
        memory.dump(tmp_path)
        return done

    done = run_virtual(scenario())
    assert set(read_local(tmp_path / FOLDER).records) == {"tt0000001", "tt0000002"}
    assert done.data_files and not (tmp_path / LOCK).exists()


def test_a_late_write_of_a_writer_that_lost_its_lease_cannot_undo_a_newer_commit(
    tmp_path: Path,
) -> None:
    """Writer A stalls writing its file past its lease; B takes the folder over, finishes A's
    commit and moves an id out of A's file; then A's write reaches storage after all.

    On the virtual clock, with a store that needs no thread (see :class:`MemoryStore`)."""

    async def scenario() -> None:
        memory = MemoryStore()
        store = FaultyStore(memory)
        clock = asyncio.get_running_loop().time
        a = await Ledger(store, FOLDER, clock=clock, lease_seconds=0.6).load()
        store.rule = lambda op, key, n: "stall" if key.endswith("m-00000001-00.json") else None
        ticking = itertools.count(0.0, 0.2)  # B's clock: the lock it sees unchanged runs out
        b = Ledger(memory, FOLDER, clock=lambda: next(ticking))
        a_commit = asyncio.create_task(_commit(a, rec("tt0000001"), rec("tt0000002")))
        async with asyncio.timeout(20):
            await store.given_up.wait()  # A gave up on its write at its lease's bound
        await _commit(b, rec("tt0000001", 1))  # rolls A's commit forward, then moves tt0000001
        # A's move of its staged file into m-00000001-00.json lands only now: it finds no
        # staged file (B moved it and deleted it), or a file there (refused, create-only).
        answers = await store.land_late()
        assert answers and (answers[0] is not None or not memory.objects_under("_ledger/staged"))
        await a_commit  # A finishes: its commit was applied by B
        memory.dump(tmp_path)

    run_virtual(scenario())
    view = read_local(tmp_path / FOLDER)
    assert not view.duplicates(), view.duplicates()
    assert view.records["tt0000001"][0][1] == rec("tt0000001", 1)
    assert set(view.records) == {"tt0000001", "tt0000002"}


@pytest.mark.parametrize("lost", ["lock.json", "log/", "-00.json", "checkpoint"])
async def test_a_write_whose_answer_was_lost_is_recognised_and_every_commit_is_applied(
    tmp_path: Path, lost: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 applied the write, the answer was lost, botocore sent it again and the retry's
    condition failed because of the first attempt."""
    from tmdb_async.lake import ledger as ledger_module

    monkeypatch.setattr(ledger_module, "CHECKPOINT_EVERY", 2)
    store = FaultyStore(
        LocalStore(str(tmp_path)), rule=lambda op, key, n: "lost" if lost in key else None
    )
    ledger = await Ledger(store, FOLDER).load()
    for n in range(4):
        await asyncio.wait_for(_commit(ledger, rec(f"tt000000{n}"), rec("tt0000009", n)), 20)
    assert any(lost in key for key in store.lost)
    view = read_local(tmp_path / FOLDER)
    assert not view.duplicates()
    assert set(view.records) == {"tt0000000", "tt0000001", "tt0000002", "tt0000003", "tt0000009"}
    assert view.records["tt0000009"][0][1] == rec("tt0000009", 3)
    assert not (tmp_path / LOCK).exists()
    fresh = await Ledger(LocalStore(str(tmp_path)), FOLDER).load()
    assert {i for i, h in fresh.homes().items() if h.outcome == "record"} == set(view.records)


async def test_a_renewal_whose_answer_was_lost_keeps_the_lease_and_its_commit_is_applied(
    tmp_path: Path,
) -> None:
    """The renewal in the middle of a commit lands, its answer is lost, and botocore's retry
    gets 412 because of it: the writer recognises its own lock (not "lock lost"), applies the
    commit it decided and releases the lock. The lease renews only because the commit's log
    write takes half of it (a 3 s lease); the parametrized test above never renews."""

    class SlowLog(MemoryStore):
        """The first commit-log write takes 1.5 s: the next step renews the lease."""

        slowed = False

        async def write(self, key: str, data: bytes, *args: Any, **kw: Any) -> str:
            if "/_ledger/log/" in key and not self.slowed:
                self.slowed = True
                await asyncio.sleep(1.5)
            return await super().write(key, data, *args, **kw)

    memory = SlowLog()
    first_lock_write = iter([True])
    store = FaultyStore(
        memory,  # every lock write after the create is a renewal: its answer is lost
        rule=lambda op, key, n: (
            "lost" if op == "write" and key == LOCK and not next(first_lock_write, False) else None
        ),
    )
    ledger = await Ledger(store, FOLDER, lease_seconds=3.0).load()
    done = await asyncio.wait_for(_commit(ledger, rec("tt0000001"), rec("tt0000002")), 20)
    assert done.data_files
    assert store.lost.count(LOCK) >= 1  # a renewal landed and its answer was lost
    memory.dump(tmp_path)
    view = read_local(tmp_path / FOLDER)
    assert set(view.records) == {"tt0000001", "tt0000002"} and not view.duplicates()
    assert not (tmp_path / LOCK).exists()  # released: the next run waits for nothing


def test_a_writer_that_gave_up_on_a_call_keeps_the_lock_until_the_call_can_no_longer_land(
    tmp_path: Path,
) -> None:
    """A call cut off at the lease's bound may still land a sixth of the lease later: the
    writer takes its own lock back and finishes its commit, but lets the lock go only after
    that sixth, so no other writer's files can be overwritten by it.

    On the virtual clock, with a store that needs no thread: the lease's seconds pass in no
    time, and the wait is measured on the clock the lease keeps, whatever the machine's load."""

    async def given_up_at(store: FaultyStore) -> float:
        await store.given_up.wait()
        return asyncio.get_running_loop().time()

    async def scenario() -> None:
        clock = asyncio.get_running_loop().time
        memory = MemoryStore()
        store = FaultyStore(memory)
        a = await Ledger(store, FOLDER, clock=clock, lease_seconds=3.0).load()
        first = iter([True])
        store.rule = lambda op, key, n: (
            "stall" if key.endswith("m-00000001-00.json") and next(first, False) else None
        )
        gave_up = asyncio.create_task(given_up_at(store))
        a_commit = asyncio.create_task(_commit(a, rec("tt0000001"), rec("tt0000002")))
        await asyncio.wait_for(a_commit, 20)
        released = clock()
        assert store.given_up.is_set()  # its data write was cut off at the lease's bound
        # The lock was held that long after the call was given up (less the loop's clock
        # resolution: the wait is an asyncio sleep).
        assert released - await gave_up >= 3.0 * MARGIN_SHARE - 0.005
        memory.dump(tmp_path)

    run_virtual(scenario())
    assert not (tmp_path / LOCK).exists()
    assert set(read_local(tmp_path / FOLDER).records) == {"tt0000001", "tt0000002"}


def test_a_commit_still_waiting_for_a_busy_lock_stops_when_cancelled(
    tmp_path: Path,
) -> None:
    """Before its log entry is written nothing of a commit is on storage: a deadline's
    cancellation stops it at once instead of waiting out another writer's lock.

    On the virtual clock (a store with no thread): the bound below is virtual seconds, so
    it says "not the lease, nor the wait" whatever the machine's load."""

    async def scenario() -> None:
        memory = MemoryStore()
        live = {"owner": "o", "holder": "h", "seconds": 60, "machine": "x", "expires": 4e9}
        memory.objects[LOCK] = json.dumps(live).encode()  # another machine's, and live
        clock = asyncio.get_running_loop().time
        ledger = await Ledger(memory, FOLDER, clock=clock, wait_seconds=300).load()
        task = asyncio.create_task(_commit(ledger, rec("tt0000001")))
        await asyncio.sleep(0)  # it starts waiting for the lock
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=10)  # not the 60 s lease, nor the 300 s wait
        assert task in done and task.cancelled()
        memory.dump(tmp_path)

    run_virtual(scenario())
    assert not read_local(tmp_path / FOLDER).all_ids()


async def test_loading_a_folder_whose_roll_forward_outlasts_the_lease_retries_it(
    tmp_path: Path,
) -> None:
    dying = await Ledger(KillingStore(LocalStore(str(tmp_path)), 3), FOLDER).load()
    with pytest.raises(Killed):  # lock, staged file and commit written; killed before the move
        await _commit(dying, rec("tt0000001"))
    declare_dead(tmp_path)
    stalls = iter([True])
    store = FaultyStore(
        LocalStore(str(tmp_path)),
        rule=lambda op, key, n: (
            "stall" if key.endswith("-00.json") and next(stalls, False) else None
        ),
    )
    loaded = await asyncio.wait_for(Ledger(store, FOLDER, lease_seconds=0.6).load(), 20)
    assert loaded.home("tt0000001") is not None
    assert set(read_local(tmp_path / FOLDER).records) == {"tt0000001"}


async def test_a_lock_whose_acquire_was_cut_short_blocks_no_later_writer_of_the_process(
    tmp_path: Path,
) -> None:
    """A deadline can cancel a writer while its lock's PUT lands (the end-of-run checkpoint
    of a warm Lambda container's invocation): the lock names a holder this process no
    longer has, so the next writer of the process takes it over at once instead of waiting
    the lease out (which left the next invocation no time: "no progress")."""

    class LandsThenCancelled(LocalStore):
        async def write(
            self, key: str, data: bytes, content_type: str = "application/json", **kw: Any
        ) -> str:
            etag = await super().write(key, data, content_type, **kw)
            if key.endswith("_ledger/lock.json"):
                raise asyncio.CancelledError  # the answer never reaches the writer
            return etag

    cut = await Ledger(LandsThenCancelled(str(tmp_path)), FOLDER).load()
    with pytest.raises(asyncio.CancelledError):
        await _commit(cut, rec("tt0000001"))
    assert (tmp_path / FOLDER / "_ledger/lock.json").exists()
    later = await Ledger(LocalStore(str(tmp_path)), FOLDER, wait_seconds=0.05).load()
    await _commit(later, rec("tt0000002"))
    assert later.home("tt0000002") is not None
    assert set(read_local(tmp_path / FOLDER).records) == {"tt0000002"}
