"""The real state machine on moto's Step Functions interpreter, with the handler under awslambdaric.

``statemachine/ingest.asl.json`` is rendered the way ``template.yaml`` renders it (its
DefinitionSubstitutions, resolved with the parameters' defaults or the values a test gives),
created on the tests' moto server (``tests/conftest.py`` ``moto_endpoint``, a
``ThreadedMotoServer`` in this process) and executed by moto's interpreter: moto 5.x's port of
LocalStack's ASL interpreter, in ``moto/stepfunctions/parser/``, chosen per request when moto's
config has ``{"stepfunctions": {"execute_state_machine": true}}`` (set here through the
server's ``POST /moto-api/config``).

Everything the definition calls is real or the project's own fake:

- ``arn:aws:states:::lambda:invoke`` goes, as in moto, through boto3 to the moto server's
  Lambda backend (``Invoke`` on the function created here). Only the last call of that path,
  ``LambdaFunction._invoke_lambda``, which would run a Docker container, is replaced: it
  hands the event to a loopback Lambda Runtime API (``tests/support/runtime_api.py``) that
  ``python -m awslambdaric handler.lambda_handler`` processes poll, one per concurrent
  invocation, as Lambda's execution environments do;
- the ItemReader (``s3:getObject``), the ResultWriter (``s3:putObject``), the handler's reads
  and writes, the token (SSM SecureString) and the prepare step's ``states:ListExecutions``
  (one execution at a time: the interpreter's executions are listed as on AWS) are on the
  moto server;
- TMDB is ``tmdb_devtools.fake_tmdb``.

moto 5.2.5's interpreter lacks a few things the definition uses; :func:`moto_sfn_patched`
emulates each of them narrowly, with a comment naming the gap (see also
docs/aws-and-tooling.md, "Step Functions on moto's interpreter"):

1. ``ItemBatcher`` and ``ReaderConfig.CSVDelimiter`` are not in moto's ASL grammar (as in
   LocalStack's, localstack/localstack#10884): ``CreateStateMachine`` refuses the definition.
   They are taken out of the definition moto sees (:func:`split_unsupported`) and applied by
   hooks on the CSV item reader and on the Distributed Map run.
2. ``$$.Execution.StartTime`` is the execution's ``datetime``, not an ISO 8601 string.
3. ``ToleratedFailureCount``/``ToleratedFailurePercentage`` (and their ``*Path`` forms) are
   read but never applied: a failed child execution leaves ``null`` in the results and the
   Map succeeds whatever the threshold.

The hooks patch moto's classes in this process, so they reach the ThreadedMotoServer of the
tests, not a moto server in another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import csv
import datetime
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

from tests.support.runtime_api import RuntimeApi

ROOT = Path(__file__).resolve().parent.parent.parent
TEMPLATE = ROOT / "template.yaml"
ASL = ROOT / "statemachine" / "ingest.asl.json"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
ACCOUNT = "123456789012"  # moto's default account: the one SFN's and the tests' clients get
REGION = "us-east-1"
FUNCTION_NAME = "tmdb-ingest"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FUNCTION_NAME}"
BUCKET = "data-lake-x"

T = TypeVar("T")


# --- the definition, as template.yaml renders it --------------------------------------------


def _plain(node: Any) -> Any:
    """cfn-lint's YAML nodes (str/dict/list subclasses with positions) -> plain Python."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


def load_template() -> dict[str, Any]:
    """template.yaml with its short-form tags (!Ref, !Sub, ...) as {"Ref": ...} and the like."""
    from cfnlint.decode import cfn_yaml

    return _plain(cfn_yaml.load(str(TEMPLATE)))


def _one(template: dict[str, Any], kind: str) -> dict[str, Any]:
    found = [r for r in template["Resources"].values() if r["Type"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    properties: dict[str, Any] = found[0]["Properties"]
    return properties


def substitute(value: Any, params: dict[str, str]) -> str:
    """Resolve a string, {"Ref": P} or {"Fn::Sub": "...${P}..."} against parameter values."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return params[value["Ref"]]
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return PLACEHOLDER.sub(lambda m: params[m.group(1)], value["Fn::Sub"])
    raise AssertionError(f"cannot resolve {value!r}")


def template_parameters(template: dict[str, Any], **params: str) -> dict[str, str]:
    """The template's parameter defaults, the test bucket, then ``params``."""
    defaults = {
        name: str(spec["Default"])
        for name, spec in template["Parameters"].items()
        if "Default" in spec
    }
    return {**defaults, "DataLakeBucket": BUCKET, **params}


def render_definition(template: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
    """statemachine/ingest.asl.json after CloudFormation's DefinitionSubstitutions."""
    subs = _one(template, "AWS::Serverless::StateMachine")["DefinitionSubstitutions"]
    resolved = {
        name: FUNCTION_ARN
        if isinstance(value, dict) and "Fn::GetAtt" in value
        else substitute(value, params)
        for name, value in subs.items()
    }
    text = ASL.read_text(encoding="utf-8")
    rendered: dict[str, Any] = json.loads(PLACEHOLDER.sub(lambda m: resolved[m.group(1)], text))
    return rendered


def function_environment(template: dict[str, Any], params: dict[str, str]) -> dict[str, str]:
    """The function's Environment.Variables, resolved."""
    fn = _one(template, "AWS::Serverless::Function")
    return {k: substitute(v, params) for k, v in fn["Environment"]["Variables"].items()}


# --- gap 1: fields moto's grammar does not have -----------------------------------------------


@dataclass(frozen=True)
class MapExtras:
    """What :func:`split_unsupported` took out of one Distributed Map state."""

    item_batcher: dict[str, Any] | None
    csv_delimiter: str | None
    tolerated: dict[str, Any]  # the Tolerated* fields the state declares (moto ignores them)


_DELIMITERS = {"COMMA": ",", "PIPE": "|", "SEMICOLON": ";", "SPACE": " ", "TAB": "\t"}
_TOLERATED = (
    "ToleratedFailureCount",
    "ToleratedFailureCountPath",
    "ToleratedFailurePercentage",
    "ToleratedFailurePercentagePath",
)


def split_unsupported(definition: dict[str, Any]) -> tuple[dict[str, Any], dict[str, MapExtras]]:
    """The definition without ``ItemBatcher`` and ``ReaderConfig.CSVDelimiter`` (which moto
    5.2.5's grammar rejects, localstack/localstack#10884), and what was taken out, by the
    name of the top-level Map state it belongs to."""
    stripped = copy.deepcopy(definition)
    extras: dict[str, MapExtras] = {}
    for name, state in stripped["States"].items():
        if state.get("Type") != "Map" or "ItemProcessor" not in state:
            continue
        mode = state["ItemProcessor"].get("ProcessorConfig", {}).get("Mode")
        if mode != "DISTRIBUTED":
            continue
        if "ItemBatcher" in state and ("ItemSelector" in state or "Parameters" in state):
            # AWS applies ItemSelector to each item before batching; moto's worker would apply
            # it to the whole batch. Not emulated: this definition has none.
            raise NotImplementedError(f"{name}: ItemBatcher with ItemSelector is not emulated")
        reader_config = state.get("ItemReader", {}).get("ReaderConfig", {})
        extras[name] = MapExtras(
            item_batcher=state.pop("ItemBatcher", None),
            csv_delimiter=reader_config.pop("CSVDelimiter", None),
            tolerated={k: state[k] for k in _TOLERATED if k in state},
        )
    return stripped, extras


# Registered by create_state_machine: state machine ARN -> Map state name -> extras.
_EXTRAS: dict[str, dict[str, MapExtras]] = {}


def _extras_for(env: Any, state_name: str) -> MapExtras | None:
    arn = env.states.context_object.context_object_data["StateMachine"]["Id"]
    return _EXTRAS.get(arn, {}).get(state_name)


def _eval_parameters(env: Any, template: dict[str, Any]) -> Any:
    """Evaluate a Parameters-style payload template (``"key.$"`` paths, intrinsic functions)
    against the current state input, with moto's own evaluator: a one-state Pass program is
    parsed and its Parameters component evaluated in ``env``."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    program, _ = AmazonStateLanguageParser.parse(
        json.dumps(
            {"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": template, "End": True}}}
        )
    )
    program.states.states["P"].parameters.eval(env=env)
    return env.stack.pop()


def _batches(env: Any, batcher: dict[str, Any], items: list[Any]) -> list[dict[str, Any]]:
    """The child inputs ``{"Items": [...], "BatchInput": {...}}`` of ItemBatcher
    (https://docs.aws.amazon.com/step-functions/latest/dg/input-output-itembatcher.html)."""
    unsupported = {"MaxInputBytesPerBatch", "MaxInputBytesPerBatchPath"} & set(batcher)
    if unsupported:
        raise NotImplementedError(f"ItemBatcher emulation: {sorted(unsupported)}")
    template: dict[str, Any] = {}
    if "MaxItemsPerBatchPath" in batcher:
        template["size.$"] = batcher["MaxItemsPerBatchPath"]
    elif "MaxItemsPerBatch" in batcher:
        template["size"] = batcher["MaxItemsPerBatch"]
    if "BatchInput" in batcher:
        template["input"] = batcher["BatchInput"]
    values = _eval_parameters(env, template) if template else {}
    size = values.get("size", len(items) or 1)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"ItemBatcher: MaxItemsPerBatch must be an integer >= 1, got {size!r}")
    batches: list[dict[str, Any]] = []
    for start in range(0, len(items), size):
        batch: dict[str, Any] = {"Items": items[start : start + size]}
        if "input" in values:
            batch["BatchInput"] = values["input"]
        batches.append(batch)
    return batches


def _exceeds_tolerance(
    declared: dict[str, Any],
    tolerated_count: int,
    tolerated_percentage: float,
    failed: int,
    total: int,
) -> bool:
    """https://docs.aws.amazon.com/step-functions/latest/dg/maprun-fail-threshold.html: with no
    threshold declared any failed item fails the Map Run; with both, exceeding either does."""
    has_count = any(k.startswith("ToleratedFailureCount") for k in declared)
    has_percentage = any(k.startswith("ToleratedFailurePercentage") for k in declared)
    if not has_count and not has_percentage:
        return failed > 0
    if has_count and failed > tolerated_count:
        return True
    return has_percentage and total > 0 and failed * 100.0 / total > tolerated_percentage


@contextlib.contextmanager
def moto_sfn_patched(invoke: Callable[[Any, Any], tuple[str, bool, str]]) -> Iterator[None]:
    """moto 5.2.5's classes with the narrow hooks below, for as long as the block runs.

    ``invoke(function, event)`` replaces ``LambdaFunction._invoke_lambda`` and returns what it
    returns: (payload text, errored, log text)."""
    from moto.awslambda.models import LambdaFunction
    from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
        StatesErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_output_transformer.transformer_csv import (  # noqa: E501
        ResourceOutputTransformerCSV,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (  # noqa: E501
        DistributedIterationComponent,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.backend.execution import Execution

    # Not a gap: moto runs Lambda functions in Docker (awslambda/models.py,
    # LambdaFunction._invoke_lambda). This is the only call replaced on the Invoke path.
    def _invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
        return invoke(self, event)

    # Gap 2: moto's parser/models.py start_execution gives the Execution a datetime start_date,
    # and backend/execution.py get_start_execution_details passes it on as the context
    # object's Execution.StartTime, which AWS gives as an ISO 8601 string
    # (https://docs.aws.amazon.com/step-functions/latest/dg/input-output-contextobject.html).
    original_details = Execution.get_start_execution_details

    def get_start_execution_details(self: Any) -> Any:
        details = original_details(self)
        start = details.start_time
        if isinstance(start, datetime.datetime):
            start = start.astimezone(datetime.UTC)
            details.start_time = start.strftime("%Y-%m-%dT%H:%M:%S.") + f"{start:%f}"[:3] + "Z"
        return details

    # Gap 1 (CSVDelimiter): transformer_csv.py reads the CSV with csv.reader's default comma.
    # The file is read again with the declared delimiter and handed to moto's code as a
    # comma-separated file, so moto keeps doing the headers and MaxItems.
    original_csv = ResourceOutputTransformerCSV._eval_body

    def csv_eval_body(self: Any, env: Any) -> None:
        state_name = env.states.context_object.context_object_data["State"]["Name"]
        extras = _extras_for(env, state_name)
        delimiter = _DELIMITERS[extras.csv_delimiter] if extras and extras.csv_delimiter else ","
        if delimiter != ",":
            reader_config = env.stack.pop()
            text = env.stack.pop()
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows(
                csv.reader(io.StringIO(text), delimiter=delimiter)
            )
            env.stack.append(out.getvalue())
            env.stack.append(reader_config)
        original_csv(self, env)

    # Gap 1 (ItemBatcher) and gap 3 (ToleratedFailure*): _map_run pops the items the
    # ItemReader produced and runs one child per item; a failed (or timed out) child's output
    # is None (distributed_item_processor_worker.py, _eval_job) and the run succeeds
    # regardless. The items are grouped into batches before it, and the failed items (those
    # of the children whose output is None: a child that succeeds with a JSON null would
    # count too) are held to the declared threshold after it. Unlike AWS, which may stop the
    # Map Run once the threshold is exceeded, every child still runs first.
    original_map_run = DistributedIterationComponent._map_run

    def map_run(self: Any, env: Any, eval_input: Any) -> None:
        extras = _extras_for(env, eval_input.state_name)
        if extras is None:
            original_map_run(self, env, eval_input)
            return
        items = env.stack.pop()
        jobs = _batches(env, extras.item_batcher, items) if extras.item_batcher else items
        env.stack.append(jobs)
        original_map_run(self, env, eval_input)
        outputs = env.stack[-1]
        sizes = [len(j["Items"]) if extras.item_batcher else 1 for j in jobs]
        failed = sum(size for size, out in zip(sizes, outputs, strict=True) if out is None)
        if _exceeds_tolerance(
            extras.tolerated,
            eval_input.tolerated_failure_count,
            eval_input.tolerated_failure_percentage,
            failed,
            len(items),
        ):
            env.stack.pop()
            error = StatesErrorName(typ=StatesErrorNameType.StatesExceedToleratedFailureThreshold)
            raise FailureEventException(
                failure_event=FailureEvent(
                    env=env,
                    error_name=error,
                    event_type=HistoryEventType.MapRunFailed,
                    event_details=EventDetails(
                        mapRunFailedEventDetails=MapRunFailedEventDetails(
                            error=error.error_name,
                            cause=f"{failed} of {len(items)} items failed "
                            "(test emulation of the tolerated failure threshold)",
                        )
                    ),
                )
            )

    with (
        mock.patch.object(LambdaFunction, "_invoke_lambda", _invoke_lambda),
        mock.patch.object(Execution, "get_start_execution_details", get_start_execution_details),
        mock.patch.object(ResourceOutputTransformerCSV, "_eval_body", csv_eval_body),
        mock.patch.object(DistributedIterationComponent, "_map_run", map_run),
    ):
        yield


# --- the function: awslambdaric processes on a loopback Runtime API --------------------------


class LoopThread:
    """An asyncio loop in a daemon thread, for the servers the moto threads call into."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class LambdaInvocation:
    """One Invoke as the function saw it (epoch seconds)."""

    event: Any
    kind: str
    payload: Any
    started: float
    ended: float


@dataclass
class LoopbackLambda:
    """``processes`` runtimes polling one :class:`RuntimeApi`: each takes the next invocation
    when it is free, so up to ``processes`` invocations run at once, each in its own warm
    process, like Lambda's execution environments."""

    loop: LoopThread
    env: dict[str, str]
    processes: int
    logs: Path
    api: RuntimeApi = field(init=False)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    invocations: list[LambdaInvocation] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        async def make() -> RuntimeApi:
            api = RuntimeApi(FUNCTION_ARN)
            await api.start()
            return api

        self.api = self.loop.run(make())
        self.logs.mkdir(parents=True, exist_ok=True)
        for n in range(self.processes):
            with (self.logs / f"runtime-{n}.log").open("wb") as log:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "awslambdaric", "handler.lambda_handler"],
                        cwd=ROOT,
                        env={**self.env, "AWS_LAMBDA_RUNTIME_API": self.api.address},
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.loop.run(self.api.stop())

    def output(self) -> str:
        return "".join(
            p.read_text("utf-8", "replace") for p in sorted(self.logs.glob("runtime-*.log"))
        )

    def invoke(self, function: Any, event: Any) -> tuple[str, bool, str]:
        """What ``LambdaFunction._invoke_lambda`` returns, from a runtime process: called on a
        moto server thread, it waits for the runtime's answer on the loop thread."""
        if function.function_arn != FUNCTION_ARN:
            raise AssertionError(f"unexpected function {function.function_arn}")
        dead = [p.returncode for p in self.procs if p.poll() is not None]
        if dead:
            raise AssertionError(f"runtime processes exited {dead}:\n{self.output()[-3000:]}")
        started = time.time()
        timeout_ms = int(function.timeout) * 1000
        kind, payload = self.loop.run(
            self.api.invoke(event, timeout_ms, str(uuid.uuid4())), timeout=timeout_ms / 1000 + 60
        )
        with self._lock:
            self.invocations.append(LambdaInvocation(event, kind, payload, started, time.time()))
        return json.dumps(payload), kind == "error", ""


def runtime_environment(function_env: dict[str, str], moto: str, tmdb_url: str) -> dict[str, str]:
    """Lambda's environment for a 512 MB python3.12 function, the function's own variables,
    and where this test's AWS and TMDB are."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TMDB_", "AWS_", "MOTO_")) and k != "_HANDLER"
    }
    env.update(
        AWS_LAMBDA_FUNCTION_NAME=FUNCTION_NAME,
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="512",
        AWS_LAMBDA_LOG_GROUP_NAME=f"/aws/lambda/{FUNCTION_NAME}",
        AWS_LAMBDA_LOG_STREAM_NAME="2022/05/02/[$LATEST]0123456789abcdef0123456789abcdef",
        AWS_LAMBDA_INITIALIZATION_TYPE="on-demand",
        AWS_EXECUTION_ENV="AWS_Lambda_python3.12",
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_ENDPOINT_URL=moto,
        LAMBDA_TASK_ROOT=str(ROOT),
        TZ=":UTC",
        TMDB_BASE_URL=tmdb_url,
        **function_env,
    )
    return env


# --- the harness -------------------------------------------------------------------------------


def aws_client(service: str, endpoint: str) -> Any:
    """A boto3 client of the moto server at ``endpoint``."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _moto_config(endpoint: str, config: dict[str, Any]) -> None:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/config",
        data=json.dumps(config).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request).close()


def _function_zip() -> bytes:
    """A placeholder package, as template.yaml's InlineCode: the code runs from this checkout."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("placeholder.py", "# tmdb-ingest runs from the checkout in these tests\n")
    return buffer.getvalue()


def provision(
    endpoint: str, values: dict[str, str], timeout: int, env: dict[str, str] | None = None
) -> str:
    """What the stack gives the state machine, on the moto server at ``endpoint``: the
    data-lake bucket, and the function on moto's Lambda (a placeholder package, ``Timeout``
    ``timeout``, environment ``env``) with its role on moto's IAM. Returns the role's ARN."""
    aws_client("s3", endpoint).create_bucket(Bucket=values["DataLakeBucket"])
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = aws_client("iam", endpoint).create_role(
        RoleName="tmdb-ingest-test", AssumeRolePolicyDocument=json.dumps(trust)
    )
    role_arn: str = role["Role"]["Arn"]
    aws_client("lambda", endpoint).create_function(
        FunctionName=FUNCTION_NAME,
        Runtime=values["PythonRuntime"],
        Role=role_arn,
        Handler="handler.lambda_handler",
        Code={"ZipFile": _function_zip()},
        Timeout=timeout,
        MemorySize=int(values["FunctionMemory"]),
        Environment={"Variables": env or {}},
    )
    return role_arn


@dataclass
class ExecutionResult:
    arn: str
    status: str
    output: Any
    error: str | None
    cause: str | None
    started: datetime.datetime
    seconds: float
    history: list[dict[str, Any]]


@dataclass
class Harness:
    """The state machine of template.yaml on moto, its function under awslambdaric."""

    endpoint: str
    lam: LoopbackLambda
    definition: dict[str, Any]
    state_machine_arn: str
    sfn: Any

    def start(self, execution_input: dict[str, Any], name: str | None = None) -> str:
        started = self.sfn.start_execution(
            stateMachineArn=self.state_machine_arn,
            name=name or f"run-{uuid.uuid4().hex[:12]}",
            input=json.dumps(execution_input),
        )
        arn: str = started["executionArn"]
        return arn

    def wait(self, arn: str, timeout: float = 120.0) -> ExecutionResult:
        began = time.monotonic()
        while True:
            described = self.sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                break
            if time.monotonic() - began > timeout:
                raise AssertionError(f"execution still running after {timeout} s")
            time.sleep(0.05)
        history = self.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        stop = described.get("stopDate") or datetime.datetime.now(datetime.UTC)
        return ExecutionResult(
            arn=arn,
            status=described["status"],
            output=json.loads(described["output"]) if "output" in described else None,
            error=described.get("error"),
            cause=described.get("cause"),
            started=described["startDate"],
            seconds=(stop - described["startDate"]).total_seconds(),
            history=history,
        )

    def run(self, execution_input: dict[str, Any], timeout: float = 120.0) -> ExecutionResult:
        return self.wait(self.start(execution_input), timeout)


def create_state_machine(sfn: Any, name: str, definition: dict[str, Any], role_arn: str) -> str:
    """Create ``definition`` on moto without the fields its grammar lacks, and register them
    for the hooks of :func:`moto_sfn_patched` (unregister with ``_EXTRAS.pop(arn)``)."""
    stripped, extras = split_unsupported(definition)
    created = sfn.create_state_machine(
        name=name, definition=json.dumps(stripped), roleArn=role_arn, type="STANDARD"
    )
    arn: str = created["stateMachineArn"]
    _EXTRAS[arn] = extras
    return arn


@contextlib.contextmanager
def interpreter_on(endpoint: str) -> Iterator[None]:
    """moto's interpreter on for the server at ``endpoint`` (in this process), which its
    boto3 calls reach at localhost:$MOTO_PORT."""
    saved_port = os.environ.get("MOTO_PORT")
    # moto's interpreter calls AWS (Lambda, S3) through boto3 at http://localhost:$MOTO_PORT
    # (stepfunctions/parser/asl/utils/boto_client.py, settings.moto_server_port).
    os.environ["MOTO_PORT"] = endpoint.rsplit(":", 1)[1]
    _moto_config(endpoint, {"stepfunctions": {"execute_state_machine": True}})
    try:
        yield
    finally:
        _moto_config(endpoint, {"stepfunctions": {"execute_state_machine": False}})
        if saved_port is None:
            os.environ.pop("MOTO_PORT", None)
        else:
            os.environ["MOTO_PORT"] = saved_port


@contextlib.contextmanager
def state_machine(
    endpoint: str,
    tmdb_url: str,
    loop: LoopThread,
    logs: Path,
    token: str,
    function_timeout: int = 900,
    processes: int | None = None,
    runtime_env: dict[str, str] | None = None,
    **params: str,
) -> Iterator[Harness]:
    """The rendered state machine on the moto server at ``endpoint`` (in this process), its
    function created on moto's Lambda and run by ``processes`` awslambdaric runtimes (default:
    MapMaxConcurrency), the token in SSM, the data-lake bucket created. ``params`` override
    template.yaml's parameter defaults; ``runtime_env`` adds to the runtimes' environment
    (e.g. ``TMDB_SAFETY_MARGIN_SECONDS``)."""
    template = load_template()
    values = template_parameters(template, **params)
    definition = render_definition(template, values)
    fn_env = function_environment(template, values)

    role_arn = provision(endpoint, values, function_timeout, fn_env)
    aws_client("ssm", endpoint).put_parameter(
        Name=fn_env["TMDB_TOKEN_SSM_PARAMETER"], Value=token, Type="SecureString"
    )
    sfn = aws_client("stepfunctions", endpoint)

    lam = LoopbackLambda(
        loop,
        {**runtime_environment(fn_env, endpoint, tmdb_url), **(runtime_env or {})},
        processes or int(values["MapMaxConcurrency"]),
        logs,
    )
    lam.start()
    try:
        with interpreter_on(endpoint), moto_sfn_patched(lam.invoke):
            arn = create_state_machine(sfn, f"{FUNCTION_NAME}-ingest", definition, role_arn)
            try:
                yield Harness(endpoint, lam, definition, arn, sfn)
            finally:
                _EXTRAS.pop(arn, None)
    finally:
        lam.stop()
