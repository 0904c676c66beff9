"""The state machine's behaviour, on moto's Step Functions interpreter, with a scripted function.

``statemachine/ingest.asl.json``, read from disk and rendered as ``template.yaml`` renders it
(:func:`tests.support.sfn.render_definition`), runs on the tests' moto server with its
interpreter on and the gaps of moto 5.2.5 emulated (:func:`tests.support.sfn.moto_sfn_patched`,
see that module's docstring). The function exists on moto's Lambda, and the Lambda tasks go
through moto's real Invoke path; only its last call (``LambdaFunction._invoke_lambda``) is a
small Python stand-in that answers with scripted payloads, function errors or Lambda service
errors. So each test takes a fraction of a second and runs no awslambdaric process; the
end-to-end runs with the real handler are in ``tests/test_state_machine.py``.

What is checked is what the definition does with the function's answers: the input check and
the date, prepare first and its event, the Map reading the prepared file in the prepared
batches with their BatchInput and concurrency, the continuation loop on ``remaining_items``,
the retries of Lambda's service errors, and how function errors fail the execution.

The retry waits (IntervalSeconds, BackoffRate, JitterStrategy) are recorded instead of slept.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from math import ceil
from types import SimpleNamespace
from typing import Any, cast
from unittest import mock

import pytest
from moto.core.exceptions import JsonRESTError

from tests.support.sfn import (
    _EXTRAS,
    BUCKET,
    FUNCTION_ARN,
    FUNCTION_NAME,
    ExecutionResult,
    Harness,
    aws_client,
    create_state_machine,
    interpreter_on,
    load_template,
    moto_sfn_patched,
    provision,
    render_definition,
    template_parameters,
)

SOURCE_KEY = "Raw/Local/CSV/Movies/2022/05/02/movies.csv"
IDS_KEY = "Raw/TMDB/_work/prepared-ids-0123456789ab.csv"  # where the scripted prepare "wrote"
DATE = "2022-05-02"
INPUT = {"source_key": SOURCE_KEY, "kind": "movie", "date": DATE}


# --- the scripted function ------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionError:
    """The handler raised: Lambda answers 200 with X-Amz-Function-Error and this payload."""

    error_type: str
    message: str = "scripted"


class LambdaServiceError(JsonRESTError):
    """Lambda's Invoke API itself fails (throttled, service fault): boto3 raises ClientError,
    which moto's interpreter names ``Lambda.<code>``."""

    def __init__(self, code: str, status: int) -> None:
        super().__init__(code, f"scripted {code}")
        self.code = status


Reply = dict[str, Any] | FunctionError


@dataclass
class Call:
    event: dict[str, Any]
    started: float
    ended: float | None = None
    reply: Reply | LambdaServiceError | None = None


@dataclass
class ScriptedFunction:
    """``LambdaFunction._invoke_lambda`` for ``moto_sfn_patched``: ``respond(event)`` returns
    a payload or a :class:`FunctionError`, or raises :class:`LambdaServiceError`. Called on
    moto's server threads (the Map's children at once), so the log is locked."""

    respond: Callable[[dict[str, Any]], Reply]
    calls: list[Call] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, function: Any, event: Any) -> tuple[str, bool, str]:
        assert function.function_arn == FUNCTION_ARN, function.function_arn
        data = json.loads(event) if isinstance(event, str | bytes) else event
        call = Call(data, time.monotonic())
        with self._lock:
            self.calls.append(call)
        try:
            reply: Reply = self.respond(data)
        except LambdaServiceError as exc:
            call.reply, call.ended = exc, time.monotonic()
            raise
        call.reply, call.ended = reply, time.monotonic()
        if isinstance(reply, FunctionError):
            error = {"errorType": reply.error_type, "errorMessage": reply.message}
            return json.dumps(error), True, ""
        return json.dumps(reply), False, ""

    @property
    def prepares(self) -> list[Call]:
        return [c for c in self.calls if c.event.get("action") == "prepare"]

    @property
    def batches(self) -> list[Call]:
        return [c for c in self.calls if "Items" in c.event]


def prepared(
    ids: list[str], items_per_batch: int, children: int, key: str = IDS_KEY
) -> dict[str, Any]:
    """What the handler's prepare returns for ``ids`` written to ``key``, with a batch plan
    (chosen by the test, so it differs from what the template's parameters would give)."""
    batches = ceil(len(ids) / items_per_batch) if ids else 0
    return {
        "ids_url": f"s3://{BUCKET}/{key}",
        "ids_bucket": BUCKET,
        "ids_key": key,
        "unique_ids": len(ids),
        "rows_read": 2 * len(ids),
        "items_per_batch": items_per_batch,
        "batches": batches,
        "children": min(children, batches),
    }


def done(event: dict[str, Any]) -> dict[str, Any]:
    """A batch's payload when the handler did all its ids (no remaining_items, as its
    summary leaves it out)."""
    return {"status": "ok", "records": len(event["Items"]), "batch_input": event["BatchInput"]}


def put_ids(s3: Any, ids: list[str], key: str = IDS_KEY) -> None:
    """The prepared file: header ``id``, one distinct id a row."""
    s3.put_object(Bucket=BUCKET, Key=key, Body=("id\n" + "".join(f"{i}\n" for i in ids)).encode())


def ids_of(n: int, start: int = 1_000_000) -> list[str]:
    return [f"tt{start + k:07d}" for k in range(n)]


# --- the state machine on moto ----------------------------------------------------------------


@dataclass
class Machine:
    harness: Harness
    function: ScriptedFunction

    @property
    def arn(self) -> str:
        return self.harness.state_machine_arn

    def run(self, execution_input: dict[str, Any]) -> ExecutionResult:
        return self.harness.run(execution_input, timeout=30)


@contextlib.contextmanager
def machine_on_moto(
    endpoint: str,
    invoke: Callable[[Any, Any], tuple[str, bool, str]],
    **params: str,
) -> Iterator[Harness]:
    """template.yaml's state machine, rendered from the definition on disk with the
    parameters' defaults and ``params``, on the moto server at ``endpoint`` with its
    interpreter on; its function exists on moto's Lambda (role on moto's IAM), and
    ``invoke(function, event)`` stands in for ``LambdaFunction._invoke_lambda``. The data-lake
    bucket is created. Yields the harness (its ``lam`` is None: no runtimes).
    """
    template = load_template()
    values = template_parameters(template, **params)
    definition = render_definition(template, values)

    role = provision(endpoint, values, int(values["FunctionTimeout"]))
    sfn = aws_client("stepfunctions", endpoint)
    with interpreter_on(endpoint), moto_sfn_patched(invoke):
        arn = create_state_machine(sfn, f"{FUNCTION_NAME}-ingest", definition, role)
        try:
            yield Harness(endpoint, cast(Any, None), definition, arn, sfn)
        finally:
            _EXTRAS.pop(arn, None)


@contextlib.contextmanager
def scripted(
    endpoint: str, respond: Callable[[dict[str, Any]], Reply], **params: str
) -> Iterator[Machine]:
    function = ScriptedFunction(respond)
    with machine_on_moto(endpoint, function, **params) as harness:
        yield Machine(harness, function)


@pytest.fixture(autouse=True)
def retry_waits() -> Iterator[list[float]]:
    """The retriers' waits, recorded instead of slept (retrier_decl.py's only use of time)."""
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    waits: list[float] = []
    with mock.patch.object(retrier_decl, "time", SimpleNamespace(sleep=waits.append)):
        yield waits


def _events(result: ExecutionResult) -> list[str]:
    return [e["type"] for e in result.history]


def _failed(result: ExecutionResult) -> str:
    return f"{result.status}: {result.error}: {result.cause}"


# --- the input and the date -----------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"kind": "movie"},
        {"source_key": SOURCE_KEY},
        {"source_key": 7, "kind": "movie"},
        {"source_key": SOURCE_KEY, "kind": ["movie"]},
    ],
)
def test_invalid_input_fails_before_any_call(s3_env: str, bad: dict[str, Any]) -> None:
    def respond(event: dict[str, Any]) -> Reply:
        raise AssertionError(f"called with {event}")

    with scripted(s3_env, respond) as machine:
        result = machine.run(bad)
    assert result.status == "FAILED"
    assert result.error == "InvalidInput" and "source_key" in (result.cause or "")
    assert machine.function.calls == []


@pytest.mark.parametrize("given", [None, 20220502])
def test_without_a_date_string_the_execution_start_date_is_used(
    s3_env: str, s3: Any, given: Any
) -> None:
    """No date, or one that is not a string: the batches get the UTC date of
    ``$$.Execution.StartTime`` (YYYY-MM-DD)."""
    ids = ids_of(3)

    def respond(event: dict[str, Any]) -> Reply:
        return prepared(ids, 3, 4) if event.get("action") == "prepare" else done(event)

    execution_input: dict[str, Any] = {"source_key": SOURCE_KEY, "kind": "movie"}
    if given is not None:
        execution_input["date"] = given
    with scripted(s3_env, respond) as machine:
        put_ids(s3, ids)
        result = machine.run(execution_input)
    assert result.status == "SUCCEEDED", _failed(result)
    (batch,) = machine.function.batches
    day = result.started.astimezone(datetime.UTC).date().isoformat()
    assert batch.event["BatchInput"]["date"] == day
    assert result.output["date"] == day


def test_a_given_date_reaches_every_batch(s3_env: str, s3: Any) -> None:
    ids = ids_of(4)

    def respond(event: dict[str, Any]) -> Reply:
        return prepared(ids, 1, 4) if event.get("action") == "prepare" else done(event)

    with scripted(s3_env, respond) as machine:
        put_ids(s3, ids)
        result = machine.run({**INPUT, "date": "1999-12-31"})
    assert result.status == "SUCCEEDED", _failed(result)
    assert len(machine.function.batches) == 4
    assert {b.event["BatchInput"]["date"] for b in machine.function.batches} == {"1999-12-31"}


# --- prepare first, then the Map over its file and plan --------------------------------------


def test_prepare_runs_first_and_the_map_runs_its_file_in_its_plan(s3_env: str, s3: Any) -> None:
    """The one prepare call gets the source, the lake, the parameters (as numbers) and the
    execution's identity; the Map reads the file it names, in batches of its
    items_per_batch, its children at a time, each told that share of the global rate."""
    ids = ids_of(10)
    # Not what MaxItemsPerBatch 7 / MapMaxConcurrency 5 would give: the plan is prepare's.
    plan = prepared(ids, items_per_batch=3, children=2)

    def respond(event: dict[str, Any]) -> Reply:
        return plan if event.get("action") == "prepare" else done(event)

    params = {"MaxItemsPerBatch": "7", "MapMaxConcurrency": "5", "TmdbGlobalRate": "123"}
    with scripted(s3_env, respond, **params) as machine:
        put_ids(s3, ids)
        put_ids(s3, ["tt9999999"], key="Raw/TMDB/_work/not-this-one.csv")
        result = machine.run(INPUT)
    assert result.status == "SUCCEEDED", _failed(result)

    calls = machine.function.calls
    (prepare,) = machine.function.prepares
    assert calls[0] is prepare
    started = prepare.event.pop("execution_started")
    assert prepare.event == {
        "action": "prepare",
        "source": f"s3://{BUCKET}/{SOURCE_KEY}",
        "dest": f"s3://{BUCKET}",
        "kind": INPUT["kind"],  # the folder's date and kind: prepare guards the whole folder
        "date": INPUT["date"],
        "max_items_per_batch": 7,
        "max_concurrency": 5,
        "state_machine": machine.arn,
        "execution": result.arn,
    }
    assert isinstance(started, str)
    at = datetime.datetime.fromisoformat(started.replace("Z", "+00:00"))
    assert abs(at - result.started) < datetime.timedelta(milliseconds=1)
    assert result.output["prepared"] == {
        k: plan[k] for k in ("ids_bucket", "ids_key", "unique_ids", "items_per_batch")
    } | {k: plan[k] for k in ("batches", "children")}

    batches = machine.function.batches
    assert len(calls) == 1 + len(batches)
    assert prepare.ended is not None and all(prepare.ended <= b.started for b in batches)
    assert sorted(len(b.event["Items"]) for b in batches) == [1, 3, 3, 3]
    got = [item for b in batches for item in b.event["Items"]]
    assert sorted(got, key=lambda item: item["id"]) == [{"id": i} for i in ids]
    for b in batches:
        assert b.event["BatchInput"] == {
            "dest": f"s3://{BUCKET}",
            "kind": "movie",
            "date": DATE,
            "global_rate": 123,
            "max_concurrency": 2,
        }
    # The ResultWriter's files, under the lake's run folder.
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="Raw/TMDB/_runs/")
    assert listed.get("KeyCount", 0) >= 1
    assert "MapRunSucceeded" in _events(result)


def test_no_ids_ends_after_prepare(s3_env: str, s3: Any) -> None:
    def respond(event: dict[str, Any]) -> Reply:
        assert event.get("action") == "prepare", event
        return prepared([], 1, 4)

    with scripted(s3_env, respond) as machine:
        put_ids(s3, [])
        result = machine.run(INPUT)
    assert result.status == "SUCCEEDED", _failed(result)
    assert len(machine.function.calls) == 1
    assert "map_run" not in result.output
    assert not [t for t in _events(result) if t.startswith("Map")]


def test_the_map_runs_the_planned_children_at_once(s3_env: str, s3: Any) -> None:
    """MaxConcurrency is the plan's children: the first three batches meet (none would if
    fewer ran at once), and never more than three are in the function together."""
    ids = ids_of(9)
    children = 3
    meet = threading.Barrier(children, timeout=5)
    lock = threading.Lock()
    state = {"arrived": 0, "running": 0, "peak": 0, "broken": False}

    def respond(event: dict[str, Any]) -> Reply:
        if event.get("action") == "prepare":
            return prepared(ids, 1, children)
        with lock:
            state["arrived"] += 1
            first = state["arrived"] <= children
            state["running"] += 1
            state["peak"] = max(state["peak"], state["running"])
        try:
            if first:
                try:
                    meet.wait()
                except threading.BrokenBarrierError:
                    state["broken"] = True
            time.sleep(0.03)
        finally:
            with lock:
                state["running"] -= 1
        return done(event)

    with scripted(s3_env, respond, MapMaxConcurrency="8") as machine:
        put_ids(s3, ids)
        result = machine.run(INPUT)
    assert result.status == "SUCCEEDED", _failed(result)
    assert len(machine.function.batches) == 9
    assert not state["broken"], "fewer than the planned children ran at once"
    assert state["peak"] == children
    assert {b.event["BatchInput"]["max_concurrency"] for b in machine.function.batches} == {3}


# --- the child workflow: the continuation loop ------------------------------------------------


@pytest.mark.parametrize("finished", ["absent", "empty"])
def test_a_batch_cut_by_the_deadline_continues_with_its_remaining_items(
    s3_env: str, s3: Any, finished: str
) -> None:
    """Each call does two ids and hands the rest back as remaining_items with batch_input;
    the next Ingest gets exactly those. The loop ends on a payload without remaining_items,
    or with an empty list."""
    ids = ids_of(6)

    def respond(event: dict[str, Any]) -> Reply:
        if event.get("action") == "prepare":
            return prepared(ids, 6, 4)
        items, rest = event["Items"][:2], event["Items"][2:]
        reply: dict[str, Any] = {"records": len(items), "batch_input": event["BatchInput"]}
        if rest:
            return {**reply, "status": "incomplete", "remaining_items": rest}
        return {**reply, "status": "ok"} | ({"remaining_items": []} if finished == "empty" else {})

    with scripted(s3_env, respond) as machine:
        put_ids(s3, ids)
        result = machine.run(INPUT)
    assert result.status == "SUCCEEDED", _failed(result)
    calls = machine.function.batches
    assert [len(c.event["Items"]) for c in calls] == [6, 4, 2]
    assert [i["id"] for i in calls[0].event["Items"]] == ids
    for before, after in itertools.pairwise(calls):
        assert isinstance(before.reply, dict)
        assert after.event == {
            "Items": before.reply["remaining_items"],
            "BatchInput": before.reply["batch_input"],
        }
    # The continuations keep the batch's share of the rate.
    assert {json.dumps(c.event["BatchInput"], sort_keys=True) for c in calls} == {
        json.dumps(calls[0].event["BatchInput"], sort_keys=True)
    }


# --- errors: Lambda's are retried, the function's are not ------------------------------------


@pytest.mark.parametrize(
    ("code", "status"), [("TooManyRequestsException", 429), ("ServiceException", 500)]
)
@pytest.mark.parametrize("where", ["prepare", "batch"])
def test_lambda_service_errors_are_retried(
    s3_env: str, s3: Any, retry_waits: list[float], code: str, status: int, where: str
) -> None:
    """Invoke fails twice with Lambda.<code> (prepare's, or one batch's), then works: the
    state's Retry runs it again, after a wait, and the execution succeeds."""
    ids = ids_of(4)
    failures = {"left": 2}

    def respond(event: dict[str, Any]) -> Reply:
        is_prepare = event.get("action") == "prepare"
        target = is_prepare if where == "prepare" else event.get("Items") == [{"id": ids[1]}]
        if target and failures["left"]:
            failures["left"] -= 1
            raise LambdaServiceError(code, status)
        return prepared(ids, 1, 4) if is_prepare else done(event)

    with scripted(s3_env, respond) as machine:
        put_ids(s3, ids)
        result = machine.run(INPUT)
    assert result.status == "SUCCEEDED", _failed(result)
    errors = [c for c in machine.function.calls if isinstance(c.reply, LambdaServiceError)]
    assert len(errors) == 2
    assert len(machine.function.prepares) == (3 if where == "prepare" else 1)
    assert len(machine.function.batches) == (6 if where == "batch" else 4)
    assert len(retry_waits) == 2
    failed = [e for e in result.history if e["type"] in ("TaskFailed", "LambdaFunctionFailed")]
    if where == "prepare":  # the child executions' histories are their own
        assert [e["taskFailedEventDetails"]["error"] for e in failed] == [f"Lambda.{code}"] * 2


def test_a_function_error_in_prepare_fails_the_execution_at_once(s3_env: str, s3: Any) -> None:
    """e.g. ExecutionAlreadyRunning: not one of Lambda's errors, so no retry, and no Map."""

    def respond(event: dict[str, Any]) -> Reply:
        return FunctionError("ExecutionAlreadyRunning", "another execution is running")

    with scripted(s3_env, respond) as machine:
        result = machine.run(INPUT)
    assert result.status == "FAILED"
    assert result.error == "ExecutionAlreadyRunning", _failed(result)
    assert len(machine.function.calls) == 1
    assert not [t for t in _events(result) if t.startswith("Map")]


@pytest.mark.parametrize(
    ("tolerated", "status"), [(None, "FAILED"), ("30", "SUCCEEDED"), ("29", "FAILED")]
)
def test_a_batch_failing_on_a_401_fails_the_map_beyond_the_tolerated_percentage(
    s3_env: str, s3: Any, tolerated: str | None, status: str
) -> None:
    """One batch of 3 ids of 10 raises CredentialsError (TMDB said 401): a function error,
    not retried. With ToleratedFailurePercentage 0 (the default) the Map Run fails with
    States.ExceedToleratedFailureThreshold; 3 failed ids of 10 are within 30 %, not 29 %."""
    ids = ids_of(10)
    bad = {"id": ids[3]}

    def respond(event: dict[str, Any]) -> Reply:
        if event.get("action") == "prepare":
            return prepared(ids, 3, 4)
        if bad in event["Items"]:
            return FunctionError("CredentialsError", "TMDB refused the token (401)")
        return done(event)

    params = {} if tolerated is None else {"ToleratedFailurePercentage": tolerated}
    with scripted(s3_env, respond, **params) as machine:
        put_ids(s3, ids)
        result = machine.run(INPUT)
    assert result.status == status, _failed(result)
    calls = machine.function.batches
    assert len(calls) == 4  # no retry of the failed batch
    assert [c.reply for c in calls if bad in c.event["Items"]] == [
        FunctionError("CredentialsError", "TMDB refused the token (401)")
    ]
    if status == "FAILED":
        assert result.error == "States.ExceedToleratedFailureThreshold"
        assert "MapRunFailed" in _events(result) and _events(result)[-1] == "ExecutionFailed"


@pytest.mark.parametrize("recovers", [True, False])
def test_a_batch_that_found_tmdb_unreachable_is_tried_again_1_then_2_minutes_later_then_fails(
    s3_env: str, s3: Any, retry_waits: list[float], recovers: bool
) -> None:
    """TmdbUnreachable (the function's breaker): unlike any other function error, the batch
    is tried again, twice, a minute and then two minutes later (no jitter: a full jitter
    would draw each wait from 0 up, and a retry at once would not ride out a short outage):
    a short outage is ridden out, a TMDB that stays dead fails the batch after three short
    invocations."""
    ids = ids_of(4)
    target = [{"id": ids[1]}]
    failures = {"left": 2 if recovers else 99}

    def respond(event: dict[str, Any]) -> Reply:
        if event.get("action") == "prepare":
            return prepared(ids, 1, 4)
        if event.get("Items") == target and failures["left"]:
            failures["left"] -= 1
            return FunctionError("TmdbUnreachable", "TMDB unreachable at https://x: DNS")
        return done(event)

    with scripted(s3_env, respond) as machine:
        put_ids(s3, ids)
        result = machine.run(INPUT)
    assert result.status == ("SUCCEEDED" if recovers else "FAILED"), _failed(result)
    tried = [c for c in machine.function.batches if c.event.get("Items") == target]
    assert len(tried) == 3  # the first invocation and two retries, never more
    assert retry_waits == [60, 120]
