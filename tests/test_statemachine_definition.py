"""``statemachine/ingest.asl.json``'s structure: its ``${...}`` substitutions (all provided,
numbers reaching Step Functions as numbers), cfn-lint's Amazon States Language schema, its
transitions, and the fields of the prepare Task, the Distributed Map and the child workflow.

What the definition does when it runs is tested on moto's Step Functions interpreter:
``tests/test_asl_on_moto.py`` (with a scripted function) and ``tests/test_state_machine.py``
(with the handler)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.cfn import (
    ASL,
    FAKE_ACCOUNT_ARN,
    PLACEHOLDER,
    default_substitutions,
    distributed_map,
    one_resource,
    render_asl,
    run_cfn_lint,
    scopes,
    states_named,
)
from tests.support.sfn import load_template

LAMBDA_RETRY_ERRORS = {
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
}
BATCH_INPUT_FIELDS = {"dest", "kind", "date", "global_rate", "max_concurrency"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def asl_text() -> str:
    return ASL.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def definition(template: dict[str, Any]) -> dict[str, Any]:
    return render_asl(default_substitutions(template))


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
    result = run_cfn_lint(path)
    assert result.returncode == 0, f"cfn-lint found problems:\n{result.stdout}{result.stderr}"


def test_asl_placeholders_are_all_substituted(template: dict[str, Any], asl_text: str) -> None:
    json.loads(asl_text)  # valid JSON before substitution too
    used = set(PLACEHOLDER.findall(asl_text))
    # Any other dollar-brace text would reach CloudFormation's substitution as a bad reference.
    assert asl_text.count("${") == len(PLACEHOLDER.findall(asl_text))
    provided = set(
        one_resource(template, "AWS::Serverless::StateMachine")["DefinitionSubstitutions"]
    )
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
    for scope, block in scopes(definition):
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
    prepare = states_named(definition)["PrepareIds"]
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
    dmap = distributed_map(definition)
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
    processor = distributed_map(definition)["ItemProcessor"]
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
