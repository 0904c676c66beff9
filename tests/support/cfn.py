"""Reading the deployment in tests: ``template.yaml``'s resources and IAM policies, and the
state machine definition as Step Functions sees it after CloudFormation's substitutions."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.sfn import substitute

ROOT = Path(__file__).resolve().parent.parent.parent
TEMPLATE = ROOT / "template.yaml"
ASL = ROOT / "statemachine" / "ingest.asl.json"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
FAKE_ACCOUNT_ARN = "arn:aws:lambda:us-east-1:123456789012:function:tmdb-ingest"


def resources_of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def one_resource(template: dict[str, Any], kind: str) -> dict[str, Any]:
    found = resources_of_type(template, kind)
    assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
    return next(iter(found.values()))["Properties"]


def parameter_defaults(template: dict[str, Any]) -> dict[str, str]:
    return {
        name: str(spec["Default"])
        for name, spec in template["Parameters"].items()
        if "Default" in spec
    }


def sub_text(value: Any) -> str:
    """The text of a plain or !Sub string (placeholders left as they are)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("Fn::Sub"), str):
        return value["Fn::Sub"]
    if isinstance(value, dict) and "Ref" in value:
        return "${" + value["Ref"] + "}"
    raise AssertionError(f"expected a string or !Sub string, got {value!r}")


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_statements(policies: list[Any]) -> Iterator[dict[str, Any]]:
    """Every IAM statement of a SAM ``Policies`` list (both branches of an !If)."""
    for policy in policies:
        if isinstance(policy, dict) and "Fn::If" in policy:
            _, yes, no = policy["Fn::If"]
            yield from policy_statements([p for p in (yes, no) if p != {"Ref": "AWS::NoValue"}])
        elif isinstance(policy, dict) and "Statement" in policy:
            yield from as_list(policy["Statement"])
        elif isinstance(policy, dict) and "PolicyDocument" in policy:  # AWS::IAM::Role inline
            yield from as_list(policy["PolicyDocument"]["Statement"])
        else:
            # A SAM policy template: only the ones reviewed here are allowed.
            assert isinstance(policy, dict), f"unexpected managed policy {policy!r}"
            assert set(policy) <= {"LambdaInvokePolicy"}, f"unreviewed policy template {policy}"


def render_asl(substitutions: dict[str, str]) -> dict[str, Any]:
    """The definition as Step Functions sees it after CloudFormation's substitutions."""
    text = ASL.read_text(encoding="utf-8")
    return json.loads(PLACEHOLDER.sub(lambda m: substitutions[m.group(1)], text))


def default_substitutions(template: dict[str, Any], **params: str) -> dict[str, str]:
    """DefinitionSubstitutions resolved with the parameters' defaults (overridable)."""
    values = {**parameter_defaults(template), "DataLakeBucket": "data-lake-x", **params}
    subs = one_resource(template, "AWS::Serverless::StateMachine")["DefinitionSubstitutions"]
    resolved: dict[str, str] = {}
    for name, value in subs.items():
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            resolved[name] = FAKE_ACCOUNT_ARN
        else:
            resolved[name] = substitute(value, values)
    return resolved


def walk_states(states: dict[str, Any], where: str = "") -> Iterator[tuple[str, str, dict]]:
    """(scope, name, state) for every state, nested Map processors included."""
    for name, state in states.items():
        yield where, name, state
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from walk_states(processor["States"], f"{where}{name}/")


def scopes(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "", definition
    for scope, name, state in walk_states(definition["States"]):
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield f"{scope}{name}/", processor


def states_named(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: state for _, name, state in walk_states(definition["States"])}


def distributed_map(definition: dict[str, Any]) -> dict[str, Any]:
    maps = [
        s
        for s in states_named(definition).values()
        if s["Type"] == "Map"
        and s.get("ItemProcessor", {}).get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED"
    ]
    assert len(maps) == 1, "expected exactly one Distributed Map"
    return maps[0]


def run_cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
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
