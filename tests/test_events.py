"""Lambda events: the four event shapes run the engine on S3 (moto) and the fake TMDB;
anything else is refused with the field it is about."""

from __future__ import annotations

import datetime as dt
import json
import logging
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import handler
from tests.conftest import TOKEN
from tests.support.asked import titles_asked
from tests.support.lake import read_s3
from tmdb_async.errors import (
    CredentialsError,
    DeadlineError,
    ExecutionAlreadyRunning,
    RefreshIncomplete,
    UsageError,
)
from tmdb_async.events import handle
from tmdb_async.jobs.fleet import fleet_share, plan_batches
from tmdb_async.jobs.prepare import ExecutionRef, earlier_executions
from tmdb_devtools.csvgen import title_ids, write_csv
from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig, changed_ids, kind_of_number

KEY = "Raw/Local/CSV/Movies/2022/05/02/movies.csv"


class Context:
    """What the handler uses of Lambda's context: its names, a request id and a clock."""

    aws_request_id = "req-1"
    function_name = "tmdb-ingest"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:tmdb-ingest"

    def __init__(self, remaining_ms: int | Callable[[], int] = 900_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms() if callable(self.remaining_ms) else self.remaining_ms


def lambda_env(url: str, **extra: str) -> dict[str, str]:
    return {
        "TMDB_READ_ACCESS_TOKEN": TOKEN,
        "TMDB_BASE_URL": url,
        "TMDB_DEST": "s3://data-lake-x",
        "TMDB_ALLOWED_BUCKETS": "data-lake-x",
        "TMDB_RATE": "1000",
        **extra,
    }


async def test_direct_event_runs_a_slice_of_the_csv(
    tmp_path: Path, s3: Any, lake: str, fake_tmdb: FakeTmdb
) -> None:
    ids = title_ids(50, "movie")
    s3.upload_file(str(write_csv(tmp_path / "m.csv", ids)), lake, KEY)
    event = {"source": f"s3://{lake}/{KEY}", "date": "2022-05-02", "offset": 10, "limit": 20}
    result = await handle(event, Context(), lambda_env(fake_tmdb.url))
    assert result["status"] == "ok"
    assert result["unique_ids"] == 20
    assert all(f.startswith("s3://data-lake-x/Raw/TMDB/JSON/2022/05/02/") for f in result["files"])
    json.dumps(result)  # the Lambda result must be JSON


async def test_distributed_map_batch_splits_the_global_rate(
    s3: Any, lake: str, fake_tmdb: FakeTmdb
) -> None:
    ids = title_ids(30, "movie")
    event = {
        "Items": [{"id": i, "nomeArtista": "X"} for i in ids + ids[:5]],
        "BatchInput": {
            "dest": "s3://data-lake-x",
            "kind": "movie",
            "date": "2022-05-02",
            "global_rate": 1000,
            "max_concurrency": 4,
        },
    }
    result = await handle(event, Context(), lambda_env(fake_tmdb.url))
    assert result["status"] == "ok"
    assert result["unique_ids"] == 30
    assert result["batch_input"] == event["BatchInput"]
    manifest = s3.get_object(Bucket=lake, Key=result["manifest"].split(f"{lake}/", 1)[1])
    settings = json.loads(manifest["Body"].read())["settings"]
    assert settings["rate"] == 250.0  # 1000 / 4
    assert settings["concurrency"] == 5  # 20 connections / 4


async def test_a_deadline_returns_the_items_left_to_do_and_they_complete_the_batch(
    s3: Any, lake: str, fake_tmdb: FakeTmdb
) -> None:
    ids = title_ids(250, "movie")
    event = {"Items": [{"id": i} for i in ids], "BatchInput": {"dest": "s3://data-lake-x"}}
    env = lambda_env(fake_tmdb.url, TMDB_SAFETY_MARGIN_SECONDS="30")

    def remaining_ms() -> int:
        # Time runs out with progress: plenty until 60 requests have been answered.
        return 900_000 if fake_tmdb.stats().total_requests < 60 else 20_000

    first = await handle(event, Context(remaining_ms), env)
    assert first["status"] == "incomplete"
    assert 0 < first["unique_ids"] < 250
    left = [i["id"] for i in first["remaining_items"]]
    assert left == ids[first["unique_ids"] :]  # exactly the ids not yet accounted for
    again = {"Items": first["remaining_items"], "BatchInput": first["batch_input"]}
    second = await handle(again, Context(), env)
    assert second["status"] == "ok"
    assert first["unique_ids"] + second["unique_ids"] == 250
    written = []
    for result in (first, second):
        for url in result["files"]:
            key = url.split(f"{lake}/", 1)[1]
            written += [
                r["imdb_id"] for r in json.loads(s3.get_object(Bucket=lake, Key=key)["Body"].read())
            ]
    assert len(written) == len(set(written)) == first["records"] + second["records"]


async def test_no_time_for_even_one_chunk_is_an_error_not_a_loop(
    lake: str, fake_tmdb: FakeTmdb
) -> None:
    event = {"Items": [{"id": "tt1000001"}], "BatchInput": {"dest": "s3://data-lake-x"}}
    env = lambda_env(fake_tmdb.url, TMDB_SAFETY_MARGIN_SECONDS="30")
    with pytest.raises(DeadlineError, match="no progress before the deadline"):
        await handle(event, Context(remaining_ms=20_000), env)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([1, 2], "event: expected a JSON object, got list"),
        ({"hello": "world"}, "event: unknown shape"),
        ({"source": "s3://data-lake-x/a.csv", "colour": "red"}, "event: unknown field 'colour'"),
        ({"source": "/etc/passwd"}, "event.source: '/etc/passwd' is not an s3:// URL"),
        ({"source": "s3://data-lake-x/../../x.csv"}, "has '..'"),
        ({"source": "s3://other-bucket/a.csv"}, "bucket 'other-bucket' is not allowed"),
        ({"source": "s3://data-lake-x/a.csv", "dest": "s3://evil/x"}, "event.dest: bucket 'evil'"),
        (
            {"source": "s3://data-lake-x/a.csv", "offset": "ten"},
            "event.offset: expected an integer",
        ),
        ({"source": "s3://data-lake-x/a.csv", "date": "02/05/2022"}, "event.date: '02/05/2022'"),
        ({"Items": "tt1"}, "event.Items: expected a list"),
        (
            {"source": "s3://data-lake-x/a.csv", "skip_existing": "yes"},
            "event.skip_existing: expected true or false",
        ),
        ({"Items": [], "BatchInput": {"oops": 1}}, "event.BatchInput: unknown field 'oops'"),
        ({"Items": [], "BatchInput": {"max_concurrency": 0}}, "max_concurrency: 0 must be"),
    ],
)
async def test_bad_events_are_refused_naming_the_field(event: Any, message: str) -> None:
    env = {"TMDB_DEST": "s3://data-lake-x", "TMDB_ALLOWED_BUCKETS": "data-lake-x"}
    with pytest.raises(UsageError) as caught:
        await handle(event, Context(), env)
    assert message in str(caught.value)


async def test_a_direct_event_concurrency_past_its_ceiling_is_one_usage_error() -> None:
    event = {"source": "s3://data-lake-x/a.csv", "concurrency": 1_000_000}
    with pytest.raises(UsageError, match=r"^concurrency: 1000000 is outside 1\.\.100"):
        await handle(event, Context(), lambda_env("http://127.0.0.1:9"))


async def test_no_credentials_anywhere_is_refused() -> None:
    event = {"source": "s3://data-lake-x/a.csv", "dest": "s3://data-lake-x"}
    with pytest.raises(CredentialsError, match="TMDB_TOKEN_SSM_PARAMETER"):
        await handle(event, Context(), {})


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"global_rate": "inf"}, "event.BatchInput.global_rate: inf is not a finite number"),
        (json.loads('{"global_rate": 1e400}'), "event.BatchInput.global_rate: inf is not a"),
        ({"global_rate": float("nan")}, "event.BatchInput.global_rate: nan is not a"),
        ({"global_rate": "nan", "max_concurrency": 4}, "event.BatchInput.global_rate: nan"),
        ({"global_rate": 40000, "max_concurrency": 4}, "global_rate: 40000.0 is above 10000"),
        ({"rate": "inf"}, "rate: inf is not a finite number"),
        ({"rate": 1e400}, "rate: inf is not a finite number"),
        ({"rate": 5e-324}, "rate: 5e-324 is below 0.01 requests/s"),
        ({"global_rate": 1, "max_concurrency": 1000}, "global_rate: 1 requests/s over"),
        ({"concurrency": 1000000}, "concurrency: 1000000 is outside 1..100"),
    ],
)
async def test_rate_inf_or_nan_is_a_usage_error_not_a_hang(
    event: dict[str, Any], message: str
) -> None:
    batch = {"Items": [{"id": "tt1000001"}], "BatchInput": {"dest": "s3://data-lake-x", **event}}
    env = lambda_env("http://127.0.0.1:9")  # never called: refused before any I/O
    with pytest.raises(UsageError) as caught:
        await handle(batch, Context(), env)
    assert message in str(caught.value)


@pytest.mark.parametrize(("variable", "value"), [("TMDB_RATE", "inf"), ("TMDB_RATE", "nan")])
async def test_rate_inf_or_nan_from_the_environment_is_a_usage_error_not_a_hang(
    variable: str, value: str
) -> None:
    event = {"source": "s3://data-lake-x/a.csv"}
    env = lambda_env("http://127.0.0.1:9", **{variable: value})
    with pytest.raises(UsageError, match=f"rate: {value} is not a finite number"):
        await handle(event, Context(), env)


async def test_a_deadline_error_is_a_usage_exit_code_and_keeps_its_name() -> None:
    event = {"Items": [{"id": "tt1000001"}], "BatchInput": {"dest": "s3://data-lake-x"}}
    env = lambda_env("http://127.0.0.1:9", TMDB_SAFETY_MARGIN_SECONDS="30")
    with pytest.raises(DeadlineError) as caught:  # 20 s left, 30 s margin: refused at once
        await handle(event, Context(remaining_ms=20_000), env)
    assert type(caught.value).__name__ == "DeadlineError"
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("value", ["ten", "inf", "-1"])
async def test_a_bad_safety_margin_is_a_usage_error(value: str) -> None:
    event = {"Items": [{"id": "tt1000001"}], "BatchInput": {"dest": "s3://data-lake-x"}}
    env = lambda_env("http://127.0.0.1:9", TMDB_SAFETY_MARGIN_SECONDS=value)
    with pytest.raises(UsageError, match="TMDB_SAFETY_MARGIN_SECONDS"):
        await handle(event, Context(), env)


async def test_a_token_with_a_trailing_carriage_return_is_stripped_and_works(
    lake: str, fake_tmdb: FakeTmdb
) -> None:
    ids = title_ids(3, "movie")
    event = {"Items": [{"id": i} for i in ids], "BatchInput": {"dest": "s3://data-lake-x"}}
    env = lambda_env(fake_tmdb.url, TMDB_READ_ACCESS_TOKEN=f"{TOKEN}\r")
    result = await handle(event, Context(), env)
    assert result["status"] == "ok" and result["unique_ids"] == 3


@pytest.mark.parametrize("variable", ["TMDB_READ_ACCESS_TOKEN", "TMDB_API_KEY"])
async def test_a_token_with_control_characters_is_refused_without_echoing_it(
    variable: str,
) -> None:
    event = {"source": "s3://data-lake-x/a.csv"}
    env = {**lambda_env("http://127.0.0.1:9"), variable: "zq9-secret\x1bpart-7x"}
    with pytest.raises(CredentialsError) as caught:
        await handle(event, Context(), env)
    assert str(caught.value).startswith(f"{variable} contains a space, control")
    assert "zq9-secret" not in str(caught.value) and "part-7x" not in str(caught.value)


# --- handler.lambda_handler: what reaches Lambda ------------------------------------------


@pytest.fixture
def lambda_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The handler's environment; its exclusive log set-up is undone afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    monkeypatch.setenv("TMDB_READ_ACCESS_TOKEN", TOKEN)
    try:
        yield monkeypatch
    finally:
        for added in list(root.handlers):
            root.removeHandler(added)
        for kept in handlers:
            root.addHandler(kept)
        root.setLevel(level)


def test_an_unknown_log_level_is_a_usage_error(lambda_process: pytest.MonkeyPatch) -> None:
    lambda_process.setenv("TMDB_LOG_LEVEL", "verbose")
    with pytest.raises(UsageError, match="TMDB_LOG_LEVEL: 'verbose' is not one of DEBUG"):
        handler.lambda_handler({"hello": "world"}, Context())


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError(f"connect failed: Authorization: Bearer {TOKEN}\nsecond line"),
        CredentialsError(f"TMDB said no to {TOKEN}"),
    ],
)
def test_lambda_errors_are_redacted_and_chain_nothing(
    lambda_process: pytest.MonkeyPatch, error: Exception
) -> None:
    async def failing(event: Any, context: Any) -> dict[str, Any]:
        try:
            raise KeyError(TOKEN)  # an inner error the failure would otherwise chain
        except KeyError:
            raise error  # noqa: B904

    lambda_process.setattr(handler, "handle", failing)
    with pytest.raises(Exception) as caught:
        handler.lambda_handler({"source": "s3://data-lake-x/a.csv"}, Context())
    raised = caught.value
    assert type(raised).__name__ == type(error).__name__  # the Lambda error type
    assert isinstance(raised, CredentialsError) == isinstance(error, CredentialsError)
    assert raised.__cause__ is None and raised.__context__ is None
    printed = "".join(traceback.format_exception(raised))
    assert TOKEN not in printed and TOKEN not in str(raised)
    assert "***" in str(raised) and "\n" not in str(raised)


async def _ingested_lake(tmp_path: Path, s3: Any, lake: str, url: str, ids: list[str]) -> None:
    s3.upload_file(str(write_csv(tmp_path / "m.csv", ids)), lake, KEY)
    event = {"source": f"s3://{lake}/{KEY}", "date": "2026-11-10", "chunk_size": 20}
    assert (await handle(event, Context(), lambda_env(url)))["status"] == "ok"


async def test_a_scheduled_refresh_event_refreshes_into_the_scheduled_date(
    tmp_path: Path, s3: Any, lake: str
) -> None:
    """EventBridge Scheduler passes ``<aws.scheduler.scheduled-time>`` as the date: its UTC
    date is the processing date, so every retry of one scheduled invocation writes into the
    same folder."""
    ids = title_ids(120, "movie", start=1) + title_ids(60, "tv", start=1)
    cfg = FakeTmdbConfig(token=TOKEN, change_period=7, change_universe=5_000)
    async with FakeTmdb(cfg) as fake:
        await _ingested_lake(tmp_path, s3, lake, fake.url, ids)
        event = {"action": "refresh", "dest": f"s3://{lake}", "date": "2026-11-13T04:00:00Z"}
        result = await handle(event, Context(), lambda_env(fake.url))
    window = (dt.date(2026, 11, 10), dt.date(2026, 11, 12))
    changed = {k: set(changed_ids(k, *window, cfg)) for k in ("movie", "tv")}
    want = {i for i in ids if (k := kind_of_number(int(i[2:]))) and int(i[2:]) in changed[k]}
    assert want and result["status"] == "ok" and result["date"] == "2026-11-13"
    assert result["window"] == {"start": "2026-11-10", "end": "2026-11-12"}
    view = read_s3(s3, lake, "Raw/TMDB/JSON/2026/11/13")
    assert set(view.records) == want and not view.duplicates()
    assert result["records"] == len(want) and result["exit_code"] == 0


async def test_a_refresh_stopped_at_the_deadline_raises_and_the_same_event_continues_it(
    tmp_path: Path, s3: Any, lake: str
) -> None:
    """Lambda retries an asynchronous invocation that raised with the same event: the second
    run continues in the same folder, each changed title once."""
    ids = title_ids(400, "movie", start=1)
    cfg = FakeTmdbConfig(token=TOKEN, change_period=3, change_universe=5_000)
    async with FakeTmdb(cfg) as fake:
        await _ingested_lake(tmp_path, s3, lake, fake.url, ids)
        env = lambda_env(fake.url, TMDB_SAFETY_MARGIN_SECONDS="30")
        event = {
            "action": "refresh",
            "dest": f"s3://{lake}",
            "date": "2026-11-12",
            "chunk_size": 20,
        }
        fake.reset_stats()

        def remaining_ms() -> int:
            return 900_000 if fake.stats().total_requests < 60 else 20_000

        with pytest.raises(RefreshIncomplete, match="the same event again continues it"):
            await handle(event, Context(remaining_ms), env)
        committed = set(read_s3(s3, lake, "Raw/TMDB/JSON/2026/11/12").records)
        fake.reset_stats()
        result = await handle(event, Context(), env)
        asked = titles_asked(fake.stats().path_counts)
    window = (dt.date(2026, 11, 10), dt.date(2026, 11, 11))
    changed = set(changed_ids("movie", *window, cfg))
    want = {i for i in ids if kind_of_number(int(i[2:])) and int(i[2:]) in changed}
    view = read_s3(s3, lake, "Raw/TMDB/JSON/2026/11/12")
    assert set(view.records) == want and not view.duplicates()
    assert 0 < len(committed) < len(want)  # the first invocation did part of it
    assert set(asked) == want - committed  # the second fetched only the rest, once each
    assert all(hits == 1 for hits in asked.values())
    assert result["status"] == "ok" and result["kept"] == len(committed)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"action": "refresh", "dest": "s3://data-lake-x", "kind": "tv"}, "unknown field 'kind'"),
        ({"action": "refresh", "dest": "s3://data-lake-x", "date": "yesterday"}, "event.date"),
        ({"action": "refresh", "dest": "s3://data-lake-x", "since": 3}, "event.since"),
        ({"action": "refresh", "dest": "/tmp/lake"}, "is not an s3:// URL"),
    ],
)
async def test_bad_refresh_events_are_refused_naming_the_field(event: Any, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        await handle(event, Context(), lambda_env("http://127.0.0.1:9"))


# --- the fleet: the batch plan and one execution at a time (issue 12) -----------------------


@given(
    ids=st.integers(1, 20_000),
    max_items=st.integers(1, 5_000),
    max_concurrency=st.integers(1, 1_000),
    global_rate=st.floats(10, 1_000),  # at least MIN_RATE for each of 1,000 children
)
def test_the_batch_plan_keeps_the_whole_rate_busy_and_never_above_it(
    ids: int, max_items: int, max_concurrency: int, global_rate: float
) -> None:
    plan = plan_batches(ids, max_items, max_concurrency)
    # ItemBatcher: consecutive slices of items_per_batch; every id is in exactly one batch.
    slices = [
        range(n, min(n + plan.items_per_batch, ids)) for n in range(0, ids, plan.items_per_batch)
    ]
    assert len(slices) == plan.batches
    assert [i for s in slices for i in s] == list(range(ids))
    assert all(1 <= len(s) <= plan.items_per_batch <= max_items for s in slices)
    # All the children the Map may run work, unless there are fewer batches; then each
    # batch runs at once with its 1/children share.
    assert plan.children == min(max_concurrency, plan.batches)
    assert plan.batches >= min(ids, max_concurrency) or plan.children == plan.batches
    # What each child gets (fleet_share) times the children: the global rate, never above.
    share = fleet_share({"global_rate": global_rate, "max_concurrency": plan.children})
    assert plan.children * share["rate"] <= global_rate * (1 + 1e-12)
    # Full rounds: what stays idle is the shorter last slice's share once it is done, less
    # than one batch and less than one id per child per round.
    rounds = -(-plan.batches // plan.children)
    idle = rounds * plan.children * plan.items_per_batch - ids
    assert 0 <= idle < max(plan.items_per_batch, rounds * plan.children)


@pytest.mark.parametrize(
    ("ids", "max_items", "max_concurrency", "expected"),
    [
        (241, 500, 4, (61, 4, 4)),  # the file: 4 batches at 40/4, not 1 at 40/4
        (241, 500, 8, (31, 8, 8)),
        (600, 500, 8, (75, 8, 8)),
        (5_000, 500, 8, (313, 16, 8)),  # 2 full rounds, not 10 batches on 8 children
        (300_000, 500, 4, (500, 600, 4)),  # a full movies.csv: as before
        (9, 500, 4, (3, 3, 3)),  # 3 children at a third each: the whole rate
        (3, 500, 4, (1, 3, 3)),
        (0, 500, 4, (500, 0, 0)),
    ],
)
def test_batch_plans(
    ids: int, max_items: int, max_concurrency: int, expected: tuple[int, int, int]
) -> None:
    plan = plan_batches(ids, max_items, max_concurrency)
    assert (plan.items_per_batch, plan.batches, plan.children) == expected


async def test_prepare_returns_the_ids_file_and_the_batch_plan(
    tmp_path: Path, s3: Any, lake: str
) -> None:
    ids = title_ids(241, "movie")
    s3.upload_file(str(write_csv(tmp_path / "movies.csv", ids, max_artists=3)), lake, KEY)
    event = {
        "action": "prepare",
        "source": f"s3://{lake}/{KEY}",
        "dest": f"s3://{lake}",
        "max_items_per_batch": 500,
        "max_concurrency": 4,
    }
    result = await handle(event, Context(), lambda_env("http://127.0.0.1:9"))
    assert result["unique_ids"] == 241
    assert (result["items_per_batch"], result["batches"], result["children"]) == (61, 4, 4)
    body = s3.get_object(Bucket=lake, Key=result["ids_key"])["Body"].read().decode()
    assert body.splitlines() == ["id", *ids]
    json.dumps(result)


async def test_prepare_writes_the_ids_sorted_so_each_batch_is_a_run_of_numbers(
    tmp_path: Path, s3: Any, lake: str
) -> None:
    ids = title_ids(60, "movie")
    shuffled = [*ids[1::2], "tt12x", *ids[::2]]
    s3.upload_file(str(write_csv(tmp_path / "movies.csv", shuffled)), lake, KEY)
    event = {"action": "prepare", "source": f"s3://{lake}/{KEY}", "dest": f"s3://{lake}"}
    result = await handle(event, Context(), lambda_env("http://127.0.0.1:9"))
    body = s3.get_object(Bucket=lake, Key=result["ids_key"])["Body"].read().decode()
    assert body.splitlines() == ["id", *sorted(ids, key=lambda i: int(i[2:])), "tt12x"]


async def test_prepare_refuses_a_file_that_would_mix_formats_in_the_date_folder(
    tmp_path: Path, s3: Any, lake: str, fake_tmdb: FakeTmdb
) -> None:
    """Each child reads only the ledger pages of its ids, so the folder-wide guard runs once,
    in prepare, before anything is written: the same line as a CLI run's."""
    ids = title_ids(30, "movie")
    s3.upload_file(str(write_csv(tmp_path / "m.csv", ids[:10])), lake, KEY)
    event = {"source": f"s3://{lake}/{KEY}", "date": "2022-05-02"}
    assert (await handle(event, Context(), lambda_env(fake_tmdb.url)))["status"] == "ok"
    s3.upload_file(str(write_csv(tmp_path / "more.csv", ids[10:])), lake, "Raw/Local/more.csv")
    prepare = {
        "action": "prepare",
        "source": f"s3://{lake}/Raw/Local/more.csv",
        "dest": f"s3://{lake}",
        "kind": "movie",
        "date": "2022-05-02",
    }
    with pytest.raises(UsageError, match=r"2022-05-02 holds 1 json file and this run writes jsonl"):
        await handle(prepare, Context(), lambda_env(fake_tmdb.url, TMDB_FORMAT="jsonl"))
    listed = s3.list_objects_v2(Bucket=lake, Prefix="Raw/TMDB/_work/").get("KeyCount", 0)
    assert listed == 0  # refused before the ids file was written
    result = await handle(prepare, Context(), lambda_env(fake_tmdb.url))  # the folder's format
    assert result["unique_ids"] == 20


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"max_items_per_batch": 0}, "event.max_items_per_batch: 0 must be at least 1"),
        ({"max_concurrency": "4"}, "event.max_concurrency: expected an integer"),
        ({"max_concurrency": True}, "event.max_concurrency: expected an integer"),
        ({"execution": "arn:x"}, "event.state_machine: missing"),
        (
            {
                "state_machine": "arn:aws:lambda:us-east-1:1:function:f",
                "execution": "e",
                "execution_started": "2022-05-02T00:00:00Z",
            },
            "is not a state machine ARN",
        ),
        ({"limit": 5}, "unknown field 'limit'"),
    ],
)
async def test_bad_prepare_events_are_refused_naming_the_field(
    extra: dict[str, Any], message: str
) -> None:
    event = {"action": "prepare", "source": f"s3://data-lake-x/{KEY}", "dest": "s3://data-lake-x"}
    with pytest.raises(UsageError, match=message):
        await handle({**event, **extra}, Context(), lambda_env("http://127.0.0.1:9"))


def _listed(arn: str, start: str) -> dict[str, Any]:
    return {"executionArn": arn, "startDate": dt.datetime.fromisoformat(start)}


SM = "arn:aws:states:us-east-1:123456789012:stateMachine:tmdb-ingest"
EX = "arn:aws:states:us-east-1:123456789012:execution:tmdb-ingest:"


def test_an_earlier_running_execution_goes_first_and_ties_go_to_the_smaller_arn() -> None:
    me = ExecutionRef(SM, EX + "b", "2022-05-02T10:00:00.500Z")
    mine = _listed(EX + "b", "2022-05-02T10:00:00.500912+00:00")
    earlier = _listed(EX + "z", "2022-05-02T10:00:00.499+00:00")
    later = _listed(EX + "a", "2022-05-02T10:00:00.501+00:00")
    same_ms_smaller = _listed(EX + "a", "2022-05-02T10:00:00.500001+00:00")
    same_ms_larger = _listed(EX + "c", "2022-05-02T10:00:00.500+00:00")
    assert earlier_executions(me, [mine, earlier, later]) == [earlier]
    assert earlier_executions(me, [mine, later, same_ms_larger]) == []
    assert earlier_executions(me, [mine, same_ms_smaller]) == [same_ms_smaller]
    # Not listed yet: its own start time from the context object decides.
    assert earlier_executions(me, [later, earlier]) == [earlier]
    # A redrive of an old execution is a newcomer: it began when it was redriven.
    redriven = {**earlier, "redriveDate": dt.datetime.fromisoformat("2022-05-02T10:00:01+00:00")}
    assert earlier_executions(me, [mine, redriven]) == []
    assert earlier_executions(ExecutionRef(SM, EX + "z"), [redriven, mine]) == [mine]
    # Of two started at the same moment exactly one goes on.
    other = ExecutionRef(SM, EX + "c", "2022-05-02T10:00:00.500Z")
    both = [mine, same_ms_larger]
    assert [bool(earlier_executions(m, both)) for m in (me, other)] == [False, True]


async def test_prepare_refuses_while_an_earlier_execution_runs(
    tmp_path: Path, s3: Any, lake: str
) -> None:
    """On moto's Step Functions (its plain backend, whose executions stay RUNNING): the
    second execution's prepare fails with ExecutionAlreadyRunning and writes nothing; the
    first goes on, and so does the second once the first has stopped."""
    import boto3

    s3.upload_file(str(write_csv(tmp_path / "movies.csv", title_ids(5, "movie"))), lake, KEY)
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    definition = {"StartAt": "S", "States": {"S": {"Type": "Succeed"}}}
    machine = sfn.create_state_machine(
        name="tmdb-ingest",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/sfn",
    )["stateMachineArn"]
    first = sfn.start_execution(stateMachineArn=machine, name="first")
    second = sfn.start_execution(stateMachineArn=machine, name="second")

    def event(started: dict[str, Any]) -> dict[str, Any]:
        return {
            "action": "prepare",
            "source": f"s3://{lake}/{KEY}",
            "dest": f"s3://{lake}",
            "state_machine": machine,
            "execution": started["executionArn"],
            "execution_started": started["startDate"].isoformat(),
        }

    env = lambda_env("http://127.0.0.1:9")
    with pytest.raises(ExecutionAlreadyRunning, match="first") as refused:
        await handle(event(second), Context(), env)
    assert refused.value.exit_code == 2
    assert s3.list_objects_v2(Bucket=lake, Prefix="Raw/TMDB/")["KeyCount"] == 0
    assert (await handle(event(first), Context(), env))["unique_ids"] == 5
    sfn.stop_execution(executionArn=first["executionArn"])
    assert (await handle(event(second), Context(), env))["unique_ids"] == 5


async def test_a_status_event_returns_what_the_lake_holds_as_status_json_does(
    tmp_path: Path, s3: Any, lake: str, fake_tmdb: FakeTmdb
) -> None:
    from tmdb_async.jobs.status import lake_status
    from tmdb_async.lake.storage import open_store

    ids = title_ids(45, "movie")
    await _ingested_lake(tmp_path, s3, lake, fake_tmdb.url, ids)
    event = {"action": "status", "dest": f"s3://{lake}", "date": "2026-11-10", "failed": True}
    result = await handle(event, Context(), lambda_env(fake_tmdb.url))
    async with open_store(f"s3://{lake}") as store:
        direct = (await lake_status(store, failed=True)).as_dict()
    assert json.loads(json.dumps(result))["folders"] == direct["folders"]
    (shown,) = result["folders"]
    view = read_s3(s3, lake, "Raw/TMDB/JSON/2026/11/10")
    assert shown["ids"]["total"] == len(view.all_ids()) == len(ids)
    assert shown["ids"]["record"] == len(view.records) and shown["failed"] == []


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"action": "status", "dest": "s3://data-lake-x", "source": "x"}, "unknown field .source."),
        ({"action": "status", "dest": "s3://other-bucket"}, "not allowed"),
        ({"action": "status", "dest": "s3://data-lake-x", "failed": "yes"}, "event.failed"),
        ({"action": "status", "dest": "s3://data-lake-x", "date": "2026-13-01"}, "event.date"),
    ],
)
async def test_a_bad_status_event_is_refused_naming_the_key(
    event: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        await handle(event, Context(), lambda_env("http://127.0.0.1:9"))


async def test_an_event_of_other_record_settings_is_refused_unless_it_says_replace(
    tmp_path: Path, s3: Any, lake: str, fake_tmdb: FakeTmdb
) -> None:
    """The guard of the command line, in a direct event and a Distributed Map batch: the
    ``replace`` key is what ``--replace`` is."""
    ids = title_ids(20, "movie")
    s3.upload_file(str(write_csv(tmp_path / "m.csv", ids)), lake, KEY)
    event: dict[str, Any] = {"source": f"s3://{lake}/{KEY}", "date": "2022-05-02", "kind": "movie"}
    env = lambda_env(fake_tmdb.url)
    assert (await handle(event, Context(), env))["status"] == "ok"
    fake_tmdb.reset_stats()
    with pytest.raises(
        UsageError, match=r"other record settings \(--kind movie, this run auto\).*--replace"
    ):
        await handle({**event, "kind": "auto"}, Context(), env)
    batch = {
        "Items": [{"id": i} for i in ids],
        "BatchInput": {"dest": "s3://data-lake-x", "date": "2022-05-02", "kind": "auto"},
    }
    with pytest.raises(UsageError, match=r"--replace"):
        await handle(batch, Context(), env)
    assert fake_tmdb.stats().total_requests == 0
    result = await handle({**event, "kind": "auto", "replace": True}, Context(), env)
    assert result["status"] == "ok" and result["replaced"] == 20
