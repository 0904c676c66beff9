"""The template's IAM policies are least privilege: no wildcard action or resource, S3 only
on the data lake bucket and writes only under Raw/TMDB/, the token's one SSM parameter, the
state machine only on its own executions. (The refresh scheduler's role:
tests/test_refresh_schedule.py.)

The function's role is also evaluated, rendered for a set of parameters, against every
request the function makes (:data:`NEEDED`, read from the code's AWS calls) and against
requests it must not be able to make (:data:`FORBIDDEN`), by :func:`decide`: a small
evaluator of identity policies under AWS's rules (an explicit Deny wins; else a matching
Allow whose conditions hold; else denied). moto's IAM enforcement cannot do this: it
evaluates no condition whose key the request does not carry, and outside S3 it checks
every request against resource "*" (docs/aws-and-tooling.md).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.cfn import (
    as_list,
    one_resource,
    policy_statements,
    sub_text,
)
from tests.support.cfn_render import STACK, Rendered
from tests.support.sfn import ACCOUNT, BUCKET, REGION, ROOT, load_template
from tmdb_async.jobs.refresh.plan import PLAN_FOLDER
from tmdb_async.jobs.refresh.state import STATE_KEY
from tmdb_async.lake.idmap_format import BASE_KEY, SEGMENT_PREFIX
from tmdb_async.lake.layout import date_folder
from tmdb_async.lake.ledger import LEDGER_FOLDER, SIDECAR_FOLDER
from tmdb_async.lake.manifest import MANIFEST_FOLDER
from tmdb_async.lake.runstate import RUNS_FOLDER


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
    # without DeleteObject the ledger could not empty a file nor release its lease lock. The
    # writes are narrowed to the prefixes the function writes (not the Map's _runs/).
    output = [
        {str(a) for a in as_list(st["Action"])}
        for st in fn_statements
        if any(sub_text(r).startswith(f"{bucket_arn}/Raw/TMDB/") for r in as_list(st["Resource"]))
    ]
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} <= set().union(*output)
    writes = {
        sub_text(r)
        for st in fn_statements
        if {"s3:PutObject", "s3:DeleteObject"} & set(as_list(st["Action"]))
        for r in as_list(st["Resource"])
    }
    assert writes == {f"{bucket_arn}/Raw/TMDB/{p}/*" for p in ("JSON", "_state", "_work")}
    fn_actions = {a for st in fn_statements for a in as_list(st["Action"])}
    assert "s3:AbortMultipartUpload" not in fn_actions  # every upload is one PutObject
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


# --- the rendered role against the requests the function makes --------------------------------

TOKEN_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555"
LAKE_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/66666666-7777-8888-9999-000000000000"
OBJECT = f"arn:aws:s3:::{BUCKET}/"
DAY = date_folder(dt.date(2026, 11, 17))
STATE_MACHINE = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{STACK}-ingest"
TOKEN = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/tmdb-ingest/read-access-token"
VIA_S3 = {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
VIA_SSM = {"kms:ViaService": f"ssm.{REGION}.amazonaws.com"}


@dataclass(frozen=True)
class Request:
    """One authorization request: an action on a resource, with its condition keys."""

    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)


def _s3(action: str, key: str) -> Request:
    return Request(f"s3:{action}", OBJECT + key)


def _list(prefix: str) -> Request:
    return Request("s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {"s3:prefix": prefix})


# Every request the function makes, with the code that makes it. S3: storage.py's S3Store
# (write = PutObject, conditional or not; read = GetObject; delete = DeleteObject,
# conditional or not; list = ListObjectsV2, i.e. s3:ListBucket with s3:prefix) and _read_s3
# (ranged GetObject of the source CSV); prepare.py (the ids CSV for the Map,
# states:ListExecutions); events.py (the token: ssm:GetParameter with decryption).
NEEDED = [
    _s3("GetObject", "Raw/Local/CSV/movies.csv"),  # the source CSV (ranged reads)
    *(
        _s3(action, key)
        for key in (
            f"{DAY}/movies-00000001-00.json",  # a data file
            f"{DAY}/movies-00000001-00.jsonl",
            f"{DAY}/{SIDECAR_FOLDER}/movies-00000001.json",
            f"{DAY}/{MANIFEST_FOLDER}/movies-abc.json",
            f"{DAY}/{LEDGER_FOLDER}/lease.json",  # the ledger's commits and its lease lock
            f"{SEGMENT_PREFIX}000001.json",  # the id map
            BASE_KEY,
            f"{RUNS_FOLDER}/movies-abc.json",  # run records
            STATE_KEY,  # the refresh's state
            f"{PLAN_FOLDER}/2026-11-17.json",  # its plan
        )
        for action in ("GetObject", "PutObject", "DeleteObject")
    ),
    _s3("PutObject", "Raw/TMDB/_work/movies-0123456789ab/ids.csv"),  # prepare, for the Map
    _list(f"{DAY}/"),
    _list(f"{DAY}/{LEDGER_FOLDER}/"),
    _list(SEGMENT_PREFIX),
    _list("Raw/TMDB/JSON/"),
    _list("Raw/TMDB/_state/"),
    Request("ssm:GetParameter", TOKEN),
    Request("states:ListExecutions", STATE_MACHINE),
    # With the KMS parameters set: S3 and SSM use the keys on the function's behalf.
    Request("kms:Decrypt", TOKEN_KEY, VIA_SSM),
    Request("kms:Decrypt", LAKE_KEY, VIA_S3),
    Request("kms:GenerateDataKey", LAKE_KEY, VIA_S3),
]

FORBIDDEN = [
    _s3("PutObject", "Raw/TMDB/_runs/abc/manifest.json"),  # the Map's results
    _s3("DeleteObject", "Raw/TMDB/_runs/abc/SUCCEEDED_0.json"),
    _s3("DeleteObject", "Raw/TMDB/_work/movies-0123456789ab/ids.csv"),  # never deleted
    _s3("PutObject", "Raw/TMDB/other.json"),
    _s3("AbortMultipartUpload", f"{DAY}/movies-00000001-00.json"),
    _s3("PutObject", "Raw/Local/CSV/movies.csv"),  # the input is read-only
    _s3("GetObject", "Raw/Other/secret.csv"),
    Request("s3:PutObject", f"arn:aws:s3:::another-bucket/{DAY}/movies-00000001-00.json"),
    Request("s3:GetObject", "arn:aws:s3:::another-bucket/Raw/Local/CSV/movies.csv"),
    _list(""),  # the whole bucket
    Request("s3:ListBucket", "arn:aws:s3:::another-bucket", {"s3:prefix": "Raw/TMDB/"}),
    Request("ssm:GetParameter", TOKEN.replace("read-access-token", "other")),
    Request("states:StartExecution", STATE_MACHINE),
    Request("kms:Decrypt", LAKE_KEY),  # directly, not through S3
    Request("kms:Decrypt", LAKE_KEY, VIA_SSM),
    Request("kms:Decrypt", TOKEN_KEY, VIA_S3),  # the two keys are not interchangeable
    Request("kms:GenerateDataKey", TOKEN_KEY, VIA_SSM),
    Request("kms:Encrypt", LAKE_KEY, VIA_S3),
]


def _glob(pattern: str, value: str, *, case: bool) -> bool:
    """IAM's wildcards: * any run of characters, ? one character; nothing else is special."""
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _string_equals(want: str, got: str) -> bool:
    return want == got


def _string_like(want: str, got: str) -> bool:
    return _glob(want, got, case=True)


_OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": _string_equals,
    "StringLike": _string_like,
}


def _conditions_hold(conditions: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    """Every operator and key must hold; a key's values are alternatives; a missing key
    fails (no ...IfExists operator is used)."""
    for operator, keys in conditions.items():
        test = _OPERATORS[operator]  # an operator the evaluator does not know fails loudly
        for key, values in keys.items():
            if key not in context or not any(test(v, context[key]) for v in as_list(values)):
                return False
    return True


def decide(statements: Iterable[Mapping[str, Any]], request: Request) -> bool:
    """True if the identity policy statements allow ``request``."""
    allowed = False
    for st in statements:
        assert set(st) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, st
        if not any(_glob(a, request.action, case=False) for a in as_list(st["Action"])):
            continue
        if not any(_glob(r, request.resource, case=True) for r in as_list(st["Resource"])):
            continue
        if not _conditions_hold(st.get("Condition", {}), request.context):
            continue
        if st["Effect"] == "Deny":
            return False
        allowed = True
    return allowed


def function_statements(**params: str) -> list[dict[str, Any]]:
    """The function role's inline statements as deployed with ``params``."""
    rendered = Rendered(load_template(), **params)
    fn = one_resource(rendered.template, "AWS::Serverless::Function")
    documents = rendered.value(fn["Policies"])
    return [st for doc in documents for st in as_list(doc["Statement"])]


@pytest.fixture(scope="module")
def with_keys() -> list[dict[str, Any]]:
    return function_statements(TmdbTokenKmsKeyArn=TOKEN_KEY, DataLakeKmsKeyArn=LAKE_KEY)


def test_the_evaluator_follows_iam_rules() -> None:
    """Deny wins over Allow; a missing condition key fails; action names ignore case,
    resources do not."""
    allow = {"Effect": "Allow", "Action": "S3:Get*", "Resource": "arn:aws:s3:::b/A/*"}
    deny = {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/A/x"}
    assert decide([allow], Request("s3:GetObject", "arn:aws:s3:::b/A/y"))
    assert not decide([allow], Request("s3:GetObject", "arn:aws:s3:::b/a/y"))
    assert not decide([allow, deny], Request("s3:GetObject", "arn:aws:s3:::b/A/x"))
    conditional = {**allow, "Condition": {"StringEquals": {"kms:ViaService": "s3.x"}}}
    assert not decide([conditional], Request("s3:GetObject", "arn:aws:s3:::b/A/y"))
    assert decide(
        [conditional], Request("s3:GetObject", "arn:aws:s3:::b/A/y", {"kms:ViaService": "s3.x"})
    )


@pytest.mark.parametrize("request_", NEEDED, ids=lambda r: f"{r.action} {r.resource[-48:]}")
def test_the_function_role_allows_every_request_the_function_makes(
    with_keys: list[dict[str, Any]], request_: Request
) -> None:
    assert decide(with_keys, request_)


@pytest.mark.parametrize("request_", FORBIDDEN, ids=lambda r: f"{r.action} {r.resource[-48:]}")
def test_the_function_role_denies_what_the_function_does_not_do(
    with_keys: list[dict[str, Any]], request_: Request
) -> None:
    assert not decide(with_keys, request_)


def test_without_kms_parameters_the_role_grants_no_kms_use() -> None:
    """The defaults (empty key ARNs: AWS managed keys) add no KMS statement."""
    statements = function_statements()
    assert not [st for st in statements if any(a.startswith("kms:") for a in as_list(st["Action"]))]
    for request in NEEDED:
        assert decide(statements, request) == (not request.action.startswith("kms:")), request


_CALL = re.compile(r"\b_?(?:s3|sfn)\.([a-z0-9_]+)\(")
_PAGINATOR = re.compile(r"get_paginator\(\s*\"([a-z0-9_]+)\"")
_ACTION_OF = {
    "get_object": "s3:GetObject",
    "put_object": "s3:PutObject",
    # a ledger commit's staged file moved into place: PutObject on the destination (and
    # GetObject on the source, both under Raw/TMDB/)
    "copy_object": "s3:PutObject",
    "delete_object": "s3:DeleteObject",
    "list_objects_v2": "s3:ListBucket",
    "list_executions": "states:ListExecutions",
}


def test_the_request_list_covers_every_aws_call_in_the_code() -> None:
    """Each S3 and Step Functions call in tmdb_async/ has its action in NEEDED (a new call
    with an unknown action fails here until it is added, with its grant); the token is read
    through Powertools' SSM provider."""
    called = set()
    for path in (ROOT / "tmdb_async").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for operation in [*_CALL.findall(text), *_PAGINATOR.findall(text)]:
            if operation != "get_paginator":
                assert operation in _ACTION_OF, f"{path}: unlisted AWS call {operation}"
                called.add(_ACTION_OF[operation])
    events = (ROOT / "tmdb_async" / "events.py").read_text(encoding="utf-8")
    assert "parameters.get_parameter" in events
    called.add("ssm:GetParameter")
    needed = {r.action for r in NEEDED if not r.action.startswith("kms:")}
    assert called == needed


# --- the same role on moto with IAM enforced ---------------------------------------------------


def _moto_documents(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The role's statements as moto 5.2.5 can check them: it authorizes S3 requests against
    their object or bucket ARN, but every other service's request against resource "*",
    which no ARN-scoped grant matches; there only the action can be checked, so the
    non-S3 statements get resource "*" (their resources are :func:`decide`'s to check)."""
    return [
        {
            "Version": "2012-10-17",
            "Statement": [
                st if str(as_list(st["Action"])[0]).startswith("s3:") else {**st, "Resource": "*"}
                for st in statements
            ],
        }
    ]


def _auth_after(endpoint: str, requests: str) -> None:
    """moto's IAM enforcement (``INITIAL_NO_AUTH_ACTION_COUNT``) through its server's API:
    "0" checks every request from now on, "inf" none (moto's default)."""
    import urllib.request

    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=requests.encode(),
        headers={"Content-Type": "text/plain"},  # not a form: moto reads the raw body
        method="POST",
    )
    urllib.request.urlopen(request).close()


async def test_every_event_runs_with_only_the_function_role_on_moto(
    tmp_path: Path, s3: Any, lake: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prepare, a Map batch, a direct event, a refresh and status, each with the rendered
    role's credentials on moto with IAM enforced (the token from SSM); and the role's
    credentials cannot write the Map's results nor another bucket."""
    import boto3
    from aws_lambda_powertools.utilities import parameters
    from botocore.exceptions import ClientError

    from tests.conftest import TOKEN
    from tests.test_events import Context
    from tmdb_async.events import handle
    from tmdb_devtools.csvgen import title_ids, write_csv
    from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig

    endpoint = s3.meta.endpoint_url
    source = "Raw/Local/CSV/Movies/2026/11/10/movies.csv"
    ids = title_ids(60, "movie", start=1)
    s3.upload_file(str(write_csv(tmp_path / "movies.csv", ids)), lake, source)
    token_name = "/tmdb-ingest/read-access-token"
    boto3.client("ssm").put_parameter(Name=token_name, Value=TOKEN, Type="SecureString")
    sfn = boto3.client("stepfunctions")
    machine = sfn.create_state_machine(
        name=f"{STACK}-ingest",
        definition=json.dumps({"StartAt": "S", "States": {"S": {"Type": "Succeed"}}}),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn",
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, name="first")
    iam = boto3.client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    for n, document in enumerate(_moto_documents(function_statements())):
        iam.put_role_policy(RoleName="fn", PolicyName=f"p{n}", PolicyDocument=json.dumps(document))
    credentials = boto3.client("sts").assume_role(RoleArn=role["Arn"], RoleSessionName="fn")[
        "Credentials"
    ]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials["SecretAccessKey"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", credentials["SessionToken"])
    parameters.clear_caches()  # the SSM provider's client and value: made with these keys
    cfg = FakeTmdbConfig(token=TOKEN, change_period=3, change_universe=5_000)
    _auth_after(endpoint, "0")
    try:
        async with FakeTmdb(cfg) as fake:
            env = {
                "TMDB_TOKEN_SSM_PARAMETER": token_name,
                "TMDB_BASE_URL": fake.url,
                "TMDB_DEST": f"s3://{lake}",
                "TMDB_ALLOWED_BUCKETS": lake,
                "TMDB_RATE": "1000",
            }
            prepared = await handle(
                {
                    "action": "prepare",
                    "source": f"s3://{lake}/{source}",
                    "dest": f"s3://{lake}",
                    "state_machine": machine,
                    "execution": execution["executionArn"],
                    "execution_started": execution["startDate"].isoformat(),
                },
                Context(),
                env,
            )
            assert prepared["unique_ids"] == len(ids)
            batch = {
                "Items": [{"id": i} for i in ids[:30]],
                "BatchInput": {"dest": f"s3://{lake}", "kind": "movie", "date": "2026-11-10"},
            }
            assert (await handle(batch, Context(), env))["status"] == "ok"
            direct = {"source": f"s3://{lake}/{source}", "date": "2026-11-11", "chunk_size": 20}
            assert (await handle(direct, Context(), env))["status"] == "ok"
            refresh = {"action": "refresh", "dest": f"s3://{lake}", "date": "2026-11-13"}
            assert (await handle(refresh, Context(), env))["status"] == "ok"
            status = {"action": "status", "dest": f"s3://{lake}", "failed": True}
            assert (await handle(status, Context(), env))["folders"]
        as_role = boto3.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        ).client("s3", region_name=REGION)
        for bucket, key in ((lake, "Raw/TMDB/_runs/x/manifest.json"), ("another-bucket", "x")):
            with pytest.raises(ClientError) as denied:
                as_role.put_object(Bucket=bucket, Key=key, Body=b"{}")
            assert denied.value.response["Error"]["Code"] == "AccessDenied", (bucket, key)
    finally:
        _auth_after(endpoint, "inf")
        parameters.clear_caches()
