"""Command line: ``python -m tmdb_async run`` as a user runs it, in a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from tests.conftest import ROOT, TOKEN
from tests.support.csvgen import title_ids, write_csv
from tmdb_async.fake_tmdb import FakeTmdb, FakeTmdbConfig


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TMDB_")}
    full_env.update(env or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tmdb_async",
        *args,
        cwd=ROOT,
        env=full_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_run_prints_a_json_summary_as_last_line_and_exits_0(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    code, out, err = await cli(
        "run",
        str(ROOT / "samples" / "movies.csv"),
        "--dest",
        str(tmp_path),
        "--tmdb-url",
        fake_tmdb.url,
        "--date",
        "2022-05-02",
        "--rate",
        "500",
        "--json",
        env={"TMDB_READ_ACCESS_TOKEN": TOKEN},
    )
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "ok"
    assert summary["unique_ids"] == summary["records"] + summary["not_found"] + summary["invalid"]
    assert summary["invalid"] == 1
    assert summary["files_written"] == len(summary["files"]) >= 1
    assert all("/Raw/TMDB/JSON/2022/05/02/" in f for f in summary["files"])
    assert TOKEN not in out + err


async def test_failed_ids_exit_1(tmp_path: Path) -> None:
    ids = title_ids(5, "movie")
    config = FakeTmdbConfig(token=TOKEN, fault_ids=frozenset({ids[0]}))
    async with FakeTmdb(config) as fake:
        code, out, _ = await cli(
            "run",
            str(write_csv(tmp_path / "m.csv", ids)),
            "--dest",
            str(tmp_path / "lake"),
            "--tmdb-url",
            fake.url,
            "--max-attempts",
            "2",
            "--json",
            env={"TMDB_READ_ACCESS_TOKEN": TOKEN},
        )
    assert code == 1
    assert json.loads(out.splitlines()[-1])["failed"] == 1


async def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("titulo|ano\nx|1\n")
    code, _, err = await cli(
        "run", str(bad), "--dest", str(tmp_path), env={"TMDB_READ_ACCESS_TOKEN": TOKEN}
    )
    assert code == 2
    expected = "line 1: no id column: the header 'titulo|ano' has none of id, imdb_id, tconst"
    assert err.strip() == f"error: {bad}: {expected}"


async def test_missing_credentials_exit_2(tmp_path: Path) -> None:
    code, _, err = await cli("run", "samples/movies.csv", "--dest", str(tmp_path))
    assert code == 2
    assert "no TMDB credentials" in err
    assert "Traceback" not in err


async def test_rejected_credentials_exit_2(tmp_path: Path, fake_tmdb: FakeTmdb) -> None:
    code, _, err = await cli(
        "run",
        "samples/movies.csv",
        "--dest",
        str(tmp_path),
        "--tmdb-url",
        fake_tmdb.url,
        env={"TMDB_READ_ACCESS_TOKEN": "wrong-token-value"},
    )
    assert code == 2
    assert "rejected the credentials" in err
    assert "wrong-token-value" not in err


async def test_bad_option_values_exit_2(tmp_path: Path) -> None:
    code, _, err = await cli(
        "run",
        "samples/movies.csv",
        "--dest",
        str(tmp_path),
        "--chunk-size",
        "500",
        env={"TMDB_READ_ACCESS_TOKEN": TOKEN},
    )
    assert code == 2
    assert "chunk_size: 500 is outside 1..100" in err


async def test_unwritable_destination_exits_3(tmp_path: Path, fake_tmdb: FakeTmdb) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    code, _, err = await cli(
        "run",
        "samples/movies.csv",
        "--dest",
        str(blocker),
        "--tmdb-url",
        fake_tmdb.url,
        env={"TMDB_READ_ACCESS_TOKEN": TOKEN},
    )
    assert code == 3
    assert "cannot write" in err
