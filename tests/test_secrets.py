"""Secrets: the TMDB credential never appears in any byte the tool produces — logs at DEBUG,
errors, summaries, manifests, sidecars, data files or S3 objects — even with faults on."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.support.lake import read_local
from tmdb_async import log as logsetup
from tmdb_devtools.csvgen import title_ids, write_csv
from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig

CANARY = "canary-7f3e9b1d2c5a4e8f9a0b"
SURROGATE = "tt1000004"  # its overview ends with a lone surrogate escape ("\ud83d")
MALFORMED = "tt1000005"  # its /find always gets a malformed HTTP answer
FAULTS: dict[str, Any] = {
    "fault_5xx": 0.1,
    "fault_reset": 0.05,
    "fault_bad_json": 0.05,
    "fault_malformed": 0.05,
    "burst_429": 0.05,
    "fault_ids": frozenset({"tt1000001"}),
    "malformed_ids": frozenset({MALFORMED}),
    "surrogate_ids": frozenset({SURROGATE}),
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
        faults = fake.stats().faults
        assert faults.get("malformed") and faults.get("surrogate")  # they really happened
    assert b"DEBUG" in outputs  # debug logging really was on
    assert b"Traceback" not in outputs  # malformed HTTP failed ids, not the run
    assert CANARY.encode() not in outputs
    assert CANARY.encode() not in _all_bytes(tmp_path / "lake")
    assert CANARY.encode() not in _all_objects(s3, lake)


@pytest.mark.slow
async def test_malformed_http_fails_one_id_and_a_lone_surrogate_is_kept_not_the_run(
    tmp_path: Path,
) -> None:
    """A malformed HTTP answer is an error of one request (retried, then that id fails); a
    payload with a lone surrogate is written with its escape. Neither takes the run down or
    puts the secret anywhere."""
    ids = title_ids(30, "movie")
    csv_path = write_csv(tmp_path / "movies.csv", ids)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMDB_")}
    env["TMDB_READ_ACCESS_TOKEN"] = CANARY
    config = FakeTmdbConfig(
        token=CANARY, malformed_ids=frozenset({MALFORMED}), surrogate_ids=frozenset({SURROGATE})
    )
    async with FakeTmdb(config) as fake:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tmdb_async", "run", str(csv_path), "--dest",
            str(tmp_path / "lake"), "--tmdb-url", fake.url, "--max-attempts", "3",
            "--log-level", "DEBUG", "--json", "--date", "2022-05-02",
            cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        faults = fake.stats().faults
    assert process.returncode == 1, err.decode()[-2000:]  # one failed id, not a crash
    # 3 attempts by IMDb id on /movie, then 3 on /find: spent retries there fall back.
    assert faults.get("malformed") == 6 and faults.get("surrogate")
    summary = json.loads(out.decode().splitlines()[-1])
    assert (summary["failed"], summary["unique_ids"]) == (1, 30)
    assert b"Traceback" not in err
    folder = tmp_path / "lake" / "Raw/TMDB/JSON/2022/05/02"
    view = read_local(folder)
    ((name, record),) = view.records[SURROGATE]
    assert record["overview"].endswith("\ud83d")  # kept exactly
    assert "\\ud83d" in (folder / name).read_text(encoding="utf-8")  # as a JSON escape
    ((_, failed),) = view.outcomes[MALFORMED]
    assert failed["outcome"] == "failed" and "after 3 attempts" in failed["reason"]
    everything = out + err + _all_bytes(tmp_path / "lake")
    assert CANARY.encode() not in everything


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
