"""Restarts: a run killed with SIGKILL at any point and started again with the same arguments
ends with every id exactly once, and a killed run never leaves a half-written file."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, TOKEN
from tests.support.lake import read_local
from tmdb_devtools.csvgen import kind_of, title_ids, write_csv
from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig

pytestmark = pytest.mark.slow
FOLDER = "Raw/TMDB/JSON/2022/05/02"


def _cli_args(csv_path: Path, lake: Path, url: str) -> list[str]:
    return [
        sys.executable, "-m", "tmdb_async", "run", str(csv_path), "--dest", str(lake),
        "--tmdb-url", url, "--date", "2022-05-02", "--chunk-size", "25", "--rate", "300",
        "--json",
    ]  # fmt: skip


async def _wait_for(condition: Callable[[], bool]) -> None:
    """Wait for a server counter to reach a value: a condition polled under a deadline (the
    fake has no per-request hook to await), not a sleep standing in for one."""
    async with asyncio.timeout(60):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def _visible_files(lake: Path) -> list[Path]:
    return [p for p in (lake / FOLDER).rglob("*") if p.is_file() and not p.name.startswith(".")]


@pytest.mark.parametrize("kill_at", [0.02, 0.6, 0.95])
async def test_sigkill_then_restart_gives_every_id_exactly_once(
    tmp_path: Path, kill_at: float
) -> None:
    ids = title_ids(180, "movie", start=6_000_000)
    # What the whole run asks: a movie once (/3/movie/tt…), an unknown id twice (then /find).
    unknown = sum(kind_of(int(i[2:])) is None for i in ids)
    kill_after_requests = int(kill_at * (len(ids) + unknown))
    csv_path = write_csv(tmp_path / "movies.csv", ids)
    lake = tmp_path / "lake"
    env = {**os.environ, "TMDB_READ_ACCESS_TOKEN": TOKEN}
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN, latency=0.005)) as fake:
        args = _cli_args(csv_path, lake, fake.url)
        victim = await asyncio.create_subprocess_exec(
            *args, cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL
        )
        await _wait_for(lambda: fake.stats().total_requests >= kill_after_requests)
        victim.send_signal(signal.SIGKILL)
        assert await victim.wait() == -signal.SIGKILL

        for path in _visible_files(lake):  # whatever is visible is whole
            json.loads(path.read_text())

        again = await asyncio.create_subprocess_exec(
            *args, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(again.communicate(), timeout=120)
    assert again.returncode == 0
    summary = json.loads(out.decode().splitlines()[-1])
    if kill_after_requests > 100:
        assert summary["kept"] > 0  # what the killed run committed was not fetched again

    view = read_local(lake / FOLDER)
    assert not view.duplicates()
    assert view.all_ids() == set(ids)
