"""A token that cannot be read from SSM says why, in one line, and never the token: the
parameter is missing, the role may not read it, or KMS refused to decrypt it.

Powertools' Parameters wraps every failure in ``GetParameterError`` without chaining it, so
these run the real Powertools path: moto's SSM where moto can fail the same way, and
botocore's ``Stubber`` on Powertools' own SSM client for the refusals moto does not make
(it enforces no IAM here and does not model KMS keys)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters import base as parameters_base
from aws_lambda_powertools.utilities.parameters.ssm import SSMProvider
from botocore.stub import Stubber

from tests.conftest import TOKEN
from tmdb_async.errors import CredentialsError, InputError
from tmdb_async.events import handle

PARAMETER = "/tmdb-ingest/token"
EVENT = {"source": "s3://data-lake-x/a.csv"}


class _Context:
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


@pytest.fixture
def fresh_providers(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Powertools keeps one SSM provider (client and cache) per process: each test its own."""
    providers: dict[str, Any] = {}
    monkeypatch.setattr(parameters_base, "DEFAULT_PROVIDERS", providers)
    import aws_lambda_powertools.utilities.parameters.ssm as ssm_module

    monkeypatch.setattr(ssm_module, "DEFAULT_PROVIDERS", providers)
    yield providers


def _env() -> dict[str, str]:
    return {
        "TMDB_TOKEN_SSM_PARAMETER": PARAMETER,
        "TMDB_DEST": "s3://data-lake-x",
        "TMDB_ALLOWED_BUCKETS": "data-lake-x",
        "AWS_REGION": "us-east-1",
    }


async def _refusal(env: dict[str, str]) -> str:
    with pytest.raises(CredentialsError) as caught:
        await handle(EVENT, _Context(), env)
    line = str(caught.value)
    assert "\n" not in line and TOKEN not in line
    return line


def _stubbed(providers: dict[str, Any], code: str, message: str) -> Stubber:
    client = boto3.client(
        "ssm", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)
    stubber.add_client_error("get_parameter", service_error_code=code, service_message=message)
    stubber.activate()
    providers["ssm"] = SSMProvider(boto3_client=client)
    return stubber


async def test_a_missing_parameter_says_not_found_and_the_region(
    s3_env: str, fresh_providers: dict[str, Any]
) -> None:
    line = await _refusal(_env())
    assert line == (
        f"SSM parameter {PARAMETER!r}: not found in us-east-1 (ParameterNotFound): "
        "create it there, or fix its name"
    )


async def test_a_parameter_in_another_region_is_not_found_in_the_functions_region(
    s3_env: str, fresh_providers: dict[str, Any]
) -> None:
    west = boto3.client("ssm", endpoint_url=s3_env, region_name="us-west-2")
    west.put_parameter(Name=PARAMETER, Value=TOKEN, Type="SecureString")
    line = await _refusal(_env())
    assert "not found in us-east-1 (ParameterNotFound)" in line


async def test_a_parameter_that_exists_is_read_so_the_refusals_above_are_not_the_setup(
    s3_env: str, lake: str, fresh_providers: dict[str, Any]
) -> None:
    ssm = boto3.client("ssm", endpoint_url=s3_env, region_name="us-east-1")
    ssm.put_parameter(Name=PARAMETER, Value=TOKEN, Type="SecureString")
    with pytest.raises(InputError, match=r"a\.csv"):  # past the token, on to the missing source
        await handle(EVENT, _Context(), _env())


async def test_a_role_without_ssm_get_parameter_says_access_denied(
    fresh_providers: dict[str, Any],
) -> None:
    _stubbed(
        fresh_providers,
        "AccessDeniedException",
        "User: arn:aws:sts::123456789012:assumed-role/fn/x is not authorized to perform: "
        "ssm:GetParameter on resource: arn:aws:ssm:us-east-1:123456789012:parameter/tmdb",
    )
    line = await _refusal(_env())
    assert line == (
        f"SSM parameter {PARAMETER!r}: access denied (AccessDeniedException): "
        "the role needs ssm:GetParameter on it"
    )


@pytest.mark.parametrize(
    ("code", "message"),
    [
        # what SSM answers when the role may not use the parameter's customer key
        (
            "AccessDeniedException",
            "The ciphertext refers to a customer master key that does not exist, does not "
            "exist in this region, or you are not allowed to access.",
        ),
        ("InvalidKeyId", "The key is not valid."),
        ("KMSAccessDeniedException", "kms:Decrypt denied."),
        ("DisabledException", "The key is disabled."),
    ],
)
async def test_a_key_kms_refuses_says_kms_and_its_code(
    fresh_providers: dict[str, Any], code: str, message: str
) -> None:
    _stubbed(fresh_providers, code, message)
    line = await _refusal(_env())
    assert line == (
        f"SSM parameter {PARAMETER!r}: KMS refused to decrypt it ({code}): "
        "the role needs kms:Decrypt on its key"
    )


async def test_an_error_with_no_aws_code_names_its_type(
    fresh_providers: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")

    def unreachable(self: SSMProvider, name: str, **options: Any) -> str:
        raise ConnectionError("endpoint unreachable")

    monkeypatch.setattr(SSMProvider, "_get", unreachable)
    line = await _refusal(_env())
    assert line == f"SSM parameter {PARAMETER!r}: cannot read it (ConnectionError)"
