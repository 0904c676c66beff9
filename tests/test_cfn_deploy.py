"""The SAM-transformed template deploys on moto's CloudFormation, for every resource type moto
supports; the others, and what depends on them, are checked structurally.

The test walks whatever resources the rendered template holds and sorts them by moto's own
list of CloudFormation models, so resources added to ``template.yaml`` later are deployed or
checked without editing it. moto skips a type it does not model with only a log line, and
then fails on any ``!GetAtt`` of it, so those resources are left out of the moto stack
(with every resource and output that references them) instead of silently half-created."""

from __future__ import annotations

import ast
import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.cfn import run_cfn_lint
from tests.support.sam_render import LAYER_BUCKET, LAYER_KEY, render, sam_python

pytestmark = pytest.mark.skipif(
    sam_python() is None, reason="no SAM CLI environment (make validate-template builds it)"
)

PARAMETERS = {"DataLakeBucket": "data-lake-x"}
STACK = "tmdb-ingest"
_SUB_NAME = re.compile(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}")


def references(value: Any) -> set[str]:
    """Every logical name a template value refers to: Ref, GetAtt, Sub placeholders
    (parameters and pseudo parameters included; callers keep the resources)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                target = inner[0] if isinstance(inner, list) else str(inner).split(".")[0]
                found.add(str(target))
            elif key == "Fn::Sub":
                text = inner[0] if isinstance(inner, list) else inner
                found.update(_SUB_NAME.findall(str(text)))
                if isinstance(inner, list):
                    found.update(references(inner[1]))
            else:
                found.update(references(inner))
    elif isinstance(value, list):
        for inner in value:
            found.update(references(inner))
    return found


def depends_on(resource: dict[str, Any]) -> set[str]:
    names = resource.get("DependsOn", [])
    return references(resource.get("Properties", {})) | set(
        [names] if isinstance(names, str) else names
    )


def moto_supported_types() -> set[str]:
    from moto.cloudformation.parsing import get_model_map

    return set(get_model_map())


def split_by_moto_support(
    template: dict[str, Any], supported: set[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """(deployable name -> type, left out name -> why): a resource is left out when moto
    does not model its type, or when it refers to a resource left out."""
    resources = template["Resources"]
    left_out = {
        name: f"moto has no CloudFormation model for {r['Type']}"
        for name, r in resources.items()
        if r["Type"] not in supported
    }
    changed = True
    while changed:
        changed = False
        for name, resource in resources.items():
            blocked = sorted(depends_on(resource) & set(left_out))
            if name not in left_out and blocked:
                left_out[name] = f"refers to {', '.join(blocked)}"
                changed = True
    kept = {name: r["Type"] for name, r in resources.items() if name not in left_out}
    return kept, left_out


def condition_values(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, bool]:
    """The template's Conditions for these parameter values (and the defaults)."""
    values = {
        name: str(spec["Default"])
        for name, spec in template.get("Parameters", {}).items()
        if "Default" in spec
    } | parameters
    conditions = template.get("Conditions", {})

    def value(node: Any) -> Any:
        if isinstance(node, dict) and set(node) == {"Ref"}:
            return values[node["Ref"]]
        return node

    def holds(node: Any) -> bool:
        (function, args), *_ = node.items()
        if function == "Fn::Equals":
            return bool(value(args[0]) == value(args[1]))
        if function == "Fn::Not":
            return not holds(args[0])
        if function == "Fn::And":
            return all(holds(a) for a in args)
        if function == "Fn::Or":
            return any(holds(a) for a in args)
        if function == "Condition":
            return holds(conditions[args])
        raise AssertionError(f"condition function {function} not handled here")

    return {name: holds(node) for name, node in conditions.items()}


def without_novalue_items(value: Any, conditions: dict[str, bool]) -> Any:
    """``value`` without the list items that are an ``!If`` choosing ``AWS::NoValue``.

    CloudFormation drops such an item; moto 5.2's ``clean_json`` keeps it as ``None`` in the
    list, and its IAM role then fails on ``Policies: [None]``."""
    if isinstance(value, dict):
        return {k: without_novalue_items(v, conditions) for k, v in value.items()}
    if isinstance(value, list):
        kept = []
        for item in value:
            if isinstance(item, dict) and set(item) == {"Fn::If"}:
                name, yes, no = item["Fn::If"]
                if (yes if conditions[name] else no) == {"Ref": "AWS::NoValue"}:
                    continue
            kept.append(without_novalue_items(item, conditions))
        return kept
    return value


def moto_template(
    template: dict[str, Any], kept: dict[str, str], parameters: dict[str, str] | None = None
) -> dict[str, Any]:
    """The rendered template with only the resources moto can create, the outputs that name
    only those, and no list item CloudFormation would drop as ``AWS::NoValue``."""
    conditions = condition_values(template, parameters or {})
    resources = {
        name: without_novalue_items(template["Resources"][name], conditions) for name in kept
    }
    outputs = {
        name: output
        for name, output in template.get("Outputs", {}).items()
        if not (references(output) & (set(template["Resources"]) - set(kept)))
    }
    return {**template, "Resources": resources, "Outputs": outputs}


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    return render(PARAMETERS)


@pytest.fixture
def aws(s3_env: str) -> Iterator[dict[str, Any]]:
    """Client arguments for moto (reset by ``s3_env``), with the layer's zip uploaded where
    the rendered LayerVersion points."""
    client_args = {"endpoint_url": s3_env, "region_name": "us-east-1"}
    s3 = boto3.client("s3", **client_args)
    s3.create_bucket(Bucket=LAYER_BUCKET)
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as archive:
        archive.writestr("python/placeholder.py", "")
    s3.put_object(Bucket=LAYER_BUCKET, Key=LAYER_KEY, Body=layer.getvalue())
    yield client_args


def _deploy(template: dict[str, Any], aws: dict[str, Any], **parameters: str) -> list[Any]:
    cfn = boto3.client("cloudformation", **aws)
    cfn.create_stack(
        StackName=STACK,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
    )
    (stack,) = cfn.describe_stacks(StackName=STACK)["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    summaries: list[Any] = cfn.list_stack_resources(StackName=STACK)["StackResourceSummaries"]
    return summaries


def test_references_finds_ref_getatt_and_sub_names() -> None:
    value = {
        "A": {"Ref": "Fn"},
        "B": {"Fn::GetAtt": ["Role", "Arn"]},
        "C": {"Fn::GetAtt": "Queue.Arn"},
        "D": {"Fn::Sub": "arn:${AWS::Partition}:x:${Topic}:${Schedule.Arn}"},
        "E": [{"Fn::Sub": ["${X}-${Y}", {"Y": {"Ref": "Bucket"}}]}],
    }
    assert references(value) == {"Fn", "Role", "Queue", "Topic", "Schedule", "X", "Y", "Bucket"}


def test_an_unsupported_resource_takes_out_what_refers_to_it_and_its_outputs() -> None:
    template = {
        "Resources": {
            "Fn": {"Type": "AWS::Lambda::Function", "Properties": {}},
            "Sched": {"Type": "Odd::Type", "Properties": {"Target": {"Ref": "Fn"}}},
            "Alarm": {"Type": "AWS::Lambda::Function", "Properties": {"X": {"Ref": "Sched"}}},
            "Later": {"Type": "AWS::Lambda::Function", "DependsOn": "Alarm"},
        },
        "Outputs": {"S": {"Value": {"Fn::GetAtt": ["Sched", "Arn"]}}, "F": {"Value": "x"}},
    }
    kept, left_out = split_by_moto_support(template, {"AWS::Lambda::Function"})
    assert kept == {"Fn": "AWS::Lambda::Function"}
    assert left_out == {
        "Sched": "moto has no CloudFormation model for Odd::Type",
        "Alarm": "refers to Sched",
        "Later": "refers to Alarm",
    }
    assert set(moto_template(template, kept)["Outputs"]) == {"F"}


@pytest.mark.slow
@pytest.mark.parametrize("tracing", ["Disabled", "Active"])
def test_the_rendered_stack_deploys_on_moto_for_every_type_moto_supports(
    aws: dict[str, Any], tracing: str
) -> None:
    template = render({**PARAMETERS, "Tracing": tracing})
    kept, left_out = split_by_moto_support(template, moto_supported_types())
    assert "IngestFunction" in kept and "IngestStateMachine" in kept, left_out

    parameters = {**PARAMETERS, "Tracing": tracing}
    created = _deploy(moto_template(template, kept, parameters), aws, **parameters)
    assert {r["LogicalResourceId"]: r["ResourceType"] for r in created} == kept
    # (moto gives AWS::Lambda::LayerVersion no physical id: the function's Layers is checked)
    assert all(r["ResourceStatus"] == "CREATE_COMPLETE" for r in created), created
    print("moto created:", sorted(kept.items()), "left out:", sorted(left_out.items()))

    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in created}
    function = boto3.client("lambda", **aws).get_function_configuration(
        FunctionName=physical["IngestFunction"]
    )
    assert function["Environment"]["Variables"]["TMDB_TRACING"] == tracing
    # moto's CloudFormation passes neither Lambda's TracingConfig nor Step Functions'
    # TracingConfiguration on (both read as off here): the tracing settings themselves are
    # checked on the rendered template, what moto does create is checked below.
    iam = boto3.client("iam", **aws)
    role = physical["IngestStateMachineRole"]
    actions = {
        action
        for name in iam.list_role_policies(RoleName=role)["PolicyNames"]
        for statement in _statements(iam.get_role_policy(RoleName=role, PolicyName=name))
        for action in _as_list(statement["Action"])
    }
    assert "states:StartExecution" in actions
    assert ("xray:PutTraceSegments" in actions) == (tracing == "Active"), sorted(actions)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    document = policy["PolicyDocument"]
    if isinstance(document, str):  # moto stores a CloudFormation policy dict as its repr
        document = ast.literal_eval(document) if document.startswith("{'") else json.loads(document)
    return _as_list(document["Statement"])


def test_resources_moto_cannot_create_pass_cfn_lint_and_refer_only_to_the_template(
    rendered: dict[str, Any], tmp_path: Path
) -> None:
    _, left_out = split_by_moto_support(rendered, moto_supported_types())
    known = set(rendered["Resources"]) | set(rendered.get("Parameters", {}))
    for name in left_out:
        names = depends_on(rendered["Resources"][name])
        dangling = {n for n in names if not n.startswith("AWS::")} - known
        assert not dangling, f"{name} refers to {sorted(dangling)}"
    path = tmp_path / "rendered.json"
    path.write_text(json.dumps(rendered), encoding="utf-8")
    lint = run_cfn_lint(path)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_tracing_is_off_by_default_and_sam_adds_xray_only_when_active() -> None:
    off, on = render(PARAMETERS), render({**PARAMETERS, "Tracing": "Active"})
    assert off["Parameters"]["Tracing"]["Default"] == "Disabled"

    def role_managed(template: dict[str, Any]) -> list[str]:
        arns = template["Resources"]["IngestFunctionRole"]["Properties"]["ManagedPolicyArns"]
        return [str(a).rsplit("/", 1)[-1] for a in arns]

    assert "TracingConfig" not in off["Resources"]["IngestFunction"]["Properties"]
    assert "AWSXrayWriteOnlyAccess" not in role_managed(off)
    assert on["Resources"]["IngestFunction"]["Properties"]["TracingConfig"] == {
        "Mode": {"Ref": "Tracing"}
    }
    assert "AWSXrayWriteOnlyAccess" in role_managed(on)
    machine = on["Resources"]["IngestStateMachine"]["Properties"]
    assert machine["TracingConfiguration"] == {"Enabled": {"Fn::If": ["TracingOn", True, False]}}
    (xray,) = [
        policy
        for policy in on["Resources"]["IngestStateMachineRole"]["Properties"]["Policies"]
        if "Fn::If" in policy
    ]
    condition, statement, otherwise = xray["Fn::If"]
    assert condition == "TracingOn" and otherwise == {"Ref": "AWS::NoValue"}
    (written,) = statement["PolicyDocument"]["Statement"]
    assert written["Action"] == [
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
    ]
