"""``template.yaml`` through the real AWS SAM translator, offline: the CloudFormation template
``sam deploy`` would create, for tests that need what SAM generates (roles, managed policies,
TracingConfig) rather than what the template says.

The translator lives in the SAM CLI's own virtual environment (``make validate-template``
builds ``.venv-sam``; its boto3 pins clash with aiobotocore's), so it runs in a subprocess:
``$SAM_VENV/bin/python``, else ``<repo>/.venv-sam/bin/python``. Local artefacts are replaced
as ``sam package`` would: the layer's zip by an S3 URI (``LAYER_BUCKET``/``LAYER_KEY``), the
state machine's ``DefinitionUri`` by the definition itself."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
LAYER_BUCKET = "layer-artifacts"
LAYER_KEY = "tmdb-ingest-layer.zip"

_RENDER = """
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class NoManagedPolicies:  # the template names no managed policy by name: nothing to look up
    def load(self):
        return {}

template = yaml_parse(open(sys.argv[1], encoding="utf-8").read())
for resource in template["Resources"].values():
    properties = resource.get("Properties", {})
    if resource["Type"] == "AWS::Serverless::LayerVersion":
        properties["ContentUri"] = sys.argv[3]
    if resource["Type"] == "AWS::Serverless::StateMachine" and "DefinitionUri" in properties:
        properties["Definition"] = json.load(open(properties.pop("DefinitionUri")))
print(json.dumps(transform(template, json.loads(sys.argv[2]), NoManagedPolicies())))
"""


def sam_python() -> Path | None:
    """The SAM CLI environment's interpreter, if there is one."""
    venv = Path(os.environ["SAM_VENV"]) if os.environ.get("SAM_VENV") else ROOT / ".venv-sam"
    python = venv / "bin" / "python"
    return python if python.exists() else None


def render(parameters: dict[str, str]) -> dict[str, Any]:
    """The SAM-transformed template for these parameter values (SAM resolves some, such as
    ``Tracing``, at transform time, as CloudFormation's transform does)."""
    python = sam_python()
    assert python is not None, "no SAM CLI environment: make validate-template builds one"
    done = subprocess.run(
        [
            str(python),
            "-c",
            _RENDER,
            "template.yaml",
            json.dumps(parameters),
            f"s3://{LAYER_BUCKET}/{LAYER_KEY}",
        ],
        cwd=ROOT,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},  # the translator's partition
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rendered: dict[str, Any] = json.loads(done.stdout)
    return rendered
