"""The real state machine definition, executed by moto's Step Functions interpreter.

``statemachine/ingest.asl.json`` as ``template.yaml`` renders it runs on the tests' moto server
with its interpreter turned on; the Lambda tasks run ``handler.lambda_handler`` under
awslambdaric against a loopback Runtime API, S3 and SSM are moto's, TMDB is the project's fake.
What moto 5.2.5's interpreter lacks is emulated in ``tests/support/sfn.py`` (see its docstring).
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import TOKEN
from tests.support.lake import read_s3
from tests.support.sfn import (
    _EXTRAS,
    BUCKET,
    Harness,
    LoopThread,
    create_state_machine,
    interpreter_on,
    moto_sfn_patched,
    state_machine,
)
from tmdb_devtools.csvgen import title_ids
from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig

# The tests that run the template's definition are slow (awslambdaric processes start and the
# handler works for real); the ones of the emulated gaps alone take well under a second.
slow = pytest.mark.slow

SOURCE_KEY = "Raw/Local/CSV/Movies/2022/05/02/movies.csv"
DATE = "2022-05-02"
OUT_PREFIX = "Raw/TMDB/JSON/2022/05/02/"


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    try:
        yield loop
    finally:
        loop.close()


@contextlib.contextmanager
def fake_on(loop_thread: LoopThread, **config: Any) -> Iterator[FakeTmdb]:
    """The fake TMDB on the loop thread (moto's threads call the handler, which calls it)."""

    async def start() -> FakeTmdb:
        fake = FakeTmdb(FakeTmdbConfig(token=TOKEN, latency=0.005, **config))
        await fake.__aenter__()
        return fake

    fake = loop_thread.run(start())
    try:
        yield fake
    finally:
        loop_thread.run(fake.__aexit__(None, None, None))


@pytest.fixture
def fake_tmdb_url(loop_thread: LoopThread) -> Iterator[str]:
    with fake_on(loop_thread) as fake:
        yield fake.url


def _raw_csv(ids: list[str]) -> bytes:
    """The data lake's raw CSV: '|'-separated, one row per artist, so ids repeat."""
    rows = ["id|tituloPincipal|nomeArtista"]
    rows += [f"{i}|Filme {n}|Artista {a}" for n, i in enumerate(ids) for a in range(1 + n % 3)]
    return "\n".join(rows).encode() + b"\n"


def _ingest_events(harness: Harness) -> list[Any]:
    return [i for i in harness.lam.invocations if "Items" in (i.event or {})]


@slow
def test_the_definition_ingests_every_id_exactly_once(
    s3_env: str, s3: Any, loop_thread: LoopThread, fake_tmdb_url: str, tmp_path: Path
) -> None:
    ids = title_ids(30, "movie", start=4_000_000)
    with state_machine(
        s3_env,
        fake_tmdb_url,
        loop_thread,
        tmp_path / "logs",
        TOKEN,
        MaxItemsPerBatch="8",
        MapMaxConcurrency="4",
        TmdbGlobalRate="400",
    ) as harness:
        s3.put_object(Bucket=BUCKET, Key=SOURCE_KEY, Body=_raw_csv(ids))
        result = harness.run({"source_key": SOURCE_KEY, "kind": "movie", "date": DATE})
        output = harness.lam.output()

    assert result.status == "SUCCEEDED", (result.error, result.cause, output[-3000:])
    assert result.output["prepared"]["unique_ids"] == len(ids)
    # ItemBatcher (emulated): 30 ids in batches of 8 -> 4 children, each with the BatchInput.
    batches = _ingest_events(harness)
    assert sorted(len(b.event["Items"]) for b in batches) == [6, 8, 8, 8]
    assert all(
        b.event["BatchInput"]
        == {
            "dest": f"s3://{BUCKET}",
            "kind": "movie",
            "date": DATE,
            "global_rate": 400,
            "max_concurrency": 4,
        }
        for b in batches
    )
    view = read_s3(s3, BUCKET, OUT_PREFIX)
    assert not view.stray, view.stray
    assert view.id_counts() == Counter(ids)
    assert TOKEN not in output


@slow
def test_without_a_date_the_execution_start_date_is_used(
    s3_env: str, s3: Any, loop_thread: LoopThread, fake_tmdb_url: str, tmp_path: Path
) -> None:
    """UseExecutionDate splits $$.Execution.StartTime (an ISO 8601 string on AWS; moto's
    datetime is turned into one by the harness) at the 'T'."""
    ids = title_ids(5, "movie", start=5_000_000)
    with state_machine(
        s3_env, fake_tmdb_url, loop_thread, tmp_path / "logs", TOKEN, TmdbGlobalRate="400"
    ) as harness:
        s3.put_object(Bucket=BUCKET, Key=SOURCE_KEY, Body=_raw_csv(ids))
        result = harness.run({"source_key": SOURCE_KEY, "kind": "movie"})
        output = harness.lam.output()

    assert result.status == "SUCCEEDED", (result.error, result.cause, output[-3000:])
    day = result.started.astimezone(datetime.UTC).date()
    assert result.output["date"] == day.isoformat()
    view = read_s3(s3, BUCKET, f"Raw/TMDB/JSON/{day:%Y/%m/%d}/")
    assert view.all_ids() == set(ids) and not view.duplicates()


@slow
def test_a_batch_cut_by_the_deadline_continues_until_done(
    s3_env: str, s3: Any, loop_thread: LoopThread, fake_tmdb_url: str, tmp_path: Path
) -> None:
    """The child workflow's Ingest -> MoreToDo -> ContinueBatch loop: a function with a 6 s
    timeout stops before it and returns remaining_items, which the next Ingest gets. (150 ids
    at 15 requests/s need 10 s: at least two invocations, however fast the machine; the 4 s
    each has for ids leave room for a loaded one to finish a chunk of 5.)"""
    ids = title_ids(150, "movie", start=6_000_000)
    with state_machine(
        s3_env,
        fake_tmdb_url,
        loop_thread,
        tmp_path / "logs",
        TOKEN,
        function_timeout=6,
        runtime_env={"TMDB_SAFETY_MARGIN_SECONDS": "2", "TMDB_CHUNK_SIZE": "5"},
        MaxItemsPerBatch="200",
        MapMaxConcurrency="1",
        TmdbGlobalRate="15",
    ) as harness:
        s3.put_object(Bucket=BUCKET, Key=SOURCE_KEY, Body=_raw_csv(ids))
        result = harness.run({"source_key": SOURCE_KEY, "kind": "movie", "date": DATE})
        output = harness.lam.output()

    assert result.status == "SUCCEEDED", (result.error, result.cause, output[-3000:])
    calls = _ingest_events(harness)
    assert len(calls) >= 2, [c.payload.get("status") for c in calls]
    assert [c.payload["status"] for c in calls] == ["incomplete"] * (len(calls) - 1) + ["ok"]
    for before, after in itertools.pairwise(calls):
        assert after.event == {
            "Items": before.payload["remaining_items"],
            "BatchInput": before.payload["batch_input"],
        }
        assert after.started >= before.ended  # one after the other, never two at once
    assert [i["id"] for i in calls[0].event["Items"]] == ids
    view = read_s3(s3, BUCKET, OUT_PREFIX)
    assert view.id_counts() == Counter(ids)


@slow
def test_a_map_whose_batches_fail_on_a_401_fails_the_execution(
    s3_env: str, s3: Any, loop_thread: LoopThread, fake_tmdb_url: str, tmp_path: Path
) -> None:
    """TMDB refuses the token in SSM: every batch raises CredentialsError, and with
    ToleratedFailurePercentage 0 (the template's default) the Map Run fails with
    States.ExceedToleratedFailureThreshold (moto would let it succeed: emulated)."""
    ids = title_ids(10, "movie", start=7_000_000)
    with state_machine(
        s3_env, fake_tmdb_url, loop_thread, tmp_path / "logs", "not-the-token", MaxItemsPerBatch="4"
    ) as harness:
        s3.put_object(Bucket=BUCKET, Key=SOURCE_KEY, Body=_raw_csv(ids))
        result = harness.run({"source_key": SOURCE_KEY, "kind": "movie", "date": DATE})
        output = harness.lam.output()

    assert result.status == "FAILED"
    assert result.error == "States.ExceedToleratedFailureThreshold", (result.error, result.cause)
    types = [e["type"] for e in result.history]
    assert "MapRunFailed" in types and types[-1] == "ExecutionFailed"
    calls = _ingest_events(harness)
    assert len(calls) == 4  # 10 ids for 4 children: batches of 3; no retry of a function error
    assert all(c.kind == "error" and c.payload["errorType"] == "CredentialsError" for c in calls)
    assert "not-the-token" not in output
    assert read_s3(s3, BUCKET, OUT_PREFIX).all_ids() == set()


def _no_lambda(function: Any, event: Any) -> tuple[str, bool, str]:
    raise AssertionError("no Lambda function in this definition")


def _run_small(endpoint: str, definition: dict[str, Any], execution_input: Any) -> Any:
    """``definition`` on moto's interpreter with the gap emulations, run to its end."""
    sfn = boto3.client("stepfunctions", endpoint_url=endpoint, region_name="us-east-1")
    role = "arn:aws:iam::123456789012:role/sfn-test"
    with interpreter_on(endpoint), moto_sfn_patched(_no_lambda):
        arn = create_state_machine(sfn, "gaps", definition, role)
        try:
            harness = Harness(endpoint, None, definition, arn, sfn)  # type: ignore[arg-type]
            return harness.run(execution_input, timeout=30)
        finally:
            _EXTRAS.pop(arn, None)


def _pipe_map(batcher: dict[str, Any], child: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "ItemReader": {
                    "Resource": "arn:aws:states:::s3:getObject",
                    "ReaderConfig": {
                        "InputType": "CSV",
                        "CSVHeaderLocation": "FIRST_ROW",
                        "CSVDelimiter": "PIPE",
                    },
                    "Parameters": {"Bucket": BUCKET, "Key": "in.csv"},
                },
                "ItemBatcher": batcher,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "Child",
                    "States": {"Child": child},
                },
                "End": True,
                **fields,
            }
        },
    }


def test_emulated_csv_delimiter_and_item_batcher(s3_env: str, s3: Any) -> None:
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="in.csv", Body=b"id|name\n1|a,b\n2|c\n3|d\n")
    batcher = {"MaxItemsPerBatchPath": "$.size", "BatchInput": {"tag.$": "$.tag", "n": 1}}
    definition = _pipe_map(batcher, {"Type": "Pass", "End": True})
    result = _run_small(s3_env, definition, {"size": 2, "tag": "t"})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert result.output == [
        {
            "Items": [{"id": "1", "name": "a,b"}, {"id": "2", "name": "c"}],
            "BatchInput": {"tag": "t", "n": 1},
        },
        {"Items": [{"id": "3", "name": "d"}], "BatchInput": {"tag": "t", "n": 1}},
    ]


# moto's grammar takes a literal ToleratedFailurePercentage only as a JSON number with a
# fraction (its NUMBER token): 20 is refused, 20.0 parses.
@pytest.mark.parametrize(
    ("tolerated", "status"),
    [
        ({}, "FAILED"),
        ({"ToleratedFailureCount": 0}, "FAILED"),
        ({"ToleratedFailureCount": 1}, "SUCCEEDED"),
        ({"ToleratedFailurePercentage": 20.0}, "SUCCEEDED"),
        ({"ToleratedFailurePercentage": 19.5}, "FAILED"),
        ({"ToleratedFailureCount": 5, "ToleratedFailurePercentage": 19.5}, "FAILED"),
    ],
)
def test_emulated_tolerated_failure_threshold(
    s3_env: str, s3: Any, tolerated: dict[str, Any], status: str
) -> None:
    """5 items in batches of 2; the last batch, of 1 item, fails: 1 failed item of 5."""
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="in.csv", Body=b"id|name\n1|a\n2|b\n3|c\n4|d\n5|e\n")
    # (A Choice on "$.Items[0].id" would not do: moto's JSONPath gives ["5"] for it.)
    child = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.Items[1]", "IsPresent": False, "Next": "Boom"}],
        "Default": "Fine",
    }
    definition = _pipe_map({"MaxItemsPerBatch": 2}, child, **tolerated)
    states = definition["States"]["M"]["ItemProcessor"]["States"]
    states["Boom"] = {"Type": "Fail", "Error": "Boom"}
    states["Fine"] = {"Type": "Succeed"}
    result = _run_small(s3_env, definition, {})
    assert result.status == status, (result.error, result.cause, result.output)
    if status == "FAILED":
        assert result.error == "States.ExceedToleratedFailureThreshold"
        assert result.cause.startswith("1 of 5 items failed")


def _manifest_settings(s3: Any, payload: dict[str, Any]) -> dict[str, Any]:
    key = payload["manifest"].split(f"{BUCKET}/", 1)[1]
    body = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    settings: dict[str, Any] = body["settings"]
    return settings


@slow
def test_a_small_file_runs_on_every_child_at_the_whole_rate(
    s3_env: str, s3: Any, loop_thread: LoopThread, tmp_path: Path
) -> None:
    """Issue 12: with MaxItemsPerBatch 500 and MapMaxConcurrency 4 (the defaults), a 241-id
    file used to run as one batch at 100 / 4 requests/s. The prepare step's plan makes it 4
    batches, run at once, each at 100 / 4: the fleet at the whole rate, never above (the
    fake enforces the global rate over any one second, as TMDB's CDN does)."""
    rate = 100
    ids = title_ids(241, "movie", start=8_000_000)
    with (
        fake_on(loop_thread, rate_limit=float(rate)) as fake,
        state_machine(
            s3_env, fake.url, loop_thread, tmp_path / "logs", TOKEN, TmdbGlobalRate=str(rate)
        ) as harness,
    ):
        s3.put_object(Bucket=BUCKET, Key=SOURCE_KEY, Body=_raw_csv(ids))
        result = harness.run({"source_key": SOURCE_KEY, "kind": "movie", "date": DATE})
        output = harness.lam.output()
        seen = fake.stats()

    assert result.status == "SUCCEEDED", (result.error, result.cause, output[-3000:])
    assert seen.throttled == 0, seen
    prepared = result.output["prepared"]
    assert prepared["unique_ids"] == 241
    assert (prepared["items_per_batch"], prepared["batches"], prepared["children"]) == (61, 4, 4)
    batches = _ingest_events(harness)
    assert sorted(len(b.event["Items"]) for b in batches) == [58, 61, 61, 61]
    assert all(b.event["BatchInput"]["max_concurrency"] == 4 for b in batches)
    assert all(_manifest_settings(s3, b.payload)["rate"] == rate / 4 for b in batches)
    # The 4 ran at once: each started before any other ended.
    assert max(b.started for b in batches) < min(b.ended for b in batches)
    requests = sum(b.payload["requests"] for b in batches)
    span = max(b.ended for b in batches) - min(b.started for b in batches)
    print(f"241 ids: {requests} requests in {span:.2f} s = {requests / span:.1f}/s (rate {rate})")
    assert requests / span <= rate * 1.05
    view = read_s3(s3, BUCKET, OUT_PREFIX)
    assert view.id_counts() == Counter(ids)


@slow
def test_a_second_execution_fails_at_once_and_writes_nothing(
    s3_env: str, s3: Any, loop_thread: LoopThread, fake_tmdb_url: str, tmp_path: Path
) -> None:
    """One execution at a time: "first" and "second" start back to back, "third" once the
    first's Map runs. The first goes on and ingests each id once; the others fail with
    ExecutionAlreadyRunning from their prepare step (not retried) and write nothing."""
    ids = title_ids(60, "movie", start=9_000_000)
    other_key = "Raw/Local/CSV/Movies/2022/05/03/movies.csv"
    with state_machine(
        s3_env,
        fake_tmdb_url,
        loop_thread,
        tmp_path / "logs",
        TOKEN,
        processes=3,  # the first's two children, and a prepare step
        MapMaxConcurrency="2",
        TmdbGlobalRate="30",
    ) as harness:
        s3.put_object(Bucket=BUCKET, Key=SOURCE_KEY, Body=_raw_csv(ids))
        s3.put_object(Bucket=BUCKET, Key=other_key, Body=_raw_csv(title_ids(5, "movie")))
        first = harness.start({"source_key": SOURCE_KEY, "kind": "movie", "date": DATE}, "first")
        others = {"source_key": other_key, "kind": "movie", "date": "2022-05-03"}
        second = harness.start(others, "second")
        began = time.monotonic()
        while not any(
            (i.event or {}).get("execution") == first and i.kind == "response"
            for i in list(harness.lam.invocations)
        ):
            assert time.monotonic() - began < 60, harness.lam.output()[-3000:]
            time.sleep(0.02)
        third = harness.start(others, "third")
        results = {arn: harness.wait(arn) for arn in (first, second, third)}
        output = harness.lam.output()

    done = results[first]
    assert done.status == "SUCCEEDED", (done.error, done.cause, output[-3000:])
    for arn in (second, third):
        refused = results[arn]
        assert (refused.status, refused.error) == ("FAILED", "ExecutionAlreadyRunning")
        assert first in refused.cause
        assert refused.seconds < 10
        assert not any(e["type"].startswith("Map") for e in refused.history)
        calls = [i for i in harness.lam.invocations if (i.event or {}).get("execution") == arn]
        assert [c.payload["errorType"] for c in calls] == ["ExecutionAlreadyRunning"]  # no retry
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="Raw/TMDB/").get("Contents", [])
    keys = [o["Key"] for o in listed]
    assert not [k for k in keys if "2022/05/03" in k]
    assert len([k for k in keys if k.startswith("Raw/TMDB/_work/")]) == 1  # the first's ids
    view = read_s3(s3, BUCKET, OUT_PREFIX)
    assert view.id_counts() == Counter(ids)
