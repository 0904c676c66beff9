"""The command line's progress bar, on a real terminal (a pseudo-terminal): its total is the
run's distinct ids and it reaches it, with the request rate and the 429s; off a terminal
there is none unless asked, and ``--json`` keeps stdout one JSON line."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import sys
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, TOKEN
from tmdb_devtools.csvgen import title_ids, write_csv
from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig


def _drain(fd: int) -> bytes:
    """Everything written to the terminal until its last writer is gone."""
    out = b""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return out
        if not data:
            return out
        out += data


async def _cli(*args: str, terminal: bool) -> tuple[int, str, str]:
    """Run the command with stderr on a terminal (or a pipe); (code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMDB_")}
    env.update({"TMDB_READ_ACCESS_TOKEN": TOKEN, "COLUMNS": "160"})
    master, slave = pty.openpty() if terminal else (-1, -1)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tmdb_async", *args,
        cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=slave if terminal else asyncio.subprocess.PIPE,
    )  # fmt: skip
    if not terminal:
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        return int(process.returncode or 0), out.decode(), err.decode()
    os.close(slave)
    try:
        reading = asyncio.create_task(asyncio.to_thread(_drain, master))
        assert process.stdout is not None
        out = await asyncio.wait_for(process.stdout.read(), timeout=120)
        await asyncio.wait_for(process.wait(), timeout=120)
        err = await asyncio.wait_for(reading, timeout=30)
    finally:
        os.close(master)
    return int(process.returncode or 0), out.decode(), err.decode(errors="replace")


async def test_the_bar_on_a_terminal_counts_to_the_distinct_ids_with_rate_and_429s(
    tmp_path: Path,
) -> None:
    ids = title_ids(120, "movie")
    csv_path = write_csv(tmp_path / "movies.csv", ids)  # each id on 1..4 rows
    # 120 requests at 200/s: the counting pass (milliseconds) is done long before the run.
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN, rate_limit=200)) as fake:
        code, out, err = await _cli(
            "run", str(csv_path), "--dest", str(tmp_path / "lake"), "--kind", "movie",
            "--tmdb-url", fake.url, "--rate", "200", "--offset", "10",
            terminal=True,
        )  # fmt: skip
    assert code == 0, err
    assert out == ""
    frames = re.split(r"[\r\n]", err)
    bars = [f for f in frames if f.startswith("TMDB:")]
    assert bars, err
    totals = {int(m.group(1)) for f in bars if (m := re.search(r"\d+/(\d+)", f))}
    assert totals == {110}  # the slice's distinct ids, never another total
    final = next(f for f in reversed(bars) if "110/110" in f)
    assert "100%" in final
    assert re.search(r"\d+\.\d req/s, 0 x 429", final), final


async def test_no_bar_off_a_terminal_unless_asked_and_json_stays_one_line(
    tmp_path: Path,
) -> None:
    ids = title_ids(20, "movie")
    csv_path = write_csv(tmp_path / "movies.csv", ids)
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN)) as fake:
        common = ("run", str(csv_path), "--kind", "movie", "--tmdb-url", fake.url)
        _, _, plain = await _cli(*common, "--dest", str(tmp_path / "a"), terminal=False)
        code, out, err = await _cli(
            *common, "--dest", str(tmp_path / "b"), "--json", "--progress", terminal=False
        )
    assert "TMDB:" not in plain
    assert code == 0
    assert "20/20" in err  # asked for: on stderr
    (line,) = out.splitlines()
    assert json.loads(line)["unique_ids"] == 20


async def test_an_s3_source_gets_its_total_too(tmp_path: Path, s3: Any, lake: str) -> None:
    ids = title_ids(60, "movie")
    s3.upload_file(str(write_csv(tmp_path / "m.csv", ids)), lake, "in/movies.csv")
    # 50 requests at 50/s: the second reading of the object is done long before the run.
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN, rate_limit=50)) as fake:
        code, _, err = await _cli(
            "run", f"s3://{lake}/in/movies.csv", "--dest", str(tmp_path / "lake"),
            "--kind", "movie", "--tmdb-url", fake.url, "--rate", "50", "--limit", "50",
            "--progress",
            terminal=False,
        )  # fmt: skip
    assert code == 0, err
    totals = {int(m.group(1)) for m in re.finditer(r"TMDB:[^\r\n]*?\d+/(\d+)", err)}
    assert totals == {50}
    assert "50/50" in err
