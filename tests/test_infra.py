"""Infrastructure checks: the SAM template, the state machine definition and the Lambda layer.

Fast tests lint ``template.yaml`` with cfn-lint (offline), check the Amazon States Language
file's structure and its ``${...}`` substitutions, and hold the IAM policies to least
privilege. What the definition does when it runs is tested on moto's Step Functions
interpreter: ``tests/test_asl_on_moto.py`` (with a scripted function) and
``tests/test_state_machine.py`` (with the handler). Slow tests build the layer with
``layer/build.py``, check its size and contents, and run its code in a Python that sees only
the layer (``-S``: no site-packages), against a moto server and the project's fake TMDB, the
last one called by the state machine itself on moto's interpreter.
"""

from __future__ import annotations

import contextlib
import email.parser
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.sfn import load_template, substitute

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
ASL = ROOT / "statemachine" / "ingest.asl.json"
BUILD_SCRIPT = ROOT / "layer" / "build.py"

LAMBDA_RETRY_ERRORS = {
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
}
BATCH_INPUT_FIELDS = {"dest", "kind", "date", "global_rate", "max_concurrency"}
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
MIB = 1024 * 1024
FAKE_ACCOUNT_ARN = "arn:aws:lambda:us-east-1:123456789012:function:tmdb-ingest"
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"


# --- helpers -------------------------------------------------------------------------------


def _resources_of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def _one(template: dict[str, Any], kind: str) -> dict[str, Any]:
    found = _resources_of_type(template, kind)
    assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
    return next(iter(found.values()))["Properties"]


def _parameter_defaults(template: dict[str, Any]) -> dict[str, str]:
    return {
        name: str(spec["Default"])
        for name, spec in template["Parameters"].items()
        if "Default" in spec
    }


def _sub_text(value: Any) -> str:
    """The text of a plain or !Sub string (placeholders left as they are)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("Fn::Sub"), str):
        return value["Fn::Sub"]
    if isinstance(value, dict) and "Ref" in value:
        return "${" + value["Ref"] + "}"
    raise AssertionError(f"expected a string or !Sub string, got {value!r}")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _policy_statements(policies: list[Any]) -> Iterator[dict[str, Any]]:
    """Every IAM statement of a SAM ``Policies`` list (both branches of an !If)."""
    for policy in policies:
        if isinstance(policy, dict) and "Fn::If" in policy:
            _, yes, no = policy["Fn::If"]
            yield from _policy_statements([p for p in (yes, no) if p != {"Ref": "AWS::NoValue"}])
        elif isinstance(policy, dict) and "Statement" in policy:
            yield from _as_list(policy["Statement"])
        elif isinstance(policy, dict) and "PolicyDocument" in policy:  # AWS::IAM::Role inline
            yield from _as_list(policy["PolicyDocument"]["Statement"])
        else:
            # A SAM policy template: only the ones reviewed here are allowed.
            assert isinstance(policy, dict), f"unexpected managed policy {policy!r}"
            assert set(policy) <= {"LambdaInvokePolicy"}, f"unreviewed policy template {policy}"


def _render_asl(substitutions: dict[str, str]) -> dict[str, Any]:
    """The definition as Step Functions sees it after CloudFormation's substitutions."""
    text = ASL.read_text(encoding="utf-8")
    return json.loads(PLACEHOLDER.sub(lambda m: substitutions[m.group(1)], text))


def _default_substitutions(template: dict[str, Any], **params: str) -> dict[str, str]:
    """DefinitionSubstitutions resolved with the parameters' defaults (overridable)."""
    values = {**_parameter_defaults(template), "DataLakeBucket": "data-lake-x", **params}
    subs = _one(template, "AWS::Serverless::StateMachine")["DefinitionSubstitutions"]
    resolved: dict[str, str] = {}
    for name, value in subs.items():
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            resolved[name] = FAKE_ACCOUNT_ARN
        else:
            resolved[name] = substitute(value, values)
    return resolved


def _walk_states(states: dict[str, Any], where: str = "") -> Iterator[tuple[str, str, dict]]:
    """(scope, name, state) for every state, nested Map processors included."""
    for name, state in states.items():
        yield where, name, state
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from _walk_states(processor["States"], f"{where}{name}/")


def _scopes(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "", definition
    for scope, name, state in _walk_states(definition["States"]):
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield f"{scope}{name}/", processor


def _states_named(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: state for _, name, state in _walk_states(definition["States"])}


def _distributed_map(definition: dict[str, Any]) -> dict[str, Any]:
    maps = [
        s
        for s in _states_named(definition).values()
        if s["Type"] == "Map"
        and s.get("ItemProcessor", {}).get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED"
    ]
    assert len(maps) == 1, "expected exactly one Distributed Map"
    return maps[0]


def _run_cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    # cfn-lint has no ``python -m cfnlint``; its console script is cfnlint.runner.main.
    code = "import sys; from cfnlint.runner import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, "--format", "parseable", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )


def _load_build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tmdb_layer_build", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def asl_text() -> str:
    return ASL.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def definition(template: dict[str, Any]) -> dict[str, Any]:
    return _render_asl(_default_substitutions(template))


@pytest.fixture(scope="module")
def build() -> ModuleType:
    return _load_build_module()


# --- template.yaml -------------------------------------------------------------------------


def test_cfn_lint_passes_on_the_template() -> None:
    result = _run_cfn_lint(TEMPLATE)
    assert result.returncode == 0, f"cfn-lint found problems:\n{result.stdout}{result.stderr}"


def test_state_machine_definition_passes_cfn_lint_schema(
    template: dict[str, Any], definition: dict[str, Any], tmp_path: Path
) -> None:
    """cfn-lint cannot read a DefinitionUri file; inline the substituted definition so its
    Amazon States Language schema (rule E3601) checks the states' fields."""
    plain = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "Machine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "RoleArn": "arn:aws:iam::123456789012:role/ingest",
                    "StateMachineType": "STANDARD",
                    "Definition": definition,
                },
            }
        },
    }
    path = tmp_path / "inline-definition.json"
    path.write_text(json.dumps(plain, indent=1), encoding="utf-8")
    result = _run_cfn_lint(path)
    assert result.returncode == 0, f"cfn-lint found problems:\n{result.stdout}{result.stderr}"


def test_parameters_and_defaults(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    defaults = _parameter_defaults(template)
    assert "Default" not in params["DataLakeBucket"]
    assert defaults["InputPrefix"] == "Raw/Local/CSV/"
    assert defaults["FunctionArchitecture"] == "arm64"
    assert set(params["FunctionArchitecture"]["AllowedValues"]) == {"arm64", "x86_64"}
    assert defaults["PythonRuntime"] == "python3.12"
    assert set(params["PythonRuntime"]["AllowedValues"]) == {"python3.12", "python3.13"}
    assert defaults["FunctionTimeout"] == "900"
    assert defaults["FunctionMemory"] == "512"
    assert defaults["TmdbTokenParameterName"] == "/tmdb-ingest/read-access-token"
    assert defaults["MaxItemsPerBatch"] == "500"
    assert defaults["MapMaxConcurrency"] == "4"
    assert defaults["TmdbGlobalRate"] == "40"
    assert defaults["ToleratedFailurePercentage"] == "0"
    pattern = re.compile(params["InputPrefix"]["AllowedPattern"])
    assert pattern.match("Raw/Local/CSV/")
    for bad in ("", "/", "Raw/Local/CSV", "Raw/*/", "Raw//CSV/"):
        assert not pattern.match(bad), bad


def test_function_wiring(template: dict[str, Any], build: ModuleType) -> None:
    fn = _one(template, "AWS::Serverless::Function")
    assert fn["Handler"] == "handler.lambda_handler"
    assert fn["Runtime"] == {"Ref": "PythonRuntime"}
    assert fn["Architectures"] == [{"Ref": "FunctionArchitecture"}]
    assert fn["Timeout"] == {"Ref": "FunctionTimeout"}
    assert fn["MemorySize"] == {"Ref": "FunctionMemory"}
    # No local folder is zipped as function code (a CodeUri of "." would take .venv along):
    # the handler and the package come from the layer.
    assert "CodeUri" not in fn and "InlineCode" in fn
    assert len(fn["Layers"]) == 1

    layer = _one(template, "AWS::Serverless::LayerVersion")
    assert layer["ContentUri"] == f"layer/dist/{build.zip_name('3.12', 'arm64')}"
    assert layer["CompatibleRuntimes"] == ["python3.12"]
    assert layer["CompatibleArchitectures"] == ["arm64"]

    sm = _one(template, "AWS::Serverless::StateMachine")
    assert (ROOT / sm["DefinitionUri"]).resolve() == ASL.resolve()
    assert sm["Type"] == "STANDARD"

    outputs = template["Outputs"]
    assert outputs["IngestFunctionArn"]["Value"] == {"Fn::GetAtt": ["IngestFunction", "Arn"]}
    assert outputs["IngestStateMachineArn"]["Value"] == {"Ref": "IngestStateMachine"}
    assert "DependenciesLayer" in json.dumps(outputs["LayerArn"]["Value"])


def test_environment_names_the_token_parameter_and_holds_no_secret(
    template: dict[str, Any],
) -> None:
    env = _one(template, "AWS::Serverless::Function")["Environment"]["Variables"]
    assert env["TMDB_TOKEN_SSM_PARAMETER"] == {"Ref": "TmdbTokenParameterName"}
    assert env["TMDB_DEST"] == {"Fn::Sub": "s3://${DataLakeBucket}"}
    assert env["TMDB_ALLOWED_BUCKETS"] == {"Ref": "DataLakeBucket"}
    secretish = re.compile(r"TOKEN|API_KEY|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
    for name, value in env.items():
        if secretish.search(name):
            assert name == "TMDB_TOKEN_SSM_PARAMETER", f"{name} looks like a secret in plain env"
        if isinstance(value, str):
            assert not re.search(r"eyJ[\w-]{10,}\.[\w-]{10,}", value), f"{name} holds a JWT"
            assert not re.fullmatch(r"[0-9a-f]{32}", value), f"{name} holds an API key"
    # The parameter's default is a name (a path), never a token value.
    assert _parameter_defaults(template)["TmdbTokenParameterName"].startswith("/")


def test_engine_reads_every_environment_variable(template: dict[str, Any]) -> None:
    """A variable the engine never reads is a typo or a stale contract."""
    sources = [ROOT / "handler.py", *sorted((ROOT / "tmdb_async").glob("*.py"))]
    code = "\n".join(p.read_text(encoding="utf-8") for p in sources)
    env = _one(template, "AWS::Serverless::Function")["Environment"]["Variables"]
    unread = [name for name in env if f'"{name}"' not in code]
    assert not unread, f"set by template.yaml but read nowhere in the engine: {unread}"


def test_iam_is_least_privilege(template: dict[str, Any]) -> None:
    bucket_arn = "arn:${AWS::Partition}:s3:::${DataLakeBucket}"
    for name, resource in template["Resources"].items():
        policies = resource.get("Properties", {}).get("Policies")
        if policies is None:
            continue
        statements = list(_policy_statements(_as_list(policies)))
        assert statements, name
        for st in statements:
            assert st["Effect"] == "Allow"
            actions = [str(a) for a in _as_list(st["Action"])]
            resources = [_sub_text(r) for r in _as_list(st["Resource"])]
            where = f"{name}/{st.get('Sid', '?')}"
            for action in actions:
                assert action != "*" and not action.endswith(":*"), f"{where}: {action}"
            assert "*" not in resources, f"{where}: Resource '*'"
            s3_actions = [a for a in actions if a.startswith("s3:")]
            if not s3_actions:
                continue
            for arn in resources:
                assert arn == bucket_arn or arn.startswith(bucket_arn + "/"), f"{where}: {arn}"
            if "s3:ListBucket" in s3_actions:
                assert resources == [bucket_arn], where
                prefixes = _as_list(st["Condition"]["StringLike"]["s3:prefix"])
                assert prefixes and all(_sub_text(p) not in ("", "*") for p in prefixes), where
            else:
                object_prefixes = [arn.removeprefix(bucket_arn + "/") for arn in resources]
                assert all(p.endswith("*") and len(p) > 2 for p in object_prefixes), where
            if {"s3:PutObject", "s3:DeleteObject"} & set(s3_actions):
                assert all(arn.startswith(bucket_arn + "/Raw/TMDB/") for arn in resources), where

    fn_statements = list(
        _policy_statements(_one(template, "AWS::Serverless::Function")["Policies"])
    )
    reads = {
        _sub_text(r)
        for st in fn_statements
        if "s3:GetObject" in _as_list(st["Action"])
        for r in _as_list(st["Resource"])
    }
    assert reads == {f"{bucket_arn}/${{InputPrefix}}*", f"{bucket_arn}/Raw/TMDB/*"}
    # Everything the engine's S3Store does under Raw/TMDB/ (storage.py: write, read, delete):
    # without DeleteObject the ledger could not empty a file nor release its lease lock.
    output = [
        {str(a) for a in _as_list(st["Action"])}
        for st in fn_statements
        if f"{bucket_arn}/Raw/TMDB/*" in {_sub_text(r) for r in _as_list(st["Resource"])}
    ]
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} <= set().union(*output)
    ssm = [st for st in fn_statements if "ssm:GetParameter" in _as_list(st["Action"])]
    assert len(ssm) == 1 and _as_list(ssm[0]["Action"]) == ["ssm:GetParameter"]
    assert _sub_text(ssm[0]["Resource"]).endswith(":parameter${TmdbTokenParameterName}")
    kms = [st for st in fn_statements if "kms:Decrypt" in _as_list(st["Action"])]
    for st in kms:
        assert "kms:ViaService" in st["Condition"]["StringEquals"]

    sm_statements = list(
        _policy_statements(_one(template, "AWS::Serverless::StateMachine")["Policies"])
    )
    states_actions = {
        a for st in sm_statements for a in _as_list(st["Action"]) if a.startswith("states:")
    }
    assert {"states:StartExecution", "states:DescribeExecution", "states:StopExecution"} <= (
        states_actions
    )
    sm_name = _sub_text(_one(template, "AWS::Serverless::StateMachine")["Name"])
    for st in sm_statements:
        if any(a.startswith("states:") for a in _as_list(st["Action"])):
            assert all(sm_name in _sub_text(r) for r in _as_list(st["Resource"]))


# --- the daily refresh schedule ------------------------------------------------------------


def _refresh_schedule(template: dict[str, Any]) -> dict[str, Any]:
    return _one(template, "AWS::Scheduler::Schedule")


def test_refresh_schedule_is_disabled_by_default_and_set_by_parameters(
    template: dict[str, Any],
) -> None:
    params = template["Parameters"]
    defaults = _parameter_defaults(template)
    # Daily at 04:00 UTC, after the previous UTC day's TMDB change lists are complete...
    assert defaults["RefreshSchedule"] == "cron(0 4 * * ? *)"
    # ...but created disabled: a deployment runs nothing until someone enables it.
    assert defaults["RefreshScheduleState"] == "DISABLED"
    assert set(params["RefreshScheduleState"]["AllowedValues"]) == {"ENABLED", "DISABLED"}
    pattern = re.compile(params["RefreshSchedule"]["AllowedPattern"])
    for good in ("cron(0 4 * * ? *)", "cron(30 5 ? * MON-FRI *)", "rate(1 day)"):
        assert pattern.match(good), good
    for bad in ("", "0 4 * * ? *", "at(2024-05-02T04:00:00)", "cron(0 4 * * ? *) "):
        assert not pattern.match(bad), bad

    schedule = _refresh_schedule(template)
    assert schedule["State"] == {"Ref": "RefreshScheduleState"}
    assert schedule["ScheduleExpression"] == {"Ref": "RefreshSchedule"}
    assert schedule["ScheduleExpressionTimezone"] == "UTC"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}

    outputs = template["Outputs"]
    (name,) = _resources_of_type(template, "AWS::Scheduler::Schedule")
    assert outputs["RefreshScheduleName"]["Value"] == {"Ref": name}
    assert outputs["RefreshScheduleArn"]["Value"] == {"Fn::GetAtt": [name, "Arn"]}


def test_refresh_schedule_sends_the_refresh_event_to_the_function(
    template: dict[str, Any], definition: dict[str, Any]
) -> None:
    target = _refresh_schedule(template)["Target"]
    assert target["Arn"] == {"Fn::GetAtt": ["IngestFunction", "Arn"]}
    params = {**_parameter_defaults(template), "DataLakeBucket": "data-lake-x"}
    event = json.loads(substitute(target["Input"], params))
    # Scheduler puts the run's scheduled time in "date"; the engine takes its UTC date.
    assert event == {"action": "refresh", "dest": "s3://data-lake-x", "date": SCHEDULED_TIME}
    # The same lake root the ingest writes to: the function's TMDB_DEST and the state
    # machine's dest.
    env = _one(template, "AWS::Serverless::Function")["Environment"]["Variables"]
    assert event["dest"] == substitute(env["TMDB_DEST"], params)
    assert event["dest"] == _states_named(definition)["PrepareIds"]["Parameters"]["Payload"]["dest"]
    # Only the scheduled time, which every retry of one run repeats: an attribute that changes
    # per attempt (execution-id, attempt-number) would make a retry a different event.
    assert re.findall(r"<aws\.scheduler\.[a-z-]+>", target["Input"]["Fn::Sub"]) == [SCHEDULED_TIME]
    # Delivery retries, given up long before the next day's run.
    retry = target["RetryPolicy"]
    assert 1 <= retry["MaximumRetryAttempts"] <= 3
    assert 60 <= retry["MaximumEventAgeInSeconds"] <= 6 * 3600


def test_refresh_scheduler_role_can_only_invoke_the_function(template: dict[str, Any]) -> None:
    role_arn = _refresh_schedule(template)["Target"]["RoleArn"]
    role_name, attribute = role_arn["Fn::GetAtt"]
    assert attribute == "Arn"
    role = template["Resources"][role_name]
    assert role["Type"] == "AWS::IAM::Role"
    props = role["Properties"]

    # Trusted by EventBridge Scheduler alone, and only on behalf of this account.
    (trust,) = _as_list(props["AssumeRolePolicyDocument"]["Statement"])
    assert trust["Effect"] == "Allow"
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert _as_list(trust["Action"]) == ["sts:AssumeRole"]
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}

    # Allowed one action, on this function (its unqualified ARN and its versions/aliases).
    assert "ManagedPolicyArns" not in props
    statements = list(_policy_statements(props["Policies"]))
    assert statements
    for st in statements:
        assert st["Effect"] == "Allow"
        assert _as_list(st["Action"]) == ["lambda:InvokeFunction"]
        assert {_sub_text(r) for r in _as_list(st["Resource"])} == {
            "${IngestFunction.Arn}",
            "${IngestFunction.Arn}:*",
        }
        assert "Condition" not in st and "NotResource" not in st


def test_asynchronous_invocations_are_retried_twice(template: dict[str, Any]) -> None:
    """An unfinished refresh raises; Lambda then runs the same event again, at most twice."""
    config = _one(template, "AWS::Lambda::EventInvokeConfig")
    assert config["FunctionName"] == {"Ref": "IngestFunction"}
    assert config["Qualifier"] == "$LATEST"  # what the schedule's unqualified ARN invokes
    assert config["MaximumRetryAttempts"] == 2
    # Room for three attempts of the longest timeout plus Lambda's 1 + 2 minute back-off.
    longest = template["Parameters"]["FunctionTimeout"]["MaxValue"]
    assert 3 * longest + 180 <= config["MaximumEventAgeInSeconds"] <= 21600
    # One place sets it: no SAM EventInvokeConfig on the function as well.
    assert "EventInvokeConfig" not in _one(template, "AWS::Serverless::Function")


def test_the_schedule_is_the_only_asynchronous_caller(
    template: dict[str, Any], definition: dict[str, Any]
) -> None:
    """The retry settings govern the schedule's invocations only: the state machine calls
    the function synchronously (it retries by its own Retry rules), and no SAM event source
    invokes it."""
    assert "Events" not in _one(template, "AWS::Serverless::Function")
    tasks = [
        s
        for s in _states_named(definition).values()
        if s.get("Resource") == "arn:aws:states:::lambda:invoke"
    ]
    assert tasks
    for task in tasks:
        assert task["Parameters"].get("InvocationType", "RequestResponse") == "RequestResponse"
    # Nothing else pushes events to it: no EventBridge rule, no resource policy for a service.
    assert len(_resources_of_type(template, "AWS::Scheduler::Schedule")) == 1
    assert not _resources_of_type(template, "AWS::Events::Rule")
    assert not _resources_of_type(template, "AWS::Lambda::Permission")


# --- statemachine/ingest.asl.json ---------------------------------------------------------


def test_asl_placeholders_are_all_substituted(template: dict[str, Any], asl_text: str) -> None:
    json.loads(asl_text)  # valid JSON before substitution too
    used = set(PLACEHOLDER.findall(asl_text))
    # Any other dollar-brace text would reach CloudFormation's substitution as a bad reference.
    assert asl_text.count("${") == len(PLACEHOLDER.findall(asl_text))
    provided = set(_one(template, "AWS::Serverless::StateMachine")["DefinitionSubstitutions"])
    assert used - provided == set(), "placeholders without a DefinitionSubstitution"
    assert provided - used == set(), "DefinitionSubstitutions the definition never uses"


def test_asl_numeric_substitutions_become_numbers(template: dict[str, Any], asl_text: str) -> None:
    """Numbers from parameters must reach Step Functions as JSON numbers: each numeric
    placeholder appears only inside States.StringToJson('${X}')."""
    numeric = {
        name
        for name, spec in template["Parameters"].items()
        if spec["Type"] == "Number" and f"${{{name}}}" in asl_text
    }
    assert numeric >= {"MaxItemsPerBatch", "MapMaxConcurrency", "TmdbGlobalRate"}
    for name in numeric:
        total = asl_text.count(f"${{{name}}}")
        wrapped = asl_text.count(f"States.StringToJson('${{{name}}}')")
        assert total == wrapped, f"${{{name}}} used outside States.StringToJson"


def test_asl_transitions_are_consistent(definition: dict[str, Any]) -> None:
    for scope, block in _scopes(definition):
        states = block["States"]
        assert block["StartAt"] in states, f"{scope}StartAt"
        reachable = {block["StartAt"]}
        for name, state in states.items():
            targets = [state.get("Next"), state.get("Default")]
            targets += [c.get("Next") for c in state.get("Choices", [])]
            targets += [c.get("Next") for c in state.get("Catch", [])]
            for target in filter(None, targets):
                assert target in states, f"{scope}{name} -> {target!r} does not exist"
                reachable.add(target)
            terminal = state["Type"] in {"Succeed", "Fail"} or state.get("End") is True
            if state["Type"] != "Choice":
                assert terminal != ("Next" in state), f"{scope}{name}: needs exactly Next or End"
            else:
                assert state["Choices"], f"{scope}{name}: empty Choice"
        assert reachable == set(states), f"{scope}: unreachable {set(states) - reachable}"


def test_asl_prepare_task(definition: dict[str, Any]) -> None:
    """The prepare Task's fields. What it does when run (first, the whole event it sends,
    the Map over its result, its retries) is in tests/test_asl_on_moto.py."""
    prepare = _states_named(definition)["PrepareIds"]
    assert prepare["Type"] == "Task"
    assert prepare["Resource"] == "arn:aws:states:::lambda:invoke"
    assert prepare["Parameters"]["FunctionName"] == FAKE_ACCOUNT_ARN
    payload = prepare["Parameters"]["Payload"]
    assert payload["action"] == "prepare"
    assert payload["source.$"] == "States.Format('s3://data-lake-x/{}', $.source_key)"
    assert payload["dest"] == "s3://data-lake-x"
    assert set(prepare["ResultSelector"]) >= {"ids_bucket.$", "ids_key.$", "unique_ids.$"}
    assert {e for r in prepare["Retry"] for e in r["ErrorEquals"]} >= LAMBDA_RETRY_ERRORS


def test_asl_distributed_map(definition: dict[str, Any]) -> None:
    """The Map's fields; tests/test_asl_on_moto.py runs them (the file prepare names, its
    batch plan, the BatchInput, MaxConcurrency, the tolerated failures, the ResultWriter)."""
    dmap = _distributed_map(definition)
    assert dmap["ItemProcessor"]["ProcessorConfig"] == {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "STANDARD",
    }
    reader = dmap["ItemReader"]
    assert reader["Resource"] == "arn:aws:states:::s3:getObject"
    assert reader["ReaderConfig"] == {
        "InputType": "CSV",
        "CSVHeaderLocation": "FIRST_ROW",
        "CSVDelimiter": "PIPE",
    }
    assert reader["Parameters"] == {
        "Bucket.$": "$.prepared.ids_bucket",
        "Key.$": "$.prepared.ids_key",
    }
    batcher = dmap["ItemBatcher"]
    assert "MaxItemsPerBatch" in batcher or "MaxItemsPerBatchPath" in batcher
    fields = {key.removesuffix(".$") for key in batcher["BatchInput"]}
    assert fields == BATCH_INPUT_FIELDS
    assert "MaxConcurrency" in dmap or "MaxConcurrencyPath" in dmap
    assert "ToleratedFailurePercentage" in dmap or "ToleratedFailurePercentagePath" in dmap
    writer = dmap["ResultWriter"]
    assert writer["Resource"] == "arn:aws:states:::s3:putObject"
    assert writer["Parameters"] == {"Bucket": "data-lake-x", "Prefix": "Raw/TMDB/_runs/"}


def test_asl_child_workflow_retries_and_continues(definition: dict[str, Any]) -> None:
    """The child workflow's states; the retries and the remaining_items loop are run in
    tests/test_asl_on_moto.py."""
    processor = _distributed_map(definition)["ItemProcessor"]
    states = processor["States"]
    ingest = states[processor["StartAt"]]
    assert ingest["Type"] == "Task"
    assert ingest["Resource"] == "arn:aws:states:::lambda:invoke"
    assert ingest["Parameters"] == {"FunctionName": FAKE_ACCOUNT_ARN, "Payload.$": "$"}
    assert ingest["OutputPath"] == "$.Payload"
    retried = {e for r in ingest["Retry"] for e in r["ErrorEquals"]}
    assert retried >= LAMBDA_RETRY_ERRORS
    lambda_retries = [r for r in ingest["Retry"] if set(r["ErrorEquals"]) & LAMBDA_RETRY_ERRORS]
    assert all(r["BackoffRate"] > 1 and r["MaxAttempts"] >= 3 for r in lambda_retries)
    # TMDB unreachable: a batch tried again a little later, a few times only, never among
    # Lambda's own errors, and no other error of the function is retried.
    (unreachable,) = [r for r in ingest["Retry"] if "TmdbUnreachable" in r["ErrorEquals"]]
    assert unreachable["ErrorEquals"] == ["TmdbUnreachable"]
    assert unreachable["IntervalSeconds"] >= 30 and 1 <= unreachable["MaxAttempts"] <= 2
    assert retried == LAMBDA_RETRY_ERRORS | {"TmdbUnreachable"}

    choice = states[ingest["Next"]]
    assert choice["Type"] == "Choice"
    assert "remaining_items" in json.dumps(choice["Choices"])
    again = states[choice["Choices"][0]["Next"]]
    assert again["Parameters"] == {
        "Items.$": "$.remaining_items",
        "BatchInput.$": "$.batch_input",
    }
    assert again["Next"] == processor["StartAt"]
    assert states[choice["Default"]]["Type"] == "Succeed"


# --- layer/build.py (fast) -----------------------------------------------------------------


def test_build_names_and_limits(build: ModuleType) -> None:
    assert build.zip_name("3.12", "arm64") == "tmdb-ingest-layer-py3.12-arm64.zip"
    assert build.zip_name("3.13", "x86_64") == "tmdb-ingest-layer-py3.13-x86_64.zip"
    args = build.parse_args([])
    assert (args.python, args.arch) == ("3.12", "arm64")
    assert args.out == ROOT / "layer" / "dist"
    assert args.requirements == ROOT / "requirements.txt"
    assert build.size_problems(50 * MIB, 250 * MIB) == []
    assert len(build.size_problems(50 * MIB + 1, 250 * MIB + 1)) == 2
    assert "zipped" in build.size_problems(50 * MIB + 1, 1)[0]


def test_build_prunes_bytecode_and_dependency_tests(build: ModuleType, tmp_path: Path) -> None:
    site = tmp_path / "python"
    for rel in (
        "pkg/__init__.py",
        "pkg/__pycache__/mod.cpython-312.pyc",
        "pkg/stray.pyc",
        "pkg/tests/test_x.py",
        "pkg/sub/test/data.txt",
        "pkg/testing.py",
        "pkg-1.0.dist-info/licenses/LICENSE",
        "bin/tool",
    ):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text("x", encoding="utf-8")
    build.prune(site)
    left = sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file())
    assert left == ["pkg-1.0.dist-info/licenses/LICENSE", "pkg/__init__.py", "pkg/testing.py"]


def test_build_zip_is_deterministic(build: ModuleType, tmp_path: Path) -> None:
    root = tmp_path / "root"
    for rel, text in {"python/b.py": "b = 2\n", "python/a/x.py": "x = 1\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    first, second = tmp_path / "1.zip", tmp_path / "2.zip"
    zipped, unzipped = build.write_zip(root, first)
    os.utime(root / "python" / "b.py", (1_000_000_000, 1_000_000_000))
    build.write_zip(root, second)
    assert first.read_bytes() == second.read_bytes()
    assert (zipped, unzipped) == (first.stat().st_size, 12)
    with zipfile.ZipFile(first) as zf:
        assert zf.namelist() == ["python/a/x.py", "python/b.py"]
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_build_fails_clearly(build: ModuleType, tmp_path: Path, capsys: Any) -> None:
    missing = tmp_path / "missing.txt"
    assert build.main(["--requirements", str(missing), "--out", str(tmp_path)]) == 1
    assert "requirements file not found" in capsys.readouterr().err

    broken = tmp_path / "broken.txt"
    broken.write_text("this is not ===a requirement\n", encoding="utf-8")
    code = build.main(["--requirements", str(broken), "--out", str(tmp_path / "out")])
    assert code == 1
    assert "pip install failed" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("*.zip"))


# --- layer/build.py (slow: real pip builds) ------------------------------------------------


def _build_layer(out: Path, python: str, arch: str) -> tuple[Path, float, float]:
    """Run layer/build.py as a user would; return (zip, zipped MB, unzipped MB) it printed."""
    args = [sys.executable, str(BUILD_SCRIPT), "--python", python, "--arch", arch]
    args += ["--out", str(out)]
    if not (ROOT / "handler.py").exists():
        args.append("--no-project-code")  # the engine is not there yet
    result = subprocess.run(
        args, capture_output=True, text=True, cwd=ROOT, timeout=900, check=False
    )
    assert result.returncode == 0, f"build failed:\n{result.stdout}\n{result.stderr}"
    sizes = dict(re.findall(r"^(zipped|unzipped): ([\d.]+) MB", result.stdout, re.MULTILINE))
    assert set(sizes) == {"zipped", "unzipped"}, result.stdout
    path = out / f"tmdb-ingest-layer-py{python}-{arch}.zip"
    assert path.is_file()
    assert abs(float(sizes["zipped"]) - path.stat().st_size / MIB) < 0.01
    return path, float(sizes["zipped"]), float(sizes["unzipped"])


def _check_layer_zip(path: Path, zipped_mb: float, unzipped_mb: float) -> list[str]:
    assert zipped_mb < 50, f"{path.name}: {zipped_mb} MB zipped"
    assert unzipped_mb < 250, f"{path.name}: {unzipped_mb} MB unzipped"
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert abs(sum(i.file_size for i in zf.infolist()) / MIB - unzipped_mb) < 0.01
    assert names == sorted(names)
    assert all(n.startswith("python/") for n in names)
    assert not [n for n in names if n.endswith((".pyc", ".pyo")) or "__pycache__" in n]
    assert not [n for n in names if re.search(r"^python/[^/]+/(.+/)?tests?/", n)]
    for dist in ("aioboto3", "aiobotocore", "boto3", "botocore", "s3transfer", "aiohttp"):
        assert any(n.startswith(f"python/{dist}/") for n in names), dist
    if (ROOT / "handler.py").exists():
        assert "python/handler.py" in names
        assert "python/tmdb_async/__init__.py" in names
        assert "python/aws_lambda_powertools/__init__.py" in names
    # What ships is what runs in production: no development tools, no progress bar.
    assert not [n for n in names if re.search(r"fake_tmdb|local_map|csvgen|tmdb_devtools", n)]
    assert not [n for n in names if n.startswith("python/tqdm")]
    return names


def _elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF"
    return int.from_bytes(data[18:20], "little")


@pytest.mark.slow
@pytest.mark.parametrize(("python", "arch"), [("3.12", "arm64"), ("3.12", "x86_64")])
def test_lambda_layer_builds_within_limits(tmp_path: Path, python: str, arch: str) -> None:
    path, zipped, unzipped = _build_layer(tmp_path, python, arch)
    names = _check_layer_zip(path, zipped, unzipped)
    machine = {"arm64": 183, "x86_64": 62}[arch]  # ELF e_machine: EM_AARCH64, EM_X86_64
    abi = f"cpython-{python.replace('.', '')}-{'aarch64' if arch == 'arm64' else 'x86_64'}"
    libraries = [n for n in names if n.endswith(".so")]
    assert libraries, "expected native extensions (aiohttp, multidict, yarl, ...)"
    with zipfile.ZipFile(path) as zf:
        for name in libraries:
            assert abi in name or ".abi3." in name, name
            with zf.open(name) as handle:
                assert _elf_machine(handle.read(20)) == machine, name


# --- the layer alone runs the code (slow) ---------------------------------------------------


@pytest.fixture(scope="module")
def local_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer built for this machine (Python 3.11, x86_64), unzipped into an empty folder.

    Lambda runs 3.12/3.13, but native wheels only import in the Python they were built for,
    and this machine has 3.11: build.py accepts --python 3.11 for exactly this test.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    arch = {"x86_64": "x86_64", "aarch64": "arm64"}[os.uname().machine]
    out = tmp_path_factory.mktemp("layer-dist")
    path, zipped, unzipped = _build_layer(out, version, arch)
    _check_layer_zip(path, zipped, unzipped)
    opt = tmp_path_factory.mktemp("opt")
    assert not any(opt.iterdir())
    with zipfile.ZipFile(path) as zf:
        zf.extractall(opt)
    site = opt / "python"
    found = [p for p in site.rglob("*") if p.suffix in {".pyc", ".pyo"} or p.name == "__pycache__"]
    assert not found
    return site


@pytest.fixture
def moto_url(moto_endpoint: str) -> str:
    """The session's moto server (tests/conftest.py), emptied for this test."""
    import urllib.request

    request = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request).close()
    return moto_endpoint


def _aws_client(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _isolated_env(site: Path, endpoint: str, home: Path, **extra: str) -> dict[str, str]:
    """Only the layer on the path, fake AWS credentials, nothing from the developer's shell."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "PYTHONPATH": str(site),
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
        **extra,
    }


def _run_isolated(code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # -S: no site module, so no site-packages (the venv's or the system's) on sys.path; only
    # the standard library and PYTHONPATH (the unzipped layer), as in Lambda's /opt/python.
    return subprocess.run(
        [sys.executable, "-S", "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=env["HOME"],
        timeout=300,
        check=False,
    )


_IMPORT_AND_S3_ROUNDTRIP = """
import asyncio, json, sys
import aioboto3, aiobotocore, aiohttp, boto3, botocore, multidict, s3transfer, yarl

site = sys.argv[1]
modules = (aioboto3, aiobotocore, aiohttp, boto3, botocore, multidict, s3transfer, yarl)
outside = [m.__name__ for m in modules if not m.__file__.startswith(site)]
assert not outside, f"imported from outside the layer: {outside}"

async def main(bucket):
    async with aioboto3.Session().client("s3") as s3:
        got = await s3.get_object(Bucket=bucket, Key="layer-check/in.txt")
        body = await got["Body"].read()
        await s3.put_object(Bucket=bucket, Key="layer-check/out.txt", Body=body.upper())

asyncio.run(main(sys.argv[2]))
print(json.dumps({"botocore": botocore.__version__, "aiobotocore": aiobotocore.__version__}))
"""


@pytest.mark.slow
def test_layer_alone_imports_and_talks_to_s3(
    local_layer: Path, moto_url: str, tmp_path: Path
) -> None:
    from packaging.requirements import Requirement

    # botocore in the layer is the one aiobotocore requires (the runtime's would not be).
    def metadata(dist: str) -> Any:
        (info,) = local_layer.glob(f"{dist}-*.dist-info")
        return email.parser.Parser().parsestr((info / "METADATA").read_text(encoding="utf-8"))

    botocore_version = metadata("botocore")["Version"]
    pins = [Requirement(r) for r in metadata("aiobotocore").get_all("Requires-Dist") or []]
    (pin,) = [r for r in pins if r.name == "botocore" and not r.marker]
    assert pin.specifier.contains(botocore_version), f"botocore {botocore_version} vs {pin}"

    # Without the layer on the path, nothing third-party imports: the isolation is real.
    env = _isolated_env(local_layer, moto_url, tmp_path)
    bare = _run_isolated("import aiohttp", {**env, "PYTHONPATH": ""})
    assert bare.returncode != 0 and "ModuleNotFoundError" in bare.stderr

    s3 = _aws_client("s3", moto_url)
    s3.create_bucket(Bucket="layer-check")
    s3.put_object(Bucket="layer-check", Key="layer-check/in.txt", Body=b"hello from moto")
    result = _run_isolated(_IMPORT_AND_S3_ROUNDTRIP, env, str(local_layer), "layer-check")
    assert result.returncode == 0, result.stderr
    versions = json.loads(result.stdout.strip().splitlines()[-1])
    assert versions["botocore"] == botocore_version
    out = s3.get_object(Bucket="layer-check", Key="layer-check/out.txt")["Body"].read()
    assert out == b"HELLO FROM MOTO"


_INVOKE_HANDLER = """
import json, sys, time
import aiohttp, handler

site, event = sys.argv[1], json.loads(sys.argv[2])
assert handler.__file__.startswith(site) and aiohttp.__file__.startswith(site)

class Context:
    aws_request_id = "req-local"
    function_name = "tmdb-ingest"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:tmdb-ingest"
    def __init__(self, seconds):
        self._deadline = time.monotonic() + seconds
    def get_remaining_time_in_millis(self):
        return int((self._deadline - time.monotonic()) * 1000)

result = handler.lambda_handler(event, Context(float(sys.argv[3])))
print("RESULT " + json.dumps(result))
"""


@contextlib.contextmanager
def _fake_tmdb(token: str, tmp_path: Path) -> Iterator[str]:
    """The project's fake TMDB in its own process, on loopback; yields its base URL."""
    port_file = tmp_path / "fake-tmdb.port"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "tmdb_devtools.fake_tmdb"),
            *("--port", "0", "--token", token, "--port-file", str(port_file)),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"fake TMDB did not start: {proc.stderr}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text().strip()}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run_handler_roundtrip(
    site: Path, moto_url: str, tmp_path: Path, template: dict[str, Any]
) -> dict[str, Any]:
    """Run the state machine (the definition on disk, rendered with MaxItemsPerBatch 2) on
    moto's interpreter, its Lambda tasks answered by ``handler.lambda_handler`` running from
    the unzipped layer only (one ``python -S`` process a call, with the function's deadline).
    The function's environment is template.yaml's, resolved; the token comes from SSM.
    Returns what it saw, for the caller's assertions."""
    from tests.support.sfn import function_environment, template_parameters
    from tests.test_asl_on_moto import machine_on_moto

    bucket, token = "data-lake-x", "layer-test-token"
    fn_env = function_environment(template, template_parameters(template, DataLakeBucket=bucket))
    # The raw CSV: '|'-separated, one row per artist, so ids repeat on consecutive rows.
    ids = ["tt1000001", "tt1000002", "tt1000003", "tt1000004", "tt1000005"]
    rows = ["id|tituloPincipal|nomeArtista"]
    rows += [f"{i}|Filme {n}|Artista {a}" for n, i in enumerate(ids) for a in range(3)]
    source_key = "Raw/Local/CSV/Movies/2022/05/02/movies.csv"

    calls: list[tuple[dict[str, Any], dict[str, Any]]] = []
    failures: list[str] = []
    with _fake_tmdb(token, tmp_path) as tmdb_url:
        env = _isolated_env(site, moto_url, tmp_path, **fn_env, TMDB_BASE_URL=tmdb_url)

        def invoke(function: Any, event: Any) -> tuple[str, bool, str]:
            """``LambdaFunction._invoke_lambda``: the handler from the layer alone."""
            data = json.loads(event) if isinstance(event, str | bytes) else event
            done = _run_isolated(
                _INVOKE_HANDLER, env, str(site), json.dumps(data), str(function.timeout)
            )
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
            if done.returncode != 0 or len(lines) != 1:
                failures.append(f"{data}:\n{done.stdout}\n{done.stderr}")
                error = {"errorType": "LayerRunFailed", "errorMessage": done.stderr[-500:]}
                return json.dumps(error), True, ""
            result = json.loads(lines[0].removeprefix("RESULT "))
            calls.append((data, result))
            return json.dumps(result), False, ""

        machine = machine_on_moto(moto_url, invoke, DataLakeBucket=bucket, MaxItemsPerBatch="2")
        with machine as harness:
            s3, ssm = _aws_client("s3", moto_url), _aws_client("ssm", moto_url)
            s3.put_object(Bucket=bucket, Key=source_key, Body="\n".join(rows).encode() + b"\n")
            ssm.put_parameter(
                Name=fn_env["TMDB_TOKEN_SSM_PARAMETER"], Value=token, Type="SecureString"
            )
            execution = harness.run(
                {"source_key": source_key, "kind": "movie", "date": "2022-05-02"}, timeout=300
            )
    assert not failures, "\n\n".join(failures)
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    prepares = [result for event, result in calls if event.get("action") == "prepare"]
    batches = [(event, result) for event, result in calls if "Items" in event]
    assert len(prepares) == 1 and len(calls) == 1 + len(batches)
    return {
        "bucket": bucket,
        "ids": ids,
        "prepared": prepares[0],
        "batches": batches,
        "output": execution.output,
    }


@pytest.mark.slow
def test_layer_runs_the_handler_like_the_state_machine(
    local_layer: Path, moto_url: str, tmp_path: Path, template: dict[str, Any]
) -> None:
    seen = _run_handler_roundtrip(local_layer, moto_url, tmp_path, template)
    prepared = seen["prepared"]
    assert prepared["unique_ids"] == len(seen["ids"])
    assert prepared["ids_key"].startswith("Raw/TMDB/_work/")
    # The Map read prepare's file: every id in exactly one batch, none cut by the deadline.
    assert sorted(i["id"] for event, _ in seen["batches"] for i in event["Items"]) == seen["ids"]
    assert all(len(event["Items"]) <= 2 for event, _ in seen["batches"])  # MaxItemsPerBatch
    for event, result in seen["batches"]:
        assert result["batch_input"] == event["BatchInput"]
        assert not result.get("remaining_items")
    assert sum(result["records"] for _, result in seen["batches"]) == len(seen["ids"])

    s3 = _aws_client("s3", moto_url)
    listed = s3.list_objects_v2(Bucket=seen["bucket"], Prefix="Raw/TMDB/JSON/2022/05/02/")
    data_keys = [o["Key"] for o in listed.get("Contents", []) if "/_" not in o["Key"]]
    assert data_keys, "no JSON data files were written"
    records = []
    for key in data_keys:
        loaded = json.loads(s3.get_object(Bucket=seen["bucket"], Key=key)["Body"].read())
        assert isinstance(loaded, list) and len(loaded) <= 100
        records += loaded
    assert len(records) == len(seen["ids"])
    everything = json.dumps([seen["prepared"], seen["batches"], seen["output"]])
    assert "layer-test-token" not in everything
