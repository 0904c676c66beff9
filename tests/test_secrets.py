"""Secrets: the TMDB credential never appears in any byte the tool produces — logs at DEBUG,
errors, summaries, manifests, sidecars, data files or S3 objects — even with faults on."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.support.csvgen import title_ids, write_csv
from tmdb_async import log as logsetup
from tmdb_async.fake_tmdb import FakeTmdb, FakeTmdbConfig

CANARY = "canary-7f3e9b1d2c5a4e8f9a0b"
FAULTS: dict[str, Any] = {
    "fault_5xx": 0.1,
    "fault_reset": 0.05,
    "fault_bad_json": 0.05,
    "burst_429": 0.05,
    "fault_ids": frozenset({"tt1000001"}),
    "seed": 5,
}


def _all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


def _all_objects(s3: Any, bucket: str) -> bytes:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert keys
    return b"".join(s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys)


@pytest.mark.slow
@pytest.mark.parametrize("variable", ["TMDB_API_KEY", "TMDB_READ_ACCESS_TOKEN"])
async def test_the_canary_secret_is_nowhere_in_cli_output_or_files(
    tmp_path: Path, s3: Any, lake: str, variable: str
) -> None:
    ids = title_ids(80, "movie")
    csv_path = write_csv(tmp_path / "movies.csv", ids)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMDB_")}
    env[variable] = CANARY
    async with FakeTmdb(FakeTmdbConfig(token=CANARY, **FAULTS)) as fake:
        outputs = b""
        for dest in (str(tmp_path / "lake"), f"s3://{lake}/prefix"):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tmdb_async", "run", str(csv_path), "--dest", dest,
                "--tmdb-url", fake.url, "--max-attempts", "3", "--timeout", "2",
                "--log-level", "DEBUG", "--json",
                cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(process.communicate(), timeout=120)
            assert process.returncode == 1  # tt1000001 always fails: the error path is covered
            outputs += out + err
        assert fake.stats().faults  # the faults really happened
    assert b"DEBUG" in outputs  # debug logging really was on
    assert CANARY.encode() not in outputs
    assert CANARY.encode() not in _all_bytes(tmp_path / "lake")
    assert CANARY.encode() not in _all_objects(s3, lake)


async def test_the_canary_is_masked_in_any_log_record_even_from_other_libraries() -> None:
    stream = io.StringIO()
    logsetup.configure("DEBUG", "json", secrets=[CANARY])
    handler = logging.getLogger().handlers[-1]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        logging.getLogger("aiohttp.client").debug("GET http://x/3/find?api_key=%s", CANARY)
        try:
            raise RuntimeError(f"boom {CANARY}")
        except RuntimeError:
            logging.getLogger("botocore").exception("failed")
    finally:
        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    assert "api_key=***" in text
    assert "boom ***" in text
    assert CANARY not in text
