"""Exactly once by design: random sequences of what operators really do to one date folder,
with the folder's invariants checked (on the files themselves) after every step.

Operations: runs of a CSV with random slices, chunk sizes, formats, kinds, resume on/off,
incremental mode and spellings of the source; Distributed-Map-like batches run at once;
two runs at once; the CSV edited between runs; TMDB failing some ids on some runs; runs
killed after a random number of storage writes (nothing after that point reaches storage,
which is what SIGKILL leaves behind; ``test_restarts.py`` does the real SIGKILL); runs whose
storage loses answers after the write landed (the client sends it again, as botocore does
after a 500 or a reset); runs whose writes stall past the lease's bound and land moments
after the client gave up; two writers whose clocks disagree (wall clocks a minute or a day
apart, monotonic clocks from other origins), one of them with stalling writes; and reruns
during a TMDB outage (every request answered 5xx).
Every overview TMDB sends holds every Unicode line and paragraph separator.

Invariants, after every step:
- nothing twice: no id is in two places (data records and sidecar entries together);
- nothing lost: an id that had a record keeps exactly one unless a run fetched it again,
  and an answer from TMDB (a record, not found) is only ever replaced by another answer;
- everything accounted for: every id a completed run covered is in exactly one place,
  with the latest outcome (the model below says which);
- a plain glob sees data only: the top of the folder holds data files and nothing else,
  none empty, none over 100 records.
After a kill, ids the killed run was working on may be in their old or new state (or
absent, if they had none); the next run's ledger load must roll the half-done commit
forward before anything else, so the old/new choice is resolved then.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import datetime as dt
import json
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.conftest import TOKEN
from tests.support.faulty import FaultyStore
from tests.support.kill import Killed, KillingStore, declare_dead
from tests.support.lake import FolderView, read_local
from tmdb_async import Credentials, Settings, run
from tmdb_async.errors import StorageError, UsageError
from tmdb_async.jobs.ingest import record_shape
from tmdb_async.lake import ledger as ledger_module
from tmdb_async.lake.codec import decode_file, encode_file
from tmdb_async.lake.ledger import Ledger
from tmdb_async.lake.storage import LocalStore
from tmdb_devtools import fake_tmdb
from tmdb_devtools.csvgen import kind_of, title_ids, write_csv
from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig

pytestmark = pytest.mark.slow

DAY = dt.date(2022, 5, 2)
FOLDER = "Raw/TMDB/JSON/2022/05/02"
MOVIES = title_ids(50, "movie", start=3_000_000)
SHOWS = title_ids(20, "tv", start=3_100_000)
INVALID = ["tt12", "\\N", "abc"]
UNIVERSE = MOVIES + SHOWS + INVALID
FLAKY = frozenset(random.Random(7).sample(MOVIES + SHOWS, 8))  # fail on the flaky server
ANSWERS = ("record", "not_found")  # what only TMDB can say (and a refresh's "deleted")
SEPARATORS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # in every overview

# Each writer's clocks, off by this many seconds from the machine's: the writer's wall clock
# (time.time) and the origin of the monotonic clock its ledger measures the lease on, as on
# another host. A context variable, so each of two runs at once (each its own task) has its own.
_SKEW: contextvars.ContextVar[float] = contextvars.ContextVar("skew", default=0.0)
SKEWS = st.sampled_from([0.0, 30.0, -30.0, 86_400.0, -86_400.0])
_REAL_TIME = time.time


def _skewed_time() -> float:
    return _REAL_TIME() + _SKEW.get()


def _skewed_monotonic() -> float:
    return time.monotonic() + _SKEW.get()


@dataclass(frozen=True)
class State:
    """The model's view of one id: its outcome, the shape that made it, the file type."""

    outcome: str
    shape: str  # record_shape() of the run that wrote it
    ext: str  # "json"/"jsonl" for a record, "" for a sidecar entry

    @property
    def seen(self) -> tuple[str, str]:
        return self.outcome, self.ext


@dataclass(frozen=True)
class Run:
    offset: int
    limit: int | None
    chunk_size: int
    fmt: str
    kind: str
    resume: bool
    skip_existing: bool
    flaky: bool
    dotted: bool  # the source spelled as <dir>/./<name>


def expected(imdb_id: str, kind: str, flaky: bool) -> str:
    if imdb_id in INVALID:
        return "invalid"
    if flaky and imdb_id in FLAKY:
        return "failed"
    found = kind_of(int(imdb_id[2:]))
    if kind == "auto":
        return "record" if found else "not_found"
    return "record" if found == kind else "not_found"


def shape_of(r: Run) -> str:
    return record_shape(Settings(source="x", dest="y", kind=r.kind, output_format=r.fmt))  # type: ignore[arg-type]


#: shape -> the kind that made it (every run of the machine has its other settings).
KIND_OF = {
    shape_of(Run(0, None, 1, fmt, kind, True, False, False, False)): kind
    for kind in ("movie", "tv", "auto")
    for fmt in ("json", "jsonl")
}


def rewritten(model: dict[str, State], r: Run) -> dict[str, State]:
    """The folder once a run of ``r`` (always ``replace`` here) took the folder's answers of
    the other format as its own, before its first request: records re-encoded into its
    format with their other settings kept; answers differing only in the format take its
    shape."""
    shape = shape_of(r)
    new = dict(model)
    for imdb_id, state in model.items():
        if state.outcome not in ANSWERS or state.shape == shape:
            continue
        moved = shape_of(dataclasses.replace(r, kind=KIND_OF[state.shape]))
        if state.outcome == "record" and state.ext != r.fmt:
            new[imdb_id] = State("record", moved, r.fmt)
        elif moved == shape:
            new[imdb_id] = State(state.outcome, shape, state.ext)
    return new


def touched_by(model: dict[str, State], ids: list[str], r: Run) -> set[str]:
    """The ids a run of ``r`` over ``ids`` may change: its slice and what it rewrites."""
    moved = rewritten(model, r)
    return set(ids) | {i for i in model if moved[i] != model[i]}


def after(
    model: dict[str, State], ids: list[str], r: Run, outage: bool = False
) -> dict[str, State]:
    """What the folder holds after a completed run ``r`` over ``ids``, from ``model``.
    ``outage``: TMDB answered every request with a 5xx; a failure never replaces an answer."""
    shape = shape_of(r)
    model = rewritten(model, r)
    new = dict(model)
    for imdb_id in ids:
        current = model.get(imdb_id)
        if (
            r.resume
            and current is not None
            and current.outcome != "failed"
            and (current.shape == shape or current.outcome == "invalid")
        ):
            continue  # kept
        if r.skip_existing and current is not None and current.outcome == "record":
            continue  # skipped: already has a record in the lake
        outcome = expected(imdb_id, r.kind, r.flaky)
        if outage and outcome != "invalid":
            outcome = "failed"
        if outcome == "failed" and current is not None and current.outcome in ANSWERS:
            continue  # held: a failure never replaces an answer TMDB gave
        new[imdb_id] = State(outcome, shape, r.fmt if outcome == "record" else "")
    return new


runs = st.builds(
    Run,
    offset=st.integers(0, 40),
    limit=st.one_of(st.none(), st.integers(1, 60)),
    chunk_size=st.sampled_from([1, 3, 7, 25, 100]),
    fmt=st.sampled_from(["json", "jsonl"]),
    kind=st.sampled_from(["movie", "tv", "auto"]),
    resume=st.booleans(),
    skip_existing=st.booleans(),
    flaky=st.booleans(),
    dotted=st.booleans(),
)


def _leased(key: str) -> bool:
    """A write the ledger makes under its lease (a commit, a data or sidecar file, a file
    losing ids): the ones a lease's bound can give up on."""
    folder, _, name = key.rpartition("/")
    return folder.endswith(("/_ledger/log", "/_sidecars")) or (
        folder.endswith(FOLDER) and not name.startswith((".", "_"))
    )


class FolderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.fake = self.loop.run_until_complete(FakeTmdb(FakeTmdbConfig(token=TOKEN)).__aenter__())
        self.flaky_fake = self.loop.run_until_complete(
            FakeTmdb(FakeTmdbConfig(token=TOKEN, fault_ids=FLAKY)).__aenter__()
        )
        self.outage = self.loop.run_until_complete(
            FakeTmdb(FakeTmdbConfig(token=TOKEN, fault_5xx=1.0)).__aenter__()
        )
        self._overview = fake_tmdb._overview
        fake_tmdb._overview = lambda core, lang: self._overview(core, lang) + SEPARATORS
        # Writers' clocks follow _SKEW (0 outside two_runs_at_once).
        self._clock_default = Ledger.__init__.__kwdefaults__["clock"]
        Ledger.__init__.__kwdefaults__["clock"] = _skewed_monotonic
        time.time = _skewed_time
        self.model: dict[str, State] = {}
        self.csv: list[str] = []

    def teardown(self) -> None:
        fake_tmdb._overview = self._overview
        Ledger.__init__.__kwdefaults__["clock"] = self._clock_default
        time.time = _REAL_TIME
        if hasattr(self, "dir"):
            shutil.rmtree(self.dir, ignore_errors=True)
        for fake in (self.fake, self.flaky_fake, self.outage):
            self.loop.run_until_complete(fake.__aexit__(None, None, None))
        self.loop.close()

    @initialize(seed=st.integers(0, 2**16))
    def start(self, seed: int) -> None:
        import tempfile

        self.dir = Path(tempfile.mkdtemp(prefix="exactly-once-"))
        self.lake = self.dir / "lake"
        rng = random.Random(seed)
        self.csv = rng.sample(UNIVERSE, 40)
        self._write_csv()

    # --- helpers -------------------------------------------------------------------------

    def _write_csv(self) -> None:
        lines = ["id|tituloPincipal|nomeArtista"]
        for n, imdb_id in enumerate(self.csv):
            lines += [f"{imdb_id}|Título {n}|Artista {k}" for k in range(1 + n % 3)]
        (self.dir / "movies.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _distinct(self) -> list[str]:
        return list(dict.fromkeys(self.csv))

    def _slice(self, r: Run) -> list[str]:
        ids = self._distinct()
        return ids[r.offset :] if r.limit is None else ids[r.offset : r.offset + r.limit]

    def _settings(self, r: Run) -> Settings:
        source = self.dir / "." / "movies.csv" if r.dotted else self.dir / "movies.csv"
        return Settings(
            source=str(source),
            dest=str(self.lake),
            credentials=Credentials(read_access_token=TOKEN),
            tmdb_url=(self.flaky_fake if r.flaky else self.fake).url,
            date=DAY,
            kind=r.kind,  # type: ignore[arg-type]
            output_format=r.fmt,  # type: ignore[arg-type]
            chunk_size=r.chunk_size,
            offset=r.offset,
            limit=r.limit,
            resume=r.resume,
            skip_existing=r.skip_existing,
            replace=True,  # runs of other settings and formats, on purpose (test_guards)
            rate=1000.0,
            concurrency=8,
            max_attempts=2,
            max_backoff=0.01,
        )

    def view(self) -> FolderView:
        return read_local(self.lake / FOLDER)

    def _ledger(self) -> Ledger:
        ledger = Ledger(LocalStore(str(self.lake)), FOLDER)
        self.loop.run_until_complete(ledger._reload())
        return ledger

    def _resolve(self, alternatives: dict[str, set[State | None]]) -> None:
        """Ids whose state the model cannot predict (a kill, two runs racing) must be in one
        of their possible states; the folder (and the ledger, for the shape that made it)
        says which, and the model follows."""
        view, ledger = self.view(), self._ledger()
        for imdb_id, alts in alternatives.items():
            seen = view.state(imdb_id)
            if seen is None:
                assert None in alts, (imdb_id, "lost", alts)
                self.model.pop(imdb_id, None)
                continue
            home = ledger.home(imdb_id)
            assert home is not None, imdb_id
            matching = [
                s for s in alts if s is not None and s.seen == seen and s.shape == home.shape
            ]
            assert matching, (imdb_id, seen, alts)
            self.model[imdb_id] = matching[0]

    def _check_exact(self, view: FolderView, skip: frozenset[str] = frozenset()) -> None:
        for imdb_id, state in self.model.items():
            if imdb_id not in skip:
                assert view.state(imdb_id) == state.seen, (imdb_id, view.places(imdb_id), state)
        unexpected = view.all_ids() - set(self.model) - skip
        assert not unexpected, f"ids from nowhere: {sorted(unexpected)}"

    def _recover(self) -> None:
        """What the next process does first: the killed writer is dead, the ledger loads
        and rolls a half-applied commit forward."""
        declare_dead(self.lake)
        store = LocalStore(str(self.lake))
        self.loop.run_until_complete(Ledger(store, FOLDER).load())

    def _after_stop(self, ids: list[str], r: Run) -> None:
        """A run of ``ids`` stopped half-way (killed, or its lease lost): right after, never
        twice and ids outside the run (and its rewrite) untouched; then the next process
        recovers, and each id it touched is in one of its possible states."""
        view = self.view()
        assert not view.duplicates(), view.duplicates()
        touched = touched_by(self.model, ids, r)
        self._check_exact(view, skip=frozenset(touched))
        done, moved = after(self.model, ids, r), rewritten(self.model, r)
        self._recover()
        self._resolve({i: {self.model.get(i), moved.get(i), done.get(i)} for i in touched})

    # --- operations ----------------------------------------------------------------------

    @rule(r=runs)
    def run_csv(self, r: Run) -> None:
        ids = self._slice(r)
        summary = self.loop.run_until_complete(run(self._settings(r)))
        self.model = after(self.model, ids, r)
        assert summary.unique_ids == len(ids)
        assert summary.status == ("failed_ids" if summary.failed else "ok")

    @rule(r=runs, seed=st.integers(0, 2**16), share=st.sampled_from([0.1, 0.5]))
    def run_with_lost_storage_answers(self, r: Run, seed: int, share: float) -> None:
        """Some writes land and their answer is lost: the client sends them again."""
        ids = self._slice(r)
        rng = random.Random(seed)
        store = FaultyStore(
            LocalStore(str(self.lake)),
            rule=lambda op, key, n: "lost" if rng.random() < share else None,
        )
        summary = self.loop.run_until_complete(run(self._settings(r), store=store))
        self.model = after(self.model, ids, r)
        assert summary.unique_ids == len(ids)
        assert summary.status == ("failed_ids" if summary.failed else "ok")

    @rule(r=runs, seed=st.integers(0, 2**16))
    def run_with_stalled_writes(self, r: Run, seed: int) -> None:
        """Some writes stall past the lease's bound (a 0.6 s lease here): the run gives them
        up, and each lands moments later, as a request S3 applies after the client left."""
        ids = self._slice(r)
        rng = random.Random(seed)
        store = FaultyStore(
            LocalStore(str(self.lake)),
            rule=lambda op, key, n: "stall" if _leased(key) and rng.random() < 0.05 else None,
            land_soon=True,
        )
        lease, ledger_module.LEASE_SECONDS = ledger_module.LEASE_SECONDS, 0.6
        try:
            summary = self.loop.run_until_complete(run(self._settings(r), store=store))
        except StorageError:
            # A loaded machine can hold this run's lease past its 0.1 s margin three times
            # over: the run stops (exit 3). What it committed stands, nothing twice.
            summary = None
        finally:
            ledger_module.LEASE_SECONDS = lease
        if store.given_up.is_set():
            event("a write stalled past the lease and landed late")
        self.loop.run_until_complete(store.land_late())
        if summary is None:
            event("the run lost its lease three times and stopped")
            self._after_stop(ids, r)
            return
        self.model = after(self.model, ids, r)
        assert summary.unique_ids == len(ids)

    @rule(r=runs)
    def rerun_during_an_outage(self, r: Run) -> None:
        ids = self._slice(r)
        settings_ = dataclasses.replace(self._settings(r), tmdb_url=self.outage.url)
        summary = self.loop.run_until_complete(run(settings_))
        self.model = after(self.model, ids, r, outage=True)
        assert summary.held <= summary.failed
        assert summary.status == ("failed_ids" if summary.failed else "ok")

    @rule(r=runs, budget=st.integers(0, 30))
    def run_csv_killed(self, r: Run, budget: int) -> None:
        ids = self._slice(r)
        store = KillingStore(LocalStore(str(self.lake)), budget)
        try:
            self.loop.run_until_complete(run(self._settings(r), store=store))
        except Killed:
            pass
        else:
            self.model = after(self.model, ids, r)
            return
        self._after_stop(ids, r)

    @rule(
        batch=st.integers(1, 30),
        chunk_size=st.sampled_from([1, 5, 100]),
        fmt=st.sampled_from(["json", "jsonl"]),
        kind=st.sampled_from(["movie", "auto"]),
        resume=st.booleans(),
    )
    def distributed_map(
        self, batch: int, chunk_size: int, fmt: str, kind: str, resume: bool
    ) -> None:
        """Batches of the distinct ids, all at once, like Map children into one folder."""
        r = Run(0, None, chunk_size, fmt, kind, resume, False, False, False)
        ids = self._distinct()
        base = self._settings(r)

        async def all_batches() -> list[Any]:
            return await asyncio.gather(
                *(
                    run(base, items=[{"id": i} for i in ids[k : k + batch]])
                    for k in range(0, len(ids), batch)
                )
            )

        summaries = self.loop.run_until_complete(all_batches())
        assert sum(s.unique_ids for s in summaries) == len(ids)
        self.model = after(self.model, ids, r)

    @rule(a=runs, b=runs, skew_a=SKEWS, skew_b=SKEWS, stall=st.booleans(), seed=st.integers())
    def two_runs_at_once(
        self, a: Run, b: Run, skew_a: float, skew_b: float, stall: bool, seed: int
    ) -> None:
        """Two writers on two hosts whose clocks disagree; with ``stall``, some of the second
        one's writes stall past the lease's bound (a 0.6 s lease) and land moments after it
        gave up on them, and a writer may lose its lease three times and stop (exit 3).
        No decision of the engine compares clocks today (the lease measures durations on
        each writer's own monotonic clock): the skew keeps it so. A lease judged on wall
        clocks took over live locks here 29 times in one run, and the folder still held,
        fenced by its create-only log entries and conditional data writes."""
        # One format: two runs of different formats at once can each find the folder in
        # its own format and mix them (the format guard looks when a run starts).
        b = dataclasses.replace(b, fmt=a.fmt)
        ids_a, ids_b = self._slice(a), self._slice(b)
        rng = random.Random(seed)
        store_b = FaultyStore(
            LocalStore(str(self.lake)),
            rule=lambda op, key, n: (
                "stall" if stall and _leased(key) and rng.random() < 0.05 else None
            ),
            land_soon=True,
        )

        async def on_host(r: Run, skew: float, store: FaultyStore | None) -> bool:
            _SKEW.set(skew)
            try:
                await run(self._settings(r), store=store)
            except StorageError as exc:
                # Only a 0.6 s lease on a loaded machine may be lost three times (exit 3);
                # any other storage error is a failure of the test.
                if not (stall and "lost the folder lock 3 times" in str(exc)):
                    raise
                return False
            return True

        async def both() -> list[bool]:
            return list(await asyncio.gather(on_host(a, skew_a, None), on_host(b, skew_b, store_b)))

        lease = ledger_module.LEASE_SECONDS
        if stall:
            ledger_module.LEASE_SECONDS = 0.6
        try:
            done_a, done_b = self.loop.run_until_complete(both())
        finally:
            ledger_module.LEASE_SECONDS = lease
        self.loop.run_until_complete(store_b.land_late())
        if skew_a != skew_b:
            event("two writers whose clocks disagree")
        if store_b.given_up.is_set():
            event("a write stalled past the lease and landed late")
        if not (done_a and done_b):
            event("a writer lost its lease three times and stopped")
            self._recover()
        pre = self.model
        orders = [
            after(after(pre, ids_a, a), ids_b, b),
            after(after(pre, ids_b, b), ids_a, a),
            after(pre, ids_a, a),
            after(pre, ids_b, b),
        ]
        touched = touched_by(pre, ids_a, a) | touched_by(pre, ids_b, b)
        alternatives: dict[str, set[State | None]] = {
            i: {o.get(i) for o in orders} for i in touched
        }
        stopped = (set() if done_a else touched_by(pre, ids_a, a)) | (
            set() if done_b else touched_by(pre, ids_b, b)
        )
        for imdb_id in stopped:  # a stopped run may have left an id as it was
            alternatives[imdb_id].add(pre.get(imdb_id))
        self._resolve(alternatives)
        required = (set(ids_a) if done_a else set()) | (set(ids_b) if done_b else set())
        for imdb_id in required:  # a completed run accounts for every id it covered
            assert imdb_id in self.model, imdb_id

    @precondition(lambda self: len(self.csv) > 5)
    @rule(data=st.data())
    def edit_csv(self, data: st.DataObject) -> None:
        """Rows removed, new ids added, the order shuffled: the file operators re-export."""
        keep = data.draw(st.lists(st.sampled_from(self.csv), min_size=3, unique=True))
        fresh = [i for i in UNIVERSE if i not in keep]
        added = (
            data.draw(st.lists(st.sampled_from(fresh), max_size=12, unique=True)) if fresh else []
        )
        self.csv = data.draw(st.permutations(keep + added))
        self._write_csv()

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def folder_matches_the_model(self) -> None:
        if not hasattr(self, "dir"):
            return
        view = self.view()
        assert not view.stray, f"non-data files at the top of the folder: {view.stray}"
        assert not view.duplicates(), view.duplicates()
        assert all(0 < n <= 100 for n in view.data_files.values()), view.data_files
        self._check_exact(view)


FolderMachine.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_folder_invariants_hold_under_random_operator_sequences = FolderMachine.TestCase


# --- one test per row of the operator table (issue 8) -----------------------------------


def _settings(csv_path: Path, lake: Path, url: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "credentials": Credentials(read_access_token=TOKEN),
        "tmdb_url": url,
        "date": DAY,
        "rate": 1000.0,
        "max_backoff": 0.05,
    }
    values.update(changes)
    return Settings(source=str(csv_path), dest=str(lake), **values)


def _assert_once(lake: Path, ids: list[str]) -> FolderView:
    view = read_local(lake / FOLDER)
    assert not view.duplicates(), view.duplicates()  # nothing twice
    assert view.all_ids() == set(ids)  # nothing lost
    assert not view.stray
    return view


def _found(ids: list[str]) -> int:
    return sum(1 for i in ids if kind_of(int(i[2:])) is not None)


@pytest.fixture
def ids282() -> list[str]:
    return title_ids(282, "movie", start=4_000_000)


async def test_row1_a_sub_slice_after_a_full_run_loses_no_record(
    tmp_path: Path, fake_tmdb: FakeTmdb, ids282: list[str]
) -> None:
    csv_path = write_csv(tmp_path / "x.csv", ids282)
    lake = tmp_path / "lake"
    await run(_settings(csv_path, lake, fake_tmdb.url))
    for resume in (True, False):
        await run(_settings(csv_path, lake, fake_tmdb.url, offset=100, limit=50, resume=resume))
        view = _assert_once(lake, ids282)
        assert len(view.record_ids()) == _found(ids282)


async def test_row2_slices_then_a_full_run_write_no_id_twice(
    tmp_path: Path, fake_tmdb: FakeTmdb, ids282: list[str]
) -> None:
    csv_path = write_csv(tmp_path / "x.csv", ids282)
    lake = tmp_path / "lake"
    await run(_settings(csv_path, lake, fake_tmdb.url, offset=0, limit=150))
    await run(_settings(csv_path, lake, fake_tmdb.url, offset=150, limit=150))
    full = await run(_settings(csv_path, lake, fake_tmdb.url))
    assert full.kept == 282
    _assert_once(lake, ids282)


async def test_row3_the_same_csv_with_ids_removed_then_rerun_keeps_each_record_once(
    tmp_path: Path, fake_tmdb: FakeTmdb, ids282: list[str]
) -> None:
    csv_path = write_csv(tmp_path / "x.csv", ids282)
    lake = tmp_path / "lake"
    await run(_settings(csv_path, lake, fake_tmdb.url))
    write_csv(csv_path, ids282[100:])
    for resume in (True, False):
        await run(_settings(csv_path, lake, fake_tmdb.url, resume=resume))
        _assert_once(lake, ids282)  # the removed ids keep their records: nothing lost


async def test_row4_reruns_with_another_format_chunk_size_or_spelling_add_no_copy(
    tmp_path: Path, fake_tmdb: FakeTmdb, ids282: list[str]
) -> None:
    csv_path = write_csv(tmp_path / "x.csv", ids282)
    lake = tmp_path / "lake"
    await run(_settings(csv_path, lake, fake_tmdb.url))
    with pytest.raises(UsageError, match="holds 3 json files and this run writes jsonl"):
        await run(_settings(csv_path, lake, fake_tmdb.url, output_format="jsonl"))
    jsonl = await run(_settings(csv_path, lake, fake_tmdb.url, output_format="jsonl", replace=True))
    # Another format, with --replace: the folder rewritten into it, nothing fetched again.
    assert (jsonl.kept, jsonl.records, jsonl.requests) == (282, 0, 0) and jsonl.rewritten
    chunked = await run(
        _settings(csv_path, lake, fake_tmdb.url, output_format="jsonl", chunk_size=7)
    )
    spelled = await run(
        _settings(tmp_path / "." / "x.csv", lake, fake_tmdb.url, output_format="jsonl")
    )
    assert chunked.kept == spelled.kept == 282  # file layout and spelling do not matter
    view = _assert_once(lake, ids282)
    assert len(view.record_ids()) == _found(ids282)
    assert all(name.endswith(".jsonl") for name in view.data_files)


async def test_row5_smaller_batches_after_larger_ones_add_no_copy(
    tmp_path: Path, fake_tmdb: FakeTmdb, ids282: list[str]
) -> None:
    """Distributed Map batches (what local-map and the state machine send), 300 ids then
    150 as a DeadlineError advises, all at once into one folder."""
    lake = tmp_path / "lake"
    base = _settings(Path("items"), lake, fake_tmdb.url, resume=False)
    for size in (300, 150):
        batches = [ids282[k : k + size] for k in range(0, len(ids282), size)]
        await asyncio.gather(*(run(base, items=[{"id": i} for i in b]) for b in batches))
        view = _assert_once(lake, ids282)
        assert len(view.record_ids()) == _found(ids282)


async def test_row6_a_run_killed_after_any_write_then_rerun_gives_every_id_exactly_once(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    """Every kill point of an incremental run over a folder that already holds half the ids,
    including between a data file and its commit's completion: the rerun fixes it all."""
    ids = title_ids(60, "movie", start=4_500_000)
    csv_path = write_csv(tmp_path / "x.csv", ids)
    budget = 0
    while True:
        lake = tmp_path / f"lake-{budget}"
        await run(_settings(csv_path, lake, fake_tmdb.url, limit=30, chunk_size=10))
        store = KillingStore(LocalStore(str(lake)), budget)
        s = _settings(csv_path, lake, fake_tmdb.url, chunk_size=10, skip_existing=True)
        try:
            await run(s, store=store)
        except Killed:
            view = read_local(lake / FOLDER)
            assert not view.duplicates(), (budget, view.duplicates())
            assert set(view.record_ids()) >= {i for i in ids[:30] if kind_of(int(i[2:]))}
        else:
            break  # the run needed fewer writes than the budget: every point was tried
        declare_dead(lake)
        again = await run(_settings(csv_path, lake, fake_tmdb.url, skip_existing=True))
        assert again.status == "ok"
        _assert_once(lake, ids)
        budget += 1
    assert budget > 10


async def test_row7_a_killed_run_restarted_after_midnight_continues_in_its_own_folder(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    ids = title_ids(40, "movie", start=4_600_000)
    csv_path = write_csv(tmp_path / "x.csv", ids)
    lake = tmp_path / "lake"
    s = _settings(csv_path, lake, fake_tmdb.url, date=None, chunk_size=10)
    with pytest.raises(Killed):
        await run(s, store=KillingStore(LocalStore(str(lake)), 12))
    declare_dead(lake)
    # The clock passes midnight: the record of the interrupted run says when it started.
    (record,) = (lake / "Raw/TMDB/_state/runs").glob("*/*.json")
    started = json.loads(record.read_text())
    yesterday = dt.date.fromisoformat(started["date"]) - dt.timedelta(days=1)
    folder = lake / f"Raw/TMDB/JSON/{yesterday:%Y/%m/%d}"
    (lake / "Raw/TMDB/JSON").joinpath(started["date"].replace("-", "/")).rename(folder)
    record.write_text(json.dumps({**started, "date": yesterday.isoformat()}))

    summary = await run(s)
    assert summary.date == yesterday.isoformat()
    view = read_local(folder)
    assert view.all_ids() == set(ids) and not view.duplicates()
    assert not list((lake / "Raw/TMDB/_state/runs").glob("*/*.json"))  # finished: forgotten
    assert sorted(p.name for p in (lake / "Raw/TMDB/JSON").glob("*/*/*")) == [f"{yesterday:%d}"]


def test_row9_a_record_with_a_lone_surrogate_is_written_with_its_escape() -> None:
    record = {"imdb_id": "tt0133093", "title": "Matrix \ud83d", "overview": "ação"}
    for name in ("m-00000001.json", "m-00000001.jsonl"):
        data = encode_file(name, [record, {"imdb_id": "tt0000001", "title": "ação"}])
        text = data.decode("utf-8")  # valid UTF-8
        assert "\\ud83d" in text and "ação" in text
        assert decode_file(name, data)[0] == record  # the text is kept exactly


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
async def test_row17_a_plain_glob_of_the_date_folder_reads_data_records_only(
    tmp_path: Path, fake_tmdb: FakeTmdb, fmt: str
) -> None:
    import duckdb

    ids = [*title_ids(150, "movie", start=4_700_000), "tt12", "\\N"]
    csv_path = write_csv(tmp_path / "x.csv", ids)
    lake = tmp_path / "lake"
    summary = await run(_settings(csv_path, lake, fake_tmdb.url, output_format=fmt))
    await run(_settings(csv_path, lake, fake_tmdb.url, output_format=fmt, resume=False))
    assert summary.not_found and summary.invalid  # sidecars and manifests exist
    pattern = str(lake / FOLDER / f"*.{fmt}")
    query = f"SELECT count(*), count(DISTINCT imdb_id) FROM read_json_auto('{pattern}')"
    [(count, distinct)] = duckdb.sql(query).fetchall()
    assert count == distinct == summary.records
    import glob

    assert all("/_" not in p for p in glob.glob(pattern))  # what pandas/Polars users glob
