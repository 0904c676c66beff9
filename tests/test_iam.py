"""The template's IAM policies are least privilege: no wildcard action or resource, S3 only
on the data lake bucket and writes only under Raw/TMDB/, the token's one SSM parameter, the
state machine only on its own executions. (The refresh scheduler's role:
tests/test_refresh_schedule.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.cfn import (
    as_list,
    one_resource,
    policy_statements,
    sub_text,
)
from tests.support.sfn import load_template


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def test_iam_is_least_privilege(template: dict[str, Any]) -> None:
    bucket_arn = "arn:${AWS::Partition}:s3:::${DataLakeBucket}"
    for name, resource in template["Resources"].items():
        policies = resource.get("Properties", {}).get("Policies")
        if policies is None:
            continue
        statements = list(policy_statements(as_list(policies)))
        assert statements, name
        for st in statements:
            assert st["Effect"] == "Allow"
            actions = [str(a) for a in as_list(st["Action"])]
            resources = [sub_text(r) for r in as_list(st["Resource"])]
            where = f"{name}/{st.get('Sid', '?')}"
            for action in actions:
                assert action != "*" and not action.endswith(":*"), f"{where}: {action}"
            # X-Ray's write actions have no resource types: AWS requires "*" for them
            # (docs.aws.amazon.com/service-authorization/latest/reference/list_awsx-ray.html).
            xray_only = all(a.startswith("xray:") for a in actions)
            assert "*" not in resources or xray_only, f"{where}: Resource '*'"
            s3_actions = [a for a in actions if a.startswith("s3:")]
            if not s3_actions:
                continue
            for arn in resources:
                assert arn == bucket_arn or arn.startswith(bucket_arn + "/"), f"{where}: {arn}"
            if "s3:ListBucket" in s3_actions:
                assert resources == [bucket_arn], where
                prefixes = as_list(st["Condition"]["StringLike"]["s3:prefix"])
                assert prefixes and all(sub_text(p) not in ("", "*") for p in prefixes), where
            else:
                object_prefixes = [arn.removeprefix(bucket_arn + "/") for arn in resources]
                assert all(p.endswith("*") and len(p) > 2 for p in object_prefixes), where
            if {"s3:PutObject", "s3:DeleteObject"} & set(s3_actions):
                assert all(arn.startswith(bucket_arn + "/Raw/TMDB/") for arn in resources), where

    fn_statements = list(
        policy_statements(one_resource(template, "AWS::Serverless::Function")["Policies"])
    )
    reads = {
        sub_text(r)
        for st in fn_statements
        if "s3:GetObject" in as_list(st["Action"])
        for r in as_list(st["Resource"])
    }
    assert reads == {f"{bucket_arn}/${{InputPrefix}}*", f"{bucket_arn}/Raw/TMDB/*"}
    # Everything the engine's S3Store does under Raw/TMDB/ (storage.py: write, read, delete):
    # without DeleteObject the ledger could not empty a file nor release its lease lock.
    output = [
        {str(a) for a in as_list(st["Action"])}
        for st in fn_statements
        if f"{bucket_arn}/Raw/TMDB/*" in {sub_text(r) for r in as_list(st["Resource"])}
    ]
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} <= set().union(*output)
    ssm = [st for st in fn_statements if "ssm:GetParameter" in as_list(st["Action"])]
    assert len(ssm) == 1 and as_list(ssm[0]["Action"]) == ["ssm:GetParameter"]
    assert sub_text(ssm[0]["Resource"]).endswith(":parameter${TmdbTokenParameterName}")
    kms = [st for st in fn_statements if "kms:Decrypt" in as_list(st["Action"])]
    for st in kms:
        assert "kms:ViaService" in st["Condition"]["StringEquals"]

    sm_statements = list(
        policy_statements(one_resource(template, "AWS::Serverless::StateMachine")["Policies"])
    )
    states_actions = {
        a for st in sm_statements for a in as_list(st["Action"]) if a.startswith("states:")
    }
    assert {"states:StartExecution", "states:DescribeExecution", "states:StopExecution"} <= (
        states_actions
    )
    sm_name = sub_text(one_resource(template, "AWS::Serverless::StateMachine")["Name"])
    for st in sm_statements:
        if any(a.startswith("states:") for a in as_list(st["Action"])):
            assert all(sm_name in sub_text(r) for r in as_list(st["Resource"]))
