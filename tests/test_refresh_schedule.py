"""The daily refresh schedule in ``template.yaml``: disabled by default, set by parameters,
sending the refresh event to the function through a role that can only invoke it; the
schedule is the function's only asynchronous caller, and its invocations are retried twice."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.support.cfn import (
    as_list,
    default_substitutions,
    one_resource,
    parameter_defaults,
    policy_statements,
    render_asl,
    resources_of_type,
    states_named,
    sub_text,
)
from tests.support.sfn import load_template, substitute

SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def definition(template: dict[str, Any]) -> dict[str, Any]:
    return render_asl(default_substitutions(template))


def _refresh_schedule(template: dict[str, Any]) -> dict[str, Any]:
    return one_resource(template, "AWS::Scheduler::Schedule")


def test_refresh_schedule_is_disabled_by_default_and_set_by_parameters(
    template: dict[str, Any],
) -> None:
    params = template["Parameters"]
    defaults = parameter_defaults(template)
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
    (name,) = resources_of_type(template, "AWS::Scheduler::Schedule")
    assert outputs["RefreshScheduleName"]["Value"] == {"Ref": name}
    assert outputs["RefreshScheduleArn"]["Value"] == {"Fn::GetAtt": [name, "Arn"]}


def test_refresh_schedule_sends_the_refresh_event_to_the_function(
    template: dict[str, Any], definition: dict[str, Any]
) -> None:
    target = _refresh_schedule(template)["Target"]
    assert target["Arn"] == {"Fn::GetAtt": ["IngestFunction", "Arn"]}
    params = {**parameter_defaults(template), "DataLakeBucket": "data-lake-x"}
    event = json.loads(substitute(target["Input"], params))
    # Scheduler puts the run's scheduled time in "date"; the engine takes its UTC date.
    assert event == {"action": "refresh", "dest": "s3://data-lake-x", "date": SCHEDULED_TIME}
    # The same lake root the ingest writes to: the function's TMDB_DEST and the state
    # machine's dest.
    env = one_resource(template, "AWS::Serverless::Function")["Environment"]["Variables"]
    assert event["dest"] == substitute(env["TMDB_DEST"], params)
    assert event["dest"] == states_named(definition)["PrepareIds"]["Parameters"]["Payload"]["dest"]
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
    (trust,) = as_list(props["AssumeRolePolicyDocument"]["Statement"])
    assert trust["Effect"] == "Allow"
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert as_list(trust["Action"]) == ["sts:AssumeRole"]
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}

    # Allowed one action, on this function (its unqualified ARN and its versions/aliases).
    assert "ManagedPolicyArns" not in props
    statements = list(policy_statements(props["Policies"]))
    assert statements
    for st in statements:
        assert st["Effect"] == "Allow"
        assert as_list(st["Action"]) == ["lambda:InvokeFunction"]
        assert {sub_text(r) for r in as_list(st["Resource"])} == {
            "${IngestFunction.Arn}",
            "${IngestFunction.Arn}:*",
        }
        assert "Condition" not in st and "NotResource" not in st


def test_asynchronous_invocations_are_retried_twice(template: dict[str, Any]) -> None:
    """An unfinished refresh raises; Lambda then runs the same event again, at most twice."""
    config = one_resource(template, "AWS::Lambda::EventInvokeConfig")
    assert config["FunctionName"] == {"Ref": "IngestFunction"}
    assert config["Qualifier"] == "$LATEST"  # what the schedule's unqualified ARN invokes
    assert config["MaximumRetryAttempts"] == 2
    # Room for three attempts of the longest timeout plus Lambda's 1 + 2 minute back-off.
    longest = template["Parameters"]["FunctionTimeout"]["MaxValue"]
    assert 3 * longest + 180 <= config["MaximumEventAgeInSeconds"] <= 21600
    # One place sets it: no SAM EventInvokeConfig on the function as well.
    assert "EventInvokeConfig" not in one_resource(template, "AWS::Serverless::Function")


def test_the_schedule_is_the_only_asynchronous_caller(
    template: dict[str, Any], definition: dict[str, Any]
) -> None:
    """The retry settings govern the schedule's invocations only: the state machine calls
    the function synchronously (it retries by its own Retry rules), and no SAM event source
    invokes it."""
    assert "Events" not in one_resource(template, "AWS::Serverless::Function")
    tasks = [
        s
        for s in states_named(definition).values()
        if s.get("Resource") == "arn:aws:states:::lambda:invoke"
    ]
    assert tasks
    for task in tasks:
        assert task["Parameters"].get("InvocationType", "RequestResponse") == "RequestResponse"
    # Nothing else pushes events to it: no EventBridge rule, no resource policy for a service.
    assert len(resources_of_type(template, "AWS::Scheduler::Schedule")) == 1
    assert not resources_of_type(template, "AWS::Events::Rule")
    assert not resources_of_type(template, "AWS::Lambda::Permission")
