"""Lambda events: the three event shapes run the engine on S3 (moto) and the fake TMDB;
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

import handler
from tests.conftest import TOKEN
from tests.support.asked import titles_asked
from tests.support.lake import read_s3
from tmdb_async.errors import CredentialsError, DeadlineError, RefreshIncomplete, UsageError
from tmdb_async.events import handle
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
