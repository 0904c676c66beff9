"""``template.yaml``: cfn-lint passes on it (offline), its parameters and their defaults,
the function, layer and state machine it wires together, and the function's environment
(names a token parameter, holds no secret, every variable read by the engine)."""

from __future__ import annotations

import json
import re
from types import ModuleType
from typing import Any

import pytest

from tests.support.cfn import (
    ASL,
    ROOT,
    TEMPLATE,
    one_resource,
    parameter_defaults,
    run_cfn_lint,
)
from tests.support.layer_build import load_build_module
from tests.support.sfn import load_template


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def build() -> ModuleType:
    return load_build_module()


def test_cfn_lint_passes_on_the_template() -> None:
    result = run_cfn_lint(TEMPLATE)
    assert result.returncode == 0, f"cfn-lint found problems:\n{result.stdout}{result.stderr}"


def test_parameters_and_defaults(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    defaults = parameter_defaults(template)
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
    fn = one_resource(template, "AWS::Serverless::Function")
    assert fn["Handler"] == "handler.lambda_handler"
    assert fn["Runtime"] == {"Ref": "PythonRuntime"}
    assert fn["Architectures"] == [{"Ref": "FunctionArchitecture"}]
    assert fn["Timeout"] == {"Ref": "FunctionTimeout"}
    assert fn["MemorySize"] == {"Ref": "FunctionMemory"}
    # No local folder is zipped as function code (a CodeUri of "." would take .venv along):
    # the handler and the package come from the layer.
    assert "CodeUri" not in fn and "InlineCode" in fn
    assert len(fn["Layers"]) == 1

    layer = one_resource(template, "AWS::Serverless::LayerVersion")
    assert layer["ContentUri"] == f"layer/dist/{build.zip_name('3.12', 'arm64')}"
    assert layer["CompatibleRuntimes"] == ["python3.12"]
    assert layer["CompatibleArchitectures"] == ["arm64"]

    sm = one_resource(template, "AWS::Serverless::StateMachine")
    assert (ROOT / sm["DefinitionUri"]).resolve() == ASL.resolve()
    assert sm["Type"] == "STANDARD"

    outputs = template["Outputs"]
    assert outputs["IngestFunctionArn"]["Value"] == {"Fn::GetAtt": ["IngestFunction", "Arn"]}
    assert outputs["IngestStateMachineArn"]["Value"] == {"Ref": "IngestStateMachine"}
    assert "DependenciesLayer" in json.dumps(outputs["LayerArn"]["Value"])


def test_environment_names_the_token_parameter_and_holds_no_secret(
    template: dict[str, Any],
) -> None:
    env = one_resource(template, "AWS::Serverless::Function")["Environment"]["Variables"]
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
    assert parameter_defaults(template)["TmdbTokenParameterName"].startswith("/")


def test_engine_reads_every_environment_variable(template: dict[str, Any]) -> None:
    """A variable the engine never reads is a typo or a stale contract."""
    sources = [ROOT / "handler.py", *sorted((ROOT / "tmdb_async").glob("*.py"))]
    code = "\n".join(p.read_text(encoding="utf-8") for p in sources)
    env = one_resource(template, "AWS::Serverless::Function")["Environment"]["Variables"]
    unread = [name for name in env if f'"{name}"' not in code]
    assert not unread, f"set by template.yaml but read nowhere in the engine: {unread}"
