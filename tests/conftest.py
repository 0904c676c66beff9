"""Shared fixtures: a fake TMDB on loopback, a moto S3 server over HTTP, the sample CSVs.

Real parts only: S3 is moto's server (aiobotocore cannot use in-process ``mock_aws``), TMDB is
the project's aiohttp fake on 127.0.0.1, and unit tests of the client use aioresponses.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest

from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
TOKEN = "test-token-5f1c9a7e"  # what the fake TMDB accepts in these tests


def _patch_aioresponses_for_aiohttp_314() -> None:
    """aioresponses 0.7.9 builds ``ClientResponse`` without ``stream_writer``, which aiohttp
    3.14 made a required keyword (pnuckowski/aioresponses#289, fix proposed in PR #288, not
    released). aiohttp 3.14 is a security release, so instead of pinning it down we give
    aioresponses a response class with a harmless default. No-op on older aiohttp."""
    import aioresponses.core as core

    params = inspect.signature(aiohttp.ClientResponse.__init__).parameters
    if "stream_writer" not in params or getattr(core, "_tmdb_ingest_patched", False):
        return

    class _Writer:
        output_size = 0

    class CompatClientResponse(aiohttp.ClientResponse):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("stream_writer", _Writer())
            super().__init__(*args, **kwargs)

    core.ClientResponse = CompatClientResponse  # type: ignore[misc]
    core._tmdb_ingest_patched = True  # type: ignore[attr-defined]


_patch_aioresponses_for_aiohttp_314()


@pytest.fixture(autouse=True)
def _clean_tmdb_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start with no TMDB or destination settings from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("TMDB_"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def fake_tmdb() -> AsyncIterator[FakeTmdb]:
    """A fake TMDB accepting ``TOKEN``, no latency, no faults."""
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN)) as fake:
        yield fake


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server over HTTP on loopback, for the whole session."""
    from tests.support.moto_server import moto_server

    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point every AWS client (boto3 and aioboto3) at moto, with a clean state."""
    import urllib.request

    urllib.request.urlopen(
        urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    ).close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_endpoint


@pytest.fixture
def s3(s3_env: str) -> Any:
    """A plain boto3 client on moto, for arranging and asserting."""
    return boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")


@pytest.fixture
def lake(s3: Any) -> str:
    """An empty data-lake bucket."""
    s3.create_bucket(Bucket="data-lake-x")
    return "data-lake-x"
