"""X-Ray tracing: off unless the stack turns it on, and then the handler's subsegment reaches
the X-Ray daemon. Each case imports ``handler`` in a fresh interpreter, because the Tracer is
decided at import time from the environment the template sets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"

_INVOKE = """
import json, sys, handler
class Context:
    aws_request_id = "req-1"; function_name = "tmdb-ingest"; function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:tmdb-ingest"
    def get_remaining_time_in_millis(self): return 60_000
if sys.argv[1] == "invoke":
    try:
        handler.lambda_handler({"hello": "world"}, Context())
    except Exception as exc:
        print("raised", type(exc).__name__)
print(json.dumps({"xray_sdk_imported": "aws_xray_sdk.core" in sys.modules}))
"""


def _python(action: str, **env: str) -> dict[str, bool]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TMDB_", "POWERTOOLS_"))}
    clean = {k: v for k, v in clean.items() if k not in {"LAMBDA_TASK_ROOT", "_X_AMZN_TRACE_ID"}}
    done = subprocess.run(
        [sys.executable, "-c", _INVOKE, action],
        env={**clean, "AWS_REGION": "us-east-1", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, bool] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    "env",
    [
        {},  # tests, the command line
        {"LAMBDA_TASK_ROOT": "/var/task"},  # Lambda, variable unset
        {"LAMBDA_TASK_ROOT": "/var/task", "TMDB_TRACING": "Disabled"},  # the stack's default
        {"TMDB_TRACING": "Active"},  # on, but not in Lambda
        {  # on, but Powertools' own switch says off
            "LAMBDA_TASK_ROOT": "/var/task",
            "TMDB_TRACING": "Active",
            "POWERTOOLS_TRACE_DISABLED": "true",
        },
    ],
)
def test_without_tracing_turned_on_in_lambda_the_xray_sdk_is_never_imported(
    env: dict[str, str],
) -> None:
    assert _python("invoke", **env) == {"xray_sdk_imported": False}


@pytest.fixture
def xray_daemon() -> Iterator[socket.socket]:
    """A UDP socket standing in for the X-Ray daemon the Lambda runtime runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(30)
        yield sock


def test_with_tracing_on_the_handler_subsegment_reaches_the_xray_daemon(
    xray_daemon: socket.socket,
) -> None:
    host, port = xray_daemon.getsockname()
    token = "zq9-token-never-traced"
    imported = _python(
        "invoke",
        LAMBDA_TASK_ROOT="/var/task",
        TMDB_TRACING="Active",
        AWS_XRAY_DAEMON_ADDRESS=f"{host}:{port}",
        _X_AMZN_TRACE_ID=TRACE_HEADER,
        AWS_LAMBDA_FUNCTION_NAME="tmdb-ingest",
        TMDB_READ_ACCESS_TOKEN=token,
    )
    assert imported == {"xray_sdk_imported": True}
    datagram = xray_daemon.recv(65536).decode()
    assert token not in datagram
    header, body = datagram.split("\n", 1)
    assert json.loads(header) == {"format": "json", "version": 1}
    segment = json.loads(body)
    assert segment["name"] == "## lambda_handler"
    assert segment["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert segment["annotations"] == {"ColdStart": True, "Service": "tmdb-ingest"}
    (error,) = segment["cause"]["exceptions"]
    assert error["type"] == "UsageError" and error["message"].startswith("event: unknown shape")
